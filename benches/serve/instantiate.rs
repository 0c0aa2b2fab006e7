//! In-process benchmark: one request through the gateway's full request path (routing,
//! admission, a fresh store, instantiation from the pre-instance, the guest's handler, the
//! response body collected), without sockets. Reports each function's size, its compile
//! (deploy) time, and the request's p50/p99/mean in microseconds.
//!
//! Run: `cargo bench -p wedge-trigger-http --bench instantiate` (after scripts/build-guests.sh).
//! Options: `ITERATIONS` (default 20000), `GUESTS` (default target/guests),
//! `FUNCTIONS=LABEL=FILE,...` (files relative to `GUESTS`; default: the Rust and C hellos, and
//! the JavaScript, Python and C-component hellos of docs/languages.md), `COLD_KIB=N` (before
//! each request, write N KiB of unrelated memory, evicting the caches as the network stack,
//! the load generator and other tenants do on a busy server; default 0: caches stay warm).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;

use wedge_capabilities::http_outbound::OutboundOffer;
// A benchmark may name the embedded backends; the host's own code never does.
use wedge_capabilities::key_value::{KeyValueLimits, KeyValueStores, sqlite::SqliteKeyValue};
use wedge_capabilities::names::Scope;
use wedge_capabilities::sql::{SqlDatabases, SqlLimits, sqlite::SqliteSql};
use wedge_engine::WedgeEngine;
use wedge_engine::program::Loader;
use wedge_host::{
    Function, FunctionSpec, GrantConfig, Host, HostLimits, Services, Trigger, TriggerSpec,
    serving_engine_options,
};
use wedge_trigger_http::{Gateway, GatewayLimits};

fn main() {
    let guests = std::env::var_os("GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/guests"));
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let cold_bytes: usize = std::env::var("COLD_KIB")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        << 10;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let functions: Vec<(String, String)> = match std::env::var("FUNCTIONS") {
        Ok(list) => list
            .split(',')
            .filter_map(|entry| entry.split_once('='))
            .map(|(label, file)| (label.to_string(), file.to_string()))
            .collect(),
        Err(_) => [
            ("http (Rust component)", "http-hello.wasm"),
            ("wagi (C module)", "wagi-hello.wasm"),
            ("http (C component)", "c-http-hello.wasm"),
            ("http (JavaScript)", "js-hello.wasm"),
            ("http (Python)", "py-hello.wasm"),
        ]
        .iter()
        .map(|(label, file)| (label.to_string(), file.to_string()))
        .collect(),
    };

    println!("| function | size KiB | compile ms | requests | p50 µs | p99 µs | mean µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, file) in functions {
        let path = guests.join(&file);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-guests.sh)", path.display()));
        let limits = HostLimits::default();
        let engine = WedgeEngine::new(serving_engine_options(&limits, 128 << 20)).expect("engine");
        // What a deploy pays once: Cranelift compiles the whole program (no cache here).
        let compile_started = Instant::now();
        let (program, _) = Loader::new(&engine, None).load(&bytes).expect("compile");
        let compile = compile_started.elapsed();
        let spec = FunctionSpec {
            name: "bench".into(),
            kind: None,
            triggers: vec![TriggerSpec::Http { route: "/".into() }],
            timeout: Duration::from_secs(30),
            max_memory: 128 << 20,
            max_concurrency: None,
            reuse: None,
            scope: Scope::new("bench").expect("scope"),
            grants: GrantConfig::default(),
        };
        // No stores are granted: the services are only there to link against.
        let state_dir = std::env::temp_dir().join("wedge-bench-state");
        let services = Services {
            wasi: (),
            http: OutboundOffer { offered: true },
            key_value: Some(Arc::new(KeyValueStores::new(
                Arc::new(SqliteKeyValue::new(state_dir.clone())),
                KeyValueLimits::default(),
            ))),
            sql: Some(Arc::new(SqlDatabases::new(
                Arc::new(SqliteSql::new(state_dir)),
                SqlLimits::default(),
            ))),
            queue: None,
        };
        let function = Function::load(&engine, spec, program, &services).expect("load function");
        let host = Host::new(engine, services, limits);
        let gateway = Gateway::new(host, GatewayLimits::default());
        gateway.publish(&[Arc::new(function)]);
        let address: SocketAddr = "127.0.0.1:3000".parse().expect("address");

        let samples = runtime.block_on(async {
            let mut samples = Vec::with_capacity(iterations);
            let mut evictor = vec![0u8; cold_bytes];
            for i in 0..iterations + iterations / 10 {
                // One write per cache line, outside the timed part.
                for (offset, byte) in evictor.iter_mut().enumerate().step_by(64) {
                    *byte = byte.wrapping_add(offset as u8);
                }
                std::hint::black_box(&evictor);
                let request = hyper::Request::get("http://localhost/")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let started = Instant::now();
                let response = gateway.clone().handle(request, address, address).await;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let elapsed = started.elapsed();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                // The first tenth warms caches and the pool; it is not measured.
                if i >= iterations / 10 {
                    samples.push(elapsed);
                }
            }
            samples
        });
        let mut sorted = samples.clone();
        sorted.sort();
        let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
        let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        println!(
            "| {label} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} |",
            bytes.len() as f64 / 1024.0,
            compile.as_secs_f64() * 1e3,
            sorted.len(),
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6,
        );
    }
}
