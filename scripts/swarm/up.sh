#!/usr/bin/env bash
# Builds a real Docker Swarm of N engines (default 2) on this one machine, for tests of the pool
# across hosts: each engine is an extra dockerd in a network namespace of its own, the namespaces
# joined by a host bridge on 198.18.0.0/24. Node 1 is the manager; the others join as workers.
# The user image is copied to every node. Idempotent: a second run repairs or does nothing.
# Needs root and the host engine. Remove everything with scripts/swarm/down.sh.
#
#   scripts/swarm/up.sh [N]      then: docker -H unix:///run/termpool-swarm/tpswarm-n1.sock ...
#
# SWARM_IMAGES: images copied from the host engine (default terminal-multi-user:latest; empty:
# none).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

N=${1:-2}
IMAGES=${SWARM_IMAGES-terminal-multi-user:latest}
[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 2 ] && [ "$N" -le 50 ] || { log "N must be 2..50"; exit 1; }
for i in $(existing_nodes); do
    [ "$i" -le "$N" ] || { log "node $i exists beyond N=$N: run down.sh first"; exit 1; }
done

setup_bridge() {
    ip link show "$SWARM_BRIDGE" >/dev/null 2>&1 || ip link add "$SWARM_BRIDGE" type bridge
    ip link set "$SWARM_BRIDGE" up
    # The host's address, so that tests and benchmarks on the host reach the nodes' published
    # ports (198.18.0.11:PORT) without entering a namespace.
    ip addr replace "$SWARM_HOST_ADDR/24" dev "$SWARM_BRIDGE"
    # The host engine sets FORWARD to DROP, and bridged frames pass through iptables.
    local rule=(DOCKER-USER -i "$SWARM_BRIDGE" -o "$SWARM_BRIDGE" -j ACCEPT)
    if ! iptables -L DOCKER-USER -n >/dev/null 2>&1; then
        log "no DOCKER-USER chain: is the host engine running? (scripts/install-docker.sh)"
        exit 1
    fi
    iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}"
}

setup_netns() {
    local i=$1 ns host_if="tpsw${1}h" ns_if="tpsw${1}n"
    ns=$(node_name "$i")
    [ -e "/var/run/netns/$ns" ] || ip netns add "$ns"
    if ! ip link show "$host_if" >/dev/null 2>&1; then
        ip link add "$host_if" type veth peer name "$ns_if"
        ip link set "$ns_if" netns "$ns"
        ip -n "$ns" link set "$ns_if" name eth0
    fi
    # A run that stopped between moving and renaming the link.
    if ip -n "$ns" link show "$ns_if" >/dev/null 2>&1; then
        ip -n "$ns" link set "$ns_if" name eth0
    fi
    ip link set "$host_if" master "$SWARM_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr replace "$(node_addr "$i")/24" dev eth0
}

start_engine() {
    local i=$1 ns dir
    ns=$(node_name "$i")
    dir="$SWARM_RUN/$ns"
    if dk "$i" info >/dev/null 2>&1; then
        return
    fi
    mkdir -p "$dir" "$SWARM_DATA/$ns"
    rm -f "$dir/dockerd.pid"
    log "starting the engine of $ns ($(node_addr "$i"))"
    # nsenter --net only (not `ip netns exec`, which remounts /sys and hides the cgroup mounts);
    # a UTS namespace of its own so the node's hostname (its Swarm node name) is its own.
    # Its own containerd namespace and cgroup parent keep its containers apart from the host's.
    setsid nsenter --net="/var/run/netns/$ns" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$ns" \
        dockerd -H "unix://$(node_sock "$i")" \
        --data-root "$SWARM_DATA/$ns" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        --containerd-namespace "$ns" --containerd-plugins-namespace "$ns-plugins" \
        --cgroup-parent "/${SWARM_CGROUP_PREFIX}$i" \
        --default-address-pool "base=$SWARM_LOCAL_POOL,size=24" \
        --userland-proxy=false \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 60); do
        dk "$i" info >/dev/null 2>&1 && return
        sleep 1
    done
    log "the engine of $ns did not answer in 60 s; last lines of $dir/dockerd.log:"
    tail -n 20 "$dir/dockerd.log" >&2
    exit 1
}

swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}'; }

form_swarm() {
    local manager_addr i
    manager_addr=$(node_addr 1)
    if [ "$(swarm_state 1)" != active ]; then
        log "swarm init on $(node_name 1)"
        dk 1 swarm init --advertise-addr "$manager_addr" --listen-addr "$manager_addr:2377" \
            --default-addr-pool "$SWARM_OVERLAY_POOL" --default-addr-pool-mask-length 24 >/dev/null
    fi
    local token
    token=$(dk 1 swarm join-token -q worker)
    for i in $(seq 2 "$N"); do
        [ "$(swarm_state "$i")" = active ] && continue
        log "$(node_name "$i") joins"
        dk "$i" swarm join --token "$token" --advertise-addr "$(node_addr "$i")" \
            --listen-addr "$(node_addr "$i"):2377" "$manager_addr:2377" >/dev/null
    done
}

copy_images() {
    local image host_id tar i
    [ -n "$IMAGES" ] || return 0
    for image in $IMAGES; do
        host_id=$(docker image inspect --format '{{.Id}}' "$image")
        tar=""
        for i in $(seq "$N"); do
            [ "$(dk "$i" image inspect --format '{{.Id}}' "$image" 2>/dev/null)" = "$host_id" ] && continue
            if [ -z "$tar" ]; then
                tar="$SWARM_DATA/image.tar"
                docker save -o "$tar" "$image"
            fi
            log "loading $image into $(node_name "$i")"
            dk "$i" load -q -i "$tar" >/dev/null
        done
        [ -z "$tar" ] || rm -f "$tar"
    done
}

wait_ready() {
    local ready
    for _ in $(seq 60); do
        ready=$(dk 1 node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active$' || true)
        [ "$ready" -ge "$N" ] && { log "$ready nodes ready"; return; }
        sleep 1
    done
    log "only $ready of $N nodes ready"
    dk 1 node ls >&2
    exit 1
}

mkdir -p "$SWARM_RUN" "$SWARM_DATA"
setup_bridge
for i in $(seq "$N"); do setup_netns "$i"; done
for i in $(seq "$N"); do start_engine "$i"; done
form_swarm
copy_images
wait_ready
