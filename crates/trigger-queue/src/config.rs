//! A queue trigger's table, checked: `{ type = "queue", queue = "orders", ... }`.

use std::time::Duration;

use serde_json::Value;
use wedge_capabilities::names::StateName;
use wedge_engine::units;
use wedge_host::{TriggerConfig, TriggerConfigError};

/// The keys a queue trigger may have.
const KEYS: [&str; 10] = [
    "queue",
    "batch_size",
    "concurrency",
    "max_retries",
    "retry_delay",
    "max_retry_delay",
    "ordered",
    "invoke",
    "args",
    "output",
];

/// How messages are handed to the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// As an HTTP POST with CloudEvents headers (an `http` or `wagi` function).
    Http,
    /// As a call of a reactor module's export, its arguments taken from the message's JSON by
    /// JSON pointers, its result sent to `output` (a stream function).
    Invoke {
        export: String,
        args: Vec<String>,
        output: Option<StateName>,
    },
}

/// A queue trigger, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTriggerConfig {
    pub queue: StateName,
    /// Messages leased at once.
    pub batch_size: usize,
    /// Deliveries of one batch running at once.
    pub concurrency: usize,
    /// Retries after the first delivery before a message is dead-lettered.
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles, up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// First in, first out, one at a time.
    pub ordered: bool,
    pub delivery: Delivery,
}

fn error(key: &str, problem: impl Into<String>) -> TriggerConfigError {
    TriggerConfigError::new(key, problem)
}

fn integer(
    config: &TriggerConfig,
    key: &str,
    default: u64,
    range: (u64, u64),
) -> Result<u64, TriggerConfigError> {
    match config.get(key) {
        None => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if (range.0..=range.1).contains(&n) => Ok(n),
            _ => Err(error(
                key,
                format!("{n} must be a whole number from {} to {}", range.0, range.1),
            )),
        },
        Some(other) => Err(error(
            key,
            format!(
                "{other} must be a whole number from {} to {}",
                range.0, range.1
            ),
        )),
    }
}

fn duration(
    config: &TriggerConfig,
    key: &str,
    default: Duration,
) -> Result<Duration, TriggerConfigError> {
    match config.get(key) {
        None => Ok(default),
        Some(Value::String(text)) => {
            let value = units::parse_duration(text).map_err(|e| error(key, e.to_string()))?;
            if value.is_zero() {
                return Err(error(key, "it must be longer than zero"));
            }
            Ok(value)
        }
        Some(other) => Err(error(
            key,
            format!("{other} must be a duration such as \"1s\" or \"500ms\""),
        )),
    }
}

fn text<'a>(config: &'a TriggerConfig, key: &str) -> Result<Option<&'a str>, TriggerConfigError> {
    match config.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(error(key, format!("{other} must be a string"))),
    }
}

fn queue_name(key: &str, name: &str) -> Result<StateName, TriggerConfigError> {
    StateName::new("queue", name).map_err(|e| error(key, e.to_string()))
}

impl QueueTriggerConfig {
    pub fn parse(config: &TriggerConfig) -> Result<Self, TriggerConfigError> {
        if let Some(key) = config.keys().find(|key| !KEYS.contains(&key.as_str())) {
            return Err(error(
                key,
                format!(
                    "a queue trigger has no key `{key}`; its keys are {} (docs/triggers.md)",
                    KEYS.join(", ")
                ),
            ));
        }
        let queue = match text(config, "queue")? {
            Some(name) => queue_name("queue", name)?,
            None => {
                return Err(error(
                    "queue",
                    "it is missing: write the queue's name, e.g. queue = \"orders\"",
                ));
            }
        };
        let ordered = match config.get("ordered") {
            None => false,
            Some(Value::Bool(ordered)) => *ordered,
            Some(other) => return Err(error("ordered", format!("{other} must be true or false"))),
        };
        let concurrency = integer(config, "concurrency", 4, (1, 256))? as usize;
        if ordered && config.contains_key("concurrency") && concurrency != 1 {
            return Err(error(
                "concurrency",
                "an ordered queue is delivered one message at a time; remove `concurrency` or set it to 1",
            ));
        }
        let retry_delay = duration(config, "retry_delay", Duration::from_secs(1))?;
        let max_retry_delay = duration(config, "max_retry_delay", Duration::from_secs(300))?;
        if max_retry_delay < retry_delay {
            return Err(error(
                "max_retry_delay",
                "it is shorter than `retry_delay`; make it at least as long",
            ));
        }
        let delivery = match text(config, "invoke")? {
            Some("") => {
                return Err(error("invoke", "the export's name is empty"));
            }
            Some(export) => {
                let args = match config.get("args") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|item| match item {
                            Value::String(pointer) if pointer.is_empty() || pointer.starts_with('/') => {
                                Ok(pointer.clone())
                            }
                            other => Err(error(
                                "args",
                                format!(
                                    "{other} is not a JSON pointer into the message: write e.g. \"/reading\" (or \"\" for the whole message)"
                                ),
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => {
                        return Err(error(
                            "args",
                            format!("{other} must be a list of JSON pointers, e.g. [\"/reading\"]"),
                        ));
                    }
                };
                let output = text(config, "output")?
                    .map(|name| queue_name("output", name))
                    .transpose()?;
                Delivery::Invoke {
                    export: export.to_string(),
                    args,
                    output,
                }
            }
            None => {
                for key in ["args", "output"] {
                    if config.contains_key(key) {
                        return Err(error(
                            key,
                            "it goes with `invoke` (a stream function calling a module's export); add `invoke` or remove it",
                        ));
                    }
                }
                Delivery::Http
            }
        };
        if let Delivery::Invoke {
            output: Some(output),
            ..
        } = &delivery
            && output == &queue
        {
            return Err(error(
                "output",
                "it is the queue the trigger consumes: every result would come back as input",
            ));
        }
        Ok(Self {
            queue,
            batch_size: integer(config, "batch_size", 10, (1, 100))? as usize,
            concurrency: if ordered { 1 } else { concurrency },
            max_retries: integer(config, "max_retries", 3, (0, 100))? as u32,
            retry_delay,
            max_retry_delay,
            ordered,
            delivery,
        })
    }

    /// The delay before retry number `attempt` (1 for the first), doubling each time, with
    /// up to a fifth of jitter so that retries of a burst do not arrive together.
    pub fn retry_delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let base = self
            .retry_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry_delay);
        let factor = 1.0 + 0.2 * jitter.clamp(-1.0, 1.0);
        base.mul_f64(factor).min(self.max_retry_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<QueueTriggerConfig, TriggerConfigError> {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        QueueTriggerConfig::parse(value.as_object().unwrap())
    }

    #[test]
    fn defaults_and_a_stream_function() {
        let config = parse(r#"{"queue":"orders"}"#).unwrap();
        assert_eq!(config.queue.as_str(), "orders");
        assert_eq!(
            (config.batch_size, config.concurrency, config.max_retries),
            (10, 4, 3)
        );
        assert_eq!(config.delivery, Delivery::Http);
        let stream = parse(
            r#"{"queue":"noise","invoke":"triple","args":["/noise"],"output":"noise-tripled"}"#,
        )
        .unwrap();
        assert!(
            matches!(stream.delivery, Delivery::Invoke { ref export, ref args, output: Some(ref out) }
            if export == "triple" && args == &["/noise"] && out.as_str() == "noise-tripled")
        );
        assert_eq!(
            parse(r#"{"queue":"q","ordered":true}"#)
                .unwrap()
                .concurrency,
            1
        );
    }

    #[test]
    fn every_bad_key_is_named_with_the_fix() {
        for (json, key, says) in [
            (r#"{}"#, "queue", "missing"),
            (r#"{"queue":"Bad"}"#, "queue", "not a valid queue name"),
            (r#"{"queue":"q","batch":1}"#, "batch", "has no key"),
            (
                r#"{"queue":"q","batch_size":0}"#,
                "batch_size",
                "from 1 to 100",
            ),
            (
                r#"{"queue":"q","concurrency":"4"}"#,
                "concurrency",
                "whole number",
            ),
            (
                r#"{"queue":"q","max_retries":101}"#,
                "max_retries",
                "from 0 to 100",
            ),
            (
                r#"{"queue":"q","retry_delay":"soon"}"#,
                "retry_delay",
                "duration",
            ),
            (
                r#"{"queue":"q","retry_delay":"10s","max_retry_delay":"1s"}"#,
                "max_retry_delay",
                "shorter",
            ),
            (
                r#"{"queue":"q","ordered":"yes"}"#,
                "ordered",
                "true or false",
            ),
            (
                r#"{"queue":"q","ordered":true,"concurrency":4}"#,
                "concurrency",
                "one message at a time",
            ),
            (
                r#"{"queue":"q","args":["/x"]}"#,
                "args",
                "goes with `invoke`",
            ),
            (
                r#"{"queue":"q","invoke":"f","args":["x"]}"#,
                "args",
                "JSON pointer",
            ),
            (
                r#"{"queue":"q","invoke":"f","output":"q"}"#,
                "output",
                "consumes",
            ),
        ] {
            let error = parse(json).unwrap_err();
            assert_eq!(error.key, key, "{json}: {error}");
            assert!(error.problem.contains(says), "{json}: {error}");
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_cap_with_bounded_jitter() {
        let config = parse(r#"{"queue":"q","retry_delay":"1s","max_retry_delay":"5s"}"#).unwrap();
        assert_eq!(config.retry_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(config.retry_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(config.retry_delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(config.retry_delay(4, 0.0), Duration::from_secs(5));
        assert_eq!(config.retry_delay(40, 1.0), Duration::from_secs(5));
        assert_eq!(config.retry_delay(1, 1.0), Duration::from_millis(1200));
        assert_eq!(config.retry_delay(1, -1.0), Duration::from_millis(800));
    }
}
