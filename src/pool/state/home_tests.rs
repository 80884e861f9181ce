//! Homes pinned to nodes: a user evicted (or whose slot fails) is placed again only on the node
//! whose volume holds its home, or waits; newcomers go anywhere.

use std::time::{Duration, Instant};

use super::super::assign::{AssignError, Decision};
use super::super::orchestrator::SlotNode;
use super::super::store::UserRecord;
use super::super::PoolConfig;
use super::{Choice, SlotError, State};

fn node(id: &str, ready: bool) -> Option<SlotNode> {
    Some(SlotNode {
        id: id.into(),
        name: format!("host-{id}"),
        ready,
        relay: None,
    })
}

fn cfg() -> PoolConfig {
    PoolConfig {
        max_containers: 3,
        users_per_container: 1,
        ..PoolConfig::default()
    }
}

/// A stored user: in slot `slot` (if any), its home in slot `home` (if any).
fn user(name: &str, slot: Option<usize>, home: Option<usize>, seen: i64) -> UserRecord {
    let c = cfg();
    UserRecord {
        identity_hash: format!("hash-{name}"),
        username: name.into(),
        uid: 200_000 + name.len() as u32,
        container: slot.map(|i| c.container_name(i)),
        home: home.map(|i| c.container_name(i)),
        last_seen: seen,
        last_activity: seen,
    }
}

/// Slots 0 and 1 on node A, slot 2 on node B, one user each, all ready.
fn pool(pinned: bool, users: Vec<UserRecord>) -> State {
    let mut st = State::new(&cfg(), users);
    st.pinned = pinned;
    for (idx, n) in [(0, "A"), (1, "A"), (2, "B")] {
        st.set_node(idx, node(n, true));
        st.mark_ready(idx, &format!("id{idx}"));
    }
    st
}

fn nobody(_: &str) -> bool {
    false
}

/// `u` (home in slot 0, no slot: evicted), `x` and `y` holding node A's slots, node B's free.
fn evicted_u(pinned: bool) -> State {
    pool(
        pinned,
        vec![
            user("u", None, Some(0), 1),
            user("x", Some(0), Some(0), 5),
            user("y", Some(1), Some(1), 3),
        ],
    )
}

#[test]
fn an_evicted_user_evicts_on_its_home_node_not_the_free_slot_elsewhere() {
    let mut st = evicted_u(true);
    let d = st.choose("u", &nobody, Instant::now());
    let want = Decision::Evict {
        idx: 1,
        evicted_user: "y".into(),
    };
    assert_eq!(d, Ok(Choice::Go(want)));
}

#[test]
fn an_evicted_user_is_refused_when_its_home_node_is_held_by_live_users() {
    let mut st = evicted_u(true);
    let live = |u: &str| u == "x" || u == "y";
    let d = st.choose("u", &live, Instant::now());
    assert_eq!(d, Err(AssignError::PoolFull));
    // Its refusal names its home's node, not the whole pool, which has room.
    assert!(st.bound_to_home("u"));
    assert!(!st.bound_to_home("newcomer"));
    // A newcomer still gets node B's free slot.
    let d = st.choose("newcomer", &live, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 2 })));
}

#[test]
fn without_pinned_homes_no_user_is_bound_to_a_home() {
    let st = evicted_u(false);
    assert!(!st.bound_to_home("u"));
    assert!(!st.bound_to_home("x"));
}

#[test]
fn an_evicted_user_takes_a_free_slot_of_its_home_node() {
    let mut st = pool(
        true,
        vec![user("u", None, Some(0), 1), user("x", Some(0), Some(0), 5)],
    );
    let d = st.choose("u", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
}

#[test]
fn an_evicted_user_whose_home_node_is_down_waits_for_it() {
    let mut st = evicted_u(true);
    st.set_node(0, node("A", false));
    st.set_node(1, node("A", false));
    let d = st.choose("u", &nobody, Instant::now());
    assert_eq!(d, Err(AssignError::NodeDown("host-A".into())));
}

#[test]
fn with_shared_homes_an_evicted_user_goes_anywhere() {
    let mut st = evicted_u(false);
    let d = st.choose("u", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 2 })));
}

#[test]
fn the_home_survives_the_eviction_in_the_state() {
    let mut st = pool(true, vec![user("u", Some(0), Some(0), 1)]);
    st.set_node(1, node("A", false));
    st.set_node(2, node("B", false));
    // A newcomer evicts u (idle) from slot 0, the only slot up.
    let d = st.choose("newcomer", &nobody, Instant::now());
    let want = Decision::Evict {
        idx: 0,
        evicted_user: "u".into(),
    };
    assert_eq!(d, Ok(Choice::Go(want)));
    let rec = user("newcomer", Some(0), Some(0), 9);
    st.apply(&rec, 0, Some("u"));
    assert_eq!((st.users["u"].slot, st.users["u"].home), (None, Some(0)));
    // Node B comes back with a free slot: u does not go there, it evicts on node A.
    st.set_node(2, node("B", true));
    let d = st.choose("u", &nobody, Instant::now());
    let want = Decision::Evict {
        idx: 0,
        evicted_user: "newcomer".into(),
    };
    assert_eq!(d, Ok(Choice::Go(want)));
}

/// Slot `idx` failed to provision for a reason of its own, until `until`.
fn failing(st: &mut State, idx: usize, until: Instant) {
    let err = SlotError {
        docker_unavailable: false,
        wrong_volume: false,
        message: format!("service of slot {idx} cannot be created"),
    };
    st.mark_failed(idx, err, until);
}

#[test]
fn a_pinned_user_whose_node_has_no_working_slot_waits_with_the_reason() {
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let mut st = pool(true, vec![user("u", Some(0), Some(0), 1)]);
    failing(&mut st, 0, later);
    failing(&mut st, 1, later);
    let d = st.choose("u", &nobody, now);
    let reason = "service of slot 0 cannot be created".to_string();
    assert_eq!(d, Err(AssignError::HomeFailing(reason)));
    // Newcomers go to node B meanwhile; once the backoff ends the user's own slot is tried.
    let d = st.choose("newcomer", &nobody, now);
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 2 })));
    let d = st.choose("u", &nobody, later);
    assert_eq!(d, Ok(Choice::Go(Decision::Sticky { idx: 0 })));
}

#[test]
fn a_pinned_user_whose_slot_fails_may_use_another_slot_of_its_node() {
    let now = Instant::now();
    let mut st = pool(true, vec![user("u", Some(0), Some(0), 1)]);
    failing(&mut st, 0, now + Duration::from_secs(10));
    let d = st.choose("u", &nobody, now);
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
}

#[test]
fn with_shared_homes_a_user_whose_slot_fails_moves() {
    let now = Instant::now();
    let mut st = pool(false, vec![user("u", Some(0), Some(0), 1)]);
    failing(&mut st, 0, now + Duration::from_secs(10));
    failing(&mut st, 1, now + Duration::from_secs(10));
    let d = st.choose("u", &nobody, now);
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 2 })));
}

#[test]
fn a_home_slot_whose_node_is_not_known_takes_its_user_alone() {
    let mut st = evicted_u(true);
    // After a restart, before the orchestrator told slot 0's node: slot 0 only.
    st.slots[0].node = None;
    let d = st.choose("u", &nobody, Instant::now());
    let want = Decision::Evict {
        idx: 0,
        evicted_user: "x".into(),
    };
    assert_eq!(d, Ok(Choice::Go(want)));
}

#[test]
fn records_without_a_home_are_newcomers_and_homes_of_unknown_slots_are_ignored() {
    let mut gone = user("v", None, None, 1);
    gone.home = Some("no-such-container".into());
    let st = pool(true, vec![user("u", None, None, 1), gone]);
    assert_eq!(st.users["u"].home, None);
    assert_eq!(st.users["v"].home, None);
}

#[test]
fn a_user_whose_home_slot_left_the_pool_waits_rather_than_get_an_empty_home() {
    // Stored while the pool had six slots; it has three now. The files are on slot 5's node.
    let gone = user("u", None, Some(5), 1);
    let mut st = pool(true, vec![gone.clone()]);
    match st.choose("u", &nobody, Instant::now()) {
        Err(AssignError::HomeFailing(why)) => {
            assert!(why.contains(&cfg().container_name(5)), "{why}");
            assert!(why.contains("MAX_CONTAINERS"), "{why}");
        }
        other => panic!("placed on an empty home: {other:?}"),
    }
    // On one volume (homes not pinned) it is a newcomer, as every home is reachable anywhere.
    let mut st = pool(false, vec![gone]);
    assert!(matches!(
        st.choose("u", &nobody, Instant::now()),
        Ok(Choice::Go(Decision::New { .. }))
    ));
}
