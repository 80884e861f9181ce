//! A seccomp filter that refuses `ioctl(TIOCSTI)` (typing into a terminal's input) to the shells
//! and everything they start, whatever the host's `dev.tty.legacy_tiocsti` says, and the btrfs
//! ioctls that make subvolumes (a nested subvolume escapes its home's disk quota).

/// `struct seccomp_data` offsets: the syscall number, the audit arch, the low half of args[1]
/// (little endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG1_LOW: u32 = 24;

#[cfg(target_arch = "x86_64")]
const NATIVE: (u32, u32) = (0xC000_003E, 16);
#[cfg(target_arch = "x86_64")]
const COMPAT: (u32, u32) = (0x4000_0003, 54);
#[cfg(target_arch = "aarch64")]
const NATIVE: (u32, u32) = (0xC000_00B7, 29);
#[cfg(target_arch = "aarch64")]
const COMPAT: (u32, u32) = (0x4000_0028, 54);

const TIOCSTI: u32 = 0x5412;
/// The ioctl requests refused: TIOCSTI, then BTRFS_IOC_SNAP_CREATE, SUBVOL_CREATE,
/// SNAP_CREATE_V2 and SUBVOL_CREATE_V2 (the same numbers in the 32-bit ABI): a subvolume made in
/// a home has a qgroup of its own, outside the home's limit.
const DENIED: [u32; 5] = [TIOCSTI, 0x5000_9401, 0x5000_940E, 0x5000_9417, 0x5000_9418];
/// The program's length: 8 instructions before the request checks, then one each, then 2 returns.
const LEN: usize = 8 + DENIED.len() + 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: ioctl with a request of [`DENIED`], in the native or the 32-bit ABI, fails with
/// EPERM. Jump offsets count the instructions skipped; ALLOW is at `LEN - 2`, EPERM at `LEN - 1`.
fn program() -> [libc::sock_filter; LEN] {
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    let (allow, deny) = (LEN - 2, LEN - 1);
    let mut p = [op(RET, 0, 0, SECCOMP_RET_ALLOW); LEN];
    p[0] = op(LD_ABS, 0, 0, ARCH);
    p[1] = op(JEQ, 0, to(1, 4), COMPAT.0);
    p[2] = op(LD_ABS, 0, 0, NR);
    p[3] = op(JEQ, to(3, 7), to(3, allow), COMPAT.1);
    p[4] = op(JEQ, 0, to(4, allow), NATIVE.0);
    p[5] = op(LD_ABS, 0, 0, NR);
    p[6] = op(JEQ, 0, to(6, allow), NATIVE.1);
    p[7] = op(LD_ABS, 0, 0, ARG1_LOW);
    for (i, request) in DENIED.iter().enumerate() {
        p[8 + i] = op(JEQ, to(8 + i, deny), 0, *request);
    }
    p[deny] = op(RET, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32);
    p
}

/// Installs the filter on the calling thread (inherited across fork and exec). Needs
/// no_new_privs, which the user containers have (and which is set here all the same).
/// Async-signal-safe: called in the forked child.
pub unsafe fn deny_tiocsti() -> bool {
    let filter = program();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        && libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over one `seccomp_data` (arch, nr, low half of args[1]): its verdict.
    fn verdict(arch: u32, nr: u32, request: u32) -> u32 {
        let filter = program();
        let (mut pc, mut acc) = (0, 0);
        loop {
            let op = filter[pc];
            pc += 1;
            match op.code {
                LD_ABS => {
                    acc = match op.k {
                        ARCH => arch,
                        NR => nr,
                        ARG1_LOW => request,
                        other => panic!("load of offset {other}"),
                    }
                }
                JEQ => pc += usize::from(if acc == op.k { op.jt } else { op.jf }),
                RET => return op.k,
                other => panic!("opcode {other}"),
            }
        }
    }

    #[test]
    fn the_program_refuses_each_denied_ioctl_in_both_abis_and_nothing_else() {
        let denied = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        for (arch, ioctl) in [NATIVE, COMPAT] {
            for request in DENIED {
                assert_eq!(
                    verdict(arch, ioctl, request),
                    denied,
                    "{arch:#x} {request:#x}"
                );
            }
            // TIOCGWINSZ; another syscall with a denied request in its second argument.
            assert_eq!(verdict(arch, ioctl, 0x5413), SECCOMP_RET_ALLOW);
            assert_eq!(verdict(arch, ioctl + 1, TIOCSTI), SECCOMP_RET_ALLOW);
        }
        assert_eq!(verdict(0x1234, NATIVE.1, TIOCSTI), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn tiocsti_and_subvolume_creation_are_refused_and_other_ioctls_pass() {
        // In a child, so that the filter stays there.
        // SAFETY: fork in a test; the child only makes syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                if !deny_tiocsti() {
                    libc::_exit(3);
                }
                let c = 0u8;
                let r = libc::ioctl(0, libc::TIOCSTI, &c);
                let e = *libc::__errno_location();
                let mut ws: libc::winsize = std::mem::zeroed();
                libc::ioctl(0, libc::TIOCGWINSZ, &mut ws);
                let other = *libc::__errno_location();
                let args = [0u8; 4096];
                let subvol = libc::ioctl(0, 0x5000_940E as _, args.as_ptr());
                let subvol_e = *libc::__errno_location();
                // Refused with EPERM; TIOCGWINSZ not refused by the filter (ENOTTY without a tty).
                let ok = r == -1 && e == libc::EPERM && other != libc::EPERM;
                let ok = ok && subvol == -1 && subvol_e == libc::EPERM;
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
    }
}
