//! The app manifest: `[[function]]` tables in a TOML file. Paths are relative to the file.
//! Documented in docs/manifest.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wedge_capabilities::Preopen;
use wedge_host::FunctionSpec;

use crate::config::{self, FunctionConfig};
pub use crate::config::{DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT};

/// A function as written in the manifest: every key, unknown ones refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: String,
    source: PathBuf,
    route: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    files: BTreeMap<String, PathBuf>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    timeout: Option<String>,
    max_memory: Option<String>,
    max_concurrency: Option<i64>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sql_databases: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
    reuse: Option<config::ReuseConfig>,
    #[serde(default)]
    trigger: Vec<toml::Value>,
    build: Option<String>,
}

/// One function of the app: its specification, where its binary is, and how it is built.
#[derive(Debug, Clone)]
pub struct ManifestFunction {
    pub spec: FunctionSpec,
    pub source: PathBuf,
    /// The `build` command (run by `wedge build` with `sh -c` in `base_dir`), if any.
    pub build: Option<String>,
    /// The manifest's directory: relative paths and the build command start here.
    pub base_dir: PathBuf,
}

/// Whether `source` must already exist: yes to serve, no to build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    MustExist,
    MayBeMissing,
}

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct AppManifest {
    pub path: PathBuf,
    pub functions: Vec<ManifestFunction>,
}

/// What is wrong with a manifest, located as precisely as possible.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("`{path}` is not valid TOML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("`{path}`: `function` must be an array of tables: write [[function]], not [function]")]
    NotAnArray { path: PathBuf },
    #[error(
        "`{path}` has no functions: add at least one [[function]] table with name, source and route"
    )]
    Empty { path: PathBuf },
    #[error("`{path}`: the top level may only hold [[function]] tables, but it has `{key}`")]
    UnknownTopLevel { path: PathBuf, key: String },
    #[error("`{path}`, {function}: {problem}")]
    Function {
        path: PathBuf,
        /// "function `hello`" or "function #2" when it has no usable name.
        function: String,
        problem: String,
    },
}

impl AppManifest {
    /// Loads a manifest to serve it: every `source` must exist.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        Self::load_with(path, Sources::MustExist)
    }

    /// Loads a manifest; `sources` says whether the binaries must exist yet (not before
    /// `wedge build` has made them).
    pub fn load_with(path: &Path, sources: Sources) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Self::parse_with(&text, path, sources)
    }

    /// Parses `text` as the manifest at `path` (which anchors relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        Self::parse_with(text, path, Sources::MustExist)
    }

    pub fn parse_with(text: &str, path: &Path, sources: Sources) -> Result<Self, ManifestError> {
        let table: toml::Table = toml::from_str(text).map_err(|error| ManifestError::Syntax {
            path: path.to_path_buf(),
            reason: error.message().to_string() + &location(text, error.span()),
        })?;
        for key in table.keys() {
            if key != "function" {
                return Err(ManifestError::UnknownTopLevel {
                    path: path.to_path_buf(),
                    key: key.clone(),
                });
            }
        }
        let entries = match table.get("function") {
            Some(toml::Value::Array(entries)) => entries.clone(),
            Some(_) => {
                return Err(ManifestError::NotAnArray {
                    path: path.to_path_buf(),
                });
            }
            None => Vec::new(),
        };
        if entries.is_empty() {
            return Err(ManifestError::Empty {
                path: path.to_path_buf(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut functions: Vec<ManifestFunction> = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let label = match entry.get("name").and_then(|v| v.as_str()) {
                Some(name) => format!("function `{name}`"),
                None => format!("function #{}", index + 1),
            };
            let fail = |problem: String| ManifestError::Function {
                path: path.to_path_buf(),
                function: label.clone(),
                problem,
            };
            let raw: RawFunction = entry
                .try_into()
                .map_err(|error: toml::de::Error| fail(describe_serde_error(error.message())))?;
            let function = validate(raw, base, sources).map_err(&fail)?;
            if let Some(other) = functions.iter().find(|f| f.spec.name == function.spec.name) {
                return Err(fail(format!(
                    "key `name`: `{}` is used by another function too; names must be unique",
                    other.spec.name
                )));
            }
            if let Some(other) = functions
                .iter()
                .find(|f| f.spec.route().is_some() && f.spec.route() == function.spec.route())
            {
                return Err(fail(format!(
                    "key `route`: `{}` is already the route of function `{}`; give each function its own route",
                    function.spec.route().unwrap_or_default(),
                    other.spec.name
                )));
            }
            functions.push(function);
        }
        Ok(Self {
            path: path.to_path_buf(),
            functions,
        })
    }
}

/// serde's messages name the key; add how to fix the common ones.
fn describe_serde_error(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}. Remove the key or fix its spelling (docs/manifest.md lists every key)")
    } else if message.starts_with("missing field") {
        format!("{message}: every function needs name and source, and a route or a trigger")
    } else {
        message.to_string()
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// Checks every key of one function and resolves paths. The error names the key.
fn validate(raw: RawFunction, base: &Path, sources: Sources) -> Result<ManifestFunction, String> {
    // The name first: a bad one is reported before anything else about the function.
    config::check_name(&raw.name).map_err(|e| e.to_string())?;
    if raw.route.is_none() && raw.trigger.is_empty() {
        return Err(
            "it has neither `route` nor `trigger`: give it a route (route = \"/path\") or a trigger (trigger = [{ type = \"cron\", schedule = \"0 3 * * *\" }])".into(),
        );
    }
    let trigger = raw
        .trigger
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("key `trigger`: {error}"))?;
    let config = FunctionConfig {
        trigger,
        route: raw.route,
        kind: raw.kind,
        env: raw.env,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        timeout: raw.timeout,
        max_memory: raw.max_memory,
        max_concurrency: raw.max_concurrency,
        key_value_stores: raw.key_value_stores,
        sql_databases: raw.sql_databases,
        queues: raw.queues,
        reuse: raw.reuse,
    };
    // Keys in the order a reader meets them: route and kind before the source.
    if let Some(route) = &config.route {
        config::normalize_route(route).map_err(|e| e.to_string())?;
    }
    let source = base.join(&raw.source);
    match std::fs::metadata(&source) {
        Ok(meta) if meta.is_file() => {}
        Err(_) if sources == Sources::MayBeMissing => {}
        Ok(_) => {
            return Err(format!(
                "key `source`: `{}` is not a file",
                source.display()
            ));
        }
        Err(error) if raw.build.is_some() => {
            return Err(format!(
                "key `source`: cannot read `{}`: {error}; it is made by the function's `build` command: run `wedge build` (or `wedge serve --build`) first",
                source.display()
            ));
        }
        Err(error) => {
            return Err(format!(
                "key `source`: cannot read `{}`: {error} (paths are relative to the manifest)",
                source.display()
            ));
        }
    }
    let build = match raw.build {
        Some(command) if command.trim().is_empty() => {
            return Err(
                "key `build`: the command is empty; write the shell command that makes `source`, or remove the key".into(),
            );
        }
        other => other,
    };
    let mut files = Vec::new();
    for (guest, host) in &raw.files {
        if !guest.starts_with('/') {
            return Err(format!(
                "key `files`: the guest path `{guest}` must be absolute, e.g. \"/static\" = \"assets\""
            ));
        }
        let host_path = base.join(host);
        if !host_path.is_dir() {
            return Err(format!(
                "key `files`: `{}` (for `{guest}`) is not a directory (paths are relative to the manifest)",
                host_path.display()
            ));
        }
        files.push(Preopen {
            host: host_path,
            guest: guest.clone(),
            read_only: true,
        });
    }
    let spec = config
        .to_spec(&raw.name, files, config::StateScope::App)
        .map_err(|e| e.to_string())?;
    Ok(ManifestFunction {
        spec,
        source,
        build,
        base_dir: base.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wedge_host::FunctionKind;

    fn parse(text: &str) -> Result<AppManifest, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        AppManifest::parse(text, &dir.path().join("wedge.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_function() {
        let app = parse(
            r#"
            [[function]]
            name = "hello"
            source = "f.wasm"
            route = "/hello/"
            kind = "http"
            env = { GREETING = "hi" }
            files = { "/static" = "assets" }
            allowed_outbound_hosts = ["http://127.0.0.1:8080"]
            timeout = "5s"
            max_memory = "64MiB"
            max_concurrency = 100
            "#,
        )
        .unwrap();
        let f = &app.functions[0].spec;
        assert_eq!(f.route(), Some("/hello"));
        assert_eq!(f.kind, Some(FunctionKind::Http));
        assert_eq!(f.timeout, Duration::from_secs(5));
        assert_eq!(f.max_memory, 64 << 20);
        assert_eq!(f.max_concurrency, Some(100));
        assert_eq!(f.grants.wasi.preopens[0].guest, "/static");
    }

    #[test]
    fn a_built_source_may_be_missing_until_it_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wedge.toml");
        let text =
            "[[function]]\nname = \"a\"\nsource = \"out/a.wasm\"\nroute = \"/a\"\nbuild = \"make\"";
        let app = AppManifest::parse_with(text, &path, Sources::MayBeMissing).unwrap();
        assert_eq!(app.functions[0].build.as_deref(), Some("make"));
        assert_eq!(app.functions[0].base_dir, dir.path());
        let error = AppManifest::parse(text, &path).unwrap_err().to_string();
        assert!(error.contains("run `wedge build`"), "{error}");
        let empty = text.replace("\"make\"", "\" \"");
        let error = AppManifest::parse_with(&empty, &path, Sources::MayBeMissing)
            .unwrap_err()
            .to_string();
        assert!(error.contains("key `build`"), "{error}");
    }

    #[test]
    fn errors_name_the_function_the_key_and_the_fix() {
        let cases = [
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\ntiemout = \"1s\"",
                &["function `a`", "unknown field `tiemout`", "spelling"][..],
            ),
            (
                "[[function]]\nname = \"A!\"\nsource = \"f.wasm\"\nroute = \"/a\"",
                &["function `A!`", "key `name`", "a-z"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"nope.wasm\"\nroute = \"/a\"",
                &["key `source`", "nope.wasm", "relative to the manifest"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"a\"",
                &["key `route`", "must start with /"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/_wedge/x\"",
                &["reserved"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\ntimeout = \"5\"",
                &["key `timeout`", "250ms"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\nmax_memory = \"lots\"",
                &["key `max_memory`", "64MiB"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\nkind = \"cgi\"",
                &["key `kind`", "\"wagi\""],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\nmax_concurrency = 0",
                &["key `max_concurrency`"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\nallowed_outbound_hosts = [\"localhost\"]",
                &["key `allowed_outbound_hosts`", "scheme://host"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\nfiles = { \"/s\" = \"missing\" }",
                &["key `files`", "not a directory"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\n[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/b\"",
                &["key `name`", "unique"],
            ),
            (
                "[[function]]\nname = \"a\"\nsource = \"f.wasm\"\nroute = \"/a\"\n[[function]]\nname = \"b\"\nsource = \"f.wasm\"\nroute = \"/a/\"",
                &["function `b`", "already the route of function `a`"],
            ),
            (
                "[[function]]\nname = \"a\"\nroute = \"/a\"",
                &["function `a`", "missing field `source`"],
            ),
            (
                "[[function]]\nsource = \"f.wasm\"\nroute = \"/a\"",
                &["function #1", "missing field `name`"],
            ),
            ("functions = 1", &["top level", "`functions`"]),
            (
                "[function]\nname = \"a\"",
                &["[[function]], not [function]"],
            ),
            ("", &["no functions"]),
            ("[[function]\nname=", &["not valid TOML", "line 1"]),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            for needle in expected {
                assert!(
                    error.contains(needle),
                    "{text:?}\n→ {error}\nlacks {needle:?}"
                );
            }
        }
    }
}
