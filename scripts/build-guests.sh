#!/usr/bin/env bash
# Build every guest program under examples/ into target/guests/ (flat):
#   hello.wasm exit.wasm upper.wasm alloc.wasm crash.wasm   (C, wasm32-wasi core modules)
#   wagi-hello.wasm wagi-echo.wasm                          (C, WAGI handlers: core modules)
#   hello-component.wasm                                    (Rust, WASI 0.2 command component)
#   http-hello.wasm http-probe.wasm                         (Rust, wasi:http/proxy components)
# Installs the toolchains first (scripts/setup-toolchains.sh) when something is missing.
# Idempotent: a guest is rebuilt only when its source is newer than its output.
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
fi
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
    if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$SELF" ]; then
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

# Sanity check: every output starts with the wasm magic; byte 4 tells a core
# module (version 1) from a component (0x0d layer 1).
for f in hello exit upper alloc crash wagi-hello wagi-echo hello-component http-hello http-probe; do
    magic="$(head -c 8 "$OUT/$f.wasm" | od -An -tx1 | tr -d ' \n')"
    case "$f:$magic" in
        hello-component:0061736d0d000100 | http-*:0061736d0d000100) ;;
        hello-component:* | http-*:*) echo "build-guests: $OUT/$f.wasm is not a component ($magic)" >&2; exit 1 ;;
        *:0061736d01000000) ;;
        *) echo "build-guests: $OUT/$f.wasm is not a core module ($magic)" >&2; exit 1 ;;
    esac
done
echo "build-guests: done:"
ls -l "$OUT"/*.wasm | awk '{printf "  %8d  %s\n", $5, $9}'
