#!/usr/bin/env bash
# Pull benchmark: how long `wedge pull` takes to fetch a function from a registry on loopback
# (distribution 2.8, scripts/services.sh's open registry), cold and with its blobs already in
# wedge's store, against two peers timed in the same run:
#   curl          the floor: the manifest and the Wasm blob fetched by digest with two GETs,
#                 nothing checked, no tag resolved
#   oras-py       an independent client (PyPI oras, tests/oci/oras_client.py): tag, manifest,
#                 every layer to a file
# for a small function (the Rust http hello, ~115 KB) and a large one (the Python hello, a
# ~18 MB component). Rows:
#   wedge cold           empty store: resolve the tag, fetch manifest, config, layer; check
#                        every digest; write -o
#   wedge cached         blobs in the store: the tag is resolved (one HEAD), the rest is read
#                        from the store and checked again
#   wedge cached, by digest   REF@sha256:...: no request at all
#
#   benches/oci/run.sh
#   RUNS=20 WEDGE=target/debug/wedge benches/oci/run.sh
#
# Environment:
#   RUNS=30        timed runs per row (hyperfine), after 3 warm-up runs
#   WEDGE=path     this wedge binary instead of a release build
# Output: a Markdown report on stdout, also written to target/bench/oci.md.
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/../.."
ROOT="$PWD"
# log, apt_install, invocation
. "$ROOT/benches/lib.sh"
INVOCATION="$(invocation "$0${*:+ $*}" WEDGE RUNS)"
RUNS="${RUNS:-30}"
OUT="$ROOT/target/bench/oci"
mkdir -p "$OUT"

command -v hyperfine >/dev/null 2>&1 || apt_install hyperfine
command -v curl >/dev/null 2>&1 || apt_install curl
scripts/setup-toolchains.sh >&2
scripts/build-guests.sh >&2

# The registry this run starts is stopped (and its data deleted) when it ends.
cleanup() { if [ -n "${STARTED_SERVICES:-}" ]; then scripts/services.sh stop >&2 || true; fi; }
trap cleanup EXIT
if ! scripts/services.sh running; then STARTED_SERVICES=1; fi
eval "$(scripts/services.sh start registry)"
REGISTRY="$WEDGE_TEST_REGISTRY"

if [ -z "${WEDGE:-}" ]; then
    log "cargo build --release (target/bench-target)"
    cargo build --release --locked -p wedge --target-dir target/bench-target >&2
    WEDGE="$ROOT/target/bench-target/release/wedge"
fi
PYTHON="$ROOT/target/toolchains/tools-venv/bin/python"
ORAS="$ROOT/tests/oci/oras_client.py"
export XDG_CACHE_HOME="$OUT/cache"
export DOCKER_CONFIG="$OUT/docker"
mkdir -p "$DOCKER_CONFIG"

results="$OUT/results.tsv"
: >"$results"
for guest in http-hello py-hello; do
    file="target/guests/$guest.wasm"
    ref="$REGISTRY/bench/$guest:1"
    pinned="$("$WEDGE" push "$file" "$ref" 2>/dev/null)"
    manifest_digest="${pinned##*@}"
    layer_digest="sha256:$(sha256sum "$file" | awk '{print $1}')"
    size="$(stat -c %s "$file")"
    json="$OUT/$guest.json"
    log "$guest ($size bytes): hyperfine, $RUNS runs a row"
    # -N: no shell between hyperfine and the client (output is discarded by hyperfine). One
    # --prepare per command, in order: only the cold row empties the store before each run.
    hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$json" \
        --prepare true --prepare true --prepare "rm -rf $XDG_CACHE_HOME/wedge/oci" \
        --prepare true --prepare true \
        -n "curl (2 GETs by digest)" \
        "curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o /dev/null http://$REGISTRY/v2/bench/$guest/manifests/$manifest_digest -o $OUT/curl.wasm http://$REGISTRY/v2/bench/$guest/blobs/$layer_digest" \
        -n "oras-py pull" \
        "$PYTHON $ORAS pull $ref $OUT/oras" \
        -n "wedge cold" \
        "$WEDGE pull $ref -o $OUT/wedge.wasm" \
        -n "wedge cached" \
        "$WEDGE pull $ref -o $OUT/wedge.wasm" \
        -n "wedge cached, by digest" \
        "$WEDGE pull $pinned -o $OUT/wedge.wasm" >&2
    cmp "$OUT/curl.wasm" "$file"
    cmp "$OUT/wedge.wasm" "$file"
    "$PYTHON" - "$json" "$guest" "$size" >>"$results" <<'PY'
import json, statistics, sys
data = json.load(open(sys.argv[1]))
for r in data["results"]:
    print("\t".join([sys.argv[2], sys.argv[3], r["command"],
                     str(statistics.median(r["times"])), str(r["user"]), str(r["system"])]))
PY
done

report="$OUT/../oci.md"
"$PYTHON" - "$results" "$INVOCATION" "$WEDGE" >"$report" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print(f"Command: `{sys.argv[2]}` (wedge: `{sys.argv[3]}`)\n")
print("| function | size | client | median wall | CPU (user + sys) | wall vs curl |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
floor = {}
for guest, size, name, median, user, system in rows:
    if name.startswith("curl"):
        floor[guest] = float(median)
for guest, size, name, median, user, system in rows:
    kb = int(size) / 1024
    size_text = f"{kb / 1024:.1f} MiB" if kb > 1024 else f"{kb:.0f} KiB"
    cpu = (float(user) + float(system)) * 1000
    print(f"| {guest} | {size_text} | {name} | {float(median) * 1000:.1f} ms | {cpu:.1f} ms | {float(median) / floor[guest]:.2f}× |")
PY
cat "$report"
