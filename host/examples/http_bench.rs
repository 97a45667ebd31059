//! The serving benchmark (testcell/bench.sh runs it with `BENCH=serve`): requests per second
//! and p50/p99 latency of `examples/afs-http` served by afs-wasm (`HttpHandler`: a fresh
//! instance per request, the data on AFS, the template mapped) against the same component
//! under stock wasmtime-wasi-http (the pooling allocator, as `wasmtime serve` uses it) over
//! a local copy of the files, at 1, 16 and 64 concurrent keep-alive connections. Both
//! servers run in this process, on runtimes of the same shape, one at a time, driven by
//! the same client; each figure is printed beside its peer's, with the ratio.
//!
//! Usage: `http_bench AFS_DIR [SECONDS]` (the cell's env must be in the environment:
//! AFS_CELLSERVDB, AFS_THISCELL).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::client::{Client, ClientConfig};
use afs_wasm_host::filesystem::DirArg;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{
    Access, GuestConfig, Host, HostConfig, HttpHandler, NoOutgoingRequests,
};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
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
                    let stream = tokio::net::TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    let (mut send, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let req = hyper::Request::get("/page.txt")
                            .header("host", "bench")
                            .body(Empty::<Bytes>::new())?;
                        let t = Instant::now();
                        let resp = send.send_request(req).await?;
                        anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
                        let body = resp.into_body().collect().await?.to_bytes();
                        anyhow::ensure!(body.starts_with(b"<!doctype"), "unexpected body");
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

fn setup(afs_dir: &str, local: &Path, page: &str) -> Result<String> {
    let site = format!("{afs_dir}/bench-serve-{}", std::process::id());
    let config = ClientConfig {
        cellservdb: std::env::var_os("AFS_CELLSERVDB").map(PathBuf::from),
        thiscell: std::env::var_os("AFS_THISCELL").map(PathBuf::from),
        ..ClientConfig::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let c = Client::new(config).await?;
        let put = |path: String, data: &'static [u8]| {
            let c = &c;
            async move {
                c.write(&path, std::io::Cursor::new(data), data.len() as u64, |_| {})
                    .await
            }
        };
        c.mkdir(&site).await?;
        c.mkdir(&format!("{site}/data")).await?;
        put(format!("{site}/template.html"), TEMPLATE.as_bytes()).await?;
        put(
            format!("{site}/data/page.txt"),
            page.as_bytes().to_vec().leak(),
        )
        .await?;
        anyhow::Ok(())
    })?;
    std::fs::create_dir_all(local.join("data"))?;
    std::fs::write(local.join("template.html"), TEMPLATE)?;
    std::fs::write(local.join("data/page.txt"), page)?;
    Ok(site)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let afs_dir = args.get(1).context("usage: http_bench AFS_DIR [SECONDS]")?;
    let secs: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
    let page: String = (0..64)
        .map(|i| format!("line {i:02} of the page\n"))
        .collect();
    let local = std::env::temp_dir().join(format!("http-bench-{}", std::process::id()));
    let site = setup(afs_dir, &local, &page)?;

    let config = HostConfig::new(
        ClientConfig {
            cellservdb: std::env::var_os("AFS_CELLSERVDB").map(PathBuf::from),
            thiscell: std::env::var_os("AFS_THISCELL").map(PathBuf::from),
            ..ClientConfig::default()
        },
        PagerConfig::default(),
    );
    let host = Arc::new(Host::new(config)?);
    let mut guest = GuestConfig::new("afs-http.wasm");
    guest.inherit_stdio = false;
    guest = guest
        .dir(DirArg::parse(
            &format!("{site}/data::/data:ro"),
            host.default_cell(),
        )?)
        .grant(host.grant(&site, Access::Read)?)
        .env("TEMPLATE", format!("{site}/template.html"));
    let ours = Arc::new(Ours(host.http_handler(&handler_wasm(), guest)?));
    let stock = Arc::new(Stock::new(local.clone())?);
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
    let _ = std::fs::remove_dir_all(&local);
    Ok(())
}
