//! A session's relay between its PTY and its connection: in the node's relay once handed off,
//! else in the connection's process. TCP's
//! window is the flow control: while sealed output waits for the socket, the PTY is not read
//! (the program blocks on a full terminal), and while input waits for the PTY, the socket is
//! not read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};

use termpool_agent_proto::{
    message_len, parse_resize, FrameType, Receiver, Reply, Sender, BODY_OFFSET, FRAME_OVERHEAD,
    MAX_BODY, MAX_MESSAGE,
};

use super::buf::Buf;
use super::conn::{invalid, send, serde_json_vec};
use super::handoff::{self, HandOff};
use super::pty_io::{hang_up, read_chunk, resize, set_nonblocking, wait_exit};
use super::Context;
use crate::sys;

/// Sealed output waiting for the socket beyond which the PTY is no longer read.
const HIGH_WATER: usize = 64 * 1024;
/// Room for the sealed output: below the high-water mark, plus one whole frame.
const OUT_CAPACITY: usize = HIGH_WATER + 2 + MAX_MESSAGE;
/// Room for what the socket brings: a partial message, plus a whole one.
const IN_CAPACITY: usize = 2 * (2 + MAX_MESSAGE);
/// Behind a slow socket, output is sealed into what room is left at the end of `net_out` down
/// to this much before the unsent bytes are moved to the front.
const MIN_FRAME_ROOM: usize = 16 * 1024 + FRAME_OVERHEAD;

/// Starts the shell OPEN asks for, answers STARTED, and relays until the shell exits (EXIT
/// sent) or the server hangs up or goes away (the session hung up): in the node's relay when
/// one listens (`handoff`), else in this process.
pub fn run(
    mut stream: TcpStream,
    mut tx: Sender,
    rx: Receiver,
    open: &[u8],
    context: &Context,
) -> io::Result<()> {
    let started = crate::parse_request(open, context.uid_min).and_then(|request| {
        crate::shell::spawn(&request).map_err(|e| format!("could not start a shell: {e}"))
    });
    let (master, pid) = match started {
        Ok(started) => started,
        Err(e) => {
            let reply = serde_json_vec(&Reply::refused(e));
            return send(&mut stream, &mut tx, FrameType::Started, &reply);
        }
    };
    let pidfd = sys::pidfd_open(pid)?;
    send(
        &mut stream,
        &mut tx,
        FrameType::Started,
        &serde_json_vec(&Reply::started(pid as u32)),
    )?;
    let session = Session {
        stream,
        master,
        tx,
        rx,
    };
    if let Some(socket) = &context.relay_socket {
        match handoff::hand_off(socket, &session) {
            HandOff::Taken(relay) => {
                // This process's copies close here: the relay holds the session alone.
                drop(session);
                handoff::watch(relay, pidfd, pid);
                return Ok(());
            }
            HandOff::Lost => {
                drop(session);
                hang_up(pid);
                return Ok(());
            }
            HandOff::Refused => {}
        }
    }
    relay(session, ShellEnd::Child { pidfd, pid })
}

/// A session whose shell has started: its connection, its PTY, and its two directions' ciphers.
pub struct Session {
    pub stream: TcpStream,
    pub master: OwnedFd,
    pub tx: Sender,
    pub rx: Receiver,
}

/// How the relay learns that the shell has ended, and ends it at a hang-up.
pub enum ShellEnd {
    /// The shell is this process's child.
    Child { pidfd: OwnedFd, pid: libc::pid_t },
    /// The shell is the agent's child, in the user's container: the agent sends its exit code
    /// on this connection; closing it hangs the session up.
    Agent(OwnedFd),
}

impl ShellEnd {
    /// Readable once the shell has exited (or the agent has gone).
    fn fd(&self) -> libc::c_int {
        match self {
            ShellEnd::Child { pidfd, .. } => pidfd.as_raw_fd(),
            ShellEnd::Agent(conn) => conn.as_raw_fd(),
        }
    }

    /// The exited shell's code; `None` when the agent went away without one.
    fn exit_code(&self) -> Option<i32> {
        match self {
            ShellEnd::Child { pid, .. } => Some(wait_exit(*pid)),
            ShellEnd::Agent(conn) => match sys::recv(conn, 8) {
                Ok(Some(code)) => code.try_into().ok().map(i32::from_be_bytes),
                _ => None,
            },
        }
    }

    fn hang_up(self) {
        match self {
            ShellEnd::Child { pid, .. } => hang_up(pid),
            // The agent hangs the session up when this connection closes.
            ShellEnd::Agent(conn) => drop(conn),
        }
    }
}

/// Relays `session` until its shell exits (EXIT sent) or the server hangs up or goes away.
pub fn relay(session: Session, shell: ShellEnd) -> io::Result<()> {
    let Session {
        mut stream,
        master,
        tx,
        rx,
    } = session;
    stream.set_nonblocking(true)?;
    set_nonblocking(&master)?;
    let mut relay = Relay {
        stream: &mut stream,
        master,
        shell,
        tx,
        rx,
        net_in: Buf::new(IN_CAPACITY),
        to_pty: Vec::new(),
        net_out: Buf::new(OUT_CAPACITY),
        pty_closed: false,
    };
    match relay.relay() {
        Ok(End::Exited(code)) => relay.finish(code),
        Ok(End::HungUp) | Err(_) => {
            let Relay { master, shell, .. } = relay;
            drop(master);
            drop(stream);
            shell.hang_up();
            Ok(())
        }
    }
}

enum End {
    Exited(i32),
    HungUp,
}

struct Relay<'s> {
    stream: &'s mut TcpStream,
    master: OwnedFd,
    shell: ShellEnd,
    tx: Sender,
    rx: Receiver,
    /// Bytes read from the socket: whole messages are opened in place, a partial one waits.
    net_in: Buf,
    to_pty: Vec<u8>,
    /// Sealed frames not yet written to the socket.
    net_out: Buf,
    /// No process holds the terminal any more (reading it fails with EIO).
    pty_closed: bool,
}

impl Relay<'_> {
    fn relay(&mut self) -> io::Result<End> {
        loop {
            let net_in = if self.to_pty.is_empty() {
                libc::POLLIN
            } else {
                0
            };
            let net_out = if self.net_out.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            let pty_in = if self.net_out.len() < HIGH_WATER && !self.pty_closed {
                libc::POLLIN
            } else {
                0
            };
            let pty_out = if self.to_pty.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            let mut polls = [
                poll_fd(self.stream.as_raw_fd(), net_in | net_out),
                poll_fd(self.master.as_raw_fd(), pty_in | pty_out),
                poll_fd(self.shell.fd(), libc::POLLIN),
            ];
            // SAFETY: poll writes revents of the three entries.
            let r = unsafe { libc::poll(polls.as_mut_ptr(), 3, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let [net, pty, shell] = polls.map(|p| p.revents);
            if net & (libc::POLLOUT | libc::POLLERR) != 0 {
                self.flush()?;
            }
            if pty & (libc::POLLIN | libc::POLLHUP) != 0 && pty_in != 0 {
                // What the PTY holds now goes out in one write: fewer wake-ups on both ends.
                while self.net_out.len() < HIGH_WATER && self.read_pty()? {}
                self.flush()?;
            }
            if pty & libc::POLLOUT != 0 {
                self.write_pty()?;
            }
            if net & (libc::POLLIN | libc::POLLHUP) != 0 && net_in != 0 && self.read_net()? {
                return Ok(End::HungUp);
            }
            if shell & (libc::POLLIN | libc::POLLHUP) != 0 {
                return Ok(match self.shell.exit_code() {
                    Some(code) => End::Exited(code),
                    None => End::HungUp,
                });
            }
        }
    }

    /// The shell has exited: what the PTY still holds, then EXIT, then close.
    fn finish(&mut self, code: i32) -> io::Result<()> {
        // A paused browser may leave the server unread for long: wait as long as it takes (a
        // server that goes away fails the write).
        self.stream.set_write_timeout(None)?;
        self.stream.set_nonblocking(false)?;
        loop {
            self.stream.write_all(self.net_out.filled())?;
            self.net_out.consume(self.net_out.len());
            if !self.read_pty()? {
                break;
            }
        }
        let exit = serde_json_vec(&Reply::exited(Some(code)));
        let mut wire = Vec::with_capacity(exit.len() + FRAME_OVERHEAD);
        self.tx
            .seal(FrameType::Exit, &exit, &mut wire)
            .map_err(invalid)?;
        self.stream.write_all(&wire)
    }

    /// Reads what the PTY holds straight into one OUTPUT frame's body at the end of `net_out`,
    /// and seals it there (not written yet); whether it read anything.
    fn read_pty(&mut self) -> io::Result<bool> {
        let room = self.net_out.room(MIN_FRAME_ROOM);
        let max_body = room.len().saturating_sub(FRAME_OVERHEAD).min(MAX_BODY);
        if max_body == 0 {
            return Ok(false);
        }
        let (n, closed) = read_chunk(&self.master, &mut room[BODY_OFFSET..BODY_OFFSET + max_body])?;
        self.pty_closed |= closed;
        if n == 0 {
            return Ok(false);
        }
        let len = self
            .tx
            .seal_in_place(FrameType::Output, room, n)
            .map_err(invalid)?;
        self.net_out.commit(len);
        Ok(true)
    }

    fn write_pty(&mut self) -> io::Result<()> {
        // SAFETY: write reads to_pty's bytes.
        let n = unsafe {
            libc::write(
                self.master.as_raw_fd(),
                self.to_pty.as_ptr().cast(),
                self.to_pty.len(),
            )
        };
        match sys::check(n) {
            Ok(n) => {
                self.to_pty.drain(..n as usize);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.net_out.is_empty() {
            match self.stream.write(self.net_out.filled()) {
                Ok(n) => self.net_out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has and acts on each whole frame, opened in place; `true` at a
    /// hang-up (HANGUP, or the connection closed).
    fn read_net(&mut self) -> io::Result<bool> {
        let room = self.net_in.room(2 + MAX_MESSAGE);
        let n = match self.stream.read(room) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        self.net_in.commit(n);
        while let Some(len) = message_len(self.net_in.filled()).map_err(invalid)? {
            if self.net_in.len() < 2 + len {
                break;
            }
            let frame = self
                .rx
                .open(&mut self.net_in.filled_mut()[2..2 + len])
                .map_err(invalid)?;
            match frame.kind {
                FrameType::Input => self.to_pty.extend_from_slice(frame.body),
                FrameType::Resize => {
                    let (cols, rows) = parse_resize(frame.body).map_err(invalid)?;
                    resize(&self.master, cols, rows)?;
                }
                FrameType::Hangup => return Ok(true),
                other => return Err(invalid(format!("{other:?} in a session"))),
            }
            self.net_in.consume(2 + len);
        }
        if !self.to_pty.is_empty() {
            self.write_pty()?;
        }
        Ok(false)
    }
}

/// A poll entry; none (a negative fd) when no event is wanted, so that a hung-up peer does not
/// wake the loop over and over.
fn poll_fd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: if events == 0 { -1 } else { fd },
        events,
        revents: 0,
    }
}
