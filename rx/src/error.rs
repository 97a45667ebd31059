//! Errors of Rx calls.

use std::net::SocketAddr;
use std::time::Duration;

/// Abort codes defined by Rx itself (OpenAFS rx.h); services use their own.
pub mod codes {
    pub const RX_CALL_DEAD: i32 = -1;
    pub const RX_INVALID_OPERATION: i32 = -2;
    pub const RX_CALL_TIMEOUT: i32 = -3;
    pub const RX_EOF: i32 = -4;
    pub const RX_PROTOCOL_ERROR: i32 = -5;
    pub const RX_USER_ABORT: i32 = -6;
    pub const RX_RESTARTING: i32 = -100;
    /// The called service does not implement the requested operation (rxgen).
    pub const RXGEN_OPCODE: i32 = -455;
    /// The request's arguments could not be decoded (rxgen).
    pub const RXGEN_SS_UNMARSHAL: i32 = -451;
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
