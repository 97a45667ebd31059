//! The AFS directory format, as returned by FetchData on a directory vnode.
//!
//! OpenAFS fileservers do not implement the Lookup RPC, so clients read
//! directories themselves. A directory is a sequence of 2048-byte pages, each
//! divided into 64 32-byte "blobs":
//!
//! * every page starts with a one-blob page header (page count, the tag
//!   1234, a free count and a 64-bit allocation bitmap);
//! * page 0 continues with the directory header: a 128-byte per-page
//!   allocation map and a 128-entry hash table of 16-bit blob numbers, so
//!   blobs 0..=12 of page 0 are header and entries start at blob 13;
//! * an entry is: flag (1 = in use), a spare byte, the big-endian blob number
//!   of the next entry in the same hash chain, vnode, uniquifier, then a
//!   NUL-terminated name starting at byte 12 which may run on into the
//!   following blobs of the same page.
//!
//! Entries are reached by following the hash chains, exactly as OpenAFS
//! does when it enumerates a directory. Every integer is big-endian.
//!
//! Parsing is defensive: blob numbers are bounds-checked, names must end
//! inside their page, and each blob may be visited once, so loops and
//! cross-linked chains are reported instead of hanging.

use std::borrow::Cow;
use std::collections::HashSet;

use thiserror::Error;

use crate::types::{Fid, AFS_NAME_MAX};

/// Bytes per directory page.
pub const PAGE_SIZE: usize = 2048;
/// Bytes per blob.
pub const BLOB_SIZE: usize = 32;
/// Blobs per page.
pub const BLOBS_PER_PAGE: usize = PAGE_SIZE / BLOB_SIZE;
/// Hash table buckets.
pub const HASH_SIZE: usize = 128;
/// Largest directory OpenAFS will build, in pages.
pub const MAX_PAGES: usize = 1023;
/// Pages tracked by the allocation map in the header.
const ALLOC_MAP_PAGES: usize = 128;
/// Value of the tag in every page header.
pub const PAGE_TAG: u16 = 1234;
/// Blobs of page 0 taken by the page and directory headers.
pub const HEADER_BLOBS: usize = 13;
/// Offset of the allocation map within page 0.
const ALLOC_MAP_OFFSET: usize = 32;
/// Offset of the hash table within page 0.
const HASH_TABLE_OFFSET: usize = ALLOC_MAP_OFFSET + ALLOC_MAP_PAGES;
/// Offset of the name within an entry.
const NAME_OFFSET: usize = 12;
/// Entry flag meaning "first blob of an entry".
const FLAG_FIRST: u8 = 1;

/// Why a directory image could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirError {
    /// Shorter than one page.
    #[error("directory is {0} bytes, shorter than one {PAGE_SIZE}-byte page")]
    TooShort(usize),
    /// Longer than any OpenAFS directory can be.
    #[error("directory is {0} bytes, more than {MAX_PAGES} pages")]
    TooLarge(usize),
    /// A page header does not carry the expected tag.
    #[error("directory page {page} has tag {tag}, expected {PAGE_TAG}")]
    BadPageTag {
        /// Page number.
        page: usize,
        /// Tag found.
        tag: u16,
    },
    /// A hash chain points outside the directory or into a header.
    #[error("directory hash chain points at invalid blob {0}")]
    BadBlob(u16),
    /// An entry's name runs off the end of its page.
    #[error("directory entry at blob {0} has an unterminated name")]
    UnterminatedName(u16),
    /// A blob was reached twice: a loop or cross-linked chains.
    #[error("directory hash chains revisit blob {0}")]
    Loop(u16),
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, as raw bytes (AFS names have no declared encoding).
    pub name: Vec<u8>,
    /// Vnode number.
    pub vnode: u32,
    /// Vnode uniquifier.
    pub unique: u32,
}

impl DirEntry {
    /// The name as text, with invalid UTF-8 replaced.
    pub fn name_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// The entry's FID; directories never point outside their own volume
    /// (mount points are symlinks), so the volume comes from the directory.
    pub fn fid(&self, volume: u32) -> Fid {
        Fid::new(volume, self.vnode, self.unique)
    }

    /// True for the "." and ".." entries.
    pub fn is_dot_or_dotdot(&self) -> bool {
        self.name == b"." || self.name == b".."
    }
}

/// The OpenAFS directory hash: a multiply-by-173 string hash folded into
/// 128 buckets, with a sign quirk: if the 32-bit hash has its top bit set
/// (it was negative as a C `int`), a non-zero bucket `b` becomes `128 - b`.
/// The bytes are taken as unsigned.
pub fn dir_hash(name: &[u8]) -> usize {
    let h = name
        .iter()
        .fold(0u32, |h, &c| h.wrapping_mul(173).wrapping_add(u32::from(c)));
    let bucket = (h as usize) & (HASH_SIZE - 1);
    if bucket == 0 || h < 0x8000_0000 {
        bucket
    } else {
        HASH_SIZE - bucket
    }
}

/// A parsed directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    entries: Vec<DirEntry>,
    /// Names as text (invalid UTF-8 replaced), parallel to `entries`.
    names: Vec<String>,
    /// Entry indices per hash bucket, in chain order.
    buckets: Vec<Vec<usize>>,
}

fn read_u16(data: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(off..off + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(off..off + 4)?.try_into().ok()?))
}

impl Directory {
    /// Parse a directory image (the whole vnode contents).
    pub fn parse(data: &[u8]) -> Result<Self, DirError> {
        if data.len() < PAGE_SIZE {
            return Err(DirError::TooShort(data.len()));
        }
        let pages = data.len().div_ceil(PAGE_SIZE);
        if pages > MAX_PAGES {
            return Err(DirError::TooLarge(data.len()));
        }
        check_page_tags(data, pages)?;

        let mut visited = vec![false; pages * BLOBS_PER_PAGE];
        let mut dir = Directory {
            entries: Vec::new(),
            names: Vec::new(),
            buckets: vec![Vec::new(); HASH_SIZE],
        };
        for bucket in 0..HASH_SIZE {
            let head = read_u16(data, HASH_TABLE_OFFSET + 2 * bucket)
                .ok_or(DirError::TooShort(data.len()))?;
            let mut blob = head;
            // Each step marks a fresh blob, so this ends within
            // `visited.len()` steps overall.
            while blob != 0 {
                let (entry, next) = read_entry(data, blob, &mut visited)?;
                dir.buckets[bucket].push(dir.entries.len());
                dir.names.push(entry.name_str().into_owned());
                dir.entries.push(entry);
                blob = next;
            }
        }
        Ok(dir)
    }

    /// All entries, including "." and "..", in hash-chain order.
    pub fn entries(&self) -> impl Iterator<Item = &DirEntry> + '_ {
        self.entries.iter()
    }

    /// Number of entries, including "." and "..".
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries at all (not even ".").
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Find an entry by exact name.
    ///
    /// Only the name's hash chain is searched, as OpenAFS does (an entry
    /// filed under the wrong bucket is not found by the server either). A
    /// name containing U+FFFD may be the lossy form of a non-UTF-8 name
    /// (as shown by [`DirEntry::name_str`]); those fall back to comparing
    /// the lossy forms.
    pub fn lookup(&self, name: impl AsRef<[u8]>) -> Option<&DirEntry> {
        let name = name.as_ref();
        let hit = self
            .buckets
            .get(dir_hash(name))?
            .iter()
            .map(|&i| &self.entries[i])
            .find(|e| e.name == name);
        if hit.is_some() {
            return hit;
        }
        let text = std::str::from_utf8(name).ok()?;
        if !text.contains(char::REPLACEMENT_CHARACTER) {
            return None;
        }
        self.names
            .iter()
            .position(|n| n == text)
            .map(|i| &self.entries[i])
    }
}

fn check_page_tags(data: &[u8], pages: usize) -> Result<(), DirError> {
    for page in 0..pages {
        let tag = read_u16(data, page * PAGE_SIZE + 2).ok_or(DirError::TooShort(data.len()))?;
        if tag != PAGE_TAG {
            return Err(DirError::BadPageTag { page, tag });
        }
    }
    Ok(())
}

/// Decode the entry at `blob`, returning it and the next blob in its chain.
fn read_entry(data: &[u8], blob: u16, visited: &mut [bool]) -> Result<(DirEntry, u16), DirError> {
    let b = usize::from(blob);
    let slot = b % BLOBS_PER_PAGE;
    let page = b / BLOBS_PER_PAGE;
    let in_header = slot == 0 || (page == 0 && slot < HEADER_BLOBS);
    if in_header || b >= visited.len() {
        return Err(DirError::BadBlob(blob));
    }
    if std::mem::replace(&mut visited[b], true) {
        return Err(DirError::Loop(blob));
    }
    let off = b * BLOB_SIZE;
    let next = read_u16(data, off + 2).ok_or(DirError::BadBlob(blob))?;
    let vnode = read_u32(data, off + 4).ok_or(DirError::BadBlob(blob))?;
    let unique = read_u32(data, off + 8).ok_or(DirError::BadBlob(blob))?;
    let page_end = ((page + 1) * PAGE_SIZE).min(data.len());
    let name_area = data
        .get(off + NAME_OFFSET..page_end)
        .ok_or(DirError::BadBlob(blob))?;
    let len = name_area
        .iter()
        .position(|&c| c == 0)
        .ok_or(DirError::UnterminatedName(blob))?;
    Ok((
        DirEntry {
            name: name_area[..len].to_vec(),
            vnode,
            unique,
        },
        next,
    ))
}

/// Why an entry could not be added by [`DirectoryBuilder`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirBuildError {
    /// Empty, too long, or containing NUL or '/'.
    #[error("invalid directory entry name")]
    BadName,
    /// The name is already present.
    #[error("name already exists in directory")]
    Exists,
    /// No room left within the maximum directory size.
    #[error("directory is full")]
    Full,
}

/// Builds directory images in the OpenAFS layout, the way the fileserver
/// does (entries placed first-fit, new entries pushed on the front of
/// their hash chain). Meant for tests and mock servers.
#[derive(Debug, Clone)]
pub struct DirectoryBuilder {
    data: Vec<u8>,
    names: HashSet<Vec<u8>>,
}

impl Default for DirectoryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectoryBuilder {
    /// An empty directory (no "." or ".." yet).
    pub fn new() -> Self {
        let mut b = Self {
            data: Vec::new(),
            names: HashSet::new(),
        };
        b.add_page();
        // Pages not yet allocated are marked as entirely free.
        for p in 0..ALLOC_MAP_PAGES {
            b.data[ALLOC_MAP_OFFSET + p] = BLOBS_PER_PAGE as u8;
        }
        for slot in 0..HEADER_BLOBS {
            b.mark_used(0, slot);
        }
        b
    }

    fn pages(&self) -> usize {
        self.data.len() / PAGE_SIZE
    }

    fn add_page(&mut self) {
        let page = self.pages();
        self.data.resize(self.data.len() + PAGE_SIZE, 0);
        let off = page * PAGE_SIZE;
        self.data[off + 2..off + 4].copy_from_slice(&PAGE_TAG.to_be_bytes());
        // The page header blob itself is in use.
        self.mark_used(page, 0);
        let count = (page + 1) as u16;
        self.data[0..2].copy_from_slice(&count.to_be_bytes());
    }

    fn is_used(&self, page: usize, slot: usize) -> bool {
        self.data[page * PAGE_SIZE + 5 + slot / 8] & (1 << (slot % 8)) != 0
    }

    fn mark_used(&mut self, page: usize, slot: usize) {
        self.data[page * PAGE_SIZE + 5 + slot / 8] |= 1 << (slot % 8);
        let free = (0..BLOBS_PER_PAGE)
            .filter(|&s| !self.is_used(page, s))
            .count() as u8;
        self.data[page * PAGE_SIZE + 4] = free;
        if page < ALLOC_MAP_PAGES {
            self.data[ALLOC_MAP_OFFSET + page] = free;
        }
    }

    /// First-fit search for `n` consecutive free blobs in one page.
    fn find_blobs(&mut self, n: usize) -> Option<(usize, usize)> {
        loop {
            for page in 0..self.pages() {
                for start in 1..=BLOBS_PER_PAGE - n {
                    if (start..start + n).all(|s| !self.is_used(page, s)) {
                        return Some((page, start));
                    }
                }
            }
            if self.pages() >= MAX_PAGES {
                return None;
            }
            self.add_page();
        }
    }

    /// Add an entry. Names follow the fileserver's rules: 1..=256 bytes, no
    /// NUL or '/'.
    pub fn add(
        &mut self,
        name: impl AsRef<[u8]>,
        vnode: u32,
        unique: u32,
    ) -> Result<&mut Self, DirBuildError> {
        let bytes = name.as_ref();
        if bytes.is_empty()
            || bytes.len() > AFS_NAME_MAX
            || bytes.contains(&0)
            || bytes.contains(&b'/')
        {
            return Err(DirBuildError::BadName);
        }
        if self.names.contains(bytes) {
            return Err(DirBuildError::Exists);
        }
        // Blobs needed: the name plus NUL starts 12 bytes into the first.
        let nblobs = 1 + (bytes.len() + 1 + 15) / BLOB_SIZE;
        let (page, start) = self.find_blobs(nblobs).ok_or(DirBuildError::Full)?;
        for s in start..start + nblobs {
            self.mark_used(page, s);
        }
        let blob = page * BLOBS_PER_PAGE + start;
        let off = blob * BLOB_SIZE;
        let bucket = dir_hash(bytes);
        let head_off = HASH_TABLE_OFFSET + 2 * bucket;
        let old_head = [self.data[head_off], self.data[head_off + 1]];
        self.data[off] = FLAG_FIRST;
        self.data[off + 2..off + 4].copy_from_slice(&old_head);
        self.data[off + 4..off + 8].copy_from_slice(&vnode.to_be_bytes());
        self.data[off + 8..off + 12].copy_from_slice(&unique.to_be_bytes());
        self.data[off + NAME_OFFSET..off + NAME_OFFSET + bytes.len()].copy_from_slice(bytes);
        self.data[off + NAME_OFFSET + bytes.len()] = 0;
        self.data[head_off..head_off + 2].copy_from_slice(&(blob as u16).to_be_bytes());
        self.names.insert(bytes.to_vec());
        Ok(self)
    }

    /// The finished image.
    pub fn build(&self) -> Vec<u8> {
        self.data.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::test_util::XorShift;

    /// Hash values computed by hand from the algorithm's definition.
    #[test]
    fn hash_matches_reference_definition() {
        assert_eq!(dir_hash(b""), 0);
        // "." = 46: positive, 46 & 127 = 46.
        assert_eq!(dir_hash(b"."), 46);
        // ".." = 46*173 + 46 = 8004; 8004 & 127 = 68.
        assert_eq!(dir_hash(b".."), 68);
        // A long name drives the hash past 2^31 and exercises the quirk.
        let name = b"zzzzzzzzzzzz";
        let h = name
            .iter()
            .fold(0u32, |h, &c| h.wrapping_mul(173).wrapping_add(c as u32));
        let b = (h & 127) as usize;
        let expect = if b == 0 || (h as i32) >= 0 {
            b
        } else {
            128 - b
        };
        assert_eq!(dir_hash(name), expect);
        // High-bit bytes are unsigned.
        assert_eq!(dir_hash(&[0xff]), 0xff & 127);
        for n in 0..2000u32 {
            assert!(dir_hash(format!("f{n}").as_bytes()) < HASH_SIZE);
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = DirectoryBuilder::new();
        b.add(".", 1, 1).unwrap();
        b.add("..", 1, 1).unwrap();
        b.add("hello.txt", 4, 77).unwrap();
        b.add("n".repeat(200), 6, 78).unwrap();
        b.add("a", 8, 79).unwrap();
        b.build()
    }

    #[test]
    fn builder_layout_matches_openafs() {
        let d = sample();
        assert_eq!(d.len(), PAGE_SIZE);
        assert_eq!(&d[0..4], &[0, 1, 0x04, 0xd2]); // pgcount 1, tag 1234
                                                   // "." is the first entry, at blob 13, hashed into bucket 46.
        assert_eq!(&d[HASH_TABLE_OFFSET + 92..HASH_TABLE_OFFSET + 94], &[0, 13]);
        assert_eq!(d[13 * 32], 1);
        assert_eq!(
            &d[13 * 32 + 4..13 * 32 + 14],
            &[0, 0, 0, 1, 0, 0, 0, 1, b'.', 0]
        );
        // Header blobs 0..=12 plus ".", "..", hello (2 blobs), 200-char name
        // (7 blobs), "a": 13 + 1 + 1 + 1 + 7 + 1 = 24 blobs used.
        let used: u32 = d[5..13].iter().map(|b| b.count_ones()).sum();
        assert_eq!(used, 24);
        assert_eq!(d[4], 64 - 24);
        assert_eq!(d[ALLOC_MAP_OFFSET], 64 - 24);
        assert_eq!(d[ALLOC_MAP_OFFSET + 1], 64);
    }

    #[test]
    fn parse_round_trip() {
        let dir = Directory::parse(&sample()).unwrap();
        assert_eq!(dir.len(), 5);
        let names: Vec<String> = dir.entries().map(|e| e.name_str().into_owned()).collect();
        assert!(names.contains(&".".to_string()));
        assert!(names.contains(&"..".to_string()));
        let key = |e: &DirEntry| (e.vnode, e.unique);
        assert_eq!(dir.lookup("hello.txt").map(key), Some((4, 77)));
        assert_eq!(dir.lookup("hello.txt").unwrap().fid(7), Fid::new(7, 4, 77));
        assert_eq!(dir.lookup("n".repeat(200)).map(key), Some((6, 78)));
        assert_eq!(dir.lookup(String::from("a")).map(key), Some((8, 79)));
        assert!(dir.lookup("nope").is_none());
        assert!(dir.lookup("").is_none());
        assert!(dir.lookup(".").unwrap().is_dot_or_dotdot());
    }

    #[test]
    fn many_entries_span_pages_and_share_buckets() {
        let mut b = DirectoryBuilder::new();
        for i in 0..1500u32 {
            b.add(format!("file-{i:05}"), 2 * i + 2, i).unwrap();
        }
        let img = b.build();
        assert!(img.len() > 10 * PAGE_SIZE);
        let dir = Directory::parse(&img).unwrap();
        assert_eq!(dir.len(), 1500);
        for i in (0..1500u32).step_by(7) {
            let name = format!("file-{i:05}");
            let e = dir.lookup(&name).unwrap();
            assert_eq!((e.vnode, e.unique), (2 * i + 2, i));
        }
        assert_eq!(
            b.add("file-00003", 1, 1).unwrap_err(),
            DirBuildError::Exists
        );
    }

    #[test]
    fn non_utf8_names() {
        let mut b = DirectoryBuilder::new();
        b.add(b"caf\xe9", 10, 1).unwrap();
        let dir = Directory::parse(&b.build()).unwrap();
        let e = dir.entries().next().unwrap();
        assert_eq!(e.name_str(), "caf\u{fffd}");
        assert_eq!(e.vnode, 10);
        assert_eq!(dir.lookup(e.name_str().as_ref()).unwrap().vnode, 10);
        assert_eq!(dir.lookup(b"caf\xe9").unwrap().name, b"caf\xe9");
    }

    #[test]
    fn builder_rejects_bad_names() {
        let mut b = DirectoryBuilder::new();
        assert!(b.add("", 1, 1).is_err());
        assert!(b.add("a/b", 1, 1).is_err());
        assert!(b.add("a\0", 1, 1).is_err());
        assert!(b.add("x".repeat(257), 1, 1).is_err());
        assert!(b.add("x".repeat(256), 1, 1).is_ok());
    }

    #[test]
    fn structural_errors() {
        assert_eq!(Directory::parse(&[]), Err(DirError::TooShort(0)));
        assert!(matches!(
            Directory::parse(&vec![0u8; PAGE_SIZE]),
            Err(DirError::BadPageTag { page: 0, tag: 0 })
        ));
        let mut img = sample();
        // Point bucket 0 at a header blob.
        img[HASH_TABLE_OFFSET..HASH_TABLE_OFFSET + 2].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(Directory::parse(&img), Err(DirError::BadBlob(5)));
        // Beyond the end.
        img[HASH_TABLE_OFFSET..HASH_TABLE_OFFSET + 2].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(Directory::parse(&img), Err(DirError::BadBlob(64)));
        // A self-loop.
        let mut img = sample();
        let dot = 13 * 32;
        img[dot + 2..dot + 4].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(Directory::parse(&img), Err(DirError::Loop(13)));
        // A name running off the end of the page.
        let mut img = sample();
        img[HASH_TABLE_OFFSET..HASH_TABLE_OFFSET + 2].copy_from_slice(&63u16.to_be_bytes());
        for b in &mut img[63 * 32 + 12..PAGE_SIZE] {
            *b = b'x';
        }
        assert_eq!(Directory::parse(&img), Err(DirError::UnterminatedName(63)));
        // Too large.
        assert!(matches!(
            Directory::parse(&vec![0u8; (MAX_PAGES + 1) * PAGE_SIZE]),
            Err(DirError::TooLarge(_))
        ));
    }

    #[test]
    fn never_panics_on_garbage() {
        let valid = {
            let mut b = DirectoryBuilder::new();
            b.add(".", 1, 1).unwrap();
            b.add("..", 1, 1).unwrap();
            for i in 0..100 {
                b.add(format!("entry{i}"), i * 2 + 3, 1).unwrap();
            }
            b.build()
        };
        assert!(Directory::parse(&valid).is_ok());
        for cut in (0..valid.len()).step_by(97) {
            let _ = Directory::parse(&valid[..cut]);
        }
        let mut rng = XorShift::new(42);
        for _ in 0..3000 {
            let mut img = valid.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(img.len());
                img[at] = rng.next_u64() as u8;
            }
            let _ = Directory::parse(&img).map(|d| d.lookup("entry5").cloned());
        }
        for _ in 0..300 {
            let mut img = rng.buffer(3 * PAGE_SIZE);
            if img.len() >= PAGE_SIZE {
                for p in 0..img.len() / PAGE_SIZE {
                    img[p * PAGE_SIZE + 2..p * PAGE_SIZE + 4]
                        .copy_from_slice(&PAGE_TAG.to_be_bytes());
                }
            }
            let _ = Directory::parse(&img);
        }
    }
}
