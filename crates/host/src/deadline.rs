//! Wall-clock deadlines for guests, by epoch interruption.
//!
//! One thread advances the engine's epoch every `TICK`. Each store checks its own deadline
//! at every tick: before it, the guest *yields* to the async runtime (so a spinning guest
//! cannot monopolise a worker thread and starve other requests); at it, the guest traps
//! with `Trap::Interrupt`, which the gateway answers with 504.

use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

/// Epoch period: the granularity of deadlines and of cooperative yielding.
pub const TICK: Duration = Duration::from_millis(5);

/// Starts the ticker thread for an engine (once per gateway).
pub fn start_ticker(engine: wasmtime::Engine) {
    std::thread::Builder::new()
        .name("wedge-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
        .unwrap_or_else(|error| tracing::error!(%error, "cannot start the epoch ticker"));
}

/// Makes `store` yield at every tick and trap once `deadline` has passed.
pub fn apply<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}
