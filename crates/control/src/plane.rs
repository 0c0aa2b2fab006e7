//! The control plane: deploys, rollbacks and removals of API-deployed functions, next to the
//! app manifest's; what is served is published to the gateway by one atomic swap.
//!
//! A deploy is validated and compiled first, without any lock (a large component takes
//! seconds). Then, under the one state lock: conflicts are checked again, the blob and the
//! version are made durable (`FunctionStore`), and only then is the new routing table
//! published. Requests in flight keep the `Arc<Function>` they routed to, so they finish on
//! the version they started with.
//!
//! Every operation here blocks (compiling, fsync, SQLite): the API runs them on tokio's
//! blocking pool, never on a thread that serves requests.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use wedge_engine::Program;
use wedge_engine::cache::ArtifactCache;
use wedge_engine::program::{self, InputFormat, LoadError, Loader, describe_chain};
use wedge_host::{
    FireFuture, Function, FunctionSpec, Host, LoadFunctionError, Trigger, TriggerConfigError,
    TriggerSpec,
};

use crate::config::{FunctionConfig, KeyError};
use crate::store::{FunctionStore, StoreError, StoredFunction, StoredVersion};

/// Functions from the app manifest: served alongside deployed ones, never changed by the API.
#[derive(Clone, Default)]
pub struct AppFunctions {
    pub manifest: Option<PathBuf>,
    pub functions: Vec<Arc<Function>>,
}

/// Why a deploy, rollback or removal was refused. Each maps to one HTTP status and a stable
/// error code (docs/api.md).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    InvalidConfig(KeyError),
    #[error("trigger {index} (type `{kind}`)")]
    InvalidTrigger {
        index: usize,
        kind: String,
        #[source]
        error: TriggerConfigError,
    },
    #[error("the upload is not a usable function")]
    NotWasm(#[source] LoadError),
    #[error("the upload is not a usable function")]
    BadProgram(#[source] LoadError),
    #[error(
        "the upload is not a usable function: it is a compiled .cwasm artifact; upload the .wasm itself (wedge compiles it)"
    )]
    CompiledArtifact,
    #[error("the upload is not a function wedge can serve")]
    WrongKind(#[source] LoadFunctionError),
    #[error("it imports something its grants do not provide")]
    MissingImport(#[source] LoadFunctionError),
    #[error(
        "the name `{name}` belongs to a function of the app manifest `{}`; choose another name, or remove it from the manifest", manifest.display()
    )]
    NameInManifest { name: String, manifest: PathBuf },
    #[error(
        "route `{route}` is already served by function `{owner}` ({source_of_owner}); choose another route with the `route` key"
    )]
    RouteTaken {
        route: String,
        owner: String,
        source_of_owner: String,
    },
    #[error("there is no function `{0}`")]
    UnknownFunction(String),
    #[error(
        "function `{name}` comes from the app manifest `{}`; change it there and restart, the API only manages deployed functions", manifest.display()
    )]
    ManagedByManifest { name: String, manifest: PathBuf },
    #[error("function `{name}` has no version {version}; `wedge functions show {name}` lists them")]
    UnknownVersion { name: String, version: u64 },
    #[error("function `{name}` has no version before {current} to roll back to")]
    NoEarlierVersion { name: String, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The compiled code could not be stored (a deploy is acknowledged only with it on disk).
    #[error("the compiled code could not be stored")]
    Cache(#[source] LoadError),
    /// At start-up: the program this version shares with others failed to load.
    #[error("its program failed to load")]
    SharedProgram(#[source] Arc<DeployError>),
}

impl DeployError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            DeployError::InvalidConfig(_) | DeployError::InvalidTrigger { .. } => 400,
            DeployError::NotWasm(_)
            | DeployError::BadProgram(_)
            | DeployError::CompiledArtifact
            | DeployError::WrongKind(_)
            | DeployError::MissingImport(_) => 422,
            DeployError::NameInManifest { .. }
            | DeployError::RouteTaken { .. }
            | DeployError::ManagedByManifest { .. }
            | DeployError::NoEarlierVersion { .. } => 409,
            DeployError::UnknownFunction(_) | DeployError::UnknownVersion { .. } => 404,
            DeployError::Store(_) | DeployError::Cache(_) | DeployError::SharedProgram(_) => 500,
        }
    }

    /// A stable, machine-readable code for the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            DeployError::InvalidConfig(_) | DeployError::InvalidTrigger { .. } => "invalid_config",
            DeployError::NotWasm(_) => "not_wasm",
            DeployError::BadProgram(_) | DeployError::CompiledArtifact => "invalid_wasm",
            DeployError::WrongKind(_) => "wrong_kind",
            DeployError::MissingImport(_) => "import_not_granted",
            DeployError::NameInManifest { .. } => "name_in_manifest",
            DeployError::RouteTaken { .. } => "route_taken",
            DeployError::ManagedByManifest { .. } => "managed_by_manifest",
            DeployError::UnknownFunction(_) => "unknown_function",
            DeployError::UnknownVersion { .. } => "unknown_version",
            DeployError::NoEarlierVersion { .. } => "no_earlier_version",
            DeployError::Store(_) => "storage_failed",
            DeployError::Cache(_) | DeployError::SharedProgram(_) => "internal",
        }
    }

    /// The message and its causes in one line, as the API's `detail` and the log show it.
    pub fn detail(&self) -> String {
        describe_chain(self)
    }
}

/// What start-up found wrong with the stored functions and the manifest together.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "function `{name}` is defined in the app manifest `{}` and was also deployed over the API (version {version}, stored in `{}`); rename the manifest's function, or start without --app and remove the deployed one with `wedge functions rm {name}`",
        manifest.display(), data_dir.display()
    )]
    NameClash {
        name: String,
        version: u64,
        manifest: PathBuf,
        data_dir: PathBuf,
    },
    #[error(
        "route `{route}` of the app manifest's function `{app_function}` (`{}`) is also the route of deployed function `{deployed}`; change one of them",
        manifest.display()
    )]
    RouteClash {
        route: String,
        app_function: String,
        deployed: String,
        manifest: PathBuf,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("function `{function}` of the app manifest `{}`: trigger {index} (type `{kind}`)", manifest.display())]
    AppTrigger {
        function: String,
        index: usize,
        kind: String,
        manifest: PathBuf,
        #[source]
        error: Box<TriggerConfigError>,
    },
}

/// What a deploy or rollback published.
#[derive(Debug, Clone)]
pub struct Published {
    pub name: String,
    pub version: u64,
    pub digest: String,
    pub kind: String,
    /// Its HTTP route, if it has one (a function may have only other triggers).
    pub route: Option<String>,
    /// True when the function did not exist before (a deploy answers 201).
    pub created: bool,
}

/// A function as the API lists it.
#[derive(Debug, Clone)]
pub enum FunctionInfo {
    Deployed {
        stored: Box<StoredFunction>,
        route: Option<String>,
        triggers: Vec<serde_json::Value>,
        /// Why it is not being served, when its stored version failed to load at start-up.
        load_error: Option<String>,
    },
    App {
        name: String,
        route: Option<String>,
        triggers: Vec<serde_json::Value>,
        kind: String,
        manifest: Option<PathBuf>,
    },
}

impl FunctionInfo {
    pub fn name(&self) -> &str {
        match self {
            FunctionInfo::Deployed { stored, .. } => &stored.name,
            FunctionInfo::App { name, .. } => name,
        }
    }
}

struct Deployed {
    function: Arc<Function>,
    program: Program,
    digest: String,
}

struct State {
    store: FunctionStore,
    deployed: BTreeMap<String, Deployed>,
    /// Stored functions whose current version could not be loaded at start-up.
    failed: BTreeMap<String, String>,
}

pub struct ControlPlane {
    /// The engine and the services deployed functions are loaded against.
    host: Arc<Host>,
    cache: Option<ArtifactCache>,
    /// Every way calls reach functions: each gets the whole served set after each change.
    triggers: Vec<Arc<dyn Trigger>>,
    app: AppFunctions,
    /// The node's limit on a function's `max_memory` (the pooling allocator's slot size).
    max_memory: u64,
    state: Mutex<State>,
}

impl ControlPlane {
    /// Restores every acknowledged function from `store` (loading them in parallel, each
    /// distinct binary compiled or loaded from the cache once), checks them against the
    /// app's, and publishes app and deployed functions together.
    pub fn start(
        host: Arc<Host>,
        cache: Option<ArtifactCache>,
        triggers: Vec<Arc<dyn Trigger>>,
        app: AppFunctions,
        store: FunctionStore,
        max_memory: u64,
    ) -> Result<Arc<Self>, RestoreError> {
        for function in &app.functions {
            check_triggers(&triggers, &function.spec)
                .and_then(|()| check_loaded(&triggers, function))
                .map_err(|refusal| RestoreError::AppTrigger {
                    function: function.spec.name.clone(),
                    index: refusal.index,
                    kind: refusal.kind,
                    manifest: app.manifest.clone().unwrap_or_default(),
                    error: Box::new(refusal.error),
                })?;
        }
        let stored = store.list()?;
        for function in &stored {
            if let Some(clash) = app.functions.iter().find(|f| f.spec.name == function.name) {
                return Err(RestoreError::NameClash {
                    name: clash.spec.name.clone(),
                    version: function.current.version,
                    manifest: app.manifest.clone().unwrap_or_default(),
                    data_dir: store.dir().to_path_buf(),
                });
            }
        }
        let plane = Self {
            host,
            cache,
            triggers,
            app,
            max_memory,
            state: Mutex::new(State {
                store,
                deployed: BTreeMap::new(),
                failed: BTreeMap::new(),
            }),
        };
        let restored = plane.restore_all(&stored);
        {
            let mut state = plane.lock();
            for (stored, result) in stored.iter().zip(restored) {
                match result {
                    Ok(deployed) => {
                        if let Some(app) = plane.app.functions.iter().find(|f| {
                            f.spec.route().is_some()
                                && f.spec.route() == deployed.function.spec.route()
                        }) {
                            return Err(RestoreError::RouteClash {
                                route: route_of(&app.spec).unwrap_or_default(),
                                app_function: app.spec.name.clone(),
                                deployed: stored.name.clone(),
                                manifest: plane.app.manifest.clone().unwrap_or_default(),
                            });
                        }
                        state.deployed.insert(stored.name.clone(), deployed);
                    }
                    Err(error) => {
                        tracing::error!(
                            function = %stored.name,
                            version = stored.current.version,
                            error = %error.detail(),
                            "a deployed function cannot be loaded; it is not served"
                        );
                        state.failed.insert(stored.name.clone(), error.detail());
                    }
                }
            }
            plane.publish(&state);
        }
        Ok(Arc::new(plane))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug, but the state it guards is only ever
        // changed after the durable write succeeded, so it is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the current version of every stored function, on all cores.
    fn restore_all(&self, stored: &[StoredFunction]) -> Vec<Result<Deployed, DeployError>> {
        let blobs = self.lock().store.blobs().clone();
        // Each distinct binary once: many functions may share one.
        let mut digests: Vec<&str> = stored.iter().map(|f| f.current.digest.as_str()).collect();
        digests.sort_unstable();
        digests.dedup();
        let programs: HashMap<&str, Result<Program, Arc<DeployError>>> =
            parallel_map(&digests, |digest| {
                let bytes = blobs.read(digest).map_err(|e| Arc::new(e.into()))?;
                self.compile(&bytes).map_err(Arc::new)
            })
            .into_iter()
            .zip(digests.iter().copied())
            .map(|(program, digest)| (digest, program))
            .collect();
        parallel_map(stored, |function| {
            let program = match programs.get(function.current.digest.as_str()) {
                Some(Ok(program)) => program.clone(),
                Some(Err(error)) => return Err(DeployError::SharedProgram(error.clone())),
                // Every digest was loaded above; were one missing, load it here.
                None => self.compile(&blobs.read(&function.current.digest)?)?,
            };
            let spec = self.spec_of(&function.name, &function.current.config)?;
            let loaded = self.link(spec, program.clone())?;
            Ok(Deployed {
                function: Arc::new(loaded),
                program,
                digest: function.current.digest.clone(),
            })
        })
    }

    fn spec_of(&self, name: &str, config: &FunctionConfig) -> Result<FunctionSpec, DeployError> {
        let spec = config
            .to_spec(name, Vec::new(), crate::config::StateScope::Deployed)
            .map_err(DeployError::InvalidConfig)?;
        check_triggers(&self.triggers, &spec).map_err(|refusal| DeployError::InvalidTrigger {
            index: refusal.index,
            kind: refusal.kind,
            error: refusal.error,
        })?;
        if spec.max_memory > self.max_memory {
            return Err(DeployError::InvalidConfig(KeyError {
                key: "max_memory",
                problem: format!(
                    "{} is more than this server's limit of {} (wedge serve --max-function-memory)",
                    wedge_engine::units::format_size(spec.max_memory),
                    wedge_engine::units::format_size(self.max_memory)
                ),
            }));
        }
        Ok(spec)
    }

    /// Compiles uploaded bytes (or loads them from the cache), requiring the artifact to be
    /// stored: a deploy is acknowledged only with its compiled code on disk.
    fn compile(&self, bytes: &[u8]) -> Result<Program, DeployError> {
        match program::detect(bytes) {
            // A .cwasm is native code: running one from a tenant would skip validation.
            Ok(InputFormat::Artifact) => {
                return Err(DeployError::CompiledArtifact);
            }
            Ok(_) => {}
            Err(error) => return Err(DeployError::NotWasm(error)),
        }
        let loader = Loader::new(self.host.engine(), self.cache.as_ref()).requiring_cache();
        match loader.load(bytes) {
            Ok((program, _)) => Ok(program),
            Err(error @ LoadError::Cache { .. }) => Err(DeployError::Cache(error)),
            Err(error) => Err(DeployError::BadProgram(error)),
        }
    }

    fn link(&self, spec: FunctionSpec, program: Program) -> Result<Function, DeployError> {
        let function = self.load(spec, program)?;
        check_loaded(&self.triggers, &function).map_err(|refusal| DeployError::InvalidTrigger {
            index: refusal.index,
            kind: refusal.kind,
            error: refusal.error,
        })?;
        Ok(function)
    }

    fn load(&self, spec: FunctionSpec, program: Program) -> Result<Function, DeployError> {
        Function::load(self.host.engine(), spec, program, self.host.services()).map_err(|error| {
            match error {
                LoadFunctionError::Grant(grant) => DeployError::InvalidConfig(KeyError {
                    key: grant.key(),
                    problem: grant.to_string(),
                }),
                LoadFunctionError::MissingImport { .. } | LoadFunctionError::Link(_) => {
                    DeployError::MissingImport(error)
                }
                LoadFunctionError::NeitherKind { .. } | LoadFunctionError::KindMismatch { .. } => {
                    DeployError::WrongKind(error)
                }
                LoadFunctionError::Program(error) => DeployError::BadProgram(error),
                LoadFunctionError::ConcurrentReuseNeedsP3(_)
                | LoadFunctionError::ReuseNotHttp(_) => DeployError::InvalidConfig(KeyError {
                    key: "reuse",
                    problem: error.to_string(),
                }),
            }
        })
    }

    /// The manifest that defines `name`, if the app has a function of that name.
    fn manifest_defining(&self, name: &str) -> Option<PathBuf> {
        self.app
            .functions
            .iter()
            .any(|f| f.spec.name == name)
            .then(|| self.app.manifest.clone().unwrap_or_default())
    }

    fn check_name(&self, name: &str) -> Result<(), DeployError> {
        match self.manifest_defining(name) {
            Some(manifest) => Err(DeployError::NameInManifest {
                name: name.to_string(),
                manifest,
            }),
            None => Ok(()),
        }
    }

    fn check_route(
        &self,
        state: &State,
        name: &str,
        route: Option<&str>,
    ) -> Result<(), DeployError> {
        let Some(route) = route else {
            return Ok(());
        };
        if let Some(app) = self
            .app
            .functions
            .iter()
            .find(|f| f.spec.route() == Some(route))
        {
            return Err(DeployError::RouteTaken {
                route: route.to_string(),
                owner: app.spec.name.clone(),
                source_of_owner: "from the app manifest".into(),
            });
        }
        if let Some((owner, _)) = state
            .deployed
            .iter()
            .find(|(other, d)| other.as_str() != name && d.function.spec.route() == Some(route))
        {
            return Err(DeployError::RouteTaken {
                route: route.to_string(),
                owner: owner.clone(),
                source_of_owner: "deployed over the API".into(),
            });
        }
        Ok(())
    }

    /// Validates, compiles, stores durably and publishes a new version of `name`.
    pub fn deploy(
        &self,
        name: &str,
        config: FunctionConfig,
        wasm: &[u8],
    ) -> Result<Published, DeployError> {
        let spec = self.spec_of(name, &config)?;
        self.check_name(name)?;
        // Cheap checks before the expensive compile; all are repeated under the lock.
        self.check_route(&self.lock(), name, spec.route())?;
        let digest = blake3::hash(wasm).to_hex().to_string();
        let shared = self
            .lock()
            .deployed
            .values()
            .find(|d| d.digest == digest)
            .map(|d| d.program.clone());
        let program = match shared {
            Some(program) => program,
            None => self.compile(wasm)?,
        };
        let function = self.link(spec, program.clone())?;
        let kind = function.kind.as_str().to_string();
        let route = route_of(&function.spec);

        let mut state = self.lock();
        self.check_route(&state, name, route.as_deref())?;
        state.store.blobs().put(&digest, wasm)?;
        crash_point("after-blob");
        let (version, created) = state.store.add_version(
            name,
            &digest,
            &kind,
            wasm.len() as u64,
            &config,
            wedge_host::time::now_millis(),
        )?;
        crash_point("after-commit");
        self.install(&mut state, name, function, program, digest.clone());
        tracing::info!(target: "wedge::deploy", function = name, version, %digest, route = route.as_deref().unwrap_or("(none)"), "published");
        Ok(Published {
            name: name.to_string(),
            version,
            digest,
            kind,
            route,
            created,
        })
    }

    /// Serves `version` of `name` again (by default the newest one before the current).
    pub fn rollback(&self, name: &str, version: Option<u64>) -> Result<Published, DeployError> {
        self.managed_by_api(name)?;
        let mut state = self.lock();
        let Some(stored) = state.store.get(name)? else {
            return Err(DeployError::UnknownFunction(name.to_string()));
        };
        let versions = state.store.versions(name)?;
        let current = stored.current.version;
        let target = match version {
            Some(version) => versions
                .into_iter()
                .find(|v| v.version == version)
                .ok_or_else(|| DeployError::UnknownVersion {
                    name: name.to_string(),
                    version,
                })?,
            None => versions
                .into_iter()
                .rev()
                .find(|v| v.version < current)
                .ok_or_else(|| DeployError::NoEarlierVersion {
                    name: name.to_string(),
                    current,
                })?,
        };
        let spec = self.spec_of(name, &target.config)?;
        self.check_route(&state, name, spec.route())?;
        let bytes = state.store.blobs().read(&target.digest)?;
        let program = self.compile(&bytes)?;
        let function = self.link(spec, program.clone())?;
        state
            .store
            .set_current(name, target.version, wedge_host::time::now_millis())?;
        let route = route_of(&function.spec);
        self.install(&mut state, name, function, program, target.digest.clone());
        tracing::info!(target: "wedge::deploy", function = name, version = target.version, "rolled back");
        Ok(Published {
            name: name.to_string(),
            version: target.version,
            digest: target.digest,
            kind: target.kind,
            route,
            created: false,
        })
    }

    /// Stops serving `name` and forgets it with all its versions.
    pub fn delete(&self, name: &str) -> Result<(), DeployError> {
        self.managed_by_api(name)?;
        let mut state = self.lock();
        if !state.store.delete(name)? {
            return Err(DeployError::UnknownFunction(name.to_string()));
        }
        state.deployed.remove(name);
        state.failed.remove(name);
        self.publish(&state);
        tracing::info!(target: "wedge::deploy", function = name, "deleted");
        Ok(())
    }

    fn managed_by_api(&self, name: &str) -> Result<(), DeployError> {
        match self.manifest_defining(name) {
            Some(manifest) => Err(DeployError::ManagedByManifest {
                name: name.to_string(),
                manifest,
            }),
            None => Ok(()),
        }
    }

    /// Serves `function` as `name` from now on: it inherits the metrics and log of the
    /// version it replaces, and the routing table is swapped.
    fn install(
        &self,
        state: &mut State,
        name: &str,
        function: Function,
        program: Program,
        digest: String,
    ) {
        let function = match state.deployed.get(name) {
            Some(previous) => function.continue_history_of(&previous.function),
            None => function,
        };
        state.failed.remove(name);
        state.deployed.insert(
            name.to_string(),
            Deployed {
                function: Arc::new(function),
                program,
                digest,
            },
        );
        self.publish(state);
    }

    /// Every function, app and deployed, by name.
    pub fn list(&self) -> Result<Vec<FunctionInfo>, DeployError> {
        let state = self.lock();
        let mut all: Vec<FunctionInfo> = self
            .app
            .functions
            .iter()
            .map(|f| self.app_info(f))
            .collect();
        for stored in state.store.list()? {
            all.push(self.deployed_info(&state, stored));
        }
        all.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(all)
    }

    /// One function and, if deployed, all its versions (oldest first).
    pub fn show(&self, name: &str) -> Result<(FunctionInfo, Vec<StoredVersion>), DeployError> {
        if let Some(app) = self.app.functions.iter().find(|f| f.spec.name == name) {
            return Ok((self.app_info(app), Vec::new()));
        }
        let state = self.lock();
        let Some(stored) = state.store.get(name)? else {
            return Err(DeployError::UnknownFunction(name.to_string()));
        };
        let versions = state.store.versions(name)?;
        Ok((self.deployed_info(&state, stored), versions))
    }

    /// The served function called `name`, for its log.
    pub fn function(&self, name: &str) -> Option<Arc<Function>> {
        if let Some(app) = self.app.functions.iter().find(|f| f.spec.name == name) {
            return Some(app.clone());
        }
        self.lock()
            .deployed
            .get(name)
            .map(|deployed| deployed.function.clone())
    }

    fn deployed_info(&self, state: &State, stored: StoredFunction) -> FunctionInfo {
        let (route, triggers) = match state.deployed.get(&stored.name) {
            Some(deployed) => (
                route_of(&deployed.function.spec),
                triggers_json(&deployed.function.spec),
            ),
            None => (
                stored.current.config.route.clone(),
                stored.current.config.trigger.clone(),
            ),
        };
        FunctionInfo::Deployed {
            load_error: state.failed.get(&stored.name).cloned(),
            route,
            triggers,
            stored: Box::new(stored),
        }
    }

    fn app_info(&self, function: &Arc<Function>) -> FunctionInfo {
        FunctionInfo::App {
            name: function.spec.name.clone(),
            route: route_of(&function.spec),
            triggers: triggers_json(&function.spec),
            kind: function.kind.as_str().to_string(),
            manifest: self.app.manifest.clone(),
        }
    }

    /// The node's queues, if it offers them.
    pub fn queues(&self) -> Option<Arc<wedge_capabilities::queue::Queues>> {
        self.host.services().queue.clone()
    }

    /// The scope of the served function `name` (its queues, stores and databases), or the
    /// app's without a name.
    pub fn scope_of(
        &self,
        name: Option<&str>,
    ) -> Result<wedge_capabilities::names::Scope, DeployError> {
        match name {
            None => wedge_capabilities::names::Scope::new("app")
                .map_err(|e| DeployError::UnknownFunction(e.to_string())),
            Some(name) => self
                .function(name)
                .map(|function| function.spec.scope.clone())
                .ok_or_else(|| DeployError::UnknownFunction(name.to_string())),
        }
    }

    /// Every queue the served functions name (consume by a trigger, or may send to), with
    /// the scope it is in, and the runtime config's in the app's scope.
    pub fn known_queues(&self) -> Vec<wedge_capabilities::queue::QueueId> {
        use wedge_capabilities::names::StateName;
        use wedge_capabilities::queue::QueueId;
        let mut queues: Vec<QueueId> = Vec::new();
        let state = self.lock();
        let functions = self
            .app
            .functions
            .iter()
            .chain(state.deployed.values().map(|d| &d.function));
        for function in functions {
            let spec = &function.spec;
            for name in &spec.grants.queue {
                queues.push(QueueId::of(&spec.scope, name));
            }
            for (_, table) in spec.triggers_of("queue") {
                for key in ["queue", "output"] {
                    if let Some(name) = table.get(key).and_then(|v| v.as_str())
                        && let Ok(name) = StateName::new("queue", name)
                    {
                        queues.push(QueueId::of(&spec.scope, &name));
                    }
                }
            }
        }
        drop(state);
        if let Some(configured) = self.queues()
            && let Ok(app) = wedge_capabilities::names::Scope::new("app")
        {
            for name in configured.configured() {
                if let Ok(name) = StateName::new("queue", name) {
                    queues.push(QueueId::of(&app, &name));
                }
            }
        }
        queues.sort();
        queues.dedup();
        queues
    }

    /// Runs trigger `index` of the served function `name` once, now.
    pub fn fire(&self, name: &str, index: usize) -> Result<FireFuture, DeployError> {
        let function = self
            .function(name)
            .ok_or_else(|| DeployError::UnknownFunction(name.to_string()))?;
        let kind = function
            .spec
            .triggers
            .get(index)
            .map(|trigger| trigger.kind().to_string())
            .ok_or_else(|| DeployError::InvalidTrigger {
                index,
                kind: "none".into(),
                error: TriggerConfigError::new(
                    "trigger",
                    format!(
                        "function `{name}` has {} trigger(s), numbered from 0",
                        function.spec.triggers.len()
                    ),
                ),
            })?;
        let trigger = self
            .triggers
            .iter()
            .find(|trigger| trigger.kind() == kind)
            .ok_or_else(|| DeployError::InvalidTrigger {
                index,
                kind: kind.clone(),
                error: TriggerConfigError::new("type", "no trigger of this type is running"),
            })?;
        Ok(trigger.fire(&function, index))
    }

    fn publish(&self, state: &State) {
        let functions = self
            .app
            .functions
            .iter()
            .cloned()
            .chain(state.deployed.values().map(|d| d.function.clone()))
            .collect::<Vec<_>>();
        for trigger in &self.triggers {
            trigger.publish(&functions);
        }
    }
}

/// A function's HTTP route, if it has one.
fn route_of(spec: &FunctionSpec) -> Option<String> {
    spec.route().map(str::to_string)
}

/// A function's triggers as the API shows them: each table with its `type`.
fn triggers_json(spec: &FunctionSpec) -> Vec<serde_json::Value> {
    spec.triggers
        .iter()
        .map(|trigger| match trigger {
            TriggerSpec::Http { route } => serde_json::json!({ "type": "http", "route": route }),
            TriggerSpec::Other { kind, config } => {
                let mut table = config.clone();
                table.insert("type".into(), serde_json::Value::String(kind.clone()));
                serde_json::Value::Object(table)
            }
        })
        .collect()
}

/// A trigger table its trigger refused.
struct TriggerRefusal {
    index: usize,
    kind: String,
    error: TriggerConfigError,
}

/// Checks every trigger table of `spec` with the trigger of its type.
fn check_triggers(
    triggers: &[Arc<dyn Trigger>],
    spec: &FunctionSpec,
) -> Result<(), TriggerRefusal> {
    for (index, trigger_spec) in spec.triggers.iter().enumerate() {
        let TriggerSpec::Other { kind, config } = trigger_spec else {
            continue;
        };
        let refusal = |error| TriggerRefusal {
            index,
            kind: kind.clone(),
            error,
        };
        let Some(trigger) = triggers.iter().find(|trigger| trigger.kind() == kind) else {
            let known: Vec<&str> = triggers.iter().map(|trigger| trigger.kind()).collect();
            return Err(refusal(TriggerConfigError::new(
                "type",
                format!(
                    "`{kind}` is not a trigger type of this server; write one of {}",
                    known.join(", ")
                ),
            )));
        };
        trigger.check(spec, config).map_err(refusal)?;
    }
    Ok(())
}

/// Checks every trigger table of a loaded function again, now that its kind is known.
fn check_loaded(triggers: &[Arc<dyn Trigger>], function: &Function) -> Result<(), TriggerRefusal> {
    for (index, trigger_spec) in function.spec.triggers.iter().enumerate() {
        let TriggerSpec::Other { kind, config } = trigger_spec else {
            continue;
        };
        if let Some(trigger) = triggers.iter().find(|trigger| trigger.kind() == kind) {
            trigger
                .check_loaded(function, config)
                .map_err(|error| TriggerRefusal {
                    index,
                    kind: kind.clone(),
                    error,
                })?;
        }
    }
    Ok(())
}

/// Runs `work` over `items` on every core, keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Crash injection for the durability tests (tests/deploy.rs): with
/// `WEDGE_TEST_CRASH_AT=<point>` in its environment, the server aborts at that point of a
/// deploy, as `kill -9` would, so a test can check what a restart restores.
fn crash_point(point: &str) {
    if std::env::var_os("WEDGE_TEST_CRASH_AT").is_some_and(|at| at == point) {
        eprintln!("wedge: WEDGE_TEST_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}
