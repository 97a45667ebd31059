//! The pager: AFS file pages mapped into guest memory, kept coherent by page faults.
//!
//! (API scaffold; the implementation lands with the pager commit.)

use std::sync::Arc;
use std::time::Duration;

use afs::cache::manager::CacheManager;
use afs::cache::pages::FlushReport;
use afs::client::Node;
use afs::error::ErrorKind;
use afs::types::Fid;

use crate::memory::GuestRegion;

/// What a fault does when no fileserver for the file answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnreachable {
    /// Serve the cached bytes (which may be stale, or zeros if never fetched).
    Stale,
    /// Make the access trap; the trap names the file ("AFS server unreachable: PATH").
    Trap,
    /// Keep trying for up to this long, then trap.
    Wait(Duration),
}

#[derive(Debug, Clone)]
pub struct PagerConfig {
    pub on_unreachable: OnUnreachable,
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
    /// Whether the file's data version moved (cached pages were dropped).
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
}

impl PagerError {
    /// The AFS meaning of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_) | Self::Os(..) => ErrorKind::Other,
            Self::IsDirectory(_) => ErrorKind::IsDirectory,
            Self::ReadOnly(_) => ErrorKind::ReadOnly,
            Self::Afs(e) => e.kind(),
        }
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
}

/// Maps files into guest memory and serves the faults.
pub struct Pager {}

impl Pager {
    pub fn new(
        _cache: Arc<CacheManager>,
        _runtime: tokio::runtime::Handle,
        _config: PagerConfig,
    ) -> Result<Arc<Self>, PagerError> {
        unimplemented!("pager scaffold")
    }

    /// Adds an observer of the revalidate hook.
    pub fn observe(&self, _observer: Arc<dyn RevalidateObserver>) {
        unimplemented!("pager scaffold")
    }

    /// Maps `req.region` onto the file's pages. Blocks (validation, the first fetch).
    pub fn map(self: &Arc<Self>, _req: MapRequest) -> Result<Mapping, PagerError> {
        unimplemented!("pager scaffold")
    }

    /// Stores every dirty page of the file, written by copy or through any mapping.
    pub fn sync_file(&self, _node: &Node) -> Result<FlushReport, PagerError> {
        unimplemented!("pager scaffold")
    }

    /// If a guest fault at host address `addr` was the pager's doing (a write to a
    /// read-only mapping, an unreachable server under [`OnUnreachable::Trap`]), what to
    /// tell the user, naming the file.
    pub fn explain_fault(&self, _addr: usize) -> Option<String> {
        unimplemented!("pager scaffold")
    }
}

/// A live mapping. Dropping it stores its dirty pages and unmaps it (errors are logged;
/// call [`Mapping::unmap`] to see them).
pub struct Mapping {}

impl Mapping {
    pub fn offset(&self) -> u64 {
        unimplemented!("pager scaffold")
    }
    pub fn length(&self) -> u64 {
        unimplemented!("pager scaffold")
    }
    pub fn data_version(&self) -> u64 {
        unimplemented!("pager scaffold")
    }
    /// Stores the pages written through this mapping (and the file's other dirty pages).
    pub fn sync(&self) -> Result<(), PagerError> {
        unimplemented!("pager scaffold")
    }
    /// Validates now and refreshes changed bytes; returns the data version.
    pub fn revalidate_now(&self) -> Result<u64, PagerError> {
        unimplemented!("pager scaffold")
    }
    /// Stores dirty pages, then gives the region back as zeroed anonymous memory.
    pub fn unmap(self) -> Result<(), PagerError> {
        unimplemented!("pager scaffold")
    }
}
