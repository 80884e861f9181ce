//! The agent's socket as the server reaches it: one non-blocking SOCK_SEQPACKET connection to a
//! unix socket that must be a socket itself, never a link; the errors that mean "try again".

use std::io;
use std::mem::size_of;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The socket's directory is shared with the container, whose root could put a symbolic link in
/// the socket's place, pointing at a socket of the host: connect() would follow it.
pub fn check_is_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(path)?.file_type();
    if kind.is_socket() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a socket", path.display()),
        ))
    }
}

/// Nothing listens there: not yet, or no more.
pub fn is_not_listening(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED))
}

/// The agent listens but its backlog is full.
pub fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

/// A non-blocking SOCK_SEQPACKET connection to the unix socket at `path` (one attempt, after
/// [`check_is_socket`]).
pub fn connect_seqpacket(path: &Path) -> io::Result<OwnedFd> {
    check_is_socket(path)?;
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
}
