//! A wedge function in Rust on WASI 0.3: `handle` is an `async fn` from a request to a
//! response (`wasi:http/handler@0.3.0`, through the `wasip3` crate). Bodies are streams: the
//! echo below hands the request's body to the response without reading it into memory, and
//! while a request waits (on its body, a clock, an outbound call), the same instance can serve
//! another one if the manifest allows it (`reuse`).

use wasip3::http::types::{self, ErrorCode};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

struct Function;

wasip3::http::service::export!(Function);

impl wasip3::exports::http::handler::Guest for Function {
    async fn handle(request: types::Request) -> Result<types::Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        if request.method() == http::Method::POST && request.uri().path() == "/echo" {
            return http_into_wasi_response(http::Response::new(request.into_body()));
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_string();
        let response = http::Response::builder()
            .header("content-type", "text/plain")
            .body(format!("hello from rust on wasi 0.3 at {path}\n"))
            .map_err(|error| ErrorCode::InternalError(Some(error.to_string())))?;
        http_into_wasi_response(response)
    }
}
