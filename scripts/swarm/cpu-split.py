#!/usr/bin/env python3
"""Where the CPU goes during a benchmark on the test Swarm: samples every container's CPU time
(its cgroup) and the machine's busy time twice a second, then splits them by phase.

    scripts/swarm/cpu-split.py record OUT.jsonl &      # beside scripts/swarm/bench.sh; kill it after
    scripts/swarm/cpu-split.py report OUT.jsonl single=single_server cross=cross_server

A phase is every sample in which the named container (a substring of `n<node>:<name>`) uses more
than 5% of a core: each stack's server is busy only while its own benchmark runs.
"""
import json
import os
import subprocess
import sys
import time

NODES = int(os.environ.get("NODES_COUNT", "3"))
SOCK = "/run/termpool-swarm/tpswarm-n{}.sock"
CGROUP_ROOTS = ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup"]


def containers():
    """Full container id -> `n<node>:<name without the task suffix>`."""
    names = {}
    for i in range(1, NODES + 1):
        out = subprocess.run(
            ["docker", "-H", "unix://" + SOCK.format(i), "ps", "--no-trunc",
             "--format", "{{.ID}} {{.Names}}"],
            capture_output=True, text=True).stdout
        for line in out.splitlines():
            cid, name = line.split(" ", 1)
            names[cid] = f"n{i}:{name.split('.')[0]}"
    return names


def cgroup_dirs(ids):
    """Container id -> its cgroup directory (v1 cpuacct, or v2; cgroupfs or systemd names)."""
    found = {}
    for root in CGROUP_ROOTS:
        if not os.path.isdir(root):
            continue
        for path, dirs, _ in os.walk(root):
            base = os.path.basename(path)
            cid = base.removeprefix("docker-").removesuffix(".scope")
            if cid in ids:
                found.setdefault(cid, path)
            if path.count("/") > 8:
                dirs[:] = []
    return found


def usage_ns(path):
    try:
        with open(os.path.join(path, "cpuacct.usage")) as f:
            return int(f.read())
    except FileNotFoundError:
        with open(os.path.join(path, "cpu.stat")) as f:
            for line in f:
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) * 1000
    return None


def record(out_path):
    names, dirs, refreshed = {}, {}, 0.0
    with open(out_path, "w") as out:
        while True:
            now = time.time()
            if now - refreshed > 5:
                names = containers()
                dirs = cgroup_dirs(names)
                refreshed = now
            with open("/proc/stat") as f:
                row = {"t": now, "cpu": [int(x) for x in f.readline().split()[1:8]]}
            for cid, path in dirs.items():
                try:
                    row[names[cid]] = usage_ns(path)
                except OSError:
                    pass
            out.write(json.dumps(row) + "\n")
            out.flush()
            time.sleep(0.5)


def report(path, phases):
    rows = [json.loads(line) for line in open(path)]
    cores = os.cpu_count()

    def rate(key, i):
        a, b = rows[i - 1], rows[i]
        if a.get(key) is None or b.get(key) is None:
            return 0.0
        return (b[key] - a[key]) / 1e9 / (b["t"] - a["t"])

    def busy(i):
        d = [y - x for x, y in zip(rows[i - 1]["cpu"], rows[i]["cpu"])]
        total, idle = sum(d), d[3] + d[4]
        return cores * (total - idle) / total if total else 0.0

    keys = sorted(set().union(*rows) - {"t", "cpu"})
    for phase in phases:
        label, marker = phase.split("=", 1)
        server = next((k for k in keys if marker in k), None)
        idx = [i for i in range(1, len(rows)) if server and rate(server, i) > 0.05]
        if not idx:
            print(f"{label}: no sample with {marker} busy")
            continue
        span = rows[idx[-1]]["t"] - rows[idx[0]]["t"]
        print(f"{label}: {len(idx)} samples over {span:.1f} s; machine: "
              f"{sum(busy(i) for i in idx) / len(idx):.2f} of {cores} cores busy")
        for k in keys:
            r = sum(rate(k, i) for i in idx) / len(idx)
            if r > 0.005:
                print(f"  {k:44s} {r:.2f} cores")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
