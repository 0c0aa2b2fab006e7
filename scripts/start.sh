#!/usr/bin/env bash
# Quick start: on a fresh Debian 12 machine, install the guest toolchains, build the example
# functions (C, Rust, JavaScript, Python) and wedge, then serve the example app
# (examples/app/wedge.toml) on embedded defaults and print its URLs. Stop it with ctrl-c.
#
# LISTEN=127.0.0.1:3000 by default.
set -euo pipefail
if [ -n "${HOME:-}" ] && [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
cd "$(dirname "$0")/.."

scripts/setup-toolchains.sh
scripts/build-guests.sh
# The same profile as the tests (dev, with optimised dependencies), so both Quick-start
# commands share one build.
cargo build --locked -p wedge
listen="${LISTEN:-127.0.0.1:3000}"
echo
echo "Try:  curl http://$listen/hello"
echo "      curl -d 'some body' 'http://$listen/probe/echo?x=1' -i"
echo "      curl 'http://$listen/wagi/echo?name=value'"
echo "      curl http://$listen/js/hello; curl http://$listen/py/hello; curl http://$listen/c/hello"
echo "      curl -d '{\"name\": \"you\", \"numbers\": [1, 2]}' http://$listen/py/json"
echo "      curl 'http://$listen/js/fetch?url=http://127.0.0.1:3000/hello'"
echo "      curl http://$listen/_wedge/metrics"
echo "(the first start compiles the JavaScript and Python functions: about a minute; later"
echo " starts load them from the cache)"
echo
exec target/debug/wedge serve --app examples/app/wedge.toml --listen "$listen"
