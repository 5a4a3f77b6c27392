//! Golden pcap replay through the real binary on DPDK's `net_pcap` device.
//!
//! Each directory in `pcap-tests/` holds `sluice.toml`, `in.pcap`, the output
//! Sluice must produce (`expected.pcap`, built independently by
//! `pcap-tests/gen.py`) and the counters it must report (`expected.json`).
//! The test replaces the port's device with
//! `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`, runs until the input is
//! consumed, and compares packet by packet and counter by counter.

mod common;

use std::path::Path;

use common::*;

fn replay(case: &str) {
    let dir = repo().join("pcap-tests").join(case);
    let tmp = TempDir::new(&format!("pcap-{case}"));
    let out = tmp.path().join("out.pcap");
    let stats = tmp.path().join("stats.json");
    let dev = format!(
        "p0=net_pcap0,rx_pcap={},tx_pcap={}",
        dir.join("in.pcap").display(),
        out.display()
    );
    // The case's config with a file prefix of its own, so that the cases
    // (which run at once) do not share the EAL's runtime directory, and
    // that directory, which the EAL leaves behind, is removed after.
    let prefix = format!("sluice-pcap-{case}-{}", std::process::id());
    let _runtime = lan::RemoveOnDrop(Path::new("/var/run/dpdk").join(&prefix));
    let toml = std::fs::read_to_string(dir.join("sluice.toml")).expect("read the case's config");
    assert!(
        toml.contains("\n[eal]\n"),
        "{case}: the config has an [eal] table"
    );
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        toml.replacen(
            "\n[eal]\n",
            &format!("\n[eal]\nfile_prefix = \"{prefix}\"\n"),
            1,
        ),
    )
    .expect("write the config");
    let o = sluice()
        .args(["run", "--config"])
        .arg(&config)
        .args([
            "--port-device",
            &dev,
            "--exit-on-idle",
            "500",
            "--stats-out",
        ])
        .arg(&stats)
        .output()
        .expect("spawn sluice");
    assert!(o.status.success(), "sluice failed\n{}", output_text(&o));

    let got = read_pcap(&out);
    let want = read_pcap(&dir.join("expected.pcap"));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            hex(g),
            hex(w),
            "{case}: output packet {i} differs (got, then expected)"
        );
    }
    assert_eq!(got.len(), want.len(), "{case}: number of output packets");

    check_counters(case, &dir.join("expected.json"), &stats);
}

fn check_counters(case: &str, expected: &Path, stats: &Path) {
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(stats).unwrap()).unwrap();
    let got = &got["counters"];
    let mut drops = 0;
    for (k, v) in got.as_object().unwrap() {
        if k.starts_with("drop_") {
            drops += v.as_u64().unwrap();
            // A drop reason not listed must be zero.
            let w = want.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            assert_eq!(v.as_u64().unwrap(), w, "{case}: counter {k}");
        }
    }
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(got[k].as_u64(), v.as_u64(), "{case}: counter {k}");
    }
    // Every received packet is accounted for exactly once: answered,
    // consumed, or dropped with a reason.
    let n = |k: &str| got[k].as_u64().unwrap();
    assert_eq!(
        n("rx_packets"),
        drops
            + n("arp_replies")
            + n("echo_replies")
            + n("ndp_adverts")
            + n("neighbor_replies")
            + n("l4_forwarded")
            + n("l4_returned")
            + n("l4_stateless")
            + n("l4_table_full")
            + n("l4_rate_limited")
            + n("icmp_errors_forwarded"),
        "{case}: rx_packets == drops + answered + consumed"
    );
}

#[test]
fn basic_arp_icmp_ndp() {
    replay("basic");
}

#[test]
fn malformed_inputs_are_dropped_and_counted() {
    replay("malformed");
}

#[test]
fn vlan_tagged_port() {
    replay("vlan");
}

#[test]
fn l4_nat_ipip_gre_l2dsr_udp_ipv6() {
    replay("l4");
}

#[test]
fn l4_table_full_falls_back_to_consistent_hash() {
    replay("table_full");
}

#[test]
fn l4_on_a_vlan_tagged_port() {
    replay("l4_vlan");
}
