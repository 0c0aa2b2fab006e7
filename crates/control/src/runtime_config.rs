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
use wedge_capabilities::http_outbound::OutboundOffer;
use wedge_capabilities::key_value::{
    KeyValueBackend, KeyValueLimits, KeyValueStores, redis::RedisKeyValue, sqlite::SqliteKeyValue,
};
use wedge_capabilities::names::{NameError, StateName};
use wedge_capabilities::queue::{QueueBackend, QueueLimits, Queues, sqlite::SqliteQueues};
use wedge_capabilities::sql::{
    SqlBackend, SqlDatabases, SqlLimits, mysql::MysqlSql, sqlite::SqliteSql,
};
use wedge_engine::units::{self, UnitError};
use wedge_host::Services;

/// Connections a server backend keeps when the file does not say.
pub const DEFAULT_POOL_SIZE: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sql_database: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    queue: BTreeMap<String, RawQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    pool_size: Option<i64>,
    max_message_size: Option<String>,
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

/// What is wrong with a runtime config; the message (with its sources) names the file,
/// table and key.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("cannot read the runtime config `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime config `{}`", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// What is wrong with the text of a runtime config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or a key or table the file may not have (the parser's message).
    #[error("{0}")]
    Syntax(String),
    #[error("[{table}]")]
    Entry {
        /// `key_value_store.NAME` or `sql_database.NAME`.
        table: String,
        #[source]
        source: EntryError,
    },
}

/// What is wrong with one `[key_value_store.NAME]` or `[sql_database.NAME]` table.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("key `{key}`")]
    Unit {
        key: &'static str,
        #[source]
        source: UnitError,
    },
    #[error("key `{key}`: {problem}")]
    Value { key: &'static str, problem: String },
    #[error("key `{key}` is missing: {hint}")]
    Missing { key: &'static str, hint: String },
    /// A server backend refused its configuration (a URL it cannot use).
    #[error("key `url`")]
    Backend {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} is not a {capability} backend")]
    WrongCapability {
        what: &'static str,
        capability: &'static str,
    },
}

fn value(key: &'static str, problem: impl Into<String>) -> EntryError {
    EntryError::Value {
        key,
        problem: problem.into(),
    }
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

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub backend: Backend,
    pub limits: QueueLimits,
}

/// The parsed runtime config. `Default` is the embedded default: everything in SQLite.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub stores: BTreeMap<String, StoreConfig>,
    pub databases: BTreeMap<String, DatabaseConfig>,
    pub queues: BTreeMap<String, QueueConfig>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| RuntimeConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses and validates the text of a runtime config; the error names the key.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let raw: RawRuntimeConfig =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let message = inner.message().trim_end();
                ConfigError::Syntax(if path == "." || path.is_empty() {
                    message.to_string()
                } else {
                    format!("key `{path}`: {message}")
                })
            })?;
        let mut config = RuntimeConfig::default();
        for (name, store) in raw.key_value_store {
            let entry = |source| ConfigError::Entry {
                table: format!("key_value_store.{name}"),
                source,
            };
            StateName::new("store", &name).map_err(|e| entry(e.into()))?;
            let config_of = parse_store(store).map_err(entry)?;
            config.stores.insert(name, config_of);
        }
        for (name, database) in raw.sql_database {
            let entry = |source| ConfigError::Entry {
                table: format!("sql_database.{name}"),
                source,
            };
            StateName::new("database", &name).map_err(|e| entry(e.into()))?;
            let config_of = parse_database(database).map_err(entry)?;
            config.databases.insert(name, config_of);
        }
        for (name, queue) in raw.queue {
            let entry = |source| ConfigError::Entry {
                table: format!("queue.{name}"),
                source,
            };
            StateName::new("queue", &name).map_err(|e| entry(e.into()))?;
            let config_of = parse_queue(queue).map_err(entry)?;
            config.queues.insert(name, config_of);
        }
        Ok(config)
    }

    /// Builds the backends: the embedded SQLite ones under `state_dir` for every name not
    /// listed, the listed ones as configured. Server backends connect lazily, so a server that
    /// is down at start-up only fails the calls made while it is down.
    pub fn services(&self, state_dir: &Path) -> Result<Services, RuntimeConfigError> {
        let invalid = |table: String, source: EntryError| RuntimeConfigError::Invalid {
            path: PathBuf::from("(runtime config)"),
            source: ConfigError::Entry { table, source },
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
                        invalid(
                            format!("key_value_store.{name}"),
                            EntryError::Backend {
                                source: Box::new(error),
                            },
                        )
                    })?)
                }
                Backend::Mysql { .. } => {
                    return Err(invalid(
                        format!("key_value_store.{name}"),
                        EntryError::WrongCapability {
                            what: "mysql",
                            capability: "key-value",
                        },
                    ));
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
                        invalid(
                            format!("sql_database.{name}"),
                            EntryError::Backend {
                                source: Box::new(error),
                            },
                        )
                    })?)
                }
                Backend::Redis { .. } => {
                    return Err(invalid(
                        format!("sql_database.{name}"),
                        EntryError::WrongCapability {
                            what: "redis",
                            capability: "SQL",
                        },
                    ));
                }
            };
            sql.insert(name.clone(), backend, database.limits.clone());
        }
        let sqlite_queues: Arc<dyn QueueBackend> =
            Arc::new(SqliteQueues::new(state_dir.to_path_buf()));
        let mut queue = Queues::new(sqlite_queues.clone(), QueueLimits::default());
        for (name, config) in &self.queues {
            let backend: Arc<dyn QueueBackend> = match &config.backend {
                Backend::Sqlite => sqlite_queues.clone(),
                Backend::Redis { .. } | Backend::Mysql { .. } => {
                    return Err(invalid(
                        format!("queue.{name}"),
                        EntryError::WrongCapability {
                            what: "this server",
                            capability: "queue",
                        },
                    ));
                }
            };
            queue.insert(name.clone(), backend, config.limits.clone());
        }
        Ok(Services {
            wasi: (),
            http: OutboundOffer { offered: true },
            key_value: Some(Arc::new(key_value)),
            sql: Some(Arc::new(sql)),
            queue: Some(Arc::new(queue)),
        })
    }
}

fn parse_store(raw: RawStore) -> Result<StoreConfig, EntryError> {
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
            return Err(value(
                "type",
                format!(
                    "`{other}` is not a key-value backend; write \"sqlite\" (the embedded default) or \"redis\""
                ),
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
            Some(n) => return Err(value("max_keys", format!("{n} must be 1 or more"))),
        },
        timeout: duration_key("timeout", raw.timeout, defaults.timeout)?,
        max_size: max_size_key(raw.max_size, defaults.max_size)?,
    };
    Ok(StoreConfig { backend, limits })
}

fn parse_database(raw: RawDatabase) -> Result<DatabaseConfig, EntryError> {
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
            return Err(value(
                "type",
                format!(
                    "`{other}` is not a SQL backend; write \"sqlite\" (the embedded default) or \"mysql\" (MySQL, MariaDB, TiDB and other MySQL-compatible servers)"
                ),
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

fn parse_queue(raw: RawQueue) -> Result<QueueConfig, EntryError> {
    let defaults = QueueLimits::default();
    let backend = match raw.kind.as_deref() {
        None | Some("sqlite") => {
            refuse_server_keys("sqlite", raw.url.as_deref(), raw.pool_size)?;
            Backend::Sqlite
        }
        Some(other) => {
            return Err(value(
                "type",
                format!(
                    "`{other}` is not a queue backend; write \"sqlite\" (the embedded default)"
                ),
            ));
        }
    };
    let limits = QueueLimits {
        max_message_size: size_key(
            "max_message_size",
            raw.max_message_size,
            defaults.max_message_size,
        )?,
    };
    Ok(QueueConfig { backend, limits })
}

/// The smallest `max_size`: an embedded file needs a few pages for its schema.
const MIN_MAX_SIZE: u64 = 64 << 10;

fn max_size_key(text: Option<String>, default: u64) -> Result<u64, EntryError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let size = units::parse_size(&text).map_err(|source| EntryError::Unit {
        key: "max_size",
        source,
    })?;
    if size < MIN_MAX_SIZE {
        return Err(value(
            "max_size",
            format!(
                "{text} is too small; an embedded file needs at least {}",
                units::format_size(MIN_MAX_SIZE)
            ),
        ));
    }
    Ok(size)
}

/// `max_size` limits the embedded SQLite files only.
fn refuse_max_size(kind: &str, max_size: Option<&str>) -> Result<(), EntryError> {
    match max_size {
        Some(_) => Err(value(
            "max_size",
            format!(
                "a {kind} server sizes its own data; remove the key (it limits embedded SQLite files only)"
            ),
        )),
        None => Ok(()),
    }
}

fn refuse_server_keys(kind: &str, url: Option<&str>, pool: Option<i64>) -> Result<(), EntryError> {
    if url.is_some() {
        return Err(value(
            "url",
            format!(
                "a {kind} store is a file in the data dir and has no url; set `type` to the server's kind to use a server"
            ),
        ));
    }
    if pool.is_some() {
        return Err(value(
            "pool_size",
            format!("a {kind} store has no connection pool to size"),
        ));
    }
    Ok(())
}

fn server_url(url: Option<String>, schemes: &[&str], example: &str) -> Result<String, EntryError> {
    let Some(url) = url else {
        return Err(EntryError::Missing {
            key: "url",
            hint: format!("write e.g. url = \"{example}\""),
        });
    };
    if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(value(
            "url",
            format!(
                "`{}` must start with {}, e.g. \"{example}\"",
                redact(&url),
                schemes.join(" or ")
            ),
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

fn pool_size(size: Option<i64>) -> Result<usize, EntryError> {
    match size {
        None => Ok(DEFAULT_POOL_SIZE),
        Some(n) if (1..=1024).contains(&n) => Ok(n as usize),
        Some(n) => Err(value(
            "pool_size",
            format!("{n} must be between 1 and 1024"),
        )),
    }
}

fn size_key(key: &'static str, text: Option<String>, default: usize) -> Result<usize, EntryError> {
    match text {
        None => Ok(default),
        Some(text) => {
            let size =
                units::parse_size(&text).map_err(|source| EntryError::Unit { key, source })?;
            if size == 0 {
                return Err(value(key, "it must be more than zero"));
            }
            usize::try_from(size).map_err(|_| value(key, format!("{text} is too large")))
        }
    }
}

fn duration_key(
    key: &'static str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, EntryError> {
    match text {
        None => Ok(default),
        Some(text) => {
            let duration =
                units::parse_duration(&text).map_err(|source| EntryError::Unit { key, source })?;
            if duration.is_zero() {
                return Err(value(key, "it must be longer than zero"));
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

    /// The error and its sources, as the CLI prints them.
    fn error_of(text: &str) -> String {
        let error = RuntimeConfig::parse(text).unwrap_err();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
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
        for bad in ["Default", "-x", "a/b", "a:b", "..", &"x".repeat(64)] {
            let e = error_of(&format!("[key_value_store.\"{bad}\"]\n"));
            assert!(e.contains("not a valid store name"), "{bad}: {e}");
        }
        assert!(RuntimeConfig::parse("[key_value_store.user_sessions-2]\n").is_ok());
    }
}
