#!/bin/bash
# The side-by-side benchmark in one command: termpool (release build) and ttyd 1.7.7, every figure
# beside its floors (bare PTY, loopback TCP), medians of --runs runs (default 3). Builds what it
# needs: the release server, ttyd (scripts/build-ttyd.sh, needs root for apt), and a venv with
# Python `websockets` from PyPI. Arguments go to benches/compare.py, e.g.
#
#   scripts/bench-compare.sh --runs 3 --samples 400 [--server-arg=--busy-poll-us=0] [--no-ttyd]
#
# CARGO_TARGET_DIR is honoured (default target/); ttyd and the venv are kept in it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
fail() { echo "bench-compare: $*" >&2; exit 1; }

command -v python3 >/dev/null || fail "python3 is missing (apt-get install python3 python3-venv)"
venv="$target/bench-venv"
if ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
    python3 -m venv "$venv" || fail "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/pip" install -q 'websockets==17.4' || fail "could not install websockets from PyPI"
fi
cargo build --release --bin termpool >&2 || fail "cargo build --release failed"
ttyd=()
if [[ " $* " != *" --no-ttyd "* ]]; then
    path=$(scripts/build-ttyd.sh "$target/ttyd") || fail "scripts/build-ttyd.sh could not build ttyd (--no-ttyd to leave it out)"
    ttyd=(--ttyd "$path")
fi
exec "$venv/bin/python" benches/compare.py --termpool "$target/release/termpool" "${ttyd[@]}" "$@"
