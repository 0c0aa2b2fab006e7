#!/usr/bin/env bash
# State benchmark: requests/s and latency of stateful functions on the embedded backend (SQLite)
# and on the server backends (Redis, MariaDB), at one fixed concurrency, loaded with wrk:
#   hello           the Rust http hello, no state: the stateless baseline of the same run
#   kv-sqlite       http-state `kv-bump` (a key-value get, then a set, of one of KEYS random
#                   keys) on the embedded SQLite store
#   kv-redis        the same with the store on Redis (runtime config)
#   orders-js-sqlite    the JavaScript orders example: PUT /orders/ID of one of ORDERS seeded
#                   orders, which is a SELECT and an UPDATE in one transaction, on SQLite
#   orders-js-mariadb   the same with the database on MariaDB (runtime config only)
#   orders-py-sqlite, orders-py-mariadb   the Python orders example, the same way
# Redis and MariaDB come from scripts/services.sh (started here if they are not running, and
# stopped again at the end). redis-benchmark's SET and GET on the same Redis, at the same
# concurrency, go under the table as the server's own ceiling.
#
#   benches/state/run.sh
#   DURATION=3 ONLY=hello,kv-sqlite,kv-redis benches/state/run.sh
#
# Environment:
#   DURATION=10 WARMUP=2 CONNS=32   as in benches/serve/run.sh (wrk -t2)
#   KEYS=1000                        keys the kv rows spread over
#   ORDERS=500                       orders seeded (POST) before an orders row's load
#   ONLY=a,b                         only these rows
#   WEDGE=path                       use this wedge binary instead of a release build
#   START_TIMEOUT=120                seconds to wait for a server's first 200
# Output: a Markdown report on stdout, also written to target/bench/state.md.
# Exit status: non-zero if any selected row failed.
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/../.."
ROOT="$PWD"
# log, apt_install, invocation, bench, stop_server, result_row
. "$ROOT/benches/lib.sh"
INVOCATION="$(invocation "$0${*:+ $*}" WEDGE START_TIMEOUT KEYS ORDERS CONNS WARMUP DURATION ONLY)"

ROWS=(hello kv-sqlite kv-redis orders-js-sqlite orders-js-mariadb orders-py-sqlite orders-py-mariadb)
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-32}"
# JavaScript and Python components compile on a first start (~15 s each; cached after).
START_TIMEOUT="${START_TIMEOUT:-120}"
export KEYS="${KEYS:-1000}" ORDERS="${ORDERS:-500}"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

selected=()
for r in "${ROWS[@]}"; do
    if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$r,"* ]]; then selected+=("$r"); fi
done
if [ "${#selected[@]}" -eq 0 ]; then
    log "ONLY=$ONLY matches no row (have: ${ROWS[*]})"
    exit 1
fi

# --- tools, servers, wedge, guests ---------------------------------------------------
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 || apt_install python3

# Servers this run starts are stopped (and their data deleted) when it ends, however it ends;
# ones that were already running are left as they were.
cleanup() {
    stop_server
    if [ -n "${STARTED_SERVICES:-}" ]; then scripts/services.sh stop >&2 || true; fi
}
trap cleanup EXIT
if ! scripts/services.sh running; then
    STARTED_SERVICES=1
fi
eval "$(scripts/services.sh start)"

if [ -z "${WEDGE:-}" ]; then
    log "cargo build --release (target/bench-target)"
    cargo build --release --locked -p wedge --target-dir target/bench-target >&2
    WEDGE="$ROOT/target/bench-target/release/wedge"
fi
log "scripts/build-guests.sh"
scripts/build-guests.sh >&2

# --- manifests and runtime configs ------------------------------------------------------
G="$ROOT/target/guests"
cat >"$OUT/state-hello.toml" <<EOF
# Written by benches/state/run.sh: the stateless baseline.
[[function]]
name = "hello"
source = "$G/http-hello.wasm"
route = "/"
EOF
cat >"$OUT/state-kv.toml" <<EOF
# Written by benches/state/run.sh: http-state, granted the store \`bench\`.
[[function]]
name = "state"
source = "$G/http-state.wasm"
route = "/state"
key_value_stores = ["bench"]
EOF
for lang in js py; do
    cat >"$OUT/state-orders-$lang.toml" <<EOF
# Written by benches/state/run.sh: the $lang orders example at /orders.
[[function]]
name = "orders"
source = "$G/$lang-orders.wasm"
route = "/orders"
sql_databases = ["orders"]
EOF
done
cat >"$OUT/state-redis.toml" <<EOF
# Written by benches/state/run.sh: the store \`bench\` on scripts/services.sh's Redis.
[key_value_store.bench]
type = "redis"
url = "$WEDGE_TEST_REDIS_URL"
EOF
cat >"$OUT/state-mariadb.toml" <<EOF
# Written by benches/state/run.sh: the database \`orders\` on scripts/services.sh's MariaDB.
[sql_database.orders]
type = "mysql"
url = "$WEDGE_TEST_MYSQL_URL"
EOF

# --- run ---------------------------------------------------------------------------------
RESULTS="$OUT/state-results.tsv"
: >"$RESULTS"
status=0

seed_orders() { python3 "$ROOT/benches/state/seed_orders.py" "$1" "$ORDERS"; }

# SERVE: the wedge command line of a row. Every row gets a fresh data dir: the SQLite files
# start empty.
serve() {
    local row="$1"; shift
    rm -rf "$OUT/state-data/$row"
    SERVE=("$WEDGE" serve --listen 127.0.0.1:PORT --data "$OUT/state-data/$row" "$@")
}

for r in "${selected[@]}"; do
    case "$r" in
        hello)
            serve hello --app "$OUT/state-hello.toml"
            bench hello "hello from wedge" "stateless hello (Rust)" -- "${SERVE[@]}" ;;
        kv-sqlite | kv-redis)
            extra=()
            label="key-value get+set, SQLite (Rust guest)"
            if [ "$r" = kv-redis ]; then
                extra=(--runtime-config "$OUT/state-redis.toml")
                label="key-value get+set, Redis (Rust guest)"
            fi
            serve "$r" --app "$OUT/state-kv.toml" "${extra[@]}"
            REQUEST=kv-bump BENCH_PATH="/state/kv-bump?store=bench&key=ready" \
                BENCH_SCRIPT="$ROOT/benches/state/requests.lua" \
                bench "$r" "" "$label" -- "${SERVE[@]}" ;;
        orders-*)
            lang="${r#orders-}"; backend="${lang#*-}"; lang="${lang%-*}"
            extra=()
            if [ "$backend" = mariadb ]; then extra=(--runtime-config "$OUT/state-mariadb.toml"); fi
            case "$lang" in js) name=JavaScript ;; py) name=Python ;; esac
            case "$backend" in sqlite) bname=SQLite ;; mariadb) bname=MariaDB ;; esac
            serve "$r" --app "$OUT/state-orders-$lang.toml" "${extra[@]}"
            REQUEST=orders-put BENCH_PATH="/orders" BENCH_READY=seed_orders \
                BENCH_SCRIPT="$ROOT/benches/state/requests.lua" \
                bench "$r" "" "orders PUT (read+write), $bname ($name example)" -- "${SERVE[@]}" ;;
    esac
done

# The Redis server alone, at the same concurrency: the ceiling of the Redis row's backend.
notes=()
if command -v redis-benchmark >/dev/null 2>&1 && [[ " ${selected[*]} " == *" kv-redis "* ]]; then
    port="${WEDGE_TEST_REDIS_URL##*:}"; port="${port%%/*}"
    rb="$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNS" -n 200000 -t set,get -q 2>/dev/null |
        tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/ requests per second,/ req\/s,/' | paste -sd';' || true)"
    if [ -n "$rb" ]; then
        notes+=(--note "the Redis server alone, redis-benchmark -c $CONNS -n 200000 -t set,get: ${rb//;/; }")
    fi
fi

python3 "$ROOT/benches/serve/report.py" \
    --title "State benchmark" --first-column "function" \
    --results "$RESULTS" \
    --command "$INVOCATION" \
    --wrk "\`wrk -t2 -c$CONNS -d${DURATION}s --latency\` (after ${WARMUP}s of warm-up; KEYS=$KEYS, ORDERS=$ORDERS) with benches/state/requests.lua" \
    --ratio "hello=req/s vs stateless hello" \
    "${notes[@]}" \
    --out "$OUT/state.md"
exit "$status"
