//! What went wrong when guest code ran: the error from a call into Wasm, classified into the
//! cases a user (or an HTTP status) needs to tell apart.

use crate::limits::RefusedGrowth;
use crate::units::format_size;

/// One frame of a Wasm backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The module's name from its name section, if it has one.
    pub module: Option<String>,
    /// The function's name from the name section, else `<wasm function N>`.
    pub function: String,
    /// Byte offset of the instruction in the module, when known.
    pub offset: Option<usize>,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(module) = &self.module {
            write!(f, "{module}!")?;
        }
        write!(f, "{}", self.function)?;
        if let Some(offset) = self.offset {
            write!(f, " (at offset {offset:#x})")?;
        }
        Ok(())
    }
}

/// Why a call into a guest did not return normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The wall-clock deadline passed (epoch interruption).
    Timeout,
    /// The instruction budget ran out.
    OutOfFuel,
    /// A Wasm trap (or a fatal error raised by a host function).
    Trap {
        /// The trap's description, without wasmtime's "wasm trap:" prefix.
        reason: String,
        backtrace: Vec<Frame>,
        /// A memory growth refused by the limit before the trap: the likely cause.
        memory_limit: Option<RefusedGrowth>,
    },
}

impl GuestFailure {
    /// Classifies an error returned by a call into Wasm.
    pub fn classify(error: &wasmtime::Error, refused: Option<RefusedGrowth>) -> Self {
        let trap = error.downcast_ref::<wasmtime::Trap>().copied();
        match trap {
            Some(wasmtime::Trap::Interrupt) => return GuestFailure::Timeout,
            Some(wasmtime::Trap::OutOfFuel) => return GuestFailure::OutOfFuel,
            _ => {}
        }
        let reason = match trap {
            Some(trap) => trap
                .to_string()
                .trim_start_matches("wasm trap: ")
                .to_string(),
            // Not a Wasm trap: a host function failed fatally. Its message is the reason;
            // drop the backtrace wrapper wasmtime adds to the chain.
            None => error
                .chain()
                .map(|cause| cause.to_string())
                .find(|text| !text.starts_with("error while executing at wasm backtrace"))
                .unwrap_or_else(|| error.to_string()),
        };
        let backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|trace| {
                trace
                    .frames()
                    .iter()
                    .map(|frame| Frame {
                        module: frame.module().name().map(str::to_string),
                        function: frame
                            .func_name()
                            .map(demangle)
                            .unwrap_or_else(|| format!("<wasm function {}>", frame.func_index())),
                        offset: frame.module_offset(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        GuestFailure::Trap {
            reason,
            backtrace,
            memory_limit: refused,
        }
    }
}

/// Rust symbol names in a backtrace are shown demangled and without their hash
/// (`std::process::abort`, not `_RNvNtCs..._3std7process5abort`).
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Timeout => f.write_str("ran past its time limit and was stopped"),
            GuestFailure::OutOfFuel => f.write_str("ran out of fuel (its instruction budget)"),
            GuestFailure::Trap {
                reason,
                backtrace,
                memory_limit,
            } => {
                write!(f, "trapped: {reason}")?;
                if let Some(refused) = memory_limit {
                    write!(
                        f,
                        ". The memory limit is the likely cause: growing a memory from {} to {} was refused because the limit is {}",
                        format_size(refused.current as u64),
                        format_size(refused.desired as u64),
                        format_size(refused.limit as u64),
                    )?;
                }
                if !backtrace.is_empty() {
                    f.write_str("\nwasm backtrace:")?;
                    for (i, frame) in backtrace.iter().enumerate() {
                        write!(f, "\n  {i:>3}: {frame}")?;
                    }
                }
                Ok(())
            }
        }
    }
}
