//! The pager: AFS file pages mapped into guest memory, kept coherent by page faults.
//!
//! A mapping is the page store's memfd for the file, mapped `MAP_SHARED|MAP_FIXED` over a
//! region of the guest's linear memory, and registered with userfaultfd for missing,
//! minor and write-protect faults. Every guest that maps a file maps the same memfd, so
//! the file's pages exist once in RAM and a write by one guest is seen by all at once.
//!
//! Coherence works as in Linux kAFS since 6e0e99d58a ("afs: Fix mmap coherency vs
//! 3rd-party changes"):
//! * a callback break, a server reset or an expired promise **zaps** the file's mappings
//!   (`MADV_DONTNEED`: page-table entries go, the memfd keeps the bytes), off the
//!   callback's reply path (`zap`);
//! * the guest's next access faults into the **revalidate hook** (`fault`): the cheap
//!   validity check first, FetchStatus when it fails, a refetch only of what changed, a
//!   new promise, and then the whole surrounding range is mapped again at once
//!   (fault-around), so a scan after a break costs a handful of faults;
//! * the first write to a clean page raises a write-protect fault that marks it dirty;
//!   `sync` re-arms write protection and stores the dirty pages (StoreData64).
//!
//! Faults are read by a dedicated thread that no guest ever runs on; anything that needs
//! the network runs on the AFS runtime. A guest blocked in a fault therefore never waits
//! for itself, whatever runtime the embedder runs guests on.

mod fault;
mod lend;
pub mod origin;
mod region;
mod stats;
mod zap;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use afs::cache::manager::CacheManager;
use afs::cache::pages::{FlushMode, FlushReport, MAX_FILE_SIZE};
use afs::client::Node;
use afs::error::ErrorKind;
use afs::types::{Fid, FileType};
use tokio::runtime::Handle;

use crate::afs_runtime::{block_on, RuntimeGone};
use crate::memory::GuestRegion;
use crate::uffd::Uffd;
pub use crate::uffd::UffdMode;
use lend::Lent;
use region::{MappedFile, Region};
use stats::add;
pub use stats::{PagerStats, PagerStatsSnapshot};

/// The unit of mapping and of dirty tracking.
pub const PAGE: usize = 4096;

/// Longest mapping: a guest's whole 32-bit address space.
pub const MAX_MAPPING: u64 = 4 << 30;

/// What a fault does when no fileserver for the file answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnreachable {
    /// Serve the cached bytes (which may be stale); trap if nothing is cached.
    Stale,
    /// Make the access trap; the trap names the file ("AFS server unreachable: PATH").
    Trap,
    /// Keep trying for up to this long, then trap.
    Wait(Duration),
}

#[derive(Debug, Clone)]
pub struct PagerConfig {
    pub on_unreachable: OnUnreachable,
    /// Bytes mapped (and fetched, if missing) per fault around the faulting address.
    /// Minor faults on a fully cached region map the whole region.
    pub fault_around: u64,
    /// How often mapped files are checked for promises that ran out (they are zapped so
    /// the next access revalidates).
    pub expiry_sweep: Duration,
    /// How long a store that failed because no fileserver answered is retried in the
    /// background (at unmap, close and exit); the pages stay dirty meanwhile.
    pub store_retry: Duration,
}

impl Default for PagerConfig {
    fn default() -> Self {
        Self {
            on_unreachable: OnUnreachable::Wait(Duration::from_secs(30)),
            fault_around: 8 << 20,
            expiry_sweep: Duration::from_secs(1),
            store_retry: Duration::from_secs(30),
        }
    }
}

/// How a mapping may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// Why the revalidate hook ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The fileserver broke the callback on the file (or on its volume).
    Break,
    /// The promise ran out.
    Expiry,
    /// The fileserver dropped all our callbacks (restart, InitCallBackState).
    ServerReset,
    /// The file had no promise yet (first fault, or after eviction).
    NoPromise,
    /// The guest asked (`revalidate-now`).
    Requested,
}

/// One run of the revalidate hook, as embedders observe it.
#[derive(Debug, Clone)]
pub struct RevalidateEvent {
    pub path: String,
    pub fid: Fid,
    pub reason: Reason,
    /// Whether the file's data version moved (changed cached pages were dropped).
    pub data_changed: bool,
    pub data_version: u64,
    pub took: Duration,
}

/// Receives every run of the revalidate hook.
pub trait RevalidateObserver: Send + Sync {
    fn revalidated(&self, event: &RevalidateEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum PagerError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}: mapping a directory")]
    IsDirectory(String),
    #[error("{0}: read-write mapping of a file opened read-only")]
    ReadOnly(String),
    #[error(transparent)]
    Afs(#[from] afs::rpc::Error),
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    #[error(transparent)]
    RuntimeGone(#[from] RuntimeGone),
}

impl PagerError {
    /// The AFS meaning of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_) | Self::Os(..) | Self::RuntimeGone(_) => ErrorKind::Other,
            Self::IsDirectory(_) => ErrorKind::IsDirectory,
            Self::ReadOnly(_) => ErrorKind::ReadOnly,
            Self::Afs(e) => e.kind(),
        }
    }

    /// Whether the error is a bad argument (as opposed to a failure).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::InvalidArgument(_))
    }
}

/// What to map.
pub struct MapRequest {
    /// The path the guest opened (for messages and events).
    pub path: String,
    pub node: Node,
    /// File offset, a multiple of 4096.
    pub offset: u64,
    /// Bytes to map; the region must be this long rounded up to 4096.
    pub length: u64,
    pub region: GuestRegion,
    pub access: Access,
    /// The mapper's cache manager: its identity's rights decide whether it may map the
    /// file, and its faults revalidate as that identity.
    pub cache: Arc<CacheManager>,
}

/// Mapped regions by address, and mapped files with their mappings (a break zaps a
/// file's mappings without scanning everyone's).
#[derive(Default)]
struct Maps {
    regions: BTreeMap<usize, Arc<Region>>,
    files: HashMap<Fid, (Arc<MappedFile>, Vec<Arc<Region>>)>,
}

/// Maps files into guest memory and serves the faults.
pub struct Pager {
    uffd: Uffd,
    cache: Arc<CacheManager>,
    runtime: Handle,
    config: PagerConfig,
    maps: RwLock<Maps>,
    observers: RwLock<Vec<Arc<dyn RevalidateObserver>>>,
    stats: PagerStats,
    next_id: AtomicU64,
    /// An eventfd that tells the fault thread to stop.
    stop: OwnedFd,
    /// Pages lent to host code that faulted (see [`Pager::after_host_call`]).
    lent_to_host: Mutex<Vec<Lent>>,
    any_lent_to_host: AtomicBool,
}

impl Pager {
    /// Starts the pager: its userfaultfd, the fault thread, and the tasks that zap
    /// mappings on callback breaks and expired promises.
    pub fn new(
        cache: Arc<CacheManager>,
        runtime: Handle,
        config: PagerConfig,
    ) -> Result<Arc<Self>, PagerError> {
        let uffd = Uffd::open().map_err(|e| PagerError::Os("userfaultfd", e))?;
        // SAFETY: eventfd(2) takes a count and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(PagerError::Os("eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let pager = Arc::new(Self {
            uffd,
            cache,
            runtime,
            config,
            maps: RwLock::default(),
            observers: RwLock::default(),
            stats: PagerStats::default(),
            next_id: AtomicU64::new(1),
            stop,
            lent_to_host: Mutex::default(),
            any_lent_to_host: AtomicBool::new(false),
        });
        fault::spawn_thread(&pager).map_err(|e| PagerError::Os("fault thread", e))?;
        zap::spawn_watchers(&pager);
        Ok(pager)
    }

    /// Adds an observer of the revalidate hook.
    pub fn observe(&self, observer: Arc<dyn RevalidateObserver>) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    /// How the pager's userfaultfd was opened: as an ordinary user, it catches only
    /// faults taken in user mode (which is all the host needs).
    pub fn uffd_mode(&self) -> UffdMode {
        self.uffd.mode()
    }

    pub fn stats(&self) -> PagerStatsSnapshot {
        self.stats.snapshot()
    }

    pub fn cache(&self) -> &Arc<CacheManager> {
        &self.cache
    }

    /// Maps `req.region` onto the file's pages. Blocks while the file is validated.
    pub fn map(self: &Arc<Self>, req: MapRequest) -> Result<Mapping, PagerError> {
        check_request(&req)?;
        let file = self.mapped_file(&req)?;
        let len = req.region.len();
        let end = req.offset + len as u64;
        file.cache
            .reserve_mapped(end)
            .map_err(|e| PagerError::Os("sizing the page store", std::io::Error::other(e)))?;
        let region = Arc::new(Region {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            file: file.clone(),
            guest: req.region.clone(),
            addr: req.region.addr(),
            len,
            length: req.length,
            offset: req.offset,
            access: req.access,
            poisoned: Mutex::new(None),
            who: req.cache.client().who(&req.node.cell),
            cache: req.cache.clone(),
        });
        self.insert(&region)?;
        let whole = (region.addr, region.len);
        let mapped = region::map_shared(&req.region, file.cache.memfd(), req.offset, whole)
            .map_err(|e| PagerError::Os("mmap", e))
            .and_then(|()| {
                self.uffd
                    .register(region.addr, region.len)
                    .map_err(|e| PagerError::Os("userfaultfd register", e))
            });
        if let Err(e) = mapped {
            self.remove(&region);
            let _ = region::restore_anonymous(&region.guest);
            return Err(e);
        }
        tracing::debug!(path = %req.path, offset = req.offset, len, access = ?req.access, "mapped");
        Ok(Mapping {
            pager: self.clone(),
            region: Some(region),
        })
    }

    /// Stores every dirty page of the file, written by copy or through any mapping
    /// (see [`CacheManager::flush`] for conflicts and `mode`), as `cache`'s identity (the
    /// writer's: the server decides whether it may).
    pub fn sync_file(
        &self,
        cache: &Arc<CacheManager>,
        node: &Node,
        mode: FlushMode,
    ) -> Result<FlushReport, PagerError> {
        self.rearm_write_protect(node.fid)?;
        let cache = cache.clone();
        let node = self.current_node(node);
        Ok(block_on(&self.runtime, async move {
            cache.flush(&node, mode).await
        })??)
    }

    /// Retries storing the file's dirty pages in the background while no fileserver
    /// answers, for [`PagerConfig::store_retry`]; the pages stay dirty meanwhile. Any
    /// other outcome ends the retries. Wait for the outcome with [`PendingStore::wait`].
    pub fn store_in_background(
        &self,
        cache: &Arc<CacheManager>,
        path: &str,
        node: &Node,
    ) -> PendingStore {
        let cache = cache.clone();
        let node = self.current_node(node);
        let deadline = tokio::time::Instant::now() + self.config.store_retry;
        let fid = node.fid;
        tracing::info!(%path, "no fileserver answers; retrying the store in the background");
        let task = self.runtime.spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                match cache.flush(&node, FlushMode::Normal).await {
                    Err(e)
                        if e.kind() == ErrorKind::ServerUnreachable
                            && tokio::time::Instant::now() + wait < deadline =>
                    {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                    other => return other.map_err(PagerError::from),
                }
            }
        });
        PendingStore {
            path: path.to_string(),
            fid,
            runtime: self.runtime.clone(),
            task,
        }
    }

    /// If a guest fault at host address `addr` was the pager's doing (a write to a
    /// read-only mapping, an unreachable server under [`OnUnreachable::Trap`]), what to
    /// tell the user, naming the file.
    pub fn explain_fault(&self, addr: usize) -> Option<String> {
        let region = self.region_at(addr)?;
        if let Some(msg) = region
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(msg);
        }
        (region.access == Access::Read)
            .then(|| format!("write to a read-only mapping of {}", region.file.path))
    }

    /// Every mapped file, with how many mappings it has.
    pub fn mapped_files(&self) -> Vec<(Fid, String, usize)> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.files
            .values()
            .map(|(f, regions)| (f.fid, f.path.clone(), regions.len()))
            .collect()
    }
}

impl Pager {
    /// The shared record of the mapped file. The mapper's identity is validated every
    /// time (no network while its rights are known under the promise): a file another
    /// identity mapped is not thereby open to this one.
    fn mapped_file(&self, req: &MapRequest) -> Result<Arc<MappedFile>, PagerError> {
        let cache = req.cache.clone();
        let node = req.node.clone();
        let node = block_on(&self.runtime, async move { cache.revalidate(&node).await })??;
        let file_cache = req.cache.open_file(&node)?;
        if let Some((f, _)) = self.maps().files.get(&req.node.fid) {
            return Ok(f.clone());
        }
        Ok(Arc::new(MappedFile {
            fid: node.fid,
            path: req.path.clone(),
            node: Mutex::new(node),
            _hold: file_cache.hold(),
            cache: file_cache,
            zap_gen: AtomicU64::new(0),
            zap_reason: Mutex::new(None),
        }))
    }

    fn maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, region: &Arc<Region>) -> Result<(), PagerError> {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let end = region.addr + region.len;
        let overlaps = maps
            .regions
            .range(..end)
            .next_back()
            .is_some_and(|(_, r)| r.addr + r.len > region.addr);
        if overlaps {
            return Err(PagerError::InvalidArgument(
                "the region overlaps a live mapping".into(),
            ));
        }
        maps.regions.insert(region.addr, region.clone());
        maps.files
            .entry(region.file.fid)
            .or_insert_with(|| (region.file.clone(), Vec::new()))
            .1
            .push(region.clone());
        Ok(())
    }

    fn remove(&self, region: &Arc<Region>) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        if maps
            .regions
            .get(&region.addr)
            .is_some_and(|r| r.id == region.id)
        {
            maps.regions.remove(&region.addr);
        }
        if let Some(entry) = maps.files.get_mut(&region.file.fid) {
            entry.1.retain(|r| r.id != region.id);
            if entry.1.is_empty() {
                maps.files.remove(&region.file.fid);
                // The zero pages faulted in past the end of the file go with the last
                // mapping (they are the guest's pinned bytes, not the file's).
                if let Err(e) = region.file.cache.release_mapped() {
                    tracing::warn!(path = %region.file.path, "releasing mapped space: {e}");
                }
            }
        }
    }

    fn region_at(&self, addr: usize) -> Option<Arc<Region>> {
        let maps = self.maps();
        let (_, r) = maps.regions.range(..=addr).next_back()?;
        r.contains(addr).then(|| r.clone())
    }

    fn regions_of(&self, fid: Fid) -> Vec<Arc<Region>> {
        self.maps()
            .files
            .get(&fid)
            .map(|(_, regions)| regions.clone())
            .unwrap_or_default()
    }

    /// The newest node the pager has for the file (validation refreshes it).
    fn current_node(&self, node: &Node) -> Node {
        match self.maps().files.get(&node.fid) {
            Some((f, _)) => f.node(),
            None => node.clone(),
        }
    }

    /// Write-protect every writable mapping of `fid` again, so writes after this point
    /// fault and mark their pages dirty (a store that is copying them cannot lose them).
    fn rearm_write_protect(&self, fid: Fid) -> Result<(), PagerError> {
        for r in self.regions_of(fid) {
            if r.access == Access::ReadWrite {
                self.uffd
                    .write_protect(r.addr, r.len, true)
                    .map_err(|e| PagerError::Os("userfaultfd write-protect", e))?;
            }
        }
        Ok(())
    }

    fn unmap(&self, region: &Arc<Region>) -> Result<(), PagerError> {
        let flushed = if region.access == Access::ReadWrite && region.file.cache.has_unflushed() {
            self.sync_file(&region.cache, &region.file.node(), FlushMode::Normal)
                .map(drop)
        } else {
            Ok(())
        };
        self.remove(region);
        // The range is unregistered with the mapping that replaces it (a new VMA).
        let restored = region::restore_anonymous(&region.guest)
            .map_err(|e| PagerError::Os("restoring guest memory", e));
        tracing::debug!(path = %region.file.path, offset = region.offset, "unmapped");
        flushed.and(restored)
    }

    fn emit(&self, event: &RevalidateEvent) {
        tracing::info!(
            path = %event.path,
            reason = ?event.reason,
            changed = event.data_changed,
            dv = event.data_version,
            took_us = event.took.as_micros() as u64,
            "revalidated"
        );
        for o in self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            o.revalidated(event);
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

fn check_request(req: &MapRequest) -> Result<(), PagerError> {
    let region = (req.region.addr(), req.region.len());
    check_map_request(&req.path, &req.node, req.offset, req.length, region)
}

/// Checks what a map request asks for (the file, the range, the region's alignment and
/// size) before anything is mapped; the embedder can check a request before it knows
/// the region to be guest memory. [`Pager::map`] checks again.
pub fn check_map_request(
    path: &str,
    node: &Node,
    offset: u64,
    length: u64,
    (addr, len): (usize, usize),
) -> Result<(), PagerError> {
    let bad = |m: String| Err(PagerError::InvalidArgument(format!("{path}: {m}")));
    if node.status.file_type == FileType::Directory {
        return Err(PagerError::IsDirectory(path.to_string()));
    }
    if node.status.file_type != FileType::File {
        return bad("not a regular file".into());
    }
    if length == 0 {
        return bad("mapping length is zero".into());
    }
    if length > MAX_MAPPING {
        return bad(format!("mapping length {length} is over 4 GiB"));
    }
    if !offset.is_multiple_of(PAGE as u64) {
        return bad(format!("file offset {offset} is not a multiple of 4096"));
    }
    if offset.checked_add(length).is_none_or(|e| e > MAX_FILE_SIZE) {
        return bad("the range ends past the largest file".into());
    }
    if !addr.is_multiple_of(PAGE) {
        return bad("the region is not 4096-byte aligned".into());
    }
    let want = length.div_ceil(PAGE as u64) * PAGE as u64;
    if len as u64 != want {
        return bad(format!(
            "the region is {len} bytes; mapping {length} bytes needs exactly {want}"
        ));
    }
    Ok(())
}

/// A store being retried in the background (see [`Pager::store_in_background`]).
pub struct PendingStore {
    path: String,
    fid: Fid,
    runtime: Handle,
    task: tokio::task::JoinHandle<Result<FlushReport, PagerError>>,
}

impl PendingStore {
    /// The path of the file being stored.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn fid(&self) -> Fid {
        self.fid
    }

    /// Waits until the file is stored or the retries end.
    pub fn wait(self) -> Result<FlushReport, PagerError> {
        match block_on(&self.runtime, self.task)? {
            Ok(outcome) => outcome,
            Err(e) => Err(PagerError::Os(
                "the background store",
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}

/// A live mapping. Dropping it stores its dirty pages and unmaps it (errors are logged;
/// call [`Mapping::unmap`] to see them).
pub struct Mapping {
    pager: Arc<Pager>,
    region: Option<Arc<Region>>,
}

impl Mapping {
    fn region(&self) -> &Arc<Region> {
        // Only `unmap` (which consumes self) and `drop` take the region.
        self.region.as_ref().expect("a live mapping has its region")
    }

    pub fn offset(&self) -> u64 {
        self.region().offset
    }

    pub fn length(&self) -> u64 {
        self.region().length
    }

    pub fn access(&self) -> Access {
        self.region().access
    }

    /// The path the file was mapped by.
    pub fn path(&self) -> &str {
        &self.region().file.path
    }

    /// The file's node as the pager last validated it.
    pub fn node(&self) -> Node {
        self.region().file.node()
    }

    /// The data version the mapped bytes belong to.
    pub fn data_version(&self) -> u64 {
        let file = &self.region().file;
        file.cache
            .data_version()
            .unwrap_or_else(|| file.node().status.data_version())
    }

    /// Stores the pages written through this mapping (and the file's other dirty pages).
    pub fn sync(&self) -> Result<(), PagerError> {
        let region = self.region();
        if region.access == Access::Read {
            return Ok(());
        }
        self.pager
            .sync_file(&region.cache, &region.file.node(), FlushMode::Normal)
            .map(drop)
    }

    /// Validates now and refreshes changed bytes; returns the data version.
    pub fn revalidate_now(&self) -> Result<u64, PagerError> {
        let pager = self.pager.clone();
        let region = self.region().clone();
        let rt = self.pager.runtime.clone();
        block_on(&rt, async move {
            pager
                .revalidate(&region.cache, &region.file, Reason::Requested)
                .await
        })?
    }

    /// Stores dirty pages, then gives the region back as zeroed anonymous memory.
    pub fn unmap(mut self) -> Result<(), PagerError> {
        let region = self.region.take().expect("a live mapping has its region");
        self.pager.unmap(&region)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(region) = self.region.take() {
            if let Err(e) = self.pager.unmap(&region) {
                tracing::warn!(path = %region.file.path, "unmapping: {e}");
            }
        }
    }
}
