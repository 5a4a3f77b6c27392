//! The packet function: one frame in, one verdict out.
//!
//! `process` is pure over the frame's bytes and the worker's state (plane,
//! neighbor table, time): no DPDK, no allocation, no logging, no error that
//! bubbles. It rewrites the frame in place when it answers, so a reply costs
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

use super::counters::Counter;
use super::l4lb::{self, L4State};
use super::neighbor::{NeighborTable, Resolve};
use super::plane::{Plane, PortPlane};
use crate::wire::{
    arp, ethernet, ipv6, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress,
    EthernetFrame, Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpProtocol,
    Ipv4Packet, Ipv6Packet, NdiscRepr,
};

/// Hop limit / TTL of packets Sluice originates (RFC 1700's default).
const DEFAULT_TTL: u8 = 64;

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send `buf[start..start + len]` out of `port`, counting `counter`.
    Transmit {
        port: usize,
        start: usize,
        len: usize,
        counter: Counter,
    },
    /// The frame's answer could not go out because the next hop is
    /// unresolved; `buf[start..start + len]` now holds a solicitation for it,
    /// for `port`. Counted as `drop_neighbor_miss` + `neighbor_solicits`.
    Solicited {
        port: usize,
        start: usize,
        len: usize,
    },
    /// The packet belongs to a connection another worker owns (NAT return
    /// traffic whose SNAT port is in that worker's range): hand it over.
    Redirect {
        worker: usize,
    },
    /// A TCP segment for the L7 engine (a listener or one of its
    /// connections): the IP packet is `buf[l3..end]`.
    L7 {
        l3: usize,
        end: usize,
    },
    /// Used up without an answer (an ARP reply, a neighbor advertisement).
    Consumed(Counter),
    Drop(Counter),
}

use Verdict::Drop;

/// Handle one frame received on `port`: `buf[off..off + len]`.
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
    let Some(p) = plane.ports.get(port) else {
        return Drop(Counter::drop_l2_not_ours);
    };
    let end = (off + len).min(buf.len());
    let frame = match EthernetFrame::new_checked(&buf[off..end]) {
        Ok(f) => f,
        Err(_) => return Drop(Counter::drop_truncated),
    };
    let (ethertype, l3) = match frame.inner_ethertype() {
        Ok((t, l)) => (t, off + l),
        Err(crate::wire::Error::Truncated) => return Drop(Counter::drop_truncated),
        Err(_) => return Drop(Counter::drop_vlan_mismatch),
    };
    let vid = frame.vlan_tag().map(|t| t.vid());
    if vid != p.vlan {
        return Drop(Counter::drop_vlan_mismatch);
    }
    let dst_mac = frame.dst_addr();
    let src_mac = frame.src_addr();
    let to_us = dst_mac.0 == p.mac;
    match ethertype {
        EtherType::Arp if to_us || dst_mac.is_broadcast() => {
            arp_in(plane, neighbors, port, buf, l3, end, now)
        }
        EtherType::Ipv4 if to_us => ipv4_in(plane, neighbors, l4, port, buf, l3, end, now),
        EtherType::Ipv6 if to_us || is_ipv6_multicast_mac(dst_mac) => ipv6_in(
            plane, neighbors, l4, port, buf, l3, end, src_mac, to_us, now,
        ),
        EtherType::Arp | EtherType::Ipv4 | EtherType::Ipv6 => Drop(Counter::drop_l2_not_ours),
        _ if !to_us => Drop(Counter::drop_l2_not_ours),
        _ => Drop(Counter::drop_ethertype),
    }
}

#[inline]
fn is_ipv6_multicast_mac(m: EthernetAddress) -> bool {
    m.0[0] == 0x33 && m.0[1] == 0x33
}

/// Write an Ethernet header (with the port's VLAN tag, if any) at the start
/// of `buf` and return its length.
#[inline]
pub(crate) fn write_l2(
    buf: &mut [u8],
    out: &PortPlane,
    dst: [u8; 6],
    ethertype: EtherType,
) -> usize {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&out.mac);
    match out.vlan {
        Some(vid) => {
            buf[12..14].copy_from_slice(&u16::from(EtherType::Vlan).to_be_bytes());
            buf[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            buf[16..18].copy_from_slice(&u16::from(ethertype).to_be_bytes());
            ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
        }
        None => {
            buf[12..14].copy_from_slice(&u16::from(ethertype).to_be_bytes());
            ethernet::HEADER_LEN
        }
    }
}

#[inline]
pub(crate) fn l2_len(out: &PortPlane) -> usize {
    ethernet::HEADER_LEN
        + if out.vlan.is_some() {
            ethernet::VLAN_TAG_LEN
        } else {
            0
        }
}

// ---------------------------------------------------------------- ARP

fn arp_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    port: usize,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    now: u64,
) -> Verdict {
    let p = &plane.ports[port];
    let repr = match ArpPacket::new_checked(&buf[l3..end]).and_then(|a| ArpRepr::parse(&a)) {
        Ok(r) => r,
        Err(_) => return Drop(Counter::drop_arp_malformed),
    };
    let spa = repr.source_protocol_addr;
    let sha = repr.source_hardware_addr;
    let tpa = repr.target_protocol_addr;
    let for_us = p.owns_v4(tpa) || plane.services.vip_on(port, IpAddr::V4(tpa));
    // RFC 826 merge: refresh a known sender; add it if it is talking to us.
    // Only on-link unicast senders are neighbors.
    if sha.is_unicast() && p.on_link_v4(spa) && !p.owns_v4(spa) {
        neighbors.learn(port as u8, IpAddr::V4(spa), sha.0, now, for_us);
    }
    match repr.operation {
        ArpOperation::Request if for_us => {
            let start = l3 - l2_len(p);
            write_l2(&mut buf[start..], p, sha.0, EtherType::Arp);
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(p.mac),
                source_protocol_addr: tpa,
                target_hardware_addr: sha,
                target_protocol_addr: spa,
            };
            reply.emit(&mut ArpPacket::new_unchecked(
                &mut buf[l3..l3 + arp::PACKET_LEN],
            ));
            Verdict::Transmit {
                port,
                start,
                len: l3 + arp::PACKET_LEN - start,
                counter: Counter::arp_replies,
            }
        }
        ArpOperation::Reply if for_us => Verdict::Consumed(Counter::neighbor_replies),
        ArpOperation::Request | ArpOperation::Reply => Drop(Counter::drop_arp_not_ours),
        _ => Drop(Counter::drop_arp_malformed),
    }
}

/// Write an ARP request for `target` on port `out` at the start of `buf`;
/// its length.
fn arp_solicit(plane: &Plane, out: usize, target: Ipv4Addr, buf: &mut [u8]) -> Option<usize> {
    let p = plane.ports.get(out)?;
    let src = p.source_v4(target)?;
    let l2 = write_l2(buf, p, [0xff; 6], EtherType::Arp);
    let req = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(p.mac),
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let end = l2 + arp::PACKET_LEN;
    req.emit(&mut ArpPacket::new_unchecked(buf.get_mut(l2..end)?));
    Some(end)
}

// ---------------------------------------------------------------- IPv4

#[inline]
fn bad_source_v4(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.is_unspecified()
}

#[allow(clippy::too_many_arguments)]
fn ipv4_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    port: usize,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    now: u64,
) -> Verdict {
    let p = &plane.ports[port];
    let (src, dst, proto, total) = {
        let ip = match Ipv4Packet::new_checked(&buf[l3..end]) {
            Ok(ip) => ip,
            Err(_) => return Drop(Counter::drop_ipv4_malformed),
        };
        if !ip.verify_checksum() {
            return Drop(Counter::drop_ipv4_checksum);
        }
        if ip.header_len() != crate::wire::ipv4::HEADER_LEN {
            return Drop(Counter::drop_ipv4_options);
        }
        if ip.is_fragment() {
            return Drop(Counter::drop_ipv4_fragment);
        }
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.protocol(),
            ip.total_len() as usize,
        )
    };
    if bad_source_v4(src) || p.owns_v4(src) {
        return Drop(Counter::drop_bad_source);
    }
    let l4 = l3 + crate::wire::ipv4::HEADER_LEN;
    let end = l3 + total;
    let vip = plane.services.is_vip(IpAddr::V4(dst));
    // Any port's address will do (weak host model): NAT replies come back
    // to the SNAT address, which may sit on another port than the backends.
    if !vip && !plane.owns_v4(dst) {
        return Drop(Counter::drop_ip_not_ours);
    }
    if matches!(proto, IpProtocol::Tcp | IpProtocol::Udp) {
        let pkt = l4lb::Ip {
            l3,
            l4,
            end,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            proto: u8::from(proto),
        };
        return if vip {
            l4lb::from_client(plane, neighbors, l4st, port, buf, pkt, now)
        } else {
            l4lb::to_local(plane, neighbors, l4st, buf, pkt, now)
        };
    }
    match proto {
        IpProtocol::Icmp => {
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
                let pkt = l4lb::Ip {
                    l3,
                    l4,
                    end,
                    src: IpAddr::V4(src),
                    dst: IpAddr::V4(dst),
                    proto: 1,
                };
                return l4lb::icmp_error_v4(plane, neighbors, l4st, buf, pkt, now);
            }
            if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
                return Drop(Counter::drop_icmp_unhandled);
            }
            echo_reply_v4(plane, neighbors, buf, l3, end, now)
        }
        _ => Drop(Counter::drop_no_service),
    }
}

/// Answer an ICMP echo request in place (RFC 792): swap the addresses (the
/// header checksum is a sum, unchanged by a swap), reset the TTL and turn the
/// type, both with incremental checksum updates (RFC 1624).
fn echo_reply_v4(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    now: u64,
) -> Verdict {
    let (src, dst) = {
        let ip = Ipv4Packet::new_unchecked(&buf[l3..end]);
        (ip.src_addr(), ip.dst_addr())
    };
    let (out, mac) = match resolve(plane, neighbors, IpAddr::V4(src), now) {
        Ok(x) => x,
        Err(v) => return solicit(plane, v, buf, l3),
    };
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..end]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.rewrite_ttl(DEFAULT_TTL);
        let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
        icmp.rewrite_msg_type(Icmpv4Message::EchoReply, 0);
    }
    let start = l3 - l2_len(&plane.ports[out]);
    write_l2(&mut buf[start..], &plane.ports[out], mac, EtherType::Ipv4);
    Verdict::Transmit {
        port: out,
        start,
        len: end - start,
        counter: Counter::echo_replies,
    }
}

/// How a next hop could not be resolved.
pub(crate) enum Unresolved {
    NoRoute,
    /// Solicit this address on this port.
    Solicit(usize, IpAddr),
    /// Already soliciting.
    Pending,
}

/// The egress port and next-hop MAC towards `dst`: route lookup (longest
/// prefix), then the neighbor table.
pub(crate) fn resolve(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, [u8; 6]), Unresolved> {
    let (port, hop) = match dst {
        IpAddr::V4(d) => plane
            .routes
            .lookup_v4(d)
            .map(|nh| (nh.port, IpAddr::V4(nh.addr))),
        IpAddr::V6(d) => plane
            .routes
            .lookup_v6(d)
            .map(|nh| (nh.port, IpAddr::V6(nh.addr))),
    }
    .ok_or(Unresolved::NoRoute)?;
    match neighbors.resolve(port as u8, hop, now) {
        Resolve::Hit(mac) => Ok((port, mac)),
        Resolve::MissSolicit => Err(Unresolved::Solicit(port, hop)),
        Resolve::Miss => Err(Unresolved::Pending),
    }
}

/// Turn a failed resolution into a verdict; a solicitation is written at
/// `at` (any position with room; the packet there is given up).
pub(crate) fn solicit(plane: &Plane, u: Unresolved, buf: &mut [u8], at: usize) -> Verdict {
    match u {
        Unresolved::NoRoute => Drop(Counter::drop_no_route),
        Unresolved::Pending => Drop(Counter::drop_neighbor_miss),
        Unresolved::Solicit(port, target) => {
            match build_solicit(plane, port, target, &mut buf[at..]) {
                Some(len) => Verdict::Solicited {
                    port,
                    start: at,
                    len,
                },
                None => Drop(Counter::drop_neighbor_miss),
            }
        }
    }
}

// ---------------------------------------------------------------- IPv6

#[allow(clippy::too_many_arguments)]
fn ipv6_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    l4st: &mut L4State,
    port: usize,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    src_mac: EthernetAddress,
    to_us: bool,
    now: u64,
) -> Verdict {
    let p = &plane.ports[port];
    let (src, dst, next, hop_limit, end) = {
        let ip = match Ipv6Packet::new_checked(&buf[l3..end]) {
            Ok(ip) => ip,
            Err(_) => return Drop(Counter::drop_ipv6_malformed),
        };
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.next_header(),
            ip.hop_limit(),
            l3 + ipv6::HEADER_LEN + ip.payload_len() as usize,
        )
    };
    if src.is_multicast() || src.is_loopback() || p.owns_v6(src) {
        return Drop(Counter::drop_bad_source);
    }
    // Unicast to one of our addresses (with our MAC), or the solicited-node
    // group of one of them (with the group's MAC).
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
        to_us && (plane.owns_v6(dst) || plane.services.is_vip(IpAddr::V6(dst)))
    };
    if !ours {
        return Drop(Counter::drop_ip_not_ours);
    }
    if next.is_ipv6_extension() {
        return Drop(Counter::drop_ipv6_ext_header);
    }
    if matches!(next, IpProtocol::Tcp | IpProtocol::Udp)
        && !dst.is_multicast()
        && !src.is_unspecified()
    {
        let pkt = l4lb::Ip {
            l3,
            l4: l3 + ipv6::HEADER_LEN,
            end,
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            proto: u8::from(next),
        };
        return if plane.services.is_vip(IpAddr::V6(dst)) {
            l4lb::from_client(plane, neighbors, l4st, port, buf, pkt, now)
        } else {
            l4lb::to_local(plane, neighbors, l4st, buf, pkt, now)
        };
    }
    if next != IpProtocol::Icmpv6 {
        return Drop(Counter::drop_no_service);
    }
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
            echo_reply_v6(plane, neighbors, buf, l3, end, now)
        }
        Icmpv6Message::DstUnreachable
        | Icmpv6Message::PacketTooBig
        | Icmpv6Message::TimeExceeded
            if plane.services.is_vip(IpAddr::V6(dst)) =>
        {
            let pkt = l4lb::Ip {
                l3,
                l4,
                end,
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                proto: 58,
            };
            l4lb::icmp_error_v6(plane, neighbors, l4st, buf, pkt, now)
        }
        Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert => {
            let repr = match NdiscRepr::parse(&Icmpv6Packet::new_unchecked(&buf[l4..end])) {
                Ok(r) => r,
                Err(_) => return Drop(Counter::drop_ndp_malformed),
            };
            if repr.check_ip(&src, &dst, hop_limit).is_err() {
                return Drop(Counter::drop_ndp_malformed);
            }
            ndp_in(plane, neighbors, port, buf, l3, src, src_mac, repr, now)
        }
        _ => Drop(Counter::drop_icmp_unhandled),
    }
}

#[allow(clippy::too_many_arguments)]
fn ndp_in(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    port: usize,
    buf: &mut [u8],
    l3: usize,
    src: Ipv6Addr,
    src_mac: EthernetAddress,
    repr: NdiscRepr,
    now: u64,
) -> Verdict {
    let p = &plane.ports[port];
    match repr {
        NdiscRepr::NeighborSolicit {
            target_addr,
            source_lladdr,
        } => {
            if !p.owns_v6(target_addr) && !plane.services.vip_on(port, IpAddr::V6(target_addr)) {
                return Drop(Counter::drop_ip_not_ours);
            }
            // RFC 4861 §7.2.3: a solicitation with a source link-layer
            // option creates or updates the solicitor's entry.
            if let Some(mac) = source_lladdr {
                if !src.is_unspecified() && mac.is_unicast() {
                    neighbors.learn(port as u8, IpAddr::V6(src), mac.0, now, true);
                }
            }
            let (na, dst) = NdiscRepr::answer_solicit(&src, target_addr, EthernetAddress(p.mac));
            let dst_mac = if dst.is_multicast() {
                ipv6::multicast_mac(&dst).0
            } else {
                source_lladdr.unwrap_or(src_mac).0
            };
            // The advertisement may be longer than the solicitation (it always
            // carries our link-layer address): written over the frame and on
            // into the tailroom.
            let start = l3 - l2_len(p);
            match emit_ndisc(p, &mut buf[start..], &na, target_addr, dst, dst_mac) {
                Some(len) => Verdict::Transmit {
                    port,
                    start,
                    len,
                    counter: Counter::ndp_adverts,
                },
                None => Drop(Counter::drop_no_mbuf),
            }
        }
        NdiscRepr::NeighborAdvert {
            target_addr,
            target_lladdr,
            ..
        } => {
            if let Some(mac) = target_lladdr {
                if mac.is_unicast() && !p.owns_v6(target_addr) {
                    // RFC 4861 §7.2.5: advertisements update existing entries
                    // only (ours are created when we solicit).
                    neighbors.learn(port as u8, IpAddr::V6(target_addr), mac.0, now, false);
                }
            }
            Verdict::Consumed(Counter::neighbor_replies)
        }
    }
}

/// Write Ethernet + IPv6 + an NS/NA at the start of `buf`; the total length.
fn emit_ndisc(
    p: &PortPlane,
    buf: &mut [u8],
    repr: &NdiscRepr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    dst_mac: [u8; 6],
) -> Option<usize> {
    let l2 = l2_len(p);
    let l4 = l2 + ipv6::HEADER_LEN;
    let end = l4 + repr.buffer_len();
    if buf.len() < end {
        return None;
    }
    write_l2(buf, p, dst_mac, EtherType::Ipv6);
    let hdr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: repr.buffer_len(),
        hop_limit: 255,
    };
    hdr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[l2..l4]));
    // Reserved bytes must be zero and the buffer holds the old frame.
    buf[l4..end].fill(0);
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut buf[l4..end]),
    );
    Some(end)
}

/// Answer an ICMPv6 echo request in place (RFC 4443 §4.2).
fn echo_reply_v6(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    end: usize,
    now: u64,
) -> Verdict {
    let (src, dst) = {
        let ip = Ipv6Packet::new_unchecked(&buf[l3..end]);
        (ip.src_addr(), ip.dst_addr())
    };
    let (out_port, mac) = match resolve(plane, neighbors, IpAddr::V6(src), now) {
        Ok(x) => x,
        Err(u) => return solicit(plane, u, buf, l3),
    };
    let out = &plane.ports[out_port];
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[l3..end]);
        // Swapping source and destination leaves the pseudo-header sum as is.
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(DEFAULT_TTL);
        let mut icmp = Icmpv6Packet::new_unchecked(ip.payload_mut());
        icmp.rewrite_msg_type(Icmpv6Message::EchoReply, 0);
    }
    let start = l3 - l2_len(out);
    write_l2(&mut buf[start..], out, mac, EtherType::Ipv6);
    Verdict::Transmit {
        port: out_port,
        start,
        len: end - start,
        counter: Counter::echo_replies,
    }
}

/// Write a neighbor solicitation for `target` on port `out` at the start of
/// `buf` (RFC 4861 §7.2.2: to the solicited-node group, with our link-layer
/// address); its length.
fn ndp_solicit(plane: &Plane, out: usize, target: Ipv6Addr, buf: &mut [u8]) -> Option<usize> {
    let p = plane.ports.get(out)?;
    let src = p.source_v6(target)?;
    let group = ipv6::solicited_node_multicast(&target);
    let ns = NdiscRepr::NeighborSolicit {
        target_addr: target,
        source_lladdr: Some(EthernetAddress(p.mac)),
    };
    emit_ndisc(p, buf, &ns, src, group, ipv6::multicast_mac(&group).0)
}

/// Build a solicitation for `target` on `port` into `buf` (used by callers
/// outside `process` that need a next hop resolved); its length.
pub fn build_solicit(plane: &Plane, port: usize, target: IpAddr, buf: &mut [u8]) -> Option<usize> {
    match target {
        IpAddr::V4(t) => arp_solicit(plane, port, t, buf),
        IpAddr::V6(t) => ndp_solicit(plane, port, t, buf),
    }
}
