//! The agent's lockdown in Swarm mode (`docs/scaling.md`, "The agent's lockdown"): what the
//! hidepid helper and Docker's flags do on a single host, done by the agent itself before any
//! user process exists, and read back from /proc for STATUS.

mod caps;
mod fence;
pub mod seccomp;

use std::ffi::CString;
use std::path::Path;

use termpool_agent_proto::LockdownReport;

use crate::sys::check;

/// The step that failed, and why: the agent then serves nothing but STATUS.
#[derive(Debug)]
pub struct LockdownError(String);

impl std::fmt::Display for LockdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, LockdownError> {
    r.map_err(|e| LockdownError(format!("{what}: {e}")))
}

/// Every step, in order: the mounts (hidepid, the users' PTY cap, the sessions' own devpts
/// instance), the fence, the key's mount gone, no_new_privs, the start capabilities dropped,
/// the seccomp filter. Returns the networks fenced.
pub fn apply(
    agent_port: u16,
    key_file: &Path,
    (user_ptys, agent_ptys): (u32, u32),
) -> Result<Vec<String>, LockdownError> {
    step(
        "the mounts (/proc hidepid=invisible, /dev/pts max, the sessions' devpts)",
        crate::mounts::prepare_here(user_ptys, agent_ptys),
    )?;
    let fenced = step("the network fence", fence::apply(agent_port))?;
    step("removing the key file", hide_key(key_file))?;
    // SAFETY: prctl with integer arguments.
    step(
        "no_new_privs",
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }),
    )?;
    step(
        "dropping SYS_ADMIN, NET_ADMIN, SETPCAP",
        caps::drop_start_caps(),
    )?;
    step("the seccomp filter", seccomp::install())?;
    Ok(fenced)
}

/// Unmounts the key file (a Swarm secret is a mount of its own); a key file that is not a
/// mount is removed. Either way it must be gone after.
fn hide_key(path: &Path) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: umount2 reads the NUL-terminated path.
    let unmounted = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0;
    // The mount point (or the file itself, when it was not a mount) goes too, where it can.
    let _ = std::fs::remove_file(path);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // An empty file under the unmounted secret (the mount point) holds nothing.
        Ok(m) if unmounted && m.len() == 0 => Ok(()),
        _ => Err(format!("{} is still there", path.display())),
    }
}

/// The lockdown as the kernel shows it now.
pub fn report(error: Option<String>) -> LockdownReport {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    LockdownReport {
        proc_hidepid: proc_has_hidepid(&mounts),
        cap_eff: field("CapEff:").unwrap_or_default(),
        no_new_privs: field("NoNewPrivs:").as_deref() == Some("1"),
        seccomp_filters: field("Seccomp_filters:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        error,
    }
}

/// Whether the topmost `proc` mount on /proc has hidepid=invisible (shown as `2` by older
/// kernels).
fn proc_has_hidepid(mounts: &str) -> bool {
    mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("/proc"))
        .rfind(|l| l.split_whitespace().nth(2) == Some("proc"))
        .and_then(|l| l.split_whitespace().nth(3))
        .is_some_and(|opts| {
            opts.split(',')
                .any(|o| o == "hidepid=invisible" || o == "hidepid=2")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidepid_is_read_from_the_topmost_proc_mount() {
        let on = "proc /proc proc rw,nosuid,relatime 0 0\nproc /proc proc rw,relatime,hidepid=invisible 0 0\n";
        assert!(proc_has_hidepid(on));
        let off = "proc /proc proc rw,relatime,hidepid=invisible 0 0\nproc /proc proc rw 0 0\n";
        assert!(!proc_has_hidepid(off));
        assert!(!proc_has_hidepid(
            "tmpfs /proc/kcore tmpfs rw,hidepid=2 0 0\n"
        ));
        let own = report(None);
        assert!(
            own.cap_eff.chars().all(|c| c.is_ascii_hexdigit()),
            "{own:?}"
        );
    }
}
