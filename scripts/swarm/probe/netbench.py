#!/usr/bin/env python3
"""TCP echo round trip, throughput and many-connection echo between two points, to judge what
the network adds to a terminal session across hosts.

  netbench.py server PORT
  netbench.py client HOST PORT [LABEL]    prints one line of figures
  netbench.py pty HOST PORT [VIA LABEL]   terminal output without termpool: `head -c` of zeros
                                          on a raw PTY, its master read and sent to the sink at
                                          HOST:PORT, or to the server there to forward to VIA
                                          (host:port, from that server)
"""
import os
import pty
import select
import socket
import statistics
import struct
import sys
import threading
import time

PINGS = 2000
BULK = 256 * 1024 * 1024
PTY_BULK = 128 * 1024 * 1024  # as the relay benchmark's throughput run
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
    elif mode == b"F":  # forward to the sink named next (a length byte, host:port), then its count
        host, port = recv_exact(c, recv_exact(c, 1)[0]).decode().rsplit(":", 1)
        onward = connect(host, int(port), b"T")
        splice_all(c, onward)
        onward.shutdown(socket.SHUT_WR)
        c.sendall(recv_exact(onward, 8))
        onward.close()
    c.close()


def splice_all(src, dst):
    """Moves src's bytes to dst until EOF through a pipe, in the kernel (no copy here), so that
    the forwarding hop costs what the kernel's network does and no more."""
    r, w = os.pipe()
    try:
        while True:
            n = os.splice(src.fileno(), w, 1 << 20)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dst.fileno(), n)
    finally:
        os.close(r)
        os.close(w)


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        b = c.recv(n - len(out))
        if not b:
            raise RuntimeError("connection closed early")
        out += b
    return out


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


def pty_bulk(host, port, via):
    """PTY_BULK zeros written on a raw PTY by `head`, read from its master as a terminal server
    reads it (what it holds when it wakes, sent at once); MiB/s (as the relay benchmark counts)
    from the start to the sink's count."""
    c = connect(host, port, b"F" + bytes([len(via)]) + via.encode() if via else b"T")
    pid, master = pty.fork()
    if pid == 0:
        os.system("stty raw -echo")
        os.execvp("head", ["head", "-c", str(PTY_BULK), "/dev/zero"])
    os.set_blocking(master, False)
    t = time.perf_counter()
    done = False
    while not done:
        select.select([master], [], [])
        # What the PTY holds now goes out in one send, as termpool's readers do.
        batch, size = [], 0
        while size < 1 << 16:
            try:
                b = os.read(master, 1 << 16)
            except BlockingIOError:
                break
            except OSError:  # EIO: the writer is gone and its output drained
                b = b""
            if not b:
                done = True
                break
            batch.append(b)
            size += len(b)
        c.sendall(b"".join(batch))
    os.waitpid(pid, 0)
    c.shutdown(socket.SHUT_WR)
    (n,) = struct.unpack("!Q", recv_exact(c, 8))
    dt = time.perf_counter() - t
    if n != PTY_BULK:
        raise RuntimeError(f"the sink counted {n} of {PTY_BULK} bytes")
    return PTY_BULK / dt / 2**20


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
    elif sys.argv[1] == "pty":
        via, label = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("", sys.argv[2])
        rates = [pty_bulk(sys.argv[2], int(sys.argv[3]), via) for _ in range(3)]
        print(f"{label:<40} PTY output {statistics.median(rates):5.1f} MiB/s "
              f"(median of {', '.join(f'{r:.0f}' for r in rates)})", flush=True)
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else sys.argv[2])
