#!/usr/bin/env python3
"""Side by side in one run: termpool and ttyd (scripts/build-ttyd.sh), each spoken to in its own
protocol by one Python client (websockets, which speaks permessage-deflate), through a counting
TCP relay of its own for the bytes on the wire.

  python3 benches/compare.py --termpool target/release/termpool [--ttyd PATH] [--samples N]
      [--server-arg=--busy-poll-us=500 ...]

Figures, per server: keystroke echo and command-line round trip (p50/p90), bytes on the wire and
server CPU per MiB for a 10 MiB build-log-like output with and without deflate, and the time from
the client's close frame to the server closing the TCP connection. The floors (a bare PTY, a TCP
loopback ping-pong) are the Rust relay benchmark's (`cargo bench --bench relay -- --only floor`).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

SHELL = "/bin/bash --noprofile --norc"
LOG_MIB = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def build_log(path):
    """A 10 MiB text like a compiler's log: repeated shapes, varying names and numbers."""
    with open(path, "w") as f:
        size, i = 0, 0
        while size < LOG_MIB << 20:
            line = (
                f"   Compiling crate-{i % 211} v0.{i % 17}.{i % 29} "
                f"(/build/src/crate-{i % 211})\n"
                if i % 3
                else f"warning: unused variable `x{i % 97}` at src/module_{i % 53}.rs:{i % 400}:{i % 80}\n"
            )
            f.write(line)
            size += len(line)
            i += 1


class Counter:
    """A TCP relay on 127.0.0.1 that counts the bytes the server sends."""

    def __init__(self, port):
        self.port, self.down = port, 0

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, cr, cw):
        sr, sw = await asyncio.open_connection("127.0.0.1", self.port)
        for s in (cw, sw):
            s.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def pipe(r, w, count):
            while data := await r.read(65536):
                if count:
                    self.down += len(data)
                w.write(data)
                await w.drain()
            w.close()

        await asyncio.gather(pipe(cr, sw, False), pipe(sr, cw, True), return_exceptions=True)


class Termpool:
    name = "termpool"

    def __init__(self, binary, extra):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--shell", SHELL,
             "--max-new-sessions-per-minute", "0"] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/") as r:
            self.cookie = r.headers["Set-Cookie"].split(";")[0]

    async def open(self, port, deflate):
        ws = await connect(f"ws://127.0.0.1:{port}/ws?cols=120&rows=40",
                           additional_headers={"Cookie": self.cookie},
                           extensions=[ClientPerMessageDeflateFactory()] if deflate else [],
                           compression=None, max_size=None, ping_interval=None)
        json.loads(await ws.recv())  # ready
        return ws

    async def send(self, ws, data):
        await ws.send(data)

    @staticmethod
    def output(msg):
        return msg if isinstance(msg, bytes) else b""


class Ttyd:
    name = "ttyd"

    def __init__(self, binary):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.port), "-i", "127.0.0.1", "-W"] + SHELL.split(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    async def open(self, port, deflate):
        ws = await connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["tty"],
                           extensions=[ClientPerMessageDeflateFactory()] if deflate else [],
                           compression=None, max_size=None, ping_interval=None)
        await ws.send(json.dumps({"AuthToken": "", "columns": 120, "rows": 40}).encode())
        return ws

    async def send(self, ws, data):
        await ws.send(b"0" + data)

    @staticmethod
    def output(msg):
        return msg[1:] if isinstance(msg, bytes) and msg[:1] == b"0" else b""


async def read_until(server, ws, pattern):
    seen = b""
    while not pattern.search(seen):
        seen = seen[-4096:] + server.output(await ws.recv())
    return seen


async def quiet(server, ws, ms=300):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), ms / 1000)
    except asyncio.TimeoutError:
        pass


async def latencies(server, port, samples):
    ws = await server.open(port, False)
    await server.send(ws, b"bind 'set enable-bracketed-paste off'; PS1='$ '\r")
    await quiet(server, ws)
    echo, cmd = [], []
    for i in range(samples):
        t = time.perf_counter()
        await server.send(ws, b"a")
        await read_until(server, ws, re.compile(b"a"))
        echo.append(time.perf_counter() - t)
        await server.send(ws, b"\x7f")
        await read_until(server, ws, re.compile(b"\x08"))
    for i in range(samples // 4):
        t = time.perf_counter()
        await server.send(ws, b"echo x$((1+1))\r")
        await read_until(server, ws, re.compile(rb"x2\r\n\$ "))
        cmd.append(time.perf_counter() - t)
    await ws.close()
    return echo, cmd


async def output_cost(server, port, counter, log, deflate):
    ws = await server.open(port, deflate)
    await quiet(server, ws)
    before_bytes, before_cpu = counter.down, cpu_seconds(server.proc.pid)
    await server.send(ws, f"cat {log}; echo EN''D\r".encode())
    await read_until(server, ws, re.compile(rb"END\r\n"))
    wire, cpu = counter.down - before_bytes, cpu_seconds(server.proc.pid) - before_cpu
    extensions = [type(e).__name__ for e in ws.protocol.extensions]
    await ws.close()
    return wire, cpu, extensions


async def close_time(server, port, deflate):
    """From the client's close frame to the server's end of the TCP connection."""
    ws = await server.open(port, deflate)
    await quiet(server, ws, 200)
    t = time.perf_counter()
    await ws.close()  # waits for the server to close the TCP connection, as RFC 6455 says
    return time.perf_counter() - t


def log_progress(text):
    print(text, file=sys.stderr, flush=True)


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(server, samples, log):
    counter = Counter(server.port)
    port = await counter.start()
    rows = {}
    log_progress(f"{server.name}: latencies")
    echo, cmd = await latencies(server, server.port, samples)
    rows["echo p50/p90 (us)"] = f"{p(echo, .5) * 1e6:.0f} / {p(echo, .9) * 1e6:.0f}"
    rows["command line p50/p90 (us)"] = f"{p(cmd, .5) * 1e6:.0f} / {p(cmd, .9) * 1e6:.0f}"
    raw = LOG_MIB * 1.0
    for deflate in (False, True):
        log_progress(f"{server.name}: output, deflate={deflate}")
        wire, cpu, ext = await output_cost(server, port, counter, log, deflate)
        tag = "deflate" if deflate else "plain"
        rows[f"{tag}: MiB on the wire for {LOG_MIB} MiB"] = f"{wire / 2**20:.2f} ({','.join(ext) or 'none'})"
        rows[f"{tag}: server CPU ms per MiB"] = f"{cpu * 1000 / raw:.1f}"
    log_progress(f"{server.name}: closes")
    closes = [await close_time(server, server.port, False) for _ in range(5)]
    rows["close to TCP end, median (ms)"] = f"{statistics.median(closes) * 1000:.2f}"
    counter.server.close()
    return rows


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--termpool", default="target/release/termpool")
    ap.add_argument("--ttyd", default=os.environ.get("TERMPOOL_TTYD") or shutil.which("ttyd"))
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra termpool argument (repeatable), e.g. --server-arg=--busy-poll-us=500")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    log = os.path.join(tmp, "build.log")
    build_log(log)
    servers = [Termpool(a.termpool, a.server_arg)] + ([Ttyd(a.ttyd)] if a.ttyd else [])
    results = {}
    try:
        for s in servers:
            results[s.name] = await measure(s, a.samples, log)
    finally:
        for s in servers:
            s.proc.terminate()
        shutil.rmtree(tmp)
    names = list(results)
    print(f"{'figure':<44}" + "".join(f"{n:>24}" for n in names))
    for figure in results[names[0]]:
        print(f"{figure:<44}" + "".join(f"{results[n].get(figure, '-'):>24}" for n in names))


asyncio.run(main())
