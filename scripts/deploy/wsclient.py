#!/usr/bin/env python3
"""A small termpool client for the deployment test (Python 3 standard library only).

    wsclient.py cookie BASE_URL
        GET BASE_URL/container-terminal and print the identity cookie pair (termpool_id=...).
    wsclient.py session BASE_URL COOKIE [CMD ...]
        Open BASE_URL/container-terminal/ws with that cookie (and the page's own Origin), read the
        `ready` frame, run each CMD in the shell, then `exit` it; print one JSON object:
        {"ready": {...}, "results": [{"cmd", "status", "output"}, ...], "exit": {...}}.

The WebSocket part is a minimal RFC 6455 client: masked client frames, 16/64-bit lengths,
fragmented messages, ping answered with pong. Terminal bytes go out as binary frames.
"""
import base64
import codecs
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import time
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = float(os.environ.get("WS_TIMEOUT_SECS", "60"))
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def fail(message):
    print(f"wsclient: {message}", file=sys.stderr)
    sys.exit(1)


def get_cookie(base):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=TIMEOUT)
    conn.request("GET", "/container-terminal")
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        fail(f"GET /container-terminal: HTTP {response.status}")
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("termpool_id="):
            return value.split(";", 1)[0]
    fail("GET /container-terminal set no termpool_id cookie")


class WebSocket:
    def __init__(self, base, path, cookie):
        url = urllib.parse.urlsplit(base)
        self.sock = socket.create_connection((url.hostname, url.port or 80), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {url.scheme}://{url.netloc}\r\nCookie: {cookie}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1:2] != ["101"]:
            raise ConnectionError(f"upgrade refused: {lines[0]}: {self.buf[:300]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ConnectionError("bad Sec-WebSocket-Accept")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            header = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self, deadline):
        """The next message as (opcode, payload); pings are answered, pongs skipped."""
        message, opcode = b"", None
        while True:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            op = b0 & 0x0F
            if op == PING:
                self.send(PONG, payload)
            elif op == PONG:
                continue
            elif op == CLOSE:
                return CLOSE, payload
            else:
                opcode = opcode or op
                message += payload
                if b0 & 0x80:
                    return opcode, message

    def close(self):
        try:
            self.send(CLOSE, struct.pack(">H", 1000))
            self.recv(time.monotonic() + 5)
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def session(base, cookie, commands):
    ws = WebSocket(base, "/container-terminal/ws?cols=200&rows=50", cookie)
    deadline = time.monotonic() + TIMEOUT
    opcode, payload = ws.recv(deadline)
    ready = json.loads(payload) if opcode == TEXT else {}
    if ready.get("type") != "ready":
        raise ConnectionError(f"first frame is not `ready`: {payload[:300]!r}")
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    screen = ""  # terminal output since the last command finished, escapes removed
    frames = []  # JSON frames other than `ready`

    def read_until(pattern, deadline):
        nonlocal screen
        while not (m := re.search(pattern, screen)):
            opcode, payload = ws.recv(deadline)
            if opcode == BINARY:
                screen = ANSI.sub("", screen + decoder.decode(payload)).replace("\r", "")
            elif opcode == TEXT:
                frame = json.loads(payload)
                frames.append(frame)
                if frame.get("type") == "exit":
                    return frame
            elif opcode == CLOSE:
                raise ConnectionError(f"the server closed the socket: {payload!r}")
        return m

    results = []
    for i, cmd in enumerate(commands, 1):
        # The quotes split the marker in the echoed command line; only its output matches.
        ws.send(BINARY, f"{cmd}; echo __TP''_DONE_{i}__ $?\r".encode())
        m = read_until(rf"__TP_DONE_{i}__ (\d+)\n", time.monotonic() + TIMEOUT)
        if not isinstance(m, re.Match):
            raise ConnectionError(f"the shell exited during {cmd!r}: {m}")
        lines = [l for l in screen[: m.start()].split("\n") if f"__TP''_DONE_{i}__" not in l]
        results.append({"cmd": cmd, "status": int(m.group(1)), "output": "\n".join(lines).strip()})
        screen = screen[m.end():]

    ws.send(BINARY, b"exit\r")
    end = read_until(r"(?!)", time.monotonic() + TIMEOUT)  # until the `exit` frame
    ws.close()
    errors = [f for f in frames if f.get("type") == "error"]
    return {"ready": ready, "results": results, "exit": end, "errors": errors}


def main(argv):
    if len(argv) >= 2 and argv[0] == "cookie":
        print(get_cookie(argv[1]))
    elif len(argv) >= 3 and argv[0] == "session":
        try:
            print(json.dumps(session(argv[1], argv[2], argv[3:]), indent=1))
        except (OSError, ConnectionError, ValueError) as e:
            fail(f"{type(e).__name__}: {e}")
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
