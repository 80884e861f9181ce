//! Live sessions, which outlive their WebSockets: a shell on a TTY, its pump, and the socket
//! attached to it, re-attachable for a grace period after it drops. Admission and the session map
//! are in the child modules.

mod addresses;
mod admission;
mod idle;
mod inactivity;
mod listing;
mod pump;
mod registry;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

pub use addresses::address_key;
pub use admission::{Limits, Refusal, Requester};
pub use listing::SessionSummary;
pub use registry::{Registry, SessionSlot};

use crate::audit;
use crate::protocol::TermSize;
use crate::screen::Screen;
use crate::tty::{Placement, Tty, TtyError};

/// Output chunks queued for a slow client before the pump (and so the program) waits.
const ATTACH_QUEUE: usize = 16;

/// What the pump sends to the attached socket.
pub enum Event {
    Output(Bytes),
    /// The server is stopping: the session ends with it.
    ShuttingDown,
    /// The shell ended (its exit code), or the backend lost it (why).
    Ended(Result<Option<i32>, String>),
    /// No input for a while: the socket is detached in this many seconds unless some comes.
    IdleWarning(u64),
    /// No input came after the warning: close the socket (the session waits for a re-attach).
    IdleDetach,
}

/// The socket attached to a session: its output queue and its pause switch.
struct Attachment {
    id: u64,
    tx: mpsc::Sender<Event>,
    paused: watch::Receiver<bool>,
}

struct Shared {
    attachment: Option<Attachment>,
    next_attach: u64,
    /// Whether the shell has printed anything yet (a blank screen needs no redraw).
    output_seen: bool,
    /// Since when no socket has been attached, after one was.
    detached_since: Option<Instant>,
    ended: bool,
}

/// What a socket gets when it attaches.
pub struct Attached {
    pub id: u64,
    /// Output and the end of the session, in order. Closes without `Ended` when another socket
    /// took the session over.
    pub events: mpsc::Receiver<Event>,
    /// `true` while the client has asked for a pause.
    pub paused: watch::Sender<bool>,
    /// The current screen as escape sequences (empty while the shell has printed nothing): what
    /// a re-attaching client shows, and what a new one missed between spawn and attach.
    pub screen: Vec<u8>,
}

pub struct LiveSession {
    pub id: String,
    identity: String,
    pub placement: Placement,
    tty: Arc<dyn Tty>,
    registry: Weak<Registry>,
    /// The emulated screen, kept when sessions can be re-attached.
    screen: Option<Arc<Screen>>,
    shared: Mutex<Shared>,
    /// Bumped whenever the attachment changes, to wake the pump.
    generation: watch::Sender<u64>,
    slot: Mutex<Option<SessionSlot>>,
    born: Instant,
    /// When the client last typed or asked to stay, in ms after `born` (see inactivity.rs).
    last_input: AtomicU64,
    opened_at: std::time::SystemTime,
    /// The TTY's size, as last set.
    size: Mutex<TermSize>,
    /// The client that opened the session, for the audit trail and address blocks.
    pub client: Option<IpAddr>,
    opened: Instant,
    /// Bytes written to the terminal, and read from it (for the audit trail).
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl LiveSession {
    /// A session of the shell on `tty`, with no socket attached yet; the receiver is the pump's.
    fn new(
        registry: &Arc<Registry>,
        slot: SessionSlot,
        placement: Placement,
        tty: Arc<dyn Tty>,
        screen: Option<Arc<Screen>>,
        size: TermSize,
        client: Option<IpAddr>,
    ) -> (Arc<Self>, watch::Receiver<u64>) {
        let (generation, generation_rx) = watch::channel(0);
        let session = Arc::new(LiveSession {
            id: uuid::Uuid::new_v4().to_string(),
            identity: slot.identity().to_owned(),
            placement,
            tty,
            registry: Arc::downgrade(registry),
            screen,
            shared: Mutex::new(Shared {
                attachment: None,
                next_attach: 0,
                output_seen: false,
                detached_since: None,
                ended: false,
            }),
            generation,
            slot: Mutex::new(Some(slot)),
            born: Instant::now(),
            last_input: AtomicU64::new(0),
            opened_at: std::time::SystemTime::now(),
            size: Mutex::new(size),
            client,
            opened: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        });
        (session, generation_rx)
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches a socket, replacing (and so disconnecting) any other. `None` once the session
    /// has ended. The screen is resized to the new client's size: its size wins.
    pub fn attach(&self, size: TermSize) -> Option<Attached> {
        let (tx, events) = mpsc::channel(ATTACH_QUEUE);
        let (paused_tx, paused) = watch::channel(false);
        let mut shared = self.shared();
        if shared.ended {
            return None;
        }
        let screen = self.screen.as_ref().and_then(|screen| {
            screen.resize(size);
            shared.output_seen.then(|| screen.render())
        });
        shared.next_attach += 1;
        let id = shared.next_attach;
        shared.attachment = Some(Attachment { id, tx, paused });
        shared.detached_since = None;
        drop(shared);
        self.touch();
        self.generation.send_modify(|g| *g += 1);
        Some(Attached {
            id,
            events,
            paused: paused_tx,
            screen: screen.unwrap_or_default(),
        })
    }

    /// Writes client input to the TTY.
    pub async fn write(&self, data: &[u8]) -> Result<(), TtyError> {
        self.touch();
        self.bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.tty.write(data).await
    }

    /// Counts output the shell produced.
    fn count_output(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The hex SHA-256 of the session's identity (never the identity itself).
    pub fn identity_hash(&self) -> String {
        crate::pool::identity_hash(&self.identity)
    }

    /// Ends the session at an operator's request: its shell and jobs get SIGHUP, as when the
    /// terminal is closed.
    pub async fn hang_up(&self) {
        self.tty.hangup().await;
    }

    /// The audit line of this session's `event`.
    fn audit(&self, event: &str) -> audit::Line {
        audit::Line::new(event)
            .field("session", &self.id)
            .identity(Some(&self.identity))
            .field("account", &self.placement.user)
            .field(
                "container",
                self.placement.container.as_deref().unwrap_or("-"),
            )
            .client(self.client)
    }

    /// Resizes the TTY, and the screen with it once the TTY has taken the new size.
    pub async fn resize(&self, size: TermSize) -> Result<(), TtyError> {
        self.tty.resize(size).await?;
        *self.size.lock().unwrap_or_else(|e| e.into_inner()) = size;
        if let Some(screen) = &self.screen {
            screen.resize(size);
        }
        Ok(())
    }

    /// The socket of attachment `id` went away without the shell ending: wait for a re-attach
    /// for the grace period, then hang up.
    pub fn detach(self: &Arc<Self>, id: u64) {
        {
            let mut shared = self.shared();
            if shared.attachment.as_ref().map(|a| a.id) != Some(id) {
                return; // another socket has taken over already
            }
            shared.attachment = None;
            shared.detached_since = Some(Instant::now());
        }
        self.generation.send_modify(|g| *g += 1);
        let grace = self.registry.upgrade().map(|r| r.limits.grace);
        let session = self.clone();
        tokio::spawn(async move {
            let grace = grace.unwrap_or_default();
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            // Only this detach's own wait may hang up: after a re-attach and a new drop, the new
            // drop's wait runs its own full grace period.
            let still_detached = {
                let shared = session.shared();
                !shared.ended && shared.attachment.is_none() && shared.next_attach == id
            };
            if still_detached {
                log::info!(
                    "session {} not re-attached in {grace:?}: hanging up",
                    session.id
                );
                session.tty.hangup().await;
            }
        });
    }

    /// Since when the session has been waiting for a re-attach, if it is.
    fn detached_since(&self) -> Option<Instant> {
        let shared = self.shared();
        shared.detached_since.filter(|_| !shared.ended)
    }

    /// The server is stopping: tell the attached client why, then hang up.
    async fn shut_down(&self) {
        let target = self.shared().attachment.as_ref().map(|a| a.tx.clone());
        if let Some(tx) = target {
            let _ = tx.send(Event::ShuttingDown).await;
        }
        self.tty.hangup().await;
    }

    /// The shell has ended: tell the attached client, hang up what it left, give the place back.
    async fn end(&self, result: Result<Option<i32>, String>) {
        let target = {
            let mut shared = self.shared();
            shared.ended = true;
            shared.attachment.take().map(|a| a.tx)
        };
        let ended = self
            .audit("session_end")
            .duration("duration_s", self.opened.elapsed())
            .field("bytes_in", self.bytes_in.load(Ordering::Relaxed))
            .field("bytes_out", self.bytes_out.load(Ordering::Relaxed));
        let ended = match &result {
            Ok(code) => ended.field("exit", code.map_or("-".into(), |c| c.to_string())),
            Err(why) => ended.field("exit", "lost").field("why", why),
        };
        ended.emit();
        if let Some(tx) = target {
            let _ = tx.send(Event::Ended(result)).await;
        }
        // Jobs the shell left behind get their SIGHUP too.
        self.tty.hangup().await;
        // The place first: once the session is no longer counted open, its account is idle.
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(self);
        }
    }
}
