//! The deploy API end to end: a real `wedge serve` with a data dir, real uploads over
//! loopback, restarts (graceful, SIGKILL, and crashes injected in the middle of a deploy),
//! and the CLI clients.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::server::{Reply, Server, get, get_with, multipart, send};
use support::{guest, status};

/// An app with one function, so that every test also checks that app and deployed
/// functions live side by side.
const APP: &str =
    "[[function]]\nname = \"app-hello\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/app\"\n";

struct Node {
    server: Server,
    data: PathBuf,
    token: String,
}

impl Node {
    fn start(data: &Path) -> Node {
        Self::start_with(data, APP, &[], &[])
    }

    fn start_with(data: &Path, manifest: &str, flags: &[&str], env: &[(&str, &str)]) -> Node {
        let mut all = vec!["--data", data.to_str().unwrap()];
        all.extend_from_slice(flags);
        let server = Server::start_with_env(manifest, &all, env);
        let token = std::fs::read_to_string(data.join("api-token"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Node {
            server,
            data: data.to_path_buf(),
            token,
        }
    }

    fn api(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        support::server::api(&self.server, &self.token, method, path, content_type, body)
    }

    fn deploy(&self, name: &str, config: &str, wasm: &[u8]) -> Reply {
        support::server::deploy(&self.server, &self.token, name, config, wasm)
    }

    fn blobs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Names the API lists, app and deployed.
    fn names(&self) -> Vec<String> {
        let reply = self.api("GET", "/functions", "", b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        json(&reply)["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

fn probe() -> Vec<u8> {
    std::fs::read(guest("http-probe.wasm")).unwrap()
}

fn greeting(value: &str) -> String {
    format!(r#"{{"route": "/p", "env": {{"GREETING": "{value}"}}}}"#)
}

#[test]
fn a_deploy_answers_with_a_url_that_serves_at_once_then_versions_roll_back_and_go() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    assert!(
        node.server
            .stdout_lines
            .iter()
            .any(|l| l.contains("API token:") && l.contains("api-token")),
        "{:?}",
        node.server.stdout_lines
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(node.token.len(), 64, "256 bits, hex");
    }

    let first = node.deploy("probe", &greeting("one"), &probe());
    assert_eq!(first.status, 201, "{}", first.text());
    let body = json(&first);
    assert_eq!(body["name"], "probe");
    assert_eq!(body["version"], 1);
    assert_eq!(body["kind"], "http");
    assert_eq!(body["digest"].as_str().unwrap().len(), 64);
    let url = body["url"].as_str().unwrap().to_string();
    assert_eq!(url, node.server.url("/p"));
    assert_eq!(get(&format!("{url}/env?name=GREETING")).text(), "one");

    let second = node.deploy("probe", &greeting("two"), &probe());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(json(&second)["version"], 2);
    assert_eq!(get(&format!("{url}/env?name=GREETING")).text(), "two");
    // The same bytes twice: one blob.
    assert_eq!(node.blobs().len(), 1);

    // A raw application/wasm upload takes every default: route /NAME.
    let wagi = std::fs::read(guest("wagi-hello.wasm")).unwrap();
    let raw = node.api("PUT", "/functions/w", "application/wasm", &wagi);
    assert_eq!(raw.status, 201, "{}", raw.text());
    assert_eq!(json(&raw)["kind"], "wagi");
    assert_eq!(get(&node.server.url("/w")).text(), "hello from wagi\n");

    assert_eq!(node.names(), ["app-hello", "probe", "w"]);
    let show = json(&node.api("GET", "/functions/probe", "", b""));
    assert_eq!(show["version"], 2);
    assert_eq!(show["source"], "api");
    assert_eq!(show["config"]["env"]["GREETING"], "two");
    assert_eq!(show["versions"].as_array().unwrap().len(), 2);
    let app = json(&node.api("GET", "/functions/app-hello", "", b""));
    assert_eq!(app["source"], "app");

    // Roll back to the previous version, then forward to a named one.
    let rollback = |body: &[u8]| {
        node.api(
            "POST",
            "/functions/probe/rollback",
            "application/json",
            body,
        )
    };
    let back = rollback(b"");
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(json(&back)["version"], 1);
    assert_eq!(get(&format!("{url}/env?name=GREETING")).text(), "one");
    assert_eq!(json(&rollback(br#"{"version": 2}"#))["version"], 2);
    assert_eq!(get(&format!("{url}/env?name=GREETING")).text(), "two");
    let missing = rollback(br#"{"version": 9}"#);
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(json(&missing)["error"], "unknown_version");

    let gone = node.api("DELETE", "/functions/probe", "", b"");
    assert_eq!(gone.status, 200, "{}", gone.text());
    assert_eq!(get(&format!("{url}/env?name=GREETING")).status, 404);
    assert_eq!(node.api("GET", "/functions/probe", "", b"").status, 404);
    // Its blob went with it; the wagi function's stays.
    assert_eq!(node.blobs().len(), 1);
}

#[test]
fn the_api_needs_the_token_and_function_routes_stay_public() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    let url = node.server.url("/_wedge/api/v1/functions");
    let none = get(&url);
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"wedge\"")
    );
    assert_eq!(json(&none)["error"], "unauthorized");
    assert!(json(&none)["detail"].as_str().unwrap().contains("Bearer"));
    let wrong = get_with(&url, &[("authorization", "Bearer 0000")]);
    assert_eq!(wrong.status, 401);
    // A deploy without the token stores nothing.
    let (content_type, body) = multipart("{}", &probe());
    let refused = send(
        "PUT",
        &node.server.url("/_wedge/api/v1/functions/sneaky"),
        &[("content-type", &content_type)],
        &body,
    );
    assert_eq!(refused.status, 401);
    assert!(node.blobs().is_empty());
    // Function routes need no token.
    assert_eq!(get(&node.server.url("/app")).text(), "hello from wedge\n");
    drop(node);

    // --token-file: the operator's token, and none is created.
    let data = tempfile::tempdir().unwrap();
    let token_file = data.path().join("operator-token");
    std::fs::write(&token_file, "operator-chosen-token-0123456789\n").unwrap();
    let node = Node::start_with(
        &data.path().join("state"),
        APP,
        &["--token-file", token_file.to_str().unwrap()],
        &[],
    );
    assert!(!data.path().join("state/api-token").exists());
    let ok = get_with(
        &node.server.url("/_wedge/api/v1/functions"),
        &[("authorization", "Bearer operator-chosen-token-0123456789")],
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn bad_uploads_get_a_clear_4xx_and_nothing_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start_with(data.path(), APP, &["--max-upload-size", "512KiB"], &[]);
    let fixture = |name: &str| std::fs::read(support::fixture(name)).unwrap();
    let artifact_dir = tempfile::tempdir().unwrap();
    let artifact = support::Wedge::new().compile_guest("http-hello.wasm", artifact_dir.path());
    let hello = std::fs::read(guest("http-hello.wasm")).unwrap();
    // name, config JSON, upload, expected status, error code, what the detail must say.
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, &'a str, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "f",
            "{}",
            b"#!/bin/sh\necho hi\n".to_vec(),
            422,
            "not_wasm",
            &["not WebAssembly"],
        ),
        (
            "f",
            "{}",
            b"\0asm\x01\0\0\0\xff\xff".to_vec(),
            422,
            "invalid_wasm",
            &["not a valid WebAssembly"],
        ),
        (
            "f",
            "{}",
            fixture("reactor.wat"),
            422,
            "wrong_kind",
            &["neither kind", "_start"],
        ),
        (
            "f",
            "{}",
            std::fs::read(guest("hello-component.wasm")).unwrap(),
            422,
            "wrong_kind",
            &["wasi:http/incoming-handler"],
        ),
        (
            "f",
            r#"{"kind": "wagi"}"#,
            hello.clone(),
            422,
            "wrong_kind",
            &["kind = \"wagi\""],
        ),
        (
            "f",
            "{}",
            fixture("import-env.wat"),
            422,
            "import_not_granted",
            &["env::host_log"],
        ),
        (
            "f",
            "{}",
            std::fs::read(&artifact).unwrap(),
            422,
            "invalid_wasm",
            &[".cwasm", "upload the .wasm"],
        ),
        (
            "f",
            "{}",
            vec![0u8; 600 << 10],
            413,
            "too_large",
            &["512 KiB", "--max-upload-size"],
        ),
        (
            "Bad_Name",
            "{}",
            hello.clone(),
            400,
            "invalid_config",
            &["key `name`", "a-z"],
        ),
        (
            "f",
            r#"{"route": "/app"}"#,
            hello.clone(),
            409,
            "route_taken",
            &["app-hello", "app manifest"],
        ),
        (
            "app-hello",
            "{}",
            hello.clone(),
            409,
            "name_in_manifest",
            &["app manifest", "another name"],
        ),
        (
            "f",
            r#"{"timeout": 5}"#,
            hello.clone(),
            400,
            "invalid_config",
            &["`timeout`", "expected a string"],
        ),
        (
            "f",
            r#"{"tiemout": "5s"}"#,
            hello.clone(),
            400,
            "invalid_config",
            &["unknown field `tiemout`"],
        ),
        (
            "f",
            r#"{"route": "/x""#,
            hello.clone(),
            400,
            "invalid_config",
            &["EOF"],
        ),
        (
            "f",
            r#"{"max_memory": "lots"}"#,
            hello.clone(),
            400,
            "invalid_config",
            &["key `max_memory`"],
        ),
        (
            "f",
            r#"{"max_memory": "8GiB"}"#,
            hello.clone(),
            400,
            "invalid_config",
            &["--max-function-memory"],
        ),
        (
            "f",
            r#"{"route": "/_wedge/x"}"#,
            hello.clone(),
            400,
            "invalid_config",
            &["reserved"],
        ),
    ];
    for (name, config, wasm, expected_status, code, needles) in cases {
        let reply = node.deploy(name, config, &wasm);
        let label = format!("{name} {config} → {}", reply.text());
        assert_eq!(reply.status, expected_status, "{label}");
        let body = json(&reply);
        assert_eq!(body["error"], code, "{label}");
        let detail = body["detail"].as_str().unwrap();
        for needle in needles {
            assert!(detail.contains(needle), "{label}\nlacks {needle:?}");
        }
        assert!(body["request_id"].is_string(), "{label}");
    }
    // Not multipart, not Wasm: 415. A multipart without a wasm part: 400.
    let reply = node.api("PUT", "/functions/f", "text/plain", b"hi");
    assert_eq!(
        (reply.status, json(&reply)["error"].clone()),
        (415, "unsupported_media_type".into())
    );
    let reply = node.api(
        "PUT",
        "/functions/f",
        "multipart/form-data; boundary=b",
        b"--b\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{}\r\n--b--\r\n",
    );
    assert_eq!(
        (reply.status, json(&reply)["error"].clone()),
        (400, "missing_wasm".into())
    );
    // Unknown functions and endpoints.
    for (method, path) in [
        ("GET", "/functions/nope"),
        ("DELETE", "/functions/nope"),
        ("POST", "/functions/nope/rollback"),
        ("GET", "/functions/nope/logs"),
    ] {
        let reply = node.api(method, path, "application/json", b"");
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
        assert_eq!(json(&reply)["error"], "unknown_function");
    }
    let reply = node.api("DELETE", "/functions/app-hello", "", b"");
    assert_eq!(
        (reply.status, json(&reply)["error"].clone()),
        (409, "managed_by_manifest".into())
    );
    let reply = node.api("POST", "/functions", "application/json", b"");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));

    // Nothing was stored by any of it.
    assert_eq!(node.names(), ["app-hello"]);
    assert!(node.blobs().is_empty(), "{:?}", node.blobs());
}

#[test]
fn redeploys_under_load_swap_atomically_without_a_failed_request() {
    let data = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::start(data.path()));
    let wasm = probe();
    assert_eq!(node.deploy("probe", &greeting("v0"), &wasm).status, 201);
    let url = node.server.url("/p/env?name=GREETING");
    let running = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, running) = (url.clone(), running.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let reply = get(&url);
                    seen.push((reply.status, reply.text()));
                }
                seen
            })
        })
        .collect();
    for i in 1..=20 {
        let reply = node.deploy("probe", &greeting(&format!("v{i}")), &wasm);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(json(&reply)["version"], i + 1);
    }
    running.store(false, Ordering::Relaxed);
    let mut total = 0;
    for thread in load {
        let seen = thread.join().unwrap();
        total += seen.len();
        let mut newest = 0;
        for (status, body) in seen {
            assert_eq!(status, 200, "a request failed during a swap: {body}");
            let version: u32 = body
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not from any deployed version: {body:?}"));
            assert!(version <= 20);
            // Swaps are atomic and in order: a client never goes back to an older version.
            assert!(version >= newest, "v{version} after v{newest}");
            newest = version;
        }
    }
    assert!(total > 20, "the load generator ran ({total} requests)");
    assert_eq!(get(&url).text(), "v20");
}

#[test]
fn a_concurrency_limit_holds_across_a_redeploy() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    let config = r#"{"route": "/p", "max_concurrency": 1}"#;
    assert_eq!(node.deploy("p", config, &probe()).status, 201);
    // One slow request holds the only slot of version 1 ...
    let slow_url = node.server.url("/p/sleep?ms=1500");
    let slow = std::thread::spawn(move || get(&slow_url).status);
    let metrics = node.server.url("/_wedge/metrics");
    let started = std::time::Instant::now();
    while !get(&metrics)
        .text()
        .contains("wedge_in_flight_requests{function=\"p\"} 1")
    {
        assert!(
            started.elapsed().as_secs() < 10,
            "the slow request never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // ... and still does after a redeploy with the same limit: the new version answers 503.
    assert_eq!(node.deploy("p", config, &probe()).status, 200);
    let refused = get(&node.server.url("/p/counter"));
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(slow.join().unwrap(), 200);
    assert_eq!(get(&node.server.url("/p/counter")).status, 200);
}

#[test]
fn a_restart_restores_exactly_the_acknowledged_functions_even_after_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let wasm = probe();
    let mut node = Node::start(data.path());
    assert_eq!(node.deploy("a", r#"{"route": "/a"}"#, &wasm).status, 201);
    assert_eq!(node.deploy("b", &greeting("b1"), &wasm).status, 201);
    assert_eq!(node.deploy("b", &greeting("b2"), &wasm).status, 200);
    assert_eq!(node.deploy("c", r#"{"route": "/c"}"#, &wasm).status, 201);
    assert_eq!(node.api("DELETE", "/functions/c", "", b"").status, 200);
    // What was acknowledged, without what depends on this server process (port, manifest).
    let acknowledged = |node: &Node| {
        let mut list = json(&node.api("GET", "/functions", "", b""));
        for function in list["functions"].as_array_mut().unwrap() {
            let function = function.as_object_mut().unwrap();
            function.remove("url");
            function.remove("manifest");
        }
        list
    };
    let before = acknowledged(&node);
    assert_eq!(node.server.terminate(), Some(0));

    let mut node = Node::start(data.path());
    assert!(
        node.server.stdout_lines[0].contains("serving 3 functions"),
        "{:?}",
        node.server.stdout_lines
    );
    assert_eq!(before, acknowledged(&node));
    assert_eq!(get(&node.server.url("/p/env?name=GREETING")).text(), "b2");
    assert_eq!(get(&node.server.url("/c")).status, 404);
    let versions = json(&node.api("GET", "/functions/b", "", b""))["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 2);

    // Acknowledged, then SIGKILL: still there.
    assert_eq!(node.deploy("d", r#"{"route": "/d"}"#, &wasm).status, 201);
    node.server.kill_hard();
    let node = Node::start(data.path());
    assert_eq!(node.names(), ["a", "app-hello", "b", "d"]);
    assert_eq!(get(&node.server.url("/d/counter")).text(), "1");
}

/// Deploys `name` (route /NAME) to a server that aborts at `point`; returns how many blobs
/// the crash left on disk.
fn crash_during_deploy(data: &Path, point: &str, name: &str, wasm: &[u8]) -> usize {
    let mut node = Node::start_with(data, APP, &[], &[("WEDGE_TEST_CRASH_AT", point)]);
    let (content_type, body) = multipart(&format!(r#"{{"route": "/{name}"}}"#), wasm);
    let attempt = support::server::client()
        .put(node.server.url(&format!("/_wedge/api/v1/functions/{name}")))
        .header("authorization", format!("Bearer {}", node.token))
        .header("content-type", content_type)
        .send(&body[..]);
    assert!(attempt.is_err(), "the server should have died mid-deploy");
    assert_eq!(node.server.wait_exit(), None, "aborted, not exited");
    node.blobs().len()
}

#[test]
fn a_crash_in_the_middle_of_a_deploy_leaves_nothing_half_done() {
    let data = tempfile::tempdir().unwrap();
    let wasm = probe();
    let wagi = std::fs::read(guest("wagi-hello.wasm")).unwrap();
    {
        let node = Node::start(data.path());
        assert_eq!(
            node.deploy("kept", r#"{"route": "/kept"}"#, &wagi).status,
            201
        );
    }
    // Crash after the blob is on disk, before the metadata commit: the deploy was never
    // acknowledged, so after a restart it is gone, blob included.
    let blobs = crash_during_deploy(data.path(), "after-blob", "half", &wasm);
    assert_eq!(blobs, 2, "the crash came after the blob write");
    let node = Node::start(data.path());
    assert_eq!(node.names(), ["app-hello", "kept"]);
    assert_eq!(node.blobs().len(), 1, "the orphaned blob was removed");
    assert_eq!(get(&node.server.url("/half")).status, 404);
    assert_eq!(get(&node.server.url("/kept")).text(), "hello from wagi\n");
    drop(node);

    // Crash after the commit, before the answer: the deploy is whole after a restart.
    crash_during_deploy(data.path(), "after-commit", "whole", &wasm);
    let node = Node::start(data.path());
    assert_eq!(node.names(), ["app-hello", "kept", "whole"]);
    assert_eq!(get(&node.server.url("/whole/counter")).text(), "1");
    let names: Vec<_> = std::fs::read_dir(data.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
}

#[test]
fn app_and_deployed_functions_coexist_and_a_name_clash_says_which_is_which() {
    let data = tempfile::tempdir().unwrap();
    {
        let node = Node::start(data.path());
        assert_eq!(
            node.deploy("shared", r#"{"route": "/s"}"#, &probe()).status,
            201
        );
    }
    let clash = "[[function]]\nname = \"shared\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/other\"\n";
    let data_flag = data.path().to_str().unwrap();
    let Err((code, stderr)) = Server::try_start(clash, &["--data", data_flag]) else {
        panic!("start-up should fail on a name clash");
    };
    assert_eq!(code, Some(status::CONFIG), "{stderr}");
    for needle in [
        "`shared`",
        "app manifest",
        "deployed over the API",
        data_flag,
    ] {
        assert!(stderr.contains(needle), "{stderr}\nlacks {needle:?}");
    }
    // A second server on the same data dir is refused while the first runs.
    let _first = Node::start(data.path());
    let Err((code, stderr)) = Server::try_start(APP, &["--data", data_flag]) else {
        panic!("a second server on one data dir must be refused");
    };
    assert_eq!(code, Some(status::INTERNAL), "{stderr}");
    assert!(
        stderr.contains("in use by another wedge server"),
        "{stderr}"
    );
}

#[test]
fn logs_are_read_and_followed_across_a_redeploy() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    let echo = std::fs::read(guest("wagi-echo.wasm")).unwrap();
    assert_eq!(
        node.deploy("cgi", r#"{"route": "/cgi"}"#, &echo).status,
        201
    );
    let malformed = get(&node.server.url("/cgi/malformed"));
    assert_eq!(malformed.status, 502);
    let request_id = malformed.header("x-wedge-request-id").unwrap().to_string();
    let log = node.api("GET", "/functions/cgi/logs", "", b"");
    assert_eq!(log.status, 200);
    assert!(log.text().contains(&request_id), "{}", log.text());
    assert!(log.text().contains("malformed"), "{}", log.text());

    // Follow: past lines, then new ones as they happen, across a redeploy; the stream ends
    // when the function is deleted.
    let response = support::server::client()
        .get(
            node.server
                .url("/_wedge/api/v1/functions/cgi/logs?follow=1"),
        )
        .header("authorization", format!("Bearer {}", node.token))
        .call()
        .unwrap();
    let (lines_in, lines_out) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut response = response;
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let _ = lines_in.send(line);
        }
    });
    let next_line_with = |needle: &str| -> String {
        loop {
            let line = lines_out
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    next_line_with(&request_id);
    assert_eq!(
        node.deploy("cgi", r#"{"route": "/cgi"}"#, &echo).status,
        200
    );
    let second = get(&node.server.url("/cgi/malformed"));
    let second_id = second.header("x-wedge-request-id").unwrap().to_string();
    next_line_with(&second_id);
    assert_eq!(node.api("DELETE", "/functions/cgi", "", b"").status, 200);
    reader.join().unwrap();
}

#[test]
fn the_cli_clients_deploy_list_show_roll_back_read_logs_and_remove() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    let wedge = support::Wedge::new();
    let server = node.server.url("");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--server", &server, "--token", &node.token]);
        wedge.run(&all)
    };
    let probe_path = guest("http-probe.wasm");
    let probe_path = probe_path.to_str().unwrap();
    let deployed = run(&[
        "deploy",
        "p",
        probe_path,
        "--route",
        "/p",
        "--env",
        "GREETING=one",
    ]);
    deployed.expect_code(0).stderr_has("version 1");
    assert_eq!(deployed.stdout.trim(), node.server.url("/p"));
    run(&[
        "deploy",
        "p",
        probe_path,
        "--route",
        "/p",
        "--env",
        "GREETING=two",
        "--timeout",
        "2s",
    ])
    .expect_code(0);
    assert_eq!(get(&node.server.url("/p/env?name=GREETING")).text(), "two");

    let listed = run(&["functions"]);
    listed.expect_code(0).stdout_has("app-hello");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("p ") && l.contains(" 2 ") && l.contains("/p")),
        "{}",
        listed.stdout
    );
    run(&["functions", "show", "p"])
        .expect_code(0)
        .stdout_has("\"timeout\":\"2s\"");
    run(&["functions", "rollback", "p"]).expect_code(0);
    assert_eq!(get(&node.server.url("/p/env?name=GREETING")).text(), "one");
    run(&["functions", "rollback", "p", "--to", "2"]).expect_code(0);

    let wagi = guest("wagi-echo.wasm");
    run(&["deploy", "cgi", wagi.to_str().unwrap()]).expect_code(0);
    let malformed = get(&node.server.url("/cgi/malformed"));
    let id = malformed.header("x-wedge-request-id").unwrap().to_string();
    run(&["logs", "cgi"]).expect_code(0).stdout_has(&id);

    // The server's own message, not a bare status; documented exit statuses.
    let reactor = support::fixture("reactor.wat");
    run(&["deploy", "bad", reactor.to_str().unwrap()])
        .expect_code(status::API_REFUSED)
        .stderr_has("422 wrong_kind")
        .stderr_has("neither kind");
    run(&["functions", "rm", "nope"])
        .expect_code(status::API_REFUSED)
        .stderr_has("there is no function `nope`");
    wedge
        .run(&["functions", "--server", &server, "--token", "wrong-token"])
        .expect_code(status::API_REFUSED)
        .stderr_has("token is wrong");
    wedge
        .run(&[
            "functions",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "x",
        ])
        .expect_code(status::SERVER_UNREACHABLE)
        .stderr_has("cannot reach");
    run(&["deploy", "x", "/nonexistent.wasm"]).expect_code(status::NO_INPUT);

    run(&["functions", "rm", "p"]).expect_code(0);
    assert_eq!(get(&node.server.url("/p/counter")).status, 404);
}
