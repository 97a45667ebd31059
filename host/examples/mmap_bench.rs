//! The guest-mapping benchmark, one run against the test cell (testcell/bench.sh runs it
//! with `BENCH=mmap`):
//!
//! * warm scans of a mapped file against the same scan over ordinary guest memory;
//! * the cold first scan (every byte fetched through page faults) against OpenAFS's afsio
//!   reading the same file;
//! * faults taken, and time per fault, by a full scan after a third-party change, and
//!   after a callback break on unchanged data;
//! * the delay from afsio's write returning to a reader guest printing the new byte.
//!
//! Usage: `mmap_bench CELL_SH AFS_DIR MIB CHANGES` (the cell's env must be in the
//! environment: AFS_CELLSERVDB, AFS_THISCELL).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afs::client::ClientConfig;
use afs_wasm_host::pager::{Access, PagerConfig, PagerStatsSnapshot};
use afs_wasm_host::runtime::{CapturedOutput, GuestConfig, Host, HostConfig};
use anyhow::{bail, Context, Result};

struct Bench {
    cell_sh: String,
    dir: String,
    wasm: PathBuf,
}

impl Bench {
    fn cell(&self, args: &[&str]) -> Result<std::process::Output> {
        let out = Command::new(&self.cell_sh).args(args).output()?;
        if !out.status.success() {
            bail!("cell.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out)
    }

    fn afsio_put(&self, local: &str, path: &str) -> Result<()> {
        self.cell(&["afsio-put", local, path, "-force"]).map(drop)
    }

    fn host(&self) -> Result<Arc<Host>> {
        let client = ClientConfig {
            cellservdb: std::env::var_os("AFS_CELLSERVDB").map(Into::into),
            thiscell: std::env::var_os("AFS_THISCELL").map(Into::into),
            ..ClientConfig::default()
        };
        Ok(Arc::new(Host::new(HostConfig::new(
            client,
            PagerConfig::default(),
        ))?))
    }

    fn spawn(
        &self,
        host: &Arc<Host>,
        guest: &str,
        args: &[&str],
    ) -> Result<(CapturedOutput, std::thread::JoinHandle<Result<i32>>)> {
        let mut config = GuestConfig::new(guest).grant(host.grant(&self.dir, Access::Read)?);
        for a in args {
            config = config.arg(*a);
        }
        let out = config.capture_stdout(1 << 20);
        let (host, wasm) = (host.clone(), self.wasm.join(format!("{guest}.wasm")));
        let done = std::thread::spawn(move || host.run_command(&wasm, config));
        Ok((out, done))
    }
}

impl Bench {
    /// The first scan of the whole file by a guest of a fresh host, in ns.
    fn cold_scan(&self, path: &str) -> Result<u64> {
        let host = self.host()?;
        let (out, done) = self.spawn(&host, "mmap-bench", &[path, "--rounds", "1"])?;
        if done.join().map_err(|_| anyhow::anyhow!("guest thread"))?? != 0 {
            bail!("the bench guest failed: {}", text(&out));
        }
        value(&text(&out), "cold_ns")
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `afs-wasm run mmap-reader` in a child process; its output lines with their arrival
/// times, and the revalidate hook's times from its log.
struct Reader {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    hook_us: Arc<Mutex<Vec<u64>>>,
}

impl Reader {
    fn start(bench: &Bench, path: &str) -> Result<Reader> {
        let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/afs-wasm");
        let mut child = Command::new(exe)
            .arg("run")
            .arg("--grant")
            .arg(&bench.dir)
            .arg(bench.wasm.join("mmap-reader.wasm"))
            .args([path, "--interval-ms", "1", "--changes-only"])
            .env("AFS_LOG", "afs_wasm_host::pager=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start afs-wasm run (build it: cargo build --release -p afs-wasm-host)")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let hook_us = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let sink = hook_us.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let took = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("took_us="))
                    .and_then(|v| v.parse().ok());
                if let (true, Some(us)) = (line.contains("changed=true"), took) {
                    sink.lock().unwrap().push(us);
                }
            }
        });
        Ok(Reader {
            child,
            lines,
            hook_us,
        })
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    fn hook_ms(&self) -> Vec<f64> {
        let us = self.hook_us.lock().unwrap();
        us.iter().map(|&u| u as f64 / 1e3).collect()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends CB.CallBack for the file at `path` to the host's callback service, as its
/// fileserver would.
fn break_callback(host: &Host, path: &str) -> Result<()> {
    use afs::proto::cb::CbRequest;
    let client = host.client().clone();
    let path = path.to_string();
    host.afs_runtime().block_on(async move {
        let node = client.resolve(&path).await?;
        let fid = node.fid;
        let fileserver = rx::Endpoint::bind("0.0.0.0:0".parse()?, Default::default()).await?;
        // Only fileservers are believed: this endpoint becomes another address of
        // the file's server (a multihomed server, as the VLDB lists them).
        let here = std::net::SocketAddr::from(([127, 0, 0, 1], fileserver.local_addr().port()));
        client.coherence().learn_server(None, &[node.server, here]);
        let request = CbRequest::CallBack {
            fids: vec![fid],
            callbacks: vec![afs::CallBack::default()],
        };
        let ours =
            std::net::SocketAddr::from(([127, 0, 0, 1], client.endpoint().local_addr().port()));
        fileserver
            .make_call(ours, afs::callback::SERVICE, &request.encode())
            .await?;
        anyhow::Ok(())
    })?
}

/// The pager's counters once every fault taken so far is resolved: a guest woken by
/// read-ahead goes on while the fault's own task still finishes.
fn settled(host: &Host) -> Result<PagerStatsSnapshot> {
    let mut stats = host.pager().stats();
    wait_until("the pager to settle", Duration::from_secs(60), || {
        stats = host.pager().stats();
        stats.resolved_fast + stats.resolved_slow >= stats.faults()
    })?;
    Ok(stats)
}

fn text(out: &CapturedOutput) -> String {
    String::from_utf8_lossy(&out.contents()).into_owned()
}

fn value(out: &str, key: &str) -> Result<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .with_context(|| format!("the guest printed no {key}: {out}"))?
        .trim()
        .parse()
        .context(key.to_string())
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn mbps(bytes: u64, ns: u64) -> f64 {
    bytes as f64 / ns.max(1) as f64 * 1e3
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    // AFS_LOG=afs_wasm_host::pager=debug shows every fault and revalidation.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("AFS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let [_, cell_sh, dir, mib, changes] = &args[..] else {
        bail!("usage: mmap_bench CELL_SH AFS_DIR MIB CHANGES");
    };
    let (mib, changes): (u64, usize) = (mib.parse()?, changes.parse()?);
    let bench = Bench {
        cell_sh: cell_sh.clone(),
        dir: dir.clone(),
        wasm: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release"),
    };
    let work = std::env::temp_dir().join(format!("mmap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bytes = mib << 20;
    let data: Vec<u8> = (0..bytes).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    let (first, second) = (work.join("a"), work.join("b"));
    std::fs::write(&first, &data)?;
    let mut changed = data.clone();
    changed[0] ^= 0xff;
    std::fs::write(&second, &changed)?;
    let path = format!("{dir}/mmap-bench-{}", std::process::id());
    bench.afsio_put(first.to_str().unwrap(), &path)?;
    // afsio stores a big file in many calls, each a new data version: a write to this
    // file tells the guest that the change is complete.
    let (go_local, go) = (work.join("go"), format!("{path}.go"));
    std::fs::write(&go_local, [0u8])?;
    bench.afsio_put(go_local.to_str().unwrap(), &go)?;

    // afsio reading the whole file (whole process) and a guest's first scan of its
    // mapping in a fresh host (nothing cached), taken in turns; the medians of 3.
    let (mut afsio, mut cold, mut cat) = (Vec::new(), Vec::new(), Vec::new());
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/afs-wasm");
    for _ in 0..3 {
        let t = Instant::now();
        let out = bench.cell(&["afsio", "read", "-file", &path])?;
        afsio.push(t.elapsed().as_nanos() as u64);
        if out.stdout.len() as u64 != bytes {
            bail!("afsio read {} bytes", out.stdout.len());
        }
        cold.push(bench.cold_scan(&path)?);
        // `afs-wasm cat` (whole process): the same fetches through the page store.
        let t = Instant::now();
        let out = Command::new(&exe).args(["cat", &path]).output()?;
        cat.push(t.elapsed().as_nanos() as u64);
        if out.stdout.len() as u64 != bytes {
            bail!("afs-wasm cat read {} bytes", out.stdout.len());
        }
    }
    let (afsio_ns, cold, cat_ns) = (median(afsio), median(cold), median(cat));

    // A fresh host: warm scans, plain-memory scans, then a scan after afsio changes the
    // file.
    let host = bench.host()?;
    let (out, done) = bench.spawn(
        &host,
        "mmap-bench",
        &[
            &path,
            "--rounds",
            "31",
            "--after-change",
            &go,
            "--after-break-ms",
            "1500",
        ],
    )?;
    wait_until("the guest's warm scans", Duration::from_secs(300), || {
        text(&out).contains("ready")
    })?;
    let before = settled(&host)?;
    bench.afsio_put(second.to_str().unwrap(), &path)?;
    std::fs::write(&go_local, [1u8])?;
    bench.afsio_put(go_local.to_str().unwrap(), &go)?;
    wait_until(
        "the scan after the change",
        Duration::from_secs(300),
        || text(&out).contains("ready-break"),
    )?;
    let after = settled(&host)?;
    // A break on the unchanged file, as a fileserver sends one (e.g. for a volume
    // operation): the guest's next scan revalidates and maps everything again.
    break_callback(&host, &path)?;
    if done.join().map_err(|_| anyhow::anyhow!("guest thread"))?? != 0 {
        bail!("the bench guest failed: {}", text(&out));
    }
    let end = settled(&host)?;
    let out = text(&out);
    let (warm, plain, again) = (
        value(&out, "warm_mapped_ns")?,
        value(&out, "warm_plain_ns")?,
        value(&out, "after_change_ns")?,
    );
    let after_break = value(&out, "after_break_ns")?;
    let break_faults = end.faults() - after.faults();
    let break_fault_ns = end.fault_nanos - after.fault_nanos;
    let faults = after.faults() - before.faults();
    let fault_ns = after.fault_nanos - before.fault_nanos;

    // Change latency: a reader guest in another afs-wasm process (another AFS client),
    // polling its mapped byte every millisecond; its revalidate hook logs how long each
    // run took.
    // A one-page file: with the big one, afsio's store of a byte takes most of a second
    // and the fileserver holds our FetchData until it is done, which measures afsio.
    let one = work.join("one");
    let small = format!("{dir}/mmap-bench-small-{}", std::process::id());
    std::fs::write(&one, [0u8; 4096])?;
    bench.afsio_put(one.to_str().unwrap(), &small)?;
    let reader = Reader::start(&bench, &small)?;
    wait_until("the reader", Duration::from_secs(60), || {
        !reader.lines().is_empty()
    })?;
    let (mut delays, mut from_start) = (Vec::new(), Vec::new());
    let mut last = 0u8;
    for i in 0..changes {
        let v = last.wrapping_add(1 + (i % 7) as u8);
        std::fs::write(&one, [v])?;
        let seen_before = reader.lines().len();
        let started = Instant::now();
        bench.afsio_put(one.to_str().unwrap(), &small)?;
        let returned = Instant::now();
        let want = format!("{v:02x}");
        let mut printed = None;
        wait_until(
            "the reader to see the change",
            Duration::from_secs(30),
            || {
                printed = reader.lines()[seen_before..]
                    .iter()
                    .find(|(_, l)| *l == want)
                    .map(|(at, _)| *at);
                printed.is_some()
            },
        )?;
        // Negative when the reader saw the change before afsio's process had exited.
        let at = printed.expect("found");
        let ms = if at >= returned {
            at.duration_since(returned).as_secs_f64() * 1e3
        } else {
            -(returned.duration_since(at).as_secs_f64() * 1e3)
        };
        delays.push(ms);
        from_start.push(at.duration_since(started).as_secs_f64() * 1e3);
        last = v;
    }
    let mut hook = reader.hook_ms();
    drop(reader);
    delays.sort_by(f64::total_cmp);
    from_start.sort_by(f64::total_cmp);
    hook.sort_by(f64::total_cmp);

    println!("guest mappings, {mib} MiB file, one run");
    println!("  warm scan, mapped      {:>9.1} MB/s", mbps(bytes, warm));
    println!(
        "  warm scan, plain memory{:>9.1} MB/s   ratio {:.2}x (target >= 0.95x)",
        mbps(bytes, plain),
        plain as f64 / warm as f64
    );
    println!(
        "  cold first scan        {:>9.1} MB/s   (median of 3 fresh hosts)",
        mbps(bytes, cold)
    );
    println!(
        "  afs-wasm cat (process) {:>9.1} MB/s   (median of 3) ratio {:.2}x (target >= 0.9x)",
        mbps(bytes, cat_ns),
        cat_ns as f64 / cold as f64
    );
    println!(
        "  afsio read (process)   {:>9.1} MB/s   (median of 3) ratio {:.2}x (target >= 2x)",
        mbps(bytes, afsio_ns),
        afsio_ns as f64 / cold as f64
    );
    println!(
        "  scan after a change    {:>9.1} MB/s   {faults} faults, {:.1} us per fault",
        mbps(bytes, again),
        fault_ns as f64 / faults.max(1) as f64 / 1e3
    );
    println!(
        "  change latency ({changes} afsio writes of a 4 KiB file), until the reader guest printed the new byte:"
    );
    println!(
        "    from afsio's process start:   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&from_start, 0.5),
        percentile(&from_start, 0.99),
        percentile(&from_start, 1.0)
    );
    println!(
        "    from afsio's process exit:    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (negative: seen before afsio exited)",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        percentile(&delays, 1.0)
    );
    println!(
        "  scan after a break     {:>9.1} MB/s   {break_faults} faults, {:.1} us per fault (data unchanged)",
        mbps(bytes, after_break),
        break_fault_ns as f64 / break_faults.max(1) as f64 / 1e3
    );
    if !hook.is_empty() {
        println!(
            "  the reader's revalidate hook (FetchStatus): p50 {:.2} ms, p99 {:.2} ms over {} runs",
            percentile(&hook, 0.5),
            percentile(&hook, 0.99),
            hook.len()
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    let client = host.client().clone();
    let _ = host.afs_runtime().block_on(async move {
        let _ = client.remove(&path).await;
        let _ = client.remove(&go).await;
        client.remove(&small).await
    });
    // The reader guest still runs: leave without waiting for it.
    std::process::exit(0);
}
