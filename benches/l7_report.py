"""Shared by the L7 benchmarks' reports (benches/http.sh, benches/tls.sh):
wrk's and openssl s_time's outputs as numbers."""
import re

NAN = float("nan")


def ms(v):
    """A wrk duration (`812.00us`, `1.24ms`, `2.03s`, `1.00m`) in ms."""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x = float(m.group(1))
    return x * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(path):
    """rps, p50/p99 (ms), p99.9/max (ms, when the script printed them:
    benches/wrk_spread.lua), requests, bytes read, socket errors (total and
    which), non-2xx responses, and `bad` when any of those went wrong."""
    try:
        text = open(path).read()
    except OSError:
        text = "wrk failed: no output"
    r = {"rps": 0.0, "p50": NAN, "p99": NAN, "p999": NAN, "max": NAN, "req": 0, "bytes": 0,
         "sock": 0, "sockd": "", "non2xx": 0, "failed": "wrk failed" in text}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m: r["rps"] = float(m.group(1))
    for p, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{p}%\s+(\S+)", text, re.M)
        if m: r[key] = ms(m.group(1))
    m = re.search(r"Tail latency: p99.9 (\d+) us, max (\d+) us", text)
    if m: r["p999"], r["max"] = int(m.group(1)) / 1000, int(m.group(2)) / 1000
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


def parse_stime(path, secs):
    """Several `openssl s_time` outputs in one file: the connections they
    made in `secs` seconds (as rps: one request per connection) and the
    lines that report errors."""
    try:
        text = open(path).read()
    except OSError:
        text = "s_time failed: no output"
    conns = sum(int(n) for n in re.findall(r"^(\d+) connections in \d+ real seconds", text, re.M))
    errors = len(re.findall(r"error|ERROR|Connection refused|unable", text))
    r = {"rps": conns / secs, "p50": NAN, "p99": NAN, "req": conns, "bytes": 0,
         "sock": 0, "sockd": "", "non2xx": 0, "errors": errors,
         "failed": "s_time failed" in text or "client failed" in text}
    r["bad"] = r["failed"] or conns == 0 or errors > 0
    return r
