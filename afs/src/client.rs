//! The AFS client: cells, volume locations, path resolution and file operations.
//!
//! One [`Client`] owns one Rx endpoint. Its callback service runs on that endpoint,
//! and every status and promise a fileserver gives us is recorded in a
//! [`Validity`] table that callback breaks and server resets keep honest.

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

use crate::cache::validity::{Check, SharedValidity, Validity, Why};
use crate::callback::{CallbackEvent, CallbackService, CallbackStats};
use crate::cell::{parse_this_cell, CellConfig, CellPaths, CellServDb};
use crate::dir::Directory;
use crate::error::ErrorKind;
use crate::fs::{FetchStatusReply, FileServer, FsStats};
use crate::path::{AfsPath, MountPoint};
use crate::rpc::{Error, Result};
use crate::types::{CallBack, FetchStatus, Fid, FileType, StoreStatus, Uuid, VolumeType};
use crate::vl::{VlClient, VolumeLocation};

/// How many symlinks one resolution may follow.
const MAX_SYMLINKS: usize = 16;
/// Bytes per FetchData64 call when reading a file.
const READ_CHUNK: u64 = 2 << 20;
/// FetchData64 calls in flight per read.
const READ_PARALLEL: usize = 8;

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

/// Bytes as of a data version.
type Versioned = (u64, Arc<Vec<u8>>);

/// An AFS client.
pub struct Client {
    endpoint: Endpoint,
    cells: CellServDb,
    this_cell: Option<String>,
    vl: Mutex<HashMap<String, Arc<VlClient>>>,
    volumes: Mutex<HashMap<u32, Arc<VolumeLocation>>>,
    /// The cell of every volume id we have seen.
    volume_cells: Mutex<HashMap<u32, String>>,
    callbacks: Arc<CallbackService>,
    validity: SharedValidity,
    fs_stats: Arc<FsStats>,
    servers: Servers,
    lost: broadcast::Sender<PromisesLost>,
    /// Contents of directories and symlinks, with the data version they were read
    /// at: resolution reads them again only when they changed.
    contents: Mutex<HashMap<Fid, Versioned>>,
    uuid: Uuid,
    prober: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(p) = &self.prober {
            p.abort();
        }
    }
}

impl Client {
    /// Reads the cell configuration, binds the socket and starts the callback service.
    pub async fn new(cfg: ClientConfig) -> Result<Self> {
        let paths = CellPaths::resolve(cfg.cellservdb.as_deref(), cfg.thiscell.as_deref());
        let cells = CellServDb::load(&paths.cellservdb)
            .map_err(|e| Error::local(ErrorKind::Other, e.to_string()))?;
        // ThisCell is optional: paths name their cell.
        let this_cell = std::fs::read_to_string(&paths.thiscell)
            .ok()
            .and_then(|text| parse_this_cell(&text).ok());
        let endpoint = Endpoint::bind(cfg.bind, cfg.rx).await?;
        let uuid = Uuid::random();
        let validity: SharedValidity = Arc::new(std::sync::Mutex::new(Validity::with_max_promise(
            cfg.max_promise,
        )));
        let (lost_tx, _) = broadcast::channel(4096);
        let servers: Servers = Arc::default();
        let revoke = {
            let validity = validity.clone();
            let servers = servers.clone();
            let lost_tx: broadcast::Sender<PromisesLost> = lost_tx.clone();
            Arc::new(
                move |event: &CallbackEvent| -> Option<crate::callback::AfterReply> {
                    let files = lock(&validity).apply(event);
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
        let callbacks = Arc::new(CallbackService::new(uuid, revoke));
        endpoint.register_service(crate::callback::SERVICE, callbacks.clone());
        let prober = cfg.probe_interval.map(|every| {
            tokio::spawn(probe_servers(
                endpoint.clone(),
                validity.clone(),
                servers.clone(),
                every,
            ))
        });
        debug!(local = %endpoint.local_addr(), "AFS client up");
        Ok(Self {
            endpoint,
            cells,
            this_cell,
            vl: Mutex::default(),
            volumes: Mutex::default(),
            volume_cells: Mutex::default(),
            callbacks,
            validity,
            fs_stats: Arc::default(),
            servers: servers.clone(),
            lost: lost_tx,
            contents: Mutex::default(),
            uuid,
            prober,
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
        lock_servers(&self.servers).get(&server).cloned()
    }

    /// Callback breaks and server resets as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<CallbackEvent> {
        self.callbacks.subscribe()
    }

    pub fn callback_stats(&self) -> Arc<CallbackStats> {
        self.callbacks.stats()
    }

    /// What we know about each file and how long we may trust it; shared with
    /// the callback service, which applies breaks before replying.
    pub fn validity(&self) -> SharedValidity {
        self.validity.clone()
    }

    /// Whether `fid`'s cached state may be used without asking its server.
    pub fn check(&self, fid: Fid) -> Check {
        lock(&self.validity).check(fid, Instant::now())
    }

    /// The server and expiry time of `fid`'s promise, if it has one.
    pub fn promise(&self, fid: Fid) -> Option<(SocketAddr, Instant)> {
        lock(&self.validity).promise(fid)
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

    async fn volume_by_name(&self, cell: &str, name: &str) -> Result<Arc<VolumeLocation>> {
        let loc = Arc::new(self.vl(cell)?.by_name(name).await?);
        self.remember(cell, &loc);
        Ok(loc)
    }

    async fn volume_by_id(&self, cell: &str, id: u32) -> Result<Arc<VolumeLocation>> {
        if let Some(loc) = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(loc.clone());
        }
        let loc = Arc::new(self.vl(cell)?.by_id(id).await?);
        self.remember(cell, &loc);
        Ok(loc)
    }

    fn remember(&self, cell: &str, loc: &Arc<VolumeLocation>) {
        if let Some(ro) = loc.id(VolumeType::ReadOnly) {
            lock(&self.validity).note_read_only(ro);
        }
        let mut cache = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        let mut cells = self.volume_cells.lock().unwrap_or_else(|e| e.into_inner());
        for id in loc.ids.iter().filter(|&&id| id != 0) {
            cache.insert(*id, loc.clone());
            cells.insert(*id, cell.to_string());
        }
    }

    /// The cell `fid` belongs to, if we have seen its volume.
    pub fn cell_of(&self, fid: Fid) -> Option<String> {
        self.volume_cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fid.volume)
            .cloned()
    }

    /// Reads `len` bytes of `node` at `pos` with FetchData64, recording the promise
    /// that comes back with them.
    pub async fn fetch_range(
        &self,
        node: &Node,
        pos: u64,
        len: u64,
        sink: impl FnMut(bytes::Bytes) -> std::io::Result<()>,
    ) -> Result<FetchStatusReply> {
        let reply = self
            .file_server(node)
            .fetch_data(node.fid, pos, len, sink)
            .await?;
        self.note_promise(node.fid, node.server, &reply);
        Ok(reply)
    }

    /// Writes `data` at `pos` of `node` with StoreData64 and makes the file
    /// `file_len` long; records the new status as our own change.
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
            .file_server(node)
            .store_data(
                node.fid,
                &StoreStatus::new(),
                range,
                std::io::Cursor::new(data),
                |_| {},
            )
            .await?;
        self.note_own_change(node.fid, reply.status);
        Ok(reply.status)
    }

    /// The fileservers holding `fid`'s volume, in the order to try them.
    async fn servers_for(&self, cell: &str, fid: Fid) -> Result<(Vec<SocketAddr>, VolumeType)> {
        let loc = self.volume_by_id(cell, fid.volume).await?;
        let vtype = loc.type_of(fid.volume).unwrap_or(VolumeType::ReadWrite);
        let servers = loc.servers(vtype).to_vec();
        if servers.is_empty() {
            return Err(Error::local(
                ErrorKind::VolumeOffline,
                format!("volume {} has no usable site", loc.name),
            ));
        }
        Ok((servers, vtype))
    }

    fn forget_volume(&self, id: u32) {
        let mut cache = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loc) = cache.remove(&id) {
            cache.retain(|_, l| !Arc::ptr_eq(l, &loc));
        }
    }

    /// Calls made to fileservers by this client, and the bytes moved.
    pub fn fs_stats(&self) -> &FsStats {
        &self.fs_stats
    }

    fn file_server_at(&self, server: SocketAddr) -> FileServer {
        FileServer::with_stats(self.endpoint.clone(), server, self.fs_stats.clone())
    }

    /// A fileserver handle for `node`'s server.
    pub fn file_server(&self, node: &Node) -> FileServer {
        self.file_server_at(node.server)
    }

    /// FetchStatus, recording the promise that comes with it. Tries each site of
    /// the volume in turn while they are unreachable, and looks the volume up again
    /// once if a server says it moved or does not have it.
    pub async fn fetch_status(&self, cell: &str, fid: Fid) -> Result<Node> {
        let mut relocated = false;
        loop {
            let (servers, volume_type) = self.servers_for(cell, fid).await?;
            let mut last = None;
            for server in servers {
                let fs = self.file_server_at(server);
                match fs.fetch_status(fid).await {
                    Ok(reply) => {
                        self.note_promise(fid, server, &reply);
                        return Ok(Node {
                            cell: cell.to_string(),
                            fid,
                            status: reply.status,
                            server,
                            callback: reply.callback,
                            volume_type,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::ServerUnreachable => {
                        debug!(%server, error = %e, "site unreachable; trying the next");
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
            if relocated || e.kind() == ErrorKind::ServerUnreachable {
                return Err(e);
            }
            debug!(volume = fid.volume, error = %e, "volume moved: looking it up again");
            self.forget_volume(fid.volume);
            relocated = true;
        }
    }

    fn note_promise(&self, fid: Fid, server: SocketAddr, reply: &FetchStatusReply) {
        let mut v = lock(&self.validity);
        if v.note_volume(fid.volume, reply.volsync.creation_date) {
            debug!(
                volume = fid.volume,
                "volume was restored or replaced: its cached files are void"
            );
        }
        v.record(fid, server, reply.status, &reply.callback, Instant::now());
    }

    /// The root directory of a volume. A read-only wish falls back to the read-write
    /// volume when there is no read-only clone; a backup wish does not.
    async fn volume_root(&self, cell: &str, volume: &str, want: VolumeType) -> Result<Node> {
        let loc = self.volume_by_name(cell, volume).await?;
        let vtype = match want {
            VolumeType::ReadOnly if loc.id(VolumeType::ReadOnly).is_none() => VolumeType::ReadWrite,
            other => other,
        };
        let id = loc.id(vtype).ok_or_else(|| {
            Error::local(
                ErrorKind::NoSuchVolume,
                format!("volume {volume} has no {vtype:?} clone"),
            )
        })?;
        self.status(cell, Fid::new(id, 1, 1)).await
    }

    /// The whole contents of a small file (directories, symlinks), fetched again
    /// only when its data version moved.
    async fn fetch_all(&self, node: &Node) -> Result<Arc<Vec<u8>>> {
        let version = node.status.data_version();
        let cached = self
            .contents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node.fid)
            .cloned();
        if let Some((v, data)) = cached {
            if v == version {
                return Ok(data);
            }
        }
        let mut out = Vec::with_capacity(node.status.length() as usize);
        let fs = self.file_server(node);
        let reply = fs
            .fetch_data(node.fid, 0, node.status.length(), |b| {
                out.extend_from_slice(&b);
                Ok(())
            })
            .await?;
        self.note_promise(node.fid, node.server, &reply);
        let data = Arc::new(out);
        // Keyed by the version the data came with, which may be newer than `node`'s.
        self.contents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.fid, (reply.status.data_version(), data.clone()));
        Ok(data)
    }

    /// The entries of a directory node.
    pub async fn read_dir(&self, dir: &Node) -> Result<Directory> {
        if dir.status.file_type != FileType::Directory {
            return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
        }
        let data = self.fetch_all(dir).await?;
        Directory::parse(&data).map_err(|e| Error::local(ErrorKind::Protocol, e.to_string()))
    }

    /// A file's status: from the validity table when its promise is in force (no
    /// network), else from its server. This is the resolution path's fast check.
    pub async fn status(&self, cell: &str, fid: Fid) -> Result<Node> {
        if let Some(node) = self.cached_node(cell, fid) {
            return Ok(node);
        }
        self.fetch_status(cell, fid).await
    }

    fn cached_node(&self, cell: &str, fid: Fid) -> Option<Node> {
        let now = Instant::now();
        let (status, server, expires) = {
            let v = lock(&self.validity);
            if v.check(fid, now) != Check::Valid {
                return None;
            }
            let (server, expires) = v.promise(fid)?;
            (v.status(fid)?, server, expires)
        };
        let loc = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fid.volume)
            .cloned()?;
        Some(Node {
            cell: cell.to_string(),
            fid,
            status,
            server,
            callback: CallBack {
                version: 1,
                expiration_time: expires.saturating_duration_since(now).as_secs() as u32,
                cb_type: crate::types::CallBackType::Shared,
            },
            volume_type: loc.type_of(fid.volume)?,
        })
    }

    /// Records a new file or directory and its parent's new status.
    fn note_created(&self, dir: &Node, reply: &crate::fs::CreateReply, server: SocketAddr) {
        let mut v = lock(&self.validity);
        v.record(
            reply.fid,
            server,
            reply.status,
            &reply.callback,
            Instant::now(),
        );
        v.record_own_store(dir.fid, reply.dir_status);
    }

    /// Records a status our own change produced: our callbacks are not broken by
    /// our own changes, so the table must learn the new data version from us.
    fn note_own_change(&self, fid: Fid, status: FetchStatus) {
        lock(&self.validity).record_own_store(fid, status);
    }

    /// Resolves a path to its node, following mount points and symlinks.
    pub async fn resolve(&self, path: &str) -> Result<Node> {
        self.resolve_parsed(AfsPath::parse(path)?, true)
            .await
            .map_err(|e| e.at(path))
    }

    /// Resolves the parent of a path; returns it with the final name.
    pub async fn resolve_parent(&self, path: &str) -> Result<(Node, String)> {
        let parsed = AfsPath::parse(path)?;
        let (parent, name) = parsed.split_last().ok_or_else(|| {
            Error::local(ErrorKind::Other, "the cell root has no parent").at(path)
        })?;
        let name = name.to_string();
        let dir = self
            .resolve_parsed(parent, true)
            .await
            .map_err(|e| e.at(path))?;
        Ok((dir, name))
    }

    async fn resolve_parsed(&self, path: AfsPath, follow_last: bool) -> Result<Node> {
        let mut pending: Vec<String> = path.components.into_iter().rev().collect();
        let mut stack = vec![self.cell_root(&path.cell).await?];
        let mut symlinks = 0;
        while let Some(name) = pending.pop() {
            let dir = stack.last().expect("stack holds the root").clone();
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let entries = self.read_dir(&dir).await?;
            let fid = entries
                .lookup(&name)
                .ok_or_else(|| Error::local(ErrorKind::NotFound, "no such file or directory"))?
                .fid(dir.fid.volume);
            let mut node = self.status(&dir.cell, fid).await?;
            let last = pending.is_empty();
            if node.status.file_type == FileType::Symlink && (!last || follow_last) {
                let target = self.fetch_all(&node).await?;
                if let Some(mp) = MountPoint::parse(&target) {
                    node = self.cross_mount_point(&dir, &mp).await?;
                } else {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Error::local(
                            ErrorKind::Other,
                            "too many levels of symbolic links",
                        ));
                    }
                    let text = String::from_utf8_lossy(&target).into_owned();
                    if text.starts_with('/') {
                        // Absolute: start again from that cell's root.
                        let target = AfsPath::parse(&text)?;
                        stack = vec![self.cell_root(&target.cell).await?];
                        pending.extend(target.components.into_iter().rev());
                    } else {
                        pending.extend(
                            text.split('/')
                                .filter(|c| !c.is_empty() && *c != ".")
                                .map(String::from)
                                .rev(),
                        );
                    }
                    continue;
                }
            }
            if !last && node.status.file_type != FileType::Directory {
                return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
            }
            stack.push(node);
        }
        Ok(stack.pop().expect("stack holds the root"))
    }

    /// The root of a cell: its root.cell volume, the read-only clone if it has one.
    async fn cell_root(&self, cell: &str) -> Result<Node> {
        self.volume_root(cell, "root.cell", VolumeType::ReadOnly)
            .await
    }

    /// The root of the volume a mount point in `dir` names. `#vol.` follows the
    /// read-only clone only from a read-only volume (as OpenAFS does); `%vol.` and
    /// explicit `.readonly`/`.backup` names say what they want.
    async fn cross_mount_point(&self, dir: &Node, mp: &MountPoint) -> Result<Node> {
        let cell = mp.cell.as_deref().unwrap_or(&dir.cell);
        let (name, want) = if let Some(base) = mp.volume.strip_suffix(".readonly") {
            (base, VolumeType::ReadOnly)
        } else if let Some(base) = mp.volume.strip_suffix(".backup") {
            (base, VolumeType::Backup)
        } else if mp.rw || (dir.volume_type != VolumeType::ReadOnly && mp.cell.is_none()) {
            (mp.volume.as_str(), VolumeType::ReadWrite)
        } else {
            (mp.volume.as_str(), VolumeType::ReadOnly)
        };
        self.volume_root(cell, name, want).await
    }

    /// Lists a directory with the status of each entry (InlineBulkStatus, 50 at a time).
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let dir = self.resolve(path).await?;
        let entries = self.read_dir(&dir).await.map_err(|e| e.at(path))?;
        let mut out: Vec<DirEntry> = entries
            .entries()
            .filter(|e| !e.is_dot_or_dotdot())
            .map(|e| DirEntry {
                name: e.name_str().into_owned(),
                fid: e.fid(dir.fid.volume),
                status: None,
            })
            .collect();
        let fs = self.file_server(&dir);
        for batch in out.chunks_mut(crate::types::AFS_CB_MAX) {
            let fids: Vec<Fid> = batch.iter().map(|e| e.fid).collect();
            let reply = fs.inline_bulk_status(&fids).await.map_err(|e| e.at(path))?;
            lock(&self.validity).note_volume(dir.fid.volume, reply.volsync.creation_date);
            for (entry, st) in batch.iter_mut().zip(reply.entries) {
                if st.status.error_code == 0 {
                    lock(&self.validity).record(
                        entry.fid,
                        fs.addr(),
                        st.status,
                        &st.callback,
                        Instant::now(),
                    );
                    entry.status = Some(st.status);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Streams a whole file to `sink` in order, several FetchData64 calls in flight.
    pub async fn read(
        &self,
        path: &str,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Node> {
        let node = self.resolve(path).await?;
        if node.status.file_type == FileType::Directory {
            return Err(Error::local(ErrorKind::IsDirectory, "is a directory").at(path));
        }
        self.read_node(&node, sink).await.map_err(|e| e.at(path))?;
        Ok(node)
    }

    /// Streams the bytes of `node` as of its status, chunks fetched in parallel.
    pub async fn read_node(
        &self,
        node: &Node,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<()> {
        let len = node.status.length();
        let mut inflight = std::collections::VecDeque::new();
        let mut next = 0u64;
        while next < len || !inflight.is_empty() {
            while next < len && inflight.len() < READ_PARALLEL {
                let n = READ_CHUNK.min(len - next);
                let fs = self.file_server(node);
                let fid = node.fid;
                let pos = next;
                inflight.push_back(tokio::spawn(async move {
                    let mut buf: Vec<Bytes> = Vec::new();
                    let reply = fs
                        .fetch_data(fid, pos, n, |b| {
                            buf.push(b);
                            Ok(())
                        })
                        .await?;
                    Ok::<_, Error>((buf, reply))
                }));
                next += n;
            }
            let task = inflight.pop_front().expect("a read is in flight");
            let (chunks, reply) = task
                .await
                .map_err(|e| Error::local(ErrorKind::Other, format!("read task failed: {e}")))??;
            self.note_promise(node.fid, node.server, &reply);
            for c in chunks {
                sink(&c)?;
            }
        }
        Ok(())
    }

    /// Writes `len` bytes from `data` as the whole new contents of `path`,
    /// creating the file if needed.
    pub async fn write(
        &self,
        path: &str,
        data: impl AsyncRead + Unpin,
        len: u64,
        progress: impl FnMut(u64),
    ) -> Result<Node> {
        let (dir, name) = self.resolve_parent(path).await?;
        let fid = match self.lookup_in(&dir, &name).await.map_err(|e| e.at(path))? {
            Some(fid) => fid,
            None => {
                let fs = self.file_server(&dir);
                let status = StoreStatus::new().with_mode(0o644);
                let created = fs.create_file(dir.fid, &name, &status).await;
                match created {
                    Ok(reply) => {
                        self.note_created(&dir, &reply, fs.addr());
                        reply.fid
                    }
                    // Someone created it meanwhile: use theirs.
                    Err(e) if e.kind() == ErrorKind::Exists => {
                        let dir = self.fetch_status(&dir.cell, dir.fid).await?;
                        self.lookup_in(&dir, &name)
                            .await?
                            .ok_or_else(|| e.at(path))?
                    }
                    Err(e) => return Err(e.at(path)),
                }
            }
        };
        let fs = self.file_server(&dir);
        let reply = fs
            .store_data(
                fid,
                &StoreStatus::new(),
                crate::fs::StoreRange {
                    pos: 0,
                    len,
                    file_length: len,
                },
                data,
                progress,
            )
            .await
            .map_err(|e| e.at(path))?;
        self.note_own_change(fid, reply.status);
        Ok(Node {
            cell: dir.cell.clone(),
            fid,
            status: reply.status,
            server: fs.addr(),
            callback: CallBack::default(),
            volume_type: dir.volume_type,
        })
    }

    async fn lookup_in(&self, dir: &Node, name: &str) -> Result<Option<Fid>> {
        let entries = self.read_dir(dir).await?;
        Ok(entries.lookup(name).map(|e| e.fid(dir.fid.volume)))
    }

    /// Removes a file (or symlink, or mount point).
    pub async fn remove(&self, path: &str) -> Result<()> {
        let (dir, name) = self.resolve_parent(path).await?;
        let reply = self
            .file_server(&dir)
            .remove_file(dir.fid, &name)
            .await
            .map_err(|e| e.at(path))?;
        self.note_own_change(dir.fid, reply.status);
        Ok(())
    }

    /// Removes an empty directory.
    pub async fn remove_dir(&self, path: &str) -> Result<()> {
        let (dir, name) = self.resolve_parent(path).await?;
        let reply = self
            .file_server(&dir)
            .remove_dir(dir.fid, &name)
            .await
            .map_err(|e| match e.kind() {
                // OpenAFS fileservers answer EEXIST for a directory that is not empty.
                ErrorKind::Exists => Error::local(ErrorKind::NotEmpty, "directory not empty"),
                _ => e,
            })
            .map_err(|e| e.at(path))?;
        self.note_own_change(dir.fid, reply.status);
        Ok(())
    }

    pub async fn mkdir(&self, path: &str) -> Result<Fid> {
        let (dir, name) = self.resolve_parent(path).await?;
        let status = StoreStatus::new().with_mode(0o755);
        let fs = self.file_server(&dir);
        let reply = fs
            .make_dir(dir.fid, &name, &status)
            .await
            .map_err(|e| e.at(path))?;
        self.note_created(&dir, &reply, fs.addr());
        Ok(reply.fid)
    }

    /// Makes a mount point at `path` (a symlink with mode 0644 and `#vol.` contents).
    pub async fn make_mount_point(&self, path: &str, target: &MountPoint) -> Result<Fid> {
        self.make_symlink(path, &target.contents(), 0o644).await
    }

    /// Makes a symbolic link at `path` pointing at `target`.
    pub async fn symlink(&self, path: &str, target: &str) -> Result<Fid> {
        self.make_symlink(path, target, 0o755).await
    }

    async fn make_symlink(&self, path: &str, target: &str, mode: u32) -> Result<Fid> {
        let (dir, name) = self.resolve_parent(path).await?;
        let status = StoreStatus::new().with_mode(mode);
        let reply = self
            .file_server(&dir)
            .symlink(dir.fid, &name, target, &status)
            .await
            .map_err(|e| e.at(path))?;
        self.note_own_change(dir.fid, reply.dir_status);
        Ok(reply.fid)
    }

    /// Tells every fileserver we hold promises from that we hold none, so they
    /// stop sending breaks to a client that is going away.
    pub async fn give_up_callbacks(&self) {
        let servers = lock(&self.validity).servers_with_promises(Instant::now());
        for server in servers {
            let fs = self.file_server_at(server);
            let _ = tokio::time::timeout(Duration::from_secs(2), fs.give_up_all_callbacks()).await;
        }
        lock(&self.validity).drop_promises();
    }
}

fn lock(v: &SharedValidity) -> std::sync::MutexGuard<'_, Validity> {
    v.lock().unwrap_or_else(|e| e.into_inner())
}

/// Probes every server we hold live promises from, every `every`. A server that
/// forgot us (a restart that dropped its callback state) answers only after calling
/// us back with InitCallBackState3, which revokes its promises through the callback
/// service: an idle client learns it within one interval, not at its next call.
async fn probe_servers(
    endpoint: Endpoint,
    validity: SharedValidity,
    servers: Servers,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let promised = lock(&validity).servers_with_promises(Instant::now());
        for server in promised {
            let fs = FileServer::new(endpoint.clone(), server);
            match fs.get_capabilities().await {
                Ok(caps) => {
                    debug!(%server, "probe answered");
                    lock_servers(&servers)
                        .entry(server)
                        .or_default()
                        .capabilities = Some(caps);
                }
                Err(e) => debug!(%server, error = %e, "probe failed"),
            }
        }
    }
}
