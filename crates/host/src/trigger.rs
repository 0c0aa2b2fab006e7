//! A way calls reach functions: HTTP routes today; schedules, queues and webhooks next.
//!
//! The control plane publishes the whole set of served functions to every trigger after each
//! change (a deploy, a rollback, a removal, start-up). Each trigger takes from the set what it
//! serves (the functions with a [`crate::TriggerSpec`] of its kind) and swaps it in whole, so
//! a call routes on one consistent set and finishes on the version it started with.

use std::sync::Arc;

use crate::function::Function;

pub trait Trigger: Send + Sync + 'static {
    /// Its kind, for log lines (`http`, `cron`, ...).
    fn kind(&self) -> &'static str;

    /// Makes `functions` what it serves, atomically.
    fn publish(&self, functions: &[Arc<Function>]);
}
