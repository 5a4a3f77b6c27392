//! Per-request backend choice for L7 clusters: round robin, smooth
//! weighted round robin, least request (power of two random choices),
//! weighted random, and consistent hashing (Maglev) on the source address,
//! a header or a cookie; plus sticky sessions by a cookie Sluice sets.
//!
//! Only eligible backends are chosen: present in the plane, weight above 0,
//! healthy (see [`super::health::HealthState`]), with a port, and not among
//! those this request already failed on.

use std::net::IpAddr;

use super::health::HealthState;
use super::plane::{Balance, HashOn, L7Cluster};
use super::router::RequestView;
use crate::net::services::{ClusterPlane, Services};

/// What one worker remembers between picks.
pub struct Balancer {
    /// Per cluster index: round-robin and WRR positions.
    rr: Vec<u32>,
    wrr: Vec<u32>,
    /// Per backend id: requests in flight on this worker.
    pub inflight: Vec<u32>,
    scratch: Vec<u32>,
}

/// 64-bit FNV-1a, finished with a splitmix64 round (good avalanche for
/// Maglev's table index). Deterministic across boxes and restarts.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value Sluice puts in a sticky cookie for a backend: 16 hex digits
/// of a hash of its address and port, so that every Sluice (and every
/// restart) names a backend the same way, and the cookie reveals neither.
pub fn sticky_value(addr: IpAddr, port: u16) -> [u8; 16] {
    let mut key = [0u8; 18];
    match addr {
        IpAddr::V4(a) => key[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => key[..16].copy_from_slice(&a.octets()),
    }
    key[16..].copy_from_slice(&port.to_be_bytes());
    let h = hash_bytes(0x5151_1ce5_71c4_c00c, &key);
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

impl Balancer {
    pub fn new(backends: usize, clusters: usize) -> Balancer {
        Balancer {
            rr: vec![0; clusters],
            wrr: vec![0; clusters],
            inflight: vec![0; backends],
            scratch: Vec::with_capacity(64),
        }
    }

    fn eligible(services: &Services, health: &HealthState, id: u32, exclude: &[u32]) -> bool {
        services
            .backend(id)
            .is_some_and(|b| b.weight > 0 && b.port.is_some())
            && health.is_up(id)
            && !exclude.contains(&id)
    }

    /// The backend for one request to cluster `ci`. `rand` is a fresh
    /// random number. `sticky`: the backend the request's sticky cookie
    /// names, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn pick(
        &mut self,
        services: &Services,
        policy: &L7Cluster,
        health: &HealthState,
        ci: usize,
        req: &impl RequestView,
        peer: IpAddr,
        exclude: &[u32],
        rand: u64,
    ) -> Option<u32> {
        let cluster = services.clusters.get(ci)?;
        if let Some(name) = &policy.sticky_cookie {
            if let Some(v) = req.cookie(name) {
                let named = cluster.members.iter().copied().find(|&id| {
                    services.backend(id).is_some_and(|b| {
                        b.port
                            .is_some_and(|p| sticky_value(b.addr, p).as_slice() == v)
                    })
                });
                if let Some(id) = named {
                    if Self::eligible(services, health, id, exclude) {
                        return Some(id);
                    }
                }
            }
        }
        if self.rr.len() <= ci {
            self.rr.resize(ci + 1, 0);
            self.wrr.resize(ci + 1, 0);
        }
        match &policy.balance {
            Balance::RoundRobin => self.round_robin(services, health, cluster, ci, exclude),
            Balance::WeightedRoundRobin => {
                let n = cluster.wrr.len();
                for _ in 0..n {
                    let pos = self.wrr[ci] as usize % n;
                    self.wrr[ci] = ((pos + 1) % n) as u32;
                    let id = cluster.members[cluster.wrr[pos] as usize];
                    if Self::eligible(services, health, id, exclude) {
                        return Some(id);
                    }
                }
                None
            }
            Balance::LeastRequest => {
                self.collect(services, health, cluster, exclude);
                let n = self.scratch.len();
                if n == 0 {
                    return None;
                }
                let a = self.scratch[(rand % n as u64) as usize];
                let b = self.scratch[((rand >> 32) % n as u64) as usize];
                // Fewer requests in flight per unit of weight wins:
                // (ia + 1) / wa < (ib + 1) / wb.
                let load = |id: u32| {
                    let w = services.backend(id).map_or(1, |b| b.weight.max(1)) as u64;
                    (
                        self.inflight.get(id as usize).copied().unwrap_or(0) as u64 + 1,
                        w,
                    )
                };
                let ((ia, wa), (ib, wb)) = (load(a), load(b));
                Some(if ia * wb <= ib * wa { a } else { b })
            }
            Balance::Random => {
                self.collect(services, health, cluster, exclude);
                let total: u64 = self
                    .scratch
                    .iter()
                    .map(|&id| services.backend(id).map_or(0, |b| b.weight as u64))
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut r = rand % total;
                for &id in &self.scratch {
                    let w = services.backend(id).map_or(0, |b| b.weight as u64);
                    if r < w {
                        return Some(id);
                    }
                    r -= w;
                }
                None
            }
            Balance::ConsistentHash(on) => {
                let key: Option<u64> = match on {
                    HashOn::Source => Some(match peer {
                        IpAddr::V4(a) => hash_bytes(cluster.seed, &a.octets()),
                        IpAddr::V6(a) => hash_bytes(cluster.seed, &a.octets()),
                    }),
                    HashOn::Header(name) => req
                        .header_values(name)
                        .next()
                        .map(|v| hash_bytes(cluster.seed, v)),
                    HashOn::Cookie(name) => req.cookie(name).map(|v| hash_bytes(cluster.seed, v)),
                };
                if let Some(mut h) = key {
                    // An ineligible pick is re-hashed a few times, so that
                    // keys of a failed backend spread over the others.
                    for _ in 0..8 {
                        if let Some(i) = cluster.maglev.lookup(h) {
                            let id = cluster.members[i as usize];
                            if Self::eligible(services, health, id, exclude) {
                                return Some(id);
                            }
                        }
                        h = hash_bytes(h, b"rehash");
                    }
                }
                self.round_robin(services, health, cluster, ci, exclude)
            }
        }
    }

    fn round_robin(
        &mut self,
        services: &Services,
        health: &HealthState,
        cluster: &ClusterPlane,
        ci: usize,
        exclude: &[u32],
    ) -> Option<u32> {
        let n = cluster.members.len();
        for _ in 0..n {
            let pos = self.rr[ci] as usize % n;
            self.rr[ci] = ((pos + 1) % n) as u32;
            let id = cluster.members[pos];
            if Self::eligible(services, health, id, exclude) {
                return Some(id);
            }
        }
        None
    }

    fn collect(
        &mut self,
        services: &Services,
        health: &HealthState,
        cluster: &ClusterPlane,
        exclude: &[u32],
    ) {
        self.scratch.clear();
        for &id in &cluster.members {
            if Self::eligible(services, health, id, exclude) {
                self.scratch.push(id);
            }
        }
    }

    pub fn started(&mut self, backend: u32) {
        if let Some(n) = self.inflight.get_mut(backend as usize) {
            *n += 1;
        }
    }

    pub fn finished(&mut self, backend: u32) {
        if let Some(n) = self.inflight.get_mut(backend as usize) {
            *n = n.saturating_sub(1);
        }
    }
}
