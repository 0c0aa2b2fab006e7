//! `wedge`: a thin main. Parse the command line, run one subcommand, turn its failure into a
//! one-paragraph message and a documented exit status (docs/cli.md).

mod api_client;
mod build;
mod compile;
mod deploy;
mod exit;
mod functions;
mod input;
mod log_queue;
mod logs;
mod new;
mod pull;
mod push;
mod queues;
mod registry;
mod run;
mod serve;

use clap::{Parser, Subcommand};

use exit::{Failure, Status};

#[derive(Parser)]
#[command(
    name = "wedge",
    version,
    about = "A WebAssembly runtime and serverless-function platform for the edge",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WASI program: a core module, a component, a .wat file or a .cwasm artifact.
    Run(run::RunArgs),
    /// Compile a program ahead of time into a .cwasm artifact for this machine.
    Compile(compile::CompileArgs),
    /// Serve the functions of an app manifest over HTTP, a fresh instance per request.
    Serve(serve::ServeArgs),
    /// Create a function project from a template (`--list` shows them).
    New(new::NewArgs),
    /// Run the `build` command of each function in the app manifest and check the result.
    Build(build::BuildArgs),
    /// Upload a function to a running server (its deploy API) and print its URL.
    Deploy(deploy::DeployArgs),
    /// List a server's functions; show, remove or roll back a deployed one.
    Functions(functions::FunctionsArgs),
    /// Print a function's log; -f follows it.
    Logs(logs::LogsArgs),
    /// The node's durable queues: list them, send a message, show or replay dead letters.
    Queues(queues::QueuesArgs),
    /// Publish a function to a container registry as a Wasm OCI artifact.
    Push(push::PushArgs),
    /// Fetch a function (a Wasm OCI artifact) from a container registry.
    Pull(pull::PullArgs),
}

fn main() -> std::process::ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not failures; every real usage error exits with the
            // documented usage status rather than clap's default.
            let _ = error.print();
            return if error.use_stderr() {
                Status::Usage.into()
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    // The server logs its requests at info by default; the one-shot commands stay quiet.
    init_logging(matches!(cli.command, Command::Serve(_)));
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Compile(args) => compile::compile(args).map(|()| 0),
        Command::Serve(args) => serve::serve(args).map(|()| 0),
        Command::New(args) => new::new(args).map(|()| 0),
        Command::Build(args) => build::build(args).map(|()| 0),
        Command::Deploy(args) => deploy::deploy(args).map(|()| 0),
        Command::Functions(args) => functions::functions(args).map(|()| 0),
        Command::Logs(args) => logs::logs(args).map(|()| 0),
        Command::Queues(args) => queues::queues(args).map(|()| 0),
        Command::Push(args) => push::push(args).map(|()| 0),
        Command::Pull(args) => pull::pull(args).map(|()| 0),
    };
    // Queued log lines come out before a failure's message, and before the process exits.
    log_queue::flush_and_stop();
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> std::process::ExitCode {
    eprintln!("wedge: {}", failure.message());
    failure.status.into()
}

/// Logging costs start-up time, so `run` and `compile` set it up only when asked for with
/// `RUST_LOG`; `serve` logs at info unless `RUST_LOG` says otherwise, through a queue to a
/// writer thread (a line per request; see log_queue.rs).
fn init_logging(serving: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) => filter,
        Err(_) if serving => "info".to_string(),
        Err(_) => return,
    };
    use std::io::IsTerminal;
    let logging = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal());
    // Without a writer thread (none could be started), lines are written where they happen.
    match serving.then(log_queue::start) {
        Some(Ok(queue)) => logging.with_writer(queue).init(),
        _ => logging.with_writer(std::io::stderr).init(),
    }
}

std::thread_local! {
    /// Whether a panic on this thread is caught where it happens (a request of `wedge
    /// serve`: see `contain_panics_on_this_thread`).
    static PANICS_CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as one whose panics are caught and contained: `wedge serve`'s worker
/// threads, where each request's handling runs under `catch_unwind` (one request answers
/// 500) and every task under tokio's (one connection or guest task ends). The hook then
/// reports the panic and lets it unwind to that catch, instead of ending the process and
/// every tenant's functions with it.
pub(crate) fn contain_panics_on_this_thread() {
    PANICS_CONTAINED.with(|contained| contained.set(true));
}

/// A panic is a wedge bug: say so in one paragraph and exit with the internal-error status,
/// instead of a Rust backtrace; on a thread that contains its panics, report it and go on.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if PANICS_CONTAINED.with(|contained| contained.get()) {
            tracing::error!(
                target: "wedge::panic",
                "internal error (this is a bug in wedge, please report it), contained to one request or connection; the server keeps serving: {info}"
            );
            return;
        }
        log_queue::flush_and_stop();
        eprintln!("wedge: internal error (this is a bug in wedge, please report it): {info}");
        std::process::exit(i32::from(Status::Internal.code()));
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_on_a_contained_thread_does_not_end_the_process() {
        let previous = std::panic::take_hook();
        super::install_panic_hook();
        let joined = std::thread::spawn(|| {
            super::contain_panics_on_this_thread();
            panic!("contained");
        })
        .join();
        std::panic::set_hook(previous);
        // Had the hook exited, this test process would be gone with status 134.
        assert!(joined.is_err(), "the panic unwound to the thread's end");
    }
}
