#!/usr/bin/env bash
# Runs every test of termpool: formatting and lints, unit and integration tests (local PTY and the
# real Docker engine), the browser test in headless Chromium, the Docker Compose deployment, and
# last the tests on a real Docker Swarm (several engines on this machine).
# Installs what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."

# A full disk fails the build late and obscurely (the linker dies of SIGBUS): say it first.
# A clean run needs about 3 GB for target/ and 3 GB for the images of the Swarm's engines.
free_kb=$(df --output=avail -k . | tail -1)
if [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
    echo "test.sh: $((free_kb / 1024)) MiB free on $(df --output=target . | tail -1);" \
        "a run needs about 6 GiB (target/ and the test Swarm's images)" >&2
    exit 1
fi

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# The tests that need a Docker Swarm (every test whose name holds "swarm") run in their own step
# at the end, on a Swarm it brings up and removes.
cargo test --workspace --all-targets -- --skip swarm
echo "== page: type check and unit tests"
(cd frontend && npx --no-install tsc --noEmit -p . && node --test test/)
echo "== browser test (headless Chromium)"
node --test --test-concurrency=1 tests/browser/
echo "== behind a TLS reverse proxy at a sub-path (nginx)"
scripts/test-proxy.sh
echo "== deployment test (setup scripts, compose, server image)"
scripts/test-deployment.sh
echo "== on a Docker Swarm of 3 engines on this machine (scripts/test-swarm.sh)"
scripts/test-swarm.sh
