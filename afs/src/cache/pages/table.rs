//! Per-page state of one file, stored sparsely by chunk.
//!
//! A file can be sparse and huge (`set_len` to a terabyte costs nothing in the memfd),
//! so the table only keeps chunks that hold at least one present page: a chunk is
//! `pages_per_chunk` flag bytes plus as many DataVersions (9 bytes per page), and the
//! chunk also carries its last-access tick for LRU eviction.

use std::collections::BTreeMap;
use std::ops::Range;

/// The page holds the file's bytes in the memfd. Not present means the memfd has a hole
/// there (reads as zeros): every transition to not-present punches the page.
pub(super) const PRESENT: u8 = 1;
/// Written locally and not yet stored. Dirty pages are always present.
pub(super) const DIRTY: u8 = 2;
/// Part of a store in progress; the page stays `DIRTY` until the store succeeds, so it
/// cannot be evicted meanwhile.
pub(super) const FLUSHING: u8 = 4;
/// Written again while `FLUSHING`: stays dirty after the store completes.
pub(super) const REDIRTY: u8 = 8;

/// Present and dirty page counts, for keeping the global gauges in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Counts {
    pub present: u64,
    pub dirty: u64,
}

struct Chunk {
    flags: Box<[u8]>,
    versions: Box<[u64]>,
    present: u32,
    dirty: u32,
    tick: u64,
}

impl Chunk {
    fn new(pages: u64, tick: u64) -> Self {
        let n = usize::try_from(pages).unwrap_or(1);
        Self {
            flags: vec![0; n].into_boxed_slice(),
            versions: vec![0; n].into_boxed_slice(),
            present: 0,
            dirty: 0,
            tick,
        }
    }
}

/// Sparse page table of one file.
pub(super) struct PageTable {
    pages_per_chunk: u64,
    chunks: BTreeMap<u64, Chunk>,
    counts: Counts,
}

/// Collects page indices or ranges into maximal contiguous runs.
#[derive(Default)]
pub(super) struct Runs(pub Vec<Range<u64>>);

impl Runs {
    pub fn push(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.0.push(r),
        }
    }

    pub fn pages(&self) -> u64 {
        self.0.iter().map(|r| r.end - r.start).sum()
    }
}

impl PageTable {
    pub fn new(pages_per_chunk: u64) -> Self {
        Self {
            pages_per_chunk: pages_per_chunk.max(1),
            chunks: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn chunk_of(&self, page: u64) -> u64 {
        page / self.pages_per_chunk
    }

    /// The pages of `chunk`.
    pub fn chunk_pages(&self, chunk: u64) -> Range<u64> {
        let start = chunk.saturating_mul(self.pages_per_chunk);
        start..start.saturating_add(self.pages_per_chunk)
    }

    pub fn flags(&self, page: u64) -> u8 {
        let (c, i) = self.split(page);
        self.chunks.get(&c).map_or(0, |ch| ch.flags[i])
    }

    /// The DataVersion a present page was fetched (or last stored) at.
    pub fn version(&self, page: u64) -> Option<u64> {
        let (c, i) = self.split(page);
        let ch = self.chunks.get(&c)?;
        (ch.flags[i] & PRESENT != 0).then(|| ch.versions[i])
    }

    /// Set a page's flags (and version, if given), keeping the counts right and
    /// dropping chunks that no longer hold anything.
    pub fn set(&mut self, page: u64, flags: u8, version: Option<u64>, tick: u64) {
        let (c, i) = self.split(page);
        let ppc = self.pages_per_chunk;
        if flags == 0 && !self.chunks.contains_key(&c) {
            return;
        }
        let ch = self
            .chunks
            .entry(c)
            .or_insert_with(|| Chunk::new(ppc, tick));
        let old = ch.flags[i];
        ch.flags[i] = flags;
        if let Some(v) = version {
            ch.versions[i] = v;
        }
        update(
            &mut ch.present,
            &mut self.counts.present,
            old & PRESENT,
            flags & PRESENT,
        );
        update(
            &mut ch.dirty,
            &mut self.counts.dirty,
            old & DIRTY,
            flags & DIRTY,
        );
        if ch.present == 0 && ch.flags.iter().all(|&f| f == 0) {
            self.chunks.remove(&c);
        }
    }

    /// Record an access to `chunk` at `tick` (LRU).
    pub fn touch(&mut self, chunk: u64, tick: u64) {
        if let Some(ch) = self.chunks.get_mut(&chunk) {
            ch.tick = tick;
        }
    }

    /// Maximal runs of pages in `pages` whose flags satisfy `pred`. Pages of chunks the
    /// table does not hold have flags 0 and are skipped in one step, so this is cheap
    /// even over an enormous sparse range.
    pub fn runs(&self, pages: Range<u64>, pred: impl Fn(u8) -> bool) -> Runs {
        let mut out = Runs::default();
        if pages.is_empty() {
            return out;
        }
        let empty_matches = pred(0);
        let mut pos = pages.start;
        let (first, last) = (self.chunk_of(pages.start), self.chunk_of(pages.end - 1));
        for (&c, ch) in self.chunks.range(first..=last) {
            let span = self.chunk_pages(c);
            let (from, to) = (span.start.max(pages.start), span.end.min(pages.end));
            if empty_matches {
                out.push(pos..from);
            }
            for p in from..to {
                if pred(ch.flags[index(p - span.start)]) {
                    out.push(p..p + 1);
                }
            }
            pos = to;
        }
        if empty_matches {
            out.push(pos..pages.end);
        }
        out
    }

    /// Every page of the file whose flags satisfy `pred` (which must reject 0).
    pub fn all_runs(&self, pred: impl Fn(u8) -> bool) -> Runs {
        let mut out = Runs::default();
        for (&c, ch) in &self.chunks {
            let start = self.chunk_pages(c).start;
            for (i, &f) in ch.flags.iter().enumerate() {
                if pred(f) {
                    let p = start + i as u64;
                    out.push(p..p + 1);
                }
            }
        }
        out
    }

    /// The page after the last dirty one, if any page is dirty.
    pub fn dirty_end(&self) -> Option<u64> {
        self.chunks
            .iter()
            .rev()
            .find(|(_, ch)| ch.dirty > 0)
            .and_then(|(&c, ch)| {
                let start = self.chunk_pages(c).start;
                let i = ch.flags.iter().rposition(|f| f & DIRTY != 0)?;
                Some(start + i as u64 + 1)
            })
    }

    /// Chunks holding clean present pages, with their last-access tick.
    pub fn evictable(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks
            .iter()
            .filter(|(_, ch)| ch.present > ch.dirty)
            .map(|(&c, ch)| (c, ch.tick))
    }

    /// Give every present clean page stamped `old` the version `new`: our own store
    /// moved the file's DataVersion without changing those bytes.
    pub fn restamp(&mut self, old: u64, new: u64) {
        for ch in self.chunks.values_mut() {
            for (f, v) in ch.flags.iter().zip(ch.versions.iter_mut()) {
                if f & (PRESENT | DIRTY) == PRESENT && *v == old {
                    *v = new;
                }
            }
        }
    }

    fn split(&self, page: u64) -> (u64, usize) {
        (
            page / self.pages_per_chunk,
            index(page % self.pages_per_chunk),
        )
    }
}

fn index(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

/// Keep a per-chunk and a per-file count in step with one flag bit changing.
fn update(chunk: &mut u32, file: &mut u64, old: u8, new: u8) {
    match (old != 0, new != 0) {
        (false, true) => {
            *chunk += 1;
            *file += 1;
        }
        (true, false) => {
            *chunk -= 1;
            *file -= 1;
        }
        _ => {}
    }
}
