# Shared by the L7 benchmarks (benches/http.sh, benches/tls.sh): the
# two-leg namespace topology, the three nginx backends, and the helpers
# that measure a run. Sourced, not run. The sourcing script sets first:
#
#   P           namespace prefix ($P-sw, $P-client, ...)
#   TMP         its scratch directory (backends' files and configs go there)
#   SLUICE_CFG  (before sluice_stats) the running Sluice's config
#
# and may set (defaults here): PROXY_CPU (1), the CPU of Sluice's worker
# and of HAProxy; CLIENT_CPU (0), that of the clients, the backends and
# Sluice's main lcore; BACKLOG (10000), net.core.netdev_max_backlog for
# the run; MBUFS (8191), Sluice's mbufs per worker; RX_DESC (2048), its
# descriptors per rx queue; BURST (32), its packets per burst; DEVICE (af_xdp, or
# af_packet with AFP_ARGS, default ",framecnt=4096"), Sluice's ports.
#
# and calls l7_cleanup from its EXIT trap (after stopping what it started
# itself). Layout (docs/BENCHMARKS.md section 4):
#
#          client leg: bridge br0 (10.50.1.0/24)   server leg: bridge br1 (10.50.2.0/24)
#   client c0 10.50.1.2 ─┐                       ┌─ c1 10.50.2.2 client (direct runs)
#   Sluice l0 (af_xdp) ──┤ VIP 10.50.1.100       ├── l1 (af_xdp) Sluice 10.50.2.1
#   HAProxy h0 10.50.1.3 ┤                       ├── h1 10.50.2.3 HAProxy
#   router r0 10.50.1.4 ─┘                       ├── r1 10.50.2.4 router (ip_forward)
#                                                └── be1..be3 10.50.2.11-13 (and
#                                                    10.50.3.11-13 via the router):
#                                                    one nginx each, :8080

PROXY_CPU=${PROXY_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BACKLOG=${BACKLOG:-10000}
MBUFS=${MBUFS:-8191}
RX_DESC=${RX_DESC:-2048}
BURST=${BURST:-32}
DEVICE=${DEVICE:-af_xdp}
AFP_ARGS=${AFP_ARGS-,framecnt=4096}
case "$DEVICE" in
  af_xdp) vdev() { echo "net_af_xdp$1,iface=$2"; } ;;
  af_packet) vdev() { echo "net_af_packet$1,iface=$2$AFP_ARGS"; } ;;
  *) echo "$(basename "$0"): DEVICE must be af_xdp or af_packet, not $DEVICE" >&2; exit 2 ;;
esac
ulimit -n "$(ulimit -Hn)"
# HAProxy needs two descriptors per connection (client and server side):
# its maxconn follows from the descriptor limit (20000 on the machine of
# docs/BENCHMARKS.md).
HAP_MAXCONN=$((($(ulimit -n) - 200) / 2))

NS=(sw client lb rt be1 be2 be3)
BACKENDS=(10.50.2.11 10.50.2.12 10.50.2.13)
ROUTED=(10.50.3.11 10.50.3.12 10.50.3.13)
PIDS=()
SLUICE=""
OLD_BACKLOG=$(cat /proc/sys/net/core/netdev_max_backlog)

ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

# Restores the backlog, ends the backends (PIDS) and removes the namespaces.
l7_cleanup() {
  local pid n
  if [ "$(cat /proc/sys/net/core/netdev_max_backlog)" = "$BACKLOG" ] && [ "$BACKLOG" != "$OLD_BACKLOG" ]; then
    echo "$OLD_BACKLOG" >/proc/sys/net/core/netdev_max_backlog
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${NS[@]}"; do ip netns del "$P-$n" 2>/dev/null || true; done
}

# veth queues what it sends on the sending CPU's backlog, 1000 packets by
# default: one burst of 1000 connections overflows it (for every target).
# Raised for the run, restored by l7_cleanup (a machine-wide setting).
l7_raise_backlog() {
  if [ "$BACKLOG" -gt "$OLD_BACKLOG" ]; then echo "$BACKLOG" >/proc/sys/net/core/netdev_max_backlog; fi
}

# --- topology: two bridges (legs) in one switch namespace
l7_topology() {
  local n br i
  for n in "${NS[@]}"; do ip netns del "$P-$n" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
  for br in br0 br1; do
    ip -n "$P-sw" link add "$br" type bridge
    ip -n "$P-sw" link set "$br" up
  done
  attach client c0 br0 10.50.1.2/24
  attach client c1 br1 10.50.2.2/24
  attach lb l0 br0
  attach lb l1 br1
  attach lb h0 br0 10.50.1.3/24
  attach lb h1 br1 10.50.2.3/24
  attach rt r0 br0 10.50.1.4/24
  attach rt r1 br1 10.50.2.4/24
  for i in 1 2 3; do
    attach "be$i" eth0 br1 "10.50.2.1$i/24" "10.50.3.1$i/24"
    # Replies to the client leg go through the router; the proxies' upstream
    # connections come from their own server-leg addresses, on link.
    ip -n "$P-be$i" route add 10.50.1.0/24 via 10.50.2.4
  done
  ip -n "$P-client" route add 10.50.3.0/24 via 10.50.1.4
  ip -n "$P-rt" route add 10.50.3.0/24 dev r1
  ns rt sysctl -qw net.ipv4.ip_forward=1
  # l0 and l1 belong to Sluice: no kernel addresses, no IPv6, and the lb
  # kernel must not answer ARP on them for h0's and h1's addresses.
  ns lb sysctl -qw net.ipv6.conf.l0.disable_ipv6=1 net.ipv6.conf.l1.disable_ipv6=1
  ns lb sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  for n in client lb rt be1 be2 be3; do
    ns "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000" \
      net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
  done
}
attach() { # NS IFNAME BRIDGE [ADDR...]
  local n=$1 ifn=$2 br=$3 a; shift 3
  local peer="s-${n:0:6}-$ifn"
  ip link add "$ifn" netns "$P-$n" type veth peer "${peer:0:15}" netns "$P-sw"
  ip -n "$P-sw" link set "${peer:0:15}" master "$br" up
  ip -n "$P-$n" link set "$ifn" up
  # DPDK must not get partial checksums; every endpoint alike.
  ns "$n" ethtool -K "$ifn" tx off >/dev/null
  for a in "$@"; do ip -n "$P-$n" addr add "$a" dev "$ifn"; done
}

# --- backends: three nginx (one worker process each) on the client CPU,
# serving /small (13 bytes), /64k.bin and /1m.bin
l7_backends() {
  local i
  mkdir -p "$TMP/www"
  head -c 65536 /dev/urandom >"$TMP/www/64k.bin"
  head -c 1048576 /dev/urandom >"$TMP/www/1m.bin"
  chmod a+rx "$TMP" "$TMP/www" && chmod a+r "$TMP/www/"*.bin  # nginx workers run as nobody
  for i in 1 2 3; do
    mkdir -p "$TMP/nginx$i"
    cat >"$TMP/nginx$i/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $TMP/nginx$i/nginx.pid;
error_log $TMP/nginx$i/error.log warn;
events { worker_connections $(($(ulimit -n) - 100)); multi_accept on; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx$i/body;
  proxy_temp_path $TMP/nginx$i/proxy;
  fastcgi_temp_path $TMP/nginx$i/fastcgi;
  uwsgi_temp_path $TMP/nginx$i/uwsgi;
  scgi_temp_path $TMP/nginx$i/scgi;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 900s;
  server {
    listen 8080 backlog=65535;
    root $TMP/www;
    location = /small { default_type text/plain; return 200 "hello, world\n"; }
  }
}
NGX
    ip netns exec "$P-be$i" taskset -c "$CLIENT_CPU" nginx -p "$TMP/nginx$i" -c "$TMP/nginx$i/nginx.conf" &
    PIDS+=($!)
  done
}

wait_http() { # NS URL [CURL_OPTION...]
  local n=$1 url=$2 i; shift 2
  for i in $(seq 150); do
    ns "$n" curl -s -o /dev/null --max-time 1 "$@" "$url" && return 0
    sleep 0.2
  done
  echo "$(basename "$0"): $url does not answer from $n" >&2
  return 1
}
sluice_stats() { # FILE
  ns lb "$SLUICE_BIN" stats --config "$SLUICE_CFG" --json >"$1" 2>/dev/null || echo '{}' >"$1"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# "on-CPU ns, run-queue wait ns" of Sluice PID's worker thread (the first
# rte-worker-*), from /proc/PID/task/TID/schedstat; "0 0" without one.
# A busy-polling worker is on its CPU whenever it is not waiting behind
# another task: the wait is the time other load took from it.
worker_schedstat() {
  local t
  for t in /proc/"$1"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in rte-worker-*)
      awk '{print $1, $2}' "$t/schedstat"; return ;;
    esac
  done
  echo "0 0"
}
cpu_ticks() { # -> "busy total" of the client CPU, then of the proxy CPU
  awk -v c="cpu$CLIENT_CPU" -v p="cpu$PROXY_CPU" '$1 == c || $1 == p {
    t = 0; for (i = 2; i <= NF; i++) t += $i; v[$1] = (t - $5 - $6) " " t
  } END { print v[c], v[p] }' /proc/stat
}
# user + system ticks of the processes given (0 without any)
proc_ticks() {
  local pid t=0 x
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    x=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    t=$((t + x))
  done
  echo "$t"
}
# -> "retransmitted segments (every namespace's kernel) softnet_drops"
kernel_losses() {
  local n r=0 x
  for n in client lb rt be1 be2 be3; do
    x=$(ns "$n" awk '/^Tcp: [0-9]/ {print $13}' /proc/net/snmp)
    r=$((r + x))
  done
  python3 -c 'import sys; print(sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat")))' |
    { read -r d; echo "$r $d"; }
}

# Sluice's config up to its listeners: one worker on lcore PROXY_CPU, the
# main lcore on CLIENT_CPU, one port per leg, the three backends.
sluice_base_config() { # FILE_PREFIX ADMIN_PORT
  cat <<EOF2
[eal]
# Two ports' pools: about 19 MiB per 8191 mbufs (their af_xdp UMEM).
args = ["--no-huge", "-m", "1024", "--no-pci", "--log-level=lib.eal:warning"]
main_lcore = $CLIENT_CPU
file_prefix = "$1"

[dataplane]
workers = [$PROXY_CPU]
mbufs = $MBUFS
rx_desc = $RX_DESC
burst = $BURST

[admin]
listen = "127.0.0.1:$2"

[log]
level = "info"

[[port]]
name = "p0"
vdev = "$(vdev 0 l0)"
addresses = ["10.50.1.1/24"]

[[port]]
name = "p1"
vdev = "$(vdev 1 l1)"
addresses = ["10.50.2.1/24"]

[[cluster]]
name = "web"
balance = "round-robin"
max_idle_per_backend = 4096
$(for i in 1 2 3; do printf '\n[[cluster.backend]]\naddress = "10.50.2.1%d"\nport = 8080\nname = "web-%d"\n' "$i" "$i"; done)
EOF2
}

# HAProxy with one thread, doing per request what Sluice does (the same
# proxy headers), balancing round-robin over the three backends with
# idle upstream connections kept; its frontend binds BINDS (lines).
haproxy_config() { # BINDS [GLOBAL_LINES]
  cat <<EOF2
global
  nbthread 1
  maxconn $HAP_MAXCONN
  tune.bufsize 16384
${2:-}
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
$1
  option forwardfor
  unique-id-format %{+X}o%Ts%rt%cp
  unique-id-header X-Request-Id
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy"
  default_backend web
backend web
  balance roundrobin
  server web-1 10.50.2.11:8080
  server web-2 10.50.2.12:8080
  server web-3 10.50.2.13:8080
EOF2
}
