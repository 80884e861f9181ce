#!/usr/bin/env bash
# Proves the Swarm of up.sh works: every node is ready, a service's two replicas land on two
# nodes, and an overlay network carries TCP between tasks on two nodes. Removes what it creates.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

NET=tpcheck-net
SERVICES=(tpcheck-spread tpcheck-a tpcheck-b)

cleanup() {
    dk 1 service rm "${SERVICES[@]}" >/dev/null 2>&1 || true
    # The network goes once the tasks' containers are gone.
    for _ in $(seq 30); do
        dk 1 network inspect "$NET" >/dev/null 2>&1 || break
        dk 1 network rm "$NET" >/dev/null 2>&1 || sleep 1
    done
}
trap cleanup EXIT

nodes=$(existing_nodes | wc -l)
[ "$nodes" -ge 2 ] || { log "no swarm: run up.sh first"; exit 1; }
# By ID: a node tries a registry pull before starting a task whose image is named by a tag.
IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${SWARM_CHECK_IMAGE:-terminal-multi-user:latest}")

ready=$(dk 1 node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active$' || true)
dk 1 node ls
[ "$ready" -eq "$nodes" ] || { log "FAIL: $ready of $nodes nodes ready"; exit 1; }
log "ok: $ready of $nodes nodes ready"

# --no-resolve-image: the nodes have no registry (images come by docker load).
# No placement settings: the scheduler spreads replicas by itself.
dk 1 service create -q --no-resolve-image --name tpcheck-spread --replicas 2 --init "$IMAGE" sleep infinity >/dev/null
wait_running tpcheck-spread 2
dk 1 service ps tpcheck-spread --format '{{.Name}} {{.Node}} {{.CurrentState}}'
spread=$(dk 1 service ps tpcheck-spread --filter desired-state=running --format '{{.Node}}' | sort -u | wc -l)
[ "$spread" -eq 2 ] || { log "FAIL: 2 replicas on $spread node(s)"; exit 1; }
log "ok: 2 replicas on 2 nodes"

dk 1 network create -d overlay --attachable "$NET" >/dev/null
for s in a b; do
    node=$([ $s = a ] && node_name 1 || node_name 2)
    # dnsrr: the name resolves to the task itself. This kernel has no IPVS, which Swarm's virtual
    # IPs and routing mesh need (see docs/scaling.md).
    dk 1 service create -q --no-resolve-image --name "tpcheck-$s" --network "$NET" --endpoint-mode dnsrr --init \
        --constraint "node.hostname==$node" "$IMAGE" sleep infinity >/dev/null
done
wait_running tpcheck-a 1
wait_running tpcheck-b 1
a=$(task_on 1 tpcheck-a)
b=$(task_on 2 tpcheck-b)
[ -n "$a" ] && [ -n "$b" ] || { log "FAIL: tasks not on the pinned nodes"; exit 1; }
dk 2 exec -d "$b" python3 -c '
import socket
s = socket.create_server(("", 7000))
c, _ = s.accept()
c.sendall(c.recv(100).upper())'
sleep 1
reply=$(dk 1 exec "$a" python3 -c '
import socket
c = socket.create_connection(("tpcheck-b", 7000), timeout=10)
c.sendall(b"across the overlay")
print(c.recv(100).decode())')
echo "$(node_name 1) -> tpcheck-b on $(node_name 2): $reply"
[ "$reply" = "ACROSS THE OVERLAY" ] || { log "FAIL: no echo across the overlay"; exit 1; }
log "ok: the overlay network carries traffic between tasks on two nodes"
