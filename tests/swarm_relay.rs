//! The node relay gone from one node of a real Docker Swarm (`scripts/swarm/up.sh`): the
//! operator sees it in `/metrics` and the server's log, the node's users keep working (their
//! agents relay their sessions), and the relay's return is seen too.

mod common;

use std::time::Duration;

use common::swarm::{dk, metrics, node_name, node_of, relayed_on, shell, wait_until, Stack, NODES};

/// One slot per node.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "3"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "2"),
    ("CONTAINER_NETWORK", "none"),
];

/// A user's cookie, slot and the slot's node.
type User = (String, String, usize);

/// `/metrics`'s word on the relay of slot `slot`'s node (node `i`): `Some(true)` when it runs.
fn relay_metric(stack: &Stack, slot: &str, i: usize) -> Option<bool> {
    let text = metrics(&stack.addr)?;
    let line = format!(
        "termpool_container_node_relay{{container=\"{slot}\",node=\"{}\"}} ",
        node_name(i)
    );
    let value = text.lines().find_map(|l| l.strip_prefix(&line))?;
    Some(value.trim() == "1")
}

fn relay_update(stack: &Stack, change: &str, constraint: &str) {
    let service = format!("{}-relay", stack.tag);
    dk(
        1,
        &[
            "service", "update", "--detach", change, constraint, &service,
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_a_node_without_its_relay_is_shown_to_the_operator_and_its_users_keep_working() {
    let stack = Stack::deploy("relay", &SETTINGS);
    // Three users, one slot each, one slot on each node.
    let mut users = Vec::new();
    for _ in 0..NODES {
        let cookie = stack.new_identity().await;
        let mut c = stack.connect_as(&cookie).await;
        let slot = c.ready().await.container.unwrap_or_default().to_string();
        assert_eq!(shell(&mut c, "echo here").await, "here");
        let node = node_of(&slot).unwrap_or_else(|| panic!("no container for {slot}"));
        users.push((cookie, slot, node));
    }
    let relays_run = |want: bool, of: &[&User]| {
        wait_until(Duration::from_secs(90), || {
            of.iter()
                .all(|(_, slot, i)| relay_metric(&stack, slot, *i) == Some(want))
        })
    };
    let all: Vec<_> = users.iter().collect();
    assert!(
        relays_run(true, &all),
        "the relay of every node in /metrics:\n{}",
        metrics(&stack.addr).unwrap_or_default()
    );

    // The relay kept off a worker node, as a relay that cannot start there.
    let (cookie, slot, node) = users.iter().find(|u| u.2 != 1).expect("a worker's user");
    let others: Vec<_> = users.iter().filter(|u| u.2 != *node).collect();
    let constraint = format!("node.hostname!={}", node_name(*node));
    relay_update(&stack, "--constraint-add", &constraint);
    assert!(
        wait_until(Duration::from_secs(90), || relayed_on(*node, slot)
            .is_none()),
        "the relay still runs on node {node}"
    );
    assert!(
        relays_run(false, &[&(cookie.clone(), slot.clone(), *node)]),
        "/metrics still shows a relay on node {node}:\n{}",
        metrics(&stack.addr).unwrap_or_default()
    );
    assert!(relays_run(true, &others), "the other nodes' relays");
    let missing = format!("no node relay runs on node {} any more", node_name(*node));
    assert!(
        wait_until(Duration::from_secs(30), || stack
            .server_log()
            .contains(&missing)),
        "the server's log does not say {missing:?}:\n{}",
        stack.server_log()
    );

    // The node's user opens a tab: their agent relays it inside their container.
    let mut c = stack.connect_as(cookie).await;
    assert_eq!(c.ready().await.container.as_deref(), Some(slot.as_str()));
    assert_eq!(shell(&mut c, "echo still-here").await, "still-here");

    // Back: the relay runs on the node again, and the operator is told.
    let back = format!("the node relay runs on node {}", node_name(*node));
    // Told after it was told missing (the log's tail may have lost the older line).
    let told_back = || {
        let log = stack.server_log();
        match (log.rfind(&missing), log.rfind(&back)) {
            (Some(gone), Some(back)) => back > gone,
            (None, back) => back.is_some(),
            (Some(_), None) => false,
        }
    };
    relay_update(&stack, "--constraint-rm", &constraint);
    assert!(
        relays_run(true, &all),
        "the relay of every node, back:\n{}",
        metrics(&stack.addr).unwrap_or_default()
    );
    assert!(
        wait_until(Duration::from_secs(30), told_back),
        "the server's log does not say {back:?} again"
    );
}
