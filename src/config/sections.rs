//! The tables of the config file, one struct each, as serde reads them.
//!
//! Only types and single values are checked here (serde rejects a string
//! where a number belongs, an unknown key, a malformed prefix); ranges and
//! relations between values are checked in [`super::validate`], which knows
//! where each value is written. Defaults are the documented ones in
//! `docs/CONFIG.md`; keep the two in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use std::fmt;
use std::str::FromStr;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::types::{Cidr, Mac, Parse, PortDevice};

/// `[eal]`: how the DPDK Environment Abstraction Layer is started.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eal {
    /// Extra EAL arguments, passed verbatim after the ones Sluice derives
    /// (`--no-huge`, `-m 512`, `--no-pci`, `--socket-mem`, ...). Options
    /// that Sluice derives itself (`-l`, `--main-lcore`, `--file-prefix`,
    /// ...) are rejected here.
    pub args: Vec<String>,
    /// The lcore that runs the control thread (admin endpoint, statistics,
    /// signal handling); it never polls queues.
    pub main_lcore: u32,
    /// `--file-prefix`: names this process's hugepage files and runtime
    /// directory, so that several DPDK processes can share a host.
    pub file_prefix: String,
}

impl Default for Eal {
    fn default() -> Eal {
        Eal {
            args: Vec::new(),
            main_lcore: 0,
            file_prefix: "sluice".to_string(),
        }
    }
}

/// `[dataplane]`: workers and their queues.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// The lcores that run workers, one worker per lcore, each polling one
    /// rx queue of every port. Non-empty, unique, each below 128
    /// (`RTE_MAX_LCORE`), none equal to `eal.main_lcore`.
    pub workers: Vec<u32>,
    /// Packets per rx burst and per full tx burst, 1..=256.
    pub burst: u16,
    /// Mbufs in each worker's packet pool (one pool per worker, on the
    /// worker's NUMA node), at least 1024. DPDK sizes pools best at
    /// 2^n - 1.
    pub mbufs: u32,
    /// Per-lcore cache of each mempool; at most 512
    /// (`RTE_MEMPOOL_CACHE_MAX_SIZE`) and at most `mbufs / 1.5`, as
    /// `rte_mempool_create` requires.
    pub mbuf_cache: u32,
    /// Descriptors in each rx queue: a power of two, 64..=16384.
    pub rx_desc: u16,
    /// Descriptors in each tx queue: a power of two, 64..=16384.
    pub tx_desc: u16,
    /// A partially filled tx burst is sent after at most this many
    /// microseconds, 1..=100000. Lower means less latency at low load.
    pub tx_drain_us: u32,
    /// Seconds a learned ARP/NDP entry stays valid, at least 1.
    pub neighbor_timeout_s: u32,
    /// Milliseconds between two resolution attempts for one next hop, at
    /// least 10.
    pub neighbor_retry_ms: u32,
}

impl Default for Dataplane {
    fn default() -> Dataplane {
        Dataplane {
            workers: vec![1],
            burst: 32,
            mbufs: 8191,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            tx_drain_us: 100,
            neighbor_timeout_s: 300,
            neighbor_retry_ms: 1000,
        }
    }
}

impl Dataplane {
    /// [`Dataplane::tx_drain_us`] as a duration.
    pub fn tx_drain(&self) -> Duration {
        Duration::from_micros(self.tx_drain_us.into())
    }

    /// [`Dataplane::neighbor_timeout_s`] as a duration.
    pub fn neighbor_timeout(&self) -> Duration {
        Duration::from_secs(self.neighbor_timeout_s.into())
    }

    /// [`Dataplane::neighbor_retry_ms`] as a duration.
    pub fn neighbor_retry(&self) -> Duration {
        Duration::from_millis(self.neighbor_retry_ms.into())
    }
}

/// `[admin]`: the HTTP endpoint that serves metrics.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address and TCP port to listen on, such as `127.0.0.1:9100` or
    /// `[::1]:9100`. This is a kernel socket, not a data-plane address.
    pub listen: SocketAddr,
    /// Whether to serve the endpoint at all.
    pub enabled: bool,
}

impl Default for Admin {
    fn default() -> Admin {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            enabled: true,
        }
    }
}

/// `[log]`: logging of the control thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// The most verbose level that is logged; `--log-level` on the command
    /// line takes precedence.
    pub level: LogLevel,
}

/// A log level, as spelled in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also start-up and shutdown progress.
    #[default]
    Info,
    /// Also per-event detail of the control plane.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The spelling in the config file, which `env_logger` filters accept.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The `log` crate's filter for this level.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[port]]`: one Ethernet port and the addresses Sluice owns on it.
///
/// Read through a private mirror of the table, which has the file's two
/// device keys (`pci`, `vdev`); here they are one [`PortDevice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Unique name, used by routes, neighbors, logs and metrics: 1..=32
    /// characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// The DPDK device: a PCI NIC or a virtual device.
    pub device: PortDevice,
    /// A MAC to set on the port instead of the NIC's own (unicast).
    pub mac: Option<Mac>,
    /// IP MTU, 68..=9000 (RFC 791's minimum up to jumbo frames); the VLAN
    /// tag, if any, is not counted.
    pub mtu: u16,
    /// 802.1Q VLAN id 1..=4094: frames are received and sent with this tag.
    pub vlan: Option<u16>,
    /// Spread flows over the workers with RSS when the device supports it;
    /// otherwise every packet arrives on the first worker's queue.
    pub rss: bool,
    /// The addresses Sluice answers ARP/NDP for on this port, each with the
    /// prefix length of its connected subnet. At least one; unique across
    /// all ports.
    pub addresses: Vec<Cidr>,
    /// IPv4 default route via this next hop, inside one of this port's IPv4
    /// subnets.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default route via this next hop, inside one of this port's IPv6
    /// subnets or link-local (fe80::/10).
    pub gateway6: Option<Ipv6Addr>,
}

impl Port {
    /// The port's connected subnet that contains `ip`, if any.
    pub fn subnet_of(&self, ip: IpAddr) -> Option<Cidr> {
        self.addresses
            .iter()
            .find(|c| c.contains(ip))
            .map(|c| c.network())
    }

    /// Whether `ip` is one of this port's own addresses.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|c| c.addr() == ip)
    }

    /// This port's IPv4 addresses with their prefixes.
    pub fn ipv4_addresses(&self) -> impl Iterator<Item = &Cidr> {
        self.addresses.iter().filter(|c| c.is_ipv4())
    }

    /// This port's IPv6 addresses with their prefixes.
    pub fn ipv6_addresses(&self) -> impl Iterator<Item = &Cidr> {
        self.addresses.iter().filter(|c| c.is_ipv6())
    }
}

/// `[[port]]` exactly as written; see [`Port`] for the meaning of each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortTable {
    /// See [`Port::name`].
    name: String,
    /// A PCI address `DDDD:BB:DD.F`; exclusive with `vdev`.
    pci: Option<String>,
    /// A DPDK vdev string `net_...[,key=value...]`; exclusive with `pci`.
    vdev: Option<String>,
    /// See [`Port::mac`].
    mac: Option<Mac>,
    /// See [`Port::mtu`].
    #[serde(default = "default_mtu")]
    mtu: u16,
    /// See [`Port::vlan`].
    vlan: Option<u16>,
    /// See [`Port::rss`].
    #[serde(default = "default_rss")]
    rss: bool,
    /// See [`Port::addresses`].
    addresses: Vec<Cidr>,
    /// See [`Port::gateway`].
    #[serde(default, deserialize_with = "ipv4_gateway")]
    gateway: Option<Ipv4Addr>,
    /// See [`Port::gateway6`].
    #[serde(default, deserialize_with = "ipv6_gateway")]
    gateway6: Option<Ipv6Addr>,
}

fn default_mtu() -> u16 {
    1500
}

fn default_rss() -> bool {
    true
}

/// `gateway`: an IPv4 address, with a hint when an IPv6 one was given.
fn ipv4_gateway<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    let Gateway4(ip) = d.deserialize_str(Parse::new("an IPv4 address"))?;
    Ok(Some(ip))
}

/// `gateway6`: an IPv6 address, with a hint when an IPv4 one was given.
fn ipv6_gateway<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Addr>, D::Error> {
    let Gateway6(ip) = d.deserialize_str(Parse::new("an IPv6 address"))?;
    Ok(Some(ip))
}

struct Gateway4(Ipv4Addr);

impl FromStr for Gateway4 {
    type Err = String;

    fn from_str(text: &str) -> Result<Gateway4, String> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Ok(Gateway4(ip)),
            Ok(IpAddr::V6(ip)) => Err(format!(
                "{ip} is an IPv6 address; `gateway` is the IPv4 default route, use `gateway6`"
            )),
            Err(_) => Err(format!("invalid IPv4 address {text:?}")),
        }
    }
}

struct Gateway6(Ipv6Addr);

impl FromStr for Gateway6 {
    type Err = String;

    fn from_str(text: &str) -> Result<Gateway6, String> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => Ok(Gateway6(ip)),
            Ok(IpAddr::V4(ip)) => Err(format!(
                "{ip} is an IPv4 address; `gateway6` is the IPv6 default route, use `gateway`"
            )),
            Err(_) => Err(format!("invalid IPv6 address {text:?}")),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Port, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Port;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [[port]] table")
            }

            // Converting inside the visitor puts errors at this port's table
            // (see `types::Parse`), not at the first `[[port]]`.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Port, A::Error> {
                let table = PortTable::deserialize(MapAccessDeserializer::new(map))?;
                Port::try_from(table).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}

impl TryFrom<PortTable> for Port {
    type Error = String;

    fn try_from(t: PortTable) -> Result<Port, String> {
        let device = match (t.pci, t.vdev) {
            (Some(pci), None) => PortDevice::Pci(pci),
            (None, Some(vdev)) => PortDevice::Vdev(vdev),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "port {:?} sets both `pci` and `vdev`; set exactly one",
                    t.name
                ));
            }
            (None, None) => {
                return Err(format!(
                    "port {:?} has no device: set `pci` (a PCI address such as \"0000:03:00.0\") \
                     or `vdev` (a DPDK virtual device such as \"net_af_packet0,iface=veth0\")",
                    t.name
                ));
            }
        };
        Ok(Port {
            name: t.name,
            device,
            mac: t.mac,
            mtu: t.mtu,
            vlan: t.vlan,
            rss: t.rss,
            addresses: t.addresses,
            gateway: t.gateway,
            gateway6: t.gateway6,
        })
    }
}

/// `[[route]]`: a static route.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix, IPv4 or IPv6, with the host bits zero.
    pub prefix: Cidr,
    /// Next hop, of the prefix's family, inside a connected subnet of
    /// `port` (for IPv6 it may instead be link-local).
    pub via: IpAddr,
    /// The `[[port]]` the next hop is reached through. Spanned so that
    /// errors can point at it; read it with `get_ref()`.
    pub port: Spanned<String>,
}

impl Route {
    /// The name of the port the next hop is reached through.
    pub fn port_name(&self) -> &str {
        self.port.get_ref()
    }
}

/// `[[neighbor]]`: a static ARP (IPv4) or NDP (IPv6) entry, which never
/// expires and is never re-resolved.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    /// The neighbor's address, inside a connected subnet of `port` (or, for
    /// IPv6, link-local).
    pub ip: IpAddr,
    /// The neighbor's MAC (unicast).
    pub mac: Mac,
    /// The `[[port]]` the neighbor is attached to. Spanned so that errors
    /// can point at it; read it with `get_ref()`.
    pub port: Spanned<String>,
}

impl Neighbor {
    /// The name of the port the neighbor is attached to.
    pub fn port_name(&self) -> &str {
        self.port.get_ref()
    }
}
