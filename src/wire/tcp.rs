//! TCP headers (RFC 9293 §3.1).
//!
//! TCP has no length field: the segment is the whole buffer, so build the
//! view over the IP layer's `payload()`. `check_len` guarantees
//! `20 <= header_len <= buffer length`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ip::IpProtocol;
use super::{flags_u8, read_u16, read_u32, write_u16, write_u32, Error, Result};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits, in 32-bit words) and reserved bits.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

flags_u8! {
    /// The control bits of byte 13 (RFC 9293 §3.1; ECE and CWR from
    /// RFC 3168 §6.1).
    pub struct Flags {
        const FIN = 0x01;
        const SYN = 0x02;
        const RST = 0x04;
        const PSH = 0x08;
        const ACK = 0x10;
        const URG = 0x20;
        const ECE = 0x40;
        const CWR = 0x80;
    }
}

/// An IPv4 payload cannot exceed 65535 bytes; a longer buffer did not come
/// off an IPv4 header, and its checksum will simply not verify.
fn v4_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn v6_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A view over a TCP segment.
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

    /// Checks: at least 20 bytes (`Truncated`), data offset >= 5
    /// (`Malformed`), header length <= buffer (`Truncated`).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
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

    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// Meaningful when [`Flags::ACK`] is set.
    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Data offset in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] >> 4
    }

    /// Header length in bytes, options included (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    pub fn flags(&self) -> Flags {
        Flags::from_bits(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn fin(&self) -> bool {
        self.flags().contains(Flags::FIN)
    }

    pub fn syn(&self) -> bool {
        self.flags().contains(Flags::SYN)
    }

    pub fn rst(&self) -> bool {
        self.flags().contains(Flags::RST)
    }

    pub fn ack(&self) -> bool {
        self.flags().contains(Flags::ACK)
    }

    /// The raw window, before any window scale (RFC 7323 §2) is applied.
    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Meaningful when [`Flags::URG`] is set.
    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// Length of the segment counted in sequence space: payload plus one
    /// each for SYN and FIN (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        let mut len = self.buffer.as_ref().len() - self.header_len();
        len += usize::from(self.syn()) + usize::from(self.fin());
        len
    }

    /// The raw options, `header_len() - 20` bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The checksum over the IPv4 pseudo-header and the whole buffer
    /// (RFC 9293 §3.1) is correct.
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, v4_len(data.len()));
        checksum::fold(pseudo + checksum::sum(data)) == 0xFFFF
    }

    /// As [`Packet::verify_checksum_v4`] over the IPv6 pseudo-header
    /// (RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, v6_len(data.len()));
        checksum::fold(pseudo + checksum::sum(data)) == 0xFFFF
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the header, to the end of the buffer.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], ack);
    }

    /// Sets the data offset from a length in bytes, a multiple of 4; the
    /// reserved bits are cleared.
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len.is_multiple_of(4) && (HEADER_LEN..=60).contains(&len));
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.bits();
    }

    pub fn set_window_len(&mut self, window: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], window);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    pub fn set_urgent_at(&mut self, urgent: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], urgent);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the IPv4 pseudo-header and the whole
    /// buffer, and stores it.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, v4_len(data.len()));
        let csum = !checksum::fold(pseudo + checksum::sum(data));
        self.set_checksum(csum);
    }

    /// As [`Packet::fill_checksum_v4`] over the IPv6 pseudo-header.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, v6_len(data.len()));
        let csum = !checksum::fold(pseudo + checksum::sum(data));
        self.set_checksum(csum);
    }

    /// Sets the source port and updates the checksum in place (RFC 1624).
    pub fn rewrite_src_port(&mut self, port: u16) {
        let csum = checksum::update16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(csum);
    }

    /// Sets the destination port and updates the checksum in place.
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let csum = checksum::update16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(csum);
    }

    /// Updates the checksum for an IPv4 address of the pseudo-header that
    /// the caller changed from `old` to `new` (NAT to or from a backend).
    pub fn update_checksum_for_addr_v4(&mut self, old: &Ipv4Addr, new: &Ipv4Addr) {
        let csum = checksum::update_ipv4_addr(self.checksum(), old, new);
        self.set_checksum(csum);
    }

    /// As [`Packet::update_checksum_for_addr_v4`], for IPv6.
    pub fn update_checksum_for_addr_v6(&mut self, old: &Ipv6Addr, new: &Ipv6Addr) {
        let csum = checksum::update_ipv6_addr(self.checksum(), old, new);
        self.set_checksum(csum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Write into `out` the RST that answers the segment `pkt` (an IPv4 or
/// IPv6 packet carrying TCP, no options or extension headers) for which
/// there is no connection, per RFC 9293 §3.10.7.1: if the segment has an
/// ACK, the RST takes its sequence number from it; otherwise it has
/// sequence 0 and acknowledges the segment. Returns the packet's length;
/// `None` for a RST (never answered) or a malformed segment.
pub fn write_reset(pkt: &[u8], out: &mut [u8]) -> Option<usize> {
    use super::checksum::{checksum, fold, pseudo_header_v4, pseudo_header_v6, sum};
    const TCP_FIN: u8 = 0x01;
    const TCP_SYN: u8 = 0x02;
    const TCP_RST: u8 = 0x04;
    const TCP_ACK: u8 = 0x10;
    let v6 = pkt.first()? >> 4 == 6;
    let (l4, total) = if v6 {
        (
            40,
            40 + u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]) as usize,
        )
    } else {
        (
            ((pkt[0] & 0x0f) as usize) * 4,
            u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]) as usize,
        )
    };
    let t = pkt.get(l4..total.min(pkt.len()))?;
    if t.len() < 20 {
        return None;
    }
    let flags = t[13];
    if flags & TCP_RST != 0 {
        return None;
    }
    let data_off = ((t[12] >> 4) as usize) * 4;
    let payload = t.len().checked_sub(data_off)? as u32;
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let (rseq, rack, rflags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let len = payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    let ip_len = if v6 { 40 } else { 20 };
    let out = out.get_mut(..ip_len + 20)?;
    out.fill(0);
    let tcp_at = ip_len;
    {
        let r = &mut out[tcp_at..];
        r[0..2].copy_from_slice(&t[2..4]);
        r[2..4].copy_from_slice(&t[0..2]);
        r[4..8].copy_from_slice(&rseq.to_be_bytes());
        r[8..12].copy_from_slice(&rack.to_be_bytes());
        r[12] = 5 << 4;
        r[13] = rflags;
    }
    let pseudo = if v6 {
        out[0] = 0x60;
        out[4..6].copy_from_slice(&20u16.to_be_bytes());
        out[6] = 6;
        out[7] = 64;
        out[8..24].copy_from_slice(&pkt[24..40]);
        out[24..40].copy_from_slice(&pkt[8..24]);
        let src = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&out[8..24]).ok()?);
        let dst = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&out[24..40]).ok()?);
        pseudo_header_v6(&src, &dst, IpProtocol::Tcp, 20)
    } else {
        out[0] = 0x45;
        out[2..4].copy_from_slice(&40u16.to_be_bytes());
        out[6] = 0x40; // don't fragment
        out[8] = 64;
        out[9] = 6;
        out[12..16].copy_from_slice(&pkt[16..20]);
        out[16..20].copy_from_slice(&pkt[12..16]);
        let c = checksum(&out[..20]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        let src = std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&out[12..16]).ok()?);
        let dst = std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&out[16..20]).ok()?);
        pseudo_header_v4(&src, &dst, IpProtocol::Tcp, 20)
    };
    let c = !fold(pseudo + sum(&out[tcp_at..tcp_at + 20]));
    out[tcp_at + 16..tcp_at + 18].copy_from_slice(&c.to_be_bytes());
    Some(ip_len + 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    fn syn() -> &'static [u8] {
        &testdata::VLAN_TCP_SYN[38..]
    }

    #[test]
    fn parse_syn() {
        let p = Packet::new_checked(syn()).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (49152, 80));
        assert_eq!(p.seq_number(), 0x01020304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.data_offset(), 10);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), Flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x9891);
        assert_eq!(p.urgent_at(), 0);
        // MSS 1460 (RFC 9293 §3.7.1) first.
        assert_eq!(&p.options()[..4], &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(p.options().len(), 20);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &testdata::VIP4));
        assert!(!p.verify_checksum_v4(&testdata::CLIENT4, &testdata::LB4));
    }

    #[test]
    fn parse_payload_and_flags() {
        let p = Packet::new_checked(&testdata::TCP_HTTP_GET[34..]).unwrap();
        assert_eq!(p.flags(), Flags::PSH | Flags::ACK);
        assert!(p.payload().starts_with(b"GET / HTTP/1.1\r\n"));
        assert_eq!(p.segment_len(), p.payload().len());
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &testdata::VIP4));

        let p = Packet::new_checked(&testdata::TCP_SYN_ACK[34..]).unwrap();
        assert_eq!(p.flags(), Flags::SYN | Flags::ACK);
        assert!(p.verify_checksum_v4(&testdata::VIP4, &testdata::CLIENT4));
    }

    #[test]
    fn ipv6_checksum() {
        let p = Packet::new_checked(&testdata::IPV6_TCP_SYN[54..]).unwrap();
        assert_eq!(p.dst_port(), 443);
        assert!(p.verify_checksum_v6(&testdata::CLIENT6, &testdata::VIP6));
        assert!(!p.verify_checksum_v6(&testdata::VIP6, &testdata::VIP6));
    }

    #[test]
    fn fill_checksum_matches_capture() {
        let mut bytes = syn().to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_checksum(0xdead);
        p.fill_checksum_v4(&testdata::CLIENT4, &testdata::VIP4);
        assert_eq!(&bytes[..], syn());

        let mut bytes = testdata::IPV6_TCP_SYN[54..].to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_checksum(0);
        p.fill_checksum_v6(&testdata::CLIENT6, &testdata::VIP6);
        assert_eq!(&bytes[..], &testdata::IPV6_TCP_SYN[54..]);
    }

    #[test]
    fn nat_rewrites_keep_the_checksum_valid() {
        let backend = Ipv4Addr::new(10, 0, 0, 7);
        let mut bytes = syn().to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.update_checksum_for_addr_v4(&testdata::VIP4, &backend);
        p.rewrite_dst_port(8080);
        p.rewrite_src_port(61000);
        assert!(p.verify_checksum_v4(&testdata::CLIENT4, &backend));
        assert_eq!((p.src_port(), p.dst_port()), (61000, 8080));

        let backend6: Ipv6Addr = "2001:db8:b::7".parse().unwrap();
        let mut bytes = testdata::IPV6_TCP_SYN[54..].to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.update_checksum_for_addr_v6(&testdata::VIP6, &backend6);
        assert!(p.verify_checksum_v6(&testdata::CLIENT6, &backend6));
    }

    #[test]
    fn every_truncation_is_refused() {
        for n in 0..40 {
            assert_eq!(
                Packet::new_checked(&syn()[..n]).err(),
                Some(Error::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn small_data_offset_is_refused() {
        for off in 0..5u8 {
            let mut bytes = syn().to_vec();
            bytes[12] = off << 4;
            assert_eq!(
                Packet::new_checked(&bytes[..]).err(),
                Some(Error::Malformed)
            );
        }
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(3);
        p.set_ack_number(4);
        p.set_header_len(24);
        p.set_flags(Flags::RST | Flags::ACK);
        p.set_window_len(5);
        p.set_urgent_at(6);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(b"abcd");
        p.fill_checksum_v4(&testdata::VIP4, &testdata::CLIENT4);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()),
            (1, 2, 3, 4)
        );
        assert_eq!((p.header_len(), p.window_len(), p.urgent_at()), (24, 5, 6));
        assert!(p.rst() && p.ack());
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum_v4(&testdata::VIP4, &testdata::CLIENT4));
    }

    #[test]
    fn flags_set_operations() {
        let mut f = Flags::SYN;
        f.insert(Flags::ACK);
        assert!(f.contains(Flags::SYN | Flags::ACK));
        assert!(f.intersects(Flags::ACK | Flags::FIN));
        f.remove(Flags::SYN);
        assert_eq!(f, Flags::ACK);
        f.set(Flags::ECE, true);
        f.set(Flags::ACK, false);
        assert_eq!(f.bits(), 0x40);
        assert!(Flags::empty().is_empty());
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "Flags(SYN | ACK)");
        assert_eq!(format!("{:?}", Flags::empty()), "Flags()");
        assert_eq!(format!("{:?}", Flags::FIN | Flags::CWR), "Flags(FIN | CWR)");
    }
}
