# Small probes for tests/isolation.rs, typed into a user's home by the test (as that user).
# Every probe prints one line `NAME:result`; results are errno names where a call can fail.
import ctypes
import errno
import os
import signal
import socket
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)


def err(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    return errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__


def last_errno():
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def sock(kind):
    return socket.socket(socket.AF_UNIX if kind == "abstract" else socket.AF_INET)


def address(kind, addr):
    if kind == "abstract":
        return "\0" + addr
    host, port = addr.rsplit(":", 1)
    return (host, int(port))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "listen":  # listen KIND ADDR REPLY: serve REPLY to every client for 120 s
        kind, addr, reply = args
        s = sock(kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address(kind, addr))
            s.listen(16)
        except OSError as e:
            print("LISTEN:" + err(e), flush=True)
            return
        print("LISTENING", flush=True)
        signal.alarm(120)
        while True:
            c, _ = s.accept()
            c.sendall(reply.encode())
            c.close()
    elif cmd == "connect":  # connect KIND ADDR
        kind, addr = args
        try:
            s = sock(kind)
            s.settimeout(4)
            s.connect(address(kind, addr))
            print("CONNECT:GOT:" + s.recv(200).decode())
        except OSError as e:
            print("CONNECT:ERR:" + err(e))
    elif cmd == "agent":  # agent PATH USER HOME: ask the session agent for USER's shell
        path, user, home = args
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(4)
            s.connect(path)
            s.send(('{"user":"%s","home":"%s","cols":80,"rows":24,"env":[]}' % (user, home)).encode())
            msg, fds, _, _ = socket.recv_fds(s, 4096, 4)
            print("AGENT:GOT:%d:%s" % (len(fds), msg.decode()) if msg else "AGENT:CLOSED")
        except OSError as e:
            print("AGENT:ERR:" + err(e))
    elif cmd == "ptrace":  # ptrace PID: PTRACE_ATTACH
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        r = libc.ptrace(16, int(args[0]), None, None)
        if r == 0:
            libc.ptrace(17, int(args[0]), None, None)
            print("PTRACE:ATTACHED")
        else:
            print("PTRACE:" + last_errno())
    elif cmd == "setuid0":
        try:
            os.setuid(0)
            print("SETUID:ROOT")
        except OSError as e:
            print("SETUID:" + err(e))
    elif cmd == "unshare":  # unshare(CLONE_NEWUSER), then CLONE_NEWNS
        for name, flag in (("user", 0x10000000), ("mount", 0x00020000)):
            r = libc.unshare(flag)
            print("UNSHARE-%s:%s" % (name, "OK" if r == 0 else last_errno()))
    elif cmd == "syscalls":  # kernel interfaces outside the usual: io_uring, userfaultfd, perf, bpf
        libc.syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(120)
        for name, nr, args in (
            ("io_uring_setup", 425, (4, params)),
            ("userfaultfd", 323, (0,)),
            ("perf_event_open", 298, (params, 0, -1, -1, 0)),
            ("bpf", 321, (0, params, 0)),
        ):
            r = libc.syscall(nr, *args)
            print("SYSCALL-%s:%s" % (name, "OK" if r >= 0 else last_errno()))
            if r >= 0:
                os.close(r)
    elif cmd == "mount":  # mount(2) a tmpfs on DIR
        r = libc.mount(b"none", args[0].encode(), b"tmpfs", 0, None)
        print("MOUNT:" + ("OK" if r == 0 else last_errno()))
    elif cmd == "filecaps":  # files under DIR carrying file capabilities
        n = 0
        for root, _, files in os.walk(args[0]):
            for f in files:
                try:
                    os.getxattr(os.path.join(root, f), "security.capability", follow_symlinks=False)
                    n += 1
                    print("CAP " + os.path.join(root, f))
                except OSError:
                    pass
        print("FILECAPS:%d" % n)
    elif cmd == "hold":  # hold MB SECONDS: keep MB MiB resident
        keep = b"x" * (int(args[0]) << 20)
        print("HELD", flush=True)
        time.sleep(int(args[1]))
        del keep
    elif cmd == "grow":  # grow STEP_MB MAX_MB: allocate step by step (killed by the OOM killer)
        keep = []
        step, top = int(args[0]), int(args[1])
        for i in range(top // step):
            keep.append(b"x" * (step << 20))
            print("GREW:%d" % ((i + 1) * step), flush=True)
        print("GROWN-ALL")
    else:
        sys.exit("unknown probe " + cmd)


main()
