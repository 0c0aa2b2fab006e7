//! wedge-trigger-cron: schedules that call functions.
//!
//! A function's `trigger = [{ type = "cron", schedule = "0 3 * * *", timezone =
//! "Europe/Berlin" }]` makes this trigger call it at those times: each firing is an HTTP
//! `POST` through [`wedge_host::Host::call`], the path every trigger takes, so admission,
//! `timeout`, `max_memory`, grants, metrics, logs and hot swap hold as for an HTTP request.
//!
//! - [`schedule`]: the cron syntax and the next firing time in an IANA time zone, with the
//!   daylight-saving rules (docs/triggers.md);
//! - [`config`]: a trigger table's keys, checked (`Trigger::check`);
//! - [`record`]: the last firing of each `catch_up = "last"` trigger, in DATA/triggers/cron.db;
//! - the trigger itself ([`CronTrigger`]): one task per (function, trigger index) on a thread
//!   of its own, overlap, catch-up, firing by hand, metrics.
//!
//! Of wedge's crates this one depends on the host only (DESIGN.md).

pub mod config;
mod metrics;
pub mod record;
pub mod schedule;
mod trigger;

pub use config::{CatchUp, CronConfig, Overlap};
pub use schedule::{Schedule, ScheduleError};
pub use trigger::{
    Cause, CronOptions, CronStartError, CronTrigger, FIRING_HEADER, SCHEDULE_HEADER,
    SCHEDULED_TIME_HEADER, TIMEZONE_HEADER, TRIGGER_HEADER, TRIGGER_INDEX_HEADER,
};
