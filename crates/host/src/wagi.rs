//! `wagi` functions: WASI preview 1 command modules run CGI-style, as the WAGI convention
//! defines it. The request line and headers become environment variables, the body is the
//! guest's stdin, and the guest's stdout is headers, a blank line, then the body.
//!
//! CGI cannot stream: the request body is read (up to the size limit) before the guest
//! starts, and the response is parsed after it exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use wasmtime::InstancePre;
use wedge_capabilities::wasi::{CapturePipe, GuestIo, GuestOutput, GuestStdin};

use crate::call::RequestContext;
use crate::capabilities::ModuleState;
use crate::deadline;
use crate::function::Function;
use crate::guest_response::{self, BoundedHead, ResponseHeadLimits};
use crate::logs::Stream;
use crate::outcome::{CAPTURE_LIMIT, RunOutcome, failure_response, finish};
use crate::response::{self, Body, BodyError, REQUEST_ID_HEADER};

/// The most a WAGI guest may write as its response (headers and body).
const MAX_OUTPUT: usize = 32 * 1024 * 1024;

/// Runs one request through a fresh instance of a `wagi` function.
pub(crate) async fn handle(
    pre: &InstancePre<ModuleState>,
    function: Arc<Function>,
    request: Request<Body>,
    context: RequestContext,
    local: SocketAddr,
    remote: SocketAddr,
) -> Response<Body> {
    let request_id = context.request_id.clone();
    let request_id = request_id.as_str();
    let _permits = context.permits;
    let response_limits = context.response_limits;
    let deadline = tokio::time::Instant::from_std(context.deadline);
    let (parts, body) = request.into_parts();
    let collected =
        tokio::time::timeout_at(deadline, read_limited(body, context.max_body_size)).await;
    let body = match whole_body(collected, request_id, context.max_body_size) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };

    let stdout = CapturePipe::new(MAX_OUTPUT);
    let stderr = CapturePipe::new(CAPTURE_LIMIT);
    let io = GuestIo {
        args: vec![context.route.clone()],
        env: cgi_environment(&context.route, &parts, body.len(), local, remote),
        stdin: GuestStdin::Bytes(body),
        stdout: GuestOutput::Capture(stdout.clone()),
        stderr: GuestOutput::Capture(stderr.clone()),
    };
    let call_id: Arc<str> = Arc::from(request_id);
    let mut store =
        match function.module_store(pre.module().engine(), &call_id, context.deadline, &io) {
            Ok(store) => store,
            Err(error) => {
                return response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    request_id,
                    &error.to_string(),
                );
            }
        };

    let guest_deadline = deadline + deadline::TICK * 4;
    let run = tokio::time::timeout_at(guest_deadline, async {
        let started = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        function.metrics.instantiation.observe(started.elapsed());
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    })
    .await;
    let refused = store.data().limiter.refused();
    drop(store);
    // A CGI program that exits 0 has answered, whether it returned or called exit.
    let outcome = match RunOutcome::of(run, refused) {
        RunOutcome::Exited(0) => RunOutcome::Finished,
        other => other,
    };
    // stdout is the response, not log output.
    let (output, dropped) = stdout.take();
    finish(
        &function,
        request_id,
        &[(Stream::Stderr, &stderr)],
        &outcome,
    );
    if !matches!(outcome, RunOutcome::Finished) {
        return failure_response(&function, request_id, &outcome);
    }
    if dropped > 0 {
        return bad_gateway(
            &function,
            request_id,
            &format!(
                "its output is larger than the limit of {}",
                wedge_engine::units::format_size(MAX_OUTPUT as u64)
            ),
        );
    }
    match parse_cgi_output(&output, response_limits, &parts.method) {
        Ok(cgi) => {
            if let Some(note) = guest_response::dropped_note(&cgi.dropped) {
                function
                    .log
                    .push(&function.spec.name, request_id, Stream::Wedge, &note);
            }
            let mut response = Response::new(response::full(cgi.body));
            *response.status_mut() = cgi.status;
            *response.headers_mut() = cgi.headers;
            if let Ok(value) = HeaderValue::from_str(request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            response
        }
        Err(problem) => bad_gateway(&function, request_id, &problem),
    }
}

/// Why a body could not be read whole.
enum ReadError {
    TooLarge,
    Body(BodyError),
}

/// Reads a body whole, refusing it once it passes `limit` bytes (without reading the rest).
async fn read_limited(mut body: Body, limit: u64) -> Result<Bytes, ReadError> {
    let mut gathered = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Ok(data) = frame.into_data() {
            if (gathered.len() + data.len()) as u64 > limit {
                return Err(ReadError::TooLarge);
            }
            gathered.extend_from_slice(&data);
        }
    }
    Ok(gathered.freeze())
}

/// The request body, read whole within the deadline and the size limit, or the answer.
fn whole_body<E>(
    read: Result<Result<Bytes, ReadError>, E>,
    request_id: &str,
    max_body_size: u64,
) -> Result<Bytes, Box<Response<Body>>> {
    match read {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(ReadError::TooLarge)) => Err(Box::new(response::body_too_large(
            request_id,
            max_body_size,
        ))),
        Ok(Err(ReadError::Body(error))) => Err(Box::new(response::error(
            StatusCode::BAD_REQUEST,
            request_id,
            &format!("cannot read the request body: {error}"),
        ))),
        Err(_) => Err(Box::new(response::error(
            StatusCode::REQUEST_TIMEOUT,
            request_id,
            "the request body did not arrive within the function's timeout",
        ))),
    }
}

fn bad_gateway(function: &Function, request_id: &str, problem: &str) -> Response<Body> {
    let message = format!(
        "function `{}` wrote a malformed CGI response: {problem}",
        function.spec.name
    );
    function
        .log
        .push(&function.spec.name, request_id, Stream::Wedge, &message);
    response::error(StatusCode::BAD_GATEWAY, request_id, &message)
}

/// The CGI/WAGI variables for one request.
fn cgi_environment(
    route: &str,
    parts: &http::request::Parts,
    content_length: usize,
    local: SocketAddr,
    remote: SocketAddr,
) -> Vec<(String, String)> {
    let path = parts.uri.path();
    let path_info = if route == "/" {
        path
    } else {
        path.strip_prefix(route).unwrap_or("")
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let server_name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let header = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("wedge/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("SERVER_NAME".into(), server_name.to_string()),
        ("SERVER_PORT".into(), local.port().to_string()),
        ("REQUEST_METHOD".into(), parts.method.to_string()),
        (
            "SCRIPT_NAME".into(),
            if route == "/" {
                String::new()
            } else {
                route.to_string()
            },
        ),
        ("PATH_INFO".into(), path_info.to_string()),
        ("PATH_TRANSLATED".into(), path_info.to_string()),
        (
            "QUERY_STRING".into(),
            parts.uri.query().unwrap_or_default().to_string(),
        ),
        (
            "REQUEST_URI".into(),
            parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        ("X_MATCHED_ROUTE".into(), route.to_string()),
        (
            "X_FULL_URL".into(),
            format!(
                "http://{host}{}",
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            ),
        ),
        ("REMOTE_ADDR".into(), remote.ip().to_string()),
        ("REMOTE_HOST".into(), remote.ip().to_string()),
        ("CONTENT_TYPE".into(), header(http::header::CONTENT_TYPE)),
        ("CONTENT_LENGTH".into(), content_length.to_string()),
    ];
    for (name, value) in &parts.headers {
        // Authorization stays out of the environment, as CGI servers do: a function that
        // needs it should be an `http` function, which sees every header.
        // Content-Type and Content-Length are already CONTENT_TYPE and CONTENT_LENGTH.
        if name == http::header::AUTHORIZATION
            || name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
        {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let var = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            env.push((var, value.to_string()));
        }
    }
    // The function's own `env` wins over a request variable of the same name (WASI's
    // context builder sees to that).
    env
}

/// A WAGI guest's answer, parsed and checked.
#[derive(Debug)]
pub(crate) struct CgiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Hop-by-hop and framing headers the guest wrote, which wedge dropped.
    pub dropped: Vec<String>,
}

/// Splits CGI output into status, headers and body, within the head's limits. The headers
/// that frame the response are wedge's: hop-by-hop ones are dropped and a `Content-Length`
/// must agree with the body (wedge sends its own).
pub(crate) fn parse_cgi_output(
    output: &[u8],
    limits: ResponseHeadLimits,
    method: &Method,
) -> Result<CgiResponse, String> {
    let (head, body) = split_head(output).ok_or_else(|| {
        if output.is_empty() {
            "it wrote nothing (a response needs at least a Content-Type header and a blank line)"
                .to_string()
        } else {
            "there is no blank line ending the headers".to_string()
        }
    })?;
    let head = std::str::from_utf8(head).map_err(|_| "the headers are not UTF-8".to_string())?;
    let mut headers = BoundedHead::new(limits);
    let mut status = None;
    for (number, line) in head.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "header line {} is not `Name: value`: {:?}",
                number + 1,
                shorten(line)
            ));
        };
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            let code = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("`Status: {}` has no valid status code", shorten(value)))?;
            guest_response::check_status(code).map_err(|problem| problem.to_string())?;
            status = Some(code);
            continue;
        }
        // A name is a token: no spaces, no control characters; a value has no CR, LF or NUL
        // (`HeaderValue` refuses every control character but tab).
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "header line {} has an invalid name: {:?}",
                number + 1,
                shorten(line)
            )
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "header line {} has an invalid value: {:?}",
                number + 1,
                shorten(line)
            )
        })?;
        headers
            .append(name, value)
            .map_err(|problem| problem.to_string())?;
    }
    let has_location = headers.contains(http::header::LOCATION);
    if status.is_none() && !has_location && !headers.contains(http::header::CONTENT_TYPE) {
        return Err("it has none of Content-Type, Location or Status".into());
    }
    let status = status.unwrap_or(if has_location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    let mut headers = headers.into_headers();
    let (lengths, dropped) = guest_response::take_framing(&mut headers);
    if let Some(length) = guest_response::declared_length(&lengths, Some(body.len() as u64), method)
        .map_err(|problem| problem.to_string())?
        && method == Method::HEAD
    {
        // hyper sends no body for HEAD, and keeps this length as what a GET would send.
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(CgiResponse {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
        dropped,
    })
}

/// A line of guest output as quoted in an error: at most 100 characters of it.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// Finds the blank line: `\n\n` or `\r\n\r\n`, whichever comes first.
fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    let lf = output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let (at, len) = match (lf, crlf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => {
            // Headers only, no body: the output may end right after the last header line.
            return None;
        }
    };
    Some((&output[..at], &output[at + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(output: &[u8]) -> Result<CgiResponse, String> {
        parse_cgi_output(output, ResponseHeadLimits::default(), &Method::GET)
    }

    #[test]
    fn parses_status_location_and_headers() {
        let cgi = parse(b"Content-Type: text/plain\nX-A: 1\n\nhello").unwrap();
        assert_eq!(cgi.status, StatusCode::OK);
        assert_eq!(cgi.headers["x-a"], "1");
        assert_eq!(cgi.body, "hello");
        let cgi = parse(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n").unwrap();
        assert_eq!(cgi.status, StatusCode::NOT_FOUND);
        let cgi = parse(b"Location: /x\n\n").unwrap();
        assert_eq!(cgi.status, StatusCode::FOUND);
        assert_eq!(cgi.headers["location"], "/x");
    }

    #[test]
    fn malformed_output_says_what_is_wrong() {
        for (output, says) in [
            (&b""[..], "wrote nothing"),
            (b"just text with no headers", "no blank line"),
            (b"not a header\n\nbody", "not `Name: value`"),
            (b"Status: abc\n\n", "no valid status code"),
            (b"X-Only: 1\n\n", "none of Content-Type"),
            (
                b"Status: 101\nContent-Type: text/plain\n\n",
                "informational",
            ),
            (b"Content-Type: a\rX-Injected: yes\n\n", "invalid value"),
            (b"Content-Type: a\nX-Nul: a\0b\n\n", "invalid value"),
            (b"Content-Type: a\nBad Name: b\n\n", "invalid name"),
        ] {
            let error = parse(output).unwrap_err();
            assert!(error.contains(says), "{output:?}: {error}");
        }
    }

    #[test]
    fn too_many_or_too_large_headers_are_refused_without_building_them() {
        let mut many = b"Content-Type: text/plain\n".to_vec();
        for i in 0..200_000 {
            many.extend_from_slice(format!("X-H{i}: v\n").as_bytes());
        }
        many.extend_from_slice(b"\nx\n");
        let error = parse(&many).unwrap_err();
        assert!(error.contains("more than 100 header fields"), "{error}");
        let large = format!(
            "Content-Type: text/plain\nX-Big: {}\n\n",
            "v".repeat(70_000)
        );
        let error = parse(large.as_bytes()).unwrap_err();
        assert!(error.contains("larger than 64 KiB"), "{error}");
    }

    #[test]
    fn the_content_length_is_wedges() {
        // The reproduction of response splitting: a short Content-Length before a longer body.
        let error = parse(
            b"Content-Type: text/plain\nContent-Length: 2\n\nhello world!HTTP/1.1 200 OK\r\nX-Injected: yes\r\n\r\n",
        )
        .unwrap_err();
        assert!(error.contains("Content-Length: 2"), "{error}");
        // One that agrees is dropped: hyper frames the body it is given.
        let cgi = parse(b"Content-Type: text/plain\nContent-Length: 5\n\nhello").unwrap();
        assert!(!cgi.headers.contains_key("content-length"));
        assert!(cgi.dropped.is_empty());
        // HEAD keeps it: the length a GET would have.
        let cgi = parse_cgi_output(
            b"Content-Type: text/plain\nContent-Length: 5\n\nhello",
            ResponseHeadLimits::default(),
            &Method::HEAD,
        )
        .unwrap();
        assert_eq!(cgi.headers["content-length"], "5");
        let cgi =
            parse(b"Content-Type: text/plain\nTransfer-Encoding: chunked\nConnection: close\n\nhi")
                .unwrap();
        assert_eq!(cgi.headers.len(), 1);
        assert_eq!(cgi.dropped, ["transfer-encoding", "connection"]);
    }
}
