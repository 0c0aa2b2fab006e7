#!/usr/bin/env bash
# Build every guest program under examples/ into target/guests/ (flat):
#   hello.wasm exit.wasm upper.wasm alloc.wasm crash.wasm   (C, wasm32-wasi core modules)
#   wagi-hello.wasm wagi-echo.wasm wagi-hostile.wasm        (C, WAGI handlers: core modules)
#   wasmedge-v1.wasm wasmedge-v2.wasm                       (C, WasmEdge's socket ABI, both generations)
#   hello-component.wasm                                    (Rust, WASI 0.2 command component)
#   http-hello.wasm http-probe.wasm http-state.wasm         (Rust, wasi:http/proxy components)
#   js-hello js-echo js-json-api js-fetch .wasm             (JavaScript components, componentize-js)
#   js-orders js-counter .wasm                              (JavaScript, SQL and key-value)
#   py-hello py-echo py-json-api py-fetch .wasm             (Python components, componentize-py)
#   py-orders py-counter .wasm                              (Python, SQL and key-value: wedge_state.py)
#   c-http-hello.wasm                                       (C component: templates/http-c, wedge build)
#   wasmedge-hyper-server wasmedge-hyper-client .wasm       (Rust on WasmEdge's socket ABI: hyper_wasi,
#   wasmedge-http-req-client wasmedge-reqwest-client .wasm   http_req_wasi, reqwest_wasi,
#   wasmedge-orders.wasm                                     mysql_async_wasi + hyper_wasi;
#   wasmedge-example-*.wasm                                  wasmedge_wasi_socket 0.5.5's own examples;
#                                                            Rust 1.78.0, wasm32-wasi)
# Installs the toolchains first (scripts/setup-toolchains.sh) when something is missing.
# Builds wedge (cargo build -p wedge, the profile the tests use): `wedge new` writes the WIT
# and adapter the language guests are built with, as it does for a user's project.
# Idempotent: a guest is rebuilt only when its source (or, for the JavaScript, Python and C
# ones, the WIT `wedge new` writes) changed since its output was built.
set -euo pipefail
# rustup installs cargo/rustup here; a non-login shell may not have it on PATH.
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

need_setup=0
command -v clang >/dev/null 2>&1 || need_setup=1
command -v wasm-ld >/dev/null 2>&1 || need_setup=1
[ -e /usr/include/wasm32-wasi/stdio.h ] || need_setup=1   # wasi-libc
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed)"
    grep -qx wasm32-wasip2 <<<"$installed" || need_setup=1
    wasmedge_targets="$(rustup target list --installed --toolchain 1.78.0 2>/dev/null || true)"
    grep -qx wasm32-wasi <<<"$wasmedge_targets" || need_setup=1
fi
for tool in componentize-js componentize-py wasm-tools wit-bindgen; do
    [ -x "target/toolchains/bin/$tool" ] || need_setup=1
done
if [ "$need_setup" -eq 1 ]; then
    scripts/setup-toolchains.sh
fi

OUT=target/guests
mkdir -p "$OUT"

CFLAGS=(--target=wasm32-wasi -O2 -Wall -Wextra -Werror)

# build_c NAME EXTRA_LDFLAGS...
build_c() {
    local name="$1"; shift
    local src="examples/c/$name.c" out="$OUT/$name.wasm"
    local fresh=1 header
    [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$SELF" ] || fresh=0
    for header in examples/c/*.h; do
        [ -e "$header" ] && [ "$header" -nt "$out" ] && fresh=0
    done
    if [ "$fresh" -eq 1 ]; then
        echo "build-guests: $out up to date"
        return
    fi
    echo "build-guests: clang $src -> $out"
    clang "${CFLAGS[@]}" "$@" -o "$out.tmp" "$src"
    mv "$out.tmp" "$out"
}

build_c hello -Wl,--strip-all
build_c exit -Wl,--strip-all
build_c upper -Wl,--strip-all
build_c alloc -Wl,--strip-all
# crash keeps its name section (function names in backtraces); only DWARF is dropped.
build_c crash -Wl,--strip-debug
# WAGI (CGI-style) handlers for `wedge serve`: plain preview1 commands.
build_c wagi-hello -Wl,--strip-all
build_c wagi-echo -Wl,--strip-all
build_c wagi-hostile -Wl,--strip-all
# A reactor (no `_start`, exports only): the stream function of the sensor demo.
build_c triple -mexec-model=reactor -Wl,--strip-all
# WasmEdge's socket extension, declared by hand (wasmedge_sockets.h): the ABI fixtures of
# crates/capabilities/tests/wasmedge_sockets.rs.
build_c wasmedge-v1 -Wl,--strip-all
build_c wasmedge-v2 -Wl,--strip-all

# Rust components: standalone Cargo projects (empty [workspace] table) sharing
# one target dir. cargo decides itself whether anything needs rebuilding.
# build_rust NAME ARTIFACT: ARTIFACT is cargo's output name (a cdylib's has
# underscores); it is copied to $OUT/NAME.wasm when it changed.
build_rust() {
    local name="$1" artifact="$2"
    echo "build-guests: cargo build $name (wasm32-wasip2)"
    cargo build --quiet --release --target wasm32-wasip2 \
        --manifest-path "examples/rust/$name/Cargo.toml" \
        --target-dir target/guest-build
    local src="target/guest-build/wasm32-wasip2/release/$artifact.wasm"
    if ! cmp -s "$src" "$OUT/$name.wasm"; then
        cp "$src" "$OUT/$name.wasm"
    fi
}

build_rust hello-component hello-component   # a command (bin target)
build_rust http-hello http_hello             # wasi:http/proxy (cdylib)
build_rust http-probe http_probe             # wasi:http/proxy (cdylib)
build_rust http-state http_state             # wasi:http/proxy + wasi:keyvalue + wedge:sql (cdylib)
build_rust queue-demo queue_demo             # wasi:http/proxy + wasi:keyvalue + wedge:queue (cdylib)
build_rust http-p3 http_p3                   # wasi:http/handler@0.3.0: WASI 0.3 (cdylib)

# --- Rust on WasmEdge's socket extension (wasm32-wasi core modules) ----------------
# The crates WasmEdge apps are written with (tokio_wasi, hyper_wasi, mysql_async_wasi,
# http_req_wasi, reqwest_wasi, wasmedge_wasi_socket), from crates.io, built as such apps were
# built: Rust 1.78.0 (installed by setup-toolchains.sh) for wasm32-wasi. Newer Rusts (1.80 on)
# compile wasmedge_wasi_socket 0.5's address reads to zeros (it reads buffers the host wrote
# through pointers taken from immutable locals, which their optimizer may assume unchanged),
# and 1.84 dropped the wasm32-wasi target. Each project pins its versions in its Cargo.lock,
# resolved for its rust-version (1.78).
WASMEDGE_RUST=1.78.0
WASMEDGE_BUILD=target/guest-build/wasmedge
build_wasmedge() {
    local name="$1" artifact="$2"
    echo "build-guests: cargo +$WASMEDGE_RUST build examples/wasmedge/$name (wasm32-wasi)"
    cargo "+$WASMEDGE_RUST" build --quiet --release --locked --target wasm32-wasi \
        --manifest-path "examples/wasmedge/$name/Cargo.toml" --target-dir "$WASMEDGE_BUILD"
    local src="$WASMEDGE_BUILD/wasm32-wasi/release/$artifact.wasm"
    if ! cmp -s "$src" "$OUT/wasmedge-$name.wasm"; then
        cp "$src" "$OUT/wasmedge-$name.wasm"
    fi
}
build_wasmedge hyper-server hyper-server
build_wasmedge hyper-client hyper-client
build_wasmedge http-req-client http-req-client
build_wasmedge reqwest-client reqwest-client
build_wasmedge orders orders

# The examples the published wasmedge_wasi_socket 0.5.5 ships, as its crates.io package has
# them: examples/wasmedge/socket-examples is a package that depends on it; a copy of it
# gets the downloaded package's examples/*.rs and builds them unchanged.
SHIPPED=target/guest-build/wasmedge-socket-examples
rm -rf "$SHIPPED"
mkdir -p "$SHIPPED/examples"
cp -r examples/wasmedge/socket-examples/. "$SHIPPED/"
cargo "+$WASMEDGE_RUST" fetch --quiet --locked --manifest-path "$SHIPPED/Cargo.toml" --target wasm32-wasi
socket_crate="$(cargo "+$WASMEDGE_RUST" metadata --locked --format-version 1 --manifest-path "$SHIPPED/Cargo.toml" |
    grep -o '"manifest_path":"[^"]*/wasmedge_wasi_socket-0\.5\.5/Cargo.toml"' | head -1 |
    sed -e 's/^"manifest_path":"//' -e 's|/Cargo.toml"$||')"
[ -d "$socket_crate/examples" ] || { echo "build-guests: wasmedge_wasi_socket 0.5.5's examples not found (cargo metadata gave '$socket_crate')" >&2; exit 1; }
cp "$socket_crate"/examples/*.rs "$SHIPPED/examples/"
echo "build-guests: cargo +$WASMEDGE_RUST build wasmedge_wasi_socket 0.5.5's examples (wasm32-wasi)"
cargo "+$WASMEDGE_RUST" build --quiet --release --locked --examples --target wasm32-wasi \
    --manifest-path "$SHIPPED/Cargo.toml" --target-dir "$WASMEDGE_BUILD"
WASMEDGE_EXAMPLES=()
for example in "$SHIPPED"/examples/*.rs; do
    example="$(basename "$example" .rs)"
    src="$WASMEDGE_BUILD/wasm32-wasi/release/examples/$example.wasm"
    if ! cmp -s "$src" "$OUT/wasmedge-example-$example.wasm"; then
        cp "$src" "$OUT/wasmedge-example-$example.wasm"
    fi
    WASMEDGE_EXAMPLES+=("wasmedge-example-$example")
done

# --- JavaScript, Python and C components ------------------------------------------
# Built with the project's own toolchains (target/toolchains/bin) against the WIT that
# `wedge new` writes for each language, so the examples build exactly as a user's project.
PATH="$PWD/target/toolchains/bin:$PATH"
echo "build-guests: cargo build -p wedge (for wedge new / wedge build)"
cargo build --quiet --locked -p wedge
WEDGE="$PWD/target/debug/wedge"
LANG_DIR=target/guest-build/lang
rm -rf "$LANG_DIR"
mkdir -p "$LANG_DIR"
"$WEDGE" new http-js "$LANG_DIR/js" >/dev/null
"$WEDGE" new http-py "$LANG_DIR/py" >/dev/null
"$WEDGE" new http-c "$LANG_DIR/c" >/dev/null

# The WIT each language's guests are built against comes from `wedge new` (it is embedded in
# wedge). A guest built against other WIT is stale even when its source is not: a world that
# gained an import (wasi:keyvalue, say) must reach every guest. $OUT/.LANG-wit holds the digest
# of the WIT the guests in $OUT were built with; it is written only after all of them built.
wit_digest() {
    (cd "$LANG_DIR/$1/wit" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
        sha256sum | cut -d' ' -f1
}
declare -A WIT
for lang in js py c; do WIT[$lang]="$(wit_digest "$lang")"; done

# fresh LANG OUT SOURCES...: was OUT built against LANG's current WIT, and is it newer than
# every source and this script?
fresh() {
    local lang="$1" out="$2" src; shift 2
    [ "$(cat "$OUT/.$lang-wit" 2>/dev/null || true)" = "${WIT[$lang]}" ] || return 1
    [ -f "$out" ] && [ "$out" -nt "$SELF" ] || return 1
    for src in "$@"; do [ "$out" -nt "$src" ] || return 1; done
}
wit_built() { echo "${WIT[$1]}" >"$OUT/.$1-wit"; }

for name in hello echo json-api fetch orders counter; do
    src="examples/js/$name.js" out="$OUT/js-$name.wasm"
    if fresh js "$out" "$src"; then echo "build-guests: $out up to date"; continue; fi
    echo "build-guests: componentize-js $src -> $out"
    componentize-js "$src" --wit "$LANG_DIR/js/wit" --world-name app -o "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
done
wit_built js

for name in hello echo json_api fetch orders counter; do
    src="examples/python/$name.py" out="$OUT/py-${name//_/-}.wasm"
    if fresh py "$out" "$src" templates/http-py/wedge_http.py templates/http-py/wedge_state.py; then echo "build-guests: $out up to date"; continue; fi
    echo "build-guests: componentize-py $src -> $out"
    componentize-py -d "$LANG_DIR/py/wit" -w app componentize \
        -p examples/python -p templates/http-py "$name" -o "$out.tmp" >/dev/null
    mv "$out.tmp" "$out"
done
wit_built py

# The C http hello is the http-c template itself, built by `wedge build`.
out="$OUT/c-http-hello.wasm"
if fresh c "$out" templates/http-c/app.c templates/http-c/wedge.toml; then
    echo "build-guests: $out up to date"
else
    echo "build-guests: wedge build templates/http-c -> $out"
    "$WEDGE" build --app "$LANG_DIR/c/wedge.toml"
    cp "$LANG_DIR/c/app.wasm" "$out"
fi
wit_built c

# Sanity check: every output starts with the wasm magic; byte 4 tells a core
# module (version 1) from a component (0x0d layer 1).
for f in hello exit upper alloc crash wagi-hello wagi-echo wagi-hostile wasmedge-v1 wasmedge-v2 triple hello-component http-hello http-probe http-state queue-demo http-p3 \
    wasmedge-hyper-server wasmedge-hyper-client wasmedge-http-req-client wasmedge-reqwest-client wasmedge-orders \
    "${WASMEDGE_EXAMPLES[@]}" \
    js-hello js-echo js-json-api js-fetch js-orders js-counter \
    py-hello py-echo py-json-api py-fetch py-orders py-counter c-http-hello; do
    magic="$(head -c 8 "$OUT/$f.wasm" | od -An -tx1 | tr -d ' \n')"
    case "$f:$magic" in
        wasmedge-*:0061736d01000000) ;;
        wasmedge-*:*) echo "build-guests: $OUT/$f.wasm is not a core module ($magic)" >&2; exit 1 ;;
        hello-component:0061736d0d000100 | queue-demo:0061736d0d000100 | *http-*:0061736d0d000100 | js-*:0061736d0d000100 | py-*:0061736d0d000100) ;;
        hello-component:* | queue-demo:* | *http-*:* | js-*:* | py-*:*) echo "build-guests: $OUT/$f.wasm is not a component ($magic)" >&2; exit 1 ;;
        *:0061736d01000000) ;;
        *) echo "build-guests: $OUT/$f.wasm is not a core module ($magic)" >&2; exit 1 ;;
    esac
done
echo "build-guests: done:"
ls -l "$OUT"/*.wasm | awk '{printf "  %8d  %s\n", $5, $9}'
