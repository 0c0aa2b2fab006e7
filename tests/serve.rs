//! `wedge serve` end to end: the real binary on loopback, real guests, real HTTP.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::server::{Server, get, get_with, send};
use support::{guest, status};

/// The functions most tests use. Timeouts are short so that failures are quick.
const APP: &str = r#"
[[function]]
name = "hello"
source = "{guests}/http-hello.wasm"
route = "/hello"

[[function]]
name = "probe"
source = "{guests}/http-probe.wasm"
route = "/probe"
timeout = "1s"
max_memory = "32MiB"
env = { GREETING = "hi there" }

[[function]]
name = "hello-wagi"
source = "{guests}/wagi-hello.wasm"
route = "/hello-wagi"

[[function]]
name = "wagi"
source = "{guests}/wagi-echo.wasm"
route = "/wagi"
timeout = "1s"
"#;

/// Waits (bounded) until `function` has a request in flight, so a test can act while it is.
fn wait_in_flight(server: &Server, function: &str) {
    let needle = format!("wedge_in_flight_requests{{function=\"{function}\"}} 1");
    let started = std::time::Instant::now();
    while !get(&server.url("/_wedge/metrics")).text().contains(&needle) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{function} never got busy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn hello_in_both_kinds_and_the_urls_are_printed() {
    // Guests must exist: a missing build fails here with the command that builds it.
    guest("http-hello.wasm");
    let server = Server::start(APP, &[]);
    let printed = server.stdout_lines.join("\n");
    assert!(
        printed.contains(&format!("{}/hello", server.base)),
        "{printed}"
    );
    assert!(printed.contains("wagi"), "{printed}");

    let reply = get(&server.url("/hello"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from wedge\n");
    assert!(reply.header("x-wedge-request-id").is_some());
    // A small body that is complete at once goes out whole, with a content-length.
    assert_eq!(reply.header("content-length"), Some("17"));

    let reply = get(&server.url("/hello-wagi"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from wagi\n");
    assert_eq!(reply.header("content-type"), Some("text/plain"));

    // Prefix routing: /hello/anything is hello's; /hellothere is nobody's.
    assert_eq!(get(&server.url("/hello/deeper/path")).status, 200);
    let missing = get(&server.url("/hellothere"));
    assert_eq!(missing.status, 404);
    let id = missing.header("x-wedge-request-id").unwrap().to_string();
    assert!(missing.text().contains(&id));

    assert_eq!(get(&server.url("/_wedge/health")).text(), "ok\n");
}

#[test]
fn http_echo_of_method_uri_headers_and_a_multi_megabyte_streamed_body() {
    let server = Server::start(APP, &[]);
    let body = pseudo_random(8 << 20);
    let reply = send(
        "PUT",
        &server.url("/probe/echo?x=1&y=two"),
        &[
            ("x-test", "value 1"),
            ("content-type", "application/octet-stream"),
        ],
        &body,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-echo-method"), Some("PUT"));
    assert_eq!(reply.header("x-echo-uri"), Some("/probe/echo?x=1&y=two"));
    assert_eq!(reply.header("x-echo-h-x-test"), Some("value 1"));
    assert_eq!(reply.body.len(), body.len());
    assert!(reply.body == body, "the echoed body differs");

    // A large download streams out too.
    let reply = get(&server.url("/probe/big?bytes=20000000"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 20_000_000);
    // A large body streams: it is never gathered whole.
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));

    // The function's env grant reaches it.
    assert_eq!(
        get(&server.url("/probe/env?name=GREETING")).text(),
        "hi there"
    );
    assert_eq!(get(&server.url("/probe/env?name=HOME")).text(), "unset");
}

#[test]
fn wagi_gets_cgi_variables_and_the_body_on_stdin() {
    let server = Server::start(APP, &[]);
    let body = pseudo_random(3 << 20);
    let reply = send(
        "POST",
        &server.url("/wagi/echo?q=1"),
        &[("x-test", "yes"), ("content-type", "application/x-test")],
        &body,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = String::from_utf8_lossy(&reply.body[..reply.body.len().min(2000)]).into_owned();
    for line in [
        "method=POST",
        "path=/echo",
        "query=q=1",
        "content_type=application/x-test",
        &format!("content_length={}", body.len()),
        "header HTTP_X_TEST=yes",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
    let marker = b"body=";
    let at = reply
        .body
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap()
        + marker.len();
    assert!(reply.body[at..] == body[..], "the body on stdin differs");

    let reply = get(&server.url("/wagi/status"));
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("x-custom"), Some("yes"));
    let reply = get(&server.url("/wagi/redirect"));
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("/elsewhere"));
    assert_eq!(get(&server.url("/wagi/nothing-here")).status, 404);
}

#[test]
fn malformed_wagi_output_is_a_502_noted_in_the_log() {
    let server = Server::start(APP, &[]);
    let reply = get(&server.url("/wagi/malformed"));
    assert_eq!(reply.status, 502);
    assert!(
        reply.text().contains("malformed CGI response"),
        "{}",
        reply.text()
    );
    let id = reply.header("x-wedge-request-id").unwrap().to_string();
    let log = server.wait_for_log("malformed CGI response");
    assert!(
        log.lines()
            .any(|l| l.contains("malformed CGI response") && l.contains(&id)),
        "{log}"
    );
    // The server is fine afterwards.
    assert_eq!(get(&server.url("/hello")).status, 200);
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let server = Server::start(APP, &[]);
    for _ in 0..20 {
        let reply = get(&server.url("/probe/counter"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "1", "state leaked between requests");
    }
}

#[test]
fn failing_functions_are_answered_while_a_healthy_one_serves_under_load() {
    let server = Server::start(APP, &[]);
    let hello = server.url("/hello");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let hello = hello.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..60 {
                    let reply = get(&hello);
                    if reply.status != 200 || reply.text() != "hello from wedge\n" {
                        failures.push((reply.status, reply.text()));
                    }
                }
                failures
            })
        })
        .collect();

    for _ in 0..2 {
        let trap = get(&server.url("/probe/trap"));
        assert_eq!(trap.status, 500);
        assert!(trap.text().contains("trapped"), "{}", trap.text());

        let started = std::time::Instant::now();
        let slow = get(&server.url("/probe/loop"));
        assert_eq!(slow.status, 504, "{}", slow.text());
        assert!(started.elapsed() < Duration::from_secs(15));

        let hog = get(&server.url("/probe/hog"));
        assert_eq!(hog.status, 500);
        assert!(
            hog.text().contains("memory limit of 32 MiB"),
            "{}",
            hog.text()
        );

        assert_eq!(get(&server.url("/wagi/trap")).status, 500);
        assert_eq!(get(&server.url("/wagi/loop")).status, 504);
    }
    for worker in load {
        let failures = worker.join().unwrap();
        assert!(failures.is_empty(), "healthy requests failed: {failures:?}");
    }

    // Each error response's request id is in the log, with the guest's own stderr.
    let hog = get(&server.url("/probe/hog"));
    let id = hog.header("x-wedge-request-id").unwrap().to_string();
    server.wait_for_log("memory allocation");
    let log = server.wait_for_line(|l| l.contains(&id) && l.contains("status=500"));
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wedge::guest") && l.contains("memory allocation")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.contains("status=500")), "{log}");

    let metrics = get(&server.url("/_wedge/metrics")).text();
    for needle in [
        "wedge_requests_total{function=\"hello\",status=\"200\"} 240",
        "wedge_traps_total{function=\"probe\"}",
        "wedge_timeouts_total{function=\"probe\"} 2",
        "wedge_timeouts_total{function=\"wagi\"} 2",
        "wedge_instantiation_duration_seconds_count{function=\"hello\"} 240",
        "wedge_in_flight_requests{function=\"hello\"} 0",
        "wedge_request_duration_seconds_bucket{function=\"hello\",le=\"+Inf\"} 240",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }
}

#[test]
fn outbound_http_is_allowed_only_to_listed_hosts() {
    // A tiny upstream on loopback.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in upstream.incoming().take(10) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
            );
        }
    });
    let unlisted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unlisted_port = unlisted.local_addr().unwrap().port();

    let app = format!(
        r#"
[[function]]
name = "probe"
source = "{{guests}}/http-probe.wasm"
route = "/probe"
allowed_outbound_hosts = ["http://127.0.0.1:{upstream_port}"]
"#
    );
    let server = Server::start(&app, &[]);
    let allowed = get(&server.url(&format!(
        "/probe/fetch?url=http://127.0.0.1:{upstream_port}/x"
    )));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.text(), "status: 200\nupstream");

    let denied = get(&server.url(&format!(
        "/probe/fetch?url=http://127.0.0.1:{unlisted_port}/x"
    )));
    assert_eq!(denied.status, 502);
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    let log = server.wait_for_log("outbound request denied");
    assert!(
        log.lines().any(|l| l.contains("outbound request denied")
            && l.contains(&format!("127.0.0.1:{unlisted_port}"))),
        "{log}"
    );
    drop(unlisted);
}

#[test]
fn concurrency_limits_answer_503_with_retry_after() {
    let app = r#"
[[function]]
name = "probe"
source = "{guests}/http-probe.wasm"
route = "/probe"
max_concurrency = 1

[[function]]
name = "hello"
source = "{guests}/http-hello.wasm"
route = "/hello"
"#;
    let server = Server::start(app, &[]);
    let slow = server.url("/probe/sleep?ms=1500");
    let first = std::thread::spawn(move || get(&slow));
    wait_in_flight(&server, "probe");
    let second = get(&server.url("/probe/sleep?ms=10"));
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.header("retry-after"), Some("1"));
    // Other functions are not affected by probe's limit.
    assert_eq!(get(&server.url("/hello")).status, 200);
    assert_eq!(first.join().unwrap().status, 200);
    // Once the slow request is done, there is room again.
    assert_eq!(get(&server.url("/probe/sleep?ms=10")).status, 200);

    // The global limit.
    let server = Server::start(app, &["--max-concurrency", "1"]);
    let slow = server.url("/probe/sleep?ms=1500");
    let first = std::thread::spawn(move || get(&slow));
    // (The metrics endpoint is not a function: it is answered even at the global limit.)
    wait_in_flight(&server, "probe");
    let other = get(&server.url("/hello"));
    assert_eq!(other.status, 503);
    assert_eq!(other.header("retry-after"), Some("1"));
    assert_eq!(first.join().unwrap().status, 200);
}

#[test]
fn oversized_bodies_and_headers_are_refused() {
    let server = Server::start(APP, &["--max-body-size", "64KiB"]);
    let big = vec![b'x'; 100 << 10];
    let reply = send("POST", &server.url("/probe/echo"), &[], &big);
    assert_eq!(reply.status, 413, "{}", reply.text());
    let reply = send("POST", &server.url("/wagi/echo"), &[], &big);
    assert_eq!(reply.status, 413);
    // Within the limit, fine.
    assert_eq!(
        send("POST", &server.url("/probe/echo"), &[], &big[..1000]).status,
        200
    );

    let huge = "v".repeat(100 << 10);
    let reply = get_with(&server.url("/hello"), &[("x-huge", &huge)]);
    assert_eq!(reply.status, 431);
    let metrics = get(&server.url("/_wedge/metrics")).text();
    assert!(metrics.contains("reason=\"body_size\"} 2"), "{metrics}");
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no `Content-Length`, so the size is only
/// found while reading) and returns the status and the response text.
fn post_chunked(server: &Server, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(16 << 10) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read all of an oversized body.
    let _ = stream.write_all(&request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

#[test]
fn oversized_bodies_without_a_length_are_refused_while_read() {
    let server = Server::start(APP, &["--max-body-size", "64KiB"]);
    let big = vec![b'x'; 100 << 10];
    // An http guest that reads the whole body before answering: wedge answers 413, not the
    // 400 the guest makes of its failed read.
    let (status, text) = post_chunked(&server, "/probe/length", &big);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than the limit of 64 KiB"), "{text}");
    assert!(text.contains("--max-body-size"), "{text}");
    assert!(text.contains("x-wedge-request-id"), "{text}");
    // A wagi guest gets its body on stdin, read whole before it starts.
    let (status, text) = post_chunked(&server, "/wagi/echo", &big);
    assert_eq!(status, 413, "{text}");
    // Within the limit, the same requests are served.
    let (status, text) = post_chunked(&server, "/probe/length", &big[..60 << 10]);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("61440 bytes\n"), "{text}");
    assert_eq!(post_chunked(&server, "/wagi/echo", &big[..1000]).0, 200);
}

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in\n{limits}"));
    let mut numbers = line["Max open files".len()..].split_whitespace();
    (
        numbers.next().unwrap().to_string(),
        numbers.next().unwrap().to_string(),
    )
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    // Started with a soft limit of 256 (the hard limit left as it is), as a shell with
    // `ulimit -Sn 256` would start it.
    let server = Server::try_start_wrapped(APP, &[], &[], &["prlimit", "--nofile=256:"])
        .unwrap_or_else(|(code, stderr)| panic!("wedge serve did not start ({code:?}):\n{stderr}"));
    let (soft, hard) = open_file_limits(server.pid());
    assert_eq!(soft, hard, "soft limit {soft}, hard limit {hard}");
    assert_ne!(soft, "256");
    assert_eq!(get(&server.url("/hello")).status, 200);
}

#[test]
fn slow_clients_are_cut_off() {
    let server = Server::start(APP, &["--header-timeout", "500ms"]);
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408) instead of waiting forever.
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("hello from wedge"), "{text}");
    assert_eq!(get(&server.url("/hello")).status, 200);
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let mut server = Server::start(APP, &[]);
    let slow = server.url("/probe/sleep?ms=800");
    let in_flight = std::thread::spawn(move || get(&slow));
    wait_in_flight(&server, "probe");
    let code = server.terminate();
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "slept 800\n");
    assert_eq!(code, Some(0));
    // Nothing listens any more.
    assert!(TcpStream::connect(server.address()).is_err());
    assert!(server.stderr().contains("all requests finished"));
}

// ---- start-up errors ---------------------------------------------------------------------

fn start_fails(manifest: &str, code: i32, needles: &[&str]) {
    match Server::try_start(manifest, &[]) {
        Ok(server) => panic!(
            "wedge serve started on a bad manifest: {:?}",
            server.stdout_lines
        ),
        Err((status, stderr)) => {
            assert_eq!(status, Some(code), "{stderr}");
            for needle in needles {
                assert!(stderr.contains(needle), "{needle:?} missing in {stderr}");
            }
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn manifest_errors_stop_start_up_naming_function_key_and_fix() {
    let ok = "name = \"f\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/f\"\n";
    start_fails(
        &format!("[[function]]\n{ok}tiemout = \"1s\"\n"),
        status::CONFIG,
        &["function `f`", "unknown field `tiemout`"],
    );
    start_fails(
        &format!("[[function]]\n{ok}max_memory = \"huge\"\n"),
        status::CONFIG,
        &["function `f`", "key `max_memory`", "64MiB"],
    );
    start_fails(
        "[[function]]\nname = \"f\"\nsource = \"missing.wasm\"\nroute = \"/f\"\n",
        status::CONFIG,
        &["function `f`", "key `source`", "missing.wasm"],
    );
    start_fails(
        &format!("[[function]]\n{ok}[[function]]\n{ok}"),
        status::CONFIG,
        &["key `name`", "unique"],
    );
    start_fails(
        &format!(
            "[[function]]\n{ok}[[function]]\nname = \"g\"\nsource = \"{{guests}}/http-hello.wasm\"\nroute = \"/f\"\n"
        ),
        status::CONFIG,
        &["function `g`", "already the route of function `f`"],
    );
}

#[test]
fn binaries_that_cannot_be_served_stop_start_up() {
    let function = |source: &str, extra: &str| {
        format!("[[function]]\nname = \"f\"\nsource = \"{source}\"\nroute = \"/f\"\n{extra}")
    };
    start_fails(
        &function("{guests}/hello-component.wasm", ""),
        status::BAD_PROGRAM,
        &["function `f`", "neither kind", "wasi:cli/run"],
    );
    start_fails(
        &function("{fixtures}/reactor.wat", ""),
        status::BAD_PROGRAM,
        &["neither kind", "without a `_start`"],
    );
    start_fails(
        &function("{guests}/http-hello.wasm", "kind = \"wagi\"\n"),
        status::BAD_PROGRAM,
        &["kind = \"wagi\"", "component"],
    );
    start_fails(
        &function("{fixtures}/import-env.wat", ""),
        status::MISSING_IMPORT,
        &["function `f`", "env::host_log", "grants do not provide"],
    );
    // A .cwasm is for `wedge run`; serve compiles (and caches) the .wasm itself.
    let dir = tempfile::tempdir().unwrap();
    let artifact = support::Wedge::new().compile_guest("http-hello.wasm", dir.path());
    start_fails(
        &function(artifact.to_str().unwrap(), ""),
        status::BAD_PROGRAM,
        &["made by `wedge compile`", "give `wedge serve` the .wasm"],
    );
    start_fails(
        &function("{fixtures}/../support/mod.rs", ""),
        status::BAD_PROGRAM,
        &["function `f`", "not WebAssembly"],
    );
}

#[test]
fn the_example_app_of_the_quick_start_serves() {
    let manifest = std::fs::read_to_string(support::root().join("examples/app/wedge.toml"))
        .unwrap()
        .replace("../../target/guests", "{guests}");
    let server = Server::start(&manifest, &[]);
    assert_eq!(get(&server.url("/hello")).text(), "hello from wedge\n");
    assert_eq!(get(&server.url("/hello-wagi")).text(), "hello from wagi\n");
    assert_eq!(get(&server.url("/probe/counter")).text(), "1");
    assert!(
        get(&server.url("/wagi/echo?a=b"))
            .text()
            .contains("query=a=b")
    );
}
