#!/usr/bin/env bash
# Deploys termpool on a Docker Swarm (docker-stack.yml), from a manager: creates the master key
# secret once, gives every node the images, then `docker stack deploy`. Idempotent: run it again
# to roll out new images or settings (the user services and the store are kept).
#
#   scripts/swarm-deploy.sh [STACK]            (default stack name: termpool)
#
# Images. With a registry: SERVER_IMAGE and CONTAINER_IMAGE name its tags, and nothing is copied.
# Without one (the default): the images of this engine are named by ID, and NODES lists the other
# nodes' engines to load them into, e.g. NODES="ssh://root@host2 ssh://root@host3" (any
# DOCKER_HOST form). Build them first: scripts/setup-container-mode.sh on this host.
# Other settings: as for the stack file (its `environment:`), from this shell's environment.
# STACK_FILES: more compose files merged over docker-stack.yml (`-c` each), for local additions.
# DOCKER_HOST may name the manager's engine (unix socket); DOCKER_SOCKET is then the path the
# server's container mounts, on the manager.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${1:-termpool}
REGISTRY=${REGISTRY:-}
SERVER_IMAGE=${SERVER_IMAGE:-termpool-server:latest}
CONTAINER_IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}
MASTER_KEY_SECRET=${MASTER_KEY_SECRET:-termpool-master-key}
NODES=${NODES:-}
say() { echo "swarm-deploy: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ "$STACK" =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "invalid stack name: $STACK"
[ "$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ] ||
    die "this engine is not a Swarm manager (docker swarm init, or run this on a manager)"

# The master key: 32 random bytes, never printed; Swarm keeps secrets encrypted in its Raft log.
if ! docker secret inspect "$MASTER_KEY_SECRET" >/dev/null 2>&1; then
    head -c 32 /dev/urandom | docker secret create --label termpool.stack="$STACK" \
        "$MASTER_KEY_SECRET" - >/dev/null
    say "created the secret $MASTER_KEY_SECRET"
fi

# Without a registry, every node must hold the same image, named by its ID: Swarm then never
# tries a pull (with a tag, each node would try one before each task start).
image_ref() {
    if [ -n "$REGISTRY" ]; then
        echo "$1"
    else
        docker image inspect --format '{{.Id}}' "$1" 2>/dev/null ||
            die "no image $1 on this engine (scripts/setup-container-mode.sh builds both)"
    fi
}
load_into_nodes() {
    local image=$1 id=$2 node
    for node in $NODES; do
        if [ "$(docker -H "$node" image inspect --format '{{.Id}}' "$id" 2>/dev/null)" = "$id" ]; then
            continue
        fi
        say "loading $image into $node"
        docker save "$image" | docker -H "$node" load -q >/dev/null ||
            die "could not load $image into $node"
    done
}
server_ref=$(image_ref "$SERVER_IMAGE")
user_ref=$(image_ref "$CONTAINER_IMAGE")
if [ -z "$REGISTRY" ]; then
    # The server runs on managers only, but any node may become one: both go everywhere.
    load_into_nodes "$SERVER_IMAGE" "$server_ref"
    load_into_nodes "$CONTAINER_IMAGE" "$user_ref"
fi

socket=${DOCKER_SOCKET:-/var/run/docker.sock}
case "${DOCKER_HOST:-}" in unix://*) socket=${DOCKER_HOST#unix://} ;; esac
DOCKER_GID=${DOCKER_GID:-$(stat -c %g "$socket" 2>/dev/null || echo 999)}

export SERVER_IMAGE=$server_ref CONTAINER_IMAGE=$user_ref DOCKER_GID MASTER_KEY_SECRET
export DOCKER_SOCKET=$socket
say "deploying stack $STACK (server image $server_ref)"
files=(-c docker-stack.yml)
for f in ${STACK_FILES:-}; do files+=(-c "$f"); done
docker stack deploy --resolve-image never "${files[@]}" "$STACK"
say "done: http://<this manager>:${PUBLISH_PORT:-3000}/container-terminal once the server is up" \
    "(docker service ps ${STACK}_server)"
