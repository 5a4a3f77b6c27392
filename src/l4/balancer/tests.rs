use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A xorshift64 sequence from `seed`: the random inputs of the header
/// tests, the same on every run.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// The one-fold IPv4 rewrite gives the checksums a full recompute
/// gives, for TCP and UDP (a zero UDP checksum left alone), over
/// addresses, ports and TTLs that exercise the carries.
#[test]
fn rewrite_v4_checksums_match_a_recompute() {
    use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket};
    let mut next = xorshift(0x243f_6a88_85a3_08d3);
    for i in 0..3000 {
        let proto = if i % 3 == 0 { 17 } else { 6 };
        let l4len = if proto == 6 { 20 } else { 8 };
        let (l3, l4, end) = (14, 34, 34 + l4len + 6);
        let mut buf = vec![0u8; end];
        for b in buf.iter_mut() {
            *b = next() as u8;
        }
        let r = next();
        let ttl = [2u8, 64, 255, (r >> 8) as u8 | 2][i % 4];
        let (os, od) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..end]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len((end - l3) as u16);
            ip.set_ttl(ttl);
            ip.set_protocol(crate::wire::IpProtocol::from(proto));
            ip.set_src_addr(os);
            ip.set_dst_addr(od);
            ip.fill_checksum();
        }
        let udp_none = proto == 17 && i % 2 == 0;
        if proto == 6 {
            let mut t = TcpPacket::new_unchecked(&mut buf[l4..end]);
            t.set_header_len(20);
            t.fill_checksum_v4(&os, &od);
        } else {
            let mut u = UdpPacket::new_unchecked(&mut buf[l4..end]);
            u.set_len((end - l4) as u16);
            u.fill_checksum_v4(&os, &od);
            if udp_none {
                u.set_checksum(0);
            }
        }
        let r = next();
        let (ns, nd) = ((r as u32).to_be_bytes(), ((r >> 32) as u32).to_be_bytes());
        let (sp, dp) = ((next() as u16).max(1), [1u16, 0xffff, 80][i % 3]);
        let pkt = Ip {
            l3,
            l4,
            end,
            src: IpAddr::V4(os),
            dst: IpAddr::V4(od),
            proto,
        };
        assert!(rewrite_v4(&mut buf, &pkt, (ns, nd), sp, dp));
        let (ns, nd) = (Ipv4Addr::from(ns), Ipv4Addr::from(nd));
        let ip = Ipv4Packet::new_unchecked(&buf[l3..end]);
        assert!(ip.verify_checksum(), "IPv4 header checksum, case {i}");
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (ns, nd, ttl - 1));
        if proto == 6 {
            let t = TcpPacket::new_unchecked(&buf[l4..end]);
            assert!(t.verify_checksum_v4(&ns, &nd), "TCP checksum, case {i}");
            assert_eq!((t.src_port(), t.dst_port()), (sp, dp));
        } else {
            let u = UdpPacket::new_unchecked(&buf[l4..end]);
            if udp_none {
                assert_eq!(u.checksum(), 0, "no UDP checksum stays none");
            } else {
                assert_ne!(u.checksum(), 0, "a computed 0 is sent as 0xffff");
                assert!(u.verify_checksum_v4(&ns, &nd), "UDP checksum, case {i}");
            }
            assert_eq!((u.src_port(), u.dst_port()), (sp, dp));
        }
    }
    // A TTL of 1 is not forwarded.
    let mut buf = vec![0u8; 60];
    buf[14 + 8] = 1;
    let pkt = Ip::v4(14, 54, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6);
    assert!(!rewrite_v4(&mut buf, &pkt, ([1; 4], [2; 4]), 1, 2));
}

/// The outer IPv4 header of IP-in-IP and GRE: every field as set, and
/// a checksum a full recompute accepts, over addresses, lengths, DSCP,
/// ECN and DF values that exercise the carries.
#[test]
fn encapsulated_outer_v4_header_is_right() {
    use crate::wire::Ipv4Packet;
    let mut next = xorshift(0x1319_8a2e_0370_7344);
    for i in 0..3000 {
        let gre = i % 2 == 1;
        let room = 20 + if gre { GRE_LEN } else { 0 };
        let l3 = 14 + room;
        let inner = 20 + 20 + (next() % 1400) as usize;
        let end = l3 + inner;
        let mut buf = vec![0u8; end];
        for b in buf.iter_mut() {
            *b = next() as u8;
        }
        let r = next();
        let (os, od) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
        let (tos, df) = (next() as u8, i % 3 == 0);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..end]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_dscp(tos >> 2);
            ip.set_ecn(tos & 3);
            ip.set_dont_frag(df);
            ip.set_total_len(inner as u16);
        }
        let pkt = Ip::v4(l3, end, os, od, 6);
        let r = next();
        let (s, d) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
        let mode = if gre { Mode::Gre } else { Mode::Ipip };
        let outer = encapsulate(&mut buf, &pkt, mode, IpAddr::V4(s), IpAddr::V4(d));
        assert_eq!(outer, Some(14), "case {i}");
        let ip = Ipv4Packet::new_unchecked(&buf[14..end]);
        assert!(ip.verify_checksum(), "outer checksum, case {i}");
        assert_eq!((ip.version(), ip.header_len()), (4, 20));
        assert_eq!((ip.dscp() << 2 | ip.ecn(), ip.dont_frag()), (tos, df));
        assert_eq!(ip.total_len() as usize, end - 14);
        assert_eq!(
            (ip.ident(), ip.frag_offset(), ip.more_frags()),
            (0, 0, false)
        );
        assert_eq!(ip.ttl(), 64);
        let proto = if gre {
            IpProtocol::Gre
        } else {
            IpProtocol::IpIp
        };
        assert_eq!(ip.protocol(), proto);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (s, d));
        if gre {
            assert_eq!(&buf[34..38], &[0, 0, 0x08, 0x00]);
        }
    }
}

/// Paced expiry visits the whole table once per sweep period, whatever
/// the loop rate, and never more than the budget per call.
#[test]
fn paced_expiry_sweeps_the_table_once_per_period() {
    use conntrack::{ConnState, ConntrackConfig, Timeouts};
    const S: u64 = 1_000_000_000;
    let ct = Conntrack::new(&ConntrackConfig {
        max_flows: 4096,
        timeouts: Timeouts {
            udp: S,
            ..Timeouts::default()
        },
        new_flow_rate: None,
    });
    let mut st = L4State::new(0, 1, ct, &[], Arc::new(L4Counters::default()));
    let t0 = 10 * S;
    for i in 0..4000u16 {
        let k = FlowKey::new(ip("198.18.0.1"), ip("10.0.0.100"), 1024 + i, 53, 17);
        st.conntrack
            .insert(k, None, 0, 0, ConnState::Udp, 0, t0, |_, _| {})
            .unwrap();
    }
    // The first call after a long pause takes one budget's step.
    st.expire_paced(t0, 64);
    assert_eq!(st.conntrack.len(), 4000, "nothing expired yet");
    // Everything expires at t0 + 1 s; a loop turning every 10 µs for
    // the next 1.1 s frees all of it, in steps of at most the budget.
    let mut now = t0 + S + 1;
    let mut calls = 0;
    while now < t0 + 2 * S + S / 10 {
        let before = st.conntrack.len();
        st.expire_paced(now, 64);
        assert!(before - st.conntrack.len() <= 64);
        now += 10_000;
        calls += 1;
    }
    assert_eq!(
        st.conntrack.len(),
        0,
        "swept within a period ({calls} calls)"
    );
    // An idle table costs nothing: no slot is owed within a few ns.
    st.expire_paced(now, 64);
}
