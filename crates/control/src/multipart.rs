//! Just enough of `multipart/form-data` (RFC 7578) for a deploy: named parts, each with an
//! optional content type, over a body that is already in memory (and bounded by the upload
//! limit). Anything malformed is an error that says what was expected.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// The `boundary` parameter of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut pieces = content_type.split(';');
    let essence = pieces.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    pieces.find_map(|piece| {
        let (key, value) = piece.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary must be 1 to 70 characters".into());
    }
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut position = memchr::memmem::find(body, delimiter.as_bytes())
        .ok_or("the body does not contain the multipart boundary")?
        + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[position..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err("a multipart boundary is not followed by a line break".into());
        }
        position += 2;
        let head_end = memchr::memmem::find(&body[position..], b"\r\n\r\n")
            .ok_or("a multipart part has no blank line after its headers")?;
        let head = std::str::from_utf8(&body[position..position + head_end])
            .map_err(|_| "a multipart part's headers are not UTF-8")?;
        let data_start = position + head_end + 4;
        let data_len = find_delimiter(&body[data_start..], next_delimiter.as_bytes())
            .ok_or("the multipart body ends without its closing boundary")?;
        let (name, content_type) = part_headers(head)?;
        parts.push(Part {
            name,
            content_type,
            data: body.slice(data_start..data_start + data_len),
        });
        position = data_start + data_len + next_delimiter.len();
    }
}

/// The next delimiter that really is one: followed by `--` (the last) or a line break.
fn find_delimiter(haystack: &[u8], delimiter: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = memchr::memmem::find(&haystack[from..], delimiter) {
        let at = from + found;
        let after = &haystack[at + delimiter.len()..];
        if after.starts_with(b"--") || after.starts_with(b"\r\n") {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn part_headers(head: &str) -> Result<(String, Option<String>), String> {
    let mut name = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("`{line}` is not a multipart header"));
        };
        if key.trim().eq_ignore_ascii_case("content-disposition") {
            name = value.split(';').find_map(|piece| {
                let (key, value) = piece.split_once('=')?;
                (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
            });
        } else if key.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let name = name.ok_or("a multipart part has no Content-Disposition name")?;
    Ok((name, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_as_curl_sends_them() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"config\"\r\nContent-Type: application/json\r\n\r\n{\"route\":\"/a\"}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"a.wasm\"\r\nContent-Type: application/wasm\r\n\r\n\0asm\r\n--XyZ\r\x01\r\n--XyZ--\r\n",
        );
        let boundary = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let parts = parse(&body, &boundary).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "config");
        assert_eq!(&parts[0].data[..], b"{\"route\":\"/a\"}");
        assert_eq!(parts[1].name, "wasm");
        assert_eq!(parts[1].content_type.as_deref(), Some("application/wasm"));
        // Data may contain the boundary text when it is not at a line start.
        assert_eq!(&parts[1].data[..], b"\0asm\r\n--XyZ\r\x01");
    }

    #[test]
    fn malformed_bodies_are_explained() {
        assert_eq!(boundary("application/json"), None);
        assert_eq!(
            boundary("multipart/form-data; boundary=\"q\"").as_deref(),
            Some("q")
        );
        let unterminated =
            Bytes::from_static(b"--b\r\nContent-Disposition: form-data; name=\"wasm\"\r\n\r\nabc");
        assert!(
            parse(&unterminated, "b")
                .unwrap_err()
                .contains("closing boundary")
        );
        let nameless = Bytes::from_static(b"--b\r\nContent-Type: x\r\n\r\nabc\r\n--b--");
        assert!(parse(&nameless, "b").unwrap_err().contains("name"));
        assert!(parse(&Bytes::from_static(b"junk"), "b").is_err());
    }
}
