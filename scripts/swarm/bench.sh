#!/usr/bin/env bash
# Cross-node benchmark, in one run on the test Swarm of up.sh (3 nodes): the repo's relay
# benchmark (benches/relay: keystroke echo, throughput, 100 sessions at once) against
#   single: a session of the single-host pool (ORCHESTRATOR=docker: containers on the server's
#           own engine, the PTY handed over a unix socket), and
#   cross:  a session of the Swarm pool whose slot is on another node than the server (the agent
#           reached over the overlay, Noise),
# both servers deployed from docker-stack.yml on node 1, in interleaved rounds (ROUNDS, default
# 3) each with the same terminal output carried without termpool on one node and across two
# (netbench.sh's PTY rows), then the overlay's own round trip and throughput (netbench.sh) beside
# them, and a summary (bench-summary.py: medians and ratios). Removes what it creates.
#
#   scripts/swarm/bench.sh         (root; SERVER_IMAGE: a server image of this tree, default
#                                   termpool-server:latest from scripts/setup-container-mode.sh;
#                                   CONTAINER_IMAGE: the user image, with this tree's agent)
# The stack file's other settings (e.g. CONTAINER_CPUS) reach both stacks from the environment.
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
    local left
    # Twice if needed: a server task Swarm was still starting during the first pass may keep
    # its data volume (or more) from going.
    for _ in 1 2; do
        for s in single cross; do "$REPO/scripts/swarm/stack-rm.sh" "$TAG-$s" "$TAG-$s" || true; done
        left=$(for i in $(existing_nodes); do dk "$i" volume ls -q; dk "$i" ps -a --format '{{.Names}}'; done |
            grep -cF -- "$TAG" || true)
        [ "$left" = 0 ] && break
    done
    rm -rf "$WORK" "$AGENTS_DIR"
}
trap cleanup EXIT

[ "$(existing_nodes | wc -l)" -ge 2 ] || { log "needs the test Swarm: up.sh 3"; exit 1; }
for image in "$SERVER_IMAGE" "$CONTAINER_IMAGE"; do
    [ "$(dk 1 image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = \
        "$(docker image inspect -f '{{.Id}}' "$image")" ] || docker save "$image" | dk 1 load -q >/dev/null
done

# The single-host pool in the same stack file: the agent's unix socket needs AGENT_DIR, a
# directory of the node (here: of this machine) mounted at the same path; its store needs
# DATA_DIR on a volume (the Swarm server keeps nothing on its manager, so the stack file has none).
install -d -o 10001 "$AGENTS_DIR"
cat >"$WORK/single.yml" <<EOF
version: "3.8"
services:
  server:
    environment:
      ORCHESTRATOR: docker
      AGENT_DIR: $AGENTS_DIR
      DATA_DIR: /var/lib/termpool
    volumes:
      - {type: bind, source: $AGENTS_DIR, target: $AGENTS_DIR}
      - {type: volume, source: data, target: /var/lib/termpool}
volumes:
  data:
    name: $TAG-single-data
EOF

# The limits of both stacks: the benchmark's one user opens 100 sessions at once. Each
# container's private devpts is capped at USERS_PER_CONTAINER x MAX_SESSIONS_PER_USER (at most
# MAX_SESSIONS) + USERS_PER_CONTAINER, and the single-host server refuses to start when
# MAX_CONTAINERS such caps (plus PTYS_PER_CONTAINER each) exceed what kernel.pty.max leaves
# (4096 - 1024 here): 1000 sessions (3 x 1065 PTYs) did not fit, 200 do (3 x 265).
SESSIONS=200

# deploy NAME PORT [STACK_FILES]: a stack whose every object names $TAG-NAME; its output goes
# to $WORK/deploy-NAME.log, shown with the server's tasks and logs if the server never answers.
deploy() {
    local name=$1 port=$2 tag=$TAG-$1 log=$WORK/deploy-$1.log
    if ! env DOCKER_HOST="unix://$(node_sock 1)" \
        NODES="$(for i in $(existing_nodes); do [ "$i" = 1 ] || echo "unix://$(node_sock "$i")"; done)" \
        STACK_FILES="${3:-}" PUBLISH_PORT="$port" CONTAINER_PREFIX="$tag" \
        WORKSPACE_VOLUME="$tag-ws" DATA_VOLUME="$tag-data" AGENT_NETWORK="$tag-agents" \
        MASTER_KEY_SECRET="$tag-key" CONTAINER_NETWORK=none MAX_CONTAINERS=3 SLOTS_PER_NODE=1 \
        USERS_PER_CONTAINER=1 MAX_SESSIONS_PER_USER=$SESSIONS MAX_SESSIONS_PER_ADDRESS=0 \
        MAX_NEW_SESSIONS_PER_MINUTE=0 REATTACH_GRACE_SECS=0 MAX_SESSIONS=$SESSIONS \
        "$REPO/scripts/swarm-deploy.sh" "$tag" >"$log" 2>&1; then
        deploy_failed "$name" "scripts/swarm-deploy.sh failed"
    fi
    for _ in $(seq 240); do
        curl -fs -m 3 "http://$(node_addr 1):$port/healthz" >/dev/null 2>&1 && return
        # A server that exits at start is restarted forever (restart_policy any): stop at 3.
        [ "$(failed_tasks "${tag}_server")" -lt 3 ] || deploy_failed "$name" "its server keeps exiting"
        sleep 1
    done
    deploy_failed "$name" "its server did not answer /healthz within 240 s"
}
failed_tasks() { # the number of service $1's tasks that failed
    dk 1 service ps --format '{{.CurrentState}}' "$1" 2>/dev/null | grep -c '^Failed' || true
}
deploy_failed() { # deploy_failed NAME REASON: what the deployment, Swarm and the server said
    local service=$TAG-$1_server
    log "stack $TAG-$1: $2"
    log "---- scripts/swarm-deploy.sh ----"
    cat "$WORK/deploy-$1.log" >&2
    log "---- docker service ps $service ----"
    dk 1 service ps --no-trunc "$service" >&2 2>&1 || true
    log "---- the server's last task that ran, its logs (last 40 lines) ----"
    dk 1 logs --tail 40 "$(dk 1 ps -aq --filter status=exited --filter status=running \
        --filter "label=com.docker.swarm.service.name=$service" | head -n 1)" >&2 2>&1 || true
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
measure() {
    echo "# $(date -u +%FT%TZ), $(nproc) cores shared with other work; ${ROUNDS} rounds, interleaved"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    for r in $(seq "$ROUNDS"); do
        echo "## round $r"
        relay single 3811 "$single_cookie"
        relay cross 3812 "$cross_cookie"
        # The same output without termpool, read on one node and across two: what crossing
        # costs when the network alone carries it.
        NETBENCH_ONLY=pty ROUNDS=1 BENCH_IMAGE="$CONTAINER_IMAGE" scripts/swarm/netbench.sh | grep PTY
    done
    echo "## the network's own cost (scripts/swarm/netbench.sh, one round)"
    ROUNDS=1 BENCH_IMAGE="$CONTAINER_IMAGE" scripts/swarm/netbench.sh
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
measure | python3 scripts/swarm/bench-summary.py
