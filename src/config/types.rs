//! Typed values that appear in the config file: prefixes, MAC addresses and
//! port devices.
//!
//! Prefixes are [`ipnet::IpNet`] and MACs wrap [`macaddr::MacAddr6`]; what
//! is Sluice's own is the forms accepted, the messages that name them, and
//! which host addresses a subnet reserves. Each is a [`Text`], read by serde
//! through its parser, so a malformed value is reported with the span of
//! the offending string.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use macaddr::MacAddr6;
use serde::de::{self, Deserialize, Deserializer};

/// An IPv4 or IPv6 address together with a prefix length, as in
/// `10.0.0.1/24` or `fd00::/8`.
///
/// The address keeps its host bits: `10.0.0.1/24` is both "the address
/// 10.0.0.1" and "the subnet 10.0.0.0/24", which is how a port's addresses
/// are written. `trunc()` clears the host bits.
pub type Cidr = ipnet::IpNet;

/// `ADDRESS/LENGTH`, the length in decimal digits and at most the address
/// width.
fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let syntax = || {
        format!(
            "invalid prefix {text:?}: expected ADDRESS/LENGTH (such as 10.0.0.1/24 or fd00::1/64)"
        )
    };
    let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
    let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
    // Digits only: u32's parser would also take a leading '+'.
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let len: u32 = len.parse().map_err(|_| syntax())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    u8::try_from(len)
        .ok()
        .and_then(|len| Cidr::new(addr, len).ok())
        .ok_or_else(|| format!("invalid prefix {text:?}: prefix length {len} is longer than {max}"))
}

impl Text for Cidr {
    const EXPECTING: &'static str = "a prefix such as \"10.0.0.1/24\"";

    fn parse(text: &str) -> Result<Cidr, String> {
        parse_cidr(text)
    }
}

/// `#[serde(default = "dflt::<N, _>")]`: a numeric default written next to
/// its field.
pub(super) fn dflt<const N: u64, T: TryFrom<u64>>() -> T {
    match T::try_from(N) {
        Ok(value) => value,
        Err(_) => panic!("default {N} does not fit its field"),
    }
}

/// `#[serde(default = "yes")]`.
pub(super) fn yes() -> bool {
    true
}

/// Whether `ip` is the network address of subnet `c`, or its IPv4
/// broadcast address, neither of which may be given to a host.
///
/// Only subnets with room for hosts reserve them: IPv4 /31 point-to-point
/// links use both addresses (RFC 3021), as do IPv6 /127 links (RFC 6164);
/// on longer IPv6 prefixes the all-zero host is the Subnet-Router anycast
/// address (RFC 4291 section 2.6.1).
pub fn is_reserved_host(c: &Cidr, ip: IpAddr) -> bool {
    let room = if ip.is_ipv4() { 31 } else { 127 };
    c.contains(&ip)
        && c.prefix_len() < room
        && (ip == c.network() || (ip.is_ipv4() && ip == c.broadcast()))
}

/// Whether `ip` is an IPv6 link-local address (fe80::/10, RFC 4291 section 2.5.6).
pub fn is_ipv6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// A value written as a string in a form of Sluice's own (a prefix, a MAC,
/// a host address, `hash_on`), read by serde through [`Parsed`] with
/// Sluice's messages: a field of such a type takes
/// `#[serde(deserialize_with = "parsed")]` (or `parsed_some`, `parsed_vec`).
pub(crate) trait Text: Sized {
    /// What serde says it expected when the value is not a string.
    const EXPECTING: &'static str;

    /// The value `text` spells, or what is wrong with it.
    fn parse(text: &str) -> Result<Self, String>;
}

/// A [`Text`] value as serde reads it.
///
/// Parsing inside the visitor, rather than after `String::deserialize`
/// returns, matters: toml attaches its span to errors raised while its
/// deserializer runs, so a bad element of an array is reported at the
/// element rather than at the array.
pub(crate) struct Parsed<T>(pub T);

impl<'de, T: Text> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Parsed<T>, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Text> de::Visitor<'_> for V<T> {
            type Value = Parsed<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Parsed<T>, E> {
                T::parse(text).map(Parsed).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// One [`Text`] value.
pub(crate) fn parsed<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<T, D::Error> {
    Parsed::deserialize(d).map(|Parsed(v)| v)
}

/// An optional [`Text`] value (with `#[serde(default)]`).
pub(crate) fn parsed_some<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Option<T>, D::Error> {
    parsed(d).map(Some)
}

/// An array of [`Text`] values, each parsed inside its own element so that
/// an error points at that element.
pub(crate) fn parsed_vec<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Parsed<T>>::deserialize(d).map(|v| v.into_iter().map(|Parsed(v)| v).collect())
}

/// An Ethernet MAC address, written and shown as six two-digit hex octets
/// separated by colons (shown in lower case).
///
/// Deliberately separate from the wire module's address type: this one only
/// carries what the operator wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(MacAddr6);

impl Mac {
    /// The MAC with these octets, in transmission order.
    pub const fn new(octets: [u8; 6]) -> Mac {
        let [a, b, c, d, e, f] = octets;
        Mac(MacAddr6::new(a, b, c, d, e, f))
    }

    /// The six octets, in transmission order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0.into_array()
    }

    /// Unicast: the I/G bit (least significant bit of the first octet) is
    /// clear. Multicast and broadcast addresses cannot name a station.
    pub fn is_unicast(&self) -> bool {
        self.0.is_unicast()
    }

    /// All zeros, which no station uses.
    pub fn is_zero(&self) -> bool {
        self.0.is_nil()
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> [u8; 6] {
        mac.octets()
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.octets();
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Text for Mac {
    const EXPECTING: &'static str = "a MAC address such as \"02:00:00:00:00:01\"";

    /// Only the colon form: macaddr also reads `-`, `.` and no separator.
    fn parse(text: &str) -> Result<Mac, String> {
        let colons = text.len() == 17 && (2..17).step_by(3).all(|i| text.as_bytes()[i] == b':');
        match text.parse() {
            Ok(mac) if colons => Ok(Mac(mac)),
            _ => Err(format!(
                "invalid MAC address {text:?}: expected six two-digit hex octets separated by \
                 colons (such as 02:00:00:00:00:01)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        parsed(d)
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
        parse_cidr(s).unwrap()
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
            let parsed = parse_cidr(text);
            assert_eq!(parsed.is_ok(), ok, "{text}: {parsed:?}");
            if let Ok(c) = parsed {
                assert_eq!(c.to_string(), text);
            }
        }
        let err = parse_cidr("10.0.0.1/33").unwrap_err();
        assert!(err.contains("prefix length 33 is longer than 32"), "{err}");
        let err = parse_cidr("10.0.0.1/999").unwrap_err();
        assert!(err.contains("prefix length 999 is longer than 32"), "{err}");
    }

    #[test]
    fn reserved_hosts() {
        let c = cidr("10.0.0.1/24");
        assert!(is_reserved_host(&c, ip("10.0.0.0")));
        assert!(is_reserved_host(&c, ip("10.0.0.255")));
        assert!(!is_reserved_host(&c, ip("10.0.0.1")));
        assert!(!is_reserved_host(&c, ip("10.0.1.0")));
        assert!(!is_reserved_host(&cidr("10.0.0.0/31"), ip("10.0.0.0")));
        assert!(!is_reserved_host(&cidr("10.0.0.0/31"), ip("10.0.0.1")));
        assert!(is_reserved_host(&cidr("fd00::1/64"), ip("fd00::")));
        assert!(!is_reserved_host(
            &cidr("fd00::1/64"),
            ip("fd00::ffff:ffff:ffff:ffff")
        ));
        assert!(!is_reserved_host(&cidr("fd00::1/127"), ip("fd00::")));
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
        let m = Mac::parse("02:00:00:00:00:FE").unwrap();
        assert_eq!(m.octets(), [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(m.to_string(), "02:00:00:00:00:fe");
        assert!(m.is_unicast());
        assert!(!Mac::parse("01:00:5e:00:00:01").unwrap().is_unicast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:1",
            "02-00-00-00-00-01",
            "0g:00:00:00:00:01",
            "020000000001",
            "0200.0000.0001",
        ] {
            assert!(Mac::parse(bad).is_err(), "{bad}");
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
