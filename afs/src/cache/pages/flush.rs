//! Writing dirty pages back: coalesced stores, truncations, and DataVersion bookkeeping.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::error::{BoxError, PageError};
use super::file::FileCache;
use super::stats;
use super::table::{DIRTY, FLUSHING, PRESENT, REDIRTY};
use super::{Storer, PAGE_SIZE};

/// What a [`FileCache::flush`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Successful stores made.
    pub store_calls: u64,
    /// Bytes those stores carried.
    pub bytes_stored: u64,
    /// Dirty pages made clean.
    pub pages_flushed: u64,
    /// DataVersion after the last store (None if nothing needed storing).
    pub data_version: Option<u64>,
    /// Some store returned a DataVersion other than the previous one plus one: someone
    /// else changed the file since we last saw it, so clean pages may be stale.
    pub third_party_change: bool,
}

/// Whether a flush stores over another client's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Refuse a file in conflict ([`PageError::Conflict`]).
    #[default]
    Normal,
    /// Store our written pages over the other change (last writer wins, page by page).
    Overwrite,
}

/// One store to make.
struct Planned {
    kind: Kind,
    offset: u64,
    data: Bytes,
    file_len: u64,
}

enum Kind {
    /// Cut the server's file at `offset` (a local shrink below the server's length).
    Truncate,
    /// The bytes of these dirty pages.
    Data(Range<u64>),
    /// Only the length changed (extension past the last dirty page).
    Length,
}

impl FileCache {
    /// Store every dirty page and any length change.
    ///
    /// A pending truncation goes first (so the server drops the bytes past it), then
    /// each contiguous run of dirty pages as one store (split at `max_store_bytes`), each
    /// carrying the current length; a length-only store follows if the length still
    /// differs. Pages stay dirty (so never evicted) until their store succeeds; pages
    /// written again during their store stay dirty afterwards. After each store the
    /// stored pages carry the returned DataVersion; if it is exactly one more than the one
    /// we knew (our own change), clean pages at the old version are restamped, since our
    /// store did not change them.
    ///
    /// A file in [conflict](FileCache::note_remote_version) is not stored unless `mode`
    /// is [`FlushMode::Overwrite`]. Afterwards, bytes written through a mapping past the
    /// end of the file are reported ([`PageError::WrittenPastEnd`]).
    pub async fn flush<S: Storer + ?Sized>(
        &self,
        storer: &S,
        mode: FlushMode,
    ) -> Result<FlushReport, PageError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        {
            let mut st = self.lock();
            match (st.conflict, mode) {
                (Some(c), FlushMode::Normal) => {
                    return Err(PageError::Conflict {
                        fid: self.fid,
                        ours: c.ours,
                        theirs: c.theirs,
                    })
                }
                (Some(_), FlushMode::Overwrite) => st.conflict = None,
                (None, _) => {}
            }
        }
        let mut report = FlushReport::default();
        let mut cursor = 0;
        while let Some(store) = self.next_store(&mut cursor)? {
            stats::add(&self.stats.store_calls, 1);
            let result = storer
                .store(self.fid, store.offset, store.data.clone(), store.file_len)
                .await;
            self.finish_store(&store, result, &mut report)?;
        }
        self.check_past_end()?;
        Ok(report)
    }

    /// Reports the first nonzero byte written through a mapping past the end of the
    /// file (the memfd keeps those bytes zero otherwise). It is reported at every flush
    /// while it is there: until the file grows over it, it is not stored.
    fn check_past_end(&self) -> Result<(), PageError> {
        let (pages, len) = {
            let st = self.lock();
            match st.eof_writes.clone() {
                Some(r) => (r, st.len),
                None => return Ok(()),
            }
        };
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        for page in pages {
            let start = (page * PAGE_SIZE).max(len);
            let end = (page + 1) * PAGE_SIZE;
            if start >= end {
                continue;
            }
            let chunk = &mut buf[..(end - start) as usize];
            chunk.fill(0);
            // Short reads (past the memfd's end) leave zeros.
            let _ = std::os::unix::fs::FileExt::read_at(self.memfd_file(), chunk, start);
            if let Some(i) = chunk.iter().position(|&b| b != 0) {
                return Err(PageError::WrittenPastEnd {
                    fid: self.fid,
                    len,
                    offset: start + i as u64,
                });
            }
        }
        Ok(())
    }

    /// Decide the next store; for data, copy the bytes out and mark the pages flushing.
    fn next_store(&self, cursor: &mut u64) -> Result<Option<Planned>, PageError> {
        let mut st = self.lock();
        if let Some(at) = st.trunc_pending {
            return Ok(Some(Planned {
                kind: Kind::Truncate,
                offset: at,
                data: Bytes::new(),
                file_len: at,
            }));
        }
        let end_page = st.len.div_ceil(PAGE_SIZE);
        let runs = st
            .pages
            .runs(*cursor..end_page, |f| f & (DIRTY | FLUSHING) == DIRTY);
        if let Some(run) = runs.0.first() {
            let pages = run.start..run.end.min(run.start + self.params.max_store_pages);
            let bytes = pages.start * PAGE_SIZE..(pages.end * PAGE_SIZE).min(st.len);
            let mut buf = vec![0; usize::try_from(bytes.end - bytes.start).unwrap_or(0)];
            self.pread(bytes.start, &mut buf)?;
            let tick = self.tick();
            for p in pages.clone() {
                let f = st.pages.flags(p);
                st.pages.set(p, f | FLUSHING, None, tick);
            }
            *cursor = pages.end;
            return Ok(Some(Planned {
                kind: Kind::Data(pages),
                offset: bytes.start,
                data: Bytes::from(buf),
                file_len: st.len,
            }));
        }
        Ok((st.remote_len != st.len).then(|| Planned {
            kind: Kind::Length,
            offset: st.len,
            data: Bytes::new(),
            file_len: st.len,
        }))
    }

    /// Record a store's outcome.
    fn finish_store(
        &self,
        store: &Planned,
        result: Result<u64, BoxError>,
        report: &mut FlushReport,
    ) -> Result<(), PageError> {
        let mut st = self.lock();
        let dv = match result {
            Ok(dv) => dv,
            Err(e) => {
                if let Kind::Data(pages) = &store.kind {
                    let tick = self.tick();
                    for p in pages.clone() {
                        let f = st.pages.flags(p);
                        st.pages.set(p, f & !(FLUSHING | REDIRTY), None, tick);
                    }
                }
                return Err(PageError::Store {
                    fid: self.fid,
                    offset: store.offset,
                    len: store.data.len() as u64,
                    source: Arc::from(e),
                });
            }
        };
        let bytes = store.data.len() as u64;
        stats::add(&self.stats.bytes_stored, bytes);
        report.store_calls += 1;
        report.bytes_stored += bytes;
        report.data_version = Some(dv);
        match st.data_version {
            Some(v) if v.wrapping_add(1) == dv => st.pages.restamp(v, dv),
            Some(_) => report.third_party_change = true,
            None => {}
        }
        st.data_version = Some(dv);
        st.remote_len = store.file_len;
        match &store.kind {
            Kind::Truncate if st.trunc_pending == Some(store.offset) => st.trunc_pending = None,
            Kind::Data(pages) => {
                let flushed = self.mutate(&mut st, |st| {
                    mark_stored(st, pages.clone(), dv, self.tick())
                });
                stats::add(&self.stats.pages_flushed, flushed);
                report.pages_flushed += flushed;
            }
            _ => {}
        }
        if st.trunc_pending.is_some_and(|t| t >= st.remote_len) {
            st.trunc_pending = None;
        }
        Ok(())
    }
}

/// After a successful store: flushing pages become clean at `dv`, unless written again
/// meanwhile. Returns the pages made clean.
fn mark_stored(st: &mut super::file::FileState, pages: Range<u64>, dv: u64, tick: u64) -> u64 {
    let mut flushed = 0;
    for p in pages {
        let f = st.pages.flags(p);
        if f & FLUSHING == 0 {
            continue; // dropped by a truncation meanwhile
        }
        if f & REDIRTY != 0 {
            st.pages.set(p, f & !(FLUSHING | REDIRTY), None, tick);
        } else {
            st.pages.set(p, PRESENT, Some(dv), tick);
            flushed += 1;
        }
    }
    flushed
}
