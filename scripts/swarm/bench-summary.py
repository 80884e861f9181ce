#!/usr/bin/env python3
"""The summary of a scripts/swarm/bench.sh run, read from its output on stdin (which it copies
through): each figure's median over the rounds for the single-host and the cross-node session,
their ratio and each round's; the same for the PTY rows (the output without termpool), the
network's own cost; and the throughput kept beyond it (termpool's ratio over the floor's).
"""
import re
import statistics
import sys

ROW = re.compile(r"^(single|cross)  (\S.*?)\s*\| [^|]*\| ([0-9.]+) ")
PTY = re.compile(r"^PTY read on node (1|2)\b.* PTY output\s+([0-9.]+) MiB/s")
FLOOR = "floor: PTY output without termpool (MiB/s)"


def main():
    rounds = {}  # figure -> {"single": [...], "cross": [...]}
    in_rounds = True
    for line in sys.stdin:
        sys.stdout.write(line)
        if line.startswith("## the network's own cost"):
            in_rounds = False  # netbench.sh's closing round: not one of the interleaved rounds
        m = ROW.match(line)
        if m and m.group(2) != "figure":
            rounds.setdefault(m.group(2), {}).setdefault(m.group(1), []).append(float(m.group(3)))
        m = PTY.match(line)
        if m and in_rounds:
            path = "single" if m.group(1) == "1" else "cross"
            rounds.setdefault(FLOOR, {}).setdefault(path, []).append(float(m.group(2)))
    print("\n## summary: medians over the rounds (cross / single; by round)")
    ratios = {}
    for fig, paths in rounds.items():
        single, cross = paths.get("single", []), paths.get("cross", [])
        if not single or not cross:
            continue
        ratios[fig] = [c / s for s, c in zip(single, cross)]
        by_round = ", ".join(f"{r:.2f}x" for r in ratios[fig])
        ratio = statistics.median(cross) / statistics.median(single)
        print(f"{fig:<48} single {statistics.median(single):8.1f}  cross "
              f"{statistics.median(cross):8.1f}  {ratio:.2f}x  ({by_round})")
    termpool = next((r for fig, r in ratios.items() if fig.startswith("throughput")), None)
    floor = ratios.get(FLOOR)
    if termpool and floor:
        # Each round's pair ran back to back: the scheduler's luck of that round cancels out.
        beyond = [t / f for t, f in zip(termpool, floor)]
        label = "throughput kept beyond the network's own cost"
        print(f"{label:<48} "
              f"{statistics.median(beyond):.2f}x  (termpool's ratio over the floor's, by round: "
              f"{', '.join(f'{b:.2f}x' for b in beyond)})")


if __name__ == "__main__":
    main()
