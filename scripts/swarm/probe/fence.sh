#!/bin/sh
# Stand-in for the agent's network fence on a Swarm node (run as root, with NET_ADMIN, as the
# container's main process): on the pool's overlay network ($FENCE_NET, a CIDR) accept only new
# connections to the agent's port, start none, then run a "user" service on 8000 (uid 200001)
# and the "agent" on 7100 (root). Each answers its own name.
set -eu
nft -f - <<RULES
table inet termpool_fence {
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr $FENCE_NET ct state established,related accept
        ip saddr $FENCE_NET tcp dport 7100 accept
        ip saddr $FENCE_NET drop
    }
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr $FENCE_NET ct state established,related accept
        ip daddr $FENCE_NET drop
    }
}
RULES
serve='import socket, sys
s = socket.create_server(("", int(sys.argv[1])))
while True:
    c, _ = s.accept(); c.sendall(sys.argv[2].encode()); c.close()'
useradd -M -u 200001 -s /bin/sh fenceuser
setpriv --reuid=200001 --regid=200001 --clear-groups --inh-caps=-all --bounding-set=-all \
    python3 -c "$serve" 8000 "user-service-of-$(hostname)" &
exec python3 -c "$serve" 7100 "agent-of-$(hostname)"
