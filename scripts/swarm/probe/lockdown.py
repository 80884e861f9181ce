#!/usr/bin/env python3
"""Stand-in for the session agent's start on a Swarm node, to test the hidepid design there.

Run as root, as the container's main process, in a container given CAP_SYS_ADMIN besides the
five account capabilities and SETPCAP: it remounts /proc hidepid=invisible, sets no_new_privs,
drops SYS_ADMIN and SETPCAP from every capability set, installs a seccomp filter against namespaces and mounts,
then runs the isolation checks as two ordinary users and prints one line per check.
`lockdown.py test --no-filter` skips the seccomp filter, to show what it is there for.
"""
import ctypes
import os
import struct
import subprocess
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CAP_SYS_ADMIN = 21
CAP_SETPCAP = 8  # needed to shrink the bounding set; dropped last

AUDIT_ARCH_X86_64 = 0xC000003E
RET_ALLOW = 0x7FFF0000
RET_KILL = 0x80000000
EPERM, ENOSYS = 1, 38
# x86_64 numbers: unshare, setns, mount, umount2, pivot_root, open_tree, move_mount, fsopen,
# fsconfig, fsmount, fspick, mount_setattr, bpf, perf_event_open.
DENIED = [272, 308, 165, 166, 155, 428, 429, 430, 431, 432, 433, 442, 321, 298]
CLONE, CLONE3 = 56, 435
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80


def check(ok, what):
    if ok != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def bpf_program():
    """Classic BPF: wrong arch kills; denied calls get EPERM; clone3 ENOSYS (so libc falls back
    to clone, whose flags a filter can see); clone with a namespace flag EPERM."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [(ld, 0, 0, 4)]  # arch
    prog.append((jeq, 1, 0, AUDIT_ARCH_X86_64))
    prog.append((ret, 0, 0, RET_KILL))
    prog.append((ld, 0, 0, 0))  # syscall number
    # (op, k, target label) with targets resolved below.
    tests = [(jge, 0x40000000, "eperm")]  # the x32 ABI
    tests += [(jeq, nr, "eperm") for nr in DENIED]
    tests += [(jeq, CLONE3, "enosys"), (jeq, CLONE, "clone")]
    tail = ["allow", "clone_ld", "clone_jset", "allow2", "eperm", "enosys"]
    base = len(prog)
    pos = {name: base + len(tests) + i for i, name in enumerate(tail)}
    pos["clone"] = pos["clone_ld"]
    for i, (op, k, target) in enumerate(tests):
        prog.append((op, pos[target] - (base + i) - 1, 0, k))
    prog.append((ret, 0, 0, RET_ALLOW))
    prog.append((ld, 0, 0, 16))  # args[0], low 32 bits: the flags
    prog.append((jset, pos["eperm"] - pos["clone_jset"] - 1, 0, CLONE_NS_FLAGS))
    prog.append((ret, 0, 0, RET_ALLOW))
    prog.append((ret, 0, 0, 0x00050000 | EPERM))
    prog.append((ret, 0, 0, 0x00050000 | ENOSYS))
    return prog


def install_filter():
    prog = bpf_program()
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fbuf, 0, 0), "seccomp")


def drop_start_caps():
    for cap in (CAP_SYS_ADMIN, CAP_SETPCAP):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "capbset drop")
    header = struct.pack("Ii", 0x20080522, 0)
    data = ctypes.create_string_buffer(24)
    check(libc.capget(header, data), "capget")
    words = list(struct.unpack("6I", data.raw))  # (eff, perm, inh) x 2
    for i in (0, 1, 2):
        words[i] &= ~((1 << CAP_SYS_ADMIN) | (1 << CAP_SETPCAP))
    check(libc.capset(header, struct.pack("6I", *words)), "capset")


def lock_down(with_filter):
    subprocess.run(["mount", "-o", "remount,hidepid=invisible", "/proc"], check=True)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    drop_start_caps()
    if with_filter:
        install_filter()


def as_user(user, cmd):
    """Runs a shell command as `user` (a child of this process, so it inherits the lockdown)."""
    out = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                          "bash", "-c", cmd], capture_output=True, text=True)
    return out.returncode, (out.stdout + out.stderr).strip().replace("\n", " | ")[:200]


def report(name, ok, detail):
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def run_checks():
    for u, uid in (("alice", 200001), ("bob", 200002)):
        subprocess.run(["useradd", "-M", "-u", str(uid), "-d", "/tmp", "-s", "/bin/bash", u], check=True)
    alice = subprocess.Popen(["setpriv", "--reuid=alice", "--regid=alice", "--init-groups",
                              "sleep", "300"])
    time.sleep(0.5)
    rc, out = as_user("bob", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp_filters)' /proc/self/status")
    print(f"INFO bob's status: {out}")
    rc, out = as_user("bob", "ulimit -u")
    report("nproc limit 256", out == "256", out)
    rc, out = as_user("bob", "ls -l /var/run/docker.sock /run/docker.sock 2>&1; true")
    report("no Docker socket", "No such file" in out, out)
    rc, out = as_user("bob", "unshare -Ur id")
    report("unshare -Ur denied", rc != 0, out)
    rc, out = as_user("bob", "unshare -m true")
    report("unshare -m denied", rc != 0, out)
    rc, out = as_user("bob", "python3 -c 'import ctypes, os; l = ctypes.CDLL(None, use_errno=True); "
                             "r = l.unshare(0x10000000); print(r, os.strerror(ctypes.get_errno())); "
                             "raise SystemExit(r != 0)'")
    report("unshare(CLONE_NEWUSER) syscall denied", rc != 0, out)
    rc, out = as_user("bob", "python3 -c 'import ctypes, os; l = ctypes.CDLL(None, use_errno=True); "
                             "r = l.syscall(435, 0, 0); print(r, os.strerror(ctypes.get_errno()))'")
    report("clone3 refused (ENOSYS)", "Function not implemented" in out, out)
    rc, out = as_user("bob", "unshare -Urpf --mount-proc id")
    report("unshare -Urpf --mount-proc denied", rc != 0, out)
    rc, out = as_user("bob", "ps -eo user,pid,comm --no-headers")
    report("hidepid: bob sees only his own processes", "alice" not in out and "root" not in out, out)
    rc, out = as_user("bob", f"cat /proc/{alice.pid}/cmdline")
    report("hidepid: alice's /proc entry invisible", rc != 0, out)
    rc, out = as_user("bob", "cat /proc/1/environ")
    report("hidepid: pid 1 invisible", rc != 0, out)
    rc, out = as_user("bob", "mount -o remount,hidepid=0 /proc")
    report("remount of /proc denied", rc != 0, out)
    rc, out = as_user("bob", "grep ' /proc proc' /proc/mounts")
    report("/proc mounted hidepid", "hidepid=invisible" in out or "hidepid=2" in out, out)
    # Root of the container after the lockdown: the agent itself.
    print("INFO root's status: " + subprocess.run(
        ["grep", "-E", "^(CapEff|CapBnd|NoNewPrivs|Seccomp_filters)", "/proc/self/status"],
        capture_output=True, text=True).stdout.replace("\n", " | "))
    out = subprocess.run(["mount", "-o", "remount,hidepid=0", "/proc"], capture_output=True, text=True)
    report("root (the agent) cannot undo hidepid", out.returncode != 0, out.stderr.strip())
    as_user("alice", f"kill {alice.pid}")  # the agent has no CAP_KILL: ends processes as the user


def main():
    args = sys.argv[1:]
    with_filter = "--no-filter" not in args
    lock_down(with_filter)
    print(f"INFO locked down, seccomp filter: {with_filter}", flush=True)
    run_checks()


if __name__ == "__main__":
    main()
