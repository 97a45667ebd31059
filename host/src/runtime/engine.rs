//! The wasmtime engine, the linker (WASI, our `wasi:filesystem`, our imports) and the
//! compiled-component cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use anyhow::Context;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::adapt;
use super::bindings::afs::client::files;
use super::code_cache::CodeCache;
use super::features::WasmFeatures;
use super::guest::GuestState;
use super::limits::EpochTicker;
use super::mmap;
use super::stacks::PooledStacks;
use crate::memory::HostMemoryCreator;
use crate::pager::origin;

/// Bytes reserved per guest memory: all of a 32-bit address space, so compiled code
/// needs no bounds checks (the guard region catches the rest) and the memory never
/// moves.
const MEMORY_RESERVATION: u64 = 1 << 32;
/// Guard region after each reservation: accesses with static offsets below it need no
/// bounds check either.
const MEMORY_GUARD: u64 = 32 << 20;

/// The engine configuration every guest runs with.
///
/// * Guest memories come from [`HostMemoryCreator`] (fixed base, whole reservation
///   mapped up front), so file pages can be mapped into them.
/// * `memory_init_cow(false)`: mandatory with a custom memory (wasmtime 48 panics at
///   instantiation otherwise); data segments are copied in at instantiation.
/// * Fiber stacks come from a pool of the engine's own (`PooledStacks`), which keeps them
///   for the next guest instead of mapping and unmapping one per store.
/// * Epoch interruption, for guests' time limits (see
///   [`GuestLimits::timeout`](super::GuestLimits::timeout)).
/// * Static bounds (4 GiB reservation + guard) and signals-based traps: an access to a
///   page the pager made inaccessible is a fault in wasm code, which wasmtime turns
///   into a trap (with a `WasmFault` we can explain) instead of a crash.
/// * Wasm proposals: wasmtime 48's defaults, then `features` (see [`WasmFeatures`]).
///
/// No code cache: [`Host::new`](super::Host::new) adds the host's ([`CodeCache`]).
pub fn engine_config(features: &WasmFeatures) -> Config {
    let mut config = Config::new();
    features.apply(&mut config);
    config
        .wasm_component_model(true)
        .with_host_memory(Arc::new(HostMemoryCreator))
        .with_host_stack(Arc::new(PooledStacks::default()))
        .memory_init_cow(false)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .memory_may_move(false)
        .signals_based_traps(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    config
}

/// A compiled component and the file state it was compiled from.
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    component: Component,
}

pub(crate) struct Engines {
    pub(crate) engine: Engine,
    pub(crate) ticker: EpochTicker,
    linker: OnceLock<Linker<GuestState>>,
    proxy_linker: OnceLock<Linker<GuestState>>,
    components: Mutex<HashMap<PathBuf, Cached>>,
}

impl Engines {
    pub(crate) fn new(features: &WasmFeatures, cache: &CodeCache) -> anyhow::Result<Self> {
        let mut config = engine_config(features);
        config.cache(cache.open());
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .with_context(|| match features.iter().count() {
                0 => "cannot configure wasmtime".to_string(),
                _ => format!("cannot configure wasmtime with the wasm features {features}"),
            })?;
        Ok(Engines {
            ticker: EpochTicker::new(engine.clone()),
            engine,
            linker: OnceLock::new(),
            proxy_linker: OnceLock::new(),
            components: Mutex::default(),
        })
    }

    /// The linker of commands, made on first use: WASI (async; `wasi:filesystem` ours,
    /// the rest wasmtime-wasi's) and our `afs:client` imports (sync: they run their
    /// blocking work on the AFS runtime).
    pub(crate) fn linker(&self) -> anyhow::Result<&Linker<GuestState>> {
        self.made(&self.linker, |_| Ok(()))
    }

    /// The linker for `wasi:http` handlers: the command linker's imports and
    /// `wasi:http` (types and outgoing-handler, which refuses; see [`super::http`]).
    pub(crate) fn proxy_linker(&self) -> anyhow::Result<&Linker<GuestState>> {
        self.made(&self.proxy_linker, |l| {
            Ok(wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?)
        })
    }

    /// The linker in `cell`, made on first use: WASI, `afs:client`, then `more`.
    fn made<'a>(
        &self,
        cell: &'a OnceLock<Linker<GuestState>>,
        more: impl FnOnce(&mut Linker<GuestState>) -> anyhow::Result<()>,
    ) -> anyhow::Result<&'a Linker<GuestState>> {
        if let Some(l) = cell.get() {
            return Ok(l);
        }
        let mut linker = Linker::new(&self.engine);
        crate::filesystem::add_to_linker(&mut linker)?;
        add_afs(&mut linker)?;
        more(&mut linker)?;
        Ok(cell.get_or_init(|| linker))
    }

    /// The component in `path` (or a wasm32-wasip1 module, adapted: see [`adapt`]),
    /// compiled once per file version.
    pub(crate) fn load_file(&self, path: &Path) -> anyhow::Result<Component> {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let (modified, len) = (meta.modified().ok(), meta.len());
        let mut cache = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.get(&key) {
            if c.modified == modified && modified.is_some() && c.len == len {
                return Ok(c.component.clone());
            }
        }
        // Compiling under the lock: guests of one file wait for one compilation.
        let component = std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| self.compile(&bytes))
            .with_context(|| format!("cannot load {}", path.display()))?;
        origin::register_code(component.image_range());
        cache.insert(
            key,
            Cached {
                modified,
                len,
                component: component.clone(),
            },
        );
        Ok(component)
    }

    pub(crate) fn load_bytes(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let component = self.compile(bytes).context("cannot load the guest")?;
        origin::register_code(component.image_range());
        Ok(component)
    }

    /// Compiles a component, or a wasm32-wasip1 module made one (or finds it in the
    /// code cache).
    fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let start = std::time::Instant::now();
        let wasm = adapt::component_bytes(bytes)?;
        let adapted = start.elapsed();
        let component = Component::new(&self.engine, &wasm).map_err(anyhow::Error::from)?;
        tracing::debug!(
            bytes = wasm.len(),
            adapt_ms = adapted.as_secs_f64() * 1e3,
            compile_ms = (start.elapsed() - adapted).as_secs_f64() * 1e3,
            "component ready (compiled, or found in the code cache)"
        );
        Ok(component)
    }
}

/// Our imports: `afs:client/files` from bindgen, `afs:client/mmap` by hand (the
/// bindgen version would copy the region list).
fn add_afs(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    files::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |s| s)?;
    mmap::add_to_linker(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store};

    use super::*;
    use crate::memory;

    const WAT: &str = r#"(module
        (memory (export "memory") 1 100)
        (data (i32.const 16) "hi")
        (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
        (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))"#;

    /// The engine runs modules in host memories: data segments copied in, growth in
    /// place, and out-of-bounds accesses trapping through the guard region with a
    /// fault we can read back.
    #[test]
    fn host_memories_grow_in_place_and_trap() {
        let engine = Engine::new(&engine_config(&WasmFeatures::default())).unwrap();
        let module = Module::new(&engine, WAT).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(super::super::limits::NO_DEADLINE);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let mem = instance.get_memory(&mut store, "memory").unwrap();
        let base = mem.data_ptr(&store) as usize;
        let info = memory::memory_containing(base).unwrap();
        assert_eq!((info.base, info.size), (base, 65536));
        assert_eq!(info.span as u64, MEMORY_RESERVATION + MEMORY_GUARD);

        let load = instance
            .get_typed_func::<i32, i32>(&mut store, "load")
            .unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(load.call(&mut store, 16).unwrap(), i32::from(b'h'));
        assert_eq!(grow.call(&mut store, 3).unwrap(), 1);
        assert_eq!(mem.data_ptr(&store) as usize, base);
        assert_eq!(memory::memory_containing(base).unwrap().size, 4 * 65536);

        let err = load.call(&mut store, 4 * 65536 + 8).unwrap_err();
        let fault = super::super::errors::wasm_fault(&err).expect("a memory fault");
        assert_eq!(fault.wasm_address, 4 * 65536 + 8);
        assert_eq!(fault.memory_size, 4 * 65536);
        drop(store);
        assert!(memory::memory_by_id(info.id).is_none());
    }
}
