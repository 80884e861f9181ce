#!/usr/bin/env bash
# Step 2 of the container-mode deployment (after scripts/setup-dependencies.sh): builds what
# docker-compose-multi-user.yml runs, and creates what it expects to exist.
#
#   1. the base image: BASE_IMAGE if set; else debian:bookworm-slim when it is here or can be
#      pulled; else termpool-base:bookworm, built locally with debootstrap (no registry needed)
#   2. the user image CONTAINER_IMAGE (terminal-multi-user:latest), from Dockerfile.user
#   3. the server binary: `cargo build --release --locked` on this machine (with the page)
#   4. the server image SERVER_IMAGE (termpool-server:latest), from Dockerfile.server
#   5. the shared workspace volume WORKSPACE_VOLUME (termpool-workspace)
#   6. .env next to the compose file: DOCKER_GID (the Docker socket's group, for group_add),
#      COMPOSE_PROJECT_NAME=termpool unless .env already names one, and ALLOWED_HOSTS (the names
#      users reach the server by: asked for on a terminal, else ALLOWED_HOSTS or `hostname -f`)
#      unless .env already has it
#   7. the session agents' directory AGENT_DIR (/var/lib/termpool-agents) on this host, owned by
#      the server's uid 10001, mode 0700
#
# Idempotent: a second run rebuilds nothing that did not change (layer cache, cargo) and keeps
# the volume and the rest of .env. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deploy/lib.sh

say() { echo "setup-container-mode: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
started=$SECONDS
step_start=$SECONDS
step() { say "[$((SECONDS - step_start))s] $*"; step_start=$SECONDS; }

CONTAINER_IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}
SERVER_IMAGE=${SERVER_IMAGE:-termpool-server:latest}
WORKSPACE_VOLUME=${WORKSPACE_VOLUME:-termpool-workspace}
AGENT_DIR=${AGENT_DIR:-/var/lib/termpool-agents}
SERVER_UID=10001 # TERMPOOL_UID of Dockerfile.server
ENV_FILE=${ENV_FILE:-.env}
SLIM=debian:bookworm-slim
LOCAL_BASE=termpool-base:bookworm

command -v docker >/dev/null 2>&1 || die "docker is not installed: run ./scripts/setup-dependencies.sh"
docker info >/dev/null 2>&1 ||
    die "the Docker engine does not answer ($(docker info 2>&1 | grep -m1 -iE 'error|cannot|permission' || echo 'docker info failed')): run ./scripts/setup-dependencies.sh"
command -v cargo >/dev/null 2>&1 || die "cargo is not installed: run ./scripts/setup-dependencies.sh"

# ---- 1. base image ------------------------------------------------------------------------------
if [ -n "${BASE_IMAGE:-}" ]; then
    BASE=$BASE_IMAGE
elif image_exists "$SLIM"; then
    BASE=$SLIM
elif image_exists "$LOCAL_BASE"; then
    BASE=$LOCAL_BASE
elif timeout "${PULL_TIMEOUT_SECS:-180}" docker pull -q "$SLIM" >/dev/null 2>&1; then
    BASE=$SLIM
else
    say "no image registry reachable: building $LOCAL_BASE with debootstrap"
    BASE=$LOCAL_BASE
fi
step "base image: $BASE"

# ---- 2. user image ------------------------------------------------------------------------------
# build-user-image.sh builds termpool-base:bookworm first when BASE is that image.
BASE_IMAGE=$BASE CONTAINER_IMAGE=$CONTAINER_IMAGE bash scripts/build-user-image.sh
step "user image: $CONTAINER_IMAGE"

# ---- 3. server binary ---------------------------------------------------------------------------
# The real page, never the placeholder a developer build may have asked for.
unset TERMPOOL_SKIP_FRONTEND
say "cargo build --release --locked (the first build takes minutes)"
cargo build --release --locked --bin termpool
binary=$(release_binary)
[ -x "$binary" ] || die "cargo did not produce $binary"
step "server binary: $binary ($("$binary" --version))"

# ---- 4. server image ----------------------------------------------------------------------------
# A context of exactly one file (the binary at the path Dockerfile.server copies from), wherever
# cargo's target directory is. (Compose's own `build:` uses the repo root and .dockerignore.)
ctx=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$ctx" "$log"' EXIT
mkdir -p "$ctx/target/release"
cp "$binary" "$ctx/target/release/termpool"
old_id=$(docker image inspect -f '{{.Id}}' "$SERVER_IMAGE" 2>/dev/null || true)
# DOCKER_BUILDKIT=0: the legacy builder works with Debian's docker.io without the buildx plugin.
if ! DOCKER_BUILDKIT=0 docker build \
    -f Dockerfile.server \
    --build-arg BASE_IMAGE="$BASE" \
    -t "$SERVER_IMAGE" \
    "$ctx" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building $SERVER_IMAGE failed (a loader error at 'termpool --version' means the host's glibc is newer than $BASE's: build on Debian bookworm, or set BASE_IMAGE to a matching image)"
fi
new_id=$(docker image inspect -f '{{.Id}}' "$SERVER_IMAGE")
# The image this one replaces, unless something still uses it (e.g. the running server).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ] &&
    [ -z "$(docker image inspect -f '{{join .RepoTags ","}}' "$old_id" 2>/dev/null)" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
step "server image: $SERVER_IMAGE (${new_id:7:12})"

# ---- 5. workspace volume ------------------------------------------------------------------------
if docker volume inspect "$WORKSPACE_VOLUME" >/dev/null 2>&1; then
    step "workspace volume: $WORKSPACE_VOLUME (exists)"
else
    docker volume create --label termpool.workspace=true "$WORKSPACE_VOLUME" >/dev/null
    step "workspace volume: $WORKSPACE_VOLUME (created)"
fi

# ---- 6. .env for compose ------------------------------------------------------------------------
sock=$(docker_socket_path)
if [ -S "$sock" ]; then
    gid=$(stat -c %g "$sock")
    set_env_var "$ENV_FILE" DOCKER_GID "$gid"
    if [ "$gid" = 0 ]; then
        say "note: $sock belongs to group 0 (root): the server joins group root to use it"
    fi
else
    say "warning: no Docker socket at $sock (remote engine?): set DOCKER_GID and DOCKER_SOCKET in $ENV_FILE yourself"
fi
if ! grep -q -E '^[[:space:]]*COMPOSE_PROJECT_NAME=' "$ENV_FILE" 2>/dev/null; then
    set_env_var "$ENV_FILE" COMPOSE_PROJECT_NAME termpool
fi
# The server answers only to the names given here, IP addresses and localhost (DNS rebinding).
if ! grep -q -E '^[[:space:]]*ALLOWED_HOSTS=' "$ENV_FILE" 2>/dev/null; then
    hosts=${ALLOWED_HOSTS:-$({ hostname -f 2>/dev/null || true; hostname 2>/dev/null || true; } |
        awk 'NF && !seen[$0]++' | paste -sd, -)}
    if [ -t 0 ] && [ -z "${ALLOWED_HOSTS:-}" ]; then
        read -r -p "Host names users reach this server by, comma-separated [$hosts]: " answer || answer=
        hosts=${answer:-$hosts}
    fi
    set_env_var "$ENV_FILE" ALLOWED_HOSTS "${hosts:-localhost}"
fi
step "$ENV_FILE: DOCKER_GID=${gid:-unset}, ALLOWED_HOSTS=$(sed -n "s/^ALLOWED_HOSTS=//p" "$ENV_FILE")"

# ---- 7. the agents' directory -------------------------------------------------------------------
# Only the server may reach the agents' sockets: the directory is its own, closed to others.
as_root install -d -o "$SERVER_UID" -g "$SERVER_UID" -m 0700 "$AGENT_DIR" ||
    die "cannot create $AGENT_DIR (owner $SERVER_UID, mode 0700): run this as root, or create it so"
step "agent directory: $AGENT_DIR"

# Settings that compose must see too: it reads them from the environment or .env, not from here.
for var in CONTAINER_IMAGE SERVER_IMAGE WORKSPACE_VOLUME AGENT_DIR; do
    case "$var=${!var}" in
        CONTAINER_IMAGE=terminal-multi-user:latest | SERVER_IMAGE=termpool-server:latest | \
            WORKSPACE_VOLUME=termpool-workspace | AGENT_DIR=/var/lib/termpool-agents) ;;
        *) say "note: $var=${!var} is not the default: export it (or add it to $ENV_FILE) for docker-compose too" ;;
    esac
done

find_compose || true
say "done in $((SECONDS - started))s; next: ${COMPOSE[*]:-docker-compose} -f docker-compose-multi-user.yml up -d, then open http://localhost:3000/container-terminal"
