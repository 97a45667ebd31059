//! Serving `wasi:http/incoming-handler` components, as `wasmtime serve` does: every
//! request gets a fresh instance (its own store, preopens, grants, identity and limits)
//! of a component compiled and linked once. Instances share the host's page store, so a
//! file a thousand requests map is one copy in RAM, and its coherence is the host's:
//! a request that starts after a callback break faults in fresh bytes.
//!
//! Outgoing requests (`wasi:http/outgoing-handler`) are refused with `HTTP-request-denied`:
//! a handler here serves AFS data, and giving it the network is a grant we do not have.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};
use tracing::Instrument;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks, WasiHttpView};

use super::guest::GuestConfig;
use super::{Host, Wasm};

/// Numbers requests in logs.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// The response body type of [`HttpHandler::handle`].
pub type ResponseBody = HyperOutgoingBody;

/// A `wasi:http` handler component ready to serve: compiled, linked, and configured as
/// each of its instances will be. Cheap to share (`Arc`) across connections.
///
/// Make one with [`Host::http_handler`] and call [`HttpHandler::handle`] from a server
/// of your own for the requests the component should answer; `afs-wasm serve` and
/// `examples/http-service` are two such servers.
///
/// ```no_run
/// use std::sync::Arc;
/// use afs_wasm_host::runtime::{Access, GuestConfig, Host, HostConfig};
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
///
/// # #[tokio::main]
/// # async fn main() -> anyhow::Result<()> {
/// let host = Arc::new(Host::new(HostConfig::default())?);
/// let site = "/afs/example.org/site";
/// let guest = GuestConfig::new("afs-http")
///     .inherit_stdio(false)
///     .afs_dir(host.grant(&format!("{site}/data"), Access::Read)?, "/data")
///     .grant(host.grant(site, Access::Read)?)
///     .env("TEMPLATE", format!("{site}/template.html"));
/// let handler = host.http_handler(std::path::Path::new("afs-http.wasm"), guest)?;
///
/// // The guest is told the request's authority: from the URI, else the Host header.
/// let request = http::Request::get("http://localhost/notes.txt").body(Empty::<Bytes>::new())?;
/// let response = handler.handle(request).await;
/// let status = response.status();
/// let body = response.into_body().collect().await?.to_bytes();
/// println!("{status}: {}", String::from_utf8_lossy(&body));
/// # Ok(()) }
/// ```
pub struct HttpHandler {
    host: Arc<Host>,
    pre: ProxyPre<super::GuestState>,
    config: GuestConfig,
    live: Arc<Live>,
}

/// How many instances are running (their responses may be sent, their stores not done).
#[derive(Debug, Default)]
struct Live {
    count: AtomicUsize,
    none: tokio::sync::Notify,
}

/// One running instance, counted in [`Live`] while it lives.
struct Running(Arc<Live>);

impl Running {
    fn new(live: &Arc<Live>) -> Self {
        live.count.fetch_add(1, Ordering::SeqCst);
        Running(live.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

impl Host {
    /// Loads a `wasi:http/proxy` component and prepares it to serve requests, each in a
    /// fresh instance configured by `config` (its args and stdio matter little; its
    /// grants, directories, identity and limits are each request's). The host is an
    /// `Arc` because every request's instance holds it while it runs. See
    /// [`HttpHandler`] for an example.
    pub fn http_handler<'a>(
        self: &Arc<Self>,
        wasm: impl Into<Wasm<'a>>,
        config: GuestConfig,
    ) -> anyhow::Result<HttpHandler> {
        let component: Component = self.load(wasm)?;
        let linker = self.engines.proxy_linker()?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component cannot be linked as a wasi:http handler")?;
        let pre = ProxyPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export wasi:http/incoming-handler")?;
        Ok(HttpHandler {
            host: self.clone(),
            pre,
            config,
            live: Arc::default(),
        })
    }
}

impl HttpHandler {
    /// Waits until no instance runs: every response sent, and what every instance wrote
    /// stored (or its failure logged). A graceful stop waits for this.
    pub async fn instances_done(&self) {
        loop {
            let mut none = std::pin::pin!(self.live.none.notified());
            none.as_mut().enable();
            if self.live.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            none.await;
        }
    }

    /// Serves one request in a fresh instance. The guest's own failures (a trap, a limit,
    /// a fileserver that does not answer under the trap policy, no response set) become
    /// a 500 whose body names the cause; the handler goes on serving.
    ///
    /// Any body of `Bytes` will do: hyper's `Incoming` as a server receives it, or
    /// `http_body_util::Full` for a request the embedder makes up. The request's URI is
    /// what the guest sees, so a server that mounts the handler under a prefix rewrites
    /// it first. Call it on a multi-threaded runtime: a guest blocks its thread while a
    /// page fault waits for a fileserver.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, method = %req.method(), uri = %req.uri());
        async move {
            match self.run(req).await {
                Ok(response) => response,
                Err(e) => {
                    let text = format!("{e:#}");
                    tracing::warn!(error = %text, "handler failed");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{text}\n"))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run<B>(&self, req: Request<B>) -> anyhow::Result<Response<ResponseBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (mut store, ticking) = self.host.store(&self.config)?;
        store
            .data_mut()
            .open_preopens()
            .await
            .map_err(anyhow::Error::from)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(
                wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
                req,
            )
            .map_err(anyhow::Error::from)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(anyhow::Error::from)?;
        let pre = self.pre.clone();
        let host = self.host.clone();
        let running = Running::new(&self.live);
        // The instance runs on in its own task: the body it streams outlives `handle`'s
        // return of the head. At its end, what it mapped is unmapped and what it wrote is
        // stored, as at a command's exit.
        let task = tokio::spawn(
            async move {
                let _running = running;
                let _ticking = ticking;
                let result = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                }
                .await;
                let finished = host.finish(&mut store, result.map(Ok));
                if let Err(e) = &finished {
                    tracing::debug!(error = %format!("{e:#}"), "instance failed");
                }
                finished
            }
            .in_current_span(),
        );
        match rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => anyhow::bail!("the handler answered with an error: {code:?}"),
            // The instance ended without setting a response: its task says why.
            Err(_) => match task.await {
                Ok(Ok(_)) => anyhow::bail!("the handler returned without setting a response"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::Error::from(e).context("the handler's task failed")),
            },
        }
    }
}

/// A response with a plain-text body.
pub fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<ResponseBody> {
    let body = Full::new(text.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `wasi:http` hooks of our guests: defaults, but no outgoing requests.
#[derive(Debug, Default)]
pub struct NoOutgoingRequests;

impl WasiHttpHooks for NoOutgoingRequests {
    fn send_request(
        &mut self,
        _request: Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        Response<WasiBody>,
                        Box<
                            dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                                + Send,
                        >,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
