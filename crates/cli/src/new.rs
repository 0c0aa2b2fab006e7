//! `wedge new TEMPLATE DIR`: create a ready project (source, `wedge.toml` with a `build`
//! command, README, the WIT it builds against) from a template embedded in the binary, so it
//! works from an installed `wedge` with no repository around.
//!
//! The project is written into a hidden directory beside DIR and renamed into place at the
//! end: DIR either appears whole or not at all, and an existing non-empty DIR is never touched.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::exit::{Failure, Status, WithStatus};

#[derive(clap::Args)]
pub struct NewArgs {
    /// List the templates, one line each.
    #[arg(long, conflicts_with_all = ["template", "dir"])]
    list: bool,
    /// The template: http-js, http-py, http-c, http-rust, http-rust-p3 or wagi-c.
    #[arg(required_unless_present = "list")]
    template: Option<String>,
    /// The directory to create (it must not exist, or be empty). Its name becomes the
    /// function's name.
    #[arg(required_unless_present = "list")]
    dir: Option<PathBuf>,
}

/// Which WASI WIT a template's project gets in `wit/`.
#[derive(Clone, Copy)]
enum Wit {
    None,
    /// The vendored WASI 0.2.12 files as they are.
    Wasi0212,
    /// The same, rewritten to 0.2.10 for componentize-js (see `wit_for_componentize_js`).
    Wasi0210,
}

struct Template {
    name: &'static str,
    summary: &'static str,
    /// Relative path and contents; `{{name}}` in text files becomes the project's name.
    files: &'static [(&'static str, &'static str)],
    wit: Wit,
    /// Whether the project gets the WASI preview 1 adapter for `wasm-tools component new`.
    proxy_adapter: bool,
}

macro_rules! template_files {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../templates/", $dir, "/", $file)))),*]
    };
}

const TEMPLATES: &[Template] = &[
    Template {
        name: "http-js",
        summary: "JavaScript HTTP function: a fetch-event handler, built with componentize-js",
        files: template_files!("http-js": "app.js", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::Wasi0210,
        proxy_adapter: false,
    },
    Template {
        name: "http-py",
        summary: "Python HTTP function: a Handler class with respond(request), built with componentize-py",
        files: template_files!("http-py": "app.py", "wedge_http.py", "wedge_state.py", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::Wasi0212,
        proxy_adapter: false,
    },
    Template {
        name: "http-c",
        summary: "C HTTP function: a wasi:http handler, built with wit-bindgen, clang and wasm-tools",
        files: template_files!("http-c": "app.c", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::Wasi0212,
        proxy_adapter: true,
    },
    Template {
        name: "http-rust",
        summary: "Rust HTTP function: a wasi:http handler (the wasip2 crate), built with cargo for wasm32-wasip2",
        files: template_files!("http-rust": "Cargo.toml", "Cargo.lock", "src/lib.rs", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::None,
        proxy_adapter: false,
    },
    Template {
        name: "http-rust-p3",
        summary: "Rust HTTP function on WASI 0.3: an async wasi:http handler (the wasip3 crate), built with cargo for wasm32-wasip2",
        files: template_files!("http-rust-p3": "Cargo.toml", "Cargo.lock", "src/lib.rs", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::None,
        proxy_adapter: false,
    },
    Template {
        name: "wagi-c",
        summary: "C CGI-style (WAGI) function: reads CGI variables and stdin, writes headers and body, built with clang",
        files: template_files!("wagi-c": "app.c", "wedge.toml", "README.md", ".gitignore"),
        wit: Wit::None,
        proxy_adapter: false,
    },
];

/// WASI 0.2.12, vendored verbatim from the `wasmtime-wasi-http` crate (wit/README.md).
const WASI_WIT: &[(&str, &str)] = &[
    ("cli.wit", include_str!("../../../wit/wasi-0.2.12/cli.wit")),
    (
        "clocks.wit",
        include_str!("../../../wit/wasi-0.2.12/clocks.wit"),
    ),
    (
        "filesystem.wit",
        include_str!("../../../wit/wasi-0.2.12/filesystem.wit"),
    ),
    (
        "http.wit",
        include_str!("../../../wit/wasi-0.2.12/http.wit"),
    ),
    ("io.wit", include_str!("../../../wit/wasi-0.2.12/io.wit")),
    (
        "random.wit",
        include_str!("../../../wit/wasi-0.2.12/random.wit"),
    ),
    (
        "sockets.wit",
        include_str!("../../../wit/wasi-0.2.12/sockets.wit"),
    ),
];

/// The state capabilities a function may import (docs/capabilities.md): `wasi:keyvalue`
/// (vendored verbatim from `wasmtime-wasi-keyvalue`) and wedge's own `wedge:sql`. They are in
/// every new project's world, so that a function only has to use them; wedge links them for
/// every `http` function and decides per store and database what its config grants.
const STATE_WIT: &[(&str, &str)] = &[
    (
        "keyvalue/atomic.wit",
        include_str!("../../../wit/wasi-keyvalue-0.2.0-draft/atomic.wit"),
    ),
    (
        "keyvalue/batch.wit",
        include_str!("../../../wit/wasi-keyvalue-0.2.0-draft/batch.wit"),
    ),
    (
        "keyvalue/store.wit",
        include_str!("../../../wit/wasi-keyvalue-0.2.0-draft/store.wit"),
    ),
    (
        "keyvalue/watch.wit",
        include_str!("../../../wit/wasi-keyvalue-0.2.0-draft/watch.wit"),
    ),
    (
        "keyvalue/world.wit",
        include_str!("../../../wit/wasi-keyvalue-0.2.0-draft/world.wit"),
    ),
    (
        "wedge-sql/sql.wit",
        include_str!("../../../wit/wedge-sql-0.1.0/sql.wit"),
    ),
];

/// The preview 1 adapter that turns a wasm32-wasi core module into a `wasi:http/proxy`
/// component (`wasm-tools component new --adapt`), from the crate of wedge's wasmtime version.
const PROXY_ADAPTER_FILE: &str = "wasi_snapshot_preview1.proxy.wasm";

pub fn new(args: NewArgs) -> Result<(), Failure> {
    if args.list {
        print!("{}", list());
        return Ok(());
    }
    let (Some(template_name), Some(dir)) = (args.template, args.dir) else {
        return Err(Failure::new(
            Status::Usage,
            anyhow!("wedge new needs a TEMPLATE and a DIR (or --list)"),
        ));
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.name == template_name) else {
        return Err(Failure::new(
            Status::Usage,
            anyhow!(
                "there is no template `{template_name}`. The templates are:\n{}",
                list().trim_end()
            ),
        ));
    };
    check_target(&dir)?;
    let name = function_name(&dir);
    let files = project_files(template, &name);
    write_atomically(&dir, &files)
        .with_context(|| format!("cannot create the project `{}`", dir.display()))
        .status(Status::Internal)?;

    println!(
        "created `{}` from the template `{}` (function `{name}`):",
        dir.display(),
        template.name
    );
    for (path, _) in files.iter().filter(|(p, _)| !p.starts_with("wit/deps/")) {
        println!("  {path}");
    }
    if matches!(template.wit, Wit::Wasi0212 | Wit::Wasi0210) {
        println!("  wit/deps/*.wit (WASI {})", wit_version(template.wit));
    }
    println!(
        "next:\n  cd {}\n  wedge build\n  wedge serve",
        dir.display()
    );
    Ok(())
}

fn list() -> String {
    let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    TEMPLATES
        .iter()
        .map(|t| format!("{:<width$} {}\n", t.name, t.summary))
        .collect()
}

/// DIR must not exist, or be an empty directory: nothing of the user's is ever overwritten.
fn check_target(dir: &Path) -> Result<(), Failure> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::new(
                    Status::Usage,
                    anyhow!(
                        "`{}` already exists and is not empty: wedge new writes only into a new or empty directory, so that nothing is overwritten; choose another DIR",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if dir.exists() && !dir.is_dir() => Err(Failure::new(
            Status::Usage,
            anyhow!(
                "`{}` exists and is not a directory ({error}); choose another DIR",
                dir.display()
            ),
        )),
        Err(error) => Err(Failure::new(
            Status::Internal,
            anyhow!("cannot read `{}`: {error}", dir.display()),
        )),
    }
}

/// The function's name from the directory's: lower case, `a-z0-9-` only (manifest rules).
fn function_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in base.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    let name: String = name.trim_end_matches('-').chars().take(63).collect();
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "app".to_string()
    } else {
        name
    }
}

fn wit_version(wit: Wit) -> &'static str {
    match wit {
        Wit::Wasi0210 => "0.2.10",
        Wit::Wasi0212 | Wit::None => "0.2.12",
    }
}

/// Every file of the project: the template's, the WIT and the adapter.
fn project_files(template: &Template, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = template
        .files
        .iter()
        .map(|(path, text)| {
            (
                path.to_string(),
                text.replace("{{name}}", name).into_bytes(),
            )
        })
        .collect();
    if !matches!(template.wit, Wit::None) {
        let version = wit_version(template.wit);
        files.push((
            "wit/world.wit".into(),
            format!(
                "// Written by `wedge new`: the world this function is built for. wedge serves any\n\
                 // component that exports wasi:http/incoming-handler@0.2.x. The key-value and SQL\n\
                 // imports work for the stores and databases the function's config grants\n\
                 // (key_value_stores, sql_databases); see docs/capabilities.md.\n\
                 package wedge:app;\n\nworld app {{\n  include wasi:http/proxy@{version};\n\
                 \x20 import wasi:keyvalue/store@0.2.0-draft;\n\
                 \x20 import wasi:keyvalue/atomics@0.2.0-draft;\n\
                 \x20 import wasi:keyvalue/batch@0.2.0-draft;\n\
                 \x20 import wedge:sql/sql@0.1.0;\n}}\n"
            )
            .into_bytes(),
        ));
        for (file, text) in WASI_WIT {
            let text = match template.wit {
                Wit::Wasi0210 => wit_for_componentize_js(text),
                _ => text.to_string(),
            };
            files.push((format!("wit/deps/{file}"), text.into_bytes()));
        }
        for (file, text) in STATE_WIT {
            files.push((format!("wit/deps/{file}"), text.as_bytes().to_vec()));
        }
    }
    if template.proxy_adapter {
        files.push((
            PROXY_ADAPTER_FILE.into(),
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER.to_vec(),
        ));
    }
    files
}

/// componentize-js 0.23.0's engine (StarlingMonkey) is built against WASI 0.2.10 and cannot
/// export a newer `wasi:http/incoming-handler`; the WASI 0.2.12 files differ from 0.2.10 only
/// in their version and in `wasi:cli/exit.exit-with-code` (`@since(version = 0.2.12)`), which
/// is left out.
fn wit_for_componentize_js(text: &str) -> String {
    let text = text.replace("@0.2.12", "@0.2.10");
    let mut out = String::with_capacity(text.len());
    let mut skip_item = false;
    for line in text.split_inclusive('\n') {
        if line.trim() == "@since(version = 0.2.12)" {
            skip_item = true;
            continue;
        }
        if skip_item {
            // The item after the gate: one line ending in `;` (a function) is all 0.2.12 adds.
            skip_item = !line.trim_end().ends_with(';');
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Writes the files into a hidden sibling of `dir`, then renames it to `dir` (rename over an
/// empty directory is allowed), so a failure leaves nothing behind.
fn write_atomically(dir: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create `{}`", parent.display()))?;
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    let staging = parent.join(format!(".{base}.wedge-new-{}", std::process::id()));
    let result = (|| {
        for (path, bytes) in files {
            let target = staging.join(path);
            if let Some(folder) = target.parent() {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("cannot create `{}`", folder.display()))?;
            }
            std::fs::write(&target, bytes)
                .with_context(|| format!("cannot write `{}`", target.display()))?;
        }
        std::fs::rename(&staging, dir)
            .with_context(|| format!("cannot move the new project into `{}`", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_manifest_rules() {
        assert_eq!(function_name(Path::new("/tmp/My Func_2")), "my-func-2");
        assert_eq!(function_name(Path::new("--x--")), "x");
        assert_eq!(function_name(Path::new("...")), "app");
        assert_eq!(function_name(Path::new(&"a".repeat(80))).len(), 63);
    }

    #[test]
    fn the_javascript_wit_is_0_2_10_without_the_0_2_12_addition() {
        let cli = WASI_WIT.iter().find(|(f, _)| *f == "cli.wit").unwrap().1;
        assert!(cli.contains("exit-with-code"));
        for (file, text) in WASI_WIT {
            let js = wit_for_componentize_js(text);
            assert!(!js.contains("0.2.12"), "{file} still names 0.2.12");
            assert!(!js.contains("exit-with-code"), "{file}");
            // Only the gated item is dropped: every other line is kept.
            let dropped = text.lines().count() - js.lines().count();
            assert_eq!(dropped, if *file == "cli.wit" { 2 } else { 0 }, "{file}");
        }
    }

    #[test]
    fn every_template_has_a_manifest_with_a_build_command() {
        for template in TEMPLATES {
            let files = project_files(template, "x");
            let manifest = files
                .iter()
                .find(|(p, _)| p == "wedge.toml")
                .expect("wedge.toml");
            let text = String::from_utf8_lossy(&manifest.1);
            assert!(text.contains("build = "), "{}", template.name);
            assert!(text.contains("name = \"x\""), "{}", template.name);
            assert!(
                files.iter().any(|(p, _)| p == "README.md"),
                "{}",
                template.name
            );
        }
    }
}
