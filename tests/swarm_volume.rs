//! The workspace volume's marker on a real Docker Swarm (`scripts/swarm/up.sh`): every slot marks
//! its volume when it is first prepared; a slot whose new container meets a volume that is not
//! its own (no marker although its users have homes, or another pool's marker) takes nobody: its
//! user gets a 503 naming the reason, the operator a log line naming slot, node and markers, and
//! no account or home is made there. Once the volume is the slot's again, the user is back.

mod common;

use std::time::{Duration, Instant};

use common::swarm::{exec_in, node_name, node_of, replace_container, shell, Stack};

/// One slot per node, two users each.
const SETTINGS: [(&str, &str); 4] = [
    ("MAX_CONTAINERS", "2"),
    ("SLOTS_PER_NODE", "1"),
    ("USERS_PER_CONTAINER", "2"),
    ("CONTAINER_NETWORK", "none"),
];
const MARKER: &str = "/workspace/.termpool-volume";
/// What the user of such a slot is told (`Unavailability::FilesUnreachable`).
const UNREACHABLE: &str = "your files are not reachable";

/// The marker's line for slot `idx` of pool `pool`.
fn line(pool: &str, idx: usize) -> String {
    format!("termpool-volume pool={pool} slot={idx}")
}

struct User {
    cookie: String,
    name: String,
    slot: String,
    idx: usize,
}

/// Waits until the server has looked at the slot's new container and refuses the user for its
/// volume; then checks that nothing was made there (the marker is still `marker`, the user's
/// home is there only if it was before: `home_before`) and that the operator was told.
async fn refused(stack: &Stack, user: &User, marker: Option<&str>, home_before: bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        match stack.try_connect(&user.cookie).await {
            Err((503, body)) if body.contains(UNREACHABLE) => break body,
            // Until its next health round the server may not know the container is new.
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
            Ok(_) => panic!("admitted to a volume that is not the slot's"),
            Err((status, body)) => panic!("not the volume's refusal: {status} {body}"),
        }
    };
    assert!(body.contains("nothing is lost"), "{body}");
    let (name, slot) = (&user.name, &user.slot);
    let made = exec_in(
        slot,
        &format!("id -u {name} 2>&1 || true; ls -a /workspace; cat {MARKER} 2>&1 || true"),
    );
    assert!(made.contains("no such user"), "an account was made: {made}");
    let home_now = made.lines().any(|l| l == name.as_str());
    assert_eq!(home_now, home_before, "the home was made or lost: {made}");
    let marker_now = match marker {
        Some(line) => made.lines().any(|l| l == line),
        None => made.contains(&format!("{MARKER}: No such file")),
    };
    assert!(marker_now, "the marker was changed: {made}");
    let found = marker.unwrap_or("no marker");
    let node = node_name(node_of(slot).expect("the slot's container"));
    let log = stack.server_log();
    let told = log.lines().any(|l| {
        l.contains(&format!("slot {slot} on node {node} is refused"))
            && l.contains(&format!("{:?}", line(&stack.tag, user.idx)))
            && l.contains(&format!("{found:?}"))
    });
    assert!(told, "no log line names the slot, node and markers:\n{log}");
}

/// The user is admitted again, to the same slot, with the file of the first visit.
async fn back(stack: &Stack, user: &User) {
    let mut c = stack
        .connect_within(&user.cookie, Duration::from_secs(120))
        .await;
    let ready = c.ready().await;
    assert_eq!(ready.user, user.name.as_str());
    assert_eq!(ready.container.as_deref(), Some(user.slot.as_str()));
    assert_eq!(
        shell(&mut c, "cat ~/kept").await,
        format!("kept-{}", user.name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_a_slot_meeting_a_volume_not_its_own_takes_nobody_and_makes_nothing_there() {
    let stack = Stack::deploy("vol", &SETTINGS);
    // Every slot marked its fresh volume when it was first prepared.
    for idx in 0..2 {
        let slot = format!("{}-{idx}", stack.tag);
        assert_eq!(
            exec_in(&slot, &format!("cat {MARKER}")),
            line(&stack.tag, idx)
        );
    }

    let cookie = stack.new_identity().await;
    let mut c = stack.connect_as(&cookie).await;
    let ready = c.ready().await;
    let name = ready.user.to_string();
    let slot = ready.container.as_deref().unwrap_or_default().to_owned();
    let idx = slot
        .rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap();
    shell(&mut c, &format!("echo kept-{name} > ~/kept")).await;
    drop(c);
    let user = User {
        cookie,
        name,
        slot,
        idx,
    };
    let own = line(&stack.tag, idx);
    let (name, slot) = (&user.name, &user.slot);

    // The slot's new container meets what a fresh local volume looks like: no marker, no home
    // (the user's is put aside, as if it were on another volume).
    exec_in(
        slot,
        &format!("rm {MARKER} && mv /workspace/{name} /workspace/.aside-{name}"),
    );
    replace_container(slot);
    refused(&stack, &user, None, false).await;
    // The operator brings the volume back.
    exec_in(
        slot,
        &format!("mv /workspace/.aside-{name} /workspace/{name} && echo '{own}' > {MARKER}"),
    );
    back(&stack, &user).await;

    // Another pool's marker on the slot's volume.
    let foreign = line("elsewhere", idx);
    exec_in(slot, &format!("echo '{foreign}' > {MARKER}"));
    replace_container(slot);
    refused(&stack, &user, Some(&foreign), true).await;
    exec_in(slot, &format!("echo '{own}' > {MARKER}"));
    back(&stack, &user).await;
}
