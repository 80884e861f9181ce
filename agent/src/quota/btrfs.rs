//! The btrfs side of the disk quota: each account's home is a subvolume of the workspace with a
//! qgroup limit, made and limited through the btrfs ioctls (no btrfs-progs in the image).

use std::fs::{File, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::sys::check;

/// `_IOW(0x94, 14 / 15, struct btrfs_ioctl_vol_args)` and
/// `_IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)`.
const IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E;
const IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940F;
const IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942B;
/// The limit applies to what the subvolume references (as `btrfs qgroup limit` sets it).
const QGROUP_LIMIT_MAX_RFER: u64 = 1;
/// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INO: u64 = 256;
const NAME_MAX: usize = 4087;

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; NAME_MAX + 1],
}

#[repr(C)]
struct QgroupLimitArgs {
    /// 0: the qgroup of the subvolume the ioctl's fd is in.
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// Makes `dir/name` a subvolume owned by `uid` (mode 700) limited to `bytes`, or limits the
/// subvolume already there. Refuses, changing nothing, a home that is not a subvolume (a qgroup
/// cannot limit it) and, for a new home, a `uid` owning another entry of `dir` (the account
/// script's refusal, made before anything is created).
pub fn limit_home(dir: &str, name: &str, uid: u32, bytes: u64) -> io::Result<()> {
    let home = Path::new(dir).join(name);
    match std::fs::symlink_metadata(&home) {
        Ok(meta) if !meta.is_dir() => Err(io::Error::other(format!(
            "{} exists and is not a directory",
            home.display()
        ))),
        Ok(meta) if meta.ino() != SUBVOLUME_ROOT_INO => Err(io::Error::other(format!(
            "{} exists and is not a btrfs subvolume, so no qgroup can limit it: move it into \
             a subvolume (docs/isolation.md, migration)",
            home.display()
        ))),
        Ok(_) => set_limit(&open_dir(&home)?, bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(dir, name, uid, bytes),
        Err(e) => Err(e),
    }
}

/// A new limited subvolume home; removed again if it cannot be owned and limited.
fn create(dir: &str, name: &str, uid: u32, bytes: u64) -> io::Result<()> {
    if let Some(other) = owned_entry(dir, uid)? {
        return Err(io::Error::other(format!("uid {uid} already owns {other}")));
    }
    let workspace = open_dir(Path::new(dir))?;
    if let Err(e) = vol_ioctl(&workspace, IOC_SUBVOL_CREATE, name) {
        if e.raw_os_error() == Some(libc::EEXIST) {
            // Made by a helper running at once for the same account: limit that one.
            return limit_home(dir, name, uid, bytes);
        }
        return Err(e);
    }
    let home = Path::new(dir).join(name);
    let made = open_dir(&home).and_then(|h| {
        // Mode first: once the account owns it, root without CAP_FOWNER cannot change it.
        h.set_permissions(Permissions::from_mode(0o700))?;
        std::os::unix::fs::fchown(&h, Some(uid), Some(uid))?;
        set_limit(&h, bytes)
    });
    if let Err(e) = made {
        // Never leave an unlimited home behind.
        let _ = vol_ioctl(&workspace, IOC_SNAP_DESTROY, name);
        return Err(e);
    }
    Ok(())
}

/// Another entry of `dir` owned by `uid`, if any.
fn owned_entry(dir: &str, uid: u32) -> io::Result<Option<String>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.metadata()?.uid() == uid {
            return Ok(Some(entry.path().display().to_string()));
        }
    }
    Ok(None)
}

fn open_dir(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// A subvolume ioctl on `name` in the directory `dir`.
fn vol_ioctl(dir: &File, request: libc::c_ulong, name: &str) -> io::Result<()> {
    if name.len() > NAME_MAX || name.contains(['/', '\0']) {
        return Err(io::Error::other(format!("bad subvolume name {name:?}")));
    }
    let mut args = VolArgs {
        fd: 0,
        name: [0; NAME_MAX + 1],
    };
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the kernel reads one VolArgs (the C layout), which outlives the call.
    check(unsafe { libc::ioctl(dir.as_raw_fd(), request as _, &args as *const VolArgs) })?;
    Ok(())
}

/// Limits the subvolume of `home` to `bytes` referenced. ENOTCONN: quotas are not enabled.
fn set_limit(home: &File, bytes: u64) -> io::Result<()> {
    let mut args = QgroupLimitArgs {
        qgroupid: 0,
        flags: QGROUP_LIMIT_MAX_RFER,
        max_rfer: bytes,
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    // SAFETY: the kernel reads one QgroupLimitArgs (the C layout), which outlives the call.
    let r = unsafe { libc::ioctl(home.as_raw_fd(), IOC_QGROUP_LIMIT as _, &mut args) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(io::Error::other(
            "btrfs quotas are not enabled on the workspace (btrfs quota enable MOUNTPOINT)",
        )),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_arguments_have_the_kernels_sizes() {
        // The sizes are encoded in the request numbers.
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<QgroupLimitArgs>(), 48);
        assert_eq!((IOC_SUBVOL_CREATE >> 16) & 0x3FFF, 4096);
        assert_eq!((IOC_QGROUP_LIMIT >> 16) & 0x3FFF, 48);
    }
}
