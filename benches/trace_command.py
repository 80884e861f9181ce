#!/usr/bin/env python3
"""Where a typed command line's round trip goes, termpool beside ttyd: one client types
`echo x$((1+1))` and Enter back to back (compare.py's command line figure), a kernel trace
(tracefs) records each server in turn, and every command line is cut into steps at the same
events (the client's send, the server's receive and PTY write, the shell's first read and last
write, the server's last send, the client's last receive); the medians of each step are printed
side by side, with the sends, the server wake-ups and the server CPU time each took.

  target/bench-venv/bin/python benches/trace_command.py --termpool target/release/termpool \
      --ttyd target/ttyd/ttyd [--keys command|echo] [--rounds 2] [--server-arg=--busy-poll-us=0]

(`--keys echo`: one keystroke and its erasure instead, cut at the same events.)

Needs root and tracefs (/sys/kernel/tracing), and what scripts/bench-compare.sh builds (the
release server, ttyd, the venv with `websockets`). Tracing adds about a microsecond per event.
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time

import compare as C

TRACEFS = "/sys/kernel/tracing"
CLIENT_COMM = "trace-client"
SYSCALLS = ("sendto", "recvfrom", "read", "write")
EVENTS = [f"syscalls:sys_{d}_{s}" for s in SYSCALLS for d in ("enter", "exit")] + ["sched:sched_wakeup"]
LINE = re.compile(r"\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): ([a-z_]+)[:(]?\s*(.*)")
STEPS = [
    "client sendto -> server recvfrom",
    "server: recvfrom -> PTY write",
    "PTY write -> shell's first read",
    "shell: first read -> last write",
    "shell's last write -> server's last sendto",
    "server's last sendto -> client has the output",
]


async def client(kind, port, cookie, keys, seconds):
    """Types the command line (or one key and its erasure) back to back for `seconds`, as
    compare.py's latencies do."""
    with open("/proc/self/comm", "w") as comm:
        comm.write(CLIENT_COMM)
    server = object.__new__(C.Termpool if kind == "termpool" else C.Ttyd)
    server.port, server.cookie = port, cookie
    ws = await server.open(port, False)
    await server.send(ws, C.PROMPT_SETUP)
    await C.quiet(server, ws)
    end, count = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        count += 1
        if keys == "echo":
            await server.send(ws, b"a")
            await C.read_until(server, ws, re.compile(b"a"))
            await server.send(ws, b"\x7f")
            await C.read_until(server, ws, re.compile(b"\x08"))
        else:
            await server.send(ws, C.COMMAND)
            await C.read_until(server, ws, C.COMMAND_DONE)
    await ws.close()
    print(count)


def tracefs(name, value):
    with open(os.path.join(TRACEFS, name), "w") as f:
        f.write(value)


def record(seconds):
    """The kernel's events of the next `seconds`, as text."""
    tracefs("tracing_on", "0")
    tracefs("trace", "")
    tracefs("buffer_size_kb", "16384")
    tracefs("set_event", "\n".join(EVENTS) + "\n")
    tracefs("tracing_on", "1")
    time.sleep(seconds)
    tracefs("tracing_on", "0")
    tracefs("set_event", "")
    with open(os.path.join(TRACEFS, "trace")) as f:
        return f.read()


def trace_server(server, args):
    """Starts the client against the running `server`, traces 0.1 s past its warm-up; the trace,
    the server's threads, and its CPU time per input over the client's whole run."""
    cookie = getattr(server, "cookie", "")
    cpu = C.cpu_seconds(server.proc.pid)
    proc = subprocess.Popen([sys.executable, __file__, "--client", server.name, str(server.port),
                             cookie, args.keys], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # connected, prompt set, past the first command lines
        text = record(args.trace_seconds)
        if args.keep:
            with open(os.path.join(args.keep, f"trace-command-{server.name}.txt"), "w") as f:
                f.write(text)
        tids = {int(t) for t in os.listdir(f"/proc/{server.proc.pid}/task")}
    finally:
        out, _ = proc.communicate(timeout=30)
    cpu = C.cpu_seconds(server.proc.pid) - cpu
    return text, tids, cpu / int(out)


def command_lines(text, server_tids):
    """Each command line's steps (µs) and counts, from one trace."""
    events = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            comm, tid, ts, name, rest = m.groups()
            events.append((float(ts) * 1e6, comm, int(tid), name, rest))
    sends = [i for i, e in enumerate(events)
             if e[1] == CLIENT_COMM and e[3] == "sys_sendto" and "len:" in e[4]]
    rows = []
    for a, b in zip(sends, sends[1:]):
        span = events[a:b]
        # A syscall's exit line carries its result ("-> 0x7"); every mark is a syscall's entry
        # but the last, the client's receive returning the output.
        enters = [e for e in span if not e[4].startswith("->")]
        server = [e for e in enters if e[2] in server_tids]
        shell = [e for e in enters if e[1] == "bash"]

        def first(evs, name, after):
            return next((e[0] for e in evs if e[3] == name and e[0] >= after), None)

        def last(evs, name):
            return max((e[0] for e in evs if e[3] == name), default=None)

        t0 = span[0][0]
        recv = first(server, "sys_recvfrom", t0)
        write = recv and first(server, "sys_write", recv)
        shell_read = write and first(shell, "sys_read", write)
        received = last([e for e in span if e[1] == CLIENT_COMM and e[4].startswith("->")],
                        "sys_recvfrom")
        marks = [t0, recv, write, shell_read, last(shell, "sys_write"), last(server, "sys_sendto"),
                 received]
        if None in marks or marks != sorted(marks):
            continue
        rows.append({
            "steps": [b - a for a, b in zip(marks, marks[1:])],
            "frames": sum(1 for e in server if e[3] == "sys_sendto"),
            "wakeups": sum(1 for e in span if e[3] == "sched_wakeup"
                           and int(re.search(r"pid=(\d+)", e[4]).group(1)) in server_tids),
        })
    return rows


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, port, cookie, keys = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        asyncio.run(client(kind, port, cookie, keys, 4))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--termpool", default="target/release/termpool")
    ap.add_argument("--ttyd", required=True)
    ap.add_argument("--keys", choices=("command", "echo"), default="command",
                    help="the command line, or a keystroke's echo (each key and each erasure)")
    ap.add_argument("--rounds", type=int, default=2, help="traces of each server, interleaved")
    ap.add_argument("--trace-seconds", type=float, default=0.1)
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("--keep", metavar="DIR", help="write each server's last trace there")
    args = ap.parse_args()
    if not os.access(os.path.join(TRACEFS, "trace"), os.W_OK):
        sys.exit(f"trace_command: needs root and tracefs at {TRACEFS}")
    rows = {"termpool": [], "ttyd": []}
    cpus = {"termpool": [], "ttyd": []}
    for _ in range(args.rounds):
        for name in rows:
            server = C.Termpool(args.termpool, args.server_arg) if name == "termpool" else C.Ttyd(args.ttyd)
            try:
                text, tids, cpu = trace_server(server, args)
                rows[name] += command_lines(text, tids)
                cpus[name].append(cpu)
            finally:
                server.proc.kill()
                server.proc.wait()
    for name, found in rows.items():
        if not found:
            sys.exit(f"trace_command: no whole command line of {name} in the traces")
    med = {n: [statistics.median(r["steps"][k] for r in found) for k in range(len(STEPS))]
           for n, found in rows.items()}
    print(f"{'median µs per ' + ('keystroke' if args.keys == 'echo' else 'command line'):48s}{'termpool':>10s}{'ttyd':>10s}")
    for k, step in enumerate(STEPS):
        print(f"  {step:46s}{med['termpool'][k]:10.1f}{med['ttyd'][k]:10.1f}")
    whole = {n: statistics.median(sum(r["steps"]) for r in found) for n, found in rows.items()}
    print(f"  {'whole: client sendto -> has the output':46s}{whole['termpool']:10.1f}{whole['ttyd']:10.1f}")
    for key, label in (("frames", "server sendto calls, mean"), ("wakeups", "server wake-ups, mean")):
        cells = "".join(f"{statistics.mean(r[key] for r in rows[n]):10.2f}" for n in rows)
        print(f"  {label:46s}{cells}")
    cells = "".join(f"{statistics.median(cpus[n]) * 1e6:10.1f}" for n in rows)
    print(f"  {'server CPU per input, µs (whole run, median)':46s}{cells}")
    print("inputs traced: " + ", ".join(f"{n} {len(found)}" for n, found in rows.items()))


if __name__ == "__main__":
    main()
