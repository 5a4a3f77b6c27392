#!/usr/bin/env bash
# L7 (HTTP/1.1) benchmark: Sluice (one worker core) against HAProxy (one
# thread) on the same namespace topology, same nginx backends and same wrk
# client, measured in the same run (issue 4):
#
#   benches/http.sh [SECONDS]          (default 8 s per measured point)
#
#   client 10.50.0.2 ──┐
#   Sluice 10.50.0.1 ──┤  (lb namespace, af_packet on l0; VIP 10.50.0.100:80)
#   HAProxy 10.50.0.3 ─┤ bridge  (lb namespace, kernel TCP on h0; :80)
#   nginx 10.50.0.11 ──┤  (backend namespace, two addresses, one nginx,
#         10.50.0.12 ──┘   port 8080: /small 13 bytes, /64k.bin 65536 bytes)
#
# 1. Requests/s and p50/p99 (wrk --latency) at 1, 64 and 1000 connections,
#    small and 64 KiB responses, Sluice then HAProxy at each point.
# 2. Memory per idle keep-alive connection (VmRSS delta / N after N
#    connections have each had one response), N = 2000 and 10000, each
#    proxy freshly started.
# 3. Per-packet cost as connections grow: wrk -c 64 (small responses) while
#    100, then 10000, idle connections are held open.
#
# CPUs: Sluice's worker (lcore 1) and HAProxy run on CPU 1; Sluice's main
# lcore, wrk, nginx and the memory client on CPU 0. Sluice's worker polls, so
# it takes all of CPU 1 whatever the load: it is stopped (SIGSTOP) while
# HAProxy is measured; HAProxy sleeps in epoll while Sluice is measured. Kernel
# interfaces have checksum offload (and so TSO) off, as af_packet needs, so
# every endpoint sends MTU-sized segments with software checksums.
# Environment: PROXY_CPU (1), CLIENT_CPU (0), SIZES ("small 64k"), CONNS
# ("1 64 1000"), IDLE_COUNTS ("2000 10000"), COST_COUNTS ("100 10000"),
# SKIP_MEM=1, SKIP_COST=1, AFP_ARGS (extra net_af_packet devargs,
# ",framecnt=4096"; empty for the PMD's 512), BACKLOG (10000), RESULTS=DIR
# (keep wrk outputs, Sluice counters and logs there), PAUSE=SECS (keep the
# set-up up that long before measuring, to probe by hand). Run as root.
# See docs/BENCHMARKS.md section 4.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
SIZES=${SIZES:-"small 64k"}
CONNS=${CONNS:-"1 64 1000"}
IDLE_COUNTS=${IDLE_COUNTS:-"2000 10000"}
COST_COUNTS=${COST_COUNTS:-"100 10000"}
AFP_ARGS=${AFP_ARGS-,framecnt=4096}
BACKLOG=${BACKLOG:-10000}
PROXY_CPU=${PROXY_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
WARM=2

P=slhb
NS=(sw client lb be)
TMP=$(mktemp -d)
PIDS=()
SLUICE=""
HAPROXY=""
HOLDER=""
OLD_BACKLOG=$(cat /proc/sys/net/core/netdev_max_backlog)
cleanup() {
  local pid
  if [ "$(cat /proc/sys/net/core/netdev_max_backlog)" = "$BACKLOG" ] && [ "$BACKLOG" != "$OLD_BACKLOG" ]; then
    echo "$OLD_BACKLOG" >/proc/sys/net/core/netdev_max_backlog
  fi
  [ -n "$SLUICE" ] && kill -CONT "$SLUICE" 2>/dev/null
  for pid in "${PIDS[@]}" $HOLDER $SLUICE $HAPROXY; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${NS[@]}"; do ip netns del "$P-$ns" 2>/dev/null || true; done
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS"
    cp "$TMP"/*.wrk "$TMP"/*.json "$TMP"/*.log "$TMP"/*.toml "$TMP"/*.cpu "$TMP"/*.loss \
      "$TMP"/*.l0 "$TMP"/haproxy.cfg "$TMP"/points "$TMP"/cost "$TMP"/mem "$RESULTS"/ 2>/dev/null || true
    cp "$TMP/nginx/error.log" "$RESULTS/nginx-error.log" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  rm -rf /var/run/dpdk/sluice-httpbench
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"
# HAProxy needs two descriptors per connection (client and server side):
# its maxconn, and the most idle connections it is asked to hold, follow
# from the descriptor limit (20000 on the machine of docs/BENCHMARKS.md).
HAP_MAXCONN=$((($(ulimit -n) - 200) / 2))
HAP_IDLE_CAP=$((HAP_MAXCONN - 400))

ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

cargo build --release --locked -q
# veth queues what it sends on the sending CPU's backlog, 1000 packets by
# default: one burst of 1000 connections overflows it (for both proxies).
# Raised for the run, restored on exit (a machine-wide setting).
if [ "$BACKLOG" -gt "$OLD_BACKLOG" ]; then echo "$BACKLOG" >/proc/sys/net/core/netdev_max_backlog; fi
SLUICE_BIN=$PWD/target/release/sluice

# --- topology (as scripts/demo.sh)
for n in "${NS[@]}"; do ip netns del "$P-$n" 2>/dev/null || true; done
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
attach() { # NS IFNAME PEER [ADDR...]
  local n=$1 ifn=$2 peer=$3; shift 3
  ip netns list | grep -qw "$P-$n" || ip netns add "$P-$n"
  ip link add "$ifn" netns "$P-$n" type veth peer "$peer" netns "$P-sw"
  ip -n "$P-sw" link set "$peer" master br0 up
  ip -n "$P-$n" link set lo up
  ip -n "$P-$n" link set "$ifn" up
  # af_packet must not get partial checksums; every endpoint alike.
  ns "$n" ethtool -K "$ifn" tx off >/dev/null
  for a in "$@"; do ip -n "$P-$n" addr add "$a" dev "$ifn"; done
}
attach client c0 sw-c0 10.50.0.2/24
attach lb l0 sw-l0
attach lb h0 sw-h0 10.50.0.3/24
attach be eth0 sw-be 10.50.0.11/24 10.50.0.12/24
ns lb sysctl -qw net.ipv6.conf.l0.disable_ipv6=1
# l0 belongs to Sluice: the lb kernel must not answer ARP on it for h0's
# address.
ns lb sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
for n in client lb be; do
  ns "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000" \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
done

# --- backends: one nginx (one worker process) on CPU 0
mkdir -p "$TMP/www" "$TMP/nginx/logs"
head -c 65536 /dev/urandom >"$TMP/www/64k.bin"
chmod a+rx "$TMP" "$TMP/www" && chmod a+r "$TMP/www/64k.bin"  # nginx workers run as nobody
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections $(($(ulimit -n) - 100)); multi_accept on; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 900s;
  server {
    listen 8080 backlog=65535;
    root $TMP/www;
    location = /small { default_type text/plain; return 200 "hello, world\n"; }
  }
}
EOF
ip netns exec "$P-be" taskset -c "$CLIENT_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)

# --- HAProxy: one thread on CPU 1, the same proxy headers Sluice adds
cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $HAP_MAXCONN
  tune.bufsize 16384
defaults
  mode http
  timeout connect 5s
  timeout client 900s
  timeout server 900s
  timeout http-request 10s
  timeout http-keep-alive 900s
  option http-keep-alive
  http-reuse always
  maxconn $HAP_MAXCONN
frontend fe
  bind 10.50.0.3:80 backlog 65535
  option forwardfor
  unique-id-format %{+X}o%Ts%rt%cp
  unique-id-header X-Request-Id
  http-request set-header X-Forwarded-Proto http
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy"
  default_backend web
backend web
  balance roundrobin
  server web-1 10.50.0.11:8080
  server web-2 10.50.0.12:8080
EOF

# --- Sluice: one worker on lcore 1, main lcore 0
sluice_config() { # BUFFER_BYTES
  cat <<EOF
[eal]
args = ["--no-huge", "-m", "1024", "--no-pci", "--log-level=lib.eal:warning"]
main_lcore = $CLIENT_CPU
file_prefix = "sluice-httpbench"

[dataplane]
workers = [$PROXY_CPU]

[admin]
listen = "127.0.0.1:9197"

[log]
level = "info"

[[port]]
name = "p0"
vdev = "net_af_packet0,iface=l0$AFP_ARGS"
addresses = ["10.50.0.1/24"]

[[cluster]]
name = "web"
balance = "round-robin"
max_idle_per_backend = 4096

[[cluster.backend]]
address = "10.50.0.11"
port = 8080
name = "web-1"

[[cluster.backend]]
address = "10.50.0.12"
port = 8080
name = "web-2"

[[listener]]
name = "http"
address = "10.50.0.100"
port = 80
ingress = "p0"
snat = ["10.50.0.1"]
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
EOF
}
sluice_config 65536 >"$TMP/sluice-65536.toml"
sluice_config 16384 >"$TMP/sluice-16384.toml"
"$SLUICE_BIN" check --config "$TMP/sluice-65536.toml" >/dev/null
SLUICE_CFG=$TMP/sluice-65536.toml

wait_http() { # URL
  local i
  for i in $(seq 150); do
    ns client curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.2
  done
  echo "http.sh: $1 does not answer" >&2
  return 1
}
start_sluice() { # CONFIG
  SLUICE_CFG=$1
  ip netns exec "$P-lb" "$SLUICE_BIN" run --config "$SLUICE_CFG" >>"$TMP/sluice.log" 2>&1 &
  SLUICE=$!
  wait_http http://10.50.0.100/small
}
stop_sluice() {
  kill -TERM "$SLUICE" 2>/dev/null || true
  wait "$SLUICE" 2>/dev/null || true
  SLUICE=""
}
start_haproxy() {
  ip netns exec "$P-lb" taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
  HAPROXY=$!
  wait_http http://10.50.0.3/small
}
stop_haproxy() {
  kill -TERM "$HAPROXY" 2>/dev/null || true
  wait "$HAPROXY" 2>/dev/null || true
  HAPROXY=""
}
sluice_stats() { # FILE
  ns lb "$SLUICE_BIN" stats --config "$SLUICE_CFG" --json >"$1" 2>/dev/null || echo '{}' >"$1"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { # -> "busy total" of the client CPU, then of the proxy CPU
  awk -v c="cpu$CLIENT_CPU" -v p="cpu$PROXY_CPU" '$1 == c || $1 == p {
    t = 0; for (i = 2; i <= NF; i++) t += $i; v[$1] = (t - $5 - $6) " " t
  } END { print v[c], v[p] }' /proc/stat
}
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# -> "retransmitted segments (client + backend + lb kernels) softnet_drops"
kernel_losses() {
  local n r=0 x
  for n in client be lb; do
    x=$(ns "$n" awk '/^Tcp: [0-9]/ {print $13}' /proc/net/snmp)
    r=$((r + x))
  done
  python3 -c 'import sys; print(sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat")))' |
    { read -r d; echo "$r $d"; }
}

url_of() { # PROXY SIZE
  local host path
  host=$([ "$1" = sluice ] && echo 10.50.0.100 || echo 10.50.0.3)
  path=$([ "$2" = small ] && echo /small || echo /64k.bin)
  echo "http://$host$path"
}
# One measured wrk run; writes $TMP/NAME.{wrk,cpu} (and Sluice counters).
measure() { # NAME PROXY SIZE CONNS SECS
  local name=$1 proxy=$2 url t pid c0 c1 p0=0 p1=0
  url=$(url_of "$2" "$3")
  t=$(($4 < 2 ? 1 : 2))
  pid=$([ "$proxy" = sluice ] && echo "$SLUICE" || echo "$HAPROXY")
  # Sluice's worker polls: stopped while HAProxy runs on the same CPU.
  [ "$proxy" = haproxy ] && kill -STOP "$SLUICE"
  # Warm-up: upstream connections opened, caches and pools filled.
  ns client taskset -c "$CLIENT_CPU" wrk -t"$t" -c"$4" -d"${WARM}s" --timeout 10s "$url" >/dev/null 2>&1 || true
  [ "$proxy" = sluice ] && sluice_stats "$TMP/$name.before.json"
  l0a=$(ns lb cat /sys/class/net/l0/statistics/rx_packets)
  c0=$(cpu_ticks); p0=$(proc_ticks "$pid"); k0=$(kernel_losses)
  ns client taskset -c "$CLIENT_CPU" wrk -t"$t" -c"$4" -d"${5}s" --timeout 10s --latency "$url" \
    >"$TMP/$name.wrk" 2>&1 || echo "wrk failed: $?" >>"$TMP/$name.wrk"
  c1=$(cpu_ticks); p1=$(proc_ticks "$pid"); k1=$(kernel_losses)
  [ "$proxy" = sluice ] && sluice_stats "$TMP/$name.after.json"
  echo "$l0a $(ns lb cat /sys/class/net/l0/statistics/rx_packets)" >"$TMP/$name.l0"
  echo "$c0 $c1 $p0 $p1" >"$TMP/$name.cpu"
  echo "$k0 $k1" >"$TMP/$name.loss"
  [ "$proxy" = haproxy ] && kill -CONT "$SLUICE"
  echo "$name $proxy $3 $4" >>"$TMP/points"
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per point (after ${WARM} s warm-up)"
wait_http http://10.50.0.11:8080/small
start_haproxy
start_sluice "$TMP/sluice-65536.toml"
if [ -n "${PAUSE:-}" ]; then # keep everything up for manual probing
  echo "paused $PAUSE s: namespaces $P-*, Sluice config $SLUICE_CFG" >&2
  sleep "$PAUSE"
fi

# --- 1. throughput and latency
: >"$TMP/points"
for size in $SIZES; do
  for c in $CONNS; do
    for proxy in sluice haproxy; do
      echo "-- $proxy $size c=$c" >&2
      measure "tp-$size-$c-$proxy" "$proxy" "$size" "$c" "$SECS"
    done
  done
done

# --- 3. per-packet cost with many idle connections held open
: >"$TMP/cost"
if [ -z "${SKIP_COST:-}" ]; then
  for n in $COST_COUNTS; do
    for proxy in sluice haproxy; do
      echo "-- $proxy c=64 with $n idle" >&2
      host=$([ "$proxy" = sluice ] && echo 10.50.0.100 || echo 10.50.0.3)
      m=$n
      [ "$proxy" = haproxy ] && [ "$m" -gt "$HAP_IDLE_CAP" ] && m=$HAP_IDLE_CAP
      rm -f "$TMP/ready"
      ip netns exec "$P-client" taskset -c "$CLIENT_CPU" python3 benches/http_idle.py "$host" 80 "$m" "$TMP/ready" &
      HOLDER=$!
      for _ in $(seq 600); do [ -s "$TMP/ready" ] && break; sleep 0.2; done
      opened=$(cat "$TMP/ready" 2>/dev/null || echo "opened 0 failed $m")
      [ "$proxy" = sluice ] && sluice_stats "$TMP/cost-$n-gauge.json"
      measure "cost-$n-$proxy" "$proxy" small 64 "$SECS"
      echo "cost-$n-$proxy $proxy $n $opened" >>"$TMP/cost"
      kill -TERM "$HOLDER" 2>/dev/null || true
      wait "$HOLDER" 2>/dev/null || true
      sleep 2
    done
  done
fi

# --- 2. memory per idle connection, each proxy freshly started
: >"$TMP/mem"
if [ -z "${SKIP_MEM:-}" ]; then
  for n in $IDLE_COUNTS; do
    for variant in sluice-65536 sluice-16384 haproxy-16384; do
      proxy=${variant%-*}
      echo "-- memory: $variant, $n idle" >&2
      if [ "$proxy" = sluice ]; then
        stop_sluice; start_sluice "$TMP/$variant.toml"; pid=$SLUICE; host=10.50.0.100
      else
        stop_haproxy; start_haproxy; pid=$HAPROXY; host=10.50.0.3
      fi
      # Upstream connections opened and the allocators warmed first.
      ns client curl -s -o /dev/null -o /dev/null "http://$host/small" "http://$host/small"
      sleep 1
      r0=$(rss_kib "$pid")
      m=$n
      [ "$proxy" = haproxy ] && [ "$m" -gt "$HAP_IDLE_CAP" ] && m=$HAP_IDLE_CAP
      rm -f "$TMP/ready"
      ip netns exec "$P-client" taskset -c "$CLIENT_CPU" python3 benches/http_idle.py "$host" 80 "$m" "$TMP/ready" &
      HOLDER=$!
      for _ in $(seq 600); do [ -s "$TMP/ready" ] && break; sleep 0.2; done
      sleep 2
      r1=$(rss_kib "$pid")
      gauge=""
      if [ "$proxy" = sluice ]; then
        sluice_stats "$TMP/mem.json"
        gauge=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])).get("counters",{}); print(c.get("l7_client_conns","?"))' "$TMP/mem.json")
      fi
      echo "$variant $n $r0 $r1 $(cat "$TMP/ready" 2>/dev/null || echo "opened 0 failed $m") gauge $gauge" >>"$TMP/mem"
      kill -TERM "$HOLDER" 2>/dev/null || true
      wait "$HOLDER" 2>/dev/null || true
      sleep 2
    done
  done
fi


python3 - "$TMP" "$SECS" <<'PY'
import json, os, re, sys

tmp, secs = sys.argv[1], sys.argv[2]
HZ = os.sysconf("SC_CLK_TCK")

def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x = float(m.group(1))
    return x * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]

def parse_wrk(path):
    text = open(path).read()
    r = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "req": 0, "bytes": 0,
         "sock": 0, "non2xx": 0, "failed": "wrk failed" in text}
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
    if m: r["sock"] = sum(map(int, m.groups()))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m: r["non2xx"] = int(m.group(1))
    r["bad"] = r["failed"] or r["req"] == 0 or r["sock"] > 0 or r["non2xx"] > 0
    return r

def cpu(name):
    b00, t00, b10, t10, b01, t01, b11, t11, p0, p1 = map(int, open(f"{tmp}/{name}.cpu").read().split())
    pct = lambda b, t: 100.0 * b / t if t else float("nan")
    wall = (t01 - t00) / HZ  # seconds of cpu0's clock
    return pct(b01 - b00, t01 - t00), pct(b11 - b10, t11 - t10), 100.0 * (p1 - p0) / HZ / wall if wall else float("nan")

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
    # Frames the kernel delivered to l0 that Sluice never read: af_packet
    # ring overflow (the PMD does not report it).
    try:
        l0a, l0b = map(int, open(f"{tmp}/{name}.l0").read().split())
        rx = b["ports"]["p0"]["rx_packets"] - a["ports"]["p0"]["rx_packets"]
        if (l0b - l0a) - rx > 0: d["p0.af_packet_ring_drops"] = (l0b - l0a) - rx
    except (OSError, ValueError, KeyError):
        pass
    for port, s in b.get("ports", {}).items():
        for k in ("rx_missed", "rx_errors", "tx_errors", "rx_nombuf"):
            v = s.get(k, 0) - a.get("ports", {}).get(port, {}).get(k, 0)
            if v: d[f"{port}.{k}"] = v
    return d

def cell(r):
    flag = " ⚠" if r["bad"] else ""
    return f"{r['rps']:,.0f}{flag} | {r['p50']:.2f} | {r['p99']:.2f}"

def loss(name):
    try:
        r0, d0, r1, d1 = map(int, open(f"{tmp}/{name}.loss").read().split())
        return r1 - r0, d1 - d0
    except (OSError, ValueError):
        return 0, 0

notes = []
def describe(name, proxy, r):
    parts = []
    if loss(name)[1]: parts.append(f"{loss(name)[1]} packets dropped by the kernel backlog (softnet_stat, whole machine)")
    if r["failed"]: parts.append("wrk failed")
    if r["sock"]: parts.append(f"{r['sock']} socket errors")
    if r["non2xx"]: parts.append(f"{r['non2xx']} non-2xx responses")
    if r["req"] == 0: parts.append("no request completed")
    if proxy == "sluice":
        d = sluice_delta(name)
        odd = {k: v for k, v in d.items() if k in WATCH or "." in k or (k.startswith("drop_") and k not in EXPECTED)}
        if odd: parts.append("Sluice counters: " + ", ".join(f"{k} +{v}" for k, v in sorted(odd.items())))
    if parts: notes.append(f"- {name}: " + "; ".join(parts))

points = [l.split() for l in open(f"{tmp}/points")]
res = {p[0]: (p, parse_wrk(f"{tmp}/{p[0]}.wrk")) for p in points}
print(f"\n### Throughput and latency ({secs} s per point; p50/p99 in ms)\n")
print("| point | Sluice req/s | p50 | p99 | HAProxy req/s | p50 | p99 | ratio | B/resp | client CPU busy S/H | HAProxy CPU | TCP retrans S/H |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, (p, r) in res.items():
    if p[1] != "sluice" or not name.startswith("tp-"): continue
    hname = name[: -len("sluice")] + "haproxy"
    h = res[hname][1]
    cs0, _, _ = cpu(name)
    ch0, _, hp = cpu(hname)
    ratio = r["rps"] / h["rps"] if h["rps"] else float("nan")
    bpr = r["bytes"] / r["req"] if r["req"] else 0
    print(f"| {p[2]}, {p[3]} conn | {cell(r)} | {cell(h)} | {ratio:.2f} | {bpr:,.0f} | {cs0:.0f}% / {ch0:.0f}% | {hp:.0f}% | {loss(name)[0]:,} / {loss(hname)[0]:,} |")
    describe(name, "sluice", r)
    describe(hname, "haproxy", h)

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
        ratio = s["rps"] / h["rps"] if h["rps"] else float("nan")
        op = lambda c: f"{c[4]}" + (f" ({c[6]} failed)" if c[6] != "0" else "")
        print(f"| {n} | {cell(s)} | {cell(h)} | {ratio:.2f} | {op(d['sluice'])} / {op(d['haproxy'])} |")
        describe(d["sluice"][0], "sluice", s)
        describe(d["haproxy"][0], "haproxy", h)

mem = [l.split() for l in open(f"{tmp}/mem")]
if mem:
    print("\n### Memory per idle keep-alive connection (VmRSS delta / N)\n")
    print("| proxy, buffers | N asked | RSS before | RSS after | per connection | opened (failed) | Sluice l7_client_conns |")
    print("|---|---|---|---|---|---|---|")
    for v, n, r0, r1, _, opened, _, failed, _, *g in mem:
        per = (int(r1) - int(r0)) * 1024 / int(opened) if int(opened) else float("nan")
        print(f"| {v} | {n} | {int(r0)/1024:.1f} MiB | {int(r1)/1024:.1f} MiB | {per/1024:.1f} KiB | {opened} ({failed}) | {g[0] if g else ''} |")

print("\n### Errors and Sluice counters\n")
print("\n".join(notes) if notes else "none: no socket error, no non-2xx response, no Sluice error counter moved")
PY
