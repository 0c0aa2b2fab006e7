//! The gateway: accept, route, admit, dispatch, answer; and graceful shutdown.
//!
//! The request path is a stack of small steps, each in plain sight in `handle`:
//! internal endpoints → route → global admission → per-function admission → body-size
//! check → the function's executor → metrics and the request's log line.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use wedge_host::response;
use wedge_host::{
    Body, BodyError, CallContext, Function, Host, Trigger, contain_panic, request_id,
};

use crate::metrics::{self, GatewayMetrics};
use crate::router::Router;

/// Limits of the HTTP trigger itself (the node's call limits are the host's).
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Time a client has to send its request headers (slow clients are cut off).
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); beyond it, 431.
    pub max_header_bytes: usize,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// A request to the deploy API, its body boxed whatever the server was handed.
pub type ApiRequest = Request<Body>;
pub type ApiFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// What answers `/_wedge/api/...`: wedge-control's deploy API. The gateway only mounts it,
/// so the data plane knows nothing of stores and deploys.
pub trait ApiHandler: Send + Sync + 'static {
    fn handle(&self, request: ApiRequest, request_id: String) -> ApiFuture;
}

pub struct Gateway {
    host: Arc<Host>,
    /// Swapped whole when a function is deployed, replaced or removed: a request routes on
    /// one table and keeps the `Arc<Function>` it found, so it finishes on the version it
    /// started with while new requests see the new table.
    router: ArcSwap<Router>,
    api: OnceLock<Arc<dyn ApiHandler>>,
    /// The node's other triggers, whose metrics `/_wedge/metrics` shows too.
    others: OnceLock<Vec<Arc<dyn Trigger>>>,
    limits: GatewayLimits,
    metrics: GatewayMetrics,
}

impl Gateway {
    pub fn new(host: Arc<Host>, limits: GatewayLimits) -> Arc<Self> {
        Arc::new(Self {
            host,
            router: ArcSwap::from_pointee(Router::default()),
            api: OnceLock::new(),
            others: OnceLock::new(),
            limits,
            metrics: GatewayMetrics::default(),
        })
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    pub fn limits(&self) -> &GatewayLimits {
        &self.limits
    }

    /// The functions being served now, with their routes.
    pub fn routes(&self) -> Vec<(String, Arc<Function>)> {
        self.router
            .load()
            .routes()
            .map(|route| (route.prefix.clone(), route.function.clone()))
            .collect()
    }

    /// Mounts the deploy API on `/_wedge/api/`; without one, those paths answer 404.
    /// Only the first mount counts.
    pub fn mount_api(&self, api: Arc<dyn ApiHandler>) {
        let _ = self.api.set(api);
    }

    /// Shows the metrics of the node's other triggers on `/_wedge/metrics` too. Only the
    /// first call counts.
    pub fn show_metrics_of(&self, triggers: Vec<Arc<dyn Trigger>>) {
        let _ = self.others.set(triggers);
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish (bounded by
    /// `shutdown_timeout`) and returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let local = listener.local_addr()?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let gateway = self.clone();
                    let service = service_fn(move |request| {
                        let gateway = gateway.clone();
                        async move { Ok::<_, Infallible>(gateway.handle(request, local, remote).await) }
                    });
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(self.limits.header_timeout)
                        .max_buf_size(self.limits.max_header_bytes.max(8192))
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, %remote, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: no new connections; waiting for requests in flight");
        match tokio::time::timeout(self.limits.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all requests finished"),
            Err(_) => tracing::warn!(
                timeout = ?self.limits.shutdown_timeout,
                "requests still in flight at the shutdown timeout were cut off"
            ),
        }
        Ok(())
    }

    /// Handles one request, whatever its body type: the server passes hyper's, benchmarks
    /// and tests may pass an in-memory one. The body is boxed here, once, into the host's
    /// body type.
    pub async fn handle<B>(
        self: Arc<Self>,
        request: Request<B>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BodyError>,
    {
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        let request_id = request_id::next();
        let started = Instant::now();
        let path = request.uri().path().to_string();

        if path == "/_wedge" || path.starts_with("/_wedge/") {
            let id = request_id.clone();
            return contain_panic(self.internal(request, &path, request_id), &id, None).await;
        }
        if request.method() == hyper::Method::CONNECT {
            // A 2xx to CONNECT would turn the connection into a tunnel: no function gets one.
            return response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                &request_id,
                "CONNECT is not served: wedge is not a forward proxy",
            );
        }
        let router = self.router.load();
        let Some(route) = router.route(&path) else {
            self.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "wedge::request", status = 404, method = %request.method(), path, request_id, "no route");
            return response::error(
                StatusCode::NOT_FOUND,
                &request_id,
                &format!("no function serves {path}"),
            );
        };
        let function = route.function.clone();
        let prefix = route.prefix.clone();
        drop(router);

        // hyper bounds its read buffer; this bounds what a function is handed, exactly.
        let head_bytes: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>()
            + request.uri().to_string().len();
        if head_bytes > self.limits.max_header_bytes {
            return response::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &request_id,
                &format!(
                    "the request line and headers are larger than the limit of {}",
                    wedge_engine::units::format_size(self.limits.max_header_bytes as u64)
                ),
            );
        }

        let method = request.method().clone();
        let call = CallContext {
            request_id: request_id.clone(),
            route: prefix,
            local,
            remote,
        };
        let response = self.host.call(&function, request, call).await;
        let status = response.status().as_u16();
        tracing::info!(
            target: "wedge::request",
            function = %function.spec.name,
            status,
            duration_us = started.elapsed().as_micros() as u64,
            %method,
            path,
            request_id,
        );
        response
    }

    /// `/_wedge/...`: health, metrics and the deploy API.
    async fn internal(
        &self,
        request: Request<Body>,
        path: &str,
        request_id: String,
    ) -> Response<Body> {
        let text = |content_type: &'static str, body: String| {
            let mut response = Response::new(response::full(body));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            response
        };
        match path {
            "/_wedge/health" => text("text/plain; charset=utf-8", "ok\n".into()),
            "/_wedge/metrics" => {
                let router = self.router.load();
                let functions = router
                    .functions()
                    .map(|f| (f.spec.name.as_str(), &*f.metrics));
                let mut out = wedge_host::metrics::render(self.host.metrics(), functions);
                metrics::render(&mut out, &self.metrics);
                for trigger in self.others.get().into_iter().flatten() {
                    trigger.render_metrics(&mut out);
                }
                text("text/plain; version=0.0.4; charset=utf-8", out)
            }
            _ if path == "/_wedge/api" || path.starts_with("/_wedge/api/") => {
                match self.api.get() {
                    Some(api) => api.handle(request, request_id).await,
                    None => response::error(
                        StatusCode::NOT_FOUND,
                        &request_id,
                        "the deploy API is not enabled on this server",
                    ),
                }
            }
            _ => response::error(
                StatusCode::NOT_FOUND,
                &request_id,
                &format!(
                    "{path} is not a wedge endpoint (there are /_wedge/health, /_wedge/metrics and /_wedge/api/v1/)"
                ),
            ),
        }
    }
}

impl Trigger for Gateway {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn publish(&self, functions: &[Arc<Function>]) {
        self.router.store(Arc::new(Router::new(functions)));
    }
}
