//! The debugging calls OpenAFS's `cmdebug` makes on the callback service
//! (GetLock, GetCE, GetCE64, GetCellByNum, GetCellServDB, GetCacheConfig) and
//! a few more of the kind (XStatsVersion, GetServerPrefs, GetLocalCell). They
//! change nothing; what they report comes from a [`CmDebugState`] and is
//! answered with [`respond_with`]. Their results are structures of OpenAFS
//! `src/fsint/common.xg`, where a `char` or `short` member takes a whole XDR
//! word (`xdr_char`, `xdr_short`) and `char name[16]` is sixteen such words.

use std::net::Ipv4Addr;

use super::{
    empty_reply, tell_me_about_yourself_reply, who_are_you_reply, CbRequest, CbResponse,
    CmIdentity, PROBE_UUID_MISMATCH,
};
use crate::error::{RXGEN_OPCODE, RXGEN_SS_MARSHAL};
use crate::proto::decode_whole;
use crate::types::{Fid, AFS_NAME_MAX};
use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError};

/// Debugging: the state of the cache manager's `index`th lock.
pub const GET_LOCK: u32 = 207;
/// Debugging: the `index`th cache entry, with a 32-bit length.
pub const GET_CE: u32 = 208;
/// Debugging: which version of the extended statistics we keep.
pub const XSTATS_VERSION: u32 = 209;
/// Debugging: the `index`th fileserver address and its rank.
pub const GET_SERVER_PREFS: u32 = 215;
/// Debugging: the `index`th cell we know and its database servers.
pub const GET_CELL_SERV_DB: u32 = 216;
/// Debugging: the name of our local cell.
pub const GET_LOCAL_CELL: u32 = 217;
/// Debugging: how the cache was configured.
pub const GET_CACHE_CONFIG: u32 = 218;
/// Debugging: the `index`th cache entry, with a 64-bit length.
pub const GET_CE64: u32 = 65536;
/// Debugging: the cell with this number (as cache entries carry it).
pub const GET_CELL_BY_NUM: u32 = 65537;

/// Abort code of GetLock, GetCE and GetCE64 for an index past the last entry
/// (OpenAFS cache managers return 1; cmdebug stops listing at it).
pub const INDEX_PAST_END: i32 = 1;
/// The extended-statistics version XStatsVersion reports (`AFSCB_XSTAT_VERSION`).
pub const AFSCB_XSTAT_VERSION: i32 = 2;
/// The GetCacheConfig format we send (`AFS_CLIENT_RETRIEVAL_FIRST_EDITION`,
/// `cm_initparams_v1`): the only one there is.
pub const AFS_CLIENT_RETRIEVAL_FIRST_EDITION: u32 = 1;
/// Most database servers a `serverList` carries (`AFSMAXCELLHOSTS`).
pub const AFS_MAX_CELL_HOSTS: usize = 8;
/// GetServerPrefs's address and rank past the last server.
pub const NO_MORE_SERVERS: u32 = 0xffff_ffff;

/// Compute the answer to `req`, reporting `state` to the debugging calls.
/// Pure like [`respond`](super::respond); only the debugging calls
/// consult `state`.
pub fn respond_with(req: &CbRequest, me: &CmIdentity, state: &dyn CmDebugState) -> CbResponse {
    match req {
        CbRequest::CallBack { .. }
        | CbRequest::InitCallBackState
        | CbRequest::Probe
        | CbRequest::InitCallBackState3 { .. } => CbResponse::Reply(empty_reply()),
        CbRequest::ProbeUuid { client_uuid } => {
            if *client_uuid == me.interfaces.uuid {
                CbResponse::Reply(empty_reply())
            } else {
                CbResponse::Abort(PROBE_UUID_MISMATCH)
            }
        }
        CbRequest::WhoAreYou => CbResponse::Reply(who_are_you_reply(&me.interfaces)),
        CbRequest::TellMeAboutYourself => CbResponse::Reply(tell_me_about_yourself_reply(
            &me.interfaces,
            &me.capabilities,
        )),
        CbRequest::GetLock { index } => match index_of(*index).and_then(|i| state.lock(i)) {
            Some(lock) => CbResponse::Reply(get_lock_reply(&lock)),
            None => CbResponse::Abort(INDEX_PAST_END),
        },
        CbRequest::GetCe { index } => match index_of(*index).and_then(|i| state.cache_entry(i)) {
            Some(ce) => CbResponse::Reply(get_ce_reply(&ce)),
            None => CbResponse::Abort(INDEX_PAST_END),
        },
        CbRequest::GetCe64 { index } => match index_of(*index).and_then(|i| state.cache_entry(i)) {
            Some(ce) => CbResponse::Reply(get_ce64_reply(&ce)),
            None => CbResponse::Abort(INDEX_PAST_END),
        },
        CbRequest::XStatsVersion => CbResponse::Reply(xstats_version_reply(AFSCB_XSTAT_VERSION)),
        CbRequest::GetServerPrefs { index } => {
            let pref = index_of(*index).and_then(|i| state.server_pref(i));
            CbResponse::Reply(get_server_prefs_reply(pref))
        }
        CbRequest::GetCellServDb { index } => {
            // Past the last cell: an empty name and no servers, and no error.
            let cell = index_of(*index).and_then(|i| state.cell(i));
            marshalled(cell_reply(&cell.unwrap_or_default()))
        }
        CbRequest::GetCellByNum { cell } => {
            // No such cell: an empty name and no servers, and no error.
            marshalled(cell_reply(&state.cell_by_number(*cell).unwrap_or_default()))
        }
        CbRequest::GetLocalCell => marshalled(get_local_cell_reply(
            &state.local_cell().unwrap_or_default(),
        )),
        CbRequest::GetCacheConfig { .. } => {
            // There is one format: every caller gets it (as OpenAFS does).
            CbResponse::Reply(get_cache_config_reply(&state.cache_config()))
        }
        CbRequest::Unknown(_) => CbResponse::Abort(RXGEN_OPCODE),
    }
}

/// A table index from the wire: negative ones are past the end.
fn index_of(index: i32) -> Option<u32> {
    u32::try_from(index).ok()
}

/// A reply that could not be encoded aborts as an rxgen server stub would.
fn marshalled(reply: Result<Vec<u8>, XdrError>) -> CbResponse {
    match reply {
        Ok(body) => CbResponse::Reply(body),
        Err(_) => CbResponse::Abort(RXGEN_SS_MARSHAL),
    }
}

/// What the debugging calls report: the caller's view of its cache. Each
/// method's default is the answer of a cache manager that holds nothing.
/// Implementations should do bounded work per call: anyone may ask.
pub trait CmDebugState {
    /// Cache entry `index` (from 0), or None past the last one.
    fn cache_entry(&self, index: u32) -> Option<DbCacheEntry> {
        let _ = index;
        None
    }
    /// Lock `index` (from 0), or None past the last one.
    fn lock(&self, index: u32) -> Option<DbLock> {
        let _ = index;
        None
    }
    /// Cell `index` (from 0) of the cells we know, or None past the last one.
    fn cell(&self, index: u32) -> Option<CellHosts> {
        let _ = index;
        None
    }
    /// The cell with this number, as [`DbCacheEntry::cell`] gives it.
    fn cell_by_number(&self, number: i32) -> Option<CellHosts> {
        let _ = number;
        None
    }
    /// The local cell's name.
    fn local_cell(&self) -> Option<String> {
        None
    }
    /// How the cache is configured.
    fn cache_config(&self) -> CacheConfig {
        CacheConfig::default()
    }
    /// Fileserver address `index` (from 0) and its rank, or None past the last.
    fn server_pref(&self, index: u32) -> Option<(Ipv4Addr, u32)> {
        let _ = index;
        None
    }
}

/// A cache manager with nothing to report: no entries, locks or cells.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingCached;

impl CmDebugState for NothingCached {}

/// `AFSDBLockDesc`: the state of one lock. Eight words on the wire: the
/// `char` and `short` members take a word each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbLockDesc {
    /// `char`: the kinds of lock being waited for (1 read, 2 write, 4 shared).
    pub wait_states: u8,
    /// `char`: the exclusive lock held (2 write, 4 shared), if any.
    pub excl_locked: u8,
    /// `short`: readers holding it.
    pub readers_reading: i16,
    /// `short`: waiters.
    pub num_waiting: i16,
    /// `short`: unused.
    pub spare: i16,
    pub pid_last_reader: i32,
    pub pid_writer: i32,
    /// Where in the code the writer took it.
    pub src_indicator: i32,
}

impl DbLockDesc {
    /// Bytes on the wire.
    pub const WIRE_SIZE: usize = 32;
}

fn put_short(e: &mut Encoder, v: i16) {
    // xdr_short: the value widened to a word.
    e.put_i32(i32::from(v));
}

fn get_short(d: &mut Decoder<'_>) -> Result<i16, XdrError> {
    // xdr_short: the word truncated.
    Ok(d.get_i32()? as i16)
}

impl XdrEncode for DbLockDesc {
    fn encode(&self, e: &mut Encoder) {
        e.put_char(self.wait_states).put_char(self.excl_locked);
        put_short(e, self.readers_reading);
        put_short(e, self.num_waiting);
        put_short(e, self.spare);
        e.put_i32(self.pid_last_reader)
            .put_i32(self.pid_writer)
            .put_i32(self.src_indicator);
    }
}

impl XdrDecode for DbLockDesc {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            wait_states: d.get_char()?,
            excl_locked: d.get_char()?,
            readers_reading: get_short(d)?,
            num_waiting: get_short(d)?,
            spare: get_short(d)?,
            pid_last_reader: d.get_i32()?,
            pid_writer: d.get_i32()?,
            src_indicator: d.get_i32()?,
        })
    }
}

/// Bytes of `AFSDBLock`'s `char name[16]`, NUL included.
pub const DB_LOCK_NAME_LEN: usize = 16;

/// `AFSDBLock`: a named lock, GetLock's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbLock {
    /// At most 15 bytes are sent (the C side keeps a NUL in 16).
    pub name: String,
    pub lock: DbLockDesc,
}

impl DbLock {
    /// Bytes on the wire: sixteen `char` words, then the lock.
    pub const WIRE_SIZE: usize = DB_LOCK_NAME_LEN * 4 + DbLockDesc::WIRE_SIZE;
}

impl XdrEncode for DbLock {
    fn encode(&self, e: &mut Encoder) {
        let name = self.name.as_bytes();
        let name = &name[..name.len().min(DB_LOCK_NAME_LEN - 1)];
        for i in 0..DB_LOCK_NAME_LEN {
            e.put_char(name.get(i).copied().unwrap_or(0));
        }
        e.put(&self.lock);
    }
}

impl XdrDecode for DbLock {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let mut raw = [0u8; DB_LOCK_NAME_LEN];
        for b in raw.iter_mut() {
            *b = d.get_char()?;
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(Self {
            name: String::from_utf8_lossy(&raw[..end]).into_owned(),
            lock: d.get()?,
        })
    }
}

/// One cache entry as GetCE and GetCE64 report it (`AFSDBCacheEntry`,
/// `AFSDBCacheEntry64`: the same members, the length 32 or 64 bits wide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCacheEntry {
    /// Where the entry lives (an address in the kernel CM; cmdebug takes an
    /// entry with 0 here for a sleeping process, so real entries need another).
    pub addr: u32,
    /// The cell number (see GetCellByNum).
    pub cell: i32,
    pub fid: Fid,
    /// GetCE sends only the low 32 bits, as OpenAFS does.
    pub length: u64,
    /// Low 32 bits of the data version.
    pub data_version: u32,
    pub lock: DbLockDesc,
    /// Nonzero while a callback promise covers the entry (the kernel CM sends
    /// a pointer to the promising server).
    pub callback: u32,
    /// When the promise expires, in Unix seconds.
    pub cb_expires: u32,
    /// `short`.
    pub ref_count: i16,
    /// `short`.
    pub opens: i16,
    /// `short`.
    pub writers: i16,
    /// `char`: 0 file or directory, 1 mount point, 2 volume root.
    pub mvstat: u8,
    /// `char`: [`CE_STATD`], [`CE_READ_ONLY`], ...
    pub states: u8,
}

/// `mvstat` of an ordinary file or directory.
pub const MVSTAT_FILE: u8 = 0;
/// `mvstat` of a mount point.
pub const MVSTAT_MOUNT_POINT: u8 = 1;
/// `mvstat` of a volume's root directory.
pub const MVSTAT_VOLUME_ROOT: u8 = 2;
/// `states` bit: the status is current (cmdebug prints "stat'd").
pub const CE_STATD: u8 = 0x01;
/// `states` bit: a backup volume.
pub const CE_BACKUP: u8 = 0x02;
/// `states` bit: a read-only volume.
pub const CE_READ_ONLY: u8 = 0x04;

impl DbCacheEntry {
    /// Bytes of an `AFSDBCacheEntry` (GetCE).
    pub const WIRE_SIZE: usize = 88;
    /// Bytes of an `AFSDBCacheEntry64` (GetCE64).
    pub const WIRE_SIZE_64: usize = 92;

    fn encode_as(&self, e: &mut Encoder, wide: bool) {
        e.put_u32(self.addr).put_i32(self.cell).put(&self.fid);
        if wide {
            e.put_u64(self.length);
        } else {
            e.put_u32(self.length as u32);
        }
        e.put_u32(self.data_version)
            .put(&self.lock)
            .put_u32(self.callback)
            .put_u32(self.cb_expires);
        put_short(e, self.ref_count);
        put_short(e, self.opens);
        put_short(e, self.writers);
        e.put_char(self.mvstat).put_char(self.states);
    }

    fn decode_as(d: &mut Decoder<'_>, wide: bool) -> Result<Self, XdrError> {
        Ok(Self {
            addr: d.get_u32()?,
            cell: d.get_i32()?,
            fid: d.get()?,
            length: if wide {
                d.get_u64()?
            } else {
                u64::from(d.get_u32()?)
            },
            data_version: d.get_u32()?,
            lock: d.get()?,
            callback: d.get_u32()?,
            cb_expires: d.get_u32()?,
            ref_count: get_short(d)?,
            opens: get_short(d)?,
            writers: get_short(d)?,
            mvstat: d.get_char()?,
            states: d.get_char()?,
        })
    }
}

/// `cm_initparams_v1`: how the cache was set up (GetCacheConfig). Nine words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheConfig {
    pub n_chunk_files: u32,
    pub n_stat_caches: u32,
    pub n_data_caches: u32,
    pub n_volume_caches: u32,
    /// Bytes.
    pub first_chunk_size: u32,
    /// Bytes.
    pub other_chunk_size: u32,
    /// KiB.
    pub cache_size: u32,
    /// Whether the CM sets the clock from a fileserver's.
    pub set_time: bool,
    /// Whether the cache is in memory (else on disk).
    pub mem_cache: bool,
}

impl CacheConfig {
    /// Words of a `cm_initparams_v1`.
    pub const WORDS: usize = 9;

    /// The words in `cm_initparams_v1` order.
    pub fn to_words(&self) -> [u32; Self::WORDS] {
        [
            self.n_chunk_files,
            self.n_stat_caches,
            self.n_data_caches,
            self.n_volume_caches,
            self.first_chunk_size,
            self.other_chunk_size,
            self.cache_size,
            u32::from(self.set_time),
            u32::from(self.mem_cache),
        ]
    }

    /// Reads the words of a `cm_initparams_v1`; None unless there are nine.
    pub fn from_words(w: &[u32]) -> Option<Self> {
        let w: &[u32; Self::WORDS] = w.try_into().ok()?;
        Some(Self {
            n_chunk_files: w[0],
            n_stat_caches: w[1],
            n_data_caches: w[2],
            n_volume_caches: w[3],
            first_chunk_size: w[4],
            other_chunk_size: w[5],
            cache_size: w[6],
            set_time: w[7] != 0,
            mem_cache: w[8] != 0,
        })
    }
}

/// A cell and its database servers (GetCellServDB, GetCellByNum). The
/// default, an empty name and no servers, is the answer for no such cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellHosts {
    pub name: String,
    /// At most [`AFS_MAX_CELL_HOSTS`] are sent.
    pub hosts: Vec<Ipv4Addr>,
}

/// Reply body of GetLock: an `AFSDBLock`.
pub fn get_lock_reply(lock: &DbLock) -> Vec<u8> {
    let mut e = Encoder::with_capacity(DbLock::WIRE_SIZE);
    e.put(lock);
    e.into_bytes()
}

/// Decode a GetLock reply.
pub fn decode_get_lock_reply(buf: &[u8]) -> Result<DbLock, XdrError> {
    decode_whole(buf, |d| d.get())
}

/// Reply body of GetCE: an `AFSDBCacheEntry` (the length cut to 32 bits).
pub fn get_ce_reply(ce: &DbCacheEntry) -> Vec<u8> {
    let mut e = Encoder::with_capacity(DbCacheEntry::WIRE_SIZE);
    ce.encode_as(&mut e, false);
    e.into_bytes()
}

/// Decode a GetCE reply.
pub fn decode_get_ce_reply(buf: &[u8]) -> Result<DbCacheEntry, XdrError> {
    decode_whole(buf, |d| DbCacheEntry::decode_as(d, false))
}

/// Reply body of GetCE64: an `AFSDBCacheEntry64`.
pub fn get_ce64_reply(ce: &DbCacheEntry) -> Vec<u8> {
    let mut e = Encoder::with_capacity(DbCacheEntry::WIRE_SIZE_64);
    ce.encode_as(&mut e, true);
    e.into_bytes()
}

/// Decode a GetCE64 reply.
pub fn decode_get_ce64_reply(buf: &[u8]) -> Result<DbCacheEntry, XdrError> {
    decode_whole(buf, |d| DbCacheEntry::decode_as(d, true))
}

/// Reply body of XStatsVersion: one `afs_int32`.
pub fn xstats_version_reply(version: i32) -> Vec<u8> {
    version.to_be_bytes().to_vec()
}

/// Decode an XStatsVersion reply.
pub fn decode_xstats_version_reply(buf: &[u8]) -> Result<i32, XdrError> {
    decode_whole(buf, |d| d.get_i32())
}

/// Reply body of GetServerPrefs: address (as a number) and rank, or
/// [`NO_MORE_SERVERS`] for both past the last server.
pub fn get_server_prefs_reply(pref: Option<(Ipv4Addr, u32)>) -> Vec<u8> {
    let (addr, rank) = pref.map_or((NO_MORE_SERVERS, NO_MORE_SERVERS), |(a, r)| {
        (u32::from(a), r)
    });
    let mut e = Encoder::with_capacity(8);
    e.put_u32(addr).put_u32(rank);
    e.into_bytes()
}

/// Decode a GetServerPrefs reply: None for the past-the-end marker.
pub fn decode_get_server_prefs_reply(buf: &[u8]) -> Result<Option<(Ipv4Addr, u32)>, XdrError> {
    decode_whole(buf, |d| {
        let (addr, rank) = (d.get_u32()?, d.get_u32()?);
        Ok((addr != NO_MORE_SERVERS || rank != NO_MORE_SERVERS)
            .then(|| (Ipv4Addr::from(addr), rank)))
    })
}

/// Reply body of GetCellServDB and GetCellByNum: `string cellName<AFSNAMEMAX>`
/// then a `serverList` of addresses as numbers (host byte order on the C
/// side, so the usual dotted order on the wire). Servers past
/// [`AFS_MAX_CELL_HOSTS`] are left out; a name too long fails.
pub fn cell_reply(cell: &CellHosts) -> Result<Vec<u8>, XdrError> {
    let hosts = &cell.hosts[..cell.hosts.len().min(AFS_MAX_CELL_HOSTS)];
    let mut e = Encoder::with_capacity(8 + cell.name.len() + 4 * hosts.len());
    e.put_string_checked("cellName", &cell.name, AFS_NAME_MAX)?
        .put_u32(hosts.len() as u32);
    for h in hosts {
        e.put_u32(u32::from(*h));
    }
    Ok(e.into_bytes())
}

/// Decode a GetCellServDB or GetCellByNum reply.
pub fn decode_cell_reply(buf: &[u8]) -> Result<CellHosts, XdrError> {
    decode_whole(buf, |d| {
        let name = d.get_string("cellName", AFS_NAME_MAX)?;
        let hosts: Vec<u32> = d.get_array("serverList", AFS_MAX_CELL_HOSTS)?;
        Ok(CellHosts {
            name,
            hosts: hosts.into_iter().map(Ipv4Addr::from).collect(),
        })
    })
}

/// Reply body of GetLocalCell: `string cellName<AFSNAMEMAX>`.
pub fn get_local_cell_reply(name: &str) -> Result<Vec<u8>, XdrError> {
    let mut e = Encoder::with_capacity(4 + name.len() + 3);
    e.put_string_checked("cellName", name, AFS_NAME_MAX)?;
    Ok(e.into_bytes())
}

/// Decode a GetLocalCell reply.
pub fn decode_get_local_cell_reply(buf: &[u8]) -> Result<String, XdrError> {
    decode_whole(buf, |d| d.get_string("cellName", AFS_NAME_MAX))
}

/// Reply body of GetCacheConfig: the format (version 1), the size of the
/// configuration in bytes (OpenAFS counts bytes here), then the
/// `cacheConfig` array of its words.
pub fn get_cache_config_reply(config: &CacheConfig) -> Vec<u8> {
    let words = config.to_words();
    let mut e = Encoder::with_capacity(12 + 4 * words.len());
    e.put_u32(AFS_CLIENT_RETRIEVAL_FIRST_EDITION)
        .put_u32((4 * words.len()) as u32)
        .put_array(&words);
    e.into_bytes()
}

/// Most words of a `cacheConfig` we accept when decoding (the type has no
/// bound; version 1 has nine).
pub const CACHE_CONFIG_MAX_WORDS: usize = 1024;

/// Decode a GetCacheConfig reply: the format, the byte count and the words
/// (see [`CacheConfig::from_words`] for format 1).
pub fn decode_get_cache_config_reply(buf: &[u8]) -> Result<(u32, u32, Vec<u32>), XdrError> {
    decode_whole(buf, |d| {
        Ok((
            d.get_u32()?,
            d.get_u32()?,
            d.get_array("cacheConfig", CACHE_CONFIG_MAX_WORDS)?,
        ))
    })
}
