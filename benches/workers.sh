#!/usr/bin/env bash
# L4 forwarding rate of Sluice with 1, 2 and 4 workers on the same virtual
# devices, NAT and IPIP DSR, each against dpdk-testpmd --forward-mode=macswap
# with as many forwarding cores and queues in the same run; then the
# redirect ring's cost per packet, in instructions (callgrind).
#
#   benches/workers.sh [SECONDS] [FLOWS]   (defaults: 10 s, 1048576 flows)
#
#   WORKERS="1 2 4"      the worker counts to measure
#   SKIP_RATES=1         only the redirect ring's cost
#   SKIP_REDIRECT=1      only the rates
#   REDIRECT_FLOWS=4000  connections of the redirect measurement (<= 4096,
#                        the ring's size, so that none can be dropped)
#   RESULTS=DIR          keep the logs, configs, counters and callgrind
#                        outputs there (callgrind_annotate reads them)
#
# Source: net_pcap with infinite_rx=1 and one rx pcap per queue; the FLOWS
# TCP SYNs of benches/l4.sh are split over the queues' pcaps by a hash of
# their tuple, as RSS would. Sink: net_null with no-rx=1 (as many queues).
# Worker w runs on CPU [1,0,1,0][w] (`dataplane.worker_cpus`, the EAL's
# --lcores); the main lcore is on CPU 0. testpmd gets the same lcore map.
# On a 2-CPU machine, 2 workers share CPU 0 with the (mostly sleeping) main
# lcore and 4 workers run two per CPU: they measure that the paths are
# correct under load, not how Sluice scales.
#
# Each program is measured once it forwards and, for Sluice, once the first
# pass over the pcaps has opened every connection (steady state), never
# after a fixed sleep; a reference or a mode that measured nothing fails
# the script. Every process and runtime directory is removed on exit. Each
# figure is printed with the load average at its start: run on an
# otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/l4_topology.sh
SECS=${1:-10}
FLOWS=${2:-1048576}
WORKERS=${WORKERS:-"1 2 4"}
REDIRECT_FLOWS=${REDIRECT_FLOWS:-4000}
START_LIMIT=${START_LIMIT:-180}
# A free port for the admin endpoint (other benchmarks may hold the usual ones).
ADMIN=${ADMIN:-127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
TMP=$(mktemp -d)
PIDS=""
cleanup() {
  for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS"
    cp "$TMP"/*.log "$TMP"/*.toml "$TMP"/*.json "$TMP"/*.callgrind "$RESULTS"/ 2>/dev/null || true
  fi
  rm -rf "$TMP" /var/run/dpdk/tpw$$ /var/run/dpdk/sluice-wbench$$ /var/run/dpdk/sluice-wredir$$
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "workers.sh: $*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
forget() { # PID: no longer ours to clean up
  local p out=""
  for p in $PIDS; do [ "$p" = "$1" ] || out="$out $p"; done
  PIDS=$out
}

cargo build --release --locked -q

# CPU of worker w (and of testpmd's forwarding lcore w+1).
CPUS=(1 0 1 0 1 0 1 0)
lcores() { # N -> 0@0,1@1,2@0,...
  local s="0@0" w
  for ((w = 0; w < $1; w++)); do s="$s,$((w + 1))@${CPUS[$w]}"; done
  echo "$s"
}

# ------------------------------------------------------------------ rates

# Port 1's Tx-pps samples (one a second) once forwarding has started.
tx_samples() { # LOG
  awk '/statistics for port 1/ {p1=1} /statistics for port 0/ {p1=0} p1 && /Tx-pps:/ {print $2}' "$1" | awk '$1 > 0'
}

# Not in subshells: a failure must stop the script, and the cleanup must
# know every pid. Each measurement writes its result to $TMP/out.
testpmd_rate() { # N SRC MBUFS MEM -> median Tx-pps of port 1
  local n=$1 log="$TMP/testpmd$1.log" i tp
  : >"$log"
  dpdk-testpmd --lcores "$(lcores "$n")" --no-huge -m "$4" --no-pci --no-shconf \
    --file-prefix "tpw$$" --vdev "$2" --vdev "net_null0,no-rx=1" -- \
    --forward-mode=macswap --nb-cores="$n" --rxq="$n" --txq="$n" \
    --total-num-mbufs="$3" --stats-period 1 --auto-start >"$log" 2>&1 &
  tp=$!
  PIDS="$PIDS $tp"
  for ((i = 0; i < START_LIMIT * 10; i++)); do
    [ -n "$(tx_samples "$log")" ] && break
    kill -0 "$tp" 2>/dev/null || die "testpmd ($n cores) exited before forwarding; its log:
$(tail -20 "$log")"
    sleep 0.1
  done
  [ -n "$(tx_samples "$log")" ] || die "testpmd ($n cores) did not forward within ${START_LIMIT} s (START_LIMIT)"
  echo "$(loadavg)" >"$TMP/load.tp$n"
  # The first sample may cover the start; SECS more after it.
  sleep $((SECS + 2))
  kill -INT "$tp" 2>/dev/null || true
  wait "$tp" 2>/dev/null || true
  forget "$tp"
  tx_samples "$log" | tail -n +2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}' >"$TMP/out"
}

rate_config() { # N MODE MBUFS MEM MAXFLOWS
  local n=$1 w list="" cpus=""
  for ((w = 0; w < n; w++)); do list="$list$((w + 1)), "; cpus="$cpus${CPUS[$w]}, "; done
  cat <<TOML
[eal]
args = ["--no-huge", "-m", "$4", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "sluice-wbench$$"

[dataplane]
workers = [${list%, }]
worker_cpus = [${cpus%, }]
idle_sleep_us = $([ "$n" -gt 2 ] && echo 50 || echo 0)
mbufs = $3
mbuf_cache = 256

[conntrack]
max_flows = $5
expire_budget = 64

[admin]
listen = "$ADMIN"

$(l4_topology "$2")
TOML
}

# "tx_packets connections tx_of_worker0 tx_of_worker1 ..." from the admin endpoint
stats() {
  target/release/sluice stats --admin "$ADMIN" --json 2>/dev/null | python3 2>/dev/null -c '
import json, sys
d = json.load(sys.stdin)
w = [str(x.get("tx_packets", 0)) for x in d.get("workers", [])]
print(d["counters"]["tx_packets"], d["services"]["web"]["connections"], *w)'
}

sluice_rate() { # N MODE SRC MBUFS MEM MAXFLOWS -> "pps share0/share1/..."
  local n=$1 mode=$2 tag="$2-$1" sl i s t0 t1 a b r
  rate_config "$n" "$mode" "$4" "$5" "$6" >"$TMP/$tag.toml"
  target/release/sluice run --config "$TMP/$tag.toml" --port-device "p0=$3" \
    >"$TMP/$tag.log" 2>&1 &
  sl=$!
  PIDS="$PIDS $sl"
  # Forwarding, and the first pass over the pcaps done (every flow has its
  # connection): from then on, the steady state.
  for ((i = 0; i < START_LIMIT * 10; i++)); do
    s=$(stats || echo "0 0")
    set -- $s
    [ "$1" -gt 0 ] && [ "$2" -ge "$FLOWS" ] && break
    kill -0 "$sl" 2>/dev/null || die "sluice ($mode, $n workers) exited before forwarding; its log:
$(tail -20 "$TMP/$tag.log")"
    sleep 0.1
  done
  set -- $(stats || echo "0 0")
  [ "$1" -gt 0 ] && [ "$2" -ge "$FLOWS" ] || die "sluice ($mode, $n workers) did not forward every flow within ${START_LIMIT} s (START_LIMIT): tx $1, connections $2; its log:
$(tail -20 "$TMP/$tag.log")"
  sleep 1
  echo "$(loadavg)" >"$TMP/load.$tag"
  a=$(stats); t0=$(date +%s.%N)
  sleep "$SECS"
  b=$(stats); t1=$(date +%s.%N)
  kill -TERM "$sl" 2>/dev/null || true
  wait "$sl" 2>/dev/null || true
  forget "$sl"
  r="$(python3 - "$t0" "$t1" "$a" "$b" <<'PY'
import sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
a = [int(x) for x in sys.argv[3].split()]
b = [int(x) for x in sys.argv[4].split()]
tx = b[0] - a[0]
if tx <= 0:
    sys.exit(1)
per = [y - x for x, y in zip(a[2:], b[2:])]
print(int(tx / (t1 - t0)), "/".join(f"{100 * p / tx:.0f}" for p in per))
PY
  )" || die "sluice ($mode, $n workers) forwarded nothing in the measured ${SECS} s"
  echo "$r" >"$TMP/out"
}

if [ -z "${SKIP_RATES:-}" ]; then
  ROWS=""
  for n in $WORKERS; do
    [ "$n" -ge 1 ] && [ "$n" -le 8 ] || die "worker counts are 1..8: $n"
    # One rx pcap per queue.
    counts=$(python3 benches/gen_pcap.py syn-split "$TMP/syn$n" "$FLOWS" "$n" | sed 's/.*\[\(.*\)\].*/\1/')
    src="net_pcap0"
    for ((q = 0; q < n; q++)); do src="$src,rx_pcap=$TMP/syn$n.$q.pcap"; done
    src="$src,infinite_rx=1"
    most=$(echo "$counts" | tr -d ' ' | tr ',' '\n' | sort -n | tail -1)
    # Each worker's pool holds its queue's pcap (infinite_rx keeps it in
    # mbufs) plus room for the rings; each mbuf takes about 2.4 KiB, but
    # without hugepages the EAL needs more than that (4 KiB per mbuf works).
    mbufs=$((most + 16384))
    mem=$(( n * mbufs * 4 / 1024 + 1024 ))
    maxflows=$((most + most / 4 + 1024))
    tp_mbufs=$((FLOWS + 16384 * n))
    tp_mem=$(( tp_mbufs * 4 / 1024 + 1024 ))
    echo "== $n worker(s): flows per queue $counts, lcores $(lcores "$n")" >&2
    testpmd_rate "$n" "$src" "$tp_mbufs" "$tp_mem"
    tp=$(cat "$TMP/out")
    [ "${tp:-0}" -gt 0 ] || die "testpmd's reference rate with $n cores is missing (fewer than two Tx-pps samples)"
    sluice_rate "$n" nat "$src" "$mbufs" "$mem" "$maxflows"
    read -r nat nat_share <"$TMP/out"
    sluice_rate "$n" ipip "$src" "$mbufs" "$mem" "$maxflows"
    read -r dsr dsr_share <"$TMP/out"
    [ "${nat:-0}" -gt 0 ] && [ "${dsr:-0}" -gt 0 ] || die "a Sluice rate with $n workers is missing"
    ROWS="$ROWS$n $tp $nat $dsr $nat_share $dsr_share|$(cat "$TMP/load.tp$n")|$(cat "$TMP/load.nat-$n")|$(cat "$TMP/load.ipip-$n")
"
  done
  echo
  echo "flows: $FLOWS, ${SECS} s per figure, commit $(git describe --always --dirty), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  printf '%s' "$ROWS" | python3 -c '
import sys
cpus = [1, 0, 1, 0, 1, 0, 1, 0]
print("| workers (CPUs) | testpmd macswap | Sluice NAT | ratio | Sluice IPIP | ratio | share of tx per worker, NAT / IPIP (%) | load average at start: testpmd / NAT / IPIP |")
print("|---|---|---|---|---|---|---|---|")
for line in sys.stdin:
    nums, l_tp, l_nat, l_dsr = line.rstrip("\n").split("|")
    n, tp, nat, dsr, ns, ds = nums.split()
    n, tp, nat, dsr = int(n), int(tp), int(nat), int(dsr)
    c = ",".join(str(x) for x in cpus[:n])
    print(f"| {n} ({c}) | {tp/1e6:.2f} Mpps | {nat/1e6:.2f} Mpps | {nat/tp:.2f} | {dsr/1e6:.2f} Mpps | {dsr/tp:.2f} | {ns} / {ds} | {l_tp} / {l_nat} / {l_dsr} |")
'
fi

# ------------------------------------------------------- the redirect ring

redirect_config() { # FILE_PREFIX
  cat <<TOML
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "$1"

[dataplane]
workers = [1, 2]
worker_cpus = [1, 0]
idle_sleep_us = 1000
mbufs = 8191
mbuf_cache = 256

[conntrack]
max_flows = 16384

[admin]
enabled = false

[[port]]
name = "p0"
vdev = "net_null1"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/24"]

[[port]]
name = "p1"
vdev = "net_null2"
mac = "02:00:00:00:01:01"
addresses = ["10.1.0.1/24"]

[[route]]
prefix = "198.18.0.0/15"
via = "10.0.0.254"
port = "p0"

[[neighbor]]
ip = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p0"

[[neighbor]]
ip = "10.1.0.101"
mac = "02:00:00:00:01:65"
port = "p1"

[[cluster]]
name = "one"
[[cluster.backend]]
address = "10.1.0.101"

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
mode = "nat"
cluster = "one"
ingress = "p0"
snat = ["10.1.0.1"]
TOML
}

# Instructions executed inside Worker::handle (every packet's processing,
# the hand-over to another worker's ring included) over the whole run,
# valgrind --tool=callgrind --toggle-collect; and the counters.
redirect_run() { # WHERE -> "instructions redirected l4_forwarded l4_returned drop_no_conn drop_redirect_full rx_packets"
  local where=$1 n=$REDIRECT_FLOWS lead=$((REDIRECT_FLOWS * 50)) p="$TMP/ret-$1" vg
  python3 benches/gen_pcap.py nat-return "$p" "$n" "$lead" "$where"
  redirect_config "sluice-wredir$$" >"$p.toml"
  valgrind --tool=callgrind --fair-sched=yes --toggle-collect='*Worker::handle*' \
    --callgrind-out-file="$p.callgrind" \
    target/release/sluice run --config "$p.toml" \
    --port-device "p0=net_pcap0,rx_pcap=$p.c0.pcap,rx_pcap=$p.c1.pcap" \
    --port-device "p1=net_pcap1,rx_pcap=$p.b0.pcap,rx_pcap=$p.b1.pcap" \
    --exit-on-idle 2000 --stats-out "$p.json" >"$p.log" 2>&1 &
  vg=$!
  PIDS="$PIDS $vg"
  wait "$vg" || die "sluice under callgrind ($where) failed; its log:
$(tail -20 "$p.log")"
  forget "$vg"
  python3 - "$p.json" "$p.callgrind" >"$TMP/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["counters"]
ir = None
for line in open(sys.argv[2]):
    if line.startswith(("summary:", "totals:")):
        ir = int(line.split()[1])
if ir is None:
    sys.exit("no instruction total in the callgrind output")
print(ir, *(d.get(k, 0) for k in ("redirected", "l4_forwarded", "l4_returned", "drop_no_conn", "drop_redirect_full", "rx_packets")))
PY
}

if [ -z "${SKIP_REDIRECT:-}" ]; then
  [ "$REDIRECT_FLOWS" -le 4096 ] || die "REDIRECT_FLOWS must be <= 4096 (the redirect ring's size)"
  command -v valgrind >/dev/null || die "valgrind is needed for the redirect ring's cost"
  N=$REDIRECT_FLOWS
  T0=$(date +%s)
  redirect_run none
  read -r base_ir base_red base_fwd base_ret base_nc base_full base_rx <"$TMP/out"
  redirect_run owner
  read -r own_ir own_red own_fwd own_ret own_nc own_full own_rx <"$TMP/out"
  redirect_run foreign
  read -r for_ir for_red for_fwd for_ret for_nc for_full for_rx <"$TMP/out"
  # The counters prove the paths: every SYN forwarded, every reply
  # returned to its client, and in the foreign run every reply redirected.
  [ "$base_fwd" -eq "$N" ] && [ "$base_ret" -eq 0 ] || die "baseline: $base_fwd SYNs forwarded of $N, $base_ret returned"
  [ "$own_fwd" -eq "$N" ] && [ "$own_ret" -eq "$N" ] && [ "$own_red" -eq 0 ] && [ "$own_nc" -eq 0 ] \
    || die "owner run: forwarded $own_fwd, returned $own_ret of $N, redirected $own_red, drop_no_conn $own_nc"
  [ "$for_fwd" -eq "$N" ] && [ "$for_ret" -eq "$N" ] && [ "$for_red" -eq "$N" ] && [ "$for_nc" -eq 0 ] && [ "$for_full" -eq 0 ] \
    || die "foreign run: forwarded $for_fwd, returned $for_ret of $N, redirected $for_red, drop_no_conn $for_nc, drop_redirect_full $for_full (replies ahead of their SYNs: a longer lead is needed)"
  echo
  echo "redirect ring: $N NAT connections opened by worker 0, one SYN-ACK each from the backend; callgrind, instructions in Worker::handle ($(( $(date +%s) - T0 )) s)"
  python3 - "$N" "$base_ir" "$own_ir" "$for_ir" "$for_red" <<'PY'
import sys
n, base, own, fo, red = (int(x) for x in sys.argv[1:])
print("| reply arrives on | instructions in Worker::handle, whole run | per reply (minus the run without replies) | redirected |")
print("|---|---|---|---|")
print(f"| (no replies, baseline) | {base:,} | - | 0 |")
print(f"| the owner's queue | {own:,} | {(own - base) / n:.0f} | 0 |")
print(f"| the other worker's queue | {fo:,} | {(fo - base) / n:.0f} | {red} |")
print(f"redirect cost: {(fo - own) / n:.0f} instructions per reply ({(fo - own) / (own - base) * 100:.0f} % on top of the owner's {(own - base) / n:.0f})")
PY
fi
