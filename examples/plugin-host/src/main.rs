//! plugin-host: an embedding of afs-wasm, as short as it can be.
//!
//! ```text
//! plugin-host [--async] GUEST.wasm /afs/CELL/FILE [GUESTS]
//! ```
//!
//! One [`Host`] (one AFS client, one page store, one pager) runs GUESTS instances
//! (default 4) of a guest component at once, each on its own thread. Every guest may
//! read FILE and nothing else; `examples/plugin-guest` maps it and prints
//! `bytes=.. sum=.. dv=..`. All guests map the same pages of the host's page store: the
//! file is fetched and held in memory once, however many guests read it.
//!
//! With `--async` the guests are tasks on a tokio runtime instead
//! ([`Host::run_command_async`]), as in an embedder that is async already.
//!
//! The cell comes from `$AFS_CELLSERVDB` and `$AFS_THISCELL` (see testcell/).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use afs::client::ClientConfig;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Access, CapturedOutput, GuestConfig, Host, HostConfig};
use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: plugin-host [--async] GUEST.wasm /afs/CELL/FILE [GUESTS]";

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let use_async = args.first().is_some_and(|a| a == "--async");
    if use_async {
        args.remove(0);
    }
    let (wasm, file) = match &args[..] {
        [wasm, file, ..] => (PathBuf::from(wasm), file.clone()),
        _ => bail!(USAGE),
    };
    let guests: usize = args.get(2).map_or(Ok(4), |n| n.parse()).context(USAGE)?;

    // One host for all guests: it owns the AFS client and the shared page store.
    let host = Arc::new(Host::new(HostConfig::new(
        ClientConfig::default(),
        PagerConfig::default(),
    ))?);
    // Compile once; every run below finds the compiled component in the host's cache.
    host.load(&wasm)?;

    // Each guest may read FILE and nothing else; its standard output is captured.
    let grant = host.grant(&file, Access::Read)?;
    let (configs, outputs): (Vec<_>, Vec<_>) = (0..guests)
        .map(|i| {
            let mut guest = GuestConfig::new("plugin-guest")
                .grant(grant.clone())
                .arg(&file);
            guest.name = Some(format!("plugin-{i}"));
            let stdout = guest.capture_stdout(1 << 16);
            (guest, stdout)
        })
        .unzip();

    let codes = if use_async {
        run_as_tasks(&host, &wasm, configs)
    } else {
        run_on_threads(&host, &wasm, configs)
    };
    report(codes, &outputs);

    // What the host's page store did for all of them together.
    let stats = host.cache().pages().stats().snapshot();
    println!(
        "page store: {} fetch calls, {} bytes fetched, {} pages present, {} cache hits",
        stats.fetch_calls, stats.bytes_fetched, stats.pages_present, stats.hits
    );
    if let Ok(host) = Arc::try_unwrap(host) {
        host.shutdown();
    }
    Ok(())
}

/// Each guest on a thread of its own, with the sync API.
fn run_on_threads(host: &Host, wasm: &Path, guests: Vec<GuestConfig>) -> Vec<Result<i32>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = guests
            .into_iter()
            .map(|guest| s.spawn(move || host.run_command(wasm, guest)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("panicked")))
            .collect()
    })
}

/// Each guest a task on a tokio runtime, with the async API.
fn run_as_tasks(host: &Arc<Host>, wasm: &Path, guests: Vec<GuestConfig>) -> Vec<Result<i32>> {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = guests
            .into_iter()
            .map(|guest| {
                let (host, wasm) = (host.clone(), wasm.to_path_buf());
                tokio::spawn(async move { host.run_command_async(&wasm, guest).await })
            })
            .collect();
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap_or_else(|e| bail!("task failed: {e}")));
        }
        codes
    })
}

fn report(codes: Vec<Result<i32>>, outputs: &[CapturedOutput]) {
    for (i, (code, out)) in codes.into_iter().zip(outputs).enumerate() {
        let out = String::from_utf8_lossy(&out.contents())
            .trim_end()
            .to_string();
        match code {
            Ok(code) => println!("guest {i} (exit {code}): {out}"),
            Err(e) => println!("guest {i} failed: {e:#}"),
        }
    }
}
