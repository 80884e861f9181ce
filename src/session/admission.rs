//! Whether a user may open one more session now: live sessions per user, per client address and
//! on the server, openings per minute, identities per client address. Decided before the upgrade.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::addresses::{address_key, Addresses};

pub(super) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Why a user may not open another session now.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many live sessions: at most {0} per user")]
    TooManySessions(usize),
    #[error("too many new sessions: at most {0} per minute per user")]
    TooFast(u32),
    #[error("too many new users from your address: at most {0} per minute; try again in a minute")]
    TooManyNewcomers(u32),
    #[error("the server is full: it runs at most {0} sessions at once; try again later")]
    ServerFull(usize),
    #[error("too many live sessions from your address: at most {0} at once")]
    TooManyFromAddress(usize),
    #[error("too many users from your address at once: at most {0}")]
    TooManyIdentitiesFromAddress(usize),
}

impl Refusal {
    /// Whether the server as a whole, rather than this client, is out of room (503, not 429).
    pub fn is_server_full(&self) -> bool {
        matches!(self, Refusal::ServerFull(_))
    }
}

/// Limits and timing of sessions.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_live: usize,
    pub max_per_minute: u32,
    /// Live sessions on the whole server (0: no limit).
    pub max_total: usize,
    /// New identities per client address per minute (0: no limit).
    pub max_newcomers_per_minute: u32,
    /// Live sessions per client address (0: no limit).
    pub max_per_address: usize,
    /// Identities with a live session per client address (0: no limit).
    pub max_identities_per_address: usize,
    /// The IPv6 block a client is counted by in every per-address limit, in bits.
    pub ipv6_prefix_len: u8,
    /// An attached session with no input this long is detached (zero: never).
    pub idle_detach: Duration,
    /// How long a detached session waits for a re-attach (zero: hang up at once).
    pub grace: Duration,
    /// How long an account may have no live session before its leftover processes are ended.
    pub idle_reap: Duration,
}

impl Limits {
    /// Why one more session of this user is refused, if it is.
    fn refusal(&self, entry: &UserEntry, now: Instant) -> Option<Refusal> {
        if entry.live >= self.max_live {
            return Some(Refusal::TooManySessions(self.max_live));
        }
        let recent = entry
            .opened
            .iter()
            .filter(|t| now.duration_since(**t) < RATE_WINDOW)
            .count();
        let per_minute = self.max_per_minute;
        (per_minute > 0 && recent >= per_minute as usize).then_some(Refusal::TooFast(per_minute))
    }

    /// Why one more new identity from an address that admitted `recent` in the last minute is
    /// refused, if it is.
    fn newcomer_refusal(&self, recent: usize) -> Option<Refusal> {
        let limit = self.max_newcomers_per_minute;
        (limit > 0 && recent >= limit as usize).then_some(Refusal::TooManyNewcomers(limit))
    }

    /// Why one more session of `identity` from an address that holds `sessions` sessions of
    /// `identities` identities (`has`: one of them is this one's) is refused, if it is.
    fn address_refusal(
        &self,
        (sessions, identities, has): (usize, usize, bool),
    ) -> Option<Refusal> {
        let (max, max_ids) = (self.max_per_address, self.max_identities_per_address);
        if max > 0 && sessions >= max {
            return Some(Refusal::TooManyFromAddress(max));
        }
        (max_ids > 0 && !has && identities >= max_ids)
            .then_some(Refusal::TooManyIdentitiesFromAddress(max_ids))
    }

    fn total_refusal(&self, live_total: usize) -> Option<Refusal> {
        let limit = self.max_total;
        (limit > 0 && live_total >= limit).then_some(Refusal::ServerFull(limit))
    }
}

#[derive(Default)]
struct UserEntry {
    live: usize,
    opened: VecDeque<Instant>,
}

impl UserEntry {
    /// Drops the openings that no longer count against the rate limit.
    fn forget_old_openings(&mut self, now: Instant) {
        recent(&mut self.opened, now);
    }

    /// Nothing left to remember: no live session, no opening that still counts.
    fn is_quiet(&self) -> bool {
        self.live == 0 && self.opened.is_empty()
    }
}

/// Forgets the times of `window` a minute old or more; returns how many are left.
fn recent(window: &mut VecDeque<Instant>, now: Instant) -> usize {
    while window
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
    {
        window.pop_front();
    }
    window.len()
}

/// Who asks for a session, besides its identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester {
    /// The client's address as the trusted proxies tell (`None`: not counted per address).
    pub address: Option<IpAddr>,
    /// Whether identities are free to make (cookie mode): new ones are then counted per minute.
    pub anonymous: bool,
}

/// The counts that admission decides on.
#[derive(Default)]
pub(super) struct Admission {
    /// Keyed by identity.
    users: HashMap<String, UserEntry>,
    /// Admitted sessions of all users (placed or being placed).
    live_total: usize,
    /// When new anonymous identities were admitted, per client address (see `address_key`).
    newcomers: HashMap<IpAddr, VecDeque<Instant>>,
    /// What each client address holds.
    addresses: Addresses,
}

impl Admission {
    /// Why `identity` may not open one more session now for `requester`, if it may not.
    pub(super) fn refusal(
        &mut self,
        limits: &Limits,
        identity: &str,
        requester: &Requester,
        now: Instant,
    ) -> Option<Refusal> {
        let key = requester
            .address
            .map(|a| address_key(a, limits.ipv6_prefix_len));
        let known = self.users.get_mut(identity).and_then(|entry| {
            entry.forget_old_openings(now);
            (!entry.is_quiet()).then_some(entry)
        });
        let refusal = match known {
            Some(entry) => limits.refusal(entry, now),
            None => key.filter(|_| requester.anonymous).and_then(|key| {
                let window = self.newcomers.entry(key).or_default();
                limits.newcomer_refusal(recent(window, now))
            }),
        };
        refusal
            .or_else(|| key.and_then(|k| limits.address_refusal(self.addresses.held(k, identity))))
            .or_else(|| limits.total_refusal(self.live_total))
    }

    /// Counts one more session of `identity`, or says why not; the address key it was counted
    /// under, for `release`.
    pub(super) fn admit(
        &mut self,
        limits: &Limits,
        identity: &str,
        requester: &Requester,
        now: Instant,
    ) -> Result<Option<IpAddr>, Refusal> {
        if let Some(refusal) = self.refusal(limits, identity, requester, now) {
            return Err(refusal);
        }
        let key = requester
            .address
            .map(|a| address_key(a, limits.ipv6_prefix_len));
        let entry = self.users.entry(identity.to_owned()).or_default();
        let newcomer = entry.is_quiet();
        entry.live += 1;
        entry.opened.push_back(now);
        self.live_total += 1;
        if let Some(key) = key {
            self.addresses.add(key, identity);
            if newcomer && requester.anonymous {
                self.newcomers.entry(key).or_default().push_back(now);
            }
        }
        Ok(key)
    }

    /// One session of `identity`, counted under address key `key`, has ended.
    pub(super) fn release(&mut self, identity: &str, key: Option<IpAddr>, now: Instant) {
        self.live_total -= 1;
        if let Some(key) = key {
            self.addresses.remove(key, identity);
        }
        if let Some(entry) = self.users.get_mut(identity) {
            entry.live -= 1;
            entry.forget_old_openings(now);
            if entry.is_quiet() {
                self.users.remove(identity);
            }
        }
    }

    /// Forgets the users with no live session and no recent opening: every anonymous visitor would
    /// otherwise leave an entry behind for good.
    pub(super) fn forget_quiet_users(&mut self, now: Instant) {
        self.users.retain(|_, entry| {
            entry.forget_old_openings(now);
            !entry.is_quiet()
        });
        self.newcomers.retain(|_, window| recent(window, now) > 0);
    }

    /// How many users are remembered.
    #[cfg(test)]
    pub(super) fn users(&self) -> usize {
        self.users.len()
    }

    #[cfg(test)]
    pub(super) fn knows(&self, identity: &str) -> bool {
        self.users.contains_key(identity)
    }
}
