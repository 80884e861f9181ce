#!/usr/bin/env python3
"""The side-by-side benchmark: termpool and ttyd in one run, each spoken to in its own protocol by
one Python client (websockets, which speaks permessage-deflate), every figure beside its floors
(a bare PTY, a loopback TCP ping-pong) measured by the same client in the same run.

  scripts/bench-compare.sh [--runs 3] [--samples 400] [--server-arg=--busy-poll-us=0 ...]

(the script builds what this needs; this file alone: python3 benches/compare.py --termpool BIN
[--ttyd BIN] ...). The method and the reasons are in docs/design.md ("The side-by-side benchmark").
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

from compare_floors import floors

SHELL = "/bin/bash --noprofile --norc"
LOG_MIB = 10
SESSIONS = 100
PROMPT_SETUP = b"bind 'set enable-bracketed-paste off'; PS1='$ '\r"
COMMAND = b"echo x$((1+1))\r"
COMMAND_DONE = re.compile(rb"x2\r\n\$ ")


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


def wait_listening(port, proc, name):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"compare: {name} exited at start (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"compare: {name} did not listen on port {port} within 10 s")


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
             "--max-sessions-per-user", "1000", "--max-new-sessions-per-minute", "0",
             "--max-sessions-per-address", "0"] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, self.name)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/") as r:
            self.cookie = r.headers["Set-Cookie"].split(";")[0]

    async def open(self, port, deflate):
        ws = await connect(f"ws://127.0.0.1:{port}/ws?cols=120&rows=40",
                           additional_headers={"Cookie": self.cookie},
                           extensions=[ClientPerMessageDeflateFactory()] if deflate else [],
                           compression=None, max_size=None, ping_interval=None, open_timeout=60)
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
        wait_listening(self.port, self.proc, self.name)

    async def open(self, port, deflate):
        ws = await connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["tty"],
                           extensions=[ClientPerMessageDeflateFactory()] if deflate else [],
                           compression=None, max_size=None, ping_interval=None, open_timeout=60)
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
    await server.send(ws, PROMPT_SETUP)
    await quiet(server, ws)
    echo, cmd = [], []
    for _ in range(samples):
        t = time.perf_counter()
        await server.send(ws, b"a")
        await read_until(server, ws, re.compile(b"a"))
        echo.append(time.perf_counter() - t)
        await server.send(ws, b"\x7f")
        await read_until(server, ws, re.compile(b"\x08"))
    for _ in range(samples // 4):
        t = time.perf_counter()
        await server.send(ws, COMMAND)
        await read_until(server, ws, COMMAND_DONE)
        cmd.append(time.perf_counter() - t)
    await ws.close()
    return echo, cmd


async def output_cost(server, port, counter, log, deflate):
    """Bytes on the wire, server CPU and wall time for `cat` of the log."""
    ws = await server.open(port, deflate)
    await quiet(server, ws)
    before_bytes, before_cpu = counter.down, cpu_seconds(server.proc.pid)
    t = time.perf_counter()
    await server.send(ws, f"cat {log}; echo EN''D\r".encode())
    await read_until(server, ws, re.compile(rb"END\r\n"))
    elapsed = time.perf_counter() - t
    wire, cpu = counter.down - before_bytes, cpu_seconds(server.proc.pid) - before_cpu
    extensions = [type(e).__name__ for e in ws.protocol.extensions]
    await ws.close()
    if deflate != bool(extensions):
        sys.exit(f"compare: {server.name} negotiated {extensions or 'no extension'} (deflate={deflate})")
    return wire, cpu, elapsed


async def close_time(server, port):
    """From the client's close frame to the server's end of the TCP connection."""
    ws = await server.open(port, False)
    await quiet(server, ws, 200)
    t = time.perf_counter()
    await ws.close()  # waits for the server to close the TCP connection, as RFC 6455 says
    return time.perf_counter() - t


async def many_sessions(server, port):
    """SESSIONS sockets opened at once: the time from the start to each one's first output."""
    async def one(start):
        ws = await server.open(port, False)
        while not server.output(await ws.recv()):
            pass
        took = time.perf_counter() - start
        return ws, took

    start = time.perf_counter()
    done = await asyncio.gather(*(one(start) for _ in range(SESSIONS)))
    await asyncio.gather(*(ws.close() for ws, _ in done))
    return [took for _, took in done]


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(server, samples, log):
    """One run's figures of one server, as numbers keyed by figure name."""
    counter = Counter(server.port)
    port = await counter.start()
    f = {}
    log_progress(f"{server.name}: latencies")
    echo, cmd = await latencies(server, server.port, samples)
    f["echo p50 (us)"], f["echo p90 (us)"] = p(echo, .5) * 1e6, p(echo, .9) * 1e6
    f["command line p50 (us)"], f["command line p90 (us)"] = p(cmd, .5) * 1e6, p(cmd, .9) * 1e6
    for deflate in (False, True):
        log_progress(f"{server.name}: output, deflate={deflate}")
        wire, cpu, elapsed = await output_cost(server, port, counter, log, deflate)
        tag = "deflate" if deflate else "plain"
        f[f"{tag}: throughput (MiB/s)"] = LOG_MIB / elapsed
        f[f"{tag}: server CPU per MiB (ms)"] = cpu * 1000 / LOG_MIB
        f[f"{tag}: MiB on the wire for {LOG_MIB} MiB"] = wire / 2**20
    log_progress(f"{server.name}: closes")
    closes = [await close_time(server, server.port) for _ in range(5)]
    f["close to TCP end, median (ms)"] = statistics.median(closes) * 1000
    log_progress(f"{server.name}: {SESSIONS} sessions")
    firsts = await many_sessions(server, server.port)
    f[f"{SESSIONS} sessions, first output p50 (ms)"] = p(firsts, .5) * 1000
    f[f"{SESSIONS} sessions, first output p99 (ms)"] = p(firsts, .99) * 1000
    counter.server.close()
    return f


def log_progress(text):
    print(text, file=sys.stderr, flush=True)


def print_table(runs, floor_runs, names):
    """Medians over the runs; the ratio column is termpool's figure over ttyd's."""
    med = {n: {k: statistics.median(r[n][k] for r in runs) for k in runs[0][n]} for n in names}
    fl = {k: statistics.median(r[k] for r in floor_runs) for k in floor_runs[0]}
    cols = names + (["termpool/ttyd"] if "ttyd" in names else []) + ["floor: bare PTY", "floor: TCP"]
    print(f"{'figure (median of ' + str(len(runs)) + ' runs)':<40}" + "".join(f"{c:>16}" for c in cols))
    for key in med[names[0]]:
        cells = [f"{med[n][key]:.1f}" for n in names]
        if "ttyd" in names:
            cells.append(f"{med['termpool'][key] / med['ttyd'][key]:.2f}x" if med["ttyd"][key] else "-")
        for kind in ("pty", "tcp"):
            v = fl.get(f"{kind}: {key}")
            cells.append("-" if v is None else f"{v:.1f}")
        print(f"{key:<40}" + "".join(f"{c:>16}" for c in cells))
    if len(runs) > 1:
        print("\nper run (termpool / ttyd): " + "; ".join(
            f"{k}: " + ", ".join(f"{r['termpool'][k]:.0f}" + (f"/{r['ttyd'][k]:.0f}" if "ttyd" in r else "")
                                 for r in runs)
            for k in ("echo p50 (us)", "command line p50 (us)", "plain: server CPU per MiB (ms)")))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--termpool", default="target/release/termpool")
    ap.add_argument("--ttyd", default=os.environ.get("TERMPOOL_TTYD") or shutil.which("ttyd"))
    ap.add_argument("--no-ttyd", action="store_true", help="termpool and the floors only")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra termpool argument (repeatable), e.g. --server-arg=--busy-poll-us=500")
    a = ap.parse_args()
    if not os.access(a.termpool, os.X_OK):
        sys.exit(f"compare: no termpool binary at {a.termpool} (cargo build --release)")
    if not a.no_ttyd and not (a.ttyd and os.access(a.ttyd, os.X_OK)):
        sys.exit("compare: no ttyd (scripts/build-ttyd.sh builds one; --ttyd PATH or TERMPOOL_TTYD; "
                 "--no-ttyd to leave it out)")
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; "
          f"termpool {a.termpool} {' '.join(a.server_arg)}; ttyd {None if a.no_ttyd else a.ttyd}")
    tmp = tempfile.mkdtemp()
    log = os.path.join(tmp, "build.log")
    build_log(log)
    runs, floor_runs = [], []
    try:
        for run in range(a.runs):
            log_progress(f"run {run + 1} of {a.runs}")
            servers = [Termpool(a.termpool, a.server_arg)] + ([] if a.no_ttyd else [Ttyd(a.ttyd)])
            try:
                runs.append({s.name: await measure(s, a.samples, log) for s in servers})
            finally:
                for s in servers:
                    s.proc.terminate()
                    s.proc.wait()
            log_progress("floors")
            floor_runs.append(await floors(SHELL, a.samples, log, LOG_MIB, SESSIONS, PROMPT_SETUP,
                                           COMMAND, COMMAND_DONE))
    finally:
        shutil.rmtree(tmp)
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}\n")
    print_table(runs, floor_runs, list(runs[0]))


if __name__ == "__main__":
    asyncio.run(main())
