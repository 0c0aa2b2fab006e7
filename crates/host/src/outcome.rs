//! What both function kinds share per call: how a guest's run ended, recording that in the
//! function's log and metrics, and the answer for a guest that did not answer.

use std::sync::atomic::Ordering;

use http::{Response, StatusCode};
use wedge_capabilities::wasi::CapturePipe;
use wedge_engine::limits::RefusedGrowth;
use wedge_engine::outcome::GuestFailure;

use crate::function::Function;
use crate::logs::Stream;
use crate::response::{self, Body};

/// Bytes of stdout and of stderr kept per request for the function's log.
pub(crate) const CAPTURE_LIMIT: usize = 64 * 1024;

/// How a guest's run ended.
pub(crate) enum RunOutcome {
    Finished,
    Exited(i32),
    Failed(GuestFailure),
}

impl RunOutcome {
    /// Classifies a guest run bounded by `tokio::time::timeout_at`.
    pub fn of<E>(run: Result<wasmtime::Result<()>, E>, refused: Option<RefusedGrowth>) -> Self {
        match run {
            Ok(Ok(())) => RunOutcome::Finished,
            Ok(Err(error)) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => RunOutcome::Exited(exit.0),
                None => RunOutcome::Failed(GuestFailure::classify(&error, refused)),
            },
            Err(_elapsed) => RunOutcome::Failed(GuestFailure::Timeout),
        }
    }
}

/// Moves the guest's output into the function's log and records how the run ended.
pub(crate) fn finish(
    function: &Function,
    request_id: &str,
    output: &[(Stream, &CapturePipe)],
    outcome: &RunOutcome,
) {
    let name = &function.spec.name;
    for (stream, pipe) in output {
        let (bytes, dropped) = pipe.take();
        function
            .log
            .push_output(name, request_id, *stream, &bytes, dropped);
    }
    if let RunOutcome::Failed(failure) = outcome {
        match failure {
            GuestFailure::Timeout => function.metrics.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => function.metrics.traps.fetch_add(1, Ordering::Relaxed),
        };
        let note = match failure {
            GuestFailure::Timeout => format!(
                "the request ran past the function's timeout of {} and was stopped",
                wedge_engine::units::format_duration(function.spec.timeout)
            ),
            other => format!("the guest {other}"),
        };
        for line in note.lines() {
            function.log.push(name, request_id, Stream::Wedge, line);
        }
    }
}

/// The response for a guest that did not answer.
pub(crate) fn failure_response(
    function: &Function,
    request_id: &str,
    outcome: &RunOutcome,
) -> Response<Body> {
    let name = &function.spec.name;
    match outcome {
        RunOutcome::Failed(GuestFailure::Timeout) => response::error(
            StatusCode::GATEWAY_TIMEOUT,
            request_id,
            &format!(
                "function `{name}` did not answer within its timeout of {}",
                wedge_engine::units::format_duration(function.spec.timeout)
            ),
        ),
        RunOutcome::Failed(GuestFailure::Trap {
            reason,
            memory_limit,
            ..
        }) => {
            let cause = if memory_limit.is_some() {
                format!(
                    "function `{name}` trapped: {reason} (it had reached its memory limit of {})",
                    wedge_engine::units::format_size(function.spec.max_memory)
                )
            } else {
                format!("function `{name}` trapped: {reason}")
            };
            response::error(StatusCode::INTERNAL_SERVER_ERROR, request_id, &cause)
        }
        RunOutcome::Failed(GuestFailure::OutOfFuel) => response::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            request_id,
            &format!("function `{name}` ran out of fuel"),
        ),
        RunOutcome::Exited(code) => response::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            request_id,
            &format!("function `{name}` exited with status {code} without answering"),
        ),
        RunOutcome::Finished => response::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            request_id,
            &format!("function `{name}` returned without sending a response"),
        ),
    }
}
