#!/usr/bin/env bash
# Manual check of the container-mode isolation settings (docs/design.md, "Isolation settings")
# against the real Docker engine: starts a user container exactly as the pool does, applies
# hidepid with the helper container, creates two users and checks what one can see of the
# other. Cleans up after itself.
# Usage: scripts/verify-isolation.sh   (needs a running daemon and the user image:
#        scripts/install-docker.sh && scripts/build-user-image.sh)
set -euo pipefail

IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}
C=termpool-verify-$$
V=termpool-verify-$$
FAILS=0

cleanup() {
    docker rm -f "$C" >/dev/null 2>&1 || true
    docker volume rm -f "$V" >/dev/null 2>&1 || true
}
trap cleanup EXIT

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILS=$((FAILS + 1)); }
check() { # check "description" command...   (passes when the command succeeds)
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
as() { local u=$1; shift; docker exec -u "$u" -w / "$C" "$@"; }

docker image inspect "$IMAGE" >/dev/null

docker volume create --label termpool.test=verify-isolation "$V" >/dev/null

# The user container: these flags map 1:1 onto the Engine API HostConfig (see docs/design.md).
docker run -d --name "$C" --hostname "$C" \
    --label termpool.pool=verify-isolation --label termpool.index=0 \
    -e TERMPOOL_CONTAINER_NAME="$C" \
    --memory 512m --memory-swap 512m \
    --cpus 0.5 \
    --pids-limit 512 \
    --ulimit nproc=256:256 \
    --security-opt no-new-privileges \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETUID --cap-add SETGID \
    --init \
    --network none \
    --mount type=volume,source="$V",target=/workspace \
    "$IMAGE" >/dev/null

# The mounts helper (the agent's --prepare-mounts): shares the user container's PID namespace,
# enters the mount namespace of its PID 1 and remounts /proc (and /dev/pts, and mounts the
# sessions' own devpts instance) with mount(2), executing nothing there. apparmor=unconfined
# matters only on AppArmor hosts (docker's default profile denies mount); it is accepted and
# harmless where AppArmor is absent.
docker run --rm --pid=container:"$C" \
    --cap-drop ALL --cap-add SYS_ADMIN --cap-add SYS_CHROOT --cap-add SYS_PTRACE \
    --security-opt apparmor=unconfined --security-opt no-new-privileges --network none \
    --entrypoint /usr/local/sbin/termpool-agent "$IMAGE" --prepare-mounts 64 32

echo "/proc in the user container: $(docker exec "$C" grep ' /proc proc ' /proc/mounts)"
check "/proc is mounted with hidepid=invisible" \
    docker exec "$C" grep -q ' /proc proc .*hidepid=invisible' /proc/mounts

for u in ua:200001 ub:200002; do
    name=${u%%:*} uid=${u##*:}
    docker exec "$C" sh -c "useradd -l -M -u $uid -d /workspace/$name -s /bin/bash $name \
        && mkdir -p /workspace/$name && chown $name:$name /workspace/$name && chmod 700 /workspace/$name"
done
check "useradd gives group id == uid" test "$(as ua id -g)" = 200001
as ub sh -c 'echo secret > ~/secret'
docker exec -d -u ub "$C" sleep 1000   # a process of B's for A to look for
sleep 1

echo "--- container-info as ua:"; as ua container-info
echo "--- ps as ua:"; as ua ps -eo user,pid,args
echo "--- ps as root in the container:"; docker exec "$C" ps -eo user,pid,args
check "user A does not see B's processes" sh -c "! docker exec -u ua $C ps -eo user= | grep -q ub"
check "user B sees its own processes" sh -c "docker exec -u ub $C ps -eo user,args | grep -q 'ub .*sleep 1000'"
# hidepid exempts the group given by its gid= option, which defaults to 0: root in the container
# still sees every process, but cannot signal them (no CAP_KILL): signal as the user instead.
root_cannot_signal() {
    ! docker exec "$C" pkill -u ub sleep 2>/dev/null && as ub pgrep -u ub sleep >/dev/null
}
check "root in the container cannot signal a user's process" root_cannot_signal

check "/workspace is 711 root:root on the volume" test "$(docker exec "$C" stat -c '%a %U:%G' /workspace)" = "711 root:root"
check "user A cannot list /workspace" sh -c "! docker exec -u ua $C ls /workspace >/dev/null 2>&1"
check "user A can reach its own home" as ua sh -c 'cd && touch mine'
check "user A cannot list B's home" sh -c "! docker exec -u ua $C ls /workspace/ub >/dev/null 2>&1"
check "user A cannot read B's file" sh -c "! docker exec -u ua $C cat /workspace/ub/secret >/dev/null 2>&1"

check "unshare -Ur fails for a user" sh -c "! docker exec -u ua $C unshare -Ur id >/dev/null 2>&1"
check "unshare -Ur fails for root in the container too" sh -c "! docker exec $C unshare -Ur id >/dev/null 2>&1"
check "no setuid/setgid binaries remain" test -z "$(docker exec "$C" find / -xdev -type f -perm /6000)"
check "a user has no capabilities" sh -c "docker exec -u ua $C grep -q '^CapEff:.*0000000000000000' /proc/self/status"
check "no_new_privs is set" sh -c "docker exec -u ua $C grep -q '^NoNewPrivs:.*1' /proc/self/status"
check "per-user process limit is 256" test "$(as ua bash -c 'ulimit -u')" = 256
# Fork children that linger until the limit bites; the count includes the user's other processes.
forked=$(as ua python3 -c '
import os, time
n = 0
try:
    while n < 400:
        if os.fork() == 0:
            time.sleep(3); os._exit(0)
        n += 1
except OSError:
    pass
print(n)')
check "a user cannot fork past the limit (forked $forked)" test "$forked" -lt 256
check "no network but loopback" test "$(docker exec "$C" ls /sys/class/net)" = lo
check "PID 1 is docker's init" sh -c "docker exec $C cat /proc/1/cmdline | tr '\\0' ' ' | grep -q '^/sbin/docker-init'"
check "container-info prints the container name" sh -c "docker exec -u ua $C container-info | grep -qx 'container: $C'"
check "container-info counts 2 users" sh -c "docker exec -u ua $C container-info | grep -qx 'users on container: 2'"
check "engine applied the limits" test "$(docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}' "$C")" = "536870912 536870912 500000000 512"

if [ "$FAILS" -gt 0 ]; then
    echo "verify-isolation: $FAILS check(s) FAILED"
    exit 1
fi
echo "verify-isolation: all checks passed"
