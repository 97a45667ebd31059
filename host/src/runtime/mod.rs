//! The wasmtime embedding: one [`Host`] (an AFS client, its cache manager and pager, a
//! wasmtime engine) runs many guests, each in its own store with its own
//! [`GuestConfig`] (grants, args, env, stdio). Guests share the host's page store: a
//! file mapped by ten guests is one copy in RAM.
//!
//! ```no_run
//! use afs_wasm_host::runtime::{GuestConfig, Host, HostConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let host = Host::new(HostConfig::new(Default::default(), Default::default()))?;
//! let guest = GuestConfig::new("reader.wasm")
//!     .grant("/afs/example.org/data:ro".parse()?)
//!     .arg("/afs/example.org/data/file");
//! let code = host.run_command(std::path::Path::new("reader.wasm"), guest)?;
//! # Ok(()) }
//! ```
//!
//! Threads: AFS work (Rx, callbacks, fetches) runs on the host's own
//! [`AfsRuntime`]; guests run on the caller's thread ([`Host::run_command`]) or the
//! caller's async runtime ([`Host::run_command_async`]); page faults are resolved by the
//! pager's own thread. A guest blocked in a fault or a host call is never the thread
//! that would unblock it.

mod adapt;
mod code_cache;
mod command;
mod engine;
mod errors;
mod features;
mod files;
mod grants;
mod guest;
mod http;
mod limits;
mod mmap;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use afs::cache::manager::CacheManager;
use afs::cache::pages::PageStoreConfig;
use afs::client::{Client, ClientConfig};
use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::afs_runtime::AfsRuntime;
use crate::pager::{Pager, PagerConfig};

pub use self::adapt::component_bytes;
pub use self::code_cache::CodeCache;
pub use self::engine::engine_config;
pub use self::features::{FeatureError, WasmFeature, WasmFeatures};
pub use self::files::FileRes;
pub(crate) use self::grants::GrantWalk;
pub use self::grants::{granted, normalize, BadPath, Grant};
pub use self::guest::{CapturedOutput, GuestConfig};
pub(crate) use self::guest::{GuestState, PreopenKind};
pub use self::http::{plain, HttpHandler, NoOutgoingRequests, ResponseBody};
pub use self::limits::{parse_bytes, parse_duration, GuestLimits, TICK};
pub use self::mmap::MappingRes;
pub use crate::pager::Access;

/// Bindings of `wit/afs.wit` (world `guest`). Only `files` is linked from here: `mmap`
/// is defined by hand (see [`mmap`]).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "guest",
        imports: { default: trappable },
        with: {
            "afs:client/files.file": super::FileRes,
            "afs:client/files.mapping": super::MappingRes,
        },
    });
}

/// How to build a [`Host`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the cells are and how to talk to them (as the CLI's --cellservdb,
    /// --thiscell).
    pub client: ClientConfig,
    pub pager: PagerConfig,
    /// The page store every guest's files share.
    pub page_store: PageStoreConfig,
    /// The cell of paths that do not start with `/afs/` (default: ThisCell).
    pub default_cell: Option<String>,
    /// Worker threads of the AFS runtime.
    pub afs_threads: usize,
    /// Wasm proposals on or off over wasmtime's defaults (`wasmtime run -W NAME`).
    pub wasm_features: WasmFeatures,
    /// Where compiled code is kept between processes (default: nowhere; `afs-wasm run`
    /// uses [`CodeCache::Default`]).
    pub code_cache: CodeCache,
}

impl HostConfig {
    pub fn new(client: ClientConfig, pager: PagerConfig) -> Self {
        HostConfig {
            client,
            pager,
            // Guests scan mapped files: large fetches, generous read-ahead.
            page_store: PageStoreConfig {
                chunk_bytes: 2 << 20,
                max_fetches_in_flight: 8,
                readahead_max_bytes: 32 << 20,
                ..PageStoreConfig::default()
            },
            default_cell: None,
            afs_threads: 2,
            wasm_features: WasmFeatures::default(),
            code_cache: CodeCache::Off,
        }
    }
}

/// What every guest's store refers to.
pub(crate) struct Shared {
    pub(crate) pager: Arc<Pager>,
    pub(crate) cache: Arc<CacheManager>,
    pub(crate) client: Arc<Client>,
    pub(crate) default_cell: Option<String>,
    /// Last, so it outlives what runs on it (see `Drop`). Shared with the identity views.
    pub(crate) afs: Arc<AfsRuntimeCell>,
}

impl Shared {
    /// The same host (pager, page store, callbacks, runtime) as another identity: the
    /// client and cache manager a guest with its own token uses.
    pub(crate) fn as_identity(&self, identity: afs::Identity) -> Arc<Shared> {
        let cache = Arc::new(self.cache.as_identity(identity));
        Arc::new(Shared {
            pager: self.pager.clone(),
            client: cache.client().clone(),
            cache,
            default_cell: self.default_cell.clone(),
            afs: self.afs.clone(),
        })
    }
}

/// The AFS runtime, dropped where dropping a runtime is allowed.
pub(crate) struct AfsRuntimeCell(Option<AfsRuntime>);

impl std::ops::Deref for AfsRuntimeCell {
    type Target = AfsRuntime;
    fn deref(&self) -> &AfsRuntime {
        self.0
            .as_ref()
            .expect("the AFS runtime lives as long as the host")
    }
}

impl Drop for AfsRuntimeCell {
    fn drop(&mut self) {
        // tokio refuses to drop a runtime from inside another one (an embedder dropping
        // the host in an async task): hand it to a plain thread then.
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("afs-shutdown".into())
                    .spawn(move || drop(rt));
            }
        }
    }
}

/// An afs-wasm host: an AFS client with its cache and pager, and a wasmtime engine.
/// Run any number of guests on it, from any threads.
pub struct Host {
    shared: Arc<Shared>,
    engines: engine::Engines,
}

/// A guest (a component or a wasm32-wasip1 module): a file (compiled once per version
/// and cached) or bytes.
#[derive(Debug, Clone, Copy)]
pub enum Wasm<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl<'a> From<&'a Path> for Wasm<'a> {
    fn from(p: &'a Path) -> Self {
        Wasm::File(p)
    }
}

impl<'a> From<&'a PathBuf> for Wasm<'a> {
    fn from(p: &'a PathBuf) -> Self {
        Wasm::File(p)
    }
}

impl<'a> From<&'a [u8]> for Wasm<'a> {
    fn from(b: &'a [u8]) -> Self {
        Wasm::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Wasm<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Wasm::Bytes(b)
    }
}

impl Host {
    /// Starts the AFS runtime and client (binds its socket, starts the callback
    /// service), the cache manager, the pager and the engine. Call it from any thread.
    pub fn new(config: HostConfig) -> anyhow::Result<Host> {
        // First: a bad wasm feature set fails before any socket is bound.
        let engines = engine::Engines::new(&config.wasm_features, &config.code_cache)?;
        let afs = AfsRuntime::new(config.afs_threads).context("cannot start the AFS runtime")?;
        let client = afs
            .block_on(Client::new(config.client))
            .context("the AFS runtime stopped")?
            .context("cannot start the AFS client")?;
        let client = Arc::new(client);
        let cache = Arc::new(CacheManager::new(client.clone(), config.page_store));
        let pager = Pager::new(cache.clone(), afs.handle().clone(), config.pager)
            .context("cannot start the pager")?;
        let default_cell = config
            .default_cell
            .or_else(|| client.this_cell().map(str::to_string));
        Ok(Host {
            shared: Arc::new(Shared {
                pager,
                cache,
                client,
                default_cell,
                afs: Arc::new(AfsRuntimeCell(Some(afs))),
            }),
            engines,
        })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.shared.client
    }

    pub fn cache(&self) -> &Arc<CacheManager> {
        &self.shared.cache
    }

    pub fn pager(&self) -> &Arc<Pager> {
        &self.shared.pager
    }

    pub fn afs_runtime(&self) -> &AfsRuntime {
        &self.shared.afs
    }

    pub fn engine(&self) -> &Engine {
        &self.engines.engine
    }

    /// The cell of paths that do not start with `/afs/`.
    pub fn default_cell(&self) -> Option<&str> {
        self.shared.default_cell.as_deref()
    }

    /// A grant of `prefix` (absolute, or relative to the default cell).
    pub fn grant(&self, prefix: &str, access: Access) -> Result<Grant, BadPath> {
        Grant::new(prefix, access, self.default_cell())
    }

    /// Compiles (or finds in the in-process or on-disk cache) a guest: a component, or a
    /// wasm32-wasip1 core module, which is made a `wasi:cli/command` component with the
    /// WASI preview1 command adapter first, as `wasmtime run` accepts both.
    pub fn load<'a>(&self, wasm: impl Into<Wasm<'a>>) -> anyhow::Result<Component> {
        match wasm.into() {
            Wasm::File(p) => self.engines.load_file(p),
            Wasm::Bytes(b) => self.engines.load_bytes(b),
        }
    }

    /// Tells the fileservers we no longer want callbacks (they stop tracking us at
    /// once) and stops the AFS runtime. Dropping the host also stops it, silently.
    pub fn shutdown(self) {
        let client = self.shared.client.clone();
        let _ = self
            .shared
            .afs
            .block_on(async move { client.give_up_callbacks().await });
    }
}
