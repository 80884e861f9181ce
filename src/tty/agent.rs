//! Terminals started by the session agent inside a user container (`agent/`), which passes the
//! PTY master to the server over a per-container unix socket; one SOCK_SEQPACKET connection per
//! session carries its exit code and hang-up.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use termpool_agent_proto::Reply;
pub use termpool_agent_proto::ShellRequest;
use termpool_agent_proto::{connect_seqpacket, is_busy, is_not_listening, recv_with_fds};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::OnceCell;

use super::pty::{self, PtyMaster, Shell};
use super::{Spawned, TtyError, Unavailability};

/// The largest message the agent sends (its answers are a few dozen bytes).
const MAX_MESSAGE: usize = 4096;
/// How often a connection to an agent that is not listening yet (a container just started) is
/// tried again.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// Connects to the agent listening at `socket`. A socket that is missing or refuses is tried again
/// for up to `grace` (a container that has just started), then the agent is taken for gone; a
/// busy one (its backlog full) is tried until it accepts.
pub async fn connect(socket: &Path, grace: Duration) -> io::Result<Conn> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match Conn::connect(socket) {
            Ok(conn) => return Ok(conn),
            Err(e) if is_busy(&e) => {}
            Err(e) if is_not_listening(&e) && tokio::time::Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
        tokio::time::sleep(CONNECT_RETRY).await;
    }
}

/// Starts a login shell through the agent of `conn`, waiting up to `timeout` for it.
pub async fn spawn(
    conn: Conn,
    request: &ShellRequest<'_>,
    timeout: Duration,
) -> Result<Spawned, TtyError> {
    let started = tokio::time::timeout(timeout, start(conn, request)).await;
    started.map_err(|_| {
        TtyError::unavailable(
            Unavailability::NotPrepared,
            format!(
                "the session agent did not start a shell for {} within {timeout:?}",
                request.user
            ),
        )
    })?
}

async fn start(conn: Conn, request: &ShellRequest<'_>) -> Result<Spawned, TtyError> {
    let body = serde_json::to_vec(request).map_err(io::Error::other)?;
    let failed = |detail: String| {
        TtyError::unavailable(
            Unavailability::NotPrepared,
            format!(
                "the session agent, starting a shell for {}: {detail}",
                request.user
            ),
        )
    };
    conn.send(&body).await.map_err(|e| failed(e.to_string()))?;
    let (reply, fd) = conn.recv().await.map_err(|e| failed(e.to_string()))?;
    match (reply, fd) {
        (Some(Reply { pid: Some(pid), .. }), Some(fd)) if is_pty_master(&fd) => {
            let _ = conn.pid.set(pid);
            Ok(pty::session(PtyMaster::new(fd)?, conn))
        }
        (
            Some(Reply {
                error: Some(error), ..
            }),
            _,
        ) => Err(failed(format!("refused: {error}"))),
        _ => Err(failed("an answer that makes no sense".into())),
    }
}

/// Whether `fd` is the master side of a PTY (only a master answers TIOCGPTN).
fn is_pty_master(fd: &OwnedFd) -> bool {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to a valid pointer.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) == 0 }
}

#[async_trait]
impl Shell for Conn {
    fn pid(&self) -> Option<i32> {
        self.pid.get().and_then(|&pid| i32::try_from(pid).ok())
    }

    async fn exited(&self) {
        let _ = self.exit().await;
    }

    async fn exit_code(&self) -> Result<Option<i32>, TtyError> {
        self.exit()
            .await
            .clone()
            .map_err(|detail| TtyError::unavailable(Unavailability::SessionLost, detail))
    }

    async fn hang_up(this: &Arc<Self>) {
        // The agent signals the session and closes the connection. When it cannot be told (the
        // container is gone), there is nothing left to hang up.
        this.hung_up.store(true, Ordering::SeqCst);
        let _ = this.send(br#"{"hangup":true}"#).await;
    }
}

/// A connection to an agent: one session's, from its start to its end.
pub struct Conn {
    fd: AsyncFd<OwnedFd>,
    /// The shell's exit code, or why the agent went away without telling it.
    exit: OnceCell<Result<Option<i32>, String>>,
    /// The server hung the session up: the agent then closes without an exit code.
    hung_up: AtomicBool,
    /// The shell's pid in the container, as the agent reported it.
    pid: std::sync::OnceLock<u32>,
}

impl Conn {
    /// One attempt to connect.
    fn connect(path: &Path) -> io::Result<Conn> {
        let fd = connect_seqpacket(path)?;
        // SAFETY: the fd is owned by this AsyncFd alone and closed only with it.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Conn {
            fd,
            exit: OnceCell::new(),
            hung_up: AtomicBool::new(false),
            pid: std::sync::OnceLock::new(),
        })
    }

    async fn send(&self, message: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |fd| sys_send(fd.as_raw_fd(), message))
            .await
            .map(drop)
    }

    /// The next message and the fd that came with it; `None` when the agent closed.
    async fn recv(&self) -> io::Result<(Option<Reply>, Option<OwnedFd>)> {
        // The buffer exists only while a message is read: a session waits on this for its whole
        // life, and a buffer held across the wait would cost every idle session its size.
        let (message, fd) = self
            .fd
            .async_io(Interest::READABLE, |fd| {
                let mut buf = [0u8; MAX_MESSAGE];
                let (n, passed) = recv_with_fd(fd.as_raw_fd(), &mut buf)?;
                Ok((buf[..n].to_vec(), passed))
            })
            .await?;
        if message.is_empty() {
            return Ok((None, fd));
        }
        let reply = serde_json::from_slice(&message)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((Some(reply), fd))
    }

    /// Waits for the agent's report of the shell's exit.
    async fn exit(&self) -> &Result<Option<i32>, String> {
        self.exit
            .get_or_init(|| async {
                loop {
                    match self.recv().await {
                        Ok((
                            Some(Reply {
                                exit: Some(code), ..
                            }),
                            _,
                        )) => return Ok(code),
                        Ok((Some(_), _)) => continue,
                        Ok((None, _)) if self.hung_up.load(Ordering::SeqCst) => return Ok(None),
                        Ok((None, _)) => {
                            return Err("the session agent closed the connection without \
                                        telling the shell's exit (the container stopped?)"
                                .into())
                        }
                        Err(e) => return Err(format!("the session agent's connection: {e}")),
                    }
                }
            })
            .await
    }
}

fn sys_send(fd: RawFd, message: &[u8]) -> io::Result<usize> {
    // SAFETY: message is valid for reads of its length.
    let n = unsafe {
        libc::send(
            fd,
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One message into `buf`, and the first fd passed with it (any others are closed).
fn recv_with_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let (n, fds) = recv_with_fds(fd, buf)?;
    Ok((n, fds.into_iter().next()))
}
