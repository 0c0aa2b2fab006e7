//! `wedge run`: a straight pipeline: read → engine → load (cache) → link WASI → instantiate
//! with limits → call `_start`, `wasi:cli/run` or the `--invoke`d export → exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use wasmtime::{Linker, Store, Val};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;
use wedge_capabilities::wasi::{self, GuestIo, GuestOutput, GuestStdin, Preopen, WasiConfig};
use wedge_engine::cache::ArtifactCache;
use wedge_engine::limits::{GuestLimiter, Limits};
use wedge_engine::outcome::GuestFailure;
use wedge_engine::program::{self, LoadSource, Loader};
use wedge_engine::units::{self, format_size};
use wedge_engine::{EngineOptions, Program, ProgramKind, WedgeEngine, invoke};
use wedge_host::command::Command;
use wedge_host::{ComponentState, ModuleState};

use crate::exit::{Failure, Status, WithStatus};
use crate::input::{load_failure, read_program};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Preopen a host directory read-write, as GUEST in the guest (default: the same path).
    /// Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Preopen a host directory read-only. Repeatable.
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]")]
    dirs_read_only: Vec<String>,
    /// Set an environment variable for the guest; NAME alone passes wedge's own value.
    /// Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Pass wedge's whole environment to the guest (--env entries override it).
    #[arg(long)]
    env_inherit: bool,
    /// Call the exported function NAME instead of `_start`; ARGS are its arguments, parsed
    /// by its signature (i32, i64, f32, f64). Results are printed one per line.
    #[arg(long, value_name = "NAME")]
    invoke: Option<String>,
    /// Largest size of each linear memory, e.g. 64MiB. Growth beyond it fails in the guest.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    max_memory: Option<u64>,
    /// Wall-clock limit for the whole run, e.g. 500ms or 2s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    timeout: Option<Duration>,
    /// Instruction budget: the guest traps when it has used N units of fuel.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Do not read or write the compilation cache.
    #[arg(long)]
    no_cache: bool,
    /// The program: a .wasm core module or component, a .wat file or a .cwasm artifact.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Arguments for the program (its argv after argv[0]), or for the --invoke'd function.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    units::parse_size(text).map_err(|error| error.to_string())
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    units::parse_duration(text).map_err(|error| error.to_string())
}

pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let bytes = read_program(&args.file)?;
    let (wasi, io) = grants(&args)?;
    let limits = Limits {
        max_memory: args.max_memory,
        fuel: args.fuel,
        timeout: args.timeout,
    };

    // A metered artifact needs a metered engine; give it an unlimited budget when no --fuel.
    let artifact_is_metered = program::peek_artifact(&bytes).is_some_and(|h| h.fuel_metering);
    let engine = WedgeEngine::new(EngineOptions {
        fuel_metering: limits.fuel.is_some() || artifact_is_metered,
        ..EngineOptions::default()
    })
    .status(Status::Internal)?;
    let cache = if args.no_cache {
        None
    } else {
        ArtifactCache::default_dir().map(ArtifactCache::new)
    };
    let (program, source) = Loader::new(&engine, cache.as_ref())
        .with_source_path(&args.file)
        .load(&bytes)
        .map_err(|error| load_failure(&args.file, error))?;
    if let LoadSource::Rebuilt { reason } = source {
        eprintln!(
            "wedge: warning: the cached compilation of `{}` was damaged ({reason}); it was discarded and rebuilt",
            args.file.display()
        );
    }

    let guest = Guest {
        path: &args.file,
        engine: &engine,
        limits: &limits,
        io: &io,
    };
    // The host links every capability async; a command runs on a runtime of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .status(Status::Internal)?;
    if let Some(timeout) = limits.timeout {
        arm_deadline(timeout, args.file.display().to_string());
    }
    match program {
        Program::Module(module) => {
            runtime.block_on(guest.run_module(&module, wasi, args.invoke.as_deref(), &args.args))
        }
        Program::Component(component) => {
            if args.invoke.is_some() {
                return Err(Failure::new(
                    Status::Usage,
                    anyhow!(
                        "cannot --invoke in `{}`: it is a component, and --invoke calls exported functions of core modules only",
                        args.file.display()
                    ),
                ));
            }
            runtime.block_on(guest.run_component(&component, wasi))
        }
    }
}

/// argv, environment and directories from the flags, and the host's own standard streams.
/// Nothing else is granted.
fn grants(args: &RunArgs) -> Result<(WasiConfig, GuestIo), Failure> {
    let mut env: Vec<(String, String)> = Vec::new();
    if args.env_inherit {
        env.extend(std::env::vars());
    }
    for entry in &args.env {
        let (name, value) = match entry.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = std::env::var(entry).map_err(|_| {
                    Failure::new(
                        Status::Usage,
                        anyhow!(
                            "--env {entry}: `{entry}` is not set in wedge's environment; write --env {entry}=VALUE"
                        ),
                    )
                })?;
                (entry.clone(), value)
            }
        };
        if name.is_empty() {
            return Err(Failure::new(
                Status::Usage,
                anyhow!("--env {entry}: the variable name is empty; write --env NAME=VALUE"),
            ));
        }
        env.retain(|(existing, _)| existing != &name);
        env.push((name, value));
    }
    let mut preopens = Vec::new();
    for (spec, read_only) in args
        .dirs
        .iter()
        .map(|s| (s, false))
        .chain(args.dirs_read_only.iter().map(|s| (s, true)))
    {
        let flag = if read_only { "--dir-ro" } else { "--dir" };
        let preopen = Preopen::parse(spec, read_only)
            .map_err(|error| Failure::new(Status::Usage, anyhow!("{flag} {spec}: {error}")))?;
        preopens.push(preopen);
    }
    let mut argv = vec![args.file.display().to_string()];
    argv.extend(args.args.iter().cloned());
    Ok((
        WasiConfig { env, preopens },
        GuestIo {
            args: argv,
            env: Vec::new(),
            stdin: GuestStdin::Inherit,
            stdout: GuestOutput::Inherit,
            stderr: GuestOutput::Inherit,
        },
    ))
}

/// Starts the wall-clock deadline: a watchdog thread that ends the process with the timeout
/// status. Ending the process (rather than interrupting the guest) stops a guest wherever it
/// is, spinning in Wasm or blocked in a host call, and lets `wedge run` compile without
/// epoch checks, which cost up to tens of percent in tight loops. (`wedge serve`, which
/// must stop one request and keep running, compiles them in.)
fn arm_deadline(timeout: Duration, file: String) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("wedge: {}", timeout_message(&file, timeout));
        std::process::exit(i32::from(Status::Timeout.code()));
    });
}

fn timeout_message(file: &str, timeout: Duration) -> String {
    format!(
        "`{file}` ran past its time limit of {} (--timeout) and was stopped",
        units::format_duration(timeout)
    )
}

/// What every run needs to know about its guest.
struct Guest<'a> {
    path: &'a Path,
    engine: &'a WedgeEngine,
    limits: &'a Limits,
    io: &'a GuestIo,
}

impl Guest<'_> {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Applies fuel and the epoch deadline to a fresh store.
    fn limit_store<T>(&self, store: &mut Store<T>) -> Result<(), Failure> {
        if self.engine.options().fuel_metering {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| anyhow!("{e}"))
                .status(Status::Internal)?;
        }
        // One tick after the deadline thread fires; without a timeout, effectively never.
        // (Half of u64::MAX: wasmtime adds the current epoch to it.)
        let ticks = if self.limits.timeout.is_some() {
            1
        } else {
            u64::MAX / 2
        };
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok(())
    }

    fn command(&self, kind: ProgramKind, wasi: WasiConfig) -> Result<Command, Failure> {
        Command::new(&self.name(), kind, wasi).status(Status::Usage)
    }

    async fn run_module(
        &self,
        module: &wasmtime::Module,
        wasi: WasiConfig,
        invoke: Option<&str>,
        args: &[String],
    ) -> Result<u8, Failure> {
        // Check --invoke before anything runs, so a typo costs nothing.
        let call = match invoke {
            Some(name) => Some((
                name,
                invoke::prepare_call(module, name, args).map_err(|error| {
                    Failure::new(
                        Status::Usage,
                        anyhow!(
                            "--invoke {name}: {error}. `{}` exports:\n{}",
                            self.name(),
                            export_list(module)
                        ),
                    )
                })?,
            )),
            None => None,
        };

        let command = self.command(ProgramKind::Module, wasi)?;
        let linker: Linker<ModuleState> = command
            .module_linker(self.engine.engine())
            .map_err(|e| anyhow!("{e}"))
            .status(Status::Internal)?;
        let mut store = command
            .module_store(self.engine.engine(), self.io, self.limits)
            .status(Status::Usage)?;
        self.limit_store(&mut store)?;

        let pre = match linker.instantiate_pre(module) {
            Ok(pre) => pre,
            Err(error) => return Err(self.module_link_failure(module, &linker, &mut store, error)),
        };
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| self.instantiation_failure(&store, error))?;

        let Some((name, (ty, params))) = call else {
            let Some(start) = instance.get_func(&mut store, "_start") else {
                let kind = if instance.get_func(&mut store, "_initialize").is_some() {
                    "a reactor (library) module: it exports `_initialize` but no `_start`"
                } else {
                    "not a WASI command: it exports no `_start`"
                };
                return Err(Failure::new(
                    Status::BadProgram,
                    anyhow!(
                        "cannot run `{}`: it is {kind}. Call one of its exports with --invoke NAME [ARGS]:\n{}",
                        self.name(),
                        export_list(module)
                    ),
                ));
            };
            return match start.call_async(&mut store, &[], &mut []).await {
                Ok(()) => Ok(0),
                Err(error) => self.guest_failure(error, &store),
            };
        };

        // A reactor is initialised before any of its exports is called.
        if let Some(init) = instance.get_func(&mut store, "_initialize")
            && let Err(error) = init.call_async(&mut store, &[], &mut []).await
        {
            return self.guest_failure(error, &store);
        }
        let func = instance
            .get_func(&mut store, name)
            .ok_or_else(|| anyhow!("the export `{name}` vanished after instantiation"))
            .status(Status::Internal)?;
        let mut results = vec![Val::I32(0); ty.results().len()];
        if let Err(error) = func.call_async(&mut store, &params, &mut results).await {
            return self.guest_failure(error, &store);
        }
        let mut stdout = std::io::stdout().lock();
        for value in &results {
            writeln!(stdout, "{}", invoke::format_value(value))
                .map_err(|e| anyhow!("cannot print the results: {e}"))
                .status(Status::Internal)?;
        }
        Ok(0)
    }

    async fn run_component(
        &self,
        component: &wasmtime::component::Component,
        wasi: WasiConfig,
    ) -> Result<u8, Failure> {
        // An HTTP handler imports wasi:http, which `run` does not link: say what it is before
        // linking would report the first missing import.
        if component
            .component_type()
            .exports(self.engine.engine())
            .any(|(name, _)| name.starts_with("wasi:http/incoming-handler"))
        {
            return Err(Failure::new(
                Status::MissingImport,
                anyhow!(
                    "cannot run `{}`: it is an HTTP handler (it exports wasi:http/incoming-handler), not a command; serve it with `wedge serve` (docs/serve.md)",
                    self.name()
                ),
            ));
        }
        let command = self.command(ProgramKind::Component, wasi)?;
        let linker = command
            .component_linker(self.engine.engine())
            .map_err(|e| anyhow!("{e}"))
            .status(Status::Internal)?;
        let mut store = command
            .component_store(self.engine.engine(), self.io, self.limits)
            .status(Status::Usage)?;
        self.limit_store(&mut store)?;

        let pre = linker
            .instantiate_pre(component)
            .map_err(|error| self.component_link_failure(&command, component, error))?;
        let command_pre = CommandPre::new(pre).map_err(|_| {
            let engine = self.engine.engine();
            let exports: Vec<String> = component
                .component_type()
                .exports(engine)
                .map(|(name, _)| name.to_string())
                .collect();
            Failure::new(
                Status::BadProgram,
                anyhow!(
                    "cannot run `{}`: it is a component but not a WASI command (it does not export wasi:cli/run). Its exports: {}.",
                    self.name(),
                    if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
                ),
            )
        })?;
        let instance = command_pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| self.instantiation_failure(&store, error))?;
        match instance.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            // `wasi:cli/run` returned its error variant: the program's way of failing.
            Ok(Err(())) => Ok(1),
            Err(error) => self.guest_failure(error, &store),
        }
    }

    /// An error from running guest code: its own exit, or a trap, timeout or fuel exhaustion.
    fn guest_failure<T: HasLimiter>(
        &self,
        error: wasmtime::Error,
        store: &Store<T>,
    ) -> Result<u8, Failure> {
        if let Some(exit) = error.downcast_ref::<I32Exit>() {
            if let Ok(code) = u8::try_from(exit.0)
                && code <= 125
            {
                return Ok(code);
            }
            return Err(Failure::new(
                Status::Trap,
                anyhow!(
                    "`{}` exited with status {}, outside the range 0–125 that a program may use (126 and above are wedge's own; see docs/cli.md)",
                    self.name(),
                    exit.0
                ),
            ));
        }
        let failure = GuestFailure::classify(&error, store.data().limiter().refused());
        let (status, message) = match &failure {
            GuestFailure::Timeout => (
                Status::Timeout,
                timeout_message(&self.name(), self.limits.timeout.unwrap_or_default()),
            ),
            GuestFailure::OutOfFuel => (
                Status::OutOfFuel,
                format!(
                    "`{}` ran out of fuel: it used its whole budget of {} units (--fuel) and was stopped; raise --fuel to let it run longer",
                    self.name(),
                    self.limits.fuel.unwrap_or(u64::MAX)
                ),
            ),
            GuestFailure::Trap { .. } => (Status::Trap, format!("`{}` {failure}", self.name())),
        };
        Err(Failure::new(status, anyhow!(message)))
    }

    /// Instantiation failed: the memory limit (initial memory too large) or a start trap.
    fn instantiation_failure<T: HasLimiter>(
        &self,
        store: &Store<T>,
        error: wasmtime::Error,
    ) -> Failure {
        if let Some(refused) = store.data().limiter().refused()
            && refused.current == 0
        {
            return Failure::new(
                Status::Trap,
                anyhow!(
                    "cannot start `{}`: its initial memory of {} is larger than the limit of {} (--max-memory); raise the limit",
                    self.name(),
                    format_size(refused.desired as u64),
                    format_size(refused.limit as u64)
                ),
            );
        }
        match self.guest_failure(error, store) {
            Ok(code) => Failure::new(
                Status::Trap,
                anyhow!("`{}` exited with status {code} while starting", self.name()),
            ),
            Err(failure) => failure,
        }
    }

    /// Linking a core module failed: name the first import wedge does not provide.
    fn module_link_failure(
        &self,
        module: &wasmtime::Module,
        linker: &Linker<ModuleState>,
        store: &mut Store<ModuleState>,
        error: wasmtime::Error,
    ) -> Failure {
        for import in module.imports() {
            if linker.get_by_import(&mut *store, &import).is_none() {
                return missing_import(
                    &self.name(),
                    import.module(),
                    import.name(),
                    import_kind(&import.ty()),
                );
            }
        }
        Failure::new(
            Status::MissingImport,
            anyhow!(
                "cannot run `{}`: an import does not match what wedge provides: {}",
                self.name(),
                program::error_chain(&error)
            ),
        )
    }

    /// Linking a component failed: name the first import outside the provided WASI packages.
    fn component_link_failure(
        &self,
        command: &Command,
        component: &wasmtime::component::Component,
        error: wasmtime::Error,
    ) -> Failure {
        let engine = self.engine.engine();
        let ty = component.component_type();
        if let Some((name, _)) = ty
            .imports(engine)
            .find(|(name, _)| !command.provides_component_import(name))
        {
            return missing_import(&self.name(), name, "", "interface");
        }
        Failure::new(
            Status::MissingImport,
            anyhow!(
                "cannot run `{}`: it imports a WASI interface in a version or shape wedge does not provide: {}",
                self.name(),
                program::error_chain(&error)
            ),
        )
    }
}

trait HasLimiter {
    fn limiter(&self) -> &GuestLimiter;
}

impl HasLimiter for ModuleState {
    fn limiter(&self) -> &GuestLimiter {
        ModuleState::limiter(self)
    }
}

impl HasLimiter for ComponentState {
    fn limiter(&self) -> &GuestLimiter {
        ComponentState::limiter(self)
    }
}

fn missing_import(file: &str, module: &str, field: &str, kind: &str) -> Failure {
    let what = if field.is_empty() {
        format!("`{module}`")
    } else {
        format!("`{module}::{field}` ({kind})")
    };
    let hint = match wasi::import_hint(module, field) {
        Some(hint) => format!(" {hint}."),
        None => " No wedge flag or capability provides it: remove the import or rebuild the program without it.".to_string(),
    };
    Failure::new(
        Status::MissingImport,
        anyhow!("cannot run `{file}`: it imports {what}, which wedge does not provide.{hint}"),
    )
}

fn import_kind(ty: &wasmtime::ExternType) -> &'static str {
    match ty {
        wasmtime::ExternType::Func(_) => "a function",
        wasmtime::ExternType::Global(_) => "a global",
        wasmtime::ExternType::Table(_) => "a table",
        wasmtime::ExternType::Memory(_) => "a memory",
        wasmtime::ExternType::Tag(_) => "a tag",
    }
}

fn export_list(module: &wasmtime::Module) -> String {
    let exports = invoke::describe_exports(module);
    if exports.is_empty() {
        return "  (no exports)".to_string();
    }
    exports
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
