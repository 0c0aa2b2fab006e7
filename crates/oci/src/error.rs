//! What can go wrong talking to a registry, each with a message that says what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Digest;
use crate::reference::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// 404: the repository, the tag, the manifest or a blob is not in the registry.
    #[error("{what} is not in the registry {registry} ({detail})")]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },

    /// 401 after authenticating as the registry asked, or no credentials where some are needed.
    #[error("the registry {registry} refused {operation}: {problem}")]
    Unauthorized {
        registry: String,
        operation: String,
        problem: String,
    },

    /// 403: authenticated, but not allowed.
    #[error(
        "the registry {registry} denied {operation} ({detail}): these credentials may not do that"
    )]
    Denied {
        registry: String,
        operation: String,
        detail: String,
    },

    /// The reference is not a Wasm artifact, or a layer has a media type wedge cannot use.
    #[error("{what} has media type {found}; wedge needs {expected}")]
    WrongMediaType {
        what: String,
        found: String,
        expected: String,
    },

    /// What the registry sent does not hash to the digest it was asked for: nothing of it is
    /// kept.
    #[error(
        "{what} does not match its digest: asked for {expected}, received content with digest {actual}; nothing was stored (the registry's copy is damaged, or something between rewrote it)"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// The registry sent more or fewer bytes than the manifest declares.
    #[error(
        "{what} should be {declared} bytes, as its descriptor says, but the registry sent {received}; nothing was stored"
    )]
    SizeMismatch {
        what: String,
        declared: u64,
        received: String,
    },

    /// Over the caller's size limit: refused before it is downloaded, where the size is known.
    #[error(
        "{what} is {size} bytes, over the limit of {limit} bytes; raise the limit (wedge pull --max-size) if it is expected"
    )]
    TooLarge { what: String, size: u64, limit: u64 },

    /// The registry did not answer in time.
    #[error(
        "the registry {registry} did not answer {operation} within {after:?} (is it up, and reachable from here?)"
    )]
    Timeout {
        registry: String,
        operation: String,
        after: Duration,
        #[source]
        source: Box<ureq::Error>,
    },

    /// No connection: unknown host, refused, reset.
    #[error("cannot reach the registry {registry} for {operation}")]
    Unreachable {
        registry: String,
        operation: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// TLS failed: most often a certificate this machine does not trust.
    #[error(
        "TLS with the registry {registry} failed; if it uses a private CA, point SSL_CERT_FILE at a bundle that has it"
    )]
    Tls {
        registry: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The registry speaks plain HTTP and it is neither on loopback nor allowed.
    #[error(
        "the registry {registry} does not speak TLS (it answered in plain HTTP); wedge uses plain HTTP only on loopback or with --insecure-registry, for a registry on a network you trust"
    )]
    PlainHttpRefused { registry: String },

    /// A token realm on plain HTTP off loopback would see the credentials in the clear.
    #[error(
        "the registry {registry} asks for a token from {realm}, a plain-HTTP address off this machine; wedge does not send credentials there unless --insecure-registry allows it"
    )]
    InsecureRealm { registry: String, realm: String },

    /// Any other status.
    #[error("the registry {registry} answered {operation} with {status}: {message}")]
    Registry {
        registry: String,
        operation: String,
        status: u16,
        message: String,
    },

    /// The registry said something that is not the distribution protocol.
    #[error(
        "the registry {registry} answered {operation} in a way wedge does not understand: {problem}"
    )]
    Protocol {
        registry: String,
        operation: String,
        problem: String,
    },

    #[error("{what} is not a valid OCI manifest")]
    InvalidManifest {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the config of {what} is not a valid Wasm config ({problem})")]
    InvalidConfig { what: String, problem: String },

    /// What is being pushed is not Wasm.
    #[error("it is not WebAssembly: {reason}")]
    NotWasm { reason: String },

    #[error("it is not valid WebAssembly")]
    InvalidWasm {
        #[source]
        source: wasmparser::BinaryReaderError,
    },

    #[error("cannot encode the manifest or config")]
    Encode {
        #[source]
        source: serde_json::Error,
    },

    /// Reading or writing the local blob store.
    #[error("cannot {action} the blob store at {path}", path = path.display())]
    Store {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read the docker config {path}", path = path.display())]
    DockerConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the docker config {path} is malformed: {problem}", path = path.display())]
    DockerConfigInvalid { path: PathBuf, problem: String },

    #[error("cannot read the CA certificates in {path}", path = path.display())]
    RootCertificates {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What kind of failure an error is, for callers that map failures to exit statuses or HTTP
/// statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A reference, flag or config file the caller gave is wrong.
    Usage,
    /// What was to be pushed is not a function.
    NotWasm,
    /// The registry does not have it (404).
    NotFound,
    /// Authentication or authorisation failed (401, 403, no credentials).
    Auth,
    /// What the registry holds is not a usable Wasm artifact: media type, digest, size, limit.
    BadArtifact,
    /// The registry cannot be reached, did not answer in time, or TLS failed.
    Unreachable,
    /// The registry answered with an error or in a way that is not the protocol.
    Registry,
    /// A local failure: the blob store's disk.
    Local,
}

impl OciError {
    pub fn kind(&self) -> ErrorKind {
        use OciError::*;
        match self {
            Reference(_) | DockerConfigUnreadable { .. } | DockerConfigInvalid { .. } => {
                ErrorKind::Usage
            }
            RootCertificates { .. } => ErrorKind::Usage,
            NotWasm { .. } | InvalidWasm { .. } => ErrorKind::NotWasm,
            NotFound { .. } => ErrorKind::NotFound,
            Unauthorized { .. } | Denied { .. } | InsecureRealm { .. } => ErrorKind::Auth,
            WrongMediaType { .. }
            | DigestMismatch { .. }
            | SizeMismatch { .. }
            | TooLarge { .. }
            | InvalidManifest { .. }
            | InvalidConfig { .. } => ErrorKind::BadArtifact,
            Timeout { .. } | Unreachable { .. } | Tls { .. } | PlainHttpRefused { .. } => {
                ErrorKind::Unreachable
            }
            Registry { .. } | Protocol { .. } => ErrorKind::Registry,
            Encode { .. } | Store { .. } => ErrorKind::Local,
        }
    }
}
