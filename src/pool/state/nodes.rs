//! The nodes under the slots, on an orchestrator with several: which slots share a node's volume,
//! which nodes are down, and whether a user must wait for its home's node (or its own volume)
//! rather than be placed elsewhere.

use std::collections::HashMap;
use std::time::Instant;

use super::super::assign::AssignError;
use super::super::orchestrator::SlotNode;
use super::State;

impl State {
    /// Why `username` must wait for its slot rather than be placed elsewhere, when its home is
    /// pinned to the slot's node: the node is down, or the slot met a volume that is not its
    /// own (and is still out of the assigner's view at `now`).
    pub(super) fn pinned_refusal(&self, username: &str, now: Instant) -> Option<AssignError> {
        let slot = &self.slots[self.home_slot(username)?];
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

    /// Whether `username` may only go to the node holding its home (homes are pinned to nodes,
    /// and it has one): its refusals then speak of that node, not of the whole pool.
    pub fn bound_to_home(&self, username: &str) -> bool {
        self.home_slot(username).is_some()
    }

    /// The slot whose volume holds `username`'s home, when homes are pinned to nodes: the slot
    /// of its last placement, which it keeps when evicted. `None` for a newcomer.
    pub(super) fn home_slot(&self, username: &str) -> Option<usize> {
        if !self.pinned {
            return None;
        }
        let user = self.users.get(username)?;
        user.home
            .or(user.slot)
            .filter(|&idx| idx < self.slots.len())
    }

    /// The refusal for a user whose home is on a slot the pool no longer has: placed anywhere
    /// it would get an empty home, so it waits, and the operator is told why.
    pub(super) fn home_out_of_pool(&self, username: &str) -> Option<AssignError> {
        let user = self.users.get(username).filter(|_| self.pinned)?;
        let gone = user.home_gone.as_ref().filter(|_| user.home.is_none())?;
        Some(AssignError::HomeFailing(format!(
            "the user's files are on the volume of slot {gone}, which the pool no longer has \
             (MAX_CONTAINERS was lowered); the files are kept there: raise it again"
        )))
    }

    /// The volume of each slot as the assigner sees it: the lowest index of a slot on the same
    /// node (slots of one node share its volume); a slot whose node is not known has its own.
    pub(super) fn volumes(&self) -> Vec<usize> {
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut volumes = Vec::with_capacity(self.slots.len());
        for (idx, slot) in self.slots.iter().enumerate() {
            volumes.push(match &slot.node {
                Some(node) => *first.entry(node.id.as_str()).or_insert(idx),
                None => idx,
            });
        }
        volumes
    }

    /// Why `username` waits when no slot on its home's node can take users: the home slot's
    /// last provisioning error, if any.
    pub(super) fn home_refusal(&self, username: &str) -> AssignError {
        let error = self
            .home_slot(username)
            .and_then(|idx| self.slots[idx].last_error.as_ref());
        AssignError::HomeFailing(match error {
            Some(e) => e.message.clone(),
            None => "no slot on the node holding the user's files can take users now".into(),
        })
    }

    /// The slot's node (or its agent) does not answer although the orchestrator may not know
    /// yet: it counts as down until the orchestrator's next word on it.
    pub fn mark_node_down(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        s.ready = false;
        let name = &s.name;
        let node = s.node.get_or_insert_with(|| SlotNode {
            id: format!("(unknown node of {name})"),
            name: "(unknown)".into(),
            ready: false,
            relay: None,
        });
        node.ready = false;
    }

    /// Records the node of slot `idx`; a node that is not ready makes the slot unready too.
    pub fn set_node(&mut self, idx: usize, mut node: Option<SlotNode>) {
        let s = &mut self.slots[idx];
        if node.as_ref().is_some_and(|n| !n.ready) {
            s.ready = false;
        }
        // A slot made ready learns its node without the relay's state: the last word on the
        // same node's relay stands until the next look at the nodes.
        if let (Some(new), Some(old)) = (node.as_mut(), s.node.as_ref()) {
            if new.relay.is_none() && new.id == old.id {
                new.relay = old.relay;
            }
        }
        s.node = node;
    }
}
