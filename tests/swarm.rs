//! The pool on a real Docker Swarm of three engines (`scripts/swarm/up.sh`), deployed as an
//! operator does (`scripts/swarm-deploy.sh`, docker-stack.yml): users placed on containers of
//! different nodes, least-loaded and sticky, also across a restart of the server's service.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::swarm::{exec_in, node_of, relayed_on, shell, wait_until, Stack, NODES};
use common::Client;

/// One slot per node, two users each: three users fill one slot on each node.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "3"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "2"),
    ("CONTAINER_NETWORK", "none"),
];

/// A user's session: their cookie, account and slot.
struct Visit {
    cookie: String,
    user: String,
    slot: String,
}

async fn visit(stack: &Stack, cookie: &str) -> (Visit, Client) {
    let mut c = stack.connect_as(cookie).await;
    let ready = c.ready().await;
    assert_eq!(ready.mode, "container");
    let visit = Visit {
        cookie: cookie.to_owned(),
        user: ready.user.to_string(),
        slot: ready.container.as_deref().unwrap_or_default().to_owned(),
    };
    (visit, c)
}

/// The user comes back: same account, same slot, the file written at the first visit.
async fn comes_back(stack: &Stack, first: &Visit) {
    let (again, mut c) = visit(stack, &first.cookie).await;
    assert_eq!(
        again.user, first.user,
        "the same cookie is the same account"
    );
    assert_eq!(
        again.slot, first.slot,
        "the same account is in the same slot"
    );
    assert_eq!(shell(&mut c, "whoami").await, first.user);
    let file = shell(&mut c, "cat ~/swarm-token").await;
    assert_eq!(
        file,
        format!("token-{}", first.user),
        "the user's file is back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_users_spread_over_the_nodes_and_come_back_to_their_files_also_after_a_server_restart(
) {
    let stack = Stack::deploy("place", &SETTINGS);
    let mut visits = Vec::new();
    for _ in 0..NODES {
        let cookie = stack.new_identity().await;
        let (v, mut c) = visit(&stack, &cookie).await;
        assert_eq!(shell(&mut c, "whoami").await, v.user);
        shell(&mut c, &format!("echo token-{} > ~/swarm-token", v.user)).await;
        visits.push(v);
    }

    // Least-loaded: each of the first three users has a slot of their own, one on each node.
    let slots: HashSet<&str> = visits.iter().map(|v| v.slot.as_str()).collect();
    assert_eq!(slots.len(), NODES, "one slot each: {slots:?}");
    let nodes: HashSet<usize> = visits
        .iter()
        .map(|v| node_of(&v.slot).unwrap_or_else(|| panic!("no container for {}", v.slot)))
        .collect();
    assert_eq!(
        nodes.len(),
        NODES,
        "the slots are on {nodes:?}, not on every node"
    );
    for v in &visits {
        // The home is on the slot's node, owned by the account (seen from the engine there).
        let owner = exec_in(&v.slot, &format!("stat -c %U /workspace/{}", v.user));
        assert_eq!(owner, v.user);
    }

    // Sticky: every user comes back to their slot, account and file.
    for v in &visits {
        comes_back(&stack, v).await;
    }

    // A fourth user fills a second place somewhere; the first three keep theirs.
    let (fourth, mut c) = visit(&stack, &stack.new_identity().await).await;
    assert!(slots.contains(fourth.slot.as_str()), "{}", fourth.slot);

    // Every node runs the pool's relay; the open session is relayed by its node's, outside
    // the user's container.
    for i in 1..=NODES {
        assert!(
            wait_until(Duration::from_secs(60), || relayed_on(i, &fourth.slot)
                .is_some()),
            "no node relay on node {i}"
        );
    }
    assert_eq!(shell(&mut c, "echo relayed").await, "relayed");
    let node = node_of(&fourth.slot).unwrap();
    let before = relayed_on(node, &fourth.slot).unwrap();
    // (The first users' sessions wait for their tabs to come back: they are relayed too.)
    assert!(before >= 1, "node {node}");
    let (_, mut tab) = visit(&stack, &fourth.cookie).await;
    assert_eq!(shell(&mut tab, "echo relayed").await, "relayed");
    assert_eq!(
        relayed_on(node, &fourth.slot),
        Some(before + 1),
        "node {node}"
    );

    // The server's service restarted: no placement is lost.
    let before: Vec<Option<usize>> = visits.iter().map(|v| node_of(&v.slot)).collect();
    stack.restart_server();
    for v in &visits {
        comes_back(&stack, v).await;
    }
    let after: Vec<Option<usize>> = visits.iter().map(|v| node_of(&v.slot)).collect();
    assert_eq!(before, after, "the slots stay on their nodes");
}
