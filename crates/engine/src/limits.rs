//! Per-instance limits: linear memory and table growth, fuel, and a wall-clock deadline.
//!
//! Memory is limited through wasmtime's `ResourceLimiter`, so a refused `memory.grow`
//! returns -1 to the guest exactly as the Wasm spec defines (malloc then returns NULL).
//! The limiter remembers that it refused, so that if the guest traps afterwards the error
//! can name the limit as the likely cause.

use std::time::Duration;

/// What one instance may use. `None` means "no limit beyond the engine's own".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of each linear memory, in bytes.
    pub max_memory: Option<u64>,
    /// Instruction budget (requires an engine with fuel metering).
    pub fuel: Option<u64>,
    /// Wall-clock deadline for the whole run or request.
    pub timeout: Option<Duration>,
}

/// The most table elements an instance may grow a table to. Tables hold function
/// references; nothing legitimate needs millions, and each costs host memory.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// A `ResourceLimiter` that also records what it refused.
#[derive(Debug, Clone, Default)]
pub struct GuestLimiter {
    max_memory: Option<usize>,
    refused: Option<RefusedGrowth>,
}

/// A memory growth the limiter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedGrowth {
    /// Bytes the memory had.
    pub current: usize,
    /// Bytes the guest asked for.
    pub desired: usize,
    /// The limit that refused it.
    pub limit: usize,
}

impl GuestLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_memory: limits
                .max_memory
                .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX)),
            refused: None,
        }
    }

    /// The first growth this limiter refused, if any.
    pub fn refused(&self) -> Option<RefusedGrowth> {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.max_memory {
            Some(limit) if desired > limit => {
                self.refused.get_or_insert(RefusedGrowth {
                    current,
                    desired,
                    limit,
                });
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
