//! ARP (RFC 826) for IPv4 over Ethernet, the only kind Sluice speaks.
//!
//! `check_len` refuses any other hardware or protocol type
//! ([`Error::Unsupported`]) and Ethernet/IPv4 packets whose address lengths
//! are not 6 and 4 ([`Error::Malformed`]), so the getters can return
//! [`EthernetAddress`] and [`Ipv4Addr`] directly.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetAddress};
use super::{enum_with_unknown, read_ipv4, read_u16, write_u16, Error, Result};

enum_with_unknown! {
    /// ARP opcode (RFC 826; IANA "ARP Operation Codes").
    pub enum Operation(u16) {
        Request = 1,
        Reply = 2,
    }
}

/// Hardware type of Ethernet (IANA "Hardware Types").
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use crate::wire::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    // The address fields below are laid out for hlen 6 and plen 4, which
    // `check_len` enforces.
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet. A frame carrying one is usually
/// padded to the 60-byte Ethernet minimum; the padding is ignored.
pub const PACKET_LEN: usize = field::TPA.end;

/// A view over an ARP packet.
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

    /// The buffer holds a complete Ethernet/IPv4 ARP packet: htype 1,
    /// ptype 0x0800, hlen 6, plen 4, and 28 bytes.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::OPER.end {
            return Err(Error::Truncated);
        }
        if read_u16(&data[field::HTYPE]) != HTYPE_ETHERNET
            || EtherType::from(read_u16(&data[field::PTYPE])) != EtherType::Ipv4
        {
            return Err(Error::Unsupported);
        }
        if data[field::HLEN] != 6 || data[field::PLEN] != 4 {
            return Err(Error::Malformed);
        }
        if data.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16(&self.buffer.as_ref()[field::PTYPE]))
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> Operation {
        Operation::from(read_u16(&self.buffer.as_ref()[field::OPER]))
    }

    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hardware_type(&mut self, htype: u16) {
        write_u16(&mut self.buffer.as_mut()[field::HTYPE], htype);
    }

    pub fn set_protocol_type(&mut self, ptype: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::PTYPE], ptype.into());
    }

    pub fn set_hardware_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::HLEN] = len;
    }

    pub fn set_protocol_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::PLEN] = len;
    }

    pub fn set_operation(&mut self, op: Operation) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], op.into());
    }

    pub fn set_source_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub operation: Operation,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Errors as [`Packet::check_len`]. Any operation is accepted: a
    /// responder answers `Request` and learns from both.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// # Panics
    /// If the buffer is shorter than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    fn request() -> &'static [u8] {
        &testdata::ARP_REQUEST[14..]
    }

    #[test]
    fn parse_request() {
        let packet = Packet::new_checked(request()).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!((packet.hardware_len(), packet.protocol_len()), (6, 4));
        assert_eq!(
            Repr::parse(&packet),
            Ok(Repr {
                operation: Operation::Request,
                source_hardware_addr: testdata::CLIENT_MAC,
                source_protocol_addr: testdata::CLIENT4,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: testdata::LB4,
            })
        );
    }

    #[test]
    fn parse_reply() {
        let repr = Repr::parse(&Packet::new_checked(&testdata::ARP_REPLY[14..]).unwrap()).unwrap();
        assert_eq!(repr.operation, Operation::Reply);
        assert_eq!(repr.source_hardware_addr, testdata::LB_MAC);
        assert_eq!(repr.source_protocol_addr, testdata::LB4);
        assert_eq!(repr.target_hardware_addr, testdata::CLIENT_MAC);
        assert_eq!(repr.target_protocol_addr, testdata::CLIENT4);
    }

    #[test]
    fn round_trip() {
        for frame in [&testdata::ARP_REQUEST[..], &testdata::ARP_REPLY[..]] {
            let bytes = &frame[14..];
            let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
            let mut buf = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn answer_request_from_repr() {
        let req = Repr::parse(&Packet::new_checked(request()).unwrap()).unwrap();
        let reply = Repr {
            operation: Operation::Reply,
            source_hardware_addr: testdata::LB_MAC,
            source_protocol_addr: req.target_protocol_addr,
            target_hardware_addr: req.source_hardware_addr,
            target_protocol_addr: req.source_protocol_addr,
        };
        let mut buf = [0u8; PACKET_LEN];
        reply.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &testdata::ARP_REPLY[14..]);
    }

    #[test]
    fn unknown_operation_is_kept() {
        let mut bytes = request().to_vec();
        bytes[7] = 9;
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.operation, Operation::Unknown(9));
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut bytes = request().to_vec();
        bytes.resize(46, 0);
        assert!(Packet::new_checked(&bytes[..]).is_ok());
    }

    #[test]
    fn every_truncation_is_refused() {
        for n in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&request()[..n]).err(),
                Some(Error::Truncated),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn other_kinds_are_refused() {
        let cases: [(usize, u8, Error); 6] = [
            (1, 6, Error::Unsupported),    // htype 6 (IEEE 802)
            (2, 0x86, Error::Unsupported), // ptype 0x86dd-ish
            (4, 7, Error::Malformed),      // hlen 7
            (4, 0, Error::Malformed),      // hlen 0
            (5, 16, Error::Malformed),     // plen 16
            (5, 6, Error::Malformed),      // plen 6
        ];
        for (at, value, err) in cases {
            let mut bytes = request().to_vec();
            bytes[at] = value;
            let packet = Packet::new_unchecked(&bytes[..]);
            assert_eq!(packet.check_len(), Err(err), "byte {at} = {value}");
            assert_eq!(Repr::parse(&packet), Err(err), "byte {at} = {value}");
        }
    }
}
