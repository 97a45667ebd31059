//! The page store: the cached bytes of AFS files.
//!
//! Each cached file is a [`FileCache`]: a memfd holding the bytes, sized to the file
//! length rounded up to whole pages, and a sparse table with, per 4 KiB page, whether it
//! is present (fetched or written), dirty (written, not yet stored) and the DataVersion
//! it was fetched or stored at. The memfd is the shape guest mappings need next: a pager
//! maps it `MAP_SHARED` into every guest that maps the file (one copy in RAM), resolves
//! faults on holes by asking this store to fetch, and writes through `pwrite`. This
//! module itself never maps the memfd.
//!
//! * Reads serve present pages from the memfd and fetch missing ones in large aligned
//!   chunks ([`PageStoreConfig::chunk_bytes`]), one fetch per chunk however many readers
//!   miss it, several chunks in flight, with read-ahead for sequential access.
//! * Writes go to the memfd and mark pages dirty; [`FileCache::flush`] stores contiguous
//!   dirty runs with as few, large [`Storer`] calls as possible.
//! * [`FileCache::invalidate_clean`] drops clean pages after a third-party change and
//!   keeps dirty ones; [`FileCache::truncate_to`] applies a changed server length.
//! * A memory budget bounds present pages across files: clean chunks of files nobody
//!   [`hold`](PageStore::hold)s are evicted in LRU order; dirty pages never are.
//!
//! Fetching and storing go through the [`Fetcher`] and [`Storer`] traits (FetchData64 and
//! StoreData64 in the real client), so all of this is testable without a network.

mod error;
mod evict;
mod fetch;
mod file;
mod flush;
mod stats;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

pub use error::{BoxError, PageError};
pub use file::{Conflict, FileCache, Hold};
pub use flush::{FlushMode, FlushReport};
pub use stats::{PageStats, PageStatsSnapshot};

use crate::types::Fid;

/// Bytes per page: the unit of presence, dirtiness and (later) of guest mappings.
pub const PAGE_SIZE: u64 = 4096;

/// Largest file length (and end of any range) the store accepts: `off_t`'s largest
/// page-aligned value, which is also what a memfd can be sized to.
pub const MAX_FILE_SIZE: u64 = (i64::MAX as u64) & !(PAGE_SIZE - 1);

/// A boxed, sendable future: what [`Fetcher`] and [`Storer`] return, so both traits stay
/// object-safe without the async-trait crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes returned by a fetch.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The bytes from the requested offset on, in order, as the transport delivered them
    /// (several buffers so an Rx client need not concatenate its packets). May be shorter
    /// than asked at the end of the file.
    pub data: Vec<Bytes>,
    /// The file's DataVersion the bytes belong to.
    pub data_version: u64,
}

/// Brings in a byte range of a file from the server (FetchData64).
pub trait Fetcher: Send + Sync {
    /// Fetch `len` bytes at `offset` of `fid`.
    fn fetch(&self, fid: Fid, offset: u64, len: u64) -> BoxFuture<'_, Result<Fetched, BoxError>>;
}

/// Writes a byte range back to the server (StoreData64).
pub trait Storer: Send + Sync {
    /// Store `data` at `offset` of `fid` and make the file `file_len` bytes long (shorter
    /// cuts it, longer extends it with zeros). Returns the file's new DataVersion; a
    /// fileserver moves it by exactly one per store.
    fn store(
        &self,
        fid: Fid,
        offset: u64,
        data: Bytes,
        file_len: u64,
    ) -> BoxFuture<'_, Result<u64, BoxError>>;
}

/// Tuning of a [`PageStore`].
#[derive(Debug, Clone)]
pub struct PageStoreConfig {
    /// Most bytes of present pages across all files before clean pages are evicted.
    pub budget_bytes: u64,
    /// Size and alignment of a fetch (and the single-flight unit); rounded up to whole
    /// pages.
    pub chunk_bytes: u64,
    /// Fetches of one file talking to the server at once.
    pub max_fetches_in_flight: usize,
    /// Largest sequential read-ahead window (also capped to a quarter of the budget, so
    /// read-ahead cannot evict what the reader is about to use).
    pub readahead_max_bytes: u64,
    /// Largest single store.
    pub max_store_bytes: u64,
}

impl Default for PageStoreConfig {
    fn default() -> Self {
        Self {
            budget_bytes: 512 << 20,
            chunk_bytes: 1 << 20,
            max_fetches_in_flight: 4,
            readahead_max_bytes: 8 << 20,
            max_store_bytes: 64 << 20,
        }
    }
}

/// What all files of a store share.
pub(crate) struct Shared {
    stats: Arc<PageStats>,
    clock: Arc<AtomicU64>,
    files: Mutex<HashMap<Fid, Arc<FileCache>>>,
    budget_pages: u64,
    /// Pages reserved by fetches and writes about to install them.
    reserved: AtomicU64,
    /// One eviction at a time.
    evict_lock: Mutex<()>,
}

impl Shared {
    fn files(&self) -> MutexGuard<'_, HashMap<Fid, Arc<FileCache>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The cached bytes of every file, within one memory budget. Cheap to clone (shared).
#[derive(Clone)]
pub struct PageStore {
    shared: Arc<Shared>,
    params: file::Params,
    max_fetches: usize,
}

impl PageStore {
    /// An empty store.
    pub fn new(config: PageStoreConfig) -> Self {
        let chunk_pages = config.chunk_bytes.div_ceil(PAGE_SIZE).max(1);
        let chunk = chunk_pages * PAGE_SIZE;
        let cap = config.readahead_max_bytes.min(config.budget_bytes / 4);
        let params = file::Params {
            chunk_pages,
            readahead_cap: cap / chunk * chunk,
            max_store_pages: (config.max_store_bytes / PAGE_SIZE).max(1),
        };
        let shared = Arc::new(Shared {
            stats: Arc::default(),
            clock: Arc::default(),
            files: Mutex::default(),
            budget_pages: config.budget_bytes / PAGE_SIZE,
            reserved: AtomicU64::new(0),
            evict_lock: Mutex::default(),
        });
        Self {
            shared,
            params,
            max_fetches: config.max_fetches_in_flight.max(1),
        }
    }

    /// The counters, shared with the store (they keep moving).
    pub fn stats(&self) -> &Arc<PageStats> {
        &self.shared.stats
    }

    /// The cache of `fid`, created `len` bytes long if it is not cached yet. An existing
    /// cache keeps its own length (it may include local changes): apply a server-side
    /// length change with [`FileCache::truncate_to`].
    pub fn open(&self, fid: Fid, len: u64) -> Result<Arc<FileCache>, PageError> {
        let mut files = self.shared.files();
        if let Some(f) = files.get(&fid) {
            return Ok(f.clone());
        }
        let f = Arc::new(FileCache::create(
            fid,
            len,
            &self.shared,
            self.params,
            self.max_fetches,
        )?);
        files.insert(fid, f.clone());
        Ok(f)
    }

    /// The cache of `fid`, if open.
    pub fn get(&self, fid: Fid) -> Option<Arc<FileCache>> {
        self.shared.files().get(&fid).cloned()
    }

    fn file(&self, fid: Fid) -> Result<Arc<FileCache>, PageError> {
        self.get(fid).ok_or(PageError::NotOpen(fid))
    }

    /// Keep `fid`'s clean pages from eviction while the guard lives (a mapping, an open
    /// handle).
    pub fn hold(&self, fid: Fid) -> Result<Hold, PageError> {
        Ok(self.file(fid)?.hold())
    }

    /// Read up to `len` bytes at `offset` (short at end of file, empty past it).
    pub async fn read<F: Fetcher + ?Sized + 'static>(
        &self,
        fid: Fid,
        offset: u64,
        len: u64,
        fetcher: &Arc<F>,
    ) -> Result<Vec<u8>, PageError> {
        let file = self.file(fid)?;
        file::check_range(offset, len)?;
        let n = file.len().saturating_sub(offset).min(len);
        let mut buf =
            vec![0; usize::try_from(n).map_err(|_| PageError::OutOfRange { offset, len })?];
        let got = file.read_at(offset, &mut buf, fetcher).await?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Write `data` at `offset` (see [`FileCache::write_at`]).
    pub async fn write<F: Fetcher + ?Sized + 'static>(
        &self,
        fid: Fid,
        offset: u64,
        data: &[u8],
        fetcher: &Arc<F>,
    ) -> Result<(), PageError> {
        self.file(fid)?.write_at(offset, data, fetcher).await
    }

    /// Local truncate/extend (see [`FileCache::set_len`]).
    pub fn set_len(&self, fid: Fid, len: u64) -> Result<(), PageError> {
        self.file(fid)?.set_len(len)
    }

    /// Store `fid`'s dirty pages and length change (see [`FileCache::flush`]).
    pub async fn flush<S: Storer + ?Sized>(
        &self,
        fid: Fid,
        storer: &S,
        mode: FlushMode,
    ) -> Result<FlushReport, PageError> {
        self.file(fid)?.flush(storer, mode).await
    }

    /// Drop `fid`'s clean pages, keep its dirty ones (see [`FileCache::invalidate_clean`]).
    pub fn invalidate_clean(&self, fid: Fid) -> Result<u64, PageError> {
        self.file(fid)?.invalidate_clean()
    }

    /// Apply a server-side length change (see [`FileCache::truncate_to`]).
    pub fn truncate_to(&self, fid: Fid, len: u64) -> Result<(), PageError> {
        self.file(fid)?.truncate_to(len)
    }

    /// Bytes of present pages across all files.
    pub fn present_bytes(&self) -> u64 {
        self.shared.stats.snapshot().pages_present * PAGE_SIZE
    }

    /// The size of a fetch chunk, in bytes.
    pub fn chunk_bytes(&self) -> u64 {
        self.params.chunk_pages * PAGE_SIZE
    }

    /// The configured budget, in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.shared.budget_pages * PAGE_SIZE
    }

    /// Evict clean pages of unheld files down to the budget now. Returns the pages
    /// evicted.
    pub fn evict(&self) -> u64 {
        let _one = self
            .shared
            .evict_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.evict_to(self.shared.budget_pages)
    }

    /// Stop caching `fid` (deleted, or no longer wanted). Refused (`false`) while it has
    /// unflushed changes, is held, or is otherwise in use.
    pub fn forget(&self, fid: Fid) -> bool {
        let mut files = self.shared.files();
        let removable = files
            .get(&fid)
            .is_some_and(|f| Arc::strong_count(f) == 1 && !f.has_unflushed());
        if removable {
            files.remove(&fid);
        }
        removable
    }

    /// Close the memfds of files with nothing cached, nothing unflushed and no users, to
    /// bound the descriptors a long-running client keeps. Returns how many were dropped.
    pub fn prune_idle(&self) -> usize {
        let mut files = self.shared.files();
        let before = files.len();
        files.retain(|_, f| Arc::strong_count(f) > 1 || f.page_counts().0 > 0 || f.has_unflushed());
        before - files.len()
    }
}
