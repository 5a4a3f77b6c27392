//! The packet function: one frame in, one verdict out.
//!
//! `process` is pure over the frame's bytes and the worker's state (plane,
//! neighbor table, time): no DPDK, no allocation, no logging, no error that
//! bubbles. It is two steps, which the worker's burst path runs one whole
//! burst at a time: [`classify`] reads only the frame and the plane (header
//! and address checks, the service, the flow key) and returns a small
//! [`Class`]; [`act`] does everything that reads or changes state
//! (connections, neighbor table) for one classified frame. It rewrites the frame in place when it answers, so a reply costs
//! no allocation and no copy. Each drop names its reason; every received
//! frame ends in exactly one counter.
//!
//! The buffer handed in is the mbuf's whole buffer: headroom, the frame at
//! `buf[off..off + len]`, and tailroom. Answers and forwarded packets may
//! start before `off` (a larger L2 header, an encapsulation header) or end
//! after the frame (a neighbor advertisement longer than the solicitation);
//! the verdict says where the packet to send starts and how long it is. All
//! offsets below are absolute positions in `buf`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::local;
use crate::l4::balancer::{self, L4State};
use crate::l4::conntrack::Tag;
use crate::l4::flow::FlowKey;
use crate::net::addrs::{MARTIAN, OWN, VIP};
use crate::net::counters::Counter;
use crate::net::neighbor::NeighborTable;
use crate::net::plane::Plane;
pub use crate::net::Verdict;
use crate::net::Verdict::Drop;
use crate::wire::{
    checksum, ipv4, ipv6, EtherType, EthernetAddress, EthernetFrame, Icmpv4Message, Icmpv4Packet,
    Icmpv6Message, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, NdiscRepr,
};

/// Handle one frame received on `port`: `buf[off..off + len]`.
///
/// [`classify`] then [`act`]: the worker's burst path calls the two
/// separately, classifying a whole burst before acting on any of it.
#[allow(clippy::too_many_arguments)]
pub fn process(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4: &mut L4State,
    port: usize,
    buf: &mut [u8],
    off: usize,
    len: usize,
    now: u64,
) -> Verdict {
    let class = classify(plane, port, buf, off, len, &mut ServiceMemo::default());
    let tag = match &class {
        Class::Flow(f) => l4.conntrack.tag(&f.key),
        _ => Tag::default(),
    };
    act(plane, neighbors, l4, port, buf, &class, tag, now)
}

/// A TCP/UDP packet that classification gave to the L4 code, in a few
/// words (a burst's worth is held between the worker's stages): its
/// connection key (addresses, ports, protocol as received), the offsets of
/// its headers, its TCP flags and where it goes.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub key: FlowKey,
    l3: u32,
    l4: u32,
    end: u32,
    flags: u8,
    v4: bool,
    /// The L4 service, as an index into the plane's `services`; [`OWN`]
    /// for a packet to one of our own addresses (NAT return traffic,
    /// another worker's, or the L7 engine's: see [`own`]).
    to: u16,
}

/// [`Flow::to`] of a packet to one of our own addresses.
const OWN_FLOW: u16 = u16::MAX;

impl Flow {
    /// The packet as the L4 code takes it.
    #[inline]
    fn ip(&self) -> balancer::Ip {
        let (src, dst) = if self.v4 {
            let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]));
            (v4(&self.key.src), v4(&self.key.dst))
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(self.key.src)),
                IpAddr::V6(Ipv6Addr::from(self.key.dst)),
            )
        };
        balancer::Ip {
            l3: self.l3 as usize,
            l4: self.l4 as usize,
            end: self.end as usize,
            src,
            dst,
            proto: self.key.proto,
        }
    }

    /// Source port, destination port, TCP flags.
    #[inline]
    fn ports(&self) -> (u16, u16, u8) {
        (self.key.src_port, self.key.dst_port, self.flags)
    }
}

/// What [`classify`] made of a frame: everything decided from the frame's
/// bytes and the plane alone. Offsets are absolute positions in the
/// buffer (which is at most 64 KiB).
#[derive(Clone, Copy, Debug)]
pub enum Class {
    /// Decided already: a drop, or a segment for the L7 engine.
    Done(Verdict),
    /// TCP/UDP for the L4 code.
    Flow(Flow),
    /// ARP, for us or broadcast: `buf[l3..end]`.
    Arp { l3: u32, end: u32 },
    /// ICMP to one of our addresses or a VIP, after a valid IPv4 header.
    Icmp4 {
        l3: u32,
        end: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    /// ICMPv6 for us (unicast or our solicited-node group).
    Icmp6 {
        l3: u32,
        end: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        src_mac: EthernetAddress,
    },
}

impl Default for Class {
    fn default() -> Self {
        Class::Done(Drop(Counter::drop_truncated))
    }
}

/// The last service lookup of a burst: consecutive packets to the same
/// VIP, port and protocol (the common case) reuse its answer instead of
/// probing the plane's service index again. Valid for one plane: start a
/// new one (`default`) for each burst.
#[derive(Clone, Copy, Default)]
pub struct ServiceMemo {
    /// The VIP as a connection key holds it (IPv4-mapped), port, protocol.
    vip: [u8; 16],
    port: u16,
    proto: u8,
    valid: bool,
    found: Option<u16>,
}

impl ServiceMemo {
    /// The index of the service of `key`'s destination, port and protocol
    /// (`Services::lookup_index`).
    #[inline(always)]
    fn lookup(&mut self, plane: &Plane, key: &FlowKey, vip: IpAddr) -> Option<u16> {
        if self.valid && self.vip == key.dst && self.port == key.dst_port && self.proto == key.proto
        {
            return self.found;
        }
        let found = plane.services.lookup_index(vip, key.dst_port, key.proto);
        *self = ServiceMemo {
            vip: key.dst,
            port: key.dst_port,
            proto: key.proto,
            valid: true,
            found,
        };
        found
    }
}

/// Classify the frame `buf[off..off + len]` received on `port`: the header
/// checks, address checks and service choice, which read nothing but the
/// frame and the plane (no neighbor, connection or counter state), so that
/// a burst can be classified before any of it is acted on. `memo` carries
/// the last service lookup from one packet of a burst to the next.
#[inline(always)]
pub fn classify(
    plane: &Plane,
    port: usize,
    buf: &[u8],
    off: usize,
    len: usize,
    memo: &mut ServiceMemo,
) -> Class {
    let Some(p) = plane.ports.get(port) else {
        return Class::Done(Drop(Counter::drop_l2_not_ours));
    };
    let end = (off + len).min(buf.len());
    let frame = match EthernetFrame::new_checked(&buf[off..end]) {
        Ok(f) => f,
        Err(_) => return Class::Done(Drop(Counter::drop_truncated)),
    };
    let (ethertype, l3) = match frame.inner_ethertype() {
        Ok((t, l)) => (t, off + l),
        Err(crate::wire::Error::Truncated) => return Class::Done(Drop(Counter::drop_truncated)),
        Err(_) => return Class::Done(Drop(Counter::drop_vlan_mismatch)),
    };
    let vid = frame.vlan_tag().map(|t| t.vid());
    if vid != p.vlan {
        return Class::Done(Drop(Counter::drop_vlan_mismatch));
    }
    let dst_mac = frame.dst_addr();
    let src_mac = frame.src_addr();
    let to_us = dst_mac.0 == p.mac;
    match ethertype {
        EtherType::Arp if to_us || dst_mac.is_broadcast() => Class::Arp {
            l3: l3 as u32,
            end: end as u32,
        },
        EtherType::Ipv4 if to_us => ipv4_class(plane, buf, l3, end, memo),
        EtherType::Ipv6 if to_us || is_ipv6_multicast_mac(dst_mac) => {
            ipv6_class(plane, port, buf, l3, end, src_mac, to_us, memo)
        }
        EtherType::Arp | EtherType::Ipv4 | EtherType::Ipv6 => {
            Class::Done(Drop(Counter::drop_l2_not_ours))
        }
        _ if !to_us => Class::Done(Drop(Counter::drop_l2_not_ours)),
        _ => Class::Done(Drop(Counter::drop_ethertype)),
    }
}

/// Act on a frame [`classify`] classified, with the worker's state: the
/// frame is answered, forwarded or handed on in place. `tag` is the
/// connection table's tag of a [`Class::Flow`]'s key
/// (`Conntrack::tag`), computed once per packet by the caller (ignored
/// for other classes).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn act(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4: &mut L4State,
    port: usize,
    buf: &mut [u8],
    class: &Class,
    tag: Tag,
    now: u64,
) -> Verdict {
    match *class {
        Class::Flow(ref f) => flow(plane, neighbors, l4, buf, f, tag, now),
        Class::Done(v) => v,
        Class::Arp { l3, end } => {
            local::arp_in(plane, neighbors, port, buf, l3 as usize, end as usize, now)
        }
        Class::Icmp4 { l3, end, src, dst } => icmp4_in(
            plane,
            neighbors,
            l4,
            buf,
            l3 as usize,
            end as usize,
            src,
            dst,
            now,
        ),
        Class::Icmp6 {
            l3,
            end,
            src,
            dst,
            hop_limit,
            src_mac,
        } => icmp6_in(
            plane,
            neighbors,
            l4,
            port,
            buf,
            l3 as usize,
            end as usize,
            src,
            dst,
            hop_limit,
            src_mac,
            now,
        ),
    }
}

/// A classified TCP/UDP packet: to an L4 service, or to one of our
/// addresses.
#[inline(always)]
fn flow(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    buf: &mut [u8],
    f: &Flow,
    tag: Tag,
    now: u64,
) -> Verdict {
    let (pkt, ports) = (f.ip(), f.ports());
    if f.to == OWN_FLOW {
        return own(plane, neighbors, l4st, buf, pkt, ports, &f.key, tag, now);
    }
    let svc = &plane.services.services[f.to as usize];
    balancer::from_client(
        plane, neighbors, l4st, svc, buf, pkt, ports, &f.key, tag, now,
    )
}

#[inline]
fn is_ipv6_multicast_mac(m: EthernetAddress) -> bool {
    m.0[0] == 0x33 && m.0[1] == 0x33
}

// ---------------------------------------------------------------- IPv4

/// A martian IPv4 source by its first octet: 0/8 ("this network", the
/// unspecified address included), 127/8 (loopback), 224/4 (multicast) and
/// 240/4 (reserved, the limited broadcast included).
#[inline]
fn bad_source_v4(a: Ipv4Addr) -> bool {
    let o = a.octets()[0];
    o == 0 || o == 127 || o >= 224
}

/// A martian IPv6 source whatever the packet: multicast, loopback, or an
/// IPv4-mapped address (::ffff:0:0/96, never on the wire, RFC 4291
/// §2.5.5.2). The unspecified address is checked by the caller (a
/// duplicate address detection probe comes from it).
#[inline]
fn bad_source_v6(a: Ipv6Addr) -> bool {
    let x = u128::from(a);
    (x >> 120) == 0xff || x == 1 || (x >> 32) == 0xffff
}

#[inline]
fn is_link_local_v6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The IPv4 part of [`classify`].
#[inline]
fn ipv4_class(plane: &Plane, buf: &[u8], l3: usize, end: usize, memo: &mut ServiceMemo) -> Class {
    let data = &buf[l3..end];
    // Nearly every header is version 4 with 20 bytes (IHL 5): checked on a
    // fixed-size view, with the checks `ipv4_header` makes in the same
    // order and the same outcome, but no bounds check per field and the
    // checksum summed in native byte order. Anything else takes
    // `ipv4_header`.
    let (src, dst, proto, total) = match data.first_chunk::<{ ipv4::HEADER_LEN }>() {
        Some(h) if h[0] == 0x45 => {
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            // Ipv4Packet::check_len: the header longer than the total
            // length, or the total length beyond the frame.
            if total < ipv4::HEADER_LEN || total > data.len() {
                return Class::Done(Drop(Counter::drop_ipv4_malformed));
            }
            if !checksum::verify_ipv4_header(h) {
                return Class::Done(Drop(Counter::drop_ipv4_checksum));
            }
            if u16::from_be_bytes([h[6], h[7]]) & ipv4::FRAGMENT_BITS != 0 {
                return Class::Done(Drop(Counter::drop_ipv4_fragment));
            }
            // Each address as one 32-bit word (one load), not four bytes.
            let addr = |i: usize| {
                Ipv4Addr::from_bits(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]))
            };
            (addr(12), addr(16), h[9], total)
        }
        _ => match ipv4_header(data) {
            Ok(t) => t,
            Err(c) => return Class::Done(Drop(c)),
        },
    };
    // Sources first, before anything is looked up or created: one probe
    // of the plane's address set says own address, VIP or directed
    // broadcast.
    let skind = plane.addrs.v4(src);
    if bad_source_v4(src) || skind & MARTIAN != 0 {
        return Class::Done(Drop(Counter::drop_bad_source));
    }
    if skind != 0 {
        return Class::Done(Drop(Counter::drop_spoofed_source));
    }
    let end = l3 + total;
    let dkind = plane.addrs.v4(dst);
    let vip = dkind & VIP != 0;
    // Any port's address will do (weak host model): NAT replies come back
    // to the SNAT address, which may sit on another port than the backends.
    if dkind & (OWN | VIP) == 0 {
        return Class::Done(Drop(Counter::drop_ip_not_ours));
    }
    if proto == 6 || proto == 17 {
        let pkt = balancer::Ip::v4(l3, end, src, dst, proto);
        let key = FlowKey::v4(src, dst, 0, 0, proto);
        return tcp_udp_class(plane, buf, pkt, key, vip, memo);
    }
    match IpProtocol::from(proto) {
        IpProtocol::Icmp => Class::Icmp4 {
            l3: l3 as u32,
            end: end as u32,
            src,
            dst,
        },
        _ => Class::Done(Drop(Counter::drop_no_service)),
    }
}

/// The checks of an IPv4 header `ipv4_class` does not take on its fast
/// path (options, another version, a header cut short), in the order that
/// decides the counter: malformed, checksum, options, fragment. Source,
/// destination, protocol and total length of a header that passes.
#[cold]
#[inline(never)]
fn ipv4_header(data: &[u8]) -> Result<(Ipv4Addr, Ipv4Addr, u8, usize), Counter> {
    let ip = Ipv4Packet::new_checked(data).map_err(|_| Counter::drop_ipv4_malformed)?;
    if !ip.verify_checksum() {
        return Err(Counter::drop_ipv4_checksum);
    }
    if ip.header_len() != ipv4::HEADER_LEN {
        return Err(Counter::drop_ipv4_options);
    }
    if ip.is_fragment() {
        return Err(Counter::drop_ipv4_fragment);
    }
    Ok((
        ip.src_addr(),
        ip.dst_addr(),
        ip.protocol_number(),
        ip.total_len() as usize,
    ))
}

/// ICMP after a valid IPv4 header: an error about a tracked flow, or an
/// echo request to answer.
#[allow(clippy::too_many_arguments)]
fn icmp4_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    now: u64,
) -> Verdict {
    let l4 = l3 + ipv4::HEADER_LEN;
    let icmp = match Icmpv4Packet::new_checked(&buf[l4..end]) {
        Ok(i) => i,
        Err(_) => return Drop(Counter::drop_icmp_malformed),
    };
    if !icmp.verify_checksum() {
        return Drop(Counter::drop_icmp_malformed);
    }
    if matches!(
        icmp.msg_type(),
        Icmpv4Message::DstUnreachable | Icmpv4Message::TimeExceeded
    ) && !plane.services.is_empty()
    {
        let pkt = balancer::Ip::v4(l3, end, src, dst, 1);
        return balancer::icmp_error_v4(plane, neighbors, l4st, buf, pkt, now);
    }
    if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
        return Drop(Counter::drop_icmp_unhandled);
    }
    local::echo_reply_v4(plane, neighbors, buf, l3, end, now)
}

// ---------------------------------------------------------------- IPv6

/// The IPv6 part of [`classify`].
#[allow(clippy::too_many_arguments)]
#[inline]
fn ipv6_class(
    plane: &Plane,
    port: usize,
    buf: &[u8],
    l3: usize,
    end: usize,
    src_mac: EthernetAddress,
    to_us: bool,
    memo: &mut ServiceMemo,
) -> Class {
    let p = &plane.ports[port];
    let (src, dst, next, hop_limit, end) = {
        let ip = match Ipv6Packet::new_checked(&buf[l3..end]) {
            Ok(ip) => ip,
            Err(_) => return Class::Done(Drop(Counter::drop_ipv6_malformed)),
        };
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.next_header(),
            ip.hop_limit(),
            l3 + ipv6::HEADER_LEN + ip.payload_len() as usize,
        )
    };
    if bad_source_v6(src) {
        return Class::Done(Drop(Counter::drop_bad_source));
    }
    if plane.addrs.v6(src) & (OWN | VIP) != 0 {
        return Class::Done(Drop(Counter::drop_spoofed_source));
    }
    // Unicast to one of our addresses (with our MAC), or the solicited-node
    // group of one of them (with the group's MAC).
    let dkind = if dst.is_multicast() {
        0
    } else {
        plane.addrs.v6(dst)
    };
    let vip = dkind & VIP != 0;
    let ours = if dst.is_multicast() {
        let group_of = |a: &Ipv6Addr| ipv6::solicited_node_multicast(a) == dst;
        let group_ok = ipv6::is_solicited_node_multicast(&dst)
            && (p.v6.iter().any(|(a, _)| group_of(a))
                || plane
                    .services
                    .vips_on(port)
                    .any(|v| matches!(v, IpAddr::V6(a) if group_of(&a))));
        group_ok && !to_us
    } else {
        to_us && dkind & (OWN | VIP) != 0
    };
    if !ours {
        return Class::Done(Drop(Counter::drop_ip_not_ours));
    }
    if next.is_ipv6_extension() {
        return Class::Done(Drop(Counter::drop_ipv6_ext_header));
    }
    // Only a neighbor solicitation (duplicate address detection) may come
    // from the unspecified address; checked below for ICMPv6.
    if src.is_unspecified() && next != IpProtocol::Icmpv6 {
        return Class::Done(Drop(Counter::drop_bad_source));
    }
    if matches!(next, IpProtocol::Tcp | IpProtocol::Udp) && !dst.is_multicast() {
        // A link-local source cannot be answered beyond the link: no
        // client, backend or peer of ours talks to a routable address
        // from one.
        if is_link_local_v6(src) && !is_link_local_v6(dst) {
            return Class::Done(Drop(Counter::drop_bad_source));
        }
        let pkt = balancer::Ip {
            l3,
            l4: l3 + ipv6::HEADER_LEN,
            end,
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            proto: u8::from(next),
        };
        let key = FlowKey::v6(src, dst, 0, 0, pkt.proto);
        return tcp_udp_class(plane, buf, pkt, key, vip, memo);
    }
    if next != IpProtocol::Icmpv6 {
        return Class::Done(Drop(Counter::drop_no_service));
    }
    Class::Icmp6 {
        l3: l3 as u32,
        end: end as u32,
        src,
        dst,
        hop_limit,
        src_mac,
    }
}

/// ICMPv6 for us: echo, an error about a tracked flow, neighbor discovery.
#[allow(clippy::too_many_arguments)]
fn icmp6_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    port: usize,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    src_mac: EthernetAddress,
    now: u64,
) -> Verdict {
    let l4 = l3 + ipv6::HEADER_LEN;
    let msg = {
        let icmp = match Icmpv6Packet::new_checked(&buf[l4..end]) {
            Ok(i) => i,
            Err(_) => return Drop(Counter::drop_icmp_malformed),
        };
        if !icmp.verify_checksum(&src, &dst) {
            return Drop(Counter::drop_icmp_malformed);
        }
        icmp.msg_type()
    };
    if src.is_unspecified() && msg != Icmpv6Message::NeighborSolicit {
        return Drop(Counter::drop_bad_source);
    }
    match msg {
        Icmpv6Message::EchoRequest if !dst.is_multicast() => {
            local::echo_reply_v6(plane, neighbors, buf, l3, end, now)
        }
        Icmpv6Message::DstUnreachable
        | Icmpv6Message::PacketTooBig
        | Icmpv6Message::TimeExceeded
            if !dst.is_multicast() && !plane.services.is_empty() =>
        {
            let pkt = balancer::Ip {
                l3,
                l4,
                end,
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                proto: 58,
            };
            balancer::icmp_error_v6(plane, neighbors, l4st, buf, pkt, now)
        }
        Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert => {
            let repr = match NdiscRepr::parse(&Icmpv6Packet::new_unchecked(&buf[l4..end])) {
                Ok(r) => r,
                Err(_) => return Drop(Counter::drop_ndp_malformed),
            };
            if repr.check_ip(&src, &dst, hop_limit).is_err() {
                return Drop(Counter::drop_ndp_malformed);
            }
            local::ndp_in(plane, neighbors, port, buf, l3, src, src_mac, repr, now)
        }
        _ => Drop(Counter::drop_icmp_unhandled),
    }
}

// ---------------------------------------------------------------- TCP/UDP

/// A TCP or UDP packet to a VIP (`vip`) or to one of our addresses: with
/// [`own`], the one place that decides between an L7 listener, an L4
/// service, NAT return traffic, another worker's connection and the L7
/// engine's upstream connections. This part reads only the packet and the
/// plane.
///
/// `key` is the packet's connection key but for the ports (zero), built by
/// the caller from the header's address bytes.
///
/// Inlined (with [`balancer::ports`] and [`ServiceMemo::lookup`]) into
/// `ipv4_class` and `ipv6_class`, so that the packet and the key are
/// built where they are used rather than on the stack for a call.
#[inline(always)]
fn tcp_udp_class(
    plane: &Plane,
    buf: &[u8],
    pkt: balancer::Ip,
    key: FlowKey,
    vip: bool,
    memo: &mut ServiceMemo,
) -> Class {
    let Some(ports) = balancer::ports(buf, &pkt) else {
        return Class::Done(Drop(Counter::drop_l4_malformed));
    };
    let dport = ports.1;
    // Port 0 is reserved (RFC 6335): no client, backend or listener uses
    // it, and a connection entry must never be made for it.
    if ports.0 == 0 || dport == 0 {
        return Class::Done(Drop(Counter::drop_bad_port));
    }
    let key = FlowKey {
        src_port: ports.0,
        dst_port: dport,
        ..key
    };
    let to = if vip {
        if pkt.proto == 6 && plane.l7.listener(pkt.dst, dport).is_some() {
            return Class::Done(Verdict::l7(pkt.l3, pkt.end));
        }
        let Some(i) = memo.lookup(plane, &key, pkt.dst) else {
            return Class::Done(Drop(Counter::drop_no_service));
        };
        i
    } else {
        OWN_FLOW
    };
    Class::Flow(Flow {
        key,
        l3: pkt.l3 as u32,
        l4: pkt.l4 as u32,
        end: pkt.end as u32,
        flags: ports.2,
        v4: pkt.src.is_ipv4(),
        to,
    })
}

/// A TCP/UDP packet to one of our own addresses (see [`tcp_udp_class`]).
#[allow(clippy::too_many_arguments)]
#[inline]
fn own(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    buf: &mut [u8],
    pkt: balancer::Ip,
    ports: (u16, u16, u8),
    key: &FlowKey,
    tag: Tag,
    now: u64,
) -> Verdict {
    let dport = ports.1;
    if let Some(v) = balancer::nat_return(plane, neighbors, l4st, buf, pkt, ports, key, tag, now) {
        return v;
    }
    // No connection of this worker: the SNAT port slice names the worker
    // that owns it (see `crate::l4::snat`).
    match l4st.snat.owner(dport) {
        Some(w) if w != l4st.worker && plane.workers > 1 && w < plane.workers => {
            Verdict::redirect(w)
        }
        // An upstream or health-check connection of the L7 engine (or a
        // segment it will count as unknown); a UDP health check's answer.
        Some(_) if (pkt.proto == 6 && !plane.l7.is_empty()) || plane.services.probing => {
            Verdict::l7(pkt.l3, pkt.end)
        }
        Some(_) if !plane.services.is_empty() => Drop(Counter::drop_no_conn),
        _ => Drop(Counter::drop_no_service),
    }
}
