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

use super::listener::{Balance, HashOn, HealthCheck};
use super::types::{cidr, cidrs, Cidr, Mac, Parse, PortDevice};

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
    /// The CPU each worker lcore runs on, in the order of `workers`; empty
    /// (the default): lcore N runs on CPU N. For tests only, to run more
    /// workers than the machine has CPUs (the EAL's `--lcores L@CPU`); in
    /// production each worker has an isolated core of its own.
    pub worker_cpus: Vec<u32>,
    /// Microseconds an idle worker sleeps once it has found nothing to do
    /// for many polls in a row (it pauses the CPU before that); 0 (the
    /// default) never sleeps: the worker busy-polls. Lets workers that
    /// share a CPU hand it to each other, and lightly loaded boxes save
    /// power, at the cost of up to this much latency after a quiet spell.
    pub idle_sleep_us: u32,
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
    /// What to do when a worker dies (panics, returns) or is stuck (its
    /// heartbeat does not advance for `worker_stuck_ms`): `/healthz` fails
    /// either way; `exit` also ends the process with a non-zero status so
    /// that a supervisor restarts it.
    pub on_worker_failure: OnWorkerFailure,
    /// Milliseconds without a heartbeat (one per loop iteration) after
    /// which a running worker counts as stuck, 100..=600000.
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
            rx_desc: 1024,
            tx_desc: 1024,
            tx_drain_us: 100,
            neighbor_timeout_s: 300,
            neighbor_retry_ms: 1000,
            on_worker_failure: OnWorkerFailure::Exit,
            worker_stuck_ms: 5000,
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
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
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
            .find(|c| c.contains(&ip))
            .map(Cidr::trunc)
    }

    /// Whether `ip` is one of this port's own addresses.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.addresses.iter().any(|c| c.addr() == ip)
    }

    /// This port's IPv4 addresses with their prefixes.
    pub fn ipv4_addresses(&self) -> impl Iterator<Item = &Cidr> {
        self.addresses.iter().filter(|c| c.addr().is_ipv4())
    }

    /// This port's IPv6 addresses with their prefixes.
    pub fn ipv6_addresses(&self) -> impl Iterator<Item = &Cidr> {
        self.addresses.iter().filter(|c| c.addr().is_ipv6())
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
    #[serde(default = "default_mtu")]
    mtu: u16,
    vlan: Option<u16>,
    #[serde(default = "default_rss")]
    rss: bool,
    #[serde(deserialize_with = "cidrs")]
    addresses: Vec<Cidr>,
    #[serde(default, deserialize_with = "ipv4_gateway")]
    gateway: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "ipv6_gateway")]
    gateway6: Option<Ipv6Addr>,
}

fn default_mtu() -> u16 {
    1500
}

fn default_rss() -> bool {
    true
}

/// `gateway` (IPv4, `V6` false) or `gateway6`: an address of that family,
/// with a hint when one of the other family was given.
struct Gateway<const V6: bool>(IpAddr);

impl<const V6: bool> FromStr for Gateway<V6> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let [(key, family), (other_key, other)] = if V6 {
            [("gateway6", "IPv6"), ("gateway", "IPv4")]
        } else {
            [("gateway", "IPv4"), ("gateway6", "IPv6")]
        };
        match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv6() == V6 => Ok(Gateway(ip)),
            Ok(ip) => Err(format!(
                "{ip} is an {other} address; `{key}` is the {family} default route, use `{other_key}`"
            )),
            Err(_) => Err(format!("invalid {family} address {text:?}")),
        }
    }
}

fn ipv4_gateway<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    match d
        .deserialize_str(Parse::<Gateway<false>>::new("an IPv4 address"))?
        .0
    {
        IpAddr::V4(ip) => Ok(Some(ip)),
        IpAddr::V6(_) => unreachable!("Gateway<false> is IPv4"),
    }
}

fn ipv6_gateway<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Addr>, D::Error> {
    match d
        .deserialize_str(Parse::<Gateway<true>>::new("an IPv6 address"))?
        .0
    {
        IpAddr::V6(ip) => Ok(Some(ip)),
        IpAddr::V4(_) => unreachable!("Gateway<true> is IPv6"),
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
    #[serde(deserialize_with = "cidr")]
    pub prefix: Cidr,
    /// Next hop, of the prefix's family, inside a connected subnet of
    /// `port` (for IPv6 it may instead be link-local).
    pub via: IpAddr,
    /// The `[[port]]` the next hop is reached through.
    pub port: String,
}

impl Route {
    /// The name of the port the next hop is reached through.
    pub fn port_name(&self) -> &str {
        &self.port
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
    /// The `[[port]]` the neighbor is attached to.
    pub port: String,
}

impl Neighbor {
    /// The name of the port the neighbor is attached to.
    pub fn port_name(&self) -> &str {
        &self.port
    }
}

/// `[conntrack]`: per-worker connection tracking of L4 services.
///
/// Each worker owns a table of its own (nothing is shared between cores),
/// so every limit here is per worker: the appliance tracks up to
/// `max_flows × workers` connections.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conntrack {
    /// Connections tracked per worker, 1024..=67108864 (2^26). The table is
    /// allocated at start-up; when it is full, new connections are still
    /// forwarded but not remembered.
    pub max_flows: u32,
    /// Per-worker cap on new connections per second (token bucket), to damp
    /// SYN floods; 0 means no cap.
    pub new_flows_per_sec: u32,
    /// Depth of that token bucket: new connections accepted at once before
    /// the rate applies, at least 1. Unused when `new_flows_per_sec` is 0.
    pub new_flows_burst: u32,
    /// Idle timeout, in seconds, of a TCP connection that has seen only a
    /// SYN (handshake not finished); at least 1.
    pub syn_timeout_s: u32,
    /// Idle timeout, in seconds, of an established TCP connection; at
    /// least 1. Clients idle for longer need TCP keepalives below it.
    pub established_timeout_s: u32,
    /// Idle timeout, in seconds, of a TCP connection after a FIN; at least 1.
    pub closing_timeout_s: u32,
    /// Idle timeout, in seconds, of a TCP connection after a RST; at least 1.
    pub closed_timeout_s: u32,
    /// Idle timeout, in seconds, of a UDP flow; at least 1.
    pub udp_timeout_s: u32,
    /// Connections examined for expiry in each pass of a worker's loop,
    /// 1..=4096: bounds the time one pass spends sweeping.
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
    /// Unique name, used by services, logs and metrics: 1..=32 characters
    /// of `[A-Za-z0-9_-]`.
    pub name: String,
    /// How a new connection's backend is chosen.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Slots of the Maglev lookup table: a prime, 7..=1048573, at least the
    /// number of backends (the paper recommends 100 slots per backend).
    /// Checked whatever the scheduler.
    #[serde(default = "default_maglev_table_size")]
    pub maglev_table_size: usize,
    /// Key of the flow hash. Every Sluice behind the same ECMP group must
    /// use the same value, so that any of them sends a flow to the same
    /// backend. TOML integers are signed, so 0..=2^63-1 can be written.
    #[serde(default)]
    pub hash_seed: u64,
    /// What happens to the tracked L4 connections of a backend that its
    /// health check takes down.
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
    /// What `balance = "consistent-hash"` hashes; required with it and
    /// allowed only with it.
    pub hash_on: Option<HashOn>,
    /// A cookie name (an HTTP token). When set, L7 responses carry a
    /// `Set-Cookie` of this name that pins the client to the backend that
    /// answered, and requests with it go back there while it is up.
    pub sticky_cookie: Option<String>,
    /// `Max-Age` of that cookie in seconds, at least 1; only with
    /// `sticky_cookie`. None: a session cookie.
    pub sticky_max_age_s: Option<u32>,
    /// Milliseconds to establish a connection to a backend, 1..=600000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u32,
    /// Milliseconds from a request sent to the backend to its response
    /// head, 1..=3600000; beyond it the client gets 504.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u32,
    /// Extra attempts, on another backend when there is one, 0..=10: after
    /// a connection failure, and for idempotent requests answered with a
    /// status in `retry_on_status`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Response statuses, each 500..=599 and listed once, that make an
    /// idempotent request be retried. Empty: only connection failures are.
    #[serde(default)]
    pub retry_on_status: Vec<u16>,
    /// Retries allowed, as a share of requests in percent, 0..=100: bounds
    /// the extra load retries add when backends fail.
    #[serde(default = "default_retry_budget_percent")]
    pub retry_budget_percent: u32,
    /// Idle connections each worker keeps open to each backend for reuse,
    /// 0..=65536.
    #[serde(default = "default_max_idle_per_backend")]
    pub max_idle_per_backend: u32,
    /// `[cluster.health_check]`: active health checks. None: every backend
    /// counts as up, and a request that fails to connect is retried on
    /// another (see `retries`).
    pub health_check: Option<HealthCheck>,
    /// `[cluster.tls]`: L7 listeners speak TLS to the backends, verifying
    /// their certificates (re-encryption). None: plain TCP.
    pub tls: Option<super::tls::ClusterTls>,
}

fn default_connect_timeout_ms() -> u32 {
    2000
}

fn default_response_timeout_ms() -> u32 {
    30_000
}

fn default_retries() -> u32 {
    2
}

fn default_retry_budget_percent() -> u32 {
    20
}

fn default_max_idle_per_backend() -> u32 {
    64
}

fn default_maglev_table_size() -> usize {
    65_537
}

/// `[[cluster.backend]]`: one backend server of a cluster.
///
/// Read through a private mirror of the table, in which `name` is optional;
/// here it is defaulted to the address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "BackendTable")]
pub struct Backend {
    /// The backend's address, IPv4 or IPv6, unicast; unique within the
    /// cluster. Its family must be that of the VIPs of the services that
    /// use the cluster (L7 listeners, which terminate, accept either).
    pub address: IpAddr,
    /// In mode `nat`, the destination port connections are sent to instead
    /// of the client's destination port; 1..=65535. Not allowed when a
    /// service forwards to this cluster in a DSR mode, which cannot change
    /// the port; required when an L7 listener uses the cluster, which
    /// opens connections of its own to the backend.
    pub port: Option<u16>,
    /// Share of new connections, 0..=65535, relative to the cluster's other
    /// backends. 0 drains the backend: its existing connections continue,
    /// new ones go elsewhere.
    pub weight: u32,
    /// Label in logs and metrics; unique within the cluster, 1..=64
    /// characters of `[A-Za-z0-9_.:-]`. Defaults to the address as text.
    pub name: String,
    /// With `[cluster.tls]`: the name sent as SNI to this backend and
    /// verified in its certificate, instead of the cluster's
    /// `server_name`.
    pub tls_server_name: Option<String>,
}

/// `[[cluster.backend]]` exactly as written; see [`Backend`] for the meaning
/// of each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Backend")]
struct BackendTable {
    #[serde(deserialize_with = "host_address")]
    address: IpAddr,
    port: Option<u16>,
    #[serde(default = "default_weight")]
    weight: u32,
    /// See [`Backend::name`]; `None` when left to its default.
    name: Option<String>,
    tls_server_name: Option<String>,
}

fn default_weight() -> u32 {
    1
}

impl From<BackendTable> for Backend {
    fn from(t: BackendTable) -> Backend {
        Backend {
            name: t.name.unwrap_or_else(|| t.address.to_string()),
            address: t.address,
            port: t.port,
            weight: t.weight,
            tls_server_name: t.tls_server_name,
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
    /// Unique name, used by logs and metrics: 1..=32 characters of
    /// `[A-Za-z0-9_-]`.
    pub name: String,
    /// The virtual address clients connect to, IPv4 or IPv6; not an address
    /// of a `[[port]]`.
    #[serde(deserialize_with = "host_address")]
    pub vip: IpAddr,
    /// The destination port, or 0 for every port of `vip` and `protocol`.
    /// No two services share a vip, port and protocol, and a port-0 service
    /// is the only one on its vip and protocol.
    pub port: u16,
    /// The transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// How packets are forwarded to the backends.
    #[serde(default)]
    pub mode: ForwardMode,
    /// The `[[cluster]]` whose backends serve this service; its backends
    /// have the vip's family.
    pub cluster: String,
    /// The `[[port]]` on whose link Sluice answers ARP/NDP for the vip.
    pub ingress: String,
    /// Mode `nat` only: the source addresses Sluice uses towards backends,
    /// each an address of a `[[port]]` (without prefix length) of the vip's
    /// family. Empty: the address of the egress port in the backend's
    /// family.
    #[serde(default, deserialize_with = "host_addresses")]
    pub snat: Vec<IpAddr>,
}

impl Service {
    /// The name of the cluster this service forwards to.
    pub fn cluster_name(&self) -> &str {
        &self.cluster
    }

    /// The name of the port on which the vip is announced.
    pub fn ingress_name(&self) -> &str {
        &self.ingress
    }
}

/// An address of one host, parsed with a hint when a prefix was given.
struct HostAddress(IpAddr);

impl FromStr for HostAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<HostAddress, String> {
        match text.parse::<IpAddr>() {
            Ok(ip) => Ok(HostAddress(ip)),
            Err(_) if text.contains('/') => Err(format!(
                "invalid IP address {text:?}: give a single address, without a prefix length"
            )),
            Err(_) => Err(format!(
                "invalid IP address {text:?}: expected an IPv4 or IPv6 address such as \"10.0.0.1\" or \"fd00::1\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for HostAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostAddress, D::Error> {
        d.deserialize_str(Parse::new("an IP address such as \"10.0.0.1\""))
    }
}

/// `vip`, `address`: one IP address.
pub(super) fn host_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    HostAddress::deserialize(d).map(|HostAddress(ip)| ip)
}

/// `snat`: IP addresses, each parsed inside its own element so that an
/// error points at that element.
pub(super) fn host_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<HostAddress>::deserialize(d).map(|v| v.into_iter().map(|HostAddress(ip)| ip).collect())
}
