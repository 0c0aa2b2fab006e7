//! wedge-engine: wasmtime configured for wedge, and everything about turning bytes into
//! runnable code.
//!
//! - [`EngineOptions`] / [`WedgeEngine`]: the one place where engine defaults are chosen.
//! - [`program`]: detect what a file is (core module, component, WAT, wedge AOT artifact)
//!   from its bytes, and load or compile it.
//! - [`artifact`] and [`cache`]: the `.cwasm` format and the transparent on-disk AOT cache;
//!   [`durable`]: whole-or-absent file writes.
//! - [`limits`]: memory, fuel and wall-clock limits, and [`outcome`]: what a guest failure was.
//!
//! This crate knows nothing of HTTP, manifests or capability backends.

pub mod artifact;
pub mod cache;
pub mod durable;
pub mod engine;
pub mod invoke;
pub mod limits;
mod memory;
pub mod outcome;
pub mod program;
pub mod units;

pub use engine::{EngineError, EngineOptions, Fingerprint, WedgeEngine};
pub use program::{LoadError, Program, ProgramKind};

/// The version string recorded in every artifact wedge writes, so that a refused artifact can
/// say which wedge made it.
pub const BUILD_ID: &str = concat!("wedge ", env!("CARGO_PKG_VERSION"), " (wasmtime 48)");
