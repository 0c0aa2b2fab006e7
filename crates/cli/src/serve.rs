//! `wedge serve`: config → engine → compile every function of the app manifest (or load it
//! from the cache) → restore the deployed ones from the data dir → pre-link → mount the
//! deploy API → listen → serve until SIGTERM or ctrl-c → drain → exit 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, anyhow};
use wedge_control::AppManifest;
use wedge_control::api::{ApiFuture as DeployApiFuture, ApiRequest as DeployApiRequest};
use wedge_control::api::{DeployApi, PREFIX};
use wedge_control::plane::{AppFunctions, ControlPlane, RestoreError};
use wedge_control::runtime_config::RuntimeConfig;
use wedge_control::store::{FunctionStore, StoreError, default_data_dir};
use wedge_control::token::{ApiToken, TokenOrigin};
use wedge_engine::cache::ArtifactCache;
use wedge_engine::program::{LoadError, Loader};
use wedge_engine::{WedgeEngine, units};
use wedge_host::{Function, Host, HostLimits, LoadFunctionError, Trigger};
use wedge_trigger_cron::{CronOptions, CronTrigger};
use wedge_trigger_http::{ApiFuture, ApiHandler, ApiRequest, Gateway, GatewayLimits};
use wedge_trigger_queue::QueueTrigger;

use crate::exit::{Failure, Status, WithStatus};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The app manifest [default: wedge.toml in the current directory, if there is one;
    /// without one, only functions deployed over the API are served].
    #[arg(long, value_name = "FILE")]
    app: Option<PathBuf>,
    /// Directory for wedge's state: deployed functions (wedge.db, blobs/), the API token and,
    /// in DIR/cache, compiled code [default: $XDG_DATA_HOME/wedge or ~/.local/share/wedge,
    /// with compiled code in the user cache directory, as for `wedge run`].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The deploy API's bearer token, in a file [default: DIR/api-token, created on first
    /// start].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Largest upload the deploy API accepts; larger ones get 413.
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = parse_size_arg)]
    max_upload_size: u64,
    /// Largest `max_memory` a deployed function may ask for.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size_arg)]
    max_function_memory: u64,
    /// Requests handled at once across all functions; more get 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_concurrency: usize,
    /// Largest request body; larger ones get 413.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size_arg)]
    max_body_size: u64,
    /// Time a client has to send its request headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    header_timeout: Duration,
    /// After SIGTERM or ctrl-c, how long requests in flight may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    shutdown_timeout: Duration,
    /// Run `wedge build` on the manifest first (each function's `build` command).
    #[arg(long)]
    build: bool,
    /// Which backend serves each key-value store and SQL database (docs/runtime-config.md)
    /// [default: every one is a SQLite file in DIR/state].
    #[arg(long, value_name = "FILE")]
    runtime_config: Option<PathBuf>,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    units::parse_size(text).map_err(|error| error.to_string())
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    units::parse_duration(text).map_err(|error| error.to_string())
}

/// Raises the soft limit on open files to the hard one, as Go programs and most servers do.
/// Every client connection is a file descriptor, and so is each embedded store's and
/// database's idle connection (three apiece: the file, its WAL, its shared memory); the usual
/// soft limit of 1,024 runs out long before a node hosting thousands of functions does.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), maximum) = (limit.current, limit.maximum) else {
        return; // already unlimited
    };
    let wanted = maximum.unwrap_or(u64::MAX);
    if wanted <= current {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: maximum,
        maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = current, to = wanted, "raised the open-file limit"),
        Err(error) => tracing::warn!(
            %error,
            current,
            "cannot raise the open-file limit; with many clients or stores, raise it with `ulimit -n`"
        ),
    }
}

pub fn serve(args: ServeArgs) -> Result<(), Failure> {
    if args.max_concurrency == 0 {
        return Err(Failure::new(
            Status::Usage,
            anyhow!("--max-concurrency must be 1 or more"),
        ));
    }
    // Without --app, a wedge.toml here is the app; without either, the server hosts only
    // what is deployed over the API.
    let manifest_path = match &args.app {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from("wedge.toml")).filter(|path| path.exists()),
    };
    if args.build {
        let Some(manifest_path) = &manifest_path else {
            return Err(Failure::new(
                Status::Usage,
                anyhow!(
                    "--build needs an app manifest: there is no wedge.toml in the current directory; pass it with --app FILE"
                ),
            ));
        };
        crate::build::build_app(manifest_path)?;
    }
    let manifest = match &manifest_path {
        Some(path) => Some(AppManifest::load(path).status(Status::Config)?),
        None => None,
    };
    let runtime_config = match &args.runtime_config {
        Some(path) => RuntimeConfig::load(path).status(Status::Config)?,
        None => RuntimeConfig::default(),
    };
    let data_dir = match args.data.clone().or_else(default_data_dir) {
        Some(dir) => dir,
        None => {
            return Err(Failure::new(
                Status::Usage,
                anyhow!(
                    "neither HOME nor XDG_DATA_HOME is set: pass the data directory with --data DIR"
                ),
            ));
        }
    };
    let store = FunctionStore::open(&data_dir).status(Status::Internal)?;
    // Key-value stores and SQL databases not moved to a server by the runtime config are
    // SQLite files here, beside the functions (one data dir, one owner: the store's lock).
    let services = runtime_config
        .services(&data_dir.join("state"))
        .status(Status::Config)?;
    let (token, token_origin) = match &args.token_file {
        Some(path) => (
            ApiToken::from_file(path).status(Status::Config)?,
            TokenOrigin::Existing,
        ),
        None => ApiToken::load_or_create(&data_dir).status(Status::Internal)?,
    };
    let host_limits = HostLimits {
        max_concurrency: args.max_concurrency,
        max_body_size: args.max_body_size,
        ..HostLimits::default()
    };
    let gateway_limits = GatewayLimits {
        header_timeout: args.header_timeout,
        shutdown_timeout: args.shutdown_timeout,
        ..GatewayLimits::default()
    };
    let app_entries = manifest
        .as_ref()
        .map(|m| m.functions.as_slice())
        .unwrap_or_default();
    let largest_memory = app_entries
        .iter()
        .map(|f| f.spec.max_memory)
        .fold(args.max_function_memory, u64::max);
    let engine = WedgeEngine::new(wedge_host::serving_engine_options(
        &host_limits,
        largest_memory,
    ))
    .status(Status::Internal)?;
    let host = Host::new(engine, services, host_limits);
    let cache = match &args.data {
        Some(dir) => Some(ArtifactCache::new(dir.join("cache"))),
        None => ArtifactCache::default_dir().map(ArtifactCache::new),
    };

    // Everything is compiled (or loaded from the cache) before the listener opens.
    let mut functions = Vec::new();
    for entry in app_entries {
        let where_ = format!(
            "`{}`, function `{}` (source `{}`)",
            manifest_path
                .as_deref()
                .unwrap_or(Path::new("wedge.toml"))
                .display(),
            entry.spec.name,
            entry.source.display()
        );
        let bytes = std::fs::read(&entry.source)
            .with_context(|| format!("{where_}: cannot read the source"))
            .status(Status::NoInput)?;
        if wedge_engine::artifact::is_artifact(&bytes) {
            return Err(Failure::new(
                Status::BadProgram,
                anyhow!(
                    "{where_}: it is a .cwasm made by `wedge compile`, which is for `wedge run`; give `wedge serve` the .wasm (it compiles and caches it itself)"
                ),
            ));
        }
        let (program, _) = Loader::new(host.engine(), cache.as_ref())
            .with_source_path(&entry.source)
            .load(&bytes)
            .map_err(|error| load_failure(&where_, error))?;
        let function = Function::load(host.engine(), entry.spec.clone(), program, host.services())
            .map_err(|error| {
                let status = match error {
                    LoadFunctionError::MissingImport { .. } | LoadFunctionError::Link(_) => {
                        Status::MissingImport
                    }
                    LoadFunctionError::Grant(_)
                    | LoadFunctionError::ConcurrentReuseNeedsP3(_)
                    | LoadFunctionError::ReuseNotHttp(_) => Status::Config,
                    _ => Status::BadProgram,
                };
                Failure::new(status, anyhow::Error::new(error).context(where_.clone()))
            })?;
        functions.push(Arc::new(function));
    }

    raise_open_file_limit();

    // Thread per core: each worker runs a single-threaded runtime and accepts on its own
    // handle of the one listening socket. A request, its guest task and its response body
    // then stay on one thread: measured in-process, the cross-thread wake-ups of a
    // work-stealing runtime cost more than the instantiation itself.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (sockets, local) = bind_listeners(args.listen, workers)
        .with_context(|| format!("cannot listen on {}", args.listen))
        .status(Status::Internal)?;
    let gateway = Gateway::new(host.clone(), gateway_limits);
    let app = AppFunctions {
        manifest: manifest.as_ref().map(|m| m.path.clone()),
        functions,
    };
    // Schedules run on a thread of the cron trigger's own; catch-up state in DATA/triggers.
    let cron = CronTrigger::start(
        host.clone(),
        CronOptions {
            record_dir: Some(data_dir.join("triggers")),
            shutdown_timeout: args.shutdown_timeout,
            on_thread_start: Some(crate::contain_panics_on_this_thread),
        },
    )
    .context("cannot start the cron trigger")
    .status(Status::Internal)?;
    // Event triggers run on a runtime of their own, off the HTTP workers; a panic there is
    // contained to its task, as on the workers.
    let trigger_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("wedge-trigger")
        .enable_all()
        .on_thread_start(crate::contain_panics_on_this_thread)
        .build()
        .context("cannot start the triggers' runtime")
        .status(Status::Internal)?;
    let queue_trigger = QueueTrigger::new(host.clone(), trigger_runtime.handle().clone());
    let event_triggers: Vec<Arc<dyn Trigger>> = vec![cron.clone(), queue_trigger];
    gateway.show_metrics_of(event_triggers.clone());
    let mut triggers: Vec<Arc<dyn Trigger>> = vec![gateway.clone()];
    triggers.extend(event_triggers.iter().cloned());
    let plane = ControlPlane::start(host, cache, triggers, app, store, args.max_function_memory)
        .map_err(|error| {
            let status = match error {
                RestoreError::Store(StoreError::InUse { .. }) | RestoreError::Store(_) => {
                    Status::Internal
                }
                _ => Status::Config,
            };
            Failure::new(status, anyhow!(error))
        })?;
    let token_path = token.path().to_path_buf();
    let (closing, closing_signal) = tokio::sync::watch::channel(false);
    gateway.mount_api(Arc::new(MountedApi(DeployApi::new(
        plane,
        token,
        args.max_upload_size,
        closing_signal,
    ))));
    print_urls(&gateway, local, &data_dir, token_path, token_origin);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::with_capacity(workers);
    for (index, socket) in sockets.into_iter().enumerate() {
        let gateway = gateway.clone();
        let mut stopped = stopped.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wedge-worker-{index}"))
            .spawn(move || -> anyhow::Result<()> {
                crate::contain_panics_on_this_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_start(crate::contain_panics_on_this_thread)
                    .build()
                    .context("cannot start a worker's async runtime")?;
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(socket).context("cannot listen")?;
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    gateway
                        .serve(listener, stop)
                        .await
                        .context("the server failed")
                })
            })
            .context("cannot start a worker thread")
            .status(Status::Internal)?;
        handles.push(handle);
    }

    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")
        .status(Status::Internal)?;
    signals.block_on(shutdown_signal());
    // Log followers end first, so they do not hold up the drain.
    let _ = closing.send(true);
    let _ = stop.send(true);
    // No new firings or deliveries; their calls in flight finish while the workers drain
    // theirs (the cron trigger waits for its own, up to --shutdown-timeout).
    for trigger in &event_triggers {
        trigger.stop();
    }
    let mut result = Ok(());
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => result = Err(Failure::new(Status::Internal, error)),
            Err(_) => {
                result = Err(Failure::new(
                    Status::Internal,
                    anyhow!("a worker thread panicked"),
                ))
            }
        }
    }
    // Deliveries still running get the same grace as requests.
    trigger_runtime.shutdown_timeout(args.shutdown_timeout);
    result
}

/// The listening socket, bound once (so a taken port is an error, never a shared one), and a
/// handle of it for each worker.
fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let mut listeners = Vec::with_capacity(count);
    for _ in 1..count.max(1) {
        listeners.push(listener.try_clone()?);
    }
    listeners.push(listener);
    Ok((listeners, local))
}

/// The deploy API (wedge-control) mounted on the HTTP trigger's `/_wedge/api/`.
struct MountedApi(DeployApi);

impl ApiHandler for MountedApi {
    fn handle(&self, request: ApiRequest, request_id: String) -> ApiFuture {
        let request: DeployApiRequest = request;
        let future: DeployApiFuture = self.0.handle(request, request_id);
        future
    }
}

fn load_failure(where_: &str, error: LoadError) -> Failure {
    Failure::new(Status::BadProgram, anyhow!("{where_}: {error}"))
}

fn print_urls(
    gateway: &Gateway,
    local: SocketAddr,
    data_dir: &std::path::Path,
    token_path: PathBuf,
    token_origin: TokenOrigin,
) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut routes = gateway.routes();
    let count = routes.len();
    let _ = writeln!(
        out,
        "wedge: serving {count} function{} on http://{local}",
        if count == 1 { "" } else { "s" }
    );
    routes.sort_by(|a, b| a.0.cmp(&b.0));
    for (route, function) in routes {
        let _ = writeln!(
            out,
            "  {:<20} {:<5} http://{local}{route}",
            function.spec.name, function.kind
        );
    }
    let _ = writeln!(
        out,
        "  metrics: http://{local}/_wedge/metrics   health: http://{local}/_wedge/health"
    );
    let _ = writeln!(
        out,
        "  deploy API: http://{local}{PREFIX}/   data: {}",
        data_dir.display()
    );
    let _ = writeln!(
        out,
        "  API token: {} ({})",
        token_path.display(),
        match token_origin {
            TokenOrigin::Created => "created now; keep it secret",
            TokenOrigin::Existing => "existing",
        }
    );
    let _ = out.flush();
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
