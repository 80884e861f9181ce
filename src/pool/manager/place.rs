//! How [`Pool::place`] decides: the assigner's choice under one lock and persisted there, then
//! carried out outside it (an evicted user's processes are ended in the background: `evict`).

use std::sync::Arc;
use std::time::Instant;

use super::super::assign::{AssignError, Decision};
use super::super::state::{Choice, State};
use super::super::store::{unix_now, NewAssignment, UserRecord};
use super::super::{home_of, identity_hash, Account, PoolError};
use super::{blocking, Pool};

/// How many times a placement that finds every slot held by just-placed users waits for their
/// protection to end before it is refused.
const MAX_RETRIES: usize = 3;

/// What the placement lock decided for a user, persisted.
struct Decided {
    username: String,
    uid: u32,
    idx: usize,
    /// The user whose slot `idx` this was, whose processes there are still to end.
    evicted: Option<String>,
}

impl Pool {
    /// Places `identity`'s sessions: picks (or keeps) its container, persists that, makes sure
    /// the container runs with hidepid and the account exists there. `has_live_session` takes a
    /// Linux username. A returning user whose container is known to be ready costs no Docker call
    /// and no disk write.
    ///
    /// The user's slot is not given to anyone else while this runs, nor for a moment after it
    /// returns: the caller is expected to bind a session at once, which `has_live_session` then
    /// shows.
    pub async fn place(
        self: &Arc<Self>,
        identity: &str,
        has_live_session: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<Account, PoolError> {
        let hash = identity_hash(identity);
        let mut flight = InFlight {
            pool: self,
            user: None,
            placed: false,
        };
        {
            let mut st = self.lock_state();
            if let Some(p) = st.warm(&hash, unix_now(), Instant::now()) {
                return Ok(p);
            }
            // A known user keeps its slot while it waits for its turn to be placed.
            if let Some(name) = st.username_of(&hash).map(String::from) {
                flight.begin(&mut st, &name);
            }
        }
        // A reap of this user's own processes left after an eviction must not end the session
        // about to start; a placement of someone else never waits for it.
        if let Some(name) = flight.user.clone() {
            self.wait_own_reap(&name).await;
        }
        let decided = self.decide(&hash, has_live_session, &mut flight).await?;
        if let Some(victim) = &decided.evicted {
            self.reap_evicted(decided.idx, victim.clone());
        }
        let placement = self.provision(&decided).await?;
        flight.placed = true;
        Ok(placement)
    }

    /// Makes sure the decided slot's container runs and the account exists in it.
    async fn provision(&self, decided: &Decided) -> Result<Account, PoolError> {
        let (username, uid, idx) = (decided.username.as_str(), decided.uid, decided.idx);
        self.wait_slot_cleared(idx).await?;
        // A container can die between the check and the account exec: one more round then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = self.ensure_slot(idx).await?;
            match self.ensure_account(idx, &id, username, uid).await {
                Ok(()) => {
                    self.lock_state().touch(username, unix_now());
                    return Ok(Account {
                        container_name: self.cfg.container_name(idx),
                        container_id: id,
                        username: username.to_string(),
                        uid,
                        home: home_of(username),
                    });
                }
                Err(e) if attempt < 2 => {
                    log::warn!("pool: placing {username}: {e}; checking the container again");
                    self.lock_state().mark_unready(idx, Some(&id));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Picks the account of identity `hash`, runs the assigner and persists its decision (a new
    /// slot, or an eviction), all under the placement lock, which nothing slow holds.
    async fn decide(
        &self,
        hash: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
        flight: &mut InFlight<'_>,
    ) -> Result<Decided, PoolError> {
        let mut retries = 0;
        loop {
            let serial = self.placing.lock().await;
            let (username, choice) = self.choose(hash, live, flight)?;
            match choice.map_err(|e| self.assign_error(e, &username))? {
                Choice::Go(decision) => {
                    let evicted = match &decision {
                        Decision::Evict { evicted_user, .. } => Some(evicted_user.clone()),
                        _ => None,
                    };
                    let (uid, idx) = self.carry_out(hash, &username, decision).await?;
                    return Ok(Decided {
                        username,
                        uid,
                        idx,
                        evicted,
                    });
                }
                Choice::RetryAt(at) if retries < MAX_RETRIES => {
                    retries += 1;
                    drop(serial);
                    tokio::time::sleep_until(at.into()).await;
                }
                Choice::RetryAt(_) => return Err(self.full(&username)),
            }
        }
    }

    /// The account of identity `hash` and the assigner's choice for it; a user that goes ahead is
    /// protected from eviction from then on (in the same critical section).
    fn choose(
        &self,
        hash: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
        flight: &mut InFlight<'_>,
    ) -> Result<(String, Result<Choice, AssignError>), PoolError> {
        let mut st = self.lock_state();
        // Never another identity's account: with every longer name taken too, no account at all.
        let username = st.account_for(hash).ok_or_else(|| {
            PoolError::Provision("every account name of this identity is taken".into())
        })?;
        let choice = st.choose(&username, live, Instant::now());
        if let Ok(Choice::Go(_)) = &choice {
            flight.begin(&mut st, &username);
        }
        Ok((username, choice))
    }

    /// Carries out an assigner decision for `username`; returns its UID and slot.
    async fn carry_out(
        &self,
        hash: &str,
        username: &str,
        decision: Decision,
    ) -> Result<(u32, usize), PoolError> {
        match decision {
            Decision::Sticky { idx } => {
                let uid = self.lock_state().users.get(username).map(|u| u.uid);
                match uid {
                    Some(uid) => Ok((uid, idx)),
                    // Unreachable in practice: sticky users are known.
                    None => self.assign_slot(hash, username, idx, None).await,
                }
            }
            Decision::New { idx } => self.assign_slot(hash, username, idx, None).await,
            Decision::Evict { idx, evicted_user } => {
                self.evict(hash, username, idx, &evicted_user).await
            }
        }
    }

    /// Gives `victim`'s slot in `idx` to `username` in the store. If that fails, `victim` keeps
    /// its slot and the newcomer gets the error. The victim's processes are ended afterwards,
    /// outside the placement lock ([`Pool::reap_evicted`]).
    async fn evict(
        &self,
        hash: &str,
        username: &str,
        idx: usize,
        victim: &str,
    ) -> Result<(u32, usize), PoolError> {
        let result = self.assign_slot(hash, username, idx, Some(victim)).await;
        match &result {
            Ok(_) => log::info!("pool: {victim} (idle) gives its slot in {idx} to {username}"),
            Err(_) => self.lock_state().restore_slot(victim, idx),
        }
        result
    }

    /// Ends every process account `username` runs in container `id`, and returns once none is
    /// left (evictions, idle reaping); its files stay. An account the pool never made has none.
    pub async fn end_processes(&self, id: &str, username: &str) -> Result<(), PoolError> {
        let Some(uid) = self.lock_state().users.get(username).map(|u| u.uid) else {
            return Ok(());
        };
        let idx = self
            .lock_state()
            .slots
            .iter()
            .position(|s| s.id.as_deref() == Some(id));
        self.orch.end_processes(idx, id, username, uid).await
    }

    /// Persists that `username` holds a slot in `idx` (and that `evicted` lost its own there);
    /// returns its UID and slot.
    async fn assign_slot(
        &self,
        hash: &str,
        username: &str,
        idx: usize,
        evicted: Option<&str>,
    ) -> Result<(u32, usize), PoolError> {
        let rec = self.persist(hash, username, idx, evicted).await?;
        self.lock_state().apply(&rec, idx, evicted);
        Ok((rec.uid, idx))
    }

    async fn persist(
        &self,
        hash: &str,
        username: &str,
        idx: usize,
        evicted: Option<&str>,
    ) -> Result<UserRecord, PoolError> {
        let (hash, user) = (hash.to_string(), username.to_string());
        let container = self.cfg.container_name(idx);
        let evicted = evicted.map(String::from);
        let now = unix_now();
        blocking(&self.store, move |s| {
            s.assign(&NewAssignment {
                identity_hash: &hash,
                username: &user,
                container: &container,
                last_seen: now,
                evicted: evicted.as_deref(),
            })
        })
        .await
    }

    /// The refusal when every slot `username` may take is held by a live user: the whole pool's,
    /// or that of the node holding its home.
    fn full(&self, username: &str) -> PoolError {
        match self.lock_state().bound_to_home(username) {
            true => PoolError::HomeFull,
            false => PoolError::PoolFull,
        }
    }

    /// The pool error for an assigner refusal of `username`.
    fn assign_error(&self, e: AssignError, username: &str) -> PoolError {
        match e {
            AssignError::PoolFull => self.full(username),
            AssignError::NodeDown(node) => PoolError::NodeDown(node),
            AssignError::WrongVolume(why) => PoolError::WrongVolume(why),
            AssignError::HomeFailing(why) => PoolError::HomeUnavailable(why),
            // `State::decide` gives the reason; without one, the same refusal.
            AssignError::HomeUnavailable => PoolError::HomeUnavailable(e.to_string()),
            AssignError::NoContainer => match self.lock_state().last_error() {
                Some(err) if err.docker_unavailable => PoolError::DockerUnavailable(err.message),
                Some(err) => PoolError::Provision(format!(
                    "no container of the pool is running: {}",
                    err.message
                )),
                None => PoolError::Provision("no container of the pool is running".into()),
            },
        }
    }
}

/// A placement under way: its user's slot is not given to anyone else until it ends, and for a
/// moment after it succeeded (until the caller's session is bound). Ends also when the caller
/// drops the placement's future.
struct InFlight<'a> {
    pool: &'a Pool,
    /// The account being placed, once known.
    user: Option<String>,
    /// The placement succeeded.
    placed: bool,
}

impl InFlight<'_> {
    /// Protects `username` (no-op if this placement protects it already).
    fn begin(&mut self, st: &mut State, username: &str) {
        if self.user.is_none() {
            st.begin_placing(username);
            self.user = Some(username.to_string());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let placed_at = self.placed.then(Instant::now);
            self.pool.lock_state().end_placing(&user, placed_at);
        }
    }
}
