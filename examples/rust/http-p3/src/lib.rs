//! http-p3: a `wasi:http/handler@0.3.0` component (WASI 0.3), routed on the **last segment of
//! the path** like http-probe, so it works under any route.
//!
//! | last segment | answers |
//! | --- | --- |
//! | `hello` (or anything else) | 200 `hello from wasi 0.3\n` |
//! | `echo` | 200; the request body streamed back as it arrives |
//! | `counter` | 200; a static counter after incrementing it: `1` with a fresh instance per request, more when instances are reused |
//! | `sleep?ms=N` | waits N ms on the async monotonic clock (the instance can take other requests meanwhile), then 200 `slept N\n`, with the most requests this instance has had waiting at once in `x-peak-in-flight` |
//! | `trap` | executes `unreachable` |
//! | `hog` | allocates 1 MiB blocks until allocation fails (a trap at the memory limit) |

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{self, ErrorCode};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

wasip3::http::service::export!(Service);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static PEAK_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

struct Service;

fn text(status: u16, body: String) -> Result<types::Response, ErrorCode> {
    text_with(status, body, &[])
}

fn text_with(
    status: u16,
    body: String,
    headers: &[(&str, String)],
) -> Result<types::Response, ErrorCode> {
    let mut response = http::Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    let response = response
        .body(body)
        .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?;
    http_into_wasi_response(response)
}

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: types::Request) -> Result<types::Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        match path.rsplit('/').next().unwrap_or("") {
            "echo" => http_into_wasi_response(http::Response::new(request.into_body())),
            "counter" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                text(200, n.to_string())
            }
            "sleep" => {
                let ms: u64 = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("ms="))
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
                PEAK_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                let peak = PEAK_IN_FLIGHT.load(Ordering::SeqCst);
                text_with(200, format!("slept {ms}\n"), &[("x-peak-in-flight", peak.to_string())])
            }
            "trap" => core::arch::wasm32::unreachable(),
            "hog" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(vec![1u8; 1 << 20]);
                }
            }
            _ => text(200, "hello from wasi 0.3\n".to_string()),
        }
    }
}
