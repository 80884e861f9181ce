//! Placements cut short by a crash or an error, homes kept across restarts, and the records of
//! other releases (older without homes, newer refused and left untouched).

use super::*;

#[test]
fn a_placement_cut_short_by_a_crash_is_finished_on_reopen() {
    let pool = TestPool::new("crash");
    let mut s = pool.store();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    s.assign(&assignment("hb", "ub", "c-1", None)).expect("b");
    // The server dies right after the first write of "ub takes ua's slot in c-0".
    let snap = s.snapshot().expect("snapshot");
    let taken = s
        .take_slot(&snap, &assignment("hb", "ub", "c-0", Some("ua")))
        .expect("first half");
    assert!(matches!(taken, Some((_, true))), "{taken:?}");
    drop(s);
    let s = pool.store();
    assert_eq!(user(&s, "ub").container.as_deref(), Some("c-0"));
    assert_eq!(user(&s, "ua").container, None, "eviction rolled forward");
    assert_eq!(user(&s, "ua").home.as_deref(), Some("c-0"), "home kept");
    let marks = s.snapshot().expect("snapshot").accounts;
    assert!(marks.iter().all(|a| a.evicts.is_none()), "mark dropped");
}

#[test]
fn an_evicted_users_home_is_kept_across_a_restart() {
    let pool = TestPool::new("home");
    let mut s = pool.store();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    s.assign(&assignment("hb", "ub", "c-0", Some("ua")))
        .expect("b");
    // Later touches rewrite ua's labels: the home stays.
    let t = unix_now() + 2 * TOUCH_GRANULARITY_SECS;
    s.touch(&active(&[("ua", t)])).expect("touch");
    drop(s);
    let mut s = pool.store();
    let ua = user(&s, "ua");
    assert_eq!((ua.container, ua.home.as_deref()), (None, Some("c-0")));
    assert_eq!(ua.last_activity, t, "the touch was written");
    assert_eq!(user(&s, "ub").home.as_deref(), Some("c-0"));
    // Placed again (in another slot of its node), the home follows the slot.
    s.assign(&assignment("ha", "ua", "c-1", None))
        .expect("a again");
    let ua = user(&pool.store(), "ua");
    assert_eq!(
        (ua.container.as_deref(), ua.home.as_deref()),
        (Some("c-1"), Some("c-1"))
    );
}

#[test]
fn an_account_of_a_release_without_homes_has_its_slot_for_home() {
    let pool = TestPool::new("nohome");
    pool.store();
    let mut old = UserRecord {
        identity_hash: "ho".into(),
        username: "uo".into(),
        uid: FIRST_UID + 3,
        container: Some("c-2".into()),
        home: None,
        last_seen: 1,
        last_activity: 1,
    };
    let labels = Account::labels(&pool.label, &old, None);
    pool.create_config(&format!("{}-uid-{}", pool.label, old.uid), labels);
    let mut s = pool.store();
    old.home = Some("c-2".into());
    assert_eq!(user(&s, "uo"), old);
    // Evicted with a home recorded from then on.
    s.assign(&assignment("hb", "ub", "c-2", Some("uo")))
        .expect("b");
    let uo = user(&pool.store(), "uo");
    assert_eq!((uo.container, uo.home.as_deref()), (None, Some("c-2")));
}

#[test]
fn a_placement_cut_short_by_an_error_is_finished_by_the_next() {
    let pool = TestPool::new("cutshort");
    let mut s = pool.store();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    let snap = s.snapshot().expect("snapshot");
    let first = assignment("hb", "ub", "c-0", Some("ua"));
    assert!(s.take_slot(&snap, &first).expect("first half").is_some());
    // The same server goes on placing someone else: the half-done eviction is finished first.
    s.assign(&assignment("hc", "uc", "c-1", None)).expect("c");
    assert_eq!(user(&s, "ua").container, None);
    assert_eq!(user(&s, "ub").container.as_deref(), Some("c-0"));
    let marks = s.snapshot().expect("snapshot").accounts;
    assert!(marks.iter().all(|a| a.evicts.is_none()), "mark dropped");
}

#[test]
fn records_of_a_newer_release_are_refused_and_left_untouched() {
    let pool = TestPool::new("newer");
    pool.store()
        .assign(&assignment("ha", "ua", "c-0", None))
        .expect("a");
    let newer = UserRecord {
        identity_hash: "hz".into(),
        username: "uz".into(),
        uid: FIRST_UID + 7,
        container: Some("c-0".into()),
        home: Some("c-0".into()),
        last_seen: 1,
        last_activity: 1,
    };
    let mut labels = Account::labels(&pool.label, &newer, None);
    labels.insert(LABEL_SCHEMA.into(), (SWARM_SCHEMA_VERSION + 1).to_string());
    labels.insert(LABEL_KIND.into(), "something-new".into());
    pool.create_config(&format!("{}-uid-{}", pool.label, newer.uid), labels);
    let before = pool.versions();
    let err = pool.open().err().expect("must refuse");
    assert!(matches!(err, StoreError::SwarmTooNew { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("newer termpool") && msg.contains("left untouched"),
        "{msg}"
    );
    assert_eq!(pool.versions(), before, "not one record changed");
}
