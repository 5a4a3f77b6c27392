# The L4 benchmarks' data-plane topology, sourced by benches/l4.sh,
# benches/l4_callgrind.sh and benches/workers.sh: port p0 (the traffic's
# source, 10.0.0.1/24, clients in 198.18.0.0/15 behind 10.0.0.254) and
# p1 (net_null, twenty SNAT addresses 10.1.0.1-20/24, three backends
# 10.1.0.101-103 with static neighbors), and the service "web" on
# 10.0.0.100:80 in MODE (nat also gets the twenty SNAT addresses).
# Each script writes its own [eal], [dataplane], [conntrack] and [admin].

l4_topology() { # MODE
  local addrs
  addrs=$(for i in $(seq 1 20); do printf '"10.1.0.%d", ' "$i"; done | sed 's/, $//')
  cat <<TOML
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
$( [ "$1" = nat ] && echo "snat = [$addrs]" )
TOML
}
