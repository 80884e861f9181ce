//! Ending sessions as closing a terminal does: SIGHUP and SIGCONT to the shell's session, SIGKILL
//! to the shell later, sent as root (CAP_KILL), never taking the user's uid.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::sys;

/// How long a hung-up shell may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(3);
/// How often a hung-up session is scanned again for processes forked after the previous scan
/// (their parent may die before it can pass the SIGHUP on): until `GRACE` has passed and the
/// shell is gone, and once more after that.
const RESCAN: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Hangups {
    sweeps: Vec<Sweep>,
}

/// One hung-up session: its members are signalled once each, however late they appear.
struct Sweep {
    leader: libc::pid_t,
    /// Held from the start, so the SIGKILL cannot reach a reused pid. None: already reaped.
    shell: Option<OwnedFd>,
    signalled: HashSet<libc::pid_t>,
    next: Instant,
    /// When the shell is killed if it is still there.
    deadline: Instant,
    /// This scan began after the deadline, with the shell gone: it is the last.
    last: bool,
}

impl Sweep {
    fn shell_gone(&self) -> bool {
        !matches!(&self.shell, Some(shell) if !sys::has_exited(shell))
    }
}

impl Hangups {
    pub fn add(&mut self, leader: libc::pid_t) {
        let now = Instant::now();
        self.sweeps.push(Sweep {
            leader,
            shell: sys::pidfd_open(leader).ok(),
            signalled: HashSet::new(),
            next: now,
            deadline: now + GRACE,
            last: false,
        });
    }

    /// How long the event loop may wait before `run` has work.
    pub fn next_timeout(&self) -> Option<Duration> {
        let next = self.sweeps.iter().map(|s| s.next).min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    pub fn run(&mut self) {
        let now = Instant::now();
        for sweep in self.sweeps.iter_mut().filter(|s| s.next <= now) {
            // Decided before the scan: whatever the shell forked before it died is in it.
            sweep.last = now >= sweep.deadline && sweep.shell_gone();
        }
        self.sweep(now);
        for sweep in &self.sweeps {
            if now >= sweep.deadline && !sweep.shell_gone() {
                if let Some(shell) = &sweep.shell {
                    let _ = sys::pidfd_send_signal(shell, libc::SIGKILL);
                }
            }
        }
        self.sweeps.retain(|s| !s.last);
    }

    /// SIGHUP and SIGCONT to every member of the sessions due for a scan not signalled before.
    fn sweep(&mut self, now: Instant) {
        let mut due: Vec<&mut Sweep> = self.sweeps.iter_mut().filter(|s| s.next <= now).collect();
        if due.is_empty() {
            return;
        }
        let leaders: Vec<libc::pid_t> = due.iter().map(|s| s.leader).collect();
        for (member, sid) in session_members(&leaders) {
            let Some(sweep) = due.iter_mut().find(|s| s.leader == sid) else {
                continue;
            };
            if sweep.signalled.insert(member) {
                // SAFETY: kill has no memory effects.
                unsafe {
                    libc::kill(member, libc::SIGHUP);
                    libc::kill(member, libc::SIGCONT);
                }
            }
        }
        for sweep in due {
            sweep.next = now + RESCAN;
        }
    }
}

/// The processes (root sees all, whatever hidepid says) whose session id is one of `sids`, with it.
fn session_members(sids: &[libc::pid_t]) -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            let sid = session_of(&stat)?;
            sids.contains(&sid).then_some((pid, sid))
        })
        .collect()
}

/// The session id in a /proc/<pid>/stat text: field 6, counted after the command name, which may
/// itself hold spaces or ')'.
fn session_of(stat: &[u8]) -> Option<libc::pid_t> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_is_read_after_odd_command_names() {
        assert_eq!(
            session_of(b"42 (bash) S 1 42 42 34816 42 4194560"),
            Some(42)
        );
        assert_eq!(session_of(b"43 (a) b) (c) R 42 43 77 0 -1"), Some(77));
        assert_eq!(session_of(b"garbage"), None);
        let own = std::fs::read("/proc/self/stat").unwrap();
        assert_eq!(session_of(&own), Some(unsafe { libc::getsid(0) }));
    }
}
