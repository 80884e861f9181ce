//! Idle reaping: which Linux accounts have a live session, and ending the leftover processes of
//! those that have had none for `Limits::idle_reap` (those idle since before a restart: `resume`).

mod resume;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Registry;
use crate::tty::{Backend, Placement};
use resume::Resumed;

/// First wait before a failed reap is tried again; doubled after each failure up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait before attempt `failures + 1` of a reap that failed `failures` times.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    (RETRY_FIRST * factor).min(RETRY_MAX)
}

/// Live sessions per Linux account, and since when the others have had none.
#[derive(Default)]
pub(super) struct Accounts {
    live: HashMap<String, usize>,
    /// Accounts with no live session: since when (or, after a failed reap, when it is due
    /// again, less the limit), and where they ran.
    idle: HashMap<String, (Instant, Placement)>,
    /// Failed reaps in a row per account, for the backoff; cleared by a session or a success.
    failures: HashMap<String, u32>,
}

impl Accounts {
    pub(super) fn is_live(&self, account: &str) -> bool {
        self.live.get(account).is_some_and(|n| *n > 0)
    }

    /// A session of the account at `placement` has started: it is no longer idle.
    pub(super) fn bind(&mut self, placement: &Placement) {
        *self.live.entry(placement.user.clone()).or_default() += 1;
        self.idle.remove(&placement.user);
        self.failures.remove(&placement.user);
    }

    /// A session of the account at `placement` has ended: idle from `now` if it was the last.
    pub(super) fn release(&mut self, placement: &Placement, now: Instant) {
        if let Some(n) = self.live.get_mut(&placement.user) {
            *n -= 1;
            if *n == 0 {
                self.live.remove(&placement.user);
                let idle = (now, placement.clone());
                self.idle.insert(placement.user.clone(), idle);
            }
        }
    }

    /// A reap of the account at `placement` failed: due again after a backoff that grows with
    /// each failure in a row, unless a session of it has started (or it is listed idle again)
    /// meanwhile. Returns the wait, `None` if no retry is needed.
    fn retry(&mut self, placement: Placement, limit: Duration) -> Option<Duration> {
        if self.is_live(&placement.user) || self.idle.contains_key(&placement.user) {
            return None;
        }
        let failures = self.failures.entry(placement.user.clone()).or_default();
        *failures += 1;
        let wait = backoff(*failures);
        // `take_idle` takes accounts idle for `limit`: this one becomes so after `wait`.
        let now = Instant::now();
        let since = (now + wait).checked_sub(limit).unwrap_or(now);
        self.idle.insert(placement.user.clone(), (since, placement));
        Some(wait)
    }

    /// Accounts idle for `limit` or longer, taken off the idle list.
    fn take_idle(&mut self, limit: Duration) -> Vec<Placement> {
        let due: Vec<String> = self
            .idle
            .iter()
            .filter(|(_, (since, _))| since.elapsed() >= limit)
            .map(|(account, _)| account.clone())
            .collect();
        due.iter()
            .filter_map(|account| self.idle.remove(account).map(|(_, p)| p))
            .collect()
    }
}

impl Registry {
    fn take_idle(&self, limit: Duration) -> Vec<Placement> {
        self.lock().accounts.take_idle(limit)
    }

    fn live_accounts(&self) -> Vec<String> {
        self.lock().accounts.live.keys().cloned().collect()
    }

    /// Whether this process tracks the account itself (live, or idle since a session here).
    fn tracks(&self, account: &str) -> bool {
        let st = self.lock();
        st.accounts.is_live(account) || st.accounts.idle.contains_key(account)
    }

    /// Reaps the accounts this process saw idle for `limit`; a failed reap is retried.
    async fn reap_due(&self, backend: &dyn Backend, limit: Duration) {
        for placement in self.take_idle(limit) {
            log::info!(
                "reaping processes of {} (idle for {limit:?})",
                placement.user
            );
            match backend.reap(&placement).await {
                Ok(()) => drop(self.lock().accounts.failures.remove(&placement.user)),
                Err(e) => {
                    let user = placement.user.clone();
                    if let Some(wait) = self.lock().accounts.retry(placement, limit) {
                        log::warn!("could not reap {user} (retried in {wait:?}): {e}");
                    }
                }
            }
        }
    }

    /// Ends the leftover processes (nohup jobs, daemons) of accounts that have had no live
    /// session for `Limits::idle_reap`; their files stay. Runs until the process ends.
    pub async fn reap_idle_forever(self: Arc<Self>, backend: Arc<dyn Backend>) {
        let limit = self.limits.idle_reap;
        let every = (limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        let mut resumed = Resumed::new();
        loop {
            tokio::time::sleep(every).await;
            self.forget_quiet_users(Instant::now());
            // Kept in the store (written with the next flush), so a restart knows who was active.
            for account in self.live_accounts() {
                backend.note_activity(&account);
            }
            self.reap_due(backend.as_ref(), limit).await;
            if !resumed.finished() {
                self.reap_resumed(backend.as_ref(), &mut resumed, limit)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
