//! The serving benchmark (testcell/bench.sh runs it with `BENCH=serve`): requests per second
//! and p50/p99 latency of `examples/afs-http` served by afs-wasm (`HttpHandler`: a fresh
//! instance per request, the data on AFS, the template mapped) against the same component
//! under stock wasmtime-wasi-http (the pooling allocator, as `wasmtime serve` uses it) over
//! a local copy of the files, at 1, 16 and 64 concurrent keep-alive connections. Both
//! servers run in this process, on runtimes of the same shape, one at a time, driven by
//! the same client; each figure is printed beside its peer's, with the ratio.
//!
//! Then freshness under load: while 16 connections request the page from our server, a
//! third party (a second AFS client, so the fileserver breaks our callback) rewrites the
//! template every 100 ms, and we report the time from each callback break's arrival to
//! the first response rendered with the change (see [`freshness`]).
//!
//! Usage: `http_bench AFS_DIR [SECONDS] [CHANGES]` (the cell's env must be in the
//! environment: AFS_CELLSERVDB, AFS_THISCELL; CHANGES defaults to 50).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::client::{Client, ClientConfig};
use afs::types::Fid;
use afs_wasm_host::filesystem::DirArg;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{
    Access, GuestConfig, Host, HostConfig, HttpHandler, NoOutgoingRequests,
};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

const TEMPLATE: &str = "<!doctype html>\n<html><head><title>{{title}}</title></head>\n<body><h1>{{title}}</h1>\n<pre>{{content}}</pre>\n</body></html>\n";
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// The freshness phase: connections requesting the page, and the time between changes.
const FRESH_CONNECTIONS: usize = 16;
const CHANGE_EVERY: Duration = Duration::from_millis(100);
/// Change `i` of the template has this and `i` in six digits on its second line, which
/// every response rendered with it shows (the original template has none: change 0).
const MARK: &str = "<!-- change ";

fn handler_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/afs-http.wasm")
}

/// What serves a request: ours or the stock peer.
trait Serve: Send + Sync + 'static {
    fn serve(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl std::future::Future<Output = hyper::Response<HyperOutgoingBody>> + Send;
}

struct Ours(HttpHandler);

impl Serve for Ours {
    async fn serve(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        self.0.handle(req).await
    }
}

/// Stock wasmtime-wasi-http: wasmtime-wasi's filesystem on a local directory.
struct Stock {
    engine: Engine,
    pre: ProxyPre<StockState>,
    site: PathBuf,
}

struct StockState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutgoingRequests,
    table: ResourceTable,
}

impl WasiView for StockState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StockState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Stock {
    fn new(site: PathBuf) -> Result<Stock> {
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
        let engine = Engine::new(&config)?;
        let component = Component::from_file(&engine, handler_wasm())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // afs:client, which the handler does not call with a local template.
        stub_afs_imports(&engine, &component, &mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Stock { engine, pre, site })
    }

    async fn run(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        let wasi = WasiCtxBuilder::new()
            .preopened_dir(self.site.join("data"), "/data", FsPerms::ReadOnly)?
            .preopened_dir(&self.site, "/site", FsPerms::ReadOnly)?
            .env("TEMPLATE", "/site/template.html")
            .build();
        let mut store = Store::new(
            &self.engine,
            StockState {
                wasi,
                http: WasiHttpCtx::new(),
                hooks: NoOutgoingRequests,
                table: ResourceTable::new(),
            },
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let pre = self.pre.clone();
        tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        Ok(rx.await??)
    }
}

/// Defines the component's `afs:client` imports as traps. (wasmtime's
/// `define_unknown_imports_as_traps` would also shadow the WASI imports that the linker
/// has under another 0.2.x version, with resource types of its own.)
fn stub_afs_imports(
    engine: &Engine,
    component: &Component,
    linker: &mut Linker<StockState>,
) -> Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("afs:") {
            continue;
        }
        let mut stub = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            let what = format!("{name}#{export}");
            match item.ty {
                ComponentItem::ComponentFunc(_) => stub.func_new(export, move |_, _, _, _| {
                    Err(wasmtime::Error::msg(format!(
                        "{what}: not provided by the stock peer"
                    )))
                })?,
                ComponentItem::Resource(_) => stub.resource(
                    export,
                    wasmtime::component::ResourceType::host::<()>(),
                    |_, _| Ok(()),
                )?,
                _ => {}
            }
        }
    }
    Ok(())
}

impl Serve for Stock {
    async fn serve(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.run(req).await {
            Ok(r) => r,
            Err(e) => afs_wasm_host::runtime::plain(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e:#}"),
            ),
        }
    }
}

/// Serves on a runtime of the shape `afs-wasm serve` uses; its address.
fn start<S: Serve>(server: Arc<S>) -> Result<(SocketAddr, tokio::runtime::Runtime)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((4 * cores).max(8))
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let server = server.clone();
            let service = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.serve(req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok((addr, rt))
}

/// A keep-alive connection to the server at `addr`.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// GETs the page on `send`: its headers and body, which must be a 200 with a page.
async fn get_page(send: &mut SendRequest<Empty<Bytes>>) -> Result<(hyper::HeaderMap, Bytes)> {
    let req = hyper::Request::get("/page.txt")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())?;
    let (parts, body) = send.send_request(req).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    anyhow::ensure!(
        parts.status == 200,
        "status {}: {}",
        parts.status,
        String::from_utf8_lossy(&body)
    );
    anyhow::ensure!(
        body.starts_with(b"<!doctype"),
        "unexpected body: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((parts.headers, body))
}

/// Latencies of every request `connections` keep-alive clients made in `secs`.
fn load(
    client: &tokio::runtime::Runtime,
    addr: SocketAddr,
    connections: usize,
    secs: f64,
) -> Result<Vec<Duration>> {
    client.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                tokio::spawn(async move {
                    let mut send = connect(addr).await?;
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        get_page(&mut send).await?;
                        lat.push(t.elapsed());
                    }
                    anyhow::Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Ok(all)
    })
}

/// Requests/s, p50 and p99 in ms.
fn figures(mut lat: Vec<Duration>, secs: f64) -> (f64, f64, f64) {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (lat.len() as f64 / secs, at(0.50), at(0.99))
}

/// The cell's client configuration, from the environment.
fn client_config() -> ClientConfig {
    ClientConfig {
        cellservdb: std::env::var_os("AFS_CELLSERVDB").map(PathBuf::from),
        thiscell: std::env::var_os("AFS_THISCELL").map(PathBuf::from),
        ..ClientConfig::default()
    }
}

/// A second AFS client in this process, with its own UDP endpoint and UUID: to the
/// fileserver another host than the serving one, so its stores break the serving host's
/// callbacks. It makes the site, changes the template in the freshness phase, and
/// removes the site at the end.
struct ThirdParty {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl ThirdParty {
    fn new() -> Result<ThirdParty> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = rt
            .block_on(Client::new(client_config()))
            .context("cannot start the third party's AFS client")?;
        Ok(ThirdParty { rt, client })
    }

    async fn put(&self, path: &str, data: &[u8]) -> Result<afs::client::Node> {
        let node = self
            .client
            .write(path, data, data.len() as u64, |_| {})
            .await
            .with_context(|| format!("cannot write {path}"))?;
        Ok(node)
    }

    /// Removes the site (best effort: a failure is only reported), then tells the
    /// fileserver we hold no callbacks. Without that, a client that is gone still holds
    /// promises, and the fileserver delays other clients' calls on those files while it
    /// tries to break them.
    fn finish(self, site: &str) {
        let c = &self.client;
        let removed = self.rt.block_on(async {
            c.remove(&format!("{site}/data/page.txt")).await?;
            c.remove_dir(&format!("{site}/data")).await?;
            c.remove(&format!("{site}/template.html")).await?;
            c.remove_dir(site).await
        });
        if let Err(e) = removed {
            eprintln!("http_bench: cannot remove {site}: {e}");
        }
        self.rt.block_on(c.give_up_callbacks());
    }
}

/// Makes the site in AFS (`template.html`, `data/page.txt`) and its local copy for the
/// stock peer; the site's AFS path.
fn setup(third: &ThirdParty, afs_dir: &str, local: &Path, page: &str) -> Result<String> {
    let site = format!("{afs_dir}/bench-serve-{}", std::process::id());
    third.rt.block_on(async {
        let c = &third.client;
        c.mkdir(&site)
            .await
            .with_context(|| format!("cannot make {site}"))?;
        c.mkdir(&format!("{site}/data"))
            .await
            .with_context(|| format!("cannot make {site}/data"))?;
        third
            .put(&format!("{site}/template.html"), TEMPLATE.as_bytes())
            .await?;
        third
            .put(&format!("{site}/data/page.txt"), page.as_bytes())
            .await?;
        anyhow::Ok(())
    })?;
    std::fs::create_dir_all(local.join("data"))?;
    std::fs::write(local.join("template.html"), TEMPLATE)?;
    std::fs::write(local.join("data/page.txt"), page)?;
    Ok(site)
}

/// The template of change `i`: the original one with change `i`'s mark after its first
/// line. Near the start, not at the end: a request in flight at the first change may have
/// learnt the original's (shorter) length before the break and mapped that much of the
/// new template, which must still show the mark.
fn template_of(i: usize) -> String {
    let (first, rest) = TEMPLATE
        .split_once('\n')
        .expect("a template of several lines");
    format!("{first}\n{MARK}{i:06} -->\n{rest}")
}

/// Which change of the template a page was rendered with (0: the original).
fn change_of(body: &[u8]) -> Result<usize> {
    let mark = MARK.as_bytes();
    let Some(at) = body.windows(mark.len()).position(|w| w == mark) else {
        return Ok(0);
    };
    let digits = body
        .get(at + MARK.len()..at + MARK.len() + 6)
        .context("a truncated change mark")?;
    Ok(std::str::from_utf8(digits)?.parse()?)
}

/// One response of the freshness phase: when it started and completed, the change of
/// the template its body shows, and the data version its header names.
struct Seen {
    start: Instant,
    done: Instant,
    change: usize,
    dv: u64,
}

/// One connection of the freshness phase: requests the page until `stop`, recording every
/// response, and raises `latest` to the newest change seen.
async fn record(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    latest: Arc<AtomicUsize>,
) -> Result<Vec<Seen>> {
    let mut send = connect(addr).await?;
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let (headers, body) = get_page(&mut send).await?;
        let done = Instant::now();
        let dv = headers
            .get("x-afs-template-version")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .context("a response without a numeric x-afs-template-version")?;
        let change = change_of(&body)?;
        latest.fetch_max(change, Ordering::Relaxed);
        seen.push(Seen {
            start,
            done,
            change,
            dv,
        });
    }
    Ok(seen)
}

/// One change of the template: when its store started and returned, the data version
/// it made, and when the break it caused reached the serving host (none if the host held
/// no promise on the template at the time, which under load should not happen).
struct Change {
    started: Instant,
    returned: Instant,
    dv: u64,
    broken_at: Option<Instant>,
}

impl Change {
    /// From when every request that starts must render with this change: the break's
    /// arrival; without a break (no promise to break), the store's return.
    fn due(&self) -> Instant {
        self.broken_at.unwrap_or(self.returned)
    }
}

/// `b - a` in ms, negative when `b` came first.
fn ms_between(a: Instant, b: Instant) -> f64 {
    match b.checked_duration_since(a) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(a - b).as_secs_f64() * 1e3,
    }
}

/// The value at quantile `q` of sorted values, picked as [`figures`] does.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// Freshness under load. While [`FRESH_CONNECTIONS`] keep-alive connections request the
/// page from our server at `addr`, the third party rewrites the template `changes` times,
/// [`CHANGE_EVERY`] apart, each time with a new mark. The serving host's lost-promise
/// events (`subscribe_lost`, stamped when the callback arrived) give each change's break:
/// the first event naming the template after the change's store started (and before the
/// next one's). For each change we report the time from its break's arrival to the first
/// response that completed showing it or a later one; and, over all responses, how many
/// completed after a break with an older template (they were in flight when it arrived,
/// which is allowed) and how many *started* after a break and still showed an older
/// template (a coherence violation: must be 0).
fn freshness(
    host: &Host,
    client: &tokio::runtime::Runtime,
    addr: SocketAddr,
    third: &ThirdParty,
    template: &str,
    changes: usize,
) -> Result<()> {
    // The template's fid, and its data version before the changes (change 0's).
    let node = third
        .rt
        .block_on(third.client.resolve(template))
        .with_context(|| format!("cannot resolve {template}"))?;
    let (fid, dv0): (Fid, u64) = (node.fid, node.status.data_version());
    let mut lost = host.client().subscribe_lost();
    let stop = Arc::new(AtomicBool::new(false));
    let latest = Arc::new(AtomicUsize::new(0));
    let begin = Instant::now();
    let clients: Vec<_> = (0..FRESH_CONNECTIONS)
        .map(|_| client.spawn(record(addr, stop.clone(), latest.clone())))
        .collect();
    let stores = third.rt.block_on(async {
        // Let the connections get going before the first change.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut tick = tokio::time::interval(CHANGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stores = Vec::with_capacity(changes);
        for i in 1..=changes {
            tick.tick().await;
            let started = Instant::now();
            let node = third.put(template, template_of(i).as_bytes()).await?;
            stores.push((started, Instant::now(), node.status.data_version()));
        }
        // Until a response shows the last change (or 2 s pass), so every change is seen.
        let give_up = Instant::now() + Duration::from_secs(2);
        while latest.load(Ordering::Relaxed) < changes && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(stores)
    });
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(client.block_on(c)??);
    }
    let stores = stores?;

    let (mut breaks, mut others) = (Vec::new(), 0);
    loop {
        use tokio::sync::broadcast::error::TryRecvError;
        match lost.try_recv() {
            Ok(ev) if ev.files.iter().any(|(f, _)| *f == fid) => breaks.push(ev.at),
            Ok(_) => others += 1,
            Err(TryRecvError::Lagged(n)) => {
                anyhow::bail!("missed {n} lost-promise events: cannot match breaks to changes")
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    let changes_made: Vec<Change> = stores
        .iter()
        .enumerate()
        .map(|(i, &(started, returned, dv))| {
            let next = stores.get(i + 1).map(|s| s.0);
            let broken_at = breaks
                .iter()
                .copied()
                .find(|&at| at >= started && next.is_none_or(|n| at < n));
            Change {
                started,
                returned,
                dv,
                broken_at,
            }
        })
        .collect();
    let matched = changes_made
        .iter()
        .filter(|c| c.broken_at.is_some())
        .count();

    // Each change's freshness: break -> first response completed with it (or later).
    let mut fresh = Vec::new();
    let mut unseen = 0;
    for (i, c) in changes_made.iter().enumerate() {
        let Some(at) = c.broken_at else { continue };
        match seen.iter().filter(|s| s.change > i).map(|s| s.done).min() {
            Some(first) => fresh.push(ms_between(at, first)),
            None => unseen += 1,
        }
    }
    fresh.sort_by(f64::total_cmp);
    // The newest change due at instant `t` (0: none).
    let due_at = |t: Instant| {
        changes_made
            .iter()
            .rposition(|c| c.due() <= t)
            .map_or(0, |i| i + 1)
    };
    let late = seen.iter().filter(|s| s.change < due_at(s.start)).count();
    let in_flight = seen
        .iter()
        .filter(|s| s.change >= due_at(s.start) && s.change < due_at(s.done))
        .count();
    // The body's mark and the header's data version should name the same template. The
    // handler asks for the version after rendering, and the version is the shared
    // file's: another request's revalidation in between makes it newer than the body.
    let body_dv = |s: &Seen| match s.change {
        0 => Some(dv0),
        c => changes_made.get(c - 1).map(|c| c.dv),
    };
    let mismatched: Vec<&Seen> = seen.iter().filter(|s| body_dv(s) != Some(s.dv)).collect();
    let header_newer = mismatched
        .iter()
        .filter(|s| body_dv(s).is_some_and(|b| s.dv > b))
        .count();
    let secs = seen
        .iter()
        .map(|s| s.done)
        .max()
        .map_or(0.0, |end| (end - begin).as_secs_f64());
    let mut stores_ms: Vec<f64> = changes_made
        .iter()
        .map(|c| ms_between(c.started, c.returned))
        .collect();
    let (slowest, _) = stores_ms
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("at least one change");
    stores_ms.sort_by(f64::total_cmp);

    println!(
        "\nfreshness under load: a second AFS client rewrites the template {changes} times, {} ms apart, while {FRESH_CONNECTIONS} connections request the page from afs-wasm",
        CHANGE_EVERY.as_millis()
    );
    println!(
        "{:>5} | {:>7} {:>9} | {:>8} {:>8} {:>8} | {:>9} {:>5}",
        "conns", "changes", "afs req/s", "p50 ms", "p99 ms", "max ms", "in flight", "late"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let last = fresh.last().copied();
    let (p50, p99) = match fresh.is_empty() {
        true => (None, None),
        false => (Some(quantile(&fresh, 0.50)), Some(quantile(&fresh, 0.99))),
    };
    println!(
        "{FRESH_CONNECTIONS:>5} | {changes:>7} {:>9.0} | {:>8} {:>8} {:>8} | {in_flight:>9} {late:>5}",
        seen.len() as f64 / secs,
        ms(p50),
        ms(p99),
        ms(last),
    );
    println!("  p50/p99/max: from a callback break's arrival at the serving host to the first response showing the change");
    println!("  in flight: responses completed after a break with an older template; all started before that break");
    println!(
        "  late: responses that started after a break and showed an older template (must be 0)"
    );
    println!(
        "  {} responses in {secs:.1} s; {matched} of {changes} changes broke our callback; the third party's store took p50 {:.2} ms, max {:.2} ms (change {})",
        seen.len(),
        quantile(&stores_ms, 0.50),
        stores_ms[stores_ms.len() - 1],
        slowest + 1,
    );
    if fresh.first().is_some_and(|&f| f < 0.0) {
        println!(
            "  {} changes showed in a response before their break arrived (min {:.2} ms)",
            fresh.iter().filter(|&&f| f < 0.0).count(),
            fresh[0]
        );
    }
    if unseen > 0 {
        println!("  {unseen} broken changes never showed in a response");
    }
    // Changes without a break (our host held no promise when the store came, or the
    // break came late), and breaks that no change claimed, with their times in the phase.
    let at = |t: Instant| ms_between(begin, t);
    for (i, c) in changes_made.iter().enumerate() {
        if c.broken_at.is_none() {
            println!(
                "  change {}: no break arrived while its store ran or before the next store ({:.1}..{:.1} ms into the phase)",
                i + 1,
                at(c.started),
                at(c.returned)
            );
        }
    }
    let unclaimed: Vec<String> = breaks
        .iter()
        .filter(|&&b| !changes_made.iter().any(|c| c.broken_at == Some(b)))
        .map(|&b| format!("{:.1}", at(b)))
        .collect();
    if matched < changes {
        println!(
            "  the serving host lost promises {} times on the template {fid:?}, {others} times on other files only",
            breaks.len()
        );
    }
    if !unclaimed.is_empty() {
        println!(
            "  {} breaks of the template claimed by no change, at ms {}",
            unclaimed.len(),
            unclaimed.join(", ")
        );
    }
    if let Some(s) = mismatched.first() {
        println!(
            "  {} responses whose x-afs-template-version is not the data version of the template in their body, {header_newer} of them newer (e.g. change {} = {:?}, header {}): the handler reads the version after rendering",
            mismatched.len(),
            s.change,
            body_dv(s),
            s.dv
        );
    }
    anyhow::ensure!(
        late == 0,
        "{late} responses started after a break and showed an older template"
    );
    anyhow::ensure!(
        !fresh.is_empty(),
        "no change both broke our callback and showed in a response"
    );
    Ok(())
}

fn main() -> Result<()> {
    let usage = "usage: http_bench AFS_DIR [SECONDS] [CHANGES]";
    let args: Vec<String> = std::env::args().collect();
    let afs_dir = args.get(1).context(usage)?;
    let secs: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse()).context(usage)?;
    let changes: usize = args.get(3).map_or(Ok(50), |s| s.parse()).context(usage)?;
    anyhow::ensure!(changes > 0, "{usage}: CHANGES must be at least 1");
    let page: String = (0..64)
        .map(|i| format!("line {i:02} of the page\n"))
        .collect();
    let local = std::env::temp_dir().join(format!("http-bench-{}", std::process::id()));
    let third = ThirdParty::new()?;
    let site = setup(&third, afs_dir, &local, &page)?;

    let host = Arc::new(Host::new(HostConfig::new(
        client_config(),
        PagerConfig::default(),
    ))?);
    let result = bench(&host, &third, &site, &local, &page, secs, changes);
    // The serving host gives its callbacks up before the site goes, so that removing
    // the site breaks no promise, and neither client leaves promises behind.
    let client = host.client().clone();
    if host
        .afs_runtime()
        .block_on(async move { client.give_up_callbacks().await })
        .is_err()
    {
        eprintln!("http_bench: the serving host's AFS runtime is gone: its callbacks stay");
    }
    third.finish(&site);
    let _ = std::fs::remove_dir_all(&local);
    result
}

/// The throughput table, then the freshness phase.
fn bench(
    host: &Arc<Host>,
    third: &ThirdParty,
    site: &str,
    local: &Path,
    page: &str,
    secs: f64,
    changes: usize,
) -> Result<()> {
    let mut guest = GuestConfig::new("afs-http.wasm");
    guest.inherit_stdio = false;
    let template = format!("{site}/template.html");
    guest = guest
        .dir(DirArg::parse(
            &format!("{site}/data::/data:ro"),
            host.default_cell(),
        )?)
        .grant(host.grant(site, Access::Read)?)
        .env("TEMPLATE", &template);
    let ours = Arc::new(Ours(host.http_handler(&handler_wasm(), guest)?));
    let stock = Arc::new(Stock::new(local.to_path_buf())?);
    let (ours_addr, _ours_rt) = start(ours)?;
    let (stock_addr, _stock_rt) = start(stock)?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Warm up both: compiled code, the page store, the servers' threads.
    load(&client, ours_addr, 4, 1.0)?;
    load(&client, stock_addr, 4, 1.0)?;

    println!(
        "examples/afs-http, GET of a {} B page through a {} B template, {secs} s per run",
        page.len(),
        TEMPLATE.len()
    );
    println!(
        "{:>5} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>6}",
        "conns", "afs req/s", "p50 ms", "p99 ms", "stock r/s", "p50 ms", "p99 ms", "ratio"
    );
    for c in CONCURRENCY {
        let (r, p50, p99) = figures(load(&client, ours_addr, c, secs)?, secs);
        let (sr, sp50, sp99) = figures(load(&client, stock_addr, c, secs)?, secs);
        println!(
            "{c:>5} | {r:>9.0} {p50:>8.2} {p99:>8.2} | {sr:>9.0} {sp50:>8.2} {sp99:>8.2} | {:>5.2}x",
            r / sr
        );
    }
    freshness(host, &client, ours_addr, third, &template, changes)
}
