#!/usr/bin/env bash
# Instructions per packet of one Sluice worker on the L4 path, counted by
# callgrind: noise-free where wall-clock rates on a shared machine are not.
#
#   benches/l4_callgrind.sh [FLOWS] [MODES]     (defaults: 16384, "nat ipip")
#   BIN=other/sluice KEEP=DIR benches/l4_callgrind.sh ...   (another build; keep the outputs)
#
# The traffic is the L4 benchmark's (benches/l4.sh): 60-byte TCP SYNs of
# FLOWS distinct flows to the VIP 10.0.0.100:80, from net_pcap (read once,
# no infinite_rx) to net_null, one worker. For each mode, three runs under
# callgrind with the same config:
#   start: a pcap of one packet             (EAL, pools, tables, idle polls)
#   new:   FLOWS packets, one per flow      (each opens a connection)
#   all:   the same FLOWS packets 3 times   (then twice more on the open one)
# and, since the start-up and the idle polls until --exit-on-idle cancel
# out of the differences:
#   new connection   = (new - start) / FLOWS
#   steady state     = (all - new) / (2 * FLOWS)
# Everything the process executes per packet is counted, the pcap PMD's
# read of each packet (libpcap) included. The idle polls before
# --exit-on-idle last a fixed time, so on a loaded machine they add up to
# ~2 % of noise to these differences; the script also prints the steady
# state of Worker::burst (older builds: Worker::handle) alone (inclusive,
# from callgrind_annotate), which no polling reaches and which repeats to
# within one instruction. BIN=path/to/sluice measures
# another build (default: target/release/sluice, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/l4_topology.sh
FLOWS=${1:-16384}
MODES=${2:-nat ipip}
BIN=${BIN:-target/release/sluice}
TMP=$(mktemp -d)
# KEEP=DIR keeps the callgrind outputs there (for callgrind_annotate).
# Also the EAL's runtime directory of this run's file prefix.
trap '[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$TMP"/cg.* "$KEEP"/ 2>/dev/null; rm -rf "$TMP" /var/run/dpdk/sluice-l4cg-$$' EXIT

if [ "$BIN" = target/release/sluice ]; then
  cargo build --release --locked -q --bin sluice
fi
python3 benches/gen_pcap.py syn "$TMP/one.pcap" 1 >/dev/null
python3 benches/gen_pcap.py syn "$TMP/new.pcap" "$FLOWS" >/dev/null
python3 benches/gen_pcap.py syn "$TMP/all.pcap" "$FLOWS" 3 >/dev/null

config() { # MODE
  cat <<TOML
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "sluice-l4cg-$$"

[dataplane]
workers = [1]
mbufs = 8191
mbuf_cache = 256
idle_sleep_us = 100

[conntrack]
max_flows = $((FLOWS + FLOWS / 4))
expire_budget = 64

[admin]
enabled = false

$(l4_topology "$1")
TOML
}

ir() { # MODE PCAP -> total instructions of the run
  local out="$TMP/cg.$1.$(basename "$2" .pcap)"
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    "$BIN" run --config "$TMP/$1.toml" \
    --port-device "p0=net_pcap0,rx_pcap=$2" --exit-on-idle 300 \
    --stats-out "$out.json" >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; exit 1; }
  local tx
  tx=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"]["tx_packets"])' "$out.json")
  echo "  $(basename "$2"): tx_packets $tx" >&2
  grep -h '^summary:\|^totals:' "$out".* | head -1 | awk '{print $2}'
}

# Inclusive instructions of the packet path alone in a run's output, which
# no idle poll reaches: Worker::burst (since the burst is processed stage
# by stage: taking the mbufs from the rx burst, classification, L4, L2
# output, up to the tx buffer); in older builds Worker::handle (the same
# without taking the mbufs and the burst's pre-parse and prefetch, which
# ran in the worker loop). FN= picks one.
handle_ir() { # MODE NAME
  local fn=${FN:-} out
  out=$(callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$TMP/cg.$1.$2".[0-9]* 2>/dev/null)
  if [ -z "$fn" ]; then
    case $out in *sluice::worker::Worker::burst*) fn=burst ;; *) fn=handle ;; esac
  fi
  echo "$fn" >"$TMP/fn"
  awk -v f="sluice::worker::Worker::$fn" 'index($0, f) {gsub(",", "", $1); if ($1 + 0 > m) m = $1 + 0} END {print m + 0}' <<<"$out"
}

for mode in $MODES; do
  config "$mode" >"$TMP/$mode.toml"
  echo "$mode:" >&2
  s=$(ir "$mode" "$TMP/one.pcap")
  n=$(ir "$mode" "$TMP/new.pcap")
  a=$(ir "$mode" "$TMP/all.pcap")
  hn=$(handle_ir "$mode" new)
  ha=$(handle_ir "$mode" all)
  python3 - "$mode" "$(cat "$TMP/fn")" "$FLOWS" "$s" "$n" "$a" "$hn" "$ha" <<'PY'
import sys
mode, fn, (flows, s, n, a, hn, ha) = sys.argv[1], sys.argv[2], map(int, sys.argv[3:])
print(f"{mode:5} new connection: {(n - s) / flows:8.0f} instructions/packet   "
      f"steady state: {(a - n) / (2 * flows):8.0f} instructions/packet   "
      f"(start {s/1e6:.1f} M, {flows} flows)")
if hn and ha:
    print(f"{mode:5} steady state, Worker::{fn} inclusive: {(ha - hn) / (2 * flows):8.0f} "
          f"instructions/packet (no PMD, no polling)")
PY
done
