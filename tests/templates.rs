//! `wedge new`, `wedge build` and `wedge serve --build` end to end: every template is created,
//! built with the real toolchain (scripts/setup-toolchains.sh puts them in
//! target/toolchains/bin) and served, and a real request is answered. Bad input: a non-empty
//! directory, an unknown template, a compiler error, a missing toolchain, an output that is
//! not a function.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::server::{Server, get};
use support::{Wedge, root, status};

const BUILD_FAILED: i32 = 136;

/// The project's guest toolchains. A missing one fails the test with the script that
/// installs it: a template test that cannot build its template must not pass.
fn toolchain_bin() -> PathBuf {
    let bin = root().join("target/toolchains/bin");
    for tool in [
        "componentize-js",
        "componentize-py",
        "wasm-tools",
        "wit-bindgen",
    ] {
        assert!(
            bin.join(tool).exists(),
            "{} is missing: install the guest toolchains with scripts/setup-toolchains.sh (scripts/test.sh does)",
            bin.join(tool).display()
        );
    }
    bin
}

/// PATH with the project's toolchains first (cargo and clang come from the system's PATH).
fn path_with_toolchains() -> std::ffi::OsString {
    let mut dirs = vec![toolchain_bin()];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

/// `wedge new TEMPLATE DIR` in a fresh temporary directory; returns (temp, project dir).
fn new_project(wedge: &Wedge, template: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join(format!("my-{template}"));
    wedge
        .run(&["new", template, dir.to_str().expect("utf-8 path")])
        .expect_code(0)
        .stdout_has("wedge build");
    (temp, dir)
}

fn build(wedge: &Wedge, dir: &Path, path: &std::ffi::OsStr) -> support::Outcome {
    support::Outcome::from(
        wedge
            .command()
            .arg("build")
            .current_dir(dir)
            .env("PATH", path)
            .output()
            .expect("run wedge build"),
    )
}

/// The project's own manifest with `source` made absolute, served by the test helper.
fn serve_project(dir: &Path) -> Server {
    let manifest = std::fs::read_to_string(dir.join("wedge.toml")).expect("wedge.toml");
    let manifest = manifest.replace("source = \"", &format!("source = \"{}/", dir.display()));
    Server::start(&manifest, &[])
}

fn new_build_serve(template: &str, path: &str, expected: &str) {
    let wedge = Wedge::new();
    let (_temp, dir) = new_project(&wedge, template);
    build(&wedge, &dir, &path_with_toolchains())
        .expect_code(0)
        .stderr_has(&format!("built `my-{template}`"));
    let server = serve_project(&dir);
    let reply = get(&server.url(path));
    assert_eq!(reply.status, 200, "{template}: {}", reply.text());
    assert_eq!(reply.text(), expected, "{template}");
}

#[test]
fn template_http_js() {
    new_build_serve("http-js", "/?name=js", "hello, js\n");
}

#[test]
fn template_http_py() {
    new_build_serve("http-py", "/?name=py", "hello, py\n");
}

#[test]
fn template_http_c() {
    new_build_serve("http-c", "/a/b?c=d", "hello from c at /a/b?c=d\n");
}

#[test]
fn template_http_rust() {
    new_build_serve("http-rust", "/a/b", "hello from rust at /a/b\n");
}

#[test]
fn template_http_rust_p3() {
    new_build_serve(
        "http-rust-p3",
        "/a/b",
        "hello from rust on wasi 0.3 at /a/b\n",
    );
}

#[test]
fn template_wagi_c() {
    new_build_serve("wagi-c", "/a/b", "hello from c (wagi): GET /a/b\n");
}

#[test]
fn list_shows_every_template_with_one_line() {
    let outcome = Wedge::new().run(&["new", "--list"]);
    outcome.expect_code(0);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", outcome.stdout);
    for (line, name) in lines.iter().zip([
        "http-js",
        "http-py",
        "http-c",
        "http-rust",
        "http-rust-p3",
        "wagi-c",
    ]) {
        assert!(line.starts_with(name), "{line}");
    }
}

#[test]
fn new_refuses_a_non_empty_directory_and_an_unknown_template() {
    let wedge = Wedge::new();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mine.txt"), "keep me").unwrap();
    wedge
        .run(&["new", "http-js", dir.to_str().unwrap()])
        .expect_code(status::USAGE)
        .one_error_paragraph()
        .stderr_has("already exists and is not empty");
    // Untouched, and nothing left beside it.
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);

    let outcome = wedge.run(&["new", "http-cobol", temp.path().join("x").to_str().unwrap()]);
    outcome
        .expect_code(status::USAGE)
        .stderr_has("there is no template `http-cobol`")
        .stderr_has("http-py");
    assert!(!temp.path().join("x").exists());

    // A file in the way is refused too; an empty directory is fine.
    std::fs::write(temp.path().join("file"), "x").unwrap();
    wedge
        .run(&["new", "wagi-c", temp.path().join("file").to_str().unwrap()])
        .expect_code(status::USAGE);
    std::fs::create_dir(temp.path().join("empty")).unwrap();
    wedge
        .run(&["new", "wagi-c", temp.path().join("empty").to_str().unwrap()])
        .expect_code(0);
    assert!(temp.path().join("empty/wedge.toml").exists());
    assert!(temp.path().join("empty/app.c").exists());
}

#[test]
fn a_compiler_error_is_shown_and_leaves_no_stale_output() {
    let wedge = Wedge::new();
    let (_temp, dir) = new_project(&wedge, "wagi-c");
    let path = path_with_toolchains();
    build(&wedge, &dir, &path).expect_code(0);
    assert!(dir.join("app.wasm").exists());

    std::fs::write(
        dir.join("app.c"),
        "int main(void) { return undefined_thing; }\n",
    )
    .unwrap();
    build(&wedge, &dir, &path)
        .expect_code(BUILD_FAILED)
        .one_error_paragraph()
        // clang's own message, with the file and line
        .stderr_has("app.c:1:")
        .stderr_has("undefined_thing")
        .stderr_has("the build command failed (exit status 1)");
    assert!(
        !dir.join("app.wasm").exists(),
        "the old app.wasm must not survive a failed build"
    );
    // serve then says to build first, instead of serving old code.
    Wedge::new()
        .run(&[
            "serve",
            "--app",
            dir.join("wedge.toml").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .expect_code(status::CONFIG)
        .stderr_has("run `wedge build`");
}

#[test]
fn a_missing_toolchain_names_the_install_command() {
    let wedge = Wedge::new();
    // PATH with nothing but `sh`: no componentize-py, whatever this machine has.
    let bare = tempfile::tempdir().unwrap();
    let sh = which("sh");
    std::os::unix::fs::symlink(sh, bare.path().join("sh")).unwrap();
    let path = bare.path().as_os_str().to_owned();
    for (template, tool, install) in [
        (
            "http-py",
            "componentize-py",
            "pip install componentize-py==0.25.1",
        ),
        (
            "http-js",
            "componentize-js",
            "npm install -g @bytecodealliance/componentize-js@0.23.0",
        ),
        ("http-c", "wit-bindgen", "cargo install --locked"),
        ("wagi-c", "clang", "apt-get install clang lld wasi-libc"),
    ] {
        let (_temp, dir) = new_project(&wedge, template);
        build(&wedge, &dir, &path)
            .expect_code(BUILD_FAILED)
            .one_error_paragraph()
            .stderr_has(&format!("needs `{tool}`, which is not installed"))
            .stderr_has(install);
        assert!(!dir.join("app.wasm").exists());
    }
}

#[test]
fn an_output_that_is_not_a_function_is_refused_and_removed() {
    let wedge = Wedge::new();
    let temp = tempfile::tempdir().unwrap();
    let manifest = temp.path().join("wedge.toml");
    std::fs::write(
        &manifest,
        "[[function]]\nname = \"a\"\nsource = \"out.wasm\"\nroute = \"/\"\nbuild = \"printf 'not wasm' > out.wasm\"\n",
    )
    .unwrap();
    wedge
        .run(&["build", "--app", manifest.to_str().unwrap()])
        .expect_code(BUILD_FAILED)
        .one_error_paragraph()
        .stderr_has("the build command succeeded, but `")
        .stderr_has("is not WebAssembly");
    assert!(!temp.path().join("out.wasm").exists());

    // A stated kind that the output does not have.
    std::fs::write(
        &manifest,
        format!(
            "[[function]]\nname = \"a\"\nsource = \"out.wasm\"\nroute = \"/\"\nkind = \"http\"\nbuild = \"cp {} out.wasm\"\n",
            support::guest("wagi-hello.wasm").display()
        ),
    )
    .unwrap();
    wedge
        .run(&["build", "--app", manifest.to_str().unwrap()])
        .expect_code(BUILD_FAILED)
        .stderr_has("is a `wagi` function, but the manifest says kind = \"http\"");
    assert!(!temp.path().join("out.wasm").exists());

    // Without a manifest: usage, with the way to make a project.
    let empty = tempfile::tempdir().unwrap();
    Wedge::new()
        .command()
        .arg("build")
        .current_dir(empty.path())
        .output()
        .map(support::Outcome::from)
        .unwrap()
        .expect_code(status::USAGE)
        .stderr_has("wedge new");
}

#[test]
fn serve_build_in_a_project_dir_builds_then_serves_its_wedge_toml() {
    let wedge = Wedge::new();
    let (_temp, dir) = new_project(&wedge, "wagi-c");
    assert!(!dir.join("app.wasm").exists());
    let mut child = wedge
        .command()
        .args(["serve", "--build", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("PATH", path_with_toolchains())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wedge serve --build");
    let stdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next();
    let base = first
        .and_then(Result::ok)
        .and_then(|line| line.rsplit(" on ").next().map(str::to_string));
    let Some(base) = base.filter(|b| b.starts_with("http://")) else {
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "wedge serve --build did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let reply = get(&format!("{base}/x"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello from c (wagi): GET /x\n");
    assert!(dir.join("app.wasm").exists());
}

/// The WIT that `wedge new` writes is the wasmtime-wasi-http crate's, byte for byte.
#[test]
fn vendored_wit_is_the_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let manifest = text
        .split("\"manifest_path\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default())
        .find(|path| path.contains("/wasmtime-wasi-http-") && path.ends_with("/Cargo.toml"))
        .expect("wasmtime-wasi-http in cargo metadata");
    let crate_wit = Path::new(manifest).parent().unwrap().join("wit/deps");
    let vendored = root().join("wit/wasi-0.2.12");
    let mut names: Vec<_> = std::fs::read_dir(&crate_wit)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let theirs = std::fs::read(crate_wit.join(&name)).unwrap();
        let ours = std::fs::read(vendored.join(&name))
            .unwrap_or_else(|e| panic!("wit/wasi-0.2.12/{name:?}: {e}"));
        assert!(
            theirs == ours,
            "wit/wasi-0.2.12/{name:?} differs from {}: copy it again (wit/README.md)",
            crate_wit.display()
        );
    }
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}
