#!/usr/bin/env bash
# Install what is needed and run the whole test suite: unit tests, config
# checks, pcap replay through the real binary on net_pcap, and the network
# namespace tests (root needed for those).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked --all-targets
cargo test --locked -- --test-threads=2
