//! `termpool-agent --set-quota DIR UID MB`: a one-shot run in the quota helper container (root
//! with SYS_ADMIN) that sets the user quota of one account on the filesystem holding DIR.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use crate::sys::check;

/// `Q_SETQUOTA` and the user quota type, combined as the kernel's QCMD does.
const Q_SETQUOTA: libc::c_int = 0x80_0008;
const USRQUOTA: libc::c_int = 0;
/// `dqb_valid`: the block limits are set (QIF_BLIMITS).
const QIF_BLIMITS: u32 = 1;
/// Quota block limits count 1 KiB units.
const KIB_PER_MB: u64 = 1024;

/// Exit codes: 0 set, 1 the kernel refused, 2 bad arguments.
pub fn run(dir: &str, uid: &str, mb: &str, uid_min: u32) -> ExitCode {
    let (uid, mb) = match (crate::end::target_uid(uid, uid_min), mb.parse::<u64>()) {
        (Ok(uid), Ok(mb)) if mb > 0 => (uid, mb),
        _ => {
            crate::log(&format!("--set-quota: bad uid {uid:?} or size {mb:?}"));
            return ExitCode::from(2);
        }
    };
    match set_quota(dir, uid, mb) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::log(&format!("cannot set the quota of uid {uid} on {dir}: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Hard and soft block limits of `mb` MiB for `uid` on the filesystem of `dir`, through
/// quotactl_fd (Linux 5.14): no device node is needed.
fn set_quota(dir: &str, uid: u32, mb: u64) -> io::Result<()> {
    let path = CString::new(dir).map_err(|_| io::Error::other("a NUL in the path"))?;
    // SAFETY: `path` is a valid C string; the fd returned is ours alone.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let limit = mb * KIB_PER_MB;
    // SAFETY: dqblk is plain integers; all-zero is a valid value.
    let mut dq: libc::dqblk = unsafe { std::mem::zeroed() };
    dq.dqb_bhardlimit = limit;
    dq.dqb_bsoftlimit = limit;
    dq.dqb_valid = QIF_BLIMITS;
    let cmd = (Q_SETQUOTA << 8) | USRQUOTA;
    // SAFETY: quotactl_fd reads one dqblk from the pointer, which outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fd.as_raw_fd(),
            cmd as libc::c_uint,
            uid as libc::c_long,
            &mut dq as *mut libc::dqblk,
        )
    })?;
    Ok(())
}
