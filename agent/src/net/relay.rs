//! A session's relay between its PTY and its connection, in the connection's process. TCP's
//! window is the flow control: while sealed output waits for the socket, the PTY is not read
//! (the program blocks on a full terminal), and while input waits for the PTY, the socket is
//! not read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};

use termpool_agent_proto::{
    parse_resize, split_message, FrameType, Receiver, Reply, Sender, MAX_BODY,
};

use super::conn::{invalid, send, serde_json_vec};
use super::Context;
use crate::hangup::Hangups;
use crate::{shell, sys};

/// Sealed output waiting for the socket beyond which the PTY is no longer read.
const HIGH_WATER: usize = 64 * 1024;

/// Output read in one go that is smaller than this goes out without trying to read more.
const INTERACTIVE_CHUNK: usize = 512;

/// Starts the shell OPEN asks for, answers STARTED, and relays until the shell exits (EXIT
/// sent) or the server hangs up or goes away (the session hung up).
pub fn run(
    stream: &mut TcpStream,
    mut tx: Sender,
    rx: Receiver,
    open: &[u8],
    context: &Context,
) -> io::Result<()> {
    let started = crate::parse_request(open, context.uid_min).and_then(|request| {
        shell::spawn(&request).map_err(|e| format!("could not start a shell: {e}"))
    });
    let (master, pid) = match started {
        Ok(started) => started,
        Err(e) => {
            let reply = serde_json_vec(&Reply::refused(e));
            return send(stream, &mut tx, FrameType::Started, &reply);
        }
    };
    let shell = sys::pidfd_open(pid)?;
    send(
        stream,
        &mut tx,
        FrameType::Started,
        &serde_json_vec(&Reply::started(pid as u32)),
    )?;
    stream.set_nonblocking(true)?;
    set_nonblocking(&master)?;
    let mut relay = Relay {
        stream,
        master,
        shell,
        pid,
        tx,
        rx,
        from_net: Vec::new(),
        to_pty: Vec::new(),
        to_net: Vec::new(),
        pty_closed: false,
    };
    match relay.relay() {
        Ok(End::Exited(code)) => relay.finish(code),
        Ok(End::HungUp) | Err(_) => {
            let pid = relay.pid;
            drop(relay);
            hang_up(pid);
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
    shell: OwnedFd,
    pid: libc::pid_t,
    tx: Sender,
    rx: Receiver,
    /// Bytes read from the socket, not yet a whole message.
    from_net: Vec<u8>,
    to_pty: Vec<u8>,
    /// Sealed frames not yet written to the socket.
    to_net: Vec<u8>,
    /// No process holds the terminal any more (reading it fails with EIO).
    pty_closed: bool,
}

impl Relay<'_> {
    fn relay(&mut self) -> io::Result<End> {
        let mut buf = vec![0u8; MAX_BODY];
        loop {
            let net_in = if self.to_pty.is_empty() {
                libc::POLLIN
            } else {
                0
            };
            let net_out = if self.to_net.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            let pty_in = if self.to_net.len() < HIGH_WATER && !self.pty_closed {
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
                poll_fd(self.shell.as_raw_fd(), libc::POLLIN),
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
                while self.to_net.len() < HIGH_WATER && self.read_pty(&mut buf)? {}
                self.flush()?;
            }
            if pty & libc::POLLOUT != 0 {
                self.write_pty()?;
            }
            if net & (libc::POLLIN | libc::POLLHUP) != 0
                && net_in != 0
                && self.read_net(&mut buf)?
            {
                return Ok(End::HungUp);
            }
            if shell & libc::POLLIN != 0 {
                return Ok(End::Exited(wait_exit(self.pid)));
            }
        }
    }

    /// The shell has exited: what the PTY still holds, then EXIT, then close.
    fn finish(&mut self, code: i32) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_BODY];
        while self.read_pty(&mut buf)? {}
        let exit = serde_json_vec(&Reply::exited(Some(code)));
        self.tx
            .seal(FrameType::Exit, &exit, &mut self.to_net)
            .map_err(invalid)?;
        // A paused browser may leave the server unread for long: wait as long as it takes (a
        // server that goes away fails the write).
        self.stream.set_write_timeout(None)?;
        self.stream.set_nonblocking(false)?;
        self.stream.write_all(&self.to_net)?;
        self.to_net.clear();
        Ok(())
    }

    /// Reads what the PTY holds, up to `buf`'s size, into one OUTPUT frame (not written yet);
    /// whether it read anything.
    fn read_pty(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let (n, closed) = read_chunk(&self.master, buf)?;
        self.pty_closed |= closed;
        if n == 0 {
            return Ok(false);
        }
        self.tx
            .seal(FrameType::Output, &buf[..n], &mut self.to_net)
            .map_err(invalid)?;
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
        while !self.to_net.is_empty() {
            match self.stream.write(&self.to_net) {
                Ok(n) => {
                    self.to_net.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has and acts on each whole frame; `true` at a hang-up (HANGUP, or
    /// the connection closed).
    fn read_net(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let n = match self.stream.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        self.from_net.extend_from_slice(&buf[..n]);
        let mut used = 0;
        while let Some((msg, len)) = split_message(&self.from_net[used..]).map_err(invalid)? {
            let frame = self.rx.open(msg).map_err(invalid)?;
            match frame.kind {
                FrameType::Input => self.to_pty.extend_from_slice(frame.body),
                FrameType::Resize => {
                    let (cols, rows) = parse_resize(frame.body).map_err(invalid)?;
                    resize(&self.master, cols, rows)?;
                }
                FrameType::Hangup => return Ok(true),
                other => return Err(invalid(format!("{other:?} in a session"))),
            }
            used += len;
        }
        self.from_net.drain(..used);
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

/// Reads into `buf` until the PTY is empty or `buf` full: a PTY hands out at most a few KiB per
/// read, and a frame each would cost both ends a seal, a wake-up and a WebSocket message per
/// few KiB of a burst. A first read of fewer than `INTERACTIVE_CHUNK` bytes (an echo, a
/// prompt) is not followed by more. How many bytes, and whether the PTY has closed (EIO).
fn read_chunk(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut len = 0;
    while len < buf.len() {
        match read_fd(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < INTERACTIVE_CHUNK {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok((len, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((len, false))
}

fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read writes at most buf.len() bytes into buf.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    sys::check(n).map(|n| n as usize)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd owned here.
    let flags = sys::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    sys::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
        .map(drop)
}

/// Sets the terminal's size; the kernel sends SIGWINCH to its foreground group.
fn resize(master: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    if !(1..=crate::MAX_SIZE).contains(&cols) || !(1..=crate::MAX_SIZE).contains(&rows) {
        return Err(invalid(format!("a resize to {cols}x{rows}")));
    }
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    sys::check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// The exited shell's code (128 + signal for a killed one), reaping it.
fn wait_exit(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for this process's own child, which has exited.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Today's hang-up of the session led by `pid`, run to its end (the connection is closed).
fn hang_up(pid: libc::pid_t) {
    let mut hangups = Hangups::default();
    hangups.add(pid);
    loop {
        hangups.run();
        let Some(wait) = hangups.next_timeout() else {
            break;
        };
        std::thread::sleep(wait);
        // The shell is this process's child: reap it once it has gone.
        // SAFETY: waitpid on our own child, without blocking.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` into a non-blocking slave in small writes: a PTY takes about 18 KB unread
    /// so, where one big blocking write would wait for a reader after 8 KB.
    fn write_all(fd: &OwnedFd, data: &[u8]) {
        for piece in data.chunks(1000) {
            // SAFETY: writes from a live buffer.
            let n = unsafe { libc::write(fd.as_raw_fd(), piece.as_ptr().cast(), piece.len()) };
            assert_eq!(
                sys::check(n).expect("write to the PTY") as usize,
                piece.len()
            );
        }
    }

    #[test]
    fn a_burst_is_read_into_one_chunk_and_the_end_is_seen() {
        let (master, slave) = crate::pty::open(80, 24).expect("a PTY pair");
        // SAFETY: tcgetattr fills the zeroed termios; tcsetattr reads it.
        let mut raw: libc::termios = unsafe { std::mem::zeroed() };
        sys::check(unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut raw) }).unwrap();
        unsafe { libc::cfmakeraw(&mut raw) };
        sys::check(unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &raw) }).unwrap();
        set_nonblocking(&master).unwrap();
        set_nonblocking(&slave).unwrap();
        let mut buf = vec![0u8; MAX_BODY];
        assert_eq!(read_chunk(&master, &mut buf).unwrap(), (0, false), "empty");

        // Three times what one read of a PTY gives (4095 B), in one chunk.
        let burst: Vec<u8> = (0..12_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        write_all(&slave, &burst);
        assert_eq!(read_chunk(&master, &mut buf).unwrap(), (burst.len(), false));
        assert_eq!(&buf[..burst.len()], &burst[..]);
        // Never beyond the buffer: the rest is the next chunk.
        write_all(&slave, &burst);
        assert_eq!(
            read_chunk(&master, &mut buf[..8192]).unwrap(),
            (8192, false)
        );
        assert_eq!(
            read_chunk(&master, &mut buf).unwrap(),
            (burst.len() - 8192, false)
        );

        write_all(&slave, b"x");
        assert_eq!(read_chunk(&master, &mut buf).unwrap(), (1, false));
        write_all(&slave, b"last");
        drop(slave);
        assert_eq!(read_chunk(&master, &mut buf).unwrap(), (4, false));
        assert_eq!(read_chunk(&master, &mut buf).unwrap(), (0, true), "closed");
    }
}
