//! A function: its configuration, its compiled and pre-linked code, and its live state
//! (concurrency limit, metrics, log). It knows nothing of how calls reach it: triggers
//! (HTTP routes today) are data in its spec, read by the trigger that serves them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::handler::{self, ProxyHandler};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wedge_capabilities::names::Scope;
use wedge_capabilities::wasi::GuestIo;
use wedge_capabilities::{FunctionIdentity, GrantError, InstanceError, InstanceInfo};
use wedge_engine::limits::{GuestLimiter, Limits};
use wedge_engine::program::LoadError;
use wedge_engine::{Program, WedgeEngine};

use crate::capabilities::{self, ComponentState, GrantConfig, Grants, ModuleState, Services};
use crate::deadline;
use crate::instances::{Instances, ReusePolicy};
use crate::logs::FunctionLog;
use crate::metrics::FunctionMetrics;

/// What the guest is, which decides how a call reaches it (DESIGN.md, "Function kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// A component exporting `wasi:http/incoming-handler`.
    Http,
    /// A WASI preview 1 command module, run CGI-style.
    Wagi,
    /// A core module without `_start` whose exports are called directly (a stream
    /// function: a queue trigger's `invoke`).
    Reactor,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Http => "http",
            FunctionKind::Wagi => "wagi",
            FunctionKind::Reactor => "reactor",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trigger's table as written in the manifest or a deploy (its keys, `type` left out).
pub type TriggerConfig = serde_json::Map<String, serde_json::Value>;

/// One way calls reach a function, as configured. Each trigger reads its own kind.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSpec {
    /// An HTTP route: a path prefix without a trailing slash (or `/`). The manifest's
    /// `route = "/x"` is its shorthand.
    Http { route: String },
    /// Any other kind (`cron`, `queue`, ...): its `type` and its table, checked by the trigger
    /// of that kind (`Trigger::check`) before the function is accepted.
    Other { kind: String, config: TriggerConfig },
}

impl TriggerSpec {
    /// Its `type`.
    pub fn kind(&self) -> &str {
        match self {
            TriggerSpec::Http { .. } => "http",
            TriggerSpec::Other { kind, .. } => kind,
        }
    }
}

/// A function's configuration, validated (see `wedge-control` for where it comes from).
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    /// As stated in the configuration; `None` to detect it from the binary.
    pub kind: Option<FunctionKind>,
    pub triggers: Vec<TriggerSpec>,
    /// Wall-clock deadline per call.
    pub timeout: Duration,
    /// Limit of each linear memory, in bytes.
    pub max_memory: u64,
    /// Calls this function may handle at once; `None` for the node's global limit.
    pub max_concurrency: Option<usize>,
    /// How its instances are reused (`http` functions only); `None`: a fresh instance per
    /// request.
    pub reuse: Option<ReusePolicy>,
    /// Whose data its stores and databases hold (`app`, or `fn-NAME` for a deployed one).
    pub scope: Scope,
    /// What each capability grants it.
    pub grants: GrantConfig,
}

impl FunctionSpec {
    /// The HTTP route, when the function has one.
    pub fn route(&self) -> Option<&str> {
        self.triggers.iter().find_map(|trigger| match trigger {
            TriggerSpec::Http { route } => Some(route.as_str()),
            TriggerSpec::Other { .. } => None,
        })
    }

    /// Its triggers of one kind, with their index in `triggers`.
    pub fn triggers_of<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (usize, &'a TriggerConfig)> + 'a {
        self.triggers
            .iter()
            .enumerate()
            .filter_map(move |(index, trigger)| match trigger {
                TriggerSpec::Other { kind: k, config } if k == kind => Some((index, config)),
                _ => None,
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadFunctionError {
    #[error(transparent)]
    Program(#[from] LoadError),
    #[error(
        "it is neither kind of function: {found}. An `http` function is a component exporting wasi:http/incoming-handler (WASI 0.2); a `wagi` function is a WASI preview 1 command module exporting `_start`; a core module without `_start` can only be called through a queue trigger's `invoke` (a stream function, with no route)"
    )]
    NeitherKind { found: String },
    #[error(
        "kind = \"{stated}\", but the binary is {found}; remove `kind` to detect it, or point `source` at a {stated} function"
    )]
    KindMismatch { stated: FunctionKind, found: String },
    #[error("it imports `{import}`, which its grants do not provide. {hint}")]
    MissingImport { import: String, hint: String },
    #[error("it cannot be linked")]
    Link(#[source] wasmtime::Error),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(
        "`reuse.max_concurrent` is {0}, but a wasi:http/incoming-handler@0.2 component takes one request at a time; set it to 1 for serial reuse, or build the function for WASI 0.3 (wasi:http/handler@0.3) to serve requests concurrently"
    )]
    ConcurrentReuseNeedsP3(usize),
    #[error("`reuse` is for `http` functions; a `{0}` function gets a fresh instance per call")]
    ReuseNotHttp(FunctionKind),
}

/// A function's code, pre-linked against its capabilities, by kind.
pub(crate) enum FunctionCode {
    /// A 0.2 handler with a fresh instance per request: wedge's own path, inline.
    Http(ProxyPre<ComponentState>),
    /// A 0.3 handler, or a 0.2 one that reuses instances: wasmtime-wasi-http's handler.
    Handler(Arc<ProxyHandler<Instances>>),
    Wagi(wasmtime::InstancePre<ModuleState>),
    Reactor(wasmtime::InstancePre<ModuleState>),
}

/// A loaded function, ready to be called.
pub struct Function {
    pub spec: FunctionSpec,
    pub kind: FunctionKind,
    pub(crate) code: FunctionCode,
    pub(crate) grants: Arc<Grants>,
    pub(crate) concurrency: Option<Arc<Semaphore>>,
    pub(crate) name: Arc<str>,
    /// Metrics and log belong to the function's name, not to one version: a redeploy
    /// hands them on (see `continue_history_of`).
    pub metrics: Arc<FunctionMetrics>,
    pub log: Arc<FunctionLog>,
}

impl Function {
    /// Checks the kind, prepares the grants, links the imports against the capabilities the
    /// node offers and pre-instantiates, so that every later call only instantiates.
    pub fn load(
        engine: &WedgeEngine,
        spec: FunctionSpec,
        program: Program,
        services: &Services,
    ) -> Result<Self, LoadFunctionError> {
        let identity = FunctionIdentity {
            name: &spec.name,
            scope: &spec.scope,
            kind: program.kind(),
        };
        let (kind, code, grants) = match program {
            Program::Component(component) => {
                let Some(version) = http_handler_version(engine, &component) else {
                    return Err(LoadFunctionError::NeitherKind {
                        found: format!(
                            "a component that does not export wasi:http/incoming-handler (0.2) or wasi:http/handler (0.3) (it exports: {})",
                            describe_exports(engine, &component)
                        ),
                    });
                };
                check_stated(
                    spec.kind,
                    FunctionKind::Http,
                    "a component (an `http` function)",
                )?;
                let grants = Arc::new(Grants::prepare(&spec.grants, services, identity)?);
                let pre = link_component(engine, &component, services)?;
                let code = match (version, spec.reuse) {
                    (HandlerVersion::P2, None) => {
                        FunctionCode::Http(ProxyPre::new(pre).map_err(LoadFunctionError::Link)?)
                    }
                    (HandlerVersion::P2, Some(policy)) if policy.max_concurrent > 1 => {
                        return Err(LoadFunctionError::ConcurrentReuseNeedsP3(
                            policy.max_concurrent,
                        ));
                    }
                    (version, policy) => {
                        let pre = match version {
                            HandlerVersion::P2 => handler::ProxyPre::P2(
                                ProxyPre::new(pre).map_err(LoadFunctionError::Link)?,
                            ),
                            HandlerVersion::P3 => handler::ProxyPre::P3(
                                wasmtime_wasi_http::p3::bindings::ServicePre::new(pre)
                                    .map_err(LoadFunctionError::Link)?,
                            ),
                        };
                        FunctionCode::Handler(Arc::new(ProxyHandler::new(Instances {
                            pre,
                            engine: engine.engine().clone(),
                            grants: grants.clone(),
                            name: Arc::from(spec.name.as_str()),
                            timeout: spec.timeout,
                            max_memory: spec.max_memory,
                            policy: policy.unwrap_or(ReusePolicy::FRESH),
                            log: ArcSwap::from_pointee(FunctionLog::default()),
                            metrics: ArcSwap::from_pointee(FunctionMetrics::default()),
                        })))
                    }
                };
                (FunctionKind::Http, code, grants)
            }
            Program::Module(module) => {
                let grants = Arc::new(Grants::prepare(&spec.grants, services, identity)?);
                let has_start = matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                );
                // Without `_start`, a module is a reactor: its exports are called by a
                // trigger (a stream function). It cannot answer HTTP requests.
                let kind = if has_start {
                    FunctionKind::Wagi
                } else if spec.route().is_none() && !spec.triggers.is_empty() {
                    FunctionKind::Reactor
                } else {
                    return Err(LoadFunctionError::NeitherKind {
                        found: "a core module without a `_start` export (a library, not a command)"
                            .into(),
                    });
                };
                let description = match kind {
                    FunctionKind::Reactor => "a core module without `_start` (a `reactor`)",
                    _ => "a core module (a `wagi` function)",
                };
                check_stated(spec.kind, kind, description)?;
                if spec.reuse.is_some() {
                    return Err(LoadFunctionError::ReuseNotHttp(kind));
                }
                let pre = link_module(engine, &module, services)?;
                let code = match kind {
                    FunctionKind::Reactor => FunctionCode::Reactor(pre),
                    _ => FunctionCode::Wagi(pre),
                };
                (kind, code, grants)
            }
        };
        let function = Self {
            concurrency: spec.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            name: Arc::from(spec.name.as_str()),
            spec,
            kind,
            code,
            grants,
            metrics: Arc::default(),
            log: Arc::default(),
        };
        function.share_history_with_instances();
        Ok(function)
    }

    /// The instances a handler makes report into this function's metrics and log.
    fn share_history_with_instances(&self) {
        if let FunctionCode::Handler(handler) = &self.code {
            handler.state().metrics.store(self.metrics.clone());
            handler.state().log.store(self.log.clone());
        }
    }

    /// Takes over the metrics and log of the version this one replaces, so counters keep
    /// counting and log followers keep following across a redeploy; and, when the limit is
    /// unchanged, its concurrency permits, so calls still running on the old version
    /// count against the new one's `max_concurrency` too.
    pub fn continue_history_of(mut self, previous: &Function) -> Self {
        self.metrics = previous.metrics.clone();
        self.log = previous.log.clone();
        self.share_history_with_instances();
        if self.spec.max_concurrency == previous.spec.max_concurrency {
            self.concurrency = previous.concurrency.clone();
        }
        self
    }
}

impl Function {
    /// A fresh limiter for one instance, with the function's memory limit.
    fn limiter(&self) -> GuestLimiter {
        GuestLimiter::new(&Limits {
            max_memory: Some(self.spec.max_memory),
            ..Limits::default()
        })
    }

    fn instance_info<'a>(
        &'a self,
        call_id: &'a Arc<str>,
        deadline: Instant,
        io: &'a GuestIo,
    ) -> InstanceInfo<'a> {
        InstanceInfo {
            function: &self.name,
            request_id: call_id,
            deadline,
            io,
        }
    }

    /// A fresh store for one call of a component: every capability's slice of its data,
    /// the memory limit, and the call's deadline.
    pub(crate) fn component_store(
        &self,
        engine: &wasmtime::Engine,
        call_id: &Arc<str>,
        deadline: Instant,
        io: &GuestIo,
    ) -> Result<Store<ComponentState>, InstanceError> {
        let info = self.instance_info(call_id, deadline, io);
        let state = self.grants.component_state(&info, self.limiter())?;
        Ok(limited_store(engine, state, Some(deadline)))
    }

    /// A fresh store for one call of a core module.
    pub(crate) fn module_store(
        &self,
        engine: &wasmtime::Engine,
        call_id: &Arc<str>,
        deadline: Instant,
        io: &GuestIo,
    ) -> Result<Store<ModuleState>, InstanceError> {
        let info = self.instance_info(call_id, deadline, io);
        let state = self.grants.module_state(&info, self.limiter())?;
        Ok(limited_store(engine, state, Some(deadline)))
    }
}

/// A store whose memory growth goes through its data's limiter and, with a deadline, whose
/// guest yields at every epoch tick and traps at the deadline.
pub(crate) fn limited_store<T: HasLimiter + 'static>(
    engine: &wasmtime::Engine,
    state: T,
    deadline: Option<Instant>,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limiter_mut());
    if let Some(deadline) = deadline {
        deadline::apply(&mut store, deadline);
    }
    store
}

/// Store data that carries the instance's memory limiter.
pub(crate) trait HasLimiter {
    fn limiter_mut(&mut self) -> &mut GuestLimiter;
}

impl HasLimiter for ComponentState {
    fn limiter_mut(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

impl HasLimiter for ModuleState {
    fn limiter_mut(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// Links a component against every capability the node offers. An import no offered
/// capability provides is named, with what would provide it.
pub(crate) fn link_component(
    engine: &WedgeEngine,
    component: &Component,
    services: &Services,
) -> Result<wasmtime::component::InstancePre<ComponentState>, LoadFunctionError> {
    let mut linker = wasmtime::component::Linker::<ComponentState>::new(engine.engine());
    // All of each offered capability's interfaces are linked, whatever the function is
    // granted: toolchains such as componentize-js and componentize-py import everything in
    // their world, used or not. What a function may actually reach is decided per function
    // by its grants (no preopens but its `files`, its outbound allow-list, its stores).
    capabilities::link_component(&mut linker, services).map_err(LoadFunctionError::Link)?;
    linker.instantiate_pre(component).map_err(|error| {
        let missing = component
            .component_type()
            .imports(engine.engine())
            .map(|(name, _)| name.to_string())
            .find(|name| !capabilities::provides_component_import(name, services));
        match missing {
            Some(import) => LoadFunctionError::MissingImport {
                hint: "No grant of `wedge serve` provides it: remove the import, or build the component for the wasi:http/proxy world.".into(),
                import,
            },
            None => LoadFunctionError::Link(error),
        }
    })
}

/// Links a core module against every capability the node offers (WASI preview 1).
pub(crate) fn link_module(
    engine: &WedgeEngine,
    module: &wasmtime::Module,
    services: &Services,
) -> Result<wasmtime::InstancePre<ModuleState>, LoadFunctionError> {
    let mut linker = wasmtime::Linker::<ModuleState>::new(engine.engine());
    capabilities::link_module(&mut linker, services).map_err(LoadFunctionError::Link)?;
    linker.instantiate_pre(module).map_err(|error| {
        match module
            .imports()
            .find(|import| !capabilities::provides_module_import(import.module(), services))
        {
            Some(import) => LoadFunctionError::MissingImport {
                import: format!("{}::{}", import.module(), import.name()),
                hint: wedge_capabilities::import_hint(import.module(), import.name())
                    .unwrap_or("No grant of `wedge serve` provides it: remove the import or rebuild the module without it.")
                    .to_string(),
            },
            None => LoadFunctionError::Link(error),
        }
    })
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

/// Which `wasi:http` handler a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerVersion {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2,
    /// `wasi:http/handler@0.3.x`.
    P3,
}

impl HandlerVersion {
    /// The handler a component's top-level export of this name is, if it is one: the one
    /// rule, also used by `wedge build` to check what a build made without compiling it.
    pub fn of_export(name: &str) -> Option<HandlerVersion> {
        if name.starts_with("wasi:http/incoming-handler@0.2") {
            Some(HandlerVersion::P2)
        } else if name.starts_with("wasi:http/handler@0.3") {
            Some(HandlerVersion::P3)
        } else {
            None
        }
    }
}

fn http_handler_version(engine: &WedgeEngine, component: &Component) -> Option<HandlerVersion> {
    component
        .component_type()
        .exports(engine.engine())
        .find_map(|(name, _)| HandlerVersion::of_export(name))
}

fn describe_exports(engine: &WedgeEngine, component: &Component) -> String {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.is_empty() {
        "nothing".into()
    } else {
        exports.join(", ")
    }
}
