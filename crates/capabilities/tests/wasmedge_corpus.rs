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

// --- the examples wasmedge_wasi_socket 0.5.5 ships, unchanged ------------------------

#[tokio::test]
async fn shipped_tcp_stream() {
    let (port, received) = support::tcp_collect().await;
    let out = run_with(
        "wasmedge-example-tcp_stream.wasm",
        &[],
        Options {
            policy: grants(&[format!("tcp://127.0.0.1:{port}")], &[]),
            env: env(&[("PORT", port.to_string())]),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.status, Ok(0), "{out}");
    assert_eq!(out.line(0), format!("connect to 127.0.0.1:{port}"), "{out}");
    assert!(out.line(1).starts_with("local address 127.0.0.1:"), "{out}");
    assert_eq!(
        out.line(2),
        format!("peer address 127.0.0.1:{port}"),
        "{out}"
    );
    assert_eq!(received.await.expect("server task"), b"hello");
}

#[tokio::test]
async fn shipped_tcp_listener() {
    let port = free_port();
    let port_text = port.to_string();
    let options = Options {
        policy: grants(&[], std::slice::from_ref(&port_text)),
        env: env(&[("PORT", port_text.clone())]),
        ..Options::default()
    };
    let (out, reply) = tokio::join!(
        run_with("wasmedge-example-tcp_listener.wasm", &[], options),
        support::tcp_request(port, b"hello"),
    );
    assert_eq!(reply, b"olleh");
    assert_eq!(out.status, Ok(0), "{out}");
    assert_eq!(
        out.line(0),
        format!("listening at 127.0.0.1:{port}"),
        "{out}"
    );
    assert!(out.stdout.contains("get message: hello"), "{out}");
}

#[tokio::test]
async fn shipped_nonblock_tcp_stream() {
    let port = support::tcp_echo().await;
    let out = run_with(
        "wasmedge-example-nonblock_tcp_stream.wasm",
        &[],
        Options {
            policy: grants(&[format!("tcp://127.0.0.1:{port}")], &[]),
            env: env(&[("PORT", port.to_string())]),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.status, Ok(0), "{out}");
    assert!(out.stdout.contains("get response: Hello"), "{out}");
}

#[tokio::test]
async fn shipped_poll_tcp_listener() {
    // It listens on 127.0.0.1:1234, written into the example.
    let options = Options {
        policy: grants(&[], &["1234".to_string()]),
        ..Options::default()
    };
    serve_while("wasmedge-example-poll_tcp_listener.wasm", options, async {
        let (greeting, _) = support::tcp_exchange(1234, b"hi\n", 13).await;
        assert_eq!(greeting, b"Hello world!\n");
    })
    .await;
}

#[tokio::test]
async fn shipped_udp_socket() {
    let echo = support::udp_echo().await;
    // It binds 0.0.0.0:3000 (written into the example) and sends to 127.0.0.1:$PORT.
    let out = run_with(
        "wasmedge-example-udp_socket.wasm",
        &[],
        Options {
            policy: grants(&[format!("udp://127.0.0.1:{echo}")], &["3000".to_string()]),
            env: env(&[("PORT", echo.to_string())]),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.status, Ok(0), "{out}");
    // wasmedge_wasi_socket reads V2 recv_from's network-order port as host order: the port
    // it prints is byte-swapped, on WasmEdge as here.
    out.assert_lines(&[&format!("hello 127.0.0.1:{}", echo.swap_bytes())]);
}

#[tokio::test]
async fn shipped_udp_reverse() {
    let port = free_port();
    // The example answers the port it read, byte-swapped (see shipped_udp_socket): a client
    // port whose two bytes are equal gets the answer all the same.
    let client = [0xc3c3u16, 0xc5c5, 0xc7c7, 0xd1d1, 0xd3d3]
        .into_iter()
        .find_map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok())
        .expect("a free port with equal bytes");
    client.set_nonblocking(true).expect("non-blocking");
    let client = tokio::net::UdpSocket::from_std(client).expect("tokio socket");
    let client_port = client.local_addr().expect("local addr").port();
    let options = Options {
        policy: grants(
            &[format!("udp://127.0.0.1:{client_port}")],
            &[port.to_string()],
        ),
        env: env(&[("PORT", port.to_string())]),
        ..Options::default()
    };
    let exchange = async {
        let mut buf = [0u8; 16];
        for _ in 0..300 {
            // Until the guest has bound its port, the datagram finds nobody: send again.
            client
                .send_to(b"abc", ("127.0.0.1", port))
                .await
                .expect("send");
            if let Ok(Ok((n, _))) = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                client.recv_from(&mut buf),
            )
            .await
            {
                return buf[..n].to_vec();
            }
        }
        Vec::new()
    };
    let (out, reply) = tokio::join!(
        run_with("wasmedge-example-udp_reverse.wasm", &[], options),
        exchange
    );
    assert_eq!(reply, b"cba");
    out.assert_lines(&[&format!("recv from 127.0.0.1:{client_port}")]);
}

#[tokio::test]
async fn shipped_socket_addr() {
    // Resolves localhost (granted) and expects "foo" not to resolve (here: denied).
    let out = run_with(
        "wasmedge-example-socket_addr.wasm",
        &[],
        Options {
            policy: grants(&["tcp://localhost:3000".to_string()], &[]),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.status, Ok(0), "{out}");
    assert!(out.stderr.contains("DNS lookup of `foo` denied"), "{out}");
}

#[tokio::test]
async fn shipped_try_sock_opt_stops_at_bindtodevice() {
    // It binds its socket to the `lo` device first, which wedge refuses: the example's own
    // unwrap ends it there (documented in docs/wasmedge.md).
    let out = run_with(
        "wasmedge-example-try_sock_opt.wasm",
        &[],
        Options::default(),
    )
    .await;
    assert!(out.status.is_err(), "{out}");
    assert!(out.stderr.contains("SO_BINDTODEVICE refused"), "{out}");
}

#[tokio::test]
async fn shipped_get_addrinfo_may_not_resolve_the_internet() {
    // It resolves google.com: with no grant that is a denial naming the grant, and the
    // example's unwrap ends it.
    let out = run_with(
        "wasmedge-example-get_addrinfo.wasm",
        &[],
        Options::default(),
    )
    .await;
    assert!(out.status.is_err(), "{out}");
    assert!(
        out.stderr
            .contains("add \"tcp://google.com:80\" to allowed_outbound_hosts"),
        "{out}"
    );
}

// --- the orders microservice on mysql_async_wasi, against MariaDB ----------------------

/// MariaDB from scripts/services.sh, in a database of this test's own: the URL for it and
/// the grant that reaches it.
async fn orders_database() -> (String, String) {
    use mysql_async::prelude::Queryable;
    let base = std::env::var("WEDGE_TEST_MYSQL_URL").expect(
        "WEDGE_TEST_MYSQL_URL is not set: start MariaDB with `eval \"$(scripts/services.sh start)\"` (scripts/test.sh does)",
    );
    let pool = mysql_async::Pool::new(base.as_str());
    let mut conn = pool.get_conn().await.expect("connect to MariaDB");
    conn.query_drop("CREATE DATABASE IF NOT EXISTS wedge_wasmedge_orders")
        .await
        .expect("create the test database");
    drop(conn);
    pool.disconnect().await.expect("disconnect");
    let (server, _) = base
        .rsplit_once('/')
        .expect("a mysql:// URL with a database");
    let host_port = server.rsplit_once('@').map_or(server, |(_, hp)| hp);
    (
        format!("{server}/wedge_wasmedge_orders"),
        format!("tcp://{host_port}"),
    )
}

fn order(id: i32, product: i32, quantity: i32, address: &str) -> String {
    format!(
        r#"{{"order_id":{id},"product_id":{product},"quantity":{quantity},"amount":56.0,"shipping":15.0,"tax":2.0,"shipping_address":"{address}"}}"#
    )
}

#[tokio::test]
async fn orders_microservice_on_mysql_async_wasi() {
    let (database_url, database_grant) = orders_database().await;
    let port = free_port();
    let options = Options {
        policy: grants(&[database_grant], &[port.to_string()]),
        env: env(&[("PORT", port.to_string()), ("DATABASE_URL", database_url)]),
        ..Options::default()
    };
    let ok = (200, r#"{"status":true}"#.to_string());
    serve_while("wasmedge-orders.wasm", options, async {
        assert_eq!(http(port, "GET", "/init", "").await, ok);
        let one = order(1, 12, 2, "Mataderos 2312");
        assert_eq!(http(port, "POST", "/create_order", &one).await, ok);
        let (two, three) = (
            order(2, 15, 3, "1234 NW Bobcat"),
            order(3, 11, 5, "20 Havelock"),
        );
        let batch = format!("[{two},{three}]");
        assert_eq!(http(port, "POST", "/create_orders", &batch).await, ok);
        assert_eq!(
            http(port, "GET", "/orders", "").await,
            (200, format!("[{one},{two},{three}]"))
        );
        let two_updated = order(2, 15, 4, "1234 NW Bobcat");
        assert_eq!(http(port, "POST", "/update_order", &two_updated).await, ok);
        assert_eq!(http(port, "GET", "/delete_order?id=1", "").await, ok);
        assert_eq!(
            http(port, "GET", "/orders", "").await,
            (200, format!("[{two_updated},{three}]"))
        );
        assert_eq!(http(port, "GET", "/delete_order", "").await.0, 400);
    })
    .await;
}

#[tokio::test]
async fn orders_microservice_without_the_database_grant_is_denied() {
    let (database_url, _) = orders_database().await;
    let port = free_port();
    let options = Options {
        policy: grants(&[], &[port.to_string()]),
        env: env(&[("PORT", port.to_string()), ("DATABASE_URL", database_url)]),
        ..Options::default()
    };
    serve_while("wasmedge-orders.wasm", options, async {
        let (status, body) = http(port, "GET", "/init", "").await;
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains("denied") || body.contains("ermission"),
            "{body}"
        );
    })
    .await;
}
