//! IPv4 headers (RFC 791 §3.1).
//!
//! `check_len` guarantees `20 <= header_len <= total_len <= buffer length`,
//! so `options()` and `payload()` are always in bounds; `payload()` ends at
//! the total length, leaving out any Ethernet padding.

use std::net::Ipv4Addr;

use super::checksum;
use super::ip::IpProtocol;
use super::{read_ipv4, read_u16, write_u16, Error, Result};

mod field {
    use crate::wire::Field;

    /// Version (4 bits) and IHL (4 bits, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (6 bits, RFC 2474) and ECN (2 bits, RFC 3168).
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    /// Reserved, DF, MF (3 bits) and fragment offset (13 bits, 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1FFF;
/// The bits of the flags-and-offset word that make a packet a fragment
/// (more fragments, or a non-zero offset): see [`Packet::is_fragment`].
pub const FRAGMENT_BITS: u16 = FLAG_MF | OFFSET_MASK;

/// A view over an IPv4 packet.
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

    /// Checks, in order: at least 20 bytes (`Truncated`), version 4 and
    /// IHL >= 5 (`Malformed`), header length <= total length (`Malformed`),
    /// total length <= buffer (`Truncated`). The header checksum is not
    /// checked: see [`Packet::verify_checksum`].
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total_len = usize::from(self.total_len());
        if self.header_len() > total_len {
            return Err(Error::Malformed);
        }
        if total_len > data.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Internet Header Length in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0F
    }

    /// Header length in bytes, options included (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flg_off(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    pub fn dont_frag(&self) -> bool {
        self.flg_off() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flg_off() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a non-zero offset. Only the
    /// first fragment (offset 0) carries the transport header.
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & FRAGMENT_BITS != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.protocol_number())
    }

    /// The protocol field as a number (no conversion to [`IpProtocol`]).
    #[inline]
    pub fn protocol_number(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The header checksum (RFC 791 §3.1) sums to 0xFFFF over the header.
    pub fn verify_checksum(&self) -> bool {
        let h = &self.buffer.as_ref()[..self.header_len()];
        // A header without options (nearly all of them): summed as a
        // fixed-size array, which the compiler unrolls.
        if let Ok(h) = <&[u8; HEADER_LEN]>::try_from(h) {
            return checksum::checksum(h) == 0;
        }
        checksum::checksum(h) == 0
    }

    /// The raw options (RFC 791 §3.1), `header_len() - 20` bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0F) | (version << 4);
    }

    /// Sets IHL from a length in bytes, which must be a multiple of 4.
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len.is_multiple_of(4) && (HEADER_LEN..=60).contains(&len));
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xF0) | ((len / 4) as u8 & 0x0F);
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xFC) | (ecn & 0x03);
    }

    pub fn set_total_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], ident);
    }

    fn set_flg_off(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::FLG_OFF], value);
    }

    /// Clears DF, MF and the reserved bit, keeping the offset.
    pub fn clear_flags(&mut self) {
        let v = self.flg_off() & OFFSET_MASK;
        self.set_flg_off(v);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flg_off();
        self.set_flg_off(if value { v | FLAG_DF } else { v & !FLAG_DF });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flg_off();
        self.set_flg_off(if value { v | FLAG_MF } else { v & !FLAG_MF });
    }

    /// Sets the fragment offset from bytes; the low three bits are dropped,
    /// offsets being 8-byte units on the wire.
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = (self.flg_off() & !OFFSET_MASK) | (offset >> 3);
        self.set_flg_off(v);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum over `header_len()` bytes and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(csum);
    }

    /// Sets the source address and updates the header checksum in place
    /// (RFC 1624). The transport checksum, whose pseudo-header holds the
    /// address too, is the caller's to update.
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) {
        let csum = checksum::update_ipv4_addr(self.checksum(), &self.src_addr(), &addr);
        self.set_src_addr(addr);
        self.set_checksum(csum);
    }

    /// As [`Packet::rewrite_src_addr`], for the destination.
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) {
        let csum = checksum::update_ipv4_addr(self.checksum(), &self.dst_addr(), &addr);
        self.set_dst_addr(addr);
        self.set_checksum(csum);
    }

    /// Sets the TTL and updates the header checksum in place (RFC 1624;
    /// TTL is the high byte of the TTL/protocol word).
    pub fn rewrite_ttl(&mut self, ttl: u8) {
        let proto = u16::from(self.buffer.as_ref()[field::PROTOCOL]);
        let old = u16::from(self.ttl()) << 8 | proto;
        let new = u16::from(ttl) << 8 | proto;
        let csum = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(csum);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    /// The bytes after the header, up to the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv4 header without options, for a datagram that is not fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Length of what follows the header; at most 65515.
    pub payload_len: usize,
    pub ttl: u8,
}

impl Repr {
    /// Errors as [`Packet::check_len`], and `Unsupported` for a fragment,
    /// whose payload is not a whole transport message. Options are skipped,
    /// and the checksum is not verified (see [`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with DSCP/ECN 0, ident 0 and DF set, and fills
    /// the checksum. Ident 0 is allowed for atomic datagrams, which DF with
    /// offset 0 and MF clear makes this one (RFC 6864 §4.1).
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`], or in debug builds if
    /// `payload_len` does not fit the 16-bit total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(0);
        packet.set_ecn(0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.set_flg_off(FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    fn echo() -> &'static [u8] {
        &testdata::ICMP_ECHO_REQUEST[14..]
    }

    #[test]
    fn parse_echo_request() {
        let p = Packet::new_checked(echo()).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.ihl(), 5);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Icmp);
        assert_eq!(p.checksum(), 0x3c62);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), testdata::CLIENT4);
        assert_eq!(p.dst_addr(), testdata::VIP4);
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &echo()[20..]);
    }

    #[test]
    fn payload_stops_at_total_len() {
        let mut padded = echo().to_vec();
        padded.extend_from_slice(&[0xee; 6]);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &echo()[20..]);
    }

    #[test]
    fn options() {
        let bytes = &testdata::IPV4_OPTIONS[14..];
        let p = Packet::new_checked(bytes).unwrap();
        assert_eq!(p.ihl(), 9);
        assert_eq!(p.header_len(), 36);
        assert!(p.verify_checksum());
        // Router Alert (RFC 2113 §2.1): type 148, length 4, value 0.
        assert_eq!(&p.options()[..4], &[0x94, 0x04, 0x00, 0x00]);
        // Record Route (RFC 791): type 7.
        assert_eq!(p.options()[4], 0x07);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.payload(), &bytes[36..]);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, bytes.len() - 36);
    }

    #[test]
    fn fragments() {
        let first = Packet::new_checked(&testdata::IPV4_FRAG_FIRST[14..]).unwrap();
        assert!(first.more_frags() && first.is_fragment());
        assert_eq!(first.frag_offset(), 0);
        assert!(first.verify_checksum());
        let last = Packet::new_checked(&testdata::IPV4_FRAG_LAST[14..]).unwrap();
        assert!(!last.more_frags() && last.is_fragment());
        assert_eq!(last.frag_offset(), 40);
        assert_eq!(first.ident(), last.ident());
        assert_eq!(Repr::parse(&first), Err(Error::Unsupported));
        assert_eq!(Repr::parse(&last), Err(Error::Unsupported));
    }

    #[test]
    fn every_truncation_is_refused() {
        for frame in [
            &testdata::ICMP_ECHO_REQUEST[..],
            &testdata::IPV4_OPTIONS[..],
        ] {
            let bytes = &frame[14..];
            for n in 0..bytes.len() {
                assert_eq!(
                    Packet::new_checked(&bytes[..n]).err(),
                    Some(Error::Truncated),
                    "{n} bytes"
                );
            }
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        type Edit = fn(&mut [u8]);
        let cases: [(&str, Edit, Error); 6] = [
            ("version 6", |b| b[0] = 0x65, Error::Malformed),
            ("version 0", |b| b[0] = 0x05, Error::Malformed),
            ("ihl 4", |b| b[0] = 0x44, Error::Malformed),
            ("ihl 0", |b| b[0] = 0x40, Error::Malformed),
            (
                "total_len < ihl",
                |b| b[2..4].copy_from_slice(&19u16.to_be_bytes()),
                Error::Malformed,
            ),
            (
                "total_len > buffer",
                |b| b[2..4].copy_from_slice(&41u16.to_be_bytes()),
                Error::Truncated,
            ),
        ];
        for (what, edit, err) in cases {
            let mut bytes = echo().to_vec();
            edit(&mut bytes);
            assert_eq!(Packet::new_checked(&bytes[..]).err(), Some(err), "{what}");
        }
        // IHL 15 (60 bytes) over a 40-byte datagram.
        let mut bytes = echo().to_vec();
        bytes[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&bytes[..]).err(),
            Some(Error::Malformed)
        );
    }

    #[test]
    fn checksum_detects_damage() {
        let mut bytes = echo().to_vec();
        bytes[8] = 1;
        assert!(!Packet::new_checked(&bytes[..]).unwrap().verify_checksum());
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn round_trip() {
        let p = Packet::new_checked(&testdata::TCP_SYN_ACK[14..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: testdata::VIP4,
                dst_addr: testdata::CLIENT4,
                protocol: IpProtocol::Tcp,
                payload_len: 40,
                ttl: 64,
            }
        );
        // scapy wrote this header with ident 0 and DF, as emit does.
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..20], &testdata::TCP_SYN_ACK[14..34]);
        let again = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(again, repr);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp(46);
        p.set_ecn(1);
        p.set_total_len(28);
        p.set_ident(0xabcd);
        p.set_more_frags(true);
        p.set_dont_frag(true);
        p.set_frag_offset(1480);
        p.set_ttl(3);
        p.set_protocol(IpProtocol::Udp);
        p.set_src_addr(testdata::CLIENT4);
        p.set_dst_addr(testdata::VIP4);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[9, 9, 9, 9]);
        p.fill_checksum();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.header_len(), p.dscp(), p.ecn()), (24, 46, 1));
        assert_eq!(p.ident(), 0xabcd);
        assert!(p.dont_frag() && p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        assert!(p.verify_checksum());

        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_more_frags(false);
        p.clear_flags();
        assert!(!p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn incremental_rewrites_keep_the_checksum_valid() {
        let mut bytes = testdata::VLAN_TCP_SYN[18..].to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.rewrite_dst_addr(Ipv4Addr::new(10, 0, 0, 7));
        assert!(p.verify_checksum());
        p.rewrite_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        assert!(p.verify_checksum());
        for ttl in [63, 1, 0, 255] {
            p.rewrite_ttl(ttl);
            assert!(p.verify_checksum());
            assert_eq!(p.ttl(), ttl);
        }
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }
}
