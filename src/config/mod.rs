//! Configuration: one TOML file, read, checked and summarised here.
//!
//! `docs/CONFIG.md` is the operator's reference for every key; the examples
//! in `dpdk-config/` are kept valid by `tests/config_check.rs`.
//!
//! # Reading
//!
//! [`load`] / [`from_str`] do three things, and a file that gets through
//! all three is one Sluice can run (as far as can be known without the
//! hardware):
//!
//! 1. serde reads the text into [`Config`]: every table denies unknown keys,
//!    every value has its type (prefixes, MACs and addresses are parsed
//!    here), every optional key has its documented default;
//! 2. `validate.rs` checks ranges and relations: unique names and addresses,
//!    next hops inside a connected subnet, workers distinct from the main
//!    lcore, services naming defined clusters and ports, prime Maglev table
//!    sizes, ...;
//! 3. the first failure becomes a [`ConfigError`] that names the file, the
//!    line and column of the offending value, and what was expected:
//!    `sluice.toml:12:8: port "lan" referenced by route is not defined
//!    (defined ports: wan)`.
//!
//! The typed structs keep plain values (no spans) so that the control plane
//! and workers read them directly. The text is parsed once into a
//! `toml_edit` document, which keeps the span of every key, table and value;
//! serde reads the structs from it, and an error's key path is looked up in
//! it only when the error is reported (`spans.rs`).
//!
//! # Reloading
//!
//! On SIGHUP the control thread loads the file again and asks
//! [`Config::check_reloadable`] whether the new config differs only in
//! `[[cluster]]`, `[[service]]`, `[log]` and the parts of `[[listener]]`
//! that do not size memory, the parts that can change while workers run;
//! anything else needs a restart.
//!
//! # Adding a section
//!
//! `[conntrack]`, `[[cluster]]`, `[[service]]` and `[[listener]]` were added
//! this way. Each is a struct in `sections.rs` (with `deny_unknown_fields`,
//! a doc comment per field and defaults where they exist), a field of
//! [`Config`] renamed to the singular table name like `ports`, a check in
//! `validate.rs` run after the sections it refers to, a line in
//! [`Config::summary`], a row in `docs/CONFIG.md`, and a decision in
//! [`Config::check_reloadable`]. The L7 tables have files of their own,
//! `listener.rs` and `validate_l7.rs`, to keep each file short.
//!
//! # Adding a key
//!
//! A key is a field of its table's struct with a one-line doc (what it
//! means and its bounds) and, when it is optional, its default next to it
//! (`#[serde(default = "dflt::<N, _>")]` or `#[serde(default)]`). A value
//! with a form of its own (an address, a MAC) implements `types::Text` and
//! is read with `deserialize_with = "parsed"`; a keyword is a `spelled!`
//! enum. Either way serde reports a malformed value at the value. Its check goes in the function of its
//! section (`validate.rs`, `validate_l7.rs`, `tls.rs`), where checks run in
//! file order: a plain numeric bound is one row of that section's `bounds`
//! or `ranges` table; any other check is one `ensure!(condition, path,
//! "message")`, or a `problem!` with `.see(path, label)` or `.or_at(path)`
//! when it names a second place. Then a row in `docs/CONFIG.md`, a test in
//! `tests.rs` that asserts the error's line and words, and a word in the
//! summary when operators should see the value.

/// `as_str` (the spelling in the config file) and `Display` of a keyword
/// enum; serde reads the same spellings through its `rename` attributes.
macro_rules! spelled {
    ($t:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $t {
            /// The spelling in the config file.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod error;
mod listener;
mod sections;
mod spans;
mod tls;
mod types;
mod validate;
mod validate_l7;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

pub use error::ConfigError;
pub use listener::{
    payload_bytes, Balance, CheckType, HashOn, HealthCheck, Listener, ListenerProtocol,
    ListenerRoute, MAX_CHECK_EXPECT, MAX_CHECK_SEND,
};
pub use sections::{
    Admin, Backend, Cluster, Conntrack, Dataplane, Eal, ForwardMode, Log, LogLevel, Neighbor,
    OnBackendDown, OnWorkerFailure, Port, Protocol, Route, Scheduler, Service,
};
pub use spans::{KeyPath, Position};
pub use tls::{
    load_client_ca, read_ticket_keys, valid_server_name, warnings as tls_warnings, ClientAuth,
    ClusterTls, ListenerCertificate, LoadedCertificate, LoadedClusterTls, TlsVersion,
};
pub use types::{Cidr, Mac, PortDevice};
pub use validate::{
    AF_XDP_FILL_MBUFS, MAX_LCORE, MAX_MAGLEV_TABLE_SIZE, MAX_WEIGHT, MIN_MAGLEV_TABLE_SIZE,
};
pub use validate_l7::MAX_LISTENER_MEMORY;

/// A whole config file, checked. Every table may be left out (`[[port]]`
/// is then reported missing by the checks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[eal]`: DPDK start-up.
    pub eal: Eal,
    /// `[dataplane]`: workers, queues and timers.
    pub dataplane: Dataplane,
    /// `[admin]`: the metrics endpoint.
    pub admin: Admin,
    /// `[log]`: control-thread logging.
    pub log: Log,
    /// `[[port]]`: the Ethernet ports, in file order; at least one.
    #[serde(rename = "port")]
    pub ports: Vec<Port>,
    /// `[[route]]`: static routes, in file order.
    #[serde(rename = "route")]
    pub routes: Vec<Route>,
    /// `[[neighbor]]`: static ARP/NDP entries, in file order.
    #[serde(rename = "neighbor")]
    pub neighbors: Vec<Neighbor>,
    /// `[conntrack]`: per-worker connection tracking of L4 services.
    pub conntrack: Conntrack,
    /// `[[cluster]]`: backend sets, in file order.
    #[serde(rename = "cluster")]
    pub clusters: Vec<Cluster>,
    /// `[[service]]`: the L4 services, in file order. None: Sluice only
    /// routes and answers for its own addresses.
    #[serde(rename = "service")]
    pub services: Vec<Service>,
    /// `[[listener]]`: the L7 listeners, in file order.
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
}

/// The program name at the head of [`Config::eal_argv`].
const PROGRAM: &str = "sluice";

/// Read, parse and check the config file at `path`.
///
/// # Errors
///
/// [`ConfigError::Read`] if the file cannot be read, else
/// [`ConfigError::Invalid`] for the first problem in it; both name the file
/// as `path` displays.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    from_str(&text, &origin)
}

/// Parse and check config text; `origin` names it in errors (usually the
/// file name).
///
/// # Errors
///
/// [`ConfigError::Invalid`] for the first problem in the text, at its line
/// and column.
pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text)
        .map_err(|e| ConfigError::from_toml(e.message(), e.span(), None, text, origin))?;
    let cfg: Config =
        Config::deserialize(toml_edit::de::Deserializer::from(doc.clone())).map_err(|e| {
            ConfigError::from_toml(e.message(), e.span(), Some(doc.as_table()), text, origin)
        })?;
    validate::validate(&cfg)
        .map_err(|p| ConfigError::from_problem(p, Some((text, doc.as_table())), origin))?;
    Ok(cfg)
}

impl Config {
    /// Replace a port's device with a vdev string (CLI `--port-device
    /// NAME=DEVARGS`, used for pcap replay and benchmarks), and check the
    /// config again.
    ///
    /// # Errors
    ///
    /// If no port has that name, or the config with the new device is
    /// invalid (a malformed vdev, a device another port uses). The config
    /// is then left as it was; the error names the option, not the file.
    pub fn override_device(&mut self, port: &str, vdev: &str) -> Result<(), ConfigError> {
        let origin = format!("--port-device {port}={vdev}");
        let Some((i, _)) = self.port(port) else {
            let defined: Vec<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();
            let message = format!(
                "no port named {port:?} (defined ports: {})",
                defined.join(", ")
            );
            return Err(ConfigError::Invalid {
                origin,
                position: None,
                message,
            });
        };
        let old = std::mem::replace(
            &mut self.ports[i].device,
            PortDevice::Vdev(vdev.to_string()),
        );
        if let Err(p) = validate::validate(self) {
            self.ports[i].device = old;
            return Err(ConfigError::from_problem(p, None, &origin));
        }
        Ok(())
    }

    /// The port named `name`, and its index (which is its position in
    /// [`Config::ports`]).
    pub fn port(&self, name: &str) -> Option<(usize, &Port)> {
        self.ports.iter().enumerate().find(|(_, p)| p.name == name)
    }

    /// The cluster named `name`, and its index (which is its position in
    /// [`Config::clusters`]).
    pub fn cluster(&self, name: &str) -> Option<(usize, &Cluster)> {
        self.clusters
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The port L4 health checks of cluster `name` use for a backend with
    /// no `port` (and no `health_check.port`): the port of the services
    /// that forward to the cluster, when they all have the same non-zero
    /// one.
    pub fn check_port(&self, name: &str) -> Option<u16> {
        let mut ports = self
            .services
            .iter()
            .filter(|s| s.cluster == name)
            .map(|s| s.port);
        let first = ports.next()?;
        (first != 0 && ports.all(|p| p == first)).then_some(first)
    }

    /// Whether `new` may replace this running config on a reload (SIGHUP).
    ///
    /// A reload publishes new clusters, services and listeners to the
    /// workers between bursts and may change the log level; everything else
    /// (EAL, workers, queues, conntrack sizing and timeouts, admin, ports,
    /// routes and neighbors) is set up once at start-up. So is the memory of
    /// listeners: which listeners exist (by name), their buffer sizes,
    /// `max_connections` and `max_half_open`; the rest of a listener (its
    /// address, port, routes, timeouts and limits) may change. Apply the
    /// same `--port-device` overrides to `new` as to `self` before comparing.
    ///
    /// # Errors
    ///
    /// A message naming the first section, in file order, that differs and
    /// needs a restart.
    pub fn check_reloadable(&self, new: &Config) -> Result<(), String> {
        let differs = |what: String| {
            Err(format!(
                "{what} differs from the running config and needs a restart: a reload applies only \
                 [[cluster]], [[service]], [log] and [[listener]] (but not which listeners exist, \
                 their buffers or their connection limits)"
            ))
        };
        let first = |sections: [(&'static str, bool); 3]| sections.into_iter().find(|(_, d)| *d);
        let (old, new_) = (self, new);
        if let Some((what, _)) = first([
            ("[eal]", old.eal != new_.eal),
            ("[dataplane]", old.dataplane != new_.dataplane),
            ("[admin]", old.admin != new_.admin),
        ]) {
            return differs(what.to_string());
        }
        let names = |c: &Config| c.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        if names(old) != names(new_) {
            let (now, then) = (names(old).join(", "), names(new_).join(", "));
            return differs(format!(
                "the list of [[port]]s ({now} now, {then} in the new config)"
            ));
        }
        if let Some((p, _)) = old.ports.iter().zip(&new_.ports).find(|(a, b)| a != b) {
            return differs(format!("[[port]] {:?}", p.name));
        }
        if let Some((what, _)) = first([
            ("[[route]]", old.routes != new_.routes),
            ("[[neighbor]]", old.neighbors != new_.neighbors),
            ("[conntrack]", old.conntrack != new_.conntrack),
        ]) {
            return differs(what.to_string());
        }
        let names = |c: &Config| {
            let mut names: Vec<String> = c.listeners.iter().map(|l| l.name.clone()).collect();
            names.sort_unstable();
            names
        };
        if names(old) != names(new_) {
            let list = |c: &Config| match names(c).join(", ") {
                list if list.is_empty() => "none".to_string(),
                list => list,
            };
            let (now, then) = (list(old), list(new_));
            return differs(format!(
                "the set of [[listener]]s ({now} now, {then} in the new config)"
            ));
        }
        for l in &old.listeners {
            let Some(n) = new_.listeners.iter().find(|n| n.name == l.name) else {
                continue;
            };
            if let Some(key) = l.memory_differs(n) {
                return differs(format!("{key} of [[listener]] {:?}", l.name));
            }
        }
        Ok(())
    }

    /// The lcores the EAL must enable: the main lcore and the workers,
    /// ascending.
    pub fn lcores(&self) -> Vec<u32> {
        let mut lcores = vec![self.eal.main_lcore];
        lcores.extend(&self.dataplane.workers);
        lcores.sort_unstable();
        lcores.dedup();
        lcores
    }

    /// The full EAL argv: the program name; `-l` (or, with
    /// `dataplane.worker_cpus`, `--lcores LCORE@CPU,...`), `--main-lcore`
    /// and `--file-prefix` derived from `eal.main_lcore`,
    /// `dataplane.workers` and `eal.file_prefix`; each port's `-a PCI` or
    /// `--vdev SPEC` in port order (DPDK then numbers the ports in that
    /// order); then `eal.args`.
    pub fn eal_argv(&self) -> Vec<String> {
        let (dp, main) = (&self.dataplane, self.eal.main_lcore);
        let (opt, lcores): (_, Vec<String>) = if dp.worker_cpus.is_empty() {
            ("-l", self.lcores().iter().map(u32::to_string).collect())
        } else {
            // The main lcore keeps the CPU of its own number, as with -l.
            let pairs = dp.workers.iter().zip(&dp.worker_cpus);
            let pairs = std::iter::once((&main, &main)).chain(pairs);
            (
                "--lcores",
                pairs.map(|(lcore, cpu)| format!("{lcore}@{cpu}")).collect(),
            )
        };
        let mut argv: Vec<String> = [PROGRAM, opt, &lcores.join(","), "--main-lcore"]
            .map(String::from)
            .into();
        argv.extend([
            main.to_string(),
            "--file-prefix".into(),
            self.eal.file_prefix.clone(),
        ]);
        for p in &self.ports {
            argv.extend(p.device.eal_args().map(str::to_string));
        }
        argv.extend(self.eal.args.iter().cloned());
        argv
    }

    /// What would run, for `sluice check`: EAL argv, lcores, data-plane
    /// sizing, admin and log, each port with device, addresses, MAC, VLAN
    /// and gateways, routes and neighbors, conntrack sizing, each cluster
    /// with its backends and weights (and its L7 settings when a listener
    /// uses it), each service as `vip:port/protocol -> mode -> cluster`,
    /// and each listener with its sizing and routes. Ends with a newline.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_summary(&mut s);
        s
    }

    fn write_summary(&self, s: &mut String) -> std::fmt::Result {
        let argv: Vec<String> = self.eal_argv().iter().map(|a| shell_quote(a)).collect();
        writeln!(s, "eal: {}", argv.join(" "))?;
        let (dp, main) = (&self.dataplane, self.eal.main_lcore);
        let list = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let (n, workers, cpus) = (dp.workers.len(), list(&dp.workers), list(&dp.worker_cpus));
        writeln!(
            s,
            "lcores: main {main}, {n} worker{} on {workers}",
            plural(n)
        )?;
        if !cpus.is_empty() {
            writeln!(
                s,
                "  workers run on CPUs {cpus} (dataplane.worker_cpus: for tests; in production one \
                 worker per isolated core)"
            )?;
        }
        let sleep = dp.idle_sleep_us;
        if sleep > 0 {
            let what = "idle workers pause, then sleep";
            writeln!(s, "  {what} {sleep} us at a time (dataplane.idle_sleep_us)")?;
        }
        writeln!(
            s,
            "dataplane: burst {}, {} mbufs per worker (cache {}), rx/tx descriptors {}/{}, tx \
             drain {} us",
            dp.burst, dp.mbufs, dp.mbuf_cache, dp.rx_desc, dp.tx_desc, dp.tx_drain_us
        )?;
        let (live, retry) = (dp.neighbor_timeout_s, dp.neighbor_retry_ms);
        let what = "neighbors: learned entries live";
        writeln!(s, "{what} {live} s, resolution retried every {retry} ms")?;
        match self.admin.enabled {
            true => writeln!(s, "admin: http://{}/", self.admin.listen)?,
            false => writeln!(s, "admin: disabled")?,
        }
        writeln!(s, "log: {}", self.log.level)?;
        for p in &self.ports {
            writeln!(s, "port {}: {}", p.name, p.device)?;
            let mac = p
                .mac
                .map_or("the device's own".to_string(), |m| m.to_string());
            let vlan = p
                .vlan
                .map_or("untagged".to_string(), |v| format!("vlan {v}"));
            let (mtu, rss) = (p.mtu, if p.rss { "on" } else { "off" });
            writeln!(s, "  mac {mac}, mtu {mtu}, {vlan}, rss {rss}")?;
            for c in &p.addresses {
                writeln!(s, "  address {c} (subnet {})", c.trunc())?;
            }
            if let Some(g) = p.gateway {
                writeln!(s, "  default route 0.0.0.0/0 via {g}")?;
            }
            if let Some(g) = p.gateway6 {
                writeln!(s, "  default route ::/0 via {g}")?;
            }
        }
        for r in &self.routes {
            writeln!(s, "route {} via {} port {}", r.prefix, r.via, r.port)?;
        }
        for n in &self.neighbors {
            let (ip, mac, port) = (n.ip, n.mac, &n.port);
            writeln!(s, "neighbor {ip} is {mac} on port {port} (static)")?;
        }
        self.write_l4_summary(s)?;
        // Every worker polls a queue of every port; af_packet opens one
        // socket (queue pair) unless told otherwise, and the port would
        // fail to start.
        for p in &self.ports {
            let PortDevice::Vdev(v) = &p.device else {
                continue;
            };
            let qpairs = v.split(',').find_map(|a| a.strip_prefix("qpairs="));
            let qpairs = qpairs.map_or(Some(1), |n| n.parse::<usize>().ok());
            if v.starts_with("net_af_packet") && qpairs != Some(n) {
                writeln!(
                    s,
                    "note: port {}: net_af_packet needs qpairs={n} in its device arguments, one \
                     queue pair per worker",
                    p.name
                )?;
            }
        }
        let pci = self
            .ports
            .iter()
            .any(|p| matches!(p.device, PortDevice::Pci(_)));
        if !pci && !self.eal.args.iter().any(|a| a == "--no-pci") {
            writeln!(
                s,
                "note: no port is a PCI device, but eal.args lacks --no-pci: the EAL will probe \
                 (and take) every PCI device bound to a DPDK driver"
            )?;
        }
        Ok(())
    }

    fn write_l4_summary(&self, s: &mut String) -> std::fmt::Result {
        let ct = &self.conntrack;
        let rate = match ct.new_flows_per_sec {
            0 => "new flows unlimited".to_string(),
            n => format!("at most {n} new flows/s (burst {})", ct.new_flows_burst),
        };
        writeln!(
            s,
            "conntrack: {} flows per worker, {rate}; idle timeouts syn {} s, established {} s, \
             closing {} s, closed {} s, udp {} s; {} examined for expiry per loop",
            ct.max_flows,
            ct.syn_timeout_s,
            ct.established_timeout_s,
            ct.closing_timeout_s,
            ct.closed_timeout_s,
            ct.udp_timeout_s,
            ct.expire_budget
        )?;
        // Whether a service, and whether a listener, uses cluster `c`.
        let used = |c: &Cluster| {
            (
                self.services.iter().any(|v| v.cluster == c.name),
                self.listeners
                    .iter()
                    .any(|l| l.cluster_names().any(|n| n == c.name)),
            )
        };
        for c in &self.clusters {
            let (by_service, by_listener) = used(c);
            // The scheduler is for services; a cluster only listeners use
            // shows their `balance` below instead.
            let (size, seed) = (c.maglev_table_size, c.hash_seed);
            let how = match c.scheduler {
                _ if by_listener && !by_service => String::new(),
                Scheduler::Maglev => format!("maglev (table {size}, hash seed {seed}), "),
                Scheduler::SourceHash => format!("source-hash (hash seed {seed}), "),
                other => format!("{other}, "),
            };
            let total: u32 = c.backends.iter().map(|b| b.weight).sum();
            let n = c.backends.len();
            writeln!(
                s,
                "cluster {}: {how}{n} backend{}, total weight {total}",
                c.name,
                plural(n)
            )?;
            for b in &c.backends {
                let to = match b.port {
                    Some(port) => SocketAddr::new(b.address, port).to_string(),
                    None => b.address.to_string(),
                };
                let label = match b.name == b.address.to_string() {
                    true => String::new(),
                    false => format!(" ({})", b.name),
                };
                let drain = if b.weight == 0 { ", draining" } else { "" };
                writeln!(s, "  backend {to}{label}, weight {}{drain}", b.weight)?;
            }
            if by_listener {
                listener::write_cluster_summary(c, s)?;
            } else {
                listener::write_health_summary(c, s)?;
            }
        }
        if self.services.is_empty() {
            writeln!(s, "services: none")?;
        }
        for v in &self.services {
            let snat = match (v.mode, v.snat.as_slice()) {
                (ForwardMode::Nat, []) => ", snat from the egress port's address".to_string(),
                (ForwardMode::Nat, list) => format!(", snat {}", join(list)),
                _ => String::new(),
            };
            let (vip, protocol, mode) = (vip_port(v.vip, v.port), v.protocol, v.mode);
            let (cluster, port) = (&v.cluster, &v.ingress);
            writeln!(
                s,
                "service {}: {vip}/{protocol} -> {mode} -> cluster {cluster}, vip on port \
                 {port}{snat}",
                v.name
            )?;
        }
        for l in &self.listeners {
            l.write_summary(s)?;
        }
        for c in self.clusters.iter().filter(|c| used(c) == (false, false)) {
            writeln!(
                s,
                "note: cluster {} is not used by any service or listener",
                c.name
            )?;
        }
        Ok(())
    }
}

/// `"s"` after a count other than 1.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `a, b, c`.
pub(crate) fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `10.0.0.1:80`, `[fd00::1]:80`, or with `*` for port 0 (every port).
pub(crate) fn vip_port(vip: IpAddr, port: u16) -> String {
    match (vip, port) {
        (IpAddr::V4(a), 0) => format!("{a}:*"),
        (IpAddr::V6(a), 0) => format!("[{a}]:*"),
        _ => SocketAddr::new(vip, port).to_string(),
    }
}

/// `arg` as a POSIX shell word, quoted only when it needs to be.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:=/@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
