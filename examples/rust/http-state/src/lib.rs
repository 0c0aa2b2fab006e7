//! http-state: the `wasi:http/proxy` component that wedge's state tests drive. Each request does
//! one thing with `wasi:keyvalue` or `wedge:sql` and answers what happened, so a test can check
//! every outcome the guest sees, errors included.
//!
//! Routing is by the **last segment of the path**; parameters are `name=value` pairs in the
//! query (percent-decoded). A guest-visible error answers **500** with `error: VARIANT[: TEXT]`,
//! so tests can tell an error value (the function answered) from a trap or a timeout.
//!
//! | last segment | does | answers |
//! | --- | --- | --- |
//! | `kv-set?store=S&key=K` | set K to the request body | `ok` |
//! | `kv-get?store=S&key=K` | get | the value, or 404 `none` |
//! | `kv-delete?store=S&key=K` | delete | `ok` |
//! | `kv-exists?store=S&key=K` | exists | `true` / `false` |
//! | `kv-incr?store=S&key=K&by=N` | atomics.increment | the new value |
//! | `kv-bump?store=S&key=K` | get K (a decimal number, 0 if absent), then set it to one more: a read and a write, not atomic (the benchmark's request) | the new value |
//! | `kv-keys?store=S` | list-keys, every page | the keys, sorted, one per line |
//! | `kv-set-many?store=S&prefix=P&n=N&size=B` | batch.set-many of P0..P(N-1), B bytes each | `ok` |
//! | `kv-get-many?store=S&keys=a,b` | batch.get-many | `key=value` or `key` (absent) per line |
//! | `sql?db=D&p=..&p=..` | execute the body with the params | see below |
//! | `sql-tx?db=D&end=commit\|rollback\|drop` | begin, execute the body, then end so | as `sql` |
//!
//! A param is `i:42`, `r:1.5`, `t:text`, `b:HEX` or `n:` (null). A SQL answer is
//! `affected=N last_id=ID|none`, then `columns=a,b`, then one line per row with each value
//! written the same typed way (`i:42|t:x|n:`).

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({
    path: "wit",
    world: "state",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};
use wedge::sql::sql;

struct StateProbe;

wasip2::http::proxy::export!(StateProbe);

impl wasip2::exports::http::incoming_handler::Guest for StateProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let uri = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (uri.clone(), String::new()),
        };
        let body = match read_body(request) {
            Ok(body) => body,
            Err(error) => return respond(out, 400, &format!("bad request: {error}\n")),
        };
        let action = path.rsplit('/').next().unwrap_or("");
        let result = match action {
            "kv-set" | "kv-get" | "kv-delete" | "kv-exists" | "kv-incr" | "kv-keys"
            | "kv-set-many" | "kv-get-many" | "kv-bump" => key_value(action, &query, body),
            "sql" | "sql-tx" => run_sql(action, &query, body),
            _ => Err(Answer::status(404, "no such action\n")),
        };
        match result {
            Ok(text) => respond(out, 200, &text),
            Err(answer) => respond(out, answer.status, &answer.text),
        }
    }
}

/// A non-200 answer.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn status(status: u16, text: &str) -> Self {
        Self {
            status,
            text: text.to_string(),
        }
    }
    fn bad(reason: &str) -> Self {
        Self::status(400, &format!("bad request: {reason}\n"))
    }
}

impl From<store::Error> for Answer {
    fn from(error: store::Error) -> Self {
        let text = match error {
            store::Error::NoSuchStore => "error: no-such-store".to_string(),
            store::Error::AccessDenied => "error: access-denied".to_string(),
            store::Error::Other(text) => format!("error: other: {text}"),
        };
        Self { status: 500, text }
    }
}

impl From<sql::Error> for Answer {
    fn from(error: sql::Error) -> Self {
        let text = match error {
            sql::Error::AccessDenied => "error: access-denied".to_string(),
            sql::Error::Unavailable(t) => format!("error: unavailable: {t}"),
            sql::Error::ConstraintViolation(t) => format!("error: constraint-violation: {t}"),
            sql::Error::InvalidStatement(t) => format!("error: invalid-statement: {t}"),
            sql::Error::LimitExceeded(t) => format!("error: limit-exceeded: {t}"),
            sql::Error::NoTransaction => "error: no-transaction".to_string(),
            sql::Error::Other(t) => format!("error: other: {t}"),
        };
        Self { status: 500, text }
    }
}

fn key_value(action: &str, query: &str, body: Vec<u8>) -> Result<String, Answer> {
    let name = param(query, "store").ok_or_else(|| Answer::bad("missing store"))?;
    let bucket = store::open(&name)?;
    let key = || param(query, "key").ok_or_else(|| Answer::bad("missing key"));
    match action {
        "kv-set" => {
            bucket.set(&key()?, &body)?;
            Ok("ok".into())
        }
        "kv-get" => match bucket.get(&key()?)? {
            Some(value) => Ok(String::from_utf8_lossy(&value).into_owned()),
            None => Err(Answer::status(404, "none")),
        },
        "kv-delete" => {
            bucket.delete(&key()?)?;
            Ok("ok".into())
        }
        "kv-exists" => Ok(bucket.exists(&key()?)?.to_string()),
        "kv-incr" => {
            let by = param(query, "by")
                .unwrap_or_else(|| "1".into())
                .parse::<u64>()
                .map_err(|_| Answer::bad("by is not a number"))?;
            Ok(atomics::increment(&bucket, &key()?, by)?.to_string())
        }
        "kv-bump" => {
            let key = key()?;
            let current = match bucket.get(&key)? {
                Some(value) => String::from_utf8_lossy(&value).parse::<u64>().unwrap_or(0),
                None => 0,
            };
            let next = (current + 1).to_string();
            bucket.set(&key, next.as_bytes())?;
            Ok(next)
        }
        "kv-keys" => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            keys.sort();
            Ok(keys.join("\n"))
        }
        "kv-set-many" => {
            let prefix = param(query, "prefix").unwrap_or_default();
            let n = number(query, "n")?;
            let size = number(query, "size").unwrap_or(1) as usize;
            let pairs: Vec<(String, Vec<u8>)> = (0..n)
                .map(|i| (format!("{prefix}{i}"), vec![b'v'; size]))
                .collect();
            batch::set_many(&bucket, &pairs)?;
            Ok("ok".into())
        }
        "kv-get-many" => {
            let keys: Vec<String> = param(query, "keys")
                .unwrap_or_default()
                .split(',')
                .map(str::to_string)
                .collect();
            let found = batch::get_many(&bucket, &keys)?;
            let lines: Vec<String> = keys
                .iter()
                .zip(found)
                .map(|(key, value)| match value {
                    Some((_, value)) => format!("{key}={}", String::from_utf8_lossy(&value)),
                    None => key.clone(),
                })
                .collect();
            Ok(lines.join("\n"))
        }
        _ => Err(Answer::status(404, "no such action\n")),
    }
}

fn run_sql(action: &str, query: &str, body: Vec<u8>) -> Result<String, Answer> {
    let name = param(query, "db").ok_or_else(|| Answer::bad("missing db"))?;
    let statement = String::from_utf8(body).map_err(|_| Answer::bad("the body is not UTF-8"))?;
    let params = params(query)?;
    let connection = sql::Connection::open(&name)?;
    if action == "sql" {
        return Ok(render(connection.execute(&statement, &params)?));
    }
    connection.begin()?;
    let result = connection.execute(&statement, &params)?;
    match param(query, "end").as_deref() {
        Some("commit") => connection.commit()?,
        Some("rollback") => connection.rollback()?,
        // Dropping the connection with the transaction open: the host must roll it back.
        Some("drop") => drop(connection),
        _ => return Err(Answer::bad("end must be commit, rollback or drop")),
    }
    Ok(render(result))
}

fn render(result: sql::QueryResult) -> String {
    let mut text = format!(
        "affected={} last_id={}\ncolumns={}\n",
        result.rows_affected,
        result
            .last_insert_id
            .map_or_else(|| "none".to_string(), |id| id.to_string()),
        result.columns.join(",")
    );
    for row in result.rows {
        let values: Vec<String> = row.values.iter().map(typed).collect();
        text.push_str(&values.join("|"));
        text.push('\n');
    }
    text
}

fn typed(value: &sql::Value) -> String {
    match value {
        sql::Value::Null => "n:".into(),
        sql::Value::Integer(i) => format!("i:{i}"),
        sql::Value::Real(r) => format!("r:{r}"),
        sql::Value::Text(t) => format!("t:{t}"),
        sql::Value::Blob(b) => format!("b:{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn params(query: &str) -> Result<Vec<sql::Value>, Answer> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("p="))
        .map(|raw| {
            let text = percent_decode(raw);
            let (tag, value) = text
                .split_once(':')
                .ok_or_else(|| Answer::bad(&format!("param `{text}` has no type")))?;
            let bad = || Answer::bad(&format!("param `{text}` is not a {tag}"));
            Ok(match tag {
                "i" => sql::Value::Integer(value.parse().map_err(|_| bad())?),
                "r" => sql::Value::Real(value.parse().map_err(|_| bad())?),
                "t" => sql::Value::Text(value.to_string()),
                "n" => sql::Value::Null,
                "b" => sql::Value::Blob(hex(value).ok_or_else(bad)?),
                _ => return Err(Answer::bad(&format!("param `{text}`: unknown type"))),
            })
        })
        .collect()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "body already taken")?;
    let stream = body.stream().map_err(|()| "stream already taken")?;
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
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream taken once");
    stream.write_all(text.as_bytes()).expect("write body");
    stream.blocking_flush().expect("flush body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

fn number(query: &str, name: &str) -> Result<u64, Answer> {
    param(query, name)
        .ok_or_else(|| Answer::bad(&format!("missing {name}")))?
        .parse()
        .map_err(|_| Answer::bad(&format!("{name} is not a number")))
}

fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
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
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
