//! `termpool-agent --set-quota HOME UID MB`: a one-shot run in the quota helper container (root
//! with SYS_ADMIN and CHOWN) that limits one account's disk use on the workspace holding HOME, by
//! the workspace's filesystem: a user quota (ext4, XFS) or a limited subvolume home (btrfs).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use crate::sys::check;

mod btrfs;

/// `Q_SETQUOTA` and the user quota type, combined as the kernel's QCMD does.
const Q_SETQUOTA: libc::c_int = 0x80_0008;
const USRQUOTA: libc::c_int = 0;
/// `dqb_valid`: the block limits are set (QIF_BLIMITS).
const QIF_BLIMITS: u32 = 1;
/// Quota block limits count 1 KiB units.
const KIB_PER_MB: u64 = 1024;
/// `statfs` magic numbers of the filesystems whose quotas are known here.
const EXT4_MAGIC: u32 = 0xEF53;
const XFS_MAGIC: u32 = 0x5846_5342;
const BTRFS_MAGIC: u32 = 0x9123_683E;

/// How a workspace's filesystem limits an account.
#[derive(Debug, PartialEq)]
enum Kind {
    /// Per-uid block limits (`quotactl`): ext4 and XFS mounted with user quotas.
    UserQuota,
    /// A subvolume per home with a qgroup limit.
    Btrfs,
    /// No quota termpool can set: the `statfs` magic, for the error.
    Unsupported(u32),
}

/// Exit codes: 0 set, 1 refused (by the kernel, or the home or filesystem cannot be limited),
/// 2 bad arguments.
pub fn run(home: &str, uid: &str, mb: &str, uid_min: u32) -> ExitCode {
    let (uid, mb) = match (crate::end::target_uid(uid, uid_min), mb.parse::<u64>()) {
        (Ok(uid), Ok(mb)) if mb > 0 && mb <= u64::MAX >> 20 => (uid, mb),
        _ => {
            crate::log(&format!("--set-quota: bad uid {uid:?} or size {mb:?}"));
            return ExitCode::from(2);
        }
    };
    let Some((workspace, name)) = split_home(home) else {
        crate::log(&format!("--set-quota: bad home {home:?}"));
        return ExitCode::from(2);
    };
    match set(workspace, name, uid, mb) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::log(&format!("cannot set the quota of uid {uid} on {home}: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The workspace and the home's name in it: `/workspace/NAME`, NAME one plain path component.
fn split_home(home: &str) -> Option<(&str, &str)> {
    let (dir, name) = home.rsplit_once('/')?;
    let plain = !name.is_empty() && name != "." && name != ".." && name.len() <= 255;
    (plain && dir.starts_with('/') && !name.contains('\0')).then_some((dir, name))
}

/// Limits `uid` to `mb` MiB on the workspace `dir` (its home there being `name`).
fn set(dir: &str, name: &str, uid: u32, mb: u64) -> io::Result<()> {
    let workspace = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    match kind(&workspace)? {
        Kind::UserQuota => set_user_quota(&workspace, uid, mb),
        Kind::Btrfs => btrfs::limit_home(dir, name, uid, mb << 20),
        Kind::Unsupported(magic) => Err(io::Error::other(format!(
            "the workspace's filesystem (statfs magic {magic:#x}) has no quota termpool can \
             set: use btrfs with quotas enabled, or ext4/XFS mounted with user quotas"
        ))),
    }
}

/// The kind of quota the filesystem of `dir` takes.
fn kind(dir: &File) -> io::Result<Kind> {
    // SAFETY: statfs is plain integers; all-zero is a valid value, filled by the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open fd; `st` outlives the call.
    check(unsafe { libc::fstatfs(dir.as_raw_fd(), &mut st) })?;
    Ok(kind_of(st.f_type as u32))
}

fn kind_of(magic: u32) -> Kind {
    match magic {
        EXT4_MAGIC | XFS_MAGIC => Kind::UserQuota,
        BTRFS_MAGIC => Kind::Btrfs,
        other => Kind::Unsupported(other),
    }
}

/// Hard and soft block limits of `mb` MiB for `uid` on the filesystem of `dir`, through
/// quotactl_fd (Linux 5.14): no device node is needed. Fails (ESRCH) without user quotas on.
fn set_user_quota(dir: &File, uid: u32, mb: u64) -> io::Result<()> {
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
            dir.as_raw_fd(),
            cmd as libc::c_uint,
            uid as libc::c_long,
            &mut dq as *mut libc::dqblk,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_one_plain_name_in_an_absolute_workspace() {
        assert_eq!(split_home("/workspace/u_1"), Some(("/workspace", "u_1")));
        for bad in [
            "/workspace/",
            "/workspace/..",
            "/workspace/.",
            "workspace/u",
            "u",
        ] {
            assert_eq!(split_home(bad), None, "{bad}");
        }
    }

    #[test]
    fn filesystems_map_to_their_quota() {
        assert_eq!(kind_of(0xEF53), Kind::UserQuota);
        assert_eq!(kind_of(0x5846_5342), Kind::UserQuota);
        assert_eq!(kind_of(0x9123_683E), Kind::Btrfs);
        assert_eq!(kind_of(0x0102_1994), Kind::Unsupported(0x0102_1994)); // tmpfs
    }
}
