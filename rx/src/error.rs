//! Errors of Rx calls.

use std::net::SocketAddr;
use std::time::Duration;

/// Abort codes defined by Rx itself (OpenAFS rx.h) and by rxgen stubs; services
/// use their own.
pub mod codes {
    /// Rx: the peer stopped responding.
    pub const RX_CALL_DEAD: i32 = -1;
    /// Rx: operation not valid in the call's state.
    pub const RX_INVALID_OPERATION: i32 = -2;
    /// Rx: the call exceeded its hard time limit.
    pub const RX_CALL_TIMEOUT: i32 = -3;
    /// Rx: unexpected end of data.
    pub const RX_EOF: i32 = -4;
    /// Rx: malformed packets.
    pub const RX_PROTOCOL_ERROR: i32 = -5;
    /// Rx: the application aborted the call without a specific code.
    pub const RX_USER_ABORT: i32 = -6;
    /// Rx: address in use.
    pub const RX_ADDRINUSE: i32 = -7;
    /// Rx: message too large.
    pub const RX_MSGSIZE: i32 = -8;
    /// Rx / fileserver (`VRESTARTING`): server is shutting down or restarting.
    pub const RX_RESTARTING: i32 = -100;
    /// Client stub failed to marshal arguments.
    pub const RXGEN_CC_MARSHAL: i32 = -450;
    /// Client stub failed to unmarshal results.
    pub const RXGEN_CC_UNMARSHAL: i32 = -451;
    /// Server stub failed to marshal results.
    pub const RXGEN_SS_MARSHAL: i32 = -452;
    /// Server stub failed to unmarshal arguments.
    pub const RXGEN_SS_UNMARSHAL: i32 = -453;
    /// Decode error.
    pub const RXGEN_DECODE: i32 = -454;
    /// The server does not implement this opcode.
    pub const RXGEN_OPCODE: i32 = -455;
    /// Server stub failed to free results.
    pub const RXGEN_SS_XDRFREE: i32 = -456;
    /// Client stub failed to free results.
    pub const RXGEN_CC_XDRFREE: i32 = -457;
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// The peer aborted the call with this code (an Rx code or the service's).
    #[error("call aborted by {peer} with code {code}")]
    Aborted { peer: SocketAddr, code: i32 },
    /// Nothing was heard from the peer within the dead time.
    #[error("server unreachable: {peer} (no answer for {}s)", .after.as_secs())]
    Dead { peer: SocketAddr, after: Duration },
    /// The peer said the channel is busy with another call.
    #[error("{peer} is busy")]
    Busy { peer: SocketAddr },
    /// The reply ended before the caller read what it expected.
    #[error("reply from {peer} ended early")]
    Eof { peer: SocketAddr },
    /// We aborted the call (dropped or cancelled).
    #[error("call cancelled locally (code {code})")]
    LocallyAborted { code: i32 },
    /// The endpoint was shut down.
    #[error("rx endpoint is shut down")]
    Shutdown,
    #[error("socket error: {0}")]
    Io(String),
    /// The reply went on past what the caller would hold in memory (a broken or
    /// hostile server); the call was aborted.
    #[error("reply from {peer} longer than {limit} bytes")]
    ReplyTooLong { peer: SocketAddr, limit: usize },
}

impl RxError {
    /// The abort code a peer sent, if the call was aborted remotely.
    pub fn abort_code(&self) -> Option<i32> {
        match self {
            RxError::Aborted { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the peer could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RxError::Dead { .. } | RxError::Io(_))
    }
}
