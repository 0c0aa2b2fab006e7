//! One call of a function, whatever trigger made it: admission (the node's and the
//! function's concurrency, the declared body size), a fresh instance under the call's
//! deadline, the guest, the response, and the call's metrics. Every trigger calls through
//! [`Host::call`], so limits, grants, logs and metrics hold the same for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wedge_engine::WedgeEngine;
use wedge_engine::engine::{EngineOptions, PoolingOptions};

use crate::capabilities::Services;
use crate::function::FunctionKind;
use crate::function::{Function, FunctionCode};
use crate::guest_response::ResponseHeadLimits;
use crate::logs::Stream;
use crate::response::{self, Body};
use crate::{deadline, http_handler, reactor, wagi};
use wedge_engine::outcome::GuestFailure;

/// Node-wide limits on calls.
#[derive(Debug, Clone)]
pub struct HostLimits {
    /// Calls handled at once across all functions; beyond it, 503.
    pub max_concurrency: usize,
    /// Largest request body a function is handed; beyond it, 413.
    pub max_body_size: u64,
    /// Bounds on the head of a function's response; beyond them, 502.
    pub response_head: ResponseHeadLimits,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            max_concurrency: 256,
            max_body_size: 64 << 20,
            response_head: ResponseHeadLimits::default(),
        }
    }
}

/// Engine options for a node that serves calls: epoch checks for deadlines, and the pooling
/// allocator sized for the concurrency limit. A component holds several core instances and
/// memories (its module plus adapters and shims), so the pool has room for several of each
/// per call (see wedge-engine).
pub fn serving_engine_options(limits: &HostLimits, largest_memory: u64) -> EngineOptions {
    EngineOptions {
        fuel_metering: false,
        interruptible: true,
        pooling: Some(PoolingOptions {
            total_instances: limits.max_concurrency as u32,
            max_memory_size: usize::try_from(largest_memory).unwrap_or(usize::MAX),
        }),
    }
}

/// Who made a call and where it arrived: what a `wagi` guest sees as its CGI variables.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The call's id, in its log lines and on its response.
    pub request_id: String,
    /// The prefix the call was routed by (`/` for a call that no route chose).
    pub route: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Counters of calls that belong to no function.
#[derive(Debug, Default)]
pub struct HostMetrics {
    pub rejected_global: AtomicU64,
    pub rejected_body_size: AtomicU64,
}

/// What one call needs besides the request itself (inside the host).
pub(crate) struct RequestContext {
    pub request_id: String,
    pub route: String,
    pub deadline: Instant,
    pub max_body_size: u64,
    pub response_limits: ResponseHeadLimits,
    /// Concurrency permits, held until the guest is done (not just until the headers).
    pub permits: Vec<OwnedSemaphorePermit>,
}

/// The trigger-neutral host of one node: the engine, the services its capabilities draw
/// on, the node-wide limits, and the epoch ticker that enforces deadlines.
pub struct Host {
    engine: WedgeEngine,
    services: Services,
    limits: HostLimits,
    global: Arc<Semaphore>,
    metrics: HostMetrics,
}

impl Host {
    pub fn new(engine: WedgeEngine, services: Services, limits: HostLimits) -> Arc<Self> {
        // Host errors can reach a guest as text (a failed body read, say); with
        // RUST_BACKTRACE set they would carry wedge's own stack trace to a tenant.
        wasmtime::error::disable_backtrace();
        deadline::start_ticker(engine.engine().clone());
        Arc::new(Self {
            engine,
            services,
            global: Arc::new(Semaphore::new(limits.max_concurrency)),
            limits,
            metrics: HostMetrics::default(),
        })
    }

    pub fn engine(&self) -> &WedgeEngine {
        &self.engine
    }

    /// What the node offers its functions' capabilities (functions are loaded against it).
    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn limits(&self) -> &HostLimits {
        &self.limits
    }

    pub fn metrics(&self) -> &HostMetrics {
        &self.metrics
    }

    /// Runs one call of `function` and answers it; never fails and never panics out: a
    /// refusal, a guest failure or a bug in wedge is a status (503, 413, 500, 502, 504).
    pub async fn call(
        &self,
        function: &Arc<Function>,
        request: Request<Body>,
        call: CallContext,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = call.request_id.clone();
        let response = contain_panic(
            self.admit_and_run(function, request, call),
            &request_id,
            Some(function),
        )
        .await;
        function
            .metrics
            .record_response(response.status().as_u16(), started.elapsed());
        response
    }

    /// The node's and the function's concurrency permits, or the refusal.
    fn admit(
        &self,
        function: &Function,
        request: &Request<Body>,
        request_id: &str,
    ) -> Result<Vec<OwnedSemaphorePermit>, Box<Response<Body>>> {
        let permits = self
            .permits(function)
            .map_err(|why| Box::new(over_capacity(request_id, &why)))?;
        let declared_length = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > self.limits.max_body_size) {
            self.metrics
                .rejected_body_size
                .fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(response::body_too_large(
                request_id,
                self.limits.max_body_size,
            )));
        }
        Ok(permits)
    }

    /// The node's and the function's concurrency permits, or why not (never queued).
    fn permits(&self, function: &Function) -> Result<Vec<OwnedSemaphorePermit>, String> {
        let mut permits = Vec::with_capacity(2);
        match self.global.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => {
                self.metrics.rejected_global.fetch_add(1, Ordering::Relaxed);
                return Err("the server is at its concurrency limit".into());
            }
        }
        if let Some(limit) = &function.concurrency {
            match limit.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => {
                    function.metrics.rejections.fetch_add(1, Ordering::Relaxed);
                    return Err(format!(
                        "function `{}` is at its concurrency limit",
                        function.spec.name
                    ));
                }
            }
        }
        Ok(permits)
    }

    /// Calls the export `export` of a reactor function (a stream function) with `args`
    /// parsed by its signature (as `wedge run --invoke` parses them), in a fresh instance,
    /// under the same admission, deadline, memory limit, metrics and log as every call.
    pub async fn call_export(
        &self,
        function: &Arc<Function>,
        export: &str,
        args: &[String],
        request_id: &str,
    ) -> Result<Vec<wasmtime::Val>, ExportCallError> {
        let FunctionCode::Reactor(pre) = &function.code else {
            return Err(ExportCallError::NotReactor {
                function: function.spec.name.clone(),
                kind: function.kind,
            });
        };
        let (ty, params) = wedge_engine::invoke::prepare_call(pre.module(), export, args)
            .map_err(ExportCallError::Arguments)?;
        let _permits = self.permits(function).map_err(ExportCallError::Busy)?;
        let started = Instant::now();
        function.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(function.clone());
        let outcome = reactor::call(pre, function, export, &ty, params, request_id).await;
        let status = match &outcome {
            Ok(_) => 200,
            Err(ExportCallError::Failed(GuestFailure::Timeout)) => 504,
            Err(_) => 500,
        };
        function.metrics.record_response(status, started.elapsed());
        outcome
    }

    async fn admit_and_run(
        &self,
        function: &Arc<Function>,
        request: Request<Body>,
        call: CallContext,
    ) -> Response<Body> {
        let permits = match self.admit(function, &request, &call.request_id) {
            Ok(permits) => permits,
            Err(refused) => return *refused,
        };
        let context = RequestContext {
            request_id: call.request_id,
            route: call.route,
            deadline: Instant::now() + function.spec.timeout,
            max_body_size: self.limits.max_body_size,
            response_limits: self.limits.response_head,
            permits,
        };
        function.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(function.clone());
        match &function.code {
            FunctionCode::Http(pre) => {
                http_handler::handle(pre, function.clone(), request, context).await
            }
            FunctionCode::Handler(handler) => {
                http_handler::handle_with_instances(handler, function.clone(), request, context)
                    .await
            }
            FunctionCode::Wagi(pre) => {
                wagi::handle(
                    pre,
                    function.clone(),
                    request,
                    context,
                    call.local,
                    call.remote,
                )
                .await
            }
            FunctionCode::Reactor(_) => response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &context.request_id,
                &format!(
                    "function `{}` is a reactor module (no `_start`): it has no HTTP handler, only exports for a queue trigger's `invoke`",
                    function.spec.name
                ),
            ),
        }
    }
}

/// Why a call of an export did not return values.
#[derive(Debug, thiserror::Error)]
pub enum ExportCallError {
    #[error(
        "function `{function}` is a `{kind}` function, not a reactor module: it has no exports to call"
    )]
    NotReactor {
        function: String,
        kind: FunctionKind,
    },
    /// The arguments do not fit the export's signature (a message that cannot be passed).
    #[error("the arguments do not fit")]
    Arguments(#[source] wedge_engine::invoke::InvokeError),
    /// Over the node's or the function's concurrency limit: try again later.
    #[error("{0}")]
    Busy(String),
    #[error("the function's instance could not be made")]
    Instance(#[source] wedge_capabilities::InstanceError),
    /// The guest trapped, ran past its timeout, or exited.
    #[error("the guest {0}")]
    Failed(GuestFailure),
}

/// Decrements the function's in-flight gauge when the call is done (or dropped).
struct InFlight(Arc<Function>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn over_capacity(request_id: &str, why: &str) -> Response<Body> {
    let mut response = response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        request_id,
        &format!("{why}; retry shortly"),
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::header::HeaderValue::from_static("1"),
    );
    response
}

/// Runs one call's handling so that a panic in it (a bug in wedge or in a library it calls,
/// met by this call's input or guest) ends this call with 500, never the process: every
/// other call and function goes on. The panic itself was already reported by the
/// process's panic hook, with its location.
pub async fn contain_panic(
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
                    Stream::Wedge,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_handling_a_call_is_a_500_for_that_call() {
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
