//! The runtime config (`wedge serve --runtime-config FILE`): which backend serves each
//! key-value store and SQL database, and their limits. Documented in docs/runtime-config.md.
//!
//! Everything has an embedded default, so a single node needs no file at all: a store or
//! database name that the file does not list is a SQLite file in the data dir. The file only
//! names what moves elsewhere (a Redis server for key-value, a MySQL-compatible server for
//! SQL) or what gets other limits:
//!
//! ```toml
//! [key_value_store.sessions]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [sql_database.orders]
//! type = "mysql"
//! url = "mysql://user:password@127.0.0.1:3306/orders"
//! ```
//!
//! Unknown keys are refused, and every error names the table and key at fault, so a typo
//! stops start-up instead of silently falling back to the embedded default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
// Server backends run their calls on the backend runtime (see its module docs for why).
use wedge_capabilities::backend_runtime::{on_backend_runtime, sql_on_backend_runtime};
use wedge_capabilities::key_value::{
    KeyValueBackend, KeyValueLimits, KeyValueStores, redis::RedisKeyValue, sqlite::SqliteKeyValue,
};
use wedge_capabilities::sql::{
    SqlBackend, SqlDatabases, SqlLimits, mysql::MysqlSql, sqlite::SqliteSql,
};
use wedge_engine::units;
use wedge_gateway::StateServices;

/// Connections a server backend keeps when the file does not say.
pub const DEFAULT_POOL_SIZE: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sql_database: BTreeMap<String, RawDatabase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    pool_size: Option<i64>,
    max_key_size: Option<String>,
    max_value_size: Option<String>,
    max_keys: Option<i64>,
    timeout: Option<String>,
    max_size: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    pool_size: Option<i64>,
    max_result_size: Option<String>,
    timeout: Option<String>,
    max_size: Option<String>,
}

/// What is wrong with a runtime config; the message names the file, table and key.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("cannot read the runtime config `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the runtime config `{path}`: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// A backend choice for one name, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: a SQLite file per store or database in the data dir.
    Sqlite,
    Redis {
        url: String,
        pool_size: usize,
    },
    Mysql {
        url: String,
        pool_size: usize,
    },
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    pub limits: KeyValueLimits,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub backend: Backend,
    pub limits: SqlLimits,
}

/// The parsed runtime config. `Default` is the embedded default: everything in SQLite.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub stores: BTreeMap<String, StoreConfig>,
    pub databases: BTreeMap<String, DatabaseConfig>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| RuntimeConfigError::Read {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Self::parse(&text).map_err(|problem| RuntimeConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses and validates the text of a runtime config; the error names the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        let raw: RawRuntimeConfig =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let message = inner.message().trim_end();
                if path == "." || path.is_empty() {
                    message.to_string()
                } else {
                    format!("key `{path}`: {message}")
                }
            })?;
        let mut config = RuntimeConfig::default();
        for (name, store) in raw.key_value_store {
            let table = format!("[key_value_store.{name}]");
            check_state_name(&name).map_err(|problem| format!("{table}: {problem}"))?;
            let config_of = parse_store(store).map_err(|problem| format!("{table}: {problem}"))?;
            config.stores.insert(name, config_of);
        }
        for (name, database) in raw.sql_database {
            let table = format!("[sql_database.{name}]");
            check_state_name(&name).map_err(|problem| format!("{table}: {problem}"))?;
            let config_of =
                parse_database(database).map_err(|problem| format!("{table}: {problem}"))?;
            config.databases.insert(name, config_of);
        }
        Ok(config)
    }

    /// Builds the backends: the embedded SQLite ones under `state_dir` for every name not
    /// listed, the listed ones as configured. Server backends connect lazily, so a server that
    /// is down at start-up only fails the calls made while it is down.
    pub fn services(&self, state_dir: &Path) -> Result<StateServices, RuntimeConfigError> {
        let invalid = |problem: String| RuntimeConfigError::Invalid {
            path: PathBuf::from("(runtime config)"),
            problem,
        };
        // One embedded backend for every SQLite store (one file map, one idle budget); it
        // sizes each store's files by its `max_size`.
        let sqlite_kv = self
            .stores
            .iter()
            .filter(|(_, store)| store.backend == Backend::Sqlite)
            .fold(
                SqliteKeyValue::new(state_dir.to_path_buf()),
                |backend, (name, store)| backend.with_store_max_size(name, store.limits.max_size),
            );
        let sqlite_kv: Arc<dyn KeyValueBackend> = Arc::new(sqlite_kv);
        let mut key_value = KeyValueStores::new(sqlite_kv.clone(), KeyValueLimits::default());
        for (name, store) in &self.stores {
            let backend: Arc<dyn KeyValueBackend> = match &store.backend {
                Backend::Sqlite => sqlite_kv.clone(),
                Backend::Redis { url, pool_size } => {
                    on_backend_runtime(RedisKeyValue::new(url, *pool_size).map_err(|error| {
                        invalid(format!("[key_value_store.{name}]: key `url`: {error}"))
                    })?)
                }
                Backend::Mysql { .. } => {
                    return Err(invalid(format!(
                        "[key_value_store.{name}]: mysql is not a key-value backend"
                    )));
                }
            };
            key_value.insert(name.clone(), backend, store.limits.clone());
        }
        let sqlite_sql: Arc<dyn SqlBackend> = Arc::new(SqliteSql::new(state_dir.to_path_buf()));
        let mut sql = SqlDatabases::new(sqlite_sql.clone(), SqlLimits::default());
        for (name, database) in &self.databases {
            let backend: Arc<dyn SqlBackend> = match &database.backend {
                Backend::Sqlite => sqlite_sql.clone(),
                Backend::Mysql { url, pool_size } => {
                    sql_on_backend_runtime(MysqlSql::new(url, *pool_size).map_err(|error| {
                        invalid(format!("[sql_database.{name}]: key `url`: {error}"))
                    })?)
                }
                Backend::Redis { .. } => {
                    return Err(invalid(format!(
                        "[sql_database.{name}]: redis is not a SQL backend"
                    )));
                }
            };
            sql.insert(name.clone(), backend, database.limits.clone());
        }
        Ok(StateServices {
            key_value: Arc::new(key_value),
            sql: Arc::new(sql),
        })
    }
}

/// A store or database name, as granted in `key_value_stores` / `sql_databases` and listed in
/// the runtime config: it becomes part of a file name and of a Redis key, so it is kept plain.
pub fn check_state_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid store or database name; use 1 to 63 characters of a-z, 0-9, - and _, starting with a letter or digit"
        ))
    }
}

fn parse_store(raw: RawStore) -> Result<StoreConfig, String> {
    let defaults = KeyValueLimits::default();
    let backend = match raw.kind.as_deref() {
        None | Some("sqlite") => {
            refuse_server_keys("sqlite", raw.url.as_deref(), raw.pool_size)?;
            Backend::Sqlite
        }
        Some("redis") => {
            refuse_max_size("redis", raw.max_size.as_deref())?;
            let url = server_url(
                raw.url,
                &["redis://", "redis+unix://", "unix://"],
                "redis://127.0.0.1:6379",
            )?;
            Backend::Redis {
                url,
                pool_size: pool_size(raw.pool_size)?,
            }
        }
        Some(other) => {
            return Err(format!(
                "key `type`: `{other}` is not a key-value backend; write \"sqlite\" (the embedded default) or \"redis\""
            ));
        }
    };
    let limits = KeyValueLimits {
        max_key_size: size_key("max_key_size", raw.max_key_size, defaults.max_key_size)?,
        max_value_size: size_key(
            "max_value_size",
            raw.max_value_size,
            defaults.max_value_size,
        )?,
        max_keys: match raw.max_keys {
            None => defaults.max_keys,
            Some(n) if n >= 1 => n as u64,
            Some(n) => return Err(format!("key `max_keys`: {n} must be 1 or more")),
        },
        timeout: duration_key("timeout", raw.timeout, defaults.timeout)?,
        max_size: max_size_key(raw.max_size, defaults.max_size)?,
    };
    Ok(StoreConfig { backend, limits })
}

fn parse_database(raw: RawDatabase) -> Result<DatabaseConfig, String> {
    let defaults = SqlLimits::default();
    let backend = match raw.kind.as_deref() {
        None | Some("sqlite") => {
            refuse_server_keys("sqlite", raw.url.as_deref(), raw.pool_size)?;
            Backend::Sqlite
        }
        Some("mysql") => {
            let url = server_url(
                raw.url,
                &["mysql://"],
                "mysql://user:password@127.0.0.1:3306/orders",
            )?;
            refuse_max_size("mysql", raw.max_size.as_deref())?;
            Backend::Mysql {
                url,
                pool_size: pool_size(raw.pool_size)?,
            }
        }
        Some(other) => {
            return Err(format!(
                "key `type`: `{other}` is not a SQL backend; write \"sqlite\" (the embedded default) or \"mysql\" (MySQL, MariaDB, TiDB and other MySQL-compatible servers)"
            ));
        }
    };
    let limits = SqlLimits {
        max_result_size: size_key(
            "max_result_size",
            raw.max_result_size,
            defaults.max_result_size,
        )?,
        timeout: duration_key("timeout", raw.timeout, defaults.timeout)?,
        max_size: max_size_key(raw.max_size, defaults.max_size)?,
    };
    Ok(DatabaseConfig { backend, limits })
}

/// The smallest `max_size`: an embedded file needs a few pages for its schema.
const MIN_MAX_SIZE: u64 = 64 << 10;

fn max_size_key(value: Option<String>, default: u64) -> Result<u64, String> {
    let Some(text) = value else {
        return Ok(default);
    };
    let size = units::parse_size(&text).map_err(|e| format!("key `max_size`: {e}"))?;
    if size < MIN_MAX_SIZE {
        return Err(format!(
            "key `max_size`: {text} is too small; an embedded file needs at least {}",
            units::format_size(MIN_MAX_SIZE)
        ));
    }
    Ok(size)
}

/// `max_size` limits the embedded SQLite files only.
fn refuse_max_size(kind: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(_) => Err(format!(
            "key `max_size`: a {kind} server sizes its own data; remove the key (it limits embedded SQLite files only)"
        )),
        None => Ok(()),
    }
}

fn refuse_server_keys(kind: &str, url: Option<&str>, pool: Option<i64>) -> Result<(), String> {
    if url.is_some() {
        return Err(format!(
            "key `url`: a {kind} store is a file in the data dir and has no url; set `type` to the server's kind to use a server"
        ));
    }
    if pool.is_some() {
        return Err(format!(
            "key `pool_size`: a {kind} store has no connection pool to size"
        ));
    }
    Ok(())
}

fn server_url(url: Option<String>, schemes: &[&str], example: &str) -> Result<String, String> {
    let Some(url) = url else {
        return Err(format!(
            "key `url` is missing: write e.g. url = \"{example}\""
        ));
    };
    if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(format!(
            "key `url`: `{}` must start with {}, e.g. \"{example}\"",
            redact(&url),
            schemes.join(" or ")
        ));
    }
    Ok(url)
}

/// A URL as it may be shown in a message: without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn pool_size(value: Option<i64>) -> Result<usize, String> {
    match value {
        None => Ok(DEFAULT_POOL_SIZE),
        Some(n) if (1..=1024).contains(&n) => Ok(n as usize),
        Some(n) => Err(format!("key `pool_size`: {n} must be between 1 and 1024")),
    }
}

fn size_key(key: &str, value: Option<String>, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(text) => {
            let size = units::parse_size(&text).map_err(|e| format!("key `{key}`: {e}"))?;
            if size == 0 {
                return Err(format!("key `{key}`: it must be more than zero"));
            }
            usize::try_from(size).map_err(|_| format!("key `{key}`: {text} is too large"))
        }
    }
}

fn duration_key(key: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => {
            let duration = units::parse_duration(&text).map_err(|e| format!("key `{key}`: {e}"))?;
            if duration.is_zero() {
                return Err(format!("key `{key}`: it must be longer than zero"));
            }
            Ok(duration)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_everything_embedded() {
        let config = RuntimeConfig::parse("").unwrap();
        assert!(config.stores.is_empty() && config.databases.is_empty());
    }

    #[test]
    fn servers_and_limits_are_read() {
        let config = RuntimeConfig::parse(
            r#"
            [key_value_store.sessions]
            type = "redis"
            url = "redis://127.0.0.1:6379"
            pool_size = 4
            max_value_size = "64KiB"
            max_keys = 10
            timeout = "500ms"

            [key_value_store.default]
            max_key_size = "100B"

            [sql_database.orders]
            type = "mysql"
            url = "mysql://u:p@127.0.0.1:3306/orders"
            max_result_size = "1MiB"
            "#,
        )
        .unwrap();
        let sessions = &config.stores["sessions"];
        assert_eq!(
            sessions.backend,
            Backend::Redis {
                url: "redis://127.0.0.1:6379".into(),
                pool_size: 4
            }
        );
        assert_eq!(sessions.limits.max_value_size, 64 << 10);
        assert_eq!(sessions.limits.max_keys, 10);
        assert_eq!(sessions.limits.timeout, Duration::from_millis(500));
        assert_eq!(config.stores["default"].backend, Backend::Sqlite);
        assert_eq!(config.stores["default"].limits.max_key_size, 100);
        assert_eq!(config.databases["orders"].limits.max_result_size, 1 << 20);
        assert_eq!(config.databases["orders"].limits.max_size, 1 << 30);
        let config = RuntimeConfig::parse(
            "[sql_database.small]\nmax_size = \"64MiB\"\n[key_value_store.small]\nmax_size = \"2MiB\"\n",
        )
        .unwrap();
        assert_eq!(config.databases["small"].limits.max_size, 64 << 20);
        assert_eq!(config.stores["small"].limits.max_size, 2 << 20);
        assert_eq!(KeyValueLimits::default().max_size, 1 << 30);
    }

    fn error_of(text: &str) -> String {
        RuntimeConfig::parse(text).unwrap_err()
    }

    #[test]
    fn every_error_names_the_key() {
        let e = error_of("[key_value_store.a]\ntype = \"memcached\"\n");
        assert!(
            e.contains("[key_value_store.a]") && e.contains("key `type`"),
            "{e}"
        );
        let e = error_of("[key_value_store.a]\ntype = \"redis\"\n");
        assert!(e.contains("key `url` is missing"), "{e}");
        let e = error_of("[key_value_store.a]\ntype = \"redis\"\nurl = \"http://x\"\n");
        assert!(e.contains("key `url`") && e.contains("redis://"), "{e}");
        let e = error_of("[key_value_store.a]\nurl = \"redis://x\"\n");
        assert!(e.contains("no url"), "{e}");
        let e = error_of("[key_value_store.a]\nmax_keys = 0\n");
        assert!(e.contains("key `max_keys`"), "{e}");
        let e = error_of("[key_value_store.a]\nmax_value_size = \"lots\"\n");
        assert!(e.contains("key `max_value_size`"), "{e}");
        let e = error_of("[key_value_store.a]\ntypo = 1\n");
        assert!(e.contains("key_value_store.a") && e.contains("typo"), "{e}");
        let e = error_of("[sql_database.o]\ntype = \"postgres\"\n");
        assert!(
            e.contains("[sql_database.o]") && e.contains("key `type`"),
            "{e}"
        );
        let e = error_of("[sql_database.o]\ntype = \"mysql\"\nurl = \"x\"\npool_size = 0\n");
        assert!(e.contains("key `url`"), "{e}");
        let e =
            error_of("[sql_database.o]\ntype = \"mysql\"\nurl = \"mysql://h/d\"\npool_size = 0\n");
        assert!(e.contains("key `pool_size`"), "{e}");
        let e = error_of(
            "[sql_database.o]\ntype = \"mysql\"\nurl = \"mysql://h/d\"\nmax_size = \"1GiB\"\n",
        );
        assert!(e.contains("key `max_size`") && e.contains("server"), "{e}");
        let e = error_of("[sql_database.o]\nmax_size = \"0\"\n");
        assert!(e.contains("key `max_size`"), "{e}");
        let e = error_of("[key_value_store.a]\nmax_size = \"4KiB\"\n");
        assert!(e.contains("key `max_size`") && e.contains("64 KiB"), "{e}");
        let e = error_of(
            "[key_value_store.a]\ntype = \"redis\"\nurl = \"redis://h\"\nmax_size = \"1GiB\"\n",
        );
        assert!(e.contains("key `max_size`") && e.contains("redis"), "{e}");
        let e = error_of("[sql_database.Bad]\n");
        assert!(
            e.contains("[sql_database.Bad]") && e.contains("not a valid"),
            "{e}"
        );
        let e = error_of("[sqlite_database.o]\n");
        assert!(e.contains("sqlite_database"), "{e}");
        let e = error_of("[key_value_store.a\n");
        assert!(!e.is_empty());
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("mysql://user:secret@host:3306/db"),
            "mysql://user:***@host:3306/db"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn names_are_plain() {
        assert!(check_state_name("default").is_ok());
        assert!(check_state_name("user_sessions-2").is_ok());
        for bad in ["", "Default", "-x", "a/b", "a:b", "..", &"x".repeat(64)] {
            assert!(check_state_name(bad).is_err(), "{bad}");
        }
    }
}
