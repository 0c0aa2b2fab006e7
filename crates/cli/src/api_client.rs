//! The deploy API's client side, shared by `wedge deploy`, `wedge functions` and
//! `wedge logs`: where the server is, the token, and turning the server's JSON errors into
//! the message a user reads (never a bare status).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use crate::exit::{Failure, Status};

/// How to reach the server: shared flags of every API command.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The wedge server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "WEDGE_SERVER",
        default_value = DEFAULT_SERVER
    )]
    server: String,
    /// The deploy API's bearer token [default: the token file of the default data dir,
    /// when the server runs on this machine with its defaults].
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "WEDGE_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// Read the token from this file (as `wedge serve --token-file` takes it); --token and
    /// WEDGE_TOKEN win over it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

impl ServerArgs {
    /// These flags, completed by `outer`'s: `wedge functions --server X show NAME` and
    /// `wedge functions show NAME --server X` mean the same.
    pub fn or(self, outer: ServerArgs) -> ServerArgs {
        ServerArgs {
            server: if self.server == DEFAULT_SERVER {
                outer.server
            } else {
                self.server
            },
            api_token: self.api_token.or(outer.api_token),
            token_file: self.token_file.or(outer.token_file),
        }
    }
}

pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// An API answer: status and JSON (or text) body.
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Self, Failure> {
        let base = args.server.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(Failure::new(
                Status::Usage,
                anyhow!(
                    "--server {base}: this wedge speaks plain HTTP to its API; use an http:// URL (across machines, through an SSH tunnel or a TLS-terminating proxy)"
                ),
            ));
        }
        if !base.starts_with("http://") {
            return Err(Failure::new(
                Status::Usage,
                anyhow!("--server {base}: give the server's URL, e.g. http://127.0.0.1:3000"),
            ));
        }
        let token = resolve_token(args)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Self { base, token, agent })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/_wedge/api/v1{path}", self.base)
    }

    fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn get(&self, path: &str) -> Result<Answer, Failure> {
        let response = self
            .agent
            .get(self.url(path))
            .header("authorization", self.authorization())
            .call();
        self.answer(response)
    }

    pub fn delete(&self, path: &str) -> Result<Answer, Failure> {
        let response = self
            .agent
            .delete(self.url(path))
            .header("authorization", self.authorization())
            .call();
        self.answer(response)
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, Failure> {
        let url = self.url(path);
        let request = match method {
            "PUT" => self.agent.put(url),
            _ => self.agent.post(url),
        };
        let response = request
            .header("authorization", self.authorization())
            .header("content-type", content_type)
            .send(body);
        self.answer(response)
    }

    /// Streams a text body (a followed log) to `out` as it arrives.
    pub fn stream(&self, path: &str, out: &mut dyn std::io::Write) -> Result<(), Failure> {
        let response = self
            .agent
            .get(self.url(path))
            .header("authorization", self.authorization())
            .call();
        let mut response = response.map_err(|error| self.unreachable(error))?;
        if response.status().as_u16() >= 400 {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(refused(status, &parse_json(&text)));
        }
        let mut reader = response.body_mut().as_reader();
        let mut buffer = [0u8; 8192];
        loop {
            let read = std::io::Read::read(&mut reader, &mut buffer).map_err(|error| {
                Failure::new(
                    Status::ServerUnreachable,
                    anyhow!("the connection to {} broke: {error}", self.base),
                )
            })?;
            if read == 0 {
                return Ok(());
            }
            out.write_all(&buffer[..read])
                .and_then(|()| out.flush())
                .map_err(|error| {
                    Failure::new(Status::Internal, anyhow!("cannot write: {error}"))
                })?;
        }
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, Failure> {
        let mut response = response.map_err(|error| self.unreachable(error))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|error| self.unreachable(error))?;
        let json = parse_json(&text);
        if status >= 400 {
            return Err(refused(status, &json));
        }
        Ok(Answer { status, json })
    }

    fn unreachable(&self, error: ureq::Error) -> Failure {
        Failure::new(
            Status::ServerUnreachable,
            anyhow!(
                "cannot reach the wedge server at {}: {error}; is `wedge serve` running there? (--server URL or WEDGE_SERVER)",
                self.base
            ),
        )
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.trim().to_string()))
}

/// The server's own words: `detail` of a JSON error, or whatever text it sent.
fn refused(status: u16, body: &Value) -> Failure {
    let detail = match body {
        Value::Object(fields) => fields
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("no detail given")
            .to_string(),
        Value::String(text) if !text.is_empty() => text.clone(),
        _ => "no detail given".into(),
    };
    let code = body.get("error").and_then(Value::as_str).unwrap_or("");
    let label = if code.is_empty() {
        format!("{status}")
    } else {
        format!("{status} {code}")
    };
    Failure::new(
        Status::ApiRefused,
        anyhow!("the server refused ({label}): {detail}"),
    )
}

fn resolve_token(args: &ServerArgs) -> Result<String, Failure> {
    if let Some(token) = &args.api_token {
        return Ok(token.trim().to_string());
    }
    let from_file = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .map_err(|error| {
                Failure::new(
                    Status::NoInput,
                    anyhow!("cannot read the token file `{}`: {error}", path.display()),
                )
            })
    };
    if let Some(path) = &args.token_file {
        return from_file(path);
    }
    let default = wedge_control::store::default_data_dir()
        .map(|dir| dir.join(wedge_control::token::TOKEN_FILE));
    match default {
        Some(path) if path.exists() => from_file(&path),
        _ => Err(Failure::new(
            Status::Usage,
            anyhow!(
                "no API token: pass --token TOKEN or --token-file FILE, or set WEDGE_TOKEN (wedge serve prints where its token file is)"
            ),
        )),
    }
}

/// A `multipart/form-data` body with a JSON `config` part and a `wasm` part, and its content
/// type. The boundary is chosen so that it does not occur in the Wasm bytes.
pub fn deploy_body(config: &Value, wasm: &[u8]) -> (String, Vec<u8>) {
    let config = config.to_string();
    let mut attempt = 0u32;
    let boundary = loop {
        let candidate = format!("wedge-{attempt:08x}-{}", &blake3::hash(wasm).to_hex()[..16]);
        let marker = format!("--{candidate}");
        if !contains(wasm, marker.as_bytes()) && !config.contains(&marker) {
            break candidate;
        }
        attempt += 1;
    };
    let mut body = Vec::with_capacity(wasm.len() + config.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\nContent-Type: application/json\r\n\r\n{config}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"function.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
