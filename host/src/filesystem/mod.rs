//! `wasi:filesystem` for unmodified guests (`std::fs`, `fopen`, ...): directories
//! preopened with `--dir` are served from AFS through the cache manager and the page
//! store, with AFS's coherence, or from the local disk by wasmtime-wasi.
//!
//! wasmtime-wasi 48 has no filesystem backend hook (see ../shared/wasi-fs.md), so the
//! host binds `wasi:filesystem` itself ([`bindings`]) and links every other WASI
//! interface from wasmtime-wasi (`add_to_linker`). A guest's descriptors are ours
//! ([`Descriptor`]): an AFS file or directory, or a wasmtime-wasi descriptor of a local
//! directory in the same resource table, to which every call is handed on unchanged
//! (`local`), so local directories behave exactly as under `wasmtime run`.
//!
//! AFS semantics, as an AFS client gives them to processes:
//! - an open, a stat and every read revalidate (no network while the file's callback
//!   promise holds), so a long-lived handle reads fresh bytes after a callback break;
//! - written bytes go to the page store and are stored at close or sync
//!   (store-on-close);
//! - directory listings and lookups read the directory again when its data version
//!   moved (a break revokes the promise; the next status brings the new version);
//! - files read through a handle and files mapped by `afs-guest` are the same pages.
//!
//! Paths are resolved from the preopen the descriptor descends from, lexically, and
//! confined by the preopen's grant ([`crate::runtime::Grant`]): `..` never leads above
//! the preopen, and a symlink leading out of it is refused, with the codes wasmtime-wasi
//! gives for the same escapes on a local directory (`not-permitted`).

pub mod bindings;
mod convert;
mod descriptor;
mod errors;
mod on_afs;
mod paths;
mod preopens;
mod streams;

use std::sync::Arc;

use wasmtime::component::{HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::WasiView;

use crate::runtime::GuestState;

pub use self::errors::FsError;
pub use self::on_afs::{AfsDescriptor, AfsListing};
pub use self::preopens::{AfsPreopen, DirArg};

/// A guest's descriptor: of AFS, or of a local directory tree (a wasmtime-wasi
/// descriptor in the same table, which every call is handed on to).
pub enum Descriptor {
    Afs(Arc<AfsDescriptor>),
    Local(Resource<wasmtime_wasi::filesystem::Descriptor>),
}

/// A directory listing in progress.
pub enum DirectoryStream {
    Afs(AfsListing),
    Local(Resource<wasmtime_wasi::p2::ReaddirIterator>),
}

/// `wasi:io` is served from the guest's resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds every WASI 0.2 interface to `linker`: `wasi:filesystem` from here, the rest
/// from wasmtime-wasi (as its `add_to_linker_async` does, filesystem aside).
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    type T = GuestState;
    let l = linker;
    use wasmtime_wasi_io::bindings::wasi::io::{error, poll, streams};
    error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    bindings::wasi::filesystem::types::add_to_linker::<T, HasSelf<T>>(l, |s| s)?;
    bindings::wasi::filesystem::preopens::add_to_linker::<T, HasSelf<T>>(l, |s| s)?;
    wasi::clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    wasi::random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    wasi::random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    wasi::random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    wasi::cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasi::sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasi::sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasi::sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasi::sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasi::sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    wasi::sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    Ok(())
}
