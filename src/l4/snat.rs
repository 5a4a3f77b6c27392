//! SNAT source ports, sliced per worker.
//!
//! Full NAT changes a flow's tuple, so a backend's replies hash to any
//! worker. Each worker allocates SNAT source ports only from its own slice
//! of 1024..=65535: a reply's destination port names the worker that owns
//! the connection (see `l4::balancer` for the redirect ring that hands
//! it over). The L4 balancer takes ports for NAT connections and the L7
//! engine for its upstream connections, from the same slices.

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

/// SNAT source ports of one worker: its slice of 1024..=65535 for every
/// address it may use as a NAT source, handed out oldest-freed first (so a
/// port's previous connection has long left TIME_WAIT on the backend).
///
/// An address finds its pool by hash, not by walking the pools: a NAT
/// service with twenty SNAT addresses compared ten on average for every
/// new connection and every freed one.
pub struct SnatPorts {
    lo: u32,
    per_worker: u32,
    pools: HashMap<IpAddr, VecDeque<u16>>,
}

const SNAT_FIRST: u32 = 1024;
const SNAT_PORTS: u32 = 65536 - SNAT_FIRST;

impl SnatPorts {
    pub fn new(worker: usize, workers: usize, addrs: &[IpAddr]) -> SnatPorts {
        let per_worker = SNAT_PORTS / workers.max(1) as u32;
        let lo = SNAT_FIRST + per_worker * worker as u32;
        // An address listed twice has one pool.
        let pools = addrs
            .iter()
            .map(|a| (*a, (lo..lo + per_worker).map(|p| p as u16).collect()))
            .collect();
        SnatPorts {
            lo,
            per_worker,
            pools,
        }
    }

    /// The worker whose slice holds `port`, if any.
    #[inline]
    pub fn owner(&self, port: u16) -> Option<usize> {
        let p = port as u32;
        (p >= SNAT_FIRST).then(|| ((p - SNAT_FIRST) / self.per_worker.max(1)) as usize)
    }

    #[inline]
    pub fn is_mine(&self, port: u16) -> bool {
        (self.lo..self.lo + self.per_worker).contains(&(port as u32))
    }

    #[inline]
    pub fn alloc(&mut self, addr: IpAddr) -> Option<u16> {
        self.pools.get_mut(&addr)?.pop_front()
    }

    #[inline]
    pub fn free(&mut self, addr: IpAddr, port: u16) {
        if self.is_mine(port) {
            if let Some(q) = self.pools.get_mut(&addr) {
                q.push_back(port);
            }
        }
    }

    pub fn available(&self, addr: IpAddr) -> usize {
        self.pools.get(&addr).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn snat_slices_partition_the_port_space_and_name_their_owner() {
        let addrs = [ip("10.0.0.1")];
        let workers = 3;
        let pools: Vec<SnatPorts> = (0..workers)
            .map(|w| SnatPorts::new(w, workers, &addrs))
            .collect();
        for w in 0..pools.len() {
            // Every port a worker hands out is in its slice and names it.
            let mut p = SnatPorts::new(w, workers, &addrs);
            let first = p.alloc(addrs[0]).unwrap();
            assert!(p.is_mine(first));
            assert_eq!(p.owner(first), Some(w));
            for (other, pool) in pools.iter().enumerate() {
                assert_eq!(
                    pool.is_mine(first),
                    other == w,
                    "port {first} in slices {w} and {other}"
                );
            }
            assert!(p.available(addrs[0]) > 20_000);
        }
        assert_eq!(
            pools[0].owner(80),
            None,
            "ports below 1024 belong to nobody"
        );
    }

    #[test]
    fn every_address_finds_its_own_pool() {
        let mut addrs: Vec<IpAddr> = (1..=50)
            .map(|i| ip(&format!("10.1.{}.{i}", i % 3)))
            .collect();
        addrs.extend((1..=7).map(|i| ip(&format!("2001:db8::{i:x}"))));
        addrs.push(addrs[3]); // listed twice: one pool
        let mut p = SnatPorts::new(0, 1, &addrs);
        let n = p.available(addrs[0]);
        for (k, a) in addrs.iter().enumerate().take(57) {
            // The k-th address gives k + 1 ports; the others keep theirs.
            for _ in 0..=k {
                assert!(p.alloc(*a).is_some(), "{a}");
            }
        }
        for (k, a) in addrs.iter().enumerate().take(57) {
            assert_eq!(p.available(*a), n - k - 1, "{a}");
        }
        let port = p.alloc(addrs[10]).unwrap();
        p.free(addrs[10], port);
        assert_eq!(p.available(addrs[10]), n - 11);
        for stranger in ["10.1.0.51", "10.9.9.9", "2001:db8::99", "::ffff:10.1.1.1"] {
            assert_eq!(p.alloc(ip(stranger)), None, "{stranger}");
        }
        assert_eq!(SnatPorts::new(0, 1, &[]).alloc(addrs[0]), None);
    }

    #[test]
    fn snat_ports_are_reused_oldest_first_and_foreign_ports_are_not_taken() {
        let a = ip("10.0.0.1");
        let mut p = SnatPorts::new(0, 2, &[a]);
        let n = p.available(a);
        let x = p.alloc(a).unwrap();
        let y = p.alloc(a).unwrap();
        p.free(a, x);
        assert_eq!(p.available(a), n - 1);
        // x went to the back of the queue: y's successor comes first.
        assert_ne!(p.alloc(a), Some(x));
        // A port of the other worker's slice, or of an unknown address, is
        // never added to this pool.
        p.free(a, 65000);
        p.free(ip("10.9.9.9"), y);
        assert_eq!(p.available(a), n - 2);
        assert_eq!(p.alloc(ip("10.9.9.9")), None);
    }
}
