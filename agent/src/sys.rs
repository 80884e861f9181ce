//! The system calls the agent makes, wrapped: unix seqpacket sockets with fd passing, signalfd,
//! poll, waitpid and pidfds. SAFETY, for every `unsafe` block here without a comment of its own:
//! one libc call on fds this process owns and buffers of the sizes passed; results are checked.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `r` as a result: the last OS error when it is negative.
pub fn check<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A listening SOCK_SEQPACKET socket at `path` (replacing a stale one), which only `owner` may
/// connect to (mode 0600).
pub fn listen_seqpacket(path: &str, owner: u32) -> io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let fd = socket()?;
    let (addr, len) = unix_addr(path)?;
    // The socket file is created with the process umask: no window in which others may connect.
    let old = unsafe { libc::umask(0o177) };
    let bound = check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) });
    unsafe { libc::umask(old) };
    bound?;
    let cpath = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    check(unsafe { libc::chown(cpath.as_ptr(), owner, 0) })?;
    check(unsafe { libc::chmod(cpath.as_ptr(), 0o600) })?;
    check(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    Ok(fd)
}

fn socket() -> io::Result<OwnedFd> {
    let flags = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let raw = check(unsafe { libc::socket(libc::AF_UNIX, flags, 0) })?;
    // SAFETY: a fresh fd owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn unix_addr(path: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    if path.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
        *dst = src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + path.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

pub fn accept(listener: &OwnedFd) -> Option<OwnedFd> {
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let raw = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    };
    // SAFETY: a fresh fd owned here alone.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The connected peer's pid (as this PID namespace sees it: 0 when outside it) and uid.
pub fn peer_credentials(conn: &OwnedFd) -> Option<(libc::pid_t, u32)> {
    // SAFETY: all zeroes is a valid ucred; getsockopt writes at most `len` bytes.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some((cred.pid, cred.uid))
}

/// One message; `Ok(None)` when none is waiting, an empty message when the peer has gone.
pub fn recv(conn: &OwnedFd, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; max];
    let n = unsafe { libc::recv(conn.as_raw_fd(), buf.as_mut_ptr().cast(), max, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Sends one message, with `fds` attached (at most [`MAX_FDS`]).
pub fn send(conn: &OwnedFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for MAX_FDS fds; u64 for the alignment cmsghdr needs.
    let mut control = [0u64; 4];
    let fds_len = std::mem::size_of_val(fds) as u32;
    // SAFETY: all zeroes is a valid msghdr; the control buffer is big enough for MAX_FDS fds,
    // and the CMSG macros stay within it.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(fds_len) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), *fd);
            }
        }
        check(libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))?;
    }
    Ok(())
}

/// The most fds one message carries.
pub const MAX_FDS: usize = 4;

/// One message of at most `max` bytes and the fds passed with it, waiting at most `timeout`;
/// an empty message when the peer has gone. A longer message, or more fds, is an error (the
/// fds that came are closed).
pub fn recv_with_fds(
    conn: &OwnedFd,
    max: usize,
    timeout: Duration,
) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    if poll_readable(&[conn.as_raw_fd()], Some(timeout))?.is_empty() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    let mut buf = vec![0u8; max];
    let (n, fds) = termpool_agent_proto::recv_with_fds(conn.as_raw_fd(), &mut buf)?;
    buf.truncate(n);
    Ok((buf, fds))
}

/// A signalfd for `signals`, which are blocked so that they arrive only through it.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let raw = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(raw))
    }
}

/// The signals waiting on a signalfd.
pub fn read_signals(fd: &OwnedFd) -> Vec<libc::c_int> {
    let mut signals = Vec::new();
    loop {
        // SAFETY: all zeroes is a valid siginfo; read writes at most its size.
        let mut info: libc::signalfd_siginfo = unsafe { zeroed() };
        let size = size_of::<libc::signalfd_siginfo>();
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
        if n as usize != size {
            return signals;
        }
        signals.push(info.ssi_signo as libc::c_int);
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes; the ready ones.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<RawFd>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().min(60_000) as libc::c_int + 1);
    let r = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    Ok(polls
        .iter()
        .filter(|p| p.revents != 0)
        .map(|p| p.fd)
        .collect())
}

/// Reaps one exited child: its pid and exit code (128 + signal for a killed one).
pub fn reap_one() -> Option<(libc::pid_t, i32)> {
    let mut status = 0;
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Some((pid, code))
}

pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    let raw = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a fresh fd owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
}

pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Whether a pidfd's process has exited (its pidfd is readable then).
pub fn has_exited(pidfd: &OwnedFd) -> bool {
    poll_now(pidfd.as_raw_fd())
}

fn poll_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}
