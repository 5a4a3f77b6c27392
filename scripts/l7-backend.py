#!/usr/bin/env python3
"""An HTTP/1.1 test backend for Sluice's L7 tests (tests/l7_netns.rs).

    l7-backend.py NAME PORT [--bind ADDR] [--count-file FILE] [--log]

Python standard library only: a threading HTTP/1.1 server with keep-alive.
Every response carries `X-Backend: NAME`. Every request it reads is counted
(also one it cannot parse), except the control paths below; the count is
kept in memory and, with --count-file, written to FILE after each request.

Endpoints (any method unless said; HEAD answers as GET without a body):
  /_count              the count, as text (not counted)
  /_fail/NNN           from now on answer every counted request with status
                       NNN (0: stop); not counted
  /health              200 "ok", or 503 while the health flag is down; not
                       counted
  /health/down, /up    set the health flag; not counted
  /headers             JSON: {"name", "method", "path", "client",
                       "headers": [[name, value], ...]} as received
  /bytes/N             N bytes with Content-Length, streamed in 64 KiB pieces
  /chunked/N           the same bytes with Transfer-Encoding: chunked
                       (byte i of either is i % 251)
  /truncate/N          Content-Length N, but only N/2 bytes, then close
  POST/PUT /upload     reads the body (Content-Length or chunked) as it
                       arrives; answers "bytes=N sha256=HEX\n"
  /status/NNN          status NNN; a short body unless NNN is 1xx, 204 or 304
  /slow/MS             sleeps MS milliseconds, then answers as /
  /ws                  WebSocket (RFC 6455) handshake, then echoes text and
                       binary frames (ping gets pong, close gets close)
  anything else        "NAME PATH\n" (PATH as received, query included)
A request body sent to any other path is read and thrown away.
"""

import base64
import hashlib
import json
import os
import struct
import sys
import threading
import time
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
PIECE = 64 * 1024
# Byte i of /bytes and /chunked is i % 251: a period that does not divide
# the piece size, so a lost, doubled or reordered piece changes the hash.
PATTERN = bytes(i % 251 for i in range(PIECE + 251))


class State:
    def __init__(self, name, count_file):
        self.name = name
        self.count_file = count_file
        self.lock = threading.Lock()
        self.count = 0
        self.fail = 0
        self.healthy = True

    def bump(self):
        with self.lock:
            self.count += 1
            n = self.count
        if self.count_file:
            tmp = self.count_file + ".tmp"
            with self.lock:
                with open(tmp, "w") as f:
                    f.write(f"{n}\n")
                os.replace(tmp, self.count_file)


def is_control(path):
    return (
        path == "/_count"
        or path.startswith("/_fail/")
        or path == "/health"
        or path.startswith("/health/")
    )


def pattern_piece(offset, n):
    start = offset % 251
    return PATTERN[start : start + n]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main
    disable_nagle_algorithm = True
    log_requests = False

    def version_string(self):
        return "l7-backend"

    def log_message(self, fmt, *args):
        if self.log_requests:
            sys.stderr.write(f"{self.state.name}: {fmt % args}\n")

    def parse_request(self):
        ok = super().parse_request()
        if not is_control(getattr(self, "path", "") or ""):
            self.state.bump()
        return ok

    # -- helpers

    def reply(self, status, body=b"", headers=(), content_type="text/plain"):
        self.send_response(status)
        self.send_header("X-Backend", self.state.name)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and not no_body:
            self.wfile.write(body)

    def read_body(self, sink):
        """Reads the request body (Content-Length or chunked), handing each
        piece to `sink`; returns the byte count."""
        te = self.headers.get("Transfer-Encoding", "")
        total = 0
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Trailers, up to the empty line.
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                left = size
                while left:
                    b = self.rfile.read(min(left, PIECE))
                    if not b:
                        raise ConnectionError("eof in chunk")
                    sink(b)
                    left -= len(b)
                    total += len(b)
                self.rfile.readline(8)
        n = int(self.headers.get("Content-Length", "0") or "0")
        while total < n:
            b = self.rfile.read(min(n - total, PIECE))
            if not b:
                raise ConnectionError("eof in body")
            sink(b)
            total += len(b)
        return total

    # -- dispatch

    def handle_any(self):
        path = self.path
        st = self.state
        if path == "/_count":
            return self.reply(200, f"{st.count}\n".encode())
        if path.startswith("/_fail/"):
            st.fail = int(path[len("/_fail/") :])
            return self.reply(200, b"ok\n")
        if path == "/health/down" or path == "/health/up":
            st.healthy = path.endswith("/up")
            return self.reply(200, b"ok\n")
        if path == "/health":
            return self.reply(200 if st.healthy else 503, b"ok\n" if st.healthy else b"down\n")
        if path == "/ws" and "websocket" in self.headers.get("Upgrade", "").lower():
            return self.websocket()
        if path.startswith("/upload") and self.command in ("POST", "PUT"):
            h = hashlib.sha256()
            n = self.read_body(h.update)
            return self.reply(200, f"bytes={n} sha256={h.hexdigest()}\n".encode())
        # Any other body is read and dropped, so the connection stays usable.
        self.read_body(lambda b: None)
        if st.fail:
            return self.reply(st.fail, f"{st.name} failing {st.fail}\n".encode())
        if path == "/headers":
            body = json.dumps(
                {
                    "name": st.name,
                    "method": self.command,
                    "path": path,
                    "client": self.client_address[0],
                    "headers": [[k, v] for k, v in self.headers.items()],
                }
            ).encode()
            return self.reply(200, body, content_type="application/json")
        if path.startswith("/bytes/"):
            return self.stream(int(path[len("/bytes/") :]), chunked=False)
        if path.startswith("/chunked/"):
            return self.stream(int(path[len("/chunked/") :]), chunked=True)
        if path.startswith("/truncate/"):
            return self.stream(int(path[len("/truncate/") :]), chunked=False, truncate=True)
        if path.startswith("/status/"):
            code = int(path[len("/status/") :])
            return self.reply(code, f"{st.name} status {code}\n".encode())
        if path.startswith("/slow/"):
            time.sleep(int(path[len("/slow/") :]) / 1000.0)
        return self.reply(200, f"{st.name} {path}\n".encode())

    def stream(self, n, chunked, truncate=False):
        self.send_response(200)
        self.send_header("X-Backend", self.state.name)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        off = 0
        if truncate:
            # Half the promised body, then the connection closes.
            self.wfile.write(pattern_piece(0, n // 2))
            self.close_connection = True
            return
        while off < n:
            piece = pattern_piece(off, min(PIECE, n - off))
            if chunked:
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.wfile.write(piece)
            off += len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- WebSocket (RFC 6455), by hand

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("X-Backend", self.state.name)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        rf = self.rfile

        def read_exact(n):
            b = rf.read(n)
            if b is None or len(b) != n:
                raise ConnectionError("eof in frame")
            return b

        def send(opcode, payload, fin=True):
            b0 = (0x80 if fin else 0) | opcode
            n = len(payload)
            if n < 126:
                head = struct.pack("!BB", b0, n)
            elif n < 65536:
                head = struct.pack("!BBH", b0, 126, n)
            else:
                head = struct.pack("!BBQ", b0, 127, n)
            self.wfile.write(head + payload)

        try:
            while True:
                b0, b1 = read_exact(2)
                fin, opcode = b0 & 0x80, b0 & 0x0F
                masked, n = b1 & 0x80, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", read_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", read_exact(8))
                mask = read_exact(4) if masked else b"\0\0\0\0"
                data = read_exact(n)
                if masked and n:
                    key = (mask * (n // 4 + 1))[:n]
                    data = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
                if opcode == 0x8:
                    send(0x8, data[:2])
                    return
                if opcode == 0x9:
                    send(0xA, data)
                elif opcode in (0x0, 0x1, 0x2):
                    send(opcode, data, fin=bool(fin))
        except (ConnectionError, OSError, ValueError):
            return

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    name, port = args[0], int(args[1])
    count_file, bind, log = None, "0.0.0.0", False
    rest = args[2:]
    while rest:
        opt = rest.pop(0)
        if opt == "--count-file":
            count_file = rest.pop(0)
        elif opt == "--bind":
            bind = rest.pop(0)
        elif opt == "--log":
            log = True
        else:
            sys.exit(f"unknown option {opt}\n{__doc__}")
    Handler.state = State(name, count_file)
    Handler.log_requests = log
    srv = (Server6 if ":" in bind else Server)((bind, port), Handler)
    print(f"l7-backend {name} listening on {bind}:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
