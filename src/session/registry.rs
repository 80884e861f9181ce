//! The server's map of live sessions and the books admission and idle reaping keep on them;
//! a `SessionSlot` holds one admitted session's place until it is dropped.

mod admit;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::admission::{Admission, Limits};
use super::idle::Accounts;
use super::{inactivity, pump, LiveSession};
use crate::metrics::Metrics;
use crate::protocol::TermSize;
use crate::screen::Screen;
use crate::tty::{Placement, Spawned};
pub use admit::SessionSlot;

#[derive(Default)]
pub(super) struct Inner {
    pub(super) admission: Admission,
    pub(super) accounts: Accounts,
    /// Live sessions by id.
    pub(super) sessions: HashMap<String, Arc<LiveSession>>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    pub(super) limits: Limits,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Registry {
            inner: Mutex::default(),
            limits,
            metrics,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the Linux account has a live session right now (attached or waiting for one).
    pub fn account_is_live(&self, account: &str) -> bool {
        self.lock().accounts.is_live(account)
    }

    /// The live session `id` if it belongs to `identity`.
    pub fn find(&self, id: &str, identity: &str) -> Option<Arc<LiveSession>> {
        let inner = self.lock();
        let session = inner.sessions.get(id)?;
        (session.identity == identity).then(|| session.clone())
    }

    /// Starts the pump of a freshly spawned shell and registers the session.
    pub fn start(
        self: &Arc<Self>,
        slot: SessionSlot,
        placement: Placement,
        spawned: Spawned,
        size: TermSize,
        client: Option<IpAddr>,
    ) -> Arc<LiveSession> {
        // Without re-attach nobody needs the screen: no emulator, no cost.
        let screen = (!self.limits.grace.is_zero()).then(|| Screen::new(size));
        let (session, generation) =
            LiveSession::new(self, slot, placement, spawned.tty, screen, size, client);
        session.audit("session_open").emit();
        self.lock()
            .sessions
            .insert(session.id.clone(), session.clone());
        self.metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
        self.metrics.sessions_total.fetch_add(1, Ordering::Relaxed);
        // On the worker's local set, beside the relay and the HTTP connection it writes to: a chunk
        // then reaches the socket in one pass of that set, without a round through the runtime.
        tokio::task::spawn_local(pump::pump(session.clone(), spawned.output, generation));
        if !self.limits.idle_detach.is_zero() {
            let attachments = session.generation.subscribe();
            let watch = inactivity::watch(
                Arc::downgrade(&session),
                attachments,
                self.limits.idle_detach,
            );
            tokio::task::spawn_local(watch);
        }
        session
    }

    /// Live sessions of the Linux account `account` right now.
    pub fn sessions_of_account(&self, account: &str) -> Vec<Arc<LiveSession>> {
        let inner = self.lock();
        let of = inner
            .sessions
            .values()
            .filter(|s| s.placement.user == account);
        of.cloned().collect()
    }

    /// Live sessions right now.
    pub fn live_sessions(&self) -> Vec<Arc<LiveSession>> {
        self.lock().sessions.values().cloned().collect()
    }

    pub(super) fn forget(&self, session: &LiveSession) {
        if self.lock().sessions.remove(&session.id).is_some() {
            self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn forget_quiet_users(&self, now: Instant) {
        self.lock().admission.forget_quiet_users(now);
    }

    /// Tells every attached client that the server is going away, and hangs every session up.
    pub async fn shutdown(&self) {
        let sessions = self.live_sessions();
        let closing = sessions.iter().map(|s| s.shut_down());
        let all = futures_util::future::join_all(closing);
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            log::warn!("some sessions did not close within 5 s");
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::admission::{Refusal, Requester, RATE_WINDOW};
    use super::*;

    fn limits(max_live: usize, per_minute: u32) -> Limits {
        Limits {
            max_live,
            max_per_minute: per_minute,
            max_total: 0,
            max_newcomers_per_minute: 0,
            max_per_address: 0,
            max_identities_per_address: 0,
            ipv6_prefix_len: 56,
            idle_detach: Duration::ZERO,
            grace: Duration::ZERO,
            idle_reap: Duration::from_secs(60),
        }
    }

    /// A requester counted nowhere.
    pub(in crate::session) const NOBODY: Requester = Requester {
        address: None,
        anonymous: false,
    };

    pub(in crate::session) fn registry(max_live: usize, per_minute: u32) -> Arc<Registry> {
        Registry::new(limits(max_live, per_minute), Arc::default())
    }

    #[test]
    fn the_server_wide_cap_counts_every_user() {
        let reg = Registry::new(
            Limits {
                max_total: 2,
                ..limits(5, 0)
            },
            Arc::default(),
        );
        let a = reg.admit("a", &NOBODY).unwrap();
        let _b = reg.admit("b", &NOBODY).unwrap();
        let full = reg.admit("c", &NOBODY).err().unwrap();
        assert!(full.is_server_full());
        assert_eq!(
            reg.check_admission("a", &NOBODY),
            Err(Refusal::ServerFull(2))
        );
        drop(a);
        assert!(reg.admit("c", &NOBODY).is_ok());
    }

    #[test]
    fn new_identities_are_counted_per_address_and_ipv6_per_block() {
        let reg = Registry::new(
            Limits {
                max_newcomers_per_minute: 2,
                ..limits(5, 0)
            },
            Arc::default(),
        );
        let at = |a: &str| Requester {
            address: Some(a.parse().unwrap()),
            anonymous: true,
        };
        let _a = reg.admit("a", &at("192.0.2.1")).unwrap();
        let _b = reg.admit("b", &at("::ffff:192.0.2.1")).unwrap();
        let refused = Err(Refusal::TooManyNewcomers(2));
        assert_eq!(reg.check_admission("c", &at("192.0.2.1")), refused);
        assert_eq!(reg.admit("c", &at("192.0.2.1")).err(), refused.err());
        // Known identities are not new; other addresses, and uncounted identities, are apart.
        let _a2 = reg.admit("a", &at("192.0.2.1")).unwrap();
        assert!(reg.admit("c", &at("192.0.2.2")).is_ok());
        assert!(reg.admit("d", &NOBODY).is_ok());
        let _e = reg.admit("e", &at("2001:db8::1")).unwrap();
        let _f = reg.admit("f", &at("2001:db8:0:ff::1")).unwrap();
        assert!(reg.admit("g", &at("2001:db8::2")).is_err(), "the same /56");
        assert!(reg.admit("g", &at("2001:db8:0:100::2")).is_ok());
        // A minute later, the address may bring new identities again.
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        let mut inner = reg.lock();
        let later = Instant::now() + RATE_WINDOW;
        assert_eq!(
            inner
                .admission
                .refusal(&reg.limits, "h", &at("192.0.2.1"), later),
            None
        );
    }

    #[test]
    fn sessions_and_identities_held_per_address_are_capped() {
        let reg = Registry::new(
            Limits {
                max_per_address: 3,
                max_identities_per_address: 2,
                ..limits(5, 0)
            },
            Arc::default(),
        );
        let at = |a: &str| Requester {
            address: Some(a.parse().unwrap()),
            anonymous: false,
        };
        let a1 = reg.admit("a", &at("2001:db8::1")).unwrap();
        let _b = reg.admit("b", &at("2001:db8::2")).unwrap();
        let ids = Refusal::TooManyIdentitiesFromAddress(2);
        assert_eq!(reg.admit("c", &at("2001:db8::3")).err(), Some(ids));
        let _a2 = reg.admit("a", &at("2001:db8::1")).unwrap();
        let full = Refusal::TooManyFromAddress(3);
        assert_eq!(reg.admit("a", &at("2001:db8::1")).err(), Some(full));
        assert!(
            reg.admit("c", &at("2001:db8:1::1")).is_ok(),
            "another block"
        );
        drop(a1);
        assert!(reg.admit("a", &at("2001:db8::1")).is_ok(), "given back");
    }

    #[test]
    fn live_limit_is_per_user_and_released_on_drop() {
        let reg = registry(2, 0);
        let a1 = reg.admit("a", &NOBODY).unwrap();
        let _a2 = reg.admit("a", &NOBODY).unwrap();
        assert_eq!(
            reg.admit("a", &NOBODY).err(),
            Some(Refusal::TooManySessions(2))
        );
        let _b = reg.admit("b", &NOBODY).unwrap();
        drop(a1);
        assert!(reg.admit("a", &NOBODY).is_ok());
    }

    #[test]
    fn users_without_sessions_are_forgotten_once_their_openings_expire() {
        let reg = registry(100, 3);
        let live = reg.admit("a", &NOBODY).unwrap();
        drop(reg.admit("b", &NOBODY).unwrap());
        assert_eq!(reg.lock().admission.users(), 2, "b's opening still counts");
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        assert_eq!(reg.lock().admission.users(), 1, "b is forgotten, a is live");
        drop(live);
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        assert_eq!(reg.lock().admission.users(), 0);
    }

    #[test]
    fn rate_limit_counts_openings_not_live_sessions() {
        let reg = registry(100, 3);
        for _ in 0..3 {
            drop(reg.admit("a", &NOBODY).unwrap());
        }
        assert_eq!(reg.admit("a", &NOBODY).err(), Some(Refusal::TooFast(3)));
        assert!(reg.admit("b", &NOBODY).is_ok());
    }
}
