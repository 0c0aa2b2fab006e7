//! wedge-trigger-queue: delivers the messages of durable queues to functions.
//!
//! Each `{ type = "queue", ... }` trigger of a served function is one consumer: a task that
//! leases a batch of messages, delivers them (up to `concurrency` at once) through
//! [`wedge_host::Host::call`] (or `call_export` for a stream function), and settles the whole
//! batch in one transaction: acknowledged, retried with exponential backoff and jitter, or
//! dead-lettered after `max_retries` ([`deliver`]). Delivery is at least once: a consumer that
//! dies (a crash, a `kill -9`) leaves its leases to expire and the messages come back.
//!
//! The consumers follow what is published: a redeploy hands a consumer the new version for
//! its next batch (the batch in flight finishes on the old one), a removed function's consumer
//! stops after its batch, a changed trigger table restarts its consumer.

pub mod config;
pub mod deliver;
mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use wedge_capabilities::queue::{QueueId, Queues, ReceiveOptions};
use wedge_host::{
    Function, FunctionKind, FunctionSpec, Host, Trigger, TriggerConfig, TriggerConfigError,
};

use crate::config::{Delivery, QueueTriggerConfig};
use crate::deliver::Target;
use crate::metrics::ConsumerMetrics;

/// How long an idle consumer waits before it looks again (a send on this node wakes it
/// earlier; this bounds how late a delayed retry or a send from elsewhere is seen).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How long a consumer waits after its backend failed before it tries again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// A lease outlasts the function's timeout by this much, so a call that runs to its
/// deadline is settled before anyone else may take its message.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often a consumer refreshes its queue's depth for the metrics.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Which trigger of which function a consumer serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConsumerKey {
    function: String,
    index: usize,
}

struct Consumer {
    config: QueueTriggerConfig,
    /// The version it delivers to, swapped by `publish`.
    function: Arc<ArcSwap<Function>>,
    stop: watch::Sender<bool>,
    metrics: Arc<ConsumerMetrics>,
}

/// The queue trigger of one node.
pub struct QueueTrigger {
    host: Arc<Host>,
    /// Where consumers run (wedge serve's queue runtime).
    runtime: Handle,
    consumers: Mutex<HashMap<ConsumerKey, Consumer>>,
}

impl QueueTrigger {
    pub fn new(host: Arc<Host>, runtime: Handle) -> Arc<Self> {
        Arc::new(Self {
            host,
            runtime,
            consumers: Mutex::default(),
        })
    }

    fn queues(&self) -> Option<Arc<Queues>> {
        self.host.services().queue.clone()
    }

    fn start(
        &self,
        key: ConsumerKey,
        config: QueueTriggerConfig,
        function: Arc<Function>,
    ) -> Option<Consumer> {
        let queues = self.queues()?;
        let (stop, stopped) = watch::channel(false);
        let function = Arc::new(ArcSwap::new(function));
        let metrics = Arc::new(ConsumerMetrics::default());
        let queue = QueueId::of(&function.load().spec.scope, &config.queue);
        let task = ConsumerTask {
            host: self.host.clone(),
            queues,
            queue,
            index: key.index,
            config: config.clone(),
            function: function.clone(),
            metrics: metrics.clone(),
        };
        self.runtime.spawn(task.run(stopped));
        Some(Consumer {
            config,
            function,
            stop,
            metrics,
        })
    }
}

struct ConsumerTask {
    host: Arc<Host>,
    queues: Arc<Queues>,
    queue: QueueId,
    index: usize,
    config: QueueTriggerConfig,
    function: Arc<ArcSwap<Function>>,
    metrics: Arc<ConsumerMetrics>,
}

impl ConsumerTask {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut last_stats = Instant::now() - STATS_EVERY;
        loop {
            if *stopped.borrow() {
                break;
            }
            let backend = self.queues.backend(&self.queue).clone();
            if last_stats.elapsed() >= STATS_EVERY {
                if let Ok(stats) = backend.stats(&self.queue).await {
                    self.metrics.observe(&stats);
                }
                last_stats = Instant::now();
            }
            let function = self.function.load_full();
            let options = ReceiveOptions {
                max: self.config.batch_size,
                lease: function.spec.timeout + LEASE_MARGIN,
                ordered: self.config.ordered,
            };
            let batch = match backend.receive(&self.queue, options).await {
                Ok(batch) => batch,
                Err(error) => {
                    self.metrics
                        .backend_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(target: "wedge::delivery", queue = %self.queue, %error, "cannot lease messages; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(FAILURE_BACKOFF) => {}
                        _ = stopped.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = backend.wait(&self.queue, IDLE_POLL) => {}
                    _ = stopped.changed() => {}
                }
                continue;
            }
            let target = Target {
                host: &self.host,
                queues: &self.queues,
                function: &function,
                index: self.index,
                queue: &self.queue,
                config: &self.config,
            };
            let target = &target;
            let settled: Vec<_> = futures_util::stream::iter(batch)
                .map(|message| async move {
                    let (settlement, outcome, _) = deliver::deliver(target, &message).await;
                    (message.lease, settlement, outcome)
                })
                .buffer_unordered(self.config.concurrency)
                .collect()
                .await;
            for (_, _, outcome) in &settled {
                self.metrics.count(*outcome);
            }
            let settlements = settled
                .into_iter()
                .map(|(lease, settlement, _)| (lease, settlement))
                .collect();
            if let Err(error) = backend.settle(&self.queue, settlements).await {
                // The leases will pass and the messages come back: at least once.
                self.metrics
                    .backend_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(target: "wedge::delivery", queue = %self.queue, %error, "cannot settle a batch; its messages will be delivered again");
            }
        }
    }
}

impl Trigger for QueueTrigger {
    fn kind(&self) -> &'static str {
        "queue"
    }

    fn check(&self, _: &FunctionSpec, config: &TriggerConfig) -> Result<(), TriggerConfigError> {
        QueueTriggerConfig::parse(config)?;
        if self.queues().is_none() {
            return Err(TriggerConfigError::new(
                "type",
                "this server offers no queues",
            ));
        }
        Ok(())
    }

    fn check_loaded(
        &self,
        function: &Function,
        config: &TriggerConfig,
    ) -> Result<(), TriggerConfigError> {
        let config = QueueTriggerConfig::parse(config)?;
        match (&config.delivery, function.kind) {
            (Delivery::Invoke { export, .. }, FunctionKind::Reactor) => {
                let _ = export;
                Ok(())
            }
            (Delivery::Invoke { .. }, kind) => Err(TriggerConfigError::new(
                "invoke",
                format!(
                    "it calls an export of a reactor module (a core module without `_start`, and no route), but this is a `{kind}` function; remove `invoke` to have each message POSTed to it"
                ),
            )),
            (Delivery::Http, FunctionKind::Reactor) => Err(TriggerConfigError::new(
                "invoke",
                "a reactor module (no `_start`) has no HTTP handler: name the export each message calls with `invoke` (and its arguments with `args`)",
            )),
            (Delivery::Http, _) => Ok(()),
        }
    }

    fn publish(&self, functions: &[Arc<Function>]) {
        let mut wanted: HashMap<ConsumerKey, (QueueTriggerConfig, Arc<Function>)> = HashMap::new();
        for function in functions {
            for (index, table) in function.spec.triggers_of("queue") {
                match QueueTriggerConfig::parse(table) {
                    Ok(config) => {
                        let key = ConsumerKey {
                            function: function.spec.name.clone(),
                            index,
                        };
                        wanted.insert(key, (config, function.clone()));
                    }
                    // Checked before the function was accepted; a table that no longer
                    // parses is not consumed.
                    Err(error) => {
                        tracing::error!(function = %function.spec.name, index, %error, "queue trigger not started")
                    }
                }
            }
        }
        let mut consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.retain(|key, consumer| {
            let keep = wanted.get(key).is_some_and(|(config, function)| {
                config == &consumer.config
                    && function.spec.scope == consumer.function.load().spec.scope
            });
            if !keep {
                let _ = consumer.stop.send(true);
            }
            keep
        });
        for (key, (config, function)) in wanted {
            match consumers.get(&key) {
                Some(consumer) => consumer.function.store(function),
                None => {
                    if let Some(consumer) = self.start(key.clone(), config, function) {
                        consumers.insert(key, consumer);
                    }
                }
            }
        }
    }

    fn render_metrics(&self, out: &mut String) {
        let consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&ConsumerKey, &Consumer)> = consumers.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        metrics::render(
            out,
            rows.iter().map(|(key, consumer)| {
                (
                    key.function.as_str(),
                    key.index,
                    consumer.config.queue.as_str(),
                    &*consumer.metrics,
                )
            }),
        );
    }

    fn stop(&self) {
        let consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        for consumer in consumers.values() {
            let _ = consumer.stop.send(true);
        }
    }
}
