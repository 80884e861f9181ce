//! `termpool-agent --end-processes UID`: a one-shot run, as root with CAP_KILL and never as the
//! account, that kills every process of the account in this container until none is left.

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::sys;

/// How long the account's processes may keep appearing (a fork bomb being taken apart) or linger
/// as zombies before the run gives up.
const DEADLINE: Duration = Duration::from_secs(5);
/// The pause between rounds that found only zombies (their parent or init has yet to reap them).
const PAUSE: Duration = Duration::from_millis(50);

/// Exit codes: 0 no process of the account is left, 1 one is, 2 refused (bad uid, not root).
pub fn run(arg: &str, uid_min: u32) -> ExitCode {
    let uid = match target_uid(arg, uid_min) {
        Ok(uid) => uid,
        Err(e) => return refuse(&e),
    };
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return refuse("--end-processes must run as root");
    }
    match kill_all(uid) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(pid)) => {
            crate::log(&format!("process {pid} of uid {uid} survives SIGKILL"));
            ExitCode::FAILURE
        }
        Err(e) => {
            crate::log(&format!("cannot end the processes of uid {uid}: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn refuse(why: &str) -> ExitCode {
    crate::log(why);
    ExitCode::from(2)
}

/// The uid named on the command line, if it may be ended here: a termpool account's, never
/// root's or a system account's. (uid_t)-1 is refused too.
pub fn target_uid(arg: &str, uid_min: u32) -> Result<u32, String> {
    let uid: u32 = arg.parse().map_err(|_| format!("not a uid: {arg:?}"))?;
    if uid == 0 || uid < uid_min || uid == u32::MAX {
        return Err(format!(
            "uid {uid} is not a termpool user's (they start at {uid_min})"
        ));
    }
    Ok(uid)
}

/// SIGKILL to every process whose real uid is `uid`, round after round until /proc shows none.
/// This process keeps uid 0 throughout, so the account can neither see it (hidepid) nor signal
/// it; root sees every process whatever hidepid says. The pid of a survivor at the deadline.
pub fn kill_all(uid: u32) -> io::Result<Option<libc::pid_t>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let round = kill_round(uid)?;
        match round.first_left {
            None => return Ok(None),
            Some(pid) if Instant::now() >= deadline => return Ok(Some(pid)),
            // Killed something: its children may be being forked right now; look again at once.
            Some(_) if round.killed > 0 => {}
            Some(_) => std::thread::sleep(PAUSE),
        }
    }
}

struct Round {
    /// Live processes of the account signalled in this round.
    killed: usize,
    /// A process of the account seen in this round, live or zombie.
    first_left: Option<libc::pid_t>,
}

fn kill_round(uid: u32) -> io::Result<Round> {
    let mut round = Round {
        killed: 0,
        first_left: None,
    };
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // The pidfd first, the owner check after: a pid reused in between is checked as the new
        // process it now is, and the signal cannot reach a process other than the one checked.
        let Ok(pidfd) = sys::pidfd_open(pid) else {
            continue; // gone meanwhile
        };
        match identity(pid) {
            Some((owner, zombie)) if owner == uid => {
                round.first_left.get_or_insert(pid);
                if !zombie && sys::pidfd_send_signal(&pidfd, libc::SIGKILL).is_ok() {
                    round.killed += 1;
                }
            }
            _ => {}
        }
    }
    Ok(round)
}

/// The real uid of process `pid` and whether it is a zombie, from /proc/PID/status.
fn identity(pid: libc::pid_t) -> Option<(u32, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

fn parse_status(status: &str) -> Option<(u32, bool)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let real_uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    let zombie = field("State:")?.starts_with('Z');
    Some((real_uid, zombie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_termpool_uids_may_be_ended() {
        assert_eq!(target_uid("200000", 200_000), Ok(200_000));
        assert_eq!(target_uid("4294967294", 1000), Ok(u32::MAX - 1));
        for bad in [
            "0",
            "999",
            "199999",
            "4294967295",
            "-1",
            "",
            "abc",
            "2e5",
            " 200000",
        ] {
            assert!(target_uid(bad, 200_000).is_err(), "{bad:?} was accepted");
        }
        assert!(target_uid("0", 0).is_err(), "root, whatever the minimum");
    }

    #[test]
    fn the_real_uid_and_zombie_state_are_read_from_status() {
        let live = "Name:\tsleep\nState:\tT (stopped)\nPid:\t9\nUid:\t200001\t0\t0\t0\n";
        assert_eq!(parse_status(live), Some((200_001, false)));
        let zombie = "State:\tZ (zombie)\nUid:\t5\t5\t5\t5\n";
        assert_eq!(parse_status(zombie), Some((5, true)));
        assert_eq!(parse_status("garbage"), None);
    }

    #[test]
    fn a_uid_with_no_process_is_done_at_once() {
        let round = kill_round(u32::MAX - 7).unwrap();
        assert_eq!((round.killed, round.first_left), (0, None));
    }
}
