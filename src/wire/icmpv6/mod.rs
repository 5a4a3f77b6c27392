//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages Sluice answers
//! (RFC 4861 §4.3, §4.4).
//!
//! `check_len` guarantees the 8-byte header every message has, and the
//! fixed part of the Neighbor Discovery messages by type: 24 bytes for NS and
//! NA, 16 for RA, 40 for Redirect. Accessors that only exist for some types
//! return `Option` and are `None` for the others, so no getter panics after
//! `check_len` whatever the type byte says.
//!
//! ICMPv6 has no length field: the message is the whole buffer, so build
//! the view over the IPv6 payload (after any extension headers). The
//! checksum covers the IPv6 pseudo-header (RFC 4443 §2.3) and is mandatory.

use core::fmt;
use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::EthernetAddress;
use super::ip::IpProtocol;
use super::ipv6;
use super::{enum_with_unknown, flags_u8, read_ipv6, read_u16, read_u32, write_u16, write_u32};
use super::{Error, Result};

enum_with_unknown! {
    /// ICMPv6 message type (RFC 4443 §2.1, RFC 4861 §4).
    pub enum Message(u8) {
        DstUnreachable = 1,
        PacketTooBig = 2,
        TimeExceeded = 3,
        ParamProblem = 4,
        EchoRequest = 128,
        EchoReply = 129,
        RouterSolicit = 133,
        RouterAdvert = 134,
        NeighborSolicit = 135,
        NeighborAdvert = 136,
        Redirect = 137,
    }
}

impl Message {
    /// Error messages (types 0..=127, RFC 4443 §2.1) quote as much of the
    /// offending packet as fits the minimum MTU (RFC 4443 §3.1).
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable
                | Message::PacketTooBig
                | Message::TimeExceeded
                | Message::ParamProblem
        )
    }

    /// Neighbor Discovery messages, which carry NDP options (RFC 4861 §4).
    pub const fn is_ndisc(self) -> bool {
        matches!(
            self,
            Message::RouterSolicit
                | Message::RouterAdvert
                | Message::NeighborSolicit
                | Message::NeighborAdvert
                | Message::Redirect
        )
    }

    /// Bytes before the NDP options, which `check_len` requires.
    const fn fixed_len(self) -> usize {
        match self {
            Message::RouterAdvert => 16,
            Message::NeighborSolicit | Message::NeighborAdvert => 24,
            Message::Redirect => 40,
            _ => HEADER_LEN,
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::DstUnreachable => f.write_str("destination unreachable"),
            Message::PacketTooBig => f.write_str("packet too big"),
            Message::TimeExceeded => f.write_str("time exceeded"),
            Message::ParamProblem => f.write_str("parameter problem"),
            Message::EchoRequest => f.write_str("echo request"),
            Message::EchoReply => f.write_str("echo reply"),
            Message::RouterSolicit => f.write_str("router solicitation"),
            Message::RouterAdvert => f.write_str("router advertisement"),
            Message::NeighborSolicit => f.write_str("neighbor solicitation"),
            Message::NeighborAdvert => f.write_str("neighbor advertisement"),
            Message::Redirect => f.write_str("redirect"),
            Message::Unknown(n) => write!(f, "type {n}"),
        }
    }
}

mod field {
    use crate::wire::{Field, Rest};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// Packet Too Big (RFC 4443 §3.2).
    pub const MTU: Field = 4..8;
    /// NA flags (R, S, O) and reserved bits (RFC 4861 §4.4).
    pub const NA_FLAGS: usize = 4;
    /// NA/NS reserved word (RFC 4861 §4.3, §4.4).
    pub const RESERVED: Field = 4..8;
    pub const DATA: Rest = 8..;
    /// NS, NA and Redirect target address.
    pub const TARGET: Field = 8..24;
}

/// The header every ICMPv6 message has.
pub const HEADER_LEN: usize = field::DATA.start;

/// Length of NS/NA without options.
pub const NEIGHBOR_LEN: usize = field::TARGET.end;

flags_u8! {
    /// The flags of a Neighbor Advertisement (RFC 4861 §4.4).
    pub struct NeighborFlags {
        /// The sender is a router.
        const ROUTER = 0x80;
        /// Sent in response to a Neighbor Solicitation.
        const SOLICITED = 0x40;
        /// Override an existing cache entry.
        const OVERRIDE = 0x20;
    }
}

/// A view over an ICMPv6 message.
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

    /// The buffer holds the 8-byte header and, for RA, NS, NA and Redirect,
    /// the fixed part before the options (RFC 4861 §6.1.2, §7.1.1 and §8.1
    /// discard shorter ones).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.msg_type().fixed_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Meaningful for echo request and reply.
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// Meaningful for echo request and reply.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    /// The MTU of a Packet Too Big message (RFC 4443 §3.2); meaningful only
    /// for that message.
    pub fn mtu(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::MTU])
    }

    /// The target address of NS, NA and Redirect; `None` for other types.
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        match self.msg_type() {
            Message::NeighborSolicit | Message::NeighborAdvert | Message::Redirect => {
                Some(read_ipv6(&self.buffer.as_ref()[field::TARGET]))
            }
            _ => None,
        }
    }

    /// The R, S and O flags of an NA; `None` for other types.
    pub fn neighbor_flags(&self) -> Option<NeighborFlags> {
        match self.msg_type() {
            Message::NeighborAdvert => {
                let bits = self.buffer.as_ref()[field::NA_FLAGS] & 0xE0;
                Some(NeighborFlags::from_bits(bits))
            }
            _ => None,
        }
    }

    /// The NDP options of a Neighbor Discovery message; `None` for other
    /// types.
    pub fn ndp_options(&self) -> Option<NdpOptions<'_>> {
        let msg = self.msg_type();
        if msg.is_ndisc() {
            Some(NdpOptions::new(&self.buffer.as_ref()[msg.fixed_len()..]))
        } else {
            None
        }
    }

    /// The checksum over the IPv6 pseudo-header and the whole buffer
    /// (RFC 4443 §2.3) is correct.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum::fold(self.sum(src, dst)) == 0xFFFF
    }

    fn sum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, len) + checksum::sum(data)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the 8-byte header: echo data, the quoted packet of an
    /// error, or the body of a Neighbor Discovery message.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// For error messages ([`Message::is_error`]), the quoted packet: as
    /// much of it as fit in 1280 bytes, cut anywhere, so parse it with
    /// `new_checked` and expect `Truncated` beyond its first headers.
    pub fn embedded_packet(&self) -> Option<&'a [u8]> {
        if self.msg_type().is_error() {
            Some(self.data())
        } else {
            None
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, msg: Message) {
        self.buffer.as_mut()[field::TYPE] = msg.into();
    }

    pub fn set_msg_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    pub fn set_echo_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_IDENT], ident);
    }

    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_SEQNO], seq_no);
    }

    pub fn set_mtu(&mut self, mtu: u32) {
        write_u32(&mut self.buffer.as_mut()[field::MTU], mtu);
    }

    /// Writes the NS/NA/Redirect target.
    ///
    /// # Panics
    /// If the buffer is shorter than 24 bytes.
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&addr.octets());
    }

    /// Writes the NA flags and clears the rest of the reserved word.
    pub fn set_neighbor_flags(&mut self, flags: NeighborFlags) {
        write_u32(&mut self.buffer.as_mut()[field::RESERVED], 0);
        self.buffer.as_mut()[field::NA_FLAGS] = flags.bits() & 0xE0;
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the IPv6 pseudo-header and the whole
    /// buffer, and stores it.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let csum = !checksum::fold(self.sum(src, dst));
        self.set_checksum(csum);
    }

    /// Sets type and code and updates the checksum in place (RFC 1624).
    /// Swapping source and destination for a reply leaves the pseudo-header
    /// sum unchanged, so an echo request becomes its reply with this alone.
    pub fn rewrite_msg_type(&mut self, msg: Message, code: u8) {
        let data = self.buffer.as_ref();
        let old = u16::from(data[field::TYPE]) << 8 | u16::from(data[field::CODE]);
        let new = u16::from(u8::from(msg)) << 8 | u16::from(code);
        let csum = checksum::update16(self.checksum(), old, new);
        self.set_msg_type(msg);
        self.set_msg_code(code);
        self.set_checksum(csum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// NDP option types (RFC 4861 §4.6).
pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;

/// Length of a link-layer address option for Ethernet: one 8-byte unit
/// (RFC 4861 §4.6.1, RFC 2464 §6).
pub const LLADDR_OPTION_LEN: usize = 8;

/// One NDP option (RFC 4861 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpOption<'a> {
    SourceLinkLayerAddr(EthernetAddress),
    TargetLinkLayerAddr(EthernetAddress),
    /// Any other option (prefix information, MTU, ...): its type, and its
    /// bytes after the type and length.
    Other {
        kind: u8,
        data: &'a [u8],
    },
}

impl NdpOption<'_> {
    /// Bytes this option takes on the wire, padded to 8 (RFC 4861 §4.6).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkLayerAddr(_) | NdpOption::TargetLinkLayerAddr(_) => {
                LLADDR_OPTION_LEN
            }
            NdpOption::Other { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option at the start of `buf`, zero padding to a multiple
    /// of 8 bytes.
    ///
    /// # Panics
    /// If `buf` is shorter than [`NdpOption::buffer_len`], or in debug builds
    /// if the padded length exceeds the 2040 bytes the length byte can say.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        debug_assert!(len / 8 <= usize::from(u8::MAX));
        let buf = &mut buf[..len];
        buf.fill(0);
        buf[1] = (len / 8) as u8;
        match self {
            NdpOption::SourceLinkLayerAddr(addr) => {
                buf[0] = OPT_SOURCE_LLADDR;
                buf[2..8].copy_from_slice(addr.as_bytes());
            }
            NdpOption::TargetLinkLayerAddr(addr) => {
                buf[0] = OPT_TARGET_LLADDR;
                buf[2..8].copy_from_slice(addr.as_bytes());
            }
            NdpOption::Other { kind, data } => {
                buf[0] = *kind;
                buf[2..2 + data.len()].copy_from_slice(data);
            }
        }
    }
}

/// An iterator over NDP options. Yields `Err` once and then stops on an
/// option of length 0 (`Malformed`, RFC 4861 §4.6: such a packet is
/// discarded), an option running past the end (`Truncated`), or a
/// link-layer address option longer than Ethernet's one unit (`Malformed`).
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// Iterates over the options in `data`, which starts at the first
    /// option.
    pub const fn new(data: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: data }
    }

    fn next_option(&mut self) -> Result<NdpOption<'a>> {
        let rest = self.rest;
        let (kind, units) = match rest {
            [kind, units, ..] => (*kind, *units),
            _ => return Err(Error::Truncated),
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Err(Error::Malformed);
        }
        let Some(opt) = rest.get(..len) else {
            return Err(Error::Truncated);
        };
        self.rest = &rest[len..];
        match kind {
            OPT_SOURCE_LLADDR | OPT_TARGET_LLADDR if len != LLADDR_OPTION_LEN => {
                Err(Error::Malformed)
            }
            OPT_SOURCE_LLADDR => Ok(NdpOption::SourceLinkLayerAddr(EthernetAddress::from_bytes(
                &opt[2..8],
            ))),
            OPT_TARGET_LLADDR => Ok(NdpOption::TargetLinkLayerAddr(EthernetAddress::from_bytes(
                &opt[2..8],
            ))),
            _ => Ok(NdpOption::Other {
                kind,
                data: &opt[2..],
            }),
        }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_option();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl core::iter::FusedIterator for NdpOptions<'_> {}

/// A Neighbor Solicitation or Advertisement (RFC 4861 §4.3, §4.4) with the
/// one option Sluice uses from each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdiscRepr {
    NeighborSolicit {
        target_addr: Ipv6Addr,
        /// Absent in Duplicate Address Detection probes (source ::).
        source_lladdr: Option<EthernetAddress>,
    },
    NeighborAdvert {
        flags: NeighborFlags,
        target_addr: Ipv6Addr,
        target_lladdr: Option<EthernetAddress>,
    },
}

impl NdiscRepr {
    /// Parses an NS or NA, with the checks of RFC 4861 §7.1.1 and §7.1.2 that
    /// need only the ICMPv6 message: length (`Truncated`), code 0, target
    /// not multicast, every option well formed (`Malformed`). Other types
    /// are `Unsupported`. Unknown options are skipped (§4.6); of repeated
    /// link-layer options the first counts.
    ///
    /// The checksum is not verified here, and the checks that need the IPv6
    /// header are [`NdiscRepr::check_ip`]'s.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<NdiscRepr> {
        packet.check_len()?;
        let msg = packet.msg_type();
        if !matches!(msg, Message::NeighborSolicit | Message::NeighborAdvert) {
            return Err(Error::Unsupported);
        }
        if packet.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        let target_addr = packet.target_addr().ok_or(Error::Unsupported)?;
        if target_addr.is_multicast() {
            return Err(Error::Malformed);
        }
        let mut source_lladdr = None;
        let mut target_lladdr = None;
        for opt in packet.ndp_options().ok_or(Error::Unsupported)? {
            match opt? {
                NdpOption::SourceLinkLayerAddr(addr) => {
                    source_lladdr = source_lladdr.or(Some(addr));
                }
                NdpOption::TargetLinkLayerAddr(addr) => {
                    target_lladdr = target_lladdr.or(Some(addr));
                }
                NdpOption::Other { .. } => {}
            }
        }
        match packet.neighbor_flags() {
            None => Ok(NdiscRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            }),
            Some(flags) => Ok(NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                target_lladdr,
            }),
        }
    }

    /// The checks of RFC 4861 §7.1.1 and §7.1.2 on the IPv6 header: hop
    /// limit 255 (the message was not forwarded); an NS from the unspecified
    /// address (DAD) goes to a solicited-node group and has no source
    /// link-layer option; a solicited NA is not sent to a multicast group.
    /// `Malformed` if one fails.
    pub fn check_ip(&self, src_addr: &Ipv6Addr, dst_addr: &Ipv6Addr, hop_limit: u8) -> Result<()> {
        if hop_limit != 255 {
            return Err(Error::Malformed);
        }
        let ok = match self {
            NdiscRepr::NeighborSolicit { source_lladdr, .. } => {
                !src_addr.is_unspecified()
                    || (ipv6::is_solicited_node_multicast(dst_addr) && source_lladdr.is_none())
            }
            NdiscRepr::NeighborAdvert { flags, .. } => {
                !(flags.contains(NeighborFlags::SOLICITED) && dst_addr.is_multicast())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    }

    /// The advertisement answering a solicitation from `ns_src_addr` for
    /// `target_addr`, an address this node owns at `our_lladdr`, and the
    /// IPv6 destination to send it to (RFC 4861 §7.2.4): the solicitor, or
    /// all nodes if it was a DAD probe from ::, in which case S is clear.
    /// O is set: the address is ours, not proxied or anycast.
    ///
    /// Send it from `target_addr` with hop limit 255.
    pub fn answer_solicit(
        ns_src_addr: &Ipv6Addr,
        target_addr: Ipv6Addr,
        our_lladdr: EthernetAddress,
    ) -> (NdiscRepr, Ipv6Addr) {
        let (flags, dst) = if ns_src_addr.is_unspecified() {
            (NeighborFlags::OVERRIDE, ipv6::LINK_LOCAL_ALL_NODES)
        } else {
            (
                NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
                *ns_src_addr,
            )
        };
        let repr = NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            target_lladdr: Some(our_lladdr),
        };
        (repr, dst)
    }

    pub fn buffer_len(&self) -> usize {
        let lladdr = match self {
            NdiscRepr::NeighborSolicit { source_lladdr, .. } => source_lladdr,
            NdiscRepr::NeighborAdvert { target_lladdr, .. } => target_lladdr,
        };
        NEIGHBOR_LEN + lladdr.map_or(0, |_| LLADDR_OPTION_LEN)
    }

    /// Writes the message and fills the checksum for the given IPv6 source
    /// and destination.
    ///
    /// # Panics
    /// If the buffer is not exactly [`NdiscRepr::buffer_len`] bytes long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src_addr: &Ipv6Addr,
        dst_addr: &Ipv6Addr,
        packet: &mut Packet<T>,
    ) {
        let (msg, flags, target_addr, option) = match *self {
            NdiscRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => (
                Message::NeighborSolicit,
                NeighborFlags::empty(),
                target_addr,
                source_lladdr.map(NdpOption::SourceLinkLayerAddr),
            ),
            NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                target_lladdr,
            } => (
                Message::NeighborAdvert,
                flags,
                target_addr,
                target_lladdr.map(NdpOption::TargetLinkLayerAddr),
            ),
        };
        assert_eq!(packet.buffer.as_ref().len(), self.buffer_len());
        packet.set_msg_type(msg);
        packet.set_msg_code(0);
        packet.set_neighbor_flags(flags);
        packet.set_target_addr(target_addr);
        if let Some(option) = option {
            option.emit(&mut packet.buffer.as_mut()[NEIGHBOR_LEN..]);
        }
        packet.fill_checksum(src_addr, dst_addr);
    }
}

/// The ICMPv6 messages Sluice parses and originates: echo, for pings to a
/// VIP, and neighbor solicitation/advertisement, for owning VIPs on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    Ndisc(NdiscRepr),
}

impl<'a> Repr<'a> {
    /// `Truncated` as [`Packet::check_len`]; `Malformed` for an echo whose
    /// code is not 0 (RFC 4443 §4.1) and as [`NdiscRepr::parse`];
    /// `Unsupported` for the other types. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        let (ident, seq_no, data) = (packet.echo_ident(), packet.echo_seq_no(), packet.data());
        let repr = match packet.msg_type() {
            Message::EchoRequest => Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            Message::EchoReply => Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            Message::NeighborSolicit | Message::NeighborAdvert => {
                return NdiscRepr::parse(packet).map(Repr::Ndisc)
            }
            _ => return Err(Error::Unsupported),
        };
        if packet.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        Ok(repr)
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Repr::Ndisc(ndisc) => ndisc.buffer_len(),
        }
    }

    /// Writes the message and fills the checksum for the given IPv6 source
    /// and destination.
    ///
    /// # Panics
    /// If the buffer is not exactly [`Repr::buffer_len`] bytes long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src_addr: &Ipv6Addr,
        dst_addr: &Ipv6Addr,
        packet: &mut Packet<T>,
    ) {
        let (msg, ident, seq_no, data) = match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (Message::EchoRequest, ident, seq_no, data),
            Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (Message::EchoReply, ident, seq_no, data),
            Repr::Ndisc(ndisc) => return ndisc.emit(src_addr, dst_addr, packet),
        };
        packet.set_msg_type(msg);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        packet.set_echo_seq_no(seq_no);
        packet.data_mut().copy_from_slice(data);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
mod tests;
