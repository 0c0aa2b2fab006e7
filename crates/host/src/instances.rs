//! Instances that serve more than one request, and WASI 0.3 handlers: both go through
//! wasmtime-wasi-http's `ProxyHandler`, which runs a pool of workers per function, each a
//! store and an instance that accepts requests while the function's [`ReusePolicy`] allows:
//! one after another (serial reuse, `wasi:http/incoming-handler@0.2` and `handler@0.3`), or
//! several at once (concurrent reuse, 0.3 only).
//!
//! What reuse gives up, and how wedge bounds it:
//! - State left in the guest's globals is seen by the next request on that instance
//!   (the point, for caches; a hazard for anything per-user).
//! - A trap, a timeout, a memory-limit hit or a host error retires the instance at once: the
//!   worker ends, and no later request ever runs in an instance that failed. Requests sharing
//!   it at that moment fail with it (500).
//! - The deadline of a request is enforced twice: its own (the request gets 504 at
//!   `timeout`), and the instance's (an instance still busy `timeout` after its latest request
//!   started traps at the next epoch tick and is retired).
//! - Captured output is moved to the function's log at the start of each request and when the
//!   instance is retired, so with concurrent reuse a line may be tagged with a neighbouring
//!   request's id.
//! - Host calls of key-value and SQL are bounded by their stores' own call timeouts rather
//!   than by the time left to one request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wedge_capabilities::InstanceInfo;
use wedge_capabilities::wasi::{CapturePipe, GuestIo, GuestOutput};
use wedge_engine::limits::{GuestLimiter, Limits};
use wedge_engine::outcome::GuestFailure;

use crate::capabilities::{ComponentState, Grants};
use crate::deadline;
use crate::logs::{FunctionLog, Stream};
use crate::metrics::FunctionMetrics;
use crate::outcome::CAPTURE_LIMIT;

/// How a function's instances are reused. Without one (the default), every request gets a
/// fresh instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Requests one instance serves before it is retired.
    pub max_requests: usize,
    /// Requests one instance serves at the same time (1 for a 0.2 handler).
    pub max_concurrent: usize,
    /// An instance idle this long is dropped.
    pub idle_timeout: Duration,
}

impl ReusePolicy {
    /// A fresh instance per request, as for every function without reuse.
    pub const FRESH: ReusePolicy = ReusePolicy {
        max_requests: 1,
        max_concurrent: 1,
        idle_timeout: Duration::ZERO,
    };
}

/// What a request hands the worker that takes it.
pub(crate) struct RequestData {
    pub request_id: Arc<str>,
    /// When the request must have its response.
    pub deadline: Instant,
}

/// Everything a worker needs to make an instance: one per function version.
pub(crate) struct Instances {
    pub pre: ProxyPre<ComponentState>,
    pub engine: wasmtime::Engine,
    pub grants: Arc<Grants>,
    pub name: Arc<str>,
    pub timeout: Duration,
    pub max_memory: u64,
    pub policy: ReusePolicy,
    /// The function's log and metrics: a redeploy hands the previous version's on
    /// (`Function::continue_history_of`), before any request.
    pub log: ArcSwap<FunctionLog>,
    pub metrics: ArcSwap<FunctionMetrics>,
}

/// One worker's bookkeeping: what its instance has done, for its log and its retirement.
pub(crate) struct Worker {
    policy: ReusePolicy,
    name: Arc<str>,
    stdout: CapturePipe,
    stderr: CapturePipe,
    /// When the instance must be idle again: the latest request's deadline (ms since
    /// `epoch`), read by the store's epoch callback.
    busy_until: Arc<AtomicU64>,
    epoch: Instant,
    /// The request whose output the pipes hold now.
    current: Mutex<Option<Arc<str>>>,
    log: Arc<FunctionLog>,
    metrics: Arc<FunctionMetrics>,
    served: AtomicU64,
    /// Set when a request outlived its deadline: the worker then takes no more requests and
    /// retires once the rest are done, and the retirement counts as a timeout.
    expired: Arc<AtomicBool>,
}

/// When an idle instance is dropped, or a stuck one given up.
pub(crate) struct Expiration {
    idle_timeout: Duration,
    stuck_after: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed_for: Option<Instant>,
    /// Whether the worker was idle when last polled, for the `idle` gauge. The handler
    /// polls this only while the worker waits, and marks it idle only once it is
    /// available for the next request.
    idle: bool,
    metrics: Arc<FunctionMetrics>,
}

impl Drop for Expiration {
    fn drop(&mut self) {
        if self.idle {
            self.metrics.instances.set_idle(false);
        }
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let idle = status == WorkerStatus::Idle;
        if idle != self.idle {
            self.idle = idle;
            self.metrics.instances.set_idle(idle);
        }
        let limit = match status {
            WorkerStatus::Idle => self.idle_timeout,
            // A request that outlives its deadline has been answered 504 already; an
            // instance still busy well after the latest request's deadline is stuck.
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.stuck_after,
        };
        let at = start + limit;
        if Instant::now() >= at {
            return Poll::Ready(());
        }
        if self.armed_for != Some(at) {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
            self.armed_for = Some(at);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Worker {
    /// Moves what the instance printed into the function's log, tagged with the request that
    /// was running.
    fn flush(&self) {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(request_id) = current.as_ref() {
            for (stream, pipe) in [
                (Stream::Stdout, &self.stdout),
                (Stream::Stderr, &self.stderr),
            ] {
                let (bytes, dropped) = pipe.take();
                self.log
                    .push_output(&self.name, request_id, stream, &bytes, dropped);
            }
        }
    }
}

impl WorkerState for Worker {
    type StoreData = ComponentState;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.policy.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.policy.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, ComponentState>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        self.flush();
        self.served.fetch_add(1, Ordering::Relaxed);
        let until = data
            .deadline
            .saturating_duration_since(self.epoch)
            .as_millis() as u64;
        self.busy_until.fetch_max(until, Ordering::Relaxed);
        let deadline = data.deadline;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(data.request_id);
        // The handler drops this future when the response comes first; it completes only
        // when the request has expired.
        let expired = self.expired.clone();
        Box::pin(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            expired.store(true, Ordering::Relaxed);
        })
    }

    fn drop(&self, store: Store<ComponentState>, result: wasmtime::Result<()>) {
        let refused = store.data().limiter.refused();
        drop(store);
        self.flush();
        let served = self.served.load(Ordering::Relaxed);
        let expired = self.expired.load(Ordering::Relaxed);
        // A request past its deadline (or the whole instance given up as stuck, which the
        // handler reports as a plain error) is a timeout, whatever the guest did next.
        let failure = match &result {
            Ok(()) if expired => Some(GuestFailure::Timeout),
            Ok(()) => None,
            Err(_) if expired => Some(GuestFailure::Timeout),
            Err(error) => Some(GuestFailure::classify(error, refused)),
        };
        let cause = match &failure {
            None if served >= self.policy.max_requests as u64 => "max_requests",
            None => "idle",
            Some(GuestFailure::Timeout) => "timeout",
            Some(GuestFailure::Trap {
                memory_limit: Some(_),
                ..
            }) => "memory_limit",
            Some(GuestFailure::Trap { .. } | GuestFailure::OutOfFuel) => "trap",
        };
        self.metrics.instances.retired(cause, served);
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(what) = failure
            && let Some(request_id) = current.as_ref()
        {
            let note = if self.policy == ReusePolicy::FRESH {
                format!("the guest {what}")
            } else {
                format!("the instance was retired after {served} request(s): the guest {what}")
            };
            for line in note.lines() {
                self.log.push(&self.name, request_id, Stream::Wedge, line);
            }
        }
    }
}

impl HandlerState for Instances {
    type StoreData = ComponentState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<ComponentState, Expiration, Worker>> {
        let stdout = CapturePipe::new(CAPTURE_LIMIT);
        let stderr = CapturePipe::new(CAPTURE_LIMIT);
        let io = GuestIo {
            stdout: GuestOutput::Capture(stdout.clone()),
            stderr: GuestOutput::Capture(stderr.clone()),
            ..GuestIo::default()
        };
        // Per-request deadlines are the worker's; the capabilities' own bound is the far
        // future here (see the module's notes).
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let id: Arc<str> = Arc::from("instance");
        let info = InstanceInfo {
            function: &self.name,
            request_id: &id,
            deadline: far,
            io: &io,
        };
        let limiter = GuestLimiter::new(&Limits {
            max_memory: Some(self.max_memory),
            ..Limits::default()
        });
        let state = self
            .grants
            .component_state(&info, limiter)
            .map_err(wasmtime::Error::new)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let epoch = Instant::now();
        // Instantiating (the guest's start functions) has the function's timeout too.
        let busy_until = Arc::new(AtomicU64::new(self.timeout.as_millis() as u64));
        let watched = busy_until.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now().saturating_duration_since(epoch).as_millis() as u64;
            // Stuck past the latest request's deadline: trap, which retires the instance.
            if now > watched.load(Ordering::Relaxed) + deadline::TICK.as_millis() as u64 * 4 {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let metrics = self.metrics.load_full();
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        metrics.instantiation.observe(started.elapsed());
        metrics.instances.created();
        Ok(Instance {
            store,
            proxy,
            view: <ComponentState as WasiHttpView>::http,
            expiration: Expiration {
                idle_timeout: self.policy.idle_timeout,
                stuck_after: self.timeout + Duration::from_secs(1),
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                armed_for: None,
                idle: false,
                metrics: metrics.clone(),
            },
            state: Worker {
                policy: self.policy,
                name: self.name.clone(),
                stdout,
                stderr,
                busy_until,
                epoch,
                current: Mutex::new(None),
                log: self.log.load_full(),
                metrics,
                served: AtomicU64::new(0),
                expired: Arc::new(AtomicBool::new(false)),
            },
        })
    }
}
