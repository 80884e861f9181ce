//! Each slot's container as the pool last saw it: whether it is ready, which accounts exist in
//! it, and why provisioning it failed; kept so that a returning user needs no Docker call.

use std::collections::HashSet;
use std::time::Instant;

use super::super::orchestrator::SlotNode;
use super::State;

/// What is known about one slot's container.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    pub name: String,
    /// Docker id of the container last made ready in this slot.
    pub id: Option<String>,
    /// Running with hidepid verified: users may be admitted without asking Docker.
    pub ready: bool,
    /// Accounts known to exist in the container `id`.
    pub accounts: HashSet<String>,
    /// Provisioning failed: the assigner treats the slot as gone until then.
    pub down_until: Option<Instant>,
    /// The last provisioning error, for the answer when no slot is usable.
    pub last_error: Option<SlotError>,
    /// The container `id` runs but takes no session: it is removed rather than adopted again.
    pub replace: bool,
    /// The node holding the slot, on an orchestrator with several.
    pub node: Option<SlotNode>,
}

/// A provisioning failure remembered for a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotError {
    pub docker_unavailable: bool,
    /// The slot met a volume that is not its own.
    pub wrong_volume: bool,
    pub message: String,
}

impl State {
    /// The id of the slot's container if it is ready.
    pub fn ready_id(&self, idx: usize) -> Option<String> {
        let s = &self.slots[idx];
        s.ready.then(|| s.id.clone()).flatten()
    }

    /// The slot's container `id` is running with hidepid verified. A new id forgets the accounts.
    pub fn mark_ready(&mut self, idx: usize, id: &str) {
        let s = &mut self.slots[idx];
        if s.id.as_deref() != Some(id) {
            s.accounts.clear();
            s.id = Some(id.to_string());
        }
        s.ready = true;
        s.replace = false;
        s.down_until = None;
        s.last_error = None;
    }

    /// Provisioning of the slot failed; a slot-specific failure takes it out of the assigner's
    /// view until `until` (a Docker outage does not: moving users would not help).
    pub fn mark_failed(&mut self, idx: usize, err: SlotError, until: Instant) {
        let s = &mut self.slots[idx];
        s.ready = false;
        if !err.docker_unavailable {
            s.down_until = Some(until);
        }
        s.last_error = Some(err);
    }

    /// The container with this id stopped: its slot must be checked before the next admission.
    /// Returns the slot index if the id is one of the pool's current containers.
    pub fn mark_dead_id(&mut self, id: &str) -> Option<usize> {
        let idx = self
            .slots
            .iter()
            .position(|s| s.id.as_deref() == Some(id))?;
        self.slots[idx].ready = false;
        Some(idx)
    }

    /// The slot's container (if it is still `id`) must be checked before the next admission.
    pub fn mark_unready(&mut self, idx: usize, id: Option<&str>) {
        let s = &mut self.slots[idx];
        if id.is_none() || s.id.as_deref() == id {
            s.ready = false;
        }
    }

    /// The slot's container, if it is still `id`, must be replaced before the next admission.
    pub fn mark_for_replacement(&mut self, idx: usize, id: &str) {
        let s = &mut self.slots[idx];
        if s.id.as_deref() == Some(id) {
            s.ready = false;
            s.replace = true;
        }
    }

    /// The id of the slot's container if it must be replaced.
    pub fn to_replace(&self, idx: usize) -> Option<String> {
        let s = &self.slots[idx];
        s.replace.then(|| s.id.clone()).flatten()
    }

    /// Nothing is known any more (e.g. the Docker event stream broke).
    pub fn mark_all_unready(&mut self) {
        self.slots.iter_mut().for_each(|s| s.ready = false);
    }

    /// Whether an account is known to exist in the slot's current container.
    pub fn account_known(&self, idx: usize, username: &str) -> bool {
        self.slots[idx].accounts.contains(username)
    }

    /// Records that an account exists in container `id` (ignored if the slot moved on).
    pub fn add_account(&mut self, idx: usize, id: &str, username: &str) {
        let s = &mut self.slots[idx];
        if s.id.as_deref() == Some(id) {
            s.accounts.insert(username.to_string());
        }
    }

    /// The most telling provisioning error of any slot (Docker outages first).
    pub fn last_error(&self) -> Option<SlotError> {
        let errors = self.slots.iter().filter_map(|s| s.last_error.as_ref());
        let mut errors: Vec<&SlotError> = errors.collect();
        errors.sort_by_key(|e| !e.docker_unavailable);
        errors.first().map(|e| (*e).clone())
    }
}
