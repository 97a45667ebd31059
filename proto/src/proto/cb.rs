//! Cache-manager callback interface (`RXAFSCB_*`), served *by the client*.
//!
//! Fileservers call back into the client (Rx service 1 on the client's own
//! socket) to break callbacks and to check it is alive and who it is. An
//! OpenAFS fileserver will not serve a client that fails these calls, so
//! the answers matter even for a read-only client.
//!
//! Layouts follow OpenAFS `src/fsint/afscbint.xg`. Note that the OpenAFS
//! callback interface has **no** `GetCapabilities` call: capabilities are
//! reported through TellMeAboutYourself (65538). Opcodes we do not
//! implement should be answered with an abort of
//! [`RXGEN_OPCODE`](crate::error::RXGEN_OPCODE); see [`respond`].
//!
//! The same service carries the debugging calls OpenAFS's `cmdebug` makes
//! (GetLock, GetCE, GetCE64, GetCellByNum, GetCellServDB, GetCacheConfig) and
//! a few more of the kind (XStatsVersion, GetServerPrefs, GetLocalCell). They
//! change nothing; what they report comes from a [`CmDebugState`] and is
//! answered with [`respond_with`]. Their results are structures of OpenAFS
//! `src/fsint/common.xg`, where a `char` or `short` member takes a whole XDR
//! word (`xdr_char`, `xdr_short`) and `char name[16]` is sixteen such words.

use super::{decode_whole, request};
use std::net::Ipv4Addr;

use crate::error::{RXGEN_OPCODE, RXGEN_SS_MARSHAL};
use crate::types::{CallBack, Capabilities, Fid, InterfaceAddr, Uuid, AFS_CB_MAX, AFS_NAME_MAX};
use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError};

/// Break callbacks on up to 50 FIDs.
pub const CALLBACK: u32 = 204;
/// Forget all callbacks from this server (server restarted).
pub const INIT_CALLBACK_STATE: u32 = 205;
/// Are you alive?
pub const PROBE: u32 = 206;
/// Who are you (addresses and UUID)?
pub const WHO_ARE_YOU: u32 = 212;
/// Forget all callbacks from the server with this UUID.
pub const INIT_CALLBACK_STATE3: u32 = 213;
/// Are you still the client with this UUID?
pub const PROBE_UUID: u32 = 214;
/// Who are you, and what can you do?
pub const TELL_ME_ABOUT_YOURSELF: u32 = 65538;
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

/// Abort code for a ProbeUuid whose UUID is not ours: the fileserver then
/// treats us as a new client (OpenAFS cache managers return 1).
pub const PROBE_UUID_MISMATCH: i32 = 1;

/// A decoded incoming callback-service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbRequest {
    /// Break these callbacks. `callbacks` is either empty or parallel to
    /// `fids`; a FID with vnode 0 means "the whole volume".
    CallBack {
        /// FIDs whose callbacks are broken.
        fids: Vec<Fid>,
        /// The promises being broken (informational).
        callbacks: Vec<CallBack>,
    },
    /// Drop every callback from the calling server.
    InitCallBackState,
    /// Liveness check.
    Probe,
    /// Report our interfaces.
    WhoAreYou,
    /// Drop every callback from the server with this UUID.
    InitCallBackState3 {
        /// The server's UUID.
        server_uuid: Uuid,
    },
    /// Check that we are still the client with this UUID.
    ProbeUuid {
        /// The UUID the server remembers for us.
        client_uuid: Uuid,
    },
    /// Report our interfaces and capabilities.
    TellMeAboutYourself,
    /// Debugging: report lock `index`.
    GetLock {
        /// From 0.
        index: i32,
    },
    /// Debugging: report cache entry `index` with a 32-bit length.
    GetCe {
        /// From 0.
        index: i32,
    },
    /// Debugging: report cache entry `index` with a 64-bit length.
    GetCe64 {
        /// From 0.
        index: i32,
    },
    /// Debugging: report our extended-statistics version.
    XStatsVersion,
    /// Debugging: report fileserver `index` and its rank.
    GetServerPrefs {
        /// From 0.
        index: i32,
    },
    /// Debugging: report cell `index` and its database servers.
    GetCellServDb {
        /// From 0.
        index: i32,
    },
    /// Debugging: report our local cell's name.
    GetLocalCell,
    /// Debugging: report the cache configuration.
    GetCacheConfig {
        /// The newest format the caller understands.
        caller_version: u32,
    },
    /// Debugging: report the cell numbered `cell`.
    GetCellByNum {
        /// A cell number from a cache entry.
        cell: i32,
    },
    /// An opcode we do not implement; answer with abort `RXGEN_OPCODE`.
    Unknown(u32),
}

impl CbRequest {
    /// Decode a whole request body (opcode word first).
    ///
    /// Unknown opcodes decode successfully as [`CbRequest::Unknown`] without
    /// looking at the rest of the body; for known opcodes the body must be
    /// exactly right.
    pub fn decode(buf: &[u8]) -> Result<Self, XdrError> {
        decode_whole(buf, |d| {
            let opcode = d.get_u32()?;
            Ok(match opcode {
                CALLBACK => {
                    let fids = d.get_array("AFSCBFids", AFS_CB_MAX)?;
                    let callbacks: Vec<CallBack> = d.get_array("AFSCBs", AFS_CB_MAX)?;
                    CbRequest::CallBack { fids, callbacks }
                }
                INIT_CALLBACK_STATE => CbRequest::InitCallBackState,
                PROBE => CbRequest::Probe,
                WHO_ARE_YOU => CbRequest::WhoAreYou,
                INIT_CALLBACK_STATE3 => CbRequest::InitCallBackState3 {
                    server_uuid: d.get()?,
                },
                PROBE_UUID => CbRequest::ProbeUuid {
                    client_uuid: d.get()?,
                },
                TELL_ME_ABOUT_YOURSELF => CbRequest::TellMeAboutYourself,
                GET_LOCK => CbRequest::GetLock { index: d.get()? },
                GET_CE => CbRequest::GetCe { index: d.get()? },
                GET_CE64 => CbRequest::GetCe64 { index: d.get()? },
                XSTATS_VERSION => CbRequest::XStatsVersion,
                GET_SERVER_PREFS => CbRequest::GetServerPrefs { index: d.get()? },
                GET_CELL_SERV_DB => CbRequest::GetCellServDb { index: d.get()? },
                GET_LOCAL_CELL => CbRequest::GetLocalCell,
                GET_CACHE_CONFIG => CbRequest::GetCacheConfig {
                    caller_version: d.get()?,
                },
                GET_CELL_BY_NUM => CbRequest::GetCellByNum { cell: d.get()? },
                other => {
                    // Skip whatever arguments it had.
                    let _ = d.take(d.remaining())?;
                    CbRequest::Unknown(other)
                }
            })
        })
    }

    /// The request's opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Self::CallBack { .. } => CALLBACK,
            Self::InitCallBackState => INIT_CALLBACK_STATE,
            Self::Probe => PROBE,
            Self::WhoAreYou => WHO_ARE_YOU,
            Self::InitCallBackState3 { .. } => INIT_CALLBACK_STATE3,
            Self::ProbeUuid { .. } => PROBE_UUID,
            Self::TellMeAboutYourself => TELL_ME_ABOUT_YOURSELF,
            Self::GetLock { .. } => GET_LOCK,
            Self::GetCe { .. } => GET_CE,
            Self::GetCe64 { .. } => GET_CE64,
            Self::XStatsVersion => XSTATS_VERSION,
            Self::GetServerPrefs { .. } => GET_SERVER_PREFS,
            Self::GetCellServDb { .. } => GET_CELL_SERV_DB,
            Self::GetLocalCell => GET_LOCAL_CELL,
            Self::GetCacheConfig { .. } => GET_CACHE_CONFIG,
            Self::GetCellByNum { .. } => GET_CELL_BY_NUM,
            Self::Unknown(op) => *op,
        }
    }

    /// Whether this is one of the debugging calls: they change nothing and
    /// report only what a debugger (cmdebug) is meant to see.
    pub fn is_debugging(&self) -> bool {
        matches!(
            self,
            Self::GetLock { .. }
                | Self::GetCe { .. }
                | Self::GetCe64 { .. }
                | Self::XStatsVersion
                | Self::GetServerPrefs { .. }
                | Self::GetCellServDb { .. }
                | Self::GetLocalCell
                | Self::GetCacheConfig { .. }
                | Self::GetCellByNum { .. }
        )
    }

    /// Encode as a request body (what a fileserver would send). Used by
    /// tests and mock servers; arrays longer than 50 are truncated.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = request(self.opcode());
        match self {
            Self::CallBack { fids, callbacks } => {
                e.put_array(&fids[..fids.len().min(AFS_CB_MAX)])
                    .put_array(&callbacks[..callbacks.len().min(AFS_CB_MAX)]);
            }
            Self::InitCallBackState3 { server_uuid: u } | Self::ProbeUuid { client_uuid: u } => {
                e.put(u);
            }
            Self::GetLock { index: i }
            | Self::GetCe { index: i }
            | Self::GetCe64 { index: i }
            | Self::GetServerPrefs { index: i }
            | Self::GetCellServDb { index: i }
            | Self::GetCellByNum { cell: i } => {
                e.put_i32(*i);
            }
            Self::GetCacheConfig { caller_version } => {
                e.put_u32(*caller_version);
            }
            _ => {}
        }
        e.into_bytes()
    }
}

/// What a cache manager says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmIdentity {
    /// Our UUID and interfaces.
    pub interfaces: InterfaceAddr,
    /// Our capabilities (normally `[CLIENT_CAPABILITY_ERRORTRANS]`).
    pub capabilities: Capabilities,
}

/// How to finish an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbResponse {
    /// Send this reply body.
    Reply(Vec<u8>),
    /// Abort the call with this code.
    Abort(i32),
}

/// Compute the answer to `req`, as a cache manager that holds nothing
/// worth debugging (see [`respond_with`]). This is pure: acting on callback
/// breaks (invalidating cached status/data) is the caller's job, and for
/// [`CbRequest::CallBack`] it should happen *before* the reply is sent, so
/// that no later FetchStatus can be answered from stale cache.
pub fn respond(req: &CbRequest, me: &CmIdentity) -> CbResponse {
    respond_with(req, me, &NothingCached)
}

/// Compute the answer to `req`, reporting `state` to the debugging calls.
/// Pure like [`respond`]; only the debugging calls consult `state`.
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

/// Reply body of CallBack, InitCallBackState(3), Probe and ProbeUuid.
pub fn empty_reply() -> Vec<u8> {
    Vec::new()
}

/// Reply body of WhoAreYou: an `interfaceAddr`.
pub fn who_are_you_reply(addr: &InterfaceAddr) -> Vec<u8> {
    let mut e = Encoder::with_capacity(InterfaceAddr::WIRE_SIZE);
    e.put(addr);
    e.into_bytes()
}

/// Reply body of TellMeAboutYourself: `interfaceAddr` then `Capabilities`.
pub fn tell_me_about_yourself_reply(addr: &InterfaceAddr, caps: &Capabilities) -> Vec<u8> {
    let mut e = Encoder::with_capacity(InterfaceAddr::WIRE_SIZE + 8);
    e.put(addr).put(caps);
    e.into_bytes()
}

/// Decode a WhoAreYou reply (for tests and probes of other clients).
pub fn decode_who_are_you_reply(buf: &[u8]) -> Result<InterfaceAddr, XdrError> {
    decode_whole(buf, |d| d.get())
}

/// Decode a TellMeAboutYourself reply.
pub fn decode_tell_me_about_yourself_reply(
    buf: &[u8],
) -> Result<(InterfaceAddr, Capabilities), XdrError> {
    decode_whole(buf, |d| Ok((d.get()?, d.get()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CallBackType, Interface, CLIENT_CAPABILITY_ERRORTRANS};
    use crate::xdr::test_util::check_never_panics;
    use std::net::Ipv4Addr;

    fn me() -> CmIdentity {
        CmIdentity {
            interfaces: InterfaceAddr {
                uuid: Uuid::from_bytes([0x42; 16]),
                interfaces: vec![Interface {
                    addr: Ipv4Addr::new(127, 0, 0, 1),
                    netmask: Ipv4Addr::new(255, 0, 0, 0),
                    mtu: 1500,
                }],
            },
            capabilities: Capabilities(vec![CLIENT_CAPABILITY_ERRORTRANS]),
        }
    }

    #[test]
    fn callback_request_layout() {
        let req = CbRequest::CallBack {
            fids: vec![Fid::new(1, 2, 3), Fid::new(1, 0, 0)],
            callbacks: vec![
                CallBack {
                    version: 1,
                    expiration_time: 0,
                    cb_type: CallBackType::Dropped,
                };
                2
            ],
        };
        let b = req.encode();
        assert_eq!(&b[..8], &[0, 0, 0, 204, 0, 0, 0, 2]);
        assert_eq!(b.len(), 4 + 4 + 24 + 4 + 24);
        assert_eq!(CbRequest::decode(&b).unwrap(), req);
        check_never_panics(&b, CbRequest::decode);
    }

    #[test]
    fn callback_with_no_callbacks_array() {
        let req = CbRequest::CallBack {
            fids: vec![Fid::new(1, 2, 3)],
            callbacks: vec![],
        };
        assert_eq!(CbRequest::decode(&req.encode()).unwrap(), req);
    }

    #[test]
    fn too_many_fids_rejected() {
        let mut e = Encoder::new();
        e.put_u32(CALLBACK).put_u32(51);
        for _ in 0..51 {
            e.put(&Fid::new(1, 1, 1));
        }
        e.put_u32(0);
        assert!(matches!(
            CbRequest::decode(e.as_bytes()),
            Err(XdrError::TooLong { len: 51, .. })
        ));
    }

    #[test]
    fn simple_requests() {
        for (req, op) in [
            (CbRequest::InitCallBackState, 205u32),
            (CbRequest::Probe, 206),
            (CbRequest::WhoAreYou, 212),
            (CbRequest::TellMeAboutYourself, 65538),
        ] {
            let b = req.encode();
            assert_eq!(b, op.to_be_bytes());
            assert_eq!(CbRequest::decode(&b).unwrap(), req);
            // Extra bytes after an argument-less request are an error.
            let mut longer = b.clone();
            longer.extend_from_slice(&[0; 4]);
            assert!(CbRequest::decode(&longer).is_err());
        }
        assert!(CbRequest::decode(&[]).is_err());
        // GetXStats (210) is not implemented: its arguments are skipped.
        assert_eq!(
            CbRequest::decode(&[0, 0, 0, 210, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
            CbRequest::Unknown(210)
        );
    }

    #[test]
    fn uuid_requests() {
        let u = Uuid::from_bytes([9; 16]);
        for req in [
            CbRequest::InitCallBackState3 { server_uuid: u },
            CbRequest::ProbeUuid { client_uuid: u },
        ] {
            let b = req.encode();
            assert_eq!(b.len(), 48);
            assert_eq!(CbRequest::decode(&b).unwrap(), req);
            check_never_panics(&b, CbRequest::decode);
        }
    }

    #[test]
    fn responses() {
        let me = me();
        assert_eq!(
            respond(&CbRequest::Probe, &me),
            CbResponse::Reply(Vec::new())
        );
        assert_eq!(
            respond(
                &CbRequest::ProbeUuid {
                    client_uuid: me.interfaces.uuid
                },
                &me
            ),
            CbResponse::Reply(Vec::new())
        );
        assert_eq!(
            respond(
                &CbRequest::ProbeUuid {
                    client_uuid: Uuid::default()
                },
                &me
            ),
            CbResponse::Abort(PROBE_UUID_MISMATCH)
        );
        assert_eq!(
            respond(&CbRequest::Unknown(65539), &me),
            CbResponse::Abort(-455)
        );
        let CbResponse::Reply(w) = respond(&CbRequest::WhoAreYou, &me) else {
            panic!("WhoAreYou must reply");
        };
        assert_eq!(w.len(), InterfaceAddr::WIRE_SIZE);
        assert_eq!(decode_who_are_you_reply(&w).unwrap(), me.interfaces);
        check_never_panics(&w, decode_who_are_you_reply);

        let CbResponse::Reply(t) = respond(&CbRequest::TellMeAboutYourself, &me) else {
            panic!("TellMeAboutYourself must reply");
        };
        assert_eq!(t.len(), InterfaceAddr::WIRE_SIZE + 8);
        assert_eq!(&t[t.len() - 8..], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let (ia, caps) = decode_tell_me_about_yourself_reply(&t).unwrap();
        assert_eq!(ia, me.interfaces);
        assert!(caps.has(CLIENT_CAPABILITY_ERRORTRANS));
        check_never_panics(&t, decode_tell_me_about_yourself_reply);
    }

    /// The big-endian words of `b`.
    fn words(b: &[u8]) -> Vec<u32> {
        assert_eq!(b.len() % 4, 0);
        b.chunks(4)
            .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn debugging_requests() {
        // afscbint.xg: each takes one afs_int32 (GetCacheConfig an afs_uint32)
        // or nothing.
        for (req, op, arg) in [
            (CbRequest::GetLock { index: 3 }, 207u32, Some(3u32)),
            (CbRequest::GetCe { index: 0 }, 208, Some(0)),
            (CbRequest::XStatsVersion, 209, None),
            (CbRequest::GetServerPrefs { index: 7 }, 215, Some(7)),
            (CbRequest::GetCellServDb { index: -1 }, 216, Some(u32::MAX)),
            (CbRequest::GetLocalCell, 217, None),
            (
                CbRequest::GetCacheConfig { caller_version: 1 },
                218,
                Some(1),
            ),
            (CbRequest::GetCe64 { index: 12 }, 65536, Some(12)),
            (CbRequest::GetCellByNum { cell: 1 }, 65537, Some(1)),
        ] {
            let b = req.encode();
            let mut want = vec![op];
            want.extend(arg);
            assert_eq!(words(&b), want, "{req:?}");
            assert_eq!(CbRequest::decode(&b).unwrap(), req);
            assert_eq!(req.opcode(), op);
            assert!(req.is_debugging());
            check_never_panics(&b, CbRequest::decode);
        }
        for req in [
            CbRequest::Probe,
            CbRequest::WhoAreYou,
            CbRequest::TellMeAboutYourself,
            CbRequest::InitCallBackState,
            CbRequest::Unknown(210),
        ] {
            assert!(!req.is_debugging(), "{req:?}");
        }
    }

    fn sample_lock() -> DbLockDesc {
        DbLockDesc {
            wait_states: 0x81,
            excl_locked: 2,
            readers_reading: -3,
            num_waiting: 4,
            spare: 5,
            pid_last_reader: 6,
            pid_writer: -7,
            src_indicator: 8,
        }
    }

    #[test]
    fn lock_layout() {
        // AFSDBLockDesc: char, char, short, short, short, int, int, int; each
        // a word, chars sign-extended (xdr_char), shorts widened (xdr_short).
        let mut e = Encoder::new();
        e.put(&sample_lock());
        let b = e.into_bytes();
        assert_eq!(b.len(), DbLockDesc::WIRE_SIZE);
        assert_eq!(
            words(&b),
            [0xffff_ff81, 2, (-3i32) as u32, 4, 5, 6, (-7i32) as u32, 8]
        );
        assert_eq!(
            crate::xdr::decode_exact::<DbLockDesc>(&b).unwrap(),
            sample_lock()
        );

        // AFSDBLock: char name[16] (sixteen xdr_char words), then the lock.
        let lock = DbLock {
            name: "afs_xvcache".into(),
            lock: sample_lock(),
        };
        let b = get_lock_reply(&lock);
        assert_eq!(b.len(), 96);
        let w = words(&b);
        let name: Vec<u32> = b"afs_xvcache\0\0\0\0\0"
            .iter()
            .map(|&c| u32::from(c))
            .collect();
        assert_eq!(&w[..16], &name[..]);
        assert_eq!(&b[64..], &e_bytes(&sample_lock())[..]);
        assert_eq!(decode_get_lock_reply(&b).unwrap(), lock);
        check_never_panics(&b, decode_get_lock_reply);

        // A long name keeps 15 bytes and its NUL.
        let long = DbLock {
            name: "a_very_long_lock_name".into(),
            lock: DbLockDesc::default(),
        };
        let b = get_lock_reply(&long);
        assert_eq!(words(&b)[15], 0);
        assert_eq!(decode_get_lock_reply(&b).unwrap().name, "a_very_long_loc");
    }

    fn e_bytes<T: XdrEncode>(v: &T) -> Vec<u8> {
        let mut e = Encoder::new();
        e.put(v);
        e.into_bytes()
    }

    fn sample_entry() -> DbCacheEntry {
        DbCacheEntry {
            addr: 0xdead_beef,
            cell: 1,
            fid: Fid::new(536870915, 2, 3),
            length: 0x1_0000_0005,
            data_version: 9,
            lock: sample_lock(),
            callback: 0x0afe_0002,
            cb_expires: 1_700_000_000,
            ref_count: 1,
            opens: 2,
            writers: -1,
            mvstat: MVSTAT_VOLUME_ROOT,
            states: CE_STATD | CE_READ_ONLY,
        }
    }

    #[test]
    fn cache_entry64_layout() {
        // AFSDBCacheEntry64: addr, cell, netFid (3 words), Length (afs_int64,
        // high word first), DataVersion, lock (8 words), callback, cbExpires,
        // refCount, opens, writers (shorts), mvstat, states (chars).
        let ce = sample_entry();
        let b = get_ce64_reply(&ce);
        assert_eq!(b.len(), DbCacheEntry::WIRE_SIZE_64);
        let w = words(&b);
        assert_eq!(&w[..8], &[0xdead_beef, 1, 536870915, 2, 3, 1, 5, 9]);
        assert_eq!(&b[32..64], &e_bytes(&sample_lock())[..]);
        assert_eq!(
            &w[16..],
            &[0x0afe_0002, 1_700_000_000, 1, 2, u32::MAX, 2, 5]
        );
        assert_eq!(decode_get_ce64_reply(&b).unwrap(), ce);
        check_never_panics(&b, decode_get_ce64_reply);
    }

    #[test]
    fn cache_entry_layout() {
        // AFSDBCacheEntry: the same with a 32-bit Length (its low word, as
        // the OpenAFS CM sends it).
        let ce = sample_entry();
        let b = get_ce_reply(&ce);
        assert_eq!(b.len(), DbCacheEntry::WIRE_SIZE);
        let w = words(&b);
        assert_eq!(&w[..7], &[0xdead_beef, 1, 536870915, 2, 3, 5, 9]);
        assert_eq!(&b[28..60], &e_bytes(&sample_lock())[..]);
        assert_eq!(
            &w[15..],
            &[0x0afe_0002, 1_700_000_000, 1, 2, u32::MAX, 2, 5]
        );
        let back = decode_get_ce_reply(&b).unwrap();
        assert_eq!(back, DbCacheEntry { length: 5, ..ce });
        check_never_panics(&b, decode_get_ce_reply);
    }

    #[test]
    fn cache_config_layout() {
        // serverVersion, configCount (bytes, as OpenAFS fills it), then the
        // cacheConfig array: a count and cm_initparams_v1's nine words.
        let c = CacheConfig {
            n_chunk_files: 1,
            n_stat_caches: 2,
            n_data_caches: 3,
            n_volume_caches: 4,
            first_chunk_size: 1 << 21,
            other_chunk_size: 1 << 20,
            cache_size: 7,
            set_time: false,
            mem_cache: true,
        };
        let b = get_cache_config_reply(&c);
        assert_eq!(words(&b), [1, 36, 9, 1, 2, 3, 4, 1 << 21, 1 << 20, 7, 0, 1]);
        let (version, count, w) = decode_get_cache_config_reply(&b).unwrap();
        assert_eq!((version, count), (AFS_CLIENT_RETRIEVAL_FIRST_EDITION, 36));
        assert_eq!(CacheConfig::from_words(&w), Some(c));
        assert_eq!(CacheConfig::from_words(&w[1..]), None);
        check_never_panics(&b, decode_get_cache_config_reply);
    }

    #[test]
    fn cell_layouts() {
        // string cellName<AFSNAMEMAX>, then serverList<AFSMAXCELLHOSTS> of
        // afs_int32 addresses in host order (dotted order on the wire).
        let cell = CellHosts {
            name: "cell.example".into(),
            hosts: vec![Ipv4Addr::new(10, 254, 0, 2), Ipv4Addr::new(192, 0, 2, 1)],
        };
        let b = cell_reply(&cell).unwrap();
        assert_eq!(&b[..4], &[0, 0, 0, 12]);
        assert_eq!(&b[4..16], b"cell.example");
        assert_eq!(&b[16..], &[0, 0, 0, 2, 10, 254, 0, 2, 192, 0, 2, 1]);
        assert_eq!(decode_cell_reply(&b).unwrap(), cell);
        check_never_panics(&b, decode_cell_reply);
        // No such cell: an empty name and no servers.
        assert_eq!(cell_reply(&CellHosts::default()).unwrap(), [0; 8]);
        // Servers past eight are left out; names past AFSNAMEMAX fail.
        let many = CellHosts {
            name: "c".into(),
            hosts: vec![Ipv4Addr::LOCALHOST; 9],
        };
        assert_eq!(
            decode_cell_reply(&cell_reply(&many).unwrap())
                .unwrap()
                .hosts
                .len(),
            8
        );
        let long = CellHosts {
            name: "x".repeat(AFS_NAME_MAX + 1),
            hosts: vec![],
        };
        assert!(cell_reply(&long).is_err());

        let b = get_local_cell_reply("abcde").unwrap();
        assert_eq!(b, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
        assert_eq!(decode_get_local_cell_reply(&b).unwrap(), "abcde");
        check_never_panics(&b, decode_get_local_cell_reply);
    }

    #[test]
    fn small_debugging_replies() {
        assert_eq!(xstats_version_reply(AFSCB_XSTAT_VERSION), [0, 0, 0, 2]);
        assert_eq!(decode_xstats_version_reply(&[0, 0, 0, 2]).unwrap(), 2);
        let end = get_server_prefs_reply(None);
        assert_eq!(end, [0xff; 8]);
        assert_eq!(decode_get_server_prefs_reply(&end).unwrap(), None);
        let one = get_server_prefs_reply(Some((Ipv4Addr::new(10, 254, 0, 2), 5000)));
        assert_eq!(words(&one), [0x0afe_0002, 5000]);
        assert_eq!(
            decode_get_server_prefs_reply(&one).unwrap(),
            Some((Ipv4Addr::new(10, 254, 0, 2), 5000))
        );
        check_never_panics(&one, decode_get_server_prefs_reply);
    }

    /// A cache manager with two entries, one lock and one cell.
    struct Two;

    impl CmDebugState for Two {
        fn cache_entry(&self, index: u32) -> Option<DbCacheEntry> {
            (index < 2).then(|| DbCacheEntry {
                addr: index + 1,
                ..sample_entry()
            })
        }
        fn lock(&self, index: u32) -> Option<DbLock> {
            (index == 0).then(|| DbLock {
                name: "only".into(),
                lock: DbLockDesc::default(),
            })
        }
        fn cell(&self, index: u32) -> Option<CellHosts> {
            (index == 0).then(|| CellHosts {
                name: "x".repeat(AFS_NAME_MAX + 1),
                hosts: vec![],
            })
        }
        fn local_cell(&self) -> Option<String> {
            Some("here".into())
        }
    }

    #[test]
    fn debugging_responses() {
        let me = me();
        let reply = |req: CbRequest, state: &dyn CmDebugState| match respond_with(&req, &me, state)
        {
            CbResponse::Reply(b) => Ok(b),
            CbResponse::Abort(code) => Err(code),
        };
        // Holding nothing: no entries and no locks (abort 1, where cmdebug
        // stops), no cells (an empty answer), version-1 zero configuration.
        for req in [
            CbRequest::GetLock { index: 0 },
            CbRequest::GetCe { index: 0 },
            CbRequest::GetCe64 { index: 0 },
        ] {
            assert_eq!(reply(req.clone(), &NothingCached), Err(INDEX_PAST_END));
            assert_eq!(respond(&req, &me), CbResponse::Abort(1));
        }
        assert_eq!(
            reply(CbRequest::GetCellServDb { index: 0 }, &NothingCached),
            Ok(vec![0; 8])
        );
        assert_eq!(
            reply(CbRequest::GetCellByNum { cell: 1 }, &NothingCached),
            Ok(vec![0; 8])
        );
        assert_eq!(
            reply(CbRequest::GetLocalCell, &NothingCached),
            Ok(vec![0; 4])
        );
        assert_eq!(
            reply(CbRequest::XStatsVersion, &NothingCached),
            Ok(vec![0, 0, 0, 2])
        );
        assert_eq!(
            reply(CbRequest::GetServerPrefs { index: 0 }, &NothingCached),
            Ok(vec![0xff; 8])
        );
        let config = reply(
            CbRequest::GetCacheConfig { caller_version: 7 },
            &NothingCached,
        );
        assert_eq!(
            decode_get_cache_config_reply(&config.unwrap()).unwrap(),
            (1, 36, vec![0; 9])
        );

        // With entries: each index until the end, never a negative one.
        let ce = decode_get_ce64_reply(&reply(CbRequest::GetCe64 { index: 1 }, &Two).unwrap());
        assert_eq!(ce.unwrap().addr, 2);
        let ce = decode_get_ce_reply(&reply(CbRequest::GetCe { index: 0 }, &Two).unwrap());
        assert_eq!(ce.unwrap().length, 5);
        assert_eq!(reply(CbRequest::GetCe64 { index: 2 }, &Two), Err(1));
        assert_eq!(reply(CbRequest::GetCe64 { index: -1 }, &Two), Err(1));
        assert_eq!(reply(CbRequest::GetLock { index: -1 }, &Two), Err(1));
        let lock = reply(CbRequest::GetLock { index: 0 }, &Two).unwrap();
        assert_eq!(decode_get_lock_reply(&lock).unwrap().name, "only");
        assert_eq!(reply(CbRequest::GetLock { index: 1 }, &Two), Err(1));
        assert_eq!(
            decode_get_local_cell_reply(&reply(CbRequest::GetLocalCell, &Two).unwrap()).unwrap(),
            "here"
        );
        // A name that cannot be sent aborts as an rxgen stub would.
        assert_eq!(
            reply(CbRequest::GetCellServDb { index: 0 }, &Two),
            Err(RXGEN_SS_MARSHAL)
        );
        // The identity calls are answered as before.
        assert_eq!(
            respond_with(&CbRequest::Probe, &me, &Two),
            CbResponse::Reply(vec![])
        );
    }
}
