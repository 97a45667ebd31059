//! Reading and writing through the cache: single-flight chunk fetches and read-ahead.
//!
//! A fetch is per chunk (`chunk_bytes`, 1 MiB by default): the chunk is the unit of
//! single-flight, so any number of readers missing pages of one chunk cause one fetch.
//! Each fetch runs as its own tokio task: a reader that gives up (its future dropped)
//! does not cancel a fetch others wait for, and read-ahead keeps running after the read
//! that triggered it returned. A per-file semaphore bounds the fetches talking to the
//! server at once (`max_fetches_in_flight`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::error::PageError;
use super::file::{check_range, pages_of, FileCache, FileState};
use super::stats;
use super::table::{Runs, DIRTY, PRESENT};
use super::{Fetched, Fetcher, PAGE_SIZE};

/// How a fetch ended, as seen by the readers waiting for it.
#[derive(Debug, Clone)]
pub(super) enum FlightState {
    Running,
    /// Installed (or nothing was missing any more): look again.
    Done,
    /// The data was invalidated while the fetch ran and was thrown away: look again.
    Retry,
    Failed(PageError),
}

/// A fetch under way: readers subscribe to `rx`.
pub(super) struct Flight {
    id: u64,
    rx: watch::Receiver<FlightState>,
}

/// Sequential-access detection for one file.
///
/// A read that starts where the previous one ended (or within its last page) is
/// sequential. Sequential reads keep `window` bytes fetched or in flight ahead of the
/// reader; the window starts at two chunks and doubles each time it is topped up, up to
/// `readahead_cap`. Top-ups happen once less than half a window is left ahead, so the
/// fetches overlap the reader's consumption instead of waiting for a miss. Any other read
/// resets the window. One detector per file (not per open handle): two interleaved
/// sequential readers of one file defeat it, which is acceptable for now.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    next: u64,
    window: u64,
    issued_to: u64,
}

impl ReadAhead {
    /// Record a read of `[offset, end)`; returns a byte range to fetch ahead, if any.
    fn on_read(&mut self, offset: u64, end: u64, chunk: u64, cap: u64) -> Option<Range<u64>> {
        let sequential = offset == self.next
            || (offset < self.next && offset / PAGE_SIZE == (self.next - 1) / PAGE_SIZE);
        self.next = end;
        if !sequential || cap == 0 {
            self.window = 0;
            self.issued_to = 0;
            return None;
        }
        if self.window == 0 {
            self.window = (2 * chunk).min(cap);
            self.issued_to = end;
        }
        let ahead = self.issued_to.saturating_sub(end);
        if ahead >= self.window / 2 {
            return None;
        }
        let from = self.issued_to.max(end);
        let to = end.saturating_add(self.window);
        self.issued_to = to;
        self.window = (self.window * 2).min(cap);
        Some(from..to)
    }
}

/// What one look at the state decided.
enum Step<T> {
    Done(T),
    Wait(Vec<watch::Receiver<FlightState>>),
}

impl FileCache {
    /// Read up to `buf.len()` bytes at `offset`, fetching missing pages. Returns the
    /// bytes read: short at end of file, 0 past it.
    pub async fn read_at<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        offset: u64,
        buf: &mut [u8],
        fetcher: &Arc<F>,
    ) -> Result<usize, PageError> {
        check_range(offset, buf.len() as u64)?;
        let mut first = true;
        loop {
            match self.try_read(offset, buf, fetcher, first)? {
                Step::Done(n) => return Ok(n),
                Step::Wait(flights) => wait_all(flights).await?,
            }
            first = false;
        }
    }

    /// Make every page of the bytes `[start, end)` present (fetching what is missing, in
    /// whole chunks, single-flight), without copying anything out: what a pager needs
    /// before it maps the pages. Pages past what the server has stay holes (zeros).
    pub async fn populate<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        start: u64,
        end: u64,
        fetcher: &Arc<F>,
    ) -> Result<(), PageError> {
        check_range(start, end.saturating_sub(start))?;
        loop {
            let flights = {
                let mut st = self.lock();
                let missing = missing_runs(&st, pages_of(start, end));
                if missing.0.is_empty() {
                    self.touch(&mut st, start, end);
                    return Ok(());
                }
                self.join_runs(&mut st, &missing, fetcher)?
            };
            wait_all(flights).await?;
        }
    }

    fn try_read<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        offset: u64,
        buf: &mut [u8],
        fetcher: &Arc<F>,
        first: bool,
    ) -> Result<Step<usize>, PageError> {
        let mut st = self.lock();
        let end = (offset + buf.len() as u64).min(st.len);
        if offset >= end {
            return Ok(Step::Done(0));
        }
        let pages = pages_of(offset, end);
        let missing = missing_runs(&st, pages.clone());
        if first {
            let hits = (pages.end - pages.start) - missing.pages();
            stats::add(&self.stats.hits, hits);
        }
        let mut flights = self.join_runs(&mut st, &missing, fetcher)?;
        if first {
            let chunk = self.params.chunk_pages * PAGE_SIZE;
            if let Some(ahead) = st.ra.on_read(offset, end, chunk, self.params.readahead_cap) {
                self.read_ahead(&mut st, ahead, fetcher)?;
            }
        }
        if !flights.is_empty() {
            return Ok(Step::Wait(std::mem::take(&mut flights)));
        }
        let n = usize::try_from(end - offset).unwrap_or(buf.len());
        self.copy_out(&mut st, offset, &mut buf[..n])?;
        Ok(Step::Done(n))
    }

    /// Start (or join) fetches of the chunks holding `runs`.
    fn join_runs<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        st: &mut FileState,
        runs: &Runs,
        fetcher: &Arc<F>,
    ) -> Result<Vec<watch::Receiver<FlightState>>, PageError> {
        let mut chunks: Vec<u64> = Vec::new();
        for r in &runs.0 {
            let (c0, c1) = (st.pages.chunk_of(r.start), st.pages.chunk_of(r.end - 1));
            chunks.extend(c0..=c1);
        }
        chunks.dedup();
        chunks
            .into_iter()
            .map(|c| self.join_or_start(st, c, fetcher))
            .collect()
    }

    /// Start fetches for the missing pages of `[range)` that nobody fetches yet.
    fn read_ahead<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        st: &mut FileState,
        range: Range<u64>,
        fetcher: &Arc<F>,
    ) -> Result<(), PageError> {
        let limit = st.fetch_limit();
        let pages = pages_of(range.start.min(limit), range.end.min(limit));
        let missing = missing_runs(st, pages);
        self.join_runs(st, &missing, fetcher).map(drop)
    }

    /// Subscribe to the fetch of `chunk`, starting one if none is under way.
    fn join_or_start<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        st: &mut FileState,
        chunk: u64,
        fetcher: &Arc<F>,
    ) -> Result<watch::Receiver<FlightState>, PageError> {
        if let Some(f) = st.inflight.get(&chunk) {
            return Ok(f.rx.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PageError::NoRuntime)?;
        let (tx, rx) = watch::channel(FlightState::Running);
        let id = st.next_flight;
        st.next_flight += 1;
        st.inflight.insert(chunk, Flight { id, rx: rx.clone() });
        let task = run_flight(self.clone(), chunk, id, fetcher.clone(), tx);
        runtime.spawn(task);
        Ok(rx)
    }

    /// Write `data` at `offset`, extending the file if it ends past the end.
    ///
    /// Dirtiness is tracked per page, so a page only partly overwritten must hold its old
    /// bytes first: such a page is fetched before the write unless it is beyond what the
    /// server has (then it is zeros). This costs at most two page fetches per write (its
    /// first and last page) and keeps flushes simple: a dirty page is stored whole.
    pub async fn write_at<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        offset: u64,
        data: &[u8],
        fetcher: &Arc<F>,
    ) -> Result<(), PageError> {
        let end = check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        let incoming = missing_runs(&self.lock(), pages_of(offset, end)).pages();
        let _room = self.shared.upgrade().map(|s| s.make_room(incoming));
        loop {
            match self.try_write(offset, data, fetcher)? {
                Step::Done(()) => return Ok(()),
                Step::Wait(flights) => wait_all(flights).await?,
            }
        }
    }

    fn try_write<F: Fetcher + ?Sized + 'static>(
        self: &Arc<Self>,
        offset: u64,
        data: &[u8],
        fetcher: &Arc<F>,
    ) -> Result<Step<()>, PageError> {
        let mut st = self.lock();
        let end = offset + data.len() as u64;
        let limit = st.fetch_limit();
        let mut edges = Runs::default();
        for p in partial_pages(offset, end) {
            let fetchable = p * PAGE_SIZE < limit;
            if fetchable && st.pages.flags(p) & PRESENT == 0 {
                edges.push(p..p + 1);
            }
        }
        if !edges.0.is_empty() {
            return Ok(Step::Wait(self.join_runs(&mut st, &edges, fetcher)?));
        }
        self.apply_write(&mut st, offset, data)?;
        Ok(Step::Done(()))
    }

    /// Fetch the missing pages of `chunk` and install them. `Ok(false)`: the data was
    /// invalidated meanwhile and thrown away.
    async fn fetch_chunk<F: Fetcher + ?Sized>(
        &self,
        chunk: u64,
        fetcher: &F,
    ) -> Result<bool, PageError> {
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .map_err(|_| PageError::NoRuntime)?;
        let Some((span, epoch)) = self.missing_span(chunk) else {
            return Ok(true);
        };
        self.fetch_span(span, epoch, fetcher).await
    }

    /// Fetch the bytes `span` and install them into the pages still missing.
    async fn fetch_span<F: Fetcher + ?Sized>(
        &self,
        span: Range<u64>,
        epoch: u64,
        fetcher: &F,
    ) -> Result<bool, PageError> {
        let len = span.end - span.start;
        stats::add(&self.stats.fetch_calls, 1);
        let fetched = fetcher
            .fetch(self.fid, span.start, len)
            .await
            .map_err(|e| PageError::Fetch {
                fid: self.fid,
                offset: span.start,
                len,
                source: Arc::from(e),
            })?;
        let got: u64 = fetched.data.iter().map(|b| b.len() as u64).sum();
        if got > len {
            return Err(PageError::Oversized {
                fid: self.fid,
                asked: len,
                got,
            });
        }
        stats::add(&self.stats.bytes_fetched, got);
        let incoming = len.div_ceil(PAGE_SIZE);
        let _room = self.shared.upgrade().map(|s| s.make_room(incoming));
        self.install(span, epoch, &fetched)
    }

    /// Make the pages of `[start, end)` present with one fetch of just their missing
    /// pages, outside the chunk flights: for small guest mappings, where fetching a whole
    /// chunk to bring in one page would multiply the cost of every change. (Concurrent
    /// fetches of the same pages are harmless: only missing pages are installed.)
    pub async fn populate_exact<F: Fetcher + ?Sized>(
        &self,
        start: u64,
        end: u64,
        fetcher: &F,
    ) -> Result<(), PageError> {
        check_range(start, end.saturating_sub(start))?;
        loop {
            let (span, epoch) = {
                let mut st = self.lock();
                let limit = st.fetch_limit();
                let missing = missing_runs(&st, pages_of(start, end.min(limit)));
                let (Some(first), Some(last)) = (missing.0.first(), missing.0.last()) else {
                    self.touch(&mut st, start, end);
                    return Ok(());
                };
                let span = first.start * PAGE_SIZE..(last.end * PAGE_SIZE).min(limit);
                (span, st.epoch)
            };
            let _slot = self
                .fetch_slots
                .acquire()
                .await
                .map_err(|_| PageError::NoRuntime)?;
            self.fetch_span(span, epoch, fetcher).await?;
        }
    }

    /// The byte range to fetch for `chunk`: from its first to its last missing page,
    /// clipped to the fetch limit; and the epoch it was decided in.
    fn missing_span(&self, chunk: u64) -> Option<(Range<u64>, u64)> {
        let st = self.lock();
        let limit = st.fetch_limit();
        let pages = st.pages.chunk_pages(chunk);
        let pages = pages.start..pages.end.min(limit.div_ceil(PAGE_SIZE));
        let missing = missing_runs(&st, pages);
        let (first, last) = (missing.0.first()?, missing.0.last()?);
        let span = first.start * PAGE_SIZE..(last.end * PAGE_SIZE).min(limit);
        Some((span, st.epoch))
    }

    /// Write fetched bytes into the pages of `span` that are still missing and mark them
    /// present at the fetch's DataVersion. Pages the reply falls short of are left zero
    /// and marked present too (the server's file got shorter: validation will notice the
    /// length; refetching in a loop would not help).
    fn install(&self, span: Range<u64>, epoch: u64, fetched: &Fetched) -> Result<bool, PageError> {
        let mut st = self.lock();
        if st.epoch != epoch {
            return Ok(false);
        }
        let limit = st.fetch_limit().min(span.end);
        let missing = missing_runs(&st, pages_of(span.start, limit));
        for run in &missing.0 {
            let bytes = (run.start * PAGE_SIZE).max(span.start)..(run.end * PAGE_SIZE).min(limit);
            self.copy_segments(&fetched.data, span.start, bytes)?;
        }
        let tick = self.tick();
        let dv = fetched.data_version;
        self.mutate(&mut st, |st| {
            for p in missing.0.iter().flat_map(|r| r.clone()) {
                st.pages.set(p, PRESENT, Some(dv), tick);
            }
        });
        stats::add(&self.stats.pages_fetched, missing.pages());
        // A fetch can come back with another version than the clean pages already
        // here (the file changed after the read was validated): the file then holds
        // two versions. Keep the older one, so that the next validation, finding the
        // server's version differs, drops the pages of the version that is gone
        // instead of serving them next to the new ones.
        let mixed = st.data_version.is_some_and(|v| v != dv) && {
            let clean = st.pages.all_runs(|f| f & (PRESENT | DIRTY) == PRESENT);
            let mut pages = clean.0.iter().flat_map(|r| r.clone());
            pages.any(|p| st.pages.version(p).is_some_and(|v| v != dv))
        };
        st.data_version = Some(match st.data_version {
            Some(v) if mixed => v.min(dv),
            _ => dv,
        });
        Ok(true)
    }

    /// Write the part of `segments` (which start at file offset `base`) that falls in
    /// `bytes` into the memfd.
    fn copy_segments(
        &self,
        segments: &[Bytes],
        base: u64,
        bytes: Range<u64>,
    ) -> Result<(), PageError> {
        // Segments are single Rx packets (~1.4 KiB): gather the contiguous slices and
        // write them with pwritev, not one system call each.
        let mut at = base;
        let mut start = None;
        let mut slices: Vec<&[u8]> = Vec::new();
        for seg in segments {
            let seg_end = at + seg.len() as u64;
            let (from, to) = (at.max(bytes.start), seg_end.min(bytes.end));
            if from < to {
                start.get_or_insert(from);
                slices.push(
                    &seg[usize::try_from(from - at).unwrap_or(0)
                        ..usize::try_from(to - at).unwrap_or(0)],
                );
            }
            at = seg_end;
        }
        match start {
            Some(offset) => self.pwrite_all(offset, &slices),
            None => Ok(()),
        }
    }

    /// Forget flight `id` of `chunk` (it ended, or its task went away).
    fn end_flight(&self, chunk: u64, id: u64) {
        let mut st = self.lock();
        if st.inflight.get(&chunk).is_some_and(|f| f.id == id) {
            st.inflight.remove(&chunk);
        }
    }
}

/// Missing pages of `pages` that can be fetched (below the fetch limit).
fn missing_runs(st: &FileState, pages: Range<u64>) -> Runs {
    let fetchable = st.fetch_limit().div_ceil(PAGE_SIZE);
    st.pages
        .runs(pages.start..pages.end.min(fetchable), |f| f & PRESENT == 0)
}

/// The (at most two) pages a write of `[offset, end)` covers only in part.
fn partial_pages(offset: u64, end: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(2);
    if !offset.is_multiple_of(PAGE_SIZE) || end - offset < PAGE_SIZE {
        out.push(offset / PAGE_SIZE);
    }
    if !end.is_multiple_of(PAGE_SIZE) && out.last() != Some(&(end / PAGE_SIZE)) {
        out.push(end / PAGE_SIZE);
    }
    out
}

/// Removes the flight's entry when its task ends for any reason (even a runtime shutting
/// down), so no reader can subscribe to a fetch that will never report.
struct FlightGuard {
    file: Arc<FileCache>,
    chunk: u64,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.file.end_flight(self.chunk, self.id);
    }
}

async fn run_flight<F: Fetcher + ?Sized + 'static>(
    file: Arc<FileCache>,
    chunk: u64,
    id: u64,
    fetcher: Arc<F>,
    tx: watch::Sender<FlightState>,
) {
    let guard = FlightGuard {
        file: file.clone(),
        chunk,
        id,
    };
    let state = match file.fetch_chunk(chunk, &*fetcher).await {
        Ok(true) => FlightState::Done,
        Ok(false) => FlightState::Retry,
        Err(e) => FlightState::Failed(e),
    };
    // Forget the flight before waking its readers: one that looks again must not find it.
    drop(guard);
    tx.send_replace(state);
}

/// Wait for every flight; the first failure is returned. A flight whose task vanished
/// counts as done: the caller looks at the pages again.
async fn wait_all(flights: Vec<watch::Receiver<FlightState>>) -> Result<(), PageError> {
    for mut rx in flights {
        let failed = match rx.wait_for(|s| !matches!(s, FlightState::Running)).await {
            Ok(s) => match &*s {
                FlightState::Failed(e) => Some(e.clone()),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}
