//! [`Pool`]: the one object the server holds in container mode. It runs the assigner over the
//! in-memory state, persists decisions, keeps every slot's container running with hidepid, and
//! creates accounts on demand.
//!
//! Concurrency: decisions are serialised by one async mutex (so two newcomers never take the same
//! last slot); provisioning of a container is serialised per slot; the in-memory state sits under
//! a plain mutex that is never held across an `.await`. Background tasks (Docker events, a health
//! check, last-seen flushing) hold only a `Weak<Pool>` and are aborted when the pool is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bollard::models::EventActor;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::assign::{AssignError, Decision};
use super::provision::{self, short, LABEL_POOL};
use super::state::{SlotError, State};
use super::store::{unix_now, ContainerRecord, NewAssignment, Store, StoreError};
use super::{home_of, identity_hash, linux_username, Placement, PoolConfig, PoolError, PoolStats};

/// How long a slot whose container could not be provisioned is skipped by the assigner.
const DOWN_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait between reconnection attempts of the Docker event stream.
const EVENTS_MAX_BACKOFF: Duration = Duration::from_secs(10);

type SharedStore = Arc<Mutex<Box<dyn Store>>>;
/// Who waits for the exit of which exec (by exec id): its container's id, and where to send the
/// exit code.
type ExecWaiters = HashMap<String, (String, oneshot::Sender<Option<i64>>)>;

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
    exec_waiters: Mutex<ExecWaiters>,
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
            exec_waiters: Mutex::default(),
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

    /// Resolves with the exit code Docker reports for exec `exec_id` of container `container_id`
    /// on its event stream (`exec_die`); ask before starting the exec. Fails, rather than waits
    /// on, when the event may have been missed: the stream broke or the container died.
    pub fn exec_exit(&self, exec_id: &str, container_id: &str) -> oneshot::Receiver<Option<i64>> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.lock_exec_waiters();
        // Waiters whose session went away first (a failed start) are dropped here.
        waiters.retain(|_, (_, tx)| !tx.is_closed());
        waiters.insert(exec_id.to_owned(), (container_id.to_owned(), tx));
        rx
    }

    fn lock_exec_waiters(&self) -> MutexGuard<'_, ExecWaiters> {
        self.exec_waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_exec_die(&self, attributes: &HashMap<String, String>) {
        let Some(exec_id) = attributes.get("execID") else {
            return;
        };
        if let Some((_, tx)) = self.lock_exec_waiters().remove(exec_id) {
            let code = attributes.get("exitCode").and_then(|c| c.parse().ok());
            let _ = tx.send(code);
        }
    }

    /// Numbers for /metrics and /healthz (no Docker call).
    pub fn stats(&self) -> PoolStats {
        self.lock_state().stats()
    }

    /// Places `identity`'s sessions: picks (or keeps) its container, persists that, makes sure
    /// the container runs with hidepid and the account exists there. `has_live_session` takes a
    /// Linux username. A returning user whose container is known to be ready costs no Docker call
    /// and no disk write.
    pub async fn place(
        &self,
        identity: &str,
        has_live_session: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<Placement, PoolError> {
        let username = linux_username(identity);
        if let Some(p) = self.lock_state().warm(&username, unix_now()) {
            return Ok(p);
        }
        self.place_cold(identity, &username, has_live_session).await
    }

    /// Tells the pool that a container failed under a session (e.g. an exec found it gone): it is
    /// checked (and replaced if dead) before anyone else is admitted to it.
    pub fn container_failed(&self, container_name: &str) {
        let mut st = self.lock_state();
        if let Some(idx) = st.slots.iter().position(|s| s.name == container_name) {
            st.mark_unready(idx, None);
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
        identity: &str,
        username: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<Placement, PoolError> {
        let (uid, idx) = self.decide(identity, username, live).await?;
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

    /// Runs the assigner and persists a new slot (and eviction). Returns the user's UID and slot.
    async fn decide(
        &self,
        identity: &str,
        username: &str,
        live: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<(u32, usize), PoolError> {
        let _serial = self.placing.lock().await;
        let decision = self.lock_state().decide(username, live, Instant::now());
        let (idx, evicted) = match decision.map_err(|e| self.assign_error(e))? {
            Decision::Sticky { idx } => {
                let uid = self.lock_state().users.get(username).map(|u| u.uid);
                if let Some(uid) = uid {
                    return Ok((uid, idx));
                }
                (idx, None) // unreachable in practice: sticky users are known
            }
            Decision::New { idx } => (idx, None),
            Decision::Evict { idx, evicted_user } => (idx, Some(evicted_user)),
        };
        let rec = self
            .persist(identity, username, idx, evicted.as_deref())
            .await?;
        if let Some(e) = &evicted {
            log::info!("pool: {e} (idle) gives its slot in {idx} to {username}");
        }
        self.lock_state().apply(&rec, idx, evicted.as_deref());
        Ok((rec.uid, idx))
    }

    async fn persist(
        &self,
        identity: &str,
        username: &str,
        idx: usize,
        evicted: Option<&str>,
    ) -> Result<super::store::UserRecord, PoolError> {
        let (hash, user) = (identity_hash(identity), username.to_string());
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
        match provision::ensure_running(&self.docker, &self.cfg, &self.image_id, idx).await {
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

    /// A Docker event about one of the pool's containers or one of their execs.
    fn on_event(self: &Arc<Self>, action: &str, actor: EventActor) {
        match action {
            "exec_die" => self.on_exec_die(&actor.attributes.unwrap_or_default()),
            _ => self.on_container_event(action, &actor.id.unwrap_or_default()),
        }
    }

    /// A container died or was paused: its slot is brought back.
    fn on_container_event(self: &Arc<Self>, action: &str, id: &str) {
        // An "oom" event means one process was killed inside; the container itself lives on.
        if !matches!(action, "die" | "destroy" | "pause") {
            return;
        }
        // Its execs may never report their exit.
        self.lock_exec_waiters()
            .retain(|_, (container, _)| container != id);
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
        // Exits during the gap would be missed: their waiters ask Docker instead.
        p.lock_exec_waiters().clear();
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
