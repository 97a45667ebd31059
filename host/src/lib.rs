//! afs-wasm-host: runs wasm guests that map AFS files into their linear memory.
//!
//! A [`Host`](runtime::Host) is an AFS client (Rx, callbacks, a cache manager and its
//! page store), a pager and a wasmtime engine. Guests run on it with only the AFS paths
//! they were granted; the pages of a file are one copy in RAM for all of them, and a
//! callback break makes every guest's next access fault in fresh bytes.
//!
//! # Walkthrough
//!
//! **A host.** Make one per process, from a [`HostConfig`](runtime::HostConfig): its
//! defaults take the cells from `$AFS_CELLSERVDB` and `$AFS_THISCELL` (else
//! `/etc/openafs`) and talk to them anonymously; the builder methods change the rest.
//!
//! ```no_run
//! use afs_wasm_host::runtime::{CodeCache, Host, HostConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let host = Host::new(
//!     HostConfig::default()
//!         .cellservdb("/etc/openafs/CellServDB")
//!         .thiscell("/etc/openafs/ThisCell")
//!         .code_cache(CodeCache::Default),
//! )?;
//! println!("default cell: {:?}", host.default_cell());
//! # Ok(()) }
//! ```
//!
//! **A command guest.** A `wasi:cli/command` component (or a wasm32-wasip1 module) runs
//! to completion on the calling thread with [`Host::run_command`](runtime::Host::run_command)
//! (or on an async runtime with [`Host::run_command_async`](runtime::Host::run_command_async)).
//! A [`GuestConfig`](runtime::GuestConfig) says what it is given: here a read-only
//! [`Grant`](runtime::Grant) of one directory, an argument, and limits.
//!
//! ```no_run
//! # use afs_wasm_host::runtime::{Host, HostConfig};
//! use std::time::Duration;
//! use afs_wasm_host::runtime::{Access, GuestConfig, GuestLimits};
//!
//! # fn main() -> anyhow::Result<()> {
//! # let host = Host::new(HostConfig::default())?;
//! let guest = GuestConfig::new("mmap-reader")
//!     .grant(host.grant("/afs/example.org/data", Access::Read)?)
//!     .arg("/afs/example.org/data/counter")
//!     .limits(GuestLimits::default().timeout(Duration::from_secs(60)));
//! let code = host.run_command(std::path::Path::new("mmap-reader.wasm"), guest)?;
//! println!("the guest exited with {code}");
//! # Ok(()) }
//! ```
//!
//! **Serving HTTP.** A `wasi:http/incoming-handler` component becomes an
//! [`HttpHandler`](runtime::HttpHandler) with
//! [`Host::http_handler`](runtime::Host::http_handler); a server of your own then
//! hands it the requests it should answer, and each runs in a fresh instance with the
//! handler's configuration. Here every request of a hyper server goes to it (see
//! `examples/http-service` for a server that answers some routes itself):
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use afs_wasm_host::runtime::{Access, GuestConfig, Host, HostConfig};
//! use hyper::service::service_fn;
//! use hyper_util::rt::TokioIo;
//!
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! let host = Arc::new(Host::new(HostConfig::default())?);
//! let site = "/afs/example.org/site";
//! let guest = GuestConfig::new("afs-http")
//!     .inherit_stdio(false)
//!     .afs_dir(host.grant(&format!("{site}/data"), Access::Read)?, "/data")
//!     .grant(host.grant(site, Access::Read)?)
//!     .env("TEMPLATE", format!("{site}/template.html"));
//! let handler = Arc::new(host.http_handler(std::path::Path::new("afs-http.wasm"), guest)?);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let handler = handler.clone();
//!     let service = service_fn(move |request| {
//!         let handler = handler.clone();
//!         async move { Ok::<_, Infallible>(handler.handle(request).await) }
//!     });
//!     tokio::spawn(
//!         hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), service),
//!     );
//! }
//! # }
//! ```
//!
//! # Modules
//!
//! * [`afs_runtime`]: the cache manager's own tokio runtime, which guests can never block.
//! * [`filesystem`]: `wasi:filesystem` for unmodified guests, from AFS (through the
//!   cache manager and page store) or from local directories (through wasmtime-wasi).
//! * [`memory`]: guest linear memories the host owns (fixed base, full reservation), so
//!   file pages can be mapped into them.
//! * [`metrics`]: what a host has done (fileserver calls, breaks, faults, latencies), as
//!   metrics for an exporter such as Prometheus.
//! * [`pager`]: maps page-store memfds into guest memory, resolves the guest's page faults
//!   through userfaultfd (the revalidate hook), and strips mappings on callback breaks.
//! * [`runtime`]: the wasmtime embedding: engine, linker, WASI, the `afs:client` imports,
//!   per-guest grants.

pub mod afs_runtime;
pub mod filesystem;
pub mod memory;
pub mod metrics;
pub mod pager;
pub mod runtime;
mod uffd;
