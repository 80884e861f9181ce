//! Live sessions, which outlive their WebSockets.
//!
//! A session is a shell on a TTY plus a *pump* task that reads its output, keeps a terminal
//! emulator's screen up to date (vt100), and forwards the bytes to whichever socket is attached.
//! When a socket drops without the shell exiting, the session waits for a grace period; a new
//! socket of the same user may re-attach and is first sent the current screen. When the grace
//! period ends the shell is hung up, as when a real terminal is closed.
//!
//! The registry also admits sessions: live sessions per user and on the whole server, new sessions
//! per user and new identities per client address per minute, and which Linux accounts have a
//! live session (the pool frees only slots of users without one). Admission happens before the
//! WebSocket upgrade, so a refusal is a plain HTTP 429 (or 503 when the server is full).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::protocol::TermSize;
use crate::screen::Screen;
use crate::tty::{Backend, Placement, Spawned, Tty, TtyOutput};

const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Output chunks queued for a slow client before the pump (and so the program) waits.
const ATTACH_QUEUE: usize = 16;

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
}

impl Refusal {
    /// Whether the server as a whole, rather than this client, is out of room (503, not 429).
    pub fn is_server_full(&self) -> bool {
        matches!(self, Refusal::ServerFull(_))
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

/// The key a client address is counted under: an IPv6 host usually holds a whole /64, and would
/// otherwise be a new client with every address of it.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

#[derive(Default)]
struct Inner {
    /// Keyed by identity.
    users: HashMap<String, UserEntry>,
    /// Live sessions per Linux account.
    accounts: HashMap<String, usize>,
    /// Live sessions by id.
    sessions: HashMap<String, Arc<LiveSession>>,
    /// Accounts with no live session: since when, and where they ran (for idle reaping).
    idle: HashMap<String, (Instant, Placement)>,
    /// Admitted sessions of all users (placed or being placed).
    live_total: usize,
    /// When new anonymous identities were admitted, per client address (see `address_key`).
    newcomers: HashMap<IpAddr, VecDeque<Instant>>,
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

    fn total_refusal(&self, live_total: usize) -> Option<Refusal> {
        let limit = self.max_total;
        (limit > 0 && live_total >= limit).then_some(Refusal::ServerFull(limit))
    }
}

impl Inner {
    /// Why `identity` may not open one more session now, if it may not; `newcomer_from` is the
    /// client address that a new identity is counted against (`None`: not counted).
    fn refusal(
        &mut self,
        limits: &Limits,
        identity: &str,
        newcomer_from: Option<IpAddr>,
        now: Instant,
    ) -> Option<Refusal> {
        let known = self.users.get_mut(identity).and_then(|entry| {
            entry.forget_old_openings(now);
            (!entry.is_quiet()).then_some(entry)
        });
        let refusal = match known {
            Some(entry) => limits.refusal(entry, now),
            None => newcomer_from.and_then(|address| {
                let window = self.newcomers.entry(address_key(address)).or_default();
                limits.newcomer_refusal(recent(window, now))
            }),
        };
        refusal.or_else(|| limits.total_refusal(self.live_total))
    }
}

pub struct Registry {
    inner: Mutex<Inner>,
    limits: Limits,
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a session for `identity`, or says why not. The reservation ends when the returned
    /// slot is dropped. `newcomer_from`: the client address to count the identity against if it
    /// is new (no live session, no opening in the last minute); `None` where identities are not
    /// free to make.
    pub fn admit(
        self: &Arc<Self>,
        identity: &str,
        newcomer_from: Option<IpAddr>,
    ) -> Result<SessionSlot, Refusal> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(refusal) = inner.refusal(&self.limits, identity, newcomer_from, now) {
            return Err(refusal);
        }
        let entry = inner.users.entry(identity.to_owned()).or_default();
        let newcomer = entry.is_quiet();
        entry.live += 1;
        entry.opened.push_back(now);
        inner.live_total += 1;
        if let Some(address) = newcomer_from.filter(|_| newcomer) {
            let window = inner.newcomers.entry(address_key(address)).or_default();
            window.push_back(now);
        }
        Ok(SessionSlot {
            registry: Arc::downgrade(self),
            identity: identity.to_owned(),
            placement: None,
        })
    }

    /// Why `admit` would refuse `identity` now, without reserving anything.
    pub fn check_admission(
        &self,
        identity: &str,
        newcomer_from: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let refusal = inner.refusal(&self.limits, identity, newcomer_from, Instant::now());
        refusal.map_or(Ok(()), Err)
    }

    /// Whether the Linux account has a live session right now (attached or waiting for one).
    pub fn account_is_live(&self, account: &str) -> bool {
        self.lock().accounts.get(account).is_some_and(|n| *n > 0)
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
    ) -> Arc<LiveSession> {
        let (generation, generation_rx) = watch::channel(0);
        let session = Arc::new(LiveSession {
            id: uuid::Uuid::new_v4().to_string(),
            identity: slot.identity.clone(),
            placement,
            tty: spawned.tty,
            registry: Arc::downgrade(self),
            // Without re-attach nobody needs the screen: no emulator, no cost.
            screen: (!self.limits.grace.is_zero()).then(|| Screen::new(size)),
            shared: Mutex::new(Shared {
                attachment: None,
                next_attach: 0,
                output_seen: false,
                ended: false,
            }),
            generation,
            slot: Mutex::new(Some(slot)),
        });
        self.lock()
            .sessions
            .insert(session.id.clone(), session.clone());
        self.metrics.sessions_open.fetch_add(1, Ordering::Relaxed);
        self.metrics.sessions_total.fetch_add(1, Ordering::Relaxed);
        // On the worker's local set, beside the relay and the HTTP connection it writes to: a chunk
        // then reaches the socket in one pass of that set, without a round through the runtime.
        tokio::task::spawn_local(pump(session.clone(), spawned.output, generation_rx));
        session
    }

    /// Live sessions right now.
    pub fn live_sessions(&self) -> Vec<Arc<LiveSession>> {
        self.lock().sessions.values().cloned().collect()
    }

    fn forget(&self, session: &LiveSession) {
        if self.lock().sessions.remove(&session.id).is_some() {
            self.metrics.sessions_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn release(&self, identity: &str, placement: Option<&Placement>) {
        let mut inner = self.lock();
        inner.live_total -= 1;
        if let Some(entry) = inner.users.get_mut(identity) {
            entry.live -= 1;
            entry.forget_old_openings(Instant::now());
            if entry.is_quiet() {
                inner.users.remove(identity);
            }
        }
        if let Some(placement) = placement {
            if let Some(n) = inner.accounts.get_mut(&placement.user) {
                *n -= 1;
                if *n == 0 {
                    inner.accounts.remove(&placement.user);
                    let idle = (Instant::now(), placement.clone());
                    inner.idle.insert(placement.user.clone(), idle);
                }
            }
        }
    }

    /// Forgets the users with no live session and no recent opening: every anonymous visitor would
    /// otherwise leave an entry behind for good.
    fn forget_quiet_users(&self, now: Instant) {
        let mut inner = self.lock();
        inner.users.retain(|_, entry| {
            entry.forget_old_openings(now);
            !entry.is_quiet()
        });
        inner.newcomers.retain(|_, window| recent(window, now) > 0);
    }

    /// Accounts idle for `limit` or longer, taken off the idle list.
    fn take_idle(&self, limit: Duration) -> Vec<Placement> {
        let mut inner = self.lock();
        let due: Vec<String> = inner
            .idle
            .iter()
            .filter(|(_, (since, _))| since.elapsed() >= limit)
            .map(|(account, _)| account.clone())
            .collect();
        due.iter()
            .filter_map(|account| inner.idle.remove(account).map(|(_, p)| p))
            .collect()
    }

    /// Ends the leftover processes (nohup jobs, daemons) of accounts that have had no live
    /// session for `Limits::idle_reap`; their files stay. Runs until the process ends.
    pub async fn reap_idle_forever(self: Arc<Self>, backend: Arc<dyn Backend>) {
        let limit = self.limits.idle_reap;
        let every = (limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            self.forget_quiet_users(Instant::now());
            for placement in self.take_idle(limit) {
                log::info!(
                    "reaping processes of {} (idle for {limit:?})",
                    placement.user
                );
                if let Err(e) = backend.reap(&placement).await {
                    log::warn!("could not reap {}: {e}", placement.user);
                }
            }
        }
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

/// One admitted session. Dropping it gives the place back.
pub struct SessionSlot {
    registry: Weak<Registry>,
    identity: String,
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
            let mut inner = registry.lock();
            *inner.accounts.entry(placement.user.clone()).or_default() += 1;
            inner.idle.remove(&placement.user);
            self.placement = Some(placement.clone());
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.release(&self.identity, self.placement.as_ref());
        }
    }
}

/// What the pump sends to the attached socket.
pub enum Event {
    Output(Bytes),
    /// The server is stopping: the session ends with it.
    ShuttingDown,
    /// The shell ended (its exit code), or the backend lost it (why).
    Ended(Result<Option<i32>, String>),
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
    pub tty: Arc<dyn Tty>,
    registry: Weak<Registry>,
    /// The emulated screen, kept when sessions can be re-attached.
    screen: Option<Arc<Screen>>,
    shared: Mutex<Shared>,
    /// Bumped whenever the attachment changes, to wake the pump.
    generation: watch::Sender<u64>,
    slot: Mutex<Option<SessionSlot>>,
}

impl LiveSession {
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
        drop(shared);
        self.generation.send_modify(|g| *g += 1);
        Some(Attached {
            id,
            events,
            paused: paused_tx,
            screen: screen.unwrap_or_default(),
        })
    }

    /// Keeps the screen's size in step with the TTY's.
    pub fn resized(&self, size: TermSize) {
        if let Some(screen) = &self.screen {
            screen.resize(size);
        }
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

    /// Feeds output to the screen; returns where to send it.
    fn record(&self, chunk: &Bytes) -> Option<mpsc::Sender<Event>> {
        // Under the lock that `attach` takes: a chunk goes either into the screen a new socket is
        // sent or to that socket, never both.
        let mut shared = self.shared();
        if let Some(screen) = &self.screen {
            screen.feed(chunk.clone());
        }
        shared.output_seen = true;
        shared.attachment.as_ref().map(|a| a.tx.clone())
    }

    /// How the pump treats output under the current attachment.
    fn reading(&self) -> Reading {
        let shared = self.shared();
        match &shared.attachment {
            Some(a) => Reading::Attached(a.paused.clone()),
            // Into the emulated screen; without one, after a socket has come and gone, only
            // the end of the shell is still of interest.
            None if self.screen.is_some() || shared.next_attach > 0 => Reading::Detached,
            None => Reading::Waiting,
        }
    }

    /// The server is stopping: tell the attached client why, then hang up.
    async fn shut_down(&self) {
        let target = self.shared().attachment.as_ref().map(|a| a.tx.clone());
        if let Some(tx) = target {
            let _ = tx.send(Event::ShuttingDown).await;
        }
        self.tty.hangup().await;
    }

    async fn end(&self, result: Result<Option<i32>, String>) {
        let target = {
            let mut shared = self.shared();
            shared.ended = true;
            shared.attachment.take().map(|a| a.tx)
        };
        if let Some(tx) = target {
            let _ = tx.send(Event::Ended(result)).await;
        }
        // Jobs the shell left behind get their SIGHUP too.
        self.tty.hangup().await;
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(self);
        }
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// How the pump treats output; it changes only with the attachment (a `generation` bump).
enum Reading {
    /// A socket is attached: read unless it has asked for a pause.
    Attached(watch::Receiver<bool>),
    /// No socket: read all the same (see `LiveSession::reading`).
    Detached,
    /// No socket has come yet and there is no screen: leave output in the TTY (the program
    /// waits) until one comes.
    Waiting,
}

/// What the pump waits for next.
enum Wake {
    Output(Option<Bytes>),
    /// The attachment changed.
    Reattached,
    /// The attached client paused or resumed.
    PauseChanged,
}

/// Reads the shell's output until it ends: into the screen, and to the attached socket if any.
/// Not reading while the client has paused is the flow control: the program then blocks.
async fn pump(
    session: Arc<LiveSession>,
    mut output: Box<dyn TtyOutput>,
    mut generation: watch::Receiver<u64>,
) {
    let mut reading = session.reading();
    loop {
        let wake = match &mut reading {
            Reading::Attached(paused) if *paused.borrow() => tokio::select! {
                _ = pause_changed(paused) => Wake::PauseChanged,
                _ = generation.changed() => Wake::Reattached,
            },
            Reading::Attached(paused) => tokio::select! {
                biased;
                _ = generation.changed() => Wake::Reattached,
                _ = pause_changed(paused) => Wake::PauseChanged,
                chunk = output.read() => Wake::Output(chunk),
            },
            Reading::Detached => tokio::select! {
                biased;
                _ = generation.changed() => Wake::Reattached,
                chunk = output.read() => Wake::Output(chunk),
            },
            Reading::Waiting => match generation.changed().await {
                Ok(()) => Wake::Reattached,
                Err(_) => break,
            },
        };
        match wake {
            Wake::Output(Some(chunk)) => {
                forward(&session, chunk).await;
                // The socket's tasks share this thread: let them send the chunk before this task
                // reads again (that read mostly finds the PTY empty; it needn't delay an echo).
                tokio::task::yield_now().await;
            }
            Wake::Output(None) => break,
            Wake::Reattached => reading = session.reading(),
            Wake::PauseChanged => {}
        }
    }
    let result = output.exit_code().await.map_err(|e| e.to_string());
    session.end(result).await;
}

/// Resolves when the client pauses or resumes; never once its socket is gone (its detach then
/// bumps the generation instead).
async fn pause_changed(paused: &mut watch::Receiver<bool>) {
    if paused.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn forward(session: &LiveSession, chunk: Bytes) {
    if let Some(tx) = session.record(&chunk) {
        // A slow client makes this wait (backpressure); a client that went away makes it fail.
        let _ = tx.send(Event::Output(chunk)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_live: usize, per_minute: u32) -> Limits {
        Limits {
            max_live,
            max_per_minute: per_minute,
            max_total: 0,
            max_newcomers_per_minute: 0,
            grace: Duration::ZERO,
            idle_reap: Duration::from_secs(60),
        }
    }

    fn registry(max_live: usize, per_minute: u32) -> Arc<Registry> {
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
        let a = reg.admit("a", None).unwrap();
        let _b = reg.admit("b", None).unwrap();
        let full = reg.admit("c", None).err().unwrap();
        assert!(full.is_server_full());
        assert_eq!(reg.check_admission("a", None), Err(Refusal::ServerFull(2)));
        drop(a);
        assert!(reg.admit("c", None).is_ok());
    }

    #[test]
    fn new_identities_are_counted_per_address_and_ipv6_per_64() {
        let reg = Registry::new(
            Limits {
                max_newcomers_per_minute: 2,
                ..limits(5, 0)
            },
            Arc::default(),
        );
        let at = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        let _a = reg.admit("a", at("192.0.2.1")).unwrap();
        let _b = reg.admit("b", at("::ffff:192.0.2.1")).unwrap();
        let refused = Err(Refusal::TooManyNewcomers(2));
        assert_eq!(reg.check_admission("c", at("192.0.2.1")), refused);
        assert_eq!(reg.admit("c", at("192.0.2.1")).err(), refused.err());
        // Known identities are not new; other addresses, and uncounted identities, are apart.
        let _a2 = reg.admit("a", at("192.0.2.1")).unwrap();
        assert!(reg.admit("c", at("192.0.2.2")).is_ok());
        assert!(reg.admit("d", None).is_ok());
        let _e = reg.admit("e", at("2001:db8::1")).unwrap();
        let _f = reg.admit("f", at("2001:db8::ffff:1")).unwrap();
        assert!(reg.admit("g", at("2001:db8::2")).is_err(), "the same /64");
        assert!(reg.admit("g", at("2001:db8:0:1::2")).is_ok());
        // A minute later, the address may bring new identities again.
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        let mut inner = reg.lock();
        let later = Instant::now() + RATE_WINDOW;
        assert_eq!(
            inner.refusal(&reg.limits, "h", at("192.0.2.1"), later),
            None
        );
    }

    #[test]
    fn live_limit_is_per_user_and_released_on_drop() {
        let reg = registry(2, 0);
        let a1 = reg.admit("a", None).unwrap();
        let _a2 = reg.admit("a", None).unwrap();
        assert_eq!(
            reg.admit("a", None).err(),
            Some(Refusal::TooManySessions(2))
        );
        let _b = reg.admit("b", None).unwrap();
        drop(a1);
        assert!(reg.admit("a", None).is_ok());
    }

    #[test]
    fn users_without_sessions_are_forgotten_once_their_openings_expire() {
        let reg = registry(100, 3);
        let live = reg.admit("a", None).unwrap();
        drop(reg.admit("b", None).unwrap());
        assert_eq!(reg.lock().users.len(), 2, "b's opening still counts");
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        assert_eq!(reg.lock().users.len(), 1, "b is forgotten, a is live");
        drop(live);
        reg.forget_quiet_users(Instant::now() + RATE_WINDOW);
        assert!(reg.lock().users.is_empty());
    }

    #[test]
    fn rate_limit_counts_openings_not_live_sessions() {
        let reg = registry(100, 3);
        for _ in 0..3 {
            drop(reg.admit("a", None).unwrap());
        }
        assert_eq!(reg.admit("a", None).err(), Some(Refusal::TooFast(3)));
        assert!(reg.admit("b", None).is_ok());
    }

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
        let mut s1 = reg.admit("a", None).unwrap();
        let mut s2 = reg.admit("a", None).unwrap();
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
            reg.lock().users.contains_key("a"),
            "rate history kept for a minute"
        );
        assert!(
            reg.take_idle(Duration::from_secs(3600)).is_empty(),
            "not idle long enough"
        );
        assert_eq!(reg.take_idle(Duration::ZERO), vec![placement("u1")]);
        assert!(reg.take_idle(Duration::ZERO).is_empty(), "reaped once");
    }
}
