//! Engine configuration: every default wedge chooses for wasmtime lives here.

use std::hash::{Hash, Hasher};

/// What a caller may choose about the engine. Everything else is fixed below, with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Compile fuel metering into the code, so that an instruction budget can be enforced.
    /// It changes code generation (and so the artifact fingerprint) and costs speed, which is
    /// why it is off unless a budget is asked for.
    pub fuel_metering: bool,
    /// Compile in epoch checks (at function entries and loop back-edges) so that running
    /// code can be interrupted at a deadline. The server needs it: it must stop one request
    /// without stopping the process. A one-shot `wedge run` does not: its `--timeout` ends
    /// the whole process, and the checks cost up to tens of percent in tight loops.
    pub interruptible: bool,
    /// Use the pooling instance allocator (for serving many short-lived instances). `None`
    /// allocates on demand, which is what a single `wedge run` wants.
    pub pooling: Option<PoolingOptions>,
}

/// Sizes of the pooling allocator's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingOptions {
    /// How many programs (components or modules) may be instantiated at once.
    pub total_instances: u32,
    /// The largest linear memory one instance may have, in bytes.
    pub max_memory_size: usize,
}

/// A 256-bit digest of everything that decides whether compiled code may be reused: the wedge
/// build, the wasmtime version, the target CPU and its features, and every compilation setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
}

/// A configured wasmtime engine plus its fingerprint.
#[derive(Clone)]
pub struct WedgeEngine {
    engine: wasmtime::Engine,
    options: EngineOptions,
    fingerprint: Fingerprint,
}

impl WedgeEngine {
    pub fn new(options: EngineOptions) -> Result<Self, EngineError> {
        let mut config = wasmtime::Config::new();
        // Wall-clock deadlines inside a process are enforced by epoch interruption: a load
        // and a compare at function entries and loop back-edges, much cheaper than fuel.
        config.epoch_interruption(options.interruptible);
        config.consume_fuel(options.fuel_metering);
        // Backtraces with function names make traps debuggable; the cost is only paid on a
        // trap. Deep recursion still yields the innermost frames, which are the useful ones.
        config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32));
        // Copy-on-write memory images make instantiation independent of data-segment size.
        config.memory_init_cow(true);
        // WASI 0.3 components (wasi:http/handler@0.3) use the component model's async ABI.
        config.wasm_component_model_async(true);
        // Cranelift at its default `speed` level: near-native code; compile time is paid once
        // per artifact thanks to the AOT cache.
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if let Some(pooling) = &options.pooling {
            // A component is several core instances (its module, the WASI adapter, shims),
            // with a memory or two and a few tables: the multipliers leave room for that.
            let programs = pooling.total_instances.max(1);
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(programs);
            pool.total_core_instances(programs.saturating_mul(16));
            pool.total_memories(programs.saturating_mul(4));
            pool.total_tables(programs.saturating_mul(8));
            pool.max_memory_size(pooling.max_memory_size);
            // Without PAGEMAP_SCAN, resetting the first 128 KiB of a memory by memset beats
            // madvise plus fresh page faults for the pages every request touches (a C
            // module's whole stack and data); measured with the serve benchmark, 1 MiB cost
            // the http hello more in memset than it saved, and 0 cost the wagi hello two
            // thirds of its throughput.
            //
            // With Linux's PAGEMAP_SCAN ioctl (6.7+; `Auto` falls back to the above without
            // it) a slot is reset by restoring only the pages the last instance dirtied,
            // instead of memsetting the kept region and madvising the rest: the next instance
            // takes no page faults on pages that stay resident. Measured in process
            // (benches/serve/instantiate.rs, p50): Rust http hello 52 -> 18 µs, C wagi hello
            // 19 -> 12 µs, the 12 MiB JavaScript hello 617 -> 327 µs. There the limit only
            // caps how many dirtied bytes are copied back rather than madvised, so it is
            // set to cover an interpreter's whole per-request dirty set: the Python hello
            // dirties ~1.2 MiB in ~180 runs over its 13 MiB snapshot, and with 128 KiB
            // every reset dropped the snapshot's pages and the next request took ~350 page
            // faults (and the JavaScript hello 37); with 16 MiB, none. This needs the
            // vendored wasmtime's rescanning fix (vendor/wasmtime, see Cargo.toml).
            let keep_resident = if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
                16 << 20
            } else {
                128 << 10
            };
            pool.linear_memory_keep_resident(keep_resident);
            pool.pagemap_scan(wasmtime::Enabled::Auto);
            pool.table_keep_resident(64 << 10);
            pool.async_stack_keep_resident(64 << 10);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let fingerprint = fingerprint_of(&engine);
        Ok(Self {
            engine,
            options,
            fingerprint,
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// Feeds a `std::hash::Hash` into BLAKE3, so wasmtime's compatibility hash becomes a digest we
/// can store in a file header and compare across processes of the same build.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn fingerprint_of(engine: &wasmtime::Engine) -> Fingerprint {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    hasher.write(crate::BUILD_ID.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    Fingerprint(*hasher.0.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_depends_on_code_generation_settings() {
        let plain = WedgeEngine::new(EngineOptions::default()).unwrap();
        let again = WedgeEngine::new(EngineOptions::default()).unwrap();
        let metered = WedgeEngine::new(EngineOptions {
            fuel_metering: true,
            ..EngineOptions::default()
        })
        .unwrap();
        let interruptible = WedgeEngine::new(EngineOptions {
            interruptible: true,
            ..EngineOptions::default()
        })
        .unwrap();
        assert_eq!(plain.fingerprint(), again.fingerprint());
        assert_ne!(plain.fingerprint(), metered.fingerprint());
        assert_ne!(plain.fingerprint(), interruptible.fingerprint());
    }

    /// A pooled memory slot is reused by the next instance of the same module, and
    /// PAGEMAP_SCAN restores only what the last one dirtied. This dirties 128 disjoint host
    /// pages (more runs than one scan reports, so the reset must rescan) in both the
    /// snapshot part of the memory and the zero part beyond it, and checks that every
    /// next instance sees the original contents, whichever reset path the host has.
    #[test]
    fn a_reused_memory_slot_shows_no_writes_of_the_previous_instance() {
        let wedge = WedgeEngine::new(EngineOptions {
            pooling: Some(PoolingOptions {
                total_instances: 1,
                max_memory_size: 8 << 20,
            }),
            ..EngineOptions::default()
        })
        .unwrap();
        // 128 pages of 64 KiB: bytes 7 fill the first 4 MiB (the image), the rest is zero.
        // `dirty` writes 0xff to one byte of every 64 KiB page; `sum` adds one byte of
        // each page, 64 * 7 = 448 for a pristine memory.
        let wat = format!(
            r#"(module
                (memory (export "memory") 128)
                (data (i32.const 0) "{image}")
                (func (export "dirty")
                    (local $at i32)
                    (loop $pages
                        (i32.store8 (local.get $at) (i32.const 255))
                        (local.set $at (i32.add (local.get $at) (i32.const 65536)))
                        (br_if $pages (i32.lt_u (local.get $at) (i32.const 8388608)))))
                (func (export "sum") (result i32)
                    (local $at i32) (local $sum i32)
                    (loop $pages
                        (local.set $sum (i32.add (local.get $sum) (i32.load8_u (local.get $at))))
                        (local.set $at (i32.add (local.get $at) (i32.const 65536)))
                        (br_if $pages (i32.lt_u (local.get $at) (i32.const 8388608))))
                    (local.get $sum)))"#,
            image = "\\07".repeat(4 << 20),
        );
        let module = wasmtime::Module::new(wedge.engine(), wat).unwrap();
        for round in 0..5 {
            let mut store = wasmtime::Store::new(wedge.engine(), ());
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let sum = instance
                .get_typed_func::<(), i32>(&mut store, "sum")
                .unwrap();
            let dirty = instance
                .get_typed_func::<(), ()>(&mut store, "dirty")
                .unwrap();
            assert_eq!(sum.call(&mut store, ()).unwrap(), 64 * 7, "round {round}");
            dirty.call(&mut store, ()).unwrap();
            assert_eq!(
                sum.call(&mut store, ()).unwrap(),
                128 * 255,
                "round {round}"
            );
        }
    }
}
