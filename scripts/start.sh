#!/usr/bin/env bash
# Quick start: set up everything on a fresh Debian 12 machine and run wedge's main job on
# embedded defaults. Today that is `wedge run` on the example programs (the HTTP gateway,
# `wedge serve`, is the next milestone).
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/.."

scripts/build-guests.sh
cargo build --locked -p wedge
wedge=target/debug/wedge

echo
echo "== wedge run target/guests/hello.wasm (a C program, WASI preview 1)"
$wedge run --env GREETING=hello target/guests/hello.wasm from the quick start
echo
echo "== wedge run target/guests/hello-component.wasm (a Rust component, WASI 0.2)"
$wedge run target/guests/hello-component.wasm from the quick start
echo
echo "== wedge run --invoke add_i32 tests/fixtures/numeric.wat 40 2"
$wedge run --invoke add_i32 tests/fixtures/numeric.wat 40 2
echo
echo "Try next:  $wedge run --help    (binary: $wedge)"
