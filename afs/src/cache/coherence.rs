//! The one owner of "may these bytes be used without asking the server?"
//!
//! kAFS asks `afs_check_validity` on every path that could serve cached state;
//! here the client (path resolution, recording replies), the cache manager (reads)
//! and the pager (faults) all ask [`Coherence`], and the callback service tells
//! it what broke. It wraps the [`Validity`] table behind one lock that nobody
//! else holds, so no caller can read half of an answer.
//!
//! [`Validator`] is the sleeping half: when [`Coherence::check`] says no, it asks
//! the server once however many callers wait.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::validity::{Check, DataChange, FileDescription, Stamp, Validity, Why};
use crate::callback::CallbackEvent;
use crate::rpc::Result;
use crate::types::{CallBack, FetchStatus, Fid, Uuid};

/// Every promise the client holds, and the verdicts drawn from them.
#[derive(Debug, Default)]
pub struct Coherence {
    table: Mutex<Validity>,
}

impl Coherence {
    /// Trusts no promise longer than `max_promise` (None: as long as granted).
    pub fn new(max_promise: Option<Duration>) -> Self {
        Self {
            table: Mutex::new(Validity::with_max_promise(max_promise)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Validity> {
        // Every update leaves the table consistent: a panic elsewhere cannot
        // have left it half-changed.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the table: for tests that script the table directly.
    #[cfg(test)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Validity) -> R) -> R {
        f(&mut self.lock())
    }

    /// Whether `fid`'s cached status may be used as it is.
    pub fn check(&self, fid: Fid) -> Check {
        self.lock().check(fid, Instant::now())
    }

    /// Whether bytes cached at data version `cached` may be used (mapped, read)
    /// without asking the server. The pager's question on every fault.
    pub fn check_cached(&self, fid: Fid, cached: Option<u64>) -> Check {
        self.lock().check_cached(fid, cached, Instant::now())
    }

    /// Samples the break counters before a call about `fid` goes to `server`.
    pub fn stamp(&self, fid: Fid, server: SocketAddr) -> Stamp {
        self.lock().stamp(fid, server)
    }

    /// Stamps several files for one call (InlineBulkStatus).
    pub fn stamp_all(&self, fids: &[Fid], server: SocketAddr) -> Vec<Stamp> {
        let mut t = self.lock();
        fids.iter().map(|f| t.stamp(*f, server)).collect()
    }

    /// Records what a reply to `who` said, granting its promise (and `who`'s rights under
    /// it) only if nothing broke since `stamp`.
    pub fn record(
        &self,
        fid: Fid,
        server: SocketAddr,
        stamp: Stamp,
        status: FetchStatus,
        callback: &CallBack,
        who: &Arc<str>,
    ) -> DataChange {
        self.lock()
            .record(fid, server, stamp, status, callback, Instant::now(), who)
    }

    /// What `who` may do with `fid`, if the server told it under the promise in force.
    pub fn access(&self, fid: Fid, who: &str) -> Option<u32> {
        self.lock().access(fid, who, Instant::now())
    }

    /// The status, promise address and expiry of `fid` for `who`: only while its promise
    /// holds and `who` knows its rights under it, with them as the status's CallerAccess
    /// (never another identity's).
    pub fn cached_as(&self, fid: Fid, who: &str) -> Option<(FetchStatus, SocketAddr, Instant)> {
        let t = self.lock();
        let now = Instant::now();
        let access = t.access(fid, who, now)?;
        let (server, expires) = t.promise(fid)?;
        let mut status = t.status(fid)?;
        status.caller_access = access;
        Some((status, server, expires))
    }

    /// Records a status without a promise.
    pub fn record_status(&self, fid: Fid, status: FetchStatus) {
        self.lock().record_status(fid, status)
    }

    /// Records the status our own change produced.
    pub fn record_own_store(&self, fid: Fid, status: FetchStatus) {
        self.lock().record_own_store(fid, status)
    }

    /// Notes a volume's creation date, from the call `stamps` were taken for; the files
    /// it voided, if it was another snapshot ([`Validity::note_volume`]).
    pub fn note_volume(
        &self,
        volume: u32,
        creation_date: u32,
        stamps: &mut [Stamp],
    ) -> Vec<(Fid, Why)> {
        self.lock().note_volume(volume, creation_date, stamps)
    }

    pub fn note_read_only(&self, volume: u32) {
        self.lock().note_read_only(volume)
    }

    /// Notes one fileserver's addresses (and UUID): the senders we believe.
    pub fn learn_server(&self, uuid: Option<Uuid>, addrs: &[SocketAddr]) {
        self.lock().learn_server(uuid, addrs)
    }

    /// Whether `addr` belongs to a fileserver we know.
    pub fn is_fileserver(&self, addr: SocketAddr) -> bool {
        self.lock().is_fileserver(addr)
    }

    /// Applies a break or reset; returns what it invalidated.
    pub fn apply(&self, event: &CallbackEvent) -> Vec<(Fid, Why)> {
        self.lock().apply(event)
    }

    /// The last status we have for `fid`.
    pub fn status(&self, fid: Fid) -> Option<FetchStatus> {
        self.lock().status(fid)
    }

    /// The address and expiry of `fid`'s promise, if not revoked.
    pub fn promise(&self, fid: Fid) -> Option<(SocketAddr, Instant)> {
        self.lock().promise(fid)
    }

    /// How many files hold a promise.
    pub fn promised(&self) -> usize {
        self.lock().promised()
    }

    /// The fileservers we hold live promises from.
    pub fn servers_with_promises(&self) -> Vec<SocketAddr> {
        self.lock().servers_with_promises(Instant::now())
    }

    /// Forgets every promise (after giving them up).
    pub fn drop_promises(&self) {
        self.lock().drop_promises()
    }

    /// The files we hold a status for, in FID order: a stable order for a
    /// debugger to list them in. Copies the FIDs under the lock, sorts after.
    pub fn known_files(&self) -> Vec<Fid> {
        let mut fids = self.lock().known_files();
        fids.sort_unstable();
        fids
    }

    /// What a debugger is shown of `fid`, now: see [`Validity::describe`].
    pub fn describe(&self, fid: Fid) -> Option<FileDescription> {
        self.lock().describe(fid, Instant::now())
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

/// Fetches a file's status from its server, recording the reply (with the
/// stamp taken before the call) in the same [`Coherence`].
pub type StatusFetcher =
    Arc<dyn Fn(Fid) -> Pin<Box<dyn Future<Output = Result<FetchStatus>> + Send>> + Send + Sync>;

/// The identity a validator asks for, by file (its name depends on the file's cell).
pub type Caller = Arc<dyn Fn(Fid) -> Arc<str> + Send + Sync>;

/// Validation with single flight: however many callers ask about one file at
/// once, the server is asked once. A validator works for one identity (its `fetch` asks
/// as that identity): a cached status counts only if that identity was told its rights
/// under the promise, and no identity waits on another's answer.
pub struct Validator {
    coherence: Arc<Coherence>,
    caller: Caller,
    /// Validations asked for, and how many had to ask the server.
    pub validations: AtomicU64,
    pub fetches: AtomicU64,
    inflight: Mutex<HashMap<Fid, Arc<tokio::sync::Mutex<()>>>>,
    fetch: StatusFetcher,
}

impl Validator {
    pub fn new(coherence: Arc<Coherence>, caller: Caller, fetch: StatusFetcher) -> Self {
        Self {
            coherence,
            caller,
            validations: Default::default(),
            fetches: Default::default(),
            inflight: Mutex::default(),
            fetch,
        }
    }

    /// Makes sure `fid`'s state is valid, asking the server only if it is not.
    /// The status returned is the server's latest answer; if a break overtook
    /// it, it carries no promise and the next use asks again.
    pub async fn validate(&self, fid: Fid) -> Result<Validation> {
        self.validations.fetch_add(1, Ordering::Relaxed);
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
        let why = match self.coherence.check(fid) {
            Check::Invalid(why) => why,
            Check::Valid => match self.cached(fid) {
                Some(v) => return Ok(v),
                None => Why::NoPromise,
            },
        };
        let before = self.coherence.status(fid).map(|s| s.data_version());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let status = (self.fetch)(fid).await?;
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
        let (status, _, _) = self.coherence.cached_as(fid, &(self.caller)(fid))?;
        Some(Validation {
            status,
            change: DataChange::Unchanged,
            why: None,
        })
    }
}

#[cfg(test)]
mod tests;
