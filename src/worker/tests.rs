//! Table-driven tests of the packet path below the worker loop:
//! classification (`process`), local answers, the L4 balancer (NAT, DSR,
//! ICMP errors) and L2 output, on byte fixtures, in the style of Katran's
//! `KatranBaseTestFixtures.h`: each row is a description, the packets sent
//! before it (to open a flow), the packet in, the verdict (with its
//! counter), checks on the packet out, and per-service / per-backend
//! counters.
//!
//! The plane is compiled from a TOML config by the same path `sluice run`
//! uses (`config::from_str` + `control::compile::build_plane`), with the
//! addresses of `wire::testdata`, so those captured frames can be fed in
//! as they are. Checksums of the packets out are verified by recomputation
//! with the `wire` views, never compared with constants.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::process::process;
use crate::dpdk::port::PortInfo;
use crate::l4::balancer::L4State;
use crate::l4::conntrack::{Conntrack, ConntrackConfig, Timeouts};
use crate::net::counters::{
    Counter, L4Counters, BE_ACTIVE, BE_NEW, BE_PACKETS, SVC_DROPS, SVC_NEW, SVC_PACKETS,
};
use crate::net::neighbor::NeighborTable;
use crate::net::plane::Plane;
use crate::net::Verdict;
use crate::wire::checksum;
use crate::wire::testdata::{self, CLIENT4, CLIENT6, CLIENT_MAC, LB4, LB_MAC, VIP4, VIP6};
use crate::wire::{
    ipv4, ipv6, ArpPacket, EthernetFrame, Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

const CONFIG: &str = r#"
[dataplane]
workers = [1, 2]

[[port]]
name = "p0"
vdev = "net_null0"
mac = "02:00:00:00:00:02"
addresses = ["192.0.2.2/24", "2001:db8::2/64"]
gateway = "192.0.2.254"
gateway6 = "2001:db8::fe"

[[neighbor]]
ip = "192.0.2.1"
mac = "02:00:00:00:00:01"
port = "p0"

[[neighbor]]
ip = "2001:db8::1"
mac = "02:00:00:00:00:01"
port = "p0"

[[neighbor]]
ip = "192.0.2.254"
mac = "02:00:00:00:00:fe"
port = "p0"

[[neighbor]]
ip = "192.0.2.11"
mac = "02:00:00:00:00:11"
port = "p0"

[[neighbor]]
ip = "192.0.2.12"
mac = "02:00:00:00:00:12"
port = "p0"

[[neighbor]]
ip = "192.0.2.13"
mac = "02:00:00:00:00:13"
port = "p0"

[[neighbor]]
ip = "2001:db8::21"
mac = "02:00:00:00:00:21"
port = "p0"

[[cluster]]
name = "one"
[[cluster.backend]]
address = "192.0.2.11"

[[cluster]]
name = "two"
[[cluster.backend]]
address = "192.0.2.12"

[[cluster]]
name = "three"
[[cluster.backend]]
address = "192.0.2.13"

[[cluster]]
name = "six"
[[cluster.backend]]
address = "2001:db8::21"

[[cluster]]
name = "far"
[[cluster.backend]]
address = "192.0.2.50"

[[cluster]]
name = "web"
[[cluster.backend]]
address = "192.0.2.31"
port = 8080

[[service]]
name = "web-nat"
vip = "198.51.100.10"
port = 80
mode = "nat"
cluster = "one"
ingress = "p0"

[[service]]
name = "dns-nat"
vip = "198.51.100.10"
port = 53
protocol = "udp"
mode = "nat"
cluster = "two"
ingress = "p0"

[[service]]
name = "web-ipip"
vip = "198.51.100.11"
port = 80
mode = "ipip"
cluster = "three"
ingress = "p0"

[[service]]
name = "web-gre"
vip = "198.51.100.12"
port = 80
mode = "gre"
cluster = "three"
ingress = "p0"

[[service]]
name = "web-l2"
vip = "198.51.100.13"
port = 80
mode = "l2dsr"
cluster = "two"
ingress = "p0"

[[service]]
name = "web-far"
vip = "198.51.100.14"
port = 80
mode = "nat"
cluster = "far"
ingress = "p0"

[[service]]
name = "web6-ipip"
vip = "2001:db8::10"
port = 80
mode = "ipip"
cluster = "six"
ingress = "p0"

[[service]]
name = "web6-nat"
vip = "2001:db8::100"
port = 80
mode = "nat"
cluster = "six"
ingress = "p0"

[[service]]
name = "web6-gre"
vip = "2001:db8::101"
port = 80
mode = "gre"
cluster = "six"
ingress = "p0"

[[listener]]
name = "http"
address = "198.51.100.20"
port = 80
ingress = "p0"
default_cluster = "web"
"#;

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const BE1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const BE2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const BE3: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 13);
const BE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21);
const LB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const VIP_IPIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const VIP_GRE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const VIP_L2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 13);
const VIP_FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 14);
const VIP_L7: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const VIP6_NAT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const VIP6_GRE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
/// The client port of the flows `testdata`'s ICMP errors quote.
const CPORT: u16 = 0xc000;
/// First SNAT port of worker 0 of 2 (its slice starts at 1024).
const SNAT0: u16 = 1024;
/// A port in worker 1's SNAT slice.
const SNAT1: u16 = 40000;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const NOW: u64 = 1_000_000_000;
/// Headroom in front of the frame, as an mbuf has.
const HEAD: usize = 128;

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

/// The plane, a neighbor table with the config's static entries, and the
/// L4 state of worker 0 of 2.
struct World {
    plane: Plane,
    neighbors: NeighborTable,
    l4: L4State,
}

impl World {
    fn new() -> World {
        World::build(CONFIG, &crate::l7::health::HealthState::default())
    }

    /// The plane of config `text` with the backends `health` has down.
    fn plane(text: &str, health: &crate::l7::health::HealthState) -> Plane {
        let cfg = crate::config::from_str(text, "worker-tests.toml").expect("test config");
        let info = PortInfo {
            id: 0,
            driver: "net_null".into(),
            mac: LB_MAC.0,
            promiscuous: false,
            rss: false,
            queues: 2,
            max_queues: 2,
            mtu_set: true,
            tx_offloads: 0,
        };
        let mut reg = crate::control::compile::Registry::default();
        crate::control::compile::build_plane_with_health(&cfg, &[info], &mut reg, 2, health)
            .unwrap()
    }

    fn build(text: &str, health: &crate::l7::health::HealthState) -> World {
        let cfg = crate::config::from_str(text, "worker-tests.toml").expect("test config");
        let info = PortInfo {
            id: 0,
            driver: "net_null".into(),
            mac: LB_MAC.0,
            promiscuous: false,
            rss: false,
            queues: 2,
            max_queues: 2,
            mtu_set: true,
            tx_offloads: 0,
        };
        let _ = info;
        let plane = World::plane(text, health);
        let mut neighbors = NeighborTable::new(64, 60 * NOW, NOW);
        for &(port, ip, mac) in &plane.static_neighbors {
            neighbors.add_static(port as u8, ip, mac);
        }
        let conntrack = Conntrack::new(&ConntrackConfig {
            max_flows: 1024,
            timeouts: Timeouts::default(),
            new_flow_rate: None,
        });
        let snat = crate::control::compile::owned_addresses(&cfg);
        let l4 = L4State::new(0, 2, conntrack, &snat, Arc::new(L4Counters::default()));
        World {
            plane,
            neighbors,
            l4,
        }
    }

    /// Feed `frame` to `process` on port 0 in an mbuf-like buffer; the
    /// verdict and the bytes it says to send.
    fn run(&mut self, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; HEAD + frame.len() + 128];
        buf[HEAD..HEAD + frame.len()].copy_from_slice(frame);
        let v = process(
            &self.plane,
            &mut self.neighbors,
            &mut self.l4,
            0,
            &mut buf,
            HEAD,
            frame.len(),
            NOW,
        );
        let out = match v {
            Verdict::Transmit { start, len, .. } | Verdict::Solicited { start, len, .. } => {
                buf[start as usize..(start + len) as usize].to_vec()
            }
            _ => Vec::new(),
        };
        (v, out)
    }

    fn service(&self, vip: IpAddr, port: u16, proto: u8) -> usize {
        self.plane.services.lookup(vip, port, proto).unwrap().id as usize
    }

    fn backend(&self, addr: IpAddr) -> usize {
        let b = self.plane.services.backends.iter().flatten();
        b.filter(|b| b.addr == addr).map(|b| b.id).next().unwrap() as usize
    }

    fn count(&self, c: L4Count) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let k = &self.l4.counters;
        match c {
            L4Count::Svc(vip, port, proto, i) => {
                k.service[self.service(vip, port, proto)][i].load(Relaxed)
            }
            L4Count::Backend(addr, i) => k.backend[self.backend(addr)][i].load(Relaxed),
        }
    }
}

/// A per-service or per-backend L4 counter.
#[derive(Clone, Copy, Debug)]
enum L4Count {
    /// (vip, port, protocol, SVC_* index)
    Svc(IpAddr, u16, u8, usize),
    /// (backend address, BE_* index)
    Backend(IpAddr, usize),
}

// ---------------------------------------------------------------- fixtures

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + payload.len()];
    ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: proto,
        payload_len: payload.len(),
        ttl,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
    p[ipv4::HEADER_LEN..].copy_from_slice(payload);
    p
}

fn ip6(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        payload_len: payload.len(),
        hop_limit: hops,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut p[..]));
    p[ipv6::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// A TCP segment (20-byte header) with a valid checksum.
fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20 + data.len()];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t[20..].copy_from_slice(data);
    let mut p = TcpPacket::new_unchecked(&mut t[..]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => p.fill_checksum_v4(&s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => p.fill_checksum_v6(&s, &d),
        _ => unreachable!(),
    }
    t
}

fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8 + data.len()];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u[8..].copy_from_slice(data);
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => p.fill_checksum_v4(&s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => p.fill_checksum_v6(&s, &d),
        _ => unreachable!(),
    }
    u
}

/// A TCP segment over IPv4 in an Ethernet frame to Sluice's MAC.
fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(src.into(), dst.into(), sport, dport, flags, b"hello");
    eth(
        LB_MAC.0,
        CLIENT_MAC.0,
        0x0800,
        &ip4(src, dst, IpProtocol::Tcp, 64, &seg),
    )
}

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let dgram = udp(src.into(), dst.into(), sport, dport, b"query");
    eth(
        LB_MAC.0,
        CLIENT_MAC.0,
        0x0800,
        &ip4(src, dst, IpProtocol::Udp, 64, &dgram),
    )
}

fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(src.into(), dst.into(), sport, dport, flags, b"hello");
    eth(
        LB_MAC.0,
        CLIENT_MAC.0,
        0x86dd,
        &ip6(src, dst, IpProtocol::Tcp, 64, &seg),
    )
}

/// An ICMPv4 error of `kind`/`code` from `from` to `to`, quoting the IPv4
/// header and first 8 bytes of `quoted` (RFC 792).
fn icmp4_error(from: Ipv4Addr, to: Ipv4Addr, kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let q = &quoted[..quoted.len().min(28)];
    let mut m = vec![0u8; 8 + q.len()];
    m[0] = kind;
    m[1] = code;
    m[6..8].copy_from_slice(&1400u16.to_be_bytes());
    m[8..].copy_from_slice(q);
    Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
    eth(
        LB_MAC.0,
        GW_MAC,
        0x0800,
        &ip4(from, to, IpProtocol::Icmp, 60, &m),
    )
}

/// An ICMPv6 error of `kind`/`code` from `from` to `to`, quoting
/// `quoted` (RFC 4443 §2.4: as much as fits).
fn icmp6_error(from: Ipv6Addr, to: Ipv6Addr, kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 8 + quoted.len()];
    m[0] = kind;
    m[1] = code;
    if kind == 2 {
        m[4..8].copy_from_slice(&1280u32.to_be_bytes());
    }
    m[8..].copy_from_slice(quoted);
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&from, &to);
    eth(
        LB_MAC.0,
        GW_MAC,
        0x86dd,
        &ip6(from, to, IpProtocol::Icmpv6, 60, &m),
    )
}

/// The IP packet of a frame (no VLAN tag).
fn l3(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

// ---------------------------------------------------------------- checks

fn check_l2(out: &[u8], dst: [u8; 6], ethertype: u16) {
    let f = EthernetFrame::new_checked(out).unwrap();
    assert_eq!(f.dst_addr().0, dst, "destination MAC");
    assert_eq!(f.src_addr().0, LB_MAC.0, "source MAC is the port's");
    assert_eq!(u16::from(f.ethertype()), ethertype, "ethertype");
}

/// An IPv4 packet out with valid header and TCP/UDP checksums.
fn check_ip4(out: &[u8], src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> (u16, u16) {
    let ip = Ipv4Packet::new_checked(l3(out)).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src, dst), "addresses");
    assert_eq!(ip.ttl(), ttl, "TTL");
    match ip.protocol() {
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum_v4(&src, &dst), "TCP checksum");
            (t.src_port(), t.dst_port())
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(u.verify_checksum_v4(&src, &dst), "UDP checksum");
            (u.src_port(), u.dst_port())
        }
        p => panic!("unexpected protocol {p:?}"),
    }
}

fn check_ip6(out: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hops: u8) -> (u16, u16) {
    let ip = Ipv6Packet::new_checked(l3(out)).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src, dst), "addresses");
    assert_eq!(ip.hop_limit(), hops, "hop limit");
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum_v6(&src, &dst), "TCP checksum");
    (t.src_port(), t.dst_port())
}

/// An outer IPv4 header in front of `inner` (unchanged): its protocol, a
/// valid checksum, the backend as destination, and for GRE the RFC 2784
/// header with the inner ethertype.
fn check_encap4(out: &[u8], backend: Ipv4Addr, gre: bool, inner: &[u8]) {
    let ip = Ipv4Packet::new_checked(l3(out)).unwrap();
    assert!(ip.verify_checksum(), "outer checksum");
    assert_eq!(ip.src_addr(), LB4, "outer source");
    assert_eq!(ip.dst_addr(), backend, "outer destination");
    assert_eq!(ip.dont_frag(), Ipv4Packet::new_unchecked(inner).dont_frag());
    let payload = ip.payload();
    if gre {
        assert_eq!(ip.protocol(), IpProtocol::Gre);
        assert_eq!(&payload[..4], &[0, 0, 0x08, 0x00], "GRE header");
        assert_eq!(&payload[4..], inner, "inner packet untouched");
    } else {
        assert_eq!(ip.protocol(), IpProtocol::IpIp);
        assert_eq!(payload, inner, "inner packet untouched");
    }
}

fn check_encap6(out: &[u8], backend: Ipv6Addr, gre: bool, inner: &[u8]) {
    let ip = Ipv6Packet::new_checked(l3(out)).unwrap();
    assert_eq!(ip.src_addr(), LB6, "outer source");
    assert_eq!(ip.dst_addr(), backend, "outer destination");
    let payload = ip.payload();
    if gre {
        assert_eq!(ip.next_header(), IpProtocol::Gre);
        assert_eq!(&payload[..4], &[0, 0, 0x86, 0xdd], "GRE header");
        assert_eq!(&payload[4..], inner, "inner packet untouched");
    } else {
        assert_eq!(u8::from(ip.next_header()), 41, "IPv6 in IPv6 (RFC 2473)");
        assert_eq!(payload, inner, "inner packet untouched");
    }
}

// ---------------------------------------------------------------- the table

/// What a row expects `process` to answer.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Transmit(Counter),
    Solicited,
    Drop(Counter),
    Consumed(Counter),
    Redirect(usize),
    PassOn,
    L7,
}

fn verdict_kind(v: Verdict) -> Expect {
    match v {
        Verdict::Transmit { port, counter, .. } => {
            assert_eq!(port, 0);
            Expect::Transmit(counter)
        }
        Verdict::Solicited { .. } => Expect::Solicited,
        Verdict::Drop(c) => Expect::Drop(c),
        Verdict::Consumed(c) => Expect::Consumed(c),
        Verdict::Redirect { worker } => Expect::Redirect(worker as usize),
        Verdict::L7 { .. } => Expect::L7,
        Verdict::PassOn => Expect::PassOn,
    }
}

/// Checks on the bytes a row sends out.
type OutCheck = Box<dyn Fn(&[u8])>;

struct Case {
    what: &'static str,
    /// Sent first, each expected to be transmitted (opens the flow).
    before: Vec<Vec<u8>>,
    packet: Vec<u8>,
    verdict: Expect,
    /// Checks on the bytes out (Transmit and Solicited).
    out: Option<OutCheck>,
    /// Per-service / per-backend counters after the row.
    counters: Vec<(L4Count, u64)>,
}

fn case(what: &'static str, packet: Vec<u8>, verdict: Expect) -> Case {
    Case {
        what,
        before: Vec::new(),
        packet,
        verdict,
        out: None,
        counters: Vec::new(),
    }
}

impl Case {
    fn after(mut self, p: Vec<u8>) -> Case {
        self.before.push(p);
        self
    }
    fn out(mut self, f: impl Fn(&[u8]) + 'static) -> Case {
        self.out = Some(Box::new(f));
        self
    }
    fn counts(mut self, c: &[(L4Count, u64)]) -> Case {
        self.counters.extend_from_slice(c);
        self
    }
}

/// Each row in a fresh world (empty connection table, fresh counters).
fn run_table(cases: Vec<Case>) {
    for c in cases {
        let mut w = World::new();
        for (i, p) in c.before.iter().enumerate() {
            let (v, _) = w.run(p);
            assert!(
                matches!(v, Verdict::Transmit { .. }),
                "{}: packet {i} before the row: {v:?}",
                c.what
            );
        }
        let (v, out) = w.run(&c.packet);
        assert_eq!(verdict_kind(v), c.verdict, "{}: verdict", c.what);
        if let Some(check) = &c.out {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&out)));
            if r.is_err() {
                panic!("{}: packet out {:02x?}", c.what, out);
            }
        }
        for &(k, n) in &c.counters {
            assert_eq!(w.count(k), n, "{}: {k:?}", c.what);
        }
    }
}

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// With several workers, a client's packet of a TCP flow this worker does
/// not track may be another worker's: while `pass_misses` is set it is
/// handed on, uncounted; the last worker (flag clear) handles the miss.
/// A SYN, and UDP (which opens flows with any packet), are never handed on.
#[test]
fn misses_are_handed_on_while_other_workers_may_own_them() {
    let svc = |vip| L4Count::Svc(v4(vip), 80, 6, SVC_PACKETS);
    for (vip, last) in [
        (VIP4, Expect::Drop(Counter::drop_no_conn)),
        (VIP_IPIP, Expect::Transmit(Counter::l4_stateless)),
    ] {
        let mut w = World::new();
        w.l4.pass_misses = true;
        let (v, _) = w.run(&tcp4(CLIENT4, vip, CPORT, 80, ACK));
        assert_eq!(
            verdict_kind(v),
            Expect::PassOn,
            "{vip}: ACK of an unknown flow"
        );
        assert_eq!(
            w.count(svc(vip)),
            0,
            "{vip}: nothing counted before the last worker"
        );
        w.l4.pass_misses = false;
        let (v, _) = w.run(&tcp4(CLIENT4, vip, CPORT, 80, ACK));
        assert_eq!(verdict_kind(v), last, "{vip}: the last worker");
        assert_eq!(w.count(svc(vip)), 1, "{vip}");
        w.l4.pass_misses = true;
        let (v, _) = w.run(&tcp4(CLIENT4, vip, CPORT + 1, 80, SYN));
        assert_eq!(
            verdict_kind(v),
            Expect::Transmit(Counter::l4_forwarded),
            "{vip}: a SYN opens the flow here"
        );
        let (v, _) = w.run(&tcp4(CLIENT4, vip, CPORT + 1, 80, ACK));
        assert_eq!(
            verdict_kind(v),
            Expect::Transmit(Counter::l4_forwarded),
            "{vip}: a tracked flow stays"
        );
    }
    let mut w = World::new();
    w.l4.pass_misses = true;
    let (v, _) = w.run(&udp4(CLIENT4, VIP4, CPORT, 53));
    assert_ne!(verdict_kind(v), Expect::PassOn, "UDP is never handed on");
}

#[test]
fn l4_forwarding_modes() {
    let syn = tcp4(CLIENT4, VIP4, CPORT, 80, SYN);
    let reply = tcp4(BE1, LB4, 80, SNAT0, SYN_ACK);
    let ipip = tcp4(CLIENT4, VIP_IPIP, CPORT, 80, SYN);
    let gre = tcp4(CLIENT4, VIP_GRE, CPORT, 80, SYN);
    let l2 = tcp4(CLIENT4, VIP_L2, CPORT, 80, SYN);
    let syn6 = tcp6(CLIENT6, VIP6_NAT, CPORT, 80, SYN);
    let reply6 = tcp6(BE6, LB6, 80, SNAT0, SYN_ACK);
    let ipip6 = tcp6(CLIENT6, VIP6, CPORT, 80, SYN);
    let gre6 = tcp6(CLIENT6, VIP6_GRE, CPORT, 80, SYN);
    let web = |i| L4Count::Svc(v4(VIP4), 80, 6, i);
    run_table(vec![
        case(
            "NAT v4 TCP SYN client -> backend: SNAT source, backend destination, TTL - 1",
            syn.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(|o| {
            check_l2(o, mac(0x11), 0x0800);
            assert_eq!(check_ip4(o, LB4, BE1, 63), (SNAT0, 80));
        })
        .counts(&[
            (web(SVC_PACKETS), 1),
            (web(SVC_NEW), 1),
            (L4Count::Backend(v4(BE1), BE_NEW), 1),
            (L4Count::Backend(v4(BE1), BE_ACTIVE), 1),
        ]),
        case(
            "NAT v4 return backend -> client: from the VIP and service port, via the gateway MAC",
            reply,
            Expect::Transmit(Counter::l4_returned),
        )
        .after(syn.clone())
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x0800);
            assert_eq!(check_ip4(o, VIP4, CLIENT4, 63), (80, CPORT));
        })
        .counts(&[(L4Count::Backend(v4(BE1), BE_PACKETS), 2)]),
        case(
            "NAT v4 second client segment of an open flow keeps its SNAT port",
            tcp4(CLIENT4, VIP4, CPORT, 80, ACK),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .after(syn.clone())
        .out(|o| assert_eq!(check_ip4(o, LB4, BE1, 63), (SNAT0, 80)))
        .counts(&[(web(SVC_PACKETS), 2), (web(SVC_NEW), 1)]),
        case(
            "NAT v4 UDP client -> backend",
            udp4(CLIENT4, VIP4, 5353, 53),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(|o| {
            check_l2(o, mac(0x12), 0x0800);
            assert_eq!(check_ip4(o, LB4, BE2, 63), (SNAT0, 53));
        }),
        case(
            "IPIP v4: outer IPv4 to the backend, inner packet untouched",
            ipip.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x13), 0x0800);
            check_encap4(o, BE3, false, l3(&ipip));
        }),
        case(
            "GRE v4: outer IPv4 + GRE to the backend, inner packet untouched",
            gre.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x13), 0x0800);
            check_encap4(o, BE3, true, l3(&gre));
        }),
        case(
            "L2 DSR: only the MACs change",
            l2.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x12), 0x0800);
            assert_eq!(l3(o), l3(&l2), "IP packet untouched");
        }),
        case(
            "NAT v6 TCP SYN client -> backend: hop limit - 1, checksum valid",
            syn6.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(|o| {
            check_l2(o, mac(0x21), 0x86dd);
            assert_eq!(check_ip6(o, LB6, BE6, 63), (SNAT0, 80));
        }),
        case(
            "NAT v6 return backend -> client",
            reply6,
            Expect::Transmit(Counter::l4_returned),
        )
        .after(syn6)
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x86dd);
            assert_eq!(check_ip6(o, VIP6_NAT, CLIENT6, 63), (80, CPORT));
        }),
        case(
            "IPv6 in IPv6 (ipip mode on a v6 service)",
            ipip6.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x21), 0x86dd);
            check_encap6(o, BE6, false, l3(&ipip6));
        }),
        case(
            "GRE v6",
            gre6.clone(),
            Expect::Transmit(Counter::l4_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x21), 0x86dd);
            check_encap6(o, BE6, true, l3(&gre6));
        }),
    ]);
}

#[test]
fn classification() {
    run_table(vec![
        case(
            "TCP to an L7 listener goes to the L7 engine",
            tcp4(CLIENT4, VIP_L7, CPORT, 80, SYN),
            Expect::L7,
        ),
        case(
            "TCP to our address on our own SNAT slice, untracked: an L7 upstream connection",
            tcp4(BE1, LB4, 8080, SNAT0 + 7, SYN_ACK),
            Expect::L7,
        ),
        case(
            "UDP to our address on our own SNAT slice, untracked: no connection",
            udp4(BE2, LB4, 53, SNAT0 + 7),
            Expect::Drop(Counter::drop_no_conn),
        ),
        case(
            "reply on another worker's SNAT slice is redirected to it",
            tcp4(BE1, LB4, 80, SNAT1, SYN_ACK),
            Expect::Redirect(1),
        ),
        case(
            "TCP to our address below the SNAT range: no service",
            tcp4(CLIENT4, LB4, CPORT, 22, SYN),
            Expect::Drop(Counter::drop_no_service),
        ),
        case(
            "TCP to a VIP on a port without a service",
            tcp4(CLIENT4, VIP4, CPORT, 443, SYN),
            Expect::Drop(Counter::drop_no_service),
        ),
        case(
            "NAT: a non-SYN segment of an unknown flow opens nothing",
            tcp4(CLIENT4, VIP4, CPORT, 80, ACK),
            Expect::Drop(Counter::drop_no_conn),
        )
        .counts(&[(L4Count::Svc(v4(VIP4), 80, 6, SVC_DROPS), 1)]),
        case(
            "neighbor miss towards the backend: the buffer carries an ARP request for it",
            tcp4(CLIENT4, VIP_FAR, CPORT, 80, SYN),
            Expect::Solicited,
        )
        .out(|o| {
            check_l2(o, [0xff; 6], 0x0806);
            let a = ArpPacket::new_checked(l3(o)).unwrap();
            assert_eq!(a.target_protocol_addr(), Ipv4Addr::new(192, 0, 2, 50));
            assert_eq!(a.source_protocol_addr(), LB4);
        }),
        case(
            "not to our MAC",
            {
                let mut f = tcp4(CLIENT4, VIP4, CPORT, 80, SYN);
                f[0..6].copy_from_slice(&mac(0x77));
                f
            },
            Expect::Drop(Counter::drop_l2_not_ours),
        ),
        case(
            "to our MAC but not to one of our addresses or VIPs",
            tcp4(CLIENT4, Ipv4Addr::new(192, 0, 2, 99), CPORT, 80, SYN),
            Expect::Drop(Counter::drop_ip_not_ours),
        ),
        case(
            "VLAN tag on a port without VLAN",
            testdata::VLAN_TCP_SYN.to_vec(),
            Expect::Drop(Counter::drop_vlan_mismatch),
        ),
    ]);
}

#[test]
fn drops_name_their_reason() {
    let syn = tcp4(CLIENT4, VIP4, CPORT, 80, SYN);
    let mut bad_sum = syn.clone();
    bad_sum[14 + 10] ^= 0xff;
    let mut cut_tcp = syn.clone();
    // IPv4 total length covering only 10 bytes of TCP.
    cut_tcp[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut cut_tcp[14..]).fill_checksum();
    let mut ttl1 = syn.clone();
    Ipv4Packet::new_unchecked(&mut ttl1[14..]).rewrite_ttl(1);
    let to_lb = |mut f: Vec<u8>| {
        f[0..6].copy_from_slice(&LB_MAC.0);
        f
    };
    // A SYN with header bytes `at` set to `bytes` and the header checksum
    // made right again (the 20-byte header's checks, in their order).
    let patched = |at: usize, bytes: &[u8]| {
        let mut f = syn.clone();
        f[14 + at..14 + at + bytes.len()].copy_from_slice(bytes);
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum::checksum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        f
    };
    let short_total = patched(2, &19u16.to_be_bytes());
    let long_total = patched(2, &((syn.len() - 14 + 1) as u16).to_be_bytes());
    let version6 = patched(0, &[0x65]);
    let later_fragment = patched(6, &1u16.to_be_bytes());
    let mut options_bad_sum = to_lb(testdata::IPV4_OPTIONS.to_vec());
    options_bad_sum[14 + 10] ^= 0xff;
    let hop_by_hop = {
        let mut p = ip6(
            CLIENT6,
            LB6,
            IpProtocol::HopByHop,
            64,
            &[58, 0, 0, 0, 0, 0, 0, 0],
        );
        p[6] = 0;
        eth(LB_MAC.0, CLIENT_MAC.0, 0x86dd, &p)
    };
    run_table(vec![
        case(
            "truncated Ethernet header",
            syn[..10].to_vec(),
            Expect::Drop(Counter::drop_truncated),
        ),
        case(
            "IPv4 header cut short",
            syn[..14 + 12].to_vec(),
            Expect::Drop(Counter::drop_ipv4_malformed),
        ),
        case(
            "bad IPv4 header checksum",
            bad_sum,
            Expect::Drop(Counter::drop_ipv4_checksum),
        ),
        case(
            "IPv4 total length shorter than the header",
            short_total,
            Expect::Drop(Counter::drop_ipv4_malformed),
        ),
        case(
            "IPv4 total length beyond the frame",
            long_total,
            Expect::Drop(Counter::drop_ipv4_malformed),
        ),
        case(
            "version 6 in an IPv4 frame",
            version6,
            Expect::Drop(Counter::drop_ipv4_malformed),
        ),
        case(
            "IPv4 options",
            to_lb(testdata::IPV4_OPTIONS.to_vec()),
            Expect::Drop(Counter::drop_ipv4_options),
        ),
        case(
            "IPv4 options with a bad checksum: the checksum counts first",
            options_bad_sum,
            Expect::Drop(Counter::drop_ipv4_checksum),
        ),
        case(
            "IPv4 fragment, not the first",
            later_fragment,
            Expect::Drop(Counter::drop_ipv4_fragment),
        ),
        case(
            "IPv4 fragment",
            to_lb(testdata::IPV4_FRAG_FIRST.to_vec()),
            Expect::Drop(Counter::drop_ipv4_fragment),
        ),
        case(
            "bad source: broadcast",
            tcp4(Ipv4Addr::BROADCAST, VIP4, CPORT, 80, SYN),
            Expect::Drop(Counter::drop_bad_source),
        ),
        case(
            "spoofed source: one of our own addresses",
            tcp4(LB4, VIP4, CPORT, 80, SYN),
            Expect::Drop(Counter::drop_spoofed_source),
        ),
        case(
            "TCP header cut by the IP length",
            cut_tcp,
            Expect::Drop(Counter::drop_l4_malformed),
        ),
        case(
            "NAT with TTL 1: expired, not forwarded",
            ttl1,
            Expect::Drop(Counter::drop_ttl_expired),
        ),
        case(
            "IPv6 extension header",
            hop_by_hop,
            Expect::Drop(Counter::drop_ipv6_ext_header),
        ),
        case(
            "IPv6 header cut short",
            tcp6(CLIENT6, VIP6, CPORT, 80, SYN)[..14 + 30].to_vec(),
            Expect::Drop(Counter::drop_ipv6_malformed),
        ),
        case(
            "unknown ethertype to our MAC",
            eth(LB_MAC.0, CLIENT_MAC.0, 0x88b5, &[0; 46]),
            Expect::Drop(Counter::drop_ethertype),
        ),
        case(
            "802.1ad (QinQ) refused",
            to_lb(testdata::QINQ_ICMP_ECHO.to_vec()),
            Expect::Drop(Counter::drop_vlan_mismatch),
        ),
    ]);
}

/// Martian and spoofed sources and port 0, both families, to a NAT VIP, a
/// DSR VIP, an L7 listener and our own address (NAT return traffic): each
/// dropped with its own counter before any lookup creates state or picks a
/// backend.
#[test]
fn hostile_sources_and_ports_are_dropped_before_any_state() {
    let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7);
    let mapped: Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
    let udp6 = |src: Ipv6Addr, dst: Ipv6Addr, sport, dport| {
        let d = udp(src.into(), dst.into(), sport, dport, b"query");
        eth(
            LB_MAC.0,
            CLIENT_MAC.0,
            0x86dd,
            &ip6(src, dst, IpProtocol::Udp, 64, &d),
        )
    };
    let rows: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "v4 source 0.0.0.0",
            tcp4(Ipv4Addr::UNSPECIFIED, VIP4, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source in 0/8",
            tcp4(Ipv4Addr::new(0, 1, 2, 3), VIP4, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source loopback",
            tcp4(Ipv4Addr::new(127, 0, 0, 1), VIP4, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source multicast",
            udp4(Ipv4Addr::new(239, 1, 1, 1), VIP4, CPORT, 53),
            Counter::drop_bad_source,
        ),
        (
            "v4 source class E",
            tcp4(Ipv4Addr::new(240, 0, 0, 1), VIP_IPIP, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source limited broadcast",
            tcp4(Ipv4Addr::BROADCAST, VIP_IPIP, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source our subnet's directed broadcast",
            tcp4(Ipv4Addr::new(192, 0, 2, 255), VIP4, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v4 source our own address, to a DSR VIP",
            tcp4(LB4, VIP_IPIP, CPORT, 80, SYN),
            Counter::drop_spoofed_source,
        ),
        (
            "v4 source the VIP itself (land attack)",
            tcp4(VIP4, VIP4, 80, 80, SYN),
            Counter::drop_spoofed_source,
        ),
        (
            "v4 source another VIP",
            udp4(VIP_GRE, VIP4, CPORT, 53),
            Counter::drop_spoofed_source,
        ),
        (
            "v4 source an L7 listener's VIP",
            tcp4(VIP_L7, VIP4, CPORT, 80, SYN),
            Counter::drop_spoofed_source,
        ),
        (
            "v4 source a VIP, to our own address",
            tcp4(VIP_IPIP, LB4, 80, SNAT0, SYN_ACK),
            Counter::drop_spoofed_source,
        ),
        (
            "v4 echo from a VIP",
            {
                let mut f = testdata::ICMP_ECHO_REQUEST.to_vec();
                let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
                ip.set_src_addr(VIP4);
                ip.fill_checksum();
                f
            },
            Counter::drop_spoofed_source,
        ),
        (
            "TCP source port 0",
            tcp4(CLIENT4, VIP4, 0, 80, SYN),
            Counter::drop_bad_port,
        ),
        (
            "TCP destination port 0",
            tcp4(CLIENT4, VIP4, CPORT, 0, SYN),
            Counter::drop_bad_port,
        ),
        (
            "UDP source port 0",
            udp4(CLIENT4, VIP4, 0, 53),
            Counter::drop_bad_port,
        ),
        (
            "TCP port 0 to a DSR VIP",
            tcp4(CLIENT4, VIP_IPIP, 0, 80, SYN),
            Counter::drop_bad_port,
        ),
        (
            "TCP port 0 to an L7 listener",
            tcp4(CLIENT4, VIP_L7, 0, 80, SYN),
            Counter::drop_bad_port,
        ),
        (
            "NAT reply from port 0",
            tcp4(BE1, LB4, 0, SNAT0, SYN_ACK),
            Counter::drop_bad_port,
        ),
        (
            "v6 source unspecified, TCP",
            tcp6(Ipv6Addr::UNSPECIFIED, VIP6, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v6 source unspecified, UDP",
            udp6(Ipv6Addr::UNSPECIFIED, VIP6_NAT, CPORT, 53),
            Counter::drop_bad_source,
        ),
        (
            "v6 source loopback",
            tcp6(Ipv6Addr::LOCALHOST, VIP6_NAT, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v6 source multicast",
            tcp6("ff02::1".parse().unwrap(), VIP6_NAT, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v6 source IPv4-mapped",
            tcp6(mapped, VIP6_NAT, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v6 source link-local, to a VIP",
            tcp6(ll, VIP6, CPORT, 80, SYN),
            Counter::drop_bad_source,
        ),
        (
            "v6 source link-local, to our address",
            tcp6(ll, LB6, 80, SNAT0, SYN_ACK),
            Counter::drop_bad_source,
        ),
        (
            "v6 source our own address",
            tcp6(LB6, VIP6_NAT, CPORT, 80, SYN),
            Counter::drop_spoofed_source,
        ),
        (
            "v6 source a VIP",
            tcp6(VIP6, VIP6_NAT, CPORT, 80, SYN),
            Counter::drop_spoofed_source,
        ),
        (
            "v6 source a VIP, to our own address",
            tcp6(VIP6_GRE, LB6, 80, SNAT0, SYN_ACK),
            Counter::drop_spoofed_source,
        ),
        (
            "v6 TCP source port 0",
            tcp6(CLIENT6, VIP6_NAT, 0, 80, SYN),
            Counter::drop_bad_port,
        ),
        (
            "v6 TCP destination port 0",
            tcp6(CLIENT6, VIP6, CPORT, 0, SYN),
            Counter::drop_bad_port,
        ),
        (
            "v6 NAT reply to port 0",
            tcp6(BE6, LB6, 80, 0, SYN_ACK),
            Counter::drop_bad_port,
        ),
    ];
    for (what, packet, counter) in rows {
        let mut w = World::new();
        let (v, _) = w.run(&packet);
        assert_eq!(verdict_kind(v), Expect::Drop(counter), "{what}");
        assert!(w.l4.conntrack.is_empty(), "{what}: no connection entry");
        use std::sync::atomic::Ordering::Relaxed;
        for (i, c) in w.l4.counters.service.iter().enumerate() {
            assert_eq!(
                c[SVC_PACKETS].load(Relaxed),
                0,
                "{what}: service {i} saw it"
            );
        }
        for (i, c) in w.l4.counters.backend.iter().enumerate() {
            assert_eq!(c[BE_PACKETS].load(Relaxed), 0, "{what}: backend {i} got it");
        }
    }
    // What stays allowed: a link-local neighbor's echo request to our
    // global address, a duplicate-address probe from ::, and clients on
    // low but non-zero ports.
    let mut w = World::new();
    let echo6 = {
        let mut m = vec![128u8, 0, 0, 0, 0, 1, 0, 1];
        Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&ll, &LB6);
        eth(
            LB_MAC.0,
            CLIENT_MAC.0,
            0x86dd,
            &ip6(ll, LB6, IpProtocol::Icmpv6, 64, &m),
        )
    };
    let (v, _) = w.run(&echo6);
    // Answered: the neighbor is not known yet, so it is solicited first.
    assert_eq!(verdict_kind(v), Expect::Solicited, "link-local echo");
    let (v, _) = w.run(&tcp4(CLIENT4, VIP4, 1, 80, SYN));
    assert_eq!(
        verdict_kind(v),
        Expect::Transmit(Counter::l4_forwarded),
        "source port 1"
    );
}

#[test]
fn icmp_errors_about_tracked_flows() {
    let syn = tcp4(CLIENT4, VIP4, CPORT, 80, SYN);
    // Our NAT reply to the client, as the client side would quote it.
    let reply_to_client = ip4(
        VIP4,
        CLIENT4,
        IpProtocol::Tcp,
        63,
        &tcp(v4(VIP4), v4(CLIENT4), 80, CPORT, SYN_ACK, b""),
    );
    // Our SNATed packet to the backend, as the backend side would quote it.
    let to_backend = ip4(
        LB4,
        BE1,
        IpProtocol::Tcp,
        63,
        &tcp(v4(LB4), v4(BE1), SNAT0, 80, SYN, b""),
    );
    let router = Ipv4Addr::new(203, 0, 113, 1);
    let dsr_reply = ip4(
        VIP_IPIP,
        CLIENT4,
        IpProtocol::Tcp,
        63,
        &tcp(v4(VIP_IPIP), v4(CLIENT4), 80, CPORT, SYN_ACK, b""),
    );
    let dsr_error = icmp4_error(router, VIP_IPIP, 3, 4, &dsr_reply);
    let ptb = testdata::ICMPV6_PACKET_TOO_BIG.to_vec();
    let ptb_nat = {
        // The same error, about a flow of the NAT service.
        let mut f = ptb.clone();
        f[14 + 24..14 + 40].copy_from_slice(&VIP6_NAT.octets());
        f[62 + 8..62 + 24].copy_from_slice(&VIP6_NAT.octets());
        let (src, dst) = {
            let ip = Ipv6Packet::new_unchecked(&f[14..]);
            (ip.src_addr(), ip.dst_addr())
        };
        Icmpv6Packet::new_unchecked(&mut f[54..]).fill_checksum(&src, &dst);
        f
    };
    let syn6 = tcp6(CLIENT6, VIP6_NAT, CPORT, 80, SYN);
    // Our SNATed IPv6 packet to the backend, whole, as an error quotes it.
    let to_backend6 = ip6(
        LB6,
        BE6,
        IpProtocol::Tcp,
        63,
        &tcp(LB6.into(), BE6.into(), SNAT0, 80, SYN, b"hello"),
    );
    run_table(vec![
        case(
            "ICMPv4 frag-needed from the client side about a NAT reply: translated to the backend",
            testdata::ICMP_FRAG_NEEDED.to_vec(),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .after(syn.clone())
        .out(|o| {
            check_l2(o, mac(0x11), 0x0800);
            let ip = Ipv4Packet::new_checked(l3(o)).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (LB4, BE1));
            assert_eq!(ip.ttl(), 0xfa - 1);
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(), "ICMP checksum recomputed");
            assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
            assert_eq!(icmp.next_hop_mtu(), 1400);
            let quoted = icmp.embedded_datagram().unwrap();
            let inner = Ipv4Packet::new_unchecked(quoted);
            assert!(inner.verify_checksum(), "embedded header checksum");
            assert_eq!((inner.src_addr(), inner.dst_addr()), (BE1, LB4));
            let ports = &quoted[20..24];
            assert_eq!(ports, &[0, 80, (SNAT0 >> 8) as u8, SNAT0 as u8]);
        }),
        case(
            "ICMPv4 error from the backend side about a SNATed packet: translated to the client",
            icmp4_error(BE1, LB4, 3, 3, &to_backend),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .after(syn.clone())
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x0800);
            let ip = Ipv4Packet::new_checked(l3(o)).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP4, CLIENT4));
            assert_eq!(ip.ttl(), 59);
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum());
            let quoted = icmp.embedded_datagram().unwrap();
            let inner = Ipv4Packet::new_unchecked(quoted);
            assert!(inner.verify_checksum());
            assert_eq!((inner.src_addr(), inner.dst_addr()), (CLIENT4, VIP4));
            assert_eq!(&quoted[20..24], &[0xc0, 0x00, 0, 80]);
        }),
        case(
            "ICMPv4 error about an untracked NAT reply: no connection",
            icmp4_error(router, VIP4, 3, 4, &reply_to_client),
            Expect::Drop(Counter::drop_no_conn),
        ),
        case(
            "ICMPv4 error about another worker's SNATed packet: redirected to it",
            icmp4_error(
                BE1,
                LB4,
                3,
                3,
                &ip4(
                    LB4,
                    BE1,
                    IpProtocol::Tcp,
                    63,
                    &tcp(v4(LB4), v4(BE1), SNAT1, 80, SYN, b""),
                ),
            ),
            Expect::Redirect(1),
        ),
        case(
            "ICMPv4 error to a DSR VIP (stateless): encapsulated to the flow's backend",
            dsr_error.clone(),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x13), 0x0800);
            check_encap4(o, BE3, false, l3(&dsr_error));
        }),
        case(
            "ICMPv4 error quoting ICMP, not TCP/UDP: unhandled",
            icmp4_error(router, VIP4, 3, 4, l3(&testdata::ICMP_ECHO_REPLY)),
            Expect::Drop(Counter::drop_icmp_unhandled),
        ),
        case(
            "ICMPv6 packet too big to a DSR VIP: IPv6-in-IPv6 to the backend",
            ptb.clone(),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .out(move |o| {
            check_l2(o, mac(0x21), 0x86dd);
            check_encap6(o, BE6, false, l3(&ptb));
        }),
        case(
            "ICMPv6 packet too big from the client side about a NAT reply: translated to the backend",
            ptb_nat.clone(),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .after(syn6.clone())
        .out(|o| {
            check_l2(o, mac(0x21), 0x86dd);
            let ip = Ipv6Packet::new_checked(l3(o)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (LB6, BE6));
            assert_eq!(ip.hop_limit(), 0x3e - 1);
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&LB6, &BE6), "ICMPv6 checksum");
            assert_eq!(icmp.msg_type(), Icmpv6Message::PacketTooBig);
            let quoted = &ip.payload()[8..];
            let inner = Ipv6Packet::new_unchecked(quoted);
            assert_eq!((inner.src_addr(), inner.dst_addr()), (BE6, LB6));
            assert_eq!(&quoted[40..44], &[0, 80, (SNAT0 >> 8) as u8, SNAT0 as u8]);
        }),
        case(
            "ICMPv6 error from the backend side about a SNATed packet: translated to the client",
            icmp6_error(BE6, LB6, 1, 4, &to_backend6),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .after(syn6.clone())
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x86dd);
            let ip = Ipv6Packet::new_checked(l3(o)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP6_NAT, CLIENT6));
            assert_eq!(ip.hop_limit(), 59);
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&VIP6_NAT, &CLIENT6), "ICMPv6 checksum");
            assert_eq!(icmp.msg_type(), Icmpv6Message::DstUnreachable);
            let quoted = &ip.payload()[8..];
            let inner = Ipv6Packet::new_unchecked(quoted);
            assert_eq!((inner.src_addr(), inner.dst_addr()), (CLIENT6, VIP6_NAT));
            let seg = TcpPacket::new_checked(&quoted[40..]).unwrap();
            assert_eq!((seg.src_port(), seg.dst_port()), (CPORT, 80));
            assert!(
                seg.verify_checksum_v6(&CLIENT6, &VIP6_NAT),
                "embedded TCP checksum updated"
            );
        }),
        case(
            "ICMPv6 time exceeded from the backend side about a SNATed packet: translated to the client",
            icmp6_error(BE6, LB6, 3, 0, &to_backend6[..48]),
            Expect::Transmit(Counter::icmp_errors_forwarded),
        )
        .after(syn6.clone())
        .out(|o| {
            let ip = Ipv6Packet::new_checked(l3(o)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP6_NAT, CLIENT6));
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&VIP6_NAT, &CLIENT6));
            assert_eq!(icmp.msg_type(), Icmpv6Message::TimeExceeded);
        }),
        case(
            "ICMPv6 error about an untracked NAT reply: no connection",
            ptb_nat,
            Expect::Drop(Counter::drop_no_conn),
        ),
        case(
            "ICMPv6 error about another worker's SNATed packet: redirected to it",
            icmp6_error(
                BE6,
                LB6,
                1,
                4,
                &ip6(
                    LB6,
                    BE6,
                    IpProtocol::Tcp,
                    63,
                    &tcp(LB6.into(), BE6.into(), SNAT1, 80, SYN, b""),
                ),
            ),
            Expect::Redirect(1),
        ),
        case(
            "ICMPv4 with a bad checksum",
            {
                let mut f = testdata::ICMP_FRAG_NEEDED.to_vec();
                f[36] ^= 0xff;
                f
            },
            Expect::Drop(Counter::drop_icmp_malformed),
        ),
    ]);
}

#[test]
fn local_answers() {
    let ns_dad = testdata::NDP_NS_DAD.to_vec();
    run_table(vec![
        case(
            "ARP request for our address: answered in place",
            testdata::ARP_REQUEST.to_vec(),
            Expect::Transmit(Counter::arp_replies),
        )
        .out(|o| assert_eq!(o, &testdata::ARP_REPLY[..])),
        case(
            "ARP reply for us: learned, consumed",
            {
                let mut f = testdata::ARP_REPLY.to_vec();
                // From 192.0.2.1 to us.
                f[0..6].copy_from_slice(&LB_MAC.0);
                f[6..12].copy_from_slice(&CLIENT_MAC.0);
                f[14 + 7] = 2;
                f[14 + 8..14 + 14].copy_from_slice(&CLIENT_MAC.0);
                f[14 + 14..14 + 18].copy_from_slice(&CLIENT4.octets());
                f[14 + 18..14 + 24].copy_from_slice(&LB_MAC.0);
                f[14 + 24..14 + 28].copy_from_slice(&LB4.octets());
                f
            },
            Expect::Consumed(Counter::neighbor_replies),
        ),
        case(
            "ICMP echo to a VIP: answered from the VIP, TTL reset",
            testdata::ICMP_ECHO_REQUEST.to_vec(),
            Expect::Transmit(Counter::echo_replies),
        )
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x0800);
            let ip = Ipv4Packet::new_checked(l3(o)).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP4, CLIENT4));
            assert_eq!(ip.ttl(), 64);
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum());
            assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
            assert_eq!(
                icmp.data(),
                Icmpv4Packet::new_unchecked(&testdata::ICMP_ECHO_REQUEST[34..]).data()
            );
        }),
        case(
            "ICMPv6 echo to a VIP",
            testdata::ICMPV6_ECHO_REQUEST.to_vec(),
            Expect::Transmit(Counter::echo_replies),
        )
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x86dd);
            let ip = Ipv6Packet::new_checked(l3(o)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP6, CLIENT6));
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&VIP6, &CLIENT6));
            assert_eq!(icmp.msg_type(), Icmpv6Message::EchoReply);
        }),
        case(
            "neighbor solicitation for a VIP: advertisement",
            testdata::NDP_NS.to_vec(),
            Expect::Transmit(Counter::ndp_adverts),
        )
        .out(|o| {
            check_l2(o, CLIENT_MAC.0, 0x86dd);
            let ip = Ipv6Packet::new_checked(l3(o)).unwrap();
            assert_eq!(ip.hop_limit(), 255);
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
            assert_eq!(icmp.msg_type(), Icmpv6Message::NeighborAdvert);
        }),
        case(
            "duplicate address detection probe for an address that is not ours",
            ns_dad,
            Expect::Drop(Counter::drop_ip_not_ours),
        ),
        case(
            "router solicitation: not handled",
            testdata::NDP_RS.to_vec(),
            Expect::Drop(Counter::drop_ip_not_ours),
        ),
    ]);
}

/// Every checksum the NAT rewrite leaves is the one a full recomputation
/// gives (RFC 1624's incremental update agrees with RFC 1071).
#[test]
fn nat_rewrite_checksums_match_recomputation() {
    let mut w = World::new();
    for sport in [1u16, 0x8000, 0xffff, CPORT] {
        let (v, out) = w.run(&tcp4(CLIENT4, VIP4, sport, 80, SYN));
        assert!(matches!(v, Verdict::Transmit { .. }), "{v:?}");
        let mut again = out.clone();
        let mut ip = Ipv4Packet::new_unchecked(&mut again[14..]);
        ip.fill_checksum();
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        TcpPacket::new_unchecked(ip.payload_mut()).fill_checksum_v4(&s, &d);
        assert_eq!(out, again, "source port {sport}");
        assert_eq!(checksum::checksum(&out[14..34]), 0);
    }
    // UDP, with a checksum (verified by recomputation) and without one
    // (0 stays 0: RFC 768).
    for (sport, zero) in [(5353u16, false), (5354, true), (0xffff, false)] {
        let mut f = udp4(CLIENT4, VIP4, sport, 53);
        if zero {
            f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        }
        let (v, out) = w.run(&f);
        assert!(matches!(v, Verdict::Transmit { .. }), "{v:?}");
        let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert!(ip.verify_checksum());
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        if zero {
            assert_eq!(u.checksum(), 0, "no checksum stays none");
        } else {
            assert!(
                u.verify_checksum_v4(&ip.src_addr(), &ip.dst_addr()),
                "UDP {sport}"
            );
        }
    }
}

/// The idle back-off sleeps only after `SLEEP_AFTER` empty polls in a row,
/// starts over at the first packet, and is off with a zero sleep.
#[test]
fn idle_backoff_sleeps_only_after_many_empty_polls() {
    use super::Backoff;
    use std::time::{Duration, Instant};
    let sleep = Duration::from_millis(5);
    let mut b = Backoff { sleep, empty: 0 };
    let t = Instant::now();
    for _ in 1..Backoff::SLEEP_AFTER {
        b.idle(false);
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "no sleep before SLEEP_AFTER empty polls"
    );
    let t = Instant::now();
    b.idle(false);
    assert!(t.elapsed() >= sleep, "sleeps once idle");
    b.idle(true);
    assert_eq!(b.empty, 0, "a packet starts it over");
    let mut off = Backoff {
        sleep: Duration::ZERO,
        empty: 0,
    };
    for _ in 0..2 * Backoff::SLEEP_AFTER {
        off.idle(false);
    }
    assert_eq!(off.empty, 0, "off: never counts, never sleeps");
}

/// Cluster "one" (service web-nat, and here dns-nat too) with two backends,
/// a TCP health check and `on_backend_down = policy`.
fn checked_config(policy: &str) -> String {
    let one = "[[cluster]]\nname = \"one\"\n[[cluster.backend]]\naddress = \"192.0.2.11\"\n";
    let checked = format!(
        "[[cluster]]\nname = \"one\"\non_backend_down = \"{policy}\"\n\
         [cluster.health_check]\ntype = \"tcp\"\nport = 80\n\
         [[cluster.backend]]\naddress = \"192.0.2.11\"\n\
         [[cluster.backend]]\naddress = \"192.0.2.12\"\n"
    );
    let dns = "port = 53\nprotocol = \"udp\"\nmode = \"nat\"\ncluster = \"two\"";
    assert!(CONFIG.contains(one) && CONFIG.contains(dns));
    CONFIG
        .replace(one, &checked)
        .replace(dns, &dns.replace("\"two\"", "\"one\""))
}

/// The backend a forwarded NAT packet went to.
fn nat_dst(out: &[u8]) -> Ipv4Addr {
    Ipv4Packet::new_checked(l3(out)).unwrap().dst_addr()
}

/// A backend its health check takes down while one of its TCP flows and
/// one UDP flow are open: with `reset`, the next TCP segment of either side
/// is answered with a RST to its sender and a UDP flow is balanced again;
/// with `keep`, both carry on to it; either way new flows avoid it.
#[test]
fn connections_of_a_backend_that_goes_down() {
    use crate::l7::health::HealthState;
    for policy in ["reset", "keep"] {
        let text = checked_config(policy);
        let health = HealthState::default();
        let mut w = World::build(&text, &health);
        let (v, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, SYN));
        assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
        let gone = nat_dst(&out);
        let other = if gone == BE1 { BE2 } else { BE1 };
        let (_, out) = w.run(&udp4(CLIENT4, VIP4, 5353, 53));
        let udp_backend = nat_dst(&out);
        // A second TCP flow on the same backend, whose backend speaks
        // first after the down.
        let (second, second_snat) = (1..500u16)
            .find_map(|p| {
                let (_, out) = w.run(&tcp4(CLIENT4, VIP4, 30000 + p, 80, SYN));
                let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
                let t = TcpPacket::new_checked(ip.payload()).unwrap();
                (ip.dst_addr() == gone).then_some((30000 + p, t.src_port()))
            })
            .unwrap();
        // Down: the control thread's new plane, the worker's state kept.
        health.set(w.backend(v4(gone)) as u32, false);
        w.plane = World::plane(&text, &health);
        w.neighbors.plane_changed();
        let what = |s: &str| format!("{policy}: {s}");

        let (v, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, ACK));
        if policy == "reset" {
            assert_eq!(
                verdict_kind(v),
                Expect::Transmit(Counter::l4_backend_down_resets),
                "{}",
                what("client segment")
            );
            check_l2(&out, CLIENT_MAC.0, 0x0800);
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP4, CLIENT4));
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.rst() && t.verify_checksum_v4(&VIP4, &CLIENT4));
            assert_eq!((t.src_port(), t.dst_port()), (80, CPORT));
            // The backend's next segment gets its RST, from the SNAT side.
            let (v, out) = w.run(&tcp4(gone, LB4, 80, SNAT0, ACK));
            assert_eq!(
                verdict_kind(v),
                Expect::Transmit(Counter::l4_backend_down_resets),
                "{}",
                what("backend segment")
            );
            check_l2(&out, mac(if gone == BE1 { 0x11 } else { 0x12 }), 0x0800);
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (LB4, gone));
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.rst() && t.verify_checksum_v4(&LB4, &gone));
            assert_eq!((t.src_port(), t.dst_port()), (SNAT0, 80));
            // The backend speaks first on the second flow: the client is
            // reset, in the backend's sequence space; then the backend.
            let (v, out) = w.run(&tcp4(gone, LB4, 80, second_snat, ACK));
            assert_eq!(
                verdict_kind(v),
                Expect::Transmit(Counter::l4_backend_down_resets),
                "{}",
                what("backend first")
            );
            check_l2(&out, CLIENT_MAC.0, 0x0800);
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(
                (ip.src_addr(), ip.dst_addr(), ip.total_len()),
                (VIP4, CLIENT4, 40)
            );
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.rst() && !t.ack() && t.verify_checksum_v4(&VIP4, &CLIENT4));
            assert_eq!((t.src_port(), t.dst_port()), (80, second));
            let (_, out) = w.run(&tcp4(gone, LB4, 80, second_snat, ACK));
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr()), (LB4, gone));
            // A RST is never answered.
            let (v, _) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, 0x04));
            assert_eq!(verdict_kind(v), Expect::Drop(Counter::drop_backend_down));
        } else {
            assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
            assert_eq!(nat_dst(&out), gone, "{}", what("kept on its backend"));
        }
        // UDP: forgotten and balanced again (reset), or kept.
        let (v, out) = w.run(&udp4(CLIENT4, VIP4, 5353, 53));
        assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
        let want = if policy == "reset" && udp_backend == gone {
            other
        } else {
            udp_backend
        };
        assert_eq!(nat_dst(&out), want, "{}", what("UDP flow"));
        // New connections avoid the down backend.
        for port in 1..200u16 {
            let (v, out) = w.run(&tcp4(CLIENT4, VIP4, 20000 + port, 80, SYN));
            assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
            assert_eq!(nat_dst(&out), other, "{}", what("new flow"));
        }
    }
}

/// A client that reuses the port of a finished connection (RST, or FIN) with
/// a new SYN opens a new connection: it stays on the old backend while that
/// backend takes new connections, and goes elsewhere once its health check
/// has taken it down (with `keep`, which spares only live connections).
#[test]
fn a_new_syn_on_a_finished_connection_avoids_a_down_backend() {
    use crate::l7::health::HealthState;
    const RST: u8 = 0x04;
    const FIN_ACK: u8 = 0x11;
    for end in [RST, FIN_ACK] {
        let text = checked_config("keep");
        let health = HealthState::default();
        let mut w = World::build(&text, &health);
        let (_, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, SYN));
        let first = nat_dst(&out);
        let other = if first == BE1 { BE2 } else { BE1 };
        w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, end));
        // Still up: the reused port keeps its backend.
        let (v, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, SYN));
        assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
        assert_eq!(nat_dst(&out), first, "flags {end:#x}: backend still up");
        w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, end));
        health.set(w.backend(v4(first)) as u32, false);
        w.plane = World::plane(&text, &health);
        w.neighbors.plane_changed();
        let (v, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, SYN));
        assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
        assert_eq!(nat_dst(&out), other, "flags {end:#x}: backend down");
        // The new connection is tracked: its next segment follows it.
        let (_, out) = w.run(&tcp4(CLIENT4, VIP4, CPORT, 80, ACK));
        assert_eq!(nat_dst(&out), other, "flags {end:#x}: the ACK after");
    }
}

/// Passive marking through the packet path: with `passive_rst_limit = 3`,
/// three new NAT connections in a row that a backend answers with a RST
/// take it down (the RSTs still reach the clients); a SYN-ACK in between
/// starts the count again, RSTs of established connections and of the
/// other backend do not count; without the key nothing is marked.
#[test]
fn new_flow_rsts_mark_a_backend_down() {
    use crate::l7::health::HealthState;
    const RST_ACK: u8 = 0x14;
    for limit in [3u32, 0] {
        let mut text = checked_config("keep");
        let hc = "[cluster.health_check]\ntype = \"tcp\"\nport = 80\n";
        if limit > 0 {
            text = text.replace(hc, &format!("{hc}passive_rst_limit = {limit}\n"));
        }
        let health = Arc::new(HealthState::default());
        let mut w = World::build(&text, &health);
        w.l4.health = Some(health.clone());
        let next_port = std::cell::Cell::new(40000u16);
        // A new flow to `to` (client ports tried until one lands there):
        // its SNAT port.
        let open = |w: &mut World, to: Ipv4Addr| loop {
            next_port.set(next_port.get() + 1);
            let (v, out) = w.run(&tcp4(CLIENT4, VIP4, next_port.get(), 80, SYN));
            assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_forwarded));
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            if ip.dst_addr() == to {
                return TcpPacket::new_checked(ip.payload()).unwrap().src_port();
            }
        };
        // The backend's answer to the flow with SNAT port `snat`.
        let answer = |w: &mut World, from: Ipv4Addr, snat: u16, flags: u8| {
            let (v, out) = w.run(&tcp4(from, LB4, 80, snat, flags));
            assert_eq!(verdict_kind(v), Expect::Transmit(Counter::l4_returned));
            let ip = Ipv4Packet::new_checked(l3(&out)).unwrap();
            assert_eq!(ip.dst_addr(), CLIENT4, "the answer goes on to the client");
        };
        let sick = BE1;
        let id = w.backend(v4(sick)) as u32;
        // RST, RST, SYN-ACK: no mark.
        for flags in [RST_ACK, RST_ACK, SYN_ACK] {
            let p = open(&mut w, sick);
            answer(&mut w, sick, p, flags);
        }
        // An established connection's RST, and the other backend's: no
        // count either.
        let p = open(&mut w, sick);
        answer(&mut w, sick, p, SYN_ACK);
        w.run(&tcp4(CLIENT4, VIP4, next_port.get(), 80, ACK));
        answer(&mut w, sick, p, RST_ACK);
        let p = open(&mut w, BE2);
        answer(&mut w, BE2, p, RST_ACK);
        for _ in 0..2 {
            let p = open(&mut w, sick);
            answer(&mut w, sick, p, RST_ACK);
        }
        assert!(health.is_up(id), "limit {limit}: two in a row");
        let p = open(&mut w, sick);
        answer(&mut w, sick, p, RST_ACK);
        if limit == 0 {
            assert!(health.is_up(id), "off: never marked");
            assert_eq!(health.passive_downs(id), 0);
            continue;
        }
        assert!(!health.is_up(id), "three new connections reset in a row");
        assert_eq!((health.passive_downs(id), health.generation()), (1, 1));
        assert!(health.is_up(w.backend(v4(BE2)) as u32));
        // The control thread's next plane leaves it out.
        w.plane = World::plane(&text, &health);
        w.neighbors.plane_changed();
        for port in 1..100u16 {
            let (_, out) = w.run(&tcp4(CLIENT4, VIP4, 20000 + port, 80, SYN));
            assert_eq!(nat_dst(&out), BE2, "new flows avoid the suspect");
        }
    }
}

/// Answers to UDP health checks reach the probing engine: a datagram to a
/// SNAT port of this worker that no connection has, and an ICMP error
/// quoting a UDP datagram from such a port. Another worker's port is handed
/// over; without health checks nothing changes.
#[test]
fn udp_check_answers_go_to_the_engine() {
    use crate::l7::health::HealthState;
    let probe = |sport: u16| {
        ip4(
            LB4,
            BE1,
            IpProtocol::Udp,
            64,
            &udp(v4(LB4), v4(BE1), sport, 53, b"query"),
        )
    };
    let tcp_out = ip4(
        LB4,
        BE1,
        IpProtocol::Tcp,
        64,
        &tcp(v4(LB4), v4(BE1), SNAT0 + 5, 80, SYN, b""),
    );
    let checked = checked_config("keep");
    // (config, frame, expected verdict)
    let rows: Vec<(&str, Vec<u8>, Expect)> = vec![
        (&checked, udp4(BE1, LB4, 53, SNAT0 + 5), Expect::L7),
        (&checked, udp4(BE1, LB4, 53, SNAT1), Expect::Redirect(1)),
        (
            &checked,
            icmp4_error(BE1, LB4, 3, 3, &probe(SNAT0 + 5)),
            Expect::L7,
        ),
        (
            &checked,
            icmp4_error(BE1, LB4, 3, 3, &probe(SNAT1)),
            Expect::Redirect(1),
        ),
        (
            &checked,
            icmp4_error(BE1, LB4, 3, 3, &tcp_out),
            Expect::Drop(Counter::drop_no_conn),
        ),
        (
            CONFIG,
            udp4(BE1, LB4, 53, SNAT0 + 5),
            Expect::Drop(Counter::drop_no_conn),
        ),
        (
            CONFIG,
            icmp4_error(BE1, LB4, 3, 3, &probe(SNAT0 + 5)),
            Expect::Drop(Counter::drop_no_conn),
        ),
    ];
    for (i, (text, frame, want)) in rows.into_iter().enumerate() {
        let mut w = World::build(text, &HealthState::default());
        let (v, _) = w.run(&frame);
        assert_eq!(verdict_kind(v), want, "row {i}");
    }
}
