//! Swarm mode: the agent listens on TCP for the server, authenticated and encrypted by Noise
//! (`termpool-agent-proto`'s wire), after locking its container down. One forked process per
//! connection keeps each session's relay and each request apart from the others.

mod buf;
mod conn;
mod handoff;
pub mod node_relay;
mod pty_io;
mod relay;
mod requests;
mod upload;

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::{lockdown, log, sys};

/// How many connections may be served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// Swarm mode's settings, from the environment the Swarm service sets.
pub struct Config {
    /// `TERMPOOL_AGENT_LISTEN`, e.g. `0.0.0.0:7100`.
    pub listen: String,
    /// `TERMPOOL_AGENT_SLOT`: the slot's service name, in the Noise prologue.
    pub slot: String,
    /// `TERMPOOL_AGENT_KEY_FILE`: 32 raw bytes, the slot's pre-shared key.
    pub key_file: PathBuf,
    /// `TERMPOOL_AGENT_LOCKDOWN=1`.
    pub lockdown: bool,
    /// `TERMPOOL_AGENT_PTYS=USERS,SESSIONS`: the users' `/dev/pts` cap and the size of the
    /// sessions' own devpts instance, mounted by the lockdown (the single host's helper does it
    /// there).
    pub ptys: (u32, u32),
    /// `TERMPOOL_RELAY_SOCKET`: where the node's relay takes sessions (`node_relay`), if the
    /// pool runs one.
    pub relay_socket: Option<PathBuf>,
}

impl Config {
    /// `None` when `TERMPOOL_AGENT_LISTEN` is not set (or empty): the single-host mode.
    pub fn from_env() -> Option<Result<Config, String>> {
        let listen = std::env::var("TERMPOOL_AGENT_LISTEN")
            .ok()
            .filter(|l| !l.is_empty())?;
        let Ok(slot) = std::env::var("TERMPOOL_AGENT_SLOT") else {
            return Some(Err("TERMPOOL_AGENT_SLOT is not set".into()));
        };
        let key_file = crate::env_or("TERMPOOL_AGENT_KEY_FILE", "/run/secrets/agent-key").into();
        let lockdown = std::env::var("TERMPOOL_AGENT_LOCKDOWN").as_deref() == Ok("1");
        let ptys = match parse_ptys(&crate::env_or("TERMPOOL_AGENT_PTYS", "64,220")) {
            Some(ptys) => ptys,
            None => return Some(Err("TERMPOOL_AGENT_PTYS is not USERS,SESSIONS".into())),
        };
        let relay_socket = std::env::var("TERMPOOL_RELAY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Some(Ok(Config {
            listen,
            slot,
            key_file,
            lockdown,
            ptys,
            relay_socket,
        }))
    }
}

/// `USERS,SESSIONS`, both from 1 to 65536.
fn parse_ptys(text: &str) -> Option<(u32, u32)> {
    let (users, sessions) = text.split_once(',')?;
    let parse = |n: &str| {
        n.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=65536).contains(n))
    };
    Some((parse(users)?, parse(sessions)?))
}

/// What every connection's process needs to know.
pub struct Context {
    pub slot: String,
    pub psk: [u8; 32],
    pub uid_min: u32,
    /// Why the lockdown failed, if it did: only STATUS is served then.
    pub lockdown_error: Option<String>,
    /// Where sessions are handed to the node's relay, if anywhere.
    pub relay_socket: Option<PathBuf>,
}

pub fn run(config: Config, uid_min: u32) -> io::Result<()> {
    let psk = read_key(&config.key_file)?;
    let listener = TcpListener::bind(&config.listen)?;
    let port = listener.local_addr()?.port();
    let lockdown_error = if config.lockdown {
        match lockdown::apply(port, &config.key_file, config.ptys) {
            Ok(fenced) => {
                log(&format!("locked down; fenced networks: {fenced:?}"));
                None
            }
            Err(e) => {
                log(&format!("LOCKDOWN FAILED, serving no session: {e}"));
                Some(e.to_string())
            }
        }
    } else {
        None
    };
    // As in the single-host mode: no supplementary groups of root's, private files by default.
    // SAFETY: setgroups with an empty list reads nothing; umask has no memory effects.
    sys::check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    unsafe { libc::umask(0o077) };
    let signals = sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT])?;
    listener.set_nonblocking(true)?;
    log(&format!(
        "listening on {} for slot {}",
        config.listen, config.slot
    ));
    let context = Context {
        slot: config.slot,
        psk,
        uid_min,
        lockdown_error,
        relay_socket: config.relay_socket,
    };
    serve_forked(
        listener.as_raw_fd(),
        &signals,
        || listener.accept().ok(),
        MAX_CONNECTIONS,
        |(stream, _)| conn::serve(stream, &context),
        |(_, peer)| log(&format!("too many connections: closing one from {peer}")),
    )
}

/// Accepts connections on `listener` and serves each in a forked process of its own (at most
/// `max` at once; `refuse` is told of the others, which are closed), until SIGTERM or SIGINT.
pub(crate) fn serve_forked<C>(
    listener: RawFd,
    signals: &OwnedFd,
    mut accept: impl FnMut() -> Option<C>,
    max: usize,
    serve: impl Fn(C),
    refuse: impl Fn(C),
) -> io::Result<()> {
    let mut children = 0usize;
    loop {
        for fd in sys::poll_readable(&[listener, signals.as_raw_fd()], None)? {
            if fd == signals.as_raw_fd() {
                let got = sys::read_signals(signals);
                if got.iter().any(|&s| s == libc::SIGTERM || s == libc::SIGINT) {
                    return Ok(());
                }
                while sys::reap_one().is_some() {
                    children = children.saturating_sub(1);
                }
                continue;
            }
            let Some(conn) = accept() else { continue };
            if children >= max {
                refuse(conn);
                continue;
            }
            // SAFETY: this process is single-threaded; the child serves the connection with
            // its own descriptors and exits without returning here.
            match unsafe { libc::fork() } {
                0 => {
                    // SAFETY: the child's copies only; it never returns to the loop.
                    unsafe {
                        libc::close(listener);
                        libc::close(signals.as_raw_fd());
                    }
                    serve(conn);
                    // SAFETY: the child ends here, without running the parent's destructors.
                    unsafe { libc::_exit(0) }
                }
                -1 => log(&format!("fork: {}", io::Error::last_os_error())),
                _ => children += 1,
            }
        }
    }
}

/// The slot's key: exactly 32 bytes.
fn read_key(path: &std::path::Path) -> io::Result<[u8; 32]> {
    let mut key = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(33).read_to_end(&mut key))
        .map_err(|e| io::Error::new(e.kind(), format!("the key file {}: {e}", path.display())))?;
    key.as_slice().try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the key file {} does not hold 32 bytes", path.display()),
        )
    })
}
