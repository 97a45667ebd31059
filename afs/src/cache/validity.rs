//! What the client knows about each file, and how long it may trust it.
//!
//! Modelled on kAFS (fs/afs/validation.c): every fileserver has a *reset epoch*
//! that moves when it says it dropped our callbacks, every volume a *break
//! counter* that moves on a volume-wide break, every file a break counter of its
//! own, and every promise remembers the counters it was granted under.
//!
//! A reply can be overtaken by the break of the promise it carries: the server
//! breaks a callback (and forgets it) while the reply that granted it is still on
//! its way, retransmitted after a loss. So the counters are sampled into a
//! [`Stamp`] *before* each call, and [`Validity::record`] grants no promise when
//! any of them moved meanwhile: the status is kept, and the next use asks again.
//!
//! Fileservers are known by [`ServerId`]: every address and the UUID of one server
//! map to one id, learnt from the VLDB and from the servers we call. Callbacks are
//! believed only from those addresses, and only for what that server promised or
//! was asked about.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::callback::CallbackEvent;
use crate::types::{CallBack, CallBackType, FetchStatus, Fid, Uuid};

mod permits;
#[cfg(test)]
pub(crate) mod tests;

pub use permits::ANONYMOUS;
use permits::{Generation, Permits};

/// A promise expiring sooner than this is treated as already gone (as kAFS does).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// A fileserver, whichever of its addresses it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(u32);

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
    /// The promise holds, but for a newer data version than the cached bytes.
    Superseded,
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

/// The break counters that a call's reply must still find to grant a promise,
/// sampled by [`Validity::stamp`] before the call goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    server: ServerId,
    server_epoch: u64,
    volume_breaks: u64,
    file_breaks: u64,
}

#[derive(Debug, Clone, Copy)]
struct Promise {
    server: ServerId,
    /// The address that granted it (where to probe, and give it up).
    addr: SocketAddr,
    expires: Instant,
    server_epoch: u64,
    volume_breaks: u64,
}

#[derive(Debug, Clone, Default)]
struct FileRecord {
    /// None until a reply told us.
    status: Option<FetchStatus>,
    promise: Option<Promise>,
    /// Set by a break on this file; cleared by a new promise.
    broken: bool,
    /// Breaks of this file's promise, counted so an in-flight reply can tell.
    breaks: u64,
    /// The server last asked about the file: its breaks count before it replies.
    asked: Option<ServerId>,
    /// What each identity was told it may do, under which promise.
    permits: Permits,
}

/// Every address and UUID of a fileserver, mapped to one id.
#[derive(Debug, Default)]
struct Servers {
    by_addr: HashMap<SocketAddr, ServerId>,
    by_uuid: HashMap<Uuid, ServerId>,
    /// Reset epochs, indexed by id.
    epochs: Vec<u64>,
}

impl Servers {
    fn new_id(&mut self) -> ServerId {
        self.epochs.push(0);
        ServerId(self.epochs.len() as u32 - 1)
    }

    fn id(&mut self, addr: SocketAddr) -> ServerId {
        if let Some(id) = self.by_addr.get(&addr) {
            return *id;
        }
        let id = self.new_id();
        self.by_addr.insert(addr, id);
        id
    }

    fn epoch(&self, id: ServerId) -> u64 {
        self.epochs[id.0 as usize]
    }

    fn reset(&mut self, id: ServerId) {
        self.epochs[id.0 as usize] += 1;
    }

    /// Notes that `addrs` are one server's, the one with `uuid` if given.
    fn learn(&mut self, uuid: Option<Uuid>, addrs: &[SocketAddr]) {
        let known = uuid
            .and_then(|u| self.by_uuid.get(&u).copied())
            .or_else(|| addrs.iter().find_map(|a| self.by_addr.get(a).copied()));
        let id = known.unwrap_or_else(|| self.new_id());
        if let Some(u) = uuid {
            self.by_uuid.insert(u, id);
        }
        for a in addrs {
            if let Some(old) = self.by_addr.insert(*a, id).filter(|old| *old != id) {
                // The address was taken for another server: whatever that one
                // promised can no longer be checked against its breaks.
                self.reset(old);
            }
        }
    }
}

/// A file as [`Validity::describe`] shows it: status, the promise in force
/// (granting address, expiry) and whether its volume is read-only.
pub type FileDescription = (FetchStatus, Option<(SocketAddr, Instant)>, bool);

/// The table of servers, volumes and files.
#[derive(Debug, Default)]
pub struct Validity {
    /// Promises are trusted at most this long, whatever the server grants.
    max_promise: Option<Duration>,
    servers: Servers,
    volume_breaks: HashMap<u32, u64>,
    /// Each volume's creation date (from VolSync): it changes when the volume is
    /// restored or replaced, which voids everything cached from it.
    volume_created: HashMap<u32, u32>,
    /// Read-only volumes: the server's promise covers the whole volume (it breaks
    /// them volume-wide, on release), so one promise validates all their files.
    read_only: HashSet<u32>,
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

    fn volume_breaks(&self, volume: u32) -> u64 {
        self.volume_breaks.get(&volume).copied().unwrap_or(0)
    }

    fn revoked(&self, fid: Fid, p: &Promise) -> Option<Why> {
        if p.server_epoch != self.servers.epoch(p.server) {
            Some(Why::ServerReset)
        } else if p.volume_breaks != self.volume_breaks(fid.volume) {
            Some(Why::VolumeBroken)
        } else {
            None
        }
    }

    /// Whether `fid`'s cached status may be used as it is. Cheap and never
    /// blocks: this is the fault path's fast check.
    pub fn check(&self, fid: Fid, now: Instant) -> Check {
        let Some(file) = self.files.get(&fid).filter(|f| f.status.is_some()) else {
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
        if let Some(why) = self.revoked(fid, &p) {
            Check::Invalid(why)
        } else if p.expires <= now + EXPIRY_MARGIN {
            Check::Invalid(Why::Expired)
        } else {
            Check::Valid
        }
    }

    /// Whether bytes cached at data version `cached` may be used without asking
    /// the server: the promise holds, and it is a promise on those bytes.
    pub fn check_cached(&self, fid: Fid, cached: Option<u64>, now: Instant) -> Check {
        match self.check(fid, now) {
            Check::Valid if cached != self.status(fid).map(|s| s.data_version()) => {
                Check::Invalid(Why::Superseded)
            }
            verdict => verdict,
        }
    }

    /// Samples the break counters before a call to `server` about `fid`; the
    /// reply's promise counts only if they are the same when it is recorded.
    pub fn stamp(&mut self, fid: Fid, server: SocketAddr) -> Stamp {
        let id = self.servers.id(server);
        let volume_breaks = self.volume_breaks(fid.volume);
        let file = self.files.entry(fid).or_default();
        file.asked = Some(id);
        Stamp {
            server: id,
            server_epoch: self.servers.epoch(id),
            volume_breaks,
            file_breaks: file.breaks,
        }
    }

    /// Whether anything broke since `stamp` was taken for `fid`.
    fn moved_since(&self, fid: Fid, stamp: &Stamp) -> bool {
        let file_breaks = self.files.get(&fid).map_or(0, |f| f.breaks);
        stamp.server_epoch != self.servers.epoch(stamp.server)
            || stamp.volume_breaks != self.volume_breaks(fid.volume)
            || stamp.file_breaks != file_breaks
    }

    /// The server and expiry of `fid`'s promise, if one is still in force (not
    /// revoked by a break or a server reset; it may be close to expiry).
    pub fn promise(&self, fid: Fid) -> Option<(SocketAddr, Instant)> {
        let p = self.files.get(&fid)?.promise?;
        self.revoked(fid, &p)
            .is_none()
            .then_some((p.addr, p.expires))
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
        self.volume_promises.clear();
    }

    /// The last status we have for `fid`.
    pub fn status(&self, fid: Fid) -> Option<FetchStatus> {
        self.files.get(&fid).and_then(|f| f.status)
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

    /// Notes that `addrs` are the addresses of one fileserver (with `uuid`, when
    /// the VLDB gave one): a callback from any of them speaks for all.
    pub fn learn_server(&mut self, uuid: Option<Uuid>, addrs: &[SocketAddr]) {
        self.servers.learn(uuid, addrs);
    }

    /// Whether `addr` is an address of a fileserver we know: the only senders
    /// whose callbacks we believe.
    pub fn is_fileserver(&self, addr: SocketAddr) -> bool {
        self.servers.by_addr.contains_key(&addr)
    }

    /// Notes the creation date a reply carried for `volume`, from the call `stamp` was
    /// taken for. A different date than before means another snapshot of the volume: a
    /// read-only clone released again (kAFS tells releases apart the same way, whether or
    /// not the fileserver's volume-wide break reached us) or a volume restored or
    /// replaced. Every file of it is invalidated, as by a volume-wide break, and returned;
    /// the reply itself is of the new snapshot, so the `stamps` of the call (one per
    /// file it was about) move past the break it caused.
    pub fn note_volume(
        &mut self,
        volume: u32,
        creation_date: u32,
        stamps: &mut [Stamp],
    ) -> Vec<(Fid, Why)> {
        if creation_date == 0 {
            return Vec::new();
        }
        match self.volume_created.insert(volume, creation_date) {
            Some(old) if old != creation_date => {
                let breaks = self.volume_breaks.entry(volume).or_default();
                for stamp in stamps.iter_mut().filter(|s| s.volume_breaks == *breaks) {
                    stamp.volume_breaks += 1;
                }
                *breaks += 1;
                self.files
                    .iter()
                    .filter(|(f, r)| f.volume == volume && r.status.is_some())
                    .map(|(f, _)| (*f, Why::VolumeBroken))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Records a status and the promise that came with it, from the call that
    /// `stamp` was taken for; says how the data changed. If a break or reset
    /// happened since the stamp, the status is kept but no promise is granted.
    // Each argument is a separate fact of one reply (what, from where, sampled when,
    // what it said, what it promised, received when, to whom); a struct would only rename
    // them at the one caller.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        fid: Fid,
        server: SocketAddr,
        stamp: Stamp,
        status: FetchStatus,
        callback: &CallBack,
        now: Instant,
        who: &Arc<str>,
    ) -> DataChange {
        let overtaken = self.moved_since(fid, &stamp);
        let granted = callback.cb_type != CallBackType::Dropped && callback.expiration_time > 0;
        let promise = (granted && !overtaken).then(|| Promise {
            server: stamp.server,
            addr: server,
            expires: now + self.trusted_for(callback.expiration_time),
            server_epoch: stamp.server_epoch,
            volume_breaks: stamp.volume_breaks,
        });
        if overtaken {
            tracing::debug!(%fid, "a break overtook the reply: no promise");
        }
        if let Some(p) = promise.filter(|_| self.read_only.contains(&fid.volume)) {
            let keep = self
                .volume_promises
                .get(&fid.volume)
                .is_some_and(|old| old.expires >= p.expires && self.revoked(fid, old).is_none());
            if !keep {
                self.volume_promises.insert(fid.volume, p);
            }
        }
        let file = self.files.entry(fid).or_default();
        if promise.is_some() {
            // The rights come with the promise: good until it breaks.
            let at = Generation {
                server: stamp.server,
                server_epoch: stamp.server_epoch,
                volume_breaks: stamp.volume_breaks,
                file_breaks: stamp.file_breaks,
            };
            file.permits.grant(who, status.caller_access, at);
            if &**who != ANONYMOUS {
                file.permits
                    .grant(&Arc::from(ANONYMOUS), status.anonymous_access, at);
            }
        }
        let old = file.status.replace(status);
        file.promise = promise;
        file.broken = overtaken;
        match old {
            None => DataChange::New,
            Some(old) => {
                let (from, to) = (old.data_version(), status.data_version());
                if from == to {
                    DataChange::Unchanged
                } else {
                    DataChange::ThirdParty { from, to }
                }
            }
        }
    }

    /// What `who` may do with `fid` (the server's CallerAccess to it), if it was told
    /// under the promise in force; None if it must ask the server.
    pub fn access(&self, fid: Fid, who: &str, now: Instant) -> Option<u32> {
        if self.check(fid, now) != Check::Valid {
            return None;
        }
        let file = self.files.get(&fid)?;
        let server = file
            .promise
            .map(|p| p.server)
            .or_else(|| self.volume_promises.get(&fid.volume).map(|p| p.server))?;
        file.permits.get(
            who,
            Generation {
                server,
                server_epoch: self.servers.epoch(server),
                volume_breaks: self.volume_breaks(fid.volume),
                file_breaks: file.breaks,
            },
        )
    }

    /// Records a status that came with no promise we may take.
    pub fn record_status(&mut self, fid: Fid, status: FetchStatus) {
        let file = self.files.entry(fid).or_default();
        file.status = Some(status);
        file.promise = None;
    }

    /// Records the status our own store returned: the data version moved by our
    /// hand, so later validation does not report it as someone else's change.
    /// The promise is kept (a store does not break our own callback).
    pub fn record_own_store(&mut self, fid: Fid, status: FetchStatus) {
        if let Some(file) = self.files.get_mut(&fid).filter(|f| f.status.is_some()) {
            file.status = Some(status);
        }
    }

    /// Applies a callback event from a fileserver; returns the cached files it
    /// invalidated and why. An event from an address that is no fileserver of
    /// ours changes nothing, and a break touches only what its sender promised
    /// (or was asked about: its reply may still be on the way).
    pub fn apply(&mut self, event: &CallbackEvent) -> Vec<(Fid, Why)> {
        let sender = match event {
            CallbackEvent::Broken { server, .. } | CallbackEvent::ServerReset { server, .. } => {
                self.servers.by_addr.get(server).copied()
            }
        };
        let Some(id) = sender else {
            return Vec::new();
        };
        match event {
            CallbackEvent::Broken { fids, .. } => {
                let mut lost = Vec::new();
                for b in fids {
                    if b.vnode == 0 && b.unique == 0 {
                        self.break_volume(id, b.volume, &mut lost);
                    } else if let Some(file) = self.files.get_mut(b) {
                        let ours = file.promise.is_some_and(|p| p.server == id);
                        if ours || file.asked == Some(id) {
                            file.breaks += 1;
                            file.promise = None;
                            file.broken = true;
                            lost.push((*b, Why::Broken));
                        }
                    }
                }
                lost
            }
            CallbackEvent::ServerReset { uuid, .. } => {
                if let Some(u) = uuid {
                    self.servers.by_uuid.entry(*u).or_insert(id);
                }
                self.servers.reset(id);
                self.files
                    .iter()
                    .filter(|(_, f)| f.promise.is_some_and(|p| p.server == id))
                    .map(|(fid, _)| (*fid, Why::ServerReset))
                    .collect()
            }
        }
    }

    /// A volume-wide break from server `id`: counts if `id` promised or was asked
    /// about anything in the volume.
    fn break_volume(&mut self, id: ServerId, volume: u32, lost: &mut Vec<(Fid, Why)>) {
        let in_volume = self.files.iter().filter(|(f, _)| f.volume == volume);
        let concerns = self
            .volume_promises
            .get(&volume)
            .is_some_and(|p| p.server == id)
            || in_volume
                .clone()
                .any(|(_, r)| r.asked == Some(id) || r.promise.is_some_and(|p| p.server == id));
        if !concerns {
            return;
        }
        *self.volume_breaks.entry(volume).or_default() += 1;
        lost.extend(in_volume.map(|(f, _)| (*f, Why::VolumeBroken)));
    }

    /// The files we hold a status for, in no particular order (a debugger's list).
    pub fn known_files(&self) -> Vec<Fid> {
        self.files
            .iter()
            .filter(|(_, f)| f.status.is_some())
            .map(|(fid, _)| *fid)
            .collect()
    }

    /// What a debugger is shown of `fid`: its last status, the promise that
    /// makes it valid at `now` (the address that granted it and its expiry;
    /// None when the next use must ask the server), and whether its volume is
    /// read-only. None if we hold no status for it.
    pub fn describe(&self, fid: Fid, now: Instant) -> Option<FileDescription> {
        let file = self.files.get(&fid)?;
        let status = file.status?;
        let read_only = self.read_only.contains(&fid.volume);
        let promise = (self.check(fid, now) == Check::Valid)
            .then(|| {
                file.promise.or_else(|| {
                    read_only
                        .then(|| self.volume_promises.get(&fid.volume).copied())
                        .flatten()
                })
            })
            .flatten()
            .map(|p| (p.addr, p.expires));
        Some((status, promise, read_only))
    }

    /// Servers we hold at least one live promise from (the ones worth probing),
    /// by the address each promise came from.
    pub fn servers_with_promises(&self, now: Instant) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .files
            .iter()
            .filter_map(|(fid, f)| {
                let p = f.promise?;
                (self.check(*fid, now) == Check::Valid).then_some(p.addr)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
