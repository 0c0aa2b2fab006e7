//! A real `wedge serve` process for end-to-end tests: started on a free loopback port with
//! a manifest written for the test, stopped (and reaped) when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::root;

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
    pub stdout_lines: Vec<String>,
}

/// Compiled functions are cached across tests (and runs) here.
fn shared_cache() -> PathBuf {
    root().join("target/e2e-cache")
}

impl Server {
    /// Starts `wedge serve` on `manifest` (guest paths in it may use `{guests}` and
    /// `{fixtures}`), with extra flags. Panics with wedge's stderr if it does not come up.
    pub fn start(manifest: &str, flags: &[&str]) -> Server {
        match Self::try_start(manifest, flags) {
            Ok(server) => server,
            Err((code, stderr)) => panic!("wedge serve did not start (status {code:?}):\n{stderr}"),
        }
    }

    /// Like `start`, with extra environment variables for wedge.
    pub fn start_with_env(manifest: &str, flags: &[&str], env: &[(&str, &str)]) -> Server {
        match Self::try_start_with_env(manifest, flags, env) {
            Ok(server) => server,
            Err((code, stderr)) => panic!("wedge serve did not start (status {code:?}):\n{stderr}"),
        }
    }

    /// Like `start`, but returns the exit status and stderr when wedge exits instead.
    pub fn try_start(manifest: &str, flags: &[&str]) -> Result<Server, (Option<i32>, String)> {
        Self::try_start_with_env(manifest, flags, &[])
    }

    pub fn try_start_with_env(
        manifest: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (Option<i32>, String)> {
        Self::try_start_wrapped(manifest, flags, env, &[])
    }

    /// Like `try_start_with_env`, with wedge started by `wrapper` (a program and its
    /// arguments, e.g. `prlimit --nofile=256:`), which is handed wedge's command line.
    pub fn try_start_wrapped(
        manifest: &str,
        flags: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Server, (Option<i32>, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = manifest
            .replace("{guests}", &super::guest_dir().display().to_string())
            .replace(
                "{fixtures}",
                &root().join("tests/fixtures").display().to_string(),
            );
        let manifest_path = dir.path().join("wedge.toml");
        std::fs::write(&manifest_path, manifest).expect("write manifest");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let wedge = env!("CARGO_BIN_EXE_wedge");
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(wedge);
                command
            }
            None => Command::new(wedge),
        };
        let mut child = command
            .arg("serve")
            .arg("--app")
            .arg(&manifest_path)
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .env("XDG_CACHE_HOME", shared_cache())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start wedge serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut stdout_lines = Vec::new();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    stdout_lines.push(line.clone());
                    if let Some(rest) = line.strip_prefix("wedge: serving ") {
                        let url = rest.rsplit(" on ").next().unwrap_or_default().to_string();
                        break url;
                    }
                }
                _ => {
                    let status = child.wait().ok().and_then(|s| s.code());
                    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    return Err((status, stderr));
                }
            }
        };
        // The route lines follow the first line; read until the last line (the API token).
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let done = line.trim_start().starts_with("API token:");
            stdout_lines.push(line);
            if done {
                break;
            }
        }
        // Keep draining stdout so wedge never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child: Some(child),
            base,
            dir,
            stderr_path,
            stdout_lines,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// wedge's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`. (`wedge serve` writes its log from a
    /// thread of its own, a few milliseconds after the fact: a response can arrive before its
    /// log line.)
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_line(|line| line.contains(needle))
    }

    /// Waits (bounded) until a line of the log satisfies `wanted`; returns the whole log.
    pub fn wait_for_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let log = self.stderr();
            if log.lines().any(&wanted) || started.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<i32> {
        let child = self.child.as_ref()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        self.wait_exit()
    }

    /// Waits (bounded) for wedge to exit, and returns its status (None if killed by a signal
    /// or still running after 30 s, when it is killed).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL, as a crash would: no shutdown, no flushing. Waits for the process to go.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client that returns every status as a response (not an error).
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response read whole: status, headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("request");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .expect("read body");
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Reply {
    reply(client().get(url).call())
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.call())
}

pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let agent = client();
    if method == "DELETE" {
        let mut request = agent.delete(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        return reply(request.call());
    }
    let mut request = match method {
        "POST" => agent.post(url),
        "PUT" => agent.put(url),
        "PATCH" => agent.patch(url),
        other => panic!("unsupported method {other}"),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send(body))
}

/// A deploy's multipart body (`config` JSON part + `wasm` part, as `curl -F` sends it) and its
/// content type. Built by hand, as any HTTP client would, independent of wedge's own client.
pub fn multipart(config: &str, wasm: &[u8]) -> (String, Vec<u8>) {
    let boundary = "test-boundary-7d1e";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\nContent-Type: application/json\r\n\r\n{config}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"f.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A call of the deploy API (`/_wedge/api/v1{path}`) with the server's bearer token.
pub fn api(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let auth = format!("Bearer {token}");
    let url = server.url(&format!("/_wedge/api/v1{path}"));
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", content_type),
    ];
    match method {
        "GET" => get_with(&url, &headers[..1]),
        _ => send(method, &url, &headers, body),
    }
}

/// `PUT /functions/{name}` with `config` (JSON) and the Wasm, as `curl -F` sends them.
pub fn deploy(server: &Server, token: &str, name: &str, config: &str, wasm: &[u8]) -> Reply {
    let (content_type, body) = multipart(config, wasm);
    api(
        server,
        token,
        "PUT",
        &format!("/functions/{name}"),
        &content_type,
        &body,
    )
}
