//! The registry of live sessions: how many each user holds, how fast they open new ones, and which
//! Linux accounts have a session right now (the pool frees only slots of users without one).
//! Admission happens here, before the WebSocket upgrade, so a refusal is a plain HTTP 429.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Why a user may not open another session now.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many live sessions: at most {0} per user")]
    TooManySessions(usize),
    #[error("too many new sessions: at most {0} per minute per user")]
    TooFast(u32),
}

#[derive(Default)]
struct UserEntry {
    live: usize,
    opened: VecDeque<Instant>,
}

#[derive(Default)]
struct Inner {
    /// Keyed by identity.
    users: HashMap<String, UserEntry>,
    /// Live sessions per Linux account.
    accounts: HashMap<String, usize>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    max_live: usize,
    max_per_minute: u32,
}

impl Registry {
    pub fn new(max_live: usize, max_per_minute: u32) -> Arc<Self> {
        Arc::new(Registry {
            inner: Mutex::default(),
            max_live,
            max_per_minute,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a session for `identity`, or says why not. The reservation ends when the returned
    /// slot is dropped.
    pub fn admit(self: &Arc<Self>, identity: &str) -> Result<SessionSlot, Refusal> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.users.entry(identity.to_owned()).or_default();
        while entry
            .opened
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            entry.opened.pop_front();
        }
        if entry.live >= self.max_live {
            return Err(Refusal::TooManySessions(self.max_live));
        }
        if self.max_per_minute > 0 && entry.opened.len() >= self.max_per_minute as usize {
            return Err(Refusal::TooFast(self.max_per_minute));
        }
        entry.live += 1;
        entry.opened.push_back(now);
        Ok(SessionSlot {
            registry: self.clone(),
            identity: identity.to_owned(),
            account: None,
        })
    }

    /// Whether the Linux account has a live session right now.
    pub fn account_is_live(&self, account: &str) -> bool {
        self.lock().accounts.get(account).is_some_and(|n| *n > 0)
    }

    fn release(&self, identity: &str, account: Option<&str>) {
        let mut inner = self.lock();
        if let Some(entry) = inner.users.get_mut(identity) {
            entry.live -= 1;
            if entry.live == 0 && entry.opened.is_empty() {
                inner.users.remove(identity);
            }
        }
        if let Some(account) = account {
            if let Some(n) = inner.accounts.get_mut(account) {
                *n -= 1;
                if *n == 0 {
                    inner.accounts.remove(account);
                }
            }
        }
    }
}

/// One admitted session. Dropping it gives the place back.
pub struct SessionSlot {
    registry: Arc<Registry>,
    identity: String,
    account: Option<String>,
}

impl SessionSlot {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Records the Linux account the session runs as, once placed.
    pub fn bind_account(&mut self, account: &str) {
        if self.account.is_none() {
            *self
                .registry
                .lock()
                .accounts
                .entry(account.to_owned())
                .or_default() += 1;
            self.account = Some(account.to_owned());
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.registry
            .release(&self.identity, self.account.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_limit_is_per_user_and_released_on_drop() {
        let reg = Registry::new(2, 0);
        let a1 = reg.admit("a").unwrap();
        let _a2 = reg.admit("a").unwrap();
        assert_eq!(reg.admit("a").err(), Some(Refusal::TooManySessions(2)));
        let _b = reg.admit("b").unwrap();
        drop(a1);
        assert!(reg.admit("a").is_ok());
    }

    #[test]
    fn rate_limit_counts_openings_not_live_sessions() {
        let reg = Registry::new(100, 3);
        for _ in 0..3 {
            drop(reg.admit("a").unwrap());
        }
        assert_eq!(reg.admit("a").err(), Some(Refusal::TooFast(3)));
        assert!(reg.admit("b").is_ok());
    }

    #[test]
    fn accounts_are_live_while_a_slot_is_bound() {
        let reg = Registry::new(5, 0);
        let mut s1 = reg.admit("a").unwrap();
        let mut s2 = reg.admit("a").unwrap();
        s1.bind_account("u1");
        s2.bind_account("u1");
        assert!(reg.account_is_live("u1"));
        drop(s1);
        assert!(reg.account_is_live("u1"));
        drop(s2);
        assert!(!reg.account_is_live("u1"));
        assert!(reg.lock().users.contains_key("a"), "rate history kept for a minute");
    }
}
