//! The nodes under the slots, on an orchestrator with several: which slots' nodes are down, and
//! whether a user must wait for its node rather than be placed elsewhere.

use super::super::orchestrator::SlotNode;
use super::State;

impl State {
    /// The node that is down under `username`'s slot, when the user's home is pinned there.
    pub(super) fn pinned_node_down(&self, username: &str) -> Option<String> {
        let idx = self.users.get(username)?.slot?;
        let node = self.slots[idx].node.as_ref()?;
        (self.pinned && !node.ready).then(|| node.name.clone())
    }

    /// The slot's node (or its agent) does not answer although the orchestrator may not know
    /// yet: it counts as down until the orchestrator's next word on it.
    pub fn mark_node_down(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        s.ready = false;
        let node = s.node.get_or_insert_with(|| SlotNode {
            name: "(unknown)".into(),
            ready: false,
        });
        node.ready = false;
    }

    /// Records the node of slot `idx`; a node that is not ready makes the slot unready too.
    pub fn set_node(&mut self, idx: usize, node: Option<SlotNode>) {
        let s = &mut self.slots[idx];
        if node.as_ref().is_some_and(|n| !n.ready) {
            s.ready = false;
        }
        s.node = node;
    }
}
