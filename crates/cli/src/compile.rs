//! `wedge compile`: ahead-of-time compilation into a wedge `.cwasm` artifact.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use wedge_engine::program::Loader;
use wedge_engine::{EngineOptions, WedgeEngine};

use crate::exit::{Failure, Status, WithStatus};
use crate::input::{load_failure, read_program};

#[derive(clap::Args)]
pub struct CompileArgs {
    /// The program: a .wasm core module or component, or a .wat file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to write the artifact.
    #[arg(short = 'o', long = "output", value_name = "OUT.cwasm")]
    output: PathBuf,
    /// Compile in fuel metering, so the artifact can be run with --fuel N.
    #[arg(long)]
    fuel: bool,
}

pub fn compile(args: CompileArgs) -> Result<(), Failure> {
    let bytes = read_program(&args.file)?;
    if wedge_engine::artifact::is_artifact(&bytes) {
        return Err(Failure::new(
            Status::BadProgram,
            anyhow!(
                "cannot compile `{}`: it is already a compiled wedge artifact; compile its .wasm or .wat instead",
                args.file.display()
            ),
        ));
    }
    let engine = WedgeEngine::new(EngineOptions {
        fuel_metering: args.fuel,
        ..EngineOptions::default()
    })
    .status(Status::Internal)?;
    let (artifact, _kind) = Loader::new(&engine, None)
        .with_source_path(&args.file)
        .compile_to_artifact(&bytes)
        .map_err(|error| load_failure(&args.file, error))?;
    write_atomically(&args.output, &artifact)
        .with_context(|| format!("cannot write `{}`", args.output.display()))
        .status(Status::Internal)?;
    Ok(())
}

/// Writes next to the destination and renames, so a failed write never leaves a partial
/// artifact where a good one (or nothing) was.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the output path names no file",
        )
    })?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
