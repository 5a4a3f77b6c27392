#!/usr/bin/env bash
# Demo: install what is needed, build Sluice, put it on a veth pair into a
# client network namespace, and show the client's kernel reaching Sluice's
# addresses (ARP, ping, IPv6 neighbor discovery), then Sluice's counters.
# Everything it creates is removed on exit. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked

CLIENT=sluice-demo-client
LB=sluice-demo-lb
TMP=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  ip netns del "$CLIENT" 2>/dev/null || true
  ip netns del "$LB" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
cleanup 2>/dev/null || true
TMP=$(mktemp -d)

ip netns add "$CLIENT"
ip netns add "$LB"
ip link add c0 netns "$CLIENT" type veth peer l0 netns "$LB"
for ns in "$CLIENT" "$LB"; do ip -n "$ns" link set lo up; done
ip -n "$CLIENT" link set c0 up
ip -n "$LB" link set l0 up
ip netns exec "$CLIENT" ethtool -K c0 tx off >/dev/null
ip netns exec "$LB" ethtool -K l0 tx off >/dev/null
ip netns exec "$LB" sysctl -qw net.ipv6.conf.l0.disable_ipv6=1
ip -n "$CLIENT" addr add 10.99.0.2/24 dev c0
ip -n "$CLIENT" addr add fd00:99::2/64 dev c0 nodad

echo "== starting sluice in namespace $LB on net_af_packet(l0)"
ip netns exec "$LB" target/release/sluice run --config dpdk-config/demo-veth.toml \
  >"$TMP/sluice.log" 2>&1 &
PID=$!
for _ in $(seq 50); do
  ip netns exec "$CLIENT" ping -c1 -W1 10.99.0.1 >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== client: arping 10.99.0.1"
ip netns exec "$CLIENT" arping -c 2 -I c0 10.99.0.1
echo "== client: ping 10.99.0.1"
ip netns exec "$CLIENT" ping -c 3 -i 0.2 10.99.0.1
echo "== client: ping fd00:99::1"
ip netns exec "$CLIENT" ping -6 -c 3 -i 0.2 fd00:99::1
echo "== client: neighbor table"
ip -n "$CLIENT" neigh show dev c0
echo "== sluice counters (sluice stats)"
ip netns exec "$LB" target/release/sluice stats --config dpdk-config/demo-veth.toml | grep -v '^#' | grep -v ' 0$'
echo "== sluice log"
cat "$TMP/sluice.log"
