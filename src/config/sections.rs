//! The tables of the config file, one struct each, as serde reads them.
//!
//! Only types and single values are checked here (serde rejects a string
//! where a number belongs, an unknown key, a malformed prefix); ranges and
//! relations between values are checked in [`super::validate`], which knows
//! where each value is written. Each field's doc gives its meaning and
//! bounds in short; `docs/CONFIG.md` is the full reference, and defaults
//! here are the ones it documents: keep the two in step.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::listener::{Balance, HashOn, HealthCheck};
use super::types::{dflt, parsed, parsed_some, parsed_vec, yes, Cidr, Mac, PortDevice, Text};

/// `[eal]`: how the DPDK Environment Abstraction Layer is started.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eal {
    /// Extra EAL arguments, passed verbatim after the ones Sluice derives;
    /// options it derives itself (`-l`, `--main-lcore`, ...) are rejected.
    pub args: Vec<String>,
    /// The lcore of the control thread; it never polls queues.
    pub main_lcore: u32,
    /// `--file-prefix`: names this process's hugepage files and runtime
    /// directory, so that several DPDK processes can share a host.
    pub file_prefix: String,
}

impl Default for Eal {
    fn default() -> Eal {
        let file_prefix = "sluice".to_string();
        Eal {
            args: Vec::new(),
            main_lcore: 0,
            file_prefix,
        }
    }
}

/// `[dataplane]`: workers and their queues.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// The lcores that run workers, each polling one rx queue of every port:
    /// non-empty, unique, below 128, none the main lcore.
    pub workers: Vec<u32>,
    /// For tests only: the CPU each worker lcore runs on (`--lcores L@CPU`),
    /// in the order of `workers`; empty: lcore N on CPU N.
    pub worker_cpus: Vec<u32>,
    /// Microseconds an idle worker sleeps per loop after a quiet spell,
    /// 0..=10000; 0: busy-poll.
    pub idle_sleep_us: u32,
    /// Packets per rx burst and per full tx burst, 1..=256.
    pub burst: u16,
    /// Mbufs in each worker's packet pool, at least 1024.
    pub mbufs: u32,
    /// Per-lcore cache of each mempool; at most 512 and `mbufs / 1.5`.
    pub mbuf_cache: u32,
    /// Descriptors in each rx queue: a power of two, 64..=16384.
    pub rx_desc: u16,
    /// Descriptors in each tx queue: a power of two, 64..=16384.
    pub tx_desc: u16,
    /// Microseconds after which a partial tx burst is sent, 1..=100000.
    pub tx_drain_us: u32,
    /// Seconds a learned ARP/NDP entry stays valid, at least 1.
    pub neighbor_timeout_s: u32,
    /// Milliseconds between resolution attempts for a next hop, at least 10.
    pub neighbor_retry_ms: u32,
    /// What to do when a worker dies or is stuck (`/healthz` fails either way).
    pub on_worker_failure: OnWorkerFailure,
    /// Milliseconds without a heartbeat after which a worker is stuck,
    /// 100..=600000.
    pub worker_stuck_ms: u32,
}

/// `dataplane.on_worker_failure`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnWorkerFailure {
    /// Log, fail `/healthz`, stop in order and exit non-zero.
    #[default]
    Exit,
    /// Log and fail `/healthz`, keep serving with the other workers (RSS
    /// still feeds the dead worker's queues: their packets are lost).
    Keep,
}

impl Default for Dataplane {
    fn default() -> Dataplane {
        Dataplane {
            workers: vec![1],
            worker_cpus: Vec::new(),
            idle_sleep_us: 0,
            burst: 32,
            mbufs: 8191,
            mbuf_cache: 256,
            rx_desc: 2048,
            tx_desc: 1024,
            tx_drain_us: 100,
            neighbor_timeout_s: 300,
            neighbor_retry_ms: 1000,
            on_worker_failure: OnWorkerFailure::Exit,
            worker_stuck_ms: 5000,
        }
    }
}

/// `[admin]`: the HTTP endpoint that serves metrics (a kernel socket).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address and TCP port to listen on, such as `127.0.0.1:9100`.
    pub listen: SocketAddr,
    /// Whether to serve the endpoint at all.
    pub enabled: bool,
}

impl Default for Admin {
    fn default() -> Admin {
        let listen = SocketAddr::from(([127, 0, 0, 1], 9100));
        Admin {
            listen,
            enabled: true,
        }
    }
}

/// `[log]`: logging of the control thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// The most verbose level logged; `--log-level` takes precedence.
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

// Spelled as `env_logger` filters accept them.
spelled!(LogLevel {
    Error => "error",
    Warn => "warn",
    Info => "info",
    Debug => "debug",
    Trace => "trace",
});

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn to_level_filter(self) -> log::LevelFilter {
        self.as_str().parse().unwrap_or(log::LevelFilter::Info)
    }
}

/// `[[port]]`: one Ethernet port and the addresses Sluice owns on it.
///
/// Read through a private mirror of the table, which has the file's two
/// device keys (`pci`, `vdev`); here they are one [`PortDevice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Unique name: 1..=32 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// The DPDK device: a PCI NIC or a virtual device.
    pub device: PortDevice,
    /// A unicast MAC to set on the port instead of the NIC's own.
    pub mac: Option<Mac>,
    /// IP MTU, 68..=9000, a VLAN tag not counted.
    pub mtu: u16,
    /// 802.1Q VLAN id, 1..=4094, of every frame received and sent.
    pub vlan: Option<u16>,
    /// Spread flows over the workers with RSS when the device supports it.
    pub rss: bool,
    /// The addresses Sluice owns here, with the prefix length of their
    /// connected subnets; at least one, unique across ports.
    pub addresses: Vec<Cidr>,
    /// IPv4 default route via this next hop, inside an IPv4 subnet here.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default route via this next hop, inside an IPv6 subnet here or
    /// link-local.
    pub gateway6: Option<Ipv6Addr>,
}

impl Port {
    /// The port's connected subnet that contains `ip`, if any.
    pub fn subnet_of(&self, ip: IpAddr) -> Option<Cidr> {
        self.addresses
            .iter()
            .find(|c| c.contains(&ip))
            .map(Cidr::trunc)
    }

    /// Whether `ip` is one of this port's own addresses.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|c| c.addr() == ip)
    }
}

/// `[[port]]` exactly as written; see [`Port`] for the meaning of each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortTable {
    name: String,
    /// A PCI address `DDDD:BB:DD.F`; exclusive with `vdev`.
    pci: Option<String>,
    /// A DPDK vdev string `net_...[,key=value...]`; exclusive with `pci`.
    vdev: Option<String>,
    mac: Option<Mac>,
    #[serde(default = "dflt::<1500, _>")]
    mtu: u16,
    vlan: Option<u16>,
    #[serde(default = "yes")]
    rss: bool,
    #[serde(deserialize_with = "parsed_vec")]
    addresses: Vec<Cidr>,
    #[serde(default, deserialize_with = "parsed_some")]
    gateway: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "parsed_some")]
    gateway6: Option<Ipv6Addr>,
}

/// `gateway`: an IPv4 address, with a hint when an IPv6 one was given.
impl Text for Ipv4Addr {
    const EXPECTING: &'static str = "an IPv4 address";

    fn parse(text: &str) -> Result<Ipv4Addr, String> {
        gateway(text, ["gateway", "IPv4", "gateway6", "IPv6"])
    }
}

/// `gateway6`: an IPv6 address, with a hint when an IPv4 one was given.
impl Text for Ipv6Addr {
    const EXPECTING: &'static str = "an IPv6 address";

    fn parse(text: &str) -> Result<Ipv6Addr, String> {
        gateway(text, ["gateway6", "IPv6", "gateway", "IPv4"])
    }
}

/// A default route's next hop of the family of `key`.
fn gateway<T: FromStr>(
    text: &str,
    [key, family, other_key, other]: [&str; 4],
) -> Result<T, String> {
    match (text.parse::<T>(), text.parse::<IpAddr>()) {
        (Ok(ip), _) => Ok(ip),
        (_, Ok(ip)) => Err(format!(
            "{ip} is an {other} address; `{key}` is the {family} default route, use `{other_key}`"
        )),
        _ => Err(format!("invalid {family} address {text:?}")),
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
            // (see `types::Parsed`), not at the first `[[port]]`.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Port, A::Error> {
                let t = PortTable::deserialize(MapAccessDeserializer::new(map))?;
                let name = &t.name;
                let device = match (t.pci, t.vdev) {
                    (Some(pci), None) => PortDevice::Pci(pci),
                    (None, Some(vdev)) => PortDevice::Vdev(vdev),
                    (Some(_), Some(_)) => {
                        let message = "sets both `pci` and `vdev`; set exactly one";
                        return Err(de::Error::custom(format!("port {name:?} {message}")));
                    }
                    (None, None) => {
                        return Err(de::Error::custom(format!(
                            "port {name:?} has no device: set `pci` (a PCI address such as \
                         \"0000:03:00.0\") or `vdev` (a DPDK virtual device such as \
                         \"net_af_packet0,iface=veth0\")"
                        )))
                    }
                };
                let (mac, mtu, vlan, rss, addresses) = (t.mac, t.mtu, t.vlan, t.rss, t.addresses);
                let (name, gateway, gateway6) = (t.name, t.gateway, t.gateway6);
                Ok(Port {
                    name,
                    device,
                    mac,
                    mtu,
                    vlan,
                    rss,
                    addresses,
                    gateway,
                    gateway6,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// `[[route]]`: a static route.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix, IPv4 or IPv6, with the host bits zero.
    #[serde(deserialize_with = "parsed")]
    pub prefix: Cidr,
    /// Next hop, of the prefix's family, inside a connected subnet of
    /// `port` (for IPv6 it may instead be link-local).
    pub via: IpAddr,
    /// The `[[port]]` the next hop is reached through.
    pub port: String,
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
    /// The `[[port]]` the neighbor is attached to.
    pub port: String,
}

/// `[conntrack]`: per-worker connection tracking of L4 services.
///
/// Each worker owns a table of its own (nothing is shared between cores),
/// so every limit here is per worker: the appliance tracks up to
/// `max_flows × workers` connections.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conntrack {
    /// Connections tracked per worker, 1024..=67108864, allocated at
    /// start-up; when full, new connections are forwarded untracked.
    pub max_flows: u32,
    /// Cap on new connections per second per worker (token bucket); 0: none.
    pub new_flows_per_sec: u32,
    /// Depth of that token bucket, at least 1.
    pub new_flows_burst: u32,
    /// Idle timeout (s) of a TCP connection that has seen only a SYN, >= 1.
    pub syn_timeout_s: u32,
    /// Idle timeout (s) of an established TCP connection, >= 1.
    pub established_timeout_s: u32,
    /// Idle timeout (s) of a TCP connection after a FIN, >= 1.
    pub closing_timeout_s: u32,
    /// Idle timeout (s) of a TCP connection after a RST, >= 1.
    pub closed_timeout_s: u32,
    /// Idle timeout (s) of a UDP flow, >= 1.
    pub udp_timeout_s: u32,
    /// Connections examined for expiry per pass of a worker's loop, 1..=4096.
    pub expire_budget: u32,
}

impl Default for Conntrack {
    fn default() -> Conntrack {
        Conntrack {
            max_flows: 1_048_576,
            new_flows_per_sec: 0,
            new_flows_burst: 1024,
            syn_timeout_s: 30,
            established_timeout_s: 3600,
            closing_timeout_s: 120,
            closed_timeout_s: 10,
            udp_timeout_s: 120,
            expire_budget: 64,
        }
    }
}

/// What happens to the tracked L4 connections of a backend that goes down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBackendDown {
    /// They carry on to the backend (as when it is drained with weight 0).
    #[default]
    Keep,
    /// TCP: the next packet of either side is answered with a RST and the
    /// connection is forgotten; UDP: the flow is forgotten and its next
    /// datagram balanced again.
    Reset,
}

/// How a cluster picks the backend of a new connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// Maglev consistent hashing of the 5-tuple (Eisenbud et al., NSDI
    /// 2016): every Sluice with the same backends and `hash_seed` picks the
    /// same backend, and a change of backends moves few connections.
    #[default]
    Maglev,
    /// Weighted round robin.
    Wrr,
    /// The backend with the fewest connections relative to its weight, as
    /// this worker counts them.
    LeastConn,
    /// A hash of the client's address only: all connections of one client
    /// go to one backend.
    SourceHash,
}

spelled!(Scheduler {
    Maglev => "maglev",
    Wrr => "wrr",
    LeastConn => "least-conn",
    SourceHash => "source-hash",
});

/// `[[cluster]]`: a set of backends that one or more services forward to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name: 1..=32 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// How a new connection's backend is chosen.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Slots of the Maglev lookup table: a prime, 7..=1048573, at least the
    /// number of backends; checked whatever the scheduler.
    #[serde(default = "dflt::<65_537, _>")]
    pub maglev_table_size: usize,
    /// Key of the flow hash; the same on every Sluice of an ECMP group.
    #[serde(default)]
    pub hash_seed: u64,
    /// What happens to tracked L4 connections of a backend its health
    /// check takes down.
    #[serde(default)]
    pub on_backend_down: OnBackendDown,
    /// `[[cluster.backend]]`: the backends, in file order; at least one.
    #[serde(default, rename = "backend")]
    pub backends: Vec<Backend>,

    // The keys below matter only to L7 listeners that use the cluster;
    // their ranges are checked whatever uses it.
    /// How an L7 listener picks the backend of each request.
    #[serde(default)]
    pub balance: Balance,
    /// What `balance = "consistent-hash"` hashes; only, and required, with it.
    pub hash_on: Option<HashOn>,
    /// A cookie name (an HTTP token) that pins a client to the backend that
    /// answered it.
    pub sticky_cookie: Option<String>,
    /// `Max-Age` of that cookie in seconds, at least 1; none: a session cookie.
    pub sticky_max_age_s: Option<u32>,
    /// Milliseconds to establish a connection to a backend, 1..=600000.
    #[serde(default = "dflt::<2000, _>")]
    pub connect_timeout_ms: u32,
    /// Milliseconds from a request sent to its response head, 1..=3600000;
    /// beyond it the client gets 504.
    #[serde(default = "dflt::<30_000, _>")]
    pub response_timeout_ms: u32,
    /// Extra attempts, on another backend when there is one, 0..=10.
    #[serde(default = "dflt::<2, _>")]
    pub retries: u32,
    /// Statuses, each 500..=599 and listed once, that make an idempotent
    /// request be retried.
    #[serde(default)]
    pub retry_on_status: Vec<u16>,
    /// Retries allowed as a share of requests, in percent, 0..=100.
    #[serde(default = "dflt::<20, _>")]
    pub retry_budget_percent: u32,
    /// Idle connections each worker keeps to each backend, 0..=65536.
    #[serde(default = "dflt::<64, _>")]
    pub max_idle_per_backend: u32,
    /// `[cluster.health_check]`: active health checks; none: every backend
    /// counts as up.
    pub health_check: Option<HealthCheck>,
    /// `[cluster.tls]`: L7 listeners speak TLS to the backends, verifying
    /// their certificates; none: plain TCP.
    pub tls: Option<super::tls::ClusterTls>,
}

/// `[[cluster.backend]]`: one backend server of a cluster.
///
/// Read through a private mirror of the table, in which `name` is optional;
/// here it is defaulted to the address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "BackendTable")]
pub struct Backend {
    /// Unicast, unique within the cluster, of the family of the VIPs of the
    /// services that use the cluster.
    pub address: IpAddr,
    /// The destination port connections are sent to (mode `nat`, and L7
    /// listeners, which require it; not with DSR modes), 1..=65535.
    pub port: Option<u16>,
    /// Share of new connections, 0..=65535; 0 drains the backend.
    pub weight: u32,
    /// Label in logs and metrics, unique within the cluster, 1..=64
    /// characters of `[A-Za-z0-9_.:-]`; defaults to the address.
    pub name: String,
    /// With `[cluster.tls]`: the name sent as SNI and verified instead of
    /// the cluster's `server_name`.
    pub tls_server_name: Option<String>,
}

/// `[[cluster.backend]]` exactly as written; see [`Backend`] for the meaning
/// of each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Backend")]
struct BackendTable {
    #[serde(deserialize_with = "parsed")]
    address: IpAddr,
    port: Option<u16>,
    #[serde(default = "dflt::<1, _>")]
    weight: u32,
    /// See [`Backend::name`]; `None` when left to its default.
    name: Option<String>,
    tls_server_name: Option<String>,
}

impl From<BackendTable> for Backend {
    fn from(t: BackendTable) -> Backend {
        let name = t.name.unwrap_or_else(|| t.address.to_string());
        let (address, port, weight, tls_server_name) =
            (t.address, t.port, t.weight, t.tls_server_name);
        Backend {
            address,
            port,
            weight,
            name,
            tls_server_name,
        }
    }
}

/// The transport protocol of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// TCP, tracked through its handshake and teardown.
    #[default]
    Tcp,
    /// UDP, tracked by idle time only.
    Udp,
}

impl Protocol {
    /// The IP protocol number (IANA "Assigned Internet Protocol Numbers"):
    /// 6 for TCP, 17 for UDP.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

spelled!(Protocol { Tcp => "tcp", Udp => "udp" });

/// How packets of a service reach its backends; `docs/CONFIG.md`
/// ("Forwarding modes") describes each at the packet level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardMode {
    /// Full NAT: destination rewritten to the backend, source to a SNAT
    /// address and port; replies come back through Sluice.
    #[default]
    Nat,
    /// IP-in-IP encapsulation (RFC 2003, or IPv6-in-IPv6, RFC 2473) to the
    /// backend; the backend replies to the client directly.
    Ipip,
    /// GRE encapsulation (RFC 2784) to the backend; the backend replies to
    /// the client directly.
    Gre,
    /// Only the destination MAC is rewritten; the backend is on a link of
    /// Sluice's and replies to the client directly.
    #[serde(rename = "l2dsr")]
    L2Dsr,
}

impl ForwardMode {
    /// Direct server return: the backend receives the client's packet
    /// unchanged inside (encapsulated or re-addressed at layer 2 only), with
    /// the VIP as destination, and answers the client itself. Such a mode
    /// cannot change addresses or ports.
    pub fn is_dsr(self) -> bool {
        !matches!(self, ForwardMode::Nat)
    }
}

spelled!(ForwardMode { Nat => "nat", Ipip => "ipip", Gre => "gre", L2Dsr => "l2dsr" });

/// `[[service]]`: a virtual address, port and protocol that Sluice balances
/// over a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name (among services and listeners): 1..=32 characters of
    /// `[A-Za-z0-9_-]`.
    pub name: String,
    /// The virtual address clients connect to; not an address of a port.
    #[serde(deserialize_with = "parsed")]
    pub vip: IpAddr,
    /// The destination port, or 0 for every port of `vip` and `protocol`
    /// (then the only service there).
    pub port: u16,
    /// The transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// How packets are forwarded to the backends.
    #[serde(default)]
    pub mode: ForwardMode,
    /// The `[[cluster]]` that serves it; its backends have the vip's family.
    pub cluster: String,
    /// The `[[port]]` on whose link Sluice answers ARP/NDP for the vip.
    pub ingress: String,
    /// Mode `nat` only: source addresses towards backends, each an address
    /// of a port, of the vip's family; empty: the egress port's address.
    #[serde(default, deserialize_with = "parsed_vec")]
    pub snat: Vec<IpAddr>,
}

/// `vip`, `address`, `snat`: the address of one host, with a hint when a
/// prefix was given.
impl Text for IpAddr {
    const EXPECTING: &'static str = "an IP address such as \"10.0.0.1\"";

    fn parse(text: &str) -> Result<IpAddr, String> {
        match text.parse::<IpAddr>() {
            Ok(ip) => Ok(ip),
            Err(_) if text.contains('/') => Err(format!(
                "invalid IP address {text:?}: give a single address, without a prefix length"
            )),
            Err(_) => Err(format!(
                "invalid IP address {text:?}: expected an IPv4 or IPv6 address such as \
                 \"10.0.0.1\" or \"fd00::1\""
            )),
        }
    }
}
