//! The L7 tables: `[[listener]]` with its `[[listener.route]]`s, and the
//! keys of `[[cluster]]` that only L7 listeners read (`balance`, `hash_on`,
//! stickiness, timeouts, retries, `[cluster.health_check]`).
//!
//! As in `sections.rs`, only types and single values are checked here;
//! ranges and relations are checked in `validate_l7.rs`. A route in the
//! router's terms is built in `control/compile.rs`.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::sections::Cluster;
use super::tls::{ClientAuth, ListenerCertificate, TlsVersion};
use super::types::{dflt, parsed, parsed_vec, yes, Text};
use super::{join, plural, vip_port};
use crate::l7::http::is_valid_field_name;

// `[[cluster]]`, L7 keys.

/// How an L7 listener picks the backend of each request (not of each
/// connection: one client connection may send requests to several backends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each backend in turn, ignoring weights (a weight of 0 still drains).
    #[default]
    RoundRobin,
    /// Each backend in turn, in proportion to its weight (smooth weighted
    /// round robin, as nginx does).
    WeightedRoundRobin,
    /// Two backends drawn at random, the one with fewer requests in flight
    /// relative to its weight taken ("power of two choices", Mitzenmacher
    /// 2001), as this worker counts them.
    LeastRequest,
    /// A backend drawn at random, in proportion to its weight.
    Random,
    /// A consistent hash of the key named by `hash_on`, through the
    /// cluster's Maglev table (`maglev_table_size`, `hash_seed`): requests
    /// with the same key go to the same backend while it is up.
    ConsistentHash,
}

spelled!(Balance {
    RoundRobin => "round-robin",
    WeightedRoundRobin => "weighted-round-robin",
    LeastRequest => "least-request",
    Random => "random",
    ConsistentHash => "consistent-hash",
});

/// What `balance = "consistent-hash"` hashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashOn {
    /// `"source"`: the client's address (without port).
    Source,
    /// `"header:NAME"`: the value of the first field line named NAME
    /// (case-insensitive); requests without it are balanced round-robin.
    Header(String),
    /// `"cookie:NAME"`: the value of the first cookie named NAME; requests
    /// without it are balanced round-robin.
    Cookie(String),
}

const HASH_ON_FORMS: &str =
    "expected \"source\", \"header:NAME\" or \"cookie:NAME\", NAME being an HTTP token such as \
     X-User-Id or session";

impl Text for HashOn {
    const EXPECTING: &'static str = "\"source\", \"header:NAME\" or \"cookie:NAME\"";

    fn parse(text: &str) -> Result<HashOn, String> {
        if text == "source" {
            return Ok(HashOn::Source);
        }
        let (make, name): (fn(String) -> HashOn, &str) =
            if let Some(name) = text.strip_prefix("header:") {
                (HashOn::Header, name)
            } else if let Some(name) = text.strip_prefix("cookie:") {
                (HashOn::Cookie, name)
            } else {
                return Err(format!("invalid hash_on {text:?}: {HASH_ON_FORMS}"));
            };
        if !is_valid_field_name(name.as_bytes()) {
            return Err(format!(
                "invalid hash_on {text:?}: {name:?} is not an HTTP token; {HASH_ON_FORMS}"
            ));
        }
        Ok(make(name.to_string()))
    }
}

impl<'de> Deserialize<'de> for HashOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashOn, D::Error> {
        parsed(d)
    }
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::Source => f.write_str("source"),
            HashOn::Header(name) => write!(f, "header:{name}"),
            HashOn::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

/// What a health check sends and what passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckType {
    /// `GET path`; a status in `expect_status` passes.
    #[default]
    Http,
    /// A TCP connection that is accepted passes (it is then reset).
    Tcp,
    /// `GET path` over TLS, the backend's certificate verified against
    /// `ca` (or not at all with `verify = false`); a status in
    /// `expect_status` passes.
    Https,
    /// A datagram (`send` or `send_hex`); a reply that contains `expect`
    /// (or `expect_hex`; any reply without either) passes, an ICMP
    /// destination unreachable fails at once.
    Udp,
}

spelled!(CheckType { Http => "http", Tcp => "tcp", Https => "https", Udp => "udp" });

/// Most bytes a UDP check sends (`send`, `send_hex`): one datagram that
/// fits any link of IPv6's minimum MTU.
pub const MAX_CHECK_SEND: usize = 1024;

/// Most bytes a UDP check's reply must contain (`expect`, `expect_hex`).
pub const MAX_CHECK_EXPECT: usize = 256;

/// The bytes of a payload written as text (`Some(text)`, sent as its UTF-8
/// bytes) or as hex (`hex`): pairs of hex digits, optionally separated by
/// spaces or colons (`"12 34 01 00"`, `"12:34:01:00"`, `"12340100"`).
pub fn payload_bytes(text: Option<&str>, hex: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    let (text, hex) = match (text, hex) {
        (Some(t), _) => return Ok(Some(t.as_bytes().to_vec())),
        (None, None) => return Ok(None),
        (None, Some(h)) => (h, h.bytes().filter(|b| !matches!(b, b' ' | b':' | b'\t'))),
    };
    let digits: Vec<u8> = hex.collect();
    if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "{text:?} is not hex: expected pairs of hex digits, optionally separated by spaces or \
             colons, such as \"12 34 01 00\""
        ));
    }
    let nibble = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
    Ok(Some(
        digits
            .chunks(2)
            .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
            .collect(),
    ))
}

/// `[cluster.health_check]`: active health checks of the cluster's
/// backends, sent by worker 0 through the data plane, for L7 listeners and
/// L4 services alike. A backend that fails `fall` checks in a row takes no
/// new requests or connections until it passes `rise` in a row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `"http"` (default), `"https"`, `"tcp"` or `"udp"`.
    #[serde(default, rename = "type")]
    pub check: CheckType,
    /// The target of `GET`, such as `/healthz`; only, and required, with
    /// `http` and `https`.
    pub path: Option<String>,
    /// The port checked; none: the backend's, else the services' common one.
    pub port: Option<u16>,
    /// The `Host` header, `host[:port]`; none: the backend's address.
    pub host: Option<String>,
    /// Milliseconds between two checks of one backend, 100..=3600000.
    #[serde(default = "dflt::<2000, _>")]
    pub interval_ms: u32,
    /// Milliseconds a check may take, at least 1 and below `interval_ms`.
    #[serde(default = "dflt::<1000, _>")]
    pub timeout_ms: u32,
    /// Passed checks in a row that bring a backend back, 1..=100.
    #[serde(default = "dflt::<2, _>")]
    pub rise: u32,
    /// Failed checks in a row that take a backend out, 1..=100.
    #[serde(default = "dflt::<3, _>")]
    pub fall: u32,
    /// The statuses that pass, `[lo, hi]`, each 100..=599, lo <= hi.
    #[serde(default = "default_expect_status", deserialize_with = "status_range")]
    pub expect_status: [u16; 2],
    /// `udp`: the datagram to send, as text; or `send_hex`.
    pub send: Option<String>,
    /// `udp`: the datagram to send, in hex ([`payload_bytes`]).
    pub send_hex: Option<String>,
    /// `udp`: what a reply must contain, as text; or `expect_hex`. Neither:
    /// any reply passes.
    pub expect: Option<String>,
    /// `udp`: what a reply must contain, in hex.
    pub expect_hex: Option<String>,
    /// `https`: PEM file of the CAs the backends' certificates chain to;
    /// required unless `verify = false`.
    pub ca: Option<std::path::PathBuf>,
    /// `https`: the name sent as SNI and verified; none: the backend's
    /// address, verified against the certificate's IP addresses.
    pub server_name: Option<String>,
    /// `https`: `false` skips certificate verification (no `ca` then).
    #[serde(default = "yes")]
    pub verify: bool,
    /// L4 NAT services: new TCP connections in a row answered with a RST
    /// that take a backend down at once, 0..=10000; 0 (default): off.
    #[serde(default)]
    pub passive_rst_limit: u32,
}

fn default_expect_status() -> [u16; 2] {
    [200, 399]
}

/// `expect_status`: exactly two integers, with a message that shows the form.
fn status_range<'de, D: Deserializer<'de>>(d: D) -> Result<[u16; 2], D::Error> {
    let v = Vec::<u16>::deserialize(d)?;
    match v[..] {
        [lo, hi] => Ok([lo, hi]),
        _ => Err(de::Error::custom(format!(
            "expect_status has {} elements: expected two status codes [lo, hi], such as [200, 399]",
            v.len()
        ))),
    }
}

// `[[listener]]`.

/// The application protocol of a listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerProtocol {
    /// HTTP/1.1 (and 1.0) over TCP, terminated by Sluice.
    #[default]
    Http,
    /// HTTP/1.1 over TLS 1.2 or 1.3 (ALPN `http/1.1`), terminated by
    /// Sluice with the listener's `[[listener.certificate]]`s.
    Https,
}

spelled!(ListenerProtocol { Http => "http", Https => "https" });

/// `[[listener]]`: a VIP and TCP port on which Sluice terminates client
/// connections, reads requests and sends each to a cluster chosen by its
/// routes.
///
/// Sizes and counts are per worker: every worker accepts up to
/// `max_connections` on each listener, with buffers allocated at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique among listeners and services: 1..=32 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// The virtual address clients connect to; not an address of a port.
    #[serde(deserialize_with = "parsed")]
    pub address: IpAddr,
    /// The TCP port, 1..=65535, not taken by another listener or service.
    pub port: u16,
    /// The application protocol.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// The `[[port]]` on whose link Sluice answers ARP/NDP for the address.
    pub ingress: String,
    /// Source addresses towards backends (each of a port; a backend uses
    /// those of its family); none of a family: the egress port's address.
    #[serde(default, deserialize_with = "parsed_vec")]
    pub snat: Vec<IpAddr>,
    /// The `[[cluster]]` of requests that match no route; none: 404.
    pub default_cluster: Option<String>,
    /// Receive buffer of each client connection, bytes, 4096..=16777216.
    #[serde(default = "dflt::<65536, _>")]
    pub client_rx_buffer: u32,
    /// Send buffer of each client connection, bytes, 4096..=16777216.
    #[serde(default = "dflt::<65536, _>")]
    pub client_tx_buffer: u32,
    /// Receive buffer of each backend connection, bytes, 4096..=16777216.
    #[serde(default = "dflt::<65536, _>")]
    pub upstream_rx_buffer: u32,
    /// Send buffer of each backend connection, bytes, 4096..=16777216.
    #[serde(default = "dflt::<65536, _>")]
    pub upstream_tx_buffer: u32,
    /// Client connections per worker, 1..=4194304.
    #[serde(default = "dflt::<16384, _>")]
    pub max_connections: u32,
    /// Client connections per worker in the TCP handshake,
    /// 1..=`max_connections`: bounds what a SYN flood can hold.
    #[serde(default = "dflt::<4096, _>")]
    pub max_half_open: u32,
    /// Answer SYNs with SYN cookies (RFC 4987 §3.6) from
    /// `syn_cookie_threshold` half-open connections on.
    #[serde(default = "yes")]
    pub syn_cookies: bool,
    /// Half-open connections per worker from which SYNs get a cookie,
    /// 0..=4194304.
    #[serde(default = "dflt::<256, _>")]
    pub syn_cookie_threshold: u32,
    /// Milliseconds a client has to finish the TCP handshake, 1..=86400000.
    #[serde(default = "dflt::<10000, _>")]
    pub handshake_timeout_ms: u32,
    /// Milliseconds a client has to send a request head, 1..=86400000 (408).
    #[serde(default = "dflt::<10000, _>")]
    pub header_timeout_ms: u32,
    /// Milliseconds a connection may be idle between requests, or a body or
    /// tunnel without a byte, 1..=86400000.
    #[serde(default = "dflt::<60000, _>")]
    pub idle_timeout_ms: u32,
    /// Largest request head, 1024..=1048576 and at most `client_rx_buffer`
    /// (431).
    #[serde(default = "dflt::<16384, _>")]
    pub max_head_bytes: u32,
    /// Most field lines in a request head, 1..=128 (431).
    #[serde(default = "dflt::<100, _>")]
    pub max_headers: u32,
    /// Longest request-target, 16..=`max_head_bytes` (414).
    #[serde(default = "dflt::<8192, _>")]
    pub max_uri_bytes: u32,
    /// Largest request body (413); 0: no limit.
    #[serde(default = "dflt::<{ 1 << 30 }, _>")]
    pub max_body_bytes: u64,
    /// `[[listener.route]]`: tried in file order, the first match wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<ListenerRoute>,
    /// `[[listener.certificate]]`: with `https`, at least one; picked by SNI.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<ListenerCertificate>,
    /// The oldest TLS version accepted, `"1.2"` (default) or `"1.3"`.
    pub tls_min_version: Option<TlsVersion>,
    /// TLS handshakes in progress per worker, 1..=1000000; beyond it new
    /// connections are reset.
    #[serde(default = "dflt::<1024, _>")]
    pub max_tls_handshakes: u32,
    /// Refuse clients whose server name no certificate answers.
    #[serde(default)]
    pub sni_strict: bool,
    /// Send the TLS facts of the client connection to backends
    /// (`X-Forwarded-TLS-*`, dropping such lines from the client).
    #[serde(default)]
    pub tls_headers: bool,
    /// Client certificates: `"none"` (default), `"request"` or `"require"`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM file of the CAs client certificates must chain to.
    pub client_ca: Option<std::path::PathBuf>,
    /// Session ticket keys (lines of 64 hex digits, the first encrypts);
    /// none: a random key per process, rotated every 6 hours.
    pub ticket_key_file: Option<std::path::PathBuf>,
}

/// `[[listener.route]]`: conditions on a request, all of which must hold
/// (none: every request), and where the request goes.
///
/// Name/value tables keep their file order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerRoute {
    /// `"example.com"` (case-insensitive, port ignored) or `"*.example.com"`.
    pub host: Option<String>,
    /// A segment-aware path prefix (`/api`: `/api`, `/api/x`, not `/apix`).
    pub path_prefix: Option<String>,
    /// The exact path, without query; not with `path_prefix`.
    pub path_exact: Option<String>,
    /// The method, case-sensitive (`GET`).
    pub method: Option<String>,
    /// Field name → value a field line must have; `"*"`: present.
    #[serde(default, deserialize_with = "name_values")]
    pub headers: Vec<(String, String)>,
    /// Cookie name → value; `"*"`: present.
    #[serde(default, deserialize_with = "name_values")]
    pub cookies: Vec<(String, String)>,
    /// Query parameter name → value (percent-decoded); `"*"`: present.
    #[serde(default, deserialize_with = "name_values")]
    pub query: Vec<(String, String)>,
    /// The server name the client sent (SNI), compared like `host`; https only.
    pub sni: Option<String>,
    /// The `[[cluster]]` of matching requests; required unless redirecting.
    pub cluster: Option<String>,
    /// Redirect to `https://` with this status (301 or 308); http only.
    pub redirect_https: Option<u16>,
    /// The port in the redirect's `Location`; none or 443: no port.
    pub redirect_https_port: Option<u16>,
    /// Replaces the `path_prefix` part of the path sent to the backend.
    pub rewrite_prefix: Option<String>,
    /// Request fields to replace (`Host` replaces the host sent).
    #[serde(default, deserialize_with = "name_values")]
    pub request_headers_set: Vec<(String, String)>,
    /// Request fields to append.
    #[serde(default, deserialize_with = "name_values")]
    pub request_headers_add: Vec<(String, String)>,
    /// Request field names to drop.
    #[serde(default)]
    pub request_headers_remove: Vec<String>,
    /// Response fields to replace.
    #[serde(default, deserialize_with = "name_values")]
    pub response_headers_set: Vec<(String, String)>,
    /// Response fields to append.
    #[serde(default, deserialize_with = "name_values")]
    pub response_headers_add: Vec<(String, String)>,
    /// Response field names to drop.
    #[serde(default)]
    pub response_headers_remove: Vec<String>,
}

/// An inline table of strings, in file order (toml's own maps are sorted
/// unless its `preserve_order` feature is on; the deserializer itself
/// hands keys over in file order).
fn name_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of strings, such as { \"X-Canary\" = \"1\" }")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry::<String, String>()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    d.deserialize_map(V)
}

impl Listener {
    /// The names of the clusters this listener sends requests to: the
    /// default one, then each route's, in file order (with repeats).
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        let routes = self.routes.iter().filter_map(|r| r.cluster.as_deref());
        self.default_cluster.as_deref().into_iter().chain(routes)
    }

    /// Bytes of buffer one client connection may hold at once: its own
    /// two buffers, one backend connection's, and 2048 for the TCP and
    /// HTTP state.
    pub fn bytes_per_connection(&self) -> u64 {
        [
            self.client_rx_buffer,
            self.client_tx_buffer,
            self.upstream_rx_buffer,
            self.upstream_tx_buffer,
            2048,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

// `sluice check` and reloads.

impl Listener {
    /// The first key that sizes memory allocated at start-up (buffers,
    /// connection counts) and differs in `new`, with both values.
    pub(super) fn memory_differs(&self, new: &Listener) -> Option<String> {
        let memory = |l: &Listener| {
            [
                ("client_rx_buffer", l.client_rx_buffer),
                ("client_tx_buffer", l.client_tx_buffer),
                ("upstream_rx_buffer", l.upstream_rx_buffer),
                ("upstream_tx_buffer", l.upstream_tx_buffer),
                ("max_connections", l.max_connections),
                ("max_half_open", l.max_half_open),
            ]
        };
        let pairs = memory(self).into_iter().zip(memory(new));
        let ((key, old), (_, new)) = pairs.into_iter().find(|(old, new)| old != new)?;
        Some(format!("{key} ({old} now, {new} in the new config)"))
    }

    /// The listener's lines of [`super::Config::summary`].
    pub(super) fn write_summary(&self, s: &mut String) -> fmt::Result {
        let default = match self.default_cluster.as_deref() {
            Some(c) => format!("default cluster {c}"),
            None => "no default cluster (404)".to_string(),
        };
        let snat = match self.snat.is_empty() {
            true => "snat from the egress port's address".to_string(),
            false => format!("snat {}", join(&self.snat)),
        };
        let (name, protocol, port) = (&self.name, self.protocol, &self.ingress);
        let (vip, n) = (vip_port(self.address, self.port), self.routes.len());
        writeln!(
            s,
            "listener {name}: {protocol}://{vip} on port {port}, {n} route{}, {default}, {snat}",
            plural(n)
        )?;
        let memory = u64::from(self.max_connections) * self.bytes_per_connection();
        writeln!(
            s,
            "  {} connections per worker ({} half-open), buffers client {}/{} upstream {}/{} \
             bytes (rx/tx): {:.1} MiB per worker",
            self.max_connections,
            self.max_half_open,
            self.client_rx_buffer,
            self.client_tx_buffer,
            self.upstream_rx_buffer,
            self.upstream_tx_buffer,
            memory as f64 / f64::from(1 << 20)
        )?;
        let body = match self.max_body_bytes {
            0 => "unlimited".to_string(),
            n => format!("{n} bytes"),
        };
        writeln!(
            s,
            "  timeouts handshake {} ms, header {} ms, idle {} ms; limits head {} bytes, {} \
             headers, uri {} bytes, body {body}",
            self.handshake_timeout_ms,
            self.header_timeout_ms,
            self.idle_timeout_ms,
            self.max_head_bytes,
            self.max_headers,
            self.max_uri_bytes
        )?;
        for (j, r) in self.routes.iter().enumerate() {
            writeln!(s, "  route {j}: {r}")?;
        }
        Ok(())
    }
}

/// `host api.example.com, path_prefix /api -> cluster api, rewrite /api to /`.
impl fmt::Display for ListenerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = [
            ("sni", &self.sni),
            ("host", &self.host),
            ("path_prefix", &self.path_prefix),
            ("path_exact", &self.path_exact),
            ("method", &self.method),
        ];
        let keys = keys
            .into_iter()
            .filter_map(|(key, v)| Some(format!("{key} {}", v.as_ref()?)));
        let pairs = [
            ("header", &self.headers),
            ("cookie", &self.cookies),
            ("query", &self.query),
        ];
        let pairs = pairs.into_iter().flat_map(|(what, pairs)| {
            pairs.iter().map(move |(n, v)| match v.as_str() {
                "*" => format!("{what} {n} present"),
                v => format!("{what} {n} = {v}"),
            })
        });
        let when: Vec<String> = keys.chain(pairs).collect();
        match when.is_empty() {
            true => f.write_str("every request")?,
            false => f.write_str(&when.join(", "))?,
        }
        match (self.redirect_https, self.cluster.as_deref()) {
            (Some(status), _) => write!(f, " -> redirect to https ({status})")?,
            (None, Some(c)) => write!(f, " -> cluster {c}")?,
            (None, None) => f.write_str(" -> nothing")?,
        }
        if let (Some(from), Some(to)) = (&self.path_prefix, &self.rewrite_prefix) {
            write!(f, ", rewrite {from} to {to}")?;
        }
        let request = self.request_headers_set.len()
            + self.request_headers_add.len()
            + self.request_headers_remove.len();
        let response = self.response_headers_set.len()
            + self.response_headers_add.len()
            + self.response_headers_remove.len();
        if request + response > 0 {
            let edits = format!("{request} on the request, {response} on the response");
            write!(f, ", header edits: {edits}")?;
        }
        Ok(())
    }
}

/// The L7 line(s) of a cluster in [`super::Config::summary`], for a cluster
/// a listener uses.
pub(super) fn write_cluster_summary(c: &Cluster, s: &mut String) -> fmt::Result {
    let (size, seed) = (c.maglev_table_size, c.hash_seed);
    let balance = match &c.hash_on {
        Some(on) => format!(
            "{} on {on} (maglev table {size}, hash seed {seed})",
            c.balance
        ),
        None => c.balance.to_string(),
    };
    let sticky = match (&c.sticky_cookie, c.sticky_max_age_s) {
        (Some(name), Some(age)) => format!(", sticky cookie {name} (max-age {age} s)"),
        (Some(name), None) => format!(", sticky cookie {name} (session)"),
        _ => String::new(),
    };
    let on_status = match c.retry_on_status.is_empty() {
        true => "connection failures".to_string(),
        false => format!("connection failures and {}", join(&c.retry_on_status)),
    };
    let (connect, response, retries) = (c.connect_timeout_ms, c.response_timeout_ms, c.retries);
    let (budget, idle) = (c.retry_budget_percent, c.max_idle_per_backend);
    let y = if retries == 1 { "y" } else { "ies" };
    writeln!(
        s,
        "  l7: balance {balance}{sticky}; timeouts connect {connect} ms, response {response} ms; \
         {retries} retr{y} on {on_status} (budget {budget}%); {idle} idle connections per backend"
    )?;
    write_health_summary(c, s)
}

/// The health check line(s) of a cluster in [`super::Config::summary`],
/// whatever uses it.
pub(super) fn write_health_summary(c: &Cluster, s: &mut String) -> fmt::Result {
    let Some(hc) = &c.health_check else {
        return Ok(());
    };
    let host = hc
        .host
        .as_ref()
        .map_or(String::new(), |h| format!(", Host {h}"));
    let port = hc.port.map_or(String::new(), |p| format!(" on port {p}"));
    let (every, timeout, rise, fall) = (hc.interval_ms, hc.timeout_ms, hc.rise, hc.fall);
    let every = format!(
        "every {every} ms (timeout {timeout} ms), up after {rise} passes, down after {fall} \
         failures"
    );
    let status = format!(
        "pass on status {}..={}",
        hc.expect_status[0], hc.expect_status[1]
    );
    let bytes = |text: &Option<String>, hex: &Option<String>| {
        let bytes = payload_bytes(text.as_deref(), hex.as_deref())
            .ok()
            .flatten();
        format!("{} bytes", bytes.map_or(0, |b| b.len()))
    };
    let what = match (&hc.check, &hc.path) {
        (CheckType::Http, Some(path)) => format!("GET {path}{host}{port} {every}, {status}"),
        (CheckType::Https, Some(path)) => {
            let verify = match (&hc.ca, hc.verify) {
                (Some(ca), true) => format!("certificate verified against {}", ca.display()),
                _ => "certificate not verified".to_string(),
            };
            let name = hc
                .server_name
                .as_ref()
                .map_or(String::new(), |n| format!(" as {n}"));
            format!("GET {path} over TLS{host}{port} {every}, {status}, {verify}{name}")
        }
        (CheckType::Udp, _) => {
            let expect = match (&hc.expect, &hc.expect_hex) {
                (None, None) => "any reply passes".to_string(),
                (e, h) => format!("a reply containing {} passes", bytes(e, h)),
            };
            let send = bytes(&hc.send, &hc.send_hex);
            format!("UDP datagram of {send}{port} {every}, {expect}")
        }
        _ => format!("TCP connect{port} {every}"),
    };
    writeln!(s, "  health check: {what}")?;
    if hc.passive_rst_limit > 0 {
        let n = hc.passive_rst_limit;
        let what = "new connections in a row answered with a RST";
        writeln!(s, "  passive marking: down after {n} {what}")?;
    }
    Ok(())
}
