//! What `wedge push` and `wedge pull` share: the registry flags, credentials (flags, then
//! docker's config.json), building the client, and the exit status of each registry failure.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use wedge_engine::units;
use wedge_oci::{Client, ClientOptions, Credentials, DockerConfig, ErrorKind, OciError, Reference};

use crate::exit::{Failure, Status, WithStatus};

/// How to reach and log in to a registry.
#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// The user to log in to the registry as; the password is read from stdin
    /// (--registry-password-stdin). Without it, the credentials of docker's config.json
    /// for this registry are used, if any.
    #[arg(long, value_name = "USER", requires = "registry_password_stdin")]
    registry_user: Option<String>,
    /// Read the registry password (or token) from stdin: its first line.
    #[arg(long, requires = "registry_user")]
    registry_password_stdin: bool,
    /// Allow plain HTTP to this reference's registry although it is not on loopback (a
    /// registry on a network you trust). TLS, when the registry speaks it, is still verified.
    #[arg(long)]
    insecure_registry: bool,
    /// The longest wait for the registry: to connect, for each read and write, for an answer.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg)]
    timeout: Duration,
}

pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    units::parse_duration(text).map_err(|error| error.to_string())
}

pub fn parse_size_arg(text: &str) -> Result<u64, String> {
    units::parse_size(text).map_err(|error| error.to_string())
}

pub fn parse_reference(text: &str) -> Result<Reference, Failure> {
    text.parse::<Reference>().status(Status::Usage)
}

impl RegistryArgs {
    /// The client options these flags and the environment ask for, for `reference`.
    pub fn options(&self, reference: &Reference) -> Result<ClientOptions, Failure> {
        let mut options = ClientOptions {
            timeout: self.timeout,
            ..ClientOptions::default()
        };
        if self.insecure_registry {
            options
                .insecure_registries
                .push(reference.registry().to_string());
        }
        if let Some(username) = &self.registry_user {
            options.credentials = Some(Credentials {
                username: username.clone(),
                password: read_password()?,
            });
        }
        if let Some(path) = docker_config_path() {
            options.docker_config = DockerConfig::load(&path).map_err(registry_failure)?;
        }
        Ok(options)
    }
}

pub fn client(options: ClientOptions) -> Result<Client, Failure> {
    Client::new(options).map_err(registry_failure)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (docker's and oras's rule).
fn docker_config_path() -> Option<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = from_env("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    from_env("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

fn read_password() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut text)
        .context("cannot read the registry password from stdin (--registry-password-stdin)")
        .status(Status::NoInput)?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(Failure::new(
            Status::Usage,
            anyhow!(
                "--registry-password-stdin: stdin was empty; pipe the password in, e.g. `echo \"$PASSWORD\" | wedge pull --registry-user USER --registry-password-stdin ...`"
            ),
        ));
    }
    Ok(password)
}

/// A registry failure with its documented exit status (docs/cli.md).
pub fn registry_failure(error: OciError) -> Failure {
    let status = match error.kind() {
        ErrorKind::Usage => Status::Usage,
        ErrorKind::NotWasm => Status::BadProgram,
        ErrorKind::NotFound => Status::RegistryNotFound,
        ErrorKind::Auth => Status::RegistryDenied,
        ErrorKind::BadArtifact => Status::BadArtifact,
        ErrorKind::Unreachable | ErrorKind::Registry => Status::RegistryFailed,
        ErrorKind::Local => Status::Internal,
    };
    Failure::new(status, error)
}
