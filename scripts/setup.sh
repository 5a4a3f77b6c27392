#!/usr/bin/env bash
# Install what Sluice needs on Debian 12 (idempotent): DPDK 22.11 from the
# distribution, libclang for bindgen, and the tools the tests, demo and
# benchmarks use. Run as root.
set -euo pipefail

packages=(
  # build
  libdpdk-dev dpdk dpdk-dev pkg-config libclang-dev gcc
  # namespace tests and demo
  iproute2 ethtool iputils-ping iputils-arping curl python3 procps
  # benchmarks and HTTP backends
  wrk nginx-light haproxy tcpdump
  # scale-out tests: BGP between the ECMP router and the Sluice boxes
  bird2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
pkg-config --atleast-version=22.11 libdpdk || { echo "setup: libdpdk >= 22.11 not found" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo fetch --locked
