//! `wedge run` end to end: the real binary, real guests built from examples/, WAT fixtures.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Wedge, fixture, guest, status};

// ---- WASI commands: argv, env, files, stdio, exit status -------------------------------

#[test]
fn c_hello_prints_args_and_env_and_writes_into_a_granted_dir() {
    let wedge = Wedge::new();
    let data = tempfile::tempdir().unwrap();
    let hello = guest("hello.wasm");
    let dir = format!("{}::/data", data.path().display());
    let out = wedge.run(&[
        "run",
        "--dir",
        &dir,
        "--env",
        "HELLO_OUT=/data/out.txt",
        "--env",
        "GREETING=hi there",
        hello.to_str().unwrap(),
        "first",
        "second arg",
        "--looks-like-a-flag",
    ]);
    out.expect_code(0)
        .stdout_has("hello from wedge")
        .stdout_has(&format!("argv[0]={}", hello.display()))
        .stdout_has("argv[1]=first")
        .stdout_has("argv[2]=second arg")
        .stdout_has("argv[3]=--looks-like-a-flag")
        .stdout_has("env GREETING=hi there")
        .stdout_has("wrote /data/out.txt");
    let written = std::fs::read_to_string(data.path().join("out.txt")).unwrap();
    assert_eq!(written, "written by hello\n");
}

#[test]
fn nothing_is_granted_by_default() {
    let wedge = Wedge::new();
    // SECRET is in wedge's environment, but the guest gets only what --env gives it.
    let out = Wedge::run_with_env(
        &wedge,
        "SECRET",
        "do-not-leak",
        &[
            "run",
            "--env",
            "HELLO_OUT=/tmp/out.txt",
            guest("hello.wasm").to_str().unwrap(),
        ],
    );
    out.expect_code(1).stderr_has("cannot write /tmp/out.txt");
    assert!(!out.stdout.contains("do-not-leak"), "{out:#?}");
    assert!(!out.stdout.contains("env SECRET"), "{out:#?}");
}

#[test]
fn env_inherit_passes_the_host_environment_and_env_overrides_it() {
    let wedge = Wedge::new();
    let out = Wedge::run_with_env(
        &wedge,
        "WEDGE_TEST_VAR",
        "from-host",
        &[
            "run",
            "--env-inherit",
            "--env",
            "WEDGE_TEST_OTHER=explicit",
            guest("hello.wasm").to_str().unwrap(),
        ],
    );
    out.expect_code(0)
        .stdout_has("env WEDGE_TEST_VAR=from-host")
        .stdout_has("env WEDGE_TEST_OTHER=explicit");

    // `--env NAME` passes wedge's own value of NAME.
    let out = Wedge::run_with_env(
        &wedge,
        "WEDGE_TEST_VAR",
        "by-name",
        &[
            "run",
            "--env",
            "WEDGE_TEST_VAR",
            guest("hello.wasm").to_str().unwrap(),
        ],
    );
    out.expect_code(0).stdout_has("env WEDGE_TEST_VAR=by-name");
}

#[test]
fn read_only_dirs_refuse_writes() {
    let wedge = Wedge::new();
    let data = tempfile::tempdir().unwrap();
    let dir = format!("{}::/data", data.path().display());
    let out = wedge.run(&[
        "run",
        "--dir-ro",
        &dir,
        "--env",
        "HELLO_OUT=/data/out.txt",
        guest("hello.wasm").to_str().unwrap(),
    ]);
    out.expect_code(1).stderr_has("cannot write /data/out.txt");
    assert!(!data.path().join("out.txt").exists());
}

#[test]
fn exit_status_of_the_guest_becomes_wedges() {
    let wedge = Wedge::new();
    for code in [0, 1, 42, 125] {
        wedge
            .run(&[
                "run",
                guest("exit.wasm").to_str().unwrap(),
                &code.to_string(),
            ])
            .expect_code(code);
    }
    wedge
        .run(&["run", fixture("exit.wat").to_str().unwrap()])
        .expect_code(7);
}

#[test]
fn stdin_and_stdout_are_inherited() {
    let wedge = Wedge::new();
    let mut child = wedge
        .command()
        .args(["run", guest("upper.wasm").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"shout this\nand this\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "SHOUT THIS\nAND THIS\n"
    );
}

#[test]
fn rust_component_runs_with_args_env_and_files() {
    let wedge = Wedge::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "contents of in.txt").unwrap();
    let component = guest("hello-component.wasm");
    let dir = format!("{}::/data", data.path().display());
    let component = component.to_str().unwrap();

    wedge
        .run(&["run", "--env", "K=v", component, "a", "b"])
        .expect_code(0)
        .stdout_has("hello from a component")
        .stdout_has("argv[1]=a")
        .stdout_has("env K=v");
    wedge
        .run(&["run", "--dir", &dir, component, "read", "/data/in.txt"])
        .expect_code(0)
        .stdout_has("contents of in.txt");
    wedge
        .run(&[
            "run",
            "--dir",
            &dir,
            component,
            "write",
            "/data/out.txt",
            "from the component",
        ])
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "from the component"
    );
    // Read-only: the write fails inside the guest, which exits 1.
    wedge
        .run(&[
            "run",
            "--dir-ro",
            &dir,
            component,
            "write",
            "/data/no.txt",
            "x",
        ])
        .expect_code(1);
    assert!(!data.path().join("no.txt").exists());
    // Rust's std reports a non-zero exit through wasi:cli/exit as "error", which is 1.
    wedge.run(&["run", component, "exit", "3"]).expect_code(1);
    wedge.run(&["run", component, "exit", "0"]).expect_code(0);
}

// ---- --invoke ----------------------------------------------------------------------------

#[test]
fn invoke_calls_exports_of_every_numeric_type() {
    let wedge = Wedge::new();
    let numeric = fixture("numeric.wat");
    let numeric = numeric.to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("add_i32", &["2", "-5"], "-3\n"),
        ("add_i32", &["4294967295", "1"], "0\n"),
        ("add_i64", &["9000000000", "1"], "9000000001\n"),
        ("mul_f32", &["1.5", "4"], "6\n"),
        ("div_f64", &["1", "4"], "0.25\n"),
        ("div_f64", &["1", "0"], "inf\n"),
        ("swap", &["1", "2"], "2\n1\n"),
        ("nothing", &[], ""),
    ];
    for (name, args, expected) in cases {
        let mut argv = vec!["run", "--invoke", name, numeric];
        argv.extend_from_slice(args);
        let out = wedge.run(&argv);
        out.expect_code(0);
        assert_eq!(&out.stdout, expected, "{name} {args:?}");
    }
}

#[test]
fn invoke_initialises_a_reactor_first() {
    let wedge = Wedge::new();
    let out = wedge.run(&[
        "run",
        "--invoke",
        "get",
        fixture("reactor.wat").to_str().unwrap(),
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout, "42\n");
}

#[test]
fn invoke_mistakes_list_the_exports_with_signatures() {
    let wedge = Wedge::new();
    let numeric = fixture("numeric.wat");
    let numeric = numeric.to_str().unwrap();
    for (argv, says) in [
        (
            vec!["run", "--invoke", "nope", numeric],
            "no export named `nope`",
        ),
        (
            vec!["run", "--invoke", "add_i32", numeric, "1"],
            "takes 2 arguments, but 1 was given",
        ),
        (
            vec!["run", "--invoke", "add_i64", numeric, "1", "x"],
            "`x` is not a valid i64",
        ),
        (
            vec!["run", "--invoke", "add_i32", numeric, "1", "4294967296"],
            "not a valid i32",
        ),
        (
            vec!["run", "--invoke", "answer", numeric],
            "is a global, not a function",
        ),
    ] {
        wedge
            .run(&argv)
            .expect_code(status::USAGE)
            .stderr_has(says)
            .stderr_has("add_i32(i32, i32) -> i32")
            .stderr_has("swap(i32, i64) -> (i64, i32)");
    }
    wedge
        .run(&[
            "run",
            "--invoke",
            "run",
            guest("hello-component.wasm").to_str().unwrap(),
        ])
        .expect_code(status::USAGE)
        .stderr_has("core modules only");
}

#[test]
fn a_reactor_without_invoke_says_to_use_it() {
    Wedge::new()
        .run(&["run", fixture("reactor.wat").to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("reactor")
        .stderr_has("--invoke")
        .stderr_has("get() -> i32");
}

// ---- traps and limits --------------------------------------------------------------------

#[test]
fn trap_reports_kind_and_named_backtrace() {
    let wedge = Wedge::new();
    let out = wedge.run(&["run", fixture("trap.wat").to_str().unwrap()]);
    out.expect_code(status::TRAP)
        .one_error_paragraph()
        .stderr_has("trapped: wasm `unreachable` instruction executed")
        .stderr_has("trapper!explode")
        .stderr_has("trapper!middle");
    let explode = out.stderr.find("explode").unwrap();
    let middle = out.stderr.find("middle").unwrap();
    assert!(explode < middle, "innermost frame first\n{out:#?}");

    // A C program keeps its function names (crash.c is built without --strip-all).
    wedge
        .run(&["run", guest("crash.wasm").to_str().unwrap()])
        .expect_code(status::TRAP)
        .stderr_has("parse_config")
        .stderr_has("main");

    wedge
        .run(&[
            "run",
            "--invoke",
            "div_s",
            fixture("numeric.wat").to_str().unwrap(),
            "1",
            "0",
        ])
        .expect_code(status::TRAP)
        .stderr_has("integer divide by zero");
}

#[test]
fn timeout_stops_a_spinning_guest() {
    let started = Instant::now();
    Wedge::new()
        .run(&[
            "run",
            "--timeout",
            "300ms",
            fixture("loop.wat").to_str().unwrap(),
        ])
        .expect_code(status::TIMEOUT)
        .one_error_paragraph()
        .stderr_has("time limit of 300ms");
    // Not a speed claim: a bound that catches a timeout that does not fire at all.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn timeout_stops_a_guest_blocked_in_a_host_call() {
    // sleep.wat asks the host to sleep 60 s; epoch interruption cannot reach it there.
    let started = Instant::now();
    Wedge::new()
        .run(&[
            "run",
            "--timeout",
            "300ms",
            fixture("sleep.wat").to_str().unwrap(),
        ])
        .expect_code(status::TIMEOUT)
        .stderr_has("time limit of 300ms");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn fuel_runs_out_in_an_endless_loop_and_suffices_for_a_short_call() {
    let wedge = Wedge::new();
    wedge
        .run(&[
            "run",
            "--fuel",
            "100000",
            fixture("loop.wat").to_str().unwrap(),
        ])
        .expect_code(status::OUT_OF_FUEL)
        .one_error_paragraph()
        .stderr_has("ran out of fuel")
        .stderr_has("100000");
    let out = wedge.run(&[
        "run",
        "--fuel",
        "1000",
        "--invoke",
        "add_i32",
        fixture("numeric.wat").to_str().unwrap(),
        "1",
        "2",
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout, "3\n");
}

#[test]
fn memory_limit_is_seen_by_the_guest_as_allocation_failure() {
    let wedge = Wedge::new();
    // malloc returns NULL at the limit; the C program notices and exits normally.
    let out = wedge.run(&[
        "run",
        "--max-memory",
        "16MiB",
        guest("alloc.wasm").to_str().unwrap(),
    ]);
    out.expect_code(0);
    let mib: u32 = out
        .stdout
        .trim()
        .strip_prefix("allocated ")
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:#?}"));
    assert!(
        (1..16).contains(&mib),
        "allocated {mib} MiB under a 16 MiB limit"
    );

    // memory.grow returns -1 at the limit: 1 MiB is 16 pages.
    let out = wedge.run(&[
        "run",
        "--max-memory",
        "1MiB",
        "--invoke",
        "pages_until_refused",
        fixture("grow.wat").to_str().unwrap(),
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout, "16\n");
}

#[test]
fn a_trap_after_a_refused_growth_names_the_memory_limit() {
    let wedge = Wedge::new();
    wedge
        .run(&[
            "run",
            "--max-memory",
            "1MiB",
            fixture("grow.wat").to_str().unwrap(),
        ])
        .expect_code(status::TRAP)
        .one_error_paragraph()
        .stderr_has("memory limit is the likely cause")
        .stderr_has("limit is 1 MiB");
    wedge
        .run(&[
            "run",
            "--max-memory",
            "64MiB",
            fixture("big-memory.wat").to_str().unwrap(),
        ])
        .expect_code(status::TRAP)
        .stderr_has("initial memory of 100 MiB is larger than the limit of 64 MiB");
}

// ---- bad input ---------------------------------------------------------------------------

#[test]
fn missing_or_unreadable_files() {
    let wedge = Wedge::new();
    wedge
        .run(&["run", "/no/such/file.wasm"])
        .expect_code(status::NO_INPUT)
        .one_error_paragraph()
        .stderr_has("cannot read `/no/such/file.wasm`")
        .stderr_has("No such file");
    let dir = tempfile::tempdir().unwrap();
    wedge
        .run(&["run", dir.path().to_str().unwrap()])
        .expect_code(status::NO_INPUT)
        .stderr_has("directory");
}

#[test]
fn files_that_are_not_wasm_say_what_they_look_like() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "notes.wasm",
            b"hello, I am text\n",
            "it starts with the text \"hello, I am text",
        ),
        ("empty.wasm", b"", "the file is empty"),
        ("script.wasm", b"#!/bin/sh\necho hi\n", "a script"),
        (
            "binary.wasm",
            &[0xde, 0xad, 0xbe, 0xef, 0xff, 0xfe],
            "de ad be ef ff fe",
        ),
        (
            "elf.wasm",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0",
            "native executable",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        wedge
            .run(&["run", path.to_str().unwrap()])
            .expect_code(status::BAD_PROGRAM)
            .one_error_paragraph()
            .stderr_has("not WebAssembly")
            .stderr_has(says)
            .stderr_has("00 61 73 6d");
    }
}

#[test]
fn invalid_wasm_gives_the_validator_message_and_offset() {
    let wedge = Wedge::new();
    let dir = tempfile::tempdir().unwrap();
    // A function declared to return i32 with an empty body.
    let invalid = dir.path().join("invalid.wasm");
    std::fs::write(
        &invalid,
        b"\0asm\x01\0\0\0\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x0a\x04\x01\x02\x00\x0b",
    )
    .unwrap();
    wedge
        .run(&["run", invalid.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .one_error_paragraph()
        .stderr_has("not a valid WebAssembly core module")
        .stderr_has("type mismatch")
        .stderr_has("offset");

    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, b"\0asm\x01\0\0\0\x01\x05\x01").unwrap();
    wedge
        .run(&["run", truncated.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("offset");

    let future = dir.path().join("future.wasm");
    std::fs::write(&future, b"\0asm\x02\0\0\0").unwrap();
    wedge
        .run(&["run", future.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("unsupported version");

    let bad_text = dir.path().join("bad.wat");
    std::fs::write(&bad_text, "(module\n  (func (export \"f\") (i32.bogus)))\n").unwrap();
    wedge
        .run(&["run", bad_text.to_str().unwrap()])
        .expect_code(status::BAD_PROGRAM)
        .stderr_has("not valid WebAssembly text")
        .stderr_has("bad.wat:2:");
}

#[test]
fn unprovided_imports_are_named_with_what_provides_them() {
    let wedge = Wedge::new();
    wedge
        .run(&["run", fixture("import-env.wat").to_str().unwrap()])
        .expect_code(status::MISSING_IMPORT)
        .one_error_paragraph()
        .stderr_has("`env::host_log` (a function)")
        .stderr_has("which wedge does not provide");
    wedge
        .run(&["run", fixture("import-http.wat").to_str().unwrap()])
        .expect_code(status::MISSING_IMPORT)
        .one_error_paragraph()
        .stderr_has("`wasi:http/outgoing-handler@0.2.0`")
        .stderr_has("wedge serve");
    // An HTTP handler is not a command: wedge says to serve it.
    wedge
        .run(&["run", guest("http-hello.wasm").to_str().unwrap()])
        .expect_code(status::MISSING_IMPORT)
        .one_error_paragraph()
        .stderr_has("it is an HTTP handler")
        .stderr_has("wedge serve");
}

#[test]
fn usage_errors_have_their_own_status() {
    let wedge = Wedge::new();
    let wat = fixture("loop.wat");
    let wat = wat.to_str().unwrap();
    for (argv, says) in [
        (vec!["run", "--max-memory", "64", wat], "is not a size"),
        (vec!["run", "--timeout", "soon", wat], "is not a duration"),
        (vec!["run", "--fuel", "lots", wat], "invalid value"),
        (vec!["run", "--frobnicate", wat], "unexpected argument"),
        (
            vec!["run", "--dir", "/no/such/dir::/d", wat],
            "cannot grant the directory `/no/such/dir`",
        ),
        (vec!["run", "--dir", "::/d", wat], "HOST::GUEST"),
        (vec!["run", "--env", "=x", wat], "name is empty"),
        (
            vec!["run", "--env", "WEDGE_SURELY_UNSET_VAR", wat],
            "not set in wedge's environment",
        ),
        (vec!["run"], "FILE"),
    ] {
        wedge.run(&argv).expect_code(status::USAGE).stderr_has(says);
    }
    // --help and --version are not errors.
    wedge.run(&["--version"]).expect_code(0).stdout_has("wedge");
    wedge
        .run(&["run", "--help"])
        .expect_code(0)
        .stdout_has("--max-memory");
}

impl support::Wedge {
    fn run_with_env(&self, name: &str, value: &str, args: &[&str]) -> support::Outcome {
        support::Outcome::from(self.command().env(name, value).args(args).output().unwrap())
    }
}
