//! The nodes under the slots, on an orchestrator with several: which slots' nodes are down, and
//! whether a user must wait for its node (or its own volume) rather than be placed elsewhere.

use std::time::Instant;

use super::super::assign::AssignError;
use super::super::orchestrator::SlotNode;
use super::State;

impl State {
    /// Why `username` must wait for its slot rather than be placed elsewhere, when its home is
    /// pinned to the slot's node: the node is down, or the slot met a volume that is not its
    /// own (and is still out of the assigner's view at `now`).
    pub(super) fn pinned_refusal(&self, username: &str, now: Instant) -> Option<AssignError> {
        if !self.pinned {
            return None;
        }
        let slot = &self.slots[self.users.get(username)?.slot?];
        if let Some(node) = slot.node.as_ref().filter(|n| !n.ready) {
            return Some(AssignError::NodeDown(node.name.clone()));
        }
        let waiting = slot.down_until.is_some_and(|t| t > now);
        let error = slot
            .last_error
            .as_ref()
            .filter(|e| e.wrong_volume && waiting)?;
        Some(AssignError::WrongVolume(error.message.clone()))
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
