#!/usr/bin/env bash
# Build the user container image (Dockerfile.user) as ${CONTAINER_IMAGE:-terminal-multi-user:latest}.
# BASE_IMAGE defaults to termpool-base:bookworm, built locally first (no registry needed);
# set BASE_IMAGE=debian:bookworm-slim where a registry is reachable. Re-runs hit the layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}
BASE=${BASE_IMAGE:-termpool-base:bookworm}

if [ "$BASE" = termpool-base:bookworm ]; then
    bash scripts/build-base-image.sh
fi

AGENT=$(bash scripts/build-agent.sh)

echo "build-user-image: building $IMAGE from $BASE" >&2
# The context is docker/user/ plus the agent only: the repo root holds target/ (gigabytes).
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp -a docker/user/. "$CONTEXT/"
cp "$AGENT" "$CONTEXT/termpool-agent"
# DOCKER_BUILDKIT=0: the legacy builder works with Debian's docker.io without the buildx plugin.
DOCKER_BUILDKIT=0 docker build \
    -f Dockerfile.user \
    --build-arg BASE_IMAGE="$BASE" \
    -t "$IMAGE" \
    "$CONTEXT"
echo "build-user-image: built $IMAGE" >&2
