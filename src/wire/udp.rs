//! UDP headers (RFC 768).
//!
//! `check_len` guarantees `8 <= length field <= buffer length`; `payload()`
//! ends at the length field. The checksum covers the pseudo-header and the
//! `length` bytes of the datagram. Over IPv4 a checksum of 0 means the
//! sender computed none (RFC 768); over IPv6 it is mandatory
//! (RFC 8200 §8.1), and a computed 0 is sent as 0xFFFF on both.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip::IpProtocol;
use super::{read_u16, write_u16, Error, Result};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    /// Header plus data, in bytes.
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view over a UDP datagram.
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

    /// Checks: at least 8 bytes (`Truncated`), length field >= 8
    /// (`Malformed`), length field <= buffer (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus payload.
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// No payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    fn sum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> u16 {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Udp, self.len());
        checksum::fold(pseudo + checksum::sum(self.datagram()))
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let len = u32::from(self.len());
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Udp, len);
        checksum::fold(pseudo + checksum::sum(self.datagram()))
    }

    /// True if the checksum is correct, or 0 ("none", RFC 768).
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.checksum() == 0 || self.sum_v4(src, dst) == 0xFFFF
    }

    /// True if the checksum is correct. A zero checksum is refused
    /// (RFC 8200 §8.1; the RFC 6935 tunnel exception is not supported).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0 && self.sum_v6(src, dst) == 0xFFFF
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the header, up to the length field.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

/// A computed checksum of 0 goes on the wire as 0xFFFF, its ones'
/// complement twin, because 0 means "none" (RFC 768).
const fn non_zero(csum: u16) -> u16 {
    if csum == 0 {
        0xFFFF
    } else {
        csum
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    /// The bytes after the header, up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the IPv4 pseudo-header and the datagram
    /// (the length field's worth of bytes) and stores it.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let csum = non_zero(!self.sum_v4(src, dst));
        self.set_checksum(csum);
    }

    /// As [`Packet::fill_checksum_v4`] over the IPv6 pseudo-header.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let csum = non_zero(!self.sum_v6(src, dst));
        self.set_checksum(csum);
    }

    /// Applies an RFC 1624 update to the checksum, leaving a zero ("none")
    /// checksum as it is.
    fn update_checksum(&mut self, update: impl FnOnce(u16) -> u16) {
        let old = self.checksum();
        if old != 0 {
            self.set_checksum(non_zero(update(old)));
        }
    }

    /// Sets the source port and updates the checksum in place (RFC 1624).
    pub fn rewrite_src_port(&mut self, port: u16) {
        let old = self.src_port();
        self.update_checksum(|c| checksum::update16(c, old, port));
        self.set_src_port(port);
    }

    /// Sets the destination port and updates the checksum in place.
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        self.update_checksum(|c| checksum::update16(c, old, port));
        self.set_dst_port(port);
    }

    /// Updates the checksum for an IPv4 address of the pseudo-header that
    /// the caller changed from `old` to `new`.
    pub fn update_checksum_for_addr_v4(&mut self, old: &Ipv4Addr, new: &Ipv4Addr) {
        self.update_checksum(|c| checksum::update_ipv4_addr(c, old, new));
    }

    /// As [`Packet::update_checksum_for_addr_v4`], for IPv6.
    pub fn update_checksum_for_addr_v6(&mut self, old: &Ipv6Addr, new: &Ipv6Addr) {
        self.update_checksum(|c| checksum::update_ipv6_addr(c, old, new));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    fn dns() -> &'static [u8] {
        &testdata::UDP_DNS_QUERY[34..]
    }

    #[test]
    fn parse_dns_query() {
        let p = Packet::new_checked(dns()).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (53000, 53));
        assert_eq!(usize::from(p.len()), dns().len());
        assert!(!p.is_empty());
        assert_eq!(p.payload(), &dns()[8..]);
        // DNS ID 0xbeef.
        assert_eq!(&p.payload()[..2], &[0xbe, 0xef]);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &testdata::VIP4));
        assert!(!p.verify_checksum_v4(&testdata::LB4, &testdata::VIP4));
    }

    #[test]
    fn ipv6_checksum() {
        let p = Packet::new_checked(&testdata::IPV6_UDP_DNS_QUERY[58..]).unwrap();
        assert!(p.verify_checksum_v6(&testdata::CLIENT6, &testdata::VIP6));
        assert!(!p.verify_checksum_v6(&testdata::CLIENT6, &testdata::CLIENT6));
    }

    #[test]
    fn zero_checksum() {
        let p = Packet::new_checked(&testdata::UDP_NO_CHECKSUM[34..]).unwrap();
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &testdata::VIP4));
        assert!(!p.verify_checksum_v6(&testdata::CLIENT6, &testdata::VIP6));

        // "None" survives NAT rewrites.
        let mut bytes = testdata::UDP_NO_CHECKSUM[34..].to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.rewrite_dst_port(1);
        p.update_checksum_for_addr_v4(&testdata::VIP4, &testdata::LB4);
        assert_eq!(p.checksum(), 0);
    }

    /// A datagram whose checksum computes to 0 carries 0xFFFF instead.
    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let src = Ipv4Addr::new(0, 0, 0, 0);
        let dst = Ipv4Addr::new(0, 0, 0, 0);
        // Pseudo-header sums to 17 + 10 = 0x1b; header words: ports 0, length
        // 10, and a payload word that brings the total to 0xFFFF.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_len(10);
        let payload = 0xFFFF - 0x1b - 10;
        p.payload_mut()
            .copy_from_slice(&(payload as u16).to_be_bytes());
        p.fill_checksum_v4(&src, &dst);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum_v4(&src, &dst));
        p.fill_checksum_v6(&Ipv6Addr::UNSPECIFIED, &Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum_v6(&Ipv6Addr::UNSPECIFIED, &Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn fill_checksum_matches_capture() {
        let mut bytes = dns().to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(&testdata::CLIENT4, &testdata::VIP4);
        assert_eq!(&bytes[..], dns());
    }

    #[test]
    fn nat_rewrites_keep_the_checksum_valid() {
        let backend = Ipv4Addr::new(10, 0, 0, 53);
        let mut bytes = dns().to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.update_checksum_for_addr_v4(&testdata::VIP4, &backend);
        p.rewrite_dst_port(5353);
        p.rewrite_src_port(1024);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &backend));

        let backend6: Ipv6Addr = "2001:db8:b::53".parse().unwrap();
        let mut bytes = testdata::IPV6_UDP_DNS_QUERY[58..].to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.update_checksum_for_addr_v6(&testdata::VIP6, &backend6);
        assert!(p.verify_checksum_v6(&testdata::CLIENT6, &backend6));
    }

    #[test]
    fn payload_stops_at_length() {
        let mut bytes = dns().to_vec();
        bytes.extend_from_slice(&[0; 5]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), &dns()[8..]);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &testdata::VIP4));
    }

    #[test]
    fn every_truncation_is_refused() {
        for n in 0..dns().len() {
            assert_eq!(
                Packet::new_checked(&dns()[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn short_length_field_is_refused() {
        for len in 0..8u16 {
            let mut bytes = dns().to_vec();
            bytes[4..6].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&bytes[..]).err(),
                Some(Error::Malformed)
            );
        }
        let mut bytes = dns().to_vec();
        bytes[4..6].copy_from_slice(&8u16.to_be_bytes());
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_empty() && p.payload().is_empty());
    }
}
