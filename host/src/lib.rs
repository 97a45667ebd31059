//! afs-wasm-host: runs wasm guests that map AFS files into their linear memory.
//!
//! * [`afs_runtime`]: the cache manager's own tokio runtime, which guests can never block.
//! * [`filesystem`]: `wasi:filesystem` for unmodified guests, from AFS (through the
//!   cache manager and page store) or from local directories (through wasmtime-wasi).
//! * [`memory`]: guest linear memories the host owns (fixed base, full reservation), so
//!   file pages can be mapped into them.
//! * [`metrics`]: the host's counters and latency histograms (faults, revalidations,
//!   changes), for Prometheus.
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
