//! The pool's in-memory state: the store's users, each container's readiness and accounts, and
//! whose placement is under way; a returning user is placed from here with no Docker or disk I/O.
//! Synchronous and cheap: held under a plain mutex, never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::assign::{self, AssignError, Assignment, ContainerSlot, Decision};
use super::store::UserRecord;
use super::{account_names, home_of, Account, PoolConfig, PoolStats};

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
    /// The container `id` runs but takes no session: it is removed rather than adopted again.
    pub replace: bool,
}

/// A provisioning failure remembered for a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotError {
    pub docker_unavailable: bool,
    pub message: String,
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
    /// The account of every known identity (hex SHA-256 -> username): the name is looked up, not
    /// derived, because an identity whose usual name was taken has a longer one.
    by_identity: HashMap<String, String>,
    /// Users whose placement is under way (number of calls): never evicted.
    placing: HashMap<String, usize>,
    /// Users whose placement was answered recently: never evicted until then (see
    /// [`PLACED_GRACE`]), unless the caller's predicate already shows them live.
    placed: HashMap<String, Instant>,
    capacity: usize,
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
            by_identity,
            placing: HashMap::new(),
            placed: HashMap::new(),
            capacity: cfg.users_per_container,
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
        self.placed.insert(username.to_string(), at + PLACED_GRACE);
        Some(placement)
    }

    /// A placement of `username` starts: its slot is not given away until [`State::end_placing`].
    pub fn begin_placing(&mut self, username: &str) {
        *self.placing.entry(username.to_string()).or_default() += 1;
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
        assert!(
            st.warm("h-a", 20, Instant::now()).is_none(),
            "slot not ready"
        );
        st.mark_ready(0, "id0");
        assert!(
            st.warm("h-a", 20, Instant::now()).is_none(),
            "account unknown"
        );
        st.add_account(0, "id0", "a");
        let p = st.warm("h-a", 20, Instant::now()).expect("warm");
        assert_eq!(
            (p.container_id.as_str(), p.uid, p.home.as_str()),
            ("id0", 7, "/workspace/a")
        );
        assert_eq!(st.take_dirty(), vec![("a".to_string(), 20)]);
        st.mark_dead_id("id0");
        assert!(
            st.warm("h-a", 30, Instant::now()).is_none(),
            "container died"
        );
        st.mark_ready(0, "id0-new");
        assert!(
            st.warm("h-a", 30, Instant::now()).is_none(),
            "replaced container forgets accounts"
        );
        st.add_account(0, "stale-id", "a");
        assert!(
            !st.account_known(0, "a"),
            "accounts of an old container are ignored"
        );
    }

    #[test]
    fn only_the_container_found_unusable_is_replaced() {
        let mut st = State::new(&cfg(), vec![]);
        st.mark_ready(0, "id0");
        st.mark_for_replacement(0, "older-id");
        assert_eq!(st.ready_id(0).as_deref(), Some("id0"), "another container");
        assert_eq!(st.to_replace(0), None);
        st.mark_for_replacement(0, "id0");
        assert_eq!(st.ready_id(0), None, "checked before the next admission");
        assert_eq!(st.to_replace(0).as_deref(), Some("id0"));
        st.mark_ready(0, "id0-new");
        assert_eq!(st.to_replace(0), None, "its successor is fine");
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
    fn an_identity_never_gets_another_identitys_account() {
        use crate::pool::{account_names, identity_hash};
        let hash = identity_hash("newcomer");
        let names: Vec<String> = account_names(&hash).collect();
        // Another identity already holds the newcomer's usual name (a 48-bit prefix collision).
        let mut taken = rec(&names[0], Some("t-0"), 7);
        taken.identity_hash = identity_hash("earlier");
        let mut st = State::new(&cfg(), vec![taken]);
        assert_eq!(
            st.account_for(&identity_hash("earlier")),
            Some(names[0].clone())
        );
        assert_eq!(
            st.account_for(&hash),
            Some(names[1].clone()),
            "the next longer name"
        );
        st.mark_ready(0, "id0");
        st.add_account(0, "id0", &names[0]);
        assert!(
            st.warm(&hash, 20, Instant::now()).is_none(),
            "not placed through the other identity's account"
        );
        // Once recorded, the longer name is the newcomer's for good.
        let mut mine = rec(&names[1], Some("t-1"), 8);
        mine.identity_hash = hash.clone();
        st.apply(&mine, 1, None);
        assert_eq!(st.account_for(&hash), Some(names[1].clone()));
        // With every name taken by others, no account at all rather than a shared one.
        let others = names.iter().enumerate().map(|(i, name)| {
            let mut r = rec(name, None, 10 + i as u32);
            r.identity_hash = format!("other-{i}");
            r
        });
        let st = State::new(&cfg(), others.collect());
        assert_eq!(st.account_for(&hash), None);
    }

    #[test]
    fn a_recorded_name_is_kept_whatever_it_is() {
        // Users placed before longer names existed (or under any other rule) keep their account.
        let st = State::new(&cfg(), vec![rec("uolder", Some("t-0"), 7)]);
        assert_eq!(st.account_for("h-uolder"), Some("uolder".to_string()));
    }

    fn nobody(_: &str) -> bool {
        false
    }

    #[test]
    fn users_being_placed_are_never_evicted() {
        let mut st = State::new(
            &cfg(),
            vec![rec("a", Some("t-0"), 1), rec("b", Some("t-1"), 2)],
        );
        let now = Instant::now();
        st.begin_placing("a");
        st.begin_placing("b");
        assert_eq!(st.choose("c", &nobody, now), Err(AssignError::PoolFull));
        // b's placement failed: its slot may go; a's is still under way.
        st.end_placing("b", None);
        let got = st.choose("c", &nobody, now);
        let want = Decision::Evict {
            idx: 1,
            evicted_user: "b".into(),
        };
        assert_eq!(got, Ok(Choice::Go(want)));
        assert_eq!(st.users["b"].slot, None, "the slot is taken at once");
        st.restore_slot("b", 1);
        assert_eq!(
            st.users["b"].slot,
            Some(1),
            "given back when the eviction fails"
        );
    }

    #[test]
    fn users_just_placed_are_protected_until_their_session_is_bound() {
        let one_slot = PoolConfig {
            max_containers: 1,
            ..cfg()
        };
        let mut st = State::new(&one_slot, vec![rec("a", Some("t-0"), 1)]);
        st.mark_ready(0, "id0");
        st.add_account(0, "id0", "a");
        let t0 = Instant::now();
        st.begin_placing("a");
        st.end_placing("a", Some(t0));
        // Not live yet (the caller binds after `place` returns): a newcomer must wait.
        assert_eq!(
            st.choose("c", &nobody, t0),
            Ok(Choice::RetryAt(t0 + PLACED_GRACE))
        );
        // Bound: live, so refused for good.
        assert_eq!(
            st.choose("c", &|u| u == "a", t0),
            Err(AssignError::PoolFull)
        );
        // A warm placement protects the same way.
        assert!(st.warm("h-a", 20, t0).is_some());
        assert!(matches!(
            st.choose("c", &nobody, t0),
            Ok(Choice::RetryAt(_))
        ));
        // No session came after all: once the grace is over, the slot may go.
        let later = t0 + PLACED_GRACE + Duration::from_millis(1);
        let got = st.choose("c", &nobody, later);
        assert!(
            matches!(got, Ok(Choice::Go(Decision::Evict { .. }))),
            "{got:?}"
        );
        assert!(
            st.warm("h-a", 30, later).is_none(),
            "an evicted user is not placed warm"
        );
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
