//! Taking back the sessions' PTYs that ended sessions left held: the kernel frees a PTY only when
//! the last fd of its slave closes, so a process a user leaves on a closed session's terminal
//! keeps that number of the agent's instance. When the instance is full, the account holding
//! the most such terminals (two at least) has its processes ended, and the PTY is asked for again.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// Who got each PTY number of the agent's instance last: the account and the session's shell.
/// Only the agent opens PTYs there, so every number in use is one of these.
static GIVEN: Mutex<Option<HashMap<u32, (u32, libc::pid_t)>>> = Mutex::new(None);

/// The fewest terminals of ended sessions an account must hold to be ended for them.
const MIN_HELD: usize = 2;

/// Notes that PTY `master` went to `uid`'s session whose shell is `shell`.
pub fn record(master: &OwnedFd, uid: u32, shell: libc::pid_t) {
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } == 0 {
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        given
            .get_or_insert_with(HashMap::new)
            .insert(number, (uid, shell));
    }
}

/// With the instance full: ends every process of the account that holds the most terminals of
/// ended sessions, if two or more (one may be a session the server is still closing). Whether
/// one was ended (then a PTY may be asked for again).
pub fn free_held() -> bool {
    let held: Vec<u32> = {
        let given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        given
            .iter()
            .flatten()
            .filter(|(_, (_, shell))| !is_live_shell(*shell))
            .map(|(_, (uid, _))| *uid)
            .collect()
    };
    let top = top_holder(&held).map(|uid| (uid, held.iter().filter(|u| **u == uid).count()));
    let Some((uid, count)) = top.filter(|(_, count)| *count >= MIN_HELD) else {
        crate::log("the sessions' PTYs are full, none held by an account's leftovers");
        return false;
    };
    crate::log(&format!(
        "the sessions' PTYs are full: ending the processes of uid {uid}, which holds {count} \
         terminals of ended sessions"
    ));
    match crate::end::kill_all(uid) {
        Ok(None) => true,
        Ok(Some(pid)) => {
            crate::log(&format!("process {pid} of uid {uid} survives SIGKILL"));
            true
        }
        Err(e) => {
            crate::log(&format!("cannot end the processes of uid {uid}: {e}"));
            false
        }
    }
}

/// The uid appearing most often (the lowest of a tie), never root.
fn top_holder(held: &[u32]) -> Option<u32> {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for uid in held.iter().filter(|u| **u != 0) {
        *counts.entry(*uid).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(uid, n)| (*n, std::cmp::Reverse(*uid)))
        .map(|(uid, _)| uid)
}

/// Whether `pid` is a live (not zombie) child of this agent: a session's shell still running.
fn is_live_shell(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // SAFETY: getpid has no memory effects.
    parent_if_running(&stat) == Some(unsafe { libc::getpid() })
}

/// The parent pid in a /proc/PID/stat text, unless the process is a zombie (fields counted after
/// the command name, which may hold spaces or ')').
fn parent_if_running(stat: &[u8]) -> Option<libc::pid_t> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    (state != "Z").then_some(())?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_holding_the_most_is_chosen() {
        assert_eq!(top_holder(&[7, 9, 9, 7, 9]), Some(9));
        assert_eq!(top_holder(&[8, 7]), Some(7));
        assert_eq!(top_holder(&[0, 0]), None);
        assert_eq!(top_holder(&[]), None);
    }

    #[test]
    fn a_shell_is_live_while_it_runs_under_this_agent() {
        assert_eq!(parent_if_running(b"12 (a) b) S 34 12 12 0"), Some(34));
        assert_eq!(parent_if_running(b"12 (sh) Z 34 12 12 0"), None);
        assert!(!is_live_shell(std::process::id() as libc::pid_t));
    }
}
