//! One delivery: a leased message to a function, and what its answer means for the message.
//!
//! - An `http` or `wagi` function gets an HTTP POST: the body is the message's, its
//!   `Content-Type` too, with the CloudEvents binary-mode headers (`ce-specversion`,
//!   `ce-id`, `ce-source`, `ce-type`, `ce-time`) and `x-wedge-attempt`. A 2xx acknowledges;
//!   429 and 5xx (a trap, a timeout, wedge's own 503) retry after a delay (the answer's
//!   `Retry-After` if it has one); any other status dead-letters the message at once.
//! - A reactor (a stream function) gets a call of its export, its arguments read from the
//!   message's JSON by JSON pointers; its result goes to the output queue. A message whose
//!   arguments do not fit the export is dead-lettered; a trap or timeout retries.
//!
//! Retries stop after `max_retries`: the message is dead-lettered with the last reason.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use wasmtime::Val;
use wedge_capabilities::queue::{Leased, NewMessage, QueueId, Queues, Settlement};
use wedge_host::{Body, CallContext, ExportCallError, Function, Host, request_id, response};

use crate::config::{Delivery, QueueTriggerConfig};

/// How a delivery ended, for the settlement and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    Retried,
    DeadLettered,
}

/// Where a consumer delivers and what it knows of its queue.
pub struct Target<'a> {
    pub host: &'a Host,
    pub queues: &'a Queues,
    pub function: &'a Arc<Function>,
    pub index: usize,
    pub queue: &'a QueueId,
    pub config: &'a QueueTriggerConfig,
}

/// Delivers one message and decides its settlement.
pub async fn deliver(target: &Target<'_>, message: &Leased) -> (Settlement, Outcome, String) {
    let started = Instant::now();
    let request_id = request_id::next();
    let (settlement, outcome, note) = match &target.config.delivery {
        Delivery::Http => deliver_http(target, message, &request_id).await,
        Delivery::Invoke {
            export,
            args,
            output,
        } => deliver_invoke(target, message, &request_id, export, args, output.as_ref()).await,
    };
    tracing::info!(
        target: "wedge::delivery",
        function = %target.function.spec.name,
        trigger = target.index,
        queue = %target.queue,
        message_id = %message.id,
        attempt = message.attempt,
        outcome = ?outcome,
        note = %note,
        duration_us = started.elapsed().as_micros() as u64,
        request_id,
    );
    (settlement, outcome, note)
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX) * 2.0 - 1.0
}

/// A failure worth another attempt: retried after its delay, or dead-lettered when the
/// attempts are used up.
fn retry_or_give_up(
    config: &QueueTriggerConfig,
    message: &Leased,
    delay: Option<Duration>,
    reason: String,
) -> (Settlement, Outcome, String) {
    if message.attempt > config.max_retries {
        let reason = format!(
            "gave up after {} attempt{}: {reason}",
            message.attempt,
            if message.attempt == 1 { "" } else { "s" }
        );
        return (
            Settlement::DeadLetter {
                reason: reason.clone(),
            },
            Outcome::DeadLettered,
            reason,
        );
    }
    let delay = delay
        .unwrap_or_else(|| config.retry_delay(message.attempt, jitter()))
        .min(config.max_retry_delay);
    (
        Settlement::Retry { delay },
        Outcome::Retried,
        format!(
            "{reason}; retrying in {}",
            wedge_engine::units::format_duration(delay)
        ),
    )
}

fn dead(reason: String) -> (Settlement, Outcome, String) {
    (
        Settlement::DeadLetter {
            reason: reason.clone(),
        },
        Outcome::DeadLettered,
        reason,
    )
}

/// The start of an answer's body, for a dead-letter reason.
async fn body_excerpt(body: Body) -> String {
    match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            text.trim().to_string()
        }
        Err(_) => String::new(),
    }
}

fn retry_after(response: &http::Response<Body>) -> Option<Duration> {
    response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn deliver_http(
    target: &Target<'_>,
    message: &Leased,
    request_id: &str,
) -> (Settlement, Outcome, String) {
    // wasi:http needs an authority; a delivery is addressed to the function itself.
    let mut request = Request::post("/")
        .header(http::header::HOST, "localhost")
        .header("ce-specversion", "1.0")
        .header("ce-id", message.id.as_str())
        .header(
            "ce-source",
            format!(
                "/wedge/queues/{}/{}",
                target.queue.scope(),
                target.queue.name()
            ),
        )
        .header("ce-type", "dev.wedge.queue.message")
        .header(
            "ce-time",
            wedge_host::time::rfc3339_millis(message.enqueued_ms),
        )
        .header("x-wedge-trigger", "queue")
        .header("x-wedge-queue", target.queue.name().as_str())
        .header("x-wedge-attempt", message.attempt.to_string())
        .header(http::header::CONTENT_LENGTH, message.body.len());
    if let Some(content_type) = &message.content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type.as_str());
    }
    let request = match request.body(response::full(message.body.clone())) {
        Ok(request) => request,
        Err(error) => return dead(format!("the message cannot be made a request: {error}")),
    };
    let call = CallContext {
        request_id: request_id.to_string(),
        route: "/".into(),
        local: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    };
    let response = target.host.call(target.function, request, call).await;
    let status = response.status();
    if status.is_success() {
        // The function has answered; what it streams after its headers is not waited for
        // beyond its own deadline.
        let _ = response.into_body().collect().await;
        return (Settlement::Ack, Outcome::Acked, status.as_u16().to_string());
    }
    let delay = retry_after(&response);
    let excerpt = body_excerpt(response.into_body()).await;
    let reason = format!("the function answered {}: {excerpt}", status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        retry_or_give_up(target.config, message, delay, reason)
    } else {
        dead(reason)
    }
}

/// A JSON value as an export's argument, in the text form `--invoke` parses.
fn argument(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        serde_json::Value::String(text) => Some(text.clone()),
        _ => None,
    }
}

/// An export's results as the output message's JSON: one value, or a list of them.
fn results_json(results: &[Val]) -> serde_json::Value {
    let value = |v: &Val| match v {
        Val::I32(n) => serde_json::json!(n),
        Val::I64(n) => serde_json::json!(n),
        Val::F32(bits) => serde_json::Number::from_f64(f64::from(f32::from_bits(*bits)))
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Val::F64(bits) => serde_json::Number::from_f64(f64::from_bits(*bits))
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        _ => serde_json::Value::Null,
    };
    match results {
        [one] => value(one),
        many => serde_json::Value::Array(many.iter().map(value).collect()),
    }
}

async fn deliver_invoke(
    target: &Target<'_>,
    message: &Leased,
    request_id: &str,
    export: &str,
    pointers: &[String],
    output: Option<&wedge_capabilities::names::StateName>,
) -> (Settlement, Outcome, String) {
    let json: serde_json::Value = match serde_json::from_slice(&message.body) {
        Ok(json) => json,
        Err(error) => return dead(format!("the message is not JSON: {error}")),
    };
    let mut args = Vec::with_capacity(pointers.len());
    for pointer in pointers {
        match json.pointer(pointer).and_then(argument) {
            Some(arg) => args.push(arg),
            None => {
                return dead(format!(
                    "the message has no number, boolean or string at `{pointer}` for `{export}`"
                ));
            }
        }
    }
    let results = match target
        .host
        .call_export(target.function, export, &args, request_id)
        .await
    {
        Ok(results) => results,
        Err(ExportCallError::Arguments(error)) => {
            return dead(format!("the message does not fit `{export}`: {error}"));
        }
        Err(ExportCallError::Busy(why)) => {
            return retry_or_give_up(
                target.config,
                message,
                Some(Duration::from_millis(100)),
                why,
            );
        }
        Err(ExportCallError::NotReactor { .. }) => {
            return dead(format!(
                "function `{}` is not a reactor module: `invoke` needs one",
                target.function.spec.name
            ));
        }
        Err(error) => {
            let reason = wedge_engine::program::describe_chain(&error);
            return retry_or_give_up(target.config, message, None, reason);
        }
    };
    let Some(output) = output else {
        return (Settlement::Ack, Outcome::Acked, "no output".into());
    };
    let output = QueueId::of(target.queue.scope(), output);
    let produced = NewMessage {
        body: Bytes::from(results_json(&results).to_string()),
        content_type: Some("application/json".into()),
    };
    let backend = target.queues.backend(target.queue);
    if backend.atomic_with(target.queue, &output)
        && Arc::ptr_eq(backend, target.queues.backend(&output))
    {
        // Acknowledged and produced in one transaction: exactly once.
        return (
            Settlement::AckAndSend {
                output,
                message: produced,
            },
            Outcome::Acked,
            "sent with the acknowledgement".into(),
        );
    }
    // Another backend or scope: produce first, then acknowledge. A crash between the two
    // delivers the message again, so the output may hold it twice (at least once).
    match target.queues.send(&output, vec![produced]).await {
        Ok(_) => (
            Settlement::Ack,
            Outcome::Acked,
            "sent, then acknowledged".into(),
        ),
        Err(error) => retry_or_give_up(
            target.config,
            message,
            None,
            format!("the output queue `{output}` refused the result: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_json() {
        assert_eq!(
            results_json(&[Val::F64(6.0f64.to_bits())]),
            serde_json::json!(6.0)
        );
        assert_eq!(
            results_json(&[Val::I32(1), Val::I64(-2)]),
            serde_json::json!([1, -2])
        );
        assert_eq!(
            results_json(&[Val::F64(f64::NAN.to_bits())]),
            serde_json::Value::Null
        );
        assert_eq!(argument(&serde_json::json!(2.5)).as_deref(), Some("2.5"));
        assert_eq!(argument(&serde_json::json!(true)).as_deref(), Some("1"));
        assert_eq!(argument(&serde_json::json!([1])), None);
    }
}
