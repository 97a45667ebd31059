//! The replication benchmark (testcell/bench.sh runs it with `BENCH=replication`, on the
//! test cell with its second fileserver, `cell.sh fs2-up`): a volume with read-only clones
//! on both fileservers, and
//!
//! * **Failover**: a reader streams a 64 MiB clone, 64 KiB per FetchData64, while the
//!   fileserver it reads from stops (`cell.sh fs-stop` or `fs2-stop`, whichever it is); the
//!   figure is the longest wait between two reads, that is from the last byte served
//!   before the stop to the next one. 20 runs, p50/p99. The peer: OpenAFS's own client
//!   library (`afsio read`, libafscp) reading the same clone through a pipe read at 12.8
//!   MB/s while the first fileserver stops, its longest wait between two pipe reads.
//! * **Release**: a guest maps a file of the clone (mmap-reader); another client changes
//!   the read-write volume and `vos release` runs. The figure is the time from `vos
//!   release` returning (and from its start) until the guest prints the released byte.
//!
//! Usage: `replication_bench CELL_SH` with the cell's env in the environment (AFS_CELL,
//! AFS_SERVER, AFS_SERVER2, AFS_CELLSERVDB, AFS_THISCELL).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afs::client::{Client, ClientConfig};
use afs::path::MountPoint;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Access, GuestConfig, Host, HostConfig};
use anyhow::{ensure, Context, Result};

const FILE_MIB: u64 = 64;
const PIECE: u64 = 64 << 10;
const RUNS: usize = 20;
const PEER_RUNS: usize = 5;
const RELEASES: usize = 10;

struct Cell {
    script: String,
    name: String,
    servers: [String; 2],
}

impl Cell {
    fn sh(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.script).args(args).output()?;
        ensure!(
            out.status.success(),
            "cell.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `cell.sh fs-stop` / `fs-start` for the first server, `fs2-...` for the second.
    fn server_command(&self, server: &str, what: &str) -> Result<()> {
        let prefix = if server == self.servers[0] {
            "fs"
        } else {
            "fs2"
        };
        self.sh(&[&format!("{prefix}-{what}")]).map(drop)
    }
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("${name} is not set"))
}

fn client_config() -> ClientConfig {
    ClientConfig {
        cellservdb: std::env::var_os("AFS_CELLSERVDB").map(PathBuf::from),
        thiscell: std::env::var_os("AFS_THISCELL").map(PathBuf::from),
        ..ClientConfig::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    if let Ok(filter) = std::env::var("AFS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cell = Cell {
        script: args
            .first()
            .context("usage: replication_bench CELL_SH")?
            .clone(),
        name: env("AFS_CELL")?,
        servers: [env("AFS_SERVER")?, env("AFS_SERVER2")?],
    };
    let volume = format!("bench{:06x}", rand::random::<u32>() & 0xff_ffff);
    let rt = tokio::runtime::Runtime::new()?;
    let client = Arc::new(rt.block_on(Client::new(client_config()))?);
    let result = run(&cell, &volume, &rt, &client);
    // Whatever happened: both servers up, the volume and its mount point gone.
    for server in &cell.servers {
        let _ = cell.server_command(server, "start");
    }
    let _ = rt.block_on(client.remove(&format!("/afs/.{}/{volume}", cell.name)));
    for server in &cell.servers {
        for id in [format!("{volume}.readonly"), volume.clone()] {
            let _ = cell.sh(&[
                "vos",
                "remove",
                "-server",
                server,
                "-partition",
                "a",
                "-id",
                &id,
            ]);
        }
    }
    rt.block_on(client.give_up_callbacks());
    result
}

fn run(
    cell: &Cell,
    volume: &str,
    rt: &tokio::runtime::Runtime,
    client: &Arc<Client>,
) -> Result<()> {
    let rw = format!("/afs/.{}/{volume}", cell.name);
    let ro = format!("/afs/{}/{volume}", cell.name);
    cell.sh(&[
        "vos",
        "create",
        &cell.servers[0],
        "a",
        volume,
        "-maxquota",
        "0",
    ])?;
    for server in &cell.servers {
        cell.sh(&["vos", "addsite", server, "a", volume])?;
    }
    rt.block_on(client.make_mount_point(
        &rw,
        &MountPoint {
            cell: None,
            volume: volume.to_string(),
            rw: false,
        },
    ))?;
    cell.sh(&["vos", "release", "root.cell"])?;
    let data: Vec<u8> = (0..FILE_MIB << 20).map(|i| (i * 7 % 251) as u8).collect();
    let len = data.len() as u64;
    rt.block_on(client.write(&format!("{rw}/big"), data.as_slice(), len, |_| {}))?;
    rt.block_on(client.write(&format!("{rw}/small"), &[0u8][..], 1, |_| {}))?;
    cell.sh(&["vos", "release", volume])?;
    // We looked the volume up before it had a clone: `fs checkvolumes`.
    client.check_volumes();

    println!("failover: a reader of a {FILE_MIB} MiB read-only clone on two fileservers; the one it reads from stops");
    let ours = failover_ours(cell, rt, client, &format!("{ro}/big"))?;
    let (peer, peer_failed) = failover_afsio(cell, &format!("{ro}/big"))?;
    println!(
        "  {:<40} {:>5} {:>7} {:>9} {:>9} {:>9}",
        "longest wait for a read (stop to next)", "runs", "failed", "p50 ms", "p99 ms", "max ms"
    );
    for (who, runs, failed) in [
        ("afs-wasm (FetchData64, 64 KiB)", &ours, 0),
        ("afsio (OpenAFS libafscp)", &peer, peer_failed),
    ] {
        let mut sorted = runs.clone();
        sorted.sort();
        match sorted.last() {
            None => println!("  {who:<40} {failed:>5} {failed:>7}"),
            Some(max) => println!(
                "  {who:<40} {:>5} {failed:>7} {:>9.0} {:>9.0} {:>9.0}",
                sorted.len() + failed,
                ms(percentile(&sorted, 0.5)),
                ms(percentile(&sorted, 0.99)),
                ms(*max),
            ),
        }
    }
    if !peer.is_empty() {
        let p50 = |v: &Vec<Duration>| {
            let mut s = v.clone();
            s.sort();
            percentile(&s, 0.5)
        };
        println!(
            "  ratio of p50s (afsio / afs-wasm): {:.1}x",
            p50(&peer).as_secs_f64() / p50(&ours).as_secs_f64()
        );
    }
    println!();
    release(cell, volume, &ro, &rw, rt, client)
}

/// One reader task per run streams the clone with FetchData64 (no cache between it and
/// the servers); the server its promise came from stops under it.
fn failover_ours(
    cell: &Cell,
    rt: &tokio::runtime::Runtime,
    client: &Arc<Client>,
    path: &str,
) -> Result<Vec<Duration>> {
    let node = rt.block_on(client.resolve(path))?;
    let mut waits = Vec::new();
    for run in 0..RUNS {
        let reads: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (client, node, reads, stop) =
                (client.clone(), node.clone(), reads.clone(), stop.clone());
            rt.spawn(async move {
                let len = node.status.length();
                let mut at = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    client.fetch_range(&node, at, PIECE, |_| Ok(())).await?;
                    reads.lock().unwrap().push(Instant::now());
                    at = (at + PIECE) % len;
                }
                anyhow::Ok(())
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let (server, _) = client.promise(node.fid).context("no promise on the file")?;
        let server = server.ip().to_string();
        let stopping = Instant::now();
        cell.server_command(&server, "stop")?;
        let stopped = Instant::now();
        // Read on until well past the stop.
        let deadline = Instant::now() + Duration::from_secs(20);
        while reads
            .lock()
            .unwrap()
            .last()
            .is_none_or(|t| *t < stopped + Duration::from_millis(500))
        {
            if reader.is_finished() {
                rt.block_on(reader)??;
                anyhow::bail!("run {run}: the reader stopped");
            }
            ensure!(
                Instant::now() < deadline,
                "run {run}: no read for 20 s after the stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(reader)??;
        let reads = reads.lock().unwrap().clone();
        let wait = reads
            .windows(2)
            .filter(|w| w[1] >= stopping)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        waits.push(wait);
        eprintln!(
            "  run {run:2}: {server} stopped ({:.1} s to stop it); longest wait {:.0} ms",
            (stopped - stopping).as_secs_f64(),
            ms(wait)
        );
        cell.server_command(&server, "start")?;
        // Let it answer again (the client learns it from its next call or probe).
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(waits)
}

/// afsio reads the clone to a pipe that we read at 12.8 MB/s (64 KiB every 5 ms), so its
/// calls are in flight when the first fileserver stops a second in.
fn failover_afsio(cell: &Cell, path: &str) -> Result<(Vec<Duration>, usize)> {
    let mut waits = Vec::new();
    let mut failed = 0;
    for run in 0..PEER_RUNS {
        let mut child = Command::new(&cell.script)
            .args(["afsio", "read", "-file", path])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut out = child.stdout.take().context("afsio's stdout")?;
        let mut buf = vec![0u8; PIECE as usize];
        let mut reads = Vec::new();
        let started = Instant::now();
        let mut stopping = None;
        let mut total = 0u64;
        loop {
            let n = out.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            reads.push(Instant::now());
            if stopping.is_none() && started.elapsed() > Duration::from_secs(1) {
                // Stop it from another thread: this one keeps reading the pipe.
                let (script, at) = (cell.script.clone(), Instant::now());
                stopping = Some(at);
                std::thread::spawn(move || Command::new(script).arg("fs-stop").status());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.wait();
        let stopping = stopping.context("afsio finished before the stop")?;
        let wait = reads
            .windows(2)
            .filter(|w| w[1] >= stopping)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        eprintln!(
            "  afsio run {run}: read {} of {} MiB; longest wait {:.0} ms",
            total >> 20,
            FILE_MIB,
            ms(wait)
        );
        if total == FILE_MIB << 20 {
            waits.push(wait);
        } else {
            eprintln!("  afsio run {run}: failed (an error instead of the rest of the file)");
            failed += 1;
        }
        // The stop may still be in progress.
        std::thread::sleep(Duration::from_secs(3));
        cell.server_command(&cell.servers[0], "start")?;
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok((waits, failed))
}

/// A guest maps `small` of the clone; each round changes it in the read-write volume and
/// releases the volume.
fn release(
    cell: &Cell,
    volume: &str,
    ro: &str,
    rw: &str,
    rt: &tokio::runtime::Runtime,
    client: &Arc<Client>,
) -> Result<()> {
    let host = Host::new(HostConfig::new(client_config(), PagerConfig::default()))?;
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/mmap-reader.wasm");
    let grant = host.grant(ro, Access::Read)?;
    let small = format!("{ro}/small");
    let mut config = GuestConfig::new("mmap-reader").grant(grant);
    for a in [small.as_str(), "--interval-ms", "1", "--changes-only"] {
        config = config.arg(a);
    }
    let out = config.capture_stdout(1 << 16);
    let host = Arc::new(host);
    let guest = {
        let host = host.clone();
        std::thread::spawn(move || host.run_command(&wasm, config))
    };
    let printed = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = String::from_utf8_lossy(&out.contents()).lines().count();
            if lines >= want {
                return Ok(Instant::now());
            }
            ensure!(
                Instant::now() < deadline,
                "the guest printed {lines} lines, not {want}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    printed(1)?;
    let (mut seen_after, mut release_took, mut before_return) = (Vec::new(), Vec::new(), 0);
    for round in 1..=RELEASES {
        let byte = round as u8;
        rt.block_on(client.write(&format!("{rw}/small"), &[byte][..], 1, |_| {}))?;
        let started = Instant::now();
        cell.sh(&["vos", "release", volume])?;
        let returned = Instant::now();
        let seen = printed(round + 1)?;
        if seen < returned {
            before_return += 1;
        }
        seen_after.push(seen - started);
        release_took.push(returned - started);
    }
    println!("release: a guest maps a file of the clone; the read-write volume changes and `vos release` runs ({RELEASES} rounds)");
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p99 ms", "max ms"
    );
    for (what, v) in [
        ("`vos release` start -> the guest sees it", &mut seen_after),
        ("`vos release` start -> it returns", &mut release_took),
    ] {
        v.sort();
        println!(
            "  {what:<44} {:>9.1} {:>9.1} {:>9.1}",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap())
        );
    }
    println!("  the guest saw the released byte before `vos release` returned in {before_return} of {RELEASES} rounds");
    let text = String::from_utf8_lossy(&out.contents()).into_owned();
    let last = text.lines().last().unwrap_or_default().to_string();
    ensure!(
        last == format!("{RELEASES:02x}"),
        "the guest ended on {last}"
    );
    // The guest runs until its process ends: it is a reader that never stops.
    drop(guest);
    Ok(())
}
