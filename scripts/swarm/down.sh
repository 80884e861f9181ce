#!/usr/bin/env bash
# Removes everything scripts/swarm/up.sh created: the engines and their containers, mounts, data
# and cgroups, the network namespaces, the bridge and the iptables rule. Idempotent; safe after a
# crash or a partial up.sh. Touches nothing of the host engine. Takes about a minute, most of it
# deleting the nodes' image layers.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }

# Every pid whose command line names our run or data directory (containerd, shims) or that sits
# in one of our nodes' cgroups (the nodes' containers). Matched by our own paths only.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qE "$SWARM_RUN/|$SWARM_DATA/" && echo "${p#/proc/}"
        grep -q ":/${SWARM_CGROUP_PREFIX}[0-9]" "$p/cgroup" 2>/dev/null && echo "${p#/proc/}"
    done | sort -u || true
}

stop_engines() {
    local pidfile pid
    for pidfile in "$SWARM_RUN"/*/dockerd.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        # Only the dockerd that wrote this pid file (a reused pid is left alone).
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$pidfile"; then
            log "stopping dockerd $pid ($(basename "$(dirname "$pidfile")"))"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    local left
    for _ in 1 2 3; do
        left=$(our_pids)
        [ -n "$left" ] || return 0
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        sleep 1
    done
}

unmount_under() {
    local dir=$1
    local mounts
    mounts=$(findmnt -rn -o TARGET | grep -E "^$dir(/|$)" | sort -r || true)
    for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
}

remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/"${SWARM_CGROUP_PREFIX}"* /sys/fs/cgroup/"${SWARM_CGROUP_PREFIX}"*; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

remove_network() {
    local i
    for i in $(existing_nodes); do
        ip link del "tpsw${i}h" 2>/dev/null || true
        ip netns del "$(node_name "$i")"
    done
    ip link del "$SWARM_BRIDGE" 2>/dev/null || true
    while iptables -D DOCKER-USER -i "$SWARM_BRIDGE" -o "$SWARM_BRIDGE" -j ACCEPT 2>/dev/null; do :; done
}

stop_engines
unmount_under "$SWARM_RUN"
unmount_under "$SWARM_DATA"
rm -rf --one-file-system "$SWARM_RUN" "$SWARM_DATA"
remove_cgroups
remove_network
log "removed"
