//! The operator's records on the Swarm: blocks and access keys.

use super::*;

#[test]
fn blocks_are_kept_replaced_and_removed() {
    use crate::pool::store::BlockKind;
    let pool = TestPool::new("blocks");
    let mut s = pool.store();
    s.add_block(BlockKind::Identity, "abc", "first")
        .expect("add");
    s.add_block(BlockKind::Identity, "abc", "second")
        .expect("replace");
    s.add_block(BlockKind::Address, "abc", "other kind")
        .expect("add");
    s.add_block(BlockKind::Address, "192.0.2.0/24", "a network")
        .expect("add");
    drop(s);
    let mut s = pool.store();
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
    // The pool's own records are not disturbed by the operator's.
    assert!(s.users().expect("users").is_empty());
}

#[test]
fn an_access_key_names_one_identity() {
    let pool = TestPool::new("keys");
    let mut s = pool.store();
    s.set_access_key("anon-1", "k1").expect("set");
    assert_eq!(
        s.identity_for_key("k1").expect("get").as_deref(),
        Some("anon-1")
    );
    // A new key replaces the identity's old one.
    s.set_access_key("anon-1", "k2").expect("rotate");
    assert_eq!(s.identity_for_key("k1").expect("old"), None);
    // A key hash taken over by another identity names only that one.
    s.set_access_key("anon-2", "k2").expect("take");
    drop(s);
    let mut s = pool.store();
    assert_eq!(
        s.identity_for_key("k2").expect("get").as_deref(),
        Some("anon-2")
    );
    assert!(!s.has_access_key("anon-1").expect("lost"));
    assert!(s.has_access_key("anon-2").expect("has"));
    assert!(s.remove_access_key("anon-2").expect("remove"));
    assert_eq!(s.identity_for_key("k2").expect("gone"), None);
}
