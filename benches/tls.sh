#!/usr/bin/env bash
# TLS benchmark: Sluice (one worker core, rustls) against HAProxy (one
# thread, OpenSSL) terminating TLS on the same two-leg namespace topology,
# with the same three nginx backends, the same certificates (made here)
# and the same clients as benches/http.sh (benches/l7_common.sh), and
# Sluice's own plain-HTTP rate measured in the same run.
#
#   benches/tls.sh [SECONDS]          (default 6 s per measured run)
#
# Each proxy listens on 10.50.1.100 (Sluice) or 10.50.1.3 (HAProxy): :80
# plain HTTP, :443 TLS with an ECDSA P-256 certificate, :8443 TLS with an
# RSA-2048 one. Points (docs/BENCHMARKS.md section 7):
#
#   full-ecdsa, full-rsa  HS_CLIENTS processes of `openssl s_time -new`,
#                         each one connection at a time, a full handshake
#                         and one HTTP/1.1 request (Connection: close)
#                         per connection
#   resumed               wrk -H "Connection: close": a new connection per
#                         request, resuming the session of the
#                         connection's previous one (wrk keeps the session
#                         across its reconnections), RES_CONNS connections
#   (both checked with Sluice's full and resumed handshake counters and
#   HAProxy's SSL and key rates, sampled in the middle of the run)
#   ka-tls, ka-plain      wrk keep-alive, 13 B responses, KA_CONNS
#   big-tls, big-plain    wrk keep-alive, 64 KiB responses, BIG_CONNS
#
# Every point runs ROUNDS times (default 3), Sluice and HAProxy back to
# back in each round (which goes first alternates); the report gives each
# round, the range, the Sluice/HAProxy ratio and TLS/plain ratio of each
# round, the client's own CPU use (user + system of wrk or s_time, % of one
# CPU), both CPUs' load, and each proxy's own CPU: HAProxy's user +
# system time, Sluice's worker busy time (its `busy_ns` counter: loop
# iterations that had work; a polling worker is on its CPU all the time,
# and polling empty queues is not counted), from which the report gives
# requests or handshakes per CPU-second of each. busy_ns is wall time, so
# other load preempting the worker inflates it: the keep-alive table also
# gives the worker's share of the run on its CPU (its thread's schedstat:
# on CPU against waiting behind other tasks) and busy_ns times that share
# per request (Sluice's own request counter), the measure that holds on a
# shared machine, taken over the
# part of the run after the client's connections are up: wrk opens them
# (and does its full TLS handshakes) at the start of the measured run,
# which at 1000 connections adds a few µs to every request's share of the
# whole run's busy time. As in benches/http.sh,
# Sluice's worker polls and is stopped (SIGSTOP) while HAProxy runs;
# everything but the proxies runs on CLIENT_CPU.
#
# Environment: ROUNDS (3), WARM (2 s of warm-up per run), HS_CLIENTS (32),
# RES_CONNS (64), KA_CONNS ("1 64 1000"), BIG_CONNS ("1 64"), POINTS
# ("full-ecdsa full-rsa resumed ka big"), IDLE_SLEEP_US (0: Sluice's
# worker busy-polls, as in benches/http.sh; N > 0: it sleeps N µs per
# loop once idle, which leaves the client's CPU more room when both
# share softirq work), SLUICE_BIN (the Sluice binary to run: two builds
# compared on the same set-up), RESULTS=DIR (keep clients'
# outputs, counters, configs and logs), PAUSE=SECS (keep the set-up up that
# long before measuring), and those of benches/l7_common.sh (PROXY_CPU,
# CLIENT_CPU, BACKLOG, MBUFS, DEVICE). Needs wrk, haproxy built with
# OpenSSL, nginx, openssl, curl (scripts/setup.sh); stops at once if one
# is missing. Run as root on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-6}
ROUNDS=${ROUNDS:-3}
WARM=${WARM:-2}
HS_CLIENTS=${HS_CLIENTS:-32}
RES_CONNS=${RES_CONNS:-64}
KA_CONNS=${KA_CONNS:-"1 64 1000"}
BIG_CONNS=${BIG_CONNS:-"1 64"}
POINTS=${POINTS:-"full-ecdsa full-rsa resumed ka big"}
IDLE_SLEEP_US=${IDLE_SLEEP_US:-0}

for tool in wrk haproxy nginx openssl curl python3 ethtool; do
  command -v "$tool" >/dev/null || {
    echo "tls.sh: $tool is missing: the comparison needs it (scripts/setup.sh installs it)" >&2
    exit 1
  }
done
case "$(haproxy -vv 2>/dev/null)" in *USE_OPENSSL=1*) ;; *)
  echo "tls.sh: this haproxy is built without OpenSSL: no reference" >&2
  exit 1 ;;
esac

P=sltb
TMP=$(mktemp -d)
HAPROXY=""
. benches/l7_common.sh
cleanup() {
  local pid
  # (A Sluice already gone must not stop the cleanup: set -e.)
  [ -n "$SLUICE" ] && { kill -CONT "$SLUICE" 2>/dev/null || true; }
  for pid in $SLUICE $HAPROXY; do kill -TERM "$pid" 2>/dev/null || true; done
  l7_cleanup
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS"
    cp "$TMP"/*.out "$TMP"/*.json "$TMP"/*.log "$TMP"/*.toml "$TMP"/*.cpu "$TMP"/*.ctime "$TMP"/*.sched \
      "$TMP"/*.hap "$TMP"/haproxy.cfg "$TMP"/points "$TMP"/params "$RESULTS"/ 2>/dev/null || true
  fi
  rm -rf "$TMP"
  rm -rf /var/run/dpdk/sluice-tlsbench
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release --locked -q
l7_raise_backlog
SLUICE_BIN=${SLUICE_BIN:-$PWD/target/release/sluice}

l7_topology
l7_backends

# --- certificates: self-signed, for bench.test (clients do not verify)
cert() { # NAME NEWKEY_OPTION...
  local name=$1; shift
  openssl req -x509 -nodes -days 90 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
    "$@" -keyout "$TMP/$name.key" -out "$TMP/$name.crt" 2>/dev/null
  cat "$TMP/$name.crt" "$TMP/$name.key" >"$TMP/$name.pem" # HAProxy's crt
}
cert ecdsa -newkey ec -pkeyopt ec_paramgen_curve:P-256
cert rsa -newkey rsa:2048

# --- HAProxy: one thread, the same three ports
haproxy_config "  bind 10.50.1.3:80 backlog 65535
  bind 10.50.1.3:443 ssl crt $TMP/ecdsa.pem alpn http/1.1 backlog 65535
  bind 10.50.1.3:8443 ssl crt $TMP/rsa.pem alpn http/1.1 backlog 65535" \
  "  stats socket $TMP/haproxy.sock" >"$TMP/haproxy.cfg"

# --- Sluice: one worker, the same three ports
listener() { # NAME PORT [CERT]
  cat <<EOF2

[[listener]]
name = "$1"
address = "10.50.1.100"
port = $2
ingress = "p0"
snat = ["10.50.2.1"]
default_cluster = "web"
max_connections = 16384
max_half_open = 4096
max_uri_bytes = 4096
idle_timeout_ms = 900000
EOF2
  [ -z "${3:-}" ] && return
  # HAProxy has no bound on handshakes in progress: none reached here either.
  cat <<EOF2
protocol = "https"
max_tls_handshakes = 4096

[[listener.certificate]]
cert = "$TMP/$3.crt"
key = "$TMP/$3.key"
EOF2
}
{
  sluice_base_config sluice-tlsbench 9198 | sed "/^mbufs = /a idle_sleep_us = $IDLE_SLEEP_US"
  listener http 80
  listener https-ecdsa 443 ecdsa
  listener https-rsa 8443 rsa
} >"$TMP/sluice.toml"
SLUICE_CFG=$TMP/sluice.toml
"$SLUICE_BIN" check --config "$SLUICE_CFG" >/dev/null

start_haproxy() {
  ip netns exec "$P-lb" taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
  HAPROXY=$!
  wait_http client http://10.50.1.3/small
  wait_http client https://10.50.1.3/small -k
}
start_sluice() {
  ip netns exec "$P-lb" "$SLUICE_BIN" run --config "$SLUICE_CFG" >>"$TMP/sluice.log" 2>&1 &
  SLUICE=$!
  wait_http client http://10.50.1.100/small
  wait_http client https://10.50.1.100/small -k
}
# HAProxy's `show info` as "Name: value" lines.
hap_info() {
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show info\n")
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
sys.stdout.write(out.decode())' "$TMP/haproxy.sock"
}

host_of() { [ "$1" = sluice ] && echo 10.50.1.100 || echo 10.50.1.3; }
# The client command of a point (shell-quoted), on CLIENT_CPU: openssl
# s_time -new (HS_CLIENTS processes, each one connection at a time) for
# full handshakes, wrk for the rest.
client_cmd() { # TARGET KIND CONNS DURATION
  local h c=$3 t url close=() port=443
  h=$(host_of "$1")
  t=$((c < 3 ? c : 3))
  case "$2" in
    full-ecdsa | full-rsa)
      [ "$2" = full-rsa ] && port=8443
      # s_time sends "GET <path> HTTP/1.0" and no Host: the path carries
      # an HTTP/1.1 request line, a Host and Connection: close, so that
      # both proxies forward it as they do wrk's (Sluice forwards a
      # Host-less HTTP/1.0 request as HTTP/1.1 without Host, which nginx
      # answers with 400, on a new upstream connection each time).
      printf '%q ' taskset -c "$CLIENT_CPU" bash -c \
        'for i in $(seq "$1"); do openssl s_time -connect "$2" -new -time "$3" -www "$4" 2>&1 | grep -v "^\*" & done; wait' \
        - "$c" "$h:$port" "$4" $'/small HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\nX-Pad:'
      return ;;
    resumed) url=https://$h/small; close=(-H "Connection: close") ;;
    ka-tls) url=https://$h/small ;;
    ka-plain) url=http://$h/small ;;
    big-tls) url=https://$h/64k.bin ;;
    big-plain) url=http://$h/64k.bin ;;
  esac
  printf '%q ' taskset -c "$CLIENT_CPU" wrk -t"$t" -c"$c" --timeout 10s "${close[@]}" -d"$4"s --latency "$url"
}

# Keep-alive runs: the client opens its connections (and, over TLS, does
# its full handshakes) at the start of the measured run; the steady part
# starts once Sluice has accepted them all (and finished their
# handshakes: Sluice's counters of both stop moving), at most SECS/2 in:
# its counters and the worker's schedstat
# then go to $TMP/NAME.mid.{json,sched} (the end of the run closes it).
steady_sample() { # NAME
  local name=$1 prev=-1 now
  while [ "$SECONDS" -lt "$((t0 + SECS / 2))" ]; do
    sleep 0.25
    sluice_stats "$TMP/$name.mid.json"
    # Connections accepted and TLS handshakes done since the run began:
    # some, and none since the previous sample.
    now=$(python3 - "$TMP/$name.before.json" "$TMP/$name.mid.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])).get("counters", {}); b = json.load(open(sys.argv[2])).get("counters", {})
print(sum(b.get(k, 0) - a.get(k, 0) for k in ("l7_accepted", "l7_tls_handshakes_full", "l7_tls_handshakes_resumed")))
PY
)
    [ "$now" -gt 0 ] && [ "$now" = "$prev" ] && break
    prev=$now
  done
  worker_schedstat "$SLUICE" >"$TMP/$name.mid.sched"
}

# One measured run: $TMP/NAME.{out,ctime,cpu} (and Sluice's counters, or
# HAProxy's `show info` in the middle of the run).
measure() { # NAME TARGET KIND CONNS
  local name=$1 target=$2 kind=$3 c=$4 pid c0 c1 p0 p1 w0 w1 cmd sampler=""
  [ "$target" = sluice ] && pid=$SLUICE || pid=$HAPROXY
  [ "$target" != sluice ] && kill -STOP "$SLUICE"
  cmd=$(client_cmd "$target" "$kind" "$c" "$WARM")
  eval "ns client $cmd" >/dev/null 2>&1 || true
  [ "$target" = sluice ] && sluice_stats "$TMP/$name.before.json"
  if [ "$target" = haproxy ]; then
    (sleep "$((SECS / 2))" && hap_info >"$TMP/$name.hap" 2>&1) &
    sampler=$!
  fi
  case "$target:$kind" in sluice:ka-* | sluice:big-*)
    t0=$SECONDS steady_sample "$name" &
    sampler=$! ;;
  esac
  cmd=$(client_cmd "$target" "$kind" "$c" "$SECS")
  c0=$(cpu_ticks); p0=$(proc_ticks "$pid"); w0=$(worker_schedstat "$SLUICE")
  local TIMEFORMAT="%R %U %S"
  { time eval "ns client $cmd" >"$TMP/$name.out" 2>&1 || echo "client failed: $?" >>"$TMP/$name.out"; } 2>"$TMP/$name.ctime"
  c1=$(cpu_ticks); p1=$(proc_ticks "$pid"); w1=$(worker_schedstat "$SLUICE")
  [ "$target" = sluice ] && echo "$w0 $w1" >"$TMP/$name.sched"
  [ "$target" = sluice ] && sluice_stats "$TMP/$name.after.json"
  [ -n "$sampler" ] && { wait "$sampler" 2>/dev/null || true; }
  [ -f "$TMP/$name.mid.sched" ] && echo "$w1" >>"$TMP/$name.mid.sched"
  echo "$c0 $c1 $p0 $p1" >"$TMP/$name.cpu"
  [ "$target" != sluice ] && kill -CONT "$SLUICE"
  return 0
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per run (after ${WARM} s warm-up), $ROUNDS rounds; Sluice on $DEVICE"
for i in 0 1 2; do wait_http client "http://${BACKENDS[$i]}:8080/small"; done
start_haproxy
start_sluice
# What each proxy and certificate negotiates with OpenSSL's client defaults
# (wrk and s_time use the same library).
: >"$TMP/params"
for target in sluice haproxy; do
  for port in 443 8443; do
    [ "$target" = haproxy ] && kill -STOP "$SLUICE"
    p=$(ns client openssl s_client -brief -connect "$(host_of $target):$port" -servername bench.test </dev/null 2>&1 |
      awk -F': ' '/^(Protocol version|Ciphersuite|Peer signature type|Server Temp Key)/ {printf "%s%s", s, $2; s=", "}')
    [ "$target" = haproxy ] && kill -CONT "$SLUICE"
    echo "$target $port $p" >>"$TMP/params"
  done
done
if [ -n "${PAUSE:-}" ]; then
  echo "paused $PAUSE s: namespaces $P-*, Sluice config $SLUICE_CFG" >&2
  sleep "$PAUSE"
fi

: >"$TMP/points"
for round in $(seq "$ROUNDS"); do
  order="sluice haproxy"
  [ $((round % 2)) = 0 ] && order="haproxy sluice"
  for point in $POINTS; do
    case "$point" in
      full-ecdsa | full-rsa) runs="$point:$HS_CLIENTS" ;;
      resumed) runs="resumed:$RES_CONNS" ;;
      ka) runs=$(for c in $KA_CONNS; do printf 'ka-tls:%s ka-plain:%s ' "$c" "$c"; done) ;;
      big) runs=$(for c in $BIG_CONNS; do printf 'big-tls:%s big-plain:%s ' "$c" "$c"; done) ;;
      *) echo "tls.sh: unknown point $point" >&2; exit 2 ;;
    esac
    for run in $runs; do
      kind=${run%:*} c=${run#*:}
      for target in $order; do
        echo "-- round $round: $target $kind c=$c" >&2
        measure "r$round-$kind-$c-$target" "$target" "$kind" "$c"
        echo "r$round-$kind-$c-$target $round $kind $c $target" >>"$TMP/points"
      done
    done
  done
done

python3 - "$TMP" "$SECS" "$IDLE_SLEEP_US" <<'PY'
import json, os, sys

tmp, secs, idle_sleep = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, "benches")
from l7_report import NAN, parse_wrk, parse_stime

HZ = os.sysconf("SC_CLK_TCK")
points = [l.split() for l in open(f"{tmp}/points")]
runs = {}
for name, rnd, kind, c, target in points:
    if kind.startswith("full-"):
        r = parse_stime(f"{tmp}/{name}.out", secs)
    else:
        r = parse_wrk(f"{tmp}/{name}.out")
    # CPU: the client's own (user + system of wrk/s_time, % of one CPU),
    # each CPU's load, HAProxy's own.
    try:
        real, user, sys_ = map(float, open(f"{tmp}/{name}.ctime").read().split())
        r["client"] = 100.0 * (user + sys_) / real
        r["real"] = real
    except (OSError, ValueError):
        r["client"] = r["real"] = NAN
    try:
        b00, t00, b10, t10, b01, t01, b11, t11, p0, p1 = map(int, open(f"{tmp}/{name}.cpu").read().split())
        wall = (t01 - t00) / HZ
        r["cpu0"] = 100.0 * (b01 - b00) / (t01 - t00)
        r["cpu1"] = 100.0 * (b11 - b10) / (t11 - t10)
        r["own"] = 100.0 * (p1 - p0) / HZ / wall
    except (OSError, ValueError, ZeroDivisionError):
        r["cpu0"] = r["cpu1"] = r["own"] = NAN
    r["counters"] = {}
    if target == "sluice":
        try:
            a = json.load(open(f"{tmp}/{name}.before.json")).get("counters", {})
            b = json.load(open(f"{tmp}/{name}.after.json")).get("counters", {})
            r["counters"] = {k: b[k] - a.get(k, 0) for k in b if isinstance(b[k], int) and b[k] != a.get(k, 0)}
        except (OSError, ValueError):
            pass
        # Sluice's own CPU is its worker's busy time (iterations that had
        # work; polling empty queues is not counted), over the client's run.
        busy = r["counters"].get("busy_ns", 0)
        r["own"] = 100.0 * busy / 1e9 / r["real"] if busy and r["real"] == r["real"] else NAN
        # busy_ns is wall time: other load that preempts the worker in a
        # busy iteration inflates it. The worker's schedstat says which
        # share of the run it was on its CPU (it polls, so it never
        # sleeps: on CPU or waiting behind another task); busy_ns times
        # that share is its busy time on CPU, assuming the waits fall
        # alike on busy and idle iterations.
        try:
            c0, d0, c1, d1 = map(int, open(f"{tmp}/{name}.sched").read().split())
            r["oncpu"] = (c1 - c0) / ((c1 - c0) + (d1 - d0))
        except (OSError, ValueError, ZeroDivisionError):
            r["oncpu"] = NAN
        # The steady part of a keep-alive run (connections up, see
        # steady_sample): busy time on CPU per request counted by Sluice,
        # and the handshakes that still fell in it.
        r["steady"] = r["steady_hs"] = NAN
        try:
            m = json.load(open(f"{tmp}/{name}.mid.json")).get("counters", {})
            e = json.load(open(f"{tmp}/{name}.after.json")).get("counters", {})
            c0, d0, c1, d1 = map(int, open(f"{tmp}/{name}.mid.sched").read().split())
            dm = lambda k: e.get(k, 0) - m.get(k, 0)
            on = (c1 - c0) / ((c1 - c0) + (d1 - d0))
            r["steady"] = dm("busy_ns") * on / dm("l7_requests") / 1e3
            r["steady_hs"] = dm("l7_tls_handshakes_full") + dm("l7_tls_handshakes_resumed")
        except (OSError, ValueError, ZeroDivisionError):
            pass
    r["hap"] = {}
    if target == "haproxy":
        try:
            for line in open(f"{tmp}/{name}.hap"):
                k, _, v = line.partition(":")
                r["hap"][k.strip()] = v.strip()
        except OSError:
            pass
    runs[(kind, int(c), target, int(rnd))] = (name, r)

rounds = sorted({k[3] for k in runs})
def vals(kind, c, target, key="rps"):
    return [runs[(kind, c, target, n)][1][key] for n in rounds if (kind, c, target, n) in runs]
def each(v, f="{:,.0f}"):
    return ", ".join(f.format(x) for x in v) if v else "–"
def rng(v, f="{:,.0f}"):
    return (f.format(min(v)) + "-" + f.format(max(v))) if v else "–"
def ratios(a, b):
    return [x / y if y else NAN for x, y in zip(a, b)]
def own(kind, c, target):
    v = mean(vals(kind, c, target, "own"))
    return "–" if v != v else f"{v:.0f}%"
def per_cpu(kind, c, target):
    """Requests per second of the proxy's own CPU time, mean of rounds."""
    v = [x / (o / 100) for x, o in zip(vals(kind, c, target), vals(kind, c, target, "own")) if o == o and o > 0]
    return f"{mean(v):,.0f}" if v else "–"
def us_per_req(kind, c, target):
    """The proxy's own CPU time per request in µs, mean of rounds."""
    v = [o / 100 / x * 1e6 for x, o in zip(vals(kind, c, target), vals(kind, c, target, "own")) if o == o and x > 0]
    return f"{mean(v):.1f}" if v else "–"
def steady(kind, c):
    """Sluice's busy time on CPU per request in the steady part, µs, each round."""
    return each(vals(kind, c, "sluice", "steady"), "{:.1f}")
def mean(v):
    v = [x for x in v if x == x]
    return sum(v) / len(v) if v else NAN

print("\n### Negotiated (openssl s_client, OpenSSL's client defaults as in wrk and s_time)\n")
for l in open(f"{tmp}/params"):
    t, port, *p = l.split(" ", 2)
    print(f"- {t} :{port}: {' '.join(p).strip() or 'no TLS answer'}")

kinds = {}
for kind, c, _, _ in runs:
    kinds.setdefault(kind, set()).add(c)

print(f"\n### Handshakes (new connection per request; {secs:g} s per run; per second, each round)\n")
print("| point | Sluice | range | HAProxy | range | Sluice/HAProxy | client's own CPU S / H | CPU load client / proxy, S | H | proxy's own CPU S / H | per proxy CPU-second S / H | Sluice full / resumed handshakes per s | HAProxy mid-run SslRate / key rate / reuse % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
LABEL = {"full-ecdsa": "full, ECDSA P-256, s_time -new", "full-rsa": "full, RSA-2048, s_time -new", "resumed": "resumed (ECDSA cert), wrk"}
for kind in ("full-ecdsa", "full-rsa", "resumed"):
    for c in sorted(kinds.get(kind, ())):
        s, h = vals(kind, c, "sluice"), vals(kind, c, "haproxy")
        sr = [runs[(kind, c, "sluice", n)][1] for n in rounds if (kind, c, "sluice", n) in runs]
        hr = [runs[(kind, c, "haproxy", n)][1] for n in rounds if (kind, c, "haproxy", n) in runs]
        hs = ", ".join(f"{r['counters'].get('l7_tls_handshakes_full', 0) / secs:,.0f} / {r['counters'].get('l7_tls_handshakes_resumed', 0) / secs:,.0f}" for r in sr)
        hap = ", ".join(f"{r['hap'].get('SslRate', '?')} / {r['hap'].get('SslFrontendKeyRate', '?')} / {r['hap'].get('SslFrontendSessionReuse_pct', '?')}" for r in hr)
        print(f"| {LABEL[kind]}, {c} {'clients' if kind.startswith('full-') else 'conn'} | {each(s)} | {rng(s)} | {each(h)} | {rng(h)} | {each(ratios(s, h), '{:.2f}')} "
              f"| {mean(vals(kind, c, 'sluice', 'client')):.0f}% / {mean(vals(kind, c, 'haproxy', 'client')):.0f}% "
              f"| {mean(vals(kind, c, 'sluice', 'cpu0')):.0f}% / {mean(vals(kind, c, 'sluice', 'cpu1')):.0f}% "
              f"| {mean(vals(kind, c, 'haproxy', 'cpu0')):.0f}% / {mean(vals(kind, c, 'haproxy', 'cpu1')):.0f}% "
              f"| {own(kind, c, 'sluice')} / {own(kind, c, 'haproxy')} | {per_cpu(kind, c, 'sluice')} / {per_cpu(kind, c, 'haproxy')} "
              f"| {hs} | {hap} |")

SIZE = {"ka": "13 B", "big": "64 KiB"}
print(f"\n### Keep-alive requests per second, TLS (ECDSA cert) and plain HTTP ({secs:g} s per run; each round)\n")
print("| point | Sluice TLS | range | HAProxy TLS | range | Sluice/HAProxy, TLS | Sluice plain | Sluice TLS/plain | HAProxy plain | HAProxy TLS/plain | Sluice p50 / p99 TLS, ms | client's own CPU, TLS S / H | CPU load client / proxy, TLS S | H | proxy's own CPU, TLS S / H, plain S / H | own CPU µs per request, TLS S / H, plain S / H | Sluice worker on CPU, TLS / plain | Sluice busy on CPU µs per request, connections up, each round: TLS; plain | handshakes in that part, TLS |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for base in ("ka", "big"):
    for c in sorted(kinds.get(f"{base}-tls", ())):
        st, ht = vals(f"{base}-tls", c, "sluice"), vals(f"{base}-tls", c, "haproxy")
        sp, hp = vals(f"{base}-plain", c, "sluice"), vals(f"{base}-plain", c, "haproxy")
        lat = f"{mean(vals(f'{base}-tls', c, 'sluice', 'p50')):.2f} / {mean(vals(f'{base}-tls', c, 'sluice', 'p99')):.2f}"
        k = f"{base}-tls"
        print(f"| {SIZE[base]}, {c} conn | {each(st)} | {rng(st)} | {each(ht)} | {rng(ht)} | {each(ratios(st, ht), '{:.2f}')} "
              f"| {each(sp)} | {each(ratios(st, sp), '{:.2f}')} | {each(hp)} | {each(ratios(ht, hp), '{:.2f}')} | {lat} "
              f"| {mean(vals(k, c, 'sluice', 'client')):.0f}% / {mean(vals(k, c, 'haproxy', 'client')):.0f}% "
              f"| {mean(vals(k, c, 'sluice', 'cpu0')):.0f}% / {mean(vals(k, c, 'sluice', 'cpu1')):.0f}% "
              f"| {mean(vals(k, c, 'haproxy', 'cpu0')):.0f}% / {mean(vals(k, c, 'haproxy', 'cpu1')):.0f}% "
              f"| {own(k, c, 'sluice')} / {own(k, c, 'haproxy')}, {own(f'{base}-plain', c, 'sluice')} / {own(f'{base}-plain', c, 'haproxy')} "
              f"| {us_per_req(k, c, 'sluice')} / {us_per_req(k, c, 'haproxy')}, {us_per_req(f'{base}-plain', c, 'sluice')} / {us_per_req(f'{base}-plain', c, 'haproxy')} "
              f"| {100 * mean(vals(k, c, 'sluice', 'oncpu')):.0f}% / {100 * mean(vals(f'{base}-plain', c, 'sluice', 'oncpu')):.0f}% "
              f"| {steady(k, c)}; {steady(f'{base}-plain', c)} | {each(vals(k, c, 'sluice', 'steady_hs'))} |")

# Errors, Sluice's error counters, and runs that measured nothing.
EXPECTED = {"drop_l7_no_conn", "l7_resets_sent", "drop_ip_not_ours"}
notes, empty = [], []
for (kind, c, target, n), (name, r) in sorted(runs.items()):
    parts = []
    if r["bad"]:
        e = []
        if r["failed"]: e.append("client failed")
        if r.get("errors"): e.append(f"{r['errors']} client error lines")
        if r["sock"]: e.append(r["sockd"])
        if r["non2xx"]: e.append(f"{r['non2xx']} non-2xx")
        if r["req"] == 0: e.append("no response")
        parts.append("errors: " + "; ".join(e))
    odd = {k: v for k, v in r["counters"].items()
           if (k.startswith("drop_") and k not in EXPECTED) or k.startswith("l7_tls_") and k not in
           ("l7_tls_handshakes_full", "l7_tls_handshakes_resumed", "l7_tls_handshaking")
           or k in ("l7_local_4xx", "l7_local_5xx", "l7_aborted", "l7_upstream_failures", "l7_handshake_failed")}
    if odd: parts.append("Sluice counters: " + ", ".join(f"{k} +{v}" for k, v in sorted(odd.items())))
    if parts: notes.append(f"- {name}: " + "; ".join(parts))
    if r["req"] == 0: empty.append(name)
print("\n### Errors and Sluice counters\n")
print("\n".join(notes) if notes else "none: no socket error, no non-2xx response, no Sluice error counter moved")
if empty:
    print(f"\ntls.sh: measured nothing in {', '.join(empty)}", file=sys.stderr)
    sys.exit(1)
PY
