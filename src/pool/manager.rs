//! [`Pool`]: the one object the server holds in container mode. It runs the assigner over the
//! in-memory state, persists decisions, keeps every slot's container running with hidepid, and
//! creates accounts on demand.
//!
//! Concurrency: decisions are serialised by one async mutex (so two newcomers never take the same
//! last slot); provisioning of a container is serialised per slot; the in-memory state sits under
//! a plain mutex that is never held across an `.await`. A user whose placement is under way or was
//! just answered is never evicted ([`InFlight`]): the caller only counts it live once its session
//! is bound. Background tasks (Docker events, a health check, last-seen flushing) hold only a
//! `Weak<Pool>` and are aborted when the pool is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bollard::models::EventActor;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::assign::{AssignError, Decision};
use super::provision::{self, short, LABEL_POOL};
use super::state::{Choice, SlotError, State};
use super::store::{unix_now, ContainerRecord, NewAssignment, Store, StoreError, UserRecord};
use super::{home_of, identity_hash, Placement, PoolConfig, PoolError, PoolStats};

/// How long a slot whose container could not be provisioned is skipped by the assigner.
const DOWN_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait between reconnection attempts of the Docker event stream.
const EVENTS_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How many times a placement that finds every slot held by just-placed users waits for their
/// protection to end before it is refused.
const MAX_RETRIES: usize = 3;

type SharedStore = Arc<Mutex<Box<dyn Store>>>;

/// The container pool. Create it with [`Pool::start`]; share the `Arc`.
pub struct Pool {
    cfg: PoolConfig,
    docker: Docker,
    image_id: String,
    store: SharedStore,
    state: Mutex<State>,
    /// Serialises assignment decisions and their persistence.
    placing: tokio::sync::Mutex<()>,
    /// Serialises provisioning per slot.
    slot_locks: Vec<tokio::sync::Mutex<()>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Connects to Docker, creates the volume, adopts this pool's running containers, creates the
    /// missing ones in parallel (each with hidepid verified), and starts the background tasks.
    /// Fails when Docker is unreachable, the image is missing, the store cannot be read, or no
    /// container at all could be made ready.
    pub async fn start(cfg: PoolConfig, store: Box<dyn Store>) -> Result<Arc<Pool>, PoolError> {
        validate(&cfg)?;
        let docker = provision::connect().await?;
        let image_id = provision::image_id(&docker, &cfg).await?;
        provision::ensure_volume(&docker, &cfg).await?;
        provision::ensure_network(&docker, &cfg).await?;
        let store: SharedStore = Arc::new(Mutex::new(store));
        let users = blocking(&store, |s| s.users()).await?;
        let state = State::new(&cfg, users);
        let pool = Arc::new(Pool {
            slot_locks: (0..cfg.max_containers)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            cfg,
            docker,
            image_id,
            store,
            state: Mutex::new(state),
            placing: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        });
        provision::remove_strays(&pool.docker, &pool.cfg).await?;
        pool.bring_up_all().await?;
        pool.spawn_tasks();
        Ok(pool)
    }

    /// Makes every slot ready in parallel; fails only if none could be.
    async fn bring_up_all(self: &Arc<Self>) -> Result<(), PoolError> {
        let started = Instant::now();
        let results = join_all((0..self.cfg.max_containers).map(|i| self.ensure_slot(i))).await;
        let ready = results.iter().filter(|r| r.is_ok()).count();
        log::info!(
            "pool: {ready}/{} containers ready in {:?}",
            results.len(),
            started.elapsed()
        );
        let mut errors = results.into_iter().filter_map(Result::err);
        match (ready, errors.next()) {
            (0, Some(e)) => Err(e),
            (_, Some(e)) => {
                log::warn!("pool: some containers are not ready yet: {e}");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The Docker client (API version already negotiated), for the exec TTY backend.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// The `key=value` label that marks this pool's containers, to filter Docker's events by.
    pub fn label_filter(&self) -> String {
        format!("{LABEL_POOL}={}", self.cfg.pool_label)
    }

    /// Numbers for /metrics and /healthz (no Docker call).
    pub fn stats(&self) -> PoolStats {
        self.lock_state().stats()
    }

    /// Places `identity`'s sessions: picks (or keeps) its container, persists that, makes sure
    /// the container runs with hidepid and the account exists there. `has_live_session` takes a
    /// Linux username. A returning user whose container is known to be ready costs no Docker call
    /// and no disk write.
    ///
    /// The user's slot is not given to anyone else while this runs, nor for a moment after it
    /// returns: the caller is expected to bind a session at once, which `has_live_session` then
    /// shows.
    pub async fn place(
        &self,
        identity: &str,
        has_live_session: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<Placement, PoolError> {
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
        let placement = self
            .place_cold(&hash, has_live_session, &mut flight)
            .await?;
        flight.placed = true;
        Ok(placement)
    }

    /// Tells the pool that a container failed under a session (e.g. an exec found it gone): it is
    /// checked (and replaced if dead) before anyone else is admitted to it.
    pub fn container_failed(&self, container_name: &str) {
        let mut st = self.lock_state();
        if let Some(idx) = st.slots.iter().position(|s| s.name == container_name) {
            st.mark_unready(idx, None);
        }
    }

    /// Tells the pool that container `container_id` of slot `container_name` runs but can take no
    /// session (its session agent cannot be reached): the next placement there replaces it,
    /// rather than adopting it again.
    pub fn replace_container(&self, container_name: &str, container_id: &str) {
        let mut st = self.lock_state();
        if let Some(idx) = st.slots.iter().position(|s| s.name == container_name) {
            st.mark_for_replacement(idx, container_id);
        }
    }

    /// Writes pending last-seen times to the store now.
    pub async fn flush(&self) -> Result<(), PoolError> {
        let seen = self.lock_state().take_dirty();
        if seen.is_empty() {
            return Ok(());
        }
        blocking(&self.store, move |s| s.touch(&seen)).await
    }

    async fn place_cold(
        &self,
        hash: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
        flight: &mut InFlight<'_>,
    ) -> Result<Placement, PoolError> {
        let (username, uid, idx) = self.decide(hash, live, flight).await?;
        let username = username.as_str();
        // A container can die between the check and the account exec: one more round then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = self.ensure_slot(idx).await?;
            match self.ensure_account(idx, &id, username, uid).await {
                Ok(()) => {
                    self.lock_state().touch(username, unix_now());
                    return Ok(Placement {
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

    /// Picks the account of identity `hash`, runs the assigner and carries out its decision
    /// (persisting a new slot and an eviction). Returns the account, its UID and slot.
    async fn decide(
        &self,
        hash: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
        flight: &mut InFlight<'_>,
    ) -> Result<(String, u32, usize), PoolError> {
        let mut retries = 0;
        loop {
            let serial = self.placing.lock().await;
            let (username, choice) = self.choose(hash, live, flight)?;
            match choice.map_err(|e| self.assign_error(e))? {
                Choice::Go(decision) => {
                    let (uid, idx) = self.carry_out(hash, &username, decision).await?;
                    return Ok((username, uid, idx));
                }
                Choice::RetryAt(at) if retries < MAX_RETRIES => {
                    retries += 1;
                    drop(serial);
                    tokio::time::sleep_until(at.into()).await;
                }
                Choice::RetryAt(_) => return Err(PoolError::PoolFull),
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

    /// Gives `victim`'s slot in `idx` to `username`, once every process `victim` left in that
    /// container has ended: the container is the newcomer's now, and nothing of the previous
    /// holder may stay to reach it (a server on localhost, a job still running). If that fails,
    /// `victim` keeps its slot and the newcomer gets the error.
    async fn evict(
        &self,
        hash: &str,
        username: &str,
        idx: usize,
        victim: &str,
    ) -> Result<(u32, usize), PoolError> {
        let result = async {
            let id = self.ensure_slot(idx).await?;
            self.end_processes(&id, victim).await?;
            self.assign_slot(hash, username, idx, Some(victim)).await
        }
        .await;
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
        provision::end_processes(&self.docker, id, username, uid).await
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

    /// The pool error for an assigner refusal.
    fn assign_error(&self, e: AssignError) -> PoolError {
        match e {
            AssignError::PoolFull => PoolError::PoolFull,
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

    /// Makes sure slot `idx` has a running container with hidepid (adopting, restarting or
    /// replacing it); returns its id. Cheap when the slot is known to be ready.
    async fn ensure_slot(&self, idx: usize) -> Result<String, PoolError> {
        let _serial = self.slot_locks[idx].lock().await;
        if let Some(id) = self.lock_state().ready_id(idx) {
            return Ok(id);
        }
        match self.bring_up(idx).await {
            Ok(id) => {
                let changed = self.lock_state().slots[idx].id.as_deref() != Some(&id);
                self.lock_state().mark_ready(idx, &id);
                if changed {
                    self.save_container(idx, &id).await;
                }
                Ok(id)
            }
            Err(e) => {
                let err = SlotError {
                    docker_unavailable: matches!(e, PoolError::DockerUnavailable(_)),
                    message: e.to_string(),
                };
                self.lock_state()
                    .mark_failed(idx, err, Instant::now() + DOWN_BACKOFF);
                Err(e)
            }
        }
    }

    /// Removes the slot's container if it was found unusable, then adopts, restarts or replaces
    /// what is there; returns the id of the running container.
    async fn bring_up(&self, idx: usize) -> Result<String, PoolError> {
        let unusable = self.lock_state().to_replace(idx);
        if let Some(id) = unusable {
            log::warn!(
                "pool: replacing container {} ({}): its session agent cannot be reached",
                self.cfg.container_name(idx),
                short(&id)
            );
            provision::remove(&self.docker, &id).await?;
        }
        provision::ensure_running(&self.docker, &self.cfg, &self.image_id, idx).await
    }

    /// Records a slot's container in the store; a failure is logged (the id is informational).
    async fn save_container(&self, idx: usize, id: &str) {
        let rec = ContainerRecord {
            slot: idx,
            name: self.cfg.container_name(idx),
            id: id.to_string(),
        };
        if let Err(e) = blocking(&self.store, move |s| s.save_container(&rec)).await {
            log::warn!("pool: recording container {} failed: {e}", short(id));
        }
    }

    /// Creates the account in container `id` unless it is known to exist there.
    async fn ensure_account(
        &self,
        idx: usize,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        if self.lock_state().account_known(idx, username) {
            return Ok(());
        }
        provision::ensure_account(&self.docker, id, username, uid).await?;
        self.lock_state().add_account(idx, id, username);
        Ok(())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // The state is only mutated by short, panic-free sections; a poisoned lock still holds
        // consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let handles = vec![
            tokio::spawn(watch_events(
                weak.clone(),
                self.docker.clone(),
                self.cfg.pool_label.clone(),
            )),
            tokio::spawn(health_loop(weak.clone(), self.cfg.health_interval)),
            tokio::spawn(flush_loop(weak, self.cfg.flush_interval)),
        ];
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handles);
    }

    /// One health round: every slot whose container is missing, stopped or not ours any more is
    /// marked unready and brought back; slots not ready are retried.
    async fn health_check(&self) -> Result<(), PoolError> {
        let listed =
            provision::list_labelled(&self.docker, LABEL_POOL, &self.cfg.pool_label).await?;
        let running: HashMap<String, String> = listed
            .into_iter()
            .filter(|c| c.2)
            .map(|(id, name, _)| (name, id))
            .collect();
        for idx in 0..self.cfg.max_containers {
            let name = self.cfg.container_name(idx);
            let current = self.lock_state().slots[idx].id.clone();
            if running.get(&name) != current.as_ref() {
                self.lock_state().mark_unready(idx, current.as_deref());
            }
            if self.lock_state().ready_id(idx).is_none() {
                if let Err(e) = self.ensure_slot(idx).await {
                    log::warn!("pool: health: container {name}: {e}");
                }
            }
        }
        Ok(())
    }

    /// A Docker event about one of the pool's containers.
    fn on_event(self: &Arc<Self>, action: &str, actor: EventActor) {
        self.on_container_event(action, &actor.id.unwrap_or_default());
    }

    /// A container died or was paused: its slot is brought back.
    fn on_container_event(self: &Arc<Self>, action: &str, id: &str) {
        // An "oom" event means one process was killed inside; the container itself lives on.
        if !matches!(action, "die" | "destroy" | "pause") {
            return;
        }
        let Some(idx) = self.lock_state().mark_dead_id(id) else {
            return;
        };
        log::warn!("pool: container {} ({action}): replacing it", short(id));
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = pool.ensure_slot(idx).await {
                log::warn!("pool: replacing container of slot {idx}: {e}");
            }
        });
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

impl Drop for Pool {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let seen = self.lock_state().take_dirty();
        if seen.is_empty() {
            return;
        }
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store.touch(&seen) {
            log::warn!("pool: writing last-seen times at shutdown failed: {e}");
        }
    }
}

/// Checks the configuration's numbers.
fn validate(cfg: &PoolConfig) -> Result<(), PoolError> {
    if cfg.max_containers == 0 || cfg.users_per_container == 0 {
        return Err(PoolError::Provision(
            "the pool needs at least one container and one user per container".into(),
        ));
    }
    if cfg.name_prefix.is_empty() || cfg.pool_label.is_empty() {
        return Err(PoolError::Provision(
            "container name prefix and pool label must not be empty".into(),
        ));
    }
    Ok(())
}

/// Runs a store operation on the blocking pool.
async fn blocking<T, F>(store: &SharedStore, f: F) -> Result<T, PoolError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    let joined = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_mut())
    })
    .await;
    match joined {
        Ok(result) => result.map_err(PoolError::Store),
        Err(e) => Err(PoolError::Provision(format!("store task failed: {e}"))),
    }
}

/// Follows Docker's events for the pool's containers, reconnecting with backoff. When the stream
/// breaks (e.g. the daemon restarts) nothing is known any more: every slot is re-checked before
/// its next admission.
async fn watch_events(pool: Weak<Pool>, docker: Docker, label: String) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{LABEL_POOL}={label}")]),
        ]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let mut events = docker.events(Some(opts));
        while let Some(event) = events.next().await {
            let Ok(msg) = event else { break };
            backoff = Duration::from_millis(250);
            let Some(pool) = pool.upgrade() else { return };
            pool.on_event(
                msg.action.as_deref().unwrap_or(""),
                msg.actor.unwrap_or_default(),
            );
        }
        let Some(p) = pool.upgrade() else { return };
        p.lock_state().mark_all_unready();
        drop(p);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(EVENTS_MAX_BACKOFF);
    }
}

/// Periodic health checks (see [`Pool::health_check`]).
async fn health_loop(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        if let Err(e) = p.health_check().await {
            log::warn!("pool: health check: {e}");
        }
    }
}

/// Periodic writing of last-seen times.
async fn flush_loop(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        if let Err(e) = p.flush().await {
            log::warn!("pool: writing last-seen times: {e}");
        }
    }
}
