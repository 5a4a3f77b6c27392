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

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::listener::Listener;
use super::sections::{
    Backend, Cluster, Conntrack, Dataplane, Eal, ForwardMode, Port, Scheduler, Service,
};
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

impl Problem {
    pub(super) fn new(at: KeyPath, message: String) -> Problem {
        Problem {
            at: vec![at],
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
    let value = value.into();
    if range.contains(&value) {
        return Ok(());
    }
    let (lo, hi) = range.into_inner();
    Err(problem!(
        at,
        "{what} {value} is out of range {lo}..={hi}{why}"
    ))
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
    conntrack(&cfg.conntrack)?;
    ports(cfg)?;
    af_xdp_pool(cfg)?;
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
            return Err(problem!(
                path("eal", "args").index(i),
                "EAL option {opt} is derived from {keys}; remove {arg:?} from `eal.args`"
            ));
        }
    }
    if e.main_lcore >= MAX_LCORE {
        return Err(problem!(
            path("eal", "main_lcore"),
            "`eal.main_lcore` {} is out of range: lcore ids are 0..={}",
            e.main_lcore,
            MAX_LCORE - 1
        ));
    }
    let prefix_ok = !e.file_prefix.is_empty()
        && e.file_prefix.len() <= 64
        && e.file_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !prefix_ok {
        return Err(problem!(path("eal", "file_prefix"), "`eal.file_prefix` {:?} must be 1..=64 characters of [A-Za-z0-9_.-]: it names files under /var/run/dpdk",
                e.file_prefix));
    }
    Ok(())
}

fn dataplane(d: &Dataplane, e: &Eal) -> Check {
    let at = |key: &str| path("dataplane", key);
    if d.workers.is_empty() {
        return Err(problem!(
            at("workers"),
            "`dataplane.workers` is empty: at least one worker lcore is needed"
        ));
    }
    for (j, &lcore) in d.workers.iter().enumerate() {
        let here = at("workers").index(j);
        if lcore >= MAX_LCORE {
            return Err(problem!(
                here,
                "worker lcore {lcore} is out of range: lcore ids are 0..={}",
                MAX_LCORE - 1
            ));
        }
        if lcore == e.main_lcore {
            return Err(problem!(here, "worker lcore {lcore} is the main lcore (`eal.main_lcore`); workers need lcores of their own")
            .or_at(path("eal", "main_lcore")));
        }
        if let Some(first) = d.workers[..j].iter().position(|&w| w == lcore) {
            return Err(problem!(
                here,
                "worker lcore {lcore} is listed twice in `dataplane.workers`"
            )
            .see(at("workers").index(first), "first listed"));
        }
    }
    // The EAL's --lcores takes CPUs below CPU_SETSIZE (1024).
    if !d.worker_cpus.is_empty() {
        if d.worker_cpus.len() != d.workers.len() {
            return Err(problem!(at("worker_cpus"), "`dataplane.worker_cpus` names {} CPU(s) for {} worker(s): give one CPU per worker, in the order of `dataplane.workers`",
                    d.worker_cpus.len(),
                    d.workers.len()));
        }
        if let Some(j) = d.worker_cpus.iter().position(|&c| c >= MAX_CPU) {
            return Err(problem!(
                at("worker_cpus").index(j),
                "CPU {} is out of range: CPU ids are 0..={}",
                d.worker_cpus[j],
                MAX_CPU - 1
            ));
        }
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
    let cache_max = 512.min(d.mbufs * 2 / 3);
    if d.mbuf_cache > cache_max {
        return Err(problem!(at("mbuf_cache"), "`dataplane.mbuf_cache` {} is too large: at most 512 and at most mbufs / 1.5 ({cache_max} for {} mbufs)",
                d.mbuf_cache, d.mbufs)
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

/// Mbufs a `net_af_xdp` rx queue hands to the kernel for good: the PMD
/// fills its fill ring with this many buffers from the worker's pool at set-up
/// (`ETH_AF_XDP_DFLT_NUM_DESCS` in DPDK 22.11) and refills it as packets
/// arrive, so they are never available to the worker.
pub const AF_XDP_FILL_MBUFS: u32 = 2048;

/// Mbufs a worker's pool must keep beyond the af_xdp fill rings, for
/// packets being received, processed and sent.
pub const AF_XDP_SPARE_MBUFS: u32 = 1024;

/// Each worker's pool serves one rx queue of every port. A `net_af_xdp`
/// queue takes [`AF_XDP_FILL_MBUFS`] of it at set-up (its UMEM is the pool's
/// memory); with too few the PMD fails with a bare "Invalid argument".
fn af_xdp_pool(cfg: &Config) -> Check {
    let xdp: Vec<usize> = (0..cfg.ports.len())
        .filter(|&i| cfg.ports[i].device.eal_name().starts_with("net_af_xdp"))
        .collect();
    let Some(&first) = xdp.first() else {
        return Ok(());
    };
    let need = xdp.len() as u32 * AF_XDP_FILL_MBUFS + AF_XDP_SPARE_MBUFS;
    if cfg.dataplane.mbufs < need {
        return Err(problem!(path("dataplane", "mbufs"), "`dataplane.mbufs` {} is too small for {} net_af_xdp port(s): each takes {AF_XDP_FILL_MBUFS} \
                 mbufs of every worker's pool for its fill ring, and {AF_XDP_SPARE_MBUFS} more must stay free; \
                 at least {need} are needed",
                cfg.dataplane.mbufs,
                xdp.len())
        .or_at(item("port", first).key("vdev")));
    }
    Ok(())
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
    let name = items[i].name();
    let at = |i: usize| item(section, i).key("name");
    let valid = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(problem!(
            at(i),
            "{section} name {name:?} must be 1..=32 characters of [A-Za-z0-9_-]"
        ));
    }
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
    items
        .iter()
        .enumerate()
        .find(|(_, t)| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = items.iter().map(Named::name).collect();
            let defined = match names.len() {
                0 => format!("no [[{section}]] is defined"),
                _ => format!("defined {section}s: {}", names.join(", ")),
            };
            let message =
                format!("{section} {name:?} referenced by {what} is not defined ({defined})");
            Problem::new(at, message)
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

fn ports(cfg: &Config) -> Check {
    if cfg.ports.is_empty() {
        let message = "no [[port]] is defined: at least one port is required";
        return Err(problem!(KeyPath::default(), "{message}"));
    }
    let mut devices: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<IpAddr, (usize, usize)> = HashMap::new();
    let mut gateway4: Option<usize> = None;
    let mut gateway6: Option<usize> = None;
    let no_pci = cfg.eal.args.iter().position(|a| a == "--no-pci");
    for (i, p) in cfg.ports.iter().enumerate() {
        let at = |key: &str| item("port", i).key(key);
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
        let key = p.device.eal_name().to_ascii_lowercase();
        if let Some(&first) = devices.get(&key) {
            return Err(problem!(
                at(device_key),
                "port {:?} uses device {:?}, which port {:?} already uses",
                p.name,
                p.device.eal_name(),
                cfg.ports[first].name
            )
            .or_at(item("port", i))
            .see(item("port", first), "first used"));
        }
        devices.insert(key, i);
        // --no-pci stops the EAL from probing any PCI device, allow-listed or not.
        if let (PortDevice::Pci(_), Some(k)) = (&p.device, no_pci) {
            return Err(problem!(at("pci"), "port {:?} is a PCI device, but `eal.args` contains --no-pci, which stops the EAL from probing it",
                    p.name)
            .see(path("eal", "args").index(k), "--no-pci"));
        }

        if let Some(mac) = p.mac {
            if !mac.is_unicast() || mac.is_zero() {
                return Err(problem!(
                    at("mac"),
                    "port {:?}: mac {mac} is not a unicast station address",
                    p.name
                ));
            }
        }
        let owner = format!("port {:?}", p.name);
        in_range(at("mtu"), format!("{owner}: mtu"), p.mtu, 68..=9000, "")?;
        if let Some(vlan) = p.vlan {
            let why = " (0 and 4095 are reserved by 802.1Q)";
            in_range(at("vlan"), format!("{owner}: vlan"), vlan, 1..=4094, why)?;
        }

        if p.addresses.is_empty() {
            return Err(problem!(
                at("addresses"),
                "port {:?} has no addresses: give at least one, such as \"10.0.0.1/24\"",
                p.name
            ));
        }
        for (j, c) in p.addresses.iter().enumerate() {
            address(p, c).map_err(|m| Problem::new(at("addresses").index(j), m))?;
            if let Some(&(fi, fj)) = addresses.get(&c.addr()) {
                let owner = if fi == i {
                    "this port".to_string()
                } else {
                    format!("port {:?}", cfg.ports[fi].name)
                };
                return Err(problem!(
                    at("addresses").index(j),
                    "duplicate address {}: already assigned to {owner}",
                    c.addr()
                )
                .see(
                    item("port", fi).key("addresses").index(fj),
                    "first assigned",
                ));
            }
            addresses.insert(c.addr(), (i, j));
        }

        if let Some(g) = p.gateway {
            next_hop(p, IpAddr::V4(g), false)
                .map_err(|m| problem!(at("gateway"), "gateway {g} {m}"))?;
            if let Some(first) = gateway4 {
                return Err(problem!(at("gateway"), "port {:?} sets `gateway`, but port {:?} already does: there is one IPv4 default route",
                        p.name, cfg.ports[first].name)
                .see(item("port", first).key("gateway"), "first set"));
            }
            gateway4 = Some(i);
        }
        if let Some(g) = p.gateway6 {
            next_hop(p, IpAddr::V6(g), true)
                .map_err(|m| problem!(at("gateway6"), "gateway6 {g} {m}"))?;
            if let Some(first) = gateway6 {
                return Err(problem!(at("gateway6"), "port {:?} sets `gateway6`, but port {:?} already does: there is one IPv6 default route",
                        p.name, cfg.ports[first].name)
                .see(item("port", first).key("gateway6"), "first set"));
            }
            gateway6 = Some(i);
        }
    }
    Ok(())
}

/// Why `c` cannot be an address of port `p`, if it cannot.
fn address(p: &Port, c: &Cidr) -> Result<(), String> {
    if let Some(what) = unusable_address(c.addr()) {
        return Err(format!("port {:?}: {} is {what}", p.name, c.addr()));
    }
    if is_reserved_host(c, c.addr()) {
        let which = if c.addr() == c.network() {
            "network"
        } else {
            "broadcast"
        };
        return Err(format!(
            "port {:?}: {c} is the {which} address of its subnet {}; give a host address",
            p.name,
            c.trunc()
        ));
    }
    Ok(())
}

/// Why `ip` cannot be a next hop (gateway, route via, static neighbor)
/// reached through port `p`, if it cannot. IPv6 next hops may be link-local
/// (RFC 4861 section 8: routers advertise themselves by link-local address)
/// when `link_local_ok`.
fn next_hop(p: &Port, ip: IpAddr, link_local_ok: bool) -> Result<(), String> {
    if let Some(what) = unusable_address(ip) {
        return Err(format!("is {what}"));
    }
    if p.owns(ip) {
        return Err(format!("is an address of port {:?} itself", p.name));
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
    match p.addresses.iter().find(|c| c.contains(&ip)) {
        Some(c) if is_reserved_host(c, ip) => Err(format!(
            "is the network or broadcast address of subnet {} of port {:?}",
            c.trunc(),
            p.name
        )),
        Some(_) => Ok(()),
        None if family_subnets.is_empty() => Err(format!(
            "is not inside a subnet of port {:?}, which has no {} address{}",
            p.name,
            family(ip),
            if ip.is_ipv6() {
                " (and it is not link-local)"
            } else {
                ""
            }
        )),
        None => Err(format!(
            "is not inside a subnet of port {:?} ({}){}",
            p.name,
            family_subnets.join(", "),
            if ip.is_ipv6() { " nor link-local" } else { "" }
        )),
    }
}

fn routes(cfg: &Config) -> Check {
    let mut prefixes: HashMap<Cidr, usize> = HashMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let at = |key: &str| item("route", i).key(key);
        if r.prefix != r.prefix.trunc() {
            return Err(problem!(
                at("prefix"),
                "route prefix {} has host bits set; did you mean {}?",
                r.prefix,
                r.prefix.trunc()
            ));
        }
        if r.via.is_ipv4() != r.prefix.addr().is_ipv4() {
            return Err(problem!(
                at("via"),
                "route to {}: next hop {} is {} but the prefix is {}",
                r.prefix,
                r.via,
                family(r.via),
                family(r.prefix.addr())
            ));
        }
        let (_, port) = find("port", &cfg.ports, &r.port, "route", at("port"))?;
        next_hop(port, r.via, true)
            .map_err(|m| problem!(at("via"), "route to {}: next hop {} {m}", r.prefix, r.via))?;
        if let Some(&first) = prefixes.get(&r.prefix) {
            return Err(problem!(at("prefix"), "duplicate route to {}", r.prefix)
                .see(item("route", first).key("prefix"), "first defined"));
        }
        prefixes.insert(r.prefix, i);
        if r.prefix.prefix_len() == 0 {
            let key = if r.prefix.addr().is_ipv4() {
                "gateway"
            } else {
                "gateway6"
            };
            let has_gateway = |p: &Port| {
                if r.prefix.addr().is_ipv4() {
                    p.gateway.is_some()
                } else {
                    p.gateway6.is_some()
                }
            };
            if let Some(g) = cfg.ports.iter().position(has_gateway) {
                return Err(problem!(at("prefix"), "route to {} duplicates the default route set by `{key}` of port {:?}; keep one",
                        r.prefix, cfg.ports[g].name)
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
        let at = |key: &str| item("neighbor", i).key(key);
        let (_, port) = find("port", &cfg.ports, &n.port, "neighbor", at("port"))?;
        next_hop(port, n.ip, true)
            .map_err(|m| problem!(at("ip"), "static neighbor {} {m}", n.ip))?;
        if !n.mac.is_unicast() || n.mac.is_zero() {
            return Err(problem!(
                at("mac"),
                "neighbor {}: mac {} is not a unicast station address",
                n.ip,
                n.mac
            ));
        }
        if let Some(&first) = seen.get(&(port.name.as_str(), n.ip)) {
            return Err(problem!(
                at("ip"),
                "duplicate static neighbor {} on port {:?}",
                n.ip,
                port.name
            )
            .see(item("neighbor", first).key("ip"), "first defined"));
        }
        seen.insert((port.name.as_str(), n.ip), i);
    }
    Ok(())
}

fn conntrack(c: &Conntrack) -> Check {
    use Bound::*;
    bounds(
        "conntrack",
        &[
            ("max_flows", c.max_flows.into(), Range(1024, 67_108_864)),
            (
                "new_flows_burst",
                c.new_flows_burst.into(),
                Positive(" (to lift the cap on new flows, set `new_flows_per_sec` to 0)"),
            ),
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

/// A backend's `name`, its label in logs and metrics. The default, the
/// address as text, always fits.
fn valid_backend_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// The path of a key of backend `j` of cluster `i`.
pub(super) fn backend_key(i: usize, j: usize, key: &str) -> KeyPath {
    item("cluster", i).key("backend").index(j).key(key)
}

/// Where backend `j` of cluster `i` names itself: its `name` if written,
/// else its `address`.
fn backend_name_locus(i: usize, j: usize, b: &Backend) -> KeyPath {
    let key = if b.name == b.address.to_string() {
        "address"
    } else {
        "name"
    };
    backend_key(i, j, key)
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
    if subnets.is_empty() {
        format!("no port has an {} address", family(ip))
    } else {
        subnets.join(", ")
    }
}

/// Whether the data plane has a route to `ip`: a connected subnet, a
/// `[[route]]`, or a default route of its family.
fn reachable(cfg: &Config, ip: IpAddr) -> bool {
    cfg.ports.iter().any(|p| p.subnet_of(ip).is_some())
        || cfg.routes.iter().any(|r| r.prefix.contains(&ip))
        || cfg.ports.iter().any(|p| {
            if ip.is_ipv4() {
                p.gateway.is_some()
            } else {
                p.gateway6.is_some()
            }
        })
}

fn clusters(cfg: &Config) -> Check {
    for (i, c) in cfg.clusters.iter().enumerate() {
        let at = |key: &str| item("cluster", i).key(key);
        unique_name("cluster", &cfg.clusters, i)?;
        maglev_table_size(i, c)?;
        if c.backends.is_empty() {
            return Err(problem!(item("cluster", i), "cluster {:?} has no backend: add at least one [[cluster.backend]] with an `address` after it",
                    c.name));
        }
        let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
        let mut backend_names: HashMap<&str, usize> = HashMap::new();
        for (j, b) in c.backends.iter().enumerate() {
            backend(cfg, c, i, j, b)?;
            if let Some(&first) = addresses.get(&b.address) {
                return Err(problem!(
                    backend_key(i, j, "address"),
                    "duplicate backend {} in cluster {:?}",
                    b.address,
                    c.name
                )
                .see(backend_key(i, first, "address"), "first defined"));
            }
            addresses.insert(b.address, j);
            if let Some(&first) = backend_names.get(b.name.as_str()) {
                return Err(problem!(backend_key(i, j, "name"), "duplicate backend name {:?} in cluster {:?} (a backend without `name` is named by its address)",
                        b.name, c.name)
                .or_at(backend_key(i, j, "address"))
                .see(
                    backend_name_locus(i, first, &c.backends[first]),
                    "first defined",
                ));
            }
            backend_names.insert(&b.name, j);
        }
        if c.scheduler == Scheduler::Maglev {
            let weighted = c.backends.iter().filter(|b| b.weight > 0).count();
            if c.maglev_table_size < weighted {
                return Err(problem!(at("maglev_table_size"), "cluster {:?}: maglev_table_size {} is smaller than its {weighted} backends with a \
                         non-zero weight; Maglev needs a slot per backend, and about 100 per backend to \
                         spread load evenly",
                        c.name, c.maglev_table_size)
                .or_at(item("cluster", i)));
            }
        }
        validate_l7::cluster_keys(i, c)?;
    }
    Ok(())
}

/// A prime in range: Maglev's permutations cover every slot only when the
/// table size is prime (Eisenbud et al., section 3.4).
fn maglev_table_size(i: usize, c: &Cluster) -> Check {
    let size = c.maglev_table_size;
    let at = item("cluster", i).key("maglev_table_size");
    in_range(
        at.clone(),
        format!("cluster {:?}: maglev_table_size", c.name),
        size as u64,
        MIN_MAGLEV_TABLE_SIZE as u64..=MAX_MAGLEV_TABLE_SIZE as u64,
        "",
    )?;
    if !is_prime(size) {
        return Err(problem!(
            at,
            "cluster {:?}: maglev_table_size {size} is not prime; Maglev needs a prime table \
                 size, the next prime is {}",
            c.name,
            next_prime(size)
        ));
    }
    Ok(())
}

/// Checks of one backend on its own (duplicates are checked by the caller).
fn backend(cfg: &Config, c: &Cluster, i: usize, j: usize, b: &Backend) -> Check {
    let at = |key: &str| backend_key(i, j, key);
    if let Some(what) = unusable_address(b.address) {
        return Err(problem!(
            at("address"),
            "backend {} of cluster {:?} is {what}",
            b.address,
            c.name
        ));
    }
    if let Some(p) = cfg.ports.iter().find(|p| p.owns(b.address)) {
        return Err(problem!(
            at("address"),
            "backend {} of cluster {:?} is an address of port {:?}, that is of Sluice itself",
            b.address,
            c.name,
            p.name
        ));
    }
    if !reachable(cfg, b.address) {
        let default = if b.address.is_ipv4() {
            "`gateway`"
        } else {
            "`gateway6`"
        };
        return Err(problem!(
            at("address"),
            "backend {} of cluster {:?} is unreachable: it is not inside a connected subnet ({}), \
                 no [[route]] covers it, and no port sets {default}",
            b.address,
            c.name,
            subnets_of_family(cfg, b.address)
        ));
    }
    let owner = format!("backend {} of cluster {:?}", b.address, c.name);
    if let Some(port) = b.port {
        let why = "; leave `port` out to keep the client's destination port";
        in_range(at("port"), format!("{owner}: port"), port, 1..=65535, why)?;
    }
    let weight = format!("{owner}: weight");
    in_range(at("weight"), weight, b.weight, 0..=MAX_WEIGHT.into(), "")?;
    if !valid_backend_name(&b.name) {
        return Err(problem!(
            at("name"),
            "backend name {:?} must be 1..=64 characters of [A-Za-z0-9_.:-]",
            b.name
        ));
    }
    Ok(())
}

fn services(cfg: &Config) -> Check {
    for (i, v) in cfg.services.iter().enumerate() {
        let at = |key: &str| item("service", i).key(key);
        unique_name("service", &cfg.services, i)?;

        if let Some(what) = unusable_address(v.vip) {
            return Err(problem!(
                at("vip"),
                "service {:?}: vip {} is {what}",
                v.name,
                v.vip
            ));
        }
        for (pi, p) in cfg.ports.iter().enumerate() {
            if let Some(k) = p.addresses.iter().position(|c| c.addr() == v.vip) {
                return Err(problem!(
                    at("vip"),
                    "service {:?}: vip {} is an address of port {:?}; a VIP must be an address \
                         of its own, which Sluice announces on the `ingress` port",
                    v.name,
                    v.vip,
                    p.name
                )
                .see(item("port", pi).key("addresses").index(k), "port address"));
            }
        }
        for (j, w) in cfg.services[..i].iter().enumerate() {
            if w.vip != v.vip || w.protocol != v.protocol {
                continue;
            }
            let first = item("service", j).key("port");
            if w.port == v.port {
                return Err(problem!(
                    at("port"),
                    "service {:?}: {}/{} is already served by service {:?}",
                    v.name,
                    vip_port(v.vip, v.port),
                    v.protocol,
                    w.name
                )
                .see(first, "first defined"));
            }
            if v.port == 0 || w.port == 0 {
                return Err(problem!(at("port"), "service {:?} on {}/{} overlaps service {:?} on {}/{}: a service on port 0 \
                         takes every port of its vip and protocol, so it must be the only one there",
                        v.name,
                        vip_port(v.vip, v.port),
                        v.protocol,
                        w.name,
                        vip_port(w.vip, w.port),
                        w.protocol)
                .see(first, "other service"));
            }
        }

        let what = format!("service {:?}", v.name);
        let (ci, cluster) = find("cluster", &cfg.clusters, &v.cluster, &what, at("cluster"))?;
        if let Some((j, b)) = cluster
            .backends
            .iter()
            .enumerate()
            .find(|(_, b)| b.address.is_ipv4() != v.vip.is_ipv4())
        {
            return Err(problem!(
                at("cluster"),
                "service {:?} has {} vip {}, but cluster {:?} has {} backend {}: in every mode \
                     the backends must have the vip's family",
                v.name,
                family(v.vip),
                v.vip,
                cluster.name,
                family(b.address),
                b.address
            )
            .see(backend_key(ci, j, "address"), "backend"));
        }
        find("port", &cfg.ports, &v.ingress, &what, at("ingress"))?;
        snat(cfg, i)?;
        if v.mode.is_dsr() {
            if let Some((j, b)) = cluster
                .backends
                .iter()
                .enumerate()
                .find(|(_, b)| b.port.is_some())
            {
                return Err(problem!(backend_key(ci, j, "port"), "backend {} of cluster {:?} sets port {}, but service {:?} forwards to this \
                         cluster in mode {}, which cannot change the destination port: the backend \
                         receives the client's packet as sent, to {}, and must listen there itself. \
                         Remove `port` from the backend, or use mode \"nat\"",
                        b.address,
                        cluster.name,
                        b.port.unwrap_or_default(),
                        v.name,
                        v.mode,
                        vip_port(v.vip, v.port))
                .see(at("mode"), "mode set"));
            }
        }
        if let Some(hc) = &cluster.health_check {
            let j = cluster.backends.iter().position(|b| {
                hc.port.is_none() && b.port.is_none() && cfg.check_port(&cluster.name).is_none()
            });
            if let Some(j) = j {
                return Err(problem!(
                    item("cluster", ci).key("health_check"),
                    "cluster {:?}: health_check has no port to check backend {}: it has no \
                         `port`, and the services that use the cluster do not share one non-zero \
                         port. Set health_check.port",
                    cluster.name,
                    cluster.backends[j].address
                )
                .see(at("port"), "service port"));
            }
        }
        if v.mode == ForwardMode::L2Dsr {
            if let Some((j, b)) = cluster
                .backends
                .iter()
                .enumerate()
                .find(|(_, b)| !cfg.ports.iter().any(|p| p.subnet_of(b.address).is_some()))
            {
                return Err(problem!(at("mode"), "service {:?} is in mode l2dsr, but backend {} of cluster {:?} is not inside a \
                         connected subnet of any port ({}): l2dsr only rewrites the destination MAC, so \
                         the backend must be on a link of Sluice's. Use mode ipip or gre for routed backends",
                        v.name,
                        b.address,
                        cluster.name,
                        subnets_of_family(cfg, b.address))
                .see(backend_key(ci, j, "address"), "backend"));
            }
        }
    }
    Ok(())
}

/// `snat` of service `i`: mode nat only; addresses of ports, of the vip's
/// family, each once.
fn snat(cfg: &Config, i: usize) -> Check {
    let v = &cfg.services[i];
    let at = |key: &str| item("service", i).key(key);
    if v.snat.is_empty() {
        return Ok(());
    }
    if v.mode != ForwardMode::Nat {
        return Err(problem!(
            at("snat"),
            "service {:?}: `snat` applies to mode \"nat\" only; mode {} keeps the client's \
                 address as the source, so there is nothing to translate",
            v.name,
            v.mode
        )
        .see(at("mode"), "mode set"));
    }
    for (k, &ip) in v.snat.iter().enumerate() {
        let here = at("snat").index(k);
        if ip.is_ipv4() != v.vip.is_ipv4() {
            return Err(problem!(
                here,
                "service {:?}: snat address {ip} is {}, but the vip and its backends are {}",
                v.name,
                family(ip),
                family(v.vip)
            ));
        }
        if !cfg.ports.iter().any(|p| p.owns(ip)) {
            let own: Vec<String> = cfg
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .filter(|c| c.addr().is_ipv4() == ip.is_ipv4())
                .map(|c| c.addr().to_string())
                .collect();
            return Err(problem!(
                here,
                "service {:?}: snat address {ip} is not an address of any [[port]] ({} port \
                     addresses: {}); Sluice can only receive replies on its own addresses",
                v.name,
                family(ip),
                if own.is_empty() {
                    "none".to_string()
                } else {
                    own.join(", ")
                }
            ));
        }
        if let Some(first) = v.snat[..k].iter().position(|&s| s == ip) {
            return Err(problem!(
                here,
                "service {:?}: snat address {ip} is listed twice",
                v.name
            )
            .see(at("snat").index(first), "first listed"));
        }
    }
    Ok(())
}
