//! Zero-copy typed views over packet headers, and the Internet checksum.
//!
//! One module per header, in the manner of smoltcp's `wire`:
//!
//! - a view (`Packet<T>`, or [`EthernetFrame`] for Ethernet) over any
//!   `T: AsRef<[u8]>`, reading and (when `T: AsMut<[u8]>`) writing fields in
//!   place, without copying or allocating;
//! - a `Repr` that describes a header as plain values, with `parse` (from a
//!   view) and `emit` (into a view);
//! - protocol numbers as enums with an `Unknown(..)` arm;
//! - byte offsets in a private `mod field`.
//!
//! # Contract
//!
//! - `new_unchecked(buffer)` wraps a buffer without looking at it. Use it only
//!   on bytes you are about to fill in, typically through `Repr::emit`.
//! - `new_checked(buffer)` is `new_unchecked` followed by `check_len()`.
//!   **After `new_checked` or `check_len` succeeds, no getter panics**, whatever
//!   the bytes are: every range a getter indexes has been checked against the
//!   buffer. Bytes that came off the wire go through `new_checked`.
//! - Setters, `*_mut` accessors and `Repr::emit` are for buffers you built;
//!   they panic if the buffer is shorter than the field they write
//!   (`Repr::buffer_len` tells how long a buffer `emit` needs). On a view that
//!   passed `check_len` the setters of fixed fields do not panic either.
//! - `check_len` validates one header, not the protocol above it. Where a
//!   header carries its own length (IPv4 total length, IPv6 payload length,
//!   UDP length), `payload()` stops there, so Ethernet padding never reaches
//!   the next layer. TCP and ICMP have no length field: give their views the
//!   IP `payload()`, which is exactly the segment or message.
//! - Views never verify checksums on their own: call `verify_checksum*`
//!   unless the NIC has already done so (DPDK `RTE_MBUF_F_RX_*_CKSUM_GOOD`).
//!
//! Errors are a small `Copy` enum, [`Error`], meant to become a drop verdict
//! and a counter on the data path, never a string.

use core::fmt;
use core::ops::{Range, RangeFrom};

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;

pub use self::arp::{Operation as ArpOperation, Packet as ArpPacket, Repr as ArpRepr};
pub use self::ethernet::{
    EtherType, EthernetAddress, Frame as EthernetFrame, Repr as EthernetRepr, VlanTag, VlanTci,
};
pub use self::icmpv4::{Message as Icmpv4Message, Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use self::icmpv6::{
    Message as Icmpv6Message, NdiscRepr, NdpOption, NdpOptions, NeighborFlags,
    Packet as Icmpv6Packet, Repr as Icmpv6Repr,
};
pub use self::ip::IpProtocol;
pub use self::ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use self::ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use self::tcp::{Flags as TcpFlags, Packet as TcpPacket};
pub use self::udp::Packet as UdpPacket;

/// Why a buffer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field in the
    /// header says it is.
    Truncated,
    /// A field holds a value the protocol forbids: wrong version, IPv4 IHL
    /// below 5, TCP data offset below 5, NDP option of length 0, ...
    Malformed,
    /// Well formed, but outside what Sluice handles: ARP for anything but
    /// Ethernet/IPv4, stacked VLAN tags, an IPv4 fragment given to a `Repr`,
    /// an ICMP message that has no `Repr`.
    Unsupported,
}

impl Error {
    /// A stable lowercase name, fit for a counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// A byte range of a header, as used in each module's `mod field`.
pub(crate) type Field = Range<usize>;
/// The bytes from an offset to the end of the buffer.
pub(crate) type Rest = RangeFrom<usize>;

// Readers take the exact field slice (`&data[field::X]`), so the only
// indexing that can fail is the caller's slicing, which `check_len` covers.

#[inline]
pub(crate) fn read_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
pub(crate) fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
pub(crate) fn write_u16(b: &mut [u8], v: u16) {
    b[..2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn write_u32(b: &mut [u8], v: u32) {
    b[..4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn read_ipv4(b: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[inline]
pub(crate) fn read_ipv6(b: &[u8]) -> std::net::Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    std::net::Ipv6Addr::from(octets)
}

/// An enum over a protocol number whose values outside the listed ones are
/// kept in `Unknown`. Build values with `From<$ty>` so that a listed number
/// never ends up in `Unknown`.
macro_rules! enum_with_unknown {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this enum does not name.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;

/// A bit set over one header byte, in the style of the `bitflags` crate but
/// without the dependency. Unnamed bits are kept as they were on the wire.
macro_rules! flags_u8 {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$fattr:meta])* const $flag:ident = $value:expr; )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u8);

        impl $name {
            $( $(#[$fattr])* pub const $flag: $name = $name($value); )+

            pub const fn empty() -> Self {
                $name(0)
            }
            /// Every bit of `bits`, named or not.
            pub const fn from_bits(bits: u8) -> Self {
                $name(bits)
            }
            pub const fn bits(self) -> u8 {
                self.0
            }
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// True if every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// True if any bit of `other` is set in `self`.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
            pub fn insert(&mut self, other: Self) {
                self.0 |= other.0;
            }
            pub fn remove(&mut self, other: Self) {
                self.0 &= !other.0;
            }
            pub fn set(&mut self, other: Self, value: bool) {
                if value {
                    self.insert(other)
                } else {
                    self.remove(other)
                }
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                $name(self.0 | rhs.0)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                self.0 |= rhs.0;
            }
        }

        impl core::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, rhs: Self) -> Self {
                $name(self.0 & rhs.0)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                let mut rest = self.0;
                let mut first = true;
                $(
                    if self.0 & $value != 0 {
                        if !first {
                            f.write_str(" | ")?;
                        }
                        f.write_str(stringify!($flag))?;
                        first = false;
                        rest &= !$value;
                    }
                )+
                if rest != 0 {
                    if !first {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{:#04x}", rest)?;
                }
                f.write_str(")")
            }
        }
    };
}
pub(crate) use flags_u8;
