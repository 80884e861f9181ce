//! The one seam between the relay and where shells run. A backend places a user and spawns a
//! shell on a TTY; the relay only ever sees `Tty` (input, resize, hangup) and `TtyOutput` (output,
//! exit code). PTYs (local, or passed by a container's session agent) and `docker exec` sessions
//! implement the same traits, so no relay logic is written twice and the relay never learns about
//! Docker.

pub mod agent;
pub mod docker;
pub mod local;
mod pty;
mod spawn;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::protocol::TermSize;

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

/// Errors of a backend, mapped by the web layer to HTTP statuses or `error` frames.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// The backend cannot take this user now (pool full, Docker unreachable): a 503 with this text.
    #[error("{0}")]
    Unavailable(String),
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

/// The input side of a live terminal. Shared by the tasks of one session.
#[async_trait]
pub trait Tty: Send + Sync {
    /// Writes bytes to the terminal's input; waits while the terminal isn't reading.
    async fn write(&self, data: &[u8]) -> Result<(), TtyError>;
    /// Sets the terminal size; the foreground program gets SIGWINCH.
    async fn resize(&self, size: TermSize) -> Result<(), TtyError>;
    /// Ends the session as closing a real terminal does: SIGHUP to every process of it. Idempotent.
    async fn hangup(&self);
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
    /// Ends every process the placed account still runs there (idle reaping); files stay.
    async fn reap(&self, placement: &Placement) -> Result<(), TtyError>;
    /// The server is stopping: persist what must survive it.
    async fn shutdown(&self) {}
}
