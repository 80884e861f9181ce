//! The agent's socket as the server reaches it: one non-blocking SOCK_SEQPACKET connection to a
//! unix socket that must be a socket itself, never a link, answered by root; the errors that
//! mean "try again"; receiving a message with the descriptors passed on it (both ends use it).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The socket's directory is shared with the container, whose root could put a symbolic link in
/// the socket's place, pointing at a socket of the host: connect() would follow it. The socket
/// is opened `O_PATH|O_NOFOLLOW` (a link opens as itself) and must be a socket; connecting
/// through this descriptor then cannot follow a link swapped in after the check.
pub fn open_socket_nofollow(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)?;
    if file.metadata()?.file_type().is_socket() {
        Ok(file.into())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a socket", path.display()),
        ))
    }
}

/// One message into `buf` (one attempt, as the socket's blocking mode says), and the fds passed
/// with it, owned from here on. A message or fds beyond the room given are an error (the fds
/// that came are closed).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few fds; u64 for the alignment cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at valid buffers of the given sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let fds = received_fds(&msg);
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "an oversized message on the agent's socket",
        ));
    }
    Ok((n as usize, fds))
}

/// The fds of the SCM_RIGHTS messages in `msg`, as recvmsg filled it.
fn received_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: walking the control buffer recvmsg filled, with the kernel's own macros; each fd
    // in SCM_RIGHTS data is a new descriptor of this process that nothing else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    fds
}

/// Nothing listens there: not yet, or no more.
pub fn is_not_listening(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED))
}

/// The agent listens but its backlog is full.
pub fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

/// Whether `path` is a socket itself (not a link to one).
pub fn check_is_socket(path: &Path) -> io::Result<()> {
    open_socket_nofollow(path).map(drop)
}

/// A non-blocking SOCK_SEQPACKET connection to the unix socket at `path` (one attempt), made
/// through the socket pinned by [`open_socket_nofollow`], to a peer that must be root (the
/// container's root: the agent; no user namespace maps it).
pub fn connect_seqpacket(path: &Path) -> io::Result<OwnedFd> {
    let pinned = open_socket_nofollow(path)?;
    let via = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    let fd = connect_path(Path::new(&via))?;
    match peer_uid(&fd)? {
        0 => Ok(fd),
        uid => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: the peer is uid {uid}, not root", path.display()),
        )),
    }
}

/// The uid of the process that made the socket's other end (SO_PEERCRED).
pub fn peer_uid(fd: &OwnedFd) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all zeroes is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn connect_path(path: &Path) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path too long: {}", path.display()),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: socket() returns a new fd or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
    let r = unsafe { libc::connect(raw, std::ptr::addr_of!(addr).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_socket_itself_is_connected_to_never_a_link() {
        let dir = std::env::temp_dir().join(format!("termpool-proto-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.sock");
        let _ = std::fs::remove_file(&real);
        let _listener = std::os::unix::net::UnixListener::bind(&real).unwrap();
        let link = dir.join("agent.sock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(check_is_socket(&real).is_ok());
        let e = connect_seqpacket(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!is_not_listening(&e), "a link is an error, not a wait");
        assert!(is_not_listening(
            &connect_seqpacket(&dir.join("none")).unwrap_err()
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peer_that_is_not_root_is_refused() {
        let dir = std::env::temp_dir().join(format!("termpool-proto-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("agent.sock");
        // SAFETY: fork in a test; the child binds, listens as uid 65534 and waits to be killed.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                let raw = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0);
                let mut addr: libc::sockaddr_un = std::mem::zeroed();
                addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (d, &s) in addr.sun_path.iter_mut().zip(sock.as_os_str().as_bytes()) {
                    *d = s as libc::c_char;
                }
                let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
                libc::bind(raw, std::ptr::addr_of!(addr).cast(), len);
                // The peer credentials are the listener's at listen().
                if libc::geteuid() == 0 && libc::setresuid(65534, 65534, 65534) != 0 {
                    libc::_exit(1);
                }
                libc::listen(raw, 4);
                libc::pause();
                libc::_exit(0);
            }
        }
        let mut result = None;
        for _ in 0..100 {
            match connect_seqpacket(&sock) {
                Err(e) if is_not_listening(&e) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => {
                    result = Some(other);
                    break;
                }
            }
        }
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // SAFETY: geteuid has no memory effects.
        let root = unsafe { libc::geteuid() } == 0;
        match result.expect("the child listened") {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
            Ok(_) => assert!(
                !root,
                "as root, the child was uid 65534 and must be refused"
            ),
        }
    }
}
