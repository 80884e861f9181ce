#!/usr/bin/env bash
# Install Debian's docker.io (+ debootstrap) if missing and make sure a Docker daemon answers.
# Idempotent: safe to run again at any time. Needs root (apt, dockerd).
set -euo pipefail

LOG=/var/log/dockerd.log
WAIT_SECS=${DOCKER_WAIT_SECS:-60}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    echo "install-docker: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

# No systemd here: run dockerd ourselves, detached from this shell (setsid) so it outlives it.
# The host's engine is the one whose pid is in /var/run/docker.pid: other dockerd processes (a
# test Swarm's nodes) do not serve the default socket.
PID=$(cat /var/run/docker.pid 2>/dev/null || true)
if [ -z "$PID" ] || [ "$(cat "/proc/$PID/comm" 2>/dev/null)" != dockerd ]; then
    echo "install-docker: starting dockerd (log: $LOG)" >&2
    # A pid file left by an unclean stop makes dockerd refuse to start if its pid was reused.
    rm -f /var/run/docker.pid
    setsid dockerd >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq "$WAIT_SECS"); do
    if docker info >/dev/null 2>&1; then
        echo "install-docker: docker daemon is up" >&2
        exit 0
    fi
    sleep 1
done

echo "install-docker: ERROR: docker daemon did not answer within ${WAIT_SECS}s" >&2
docker info 2>&1 | tail -n 3 >&2 || true
echo "---- last lines of $LOG ----" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
