#!/usr/bin/env bash
# L7 (HTTP/1.1) benchmark: Sluice (one worker core) against HAProxy (one
# thread) on the same two-leg namespace topology, the same three nginx
# backends and the same wrk client, with the harness's own ceiling measured
# in the same run: wrk straight at the backends, and wrk through a plain
# Linux router namespace over the same two legs.
#
#   benches/http.sh [SECONDS]          (default 8 s per measured point)
#
#          client leg: bridge br0 (10.50.1.0/24)   server leg: bridge br1 (10.50.2.0/24)
#   client c0 10.50.1.2 ─┐                       ┌─ c1 10.50.2.2 client (direct runs)
#   Sluice l0 (af_xdp) ──┤ VIP 10.50.1.100:80    ├── l1 (af_xdp) Sluice 10.50.2.1
#   HAProxy h0 10.50.1.3 ┤                       ├── h1 10.50.2.3 HAProxy
#   router r0 10.50.1.4 ─┘                       ├── r1 10.50.2.4 router (ip_forward)
#                                                └── be1..be3 10.50.2.11-13 (and
#                                                    10.50.3.11-13 via the router):
#                                                    one nginx each, :8080
#
# The topology, the backends and the measuring helpers are in
# benches/l7_common.sh (shared with benches/tls.sh), wrk's output parser in
# benches/l7_report.py.
#
# Per point (response size x connections), in this order: Sluice, HAProxy,
# kernel router (wrk to 10.50.3.11-13 through rt), direct (wrk from c1 to
# 10.50.2.11-13). wrk runs min(3, connections) threads in every run; in the
# router and direct runs thread i talks to backend i (benches/wrk_spread.lua).
# Then, unless skipped: memory per idle keep-alive connection (VmRSS delta /
# N, each proxy freshly started, then a second wave on the same process
# once the first has closed) and wrk -c 64 with N idle connections held.
#
# CPUs: Sluice's worker (lcore 1) and HAProxy on PROXY_CPU; wrk, the three
# nginx, Sluice's main lcore and the idle-connection client on CLIENT_CPU.
# Sluice's worker polls, so it takes all of its CPU whatever the load: it is
# stopped (SIGSTOP) while anything else is measured; HAProxy sleeps in epoll
# while Sluice is measured. Softirq work (veth delivery, the router's
# forwarding, the AF_XDP copy) runs on the CPU that sent the packet; the
# report shows both CPUs' load per run. Checksum offload (and so TSO) is off
# on every veth, as DPDK needs, so every endpoint sends MTU-sized segments
# with software checksums.
#
# Environment: PROXY_CPU (1), CLIENT_CPU (0), SIZES ("small 64k 1m"),
# CONNS ("1 64 1000"), WARM (2 s of warm-up per run), DEVICE (af_xdp, or
# af_packet), AFP_ARGS (extra net_af_packet devargs, ",framecnt=4096"),
# MBUFS (Sluice's mbufs per worker, 8191), RX_DESC (its rx descriptors,
# 2048), IDLE_COUNTS ("2000 10000"), SETTLE (seconds between opening the
# idle connections and reading RSS, 3: Sluice gives back the send buffers
# of connections quiet for one to two seconds), P (namespace prefix, slhb),
# COST_COUNTS ("100 10000"), SKIP_MEM=1, SKIP_COST=1, SKIP_CEILING=1 (no
# router or direct runs), BACKLOG (10000), RESULTS=DIR (keep wrk outputs,
# Sluice counters and logs there), PAUSE=SECS (keep the set-up up that long
# before measuring, to probe by hand), SLUICE_BIN (the Sluice binary to run,
# target/release/sluice; another build's, to compare two in the same
# set-up). Every run also keeps, in
# RESULTS, NAME.before.probe and NAME.after.probe: retransmitted segments
# per namespace and ethtool -S of l0 and l1 (the veth's XDP counters:
# rx_queue_0_drops is what XDP could not hand to Sluice's AF_XDP socket).
# Run as root on an otherwise idle
# machine. See docs/BENCHMARKS.md section 4.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
SIZES=${SIZES-"small 64k 1m"}
CONNS=${CONNS:-"1 64 1000"}
WARM=${WARM:-2}
IDLE_COUNTS=${IDLE_COUNTS:-"2000 10000"}
COST_COUNTS=${COST_COUNTS:-"100 10000"}
SETTLE=${SETTLE:-3}
TARGETS="sluice haproxy"
[ -z "${SKIP_CEILING:-}" ] && TARGETS="$TARGETS router direct"

P=${P:-slhb}
TMP=$(mktemp -d)
HAPROXY=""
HOLDER=""
. benches/l7_common.sh
cleanup() {
  local pid
  [ -n "$SLUICE" ] && { kill -CONT "$SLUICE" 2>/dev/null || true; }
  for pid in $HOLDER $SLUICE $HAPROXY; do kill -TERM "$pid" 2>/dev/null || true; done
  l7_cleanup
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS"
    cp "$TMP"/*.wrk "$TMP"/*.json "$TMP"/*.log "$TMP"/*.toml "$TMP"/*.cpu "$TMP"/*.loss \
      "$TMP"/*.l0 "$TMP"/*.probe "$TMP"/haproxy.cfg "$TMP"/points "$TMP"/cost "$TMP"/mem "$TMP"/mem2 "$RESULTS"/ 2>/dev/null || true
    for i in 1 2 3; do cp "$TMP/nginx$i/error.log" "$RESULTS/nginx$i-error.log" 2>/dev/null || true; done
  fi
  rm -rf "$TMP"
  # Each Sluice run of this script has its own file prefix (sluice-http-P).
  rm -rf /var/run/dpdk/sluice-http-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# HAProxy holds at most this many idle connections (HAP_MAXCONN: see
# benches/l7_common.sh).
HAP_IDLE_CAP=$((HAP_MAXCONN - 400))

cargo build --release --locked -q
l7_raise_backlog
SLUICE_BIN=${SLUICE_BIN:-$PWD/target/release/sluice}

l7_topology
l7_backends

# --- HAProxy: one thread on the proxy CPU, the same proxy headers Sluice adds
haproxy_config "  bind 10.50.1.3:80 backlog 65535" >"$TMP/haproxy.cfg"

# --- Sluice: one worker on lcore PROXY_CPU, main lcore on CLIENT_CPU; one
# port per leg
sluice_config() { # BUFFER_BYTES
  sluice_base_config "sluice-http-$P" 9197
  cat <<EOF2

[[listener]]
name = "http"
address = "10.50.1.100"
port = 80
ingress = "p0"
snat = ["10.50.2.1"]
default_cluster = "web"
max_connections = 16384
max_half_open = 4096
client_rx_buffer = $1
client_tx_buffer = $1
upstream_rx_buffer = $1
upstream_tx_buffer = $1
max_head_bytes = $(($1 < 16384 ? $1 : 16384))
max_uri_bytes = 4096
idle_timeout_ms = 900000
EOF2
}
sluice_config 65536 >"$TMP/sluice-65536.toml"
sluice_config 16384 >"$TMP/sluice-16384.toml"
"$SLUICE_BIN" check --config "$TMP/sluice-65536.toml" >/dev/null
SLUICE_CFG=$TMP/sluice-65536.toml

start_sluice() { # CONFIG
  SLUICE_CFG=$1
  ip netns exec "$P-lb" "$SLUICE_BIN" run --config "$SLUICE_CFG" >>"$TMP/sluice.log" 2>&1 &
  SLUICE=$!
  wait_http client http://10.50.1.100/small
}
stop_sluice() {
  kill -CONT "$SLUICE" 2>/dev/null || true
  kill -TERM "$SLUICE" 2>/dev/null || true
  wait "$SLUICE" 2>/dev/null || true
  SLUICE=""
}
start_haproxy() {
  ip netns exec "$P-lb" taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
  HAPROXY=$!
  wait_http client http://10.50.1.3/small
}
stop_haproxy() {
  kill -TERM "$HAPROXY" 2>/dev/null || true
  wait "$HAPROXY" 2>/dev/null || true
  HAPROXY=""
}
# Per-namespace retransmitted segments and the AF_XDP/veth counters of l0
# and l1 (ethtool -S in the lb namespace), one "key value" a line.
probe() {
  local n
  for n in client lb rt be1 be2 be3; do
    ns "$n" awk -v n="$n" '/^Tcp: [0-9]/ {print n ".TcpRetransSegs", $13}' /proc/net/snmp
  done
  for n in l0 l1; do
    ns lb ethtool -S "$n" 2>/dev/null | awk -v n="$n" -F: 'NF == 2 {gsub(/ /, "", $1); gsub(/ /, "", $2); print n "." $1, $2}'
  done
  python3 -c 'print("softnet.dropped", sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat")))'
}
l_rx() { echo "$(ns lb cat /sys/class/net/l0/statistics/rx_packets) $(ns lb cat /sys/class/net/l1/statistics/rx_packets)"; }

path_of() { case "$1" in small) echo /small ;; 64k) echo /64k.bin ;; 1m) echo /1m.bin ;; *) echo "/$1" ;; esac; }
# One measured wrk run; writes $TMP/NAME.{wrk,cpu,loss} (and Sluice counters).
measure() { # NAME TARGET SIZE CONNS SECS
  local name=$1 target=$2 c=$4 url pid="" from=client t c0 c1 p0 p1 k0 k1 l0a hosts=""
  local path; path=$(path_of "$3")
  t=$((c < 3 ? c : 3))
  case "$target" in
    sluice) url=http://10.50.1.100$path; pid=$SLUICE ;;
    haproxy) url=http://10.50.1.3$path; pid=$HAPROXY ;;
    router) url=http://${ROUTED[0]}:8080$path; hosts="${ROUTED[*]}" ;;
    direct) url=http://${BACKENDS[0]}:8080$path; hosts="${BACKENDS[*]}" ;;
  esac
  local wrk=(taskset -c "$CLIENT_CPU" env WRK_HOSTS="$hosts" wrk -t"$t" -c"$c" --timeout 10s -s benches/wrk_spread.lua)
  # Sluice's worker polls: stopped while anything else runs.
  [ "$target" != sluice ] && kill -STOP "$SLUICE"
  # Warm-up: upstream connections opened, caches and pools filled.
  ns "$from" "${wrk[@]}" -d"${WARM}s" "$url" >/dev/null 2>&1 || true
  [ "$target" = sluice ] && sluice_stats "$TMP/$name.before.json"
  l0a=$(l_rx)
  probe >"$TMP/$name.before.probe"
  c0=$(cpu_ticks); p0=$(proc_ticks "$pid"); k0=$(kernel_losses)
  ns "$from" "${wrk[@]}" -d"${5}s" --latency "$url" >"$TMP/$name.wrk" 2>&1 || echo "wrk failed: $?" >>"$TMP/$name.wrk"
  c1=$(cpu_ticks); p1=$(proc_ticks "$pid"); k1=$(kernel_losses)
  probe >"$TMP/$name.after.probe"
  [ "$target" = sluice ] && sluice_stats "$TMP/$name.after.json"
  echo "$l0a $(l_rx)" >"$TMP/$name.l0"
  echo "$c0 $c1 $p0 $p1" >"$TMP/$name.cpu"
  echo "$k0 $k1" >"$TMP/$name.loss"
  [ "$target" != sluice ] && kill -CONT "$SLUICE"
  echo "$name $target $3 $c" >>"$TMP/points"
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per point (after ${WARM} s warm-up); Sluice on $DEVICE"
for i in 0 1 2; do
  wait_http client "http://${BACKENDS[$i]}:8080/small"
  wait_http client "http://${ROUTED[$i]}:8080/small"
done
start_haproxy
start_sluice "$TMP/sluice-65536.toml"
if [ -n "${PAUSE:-}" ]; then # keep everything up for manual probing
  echo "paused $PAUSE s: namespaces $P-*, Sluice config $SLUICE_CFG" >&2
  sleep "$PAUSE"
fi

# Open M idle keep-alive connections to HOST:80 from the client (each has
# had one response) and hold them; $TMP/ready says how many opened.
hold_idle() { # HOST M
  rm -f "$TMP/ready"
  ip netns exec "$P-client" taskset -c "$CLIENT_CPU" python3 benches/http_idle.py "$1" 80 "$2" "$TMP/ready" &
  HOLDER=$!
  for _ in $(seq 600); do [ -s "$TMP/ready" ] && break; sleep 0.2; done
}
release_idle() {
  kill -TERM "$HOLDER" 2>/dev/null || true
  wait "$HOLDER" 2>/dev/null || true
  HOLDER=""
}

# --- 1. throughput and latency, with the ceiling
: >"$TMP/points"
for size in $SIZES; do
  for c in $CONNS; do
    for target in $TARGETS; do
      echo "-- $target $size c=$c" >&2
      measure "tp-$size-$c-$target" "$target" "$size" "$c" "$SECS"
    done
  done
done
# --- 3. per-packet cost with many idle connections held open
: >"$TMP/cost"
if [ -z "${SKIP_COST:-}" ]; then
  for n in $COST_COUNTS; do
    for proxy in sluice haproxy; do
      echo "-- $proxy c=64 with $n idle" >&2
      host=$([ "$proxy" = sluice ] && echo 10.50.1.100 || echo 10.50.1.3)
      m=$n
      [ "$proxy" = haproxy ] && [ "$m" -gt "$HAP_IDLE_CAP" ] && m=$HAP_IDLE_CAP
      hold_idle "$host" "$m"
      opened=$(cat "$TMP/ready" 2>/dev/null || echo "opened 0 failed $m")
      [ "$proxy" = sluice ] && sluice_stats "$TMP/cost-$n-gauge.json"
      measure "cost-$n-$proxy" "$proxy" small 64 "$SECS"
      echo "cost-$n-$proxy $proxy $n $opened" >>"$TMP/cost"
      release_idle
      sleep 2
    done
  done
fi

# --- 2. memory per idle connection, each proxy freshly started
: >"$TMP/mem"
: >"$TMP/mem2"
if [ -z "${SKIP_MEM:-}" ]; then
  for n in $IDLE_COUNTS; do
    for variant in sluice-65536 sluice-16384 haproxy-16384; do
      proxy=${variant%-*}
      echo "-- memory: $variant, $n idle" >&2
      if [ "$proxy" = sluice ]; then
        stop_sluice; start_sluice "$TMP/$variant.toml"; pid=$SLUICE; host=10.50.1.100
      else
        stop_haproxy; start_haproxy; pid=$HAPROXY; host=10.50.1.3
      fi
      # Upstream connections opened and the allocators warmed first.
      ns client curl -s -o /dev/null -o /dev/null "http://$host/small" "http://$host/small"
      sleep 1
      r0=$(rss_kib "$pid")
      m=$n
      [ "$proxy" = haproxy ] && [ "$m" -gt "$HAP_IDLE_CAP" ] && m=$HAP_IDLE_CAP
      hold_idle "$host" "$m"
      sleep "$SETTLE"
      r1=$(rss_kib "$pid")
      gauge=""
      if [ "$proxy" = sluice ]; then
        sluice_stats "$TMP/mem.json"
        gauge=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])).get("counters",{}); print(c.get("l7_client_conns","?"))' "$TMP/mem.json")
      fi
      echo "$variant $n $r0 $r1 $(cat "$TMP/ready" 2>/dev/null || echo "opened 0 failed $m") gauge $gauge" >>"$TMP/mem"
      release_idle
      # A second wave on the same process, once the first has closed:
      # what a connection costs where memory has been used and freed
      # before (a proxy that has run for a while), not in a fresh heap.
      sleep 4
      r2=$(rss_kib "$pid")
      hold_idle "$host" "$m"
      sleep "$SETTLE"
      r3=$(rss_kib "$pid")
      echo "$variant $n $r2 $r3 $(cat "$TMP/ready" 2>/dev/null || echo "opened 0 failed $m")" >>"$TMP/mem2"
      release_idle
      sleep 2
    done
  done
fi



python3 - "$TMP" "$SECS" "$DEVICE" <<'PY'
import json, os, re, sys

tmp, secs, device = sys.argv[1], sys.argv[2], sys.argv[3]
HZ = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, "benches")
from l7_report import NAN, parse_wrk

def cpu(name):
    try:
        b00, t00, b10, t10, b01, t01, b11, t11, p0, p1 = map(int, open(f"{tmp}/{name}.cpu").read().split())
    except (OSError, ValueError):
        return NAN, NAN, NAN
    pct = lambda b, t: 100.0 * b / t if t else NAN
    wall = (t01 - t00) / HZ  # seconds of the client CPU's clock
    return pct(b01 - b00, t01 - t00), pct(b11 - b10, t11 - t10), 100.0 * (p1 - p0) / HZ / wall if wall else NAN

def own_ms_per_mb(name, r):
    """CPU the proxy process was given during the run (ms) per MB wrk read."""
    try:
        p0, p1 = map(int, open(f"{tmp}/{name}.cpu").read().split()[8:10])
    except (OSError, ValueError):
        return NAN
    return 1000.0 * (p1 - p0) / HZ / (r["bytes"] / 1e6) if r and r["bytes"] else NAN

# When wrk stops it resets its connections with responses in flight: Sluice
# resets their upstream connections, and the segments still in flight both
# ways find no connection (RST answered). Not errors.
EXPECTED = {"drop_l7_no_conn", "l7_resets_sent", "drop_ip_not_ours"}
WATCH = ["l7_local_4xx", "l7_local_5xx", "l7_aborted", "l7_upstream_connect_failed",
         "l7_upstream_failures", "l7_upstream_timeouts", "l7_bad_responses", "l7_truncated_responses",
         "l7_handshake_failed", "l7_retries", "drop_l7_syn_over_cap", "drop_l7_tx_error"]

def sluice_delta(name):
    try:
        a = json.load(open(f"{tmp}/{name}.before.json"))
        b = json.load(open(f"{tmp}/{name}.after.json"))
    except (OSError, ValueError):
        return {}
    ca, cb = a.get("counters", {}), b.get("counters", {})
    d = {k: cb[k] - ca.get(k, 0) for k in cb if isinstance(cb[k], int) and cb[k] != ca.get(k, 0)}
    # af_packet: frames the kernel delivered to l0/l1 that Sluice never read
    # (ring overflow; the PMD does not report it). af_xdp reports its drops
    # itself (rx_missed, from XDP_STATISTICS).
    if device == "af_packet":
        try:
            v = list(map(int, open(f"{tmp}/{name}.l0").read().split()))
            for port, (x0, x1) in (("p0", (v[0], v[2])), ("p1", (v[1], v[3]))):
                rx = b["ports"][port]["rx_packets"] - a["ports"][port]["rx_packets"]
                if (x1 - x0) - rx > 0: d[f"{port}.af_packet_ring_drops"] = (x1 - x0) - rx
        except (OSError, ValueError, KeyError, IndexError):
            pass
    for port, s in b.get("ports", {}).items():
        for k in ("rx_missed", "rx_errors", "tx_errors", "rx_nombuf"):
            v = s.get(k, 0) - a.get("ports", {}).get(port, {}).get(k, 0)
            if v: d[f"{port}.{k}"] = v
    return d

def errors(r):
    e = []
    if r["failed"]: e.append("wrk failed")
    if r["sock"]: e.append(r["sockd"])
    if r["non2xx"]: e.append(f"{r['non2xx']} non-2xx")
    if r["req"] == 0 and not r["failed"]: e.append("no request")
    return "; ".join(e) if e else "0"

def cell(r, err=True):
    if r is None:
        return "– | – | –" + (" | –" if err else "")
    s = f"{r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f}"
    return s + (f" | {errors(r)}" if err else ("" if not r["bad"] else " ⚠"))

def loss(name):
    try:
        r0, d0, r1, d1 = map(int, open(f"{tmp}/{name}.loss").read().split())
        return r1 - r0, d1 - d0
    except (OSError, ValueError):
        return 0, 0

notes = []
def describe(name, target, r):
    parts = []
    if loss(name)[1]: parts.append(f"{loss(name)[1]} packets dropped by the kernel backlog (softnet_stat, whole machine)")
    if r["bad"]: parts.append("errors: " + errors(r))
    if target == "sluice":
        d = sluice_delta(name)
        odd = {k: v for k, v in d.items() if k in WATCH or "." in k or (k.startswith("drop_") and k not in EXPECTED)}
        if odd: parts.append("Sluice counters: " + ", ".join(f"{k} +{v}" for k, v in sorted(odd.items())))
    if parts: notes.append(f"- {name}: " + "; ".join(parts))

points = [l.split() for l in open(f"{tmp}/points")]
res = {p[0]: (p, parse_wrk(f"{tmp}/{p[0]}.wrk")) for p in points}
get = lambda name: res[name][1] if name in res else None
SIZE = {"small": "13 B", "64k": "64 KiB", "1m": "1 MiB"}
def label(size, c):
    c = int(c); t = min(3, c)
    opened = c // t * t
    return f"{SIZE.get(size, size)}, {c} conn" + (f" ({opened} open)" if opened != c else "")

tp = [(n, p) for n, (p, _) in res.items() if n.startswith("tp-") and p[1] == "sluice"]
print(f"\n### Throughput and latency ({secs} s per point; p50/p99 in ms; Sluice on {device})\n")
print("| point | Sluice req/s | p50 | p99 | errors | HAProxy req/s | p50 | p99 | errors | Sluice/HAProxy | kernel router req/s | p50 | p99 | direct req/s | p50 | p99 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, p in tp:
    base = name[: -len("sluice")]
    s, h, rt, di = (get(base + t) for t in ("sluice", "haproxy", "router", "direct"))
    ratio = s["rps"] / h["rps"] if h and h["rps"] else NAN
    print(f"| {label(p[2], p[3])} | {cell(s)} | {cell(h)} | {ratio:.2f} | {cell(rt, False)} | {cell(di, False)} |")
    for t, r in (("sluice", s), ("haproxy", h), ("router", rt), ("direct", di)):
        if r is not None: describe(base + t, t, r)

print(f"\n### Tail latency (p99.9 / max, ms)\n")
print("| point | Sluice | HAProxy | kernel router | direct |")
print("|---|---|---|---|---|")
for name, p in tp:
    base = name[: -len("sluice")]
    cols = []
    for t in ("sluice", "haproxy", "router", "direct"):
        r = get(base + t)
        cols.append("–" if r is None else f"{r['p999']:.2f} / {r['max']:.2f}")
    print(f"| {label(p[2], p[3])} | {' | '.join(cols)} |")

print(f"\n### Where the CPUs went (busy % of client CPU / proxy CPU during each run)\n")
print("| point | Sluice | HAProxy (its own share) | kernel router | direct | bytes/response | TCP retrans S/H/R/D | proxy CPU ms per MB S/H |")
print("|---|---|---|---|---|---|---|---|")
for name, p in tp:
    base = name[: -len("sluice")]
    cols, rts = [], []
    for t in ("sluice", "haproxy", "router", "direct"):
        if base + t not in res:
            cols.append("–"); rts.append("–"); continue
        c0, c1, own = cpu(base + t)
        cols.append(f"{c0:.0f}% / {c1:.0f}%" + (f" ({own:.0f}%)" if t == "haproxy" else ""))
        rts.append(f"{loss(base + t)[0]:,}")
    s = get(base + "sluice")
    bpr = s["bytes"] / s["req"] if s["req"] else 0
    per_mb = " / ".join(f"{own_ms_per_mb(base + t, get(base + t)):.2f}" for t in ("sluice", "haproxy"))
    print(f"| {label(p[2], p[3])} | {' | '.join(cols)} | {bpr:,.0f} | {' / '.join(rts)} | {per_mb} |")

cost = [l.split() for l in open(f"{tmp}/cost")]
if cost:
    print("\n### wrk -c 64, small responses, with N idle connections held open\n")
    print("| idle N asked | Sluice req/s | p50 | p99 | HAProxy req/s | p50 | p99 | ratio | idle opened S/H |")
    print("|---|---|---|---|---|---|---|---|---|")
    byn = {}
    for c in cost:
        byn.setdefault(c[2], {})[c[1]] = c
    for n, d in byn.items():
        s, h = res[d["sluice"][0]][1], res[d["haproxy"][0]][1]
        ratio = s["rps"] / h["rps"] if h["rps"] else NAN
        op = lambda c: f"{c[4]}" + (f" ({c[6]} failed)" if c[6] != "0" else "")
        print(f"| {n} | {cell(s, False)} | {cell(h, False)} | {ratio:.2f} | {op(d['sluice'])} / {op(d['haproxy'])} |")
        describe(d["sluice"][0], "sluice", s)
        describe(d["haproxy"][0], "haproxy", h)

def mem_rows(rows, gauge):
    print("| proxy, buffers | N asked | RSS before | RSS after | per connection | opened (failed) |" + (" Sluice l7_client_conns |" if gauge else ""))
    print("|---|---|---|---|---|---|" + ("---|" if gauge else ""))
    for v, n, r0, r1, _, opened, _, failed, *g in rows:
        per = (int(r1) - int(r0)) * 1024 / int(opened) if int(opened) else NAN
        extra = f" {g[1] if len(g) > 1 else ''} |" if gauge else ""
        print(f"| {v} | {n} | {int(r0)/1024:.1f} MiB | {int(r1)/1024:.1f} MiB | {per/1024:.1f} KiB | {opened} ({failed}) |" + extra)

mem = [l.split() for l in open(f"{tmp}/mem")]
if mem:
    print("\n### Memory per idle keep-alive connection (VmRSS delta / N)\n")
    mem_rows(mem, True)
    mem2 = [l.split() for l in open(f"{tmp}/mem2")]
    if mem2:
        print("\nThe same, a second wave on the same process after the first closed (memory used and freed before):\n")
        mem_rows(mem2, False)

print("\n### Errors and Sluice counters\n")
print("\n".join(notes) if notes else "none: no socket error, no non-2xx response, no Sluice error counter moved")
PY
