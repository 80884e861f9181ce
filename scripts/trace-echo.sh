#!/bin/bash
# Where a keystroke echo's time goes, across every thread and core: runs the release server and the
# relay benchmark's echo figure against it, records 50 ms of kernel trace events (the syscalls
# of the data path, scheduler wake-ups and switches, the PTY's work queue) and prints one echo's
# timeline, from the client's sendto to its next one.
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
start=$(grep -n "$client_comm.*sys_sendto(" "$out" | awk -F: 'NR==20 {print $1}')
end=$(grep -n "$client_comm.*sys_sendto(" "$out" | awk -F: 'NR==21 {print $1}')
[ -n "$start" ] && [ -n "$end" ] || { echo "trace-echo: no echo found in $out" >&2; exit 1; }
sed -n "${start},${end}p" "$out" |
    grep -v 'sys_epoll_wait\|sys_sched_yield' |
    grep -E "sys_(recvfrom|sendto|write|read)|sched_wakeup|workqueue|sched_switch" |
    sed -E 's/^ +//; s/ \[0*([0-9]+)\] [^ ]+ +/ cpu\1 /' | cut -c1-150
