//! The AFS client: cells, volume locations, path resolution and file operations.
//!
//! One [`Client`] owns one Rx endpoint. Its callback service runs on that endpoint,
//! and every status and promise a fileserver gives us is recorded in a
//! [`Coherence`] owner that callback breaks and server resets keep honest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rx::{Endpoint, EndpointConfig};
use tokio::io::AsyncRead;
use tokio::sync::broadcast;
use tracing::debug;

use crate::cache::coherence::Coherence;
use crate::cache::validity::{Check, Why};
use crate::callback::{CallbackEvent, CallbackService, CallbackStats};
use crate::cell::{parse_this_cell, CellConfig, CellPaths, CellServDb};
use crate::dir::Directory;
use crate::error::ErrorKind;
use crate::fs::{FetchStatusReply, FileServer, FsStats};
use crate::identity::{AuthError, Identity};
use crate::path::{AfsPath, MountPoint, Root};
use crate::rpc::{Error, Result};
use crate::types::{CallBack, FetchStatus, Fid, FileType, StoreStatus, Uuid, VolumeType};
use crate::vl::{VlClient, VolumeLocation};

mod entries;
mod files;
mod resolve;
mod sites;
mod volumes;

pub use resolve::{Confinement, Follow, Step};
use sites::SiteRanks;
pub use sites::FAILOVER_DEAD_TIME;
use volumes::VolumeCache;
pub use volumes::VLDB_TTL;

/// How many symlinks one resolution may follow.
const MAX_SYMLINKS: usize = 16;
/// Bytes per FetchData64 call when reading a file.
const READ_CHUNK: u64 = 2 << 20;
/// FetchData64 calls in flight per read.
const READ_PARALLEL: usize = 8;
/// How often the sites of a read-only volume that are all offline or busy (a release in
/// progress) are asked again before the error is the caller's (about 10 s in all).
const SITE_ROUNDS: u32 = 14;

/// Where to find the cell configuration and how to talk.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// CellServDB path; default `$AFS_CELLSERVDB` or /etc/openafs/CellServDB.
    pub cellservdb: Option<PathBuf>,
    /// ThisCell path; default `$AFS_THISCELL` or /etc/openafs/ThisCell.
    pub thiscell: Option<PathBuf>,
    /// The local address of our socket (and of our callback service).
    pub bind: SocketAddr,
    pub rx: EndpointConfig,
    /// How often servers we hold promises from are probed, so that one which
    /// restarted and forgot us is noticed while we are idle (None: never).
    pub probe_interval: Option<Duration>,
    /// Trust no callback promise longer than this, whatever the server grants
    /// (None: as granted). Bounds how long a partitioned client serves cached state.
    pub max_promise: Option<Duration>,
    /// Who the client is to the servers (anonymous unless a token is given).
    pub identity: Identity,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            cellservdb: None,
            thiscell: None,
            bind: "0.0.0.0:0".parse().expect("valid address"),
            rx: EndpointConfig::default(),
            probe_interval: Some(Duration::from_secs(45)),
            max_promise: None,
            identity: Identity::Anonymous,
        }
    }
}

/// A file or directory found by path.
#[derive(Debug, Clone)]
pub struct Node {
    pub cell: String,
    pub fid: Fid,
    pub status: FetchStatus,
    /// The fileserver that answered for it.
    pub server: SocketAddr,
    /// The promise that came with the status (none after a store).
    pub callback: CallBack,
    pub volume_type: VolumeType,
}

/// What we know of a fileserver's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its UUID, as it told us in InitCallBackState3.
    pub uuid: Option<Uuid>,
    /// Its capabilities, from the last probe.
    pub capabilities: Option<crate::types::Capabilities>,
    /// We probed it before our first call to it (answered or not).
    pub introduced: bool,
    /// Its smoothed probe round-trip time, while it answers: what ranks the sites of a
    /// read-only volume.
    pub rtt: Option<Duration>,
}

type Servers = Arc<Mutex<HashMap<SocketAddr, ServerInfo>>>;

fn lock_servers(s: &Servers) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, ServerInfo>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Files whose promises a break or reset revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromisesLost {
    pub server: SocketAddr,
    pub files: Vec<(Fid, Why)>,
    /// When the callback arrived.
    pub at: Instant,
}

/// One directory entry, with its status when it could be fetched.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub fid: Fid,
    pub status: Option<FetchStatus>,
}

/// A directory's contents and the directory parsed from them.
type Parsed = (Arc<Vec<u8>>, Arc<Directory>);

/// Bytes as of a data version.
type Versioned = (u64, Arc<Vec<u8>>);

/// An AFS client: the state every identity shares ([`Shared`]: one socket, one callback
/// service, one table of promises, one cache) seen as one identity. [`Client::as_identity`]
/// gives another identity's view of the same state, as a cache manager serves many users.
pub struct Client {
    shared: Arc<Shared>,
    identity: Identity,
}

impl std::ops::Deref for Client {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What all identities of a client share.
pub struct Shared {
    endpoint: Endpoint,
    cells: CellServDb,
    this_cell: Option<String>,
    vl: Mutex<HashMap<String, Arc<VlClient>>>,
    /// What the VLDB said about each volume, and when.
    volumes: VolumeCache,
    callbacks: Arc<CallbackService>,
    coherence: Arc<Coherence>,
    fs_stats: Arc<FsStats>,
    servers: Servers,
    /// How each fileserver has been answering: the order a volume's sites are tried in.
    sites: Arc<SiteRanks>,
    lost: broadcast::Sender<PromisesLost>,
    /// Contents of directories and symlinks, with the data version they were read
    /// at: resolution reads them again only when they changed.
    contents: Mutex<HashMap<Fid, Versioned>>,
    /// Directories parsed from those contents (keyed by the very bytes they came from).
    parsed: Mutex<HashMap<Fid, Parsed>>,
    uuid: Uuid,
    prober: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(p) = &self.prober {
            p.abort();
        }
    }
}

impl Client {
    /// Reads the cell configuration, binds the socket and starts the callback service.
    pub async fn new(cfg: ClientConfig) -> Result<Self> {
        let endpoint = Endpoint::bind(cfg.bind, cfg.rx.clone()).await?;
        Self::with_endpoint(cfg, endpoint)
    }

    /// A client on an endpoint made elsewhere (on a simulated network, in tests);
    /// `cfg.bind` and `cfg.rx` are not used. Must be called within a tokio runtime.
    pub fn with_endpoint(cfg: ClientConfig, endpoint: Endpoint) -> Result<Self> {
        let paths = CellPaths::resolve(cfg.cellservdb.as_deref(), cfg.thiscell.as_deref());
        let cells = CellServDb::load(&paths.cellservdb)
            .map_err(|e| Error::local(ErrorKind::Other, e.to_string()))?;
        // ThisCell is optional: paths name their cell.
        let this_cell = std::fs::read_to_string(&paths.thiscell)
            .ok()
            .and_then(|text| parse_this_cell(&text).ok());
        let uuid = Uuid::random();
        let coherence = Arc::new(Coherence::new(cfg.max_promise));
        let (lost_tx, _) = broadcast::channel(4096);
        let servers: Servers = Arc::default();
        let revoke = {
            let coherence = coherence.clone();
            let servers = servers.clone();
            let lost_tx: broadcast::Sender<PromisesLost> = lost_tx.clone();
            Arc::new(
                move |event: &CallbackEvent| -> Option<crate::callback::AfterReply> {
                    let files = coherence.apply(event);
                    debug!(lost = files.len(), "promises revoked");
                    let (server, at) = match event {
                        CallbackEvent::Broken { server, at, .. } => (*server, *at),
                        CallbackEvent::ServerReset { server, uuid, at } => {
                            if let Some(uuid) = uuid {
                                lock_servers(&servers).entry(*server).or_default().uuid =
                                    Some(*uuid);
                            }
                            (*server, *at)
                        }
                    };
                    let lost_tx = lost_tx.clone();
                    Some(Box::new(move || {
                        let _ = lost_tx.send(PromisesLost { server, files, at });
                    }))
                },
            )
        };
        let senders = {
            let coherence = coherence.clone();
            Arc::new(move |peer| coherence.is_fileserver(peer))
        };
        let callbacks = Arc::new(CallbackService::new(uuid, senders, revoke).with_debug_info(
            crate::callback::DebugInfo::new(
                coherence.clone(),
                &cells,
                this_cell.as_deref(),
                READ_CHUNK as u32,
            ),
        ));
        endpoint.register_service(crate::callback::SERVICE, callbacks.clone());
        let sites = Arc::new(SiteRanks::default());
        let prober = cfg.probe_interval.map(|every| {
            tokio::spawn(probe_servers(
                endpoint.clone(),
                coherence.clone(),
                servers.clone(),
                sites.clone(),
                every,
            ))
        });
        debug!(local = %endpoint.local_addr(), "AFS client up");
        let shared = Shared {
            endpoint,
            cells,
            this_cell,
            vl: Mutex::default(),
            volumes: VolumeCache::default(),
            callbacks,
            coherence,
            fs_stats: Arc::default(),
            servers: servers.clone(),
            sites,
            lost: lost_tx,
            contents: Mutex::default(),
            parsed: Mutex::default(),
            uuid,
            prober,
        };
        Ok(Self {
            shared: Arc::new(shared),
            identity: cfg.identity,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The cell named by ThisCell, if configured.
    pub fn this_cell(&self) -> Option<&str> {
        self.this_cell.as_deref()
    }

    /// The cached files each break or reset invalidated, and why; sent after the
    /// reply to the server. This is what a layer holding mappings listens to.
    pub fn subscribe_lost(&self) -> broadcast::Receiver<PromisesLost> {
        self.lost.subscribe()
    }

    /// What we know of the fileserver at `server`.
    pub fn server_info(&self, server: SocketAddr) -> Option<ServerInfo> {
        let mut info = lock_servers(&self.servers).get(&server).cloned()?;
        info.rtt = self.sites.rtt(server);
        Some(info)
    }

    /// Callback breaks and server resets as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<CallbackEvent> {
        self.callbacks.subscribe()
    }

    pub fn callback_stats(&self) -> Arc<CallbackStats> {
        self.callbacks.stats()
    }

    /// What we know about each file and how long we may trust it: the one
    /// owner of that answer, shared with the callback service (which applies
    /// breaks before replying), the cache manager and the pager.
    pub fn coherence(&self) -> &Arc<Coherence> {
        &self.coherence
    }

    /// Whether `fid`'s cached state may be used without asking its server.
    pub fn check(&self, fid: Fid) -> Check {
        self.coherence.check(fid)
    }

    /// The server and expiry time of `fid`'s promise, if it has one.
    pub fn promise(&self, fid: Fid) -> Option<(SocketAddr, Instant)> {
        self.coherence.promise(fid)
    }

    fn cell(&self, name: &str) -> Result<&CellConfig> {
        self.cells.get(name).ok_or_else(|| {
            Error::local(
                ErrorKind::NotFound,
                format!("unknown cell {name} (not in CellServDB)"),
            )
        })
    }

    fn vl(&self, cell: &str) -> Result<Arc<VlClient>> {
        let config = self.cell(cell)?;
        let mut map = self.vl.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .entry(cell.to_string())
            .or_insert_with(|| {
                let servers = config
                    .vlservers
                    .iter()
                    .map(|a| SocketAddr::V4(*a))
                    .collect();
                Arc::new(VlClient::new(self.endpoint.clone(), servers))
            })
            .clone())
    }

    /// The VL client of a cell, for callers that need volume information.
    pub fn vl_client(&self, cell: &str) -> Result<Arc<VlClient>> {
        self.vl(cell)
    }

    /// A volume's location by name, from the [`VolumeCache`] while it is fresh: every
    /// path resolution crosses names.
    async fn volume_by_name(&self, cell: &str, name: &str) -> Result<Arc<VolumeLocation>> {
        let now = Instant::now();
        if let Some(loc) = self.volumes.by_name(cell, name, now) {
            return Ok(loc);
        }
        let loc = Arc::new(self.vl(cell)?.by_name(name).await?);
        self.remember(cell, Some(name), &loc, now);
        Ok(loc)
    }

    /// The location of the volume of clone `id`, from the [`VolumeCache`] while it is
    /// fresh.
    async fn volume_by_id(&self, cell: &str, id: u32) -> Result<Arc<VolumeLocation>> {
        let now = Instant::now();
        if let Some(loc) = self.volumes.by_id(id, now) {
            return Ok(loc);
        }
        let loc = Arc::new(self.vl(cell)?.by_id(id).await?);
        self.remember(cell, None, &loc, now);
        Ok(loc)
    }

    fn remember(&self, cell: &str, name: Option<&str>, loc: &Arc<VolumeLocation>, now: Instant) {
        if let Some(ro) = loc.id(VolumeType::ReadOnly) {
            self.coherence.note_read_only(ro);
        }
        for (uuid, addrs) in &loc.hosts {
            self.coherence.learn_server(*uuid, addrs);
        }
        self.volumes.remember(cell, name, loc, now);
    }

    /// Forgets every volume location, so that the next use of each volume asks the
    /// VLDB where it is (OpenAFS's `fs checkvolumes`); how many were forgotten.
    pub fn check_volumes(&self) -> usize {
        self.volumes.flush()
    }

    /// The cell `fid` belongs to, if we have seen its volume.
    pub fn cell_of(&self, fid: Fid) -> Option<String> {
        self.volumes.cell_of(fid.volume)
    }

    /// Reads `len` bytes of `node` at `pos` with FetchData64, recording the promise
    /// that comes back with them. From the best site of the volume that answers (see
    /// [`FAILOVER_DEAD_TIME`]): a read-only file from any of its sites (all hold
    /// the same release), a file of a moved volume from where the VLDB says it went. The
    /// bytes reach `sink` once one site sent them all: a site that died mid-reply leaves
    /// nothing half-delivered.
    pub async fn fetch_range(
        &self,
        node: &Node,
        pos: u64,
        len: u64,
        mut sink: impl FnMut(bytes::Bytes) -> std::io::Result<()>,
    ) -> Result<FetchStatusReply> {
        let ((reply, chunks), _, _) = self
            .on_sites(&node.cell, node.fid, |server, fs| async move {
                let stamp = self.stamp(node.fid, server).await;
                let mut chunks = Vec::new();
                let reply = fs
                    .fetch_data(node.fid, pos, len, |b| {
                        chunks.push(b);
                        Ok(())
                    })
                    .await?;
                self.note_promise(&node.cell, node.fid, server, stamp, &reply);
                Ok((reply, chunks))
            })
            .await?;
        for c in chunks {
            sink(c)?;
        }
        Ok(reply)
    }

    /// Writes `data` at `pos` of `node` with StoreData64 and makes the file
    /// `file_len` long; records the new status as our own change. A volume that moved
    /// is followed: a server that refuses with "moved" or "no such volume" stored
    /// nothing, and the store goes where the VLDB says the volume is now.
    pub async fn store_range(
        &self,
        node: &Node,
        pos: u64,
        data: bytes::Bytes,
        file_len: u64,
    ) -> Result<FetchStatus> {
        let range = crate::fs::StoreRange {
            pos,
            len: data.len() as u64,
            file_length: file_len,
        };
        let reply = self
            .change(node, |fs| {
                let data = data.clone();
                async move {
                    fs.store_data(
                        node.fid,
                        &StoreStatus::new(),
                        range,
                        std::io::Cursor::new(data),
                        |_| {},
                    )
                    .await
                }
            })
            .await?;
        self.note_own_change(node.fid, reply.status);
        Ok(reply.status)
    }

    /// A call that changes something in `node`'s volume, on the volume's site: a server
    /// that refused with "moved" or "no such volume" changed nothing, so the call is made
    /// again where the VLDB says the volume is now ([`on_sites`](Self::on_sites)).
    async fn change<T, F, Fut>(&self, node: &Node, mut op: F) -> Result<T>
    where
        F: FnMut(FileServer) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let (v, _, _) = self.on_sites(&node.cell, node.fid, |_, fs| op(fs)).await?;
        Ok(v)
    }

    /// The fileservers holding `fid`'s volume, in the order to try them: the first use of
    /// a volume with several sites probes them all (at once), and the fastest to answer
    /// is asked first ([`SiteRanks`]).
    async fn servers_for(&self, cell: &str, fid: Fid) -> Result<(Vec<SocketAddr>, VolumeType)> {
        let loc = self.volume_by_id(cell, fid.volume).await?;
        let vtype = loc.type_of(fid.volume).unwrap_or(VolumeType::ReadWrite);
        let servers = loc.servers(vtype);
        if servers.is_empty() {
            return Err(Error::local(
                ErrorKind::VolumeOffline,
                format!("volume {} has no usable site", loc.name),
            ));
        }
        if servers.len() > 1 {
            futures_util::future::join_all(servers.iter().map(|&s| self.introduce(s))).await;
        }
        Ok((self.sites.order(servers), vtype))
    }

    /// Runs `op` on the sites of `fid`'s volume, best first, until one answers. A site
    /// that does not answer is marked down and the next one asked; so is one where a
    /// read-only clone is offline or busy (a release in progress there), and when every
    /// site is, they are asked again for about as long as a busy volume is waited for.
    /// A server that says the volume moved or is not there makes us ask the VLDB again,
    /// once. Returns what `op` returned, the server that answered and the volume's type.
    async fn on_sites<T, F, Fut>(
        &self,
        cell: &str,
        fid: Fid,
        mut op: F,
    ) -> Result<(T, SocketAddr, VolumeType)>
    where
        F: FnMut(SocketAddr, FileServer) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut relocated = false;
        let mut round = 0;
        loop {
            let (servers, vtype) = self.servers_for(cell, fid).await?;
            let several = servers.len() > 1;
            let mut last = None;
            for server in servers {
                let mut fs = self.file_server_as(cell, server)?;
                if several {
                    fs = fs.with_failover();
                }
                let sent = Instant::now();
                match op(server, fs).await {
                    Ok(v) => {
                        self.sites.reached(server, sent.elapsed());
                        return Ok((v, server, vtype));
                    }
                    Err(e) if e.kind() == ErrorKind::ServerUnreachable => {
                        debug!(%server, error = %e, "site unreachable; trying the next");
                        self.sites.unreachable(server);
                        last = Some(e);
                    }
                    Err(e) if several && worth_another_site(&e) => {
                        debug!(%server, error = %e, "clone not available there; trying the next site");
                        last = Some(e);
                    }
                    Err(e)
                        if !relocated
                            && matches!(
                                e.kind(),
                                ErrorKind::VolumeMoved | ErrorKind::NoSuchVolume
                            ) =>
                    {
                        last = Some(e);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let e = last.expect("at least one site was tried");
            match e.kind() {
                ErrorKind::VolumeMoved | ErrorKind::NoSuchVolume if !relocated => {
                    debug!(volume = fid.volume, error = %e, "volume moved: looking it up again");
                    self.forget_volume(fid.volume);
                    relocated = true;
                }
                ErrorKind::VolumeOffline | ErrorKind::VolumeBusy if round < SITE_ROUNDS => {
                    round += 1;
                    tokio::time::sleep(crate::fs::busy_backoff(round)).await;
                }
                _ => return Err(e),
            }
        }
    }

    fn forget_volume(&self, id: u32) {
        self.volumes.forget(id);
    }

    /// Calls made to fileservers by this client, and the bytes moved.
    pub fn fs_stats(&self) -> &FsStats {
        &self.fs_stats
    }

    /// Calls about the client itself (capabilities, giving up callbacks): anonymous, as
    /// the fileserver keeps callbacks per client, not per user.
    fn file_server_at(&self, server: SocketAddr) -> FileServer {
        FileServer::with_stats(self.endpoint.clone(), server, self.fs_stats.clone())
    }

    /// Calls about files of `cell`, made as the client's identity.
    fn file_server_as(&self, cell: &str, server: SocketAddr) -> Result<FileServer> {
        let security = self.identity.security(cell).map_err(|e| {
            let kind = match e {
                AuthError::Expired { .. } => ErrorKind::TokenExpired,
                AuthError::NoToken { .. } => ErrorKind::PermissionDenied,
                AuthError::Renewal(_) => ErrorKind::AuthenticationFailed,
            };
            Error::Local {
                kind,
                message: e.to_string(),
            }
        })?;
        Ok(self
            .file_server_at(server)
            .with_security(security, self.identity.name_in(cell)))
    }

    /// A fileserver handle for `node`'s server, as the client's identity.
    pub fn file_server(&self, node: &Node) -> Result<FileServer> {
        self.file_server_as(&node.cell, node.server)
    }

    /// Who this client is to the servers of the cells its identity has tokens for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The same client (socket, callbacks, promises, cache) as another identity. Calls
    /// go on that identity's connections, and what it may see is decided from the
    /// servers' answers to it.
    pub fn as_identity(&self, identity: Identity) -> Client {
        Client {
            shared: self.shared.clone(),
            identity,
        }
    }

    /// FetchStatus, recording the promise that comes with it, from the best site of the
    /// volume that answers: one that does not answer within [`FAILOVER_DEAD_TIME`], or
    /// whose read-only clone is offline or busy, is left for the next; a volume that moved
    /// is looked up again.
    pub async fn fetch_status(&self, cell: &str, fid: Fid) -> Result<Node> {
        let (reply, server, volume_type) = self
            .on_sites(cell, fid, |server, fs| async move {
                let stamp = self.stamp(fid, server).await;
                let reply = fs.fetch_status(fid).await?;
                self.note_promise(cell, fid, server, stamp, &reply);
                Ok(reply)
            })
            .await?;
        Ok(Node {
            cell: cell.to_string(),
            fid,
            status: reply.status,
            server,
            callback: reply.callback,
            volume_type,
        })
    }

    /// Samples the break counters before a call about `fid` to `server`. A
    /// server we have not spoken to is introduced first (GetCapabilities, as
    /// kAFS probes a new server): it calls us back with InitCallBackState3 on
    /// first contact, and that reset must come before the stamp, or the first
    /// reply from every server would be taken as overtaken.
    async fn stamp(&self, fid: Fid, server: SocketAddr) -> crate::cache::validity::Stamp {
        self.introduce(server).await;
        self.coherence.stamp(fid, server)
    }

    /// Probes `server` once, before our first call to it. Only once, answered
    /// or not: a server that is down would otherwise cost every call two dead
    /// times (if it answers later, its first reply may go without a promise).
    async fn introduce(&self, server: SocketAddr) {
        let introduced = std::mem::replace(
            &mut lock_servers(&self.servers)
                .entry(server)
                .or_default()
                .introduced,
            true,
        );
        if introduced {
            return;
        }
        // Learn the address as a fileserver's before it calls us back.
        self.coherence.learn_server(None, &[server]);
        probe(
            &self.file_server_at(server).with_failover(),
            &self.servers,
            &self.sites,
        )
        .await;
    }

    /// Records a reply's status and promise; the promise counts only if nothing
    /// broke since `stamp`, taken before the call went out.
    /// The name our identity goes by in `cell`: whose rights a reply to us carries.
    pub fn who(&self, cell: &str) -> Arc<str> {
        Arc::from(self.identity.name_in(cell))
    }

    fn note_promise(
        &self,
        cell: &str,
        fid: Fid,
        server: SocketAddr,
        mut stamp: crate::cache::validity::Stamp,
        reply: &FetchStatusReply,
    ) {
        self.note_snapshot(
            fid.volume,
            server,
            &reply.volsync,
            std::slice::from_mut(&mut stamp),
        );
        self.coherence.record(
            fid,
            server,
            stamp,
            reply.status,
            &reply.callback,
            &self.who(cell),
        );
    }

    /// Notes the volume snapshot a reply from `server` came from (its VolSync), for the
    /// call `stamps` were taken for. Another snapshot than before (a release of a
    /// read-only clone, a restore) voids the volume's cached files, as a volume-wide
    /// break would, and tells whoever maps them to let go: the break itself may have
    /// been lost, or have gone to another site.
    fn note_snapshot(
        &self,
        volume: u32,
        server: SocketAddr,
        volsync: &crate::types::VolSync,
        stamps: &mut [crate::cache::validity::Stamp],
    ) {
        let voided = self
            .coherence
            .note_volume(volume, volsync.creation_date, stamps);
        if !voided.is_empty() {
            debug!(
                volume,
                files = voided.len(),
                "another snapshot of the volume: its cached files are void"
            );
            let _ = self.lost.send(PromisesLost {
                server,
                files: voided,
                at: Instant::now(),
            });
        }
    }

    /// Records a new file or directory and its parent's new status. The new
    /// file's promise is not taken: a break for it could have overtaken the
    /// reply before we knew its FID, so its first use asks the server.
    fn note_created(&self, dir: &Node, reply: &crate::fs::CreateReply) {
        self.coherence.record_status(reply.fid, reply.status);
        self.coherence.record_own_store(dir.fid, reply.dir_status);
    }

    /// Records a status our own change produced: our callbacks are not broken by
    /// our own changes, so the table must learn the new data version from us.
    fn note_own_change(&self, fid: Fid, status: FetchStatus) {
        self.coherence.record_own_store(fid, status);
    }

    /// Tells every fileserver we hold promises from that we hold none, so they
    /// stop sending breaks to a client that is going away.
    pub async fn give_up_callbacks(&self) {
        let servers = self.coherence.servers_with_promises();
        for server in servers {
            let fs = self.file_server_at(server);
            let _ = tokio::time::timeout(Duration::from_secs(2), fs.give_up_all_callbacks()).await;
        }
        self.coherence.drop_promises();
    }
}

/// Whether another site of a read-only volume may succeed where one failed: it did not
/// answer, or its clone is offline or busy (a release in progress there).
fn worth_another_site(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ServerUnreachable | ErrorKind::VolumeOffline | ErrorKind::VolumeBusy
    )
}

/// Probes every server we hold live promises from, every `every`. A server that
/// forgot us (a restart that dropped its callback state) answers only after calling
/// us back with InitCallBackState3, which revokes its promises through the callback
/// service: an idle client learns it within one interval, not at its next call.
///
/// Servers that stopped answering are probed too, so that one which is back is ranked
/// by its answers again ([`SiteRanks`]).
async fn probe_servers(
    endpoint: Endpoint,
    coherence: Arc<Coherence>,
    servers: Servers,
    sites: Arc<SiteRanks>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut due = coherence.servers_with_promises();
        due.extend(sites.down());
        due.sort();
        due.dedup();
        for server in due {
            let fs = FileServer::new(endpoint.clone(), server).with_failover();
            probe(&fs, &servers, &sites).await;
        }
    }
}

/// GetCapabilities to `fs`: what it can do, and how fast it answers.
async fn probe(fs: &FileServer, servers: &Servers, sites: &SiteRanks) {
    let server = fs.addr();
    let sent = Instant::now();
    match fs.get_capabilities().await {
        Ok(caps) => {
            debug!(%server, "probe answered");
            sites.answered(server, sent.elapsed());
            lock_servers(servers)
                .entry(server)
                .or_default()
                .capabilities = Some(caps);
        }
        Err(e) => {
            debug!(%server, error = %e, "probe failed");
            if e.kind() == ErrorKind::ServerUnreachable {
                sites.unreachable(server);
            }
        }
    }
}
