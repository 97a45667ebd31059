//! The AFS client: VL and FS calls over Rx, the callback service, path
//! resolution and the cache manager.
//!
//! The pure protocol parts (XDR, the RXAFS/VL/RXAFSCB layouts, the directory
//! format, CellServDB parsing and abort-code meanings) live in the I/O-free
//! `afs-proto` crate and are re-exported here under their old paths
//! (`afs::xdr`, `afs::types`, `afs::proto`, `afs::dir`, `afs::cell`,
//! `afs::error`).

pub mod cache;
pub mod callback;
pub mod client;
pub mod fs;
pub mod identity;
pub mod path;
pub mod rpc;
pub mod vl;

pub use afs_proto::{cell, dir, error, proto, types, xdr};

pub use error::{AbortCode, ErrorKind};
pub use identity::Identity;
pub use types::{CallBack, FetchStatus, Fid, FileType, StoreStatus, Uuid, VolSync};

#[cfg(test)]
mod tests {
    use rx::error::codes as rx;

    use crate::error as afs;

    /// `afs_proto::error` repeats the Rx and rxgen codes so it need not depend on
    /// Rx; they must stay equal to the transport's.
    #[test]
    fn rx_codes_agree_with_rx() {
        let pairs = [
            (afs::RX_CALL_DEAD, rx::RX_CALL_DEAD),
            (afs::RX_INVALID_OPERATION, rx::RX_INVALID_OPERATION),
            (afs::RX_CALL_TIMEOUT, rx::RX_CALL_TIMEOUT),
            (afs::RX_EOF, rx::RX_EOF),
            (afs::RX_PROTOCOL_ERROR, rx::RX_PROTOCOL_ERROR),
            (afs::RX_USER_ABORT, rx::RX_USER_ABORT),
            (afs::RX_ADDRINUSE, rx::RX_ADDRINUSE),
            (afs::RX_MSGSIZE, rx::RX_MSGSIZE),
            (afs::RX_RESTARTING, rx::RX_RESTARTING),
            (afs::RXGEN_CC_MARSHAL, rx::RXGEN_CC_MARSHAL),
            (afs::RXGEN_CC_UNMARSHAL, rx::RXGEN_CC_UNMARSHAL),
            (afs::RXGEN_SS_MARSHAL, rx::RXGEN_SS_MARSHAL),
            (afs::RXGEN_SS_UNMARSHAL, rx::RXGEN_SS_UNMARSHAL),
            (afs::RXGEN_DECODE, rx::RXGEN_DECODE),
            (afs::RXGEN_OPCODE, rx::RXGEN_OPCODE),
            (afs::RXGEN_SS_XDRFREE, rx::RXGEN_SS_XDRFREE),
            (afs::RXGEN_CC_XDRFREE, rx::RXGEN_CC_XDRFREE),
            (afs::RXKADEXPIRED, ::rx::rxkad::codes::RXKADEXPIRED),
            (afs::RXKADSEALEDINCON, ::rx::rxkad::codes::RXKADSEALEDINCON),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs);
        }
    }
}
