//! Config tests: defaults, the EAL argv, and one test per kind of error,
//! each asserting the line the error points at and what it says.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;

/// A valid config that the error tests edit.
const BASE: &str = r#"[eal]
args = ["--no-huge", "-m", "512", "--no-pci"]

[dataplane]
workers = [1, 2]

[[port]]
name = "wan"
vdev = "net_af_packet0,iface=veth0"
addresses = ["10.0.0.1/24", "fd00::1/64"]
gateway = "10.0.0.254"
gateway6 = "fe80::1"

[[port]]
name = "lan"
vdev = "net_af_packet1,iface=veth1"
addresses = ["10.1.0.1/24"]
"#;

fn ok(text: &str) -> Config {
    from_str(text, "sluice.toml")
        .unwrap_or_else(|e| panic!("config should be accepted: {e}\n{text}"))
}

fn err(text: &str) -> ConfigError {
    match from_str(text, "sluice.toml") {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// `text` is rejected with an error on the line of `needle` whose message
/// contains each of `words`.
#[track_caller]
fn rejects(text: &str, needle: &str, words: &[&str]) -> ConfigError {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(
        e.line(),
        Some(line_of(text, needle)),
        "wrong line in {shown:?}\n{text}"
    );
    assert!(
        shown.starts_with(&format!("sluice.toml:{}:", line_of(text, needle))),
        "{shown}"
    );
    for w in words {
        assert!(shown.contains(w), "{shown:?} lacks {w:?}");
    }
    e
}

/// BASE with its `old` text replaced by `new`.
fn edit(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old:?} not in BASE");
    BASE.replacen(old, new, 1)
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn base_is_valid() {
    let cfg = ok(BASE);
    assert_eq!(cfg.ports.len(), 2);
    assert_eq!(cfg.ports[0].gateway, Some(Ipv4Addr::new(10, 0, 0, 254)));
}

#[test]
fn defaults() {
    let cfg =
        ok("[[port]]\nname = \"p0\"\npci = \"0000:03:00.0\"\naddresses = [\"192.0.2.1/24\"]\n");
    assert_eq!(
        cfg.eal,
        Eal {
            args: vec![],
            main_lcore: 0,
            file_prefix: "sluice".into()
        }
    );
    assert_eq!(
        cfg.dataplane,
        Dataplane {
            workers: vec![1],
            burst: 32,
            mbufs: 8191,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            tx_drain_us: 100,
            neighbor_timeout_s: 300,
            neighbor_retry_ms: 1000,
        }
    );
    assert_eq!(
        cfg.admin,
        Admin {
            listen: "127.0.0.1:9100".parse().unwrap(),
            enabled: true
        }
    );
    assert_eq!(cfg.log.level, LogLevel::Info);
    assert_eq!(cfg.log.level.as_str(), "info");
    let p = &cfg.ports[0];
    assert_eq!(p.device, PortDevice::Pci("0000:03:00.0".into()));
    assert_eq!((p.mac, p.mtu, p.vlan, p.rss), (None, 1500, None, true));
    assert_eq!((p.gateway, p.gateway6), (None, None));
    assert!(cfg.routes.is_empty() && cfg.neighbors.is_empty());
    assert_eq!(
        cfg.dataplane.tx_drain(),
        std::time::Duration::from_micros(100)
    );
    assert_eq!(
        cfg.dataplane.neighbor_timeout(),
        std::time::Duration::from_secs(300)
    );
    assert_eq!(
        cfg.dataplane.neighbor_retry(),
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn every_key() {
    let cfg = ok(r#"
[eal]
args = ["--socket-mem", "1024"]
main_lcore = 2
file_prefix = "lb-a"

[dataplane]
workers = [4, 3]
burst = 64
mbufs = 16383
mbuf_cache = 512
rx_desc = 2048
tx_desc = 512
tx_drain_us = 50
neighbor_timeout_s = 60
neighbor_retry_ms = 250

[admin]
listen = "[::1]:9200"
enabled = false

[log]
level = "debug"

[[port]]
name = "wan"
pci = "0000:03:00.0"
mac = "02:00:00:00:00:01"
mtu = 9000
vlan = 100
rss = false
addresses = ["10.0.0.1/24", "fd00::1/64"]
gateway = "10.0.0.254"
gateway6 = "fd00::fe"

[[port]]
name = "lan"
pci = "0000:03:00.1"
addresses = ["10.1.0.1/24", "fd01::1/64"]

[[route]]
prefix = "198.18.0.0/15"
via = "10.1.0.254"
port = "lan"

[[route]]
prefix = "fd02::/48"
via = "fe80::2"
port = "lan"

[[neighbor]]
ip = "10.1.0.254"
mac = "02:00:00:00:00:fe"
port = "lan"
"#);
    assert_eq!(cfg.eal.main_lcore, 2);
    assert_eq!(cfg.dataplane.workers, vec![4, 3]);
    assert_eq!(
        cfg.admin.listen,
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9200))
    );
    assert!(!cfg.admin.enabled);
    assert_eq!(cfg.log.level.to_level_filter(), log::LevelFilter::Debug);
    let wan = &cfg.ports[0];
    assert_eq!(wan.mac.unwrap().octets(), [2, 0, 0, 0, 0, 1]);
    assert_eq!((wan.mtu, wan.vlan, wan.rss), (9000, Some(100), false));
    assert_eq!(wan.gateway6, Some("fd00::fe".parse().unwrap()));
    assert_eq!(
        wan.subnet_of("10.0.0.77".parse().unwrap()),
        Some("10.0.0.0/24".parse().unwrap())
    );
    assert_eq!(cfg.routes[0].prefix, "198.18.0.0/15".parse().unwrap());
    assert_eq!(cfg.routes[0].port_name(), "lan");
    assert_eq!(cfg.routes[1].via, "fe80::2".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.neighbors[0].mac.to_string(), "02:00:00:00:00:fe");
    assert_eq!(cfg.port("lan").map(|(i, _)| i), Some(1));
    assert!(cfg.port("dmz").is_none());

    assert_eq!(
        cfg.eal_argv(),
        [
            "sluice",
            "-l",
            "2,3,4",
            "--main-lcore",
            "2",
            "--file-prefix",
            "lb-a",
            "-a",
            "0000:03:00.0",
            "-a",
            "0000:03:00.1",
            "--socket-mem",
            "1024"
        ]
    );
}

#[test]
fn eal_argv_with_vdevs() {
    assert_eq!(
        ok(BASE).eal_argv(),
        [
            "sluice",
            "-l",
            "0,1,2",
            "--main-lcore",
            "0",
            "--file-prefix",
            "sluice",
            "--vdev",
            "net_af_packet0,iface=veth0",
            "--vdev",
            "net_af_packet1,iface=veth1",
            "--no-huge",
            "-m",
            "512",
            "--no-pci"
        ]
    );
}

#[test]
fn summary_names_what_runs() {
    let s = ok(&with(
        "[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.1.0.254\"\nport = \"lan\"\n",
    ))
    .summary();
    for want in [
        "eal: sluice -l 0,1,2 --main-lcore 0 --file-prefix sluice --vdev net_af_packet0,iface=veth0",
        "lcores: main 0, 2 workers on 1,2",
        "port wan: vdev net_af_packet0,iface=veth0",
        "address 10.0.0.1/24 (subnet 10.0.0.0/24)",
        "address fd00::1/64",
        "default route 0.0.0.0/0 via 10.0.0.254",
        "default route ::/0 via fe80::1",
        "route 198.18.0.0/15 via 10.1.0.254 port lan",
        "admin: http://127.0.0.1:9100/",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
    assert!(!s.contains("note:"), "{s}");
    let s = ok(&edit(", \"--no-pci\"", "")).summary();
    assert!(
        s.contains("note: no port is a PCI device, but eal.args lacks --no-pci"),
        "{s}"
    );
}

#[test]
fn display_form() {
    let e = err("[dataplane]\nburst = \"abc\"\n");
    assert_eq!(
        e.to_string(),
        "sluice.toml:2:9: invalid type: string \"abc\", expected u16 for key `dataplane.burst`"
    );
    assert_eq!(e.position(), Some(Position { line: 2, column: 9 }));
    assert!(e.message().starts_with("invalid type"));
}

// Errors from serde: types, unknown and missing keys, malformed values.

#[test]
fn wrong_type() {
    rejects(
        &edit("workers = [1, 2]", "workers = [1, 2]\nburst = \"abc\""),
        "\"abc\"",
        &[
            "invalid type: string \"abc\", expected u16",
            "for key `dataplane.burst`",
        ],
    );
    rejects(
        &edit("workers = [1, 2]", "workers = [1, \"2\"]"),
        "[1, \"2\"]",
        &["expected u32", "`dataplane.workers[1]`"],
    );
    rejects(
        &edit("workers = [1, 2]", "burst = 70000"),
        "70000",
        &["invalid value: integer `70000`, expected u16"],
    );
    rejects(
        &edit("vdev = \"net_af_packet1,iface=veth1\"", "vdev = 7"),
        "vdev = 7",
        &[
            "invalid type: integer `7`, expected a string",
            "`port[1].vdev`",
        ],
    );
    rejects(
        &with("[admin]\nenabled = \"yes\"\n"),
        "\"yes\"",
        &["expected a boolean", "`admin.enabled`"],
    );
    rejects(
        &with("[log]\nlevel = \"verbose\"\n"),
        "\"verbose\"",
        &["unknown variant `verbose`, expected one of `error`, `warn`, `info`, `debug`, `trace`"],
    );
    rejects(
        &with("[admin]\nlisten = \"localhost\"\n"),
        "\"localhost\"",
        &["socket address", "`admin.listen`"],
    );
    let text = format!(
        "dataplane = 5\n{}",
        edit("[dataplane]\nworkers = [1, 2]\n", "")
    );
    rejects(
        &text,
        "5",
        &["invalid type: integer `5`, expected struct Dataplane for key `dataplane`"],
    );
}

#[test]
fn unknown_key() {
    let e = rejects(
        &edit("workers = [1, 2]", "workers = [1, 2]\nbrust = 32"),
        "brust",
        &[
            "unknown key `brust`, expected one of",
            "`burst`",
            "(in `dataplane`)",
        ],
    );
    assert_eq!(e.position().unwrap().column, 1);
    rejects(
        &edit("gateway = \"10.0.0.254\"", "gatway = \"10.0.0.254\""),
        "gatway",
        &[
            "unknown key `gatway`",
            "`gateway`",
            "`gateway6`",
            "(in `port[0]`)",
        ],
    );
    rejects(&with("[cluster]\nname = \"web\"\n"), "cluster", &[
        "unknown key `cluster`, expected one of `eal`, `dataplane`, `admin`, `log`, `port`, `route`, `neighbor`",
    ]);
    rejects(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nnext = \"10.0.0.254\"\nport = \"wan\"\n"),
        "next",
        &["unknown key `next`", "`via`", "(in `route[0]`)"],
    );
}

#[test]
fn missing_key() {
    let text = with("[[port]]\nvdev = \"net_null0\"\naddresses = [\"10.2.0.1/24\"]\n");
    rejects(
        &text,
        "[[port]]\nvdev = \"net_null0\"",
        &["missing key `name`", "(in `port[2]`)"],
    );
    let text = with("[[route]]\nprefix = \"198.18.0.0/15\"\nport = \"lan\"\n");
    rejects(
        &text,
        "[[route]]",
        &["missing key `via`", "(in `route[0]`)"],
    );
    let text = with("[[neighbor]]\nip = \"10.1.0.9\"\nport = \"lan\"\n");
    rejects(
        &text,
        "[[neighbor]]",
        &["missing key `mac`", "(in `neighbor[0]`)"],
    );
    let text = edit("addresses = [\"10.1.0.1/24\"]\n", "");
    rejects(
        &text,
        "[[port]]\nname = \"lan\"",
        &["missing key `addresses`"],
    );
}

#[test]
fn no_port() {
    let e = rejects(
        "[eal]\nmain_lcore = 0\n",
        "[eal]",
        &["no [[port]] is defined", "at least one port"],
    );
    assert_eq!(
        e.to_string(),
        "sluice.toml:1:1: no [[port]] is defined: at least one port is required"
    );
    rejects("", "", &["no [[port]]"]);
}

#[test]
fn syntax_error() {
    rejects(
        &with("[dataplane\nburst = 3\n"),
        "[dataplane\n",
        &["invalid table header"],
    );
    rejects(&with("x = = 1\n"), "x = = 1", &["expected"]);
}

#[test]
fn bad_cidr() {
    rejects(
        &edit("\"10.1.0.1/24\"", "\"10.1.0.1\""),
        "\"10.1.0.1\"",
        &[
            "invalid prefix \"10.1.0.1\": expected ADDRESS/LENGTH",
            "for key `port[1].addresses[0]`",
        ],
    );
    rejects(
        &edit("\"fd00::1/64\"", "\"fd00::1/129\""),
        "fd00::1/129",
        &["prefix length 129 is longer than 128"],
    );
    rejects(
        &edit("\"10.1.0.1/24\"", "\"10.1.0.0/24\""),
        "\"10.1.0.0/24\"",
        &["10.1.0.0/24 is the network address of its subnet 10.1.0.0/24"],
    );
    rejects(
        &edit("\"10.1.0.1/24\"", "\"10.1.0.255/24\""),
        "\"10.1.0.255/24\"",
        &["broadcast address"],
    );
    rejects(
        &edit("\"10.1.0.1/24\"", "\"224.0.0.1/24\""),
        "\"224.0.0.1/24\"",
        &["multicast"],
    );
    // /31 links have no network or broadcast address (RFC 3021).
    ok(&edit("\"10.1.0.1/24\"", "\"10.1.0.0/31\""));
    rejects(
        &edit("addresses = [\"10.1.0.1/24\"]", "addresses = []"),
        "addresses = []",
        &["port \"lan\" has no addresses"],
    );
}

#[test]
fn bad_mac() {
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\nmac = \"02:00:00:00:01\""),
        "\"02:00:00:00:01\"",
        &["invalid MAC address", "`port[1].mac`"],
    );
    rejects(
        &edit(
            "name = \"lan\"",
            "name = \"lan\"\nmac = \"01:00:5e:00:00:01\"",
        ),
        "\"01:00:5e",
        &["not a unicast station address"],
    );
}

#[test]
fn device() {
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\npci = \"0000:03:00.0\""),
        "[[port]]\nname = \"lan\"",
        &[
            "port \"lan\" sets both `pci` and `vdev`; set exactly one",
            "(in `port[1]`)",
        ],
    );
    rejects(
        &edit("vdev = \"net_af_packet1,iface=veth1\"\n", ""),
        "[[port]]\nname = \"lan\"",
        &["port \"lan\" has no device: set `pci`", "or `vdev`"],
    );
    rejects(
        &edit("net_af_packet1,iface=veth1", "af_packet1,iface=veth1"),
        "\"af_packet1",
        &["must start with \"net_\""],
    );
    rejects(
        &edit("net_af_packet1,iface=veth1", "net_af_packet0,iface=veth1"),
        "\"net_af_packet0,iface=veth1",
        &[
            "port \"lan\" uses device \"net_af_packet0\", which port \"wan\" already uses",
            "first used at line 7",
        ],
    );
    let pci = edit("vdev = \"net_af_packet1,iface=veth1\"", "pci = \"03:00.0\"");
    rejects(
        &pci,
        "\"03:00.0\"",
        &["invalid PCI address \"03:00.0\"", "0000:03:00.0"],
    );
    let pci = edit(
        "vdev = \"net_af_packet1,iface=veth1\"",
        "pci = \"0000:03:00.0\"",
    );
    rejects(
        &pci,
        "\"0000:03:00.0\"",
        &[
            "port \"lan\" is a PCI device",
            "--no-pci",
            "(--no-pci at line 2)",
        ],
    );
    ok(&pci.replace(", \"--no-pci\"", ""));
}

#[test]
fn port_names() {
    rejects(
        &edit("name = \"lan\"", "name = \"wan\""),
        "\"wan\"\nvdev = \"net_af_packet1",
        &["duplicate port name \"wan\"", "first defined at line 8"],
    );
    rejects(
        &edit("name = \"lan\"", "name = \"lan 2\""),
        "\"lan 2\"",
        &["[A-Za-z0-9_-]"],
    );
    rejects(
        &edit("name = \"lan\"", "name = \"\""),
        "name = \"\"",
        &["1..=32"],
    );
}

#[test]
fn duplicate_address() {
    rejects(
        &edit("\"10.1.0.1/24\"", "\"10.0.0.1/16\""),
        "\"10.0.0.1/16\"",
        &[
            "duplicate address 10.0.0.1: already assigned to port \"wan\"",
            "first assigned at line 10",
        ],
    );
    rejects(
        &edit("\"10.1.0.1/24\"", "\"10.1.0.1/24\", \"10.1.0.1/25\""),
        "\"10.1.0.1/25\"",
        &["already assigned to this port"],
    );
}

#[test]
fn port_ranges() {
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\nmtu = 67"),
        "mtu = 67",
        &["mtu 67 is out of range 68..=9000"],
    );
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\nmtu = 9001"),
        "mtu = 9001",
        &["68..=9000"],
    );
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\nvlan = 4095"),
        "vlan = 4095",
        &["vlan 4095 is out of range 1..=4094"],
    );
    rejects(
        &edit("name = \"lan\"", "name = \"lan\"\nvlan = 0"),
        "vlan = 0",
        &["1..=4094"],
    );
}

#[test]
fn gateways() {
    rejects(
        &edit("\"10.0.0.254\"", "\"10.9.0.254\""),
        "\"10.9.0.254\"",
        &["gateway 10.9.0.254 is not inside a subnet of port \"wan\" (10.0.0.0/24)"],
    );
    rejects(
        &edit("\"10.0.0.254\"", "\"10.0.0.1\""),
        "gateway = \"10.0.0.1\"",
        &["is an address of port \"wan\" itself"],
    );
    rejects(
        &edit("\"10.0.0.254\"", "\"10.0.0.255\""),
        "\"10.0.0.255\"",
        &["broadcast"],
    );
    rejects(
        &edit("\"10.0.0.254\"", "\"fd00::fe\""),
        "gateway = \"fd00::fe\"",
        &["fd00::fe is an IPv6 address; `gateway` is the IPv4 default route, use `gateway6`"],
    );
    rejects(
        &edit("\"fe80::1\"", "\"fd01::1\""),
        "\"fd01::1\"",
        &["gateway6 fd01::1 is not inside a subnet of port \"wan\" (fd00::/64) nor link-local"],
    );
    ok(&edit("\"fe80::1\"", "\"fd00::fe\""));
    rejects(
        &edit("\"10.0.0.254\"", "\"router\""),
        "\"router\"",
        &["invalid IPv4 address \"router\" for key `port[0].gateway`"],
    );
    rejects(
        &edit("\"10.0.0.254\"", "10"),
        "gateway = 10",
        &["expected an IPv4 address"],
    );
    let lan6 = edit(
        "addresses = [\"10.1.0.1/24\"]",
        "addresses = [\"10.1.0.1/24\"]\ngateway6 = \"fd00::2\"",
    );
    rejects(
        &lan6,
        "\"fd00::2\"",
        &["port \"lan\", which has no IPv6 address"],
    );
    let two = edit(
        "addresses = [\"10.1.0.1/24\"]",
        "addresses = [\"10.1.0.1/24\"]\ngateway = \"10.1.0.254\"",
    );
    rejects(
        &two,
        "\"10.1.0.254\"",
        &[
            "port \"lan\" sets `gateway`, but port \"wan\" already does",
            "first set at line 11",
        ],
    );
}

// Errors of [dataplane] and [eal].

#[test]
fn workers() {
    rejects(
        &edit("workers = [1, 2]", "workers = [1, 0]"),
        "workers = [1, 0]",
        &["worker lcore 0 is the main lcore (`eal.main_lcore`)"],
    );
    // workers left at its default [1]: the error points at main_lcore.
    let text =
        edit("[dataplane]\nworkers = [1, 2]\n", "").replace("[eal]\n", "[eal]\nmain_lcore = 1\n");
    rejects(
        &text,
        "main_lcore = 1",
        &["worker lcore 1 is the main lcore"],
    );
    rejects(
        &edit("workers = [1, 2]", "workers = []"),
        "workers = []",
        &["`dataplane.workers` is empty"],
    );
    rejects(
        &edit("workers = [1, 2]", "workers = [1, 2, 1]"),
        "workers = [1, 2, 1]",
        &["worker lcore 1 is listed twice", "first listed at line 5"],
    );
    rejects(
        &edit("workers = [1, 2]", "workers = [1, 128]"),
        "workers = [1, 128]",
        &["lcore ids are 0..=127"],
    );
    rejects(
        &edit("[eal]\n", "[eal]\nmain_lcore = 200\n"),
        "main_lcore = 200",
        &["`eal.main_lcore` 200 is out of range"],
    );
}

#[test]
fn dataplane_ranges() {
    for (line, key, words) in [
        (
            "burst = 0",
            "burst",
            "`dataplane.burst` 0 is out of range 1..=256",
        ),
        (
            "burst = 257",
            "burst",
            "`dataplane.burst` 257 is out of range 1..=256",
        ),
        (
            "mbufs = 1023",
            "mbufs",
            "`dataplane.mbufs` 1023 is below the minimum of 1024",
        ),
        (
            "mbuf_cache = 513\nmbufs = 16383",
            "mbuf_cache",
            "at most 512",
        ),
        (
            "mbuf_cache = 700",
            "mbuf_cache",
            "at most 512 and at most mbufs / 1.5 (512 for 8191 mbufs)",
        ),
        (
            "mbufs = 1024\nmbuf_cache = 683",
            "mbuf_cache",
            "(512 for 1024 mbufs)",
        ),
        (
            "rx_desc = 1000",
            "rx_desc",
            "`dataplane.rx_desc` 1000 must be a power of two in 64..=16384",
        ),
        (
            "tx_desc = 32",
            "tx_desc",
            "`dataplane.tx_desc` 32 must be a power of two",
        ),
        ("rx_desc = 32768", "rx_desc", "power of two in 64..=16384"),
        (
            "tx_drain_us = 0",
            "tx_drain_us",
            "`dataplane.tx_drain_us` 0 is out of range 1..=100000",
        ),
        ("tx_drain_us = 100001", "tx_drain_us", "1..=100000"),
        (
            "neighbor_timeout_s = 0",
            "neighbor_timeout_s",
            "`dataplane.neighbor_timeout_s` must be at least 1",
        ),
        (
            "neighbor_retry_ms = 9",
            "neighbor_retry_ms",
            "`dataplane.neighbor_retry_ms` 9 is below the minimum of 10",
        ),
    ] {
        let text = edit("workers = [1, 2]", &format!("workers = [1, 2]\n{line}"));
        rejects(&text, &format!("{key} ="), &[words]);
    }
    ok(&edit(
        "workers = [1, 2]",
        "workers = [1, 2]\nmbufs = 1024\nmbuf_cache = 512\nburst = 256\nrx_desc = 64",
    ));
}

#[test]
fn eal_args() {
    rejects(
        &edit("\"--no-pci\"]", "\"--no-pci\", \"-l\", \"0-3\"]"),
        "args",
        &["EAL option -l is derived from `eal.main_lcore` and `dataplane.workers`; remove \"-l\""],
    );
    rejects(
        &edit("\"--no-pci\"]", "\"--file-prefix=x\"]"),
        "args",
        &["--file-prefix is derived from `eal.file_prefix`"],
    );
    rejects(
        &edit("\"--no-pci\"]", "\"--no-pci\",\n  \"--main-lcore\", \"3\"]"),
        "\"--main-lcore\"",
        &["--main-lcore"],
    );
    ok(&edit(
        "\"--no-pci\"]",
        "\"--no-pci\", \"--log-level\", \"lib.eal:debug\"]",
    ));
    rejects(
        &edit("[eal]\n", "[eal]\nfile_prefix = \"a/b\"\n"),
        "file_prefix",
        &["[A-Za-z0-9_.-]"],
    );
}

// Errors of [[route]] and [[neighbor]].

#[test]
fn route_to_missing_port() {
    let text =
        with("[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.1.0.254\"\nport = \"dmz\"\n");
    let e = rejects(
        &text,
        "\"dmz\"",
        &["port \"dmz\" referenced by route is not defined (defined ports: wan, lan)"],
    );
    // Points at the value: `port = "dmz"` has the quote in column 8.
    assert_eq!(e.position().unwrap().column, 8);
}

#[test]
fn neighbor_to_missing_port() {
    let text =
        with("[[neighbor]]\nip = \"10.1.0.254\"\nmac = \"02:00:00:00:00:fe\"\nport = \"dmz\"\n");
    rejects(
        &text,
        "\"dmz\"",
        &["port \"dmz\" referenced by neighbor is not defined (defined ports: wan, lan)"],
    );
}

#[test]
fn routes() {
    let route = |prefix: &str, via: &str, port: &str| {
        with(&format!(
            "[[route]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\nport = \"{port}\"\n"
        ))
    };
    ok(&route("198.18.0.0/15", "10.1.0.254", "lan"));
    ok(&route("fd02::/48", "fe80::2", "wan"));
    ok(&route("fd02::/48", "fd00::2", "wan"));
    rejects(
        &route("198.18.0.1/15", "10.1.0.254", "lan"),
        "\"198.18.0.1/15\"",
        &["route prefix 198.18.0.1/15 has host bits set; did you mean 198.18.0.0/15?"],
    );
    rejects(
        &route("198.18.0.0/15", "fd00::2", "wan"),
        "\"fd00::2\"",
        &["next hop fd00::2 is IPv6 but the prefix is IPv4"],
    );
    rejects(&route("198.18.0.0/15", "10.0.0.254", "lan"), "\"10.0.0.254\"\nport", &[
        "route to 198.18.0.0/15: next hop 10.0.0.254 is not inside a subnet of port \"lan\" (10.1.0.0/24)",
    ]);
    rejects(
        &route("fd02::/48", "fe80::2", "dmz"),
        "\"dmz\"",
        &["not defined"],
    );
    rejects(
        &route("0.0.0.0/0", "10.1.0.254", "lan"),
        "\"0.0.0.0/0\"",
        &[
            "duplicates the default route set by `gateway` of port \"wan\"",
            "gateway set at line 11",
        ],
    );
    let twice = format!(
        "{}\n[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.0.0.9\"\nport = \"wan\"\n",
        route("198.18.0.0/15", "10.1.0.254", "lan")
    );
    let second = twice.rfind("\"198.18.0.0/15\"").unwrap();
    let e = err(&twice);
    assert_eq!(e.line(), Some(twice[..second].matches('\n').count() + 1));
    assert!(
        e.to_string()
            .contains("duplicate route to 198.18.0.0/15 (first defined at line"),
        "{e}"
    );
}

#[test]
fn neighbors() {
    let neighbor = |ip: &str, mac: &str, port: &str| {
        with(&format!(
            "[[neighbor]]\nip = \"{ip}\"\nmac = \"{mac}\"\nport = \"{port}\"\n"
        ))
    };
    ok(&neighbor("10.1.0.254", "02:00:00:00:00:fe", "lan"));
    ok(&neighbor("fe80::2", "02:00:00:00:00:fe", "wan"));
    rejects(
        &neighbor("10.0.0.9", "02:00:00:00:00:fe", "lan"),
        "\"10.0.0.9\"",
        &["static neighbor 10.0.0.9 is not inside a subnet of port \"lan\""],
    );
    rejects(
        &neighbor("10.1.0.1", "02:00:00:00:00:fe", "lan"),
        "\"10.1.0.1\"\nmac",
        &["is an address of port \"lan\" itself"],
    );
    rejects(
        &neighbor("10.1.0.9", "ff:ff:ff:ff:ff:ff", "lan"),
        "\"ff:ff",
        &["not a unicast station address"],
    );
    rejects(
        &neighbor("10.1.0.9", "02:00:00:00:00", "lan"),
        "\"02:00:00:00:00\"",
        &["invalid MAC address"],
    );
    let twice = format!(
        "{}\n[[neighbor]]\nip = \"10.1.0.254\"\nmac = \"02:00:00:00:00:fd\"\nport = \"lan\"\n",
        neighbor("10.1.0.254", "02:00:00:00:00:fe", "lan")
    );
    let e = err(&twice);
    assert!(
        e.to_string()
            .contains("duplicate static neighbor 10.1.0.254 on port \"lan\""),
        "{e}"
    );
}

// The command-line override and loading from a file.

#[test]
fn override_device() {
    let mut cfg = ok(BASE);
    cfg.override_device("lan", "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")
        .unwrap();
    assert_eq!(
        cfg.ports[1].device,
        PortDevice::Vdev("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap".into())
    );
    assert!(cfg
        .eal_argv()
        .contains(&"net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap".to_string()));

    let e = cfg.override_device("dmz", "net_null0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "--port-device dmz=net_null0: no port named \"dmz\" (defined ports: wan, lan)"
    );

    let before = cfg.clone();
    let e = cfg.override_device("wan", "pcap0").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--port-device wan=pcap0: invalid vdev"),
        "{e}"
    );
    assert_eq!(e.position(), None);
    let e = cfg
        .override_device("wan", "net_pcap0,rx_pcap=x.pcap")
        .unwrap_err();
    assert!(e.to_string().contains("already uses"), "{e}");
    assert_eq!(cfg, before, "a failed override leaves the config as it was");

    // A PCI port can be swapped for a vdev even with --no-pci.
    let mut cfg = ok(&edit("\"--no-pci\"]", "]").replace(
        "vdev = \"net_af_packet0,iface=veth0\"",
        "pci = \"0000:03:00.0\"",
    ));
    cfg.override_device("wan", "net_null0").unwrap();
    assert_eq!(cfg.ports[0].device.eal_name(), "net_null0");
}

#[test]
fn load_from_file() {
    let dir = std::env::temp_dir().join(format!("sluice-config-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    assert_eq!(load(&good).unwrap(), ok(BASE));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[dataplane]\nburst = \"abc\"\n").unwrap();
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:9: invalid type", bad.display())),
        "{e}"
    );

    let missing = dir.join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The shipped examples are valid (the integration test runs them through
/// the binary as well).
#[test]
fn examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dpdk-config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3, "expected the examples in {}", dir.display());
}
