//! http-service: an HTTP service of your own that runs a wasm guest per request for
//! part of its routes, as an embedder of afs-wasm would write it.
//!
//! ```text
//! http-service [--addr 127.0.0.1:8080] --cell-dir /afs/CELL/DIR GUEST.wasm
//! ```
//!
//! The service answers `/healthz` and `/stats` itself, and hands `/pages/NAME` to the
//! guest (`examples/afs-http`) as `/NAME`, each request in a fresh instance: the guest
//! renders the file `DIR/data/NAME` (which it reads with `std::fs` from a preopened
//! `/data`) into the template `DIR/template.html` (which it maps). All instances share
//! the host's page store, and a request that starts after someone changed a file in AFS
//! sees the change. `/stats` shows what the host's pager and page store did.
//!
//! The cells come from `$AFS_CELLSERVDB` and `$AFS_THISCELL` (else `/etc/openafs`). It
//! prints the address it listens on; SIGINT or SIGTERM stop it once the requests in
//! flight are done.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use afs_wasm_host::runtime::{
    plain, Access, GuestConfig, GuestLimits, Host, HostConfig, HttpHandler, ResponseBody,
};
use anyhow::{Context, Result};
use clap::Parser;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(about = "An HTTP service that renders AFS files through a wasm guest per request")]
struct Args {
    /// The address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The AFS directory to serve: its `template.html`, and the files of its `data/`.
    #[arg(long, value_name = "/afs/CELL/DIR")]
    cell_dir: String,
    /// The guest: a wasi:http handler component (examples/afs-http).
    #[arg(value_name = "GUEST.wasm")]
    guest: PathBuf,
}

/// What every connection shares.
struct Service {
    host: Arc<Host>,
    pages: HttpHandler,
    /// Requests the guest was given.
    guest_requests: AtomicU64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // One host for the whole service: one AFS client, one page store, one compiled guest.
    let host = Arc::new(Host::new(HostConfig::default())?);
    let dir = args.cell_dir.trim_end_matches('/');
    // What each request's instance is given: the data directory as /data, the site
    // read-only (for the template it maps), and ten seconds.
    let guest = GuestConfig::new("afs-http")
        .inherit_stdio(false)
        .afs_dir(host.grant(&format!("{dir}/data"), Access::Read)?, "/data")
        .grant(host.grant(dir, Access::Read)?)
        .env("TEMPLATE", format!("{dir}/template.html"))
        .limits(GuestLimits::default().timeout(Duration::from_secs(10)));
    let pages = host
        .http_handler(&args.guest, guest)
        .with_context(|| format!("cannot load {}", args.guest.display()))?;
    let service = Arc::new(Service {
        host: host.clone(),
        pages,
        guest_requests: AtomicU64::new(0),
    });
    // Guests block their thread while a page fault waits for a fileserver: a
    // multi-threaded runtime keeps the other connections going meanwhile.
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(serve(args.addr, service));
    drop(runtime);
    // Tell the fileservers we are gone (they stop keeping callbacks for us).
    if let Ok(host) = Arc::try_unwrap(host) {
        host.shutdown();
    }
    served
}

async fn serve(addr: SocketAddr, service: Arc<Service>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("listening on http://{}/", listener.local_addr()?);
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop_signal());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little, and go on.
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            stopped = &mut stop => {
                stopped.context("cannot wait for signals")?;
                break;
            }
        };
        let service = service.clone();
        let routes = service_fn(move |request| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.route(request).await) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), routes);
        tokio::spawn(connections.watch(connection));
    }
    drop(listener);
    // The requests in flight finish, and the guests behind them store what they wrote.
    let drained = async {
        connections.shutdown().await;
        service.pages.instances_done().await;
    };
    tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .context("requests still in flight after 30 s")
}

impl Service {
    async fn route(&self, mut request: Request<Incoming>) -> Response<ResponseBody> {
        let path = request.uri().path();
        if path == "/healthz" {
            return plain(StatusCode::OK, "ok\n");
        }
        if path == "/stats" {
            return plain(StatusCode::OK, self.stats());
        }
        // The guest serves its files at its root: our /pages/NAME is its /NAME.
        let Some(inner) = request
            .uri()
            .path_and_query()
            .and_then(|p| p.as_str().strip_prefix("/pages"))
            .filter(|rest| rest.starts_with('/'))
        else {
            return plain(StatusCode::NOT_FOUND, "no such route\n");
        };
        match inner.parse() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "bad path\n"),
        }
        self.guest_requests.fetch_add(1, Ordering::Relaxed);
        self.pages.handle(request).await
    }

    /// A few counters, one `name value` a line.
    fn stats(&self) -> String {
        let pager = self.host.pager().stats();
        let pages = self.host.cache().pages().stats().snapshot();
        let guest_requests = self.guest_requests.load(Ordering::Relaxed);
        [
            ("guest_requests", guest_requests),
            ("page_faults", pager.faults()),
            ("revalidations", pager.revalidations),
            ("bytes_fetched", pages.bytes_fetched),
            ("pages_present", pages.pages_present),
        ]
        .iter()
        .map(|(name, value)| format!("{name} {value}\n"))
        .collect()
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        stopped = tokio::signal::ctrl_c() => stopped,
        _ = term.recv() => Ok(()),
    }
}
