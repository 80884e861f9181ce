#!/usr/bin/env python3
"""The side-by-side benchmark's keystroke figures (echo, command line) in interleaved rounds, for
small differences that a run of `compare.py` cannot tell from noise: each round starts every
server afresh in turn, opens one warm-up session and two measured ones, and the medians of all
measured sessions' p50s are printed.

  python3 benches/compare_rounds.py --ttyd BIN --server 'target/release/termpool' \
      --server 'target/release/termpool --busy-poll-us=0' [--rounds 8] [--samples 400]

(needs the venv of scripts/bench-compare.sh, which has `websockets`).
"""

import argparse
import asyncio
import statistics

import compare as C


def make(spec, ttyd):
    if spec == "ttyd":
        return C.Ttyd(ttyd)
    binary, *args = spec.split()
    return C.Termpool(binary, args)


async def one_round(spec, ttyd, samples):
    server = make(spec, ttyd)
    try:
        await C.latencies(server, server.port, 100)  # warm-up
        measured = []
        for _ in range(2):
            echo, cmd = await C.latencies(server, server.port, samples)
            measured.append((statistics.median(echo), statistics.median(cmd)))
        return measured
    finally:
        server.proc.kill()
        server.proc.wait()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", action="append", required=True,
                    help="a termpool binary and its arguments, or 'ttyd' (repeatable)")
    ap.add_argument("--ttyd", help="ttyd binary, with --server ttyd")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--samples", type=int, default=400)
    a = ap.parse_args()
    if "ttyd" in a.server and not a.ttyd:
        ap.error("--server ttyd needs --ttyd BIN")
    results = {spec: [] for spec in a.server}
    for _ in range(a.rounds):
        for spec in a.server:
            results[spec] += await one_round(spec, a.ttyd, a.samples)
    for spec, rows in results.items():
        echo = statistics.median(r[0] for r in rows) * 1e6
        cmd = statistics.median(r[1] for r in rows) * 1e6
        print(f"{spec:50s} echo p50 {echo:6.1f} us  command line p50 {cmd:6.1f} us  "
              f"({len(rows)} sessions)")


if __name__ == "__main__":
    asyncio.run(main())
