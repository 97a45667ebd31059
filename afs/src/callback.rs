//! The cache manager's callback service: how fileservers tell us a promise broke.
//!
//! Served on the same socket our calls use (the fileserver calls back the address
//! it saw us at). Each break or reset is answered first and then published as a
//! [`CallbackEvent`] to every subscriber, so nothing a subscriber does (such as a
//! FetchStatus to the same server) can delay the reply the server is waiting for.
//!
//! Anyone can send a datagram to our port. Calls that change or reveal our state
//! (breaks, resets, who we are) are answered only for fileservers we know
//! ([`SenderCheck`]); anyone else gets an abort and leaves nothing behind.
//!
//! The debugging calls OpenAFS's `cmdebug` makes (GetLock, GetCE64/GetCE,
//! GetCellByNum, GetCellServDB, GetCacheConfig, and XStatsVersion, GetLocalCell,
//! GetServerPrefs) change nothing and show only what a debugger is meant to see,
//! so, like Probe, they are answered for anyone. Cache entries are the files the
//! client holds a status for ([`Coherence::known_files`]), listed in FID order;
//! we hold no cache-manager locks, so GetLock reports none ([`DebugInfo`]).

use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rx::{IncomingCall, Response};
use tokio::sync::broadcast;
use tracing::{debug, trace};

use crate::cache::coherence::Coherence;
use crate::cell::CellServDb;
use crate::proto::cb::{
    self as p, CacheConfig, CbRequest, CbResponse, CellHosts, CmDebugState, CmIdentity,
    DbCacheEntry, NothingCached,
};
use crate::types::{
    Capabilities, Fid, FileType, InterfaceAddr, Uuid, CLIENT_CAPABILITY_ERRORTRANS,
};

/// The callback service id on the client's socket.
pub const SERVICE: u16 = 1;

/// A change in the promises a fileserver holds for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// The server broke its promises on these files. A FID with vnode 0 and
    /// unique 0 stands for every file of that volume.
    Broken {
        server: SocketAddr,
        fids: Vec<Fid>,
        at: Instant,
    },
    /// The server forgot every promise it gave us (it restarted, lost its record
    /// of us, or takes us for another client) and asked us to start afresh. `uuid`
    /// is the server's own, when it said (InitCallBackState3).
    ServerReset {
        server: SocketAddr,
        uuid: Option<Uuid>,
        at: Instant,
    },
}

/// Counters of the callback service.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub breaks: AtomicU64,
    pub fids_broken: AtomicU64,
    pub resets: AtomicU64,
    pub probes: AtomicU64,
    /// Calls refused because they did not come from a fileserver we know.
    pub refused: AtomicU64,
    /// Debugging calls answered (cmdebug's).
    pub debug_calls: AtomicU64,
}

/// Whether a peer is a fileserver whose callbacks we believe.
pub type SenderCheck = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// The abort for a callback call from a stranger.
pub const NOT_A_FILESERVER: i32 = rx::error::codes::RX_INVALID_OPERATION;

/// Answers RXAFSCB calls and publishes what they mean.
/// Work to run once the reply to the server is on the wire.
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// Runs on each break or reset *before* the reply goes out, to forget revoked
/// promises; must be quick and must not call the server. What it returns runs
/// after the reply (telling others what was lost).
pub type RevokeHook = Arc<dyn Fn(&CallbackEvent) -> Option<AfterReply> + Send + Sync>;

pub struct CallbackService {
    identity: CmIdentity,
    senders: SenderCheck,
    revoke: RevokeHook,
    events: broadcast::Sender<CallbackEvent>,
    stats: Arc<CallbackStats>,
    /// What the debugging calls are shown; without it, an empty cache.
    debug: Option<CacheView>,
}

/// What the debugging calls (cmdebug's) are shown of a client.
pub struct DebugInfo {
    /// The files: the one owner of what we know about them.
    pub coherence: Arc<Coherence>,
    /// The cells we know, in CellServDB order; cell numbers count from 1 in this
    /// order (as the OpenAFS cache manager numbers the cells it loads).
    pub cells: Vec<CellHosts>,
    /// The local cell (ThisCell), if configured.
    pub local_cell: Option<String>,
    /// Bytes asked for per FetchData: what cmdebug -cache calls the chunk size.
    pub chunk_size: u32,
}

impl DebugInfo {
    pub fn new(
        coherence: Arc<Coherence>,
        cells: &CellServDb,
        local_cell: Option<&str>,
        chunk_size: u32,
    ) -> Self {
        Self {
            coherence,
            cells: cells
                .cells
                .iter()
                .map(|c| CellHosts {
                    name: c.name.clone(),
                    hosts: c.vlservers.iter().map(|a| *a.ip()).collect(),
                })
                .collect(),
            local_cell: local_cell.map(str::to_string),
            chunk_size,
        }
    }

    /// The number cache entries carry: the validity table keys files by FID
    /// alone, so every file is reported in the local cell (or the only cell
    /// there is); 0 when neither is known.
    fn entry_cell(&self) -> i32 {
        let local = self.local_cell.as_deref().and_then(|name| {
            self.cells
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        });
        match local {
            Some(i) => i32::try_from(i + 1).unwrap_or(0),
            None if self.cells.len() == 1 => 1,
            None => 0,
        }
    }
}

/// A listing of the known files is taken afresh at most this often (when a
/// debugger asks for entry 0), so that no caller can make us copy the table
/// more often; meanwhile every index refers to the same listing.
pub const LISTING_REFRESH: Duration = Duration::from_secs(1);

/// The cache as the debugging calls see it.
struct CacheView {
    info: DebugInfo,
    entry_cell: i32,
    listing: Mutex<Listing>,
}

/// The FIDs of a listing, in order, and when it was taken.
#[derive(Default)]
struct Listing {
    fids: Arc<Vec<Fid>>,
    taken: Option<Instant>,
}

impl CacheView {
    fn new(info: DebugInfo) -> Self {
        Self {
            entry_cell: info.entry_cell(),
            info,
            listing: Mutex::default(),
        }
    }

    /// The current listing; a new one if there is none, or if `restart` and the
    /// last is older than [`LISTING_REFRESH`]. Copying the FIDs is the only
    /// work that grows with the table, and it happens at most that often.
    fn listing(&self, restart: bool) -> Arc<Vec<Fid>> {
        let mut l = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        let stale = l
            .taken
            .is_none_or(|t| restart && t.elapsed() >= LISTING_REFRESH);
        if stale {
            l.fids = Arc::new(self.info.coherence.known_files());
            l.taken = Some(Instant::now());
        }
        l.fids.clone()
    }
}

/// Unix seconds at `at` (0 if it cannot be told).
fn unix_secs(at: Instant) -> u32 {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let then = if at >= now {
        wall.checked_add(at - now)
    } else {
        wall.checked_sub(now - at)
    };
    then.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl CmDebugState for CacheView {
    /// Entry `index` of the listing: FID, length, data version and, while a
    /// promise makes the file valid, the promising server's IPv4 address as
    /// `callback` with the promise's expiry. No locks, references or opens are
    /// kept per file, so those are 0. `addr` (a kernel address for OpenAFS) is
    /// the index plus one: cmdebug takes an entry with 0 there for a process.
    fn cache_entry(&self, index: u32) -> Option<DbCacheEntry> {
        let fids = self.listing(index == 0);
        let fid = *fids.get(usize::try_from(index).ok()?)?;
        let mut ce = DbCacheEntry {
            addr: index.wrapping_add(1).max(1),
            cell: self.entry_cell,
            fid,
            ..DbCacheEntry::default()
        };
        let Some((status, promise, read_only)) = self.info.coherence.describe(fid) else {
            return Some(ce);
        };
        ce.length = status.length();
        ce.data_version = status.data_version_lo;
        if let Some((server, expires)) = promise {
            ce.callback = match server.ip() {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => 1,
            };
            ce.cb_expires = unix_secs(expires);
            ce.states |= p::CE_STATD;
        }
        if read_only {
            ce.states |= p::CE_READ_ONLY;
        }
        ce.mvstat = if fid.vnode == 1 && status.file_type == FileType::Directory {
            p::MVSTAT_VOLUME_ROOT
        } else if status.file_type == FileType::Symlink && status.unix_mode_bits & 0o111 == 0 {
            // How the OpenAFS CM tells a mount point from a symlink.
            p::MVSTAT_MOUNT_POINT
        } else {
            p::MVSTAT_FILE
        };
        Some(ce)
    }

    fn cell(&self, index: u32) -> Option<CellHosts> {
        self.info.cells.get(usize::try_from(index).ok()?).cloned()
    }

    fn cell_by_number(&self, number: i32) -> Option<CellHosts> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.info.cells.get(index).cloned()
    }

    fn local_cell(&self) -> Option<String> {
        self.info.local_cell.clone()
    }

    /// No chunk files or fixed pools: statuses and bytes are kept in memory as
    /// needed. The chunk size is what one FetchData asks for.
    fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            first_chunk_size: self.info.chunk_size,
            other_chunk_size: self.info.chunk_size,
            mem_cache: true,
            ..CacheConfig::default()
        }
    }
}

impl CallbackService {
    /// A service for a client with `uuid`. We report no interfaces, so a server
    /// never tries addresses other than the one it saw us at.
    pub fn new(uuid: Uuid, senders: SenderCheck, revoke: RevokeHook) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            revoke,
            senders,
            identity: CmIdentity {
                interfaces: InterfaceAddr {
                    uuid,
                    interfaces: Vec::new(),
                },
                capabilities: Capabilities(vec![CLIENT_CAPABILITY_ERRORTRANS]),
            },
            events,
            stats: Arc::default(),
            debug: None,
        }
    }

    /// Shows `info` to the debugging calls (cmdebug) instead of an empty cache.
    pub fn with_debug_info(mut self, info: DebugInfo) -> Self {
        self.debug = Some(CacheView::new(info));
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallbackEvent> {
        self.events.subscribe()
    }

    pub fn stats(&self) -> Arc<CallbackStats> {
        self.stats.clone()
    }

    /// What a request means for our promises, if anything.
    fn event_for(&self, req: &CbRequest, server: SocketAddr, at: Instant) -> Option<CallbackEvent> {
        match req {
            CbRequest::CallBack { fids, .. } => {
                self.stats.breaks.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .fids_broken
                    .fetch_add(fids.len() as u64, Ordering::Relaxed);
                Some(CallbackEvent::Broken {
                    server,
                    fids: fids.clone(),
                    at,
                })
            }
            CbRequest::InitCallBackState | CbRequest::InitCallBackState3 { .. } => {
                self.stats.resets.fetch_add(1, Ordering::Relaxed);
                let uuid = match req {
                    CbRequest::InitCallBackState3 { server_uuid } => Some(*server_uuid),
                    _ => None,
                };
                Some(CallbackEvent::ServerReset { server, uuid, at })
            }
            // The server takes us for another client: it will not honour what it
            // promised "us", so neither may we.
            CbRequest::ProbeUuid { client_uuid }
                if *client_uuid != self.identity.interfaces.uuid =>
            {
                self.stats.resets.fetch_add(1, Ordering::Relaxed);
                Some(CallbackEvent::ServerReset {
                    server,
                    uuid: None,
                    at,
                })
            }
            CbRequest::Probe | CbRequest::ProbeUuid { .. } => {
                self.stats.probes.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    fn handle(&self, call: &IncomingCall) -> Response {
        let at = Instant::now();
        let req = match CbRequest::decode(&call.request) {
            Ok(r) => r,
            Err(e) => {
                debug!(peer = %call.peer, error = %e, "undecodable callback request");
                return Response::abort(rx::error::codes::RXGEN_SS_UNMARSHAL);
            }
        };
        trace!(peer = %call.peer, ?req, "callback request");
        // These change nothing and tell nothing a debugger may not see.
        let stateless =
            matches!(req, CbRequest::Probe | CbRequest::Unknown(_)) || req.is_debugging();
        if req.is_debugging() {
            self.stats.debug_calls.fetch_add(1, Ordering::Relaxed);
        }
        if !stateless && !(self.senders)(call.peer) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %call.peer, op = req.opcode(), "callback call from a stranger refused");
            return Response::abort(NOT_A_FILESERVER);
        }
        let event = self.event_for(&req, call.peer, at);
        // Forget revoked promises before answering; tell subscribers after.
        let then = event.as_ref().and_then(|e| (self.revoke)(e));
        let state: &dyn CmDebugState = match &self.debug {
            Some(view) => view,
            None => &NothingCached,
        };
        let mut response = match p::respond_with(&req, &self.identity, state) {
            CbResponse::Reply(data) => Response::reply(data),
            CbResponse::Abort(code) => Response::abort(code),
        };
        if let Some(event) = event {
            let events = self.events.clone();
            response.after_reply = Some(Box::new(move || {
                if let Some(then) = then {
                    then();
                }
                // No subscriber is fine: nobody holds anything to invalidate.
                let _ = events.send(event);
            }));
        }
        response
    }
}

impl rx::Service for CallbackService {
    fn serve(&self, call: IncomingCall) -> Pin<Box<dyn Future<Output = Response> + Send>> {
        let response = self.handle(&call);
        Box::pin(async move { response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CallBack, CallBackType, FetchStatus};

    fn anyone() -> SenderCheck {
        Arc::new(|_| true)
    }

    fn incoming(req: &CbRequest) -> IncomingCall {
        IncomingCall {
            peer: "10.0.0.1:7000".parse().unwrap(),
            epoch: 1,
            cid: 4,
            service_id: SERVICE,
            request: req.encode().into(),
        }
    }

    #[test]
    fn break_is_published_after_reply() {
        let svc =
            CallbackService::new(Uuid::random(), anyone(), Arc::new(|_: &CallbackEvent| None));
        let mut rx = svc.subscribe();
        let fid = Fid::new(536870915, 2, 3);
        let req = CbRequest::CallBack {
            fids: vec![fid],
            callbacks: vec![CallBack::default()],
        };
        let resp = svc.handle(&incoming(&req));
        assert_eq!(resp.reply, Ok(vec![]));
        assert!(rx.try_recv().is_err(), "nothing before the reply is sent");
        (resp.after_reply.unwrap())();
        match rx.try_recv().unwrap() {
            CallbackEvent::Broken { fids, .. } => assert_eq!(fids, vec![fid]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_and_garbage_requests_abort() {
        let svc =
            CallbackService::new(Uuid::random(), anyone(), Arc::new(|_: &CallbackEvent| None));
        let resp = svc.handle(&incoming(&CbRequest::Unknown(9999)));
        assert_eq!(resp.reply, Err(rx::error::codes::RXGEN_OPCODE));
        let mut call = incoming(&CbRequest::Probe);
        call.request = vec![0, 0, 0, 204, 0xff, 0xff, 0xff, 0xff].into();
        // rxgen's server-side unmarshal failure, as OpenAFS numbers it.
        assert_eq!(svc.handle(&call).reply, Err(-453));
    }

    #[test]
    fn probe_for_another_uuid_is_a_reset() {
        let uuid = Uuid::random();
        let svc = CallbackService::new(uuid, anyone(), Arc::new(|_: &CallbackEvent| None));
        let mut rx = svc.subscribe();
        let ours = svc.handle(&incoming(&CbRequest::ProbeUuid { client_uuid: uuid }));
        (ours.after_reply.unwrap_or_else(|| Box::new(|| {})))();
        assert!(rx.try_recv().is_err(), "our own UUID: nothing lost");
        let other = svc.handle(&incoming(&CbRequest::ProbeUuid {
            client_uuid: Uuid::random(),
        }));
        (other.after_reply.unwrap())();
        assert!(matches!(
            rx.try_recv().unwrap(),
            CallbackEvent::ServerReset { .. }
        ));
    }

    #[test]
    fn identity_answers() {
        let uuid = Uuid::random();
        let svc = CallbackService::new(uuid, anyone(), Arc::new(|_: &CallbackEvent| None));
        let resp = svc.handle(&incoming(&CbRequest::TellMeAboutYourself));
        let body = resp.reply.unwrap();
        let (addr, caps) = p::decode_tell_me_about_yourself_reply(&body).unwrap();
        assert_eq!(addr.uuid, uuid);
        assert!(addr.interfaces.is_empty());
        assert!(caps.has(CLIENT_CAPABILITY_ERRORTRANS));
        let other = svc.handle(&incoming(&CbRequest::ProbeUuid {
            client_uuid: Uuid::random(),
        }));
        assert_eq!(other.reply, Err(p::PROBE_UUID_MISMATCH));
    }

    #[test]
    fn strangers_are_refused_and_leave_nothing() {
        let server: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let svc = CallbackService::new(
            Uuid::random(),
            Arc::new(move |peer| peer == server),
            Arc::new(|_: &CallbackEvent| panic!("nothing may be revoked")),
        );
        let mut rx = svc.subscribe();
        let requests = [
            CbRequest::CallBack {
                fids: vec![Fid::new(1, 0, 0)],
                callbacks: vec![],
            },
            CbRequest::InitCallBackState,
            CbRequest::InitCallBackState3 {
                server_uuid: Uuid::random(),
            },
            CbRequest::ProbeUuid {
                client_uuid: Uuid::random(),
            },
            CbRequest::TellMeAboutYourself,
            CbRequest::WhoAreYou,
        ];
        for req in &requests {
            let mut call = incoming(req);
            call.peer = "10.0.0.9:7000".parse().unwrap();
            let resp = svc.handle(&call);
            assert_eq!(resp.reply, Err(NOT_A_FILESERVER), "{req:?}");
            assert!(resp.after_reply.is_none());
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 6);
        // A probe says nothing about us: anyone gets its empty answer.
        let mut probe = incoming(&CbRequest::Probe);
        probe.peer = "10.0.0.9:7000".parse().unwrap();
        assert_eq!(svc.handle(&probe).reply, Ok(vec![]));
        // Nor do the debugging calls change anything: anyone gets them answered.
        for req in [
            CbRequest::GetLock { index: 0 },
            CbRequest::GetCe64 { index: 0 },
            CbRequest::GetCe { index: 0 },
        ] {
            let mut call = incoming(&req);
            call.peer = "10.0.0.9:7000".parse().unwrap();
            let resp = svc.handle(&call);
            assert_eq!(resp.reply, Err(p::INDEX_PAST_END), "{req:?}");
            assert!(resp.after_reply.is_none());
        }
        let mut call = incoming(&CbRequest::XStatsVersion);
        call.peer = "10.0.0.9:7000".parse().unwrap();
        assert_eq!(svc.handle(&call).reply, Ok(vec![0, 0, 0, 2]));
        assert!(rx.try_recv().is_err());
        assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 6);
        assert_eq!(svc.stats.debug_calls.load(Ordering::Relaxed), 4);
    }

    const SERVER: &str = "10.254.0.2:7000";

    fn status(file_type: FileType, len: u64, dv: u64, mode: u32) -> FetchStatus {
        let mut s = FetchStatus {
            interface_version: 1,
            file_type,
            unix_mode_bits: mode,
            ..FetchStatus::default()
        };
        s.set_length(len);
        s.set_data_version(dv);
        s
    }

    /// Records `status` for `fid` from SERVER, with a promise for `secs` (none if 0).
    fn record(c: &Coherence, fid: Fid, status: FetchStatus, secs: u32) {
        let server: SocketAddr = SERVER.parse().unwrap();
        c.learn_server(None, &[server]);
        let stamp = c.stamp(fid, server);
        let cb = CallBack {
            version: 1,
            expiration_time: secs,
            cb_type: if secs > 0 {
                CallBackType::Shared
            } else {
                CallBackType::Dropped
            },
        };
        c.record(fid, server, stamp, status, &cb);
    }

    fn cells() -> CellServDb {
        CellServDb::parse(
            ">other.example #Other\n192.0.2.1\n>test.example #Test\n10.254.0.2\n10.254.0.3\n",
        )
        .unwrap()
    }

    /// A service showing `coherence`, asked by a stranger.
    fn debug_service(coherence: Arc<Coherence>) -> CallbackService {
        CallbackService::new(
            Uuid::random(),
            Arc::new(|_| false),
            Arc::new(|_: &CallbackEvent| panic!("nothing may be revoked")),
        )
        .with_debug_info(DebugInfo::new(
            coherence,
            &cells(),
            Some("TEST.example"),
            2 << 20,
        ))
    }

    fn ask(svc: &CallbackService, req: CbRequest) -> Result<Vec<u8>, i32> {
        let mut call = incoming(&req);
        call.peer = "10.254.0.2:40001".parse().unwrap();
        svc.handle(&call).reply
    }

    fn ce64(svc: &CallbackService, index: i32) -> Result<DbCacheEntry, i32> {
        ask(svc, CbRequest::GetCe64 { index })
            .map(|b| p::decode_get_ce64_reply(&b).expect("a whole AFSDBCacheEntry64"))
    }

    #[test]
    fn cache_entries_are_the_known_files() {
        let coherence = Arc::new(Coherence::default());
        let big = Fid::new(536870918, 4, 9);
        let root = Fid::new(536870918, 1, 1);
        let plain = Fid::new(536870912, 6, 2);
        let mtpt = Fid::new(536870918, 8, 3);
        record(
            &coherence,
            big,
            status(FileType::File, 5 << 32 | 7, 12, 0o644),
            3600,
        );
        record(
            &coherence,
            root,
            status(FileType::Directory, 2048, 3, 0o755),
            3600,
        );
        record(&coherence, plain, status(FileType::File, 10, 1, 0o644), 0);
        record(
            &coherence,
            mtpt,
            status(FileType::Symlink, 13, 1, 0o644),
            3600,
        );
        // Asked about but never answered: nothing to show.
        coherence.stamp(Fid::new(1, 2, 3), SERVER.parse().unwrap());
        let svc = debug_service(coherence);

        let before = unix_secs(Instant::now());
        let entries: Vec<DbCacheEntry> = (0..4).map(|i| ce64(&svc, i).unwrap()).collect();
        assert_eq!(ce64(&svc, 4), Err(p::INDEX_PAST_END));
        assert_eq!(ce64(&svc, -1), Err(p::INDEX_PAST_END));
        // In FID order, each with a nonzero addr, all in the local cell (2).
        let fids: Vec<Fid> = entries.iter().map(|e| e.fid).collect();
        assert_eq!(fids, [plain, root, big, mtpt]);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.addr, i as u32 + 1);
            assert_eq!(e.cell, 2);
            assert_eq!(e.lock, p::DbLockDesc::default());
            assert_eq!((e.ref_count, e.opens, e.writers), (0, 0, 0));
        }
        // No promise: no callback, not stat'd.
        let e = entries[0];
        assert_eq!((e.length, e.data_version), (10, 1));
        assert_eq!((e.callback, e.cb_expires, e.states), (0, 0, 0));
        assert_eq!(e.mvstat, p::MVSTAT_FILE);
        // The volume root, with the promising server and when the promise ends.
        let e = entries[1];
        assert_eq!(e.mvstat, p::MVSTAT_VOLUME_ROOT);
        assert_eq!(e.callback, 0x0afe_0002);
        assert!(
            (before + 3599..=before + 3601).contains(&e.cb_expires),
            "{e:?}"
        );
        assert_eq!(e.states, p::CE_STATD);
        // A 64-bit length and data version: GetCE64 shows it whole, GetCE cut.
        let e = entries[2];
        assert_eq!((e.length, e.data_version), (5 << 32 | 7, 12));
        let short = ask(&svc, CbRequest::GetCe { index: 2 }).unwrap();
        let short = p::decode_get_ce_reply(&short).unwrap();
        assert_eq!(short, p::DbCacheEntry { length: 7, ..e });
        assert_eq!(entries[3].mvstat, p::MVSTAT_MOUNT_POINT);
    }

    #[test]
    fn listing_is_stable_until_refreshed() {
        let coherence = Arc::new(Coherence::default());
        record(
            &coherence,
            Fid::new(5, 2, 2),
            status(FileType::File, 1, 1, 0o644),
            60,
        );
        record(
            &coherence,
            Fid::new(5, 4, 4),
            status(FileType::File, 1, 1, 0o644),
            60,
        );
        let svc = debug_service(coherence.clone());
        assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(5, 2, 2));
        // A file that sorts first arrives mid-listing: the indices still walk the
        // listing they started on, and the next entry 0 soon after too.
        record(
            &coherence,
            Fid::new(4, 2, 2),
            status(FileType::File, 1, 1, 0o644),
            60,
        );
        assert_eq!(ce64(&svc, 1).unwrap().fid, Fid::new(5, 4, 4));
        assert_eq!(ce64(&svc, 2), Err(p::INDEX_PAST_END));
        assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(5, 2, 2));
        // Once the listing is old, entry 0 starts a new one.
        let view = svc.debug.as_ref().unwrap();
        view.listing.lock().unwrap().taken = Some(Instant::now() - LISTING_REFRESH);
        assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(4, 2, 2));
        assert_eq!(ce64(&svc, 2).unwrap().fid, Fid::new(5, 4, 4));
        // A broken promise shows at once (entries are read when asked).
        let server: SocketAddr = SERVER.parse().unwrap();
        coherence.apply(&CallbackEvent::Broken {
            server,
            fids: vec![Fid::new(5, 4, 4)],
            at: Instant::now(),
        });
        let e = ce64(&svc, 2).unwrap();
        assert_eq!((e.callback, e.cb_expires, e.states), (0, 0, 0));
    }

    #[test]
    fn locks_cells_and_configuration() {
        let svc = debug_service(Arc::new(Coherence::default()));
        // We hold no locks: the first index is already past the end.
        assert_eq!(ask(&svc, CbRequest::GetLock { index: 0 }), Err(1));
        assert_eq!(ce64(&svc, 0), Err(1));
        let cell = |req| p::decode_cell_reply(&ask(&svc, req).unwrap()).unwrap();
        let test = CellHosts {
            name: "test.example".into(),
            hosts: vec!["10.254.0.2".parse().unwrap(), "10.254.0.3".parse().unwrap()],
        };
        assert_eq!(cell(CbRequest::GetCellServDb { index: 1 }), test);
        assert_eq!(
            cell(CbRequest::GetCellServDb { index: 0 }).name,
            "other.example"
        );
        assert_eq!(
            cell(CbRequest::GetCellServDb { index: 2 }),
            CellHosts::default()
        );
        assert_eq!(
            cell(CbRequest::GetCellServDb { index: -1 }),
            CellHosts::default()
        );
        assert_eq!(cell(CbRequest::GetCellByNum { cell: 2 }), test);
        assert_eq!(
            cell(CbRequest::GetCellByNum { cell: 0 }),
            CellHosts::default()
        );
        assert_eq!(
            cell(CbRequest::GetCellByNum { cell: 3 }),
            CellHosts::default()
        );
        let local = ask(&svc, CbRequest::GetLocalCell).unwrap();
        assert_eq!(
            p::decode_get_local_cell_reply(&local).unwrap(),
            "TEST.example"
        );
        let config = ask(&svc, CbRequest::GetCacheConfig { caller_version: 1 }).unwrap();
        let (version, bytes, words) = p::decode_get_cache_config_reply(&config).unwrap();
        assert_eq!((version, bytes), (1, 36));
        let config = CacheConfig::from_words(&words).unwrap();
        assert_eq!(config.first_chunk_size, 2 << 20);
        assert_eq!(config.other_chunk_size, 2 << 20);
        assert!(config.mem_cache);
        let prefs = ask(&svc, CbRequest::GetServerPrefs { index: 0 }).unwrap();
        assert_eq!(p::decode_get_server_prefs_reply(&prefs).unwrap(), None);
        assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn entries_of_an_unknown_cell() {
        // ThisCell names no listed cell and there are several: cell 0.
        let info = DebugInfo::new(Arc::new(Coherence::default()), &cells(), Some("x"), 1);
        assert_eq!(info.entry_cell(), 0);
        let one = CellServDb::parse(">only.example\n10.0.0.1\n").unwrap();
        let info = DebugInfo::new(Arc::new(Coherence::default()), &one, None, 1);
        assert_eq!(info.entry_cell(), 1);
    }
}
