//! Tests across layers: every captured frame through the whole chain of
//! `new_checked` calls, and every prefix of multi-layer frames.

use super::*;

/// What the chain found at the top of a frame.
#[derive(Debug, PartialEq, Eq)]
enum Top {
    Arp(ArpOperation),
    Tcp {
        dst_port: u16,
        checksum_ok: bool,
    },
    Udp {
        dst_port: u16,
        checksum_ok: bool,
    },
    Icmpv4 {
        msg: Icmpv4Message,
        checksum_ok: bool,
    },
    Icmpv6 {
        msg: Icmpv6Message,
        checksum_ok: bool,
    },
    /// An IPv4 fragment after the first, or an IPv6 packet whose next header
    /// is an extension header this chain does not walk.
    Opaque(IpProtocol),
}

/// Ethernet, optional VLAN, ARP / IPv4 / IPv6, then TCP / UDP / ICMP /
/// ICMPv6 with NDP options: the chain the data path runs.
fn walk(frame: &[u8]) -> Result<Top> {
    let eth = EthernetFrame::new_checked(frame)?;
    let (ethertype, l3) = eth.inner_payload()?;
    match ethertype {
        EtherType::Arp => {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(l3)?)?;
            Ok(Top::Arp(arp.operation))
        }
        EtherType::Ipv4 => {
            let ip = Ipv4Packet::new_checked(l3)?;
            if !ip.verify_checksum() {
                return Err(Error::Malformed);
            }
            if ip.frag_offset() != 0 {
                return Ok(Top::Opaque(ip.protocol()));
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let l4 = ip.payload();
            // A first fragment holds only part of the transport message, so
            // its checksum cannot be verified.
            let whole = !ip.more_frags();
            match ip.protocol() {
                IpProtocol::Tcp => {
                    let tcp = TcpPacket::new_checked(l4)?;
                    let checksum_ok = tcp.verify_checksum_v4(&src, &dst);
                    Ok(Top::Tcp {
                        dst_port: tcp.dst_port(),
                        checksum_ok,
                    })
                }
                IpProtocol::Udp if whole => {
                    let udp = UdpPacket::new_checked(l4)?;
                    let checksum_ok = udp.verify_checksum_v4(&src, &dst);
                    Ok(Top::Udp {
                        dst_port: udp.dst_port(),
                        checksum_ok,
                    })
                }
                IpProtocol::Icmp => {
                    let icmp = Icmpv4Packet::new_checked(l4)?;
                    let checksum_ok = icmp.verify_checksum();
                    Ok(Top::Icmpv4 {
                        msg: icmp.msg_type(),
                        checksum_ok,
                    })
                }
                other => Ok(Top::Opaque(other)),
            }
        }
        EtherType::Ipv6 => {
            let ip = Ipv6Packet::new_checked(l3)?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let l4 = ip.payload();
            match ip.next_header() {
                IpProtocol::Tcp => {
                    let tcp = TcpPacket::new_checked(l4)?;
                    let checksum_ok = tcp.verify_checksum_v6(&src, &dst);
                    Ok(Top::Tcp {
                        dst_port: tcp.dst_port(),
                        checksum_ok,
                    })
                }
                IpProtocol::Udp => {
                    let udp = UdpPacket::new_checked(l4)?;
                    let checksum_ok = udp.verify_checksum_v6(&src, &dst);
                    Ok(Top::Udp {
                        dst_port: udp.dst_port(),
                        checksum_ok,
                    })
                }
                IpProtocol::Icmpv6 => {
                    let icmp = Icmpv6Packet::new_checked(l4)?;
                    if let Some(options) = icmp.ndp_options() {
                        for option in options {
                            option?;
                        }
                    }
                    if matches!(
                        icmp.msg_type(),
                        Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert
                    ) {
                        let ndisc = NdiscRepr::parse(&icmp)?;
                        ndisc.check_ip(&src, &dst, ip.hop_limit())?;
                    }
                    let checksum_ok = icmp.verify_checksum(&src, &dst);
                    Ok(Top::Icmpv6 {
                        msg: icmp.msg_type(),
                        checksum_ok,
                    })
                }
                other => Ok(Top::Opaque(other)),
            }
        }
        _ => Err(Error::Unsupported),
    }
}

#[test]
fn every_capture_walks() {
    use self::Top::*;
    let expected = [
        ("ARP_REQUEST", Ok(Arp(ArpOperation::Request))),
        ("ARP_REPLY", Ok(Arp(ArpOperation::Reply))),
        ("VLAN_ARP_REQUEST", Ok(Arp(ArpOperation::Request))),
        (
            "ICMP_ECHO_REQUEST",
            Ok(Icmpv4 {
                msg: Icmpv4Message::EchoRequest,
                checksum_ok: true,
            }),
        ),
        (
            "ICMP_ECHO_REPLY",
            Ok(Icmpv4 {
                msg: Icmpv4Message::EchoReply,
                checksum_ok: true,
            }),
        ),
        (
            "ICMP_FRAG_NEEDED",
            Ok(Icmpv4 {
                msg: Icmpv4Message::DstUnreachable,
                checksum_ok: true,
            }),
        ),
        (
            "VLAN_TCP_SYN",
            Ok(Tcp {
                dst_port: 80,
                checksum_ok: true,
            }),
        ),
        (
            "TCP_SYN_ACK",
            Ok(Tcp {
                dst_port: 49152,
                checksum_ok: true,
            }),
        ),
        (
            "TCP_HTTP_GET",
            Ok(Tcp {
                dst_port: 80,
                checksum_ok: true,
            }),
        ),
        (
            "UDP_DNS_QUERY",
            Ok(Udp {
                dst_port: 53,
                checksum_ok: true,
            }),
        ),
        (
            "UDP_NO_CHECKSUM",
            Ok(Udp {
                dst_port: 9999,
                checksum_ok: true,
            }),
        ),
        ("IPV4_FRAG_FIRST", Ok(Opaque(IpProtocol::Udp))),
        ("IPV4_FRAG_LAST", Ok(Opaque(IpProtocol::Udp))),
        (
            "IPV4_OPTIONS",
            Ok(Udp {
                dst_port: 2000,
                checksum_ok: true,
            }),
        ),
        ("QINQ_ICMP_ECHO", Err(Error::Unsupported)),
        (
            "ICMPV6_ECHO_REQUEST",
            Ok(Icmpv6 {
                msg: Icmpv6Message::EchoRequest,
                checksum_ok: true,
            }),
        ),
        (
            "ICMPV6_ECHO_REPLY",
            Ok(Icmpv6 {
                msg: Icmpv6Message::EchoReply,
                checksum_ok: true,
            }),
        ),
        (
            "NDP_NS",
            Ok(Icmpv6 {
                msg: Icmpv6Message::NeighborSolicit,
                checksum_ok: true,
            }),
        ),
        (
            "NDP_NA",
            Ok(Icmpv6 {
                msg: Icmpv6Message::NeighborAdvert,
                checksum_ok: true,
            }),
        ),
        (
            "NDP_NS_DAD",
            Ok(Icmpv6 {
                msg: Icmpv6Message::NeighborSolicit,
                checksum_ok: true,
            }),
        ),
        (
            "NDP_RS",
            Ok(Icmpv6 {
                msg: Icmpv6Message::RouterSolicit,
                checksum_ok: true,
            }),
        ),
        (
            "NDP_RA",
            Ok(Icmpv6 {
                msg: Icmpv6Message::RouterAdvert,
                checksum_ok: true,
            }),
        ),
        (
            "ICMPV6_PACKET_TOO_BIG",
            Ok(Icmpv6 {
                msg: Icmpv6Message::PacketTooBig,
                checksum_ok: true,
            }),
        ),
        (
            "ICMPV6_DST_UNREACH",
            Ok(Icmpv6 {
                msg: Icmpv6Message::DstUnreachable,
                checksum_ok: true,
            }),
        ),
        (
            "IPV6_TCP_SYN",
            Ok(Tcp {
                dst_port: 443,
                checksum_ok: true,
            }),
        ),
        (
            "IPV6_UDP_DNS_QUERY",
            Ok(Udp {
                dst_port: 53,
                checksum_ok: true,
            }),
        ),
        ("IPV6_FRAGMENT", Ok(Opaque(IpProtocol::Ipv6Frag))),
        ("IPV6_HOP_BY_HOP", Ok(Opaque(IpProtocol::HopByHop))),
    ];
    assert_eq!(expected.len(), testdata::ALL.len());
    for ((name, frame), (want_name, want)) in testdata::ALL.iter().zip(expected) {
        assert_eq!(*name, want_name);
        assert_eq!(walk(frame), want, "{name}");
    }
}

/// Feeds every prefix of `frame` through the chain. Where a length field
/// says how long the packet is, every cut is caught by some `check_len`;
/// `full_len` is the end of that packet (the frame may carry padding after
/// it, which no layer reads).
fn every_prefix(name: &str, frame: &[u8], full_len: usize) {
    let whole = walk(frame);
    assert!(whole.is_ok(), "{name}: {whole:?}");
    for n in 0..frame.len() {
        let result = walk(&frame[..n]);
        if n < full_len {
            assert!(
                result.is_err(),
                "{name}: prefix of {n} bytes accepted: {result:?}"
            );
        } else {
            assert_eq!(result, whole, "{name}: padding changed the result");
        }
    }
}

#[test]
fn every_prefix_of_vlan_ipv4_tcp_is_refused() {
    every_prefix(
        "VLAN_TCP_SYN",
        &testdata::VLAN_TCP_SYN,
        testdata::VLAN_TCP_SYN.len(),
    );
    every_prefix(
        "TCP_HTTP_GET",
        &testdata::TCP_HTTP_GET,
        testdata::TCP_HTTP_GET.len(),
    );
}

#[test]
fn every_prefix_of_ipv6_neighbor_solicit_is_refused() {
    every_prefix("NDP_NS", &testdata::NDP_NS, testdata::NDP_NS.len());
    every_prefix("NDP_NA", &testdata::NDP_NA, testdata::NDP_NA.len());
}

#[test]
fn every_prefix_of_every_capture_is_safe() {
    for (name, frame) in testdata::ALL {
        for n in 0..frame.len() {
            // Only "no panic" here: ARP has no length beyond its fixed 28
            // bytes, and a cut TCP segment inside a complete IPv4 packet
            // cannot be told from a short one without the IP length.
            let _ = walk(&frame[..n]);
        }
        let _ = name;
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    // An ARP request padded to the 60-byte minimum, as it arrives.
    let mut padded = testdata::ARP_REQUEST.to_vec();
    padded.resize(60, 0);
    assert_eq!(walk(&padded), Ok(Top::Arp(ArpOperation::Request)));
    // A short IPv4/TCP frame with trailing padding past total_len.
    let mut padded = testdata::VLAN_TCP_SYN.to_vec();
    padded.extend_from_slice(&[0; 8]);
    every_prefix(
        "VLAN_TCP_SYN + padding",
        &padded,
        testdata::VLAN_TCP_SYN.len(),
    );
}

#[test]
fn error_names() {
    assert_eq!(Error::Truncated.to_string(), "truncated");
    assert_eq!(Error::Malformed.as_str(), "malformed");
    assert_eq!(Error::Unsupported.as_str(), "unsupported");
}
