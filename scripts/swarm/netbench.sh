#!/usr/bin/env bash
# Measures, in one run on the test Swarm of up.sh, what the network costs a session across
# hosts: TCP echo round trip, bulk throughput and 100 connections at once (probe/netbench.py),
# inside one container (loopback), over the overlay between two tasks on one node and on two
# nodes, and between two nodes' namespaces without the overlay (198.18.0.0/24); and a PTY's raw
# output read and sent to a sink on node 1, from node 1 and from node 2 (forwarded on node 1),
# the floor of a session's throughput on one host and across two. Interleaved
# rounds (ROUNDS, default 3), as other work shares this machine's cores.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

ROUNDS=${ROUNDS:-3}
# NETBENCH_ONLY=pty: the PTY rows alone (scripts/swarm/bench.sh runs them in each of its rounds).
ONLY=${NETBENCH_ONLY:-all}
case $ONLY in
all) SERVICES="a:1:0.5 b:2:0.5 c:1:0.5 p1:1:0 p2:2:0" ;;
pty) SERVICES="p1:1:0 p2:2:0" ;;
*) log "netbench: NETBENCH_ONLY is all or pty, not $ONLY"; exit 1 ;;
esac
IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${BENCH_IMAGE:-terminal-multi-user:latest}")
NET=tpbench-net
CONFIG=tpbench-$$
PORT=7000
UNDERLAY_PID=""

cleanup() {
    [ -z "$UNDERLAY_PID" ] || kill "$UNDERLAY_PID" 2>/dev/null || true
    dk 1 service rm tpbench-a tpbench-b tpbench-c tpbench-p1 tpbench-p2 >/dev/null 2>&1 || true
    for _ in $(seq 30); do
        dk 1 network inspect "$NET" >/dev/null 2>&1 || break
        dk 1 network rm "$NET" >/dev/null 2>&1 || sleep 1
    done
    for _ in $(seq 10); do dk 1 config rm "$CONFIG" >/dev/null 2>&1 && break; sleep 1; done
}
trap cleanup EXIT

dk 1 config create "$CONFIG" probe/netbench.py >/dev/null
dk 1 network create -d overlay "$NET" >/dev/null
# a and c share node 1, b is on node 2; each runs the echo server. p1 (node 1) and p2 (node 2)
# carry terminal output, without a CPU limit as termpool's server and node relay have none.
for s in $SERVICES; do
    IFS=: read -r name node cpus <<<"$s"
    dk 1 service create -q --detach --no-resolve-image --name "tpbench-$name" --init \
        --network "$NET" --endpoint-mode dnsrr --constraint "node.hostname==$(node_name "$node")" \
        --limit-cpu "$cpus" --limit-memory 512m \
        --config "source=$CONFIG,target=/netbench.py" \
        "$IMAGE" python3 /netbench.py server "$PORT" >/dev/null
done
for s in $SERVICES; do wait_running "tpbench-${s%%:*}" 1; done
p1=$(task_on 1 tpbench-p1)
p2=$(task_on 2 tpbench-p2)
if [ "$ONLY" = all ]; then
    a=$(task_on 1 tpbench-a)
    # The nodes' own link: this script's python on the host, in the nodes' network namespaces.
    setsid nsenter --net="/var/run/netns/$(node_name 2)" python3 probe/netbench.py server "$PORT" \
        >/dev/null 2>&1 </dev/null &
    UNDERLAY_PID=$!
    sleep 2
fi

echo "# $(date -u +%FT%TZ), $(nproc) cores shared with other work; --limit-cpu 0.5 per task (the PTY rows: none)"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    if [ "$ONLY" = all ]; then
        dk 1 exec "$a" python3 /netbench.py client 127.0.0.1 "$PORT" "loopback, one container"
        dk 1 exec "$a" python3 /netbench.py client tpbench-c "$PORT" "overlay, same node"
        dk 1 exec "$a" python3 /netbench.py client tpbench-b "$PORT" "overlay, two nodes"
        nsenter --net="/var/run/netns/$(node_name 1)" python3 probe/netbench.py client \
            "$(node_addr 2)" "$PORT" "node to node (no overlay)"
    fi
    # A PTY's output read on node 1 and sent to a sink there, as the single-host server does;
    # then read on node 2 and forwarded on node 1, as a cross-node session is.
    dk 1 exec "$p1" python3 /netbench.py pty 127.0.0.1 "$PORT" "" "PTY read on node 1"
    dk 2 exec "$p2" python3 /netbench.py pty tpbench-p1 "$PORT" "127.0.0.1:$PORT" \
        "PTY read on node 2, forwarded on node 1"
done
