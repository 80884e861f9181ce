//! termpool's session agent: starts login shells on PTYs inside a user container and hands each
//! PTY's master to the server over a unix socket (messages: `termpool-agent-proto`); in Swarm
//! mode (`TERMPOOL_AGENT_LISTEN`) it locks its container down and serves TCP instead (net/).
//! `--relay`: the node's relay of Swarm mode, in a service of its own (net/node_relay.rs).
//! One-shot modes: `--end-processes UID`, `--set-quota HOME UID MB`, `--prepare-mounts ...`.

mod accounts;
mod end;
mod hangup;
mod lockdown;
mod mounts;
mod net;
mod pty;
mod quota;
mod reclaim;
mod shell;
mod sys;
mod tiocsti;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

use termpool_agent_proto::{Hangup, Reply, ShellRequest};

use hangup::Hangups;

const MAX_MESSAGE: usize = 64 * 1024;
/// The largest terminal a request may ask for (the server caps sizes well below).
const MAX_SIZE: u16 = 1000;

/// One connection from the server, and the shell started for it (once it is).
struct Session {
    conn: OwnedFd,
    shell: Option<libc::pid_t>,
}

struct Agent {
    listener: OwnedFd,
    signals: OwnedFd,
    peer_uid: u32,
    uid_min: u32,
    sessions: HashMap<RawFd, Session>,
    /// Shells whose connection is open: that connection.
    shells: HashMap<libc::pid_t, RawFd>,
    hangups: Hangups,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => match net::Config::from_env() {
            Some(Ok(config)) => exit(net::run(config, uid_min())),
            Some(Err(e)) => exit(Err(std::io::Error::other(e))),
            None => exit(run()),
        },
        [flag, uid] if flag == "--end-processes" => end::run(uid, uid_min()),
        [flag, home, uid, mb] if flag == "--set-quota" => quota::run(home, uid, mb, uid_min()),
        [flag, user, agent] if flag == "--prepare-mounts" => mounts::run(user, agent),
        [flag] if flag == "--relay" => exit(net::node_relay::run(&env_or(
            "TERMPOOL_RELAY_SOCKET",
            net::node_relay::DEFAULT_SOCKET,
        ))),
        _ => {
            log(
                "usage: termpool-agent [--end-processes UID | --set-quota HOME UID MB | \
                 --prepare-mounts USER_PTYS AGENT_PTYS | --relay]",
            );
            ExitCode::from(2)
        }
    }
}

fn exit(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&format!("cannot run: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let socket = env_or("TERMPOOL_AGENT_SOCKET", "/run/termpool/agent.sock");
    let peer_uid: u32 = env_or("TERMPOOL_AGENT_PEER_UID", "0").parse().unwrap_or(0);
    let listener = sys::listen_seqpacket(&socket, peer_uid)?;
    // The shells inherit no supplementary group of root's, and create private files by default.
    // SAFETY: setgroups with an empty list reads nothing; umask has no memory effects.
    sys::check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    unsafe { libc::umask(0o077) };
    let signals = sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT])?;
    log(&format!("listening on {socket}"));
    let mut agent = Agent {
        listener,
        signals,
        peer_uid,
        uid_min: uid_min(),
        sessions: HashMap::new(),
        shells: HashMap::new(),
        hangups: Hangups::default(),
    };
    agent.serve()
}

impl Agent {
    fn serve(&mut self) -> std::io::Result<()> {
        loop {
            let mut fds = vec![self.listener.as_raw_fd(), self.signals.as_raw_fd()];
            fds.extend(self.sessions.keys().copied());
            let ready = sys::poll_readable(&fds, self.hangups.next_timeout())?;
            for fd in ready {
                if fd == self.listener.as_raw_fd() {
                    self.accept();
                } else if fd == self.signals.as_raw_fd() {
                    if sys::read_signals(&self.signals)
                        .iter()
                        .any(|&s| s == libc::SIGTERM || s == libc::SIGINT)
                    {
                        return Ok(());
                    }
                    self.reap();
                } else {
                    self.on_message(fd);
                }
            }
            self.hangups.run();
        }
    }

    fn accept(&mut self) {
        let Some(conn) = sys::accept(&self.listener) else {
            return;
        };
        // A process of this container has a pid here; the server, outside our PID namespace, 0.
        match sys::peer_credentials(&conn) {
            Some((0, uid)) if uid == self.peer_uid => {
                let session = Session { conn, shell: None };
                self.sessions.insert(session.conn.as_raw_fd(), session);
            }
            other => log(&format!("refused a connection from (pid, uid) {other:?}")),
        }
    }

    fn on_message(&mut self, fd: RawFd) {
        let Some(session) = self.sessions.get_mut(&fd) else {
            return;
        };
        let message = match sys::recv(&session.conn, MAX_MESSAGE) {
            Ok(Some(message)) => message,
            Ok(None) => return, // nothing after all
            Err(_) => Vec::new(),
        };
        if !message.is_empty() {
            if session.shell.is_none() {
                let started = start(session, &message, self.uid_min);
                if let Some(pid) = started {
                    self.shells.insert(pid, fd);
                    return;
                }
            } else if !is_hangup(&message) {
                return;
            }
        }
        // A hang-up, the server gone, or a failed start.
        if let Some(session) = self.sessions.remove(&fd) {
            if let Some(pid) = session.shell {
                // The fd number goes to the next connection: its exit must not be sent there.
                self.shells.remove(&pid);
                self.hangups.add(pid);
            }
        }
    }

    fn reap(&mut self) {
        while let Some((pid, code)) = sys::reap_one() {
            let Some(fd) = self.shells.remove(&pid) else {
                continue;
            };
            if let Some(session) = self.sessions.get(&fd) {
                reply(&session.conn, &Reply::exited(Some(code)), None);
            }
        }
    }
}

/// Starts the shell a request asks for; its pid, or `None` after answering with an error.
fn start(session: &mut Session, message: &[u8], uid_min: u32) -> Option<libc::pid_t> {
    let request = match parse_request(message, uid_min) {
        Ok(request) => request,
        Err(e) => {
            let error = format!("bad request: {e}");
            reply(&session.conn, &Reply::refused(error), None);
            return None;
        }
    };
    match shell::spawn(&request) {
        Ok((master, pid)) => {
            // A pid from fork() is positive.
            reply(&session.conn, &Reply::started(pid as u32), Some(&master));
            session.shell = Some(pid);
            Some(pid)
        }
        Err(e) => {
            let error = format!("could not start a shell: {e}");
            reply(&session.conn, &Reply::refused(error), None);
            None
        }
    }
}

fn parse_request(message: &[u8], uid_min: u32) -> Result<shell::Request, String> {
    let request: ShellRequest = serde_json::from_slice(message).map_err(|e| e.to_string())?;
    let user = &*request.user;
    let account = accounts::lookup(user).ok_or_else(|| format!("no account {user}"))?;
    if account.uid < uid_min || account.gid < uid_min {
        return Err(format!("account {user} is not a termpool user"));
    }
    if *request.home != account.home {
        return Err(format!("account {user} has another home"));
    }
    let size = |k: &str, n: u16| {
        Some(n)
            .filter(|n| (1..=MAX_SIZE).contains(n))
            .ok_or_else(|| format!("bad {k}"))
    };
    let (cols, rows) = (size("cols", request.cols)?, size("rows", request.rows)?);
    let env = request
        .env
        .iter()
        .filter(|e| e.contains('='))
        .cloned()
        .collect();
    Ok(shell::Request {
        account,
        cols,
        rows,
        env,
    })
}

fn is_hangup(message: &[u8]) -> bool {
    serde_json::from_slice::<Hangup>(message).is_ok_and(|h| h.hangup)
}

fn reply(conn: &OwnedFd, message: &Reply, fd: Option<&OwnedFd>) {
    let text = serde_json::to_vec(message).unwrap_or_default();
    let fd = fd.map(AsRawFd::as_raw_fd);
    if let Err(e) = sys::send(conn, &text, fd.as_slice()) {
        log(&format!("could not answer the server: {e}"));
    }
}

/// The lowest uid of a termpool account; never below 1000, whatever the environment says.
fn uid_min() -> u32 {
    let uid_min: u32 = env_or("TERMPOOL_UID_MIN", "1000").parse().unwrap_or(1000);
    uid_min.max(1000)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn log(message: &str) {
    eprintln!("termpool-agent: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_root_or_system_accounts_are_refused() {
        // root exists in every /etc/passwd.
        let e = parse_request(
            br#"{"user":"root","home":"/root","cols":80,"rows":24,"env":[]}"#,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("not a termpool user"), "{e}");
        let e = parse_request(
            br#"{"user":"nobody-such","home":"/","cols":80,"rows":24,"env":[]}"#,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("no account"), "{e}");
        assert!(parse_request(b"not json", 1000).is_err());
    }

    #[test]
    fn hangup_messages_are_recognised() {
        assert!(is_hangup(br#"{"hangup":true}"#));
        assert!(!is_hangup(br#"{"hangup":false}"#));
        assert!(!is_hangup(b"{}"));
        assert!(!is_hangup(b"garbage"));
    }
}
