#!/usr/bin/env bash
# Announce this box's VIPs over BGP only while Sluice is healthy: poll
# Sluice's /healthz and enable or disable BIRD's `sluice_vips` protocol
# (dpdk-config/bird/sluice-box.conf), which announces or withdraws every
# VIP of the box. docs/SCALE-OUT.md explains where it fits.
#
#   sluice-bgp-health.sh [options]
#
# Options
#   --url URL        health endpoint (default http://127.0.0.1:9100/healthz,
#                    Sluice's `[admin] listen`); healthy means HTTP 200
#   --socket PATH    BIRD's control socket (default /run/bird/bird.ctl)
#   --protocol NAME  BIRD protocol holding the VIP routes (default sluice_vips)
#   --interval SEC   time between checks (default 1; fractions allowed)
#   --timeout SEC    limit of one check (default 1)
#   --rise N         consecutive good checks before announcing (default 2)
#   --fall N         consecutive failed checks before withdrawing (default 2)
#
# The state starts withdrawn. Each round re-asserts the current state to
# BIRD (enable/disable are idempotent), so a BIRD that restarts or reloads
# its config, which brings `sluice_vips` back disabled, is corrected within
# one interval. On SIGTERM or SIGINT the VIPs are withdrawn before exiting:
# a box whose checker is not running should not attract traffic. Run it as
# a service next to bird (e.g. systemd with Restart=always). Needs curl and
# birdc.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-2}"; }

url=http://127.0.0.1:9100/healthz
socket=/run/bird/bird.ctl
proto=sluice_vips
interval=1 timeout=1 rise=2 fall=2
while [ $# -gt 0 ]; do
  case $1 in
    --url) url=$2; shift 2 ;;
    --socket) socket=$2; shift 2 ;;
    --protocol) proto=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --rise) rise=$2; shift 2 ;;
    --fall) fall=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "sluice-bgp-health: unknown option $1" >&2; usage ;;
  esac
done
for n in "$rise" "$fall"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "sluice-bgp-health: --rise/--fall need a positive integer" >&2; exit 2; }
done

log() { echo "sluice-bgp-health: $*"; }

# Tell BIRD to announce (enable) or withdraw (disable). birdc exits 0 even
# when BIRD refuses a command, so success is read from its reply:
# "NAME: enabled", "NAME: already enabled", "NAME: disabled", ...
apply() {
  local verb=$1 out
  out=$(birdc -s "$socket" "$verb" "$proto" 2>&1) || return 1
  [[ $out == *"$proto: "*"${verb}d"* ]]
}

state=withdrawn
good=0 bad=0 told=
sleeper=
withdraw_and_exit() {
  [[ -n $sleeper ]] && kill "$sleeper" 2>/dev/null
  apply disable || log "could not withdraw through $socket"
  log "stopped: withdrawn"
  exit 0
}
trap withdraw_and_exit TERM INT

log "checking $url every ${interval}s (rise $rise, fall $fall); BIRD protocol $proto via $socket"
while :; do
  if curl -fsS -o /dev/null --max-time "$timeout" "$url" 2>/dev/null; then
    good=$((good + 1)) bad=0
  else
    bad=$((bad + 1)) good=0
  fi
  if [[ $state == withdrawn && $good -ge $rise ]]; then
    state=announced
    log "Sluice healthy for $good checks: announcing"
  elif [[ $state == announced && $bad -ge $fall ]]; then
    state=withdrawn
    log "Sluice unhealthy for $bad checks: withdrawing"
  fi
  verb=disable
  [[ $state == announced ]] && verb=enable
  if apply "$verb"; then
    [[ $told == "$state" ]] || log "BIRD: $proto ${verb}d"
    told=$state
  else
    [[ $told == "error" ]] || log "BIRD did not take '$verb $proto' (is bird running with socket $socket?); retrying"
    told=error
  fi
  # sleep in the background so that a signal is handled at once.
  sleep "$interval" &
  sleeper=$!
  wait "$sleeper" || true
  sleeper=
done
