//! Queue triggers end to end: the real binary, the embedded SQLite queues, real guests
//! (examples/rust/queue-demo records every delivery in key-value; examples/c/triple.c is the
//! sensor demo's stream function).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::server::{Reply, Server, get, get_with, multipart, send};
use support::{guest, status};

/// A consumer that records each message `{"n": I}` in key-value, failing the first `fail`
/// deliveries of a message and refusing `reject` ones.
fn consumer(name: &str, extra: &str) -> String {
    format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{{guests}}/queue-demo.wasm\"\nroute = \"/{name}\"\nkey_value_stores = [\"default\"]\ntrigger = [{{ type = \"queue\", queue = \"jobs\", retry_delay = \"50ms\", max_retry_delay = \"200ms\"{extra} }}]\n"
    )
}

const SENSOR_DEMO: &str = r#"
[[function]]
name = "sensor"
source = "{guests}/queue-demo.wasm"
route = "/sensor"
queues = ["noise"]

[[function]]
name = "triple"
source = "{guests}/triple.wasm"
trigger = [{ type = "queue", queue = "noise", invoke = "triple", args = ["/noise"], output = "noise-tripled", batch_size = 20 }]

[[function]]
name = "sink"
source = "{guests}/queue-demo.wasm"
route = "/sink"
key_value_stores = ["default"]
trigger = [{ type = "queue", queue = "noise-tripled", batch_size = 20 }]
"#;

struct Node {
    server: Server,
    token: String,
}

impl Node {
    fn start(data: &Path, manifest: &str) -> Node {
        let server = Server::start(manifest, &["--data", data.to_str().unwrap()]);
        let token = std::fs::read_to_string(data.join("api-token"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Node { server, token }
    }

    fn api(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let url = self.server.url(&format!("/_wedge/api/v1{path}"));
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        match method {
            "GET" => get_with(&url, &headers[..1]),
            _ => send(method, &url, &headers, body),
        }
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let reply = self.api(method, path, "application/json", body.as_bytes());
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, value)
    }

    /// Sends `count` messages `{"n": first..}` with `extra` keys, in batches.
    fn send_jobs(&self, path: &str, first: u64, count: u64, extra: impl Fn(u64) -> String) {
        let mut n = first;
        while n < first + count {
            let end = (n + 200).min(first + count);
            let batch: Vec<String> = (n..end)
                .map(|i| format!("{{\"n\": {i}{}}}", extra(i)))
                .collect();
            let (status, value) = self.json("POST", path, &format!("[{}]", batch.join(",")));
            assert_eq!(status, 201, "{value}");
            n = end;
        }
    }

    fn text(&self, path: &str) -> String {
        get(&self.server.url(path)).text()
    }

    /// Waits (bounded) until the consumer's record says `want`.
    fn wait_for(&self, path: &str, want: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let now = self.text(path);
            if now.trim() == want || started.elapsed() > within {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stats(&self, queue: &str) -> Value {
        let (status, value) = self.json("GET", &format!("/queues/{queue}"), "");
        assert_eq!(status, 200, "{value}");
        value
    }
}

#[test]
fn a_thousand_messages_with_injected_failures_each_succeed_exactly_once() {
    guest("queue-demo.wasm");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(
        data.path(),
        &consumer("worker", ", concurrency = 8, max_retries = 5"),
    );
    // Every seventh message fails its first two deliveries, every eleventh its first.
    node.send_jobs("/queues/jobs/batch", 0, 1000, |i| {
        let fail = if i % 7 == 0 {
            2
        } else if i % 11 == 0 {
            1
        } else {
            0
        };
        format!(", \"fail\": {fail}")
    });
    let done = node.wait_for("/worker/done", "keys=1000 max=1", Duration::from_secs(120));
    assert_eq!(done.trim(), "keys=1000 max=1", "{}", node.server.stderr());
    assert_eq!(node.text("/worker/count?key=attempts:14"), "3");
    assert_eq!(node.text("/worker/count?key=attempts:22"), "2");
    assert_eq!(node.text("/worker/count?key=attempts:1"), "1");
    let stats = node.stats("jobs");
    assert_eq!(
        (stats["depth"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(0), Some(0))
    );
    let metrics = node.text("/_wedge/metrics");
    assert!(
        metrics.contains(
            "wedge_queue_acks_total{function=\"worker\",trigger=\"1\",queue=\"jobs\"} 1000"
        ),
        "{metrics}"
    );
}

#[test]
fn retries_run_out_into_the_dead_letter_list_which_replays() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &consumer("worker", ", max_retries = 1"));
    // n=1 fails three times: two deliveries (the first and one retry), then dead.
    // n=2 is refused with 400: dead at once, without retries.
    node.send_jobs("/queues/jobs/batch", 1, 1, |_| ", \"fail\": 3".into());
    node.send_jobs("/queues/jobs/batch", 2, 1, |_| ", \"reject\": true".into());
    node.send_jobs("/queues/jobs/batch", 3, 1, |_| String::new());
    node.wait_for("/worker/done", "keys=1 max=1", Duration::from_secs(20));
    let started = Instant::now();
    let dead = loop {
        let (_, value) = node.json("GET", "/queues/jobs/dlq", "");
        let dead = value["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if dead.len() == 2 || started.elapsed() > Duration::from_secs(20) {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reason = |n: &str| {
        dead.iter()
            .find(|d| d["body"].as_str().unwrap_or_default().contains(n))
            .map(|d| {
                (
                    d["reason"].as_str().unwrap_or_default().to_string(),
                    d["attempts"].as_u64(),
                )
            })
            .unwrap()
    };
    let (first, attempts) = reason("\"n\":1");
    assert!(
        first.contains("gave up after 2 attempts") && first.contains("500"),
        "{first}"
    );
    assert_eq!(attempts, Some(2));
    let (second, attempts) = reason("\"n\":2");
    assert!(second.contains("answered 400: rejected"), "{second}");
    assert_eq!(attempts, Some(1));
    assert_eq!(
        node.text("/worker/count?key=attempts:2"),
        "1",
        "a 4xx is not retried"
    );
    // Replayed, n=1 gets its third (failing) and fourth (good) delivery of its life.
    let (status, value) = node.json("POST", "/queues/jobs/dlq/replay", "");
    assert_eq!((status, value["replayed"].as_u64()), (200, Some(2)));
    let done = node.wait_for("/worker/count?key=done:1", "1", Duration::from_secs(20));
    assert_eq!(done, "1");
    assert_eq!(node.text("/worker/count?key=attempts:1"), "4");
}

#[test]
fn a_redeploy_while_consuming_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &consumer("app-side", ""));
    let wasm = std::fs::read(guest("queue-demo.wasm")).unwrap();
    let config = r#"{"route": "/deployed", "key_value_stores": ["default"], "trigger": [{"type": "queue", "queue": "work", "concurrency": 2, "batch_size": 5}]}"#;
    let reply = node.api(
        "PUT",
        "/functions/deployed",
        &multipart(config, &wasm).0,
        &multipart(config, &wasm).1,
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    // A deployed function's queue is its own: addressed with ?function=.
    node.send_jobs("/queues/work/batch?function=deployed", 0, 300, |_| {
        String::new()
    });
    std::thread::sleep(Duration::from_millis(200));
    let reply = node.api(
        "PUT",
        "/functions/deployed",
        &multipart(config, &wasm).0,
        &multipart(config, &wasm).1,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    node.send_jobs("/queues/work/batch?function=deployed", 300, 100, |_| {
        String::new()
    });
    let done = node.wait_for("/deployed/done", "keys=400 max=1", Duration::from_secs(60));
    assert_eq!(done.trim(), "keys=400 max=1");
    // The app's queue of the same name is another queue.
    assert_eq!(node.stats("jobs")["depth"].as_u64(), Some(0));
    assert_eq!(node.text("/app-side/done").trim(), "keys=0 max=0");
}

#[test]
fn kill_9_in_the_middle_loses_nothing_acknowledged_and_repeats_at_most_a_batch() {
    let data = tempfile::tempdir().unwrap();
    let manifest = consumer("worker", ", batch_size = 10, concurrency = 2");
    let mut node = Node::start(data.path(), &manifest);
    node.send_jobs("/queues/jobs/batch", 0, 400, |_| String::new());
    // Let it get going, then crash it.
    let started = Instant::now();
    while !node.text("/worker/done").starts_with("keys=")
        || node.text("/worker/done").trim() == "keys=0 max=0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing was consumed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node.server.kill_hard();
    let node = Node::start(data.path(), &manifest);
    let started = Instant::now();
    let done = loop {
        let done = node.text("/worker/done");
        if done.starts_with("keys=400") || started.elapsed() > Duration::from_secs(90) {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(done.starts_with("keys=400 "), "{done}");
    // A message is done twice only if it was in flight when the server died.
    let mut repeated = 0;
    for n in 0..400 {
        let times: u64 = node
            .text(&format!("/worker/count?key=done:{n}"))
            .parse()
            .unwrap();
        assert!(times >= 1, "message {n} was lost");
        repeated += times - 1;
    }
    assert!(
        repeated <= 10,
        "{repeated} repeated deliveries (the lease batch is 10)"
    );
}

#[test]
fn the_sensor_pipeline_runs_each_reading_through_triple_exactly_once() {
    guest("triple.wasm");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), SENSOR_DEMO);
    let reply = send(
        "POST",
        &node.server.url("/sensor/produce?queue=noise&count=200"),
        &[],
        b"",
    );
    assert_eq!(reply.text(), "sent 200");
    let sunk = node.wait_for("/sink/count?key=sunk", "200", Duration::from_secs(60));
    assert_eq!(sunk, "200");
    // Nothing left anywhere: every reading was acknowledged together with its result.
    for queue in ["noise", "noise-tripled"] {
        let stats = node.stats(queue);
        assert_eq!(stats["depth"].as_u64(), Some(0), "{queue}: {stats}");
        assert_eq!(stats["dead_letters"].as_u64(), Some(0), "{queue}: {stats}");
    }
    // A message the export cannot take is dead-lettered with the reason.
    let (status, _) = node.json("POST", "/queues/noise/messages", r#"{"reading": 1}"#);
    assert_eq!(status, 201);
    let started = Instant::now();
    let reason = loop {
        let (_, value) = node.json("GET", "/queues/noise/dlq", "");
        if let Some(reason) = value["dead_letters"][0]["reason"].as_str() {
            break reason.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never dead-lettered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        reason.contains("no number, boolean or string at `/noise`"),
        "{reason}"
    );
}

#[test]
fn bad_queue_triggers_are_refused_at_deploy_and_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &consumer("worker", ""));
    let wasm = std::fs::read(guest("queue-demo.wasm")).unwrap();
    for (config, says) in [
        (r#"{"trigger": [{"type": "queue"}]}"#, "key `queue`"),
        (
            r#"{"trigger": [{"type": "queue", "queue": "q", "batch_size": 1000}]}"#,
            "key `batch_size`",
        ),
        (
            r#"{"trigger": [{"type": "qeueu", "queue": "q"}]}"#,
            "not a trigger type",
        ),
        (
            r#"{"trigger": [{"type": "queue", "queue": "q", "invoke": "triple"}]}"#,
            "reactor",
        ),
    ] {
        let (content_type, body) = multipart(config, &wasm);
        let reply = node.api("PUT", "/functions/bad", &content_type, &body);
        assert_eq!(reply.status, 400, "{config}: {}", reply.text());
        assert!(reply.text().contains(says), "{config}: {}", reply.text());
        assert!(reply.text().contains("trigger 0"), "{}", reply.text());
    }
    let (status, value) = node.json("GET", "/functions/bad", "");
    assert_eq!(status, 404, "nothing stored: {value}");
    drop(node);

    // The same in a manifest stops start-up with the manifest's status.
    let triple_without_invoke = "[[function]]\nname = \"t\"\nsource = \"{guests}/triple.wasm\"\ntrigger = [{ type = \"queue\", queue = \"noise\" }]\n";
    let error = Server::try_start(triple_without_invoke, &[])
        .err()
        .expect("refused");
    assert_eq!(error.0, Some(status::CONFIG), "{}", error.1);
    assert!(
        error.1.contains("function `t`") && error.1.contains("invoke"),
        "{}",
        error.1
    );
    let neither = "[[function]]\nname = \"t\"\nsource = \"{guests}/http-hello.wasm\"\n";
    let error = Server::try_start(neither, &[]).err().expect("refused");
    assert_eq!(error.0, Some(status::CONFIG), "{}", error.1);
    assert!(
        error.1.contains("neither `route` nor `trigger`"),
        "{}",
        error.1
    );
}

#[test]
fn the_queue_api_refuses_what_it_cannot_take() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &consumer("worker", ""));
    let (status, value) = node.json("POST", "/queues/Bad/messages", "x");
    assert_eq!(status, 400, "{value}");
    assert!(
        value["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid queue name")
    );
    let (status, value) = node.json("GET", "/queues/jobs?function=nobody", "");
    assert_eq!(status, 404, "{value}");
    let (status, value) = node.json("POST", "/queues/jobs/batch", "{\"not\": \"a list\"}");
    assert_eq!(status, 400, "{value}");
    let (status, value) = node.json("POST", "/queues/jobs/batch", "[]");
    assert_eq!(status, 400, "{value}");
    let big = vec![b'x'; 300 << 10];
    let reply = node.api("POST", "/queues/jobs/messages", "text/plain", &big);
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(
        reply.text().contains("max_message_size"),
        "{}",
        reply.text()
    );
    let reply = node.api("DELETE", "/queues/jobs", "", b"");
    assert_eq!(reply.status, 405, "{}", reply.text());
    // Listing names the queue the trigger consumes.
    let (status, value) = node.json("GET", "/queues", "");
    assert_eq!(status, 200);
    assert!(
        value["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "jobs"),
        "{value}"
    );
}
