//! The pool's in-memory state: the store's users, each container's readiness and accounts, and
//! whose placement is under way; a returning user is placed from here with no Docker or disk I/O.
//! Synchronous and cheap: held under a plain mutex, never across an `.await`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::assign::{self, AssignError, Assignment, ContainerSlot, Decision};
use super::store::{Touches, UserRecord};
use super::{account_names, home_of, Account, PoolConfig, PoolStats};

pub(crate) use slots::{SlotError, SlotState};

/// How long a user just placed counts as live although the caller has not bound its session yet.
/// The web layer binds right after `place` returns, with no await in between, so this only has to
/// cover a thread being descheduled; a newcomer that would evict such a user waits this out.
pub(crate) const PLACED_GRACE: Duration = Duration::from_secs(2);

/// A known user.
#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    pub uid: u32,
    /// Slot index holding the user, if any.
    pub slot: Option<usize>,
    /// Slot index whose volume holds the user's home (kept when it loses its slot), if known.
    pub home: Option<usize>,
    /// The home's slot when the store names one the pool no longer has (`MAX_CONTAINERS` was
    /// lowered): the files are on that slot's node, where no slot can take the user now.
    pub home_gone: Option<String>,
    pub last_seen: i64,
}

/// What to do for a placement that needs the assigner (see [`State::choose`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Carry out this decision. An evicted user has already lost its slot here (so that it cannot
    /// be placed warm meanwhile); give it back with [`State::restore_slot`] if the eviction fails.
    Go(Decision),
    /// Every slot is held by users who are live or were placed just now, and some of the latter
    /// may not be live after all (a session that ended at once): ask again at this instant.
    RetryAt(Instant),
}

/// The whole mirror.
pub(crate) struct State {
    pub slots: Vec<SlotState>,
    pub users: HashMap<String, UserEntry>,
    /// Last-seen times not yet written to the store.
    pub dirty: HashMap<String, i64>,
    /// Activity times not yet written to the store.
    active: HashMap<String, i64>,
    /// The account of every known identity (hex SHA-256 -> username): the name is looked up, not
    /// derived, because an identity whose usual name was taken has a longer one.
    by_identity: HashMap<String, String>,
    /// Users whose placement is under way (number of calls): never evicted.
    placing: HashMap<String, usize>,
    /// Users whose placement was answered recently: never evicted until then (see
    /// [`PLACED_GRACE`]), unless the caller's predicate already shows them live.
    placed: HashMap<String, Instant>,
    capacity: usize,
    /// Homes stay on their slot's node: a user whose node is down waits for it.
    pub pinned: bool,
}

impl State {
    /// The state after a start: users from the store, every slot not yet ready.
    pub fn new(cfg: &PoolConfig, users: Vec<UserRecord>) -> State {
        let slot_of: HashMap<String, usize> = (0..cfg.max_containers)
            .map(|i| (cfg.container_name(i), i))
            .collect();
        let by_identity = users
            .iter()
            .map(|u| (u.identity_hash.clone(), u.username.clone()))
            .collect();
        let users = users
            .into_iter()
            .map(|u| {
                let slot_named =
                    |c: &Option<String>| c.as_ref().and_then(|c| slot_of.get(c).copied());
                let home = slot_named(&u.home);
                let entry = UserEntry {
                    uid: u.uid,
                    slot: slot_named(&u.container),
                    home,
                    home_gone: u.home.filter(|_| home.is_none()),
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
            active: HashMap::new(),
            by_identity,
            placing: HashMap::new(),
            placed: HashMap::new(),
            capacity: cfg.users_per_container,
            pinned: false,
        }
    }

    /// The account name of the identity with hex SHA-256 `hash`, if it has one.
    pub fn username_of(&self, hash: &str) -> Option<&str> {
        self.by_identity.get(hash).map(String::as_str)
    }

    /// The account for identity `hash`: its own if it has one, else the first of its
    /// [`account_names`] that no other identity holds. `None` only if every one is taken.
    pub fn account_for(&self, hash: &str) -> Option<String> {
        if let Some(name) = self.username_of(hash) {
            return Some(name.to_string());
        }
        account_names(hash).find(|name| !self.users.contains_key(name))
    }

    /// The fast path: a placement for identity `hash` if its slot's container is ready and its
    /// account known there; records the visit (`now`: Unix seconds) and protects the slot from
    /// eviction until the caller has bound the session (`at`: now).
    pub fn warm(&mut self, hash: &str, now: i64, at: Instant) -> Option<Account> {
        let username = self.by_identity.get(hash)?;
        let user = self.users.get_mut(username)?;
        let slot = &self.slots[user.slot?];
        if !slot.ready || !slot.accounts.contains(username) {
            return None;
        }
        let placement = Account {
            container_name: slot.name.clone(),
            container_id: slot.id.clone()?,
            username: username.to_string(),
            uid: user.uid,
            home: home_of(username),
        };
        user.last_seen = user.last_seen.max(now);
        self.dirty.insert(username.to_string(), user.last_seen);
        self.active.insert(username.to_string(), user.last_seen);
        self.placed.insert(username.to_string(), at + PLACED_GRACE);
        Some(placement)
    }

    /// A placement of `username` starts: its slot is not given away until [`State::end_placing`].
    pub fn begin_placing(&mut self, username: &str) {
        *self.placing.entry(username.to_string()).or_default() += 1;
    }

    /// Whether a placement of `username` is under way.
    pub fn is_placing(&self, username: &str) -> bool {
        self.placing.contains_key(username)
    }

    /// A placement of `username` ended; if it succeeded at `placed_at`, the slot stays protected
    /// for [`PLACED_GRACE`] so that the caller can bind the session.
    pub fn end_placing(&mut self, username: &str, placed_at: Option<Instant>) {
        if let Some(n) = self.placing.get_mut(username) {
            *n -= 1;
            if *n == 0 {
                self.placing.remove(username);
            }
        }
        if let Some(at) = placed_at {
            self.placed.insert(username.to_string(), at + PLACED_GRACE);
        }
    }

    /// Runs the assigner for `username`, treating users whose placement is under way or was just
    /// answered as live: a placement that loses a race to them gets the refusal it would have had
    /// once their sessions are bound. An evicted user loses its slot here at once.
    pub fn choose(
        &mut self,
        username: &str,
        live: &dyn Fn(&str) -> bool,
        now: Instant,
    ) -> Result<Choice, AssignError> {
        // A user the caller shows live needs no protection any more.
        self.placed.retain(|u, until| *until > now && !live(u));
        let guarded =
            |u: &str| live(u) || self.placing.contains_key(u) || self.placed.contains_key(u);
        match self.decide(username, &guarded, now) {
            Ok(d) => {
                if let Decision::Evict { evicted_user, .. } = &d {
                    self.take_slot(evicted_user);
                }
                Ok(Choice::Go(d))
            }
            Err(AssignError::PoolFull) => self
                .retry_at(username, live, now)
                .ok_or(AssignError::PoolFull),
            Err(e) => Err(e),
        }
    }

    /// When a refused placement should ask again: only if a slot would be free to take once the
    /// just-placed users' protection ends (they may have no session after all).
    fn retry_at(
        &self,
        username: &str,
        live: &dyn Fn(&str) -> bool,
        now: Instant,
    ) -> Option<Choice> {
        let unprotected = |u: &str| live(u) || self.placing.contains_key(u);
        self.decide(username, &unprotected, now).ok()?;
        self.placed.values().min().map(|t| Choice::RetryAt(*t))
    }

    /// Takes `username`'s slot away (an eviction in progress).
    fn take_slot(&mut self, username: &str) {
        if let Some(u) = self.users.get_mut(username) {
            u.slot = None;
        }
    }

    /// Gives `username` its slot `idx` back (an eviction failed).
    pub fn restore_slot(&mut self, username: &str, idx: usize) {
        if let Some(u) = self.users.get_mut(username) {
            u.slot.get_or_insert(idx);
        }
    }

    /// Whether the assigner may use a slot (not recently failed to provision, not on a node
    /// that is down).
    fn slot_alive(&self, idx: usize, now: Instant) -> bool {
        let s = &self.slots[idx];
        s.down_until.is_none_or(|t| t <= now) && s.node.as_ref().is_none_or(|n| n.ready)
    }

    /// Runs the assigner over the current state.
    pub fn decide(
        &self,
        username: &str,
        has_live_session: &dyn Fn(&str) -> bool,
        now: Instant,
    ) -> Result<Decision, AssignError> {
        if let Some(refusal) = self.pinned_refusal(username, now) {
            return Err(refusal);
        }
        let volumes = self.volumes();
        let containers: Vec<ContainerSlot> = (0..self.slots.len())
            .map(|index| ContainerSlot {
                index,
                alive: self.slot_alive(index, now),
                capacity: self.capacity,
                volume: volumes[index],
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
        if let Some(refusal) = self.home_out_of_pool(username) {
            return Err(refusal);
        }
        let home = self.home_slot(username).map(|idx| volumes[idx]);
        match assign::assign(&containers, &assignments, has_live_session, username, home) {
            Err(AssignError::HomeUnavailable) => Err(self.home_refusal(username)),
            other => other,
        }
    }

    /// Records a persisted placement: `rec` now holds a slot in `idx`; `evicted` lost its slot.
    pub fn apply(&mut self, rec: &UserRecord, idx: usize, evicted: Option<&str>) {
        if let Some(e) = evicted.and_then(|name| self.users.get_mut(name)) {
            e.slot = None;
        }
        let entry = UserEntry {
            uid: rec.uid,
            slot: Some(idx),
            home: Some(idx),
            home_gone: None,
            last_seen: rec.last_seen,
        };
        self.users.insert(rec.username.clone(), entry);
        self.by_identity
            .insert(rec.identity_hash.clone(), rec.username.clone());
    }

    /// Records a visit of a known user (written to the store later).
    pub fn touch(&mut self, username: &str, now: i64) {
        if let Some(u) = self.users.get_mut(username) {
            u.last_seen = u.last_seen.max(now);
            self.dirty.insert(username.to_string(), u.last_seen);
        }
    }

    /// Records activity of an account at `now` (written to the store later).
    pub fn note_activity(&mut self, username: &str, now: i64) {
        if self.users.contains_key(username) {
            let at = self.active.entry(username.to_string()).or_default();
            *at = (*at).max(now);
        }
    }

    /// Takes the last-seen and activity times to write to the store.
    pub fn take_dirty(&mut self) -> Touches {
        Touches {
            seen: self.dirty.drain().collect(),
            active: self.active.drain().collect(),
        }
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

mod nodes;
mod slots;

#[cfg(test)]
mod home_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;
