//! Admission on the registry: reserving a session's place (taking a detached session's when
//! the user is at its limit), and the `SessionSlot` that gives the place back when dropped.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::super::admission::{Refusal, Requester};
use super::super::LiveSession;
use super::Registry;
use crate::tty::Placement;

/// How long a new session waits for the detached one it ends to give its place back.
const EVICTION_WAIT: Duration = Duration::from_secs(5);

impl Registry {
    /// Reserves a session for `identity`, or says why not. The reservation ends when the returned
    /// slot is dropped.
    pub fn admit(
        self: &Arc<Self>,
        identity: &str,
        requester: &Requester,
    ) -> Result<SessionSlot, Refusal> {
        let now = Instant::now();
        let admitted = self
            .lock()
            .admission
            .admit(&self.limits, identity, requester, now);
        admitted.map(|address| SessionSlot {
            registry: Arc::downgrade(self),
            identity: identity.to_owned(),
            address,
            placement: None,
        })
    }

    /// Like `admit`, but a user at the per-user limit with detached sessions (tabs it closed)
    /// gets in: its oldest detached session is hung up and its place taken.
    pub async fn admit_evicting(
        self: &Arc<Self>,
        identity: &str,
        requester: &Requester,
    ) -> Result<SessionSlot, Refusal> {
        let refusal = match self.admit(identity, requester) {
            Err(refusal @ Refusal::TooManySessions(_)) => refusal,
            admitted => return admitted,
        };
        let Some(oldest) = self.oldest_detached(identity) else {
            return Err(refusal);
        };
        log::info!(
            "a user at its session limit opens another: hanging up its oldest detached session {}",
            oldest.id
        );
        oldest.tty.hangup().await;
        // Its place is given back once its pump has seen the end.
        let deadline = Instant::now() + EVICTION_WAIT;
        loop {
            match self.admit(identity, requester) {
                Err(Refusal::TooManySessions(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return result,
            }
        }
    }

    /// The detached session of `identity` that has waited longest for a re-attach.
    fn oldest_detached(&self, identity: &str) -> Option<Arc<LiveSession>> {
        let inner = self.lock();
        let detached = inner.sessions.values().filter(|s| s.identity == identity);
        detached
            .filter_map(|s| Some((s.detached_since()?, s)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, s)| s.clone())
    }

    /// Why `admit_evicting` would refuse `identity` now, without reserving anything.
    pub fn check_admission(&self, identity: &str, requester: &Requester) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let refusal = inner
            .admission
            .refusal(&self.limits, identity, requester, Instant::now());
        drop(inner);
        match refusal {
            Some(Refusal::TooManySessions(_)) if self.oldest_detached(identity).is_some() => Ok(()),
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    fn release(&self, slot: &SessionSlot) {
        let (identity, placement) = (&slot.identity, slot.placement.as_ref());
        let now = Instant::now();
        let mut inner = self.lock();
        inner.admission.release(identity, slot.address, now);
        if let Some(placement) = placement {
            inner.accounts.release(placement, now);
        }
    }
}

/// One admitted session. Dropping it gives the place back.
pub struct SessionSlot {
    registry: Weak<Registry>,
    identity: String,
    /// The client address key the session is counted under.
    address: Option<IpAddr>,
    placement: Option<Placement>,
}

impl SessionSlot {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Records where the session runs, once placed: its account is live from now on.
    pub fn bind(&mut self, placement: &Placement) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        if self.placement.is_none() {
            registry.lock().accounts.bind(placement);
            self.placement = Some(placement.clone());
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.release(self);
        }
    }
}
