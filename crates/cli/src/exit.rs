//! Exit statuses. A guest's own exit status (0–125; WASI refuses higher ones) passes through
//! unchanged; wedge's own outcomes use 126 and above, so a script can always tell them apart.
//! Documented in docs/cli.md: keep the two in step.

/// wedge's own exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Bad command line: unknown flag, bad value, bad --invoke arguments.
    Usage,
    /// The input file is missing or unreadable.
    NoInput,
    /// The file is not a program wedge can run: not Wasm, invalid, incompatible artifact.
    BadProgram,
    /// The program imports something wedge does not provide.
    MissingImport,
    /// The guest trapped (including a trap caused by the memory limit).
    Trap,
    /// The wall-clock limit (--timeout) was reached.
    Timeout,
    /// The instruction budget (--fuel) ran out.
    OutOfFuel,
    /// wedge itself failed: an I/O error writing output, a port in use, a bug.
    Internal,
    /// The app manifest is invalid (serve).
    Config,
    /// A function's `build` command failed, its toolchain is missing, or it did not make a
    /// function of the expected kind (`wedge build`, `wedge serve --build`).
    BuildFailed,
    /// The wedge server answered an API request with an error (its message is shown).
    ApiRefused,
    /// The wedge server could not be reached (deploy, functions, logs).
    ServerUnreachable,
    /// The registry does not have the repository, tag or blob (push, pull).
    RegistryNotFound,
    /// The registry refused the credentials, needs some, or denied the operation.
    RegistryDenied,
    /// What the registry holds is not a usable Wasm artifact: media type, digest, size, or
    /// over --max-size.
    BadArtifact,
    /// The registry cannot be reached, did not answer in time, failed TLS, or answered with
    /// a server error.
    RegistryFailed,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Usage => 126,
            Status::NoInput => 127,
            Status::BadProgram => 128,
            Status::MissingImport => 129,
            Status::Trap => 131,
            Status::Timeout => 132,
            Status::OutOfFuel => 133,
            Status::Internal => 134,
            Status::Config => 135,
            Status::BuildFailed => 136,
            Status::ApiRefused => 137,
            Status::ServerUnreachable => 138,
            Status::RegistryNotFound => 139,
            Status::RegistryDenied => 140,
            Status::BadArtifact => 141,
            Status::RegistryFailed => 142,
        }
    }
}

impl From<Status> for std::process::ExitCode {
    fn from(status: Status) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// A failed command: what to say and which status to exit with.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(status: Status, error: impl Into<anyhow::Error>) -> Self {
        Self {
            status,
            error: error.into(),
        }
    }

    /// The error and its causes, outermost first, joined into one paragraph.
    pub fn message(&self) -> String {
        format!("{:#}", self.error)
    }
}

/// Attaches a status to any error: `result.status(Status::NoInput)?`.
pub trait WithStatus<T> {
    fn status(self, status: Status) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> WithStatus<T> for Result<T, E> {
    fn status(self, status: Status) -> Result<T, Failure> {
        self.map_err(|error| Failure::new(status, error))
    }
}
