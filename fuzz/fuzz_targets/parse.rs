//! Arbitrary bytes as an Ethernet frame, through every view of
//! `sluice::wire` the data path uses: Ethernet, at most one VLAN tag, ARP /
//! IPv4 / IPv6, then TCP / UDP / ICMP / ICMPv6 with NDP options, and the
//! datagram quoted by ICMP errors. Every getter and checksum verifier is
//! called on every view that passed `new_checked`: the module's contract is
//! that none of them panics, whatever the bytes.
#![no_main]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sluice::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr,
    TcpPacket, UdpPacket, VlanTag,
};

fuzz_target!(|data: &[u8]| {
    ethernet(data);
});

fn ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    black_box((frame.dst_addr(), frame.src_addr(), frame.ethertype()));
    black_box(frame.dst_addr().is_multicast());
    black_box(frame.payload());
    black_box(
        frame
            .vlan_tag()
            .map(|tag| (tag.tci(), tag.pcp(), tag.dei(), tag.vid())),
    );
    if let Ok(tag) = VlanTag::new_checked(frame.payload()) {
        black_box((tag.tci().bits(), tag.ethertype(), tag.payload()));
    }
    let _ = black_box(EthernetRepr::parse(&frame));
    let Ok((ethertype, l3)) = frame.inner_payload() else {
        return;
    };
    match ethertype {
        EtherType::Arp => arp(l3),
        EtherType::Ipv4 => ipv4(l3, 0),
        EtherType::Ipv6 => ipv6(l3, 0),
        _ => {}
    }
}

fn arp(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    black_box((packet.hardware_type(), packet.protocol_type()));
    black_box((
        packet.hardware_len(),
        packet.protocol_len(),
        packet.operation(),
    ));
    black_box((packet.source_hardware_addr(), packet.source_protocol_addr()));
    black_box((packet.target_hardware_addr(), packet.target_protocol_addr()));
    ArpRepr::parse(&packet).expect("parse after check_len");
}

/// `depth` counts ICMP errors already unwrapped: a quoted datagram is walked
/// once, not the datagram quoted inside it.
fn ipv4(data: &[u8], depth: u8) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    black_box((packet.version(), packet.ihl(), packet.header_len()));
    black_box((
        packet.dscp(),
        packet.ecn(),
        packet.total_len(),
        packet.ident(),
    ));
    black_box((
        packet.dont_frag(),
        packet.more_frags(),
        packet.frag_offset(),
    ));
    black_box((packet.is_fragment(), packet.ttl(), packet.protocol()));
    black_box((packet.checksum(), packet.verify_checksum()));
    black_box((packet.options(), packet.payload()));
    let _ = black_box(Ipv4Repr::parse(&packet));
    if packet.frag_offset() != 0 {
        return;
    }
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    match packet.protocol() {
        IpProtocol::Tcp => tcp(packet.payload(), L3::V4(src, dst)),
        IpProtocol::Udp => udp(packet.payload(), L3::V4(src, dst)),
        IpProtocol::Icmp => icmpv4(packet.payload(), depth),
        _ => {}
    }
}

fn ipv6(data: &[u8], depth: u8) {
    let Ok(packet) = Ipv6Packet::new_checked(data) else {
        return;
    };
    black_box((
        packet.version(),
        packet.traffic_class(),
        packet.flow_label(),
    ));
    black_box((
        packet.payload_len(),
        packet.next_header(),
        packet.hop_limit(),
    ));
    black_box(packet.payload());
    let _ = black_box(Ipv6Repr::parse(&packet));
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    black_box(sluice::wire::ipv6::solicited_node_multicast(&dst));
    black_box(sluice::wire::ipv6::multicast_mac(&dst));
    match packet.next_header() {
        IpProtocol::Tcp => tcp(packet.payload(), L3::V6(src, dst)),
        IpProtocol::Udp => udp(packet.payload(), L3::V6(src, dst)),
        IpProtocol::Icmpv6 => icmpv6(packet.payload(), src, dst, packet.hop_limit(), depth),
        _ => {}
    }
}

enum L3 {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fn tcp(data: &[u8], l3: L3) {
    let Ok(packet) = TcpPacket::new_checked(data) else {
        return;
    };
    black_box((packet.src_port(), packet.dst_port()));
    black_box((packet.seq_number(), packet.ack_number()));
    black_box((packet.data_offset(), packet.header_len(), packet.flags()));
    black_box((packet.fin(), packet.syn(), packet.rst(), packet.ack()));
    black_box((packet.window_len(), packet.checksum(), packet.urgent_at()));
    black_box((packet.segment_len(), packet.options(), packet.payload()));
    match l3 {
        L3::V4(src, dst) => black_box(packet.verify_checksum_v4(&src, &dst)),
        L3::V6(src, dst) => black_box(packet.verify_checksum_v6(&src, &dst)),
    };
}

fn udp(data: &[u8], l3: L3) {
    let Ok(packet) = UdpPacket::new_checked(data) else {
        return;
    };
    black_box((packet.src_port(), packet.dst_port()));
    black_box((
        packet.len(),
        packet.is_empty(),
        packet.checksum(),
        packet.payload(),
    ));
    match l3 {
        L3::V4(src, dst) => black_box(packet.verify_checksum_v4(&src, &dst)),
        L3::V6(src, dst) => black_box(packet.verify_checksum_v6(&src, &dst)),
    };
}

fn icmpv4(data: &[u8], depth: u8) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    black_box((packet.msg_type(), packet.msg_code(), packet.checksum()));
    black_box((
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.next_hop_mtu(),
    ));
    black_box((packet.verify_checksum(), packet.data()));
    let _ = black_box(Icmpv4Repr::parse(&packet));
    if let Some(quoted) = packet.embedded_datagram() {
        if depth == 0 {
            ipv4(quoted, depth + 1);
        }
    }
}

fn icmpv6(data: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, depth: u8) {
    let Ok(packet) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    black_box((packet.msg_type(), packet.msg_code(), packet.checksum()));
    black_box((packet.echo_ident(), packet.echo_seq_no(), packet.mtu()));
    black_box((packet.target_addr(), packet.neighbor_flags(), packet.data()));
    black_box(packet.verify_checksum(&src, &dst));
    if let Some(options) = packet.ndp_options() {
        for option in options {
            if let Ok(option) = black_box(option) {
                black_box(option.buffer_len());
            }
        }
    }
    let _ = black_box(Icmpv6Repr::parse(&packet));
    if let Ok(ndisc) = NdiscRepr::parse(&packet) {
        let _ = black_box(ndisc.check_ip(&src, &dst, hop_limit));
        // What the data path would send back must parse as what it emitted.
        let mut buf = [0u8; 64];
        let out = &mut buf[..ndisc.buffer_len()];
        ndisc.emit(&dst, &src, &mut Icmpv6Packet::new_unchecked(&mut out[..]));
        let reparsed = Icmpv6Packet::new_checked(&out[..]).expect("emitted NDP is valid");
        assert!(reparsed.verify_checksum(&dst, &src));
        assert_eq!(NdiscRepr::parse(&reparsed), Ok(ndisc));
    }
    if let Some(quoted) = packet.embedded_packet() {
        if depth == 0 {
            ipv6(quoted, depth + 1);
        }
    }
}
