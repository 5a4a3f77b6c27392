//! ICMP for IPv4 (RFC 792).
//!
//! Every message has the 8-byte header this view reads: type, code,
//! checksum, and four message-specific bytes (ident and sequence number for
//! echo, the next-hop MTU of RFC 1191 §4 for "fragmentation needed", unused
//! otherwise). `check_len` guarantees those 8 bytes. ICMP has no length
//! field: the message is the whole buffer, so build the view over the IPv4
//! `payload()`. The checksum covers the whole message, with no
//! pseudo-header.

use super::checksum;
use super::{enum_with_unknown, read_u16, write_u16, Error, Result};

enum_with_unknown! {
    /// ICMP message type (RFC 792; IANA "ICMP Type Numbers").
    pub enum Message(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        EchoRequest = 8,
        TimeExceeded = 11,
        ParamProblem = 12,
    }
}

impl Message {
    /// Error messages quote the datagram that caused them (RFC 792; at
    /// least its IP header and 8 bytes, more per RFC 1812 §4.3.2.3).
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable | Message::TimeExceeded | Message::ParamProblem
        )
    }
}

/// Destination Unreachable code 4: fragmentation needed and DF set
/// (RFC 792), with the next-hop MTU of RFC 1191 §4.
pub const CODE_FRAG_NEEDED: u8 = 4;

mod field {
    use crate::wire::{Field, Rest};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// Next-hop MTU of "fragmentation needed" (RFC 1191 §4).
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const DATA: Rest = 8..;
}

pub const HEADER_LEN: usize = field::DATA.start;

/// A view over an ICMP message.
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

    /// The buffer holds the 8-byte header.
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

    /// The next-hop MTU of a "fragmentation needed" message; 0 from
    /// routers older than RFC 1191. Meaningful only for that message.
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::NEXT_HOP_MTU])
    }

    /// The checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the 8-byte header: echo data, or the quoted datagram
    /// of an error.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// For error messages ([`Message::is_error`]), the quoted original
    /// datagram: its IPv4 header and at least 8 bytes of what followed, as
    /// far as the sender included them. It may be cut anywhere, so parse it
    /// with `new_checked` and expect `Truncated` for its payload.
    pub fn embedded_datagram(&self) -> Option<&'a [u8]> {
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

    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        write_u16(&mut self.buffer.as_mut()[field::NEXT_HOP_MTU], mtu);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(csum);
    }

    /// Sets type and code and updates the checksum in place (RFC 1624):
    /// turning an echo request into its reply costs no pass over the data.
    pub fn rewrite_msg_type(&mut self, msg: Message, code: u8) {
        let data = self.buffer.as_ref();
        let old = read_u16(&data[field::TYPE..field::CODE + 1]);
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

/// The ICMP messages Sluice originates: echo, for answering pings to a VIP.
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
}

impl<'a> Repr<'a> {
    /// `Truncated` below 8 bytes, `Malformed` for an echo whose code is not
    /// 0 (RFC 792), `Unsupported` for any other type. The checksum is not
    /// verified (see [`Packet::verify_checksum`]).
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
        }
    }

    /// Writes the message and fills the checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly [`Repr::buffer_len`] bytes long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
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
        };
        packet.set_msg_type(msg);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        packet.set_echo_seq_no(seq_no);
        packet.data_mut().copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4, tcp, testdata, IpProtocol};

    fn request() -> &'static [u8] {
        &testdata::ICMP_ECHO_REQUEST[34..]
    }

    fn reply() -> &'static [u8] {
        &testdata::ICMP_ECHO_REPLY[34..]
    }

    #[test]
    fn parse_echo_request() {
        let p = Packet::new_checked(request()).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x917d);
        assert!(p.verify_checksum());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1c46, 1));
        assert_eq!(p.data(), b"sluice-ping!");
        assert_eq!(p.embedded_datagram(), None);
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr::EchoRequest {
                ident: 0x1c46,
                seq_no: 1,
                data: b"sluice-ping!"
            })
        );
    }

    #[test]
    fn round_trip() {
        for bytes in [request(), reply()] {
            let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
            let mut buf = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn request_to_reply_in_place() {
        let mut bytes = request().to_vec();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.rewrite_msg_type(Message::EchoReply, 0);
        assert!(p.verify_checksum());
        assert_eq!(&bytes[..], reply());
    }

    #[test]
    fn frag_needed_quotes_the_datagram() {
        let p = Packet::new_checked(&testdata::ICMP_FRAG_NEEDED[34..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.msg_type(), Message::DstUnreachable);
        assert!(p.msg_type().is_error());
        assert_eq!(p.msg_code(), CODE_FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(Repr::parse(&p), Err(Error::Unsupported));

        // The quoted header says 40 bytes but only 28 were quoted: the view
        // refuses it as a whole, and the header fields are still readable
        // through an unchecked view over the 20 bytes that are there.
        let quoted = p.embedded_datagram().unwrap();
        assert_eq!(quoted.len(), 28);
        assert_eq!(
            ipv4::Packet::new_checked(quoted).err(),
            Some(Error::Truncated)
        );
        let inner = ipv4::Packet::new_unchecked(&quoted[..20]);
        assert_eq!(inner.protocol(), IpProtocol::Tcp);
        assert_eq!(inner.src_addr(), testdata::VIP4);
        assert_eq!(inner.dst_addr(), testdata::CLIENT4);
        assert!(inner.verify_checksum());
        // The first 8 bytes of TCP: ports and sequence number.
        let ports = &quoted[20..];
        assert_eq!(
            tcp::Packet::new_checked(ports).err(),
            Some(Error::Truncated)
        );
        assert_eq!(&ports[..4], &[0x00, 0x50, 0xc0, 0x00]);
    }

    #[test]
    fn every_truncation_is_refused() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&request()[..n]).err(),
                Some(Error::Truncated)
            );
        }
        // A header with no data is a complete (empty) echo.
        assert!(Packet::new_checked(&request()[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn nonzero_echo_code_is_malformed() {
        let mut bytes = request().to_vec();
        bytes[1] = 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn damaged_checksum_is_detected() {
        let mut bytes = request().to_vec();
        bytes[10] ^= 0x01;
        assert!(!Packet::new_checked(&bytes[..]).unwrap().verify_checksum());
    }

    #[test]
    fn message_values() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(Message::from(n)), n);
        }
        assert!(!Message::EchoRequest.is_error());
        assert!(Message::TimeExceeded.is_error());
        assert!(Message::ParamProblem.is_error());
    }
}
