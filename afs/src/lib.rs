//! AFS client protocols, independent of any transport.
//!
//! This crate holds the pure parts of an AFS client: XDR encoding, the
//! request/reply layouts of the fileserver (`RXAFS_*`), volume location
//! server (`VL_*`) and cache-manager callback (`RXAFSCB_*`) interfaces, the
//! on-the-wire directory format, CellServDB parsing and abort-code meanings.
//! Nothing here opens a socket; callers move the bytes over Rx.

pub mod cache;
pub mod callback;
pub mod cell;
pub mod client;
pub mod dir;
pub mod error;
pub mod fs;
pub mod path;
pub mod proto;
pub mod rpc;
pub mod types;
pub mod vl;
pub mod xdr;

pub use error::{AbortCode, ErrorKind};
pub use types::{CallBack, FetchStatus, Fid, FileType, StoreStatus, Uuid, VolSync};
