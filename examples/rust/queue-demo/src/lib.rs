//! queue-demo: one `wasi:http/proxy` component with the three roles of wedge's queue tests and
//! of the sensor demo (examples/README.md). Routing is by the **last segment of the path**, so
//! it works under any route and as a queue consumer (deliveries are POSTs to `/`).
//!
//! | path | does | answers |
//! | --- | --- | --- |
//! | `produce?queue=Q&count=N` | sends N messages `{"noise": X, "seq": i}` to Q (`wedge:queue/producer`), X a pseudo-random reading | `sent N` |
//! | `send?queue=Q` | sends the request body to Q | the message id |
//! | `/` (a delivery) with a JSON body `{"n": I, "fail": F, "reject": R}` | records the delivery: increments `attempts:I`; while that count is ≤ F answers 500 (so the first F deliveries fail, across retries and replays); with R true answers 400; else increments `done:I` and answers 200 | `ok` |
//! | `/` (a delivery) with any other JSON body, e.g. a stream function's result `6.0` | the sink: increments `sunk` and adds the value to the list `sunk:LIST` | `ok` |
//! | `count?key=K` | the counter K | its value (0 if absent) |
//! | `done` | how many `done:*` keys exist and the largest `done:*` value | `keys=N max=M` |
//!
//! Store `default` is used for everything (grant `key_value_stores = ["default"]`); producing
//! needs `queues = ["Q"]`. Errors answer 500 `error: TEXT`.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({
    path: "wit",
    world: "demo",
    generate_all,
});

use wasi::keyvalue::{atomics, store};
use wedge::queue::producer;

struct Demo;

wasip2::http::proxy::export!(Demo);

impl wasip2::exports::http::incoming_handler::Guest for Demo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let uri = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (uri.clone(), String::new()),
        };
        let attempt: u64 = header(&request, "x-wedge-attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let body = match read_body(request) {
            Ok(body) => body,
            Err(error) => return respond(out, 400, &format!("bad request: {error}\n")),
        };
        let action = path.rsplit('/').next().unwrap_or("");
        let result = match action {
            "produce" => produce(&query),
            "send" => param(&query, "queue")
                .ok_or_else(|| "missing queue".to_string())
                .and_then(|queue| {
                    producer::send(&queue, &body, Some("application/json"))
                        .map_err(|e| format!("{e:?}"))
                }),
            "count" => param(&query, "key")
                .ok_or_else(|| "missing key".to_string())
                .and_then(|key| counter(&key).map(|n| n.to_string())),
            "done" => done(),
            "" => return deliver(out, &body, attempt),
            other => Err(format!("no such action `{other}`")),
        };
        match result {
            Ok(text) => respond(out, 200, &text),
            Err(error) => respond(out, 500, &format!("error: {error}\n")),
        }
    }
}

fn bucket() -> Result<store::Bucket, String> {
    store::open("default").map_err(|e| format!("{e:?}"))
}

fn counter(key: &str) -> Result<u64, String> {
    let bucket = bucket()?;
    let value = bucket.get(key).map_err(|e| format!("{e:?}"))?;
    Ok(value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn increment(key: &str) -> Result<u64, String> {
    atomics::increment(&bucket()?, key, 1).map_err(|e| format!("{e:?}"))
}

/// A delivery: the recording consumer for `{"n": ...}` messages, the sink for the rest.
fn deliver(out: ResponseOutparam, body: &[u8], attempt: u64) {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(error) => return respond(out, 400, &format!("not JSON: {error}\n")),
    };
    let result = match json.get("n").and_then(|n| n.as_u64()) {
        Some(n) => {
            let fail = json.get("fail").and_then(|f| f.as_u64()).unwrap_or(0);
            let seen = match increment(&format!("attempts:{n}")) {
                Ok(seen) => seen,
                Err(error) => return respond(out, 500, &format!("error: {error}\n")),
            };
            if json.get("reject").and_then(|r| r.as_bool()) == Some(true) {
                return respond(out, 400, "rejected\n");
            }
            if seen <= fail {
                return respond(out, 500, &format!("injected failure (attempt {attempt})\n"));
            }
            increment(&format!("done:{n}")).map(|_| "ok".to_string())
        }
        None => sink(&json),
    };
    match result {
        Ok(text) => respond(out, 200, &text),
        Err(error) => respond(out, 500, &format!("error: {error}\n")),
    }
}

/// The sink of the sensor demo: counts results and keeps the last ones.
fn sink(value: &serde_json::Value) -> Result<String, String> {
    let count = increment("sunk")?;
    let bucket = bucket()?;
    bucket
        .set(&format!("sunk:{count}"), value.to_string().as_bytes())
        .map_err(|e| format!("{e:?}"))?;
    Ok("ok".into())
}

fn done() -> Result<String, String> {
    let bucket = bucket()?;
    let mut keys = 0u64;
    let mut max = 0u64;
    let mut cursor: Option<u64> = None;
    loop {
        let page = bucket.list_keys(cursor).map_err(|e| format!("{e:?}"))?;
        for key in page.keys.iter().filter(|k| k.starts_with("done:")) {
            keys += 1;
            max = max.max(counter(key)?);
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(format!("keys={keys} max={max}"))
}

/// A pseudo-random reading in [0, 10), different for each message of a run.
fn reading(seed: u64, i: u64) -> f64 {
    let mut x = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 10_000) as f64 / 1000.0
}

fn produce(query: &str) -> Result<String, String> {
    let queue = param(query, "queue").ok_or("missing queue")?;
    let count: u64 = param(query, "count")
        .and_then(|c| c.parse().ok())
        .ok_or("missing or bad count")?;
    let seed = wasip2::random::random::get_random_u64();
    for i in 0..count {
        let message = serde_json::json!({ "noise": reading(seed, i), "seq": i });
        producer::send(&queue, message.to_string().as_bytes(), Some("application/json"))
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(format!("sent {count}"))
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .first()
        .and_then(|v| String::from_utf8(v.clone()).ok())
}

fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|_| "body taken".to_string())?;
    let stream = body.stream().map_err(|_| "stream taken".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Ok(bytes)
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream taken once");
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.blocking_flush();
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}
