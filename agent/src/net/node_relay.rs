//! The node's relay (`termpool-agent --relay`): a Swarm service of its own on every node, outside
//! the users' containers, that relays the sessions the agents of that node hand off to it
//! (`handoff`). Reading the PTYs and sealing their output then costs the node, as the server
//! does on a single host, instead of the CPU quota of the user whose program writes.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use termpool_agent_proto::{decode_handoff, HANDOFF_LEN};

use super::conn::invalid;
use super::handoff::TAKEN;
use super::relay::{self, Session, ShellEnd};
use crate::{log, sys};

/// Where the relay listens when `TERMPOOL_RELAY_SOCKET` does not say.
pub const DEFAULT_SOCKET: &str = "/run/termpool-relay/relay.sock";
/// Sessions relayed at once; the agents relay any more themselves.
pub const MAX_SESSIONS: usize = 8192;
/// How long an agent may take to send a session once connected.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens at `socket` (root's alone, mode 0600: only an agent, root in its container, reaches
/// it) and relays each session handed off in a process of its own.
pub fn run(socket: &str) -> io::Result<()> {
    // Private files. (The service drops every capability, so setgroups is not ours to call.)
    // SAFETY: umask has no memory effects.
    unsafe { libc::umask(0o077) };
    let listener = sys::listen_seqpacket(socket, 0)?;
    let signals = sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT])?;
    // Swarm gives a service without networks the node's bridge: the relay fences itself.
    crate::lockdown::seccomp::install_for_relay()?;
    log(&format!("relaying the sessions handed off at {socket}"));
    super::serve_forked(
        listener.as_raw_fd(),
        &signals,
        || accept(&listener),
        MAX_SESSIONS,
        serve,
        |_| log("too many sessions: refusing one (its agent relays it)"),
    )
}

/// A connection from root (an agent), nobody else's.
fn accept(listener: &OwnedFd) -> Option<OwnedFd> {
    let conn = sys::accept(listener)?;
    match sys::peer_credentials(&conn) {
        Some((_, 0)) => Some(conn),
        other => {
            log(&format!("refused a connection from (pid, uid) {other:?}"));
            None
        }
    }
}

fn serve(conn: OwnedFd) {
    let session = match take(&conn) {
        Ok(session) => session,
        Err(e) => return log(&format!("a hand-off refused: {e}")),
    };
    // Until this answer the agent may still relay the session itself (if this process ends).
    if let Err(e) = sys::send(&conn, &[TAKEN], &[]) {
        return log(&format!("a hand-off not confirmed: {e}"));
    }
    if let Err(e) = relay::relay(session, ShellEnd::Agent(conn)) {
        log(&format!("a session's relay: {e}"));
    }
}

/// The session an agent sends: its ciphers' state, with the connection and the PTY attached.
fn take(conn: &OwnedFd) -> io::Result<Session> {
    let (state, fds) = sys::recv_with_fds(conn, HANDOFF_LEN + 1, HANDOFF_TIMEOUT)?;
    let [stream, master]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|fds: Vec<OwnedFd>| invalid(format!("{} descriptors, not 2", fds.len())))?;
    check_kinds(&stream, &master)?;
    let (tx, rx) = decode_handoff(&state).map_err(invalid)?;
    Ok(Session {
        stream: TcpStream::from(stream),
        master,
        tx,
        rx,
    })
}

/// The connection must be a socket and the PTY a terminal.
fn check_kinds(stream: &OwnedFd, master: &OwnedFd) -> io::Result<()> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys::check(unsafe { libc::fstat(stream.as_raw_fd(), &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(invalid("the connection handed off is not a socket"));
    }
    // SAFETY: isatty only queries the fd.
    if unsafe { libc::isatty(master.as_raw_fd()) } != 1 {
        return Err(invalid("the PTY handed off is not a terminal"));
    }
    Ok(())
}
