#!/usr/bin/env bash
# Tests the network fence that stands in for today's "inter-container traffic off" on a Swarm
# overlay network: two user services fenced by probe/fence.sh (nftables, applied with NET_ADMIN
# at start) and an unfenced "server" task. Needs an image with nft (PROBE_IMAGE).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${PROBE_IMAGE:-termpool-swarm-probe:nft}")
NET=tpfence-net
CONFIG=tpfence-$$
cleanup() {
    dk 1 service rm tpfence-srv tpfence-a tpfence-b >/dev/null 2>&1 || true
    for _ in $(seq 30); do
        dk 1 network inspect "$NET" >/dev/null 2>&1 || break
        dk 1 network rm "$NET" >/dev/null 2>&1 || sleep 1
    done
    for _ in $(seq 10); do dk 1 config rm "$CONFIG" >/dev/null 2>&1 && break; sleep 1; done
}
trap cleanup EXIT

dk 1 network create -d overlay "$NET" >/dev/null
SUBNET=$(dk 1 network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NET")
dk 1 config create "$CONFIG" probe/fence.sh >/dev/null
common=(--detach -q --no-resolve-image --init --network "$NET" --endpoint-mode dnsrr)
dk 1 service create "${common[@]}" --name tpfence-srv --constraint "node.hostname==$(node_name 1)" \
    "$IMAGE" sleep infinity >/dev/null
for s in a:2 b:"$(existing_nodes | tail -n 1)"; do
    dk 1 service create "${common[@]}" --name "tpfence-${s%:*}" \
        --constraint "node.hostname==$(node_name "${s#*:}")" \
        --cap-drop ALL --cap-add CAP_CHOWN --cap-add CAP_DAC_OVERRIDE --cap-add CAP_FOWNER \
        --cap-add CAP_SETUID --cap-add CAP_SETGID --cap-add CAP_NET_ADMIN \
        --env "FENCE_NET=$SUBNET" --config "source=$CONFIG,target=/fence.sh,mode=0555" \
        "$IMAGE" sh /fence.sh >/dev/null
done
for s in srv a b; do wait_running "tpfence-$s" 1; done
sleep 2
probe='import socket, sys
for target in sys.argv[1:]:
    host, port = target.split(":")
    try:
        print(f"  {target:<18} ->", socket.create_connection((host, int(port)), timeout=3).recv(64).decode())
    except Exception as e:
        print(f"  {target:<18} -> refused/blocked: {e}")'
a=$(task_on 2 tpfence-a)
from_server=$(dk 1 exec "$(task_on 1 tpfence-srv)" python3 -c "$probe" tpfence-a:7100 tpfence-a:8000 tpfence-b:7100)
from_user=$(dk 2 exec -u 200001 "$a" python3 -c "$probe" tpfence-b:7100 tpfence-b:8000 tpfence-srv:9)
from_root=$(dk 2 exec "$a" python3 -c "$probe" tpfence-b:7100)
change=$(dk 2 exec -u 200001 "$a" nft flush ruleset 2>&1 || true)
printf 'overlay %s; from the server task (unfenced):\n%s\n' "$SUBNET" "$from_server"
printf 'from a user (uid 200001) of tpfence-a:\n%s\n' "$from_user"
printf 'from root (the agent) of tpfence-a:\n%s\n' "$from_root"
printf 'a user of tpfence-a tries to change the fence:\n%s\n' "$change"
[ "$(grep -c ' -> agent-of-' <<<"$from_server")" = 2 ] &&
    grep -q '8000 .*blocked' <<<"$from_server" &&
    [ "$(printf '%s\n%s\n' "$from_user" "$from_root" | grep -c blocked)" = 4 ] &&
    grep -q 'Operation not permitted' <<<"$change" ||
    { log "FAIL: the fence does not hold"; exit 1; }
log "ok: the server reaches agents only; users reach no other container, nor the server"
