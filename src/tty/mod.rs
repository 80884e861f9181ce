//! The one seam between the relay and where shells run: a [`Backend`] places a user and spawns a
//! shell; the relay sees only [`Tty`] and [`TtyOutput`]. One file per implementation: `local`
//! (PTY on this machine), `container` (the pool), with `agent` and `exec` as its two terminals;
//! `remote` reaches an agent over TCP (Swarm mode).

pub mod agent;
pub mod container;
mod exec;
pub mod local;
mod pty;
pub mod remote;
mod spawn;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::protocol::TermSize;
use crate::workspace::files::UploadError;

/// Tells whether a Linux account has a live session right now.
pub type IsLive = dyn for<'s> Fn(&'s str) -> bool + Send + Sync;

/// Where a user's sessions run, decided before the WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The Linux account the shell runs as.
    pub user: String,
    /// The container's name, in container mode.
    pub container: Option<String>,
    /// Backend-specific address of the container (its id), in container mode.
    pub container_id: Option<String>,
    /// The account's home directory: the shell's working directory.
    pub home: String,
}

/// An account as the operator sees it (`/admin/users`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountInfo {
    pub user: String,
    /// Hex SHA-256 of the account's identity (what an identity block names).
    pub identity_hash: String,
    pub uid: u32,
    /// The container holding the account's slot, if any.
    pub container: Option<String>,
    pub container_id: Option<String>,
    /// Unix seconds of the account's last known activity.
    pub last_activity: i64,
}

/// The node of a container, where the pool spans several (`/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNode {
    pub container: String,
    pub node: String,
    /// Whether the node is up.
    pub ready: bool,
    /// Whether the node's relay runs (`None`: the pool has none).
    pub relay: Option<bool>,
}

/// Errors of a backend, mapped by the web layer to HTTP statuses or `error` frames.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// The backend cannot take this user now (pool full, engine unreachable, a container that
    /// could not be set up): a 503, or an `error` frame, telling only its kind and reference.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The user is refused for a reason of their own (e.g. rate limit): a 429 with this text.
    #[error("{0}")]
    Refused(String),
    /// Starting or driving the TTY failed.
    #[error("terminal failure: {0}")]
    Io(#[from] std::io::Error),
    /// The terminal has ended; nothing more can be written to it.
    #[error("the terminal has ended")]
    Closed,
}

impl TtyError {
    /// An [`Unavailable`] of `kind` whose `detail` goes to the log only.
    pub fn unavailable(kind: Unavailability, detail: impl std::fmt::Display) -> TtyError {
        TtyError::Unavailable(Unavailable::new(kind, detail))
    }
}

/// What a client may learn of why the backend cannot serve it: one fixed message per kind. The
/// clients are strangers; what failed inside (containers, the engine, host paths) is the
/// operator's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailability {
    /// Every slot is held by a user with a live session.
    PoolFull,
    /// The container engine does not answer.
    EngineDown,
    /// The user's container, account or shell could not be set up.
    NotPrepared,
    /// The session's container (or the connection to it) went away under the session.
    SessionLost,
    /// The terminal could not be resized.
    ResizeFailed,
    /// The host holding the user's slot and files is down, or its session agent does not answer.
    NodeDown,
    /// The volume the user's slot meets is not the one holding the user's files.
    FilesUnreachable,
    /// No terminal can be started now on the host holding the user's files.
    HomeUnavailable,
    /// Every slot on the host holding the user's files is in use.
    HomeFull,
}

impl Unavailability {
    /// The text a client is shown.
    pub fn message(self) -> &'static str {
        match self {
            Unavailability::PoolFull => "pool full: every terminal slot is in use, try again later",
            Unavailability::EngineDown => "the container engine is unavailable, try again later",
            Unavailability::NotPrepared => "your terminal could not be prepared, try again later",
            Unavailability::SessionLost => {
                "the container of this session stopped; reconnect to continue on a fresh one \
                 (your files are kept)"
            }
            Unavailability::ResizeFailed => "the terminal could not be resized",
            Unavailability::NodeDown => {
                "the host holding your files is down; try again later (your files are kept)"
            }
            Unavailability::FilesUnreachable => {
                "your files are not reachable on the volume your terminal's host offers now; \
                 nothing is lost and the operator is told: try again later"
            }
            Unavailability::HomeUnavailable => {
                "the host holding your files cannot start your terminal now; try again later \
                 (your files are kept)"
            }
            // Begins as the whole pool's refusal does, for clients that look for it.
            Unavailability::HomeFull => {
                "pool full on the host holding your files: every terminal slot there is in use, \
                 try again later (your files are kept)"
            }
        }
    }
}

/// Why a backend cannot serve a session. It displays its kind's message and a short random
/// reference; the details are its `source`, and are logged with the same reference when it is
/// made, so an operator finds them from what a client reports whichever layer shows it.
#[derive(Debug, thiserror::Error)]
#[error("{} (reference {reference})", .kind.message())]
pub struct Unavailable {
    pub kind: Unavailability,
    /// 8 hex digits, in the client's message and in the log line with the details.
    pub reference: String,
    #[source]
    detail: Box<dyn std::error::Error + Send + Sync>,
}

impl Unavailable {
    /// Makes one and logs it with its details.
    pub fn new(kind: Unavailability, detail: impl std::fmt::Display) -> Unavailable {
        let reference = format!("{:08x}", rand::random::<u32>());
        // A full pool is the users' doing, not a fault: no warning for it.
        let level = match kind {
            Unavailability::PoolFull | Unavailability::HomeFull => log::Level::Info,
            _ => log::Level::Warn,
        };
        log::log!(
            level,
            "{} (reference {reference}): {detail}",
            kind.message()
        );
        Unavailable {
            kind,
            reference,
            detail: detail.to_string().into(),
        }
    }

    /// What failed, for the operator.
    pub fn detail(&self) -> String {
        self.detail.to_string()
    }
}

/// The input side of a live terminal. Shared by the tasks of one session.
#[async_trait]
pub trait Tty: Send + Sync {
    /// Writes bytes to the terminal's input; waits while the terminal isn't reading.
    async fn write(&self, data: &[u8]) -> Result<(), TtyError>;
    /// Sets the terminal size; the foreground program gets SIGWINCH.
    async fn resize(&self, size: TermSize) -> Result<(), TtyError>;
    /// Ends the session as closing a real terminal does: SIGHUP to every process of it. Idempotent.
    async fn hangup(&self);
    /// The terminal's foreground process group (its leader's pid, as this server sees pids), when
    /// known: what the user is running.
    fn foreground_pid(&self) -> Option<i32> {
        None
    }
    /// The shell's pid in its own pid namespace (the container's, for container sessions), when
    /// known: its working directory is where uploads land.
    fn shell_pid(&self) -> Option<i32> {
        None
    }
}

/// The output side of a live terminal, owned by the one task that relays it.
#[async_trait]
pub trait TtyOutput: Send {
    /// The next bytes the terminal produced, in order; `None` once the shell has ended and its
    /// output is drained. Not calling it is the flow control: the program blocks on a full TTY.
    async fn read(&mut self) -> Option<Bytes>;
    /// The shell's exit code after `read` returned `None` (`None` when unknown), or why the
    /// backend lost the session (e.g. the container engine went away).
    async fn exit_code(&mut self) -> Result<Option<i32>, TtyError>;
}

/// A freshly spawned shell.
pub struct Spawned {
    pub tty: Arc<dyn Tty>,
    pub output: Box<dyn TtyOutput>,
}

/// A place where shells run: the local machine or the container pool.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `"local"` or `"container"`, as the `ready` frame says.
    fn mode(&self) -> &'static str;
    /// Decides where `identity`'s sessions run, making sure the account exists there.
    /// `has_live_session(user)` tells whether a Linux user has a session open right now.
    async fn place(&self, identity: &str, has_live_session: &IsLive)
        -> Result<Placement, TtyError>;
    /// Starts a login shell for a placed user on a TTY of the given size.
    async fn spawn(&self, placement: &Placement, size: TermSize) -> Result<Spawned, TtyError>;
    /// A short health line for /healthz (`Ok` when the backend can take sessions).
    async fn health(&self) -> Result<serde_json::Value, String>;
    /// Writes an uploaded file (`length` bytes arriving on `body`) as the placed user into the
    /// working directory of its shell `shell_pid` (else the home); returns the path written.
    /// Never over an existing file, never through a symlink; a body that ends short leaves nothing.
    async fn write_file(
        &self,
        _placement: &Placement,
        _shell_pid: Option<i32>,
        _name: &str,
        _length: u64,
        _body: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<String, UploadError> {
        Err(UploadError::Unsupported)
    }
    /// Ends every process the placed account still runs there (idle reaping); files stay.
    async fn reap(&self, placement: &Placement) -> Result<(), TtyError>;
    /// Records that the account has a live session now (kept across restarts for idle reaping).
    fn note_activity(&self, _account: &str) {}
    /// Accounts whose last recorded activity is before `before` (unix seconds) and that may
    /// still run processes: what idle reaping resumes from after a restart (none in local mode).
    /// `container_id` is `None` while the account's container is not known yet.
    async fn idle_accounts(&self, _before: i64) -> Result<Vec<Placement>, TtyError> {
        Ok(Vec::new())
    }
    /// The server is stopping: persist what must survive it.
    async fn shutdown(&self) {}
    /// The accounts the backend keeps, for the operator (none in local mode).
    async fn accounts(&self) -> Result<Vec<AccountInfo>, TtyError> {
        Ok(Vec::new())
    }
    /// Users holding a slot in each container, by container name (none in local mode).
    fn users_per_container(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
    /// The node of each container, where the pool spans several nodes.
    fn container_nodes(&self) -> Vec<ContainerNode> {
        Vec::new()
    }
}
