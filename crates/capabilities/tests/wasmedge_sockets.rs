//! WasmEdge's socket extension, end to end: the C fixtures of examples/c (wasmedge-v1.c,
//! wasmedge-v2.c, built by scripts/build-guests.sh) run on wasmtime with the extension
//! linked the way a host links it, against real TCP and UDP servers this test starts on
//! loopback. Each fixture prints what every call returned; the tests compare those lines,
//! which pins the ABI (layouts, byte orders, errnos) byte for byte. The escape tests are
//! here too: every denial must be EACCES to the guest and one line on its stderr naming
//! the grant that would allow it.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Options, Outcome, free_port, run, run_with, tcp_echo, udp_echo};
use wedge_capabilities::network::NetworkPolicy;
use wedge_capabilities::wasmedge_sockets::{AbiGeneration, SocketAbi, SocketLimits};

fn policy(outbound: &[String], listen: &[String]) -> Arc<NetworkPolicy> {
    Arc::new(NetworkPolicy::parse_with_listen(outbound, listen).expect("valid policy"))
}

fn outbound(entries: &[&str]) -> Arc<NetworkPolicy> {
    policy(
        &entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        &[],
    )
}

fn listen(entries: &[&str]) -> Arc<NetworkPolicy> {
    policy(
        &[],
        &entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    )
}

#[test]
fn the_fixtures_use_the_generation_they_declare() {
    let v1 = SocketAbi::detect(&support::module("wasmedge-v1.wasm")).expect("v1 uses it");
    assert_eq!(v1.generation(), AbiGeneration::V1);
    let v2 = SocketAbi::detect(&support::module("wasmedge-v2.wasm")).expect("v2 uses it");
    assert_eq!(v2.generation(), AbiGeneration::V2);
}

#[tokio::test]
async fn v1_client_round_trip_and_addresses() {
    let port = tcp_echo().await;
    let out = run(
        "wasmedge-v1.wasm",
        &["client", "127.0.0.1", &port.to_string(), "hello"],
        outbound(&[&format!("tcp://127.0.0.1:{port}")]),
    )
    .await;
    out.assert_lines(&[
        "open=0",
        "fd_in_socket_range=1",
        "connect=0",
        "fdstat=0",
        "filetype=6 nonblock=0",
        "sent=5",
        "send=0",
        "shutdown=0",
        "received=hello",
        &format!("peer=127.0.0.1:{port} type=4"),
        "local=0",
        "local_type=4 local_port_nonzero=1",
        "close=0",
    ]);
}

#[tokio::test]
async fn v1_server_lands_on_loopback_and_accepts_without_blocking_the_thread() {
    let port = free_port();
    // The guest blocks in accept on this same task of a single-threaded runtime: the client
    // only gets to run because that wait is an await, not a blocking syscall.
    let port_text = port.to_string();
    let args = ["server", port_text.as_str()];
    let (out, reply) = tokio::join!(
        run("wasmedge-v1.wasm", &args, listen(&[&port.to_string()]),),
        support::tcp_request(port, b"abc"),
    );
    assert_eq!(reply, b"cba");
    out.assert_lines(&[
        "open=0",
        "reuseaddr=0",
        "bind=0",
        "listen=0",
        &format!("local=127.0.0.1:{port} type=4"),
        "acceptconn=1",
        "accept=0",
        "accepted_nonblock=0",
        "recv=0",
        "request=abc",
        "written=3",
        "close_conn=0",
        "close_listener=0",
    ]);
}

async fn nonblocking_connect(command: &str) {
    let open = tcp_echo().await;
    let closed = free_port();
    let grants = outbound(&[
        &format!("tcp://127.0.0.1:{open}"),
        &format!("tcp://127.0.0.1:{closed}"),
    ]);
    let out = run(
        "wasmedge-v1.wasm",
        &[command, &open.to_string()],
        grants.clone(),
    )
    .await;
    out.assert_lines(&[
        "open=0",
        "setfl=0",
        "nonblock=1",
        "connect_inprogress_or_done=1",
        "poll=0",
        "event userdata=7 error=0 type=2 hangup=0 nbytes_nonzero=1",
        "so_error=0",
    ]);
    // A refused connection is still a successful poll (writable, hung up, no event error);
    // the refusal is in SO_ERROR, as WASI's ECONNREFUSED.
    let out = run("wasmedge-v1.wasm", &[command, &closed.to_string()], grants).await;
    out.assert_lines(&[
        "open=0",
        "setfl=0",
        "nonblock=1",
        "connect_inprogress_or_done=1",
        "poll=0",
        "event userdata=7 error=0 type=2 hangup=1 nbytes_nonzero=1",
        "so_error=14",
    ]);
}

#[tokio::test]
async fn nonblocking_connect_reports_inprogress_then_poll_then_so_error() {
    nonblocking_connect("nonblock").await;
}

#[tokio::test]
async fn epoll_oneoff_answers_like_poll_oneoff() {
    nonblocking_connect("nonblock-epoll").await;
}

#[tokio::test]
async fn getaddrinfo_fills_the_guests_records() {
    let out = run(
        "wasmedge-v1.wasm",
        &["lookup", "localhost", "8080"],
        outbound(&["tcp://localhost:8080"]),
    )
    .await;
    assert_eq!(out.line(0), "getaddrinfo=0", "{out}");
    assert!(out.line(1).starts_with("count="), "{out}");
    // The port big-endian, the address, sin_zero: sockaddr_in after its family.
    assert_eq!(
        out.line(2),
        "answer family=1 socktype=2 protocol=1 addrlen=16 sa_family=1 sa_data_len=14",
        "{out}"
    );
    assert_eq!(out.line(3), "sa_data=1f907f0000010000000000000000", "{out}");
    // A literal needs no grant, a service name is a port, a bad service is EAI_SERVICE.
    let out = run(
        "wasmedge-v1.wasm",
        &["lookup", "10.1.2.3", "http"],
        outbound(&[]),
    )
    .await;
    out.assert_lines(&[
        "getaddrinfo=0",
        "count=1",
        "answer family=1 socktype=2 protocol=1 addrlen=16 sa_family=1 sa_data_len=14",
        "sa_data=00500a0102030000000000000000",
    ]);
    let out = run(
        "wasmedge-v1.wasm",
        &["lookup", "10.1.2.3", "no-such-service"],
        outbound(&[]),
    )
    .await;
    out.assert_lines(&["getaddrinfo=85"]);
    // IPv6 answers take the 26-byte form: port, flow info, address, scope id.
    let out = run(
        "wasmedge-v1.wasm",
        &["lookup", "::1", "443", "2"],
        outbound(&[]),
    )
    .await;
    out.assert_lines(&[
        "getaddrinfo=0",
        "count=1",
        "answer family=2 socktype=2 protocol=1 addrlen=28 sa_family=2 sa_data_len=26",
        "sa_data=01bb000000000000000000000000000000000000000100000000",
    ]);
}

#[tokio::test]
async fn v1_udp_round_trip_and_truncation() {
    let port = udp_echo().await;
    let out = run(
        "wasmedge-v1.wasm",
        &["udp", "127.0.0.1", &port.to_string(), "ping"],
        outbound(&[&format!("udp://127.0.0.1:{port}")]),
    )
    .await;
    out.assert_lines(&[
        "open=0",
        "send_to=0",
        "sent=4",
        "recv_from=0",
        "datagram=ping from=127.0.0.1 truncated=0",
        "send_to_again=0",
        "recv_small=0",
        "small_len=2 truncated=1",
    ]);
}

#[tokio::test]
async fn socket_options() {
    let out = run("wasmedge-v1.wasm", &["sockopts"], outbound(&[])).await;
    out.assert_lines(&[
        "open=0",
        "type=2 acceptconn=0 error=0",
        "set_rcvtimeo=0",
        "get_rcvtimeo=0",
        "rcvtimeo=1.500000 size=16",
        "bad_level=28",
        "set_type=50",
        "short_int=28",
    ]);
}

#[tokio::test]
async fn so_rcvtimeo_ends_a_blocking_accept_with_again() {
    let port = free_port();
    let started = Instant::now();
    let out = run(
        "wasmedge-v1.wasm",
        &["accept-timeout", &port.to_string()],
        listen(&[&port.to_string()]),
    )
    .await;
    out.assert_lines(&["open=0", "bind=0", "listen=0", "set_rcvtimeo=0", "accept=6"]);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_guest_waiting_in_accept_past_its_deadline_traps() {
    let port = free_port();
    let out = run_with(
        "wasmedge-v1.wasm",
        &["server", &port.to_string()],
        Options {
            policy: listen(&[&port.to_string()]),
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            ..Options::default()
        },
    )
    .await;
    let trap = out.status.clone().expect_err("the guest must trap");
    assert!(trap.contains("interrupt"), "{trap}");
}

#[tokio::test]
async fn v2_server_storage_addresses_nonblocking_accept_and_hangup() {
    let port = free_port();
    let port_text = port.to_string();
    let args = ["server", port_text.as_str()];
    let (out, (reply, client_port)) = tokio::join!(
        run(
            "wasmedge-v2.wasm",
            &args,
            listen(&[&format!("127.0.0.1:{port}")]),
        ),
        support::tcp_exchange(port, b"ping", 4),
    );
    assert_eq!(reply, b"pong");
    out.assert_lines(&[
        "open=0",
        "bind_v2=0",
        "listen=0",
        &format!("local family=1 address=127.0.0.1 port={port}"),
        "accept=0",
        "accepted_nonblock=1",
        &format!("peer family=1 address=127.0.0.1 port={client_port}"),
        "poll=0",
        "event userdata=7 error=0 type=1 hangup=0 nbytes_nonzero=1",
        "recv=0",
        "request=ping",
        "sent=4",
        "send=0",
        "poll=0",
        "event userdata=7 error=0 type=1 hangup=1 nbytes_nonzero=0",
        "recv_eof=0",
        "eof_len=0",
    ]);
}

#[tokio::test]
async fn v2_recv_from_writes_the_port_in_network_order() {
    let port = udp_echo().await;
    let out = run(
        "wasmedge-v2.wasm",
        &["udp", "127.0.0.1", &port.to_string(), "hello"],
        outbound(&[&format!("udp://127.0.0.1:{port}")]),
    )
    .await;
    let [hi, lo] = port.to_be_bytes();
    out.assert_lines(&[
        "open=0",
        "send_to_v2=0",
        "recv_from=0",
        "datagram=hello len=5 family=1 address=127.0.0.1",
        &format!("port_bytes={hi:02x}{lo:02x}0000"),
    ]);
}

#[tokio::test]
async fn v2_connect_with_the_storage_form() {
    let port = tcp_echo().await;
    let out = run(
        "wasmedge-v2.wasm",
        &["client", "127.0.0.1", &port.to_string()],
        outbound(&[&format!("tcp://127.0.0.1:{port}")]),
    )
    .await;
    out.assert_lines(&[
        "open=0",
        "connect_v2=0",
        &format!("peer family=1 address=127.0.0.1 port={port}"),
        "local_16_bytes=28",
        "sent=2",
        "send=0",
        "received=hi",
    ]);
}

// --- escapes: every one is EACCES plus one stderr line naming the grant ---------------

fn assert_denied(out: &Outcome, line: &str, grant: &str, list: &str) {
    assert!(
        out.stdout.lines().any(|l| l == line),
        "expected `{line}`:\n{out}"
    );
    let denials: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("wedge: "))
        .collect();
    assert_eq!(denials.len(), 1, "one line per denial:\n{out}");
    assert!(
        denials[0].contains(&format!("add \"{grant}\" to {list}")),
        "the line names the grant `{grant}`:\n{out}"
    );
}

/// Runs the v1 fixture with `args` under `policy`: it must print `line` (an errno of 2)
/// and say on stderr which outbound grant would have allowed it.
async fn outbound_denied(args: &[&str], policy: Arc<NetworkPolicy>, line: &str, grant: &str) {
    let out = run("wasmedge-v1.wasm", args, policy).await;
    assert_denied(&out, line, grant, "allowed_outbound_hosts");
}

#[tokio::test]
async fn escape_an_ungranted_port() {
    let grants = outbound(&["tcp://127.0.0.1:1111"]);
    let args = ["connect", "127.0.0.1", "2222"];
    outbound_denied(&args, grants, "connect=2", "tcp://127.0.0.1:2222").await;
}

#[tokio::test]
async fn escape_an_ip_literal_behind_a_granted_name() {
    let port = tcp_echo().await;
    let grants = outbound(&[&format!("tcp://localhost:{port}")]);
    // The address the name stands for, but not through the name: denied.
    let (port_text, grant) = (port.to_string(), format!("tcp://127.0.0.1:{port}"));
    let args = ["connect", "127.0.0.1", port_text.as_str()];
    outbound_denied(&args, grants.clone(), "connect=2", &grant).await;
    // Resolved through the granted name first: allowed.
    let out = run(
        "wasmedge-v1.wasm",
        &["connect-name", "localhost", &port_text],
        grants,
    )
    .await;
    assert_eq!(out.line(0), "getaddrinfo=0", "{out}");
    assert!(out.stdout.lines().any(|l| l == "connect=0"), "{out}");
    assert!(out.stderr.is_empty(), "{out}");
}

#[tokio::test]
async fn escape_an_ungranted_dns_name() {
    let grants = outbound(&["tcp://localhost:80"]);
    let args = ["lookup", "exfiltrate.example", "http"];
    outbound_denied(
        &args,
        grants,
        "getaddrinfo=2",
        "tcp://exfiltrate.example:80",
    )
    .await;
}

#[tokio::test]
async fn escape_the_guests_own_dns_over_tcp() {
    // wasmedge_wasi_socket resolves through DNS_SERVER over TCP when that is set: a name
    // grant must not let it reach a resolver of its choosing.
    let grants = outbound(&["tcp://db.example:5432"]);
    let args = ["connect", "127.0.0.53", "53"];
    outbound_denied(&args, grants, "connect=2", "tcp://127.0.0.53:53").await;
}

#[tokio::test]
async fn escape_udp_with_only_a_tcp_grant() {
    let grants = outbound(&["tcp://127.0.0.1:5353"]);
    let args = ["udp-send", "127.0.0.1", "5353"];
    outbound_denied(&args, grants, "send_to=2", "udp://127.0.0.1:5353").await;
}

#[tokio::test]
async fn escape_a_bind_without_a_listen_grant() {
    let port = free_port();
    let out = run(
        "wasmedge-v1.wasm",
        &["bind", "0.0.0.0", &port.to_string()],
        listen(&["1"]),
    )
    .await;
    assert_denied(&out, "bind=2", &port.to_string(), "listen");
    // Listening on a port the system picks is listening on an ungranted port.
    let out = run(
        "wasmedge-v1.wasm",
        &["bind", "127.0.0.1", "0"],
        listen(&["1"]),
    )
    .await;
    assert_denied(&out, "listen=2", "PORT", "listen");
    // Every interface needs the wildcard granted in so many words.
    let out = run(
        "wasmedge-v1.wasm",
        &["bind", "0.0.0.0", &port.to_string()],
        listen(&[&format!("0.0.0.0:{port}")]),
    )
    .await;
    out.assert_lines(&[
        "open=0",
        "bind=0",
        "listen=0",
        &format!("local=0.0.0.0:{port} type=4"),
    ]);
}

#[tokio::test]
async fn refusals_unix_sockets_bindtodevice_misalignment_and_the_socket_limit() {
    let out = run("wasmedge-v1.wasm", &["unix"], outbound(&[])).await;
    assert_eq!(out.line(0), "open=52", "{out}");
    assert!(out.stderr.contains("AF_UNIX"), "{out}");
    let out = run("wasmedge-v1.wasm", &["bindtodevice"], outbound(&[])).await;
    out.assert_lines(&["open=0", "bindtodevice=2"]);
    assert!(out.stderr.contains("SO_BINDTODEVICE"), "{out}");
    let out = run("wasmedge-v1.wasm", &["misaligned"], outbound(&[])).await;
    out.assert_lines(&["open=4"]);
    let out = run_with(
        "wasmedge-v1.wasm",
        &["limit", "5"],
        Options {
            limits: SocketLimits { max_sockets: 3 },
            ..Options::default()
        },
    )
    .await;
    out.assert_lines(&["opened=3 err=33"]);
    assert!(out.stderr.contains("limit"), "{out}");
}
