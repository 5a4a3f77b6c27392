#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections to HOST:PORT, send one request on
each and read its whole response, then hold them all idle until SIGTERM.

    http_idle.py HOST PORT N READY_FILE [PATH]

Writes "opened OK failed FAILED" to READY_FILE once every connection has had
its response (or has failed), so that a caller can measure the proxy's
memory with exactly OK idle connections open. Standard library only; raises
RLIMIT_NOFILE to the hard limit. Connections are opened in waves of 200,
each wave's requests in flight at once, so that 10,000 connections take
seconds, not minutes.
"""

import resource
import selectors
import signal
import socket
import sys
import time

WAVE = 200
TIMEOUT_S = 10.0


def response_done(buf: bytes) -> bool:
    """True once a full response with Content-Length has arrived."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(buf) >= end + 4 + length


def open_wave(host, port, count, request):
    """Connect `count` sockets, send the request on each, read each response.
    Returns (open sockets, failures)."""
    sel = selectors.DefaultSelector()
    bufs = {}
    failed = 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            failed += 1
            continue
        sel.register(s, selectors.EVENT_WRITE)
        bufs[s] = None  # None: request not sent yet
    done = []
    deadline = time.monotonic() + TIMEOUT_S
    while bufs and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                if bufs[s] is None:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError("connect failed")
                    s.send(request)
                    bufs[s] = b""
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed")
                bufs[s] += chunk
                if response_done(bufs[s]):
                    sel.unregister(s)
                    del bufs[s]
                    done.append(s)
            except OSError:
                sel.unregister(s)
                del bufs[s]
                s.close()
                failed += 1
    for s in bufs:
        sel.unregister(s)
        s.close()
        failed += 1
    sel.close()
    return done, failed


def main():
    host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    path = sys.argv[5] if len(sys.argv) > 5 else "/small"
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    held, failed = [], 0
    while len(held) + failed < n:
        ok, bad = open_wave(host, port, min(WAVE, n - len(held) - failed), request)
        held += ok
        failed += bad
    with open(ready, "w") as f:
        f.write(f"opened {len(held)} failed {failed}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
