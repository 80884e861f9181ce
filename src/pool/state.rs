//! The pool's in-memory state: a mirror of the store's users plus what is known about each
//! container right now (running with hidepid verified? which accounts exist in it?).
//!
//! It exists so that a returning user whose container is up and whose account is known is placed
//! with no Docker call and no disk write ([`State::warm`]): last-seen times are kept here and
//! written to the store in batches. Everything here is synchronous and cheap; it is held under a
//! plain mutex, never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::assign::{self, AssignError, Assignment, ContainerSlot, Decision};
use super::store::UserRecord;
use super::{home_of, Placement, PoolConfig, PoolStats};

/// A known user.
#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    pub uid: u32,
    /// Slot index holding the user, if any.
    pub slot: Option<usize>,
    pub last_seen: i64,
}

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
}

/// A provisioning failure remembered for a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotError {
    pub docker_unavailable: bool,
    pub message: String,
}

/// The whole mirror.
pub(crate) struct State {
    pub slots: Vec<SlotState>,
    pub users: HashMap<String, UserEntry>,
    /// Last-seen times not yet written to the store.
    pub dirty: HashMap<String, i64>,
    capacity: usize,
}

impl State {
    /// The state after a start: users from the store, every slot not yet ready.
    pub fn new(cfg: &PoolConfig, users: Vec<UserRecord>) -> State {
        let slot_of: HashMap<String, usize> = (0..cfg.max_containers)
            .map(|i| (cfg.container_name(i), i))
            .collect();
        let users = users
            .into_iter()
            .map(|u| {
                let slot = u.container.as_ref().and_then(|c| slot_of.get(c).copied());
                let entry = UserEntry {
                    uid: u.uid,
                    slot,
                    last_seen: u.last_seen,
                };
                (u.username, entry)
            })
            .collect();
        let slots = (0..cfg.max_containers)
            .map(|i| SlotState {
                name: cfg.container_name(i),
                ..SlotState::default()
            })
            .collect();
        State {
            slots,
            users,
            dirty: HashMap::new(),
            capacity: cfg.users_per_container,
        }
    }

    /// The fast path: a placement for `username` if its slot's container is ready and its account
    /// known there; records the visit.
    pub fn warm(&mut self, username: &str, now: i64) -> Option<Placement> {
        let user = self.users.get_mut(username)?;
        let slot = &self.slots[user.slot?];
        if !slot.ready || !slot.accounts.contains(username) {
            return None;
        }
        let placement = Placement {
            container_name: slot.name.clone(),
            container_id: slot.id.clone()?,
            username: username.to_string(),
            uid: user.uid,
            home: home_of(username),
        };
        user.last_seen = user.last_seen.max(now);
        self.dirty.insert(username.to_string(), user.last_seen);
        Some(placement)
    }

    /// Whether the assigner may use a slot (not recently failed to provision).
    fn slot_alive(&self, idx: usize, now: Instant) -> bool {
        self.slots[idx].down_until.is_none_or(|t| t <= now)
    }

    /// Runs the assigner over the current state.
    pub fn decide(
        &self,
        username: &str,
        has_live_session: &dyn Fn(&str) -> bool,
        now: Instant,
    ) -> Result<Decision, AssignError> {
        let containers: Vec<ContainerSlot> = (0..self.slots.len())
            .map(|index| ContainerSlot {
                index,
                alive: self.slot_alive(index, now),
                capacity: self.capacity,
            })
            .collect();
        let assignments: Vec<Assignment> = self
            .users
            .iter()
            .filter_map(|(name, u)| {
                u.slot.map(|container| Assignment {
                    user: name,
                    container,
                    last_seen: u.last_seen,
                })
            })
            .collect();
        assign::assign(&containers, &assignments, has_live_session, username)
    }

    /// Records a persisted placement: `rec` now holds a slot in `idx`; `evicted` lost its slot.
    pub fn apply(&mut self, rec: &UserRecord, idx: usize, evicted: Option<&str>) {
        if let Some(e) = evicted.and_then(|name| self.users.get_mut(name)) {
            e.slot = None;
        }
        let entry = UserEntry {
            uid: rec.uid,
            slot: Some(idx),
            last_seen: rec.last_seen,
        };
        self.users.insert(rec.username.clone(), entry);
    }

    /// Records a visit of a known user (written to the store later).
    pub fn touch(&mut self, username: &str, now: i64) {
        if let Some(u) = self.users.get_mut(username) {
            u.last_seen = u.last_seen.max(now);
            self.dirty.insert(username.to_string(), u.last_seen);
        }
    }

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

    /// Takes the last-seen times to write to the store.
    pub fn take_dirty(&mut self) -> Vec<(String, i64)> {
        self.dirty.drain().collect()
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            containers: self.slots.len(),
            containers_ready: self.slots.iter().filter(|s| s.ready).count(),
            users_assigned: self.users.values().filter(|u| u.slot.is_some()).count(),
            users_known: self.users.len(),
            capacity: self.slots.len() * self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
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
            last_seen: 10,
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
        assert!(st.warm("a", 20).is_none(), "slot not ready");
        st.mark_ready(0, "id0");
        assert!(st.warm("a", 20).is_none(), "account unknown");
        st.add_account(0, "id0", "a");
        let p = st.warm("a", 20).expect("warm");
        assert_eq!(
            (p.container_id.as_str(), p.uid, p.home.as_str()),
            ("id0", 7, "/workspace/a")
        );
        assert_eq!(st.take_dirty(), vec![("a".to_string(), 20)]);
        st.mark_dead_id("id0");
        assert!(st.warm("a", 30).is_none(), "container died");
        st.mark_ready(0, "id0-new");
        assert!(
            st.warm("a", 30).is_none(),
            "replaced container forgets accounts"
        );
        st.add_account(0, "stale-id", "a");
        assert!(
            !st.account_known(0, "a"),
            "accounts of an old container are ignored"
        );
    }

    #[test]
    fn failed_slot_is_gone_for_the_assigner_until_backoff_ends() {
        let mut st = State::new(&cfg(), vec![]);
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(5);
        let err = SlotError {
            docker_unavailable: false,
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
}
