//! What the client knows about each file, and how long it may trust it.
//!
//! Modelled on kAFS (fs/afs/validation.c): every server has a *reset epoch* that
//! moves when it says it dropped our callbacks, every volume a *break counter* that
//! moves on a volume-wide break, and every file a promise that remembers the epoch
//! and counter it was granted under. [`Validity::check`] decides without the network
//! whether a file's cached state may be used; [`Validator::validate`] asks the
//! server (once, however many callers) when it may not.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::callback::CallbackEvent;
use crate::rpc::Result;
use crate::types::{CallBack, CallBackType, FetchStatus, Fid};

/// A promise expiring sooner than this is treated as already gone (as kAFS does).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Shared by the client (which records what servers say) and the callback
/// service (which applies breaks before replying).
pub type SharedValidity = Arc<Mutex<Validity>>;

/// Why a file's cached state may not be used without asking the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Never fetched, or the server gave no promise.
    NoPromise,
    /// The promise expires within the margin (or already did).
    Expired,
    /// The server broke the promise on this file.
    Broken,
    /// The server broke every promise on the file's volume.
    VolumeBroken,
    /// The server dropped all our promises (restart, or it forgot us).
    ServerReset,
}

/// The verdict of [`Validity::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Valid,
    Invalid(Why),
}

/// How a file's data changed between two looks at its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChange {
    /// First time we see this file.
    New,
    /// Data version as before (our own stores are recorded as they happen).
    Unchanged,
    /// Someone else changed the data: the data version moved from `from` to `to`.
    ThirdParty { from: u64, to: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Promise {
    server: SocketAddr,
    expires: Instant,
    server_epoch: u64,
    volume_breaks: u64,
}

#[derive(Debug, Clone)]
struct FileRecord {
    status: FetchStatus,
    promise: Option<Promise>,
    /// Set by a break on this file; cleared by a new promise.
    broken: bool,
}

/// The table of servers, volumes and files.
#[derive(Debug, Default)]
pub struct Validity {
    /// Promises are trusted at most this long, whatever the server grants.
    max_promise: Option<Duration>,
    server_epochs: HashMap<SocketAddr, u64>,
    volume_breaks: HashMap<u32, u64>,
    /// Each volume's creation date (from VolSync): it changes when the volume is
    /// restored or replaced, which voids everything cached from it.
    volume_created: HashMap<u32, u32>,
    /// Read-only volumes: the server's promise covers the whole volume (it breaks
    /// them volume-wide, on release), so one promise validates all their files.
    read_only: std::collections::HashSet<u32>,
    volume_promises: HashMap<u32, Promise>,
    files: HashMap<Fid, FileRecord>,
}

impl Validity {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that trusts no promise longer than `max` (a server may grant hours).
    pub fn with_max_promise(max: Option<Duration>) -> Self {
        Self {
            max_promise: max,
            ..Self::default()
        }
    }

    fn server_epoch(&self, server: SocketAddr) -> u64 {
        self.server_epochs.get(&server).copied().unwrap_or(0)
    }

    fn volume_breaks(&self, volume: u32) -> u64 {
        self.volume_breaks.get(&volume).copied().unwrap_or(0)
    }

    /// Whether `fid`'s cached status and data may be used as they are. Cheap and
    /// never blocks: this is the fault path's fast check.
    pub fn check(&self, fid: Fid, now: Instant) -> Check {
        let Some(file) = self.files.get(&fid) else {
            return Check::Invalid(Why::NoPromise);
        };
        let promise = file.promise.or_else(|| {
            // A file of a read-only volume rides on its volume's promise.
            self.read_only
                .contains(&fid.volume)
                .then(|| self.volume_promises.get(&fid.volume).copied())
                .flatten()
        });
        let Some(p) = promise else {
            return Check::Invalid(if file.broken {
                Why::Broken
            } else {
                Why::NoPromise
            });
        };
        if p.server_epoch != self.server_epoch(p.server) {
            Check::Invalid(Why::ServerReset)
        } else if p.volume_breaks != self.volume_breaks(fid.volume) {
            Check::Invalid(Why::VolumeBroken)
        } else if p.expires <= now + EXPIRY_MARGIN {
            Check::Invalid(Why::Expired)
        } else {
            Check::Valid
        }
    }

    /// The server and expiry of `fid`'s promise, if one is still in force (not
    /// revoked by a break or a server reset; it may be close to expiry).
    pub fn promise(&self, fid: Fid) -> Option<(SocketAddr, Instant)> {
        let p = self.files.get(&fid)?.promise?;
        let revoked = p.server_epoch != self.server_epoch(p.server)
            || p.volume_breaks != self.volume_breaks(fid.volume);
        (!revoked).then_some((p.server, p.expires))
    }

    /// How many files hold a promise.
    pub fn promised(&self) -> usize {
        self.files.values().filter(|f| f.promise.is_some()).count()
    }

    /// Forgets every promise (after giving them all up).
    pub fn drop_promises(&mut self) {
        for f in self.files.values_mut() {
            f.promise = None;
        }
    }

    /// The last status we have for `fid`.
    pub fn status(&self, fid: Fid) -> Option<FetchStatus> {
        self.files.get(&fid).map(|f| f.status)
    }

    fn trusted_for(&self, granted_secs: u32) -> Duration {
        let granted = Duration::from_secs(u64::from(granted_secs));
        self.max_promise.map_or(granted, |max| granted.min(max))
    }

    /// Marks `volume` as a read-only clone: promises on its files stand for the
    /// whole volume.
    pub fn note_read_only(&mut self, volume: u32) {
        self.read_only.insert(volume);
    }

    /// Notes the creation date a reply carried for `volume`. A different date than
    /// before means a restored or replaced volume: every file of it is invalidated
    /// (as by a volume-wide break). Returns whether that happened.
    pub fn note_volume(&mut self, volume: u32, creation_date: u32) -> bool {
        if creation_date == 0 {
            return false;
        }
        match self.volume_created.insert(volume, creation_date) {
            Some(old) if old != creation_date => {
                *self.volume_breaks.entry(volume).or_default() += 1;
                true
            }
            _ => false,
        }
    }

    /// Records a status and the promise that came with it; says how the data changed.
    pub fn record(
        &mut self,
        fid: Fid,
        server: SocketAddr,
        status: FetchStatus,
        callback: &CallBack,
        now: Instant,
    ) -> DataChange {
        let promise = (callback.cb_type != CallBackType::Dropped && callback.expiration_time > 0)
            .then(|| Promise {
                server,
                expires: now + self.trusted_for(callback.expiration_time),
                server_epoch: self.server_epoch(server),
                volume_breaks: self.volume_breaks(fid.volume),
            });
        if let Some(p) = promise.filter(|_| self.read_only.contains(&fid.volume)) {
            let keep = self.volume_promises.get(&fid.volume).is_some_and(|old| {
                old.expires >= p.expires
                    && old.server_epoch == p.server_epoch
                    && old.volume_breaks == p.volume_breaks
            });
            if !keep {
                self.volume_promises.insert(fid.volume, p);
            }
        }
        let record = FileRecord {
            status,
            promise,
            broken: false,
        };
        match self.files.insert(fid, record) {
            None => DataChange::New,
            Some(old) => {
                let (from, to) = (old.status.data_version(), status.data_version());
                if from == to {
                    DataChange::Unchanged
                } else {
                    DataChange::ThirdParty { from, to }
                }
            }
        }
    }

    /// Records the status our own store returned: the data version moved by our
    /// hand, so later validation does not report it as someone else's change.
    /// The promise is kept (a store does not break our own callback).
    pub fn record_own_store(&mut self, fid: Fid, status: FetchStatus) {
        if let Some(file) = self.files.get_mut(&fid) {
            file.status = status;
        }
    }

    /// Applies a callback event; returns the cached files it invalidated and why.
    pub fn apply(&mut self, event: &CallbackEvent) -> Vec<(Fid, Why)> {
        match event {
            CallbackEvent::Broken { fids, .. } => {
                let mut lost = Vec::new();
                for b in fids {
                    if b.vnode == 0 && b.unique == 0 {
                        *self.volume_breaks.entry(b.volume).or_default() += 1;
                        lost.extend(
                            self.files
                                .keys()
                                .filter(|f| f.volume == b.volume)
                                .map(|f| (*f, Why::VolumeBroken)),
                        );
                    } else if let Some(file) = self.files.get_mut(b) {
                        file.promise = None;
                        file.broken = true;
                        lost.push((*b, Why::Broken));
                    }
                }
                lost
            }
            CallbackEvent::ServerReset { server, .. } => {
                *self.server_epochs.entry(*server).or_default() += 1;
                self.files
                    .iter()
                    .filter(|(_, f)| f.promise.is_some_and(|p| p.server == *server))
                    .map(|(fid, _)| (*fid, Why::ServerReset))
                    .collect()
            }
        }
    }

    /// Servers we hold at least one live promise from (the ones worth probing).
    pub fn servers_with_promises(&self, now: Instant) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .files
            .iter()
            .filter_map(|(fid, f)| {
                let p = f.promise?;
                (self.check(*fid, now) == Check::Valid).then_some(p.server)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The result of a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validation {
    pub status: FetchStatus,
    pub change: DataChange,
    /// Why the server had to be asked; None when the cached state was valid.
    pub why: Option<Why>,
}

/// Fetches a file's status (and a new promise) from its server.
pub type StatusFetcher = Arc<
    dyn Fn(Fid) -> Pin<Box<dyn Future<Output = Result<(SocketAddr, FetchStatus, CallBack)>> + Send>>
        + Send
        + Sync,
>;

/// Validation with single flight: however many callers ask about one file at
/// once, the server is asked once.
pub struct Validator {
    table: SharedValidity,
    /// Validations asked for, and how many had to ask the server.
    pub validations: std::sync::atomic::AtomicU64,
    pub fetches: std::sync::atomic::AtomicU64,
    inflight: Mutex<HashMap<Fid, Arc<tokio::sync::Mutex<()>>>>,
    fetch: StatusFetcher,
}

impl Validator {
    /// A validator over `table` (usually the client's, see `Client::validity`).
    pub fn new(table: SharedValidity, fetch: StatusFetcher) -> Self {
        Self {
            table,
            validations: Default::default(),
            fetches: Default::default(),
            inflight: Mutex::default(),
            fetch,
        }
    }

    /// Runs `f` on the table.
    pub fn with<R>(&self, f: impl FnOnce(&mut Validity) -> R) -> R {
        f(&mut self.table.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes sure `fid`'s state is valid, asking the server only if it is not.
    pub async fn validate(&self, fid: Fid) -> Result<Validation> {
        self.validations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(v) = self.cached(fid) {
            return Ok(v);
        }
        let gate = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(fid)
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        // Whoever held the gate before us may just have validated.
        let why = match self.with(|t| t.check(fid, Instant::now())) {
            Check::Invalid(why) => why,
            Check::Valid => match self.cached(fid) {
                Some(v) => return Ok(v),
                None => Why::NoPromise,
            },
        };
        // The fetcher may record into the same table (the client's does): compare
        // with what we had before asking.
        let before = self.with(|t| t.status(fid).map(|s| s.data_version()));
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (server, status, callback) = (self.fetch)(fid).await?;
        self.with(|t| t.record(fid, server, status, &callback, Instant::now()));
        let change = match before {
            None => DataChange::New,
            Some(from) if from == status.data_version() => DataChange::Unchanged,
            Some(from) => DataChange::ThirdParty {
                from,
                to: status.data_version(),
            },
        };
        Ok(Validation {
            status,
            change,
            why: Some(why),
        })
    }

    fn cached(&self, fid: Fid) -> Option<Validation> {
        self.with(|t| match t.check(fid, Instant::now()) {
            Check::Valid => t.status(fid).map(|status| Validation {
                status,
                change: DataChange::Unchanged,
                why: None,
            }),
            Check::Invalid(_) => None,
        })
    }
}

#[cfg(test)]
mod tests;
