#!/usr/bin/env bash
# pktgen-dpdk against Sluice on one machine, over net_memif, with
# dpdk-testpmd (io and macswap) over the same memif as the reference, in the
# same run.
#
#   PKTGEN=/path/to/pktgen          benches/pktgen.sh [SECONDS] [RUNS]
#   PKTGEN_SRC=/path/to/Pktgen-DPDK benches/pktgen.sh [SECONDS] [RUNS]
#
# (defaults: 5 s measured per run, 5 runs per target; the median is kept.)
# A run's rate is pktgen's packet count over the measured window.
# pktgen is not part of this repository and nothing else needs it. PKTGEN is
# a pktgen 23.06.1 binary built with Lua (-Denable_lua=true) and with
# benches/pktgen/pktgen-23.06.1-memif-mtu.patch (DPDK 22.11's memif cannot
# set an MTU and unpatched pktgen stops there). PKTGEN_SRC is a checkout of
# https://github.com/pktgen/Pktgen-DPDK at tag pktgen-23.06.1: the script
# applies the patch if needed and builds it in PKTGEN_SRC/build-sluice
# (meson, ninja, liblua5.3-dev, libnuma-dev, libpcap-dev); see
# docs/PKTGEN.md.
#
# Topology: one memif link. The device under test (testpmd or Sluice) is the
# memif server with its forwarding lcore on CPU 1; pktgen is the client with
# its rx/tx lcore on CPU 0 (its main lcore, which only sleeps, on CPU 1).
# pktgen's port has the MAC 02:00:00:00:00:fe; Sluice's p0 02:00:00:00:00:01,
# 10.0.0.1/24, with 198.18.0.0/15 routed back to pktgen (10.0.0.254, a static
# neighbor) and the L4 backends 10.0.0.11-13 behind pktgen's MAC too, so
# every packet Sluice sends comes back to pktgen's rx.
#
# Cases (CASES, default all):
#   echo       benches/pktgen/echo.pkt: ICMP echo to 10.0.0.1; Sluice answers
#   udp-flows  benches/pktgen/udp-flows.pkt: UDP to 10.0.0.1 over many flows;
#              no service there, Sluice counts and drops (its rx rate counts)
#   l4-nat     benches/pktgen/l4-vip.pkt: UDP to the VIP 10.0.0.100 from
#              ~131k clients, full NAT to three backends (4 SNAT addresses)
#   l4-dsr     the same, IP-in-IP DSR (each packet grows by 20 bytes)
#   latency    pktgen's timestamped probes (UDP to the VIP) at LAT_RATE
#              percent of memif's 100G (default 0.1, ~149 kpps of 64-byte
#              traffic), one every LAT_US µs (1000): p50/p99 through testpmd
#              io and macswap and through Sluice (NAT)
# Every target runs RUNS times, each run a fresh forwarder and a fresh
# pktgen; a run reports pktgen's rx and tx packet counts over the measured
# window divided by its length, the table the median of the runs (one run in several can settle near half rate).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
RUNS=${2:-5}
WARM=${WARM:-2}
CASES=${CASES:-echo udp-flows l4-nat l4-dsr latency}
LAT_RATE=${LAT_RATE:-0.1}
LAT_US=${LAT_US:-1000}
RESULTS=${RESULTS:-}
ADMIN=127.0.0.1:9197
PG_MAC=02:00:00:00:00:fe
die() { echo "pktgen.sh: $*" >&2; exit 1; }

TMP=$(mktemp -d)
FWD=""
PG=""
PREFIXES=()
cleanup() {
  # pktgen runs in its own session (setsid): end its process group.
  [ -n "$PG" ] && kill -TERM -- "-$PG" 2>/dev/null || true
  [ -n "$FWD" ] && kill -TERM "$FWD" 2>/dev/null || true
  sleep 0.5
  [ -n "$PG" ] && kill -KILL -- "-$PG" 2>/dev/null || true
  [ -n "$FWD" ] && kill -KILL "$FWD" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$RESULTS" ] && { mkdir -p "$RESULTS"; cp -r "$TMP"/. "$RESULTS"/ 2>/dev/null || true; }
  rm -rf "$TMP"
  for p in "${PREFIXES[@]}"; do rm -rf "/var/run/dpdk/$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- pktgen: a given binary, or built from a given source tree
if [ -z "${PKTGEN:-}" ]; then
  [ -n "${PKTGEN_SRC:-}" ] || die "set PKTGEN=/path/to/pktgen or PKTGEN_SRC=/path/to/Pktgen-DPDK (see docs/PKTGEN.md)"
  [ -f "$PKTGEN_SRC/meson.build" ] || die "$PKTGEN_SRC is not a pktgen source tree"
  grep -q "23.06.1" "$PKTGEN_SRC/VERSION" 2>/dev/null || echo "pktgen.sh: warning: $PKTGEN_SRC is not pktgen 23.06.1 ($(cat "$PKTGEN_SRC/VERSION" 2>/dev/null))" >&2
  PATCH=$PWD/benches/pktgen/pktgen-23.06.1-memif-mtu.patch
  if ! grep -q "cannot set the MTU" "$PKTGEN_SRC/app/pktgen-port-cfg.c"; then
    patch -d "$PKTGEN_SRC" -p1 --forward <"$PATCH" >/dev/null || die "could not apply $PATCH"
  fi
  if [ ! -d "$PKTGEN_SRC/build-sluice" ]; then
    # Its Lua library includes DPDK headers without depending on libdpdk.
    meson setup "$PKTGEN_SRC/build-sluice" "$PKTGEN_SRC" -Denable_lua=true \
      -Dc_args="$(pkg-config --cflags-only-I libdpdk)" >"$TMP/pktgen-setup.log" 2>&1 \
      || die "meson setup failed: $(tail -5 "$TMP/pktgen-setup.log")"
  fi
  ninja -C "$PKTGEN_SRC/build-sluice" >"$TMP/pktgen-build.log" 2>&1 \
    || die "pktgen build failed: $(tail -15 "$TMP/pktgen-build.log")"
  PKTGEN=$PKTGEN_SRC/build-sluice/app/pktgen
fi
[ -x "$PKTGEN" ] || die "PKTGEN=$PKTGEN is not an executable"
# (strings of its usage text and of the patch, in the binary)
grep -q "or a Lua script" "$PKTGEN" \
  || die "$PKTGEN was built without Lua: rebuild with 'meson configure BUILD -Denable_lua=true' (docs/PKTGEN.md)"
grep -q "cannot set the MTU" "$PKTGEN" \
  || die "$PKTGEN lacks benches/pktgen/pktgen-23.06.1-memif-mtu.patch: it would stop at 'Cannot set MTU' on memif"
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd is missing (package dpdk)"
command -v script >/dev/null || die "script(1) is missing (package bsdutils): pktgen needs a terminal"

cargo build --release --locked -q
SLUICE=$PWD/target/release/sluice
SOCK=$TMP/memif.sock
python3 benches/gen_pcap.py icmp "$TMP/echo.pcap" 1024 >/dev/null

sluice_config() { # MODE
  local b
  cat <<TOML
[eal]
args = ["--no-huge", "-m", "1024", "--no-pci", "--log-level=lib.eal:warning"]
main_lcore = 0
file_prefix = "sluice-pg$$"

[dataplane]
workers = [1]
mbufs = 16383
mbuf_cache = 256

[admin]
listen = "$ADMIN"

[[port]]
name = "p0"
vdev = "net_memif0,role=server,socket=$SOCK,socket-abstract=no"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/24", "10.0.0.2/24", "10.0.0.3/24", "10.0.0.4/24"]

# The generator's clients, back through the generator.
[[route]]
prefix = "198.18.0.0/15"
via = "10.0.0.254"
port = "p0"

[[neighbor]]
ip = "10.0.0.254"
mac = "$PG_MAC"
port = "p0"

[[cluster]]
name = "web"
TOML
  for b in 11 12 13; do
    printf '[[cluster.backend]]\naddress = "10.0.0.%s"\n\n' "$b"
  done
  # The backends sit behind the generator's port too: pktgen receives what
  # Sluice forwards.
  for b in 11 12 13; do
    printf '[[neighbor]]\nip = "10.0.0.%s"\nmac = "%s"\nport = "p0"\n\n' "$b" "$PG_MAC"
  done
  cat <<TOML
[[service]]
name = "web"
vip = "10.0.0.100"
port = 0
protocol = "udp"
mode = "$1"
cluster = "web"
ingress = "p0"
TOML
  # 131k flows need more than one address's 64,512 SNAT ports.
  [ "$1" = nat ] && echo 'snat = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]'
  return 0
}

sluice_json() {
  "$SLUICE" stats --admin "$ADMIN" --json 2>/dev/null
}

start_forwarder() { # TARGET (io|macswap|nat|ipip) LOG
  rm -f "$SOCK"
  case $1 in
    io | macswap)
      PREFIXES+=("tp-pg$$")
      timeout -k 5 $((SECS + WARM * 2 + 60)) dpdk-testpmd -l 0,1 --main-lcore 0 --no-huge -m 512 --no-pci \
        --file-prefix "tp-pg$$" --vdev "net_memif0,role=server,socket=$SOCK,socket-abstract=no" -- \
        --forward-mode="$1" --total-num-mbufs=16384 --stats-period 1 --auto-start >"$2" 2>&1 &
      FWD=$!
      ;;
    nat | ipip)
      PREFIXES+=("sluice-pg$$")
      sluice_config "$1" >"$TMP/sluice-$1.toml"
      "$SLUICE" run --config "$TMP/sluice-$1.toml" --duration $((SECS + WARM * 2 + 60)) \
        --stats-out "$TMP/sluice-$1.json" >"$2" 2>&1 &
      FWD=$!
      ;;
  esac
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$FWD" 2>/dev/null || die "$1 exited at start; its log:
$(tail -20 "$2")"
    if [ -S "$SOCK" ]; then
      # The memif client does not retry a connection the server turned
      # down before its port started: wait for the forwarder to be running.
      case $1 in
        io | macswap) grep -q "Port statistics" "$2" && return 0 ;;
        *) sluice_json >/dev/null && return 0 ;;
      esac
    fi
    sleep 0.1
  done
  die "$1 did not open $SOCK within 30 s; its log:
$(tail -20 "$2")"
}

stop_forwarder() {
  kill -INT "$FWD" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do kill -0 "$FWD" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$FWD" 2>/dev/null || true
  wait "$FWD" 2>/dev/null || true
  FWD=""
  rm -f "$SOCK"
}

run_pktgen() { # PKT OUT LOG MARK [LAT_OUT]
  local pcap=""
  # echo.pkt replays ICMP echo requests from a pcap (see the script).
  [ "$(basename "$1")" = echo.pkt ] && pcap="-s 0:$TMP/echo.pcap"
  PREFIXES+=("pg$$")
  local limit=$((SECS + WARM * 3 + 60)) i
  local -a envs=(PKT="$1" OUT="$2" SECS="$SECS" WARM="$WARM" MARK="$4")
  [ -n "${5:-}" ] && envs+=(LAT_RATE="$LAT_RATE" LAT_US="$LAT_US" LAT_OUT="$5")
  # pktgen draws its screen on a terminal and stops without one: script(1)
  # gives it a pseudo-terminal. --lcores: lcore 0 (main: the Lua driver,
  # sleeping) on CPU 1, lcore 1 (rx and tx of port 0) on CPU 0.
  env "${envs[@]}" setsid timeout -k 5 "$limit" script -qfec "$PKTGEN --lcores 0@1,1@0 --main-lcore 0 \
    --no-huge -m 2048 --no-pci --file-prefix pg$$ \
    --vdev net_memif0,role=client,socket=$SOCK,socket-abstract=no,mac=$PG_MAC -- -m 1.0 $pcap -f $PWD/benches/pktgen/measure.lua" \
    /dev/null </dev/null >"$3" 2>&1 &
  PG=$!
  # pktgen 23.06.1 sometimes hangs in quit: once the driver has written its
  # results, give it 3 s, then end its process group.
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$PG" 2>/dev/null || break
    if grep -q '^done' "$2" 2>/dev/null; then
      for ((i = 0; i < 30; i++)); do kill -0 "$PG" 2>/dev/null || break; sleep 0.1; done
      kill -TERM -- "-$PG" 2>/dev/null || true
      sleep 0.5
      kill -KILL -- "-$PG" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$PG" 2>/dev/null || true
  PG=""
  grep -q '^link .*UP' "$2" 2>/dev/null || { echo "pktgen.sh: pktgen's memif link did not come up ($3)" >&2; return 1; }
  grep -q '^done' "$2" 2>/dev/null || die "pktgen did not finish a measurement; the end of its screen:
$(tail -c 1500 "$3" | tr -d '\033' | tail -15)"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}'; }

# The marks write Sluice's counters at the window's start and end.
# For testpmd only the time is kept. pktgen's rates below are its packet
# totals over this window: its per-second rates are computed on its main
# lcore, which the Lua driver keeps busy, and disagree with the totals on a
# loaded machine.
cat >"$TMP/mark.sh" <<EOF
#!/bin/sh
[ -e "$TMP/mark-sluice" ] && "$SLUICE" stats --admin "$ADMIN" --json >"$TMP/mark-\$1.json" 2>/dev/null
date +%s.%N >"$TMP/mark-\$1.time"
EOF
chmod +x "$TMP/mark.sh"

# One measurement: prints "rx_pps tx_pps" (pktgen's medians) and, for
# Sluice, "sluice_rx_pps sluice_tx_pps drops_per_s top_drop_reason".
measure() { # CASE TARGET RUN PKT -> $TMP/result
  local tag="$1-$2-$3" mark=$TMP/mark.sh sl=""
  start_forwarder "$2" "$TMP/$tag.fwd.log"
  rm -f "$TMP"/mark-*
  case $2 in nat | ipip) sl=1; touch "$TMP/mark-sluice" ;; esac
  if ! run_pktgen "$4" "$TMP/$tag.out" "$TMP/$tag.pktgen.log" "$mark"; then
    # Once more, with a fresh forwarder, before giving up.
    stop_forwarder
    start_forwarder "$2" "$TMP/$tag.fwd.log"
    run_pktgen "$4" "$TMP/$tag.out" "$TMP/$tag.pktgen.log" "$mark" || die "no memif link twice in $tag"
  fi
  stop_forwarder
  local rx tx secs
  secs=$(awk '{print $1}' "$TMP/mark-end.time" "$TMP/mark-start.time" | paste -sd- | bc -l)
  rx=$(awk -v s="$secs" '$1 == "total" {printf "%d", $2 / s}' "$TMP/$tag.out")
  tx=$(awk -v s="$secs" '$1 == "total" {printf "%d", $3 / s}' "$TMP/$tag.out")
  if [ -n "$sl" ]; then
    [ -s "$TMP/mark-start.json" ] && [ -s "$TMP/mark-end.json" ] || die "Sluice's counters were not read during $tag"
    python3 - "$TMP/mark-start.json" "$TMP/mark-end.json" "$(cat "$TMP/mark-start.time")" "$(cat "$TMP/mark-end.time")" "$rx" "$tx" <<'PY'
import json, sys
a, b = (json.load(open(f))["counters"] for f in sys.argv[1:3])
secs, rx, tx = float(sys.argv[4]) - float(sys.argv[3]), sys.argv[5], sys.argv[6]
d = {k: b[k] - a.get(k, 0) for k in b if isinstance(b[k], (int, float))}
drops = {k: v for k, v in d.items() if k.startswith("drop_") and v}
top = max(drops, key=drops.get) if drops else "-"
print(rx, tx, int(d.get("rx_packets", 0) / secs), int(d.get("tx_packets", 0) / secs),
      int(sum(drops.values()) / secs), top)
PY
  else
    echo "$rx $tx"
  fi >"$TMP/result"
}

# A latency measurement: prints "p50_us p99_us samples".
measure_latency() { # TARGET RUN -> $TMP/result
  local tag="latency-$1-$2"
  start_forwarder "$1" "$TMP/$tag.fwd.log"
  if ! run_pktgen "$PWD/benches/pktgen/l4-vip.pkt" "$TMP/$tag.out" "$TMP/$tag.pktgen.log" "" "$TMP/$tag.samples"; then
    stop_forwarder
    start_forwarder "$1" "$TMP/$tag.fwd.log"
    run_pktgen "$PWD/benches/pktgen/l4-vip.pkt" "$TMP/$tag.out" "$TMP/$tag.pktgen.log" "" "$TMP/$tag.samples" \
      || die "no memif link twice in $tag"
  fi
  stop_forwarder
  [ -s "$TMP/$tag.samples" ] || { echo "- - 0" >"$TMP/result"; return 0; }
  # Nearest-rank percentiles of the samples (nanoseconds), in µs.
  python3 - "$TMP/$tag.samples" >"$TMP/result" <<'PY'
import math, sys
v = sorted(int(x) for x in open(sys.argv[1]) if x.strip().isdigit())  # after a "Latency" header
if not v:
    print("- - 0")
else:
    p = lambda q: v[max(0, math.ceil(q * len(v)) - 1)] / 1000
    print(f"{p(0.50):.1f} {p(0.99):.1f} {len(v)}")
PY
}

echo "pktgen: $PKTGEN"
echo "load at start: $(uptime)"
declare -A RX TX SRX STX SDROP STOP
for c in $CASES; do
  case $c in
    echo) pkt=benches/pktgen/echo.pkt; targets="io macswap nat" ;;
    udp-flows) pkt=benches/pktgen/udp-flows.pkt; targets="io macswap nat" ;;
    l4-nat) pkt=benches/pktgen/l4-vip.pkt; targets="io macswap nat" ;;
    l4-dsr) pkt=benches/pktgen/l4-vip.pkt; targets="ipip" ;;
    latency) continue ;;
    *) die "unknown case $c" ;;
  esac
  for t in $targets; do
    for ((r = 1; r <= RUNS; r++)); do
      # Not in a subshell: a failure must stop the script, and the
      # cleanup must know the pids.
      srx=""
      measure "$c" "$t" "$r" "$PWD/$pkt"
      read -r rx tx srx stx sdrop stop <"$TMP/result"
      echo "$c $t run $r: pktgen rx $rx tx $tx${srx:+; sluice rx $srx tx $stx drops $sdrop/s ($stop)}" >&2
      RX[$c-$t]+="$rx "; TX[$c-$t]+="$tx "
      [ -n "${srx:-}" ] && { SRX[$c-$t]+="$srx "; STX[$c-$t]+="$stx "; SDROP[$c-$t]+="$sdrop "; STOP[$c-$t]=$stop; }
      srx=""
    done
  done
done

med() { tr ' ' '\n' | { grep -v '^$' || true; } | median; }
mpps() { awk -v x="$1" 'BEGIN {printf "%.2f", x / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
echo
echo "load at end: $(uptime)"
echo
echo "| case | testpmd io rx | testpmd macswap rx | Sluice: pktgen rx | Sluice rx / tx (its counters) | pktgen tx | Sluice / io | Sluice / macswap |"
echo "|---|---|---|---|---|---|---|---|"
for c in $CASES; do
  case $c in latency) continue ;; esac
  t=nat; [ "$c" = l4-dsr ] && t=ipip
  io=$(med <<<"${RX[$c-io]:-}"); ms=$(med <<<"${RX[$c-macswap]:-}")
  [ "$c" = l4-dsr ] && { io=$(med <<<"${RX[l4-nat-io]:-}"); ms=$(med <<<"${RX[l4-nat-macswap]:-}"); }
  srx=$(med <<<"${RX[$c-$t]:-}"); stx=$(med <<<"${TX[$c-$t]:-}")
  crx=$(med <<<"${SRX[$c-$t]:-}"); ctx=$(med <<<"${STX[$c-$t]:-}")
  if [ "$c" = udp-flows ]; then
    # Sluice sends nothing back here, so pktgen's lcore only transmits and
    # offers more than in the forwarding runs: the figure is the share of the
    # offered load that Sluice received and classified (its rx / pktgen's tx).
    r1="$(ratio "$crx" "$stx") of offered"; r2="-"
  else
    r1=$(ratio "$srx" "$io"); r2=$(ratio "$srx" "$ms")
  fi
  echo "| $c | $(mpps "$io") | $(mpps "$ms") | $(mpps "$srx") | $(mpps "$crx") / $(mpps "$ctx") (drops $(med <<<"${SDROP[$c-$t]:-}")/s, ${STOP[$c-$t]:--}) | $(mpps "$stx") | $r1 | $r2 |"
done
echo "(Mpps, median of $RUNS runs of $SECS s each; per-run figures above on stderr)"

if [[ " $CASES " == *" latency "* ]]; then
  echo
  echo "| latency ($LAT_RATE % of 100G, a probe every $LAT_US µs) | p50 µs | p99 µs | samples |"
  echo "|---|---|---|---|"
  for t in io macswap nat; do
    p50s=""; p99s=""; n=0
    for ((r = 1; r <= RUNS; r++)); do
      measure_latency "$t" "$r"
      read -r p50 p99 k <"$TMP/result"
      echo "latency $t run $r: p50 $p50 p99 $p99 µs ($k samples)" >&2
      [ "$p50" != - ] && { p50s+="$p50 "; p99s+="$p99 "; n=$((n + k)); }
    done
    name=$t; [ "$t" = nat ] && name="Sluice (NAT)"; [ "$t" != nat ] && name="testpmd $t"
    echo "| $name | $(tr ' ' '\n' <<<"$p50s" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print NR ? a[int((NR+1)/2)] : "-"}') | $(tr ' ' '\n' <<<"$p99s" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print NR ? a[int((NR+1)/2)] : "-"}') | $n |"
  done
  echo "(median of the runs' p50 and p99)"
fi
