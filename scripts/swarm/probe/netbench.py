#!/usr/bin/env python3
"""TCP echo round trip, throughput and many-connection echo between two points, to judge what
the network adds to a terminal session across hosts.

  netbench.py server PORT
  netbench.py client HOST PORT [LABEL]    prints one line of figures
"""
import socket
import statistics
import struct
import sys
import threading
import time

PINGS = 2000
BULK = 256 * 1024 * 1024
CHUNK = 64 * 1024
CONNS, CONN_PINGS = 100, 100


def serve_one(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mode = c.recv(1)
    if mode == b"E":  # echo one byte at a time until EOF
        while True:
            b = c.recv(1)
            if not b:
                break
            c.sendall(b)
    elif mode == b"T":  # sink: count bytes until EOF, then say how many
        n = 0
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            n += len(b)
        c.sendall(struct.pack("!Q", n))
    c.close()


def server(port):
    s = socket.create_server(("", port), backlog=256)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


def connect(host, port, mode):
    c = socket.create_connection((host, port), timeout=30)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(mode)
    return c


def pings(host, port, n):
    c = connect(host, port, b"E")
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise RuntimeError("bad echo")
        out.append((time.perf_counter() - t) * 1e6)
    c.close()
    return out


def bulk(host, port):
    c = connect(host, port, b"T")
    buf = b"\0" * CHUNK
    t = time.perf_counter()
    for _ in range(BULK // CHUNK):
        c.sendall(buf)
    c.shutdown(socket.SHUT_WR)
    (n,) = struct.unpack("!Q", c.recv(8))
    dt = time.perf_counter() - t
    assert n == BULK
    return BULK / dt / 1e6


def many(host, port):
    results, threads = [], []
    lock = threading.Lock()

    def one():
        r = pings(host, port, CONN_PINGS)
        with lock:
            results.extend(r)

    for _ in range(CONNS):
        threads.append(threading.Thread(target=one))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def client(host, port, label):
    pings(host, port, 200)  # warm up
    rtt = pings(host, port, PINGS)
    mbps = bulk(host, port)
    conc = many(host, port)
    print(f"{label:<28} echo p50 {statistics.median(rtt):7.1f} us  p99 {pct(rtt, 99):7.1f} us | "
          f"bulk {mbps:7.0f} MB/s | {CONNS} conns echo p50 {statistics.median(conc):8.1f} us "
          f"p99 {pct(conc, 99):8.1f} us", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else sys.argv[2])
