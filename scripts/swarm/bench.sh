#!/usr/bin/env bash
# Cross-node benchmark, in one run on the test Swarm of up.sh (3 nodes): the repo's relay
# benchmark (benches/relay: keystroke echo, throughput, 100 sessions at once) against
#   single: a session of the single-host pool (ORCHESTRATOR=docker: containers on the server's
#           own engine, the PTY handed over a unix socket), and
#   cross:  a session of the Swarm pool whose slot is on another node than the server (the agent
#           reached over the overlay, Noise),
# both servers deployed from docker-stack.yml on node 1, in interleaved rounds (ROUNDS, default
# 3), then the overlay's own round trip and throughput (netbench.sh) beside them. Removes what it
# creates.
#
#   scripts/swarm/bench.sh         (root; SERVER_IMAGE: a server image of this tree, default
#                                   termpool-server:latest from scripts/setup-container-mode.sh)
# BENCH_ONLY: the relay benchmark's figures (default echo,throughput,sessions). BENCH_SMOKE=1:
# the benchmark's debug smoke run (`cargo test --bench relay`, --quick) to try the pipeline; its
# figures mean nothing.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
REPO=$(cd ../.. && pwd)

ROUNDS=${ROUNDS:-3}
ONLY=${BENCH_ONLY:-echo,throughput,sessions}
TAG=${BENCH_TAG:-tpbench-$$}
WORK=$(mktemp -d)
AGENTS_DIR=/var/lib/$TAG-agents
export SERVER_IMAGE=${SERVER_IMAGE:-termpool-server:latest}
export CONTAINER_IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}

cleanup() {
    for s in single cross; do "$REPO/scripts/swarm/stack-rm.sh" "$TAG-$s" "$TAG-$s" || true; done
    rm -rf "$WORK" "$AGENTS_DIR"
}
trap cleanup EXIT

[ "$(existing_nodes | wc -l)" -ge 2 ] || { log "needs the test Swarm: up.sh 3"; exit 1; }
for image in "$SERVER_IMAGE" "$CONTAINER_IMAGE"; do
    [ "$(dk 1 image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = \
        "$(docker image inspect -f '{{.Id}}' "$image")" ] || docker save "$image" | dk 1 load -q >/dev/null
done

# The single-host pool in the same stack file: the agent's unix socket needs AGENT_DIR, a
# directory of the node (here: of this machine) mounted at the same path.
install -d -o 10001 "$AGENTS_DIR"
cat >"$WORK/single.yml" <<EOF
version: "3.8"
services:
  server:
    environment:
      ORCHESTRATOR: docker
      AGENT_DIR: $AGENTS_DIR
    volumes:
      - {type: bind, source: $AGENTS_DIR, target: $AGENTS_DIR}
EOF

# deploy NAME PORT [STACK_FILES]: a stack whose every object names $TAG-NAME.
deploy() {
    local name=$1 port=$2 tag=$TAG-$1
    env DOCKER_HOST="unix://$(node_sock 1)" \
        NODES="$(for i in $(existing_nodes); do [ "$i" = 1 ] || echo "unix://$(node_sock "$i")"; done)" \
        STACK_FILES="${3:-}" PUBLISH_PORT="$port" CONTAINER_PREFIX="$tag" \
        WORKSPACE_VOLUME="$tag-ws" DATA_VOLUME="$tag-data" AGENT_NETWORK="$tag-agents" \
        MASTER_KEY_SECRET="$tag-key" CONTAINER_NETWORK=none MAX_CONTAINERS=3 SLOTS_PER_NODE=1 \
        USERS_PER_CONTAINER=1 MAX_SESSIONS_PER_USER=1000 MAX_SESSIONS_PER_ADDRESS=0 \
        MAX_NEW_SESSIONS_PER_MINUTE=0 REATTACH_GRACE_SECS=0 MAX_SESSIONS=1000 \
        "$REPO/scripts/swarm-deploy.sh" "$tag" >/dev/null
    for _ in $(seq 240); do
        curl -fs -m 3 "http://$(node_addr 1):$port/healthz" >/dev/null 2>&1 && return
        sleep 1
    done
    log "stack $tag did not turn healthy"
    exit 1
}
deploy single 3811 "$WORK/single.yml"
deploy cross 3812

# session BASE: a new user's cookie and slot ("cookie slot").
session() {
    local cookie
    cookie=$(python3 "$REPO/scripts/deploy/wsclient.py" cookie "$1")
    python3 "$REPO/scripts/deploy/wsclient.py" session "$1" "$cookie" true >"$WORK/s.json"
    echo "$cookie $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ready"]["container"])' "$WORK/s.json")"
}
node_of() { # the node whose engine runs slot $1's container
    local i
    for i in $(existing_nodes); do
        dk "$i" ps --format '{{.Names}}' | grep -qE "^$1(\.|$)" && { echo "$i"; return; }
    done
}
read -r single_cookie single_slot < <(session "http://$(node_addr 1):3811")
cross_cookie=""
for _ in 1 2 3; do
    read -r cookie slot < <(session "http://$(node_addr 1):3812")
    if [ "$(node_of "$slot")" != 1 ]; then cross_cookie=$cookie cross_slot=$slot; break; fi
done
[ -n "$cross_cookie" ] || { log "no slot of the Swarm pool off node 1 (is it ORCHESTRATOR=swarm?)"; exit 1; }
log "single: $single_slot on node $(node_of "$single_slot"); cross: $cross_slot on node $(node_of "$cross_slot")"

cd "$REPO"
if [ "${BENCH_SMOKE:-0}" = 1 ]; then BENCH=(cargo test -q --bench relay); else BENCH=(cargo bench -q --bench relay); fi
"${BENCH[@]}" --no-run
relay() { # relay NAME PORT COOKIE: the benchmark's output, each line prefixed with NAME
    local args="--url ws://$(node_addr 1):$2/ws --cookie $3 --only $ONLY"
    # Options through TERMPOOL_BENCH_ARGS, which the smoke run reads too.
    TERMPOOL_BENCH_ARGS=$args "${BENCH[@]}" 2>"$WORK/$1.err" | sed "s/^/$1  /" || { cat "$WORK/$1.err" >&2; return 1; }
}
echo "# $(date -u +%FT%TZ), $(nproc) cores shared with other work; ${ROUNDS} rounds, interleaved"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    relay single 3811 "$single_cookie"
    relay cross 3812 "$cross_cookie"
done
echo "## the network's own cost (scripts/swarm/netbench.sh, one round)"
ROUNDS=1 scripts/swarm/netbench.sh
