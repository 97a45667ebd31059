//! The wasmtime embedding: one [`Host`] (an AFS client, its cache manager and pager, a
//! wasmtime engine) runs many guests, each in its own store with its own
//! [`GuestConfig`] (grants, args, env, stdio). Guests share the host's page store: a
//! file mapped by ten guests is one copy in RAM.
//!
//! ```no_run
//! use afs_wasm_host::runtime::{GuestConfig, Host, HostConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let host = Host::new(HostConfig::default())?;
//! let guest = GuestConfig::new("reader.wasm")
//!     .grant("/afs/example.org/data:ro".parse()?)
//!     .arg("/afs/example.org/data/file");
//! let code = host.run_command(std::path::Path::new("reader.wasm"), guest)?;
//! # Ok(()) }
//! ```
//!
//! Configuration: [`HostConfig`], [`GuestConfig`], [`GuestLimits`] and [`Grant`] are
//! plain values taken by value, so their builder methods take and return `self` and a
//! configuration is one expression; their fields stay public for code that sets them
//! one at a time. [`WasmFeatures`] follows wasmtime's `Config` (`&mut self`).
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
mod stacks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use afs::cache::manager::CacheManager;
use afs::cache::pages::PageStoreConfig;
use afs::client::{Client, ClientConfig};
use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::afs_runtime::AfsRuntime;
use crate::pager::{OnUnreachable, Pager, PagerConfig};

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
/// is defined by hand (see [`MappingRes`]).
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

/// How to build a [`Host`]: which cells it talks to and as whom, how its pager and
/// page store behave, and how its engine compiles guests.
///
/// Start from [`HostConfig::default`] (the cells of `$AFS_CELLSERVDB` and
/// `$AFS_THISCELL`, else `/etc/openafs`; anonymous) and change what differs:
///
/// ```
/// use std::time::Duration;
/// use afs_wasm_host::pager::OnUnreachable;
/// use afs_wasm_host::runtime::{CodeCache, HostConfig, WasmFeature};
///
/// let config = HostConfig::default()
///     .cellservdb("/etc/openafs/CellServDB")
///     .thiscell("/etc/openafs/ThisCell")
///     .on_unreachable(OnUnreachable::Wait(Duration::from_secs(5)))
///     .page_cache_bytes(2 << 30)
///     .wasm_feature(WasmFeature::WideArithmetic, true)
///     .code_cache(CodeCache::Default);
/// assert_eq!(config.page_store.budget_bytes, 2 << 30);
/// assert_eq!(config.afs_threads, 2);
/// ```
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the cells are and how to talk to them (as the CLI's --cellservdb,
    /// --thiscell).
    pub client: ClientConfig,
    /// What a page fault does when no fileserver answers, and how stores are retried.
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
    /// A configuration with this client and pager, and the defaults for the rest (see
    /// the builder methods). [`HostConfig::default`] is this with the defaults of both.
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

    /// Replaces the whole AFS client configuration, for settings the other methods do
    /// not cover (the socket's address, Rx tuning, probes, promise bounds). Default:
    /// [`ClientConfig::default`].
    pub fn client(mut self, client: ClientConfig) -> Self {
        self.client = client;
        self
    }

    /// The CellServDB that says where each cell's database servers are, for a host that
    /// does not use the machine's. Default: `$AFS_CELLSERVDB`, else
    /// `/etc/openafs/CellServDB`.
    pub fn cellservdb(mut self, path: impl Into<PathBuf>) -> Self {
        self.client.cellservdb = Some(path.into());
        self
    }

    /// The ThisCell file naming the host's home cell (the default cell of relative
    /// paths). Default: `$AFS_THISCELL`, else `/etc/openafs/ThisCell`.
    pub fn thiscell(mut self, path: impl Into<PathBuf>) -> Self {
        self.client.thiscell = Some(path.into());
        self
    }

    /// Who the host is to the cells' servers: a token makes its calls authenticated, so
    /// guests see what that user may see. A guest can still run as someone else
    /// ([`GuestConfig::identity`]). Default: anonymous (`system:anyuser` rights only).
    pub fn identity(mut self, identity: afs::Identity) -> Self {
        self.client.identity = identity;
        self
    }

    /// Replaces the whole pager configuration (fault-around, expiry sweeps, and what
    /// [`HostConfig::on_unreachable`] and [`HostConfig::store_retry`] set). Default:
    /// [`PagerConfig::default`].
    pub fn pager(mut self, pager: PagerConfig) -> Self {
        self.pager = pager;
        self
    }

    /// What a guest's page fault does when no fileserver for the file answers: serve
    /// cached bytes (availability over freshness), trap at once (a request handler that
    /// would rather fail fast), or wait a while first. Default:
    /// [`OnUnreachable::Wait`] for 30 s.
    pub fn on_unreachable(mut self, policy: OnUnreachable) -> Self {
        self.pager.on_unreachable = policy;
        self
    }

    /// How long a store that failed because no fileserver answered is retried in the
    /// background before the guest's run fails naming the file: longer rides out a
    /// fileserver restart, shorter reports a lost write sooner. Default: 30 s.
    pub fn store_retry(mut self, bound: Duration) -> Self {
        self.pager.store_retry = bound;
        self
    }

    /// Replaces the whole page store configuration (fetch sizes, read-ahead, stores).
    /// Default: 2 MiB fetches, 8 in flight, read-ahead up to 32 MiB, and
    /// [`PageStoreConfig::default`] for the rest.
    pub fn page_store(mut self, page_store: PageStoreConfig) -> Self {
        self.page_store = page_store;
        self
    }

    /// Bytes of file pages the host keeps in RAM for all its guests before it evicts
    /// clean ones: raise it when guests map large files they come back to. Default:
    /// 512 MiB.
    pub fn page_cache_bytes(mut self, bytes: u64) -> Self {
        self.page_store.budget_bytes = bytes;
        self
    }

    /// The cell of paths that do not start with `/afs/` (in grants and directories),
    /// for a host that mostly serves another cell than the machine's. Default: the
    /// ThisCell cell.
    pub fn default_cell(mut self, cell: impl Into<String>) -> Self {
        self.default_cell = Some(cell.into());
        self
    }

    /// Worker threads of the AFS runtime (Rx, callbacks, fetches, stores); guests never
    /// run on them. Raise it for a host whose guests fetch from many fileservers at
    /// once. Default: 2.
    pub fn afs_threads(mut self, threads: usize) -> Self {
        self.afs_threads = threads;
        self
    }

    /// Turns one wasm proposal on or off over wasmtime 48's defaults, as
    /// `wasmtime run -W NAME=y|n` does; the last word on a feature wins. Default: as
    /// [`WasmFeature::default_enabled`] says.
    pub fn wasm_feature(mut self, feature: WasmFeature, enable: bool) -> Self {
        self.wasm_features.set(feature, enable);
        self
    }

    /// Replaces every wasm proposal setting at once (say, from parsed `-W` options).
    /// Default: none set, wasmtime 48's defaults.
    pub fn wasm_features(mut self, features: WasmFeatures) -> Self {
        self.wasm_features = features;
        self
    }

    /// Where compiled code is kept between processes: a short-lived process that runs
    /// the same guests again starts in milliseconds instead of compiling. Default:
    /// [`CodeCache::Off`], so an embedding writes nothing it was not told to.
    pub fn code_cache(mut self, cache: CodeCache) -> Self {
        self.code_cache = cache;
        self
    }
}

/// The cells of `$AFS_CELLSERVDB` and `$AFS_THISCELL` (else `/etc/openafs`), anonymous,
/// with the pager's and page store's defaults: `HostConfig::new(Default::default(),
/// Default::default())`.
impl Default for HostConfig {
    fn default() -> Self {
        HostConfig::new(ClientConfig::default(), PagerConfig::default())
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
///
/// Make one per process and share it (`Arc<Host>`): its guests then share one callback
/// service, one copy of each file's pages and one compiled copy of each component.
///
/// ```no_run
/// use std::sync::Arc;
/// use afs_wasm_host::runtime::{Access, GuestConfig, Host, HostConfig};
///
/// # fn main() -> anyhow::Result<()> {
/// let host = Arc::new(Host::new(HostConfig::default())?);
/// // Compile once, before the guests start: every run below finds it in the host.
/// host.load(std::path::Path::new("plugin.wasm"))?;
/// let file = "/afs/example.org/data/table";
/// let guest = GuestConfig::new("plugin")
///     .grant(host.grant(file, Access::Read)?)
///     .arg(file);
/// // Four guests at once, each on a thread of its own, all mapping one copy of the file.
/// let runs: Vec<_> = (0..4)
///     .map(|_| {
///         let (host, guest) = (host.clone(), guest.clone());
///         std::thread::spawn(move || host.run_command(std::path::Path::new("plugin.wasm"), guest))
///     })
///     .collect();
/// for run in runs {
///     println!("exit {}", run.join().expect("no panic")?);
/// }
/// println!("{} faults", host.pager().stats().faults());
/// # Ok(()) }
/// ```
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

    /// The AFS client, for the embedder's own AFS calls (it must run on
    /// [`Host::afs_runtime`]).
    pub fn client(&self) -> &Arc<Client> {
        &self.shared.client
    }

    /// The cache manager whose page store the guests share: its
    /// [`pages().stats()`](afs::cache::pages::PageStore::stats) say what was fetched,
    /// stored and kept.
    pub fn cache(&self) -> &Arc<CacheManager> {
        &self.shared.cache
    }

    /// The pager that serves the guests' page faults: its [`Pager::stats`] count
    /// faults, revalidations and zaps, and [`Pager::observe`] reports each
    /// revalidation.
    pub fn pager(&self) -> &Arc<Pager> {
        &self.shared.pager
    }

    /// The runtime AFS work runs on, for the embedder's own calls through
    /// [`Host::client`] or [`Host::cache`].
    pub fn afs_runtime(&self) -> &AfsRuntime {
        &self.shared.afs
    }

    /// The wasmtime engine every guest is compiled for.
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
