//! Shared helpers for the end-to-end tests: run the real `wedge` binary, find the guests.

#![allow(dead_code)]

pub mod server;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A WAT fixture from tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A guest built from examples/ by scripts/build-guests.sh. A missing guest fails the test
/// with the command that builds it: a test that cannot run its real guest must not pass.
pub fn guest(name: &str) -> PathBuf {
    let path = guest_dir().join(name);
    assert!(
        path.exists(),
        "guest {} is missing: build the guests with scripts/build-guests.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Where scripts/build-guests.sh puts the guests (`WEDGE_GUESTS` overrides).
pub fn guest_dir() -> PathBuf {
    std::env::var_os("WEDGE_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/guests"))
}

/// A `wedge` command with a private cache directory and no logging from the environment.
pub struct Wedge {
    pub cache: tempfile::TempDir,
}

impl Wedge {
    pub fn new() -> Self {
        Self {
            cache: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wedge"));
        command
            .env("XDG_CACHE_HOME", self.cache.path())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        command
    }

    /// Runs `wedge ARGS...` to completion.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Outcome {
        Outcome::from(self.command().args(args).output().expect("start wedge"))
    }

    /// `wedge compile GUEST -o DIR/NAME.cwasm`: an artifact, for tests that must refuse one.
    pub fn compile_guest(&self, guest_name: &str, dir: &Path) -> PathBuf {
        let artifact = dir.join(guest_name.replace(".wasm", ".cwasm"));
        self.run(&[
            "compile",
            guest(guest_name).to_str().unwrap(),
            "-o",
            artifact.to_str().unwrap(),
        ])
        .expect_code(0);
        artifact
    }

    /// The AOT cache's directory for this instance.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache.path().join("wedge")
    }
}

/// What a finished `wedge` process did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Outcome {
    /// Asserts the exit status, and that wedge never showed a panic or a Rust backtrace.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status\n{self:#?}");
        assert!(
            !self.stderr.contains("panicked at") && !self.stderr.contains("internal error"),
            "wedge panicked\n{self:#?}"
        );
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "Rust backtrace shown\n{self:#?}"
        );
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self:#?}"
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self:#?}"
        );
        self
    }

    /// wedge's own error is one paragraph, prefixed `wedge:` (a backtrace may follow a trap).
    pub fn one_error_paragraph(&self) -> &Self {
        let ours: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.starts_with("wedge:"))
            .collect();
        assert_eq!(ours.len(), 1, "expected one wedge: line\n{self:#?}");
        self
    }
}

/// Exit statuses, as documented in docs/cli.md.
pub mod status {
    pub const USAGE: i32 = 126;
    pub const NO_INPUT: i32 = 127;
    pub const BAD_PROGRAM: i32 = 128;
    pub const MISSING_IMPORT: i32 = 129;
    pub const TRAP: i32 = 131;
    pub const TIMEOUT: i32 = 132;
    pub const OUT_OF_FUEL: i32 = 133;
    pub const INTERNAL: i32 = 134;
    pub const CONFIG: i32 = 135;
    pub const API_REFUSED: i32 = 137;
    pub const SERVER_UNREACHABLE: i32 = 138;
}
