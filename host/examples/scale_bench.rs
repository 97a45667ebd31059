//! The scale benchmark (testcell/bench.sh runs it with `BENCH=scale`): what the mapping
//! engine claims at scale, against the real cell, with guests served as `afs-wasm serve`
//! serves them (`HttpHandler`, examples/http-abuse, one instance per request).
//!
//! * **Memory**: 1,000 concurrent instances map the same 64 MiB file and read every page.
//!   The machine's memory in use grows by about one copy of the file (the page store's),
//!   not 1,000: the figure is the growth minus that of 1,000 instances that map nothing.
//! * **Scale**: 100 instances map 100 files each (10,000 mappings of 10,000 files). The
//!   fileserver restarts without its callback state; our next call makes it reset us
//!   (InitCallBackState3). Reported: the time from the reset's arrival until every mapping
//!   is stripped, and from the next round's start until every file is revalidated.
//! * **Storm**: another client (a child process) rewrites all 10,000 files, so the
//!   fileserver breaks 10,000 callbacks. Reported: the host's CPU time, and the proof that
//!   no break was lost: every instance then reads the new byte from every file.
//!
//! Usage: `scale_bench CELL_SH AFS_DIR` (the cell's env in the environment:
//! AFS_CELLSERVDB, AFS_THISCELL). `scale_bench --write ...` is its writer child.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::cache::validity::Why;
use afs::client::{Client, ClientConfig};
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Access, GuestConfig, GuestLimits, Host, HostConfig, HttpHandler};
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

const GUESTS: usize = 100;
const FILES_PER_GUEST: usize = 100;
const FILES: usize = GUESTS * FILES_PER_GUEST;
const INSTANCES: usize = 1000;
const BIG_MIB: u64 = 64;

fn client_config() -> ClientConfig {
    ClientConfig {
        cellservdb: std::env::var_os("AFS_CELLSERVDB").map(PathBuf::from),
        thiscell: std::env::var_os("AFS_THISCELL").map(PathBuf::from),
        ..ClientConfig::default()
    }
}

fn handler_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/http-abuse.wasm")
}

/// The writer child: `--write BASE BYTE` rewrites every guest's files (16 bytes, the first
/// one BYTE), 8 at a time, creating directories as needed; `--write-one PATH BYTE` one
/// file. Another process, so the fileserver sees another client, and the host's CPU
/// figures are the host's alone.
fn writer(args: &[String]) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let c = std::sync::Arc::new(Client::new(client_config()).await?);
        let byte = |s: &String| s.as_bytes().first().copied().context("a byte");
        // The fileserver refuses a burst of calls from one new client now and then ("volume
        // busy" for seconds, FileLog: "Couldn't get client"): the third party tries again.
        let put = |path: String, b: u8| {
            let c = c.clone();
            async move {
                let data = vec![b; 16];
                let mut tries = 0;
                loop {
                    match c.write(&path, data.as_slice(), 16, |_| {}).await {
                        Ok(_) => return anyhow::Ok(()),
                        Err(e) if tries < 5 => {
                            tries += 1;
                            eprintln!("writer: {path}: {e}; trying again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        match args {
            [flag, base, b] if flag == "--write" => {
                let b = byte(b)?;
                for g in 0..GUESTS {
                    let _ = c.mkdir(&format!("{base}/g{g}")).await;
                }
                let paths: Vec<String> = (0..GUESTS)
                    .flat_map(|g| (0..FILES_PER_GUEST).map(move |i| (g, i)))
                    .map(|(g, i)| format!("{base}/g{g}/f{i}"))
                    .collect();
                // 8 stores in flight.
                for chunk in paths.chunks(8) {
                    let mut stores = tokio::task::JoinSet::new();
                    for p in chunk {
                        stores.spawn(put(p.clone(), b));
                    }
                    while let Some(r) = stores.join_next().await {
                        r??;
                    }
                }
            }
            [flag, path, b] if flag == "--write-one" => put(path.clone(), byte(b)?).await?,
            _ => bail!("usage: scale_bench --write BASE BYTE | --write-one PATH BYTE"),
        }
        c.give_up_callbacks().await;
        anyhow::Ok(())
    })
}

fn run_writer(args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::current_exe()?).args(args).status()?;
    ensure!(status.success(), "the writer {args:?} failed: {status}");
    Ok(())
}

/// One GET through the handler: status and body.
async fn get(handler: &HttpHandler, target: &str) -> Result<(u16, String)> {
    let req = hyper::Request::get(target)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())?;
    let resp = handler.handle(req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// This process's memory: (Pss, Rss) in bytes. Pss charges each page once however many
/// mappings share it (the kernel divides it among them); Rss counts it once per mapping.
fn memory_in_use() -> Result<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let kib = |name: &str| -> Result<u64> {
        let line = info
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in smaps_rollup"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("a number")?
            .parse()?)
    };
    Ok((kib("Pss:")? * 1024, kib("Rss:")? * 1024))
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the buffer we own.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Polls `done` every 100 µs until it holds or `limit` passes: when it first held.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return Ok(Instant::now());
        }
        ensure!(Instant::now() < deadline, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Waits until the pager's fault count has not moved for `quiet`.
fn wait_quiet(host: &Host, quiet: Duration) {
    let mut last = (host.pager().stats().faults(), Instant::now());
    while last.1.elapsed() < quiet {
        std::thread::sleep(Duration::from_millis(20));
        let now = host.pager().stats().faults();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn memory(
    rt: &tokio::runtime::Runtime,
    host: &Host,
    handler: &Arc<HttpHandler>,
    big: &str,
) -> Result<()> {
    let hold_ms = 30_000;
    let mut growth = Vec::new();
    for target in [
        format!("/sleep?ms={hold_ms}"),
        format!("/hold{big}?ms={hold_ms}"),
    ] {
        let before = memory_in_use()?;
        let started = Instant::now();
        let tasks: Vec<_> = (0..INSTANCES)
            .map(|_| {
                let (handler, target) = (handler.clone(), target.clone());
                rt.spawn(async move { get(&handler, &target).await })
            })
            .collect();
        // Every instance is up (and, holding, has read every page) well before it lets go:
        // the holders' mappings say so; the sleepers get as long.
        if target.starts_with("/hold") {
            let mappings = || {
                let maps = host.pager().mapped_files();
                maps.iter().map(|(_, _, n)| n).sum::<usize>() >= INSTANCES
            };
            wait_until(
                Duration::from_millis(hold_ms * 3 / 4),
                "1,000 mappings",
                mappings,
            )?;
        } else {
            std::thread::sleep(Duration::from_millis(hold_ms * 2 / 3));
        }
        wait_quiet(host, Duration::from_millis(300));
        let peak = memory_in_use()?;
        let mapped = host.pager().mapped_files();
        let mut answers = std::collections::BTreeMap::<String, usize>::new();
        for t in tasks {
            let (status, body) = rt.block_on(t)??;
            ensure!(status == 200, "{target}: {status} {body}");
            *answers.entry(body).or_default() += 1;
        }
        ensure!(
            started.elapsed() > Duration::from_millis(hold_ms),
            "the instances did not overlap"
        );
        ensure!(answers.len() == 1, "the instances disagree: {answers:?}");
        growth.push((
            peak.0 as i64 - before.0 as i64,
            peak.1 as i64 - before.1 as i64,
        ));
        if target.starts_with("/hold") {
            let maps: usize = mapped.iter().map(|(_, _, n)| n).sum();
            ensure!(
                maps == INSTANCES,
                "{maps} mappings at the peak, not {INSTANCES}"
            );
        }
    }
    let file = (BIG_MIB << 20) as i64;
    println!(
        "memory: {INSTANCES} instances, each mapping all of one {BIG_MIB} MiB file and reading every page"
    );
    println!(
        "  the host's proportional memory (Pss) grew by {:.0} MiB; by {:.0} MiB for {INSTANCES} instances mapping nothing",
        mib(growth[1].0),
        mib(growth[0].0)
    );
    println!(
        "  the mappings' share: {:.0} MiB = {:.2} copies of the file ({INSTANCES} private copies: {:.0} MiB)",
        mib(growth[1].0 - growth[0].0),
        (growth[1].0 - growth[0].0) as f64 / file as f64,
        mib(file * INSTANCES as i64)
    );
    println!(
        "  (Rss, which counts a shared page once per mapping, grew by {:.0} MiB)",
        mib(growth[1].1)
    );
    Ok(())
}

/// The reports of the `rounds` instances: one line per round (control byte, then each
/// distinct first byte with its count).
fn start_rounds(
    rt: &tokio::runtime::Runtime,
    handler: &Arc<HttpHandler>,
    base: &str,
) -> Vec<tokio::task::JoinHandle<Result<(u16, String)>>> {
    (0..GUESTS)
        .map(|g| {
            let handler = handler.clone();
            let target = format!("/rounds{base}/g{g}?n={FILES_PER_GUEST}&control={base}/control");
            rt.spawn(async move { get(&handler, &target).await })
        })
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a.starts_with("--write")) {
        return writer(&args);
    }
    let [cell_sh, afs_dir] = args.as_slice() else {
        bail!("usage: scale_bench CELL_SH AFS_DIR");
    };
    if let Ok(filter) = std::env::var("AFS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    // BENCH_SCALE_SKIP_MEMORY=1: only the scale and storm phases.
    let memory_phase = std::env::var_os("BENCH_SCALE_SKIP_MEMORY").is_none();
    let base = format!("{afs_dir}/bench-scale-{}", std::process::id());
    let cell = |what: &[&str]| -> Result<()> {
        let status = Command::new(cell_sh).args(what).status()?;
        ensure!(status.success(), "cell.sh {what:?}: {status}");
        Ok(())
    };

    // The files: written by the child, so the host holds no promise on them yet.
    let setup = Instant::now();
    let rt0 = tokio::runtime::Runtime::new()?;
    rt0.block_on(async {
        let c = Client::new(client_config()).await?;
        c.mkdir(&base).await?;
        let big = vec![7u8; (BIG_MIB << 20) as usize];
        c.write(
            &format!("{base}/big"),
            big.as_slice(),
            big.len() as u64,
            |_| {},
        )
        .await?;
        c.write(&format!("{base}/control"), &b"a"[..], 1, |_| {})
            .await?;
        c.give_up_callbacks().await;
        anyhow::Ok(())
    })?;
    run_writer(&["--write", &base, "a"])?;
    println!(
        "setup: {FILES} files of 16 bytes in {GUESTS} directories and a {BIG_MIB} MiB file, {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let host = Arc::new(Host::new(HostConfig::new(
        client_config(),
        PagerConfig::default(),
    ))?);
    let mut guest = GuestConfig::new("http-abuse.wasm")
        .grant(host.grant(&base, Access::Read)?)
        .limits(GuestLimits::default().max_mappings(FILES_PER_GUEST + 8));
    guest.inherit_stdio = false;
    let handler = Arc::new(host.http_handler(&handler_wasm(), guest)?);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((4 * cores).max(8))
        .enable_all()
        .build()?;

    if memory_phase {
        memory(&rt, &host, &handler, &format!("{base}/big"))?;
    }

    // Scale: 100 instances, 100 mapped files each.
    let rounds = start_rounds(&rt, &handler, &base);
    let mapped_all = || {
        let maps = host.pager().mapped_files();
        maps.len() > FILES && maps.iter().map(|(_, _, n)| n).sum::<usize>() >= FILES + GUESTS
    };
    let t = Instant::now();
    wait_until(Duration::from_secs(300), "10,000 mappings", mapped_all)?;
    wait_quiet(&host, Duration::from_millis(500));
    println!(
        "scale: {GUESTS} instances mapped {FILES} files (and a control file) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let control = rt.block_on(host.client().resolve(&format!("{base}/control")))?;
    let mut lost = host.client().subscribe_lost();
    let zaps = host.pager().stats().zaps;
    cell(&["fs-restart", "drop"])?;
    // Our next call makes the forgetful server reset us before it answers.
    rt.block_on(host.client().fetch_status(&control.cell, control.fid))?;
    let reset_at = loop {
        let event = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), lost.recv()).await
        })??;
        if event.files.iter().any(|(_, why)| *why == Why::ServerReset) || event.files.is_empty() {
            break event.at;
        }
    };
    let zapped = wait_until(Duration::from_secs(60), "zaps of every mapped file", || {
        host.pager().stats().zaps > zaps + FILES as u64
    })?;
    let zap_time = zapped.saturating_duration_since(reset_at);
    // The next round: each instance reads its 100 files again, revalidating each.
    let revalidations = host.pager().stats().revalidations;
    let t = Instant::now();
    run_writer(&["--write-one", &format!("{base}/control"), "b"])?;
    let revalidated = wait_until(
        Duration::from_secs(300),
        "revalidation of every file",
        || host.pager().stats().revalidations >= revalidations + FILES as u64,
    )?;
    wait_quiet(&host, Duration::from_millis(500));
    println!(
        "  fileserver restart without callback state: every mapping zapped {:.1} ms after the reset arrived",
        zap_time.as_secs_f64() * 1e3
    );
    println!(
        "  next round: all {FILES} files revalidated {:.2} s after the control file changed ({:.0} revalidations/s)",
        revalidated.duration_since(t).as_secs_f64(),
        FILES as f64 / revalidated.duration_since(t).as_secs_f64()
    );

    // Storm: another client rewrites all 10,000 files.
    let cb = host.client().callback_stats();
    let fids_before = cb.fids_broken.load(std::sync::atomic::Ordering::Relaxed);
    let calls_before = cb.breaks.load(std::sync::atomic::Ordering::Relaxed);
    let zaps = host.pager().stats().zaps;
    let cpu = cpu_time();
    let t = Instant::now();
    run_writer(&["--write", &base, "c"])?;
    let written = t.elapsed();
    let all_zapped = wait_until(Duration::from_secs(120), "a zap per file", || {
        host.pager().stats().zaps >= zaps + FILES as u64
    })?;
    let cpu = cpu_time() - cpu;
    let fids = cb.fids_broken.load(std::sync::atomic::Ordering::Relaxed) - fids_before;
    let calls = cb.breaks.load(std::sync::atomic::Ordering::Relaxed) - calls_before;
    // Proof: a round in which every instance reads every file again; then stop.
    run_writer(&["--write-one", &format!("{base}/control"), "d"])?;
    std::thread::sleep(Duration::from_millis(200));
    wait_quiet(&host, Duration::from_millis(500));
    run_writer(&["--write-one", &format!("{base}/control"), "z"])?;
    let mut fresh = 0;
    for r in rounds {
        let (status, report) = rt.block_on(r)??;
        ensure!(status == 200, "rounds: {status} {report}");
        let last = report
            .lines()
            .find(|l| l.starts_with('d'))
            .with_context(|| format!("no round after the storm in {report:?}"))?;
        if last == format!("d c:{FILES_PER_GUEST}") {
            fresh += FILES_PER_GUEST;
        } else {
            println!("  an instance saw, after the storm: {last:?}");
        }
    }
    println!(
        "storm: another client rewrote {FILES} files in {:.2} s: {calls} CallBack calls naming {fids} files; every mapping zapped {:.2} s after the first write",
        written.as_secs_f64(),
        all_zapped.duration_since(t).as_secs_f64(),
    );
    println!(
        "  host CPU {:.3} s ({:.1} µs a break); after it, {fresh} of {FILES} files read the new byte (lost: {})",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / FILES as f64,
        FILES - fresh
    );
    ensure!(fresh == FILES, "breaks were lost");
    drop(handler);
    Ok(())
}
