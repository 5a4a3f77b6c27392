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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l4::maglev::MaglevTable;
    use crate::l7::router::RequestView;
    use crate::net::services::{wrr_sequence, BackendPlane, ClusterPlane, Sched};

    /// One cluster (index 0) of backends with ids 0.. and these weights.
    fn services(weights: &[u32]) -> Services {
        let backends: Vec<Option<BackendPlane>> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Some(BackendPlane {
                    id: i as u32,
                    name: format!("b{i}"),
                    cluster: 0,
                    addr: IpAddr::from([10, 0, 0, i as u8 + 1]),
                    port: Some(8080),
                    weight,
                    src: None,
                    up: true,
                    check_port: None,
                    rst_limit: 0,
                })
            })
            .collect();
        let names: Vec<(String, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("b{i}"), w))
            .collect();
        let cluster = ClusterPlane {
            name: "web".into(),
            sched: Sched::Maglev,
            seed: 7,
            members: (0..weights.len() as u32).collect(),
            maglev: MaglevTable::build(&names, 65537).unwrap(),
            wrr: wrr_sequence(weights),
            reset_on_down: false,
        };
        Services::new(vec![], vec![cluster], backends)
    }

    fn policy(balance: Balance) -> L7Cluster {
        L7Cluster {
            balance,
            ..L7Cluster::default()
        }
    }

    /// A request with these header lines.
    struct Req(Vec<(&'static [u8], &'static [u8])>);

    impl RequestView for Req {
        fn method(&self) -> &[u8] {
            b"GET"
        }
        fn path(&self) -> &[u8] {
            b"/"
        }
        fn query(&self) -> Option<&[u8]> {
            None
        }
        fn host(&self) -> Option<&[u8]> {
            None
        }
        fn header_values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
            self.0
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn picks(b: &mut Balancer, s: &Services, p: &L7Cluster, h: &HealthState, n: usize) -> Vec<u32> {
        let req = Req(vec![]);
        (0..n as u64)
            .filter_map(|i| {
                b.pick(
                    s,
                    p,
                    h,
                    0,
                    &req,
                    PEER,
                    &[],
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                )
            })
            .collect()
    }

    #[test]
    fn round_robin_skips_down_zero_weight_and_excluded_backends() {
        let s = services(&[1, 0, 1, 1]);
        let h = HealthState::default();
        h.set(2, false);
        let mut b = Balancer::new(8, 1);
        let p = policy(Balance::RoundRobin);
        assert_eq!(picks(&mut b, &s, &p, &h, 4), [0, 3, 0, 3]);
        let req = Req(vec![]);
        assert_eq!(b.pick(&s, &p, &h, 0, &req, PEER, &[0], 0), Some(3));
        assert_eq!(b.pick(&s, &p, &h, 0, &req, PEER, &[0, 3], 0), None);
    }

    /// (policy, weights, share each backend must get within 10 %).
    #[test]
    fn weights_are_honoured() {
        let cases = [
            (Balance::WeightedRoundRobin, [1u32, 2, 3]),
            (Balance::Random, [1, 2, 3]),
        ];
        for (balance, weights) in cases {
            let s = services(&weights);
            let h = HealthState::default();
            let mut b = Balancer::new(8, 1);
            let p = policy(balance.clone());
            let n = 6000;
            let mut count = [0usize; 3];
            for id in picks(&mut b, &s, &p, &h, n) {
                count[id as usize] += 1;
            }
            for (i, &w) in weights.iter().enumerate() {
                let want = n * w as usize / 6;
                assert!(
                    count[i].abs_diff(want) <= want / 10,
                    "{balance:?}: {count:?}"
                );
            }
        }
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let s = services(&[1, 1]);
        let h = HealthState::default();
        let mut b = Balancer::new(8, 1);
        for _ in 0..5 {
            b.started(0);
        }
        let p = policy(Balance::LeastRequest);
        // Whenever the two choices differ, backend 1 wins.
        let got = picks(&mut b, &s, &p, &h, 200);
        assert!(got.iter().filter(|&&id| id == 1).count() > 80, "{got:?}");
        assert!(got.iter().all(|&id| id == 1 || id == 0));
        for _ in 0..5 {
            b.finished(0);
        }
        b.finished(0);
        assert_eq!(b.inflight[0], 0, "finished never goes below zero");
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_only_a_failed_backends_keys() {
        let s = services(&[1, 1, 1, 1]);
        let h = HealthState::default();
        let mut b = Balancer::new(8, 1);
        let p = policy(Balance::ConsistentHash(HashOn::Header(b"x-user".to_vec())));
        const USERS: [&[u8]; 8] = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
        let pick = |b: &mut Balancer, h: &HealthState, u: &'static [u8]| {
            let req = Req(vec![(b"X-User", u)]);
            b.pick(&s, &p, h, 0, &req, PEER, &[], 1).unwrap()
        };
        let first: Vec<u32> = USERS.iter().map(|u| pick(&mut b, &h, u)).collect();
        let again: Vec<u32> = USERS.iter().map(|u| pick(&mut b, &h, u)).collect();
        assert_eq!(first, again);
        let down = first[0];
        h.set(down, false);
        for (u, &was) in USERS.iter().zip(&first) {
            let now = pick(&mut b, &h, u);
            if was == down {
                assert_ne!(now, down);
            } else {
                assert_eq!(now, was, "a key of a healthy backend moved");
            }
        }
    }

    #[test]
    fn a_sticky_cookie_pins_the_backend_while_it_is_eligible() {
        let s = services(&[1, 1, 1]);
        let h = HealthState::default();
        let mut b = Balancer::new(8, 1);
        let p = L7Cluster {
            sticky_cookie: Some(b"lb".to_vec()),
            ..policy(Balance::RoundRobin)
        };
        let value = sticky_value(IpAddr::from([10, 0, 0, 3]), 8080);
        let cookie: &'static [u8] =
            Box::leak([&b"a=1; lb="[..], &value[..]].concat().into_boxed_slice());
        let req = Req(vec![(b"cookie", cookie)]);
        for _ in 0..3 {
            assert_eq!(b.pick(&s, &p, &h, 0, &req, PEER, &[], 0), Some(2));
        }
        // Excluded (a retry) or down: the policy decides.
        assert_ne!(b.pick(&s, &p, &h, 0, &req, PEER, &[2], 0), Some(2));
        h.set(2, false);
        assert_ne!(b.pick(&s, &p, &h, 0, &req, PEER, &[], 0), Some(2));
    }

    #[test]
    fn sticky_values_are_stable_and_distinct() {
        let a = sticky_value(IpAddr::from([10, 0, 0, 1]), 80);
        assert_eq!(a, sticky_value(IpAddr::from([10, 0, 0, 1]), 80));
        assert_ne!(a, sticky_value(IpAddr::from([10, 0, 0, 1]), 81));
        assert_ne!(a, sticky_value(IpAddr::from([10, 0, 0, 2]), 80));
        assert!(a.iter().all(u8::is_ascii_hexdigit));
    }
}
