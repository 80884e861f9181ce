//! The operator's records on the Swarm: blocks and access keys.

use super::*;

#[test]
fn blocks_are_kept_replaced_and_removed() {
    let pool = TestPool::new("blocks");
    behaviour::blocks_are_kept_replaced_and_removed(|| pool.store());
}

#[test]
fn an_access_key_names_one_identity() {
    let pool = TestPool::new("keys");
    let mut s = behaviour::an_access_key_names_one_identity(|| pool.store());
    assert!(s.remove_access_key("anon-2").expect("remove"));
    assert_eq!(s.identity_for_key("k2").expect("gone"), None);
}
