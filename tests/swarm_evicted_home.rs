//! An evicted user never gets an empty home on another node, on a real Docker Swarm
//! (`scripts/swarm/up.sh`): with per-node volumes, a user evicted from a full pool comes back to
//! the node holding its files (evicting the idle user there) or gets that node's "pool full",
//! even when the only free slot is on another node and the server restarted in between.

mod common;

use std::time::Duration;

use common::swarm::{exec_in, node_of, shell, wait_until, Stack};
use common::Client;

/// One slot at first, one user per slot, one slot per node: a second slot goes to another node.
/// A closed session is hung up at once, so that its user is idle (evictable) at once.
const SETTINGS: [(&str, &str); 5] = [
    ("MAX_CONTAINERS", "1"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "1"),
    ("CONTAINER_NETWORK", "none"),
    ("REATTACH_GRACE_SECS", "0"),
];
/// What a user is told when every slot of the node holding its files is held by live users.
const HOME_FULL: &str = "pool full on the host holding your files";

/// Connects as `cookie` (retrying for a while: a closed session may not be counted closed at
/// once) and returns the session with its account and slot.
async fn visit(stack: &Stack, cookie: &str) -> (Client, String, String) {
    let mut c = stack.connect_within(cookie, Duration::from_secs(60)).await;
    let ready = c.ready().await;
    let slot = ready.container.as_deref().unwrap_or_default().to_owned();
    (c, ready.user.to_string(), slot)
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_an_evicted_user_gets_its_own_files_back_never_an_empty_home_on_another_node() {
    let stack = Stack::deploy("evhome", &SETTINGS);
    let (slot0, slot1) = (format!("{}-0", stack.tag), format!("{}-1", stack.tag));

    // U writes a file in its home on slot 0's node, and goes idle.
    let u = stack.new_identity().await;
    let (mut c, u_name, slot) = visit(&stack, &u).await;
    assert_eq!(slot, slot0);
    shell(&mut c, "echo kept-$(whoami) > ~/kept").await;
    drop(c);

    // A newcomer fills the pool: U, idle and least recently seen, is evicted.
    let n = stack.new_identity().await;
    let (c, n_name, slot) = visit(&stack, &n).await;
    assert_eq!(slot, slot0, "the newcomer takes U's slot");
    assert_ne!(n_name, u_name);
    drop(c);

    // The operator grows the pool: the new slot goes to another node, whose volume holds no
    // home of U. The server restarts: U's home is known from the store alone.
    stack.restart_server_with("MAX_CONTAINERS", "2");
    let started = wait_until(Duration::from_secs(120), || node_of(&slot1).is_some());
    assert!(
        started,
        "the new slot does not run:\n{}",
        stack.server_log()
    );
    let home_node = node_of(&slot0).expect("slot 0 runs");
    let other_node = node_of(&slot1).expect("the new slot runs");
    assert_ne!(
        home_node, other_node,
        "SLOTS_PER_NODE=1 puts the slots apart"
    );

    // N is back (its slot, on U's home node) and live: the only free slot is on the other
    // node, and U gets its home node's refusal rather than an empty home there.
    let (mut live_n, name, slot) = visit(&stack, &n).await;
    assert_eq!(
        (name.as_str(), slot.as_str()),
        (n_name.as_str(), slot0.as_str())
    );
    shell(&mut live_n, "true").await;
    match stack.try_connect(&u).await {
        Err((503, body)) => assert!(body.contains(HOME_FULL), "not the full node's: {body}"),
        Err((status, body)) => panic!("not the full node's refusal: {status} {body}"),
        Ok(mut c) => {
            let ready = c.ready().await;
            panic!("U placed in {:?} with N live on its node", ready.container);
        }
    }
    let homes1 = exec_in(&slot1, "ls -a /workspace");
    assert!(
        !homes1.lines().any(|l| l == u_name),
        "U got a home on the other node: {homes1}"
    );

    // N goes idle: U comes back to its own node, evicting N, with its file.
    drop(live_n);
    let (mut c, name, slot) = visit(&stack, &u).await;
    assert_eq!(
        (name.as_str(), slot.as_str()),
        (u_name.as_str(), slot0.as_str())
    );
    assert_eq!(shell(&mut c, "cat ~/kept").await, format!("kept-{u_name}"));
    let homes1 = exec_in(&slot1, "ls -a /workspace");
    assert!(
        !homes1.lines().any(|l| l == u_name),
        "U got a home on the other node: {homes1}"
    );

    // Newcomers still go anywhere: the free slot on the other node.
    let m = stack.new_identity().await;
    let (_m_session, _, slot) = visit(&stack, &m).await;
    assert_eq!(slot, slot1, "a newcomer takes the free slot");
    drop(c);
}
