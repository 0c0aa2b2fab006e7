//! The HTTP trigger in process: real guests (built by scripts/build-guests.sh) behind a real
//! host, requests handed to `Gateway::handle` with in-memory bodies, no sockets. Quick to run,
//! and each step of the request path can be looked at on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use wedge_capabilities::http_outbound::OutboundOffer;
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

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "guest {} is missing ({error}): build the guests with scripts/build-guests.sh (scripts/test.sh does)",
            path.display()
        )
    })
}

struct Node {
    gateway: Arc<Gateway>,
    _state: tempfile::TempDir,
}

fn spec(name: &str, route: &str, max_concurrency: Option<usize>) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        kind: None,
        triggers: vec![TriggerSpec::Http {
            route: route.into(),
        }],
        timeout: Duration::from_secs(5),
        max_memory: 64 << 20,
        max_concurrency,
        reuse: None,
        scope: Scope::new("app").expect("scope"),
        grants: GrantConfig::default(),
    }
}

fn node(limits: HostLimits) -> Node {
    let state = tempfile::tempdir().expect("temp dir");
    let engine = WedgeEngine::new(serving_engine_options(&limits, 64 << 20)).expect("engine");
    let services = Services {
        wasi: (),
        http: OutboundOffer { offered: true },
        key_value: Some(Arc::new(KeyValueStores::new(
            Arc::new(SqliteKeyValue::new(state.path().to_path_buf())),
            KeyValueLimits::default(),
        ))),
        sql: Some(Arc::new(SqlDatabases::new(
            Arc::new(SqliteSql::new(state.path().to_path_buf())),
            SqlLimits::default(),
        ))),
        queue: None,
    };
    let load = |name: &str, route: &str, file: &str, max_concurrency| {
        let (program, _) = Loader::new(&engine, None)
            .load(&guest(file))
            .expect("compile");
        Arc::new(
            Function::load(
                &engine,
                spec(name, route, max_concurrency),
                program,
                &services,
            )
            .expect("load"),
        )
    };
    let functions = vec![
        load("probe", "/probe", "http-probe.wasm", None),
        load("wagi", "/wagi", "wagi-echo.wasm", None),
        load("single", "/single", "http-probe.wasm", Some(1)),
    ];
    let host = Host::new(engine, services, limits);
    let gateway = Gateway::new(host, GatewayLimits::default());
    gateway.publish(&functions);
    Node {
        gateway,
        _state: state,
    }
}

fn address() -> SocketAddr {
    "127.0.0.1:3000".parse().expect("address")
}

async fn send(gateway: &Arc<Gateway>, request: Request<Full<Bytes>>) -> (StatusCode, String) {
    let response = gateway.clone().handle(request, address(), address()).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn request(method: &str, uri: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request")
}

#[test]
fn bodies_go_through_both_kinds_in_memory() {
    let node = node(HostLimits::default());
    runtime().block_on(async {
        let (status, body) = send(&node.gateway, request("PUT", "/probe/echo", b"ping")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ping");
        let (status, body) = send(&node.gateway, request("POST", "/wagi/echo", b"pong")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("method=POST"), "{body}");
        assert!(body.ends_with("body=pong"), "{body}");
    });
}

#[test]
fn wedge_answers_unknown_routes_connect_and_oversized_bodies_itself() {
    let node = node(HostLimits {
        max_body_size: 3,
        ..HostLimits::default()
    });
    runtime().block_on(async {
        let (status, body) = send(&node.gateway, request("GET", "/nowhere", b"")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no function serves /nowhere"), "{body}");
        let connect = Request::builder()
            .method("CONNECT")
            .uri("example.com:443")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, _) = send(&node.gateway, connect).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let declared = Request::builder()
            .method("POST")
            .uri("/probe/echo")
            .header("content-length", "4")
            .body(Full::new(Bytes::from_static(b"four")))
            .expect("request");
        let (status, _) = send(&node.gateway, declared).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // Refused before any instance: the function never ran.
        let (_, metrics) = send(&node.gateway, request("GET", "/_wedge/metrics", b"")).await;
        assert!(
            metrics.contains("wedge_rejections_total{function=\"\",reason=\"body_size\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("wedge_unrouted_requests_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("wedge_instantiation_duration_seconds_count{function=\"probe\"} 0"),
            "{metrics}"
        );
    });
}

#[test]
fn a_function_at_its_concurrency_limit_answers_503_while_others_serve() {
    let node = node(HostLimits::default());
    runtime().block_on(async {
        let slow = tokio::spawn({
            let gateway = node.gateway.clone();
            async move { send(&gateway, request("GET", "/single/sleep?ms=300", b"")).await }
        });
        // Let the slow request take the function's only permit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = send(&node.gateway, request("GET", "/single/counter", b"")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let (status, _) = send(&node.gateway, request("GET", "/probe/counter", b"")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = slow.await.expect("slow request");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "slept 300\n");
    });
}
