#!/usr/bin/env bash
# Demo: install what is needed, build Sluice, and run it as a one-arm load
# balancer between network namespaces, with no NIC and no hugepages:
#
#   client 10.30.0.2 ──┐
#   sluice 10.30.0.1 ──┤ bridge ── backends web-1/2/3 (10.30.0.11-13, HTTP)
#   VIP 10.30.0.100:80 ┘
#
# Sluice runs on one end of a veth pair through DPDK's net_af_packet
# driver, answers ARP and ping for its address and the VIP, and spreads the
# client's HTTP requests over the backends with full NAT (Maglev hashing).
# The demo prints which backend answered each request, then Sluice's
# per-backend counters. Everything it creates is removed on exit. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked

P=sldemo
NS=("$P-sw" "$P-client" "$P-lb" "$P-b1" "$P-b2" "$P-b3")
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$TMP" /var/run/dpdk/sluice-l4-nat
}
trap cleanup EXIT INT TERM
for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done

ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
attach() { # NS IFNAME PEER [ADDR...]
  local ns=$1 ifn=$2 peer=$3; shift 3
  ip netns add "$ns"
  ip link add "$ifn" netns "$ns" type veth peer "$peer" netns "$P-sw"
  ip -n "$P-sw" link set "$peer" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$ifn" up
  # Kernel TCP must not hand DPDK partial checksums (offload off).
  ip netns exec "$ns" ethtool -K "$ifn" tx off >/dev/null
  for a in "$@"; do ip -n "$ns" addr add "$a" dev "$ifn"; done
}
attach "$P-client" c0 sw-c0 10.30.0.2/24
attach "$P-lb" l0 sw-l0
ip netns exec "$P-lb" sysctl -qw net.ipv6.conf.l0.disable_ipv6=1
for i in 1 2 3; do
  attach "$P-b$i" eth0 sw-b$i "10.30.0.1$i/24"
  # A tiny HTTP backend that names itself and the client address it sees.
  ip netns exec "$P-b$i" python3 -c '
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"{name} (saw client {self.client_address[0]})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
' "web-$i" &
  PIDS+=($!)
done

echo "== starting sluice in namespace $P-lb on net_af_packet(l0): dpdk-config/l4-nat.toml"
ip netns exec "$P-lb" target/release/sluice run --config dpdk-config/l4-nat.toml >"$TMP/sluice.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  ip netns exec "$P-client" ping -c1 -W1 10.30.0.1 >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== client: ping Sluice (10.30.0.1) and the VIP (10.30.0.100)"
ip netns exec "$P-client" ping -c 2 -i 0.2 10.30.0.1 | tail -2
ip netns exec "$P-client" ping -c 2 -i 0.2 10.30.0.100 | tail -2
echo "== client: 30 HTTP requests to http://10.30.0.100/ (a new connection each)"
for _ in $(seq 30); do
  ip netns exec "$P-client" curl -s --max-time 3 http://10.30.0.100/ || echo "request failed"
done | sort | uniq -c
echo "== client: 5 requests over one kept-alive connection (one backend)"
ip netns exec "$P-client" curl -s --max-time 5 http://10.30.0.100/{a,b,c,d,e}
echo "== sluice: per-backend and per-service counters (sluice stats)"
ip netns exec "$P-lb" target/release/sluice stats --config dpdk-config/l4-nat.toml \
  | grep -E '^sluice_(backend|service)_(connections|active)' 
echo "== sluice log"
cat "$TMP/sluice.log"
