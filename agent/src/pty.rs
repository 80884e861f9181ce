//! Opening a session's PTY from the agent's own devpts instance (mounted by `--prepare-mounts`),
//! which users cannot open, so that a user holding every PTY they can get blocks no session.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::mounts::AGENT_PTS;
use crate::sys::check;

/// `statfs` magic of devpts.
const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;
/// The users' instance: only when the agent's own is missing.
const SHARED_PTMX: &str = "/dev/ptmx";

/// A new PTY pair at the given size: the master and the slave, both close-on-exec.
pub fn open(cols: u16, rows: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = open_path(&ptmx())?;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on the fd owned here; TIOCSPTLCK reads one int, TIOCGPTPEER returns a new fd.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // The slave by the master's own instance, never by a name someone could have swapped.
    let slave = check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: the fd was just returned to us alone.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize that outlives the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) })?;
    Ok((master, slave))
}

/// The agent instance's `ptmx`; the shared one, said loudly, when that instance is not mounted.
fn ptmx() -> String {
    if is_devpts(AGENT_PTS) {
        format!("{AGENT_PTS}/ptmx")
    } else {
        crate::log(&format!(
            "WARNING: no devpts instance of the agent's at {AGENT_PTS} (the mounts helper did not \
             run): this session's PTY comes from {SHARED_PTMX}, which users can exhaust"
        ));
        SHARED_PTMX.to_owned()
    }
}

fn is_devpts(path: &str) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct it is given; the path is a valid C string.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe {
        libc::statfs(c.as_ptr(), &mut fs) == 0 && fs.f_type as libc::c_long == DEVPTS_SUPER_MAGIC
    }
}

fn open_path(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: a valid C string; the fd returned is ours alone.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags) })?;
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_pair_is_opened_at_the_size_asked() {
        // No agent instance here: the shared /dev/ptmx, with the warning.
        let (master, slave) = open(100, 30).expect("a PTY pair");
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize.
        check(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) }).unwrap();
        assert_eq!((size.ws_col, size.ws_row), (100, 30));
        let data = b"x";
        // SAFETY: writes one byte from a live buffer.
        assert_eq!(
            unsafe { libc::write(master.as_raw_fd(), data.as_ptr().cast(), 1) },
            1
        );
        assert!(!is_devpts("/nonexistent"));
    }
}
