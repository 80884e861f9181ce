//! Idle detach: an attached session with no client input for `Limits::idle_detach` is warned,
//! then detached, so that a forgotten tab does not hold its place (and its account) for good.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Event, LiveSession};

/// How long before the detach the client is warned: a minute, or half the idle time if shorter.
pub fn warning_lead(idle: Duration) -> Duration {
    (idle / 2).min(Duration::from_secs(60))
}

impl LiveSession {
    /// Records client input (or a wish to stay) now.
    pub fn touch(&self) {
        let since_birth = self.born.elapsed().as_millis() as u64;
        self.last_input.store(since_birth, Ordering::Relaxed);
    }

    fn last_input(&self) -> Instant {
        self.born + Duration::from_millis(self.last_input.load(Ordering::Relaxed))
    }

    fn attachment_id(&self) -> Option<u64> {
        self.shared().attachment.as_ref().map(|a| a.id)
    }

    /// Sends `event` to attachment `id`, if it is still the attached one.
    async fn notify(&self, id: u64, event: Event) {
        let tx = {
            let shared = self.shared();
            let attached = shared.attachment.as_ref().filter(|a| a.id == id);
            attached.map(|a| a.tx.clone())
        };
        if let Some(tx) = tx {
            let _ = tx.send(event).await;
        }
    }
}

/// What the watcher does next.
enum Step {
    /// Nothing attached: wait for a socket.
    AwaitAttach,
    /// Not idle yet: look again then.
    Sleep(Instant),
    /// Idle long enough to be warned (attachment id, last input seen).
    Warn(u64, Instant),
}

fn next_step(session: &LiveSession, idle: Duration, lead: Duration) -> Step {
    let Some(id) = session.attachment_id() else {
        return Step::AwaitAttach;
    };
    let last = session.last_input();
    let warn_at = last + idle - lead;
    match warn_at > Instant::now() {
        true => Step::Sleep(warn_at),
        false => Step::Warn(id, last),
    }
}

/// Watches one session until it ends: warns its client `warning_lead` before `idle` without
/// input, and detaches it if none comes. Holds only a weak reference between looks.
pub(super) async fn watch(
    session: Weak<LiveSession>,
    mut generation: watch::Receiver<u64>,
    idle: Duration,
) {
    let lead = warning_lead(idle);
    loop {
        let Some(step) = session.upgrade().map(|s| next_step(&s, idle, lead)) else {
            return;
        };
        match step {
            Step::AwaitAttach => {
                if generation.changed().await.is_err() {
                    return;
                }
            }
            Step::Sleep(until) => {
                // A re-attach restarts the clock: look again at once.
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    changed = generation.changed() => if changed.is_err() { return },
                }
            }
            Step::Warn(id, seen) => {
                if !warn_then_detach(&session, &mut generation, id, seen, lead).await {
                    return;
                }
            }
        }
    }
}

/// Warns attachment `id`, waits `lead`, and detaches it unless input came since `seen`. False
/// once the session is gone.
async fn warn_then_detach(
    session: &Weak<LiveSession>,
    generation: &mut watch::Receiver<u64>,
    id: u64,
    seen: Instant,
    lead: Duration,
) -> bool {
    let detach_in = lead.as_millis().div_ceil(1000) as u64;
    let Some(s) = session.upgrade() else {
        return false;
    };
    s.notify(id, Event::IdleWarning(detach_in)).await;
    drop(s);
    tokio::time::sleep(lead).await;
    let Some(s) = session.upgrade() else {
        return false;
    };
    if s.last_input() > seen {
        return true;
    }
    log::info!("session {} idle: detaching its socket", s.id);
    s.notify(id, Event::IdleDetach).await;
    drop(s);
    // The relay detaches the socket; look again once it has.
    generation.changed().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_comes_a_minute_before_or_halfway() {
        assert_eq!(
            warning_lead(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(warning_lead(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(
            warning_lead(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
    }
}
