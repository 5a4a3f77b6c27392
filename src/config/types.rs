//! Typed values that appear in the config file: prefixes, MAC addresses and
//! port devices.
//!
//! Each parses from the string an operator writes (`FromStr`) and
//! deserializes through that parser, so a malformed value is reported by
//! serde with the span of the offending string.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// An IPv4 or IPv6 address together with a prefix length, as in
/// `10.0.0.1/24` or `fd00::/8`.
///
/// The address keeps its host bits: `10.0.0.1/24` is both "the address
/// 10.0.0.1" and "the subnet 10.0.0.0/24", which is how a port's addresses
/// are written. [`Cidr::network`] clears the host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a valid [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/LEN` part, or an address or length that does not parse.
    #[error("invalid prefix {0:?}: expected ADDRESS/LENGTH (such as 10.0.0.1/24 or fd00::1/64)")]
    Syntax(String),
    /// The length exceeds the address width (32 or 128).
    #[error("invalid prefix {text:?}: prefix length {len} is longer than {max}")]
    TooLong {
        /// The text as written.
        text: String,
        /// The length that was given.
        len: u32,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
}

impl Cidr {
    /// `addr/prefix_len`, or `None` when the length exceeds the address width.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        (prefix_len <= max_len(addr)).then_some(Cidr { addr, prefix_len })
    }

    /// The address as written, host bits included.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The same prefix with the host bits cleared (`10.0.0.1/24` →
    /// `10.0.0.0/24`).
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix_len))),
        };
        Cidr {
            addr,
            prefix_len: self.prefix_len,
        }
    }

    /// Whether the host bits are all zero, i.e. `self == self.network()`.
    pub fn is_network(&self) -> bool {
        self.addr == self.network().addr
    }

    /// The IPv4 directed broadcast address of the subnet (all host bits
    /// set); `None` for IPv6, which has no broadcast.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) => Some(Ipv4Addr::from(u32::from(a) | !mask32(self.prefix_len))),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether `ip` lies inside this prefix. An address of the other family
    /// is never inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask32(self.prefix_len);
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask128(self.prefix_len);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }

    /// Whether `ip` is the network address of this subnet, or its IPv4
    /// broadcast address, neither of which may be given to a host.
    ///
    /// Only subnets with room for hosts reserve them: IPv4 /31 point-to-point
    /// links use both addresses (RFC 3021), as do IPv6 /127 links (RFC 6164);
    /// on longer IPv6 prefixes the all-zero host is the Subnet-Router anycast
    /// address (RFC 4291 section 2.6.1).
    pub fn is_reserved_host(&self, ip: IpAddr) -> bool {
        if !self.contains(ip) {
            return false;
        }
        match ip {
            IpAddr::V4(v4) => {
                self.prefix_len < 31 && (ip == self.network().addr || Some(v4) == self.broadcast())
            }
            IpAddr::V6(_) => self.prefix_len < 127 && ip == self.network().addr,
        }
    }
}

/// Whether `ip` is an IPv6 link-local address (fe80::/10, RFC 4291 section 2.5.6).
pub fn is_ipv6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        // Digits only: u32's parser would also take a leading '+'.
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u32 = len.parse().map_err(|_| syntax())?;
        let max = max_len(addr);
        if len > u32::from(max) {
            return Err(CidrError::TooLong {
                text: text.to_string(),
                len,
                max,
            });
        }
        Ok(Cidr {
            addr,
            prefix_len: len as u8,
        })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        d.deserialize_str(Parse::new("a prefix such as \"10.0.0.1/24\""))
    }
}

/// Deserializes a string through `T::from_str`.
///
/// Parsing inside the visitor, rather than after `String::deserialize`
/// returns, matters: toml attaches its span to errors raised while its
/// deserializer runs, so a bad element of an array is reported at the
/// element rather than at the array.
pub(crate) struct Parse<T> {
    expecting: &'static str,
    parsed: std::marker::PhantomData<T>,
}

impl<T> Parse<T> {
    pub(crate) fn new(expecting: &'static str) -> Parse<T> {
        Parse {
            expecting,
            parsed: std::marker::PhantomData,
        }
    }
}

impl<T> de::Visitor<'_> for Parse<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

/// An Ethernet MAC address.
///
/// Deliberately separate from the wire module's address type: this one only
/// carries what the operator wrote. Convert with [`Mac::octets`] or
/// `<[u8; 6]>::from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac([u8; 6]);

/// Why a string is not a valid [`Mac`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six two-digit hex octets separated by colons (such as 02:00:00:00:00:01)")]
pub struct MacError(String);

impl Mac {
    /// The MAC with these octets, in transmission order.
    pub const fn new(octets: [u8; 6]) -> Mac {
        Mac(octets)
    }

    /// The six octets, in transmission order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Unicast: the I/G bit (least significant bit of the first octet) is
    /// clear. Multicast and broadcast addresses cannot name a station.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    /// All zeros, which no station uses.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Mac {
        Mac(octets)
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> [u8; 6] {
        mac.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Mac, MacError> {
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| MacError(text.to_string()))?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacError(text.to_string()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacError(text.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacError(text.to_string()));
        }
        Ok(Mac(octets))
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        d.deserialize_str(Parse::new("a MAC address such as \"02:00:00:00:00:01\""))
    }
}

/// The DPDK device behind a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortDevice {
    /// A physical NIC by PCI address, `DDDD:BB:DD.F`; passed to the EAL as
    /// an allow-list entry (`-a`).
    Pci(String),
    /// A virtual device such as `net_af_packet0,iface=veth0` or
    /// `net_pcap0,rx_pcap=in.pcap`; passed to the EAL as `--vdev`.
    Vdev(String),
}

impl PortDevice {
    /// The name DPDK gives the device once probed, which is how a port id
    /// is found (`rte_eth_dev_get_port_by_name`): the PCI address, or the
    /// vdev's name before the first comma.
    pub fn eal_name(&self) -> &str {
        match self {
            PortDevice::Pci(addr) => addr,
            PortDevice::Vdev(spec) => spec.split(',').next().unwrap_or(spec),
        }
    }

    /// The two EAL arguments that make DPDK probe this device.
    pub fn eal_args(&self) -> [&str; 2] {
        match self {
            PortDevice::Pci(addr) => ["-a", addr],
            PortDevice::Vdev(spec) => ["--vdev", spec],
        }
    }

    /// Why this device string is malformed, if it is. The message names the
    /// expected form.
    pub fn check(&self) -> Result<(), String> {
        match self {
            PortDevice::Pci(addr) => check_pci(addr),
            PortDevice::Vdev(spec) => check_vdev(spec),
        }
    }
}

impl fmt::Display for PortDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortDevice::Pci(addr) => write!(f, "pci {addr}"),
            PortDevice::Vdev(spec) => write!(f, "vdev {spec}"),
        }
    }
}

/// `DDDD:BB:DD.F`: 16-bit domain, 8-bit bus, 5-bit device, 3-bit function,
/// in hex (PCI Local Bus Specification's bus/device/function numbering).
fn check_pci(addr: &str) -> Result<(), String> {
    let bad = || {
        format!("invalid PCI address {addr:?}: expected DOMAIN:BUS:DEVICE.FUNCTION in hex (such as 0000:03:00.0)")
    };
    let b = addr.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    if b.len() != 12 || b[4] != b':' || b[7] != b':' || b[10] != b'.' {
        return Err(bad());
    }
    if !(hex(0..4) && hex(5..7) && hex(8..10)) {
        return Err(bad());
    }
    let device = u8::from_str_radix(&addr[8..10], 16).map_err(|_| bad())?;
    if device > 0x1f {
        return Err(format!(
            "invalid PCI address {addr:?}: device number {device:#04x} is above 0x1f"
        ));
    }
    if !(b'0'..=b'7').contains(&b[11]) {
        return Err(format!(
            "invalid PCI address {addr:?}: function must be 0..7"
        ));
    }
    Ok(())
}

/// `net_DRIVERN[,key=value...]`: only ethdev drivers (`net_` prefix) give a
/// port Sluice can poll.
fn check_vdev(spec: &str) -> Result<(), String> {
    let name = spec.split(',').next().unwrap_or(spec);
    if name.is_empty() {
        return Err(format!(
            "invalid vdev {spec:?}: expected a device name such as net_af_packet0,iface=veth0"
        ));
    }
    if name.len() <= 4 || !name.starts_with("net_") {
        return Err(format!(
            "invalid vdev {spec:?}: device name {name:?} must start with \"net_\" (an ethdev driver, such as net_af_packet0 or net_pcap0)"
        ));
    }
    if let Some(c) = spec.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid vdev {spec:?}: contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_display() {
        for (text, ok) in [
            ("10.0.0.1/24", true),
            ("0.0.0.0/0", true),
            ("fd00::1/64", true),
            ("::/0", true),
            ("10.0.0.1", false),
            ("10.0.0.1/", false),
            ("10.0.0.1/+4", false),
            ("10.0.0.1/33", false),
            ("fd00::1/129", false),
            ("10.0.0/24", false),
            ("abc", false),
        ] {
            let parsed = text.parse::<Cidr>();
            assert_eq!(parsed.is_ok(), ok, "{text}: {parsed:?}");
            if let Ok(c) = parsed {
                assert_eq!(c.to_string(), text);
            }
        }
        let err = "10.0.0.1/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(err.contains("prefix length 33 is longer than 32"), "{err}");
    }

    #[test]
    fn cidr_network_and_contains() {
        let c = cidr("10.0.0.77/24");
        assert_eq!(c.network(), cidr("10.0.0.0/24"));
        assert!(!c.is_network());
        assert!(c.network().is_network());
        assert!(c.contains(ip("10.0.0.254")));
        assert!(!c.contains(ip("10.0.1.1")));
        assert!(!c.contains(ip("fd00::1")));
        assert_eq!(c.broadcast(), Some("10.0.0.255".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(cidr("10.0.0.1/32").contains(ip("10.0.0.1")));
        assert!(!cidr("10.0.0.1/32").contains(ip("10.0.0.2")));
        let c6 = cidr("fd00:99::1/64");
        assert_eq!(c6.network(), cidr("fd00:99::/64"));
        assert!(c6.contains(ip("fd00:99::fe")));
        assert!(!c6.contains(ip("fd00:98::fe")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert_eq!(c6.broadcast(), None);
    }

    #[test]
    fn reserved_hosts() {
        let c = cidr("10.0.0.1/24");
        assert!(c.is_reserved_host(ip("10.0.0.0")));
        assert!(c.is_reserved_host(ip("10.0.0.255")));
        assert!(!c.is_reserved_host(ip("10.0.0.1")));
        assert!(!cidr("10.0.0.0/31").is_reserved_host(ip("10.0.0.0")));
        assert!(!cidr("10.0.0.0/31").is_reserved_host(ip("10.0.0.1")));
        assert!(cidr("fd00::1/64").is_reserved_host(ip("fd00::")));
        assert!(!cidr("fd00::1/127").is_reserved_host(ip("fd00::")));
    }

    #[test]
    fn link_local() {
        assert!(is_ipv6_link_local(ip("fe80::1")));
        assert!(is_ipv6_link_local(ip("febf::1")));
        assert!(!is_ipv6_link_local(ip("fec0::1")));
        assert!(!is_ipv6_link_local(ip("169.254.0.1")));
    }

    #[test]
    fn mac_parse_and_display() {
        let m: Mac = "02:00:00:00:00:FE".parse().unwrap();
        assert_eq!(m.octets(), [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(m.to_string(), "02:00:00:00:00:fe");
        assert!(m.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<Mac>().unwrap().is_unicast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:1",
            "02-00-00-00-00-01",
            "0g:00:00:00:00:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert_eq!(<[u8; 6]>::from(m), m.octets());
    }

    #[test]
    fn devices() {
        let pci = PortDevice::Pci("0000:03:00.0".into());
        assert_eq!(pci.check(), Ok(()));
        assert_eq!(pci.eal_args(), ["-a", "0000:03:00.0"]);
        assert_eq!(pci.eal_name(), "0000:03:00.0");
        for bad in [
            "03:00.0",
            "0000:03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "000g:03:00.0",
            "0000-03:00.0",
        ] {
            assert!(PortDevice::Pci(bad.into()).check().is_err(), "{bad}");
        }
        let vdev = PortDevice::Vdev("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap".into());
        assert_eq!(vdev.check(), Ok(()));
        assert_eq!(vdev.eal_name(), "net_pcap0");
        assert_eq!(vdev.eal_args()[0], "--vdev");
        for bad in [
            "",
            ",iface=x",
            "net_",
            "eth_pcap0",
            "crypto_aesni0",
            "net_pcap0,rx_pcap=a b",
        ] {
            assert!(PortDevice::Vdev(bad.into()).check().is_err(), "{bad}");
        }
    }
}
