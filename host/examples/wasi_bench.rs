//! The WASI filesystem benchmark, one run against the test cell (testcell/bench.sh runs
//! it with `BENCH=wasi`), each figure side by side with its peer, as a ratio:
//!
//! * a guest's sequential `std::fs::read` of an AFS file (`afs-wasm run --dir`, a fresh
//!   process, so a cold cache) against `afs-wasm cat` of the same file (also a fresh
//!   process): both fetch through the page store;
//! * the cached re-read, in the same guest, against the same guest reading the same bytes
//!   from a local tmpfs file through stock wasmtime-wasi (in this process);
//! * open and stat of 1,000 cached files, against the same on tmpfs;
//! * a large program's start-up (`BENCH_PROGRAM`, e.g. ripgrep: `--version`): its first
//!   run (compiling), and its second (compiled code from the on-disk cache).
//!
//! Usage: `wasi_bench AFS_DIR MIB` (the cell's env must be in the environment:
//! AFS_CELLSERVDB, AFS_THISCELL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::client::{Client, ClientConfig};
use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Files of the stat benchmark.
const STAT_FILES: usize = 1000;
/// Rounds of each cold measurement (the median is reported).
const ROUNDS: usize = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn afs_wasm() -> Command {
    let mut c = Command::new(repo().join("target/release/afs-wasm"));
    c.stdin(Stdio::null());
    c
}

fn suite() -> PathBuf {
    repo().join("target/wasm32-wasip2/release/fs-suite.wasm")
}

/// Runs a command to its end; its stdout and stderr, and how long it took.
fn timed(cmd: &mut Command) -> Result<(Vec<u8>, String, Duration)> {
    let t = Instant::now();
    let out = cmd.output().context("run a command")?;
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("{cmd:?} failed: {err}");
    }
    Ok((out.stdout, err, took))
}

/// The values of `KEY I MS` lines in a guest's stderr, by I.
fn ms_lines(stderr: &str, key: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(key))
        .filter_map(|rest| rest.split_whitespace().last()?.parse().ok())
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

struct Stock {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Stock {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Runs fs-suite with `dir` preopened as `/data` through stock wasmtime-wasi (one
/// engine for all runs, as a host would keep it); its stderr.
fn stock(
    engine: &wasmtime::Engine,
    component: &Component,
    dir: &Path,
    args: &[&str],
) -> Result<String> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut argv = vec!["fs-suite.wasm".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let ctx = WasiCtxBuilder::new()
        .args(&argv)
        .stderr(stderr.clone())
        .preopened_dir(dir, "/data", FsPerms::ReadOnly)?
        .build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut store = wasmtime::Store::new(
            engine,
            Stock {
                ctx,
                table: ResourceTable::new(),
            },
        );
        let cmd = WasiCommand::instantiate_async(&mut store, component, &linker).await?;
        match cmd.wasi_cli_run().call_run(&mut store).await? {
            Ok(()) => Ok(()),
            Err(()) => bail!("the guest failed"),
        }
    })?;
    Ok(String::from_utf8_lossy(&stderr.contents()).into_owned())
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        bail!("usage: wasi_bench AFS_DIR MIB");
    }
    let (base, mib): (&str, u64) = (&args[1], args[2].parse()?);
    let bytes = mib << 20;
    let rt = tokio::runtime::Runtime::new()?;
    let client = Arc::new(rt.block_on(Client::new(ClientConfig {
        cellservdb: std::env::var_os("AFS_CELLSERVDB").map(Into::into),
        thiscell: std::env::var_os("AFS_THISCELL").map(Into::into),
        ..ClientConfig::default()
    }))?);
    let dir = format!("{base}/wasi-bench-{}", std::process::id());
    let data: Vec<u8> = (0..bytes).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    let tmp = PathBuf::from(format!("/dev/shm/wasi-bench-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("stat"))?;
    let result = (|| -> Result<()> {
        // The files: one big one, and many small ones.
        rt.block_on(async {
            client.mkdir(&dir).await?;
            client.mkdir(&format!("{dir}/stat")).await?;
            let put = |p: String, d: Vec<u8>| {
                let client = client.clone();
                async move {
                    let len = d.len() as u64;
                    client.write(&p, std::io::Cursor::new(d), len, |_| {}).await
                }
            };
            put(format!("{dir}/big"), data.clone()).await?;
            for i in 0..STAT_FILES {
                put(
                    format!("{dir}/stat/f{i}"),
                    format!("file {i}\n").into_bytes(),
                )
                .await?;
            }
            Ok::<_, afs::rpc::Error>(())
        })?;
        std::fs::write(tmp.join("big"), &data)?;
        for i in 0..STAT_FILES {
            std::fs::write(tmp.join(format!("stat/f{i}")), format!("file {i}\n"))?;
        }
        let spec = format!("{dir}::/data:ro");
        let run = |extra: &[&str]| {
            let mut c = afs_wasm();
            c.args(["run", "--dir", &spec]).arg(suite()).args(extra);
            c
        };
        // Compile once, so that start-up is a cache hit from here on.
        timed(&mut run(&["read", "/data/stat/f0"]))?;

        // 1. Cold: a fresh process each, reading the whole file.
        let (mut cat, mut guest) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (out, _, t) = timed(afs_wasm().args(["cat", &format!("{dir}/big")]))?;
            if out.len() as u64 != bytes {
                bail!("cat gave {} bytes", out.len());
            }
            cat.push(t);
            let (out, _, t) = timed(&mut run(&["read", "/data/big"]))?;
            if !String::from_utf8_lossy(&out).starts_with(&format!("len {bytes} ")) {
                bail!("the guest read {}", String::from_utf8_lossy(&out));
            }
            guest.push(t);
        }
        let (cat, guest) = (median(cat), median(guest));

        // 2. Cached re-reads, against stock wasmtime-wasi over tmpfs.
        let (_, err, _) = timed(&mut run(&["reread", "/data/big", "5"]))?;
        let afs_reread = best(&ms_lines(&err, "read-ms")[1..]);
        let engine = wasmtime::Engine::default();
        let component = Component::from_file(&engine, suite())?;
        let err = stock(&engine, &component, &tmp, &["reread", "/data/big", "5"])?;
        let local_reread = best(&ms_lines(&err, "read-ms")[1..]);

        // 3. Open and stat of many cached files (the second pass), against tmpfs.
        let n = STAT_FILES.to_string();
        let (_, err, _) = timed(&mut run(&["stat-many", "/data/stat", &n, "3"]))?;
        let afs_stat = best(&ms_lines(&err, "stat-many-ms")[1..]);
        let err = stock(
            &engine,
            &component,
            &tmp,
            &["stat-many", "/data/stat", &n, "3"],
        )?;
        let local_stat = best(&ms_lines(&err, "stat-many-ms")[1..]);

        println!("wasi:filesystem over AFS, {mib} MiB file, one run (MB/s; ratio: ours / peer)");
        println!(
            "  guest std::fs read, cold        {:>9.1}   afs-wasm cat {:>9.1}   ratio {:.2}x (target >= 0.8x; whole processes, median of {ROUNDS})",
            mbps(bytes, guest),
            mbps(bytes, cat),
            cat.as_secs_f64() / guest.as_secs_f64()
        );
        let ms = |m: f64| Duration::from_secs_f64(m / 1e3);
        println!(
            "  guest std::fs re-read, cached   {:>9.1}   stock wasmtime-wasi, tmpfs {:>9.1}   ratio {:.2}x (target >= 0.8x; best of 4)",
            mbps(bytes, ms(afs_reread)),
            mbps(bytes, ms(local_reread)),
            local_reread / afs_reread
        );
        println!(
            "  open+stat of {STAT_FILES} cached files   {:>7.2} ms   stock wasmtime-wasi, tmpfs {:>7.2} ms   ratio {:.2}x (best of 2 warm passes)",
            afs_stat,
            local_stat,
            local_stat / afs_stat
        );

        // 4. A large program's start-up, if one is given.
        if let Some(program) = std::env::var_os("BENCH_PROGRAM") {
            let cache = tmp.join("code-cache");
            let version = |cache: &Path| {
                let mut c = afs_wasm();
                c.env("XDG_CACHE_HOME", cache)
                    .args(["run", "--dir", &spec])
                    .arg(&program)
                    .arg("--version");
                timed(&mut c).map(|(_, _, t)| t)
            };
            let size = std::fs::metadata(&program)?.len();
            let first = version(&cache)?;
            let second = version(&cache)?;
            println!(
                "  start-up of {} ({:.1} MB): first run {:.0} ms (compiles), second run {:.0} ms (cached code)",
                Path::new(&program).display(),
                size as f64 / 1e6,
                first.as_secs_f64() * 1e3,
                second.as_secs_f64() * 1e3
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    // Leave the cell as we found it (unless asked to keep the files, for profiling).
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {dir}");
        return result;
    }
    rt.block_on(async {
        for i in 0..STAT_FILES {
            let _ = client.remove(&format!("{dir}/stat/f{i}")).await;
        }
        let _ = client.remove(&format!("{dir}/big")).await;
        let _ = client.remove_dir(&format!("{dir}/stat")).await;
        let _ = client.remove_dir(&dir).await;
    });
    result
}
