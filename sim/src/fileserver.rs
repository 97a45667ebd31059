//! A scripted fileserver, and its cell's vlserver, on the simulated network.
//!
//! Built on afs-proto's codecs and our own Rx endpoint, it behaves as an OpenAFS
//! fileserver does where the client's coherence depends on it: every
//! FetchStatus and FetchData64 grants a callback promise; a change breaks the
//! promises of every other holder (CB.CallBack) before it completes; a break that
//! cannot be delivered is kept and retried before the client's next call, which
//! fails with -1 if it still cannot be (viced host.c); a client first seen gets
//! InitCallBackState3. Tests script the rest: reply late, restart with or
//! without state, break a whole volume.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use afs_proto::proto::cb::CbRequest;
use afs_proto::proto::fs as p;
use afs_proto::proto::vl::{self, ServerRef, VldbEntry, VolumeSite};
use afs_proto::types::{
    CallBack, CallBackType, Capabilities, FetchStatus, FileType, Uuid, VolSync,
};
use afs_proto::xdr::{Decoder, Encoder, XdrError};
use afs_proto::Fid;
use rx::{Endpoint, EndpointConfig, IncomingCall, Response, Service};

use crate::net::Network;

/// The one volume the server holds.
pub const VOLUME: u32 = 536_870_915;
pub const VOLUME_NAME: &str = "sim.vol";
/// OpenAFS's abort for "your callback channel is dead" (RX_CALL_DEAD).
pub const CALL_DEAD: i32 = -1;
const RXGEN_OPCODE: i32 = -455;
const RXGEN_SS_UNMARSHAL: i32 = -453;
/// What a fileserver's callback calls wait for an answer (OpenAFS: 4 s dead time).
const BREAK_DEAD_TIME: Duration = Duration::from_secs(4);

struct File {
    data: Vec<u8>,
    dv: u64,
}

#[derive(Default)]
struct State {
    files: BTreeMap<Fid, File>,
    promises: BTreeMap<Fid, BTreeSet<SocketAddr>>,
    /// Breaks not yet delivered, per client.
    pending: BTreeMap<SocketAddr, BTreeSet<Fid>>,
    /// Clients that had InitCallBackState3 since the (re)start.
    known: BTreeSet<SocketAddr>,
    reply_delay: Duration,
    counters: Counters,
}

/// What the server did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub fetch_status: u64,
    pub fetch_data: u64,
    pub breaks_delivered: u64,
    pub breaks_failed: u64,
    pub resets_sent: u64,
}

struct Inner {
    addr: SocketAddr,
    network: Network,
    uuid: Uuid,
    fs: Mutex<Endpoint>,
    _vl: Endpoint,
    state: Mutex<State>,
}

/// The scripted fileserver at `IP:7000` (and vlserver at `IP:7003`).
#[derive(Clone)]
pub struct FileServer {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FileServer {
    /// Starts the servers on `ip`. Must be called within a tokio runtime.
    pub fn start(network: &Network, ip: IpAddr) -> Self {
        let addr = SocketAddr::new(ip, 7000);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let vl = Endpoint::with_transport(
                network.bind(SocketAddr::new(ip, 7003)),
                EndpointConfig::default(),
            );
            vl.register_service(52, Arc::new(Vldb { fileserver: ip }));
            Inner {
                addr,
                network: network.clone(),
                uuid: Uuid::from_bytes([0x5a; 16]),
                fs: Mutex::new(fs_endpoint(network, addr, weak.clone())),
                _vl: vl,
                state: Mutex::default(),
            }
        });
        Self { inner }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn counters(&self) -> Counters {
        lock(&self.inner.state).counters
    }

    /// Makes FetchStatus and FetchData64 wait this long between reading the
    /// file's state (and granting the promise) and replying.
    pub fn set_reply_delay(&self, d: Duration) {
        lock(&self.inner.state).reply_delay = d;
    }

    /// Creates a file (data version 1) without breaking anything.
    pub fn create(&self, vnode: u32, data: &[u8]) -> Fid {
        let fid = Fid::new(VOLUME, vnode, 1);
        let file = File {
            data: data.to_vec(),
            dv: 1,
        };
        lock(&self.inner.state).files.insert(fid, file);
        fid
    }

    /// The file's current bytes and data version.
    pub fn contents(&self, fid: Fid) -> Option<(Vec<u8>, u64)> {
        let st = lock(&self.inner.state);
        st.files.get(&fid).map(|f| (f.data.clone(), f.dv))
    }

    /// A third party stores `data`: the data version moves, and every promise on
    /// the file is broken before this returns (undeliverable breaks are kept for
    /// the client's next call). Returns the new data version.
    pub async fn write(&self, fid: Fid, data: &[u8]) -> u64 {
        let (dv, holders) = {
            let mut st = lock(&self.inner.state);
            let file = st.files.get_mut(&fid).expect("a file the server has");
            file.data = data.to_vec();
            file.dv += 1;
            let dv = file.dv;
            (dv, st.promises.remove(&fid).unwrap_or_default())
        };
        let breaks = holders.into_iter().map(|client| {
            let inner = self.inner.clone();
            async move { inner.deliver_breaks(client, vec![fid]).await }
        });
        for b in breaks.collect::<Vec<_>>() {
            b.await;
        }
        dv
    }

    /// Breaks every promise of the volume (as a release of a read-only volume does).
    pub async fn break_volume(&self) {
        let holders: BTreeSet<SocketAddr> = {
            let mut st = lock(&self.inner.state);
            std::mem::take(&mut st.promises)
                .into_values()
                .flatten()
                .collect()
        };
        for client in holders {
            let volume = Fid::new(VOLUME, 0, 0);
            self.inner.deliver_breaks(client, vec![volume]).await;
        }
    }

    /// Stops and starts again on the same address (a new Rx epoch). Without its
    /// state it has forgotten every promise and client, as after a restart that
    /// lost fsstate.dat; clients learn it from InitCallBackState3 at their next call.
    pub fn restart(&self, keep_state: bool) {
        let endpoint = fs_endpoint(
            &self.inner.network,
            self.inner.addr,
            Arc::downgrade(&self.inner),
        );
        *lock(&self.inner.fs) = endpoint;
        if !keep_state {
            let mut st = lock(&self.inner.state);
            st.promises.clear();
            st.pending.clear();
            st.known.clear();
        }
    }

    /// Who holds a promise on `fid` now.
    pub fn holders(&self, fid: Fid) -> Vec<SocketAddr> {
        let st = lock(&self.inner.state);
        st.promises
            .get(&fid)
            .into_iter()
            .flatten()
            .copied()
            .collect()
    }
}

fn fs_endpoint(network: &Network, addr: SocketAddr, inner: Weak<Inner>) -> Endpoint {
    let mut cfg = EndpointConfig::default();
    cfg.call.dead_time = BREAK_DEAD_TIME;
    let endpoint = Endpoint::with_transport(network.bind(addr), cfg);
    endpoint.register_service(1, Arc::new(Fs(inner)));
    endpoint
}

impl Inner {
    fn endpoint(&self) -> Endpoint {
        lock(&self.fs).clone()
    }

    /// Sends CB.CallBack for `fids` to `client`; on failure keeps them pending.
    async fn deliver_breaks(&self, client: SocketAddr, fids: Vec<Fid>) -> bool {
        let request = CbRequest::CallBack {
            callbacks: vec![CallBack::default(); fids.len()],
            fids: fids.clone(),
        };
        let ok = self
            .endpoint()
            .make_call(client, 1, &request.encode())
            .await
            .is_ok();
        let mut st = lock(&self.state);
        if ok {
            st.counters.breaks_delivered += 1;
        } else {
            st.counters.breaks_failed += 1;
            st.pending.entry(client).or_default().extend(fids);
        }
        ok
    }

    /// What viced does before serving a client: introduce itself to a new one
    /// (InitCallBackState3) and retry the breaks it owes it.
    async fn before_serving(&self, client: SocketAddr) -> Result<(), i32> {
        let new = lock(&self.state).known.insert(client);
        if new {
            lock(&self.state).counters.resets_sent += 1;
            let hello = CbRequest::InitCallBackState3 {
                server_uuid: self.uuid,
            };
            if self
                .endpoint()
                .make_call(client, 1, &hello.encode())
                .await
                .is_err()
            {
                lock(&self.state).known.remove(&client);
                return Err(CALL_DEAD);
            }
        }
        let owed = lock(&self.state).pending.remove(&client);
        if let Some(fids) = owed {
            if !self
                .deliver_breaks(client, fids.into_iter().collect())
                .await
            {
                return Err(CALL_DEAD);
            }
        }
        Ok(())
    }

    /// Reads a file's state and grants `client` a promise on it.
    fn snapshot(&self, client: SocketAddr, fid: Fid) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut st = lock(&self.state);
        let file = st.files.get(&fid)?;
        let mut status = FetchStatus {
            interface_version: 1,
            file_type: FileType::File,
            link_count: 1,
            unix_mode_bits: 0o644,
            caller_access: 0x7f,
            anonymous_access: 0x7f,
            ..FetchStatus::default()
        };
        status.set_length(file.data.len() as u64);
        status.set_data_version(file.dv);
        let data = file.data.clone();
        st.promises.entry(fid).or_default().insert(client);
        let mut trailer = Encoder::new();
        trailer
            .put(&status)
            .put(&CallBack {
                version: 1,
                expiration_time: 3600,
                cb_type: CallBackType::Shared,
            })
            .put(&VolSync {
                creation_date: 1,
                spares: [0; 5],
            });
        Some((data, trailer.into_bytes()))
    }

    async fn serve(&self, call: IncomingCall) -> Response {
        let client = call.peer;
        if let Err(code) = self.before_serving(client).await {
            return Response::abort(code);
        }
        match self.answer(client, &call.request).await {
            Ok(r) => r,
            Err(_) => Response::abort(RXGEN_SS_UNMARSHAL),
        }
    }

    async fn answer(&self, client: SocketAddr, request: &[u8]) -> Result<Response, XdrError> {
        let mut d = Decoder::new(request);
        let opcode = d.get_u32()?;
        let delay = lock(&self.state).reply_delay;
        Ok(match opcode {
            p::FETCH_STATUS => {
                let fid: Fid = d.get()?;
                lock(&self.state).counters.fetch_status += 1;
                let Some((_, trailer)) = self.snapshot(client, fid) else {
                    return Ok(Response::abort(102)); // VNOVNODE
                };
                tokio::time::sleep(delay).await;
                Response::reply(trailer)
            }
            p::FETCH_DATA64 => {
                let fid: Fid = d.get()?;
                let (pos, len) = (d.get_u64()?, d.get_u64()?);
                lock(&self.state).counters.fetch_data += 1;
                let Some((data, trailer)) = self.snapshot(client, fid) else {
                    return Ok(Response::abort(102));
                };
                let start = (pos as usize).min(data.len());
                let end = start.saturating_add(len as usize).min(data.len());
                tokio::time::sleep(delay).await;
                let mut e = Encoder::new();
                e.put_u64((end - start) as u64);
                let mut out = e.into_bytes();
                out.extend_from_slice(&data[start..end]);
                out.extend_from_slice(&trailer);
                Response::reply(out)
            }
            p::GET_CAPABILITIES => {
                let mut e = Encoder::new();
                e.put(&Capabilities(vec![0x1]));
                Response::reply(e.into_bytes())
            }
            p::GIVE_UP_ALL_CALLBACKS => {
                for holders in lock(&self.state).promises.values_mut() {
                    holders.remove(&client);
                }
                Response::reply(Vec::new())
            }
            _ => Response::abort(RXGEN_OPCODE),
        })
    }
}

struct Fs(Weak<Inner>);

impl Service for Fs {
    fn serve(
        &self,
        call: IncomingCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.upgrade() {
                Some(inner) => inner.serve(call).await,
                None => Response::abort(CALL_DEAD),
            }
        })
    }
}

/// The cell's vlserver: one volume, on the fileserver.
struct Vldb {
    fileserver: IpAddr,
}

impl Service for Vldb {
    fn serve(
        &self,
        call: IncomingCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
        let IpAddr::V4(fs) = self.fileserver else {
            return Box::pin(async { Response::abort(RXGEN_OPCODE) });
        };
        let opcode = Decoder::new(&call.request).get_u32().unwrap_or(0);
        let entry = VldbEntry {
            name: VOLUME_NAME.into(),
            volume_ids: [VOLUME, 0, 0],
            clone_id: 0,
            flags: vl::VLF_RWEXISTS,
            sites: vec![VolumeSite {
                server: ServerRef::Addr(fs),
                server_unique: 0,
                partition: 0,
                flags: vl::VLSF_RWVOL,
            }],
        };
        let response = match opcode {
            // As OpenAFS's vlserver: no GetEntryByIDU (clients ask by name, an id in
            // decimal being a name).
            vl::GET_ENTRY_BY_NAME_U => Response::reply(vl::encode_uvldb_entry(&entry)),
            vl::PROBE => Response::reply(Vec::new()),
            _ => Response::abort(RXGEN_OPCODE),
        };
        Box::pin(async move { response })
    }
}
