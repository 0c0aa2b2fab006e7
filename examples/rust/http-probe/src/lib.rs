//! http-probe: the `wasi:http/proxy` component that wedge's serve tests poke at.
//!
//! Routing is by the **last segment of the request path** (the path the server passes, query
//! stripped), so the function works under any route prefix: `/echo`, `/probe/echo` and
//! `/a/b/echo?x=1` all reach `echo`. Query parameters are `name=value` pairs split on `&`,
//! percent-decoded.
//!
//! | last segment | response |
//! | --- | --- |
//! | `echo` | 200; `x-echo-method: METHOD`, `x-echo-uri: PATH?QUERY`, `x-echo-h-NAME: VALUE` per request header; body = request body, streamed chunk by chunk |
//! | `length` | reads the whole request body first, then 200 `N bytes\n`; 400 `bad request: ...` if the body cannot be read |
//! | `counter` | 200; body = value of a static counter after incrementing it (no newline; `1` with a fresh instance per request) |
//! | `trap` | executes `unreachable` before any response |
//! | `loop` | spins forever |
//! | `hog` | allocates and touches 1 MiB blocks until allocation fails (abort = trap) |
//! | `sleep?ms=N` | waits N ms on `wasi:clocks/monotonic-clock` (a host wait), then 200 `slept N\n` |
//! | `fetch?url=URL` | outbound GET with `wasi:http/outgoing-handler`; 200 `status: CODE\n` + upstream body, or 502 with the `ErrorCode` debug text |
//! | `env?name=X` | 200; body = value of env var X, or `unset` (no newline) |
//! | `big?bytes=N` | 200; N bytes of `x`, written in 64 KiB chunks |
//! | `status?code=N` | status N, empty body |
//! | `headers?count=N` | 200 with N distinct fields `x-h0: v` ... (appended until the host refuses one); body `appended K\n` |
//! | `declared?length=N&bytes=M&finish=0\|1` | 200 with `content-length: N` and M bytes of `x`; the body is finished (1) or dropped unfinished (0) |
//! | `header?name=X&value=Y` | 200 with the field X: Y; body `set\n`, or `refused: ERROR\n` when the host refuses the field |
//! | anything else | 404 `no such probe\n` |
//!
//! A missing or malformed parameter answers 400 `bad request: REASON\n`.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

const CHUNK: usize = 64 * 1024;

/// Counts requests seen by this instance. wedge (like `wasmtime serve`) makes a fresh instance per
/// request, so `counter` always answers `1`; anything else means instances are reused.
static COUNTER: AtomicU64 = AtomicU64::new(0);

struct Probe;

wasip2::http::proxy::export!(Probe);

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let uri = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (uri.clone(), String::new()),
        };
        let probe = path.rsplit('/').next().unwrap_or("");
        match probe {
            "echo" => echo(request, &uri, out),
            "length" => length(request, out),
            "counter" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                respond(out, 200, n.to_string().as_bytes())
            }
            "trap" => core::arch::wasm32::unreachable(),
            "loop" => spin(),
            "hog" => hog(),
            "sleep" => match param_u64(&query, "ms") {
                Ok(ms) => {
                    monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
                    respond(out, 200, format!("slept {ms}\n").as_bytes())
                }
                Err(e) => bad_request(out, &e),
            },
            "fetch" => match param(&query, "url") {
                Some(url) => fetch(out, &url),
                None => bad_request(out, "missing url"),
            },
            "env" => match param(&query, "name") {
                Some(name) => {
                    let value = std::env::var(&name).unwrap_or_else(|_| "unset".to_string());
                    respond(out, 200, value.as_bytes())
                }
                None => bad_request(out, "missing name"),
            },
            "big" => match param_u64(&query, "bytes") {
                Ok(n) => big(out, n),
                Err(e) => bad_request(out, &e),
            },
            "status" => match param_u64(&query, "code") {
                Ok(code) => {
                    let response = OutgoingResponse::new(Fields::new());
                    let ok = u16::try_from(code)
                        .ok()
                        .is_some_and(|c| response.set_status_code(c).is_ok());
                    if !ok {
                        return bad_request(out, &format!("invalid status code {code}"));
                    }
                    let body = response.body().expect("body taken once");
                    ResponseOutparam::set(out, Ok(response));
                    OutgoingBody::finish(body, None).expect("finish body");
                }
                Err(e) => bad_request(out, &e),
            },
            "headers" => match param_u64(&query, "count") {
                Ok(count) => many_headers(out, count),
                Err(e) => bad_request(out, &e),
            },
            "declared" => match (
                param_u64(&query, "length"),
                param_u64(&query, "bytes"),
                param_u64(&query, "finish"),
            ) {
                (Ok(length), Ok(bytes), Ok(finish)) => declared(out, length, bytes, finish == 1),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => bad_request(out, &e),
            },
            "header" => match (param(&query, "name"), param(&query, "value")) {
                (Some(name), Some(value)) => one_header(out, &name, &value),
                _ => bad_request(out, "missing name or value"),
            },
            _ => respond(out, 404, b"no such probe\n"),
        }
    }
}

/// Sends the status and headers now and returns the body, so the caller can stream into it.
fn start(out: ResponseOutparam, status: u16, headers: Fields) -> OutgoingBody {
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    body
}

fn text_headers() -> Fields {
    Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid header")
}

/// Finishes a body: the stream must be flushed and dropped before `finish`.
fn finish(body: OutgoingBody, stream: OutputStream) {
    stream.blocking_flush().expect("flush body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

fn respond(out: ResponseOutparam, status: u16, text: &[u8]) {
    let body = start(out, status, text_headers());
    let mut stream = body.write().expect("stream taken once");
    stream.write_all(text).expect("write body");
    finish(body, stream);
}

fn bad_request(out: ResponseOutparam, reason: &str) {
    respond(out, 400, format!("bad request: {reason}\n").as_bytes())
}

/// Copies `input` to `output` chunk by chunk as the chunks arrive; never holds more than one.
fn pump(input: &InputStream, output: &mut OutputStream) -> Result<(), String> {
    loop {
        match input.blocking_read(CHUNK as u64) {
            Ok(chunk) => output.write_all(&chunk).map_err(|e| e.to_string())?,
            Err(StreamError::Closed) => return Ok(()),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn echo(request: IncomingRequest, uri: &str, out: ResponseOutparam) {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(m) => m,
    };
    let headers = Fields::new();
    // A header the host refuses to set (none should: every name is prefixed) is skipped.
    let _ = headers.append("x-echo-method", method.as_bytes());
    let _ = headers.append("x-echo-uri", uri.as_bytes());
    for (name, value) in request.headers().entries() {
        let _ = headers.append(&format!("x-echo-h-{name}"), &value);
    }
    let incoming = request.consume().expect("body consumed once");
    let body = start(out, 200, headers);
    let mut stream = body.write().expect("stream taken once");
    {
        let input = incoming.stream().expect("stream taken once");
        if let Err(e) = pump(&input, &mut stream) {
            // Headers are gone already: the truncated body is the only signal left.
            eprintln!("http-probe echo: reading request body: {e}");
        }
    } // the input stream must be dropped before the body is finished
    drop(IncomingBody::finish(incoming));
    finish(body, stream);
}

/// Counts the request body before answering, so a failed read can still change the status.
fn length(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = request.consume().expect("body consumed once");
    let mut total: u64 = 0;
    let read = {
        let input = incoming.stream().expect("stream taken once");
        loop {
            match input.blocking_read(CHUNK as u64) {
                Ok(chunk) => total += chunk.len() as u64,
                Err(StreamError::Closed) => break Ok(()),
                Err(StreamError::LastOperationFailed(e)) => break Err(e.to_debug_string()),
            }
        }
    }; // the input stream must be dropped before the body is finished
    drop(IncomingBody::finish(incoming));
    match read {
        Ok(()) => respond(out, 200, format!("{total} bytes\n").as_bytes()),
        Err(e) => bad_request(out, &format!("reading the body: {e}")),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // vec! of a non-zero byte writes every page; allocation failure aborts (a trap).
        blocks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&mut blocks);
    }
}

fn big(out: ResponseOutparam, mut n: u64) {
    let body = start(out, 200, text_headers());
    let mut stream = body.write().expect("stream taken once");
    let chunk = vec![b'x'; CHUNK];
    while n > 0 {
        let len = n.min(CHUNK as u64) as usize;
        if stream.write_all(&chunk[..len]).is_err() {
            return; // client went away; dropping the body ends the response
        }
        n -= len as u64;
    }
    finish(body, stream);
}

/// Sets `count` distinct fields, stopping at the first the host refuses (its size limit).
fn many_headers(out: ResponseOutparam, count: u64) {
    let headers = text_headers();
    let mut appended = 0u64;
    for i in 0..count {
        if headers.append(&format!("x-h{i}"), b"v").is_err() {
            break;
        }
        appended += 1;
    }
    let body = start(out, 200, headers);
    let mut stream = body.write().expect("stream taken once");
    let _ = stream.write_all(format!("appended {appended}\n").as_bytes());
    finish(body, stream);
}

/// A response whose `content-length` says `length` while `bytes` are written.
fn declared(out: ResponseOutparam, length: u64, bytes: u64, finish_body: bool) {
    let headers = text_headers();
    headers
        .append("content-length", length.to_string().as_bytes())
        .expect("content-length is allowed");
    let body = start(out, 200, headers);
    let mut stream = body.write().expect("stream taken once");
    // The host refuses writes past the declared length: stop at the first refusal.
    let _ = stream.write_all(&vec![b'x'; bytes as usize]);
    let _ = stream.flush();
    drop(stream);
    if finish_body {
        let _ = OutgoingBody::finish(body, None);
    }
    // Otherwise the body is dropped unfinished.
}

fn one_header(out: ResponseOutparam, name: &str, value: &str) {
    let headers = text_headers();
    let text = match headers.append(name, value.as_bytes()) {
        Ok(()) => "set\n".to_string(),
        Err(e) => format!("refused: {e:?}\n"),
    };
    let body = start(out, 200, headers);
    let mut stream = body.write().expect("stream taken once");
    let _ = stream.write_all(text.as_bytes());
    finish(body, stream);
}

fn fetch(out: ResponseOutparam, url: &str) {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return bad_request(out, &format!("url must be http:// or https://: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let ok = request.set_method(&Method::Get).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(path)).is_ok();
    if !ok {
        return bad_request(out, &format!("invalid url {url}"));
    }
    // A GET sends no body, but the body must still be finished for the request to go out.
    let request_body = request.body().expect("body taken once");
    let response = outgoing_handler::handle(request, None).and_then(|future| {
        OutgoingBody::finish(request_body, None)?;
        future.subscribe().block();
        match future.get() {
            Some(Ok(result)) => result,
            Some(Err(())) => unreachable!("response taken once"),
            None => unreachable!("ready after block"),
        }
    });
    match response {
        Ok(upstream) => relay(out, upstream),
        Err(code) => fetch_failed(out, code),
    }
}

fn fetch_failed(out: ResponseOutparam, code: ErrorCode) {
    respond(out, 502, format!("{code:?}").as_bytes())
}

fn relay(out: ResponseOutparam, upstream: IncomingResponse) {
    let status = upstream.status();
    let incoming = upstream.consume().expect("body consumed once");
    let body = start(out, 200, text_headers());
    let mut stream = body.write().expect("stream taken once");
    let _ = writeln!(stream, "status: {status}");
    {
        let input = incoming.stream().expect("stream taken once");
        if let Err(e) = pump(&input, &mut stream) {
            eprintln!("http-probe fetch: reading upstream body: {e}");
        }
    }
    drop(IncomingBody::finish(incoming));
    finish(body, stream);
}

/// The percent-decoded value of `name` in a `a=1&b=2` query, if present.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn param_u64(query: &str, name: &str) -> Result<u64, String> {
    let v = param(query, name).ok_or_else(|| format!("missing {name}"))?;
    v.parse()
        .map_err(|_| format!("{name} must be a number, got {v:?}"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
