//! WASI: arguments, environment, standard streams and preopened directories, for core
//! modules (preview 1) and components (0.2).
//!
//! Network access is never granted here: `WasiCtxBuilder` denies every socket address and
//! name lookup unless told otherwise, and we never tell it otherwise.

pub mod capture;

use std::path::PathBuf;

use bytes::Bytes;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use capture::CapturePipe;

use crate::capability::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

impl Preopen {
    /// Parses `HOST[::GUEST]`; the guest path defaults to the host path, as in wasmtime.
    pub fn parse(spec: &str, read_only: bool) -> Result<Self, WasiError> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(WasiError::BadDirSpec(spec.to_string()));
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            read_only,
        })
    }
}

/// What a function's configuration grants through WASI: environment variables and
/// directories. (Arguments and standard streams belong to each call: [`GuestIo`].)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasiConfig {
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
}

/// A guest's standard input.
#[derive(Debug, Clone, Default)]
pub enum GuestStdin {
    /// Empty: reads see the end at once.
    #[default]
    Empty,
    /// These bytes (a WAGI request's body).
    Bytes(Bytes),
    /// The host process's own stdin (`wedge run`).
    Inherit,
}

/// Where a guest's stdout or stderr goes.
#[derive(Clone, Default)]
pub enum GuestOutput {
    /// Dropped.
    #[default]
    Discard,
    /// Kept in memory, bounded (for the function's log, or a WAGI response).
    Capture(CapturePipe),
    /// The host process's own stream (`wedge run`).
    Inherit,
}

/// What one call hands its instance: argv, per-call environment, standard streams.
#[derive(Clone, Default)]
pub struct GuestIo {
    /// argv, including argv[0].
    pub args: Vec<String>,
    /// Per-call variables (a WAGI request's CGI variables). The function's own `env` wins
    /// over a variable of the same name.
    pub env: Vec<(String, String)>,
    pub stdin: GuestStdin,
    pub stdout: GuestOutput,
    pub stderr: GuestOutput,
}

#[derive(Debug, thiserror::Error)]
pub enum WasiError {
    #[error("`{0}` is not a directory grant: write HOST or HOST::GUEST, e.g. ./data::/data")]
    BadDirSpec(String),
    #[error("cannot grant the directory `{host}`: {reason}")]
    Preopen {
        host: String,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

impl WasiConfig {
    fn builder(&self, io: &GuestIo) -> Result<WasiCtxBuilder, WasiError> {
        let mut builder = WasiCtxBuilder::new();
        builder.args(&io.args);
        for (name, value) in &io.env {
            if !self.env.iter().any(|(own, _)| own == name) {
                builder.env(name, value);
            }
        }
        for (name, value) in &self.env {
            builder.env(name, value);
        }
        match &io.stdin {
            GuestStdin::Empty => {}
            GuestStdin::Bytes(bytes) => {
                builder.stdin(MemoryInputPipe::new(bytes.clone()));
            }
            GuestStdin::Inherit => {
                builder.inherit_stdin();
            }
        }
        match &io.stdout {
            GuestOutput::Discard => {}
            GuestOutput::Capture(pipe) => {
                builder.stdout(pipe.clone());
            }
            GuestOutput::Inherit => {
                builder.inherit_stdout();
            }
        }
        match &io.stderr {
            GuestOutput::Discard => {}
            GuestOutput::Capture(pipe) => {
                builder.stderr(pipe.clone());
            }
            GuestOutput::Inherit => {
                builder.inherit_stderr();
            }
        }
        for preopen in &self.preopens {
            let host = preopen.host.display().to_string();
            match std::fs::metadata(&preopen.host) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(WasiError::Preopen {
                        host,
                        reason: "it is not a directory".into(),
                        source: None,
                    });
                }
                Err(error) => {
                    return Err(WasiError::Preopen {
                        host,
                        reason: error.to_string(),
                        source: Some(error),
                    });
                }
            }
            let perms = if preopen.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|error| WasiError::Preopen {
                    host,
                    reason: format!("{error:#}"),
                    source: None,
                })?;
        }
        Ok(builder)
    }

    /// The context for a preview-1 core module.
    pub fn build_p1(&self, io: &GuestIo) -> Result<WasiP1Ctx, WasiError> {
        Ok(self.builder(io)?.build_p1())
    }

    /// The context for a WASI 0.2 component.
    pub fn build_p2(&self, io: &GuestIo) -> Result<WasiCtx, WasiError> {
        Ok(self.builder(io)?.build())
    }
}

/// WASI as a capability: preview 1 for core modules, 0.2 for components. Always offered.
pub struct Wasi;

impl Capability for Wasi {
    type Config = WasiConfig;
    type Services = ();
    type Grant = WasiConfig;
    type ComponentState = WasiCtx;
    type ModuleState = WasiP1Ctx;

    const COMPONENT_IMPORTS: &'static [&'static str] = PROVIDED_P2_PACKAGES;
    const MODULE_IMPORTS: &'static [&'static str] = &[PREVIEW1_MODULE];

    fn offered((): &()) -> bool {
        true
    }

    fn prepare(
        config: &WasiConfig,
        (): &(),
        _: FunctionIdentity<'_>,
    ) -> Result<WasiConfig, GrantError> {
        Ok(config.clone())
    }

    fn component_state(
        grant: &WasiConfig,
        instance: &InstanceInfo<'_>,
    ) -> Result<WasiCtx, InstanceError> {
        grant
            .build_p2(instance.io)
            .map_err(|error| instance_error(instance, error))
    }

    fn module_state(
        grant: &WasiConfig,
        instance: &InstanceInfo<'_>,
    ) -> Result<WasiP1Ctx, InstanceError> {
        grant
            .build_p1(instance.io)
            .map_err(|error| instance_error(instance, error))
    }
}

fn instance_error(instance: &InstanceInfo<'_>, error: WasiError) -> InstanceError {
    InstanceError {
        function: instance.function.to_string(),
        reason: error.to_string(),
    }
}

/// The import module of WASI preview 1.
pub const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// The WASI 0.2 packages a component may import under `wedge run`.
pub const PROVIDED_P2_PACKAGES: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Whether a component import (`wasi:cli/environment@0.2.3`) names a provided package.
pub fn is_provided_p2_import(name: &str) -> bool {
    PROVIDED_P2_PACKAGES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// For an import wedge does not provide, what would provide it (or why nothing will).
pub fn import_hint(module: &str, field: &str) -> Option<&'static str> {
    if module.starts_with("wasi:http/") {
        return Some(
            "HTTP is provided by `wedge serve`: a function serving `wasi:http/incoming-handler` may call out through `wasi:http/outgoing-handler` to its allowed_outbound_hosts; `wedge run` grants no network",
        );
    }
    if module == "wasi_unstable" {
        return Some(
            "`wasi_unstable` is WASI snapshot 0, which wedge does not support: rebuild the program for wasm32-wasip1 with a current toolchain",
        );
    }
    if module == PREVIEW1_MODULE {
        return Some(
            "this WASI preview 1 function does not exist: the module was built for a WASI version newer or older than preview 1's final form",
        );
    }
    if module == "env" && field == "abort" {
        return Some(
            "AssemblyScript modules import env.abort: build with `--runtime stub` and `--use abort=` (or provide your own abort)",
        );
    }
    if module == "env" {
        return Some(
            "`env` imports are functions the toolchain expected the host to supply (often missing symbols at link time): rebuild so the program defines them, or target wasm32-wasip1",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_specs() {
        let p = Preopen::parse("./data::/data", false).unwrap();
        assert_eq!(p.host, PathBuf::from("./data"));
        assert_eq!(p.guest, "/data");
        let p = Preopen::parse("/tmp", true).unwrap();
        assert_eq!(p.guest, "/tmp");
        assert!(p.read_only);
        assert!(Preopen::parse("::/data", false).is_err());
        assert!(Preopen::parse("/tmp::", false).is_err());
    }

    #[test]
    fn missing_directory_is_refused_with_its_name() {
        let config = WasiConfig {
            preopens: vec![Preopen::parse("/definitely/not/here::/x", false).unwrap()],
            ..WasiConfig::default()
        };
        let error = config
            .build_p1(&GuestIo::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/definitely/not/here"), "{error}");
    }

    #[test]
    fn hints_name_the_grant() {
        assert!(
            import_hint("wasi:http/outgoing-handler@0.2.0", "")
                .unwrap()
                .contains("wedge serve")
        );
        assert!(import_hint("wasi_unstable", "fd_write").is_some());
        assert!(is_provided_p2_import("wasi:cli/environment@0.2.3"));
        assert!(!is_provided_p2_import("wasi:http/types@0.2.3"));
    }
}
