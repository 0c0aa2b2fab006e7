//! `reactor` functions: core modules without `_start`, whose exports are called directly with
//! typed arguments (a stream function: each message of a queue becomes one call). Each call
//! gets a fresh instance, as every other call does; `_initialize` runs first when the module
//! has one (the WASI reactor convention).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{FuncType, InstancePre, Val};
use wedge_capabilities::wasi::{CapturePipe, GuestIo, GuestOutput};
use wedge_engine::outcome::GuestFailure;

use crate::call::ExportCallError;
use crate::capabilities::ModuleState;
use crate::deadline;
use crate::function::Function;
use crate::logs::Stream;
use crate::outcome::{CAPTURE_LIMIT, RunOutcome, finish};

pub(crate) async fn call(
    pre: &InstancePre<ModuleState>,
    function: &Arc<Function>,
    export: &str,
    ty: &FuncType,
    params: Vec<Val>,
    request_id: &str,
) -> Result<Vec<Val>, ExportCallError> {
    let stdout = CapturePipe::new(CAPTURE_LIMIT);
    let stderr = CapturePipe::new(CAPTURE_LIMIT);
    let io = GuestIo {
        args: vec![function.spec.name.clone()],
        stdout: GuestOutput::Capture(stdout.clone()),
        stderr: GuestOutput::Capture(stderr.clone()),
        ..GuestIo::default()
    };
    let deadline = Instant::now() + function.spec.timeout;
    let call_id: Arc<str> = Arc::from(request_id);
    let mut store = function
        .module_store(pre.module().engine(), &call_id, deadline, &io)
        .map_err(ExportCallError::Instance)?;
    let guest_deadline = tokio::time::Instant::from_std(deadline + deadline::TICK * 4);
    let mut results = vec![Val::I32(0); ty.results().len()];
    let run = tokio::time::timeout_at(guest_deadline, async {
        let started = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        function.metrics.instantiation.observe(started.elapsed());
        if let Some(initialize) = instance.get_func(&mut store, "_initialize") {
            initialize.call_async(&mut store, &[], &mut []).await?;
        }
        let func = instance
            .get_func(&mut store, export)
            .ok_or_else(|| wasmtime::format_err!("the export `{export}` is gone"))?;
        func.call_async(&mut store, &params, &mut results).await
    })
    .await;
    let refused = store.data().limiter.refused();
    drop(store);
    let outcome = RunOutcome::of(run, refused);
    finish(
        function,
        request_id,
        &[(Stream::Stdout, &stdout), (Stream::Stderr, &stderr)],
        &outcome,
    );
    match outcome {
        RunOutcome::Finished => Ok(results),
        RunOutcome::Exited(code) => Err(ExportCallError::Failed(GuestFailure::Trap {
            reason: format!("exited with status {code} during `{export}`"),
            backtrace: Vec::new(),
            memory_limit: None,
        })),
        RunOutcome::Failed(failure) => Err(ExportCallError::Failed(failure)),
    }
}
