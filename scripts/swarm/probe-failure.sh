#!/usr/bin/env bash
# What Swarm does with a user service when its node dies, on the test Swarm of up.sh (3 nodes or
# more): a service pinned to node 2 and one free to move, each with a file in a local volume;
# node 2's link is cut (as a dead host looks to the others), then restored. Shows the pinned
# task waiting with its reason and coming back with the file, and the free one moved onto an
# empty volume. Removes what it creates and always restores the link.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

[ "$(existing_nodes | wc -l)" -ge 3 ] || { log "needs 3 nodes: up.sh 3"; exit 1; }
IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${PROBE_IMAGE:-terminal-multi-user:latest}")
LINK=tpsw2h
N2=$(node_name 2)

cleanup() {
    ip link set "$LINK" up
    dk 1 service rm tpfail-pinned tpfail-free >/dev/null 2>&1 || true
}
trap cleanup EXIT

node_state() { dk 1 node inspect "$N2" --format '{{.Status.State}}'; }
tasks() {
    dk 1 service ps --no-trunc tpfail-pinned tpfail-free \
        --format '  {{.Name}} node={{.Node}} desired={{.DesiredState}} current={{.CurrentState}} {{.Error}}'
}

# Only worker nodes for the free one, so that it cannot land on the manager (node 1) either way.
dk 1 service create -q --detach --no-resolve-image --name tpfail-pinned --init \
    --constraint "node.hostname==$N2" \
    --mount type=volume,source=tpfail-home,target=/workspace "$IMAGE" sleep infinity >/dev/null
dk 1 service create -q --detach --no-resolve-image --name tpfail-free --init \
    --constraint node.role==worker --constraint "node.hostname!=$(node_name 3)" \
    --mount type=volume,source=tpfail-home,target=/workspace "$IMAGE" sleep infinity >/dev/null
wait_running tpfail-pinned 1
wait_running tpfail-free 1
for s in tpfail-pinned tpfail-free; do
    dk 2 exec "$(task_on 2 "$s")" sh -c "echo precious > /workspace/$s"
done
# Now let the free one move anywhere but the manager.
dk 1 service update -q --detach --constraint-rm "node.hostname!=$(node_name 3)" tpfail-free >/dev/null
sleep 3
wait_running tpfail-free 1
free_node=$(dk 1 service ps tpfail-free --filter desired-state=running --format '{{.Node}}')
[ "$free_node" = "$N2" ] || { log "tpfail-free moved at its update already ($free_node): run again"; exit 1; }

t0=$(date +%s)
ip link set "$LINK" down
log "cut $N2's link"
until [ "$(node_state)" = down ]; do
    [ $(($(date +%s) - t0)) -lt 60 ] || { log "FAIL: $N2 not marked down in 60 s"; exit 1; }
    sleep 1
done
log "$N2 marked down after $(($(date +%s) - t0)) s: $(dk 1 node inspect "$N2" --format '{{.Status.Message}}')"
wait_running tpfail-free 1 || true
sleep 2
tasks
free_node=$(dk 1 service ps tpfail-free --filter desired-state=running --format '{{.Node}}')
free_files=$(dk "${free_node#"$SWARM_NS_PREFIX"}" exec "$(task_on "${free_node#"$SWARM_NS_PREFIX"}" tpfail-free)" ls -A /workspace)
echo "  tpfail-free now on $free_node, /workspace holds: [${free_files}]"

t0=$(date +%s)
ip link set "$LINK" up
log "restored $N2's link"
until dk 1 service ps tpfail-pinned --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' |
    grep -q "^$N2 Running"; do
    [ $(($(date +%s) - t0)) -lt 90 ] || { log "FAIL: tpfail-pinned not back on $N2 in 90 s"; exit 1; }
    sleep 1
done
back=$(dk 2 exec "$(task_on 2 tpfail-pinned)" cat /workspace/tpfail-pinned)
log "tpfail-pinned running on $N2 again after $(($(date +%s) - t0)) s; its file: $back"
tasks
[ "$back" = precious ] && [ -z "$free_files" ] && [ "$free_node" != "$N2" ] ||
    { log "FAIL: not what the design expects"; exit 1; }
log "ok: pinned waits and comes back with its files; unpinned moves onto an empty home"
