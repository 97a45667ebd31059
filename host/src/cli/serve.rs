//! `afs-wasm serve`: serves a `wasi:http/incoming-handler` component over HTTP/1.1, as
//! `wasmtime serve` does, one fresh instance per request, with AFS grants, directories
//! and identity as `run` gives them. SIGINT or SIGTERM stops it gracefully: no new
//! connections, the requests in flight finish, and what their instances wrote is stored
//! before the process exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use afs::client::ClientConfig;
use anyhow::{Context, Result};
use hyper::service::service_fn;
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
    let served = runtime.block_on(accept_until_stopped(
        args.addr,
        handler.clone(),
        args.shutdown_timeout,
    ));
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
            async move { Ok::<_, Infallible>(handler.handle(req).await) }
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
