//! Reading a program from disk and loading it, shared by `run` and `compile`.

use std::path::Path;

use anyhow::anyhow;
use wedge_engine::program::LoadError;

use crate::exit::{Failure, Status};

/// Reads the whole input file; a missing or unreadable file is `Status::NoInput`.
pub fn read_program(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound => {
                " (check the path; it is relative to the current directory)"
            }
            std::io::ErrorKind::PermissionDenied => " (wedge needs read permission on it)",
            _ if path.is_dir() => " (it is a directory; give a .wasm, .wat or .cwasm file)",
            _ => "",
        };
        Failure::new(
            Status::NoInput,
            anyhow!("cannot read `{}`: {error}{hint}", path.display()),
        )
    })
}

/// Maps a load error to its status, with the file named.
pub fn load_failure(path: &Path, error: LoadError) -> Failure {
    Failure::new(
        Status::BadProgram,
        anyhow!("cannot run `{}`: {error}", path.display()),
    )
}
