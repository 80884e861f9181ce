//! The server moved to another manager of a real Docker Swarm (`scripts/swarm/up.sh`): node 2 is
//! promoted for the test, the server's task moves there (with node 2's own engine and a local
//! volume it never had), and the same cookie reaches the same account, container and file, and
//! an access key made before the move still brings the account to another browser. Nothing a
//! user depends on was local to the first manager.

mod common;

use common::http_request;
use common::swarm::{container_of, node_of, shell, Promoted, Stack};

/// One slot per node, two users each.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "2"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "2"),
    ("CONTAINER_NETWORK", "none"),
];

/// POST `path` on the server as `cookie`: status and JSON body.
async fn post(stack: &Stack, path: &str, cookie: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let headers = [("Cookie", cookie)];
    let (status, _, body) = http_request(&stack.addr, "POST", path, &headers, body).await;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_server_moved_to_another_manager_keeps_cookies_accounts_containers_and_files() {
    // Declared first, dropped last: the stack (and its server on node 2) goes before node 2 is
    // demoted, also when the test fails.
    let mut promoted = Promoted::default();
    let mut stack = Stack::deploy("move", &SETTINGS);
    assert_eq!(
        stack.server_node(),
        Some(1),
        "one manager: the server is on node 1"
    );

    let cookie = stack.new_identity().await;
    let mut c = stack.connect_as(&cookie).await;
    let ready = c.ready().await;
    let user = ready.user.to_string();
    let slot = ready.container.as_deref().unwrap_or_default().to_owned();
    shell(&mut c, &format!("echo moved-{user} > ~/moved")).await;
    drop(c);
    let node = node_of(&slot).expect("the slot's container");
    let container = container_of(node, &slot);
    let (status, json) = post(&stack, "/api/access-key", &cookie, b"").await;
    assert_eq!(status, 200, "{json}");
    let key = json["key"].as_str().expect("a key").to_owned();

    // Node 2 becomes a manager only now (a server deployed meanwhile could land there), and the
    // operator moves the server to it.
    promoted.promote(&[2]);
    stack.move_server(2);
    assert_eq!(stack.server_node(), Some(2), "{}", stack.server_log());

    // The same cookie is the same account, in the same slot, whose container ran on through the
    // move, with the user's file.
    let mut c = stack.connect_as(&cookie).await;
    let again = c.ready().await;
    assert_eq!(
        again.user,
        user.as_str(),
        "the cookie still names the account"
    );
    assert_eq!(again.container.as_deref(), Some(slot.as_str()));
    assert_eq!(container_of(node, &slot), container, "the same container");
    assert_eq!(shell(&mut c, "whoami").await, user);
    assert_eq!(shell(&mut c, "cat ~/moved").await, format!("moved-{user}"));
    drop(c);

    // The access key made on node 1's server brings the account to a new browser on node 2's.
    let browser = stack.new_identity().await;
    let redeem = serde_json::json!({ "key": key }).to_string();
    let (status, json) = post(
        &stack,
        "/api/access-key/redeem",
        &browser,
        redeem.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["user"], user.as_str());

    // The stack goes first, then node 2 is a worker again (as the guards would on a failure).
    drop(stack);
    drop(promoted);
}
