//! IPv6 fixed headers (RFC 8200 §3), and the address mappings Neighbor
//! Discovery needs (RFC 4291 §2.7.1, RFC 2464 §7).
//!
//! `check_len` guarantees `40 + payload_len <= buffer length`. `payload()`
//! is everything after the fixed header up to the payload length, extension
//! headers included: `next_header()` names the first of them, and this view
//! does not walk the chain.

use std::net::Ipv6Addr;

use super::ethernet::EthernetAddress;
use super::ip::IpProtocol;
use super::{read_ipv6, read_u16, read_u32, write_u16, write_u32, Error, Result};

mod field {
    use crate::wire::Field;

    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// ff02::1, all nodes on the link (RFC 4291 §2.7.1); where an unsolicited
/// Neighbor Advertisement goes (RFC 4861 §7.2.6).
pub const LINK_LOCAL_ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link (RFC 4291 §2.7.1).
pub const LINK_LOCAL_ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The solicited-node multicast address of `addr`: ff02::1:ff00:0/104 plus
/// its low 24 bits (RFC 4291 §2.7.1). Neighbor Solicitations for `addr` are
/// sent there, so a node joins it for each of its addresses.
pub fn solicited_node_multicast(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// True for an address in ff02::1:ff00:0/104.
pub fn is_solicited_node_multicast(addr: &Ipv6Addr) -> bool {
    addr.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet destination of an IPv6 multicast address: 33:33 followed by
/// the address's low 32 bits (RFC 2464 §7). The mapping is only meaningful
/// for multicast addresses; it is applied to whatever it is given.
pub fn multicast_mac(addr: &Ipv6Addr) -> EthernetAddress {
    let o = addr.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// A view over an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks: at least 40 bytes (`Truncated`), version 6 (`Malformed`),
    /// 40 + payload length <= buffer (`Truncated`). A payload length of 0
    /// with a Jumbo Payload option (RFC 2675) is read as an empty payload.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::VER_TC_FLOW])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// DSCP (high 6 bits) and ECN (low 2 bits), RFC 8200 §7.
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000F_FFFF
    }

    /// Length of what follows the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.buffer.as_ref()[field::DST_ADDR])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the fixed header, up to the payload length.
    pub fn payload(&self) -> &'a [u8] {
        let range = HEADER_LEN..HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::VER_TC_FLOW], value);
    }

    pub fn set_version(&mut self, version: u8) {
        let v = (self.ver_tc_flow() & 0x0FFF_FFFF) | (u32::from(version & 0x0F) << 28);
        self.set_ver_tc_flow(v);
    }

    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = (self.ver_tc_flow() & 0xF00F_FFFF) | (u32::from(tc) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label; bits above the low 20 are dropped.
    pub fn set_flow_label(&mut self, label: u32) {
        let v = (self.ver_tc_flow() & 0xFFF0_0000) | (label & 0x000F_FFFF);
        self.set_ver_tc_flow(v);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    pub fn set_next_header(&mut self, next_header: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header.into();
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The bytes after the fixed header, up to the payload length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv6 fixed header with traffic class and flow label 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    /// Length of what follows the fixed header; at most 65535.
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Repr {
    /// Errors as [`Packet::check_len`]. Traffic class and flow label are
    /// not kept.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`], or in debug builds if
    /// `payload_len` does not fit 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        packet.set_ver_tc_flow(6 << 28);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    #[test]
    fn parse_tcp_syn() {
        let bytes = &testdata::IPV6_TCP_SYN[14..];
        let p = Packet::new_checked(bytes).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x28);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 40);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), testdata::CLIENT6);
        assert_eq!(p.dst_addr(), testdata::VIP6);
        assert_eq!(p.payload(), &bytes[40..]);
    }

    #[test]
    fn payload_stops_at_payload_len() {
        let mut bytes = testdata::IPV6_TCP_SYN[14..].to_vec();
        bytes.extend_from_slice(&[0xee; 3]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn extension_headers_are_payload() {
        let bytes = &testdata::IPV6_FRAGMENT[14..];
        let p = Packet::new_checked(bytes).unwrap();
        assert_eq!(p.next_header(), IpProtocol::Ipv6Frag);
        assert!(p.next_header().is_ipv6_extension());
        assert_eq!(p.payload(), &bytes[40..]);
        let p = Packet::new_checked(&testdata::IPV6_HOP_BY_HOP[14..]).unwrap();
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = &testdata::NDP_NS[14..];
        for n in 0..bytes.len() {
            assert_eq!(
                Packet::new_checked(&bytes[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn bad_version_is_refused() {
        for first in [0x40, 0x00, 0x70, 0xf0] {
            let mut bytes = testdata::NDP_NS[14..].to_vec();
            bytes[0] = first;
            assert_eq!(
                Packet::new_checked(&bytes[..]).err(),
                Some(Error::Malformed)
            );
        }
    }

    #[test]
    fn payload_len_beyond_buffer_is_refused() {
        let mut bytes = testdata::NDP_NS[14..].to_vec();
        let len = (bytes.len() - 40 + 1) as u16;
        bytes[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bytes[..]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn round_trip() {
        let bytes = &testdata::ICMPV6_ECHO_REQUEST[14..];
        let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: testdata::CLIENT6,
                dst_addr: testdata::VIP6,
                next_header: IpProtocol::Icmpv6,
                payload_len: bytes.len() - 40,
                hop_limit: 64,
            }
        );
        let mut buf = bytes.to_vec();
        buf[..40].fill(0);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 44];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0xfff_ffff);
        p.set_payload_len(4);
        p.set_next_header(IpProtocol::Udp);
        p.set_hop_limit(255);
        p.set_src_addr(testdata::VIP6);
        p.set_dst_addr(LINK_LOCAL_ALL_NODES);
        p.payload_mut().copy_from_slice(b"data");
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0xf_ffff)
        );
        assert_eq!((p.next_header(), p.hop_limit()), (IpProtocol::Udp, 255));
        assert_eq!(
            (p.src_addr(), p.dst_addr()),
            (testdata::VIP6, LINK_LOCAL_ALL_NODES)
        );
        assert_eq!(p.payload(), b"data");
    }

    #[test]
    fn multicast_mappings() {
        let addr: Ipv6Addr = "2001:db8::1:2:3abc:def0".parse().unwrap();
        let snm = solicited_node_multicast(&addr);
        assert_eq!(snm, "ff02::1:ffbc:def0".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node_multicast(&snm));
        assert!(!is_solicited_node_multicast(&addr));
        assert_eq!(
            multicast_mac(&snm),
            EthernetAddress([0x33, 0x33, 0xff, 0xbc, 0xde, 0xf0])
        );
        assert_eq!(
            multicast_mac(&LINK_LOCAL_ALL_NODES),
            EthernetAddress([0x33, 0x33, 0, 0, 0, 1])
        );

        // The NS fixture went to the VIP's solicited-node group, on its MAC.
        let ns = Packet::new_checked(&testdata::NDP_NS[14..]).unwrap();
        assert_eq!(ns.dst_addr(), solicited_node_multicast(&testdata::VIP6));
        assert_eq!(
            &testdata::NDP_NS[..6],
            multicast_mac(&ns.dst_addr()).as_bytes()
        );
    }
}
