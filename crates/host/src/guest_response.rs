//! What a guest may put in the head of its response, checked before it goes to the client.
//!
//! A guest's headers are untrusted input to the node: a tenant must not be able to crash the
//! server (an `http::HeaderMap` panics past its capacity) or take over the framing of the
//! connection (a `Content-Length` that disagrees with the body lets the bytes after it be read
//! as the next response on a kept-alive connection: response splitting). So:
//!
//! - the head is bounded: at most `max_headers` fields and `max_bytes` of names and values,
//!   inserted with `try_` calls; past either the request gets 502 and a log line naming the
//!   limit;
//! - framing is wedge's: hop-by-hop headers are dropped, `Content-Length` is computed by wedge
//!   (a guest's own one must agree with the body it wrote, or the response is refused);
//! - a 1xx status cannot be a final response (hyper would answer 101 by switching protocols).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// Bounds on a guest response's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeadLimits {
    /// Header fields (each line of a WAGI head, each value of a `wasi:http` field).
    pub max_headers: usize,
    /// Bytes of header names and values together (plus 4 per field for `: ` and CRLF).
    pub max_bytes: usize,
}

impl Default for ResponseHeadLimits {
    /// The same bounds hyper applies to a request's head: 100 fields, 64 KiB.
    fn default() -> Self {
        Self {
            max_headers: 100,
            max_bytes: 64 << 10,
        }
    }
}

/// Why a guest's response head was refused (the request gets 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadProblem {
    #[error(
        "it has more than {limit} header fields (the limit of a response's head); send fewer headers"
    )]
    TooManyHeaders { limit: usize },
    #[error(
        "its headers are larger than {} (the limit of a response's head); send fewer or shorter headers",
        wedge_engine::units::format_size(*limit as u64)
    )]
    TooLarge { limit: usize },
    #[error(
        "it declares `Content-Length: {declared}` but its body is {actual} bytes; leave Content-Length out (wedge sets it), or make it match"
    )]
    LengthMismatch { declared: String, actual: u64 },
    #[error(
        "its status {0} is informational (1xx), which cannot be a final response; answer with 2xx to 5xx"
    )]
    Informational(u16),
}

/// Headers that describe one connection (RFC 9110 7.6.1) or the message's framing. wedge
/// frames every response itself, so none of these ever comes from a guest.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// A head being built from guest output, within its limits.
pub(crate) struct BoundedHead {
    limits: ResponseHeadLimits,
    headers: HeaderMap,
    count: usize,
    bytes: usize,
}

impl BoundedHead {
    pub fn new(limits: ResponseHeadLimits) -> Self {
        Self {
            limits,
            headers: HeaderMap::new(),
            count: 0,
            bytes: 0,
        }
    }

    /// Adds one field, or says which limit it would break. Never panics: the map cannot grow
    /// past `max_headers`, far below `HeaderMap`'s own capacity, and growth is `try_`.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) -> Result<(), HeadProblem> {
        self.count += 1;
        self.bytes += name.as_str().len() + value.len() + 4;
        self.check()?;
        self.headers
            .try_append(name, value)
            .map_err(|_| HeadProblem::TooManyHeaders {
                limit: self.limits.max_headers,
            })?;
        Ok(())
    }

    fn check(&self) -> Result<(), HeadProblem> {
        if self.count > self.limits.max_headers {
            return Err(HeadProblem::TooManyHeaders {
                limit: self.limits.max_headers,
            });
        }
        if self.bytes > self.limits.max_bytes {
            return Err(HeadProblem::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    pub fn contains(&self, name: HeaderName) -> bool {
        self.headers.contains_key(name)
    }

    pub fn into_headers(self) -> HeaderMap {
        self.headers
    }
}

/// Checks a head the guest built elsewhere (a `wasi:http` response) against the limits.
pub(crate) fn check_limits(
    headers: &HeaderMap,
    limits: ResponseHeadLimits,
) -> Result<(), HeadProblem> {
    let mut head = BoundedHead::new(limits);
    for (name, value) in headers {
        head.count += 1;
        head.bytes += name.as_str().len() + value.len() + 4;
        head.check()?;
    }
    Ok(())
}

/// Refuses a 1xx status as a final response.
pub(crate) fn check_status(status: StatusCode) -> Result<(), HeadProblem> {
    if status.is_informational() {
        return Err(HeadProblem::Informational(status.as_u16()));
    }
    Ok(())
}

/// Removes the guest's framing and hop-by-hop headers, including the ones its `Connection`
/// header names. Returns the `Content-Length` values it declared (for the caller to check
/// against the body) and the names of what was dropped (for the function's log).
pub(crate) fn take_framing(headers: &mut HeaderMap) -> (Vec<HeaderValue>, Vec<String>) {
    let mut dropped: Vec<String> = Vec::new();
    let named_by_connection: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let hop_by_hop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .chain(named_by_connection)
        .collect();
    for name in hop_by_hop {
        if headers.remove(&name).is_some() {
            dropped.push(name.as_str().to_string());
        }
    }
    let lengths = match headers.entry(header::CONTENT_LENGTH) {
        header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
        header::Entry::Vacant(_) => Vec::new(),
    };
    (lengths, dropped)
}

/// What a guest's declared `Content-Length` means for a body of `actual` bytes (or of a
/// length not known yet, `None`): `Ok(Some(n))` is a length wedge may send (checked against
/// the body as it streams), `Ok(None)` none.
pub(crate) fn declared_length(
    declared: &[HeaderValue],
    actual: Option<u64>,
    method: &Method,
) -> Result<Option<u64>, HeadProblem> {
    let Some(first) = declared.first() else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(first.as_bytes()).into_owned();
    let parsed = (declared.iter().all(|value| value == first)
        && !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit()))
    .then(|| text.parse::<u64>().ok())
    .flatten();
    let mismatch = |actual: u64| HeadProblem::LengthMismatch {
        declared: text.clone(),
        actual,
    };
    match (parsed, actual) {
        // A HEAD response states the length a GET would have, with no body.
        (Some(length), Some(0)) if method == Method::HEAD => Ok(Some(length)),
        (Some(length), Some(actual)) if length == actual => Ok(Some(length)),
        (Some(length), None) => Ok(Some(length)),
        (_, actual) => Err(mismatch(actual.unwrap_or(0))),
    }
}

/// Notes for the function's log about headers wedge dropped.
pub(crate) fn dropped_note(dropped: &[String]) -> Option<String> {
    (!dropped.is_empty()).then(|| {
        format!(
            "dropped the response header{} {} (hop-by-hop or framing headers are set by wedge, never by a function)",
            if dropped.len() == 1 { "" } else { "s" },
            dropped
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn the_head_is_bounded_in_fields_and_bytes() {
        let limits = ResponseHeadLimits {
            max_headers: 3,
            max_bytes: 100,
        };
        let mut head = BoundedHead::new(limits);
        for i in 0..3 {
            head.append(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            )
            .unwrap();
        }
        assert_eq!(
            head.append(
                HeaderName::from_static("x-4"),
                HeaderValue::from_static("v")
            ),
            Err(HeadProblem::TooManyHeaders { limit: 3 })
        );
        let mut head = BoundedHead::new(limits);
        let long = HeaderValue::from_str(&"v".repeat(100)).unwrap();
        assert_eq!(
            head.append(HeaderName::from_static("x-long"), long),
            Err(HeadProblem::TooLarge { limit: 100 })
        );
        let many = map(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        assert!(check_limits(&many, limits).is_err());
        assert!(check_limits(&many, ResponseHeadLimits::default()).is_ok());
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_taken_out() {
        let mut headers = map(&[
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        let (lengths, dropped) = take_framing(&mut headers);
        assert_eq!(lengths, ["5"]);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert!(headers.contains_key("content-type") && headers.contains_key("x-kept"));
        for name in [
            "transfer-encoding",
            "connection",
            "x-private",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(dropped.iter().any(|d| d == name), "{name}: {dropped:?}");
        }
    }

    #[test]
    fn a_declared_length_must_match_the_body() {
        let five = [HeaderValue::from_static("5")];
        assert_eq!(declared_length(&[], Some(3), &Method::GET), Ok(None));
        assert_eq!(declared_length(&five, Some(5), &Method::GET), Ok(Some(5)));
        assert_eq!(declared_length(&five, None, &Method::GET), Ok(Some(5)));
        assert_eq!(declared_length(&five, Some(0), &Method::HEAD), Ok(Some(5)));
        assert!(declared_length(&five, Some(12), &Method::GET).is_err());
        assert!(declared_length(&five, Some(0), &Method::GET).is_err());
        for bad in ["+5", " 5", "5, 5", "x", ""] {
            let value = [HeaderValue::from_str(bad).unwrap()];
            assert!(
                declared_length(&value, Some(5), &Method::GET).is_err(),
                "{bad:?}"
            );
        }
        let two = [HeaderValue::from_static("5"), HeaderValue::from_static("6")];
        assert!(declared_length(&two, Some(5), &Method::GET).is_err());
    }

    #[test]
    fn informational_statuses_are_not_final() {
        assert!(check_status(StatusCode::SWITCHING_PROTOCOLS).is_err());
        assert!(check_status(StatusCode::CONTINUE).is_err());
        assert!(check_status(StatusCode::NO_CONTENT).is_ok());
    }
}
