#!/usr/bin/env bash
# Removes a termpool stack from the test Swarm of up.sh with everything its server created:
# the stack, then every service, secret, config, network, container and volume (on every node)
# whose name holds TAG or whose termpool.pool label is TAG. Used by the Swarm tests after each
# test file and before each run (leftovers of a killed one). Idempotent.
#
#   scripts/swarm/stack-rm.sh STACK TAG
set -uo pipefail
cd "$(dirname "$0")" || exit 1
. ./lib.sh

STACK=${1:?stack name}
TAG=${2:?tag that every object of the stack names}
# A tag shorter than this could match other engineers' or the operator's objects.
[ "${#TAG}" -ge 8 ] || { log "stack-rm: tag too short: $TAG"; exit 1; }

ours() { grep -F -- "$TAG" || true; }
remove_each() { # remove_each NODE KIND: removes the listed names (stdin) of that kind
    local node=$1 kind=$2 name
    while read -r name; do
        [ -n "$name" ] && dk "$node" "$kind" rm "$name" >/dev/null 2>&1
    done
    return 0
}

dk 1 stack rm "$STACK" >/dev/null 2>&1
# `stack rm` returns before the server's task stops, and until then the server may still create
# a slot's service: wait for it to be gone first.
for _ in $(seq 40); do
    [ -z "$(dk 1 ps -q --filter "label=com.docker.stack.namespace=$STACK" 2>/dev/null)" ] && break
    sleep 1
done
{
    dk 1 service ls --format '{{.Name}}' | ours
    dk 1 service ls -q --filter "label=termpool.pool=$TAG"
} | sort -u | remove_each 1 service
# Swarm stops the tasks of removed services; networks, volumes, secrets in use cannot go before.
for _ in $(seq 30); do
    left=0
    for i in $(existing_nodes); do
        [ -z "$(dk "$i" ps -q --filter "name=$TAG" --filter label=com.docker.swarm.task.id 2>/dev/null)" ] ||
            left=1
    done
    [ "$left" = 0 ] && break
    sleep 1
done
for i in $(existing_nodes); do
    { dk "$i" ps -aq --filter "name=$TAG"; dk "$i" ps -aq --filter "label=termpool.pool=$TAG"; } |
        sort -u | xargs -r docker -H "unix://$(node_sock "$i")" rm -f >/dev/null 2>&1
done
{ dk 1 secret ls --format '{{.Name}}' | ours; dk 1 secret ls -q --filter "label=termpool.pool=$TAG"; } |
    sort -u | remove_each 1 secret
{ dk 1 config ls --format '{{.Name}}' | ours; dk 1 config ls -q --filter "label=termpool.pool=$TAG"; } |
    sort -u | remove_each 1 config
for _ in $(seq 15); do
    dk 1 network ls --format '{{.Name}}' | ours | remove_each 1 network
    [ -z "$(dk 1 network ls --format '{{.Name}}' | ours)" ] && break
    sleep 1
done
for i in $(existing_nodes); do
    dk "$i" volume ls --format '{{.Name}}' | ours | remove_each "$i" volume
done
exit 0
