//! `wedge pull REF -o FILE`: fetch a function published as a Wasm OCI artifact.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use wedge_engine::cache::ArtifactCache;
use wedge_engine::durable::write_atomically;
use wedge_engine::units::format_size;
use wedge_oci::{BlobStore, Pulled};

use crate::exit::{Failure, Status, WithStatus};
use crate::registry::{RegistryArgs, client, parse_reference, parse_size_arg, registry_failure};

#[derive(clap::Args)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    reference: String,
    /// Where to write the function's .wasm (whole or not at all).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Write the artifact's other layers (files, models) into this directory, each under its
    /// title.
    #[arg(long, value_name = "DIR")]
    files_dir: Option<PathBuf>,
    /// The most to download: the config and all layers together.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size_arg)]
    max_size: u64,
    /// Keep no local copy: without it, blobs are kept by digest in the cache directory
    /// (`~/.cache/wedge/oci`), so pulling the same artifact again downloads nothing.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn pull(args: PullArgs) -> Result<(), Failure> {
    let reference = parse_reference(&args.reference)?;
    let mut options = args.registry.options(&reference)?;
    options.max_pull_size = args.max_size;
    let client = client(options)?;
    // Without the cache, the blobs go to a directory that is removed afterwards.
    let scratch;
    let store = match ArtifactCache::default_dir().filter(|_| !args.no_cache) {
        Some(dir) => BlobStore::new(dir.join("oci")),
        None => {
            scratch = tempfile::tempdir()
                .context("cannot create a temporary directory for the download")
                .status(Status::Internal)?;
            BlobStore::new(scratch.path())
        }
    };
    let pulled = client.pull(&reference, &store).map_err(registry_failure)?;
    let (wasm_layer, wasm_path) = pulled.wasm();
    copy_out(wasm_path, &args.output)?;
    let others = write_files(&pulled, args.files_dir.as_deref())?;
    eprintln!(
        "wedge: pulled {} ({}, {}; {}) to `{}`",
        pulled.reference,
        pulled.config.as_ref().map_or("wasm", |c| c.os.as_str()),
        format_size(wasm_layer.size),
        if pulled.downloaded == 0 {
            "all from the cache".to_string()
        } else {
            format!("downloaded {}", format_size(pulled.downloaded))
        },
        args.output.display()
    );
    if let Some(note) = others {
        eprintln!("{note}");
    }
    println!("{}", pulled.reference);
    Ok(())
}

fn copy_out(from: &Path, to: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(from)
        .with_context(|| format!("cannot read the pulled blob `{}`", from.display()))
        .status(Status::Internal)?;
    write_atomically(to, &bytes)
        .with_context(|| format!("cannot write `{}`", to.display()))
        .status(Status::Internal)
}

/// Writes the non-Wasm layers into `dir` by title; without `dir`, says what was not written.
fn write_files(pulled: &Pulled, dir: Option<&Path>) -> Result<Option<String>, Failure> {
    let others: Vec<usize> = (0..pulled.manifest.layers.len())
        .filter(|&index| index != pulled.wasm_layer)
        .collect();
    if others.is_empty() {
        return Ok(None);
    }
    let Some(dir) = dir else {
        let names: Vec<String> = others
            .iter()
            .map(|&i| {
                let layer = &pulled.manifest.layers[i];
                format!(
                    "{} ({})",
                    layer.title().unwrap_or("untitled"),
                    layer.media_type
                )
            })
            .collect();
        return Ok(Some(format!(
            "wedge: the artifact has {} more layer{} that {} not written: {}; --files-dir DIR writes them",
            others.len(),
            if others.len() == 1 { "" } else { "s" },
            if others.len() == 1 { "was" } else { "were" },
            names.join(", ")
        )));
    };
    for &index in &others {
        let layer = &pulled.manifest.layers[index];
        let Some(title) = layer.title() else {
            return Err(Failure::new(
                Status::BadArtifact,
                anyhow!(
                    "layer {index} ({}) of {} has no title (org.opencontainers.image.title), so it has no file name to be written under",
                    layer.media_type,
                    pulled.reference
                ),
            ));
        };
        // A title is a file name, never a path: a layer must not write outside `dir`.
        let safe = !title.is_empty()
            && title != "."
            && title != ".."
            && !title.contains(['/', '\\', '\0']);
        if !safe {
            return Err(Failure::new(
                Status::BadArtifact,
                anyhow!(
                    "layer {index} of {} is titled {title:?}, which is not a plain file name; it was not written",
                    pulled.reference
                ),
            ));
        }
        copy_out(&pulled.layer_paths[index], &dir.join(title))?;
    }
    Ok(None)
}
