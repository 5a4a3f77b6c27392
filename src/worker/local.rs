//! Packets Sluice answers itself, in place: ARP for its addresses and VIPs
//! (RFC 826), ICMP and ICMPv6 echo (RFC 792, RFC 4443 §4.2), neighbor
//! solicitations and advertisements (RFC 4861). Called by
//! `worker::process` once it has classified a frame as local; answers
//! leave through [`crate::net::output`].

use std::net::{IpAddr, Ipv6Addr};

use crate::net::counters::Counter;
use crate::net::neighbor::NeighborTable;
use crate::net::output::{emit_ndisc, l2_len, resolve, solicit, write_l2};
use crate::net::plane::Plane;
use crate::net::Verdict::{self, Drop};
use crate::wire::{
    arp, ipv6, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, Icmpv4Message,
    Icmpv4Packet, Icmpv6Message, Icmpv6Packet, Ipv4Packet, Ipv6Packet, NdiscRepr,
};

/// Hop limit / TTL of packets Sluice originates (RFC 1700's default).
const DEFAULT_TTL: u8 = 64;

pub fn arp_in(
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
            Verdict::transmit(
                port,
                start,
                l3 + arp::PACKET_LEN - start,
                Counter::arp_replies,
            )
        }
        ArpOperation::Reply if for_us => Verdict::Consumed(Counter::neighbor_replies),
        ArpOperation::Request | ArpOperation::Reply => Drop(Counter::drop_arp_not_ours),
        _ => Drop(Counter::drop_arp_malformed),
    }
}

/// Answer an ICMP echo request in place (RFC 792): swap the addresses (the
/// header checksum is a sum, unchanged by a swap), reset the TTL and turn the
/// type, both with incremental checksum updates (RFC 1624).
pub fn echo_reply_v4(
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
    Verdict::transmit(out, start, end - start, Counter::echo_replies)
}

#[allow(clippy::too_many_arguments)]
pub fn ndp_in(
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
                Some(len) => Verdict::transmit(port, start, len, Counter::ndp_adverts),
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

/// Answer an ICMPv6 echo request in place (RFC 4443 §4.2).
pub fn echo_reply_v6(
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
    Verdict::transmit(out_port, start, end - start, Counter::echo_replies)
}
