//! A function's configuration keys, one validator each, shared by the two ways a function is
//! configured: a `[[function]]` table in the app manifest and the JSON of a deploy. Every
//! error names the key and says how to fix it (docs/manifest.md, docs/api.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wedge_capabilities::Preopen;
use wedge_capabilities::http_outbound::OutboundPolicy;
use wedge_capabilities::names::{Scope, StateName};
use wedge_capabilities::wasi::WasiConfig;
use wedge_engine::units;
use wedge_host::{FunctionKind, FunctionSpec, GrantConfig, ReusePolicy, TriggerSpec};

/// Defaults for keys a function may leave out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_MEMORY: u64 = 128 << 20;

/// The keys of a function that do not depend on where it was written down: everything but
/// its name, its binary (`source`), host directories (`files`) and `build`. A deploy's
/// config JSON is exactly this; it is stored with each version as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// Path prefix; a deploy defaults it to `/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// The key-value stores the function may open (`wasi:keyvalue`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
    /// The SQL databases the function may open (`wedge:sql`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql_databases: Vec<String>,
    /// How an `http` function's instances are reused (the default: a fresh one per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseConfig>,
    /// The queues the function may send to (`wedge:queue/producer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Other ways calls reach the function: `{ "type": "cron", ... }`, `{ "type": "queue",
    /// ... }` (docs/triggers.md). Each is checked by the trigger of its type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger: Vec<serde_json::Value>,
}

/// `reuse = { max_requests = 128, max_concurrent = 16, idle_timeout = "1s" }`: opt-in instance
/// reuse (docs/serve.md, "Instance reuse").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReuseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

/// Reuse's defaults for the keys a `reuse` table leaves out.
pub const DEFAULT_REUSE_MAX_REQUESTS: usize = 128;
pub const DEFAULT_REUSE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

impl ReuseConfig {
    fn policy(&self) -> Result<ReusePolicy, KeyError> {
        let count = |value: Option<i64>, default: usize, what: &str| match value {
            None => Ok(default),
            Some(n) if (1..=1_000_000).contains(&n) => Ok(n as usize),
            Some(n) => Err(key_error(
                "reuse",
                format!("`{what}` is {n}; it must be from 1 to 1000000"),
            )),
        };
        let idle_timeout = match &self.idle_timeout {
            None => DEFAULT_REUSE_IDLE_TIMEOUT,
            Some(text) => {
                let idle = units::parse_duration(text)
                    .map_err(|e| key_error("reuse", format!("`idle_timeout`: {e}")))?;
                if idle.is_zero() {
                    return Err(key_error(
                        "reuse",
                        "`idle_timeout` must be longer than zero (leave `reuse` out for a fresh instance per request)",
                    ));
                }
                idle
            }
        };
        Ok(ReusePolicy {
            max_requests: count(
                self.max_requests,
                DEFAULT_REUSE_MAX_REQUESTS,
                "max_requests",
            )?,
            max_concurrent: count(self.max_concurrent, 1, "max_concurrent")?,
            idle_timeout,
        })
    }
}

/// Whose data a function's stores and databases hold. The same store name in two scopes is
/// two different stores, so one tenant can never open another's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateScope {
    /// Every function of the app manifest shares the app's stores.
    App,
    /// A function deployed over the API is a tenant of its own.
    Deployed,
}

impl StateScope {
    /// The scope of function `name` (a valid function name): `app`, or `fn-NAME` (the two
    /// cannot collide).
    pub fn of(self, name: &str) -> Result<Scope, KeyError> {
        let scope = match self {
            StateScope::App => "app".to_string(),
            StateScope::Deployed => format!("fn-{name}"),
        };
        Scope::new(&scope).map_err(|error| key_error("name", error.to_string()))
    }
}

/// A key and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {problem}")]
pub struct KeyError {
    pub key: &'static str,
    pub problem: String,
}

fn key_error(key: &'static str, problem: impl Into<String>) -> KeyError {
    KeyError {
        key,
        problem: problem.into(),
    }
}

impl FunctionConfig {
    /// Validates every key into the gateway's specification of function `name`, with the
    /// read-only directories `files` (which only a manifest can grant).
    pub fn to_spec(
        &self,
        name: &str,
        files: Vec<Preopen>,
        scope: StateScope,
    ) -> Result<FunctionSpec, KeyError> {
        check_name(name)?;
        let mut triggers = parse_triggers(&self.trigger)?;
        // `route` is the HTTP trigger's shorthand; a function with other triggers and no
        // route has none, and one with neither is served on `/NAME`.
        let explicit_http = triggers
            .iter()
            .any(|trigger| matches!(trigger, TriggerSpec::Http { .. }));
        match &self.route {
            Some(route) if explicit_http => {
                return Err(key_error(
                    "route",
                    format!(
                        "`{route}` is given both as `route` and as a trigger of type \"http\"; keep one"
                    ),
                ));
            }
            Some(route) => triggers.insert(
                0,
                TriggerSpec::Http {
                    route: normalize_route(route)?,
                },
            ),
            None if triggers.is_empty() => triggers.push(TriggerSpec::Http {
                route: format!("/{name}"),
            }),
            None => {}
        }
        let kind = parse_kind(self.kind.as_deref())?;
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(key_error(
                    "env",
                    format!("`{key}` is not a valid variable name"),
                ));
            }
        }
        let outbound = OutboundPolicy::parse(&self.allowed_outbound_hosts)
            .map_err(|error| key_error("allowed_outbound_hosts", error.to_string()))?;
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => {
                let timeout =
                    units::parse_duration(text).map_err(|e| key_error("timeout", e.to_string()))?;
                if timeout.is_zero() {
                    return Err(key_error("timeout", "it must be longer than zero"));
                }
                timeout
            }
        };
        let max_memory = match &self.max_memory {
            None => DEFAULT_MAX_MEMORY,
            Some(text) => {
                let size =
                    units::parse_size(text).map_err(|e| key_error("max_memory", e.to_string()))?;
                if size < 64 << 10 {
                    return Err(key_error(
                        "max_memory",
                        format!("{text} is less than one WebAssembly page (64KiB)"),
                    ));
                }
                size
            }
        };
        let max_concurrency = match self.max_concurrency {
            None => None,
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(key_error(
                    "max_concurrency",
                    format!("{n} must be 1 or more"),
                ));
            }
        };
        let key_value_stores = state_names("key_value_stores", "store", &self.key_value_stores)?;
        let sql_databases = state_names("sql_databases", "database", &self.sql_databases)?;
        let queues = state_names("queues", "queue", &self.queues)?;
        let reuse = self.reuse.as_ref().map(ReuseConfig::policy).transpose()?;
        Ok(FunctionSpec {
            reuse,
            scope: scope.of(name)?,
            name: name.to_string(),
            kind,
            triggers,
            timeout,
            max_memory,
            max_concurrency,
            grants: GrantConfig {
                wasi: WasiConfig {
                    env: self
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    preopens: files,
                },
                http: outbound,
                key_value: key_value_stores,
                sql: sql_databases,
                queue: queues,
            },
        })
    }
}

/// The `trigger` list: tables with a `type`; an `http` one takes `route`, every other kind is
/// checked by its trigger when the function is loaded.
fn parse_triggers(entries: &[serde_json::Value]) -> Result<Vec<TriggerSpec>, KeyError> {
    let mut triggers = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Some(table) = entry.as_object() else {
            return Err(key_error(
                "trigger",
                format!(
                    "entry {index} is not a table: write e.g. {{ type = \"cron\", schedule = \"0 3 * * *\" }}"
                ),
            ));
        };
        let mut config = table.clone();
        let kind = match config.remove("type") {
            Some(serde_json::Value::String(kind)) if !kind.is_empty() => kind,
            Some(other) => {
                return Err(key_error(
                    "trigger",
                    format!(
                        "entry {index}: `type` must be a string such as \"cron\" or \"queue\", not {other}"
                    ),
                ));
            }
            None => {
                return Err(key_error(
                    "trigger",
                    format!("entry {index} has no `type`: write \"http\", \"cron\" or \"queue\""),
                ));
            }
        };
        if kind == "http" {
            let route = match config.remove("route") {
                Some(serde_json::Value::String(route)) => normalize_route(&route)?,
                _ => {
                    return Err(key_error(
                        "trigger",
                        format!("entry {index}: an http trigger needs `route = \"/path\"`"),
                    ));
                }
            };
            if let Some(key) = config.keys().next() {
                return Err(key_error(
                    "trigger",
                    format!("entry {index}: an http trigger has only `route`, not `{key}`"),
                ));
            }
            triggers.push(TriggerSpec::Http { route });
        } else {
            triggers.push(TriggerSpec::Other { kind, config });
        }
    }
    Ok(triggers)
}

/// Granted store or database names: plain (they become file names and Redis keys), each once.
fn state_names(
    key: &'static str,
    what: &'static str,
    names: &[String],
) -> Result<Vec<StateName>, KeyError> {
    let mut checked: Vec<StateName> = Vec::with_capacity(names.len());
    for name in names {
        let name = StateName::new(what, name).map_err(|error| key_error(key, error.to_string()))?;
        if checked.contains(&name) {
            return Err(key_error(key, format!("`{name}` is listed twice")));
        }
        checked.push(name);
    }
    Ok(checked)
}

/// A function name: it appears in URLs, log lines and metric labels, so it is kept plain.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if plain {
        Ok(())
    } else {
        Err(key_error(
            "name",
            format!(
                "`{name}` is not a valid name; use 1 to 63 characters of a-z, 0-9 and -, not starting with -"
            ),
        ))
    }
}

fn parse_kind(kind: Option<&str>) -> Result<Option<FunctionKind>, KeyError> {
    match kind {
        None => Ok(None),
        Some("http") => Ok(Some(FunctionKind::Http)),
        Some("wagi") => Ok(Some(FunctionKind::Wagi)),
        Some(other) => Err(key_error(
            "kind",
            format!(
                "`{other}` is not a function kind; write \"http\" or \"wagi\", or leave it out to detect it from the binary"
            ),
        )),
    }
}

/// A route without a trailing slash (except `/` itself), outside wedge's own `/_wedge`.
pub fn normalize_route(route: &str) -> Result<String, KeyError> {
    if !route.starts_with('/') {
        return Err(key_error(
            "route",
            format!("`{route}` must start with /, e.g. \"/hello\""),
        ));
    }
    if route.contains(['?', '#', ' ', '*']) {
        return Err(key_error(
            "route",
            format!("`{route}` is a path prefix and may not contain ?, #, * or spaces"),
        ));
    }
    let trimmed = if route.len() > 1 {
        route.trim_end_matches('/')
    } else {
        route
    };
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if trimmed == "/_wedge" || trimmed.starts_with("/_wedge/") {
        return Err(key_error(
            "route",
            format!("`{route}` is reserved for wedge's own endpoints (/_wedge)"),
        ));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_config_defaults_its_route_to_the_name() {
        let spec = FunctionConfig::default()
            .to_spec("hello", Vec::new(), StateScope::Deployed)
            .unwrap();
        assert_eq!(spec.route(), Some("/hello"));
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        assert_eq!(spec.max_memory, DEFAULT_MAX_MEMORY);
        assert_eq!(spec.scope.as_str(), "fn-hello");
        assert!(spec.grants.key_value.is_empty() && spec.grants.sql.is_empty());
    }

    #[test]
    fn grants_are_plain_names_each_once() {
        let config = FunctionConfig {
            key_value_stores: vec!["default".into(), "sessions".into()],
            sql_databases: vec!["orders".into()],
            ..FunctionConfig::default()
        };
        let spec = config.to_spec("a", Vec::new(), StateScope::App).unwrap();
        let names = |list: &[StateName]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&spec.grants.key_value), ["default", "sessions"]);
        assert_eq!(names(&spec.grants.sql), ["orders"]);
        assert_eq!(spec.scope.as_str(), "app");
        let twice = FunctionConfig {
            key_value_stores: vec!["a".into(), "a".into()],
            ..FunctionConfig::default()
        };
        let error = twice.to_spec("a", Vec::new(), StateScope::App).unwrap_err();
        assert_eq!(error.key, "key_value_stores");
        let bad = FunctionConfig {
            sql_databases: vec!["../x".into()],
            ..FunctionConfig::default()
        };
        let error = bad.to_spec("a", Vec::new(), StateScope::App).unwrap_err();
        assert_eq!(error.key, "sql_databases");
        assert!(error.problem.contains("../x"), "{error}");
    }

    #[test]
    fn it_round_trips_through_json_without_empty_keys() {
        let config = FunctionConfig {
            route: Some("/x".into()),
            env: [("A".to_string(), "1".to_string())].into(),
            ..FunctionConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"route":"/x","env":{"A":"1"}}"#);
        assert_eq!(
            serde_json::from_str::<FunctionConfig>(&json).unwrap(),
            config
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad = FunctionConfig {
            max_memory: Some("1KiB".into()),
            ..FunctionConfig::default()
        };
        assert_eq!(
            bad.to_spec("a", Vec::new(), StateScope::App)
                .unwrap_err()
                .key,
            "max_memory"
        );
        assert_eq!(
            FunctionConfig::default()
                .to_spec("Bad", Vec::new(), StateScope::App)
                .unwrap_err()
                .key,
            "name"
        );
    }
}
