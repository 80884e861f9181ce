//! Keeping every slot's container ready (bring-up, health rounds) and the accounts in it, plus
//! the periodic background work that holds only a `Weak<Pool>`.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::super::engine::short;
use super::super::orchestrator::SlotHistory;
use super::super::state::SlotError;
use super::super::store::{unix_now, ContainerRecord, UserRecord};
use super::super::PoolError;
use super::{blocking, Pool};

/// How long a slot whose container could not be provisioned is skipped by the assigner.
const DOWN_BACKOFF: Duration = Duration::from_secs(10);

impl Pool {
    /// Writes pending last-seen and activity times to the store now.
    pub async fn flush(&self) -> Result<(), PoolError> {
        let touches = self.lock_state().take_dirty();
        if touches.is_empty() {
            return Ok(());
        }
        blocking(&self.store, move |s| s.touch(&touches)).await
    }

    /// Records activity of account `username` now; written with the next flush.
    pub fn note_activity(&self, username: &str) {
        self.lock_state().note_activity(username, unix_now());
    }

    /// The store's accounts whose last activity is before `t` (unix seconds), oldest first: what
    /// idle reaping resumes from after a restart.
    pub async fn accounts_idle_since(&self, t: i64) -> Result<Vec<UserRecord>, PoolError> {
        blocking(&self.store, move |s| s.accounts_idle_since(t)).await
    }

    /// Accounts of the store whose last activity is before `t` (unix seconds) and that hold a
    /// slot, with the id of that slot's container, `None` while it is not known (not adopted
    /// since the start): their reap waits for it (flushed first, so activity is current).
    pub async fn idle_placed_accounts(
        &self,
        t: i64,
    ) -> Result<Vec<(UserRecord, Option<String>)>, PoolError> {
        self.flush().await?;
        let users = self.accounts_idle_since(t).await?;
        let st = self.lock_state();
        let id_of = |name: &str| st.slots.iter().find(|s| s.name == name)?.id.clone();
        let placed = users.into_iter().filter_map(|u| {
            let id = id_of(u.container.as_deref()?);
            Some((u, id))
        });
        Ok(placed.collect())
    }

    /// Every account of the store (flushed first, so activity is current), with the id of its
    /// container if it holds a slot.
    pub async fn accounts(&self) -> Result<Vec<(UserRecord, Option<String>)>, PoolError> {
        self.flush().await?;
        let users = blocking(&self.store, |s| s.users()).await?;
        let st = self.lock_state();
        let id_of = |name: &str| st.slots.iter().find(|s| s.name == name)?.id.clone();
        let with_ids = users.into_iter().map(|u| {
            let id = u.container.as_deref().and_then(id_of);
            (u, id)
        });
        Ok(with_ids.collect())
    }

    /// Users holding a slot in each container, by container name.
    pub fn users_per_container(&self) -> Vec<(String, usize)> {
        let st = self.lock_state();
        let mut counts = vec![0; st.slots.len()];
        st.users
            .values()
            .filter_map(|u| u.slot)
            .for_each(|i| counts[i] += 1);
        let names = st.slots.iter().map(|s| s.name.clone());
        names.zip(counts).collect()
    }

    /// Makes sure slot `idx` has a running container with hidepid (adopting, restarting or
    /// replacing it); returns its id. Cheap when the slot is known to be ready.
    pub(super) async fn ensure_slot(&self, idx: usize) -> Result<String, PoolError> {
        let _serial = self.slot_locks[idx].lock().await;
        if let Some(id) = self.lock_state().ready_id(idx) {
            return Ok(id);
        }
        let unusable = self.lock_state().to_replace(idx);
        let history = self.slot_history(idx).await;
        match self
            .orch
            .ensure_slot(idx, unusable.as_deref(), history)
            .await
        {
            Ok(ready) => {
                let id = ready.id;
                let changed = {
                    let mut st = self.lock_state();
                    let changed = st.slots[idx].id.as_deref() != Some(&id);
                    st.mark_ready(idx, &id);
                    if ready.node.is_some() {
                        st.set_node(idx, ready.node);
                    }
                    changed
                };
                if changed {
                    self.save_container(idx, &id).await;
                }
                Ok(id)
            }
            Err(e) => {
                let err = SlotError {
                    docker_unavailable: matches!(
                        e,
                        PoolError::DockerUnavailable(_) | PoolError::NodeDown(_)
                    ),
                    wrong_volume: matches!(e, PoolError::WrongVolume(_)),
                    message: match &e {
                        // Its users' refusal carries it as the same kind again.
                        PoolError::WrongVolume(why) => why.clone(),
                        other => other.to_string(),
                    },
                };
                let mut st = self.lock_state();
                st.mark_failed(idx, err, Instant::now() + DOWN_BACKOFF);
                if matches!(e, PoolError::NodeDown(_)) {
                    st.mark_node_down(idx);
                }
                drop(st);
                Err(e)
            }
        }
    }

    /// What the store says of slot `idx`: how many accounts it places there (the pool's mirror
    /// of the store) and, when any, whether the slot was made ready before. A store that cannot
    /// say counts as yes: a volume without the slot's marker is then refused rather than taken.
    async fn slot_history(&self, idx: usize) -> SlotHistory {
        let accounts = {
            let st = self.lock_state();
            st.users.values().filter(|u| u.slot == Some(idx)).count()
        };
        if accounts == 0 {
            return SlotHistory::default();
        }
        let prepared = match blocking(&self.store, |s| s.containers()).await {
            Ok(slots) => slots.iter().any(|c| c.slot == idx),
            Err(e) => {
                log::warn!("pool: reading the slots' records: {e}");
                true
            }
        };
        SlotHistory { prepared, accounts }
    }

    /// Records a slot's container in the store, which tells a later volume check that the slot
    /// was prepared; a failure is logged.
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
    pub(super) async fn ensure_account(
        &self,
        idx: usize,
        id: &str,
        username: &str,
        uid: u32,
    ) -> Result<(), PoolError> {
        if self.lock_state().account_known(idx, username) {
            return Ok(());
        }
        self.orch.create_account(idx, id, username, uid).await?;
        self.lock_state().add_account(idx, id, username);
        Ok(())
    }

    /// One health round: every slot whose container is missing, stopped or not ours any more is
    /// marked unready and brought back; slots not ready are retried.
    async fn health_check(self: &Arc<Self>) -> Result<(), PoolError> {
        let running = self.orch.running().await?;
        self.refresh_nodes().await;
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
}

/// Periodic health checks (see [`Pool::health_check`]).
pub(super) async fn health_loop(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        if let Err(e) = p.health_check().await {
            log::warn!("pool: health check: {e}");
        }
    }
}

/// Periodic writing of last-seen times.
pub(super) async fn flush_loop(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        if let Err(e) = p.flush().await {
            log::warn!("pool: writing last-seen times: {e}");
        }
    }
}
