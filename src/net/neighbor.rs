//! Per-worker neighbor table (ARP for IPv4, NDP for IPv6).
//!
//! Each worker keeps its own table so that lookups on the hot path touch no
//! shared memory. ARP and NDP replies arrive on whichever queue the NIC
//! chooses (usually queue 0, since they carry no L4 ports for RSS), so a
//! worker that learns an entry also posts it to every other worker's mailbox
//! (a bounded lock-free queue drained between bursts).
//!
//! States: `Static` (from config, never expires), `Reachable` until
//! `neighbor_timeout`, and `Incomplete` while a solicitation is outstanding;
//! solicitations for one address are sent at most once per `retry` interval.
//! The table is preallocated and bounded; when full, new addresses are not
//! learned (counted by the caller) and existing entries keep working.

use std::net::IpAddr;

use hashbrown::HashMap;

/// An entry learned by one worker, for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborUpdate {
    pub port: u8,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Static,
    Reachable { expires: u64 },
    Incomplete { retry_at: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: [u8; 6],
    state: State,
}

/// Outcome of resolving a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    Hit([u8; 6]),
    /// Unknown: the caller should send a solicitation now.
    MissSolicit,
    /// Unknown and a solicitation went out recently.
    Miss,
}

pub struct NeighborTable {
    map: HashMap<(u8, IpAddr), Entry>,
    capacity: usize,
    timeout_ns: u64,
    retry_ns: u64,
    /// Entries learned since the last drain, to post to other workers.
    outbox: Vec<NeighborUpdate>,
    /// Entries learned or refreshed, ever.
    learned: u64,
    /// Recent hits, checked before the hash table: forwarded packets go to
    /// a gateway or a handful of backends, replies to a gateway. Direct
    /// mapped by address, so a few next hops taking turns (a Maglev
    /// cluster) do not evict each other as a single last-hit memo would.
    /// Emptied whenever the table changes.
    memo: [Option<MemoEntry>; MEMO],
    /// Bumped whenever an entry changes (and by
    /// [`NeighborTable::plane_changed`]): a [`BackendL2`] memo entry is
    /// good only while the generation it was made in lasts.
    generation: u32,
    /// Per backend, the whole L2 output towards it (see [`BackendL2`]),
    /// direct mapped by backend id.
    backend_l2: Box<[BackendL2; BACKEND_L2]>,
}

/// An Ethernet header (with the egress port's VLAN tag, if any) ready to be
/// copied in front of an IP packet, and the port it leaves through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Header {
    pub port: u8,
    /// 14, or 18 with a VLAN tag.
    pub len: u8,
    pub bytes: [u8; 18],
}

/// What [`crate::net::output::emit_l2_backend`] resolved for a backend
/// (route, egress port, neighbor, Ethernet header), so that the packets of
/// a backend's connections skip the route and neighbor lookups and the
/// header's assembly: one load and one copy. Valid while the neighbor
/// entry it used is (`until`), the table has not changed (`generation`),
/// and the backend still has the address it was made for (the plane
/// changes that: [`NeighborTable::plane_changed`]).
#[derive(Clone, Copy, Debug)]
struct BackendL2 {
    backend: u32,
    /// 0: empty (generations start at 1).
    generation: u32,
    until: u64,
    addr: IpAddr,
    hdr: L2Header,
}

const BACKEND_L2_EMPTY: BackendL2 = BackendL2 {
    backend: 0,
    generation: 0,
    until: 0,
    addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    hdr: L2Header {
        port: 0,
        len: 0,
        bytes: [0; 18],
    },
};

/// Entries of the per-backend memo (a power of two): backends beyond it
/// share slots and take turns.
const BACKEND_L2: usize = 256;

/// (port, next hop), its MAC, valid until (ns).
type MemoEntry = ((u8, IpAddr), [u8; 6], u64);

/// Entries of the hit memo (a power of two).
const MEMO: usize = 8;

#[inline]
fn memo_slot(port: u8, ip: IpAddr) -> usize {
    let low = match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => u128::from(a) as u32,
    };
    ((low ^ u32::from(port)).wrapping_mul(0x9e37_79b1) >> (32 - MEMO.trailing_zeros())) as usize
}

const OUTBOX: usize = 64;

impl NeighborTable {
    pub fn new(capacity: usize, timeout_ns: u64, retry_ns: u64) -> NeighborTable {
        NeighborTable {
            map: HashMap::with_capacity(capacity),
            capacity,
            timeout_ns,
            retry_ns,
            outbox: Vec::with_capacity(OUTBOX),
            learned: 0,
            memo: [None; MEMO],
            generation: 1,
            backend_l2: Box::new([BACKEND_L2_EMPTY; BACKEND_L2]),
        }
    }

    /// Forget every memo: an entry changed.
    #[inline]
    fn changed(&mut self) {
        self.memo = [None; MEMO];
        self.generation = self.generation.wrapping_add(1).max(1);
    }

    /// A new plane is in use: routes, ports and backends' addresses may
    /// have changed, so what [`BackendL2`] remembers no longer holds.
    pub fn plane_changed(&mut self) {
        self.changed();
    }

    /// The L2 output remembered for `backend` at `addr`, if still valid at
    /// `now` (see [`BackendL2`]).
    #[inline]
    pub fn backend_l2(&self, backend: u32, addr: IpAddr, now: u64) -> Option<&L2Header> {
        let e = &self.backend_l2[backend as usize % BACKEND_L2];
        (e.generation == self.generation && e.backend == backend && now < e.until && e.addr == addr)
            .then_some(&e.hdr)
    }

    /// Remember the L2 output towards `backend` at `addr`, good until
    /// `until` (the neighbor entry's expiry).
    #[inline]
    pub fn remember_backend_l2(&mut self, backend: u32, addr: IpAddr, until: u64, hdr: L2Header) {
        self.backend_l2[backend as usize % BACKEND_L2] = BackendL2 {
            backend,
            generation: self.generation,
            until,
            addr,
            hdr,
        };
    }

    pub fn add_static(&mut self, port: u8, ip: IpAddr, mac: [u8; 6]) {
        self.changed();
        self.map.insert(
            (port, ip),
            Entry {
                mac,
                state: State::Static,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries learned or refreshed since start.
    pub fn learned(&self) -> u64 {
        self.learned
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Resolve `ip` on `port` at time `now` (ns).
    #[inline]
    pub fn resolve(&mut self, port: u8, ip: IpAddr, now: u64) -> Resolve {
        self.resolve_until(port, ip, now).0
    }

    /// [`NeighborTable::resolve`], with how long a hit stays good: its
    /// expiry (`u64::MAX` for a static entry); 0 when not a hit.
    #[inline]
    pub fn resolve_until(&mut self, port: u8, ip: IpAddr, now: u64) -> (Resolve, u64) {
        let m = memo_slot(port, ip);
        if let Some((k, mac, until)) = self.memo[m] {
            if k == (port, ip) && now < until {
                return (Resolve::Hit(mac), until);
            }
        }
        let r = match self.map.get_mut(&(port, ip)) {
            Some(e) => match e.state {
                State::Static => {
                    self.memo[m] = Some(((port, ip), e.mac, u64::MAX));
                    return (Resolve::Hit(e.mac), u64::MAX);
                }
                State::Reachable { expires } if now < expires => {
                    self.memo[m] = Some(((port, ip), e.mac, expires));
                    return (Resolve::Hit(e.mac), expires);
                }
                State::Reachable { .. } => {
                    // Expired: keep using nothing stale; re-solicit.
                    e.state = State::Incomplete {
                        retry_at: now + self.retry_ns,
                    };
                    Resolve::MissSolicit
                }
                State::Incomplete { retry_at } if now >= retry_at => {
                    e.state = State::Incomplete {
                        retry_at: now + self.retry_ns,
                    };
                    Resolve::MissSolicit
                }
                State::Incomplete { .. } => Resolve::Miss,
            },
            None => {
                if self.map.len() < self.capacity {
                    self.map.insert(
                        (port, ip),
                        Entry {
                            mac: [0; 6],
                            state: State::Incomplete {
                                retry_at: now + self.retry_ns,
                            },
                        },
                    );
                }
                Resolve::MissSolicit
            }
        };
        (r, 0)
    }

    /// Record that `ip` on `port` is at `mac`. With `create` false only an
    /// existing entry is updated (RFC 826's merge rule; RFC 4861 §7.2.5 for
    /// unsolicited advertisements). Static entries are never overwritten.
    /// Returns true if the table changed or was refreshed.
    pub fn learn(&mut self, port: u8, ip: IpAddr, mac: [u8; 6], now: u64, create: bool) -> bool {
        self.changed();
        let expires = now + self.timeout_ns;
        let known = match self.map.get_mut(&(port, ip)) {
            Some(e) if e.state == State::Static => return false,
            Some(e) => {
                e.mac = mac;
                e.state = State::Reachable { expires };
                true
            }
            None => false,
        };
        if !known {
            if !create || self.map.len() >= self.capacity {
                return false;
            }
            self.map.insert(
                (port, ip),
                Entry {
                    mac,
                    state: State::Reachable { expires },
                },
            );
        }
        self.learned += 1;
        if self.outbox.len() < OUTBOX {
            self.outbox.push(NeighborUpdate { port, ip, mac });
        }
        true
    }

    /// Apply an entry learned by another worker.
    pub fn apply(&mut self, u: NeighborUpdate, now: u64) {
        self.learn(u.port, u.ip, u.mac, now, true);
        // Applying must not echo the update back to everyone.
        self.outbox.retain(|o| *o != u);
    }

    /// Take the updates to post to other workers.
    pub fn drain_outbox(&mut self) -> std::vec::Drain<'_, NeighborUpdate> {
        self.outbox.drain(..)
    }

    /// Drop expired learned entries (called rarely, off the per-packet path).
    pub fn sweep(&mut self, now: u64) {
        self.changed();
        let stale = 4 * self.retry_ns;
        self.map.retain(|_, e| match e.state {
            State::Static => true,
            State::Reachable { expires } => now < expires,
            State::Incomplete { retry_at } => now < retry_at + stale,
        });
    }

    /// (port, ip, mac, "static"|"reachable"|"incomplete") for display.
    pub fn entries(&self) -> Vec<(u8, IpAddr, [u8; 6], &'static str)> {
        self.map
            .iter()
            .map(|((p, ip), e)| {
                let s = match e.state {
                    State::Static => "static",
                    State::Reachable { .. } => "reachable",
                    State::Incomplete { .. } => "incomplete",
                };
                (*p, *ip, e.mac, s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn miss_solicits_once_per_retry_interval() {
        let mut t = NeighborTable::new(16, 300 * S, S);
        assert_eq!(t.resolve(0, ip("10.0.0.2"), 0), Resolve::MissSolicit);
        assert_eq!(t.resolve(0, ip("10.0.0.2"), S / 2), Resolve::Miss);
        assert_eq!(t.resolve(0, ip("10.0.0.2"), S), Resolve::MissSolicit);
    }

    #[test]
    fn learned_entry_hits_until_timeout() {
        let mut t = NeighborTable::new(16, 10 * S, S);
        let mac = [2, 0, 0, 0, 0, 2];
        assert!(t.learn(0, ip("10.0.0.2"), mac, 0, true));
        assert_eq!(t.resolve(0, ip("10.0.0.2"), 9 * S), Resolve::Hit(mac));
        assert_eq!(
            t.resolve(1, ip("10.0.0.2"), 9 * S),
            Resolve::MissSolicit,
            "per port"
        );
        assert_eq!(t.resolve(0, ip("10.0.0.2"), 10 * S), Resolve::MissSolicit);
    }

    #[test]
    fn merge_rule_does_not_create_and_static_wins() {
        let mut t = NeighborTable::new(16, 10 * S, S);
        assert!(!t.learn(0, ip("10.0.0.3"), [1; 6], 0, false));
        assert_eq!(t.len(), 0);
        t.add_static(0, ip("10.0.0.4"), [4; 6]);
        assert!(!t.learn(0, ip("10.0.0.4"), [9; 6], 0, true));
        assert_eq!(
            t.resolve(0, ip("10.0.0.4"), u64::MAX / 2),
            Resolve::Hit([4; 6])
        );
        // An incomplete entry is updated by a reply even without `create`.
        t.resolve(0, ip("10.0.0.5"), 0);
        assert!(t.learn(0, ip("10.0.0.5"), [5; 6], 1, false));
        assert_eq!(t.resolve(0, ip("10.0.0.5"), 2), Resolve::Hit([5; 6]));
    }

    #[test]
    fn bounded_and_outbox_collects_updates() {
        let mut t = NeighborTable::new(2, 10 * S, S);
        t.learn(0, ip("10.0.0.1"), [1; 6], 0, true);
        t.learn(0, ip("10.0.0.2"), [2; 6], 0, true);
        assert!(!t.learn(0, ip("10.0.0.3"), [3; 6], 0, true));
        assert_eq!(t.len(), 2);
        assert_eq!(t.drain_outbox().count(), 2);
        let u = NeighborUpdate {
            port: 0,
            ip: ip("10.0.0.1"),
            mac: [7; 6],
        };
        t.apply(u, 0);
        assert_eq!(
            t.drain_outbox().count(),
            0,
            "applied updates are not re-posted"
        );
        assert_eq!(t.resolve(0, ip("10.0.0.1"), 1), Resolve::Hit([7; 6]));
    }

    #[test]
    fn backend_l2_memo_holds_until_anything_changes() {
        let mut t = NeighborTable::new(8, 10 * S, S);
        let be = ip("10.0.0.7");
        let hdr = |mac: u8| L2Header {
            port: 0,
            len: 14,
            bytes: [mac; 18],
        };
        assert_eq!(t.backend_l2(3, be, 0), None);
        t.learn(0, be, [1; 6], 0, true);
        let (r, until) = t.resolve_until(0, be, 1);
        assert_eq!((r, until), (Resolve::Hit([1; 6]), 10 * S));
        t.remember_backend_l2(3, be, until, hdr(1));
        assert_eq!(t.backend_l2(3, be, 2), Some(&hdr(1)));
        assert_eq!(t.backend_l2(3 + 256, be, 2), None, "another backend's slot");
        assert_eq!(t.backend_l2(3, ip("10.0.0.8"), 2), None, "another address");
        assert_eq!(t.backend_l2(3, be, 10 * S), None, "the neighbor expired");
        // Any change to the table, and a new plane, forget it.
        t.learn(0, ip("10.0.0.9"), [9; 6], 3, true);
        assert_eq!(t.backend_l2(3, be, 4), None, "table changed");
        t.remember_backend_l2(3, be, until, hdr(1));
        t.plane_changed();
        assert_eq!(t.backend_l2(3, be, 4), None, "plane changed");
        t.remember_backend_l2(3, be, until, hdr(1));
        t.sweep(5);
        assert_eq!(t.backend_l2(3, be, 6), None, "swept");
    }

    #[test]
    fn sweep_removes_expired() {
        let mut t = NeighborTable::new(8, 10 * S, S);
        t.learn(0, ip("10.0.0.1"), [1; 6], 0, true);
        t.add_static(0, ip("10.0.0.9"), [9; 6]);
        t.sweep(11 * S);
        assert_eq!(t.len(), 1);
    }
}
