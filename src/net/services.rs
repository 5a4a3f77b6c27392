//! Compiled L4 services: VIPs, clusters and backends as the data plane reads
//! them, built by the control thread (`control::compile`) and published
//! inside a [`super::plane::Plane`].
//!
//! Backends and services carry ids that stay the same across config
//! reloads (the control thread keeps the registry), so connection-tracking
//! entries, which store ids, stay meaningful when a new plane is swapped in:
//! a backend whose weight drops to 0 keeps its id and its connections; a
//! backend that disappears leaves a hole (`None`) and its connections are
//! expired on their next packet.

use std::net::IpAddr;

use crate::l4::flow::{flow_hash, src_hash, FlowKey};
use crate::l4::maglev::MaglevTable;

/// Most services and backends a Sluice instance tracks counters for.
pub const MAX_SERVICES: usize = 1024;
pub const MAX_BACKENDS: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Full NAT: destination to the backend, source to a Sluice address.
    Nat,
    /// IP-in-IP encapsulation (direct server return).
    Ipip,
    /// GRE encapsulation (direct server return).
    Gre,
    /// MAC rewrite only (direct server return on one L2 segment).
    L2Dsr,
}

impl Mode {
    pub fn is_dsr(self) -> bool {
        self != Mode::Nat
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sched {
    Maglev,
    Wrr,
    LeastConn,
    SourceHash,
}

#[derive(Clone, Debug)]
pub struct BackendPlane {
    /// Stable id (index into [`Services::backends`] and the counters).
    pub id: u32,
    pub name: String,
    pub cluster: usize,
    pub addr: IpAddr,
    /// NAT: destination port to use instead of the client's.
    pub port: Option<u16>,
    pub weight: u32,
    /// Source address of packets Sluice sends to this backend (the egress
    /// port's own address: SNAT default and tunnel outer source).
    pub src: Option<IpAddr>,
    /// Up by its health check (or unchecked) when the plane was built. A
    /// down backend is out of the cluster's Maglev table and round-robin
    /// sequence and takes no new L4 connections.
    pub up: bool,
    /// The port its cluster's health check connects to; None: not checked.
    pub check_port: Option<u16>,
    /// Passive marking: new NAT connections in a row answered with a RST
    /// that take it down (its check's `passive_rst_limit`; 0: off).
    pub rst_limit: u32,
}

#[derive(Clone, Debug)]
pub struct ClusterPlane {
    pub name: String,
    pub sched: Sched,
    pub seed: u64,
    /// Backend ids in config order.
    pub members: Vec<u32>,
    /// Maglev table over `members` (weights honoured, weight 0 absent).
    /// Built for every cluster: whatever the scheduler, packets of flows
    /// without state (after a restart, or when the table is full) are
    /// placed by it, so every Sluice agrees on them.
    pub maglev: MaglevTable,
    /// Smooth weighted round-robin sequence over `members` (indexes).
    pub wrr: Vec<u32>,
    /// `on_backend_down = "reset"`: tracked connections of a down backend
    /// are reset (TCP) or forgotten (UDP) at their next packet.
    pub reset_on_down: bool,
}

#[derive(Clone, Debug)]
pub struct ServicePlane {
    /// Stable id (counters, connection entries).
    pub id: u16,
    pub name: String,
    pub vip: IpAddr,
    /// 0: every port.
    pub port: u16,
    pub proto: u8,
    pub mode: Mode,
    pub cluster: usize,
    /// Port index on whose link the VIP is answered for (ARP/NDP).
    pub ingress: usize,
    /// NAT source addresses; empty: each backend's `src`.
    pub snat: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Services {
    /// Some backend has a health check: worker 0's engine runs to probe
    /// it, and TCP segments to Sluice's own addresses that no L4
    /// connection claims go to that engine.
    pub probing: bool,
    pub services: Vec<ServicePlane>,
    pub clusters: Vec<ClusterPlane>,
    /// By backend id; `None` for ids of removed backends.
    pub backends: Vec<Option<BackendPlane>>,
    /// (vip, port, proto) -> index into `services`; port 0 entries match
    /// any port.
    index: ServiceIndex,
    /// (ingress port, vip) for ARP/NDP and echo.
    vips: Vec<(usize, IpAddr)>,
}

impl Services {
    pub fn new(
        services: Vec<ServicePlane>,
        clusters: Vec<ClusterPlane>,
        backends: Vec<Option<BackendPlane>>,
    ) -> Services {
        let mut index = ServiceIndex::with_capacity(services.len());
        let mut vips = Vec::new();
        for (i, s) in services.iter().enumerate() {
            index.insert(s.vip, s.port, s.proto, i as u16);
            if !vips.contains(&(s.ingress, s.vip)) {
                vips.push((s.ingress, s.vip));
            }
        }
        let probing = backends.iter().flatten().any(|b| b.check_port.is_some());
        Services {
            probing,
            services,
            clusters,
            backends,
            index,
            vips,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Also answer ARP/NDP and echo for `vip` on `port` (an L7 listener's
    /// address).
    pub fn add_vip(&mut self, port: usize, vip: IpAddr) {
        if !self.vips.contains(&(port, vip)) {
            self.vips.push((port, vip));
        }
    }

    /// Every VIP (on any port; a VIP answered on several ports repeats).
    /// The packet path asks [`super::plane::Plane::is_vip`], one probe.
    pub fn all_vips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.vips.iter().map(|(_, v)| *v)
    }

    /// Is `ip` a VIP answered for on `port`?
    #[inline]
    pub fn vip_on(&self, port: usize, ip: IpAddr) -> bool {
        self.vips.iter().any(|(p, v)| *p == port && *v == ip)
    }

    /// VIPs answered on `port`.
    pub fn vips_on(&self, port: usize) -> impl Iterator<Item = IpAddr> + '_ {
        self.vips
            .iter()
            .filter(move |(p, _)| *p == port)
            .map(|(_, v)| *v)
    }

    #[inline]
    pub fn lookup(&self, vip: IpAddr, port: u16, proto: u8) -> Option<&ServicePlane> {
        self.services
            .get(self.lookup_index(vip, port, proto)? as usize)
    }

    /// [`Services::lookup`] as an index into `services` (always in range).
    #[inline]
    pub fn lookup_index(&self, vip: IpAddr, port: u16, proto: u8) -> Option<u16> {
        let i = self
            .index
            .get(vip, port, proto)
            .or_else(|| self.index.get(vip, 0, proto))?;
        ((i as usize) < self.services.len()).then_some(i)
    }

    #[inline]
    pub fn backend(&self, id: u32) -> Option<&BackendPlane> {
        self.backends.get(id as usize).and_then(|b| b.as_ref())
    }

    /// Whether the tracked connections of backend `id` end now: it is down
    /// and its cluster resets the connections of down backends.
    #[inline]
    pub fn reset_now(&self, id: u32) -> bool {
        self.backend(id).is_some_and(|b| {
            !b.up
                && self
                    .clusters
                    .get(b.cluster)
                    .is_some_and(|c| c.reset_on_down)
        })
    }

    /// The backend Maglev picks for a flow without state.
    #[inline]
    pub fn consistent_pick(&self, cluster: usize, key: &FlowKey) -> Option<u32> {
        let c = self.clusters.get(cluster)?;
        let h = match c.sched {
            Sched::SourceHash => src_hash(key, c.seed),
            _ => flow_hash(key, c.seed),
        };
        c.maglev.lookup(h).map(|i| c.members[i as usize])
    }
}

/// (vip, port, proto) -> service index, looked up for every client
/// packet: open addressing at most half full, keys hashed by one
/// multiplication, compared as two words. Cheaper than a general hash map
/// whose hasher runs over an `IpAddr` enum, a port and a protocol.
#[derive(Clone, Debug)]
struct ServiceIndex {
    /// (address, port << 16 | proto << 8 | family, service index + 1);
    /// 0 in the last field: empty.
    slots: Vec<(u128, u32, u16)>,
    bits: u32,
}

impl Default for ServiceIndex {
    fn default() -> ServiceIndex {
        ServiceIndex::with_capacity(0)
    }
}

impl ServiceIndex {
    fn with_capacity(n: usize) -> ServiceIndex {
        let size = (2 * n).max(8).next_power_of_two();
        ServiceIndex {
            slots: vec![(0, 0, 0); size],
            bits: size.trailing_zeros(),
        }
    }

    #[inline(always)]
    fn key(vip: IpAddr, port: u16, proto: u8) -> (u128, u32) {
        match vip {
            IpAddr::V4(a) => (
                u128::from(u32::from(a)),
                u32::from(port) << 16 | u32::from(proto) << 8 | 4,
            ),
            IpAddr::V6(a) => (
                u128::from(a),
                u32::from(port) << 16 | u32::from(proto) << 8 | 6,
            ),
        }
    }

    #[inline(always)]
    fn home(&self, a: u128, p: u32) -> usize {
        let h = (a as u64) ^ ((a >> 64) as u64).rotate_left(29) ^ (u64::from(p) << 32);
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    fn insert(&mut self, vip: IpAddr, port: u16, proto: u8, i: u16) {
        let (a, p) = ServiceIndex::key(vip, port, proto);
        let mask = self.slots.len() - 1;
        let mut s = self.home(a, p);
        while self.slots[s].2 != 0 && (self.slots[s].0, self.slots[s].1) != (a, p) {
            s = (s + 1) & mask;
        }
        self.slots[s] = (a, p, i + 1);
    }

    #[inline]
    fn get(&self, vip: IpAddr, port: u16, proto: u8) -> Option<u16> {
        let (a, p) = ServiceIndex::key(vip, port, proto);
        let mask = self.slots.len() - 1;
        let mut s = self.home(a, p);
        loop {
            let e = &self.slots[s];
            if e.2 == 0 {
                return None;
            }
            if e.0 == a && e.1 == p {
                return Some(e.2 - 1);
            }
            s = (s + 1) & mask;
        }
    }
}

/// Smooth weighted round robin (as nginx does it): a sequence in which each
/// member appears weight times, interleaved. Bounded to 4096 entries by
/// scaling weights down proportionally.
pub fn wrr_sequence(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    if total == 0 {
        return Vec::new();
    }
    let scale = if total > 4096 {
        total as f64 / 4096.0
    } else {
        1.0
    };
    let w: Vec<i64> = weights
        .iter()
        .map(|&x| {
            if x == 0 {
                0
            } else {
                ((x as f64 / scale).round() as i64).max(1)
            }
        })
        .collect();
    let sum: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        seq.push(best as u32);
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_index_finds_exact_ports_then_all_ports() {
        let mut ix = ServiceIndex::with_capacity(40);
        let v4 = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let v6 = |i: u32| IpAddr::V6(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | i as u128));
        for i in 0..20u32 {
            ix.insert(v4(i), 80, 6, i as u16);
            ix.insert(v6(i), 0, 17, 100 + i as u16);
        }
        for i in 0..20u32 {
            assert_eq!(ix.get(v4(i), 80, 6), Some(i as u16));
            assert_eq!(ix.get(v4(i), 80, 17), None, "protocol is part of the key");
            assert_eq!(ix.get(v4(i), 443, 6), None);
            assert_eq!(ix.get(v6(i), 0, 17), Some(100 + i as u16));
            // The same low bits in the other family are another key.
            assert_eq!(ix.get(v4(i), 0, 17), None);
        }
        assert_eq!(ServiceIndex::default().get(v4(1), 80, 6), None);
    }

    #[test]
    fn wrr_honours_weights_and_interleaves() {
        let s = wrr_sequence(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        // Smooth: the heavy member never runs more than 3 in a row here.
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
        assert!(wrr_sequence(&[0, 0]).is_empty());
        assert_eq!(wrr_sequence(&[0, 3]), vec![1, 1, 1]);
    }
}
