#!/usr/bin/env bash
# Deploy density benchmark: RSS of `wedge serve` with 1, 100, 1,000 and 10,000 deployed
# hello functions (http component), the time to deploy each, and the restart time with all
# of them; once with one binary under N names, once with N distinct binaries.
#
#   benches/deploy/run.sh
#   COUNTS=1,100 DISTINCT=1,10 benches/deploy/run.sh      # a quick run
#
# Environment:
#   COUNTS=1,100,1000,10000   checkpoints for functions deployed from the same bytes
#   DISTINCT=1,100,1000       checkpoints for distinct binaries (each compiled)
#   WEDGE=path                use this wedge binary instead of building a release one
#   GUEST=path                the function (default target/guests/http-hello.wasm)
# Output: JSON on stdout, also written to target/bench/density.json.
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/../.."
ROOT="$PWD"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
. "$ROOT/benches/lib.sh"

scripts/build-guests.sh >&2
if [ -z "${WEDGE:-}" ]; then
    log "cargo build --release (target/bench-target)"
    cargo build --release --locked -p wedge --target-dir target/bench-target >&2
    WEDGE="$ROOT/target/bench-target/release/wedge"
fi
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 benches/deploy/density.py "$WEDGE" "${GUEST:-target/guests/http-hello.wasm}" \
    --counts "${COUNTS:-1,100,1000,10000}" --distinct "${DISTINCT:-1,100,1000}" \
    --out "$OUT/density.json"
