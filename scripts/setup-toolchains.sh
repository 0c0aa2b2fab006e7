#!/usr/bin/env bash
# Install the toolchains the guest programs (examples/) and the compute
# benchmarks (benches/compute/) need, on Debian 12 as root with rustup.
# Idempotent: when everything is there it only checks and prints.
# Same behaviour with CI=true or not.
#
# Later issues will add wasm-tools and wit-bindgen (C -> component, WIT
# bindings); they are not needed yet.
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
echo "setup-toolchains: done"
