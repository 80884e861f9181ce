"""The floors of benches/compare.py, measured by the same Python client: the same keystrokes,
command line and output through a bare PTY (no server), and a loopback TCP ping-pong and transfer.
A server's figure minus its floor is what the server adds."""

import asyncio
import fcntl
import os
import pty
import re
import socket
import struct
import termios
import time


class BarePty:
    """bash on a PTY of its own, read and written by this event loop."""

    def __init__(self, shell):
        pid, fd = pty.fork()
        if pid == 0:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
                   "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}
            argv = shell.split()
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.set_blocking(fd, False)
        self.pid, self.fd = pid, fd
        self.ready = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, self.ready.set)

    async def send(self, _ws, data):
        os.write(self.fd, data)

    async def recv(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
                if data:
                    return data
                raise EOFError
            except BlockingIOError:
                self.ready.clear()
                await self.ready.wait()
            except OSError as e:
                raise EOFError from e

    def close(self):
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


async def read_until(peer, pattern):
    seen = b""
    while not pattern.search(seen):
        seen = seen[-4096:] + await peer.recv()


async def settle(peer, ms=300):
    try:
        while True:
            await asyncio.wait_for(peer.recv(), ms / 1000)
    except asyncio.TimeoutError:
        pass


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def pty_floor(shell, samples, log, log_mib, sessions, setup, command, done):
    f = {}
    peer = BarePty(shell)
    await peer.send(None, setup)
    await settle(peer)
    echo, cmd = [], []
    for _ in range(samples):
        t = time.perf_counter()
        await peer.send(None, b"a")
        await read_until(peer, re.compile(b"a"))
        echo.append(time.perf_counter() - t)
        await peer.send(None, b"\x7f")
        await read_until(peer, re.compile(b"\x08"))
    for _ in range(samples // 4):
        t = time.perf_counter()
        await peer.send(None, command)
        await read_until(peer, done)
        cmd.append(time.perf_counter() - t)
    f["echo p50 (us)"], f["echo p90 (us)"] = pct(echo, .5) * 1e6, pct(echo, .9) * 1e6
    f["command line p50 (us)"], f["command line p90 (us)"] = pct(cmd, .5) * 1e6, pct(cmd, .9) * 1e6
    t = time.perf_counter()
    await peer.send(None, f"cat {log}; echo EN''D\r".encode())
    await read_until(peer, re.compile(rb"END\r\n"))
    f["plain: throughput (MiB/s)"] = log_mib / (time.perf_counter() - t)
    peer.close()

    async def first_output(start):
        one = BarePty(shell)
        await one.recv()
        return one, time.perf_counter() - start

    start = time.perf_counter()
    opened = await asyncio.gather(*(first_output(start) for _ in range(sessions)))
    for one, _ in opened:
        one.close()
    firsts = [took for _, took in opened]
    f[f"{sessions} sessions, first output p50 (ms)"] = pct(firsts, .5) * 1000
    f[f"{sessions} sessions, first output p99 (ms)"] = pct(firsts, .99) * 1000
    return f


async def tcp_floor(samples, log_mib):
    """A 1-byte ping-pong and a log-sized transfer over loopback TCP (TCP_NODELAY)."""
    async def serve(r, w):
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := await r.read(65536):
            if b"a" in data:  # a ping, or the end of the transfer
                w.write(b"a")
                await w.drain()
        w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    r, w = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtt = []
    for _ in range(samples):
        t = time.perf_counter()
        w.write(b"a")
        await r.readexactly(1)
        rtt.append(time.perf_counter() - t)
    block = b"x" * 65536
    t = time.perf_counter()
    for _ in range(log_mib * 16):
        w.write(block)
        await w.drain()
    w.write(b"a")
    await r.readexactly(1)
    elapsed = time.perf_counter() - t
    w.close()
    await w.wait_closed()
    server.close()
    await server.wait_closed()
    return {"echo p50 (us)": pct(rtt, .5) * 1e6, "echo p90 (us)": pct(rtt, .9) * 1e6,
            "plain: throughput (MiB/s)": log_mib / elapsed}


async def floors(shell, samples, log, log_mib, sessions, setup, command, done):
    """Floor figures keyed "pty: FIGURE" and "tcp: FIGURE", FIGURE as in compare.py's table."""
    f = {f"pty: {k}": v for k, v in
         (await pty_floor(shell, samples, log, log_mib, sessions, setup, command, done)).items()}
    f.update({f"tcp: {k}": v for k, v in (await tcp_floor(samples, log_mib)).items()})
    return f
