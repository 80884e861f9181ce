//! Reaping what a previous server left: accounts the store says went idle before this process
//! started, reaped once their container is known, retried until each is done or tracked here.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::backoff;
use crate::pool::store::unix_now;
use crate::session::Registry;
use crate::tty::{Backend, Placement};

/// Accounts idle since before this process started, known only from the backend's store. Each
/// is reaped once; the work ends when no account can still be due from before the start and
/// every one listed is reaped or tracked by this process.
pub(super) struct Resumed {
    /// Unix seconds when this process started reaping.
    start: i64,
    done: HashSet<String>,
    /// Failed reaps: how many in a row, and when the next attempt may run.
    failed: HashMap<String, (u32, Instant)>,
    finished: bool,
}

/// What one round made of one account the store listed.
enum Outcome {
    /// Reaped, or this process tracks the account itself now.
    Done,
    /// To be tried again at a later round (container not known yet, backing off, failed).
    Later,
}

impl Resumed {
    pub(super) fn new() -> Resumed {
        Resumed {
            start: unix_now(),
            done: HashSet::new(),
            failed: HashMap::new(),
            finished: false,
        }
    }

    /// One that started at unix second `start` (tests: a start in a past second).
    #[cfg(test)]
    pub(super) fn started_at(start: i64) -> Resumed {
        Resumed {
            start,
            ..Resumed::new()
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.finished
    }

    fn backing_off(&self, account: &str) -> bool {
        self.failed
            .get(account)
            .is_some_and(|(_, next)| Instant::now() < *next)
    }

    /// Records a failed reap of `account`; returns the wait before the next attempt.
    fn fail(&mut self, account: &str) -> std::time::Duration {
        let (failures, _) = self
            .failed
            .get(account)
            .copied()
            .unwrap_or((0, Instant::now()));
        let wait = backoff(failures + 1);
        let next = (failures + 1, Instant::now() + wait);
        self.failed.insert(account.to_string(), next);
        wait
    }

    fn succeed(&mut self, account: &str) {
        self.failed.remove(account);
        self.done.insert(account.to_string());
    }
}

impl Registry {
    /// One round: reaps the accounts the store says have been idle for `limit` since before this
    /// process started, which no session of this process has touched. An account whose
    /// container is not known yet (not adopted since the start) or whose reap failed stays due.
    pub(super) async fn reap_resumed(
        &self,
        backend: &dyn Backend,
        r: &mut Resumed,
        limit: std::time::Duration,
    ) {
        let due = unix_now() - limit.as_secs() as i64;
        // Not `due.min(start)`: activity is kept in whole seconds, and an account last active in
        // the second this process started (the previous server stopped just before) would then
        // never be listed. Accounts this process has touched itself are skipped below.
        let idle = match backend.idle_accounts(due).await {
            Ok(idle) => idle,
            Err(e) => {
                return log::warn!("idle accounts from the store (asked again next round): {e}")
            }
        };
        let mut pending = false;
        for placement in idle {
            if r.done.contains(&placement.user) {
                continue;
            }
            match self.reap_one_resumed(backend, r, placement, limit).await {
                Outcome::Done => {}
                Outcome::Later => pending = true,
            }
        }
        // Activity recorded from now on is this process's own: once `due` is past the start's
        // second, no account of the previous server can become due any more.
        r.finished = due > r.start && !pending;
    }

    async fn reap_one_resumed(
        &self,
        backend: &dyn Backend,
        r: &mut Resumed,
        placement: Placement,
        limit: std::time::Duration,
    ) -> Outcome {
        let user = placement.user.clone();
        if self.tracks(&user) {
            // A session here has touched it: this process's own idle reaping takes it over.
            r.succeed(&user);
            return Outcome::Done;
        }
        if placement.container_id.is_none() {
            log::debug!(
                "{user} is idle since before the restart: reaped once its container is ready"
            );
            return Outcome::Later;
        }
        if r.backing_off(&user) {
            return Outcome::Later;
        }
        log::info!("reaping processes of {user} (idle for {limit:?}, since before the restart)");
        match backend.reap(&placement).await {
            Ok(()) => {
                r.succeed(&user);
                Outcome::Done
            }
            Err(e) => {
                let wait = r.fail(&user);
                log::warn!("could not reap {user} (retried in {wait:?}): {e}");
                Outcome::Later
            }
        }
    }
}
