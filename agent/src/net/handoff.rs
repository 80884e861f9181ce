//! Handing a session to the node's relay (`node_relay`): the connection, the PTY and the ciphers'
//! state go over a unix socket to a process outside the user's container, so that relaying costs
//! the node, not the user's CPU quota. This process stays the shell's parent: it reports the
//! shell's exit to the relay, and hangs the session up when the relay lets go of it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use termpool_agent_proto::{connect_seqpacket, encode_handoff};

use super::pty_io::{hang_up, wait_exit};
use super::relay::Session;
use crate::{log, sys};

/// How long the relay may take to say it has the session.
const TAKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The relay's one-byte answer once it holds the session.
pub const TAKEN: u8 = 1;

/// How a hand-off went.
pub enum HandOff {
    /// The relay holds the session (the caller closes its copies of the session's
    /// descriptors); the connection to it, on which the shell's end is reported.
    Taken(OwnedFd),
    /// No relay took it: none listens, or it refused or went before taking the session (then
    /// it holds none of it). This process relays.
    Refused,
    /// The relay did not answer in time: it may hold the session, so nobody must relay it.
    Lost,
}

/// Gives `session` to the relay listening at `socket`.
pub fn hand_off(socket: &Path, session: &Session) -> HandOff {
    let conn = match connect_seqpacket(socket) {
        Ok(conn) => conn,
        Err(e) => {
            log(&format!(
                "no relay at {}: relaying here ({e})",
                socket.display()
            ));
            return HandOff::Refused;
        }
    };
    let state = encode_handoff(&session.tx, &session.rx);
    let fds = [session.stream.as_raw_fd(), session.master.as_raw_fd()];
    if let Err(e) = sys::send(&conn, &state, &fds) {
        log(&format!(
            "the relay did not take a session: relaying here ({e})"
        ));
        return HandOff::Refused;
    }
    match sys::recv_with_fds(&conn, 1, TAKEN_TIMEOUT) {
        Ok((answer, _)) if answer == [TAKEN] => HandOff::Taken(conn),
        Ok(_) => {
            log("the relay refused a session: relaying here");
            HandOff::Refused
        }
        Err(e) => {
            log(&format!("the relay did not answer a hand-off: {e}"));
            HandOff::Lost
        }
    }
}

/// After a hand-off, until the session ends: the shell's exit code goes to the relay (which
/// sends what the PTY still holds, then EXIT); the relay's end (a hang-up, the server or the
/// relay gone) hangs the shell up.
pub fn watch(relay: OwnedFd, pidfd: OwnedFd, pid: libc::pid_t) {
    loop {
        match sys::poll_readable(&[pidfd.as_raw_fd(), relay.as_raw_fd()], None) {
            Ok(ready) if ready.contains(&pidfd.as_raw_fd()) => {
                let code = wait_exit(pid);
                if let Err(e) = sys::send(&relay, &code.to_be_bytes(), &[]) {
                    log(&format!("the relay went before the shell's exit: {e}"));
                }
                return;
            }
            Ok(ready) if ready.is_empty() => continue,
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    drop(relay);
    hang_up(pid);
}
