//! One cached file: its memfd, its page table and the local operations on them.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use rustix::fs::{FallocateFlags, MemfdFlags};
use tokio::sync::Semaphore;

use super::error::PageError;
use super::fetch::{Flight, ReadAhead};
use super::stats::{self, PageStats};
use super::table::{Counts, PageTable, Runs, DIRTY, FLUSHING, PRESENT, REDIRTY};
use super::{Shared, MAX_FILE_SIZE, PAGE_SIZE};
use crate::types::Fid;

/// Sizes derived from the store's configuration, in pages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    /// Pages per fetch chunk (the single-flight unit).
    pub chunk_pages: u64,
    /// Largest read-ahead window, in bytes.
    pub readahead_cap: u64,
    /// Largest store, in pages.
    pub max_store_pages: u64,
}

/// Mutable state of a file, under [`FileCache::state`].
pub(super) struct FileState {
    /// Length readers see: the server's length plus our unflushed extensions/truncations.
    pub len: u64,
    /// The server's length as far as we know (last status, fetch or own store).
    pub remote_len: u64,
    /// Lowest local truncation point below `remote_len` not yet stored. Until the
    /// truncation is stored the server still has the old bytes there, so they must never
    /// be fetched.
    pub trunc_pending: Option<u64>,
    /// The DataVersion the cached pages hold, as validation, our own stores and
    /// fetches found it; when a fetch brought another version than the pages
    /// already here, the older of the two (see `install`).
    pub data_version: Option<u64>,
    pub pages: PageTable,
    /// Fetches under way, by chunk.
    pub inflight: HashMap<u64, Flight>,
    pub next_flight: u64,
    /// Moves whenever clean data is discarded, so that fetches started before cannot
    /// install bytes from before the invalidation.
    pub epoch: u64,
    pub ra: ReadAhead,
    /// The file changed on the server while we held unstored writes (see
    /// [`FileCache::note_remote_version`]); a flush refuses until told to overwrite.
    pub conflict: Option<Conflict>,
    /// Pages written through a mapping at or past the end of the file since the last
    /// flush looked (the page holding the end included): their bytes past the end are
    /// not part of the file, and a flush says so if any is not zero.
    pub eof_writes: Option<std::ops::Range<u64>>,
}

/// Another client's change met our unstored writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The DataVersion our writes were made on.
    pub ours: u64,
    /// The DataVersion the server has now.
    pub theirs: u64,
}

impl FileState {
    /// Bytes at or after this offset are never fetched: they are beyond the file, beyond
    /// what the server has, or beyond a pending truncation. They read as zeros (the memfd
    /// keeps them zero) unless written locally.
    pub fn fetch_limit(&self) -> u64 {
        self.len
            .min(self.remote_len)
            .min(self.trunc_pending.unwrap_or(u64::MAX))
    }

    /// Whether the length differs from the server's in a way only a store can fix.
    pub fn len_dirty(&self) -> bool {
        self.len != self.remote_len || self.trunc_pending.is_some()
    }
}

/// The cached bytes of one AFS file.
///
/// The bytes live in a memfd sized to the file length rounded up to whole pages, so that
/// a pager can later `mmap(MAP_SHARED)` it into guests and every guest shares one copy.
/// This module itself only ever uses `pread`/`pwrite`/`fallocate` on it, never a
/// mapping, so it never faults on a range a userfaultfd handler owns. A page that is not
/// present is always a hole in the memfd (reads as zeros).
pub struct FileCache {
    pub(super) fid: Fid,
    pub(super) memfd: File,
    pub(super) state: Mutex<FileState>,
    pub(super) holders: AtomicUsize,
    /// Bounds the fetches of this file that talk to the server at once.
    pub(super) fetch_slots: Semaphore,
    /// One flush at a time per file.
    pub(super) flush_lock: tokio::sync::Mutex<()>,
    pub(super) shared: Weak<Shared>,
    pub(super) stats: Arc<PageStats>,
    pub(super) clock: Arc<AtomicU64>,
    pub(super) params: Params,
    /// The memfd is never smaller than this: the end of the furthest guest mapping. A
    /// mapping may reach past the end of the file (those bytes read as zeros), and a
    /// memfd shrunk under a mapping would make its accesses SIGBUS.
    pub(super) mapped_end: AtomicU64,
}

/// Keeps a file's clean pages from being evicted while alive (see
/// [`PageStore::hold`](super::PageStore::hold)). A pager holds the files it has mapped.
pub struct Hold {
    file: Arc<FileCache>,
}

impl Hold {
    /// The held file.
    pub fn file(&self) -> &Arc<FileCache> {
        &self.file
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.file.holders.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for FileCache {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let c = st.pages.counts();
        stats::adjust(&self.stats.pages_present, c.present, 0);
        stats::adjust(&self.stats.pages_dirty, c.dirty, 0);
    }
}

/// Check that `[offset, offset + len)` fits in a file; returns its end.
pub(super) fn check_range(offset: u64, len: u64) -> Result<u64, PageError> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(end),
        _ => Err(PageError::OutOfRange { offset, len }),
    }
}

/// Pages touched by the bytes `[start, end)`.
pub(super) fn pages_of(start: u64, end: u64) -> std::ops::Range<u64> {
    start / PAGE_SIZE..end.div_ceil(PAGE_SIZE)
}

pub(super) fn round_up(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl FileCache {
    pub(super) fn create(
        fid: Fid,
        len: u64,
        shared: &Arc<Shared>,
        params: Params,
        max_fetches: usize,
    ) -> Result<Self, PageError> {
        check_range(len, 0)?;
        let name = format!("afs-cache-{}.{}.{}", fid.volume, fid.vnode, fid.unique);
        let fd = rustix::fs::memfd_create(name.as_str(), MemfdFlags::CLOEXEC).map_err(|e| {
            PageError::Create {
                fid,
                source: Arc::new(e.into()),
            }
        })?;
        let memfd = File::from(fd);
        memfd
            .set_len(round_up(len))
            .map_err(|e| PageError::io(fid, e))?;
        Ok(Self {
            fid,
            memfd,
            state: Mutex::new(FileState {
                len,
                remote_len: len,
                trunc_pending: None,
                data_version: None,
                pages: PageTable::new(params.chunk_pages),
                inflight: HashMap::new(),
                next_flight: 0,
                epoch: 0,
                ra: ReadAhead::default(),
                conflict: None,
                eof_writes: None,
            }),
            holders: AtomicUsize::new(0),
            fetch_slots: Semaphore::new(max_fetches.max(1)),
            flush_lock: tokio::sync::Mutex::new(()),
            shared: Arc::downgrade(shared),
            stats: shared.stats.clone(),
            clock: shared.clock.clone(),
            params,
            mapped_end: AtomicU64::new(0),
        })
    }

    /// The file this caches.
    pub fn fid(&self) -> Fid {
        self.fid
    }

    /// The memfd holding the bytes, for a pager to map (`MAP_SHARED`). Pages the table
    /// does not list as present are holes.
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// The memfd as a `File`, for `pread`/`pwrite` by a pager.
    pub fn memfd_file(&self) -> &File {
        &self.memfd
    }

    /// The length readers see (includes unflushed local changes).
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Newest DataVersion seen for this file, from a fetch or one of our own stores.
    pub fn data_version(&self) -> Option<u64> {
        self.lock().data_version
    }

    /// Record the file's DataVersion as validation found it (FetchStatus), after any
    /// invalidation it called for, so that the next flush can tell whether the server's
    /// version moved only by our own stores.
    pub fn note_data_version(&self, data_version: u64) {
        self.lock().data_version = Some(data_version);
    }

    /// Whether `page` (index, not offset) holds cached bytes.
    pub fn is_present(&self, page: u64) -> bool {
        self.lock().pages.flags(page) & PRESENT != 0
    }

    /// Whether `page` holds local changes not yet stored.
    pub fn is_dirty(&self, page: u64) -> bool {
        self.lock().pages.flags(page) & DIRTY != 0
    }

    /// The DataVersion a present page was fetched or last stored at.
    pub fn page_version(&self, page: u64) -> Option<u64> {
        self.lock().pages.version(page)
    }

    /// Present and dirty page counts of this file.
    pub fn page_counts(&self) -> (u64, u64) {
        let c = self.lock().pages.counts();
        (c.present, c.dirty)
    }

    /// Whether anything here still has to be stored.
    pub fn has_unflushed(&self) -> bool {
        let st = self.lock();
        st.pages.counts().dirty > 0 || st.len_dirty()
    }

    /// Keep this file's clean pages from eviction until the returned guard drops.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.holders.fetch_add(1, Ordering::AcqRel);
        Hold { file: self.clone() }
    }

    pub(super) fn is_held(&self) -> bool {
        self.holders.load(Ordering::Acquire) > 0
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Run `f` on the state and carry its page-count changes into the global gauges.
    pub(super) fn mutate<R>(&self, st: &mut FileState, f: impl FnOnce(&mut FileState) -> R) -> R {
        let before = st.pages.counts();
        let r = f(st);
        self.account(before, st.pages.counts());
        r
    }

    fn account(&self, before: Counts, after: Counts) {
        stats::adjust(&self.stats.pages_present, before.present, after.present);
        stats::adjust(&self.stats.pages_dirty, before.dirty, after.dirty);
    }

    pub(super) fn pread(&self, offset: u64, buf: &mut [u8]) -> Result<(), PageError> {
        self.memfd
            .read_exact_at(buf, offset)
            .map_err(|e| PageError::io(self.fid, e))
    }

    pub(super) fn pwrite(&self, offset: u64, data: &[u8]) -> Result<(), PageError> {
        self.memfd
            .write_all_at(data, offset)
            .map_err(|e| PageError::io(self.fid, e))
    }

    /// Writes contiguous `slices` at `offset`, many per system call (pwritev).
    pub(super) fn pwrite_all(&self, mut offset: u64, slices: &[&[u8]]) -> Result<(), PageError> {
        /// Slices per call: Linux's IOV_MAX.
        const BATCH: usize = 1024;
        for batch in slices.chunks(BATCH) {
            let total: usize = batch.iter().map(|s| s.len()).sum();
            let iov: Vec<std::io::IoSlice<'_>> =
                batch.iter().map(|s| std::io::IoSlice::new(s)).collect();
            let written = rustix::io::pwritev(&self.memfd, &iov, offset)
                .map_err(|e| PageError::io(self.fid, e.into()))?;
            if written < total {
                // Short write (rare for a memfd): finish the rest one slice at a time.
                let mut skip = written;
                let mut at = offset + written as u64;
                for s in batch {
                    if skip >= s.len() {
                        skip -= s.len();
                        continue;
                    }
                    self.pwrite(at, &s[skip..])?;
                    at += (s.len() - skip) as u64;
                    skip = 0;
                }
            }
            offset += total as u64;
        }
        Ok(())
    }

    /// Free the memory of whole pages, keeping the memfd's size: they read as zeros.
    fn punch(&self, pages: &std::ops::Range<u64>) -> Result<(), PageError> {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        let (off, len) = (
            pages.start * PAGE_SIZE,
            (pages.end - pages.start) * PAGE_SIZE,
        );
        rustix::fs::fallocate(&self.memfd, flags, off, len)
            .map_err(|e| PageError::io(self.fid, e.into()))
    }

    /// Punch `runs` and mark their pages not present (whatever their state). The caller
    /// accounts the counts through [`Self::mutate`].
    pub(super) fn discard(&self, st: &mut FileState, runs: &Runs) -> Result<u64, PageError> {
        let tick = self.tick();
        for run in &runs.0 {
            self.punch(run)?;
            for p in run.clone() {
                st.pages.set(p, 0, None, tick);
            }
        }
        Ok(runs.pages())
    }

    /// Resize the memfd to hold `len` bytes (rounded up to whole pages), never below the
    /// furthest mapping.
    fn resize_memfd(&self, len: u64) -> Result<(), PageError> {
        let floor = self.mapped_end.load(Ordering::Acquire);
        self.memfd
            .set_len(round_up(len).max(floor))
            .map_err(|e| PageError::io(self.fid, e))
    }

    /// Keep the memfd at least `end` bytes long (rounded up to whole pages) from now on,
    /// because a pager maps it that far. Bytes past the file's length read as zeros and
    /// are not stored unless the file grows over them.
    pub fn reserve_mapped(&self, end: u64) -> Result<(), PageError> {
        check_range(end, 0)?;
        let st = self.lock();
        let end = round_up(end);
        if self.mapped_end.fetch_max(end, Ordering::AcqRel) < end {
            self.resize_memfd(st.len)?;
        }
        Ok(())
    }

    /// Mark whole pages dirty after a pager saw them written through a mapping (the bytes
    /// are already in the memfd). Pages at or past the end of the file are not part of
    /// it: they are remembered, so that the next flush reports bytes written there (or
    /// stores them, if the file grew over them meanwhile). Returns the pages newly marked.
    pub fn mark_dirty(&self, pages: std::ops::Range<u64>) -> u64 {
        let mut st = self.lock();
        // The page holding the end of the file counts too: its tail is past the end.
        let eof_page = st.len / PAGE_SIZE;
        if pages.end > eof_page && pages.start < pages.end {
            let past = pages.start.max(eof_page)..pages.end;
            st.eof_writes = Some(match st.eof_writes.take() {
                Some(r) => r.start.min(past.start)..r.end.max(past.end),
                None => past,
            });
        }
        let end = pages.end.min(st.len.div_ceil(PAGE_SIZE));
        if pages.start >= end {
            return 0;
        }
        let tick = self.tick();
        self.mutate(&mut st, |st| set_dirty(st, pages.start..end, tick))
    }

    /// Bytes from this offset on are never fetched (past the file, past what the server
    /// has, or past a pending truncation): they read as zeros unless written locally.
    pub fn zeros_from(&self) -> u64 {
        self.lock().fetch_limit()
    }

    /// Whether every page in `pages` is present or beyond what can be fetched (holes
    /// that read as zeros): a pager can then map them without fetching.
    pub fn all_present(&self, pages: std::ops::Range<u64>) -> bool {
        let st = self.lock();
        let fetchable = st.fetch_limit().div_ceil(PAGE_SIZE);
        st.pages
            .runs(pages.start..pages.end.min(fetchable), |f| f & PRESENT == 0)
            .0
            .is_empty()
    }

    /// Zero the bytes from `at` to the end of its page, if that page holds data.
    fn zero_tail(&self, st: &FileState, at: u64) -> Result<(), PageError> {
        let tail = round_up(at) - at;
        if tail == 0 || st.pages.flags(at / PAGE_SIZE) & PRESENT == 0 {
            return Ok(());
        }
        self.pwrite(at, &vec![0; usize::try_from(tail).unwrap_or(0)])
    }

    /// Change the length readers see. Shrinking drops every page past the new end, dirty
    /// ones included (they are beyond EOF), and zeroes the tail of the last page so a
    /// later extension reads zeros.
    pub(super) fn resize(&self, st: &mut FileState, new: u64) -> Result<(), PageError> {
        if new < st.len {
            let first_gone = new.div_ceil(PAGE_SIZE);
            let runs = st
                .pages
                .runs(first_gone..st.len.div_ceil(PAGE_SIZE), |f| f != 0);
            self.mutate(st, |st| self.discard(st, &runs))?;
            self.zero_tail(st, new)?;
        }
        self.resize_memfd(new)?;
        st.len = new;
        Ok(())
    }

    /// Local truncate/extend (`ftruncate` by a user of the file). Stored at the next
    /// flush: a shrink below the server's length is stored first as a truncation, so
    /// bytes past it can never come back from the server.
    pub fn set_len(&self, len: u64) -> Result<(), PageError> {
        check_range(len, 0)?;
        let mut st = self.lock();
        if len < st.len && len < st.remote_len {
            st.trunc_pending = Some(st.trunc_pending.map_or(len, |t| t.min(len)));
        }
        let old = st.len;
        self.resize(&mut st, len)?;
        if len <= old {
            return Ok(());
        }
        // Bytes written through a mapping past the old end are now part of the file:
        // the pages remembered, and the page that held the end if its tail is not zero
        // (bytes already reported past the end, which the memfd still has).
        let mut grown = st.eof_writes.clone().unwrap_or(0..0);
        let end_page = old / PAGE_SIZE;
        if !old.is_multiple_of(PAGE_SIZE) && self.tail_written(old)? {
            grown = grown.start.min(end_page)..grown.end.max(end_page + 1);
        }
        let inside = grown.start..grown.end.min(len.div_ceil(PAGE_SIZE));
        if !inside.is_empty() {
            let tick = self.tick();
            self.mutate(&mut st, |st| set_dirty(st, inside, tick));
        }
        // What is still past the new end (from the page holding it on) stays watched.
        let new_end_page = len / PAGE_SIZE;
        st.eof_writes = st
            .eof_writes
            .take()
            .map(|r| r.start.max(new_end_page)..r.end)
            .filter(|r| !r.is_empty());
        Ok(())
    }

    /// Whether the memfd holds a nonzero byte between `end` and the end of its page.
    fn tail_written(&self, end: u64) -> Result<bool, PageError> {
        let mut tail = vec![0u8; (round_up(end) - end) as usize];
        // A short read (past the memfd's end) leaves zeros.
        let _ = self.memfd.read_at(&mut tail, end);
        Ok(tail.iter().any(|&b| b != 0))
    }

    /// The server's DataVersion as validation found it. If it moved while we hold
    /// unstored writes, and not by our own store (none is under way), the file is in
    /// conflict: our writes were made on a version that is gone.
    pub fn note_remote_version(&self, current: u64) {
        let storing = self.flush_lock.try_lock().is_err();
        let mut st = self.lock();
        let unflushed = st.pages.counts().dirty > 0 || st.len_dirty();
        match st.data_version {
            Some(ours) if ours != current && unflushed && !storing && st.conflict.is_none() => {
                tracing::warn!(fid = %self.fid, ours, theirs = current, "third-party change under unstored writes");
                st.conflict = Some(Conflict {
                    ours,
                    theirs: current,
                });
            }
            _ => {}
        }
    }

    /// Whether bytes were written through a mapping at or past the end of the file
    /// since the last flush looked.
    pub fn has_past_end_writes(&self) -> bool {
        self.lock().eof_writes.is_some()
    }

    /// The conflict the file is in, if any.
    pub fn conflict(&self) -> Option<Conflict> {
        self.lock().conflict
    }

    /// Give back memfd space past the end of the file that mappings reserved (and the
    /// zero pages they faulted in there): the last mapping is gone.
    pub fn release_mapped(&self) -> Result<(), PageError> {
        let mut st = self.lock();
        self.mapped_end.store(0, Ordering::Release);
        // Whatever was written past the end goes with the space (it was reported).
        st.eof_writes = None;
        self.resize_memfd(st.len)?;
        // The page holding the end keeps its tail: zero it, it is not the file's.
        if st.pages.flags(st.len / PAGE_SIZE) & DIRTY == 0 {
            self.zero_tail(&st, st.len)?;
        }
        Ok(())
    }

    /// Discard every clean page (hole-punch, mark not present), keeping dirty ones: the
    /// file changed on the server, so clean bytes are refetched on demand while local
    /// changes survive to the next flush (last writer wins). Returns the pages dropped.
    pub fn invalidate_clean(&self) -> Result<u64, PageError> {
        self.invalidate_where(|_| true)
    }

    /// Discard clean pages fetched at a DataVersion other than `current`.
    pub fn invalidate_stale(&self, current: u64) -> Result<u64, PageError> {
        self.invalidate_where(|v| v != current)
    }

    fn invalidate_where(&self, stale: impl Fn(u64) -> bool) -> Result<u64, PageError> {
        let mut st = self.lock();
        st.epoch += 1;
        let clean = st.pages.all_runs(|f| f & (PRESENT | DIRTY) == PRESENT);
        let mut runs = Runs::default();
        for p in clean.0.iter().flat_map(|r| r.clone()) {
            if st.pages.version(p).is_some_and(&stale) {
                runs.push(p..p + 1);
            }
        }
        let n = self.mutate(&mut st, |st| self.discard(st, &runs))?;
        stats::add(&self.stats.pages_invalidated, n);
        Ok(n)
    }

    /// The server says the file is now `remote_len` long (a third-party change).
    ///
    /// Clean bytes past it are discarded. If the length was not changed locally, readers
    /// see the new length, except that it never cuts off local dirty pages (they are
    /// written at the next flush and extend the file again: last writer wins, at page
    /// granularity). A local pending truncation at or past the new length is moot.
    pub fn truncate_to(&self, remote_len: u64) -> Result<(), PageError> {
        check_range(remote_len, 0)?;
        let mut st = self.lock();
        let locally_changed = st.len_dirty();
        st.epoch += 1;
        st.remote_len = remote_len;
        if st.trunc_pending.is_some_and(|t| t >= remote_len) {
            st.trunc_pending = None;
        }
        self.drop_clean_from(&mut st)?;
        if !locally_changed {
            let dirty_end = st.pages.dirty_end().map_or(0, |p| p * PAGE_SIZE);
            let target = remote_len.max(dirty_end.min(st.len));
            self.resize(&mut st, target)?;
        }
        Ok(())
    }

    /// Discard clean pages at or past the fetch limit and zero the clean partial page's
    /// tail: those bytes are zeros in the file now.
    fn drop_clean_from(&self, st: &mut FileState) -> Result<(), PageError> {
        let limit = st.fetch_limit();
        let end = st.len.div_ceil(PAGE_SIZE).max(limit.div_ceil(PAGE_SIZE));
        let first = limit.div_ceil(PAGE_SIZE);
        let runs = st
            .pages
            .runs(first..end, |f| f & (PRESENT | DIRTY) == PRESENT);
        let n = self.mutate(st, |st| self.discard(st, &runs))?;
        stats::add(&self.stats.pages_invalidated, n);
        if st.pages.flags(limit / PAGE_SIZE) & DIRTY == 0 {
            self.zero_tail(st, limit)?;
        }
        Ok(())
    }

    /// Copy the bytes `[offset, offset + buf.len())` out of the memfd and count the
    /// access for LRU. The caller has checked the pages are present or beyond the fetch
    /// limit (holes that read as zeros).
    pub(super) fn copy_out(
        &self,
        st: &mut FileState,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), PageError> {
        self.pread(offset, buf)?;
        self.touch(st, offset, offset + buf.len() as u64);
        Ok(())
    }

    pub(super) fn touch(&self, st: &mut FileState, start: u64, end: u64) {
        let tick = self.tick();
        let pages = pages_of(start, end);
        if pages.is_empty() {
            return;
        }
        let (c0, c1) = (
            st.pages.chunk_of(pages.start),
            st.pages.chunk_of(pages.end - 1),
        );
        for c in c0..=c1 {
            st.pages.touch(c, tick);
        }
    }

    /// Store `data` at `offset` in the memfd and mark its pages dirty. The caller has
    /// made sure partially covered pages hold their old bytes.
    pub(super) fn apply_write(
        &self,
        st: &mut FileState,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PageError> {
        let end = offset + data.len() as u64;
        if end > st.len {
            self.resize_memfd(end)?;
            st.len = end;
        }
        self.pwrite(offset, data)?;
        let tick = self.tick();
        self.mutate(st, |st| set_dirty(st, pages_of(offset, end), tick));
        Ok(())
    }
}

/// Marks `pages` present and dirty. A page that is being flushed is marked written again
/// too, so that the flush does not make it clean. Returns the pages that were clean or
/// being flushed.
fn set_dirty(st: &mut FileState, pages: std::ops::Range<u64>, tick: u64) -> u64 {
    let version = st.data_version.unwrap_or(0);
    let mut marked = 0;
    for p in pages {
        let old = st.pages.flags(p);
        let flushing = old & FLUSHING != 0;
        if old & DIRTY == 0 || flushing {
            marked += 1;
        }
        let redirty = if flushing { REDIRTY } else { 0 };
        let keep = old & (FLUSHING | REDIRTY);
        let v = (old & PRESENT == 0).then_some(version);
        st.pages.set(p, PRESENT | DIRTY | keep | redirty, v, tick);
    }
    marked
}
