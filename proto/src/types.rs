//! Wire structures shared by the AFS RPC interfaces (OpenAFS `common.xg`,
//! `afsint.xg`), with names that say what the fields mean rather than what
//! they were called in 1988.

use std::fmt;
use std::net::Ipv4Addr;

use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError};

/// Maximum length of a file name component (`AFSNAMEMAX`).
pub const AFS_NAME_MAX: usize = 256;
/// Maximum length of a symlink target / path (`AFSPATHMAX`).
pub const AFS_PATH_MAX: usize = 1024;
/// Maximum size of an `AFSOpaque` (ACLs, volume messages).
pub const AFS_OPAQUE_MAX: usize = 1024;
/// Maximum FIDs in one callback-break or bulk-status call (`AFSCBMAX`).
pub const AFS_CB_MAX: usize = 50;
/// Maximum entries in a `Capabilities` array (`AFSCAPABILITIESMAX`).
pub const AFS_CAPABILITIES_MAX: usize = 196;
/// Interfaces in an `interfaceAddr` (`AFS_MAX_INTERFACE_ADDR`).
pub const AFS_MAX_INTERFACE_ADDR: usize = 32;

/// Fileserver capability bit: it can translate errno values to UAE codes.
pub const VICED_CAPABILITY_ERRORTRANS: u32 = 0x0001;
/// Fileserver capability bit: it supports 64-bit file sizes.
pub const VICED_CAPABILITY_64BITFILES: u32 = 0x0002;
/// Fileserver capability bit: write-lock permission follows the ACL.
pub const VICED_CAPABILITY_WRITELOCKACL: u32 = 0x0004;
/// Fileserver capability bit: sane ACL semantics.
pub const VICED_CAPABILITY_SANEACLS: u32 = 0x0008;
/// Cache-manager capability bit: "send me UAE error codes, not raw errno".
/// Advertising it in TellMeAboutYourself makes the OpenAFS fileserver
/// translate its platform errno values into portable UAE codes.
pub const CLIENT_CAPABILITY_ERRORTRANS: u32 = 0x0001;

/// ACL right bits as they appear in `FetchStatus::caller_access` and
/// `anonymous_access` (OpenAFS `prs_fs.h`).
pub mod rights {
    /// Read file contents.
    pub const READ: u32 = 0x01;
    /// Write file contents / change attributes.
    pub const WRITE: u32 = 0x02;
    /// Create entries in a directory.
    pub const INSERT: u32 = 0x04;
    /// List and look up entries in a directory.
    pub const LOOKUP: u32 = 0x08;
    /// Remove entries from a directory.
    pub const DELETE: u32 = 0x10;
    /// Take advisory locks.
    pub const LOCK: u32 = 0x20;
    /// Change the ACL.
    pub const ADMINISTER: u32 = 0x40;
}

/// Identifies a file within a cell: volume, vnode slot and the slot's
/// incarnation ("uniquifier") so a reused slot is not mistaken for the old
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fid {
    /// Volume id.
    pub volume: u32,
    /// Vnode number within the volume (odd numbers are directories).
    pub vnode: u32,
    /// Incarnation of that vnode slot.
    pub unique: u32,
}

impl Fid {
    /// Build a FID.
    pub const fn new(volume: u32, vnode: u32, unique: u32) -> Self {
        Self {
            volume,
            vnode,
            unique,
        }
    }

    /// The root directory of a volume is always vnode 1, uniquifier 1.
    pub const fn root_of(volume: u32) -> Self {
        Self::new(volume, 1, 1)
    }
}

impl fmt::Display for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.volume, self.vnode, self.unique)
    }
}

impl XdrEncode for Fid {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.volume)
            .put_u32(self.vnode)
            .put_u32(self.unique);
    }
}

impl XdrDecode for Fid {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            volume: dec.get_u32()?,
            vnode: dec.get_u32()?,
            unique: dec.get_u32()?,
        })
    }
}

/// Kind of vnode, from `AFSFetchStatus.FileType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileType {
    /// 0: no valid status (e.g. a failed bulk-status entry).
    #[default]
    Invalid,
    /// 1: regular file.
    File,
    /// 2: directory.
    Directory,
    /// 3: symbolic link (or mount point, when the target starts with `#`/`%`
    /// and the mode is 0644).
    Symlink,
    /// Any other value; kept so re-encoding is lossless.
    Unknown(u32),
}

impl FileType {
    /// Map the wire value.
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Invalid,
            1 => Self::File,
            2 => Self::Directory,
            3 => Self::Symlink,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::Invalid => 0,
            Self::File => 1,
            Self::Directory => 2,
            Self::Symlink => 3,
            Self::Unknown(v) => v,
        }
    }
}

/// Attributes of a vnode as returned by nearly every fileserver call
/// (`AFSFetchStatus`, 21 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchStatus {
    /// Always 1 for current servers.
    pub interface_version: u32,
    /// File, directory or symlink.
    pub file_type: FileType,
    /// Hard link count.
    pub link_count: u32,
    /// Low 32 bits of the length; see [`FetchStatus::length`].
    pub length_lo: u32,
    /// Low 32 bits of the data version; see [`FetchStatus::data_version`].
    pub data_version_lo: u32,
    /// User id that last wrote the file.
    pub author: u32,
    /// Owner user id.
    pub owner: u32,
    /// ACL rights the calling user holds ([`rights`] bits).
    pub caller_access: u32,
    /// ACL rights `system:anyuser` holds.
    pub anonymous_access: u32,
    /// Unix permission bits (the low 12 bits matter).
    pub unix_mode_bits: u32,
    /// Vnode of the parent directory.
    pub parent_vnode: u32,
    /// Uniquifier of the parent directory.
    pub parent_unique: u32,
    /// Unused by OpenAFS (was for hierarchical storage).
    pub residency_mask: u32,
    /// Modification time set by the client (Unix seconds).
    pub client_mod_time: u32,
    /// Time the server last changed the file (Unix seconds).
    pub server_mod_time: u32,
    /// Owning group id.
    pub group: u32,
    /// Unused by OpenAFS.
    pub sync_counter: u32,
    /// High 32 bits of the data version.
    pub data_version_hi: u32,
    /// Number of advisory locks held (-1 as u32 when write-locked).
    pub lock_count: u32,
    /// High 32 bits of the length.
    pub length_hi: u32,
    /// Per-entry error in bulk status replies; 0 otherwise.
    pub error_code: u32,
}

impl FetchStatus {
    /// File length in bytes, reassembled from its two halves.
    pub fn length(&self) -> u64 {
        (u64::from(self.length_hi) << 32) | u64::from(self.length_lo)
    }

    /// Data version, bumped by the server on every content change; the
    /// cache key for file data.
    pub fn data_version(&self) -> u64 {
        (u64::from(self.data_version_hi) << 32) | u64::from(self.data_version_lo)
    }

    /// Set the two length halves from one value.
    pub fn set_length(&mut self, len: u64) {
        self.length_hi = (len >> 32) as u32;
        self.length_lo = len as u32;
    }

    /// Set the two data-version halves from one value.
    pub fn set_data_version(&mut self, dv: u64) {
        self.data_version_hi = (dv >> 32) as u32;
        self.data_version_lo = dv as u32;
    }

    /// Unix permission bits only (the server may leave junk above them).
    pub fn mode(&self) -> u32 {
        self.unix_mode_bits & 0o7777
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// True when the caller holds every right in `mask`.
    pub fn caller_has(&self, mask: u32) -> bool {
        self.caller_access & mask == mask
    }
}

impl XdrEncode for FetchStatus {
    fn encode(&self, enc: &mut Encoder) {
        for w in [
            self.interface_version,
            self.file_type.to_raw(),
            self.link_count,
            self.length_lo,
            self.data_version_lo,
            self.author,
            self.owner,
            self.caller_access,
            self.anonymous_access,
            self.unix_mode_bits,
            self.parent_vnode,
            self.parent_unique,
            self.residency_mask,
            self.client_mod_time,
            self.server_mod_time,
            self.group,
            self.sync_counter,
            self.data_version_hi,
            self.lock_count,
            self.length_hi,
            self.error_code,
        ] {
            enc.put_u32(w);
        }
    }
}

impl XdrDecode for FetchStatus {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let w: [u32; 21] = dec.get_fixed_array()?;
        Ok(Self {
            interface_version: w[0],
            file_type: FileType::from_raw(w[1]),
            link_count: w[2],
            length_lo: w[3],
            data_version_lo: w[4],
            author: w[5],
            owner: w[6],
            caller_access: w[7],
            anonymous_access: w[8],
            unix_mode_bits: w[9],
            parent_vnode: w[10],
            parent_unique: w[11],
            residency_mask: w[12],
            client_mod_time: w[13],
            server_mod_time: w[14],
            group: w[15],
            sync_counter: w[16],
            data_version_hi: w[17],
            lock_count: w[18],
            length_hi: w[19],
            error_code: w[20],
        })
    }
}

/// Kind of callback promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallBackType {
    /// 0: no promise (e.g. for a failed bulk-status entry).
    #[default]
    None,
    /// 1: exclusive.
    Exclusive,
    /// 2: shared (the normal case).
    Shared,
    /// 3: dropped; the promise has been revoked.
    Dropped,
    /// Any other value, kept for lossless re-encoding.
    Unknown(u32),
}

impl CallBackType {
    /// Map the wire value.
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Exclusive,
            2 => Self::Shared,
            3 => Self::Dropped,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Exclusive => 1,
            Self::Shared => 2,
            Self::Dropped => 3,
            Self::Unknown(v) => v,
        }
    }
}

/// A callback promise: the server will tell us before the file changes, for
/// `expiration_time` seconds from when the reply was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallBack {
    /// Callback protocol version (`CALLBACK_VERSION` = 1).
    pub version: u32,
    /// Lifetime in seconds *relative to the reply*, not an absolute time.
    /// Zero means no promise was made.
    pub expiration_time: u32,
    /// Promise kind.
    pub cb_type: CallBackType,
}

impl XdrEncode for CallBack {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.version)
            .put_u32(self.expiration_time)
            .put_u32(self.cb_type.to_raw());
    }
}

impl XdrDecode for CallBack {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            version: dec.get_u32()?,
            expiration_time: dec.get_u32()?,
            cb_type: CallBackType::from_raw(dec.get_u32()?),
        })
    }
}

/// Volume synchronisation info returned with most fileserver replies
/// (`AFSVolSync`). Only the first word is used by OpenAFS: the volume's
/// creation date, which changes when a read-only volume is re-released, so a
/// client can tell its RO cache is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolSync {
    /// Volume creation date (Unix seconds).
    pub creation_date: u32,
    /// The remaining five words, unused today.
    pub spares: [u32; 5],
}

impl XdrEncode for VolSync {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.creation_date)
            .put_fixed_array(&self.spares);
    }
}

impl XdrDecode for VolSync {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            creation_date: dec.get_u32()?,
            spares: dec.get_fixed_array()?,
        })
    }
}

/// Attributes a client asks the server to set (`AFSStoreStatus`). Only the
/// fields whose bit is in `mask` are applied, so start from
/// [`StoreStatus::new`] and add what you mean to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStatus {
    /// Which fields to apply (`SET_*` bits) plus [`StoreStatus::FSYNC`].
    pub mask: u32,
    /// New modification time (Unix seconds).
    pub client_mod_time: u32,
    /// New owner.
    pub owner: u32,
    /// New group.
    pub group: u32,
    /// New permission bits.
    pub unix_mode_bits: u32,
    /// Obsolete segment size.
    pub seg_size: u32,
}

impl StoreStatus {
    /// Apply `client_mod_time`.
    pub const SET_MODTIME: u32 = 1;
    /// Apply `owner`.
    pub const SET_OWNER: u32 = 2;
    /// Apply `group`.
    pub const SET_GROUP: u32 = 4;
    /// Apply `unix_mode_bits`.
    pub const SET_MODE: u32 = 8;
    /// Apply `seg_size`.
    pub const SET_SEGSIZE: u32 = 16;
    /// Ask the server to fsync before replying.
    pub const FSYNC: u32 = 1024;

    /// Change nothing.
    pub const fn new() -> Self {
        Self {
            mask: 0,
            client_mod_time: 0,
            owner: 0,
            group: 0,
            unix_mode_bits: 0,
            seg_size: 0,
        }
    }

    /// Also set the modification time.
    pub const fn with_mod_time(mut self, unix_secs: u32) -> Self {
        self.mask |= Self::SET_MODTIME;
        self.client_mod_time = unix_secs;
        self
    }

    /// Also set the owner.
    pub const fn with_owner(mut self, uid: u32) -> Self {
        self.mask |= Self::SET_OWNER;
        self.owner = uid;
        self
    }

    /// Also set the group.
    pub const fn with_group(mut self, gid: u32) -> Self {
        self.mask |= Self::SET_GROUP;
        self.group = gid;
        self
    }

    /// Also set the permission bits.
    pub const fn with_mode(mut self, mode: u32) -> Self {
        self.mask |= Self::SET_MODE;
        self.unix_mode_bits = mode & 0o7777;
        self
    }

    /// Ask for the data to be synced to disk before the reply.
    pub const fn with_fsync(mut self) -> Self {
        self.mask |= Self::FSYNC;
        self
    }
}

impl XdrEncode for StoreStatus {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.mask)
            .put_u32(self.client_mod_time)
            .put_u32(self.owner)
            .put_u32(self.group)
            .put_u32(self.unix_mode_bits)
            .put_u32(self.seg_size);
    }
}

impl XdrDecode for StoreStatus {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            mask: dec.get_u32()?,
            client_mod_time: dec.get_u32()?,
            owner: dec.get_u32()?,
            group: dec.get_u32()?,
            unix_mode_bits: dec.get_u32()?,
            seg_size: dec.get_u32()?,
        })
    }
}

/// Volume type index, as used in VLDB `volumeId[]` and volume-status replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeType {
    /// 0: the read/write volume.
    ReadWrite,
    /// 1: a read-only replica.
    ReadOnly,
    /// 2: the backup clone.
    Backup,
}

impl VolumeType {
    /// Map the wire value.
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::ReadWrite),
            1 => Some(Self::ReadOnly),
            2 => Some(Self::Backup),
            _ => None,
        }
    }

    /// The wire value (also the index into `volumeId[]`).
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::ReadWrite => 0,
            Self::ReadOnly => 1,
            Self::Backup => 2,
        }
    }
}

/// Reply of `RXAFS_GetVolumeStatus`: `AFSFetchVolumeStatus` followed by the
/// volume name, offline message and message of the day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchVolumeStatus {
    /// Volume id.
    pub vid: u32,
    /// Id of the RW parent volume.
    pub parent_id: u32,
    /// Volume is attached and online.
    pub online: bool,
    /// Volume is in service.
    pub in_service: bool,
    /// Volume is blessed (usable).
    pub blessed: bool,
    /// Volume needs a salvage.
    pub needs_salvage: bool,
    /// Volume type (see [`VolumeType`]).
    pub vol_type: i32,
    /// Unused minimum quota.
    pub min_quota: i32,
    /// Quota in KiB; 0 means unlimited.
    pub max_quota: i32,
    /// Space used, KiB.
    pub blocks_in_use: i32,
    /// Free space on the partition, KiB.
    pub part_blocks_avail: i32,
    /// Size of the partition, KiB.
    pub part_max_blocks: i32,
    /// Volume name.
    pub name: String,
    /// Why the volume is offline, if it is.
    pub offline_msg: String,
    /// Message of the day.
    pub motd: String,
}

impl XdrEncode for FetchVolumeStatus {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.vid)
            .put_u32(self.parent_id)
            .put_char(u8::from(self.online))
            .put_char(u8::from(self.in_service))
            .put_char(u8::from(self.blessed))
            .put_char(u8::from(self.needs_salvage))
            .put_i32(self.vol_type)
            .put_i32(self.min_quota)
            .put_i32(self.max_quota)
            .put_i32(self.blocks_in_use)
            .put_i32(self.part_blocks_avail)
            .put_i32(self.part_max_blocks)
            .put_opaque(self.name.as_bytes())
            .put_opaque(self.offline_msg.as_bytes())
            .put_opaque(self.motd.as_bytes());
    }
}

impl XdrDecode for FetchVolumeStatus {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            vid: dec.get_u32()?,
            parent_id: dec.get_u32()?,
            online: dec.get_char()? != 0,
            in_service: dec.get_char()? != 0,
            blessed: dec.get_char()? != 0,
            needs_salvage: dec.get_char()? != 0,
            vol_type: dec.get_i32()?,
            min_quota: dec.get_i32()?,
            max_quota: dec.get_i32()?,
            blocks_in_use: dec.get_i32()?,
            part_blocks_avail: dec.get_i32()?,
            part_max_blocks: dec.get_i32()?,
            name: dec.get_string("volume name", AFS_NAME_MAX)?,
            offline_msg: dec.get_string("offline message", AFS_OPAQUE_MAX)?,
            motd: dec.get_string("motd", AFS_OPAQUE_MAX)?,
        })
    }
}

/// `afsUUID`: identifies a cache manager or fileserver independently of
/// its addresses.
///
/// On the wire every member, even the one-byte ones, takes a whole XDR word
/// (11 words, 44 bytes), because rxgen encodes C `char`/`short` that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid {
    /// Low 32 bits of the timestamp.
    pub time_low: u32,
    /// Middle 16 bits of the timestamp.
    pub time_mid: u16,
    /// High 12 bits of the timestamp plus the version nibble.
    pub time_hi_and_version: u16,
    /// Clock sequence high bits plus variant.
    pub clock_seq_hi_and_reserved: u8,
    /// Clock sequence low byte.
    pub clock_seq_low: u8,
    /// Node identifier.
    pub node: [u8; 6],
}

impl Uuid {
    /// Encoded size in bytes.
    pub const WIRE_SIZE: usize = 44;

    /// The 16-byte RFC 4122 form.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.time_low.to_be_bytes());
        b[4..6].copy_from_slice(&self.time_mid.to_be_bytes());
        b[6..8].copy_from_slice(&self.time_hi_and_version.to_be_bytes());
        b[8] = self.clock_seq_hi_and_reserved;
        b[9] = self.clock_seq_low;
        b[10..16].copy_from_slice(&self.node);
        b
    }

    /// Build from the 16-byte RFC 4122 form.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self {
            time_low: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            time_mid: u16::from_be_bytes([b[4], b[5]]),
            time_hi_and_version: u16::from_be_bytes([b[6], b[7]]),
            clock_seq_hi_and_reserved: b[8],
            clock_seq_low: b[9],
            node: [b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// A fresh random (version 4) UUID. A cache manager needs one per run so
    /// fileservers can tell a restarted client from the one they knew.
    pub fn random() -> Self {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self::from_bytes(b)
    }

    /// True for the all-zero UUID, which OpenAFS treats as "none".
    pub fn is_nil(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl XdrEncode for Uuid {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.time_low)
            .put_u32(u32::from(self.time_mid))
            .put_u32(u32::from(self.time_hi_and_version))
            .put_char(self.clock_seq_hi_and_reserved)
            .put_char(self.clock_seq_low);
        for &n in &self.node {
            enc.put_char(n);
        }
    }
}

impl XdrDecode for Uuid {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let time_low = dec.get_u32()?;
        let time_mid = dec.get_ushort()?;
        let time_hi_and_version = dec.get_ushort()?;
        let clock_seq_hi_and_reserved = dec.get_char()?;
        let clock_seq_low = dec.get_char()?;
        let mut node = [0u8; 6];
        for n in node.iter_mut() {
            *n = dec.get_char()?;
        }
        Ok(Self {
            time_low,
            time_mid,
            time_hi_and_version,
            clock_seq_hi_and_reserved,
            clock_seq_low,
            node,
        })
    }
}

/// One network interface of a cache manager, as reported to fileservers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// IPv4 address.
    pub addr: Ipv4Addr,
    /// Subnet mask.
    pub netmask: Ipv4Addr,
    /// Interface MTU.
    pub mtu: u32,
}

/// `interfaceAddr`: who a cache manager is (its UUID) and where it can be
/// reached. Addresses travel as the address's numeric value in XDR
/// (so the wire bytes are the usual dotted-quad order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceAddr {
    /// The cache manager's UUID.
    pub uuid: Uuid,
    /// Up to [`AFS_MAX_INTERFACE_ADDR`] interfaces; extras are dropped when
    /// encoding.
    pub interfaces: Vec<Interface>,
}

impl InterfaceAddr {
    /// Encoded size in bytes: count + UUID + three arrays of 32 words.
    pub const WIRE_SIZE: usize = 4 + Uuid::WIRE_SIZE + 3 * 4 * AFS_MAX_INTERFACE_ADDR;
}

impl XdrEncode for InterfaceAddr {
    fn encode(&self, enc: &mut Encoder) {
        let ifs = &self.interfaces[..self.interfaces.len().min(AFS_MAX_INTERFACE_ADDR)];
        enc.put_u32(ifs.len() as u32).put(&self.uuid);
        let column = |enc: &mut Encoder, f: &dyn Fn(&Interface) -> u32| {
            for i in 0..AFS_MAX_INTERFACE_ADDR {
                enc.put_u32(ifs.get(i).map_or(0, f));
            }
        };
        column(enc, &|i| u32::from(i.addr));
        column(enc, &|i| u32::from(i.netmask));
        column(enc, &|i| i.mtu);
    }
}

impl XdrDecode for InterfaceAddr {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let n = dec.get_u32()?;
        if n as usize > AFS_MAX_INTERFACE_ADDR {
            return Err(XdrError::TooLong {
                what: "interfaceAddr.numberOfInterfaces",
                len: n as usize,
                max: AFS_MAX_INTERFACE_ADDR,
            });
        }
        let uuid = dec.get()?;
        let addrs: [u32; AFS_MAX_INTERFACE_ADDR] = dec.get_fixed_array()?;
        let masks: [u32; AFS_MAX_INTERFACE_ADDR] = dec.get_fixed_array()?;
        let mtus: [u32; AFS_MAX_INTERFACE_ADDR] = dec.get_fixed_array()?;
        let interfaces = (0..n as usize)
            .map(|i| Interface {
                addr: Ipv4Addr::from(addrs[i]),
                netmask: Ipv4Addr::from(masks[i]),
                mtu: mtus[i],
            })
            .collect();
        Ok(Self { uuid, interfaces })
    }
}

/// A `Capabilities` bit array (word 0 holds the `*_CAPABILITY_*` bits).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities(pub Vec<u32>);

impl Capabilities {
    /// True if bit `mask` is set in the first word.
    pub fn has(&self, mask: u32) -> bool {
        self.0.first().is_some_and(|w| w & mask == mask)
    }
}

impl XdrEncode for Capabilities {
    fn encode(&self, enc: &mut Encoder) {
        let words = &self.0[..self.0.len().min(AFS_CAPABILITIES_MAX)];
        enc.put_array(words);
    }
}

impl XdrDecode for Capabilities {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self(dec.get_array("Capabilities", AFS_CAPABILITIES_MAX)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::xdr::test_util::check_never_panics;
    use crate::xdr::{decode_exact, encode_to_vec};

    pub(crate) fn sample_status() -> FetchStatus {
        let mut s = FetchStatus {
            interface_version: 1,
            file_type: FileType::File,
            link_count: 1,
            author: 10,
            owner: 11,
            caller_access: 0x7f,
            anonymous_access: 9,
            unix_mode_bits: 0o644,
            parent_vnode: 1,
            parent_unique: 1,
            client_mod_time: 1_700_000_000,
            server_mod_time: 1_700_000_001,
            group: 12,
            ..Default::default()
        };
        s.set_length(0x1_0000_0005);
        s.set_data_version(0x2_0000_0007);
        s
    }

    #[test]
    fn fid_layout() {
        let f = Fid::new(536870912, 3, 0x55);
        assert_eq!(
            encode_to_vec(&f),
            [0x20, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0x55]
        );
        assert_eq!(decode_exact::<Fid>(&encode_to_vec(&f)).unwrap(), f);
        assert_eq!(f.to_string(), "536870912.3.85");
    }

    #[test]
    fn fetch_status_layout() {
        let s = sample_status();
        let b = encode_to_vec(&s);
        assert_eq!(b.len(), 84);
        // Length low word is the 4th word; Length_hi the 20th.
        assert_eq!(&b[12..16], &[0, 0, 0, 5]);
        assert_eq!(&b[76..80], &[0, 0, 0, 1]);
        // DataVersion low is word 5, dataVersionHigh word 18.
        assert_eq!(&b[16..20], &[0, 0, 0, 7]);
        assert_eq!(&b[68..72], &[0, 0, 0, 2]);
        let d: FetchStatus = decode_exact(&b).unwrap();
        assert_eq!(d, s);
        assert_eq!(d.length(), 0x1_0000_0005);
        assert_eq!(d.data_version(), 0x2_0000_0007);
        check_never_panics(&b, decode_exact::<FetchStatus>);
    }

    #[test]
    fn callback_and_volsync() {
        let cb = CallBack {
            version: 1,
            expiration_time: 7200,
            cb_type: CallBackType::Shared,
        };
        assert_eq!(
            encode_to_vec(&cb),
            [0, 0, 0, 1, 0, 0, 0x1c, 0x20, 0, 0, 0, 2]
        );
        assert_eq!(decode_exact::<CallBack>(&encode_to_vec(&cb)).unwrap(), cb);
        let vs = VolSync {
            creation_date: 42,
            spares: [1, 2, 3, 4, 5],
        };
        let b = encode_to_vec(&vs);
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..4], &[0, 0, 0, 42]);
        assert_eq!(decode_exact::<VolSync>(&b).unwrap(), vs);
    }

    #[test]
    fn store_status_builders() {
        let s = StoreStatus::new().with_mode(0o100755).with_mod_time(5);
        assert_eq!(s.mask, StoreStatus::SET_MODE | StoreStatus::SET_MODTIME);
        assert_eq!(s.unix_mode_bits, 0o755);
        let b = encode_to_vec(&s);
        assert_eq!(&b[..4], &[0, 0, 0, 9]);
        assert_eq!(decode_exact::<StoreStatus>(&b).unwrap(), s);
        assert_eq!(StoreStatus::new().with_fsync().mask, 1024);
    }

    #[test]
    fn uuid_uses_a_word_per_member() {
        let u = Uuid::from_bytes([
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x47, 0x08, 0x89, 0x0a, 0xf1, 0x02, 0x03, 0x04,
            0x05, 0x06,
        ]);
        let b = encode_to_vec(&u);
        assert_eq!(b.len(), Uuid::WIRE_SIZE);
        assert_eq!(&b[0..4], &[1, 2, 3, 4]);
        assert_eq!(&b[4..8], &[0, 0, 5, 6]);
        assert_eq!(&b[8..12], &[0, 0, 0x47, 8]);
        // 0x89 has the top bit set, so OpenAFS sign-extends it.
        assert_eq!(&b[12..16], &[0xff, 0xff, 0xff, 0x89]);
        assert_eq!(&b[16..20], &[0, 0, 0, 0x0a]);
        assert_eq!(&b[20..24], &[0xff, 0xff, 0xff, 0xf1]);
        assert_eq!(decode_exact::<Uuid>(&b).unwrap(), u);
        assert_eq!(u.to_string(), "01020304-0506-4708-890a-f10203040506");
        check_never_panics(&b, decode_exact::<Uuid>);

        let r = Uuid::random();
        assert_eq!(r.time_hi_and_version >> 12, 4);
        assert!(!r.is_nil());
    }

    #[test]
    fn interface_addr_layout() {
        let ia = InterfaceAddr {
            uuid: Uuid::random(),
            interfaces: vec![Interface {
                addr: Ipv4Addr::new(192, 168, 1, 2),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                mtu: 1500,
            }],
        };
        let b = encode_to_vec(&ia);
        assert_eq!(b.len(), InterfaceAddr::WIRE_SIZE);
        assert_eq!(&b[0..4], &[0, 0, 0, 1]);
        assert_eq!(&b[48..52], &[192, 168, 1, 2]);
        assert_eq!(&b[48 + 128..52 + 128], &[255, 255, 255, 0]);
        assert_eq!(&b[48 + 256..52 + 256], &[0, 0, 0x05, 0xdc]);
        assert_eq!(decode_exact::<InterfaceAddr>(&b).unwrap(), ia);
        check_never_panics(&b, decode_exact::<InterfaceAddr>);
    }

    #[test]
    fn volume_status_round_trip() {
        let v = FetchVolumeStatus {
            vid: 536870915,
            parent_id: 536870915,
            online: true,
            in_service: true,
            blessed: true,
            needs_salvage: false,
            vol_type: 0,
            max_quota: 5000,
            blocks_in_use: 12,
            part_blocks_avail: 1000,
            part_max_blocks: 2000,
            name: "root.cell".into(),
            motd: "hello".into(),
            ..Default::default()
        };
        let b = encode_to_vec(&v);
        assert_eq!(b.len(), 48 + 16 + 4 + 12);
        assert_eq!(decode_exact::<FetchVolumeStatus>(&b).unwrap(), v);
        check_never_panics(&b, decode_exact::<FetchVolumeStatus>);
    }

    #[test]
    fn capabilities() {
        let c = Capabilities(vec![
            VICED_CAPABILITY_ERRORTRANS | VICED_CAPABILITY_64BITFILES,
        ]);
        assert!(c.has(VICED_CAPABILITY_64BITFILES));
        assert!(!Capabilities::default().has(1));
        let b = encode_to_vec(&c);
        assert_eq!(b, [0, 0, 0, 1, 0, 0, 0, 3]);
        assert_eq!(decode_exact::<Capabilities>(&b).unwrap(), c);
        check_never_panics(&b, decode_exact::<Capabilities>);
    }

    #[test]
    fn enums_are_lossless() {
        for v in 0..6 {
            assert_eq!(FileType::from_raw(v).to_raw(), v);
            assert_eq!(CallBackType::from_raw(v).to_raw(), v);
        }
        assert_eq!(VolumeType::from_raw(1), Some(VolumeType::ReadOnly));
        assert_eq!(VolumeType::from_raw(3), None);
    }
}
