//! Runtime tests as data: every folder in tests/cases/ is one case, run against the real
//! `wedge serve` binary (Spin's runtime tests have the same shape).
//!
//! ```text
//! tests/cases/NAME/
//!   wedge.toml            the app manifest ({guests} is the built guests' directory)
//!   runtime-config.toml   optional: passed as --runtime-config
//!   request               one HTTP/1.1 request: request line, headers, a blank line, the body
//!                         (the runner adds `Connection: close` and reads to the end)
//!   expect                the status; `name: value` header lines (`*`: present, `-`: absent);
//!                         a blank line; the body exactly, or `contains: TEXT`
//! ```
//!
//! A case folder is all a new case needs: this runner finds it. Every case runs; the test
//! fails with the list of cases that did not match and why.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::server::Server;
use support::{guest, root};

struct Expected {
    status: u16,
    headers: Vec<(String, String)>,
    body: ExpectedBody,
}

enum ExpectedBody {
    Exactly(Vec<u8>),
    Contains(String),
}

fn split_blank_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&bytes[..at], &bytes[at + 2..]),
        None => (bytes, &[]),
    }
}

fn parse_expect(bytes: &[u8]) -> Result<Expected, String> {
    let (head, body) = split_blank_line(bytes);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or("the first line of `expect` must be the status code")?;
    let headers = lines
        .map(|line| {
            line.split_once(':')
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .ok_or_else(|| format!("`{line}` is not a `name: value` line"))
        })
        .collect::<Result<_, _>>()?;
    let body = match std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.strip_prefix("contains: "))
    {
        Some(needle) => ExpectedBody::Contains(needle.trim_end_matches('\n').to_string()),
        None => ExpectedBody::Exactly(body.to_vec()),
    };
    Ok(Expected {
        status,
        headers,
        body,
    })
}

/// The request file as it goes on the wire: CRLF line ends in the head, the body as written.
fn wire_request(bytes: &[u8]) -> Vec<u8> {
    let (head, body) = split_blank_line(bytes);
    let mut wire = String::from_utf8_lossy(head)
        .replace('\n', "\r\n")
        .into_bytes();
    wire.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    wire.extend_from_slice(body);
    wire
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn exchange(server: &Server, request: &[u8]) -> Result<Answer, String> {
    let stream = TcpStream::connect(server.address()).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(request)
        .map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not a status line: {line:?}"))?;
    let mut headers = Vec::new();
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.to_ascii_lowercase(), value.trim().to_string());
            chunked |= name == "transfer-encoding" && value == "chunked";
            headers.push((name, value));
        }
    }
    let mut raw = Vec::new();
    reader
        .read_to_end(&mut raw)
        .map_err(|e| format!("read body: {e}"))?;
    let body = if chunked { dechunk(&raw)? } else { raw };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line without CRLF")?;
        let size = usize::from_str_radix(&String::from_utf8_lossy(&raw[..end]), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(raw.get(..size).ok_or("a chunk shorter than its size")?);
        raw = raw.get(size + 2..).ok_or("a chunk without its CRLF")?;
    }
}

fn check(expected: &Expected, answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body);
    if answer.status != expected.status {
        return Err(format!(
            "status {} instead of {}: {text}",
            answer.status, expected.status
        ));
    }
    for (name, value) in &expected.headers {
        let found = answer
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let ok = match (value.as_str(), found) {
            ("-", None) | ("*", Some(_)) => true,
            ("-", Some(_)) | ("*", None) => false,
            (wanted, found) => found == Some(wanted),
        };
        if !ok {
            return Err(format!(
                "header `{name}` is {found:?}, expected {value:?} (headers: {:?})",
                answer.headers
            ));
        }
    }
    match &expected.body {
        ExpectedBody::Exactly(body) if body != &answer.body => Err(format!(
            "body {text:?}, expected {:?}",
            String::from_utf8_lossy(body)
        )),
        ExpectedBody::Contains(needle) if !text.contains(needle.as_str()) => {
            Err(format!("body {text:?} does not contain {needle:?}"))
        }
        _ => Ok(()),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| format!("cannot read `{name}`: {e}"))
    };
    let manifest = String::from_utf8(read("wedge.toml")?).map_err(|e| e.to_string())?;
    let expected = parse_expect(&read("expect")?)?;
    let request = wire_request(&read("request")?);
    let runtime_config = dir.join("runtime-config.toml");
    let mut flags = Vec::new();
    let config_arg = runtime_config.display().to_string();
    if runtime_config.exists() {
        flags.extend(["--runtime-config", config_arg.as_str()]);
    }
    let server = Server::try_start(&manifest, &flags)
        .map_err(|(code, stderr)| format!("wedge serve did not start ({code:?}): {stderr}"))?;
    let answer = exchange(&server, &request)?;
    check(&expected, &answer).map_err(|why| format!("{why}\n--- wedge's log:\n{}", server.stderr()))
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/cases"))
        .expect("tests/cases")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_case_in_tests_cases_answers_as_expected() {
    // The guests the cases use must be built (a missing one fails here, naming the script).
    guest("http-hello.wasm");
    let cases = cases();
    assert!(
        cases.len() >= 8,
        "tests/cases has only {} cases",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            run_case(dir).err().map(|why| {
                format!(
                    "{}: {why}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_case_that_expects_otherwise_fails() {
    // The runner itself: a wrong status, header or body is reported, never passed.
    let answer = Answer {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: b"hello".to_vec(),
    };
    for expect in [
        &b"404\n\nhello"[..],
        b"200\ncontent-type: text/html\n\nhello",
        b"200\ncontent-type: -\n\nhello",
        b"200\nx-missing: *\n\nhello",
        b"200\n\nhullo",
        b"200\n\ncontains: bye",
    ] {
        let expected = parse_expect(expect).expect("parses");
        assert!(
            check(&expected, &answer).is_err(),
            "{}",
            String::from_utf8_lossy(expect)
        );
    }
    let expected = parse_expect(b"200\ncontent-type: *\nx-none: -\n\ncontains: ell").unwrap();
    assert!(check(&expected, &answer).is_ok());
}
