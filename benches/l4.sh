#!/usr/bin/env bash
# L4 forwarding rate of one Sluice worker over many flows, NAT and IPIP DSR,
# against dpdk-testpmd --forward-mode=macswap on the same virtual devices
# in the same run; and the rate at which one worker opens connections.
#
#   benches/l4.sh [SECONDS] [FLOWS]      (defaults: 10 s, 1048576 flows)
#   BASE=path/to/other/sluice benches/l4.sh ...
#
# With BASE, that binary (an earlier build, for a before/after) is measured
# too, in the same run and on the same pcap, after this tree's.
#
# Source: net_pcap with infinite_rx=1 replaying 60-byte TCP SYNs (64 bytes
# on the wire) of FLOWS distinct flows to the VIP 10.0.0.100:80; sink:
# net_null with no-rx=1, where the backends live. The first pass over the
# pcap opens a connection per flow (the "new connections" rate); every
# later pass finds it (the steady-state rate). infinite_rx keeps the whole
# pcap in mbufs, so the pools hold FLOWS + 32768 mbufs (-m 6144, no
# hugepages). Each program is measured once it forwards (preloading a
# million packets takes seconds), never after a fixed sleep; a reference or
# a mode that measured nothing fails the script. BURST (32) sets Sluice's
# dataplane.burst. Run on an otherwise idle machine.
#
# ROUNDS=N repeats the whole measurement N times (testpmd, then this tree
# and BASE if given, in turns first) and ends with each build's median
# ratios: the same binary moves by 10-25 % from one start to the next on
# the virtual machines this project measures on.
#
# HUGE=1 runs both programs on 2 MiB huge pages instead of --no-huge (the
# mbuf pools and the preloaded pcap; Sluice's connection table is on
# transparent huge pages either way), as a deployment would: the script
# raises vm.nr_hugepages as far as it needs (3,072 pages, 6 GiB, one
# program at a time) and puts the old value back when it ends; EAL maps
# them with --in-memory, so no hugetlbfs mount is needed. Without huge
# pages, every packet testpmd forwards costs it a TLB miss on the cold
# mbuf (a million mbufs over 4 KiB pages), which hides how little else it
# does: its reference rate nearly doubles on huge pages, while Sluice's
# changes by a few percent (docs/BENCHMARKS.md section 2.6).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/l4_topology.sh
SECS=${1:-10}
FLOWS=${2:-1048576}
TMP=$(mktemp -d)
TP=""
SL=""
NC=""
cleanup() {
  for pid in $TP $SL $NC; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP" /var/run/dpdk/tp$$ /var/run/dpdk/sluice-bench /var/run/dpdk/sluice-l4bench
  if [ -n "$OLD_HUGEPAGES" ]; then
    echo "$OLD_HUGEPAGES" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
  fi
}
OLD_HUGEPAGES=""
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "l4.sh: $*" >&2; exit 1; }
# How long a program may take to start forwarding (EAL, pools, the pcap
# preloaded into mbufs, a connection table touched page by page).
START_LIMIT=${START_LIMIT:-180}
BURST=${BURST:-32}
ROUNDS=${ROUNDS:-1}
MBUFS=$((FLOWS + 32768))

cargo build --release --locked -q
python3 benches/gen_pcap.py syn "$TMP/syn.pcap" "$FLOWS" >/dev/null
SRC="net_pcap0,rx_pcap=$TMP/syn.pcap,infinite_rx=1"
SINK="net_null0,no-rx=1"
HUGE=${HUGE:-0}
if [ "$HUGE" = 1 ]; then
  # 6 GiB of 2 MiB pages free for one program at a time.
  need=3072
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  if [ "${free:-0}" -lt "$need" ]; then
    OLD_HUGEPAGES=$(cat /proc/sys/vm/nr_hugepages)
    echo $((OLD_HUGEPAGES + need - free)) >/proc/sys/vm/nr_hugepages
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    [ "${free:-0}" -ge "$need" ] || die "HUGE=1: only ${free:-0} free 2 MiB huge pages of $need needed (memory too fragmented?)"
  fi
  EAL_MEM=(-m 6144 --in-memory --no-pci --no-shconf)
  MEM_TOML='"-m", "6144", "--in-memory"'
else
  EAL_MEM=(--no-huge -m 6144 --no-pci --no-shconf)
  MEM_TOML='"--no-huge", "-m", "6144"'
fi

# --- reference: testpmd macswap p0 -> p1, measured into TESTPMD_PPS
# (again in every round).
reference() {
  dpdk-testpmd -l 0,1 "${EAL_MEM[@]}" --file-prefix "tp$$" --vdev "$SRC" --vdev "$SINK" -- \
    --forward-mode=macswap --total-num-mbufs="$MBUFS" --stats-period 1 --auto-start \
    >"$TMP/testpmd.log" 2>&1 &
  TP=$!
  # Port 1's Tx-pps samples (one a second) once forwarding has started.
  tx_samples() {
    awk '/statistics for port 1/ {p1=1} /statistics for port 0/ {p1=0} p1 && /Tx-pps:/ {print $2}' "$TMP/testpmd.log" | awk '$1 > 0'
  }
  for ((i = 0; i < START_LIMIT * 10; i++)); do
    [ -n "$(tx_samples)" ] && break
    kill -0 "$TP" 2>/dev/null || die "testpmd exited before forwarding; its log:
$(tail -20 "$TMP/testpmd.log")"
    sleep 0.1
  done
  [ -n "$(tx_samples)" ] || die "testpmd did not forward within ${START_LIMIT} s (START_LIMIT); its log:
$(tail -20 "$TMP/testpmd.log")"
  # The first sample may cover the start; SECS more after it.
  sleep $((SECS + 2))
  kill -INT "$TP" 2>/dev/null || true
  wait "$TP" 2>/dev/null || true
  TP=""
  TESTPMD_PPS=$(tx_samples | tail -n +2 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}')
  [ "${TESTPMD_PPS:-0}" -gt 0 ] || die "testpmd's reference rate is missing (fewer than two Tx-pps samples); its log:
$(tail -20 "$TMP/testpmd.log")"
}

config() { # MODE
  cat <<TOML
[eal]
args = [$MEM_TOML, "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "sluice-l4bench"

[dataplane]
workers = [1]
mbufs = $MBUFS
mbuf_cache = 256
burst = $BURST

[conntrack]
max_flows = $((FLOWS + FLOWS / 4))
expire_budget = 64

[admin]
listen = "127.0.0.1:9198"

$(l4_topology "$1")
TOML
}

BIN=target/release/sluice
counter() { # NAME
  "$BIN" stats --admin 127.0.0.1:9198 --json 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["counters"]["'"$1"'"] if "'"$1"'" in d["counters"] else d["services"]["web"]["connections"])'
}

# New connections: the service's connection counter, sampled every few
# milliseconds over HTTP from the start (one process per sample, as
# `counter` does, takes ~100 ms: longer than a whole first pass of DSR),
# until every flow has its connection. Prints "PEAK AVERAGE" (connections
# a second: the best window of at least 50 ms, and the whole first pass
# from the first sample that saw connections to the first that saw all),
# or "0 0" and the reason on stderr when the pass was too short to sample.
new_conn_sampler() { # FLOWS LIMIT_S SLUICE_PID
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys, time, urllib.request
flows, limit, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
url = "http://127.0.0.1:9198/stats"
samples, end = [], time.monotonic() + limit
while time.monotonic() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        break
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            c = json.load(r)["services"]["web"]["connections"]
    except Exception:
        time.sleep(0.01)
        continue
    t = time.monotonic()
    if c > 0:
        samples.append((t, c))
    if c >= flows:
        break
    time.sleep(0.003)
if len(samples) < 2 or samples[-1][1] < flows:
    print(f"l4.sh: new connections not measured: {len(samples)} sample(s) during the first pass "
          f"(it took less than the sampling interval, or did not finish)", file=sys.stderr)
    print("0 0")
    sys.exit(0)
peak, j = 0.0, 0
for i in range(1, len(samples)):
    while j + 1 < i and samples[i][0] - samples[j + 1][0] >= 0.05:
        j += 1
    dt = samples[i][0] - samples[j][0]
    if dt >= 0.05:
        peak = max(peak, (samples[i][1] - samples[j][1]) / dt)
(t0, c0), (t1, c1) = samples[0], samples[-1]
avg = (c1 - c0) / (t1 - t0)
print(f"{int(peak)} {int(avg)}")
PY
}

run_mode() { # MODE -> writes "pps new_peak new_avg" to $TMP/MODE.rate
  config "$1" >"$TMP/$1.toml"
  "$BIN" run --config "$TMP/$1.toml" --port-device "p0=$SRC" \
    --stats-out "$TMP/$1.json" >"$TMP/$1.log" 2>&1 &
  SL=$!
  new_conn_sampler "$FLOWS" $((START_LIMIT + 60)) "$SL" >"$TMP/$1.new" &
  NC=$!
  local a b i
  # Forwarding has started once the first packet went out.
  for ((i = 0; i < START_LIMIT * 10; i++)); do
    [ "$(counter tx_packets 2>/dev/null || echo 0)" -gt 0 ] && break
    kill -0 "$SL" 2>/dev/null || die "sluice ($1) exited before forwarding; its log:
$(tail -20 "$TMP/$1.log")"
    sleep 0.1
  done
  [ "$(counter tx_packets 2>/dev/null || echo 0)" -gt 0 ] || die "sluice ($1) did not forward within ${START_LIMIT} s (START_LIMIT)"
  # The steady state starts once the first pass has opened every
  # connection (the sampler stops there).
  wait "$NC" || true
  NC=""
  sleep 1
  a=$(counter tx_packets); sleep "$SECS"; b=$(counter tx_packets)
  kill -TERM "$SL" 2>/dev/null || true
  wait "$SL" 2>/dev/null || true
  SL=""
  [ "$b" -gt "$a" ] || die "sluice ($1) forwarded nothing in the measured ${SECS} s"
  echo "$(( (b - a) / SECS )) $(cat "$TMP/$1.new")" >"$TMP/$1.rate"
}

# Not in a subshell: a failure must stop the script, and the cleanup must
# know the pid.
report() { # LABEL
run_mode nat
read -r NAT_PPS NAT_NEW NAT_AVG <"$TMP/nat.rate"
run_mode ipip
read -r DSR_PPS DSR_NEW DSR_AVG <"$TMP/ipip.rate"

python3 - "$TESTPMD_PPS" "$NAT_PPS" "$DSR_PPS" "$NAT_NEW" "$DSR_NEW" "$NAT_AVG" "$DSR_AVG" "$FLOWS" "$1" "$HUGE" "$TMP/rounds" <<'PY'
import sys
tp, nat, dsr, nat_new, dsr_new, nat_avg, dsr_avg, flows = (int(float(x)) for x in sys.argv[1:9])
print(f"--- {sys.argv[9]}")
huge = sys.argv[10]
if tp <= 0 or nat <= 0 or dsr <= 0:
    sys.exit(f"l4.sh: a rate is missing (testpmd {tp}, NAT {nat}, IPIP {dsr} pps): no ratio")
r = lambda x: x / tp
print(f"flows                       : {flows}")
print(f"memory                      : {'2 MiB huge pages' if huge == '1' else '4 KiB pages (--no-huge)'}")
print(f"testpmd macswap             : {tp/1e6:8.2f} Mpps")
print(f"sluice NAT  (steady state)  : {nat/1e6:8.2f} Mpps   ratio {r(nat):.2f}")
print(f"sluice IPIP (steady state)  : {dsr/1e6:8.2f} Mpps   ratio {r(dsr):.2f}")
def conns(peak, avg):
    if peak <= 0 and avg <= 0:
        return "     n/a   (first pass not sampled, see above)"
    return f"{peak/1e6:8.2f} M/s peak 50 ms window, {avg/1e6:.2f} M/s over the first pass"
print(f"new connections, NAT        : {conns(nat_new, nat_avg)}")
print(f"new connections, IPIP       : {conns(dsr_new, dsr_avg)}")
with open(sys.argv[11], "a") as f:
    f.write(f"{sys.argv[9]}\t{tp}\t{nat}\t{dsr}\t{nat_avg}\n")
PY
}

if [ -n "${BASE:-}" ]; then
  [ -x "$BASE" ] || die "BASE=$BASE is not an executable"
fi
HERE="this tree ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
for ((round = 1; round <= ROUNDS; round++)); do
  [ "$ROUNDS" -gt 1 ] && echo "=== round $round of $ROUNDS"
  reference
  # With BASE, the order alternates from round to round (a build measured
  # second may find the machine in another state: page cache, free huge
  # pages for the tables).
  if [ -n "${BASE:-}" ] && [ $((round % 2)) -eq 0 ]; then
    BIN=$BASE
    report "BASE=$BASE"
    BIN=target/release/sluice
    report "$HERE"
  else
    BIN=target/release/sluice
    report "$HERE"
    if [ -n "${BASE:-}" ]; then
      BIN=$BASE
      report "BASE=$BASE"
    fi
  fi
done
if [ "$ROUNDS" -gt 1 ]; then
  python3 - "$TMP/rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, tp, nat, dsr, nat_avg = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((int(tp), int(nat), int(dsr), int(nat_avg)))
print(f"=== medians over {len(next(iter(rows.values())))} rounds (each ratio against its own round's testpmd)")
for label, rs in rows.items():
    med = lambda xs: statistics.median(xs)
    nat = [n / t for t, n, _, _ in rs]
    dsr = [d / t for t, _, d, _ in rs]
    print(f"--- {label}")
    print(f"NAT  ratio: median {med(nat):.2f}  (rounds: {', '.join(f'{x:.2f}' for x in nat)})")
    print(f"IPIP ratio: median {med(dsr):.2f}  (rounds: {', '.join(f'{x:.2f}' for x in dsr)})")
    conns = [a for *_, a in rs if a > 0]
    print("new NAT connections over the first pass: "
          + (f"median {med(conns) / 1e6:.2f} M/s over {len(conns)} round(s)" if conns else "n/a (not sampled)"))
PY
fi
