//! plugin-host: an embedding of afs-wasm, as short as it can be.
//!
//! ```text
//! plugin-host GUEST.wasm /afs/CELL/FILE [GUESTS]
//! ```
//!
//! One [`Host`] (one AFS client, one page store, one pager) runs GUESTS instances
//! (default 4) of a guest component at once, each on its own thread. Every guest may
//! read FILE and nothing else; `examples/plugin-guest` maps it and prints
//! `bytes=.. sum=.. dv=..`. All guests map the same pages of the host's page store: the
//! file is fetched and held in memory once, however many guests read it.
//!
//! The cell comes from `$AFS_CELLSERVDB` and `$AFS_THISCELL` (see testcell/).

use std::path::PathBuf;

use afs::client::ClientConfig;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Access, GuestConfig, Host, HostConfig};
use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(wasm), Some(file)) = (args.next().map(PathBuf::from), args.next()) else {
        bail!("usage: plugin-host GUEST.wasm /afs/CELL/FILE [GUESTS]");
    };
    let guests: usize = args.next().map_or(Ok(4), |n| n.parse()).context("GUESTS")?;

    // One host for all guests: it owns the AFS client and the shared page store.
    let host = Host::new(HostConfig::new(
        ClientConfig::default(),
        PagerConfig::default(),
    ))?;
    // Compile once; every run below finds the compiled component in the host's cache.
    host.load(&wasm)?;
    let grant = host.grant(&file, Access::Read)?;

    // Run the guests concurrently, each capturing its standard output.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..guests)
            .map(|i| {
                let mut guest = GuestConfig::new("plugin-guest")
                    .grant(grant.clone())
                    .arg(&file);
                guest.name = Some(format!("plugin-{i}"));
                let stdout = guest.capture_stdout(1 << 16);
                let (host, wasm) = (&host, &wasm);
                s.spawn(move || {
                    let code = host.run_command(wasm, guest);
                    (code, stdout.contents())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });

    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok((Ok(code), out)) => {
                let out = String::from_utf8_lossy(&out);
                println!("guest {i} (exit {code}): {}", out.trim_end());
            }
            Ok((Err(e), _)) => println!("guest {i} failed: {e:#}"),
            Err(_) => println!("guest {i} panicked"),
        }
    }

    // What the host's page store did for all of them together.
    let stats = host.cache().pages().stats().snapshot();
    println!(
        "page store: {} fetch calls, {} bytes fetched, {} pages present, {} cache hits",
        stats.fetch_calls, stats.bytes_fetched, stats.pages_present, stats.hits
    );
    host.shutdown();
    Ok(())
}
