//! Registry credentials and authentication challenges.
//!
//! The order, as docker and containerd do it: every request goes out anonymously first; a
//! `401` names how to authenticate in `WWW-Authenticate`:
//! - `Bearer realm=...,service=...,scope=...`: a token is asked from `realm` (with the
//!   credentials as Basic auth when there are any, anonymously otherwise) and sent as
//!   `Authorization: Bearer` from then on (Docker Hub, GHCR, Harbor, distribution with token
//!   auth);
//! - `Basic realm=...`: the credentials go on every request (distribution with htpasswd).
//!
//! Credentials come from the caller (`--registry-user` / `--registry-password-stdin`), else
//! from a docker-style `config.json` (`auths.<registry>.auth`, base64 of `user:password`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::OciError;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// A docker-style `config.json`: the `auths` it holds, and which registries it hands to
/// credential helpers (which wedge does not run; it says so when that is why it has none).
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    path: PathBuf,
    auths: BTreeMap<String, Credentials>,
    helpers: BTreeMap<String, String>,
    default_store: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The keys Docker Hub's credentials are stored under by `docker login`.
const DOCKER_HUB_KEYS: &[&str] = &[
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
];

impl DockerConfig {
    /// Reads `path`; a missing file is `None` (no credentials), a malformed one an error.
    pub fn load(path: &Path) -> Result<Option<DockerConfig>, OciError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(OciError::DockerConfigUnreadable {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::parse(path, &text).map(Some)
    }

    /// Parses a config's text (`path` is for messages).
    pub fn parse(path: &Path, text: &[u8]) -> Result<DockerConfig, OciError> {
        let invalid = |problem: String| OciError::DockerConfigInvalid {
            path: path.to_path_buf(),
            problem,
        };
        let raw: RawConfig = serde_json::from_slice(text)
            .map_err(|e| invalid(format!("it is not valid JSON: {e}")))?;
        let mut auths = BTreeMap::new();
        for (registry, entry) in raw.auths {
            let credentials = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| invalid(format!("auths.\"{registry}\".auth is not base64")))?;
                    let decoded = String::from_utf8(decoded).map_err(|_| {
                        invalid(format!("auths.\"{registry}\".auth is not UTF-8 text"))
                    })?;
                    let Some((username, password)) = decoded.split_once(':') else {
                        return Err(invalid(format!(
                            "auths.\"{registry}\".auth is not base64 of `user:password`"
                        )));
                    };
                    Credentials {
                        username: username.to_string(),
                        password: password.to_string(),
                    }
                }
                (_, Some(username), Some(password)) => Credentials { username, password },
                // An entry without credentials (docker writes `{}` when a helper has them).
                _ => continue,
            };
            auths.insert(normalise_key(&registry).to_string(), credentials);
        }
        Ok(DockerConfig {
            path: path.to_path_buf(),
            auths,
            helpers: raw
                .cred_helpers
                .into_iter()
                .map(|(registry, helper)| (normalise_key(&registry).to_string(), helper))
                .collect(),
            default_store: raw.creds_store,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry` (as written in a reference, `host[:port]`).
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        self.keys_of(registry)
            .iter()
            .find_map(|key| self.auths.get(*key))
    }

    /// The credential helper this config names for `registry`, if it has no inline
    /// credentials for it: wedge does not run helpers, so the caller can say why none were
    /// found.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.keys_of(registry)
            .iter()
            .find_map(|key| self.helpers.get(*key))
            .or(self.default_store.as_ref())
            .map(String::as_str)
    }

    fn keys_of<'a>(&self, registry: &'a str) -> Vec<&'a str> {
        if DOCKER_HUB_KEYS.contains(&registry) {
            DOCKER_HUB_KEYS.to_vec()
        } else {
            vec![registry]
        }
    }
}

/// `https://host:port/v1/` and `host:port` name the same registry in config.json.
fn normalise_key(key: &str) -> &str {
    if DOCKER_HUB_KEYS.contains(&key) {
        return DOCKER_HUB_KEYS[0];
    }
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// One authentication scheme a registry offered in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

impl Challenge {
    /// Parses one `WWW-Authenticate` value: `Scheme k="v", k2="v2"` (quoted values may hold
    /// commas: `scope="repository:a:pull,push"`). Unknown schemes are `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        } else if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else {
            None
        }
    }
}

fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_a_comma_in_the_scope() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(
            Challenge::parse("Bearer service=x"),
            None,
            "a realm is required"
        );
    }

    #[test]
    fn reads_docker_config_auths() {
        let text = br#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "https://ghcr.io": {}
            },
            "credHelpers": {"ghcr.io": "gh"}
        }"#;
        let config = DockerConfig::parse(Path::new("config.json"), text).unwrap();
        let hub = config.credentials_for("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        assert_eq!(
            config.credentials_for("127.0.0.1:5000").unwrap().username,
            "u"
        );
        assert!(config.credentials_for("ghcr.io").is_none());
        assert_eq!(config.helper_for("ghcr.io"), Some("gh"));
        assert!(!format!("{hub:?}").contains("secret"));
    }

    #[test]
    fn refuses_a_malformed_config() {
        let error =
            DockerConfig::parse(Path::new("c.json"), br#"{"auths": {"h": {"auth": "!!"}}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("is not base64"), "{error}");
    }
}
