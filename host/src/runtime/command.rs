//! Running command guests (`wasi:cli/command`): sync on the caller's thread, or async
//! on the caller's runtime.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::I32Exit;

use super::errors::explain_trap;
use super::guest::{GuestConfig, GuestState};
use super::limits::{self, Ticking};
use super::{Host, Wasm};

/// Numbers guests in logs.
static GUEST_IDS: AtomicU64 = AtomicU64::new(1);

fn span(config: &GuestConfig) -> tracing::Span {
    let id = GUEST_IDS.fetch_add(1, Ordering::Relaxed);
    tracing::info_span!("guest", id, name = %config.display_name())
}

impl Host {
    /// Runs a command guest to completion on this thread and returns its exit code
    /// (0 when `run` returns ok, 1 when it returns an error, N for `exit(N)`). A trap is
    /// an error; when the pager caused it (a write to a read-only mapping, an
    /// unreachable server), the error says so and names the file.
    ///
    /// It drives [`Host::run_command_async`] on a runtime of its own, so do not call
    /// it from inside an async runtime: use [`Host::run_command_async`] there.
    pub fn run_command<'a>(
        &self,
        wasm: impl Into<Wasm<'a>>,
        config: GuestConfig,
    ) -> anyhow::Result<i32> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the guest's runtime")?;
        runtime.block_on(self.run_command_async(wasm, config))
    }

    /// Runs a command guest on the caller's async runtime. WASI is async (AFS work
    /// runs on the host's own runtime, so the caller's runtime cannot starve it); our
    /// `afs:client` imports and syncs still block the calling thread while they wait
    /// for AFS, and page faults block too: run many guests on a multi-threaded
    /// runtime, or on `spawn_blocking` threads with [`Host::run_command`].
    pub async fn run_command_async<'a>(
        &self,
        wasm: impl Into<Wasm<'a>>,
        config: GuestConfig,
    ) -> anyhow::Result<i32> {
        let span = span(&config);
        let wasm = wasm.into();
        async move {
            let component = self.load(wasm)?;
            let linker = self.engines.linker()?;
            let (mut store, _ticking) = self.store(&config)?;
            store
                .data_mut()
                .open_preopens()
                .await
                .map_err(anyhow::Error::from)?;
            let command = Command::instantiate_async(&mut store, &component, linker)
                .await
                .map_err(anyhow::Error::from)
                .context("cannot instantiate the guest")?;
            let result = command.wasi_cli_run().call_run(&mut store).await;
            self.finish(&mut store, result)
        }
        .instrument(span)
        .await
    }

    /// A store for one guest run, with the call hook the pager needs and the guest's
    /// limits; with a timeout, the epoch ticker runs while the guard lives.
    pub(super) fn store(
        &self,
        config: &GuestConfig,
    ) -> anyhow::Result<(Store<GuestState>, Option<Ticking>)> {
        let mut store = Store::new(
            &self.engines.engine,
            GuestState::new(self.shared.clone(), config)?,
        );
        store.call_hook(take_back_lent_pages);
        store.limiter(|s| &mut s.limiter);
        // wasmtime charges every list a guest passes (even a region to map, which is
        // never copied) against this; our own limits say what is too much.
        let lists = config
            .limits
            .max_copy_bytes
            .max(config.limits.max_mapped_bytes);
        store.set_hostcall_fuel(
            usize::try_from(lists.saturating_add(1 << 20)).unwrap_or(usize::MAX),
        );
        let ticking = match config.limits.timeout {
            Some(t) => {
                store.set_epoch_deadline(limits::ticks(t));
                let guard = self.engines.ticker.start();
                Some(guard.context("cannot start the epoch ticker")?)
            }
            None => {
                store.set_epoch_deadline(limits::NO_DEADLINE);
                None
            }
        };
        Ok((store, ticking))
    }

    /// The exit code of a finished guest, or its trap explained; then unmaps what the
    /// guest left mapped and stores what it wrote (store-on-close), while its memory
    /// still exists. A store that fails makes the run fail, naming the file.
    pub(super) fn finish(
        &self,
        store: &mut Store<GuestState>,
        result: wasmtime::Result<Result<(), ()>>,
    ) -> anyhow::Result<i32> {
        let outcome = match result {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => {
                    let state = store.data();
                    let limit = limit_reached(&e, state);
                    let bases = state.afs.memory_bases.clone();
                    let e = explain_trap(e, &self.shared.pager, &bases);
                    Err(match limit {
                        Some(why) => e.context(why),
                        None => e,
                    })
                }
            },
        };
        store.data_mut().unmap_all();
        let unstored = store.data_mut().afs.finish_stores();
        match &outcome {
            Ok(code) => tracing::debug!(code, "guest exited"),
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "guest trapped"),
        }
        if unstored.is_empty() {
            return outcome;
        }
        // Data the guest wrote is lost: that fails the run, whatever the guest said.
        let lost = unstored.join("\n");
        Err(match outcome {
            Ok(code) => anyhow::anyhow!("{lost}\n(the guest itself exited with {code})"),
            Err(e) => e.context(lost),
        })
    }
}

/// The limit a trapped guest ran into, in words: its time ran out (an epoch
/// interrupt), or it was denied memory or table growth before it trapped.
fn limit_reached(e: &wasmtime::Error, state: &GuestState) -> Option<String> {
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        if let Some(t) = state.limiter.limits.timeout {
            return Some(format!(
                "the guest ran past its time limit of {t:?} (-W timeout)"
            ));
        }
    }
    if e.chain()
        .any(|c| c.to_string().contains("fuel allocated for hostcalls"))
    {
        let l = &state.limiter.limits;
        return Some(format!(
            "the guest passed the host a list longer than its limits allow ({} bytes by copy, \
             --max-copy-bytes; {} bytes mapped, --max-mapped-bytes)",
            l.max_copy_bytes, l.max_mapped_bytes
        ));
    }
    state.limiter.explain()
}

/// As each host call returns, the pager takes back pages it lent to host code (see
/// [`crate::pager::Pager::after_host_call`]), before the guest runs again; a host write
/// into a read-only mapping traps here, with the message that says so.
fn take_back_lent_pages(
    store: wasmtime::StoreContextMut<'_, GuestState>,
    hook: wasmtime::CallHook,
) -> wasmtime::Result<()> {
    if !matches!(hook, wasmtime::CallHook::ReturningFromHost) {
        return Ok(());
    }
    let afs = &store.data().afs;
    afs.host
        .pager
        .after_host_call(&afs.memory_bases)
        .map_err(wasmtime::Error::msg)
}
