//! The JavaScript, Python and C examples, served from the examples app (examples/app/wedge.toml,
//! what `scripts/start.sh` serves) by the real binary: hello, echo, a JSON API with its 400,
//! and outbound fetch to an allowed host and a denied one.
//!
//! The guests are built by scripts/build-guests.sh (with the toolchains of
//! scripts/setup-toolchains.sh); a missing one fails the test with the command that builds it.

mod support;

use support::server::{Server, get, get_with, send};
use support::{guest, root};

/// The examples app itself, with its guests taken from the guest directory and the fetch
/// functions allowed to reach `upstream` instead of the app's own default address.
fn start_examples(upstream: &Server) -> Server {
    for name in [
        "js-hello.wasm",
        "js-echo.wasm",
        "js-json-api.wasm",
        "js-fetch.wasm",
        "py-hello.wasm",
        "py-echo.wasm",
        "py-json-api.wasm",
        "py-fetch.wasm",
        "c-http-hello.wasm",
    ] {
        guest(name);
    }
    let manifest = std::fs::read_to_string(root().join("examples/app/wedge.toml"))
        .expect("read examples/app/wedge.toml");
    let allowed = format!("http://{}", upstream.address());
    let manifest = manifest
        .replace("../../target/guests/", "{guests}/")
        .replace("\"http://127.0.0.1:3000\"", &format!("\"{allowed}\""));
    assert!(
        manifest.contains(&allowed),
        "the fetch examples' allow-list moved"
    );
    Server::start(&manifest, &[])
}

/// One server for every check: the first start compiles nine 13-19 MB components.
#[test]
fn the_examples_app_in_javascript_python_and_c() {
    // An upstream the fetch examples may reach: the Rust hello function on its own server.
    let upstream = Server::start(
        "[[function]]\nname = \"upstream\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/\"\n",
        &[],
    );
    let app = start_examples(&upstream);
    hello_in_javascript_python_and_c(&app);
    echo_shows_method_path_query_headers_and_body(&app);
    the_json_api_answers_json_and_400_on_bad_json(&app);
    fetch_reaches_an_allowed_host_and_is_denied_any_other(&app, &upstream);
}

fn hello_in_javascript_python_and_c(app: &Server) {
    for (path, body) in [
        ("/js/hello", "hello from javascript\n"),
        ("/py/hello", "hello from python\n"),
        ("/c/hello/x?y=1", "hello from c at /c/hello/x?y=1\n"),
        ("/hello-wagi", "hello from wagi\n"),
    ] {
        let reply = get(&app.url(path));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.text(), body, "{path}");
        assert_eq!(reply.header("content-type"), Some("text/plain"), "{path}");
    }
}

fn echo_shows_method_path_query_headers_and_body(app: &Server) {
    for prefix in ["/js/echo", "/py/echo"] {
        let url = app.url(&format!("{prefix}/some/where?a=1&b=two"));
        let reply = send(
            "POST",
            &url,
            &[("x-test", "yes"), ("content-type", "text/plain")],
            b"the body",
        );
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        let text = reply.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "method: POST", "{prefix}: {text}");
        assert_eq!(lines[1], format!("path: {prefix}/some/where"), "{text}");
        assert_eq!(lines[2], "query: a=1&b=two", "{text}");
        assert!(lines.contains(&"header x-test: yes"), "{prefix}: {text}");
        assert!(lines.contains(&"header content-type: text/plain"), "{text}");
        assert_eq!(lines.last(), Some(&"body: the body"), "{text}");
        // Headers come sorted by name.
        let headers: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("header "))
            .copied()
            .collect();
        let mut sorted = headers.clone();
        sorted.sort();
        assert_eq!(headers, sorted, "{prefix}");

        let reply = get_with(&app.url(&format!("{prefix}/")), &[("x-other", "1")]);
        assert!(
            reply.text().starts_with("method: GET\n"),
            "{}",
            reply.text()
        );
        assert!(
            reply.text().contains("header x-other: 1\n"),
            "{}",
            reply.text()
        );
        assert!(reply.text().ends_with("body: \n"), "{}", reply.text());
    }
}

fn the_json_api_answers_json_and_400_on_bad_json(app: &Server) {
    let json = [("content-type", "application/json")];
    for prefix in ["/js/json", "/py/json"] {
        let url = app.url(prefix);
        let reply = send(
            "POST",
            &url,
            &json,
            br#"{"name": "wedge", "numbers": [1, 2, 39]}"#,
        );
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.text(),
            r#"{"greeting":"hello, wedge","sum":42,"count":3}"#,
            "{prefix}"
        );

        for bad in [&b"{not json"[..], b"", b"[1, 2]", br#"{"numbers": ["x"]}"#] {
            let reply = send("POST", &url, &json, bad);
            assert_eq!(
                reply.status,
                400,
                "{prefix} {:?}: {}",
                String::from_utf8_lossy(bad),
                reply.text()
            );
            assert!(
                reply.text().starts_with(r#"{"error":""#),
                "{}",
                reply.text()
            );
        }
        let reply = send("POST", &url, &json, b"{not json");
        assert!(reply.text().contains("invalid JSON"), "{}", reply.text());
        assert_eq!(get(&url).status, 405, "{prefix}");
    }
}

fn fetch_reaches_an_allowed_host_and_is_denied_any_other(app: &Server, upstream: &Server) {
    let allowed = format!("http://{}/from-upstream", upstream.address());
    // The same server under another name is not on the allow-list (hosts are compared as
    // written).
    let denied = format!(
        "http://localhost:{}/",
        upstream.address().rsplit(':').next().unwrap()
    );
    for prefix in ["/js/fetch", "/py/fetch"] {
        let reply = get(&app.url(&format!("{prefix}?url={allowed}")));
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        assert_eq!(reply.text(), "status: 200\nhello from wedge\n", "{prefix}");

        let reply = get(&app.url(&format!("{prefix}?url={denied}")));
        assert_eq!(reply.status, 502, "{prefix}: {}", reply.text());
        assert!(
            reply.text().starts_with("fetch failed: "),
            "{}",
            reply.text()
        );

        assert_eq!(get(&app.url(prefix)).status, 400, "{prefix} without ?url");
    }
    let log = app.wait_for_log("outbound request denied");
    assert!(log.contains("outbound request denied"), "{log}");
}
