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
use tokio::sync::Semaphore;
use wedge_engine::engine::PoolingOptions;
use wedge_engine::{EngineOptions, WedgeEngine};

use crate::function::{Executor, Function};
use crate::guest::RequestContext;
use crate::guest_response::ResponseHeadLimits;
use crate::response::{self, Body};
use crate::router::Router;
use crate::{deadline, metrics, request_id};

/// Gateway-wide limits.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Requests handled at once across all functions; beyond it, 503.
    pub max_concurrency: usize,
    /// Largest request body accepted; beyond it, 413.
    pub max_body_size: u64,
    /// Time a client has to send its request headers (slow clients are cut off).
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); beyond it, 431.
    pub max_header_bytes: usize,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Bounds on the head of a function's response; beyond them, 502.
    pub response_head: ResponseHeadLimits,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_concurrency: 256,
            max_body_size: 64 << 20,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            shutdown_timeout: Duration::from_secs(10),
            response_head: ResponseHeadLimits::default(),
        }
    }
}

/// Engine options for serving: the pooling allocator sized for the concurrency limit.
/// A component holds several core instances and memories (its module plus adapters and
/// shims), so the pool has room for several of each per request.
pub fn engine_options(limits: &GatewayLimits, largest_memory: u64) -> EngineOptions {
    EngineOptions {
        fuel_metering: false,
        interruptible: true,
        pooling: Some(PoolingOptions {
            total_instances: limits.max_concurrency as u32,
            max_memory_size: usize::try_from(largest_memory).unwrap_or(usize::MAX),
        }),
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
    engine: WedgeEngine,
    /// Swapped whole when a function is deployed, replaced or removed: a request routes on
    /// one table and keeps the `Arc<Function>` it found, so it finishes on the version it
    /// started with while new requests see the new table.
    router: ArcSwap<Router>,
    api: OnceLock<Arc<dyn ApiHandler>>,
    limits: GatewayLimits,
    global: Arc<Semaphore>,
    metrics: metrics::GatewayMetrics,
}

impl Gateway {
    pub fn new(
        engine: WedgeEngine,
        functions: Vec<Arc<Function>>,
        limits: GatewayLimits,
    ) -> Arc<Self> {
        // Host errors can reach a guest as text (a failed body read, say); with
        // RUST_BACKTRACE set they would carry wedge's own stack trace to a tenant.
        wasmtime::error::disable_backtrace();
        deadline::start_ticker(engine.engine().clone());
        Arc::new(Self {
            engine,
            router: ArcSwap::from_pointee(Router::new(functions)),
            api: OnceLock::new(),
            global: Arc::new(Semaphore::new(limits.max_concurrency)),
            limits,
            metrics: metrics::GatewayMetrics::default(),
        })
    }

    pub fn engine(&self) -> &WedgeEngine {
        &self.engine
    }

    pub fn limits(&self) -> &GatewayLimits {
        &self.limits
    }

    /// The functions being served now, longest route first.
    pub fn functions(&self) -> Vec<Arc<Function>> {
        self.router.load().functions().cloned().collect()
    }

    /// Makes `functions` the whole routing table, atomically.
    pub fn publish(&self, functions: Vec<Arc<Function>>) {
        self.router.store(Arc::new(Router::new(functions)));
    }

    /// Mounts the deploy API on `/_wedge/api/`; without one, those paths answer 404.
    /// Only the first mount counts.
    pub fn mount_api(&self, api: Arc<dyn ApiHandler>) {
        let _ = self.api.set(api);
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
    /// and tests may pass an in-memory one.
    pub async fn handle<B>(
        self: Arc<Self>,
        request: Request<B>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::response::BodyError>,
    {
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
        let Some(function) = self.router.load().route(&path).cloned() else {
            self.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "wedge::request", status = 404, method = %request.method(), path, request_id, "no route");
            return response::error(
                StatusCode::NOT_FOUND,
                &request_id,
                &format!("no function serves {path}"),
            );
        };

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
        let response = contain_panic(
            self.admit_and_run(&function, request, &request_id, local, remote),
            &request_id,
            Some(&function),
        )
        .await;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        function.metrics.record_response(status, elapsed);
        tracing::info!(
            target: "wedge::request",
            function = %function.spec.name,
            status,
            duration_us = elapsed.as_micros() as u64,
            %method,
            path,
            request_id,
        );
        response
    }

    async fn admit_and_run<B>(
        &self,
        function: &Arc<Function>,
        request: Request<B>,
        request_id: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::response::BodyError>,
    {
        let mut permits = Vec::with_capacity(2);
        match self.global.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => {
                self.metrics.rejected_global.fetch_add(1, Ordering::Relaxed);
                return over_capacity(request_id, "the server is at its concurrency limit");
            }
        }
        if let Some(limit) = &function.concurrency {
            match limit.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => {
                    function.metrics.rejections.fetch_add(1, Ordering::Relaxed);
                    return over_capacity(
                        request_id,
                        &format!(
                            "function `{}` is at its concurrency limit",
                            function.spec.name
                        ),
                    );
                }
            }
        }
        let declared_length = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > self.limits.max_body_size) {
            self.metrics
                .rejected_body_size
                .fetch_add(1, Ordering::Relaxed);
            return response::body_too_large(request_id, self.limits.max_body_size);
        }

        let context = RequestContext {
            request_id: request_id.to_string(),
            deadline: Instant::now() + function.spec.timeout,
            max_body_size: self.limits.max_body_size,
            response_limits: self.limits.response_head,
            permits,
        };
        function.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(function.clone());
        match &function.executor {
            Executor::Http(executor) => executor.handle(function.clone(), request, context).await,
            Executor::Wagi(executor) => {
                executor
                    .handle(function.clone(), request, context, local, remote)
                    .await
            }
        }
    }

    /// `/_wedge/...`: health, metrics and the deploy API.
    async fn internal<B>(
        &self,
        request: Request<B>,
        path: &str,
        request_id: String,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::response::BodyError>,
    {
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
                text(
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::render(&self.metrics, functions),
                )
            }
            _ if path == "/_wedge/api" || path.starts_with("/_wedge/api/") => {
                match self.api.get() {
                    Some(api) => {
                        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
                        api.handle(request, request_id).await
                    }
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

/// Decrements the function's in-flight gauge when the request is done (or dropped).
struct InFlight(Arc<Function>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one request's handling so that a panic in it (a bug in wedge or in a library it
/// calls, met by this request's input or guest) ends this request with 500, never the
/// process: every other request and function goes on. The panic itself was already
/// reported by the process's panic hook, with its location.
async fn contain_panic(
    handling: impl Future<Output = Response<Body>>,
    request_id: &str,
    function: Option<&Function>,
) -> Response<Body> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            tracing::error!(target: "wedge::request", request_id, panic = %what, "internal error while handling a request (a bug in wedge); answered 500");
            if let Some(function) = function {
                function.log.push(
                    &function.spec.name,
                    request_id,
                    crate::logs::Stream::Wedge,
                    &format!("wedge hit an internal error while handling this request (a bug in wedge, not in the function): {what}"),
                );
            }
            response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                request_id,
                "wedge hit an internal error while handling this request; it is logged with this request id",
            )
        }
    }
}

fn over_capacity(request_id: &str, why: &str) -> Response<Body> {
    let mut response = response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        request_id,
        &format!("{why}; retry shortly"),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_handling_a_request_is_a_500_for_that_request() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let response = runtime.block_on(contain_panic(
            async { panic!("a bug met by this request") },
            "r-1",
            None,
        ));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[response::REQUEST_ID_HEADER], "r-1");
        // The runtime (the worker) goes on serving.
        let response = runtime.block_on(contain_panic(
            async { response::error(StatusCode::OK, "r-2", "fine") },
            "r-2",
            None,
        ));
        assert_eq!(response.status(), StatusCode::OK);
    }
}
