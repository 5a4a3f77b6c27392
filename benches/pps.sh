#!/usr/bin/env bash
# Packets per second through one Sluice worker, against dpdk-testpmd
# --forward-mode=macswap on the same virtual devices, in the same run.
#
#   benches/pps.sh [SECONDS] [FLOWS]
#
# Source: net_pcap with infinite_rx=1 replaying 60-byte ICMP echo requests
# (64 bytes on the wire) from FLOWS sources; sink: net_null with no-rx=1.
# Both programs get the same EAL memory (--no-huge -m 512) and one
# forwarding lcore (lcore 1); the control/main lcore is lcore 0.
# Prints both rates and the ratio; run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
FLOWS=${2:-1024}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" /var/run/dpdk/tp$$ /var/run/dpdk/sluice-bench /var/run/dpdk/sluice-l4bench' EXIT

cargo build --release --locked -q
python3 benches/gen_pcap.py icmp "$TMP/icmp.pcap" "$FLOWS" >/dev/null
SRC="net_pcap0,rx_pcap=$TMP/icmp.pcap,infinite_rx=1"
SINK="net_null0,no-rx=1"

# --- reference: testpmd macswap p0 -> p1
dpdk-testpmd -l 0,1 --no-huge -m 512 --no-pci --no-shconf --file-prefix "tp$$" \
  --vdev "$SRC" --vdev "$SINK" -- \
  --forward-mode=macswap --total-num-mbufs=16384 --stats-period 1 --auto-start \
  >"$TMP/testpmd.log" 2>&1 &
TP=$!
sleep $((SECS + 2))
kill -INT $TP 2>/dev/null || true
wait $TP 2>/dev/null || true
# Steady-state rate: the median of port 1's per-second Tx-pps samples,
# skipping the first two (start-up).
TESTPMD_PPS=$(awk '/statistics for port 1/ {p1=1} /statistics for port 0/ {p1=0} p1 && /Tx-pps:/ {print $2}' "$TMP/testpmd.log" \
  | awk '$1 > 0' | tail -n +2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}')

# --- sluice: echo replies routed p0 -> p1
target/release/sluice run --config benches/pps.toml \
  --port-device "p0=$SRC" --port-device "p1=$SINK" \
  --duration $((SECS + 4)) --stats-out "$TMP/sluice.json" >"$TMP/sluice.log" 2>&1 &
SL=$!
tx_packets() {
  target/release/sluice stats --admin 127.0.0.1:9199 --json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["tx_packets"])'
}
for _ in $(seq 50); do tx_packets >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1   # warm-up
A=$(tx_packets)
sleep "$SECS"
B=$(tx_packets)
wait $SL
SLUICE_PPS=$(( (B - A) / SECS ))
DROPS=$(python3 -c 'import json; c=json.load(open("'"$TMP/sluice.json"'"))["counters"]; print(sum(v for k,v in c.items() if k.startswith("drop_")))')

python3 - "$TESTPMD_PPS" "$SLUICE_PPS" "$DROPS" <<'PY'
import sys
tp, sl, drops = (int(x) for x in sys.argv[1:4])
print(f"testpmd macswap : {tp/1e6:8.2f} Mpps")
print(f"sluice echo     : {sl/1e6:8.2f} Mpps   (drops during run: {drops})")
print(f"ratio           : {sl/tp if tp else float('nan'):8.2f}")
PY
