//! Response bodies and wedge's own (error) responses.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type the gateway answers with: a guest's streamed body or wedge's own.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>;

pub const REQUEST_ID_HEADER: &str = "x-wedge-request-id";

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text response from wedge itself, carrying the request id in a header and in the
/// text, so a user can find the matching log line.
pub fn error(status: StatusCode, request_id: &str, message: &str) -> Response<Body> {
    let text = format!(
        "{} {}: {message}\nrequest id: {request_id}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(value) = http::header::HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// 413: the request body is larger than the server's limit (declared or found while reading).
pub fn body_too_large(request_id: &str, limit: u64) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        request_id,
        &format!(
            "the request body is larger than the limit of {}; send a smaller body, or raise `wedge serve --max-body-size`",
            wedge_engine::units::format_size(limit)
        ),
    )
}
