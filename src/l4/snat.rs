//! SNAT source ports, sliced per worker.
//!
//! Full NAT changes a flow's tuple, so a backend's replies hash to any
//! worker. Each worker allocates SNAT source ports only from its own slice
//! of 1024..=65535: a reply's destination port names the worker that owns
//! the connection (see `l4::balancer` for the redirect ring that hands
//! it over). The L4 balancer takes ports for NAT connections and the L7
//! engine for its upstream connections, from the same slices.

use std::net::IpAddr;

/// SNAT source ports of one worker: its slice of 1024..=65535 for every
/// address it may use as a NAT source, handed out oldest-freed first (so a
/// port's previous connection has long left TIME_WAIT on the backend).
pub struct SnatPorts {
    lo: u32,
    per_worker: u32,
    pools: Vec<(IpAddr, std::collections::VecDeque<u16>)>,
}

const SNAT_FIRST: u32 = 1024;
const SNAT_PORTS: u32 = 65536 - SNAT_FIRST;

impl SnatPorts {
    pub fn new(worker: usize, workers: usize, addrs: &[IpAddr]) -> SnatPorts {
        let per_worker = SNAT_PORTS / workers.max(1) as u32;
        let lo = SNAT_FIRST + per_worker * worker as u32;
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
        self.pools
            .iter_mut()
            .find(|(a, _)| *a == addr)?
            .1
            .pop_front()
    }

    #[inline]
    pub fn free(&mut self, addr: IpAddr, port: u16) {
        if self.is_mine(port) {
            if let Some((_, q)) = self.pools.iter_mut().find(|(a, _)| *a == addr) {
                q.push_back(port);
            }
        }
    }

    pub fn available(&self, addr: IpAddr) -> usize {
        self.pools
            .iter()
            .find(|(a, _)| *a == addr)
            .map_or(0, |(_, q)| q.len())
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
