#!/bin/bash
# Where a keystroke echo's time goes, across every thread and core: runs the release server and the
# relay benchmark's echo figure against it, records 50 ms of kernel trace events (the syscalls
# of the data path, scheduler wake-ups and switches, the PTY's work queue), prints one echo's
# timeline, from the client's sendto to its next one, and the median of each step over every echo
# recorded.
#
#   scripts/trace-echo.sh [extra server arguments, e.g. --busy-poll-us 0]
#
# Needs root and tracefs (/sys/kernel/tracing), and `cargo build --release --benches` first.
# The whole trace is left in target/trace-echo.txt. Tracing adds about a microsecond per event.
set -euo pipefail
cd "$(dirname "$0")/.."
T=/sys/kernel/tracing
[ -w "$T/trace" ] || { echo "trace-echo: needs root and tracefs at $T" >&2; exit 2; }
bench=$(ls target/release/deps/relay-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[ -x target/release/termpool ] && [ -n "$bench" ] || {
    echo "trace-echo: build first: cargo build --release --benches" >&2
    exit 2
}
port=3987
target/release/termpool --port "$port" --bind 127.0.0.1 --shell '/bin/bash --noprofile --norc' \
    --max-new-sessions-per-minute 0 "$@" >/dev/null 2>&1 &
server=$!
cleanup() {
    echo 0 >"$T/tracing_on"
    echo >"$T/set_event"
    kill "$server" "${client:-}" 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
"$bench" --bench --url "ws://127.0.0.1:$port/ws" --pid "$server" --only echo --runs 1 \
    --samples 200000 >target/trace-echo-bench.txt 2>&1 &
client=$!
sleep 3 # past the benchmark's warm-up; its 200000 samples last far longer than the trace

echo 0 >"$T/tracing_on"
echo >"$T/trace"
echo 16384 >"$T/buffer_size_kb"
echo >"$T/set_event"
for e in recvfrom sendto write read; do
    echo "syscalls:sys_enter_$e" >>"$T/set_event"
    echo "syscalls:sys_exit_$e" >>"$T/set_event"
done
for e in sched:sched_switch sched:sched_wakeup workqueue:workqueue_execute_start; do
    echo "$e" >>"$T/set_event"
done
echo 1 >"$T/tracing_on"
sleep 0.05
echo 0 >"$T/tracing_on"
out=target/trace-echo.txt
cat "$T/trace" >"$out"

# One echo from the middle of the trace: the client's sendto, then everything up to its next one.
client_comm=$(basename "$bench" | cut -c1-15)
sends=$(grep -n "$client_comm.*sys_sendto(" "$out" | cut -d: -f1)
start=$(sed -n 20p <<<"$sends")
end=$(sed -n 21p <<<"$sends")
[ -n "$start" ] && [ -n "$end" ] || { echo "trace-echo: no echo found in $out" >&2; exit 1; }
sed -n "${start},${end}p" "$out" |
    sed -E 's/^ +//; s/ \[0*([0-9]+)\] [^ ]+ +/ cpu\1 /' | cut -c1-150

# Every echo recorded, cut into steps at the same events; medians over all, and over the faster
# and the slower half.
python3 - "$out" "$client_comm" <<'PY'
import re, statistics, sys

path, client = sys.argv[1], sys.argv[2]
line_re = re.compile(r"\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): ([a-z_]+)[:(]?\s*(.*)")
events = []
for line in open(path):
    m = line_re.match(line)
    if m:
        comm, _pid, _cpu, ts, name, rest = m.groups()
        events.append((float(ts) * 1e6, comm, name, rest))

def is_client(e): return e[1].startswith(client)
def is_server(e): return e[1].startswith("actix-rt")

steps = [
    ("client sendto -> server recvfrom", lambda e: is_server(e) and e[2] == "sys_recvfrom"),
    ("server: decode, PTY write", lambda e: is_server(e) and e[2] == "sys_write"),
    ("PTY write -> kworker runs", lambda e: e[2] == "workqueue_execute_start"),
    ("kworker, shell, kworker -> server read", lambda e: is_server(e) and e[2] == "sys_read" and e[3].startswith("-> 0x") and not e[3].startswith("-> 0xf")),
    ("server: encode -> sendto", lambda e: is_server(e) and e[2] == "sys_sendto"),
    ("server sendto -> client recvfrom", lambda e: is_client(e) and e[2] == "sys_recvfrom"),
    ("client -> its next sendto", None),
]
starts = [i for i, e in enumerate(events) if is_client(e) and e[2] == "sys_sendto" and "len:" in e[3]]
echoes = []
for a, b in zip(starts, starts[1:]):
    t, i, marks = events[a][0], a, []
    for _, found in steps[:-1]:
        while i <= b and not found(events[i]):
            i += 1
        if i > b:
            break
        marks.append(events[i][0] - t)
        t = events[i][0]
    if len(marks) == len(steps) - 1:
        marks.append(events[b][0] - t)
        echoes.append(marks)
if not echoes:
    sys.exit("trace-echo: no complete echo in the trace")
echoes.sort(key=sum)
half = len(echoes) // 2
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"\n{len(echoes)} echoes; median µs (all / faster half / slower half):")
print(f"  {'whole echo':40s} {statistics.median(map(sum, echoes)):5.0f} {statistics.median(map(sum, echoes[:half])):5.0f} {statistics.median(map(sum, echoes[half:])):5.0f}")
for k, (name, _) in enumerate(steps):
    print(f"  {name:40s} {med(echoes, k):5.0f} {med(echoes[:half], k):5.0f} {med(echoes[half:], k):5.0f}")
PY
