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
    rejects(&with("[listener]\nname = \"web\"\n"), "listener", &[
        "unknown key `listener`, expected one of `eal`, `dataplane`, `admin`, `log`, `port`, `route`, \
         `neighbor`, `conntrack`, `cluster`, `service`",
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

// [conntrack], [[cluster]] and [[service]].

/// BASE plus a cluster of two backends on "lan" and a service on "wan".
const L4: &str = r#"
[[cluster]]
name = "web"

[[cluster.backend]]
address = "10.1.0.11"

[[cluster.backend]]
address = "10.1.0.12"
port = 8080
weight = 2
name = "b2"

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
cluster = "web"
ingress = "wan"
"#;

/// BASE + L4 with its `old` text replaced by `new`.
fn l4(old: &str, new: &str) -> String {
    let text = format!("{BASE}{L4}");
    assert!(text.contains(old), "{old:?} not in BASE + L4");
    text.replacen(old, new, 1)
}

/// BASE + L4 followed by `extra`.
fn l4_with(extra: &str) -> String {
    format!("{BASE}{L4}\n{extra}")
}

/// 1-based line of the last occurrence of `needle`.
fn last_line_of(text: &str, needle: &str) -> usize {
    let at = text
        .rfind(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Like [`rejects`], for an error on the line of the last `needle`.
#[track_caller]
fn rejects_last(text: &str, needle: &str, words: &[&str]) -> ConfigError {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(
        e.line(),
        Some(last_line_of(text, needle)),
        "wrong line in {shown:?}\n{text}"
    );
    for w in words {
        assert!(shown.contains(w), "{shown:?} lacks {w:?}");
    }
    e
}

#[test]
fn l4_defaults() {
    let cfg = ok(BASE);
    assert_eq!(
        cfg.conntrack,
        Conntrack {
            max_flows: 1_048_576,
            new_flows_per_sec: 0,
            new_flows_burst: 1024,
            syn_timeout_s: 30,
            established_timeout_s: 3600,
            closing_timeout_s: 120,
            closed_timeout_s: 10,
            udp_timeout_s: 120,
            expire_budget: 64,
        }
    );
    assert!(cfg.clusters.is_empty() && cfg.services.is_empty());
    assert!(cfg.summary().contains("services: none"));

    let cfg = ok(&l4("", ""));
    let (i, c) = cfg.cluster("web").unwrap();
    assert_eq!(i, 0);
    assert!(cfg.cluster("api").is_none());
    assert_eq!(c.scheduler, Scheduler::Maglev);
    assert_eq!(c.maglev_table_size, 65_537);
    assert_eq!(c.hash_seed, 0);
    assert_eq!(
        c.backends[0],
        Backend {
            address: "10.1.0.11".parse().unwrap(),
            port: None,
            weight: 1,
            name: "10.1.0.11".into(),
        }
    );
    assert_eq!(
        (
            c.backends[1].port,
            c.backends[1].weight,
            c.backends[1].name.as_str()
        ),
        (Some(8080), 2, "b2")
    );
    let v = &cfg.services[0];
    assert_eq!(v.vip, "10.0.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(v.port, 80);
    assert_eq!((v.protocol, v.mode), (Protocol::Tcp, ForwardMode::Nat));
    assert_eq!((v.cluster_name(), v.ingress_name()), ("web", "wan"));
    assert!(v.snat.is_empty());
}

#[test]
fn l4_every_key() {
    let cfg = ok(&with(
        r#"
[conntrack]
max_flows = 4096
new_flows_per_sec = 100000
new_flows_burst = 5000
syn_timeout_s = 5
established_timeout_s = 900
closing_timeout_s = 60
closed_timeout_s = 1
udp_timeout_s = 30
expire_budget = 4096

[[cluster]]
name = "dns"
scheduler = "source-hash"
maglev_table_size = 7
hash_seed = 9223372036854775807

[[cluster.backend]]
address = "10.1.0.53"
port = 5353
weight = 65535
name = "ns-1.example"

[[cluster.backend]]
address = "10.2.0.53"
weight = 0

[[cluster]]
name = "v6"
scheduler = "least-conn"

[[cluster.backend]]
address = "fd00::11"

[[cluster]]
name = "rr"
scheduler = "wrr"

[[cluster.backend]]
address = "10.1.0.80"

[[service]]
name = "dns"
vip = "10.0.0.53"
port = 53
protocol = "udp"
mode = "nat"
cluster = "dns"
ingress = "wan"
snat = ["10.1.0.1", "10.0.0.1"]

[[service]]
name = "v6-all"
vip = "fd00::100"
port = 0
protocol = "tcp"
mode = "l2dsr"
cluster = "v6"
ingress = "wan"

[[service]]
name = "gre"
vip = "10.0.0.101"
port = 443
mode = "gre"
cluster = "rr"
ingress = "lan"

[[service]]
name = "ipip"
vip = "10.0.0.101"
port = 80
mode = "ipip"
cluster = "rr"
ingress = "lan"
"#,
    ));
    assert_eq!(cfg.conntrack.max_flows, 4096);
    assert_eq!(cfg.conntrack.new_flows_per_sec, 100_000);
    assert_eq!(cfg.conntrack.udp_timeout_s, 30);
    assert_eq!(cfg.conntrack.expire_budget, 4096);
    let dns = &cfg.clusters[0];
    assert_eq!(dns.scheduler, Scheduler::SourceHash);
    assert_eq!(dns.maglev_table_size, 7);
    assert_eq!(dns.hash_seed, i64::MAX as u64);
    assert_eq!(dns.backends[0].name, "ns-1.example");
    assert_eq!(dns.backends[1].weight, 0);
    assert_eq!(cfg.clusters[1].scheduler, Scheduler::LeastConn);
    assert_eq!(cfg.clusters[2].scheduler, Scheduler::Wrr);
    let [dns, v6, gre, ipip] = &cfg.services[..] else {
        panic!("four services")
    };
    assert_eq!((dns.protocol, dns.protocol.number()), (Protocol::Udp, 17));
    assert_eq!(Protocol::Tcp.number(), 6);
    assert_eq!(
        dns.snat,
        [
            "10.1.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.1".parse().unwrap()
        ]
    );
    assert_eq!((v6.port, v6.mode), (0, ForwardMode::L2Dsr));
    assert_eq!(gre.mode, ForwardMode::Gre);
    assert_eq!(ipip.mode, ForwardMode::Ipip);
    assert!(ipip.mode.is_dsr() && !dns.mode.is_dsr());
    assert_eq!(ipip.cluster_name(), gre.cluster_name());
    assert_eq!(ForwardMode::L2Dsr.to_string(), "l2dsr");
    assert_eq!(Scheduler::LeastConn.to_string(), "least-conn");
}

#[test]
fn l4_summary() {
    let s = ok(&l4_with(
        "[[service]]\nname = \"all\"\nvip = \"10.0.0.102\"\nport = 0\nmode = \"ipip\"\n\
         cluster = \"dsr\"\ningress = \"wan\"\n\n[[cluster]]\nname = \"dsr\"\n\
         [[cluster.backend]]\naddress = \"10.1.0.21\"\nweight = 0\n\n\
         [[cluster]]\nname = \"spare\"\n[[cluster.backend]]\naddress = \"10.1.0.31\"\n",
    ))
    .summary();
    for want in [
        "conntrack: 1048576 flows per worker, new flows unlimited; idle timeouts syn 30 s, \
         established 3600 s, closing 120 s, closed 10 s, udp 120 s; 64 examined for expiry per loop",
        "cluster web: maglev (table 65537, hash seed 0), 2 backends, total weight 3",
        "  backend 10.1.0.11, weight 1\n",
        "  backend 10.1.0.12:8080 (b2), weight 2\n",
        "  backend 10.1.0.21, weight 0, draining\n",
        "service web: 10.0.0.100:80/tcp -> nat -> cluster web, vip on port wan, snat from the egress port's address",
        "service all: 10.0.0.102:*/tcp -> ipip -> cluster dsr, vip on port wan\n",
        "note: cluster spare is not used by any service",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
    assert!(!s.contains("services: none"), "{s}");
    assert!(!s.contains("note: cluster web"), "{s}");
    let s = ok(&l4(
        "ingress = \"wan\"",
        "ingress = \"wan\"\nsnat = [\"10.1.0.1\"]",
    )
    .replace("vip = \"10.0.0.100\"", "vip = \"fd00::100\"")
    .replace("\"10.1.0.1\"]\n", "\"fd00::1\"]\n")
    .replace("10.1.0.11", "fd00::11")
    .replace("10.1.0.12", "fd00::12")
    .replace("[eal]", "[conntrack]\nnew_flows_per_sec = 5000\n\n[eal]"))
    .summary();
    for want in [
        "at most 5000 new flows/s (burst 1024)",
        "  backend [fd00::12]:8080 (b2), weight 2",
        "service web: [fd00::100]:80/tcp -> nat -> cluster web, vip on port wan, snat fd00::1",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
}

#[test]
fn conntrack_ranges() {
    for (line, key, words) in [
        (
            "max_flows = 1023",
            "max_flows",
            "`conntrack.max_flows` 1023 is out of range 1024..=67108864",
        ),
        (
            "max_flows = 67108865",
            "max_flows",
            "`conntrack.max_flows` 67108865 is out of range 1024..=67108864",
        ),
        (
            "new_flows_burst = 0",
            "new_flows_burst",
            "`conntrack.new_flows_burst` must be at least 1",
        ),
        (
            "syn_timeout_s = 0",
            "syn_timeout_s",
            "`conntrack.syn_timeout_s` must be at least 1",
        ),
        (
            "established_timeout_s = 0",
            "established_timeout_s",
            "`conntrack.established_timeout_s` must be at least 1",
        ),
        (
            "closing_timeout_s = 0",
            "closing_timeout_s",
            "`conntrack.closing_timeout_s` must be at least 1",
        ),
        (
            "closed_timeout_s = 0",
            "closed_timeout_s",
            "`conntrack.closed_timeout_s` must be at least 1",
        ),
        (
            "udp_timeout_s = 0",
            "udp_timeout_s",
            "`conntrack.udp_timeout_s` must be at least 1",
        ),
        (
            "expire_budget = 0",
            "expire_budget",
            "`conntrack.expire_budget` 0 is out of range 1..=4096",
        ),
        (
            "expire_budget = 4097",
            "expire_budget",
            "`conntrack.expire_budget` 4097 is out of range 1..=4096",
        ),
    ] {
        let text = with(&format!("[conntrack]\n{line}\n"));
        rejects_last(&text, &format!("{key} ="), &[words]);
    }
    rejects(
        &with("[conntrack]\nmax_flows = -1\n"),
        "-1",
        &["expected u32", "`conntrack.max_flows`"],
    );
    rejects(
        &with("[conntrack]\nsyn_timeout = 30\n"),
        "syn_timeout",
        &[
            "unknown key `syn_timeout`",
            "`syn_timeout_s`",
            "(in `conntrack`)",
        ],
    );
    ok(&with(
        "[conntrack]\nmax_flows = 1024\nnew_flows_burst = 1\nexpire_budget = 1\n",
    ));
}

#[test]
fn cluster_names() {
    rejects(
        &l4(
            "name = \"web\"\n\n[[cluster.backend]]",
            "name = \"web site\"\n\n[[cluster.backend]]",
        ),
        "\"web site\"",
        &["cluster name \"web site\" must be 1..=32 characters of [A-Za-z0-9_-]"],
    );
    let text =
        l4_with("[[cluster]]\nname = \"web\"\n[[cluster.backend]]\naddress = \"10.1.0.13\"\n");
    let e = rejects_last(&text, "name = \"web\"", &["duplicate cluster name \"web\""]);
    assert!(
        e.to_string().contains(&format!(
            "(first defined at line {})",
            line_of(&text, "name = \"web\"")
        )),
        "{e}"
    );
}

#[test]
fn cluster_without_backend() {
    let text = l4_with("[[cluster]]\nname = \"empty\"\n");
    rejects_last(
        &text,
        "[[cluster]]",
        &["cluster \"empty\" has no backend: add at least one [[cluster.backend]]"],
    );
}

#[test]
fn maglev_table_size() {
    let size = |n: &str| {
        l4(
            "name = \"web\"\n",
            &format!("name = \"web\"\nmaglev_table_size = {n}\n"),
        )
    };
    rejects(
        &size("65536"),
        "maglev_table_size",
        &[
            "cluster \"web\": maglev_table_size 65536 is not prime",
            "the next prime is 65537",
        ],
    );
    rejects(
        &size("1000"),
        "maglev_table_size",
        &["the next prime is 1009"],
    );
    rejects(
        &size("6"),
        "maglev_table_size",
        &["maglev_table_size 6 is out of range 7..=1048573"],
    );
    rejects(
        &size("1048583"),
        "maglev_table_size",
        &["out of range 7..=1048573"],
    );
    ok(&size("7"));
    ok(&size("1048573"));
    // Fewer slots than backends: Maglev cannot give each one a slot.
    let text = size("7").replacen(
        "name = \"b2\"\n",
        &format!(
            "name = \"b2\"\n{}",
            (13..19)
                .map(|k| format!("\n[[cluster.backend]]\naddress = \"10.1.0.{k}\"\n"))
                .collect::<String>()
        ),
        1,
    );
    rejects(
        &text,
        "maglev_table_size",
        &["maglev_table_size 7 is smaller than its 8 backends with a non-zero weight"],
    );
    // Other schedulers have no table to fill; drained backends take no slot.
    ok(&text.replace(
        "maglev_table_size = 7",
        "maglev_table_size = 7\nscheduler = \"wrr\"",
    ));
    ok(&text.replace(
        "address = \"10.1.0.18\"",
        "address = \"10.1.0.18\"\nweight = 0",
    ));
}

#[test]
fn backends() {
    rejects(
        &l4("address = \"10.1.0.11\"", "address = \"10.1.0.0/24\""),
        "\"10.1.0.0/24\"",
        &["invalid IP address \"10.1.0.0/24\": give a single address, without a prefix length"],
    );
    rejects(
        &l4("address = \"10.1.0.11\"", "address = \"web1\""),
        "\"web1\"",
        &[
            "invalid IP address \"web1\"",
            "`cluster[0].backend[0].address`",
        ],
    );
    rejects(
        &l4("address = \"10.1.0.11\"", "addr = \"10.1.0.11\""),
        "addr =",
        &[
            "unknown key `addr`",
            "`address`",
            "(in `cluster[0].backend[0]`)",
        ],
    );
    rejects(
        &l4("address = \"10.1.0.11\"", "address = \"127.0.0.1\""),
        "\"127.0.0.1\"",
        &["backend 127.0.0.1 of cluster \"web\" is a loopback address"],
    );
    rejects(
        &l4("address = \"10.1.0.11\"", "address = \"10.1.0.1\""),
        "\"10.1.0.1\"",
        &["backend 10.1.0.1 of cluster \"web\" is an address of port \"lan\""],
    );
    rejects(
        &l4("port = 8080", "port = 0"),
        "port = 0",
        &["backend 10.1.0.12 of cluster \"web\": port 0 is out of range 1..=65535"],
    );
    rejects(
        &l4("port = 8080", "port = 65536"),
        "65536",
        &["expected u16", "`cluster[0].backend[1].port`"],
    );
    rejects(
        &l4("weight = 2", "weight = 65536"),
        "weight = 65536",
        &["weight 65536 is out of range 0..=65535"],
    );
    rejects(
        &l4("name = \"b2\"", "name = \"b 2\""),
        "\"b 2\"",
        &["backend name \"b 2\" must be 1..=64 characters of [A-Za-z0-9_.:-]"],
    );
    rejects(
        &l4("address = \"10.1.0.12\"", "address = \"10.1.0.11\""),
        "address = \"10.1.0.11\"\nport",
        &["duplicate backend 10.1.0.11 in cluster \"web\" (first defined at line"],
    );
    // A default name is the address: it clashes with a name written as it.
    rejects(
        &l4("name = \"b2\"", "name = \"10.1.0.11\""),
        "name = \"10.1.0.11\"",
        &["duplicate backend name \"10.1.0.11\" in cluster \"web\""],
    );
    let e = rejects_last(
        &l4_with("[[cluster.backend]]\naddress = \"10.1.0.13\"\nname = \"b2\"\n"),
        "name = \"b2\"",
        &["duplicate backend name \"b2\""],
    );
    let text = l4_with("");
    assert!(
        e.to_string().contains(&format!(
            "(first defined at line {})",
            line_of(&text, "name = \"b2\"")
        )),
        "{e}"
    );
    rejects(
        &l4("name = \"web\"\n", "name = \"web\"\nscheduler = \"round-robin\"\n"),
        "\"round-robin\"",
        &["unknown variant `round-robin`, expected one of `maglev`, `wrr`, `least-conn`, `source-hash`"],
    );
    rejects(
        &l4("name = \"web\"\n", "name = \"web\"\nhash_seed = -1\n"),
        "-1",
        &["expected u64", "`cluster[0].hash_seed`"],
    );
}

#[test]
fn unreachable_backend() {
    let no_default = l4("gateway = \"10.0.0.254\"\n", "");
    let text = no_default.replace("10.1.0.12", "10.9.0.12");
    rejects(
        &text,
        "\"10.9.0.12\"",
        &["backend 10.9.0.12 of cluster \"web\" is unreachable: it is not inside a connected subnet \
           (10.0.0.0/24, 10.1.0.0/24), no [[route]] covers it, and no port sets `gateway`"],
    );
    ok(&format!(
        "{text}\n[[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"10.1.0.254\"\nport = \"lan\"\n"
    ));
    ok(&l4("10.1.0.12", "10.9.0.12"));
}

#[test]
fn service_to_missing_cluster() {
    let text = l4("cluster = \"web\"", "cluster = \"wbe\"");
    let e = rejects(
        &text,
        "\"wbe\"",
        &["cluster \"wbe\" referenced by service \"web\" is not defined (defined clusters: web)"],
    );
    assert_eq!(e.position().unwrap().column, 11);
    let text = with(
        "[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\ncluster = \"web\"\ningress = \"wan\"\n",
    );
    rejects(
        &text,
        "cluster = \"web\"",
        &["cluster \"web\" referenced by service \"web\" is not defined (no [[cluster]] is defined)"],
    );
}

#[test]
fn service_to_missing_port() {
    rejects(
        &l4("ingress = \"wan\"", "ingress = \"dmz\""),
        "\"dmz\"",
        &["port \"dmz\" referenced by service \"web\" is not defined (defined ports: wan, lan)"],
    );
}

#[test]
fn service_keys() {
    rejects(
        &l4("port = 80\n", ""),
        "[[service]]",
        &["missing key `port`", "(in `service[0]`)"],
    );
    rejects(
        &l4("port = 80\n", "port = 80\nmode = \"dsr\"\n"),
        "\"dsr\"",
        &["unknown variant `dsr`, expected one of `nat`, `ipip`, `gre`, `l2dsr`"],
    );
    rejects(
        &l4("port = 80\n", "port = 80\nprotocol = \"sctp\"\n"),
        "\"sctp\"",
        &["unknown variant `sctp`, expected `tcp` or `udp`"],
    );
    rejects(
        &l4("vip = \"10.0.0.100\"", "vip = \"10.0.0.100/32\""),
        "\"10.0.0.100/32\"",
        &["without a prefix length", "`service[0].vip`"],
    );
    rejects(
        &l4("name = \"web\"\nvip", "name = \"web.example\"\nvip"),
        "\"web.example\"",
        &["service name \"web.example\" must be 1..=32 characters of [A-Za-z0-9_-]"],
    );
    rejects(
        &l4("vip = \"10.0.0.100\"", "vip = \"224.0.0.100\""),
        "\"224.0.0.100\"",
        &["service \"web\": vip 224.0.0.100 is a multicast address"],
    );
}

#[test]
fn duplicate_service() {
    let second = |name: &str, vip: &str, port: u16, proto: &str| {
        l4_with(&format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"{proto}\"\n\
             cluster = \"web\"\ningress = \"wan\"\n"
        ))
    };
    let text = second("web", "10.0.0.101", 80, "tcp");
    let e = rejects_last(&text, "name = \"web\"", &["duplicate service name \"web\""]);
    assert!(
        e.to_string().contains(&format!(
            "(first defined at line {})",
            line_of(&text, "name = \"web\"\nvip")
        )),
        "{e}"
    );
    rejects_last(
        &second("web2", "10.0.0.100", 80, "tcp"),
        "port = 80",
        &[
            "service \"web2\": 10.0.0.100:80/tcp is already served by service \"web\"",
            "first defined at line",
        ],
    );
    // Port 0 takes every port: it overlaps any other service on its vip.
    rejects_last(
        &second("all", "10.0.0.100", 0, "tcp"),
        "port = 0",
        &["service \"all\" on 10.0.0.100:*/tcp overlaps service \"web\" on 10.0.0.100:80/tcp"],
    );
    let text = format!(
        "{}\n[[service]]\nname = \"web3\"\nvip = \"10.0.0.101\"\nport = 443\ncluster = \"web\"\ningress = \"wan\"\n",
        second("all", "10.0.0.101", 0, "tcp")
    );
    rejects_last(
        &text,
        "port = 443",
        &["service \"web3\" on 10.0.0.101:443/tcp overlaps service \"all\" on 10.0.0.101:*/tcp"],
    );
    // Other protocol, other port or other vip: no clash. A cluster may serve
    // several services.
    ok(&second("dns", "10.0.0.100", 80, "udp"));
    ok(&second("web2", "10.0.0.100", 443, "tcp"));
    ok(&second("web2", "10.0.0.101", 80, "tcp"));
    ok(&second("all", "10.0.0.101", 0, "udp"));
}

#[test]
fn vip_is_port_address() {
    let text = l4("vip = \"10.0.0.100\"", "vip = \"10.1.0.1\"");
    let e = rejects(
        &text,
        "vip = \"10.1.0.1\"",
        &["service \"web\": vip 10.1.0.1 is an address of port \"lan\""],
    );
    assert!(
        e.to_string().contains(&format!(
            "(port address at line {})",
            line_of(&text, "\"10.1.0.1/24\"")
        )),
        "{e}"
    );
}

#[test]
fn vip_backend_family() {
    let text = l4("vip = \"10.0.0.100\"", "vip = \"fd00::100\"");
    let e = rejects(
        &text,
        "cluster = \"web\"",
        &["service \"web\" has IPv6 vip fd00::100, but cluster \"web\" has IPv4 backend 10.1.0.11: \
           in every mode the backends must have the vip's family"],
    );
    assert!(
        e.to_string().contains(&format!(
            "(backend at line {})",
            line_of(&text, "\"10.1.0.11\"")
        )),
        "{e}"
    );
    ok(&text
        .replace("10.1.0.11", "fd00::11")
        .replace("10.1.0.12", "fd00::12"));
}

#[test]
fn snat() {
    let snat = |list: &str| {
        l4(
            "ingress = \"wan\"",
            &format!("ingress = \"wan\"\nsnat = [{list}]"),
        )
    };
    ok(&snat("\"10.1.0.1\""));
    ok(&snat("\"10.1.0.1\", \"10.0.0.1\""));
    rejects(
        &snat("\"10.1.0.1\"").replace("port = 80\n", "port = 80\nmode = \"ipip\"\n"),
        "snat =",
        &["service \"web\": `snat` applies to mode \"nat\" only; mode ipip keeps the client's address"],
    );
    rejects(
        &snat("\"10.1.0.1\", \"10.1.0.2\""),
        "snat =",
        &[
            "service \"web\": snat address 10.1.0.2 is not an address of any [[port]] \
           (IPv4 port addresses: 10.0.0.1, 10.1.0.1)",
        ],
    );
    rejects(
        &snat("\n  \"fd00::1\",\n"),
        "\"fd00::1\",",
        &["snat address fd00::1 is IPv6, but the vip and its backends are IPv4"],
    );
    rejects(
        &snat("\"10.1.0.1\", \"10.1.0.1\""),
        "snat =",
        &["snat address 10.1.0.1 is listed twice"],
    );
    rejects_last(
        &snat("\"10.1.0.1/24\""),
        "\"10.1.0.1/24\"",
        &["without a prefix length", "`service[0].snat[0]`"],
    );
}

#[test]
fn dsr_cannot_change_port() {
    for mode in ["ipip", "gre", "l2dsr"] {
        let text = l4("port = 80\n", &format!("port = 80\nmode = \"{mode}\"\n"));
        let e = rejects(
            &text,
            "port = 8080",
            &[
                &format!(
                    "backend 10.1.0.12 of cluster \"web\" sets port 8080, but service \"web\" forwards \
                     to this cluster in mode {mode}, which cannot change the destination port"
                ),
                "must listen there itself",
                "Remove `port` from the backend, or use mode \"nat\"",
            ],
        );
        assert!(
            e.to_string()
                .contains(&format!("(mode set at line {})", line_of(&text, "mode ="))),
            "{e}"
        );
        ok(&text.replace("port = 8080\n", ""));
    }
}

#[test]
fn l2dsr_needs_connected_backends() {
    let text = l4("port = 80\n", "port = 80\nmode = \"l2dsr\"\n")
        .replace("port = 8080\n", "")
        .replace("10.1.0.12", "10.9.0.12");
    let e = rejects(
        &text,
        "mode = \"l2dsr\"",
        &["service \"web\" is in mode l2dsr, but backend 10.9.0.12 of cluster \"web\" is not inside a \
           connected subnet of any port (10.0.0.0/24, 10.1.0.0/24)",
          "Use mode ipip or gre for routed backends"],
    );
    assert!(
        e.to_string().contains(&format!(
            "(backend at line {})",
            line_of(&text, "\"10.9.0.12\"")
        )),
        "{e}"
    );
    // The same routed backend is fine when tunnelled.
    ok(&text.replace("mode = \"l2dsr\"", "mode = \"gre\""));
}

#[test]
fn reload() {
    let running = ok(&l4("", ""));
    // Only lines moved, clusters and services changed: reloadable.
    let new = ok(&format!(
        "# comment\n\n{}",
        l4("weight = 2", "weight = 5").replace("port = 80\n", "port = 8080\n")
    )
    .replace("[eal]", "[log]\nlevel = \"debug\"\n\n[eal]"));
    assert_eq!(running.check_reloadable(&new), Ok(()));
    let new = ok(BASE);
    assert_eq!(running.check_reloadable(&new), Ok(()));
    // Port names held by routes and neighbors compare by name, not position.
    let routed = with(
        "[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.1.0.254\"\nport = \"lan\"\n\n\
         [[neighbor]]\nip = \"10.1.0.254\"\nmac = \"02:00:00:00:00:fe\"\nport = \"lan\"\n",
    );
    assert_eq!(
        ok(&routed).check_reloadable(&ok(&format!("# moved\n\n{routed}"))),
        Ok(())
    );

    let differs = |text: &str| running.check_reloadable(&ok(text)).unwrap_err();
    let e = differs(&l4_with("[conntrack]\nsyn_timeout_s = 10\n"));
    assert!(
        e.starts_with(
            "[conntrack] differs from the running config and needs a restart: \
             a reload applies only [[cluster]], [[service]] and [log]"
        ),
        "{e}"
    );
    let e = differs(&l4("workers = [1, 2]", "workers = [1, 3]"));
    assert!(e.starts_with("[dataplane] differs"), "{e}");
    let e = differs(&l4("\"--no-pci\"]", "\"--no-pci\", \"-n\", \"4\"]"));
    assert!(e.starts_with("[eal] differs"), "{e}");
    let e = differs(&l4_with("[admin]\nenabled = false\n"));
    assert!(e.starts_with("[admin] differs"), "{e}");
    let e = differs(&l4(
        "name = \"lan\"\nvdev",
        "name = \"lan\"\nmtu = 9000\nvdev",
    ));
    assert!(e.starts_with("[[port]] \"lan\" differs"), "{e}");
    let e =
        differs(&l4("name = \"lan\"\nvdev", "name = \"dmz\"\nvdev").replace("\"lan\"", "\"dmz\""));
    assert!(
        e.starts_with("the list of [[port]]s (wan, lan now, wan, dmz in the new config) differs"),
        "{e}"
    );
    let e = differs(&l4_with(
        "[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.1.0.254\"\nport = \"lan\"\n",
    ));
    assert!(e.starts_with("[[route]] differs"), "{e}");
    let e = differs(&l4_with(
        "[[neighbor]]\nip = \"10.1.0.254\"\nmac = \"02:00:00:00:00:fe\"\nport = \"lan\"\n",
    ));
    assert!(e.starts_with("[[neighbor]] differs"), "{e}");
}
