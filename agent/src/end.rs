//! `termpool-agent --end-processes UID`: a one-shot run that becomes the account (no exec after
//! the uid change) and kills every process of it in this container, waiting until none is left.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

use crate::sys::check;

/// Rounds of SIGKILL before giving up, `PAUSE` apart: 5 s in all.
const ROUNDS: u32 = 50;
const PAUSE: Duration = Duration::from_millis(100);

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
    if let Err(e) = become_account(uid) {
        return refuse(&format!("cannot become uid {uid}: {e}"));
    }
    match kill_all(uid) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(pid)) => {
            crate::log(&format!("process {pid} of uid {uid} survives SIGKILL"));
            ExitCode::FAILURE
        }
        Err(e) => {
            crate::log(&format!("cannot list the processes of uid {uid}: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn refuse(why: &str) -> ExitCode {
    crate::log(why);
    ExitCode::from(2)
}

/// The uid named on the command line, if it may be ended here: a termpool account's, never
/// root's or a system account's. (uid_t)-1 is refused too: setresuid takes it for "unchanged".
pub fn target_uid(arg: &str, uid_min: u32) -> Result<u32, String> {
    let uid: u32 = arg.parse().map_err(|_| format!("not a uid: {arg:?}"))?;
    if uid == 0 || uid < uid_min || uid == u32::MAX {
        return Err(format!(
            "uid {uid} is not a termpool user's (they start at {uid_min})"
        ));
    }
    Ok(uid)
}

/// Becomes `uid` with no way back: no supplementary group, the group of the same number (as
/// useradd makes it in the user image), all three uids.
fn become_account(uid: u32) -> io::Result<()> {
    // SAFETY: setgroups with an empty list reads nothing; the others have no memory effects.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(uid, uid, uid))?;
        check(libc::setresuid(uid, uid, uid))?;
    }
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: getresuid writes three uids to the locals.
    check(unsafe { libc::getresuid(&mut real, &mut effective, &mut saved) })?;
    if [real, effective, saved] != [uid; 3] {
        return Err(io::Error::other("the uids did not change"));
    }
    Ok(())
}

/// SIGKILL to every process of the account but this one, round after round until /proc shows
/// none: killed processes linger as zombies until their parent or init reaps them. The pid of a
/// survivor after the last round.
fn kill_all(uid: u32) -> io::Result<Option<libc::pid_t>> {
    let me = std::process::id() as libc::pid_t;
    let mut round = 1;
    loop {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        match survivor(uid, me)? {
            None => return Ok(None),
            Some(pid) if round == ROUNDS => return Ok(Some(pid)),
            Some(_) => {}
        }
        round += 1;
        std::thread::sleep(PAUSE);
    }
}

/// A process of `uid` other than `me`, as /proc shows them to the account (the owner of
/// /proc/PID is the process's effective uid, zombies' included). hidepid hides the account's
/// non-dumpable processes here, as from the user; kill(-1) reaches them all the same.
fn survivor(uid: u32, me: libc::pid_t) -> io::Result<Option<libc::pid_t>> {
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // Gone meanwhile (Err) is what we want.
        let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
        if pid != me && owner.is_ok_and(|owner| owner == uid) {
            return Ok(Some(pid));
        }
    }
    Ok(None)
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
    fn a_uid_with_no_process_has_no_survivor() {
        let me = std::process::id() as libc::pid_t;
        assert_eq!(survivor(u32::MAX - 7, me).unwrap(), None);
        // SAFETY: geteuid has no memory effects.
        let own = unsafe { libc::geteuid() };
        assert_ne!(survivor(own, me).unwrap(), Some(me), "never itself");
    }
}
