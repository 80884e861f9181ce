use super::*;

fn cfg() -> PoolConfig {
    PoolConfig {
        max_containers: 2,
        users_per_container: 1,
        name_prefix: "t".into(),
        ..PoolConfig::default()
    }
}

fn rec(name: &str, container: Option<&str>, uid: u32) -> UserRecord {
    UserRecord {
        identity_hash: format!("h-{name}"),
        username: name.into(),
        uid,
        container: container.map(String::from),
        home: container.map(String::from),
        last_seen: 10,
        last_activity: 10,
    }
}

#[test]
fn users_of_unknown_containers_hold_no_slot() {
    let st = State::new(
        &cfg(),
        vec![rec("a", Some("t-1"), 1), rec("b", Some("t-9"), 2)],
    );
    assert_eq!(st.users["a"].slot, Some(1));
    assert_eq!(st.users["b"].slot, None);
    assert_eq!(st.stats().users_assigned, 1);
}

#[test]
fn warm_needs_ready_slot_and_known_account() {
    let mut st = State::new(&cfg(), vec![rec("a", Some("t-0"), 7)]);
    assert!(
        st.warm("h-a", 20, Instant::now()).is_none(),
        "slot not ready"
    );
    st.mark_ready(0, "id0");
    assert!(
        st.warm("h-a", 20, Instant::now()).is_none(),
        "account unknown"
    );
    st.add_account(0, "id0", "a");
    let p = st.warm("h-a", 20, Instant::now()).expect("warm");
    assert_eq!(
        (p.container_id.as_str(), p.uid, p.home.as_str()),
        ("id0", 7, "/workspace/a")
    );
    let touches = st.take_dirty();
    assert_eq!(touches.seen, vec![("a".to_string(), 20)]);
    assert_eq!(touches.active, vec![("a".to_string(), 20)]);
    st.mark_dead_id("id0");
    assert!(
        st.warm("h-a", 30, Instant::now()).is_none(),
        "container died"
    );
    st.mark_ready(0, "id0-new");
    assert!(
        st.warm("h-a", 30, Instant::now()).is_none(),
        "replaced container forgets accounts"
    );
    st.add_account(0, "stale-id", "a");
    assert!(
        !st.account_known(0, "a"),
        "accounts of an old container are ignored"
    );
}

#[test]
fn only_the_container_found_unusable_is_replaced() {
    let mut st = State::new(&cfg(), vec![]);
    st.mark_ready(0, "id0");
    st.mark_for_replacement(0, "older-id");
    assert_eq!(st.ready_id(0).as_deref(), Some("id0"), "another container");
    assert_eq!(st.to_replace(0), None);
    st.mark_for_replacement(0, "id0");
    assert_eq!(st.ready_id(0), None, "checked before the next admission");
    assert_eq!(st.to_replace(0).as_deref(), Some("id0"));
    st.mark_ready(0, "id0-new");
    assert_eq!(st.to_replace(0), None, "its successor is fine");
}

#[test]
fn failed_slot_is_gone_for_the_assigner_until_backoff_ends() {
    let mut st = State::new(&cfg(), vec![]);
    let now = Instant::now();
    let later = now + std::time::Duration::from_secs(5);
    let err = SlotError {
        docker_unavailable: false,
        wrong_volume: false,
        message: "boom".into(),
    };
    st.mark_failed(0, err, later);
    assert_eq!(
        st.decide("x", &|_| false, now),
        Ok(Decision::New { idx: 1 })
    );
    assert_eq!(
        st.decide("x", &|_| false, later),
        Ok(Decision::New { idx: 0 })
    );
    let outage = SlotError {
        docker_unavailable: true,
        wrong_volume: false,
        message: "down".into(),
    };
    st.mark_failed(1, outage, later);
    assert_eq!(
        st.decide("x", &|_| false, now),
        Ok(Decision::New { idx: 1 })
    );
    assert!(st.last_error().expect("error").docker_unavailable);
}

#[test]
fn an_identity_never_gets_another_identitys_account() {
    use crate::pool::{account_names, identity_hash};
    let hash = identity_hash("newcomer");
    let names: Vec<String> = account_names(&hash).collect();
    // Another identity already holds the newcomer's usual name (a 48-bit prefix collision).
    let mut taken = rec(&names[0], Some("t-0"), 7);
    taken.identity_hash = identity_hash("earlier");
    let mut st = State::new(&cfg(), vec![taken]);
    assert_eq!(
        st.account_for(&identity_hash("earlier")),
        Some(names[0].clone())
    );
    assert_eq!(
        st.account_for(&hash),
        Some(names[1].clone()),
        "the next longer name"
    );
    st.mark_ready(0, "id0");
    st.add_account(0, "id0", &names[0]);
    assert!(
        st.warm(&hash, 20, Instant::now()).is_none(),
        "not placed through the other identity's account"
    );
    // Once recorded, the longer name is the newcomer's for good.
    let mut mine = rec(&names[1], Some("t-1"), 8);
    mine.identity_hash = hash.clone();
    st.apply(&mine, 1, None);
    assert_eq!(st.account_for(&hash), Some(names[1].clone()));
    // With every name taken by others, no account at all rather than a shared one.
    let others = names.iter().enumerate().map(|(i, name)| {
        let mut r = rec(name, None, 10 + i as u32);
        r.identity_hash = format!("other-{i}");
        r
    });
    let st = State::new(&cfg(), others.collect());
    assert_eq!(st.account_for(&hash), None);
}

#[test]
fn a_recorded_name_is_kept_whatever_it_is() {
    // Users placed before longer names existed (or under any other rule) keep their account.
    let st = State::new(&cfg(), vec![rec("uolder", Some("t-0"), 7)]);
    assert_eq!(st.account_for("h-uolder"), Some("uolder".to_string()));
}

fn nobody(_: &str) -> bool {
    false
}

#[test]
fn users_being_placed_are_never_evicted() {
    let mut st = State::new(
        &cfg(),
        vec![rec("a", Some("t-0"), 1), rec("b", Some("t-1"), 2)],
    );
    let now = Instant::now();
    st.begin_placing("a");
    st.begin_placing("b");
    assert_eq!(st.choose("c", &nobody, now), Err(AssignError::PoolFull));
    // b's placement failed: its slot may go; a's is still under way.
    st.end_placing("b", None);
    let got = st.choose("c", &nobody, now);
    let want = Decision::Evict {
        idx: 1,
        evicted_user: "b".into(),
    };
    assert_eq!(got, Ok(Choice::Go(want)));
    assert_eq!(st.users["b"].slot, None, "the slot is taken at once");
    st.restore_slot("b", 1);
    assert_eq!(
        st.users["b"].slot,
        Some(1),
        "given back when the eviction fails"
    );
}

#[test]
fn users_just_placed_are_protected_until_their_session_is_bound() {
    let one_slot = PoolConfig {
        max_containers: 1,
        ..cfg()
    };
    let mut st = State::new(&one_slot, vec![rec("a", Some("t-0"), 1)]);
    st.mark_ready(0, "id0");
    st.add_account(0, "id0", "a");
    let t0 = Instant::now();
    st.begin_placing("a");
    st.end_placing("a", Some(t0));
    // Not live yet (the caller binds after `place` returns): a newcomer must wait.
    assert_eq!(
        st.choose("c", &nobody, t0),
        Ok(Choice::RetryAt(t0 + PLACED_GRACE))
    );
    // Bound: live, so refused for good.
    assert_eq!(
        st.choose("c", &|u| u == "a", t0),
        Err(AssignError::PoolFull)
    );
    // A warm placement protects the same way.
    assert!(st.warm("h-a", 20, t0).is_some());
    assert!(matches!(
        st.choose("c", &nobody, t0),
        Ok(Choice::RetryAt(_))
    ));
    // No session came after all: once the grace is over, the slot may go.
    let later = t0 + PLACED_GRACE + Duration::from_millis(1);
    let got = st.choose("c", &nobody, later);
    assert!(
        matches!(got, Ok(Choice::Go(Decision::Evict { .. }))),
        "{got:?}"
    );
    assert!(
        st.warm("h-a", 30, later).is_none(),
        "an evicted user is not placed warm"
    );
}

#[test]
fn eviction_moves_the_slot() {
    let mut st = State::new(
        &cfg(),
        vec![rec("a", Some("t-0"), 1), rec("b", Some("t-1"), 2)],
    );
    let d = st.decide("c", &|u| u == "b", Instant::now());
    let Ok(Decision::Evict { idx, evicted_user }) = d else {
        panic!("{d:?}")
    };
    assert_eq!((idx, evicted_user.as_str()), (0, "a"));
    st.apply(&rec("c", Some("t-0"), 3), idx, Some(&evicted_user));
    assert_eq!(st.users["a"].slot, None);
    assert_eq!(st.users["c"].slot, Some(0));
    assert_eq!(
        st.decide("a", &|_| true, Instant::now()),
        Err(AssignError::PoolFull)
    );
}
