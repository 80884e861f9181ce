//! [`SwarmStore`]: the pool's [`Store`] kept as configs in the Swarm's own Raft store, which every
//! manager holds, so that the server restarted or moved to another manager loses no placement.

mod api;
mod assign;
mod operator;
mod records;

use std::collections::HashMap;

use bollard::Docker;

use self::api::{failed, Api, Write};
use self::records::{
    meta_name, slot_name, valid_pool_label, Meta, Slot, Snapshot, LABEL_STORE, MAX_POOL_LABEL,
};
use super::{ContainerRecord, NewAssignment, Store, StoreError, Touches, UserRecord, FIRST_UID};

pub use self::records::SWARM_SCHEMA_VERSION;

/// A touch less than this many seconds newer than the stored times stays in memory: the durable
/// last activity lags the real one by at most this much, for at most one write per user per
/// this many seconds of activity.
pub const TOUCH_GRANULARITY_SECS: i64 = 60;

/// Tries of a write that another writer raced (each re-reads the records first).
const ATTEMPTS: usize = 8;

/// Last-seen and last-activity times reported but not yet written.
#[derive(Debug, Default, Clone, Copy)]
struct Pending {
    seen: i64,
    active: i64,
}

/// The pool's users, UIDs and slots as configs of a Swarm (see `docs/scaling.md`, "Placement and
/// the store").
pub struct SwarmStore {
    api: Api,
    pool: String,
    pending: HashMap<String, Pending>,
}

impl SwarmStore {
    /// Opens the store of pool `pool_label` on the Swarm manager `docker` talks to: refuses a
    /// manager it cannot use and records of a newer release, and finishes any placement a crash
    /// left half-written. Like the trait's methods, best called where blocking is allowed (a
    /// `spawn_blocking` thread): each Docker call is waited for.
    pub fn new(docker: Docker, pool_label: &str) -> Result<SwarmStore, StoreError> {
        if !valid_pool_label(pool_label) {
            return Err(failed(
                "opening the store in the Swarm",
                format!(
                    "pool label {pool_label:?} cannot name Swarm configs (letters, digits, '-', \
                     '_' and '.', at most {MAX_POOL_LABEL} characters)"
                ),
            ));
        }
        let api = Api::new(docker)?;
        api.check_manager()?;
        let store = SwarmStore {
            api,
            pool: pool_label.to_string(),
            pending: HashMap::new(),
        };
        let snap = store.snapshot()?;
        if snap.meta.is_none() {
            let labels = Meta::labels(&store.pool, i64::from(FIRST_UID));
            // A conflict is another server creating it at the same moment: as good.
            store
                .api
                .create(&meta_name(&store.pool), labels, b"termpool store")?;
        }
        store.resolve_evictions(&snap)?;
        Ok(store)
    }

    /// Makes sure no UID below `first` is ever handed out (as [`super::SqliteStore`] does).
    pub fn raise_uid_floor(&mut self, first: u32) -> Result<(), StoreError> {
        self.raise_next_uid(None, i64::from(first))
    }

    /// The pool label the records carry.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Every record of the pool, as the manager has them now.
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let configs = self
            .api
            .list(vec![format!("{LABEL_STORE}={}", self.pool)])?;
        Snapshot::parse(&self.pool, configs)
    }

    /// `user` with the times reported but not yet written.
    fn with_pending(&self, mut user: UserRecord) -> UserRecord {
        if let Some(p) = self.pending.get(&user.username) {
            user.last_seen = user.last_seen.max(p.seen);
            user.last_activity = user.last_activity.max(p.active);
        }
        user
    }

    /// Moves the UID high-water mark up to `at_least`, trying first on `known` (the mark as
    /// last read, if at hand).
    fn raise_next_uid(&self, known: Option<&Meta>, at_least: i64) -> Result<(), StoreError> {
        let name = meta_name(&self.pool);
        let mut known = known.cloned();
        for _ in 0..ATTEMPTS {
            let meta = match known.take() {
                Some(meta) => Some(meta),
                None => self.snapshot()?.meta,
            };
            let write = match meta {
                Some(meta) if meta.next_uid >= at_least => return Ok(()),
                Some(meta) => self
                    .api
                    .update_labels(&meta.config, Meta::labels(&self.pool, at_least))?,
                None => {
                    self.api
                        .create(&name, Meta::labels(&self.pool, at_least), b"termpool store")?
                }
            };
            if write == Write::Done {
                return Ok(());
            }
        }
        Err(raced(&format!("raising the UID floor of {}", self.pool)))
    }
}

impl Store for SwarmStore {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let snap = self.snapshot()?;
        Ok(snap
            .accounts
            .into_iter()
            .map(|a| self.with_pending(a.user))
            .collect())
    }

    fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut slots: Vec<_> = self
            .snapshot()?
            .slots
            .into_iter()
            .map(|s| s.record)
            .collect();
        slots.sort_by_key(|c| c.slot);
        Ok(slots)
    }

    fn assign(&mut self, a: &NewAssignment<'_>) -> Result<UserRecord, StoreError> {
        let rec = self.assign_records(a)?;
        self.pending.remove(&rec.username);
        Ok(rec)
    }

    fn touch(&mut self, t: &Touches) -> Result<(), StoreError> {
        for (user, at) in &t.seen {
            let p = self.pending.entry(user.clone()).or_default();
            p.seen = p.seen.max(*at);
        }
        for (user, at) in &t.active {
            let p = self.pending.entry(user.clone()).or_default();
            p.active = p.active.max(*at);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let snap = self.snapshot()?;
        let names: Vec<String> = self.pending.keys().cloned().collect();
        for name in names {
            let Some(account) = snap.account_by_name(&name) else {
                // Unknown users are ignored, as the trait says.
                self.pending.remove(&name);
                continue;
            };
            let stored = &account.user;
            let wanted = self.with_pending(stored.clone());
            if wanted == *stored {
                self.pending.remove(&name);
                continue;
            }
            let due = wanted.last_seen >= stored.last_seen + TOUCH_GRANULARITY_SECS
                || wanted.last_activity >= stored.last_activity + TOUCH_GRANULARITY_SECS;
            if !due {
                continue;
            }
            let labels = records::Account::labels(&self.pool, &wanted, account.evicts.as_deref());
            // A write that lost a race stays pending, for the next batch.
            if self.api.update_labels(&account.config, labels)? == Write::Done {
                self.pending.remove(&name);
            }
        }
        Ok(())
    }

    fn save_container(&mut self, c: &ContainerRecord) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let snap = self.snapshot()?;
            // A renamed pool may leave another slot with this name: the name follows the slot.
            for other in snap
                .slots
                .iter()
                .filter(|s| s.record.name == c.name && s.record.slot != c.slot)
            {
                self.api
                    .delete(other.config.id.as_deref().unwrap_or_default())?;
            }
            let labels = Slot::labels(&self.pool, c);
            let write = match snap.slots.iter().find(|s| s.record.slot == c.slot) {
                Some(s) if s.record == *c => Write::Done,
                Some(s) => self.api.update_labels(&s.config, labels)?,
                None => {
                    let data = format!("{{\"slot\":{}}}", c.slot);
                    self.api
                        .create(&slot_name(&self.pool, c.slot), labels, data.as_bytes())?
                }
            };
            if write == Write::Done {
                return Ok(());
            }
        }
        Err(raced(&format!("saving container {}", c.name)))
    }

    fn accounts_idle_since(&self, t: i64) -> Result<Vec<UserRecord>, StoreError> {
        let mut idle: Vec<_> = self
            .users()?
            .into_iter()
            .filter(|u| u.last_activity < t)
            .collect();
        idle.sort_by_key(|u| u.last_activity);
        Ok(idle)
    }
}

/// A write that kept losing to other writers.
fn raced(context: &str) -> StoreError {
    failed(
        context,
        format!("other writers changed the records {ATTEMPTS} times in a row; try again"),
    )
}

#[cfg(test)]
mod tests;
