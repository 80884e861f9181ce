#!/usr/bin/env bash
# The tests on a real Docker Swarm: brings up a Swarm of 3 engines on this machine
# (scripts/swarm/up.sh), runs every test whose name holds "swarm" on it (tests/swarm*.rs: the
# stack, placement, isolation on every node, a node's failure; the Swarm store's tests against
# the manager), and removes the Swarm again (scripts/swarm/down.sh), also when a test fails. A
# Swarm that was up before is reused and kept. Prints the time it took. Needs root.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/swarm/lib.sh

NODES=3
t0=$SECONDS
brought_up=0
[ -n "$(existing_nodes)" ] || brought_up=1
finish() {
    local rc=$?
    if [ "$brought_up" = 1 ] || [ "${SWARM_DOWN:-0}" = 1 ]; then
        scripts/swarm/down.sh || rc=1
    fi
    # The server images the tests built around their binary (tests/common/swarm.rs).
    docker image ls -q termpool-swarmtest-server | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
    echo "== swarm tests: exit $rc, $((SECONDS - t0))s"
    exit "$rc"
}
trap finish EXIT

# The user image the tests use goes to every node (up.sh skips nodes that hold it).
SWARM_IMAGES=${CONTAINER_IMAGE:-terminal-multi-user:latest} scripts/swarm/up.sh "$NODES" || exit 1
echo "== swarm up: $((SECONDS - t0))s"
export TERMPOOL_SWARM_MANAGER_SOCKET
TERMPOOL_SWARM_MANAGER_SOCKET=$(node_sock 1)
# The main `cargo test` step skips these (`--skip swarm`); the builds are the same, so nothing
# is compiled again. Every file runs even when one fails (each deploys a stack of its own).
# 13 minutes at most: a hung Swarm must not hold CI.
timeout --signal=INT --kill-after=30 780 \
    cargo test --no-fail-fast --workspace --lib --bins --tests -- swarm
