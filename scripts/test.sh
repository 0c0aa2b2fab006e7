#!/usr/bin/env bash
# The whole test suite, from a fresh checkout on a fresh Debian 12 machine:
# installs the guest toolchains, builds the guest programs from examples/, starts the real
# servers the tests use (Redis, MariaDB, container registries, containerd: scripts/services.sh,
# on loopback, state in a temporary directory), then runs every unit and end-to-end test.
# `.ci/run` calls exactly this.
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/.."

scripts/setup-toolchains.sh
scripts/build-guests.sh
# Servers this run started are stopped (and their data deleted) when it ends; ones that were
# already running (a developer's `scripts/services.sh start`) are left as they were.
if ! scripts/services.sh running; then
    trap 'scripts/services.sh stop' EXIT
fi
eval "$(scripts/services.sh start)"
# One profile for everything (dev, with dependencies optimised: see Cargo.toml), so the
# Quick-start command and the tests share one build.
cargo test --workspace --locked "$@"
