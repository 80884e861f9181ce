//! The PTY side of a session's relay: reading a burst into one frame's body, the terminal's
//! size, the shell's end.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::conn::invalid;
use crate::hangup::Hangups;
use crate::sys;

/// Output read in one go that is smaller than this goes out without trying to read more.
const INTERACTIVE_CHUNK: usize = 512;

/// Reads into `buf` until the PTY is empty or `buf` full: a PTY hands out at most a few KiB per
/// read, and a frame each would cost both ends a seal, a wake-up and a WebSocket message per
/// few KiB of a burst. A first read of fewer than `INTERACTIVE_CHUNK` bytes (an echo, a
/// prompt) is not followed by more. How many bytes, and whether the PTY has closed (EIO).
pub fn read_chunk(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, bool)> {
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

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd owned here.
    let flags = sys::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    sys::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
        .map(drop)
}

/// Sets the terminal's size; the kernel sends SIGWINCH to its foreground group.
pub fn resize(master: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
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
pub fn wait_exit(pid: libc::pid_t) -> i32 {
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
pub fn hang_up(pid: libc::pid_t) {
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
        let mut buf = vec![0u8; termpool_agent_proto::MAX_BODY];
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
