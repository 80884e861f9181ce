# Shared names of the test Swarm built by up.sh and removed by down.sh (sourced, not run).
# Everything either script creates is named here, so down.sh can find it again after a crash.

SWARM_RUN=/run/termpool-swarm            # sockets, exec roots, pid files
SWARM_DATA=/var/lib/termpool-swarm       # data roots (images, volumes, swarm state)
SWARM_BRIDGE=tpswarm0                    # host bridge joining the nodes' namespaces
SWARM_NET_PREFIX=198.18.0                # node i has 198.18.0.(10+i)/24 (benchmarking range)
SWARM_HOST_ADDR=198.18.0.1               # the host's own address on the bridge: tests reach the nodes' ports
SWARM_NS_PREFIX=tpswarm-n                # network namespace (and node hostname) tpswarm-n<i>
SWARM_CGROUP_PREFIX=termpool-swarm-n     # cgroup parent of node i's containers
# Addresses docker gives its own networks on the nodes: the rest of the benchmarking /15, never
# an address that could exist outside this machine.
SWARM_LOCAL_POOL=198.19.0.0/17           # per-node bridges (docker0, docker_gwbridge)
SWARM_OVERLAY_POOL=198.19.128.0/17       # overlay networks, ingress included

node_name() { echo "${SWARM_NS_PREFIX}$1"; }
node_addr() { echo "${SWARM_NET_PREFIX}.$((10 + $1))"; }
node_sock() { echo "$SWARM_RUN/$(node_name "$1").sock"; }
# docker CLI against node i.
dk() {
    local i=$1
    shift
    docker -H "unix://$(node_sock "$i")" "$@"
}
# The node numbers that exist now (by their namespaces), ascending.
existing_nodes() {
    ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^${SWARM_NS_PREFIX}\([0-9]\+\)$/\1/p" | sort -n
}
log() { echo "swarm: $*" >&2; }

# The container id of service $2's task running on node $1 (empty if none runs there).
task_on() { dk "$1" ps -q --filter "label=com.docker.swarm.service.name=$2" | head -n 1; }
# Waits until service $1 has $2 running tasks (60 s at most).
wait_running() {
    local n=0
    for _ in $(seq 60); do
        n=$(dk 1 service ps "$1" --filter desired-state=running --format '{{.CurrentState}}' |
            grep -c '^Running' || true)
        [ "$n" -ge "$2" ] && return 0
        sleep 1
    done
    log "service $1: $n of $2 tasks running"
    dk 1 service ps --no-trunc "$1" >&2
    return 1
}
