#!/usr/bin/env bash
# Prepare (or undo) a Linux backend for one of Sluice's DSR service modes.
# docs/DSR.md explains each step; this script is what it describes.
#
#   backend-setup.sh up|down MODE VIP [options]
#
# MODE
#   ipip            kernel IP-in-IP device decapsulates (`ipip`, RFC 2003;
#                   for an IPv6 VIP `ip6tnl mode ip6ip6`, RFC 2473); VIP on lo
#   gre             kernel GRE device (RFC 2784, no key/seq/csum): `gre`, or
#                   `ip6gre` for an IPv6 VIP; VIP on lo
#   l2dsr           no tunnel: Sluice rewrites only the destination MAC; VIP on lo
#   userspace-ipip  scripts/dsr-decap.py decapsulates into a TUN device that
#   userspace-gre   holds the VIP, for kernels without ipip/gre devices (the
#                   namespace tests); IPv4 only. `up` runs the helper in the foreground
#                   (exec) until it is stopped; stopping it removes the TUN
#                   device and the VIP with it.
# VIP               the service address, IPv4 or IPv6. Sluice's outer header
#                   has the backends' family, which is the VIP's.
#
# Options
#   --dev IF        uplink towards Sluice and the clients (default eth0)
#   --lb ADDR       Sluice's address, the outer source of tunnelled packets.
#                   Kernel tunnels: the device's `remote` (one address;
#                   without it the device is `external` and accepts any
#                   source). Userspace: accept only these (repeatable).
#   --tun NAME      tunnel or TUN device name (default dsr-ipip, dsr-gre, dsr0)
#   --advmss N      advertise TCP MSS N on the uplink's routes, so that
#                   clients' segments still fit after Sluice adds the outer
#                   header (1500-byte links: 1440 for ipip, 1436 for gre)
#   -n, --dry-run   print the commands instead of running them
#
# Run as root on the backend. `down` does not restore the sysctls it changed
# (arp_ignore, arp_announce, rp_filter): it cannot know their earlier values.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-2}"; }

[ $# -ge 3 ] || usage
action=$1 mode=$2 vip=$3
shift 3
dev=eth0 tun= advmss= dry=
lbs=()
while [ $# -gt 0 ]; do
  case $1 in
    --dev) dev=$2; shift 2 ;;
    --lb) lbs+=("$2"); shift 2 ;;
    --tun) tun=$2; shift 2 ;;
    --advmss) advmss=$2; shift 2 ;;
    -n|--dry-run) dry=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "backend-setup: unknown option $1" >&2; usage ;;
  esac
done
case $action in up|down) ;; *) echo "backend-setup: action must be up or down" >&2; usage ;; esac

if [[ $vip == *:* ]]; then fam=-6 plen=128; else fam=-4 plen=32; fi
case $mode in
  ipip|gre|l2dsr) ;;
  userspace-ipip|userspace-gre)
    [ "$fam" = -4 ] || { echo "backend-setup: dsr-decap.py handles IPv4 outer headers only" >&2; exit 2; } ;;
  *) echo "backend-setup: unknown mode $mode" >&2; usage ;;
esac
case $mode in
  ipip) tun=${tun:-dsr-ipip} ;;
  gre) tun=${tun:-dsr-gre} ;;
  userspace-*) tun=${tun:-dsr0} ;;
esac
if [[ $mode != userspace-* && ${#lbs[@]} -gt 1 ]]; then
  echo "backend-setup: a kernel tunnel has one remote; omit --lb (external device) and filter sources with nftables" >&2
  exit 2
fi

run() {
  echo "+ $*" >&2
  [ -n "$dry" ] || "$@"
}
sysctl_w() { run sysctl -qw "$1=$2"; }

# Only the address owner may answer ARP for the VIP: on the shared segment
# that is Sluice. arp_ignore=1: answer only for addresses configured on the
# interface the request came in on (the VIP is on lo or on the tunnel).
# arp_announce=2: the backend's own ARP requests carry its uplink address,
# never the VIP, so no switch or client learns the VIP at the backend's MAC.
# IPv6 needs nothing: Linux answers neighbor solicitations only for
# addresses of the receiving interface.
arp_sysctls() {
  for scope in all "$dev"; do
    sysctl_w "net.ipv4.conf.$scope.arp_ignore" 1
    sysctl_w "net.ipv4.conf.$scope.arp_announce" 2
  done
}

# Decapsulated packets come in on the tunnel device from client addresses
# that the routing table reaches through the uplink: a reverse-path filter
# would drop them. The kernel applies max(all, device), so both must be 0.
rp_sysctls() {
  sysctl_w net.ipv4.conf.all.rp_filter 0
  [ -z "${1:-}" ] || sysctl_w "net.ipv4.conf.$1.rp_filter" 0
}

set_advmss() {
  local f line
  for f in -4 -6; do
    ip "$f" route show dev "$dev" | while IFS= read -r line; do
      # Keep the route as it is, with only its advmss replaced.
      line=$(sed -E -e 's/ advmss [0-9]+//' -e 's/ (linkdown|dead|onlink)//g' <<<"$line")
      # Clients are never reached over link-local routes.
      [[ -n $line && $line != fe80:* ]] || continue
      # shellcheck disable=SC2086 # the route is a list of words
      run ip "$f" route change $line dev "$dev" advmss "$advmss"
    done
  done
}

tunnel_up() {
  local module
  local -a kind
  case $mode$fam in
    ipip-4) module=ipip kind=(ipip) ;;
    ipip-6) module=ip6_tunnel kind=(ip6tnl mode ip6ip6) ;;
    gre-4) module=ip_gre kind=(gre) ;;
    gre-6) module=ip6_gre kind=(ip6gre) ;;
  esac
  if command -v modprobe >/dev/null; then run modprobe "$module" || true; fi
  if ((${#lbs[@]})); then
    run ip link add "$tun" type "${kind[@]}" remote "${lbs[0]}"
  else
    # collect_md device: accepts tunnelled packets from any outer source.
    run ip link add "$tun" type "${kind[@]}" external
  fi
  run ip link set dev "$tun" up
}

case $action/$mode in
  up/ipip|up/gre)
    arp_sysctls
    tunnel_up
    # IPv6 has no rp_filter sysctl (it is an nftables `fib` rule if any).
    [ "$fam" = -6 ] || rp_sysctls "$tun"
    run ip "$fam" addr add "$vip/$plen" dev lo
    [ -z "$advmss" ] || set_advmss
    ;;
  up/l2dsr)
    arp_sysctls
    run ip "$fam" addr add "$vip/$plen" dev lo
    ;;
  up/userspace-*)
    arp_sysctls
    rp_sysctls
    [ -z "$advmss" ] || set_advmss
    helper=$(dirname "$(readlink -f "$0")")/dsr-decap.py
    args=(--proto "${mode#userspace-}" --tun "$tun" --address "$vip/$plen")
    for lb in "${lbs[@]}"; do args+=(--from "$lb"); done
    echo "+ exec python3 $helper ${args[*]}" >&2
    [ -n "$dry" ] || exec python3 "$helper" "${args[@]}"
    ;;
  down/ipip|down/gre)
    run ip "$fam" addr del "$vip/$plen" dev lo || true
    run ip link del dev "$tun" || true
    ;;
  down/l2dsr)
    run ip "$fam" addr del "$vip/$plen" dev lo || true
    ;;
  down/userspace-*)
    echo "backend-setup: stop dsr-decap.py; its TUN device $tun and the VIP on it go with it" >&2
    ;;
esac
