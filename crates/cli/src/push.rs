//! `wedge push FILE.wasm REGISTRY/REPO:TAG`: publish a function as a Wasm OCI artifact.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use wedge_engine::units::format_size;
use wedge_oci::{Artifact, Layer, media_type};

use crate::exit::{Failure, Status, WithStatus};
use crate::registry::{RegistryArgs, client, parse_reference, parse_size_arg, registry_failure};

#[derive(clap::Args)]
pub struct PushArgs {
    /// The function: a core module (wasip1) or a component (wasip2).
    file: PathBuf,
    /// Where to push it: REGISTRY/REPOSITORY:TAG, e.g. ghcr.io/acme/hello:1.
    reference: String,
    /// A further file the function needs, as another layer: PATH, or PATH:MEDIA_TYPE
    /// [default media type: application/vnd.wedge.file.v1; AI models:
    /// application/vnd.wedge.model.v1]. Its file name is the layer's title. Repeatable.
    #[arg(long = "file", value_name = "PATH[:MEDIA_TYPE]")]
    files: Vec<String>,
    /// Blobs larger than this are uploaded in chunks of this size.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size_arg)]
    chunk_size: u64,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn push(args: PushArgs) -> Result<(), Failure> {
    let reference = parse_reference(&args.reference)?;
    if reference.digest().is_some() {
        return Err(Failure::new(
            Status::Usage,
            anyhow!(
                "`{}`: push to a tag (REGISTRY/REPOSITORY:TAG); the digest is what the push computes",
                args.reference
            ),
        ));
    }
    let wasm = read(&args.file)?;
    let mut files = Vec::with_capacity(args.files.len());
    for spec in &args.files {
        let (path, media_type) = split_file_spec(spec);
        files.push(Layer {
            media_type: media_type.to_string(),
            data: read(Path::new(path))?,
            title: Some(file_name(Path::new(path))),
        });
    }
    let created = wedge_oci::manifest::rfc3339(std::time::SystemTime::now());
    let artifact = Artifact::build(wasm, &file_name(&args.file), files, created)
        .map_err(registry_failure)
        .map_err(|failure| {
            let status = failure.status;
            Failure::new(
                status,
                failure
                    .error
                    .context(format!("cannot push `{}`", args.file.display())),
            )
        })?;
    let mut options = args.registry.options(&reference)?;
    options.chunk_size = Some(args.chunk_size);
    let client = client(options)?;
    let digest = client
        .push(&reference, &artifact)
        .map_err(registry_failure)?;
    let total: u64 = artifact.layers.iter().map(|(d, _)| d.size).sum();
    eprintln!(
        "wedge: pushed `{}` ({}, {}, {} layer{}) to {reference}",
        args.file.display(),
        artifact.config.os,
        format_size(total),
        artifact.layers.len(),
        if artifact.layers.len() == 1 { "" } else { "s" }
    );
    println!("{}", reference.with_digest(digest));
    Ok(())
}

/// `PATH:MEDIA_TYPE` when what follows the last `:` looks like a media type (`type/subtype`),
/// so a path with a colon in it still works alone.
fn split_file_spec(spec: &str) -> (&str, &str) {
    match spec.rsplit_once(':') {
        Some((path, media)) if media.contains('/') && !path.is_empty() => (path, media),
        _ => (spec, media_type::WEDGE_FILE),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .with_context(|| format!("cannot read `{}`", path.display()))
        .status(Status::NoInput)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function.wasm".to_string())
}

#[cfg(test)]
mod tests {
    use super::split_file_spec;

    #[test]
    fn file_specs() {
        assert_eq!(
            split_file_spec("m.onnx:application/vnd.wedge.model.v1"),
            ("m.onnx", "application/vnd.wedge.model.v1")
        );
        assert_eq!(
            split_file_spec("a:b.txt"),
            ("a:b.txt", "application/vnd.wedge.file.v1")
        );
    }
}
