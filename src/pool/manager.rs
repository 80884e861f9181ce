//! [`Pool`]: the one object the server holds in container mode; its construction, the Docker
//! event stream and shutdown. Placement is in `place`, keeping slots ready in `slots`.

mod nodes;
mod place;
mod slots;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::engine::short;
use super::orchestrator::docker::DockerEngine;
use super::orchestrator::{Orchestrator, SlotEvent, Terminal};
use super::spec::LABEL_POOL;
use super::state::State;
use super::store::{Store, StoreError};
use super::swarm::SwarmServices;
use super::{PoolConfig, PoolError, PoolStats};

/// Longest wait between reconnection attempts of the Docker event stream.
const EVENTS_MAX_BACKOFF: Duration = Duration::from_secs(10);

type SharedStore = Arc<Mutex<Box<dyn Store>>>;

/// The container pool. Create it with [`Pool::start`]; share the `Arc`.
pub struct Pool {
    cfg: PoolConfig,
    orch: Box<dyn Orchestrator>,
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
        let orch: Box<dyn Orchestrator> = match &cfg.swarm {
            Some(swarm) => Box::new(SwarmServices::connect(&cfg, swarm).await?),
            None => Box::new(DockerEngine::connect(&cfg).await?),
        };
        Pool::start_on(cfg, store, orch).await
    }

    /// [`Pool::start`] on a given orchestrator.
    pub(super) async fn start_on(
        cfg: PoolConfig,
        store: Box<dyn Store>,
        orch: Box<dyn Orchestrator>,
    ) -> Result<Arc<Pool>, PoolError> {
        orch.prepare().await?;
        let store: SharedStore = Arc::new(Mutex::new(store));
        let users = blocking(&store, |s| s.users()).await?;
        let mut state = State::new(&cfg, users);
        state.pinned = orch.homes_pinned();
        let pool = Arc::new(Pool {
            slot_locks: (0..cfg.max_containers)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            cfg,
            orch,
            store,
            state: Mutex::new(state),
            placing: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        });
        pool.bring_up_all().await?;
        pool.refresh_nodes().await;
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
        self.orch.docker()
    }

    /// How the shells of container `container_name` are started; `None` if it is no slot's.
    pub fn terminal(&self, container_name: &str) -> Option<Terminal> {
        let idx = self.slot_of(container_name)?;
        Some(self.orch.terminal(idx))
    }

    /// The slot index of container `container_name`.
    fn slot_of(&self, container_name: &str) -> Option<usize> {
        let st = self.lock_state();
        st.slots.iter().position(|s| s.name == container_name)
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

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // The state is only mutated by short, panic-free sections; a poisoned lock still holds
        // consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let handles = vec![
            tokio::spawn(watch_events(weak.clone())),
            tokio::spawn(slots::health_loop(weak.clone(), self.cfg.health_interval)),
            tokio::spawn(slots::flush_loop(weak, self.cfg.flush_interval)),
        ];
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handles);
    }

    /// An event of the orchestrator about the pool's slots.
    fn on_event(self: &Arc<Self>, event: SlotEvent) {
        match event {
            SlotEvent::Dead { id } => self.on_dead(&id),
            SlotEvent::Nodes => {
                let pool = Arc::clone(self);
                tokio::spawn(async move { pool.refresh_nodes().await });
            }
        }
    }

    /// A container died or was paused: its slot is brought back.
    fn on_dead(self: &Arc<Self>, id: &str) {
        let Some(idx) = self.lock_state().mark_dead_id(id) else {
            return;
        };
        log::warn!("pool: container {} stopped: replacing it", short(id));
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
        let touches = self.lock_state().take_dirty();
        if touches.is_empty() {
            return;
        }
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store.touch(&touches) {
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
    super::ptys::check_host_budget(cfg)?;
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

/// Follows the orchestrator's events about the pool's slots, reconnecting with backoff. When the
/// stream breaks (e.g. the daemon restarts) nothing is known any more: every slot is re-checked
/// before its next admission.
async fn watch_events(pool: Weak<Pool>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(p) = pool.upgrade() else { return };
        let mut events = p.orch.events();
        drop(p);
        while let Some(event) = events.next().await {
            backoff = Duration::from_millis(250);
            let Some(pool) = pool.upgrade() else { return };
            pool.on_event(event);
        }
        let Some(p) = pool.upgrade() else { return };
        p.lock_state().mark_all_unready();
        drop(p);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(EVENTS_MAX_BACKOFF);
    }
}
