//! What every [`Store`] must do, written once and run against each implementation by its own
//! tests: each check takes a function that opens the store under test (the same state each time).

use super::*;

pub(super) fn assignment<'a>(
    id: &'a str,
    user: &'a str,
    container: &'a str,
    evicted: Option<&'a str>,
) -> NewAssignment<'a> {
    NewAssignment {
        identity_hash: id,
        username: user,
        container,
        last_seen: 100,
        evicted,
    }
}

/// Last-seen times only.
pub(super) fn seen(times: &[(&str, i64)]) -> Touches {
    Touches {
        seen: times.iter().map(|(u, t)| (u.to_string(), *t)).collect(),
        active: Vec::new(),
    }
}

/// Activity times only.
pub(super) fn active(times: &[(&str, i64)]) -> Touches {
    Touches {
        seen: Vec::new(),
        active: times.iter().map(|(u, t)| (u.to_string(), *t)).collect(),
    }
}

pub(super) fn user(s: &dyn Store, name: &str) -> UserRecord {
    s.users()
        .expect("users")
        .into_iter()
        .find(|u| u.username == name)
        .unwrap_or_else(|| panic!("{name} not stored"))
}

/// UIDs start at [`FIRST_UID`], one per new user; a known user keeps its UID when placed again.
/// Returns the store and the second user's record, for the caller to delete it its own way and
/// check the UID is not handed out again.
pub(super) fn uids_start_at_the_first_and_stay<S: Store>(open: impl Fn() -> S) -> (S, UserRecord) {
    let mut s = open();
    let a = s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    let b = s.assign(&assignment("hb", "ub", "c-1", None)).expect("b");
    assert_eq!((a.uid, b.uid), (FIRST_UID, FIRST_UID + 1));
    let a2 = s.assign(&assignment("ha", "ua", "c-1", None)).expect("a2");
    assert_eq!(a2.uid, a.uid);
    assert_eq!(a2.container.as_deref(), Some("c-1"));
    (s, b)
}

/// After the deletion of the newest user: the next new user gets a fresh UID.
pub(super) fn a_deleted_users_uid_is_not_reused(s: &mut dyn Store) {
    let c = s.assign(&assignment("hc", "uc", "c-0", None)).expect("c");
    assert_eq!(c.uid, FIRST_UID + 2);
}

/// Users, their containers, times and the UID counter survive a reopen (a server restart).
pub(super) fn state_survives_reopen<S: Store>(open: impl Fn() -> S) {
    let record = ContainerRecord {
        slot: 0,
        name: "c-0".into(),
        id: "abc".into(),
    };
    {
        let mut s = open();
        s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
        s.save_container(&record).expect("container");
        s.touch(&seen(&[("ua", 500), ("nobody", 9)]))
            .expect("touch");
    }
    let mut s = open();
    let users = s.users().expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].last_seen, 500);
    assert_eq!(users[0].container.as_deref(), Some("c-0"));
    assert_eq!(s.containers().expect("containers"), vec![record]);
    let b = s.assign(&assignment("hb", "ub", "c-0", None)).expect("b");
    assert_eq!(b.uid, FIRST_UID + 1, "counter persisted");
}

pub(super) fn touch_never_moves_last_seen_back<S: Store>(open: impl Fn() -> S) {
    let mut s = open();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    s.touch(&seen(&[("ua", 50)])).expect("touch");
    assert_eq!(user(&s, "ua").last_seen, 100);
    assert_eq!(user(&open(), "ua").last_seen, 100);
}

/// An eviction and the newcomer's placement are kept together; a placement that fails (a name
/// clash) evicts no one.
pub(super) fn eviction_and_assignment_go_together<S: Store>(open: impl Fn() -> S) {
    let mut s = open();
    let a = s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    let b = s
        .assign(&assignment("hb", "ub", "c-0", Some("ua")))
        .expect("b");
    assert_eq!(b.container.as_deref(), Some("c-0"));
    let ua = user(&open(), "ua");
    assert_eq!(ua.container, None, "slot dropped");
    assert_eq!(ua.uid, a.uid, "account and UID kept");
    s.assign(&assignment("hc", "uc", "c-1", None)).expect("c");
    let err = s.assign(&assignment("hx", "ub", "c-1", Some("uc")));
    assert!(err.is_err(), "duplicate username must fail");
    assert_eq!(user(&s, "uc").container.as_deref(), Some("c-1"));
}

/// A slot's record is replaced by the next container saved for it; slots are listed in order.
pub(super) fn container_names_follow_slots<S: Store>(open: impl Fn() -> S) -> S {
    let mut s = open();
    s.save_container(&record(0, "c-0", "a")).expect("0");
    s.save_container(&record(1, "c-1", "b")).expect("1");
    s.save_container(&record(0, "c-0", "c"))
        .expect("0 replaced");
    assert_eq!(
        open().containers().expect("list"),
        vec![record(0, "c-0", "c"), record(1, "c-1", "b")]
    );
    s
}

pub(super) fn record(slot: usize, name: &str, id: &str) -> ContainerRecord {
    ContainerRecord {
        slot,
        name: name.into(),
        id: id.into(),
    }
}

/// Activity moves only forward, survives a reopen, and idle accounts come oldest first.
pub(super) fn activity_is_kept_and_idle_accounts_are_listed_oldest_first<S: Store>(
    open: impl Fn() -> S,
) {
    let mut s = open();
    for (h, u) in [("ha", "ua"), ("hb", "ub"), ("hc", "uc")] {
        s.assign(&assignment(h, u, "c-0", None)).expect("assign");
    }
    s.touch(&active(&[("ua", 900), ("ub", 300), ("nobody", 1)]))
        .expect("touch");
    s.touch(&active(&[("ua", 200)])).expect("never back");
    drop(s);
    let s = open();
    let idle: Vec<_> = s
        .accounts_idle_since(500)
        .expect("idle")
        .into_iter()
        .map(|u| (u.username, u.last_activity))
        .collect();
    assert_eq!(idle, vec![("uc".to_string(), 100), ("ub".to_string(), 300)]);
    assert!(s.accounts_idle_since(50).expect("none").is_empty());
}

/// Blocks: one per kind and value (a second replaces the reason), kept across a reopen, removed
/// once; the pool's own records are not disturbed by them.
pub(super) fn blocks_are_kept_replaced_and_removed<S: Store + OperatorStore>(open: impl Fn() -> S) {
    let mut s = open();
    s.add_block(BlockKind::Identity, "abc", "first")
        .expect("add");
    s.add_block(BlockKind::Identity, "abc", "second")
        .expect("replace");
    s.add_block(BlockKind::Address, "abc", "other kind")
        .expect("add");
    s.add_block(BlockKind::Address, "192.0.2.0/24", "a network")
        .expect("add");
    drop(s);
    let mut s = open();
    let blocks = s.blocks().expect("blocks");
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    let id = blocks.iter().find(|b| b.kind == BlockKind::Identity);
    assert_eq!(id.map(|b| b.reason.as_str()), Some("second"));
    assert!(s.remove_block(BlockKind::Identity, "abc").expect("remove"));
    assert!(!s.remove_block(BlockKind::Identity, "abc").expect("gone"));
    let left: Vec<_> = s
        .blocks()
        .expect("blocks")
        .into_iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(left, vec![BlockKind::Address, BlockKind::Address]);
    assert!(s.users().expect("users").is_empty());
}

/// Access keys: a new key replaces the identity's old one, a key taken over by another identity
/// names only that one, across a reopen. Returns the reopened store.
pub(super) fn an_access_key_names_one_identity<S: OperatorStore>(open: impl Fn() -> S) -> S {
    let mut s = open();
    s.set_access_key("anon-1", "k1").expect("set");
    assert_eq!(
        s.identity_for_key("k1").expect("get").as_deref(),
        Some("anon-1")
    );
    s.set_access_key("anon-1", "k2").expect("rotate");
    assert_eq!(s.identity_for_key("k1").expect("old"), None);
    s.set_access_key("anon-2", "k2").expect("take");
    drop(s);
    let s = open();
    assert_eq!(
        s.identity_for_key("k2").expect("get").as_deref(),
        Some("anon-2")
    );
    assert!(!s.has_access_key("anon-1").expect("lost"));
    assert!(s.has_access_key("anon-2").expect("has"));
    s
}
