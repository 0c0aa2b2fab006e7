//! A function: its configuration, its compiled and pre-linked code, and its live state
//! (concurrency limit, metrics, log).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wedge_capabilities::Preopen;
use wedge_capabilities::http_outbound::OutboundPolicy;
use wedge_capabilities::key_value::{KeyValueGrant, KeyValueStores};
use wedge_capabilities::sql::{SqlDatabases, SqlGrant};
use wedge_engine::program::LoadError;
use wedge_engine::{Program, WedgeEngine};

use crate::http_kind::HttpExecutor;
use crate::logs::FunctionLog;
use crate::metrics::FunctionMetrics;
use crate::wagi::WagiExecutor;

/// How a request reaches a function's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// A component exporting `wasi:http/incoming-handler`.
    Http,
    /// A WASI preview 1 command module, run CGI-style.
    Wagi,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Http => "http",
            FunctionKind::Wagi => "wagi",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function's configuration, validated (see `wedge-control` for where it comes from).
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    /// A path prefix without a trailing slash (or `/`).
    pub route: String,
    /// As stated in the configuration; `None` to detect it from the binary.
    pub kind: Option<FunctionKind>,
    pub env: Vec<(String, String)>,
    /// Read-only directories.
    pub files: Vec<Preopen>,
    pub outbound: OutboundPolicy,
    /// Wall-clock deadline per request.
    pub timeout: Duration,
    /// Limit of each linear memory, in bytes.
    pub max_memory: u64,
    /// Requests this function may handle at once; `None` for the gateway's global limit.
    pub max_concurrency: Option<usize>,
    /// Whose data its stores and databases hold (`app`, or `fn-NAME` for a deployed one).
    pub state_scope: String,
    /// The key-value stores it may open.
    pub key_value_stores: Vec<String>,
    /// The SQL databases it may open.
    pub sql_databases: Vec<String>,
}

/// The key-value stores and SQL databases of a server: which backend serves which name
/// (chosen by the runtime config; wedge-control builds them). Functions get a view of them
/// limited to their grants.
#[derive(Clone)]
pub struct StateServices {
    pub key_value: Arc<KeyValueStores>,
    pub sql: Arc<SqlDatabases>,
}

/// One function's slice of the state services: what its grants let it open, in its scope.
#[derive(Clone)]
pub(crate) struct StateAccess {
    pub services: StateServices,
    pub key_value: Arc<KeyValueGrant>,
    pub sql: Arc<SqlGrant>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadFunctionError {
    #[error("{0}")]
    Program(#[from] LoadError),
    #[error(
        "it is neither kind of function: {found}. An `http` function is a component exporting wasi:http/incoming-handler (WASI 0.2); a `wagi` function is a WASI preview 1 command module exporting `_start`"
    )]
    NeitherKind { found: String },
    #[error(
        "kind = \"{stated}\", but the binary is {found}; remove `kind` to detect it, or point `source` at a {stated} function"
    )]
    KindMismatch { stated: FunctionKind, found: String },
    #[error("it imports `{import}`, which its grants do not provide. {hint}")]
    MissingImport { import: String, hint: String },
    #[error("it cannot be linked: {0}")]
    Link(String),
    #[error(
        "`{key}` is granted, but a `wagi` function (a core module) cannot import key-value or SQL; build it as an `http` component (docs/languages.md), or remove `{key}`"
    )]
    StateNeedsComponent { key: &'static str },
}

pub(crate) enum Executor {
    Http(HttpExecutor),
    Wagi(WagiExecutor),
}

/// A loaded function, ready to serve.
pub struct Function {
    pub spec: FunctionSpec,
    pub kind: FunctionKind,
    pub(crate) executor: Executor,
    pub(crate) concurrency: Option<Arc<Semaphore>>,
    pub(crate) outbound: Arc<OutboundPolicy>,
    pub(crate) name: Arc<str>,
    pub(crate) state: StateAccess,
    /// Metrics and log belong to the function's name, not to one version: a redeploy
    /// hands them on (see `continue_history_of`).
    pub metrics: Arc<FunctionMetrics>,
    pub log: Arc<FunctionLog>,
}

impl Function {
    /// Checks the kind, links the imports against the grants and pre-instantiates, so that
    /// every later request only instantiates.
    pub fn load(
        engine: &WedgeEngine,
        spec: FunctionSpec,
        program: Program,
        services: &StateServices,
    ) -> Result<Self, LoadFunctionError> {
        let (kind, executor) = match program {
            Program::Component(component) => {
                if !exports_incoming_handler(engine, &component) {
                    let exports: Vec<String> = component
                        .component_type()
                        .exports(engine.engine())
                        .map(|(name, _)| name.to_string())
                        .collect();
                    return Err(LoadFunctionError::NeitherKind {
                        found: format!(
                            "a component that does not export wasi:http/incoming-handler (it exports: {})",
                            if exports.is_empty() {
                                "nothing".into()
                            } else {
                                exports.join(", ")
                            }
                        ),
                    });
                }
                check_stated(
                    spec.kind,
                    FunctionKind::Http,
                    "a component (an `http` function)",
                )?;
                (
                    FunctionKind::Http,
                    Executor::Http(HttpExecutor::new(engine, &component)?),
                )
            }
            Program::Module(module) => {
                if !spec.key_value_stores.is_empty() {
                    return Err(LoadFunctionError::StateNeedsComponent {
                        key: "key_value_stores",
                    });
                }
                if !spec.sql_databases.is_empty() {
                    return Err(LoadFunctionError::StateNeedsComponent {
                        key: "sql_databases",
                    });
                }
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(LoadFunctionError::NeitherKind {
                        found: "a core module without a `_start` export (a library, not a command)"
                            .into(),
                    });
                }
                check_stated(
                    spec.kind,
                    FunctionKind::Wagi,
                    "a core module (a `wagi` function)",
                )?;
                (
                    FunctionKind::Wagi,
                    Executor::Wagi(WagiExecutor::new(engine, &module)?),
                )
            }
        };
        let state = StateAccess {
            services: services.clone(),
            key_value: Arc::new(KeyValueGrant {
                scope: spec.state_scope.clone(),
                stores: spec.key_value_stores.clone(),
            }),
            sql: Arc::new(SqlGrant {
                scope: spec.state_scope.clone(),
                databases: spec.sql_databases.clone(),
            }),
        };
        Ok(Self {
            state,
            concurrency: spec.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            outbound: Arc::new(spec.outbound.clone()),
            name: Arc::from(spec.name.as_str()),
            spec,
            kind,
            executor,
            metrics: Arc::default(),
            log: Arc::default(),
        })
    }

    /// Takes over the metrics and log of the version this one replaces, so counters keep
    /// counting and log followers keep following across a redeploy; and, when the limit is
    /// unchanged, its concurrency permits, so requests still running on the old version
    /// count against the new one's `max_concurrency` too.
    pub fn continue_history_of(mut self, previous: &Function) -> Self {
        self.metrics = previous.metrics.clone();
        self.log = previous.log.clone();
        if self.spec.max_concurrency == previous.spec.max_concurrency {
            self.concurrency = previous.concurrency.clone();
        }
        self
    }
}

impl Function {
    /// Read-only preopens of the function's `files`.
    pub(crate) fn grant_files(
        &self,
        builder: &mut wasmtime_wasi::WasiCtxBuilder,
    ) -> Result<(), String> {
        for preopen in &self.spec.files {
            builder
                .preopened_dir(
                    &preopen.host,
                    &preopen.guest,
                    wasmtime_wasi::FsPerms::ReadOnly,
                )
                .map_err(|error| {
                    format!(
                        "function `{}` cannot open its files directory `{}`: {error:#}",
                        self.spec.name,
                        preopen.host.display()
                    )
                })?;
        }
        Ok(())
    }

    /// A fresh limiter for one request's store, with the function's memory limit.
    pub(crate) fn limiter(&self) -> wedge_engine::limits::GuestLimiter {
        wedge_engine::limits::GuestLimiter::new(&wedge_engine::limits::Limits {
            max_memory: Some(self.spec.max_memory),
            ..wedge_engine::limits::Limits::default()
        })
    }
}

fn check_stated(
    stated: Option<FunctionKind>,
    found: FunctionKind,
    description: &str,
) -> Result<(), LoadFunctionError> {
    match stated {
        Some(stated) if stated != found => Err(LoadFunctionError::KindMismatch {
            stated,
            found: description.to_string(),
        }),
        _ => Ok(()),
    }
}

fn exports_incoming_handler(
    engine: &WedgeEngine,
    component: &wasmtime::component::Component,
) -> bool {
    component
        .component_type()
        .exports(engine.engine())
        .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@0.2"))
}
