//! The AFS protocol with no I/O: codecs and formats only.
//!
//! This crate holds the parts of an AFS client that are pure functions of
//! bytes, split from the `afs` crate the way `quinn-proto` is split from
//! `quinn`: XDR encoding ([`xdr`]), the shared wire types ([`types`]), the
//! request/reply layouts of the fileserver (`RXAFS_*`), volume location
//! server (`VL_*`) and cache-manager callback (`RXAFSCB_*`) interfaces
//! ([`proto`]), the on-the-wire directory format ([`dir`]), CellServDB
//! parsing ([`cell`]) and abort-code meanings ([`error`]).
//!
//! Nothing here opens a socket, spawns a task or depends on Rx, tokio or an
//! OS interface crate (the only I/O is [`cell`]'s loaders reading the
//! configuration files with blocking `std::fs`), so the same code serves the client (`afs`, which re-exports every module
//! under its old path), the fuzz targets, and a scripted fileserver in
//! simulation tests, none of which need a network to exercise it.

#![forbid(unsafe_code)]

pub mod cell;
pub mod dir;
pub mod error;
pub mod proto;
pub mod types;
pub mod xdr;

pub use error::{AbortCode, ErrorKind};
pub use types::{CallBack, FetchStatus, Fid, FileType, StoreStatus, Uuid, VolSync};
