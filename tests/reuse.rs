//! WASI 0.3 handlers and opt-in instance reuse, end to end: the real binary, the http-p3
//! component (examples/rust/http-p3, `wasi:http/handler@0.3.0`) and the 0.2 http-probe.
//! A static counter in each guest shows which requests shared an instance.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::server::{Reply, Server, get, get_with, multipart, send};
use support::{guest, status};

const APP: &str = r#"
[[function]]
name = "p3"
source = "{guests}/http-p3.wasm"
route = "/p3"
timeout = "1s"
max_memory = "32MiB"

[[function]]
name = "serial"
source = "{guests}/http-p3.wasm"
route = "/serial"
timeout = "1s"
max_memory = "32MiB"
reuse = { max_requests = 5, idle_timeout = "30s" }

[[function]]
name = "concurrent"
source = "{guests}/http-p3.wasm"
route = "/concurrent"
timeout = "2s"
reuse = { max_requests = 1000, max_concurrent = 4, idle_timeout = "30s" }

[[function]]
name = "idle"
source = "{guests}/http-p3.wasm"
route = "/idle"
reuse = { max_requests = 1000, idle_timeout = "300ms" }

[[function]]
name = "p2"
source = "{guests}/http-probe.wasm"
route = "/p2"
timeout = "1s"
max_memory = "32MiB"
reuse = { max_requests = 3, idle_timeout = "30s" }

[[function]]
name = "fresh"
source = "{guests}/http-probe.wasm"
route = "/fresh"
"#;

fn counter(server: &Server, route: &str) -> String {
    let reply = get(&server.url(&format!("{route}/counter")));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

fn metric(server: &Server, line: &str) -> Option<u64> {
    get(&server.url("/_wedge/metrics"))
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap_or(0)))
}

/// An instance is retired after its last response is sent (a stuck one up to its timeout
/// plus a second later), so its retirement is waited for, not expected at once.
fn wait_for_metric(server: &Server, line: &str) -> Option<u64> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(server, line);
        if value.is_some() || std::time::Instant::now() > until {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_wasi_0_3_handler_answers_and_streams_a_body_both_ways() {
    guest("http-p3.wasm");
    let server = Server::start(APP, &[]);
    let reply = get(&server.url("/p3/hello"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from wasi 0.3\n");
    assert!(reply.header("x-wedge-request-id").is_some());
    let printed = server.stdout_lines.join("\n");
    assert!(
        printed.contains("p3") && printed.contains("http"),
        "{printed}"
    );
    // 4 MiB through the guest's streams and back.
    let body: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let reply = send("POST", &server.url("/p3/echo"), &[], &body);
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == body,
        "the echoed body differs ({} bytes)",
        reply.body.len()
    );
    // Without reuse, every request has its own instance, as for 0.2.
    assert_eq!(counter(&server, "/p3"), "1");
    assert_eq!(counter(&server, "/p3"), "1");
    assert_eq!(counter(&server, "/fresh"), "1");
}

/// A request that arrives while every instance is busy (even just finishing the previous
/// response) gets a new instance rather than waiting, so a test that wants the same instance
/// waits for it to be idle first.
fn counter_when_idle(server: &Server, route: &str) -> String {
    let function = &route[1..];
    let idle = format!("wedge_instances_idle{{function=\"{function}\"}}");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while metric(server, &idle).unwrap_or(0) == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    counter(server, route)
}

#[test]
fn serial_reuse_serves_max_requests_then_retires_the_instance() {
    let server = Server::start(APP, &[]);
    let mut seen = vec![counter(&server, "/serial")];
    seen.extend((0..6).map(|_| counter_when_idle(&server, "/serial")));
    assert_eq!(seen, ["1", "2", "3", "4", "5", "1", "2"]);
    let mut seen = vec![counter(&server, "/p2")];
    seen.extend((0..3).map(|_| counter_when_idle(&server, "/p2")));
    assert_eq!(
        seen,
        ["1", "2", "3", "1"],
        "0.2 handlers reuse serially too"
    );
    assert_eq!(
        wait_for_metric(
            &server,
            "wedge_instances_retired_total{function=\"serial\",cause=\"max_requests\"}"
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &server,
            "wedge_instances_created_total{function=\"serial\"}"
        ),
        Some(2)
    );
    // However fast they come, no instance serves more than `max_requests`.
    let seen: Vec<u64> = (0..40)
        .map(|_| counter(&server, "/serial").parse().unwrap())
        .collect();
    assert!(seen.iter().all(|&n| (1..=5).contains(&n)), "{seen:?}");
}

#[test]
fn concurrent_reuse_serves_requests_at_once_in_one_instance() {
    let server = Arc::new(Server::start(APP, &[]));
    // A burst at a cold start makes one instance per request (none is ready to take a
    // second); once one is idle, it takes requests while the others wait on I/O.
    assert_eq!(counter(&server, "/concurrent"), "1");
    counter_when_idle(&server, "/concurrent");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let server = server.clone();
            std::thread::sleep(Duration::from_millis(50 * i));
            std::thread::spawn(move || get(&server.url("/concurrent/sleep?ms=600")))
        })
        .collect();
    let mut peak = 0;
    for thread in threads {
        let reply = thread.join().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "slept 600\n");
        let in_flight: u64 = reply
            .header("x-peak-in-flight")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        assert!(
            in_flight <= 4,
            "more than max_concurrent at once: {in_flight}"
        );
        peak = peak.max(in_flight);
    }
    // Some requests waited together in one instance.
    assert!(
        peak >= 2,
        "no instance had two requests at once (peak {peak})"
    );
}

#[test]
fn a_failed_instance_is_retired_and_never_serves_again() {
    let server = Server::start(APP, &[]);
    for (failing, status, cause) in [
        ("/serial/trap", 500, "trap"),
        ("/serial/sleep?ms=5000", 504, "timeout"),
        ("/serial/hog", 500, "memory_limit"),
        ("/p2/trap", 500, "trap"),
    ] {
        let route = if failing.starts_with("/p2") {
            "/p2"
        } else {
            "/serial"
        };
        // Warm an instance up, then make it fail.
        assert_eq!(counter(&server, route), "1", "before {failing}");
        assert_eq!(counter_when_idle(&server, route), "2", "before {failing}");
        let reply = get(&server.url(failing));
        assert_eq!(reply.status, status, "{failing}: {}", reply.text());
        // The next request gets a new instance: its counter starts again.
        assert_eq!(counter(&server, route), "1", "after {failing}");
        let function = &route[1..];
        let retired = wait_for_metric(
            &server,
            &format!("wedge_instances_retired_total{{function=\"{function}\",cause=\"{cause}\"}}"),
        );
        assert!(
            retired.is_some_and(|n| n >= 1),
            "{failing}: no `{cause}` retirement"
        );
        // Reset the counter's instance so the next case starts from a fresh one.
        let reply = get(&server.url(&format!("{route}/trap")));
        assert_eq!(reply.status, 500);
        // Other functions were unaffected.
        assert_eq!(counter(&server, "/fresh"), "1");
    }
    let log = server.wait_for_log("the instance was retired after");
    assert!(log.contains("the instance was retired after"), "{log}");
}

#[test]
fn an_idle_instance_is_dropped_after_its_idle_timeout() {
    let server = Server::start(APP, &[]);
    assert_eq!(counter(&server, "/idle"), "1");
    assert_eq!(counter_when_idle(&server, "/idle"), "2");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(counter(&server, "/idle"), "1");
    assert_eq!(
        wait_for_metric(
            &server,
            "wedge_instances_retired_total{function=\"idle\",cause=\"idle\"}"
        ),
        Some(1)
    );
}

#[test]
fn concurrent_reuse_of_a_0_2_handler_is_refused_saying_why() {
    let manifest = "[[function]]\nname = \"f\"\nsource = \"{guests}/http-probe.wasm\"\nroute = \"/f\"\nreuse = { max_concurrent = 4 }\n";
    let error = Server::try_start(manifest, &[]).err().expect("refused");
    assert_eq!(error.0, Some(status::CONFIG), "{}", error.1);
    assert!(
        error.1.contains("one request at a time") && error.1.contains("WASI 0.3"),
        "{}",
        error.1
    );
    let wagi = "[[function]]\nname = \"w\"\nsource = \"{guests}/wagi-hello.wasm\"\nroute = \"/w\"\nreuse = { max_requests = 2 }\n";
    let error = Server::try_start(wagi, &[]).err().expect("refused");
    assert_eq!(error.0, Some(status::CONFIG), "{}", error.1);
    assert!(
        error.1.contains("`reuse` is for `http` functions"),
        "{}",
        error.1
    );
    let bad = "[[function]]\nname = \"b\"\nsource = \"{guests}/http-p3.wasm\"\nroute = \"/b\"\nreuse = { max_requests = 0 }\n";
    let error = Server::try_start(bad, &[]).err().expect("refused");
    assert_eq!(error.0, Some(status::CONFIG), "{}", error.1);
    assert!(error.1.contains("key `reuse`"), "{}", error.1);
}

struct Node {
    server: Server,
    token: String,
}

impl Node {
    fn start(data: &Path) -> Node {
        let server = Server::start(
            "[[function]]\nname = \"app\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/app\"\n",
            &["--data", data.to_str().unwrap()],
        );
        let token = std::fs::read_to_string(data.join("api-token"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Node { server, token }
    }

    fn deploy(&self, name: &str, config: &str, wasm: &[u8]) -> Reply {
        let (content_type, body) = multipart(config, wasm);
        let auth = format!("Bearer {}", self.token);
        send(
            "PUT",
            &self.server.url(&format!("/_wedge/api/v1/functions/{name}")),
            &[
                ("authorization", auth.as_str()),
                ("content-type", content_type.as_str()),
            ],
            &body,
        )
    }
}

#[test]
fn a_redeploy_under_load_with_reuse_fails_nothing_and_serves_only_the_new_version_after() {
    let data = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::start(data.path()));
    let probe = std::fs::read(guest("http-probe.wasm")).unwrap();
    let config = |v: &str| {
        format!(
            r#"{{"env": {{"V": "{v}"}}, "reuse": {{"max_requests": 1000, "idle_timeout": "30s"}}}}"#
        )
    };
    let reply = node.deploy("live", &config("1"), &probe);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let p3 = std::fs::read(guest("http-p3.wasm")).unwrap();
    let reply = node.deploy(
        "live3",
        r#"{"reuse": {"max_requests": 1000, "max_concurrent": 8}}"#,
        &p3,
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (node, stop, failed, served) =
                (node.clone(), stop.clone(), failed.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = get_with(&node.server.url("/live/env?name=V"), &[]);
                    let other = get(&node.server.url("/live3/hello"));
                    if reply.status != 200 || other.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let reply = node.deploy("live", &config("2"), &probe);
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Once the deploy is answered, every new request is served by version 2.
    for _ in 0..30 {
        assert_eq!(get(&node.server.url("/live/env?name=V")).text(), "2");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during the redeploy"
    );
}
