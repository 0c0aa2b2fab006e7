//! What a function may put in the head of its response, end to end: the real binary, a WAGI
//! module and a `wasi:http` component writing the heads a hostile tenant would, and raw
//! HTTP/1.1 on kept-alive connections to see exactly what the client gets.
//!
//! The node must keep serving every other function, no guest may set the framing of the
//! connection (response splitting), and each refusal is a 502 with a line in the function's
//! log that says why.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::guest;
use support::server::{Server, get};

const APP: &str = r#"
[[function]]
name = "hello"
source = "{guests}/http-hello.wasm"
route = "/hello"

[[function]]
name = "hostile"
source = "{guests}/wagi-hostile.wasm"
route = "/hostile"

[[function]]
name = "probe"
source = "{guests}/http-probe.wasm"
route = "/probe"
timeout = "5s"
"#;

/// One response as read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A kept-alive HTTP/1.1 connection, read by hand: the framing is what is under test, so
/// no client library interprets it first.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(server: &Server) -> Self {
        let stream = TcpStream::connect(server.address()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, method: &str, path: &str) {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send request");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Reads one response, framed by its content-length or chunked encoding, as a client
    /// on a kept-alive connection does.
    fn read(&mut self, method: &str) -> Raw {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" {
            return raw;
        }
        if raw.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                if size == 0 {
                    break;
                }
                raw.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = raw.header("content-length") {
            let mut body = vec![0; length.parse().expect("content-length")];
            self.reader.read_exact(&mut body).expect("body");
            raw.body = body;
        }
        raw
    }

    fn get(&mut self, path: &str) -> Raw {
        self.send("GET", path);
        self.read("GET")
    }

    /// Whether the server closed the connection (EOF) rather than sending more.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

/// The healthy function answers, on a connection of its own.
fn still_serving(server: &Server) {
    let reply = get(&server.url("/hello"));
    assert_eq!(reply.status, 200, "{}", server.stderr());
    assert_eq!(reply.text(), "hello from wedge\n");
}

#[test]
fn two_hundred_thousand_header_lines_are_a_502_and_the_node_keeps_serving() {
    guest("wagi-hostile.wasm");
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    let refused = connection.get("/hostile/many-headers");
    assert_eq!(refused.status, 502);
    assert!(
        refused.text().contains("more than 100 header fields"),
        "{}",
        refused.text()
    );
    // The same connection goes on, with the right next response.
    let next = connection.get("/hello");
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "hello from wedge\n");
    still_serving(&server);
    let log = server.wait_for_log("more than 100 header fields");
    assert!(log.contains("function `hostile`"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_short_content_length_cannot_split_the_response() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    let refused = connection.get("/hostile/split");
    assert_eq!(refused.status, 502);
    assert!(
        refused.text().contains("Content-Length: 2") && refused.text().contains("48 bytes"),
        "{}",
        refused.text()
    );
    // Were the guest's length passed on, this would read `llo world!...` and the forged
    // `HTTP/1.1 200 OK` with `X-Injected` as the next response.
    let next = connection.get("/hello");
    assert_eq!(next.status, 200);
    assert_eq!(next.header("x-injected"), None);
    assert_eq!(next.text(), "hello from wedge\n");
    let log = server.wait_for_log("Content-Length: 2");
    assert!(log.contains("function `hostile`"), "{log}");
}

#[test]
fn a_content_length_that_agrees_is_replaced_by_wedges_own() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    let reply = connection.get("/hostile/length-ok");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello");
    assert_eq!(reply.header("content-length"), Some("5"));
    // HEAD keeps the length a GET would have, and no body follows.
    connection.send("HEAD", "/hostile/length-ok");
    let head = connection.read("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5"));
    let next = connection.get("/hello");
    assert_eq!(next.text(), "hello from wedge\n");
}

#[test]
fn oversized_injected_and_informational_heads_are_502() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    for (path, says) in [
        ("/hostile/huge-header", "larger than 64 KiB"),
        ("/hostile/cr", "invalid value"),
        ("/hostile/status-101", "informational"),
        ("/probe/status?code=101", "informational"),
    ] {
        let reply = connection.get(path);
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        assert!(reply.text().contains(says), "{path}: {}", reply.text());
        assert_eq!(reply.header("x-injected"), None, "{path}");
        assert_eq!(reply.header("upgrade"), None, "{path}");
        let next = connection.get("/hello");
        assert_eq!(next.status, 200, "after {path}");
    }
    still_serving(&server);
}

/// Each hop-by-hop or framing header a WAGI guest writes is dropped (and noted in the
/// function's log); the response and the connection after it are wedge's.
fn wagi_header_is_dropped(line: &str, name: &str) {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    let reply = connection.get(&format!("/hostile/framing?{}", line.replace(' ', "%20")));
    assert_eq!(reply.status, 200, "{line}: {}", reply.text());
    assert_eq!(reply.text(), "framed\n", "{line}");
    if name != "transfer-encoding" {
        assert_eq!(reply.header(name), None, "{line}: {:?}", reply.headers);
    }
    assert_eq!(reply.header("content-length"), Some("7"), "{line}");
    let next = connection.get("/hello");
    assert_eq!(next.text(), "hello from wedge\n", "after {line}");
    let log = server.wait_for_log(&format!("dropped the response header `{name}`"));
    assert!(
        log.contains(&format!("dropped the response header `{name}`")),
        "{log}"
    );
}

#[test]
fn wagi_transfer_encoding_is_dropped() {
    wagi_header_is_dropped("Transfer-Encoding: chunked", "transfer-encoding");
}

#[test]
fn wagi_connection_is_dropped() {
    wagi_header_is_dropped("Connection: close", "connection");
}

#[test]
fn wagi_keep_alive_is_dropped() {
    wagi_header_is_dropped("Keep-Alive: timeout=1", "keep-alive");
}

#[test]
fn wagi_upgrade_is_dropped() {
    wagi_header_is_dropped("Upgrade: h2c", "upgrade");
}

#[test]
fn wagi_te_is_dropped() {
    wagi_header_is_dropped("TE: trailers", "te");
}

#[test]
fn wagi_trailer_is_dropped() {
    wagi_header_is_dropped("Trailer: x-sum", "trailer");
}

#[test]
fn wagi_proxy_connection_is_dropped() {
    wagi_header_is_dropped("Proxy-Connection: keep-alive", "proxy-connection");
}

#[test]
fn wagi_headers_named_by_connection_are_dropped() {
    // `Connection: x-private` makes x-private hop-by-hop too.
    let server = Server::start(APP, &[]);
    let reply = Connection::open(&server).get("/hostile/framing?Connection:x-private");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), None);
}

#[test]
fn wasi_http_framing_headers_never_reach_the_client() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    for name in [
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    ] {
        let reply = connection.get(&format!("/probe/header?name={name}&value=x"));
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.header(name), None, "{name}: {:?}", reply.headers);
        // wasmtime-wasi-http refuses most of them to the guest; wedge drops the rest.
        assert!(
            reply.text() == "set\n" || reply.text().starts_with("refused: "),
            "{name}: {}",
            reply.text()
        );
        let next = connection.get("/hello");
        assert_eq!(next.text(), "hello from wedge\n", "after {name}");
    }
}

#[test]
fn a_component_with_too_many_fields_is_refused() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    // wasmtime-wasi-http bounds a fields resource (128 KiB of memory) and traps the guest
    // that goes past it: a 500 naming the limit.
    let reply = connection.get("/probe/headers?count=100000");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("total size of fields exceeds limit"),
        "{}",
        reply.text()
    );
    // Below that bound, more than wedge sends in one head: 502.
    let reply = connection.get("/probe/headers?count=1000");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("more than 100 header fields"),
        "{}",
        reply.text()
    );
    // Within the limit, every field arrives.
    let reply = connection.get("/probe/headers?count=50");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "appended 50\n");
    assert_eq!(reply.header("x-h49"), Some("v"));
    still_serving(&server);
}

#[test]
fn a_component_content_length_that_disagrees_with_its_body_cannot_split() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    // Declares 100, writes 5 and drops the body unfinished; declares 3 and writes 10 (the
    // host refuses the write past 3). Both fail before anything was sent: 502, and the
    // connection goes on with the right next response.
    for path in [
        "/probe/declared?length=100&bytes=5&finish=0",
        "/probe/declared?length=3&bytes=10&finish=1",
    ] {
        let reply = connection.get(path);
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("failed writing its response body"),
            "{path}: {}",
            reply.text()
        );
        assert_eq!(connection.get("/hello").text(), "hello from wedge\n");
    }
    // A declared length that agrees goes out as it is.
    let reply = connection.get("/probe/declared?length=4&bytes=4&finish=1");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("4"));
    assert_eq!(reply.text(), "xxxx");

    // A streamed body (larger than what is gathered before the headers go out) that ends
    // short of its declared length: the headers are gone, so the server closes the
    // connection rather than leave the client waiting for bytes the next response would
    // supply.
    let mut connection = Connection::open(&server);
    connection.send("GET", "/probe/declared?length=300000&bytes=200000&finish=0");
    assert!(connection.line().contains(" 200 "));
    let mut length = None;
    loop {
        let line = connection.line();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length: ") {
            length = Some(value.to_string());
        }
    }
    assert_eq!(length.as_deref(), Some("300000"));
    let mut body = Vec::new();
    let _ = connection.reader.read_to_end(&mut body);
    assert!(body.len() <= 200_000, "{} bytes", body.len());
    assert!(connection.closed());
    still_serving(&server);
}

/// An upstream server that answers every connection with `response`, as written.
fn raw_upstream(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let response = response.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(&response);
            });
        }
    });
    address
}

#[test]
fn hostile_upstream_responses_to_outbound_calls_are_errors_in_the_guest() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..200_000 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"content-length: 2\r\n\r\nok");
    let many = raw_upstream(many);
    let conflicting = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
    );
    let two_lengths = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
    );
    let app = format!(
        "{APP}\n[[function]]\nname = \"fetcher\"\nsource = \"{{guests}}/http-probe.wasm\"\nroute = \"/fetcher\"\ntimeout = \"10s\"\nallowed_outbound_hosts = [\"http://{many}\", \"http://{conflicting}\", \"http://{two_lengths}\"]\n"
    );
    let server = Server::start(&app, &[]);
    let fetch =
        |upstream: &str| get(&server.url(&format!("/fetcher/fetch?url=http://{upstream}/")));
    // 200,000 header lines and two different lengths: errors in the guest (the probe
    // answers 502 with the error code it was given), nothing more.
    for upstream in [&many, &two_lengths] {
        let reply = fetch(upstream);
        assert_eq!(reply.status, 502, "{upstream}: {}", reply.text());
        assert!(reply.text().contains("ErrorCode::"), "{}", reply.text());
        still_serving(&server);
    }
    // Content-Length beside chunked: chunked wins (RFC 9112, 6.3), as the whole body shows.
    let reply = fetch(&conflicting);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "status: 200\nhello");
    still_serving(&server);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn connect_requests_are_refused() {
    let server = Server::start(APP, &[]);
    let mut connection = Connection::open(&server);
    connection
        .reader
        .get_mut()
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .expect("send");
    let reply = connection.read("CONNECT");
    assert_eq!(reply.status, 405, "{}", reply.text());
    still_serving(&server);
}
