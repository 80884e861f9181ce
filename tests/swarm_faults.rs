//! A node of a real Docker Swarm (`scripts/swarm/up.sh`) cut off and back: its users get a
//! prompt 503 naming the reason, users of other nodes keep working, newcomers go to healthy
//! nodes, and once the node is back its users find their files.

mod common;

use std::time::{Duration, Instant};

use common::swarm::{node_of, node_state, shell, wait_until, LinkCut, Stack, NODES};
use common::Client;

/// One slot per node, two users each.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "3"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "2"),
    ("CONTAINER_NETWORK", "none"),
];
/// What a user of a node that is down is told (`Unavailability::NodeDown`).
const NODE_DOWN: &str = "the host holding your files is down";

struct User {
    cookie: String,
    name: String,
    slot: String,
    node: usize,
}

async fn arrive(stack: &Stack) -> (User, Client) {
    let cookie = stack.new_identity().await;
    let mut c = stack.connect_as(&cookie).await;
    let ready = c.ready().await;
    let slot = ready.container.as_deref().unwrap_or_default().to_owned();
    let name = ready.user.to_string();
    shell(&mut c, &format!("echo kept-{name} > ~/precious")).await;
    let node = node_of(&slot).unwrap_or_else(|| panic!("no container for {slot}"));
    let user = User {
        cookie,
        name,
        slot,
        node,
    };
    (user, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_node_cut_off_answers_its_users_at_once_and_gives_them_their_files_when_back() {
    let stack = Stack::deploy("fault", &SETTINGS);
    let mut users = Vec::new();
    for _ in 0..NODES {
        users.push(arrive(&stack).await);
    }
    // The victim: a worker's user (node 1 is the manager the server runs on); a bystander on
    // another node keeps an open session through the cut.
    let victim = users
        .iter()
        .position(|(u, _)| u.node != 1)
        .expect("a user on a worker");
    let (victim, _gone) = users.remove(victim);
    let bystander = users.iter().position(|(u, _)| u.node != victim.node);
    let (bystander, mut open) = users.remove(bystander.expect("a user on another node"));

    let cut = LinkCut::new(victim.node);
    let down = wait_until(Duration::from_secs(90), || {
        node_state(victim.node) == "down"
    });
    assert!(down, "the manager did not mark node {} down", victim.node);

    // The victim is answered promptly and honestly, never left hanging.
    let asked = Instant::now();
    let refusal = tokio::time::timeout(Duration::from_secs(20), stack.try_connect(&victim.cookie))
        .await
        .expect("the victim's request hangs");
    let answered = asked.elapsed();
    let (status, body) = refusal.err().expect("a session on a node that is down");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(NODE_DOWN), "the reason is not named: {body}");
    assert!(
        answered < Duration::from_secs(10),
        "answered after {answered:?}"
    );

    // The bystander's open session still works, and so does a new one.
    assert_eq!(shell(&mut open, "whoami").await, bystander.name);
    let mut again = stack.connect_as(&bystander.cookie).await;
    assert_eq!(
        again.ready().await.container.as_deref(),
        Some(&*bystander.slot)
    );
    assert_eq!(
        shell(&mut again, "cat ~/precious").await,
        format!("kept-{}", bystander.name)
    );

    // A newcomer goes to a healthy node.
    let (newcomer, _c) = arrive(&stack).await;
    assert_ne!(
        newcomer.node, victim.node,
        "a newcomer was placed on the node that is down"
    );

    // The link back: the victim's slot returns on its node, with the file.
    drop(cut);
    let ready = wait_until(Duration::from_secs(120), || {
        node_state(victim.node) == "ready"
    });
    assert!(ready, "node {} did not come back", victim.node);
    let mut back = stack
        .connect_within(&victim.cookie, Duration::from_secs(180))
        .await;
    let ready = back.ready().await;
    assert_eq!(ready.user, victim.name);
    assert_eq!(ready.container.as_deref(), Some(&*victim.slot));
    assert_eq!(
        node_of(&victim.slot),
        Some(victim.node),
        "the slot moved off its node"
    );
    let file = shell(&mut back, "cat ~/precious").await;
    assert_eq!(file, format!("kept-{}", victim.name), "the files are back");
}
