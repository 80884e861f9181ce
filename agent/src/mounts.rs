//! `termpool-agent --prepare-mounts USER_PTYS AGENT_PTYS`: a one-shot run in the mounts helper
//! container (root with SYS_ADMIN, in the user container's PID namespace) that enters the user
//! container's mount namespace and makes its mounts with mount(2) itself, executing nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use crate::sys::check;

/// Where the sessions' own devpts instance is mounted in a user container; the agent opens its
/// `ptmx` (mode 0600, root) for every session. Under /dev so that tty names keep their prefix.
pub const AGENT_PTS: &str = "/dev/termpool-pts";
/// The instance's root: users may reach their own terminal by name, but not list the others.
const AGENT_PTS_MODE: libc::mode_t = 0o711;
/// Per-mount flags as /proc/self/mountinfo names them, kept across a remount.
const MOUNT_FLAGS: [(&str, libc::c_ulong); 7] = [
    ("ro", libc::MS_RDONLY),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("noatime", libc::MS_NOATIME),
    ("nodiratime", libc::MS_NODIRATIME),
    ("relatime", libc::MS_RELATIME),
];

/// Exit codes: 0 every mount is in place, 1 the kernel refused one, 2 bad arguments.
pub fn run(user_ptys: &str, agent_ptys: &str) -> ExitCode {
    let parse = |s: &str| s.parse::<u32>().ok().filter(|n| (1..=1 << 20).contains(n));
    let (Some(user_ptys), Some(agent_ptys)) = (parse(user_ptys), parse(agent_ptys)) else {
        crate::log(&format!(
            "--prepare-mounts: bad PTY counts {user_ptys:?} {agent_ptys:?}"
        ));
        return ExitCode::from(2);
    };
    match prepare(user_ptys, agent_ptys) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::log(&format!("--prepare-mounts: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn prepare(user_ptys: u32, agent_ptys: u32) -> io::Result<()> {
    enter_mount_namespace_of_pid1()?;
    prepare_here(user_ptys, agent_ptys)
}

/// The mounts, in the caller's own mount namespace (which needs SYS_ADMIN there): for an agent
/// that prepares its container itself, where no helper can join it.
pub fn prepare_here(user_ptys: u32, agent_ptys: u32) -> io::Result<()> {
    remount("/proc", "hidepid", "invisible")?;
    remount("/dev/pts", "max", &user_ptys.to_string())?;
    mount_agent_pts(agent_ptys)
}

/// Joins the mount namespace of pid 1: the user container's init, as the helper shares its PID
/// namespace. setns also moves root and cwd to that namespace's root.
fn enter_mount_namespace_of_pid1() -> io::Result<()> {
    let ns = open("/proc/1/ns/mnt", libc::O_RDONLY)?;
    // SAFETY: setns on an fd owned here; this process is single-threaded, as CLONE_NEWNS needs.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) })
        .map_err(|e| context(e, "entering the container's mount namespace"))?;
    Ok(())
}

/// Remounts the topmost mount at `target` with its own options and `key=value`, keeping its
/// per-mount flags (a remount without them would clear nosuid, noexec and the like).
fn remount(target: &str, key: &str, value: &str) -> io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mount = topmost(&mountinfo, target)
        .ok_or_else(|| io::Error::other(format!("nothing is mounted at {target}")))?;
    let data = with_option(mount.super_opts, key, value);
    let flags = libc::MS_REMOUNT | mount_flags(mount.mount_opts);
    sys_mount(mount.fstype, target, mount.fstype, flags, &data)
        .map_err(|e| context(e, &format!("remounting {target} with {data}")))
}

/// Mounts the sessions' own devpts instance (or sets its options again when a previous run
/// mounted it), and makes its root unlistable by users.
pub fn mount_agent_pts(max: u32) -> io::Result<()> {
    let dir = c_path(AGENT_PTS)?;
    // SAFETY: a valid C string; an existing directory is fine (checked below).
    if unsafe { libc::mkdir(dir.as_ptr(), AGENT_PTS_MODE) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(context(e, &format!("creating {AGENT_PTS}")));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    if topmost(&mountinfo, AGENT_PTS).is_some_and(|m| m.fstype == "devpts") {
        remount(AGENT_PTS, "max", &max.to_string())?;
    } else {
        let data = agent_pts_options(crate::accounts::tty_gid(), max);
        let flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        sys_mount("devpts", AGENT_PTS, "devpts", flags, &data)
            .map_err(|e| context(e, &format!("mounting devpts at {AGENT_PTS}")))?;
    }
    // The instance's root comes up 0755; its owner (root) may narrow it.
    // SAFETY: a valid C string.
    check(unsafe { libc::chmod(dir.as_ptr(), AGENT_PTS_MODE) })
        .map_err(|e| context(e, &format!("chmod {AGENT_PTS}")))?;
    Ok(())
}

/// The agent instance's options: slaves `crw--w---- user tty` as on /dev/pts, `ptmx` for root
/// only, at most `max` PTYs.
fn agent_pts_options(tty_gid: u32, max: u32) -> String {
    format!("gid={tty_gid},mode=620,ptmxmode=600,max={max}")
}

/// One line of /proc/self/mountinfo, the parts a remount needs.
#[derive(Debug, PartialEq, Eq)]
struct Mount<'a> {
    mount_opts: &'a str,
    fstype: &'a str,
    super_opts: &'a str,
}

/// The last (topmost) mount at `target` in a mountinfo text.
fn topmost<'a>(mountinfo: &'a str, target: &str) -> Option<Mount<'a>> {
    mountinfo.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        (left.len() >= 6 && right.len() >= 3 && left[4] == target).then(|| Mount {
            mount_opts: left[5],
            fstype: right[0],
            super_opts: right[2],
        })
    })
}

/// The superblock options `opts` without `rw`/`ro` (flags, not data) and any earlier `key`, with
/// `key=value` added.
fn with_option(opts: &str, key: &str, value: &str) -> String {
    opts.split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .filter(|o| o.split('=').next() != Some(key))
        .map(str::to_owned)
        .chain([format!("{key}={value}")])
        .collect::<Vec<_>>()
        .join(",")
}

fn mount_flags(mount_opts: &str) -> libc::c_ulong {
    mount_opts
        .split(',')
        .filter_map(|o| MOUNT_FLAGS.iter().find(|(name, _)| *name == o))
        .fold(0, |flags, (_, flag)| flags | flag)
}

fn sys_mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (source, target) = (c_path(source)?, c_path(target)?);
    let (fstype, data) = (c_path(fstype)?, c_path(data)?);
    // SAFETY: four valid C strings that outlive the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })?;
    Ok(())
}

fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: a valid C string; the fd returned is ours alone.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })
        .map_err(|e| context(e, &format!("opening {path}")))?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::other("a NUL in a mount argument"))
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
154 120 0:55 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
155 154 0:56 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
160 120 0:57 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
170 155 0:58 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=666,max=9
";

    #[test]
    fn the_topmost_mount_at_a_path_is_found() {
        let pts = topmost(MOUNTINFO, "/dev/pts").expect("pts");
        assert_eq!(pts.fstype, "devpts");
        assert!(pts.super_opts.ends_with("max=9"), "{pts:?}");
        assert_eq!(topmost(MOUNTINFO, "/proc").map(|m| m.fstype), Some("proc"));
        assert_eq!(topmost(MOUNTINFO, "/dev/termpool-pts"), None);
        assert_eq!(topmost(MOUNTINFO, "/de"), None);
    }

    #[test]
    fn a_remount_keeps_the_options_and_flags_and_replaces_its_key() {
        let pts = topmost(MOUNTINFO, "/dev/pts").expect("pts");
        assert_eq!(
            with_option(pts.super_opts, "max", "256"),
            "gid=5,mode=620,ptmxmode=666,max=256"
        );
        assert_eq!(
            with_option("rw", "hidepid", "invisible"),
            "hidepid=invisible"
        );
        assert_eq!(
            mount_flags(pts.mount_opts),
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RELATIME
        );
        assert_eq!(mount_flags("ro,nodev"), libc::MS_RDONLY | libc::MS_NODEV);
    }

    #[test]
    fn the_agent_instance_keeps_its_ptmx_for_root() {
        assert_eq!(
            agent_pts_options(5, 200),
            "gid=5,mode=620,ptmxmode=600,max=200"
        );
    }

    #[test]
    fn bad_counts_are_refused_before_anything_is_mounted() {
        assert_eq!(run("0", "10"), ExitCode::from(2));
        assert_eq!(run("10", "x"), ExitCode::from(2));
    }
}
