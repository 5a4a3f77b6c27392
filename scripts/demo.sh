#!/usr/bin/env bash
# Demo: install what is needed, build Sluice, and run it as a one-arm load
# balancer between network namespaces, with no NIC and no hugepages:
#
#   client 10.30.0.2, 10.40.0.2 ──┐
#   sluice (DPDK, net_af_xdp) ────┤ bridge ── web-1/2/3  10.30.0.11-13:80 (L4)
#                                 │                      10.40.0.11-13:8080 (L7)
#                                 └────────── api-1/2    10.40.0.21-22:8080 (L7)
#
# Part 1, L4 (dpdk-config/l4-nat.toml): Sluice answers ARP and ping for its
# address and the VIP 10.30.0.100, and spreads the client's TCP connections
# over the web backends with full NAT (Maglev hashing).
# Part 2, L7 (dpdk-config/l7-http.toml): Sluice terminates the client's TCP
# connections to 10.40.0.100:80 in its userspace TCP stack and routes each
# HTTP request by host, path and header to the "web" or "api" cluster; one
# kept-alive client connection is spread over backends, and a sticky cookie
# pins a client to one backend.
# Every backend answers with its own name. Sluice's port is DPDK's AF_XDP
# driver on its veth (copy mode): it attaches an XDP program to l0 while it
# runs (removed on exit) and libxdp prints a few lines about bpffs and its
# dispatcher as it does; they are expected (docs/CONFIG.md, "net_af_xdp").
# Everything the demo creates is removed on exit. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked

P=sldemo
NS=("$P-sw" "$P-client" "$P-lb" "$P-b1" "$P-b2" "$P-b3" "$P-a1" "$P-a2")
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$TMP" /var/run/dpdk/sluice-l4-nat /var/run/dpdk/sluice-l7-http
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
attach "$P-client" c0 sw-c0 10.30.0.2/24 10.40.0.2/24
attach "$P-lb" l0 sw-l0
ip netns exec "$P-lb" sysctl -qw net.ipv6.conf.l0.disable_ipv6=1
# A tiny HTTP backend that names itself, the path it was asked for and the
# client address it sees (X-Forwarded-For when a proxy set it).
BACKEND='
import http.server, sys
name, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        xff = self.headers.get("X-Forwarded-For")
        seen = f"X-Forwarded-For {xff}" if xff else f"client {self.client_address[0]}"
        body = f"{name}: {self.path} ({seen})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
'
for i in 1 2 3; do
  attach "$P-b$i" eth0 sw-b$i "10.30.0.1$i/24" "10.40.0.1$i/24"
  ip netns exec "$P-b$i" python3 -c "$BACKEND" "web-$i" 80 2>/dev/null &
  PIDS+=($!)
  ip netns exec "$P-b$i" python3 -c "$BACKEND" "web-$i" 8080 2>/dev/null &
  PIDS+=($!)
done
for i in 1 2; do
  attach "$P-a$i" eth0 sw-a$i "10.40.0.2$i/24"
  ip netns exec "$P-a$i" python3 -c "$BACKEND" "api-$i" 8080 2>/dev/null &
  PIDS+=($!)
done

echo "== part 1, L4: sluice in namespace $P-lb on net_af_xdp(l0): dpdk-config/l4-nat.toml"
ip netns exec "$P-lb" target/release/sluice run --config dpdk-config/l4-nat.toml >"$TMP/sluice.log" 2>&1 &
SLUICE=$!
PIDS+=($SLUICE)
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
kill -TERM "$SLUICE"; wait "$SLUICE" 2>/dev/null || true

echo
echo "== part 2, L7: sluice with dpdk-config/l7-http.toml (VIP 10.40.0.100:80)"
ip netns exec "$P-lb" target/release/sluice run --config dpdk-config/l7-http.toml >"$TMP/sluice-l7.log" 2>&1 &
SLUICE=$!
PIDS+=($SLUICE)
for _ in $(seq 100); do
  ip netns exec "$P-client" curl -s --max-time 1 -o /dev/null http://10.40.0.100/ && break
  sleep 0.2
done
demo() { # DESCRIPTION CURL-ARGS...
  echo "-- $1"; shift
  ip netns exec "$P-client" curl -s --max-time 5 "$@" || echo "request failed"
}
demo "path /shop/cart: no route matches, the default cluster (web) answers" http://10.40.0.100/shop/cart
demo "host api.example.com: the api cluster" -H "Host: api.example.com" http://10.40.0.100/v1/orders
demo "path prefix /api: the api cluster, prefix rewritten (/api/users -> /users)" http://10.40.0.100/api/users
demo "header X-Canary: 1: the api cluster (response header added)" -i -H "X-Canary: 1" http://10.40.0.100/checkout
demo "six requests on ONE kept-alive connection, balanced per request" \
  -w "  (TCP connections opened by curl: %{num_connects})\n" http://10.40.0.100/{1,2,3,4,5,6}
JAR="$TMP/cookies"
echo "-- sticky sessions: the first answer sets a cookie; four more requests with it"
for _ in 1 2 3 4 5; do
  ip netns exec "$P-client" curl -s --max-time 5 -b "$JAR" -c "$JAR" http://10.40.0.100/cart
done
grep SLUICE_WEB "$JAR" | awk '{print "   cookie " $6 "=" $7}'
echo "== sluice L7 counters"
ip netns exec "$P-lb" target/release/sluice stats --config dpdk-config/l7-http.toml \
  | grep -E '^sluice_(l7_(requests|responses_2xx|upstream_connects|upstream_reused|accepted)_total|backend_up)'
echo "== sluice log (part 2)"
cat "$TMP/sluice-l7.log"
