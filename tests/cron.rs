//! The cron trigger end to end: the real `wedge serve`, real guests built from examples/,
//! firings counted by the guest itself in key-value (instances are fresh, so only a store
//! remembers), the deploy API, restarts on one data dir, and the log.
//!
//! Schedules here fire every second or two, so each test takes a few seconds of wall time;
//! counts allow one firing either way (a window of N seconds holds N ± 1 second boundaries).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::server::{Reply, Server, get, multipart};
use support::{guest, status};

/// An http-state function counting its firings in key `ticks` of store `default`, readable
/// on its route `/state`.
fn counter_manifest(name: &str, cron: &str) -> String {
    format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{{guests}}/http-state.wasm\"\nroute = \"/state\"\nkey_value_stores = [\"default\"]\ntrigger = [{cron}]\n"
    )
}

const INCREMENT: &str = "/state/kv-incr?store=default&key=ticks";

fn ticks(server: &Server) -> u64 {
    let reply = get(&server.url("/state/kv-get?store=default&key=ticks"));
    match reply.status {
        404 => 0,
        200 => reply.text().trim().parse().expect("a count"),
        other => panic!("reading the count: {other} {}", reply.text()),
    }
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The value of one sample of `/_wedge/metrics`, 0 if absent.
fn metric(server: &Server, sample: &str) -> f64 {
    let text = get(&server.url("/_wedge/metrics")).text();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
        .unwrap_or(0.0)
}

/// The cron firing lines of the log for `function`.
fn firing_lines(log: &str, function: &str) -> Vec<String> {
    let needle = format!("function={function} ");
    log.lines()
        .filter(|line| line.contains("wedge::trigger: cron firing") && line.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// The `scheduled_time` of a log line, as Unix seconds.
fn scheduled_second(line: &str) -> i64 {
    let value = line
        .split("scheduled_time=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a scheduled_time");
    value
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339")
        .as_second()
}

struct Node {
    server: Server,
    token: String,
}

impl Node {
    fn start(data: &Path, manifest: &str) -> Node {
        let server = Server::start(manifest, &["--data", data.to_str().unwrap()]);
        let token = std::fs::read_to_string(data.join("api-token"))
            .expect("token")
            .trim()
            .to_string();
        Node { server, token }
    }

    fn api(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        support::server::api(&self.server, &self.token, method, path, content_type, body)
    }

    fn deploy(&self, name: &str, config: &str, wasm: &[u8]) -> Reply {
        support::server::deploy(&self.server, &self.token, name, config, wasm)
    }

    /// Deploys and expects it accepted (201 for a new function, 200 for a new version).
    fn deploy_ok(&self, name: &str, config: &str, wasm: &[u8]) {
        let reply = self.deploy(name, config, wasm);
        assert!(
            reply.status == 200 || reply.status == 201,
            "deploy {name}: {} {}",
            reply.status,
            reply.text()
        );
    }
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

/// The app of a server whose cron functions are deployed over the API (`wedge serve`
/// needs a manifest with a function when it is given one).
const NO_APP: &str =
    "[[function]]\nname = \"app-hello\"\nsource = \"{guests}/http-hello.wasm\"\nroute = \"/app\"\n";

#[test]
fn a_one_second_schedule_fires_n_times_in_n_seconds() {
    let data = tempfile::tempdir().unwrap();
    let cron = format!(r#"{{ type = "cron", schedule = "* * * * * *", path = "{INCREMENT}" }}"#);
    let node = Node::start(data.path(), &counter_manifest("ticks", &cron));
    let server = &node.server;
    wait_until("the first firing", || ticks(server) >= 1);
    let before = ticks(server);
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let fired = ticks(server) - before;
    assert!(
        (2..=4).contains(&fired),
        "{fired} firings in {window:?}\n{}",
        server.stderr()
    );
    // Each firing is a log line with the function, the trigger (a `route` is trigger 0),
    // the scheduled time, the status and the duration.
    let log = server.stderr();
    let lines = firing_lines(&log, "ticks");
    let line = lines.first().expect("a firing line");
    for field in [
        "index=1",
        "scheduled_time=\"",
        "firing=\"scheduled\"",
        "status=200",
        "duration_us=",
        "request_id=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    // Scheduled times are whole, distinct, consecutive seconds.
    let times: Vec<i64> = lines.iter().map(|line| scheduled_second(line)).collect();
    assert!(times.windows(2).all(|w| w[1] == w[0] + 1), "{times:?}");
    // And the metrics say so.
    let firings = metric(
        server,
        r#"wedge_cron_firings_total{function="ticks",trigger="1"}"#,
    );
    assert!(firings >= 3.0, "firings {firings}");
    let next = metric(
        server,
        r#"wedge_cron_next_firing_timestamp_seconds{function="ticks",trigger="1"}"#,
    );
    let last = metric(
        server,
        r#"wedge_cron_last_firing_timestamp_seconds{function="ticks",trigger="1"}"#,
    );
    assert!(
        next > last && next - last <= 2.0,
        "last {last}, next {next}"
    );
}

#[test]
fn overlap_skip_skips_firings_while_a_slow_call_runs() {
    let data = tempfile::tempdir().unwrap();
    let manifest = r#"
[[function]]
name = "slow"
source = "{guests}/http-probe.wasm"
trigger = [{ type = "cron", schedule = "* * * * * *", path = "/sleep?ms=2500", overlap = "skip" }]
"#;
    let node = Node::start(data.path(), manifest);
    let server = &node.server;
    let skipped = r#"wedge_cron_skipped_total{function="slow",trigger="0"}"#;
    wait_until("two skipped firings", || metric(server, skipped) >= 2.0);
    // While the first call sleeps (2.5 s), the next two firings are skipped, not run beside it.
    let firings = metric(
        server,
        r#"wedge_cron_firings_total{function="slow",trigger="0"}"#,
    );
    let in_flight = metric(server, r#"wedge_in_flight_requests{function="slow"}"#);
    assert!(firings <= 1.0, "firings {firings}");
    assert!(in_flight <= 1.0, "in flight {in_flight}");
    let log = server.wait_for_log("firing skipped");
    assert!(
        log.contains("the previous firing of this trigger is still running"),
        "{log}"
    );
}

#[test]
fn catch_up_last_runs_a_missed_firing_once_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}{}",
        counter_manifest(
            "caught",
            &format!(
                r#"{{ type = "cron", schedule = "*/2 * * * * *", catch_up = "last", path = "{INCREMENT}" }}"#
            ),
        ),
        r#"
[[function]]
name = "dropped"
source = "{guests}/http-probe.wasm"
trigger = [{ type = "cron", schedule = "*/2 * * * * *", path = "/status?code=204" }]
"#
    );
    let mut first = Node::start(data.path(), &manifest);
    first
        .server
        .wait_for_line(|line| !firing_lines(line, "caught").is_empty());
    assert_eq!(first.server.terminate(), Some(0));
    let recorded = firing_lines(&first.server.stderr(), "caught")
        .last()
        .map(|line| scheduled_second(line))
        .expect("a firing before the stop");
    // Down over at least one scheduled time (every 2 s).
    std::thread::sleep(Duration::from_millis(2500));
    let second = Node::start(data.path(), &manifest);
    let log = second.server.wait_for_log("firing=\"catch-up\"");
    let caught: Vec<String> = firing_lines(&log, "caught")
        .into_iter()
        .filter(|line| line.contains("firing=\"catch-up\""))
        .collect();
    assert_eq!(caught.len(), 1, "{log}");
    let missed = scheduled_second(&caught[0]);
    assert!(
        missed > recorded,
        "caught up {missed}, last fired {recorded}"
    );
    assert!(missed % 2 == 0, "a scheduled time of */2: {missed}");
    // The function without catch-up runs only on its schedule.
    assert!(
        !log.lines()
            .any(|line| line.contains("function=dropped") && line.contains("catch-up")),
        "{log}"
    );
}

#[test]
fn fire_runs_a_trigger_now_over_the_api() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), NO_APP);
    let state = std::fs::read(guest("http-state.wasm")).unwrap();
    let config = format!(
        r#"{{"route": "/state", "key_value_stores": ["default"],
            "trigger": [{{"type": "cron", "schedule": "@yearly", "path": "{INCREMENT}"}}]}}"#
    );
    node.deploy_ok("job", &config, &state);
    // `functions show` lists the trigger with its table.
    let shown = json(&node.api("GET", "/functions/job", "", b""));
    assert_eq!(shown["triggers"][1]["type"], "cron");
    assert_eq!(shown["triggers"][1]["schedule"], "@yearly");
    for expected in 1..=2 {
        let reply = node.api("POST", "/functions/job/triggers/1/fire", "", b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let fired = json(&reply);
        assert_eq!(fired["status"], 200);
        assert!(
            fired["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(ticks(&node.server), expected);
    }
    let log = node.server.wait_for_log("firing=\"manual\"");
    assert!(log.contains("function=job index=1"), "{log}");
    // The route is trigger 0: not a cron trigger, it cannot be fired.
    let reply = node.api("POST", "/functions/job/triggers/0/fire", "", b"");
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("cannot be fired by hand"),
        "{}",
        reply.text()
    );
    let reply = node.api("POST", "/functions/job/triggers/7/fire", "", b"");
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = node.api("POST", "/functions/nobody/triggers/0/fire", "", b"");
    assert_eq!(reply.status, 404, "{}", reply.text());
}

/// Bad cron tables, each with the key its error must name and a phrase of the reason.
const BAD_TABLES: [(&str, &str, &str); 9] = [
    (r#"{"type": "cron"}"#, "schedule", "needs a schedule"),
    (
        r#"{"type": "cron", "schedule": 3}"#,
        "schedule",
        "must be a string",
    ),
    (
        r#"{"type": "cron", "schedule": "0 24 * * *"}"#,
        "schedule",
        "the hour field `24` (field 2 of 5)",
    ),
    (
        r#"{"type": "cron", "schedule": "0 0 31 2 *"}"#,
        "schedule",
        "never fires",
    ),
    (
        r#"{"type": "cron", "schedule": "@daily", "timezone": "Europe/Berln"}"#,
        "timezone",
        "did you mean \\\"Europe/Berlin\\\"?",
    ),
    (
        r#"{"type": "cron", "schedule": "@daily", "overlap": "parallel"}"#,
        "overlap",
        "is not an overlap policy",
    ),
    (
        r#"{"type": "cron", "schedule": "@daily", "catch_up": "all"}"#,
        "catch_up",
        "is not a catch-up policy",
    ),
    (
        r#"{"type": "cron", "schedule": "@daily", "path": "jobs"}"#,
        "path",
        "must start with `/`",
    ),
    (
        r#"{"type": "cron", "schedule": "@daily", "schedul": "@daily"}"#,
        "schedul",
        "did you mean `schedule`?",
    ),
];

#[test]
fn bad_cron_tables_are_refused_at_deploy_with_400_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), NO_APP);
    let probe = std::fs::read(guest("http-probe.wasm")).unwrap();
    for (table, key, reason) in BAD_TABLES {
        let config = format!(r#"{{"trigger": [{table}]}}"#);
        let reply = node.deploy("bad", &config, &probe);
        assert_eq!(reply.status, 400, "{table}: {}", reply.text());
        let body = json(&reply);
        assert_eq!(body["error"], "invalid_config", "{table}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("trigger 0 (type `cron`)") && detail.contains(&format!("key `{key}`")),
            "{table}: {detail}"
        );
        assert!(
            detail.contains(&reason.replace("\\\"", "\"")),
            "{table}: {detail}"
        );
    }
    // Nothing was stored.
    let list = json(&node.api("GET", "/functions", "", b""));
    let names: Vec<&str> = list["functions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["app-hello"], "{list}");
}

#[test]
fn bad_cron_tables_in_the_manifest_stop_the_server_with_exit_135() {
    for (table, key, reason) in BAD_TABLES {
        let toml_table = json_table_to_toml(table);
        let manifest = format!(
            "[[function]]\nname = \"bad\"\nsource = \"{{guests}}/http-probe.wasm\"\ntrigger = [{toml_table}]\n"
        );
        let Err((code, stderr)) = Server::try_start(&manifest, &[]) else {
            panic!("{table}: the server started");
        };
        assert_eq!(code, Some(status::CONFIG), "{table}: {stderr}");
        assert!(
            stderr.contains("function `bad`") && stderr.contains(&format!("key `{key}`")),
            "{table}: {stderr}"
        );
        assert!(
            stderr.contains(&reason.replace("\\\"", "\"")),
            "{table}: {stderr}"
        );
    }
}

/// `{"type": "cron", "schedule": 3}` as a TOML inline table.
fn json_table_to_toml(json: &str) -> String {
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).expect("JSON");
    let entries: Vec<String> = value
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

#[test]
fn a_reactor_module_is_no_cron_target() {
    // Only the binary tells a reactor apart: it is refused once loaded, before anything is
    // stored, with the key and the reason.
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), NO_APP);
    let reactor = std::fs::read(support::fixture("reactor.wat")).unwrap();
    let (content_type, body) = multipart(
        r#"{"trigger": [{"type": "cron", "schedule": "* * * * * *"}]}"#,
        &reactor,
    );
    let reply = node.api("PUT", "/functions/lib", &content_type, &body);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.text().contains("trigger 0") && reply.text().contains("reactor"),
        "{}",
        reply.text()
    );
    let reply = node.api("GET", "/functions/lib", "", b"");
    assert_eq!(reply.status, 404, "nothing stored: {}", reply.text());
}

#[test]
fn a_redeploy_while_a_schedule_runs_neither_doubles_nor_drops_a_firing() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), NO_APP);
    let state = std::fs::read(guest("http-state.wasm")).unwrap();
    let config = |env: &str, schedule: &str| {
        format!(
            r#"{{"route": "/state", "key_value_stores": ["default"], "env": {{"V": "{env}"}},
                "trigger": [{{"type": "cron", "schedule": "{schedule}", "path": "{INCREMENT}"}}]}}"#
        )
    };
    node.deploy_ok("job", &config("1", "* * * * * *"), &state);
    wait_until("the first firing", || ticks(&node.server) >= 1);
    // Redeploys every ~400 ms for 3 s: a new version with the same schedule, then a changed
    // schedule that fires at the same times (a new schedule task), then back.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(3) {
        round += 1;
        let schedule = if round % 3 == 0 {
            "*/1 * * * * *"
        } else {
            "* * * * * *"
        };
        node.deploy_ok("job", &config(&round.to_string(), schedule), &state);
        std::thread::sleep(Duration::from_millis(400));
    }
    // No firing met another one of the same trigger (which `overlap` would have skipped).
    let skipped = metric(
        &node.server,
        r#"wedge_cron_skipped_total{function="job",trigger="1"}"#,
    );
    assert_eq!(skipped, 0.0, "{}", node.server.stderr());
    // Without its trigger the schedule stops; then the log and the count are final.
    node.deploy_ok(
        "job",
        r#"{"route": "/state", "key_value_stores": ["default"]}"#,
        &state,
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = node.server.stderr();
    let times: Vec<i64> = firing_lines(&log, "job")
        .iter()
        .map(|line| scheduled_second(line))
        .collect();
    assert!(times.len() >= 4, "{times:?}\n{log}");
    // Every second fired exactly once: no double firing, no gap.
    assert!(
        times.windows(2).all(|w| w[1] == w[0] + 1),
        "scheduled times {times:?}"
    );
    // And the function counted each of them once.
    assert_eq!(ticks(&node.server), times.len() as u64, "{times:?}");
}
