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
            worker_cpus: vec![],
            idle_sleep_us: 0,
            burst: 32,
            mbufs: 8191,
            mbuf_cache: 256,
            rx_desc: 2048,
            tx_desc: 1024,
            tx_drain_us: 100,
            neighbor_timeout_s: 300,
            neighbor_retry_ms: 1000,
            on_worker_failure: OnWorkerFailure::Exit,
            worker_stuck_ms: 5000,
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
    let dp = &cfg.dataplane;
    assert_eq!(
        (dp.tx_drain_us, dp.neighbor_timeout_s, dp.neighbor_retry_ms),
        (100, 300, 1000)
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
    assert_eq!(cfg.routes[0].port.as_str(), "lan");
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
    // BASE has two workers on af_packet ports without qpairs.
    assert!(
        s.contains("note: port wan: net_af_packet needs qpairs=2 in its device arguments"),
        "{s}"
    );
    let s = ok(&edit("workers = [1, 2]", "workers = [1]")).summary();
    assert!(!s.contains("note:"), "{s}");
    let s = ok(&BASE
        .replace("iface=veth0", "iface=veth0,qpairs=2")
        .replace("iface=veth1", "iface=veth1,qpairs=2"))
    .summary();
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
    rejects(&with("[[listeners]]\nname = \"web\"\n"), "listeners", &[
        "unknown key `listeners`, expected one of `eal`, `dataplane`, `admin`, `log`, `port`, `route`, \
         `neighbor`, `conntrack`, `cluster`, `service`, `listener`",
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
fn af_xdp_needs_mbufs_for_its_fill_rings() {
    // Two af_xdp ports: 2 x 2048 for the fill rings + 1024 spare.
    let two = edit("net_af_packet0,", "net_af_xdp0,").replace("net_af_packet1,", "net_af_xdp1,");
    // The default 8191 is enough.
    ok(&two);
    let small = two.replace("workers = [1, 2]", "workers = [1, 2]\nmbufs = 5119");
    rejects(
        &small,
        "mbufs = 5119",
        &[
            "`dataplane.mbufs` 5119 is too small for 2 net_af_xdp port(s)",
            "at least 5120",
        ],
    );
    ok(&small.replace("5119", "5120"));
    // Left at a default that is too small for many ports, the error points
    // at the first af_xdp port.
    let mut many = two.clone();
    for i in 2..4 {
        many.push_str(&format!(
            "\n[[port]]\nname = \"x{i}\"\nvdev = \"net_af_xdp{i},iface=x{i}\"\naddresses = [\"10.{i}.0.1/24\"]\n"
        ));
    }
    rejects(
        &many,
        "\"net_af_xdp0",
        &["8191 is too small for 4 net_af_xdp port(s)", "9216"],
    );
    // af_packet ports take nothing from the pool for good.
    ok(&edit("workers = [1, 2]", "workers = [1, 2]\nmbufs = 1024"));
}

#[test]
fn af_xdp_and_pci_ports_do_not_share_a_pool() {
    let mixed = |first_pci: bool| {
        let xdp = "[[port]]\nname = \"x\"\nvdev = \"net_af_xdp0,iface=x\"\naddresses = [\"10.5.0.1/24\"]\n";
        let nic = "[[port]]\nname = \"n\"\npci = \"0000:03:00.0\"\naddresses = [\"10.6.0.1/24\"]\n";
        let (a, b) = if first_pci { (nic, xdp) } else { (xdp, nic) };
        format!("{}\n{a}\n{b}", BASE.replace(", \"--no-pci\"", ""))
    };
    for (first_pci, needle) in [(false, "pci = "), (true, "vdev = \"net_af_xdp0")] {
        rejects(
            &mixed(first_pci),
            needle,
            &[
                "cannot run together",
                "net_af_xdp port and a PCI port",
                "mbuf pool",
            ],
        );
    }
    // af_packet and PCI ports may.
    ok(&mixed(false).replace("net_af_xdp0,", "net_af_packet9,"));
}

#[test]
fn nic_ports_need_mbufs_for_their_rx_rings() {
    // Each PCI port's rx ring holds rx_desc (2048 by default) mbufs.
    let nics = |n: usize| {
        let mut t = BASE.replace(", \"--no-pci\"", "");
        for i in 0..n {
            t.push_str(&format!(
                "\n[[port]]\nname = \"n{i}\"\npci = \"0000:0{i}:00.0\"\naddresses = [\"10.7{i}.0.1/24\"]\n"
            ));
        }
        t
    };
    ok(&nics(3));
    rejects(
        &nics(4),
        "\"0000:00:00.0",
        &[
            "`dataplane.mbufs` 8191 is too small for the receive rings",
            "each of the 4 PCI port(s)",
            "(2048)",
            "at least 9216",
        ],
    );
    ok(&nics(4).replace("workers = [1, 2]", "workers = [1, 2]\nmbufs = 9216"));
    ok(&nics(4).replace("workers = [1, 2]", "workers = [1, 2]\nrx_desc = 1024"));
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

#[test]
fn worker_cpus_map_lcores_onto_fewer_cpus() {
    // Three workers on a two-CPU machine: the EAL gets --lcores instead of
    // -l, the main lcore on the CPU of its own number.
    let text = edit(
        "workers = [1, 2]",
        "workers = [1, 2, 3]\nworker_cpus = [1, 1, 0]\nidle_sleep_us = 50",
    );
    let cfg = ok(&text);
    assert_eq!(cfg.dataplane.idle_sleep_us, 50);
    assert_eq!(
        cfg.eal_argv()[..5],
        ["sluice", "--lcores", "0@0,1@1,2@1,3@0", "--main-lcore", "0"]
    );
    let s = cfg.summary();
    for want in [
        "eal: sluice --lcores 0@0,1@1,2@1,3@0 --main-lcore 0",
        "lcores: main 0, 3 workers on 1,2,3",
        "workers run on CPUs 1,1,0 (dataplane.worker_cpus: for tests",
        "idle workers pause, then sleep 50 us",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
    rejects(
        &edit("workers = [1, 2]", "workers = [1, 2]\nworker_cpus = [0]"),
        "worker_cpus = [0]",
        &["names 1 CPU(s) for 2 worker(s)"],
    );
    rejects(
        &edit(
            "workers = [1, 2]",
            "workers = [1, 2]\nworker_cpus = [0, 1024]",
        ),
        "worker_cpus = [0, 1024]",
        &["CPU 1024 is out of range: CPU ids are 0..=1023"],
    );
    rejects(
        &edit(
            "workers = [1, 2]",
            "workers = [1, 2]\nidle_sleep_us = 20000",
        ),
        "idle_sleep_us = 20000",
        &["`dataplane.idle_sleep_us` 20000 is out of range 0..=10000"],
    );
    rejects(
        &edit("\"--no-pci\"]", "\"--no-pci\", \"--lcores\", \"0@0\"]"),
        "args = ",
        &[
            "EAL option --lcores is derived from",
            "`dataplane.worker_cpus`",
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
            tls_server_name: None,
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
    assert_eq!((v.cluster.as_str(), v.ingress.as_str()), ("web", "wan"));
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
    assert_eq!(ipip.cluster, gre.cluster);
    assert_eq!(ForwardMode::L2Dsr.to_string(), "l2dsr");
    assert_eq!(Scheduler::LeastConn.to_string(), "least-conn");
}

#[test]
fn l4_summary() {
    let s = ok(&l4_with(
        "[[service]]\nname = \"all\"\nvip = \"10.0.0.102\"\nport = 0\nmode = \"ipip\"\n\
         cluster = \"dsr\"\ningress = \"wan\"\n\n[[cluster]]\nname = \"dsr\"\n\
         [cluster.health_check]\ntype = \"tcp\"\nport = 80\n\
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
        "  backend 10.1.0.21, weight 0, draining\n  health check: TCP connect on port 80 every 2000 ms \
         (timeout 1000 ms), up after 2 passes, down after 3 failures\n",
        "service web: 10.0.0.100:80/tcp -> nat -> cluster web, vip on port wan, snat from the egress port's address",
        "service all: 10.0.0.102:*/tcp -> ipip -> cluster dsr, vip on port wan\n",
        "note: cluster spare is not used by any service or listener",
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
             a reload applies only [[cluster]], [[service]], [log] and [[listener]] (but not which \
             listeners exist, their buffers or their connection limits)"
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

// [[listener]] and the L7 keys of [[cluster]].

/// BASE plus two clusters on "lan" whose backends have ports, and a
/// listener on "wan" with one route.
const L7: &str = r#"
[[cluster]]
name = "web"

[[cluster.backend]]
address = "10.1.0.11"
port = 8080

[[cluster.backend]]
address = "10.1.0.12"
port = 8080

[[cluster]]
name = "api"
balance = "least-request"

[[cluster.backend]]
address = "10.1.0.21"
port = 9000

[[listener]]
name = "http"
address = "10.0.0.100"
port = 80
ingress = "wan"
default_cluster = "web"

[[listener.route]]
host = "api.example.com"
cluster = "api"
"#;

/// BASE + L7 with its `old` text replaced by `new`.
fn l7(old: &str, new: &str) -> String {
    let text = format!("{BASE}{L7}");
    assert!(text.contains(old), "{old:?} not in BASE + L7");
    text.replacen(old, new, 1)
}

/// BASE + L7 followed by `extra`.
fn l7_with(extra: &str) -> String {
    format!("{BASE}{L7}\n{extra}")
}

/// BASE + L7 with `keys` added to the "web" cluster.
fn web_cluster(keys: &str) -> String {
    l7("name = \"web\"\n", &format!("name = \"web\"\n{keys}\n"))
}

/// BASE + L7 with `keys` added to the listener.
fn listener(keys: &str) -> String {
    l7(
        "default_cluster = \"web\"\n",
        &format!("default_cluster = \"web\"\n{keys}\n"),
    )
}

/// BASE + L7 with a second route holding `keys` (and `cluster = "web"`).
fn route(keys: &str) -> String {
    l7_with(&format!("[[listener.route]]\n{keys}\ncluster = \"web\"\n"))
}

#[test]
fn l7_defaults() {
    let cfg = ok(&l7("", ""));
    let (_, web) = cfg.cluster("web").unwrap();
    assert_eq!(web.balance, Balance::RoundRobin);
    assert_eq!(
        (&web.hash_on, &web.sticky_cookie, web.sticky_max_age_s),
        (&None, &None, None)
    );
    assert_eq!(
        (
            web.connect_timeout_ms,
            web.response_timeout_ms,
            web.retries,
            web.retry_budget_percent,
            web.max_idle_per_backend
        ),
        (2000, 30_000, 2, 20, 64)
    );
    assert!(web.retry_on_status.is_empty() && web.health_check.is_none());
    assert_eq!(cfg.clusters[1].balance, Balance::LeastRequest);

    let l = &cfg.listeners[0];
    assert_eq!(l.name, "http");
    assert_eq!(l.address, "10.0.0.100".parse::<IpAddr>().unwrap());
    assert_eq!((l.port, l.protocol), (80, ListenerProtocol::Http));
    assert_eq!(
        (l.ingress.as_str(), l.default_cluster.as_deref()),
        ("wan", Some("web"))
    );
    assert!(l.snat.is_empty());
    assert_eq!(
        [
            l.client_rx_buffer,
            l.client_tx_buffer,
            l.upstream_rx_buffer,
            l.upstream_tx_buffer
        ],
        [65536; 4]
    );
    assert_eq!((l.max_connections, l.max_half_open), (16384, 4096));
    assert_eq!((l.syn_cookies, l.syn_cookie_threshold), (true, 256));
    assert_eq!(
        (
            l.handshake_timeout_ms,
            l.header_timeout_ms,
            l.idle_timeout_ms
        ),
        (10_000, 10_000, 60_000)
    );
    assert_eq!(
        (l.max_head_bytes, l.max_headers, l.max_uri_bytes),
        (16384, 100, 8192)
    );
    assert_eq!(l.max_body_bytes, 1 << 30);
    assert_eq!(l.bytes_per_connection(), 4 * 65536 + 2048);
    assert_eq!(
        crate::control::compile::limits(l),
        crate::l7::http::Limits {
            max_head_bytes: 16384,
            max_headers: 100,
            max_uri_bytes: 8192,
            max_body_bytes: 1 << 30,
        }
    );
    assert_eq!(l.cluster_names().collect::<Vec<_>>(), ["web", "api"]);
    let r = &l.routes[0];
    assert_eq!(
        (r.host.as_deref(), r.cluster.as_deref()),
        (Some("api.example.com"), Some("api"))
    );
    assert!(r.path_prefix.is_none() && r.headers.is_empty() && r.request_headers_set.is_empty());

    // No listener: none of it.
    assert!(ok(BASE).listeners.is_empty());
}

#[test]
fn l7_every_key() {
    let cfg = ok(&format!(
        "{BASE}{}",
        r#"
[[cluster]]
name = "web"
balance = "consistent-hash"
hash_on = "cookie:session"
sticky_cookie = "SLUICE"
sticky_max_age_s = 600
connect_timeout_ms = 600000
response_timeout_ms = 3600000
retries = 10
retry_on_status = [502, 503, 599]
retry_budget_percent = 100
max_idle_per_backend = 65536

[cluster.health_check]
path = "/healthz?full=1"
host = "www.example.com:8080"
interval_ms = 100
timeout_ms = 99
rise = 100
fall = 1
expect_status = [204, 204]

[[cluster.backend]]
address = "fd00::11"
port = 80

[[cluster]]
name = "h"
balance = "consistent-hash"
hash_on = "header:X-User-Id"

[[cluster.backend]]
address = "10.1.0.31"
port = 80

[[cluster]]
name = "s"
balance = "consistent-hash"
hash_on = "source"
scheduler = "wrr"

[[cluster.backend]]
address = "10.1.0.41"
port = 80

[[cluster]]
name = "r"
balance = "random"

[[cluster.backend]]
address = "10.1.0.51"
port = 80

[[listener]]
name = "web"
address = "10.0.0.100"
port = 8080
protocol = "http"
ingress = "lan"
snat = ["10.1.0.1", "fd00::1"]
client_rx_buffer = 16777216
client_tx_buffer = 4096
upstream_rx_buffer = 8192
upstream_tx_buffer = 12288
max_connections = 3000
max_half_open = 3000
handshake_timeout_ms = 1
header_timeout_ms = 86400000
idle_timeout_ms = 30000
max_head_bytes = 1048576
max_headers = 128
max_uri_bytes = 16
max_body_bytes = 0

[[listener.route]]
host = "*.example.com"
path_prefix = "/api"
method = "POST"
headers = { "X-B" = "2", "X-A" = "*" }
cookies = { session = "*", lang = "de" }
query = { debug = "1" }
cluster = "h"
rewrite_prefix = "/v2"
request_headers_set = { Host = "api.internal", "X-Env" = "prod" }
request_headers_add = { "X-Tag" = "a" }
request_headers_remove = ["X-Forwarded-For", "Cookie"]
response_headers_set = { "Cache-Control" = "no-store" }
response_headers_add = { "X-Served-By" = "sluice" }
response_headers_remove = ["Server"]

[[listener.route]]
path_exact = "/"
cluster = "s"

[[listener.route]]
cluster = "r"

[[listener]]
name = "web6"
address = "fd00::100"
port = 80
ingress = "wan"
"#
    ));
    let web = &cfg.clusters[0];
    assert_eq!(web.balance, Balance::ConsistentHash);
    assert_eq!(web.hash_on, Some(HashOn::Cookie("session".into())));
    assert_eq!(
        (web.sticky_cookie.as_deref(), web.sticky_max_age_s),
        (Some("SLUICE"), Some(600))
    );
    assert_eq!(
        (
            web.connect_timeout_ms,
            web.response_timeout_ms,
            web.retries,
            web.retry_budget_percent,
            web.max_idle_per_backend
        ),
        (600_000, 3_600_000, 10, 100, 65536)
    );
    assert_eq!(web.retry_on_status, [502, 503, 599]);
    assert_eq!(
        web.health_check,
        Some(HealthCheck {
            check: crate::config::CheckType::Http,
            port: None,
            path: Some("/healthz?full=1".into()),
            host: Some("www.example.com:8080".into()),
            interval_ms: 100,
            timeout_ms: 99,
            rise: 100,
            fall: 1,
            expect_status: [204, 204],
            send: None,
            send_hex: None,
            expect: None,
            expect_hex: None,
            ca: None,
            server_name: None,
            verify: true,
            passive_rst_limit: 0,
        })
    );
    assert_eq!(
        cfg.clusters[1].hash_on,
        Some(HashOn::Header("X-User-Id".into()))
    );
    assert_eq!(cfg.clusters[2].hash_on, Some(HashOn::Source));
    assert_eq!(cfg.clusters[3].balance, Balance::Random);
    assert_eq!(
        HashOn::Header("X-User-Id".into()).to_string(),
        "header:X-User-Id"
    );
    assert_eq!(
        Balance::WeightedRoundRobin.to_string(),
        "weighted-round-robin"
    );

    let l = &cfg.listeners[0];
    assert_eq!(l.snat.len(), 2);
    assert_eq!(l.default_cluster.as_deref(), None);
    assert_eq!(
        crate::control::compile::limits(l),
        crate::l7::http::Limits {
            max_head_bytes: 1_048_576,
            max_headers: 128,
            max_uri_bytes: 16,
            max_body_bytes: u64::MAX,
        }
    );
    // Inline tables keep their file order.
    let r = &l.routes[0];
    assert_eq!(
        r.headers,
        [("X-B".into(), "2".into()), ("X-A".into(), "*".into())]
    );
    assert_eq!(
        r.cookies,
        [("session".into(), "*".into()), ("lang".into(), "de".into())]
    );
    assert_eq!(
        r.request_headers_set,
        [
            ("Host".into(), "api.internal".into()),
            ("X-Env".into(), "prod".into())
        ]
    );

    use crate::l7::http::{HeaderEdits, PrefixRewrite};
    use crate::l7::router::{Matcher, Route, RouteAction, ValueMatch};
    let index = |name: &str| cfg.cluster(name).unwrap().0 as u32;
    let (routes, default) = crate::control::compile::listener_routes(l, index);
    assert_eq!(default, None);
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        routes[0],
        Route {
            matchers: vec![
                Matcher::HostWildcard("*.example.com".into()),
                Matcher::PathPrefix("/api".into()),
                Matcher::Method("POST".into()),
                Matcher::Header {
                    name: "X-B".into(),
                    value: ValueMatch::Exact("2".into())
                },
                Matcher::Header {
                    name: "X-A".into(),
                    value: ValueMatch::Present
                },
                Matcher::Cookie {
                    name: "session".into(),
                    value: ValueMatch::Present
                },
                Matcher::Cookie {
                    name: "lang".into(),
                    value: ValueMatch::Exact("de".into())
                },
                Matcher::Query {
                    name: "debug".into(),
                    value: ValueMatch::Exact("1".into())
                },
            ],
            action: RouteAction {
                cluster: 1,
                request_headers: HeaderEdits {
                    remove: vec!["X-Forwarded-For".into(), "Cookie".into()],
                    set: vec![pair("Host", "api.internal"), pair("X-Env", "prod")],
                    add: vec![pair("X-Tag", "a")],
                },
                response_headers: HeaderEdits {
                    remove: vec!["Server".into()],
                    set: vec![pair("Cache-Control", "no-store")],
                    add: vec![pair("X-Served-By", "sluice")],
                },
                rewrite_prefix: Some(PrefixRewrite {
                    from: "/api".into(),
                    to: "/v2".into()
                }),
                redirect: None,
            },
        }
    );
    assert_eq!(routes[1].matchers, [Matcher::PathExact("/".into())]);
    assert_eq!(routes[1].action.cluster, 2);
    assert!(routes[2].matchers.is_empty());
    crate::l7::router::Router::new(routes, default).unwrap();

    let cfg = ok(&l7("", ""));
    let (routes, default) =
        crate::control::compile::listener_routes(&cfg.listeners[0], |n| n.len() as u32);
    assert_eq!(
        default,
        Some(RouteAction {
            cluster: 3,
            ..RouteAction::default()
        })
    );
    assert_eq!(
        routes[0].matchers,
        [Matcher::HostExact("api.example.com".into())]
    );
}

#[test]
fn l7_summary() {
    let s = ok(&web_cluster(
        "sticky_cookie = \"S\"\nretry_on_status = [503]\n[cluster.health_check]\npath = \"/\"",
    )
    .replace(
        "cluster = \"api\"\n",
        "cluster = \"api\"\npath_prefix = \"/api\"\nrewrite_prefix = \"/\"\n",
    ))
    .summary();
    let udp = ok(&web_cluster(
        "[cluster.health_check]\ntype = \"udp\"\nport = 53\nsend_hex = \"12 34\"\nexpect = \"ok\"\n\
         passive_rst_limit = 5",
    ))
    .summary();
    for want in [
        "  health check: UDP datagram of 2 bytes on port 53 every 2000 ms (timeout 1000 ms), up \
         after 2 passes, down after 3 failures, a reply containing 2 bytes passes\n",
        "  passive marking: down after 5 new connections in a row answered with a RST\n",
    ] {
        assert!(udp.contains(want), "summary lacks {want:?}:\n{udp}");
    }
    let https = ok(&web_cluster(
        "[cluster.health_check]\ntype = \"https\"\npath = \"/hc\"\nverify = false\nserver_name = \"b.test\"",
    ))
    .summary();
    let want = "  health check: GET /hc over TLS every 2000 ms (timeout 1000 ms), up after 2 passes, \
                down after 3 failures, pass on status 200..=399, certificate not verified as b.test\n";
    assert!(https.contains(want), "summary lacks {want:?}:\n{https}");
    for want in [
        "cluster web: 2 backends, total weight 2\n",
        "  l7: balance round-robin, sticky cookie S (session); timeouts connect 2000 ms, response \
         30000 ms; 2 retries on connection failures and 503 (budget 20%); 64 idle connections per backend",
        "  health check: GET / every 2000 ms (timeout 1000 ms), up after 2 passes, down after 3 \
         failures, pass on status 200..=399",
        "  l7: balance least-request;",
        "listener http: http://10.0.0.100:80 on port wan, 1 route, default cluster web, snat from \
         the egress port's address",
        "  16384 connections per worker (4096 half-open), buffers client 65536/65536 upstream \
         65536/65536 bytes (rx/tx): 4128.0 MiB per worker",
        "  timeouts handshake 10000 ms, header 10000 ms, idle 60000 ms; limits head 16384 bytes, \
         100 headers, uri 8192 bytes, body 1073741824 bytes",
        "  route 0: host api.example.com, path_prefix /api -> cluster api, rewrite /api to /\n",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
    assert!(!s.contains("note: cluster"), "{s}");
    let s = ok(&route("headers = { A = \"*\" }\nmethod = \"GET\"")).summary();
    assert!(
        s.contains("  route 1: method GET, header A present -> cluster web\n"),
        "{s}"
    );
}

#[test]
fn balance_and_hash_on() {
    rejects(
        &web_cluster("balance = \"ring-hash\""),
        "\"ring-hash\"",
        &[
            "unknown variant `ring-hash`, expected one of `round-robin`, `weighted-round-robin`, \
             `least-request`, `random`, `consistent-hash`",
        ],
    );
    rejects(
        &web_cluster("balance = \"consistent-hash\""),
        "balance = \"consistent-hash\"",
        &[
            "cluster \"web\": balance \"consistent-hash\" needs `hash_on`: \"source\" (the client's \
             address), \"header:NAME\" or \"cookie:NAME\"",
        ],
    );
    let text = web_cluster("balance = \"random\"\nhash_on = \"source\"");
    let e = rejects(
        &text,
        "hash_on",
        &[
            "cluster \"web\": `hash_on` applies only to balance \"consistent-hash\", and the \
             balance is \"random\"",
        ],
    );
    assert!(
        e.to_string().contains(&format!(
            "(balance set at line {})",
            line_of(&text, "balance = \"random\"")
        )),
        "{e}"
    );
    // Left at the default balance, the message still names it.
    rejects(
        &web_cluster("hash_on = \"source\""),
        "hash_on",
        &["and the balance is \"round-robin\""],
    );
    for (form, words) in [
        (
            "url",
            "invalid hash_on \"url\": expected \"source\", \"header:NAME\" or \"cookie:NAME\"",
        ),
        (
            "header:",
            "invalid hash_on \"header:\": \"\" is not an HTTP token; expected",
        ),
        (
            "cookie:a b",
            "invalid hash_on \"cookie:a b\": \"a b\" is not an HTTP token",
        ),
        ("Source", "invalid hash_on \"Source\""),
    ] {
        let e = rejects(
            &web_cluster(&format!(
                "balance = \"consistent-hash\"\nhash_on = \"{form}\""
            )),
            "hash_on",
            &[words, "for key `cluster[0].hash_on`"],
        );
        assert_eq!(e.position().unwrap().column, 11, "{e}");
    }
}

#[test]
fn cluster_l7_ranges() {
    for (keys, words) in [
        (
            "connect_timeout_ms = 0",
            "cluster \"web\": connect_timeout_ms 0 is out of range 1..=600000",
        ),
        (
            "response_timeout_ms = 3600001",
            "cluster \"web\": response_timeout_ms 3600001 is out of range 1..=3600000",
        ),
        (
            "retries = 11",
            "cluster \"web\": retries 11 is out of range 0..=10",
        ),
        (
            "retry_budget_percent = 101",
            "cluster \"web\": retry_budget_percent 101 is out of range 0..=100",
        ),
        (
            "max_idle_per_backend = 65537",
            "cluster \"web\": max_idle_per_backend 65537 is out of range 0..=65536",
        ),
        (
            "sticky_cookie = \"a=b\"",
            "cluster \"web\": sticky_cookie \"a=b\" is not a cookie name: expected an HTTP token",
        ),
        (
            "sticky_max_age_s = 60",
            "cluster \"web\": sticky_max_age_s applies only with `sticky_cookie`",
        ),
    ] {
        let key = keys.split(' ').next().unwrap();
        rejects(&web_cluster(keys), key, &[words]);
    }
    rejects(
        &web_cluster("sticky_cookie = \"S\"\nsticky_max_age_s = 0"),
        "sticky_max_age_s",
        &["sticky_max_age_s must be at least 1; leave it out for a session cookie"],
    );
    rejects(
        &web_cluster("retry_on_status = [\n  502,\n  404,\n]"),
        "404",
        &["cluster \"web\": retry_on_status 404 is out of range 500..=599"],
    );
    let text = web_cluster("retry_on_status = [\n  502,\n  503,\n  502,\n]");
    let e = rejects_last(
        &text,
        "502",
        &["cluster \"web\": retry_on_status 502 is listed twice"],
    );
    assert!(
        e.to_string()
            .contains(&format!("(first listed at line {})", line_of(&text, "502"))),
        "{e}"
    );
    ok(&web_cluster(
        "retries = 0\nretry_budget_percent = 0\nmax_idle_per_backend = 0",
    ));
}

#[test]
fn health_checks() {
    let hc = |keys: &str| web_cluster(&format!("[cluster.health_check]\n{keys}"));
    ok(&hc("path = \"/\""));
    rejects(
        &hc("interval_ms = 1000"),
        "[cluster.health_check]",
        &[
            "cluster \"web\": health_check of type \"http\" needs `path`",
            "or set type = \"tcp\"",
        ],
    );
    ok(&hc("type = \"tcp\"\nport = 9000"));
    rejects(
        &hc("type = \"tcp\"\npath = \"/\""),
        "path =",
        &["health_check.path applies only to types \"http\" and \"https\", not \"tcp\""],
    );
    rejects(
        &hc("type = \"dns\""),
        "type =",
        &["unknown variant `dns`, expected one of `http`, `tcp`, `https`, `udp`"],
    );
    rejects(
        &hc("path = \"/\"\nport = 0"),
        "port =",
        &["health_check.port 0 is not a port"],
    );
    rejects(
        &hc("path = \"/\"\nmethod = \"HEAD\""),
        "method",
        &["unknown key `method`", "(in `cluster[0].health_check`)"],
    );
    for path in ["healthz", "/a/../b", "/a b", "/ok?x y"] {
        rejects(
            &hc(&format!("path = \"{path}\"")),
            "path =",
            &[
                &format!("cluster \"web\": health_check.path {path:?} is not a request target"),
                "expected an absolute path such as \"/healthz\"",
            ],
        );
    }
    for host in ["a b", "example.com:http", "[fd00::1", ""] {
        rejects(
            &hc(&format!("path = \"/\"\nhost = \"{host}\"")),
            "host =",
            &[&format!(
                "cluster \"web\": health_check.host {host:?} is not a Host value: expected host[:port]"
            )],
        );
    }
    for host in ["example.com", "10.1.0.11:8080", "[fd00::1]:80", "[fd00::1]"] {
        ok(&hc(&format!("path = \"/\"\nhost = \"{host}\"")));
    }
    let cases = [
        (
            "interval_ms = 99",
            "interval_ms",
            "cluster \"web\": health_check: interval_ms 99 is out of range 100..=3600000",
        ),
        (
            "timeout_ms = 2000",
            "timeout_ms",
            "cluster \"web\": health_check.timeout_ms 2000 must be at least 1 and below \
             interval_ms (2000)",
        ),
        (
            "timeout_ms = 0",
            "timeout_ms",
            "health_check.timeout_ms 0 must be at least 1",
        ),
        // The timeout left at its default: the error is on the interval.
        (
            "interval_ms = 500",
            "interval_ms",
            "health_check.timeout_ms 1000 must be at least 1 and below interval_ms (500)",
        ),
        (
            "rise = 0",
            "rise",
            "cluster \"web\": health_check: rise 0 is out of range 1..=100",
        ),
        (
            "fall = 101",
            "fall",
            "cluster \"web\": health_check: fall 101 is out of range 1..=100",
        ),
        (
            "expect_status = [200]",
            "expect_status",
            "expect_status has 1 elements: expected two status codes [lo, hi], such as [200, 399]",
        ),
        (
            "expect_status = [99, 200]",
            "expect_status",
            "cluster \"web\": health_check.expect_status: 99 is not a status code 100..=599",
        ),
        (
            "expect_status = [300, 200]",
            "expect_status",
            "cluster \"web\": health_check.expect_status [300, 200] is empty: expected [lo, hi] \
             with lo <= hi",
        ),
    ];
    for (keys, needle, words) in cases {
        rejects(&hc(&format!("path = \"/\"\n{keys}")), needle, &[words]);
    }
}

#[test]
fn listener_keys() {
    rejects(
        &l7("port = 80\n", ""),
        "[[listener]]",
        &["missing key `port`", "(in `listener[0]`)"],
    );
    rejects(
        &listener("protocol = \"h2\""),
        "\"h2\"",
        &["unknown variant `h2`, expected `http` or `https`"],
    );
    rejects(
        &listener("tls = true"),
        "tls",
        &["unknown key `tls`", "(in `listener[0]`)"],
    );
    rejects(
        &l7("name = \"http\"", "name = \"web.http\""),
        "\"web.http\"",
        &["listener name \"web.http\" must be 1..=32 characters of [A-Za-z0-9_-]"],
    );
    rejects(
        &l7("address = \"10.0.0.100\"", "address = \"10.0.0.100/32\""),
        "\"10.0.0.100/32\"",
        &["without a prefix length", "`listener[0].address`"],
    );
    rejects(
        &l7("address = \"10.0.0.100\"", "address = \"0.0.0.0\""),
        "\"0.0.0.0\"",
        &["listener \"http\": address 0.0.0.0 is the unspecified address"],
    );
    let text = l7("address = \"10.0.0.100\"", "address = \"10.0.0.1\"");
    let e = rejects(
        &text,
        "address = \"10.0.0.1\"",
        &["listener \"http\": address 10.0.0.1 is an address of port \"wan\""],
    );
    assert!(e.to_string().contains("(port address at line 10)"), "{e}");
    rejects(
        &l7("port = 80\n", "port = 0\n"),
        "port = 0",
        &["listener \"http\": port 0 is out of range 1..=65535: a listener takes one TCP port"],
    );
    rejects(
        &l7("ingress = \"wan\"", "ingress = \"dmz\""),
        "\"dmz\"",
        &["port \"dmz\" referenced by listener \"http\" is not defined (defined ports: wan, lan)"],
    );
    rejects(
        &listener("snat = [\"10.1.0.9\"]"),
        "snat",
        &[
            "listener \"http\": snat address 10.1.0.9 is not an address of any [[port]] (port \
             addresses: 10.0.0.1, fd00::1, 10.1.0.1)",
        ],
    );
    rejects(
        &listener("snat = [\"10.1.0.1\", \"10.1.0.1\"]"),
        "snat",
        &["listener \"http\": snat address 10.1.0.1 is listed twice"],
    );
    // L7 terminates: snat addresses and backends may be of either family.
    ok(&listener("snat = [\"10.1.0.1\", \"fd00::1\"]").replace("10.1.0.12", "fd00::12"));
}

#[test]
fn listener_names_and_ports() {
    let second = |name: &str, address: &str, port: u16| {
        l7_with(&format!(
            "[[listener]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {port}\ningress = \"wan\"\n"
        ))
    };
    let text = second("http", "10.0.0.101", 80);
    let e = rejects_last(
        &text,
        "name = \"http\"",
        &["duplicate listener name \"http\""],
    );
    assert!(
        e.to_string().contains(&format!(
            "(first defined at line {})",
            line_of(&text, "name = \"http\"")
        )),
        "{e}"
    );
    let e = rejects_last(
        &second("other", "10.0.0.100", 80),
        "port = 80",
        &["listener \"other\": 10.0.0.100:80 is already taken by listener \"http\""],
    );
    assert!(e.to_string().contains("(first defined at line"), "{e}");
    ok(&second("other", "10.0.0.100", 443));
    ok(&second("other", "10.0.0.101", 80));

    // Services: one namespace of names, and one owner of a TCP port.
    let service = |name: &str, vip: &str, port: u16, proto: &str| {
        l7_with(&format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"{proto}\"\n\
             cluster = \"web\"\ningress = \"wan\"\n"
        ))
    };
    let text = service("http", "10.0.0.200", 80, "tcp");
    let e = rejects(
        &text,
        "name = \"http\"",
        &["listener name \"http\" is already the name of a service"],
    );
    assert!(
        e.to_string().contains(&format!(
            "(service at line {})",
            last_line_of(&text, "name = \"http\"")
        )),
        "{e}"
    );
    let text = service("tcp80", "10.0.0.100", 80, "tcp");
    let e = rejects(
        &text,
        "port = 80\ningress",
        &[
            "listener \"http\": 10.0.0.100:80/tcp is already served by service \"tcp80\" on \
             10.0.0.100:80/tcp; a TCP port of a VIP belongs to one L4 service or one listener",
        ],
    );
    assert!(
        e.to_string().contains(&format!(
            "(service at line {})",
            last_line_of(&text, "port = 80")
        )),
        "{e}"
    );
    rejects(
        &service("all", "10.0.0.100", 0, "tcp"),
        "port = 80\ningress",
        &["listener \"http\": 10.0.0.100:80/tcp is already served by service \"all\" on 10.0.0.100:*/tcp"],
    );
    ok(&service("dns", "10.0.0.100", 80, "udp"));
    ok(&service("all", "10.0.0.100", 0, "udp"));
    ok(&service("tls", "10.0.0.100", 443, "tcp"));
}

#[test]
fn listener_sizing() {
    for (keys, words) in [
        (
            "client_rx_buffer = 4095",
            "listener \"http\": client_rx_buffer 4095 is out of range 4096..=16777216",
        ),
        (
            "upstream_tx_buffer = 16777217",
            "listener \"http\": upstream_tx_buffer 16777217 is out of range 4096..=16777216",
        ),
        (
            "max_connections = 0",
            "listener \"http\": max_connections 0 is out of range 1..=4194304",
        ),
        (
            "max_connections = 4194305",
            "max_connections 4194305 is out of range 1..=4194304",
        ),
        (
            "handshake_timeout_ms = 0",
            "listener \"http\": handshake_timeout_ms 0 is out of range 1..=86400000",
        ),
        (
            "idle_timeout_ms = 86400001",
            "idle_timeout_ms 86400001 is out of range 1..=86400000",
        ),
        (
            "max_head_bytes = 1023",
            "listener \"http\": max_head_bytes 1023 is out of range 1024..=1048576",
        ),
        (
            "syn_cookie_threshold = 4194305",
            "listener \"http\": syn_cookie_threshold 4194305 is out of range 0..=4194304",
        ),
        (
            "max_headers = 129",
            "listener \"http\": max_headers 129 is out of range 1..=128",
        ),
        (
            "max_headers = 0",
            "listener \"http\": max_headers 0 is out of range 1..=128",
        ),
        (
            "max_uri_bytes = 15",
            "listener \"http\": max_uri_bytes 15 is out of range 16..=max_head_bytes (16384)",
        ),
    ] {
        let key = keys.split(' ').next().unwrap();
        rejects(&listener(keys), key, &[words]);
    }
    // Relations: at the key set, or at the other one when it is left out.
    rejects(
        &listener("max_connections = 100\nmax_half_open = 101"),
        "max_half_open",
        &["listener \"http\": max_half_open 101 is out of range 1..=max_connections (100)"],
    );
    rejects(
        &listener("max_connections = 100"),
        "max_connections",
        &["max_half_open 4096 is out of range 1..=max_connections (100)"],
    );
    rejects(
        &listener("max_half_open = 0"),
        "max_half_open",
        &["max_half_open 0 is out of range"],
    );
    rejects(
        &listener("client_rx_buffer = 8192"),
        "client_rx_buffer",
        &[
            "listener \"http\": max_head_bytes 16384 is larger than client_rx_buffer 8192: a whole \
             request head must fit in the receive buffer",
        ],
    );
    rejects(
        &listener("max_head_bytes = 4096\nmax_uri_bytes = 4097"),
        "max_uri_bytes",
        &["max_uri_bytes 4097 is out of range 16..=max_head_bytes (4096)"],
    );
    rejects(
        &listener("max_head_bytes = 4096"),
        "max_head_bytes",
        &["max_uri_bytes 8192 is out of range 16..=max_head_bytes (4096)"],
    );
    ok(&listener(
        "client_rx_buffer = 4096\nmax_head_bytes = 4096\nmax_uri_bytes = 4096\nmax_body_bytes = 0",
    ));

    // Memory: 262144 connections of 4 × 64 KiB + 2 KiB is 64.5 GiB.
    rejects(
        &listener("max_connections = 262144"),
        "max_connections",
        &[
            "listener \"http\": max_connections 262144 × 264192 bytes per connection \
             (client_rx_buffer + client_tx_buffer + upstream_rx_buffer + upstream_tx_buffer + \
             2048) = 64.5 GiB per worker, 64.5 GiB with the listeners before it; at most 64.0 GiB \
             per worker",
        ],
    );
    ok(&listener("max_connections = 253952"));
    // Summed over listeners: the second one crosses the line.
    let text = l7_with(
        "[[listener]]\nname = \"b\"\naddress = \"10.0.0.101\"\nport = 80\ningress = \"wan\"\n\
         max_connections = 200000\n",
    )
    .replace(
        "default_cluster = \"web\"\n",
        "default_cluster = \"web\"\nmax_connections = 100000\n",
    );
    rejects(
        &text,
        "max_connections = 200000",
        &[
            "listener \"b\": max_connections 200000",
            "= 49.2 GiB per worker, 73.8 GiB with the listeners before it",
        ],
    );
}

#[test]
fn listener_clusters() {
    let e = rejects(
        &l7("default_cluster = \"web\"", "default_cluster = \"wbe\""),
        "\"wbe\"",
        &[
            "cluster \"wbe\" referenced by default_cluster of listener \"http\" is not defined \
             (defined clusters: web, api)",
        ],
    );
    assert_eq!(e.position().unwrap().column, 19);
    let e = rejects(
        &l7("cluster = \"api\"", "cluster = \"apj\""),
        "\"apj\"",
        &[
            "cluster \"apj\" referenced by a route of listener \"http\" is not defined (defined \
             clusters: web, api)",
        ],
    );
    assert_eq!(e.position().unwrap().column, 11);
    // No default cluster: requests that match no route get 404.
    let cfg = ok(&l7("default_cluster = \"web\"\n", ""));
    assert_eq!(cfg.listeners[0].default_cluster.as_deref(), None);
    // A backend used by a listener names its port, whether the listener
    // uses the cluster by default or by a route.
    let text = l7("port = 9000\n", "");
    let e = rejects(
        &text,
        "[[cluster.backend]]\naddress = \"10.1.0.21\"",
        &[
            "backend 10.1.0.21 of cluster \"api\" has no `port`, but listener \"http\" sends \
             requests to this cluster: an L7 listener opens its own connections to backends and \
             needs the port to connect to",
        ],
    );
    assert!(
        e.to_string().contains(&format!(
            "(used at line {})",
            line_of(&text, "cluster = \"api\"")
        )),
        "{e}"
    );
    rejects(
        &l7("port = 8080\n", ""),
        "[[cluster.backend]]",
        &["backend 10.1.0.11 of cluster \"web\" has no `port`"],
    );
    // A service may still use such a cluster.
    ok(&l7("port = 9000\n", "").replace("cluster = \"api\"", "cluster = \"web\""));
}

#[test]
fn route_keys() {
    rejects(
        &route("path_prefix = \"/a\"\npath_exact = \"/b\""),
        "path_exact",
        &["listener \"http\", route[1]: set one of path_prefix and path_exact, not both"],
    );
    rejects(
        &route("rewrite_prefix = \"/\""),
        "rewrite_prefix",
        &[
            "listener \"http\", route[1]: rewrite_prefix replaces the part of the path matched by \
             path_prefix, so it needs path_prefix",
        ],
    );
    rejects(
        &route("path_exact = \"/a\"\nrewrite_prefix = \"/\""),
        "rewrite_prefix",
        &["so it needs path_prefix"],
    );
    rejects(
        &route("hosts = \"a\""),
        "hosts",
        &["unknown key `hosts`", "(in `listener[0].route[1]`)"],
    );
    rejects(
        &route("headers = { X-A = 1 }"),
        "headers",
        &["invalid type: integer `1`, expected a string"],
    );
    rejects(
        &route("headers = [\"X-A\"]"),
        "headers",
        &["expected a table of strings, such as { \"X-Canary\" = \"1\" }"],
    );
    rejects(
        &l7("cluster = \"api\"\n", ""),
        "[[listener.route]]",
        &["route[0]: no `cluster` to send matching requests to"],
    );
    rejects(
        &route("request_headers_set = { X-Env = \"a\", x-env = \"b\" }"),
        "request_headers_set",
        &[
            "listener \"http\", route[1]: request_headers_set sets x-env twice (as X-Env and \
             x-env; field names are case-insensitive)",
        ],
    );
    // The table form of an inline table points at the entry's own line.
    let text = route("[listener.route.request_headers_set]\n\"X-Env\" = \"a\"\n\"X Env\" = \"b\"")
        .replace("\ncluster = \"web\"\n", "\n")
        .replace(
            "[[listener.route]]\n[listener.route.request_headers_set]",
            "[[listener.route]]\ncluster = \"web\"\n[listener.route.request_headers_set]",
        );
    rejects(
        &text,
        "\"X Env\"",
        &["listener \"http\", route[1]: request headers: set: \"X Env\" is not a valid field name"],
    );
}

/// Route literals go through `Router::new`, and its refusal is placed at
/// the key at fault.
#[test]
fn route_literals() {
    for (keys, needle, words) in [
        (
            "path_prefix = \"/a/../b\"",
            "\"/a/../b\"",
            "listener \"http\", route[1]: path_prefix: \"/a/../b\" is not a path Sluice accepts, \
             so it could never match",
        ),
        (
            "path_exact = \"a\"",
            "\"a\"",
            "route[1]: path_exact: \"a\" is not a path Sluice accepts",
        ),
        (
            "host = \"a b.example.com\"",
            "\"a b.example.com\"",
            "route[1]: host: \"a b.example.com\" is not a host name",
        ),
        (
            "host = \"example.com:80\"",
            "\"example.com:80\"",
            "route[1]: host: \"example.com:80\" is not a host name (no port, no wildcard)",
        ),
        (
            "host = \"*.*.example.com\"",
            "\"*.*.example.com\"",
            "route[1]: host: \"*.example.com\" is not a host name",
        ),
        (
            "method = \"G T\"",
            "\"G T\"",
            "route[1]: method: \"G T\" is not a method token",
        ),
        (
            "path_prefix = \"/a\"\nheaders = { \"X A\" = \"1\" }",
            "\"X A\"",
            "route[1]: headers.\"X A\": \"X A\" is not a field name",
        ),
        (
            "cookies = { \"a;b\" = \"*\" }",
            "\"a;b\"",
            "route[1]: cookies.\"a;b\": \"a;b\" is not a cookie name",
        ),
        (
            "query = { \"\" = \"1\" }",
            "\"\" = ",
            "route[1]: query.\"\": empty query parameter name",
        ),
        (
            "request_headers_set = { \"X Env\" = \"a\" }",
            "\"X Env\"",
            "listener \"http\", route[1]: request headers: set: \"X Env\" is not a valid field name",
        ),
        (
            "request_headers_add = { Host = \"a\" }",
            "Host",
            "route[1]: request headers: add: Host can only be set",
        ),
        (
            "request_headers_set = { X-A = \"a\", Host = \"a b\" }",
            "Host",
            "route[1]: request headers: Host: \"a b\" is not host[:port]",
        ),
        (
            "response_headers_remove = [\"Server\", \"Content-Length\"]",
            "\"Content-Length\"",
            "route[1]: response headers: remove: Content-Length is managed by the proxy",
        ),
        (
            "response_headers_add = { X-A = \" a\" }",
            "X-A",
            "route[1]: response headers: X-A: \" a\" is not a valid field value",
        ),
        (
            "path_prefix = \"/a\"\nrewrite_prefix = \"b\"",
            "rewrite_prefix",
            "route[1]: rewrite_prefix: \"b\" is not a valid path",
        ),
    ] {
        let text = route(keys);
        let e = err(&text);
        let shown = e.to_string();
        assert_eq!(
            e.line(),
            Some(last_line_of(&text, needle)),
            "wrong line in {shown:?}\n{text}"
        );
        assert!(shown.contains(words), "{shown:?} lacks {words:?}");
    }
    // Case of a multi-line inline array: the element's own line.
    let text = route("request_headers_remove = [\n  \"X-A\",\n  \"TE\",\n]");
    rejects(
        &text,
        "\"TE\"",
        &["request headers: remove: TE is managed by the proxy"],
    );
    ok(&route(
        "host = \"*.example.com\"\npath_prefix = \"/a%20b/\"\nrewrite_prefix = \"/\"\n\
         request_headers_set = { Host = \"backend:8080\" }",
    ));
}

#[test]
fn l7_reload() {
    let running = ok(&l7("", ""));
    // Routes, timeouts, limits, address and port may change.
    let new = ok(&l7(
        "host = \"api.example.com\"",
        "host = \"api2.example.com\"\npath_prefix = \"/v1\"",
    )
    .replace("port = 80\n", "port = 8080\n")
    .replace(
        "default_cluster = \"web\"\n",
        "default_cluster = \"api\"\nidle_timeout_ms = 5000\nmax_head_bytes = 8192\n",
    ));
    assert_eq!(running.check_reloadable(&new), Ok(()));
    let differs = |text: &str| running.check_reloadable(&ok(text)).unwrap_err();
    let e = differs(&listener("client_rx_buffer = 131072"));
    assert!(
        e.starts_with(
            "client_rx_buffer (65536 now, 131072 in the new config) of [[listener]] \"http\" \
             differs from the running config and needs a restart"
        ),
        "{e}"
    );
    let e = differs(&listener("max_half_open = 100"));
    assert!(
        e.starts_with("max_half_open (4096 now, 100 in the new config)"),
        "{e}"
    );
    let e = differs(&l7_with(
        "[[listener]]\nname = \"b\"\naddress = \"10.0.0.101\"\nport = 80\ningress = \"wan\"\n",
    ));
    assert!(
        e.starts_with("the set of [[listener]]s (http now, b, http in the new config) differs"),
        "{e}"
    );
    let e = differs(&l4("", ""));
    assert!(
        e.starts_with("the set of [[listener]]s (http now, none in the new config)"),
        "{e}"
    );
}

// ------------------------------------------------------------------ TLS

/// Self-signed pairs made once by the `openssl` CLI: `a.crt`/`a.key`
/// (ECDSA, a.example, a year), `b.key` (another key), in a directory of
/// this test process.
fn tls_files() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("sluice-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (name, san) in [("a", "DNS:a.example"), ("b", "DNS:b.example")] {
            let out = std::process::Command::new("openssl")
                .args(["req", "-x509", "-nodes", "-days", "365", "-subj"])
                .arg(format!("/CN={name}"))
                .arg("-addext")
                .arg(format!("subjectAltName={san}"))
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
                .arg("-keyout")
                .arg(d.join(format!("{name}.key")))
                .arg("-out")
                .arg(d.join(format!("{name}.crt")))
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        d
    })
}

/// BASE + L7 + an https listener "tls" on port 443 with `keys`, then its
/// certificate a.example (`cert_keys` added to it), then `after`.
fn https(keys: &str, cert_keys: &str, after: &str) -> String {
    let d = tls_files();
    l7_with(&format!(
        "[[listener]]\nname = \"tls\"\naddress = \"10.0.0.100\"\nport = 443\ningress = \"wan\"\n\
         protocol = \"https\"\ndefault_cluster = \"web\"\n{keys}\n\n[[listener.certificate]]\n\
         cert = \"{}\"\nkey = \"{}\"\n{cert_keys}\n{after}",
        d.join("a.crt").display(),
        d.join("a.key").display(),
    ))
}

#[test]
fn tls_listener_keys_and_defaults() {
    let cfg = ok(&https("", "", ""));
    let l = &cfg.listeners[1];
    assert_eq!(l.protocol, ListenerProtocol::Https);
    assert_eq!(
        (
            l.tls_min_version,
            l.max_tls_handshakes,
            l.sni_strict,
            l.tls_headers
        ),
        (None, 1024, false, false)
    );
    assert_eq!(l.certificates.len(), 1);
    assert!(!l.certificates[0].default && l.certificates[0].names.is_empty());
    let loaded = l.certificates[0].load().unwrap();
    assert_eq!(loaded.names, ["a.example"]);
    assert!(crate::config::tls_warnings(&cfg).is_empty());

    let cfg = ok(&https(
        "tls_min_version = \"1.3\"\nmax_tls_handshakes = 10\nsni_strict = true\ntls_headers = true",
        "names = [\"a.example\", \"*.a.example\"]\ndefault = true",
        "[[listener.route]]\nsni = \"*.a.example\"\ncluster = \"api\"\n\n\
         [[listener.route]]\nsni = \"a.example\"\npath_prefix = \"/x\"\ncluster = \"web\"\n",
    ));
    let l = &cfg.listeners[1];
    assert_eq!(l.tls_min_version, Some(crate::config::TlsVersion::Tls13));
    assert_eq!(l.client_auth, crate::config::ClientAuth::None);
    let ca = tls_files().join("a.crt");
    let cfg = ok(&https(
        &format!(
            "client_auth = \"require\"\nclient_ca = \"{}\"",
            ca.display()
        ),
        "",
        "",
    ));
    assert_eq!(
        cfg.listeners[1].client_auth,
        crate::config::ClientAuth::Require
    );
    assert_eq!(cfg.listeners[1].client_ca.as_deref(), Some(ca.as_path()));
    let keys = tls_files().join("ticket.keys");
    std::fs::write(
        &keys,
        format!("{}\n\n{}\n", "01".repeat(32), "02".repeat(32)),
    )
    .unwrap();
    let cfg = ok(&https(
        &format!("ticket_key_file = \"{}\"", keys.display()),
        "",
        "",
    ));
    let path = cfg.listeners[1].ticket_key_file.as_deref().unwrap();
    assert_eq!(
        crate::config::read_ticket_keys(path).unwrap(),
        [[1u8; 32], [2u8; 32]]
    );
    assert_eq!(
        (l.max_tls_handshakes, l.sni_strict, l.tls_headers),
        (10, true, true)
    );
    assert_eq!(l.routes[0].sni.as_deref(), Some("*.a.example"));
    assert!(l.routes[1]
        .to_string()
        .starts_with("sni a.example, path_prefix /x -> cluster web"));
}

#[test]
fn redirect_routes_need_no_cluster() {
    let cfg = ok(&l7_with(
        "[[listener.route]]\npath_prefix = \"/\"\nredirect_https = 308\nredirect_https_port = 8443\n",
    ));
    let r = &cfg.listeners[0].routes[1];
    assert_eq!(
        (
            r.redirect_https,
            r.redirect_https_port,
            r.cluster.as_deref()
        ),
        (Some(308), Some(8443), None)
    );
    assert_eq!(r.to_string(), "path_prefix / -> redirect to https (308)");
    ok(&l7_with("[[listener.route]]\nredirect_https = 301\n"));
}

#[test]
fn tls_keys_rejected_where_they_cannot_work() {
    let d = tls_files();
    let a_crt = d.join("a.crt").display().to_string();
    let b_key = d.join("b.key").display().to_string();
    let bad_keys = d.join("bad.keys");
    std::fs::write(
        &bad_keys,
        format!("# keys\n{}\n{}\n", "ab".repeat(32), "xy".repeat(32)),
    )
    .unwrap();
    // (what, config, needle whose last line the error is on, words)
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        ("sni on an http listener", route("sni = \"a.example\""), "sni =",
            &["sni needs protocol = \"https\""]),
        ("sni_strict on http", listener("sni_strict = true"), "sni_strict",
            &["sni_strict = true needs protocol = \"https\""]),
        ("tls_headers on http", listener("tls_headers = true"), "tls_headers",
            &["tls_headers = true needs protocol = \"https\""]),
        ("tls_min_version on http", listener("tls_min_version = \"1.3\""), "tls_min_version",
            &["needs protocol = \"https\""]),
        ("redirect on https", https("", "", "[[listener.route]]\nredirect_https = 308\n"),
            "redirect_https", &["already are"]),
        ("redirect and cluster", route("redirect_https = 308"), "redirect_https",
            &["either redirects or sends to a cluster"]),
        ("neither redirect nor cluster", l7_with("[[listener.route]]\nhost = \"x\"\n"),
            "[[listener.route]]", &["no `cluster`", "redirect_https = 308"]),
        ("redirect status", l7_with("[[listener.route]]\nredirect_https = 302\n"),
            "redirect_https", &["302 is not 301 or 308"]),
        ("redirect port without redirect", route("redirect_https_port = 8443"),
            "redirect_https_port", &["needs redirect_https"]),
        ("redirect port 0", l7_with("[[listener.route]]\nredirect_https = 308\nredirect_https_port = 0\n"),
            "redirect_https_port", &["port 0"]),
        ("bad sni", https("", "", "[[listener.route]]\nsni = \"a b\"\ncluster = \"web\"\n"),
            "sni =", &["sni", "not a host name"]),
        ("https without certificates",
            l7_with("[[listener]]\nname = \"t\"\naddress = \"10.0.0.100\"\nport = 443\ningress = \"wan\"\nprotocol = \"https\"\n"),
            "protocol = \"https\"", &["needs at least one [[listener.certificate]]"]),
        ("missing cert file", https("", "", "").replace(&a_crt, "/nonexistent/x.crt"),
            "cert =", &["cannot read /nonexistent/x.crt"]),
        ("key of another certificate", https("", "", "").replace(&d.join("a.key").display().to_string(), &b_key),
            "key =", &["does not fit certificate"]),
        ("bad name", https("", "names = [\"a..example\"]", ""), "names =",
            &["invalid server name \"a..example\""]),
        ("max_tls_handshakes 0", https("max_tls_handshakes = 0", "", ""), "max_tls_handshakes",
            &["out of range 1..=1000000"]),
        ("two defaults", https("", "default = true",
            &format!("[[listener.certificate]]\ncert = \"{a_crt}\"\nkey = \"{}\"\nnames = [\"c.example\"]\ndefault = true\n",
                d.join("a.key").display())),
            "default = true", &["more than one certificate has default = true"]),
        ("a name twice", https("", "",
            &format!("[[listener.certificate]]\ncert = \"{a_crt}\"\nkey = \"{}\"\n", d.join("a.key").display())),
            "cert =", &["server name \"a.example\" is already served by certificate 0"]),
        ("unknown TLS version", https("tls_min_version = \"1.1\"", "", ""), "tls_min_version",
            &["1.1"]),
        ("client_auth on http", listener("client_auth = \"require\""), "client_auth",
            &["client_auth needs protocol = \"https\""]),
        ("client_auth without client_ca", https("client_auth = \"request\"", "", ""), "client_auth",
            &["client_auth = \"request\" needs client_ca"]),
        ("client_ca without client_auth", https(&format!("client_ca = \"{a_crt}\""), "", ""),
            "client_ca", &["client_auth is \"none\""]),
        ("client_ca unreadable", https("client_auth = \"require\"\nclient_ca = \"/nonexistent/ca.pem\"", "", ""),
            "client_ca", &["cannot read /nonexistent/ca.pem"]),
        ("client_auth value", https("client_auth = \"optional\"", "", ""), "client_auth",
            &["unknown variant `optional`"]),
        ("ticket_key_file on http", listener("ticket_key_file = \"/x\""), "ticket_key_file",
            &["ticket_key_file needs protocol = \"https\""]),
        ("ticket key file unreadable", https("ticket_key_file = \"/nonexistent/t\"", "", ""),
            "ticket_key_file", &["cannot read /nonexistent/t"]),
        ("ticket key file with a bad line", https(&format!("ticket_key_file = \"{}\"", bad_keys.display()), "", ""),
            "ticket_key_file", &["bad.keys:3: expected a key of 64 hex digits"]),
    ];
    for (what, text, needle, words) in cases {
        let e = match from_str(&text, "sluice.toml") {
            Ok(_) => panic!("{what}: accepted\n{text}"),
            Err(e) => e,
        };
        let shown = e.to_string();
        assert_eq!(
            e.line(),
            Some(last_line_of(&text, needle)),
            "{what}: {shown}"
        );
        for w in words {
            assert!(shown.contains(w), "{what}: {shown:?} lacks {w:?}");
        }
    }
}

/// BASE + L7 with `backend_keys` on the "web" cluster's second backend,
/// then its `[cluster.tls]` holding `tls` (none when `tls` is `None`).
fn web_tls(backend_keys: &str, tls: Option<&str>) -> String {
    let table = tls.map_or(String::new(), |t| format!("[cluster.tls]\n{t}\n"));
    l7(
        "address = \"10.1.0.12\"\nport = 8080\n",
        &format!("address = \"10.1.0.12\"\nport = 8080\n{backend_keys}\n{table}"),
    )
}

#[test]
fn cluster_tls_keys() {
    let d = tls_files();
    let (a_crt, a_key) = (d.join("a.crt"), d.join("a.key"));
    let full = format!(
        "ca = \"{}\"\nserver_name = \"web.internal.example\"\ncert = \"{}\"\nkey = \"{}\"",
        a_crt.display(),
        a_crt.display(),
        a_key.display()
    );
    let cfg = ok(&web_tls("tls_server_name = \"10.1.0.12\"", Some(&full)));
    let c = cfg.cluster("web").unwrap().1;
    let t = c.tls.as_ref().unwrap();
    assert_eq!(t.server_name.as_deref(), Some("web.internal.example"));
    assert_eq!(c.backends[1].tls_server_name.as_deref(), Some("10.1.0.12"));
    let loaded = t.load().unwrap();
    assert_eq!(loaded.roots.len(), 1);
    assert!(loaded.client_cert.is_some());
    assert!(cfg.cluster("api").unwrap().1.tls.is_none());
    // Only `ca` is required.
    ok(&web_tls("", Some(&format!("ca = \"{}\"", a_crt.display()))));
}

#[test]
fn cluster_tls_rejected_where_it_cannot_work() {
    let d = tls_files();
    let a_crt = d.join("a.crt").display().to_string();
    let a_key = d.join("a.key").display().to_string();
    let b_key = d.join("b.key").display().to_string();
    let ca = format!("ca = \"{a_crt}\"");
    // (what, config, needle whose last line the error is on, words)
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "no ca",
            web_tls("", Some("server_name = \"x.example\"")),
            "[cluster.tls]",
            &["missing key `ca`"],
        ),
        (
            "ca unreadable",
            web_tls("", Some("ca = \"/nonexistent/ca.pem\"")),
            "ca =",
            &["cannot read /nonexistent/ca.pem"],
        ),
        (
            "ca not PEM",
            web_tls("", Some(&format!("ca = \"{a_key}\""))),
            "ca =",
            &["holds no certificate"],
        ),
        (
            "cert without key",
            web_tls("", Some(&format!("{ca}\ncert = \"{a_crt}\""))),
            "cert =",
            &["cert needs `key`"],
        ),
        (
            "key without cert",
            web_tls("", Some(&format!("{ca}\nkey = \"{a_key}\""))),
            "key =",
            &["key needs `cert`"],
        ),
        (
            "key of another certificate",
            web_tls(
                "",
                Some(&format!("{ca}\ncert = \"{a_crt}\"\nkey = \"{b_key}\"")),
            ),
            "key =",
            &["does not fit certificate"],
        ),
        (
            "wildcard server_name",
            web_tls("", Some(&format!("{ca}\nserver_name = \"*.example\""))),
            "server_name",
            &["invalid server_name \"*.example\""],
        ),
        (
            "bad backend name",
            web_tls("tls_server_name = \"a b\"", Some(&ca)),
            "tls_server_name",
            &["invalid tls_server_name \"a b\""],
        ),
        (
            "backend name without tls",
            web_tls("tls_server_name = \"b.example\"", None),
            "tls_server_name",
            &["tls_server_name needs [cluster.tls]"],
        ),
        (
            "unknown key",
            web_tls("", Some(&format!("{ca}\ninsecure = true"))),
            "insecure",
            &["unknown key `insecure`"],
        ),
    ];
    for (what, text, needle, words) in cases {
        let e = match from_str(&text, "sluice.toml") {
            Ok(_) => panic!("{what}: accepted\n{text}"),
            Err(e) => e,
        };
        let shown = e.to_string();
        assert_eq!(
            e.line(),
            Some(last_line_of(&text, needle)),
            "{what}: {shown}"
        );
        for w in words {
            assert!(shown.contains(w), "{what}: {shown:?} lacks {w:?}");
        }
    }
}

/// `type = "udp"` (send/expect, text or hex) and `type = "https"` (ca,
/// server_name, verify), and `passive_rst_limit`.
#[test]
fn health_check_udp_and_https_keys() {
    let hc = |keys: &str| web_cluster(&format!("[cluster.health_check]\n{keys}"));
    let cfg = ok(&hc(
        "type = \"udp\"\nport = 53\nsend_hex = \"12 34:01 00\"\nexpect = \"ok\"\npassive_rst_limit = 10",
    ));
    let h = cfg.cluster("web").unwrap().1.health_check.clone().unwrap();
    assert_eq!(h.check, CheckType::Udp);
    assert_eq!(h.passive_rst_limit, 10);
    assert_eq!(
        payload_bytes(h.send.as_deref(), h.send_hex.as_deref()),
        Ok(Some(vec![0x12, 0x34, 0x01, 0x00]))
    );
    assert_eq!(
        payload_bytes(h.expect.as_deref(), h.expect_hex.as_deref()),
        Ok(Some(b"ok".to_vec()))
    );
    // Any reply passes without expect.
    ok(&hc("type = \"udp\"\nport = 53\nsend = \"ping\""));
    let ca = tls_files().join("a.crt");
    let ca = ca.display();
    ok(&hc(&format!(
        "type = \"https\"\npath = \"/hc\"\nca = \"{ca}\"\nserver_name = \"a.example\""
    )));
    ok(&hc("type = \"https\"\npath = \"/hc\"\nverify = false"));
    let long = "x".repeat(MAX_CHECK_SEND + 1);
    // (keys, needle whose last line the error is on, words)
    let cases: Vec<(String, &str, Vec<String>)> = vec![
        (
            "type = \"udp\"\nport = 53".into(),
            "[cluster.health_check]",
            vec!["health_check of type \"udp\" needs `send` (text) or `send_hex`".into()],
        ),
        (
            "type = \"udp\"\nport = 53\nsend = \"a\"\nsend_hex = \"61\"".into(),
            "send_hex",
            vec!["health_check has both `send` and `send_hex`: give one".into()],
        ),
        (
            "type = \"udp\"\nport = 53\nsend_hex = \"123\"".into(),
            "send_hex",
            vec!["health_check.send_hex \"123\" is not hex: expected pairs of hex digits".into()],
        ),
        (
            "type = \"udp\"\nport = 53\nsend = \"a\"\nexpect_hex = \"zz\"".into(),
            "expect_hex",
            vec!["health_check.expect_hex \"zz\" is not hex".into()],
        ),
        (
            "type = \"udp\"\nport = 53\nsend = \"\"".into(),
            "send =",
            vec![format!(
                "health_check.send has 0 bytes: expected 1..={MAX_CHECK_SEND}"
            )],
        ),
        (
            format!("type = \"udp\"\nport = 53\nsend = \"{long}\""),
            "send =",
            vec![format!(
                "health_check.send has {} bytes: expected 1..={MAX_CHECK_SEND}",
                MAX_CHECK_SEND + 1
            )],
        ),
        (
            "type = \"tcp\"\nsend = \"a\"".into(),
            "send =",
            vec!["health_check.send applies only to type \"udp\", not \"tcp\"".into()],
        ),
        (
            "path = \"/\"\nexpect = \"a\"".into(),
            "expect =",
            vec!["health_check.expect applies only to type \"udp\", not \"http\"".into()],
        ),
        (
            "type = \"https\"\npath = \"/\"".into(),
            "[cluster.health_check]",
            vec![
                "health_check of type \"https\" needs `ca`".into(),
                "or verify = false".into(),
            ],
        ),
        (
            "type = \"https\"".into(),
            "[cluster.health_check]",
            vec!["health_check of type \"https\" needs `path`".into()],
        ),
        (
            format!("type = \"https\"\npath = \"/\"\nca = \"{ca}\"\nverify = false"),
            "ca =",
            vec!["health_check has `ca` and verify = false".into()],
        ),
        (
            "type = \"https\"\npath = \"/\"\nca = \"/nonexistent/ca.pem\"".into(),
            "ca =",
            vec!["health_check.ca: cannot read /nonexistent/ca.pem".into()],
        ),
        (
            "type = \"https\"\npath = \"/\"\nverify = false\nserver_name = \"*.example\"".into(),
            "server_name",
            vec!["invalid health_check.server_name \"*.example\"".into()],
        ),
        (
            "path = \"/\"\nverify = false".into(),
            "verify",
            vec!["health_check.verify applies only to type \"https\", not \"http\"".into()],
        ),
        (
            "type = \"tcp\"\nca = \"x\"".into(),
            "ca =",
            vec!["health_check.ca applies only to type \"https\", not \"tcp\"".into()],
        ),
        (
            "type = \"tcp\"\npassive_rst_limit = 10001".into(),
            "passive_rst_limit",
            vec!["passive_rst_limit 10001 is out of range 0..=10000 (0: off)".into()],
        ),
    ];
    for (keys, needle, words) in &cases {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        rejects(&hc(keys), needle, &words);
    }
    // An https check in a cluster that has [cluster.tls]: its http
    // checks already go over TLS.
    let text = web_tls(
        "",
        Some(&format!(
            "ca = \"{ca}\"\n\n[cluster.health_check]\ntype = \"https\"\npath = \"/\"\nca = \"{ca}\""
        )),
    );
    rejects(
        &text,
        "type = \"https\"",
        &[
            "type \"https\" in a cluster with [cluster.tls]",
            "use type = \"http\"",
        ],
    );
}
