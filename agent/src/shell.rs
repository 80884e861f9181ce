//! Starting a login shell on a fresh PTY, as the requested account.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::accounts::{self, Account};
use crate::sys::check;

const SHELL: &str = "/bin/bash";

/// What the server asked for, checked.
#[derive(Debug)]
pub struct Request {
    pub account: Account,
    pub cols: u16,
    pub rows: u16,
    pub env: Vec<String>,
}

/// Opens a PTY at the requested size and starts `bash -l` on it as the account, in its home, as
/// the leader of a new session with the PTY as controlling terminal. Returns the master and the
/// shell's pid.
pub fn spawn(request: &Request) -> io::Result<(OwnedFd, libc::pid_t)> {
    let (master, slave) = match crate::pty::open(request.cols, request.rows) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && crate::reclaim::free_held() => {
            crate::pty::open(request.cols, request.rows)?
        }
        opened => opened?,
    };
    let account = &request.account;
    // As a login would: the user owns their terminal, group tty may write to it (write(1)).
    // SAFETY: plain calls on the fd owned here.
    check(unsafe { libc::fchown(slave.as_raw_fd(), account.uid, accounts::tty_gid()) })?;
    check(unsafe { libc::fchmod(slave.as_raw_fd(), 0o620) })?;
    let program = Program::new(request)?;
    // SAFETY: this process is single-threaded; the child only makes async-signal-safe calls on
    // memory prepared before the fork, then execs or exits.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        unsafe { become_shell(&program, slave.as_raw_fd(), account) }
    }
    crate::reclaim::record(&master, account.uid, pid);
    Ok((master, pid))
}

/// Everything the child needs, allocated before the fork.
struct Program {
    path: CString,
    home: CString,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl Program {
    fn new(request: &Request) -> io::Result<Program> {
        let c = |s: &str| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let path = c(SHELL)?;
        let strings: Vec<CString> = ["bash", "-l"]
            .iter()
            .map(|s| c(s))
            .chain(request.env.iter().map(|e| c(e)))
            .collect::<io::Result<_>>()?;
        let mut argv: Vec<_> = strings[..2].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<_> = strings[2..].iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(Program {
            path,
            home: c(&request.account.home)?,
            _strings: strings,
            argv,
            envp,
        })
    }
}

/// In the forked child: never returns.
unsafe fn become_shell(p: &Program, slave: libc::c_int, account: &Account) -> ! {
    let step = |ok: bool, what: &str| {
        if !ok {
            fail(what);
        }
    };
    // Rust ignores SIGPIPE and the agent blocks the signals it reads from a signalfd; exec keeps
    // both, so everything goes back to the default, with nothing blocked.
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    step(libc::setsid() >= 0, "setsid");
    // A session leader without a terminal: this makes the PTY its controlling terminal.
    step(
        libc::ioctl(slave, libc::TIOCSCTTY, 0) == 0,
        "controlling terminal",
    );
    for fd in 0..3 {
        step(libc::dup2(slave, fd) == fd, "dup2");
    }
    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    step(libc::setgroups(0, std::ptr::null()) == 0, "setgroups");
    step(
        libc::setresgid(account.gid, account.gid, account.gid) == 0,
        "setresgid",
    );
    step(
        libc::setresuid(account.uid, account.uid, account.uid) == 0,
        "setresuid",
    );
    step(libc::chdir(p.home.as_ptr()) == 0, "home directory");
    step(crate::tiocsti::deny_tiocsti(), "seccomp filter");
    libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
    fail("exec /bin/bash")
}

/// Tells the user on their terminal (fd 2 by now) and exits, from the forked child.
unsafe fn fail(what: &str) -> ! {
    let errno = *libc::__errno_location();
    let prefix = b"termpool: could not start the shell: ";
    libc::write(2, prefix.as_ptr().cast(), prefix.len());
    libc::write(2, what.as_ptr().cast(), what.len());
    let errno_text = libc::strerror(errno);
    libc::write(2, b" (".as_ptr().cast(), 2);
    libc::write(2, errno_text.cast(), libc::strlen(errno_text));
    libc::write(2, b")\r\n".as_ptr().cast(), 3);
    libc::_exit(127)
}
