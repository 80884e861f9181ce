//! Isolation on every node of a real Docker Swarm (`scripts/swarm/up.sh`): the cases of
//! docs/isolation.md in a user shell on each node, no reach from a user shell to another slot's
//! agent or to the server, and no shell for a client without the slot's key at an agent port.

mod common;

use std::collections::HashSet;

use common::swarm::{container_of, dk, exec_in, node_of, shell, user_image, Stack, NODES};
use common::Client;

const AGENT_PORT: u16 = 7100;
const NPROC: &str = "200";

/// One slot per node, one user each.
const SETTINGS: [(&str, &str); 5] = [
    ("MAX_CONTAINERS", "3"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "1"),
    ("USER_NPROC", NPROC),
    ("CONTAINER_NETWORK", "none"),
];

/// The address of slot (or service) `name`'s container on the stack's agents network.
fn agents_address(stack: &Stack, name: &str) -> String {
    let node = node_of(name).unwrap_or_else(|| panic!("no container for {name}"));
    let id = container_of(node, name).unwrap();
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{}-agents\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
        stack.tag
    );
    let ip = dk(node, &["inspect", "-f", &format, &id]);
    assert!(!ip.is_empty(), "{name} is not on the agents network");
    ip
}

/// Every isolation case of one user's shell.
async fn isolated(c: &mut Client, user: &str, node: usize) {
    let seen = shell(c, "ps -e -o user= | sort -u | tr '\\n' ' '").await;
    assert_eq!(
        seen, user,
        "node {node}: hidepid: the user sees only their own processes"
    );
    let caps = shell(
        c,
        "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status | cut -f2",
    )
    .await;
    for line in caps.lines() {
        assert_eq!(
            line.trim(),
            "0000000000000000",
            "node {node}: capabilities: {caps}"
        );
    }
    let userns = shell(c, "unshare -Ur true >/dev/null 2>&1; echo $?").await;
    assert_ne!(userns, "0", "node {node}: unshare -Ur must be denied");
    let mountns = shell(c, "unshare -m true >/dev/null 2>&1; echo $?").await;
    assert_ne!(mountns, "0", "node {node}: unshare -m must be denied");
    assert_eq!(shell(c, "ulimit -u").await, NPROC, "node {node}: nproc");
    let sockets = "for s in /var/run/docker.sock /run/docker.sock; do [ -e $s ] && echo $s; done";
    assert_eq!(shell(c, sockets).await, "", "node {node}: a Docker socket");
    let key = shell(c, "ls -A /run/secrets 2>/dev/null").await;
    assert_eq!(key, "", "node {node}: the agent's key is readable by users");
}

/// Whether a TCP connection from the user's shell to `ip:port` opens (5 s at most).
async fn reaches(c: &mut Client, ip: &str, port: u16) -> bool {
    let probe = format!(
        "timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null && echo OP\"\"EN || echo SH\"\"UT"
    );
    shell(c, &probe).await.contains("OPEN")
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_isolation_holds_on_every_node_and_agent_ports_need_the_slots_key() {
    let stack = Stack::deploy("iso", &SETTINGS);
    let mut sessions = Vec::new();
    for _ in 0..NODES {
        let mut c = stack.connect_as(&stack.new_identity().await).await;
        let ready = c.ready().await;
        let slot = ready.container.as_deref().unwrap_or_default().to_owned();
        sessions.push((ready.user.to_string(), slot, c));
    }
    let nodes: HashSet<usize> = sessions.iter().filter_map(|s| node_of(&s.1)).collect();
    assert_eq!(nodes.len(), NODES, "one slot on each node: {nodes:?}");

    for (user, slot, c) in &mut sessions {
        isolated(c, user, node_of(slot).unwrap()).await;
    }

    // The fence: from a user shell, neither another slot's agent nor the server.
    let server = stack.server_service();
    let server_ip = agents_address(&stack, &server);
    let slots: Vec<String> = sessions.iter().map(|s| s.1.clone()).collect();
    for (_, slot, c) in &mut sessions {
        for other in slots.iter().filter(|o| *o != slot) {
            let ip = agents_address(&stack, other);
            assert!(
                !reaches(c, &ip, AGENT_PORT).await,
                "{slot} reaches {other}'s agent"
            );
        }
        assert!(
            !reaches(c, &server_ip, 3000).await,
            "{slot} reaches the server"
        );
    }

    // A client on the agents network without the slot's key gets nothing from an agent port.
    let target = &slots[0];
    let before = exec_in(target, "ps -e -o pid= | wc -l");
    let answer = intrude(&stack, &agents_address(&stack, target));
    assert!(
        answer.contains("connected"),
        "the agent port is not open: {answer}"
    );
    assert!(
        !answer.contains("received"),
        "the agent answered a client without the key: {answer}"
    );
    assert!(
        !answer.contains("timeout"),
        "the agent kept a failed handshake open: {answer}"
    );
    // The agent's process for each intruding connection may still be on its way out: what must
    // not stay is a process started for the intruder (a shell would wait for input).
    let mut after = exec_in(target, "ps -e -o pid= | wc -l");
    for _ in 0..30 {
        if after == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        after = exec_in(target, "ps -e -o pid= | wc -l");
    }
    assert_eq!(
        after,
        before,
        "a process started and stayed: {}",
        exec_in(target, "ps -e -o pid,user,args")
    );
}

/// Plays a client without the key at `ip`'s agent port from a container attached to the
/// agents network: a plaintext OPEN, a forged Noise first message, shell input (a partial
/// frame, which the agent must drop within its first-frame deadline). What it saw.
fn intrude(stack: &Stack, ip: &str) -> String {
    const SCRIPT: &str = r#"
import json, os, socket, struct, sys
def frame(b): return struct.pack(">H", len(b)) + b
open_ = b"\x01" + json.dumps({"user": "root", "home": "/root", "cols": 80, "rows": 24, "env": {}}).encode()
tries = {"plaintext open": frame(open_), "forged handshake": frame(os.urandom(48)) + frame(open_),
         "shell input": b"id\nwhoami\n"}
for name, payload in tries.items():
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    except OSError as e:
        print(name, "refused", e); continue
    print(name, "connected")
    # Longer than the agent may wait for a first frame (a partial one included).
    s.settimeout(30)
    got = b""
    try:
        s.sendall(payload)
        while True:
            d = s.recv(4096)
            if not d: break
            got += d
    except socket.timeout:
        print(name, "timeout")
    except OSError as e:
        print(name, "reset", e)
    if got: print(name, "received", got[:80])
"#;
    let net = format!("{}-agents", stack.tag);
    let name = format!("{}-intruder", stack.tag);
    let port = AGENT_PORT.to_string();
    let args = [
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        &net,
        "--entrypoint",
        "python3",
        &user_image(),
        "-c",
        SCRIPT,
        ip,
        &port,
    ];
    dk(1, &args)
}
