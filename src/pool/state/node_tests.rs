//! The node-state filter of the assigner: slots on a node that is down take no newcomers, and
//! a user whose home is pinned there waits for it instead of being moved to an empty home.

use std::time::{Duration, Instant};

use super::super::assign::{AssignError, Decision};
use super::super::orchestrator::SlotNode;
use super::super::store::UserRecord;
use super::super::PoolConfig;
use super::{Choice, SlotError, State};

fn node(name: &str, ready: bool) -> Option<SlotNode> {
    Some(SlotNode {
        id: format!("id-{name}"),
        name: name.into(),
        ready,
        relay: None,
    })
}

fn user(name: &str, container: &str) -> UserRecord {
    UserRecord {
        identity_hash: format!("hash-{name}"),
        username: name.into(),
        uid: 200_000 + name.len() as u32,
        container: Some(container.into()),
        home: Some(container.into()),
        last_seen: 1,
        last_activity: 1,
    }
}

/// Two slots, slot 0 on node n1 holding `alice`, slot 1 on node n2.
fn two_nodes(pinned: bool) -> State {
    let cfg = PoolConfig {
        max_containers: 2,
        users_per_container: 4,
        ..PoolConfig::default()
    };
    let mut st = State::new(&cfg, vec![user("alice", &cfg.container_name(0))]);
    st.pinned = pinned;
    st.set_node(0, node("n1", true));
    st.set_node(1, node("n2", true));
    st.mark_ready(0, "id0");
    st.mark_ready(1, "id1");
    st
}

fn nobody(_: &str) -> bool {
    false
}

#[test]
fn newcomers_avoid_slots_on_a_node_that_is_down() {
    let mut st = two_nodes(true);
    // Both empty but for alice: least loaded is slot 1 anyway; take n2 down to see the filter.
    st.set_node(1, node("n2", false));
    assert!(
        st.ready_id(1).is_none(),
        "a slot on a down node is not ready"
    );
    let d = st.choose("bob", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 0 })));
}

#[test]
fn a_pinned_user_of_a_down_node_waits_for_it() {
    let mut st = two_nodes(true);
    st.set_node(0, node("n1", false));
    let d = st.choose("alice", &nobody, Instant::now());
    assert_eq!(d, Err(AssignError::NodeDown("n1".into())));
    // Users of the other node are not affected.
    let d = st.choose("bob", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
}

#[test]
fn the_user_comes_back_to_the_same_slot_when_the_node_returns() {
    let mut st = two_nodes(true);
    st.set_node(0, node("n1", false));
    st.set_node(0, node("n1", true));
    let d = st.choose("alice", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::Sticky { idx: 0 })));
}

#[test]
fn with_shared_homes_a_user_of_a_down_node_moves() {
    let mut st = two_nodes(false);
    st.set_node(0, node("n1", false));
    let d = st.choose("alice", &nobody, Instant::now());
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
}

/// Slot 0 refused for its volume until `until`.
fn wrong_volume(st: &mut State, until: Instant) {
    let err = SlotError {
        docker_unavailable: false,
        wrong_volume: true,
        message: "slot 0 meets another volume".into(),
    };
    st.mark_failed(0, err, until);
}

#[test]
fn a_pinned_user_whose_slot_meets_another_volume_waits_for_it() {
    let now = Instant::now();
    let later = now + Duration::from_secs(10);
    let mut st = two_nodes(true);
    wrong_volume(&mut st, later);
    let d = st.choose("alice", &nobody, now);
    let refusal = AssignError::WrongVolume("slot 0 meets another volume".into());
    assert_eq!(d, Err(refusal));
    // Newcomers go to the other slot; once the refusal's backoff ends, the slot is checked
    // again by the user's own placement.
    let d = st.choose("bob", &nobody, now);
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
    let d = st.choose("alice", &nobody, later);
    assert_eq!(d, Ok(Choice::Go(Decision::Sticky { idx: 0 })));
}

#[test]
fn with_shared_homes_a_user_whose_slot_meets_another_volume_moves() {
    let now = Instant::now();
    let mut st = two_nodes(false);
    wrong_volume(&mut st, now + Duration::from_secs(10));
    let d = st.choose("alice", &nobody, now);
    assert_eq!(d, Ok(Choice::Go(Decision::New { idx: 1 })));
}

#[test]
fn no_ready_node_at_all_is_no_container() {
    let mut st = two_nodes(false);
    st.set_node(0, node("n1", false));
    st.set_node(1, node("n2", false));
    let d = st.choose("bob", &nobody, Instant::now());
    assert_eq!(d, Err(AssignError::NoContainer));
}

#[test]
fn a_slot_made_ready_keeps_what_was_known_of_its_node_s_relay() {
    let mut st = two_nodes(false);
    let with_relay = |relay| {
        node("a", true).map(|n| SlotNode {
            relay: Some(relay),
            ..n
        })
    };
    st.set_node(0, with_relay(false));
    // Made ready again: the orchestrator names the node, not its relay.
    st.set_node(0, node("a", true));
    assert_eq!(st.slots[0].node.as_ref().unwrap().relay, Some(false));
    // Another node: nothing is known of its relay.
    st.set_node(0, node("b", true));
    assert_eq!(st.slots[0].node.as_ref().unwrap().relay, None);
    st.set_node(0, with_relay(true));
    assert_eq!(st.slots[0].node.as_ref().unwrap().relay, Some(true));
}
