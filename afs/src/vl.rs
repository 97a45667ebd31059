//! VL: asking a cell's volume location servers where volumes live.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};

use rx::Endpoint;
use tracing::debug;

use crate::error::ErrorKind;
use crate::proto::vl::{self as p, ListAddrByAttributes, ServerRef, VldbEntry};
use crate::rpc::{self, args, Error, Result};
use crate::types::{Uuid, VolumeType};

/// The vlserver's Rx service id.
pub const SERVICE: u16 = 52;
/// The vlserver's default UDP port.
pub const PORT: u16 = 7003;

/// Where a volume and its clones live, with servers as fileserver addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeLocation {
    pub name: String,
    /// Volume ids indexed by [`VolumeType`] (0 where the clone does not exist).
    pub ids: [u32; 3],
    /// Fileservers holding each type, indexed like `ids`.
    pub servers: [Vec<SocketAddr>; 3],
    /// Each fileserver of the volume: its UUID (multihomed servers) and every
    /// address it has. Callbacks from any of them speak for that server.
    pub hosts: Vec<(Option<Uuid>, Vec<SocketAddr>)>,
}

impl VolumeLocation {
    pub fn id(&self, t: VolumeType) -> Option<u32> {
        Some(self.ids[t as usize]).filter(|&id| id != 0 && !self.servers[t as usize].is_empty())
    }

    pub fn servers(&self, t: VolumeType) -> &[SocketAddr] {
        &self.servers[t as usize]
    }

    /// Which clone `id` names.
    pub fn type_of(&self, id: u32) -> Option<VolumeType> {
        [
            VolumeType::ReadWrite,
            VolumeType::ReadOnly,
            VolumeType::Backup,
        ]
        .into_iter()
        .find(|&t| self.ids[t as usize] == id)
    }
}

/// A cell's vlservers, tried in turn until one answers.
#[derive(Debug)]
pub struct VlClient {
    endpoint: Endpoint,
    servers: Vec<SocketAddr>,
    /// The server that answered last; tried first next time.
    preferred: AtomicUsize,
}

impl VlClient {
    pub fn new(endpoint: Endpoint, servers: Vec<SocketAddr>) -> Self {
        Self {
            endpoint,
            servers,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Sends a request to each vlserver in turn until one answers. A server's
    /// abort is an answer (the VLDB is replicated); only silence moves on.
    async fn call<T>(
        &self,
        request: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, crate::xdr::XdrError>,
    ) -> Result<T> {
        let n = self.servers.len();
        if n == 0 {
            return Err(Error::local(ErrorKind::Other, "cell has no vlservers"));
        }
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let server = self.servers[idx];
            match rpc::call(&self.endpoint, server, SERVICE, request, &decode).await {
                Err(e) if e.kind() == ErrorKind::ServerUnreachable => {
                    debug!(%server, error = %e, "vlserver unreachable; trying the next");
                    last = Some(e);
                }
                r => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return r;
                }
            }
        }
        Err(last.expect("at least one server was tried"))
    }

    pub async fn probe(&self) -> Result<()> {
        self.call(&p::probe_args(), p::decode_probe_reply).await
    }

    /// Looks a volume up by name (`root.cell`, `user.x.readonly`...).
    pub async fn by_name(&self, name: &str) -> Result<VolumeLocation> {
        let req = args(p::get_entry_by_name_u_args(name))?;
        let entry = self.call(&req, p::decode_uvldb_entry).await?;
        self.locate(entry).await
    }

    /// Looks a volume up by the id of any of its clones. OpenAFS's vlserver has no
    /// GetEntryByIDU (RXGEN_OPCODE), but GetEntryByNameU takes an id in decimal for a name,
    /// which is how OpenAFS's cache manager asks too: the answer names servers by UUID,
    /// so multihomed servers are resolved as they are for names.
    pub async fn by_id(&self, id: u32) -> Result<VolumeLocation> {
        self.by_name(&id.to_string()).await
    }

    /// Turns VLDB sites into fileserver addresses, resolving multihomed servers.
    async fn locate(&self, entry: VldbEntry) -> Result<VolumeLocation> {
        let mut servers: [Vec<SocketAddr>; 3] = Default::default();
        let mut hosts = Vec::new();
        for site in &entry.sites {
            if site.flags & p::VLSF_DONTUSE != 0 {
                continue;
            }
            let (uuid, addrs) = match site.server {
                ServerRef::Addr(a) => (None, vec![a]),
                ServerRef::Uuid(uuid) => {
                    let req = p::get_addrs_u_args(&ListAddrByAttributes::by_uuid(uuid));
                    let addrs = self.call(&req, p::decode_get_addrs_u_reply).await?.addrs;
                    (Some(uuid), addrs)
                }
            };
            let fs_addr =
                |a: &std::net::Ipv4Addr| SocketAddr::V4(SocketAddrV4::new(*a, crate::fs::PORT));
            hosts.push((uuid, addrs.iter().map(fs_addr).collect()));
            let kinds = [
                (p::VLSF_RWVOL, VolumeType::ReadWrite),
                (p::VLSF_ROVOL, VolumeType::ReadOnly),
                (p::VLSF_BACKVOL, VolumeType::Backup),
            ];
            for (flag, t) in kinds {
                // The backup clone lives with the RW volume.
                let here = site.flags & flag != 0
                    || (t == VolumeType::Backup && site.flags & p::VLSF_RWVOL != 0);
                if here {
                    let list = &mut servers[t as usize];
                    for a in &addrs {
                        let sa = fs_addr(a);
                        if !list.contains(&sa) {
                            list.push(sa);
                        }
                    }
                }
            }
        }
        Ok(VolumeLocation {
            name: entry.name,
            ids: entry.volume_ids,
            servers,
            hosts,
        })
    }
}
