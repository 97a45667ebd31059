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
//! The debugging calls `cmdebug` makes are in `debug` (see [`respond_with`]).

mod debug;
#[cfg(test)]
mod tests;

use super::{decode_whole, request};

use crate::types::{CallBack, Capabilities, Fid, InterfaceAddr, Uuid, AFS_CB_MAX};
use crate::xdr::{Encoder, XdrError};

pub use debug::*;

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
