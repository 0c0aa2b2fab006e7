//! `wedge compile`, `.cwasm` artifacts and the transparent AOT cache, end to end.

mod support;

use std::path::{Path, PathBuf};

use support::{Wedge, fixture, guest, status};

fn cache_entries(wedge: &Wedge) -> Vec<PathBuf> {
    match std::fs::read_dir(wedge.cache_dir()) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            paths
        }
        Err(_) => Vec::new(),
    }
}

fn compile(wedge: &Wedge, input: &Path, output: &Path, extra: &[&str]) {
    let mut argv = vec![
        "compile",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    wedge.run(&argv).expect_code(0);
}

#[test]
fn compiled_artifacts_run_without_compiling() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    for (input, args, expect) in [
        (guest("hello.wasm"), vec!["x"], "argv[1]=x"),
        (guest("hello-component.wasm"), vec!["y"], "argv[1]=y"),
        (fixture("exit.wat"), vec![], ""),
    ] {
        let out = dir.path().join("out.cwasm");
        compile(&wedge, &input, &out, &[]);
        let mut argv = vec!["run".to_string(), out.display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        // RUST_LOG shows where the code came from: an artifact, never a compilation.
        let result = support::Outcome::from(
            wedge
                .command()
                .env("RUST_LOG", "wedge_engine=debug")
                .args(&argv)
                .output()
                .unwrap(),
        );
        if input.ends_with("exit.wat") {
            result.expect_code(7);
        } else {
            result.expect_code(0).stdout_has(expect);
        }
        assert!(!result.stderr.contains("compiled"), "{result:#?}");
    }
    // Running artifacts neither reads nor fills the cache.
    assert!(cache_entries(&wedge).is_empty());
}

#[test]
fn artifacts_from_another_build_or_configuration_are_refused() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("hello.cwasm");
    compile(&wedge, &guest("hello.wasm"), &artifact, &[]);
    let bytes = std::fs::read(&artifact).unwrap();

    // Another wedge version: the build string in the header differs.
    let build = b"wedge ";
    let at = bytes.windows(build.len()).position(|w| w == build).unwrap();
    let mut other_version = bytes.clone();
    other_version[at + build.len()] = b'9';
    let other = dir.path().join("other-version.cwasm");
    std::fs::write(&other, &other_version).unwrap();
    // The fingerprint too (byte 16 onwards), as another build would have.
    let mut other_fingerprint = other_version.clone();
    other_fingerprint[16] ^= 1;
    std::fs::write(&other, &other_fingerprint).unwrap();
    wedge
        .run(&["run", other.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .one_error_paragraph()
        .stderr_has("compiled by wedge 9")
        .stderr_has("wedge compile");

    // Same build, another engine configuration (a CPU with other features, say).
    let mut other_config = bytes.clone();
    other_config[16] ^= 1;
    let other = dir.path().join("other-config.cwasm");
    std::fs::write(&other, &other_config).unwrap();
    wedge
        .run(&["run", other.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("different CPU or engine configuration")
        .stderr_has("wedge compile");

    // Damaged payload: detected by its digest, never loaded.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 100;
    damaged[last] ^= 0xff;
    let other = dir.path().join("damaged.cwasm");
    std::fs::write(&other, &damaged).unwrap();
    wedge
        .run(&["run", other.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("damaged");

    // Truncated.
    std::fs::write(&other, &bytes[..bytes.len() / 2]).unwrap();
    wedge
        .run(&["run", other.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("damaged");

    // wasmtime's own ELF artifacts are not wedge's.
    let elf = dir.path().join("foreign.cwasm");
    let at = bytes.windows(4).position(|w| w == b"\x7fELF").unwrap();
    std::fs::write(&elf, &bytes[at..]).unwrap();
    wedge
        .run(&["run", elf.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("another tool");
}

#[test]
fn fuel_needs_an_artifact_compiled_with_it() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.cwasm");
    let metered = dir.path().join("metered.cwasm");
    compile(&wedge, &fixture("loop.wat"), &plain, &[]);
    compile(&wedge, &fixture("loop.wat"), &metered, &["--fuel"]);
    wedge
        .run(&["run", "--fuel", "1000", plain.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("wedge compile --fuel");
    wedge
        .run(&["run", "--fuel", "1000", metered.to_str().unwrap()])
        .expect_code(status::OUT_OF_FUEL);
    // A metered artifact runs without --fuel too (with an unlimited budget).
    wedge
        .run(&["run", "--timeout", "200ms", metered.to_str().unwrap()])
        .expect_code(status::TIMEOUT);
}

#[test]
fn compile_errors_write_nothing() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, "not wasm").unwrap();
    let out = dir.path().join("out.cwasm");
    wedge
        .run(&[
            "compile",
            bad.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("not WebAssembly");
    assert!(!out.exists());

    wedge
        .run(&["compile", "/no/such.wasm", "-o", out.to_str().unwrap()])
        .expect_code(status::NO_INPUT);

    let nowhere = dir.path().join("missing-dir/out.cwasm");
    wedge
        .run(&[
            "compile",
            fixture("loop.wat").to_str().unwrap(),
            "-o",
            nowhere.to_str().unwrap(),
        ])
        .expect_code(status::INTERNAL)
        .stderr_has("cannot write");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only bad.wasm is left"
    );

    // Compiling an artifact again is refused.
    let good = dir.path().join("good.cwasm");
    compile(&wedge, &fixture("loop.wat"), &good, &[]);
    wedge
        .run(&[
            "compile",
            good.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("already a compiled wedge artifact");
}

#[test]
fn the_cache_compiles_once_and_rebuilds_a_damaged_entry() {
    let wedge = Wedge::new();
    let hello = guest("hello.wasm");
    let hello = hello.to_str().unwrap();
    let debug_run = |args: &[&str]| {
        support::Outcome::from(
            wedge
                .command()
                .env("RUST_LOG", "wedge_engine=debug")
                .args(args)
                .output()
                .unwrap(),
        )
    };

    let first = debug_run(&["run", hello]);
    first.expect_code(0).stderr_has("compiled");
    // One entry: its header (.meta) and its code (.code, mapped when loaded).
    let entries = cache_entries(&wedge);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].extension().is_some_and(|e| e == "code"));
    assert!(entries[1].extension().is_some_and(|e| e == "meta"));
    let entry = &entries[0];
    let written = std::fs::metadata(entry).unwrap().modified().unwrap();

    let second = debug_run(&["run", hello]);
    second
        .expect_code(0)
        .stderr_has("loaded from the AOT cache");
    assert!(!second.stderr.contains("compiled"), "{second:#?}");
    assert_eq!(
        std::fs::metadata(entry).unwrap().modified().unwrap(),
        written
    );

    // Damage the entry: it is detected, discarded, rebuilt; the run still succeeds.
    let mut bytes = std::fs::read(entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(entry, &bytes).unwrap();
    wedge
        .run(&["run", hello])
        .expect_code(0)
        .stdout_has("hello from wedge")
        .stderr_has("was damaged")
        .stderr_has("rebuilt");
    let third = debug_run(&["run", hello]);
    third.expect_code(0).stderr_has("loaded from the AOT cache");

    // A garbage header, or a missing code file, is treated the same way.
    std::fs::write(&entries[1], b"garbage").unwrap();
    wedge
        .run(&["run", hello])
        .expect_code(0)
        .stderr_has("rebuilt");
    std::fs::remove_file(entry).unwrap();
    wedge
        .run(&["run", hello])
        .expect_code(0)
        .stderr_has("rebuilt");
    assert_eq!(cache_entries(&wedge).len(), 2);
}

#[test]
fn different_settings_get_different_cache_entries_and_no_cache_writes_none() {
    let wedge = Wedge::new();
    let wat = fixture("numeric.wat");
    let wat = wat.to_str().unwrap();
    wedge
        .run(&["run", "--no-cache", "--invoke", "nothing", wat])
        .expect_code(0);
    assert!(cache_entries(&wedge).is_empty());
    wedge
        .run(&["run", "--invoke", "nothing", wat])
        .expect_code(0);
    wedge
        .run(&["run", "--fuel", "100", "--invoke", "nothing", wat])
        .expect_code(0);
    assert_eq!(
        cache_entries(&wedge).len(),
        4,
        "fuel metering is a different compilation (two entries of two files each)"
    );
}

#[test]
fn an_unwritable_cache_is_not_fatal() {
    let wedge = Wedge::new();
    // XDG_CACHE_HOME is a file: the cache directory cannot be created.
    let file = wedge.cache.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = support::Outcome::from(
        wedge
            .command()
            .env("XDG_CACHE_HOME", &file)
            .args(["run", guest("hello.wasm").to_str().unwrap()])
            .output()
            .unwrap(),
    );
    out.expect_code(0).stdout_has("hello from wedge");
}
