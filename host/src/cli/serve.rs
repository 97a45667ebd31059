//! `afs-wasm serve`: serves a `wasi:http/incoming-handler` component over HTTP/1.1, as
//! `wasmtime serve` does, one fresh instance per request, with AFS grants, directories
//! and identity as `run` gives them. SIGINT or SIGTERM stops it gracefully: no new
//! connections, the requests in flight finish, and what their instances wrote is stored
//! before the process exits. SIGHUP makes it forget every volume location, so that the next
//! use of each volume asks the VLDB where it is (OpenAFS's `fs checkvolumes`, which
//! otherwise happens on its own within the hour).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::client::ClientConfig;
use afs_wasm_host::metrics::{self, Prometheus};
use afs_wasm_host::runtime::Host;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::run::{prepare, GuestArgs};

/// What `serve` was asked to do.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// How long a graceful stop waits for the requests in flight.
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = afs_wasm_host::runtime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Serve metrics in Prometheus's text format at http://ADDR/metrics: fileserver calls
    /// and bytes, callback breaks, zaps, faults, revalidations, the page store, and
    /// histograms of fault, revalidation, change and request latency.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// The handler: a component that exports `wasi:http/incoming-handler`.
    #[arg(value_name = "HANDLER.wasm")]
    pub handler: PathBuf,
}

/// Serves until SIGINT or SIGTERM; the exit code.
pub fn serve(
    client: ClientConfig,
    cell: Option<String>,
    level: rx::rxkad::Level,
    args: ServeArgs,
) -> Result<i32> {
    let Some((host, guest)) = prepare(client, cell, level, args.guest, &args.handler)? else {
        return Ok(0);
    };
    let host = Arc::new(host);
    let metrics = match args.metrics_addr {
        Some(addr) => Some((addr, Arc::new(Prometheus::install()?))),
        None => None,
    };
    let handler = Arc::new(host.http_handler(&args.handler, guest)?);
    // Guests block their thread while a page fault or an `afs:client` call waits for
    // AFS: more threads than cores keep the others serving meanwhile.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((4 * cores).max(8))
        .thread_name("serve")
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let served = runtime.block_on(async {
        if let Some((addr, metrics)) = metrics {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            eprintln!("Metrics on http://{}/metrics", listener.local_addr()?);
            tokio::spawn(serve_metrics(listener, metrics, host.clone()));
        }
        tokio::spawn(check_volumes_on_hangup(host.clone()));
        accept_until_stopped(args.addr, handler.clone(), args.shutdown_timeout).await
    });
    drop(runtime);
    drop(handler);
    if let Ok(host) = Arc::try_unwrap(host) {
        host.shutdown();
    }
    served.map(|()| 0)
}

async fn accept_until_stopped(
    addr: SocketAddr,
    handler: Arc<afs_wasm_host::runtime::HttpHandler>,
    patience: Duration,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // As `wasmtime serve` says it (tests read the port from it).
    eprintln!("Serving HTTP on http://{}/", listener.local_addr()?);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop_signal());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: the listener goes on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move {
                let arrived = Instant::now();
                let response = handler.handle(req).await;
                metrics::record_http(response.status().as_u16(), arrived.elapsed());
                Ok::<_, Infallible>(response)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let conn = connections.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    eprintln!("afs-wasm serve: stopping; waiting for the requests in flight");
    drop(listener);
    let drained = async {
        connections.shutdown().await;
        // Responses are out; the instances behind them may still be storing.
        handler.instances_done().await;
    };
    if tokio::time::timeout(patience, drained).await.is_err() {
        anyhow::bail!(
            "requests still in flight after {patience:?}: what they wrote may not be stored"
        );
    }
    Ok(())
}

/// Answers `GET /metrics` with the host's metrics until the runtime stops.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Prometheus>, host: Arc<Host>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (metrics, host) = (metrics.clone(), host.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let (metrics, host) = (metrics.clone(), host.clone());
            async move {
                if req.uri().path() != "/metrics" {
                    let mut response = Response::new(Full::new(Bytes::from_static(
                        b"not found; the metrics are at /metrics\n",
                    )));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    return Ok::<_, Infallible>(response);
                }
                // Rendering reads every counter: off the async workers.
                let text = tokio::task::spawn_blocking(move || metrics.render(&host))
                    .await
                    .unwrap_or_default();
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Ok(response)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

/// On each SIGHUP, forgets every volume location (`fs checkvolumes`).
async fn check_volumes_on_hangup(host: Arc<Host>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        let n = host.client().check_volumes();
        eprintln!("SIGHUP: forgot the locations of {n} volumes; the VLDB is asked again");
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => drop(s.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
