//! Volume location interface (`VL_*`, Rx service 52 on port 7003).
//!
//! Layouts follow OpenAFS `src/vlserver/vldbint.xg`. The three VLDB entry
//! flavours (`vldbentry`, `nvldbentry`, `uvldbentry`) are all decoded into
//! one [`VldbEntry`].
//!
//! Resolving servers: in a `uvldbentry`, a site whose flags include
//! [`VLSF_UUID`] names its fileserver by UUID (the server registered several
//! addresses); resolve it with GetAddrsU ([`get_addrs_u_args`] with
//! [`ListAddrByAttributes::by_uuid`]) and use the returned addresses. A site
//! without that flag carries the server's IPv4 address in the UUID's
//! `time_low` word (this is what OpenAFS's vlserver does); [`VldbEntry`]
//! exposes the two cases as [`ServerRef::Uuid`] and [`ServerRef::Addr`].

use std::net::Ipv4Addr;

use super::{decode_whole, request};
use crate::types::{Uuid, VolumeType};
use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError};

/// Get an old-style entry by volume id (8 servers).
pub const GET_ENTRY_BY_ID: u32 = 503;
/// Get an old-style entry by name (8 servers).
pub const GET_ENTRY_BY_NAME: u32 = 504;
/// Liveness probe.
pub const PROBE: u32 = 514;
/// Get an `nvldbentry` by volume id (13 servers, addresses).
pub const GET_ENTRY_BY_ID_N: u32 = 518;
/// Get an `nvldbentry` by name.
pub const GET_ENTRY_BY_NAME_N: u32 = 519;
/// Get a `uvldbentry` by volume id (13 servers, UUIDs). Not in OpenAFS's vlserver
/// (RXGEN_OPCODE): GetEntryByNameU with the id in decimal is the portable way.
pub const GET_ENTRY_BY_ID_U: u32 = 526;
/// Get a `uvldbentry` by name.
pub const GET_ENTRY_BY_NAME_U: u32 = 527;
/// Get a multihomed server's addresses.
pub const GET_ADDRS_U: u32 = 533;

/// `VL_MAXNAMELEN`: a volume name plus its terminating NUL.
pub const VL_MAX_NAME_LEN: usize = 65;
/// Servers in an old-style `vldbentry`.
pub const OLD_MAX_SERVERS: usize = 8;
/// Servers in an `nvldbentry`/`uvldbentry`.
pub const MAX_SERVERS: usize = 13;
/// Maximum addresses in a GetAddrsU reply (`bulkaddrs<500>`).
pub const MAX_BULK_ADDRS: usize = 500;

/// Site flag: a new replica being released.
pub const VLSF_NEWREPSITE: u32 = 0x01;
/// Site flag: holds the read-only replica.
pub const VLSF_ROVOL: u32 = 0x02;
/// Site flag: holds the read/write volume.
pub const VLSF_RWVOL: u32 = 0x04;
/// Site flag: holds the backup volume.
pub const VLSF_BACKVOL: u32 = 0x08;
/// Site flag (uvldbentry only): the server is identified by UUID.
pub const VLSF_UUID: u32 = 0x10;
/// Site flag: do not use this site.
pub const VLSF_DONTUSE: u32 = 0x20;
/// Site flag: the site is a read/write replica.
pub const VLSF_RWREPLICA: u32 = 0x40;

/// Entry flag: the RW volume exists.
pub const VLF_RWEXISTS: u32 = 0x1000;
/// Entry flag: RO replicas exist.
pub const VLF_ROEXISTS: u32 = 0x2000;
/// Entry flag: a backup volume exists.
pub const VLF_BACKEXISTS: u32 = 0x4000;

/// GetAddrsU selector: by IP address.
pub const VLADDR_IPADDR: u32 = 0x1;
/// GetAddrsU selector: by server index (1-based).
pub const VLADDR_INDEX: u32 = 0x2;
/// GetAddrsU selector: by UUID.
pub const VLADDR_UUID: u32 = 0x4;

/// How a VLDB site names its fileserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerRef {
    /// A plain IPv4 address (port 7000).
    Addr(Ipv4Addr),
    /// A multihomed server; resolve with GetAddrsU.
    Uuid(Uuid),
}

/// One server/partition holding some copy of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSite {
    /// The fileserver.
    pub server: ServerRef,
    /// The server's address-set uniquifier (uvldbentry only, else 0).
    pub server_unique: i32,
    /// Partition number (0 = /vicepa).
    pub partition: i32,
    /// `VLSF_*` bits.
    pub flags: u32,
}

impl VolumeSite {
    /// Partition name, e.g. `/vicepa`; see [`partition_name`].
    pub fn partition_name(&self) -> String {
        partition_name(self.partition)
    }
}

/// A VLDB entry, whichever of the three wire formats it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VldbEntry {
    /// Volume name (of the RW volume).
    pub name: String,
    /// Volume ids indexed by [`VolumeType`]: RW, RO, backup.
    pub volume_ids: [u32; 3],
    /// Clone id used during operations.
    pub clone_id: u32,
    /// `VLF_*` bits.
    pub flags: u32,
    /// Sites, in VLDB order (at most 13).
    pub sites: Vec<VolumeSite>,
}

impl VldbEntry {
    /// The volume id of the given type, if that type exists.
    pub fn volume_id(&self, t: VolumeType) -> Option<u32> {
        let exists = match t {
            VolumeType::ReadWrite => VLF_RWEXISTS,
            VolumeType::ReadOnly => VLF_ROEXISTS,
            VolumeType::Backup => VLF_BACKEXISTS,
        };
        let id = self.volume_ids[t.to_raw() as usize];
        (self.flags & exists != 0 && id != 0).then_some(id)
    }

    /// Which volume type a volume id names in this entry.
    pub fn type_of(&self, volume_id: u32) -> Option<VolumeType> {
        (0..3u32)
            .find(|&i| self.volume_ids[i as usize] == volume_id)
            .and_then(VolumeType::from_raw)
    }

    /// Sites that serve the given volume type and may be used.
    ///
    /// Mirrors what the Linux kernel client does: sites marked
    /// [`VLSF_DONTUSE`] are skipped; while a release is in progress (some
    /// usable site carries [`VLSF_NEWREPSITE`]) only the new sites are used
    /// so readers see the new release consistently; the backup volume lives
    /// on the RW site.
    pub fn sites_for(&self, t: VolumeType) -> Vec<VolumeSite> {
        let usable = |s: &&VolumeSite| s.flags & VLSF_DONTUSE == 0;
        let new_only = self
            .sites
            .iter()
            .filter(usable)
            .any(|s| s.flags & VLSF_NEWREPSITE != 0);
        self.sites
            .iter()
            .filter(usable)
            .filter(|s| !new_only || s.flags & VLSF_NEWREPSITE != 0)
            .filter(|s| match t {
                VolumeType::ReadWrite => s.flags & VLSF_RWVOL != 0,
                VolumeType::ReadOnly => s.flags & VLSF_ROVOL != 0,
                VolumeType::Backup => {
                    s.flags & VLSF_BACKVOL != 0
                        || (s.flags & VLSF_RWVOL != 0 && self.flags & VLF_BACKEXISTS != 0)
                }
            })
            .copied()
            .collect()
    }
}

/// Partition number to its conventional name: 0..=25 are `/vicepa`..`/vicepz`,
/// then `/vicepaa`, `/vicepab`, ... up to 255 (`/vicepiv`).
pub fn partition_name(partition: i32) -> String {
    match partition {
        0..=25 => format!("/vicep{}", (b'a' + partition as u8) as char),
        26..=255 => {
            let p = partition - 26;
            let first = (b'a' + (p / 26) as u8) as char;
            let second = (b'a' + (p % 26) as u8) as char;
            format!("/vicep{first}{second}")
        }
        _ => format!("/vicep?({partition})"),
    }
}

/// `ListAddrByAttributes`: which server GetAddrsU should describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListAddrByAttributes {
    /// `VLADDR_*` selector; exactly one bit.
    pub mask: u32,
    /// Address to look up (host order value of the IPv4 address).
    pub ipaddr: u32,
    /// 1-based server index.
    pub index: i32,
    /// Unused.
    pub spare: i32,
    /// UUID to look up.
    pub uuid: Uuid,
}

impl ListAddrByAttributes {
    /// Select by UUID (the usual case, for [`VLSF_UUID`] sites).
    pub fn by_uuid(uuid: Uuid) -> Self {
        Self {
            mask: VLADDR_UUID,
            uuid,
            ..Default::default()
        }
    }

    /// Select by one known address of the server.
    pub fn by_addr(addr: Ipv4Addr) -> Self {
        Self {
            mask: VLADDR_IPADDR,
            ipaddr: u32::from(addr),
            ..Default::default()
        }
    }

    /// Select by 1-based server index.
    pub fn by_index(index: i32) -> Self {
        Self {
            mask: VLADDR_INDEX,
            index,
            ..Default::default()
        }
    }
}

impl XdrEncode for ListAddrByAttributes {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.mask)
            .put_u32(self.ipaddr)
            .put_i32(self.index)
            .put_i32(self.spare)
            .put(&self.uuid);
    }
}

impl XdrDecode for ListAddrByAttributes {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            mask: dec.get_u32()?,
            ipaddr: dec.get_u32()?,
            index: dec.get_i32()?,
            spare: dec.get_i32()?,
            uuid: dec.get()?,
        })
    }
}

/// Reply of GetAddrsU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrsReply {
    /// The server's UUID.
    pub uuid: Uuid,
    /// Bumped whenever the server's address set changes; compare with
    /// [`VolumeSite::server_unique`] to know a cached set is current.
    pub uniquifier: i32,
    /// The server's addresses (duplicates already removed by the vlserver).
    pub addrs: Vec<Ipv4Addr>,
}

// ----- requests -------------------------------------------------------------

fn check_volume_name(name: &str) -> Result<(), XdrError> {
    if name.is_empty() {
        return Err(XdrError::Invalid {
            what: "volume name",
            value: 0,
        });
    }
    Ok(())
}

fn name_request(opcode: u32, name: &str) -> Result<Vec<u8>, XdrError> {
    check_volume_name(name)?;
    let mut e = request(opcode);
    // The name must leave room for its NUL inside VL_MAXNAMELEN.
    e.put_string_checked("volume name", name, VL_MAX_NAME_LEN - 1)?;
    Ok(e.into_bytes())
}

/// GetEntryByNameU(name) -> [`decode_uvldb_entry`]. `name` may also be a
/// decimal volume id, which the vlserver accepts.
pub fn get_entry_by_name_u_args(name: &str) -> Result<Vec<u8>, XdrError> {
    name_request(GET_ENTRY_BY_NAME_U, name)
}

/// GetEntryByNameN(name) -> [`decode_nvldb_entry`].
pub fn get_entry_by_name_n_args(name: &str) -> Result<Vec<u8>, XdrError> {
    name_request(GET_ENTRY_BY_NAME_N, name)
}

/// GetEntryByNameO(name) -> [`decode_vldb_entry`].
pub fn get_entry_by_name_args(name: &str) -> Result<Vec<u8>, XdrError> {
    name_request(GET_ENTRY_BY_NAME, name)
}

fn id_request(opcode: u32, volume_id: u32, vol_type: Option<VolumeType>) -> Vec<u8> {
    let mut e = request(opcode);
    // -1 asks the server to match any of the three ids.
    e.put_u32(volume_id)
        .put_i32(vol_type.map_or(-1, |t| t.to_raw() as i32));
    e.into_bytes()
}

/// GetEntryByID(id, type) -> [`decode_vldb_entry`]; `None` matches any type.
pub fn get_entry_by_id_args(volume_id: u32, vol_type: Option<VolumeType>) -> Vec<u8> {
    id_request(GET_ENTRY_BY_ID, volume_id, vol_type)
}

/// GetEntryByIDN(id, type) -> [`decode_nvldb_entry`].
pub fn get_entry_by_id_n_args(volume_id: u32, vol_type: Option<VolumeType>) -> Vec<u8> {
    id_request(GET_ENTRY_BY_ID_N, volume_id, vol_type)
}

/// GetEntryByIDU(id, type) -> [`decode_uvldb_entry`].
pub fn get_entry_by_id_u_args(volume_id: u32, vol_type: Option<VolumeType>) -> Vec<u8> {
    id_request(GET_ENTRY_BY_ID_U, volume_id, vol_type)
}

/// GetAddrsU(attrs) -> [`decode_get_addrs_u_reply`].
pub fn get_addrs_u_args(attrs: &ListAddrByAttributes) -> Vec<u8> {
    let mut e = request(GET_ADDRS_U);
    e.put(attrs);
    e.into_bytes()
}

/// Probe(): empty request, empty reply.
pub fn probe_args() -> Vec<u8> {
    request(PROBE).into_bytes()
}

// ----- replies --------------------------------------------------------------

/// `char name[VL_MAXNAMELEN]`: 65 words, one character in the low byte of
/// each, NUL-terminated.
fn get_name(d: &mut Decoder<'_>) -> Result<String, XdrError> {
    let mut raw = Vec::with_capacity(VL_MAX_NAME_LEN);
    for _ in 0..VL_MAX_NAME_LEN {
        raw.push(d.get_char()?);
    }
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
}

fn put_name(e: &mut Encoder, name: &str) {
    let bytes = name.as_bytes();
    for i in 0..VL_MAX_NAME_LEN {
        // Always leave the last slot as NUL.
        let c = if i < VL_MAX_NAME_LEN - 1 {
            bytes.get(i).copied().unwrap_or(0)
        } else {
            0
        };
        e.put_char(c);
    }
}

fn get_server_count(d: &mut Decoder<'_>, max: usize) -> Result<usize, XdrError> {
    let n = d.get_i32()?;
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(XdrError::Invalid {
            what: "VLDB nServers",
            value: n as u32,
        }),
    }
}

fn get_words<const N: usize>(d: &mut Decoder<'_>) -> Result<[u32; N], XdrError> {
    d.get_fixed_array()
}

fn get_tail(d: &mut Decoder<'_>) -> Result<([u32; 3], u32, u32), XdrError> {
    let volume_ids = get_words::<3>(d)?;
    let clone_id = d.get_u32()?;
    let flags = d.get_u32()?;
    Ok((volume_ids, clone_id, flags))
}

fn get_uvldb(d: &mut Decoder<'_>) -> Result<VldbEntry, XdrError> {
    let name = get_name(d)?;
    let n = get_server_count(d, MAX_SERVERS)?;
    let uuids: [Uuid; MAX_SERVERS] = d.get_fixed_array()?;
    let uniques = get_words::<MAX_SERVERS>(d)?;
    let parts = get_words::<MAX_SERVERS>(d)?;
    let sflags = get_words::<MAX_SERVERS>(d)?;
    let (volume_ids, clone_id, flags) = get_tail(d)?;
    let _match_index = d.get_i32()?;
    let _spares = get_words::<8>(d)?;
    let sites = (0..n)
        .map(|i| VolumeSite {
            server: if sflags[i] & VLSF_UUID != 0 {
                ServerRef::Uuid(uuids[i])
            } else {
                ServerRef::Addr(Ipv4Addr::from(uuids[i].time_low))
            },
            server_unique: uniques[i] as i32,
            partition: parts[i] as i32,
            flags: sflags[i],
        })
        .collect();
    Ok(VldbEntry {
        name,
        volume_ids,
        clone_id,
        flags,
        sites,
    })
}

fn addr_sites(n: usize, addrs: &[u32], parts: &[u32], sflags: &[u32]) -> Vec<VolumeSite> {
    (0..n)
        .map(|i| VolumeSite {
            server: ServerRef::Addr(Ipv4Addr::from(addrs[i])),
            server_unique: 0,
            partition: parts[i] as i32,
            flags: sflags[i],
        })
        .collect()
}

fn get_nvldb(d: &mut Decoder<'_>) -> Result<VldbEntry, XdrError> {
    let name = get_name(d)?;
    let n = get_server_count(d, MAX_SERVERS)?;
    let addrs = get_words::<MAX_SERVERS>(d)?;
    let parts = get_words::<MAX_SERVERS>(d)?;
    let sflags = get_words::<MAX_SERVERS>(d)?;
    let (volume_ids, clone_id, flags) = get_tail(d)?;
    let _match_index = d.get_i32()?;
    let _spares = get_words::<8>(d)?;
    Ok(VldbEntry {
        name,
        volume_ids,
        clone_id,
        flags,
        sites: addr_sites(n, &addrs, &parts, &sflags),
    })
}

fn get_old_vldb(d: &mut Decoder<'_>) -> Result<VldbEntry, XdrError> {
    let name = get_name(d)?;
    let _spare = d.get_i32()?;
    let n = get_server_count(d, OLD_MAX_SERVERS)?;
    let addrs = get_words::<OLD_MAX_SERVERS>(d)?;
    let parts = get_words::<OLD_MAX_SERVERS>(d)?;
    let sflags = get_words::<OLD_MAX_SERVERS>(d)?;
    let (volume_ids, clone_id, flags) = get_tail(d)?;
    Ok(VldbEntry {
        name,
        volume_ids,
        clone_id,
        flags,
        sites: addr_sites(n, &addrs, &parts, &sflags),
    })
}

/// Reply of GetEntryByNameU / GetEntryByIDU (`uvldbentry`, 1048 bytes).
pub fn decode_uvldb_entry(buf: &[u8]) -> Result<VldbEntry, XdrError> {
    decode_whole(buf, get_uvldb)
}

/// Reply of GetEntryByNameN / GetEntryByIDN (`nvldbentry`, 476 bytes).
pub fn decode_nvldb_entry(buf: &[u8]) -> Result<VldbEntry, XdrError> {
    decode_whole(buf, get_nvldb)
}

/// Reply of GetEntryByNameO / GetEntryByID (`vldbentry`, 384 bytes).
pub fn decode_vldb_entry(buf: &[u8]) -> Result<VldbEntry, XdrError> {
    decode_whole(buf, get_old_vldb)
}

/// Reply of GetAddrsU. Only the first `nentries` addresses are meaningful;
/// zero addresses are dropped.
pub fn decode_get_addrs_u_reply(buf: &[u8]) -> Result<AddrsReply, XdrError> {
    decode_whole(buf, |d| {
        let uuid = d.get()?;
        let uniquifier = d.get_i32()?;
        let nentries = d.get_u32()? as usize;
        let raw: Vec<u32> = d.get_array("bulkaddrs", MAX_BULK_ADDRS)?;
        let addrs = raw
            .into_iter()
            .take(nentries)
            .filter(|&a| a != 0)
            .map(Ipv4Addr::from)
            .collect();
        Ok(AddrsReply {
            uuid,
            uniquifier,
            addrs,
        })
    })
}

/// Reply of Probe (empty).
pub fn decode_probe_reply(buf: &[u8]) -> Result<(), XdrError> {
    decode_whole(buf, |_| Ok(()))
}

// ----- server-side encoders (for tests and mock servers) --------------------

/// Encode a `uvldbentry`. Sites whose server is an address are written with
/// the address in `time_low` and [`VLSF_UUID`] cleared; UUID sites get the
/// flag set, as the OpenAFS vlserver does. At most 13 sites are written.
pub fn encode_uvldb_entry(entry: &VldbEntry) -> Vec<u8> {
    let sites = &entry.sites[..entry.sites.len().min(MAX_SERVERS)];
    let mut e = Encoder::with_capacity(1048);
    put_name(&mut e, &entry.name);
    e.put_u32(sites.len() as u32);
    let col = |e: &mut Encoder, f: &dyn Fn(&VolumeSite) -> u32| {
        for i in 0..MAX_SERVERS {
            e.put_u32(sites.get(i).map_or(0, f));
        }
    };
    for i in 0..MAX_SERVERS {
        let uuid = match sites.get(i).map(|s| s.server) {
            Some(ServerRef::Uuid(u)) => u,
            Some(ServerRef::Addr(a)) => Uuid {
                time_low: u32::from(a),
                ..Default::default()
            },
            None => Uuid::default(),
        };
        e.put(&uuid);
    }
    col(&mut e, &|s| s.server_unique as u32);
    col(&mut e, &|s| s.partition as u32);
    col(&mut e, &|s| match s.server {
        ServerRef::Uuid(_) => s.flags | VLSF_UUID,
        ServerRef::Addr(_) => s.flags & !VLSF_UUID,
    });
    e.put_fixed_array(&entry.volume_ids)
        .put_u32(entry.clone_id)
        .put_u32(entry.flags)
        .put_i32(-1)
        .put_fixed_array(&[0u32; 8]);
    e.into_bytes()
}

/// Encode an `nvldbentry`; UUID sites are written as address 0.
pub fn encode_nvldb_entry(entry: &VldbEntry) -> Vec<u8> {
    let sites = &entry.sites[..entry.sites.len().min(MAX_SERVERS)];
    let mut e = Encoder::with_capacity(476);
    put_name(&mut e, &entry.name);
    e.put_u32(sites.len() as u32);
    for i in 0..MAX_SERVERS {
        let a = match sites.get(i).map(|s| s.server) {
            Some(ServerRef::Addr(a)) => u32::from(a),
            _ => 0,
        };
        e.put_u32(a);
    }
    for i in 0..MAX_SERVERS {
        e.put_u32(sites.get(i).map_or(0, |s| s.partition as u32));
    }
    for i in 0..MAX_SERVERS {
        e.put_u32(sites.get(i).map_or(0, |s| s.flags));
    }
    e.put_fixed_array(&entry.volume_ids)
        .put_u32(entry.clone_id)
        .put_u32(entry.flags)
        .put_i32(-1)
        .put_fixed_array(&[0u32; 8]);
    e.into_bytes()
}

/// Encode a GetAddrsU reply.
pub fn encode_get_addrs_u_reply(reply: &AddrsReply) -> Vec<u8> {
    let addrs: Vec<u32> = reply
        .addrs
        .iter()
        .take(MAX_BULK_ADDRS)
        .map(|&a| u32::from(a))
        .collect();
    let mut e = Encoder::new();
    e.put(&reply.uuid)
        .put_i32(reply.uniquifier)
        .put_u32(addrs.len() as u32)
        .put_array(&addrs);
    e.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::test_util::check_never_panics;

    fn sample_entry() -> VldbEntry {
        VldbEntry {
            name: "root.cell".into(),
            volume_ids: [536870912, 536870913, 536870914],
            clone_id: 0,
            flags: VLF_RWEXISTS | VLF_ROEXISTS | VLF_BACKEXISTS,
            sites: vec![
                VolumeSite {
                    server: ServerRef::Uuid(Uuid::from_bytes([7; 16])),
                    server_unique: 3,
                    partition: 0,
                    flags: VLSF_RWVOL | VLSF_ROVOL | VLSF_UUID,
                },
                VolumeSite {
                    server: ServerRef::Addr(Ipv4Addr::new(10, 0, 0, 2)),
                    server_unique: 0,
                    partition: 27,
                    flags: VLSF_ROVOL,
                },
            ],
        }
    }

    #[test]
    fn request_layouts() {
        let b = get_entry_by_name_u_args("root.afs").unwrap();
        assert_eq!(
            b,
            [0, 0, 2, 15, 0, 0, 0, 8, b'r', b'o', b'o', b't', b'.', b'a', b'f', b's']
        );
        assert!(get_entry_by_name_u_args("").is_err());
        assert!(get_entry_by_name_u_args(&"v".repeat(65)).is_err());
        assert!(get_entry_by_name_n_args(&"v".repeat(64)).is_ok());
        assert_eq!(get_entry_by_name_args("x").unwrap()[..4], [0, 0, 1, 248]);
        assert_eq!(
            get_entry_by_id_args(5, Some(VolumeType::ReadOnly)),
            [0, 0, 1, 247, 0, 0, 0, 5, 0, 0, 0, 1]
        );
        assert_eq!(
            get_entry_by_id_n_args(5, None),
            [0, 0, 2, 6, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(get_entry_by_id_u_args(5, None)[..4], [0, 0, 2, 14]);
        assert_eq!(probe_args(), [0, 0, 2, 2]);
        let a = get_addrs_u_args(&ListAddrByAttributes::by_uuid(Uuid::from_bytes([1; 16])));
        assert_eq!(a.len(), 4 + 16 + 44);
        assert_eq!(a[..8], [0, 0, 2, 21, 0, 0, 0, 4]);
    }

    #[test]
    fn uvldb_round_trip() {
        let entry = sample_entry();
        let b = encode_uvldb_entry(&entry);
        assert_eq!(b.len(), 1048);
        // Name: one character per word.
        assert_eq!(&b[..8], &[0, 0, 0, b'r', 0, 0, 0, b'o']);
        // The address site carries the IP in time_low.
        let uuid1 = 260 + 4 + 44;
        assert_eq!(&b[uuid1..uuid1 + 4], &[10, 0, 0, 2]);
        let d = decode_uvldb_entry(&b).unwrap();
        assert_eq!(d, entry);
        assert_eq!(d.volume_id(VolumeType::ReadOnly), Some(536870913));
        assert_eq!(d.type_of(536870914), Some(VolumeType::Backup));
        assert_eq!(d.sites[1].partition_name(), "/vicepab");
        check_never_panics(&b, decode_uvldb_entry);
    }

    #[test]
    fn nvldb_round_trip() {
        let mut entry = sample_entry();
        entry.sites[0].server = ServerRef::Addr(Ipv4Addr::new(10, 0, 0, 1));
        entry.sites[0].server_unique = 0;
        entry.sites[0].flags = VLSF_RWVOL | VLSF_ROVOL;
        let b = encode_nvldb_entry(&entry);
        assert_eq!(b.len(), 476);
        assert_eq!(decode_nvldb_entry(&b).unwrap(), entry);
        check_never_panics(&b, decode_nvldb_entry);
    }

    #[test]
    fn old_vldb_decodes() {
        // Hand-build a vldbentry: name, spare, nServers=1, 8 addrs, 8 parts,
        // 8 flags, ids, clone, flags.
        let mut e = Encoder::new();
        put_name(&mut e, "vol");
        e.put_i32(0).put_u32(1);
        let mut addrs = [0u32; 8];
        addrs[0] = u32::from(Ipv4Addr::new(1, 2, 3, 4));
        e.put_fixed_array(&addrs)
            .put_fixed_array(&[1u32; 8])
            .put_fixed_array(&[VLSF_RWVOL; 8])
            .put_fixed_array(&[9u32, 0, 0])
            .put_u32(0)
            .put_u32(VLF_RWEXISTS);
        let b = e.into_bytes();
        assert_eq!(b.len(), 384);
        let d = decode_vldb_entry(&b).unwrap();
        assert_eq!(d.name, "vol");
        assert_eq!(d.sites.len(), 1);
        assert_eq!(
            d.sites[0].server,
            ServerRef::Addr(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(d.volume_id(VolumeType::ReadWrite), Some(9));
        assert_eq!(d.volume_id(VolumeType::ReadOnly), None);
        check_never_panics(&b, decode_vldb_entry);
    }

    #[test]
    fn too_many_servers_is_rejected() {
        let mut b = encode_uvldb_entry(&sample_entry());
        b[260..264].copy_from_slice(&14u32.to_be_bytes());
        assert!(decode_uvldb_entry(&b).is_err());
        b[260..264].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_uvldb_entry(&b).is_err());
    }

    #[test]
    fn site_selection() {
        let mut entry = sample_entry();
        assert_eq!(entry.sites_for(VolumeType::ReadWrite).len(), 1);
        assert_eq!(entry.sites_for(VolumeType::ReadOnly).len(), 2);
        assert_eq!(entry.sites_for(VolumeType::Backup).len(), 1);
        entry.sites[1].flags |= VLSF_NEWREPSITE;
        let ro = entry.sites_for(VolumeType::ReadOnly);
        assert_eq!(ro.len(), 1);
        assert_eq!(ro[0].partition, 27);
        entry.sites[1].flags |= VLSF_DONTUSE;
        assert_eq!(entry.sites_for(VolumeType::ReadOnly).len(), 1);
        assert_eq!(entry.sites_for(VolumeType::ReadOnly)[0].partition, 0);
    }

    #[test]
    fn addrs_reply() {
        let r = AddrsReply {
            uuid: Uuid::from_bytes([3; 16]),
            uniquifier: 4,
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 168, 0, 1)],
        };
        let b = encode_get_addrs_u_reply(&r);
        assert_eq!(b.len(), 44 + 4 + 4 + 4 + 8);
        assert_eq!(&b[b.len() - 4..], &[192, 168, 0, 1]);
        assert_eq!(decode_get_addrs_u_reply(&b).unwrap(), r);
        check_never_panics(&b, decode_get_addrs_u_reply);

        // nentries smaller than the array: extra addresses ignored.
        let mut short = b.clone();
        short[48..52].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(decode_get_addrs_u_reply(&short).unwrap().addrs.len(), 1);
    }

    #[test]
    fn partition_names() {
        assert_eq!(partition_name(0), "/vicepa");
        assert_eq!(partition_name(25), "/vicepz");
        assert_eq!(partition_name(26), "/vicepaa");
        assert_eq!(partition_name(255), "/vicepiv");
        assert_eq!(partition_name(-1), "/vicep?(-1)");
    }

    #[test]
    fn list_addr_round_trip() {
        let l = ListAddrByAttributes::by_addr(Ipv4Addr::new(1, 2, 3, 4));
        let b = crate::xdr::encode_to_vec(&l);
        assert_eq!(&b[..8], &[0, 0, 0, 1, 1, 2, 3, 4]);
        assert_eq!(
            crate::xdr::decode_exact::<ListAddrByAttributes>(&b).unwrap(),
            l
        );
        assert_eq!(ListAddrByAttributes::by_index(2).mask, VLADDR_INDEX);
    }
}
