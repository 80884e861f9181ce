//! Ending sessions as closing a terminal does: SIGHUP and SIGCONT to the shell's session, SIGKILL
//! to the shell later, sent as root (CAP_KILL), never taking the user's uid.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::sys;

/// How long a hung-up shell may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Hangups {
    /// Sessions to hang up in this round: (leader, uid).
    pending: Vec<(libc::pid_t, u32)>,
    /// Shells to kill if still there at the deadline.
    deadlines: Vec<(Instant, OwnedFd)>,
}

impl Hangups {
    pub fn add(&mut self, leader: libc::pid_t, uid: u32) {
        self.pending.push((leader, uid));
        // Held from here on, so the SIGKILL later cannot reach a reused pid. None: the shell has
        // already been reaped.
        if let Ok(shell) = sys::pidfd_open(leader) {
            self.deadlines.push((Instant::now() + GRACE, shell));
        }
    }

    /// How long the event loop may wait before `run` has work.
    pub fn next_timeout(&self) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = self.deadlines.iter().map(|d| d.0).min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    pub fn run(&mut self) {
        let leaders: Vec<libc::pid_t> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|p| p.0)
            .collect();
        if !leaders.is_empty() {
            for member in session_members(&leaders) {
                // SAFETY: kill has no memory effects.
                unsafe {
                    libc::kill(member, libc::SIGHUP);
                    libc::kill(member, libc::SIGCONT);
                }
            }
        }
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.deadlines)
            .into_iter()
            .partition(|d| d.0 <= now);
        self.deadlines = later;
        for (_, shell) in due {
            if !sys::has_exited(&shell) {
                let _ = sys::pidfd_send_signal(&shell, libc::SIGKILL);
            }
        }
    }
}

/// The processes (root sees all, whatever hidepid says) whose session id is one of `sids`.
fn session_members(sids: &[libc::pid_t]) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| session_of(&stat))
                .is_some_and(|sid| sids.contains(&sid))
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
