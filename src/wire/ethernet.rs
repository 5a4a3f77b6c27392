//! Ethernet II frames (IEEE 802.3 §3.2, without preamble and FCS, as a NIC
//! hands them over) and 802.1Q VLAN tags (IEEE 802.1Q §9.6).
//!
//! Sluice accepts untagged frames and frames with one C-tag (TPID 0x8100).
//! A second tag, or an S-tag (TPID 0x88A8, 802.1ad), is [`Error::Unsupported`]:
//! see [`Frame::inner_ethertype`].

use core::fmt;
use core::str::FromStr;

use super::{enum_with_unknown, read_u16, write_u16, Error, Result};

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `data`.
    ///
    /// # Panics
    /// If `data` is shorter than six bytes.
    pub fn from_bytes(data: &[u8]) -> EthernetAddress {
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(&data[..6]);
        EthernetAddress(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// The I/G bit (IEEE 802 §8.2): set for group addresses, broadcast included.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// An individual address: neither multicast nor broadcast.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit (IEEE 802 §8.2): set for locally administered addresses.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address string was not six two-digit hex groups separated by `:`
/// (or all by `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseEthernetAddressError;

impl fmt::Display for ParseEthernetAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address as six hex pairs, like 02:00:00:00:00:01")
    }
}

impl std::error::Error for ParseEthernetAddressError {}

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut groups = s.split(sep);
        for byte in bytes.iter_mut() {
            let group = groups.next().ok_or(ParseEthernetAddressError)?;
            if group.len() != 2 || !group.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseEthernetAddressError);
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| ParseEthernetAddressError)?;
        }
        if groups.next().is_some() {
            return Err(ParseEthernetAddressError);
        }
        Ok(EthernetAddress(bytes))
    }
}

enum_with_unknown! {
    /// EtherType values (IEEE 802 "EtherType" registry).
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// An 802.1Q customer tag follows.
        Vlan = 0x8100,
        Ipv6 = 0x86DD,
        /// An 802.1ad service tag (QinQ outer tag) follows.
        QinQ = 0x88A8,
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::QinQ => f.write_str("802.1ad"),
            EtherType::Unknown(n) => write!(f, "0x{n:04x}"),
        }
    }
}

mod field {
    use crate::wire::{Field, Rest};

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

mod vlan_field {
    use crate::wire::{Field, Rest};

    /// PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Length of one 802.1Q tag (TCI and inner EtherType; the TPID is the outer
/// EtherType).
pub const VLAN_TAG_LEN: usize = vlan_field::PAYLOAD.start;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// The buffer holds the 14-byte header. Tags are checked by
    /// [`Frame::inner_ethertype`].
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header plus payload length, for sizing a buffer to emit into.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer EtherType: [`EtherType::Vlan`] on a tagged frame.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(&self.buffer.as_ref()[field::ETHERTYPE]))
    }

    /// The EtherType of the layer-3 payload and the offset where it starts,
    /// looking through at most one 802.1Q tag: `(ethertype, 14)` untagged,
    /// `(inner ethertype, 18)` with one tag.
    ///
    /// `Truncated` if the tag is cut short; `Unsupported` for an S-tag or a
    /// second tag (QinQ), which Sluice does not terminate. On success the
    /// buffer holds at least the returned length.
    pub fn inner_ethertype(&self) -> Result<(EtherType, usize)> {
        match self.ethertype() {
            EtherType::Vlan => {
                let tag = VlanTag::new_checked(&self.buffer.as_ref()[field::PAYLOAD])?;
                match tag.ethertype() {
                    EtherType::Vlan | EtherType::QinQ => Err(Error::Unsupported),
                    inner => Ok((inner, HEADER_LEN + VLAN_TAG_LEN)),
                }
            }
            EtherType::QinQ => Err(Error::Unsupported),
            other => Ok((other, HEADER_LEN)),
        }
    }

    /// The 802.1Q tag, if the frame has one and it is complete.
    pub fn vlan_tag(&self) -> Option<VlanTag<&[u8]>> {
        if self.ethertype() != EtherType::Vlan {
            return None;
        }
        VlanTag::new_checked(&self.buffer.as_ref()[field::PAYLOAD]).ok()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// Everything after the 14-byte header, a VLAN tag included.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The layer-3 EtherType and payload, after at most one VLAN tag; see
    /// [`Frame::inner_ethertype`].
    pub fn inner_payload(&self) -> Result<(EtherType, &'a [u8])> {
        let (ethertype, offset) = self.inner_ethertype()?;
        Ok((ethertype, &self.buffer.as_ref()[offset..]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(
            &mut self.buffer.as_mut()[field::ETHERTYPE],
            ethertype.into(),
        );
    }

    /// Everything after the 14-byte header, a VLAN tag included.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The Tag Control Information of an 802.1Q tag (IEEE 802.1Q §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTci {
    /// Priority Code Point, 0..=7.
    pub pcp: u8,
    /// Drop Eligible Indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4095. 0 means priority-tagged only; 4095 is
    /// reserved (IEEE 802.1Q Table 9-2).
    pub vid: u16,
}

impl VlanTci {
    pub const fn from_bits(tci: u16) -> VlanTci {
        VlanTci {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0FFF,
        }
    }

    /// The 16-bit TCI; out-of-range `pcp` and `vid` bits are dropped.
    pub const fn bits(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0FFF)
    }
}

/// A view over an 802.1Q tag, starting after the TPID (0x8100), i.e. at the
/// outer frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<VlanTag<T>> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn tci(&self) -> VlanTci {
        VlanTci::from_bits(read_u16(&self.buffer.as_ref()[vlan_field::TCI]))
    }

    pub fn pcp(&self) -> u8 {
        self.tci().pcp
    }

    pub fn dei(&self) -> bool {
        self.tci().dei
    }

    pub fn vid(&self) -> u16 {
        self.tci().vid
    }

    /// The EtherType of what follows the tag.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(&self.buffer.as_ref()[vlan_field::ETHERTYPE]))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_tci(&mut self, tci: VlanTci) {
        write_u16(&mut self.buffer.as_mut()[vlan_field::TCI], tci.bits());
    }

    pub fn set_vid(&mut self, vid: u16) {
        let tci = VlanTci { vid, ..self.tci() };
        self.set_tci(tci);
    }

    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = VlanTci { pcp, ..self.tci() };
        self.set_tci(tci);
    }

    pub fn set_dei(&mut self, dei: bool) {
        let tci = VlanTci { dei, ..self.tci() };
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(
            &mut self.buffer.as_mut()[vlan_field::ETHERTYPE],
            ethertype.into(),
        );
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[vlan_field::PAYLOAD]
    }
}

/// An Ethernet header with at most one 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTci>,
    /// The EtherType of the payload: the inner one on a tagged frame.
    pub ethertype: EtherType,
}

impl Repr {
    /// `Unsupported` for QinQ, as [`Frame::inner_ethertype`].
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        let (ethertype, _) = frame.inner_ethertype()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan_tag().map(|tag| tag.tci()),
            ethertype,
        })
    }

    /// 14, or 18 with a VLAN tag.
    pub const fn header_len(&self) -> usize {
        match self.vlan {
            Some(_) => HEADER_LEN + VLAN_TAG_LEN,
            None => HEADER_LEN,
        }
    }

    /// Writes the header (and tag) at the start of the frame; the payload
    /// starts at [`Repr::header_len`].
    ///
    /// # Panics
    /// If the buffer is shorter than `header_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan {
            Some(tci) => {
                frame.set_ethertype(EtherType::Vlan);
                let mut tag = VlanTag::new_unchecked(frame.payload_mut());
                tag.set_tci(tci);
                tag.set_ethertype(self.ethertype);
            }
            None => frame.set_ethertype(self.ethertype),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata;

    #[test]
    fn address_text() {
        let mac: EthernetAddress = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(mac, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(mac.to_string(), "02:00:00:00:00:01");
        assert_eq!(
            "02-00-00-0A-bC-01".parse(),
            Ok(EthernetAddress([2, 0, 0, 0x0a, 0xbc, 1]))
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:1",
            "02:00:00:00:00:001",
            "02:00:00:00:00:+1",
            "02:00:00-00:00:01",
            "g2:00:00:00:00:01",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(ParseEthernetAddressError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn address_classes() {
        let bcast = EthernetAddress::BROADCAST;
        assert!(bcast.is_broadcast() && bcast.is_multicast() && !bcast.is_unicast());
        let mcast = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);
        assert!(!mcast.is_broadcast() && mcast.is_multicast() && !mcast.is_unicast());
        let ucast = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
        assert!(!ucast.is_broadcast() && !ucast.is_multicast() && ucast.is_unicast());
        assert!(ucast.is_local());
        assert!(!EthernetAddress([0x00, 0x1b, 0x21, 1, 2, 3]).is_local());
    }

    #[test]
    fn ethertype_values() {
        for n in [0x0800u16, 0x0806, 0x8100, 0x86dd, 0x88a8, 0x88cc] {
            assert_eq!(u16::from(EtherType::from(n)), n);
        }
        assert_eq!(EtherType::from(0x8100), EtherType::Vlan);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }

    #[test]
    fn untagged_frame() {
        let frame = Frame::new_checked(&testdata::ARP_REQUEST[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), testdata::CLIENT_MAC);
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.inner_ethertype(), Ok((EtherType::Arp, 14)));
        assert!(frame.vlan_tag().is_none());
        assert_eq!(frame.payload().len(), 28);
        assert_eq!(frame.inner_payload().unwrap().1, frame.payload());
    }

    #[test]
    fn tagged_frame() {
        let frame = Frame::new_checked(&testdata::VLAN_TCP_SYN[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Vlan);
        assert_eq!(frame.inner_ethertype(), Ok((EtherType::Ipv4, 18)));
        let tag = frame.vlan_tag().unwrap();
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(tag.ethertype(), EtherType::Ipv4);
        let (ethertype, l3) = frame.inner_payload().unwrap();
        assert_eq!(ethertype, EtherType::Ipv4);
        assert_eq!(l3, &testdata::VLAN_TCP_SYN[18..]);
        assert_eq!(tag.payload(), l3);
    }

    #[test]
    fn qinq_is_unsupported() {
        let frame = Frame::new_checked(&testdata::QINQ_ICMP_ECHO[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::QinQ);
        assert_eq!(frame.inner_ethertype(), Err(Error::Unsupported));

        // Two 802.1Q tags in a row.
        let mut two = testdata::VLAN_TCP_SYN.to_vec();
        two.splice(16..16, [0x81, 0x00, 0x00, 0x07]);
        let frame = Frame::new_checked(&two[..]).unwrap();
        assert_eq!(frame.inner_ethertype(), Err(Error::Unsupported));
        assert_eq!(Repr::parse(&frame), Err(Error::Unsupported));
    }

    #[test]
    fn truncation() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&testdata::ARP_REQUEST[..n]).err(),
                Some(Error::Truncated)
            );
        }
        for n in HEADER_LEN..HEADER_LEN + VLAN_TAG_LEN {
            let frame = Frame::new_checked(&testdata::VLAN_TCP_SYN[..n]).unwrap();
            assert_eq!(frame.inner_ethertype(), Err(Error::Truncated));
            assert!(frame.vlan_tag().is_none());
        }
    }

    #[test]
    fn vlan_tci_bits() {
        let tci = VlanTci {
            pcp: 7,
            dei: true,
            vid: 0xABC,
        };
        assert_eq!(tci.bits(), 0xFABC);
        assert_eq!(VlanTci::from_bits(0xFABC), tci);
        let mut buf = [0u8; 4];
        let mut tag = VlanTag::new_unchecked(&mut buf[..]);
        tag.set_tci(tci);
        tag.set_vid(42);
        tag.set_pcp(1);
        tag.set_dei(false);
        tag.set_ethertype(EtherType::Ipv6);
        assert_eq!(buf, [0x20, 42, 0x86, 0xdd]);
    }

    #[test]
    fn repr_round_trip() {
        for frame in [&testdata::ARP_REQUEST[..], &testdata::VLAN_TCP_SYN[..]] {
            let repr = Repr::parse(&Frame::new_checked(frame).unwrap()).unwrap();
            let mut buf = frame.to_vec();
            buf[..repr.header_len()].fill(0);
            repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
            assert_eq!(buf, frame);
        }
        let repr = Repr::parse(&Frame::new_checked(&testdata::VLAN_TCP_SYN[..]).unwrap()).unwrap();
        assert_eq!(
            repr.vlan,
            Some(VlanTci {
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(repr.ethertype, EtherType::Ipv4);
        assert_eq!(repr.header_len(), 18);
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 20];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        frame.set_dst_addr(EthernetAddress::BROADCAST);
        frame.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
        frame.set_ethertype(EtherType::Ipv6);
        frame.payload_mut()[0] = 0x60;
        assert_eq!(
            &buf[..15],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60]
        );
    }
}
