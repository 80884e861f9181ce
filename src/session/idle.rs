//! Idle reaping: which Linux accounts have a live session, and ending the leftover processes of
//! those that have had none for `Limits::idle_reap`, also those idle since before a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Registry;
use crate::pool::store::unix_now;
use crate::tty::{Backend, Placement};

/// Live sessions per Linux account, and since when the others have had none.
#[derive(Default)]
pub(super) struct Accounts {
    live: HashMap<String, usize>,
    /// Accounts with no live session: since when, and where they ran.
    idle: HashMap<String, (Instant, Placement)>,
}

impl Accounts {
    pub(super) fn is_live(&self, account: &str) -> bool {
        self.live.get(account).is_some_and(|n| *n > 0)
    }

    /// A session of the account at `placement` has started: it is no longer idle.
    pub(super) fn bind(&mut self, placement: &Placement) {
        *self.live.entry(placement.user.clone()).or_default() += 1;
        self.idle.remove(&placement.user);
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

    /// A reap of the account at `placement` failed: due again at the next round, unless a
    /// session of it has started (or it is listed idle again) meanwhile.
    fn retry(&mut self, placement: Placement, limit: Duration) {
        if self.is_live(&placement.user) || self.idle.contains_key(&placement.user) {
            return;
        }
        let now = Instant::now();
        let due = now.checked_sub(limit).unwrap_or(now);
        self.idle.insert(placement.user.clone(), (due, placement));
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

/// Accounts idle since before this process started, known only from the backend's store: each
/// is reaped once, until no account can still be due from before the start.
struct Resumed {
    /// Unix seconds when this process started reaping.
    start: i64,
    done: HashSet<String>,
    finished: bool,
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

    /// Reaps the accounts the store says have been idle for `limit` since before this process
    /// started, which no session of this process has touched.
    async fn reap_resumed(&self, backend: &dyn Backend, r: &mut Resumed, limit: Duration) {
        let now = unix_now();
        let due = now - limit.as_secs() as i64;
        let idle = match backend.idle_accounts(due.min(r.start)).await {
            Ok(idle) => idle,
            Err(e) => return log::warn!("idle accounts from the store (retried next round): {e}"),
        };
        let mut failed = false;
        for placement in idle {
            if r.done.contains(&placement.user) || self.tracks(&placement.user) {
                continue;
            }
            log::info!(
                "reaping processes of {} (idle for {limit:?}, since before the restart)",
                placement.user
            );
            match backend.reap(&placement).await {
                Ok(()) => drop(r.done.insert(placement.user)),
                Err(e) => {
                    failed = true;
                    log::warn!(
                        "could not reap {} (retried next round): {e}",
                        placement.user
                    );
                }
            }
        }
        // Activity recorded from now on is this process's own: no new account can become due.
        r.finished = due >= r.start && !failed;
    }

    /// Ends the leftover processes (nohup jobs, daemons) of accounts that have had no live
    /// session for `Limits::idle_reap`; their files stay. Runs until the process ends.
    pub async fn reap_idle_forever(self: Arc<Self>, backend: Arc<dyn Backend>) {
        let limit = self.limits.idle_reap;
        let every = (limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        let mut resumed = Resumed {
            start: unix_now(),
            done: HashSet::new(),
            finished: false,
        };
        loop {
            tokio::time::sleep(every).await;
            self.forget_quiet_users(Instant::now());
            // Kept in the store (written with the next flush), so a restart knows who was active.
            for account in self.live_accounts() {
                backend.note_activity(&account);
            }
            for placement in self.take_idle(limit) {
                log::info!(
                    "reaping processes of {} (idle for {limit:?})",
                    placement.user
                );
                if let Err(e) = backend.reap(&placement).await {
                    log::warn!(
                        "could not reap {} (retried next round): {e}",
                        placement.user
                    );
                    self.lock().accounts.retry(placement, limit);
                }
            }
            if !resumed.finished {
                self.reap_resumed(backend.as_ref(), &mut resumed, limit)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::registry::tests::{registry, NOBODY};

    fn placement(user: &str) -> Placement {
        Placement {
            user: user.into(),
            container: None,
            container_id: None,
            home: "/".into(),
        }
    }

    #[test]
    fn accounts_are_live_while_a_slot_is_bound_then_idle() {
        let reg = registry(5, 0);
        let mut s1 = reg.admit("a", &NOBODY).unwrap();
        let mut s2 = reg.admit("a", &NOBODY).unwrap();
        s1.bind(&placement("u1"));
        s2.bind(&placement("u1"));
        assert!(reg.account_is_live("u1"));
        drop(s1);
        assert!(reg.account_is_live("u1"));
        assert!(
            reg.take_idle(Duration::ZERO).is_empty(),
            "not idle while a session lives"
        );
        drop(s2);
        assert!(!reg.account_is_live("u1"));
        assert!(
            reg.lock().admission.knows("a"),
            "rate history kept for a minute"
        );
        assert!(
            reg.take_idle(Duration::from_secs(3600)).is_empty(),
            "not idle long enough"
        );
        assert_eq!(reg.take_idle(Duration::ZERO), vec![placement("u1")]);
        assert!(reg.take_idle(Duration::ZERO).is_empty(), "reaped once");
        let limit = Duration::from_secs(3600);
        reg.lock().accounts.retry(placement("u1"), limit);
        assert_eq!(
            reg.take_idle(limit),
            vec![placement("u1")],
            "a failed reap is due again"
        );
        let mut s3 = reg.admit("a", &NOBODY).unwrap();
        s3.bind(&placement("u1"));
        reg.lock().accounts.retry(placement("u1"), limit);
        assert!(
            reg.take_idle(Duration::ZERO).is_empty(),
            "not while a session lives"
        );
    }
}
