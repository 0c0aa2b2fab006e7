//! The Rust corpus on WasmEdge's socket extension, unchanged: apps built from crates.io by
//! scripts/build-guests.sh (examples/wasmedge/) with the crates WasmEdge apps are written
//! with (tokio_wasi, hyper_wasi, http_req_wasi, reqwest_wasi, mysql_async_wasi) and the
//! examples wasmedge_wasi_socket 0.5.5 ships, each run through the extension against real
//! servers this test starts on loopback (and the MariaDB of scripts/services.sh).

mod support;

use std::sync::Arc;

use support::{Options, free_port, http, http_server, run_with};
use wedge_capabilities::network::NetworkPolicy;

fn grants(outbound: &[String], listen: &[String]) -> Arc<NetworkPolicy> {
    Arc::new(NetworkPolicy::parse_with_listen(outbound, listen).expect("valid policy"))
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Runs a server guest until `client` is done with it (the guest serves forever).
async fn serve_while<F: std::future::Future<Output = ()>>(
    guest: &str,
    options: Options,
    client: F,
) {
    tokio::select! {
        out = run_with(guest, &[], options) => panic!("the server guest exited:\n{out}"),
        () = client => {}
    }
}

#[tokio::test]
async fn hyper_server_on_tokio_wasi() {
    let port = free_port();
    let options = Options {
        policy: grants(&[], &[port.to_string()]),
        env: env(&[("PORT", port.to_string())]),
        ..Options::default()
    };
    serve_while("wasmedge-hyper-server.wasm", options, async {
        assert_eq!(
            http(port, "GET", "/", "").await,
            (200, "hello from hyper\n".to_string())
        );
        assert_eq!(
            http(port, "POST", "/echo", "echo me").await,
            (200, "echo me".to_string())
        );
        assert_eq!(http(port, "GET", "/nope", "").await.0, 404);
        // Connections at once, each its own tokio_wasi task inside the guest.
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..16 {
            clients.spawn(async move { http(port, "POST", "/echo", &format!("client {i}")).await });
        }
        let mut answered = 0;
        while let Some(result) = clients.join_next().await {
            let (status, body) = result.expect("client task");
            assert_eq!(status, 200);
            assert!(body.starts_with("client "), "{body}");
            answered += 1;
        }
        assert_eq!(answered, 16);
    })
    .await;
}

async fn client_against_local_server(guest: &str, expected: &[&str]) {
    let port = http_server().await;
    let url = format!("http://127.0.0.1:{port}");
    let out = run_with(
        guest,
        &[&url],
        Options {
            policy: grants(&[format!("http://127.0.0.1:{port}")], &[]),
            ..Options::default()
        },
    )
    .await;
    let expected: Vec<String> = expected
        .iter()
        .map(|line| line.replace("{url}", &url))
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    out.assert_lines(&expected);
}

#[tokio::test]
async fn hyper_client_on_tokio_wasi() {
    client_against_local_server(
        "wasmedge-hyper-client.wasm",
        &[
            "GET {url} -> 200 OK",
            "hello from the test server",
            "POST {url}/echo -> 200 OK",
            "hello",
        ],
    )
    .await;
}

#[tokio::test]
async fn http_req_client() {
    client_against_local_server(
        "wasmedge-http-req-client.wasm",
        &["GET {url} -> 200", "hello from the test server"],
    )
    .await;
}

#[tokio::test]
async fn reqwest_client_on_tokio_wasi() {
    client_against_local_server(
        "wasmedge-reqwest-client.wasm",
        &["GET {url} -> 200 OK", "hello from the test server"],
    )
    .await;
}
