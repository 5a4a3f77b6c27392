#!/usr/bin/env bash
# L4 forwarding rate of one Sluice worker over many flows, NAT and IPIP DSR,
# against dpdk-testpmd --forward-mode=macswap on the same virtual devices
# in the same run; and the rate at which one worker opens connections.
#
#   benches/l4.sh [SECONDS] [FLOWS]      (defaults: 10 s, 1048576 flows)
#
# Source: net_pcap with infinite_rx=1 replaying 60-byte TCP SYNs (64 bytes
# on the wire) of FLOWS distinct flows to the VIP 10.0.0.100:80; sink:
# net_null with no-rx=1, where the backends live. The first pass over the
# pcap opens a connection per flow (the "new connections" rate); every
# later pass finds it (the steady-state rate). infinite_rx keeps the whole
# pcap in mbufs, so the pools hold FLOWS + 32768 mbufs (-m 6144, no
# hugepages). Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
FLOWS=${2:-1048576}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" /var/run/dpdk/tp$$ /var/run/dpdk/sluice-bench /var/run/dpdk/sluice-l4bench' EXIT
MBUFS=$((FLOWS + 32768))

cargo build --release --locked -q
python3 benches/gen_pcap.py syn "$TMP/syn.pcap" "$FLOWS" >/dev/null
SRC="net_pcap0,rx_pcap=$TMP/syn.pcap,infinite_rx=1"
SINK="net_null0,no-rx=1"
EAL_MEM=(--no-huge -m 6144 --no-pci --no-shconf)

# --- reference: testpmd macswap p0 -> p1
dpdk-testpmd -l 0,1 "${EAL_MEM[@]}" --file-prefix "tp$$" --vdev "$SRC" --vdev "$SINK" -- \
  --forward-mode=macswap --total-num-mbufs="$MBUFS" --stats-period 1 --auto-start \
  >"$TMP/testpmd.log" 2>&1 &
TP=$!
sleep $((SECS + 8))
kill -INT $TP 2>/dev/null || true
wait $TP 2>/dev/null || true
TESTPMD_PPS=$(awk '/statistics for port 1/ {p1=1} /statistics for port 0/ {p1=0} p1 && /Tx-pps:/ {print $2}' "$TMP/testpmd.log" \
  | awk '$1 > 0' | tail -n +2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}')

config() { # MODE
  local snat="" i
  for i in $(seq 1 20); do snat="$snat\"10.1.0.$i\", "; done
  cat <<TOML
[eal]
args = ["--no-huge", "-m", "6144", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "sluice-l4bench"

[dataplane]
workers = [1]
mbufs = $MBUFS
mbuf_cache = 256

[conntrack]
max_flows = $((FLOWS + FLOWS / 4))
expire_budget = 64

[admin]
listen = "127.0.0.1:9198"

[[port]]
name = "p0"
vdev = "net_null1"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/24"]

[[port]]
name = "p1"
vdev = "net_null0,no-rx=1"
mac = "02:00:00:00:01:01"
addresses = [$(for i in $(seq 1 20); do printf '"10.1.0.%d/24", ' "$i"; done | sed 's/, $//')]

[[route]]
prefix = "198.18.0.0/15"
via = "10.0.0.254"
port = "p0"

[[neighbor]]
ip = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p0"

$(for i in 101 102 103; do printf '[[neighbor]]\nip = "10.1.0.%d"\nmac = "02:00:00:00:01:%02x"\nport = "p1"\n\n' "$i" "$i"; done)
[[cluster]]
name = "web"
$(for i in 101 102 103; do printf '[[cluster.backend]]\naddress = "10.1.0.%d"\n' "$i"; done)

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
mode = "$1"
cluster = "web"
ingress = "p0"
$( [ "$1" = nat ] && echo "snat = [${snat%, }]" )
TOML
}

counter() { # NAME
  target/release/sluice stats --admin 127.0.0.1:9198 --json 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["counters"]["'"$1"'"] if "'"$1"'" in d["counters"] else d["services"]["web"]["connections"])'
}

run_mode() { # MODE -> prints "pps new_per_sec"
  config "$1" >"$TMP/$1.toml"
  target/release/sluice run --config "$TMP/$1.toml" --port-device "p0=$SRC" \
    --duration $((SECS + 6)) --stats-out "$TMP/$1.json" >"$TMP/$1.log" 2>&1 &
  local pid=$! a b t0 t1 c0 c1 peak=0
  for _ in $(seq 1200); do counter tx_packets >/dev/null 2>&1 && break; sleep 0.05; done
  # New connections: sample the service's connection counter while the
  # first pass over the pcap is still opening them.
  c0=$(counter connections); t0=$(date +%s.%N)
  for _ in $(seq 40); do
    sleep 0.05
    c1=$(counter connections); t1=$(date +%s.%N)
    peak=$(python3 -c "print(max($peak, ($c1-$c0)/($t1-$t0)))")
    c0=$c1; t0=$t1
    [ "$c1" -ge "$FLOWS" ] && break
  done
  sleep 1
  a=$(counter tx_packets); sleep "$SECS"; b=$(counter tx_packets)
  wait $pid
  echo "$(( (b - a) / SECS )) ${peak%.*}"
}

read -r NAT_PPS NAT_NEW < <(run_mode nat)
read -r DSR_PPS DSR_NEW < <(run_mode ipip)

python3 - "$TESTPMD_PPS" "$NAT_PPS" "$DSR_PPS" "$NAT_NEW" "$DSR_NEW" "$FLOWS" <<'PY'
import sys
tp, nat, dsr, nat_new, dsr_new, flows = (int(float(x)) for x in sys.argv[1:7])
r = lambda x: x / tp if tp else float("nan")
print(f"flows                       : {flows}")
print(f"testpmd macswap             : {tp/1e6:8.2f} Mpps")
print(f"sluice NAT  (steady state)  : {nat/1e6:8.2f} Mpps   ratio {r(nat):.2f}")
print(f"sluice IPIP (steady state)  : {dsr/1e6:8.2f} Mpps   ratio {r(dsr):.2f}")
print(f"new connections, NAT        : {nat_new/1e6:8.2f} M/s (peak 50 ms window, first pass)")
print(f"new connections, IPIP       : {dsr_new/1e6:8.2f} M/s (peak 50 ms window, first pass)")
PY
