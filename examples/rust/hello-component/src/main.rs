//! hello-component: a WASI 0.2 command component (built for wasm32-wasip2).
//!
//! Prints a greeting, its arguments and its environment, then:
//!   exit CODE         exits with CODE
//!   read PATH         prints the contents of PATH
//!   write PATH TEXT   writes TEXT to PATH and prints `wrote PATH`
//! Other arguments are only echoed. Errors go to stderr and exit with status 1.

use std::process::exit;

fn fail(msg: String) -> ! {
    eprintln!("{msg}");
    exit(1)
}

fn main() {
    println!("hello from a component");
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        println!("argv[{i}]={a}");
    }
    for (k, v) in std::env::vars() {
        println!("env {k}={v}");
    }

    match args.get(1).map(String::as_str) {
        Some("exit") => {
            let code = args
                .get(2)
                .ok_or_else(|| "usage: exit CODE".to_string())
                .and_then(|s| s.parse::<i32>().map_err(|e| format!("bad exit code {s:?}: {e}")))
                .unwrap_or_else(|e| fail(e));
            exit(code);
        }
        Some("read") => {
            let path = args.get(2).unwrap_or_else(|| fail("usage: read PATH".into()));
            match std::fs::read(path) {
                Ok(bytes) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = out.write_all(&bytes).and_then(|_| out.flush()) {
                        fail(format!("cannot write stdout: {e}"));
                    }
                }
                Err(e) => fail(format!("cannot read {path}: {e}")),
            }
        }
        Some("write") => {
            let (path, text) = match (args.get(2), args.get(3)) {
                (Some(p), Some(t)) => (p, t),
                _ => fail("usage: write PATH TEXT".into()),
            };
            match std::fs::write(path, text) {
                Ok(()) => println!("wrote {path}"),
                Err(e) => fail(format!("cannot write {path}: {e}")),
            }
        }
        // Any other arguments are only echoed.
        _ => {}
    }
}
