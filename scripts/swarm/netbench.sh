#!/usr/bin/env bash
# Measures, in one run on the test Swarm of up.sh, what the network costs a session across
# hosts: TCP echo round trip, bulk throughput and 100 connections at once (probe/netbench.py),
# inside one container (loopback), over the overlay between two tasks on one node and on two
# nodes, and between two nodes' namespaces without the overlay (198.18.0.0/24). Interleaved
# rounds (ROUNDS, default 3), as other work shares this machine's cores.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

ROUNDS=${ROUNDS:-3}
IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${BENCH_IMAGE:-terminal-multi-user:latest}")
NET=tpbench-net
CONFIG=tpbench-$$
PORT=7000
UNDERLAY_PID=""

cleanup() {
    [ -z "$UNDERLAY_PID" ] || kill "$UNDERLAY_PID" 2>/dev/null || true
    dk 1 service rm tpbench-a tpbench-b tpbench-c >/dev/null 2>&1 || true
    for _ in $(seq 30); do
        dk 1 network inspect "$NET" >/dev/null 2>&1 || break
        dk 1 network rm "$NET" >/dev/null 2>&1 || sleep 1
    done
    for _ in $(seq 10); do dk 1 config rm "$CONFIG" >/dev/null 2>&1 && break; sleep 1; done
}
trap cleanup EXIT

dk 1 config create "$CONFIG" probe/netbench.py >/dev/null
dk 1 network create -d overlay "$NET" >/dev/null
# a and c share node 1, b is on node 2; each runs the echo server.
for s in a:1 b:2 c:1; do
    dk 1 service create -q --detach --no-resolve-image --name "tpbench-${s%:*}" --init \
        --network "$NET" --endpoint-mode dnsrr --constraint "node.hostname==$(node_name "${s#*:}")" \
        --limit-cpu 0.5 --limit-memory 512m \
        --config "source=$CONFIG,target=/netbench.py" \
        "$IMAGE" python3 /netbench.py server "$PORT" >/dev/null
done
for s in a b c; do wait_running "tpbench-$s" 1; done
a=$(task_on 1 tpbench-a)

# The nodes' own link: this script's python on the host, in the nodes' network namespaces.
setsid nsenter --net="/var/run/netns/$(node_name 2)" python3 probe/netbench.py server "$PORT" \
    >/dev/null 2>&1 </dev/null &
UNDERLAY_PID=$!
sleep 2

echo "# $(date -u +%FT%TZ), $(nproc) cores shared with other work; --limit-cpu 0.5 per task"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    dk 1 exec "$a" python3 /netbench.py client 127.0.0.1 "$PORT" "loopback, one container"
    dk 1 exec "$a" python3 /netbench.py client tpbench-c "$PORT" "overlay, same node"
    dk 1 exec "$a" python3 /netbench.py client tpbench-b "$PORT" "overlay, two nodes"
    nsenter --net="/var/run/netns/$(node_name 1)" python3 probe/netbench.py client \
        "$(node_addr 2)" "$PORT" "node to node (no overlay)"
done
