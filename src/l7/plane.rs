//! The compiled L7 configuration the workers read: listeners with their
//! routers and limits, and the per-request policy of each cluster. Built by
//! the control thread (`control::compile`) and published inside a
//! [`crate::net::plane::Plane`]; immutable once published.
//!
//! Backends are the L4 ones ([`crate::net::services::BackendPlane`]):
//! a cluster here is indexed like `Services::clusters`, and its members are
//! the same backend ids, so counters and health state are shared.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use hashbrown::HashMap;

use super::http::Limits;
use super::router::Router;

/// How a cluster picks the backend of each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    WeightedRoundRobin,
    /// Power of two random choices on requests in flight per weight.
    LeastRequest,
    Random,
    ConsistentHash(HashOn),
}

/// The key of [`Balance::ConsistentHash`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    Source,
    /// Lowercase header name.
    Header(Vec<u8>),
    Cookie(Vec<u8>),
}

/// What a health check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path`, status in `expect`.
    Http,
    /// The connection is accepted (with `[cluster.tls]`: the TLS
    /// handshake is done).
    Tcp,
    /// `GET path` over TLS with the check's own settings
    /// ([`L7Cluster::health_tls`]), status in `expect`.
    Https,
    /// A datagram `send`; a reply containing `expect` passes.
    Udp,
}

/// Active health check of a cluster's backends (the port of each backend's
/// check is its [`crate::net::services::BackendPlane::check_port`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// HTTP: the request target.
    pub path: String,
    /// `None`: the backend's address.
    pub host: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// Inclusive range of statuses that count as healthy.
    pub expect: (u16, u16),
    /// UDP: the datagram sent.
    pub send: Vec<u8>,
    /// UDP: what the reply must contain (empty: any reply).
    pub expect_bytes: Vec<u8>,
    /// L4 NAT: new connections in a row answered with a RST that take the
    /// backend down (0: off).
    pub passive_rst_limit: u32,
}

/// Per-request policy of one cluster (index as in `Services::clusters`).
#[derive(Clone, Debug)]
pub struct L7Cluster {
    pub balance: Balance,
    pub sticky_cookie: Option<Vec<u8>>,
    pub sticky_max_age_s: Option<u32>,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub retries: u32,
    pub retry_on_status: Vec<u16>,
    pub retry_budget_percent: u32,
    pub max_idle_per_backend: u32,
    pub health: Option<HealthCheck>,
    /// `[cluster.tls]`: TLS to the backends. None: plain TCP.
    pub tls: Option<Arc<UpstreamTls>>,
    /// The TLS of `type = "https"` health checks (their `ca`,
    /// `server_name`, `verify`).
    pub health_tls: Option<Arc<UpstreamTls>>,
}

/// How a cluster's upstream connections (and HTTP health probes) speak
/// TLS to its backends.
#[derive(Debug)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// [`crate::l7::tls::settings_digest`] of the files `config` was made
    /// from: pooled connections are keyed on it (with the name).
    pub settings: [u8; 32],
    /// The cluster's `server_name`; None: each backend's address.
    pub name: Option<ServerName<'static>>,
    /// Backends' own `tls_server_name`, by address.
    pub by_backend: HashMap<IpAddr, ServerName<'static>>,
}

impl UpstreamTls {
    /// The name backend `addr` is sent (SNI) and verified by.
    pub fn name_for(&self, addr: IpAddr) -> ServerName<'static> {
        self.by_backend
            .get(&addr)
            .or(self.name.as_ref())
            .cloned()
            .unwrap_or_else(|| ServerName::IpAddress(addr.into()))
    }

    /// Whether upstream connection `t` to backend `addr` was made under
    /// these settings and this backend's name: if not (a reload changed
    /// the CA, the client certificate or the name), it must not carry
    /// another request.
    pub fn made(&self, t: &crate::l7::tls::Tls, addr: IpAddr) -> bool {
        match self.by_backend.get(&addr).or(self.name.as_ref()) {
            Some(n) => t.made_with(&self.settings, n),
            None => t.made_with(&self.settings, &ServerName::IpAddress(addr.into())),
        }
    }
}

impl Default for L7Cluster {
    fn default() -> Self {
        L7Cluster {
            balance: Balance::RoundRobin,
            sticky_cookie: None,
            sticky_max_age_s: None,
            connect_timeout_ms: 2000,
            response_timeout_ms: 30_000,
            retries: 2,
            retry_on_status: Vec::new(),
            retry_budget_percent: 20,
            max_idle_per_backend: 64,
            health: None,
            tls: None,
            health_tls: None,
        }
    }
}

/// Socket buffer sizes of a listener's connections, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffers {
    pub client_rx: usize,
    pub client_tx: usize,
    pub upstream_rx: usize,
    pub upstream_tx: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            client_rx: 64 * 1024,
            client_tx: 64 * 1024,
            upstream_rx: 64 * 1024,
            upstream_tx: 64 * 1024,
        }
    }
}

/// Timeouts of a listener, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake_ms: u64,
    pub header_ms: u64,
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake_ms: 10_000,
            header_ms: 10_000,
            idle_ms: 60_000,
        }
    }
}

/// One `[[listener]]`.
#[derive(Clone, Debug)]
pub struct ListenerPlane {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub router: Router,
    pub limits: Limits,
    pub buffers: Buffers,
    pub timeouts: Timeouts,
    /// Client connections per worker, and half-open ones among them.
    pub max_connections: u32,
    pub max_half_open: u32,
    /// Half-open connections per worker from which SYNs are answered
    /// with SYN cookies; None: no cookies.
    pub syn_cookie_threshold: Option<u32>,
    /// Source addresses towards backends; empty: each backend's `src`.
    pub snat: Vec<IpAddr>,
    /// `protocol = "https"`: the TLS configuration, shared by every worker
    /// (and with it the session ticket key).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// TLS handshakes in progress per worker.
    pub max_tls_handshakes: u32,
    /// Send the TLS facts to backends ([`super::http::TLS_FIELDS`]).
    pub tls_headers: bool,
}

/// Everything L7 in a plane.
#[derive(Clone, Debug, Default)]
pub struct L7Plane {
    pub listeners: Vec<ListenerPlane>,
    /// By cluster index; clusters no listener uses keep the defaults.
    pub clusters: Vec<L7Cluster>,
    index: HashMap<(IpAddr, u16), u16>,
}

impl L7Plane {
    pub fn new(listeners: Vec<ListenerPlane>, clusters: Vec<L7Cluster>) -> L7Plane {
        let index = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.addr, l.port), i as u16))
            .collect();
        L7Plane {
            listeners,
            clusters,
            index,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The listener on `addr:port`, if any.
    #[inline]
    pub fn listener(&self, addr: IpAddr, port: u16) -> Option<u16> {
        if self.listeners.is_empty() {
            return None;
        }
        self.index.get(&(addr, port)).copied()
    }

    pub fn cluster(&self, index: usize) -> &L7Cluster {
        static DEFAULT: std::sync::OnceLock<L7Cluster> = std::sync::OnceLock::new();
        self.clusters
            .get(index)
            .unwrap_or_else(|| DEFAULT.get_or_init(L7Cluster::default))
    }
}
