#!/usr/bin/env bash
# Tests the hidepid design for Swarm on the test Swarm of up.sh: a user container as a service
# (the pool's limits and capabilities, plus SYS_ADMIN and SETPCAP for the start only) whose main process,
# probe/lockdown.py standing in for the agent, remounts /proc hidepid, drops SYS_ADMIN, installs
# a seccomp filter and checks isolation as two users. Runs once with the filter (must all pass),
# once without (for comparison: user namespaces open).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

NODE=${PROBE_NODE:-2}
IMAGE=$(dk 1 image inspect --format '{{.Id}}' "${PROBE_IMAGE:-terminal-multi-user:latest}")
CONFIG=tpprobe-lockdown-$$

cleanup() {
    dk 1 service rm tpprobe-filter tpprobe-nofilter >/dev/null 2>&1 || true
    for _ in $(seq 20); do dk 1 config rm "$CONFIG" >/dev/null 2>&1 && break; sleep 1; done
}
trap cleanup EXIT

dk 1 config create "$CONFIG" probe/lockdown.py >/dev/null
run_probe() {
    local name=$1
    shift
    dk 1 service create -q --detach --no-resolve-image --name "$name" \
        --constraint "node.hostname==$(node_name "$NODE")" --restart-condition none \
        --init --cap-drop ALL \
        --cap-add CAP_CHOWN --cap-add CAP_DAC_OVERRIDE --cap-add CAP_FOWNER \
        --cap-add CAP_SETUID --cap-add CAP_SETGID --cap-add CAP_SYS_ADMIN --cap-add CAP_SETPCAP \
        --limit-memory 512m --limit-cpu 0.5 --limit-pids 1024 --ulimit nproc=256:256 \
        --config "source=$CONFIG,target=/lockdown.py,mode=0500" \
        "$IMAGE" python3 /lockdown.py test "$@" >/dev/null
    local c=""
    for _ in $(seq 60); do
        c=$(dk "$NODE" ps -aq --filter "label=com.docker.swarm.service.name=$name" --filter status=exited)
        [ -n "$c" ] && break
        sleep 1
    done
    [ -n "$c" ] || { log "$name did not finish"; return 1; }
    echo "== $name"
    dk "$NODE" logs "$c" 2>&1
}
out=$(run_probe tpprobe-filter)
echo "$out"
echo "(for comparison, without the seccomp filter: FAILs expected)"
run_probe tpprobe-nofilter --no-filter
if grep -q '^FAIL' <<<"$out" || ! grep -q '^PASS' <<<"$out"; then
    log "FAIL: isolation does not hold with the lockdown"
    exit 1
fi
log "ok: every isolation check passes with the lockdown"
