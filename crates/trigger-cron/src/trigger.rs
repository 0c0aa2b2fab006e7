//! The cron trigger: one task per (function, trigger index) on a runtime of its own, each
//! sleeping until its next firing and calling the function through [`Host::call`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request};
use http_body_util::BodyExt as _;
use jiff::Timestamp;
#[cfg(test)]
use jiff::tz::TimeZone;
use wedge_host::{
    Body, CallContext, FireError, FireFuture, Fired, Function, FunctionKind, FunctionSpec, Host,
    Trigger, TriggerConfig, TriggerConfigError, request_id,
};

use crate::config::{CatchUp, CronConfig, Overlap, not_for_reactors};
use crate::record::{FiringRecord, RecordError, TriggerKey};

/// The longest a schedule task sleeps at once: it then looks at the wall clock again, so a
/// clock set forward or back is noticed within this time.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Headers of each firing's request (docs/triggers.md, "What the function receives").
pub const TRIGGER_HEADER: &str = "x-wedge-trigger";
pub const TRIGGER_INDEX_HEADER: &str = "x-wedge-trigger-index";
pub const SCHEDULED_TIME_HEADER: &str = "x-wedge-scheduled-time";
pub const SCHEDULE_HEADER: &str = "x-wedge-schedule";
pub const TIMEZONE_HEADER: &str = "x-wedge-timezone";
pub const FIRING_HEADER: &str = "x-wedge-firing";

/// How the cron trigger runs.
#[derive(Debug, Clone)]
pub struct CronOptions {
    /// Where the last firings of `catch_up = "last"` triggers are kept (`DATA/triggers`,
    /// file `cron.db`); `None` keeps none, and such triggers are refused.
    pub record_dir: Option<PathBuf>,
    /// How long [`Trigger::stop`] waits for calls in flight.
    pub shutdown_timeout: Duration,
    /// Called first on each thread the trigger starts (the CLI marks its threads as ones
    /// whose panics are contained).
    pub on_thread_start: Option<fn()>,
}

impl Default for CronOptions {
    fn default() -> Self {
        Self {
            record_dir: None,
            shutdown_timeout: Duration::from_secs(10),
            on_thread_start: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CronStartError {
    #[error("cannot open the record of cron firings")]
    Record(#[from] RecordError),
    #[error("cannot start the cron trigger's thread")]
    Thread(#[source] std::io::Error),
}

/// Why a call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its scheduled time came.
    Scheduled,
    /// It was missed while the node was down (`catch_up = "last"`).
    CatchUp,
    /// `POST .../triggers/{i}/fire`.
    Manual,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Scheduled => "scheduled",
            Cause::CatchUp => "catch-up",
            Cause::Manual => "manual",
        }
    }
}

/// One firing: the time it was due and the configuration it fires with.
#[derive(Debug, Clone)]
struct Firing {
    scheduled: Timestamp,
    cause: Cause,
    config: Arc<CronConfig>,
}

impl Firing {
    /// The scheduled time in RFC 3339, with the offset of the trigger's time zone then.
    fn scheduled_text(&self) -> String {
        let offset = self.config.zone.tz.to_offset(self.scheduled);
        self.scheduled.display_with_offset(offset).to_string()
    }
}

/// The request a firing sends: `POST {path}` with headers naming the trigger and the
/// scheduled time, and the same facts as a small JSON body.
fn firing_request(firing: &Firing, index: usize) -> Result<Request<Body>, http::Error> {
    let scheduled = firing.scheduled_text();
    let config = &firing.config;
    let body = serde_json::json!({
        "trigger": "cron",
        "index": index,
        "schedule": config.schedule.as_str(),
        "timezone": config.zone.name,
        "scheduled_time": scheduled,
        "firing": firing.cause.as_str(),
    })
    .to_string();
    let header = |text: &str| {
        // Schedules and zone names are checked ASCII; never fail a firing on a header.
        HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("?"))
    };
    Request::builder()
        .method(Method::POST)
        .uri(config.path.as_str())
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(TRIGGER_HEADER, "cron")
        .header(TRIGGER_INDEX_HEADER, index)
        .header(SCHEDULED_TIME_HEADER, header(&scheduled))
        .header(SCHEDULE_HEADER, header(config.schedule.as_str()))
        .header(TIMEZONE_HEADER, header(&config.zone.name))
        .header(FIRING_HEADER, firing.cause.as_str())
        .body(wedge_host::response::full(body))
}

/// The counters and gauges of one trigger (`/_wedge/metrics`).
#[derive(Debug)]
struct TriggerMetrics {
    firings: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    /// Unix seconds; `NONE` until there is one.
    last_firing: AtomicI64,
    next_firing: AtomicI64,
}

const NONE: i64 = i64::MIN;

impl Default for TriggerMetrics {
    fn default() -> Self {
        Self {
            firings: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_firing: AtomicI64::new(NONE),
            next_firing: AtomicI64::new(NONE),
        }
    }
}

/// What a trigger keeps across redeploys and schedule changes: its metrics and whether a
/// firing of it is running (so a changed schedule does not overlap the previous one's call).
#[derive(Debug)]
struct Slot {
    key: TriggerKey,
    metrics: TriggerMetrics,
    state: Mutex<SlotState>,
    /// The scheduled time it last reached (unix seconds), so that a schedule started anew
    /// never fires a time the previous one already did.
    last_scheduled: AtomicI64,
}

#[derive(Debug, Default)]
struct SlotState {
    running: bool,
    queued: Option<Firing>,
    removed: bool,
}

impl Slot {
    fn new(key: TriggerKey) -> Self {
        Self {
            key,
            metrics: TriggerMetrics::default(),
            state: Mutex::default(),
            last_scheduled: AtomicI64::new(NONE),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The function a trigger calls: swapped in place by a redeploy, read at each firing.
type CurrentFunction = Arc<Mutex<Arc<Function>>>;

fn current(function: &CurrentFunction) -> Arc<Function> {
    function.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One served trigger.
struct Served {
    config: Arc<CronConfig>,
    function: CurrentFunction,
    slot: Arc<Slot>,
    task: tokio::task::AbortHandle,
}

/// Calls in flight, for `stop` to wait on.
#[derive(Default)]
struct Calls {
    count: Mutex<usize>,
    idle: Condvar,
}

struct CallGuard(Arc<Inner>);

impl CallGuard {
    fn new(inner: &Arc<Inner>) -> Self {
        *inner.calls.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Self(inner.clone())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut count = self.0.calls.count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        self.0.calls.idle.notify_all();
    }
}

struct Inner {
    host: Arc<Host>,
    runtime: tokio::runtime::Handle,
    record: Option<Arc<FiringRecord>>,
    schedules: Mutex<BTreeMap<TriggerKey, Served>>,
    /// Reactor functions already reported as no cron target (by version), so each is
    /// logged once, not at every publish.
    refused: Mutex<HashSet<usize>>,
    calls: Calls,
    stopping: AtomicBool,
}

impl Inner {
    fn schedules(&self) -> MutexGuard<'_, BTreeMap<TriggerKey, Served>> {
        self.schedules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cron trigger of a node.
pub struct CronTrigger {
    inner: Arc<Inner>,
    shutdown_timeout: Duration,
    thread: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    >,
}

impl CronTrigger {
    /// Opens the record of firings and starts the trigger's thread; nothing is scheduled
    /// until the first [`Trigger::publish`].
    pub fn start(host: Arc<Host>, options: CronOptions) -> Result<Arc<Self>, CronStartError> {
        let record = match &options.record_dir {
            Some(dir) => Some(Arc::new(FiringRecord::open(dir)?)),
            None => None,
        };
        let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
        let (shutdown, shut_down) = tokio::sync::oneshot::channel::<()>();
        let on_thread_start = options.on_thread_start;
        let thread = std::thread::Builder::new()
            .name("wedge-cron".into())
            .spawn(move || {
                if let Some(start) = on_thread_start {
                    start();
                }
                let mut builder = tokio::runtime::Builder::new_current_thread();
                builder.enable_all();
                if let Some(start) = on_thread_start {
                    builder.on_thread_start(start);
                }
                let runtime = match builder.build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = handle_sender.send(Err(error));
                        return;
                    }
                };
                let _ = handle_sender.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let _ = shut_down.await;
                });
                // Whatever is left (nothing, after `stop`) is dropped with the runtime.
                runtime.shutdown_background();
            })
            .map_err(CronStartError::Thread)?;
        let runtime = match handle_receiver.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(error)) => return Err(CronStartError::Thread(error)),
            Err(_) => {
                return Err(CronStartError::Thread(std::io::Error::other(
                    "the cron thread ended before its runtime started",
                )));
            }
        };
        Ok(Arc::new(Self {
            inner: Arc::new(Inner {
                host,
                runtime,
                record,
                schedules: Mutex::default(),
                refused: Mutex::default(),
                calls: Calls::default(),
                stopping: AtomicBool::new(false),
            }),
            shutdown_timeout: options.shutdown_timeout,
            thread: Mutex::new(Some((shutdown, thread))),
        }))
    }

    /// The triggers it serves now, with their next firing (for tests and diagnostics).
    pub fn scheduled(&self) -> Vec<(TriggerKey, Option<Timestamp>)> {
        self.inner
            .schedules()
            .iter()
            .map(|(key, schedule)| {
                let next = schedule.slot.metrics.next_firing.load(Ordering::Relaxed);
                (
                    key.clone(),
                    (next != NONE)
                        .then(|| Timestamp::from_second(next).ok())
                        .flatten(),
                )
            })
            .collect()
    }

    fn start_schedule(
        &self,
        slot: Arc<Slot>,
        config: Arc<CronConfig>,
        function: CurrentFunction,
        catch_up_since: Option<Timestamp>,
    ) -> tokio::task::AbortHandle {
        let inner = self.inner.clone();
        self.inner
            .runtime
            .spawn(run_schedule(inner, slot, config, function, catch_up_since))
            .abort_handle()
    }
}

impl Trigger for CronTrigger {
    fn kind(&self) -> &'static str {
        "cron"
    }

    fn check(
        &self,
        function: &FunctionSpec,
        config: &TriggerConfig,
    ) -> Result<(), TriggerConfigError> {
        let config = CronConfig::parse(function, config)?;
        if config.catch_up == CatchUp::Last && self.inner.record.is_none() {
            return Err(TriggerConfigError::new(
                "catch_up",
                "\"last\" needs a data directory to keep the last firing in, and this server has none; use \"none\"",
            ));
        }
        Ok(())
    }

    fn check_loaded(
        &self,
        function: &Function,
        _config: &TriggerConfig,
    ) -> Result<(), TriggerConfigError> {
        // The kind is known only now: a reactor has no HTTP handler for a firing to call.
        if function.kind == FunctionKind::Reactor {
            return Err(not_for_reactors(&function.spec.name));
        }
        Ok(())
    }

    fn publish(&self, functions: &[Arc<Function>]) {
        let mut wanted: BTreeMap<TriggerKey, (Arc<Function>, CronConfig)> = BTreeMap::new();
        for function in functions {
            for (index, table) in function.spec.triggers_of("cron") {
                if function.kind == FunctionKind::Reactor {
                    // Only the binary tells a reactor apart, after `check`: it is not
                    // scheduled, and said so once per version.
                    let version = Arc::as_ptr(function) as usize;
                    let mut refused = self.inner.refused.lock().unwrap_or_else(|p| p.into_inner());
                    if refused.insert(version) {
                        tracing::error!(
                            target: "wedge::trigger",
                            trigger = "cron",
                            function = %function.spec.name,
                            index,
                            "not scheduled: {}",
                            not_for_reactors(&function.spec.name).problem
                        );
                    }
                    continue;
                }
                match CronConfig::parse(&function.spec, table) {
                    Ok(config) => {
                        wanted.insert(
                            (function.spec.name.clone(), index),
                            (function.clone(), config),
                        );
                    }
                    // Every table was checked before its function was accepted.
                    Err(error) => tracing::error!(
                        target: "wedge::trigger",
                        trigger = "cron",
                        function = %function.spec.name,
                        index,
                        %error,
                        "not scheduled: its table is invalid"
                    ),
                }
            }
        }
        let mut schedules = self.inner.schedules();
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let removed: Vec<TriggerKey> = schedules
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        for key in removed {
            if let Some(schedule) = schedules.remove(&key) {
                schedule.task.abort();
                let mut state = schedule.slot.state();
                state.removed = true;
                state.queued = None;
            }
        }
        let mut catching_up = BTreeSet::new();
        for (key, (function, config)) in wanted {
            if config.catch_up == CatchUp::Last {
                catching_up.insert(key.clone());
            }
            match schedules.get_mut(&key) {
                Some(schedule) => {
                    // A redeploy: the next firing calls the new version.
                    *schedule.function.lock().unwrap_or_else(|p| p.into_inner()) = function;
                    if *schedule.config != config {
                        schedule.task.abort();
                        schedule.config = Arc::new(config);
                        schedule.task = self.start_schedule(
                            schedule.slot.clone(),
                            schedule.config.clone(),
                            schedule.function.clone(),
                            None,
                        );
                    }
                }
                None => {
                    // First seen by this process (start-up, or a new deploy): what did it
                    // miss while the node was down?
                    let catch_up_since = match (&self.inner.record, config.catch_up) {
                        (Some(record), CatchUp::Last) => match record.last(&key) {
                            Ok(last) => last,
                            Err(error) => {
                                tracing::error!(target: "wedge::trigger", trigger = "cron", function = %key.0, index = key.1, error = %error_chain(&error), "cannot read the last firing; nothing is caught up");
                                None
                            }
                        },
                        _ => None,
                    };
                    let slot = Arc::new(Slot::new(key.clone()));
                    let config = Arc::new(config);
                    let function = Arc::new(Mutex::new(function));
                    let task = self.start_schedule(
                        slot.clone(),
                        config.clone(),
                        function.clone(),
                        catch_up_since,
                    );
                    schedules.insert(
                        key,
                        Served {
                            config,
                            function,
                            slot,
                            task,
                        },
                    );
                }
            }
        }
        drop(schedules);
        if let Some(record) = &self.inner.record
            && let Err(error) = record.retain(&catching_up)
        {
            tracing::warn!(target: "wedge::trigger", trigger = "cron", error = %error_chain(&error), "cannot forget the firings of removed triggers");
        }
    }

    fn fire(&self, function: &Arc<Function>, index: usize) -> FireFuture {
        let key = (function.spec.name.clone(), index);
        let found = self
            .inner
            .schedules()
            .get(&key)
            .map(|schedule| (schedule.config.clone(), schedule.slot.clone()));
        let inner = self.inner.clone();
        let function = function.clone();
        Box::pin(async move {
            let Some((config, slot)) = found else {
                return Err(FireError::NoSuchTrigger {
                    function: key.0,
                    index,
                    kind: "cron".into(),
                });
            };
            let firing = Firing {
                scheduled: Timestamp::from_second(Timestamp::now().as_second())
                    .unwrap_or_else(|_| Timestamp::now()),
                cause: Cause::Manual,
                config,
            };
            let _call = CallGuard::new(&inner);
            Ok(call(&inner, &function, &slot, &firing).await)
        })
    }

    fn render_metrics(&self, out: &mut String) {
        crate::metrics::render(
            out,
            self.inner.schedules().values().map(|schedule| {
                let m = &schedule.slot.metrics;
                crate::metrics::TriggerSample {
                    function: &schedule.slot.key.0,
                    index: schedule.slot.key.1,
                    firings: m.firings.load(Ordering::Relaxed),
                    skipped: m.skipped.load(Ordering::Relaxed),
                    failed: m.failed.load(Ordering::Relaxed),
                    last_firing: Some(m.last_firing.load(Ordering::Relaxed)).filter(|t| *t != NONE),
                    next_firing: Some(m.next_firing.load(Ordering::Relaxed)).filter(|t| *t != NONE),
                }
            }),
        );
    }

    fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for schedule in self.inner.schedules().values() {
            schedule.task.abort();
            schedule.slot.state().queued = None;
        }
        let count = self
            .inner
            .calls
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (count, waited) = self
            .inner
            .calls
            .idle
            .wait_timeout_while(count, self.shutdown_timeout, |count| *count > 0)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            tracing::warn!(
                target: "wedge::trigger",
                trigger = "cron",
                calls = *count,
                timeout = ?self.shutdown_timeout,
                "cron calls still running at the shutdown timeout are cut off"
            );
        }
        drop(count);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((shutdown, thread)) = thread {
            let _ = shutdown.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for CronTrigger {
    fn drop(&mut self) {
        // Without `stop` (a failed start-up), the thread still ends.
        if let Some((shutdown, _)) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = shutdown.send(());
        }
    }
}

/// An error and its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The life of one schedule: catch up once if it missed a firing while the node was down,
/// then sleep until each next firing and dispatch it.
async fn run_schedule(
    inner: Arc<Inner>,
    slot: Arc<Slot>,
    config: Arc<CronConfig>,
    function: CurrentFunction,
    catch_up_since: Option<Timestamp>,
) {
    let tz = &config.zone.tz;
    let now = Timestamp::now();
    if let Some(since) = catch_up_since
        && let Some(missed) = config.schedule.latest_between(since, now, tz)
    {
        let firing = Firing {
            scheduled: missed,
            cause: Cause::CatchUp,
            config: config.clone(),
        };
        tracing::info!(
            target: "wedge::trigger",
            trigger = "cron",
            function = %slot.key.0,
            index = slot.key.1,
            scheduled_time = %firing.scheduled_text(),
            "catching up a firing missed while the node was down"
        );
        dispatch(&inner, &slot, &function, firing);
    }
    let last = slot.last_scheduled.load(Ordering::SeqCst);
    let mut after = match Timestamp::from_second(last) {
        Ok(last) if last > now => last,
        _ => now,
    };
    loop {
        let Some(next) = config.schedule.next_after(after, tz) else {
            slot.metrics.next_firing.store(NONE, Ordering::Relaxed);
            tracing::warn!(
                target: "wedge::trigger",
                trigger = "cron",
                function = %slot.key.0,
                index = slot.key.1,
                schedule = %config.schedule,
                "the schedule has no firing in the next ten years; it is not running"
            );
            return;
        };
        slot.metrics
            .next_firing
            .store(next.as_second(), Ordering::Relaxed);
        sleep_until(next).await;
        let firing = Firing {
            scheduled: next,
            cause: Cause::Scheduled,
            config: config.clone(),
        };
        dispatch(&inner, &slot, &function, firing);
        // A node that stalled (suspended, overloaded) or a clock set forward does not run
        // every overdue firing late, one after another: it goes on from now.
        let now = Timestamp::now();
        after = match Timestamp::from_second(now.as_second() - 1) {
            Ok(recent) if recent > next => {
                tracing::warn!(
                    target: "wedge::trigger",
                    trigger = "cron",
                    function = %slot.key.0,
                    index = slot.key.1,
                    scheduled_time = %Firing { scheduled: next, cause: Cause::Scheduled, config: config.clone() }.scheduled_text(),
                    "fell behind the schedule; firings due until a second ago are dropped"
                );
                recent
            }
            _ => next,
        };
    }
}

/// Sleeps until the wall clock reaches `at`, looking again at least every `MAX_SLEEP`.
async fn sleep_until(at: Timestamp) {
    loop {
        let left = Timestamp::now().duration_until(at);
        if left.is_zero() || left.is_negative() {
            return;
        }
        let left = Duration::try_from(left).unwrap_or(MAX_SLEEP);
        tokio::time::sleep(left.min(MAX_SLEEP)).await;
    }
}

/// Runs a due firing, or queues or skips it while the previous one of its trigger runs.
///
/// Not `async`: the schedule's task may be aborted (a changed schedule) at any await, and a
/// firing it has reached must then still run; so everything after the decision happens in a
/// task of its own, which nothing aborts.
fn dispatch(inner: &Arc<Inner>, slot: &Arc<Slot>, function: &CurrentFunction, firing: Firing) {
    slot.last_scheduled
        .store(firing.scheduled.as_second(), Ordering::SeqCst);
    {
        let mut state = slot.state();
        if state.removed {
            return;
        }
        if state.running {
            if firing.config.overlap == Overlap::Queue && state.queued.is_none() {
                state.queued = Some(firing);
                return;
            }
            drop(state);
            slot.metrics.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "wedge::trigger",
                trigger = "cron",
                function = %slot.key.0,
                index = slot.key.1,
                scheduled_time = %firing.scheduled_text(),
                overlap = match firing.config.overlap { Overlap::Skip => "skip", Overlap::Queue => "queue" },
                "firing skipped: the previous firing of this trigger is still running"
            );
            // A skipped firing was not missed: a restart does not catch it up.
            let (inner, slot) = (inner.clone(), slot.clone());
            inner
                .runtime
                .clone()
                .spawn(async move { record(&inner, &slot, &firing).await });
            return;
        }
        state.running = true;
    }
    let guard = CallGuard::new(inner);
    let inner = inner.clone();
    let slot = slot.clone();
    let function = function.clone();
    inner.runtime.clone().spawn(async move {
        let _guard = guard;
        let mut firing = firing;
        loop {
            // Recorded before the call: a crash during it does not run it again (at most once).
            record(&inner, &slot, &firing).await;
            call(&inner, &current(&function), &slot, &firing).await;
            let mut state = slot.state();
            match state.queued.take() {
                Some(queued) if !state.removed => firing = queued,
                _ => {
                    state.running = false;
                    return;
                }
            }
        }
    });
}

/// Writes a `catch_up = "last"` trigger's firing to the record, durably.
async fn record(inner: &Inner, slot: &Slot, firing: &Firing) {
    if firing.config.catch_up != CatchUp::Last {
        return;
    }
    let Some(record) = inner.record.clone() else {
        return;
    };
    let key = slot.key.clone();
    let scheduled = firing.scheduled;
    match tokio::task::spawn_blocking(move || record.set(&key, scheduled)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(target: "wedge::trigger", trigger = "cron", function = %slot.key.0, index = slot.key.1, error = %error_chain(&error), "cannot record the firing; after a restart it may run again")
        }
        Err(error) => {
            tracing::error!(target: "wedge::trigger", trigger = "cron", function = %slot.key.0, index = slot.key.1, %error, "cannot record the firing")
        }
    }
}

/// Calls the function for one firing, through the host (admission, a fresh instance, the
/// deadline, the function's metrics and log), reads the response to its end, and counts and
/// logs the outcome.
async fn call(inner: &Inner, function: &Arc<Function>, slot: &Slot, firing: &Firing) -> Fired {
    let request_id = request_id::next();
    let started = Instant::now();
    let index = slot.key.1;
    let status = match firing_request(firing, index) {
        Ok(request) => {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let context = CallContext {
                request_id: request_id.clone(),
                route: function.spec.route().unwrap_or("/").to_string(),
                local: loopback,
                remote: loopback,
            };
            let response = inner.host.call(function, request, context).await;
            let status = response.status().as_u16();
            // The call ends when the guest has written all of its body.
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
            status
        }
        Err(error) => {
            tracing::error!(target: "wedge::trigger", trigger = "cron", function = %function.spec.name, index, %error, path = %firing.config.path, "cannot build the firing's request");
            500
        }
    };
    let metrics = &slot.metrics;
    metrics.firings.fetch_add(1, Ordering::Relaxed);
    metrics
        .last_firing
        .store(firing.scheduled.as_second(), Ordering::Relaxed);
    let failed = !(200..300).contains(&status);
    if failed {
        metrics.failed.fetch_add(1, Ordering::Relaxed);
    }
    let duration_us = started.elapsed().as_micros() as u64;
    let scheduled_time = firing.scheduled_text();
    if failed {
        tracing::warn!(target: "wedge::trigger", trigger = "cron", function = %function.spec.name, index, scheduled_time, firing = firing.cause.as_str(), status, duration_us, request_id, "cron firing failed");
    } else {
        tracing::info!(target: "wedge::trigger", trigger = "cron", function = %function.spec.name, index, scheduled_time, firing = firing.cause.as_str(), status, duration_us, request_id, "cron firing");
    }
    Fired { status, request_id }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use wedge_engine::WedgeEngine;
    use wedge_engine::program::Loader;
    use wedge_host::{GrantConfig, HostLimits, Services, TriggerSpec, serving_engine_options};

    fn guest_bytes(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/guests")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "guest {} is missing ({error}): build the guests with scripts/build-guests.sh (scripts/test.sh does)",
                path.display()
            )
        })
    }

    fn host() -> Arc<Host> {
        let limits = HostLimits {
            max_concurrency: 16,
            ..HostLimits::default()
        };
        let engine = WedgeEngine::new(serving_engine_options(&limits, 64 << 20)).expect("engine");
        // `http` components import wasi:http's types whether or not they call out.
        let services = Services {
            http: wedge_capabilities::http_outbound::OutboundOffer { offered: true },
            ..Services::default()
        };
        Host::new(engine, services, limits)
    }

    fn table(json: &str) -> TriggerConfig {
        serde_json::from_str(json).expect("JSON table")
    }

    /// A function `name` of `bytes` with one cron trigger (index 0).
    fn function(host: &Host, name: &str, bytes: &[u8], cron: &str) -> Arc<Function> {
        let spec = FunctionSpec {
            name: name.into(),
            kind: None,
            triggers: vec![TriggerSpec::Other {
                kind: "cron".into(),
                config: table(cron),
            }],
            timeout: Duration::from_secs(5),
            max_memory: 64 << 20,
            max_concurrency: None,
            reuse: None,
            scope: wedge_capabilities::names::Scope::new("app").expect("scope"),
            grants: GrantConfig::default(),
        };
        let (program, _) = Loader::new(host.engine(), None)
            .load(bytes)
            .expect("compile");
        Arc::new(Function::load(host.engine(), spec, program, host.services()).expect("load"))
    }

    fn probe(host: &Host, cron: &str) -> Arc<Function> {
        function(host, "job", &guest_bytes("http-probe.wasm"), cron)
    }

    fn config_of(function: &Function) -> Arc<CronConfig> {
        let (_, table) = function
            .spec
            .triggers_of("cron")
            .next()
            .expect("a cron trigger");
        Arc::new(CronConfig::parse(&function.spec, table).expect("valid"))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn trigger(host: Arc<Host>, record_dir: Option<&Path>) -> Arc<CronTrigger> {
        CronTrigger::start(
            host,
            CronOptions {
                record_dir: record_dir.map(Path::to_path_buf),
                ..CronOptions::default()
            },
        )
        .expect("start")
    }

    fn slot_of(trigger: &CronTrigger, name: &str) -> Arc<Slot> {
        trigger.inner.schedules()[&(name.to_string(), 0)]
            .slot
            .clone()
    }

    fn task_id(trigger: &CronTrigger, name: &str) -> tokio::task::Id {
        trigger.inner.schedules()[&(name.to_string(), 0)].task.id()
    }

    /// Waits (bounded) until `done` holds.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_firing_reaches_the_guest_as_a_post_with_headers_naming_it_and_a_json_body() {
        let host = host();
        let function = probe(
            &host,
            r#"{"schedule": "30 2 * * *", "timezone": "Europe/Berlin", "path": "/echo?x=1"}"#,
        );
        let firing = Firing {
            scheduled: "2026-03-29T01:00:00Z".parse().unwrap(),
            cause: Cause::Scheduled,
            config: config_of(&function),
        };
        let request = firing_request(&firing, 0).expect("request");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let context = CallContext {
            request_id: "r-1".into(),
            route: "/".into(),
            local: loopback,
            remote: loopback,
        };
        let (headers, body) = runtime().block_on(async {
            let response = host.call(&function, request, context).await;
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (headers, body)
        });
        let echoed = |name: &str| {
            headers
                .get(format!("x-echo-h-{name}"))
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert_eq!(headers["x-echo-method"], "POST");
        assert_eq!(headers["x-echo-uri"], "/echo?x=1");
        assert_eq!(echoed("x-wedge-trigger"), "cron");
        assert_eq!(echoed("x-wedge-trigger-index"), "0");
        // 02:30 did not exist that day: the firing is at the end of the gap, 03:00 CEST.
        assert_eq!(
            echoed("x-wedge-scheduled-time"),
            "2026-03-29T03:00:00+02:00"
        );
        assert_eq!(echoed("x-wedge-schedule"), "30 2 * * *");
        assert_eq!(echoed("x-wedge-timezone"), "Europe/Berlin");
        assert_eq!(echoed("x-wedge-firing"), "scheduled");
        assert_eq!(echoed("content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({
                "trigger": "cron",
                "index": 0,
                "schedule": "30 2 * * *",
                "timezone": "Europe/Berlin",
                "scheduled_time": "2026-03-29T03:00:00+02:00",
                "firing": "scheduled",
            })
        );
    }

    #[test]
    fn publish_keeps_an_unchanged_schedule_running_and_restarts_a_changed_one() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let yearly = r#"{"schedule": "@yearly", "path": "/status?code=204"}"#;
        let first = probe(&host, yearly);
        cron.publish(std::slice::from_ref(&first));
        wait_until("the next firing is known", || {
            cron.scheduled()
                .first()
                .is_some_and(|(_, next)| next.is_some())
        });
        let task = task_id(&cron, "job");
        let slot = slot_of(&cron, "job");
        // A redeploy of the same schedule: the same task goes on, with the new version.
        let second = probe(&host, yearly);
        cron.publish(std::slice::from_ref(&second));
        assert_eq!(task_id(&cron, "job"), task);
        let current_version = current(&cron.inner.schedules()[&("job".to_string(), 0)].function);
        assert!(Arc::ptr_eq(&current_version, &second));
        // A changed schedule starts anew, keeping its metrics.
        let third = probe(
            &host,
            r#"{"schedule": "0 0 1 7 *", "path": "/status?code=204"}"#,
        );
        cron.publish(std::slice::from_ref(&third));
        assert_ne!(task_id(&cron, "job"), task);
        assert!(Arc::ptr_eq(&slot_of(&cron, "job"), &slot));
        wait_until("the new next firing", || {
            cron.scheduled()
                .first()
                .and_then(|(_, next)| *next)
                .is_some_and(|next| next.to_zoned_datetime(TimeZone::UTC).month() == 7)
        });
        // Removed: nothing is scheduled.
        cron.publish(&[]);
        assert!(cron.scheduled().is_empty());
        cron.stop();
    }

    #[test]
    fn fire_runs_one_now_and_answers_the_status_and_request_id() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let job = probe(
            &host,
            r#"{"schedule": "@yearly", "path": "/status?code=202"}"#,
        );
        cron.publish(std::slice::from_ref(&job));
        let fired = runtime().block_on(cron.fire(&job, 0)).expect("fired");
        assert_eq!(fired.status, 202);
        assert!(!fired.request_id.is_empty());
        let slot = slot_of(&cron, "job");
        assert_eq!(slot.metrics.firings.load(Ordering::Relaxed), 1);
        assert_eq!(slot.metrics.failed.load(Ordering::Relaxed), 0);
        let error = runtime()
            .block_on(cron.fire(&job, 3))
            .expect_err("no trigger 3");
        assert_eq!(
            error.to_string(),
            "function `job` has no trigger 3 of kind `cron` being served"
        );
        // A failed call is counted as failed.
        let failing = probe(&host, r#"{"schedule": "@yearly", "path": "/trap"}"#);
        cron.publish(std::slice::from_ref(&failing));
        let fired = runtime().block_on(cron.fire(&failing, 0)).expect("fired");
        assert_eq!(fired.status, 500);
        assert_eq!(slot.metrics.failed.load(Ordering::Relaxed), 1);
        let mut out = String::new();
        cron.render_metrics(&mut out);
        assert!(
            out.contains("wedge_cron_firings_total{function=\"job\",trigger=\"0\"} 2"),
            "{out}"
        );
        cron.stop();
    }

    /// Dispatches firings of `function` by hand (due now), as its schedule would.
    fn dispatch_now(cron: &CronTrigger, function: &Arc<Function>) {
        let schedules = cron.inner.schedules();
        let schedule = &schedules[&(function.spec.name.clone(), 0)];
        let firing = Firing {
            scheduled: Timestamp::now(),
            cause: Cause::Scheduled,
            config: schedule.config.clone(),
        };
        let (slot, current) = (schedule.slot.clone(), schedule.function.clone());
        drop(schedules);
        dispatch(&cron.inner, &slot, &current, firing);
    }

    #[test]
    fn overlap_skip_skips_and_queue_runs_one_after_the_other() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let skip = function(
            &host,
            "skip",
            &guest_bytes("http-probe.wasm"),
            r#"{"schedule": "@yearly", "path": "/sleep?ms=400"}"#,
        );
        let queue = function(
            &host,
            "queue",
            &guest_bytes("http-probe.wasm"),
            r#"{"schedule": "@yearly", "path": "/sleep?ms=400", "overlap": "queue"}"#,
        );
        cron.publish(&[skip.clone(), queue.clone()]);
        for _ in 0..3 {
            dispatch_now(&cron, &skip);
            dispatch_now(&cron, &queue);
        }
        let skipped = slot_of(&cron, "skip");
        let queued = slot_of(&cron, "queue");
        wait_until("both are idle", || {
            !skipped.state().running && !queued.state().running
        });
        // skip: one ran, two were skipped; queue: one ran, one waited and ran, one skipped.
        assert_eq!(skipped.metrics.firings.load(Ordering::Relaxed), 1);
        assert_eq!(skipped.metrics.skipped.load(Ordering::Relaxed), 2);
        assert_eq!(queued.metrics.firings.load(Ordering::Relaxed), 2);
        assert_eq!(queued.metrics.skipped.load(Ordering::Relaxed), 1);
        cron.stop();
    }

    #[test]
    fn stop_lets_a_call_in_flight_finish() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let job = probe(&host, r#"{"schedule": "@yearly", "path": "/sleep?ms=300"}"#);
        cron.publish(std::slice::from_ref(&job));
        dispatch_now(&cron, &job);
        let slot = slot_of(&cron, "job");
        assert!(slot.state().running);
        cron.stop();
        assert_eq!(slot.metrics.firings.load(Ordering::Relaxed), 1);
        assert_eq!(slot.metrics.failed.load(Ordering::Relaxed), 0);
        // Stopped: a publish schedules nothing.
        cron.publish(std::slice::from_ref(&job));
    }

    #[test]
    fn catch_up_last_runs_the_last_missed_firing_once_when_first_seen() {
        let host = host();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("triggers");
        // Down for more than a year: a yearly job missed (at least) last New Year.
        let long_ago = Timestamp::from_second(Timestamp::now().as_second() - 400 * 86_400).unwrap();
        {
            let record = FiringRecord::open(&dir).unwrap();
            record.set(&("job".into(), 0), long_ago).unwrap();
            record.set(&("dropped".into(), 0), long_ago).unwrap();
        }
        let cron = trigger(host.clone(), Some(&dir));
        let job = probe(
            &host,
            r#"{"schedule": "@yearly", "catch_up": "last", "path": "/status?code=204"}"#,
        );
        let dropped = function(
            &host,
            "dropped",
            &guest_bytes("http-probe.wasm"),
            r#"{"schedule": "@yearly", "path": "/status?code=204"}"#,
        );
        cron.publish(&[job.clone(), dropped.clone()]);
        let slot = slot_of(&cron, "job");
        wait_until("the catch-up ran", || {
            slot.metrics.firings.load(Ordering::Relaxed) == 1 && !slot.state().running
        });
        // It ran for the latest missed time, which is now the recorded one.
        let latest = crate::Schedule::parse("@yearly")
            .unwrap()
            .latest_between(long_ago, Timestamp::now(), &TimeZone::UTC)
            .unwrap();
        assert_eq!(
            slot.metrics.last_firing.load(Ordering::Relaxed),
            latest.as_second()
        );
        let record = cron.inner.record.clone().unwrap();
        assert_eq!(record.last(&("job".into(), 0)).unwrap(), Some(latest));
        // `catch_up = "none"`: nothing ran, and its old record is gone.
        assert_eq!(
            slot_of(&cron, "dropped")
                .metrics
                .firings
                .load(Ordering::Relaxed),
            0
        );
        assert_eq!(record.last(&("dropped".into(), 0)).unwrap(), None);
        // Published again (a redeploy): no second catch-up.
        cron.publish(&[job, dropped]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(slot.metrics.firings.load(Ordering::Relaxed), 1);
        cron.stop();
    }

    #[test]
    fn catch_up_last_needs_a_data_directory() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let job = probe(&host, r#"{"schedule": "@daily"}"#);
        let error = cron
            .check(
                &job.spec,
                &table(r#"{"schedule": "@daily", "catch_up": "last"}"#),
            )
            .expect_err("no record");
        assert_eq!(error.key, "catch_up");
        cron.stop();
    }

    #[test]
    fn a_reactor_module_is_not_scheduled() {
        let host = host();
        let cron = trigger(host.clone(), None);
        let wat = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reactor.wat"),
        )
        .unwrap();
        let reactor = function(&host, "lib", &wat, r#"{"schedule": "@daily"}"#);
        assert_eq!(reactor.kind, FunctionKind::Reactor);
        cron.publish(std::slice::from_ref(&reactor));
        assert!(cron.scheduled().is_empty());
        let error = runtime()
            .block_on(cron.fire(&reactor, 0))
            .expect_err("not served");
        assert!(matches!(error, FireError::NoSuchTrigger { .. }));
        cron.stop();
    }
}
