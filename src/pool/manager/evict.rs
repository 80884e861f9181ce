//! Ending an evicted account's processes after its slot has gone to the newcomer: in the
//! background, outside the placement lock, retried with a bounded backoff until done.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::super::PoolError;
use super::Pool;

/// First wait before a failed reap of an evicted account is tried again; doubled after each
/// failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a placement looks whether a reap it waits for has ended.
const POLL: Duration = Duration::from_millis(50);
/// How long a newcomer to a container of one user waits for the previous holder's processes
/// to end before it is refused (two attempts at least: the reaper gives up after 5 s).
const EXCLUSIVE_WAIT: Duration = Duration::from_secs(20);

/// Whether an attempt at a pending reap is running now.
pub(super) type Running = bool;

/// What one attempt at ending an evicted account's processes came to.
enum Attempt {
    /// None is left, or they are the account's own again (it holds a slot in that container).
    Done,
    /// The account is being placed: asked again after the first wait.
    Deferred,
    Failed(PoolError),
}

/// The wait after `failures` failed attempts in a row.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    (RETRY_FIRST * factor).min(RETRY_MAX)
}

impl Pool {
    /// Ends the processes `victim` left in slot `idx`'s container, in a task of its own: no
    /// placement waits for it but the victim's own (see [`Pool::wait_own_reap`]). The newcomer
    /// may start meanwhile: a different UID, it is kept from the victim's processes as from any
    /// other user of the container (docs/isolation.md).
    pub(super) fn reap_evicted(self: &Arc<Self>, idx: usize, victim: String) {
        self.reaping().insert((victim.clone(), idx), false);
        let task = tokio::spawn(reap_until_done(Arc::downgrade(self), idx, victim));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Returns once no reap of `username` is running, so that none can end a session of it that
    /// this placement is about to start. Called with the placement of `username` already marked
    /// under way, which keeps new attempts from starting (the state lock orders the two).
    pub(super) async fn wait_own_reap(&self, username: &str) {
        let running = |r: &HashMap<(String, usize), Running>| {
            r.iter()
                .any(|((user, _), running)| user == username && *running)
        };
        while running(&self.reaping()) {
            tokio::time::sleep(POLL).await;
        }
    }

    /// In containers of one user (`USERS_PER_CONTAINER=1`), where no other account is met, a
    /// newcomer to slot `idx` starts only once the processes of the accounts evicted from it
    /// have ended; refused after [`EXCLUSIVE_WAIT`]. Containers shared by several users keep
    /// their users apart by UID and hidepid, and there nobody waits.
    pub(super) async fn wait_slot_cleared(&self, idx: usize) -> Result<(), PoolError> {
        if self.cfg.users_per_container > 1 {
            return Ok(());
        }
        let deadline = Instant::now() + EXCLUSIVE_WAIT;
        while self.reaping().keys().any(|(_, i)| *i == idx) {
            if Instant::now() >= deadline {
                return Err(PoolError::Provision(format!(
                    "the previous user's processes in {} are still being ended",
                    self.cfg.container_name(idx)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    fn reaping(&self) -> MutexGuard<'_, HashMap<(String, usize), Running>> {
        self.reaping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets whether an attempt for `victim` in slot `idx` runs now, or, with `None`, forgets
    /// the reap.
    fn mark(&self, victim: &str, idx: usize, running: Option<Running>) {
        let mut reaping = self.reaping();
        let key = (victim.to_string(), idx);
        match running {
            Some(running) => drop(reaping.insert(key, running)),
            None => drop(reaping.remove(&key)),
        }
    }

    /// One attempt at ending `victim`'s processes in slot `idx`'s container.
    async fn reap_evicted_once(&self, idx: usize, victim: &str) -> Attempt {
        let (id, uid) = {
            let st = self.lock_state();
            let Some(user) = st.users.get(victim) else {
                self.mark(victim, idx, None);
                return Attempt::Done;
            };
            if user.slot == Some(idx) {
                self.mark(victim, idx, None);
                return Attempt::Done;
            }
            if st.is_placing(victim) {
                return Attempt::Deferred;
            }
            let Some(id) = st.slots[idx].id.clone() else {
                return Attempt::Deferred;
            };
            // Marked while the state is locked: a placement of the victim that starts now waits.
            self.mark(victim, idx, Some(true));
            (id, user.uid)
        };
        match self.orch.end_processes(Some(idx), &id, victim, uid).await {
            Ok(()) => {
                self.mark(victim, idx, None);
                Attempt::Done
            }
            Err(e) => {
                self.mark(victim, idx, Some(false));
                Attempt::Failed(e)
            }
        }
    }
}

/// Attempts until `victim`'s processes in slot `idx` are gone (or the pool is dropped).
async fn reap_until_done(pool: Weak<Pool>, idx: usize, victim: String) {
    let mut failures = 0;
    loop {
        let Some(p) = pool.upgrade() else { return };
        let wait = match p.reap_evicted_once(idx, &victim).await {
            Attempt::Done if failures > 0 => {
                return log::info!("pool: the processes of evicted {victim} have ended");
            }
            Attempt::Done => return,
            Attempt::Deferred => RETRY_FIRST,
            Attempt::Failed(e) => {
                failures += 1;
                let wait = backoff(failures);
                log::warn!(
                    "pool: ending the processes of evicted {victim} in {} failed \
                     (attempt {failures}, retried in {wait:?}): {e}",
                    p.cfg.container_name(idx)
                );
                wait
            }
        };
        drop(p);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        let waits: Vec<Duration> = (1..30).map(backoff).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits.last(), Some(&RETRY_MAX));
    }
}
