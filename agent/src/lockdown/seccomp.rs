//! The lockdown's seccomp filter: no namespaces, mounts, bpf or perf for anything the agent
//! starts. Docker's own profile allows these once a container is created with SYS_ADMIN.

const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low half of args[0] (little endian): clone's flags.
const ARG0_LOW: u32 = 16;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME.
const CLONE_NEW_FLAGS: u32 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_003E;
    /// x32 numbers carry this bit; the filter refuses them.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);
    pub const CLONE: u32 = 56;
    pub const CLONE3: u32 = 435;
    /// unshare, setns, mount, umount2, pivot_root, open_tree, move_mount, fsopen, fsconfig,
    /// fsmount, fspick, mount_setattr, bpf, perf_event_open.
    pub const DENIED: [u32; 14] = [
        272, 308, 165, 166, 155, 428, 429, 430, 431, 432, 433, 442, 321, 298,
    ];
    /// socket, execve, execveat: what the node's relay never calls once it listens.
    pub const RELAY_DENIED: [u32; 3] = [41, 59, 322];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_00B7;
    pub const X32_BIT: Option<u32> = None;
    pub const CLONE: u32 = 220;
    pub const CLONE3: u32 = 435;
    /// The same calls as on x86_64, by aarch64's numbers.
    pub const DENIED: [u32; 14] = [
        97, 268, 40, 39, 41, 428, 429, 430, 431, 432, 433, 442, 280, 241,
    ];
    /// socket, execve, execveat, by aarch64's numbers.
    pub const RELAY_DENIED: [u32; 3] = [198, 221, 281];
}

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Where a test jumps when it matches.
#[derive(Clone, Copy)]
enum Target {
    Eperm,
    Enosys,
    Clone,
}

/// The program: another architecture is killed; x32 numbers and the denied calls (with
/// `also_denied`) get EPERM; clone3 ENOSYS (its flags sit behind a pointer; libc falls back to
/// clone); clone with a namespace flag EPERM; everything else is allowed.
pub fn program(also_denied: &[u32]) -> Vec<libc::sock_filter> {
    let mut tests: Vec<(u16, u32, Target)> = Vec::new();
    if let Some(bit) = arch::X32_BIT {
        tests.push((JGE, bit, Target::Eperm));
    }
    let denied = arch::DENIED.iter().chain(also_denied);
    tests.extend(denied.map(|&nr| (JEQ, nr, Target::Eperm)));
    tests.push((JEQ, arch::CLONE3, Target::Enosys));
    tests.push((JEQ, arch::CLONE, Target::Clone));
    let mut prog = vec![
        op(LD_ABS, 0, 0, ARCH),
        op(JEQ, 1, 0, arch::AUDIT_ARCH),
        op(RET, 0, 0, RET_KILL_PROCESS),
        op(LD_ABS, 0, 0, NR),
    ];
    // Tail, after the tests: allow; clone's flag check (load, test, allow); EPERM; ENOSYS.
    let tail_start = prog.len() + tests.len();
    let (clone_at, eperm_at, enosys_at) = (tail_start + 1, tail_start + 4, tail_start + 5);
    for (i, (code, k, target)) in tests.iter().enumerate() {
        let at = prog.len();
        debug_assert_eq!(at, 4 + i);
        let to = match target {
            Target::Eperm => eperm_at,
            Target::Enosys => enosys_at,
            Target::Clone => clone_at,
        };
        prog.push(op(*code, (to - at - 1) as u8, 0, *k));
    }
    prog.push(op(RET, 0, 0, RET_ALLOW));
    prog.push(op(LD_ABS, 0, 0, ARG0_LOW));
    prog.push(op(JSET, 1, 0, CLONE_NEW_FLAGS));
    prog.push(op(RET, 0, 0, RET_ALLOW));
    prog.push(op(RET, 0, 0, RET_ERRNO | libc::EPERM as u32));
    prog.push(op(RET, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    prog
}

/// Installs the filter on the calling thread, inherited by every process it starts. Needs
/// no_new_privs (set before).
pub fn install() -> std::io::Result<()> {
    install_program(&program(&[]))
}

/// The node's relay's filter: the lockdown's, and no new socket (it has no network to reach:
/// it relays the descriptors the agents hand it) and no exec. Sets no_new_privs first.
pub fn install_for_relay() -> std::io::Result<()> {
    // SAFETY: prctl with plain integer arguments.
    crate::sys::check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    install_program(&program(&arch::RELAY_DENIED))
}

fn install_program(filter: &[libc::sock_filter]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl reads the program, which lives until the call returns.
    crate::sys::check(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` in a forked child (so that a filter stays there) and asserts it held.
    fn holds_in_a_child(check: impl FnOnce() -> bool) {
        // SAFETY: fork in a test; the child only makes syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let held = check();
            // SAFETY: the child ends here.
            unsafe { libc::_exit(if held { 0 } else { 1 }) }
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn namespaces_and_mounts_are_refused_and_forks_pass() {
        // SAFETY (the closure): plain syscalls in the forked child.
        holds_in_a_child(|| unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || install().is_err() {
                return false;
            }
            let unshare = libc::unshare(libc::CLONE_NEWUSER) == -1 && errno() == libc::EPERM;
            let clone3 = libc::syscall(libc::SYS_clone3, 0, 0) == -1 && errno() == libc::ENOSYS;
            let mount = libc::umount2(c"/proc".as_ptr(), 0) == -1 && errno() == libc::EPERM;
            // A plain fork (clone without namespace flags) still works.
            let child = libc::fork();
            if child == 0 {
                libc::_exit(0);
            }
            let forked = child > 0 && libc::waitpid(child, std::ptr::null_mut(), 0) == child;
            unshare && clone3 && mount && forked
        });
    }

    #[test]
    fn the_relay_opens_no_socket_and_runs_no_program_but_keeps_its_own() {
        // SAFETY (the closure): plain syscalls in the forked child.
        holds_in_a_child(|| unsafe {
            let mut pair = [0; 2];
            let paired =
                libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, pair.as_mut_ptr()) == 0;
            // Without the filter, the exec below would end the child with /bin/true's 0.
            if !paired || install_for_relay().is_err() {
                return false;
            }
            let tcp =
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) == -1 && errno() == libc::EPERM;
            let unix =
                libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) == -1 && errno() == libc::EPERM;
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            let exec =
                libc::execv(c"/bin/true".as_ptr(), argv.as_ptr()) == -1 && errno() == libc::EPERM;
            // The sockets it had still carry messages.
            let sent = libc::send(pair[0], c"x".as_ptr().cast(), 1, 0) == 1;
            tcp && unix && exec && sent
        });
    }
}
