//! What IPv4 and IPv6 share: the protocol / next-header numbers.

use core::fmt;

use super::enum_with_unknown;

enum_with_unknown! {
    /// IPv4 protocol / IPv6 next header numbers (IANA "Assigned Internet
    /// Protocol Numbers").
    pub enum IpProtocol(u8) {
        HopByHop = 0,
        Icmp = 1,
        IpIp = 4,
        Tcp = 6,
        Udp = 17,
        Ipv6Route = 43,
        Ipv6Frag = 44,
        Gre = 47,
        Icmpv6 = 58,
        Ipv6NoNxt = 59,
        Ipv6Opts = 60,
    }
}

impl IpProtocol {
    /// True for the IPv6 extension headers this enum names (RFC 8200 §4),
    /// which sit between the fixed header and the upper-layer header.
    pub const fn is_ipv6_extension(self) -> bool {
        matches!(
            self,
            IpProtocol::HopByHop
                | IpProtocol::Ipv6Route
                | IpProtocol::Ipv6Frag
                | IpProtocol::Ipv6Opts
        )
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::HopByHop => f.write_str("Hop-by-Hop"),
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::IpIp => f.write_str("IPIP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Ipv6Route => f.write_str("IPv6-Route"),
            IpProtocol::Ipv6Frag => f.write_str("IPv6-Frag"),
            IpProtocol::Gre => f.write_str("GRE"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            IpProtocol::Ipv6NoNxt => f.write_str("IPv6-NoNxt"),
            IpProtocol::Ipv6Opts => f.write_str("IPv6-Opts"),
            IpProtocol::Unknown(n) => write!(f, "protocol {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_value() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(200), IpProtocol::Unknown(200));
        assert!(IpProtocol::Ipv6Frag.is_ipv6_extension());
        assert!(!IpProtocol::Tcp.is_ipv6_extension());
        assert_eq!(IpProtocol::Unknown(200).to_string(), "protocol 200");
    }
}
