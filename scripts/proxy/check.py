#!/usr/bin/env python3
"""Checks termpool behind a TLS reverse proxy at a sub-path (Python 3 standard library only).

    check.py BASE_URL CA_FILE

BASE_URL is the page's address through the proxy (https://localhost:PORT/terminal/); CA_FILE the
proxy's certificate. Checks the page and its assets under the sub-path, the Secure cookie, the
origin check, that forged X-Forwarded-For does not get past the per-address limit (the server is
started with MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE=2), the session list, an upload, and a
re-attach that gets its screen back. Exits non-zero with a message on the first failure.
"""
import base64
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.parse


def fail(message):
    print(f"proxy check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


class Site:
    def __init__(self, base, ca):
        self.url = urllib.parse.urlsplit(base)
        self.base = self.url.path
        self.origin = f"https://{self.url.netloc}"
        self.tls = ssl.create_default_context(cafile=ca)

    def request(self, method, path, headers=None, body=None):
        conn = http.client.HTTPSConnection(self.url.hostname, self.url.port, context=self.tls, timeout=20)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, response.getheaders(), data

    def socket(self, path, cookie, origin=None, extra=""):
        raw = socket.create_connection((self.url.hostname, self.url.port), timeout=20)
        sock = self.tls.wrap_socket(raw, server_hostname=self.url.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {self.url.netloc}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             f"Origin: {origin or self.origin}\r\nCookie: {cookie}\r\n{extra}\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1])
        return WebSocket(sock, head.split(b"\r\n\r\n", 1)[1]), status


class WebSocket:
    def __init__(self, sock, rest):
        self.sock, self.buf = sock, rest

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("socket closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def ready(self):
        opcode, payload = self.frame()
        if opcode != 1:
            fail(f"expected the ready frame, got opcode {opcode}")
        return json.loads(payload)

    def expect(self, needle, seconds=10):
        seen, deadline = b"", time.time() + seconds
        while needle not in seen:
            if time.time() > deadline:
                fail(f"no {needle!r} in the output: {seen[-300:]!r}")
            opcode, payload = self.frame()
            if opcode == 2:
                seen += payload
            elif opcode == 9:
                self.send(10, payload)
        return seen


def cookie_of(headers):
    """The identity cookie; behind TLS it must carry the __Host- prefix (Secure, Path=/, no Domain)."""
    for name, value in headers:
        if name.lower() == "set-cookie" and value.startswith("__Host-termpool_id="):
            return value
    fail(f"the page set no __Host-termpool_id cookie: {headers}")


def main(base, ca):
    site = Site(base, ca)
    status, headers, page = site.request("GET", site.base)
    if status != 200:
        fail(f"GET {site.base}: {status}")
    set_cookie = cookie_of(headers)
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    if "secure" not in attributes or "path=/" not in attributes or any(a.startswith("domain") for a in attributes):
        fail(f"the cookie behind TLS is not Secure, Path=/ without Domain: {set_cookie}")
    cookie = set_cookie.split(";", 1)[0]
    asset = f"{site.base}assets/app.js"
    if f'"{asset}'.encode() not in page or site.request("GET", asset)[0] != 200:
        fail(f"the page's assets are not served at {asset}")
    print("ok: page and assets under the sub-path, __Host- Secure cookie")

    _, status = site.socket(f"{site.base}ws", cookie, origin="https://evil.example")
    if status != 403:
        fail(f"a foreign Origin got {status}, not 403")
    print("ok: foreign Origin refused (403)")

    ws, status = site.socket(f"{site.base}ws?cols=90&rows=20", cookie)
    if status != 101:
        fail(f"WebSocket upgrade through the proxy: {status}")
    ready = ws.ready()
    ws.send(2, b"cd && echo MARK=$((6*7))\r")
    ws.expect(b"MARK=42")
    status, _, listed = site.request("GET", f"{site.base}api/sessions", {"Cookie": cookie})
    sessions = json.loads(listed)["sessions"] if status == 200 else []
    if [s["id"] for s in sessions] != [ready["session"]]:
        fail(f"api/sessions through the proxy: {status} {listed[:200]!r}")
    path = f"{site.base}api/upload?session={ready['session']}&name=proxied-{os.getpid()}.txt"
    status, _, written = site.request("POST", path, {"Cookie": cookie, "Origin": site.origin}, b"hello\n")
    if status != 201:
        fail(f"upload through the proxy: {status} {written[:200]!r}")
    os.remove(json.loads(written)["path"])
    print("ok: WebSocket, api/sessions and upload through the proxy")

    ws.sock.close()  # dropped, not closed: the session waits for a re-attach
    time.sleep(0.5)
    again, status = site.socket(f"{site.base}ws?session={ready['session']}", cookie)
    resumed = again.ready() if status == 101 else {}
    if not resumed.get("resumed"):
        fail(f"re-attach through the proxy: {status} {resumed}")
    again.expect(b"MARK=42")
    again.sock.close()
    print("ok: re-attach through the proxy, with the screen")

    # New anonymous users per address: the proxy's X-Forwarded-For names the real client (read
    # from the right), so forging the header does not make a client several addresses.
    statuses = []
    for i in range(3):
        _, headers, _ = site.request("GET", site.base)
        fresh = cookie_of(headers).split(";", 1)[0]
        sock, status = site.socket(f"{site.base}ws", fresh, extra=f"X-Forwarded-For: 203.0.113.{i}\r\n")
        statuses.append(status)
        sock.sock.close()
    if statuses[-1] != 429:
        fail(f"forged X-Forwarded-For escaped the per-address limit: {statuses}")
    print(f"ok: forged X-Forwarded-For counted as the real client ({statuses})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        fail("usage: check.py BASE_URL CA_FILE")
    main(sys.argv[1], sys.argv[2])
