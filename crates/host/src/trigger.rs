//! A way calls reach functions: HTTP routes, schedules, queues, webhooks.
//!
//! The control plane publishes the whole set of served functions to every trigger after each
//! change (a deploy, a rollback, a removal, start-up). Each trigger takes from the set what it
//! serves (the functions with a [`crate::TriggerSpec`] of its kind) and swaps it in whole, so
//! a call routes on one consistent set and finishes on the version it started with. Before a
//! function is accepted, the trigger of each of its trigger tables checks that table
//! ([`Trigger::check`]): a bad schedule refuses the deploy, not the first firing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::function::{Function, FunctionSpec, TriggerConfig};

/// What is wrong with one trigger table: the key, the reason and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {problem}")]
pub struct TriggerConfigError {
    pub key: String,
    pub problem: String,
}

impl TriggerConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// How a trigger fired by hand (`POST .../triggers/{i}/fire`) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The status of the call it made.
    pub status: u16,
    pub request_id: String,
}

/// Why a trigger could not be fired by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FireError {
    #[error("a `{kind}` trigger cannot be fired by hand")]
    NotSupported { kind: String },
    #[error("function `{function}` has no trigger {index} of kind `{kind}` being served")]
    NoSuchTrigger {
        function: String,
        index: usize,
        kind: String,
    },
}

pub type FireFuture = Pin<Box<dyn Future<Output = Result<Fired, FireError>> + Send>>;

pub trait Trigger: Send + Sync + 'static {
    /// Its kind: the `type` of the trigger tables it serves (`http`, `cron`, ...).
    fn kind(&self) -> &'static str;

    /// Checks one trigger table of this kind of `function`, before the function is accepted.
    fn check(
        &self,
        _function: &FunctionSpec,
        _config: &TriggerConfig,
    ) -> Result<(), TriggerConfigError> {
        Ok(())
    }

    /// Checks one trigger table again once the function is loaded and its kind is known (a
    /// stream function's `invoke` needs a reactor module, say), still before it is accepted.
    fn check_loaded(
        &self,
        _function: &Function,
        _config: &TriggerConfig,
    ) -> Result<(), TriggerConfigError> {
        Ok(())
    }

    /// Makes `functions` what it serves, atomically.
    fn publish(&self, functions: &[Arc<Function>]);

    /// Runs trigger `index` of `function` once, now.
    fn fire(&self, function: &Arc<Function>, index: usize) -> FireFuture {
        let _ = (function, index);
        let kind = self.kind().to_string();
        Box::pin(async move { Err(FireError::NotSupported { kind }) })
    }

    /// Appends its metrics in the Prometheus text format (`/_wedge/metrics`).
    fn render_metrics(&self, _out: &mut String) {}

    /// Stops its background work (schedules, consumers) at shutdown; calls in flight finish.
    fn stop(&self) {}
}
