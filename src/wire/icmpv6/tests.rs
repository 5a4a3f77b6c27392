use super::*;
use crate::wire::testdata;

fn ns() -> &'static [u8] {
    &testdata::NDP_NS[54..]
}

fn na() -> &'static [u8] {
    &testdata::NDP_NA[54..]
}

const NS_DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x10);

#[test]
fn parse_echo_request() {
    let bytes = &testdata::ICMPV6_ECHO_REQUEST[54..];
    let p = Packet::new_checked(bytes).unwrap();
    assert_eq!(p.msg_type(), Message::EchoRequest);
    assert_eq!(p.msg_code(), 0);
    assert!(p.verify_checksum(&testdata::CLIENT6, &testdata::VIP6));
    assert!(!p.verify_checksum(&testdata::VIP6, &testdata::VIP6));
    assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1c46, 1));
    assert_eq!(p.data(), b"sluice-ping6!");
    assert_eq!(p.target_addr(), None);
    assert_eq!(p.neighbor_flags(), None);
    assert!(p.ndp_options().is_none());
    assert_eq!(p.embedded_packet(), None);
    assert_eq!(
        Repr::parse(&p),
        Ok(Repr::EchoRequest {
            ident: 0x1c46,
            seq_no: 1,
            data: b"sluice-ping6!"
        })
    );
}

#[test]
fn echo_round_trip_and_in_place_reply() {
    let request = &testdata::ICMPV6_ECHO_REQUEST[54..];
    let reply = &testdata::ICMPV6_ECHO_REPLY[54..];
    let (c, v) = (testdata::CLIENT6, testdata::VIP6);
    for (bytes, src, dst) in [(request, c, v), (reply, v, c)] {
        let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&src, &dst, &mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
    }
    let mut buf = request.to_vec();
    Packet::new_checked(&mut buf[..])
        .unwrap()
        .rewrite_msg_type(Message::EchoReply, 0);
    assert_eq!(buf, reply);
}

#[test]
fn parse_neighbor_solicit() {
    let p = Packet::new_checked(ns()).unwrap();
    assert_eq!(p.msg_type(), Message::NeighborSolicit);
    assert!(p.verify_checksum(&testdata::CLIENT6, &NS_DST));
    assert_eq!(p.target_addr(), Some(testdata::VIP6));
    assert_eq!(p.neighbor_flags(), None);
    let opts: Vec<_> = p.ndp_options().unwrap().collect();
    assert_eq!(
        opts,
        vec![Ok(NdpOption::SourceLinkLayerAddr(testdata::CLIENT_MAC))]
    );
    let repr = NdiscRepr::parse(&p).unwrap();
    assert_eq!(
        repr,
        NdiscRepr::NeighborSolicit {
            target_addr: testdata::VIP6,
            source_lladdr: Some(testdata::CLIENT_MAC),
        }
    );
    assert_eq!(repr.check_ip(&testdata::CLIENT6, &NS_DST, 255), Ok(()));
    assert_eq!(
        repr.check_ip(&testdata::CLIENT6, &NS_DST, 254),
        Err(Error::Malformed)
    );
    assert_eq!(Repr::parse(&p), Ok(Repr::Ndisc(repr)));
}

#[test]
fn parse_neighbor_advert() {
    let p = Packet::new_checked(na()).unwrap();
    assert_eq!(p.msg_type(), Message::NeighborAdvert);
    assert!(p.verify_checksum(&testdata::VIP6, &testdata::CLIENT6));
    assert_eq!(p.target_addr(), Some(testdata::VIP6));
    let flags = p.neighbor_flags().unwrap();
    assert_eq!(flags, NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE);
    assert!(!flags.contains(NeighborFlags::ROUTER));
    let repr = NdiscRepr::parse(&p).unwrap();
    assert_eq!(
        repr,
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr: testdata::VIP6,
            target_lladdr: Some(testdata::LB_MAC),
        }
    );
    assert_eq!(
        repr.check_ip(&testdata::VIP6, &testdata::CLIENT6, 255),
        Ok(())
    );
    // Solicited advertisements are unicast (RFC 4861 §7.1.2).
    let all_nodes = ipv6::LINK_LOCAL_ALL_NODES;
    assert_eq!(
        repr.check_ip(&testdata::VIP6, &all_nodes, 255),
        Err(Error::Malformed)
    );
}

/// The NA in the capture is exactly what Sluice sends for the NS in it.
#[test]
fn answer_solicit_emits_the_captured_advert() {
    let ns_packet = Packet::new_checked(ns()).unwrap();
    let NdiscRepr::NeighborSolicit { target_addr, .. } = NdiscRepr::parse(&ns_packet).unwrap()
    else {
        panic!("not an NS");
    };
    let (na_repr, dst) =
        NdiscRepr::answer_solicit(&testdata::CLIENT6, target_addr, testdata::LB_MAC);
    assert_eq!(dst, testdata::CLIENT6);
    let mut buf = vec![0u8; na_repr.buffer_len()];
    na_repr.emit(&target_addr, &dst, &mut Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf, na());
    assert_eq!(
        NdiscRepr::parse(&Packet::new_checked(&buf[..]).unwrap()),
        Ok(na_repr)
    );
}

#[test]
fn duplicate_address_detection() {
    let bytes = &testdata::NDP_NS_DAD[54..];
    let dst = ipv6::solicited_node_multicast(&testdata::CLIENT6);
    let p = Packet::new_checked(bytes).unwrap();
    assert!(p.verify_checksum(&Ipv6Addr::UNSPECIFIED, &dst));
    let repr = NdiscRepr::parse(&p).unwrap();
    assert_eq!(
        repr,
        NdiscRepr::NeighborSolicit {
            target_addr: testdata::CLIENT6,
            source_lladdr: None
        }
    );
    assert_eq!(repr.check_ip(&Ipv6Addr::UNSPECIFIED, &dst, 255), Ok(()));
    // A DAD probe to a unicast address, or one with a link-layer option.
    let unicast = testdata::VIP6;
    assert_eq!(
        repr.check_ip(&Ipv6Addr::UNSPECIFIED, &unicast, 255),
        Err(Error::Malformed)
    );
    let with_opt = NdiscRepr::NeighborSolicit {
        target_addr: testdata::CLIENT6,
        source_lladdr: Some(testdata::CLIENT_MAC),
    };
    assert_eq!(
        with_opt.check_ip(&Ipv6Addr::UNSPECIFIED, &dst, 255),
        Err(Error::Malformed)
    );

    let (na, na_dst) =
        NdiscRepr::answer_solicit(&Ipv6Addr::UNSPECIFIED, testdata::CLIENT6, testdata::LB_MAC);
    assert_eq!(na_dst, ipv6::LINK_LOCAL_ALL_NODES);
    assert_eq!(na.check_ip(&testdata::CLIENT6, &na_dst, 255), Ok(()));
}

#[test]
fn ns_round_trip() {
    for (bytes, src, dst) in [
        (ns(), testdata::CLIENT6, NS_DST),
        (
            &testdata::NDP_NS_DAD[54..],
            Ipv6Addr::UNSPECIFIED,
            ipv6::solicited_node_multicast(&testdata::CLIENT6),
        ),
    ] {
        let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&src, &dst, &mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
    }
}

#[test]
fn router_advert_options() {
    let p = Packet::new_checked(&testdata::NDP_RA[54..]).unwrap();
    assert_eq!(p.msg_type(), Message::RouterAdvert);
    assert_eq!(p.target_addr(), None);
    let opts: Vec<_> = p.ndp_options().unwrap().map(Result::unwrap).collect();
    assert_eq!(opts.len(), 3);
    assert_eq!(
        opts[0],
        NdpOption::SourceLinkLayerAddr(EthernetAddress([2, 0, 0, 0, 0, 0xfe]))
    );
    // MTU option (RFC 4861 §4.6.4): type 5, 2 reserved bytes, MTU 1500.
    assert_eq!(
        opts[1],
        NdpOption::Other {
            kind: 5,
            data: &[0, 0, 0, 0, 0x05, 0xdc]
        }
    );
    // Prefix information (RFC 4861 §4.6.2): type 3, 4 units.
    let NdpOption::Other { kind: 3, data } = opts[2] else {
        panic!("{:?}", opts[2]);
    };
    assert_eq!(data.len(), 30);
    assert_eq!(data[0], 64);
    assert_eq!(NdiscRepr::parse(&p), Err(Error::Unsupported));

    let rs = Packet::new_checked(&testdata::NDP_RS[54..]).unwrap();
    let opts: Vec<_> = rs.ndp_options().unwrap().collect();
    assert_eq!(
        opts,
        vec![Ok(NdpOption::SourceLinkLayerAddr(testdata::CLIENT_MAC))]
    );
}

#[test]
fn option_length_zero_is_malformed() {
    let mut bytes = ns().to_vec();
    bytes[25] = 0;
    let p = Packet::new_checked(&bytes[..]).unwrap();
    let opts: Vec<_> = p.ndp_options().unwrap().collect();
    assert_eq!(opts, vec![Err(Error::Malformed)]);
    assert_eq!(NdiscRepr::parse(&p), Err(Error::Malformed));

    // After a good option too, and the iterator stops there.
    let mut bytes = ns().to_vec();
    bytes.extend_from_slice(&[
        OPT_TARGET_LLADDR,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    let p = Packet::new_checked(&bytes[..]).unwrap();
    let opts: Vec<_> = p.ndp_options().unwrap().collect();
    assert_eq!(opts.len(), 2);
    assert_eq!(opts[1], Err(Error::Malformed));
    assert_eq!(NdiscRepr::parse(&p), Err(Error::Malformed));
}

#[test]
fn bad_options() {
    // An option running past the end.
    let mut bytes = ns().to_vec();
    bytes[25] = 2;
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        p.ndp_options().unwrap().collect::<Vec<_>>(),
        vec![Err(Error::Truncated)]
    );
    // A lone type byte.
    let opts: Vec<_> = NdpOptions::new(&[1]).collect();
    assert_eq!(opts, vec![Err(Error::Truncated)]);
    // A link-layer option of two units is not Ethernet's.
    let long = [1, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        NdpOptions::new(&long).collect::<Vec<_>>(),
        vec![Err(Error::Malformed)]
    );
    // Options are optional.
    assert_eq!(NdpOptions::new(&[]).count(), 0);
}

#[test]
fn bad_ndisc_messages() {
    let mut bytes = ns().to_vec();
    bytes[1] = 1;
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(NdiscRepr::parse(&p), Err(Error::Malformed));
    assert_eq!(Repr::parse(&p), Err(Error::Malformed));

    let mut bytes = ns().to_vec();
    bytes[8..24].copy_from_slice(&NS_DST.octets());
    assert_eq!(
        NdiscRepr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
        Err(Error::Malformed)
    );
}

#[test]
fn every_truncation_is_refused() {
    for n in 0..NEIGHBOR_LEN {
        assert_eq!(
            Packet::new_checked(&ns()[..n]).err(),
            Some(Error::Truncated),
            "NS {n}"
        );
        assert_eq!(
            Packet::new_checked(&na()[..n]).err(),
            Some(Error::Truncated),
            "NA {n}"
        );
    }
    // Past the fixed part, a cut option is caught by the iterator.
    for n in NEIGHBOR_LEN + 1..ns().len() {
        let p = Packet::new_checked(&ns()[..n]).unwrap();
        assert_eq!(NdiscRepr::parse(&p), Err(Error::Truncated), "NS {n}");
    }
    let echo = &testdata::ICMPV6_ECHO_REQUEST[54..];
    for n in 0..HEADER_LEN {
        assert_eq!(
            Packet::new_checked(&echo[..n]).err(),
            Some(Error::Truncated)
        );
    }
    let ra = &testdata::NDP_RA[54..];
    for n in 0..16 {
        assert_eq!(Packet::new_checked(&ra[..n]).err(), Some(Error::Truncated));
    }
}

#[test]
fn packet_too_big() {
    let bytes = &testdata::ICMPV6_PACKET_TOO_BIG[54..];
    let p = Packet::new_checked(bytes).unwrap();
    assert_eq!(p.msg_type(), Message::PacketTooBig);
    assert_eq!(p.mtu(), 1280);
    let src: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    assert!(p.verify_checksum(&src, &testdata::VIP6));
    let quoted = p.embedded_packet().unwrap();
    let inner = ipv6::Packet::new_unchecked(quoted);
    assert_eq!(inner.src_addr(), testdata::VIP6);
    assert_eq!(inner.next_header(), IpProtocol::Tcp);
    assert_eq!(Repr::parse(&p), Err(Error::Unsupported));
}

#[test]
fn setters() {
    let mut buf = [0u8; 32];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_msg_type(Message::NeighborAdvert);
    p.set_neighbor_flags(NeighborFlags::ROUTER | NeighborFlags::from_bits(0x1f));
    p.set_target_addr(testdata::VIP6);
    p.fill_checksum(&testdata::VIP6, &testdata::CLIENT6);
    let p = Packet::new_checked(&buf[..]).unwrap();
    // Reserved bits are not written.
    assert_eq!(p.neighbor_flags(), Some(NeighborFlags::ROUTER));
    assert!(p.verify_checksum(&testdata::VIP6, &testdata::CLIENT6));

    let mut buf = [0u8; 8];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_msg_type(Message::PacketTooBig);
    p.set_mtu(1500);
    assert_eq!(p.mtu(), 1500);
    p.set_echo_ident(1);
    p.set_echo_seq_no(2);
    assert_eq!(buf, [2, 0, 0, 0, 0, 1, 0, 2]);
}

#[test]
fn option_emit_pads() {
    let opt = NdpOption::Other {
        kind: 5,
        data: &[0, 0, 0, 0, 0x05, 0xdc],
    };
    assert_eq!(opt.buffer_len(), 8);
    let mut buf = [0xffu8; 8];
    opt.emit(&mut buf);
    assert_eq!(buf, [5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    let opt = NdpOption::Other {
        kind: 9,
        data: &[7],
    };
    let mut buf = [0xffu8; 8];
    opt.emit(&mut buf);
    assert_eq!(buf, [9, 1, 7, 0, 0, 0, 0, 0]);
}

#[test]
fn message_values() {
    for n in 0..=255u8 {
        assert_eq!(u8::from(Message::from(n)), n);
    }
    assert!(Message::PacketTooBig.is_error());
    assert!(!Message::EchoReply.is_error());
    assert!(Message::NeighborSolicit.is_ndisc());
    assert_eq!(Message::Unknown(200).to_string(), "type 200");
}
