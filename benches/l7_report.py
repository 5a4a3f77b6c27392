"""Shared by the L7 benchmarks' reports (benches/http.sh, benches/tls.sh):
wrk's and h2load's outputs as numbers."""
import re

NAN = float("nan")


def ms(v):
    """A wrk duration (`812.00us`, `1.24ms`, `2.03s`, `1.00m`) in ms."""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x = float(m.group(1))
    return x * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(path):
    """rps, p50/p99 (ms), requests, bytes read, socket errors (total and
    which), non-2xx responses, and `bad` when any of those went wrong."""
    try:
        text = open(path).read()
    except OSError:
        text = "wrk failed: no output"
    r = {"rps": 0.0, "p50": NAN, "p99": NAN, "req": 0, "bytes": 0,
         "sock": 0, "sockd": "", "non2xx": 0, "failed": "wrk failed" in text}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m: r["rps"] = float(m.group(1))
    for p, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{p}%\s+(\S+)", text, re.M)
        if m: r[key] = ms(m.group(1))
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", text)
    if m:
        r["req"] = int(m.group(1))
        r["bytes"] = float(m.group(2)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(3)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["sock"] = sum(map(int, m.groups()))
        r["sockd"] = ", ".join(f"{v} {k}" for k, v in zip(("connect", "read", "write", "timeout"), m.groups()) if v != "0")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m: r["non2xx"] = int(m.group(1))
    r["bad"] = r["failed"] or r["req"] == 0 or r["sock"] > 0 or r["non2xx"] > 0
    return r


def parse_h2load(path):
    """The same fields from h2load's summary (no latency percentiles:
    p50/p99 stay NaN; `sock` counts failed and errored requests)."""
    try:
        text = open(path).read()
    except OSError:
        text = "h2load failed: no output"
    r = {"rps": 0.0, "p50": NAN, "p99": NAN, "req": 0, "bytes": 0,
         "sock": 0, "sockd": "", "non2xx": 0, "failed": "h2load failed" in text}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if m: r["rps"] = float(m.group(1))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        r["req"] = int(m.group(1))
        r["sock"] = int(m.group(2)) + int(m.group(4))
        if r["sock"]:
            r["sockd"] = f"{m.group(2)} failed, {m.group(4)} timeout"
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m: r["non2xx"] = int(m.group(3)) + int(m.group(4))
    m = re.search(r"traffic: [\d.]+\w* \((\d+)\) total", text)
    if m: r["bytes"] = int(m.group(1))
    r["bad"] = r["failed"] or r["req"] == 0 or r["sock"] > 0 or r["non2xx"] > 0
    return r
