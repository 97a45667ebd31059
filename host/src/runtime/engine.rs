//! The wasmtime engine, the linkers (sync and async WASI, plus our imports) and the
//! compiled-component cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use anyhow::Context;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::afs::client::files;
use super::guest::GuestState;
use super::limits::EpochTicker;
use super::mmap;
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
/// * Epoch interruption, for guests' time limits (see [`super::limits`]).
/// * Static bounds (4 GiB reservation + guard) and signals-based traps: an access to a
///   page the pager made inaccessible is a fault in wasm code, which wasmtime turns
///   into a trap (with a `WasmFault` we can explain) instead of a crash.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .with_host_memory(Arc::new(HostMemoryCreator))
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
    sync_linker: OnceLock<Linker<GuestState>>,
    async_linker: OnceLock<Linker<GuestState>>,
    components: Mutex<HashMap<PathBuf, Cached>>,
}

impl Engines {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("cannot configure wasmtime")?;
        Ok(Engines {
            ticker: EpochTicker::new(engine.clone()),
            engine,
            sync_linker: OnceLock::new(),
            async_linker: OnceLock::new(),
            components: Mutex::default(),
        })
    }

    /// The linker for [`wasmtime_wasi::p2::bindings::sync::Command`]s.
    pub(crate) fn sync_linker(&self) -> anyhow::Result<&Linker<GuestState>> {
        self.linker(&self.sync_linker, wasmtime_wasi::p2::add_to_linker_sync)
    }

    /// The linker for async instantiation (WASI async; our imports are sync and run
    /// their blocking work on the AFS runtime).
    pub(crate) fn async_linker(&self) -> anyhow::Result<&Linker<GuestState>> {
        self.linker(&self.async_linker, wasmtime_wasi::p2::add_to_linker_async)
    }

    /// The linker in `cell`, made on first use: WASI (as `add_wasi` adds it) and ours.
    fn linker<'a>(
        &self,
        cell: &'a OnceLock<Linker<GuestState>>,
        add_wasi: fn(&mut Linker<GuestState>) -> wasmtime::Result<()>,
    ) -> anyhow::Result<&'a Linker<GuestState>> {
        if let Some(l) = cell.get() {
            return Ok(l);
        }
        let mut linker = Linker::new(&self.engine);
        add_wasi(&mut linker)?;
        add_afs(&mut linker)?;
        Ok(cell.get_or_init(|| linker))
    }

    /// The component in `path`, compiled once per file version.
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
        let component = Component::from_file(&self.engine, path)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot load the component {}", path.display()))?;
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
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("cannot load the component")?;
        origin::register_code(component.image_range());
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
        let engine = Engine::new(&engine_config()).unwrap();
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
