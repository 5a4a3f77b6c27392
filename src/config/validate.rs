//! Checks that serde cannot make: ranges, uniqueness, and relations between
//! sections (a route's next hop must be reachable through its port).
//!
//! A check that fails returns a [`Problem`] naming where the offending value
//! is written, by key path; the caller turns that into a line and column.
//! Checks run in file order (sections, then each `[[port]]`, `[[route]]`,
//! `[[neighbor]]`, `[[cluster]]`, `[[service]]`, `[[listener]]` in turn,
//! each after the sections it refers to; the L7 ones are in
//! `validate_l7.rs`) and the first failure is reported, so an operator
//! fixes a file top to bottom.
//!
//! A numeric key with a plain bound is one row of a [`bounds`] table; any
//! other check is an [`ensure!`] (or a [`problem!`] when it names a second
//! place with `see`/`or_at`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::listener::Listener;
use super::sections::{Backend, Cluster, Dataplane, Eal, ForwardMode, Port, Scheduler, Service};
use super::spans::KeyPath;
use super::types::{is_ipv6_link_local, is_reserved_host, Cidr, PortDevice};
use super::{validate_l7, vip_port, Config};
use crate::l4::maglev::{is_prime, next_prime};

/// Highest lcore id + 1 (`RTE_MAX_LCORE` of a default DPDK build).
pub const MAX_LCORE: u32 = 128;

/// Highest CPU id + 1 that the EAL's `--lcores` accepts (`CPU_SETSIZE`).
pub const MAX_CPU: u32 = 1024;

/// Smallest `maglev_table_size` a cluster may ask for.
pub const MIN_MAGLEV_TABLE_SIZE: usize = 7;

/// Largest `maglev_table_size` a cluster may ask for: the largest prime
/// below 2^20 (4 MiB of slots per cluster).
pub const MAX_MAGLEV_TABLE_SIZE: usize = 1_048_573;

/// Highest backend weight.
pub const MAX_WEIGHT: u32 = 65_535;

/// A failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Candidate places, best first; the first the file spells out is used
    /// (the empty path is the start of the file, for what is missing
    /// altogether). A value left at its default is not in the file, so a
    /// check on it names the other value involved as well.
    pub at: Vec<KeyPath>,
    /// What is wrong and what would be right.
    pub message: String,
    /// A related earlier place, such as the first of two duplicates, and
    /// how to call it ("first defined").
    pub see: Option<(KeyPath, &'static str)>,
}

/// `problem!(at, "format", args...)`: a [`Problem`] at `at`.
macro_rules! problem {
    ($at:expr, $($message:tt)+) => {
        Problem::new($at, format!($($message)+))
    };
}
pub(super) use problem;

/// `ensure!(condition, at, "format", args...)`: unless `condition` holds,
/// return `problem!(at, ...)`.
macro_rules! ensure {
    ($condition:expr, $at:expr, $($message:tt)+) => {
        if !$condition {
            return Err(problem!($at, $($message)+));
        }
    };
}
pub(super) use ensure;

impl Problem {
    pub(super) fn new(at: KeyPath, message: String) -> Problem {
        let at = vec![at];
        Problem {
            at,
            message,
            see: None,
        }
    }

    pub(super) fn or_at(mut self, at: KeyPath) -> Problem {
        self.at.push(at);
        self
    }

    pub(super) fn see(mut self, at: KeyPath, label: &'static str) -> Problem {
        self.see = Some((at, label));
        self
    }
}

pub(super) type Check = Result<(), Problem>;

pub(super) fn path(section: &str, key: &str) -> KeyPath {
    KeyPath::root(section).key(key)
}

pub(super) fn item(section: &str, index: usize) -> KeyPath {
    KeyPath::root(section).index(index)
}

/// `value` is within `range`, else "WHAT VALUE is out of range LO..=HI" and
/// `why` at `at`.
pub(super) fn in_range(
    at: KeyPath,
    what: impl std::fmt::Display,
    value: impl Into<u64>,
    range: RangeInclusive<u64>,
    why: &str,
) -> Check {
    let (value, (lo, hi)) = (value.into(), range.clone().into_inner());
    ensure!(
        range.contains(&value),
        at,
        "{what} {value} is out of range {lo}..={hi}{why}"
    );
    Ok(())
}

/// A bound of a key of a section, as its message words it.
enum Bound {
    /// `out of range LO..=HI`.
    Range(u64, u64),
    /// `below the minimum of LO`.
    Min(u64),
    /// `must be at least 1`, then a hint.
    Positive(&'static str),
    /// `must be a power of two in LO..=HI`.
    PowerOfTwo(u64, u64),
}

/// Each `(key, value, bound)` of `[section]`, in order.
fn bounds(section: &str, keys: &[(&str, u64, Bound)]) -> Check {
    for (key, v, bound) in keys {
        let (at, name) = (path(section, key), format!("`{section}.{key}`"));
        let message = match *bound {
            Bound::Range(lo, hi) => {
                in_range(at, name, *v, lo..=hi, "")?;
                continue;
            }
            Bound::Min(lo) if *v < lo => format!("{name} {v} is below the minimum of {lo}"),
            Bound::Positive(hint) if *v < 1 => format!("{name} must be at least 1{hint}"),
            Bound::PowerOfTwo(lo, hi) if !(lo..=hi).contains(v) || !v.is_power_of_two() => {
                format!("{name} {v} must be a power of two in {lo}..={hi}")
            }
            _ => continue,
        };
        return Err(Problem::new(at, message));
    }
    Ok(())
}

/// Check everything; the first problem in file order.
pub fn validate(cfg: &Config) -> Check {
    eal(&cfg.eal)?;
    dataplane(&cfg.dataplane, &cfg.eal)?;
    conntrack(cfg)?;
    ports(cfg)?;
    rx_pool(cfg)?;
    routes(cfg)?;
    neighbors(cfg)?;
    clusters(cfg)?;
    services(cfg)?;
    validate_l7::listeners(cfg)
}

/// EAL options that Sluice derives from other keys, and those keys.
const DERIVED_OPTIONS: &[(&str, &str)] = &[
    ("-l", "`eal.main_lcore` and `dataplane.workers`"),
    ("-c", "`eal.main_lcore` and `dataplane.workers`"),
    (
        "--lcores",
        "`eal.main_lcore`, `dataplane.workers` and `dataplane.worker_cpus`",
    ),
    ("--main-lcore", "`eal.main_lcore`"),
    ("--master-lcore", "`eal.main_lcore`"),
    ("--file-prefix", "`eal.file_prefix`"),
];

fn is_option(arg: &str, opt: &str) -> bool {
    if opt.starts_with("--") {
        arg == opt
            || arg
                .strip_prefix(opt)
                .is_some_and(|rest| rest.starts_with('='))
    } else {
        // Short options take their value attached or separate: `-l0-3`, `-l 0-3`.
        arg.starts_with(opt) && !arg.starts_with("--")
    }
}

fn eal(e: &Eal) -> Check {
    for (i, arg) in e.args.iter().enumerate() {
        if let Some((opt, keys)) = DERIVED_OPTIONS.iter().find(|(opt, _)| is_option(arg, opt)) {
            let at = path("eal", "args").index(i);
            let message = format!("remove {arg:?} from `eal.args`");
            return Err(problem!(
                at,
                "EAL option {opt} is derived from {keys}; {message}"
            ));
        }
    }
    let (lcore, max) = (e.main_lcore, MAX_LCORE - 1);
    let message = format!("`eal.main_lcore` {lcore} is out of range: lcore ids are 0..={max}");
    ensure!(lcore <= max, path("eal", "main_lcore"), "{message}");
    let prefix = &e.file_prefix;
    ensure!(
        (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
        path("eal", "file_prefix"),
        "`eal.file_prefix` {prefix:?} must be 1..=64 characters of [A-Za-z0-9_.-]: it names \
         files under /var/run/dpdk"
    );
    Ok(())
}

fn dataplane(d: &Dataplane, e: &Eal) -> Check {
    let at = |key: &str| path("dataplane", key);
    let message = "`dataplane.workers` is empty: at least one worker lcore is needed";
    ensure!(!d.workers.is_empty(), at("workers"), "{message}");
    for (j, &lcore) in d.workers.iter().enumerate() {
        let (here, max) = (at("workers").index(j), MAX_LCORE - 1);
        let message = format!("worker lcore {lcore} is out of range: lcore ids are 0..={max}");
        ensure!(lcore <= max, here.clone(), "{message}");
        if lcore == e.main_lcore {
            let message = "workers need lcores of their own";
            return Err(problem!(
                here,
                "worker lcore {lcore} is the main lcore (`eal.main_lcore`); {message}"
            )
            .or_at(path("eal", "main_lcore")));
        }
        if let Some(first) = d.workers[..j].iter().position(|&w| w == lcore) {
            let message = format!("worker lcore {lcore} is listed twice in `dataplane.workers`");
            return Err(problem!(here, "{message}").see(at("workers").index(first), "first listed"));
        }
    }
    // The EAL's --lcores takes CPUs below CPU_SETSIZE (1024).
    let (cpus, workers) = (d.worker_cpus.len(), d.workers.len());
    ensure!(
        cpus == 0 || cpus == workers,
        at("worker_cpus"),
        "`dataplane.worker_cpus` names {cpus} CPU(s) for {workers} worker(s): give one CPU per \
         worker, in the order of `dataplane.workers`"
    );
    if let Some(j) = d.worker_cpus.iter().position(|&c| c >= MAX_CPU) {
        let (cpu, max) = (d.worker_cpus[j], MAX_CPU - 1);
        let message = format!("CPU {cpu} is out of range: CPU ids are 0..={max}");
        return Err(problem!(at("worker_cpus").index(j), "{message}"));
    }
    use Bound::*;
    bounds(
        "dataplane",
        &[
            ("idle_sleep_us", d.idle_sleep_us.into(), Range(0, 10_000)),
            ("burst", d.burst.into(), Range(1, 256)),
            ("mbufs", d.mbufs.into(), Min(1024)),
        ],
    )?;
    // rte_mempool_create: cache_size <= RTE_MEMPOOL_CACHE_MAX_SIZE and
    // cache_size * 1.5 <= n.
    let (cache, mbufs, cache_max) = (d.mbuf_cache, d.mbufs, 512.min(d.mbufs * 2 / 3));
    if cache > cache_max {
        return Err(problem!(
            at("mbuf_cache"),
            "`dataplane.mbuf_cache` {cache} is too large: at most 512 and at most mbufs / 1.5 \
             ({cache_max} for {mbufs} mbufs)"
        )
        .or_at(at("mbufs")));
    }
    bounds(
        "dataplane",
        &[
            ("rx_desc", d.rx_desc.into(), PowerOfTwo(64, 16384)),
            ("tx_desc", d.tx_desc.into(), PowerOfTwo(64, 16384)),
            ("tx_drain_us", d.tx_drain_us.into(), Range(1, 100_000)),
            (
                "neighbor_timeout_s",
                d.neighbor_timeout_s.into(),
                Positive(""),
            ),
            ("neighbor_retry_ms", d.neighbor_retry_ms.into(), Min(10)),
            (
                "worker_stuck_ms",
                d.worker_stuck_ms.into(),
                Range(100, 600_000),
            ),
        ],
    )
}

fn conntrack(cfg: &Config) -> Check {
    use Bound::*;
    let (c, hint) = (
        &cfg.conntrack,
        " (to lift the cap on new flows, set `new_flows_per_sec` to 0)",
    );
    bounds(
        "conntrack",
        &[
            ("max_flows", c.max_flows.into(), Range(1024, 67_108_864)),
            ("new_flows_burst", c.new_flows_burst.into(), Positive(hint)),
            ("syn_timeout_s", c.syn_timeout_s.into(), Positive("")),
            (
                "established_timeout_s",
                c.established_timeout_s.into(),
                Positive(""),
            ),
            (
                "closing_timeout_s",
                c.closing_timeout_s.into(),
                Positive(""),
            ),
            ("closed_timeout_s", c.closed_timeout_s.into(), Positive("")),
            ("udp_timeout_s", c.udp_timeout_s.into(), Positive("")),
            ("expire_budget", c.expire_budget.into(), Range(1, 4096)),
        ],
    )
}

/// Mbufs a `net_af_xdp` rx queue hands to the kernel for good: the PMD
/// fills its fill ring with this many buffers from the worker's pool at set-up
/// (`ETH_AF_XDP_DFLT_NUM_DESCS` in DPDK 22.11) and refills it as packets
/// arrive, so they are never available to the worker.
pub const AF_XDP_FILL_MBUFS: u32 = 2048;

/// Mbufs a worker's pool must keep beyond the af_xdp fill rings, for
/// packets being received, processed and sent.
pub const AF_XDP_SPARE_MBUFS: u32 = 1024;

/// Each worker's pool serves one rx queue of every port, and some queues
/// keep mbufs of it for good: a `net_af_xdp` queue takes
/// [`AF_XDP_FILL_MBUFS`] at set-up (its UMEM is the pool's memory; with
/// too few the PMD fails with a bare "Invalid argument"), and a PCI
/// (NIC) queue fills its rx ring, `rx_desc` mbufs, when it starts.
fn rx_pool(cfg: &Config) -> Check {
    let xdp: Vec<usize> = (0..cfg.ports.len())
        .filter(|&i| cfg.ports[i].device.eal_name().starts_with("net_af_xdp"))
        .collect();
    let pci: Vec<usize> = (0..cfg.ports.len())
        .filter(|&i| matches!(cfg.ports[i].device, super::PortDevice::Pci(_)))
        .collect();
    let (mbufs, n, rx) = (cfg.dataplane.mbufs, xdp.len(), cfg.dataplane.rx_desc as u32);
    let need = n as u32 * AF_XDP_FILL_MBUFS + pci.len() as u32 * rx + AF_XDP_SPARE_MBUFS;
    if mbufs >= need || (xdp.is_empty() && pci.is_empty()) {
        return Ok(());
    }
    if let Some(&first) = pci.first() {
        let xdp_too = if n > 0 {
            format!(" and each of the {n} net_af_xdp port(s) {AF_XDP_FILL_MBUFS} for its fill ring")
        } else {
            String::new()
        };
        return Err(problem!(
            path("dataplane", "mbufs"),
            "`dataplane.mbufs` {mbufs} is too small for the receive rings: each of the {} PCI \
             port(s) fills its rx ring with `dataplane.rx_desc` ({rx}) mbufs of every worker's \
             pool{xdp_too}, and {AF_XDP_SPARE_MBUFS} more must stay free; at least {need} are \
             needed (or a smaller `rx_desc`)",
            pci.len()
        )
        .or_at(item("port", first).key("pci")));
    }
    let first = xdp[0];
    Err(problem!(
        path("dataplane", "mbufs"),
        "`dataplane.mbufs` {mbufs} is too small for {n} net_af_xdp port(s): each takes \
         {AF_XDP_FILL_MBUFS} mbufs of every worker's pool for its fill ring, and \
         {AF_XDP_SPARE_MBUFS} more must stay free; at least {need} are needed"
    )
    .or_at(item("port", first).key("vdev")))
}

/// A table with a `name` that other tables refer to.
pub(super) trait Named {
    fn name(&self) -> &str;
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn name(&self) -> &str {
                &self.name
            }
        }
    )*};
}
named!(Port, Cluster, Service, Listener);

/// The name of `[[section]]` number `i` is 1..=32 characters of
/// `[A-Za-z0-9_-]` and not that of an earlier one.
pub(super) fn unique_name(section: &str, items: &[impl Named], i: usize) -> Check {
    let (name, at) = (items[i].name(), |i: usize| item(section, i).key("name"));
    ensure!(
        (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        at(i),
        "{section} name {name:?} must be 1..=32 characters of [A-Za-z0-9_-]"
    );
    match items[..i].iter().position(|t| t.name() == name) {
        Some(first) => {
            Err(problem!(at(i), "duplicate {section} name {name:?}")
                .see(at(first), "first defined"))
        }
        None => Ok(()),
    }
}

/// The `[[section]]` named `name`, which `what` refers to at `at`, and its
/// index.
pub(super) fn find<'a, T: Named>(
    section: &str,
    items: &'a [T],
    name: &str,
    what: &str,
    at: KeyPath,
) -> Result<(usize, &'a T), Problem> {
    let found = items.iter().enumerate().find(|(_, t)| t.name() == name);
    found.ok_or_else(|| {
        let names: Vec<&str> = items.iter().map(Named::name).collect();
        let defined = match names.len() {
            0 => format!("no [[{section}]] is defined"),
            _ => format!("defined {section}s: {}", names.join(", ")),
        };
        problem!(
            at,
            "{section} {name:?} referenced by {what} is not defined ({defined})"
        )
    })
}

/// Whether `ip` can be a host's address at all, whatever its subnet.
pub(super) fn unusable_address(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == IpAddr::from([255, 255, 255, 255]) {
        Some("the limited broadcast address")
    } else {
        None
    }
}

/// The `key` a `[[port]]` sets for its family's default route (`gateway`,
/// `gateway6`), and whether `p` sets it.
fn gateway_of(p: &Port, ipv4: bool) -> (&'static str, bool) {
    match ipv4 {
        true => ("gateway", p.gateway.is_some()),
        false => ("gateway6", p.gateway6.is_some()),
    }
}

fn ports(cfg: &Config) -> Check {
    let message = "no [[port]] is defined: at least one port is required";
    ensure!(!cfg.ports.is_empty(), KeyPath::default(), "{message}");
    let mut devices: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<IpAddr, (usize, usize)> = HashMap::new();
    let mut gateways: [Option<usize>; 2] = [None, None];
    let no_pci = cfg.eal.args.iter().position(|a| a == "--no-pci");
    for (i, p) in cfg.ports.iter().enumerate() {
        let (at, name) = (|key: &str| item("port", i).key(key), &p.name);
        unique_name("port", &cfg.ports, i)?;
        let device_key = match p.device {
            PortDevice::Pci(_) => "pci",
            PortDevice::Vdev(_) => "vdev",
        };
        p.device
            .check()
            .map_err(|m| Problem::new(at(device_key), m).or_at(item("port", i)))?;
        // DPDK names devices by PCI address (any case) or vdev name; two
        // ports cannot share one.
        let device = p.device.eal_name();
        if let Some(&first) = devices.get(&device.to_ascii_lowercase()) {
            let other = &cfg.ports[first].name;
            return Err(problem!(
                at(device_key),
                "port {name:?} uses device {device:?}, which port {other:?} already uses"
            )
            .or_at(item("port", i))
            .see(item("port", first), "first used"));
        }
        devices.insert(device.to_ascii_lowercase(), i);
        // Every port of a worker shares its mbuf pool; net_af_xdp needs it
        // packed, a NIC needs it kept within pages (`dpdk::Mempool::new`).
        let af_xdp = |p: &super::Port| matches!(&p.device, PortDevice::Vdev(v) if v.starts_with("net_af_xdp"));
        if let Some(first) = cfg.ports[..i].iter().position(|q| {
            matches!(p.device, PortDevice::Pci(_)) && af_xdp(q)
                || matches!(q.device, PortDevice::Pci(_)) && af_xdp(p)
        }) {
            let other = &cfg.ports[first].name;
            return Err(problem!(
                at(device_key),
                "port {name:?} and port {other:?} cannot run together: a net_af_xdp port and a \
                 PCI port would share each worker's mbuf pool, which only one of them can use"
            )
            .see(item("port", first), "other port"));
        }
        // --no-pci stops the EAL from probing any PCI device, allow-listed or not.
        if let (PortDevice::Pci(_), Some(k)) = (&p.device, no_pci) {
            return Err(problem!(
                at("pci"),
                "port {name:?} is a PCI device, but `eal.args` contains --no-pci, which stops the \
                 EAL from probing it"
            )
            .see(path("eal", "args").index(k), "--no-pci"));
        }
        if let Some(mac) = p.mac {
            let message = format!("port {name:?}: mac {mac} is not a unicast station address");
            ensure!(mac.is_unicast() && !mac.is_zero(), at("mac"), "{message}");
        }
        in_range(
            at("mtu"),
            format!("port {name:?}: mtu"),
            p.mtu,
            68..=9000,
            "",
        )?;
        if let Some(vlan) = p.vlan {
            let why = " (0 and 4095 are reserved by 802.1Q)";
            in_range(
                at("vlan"),
                format!("port {name:?}: vlan"),
                vlan,
                1..=4094,
                why,
            )?;
        }
        ensure!(
            !p.addresses.is_empty(),
            at("addresses"),
            "port {name:?} has no addresses: give at least one, such as \"10.0.0.1/24\""
        );
        for (j, c) in p.addresses.iter().enumerate() {
            address(p, c).map_err(|m| Problem::new(at("addresses").index(j), m))?;
            if let Some(&(fi, fj)) = addresses.get(&c.addr()) {
                let owner = match fi == i {
                    true => "this port".to_string(),
                    false => format!("port {:?}", cfg.ports[fi].name),
                };
                let ip = c.addr();
                return Err(problem!(
                    at("addresses").index(j),
                    "duplicate address {ip}: already assigned to {owner}"
                )
                .see(
                    item("port", fi).key("addresses").index(fj),
                    "first assigned",
                ));
            }
            addresses.insert(c.addr(), (i, j));
        }
        let set = [p.gateway.map(IpAddr::V4), p.gateway6.map(IpAddr::V6)];
        for (g, first) in set.into_iter().zip(&mut gateways) {
            let Some(g) = g else { continue };
            let (key, family) = (gateway_of(p, g.is_ipv4()).0, family(g));
            next_hop(p, g, g.is_ipv6()).map_err(|m| problem!(at(key), "{key} {g} {m}"))?;
            if let Some(first) = *first {
                let other = &cfg.ports[first].name;
                return Err(problem!(
                    at(key),
                    "port {name:?} sets `{key}`, but port {other:?} already does: there is one \
                     {family} default route"
                )
                .see(item("port", first).key(key), "first set"));
            }
            *first = Some(i);
        }
    }
    Ok(())
}

/// Why `c` cannot be an address of port `p`, if it cannot.
fn address(p: &Port, c: &Cidr) -> Result<(), String> {
    let (name, ip) = (&p.name, c.addr());
    if let Some(what) = unusable_address(ip) {
        return Err(format!("port {name:?}: {ip} is {what}"));
    }
    if is_reserved_host(c, ip) {
        let which = if ip == c.network() {
            "network"
        } else {
            "broadcast"
        };
        let subnet = c.trunc();
        return Err(format!(
            "port {name:?}: {c} is the {which} address of its subnet {subnet}; give a host address"
        ));
    }
    Ok(())
}

/// Why `ip` cannot be a next hop (gateway, route via, static neighbor)
/// reached through port `p`, if it cannot. IPv6 next hops may be link-local
/// (RFC 4861 section 8: routers advertise themselves by link-local address)
/// when `link_local_ok`.
fn next_hop(p: &Port, ip: IpAddr, link_local_ok: bool) -> Result<(), String> {
    let name = &p.name;
    if let Some(what) = unusable_address(ip) {
        return Err(format!("is {what}"));
    }
    if p.owns(ip) {
        return Err(format!("is an address of port {name:?} itself"));
    }
    if link_local_ok && is_ipv6_link_local(ip) {
        return Ok(());
    }
    let family_subnets: Vec<String> = p
        .addresses
        .iter()
        .filter(|c| c.addr().is_ipv4() == ip.is_ipv4())
        .map(|c| c.trunc().to_string())
        .collect();
    let (v6, subnets) = (ip.is_ipv6(), family_subnets.join(", "));
    match p.addresses.iter().find(|c| c.contains(&ip)) {
        Some(c) if is_reserved_host(c, ip) => Err(format!(
            "is the network or broadcast address of subnet {} of port {name:?}",
            c.trunc()
        )),
        Some(_) => Ok(()),
        None if family_subnets.is_empty() => Err(format!(
            "is not inside a subnet of port {name:?}, which has no {} address{}",
            family(ip),
            if v6 {
                " (and it is not link-local)"
            } else {
                ""
            }
        )),
        None => Err(format!(
            "is not inside a subnet of port {name:?} ({subnets}){}",
            if v6 { " nor link-local" } else { "" }
        )),
    }
}

fn routes(cfg: &Config) -> Check {
    let mut prefixes: HashMap<Cidr, usize> = HashMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let (at, prefix, via) = (|key: &str| item("route", i).key(key), r.prefix, r.via);
        let trunc = prefix.trunc();
        let message = format!("route prefix {prefix} has host bits set; did you mean {trunc}?");
        ensure!(prefix == trunc, at("prefix"), "{message}");
        let (family, prefix_family) = (family(via), family(prefix.addr()));
        ensure!(
            family == prefix_family,
            at("via"),
            "route to {prefix}: next hop {via} is {family} but the prefix is {prefix_family}"
        );
        let (_, port) = find("port", &cfg.ports, &r.port, "route", at("port"))?;
        next_hop(port, via, true)
            .map_err(|m| problem!(at("via"), "route to {prefix}: next hop {via} {m}"))?;
        if let Some(&first) = prefixes.get(&prefix) {
            return Err(problem!(at("prefix"), "duplicate route to {prefix}")
                .see(item("route", first).key("prefix"), "first defined"));
        }
        prefixes.insert(prefix, i);
        let ipv4 = prefix.addr().is_ipv4();
        if prefix.prefix_len() == 0 {
            if let Some(g) = cfg.ports.iter().position(|p| gateway_of(p, ipv4).1) {
                let (key, name) = (gateway_of(&cfg.ports[g], ipv4).0, &cfg.ports[g].name);
                return Err(problem!(
                    at("prefix"),
                    "route to {prefix} duplicates the default route set by `{key}` of port \
                     {name:?}; keep one"
                )
                .see(item("port", g).key(key), "gateway set"));
            }
        }
    }
    Ok(())
}

pub(super) fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn neighbors(cfg: &Config) -> Check {
    let mut seen: HashMap<(&str, IpAddr), usize> = HashMap::new();
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let (at, ip, mac) = (|key: &str| item("neighbor", i).key(key), n.ip, n.mac);
        let (_, port) = find("port", &cfg.ports, &n.port, "neighbor", at("port"))?;
        next_hop(port, ip, true).map_err(|m| problem!(at("ip"), "static neighbor {ip} {m}"))?;
        let message = format!("neighbor {ip}: mac {mac} is not a unicast station address");
        ensure!(mac.is_unicast() && !mac.is_zero(), at("mac"), "{message}");
        let name = port.name.as_str();
        if let Some(&first) = seen.get(&(name, ip)) {
            return Err(
                problem!(at("ip"), "duplicate static neighbor {ip} on port {name:?}")
                    .see(item("neighbor", first).key("ip"), "first defined"),
            );
        }
        seen.insert((name, ip), i);
    }
    Ok(())
}

/// The path of a key of backend `j` of cluster `i`.
pub(super) fn backend_key(i: usize, j: usize, key: &str) -> KeyPath {
    item("cluster", i).key("backend").index(j).key(key)
}

/// "10.0.0.0/24, 10.1.0.0/24": the connected subnets of `ip`'s family.
fn subnets_of_family(cfg: &Config, ip: IpAddr) -> String {
    let subnets: Vec<String> = cfg
        .ports
        .iter()
        .flat_map(|p| &p.addresses)
        .filter(|c| c.addr().is_ipv4() == ip.is_ipv4())
        .map(|c| c.trunc().to_string())
        .collect();
    match subnets.is_empty() {
        true => format!("no port has an {} address", family(ip)),
        false => subnets.join(", "),
    }
}

fn clusters(cfg: &Config) -> Check {
    for (i, c) in cfg.clusters.iter().enumerate() {
        let name = &c.name;
        unique_name("cluster", &cfg.clusters, i)?;
        maglev_table_size(i, c)?;
        ensure!(
            !c.backends.is_empty(),
            item("cluster", i),
            "cluster {name:?} has no backend: add at least one [[cluster.backend]] with an \
             `address` after it"
        );
        let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
        let mut backend_names: HashMap<&str, usize> = HashMap::new();
        for (j, b) in c.backends.iter().enumerate() {
            backend(cfg, c, i, j, b)?;
            let (address, backend) = (b.address, &b.name);
            if let Some(&first) = addresses.get(&address) {
                let message = format!("duplicate backend {address} in cluster {name:?}");
                return Err(problem!(backend_key(i, j, "address"), "{message}")
                    .see(backend_key(i, first, "address"), "first defined"));
            }
            addresses.insert(address, j);
            if let Some(&first) = backend_names.get(backend.as_str()) {
                // Where the first names itself: its `name`, else its address.
                let named = c.backends[first].name != c.backends[first].address.to_string();
                let key = if named { "name" } else { "address" };
                return Err(problem!(
                    backend_key(i, j, "name"),
                    "duplicate backend name {backend:?} in cluster {name:?} (a backend without \
                     `name` is named by its address)"
                )
                .or_at(backend_key(i, j, "address"))
                .see(backend_key(i, first, key), "first defined"));
            }
            backend_names.insert(backend, j);
        }
        let (size, weighted) = (
            c.maglev_table_size,
            c.backends.iter().filter(|b| b.weight > 0).count(),
        );
        if c.scheduler == Scheduler::Maglev && size < weighted {
            return Err(problem!(
                item("cluster", i).key("maglev_table_size"),
                "cluster {name:?}: maglev_table_size {size} is smaller than its {weighted} \
                 backends with a non-zero weight; Maglev needs a slot per backend, and about 100 \
                 per backend to spread load evenly"
            )
            .or_at(item("cluster", i)));
        }
        validate_l7::cluster_keys(i, c)?;
    }
    Ok(())
}

/// A prime in range: Maglev's permutations cover every slot only when the
/// table size is prime (Eisenbud et al., section 3.4).
fn maglev_table_size(i: usize, c: &Cluster) -> Check {
    let (size, name) = (c.maglev_table_size, &c.name);
    let at = item("cluster", i).key("maglev_table_size");
    let range = MIN_MAGLEV_TABLE_SIZE as u64..=MAX_MAGLEV_TABLE_SIZE as u64;
    let what = format!("cluster {name:?}: maglev_table_size");
    in_range(at.clone(), what, size as u64, range, "")?;
    ensure!(
        is_prime(size),
        at,
        "cluster {name:?}: maglev_table_size {size} is not prime; Maglev needs a prime table \
         size, the next prime is {}",
        next_prime(size)
    );
    Ok(())
}

/// Checks of one backend on its own (duplicates are checked by the caller).
fn backend(cfg: &Config, c: &Cluster, i: usize, j: usize, b: &Backend) -> Check {
    let (at, address, cluster) = (|key: &str| backend_key(i, j, key), b.address, &c.name);
    let owner = format!("backend {address} of cluster {cluster:?}");
    if let Some(what) = unusable_address(address) {
        return Err(problem!(at("address"), "{owner} is {what}"));
    }
    if let Some(p) = cfg.ports.iter().find(|p| p.owns(address)) {
        let port = &p.name;
        let message = "that is of Sluice itself";
        return Err(problem!(
            at("address"),
            "{owner} is an address of port {port:?}, {message}"
        ));
    }
    let default = if address.is_ipv4() {
        "gateway"
    } else {
        "gateway6"
    };
    let subnets = subnets_of_family(cfg, address);
    ensure!(
        reachable(cfg, address),
        at("address"),
        "{owner} is unreachable: it is not inside a connected subnet ({subnets}), no [[route]] \
         covers it, and no port sets `{default}`"
    );
    if let Some(port) = b.port {
        let why = "; leave `port` out to keep the client's destination port";
        in_range(at("port"), format!("{owner}: port"), port, 1..=65535, why)?;
    }
    let weight = format!("{owner}: weight");
    in_range(at("weight"), weight, b.weight, 0..=MAX_WEIGHT.into(), "")?;
    // The label of a backend in logs and metrics; the default, the address
    // as text, always fits.
    let name = &b.name;
    ensure!(
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)),
        at("name"),
        "backend name {name:?} must be 1..=64 characters of [A-Za-z0-9_.:-]"
    );
    Ok(())
}

/// Whether the data plane has a route to `ip`: a connected subnet, a
/// `[[route]]`, or a default route of its family.
fn reachable(cfg: &Config, ip: IpAddr) -> bool {
    cfg.ports
        .iter()
        .any(|p| p.subnet_of(ip).is_some() || gateway_of(p, ip.is_ipv4()).1)
        || cfg.routes.iter().any(|r| r.prefix.contains(&ip))
}

/// The vip of `[[service]]` or address of `[[listener]]` `i`: usable, and
/// not an address of a `[[port]]`; `what` is the message's start
/// (`service "web": vip`) and `own` the end of the second.
pub(super) fn vip(cfg: &Config, at: KeyPath, what: &str, ip: IpAddr, own: &str) -> Check {
    if let Some(unusable) = unusable_address(ip) {
        return Err(problem!(at, "{what} {ip} is {unusable}"));
    }
    for (pi, p) in cfg.ports.iter().enumerate() {
        if let Some(k) = p.addresses.iter().position(|c| c.addr() == ip) {
            let port = &p.name;
            return Err(
                problem!(at, "{what} {ip} is an address of port {port:?}; {own}")
                    .see(item("port", pi).key("addresses").index(k), "port address"),
            );
        }
    }
    Ok(())
}

fn services(cfg: &Config) -> Check {
    for (i, v) in cfg.services.iter().enumerate() {
        let (at, name) = (|key: &str| item("service", i).key(key), &v.name);
        let (vip, here, protocol) = (v.vip, vip_port(v.vip, v.port), v.protocol);
        unique_name("service", &cfg.services, i)?;
        let own =
            "a VIP must be an address of its own, which Sluice announces on the `ingress` port";
        self::vip(cfg, at("vip"), &format!("service {name:?}: vip"), vip, own)?;
        for (j, w) in cfg.services[..i].iter().enumerate() {
            if w.vip != vip || w.protocol != protocol {
                continue;
            }
            let (first, other) = (item("service", j).key("port"), &w.name);
            if w.port == v.port {
                let message = format!("{here}/{protocol} is already served by service {other:?}");
                return Err(
                    problem!(at("port"), "service {name:?}: {message}").see(first, "first defined")
                );
            }
            if v.port == 0 || w.port == 0 {
                let there = vip_port(w.vip, w.port);
                return Err(problem!(
                    at("port"),
                    "service {name:?} on {here}/{protocol} overlaps service {other:?} on \
                     {there}/{protocol}: a service on port 0 takes every port of its vip and \
                     protocol, so it must be the only one there"
                )
                .see(first, "other service"));
            }
        }
        let what = format!("service {name:?}");
        let (ci, cluster) = find("cluster", &cfg.clusters, &v.cluster, &what, at("cluster"))?;
        let backends = || cluster.backends.iter().enumerate();
        let cname = &cluster.name;
        if let Some((j, b)) = backends().find(|(_, b)| b.address.is_ipv4() != vip.is_ipv4()) {
            let (family, other, address) = (family(vip), self::family(b.address), b.address);
            return Err(problem!(
                at("cluster"),
                "service {name:?} has {family} vip {vip}, but cluster {cname:?} has {other} \
                 backend {address}: in every mode the backends must have the vip's family"
            )
            .see(backend_key(ci, j, "address"), "backend"));
        }
        find("port", &cfg.ports, &v.ingress, &what, at("ingress"))?;
        snat(cfg, i)?;
        if let Some((j, b)) = backends().find(|(_, b)| v.mode.is_dsr() && b.port.is_some()) {
            let (address, port, mode) = (b.address, b.port.unwrap_or_default(), v.mode);
            return Err(problem!(
                backend_key(ci, j, "port"),
                "backend {address} of cluster {cname:?} sets port {port}, but service {name:?} \
                 forwards to this cluster in mode {mode}, which cannot change the destination \
                 port: the backend receives the client's packet as sent, to {here}, and must \
                 listen there itself. Remove `port` from the backend, or use mode \"nat\""
            )
            .see(at("mode"), "mode set"));
        }
        if let Some(hc) = &cluster.health_check {
            let no_port = |b: &&Backend| b.port.is_none() && cfg.check_port(cname).is_none();
            if let Some(b) = cluster
                .backends
                .iter()
                .filter(|_| hc.port.is_none())
                .find(no_port)
            {
                let address = b.address;
                return Err(problem!(
                    item("cluster", ci).key("health_check"),
                    "cluster {cname:?}: health_check has no port to check backend {address}: it \
                     has no `port`, and the services that use the cluster do not share one \
                     non-zero port. Set health_check.port"
                )
                .see(at("port"), "service port"));
            }
        }
        let off_link = |(_, b): &(usize, &Backend)| {
            !cfg.ports.iter().any(|p| p.subnet_of(b.address).is_some())
        };
        if let Some((j, b)) = backends()
            .filter(|_| v.mode == ForwardMode::L2Dsr)
            .find(off_link)
        {
            let (address, subnets) = (b.address, subnets_of_family(cfg, b.address));
            return Err(problem!(
                at("mode"),
                "service {name:?} is in mode l2dsr, but backend {address} of cluster {cname:?} is \
                 not inside a connected subnet of any port ({subnets}): l2dsr only rewrites the \
                 destination MAC, so the backend must be on a link of Sluice's. Use mode ipip or \
                 gre for routed backends"
            )
            .see(backend_key(ci, j, "address"), "backend"));
        }
    }
    Ok(())
}

/// The addresses of all ports of `ip`'s family (all families when `any`),
/// for messages: "10.0.0.1, 10.1.0.1".
pub(super) fn own_addresses(cfg: &Config, ip: IpAddr, any: bool) -> Vec<String> {
    cfg.ports
        .iter()
        .flat_map(|p| &p.addresses)
        .filter(|c| any || c.addr().is_ipv4() == ip.is_ipv4())
        .map(|c| c.addr().to_string())
        .collect()
}

/// `snat` of service `i`: mode nat only; addresses of ports, of the vip's
/// family, each once.
fn snat(cfg: &Config, i: usize) -> Check {
    let (v, at) = (&cfg.services[i], |key: &str| item("service", i).key(key));
    let (name, mode) = (&v.name, v.mode);
    if !v.snat.is_empty() && mode != ForwardMode::Nat {
        return Err(problem!(
            at("snat"),
            "service {name:?}: `snat` applies to mode \"nat\" only; mode {mode} keeps the \
             client's address as the source, so there is nothing to translate"
        )
        .see(at("mode"), "mode set"));
    }
    for (k, &ip) in v.snat.iter().enumerate() {
        let (here, family, vip_family) = (at("snat").index(k), family(ip), family(v.vip));
        ensure!(
            family == vip_family,
            here,
            "service {name:?}: snat address {ip} is {family}, but the vip and its backends are \
             {vip_family}"
        );
        let own = own_addresses(cfg, ip, false);
        let own = if own.is_empty() {
            "none".to_string()
        } else {
            own.join(", ")
        };
        ensure!(
            cfg.ports.iter().any(|p| p.owns(ip)),
            here,
            "service {name:?}: snat address {ip} is not an address of any [[port]] ({family} port \
             addresses: {own}); Sluice can only receive replies on its own addresses"
        );
        if let Some(first) = v.snat[..k].iter().position(|&s| s == ip) {
            return Err(
                problem!(here, "service {name:?}: snat address {ip} is listed twice")
                    .see(at("snat").index(first), "first listed"),
            );
        }
    }
    Ok(())
}
