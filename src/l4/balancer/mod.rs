//! L4 load balancing on the worker: backend choice, connection tracking,
//! full NAT and direct server return, ICMP errors about tracked flows.
//!
//! The worker's classification (`worker::process`) has already decided
//! that a packet is L4: a client's packet to a service ([`from_client`]),
//! a packet to one of our addresses that may be NAT return traffic
//! ([`nat_return`]), or an ICMP error ([`icmp_error_v4`],
//! [`icmp_error_v6`]). Finished packets go out through
//! [`crate::net::output`]; nothing here calls back into the worker.
//!
//! ## Which core owns a connection
//! Client packets of a flow always reach the same worker: the NIC's RSS
//! hashes the 5-tuple (with a symmetric key), and a worker owns the flows it
//! sees first. Full NAT changes the tuple, so the backend's replies hash
//! anywhere. Sluice therefore gives each worker its own slice of the SNAT
//! port space (`SnatPorts`): a reply's destination port names the worker that
//! owns the connection. A worker that receives a reply for another worker's
//! slice hands the packet over through that worker's redirect ring (a
//! bounded lock-free queue, drained between bursts). NICs with rte_flow could
//! steer the slices in hardware instead; the port slicing is what makes that
//! possible, and the ring keeps every device (including virtual ones)
//! correct. DSR needs none of this: replies never come back through Sluice.
//!
//! ## Flows without state
//! NAT needs state for both directions, so only a bare TCP SYN (or any UDP
//! datagram) opens a connection; other TCP segments of unknown flows, RSTs
//! included, are dropped and counted. In DSR modes every client packet can
//! be forwarded without state: flows unknown to this worker (after a
//! restart, on another Sluice behind ECMP, or when the table is full or the
//! new-connection rate cap is hit) are placed by the cluster's Maglev table,
//! the same on every Sluice with the same config.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::conntrack::{self, Conn, ConnId, Conntrack, Direction, InsertError, Lookup, Tag};
use super::flow::FlowKey;
use super::snat::SnatPorts;
use crate::l7::health::HealthState;
use crate::net::counters::{
    Counter, L4Counters, BE_ACTIVE, BE_BYTES, BE_NEW, BE_PACKETS, SVC_BYTES, SVC_DROPS, SVC_NEW,
    SVC_PACKETS,
};
use crate::net::neighbor::NeighborTable;
use crate::net::output::{emit_l2, emit_l2_backend};
use crate::net::plane::Plane;
use crate::net::services::{BackendPlane, Mode, Sched, ServicePlane, MAX_BACKENDS, MAX_SERVICES};
use crate::net::Verdict;
use crate::wire::{
    checksum, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

use Verdict::Drop;

mod icmp;
pub use icmp::{icmp_error_v4, icmp_error_v6};

/// An IP packet as the L4 code sees it: absolute offsets into the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ip {
    pub l3: usize,
    pub l4: usize,
    pub end: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
}

impl Ip {
    /// An IPv4 packet at `l3..end` with a header of the fixed 20 bytes
    /// (options were refused by the classifier).
    #[inline(always)]
    pub fn v4(
        l3: usize,
        end: usize,
        src: std::net::Ipv4Addr,
        dst: std::net::Ipv4Addr,
        proto: u8,
    ) -> Ip {
        Ip {
            l3,
            l4: l3 + crate::wire::ipv4::HEADER_LEN,
            end,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            proto,
        }
    }
}

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[inline(always)]
fn drop_one(c: &AtomicU64) {
    c.store(
        c.load(Ordering::Relaxed).saturating_sub(1),
        Ordering::Relaxed,
    );
}

/// Most connections one conntrack call may free (expire is called with at
/// most this budget; insert reclaims at most conntrack's own 16).
const RECLAIM_MAX: usize = 64;
const _: () = assert!(conntrack::PENDING_MAX <= RECLAIM_MAX);

/// A worker's L4 state.
pub struct L4State {
    pub worker: usize,
    pub conntrack: Conntrack,
    pub snat: SnatPorts,
    /// Per cluster index: position in the weighted round-robin sequence.
    wrr_pos: Vec<u32>,
    /// Per backend id: this worker's open connections (least-conn).
    active: Vec<u32>,
    pub counters: Arc<L4Counters>,
    /// Set by the worker for each packet: whether a client's packet that
    /// no connection of this worker has, and that could not open one (TCP
    /// without SYN), is handed on to another worker ([`Verdict::PassOn`])
    /// rather than dropped (NAT) or placed without state (DSR). False on
    /// the last worker a packet reaches, and with one worker.
    pub pass_misses: bool,
    /// Connections freed inside a conntrack call, released after it
    /// returns (preallocated; never grows past RECLAIM_MAX).
    reclaimed: Vec<Conn>,
    /// Expiry pacing ([`L4State::expire_paced`]): the time up to which the
    /// sweep has done its share.
    swept_to: u64,
    /// Backend health, for passive marking (see [`nat_return`]); None:
    /// no passive marking.
    pub health: Option<Arc<HealthState>>,
}

/// The connection table is swept once per this period (at most; the
/// per-loop budget caps each step): an expired connection no packet looks
/// up stays at most this long past its timeout, holding its SNAT port.
pub const SWEEP_PERIOD_NS: u64 = 1_000_000_000;

impl L4State {
    pub fn new(
        worker: usize,
        workers: usize,
        conntrack: Conntrack,
        snat_addrs: &[IpAddr],
        counters: Arc<L4Counters>,
    ) -> L4State {
        L4State {
            worker,
            conntrack,
            snat: SnatPorts::new(worker, workers, snat_addrs),
            wrr_pos: vec![0; MAX_SERVICES],
            active: vec![0; MAX_BACKENDS],
            counters,
            pass_misses: false,
            reclaimed: Vec::with_capacity(RECLAIM_MAX),
            swept_to: 0,
            health: None,
        }
    }

    /// Release what a finished connection held.
    fn release(&mut self, conn: &Conn) {
        if let Some(a) = self.active.get_mut(conn.backend as usize) {
            *a = a.saturating_sub(1);
        }
        if let Some(c) = self.counters.backend.get(conn.backend as usize) {
            drop_one(&c[BE_ACTIVE]);
        }
        if let Some(rev) = conn.rev() {
            // NAT: the reply key's destination is our SNAT address and port.
            self.snat.free(rev.dst_ip(), rev.dst_port);
        }
    }

    /// Amortized expiry, called once per loop iteration: at most `budget`
    /// slots examined.
    pub fn expire(&mut self, now: u64, budget: usize) {
        let mut budget = budget;
        while budget > 0 {
            let step = budget.min(RECLAIM_MAX);
            let reclaimed = &mut self.reclaimed;
            self.conntrack
                .expire(now, step, |_, c| push_bounded(reclaimed, c));
            self.release_reclaimed();
            budget -= step;
        }
    }

    /// Expiry paced by time, called once per loop iteration: as many slots
    /// as sweep the whole table once per [`SWEEP_PERIOD_NS`], at most
    /// `budget` per call. A busy worker's loop runs hundreds of thousands
    /// of times a second; examining `budget` slots in every iteration
    /// (what [`L4State::expire`] does) cost more per packet than the
    /// connection lookup, and an idle worker spun on it.
    #[inline]
    pub fn expire_paced(&mut self, now: u64, budget: usize) {
        let high = self.conntrack.high_water() as u64;
        let elapsed = now.saturating_sub(self.swept_to);
        if high == 0 || elapsed >= SWEEP_PERIOD_NS {
            // Nothing to sweep, or a long pause (the first call): start
            // owing from now, after one full step.
            self.swept_to = now;
            if high > 0 {
                self.expire(now, budget);
            }
            return;
        }
        // Fits in u64: high < 2^27 slots, elapsed < 2^30 ns.
        let owed = high * elapsed / SWEEP_PERIOD_NS;
        if owed == 0 {
            return;
        }
        if owed > budget as u64 {
            // Behind: do the budget and drop the rest of the debt (the
            // sweep slows down rather than stalling the loop).
            self.swept_to = now;
            self.expire(now, budget);
        } else {
            self.swept_to += owed * SWEEP_PERIOD_NS / high;
            self.expire(now, owed as usize);
        }
    }

    /// Start a burst's batch of connection changes: new NAT connections'
    /// reply keys go into the index at the batch's end, their cache misses
    /// overlapped (`Conntrack::begin_batch`).
    #[inline]
    pub fn begin_batch(&mut self) {
        self.conntrack.begin_batch();
    }

    /// End the batch: index the held reply keys, releasing what that frees
    /// (`Conntrack::end_batch`: at most `PENDING_MAX`, within the reclaim
    /// buffer's `RECLAIM_MAX`).
    #[inline]
    pub fn end_batch(&mut self, now: u64) {
        let reclaimed = &mut self.reclaimed;
        self.conntrack
            .end_batch(now, |_, c| push_bounded(reclaimed, c));
        self.release_reclaimed();
    }

    fn release_reclaimed(&mut self) {
        while let Some(c) = self.reclaimed.pop() {
            self.release(&c);
        }
    }

    /// A packet of `pkt`'s size sent to or from `backend`.
    #[inline]
    fn count_backend(&self, backend: u32, pkt: &Ip) {
        let c = &self.counters.backend[backend as usize];
        bump(&c[BE_PACKETS], 1);
        bump(&c[BE_BYTES], (pkt.end - pkt.l3) as u64);
    }

    fn open(&mut self, backend: u32, service: u16) {
        if let Some(a) = self.active.get_mut(backend as usize) {
            *a += 1;
        }
        if let Some(c) = self.counters.backend.get(backend as usize) {
            bump(&c[BE_NEW], 1);
            bump(&c[BE_ACTIVE], 1);
        }
        if let Some(c) = self.counters.service.get(service as usize) {
            bump(&c[SVC_NEW], 1);
        }
    }
}

#[inline]
fn push_bounded(v: &mut Vec<Conn>, c: &Conn) {
    // Capacity is RECLAIM_MAX and callers never free more per call.
    if v.len() < v.capacity() {
        v.push(*c);
    }
}

#[inline]
fn svc_drop(st: &L4State, svc: &ServicePlane) {
    bump(&st.counters.service[svc.id as usize][SVC_DROPS], 1);
}

/// Ports and TCP flags of a TCP/UDP packet, or None if its header is cut.
#[inline(always)]
pub fn ports(buf: &[u8], pkt: &Ip) -> Option<(u16, u16, u8)> {
    let seg = &buf[pkt.l4..pkt.end];
    match pkt.proto {
        6 => {
            let t = TcpPacket::new_checked(seg).ok()?;
            Some((t.src_port(), t.dst_port(), t.flags().bits()))
        }
        17 => {
            let u = UdpPacket::new_checked(seg).ok()?;
            Some((u.src_port(), u.dst_port(), 0))
        }
        _ => None,
    }
}

/// Choose a backend for a new connection.
fn choose(plane: &Plane, st: &mut L4State, svc: &ServicePlane, key: &FlowKey) -> Option<u32> {
    let services = &plane.services;
    let c = services.clusters.get(svc.cluster)?;
    match c.sched {
        Sched::Maglev | Sched::SourceHash => services.consistent_pick(svc.cluster, key),
        Sched::Wrr => {
            if c.wrr.is_empty() {
                return None;
            }
            let pos = st.wrr_pos.get_mut(svc.cluster)?;
            let i = c.wrr[*pos as usize % c.wrr.len()];
            *pos = pos.wrapping_add(1);
            Some(c.members[i as usize])
        }
        Sched::LeastConn => {
            // Fewest open connections per unit of weight on this worker:
            // compare a/wa < b/wb as a*wb < b*wa.
            let mut best: Option<(u32, u64, u64)> = None;
            for &id in &c.members {
                let Some(b) = services.backend(id) else {
                    continue;
                };
                if b.weight == 0 || !b.up {
                    continue;
                }
                let a = st.active[id as usize] as u64;
                let w = b.weight as u64;
                if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
                    best = Some((id, a, w));
                }
            }
            best.map(|(id, _, _)| id)
        }
    }
}

/// A TCP/UDP packet from a client to the L4 service `svc` (the worker has
/// classified it: not an L7 listener's), with its `ports` (source,
/// destination, TCP flags) as [`ports`] read them, its connection `key`
/// (`FlowKey::new` of its addresses, ports and protocol) and the key's
/// `tag` in the connection table ([`Conntrack::tag`]).
#[allow(clippy::too_many_arguments)]
pub fn from_client(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    svc: &ServicePlane,
    buf: &mut [u8],
    pkt: Ip,
    ports: (u16, u16, u8),
    key: &FlowKey,
    tag: Tag,
    now: u64,
) -> Verdict {
    let flags = ports.2;
    let len = (pkt.end - pkt.l3) as u64;
    let tcp_flags = conntrack::TcpFlags(flags);

    // Existing connection?
    let mut existing = None;
    // Whether the key is in no connection now (so that a new connection
    // is inserted without probing for it again): not if it is another
    // connection's reply key.
    let mut absent = true;
    match st.conntrack.lookup_tagged(key, tag, now) {
        Lookup::Hit(id, Direction::Original) => existing = Some(id),
        Lookup::Hit(_, Direction::Reply) => absent = false,
        Lookup::Expired(c) => st.release(&c),
        Lookup::Miss => {}
    }
    // Another worker's connection, perhaps: let the others look first.
    // Not for UDP, where any packet may open a flow (passing every new
    // flow's first packet around would cost more than the rare split).
    if existing.is_none() && st.pass_misses && !conntrack::may_create(pkt.proto, tcp_flags) {
        return Verdict::PassOn;
    }
    {
        let sc = &st.counters.service[svc.id as usize];
        bump(&sc[SVC_PACKETS], 1);
        bump(&sc[SVC_BYTES], len);
    }
    let backend = match existing {
        Some(id) => {
            let conn = st.conntrack.conn(id);
            let b = conn.backend;
            // Still valid if the backend is still in the service's cluster and
            // the connection has the shape the service's mode needs (a
            // reload may have switched between NAT and DSR).
            let same_mode = conn.has_rev() == (svc.mode == Mode::Nat);
            let in_cluster = same_mode
                && plane
                    .services
                    .backend(b)
                    .is_some_and(|be| be.cluster == svc.cluster);
            let reset = in_cluster && plane.services.reset_now(b);
            if reset && pkt.proto == 6 {
                return backend_down_reset(plane, neighbors, st, buf, pkt, id, flags, false, now);
            }
            // A client's new SYN on a finished connection (the client reused
            // its port) opens a new connection: it keeps the old backend only
            // while that backend still takes new ones (not drained by weight 0,
            // not down by its health check), as IPVS's conn_reuse_mode does.
            let reopened_elsewhere = conntrack::is_new_client_syn(tcp_flags)
                && matches!(
                    conn.state(),
                    conntrack::ConnState::Closing | conntrack::ConnState::Closed
                )
                && !plane
                    .services
                    .backend(b)
                    .is_some_and(|be| be.weight > 0 && be.up);
            if in_cluster && !reset && !reopened_elsewhere {
                conntrack::observe_tcp(
                    st.conntrack.conn_mut(id),
                    tcp_flags,
                    Direction::Original,
                    now,
                );
                if svc.mode == Mode::Nat {
                    let conn = st.conntrack.conn(id);
                    return nat_forward(plane, neighbors, st, buf, pkt, conn, now);
                }
                Some(b)
            } else {
                // The backend left the cluster (or, UDP, is down and its
                // cluster resets; or a SYN reopens a finished connection
                // whose backend takes no new ones): its connection ends
                // here, and this packet is balanced again.
                let conn = st.conntrack.remove(id);
                st.release(&conn);
                None
            }
        }
        None => None,
    };
    let backend = match backend {
        Some(b) => b,
        None => {
            if !conntrack::may_create(pkt.proto, tcp_flags) {
                if svc.mode == Mode::Nat {
                    svc_drop(st, svc);
                    return Drop(Counter::drop_no_conn);
                }
                // DSR: place the flow as every Sluice would, without state
                // (the connection predates us, or another box).
                match plane.services.consistent_pick(svc.cluster, key) {
                    Some(b) => {
                        return dsr_forward(
                            plane,
                            neighbors,
                            st,
                            svc,
                            buf,
                            pkt,
                            b,
                            Counter::l4_stateless,
                            now,
                        );
                    }
                    None => {
                        svc_drop(st, svc);
                        return Drop(Counter::drop_no_backend);
                    }
                }
            }
            let Some(b) = choose(plane, st, svc, key) else {
                svc_drop(st, svc);
                return Drop(Counter::drop_no_backend);
            };
            let Some(be) = plane.services.backend(b) else {
                return Drop(Counter::drop_no_backend);
            };
            if svc.mode == Mode::Nat {
                let fwd_tag = absent.then_some(tag);
                return nat_open(
                    plane, neighbors, st, svc, be, buf, pkt, key, fwd_tag, tcp_flags, now,
                );
            }
            let state = conntrack::initial_state(pkt.proto, tcp_flags);
            let reclaimed = &mut st.reclaimed;
            let release = |_: ConnId, c: &Conn| push_bounded(reclaimed, c);
            let r = if absent {
                st.conntrack
                    .insert_after_miss(key, tag, None, b, svc.id, state, 0, now, release)
            } else {
                st.conntrack
                    .insert(*key, None, b, svc.id, state, 0, now, release)
            };
            st.release_reclaimed();
            match r {
                Ok(_) => st.open(b, svc.id),
                // Without state, the flow's later packets will be placed by
                // the Maglev table; so must this one, whatever chose `b`.
                Err(InsertError::TableFull) => {
                    let b = plane
                        .services
                        .consistent_pick(svc.cluster, key)
                        .unwrap_or(b);
                    return dsr_forward(
                        plane,
                        neighbors,
                        st,
                        svc,
                        buf,
                        pkt,
                        b,
                        Counter::l4_table_full,
                        now,
                    );
                }
                Err(InsertError::RateLimited) => {
                    let b = plane
                        .services
                        .consistent_pick(svc.cluster, key)
                        .unwrap_or(b);
                    return dsr_forward(
                        plane,
                        neighbors,
                        st,
                        svc,
                        buf,
                        pkt,
                        b,
                        Counter::l4_rate_limited,
                        now,
                    );
                }
                Err(InsertError::Exists) => {}
            }
            b
        }
    };
    dsr_forward(
        plane,
        neighbors,
        st,
        svc,
        buf,
        pkt,
        backend,
        Counter::l4_forwarded,
        now,
    )
}

/// Open a NAT connection: SNAT address and port, both keys, then forward.
#[allow(clippy::too_many_arguments)]
fn nat_open(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    svc: &ServicePlane,
    be: &BackendPlane,
    buf: &mut [u8],
    pkt: Ip,
    key: &FlowKey,
    fwd_tag: Option<Tag>,
    flags: conntrack::TcpFlags,
    now: u64,
) -> Verdict {
    let snat_ip = if svc.snat.is_empty() {
        be.src
    } else {
        // Spread over the addresses by a cheap mix of the tuple (nothing
        // outside this worker depends on which address a flow gets).
        Some(svc.snat[(snat_mix(key) % svc.snat.len() as u64) as usize])
    };
    let Some(snat_ip) = snat_ip else {
        return Drop(Counter::drop_no_route);
    };
    let Some(snat_port) = st.snat.alloc(snat_ip) else {
        bump(&st.counters.service[svc.id as usize][SVC_DROPS], 1);
        return Drop(Counter::drop_snat_exhausted);
    };
    let bport = be.port.unwrap_or(key.dst_port);
    let rev = match (be.addr, snat_ip) {
        (IpAddr::V4(b), IpAddr::V4(s)) => FlowKey::v4(b, s, bport, snat_port, pkt.proto),
        (b, s) => FlowKey::new(b, s, bport, snat_port, pkt.proto),
    };
    let state = conntrack::initial_state(pkt.proto, flags);
    let reclaimed = &mut st.reclaimed;
    let release = |_: ConnId, c: &Conn| push_bounded(reclaimed, c);
    let (b, id) = (be.id, svc.id);
    let r = match fwd_tag {
        Some(tag) => {
            st.conntrack
                .insert_after_miss(key, tag, Some(&rev), b, id, state, 0, now, release)
        }
        None => st
            .conntrack
            .insert(*key, Some(rev), b, id, state, 0, now, release),
    };
    st.release_reclaimed();
    match r {
        Ok(id) => {
            st.open(be.id, svc.id);
            nat_forward(plane, neighbors, st, buf, pkt, st.conntrack.conn(id), now)
        }
        Err(e) => {
            st.snat.free(snat_ip, snat_port);
            bump(&st.counters.service[svc.id as usize][SVC_DROPS], 1);
            Drop(match e {
                InsertError::TableFull => Counter::drop_conntrack_full,
                InsertError::RateLimited => Counter::drop_rate_limited,
                InsertError::Exists => Counter::drop_no_conn,
            })
        }
    }
}

/// A cheap hash of a flow's tuple, to pick one of a service's SNAT
/// addresses: one multiply-fold of the folded addresses and ports.
#[inline]
fn snat_mix(key: &FlowKey) -> u64 {
    let s = u128::from_le_bytes(key.src);
    let d = u128::from_le_bytes(key.dst);
    let x = (s as u64) ^ ((s >> 64) as u64) ^ (d as u64).rotate_left(17) ^ ((d >> 64) as u64);
    let p = u64::from(key.src_port) << 16 | u64::from(key.dst_port);
    let m = u128::from(x ^ 0x243f_6a88_85a3_08d3) * u128::from(p ^ 0x1319_8a2e_0370_7344);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Rewrite addresses and ports of an IP packet in place, fixing the IP
/// header checksum (IPv4) and the TCP/UDP checksum incrementally (RFC 1624),
/// and decrementing the TTL / hop limit. False if the TTL ran out.
///
/// Out of line: IPv4 NAT goes straight to [`rewrite_v4`] (see
/// [`nat_rewrite`]), and this function's IPv6 half would otherwise make
/// the IPv4 path's callers save and restore registers it never uses.
#[inline(never)]
fn rewrite(buf: &mut [u8], pkt: &Ip, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> bool {
    match (pkt.src, pkt.dst, src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_), IpAddr::V4(ns), IpAddr::V4(nd)) => {
            return rewrite_v4(buf, pkt, (ns.octets(), nd.octets()), sport, dport);
        }
        (IpAddr::V6(os), IpAddr::V6(od), IpAddr::V6(ns), IpAddr::V6(nd)) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut buf[pkt.l3..pkt.end]);
            let hl = ip.hop_limit();
            if hl <= 1 {
                return false;
            }
            ip.set_src_addr(ns);
            ip.set_dst_addr(nd);
            ip.set_hop_limit(hl - 1);
            rewrite_l4_v6(buf, pkt, (os, ns), (od, nd), sport, dport);
        }
        _ => return false,
    }
    true
}

/// [`rewrite`] for IPv4, the common case, with each checksum updated once:
/// the RFC 1624 terms of both addresses, the TTL and the ports are summed
/// and folded into the IP header checksum and the TCP/UDP checksum (whose
/// pseudo-header holds the addresses) in one step each, rather than one
/// fold per changed field. The classification has checked the header (20
/// bytes, no options) and the TCP (20 bytes) or UDP (8 bytes) header. The
/// old addresses are read from the header; the new ones are given as bytes
/// (`new`: source, destination).
///
/// The sums are taken in memory order (native-endian loads and stores,
/// [`checksum::delta_ne`]): the ones' complement sum does not depend on
/// byte order (RFC 1071 §2(B)), so the checksums come out the same bytes
/// as a big-endian computation, without a byte swap per field.
#[inline(always)]
fn rewrite_v4(buf: &mut [u8], pkt: &Ip, new: ([u8; 4], [u8; 4]), sport: u16, dport: u16) -> bool {
    // Fixed-size views: one bounds check each instead of one per byte.
    let (head, seg) = buf.split_at_mut(pkt.l4);
    let h: &mut [u8; 20] = (&mut head[pkt.l3..pkt.l3 + 20]).try_into().unwrap();
    let ttl = h[8];
    if ttl <= 1 {
        return false;
    }
    let ne32 = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let addrs = checksum::delta_ne(ne32(&h[12..16]), u32::from_ne_bytes(new.0))
        + checksum::delta_ne(ne32(&h[16..20]), u32::from_ne_bytes(new.1));
    // The TTL shares its word with the protocol: the word [ttl, proto]
    // becomes [ttl - 1, proto], the word minus the one of [1, 0] (no
    // borrow: ttl >= 2), so its term ~w + (w - one) is 0xFFFF - one
    // whatever the TTL.
    let ttl_term = u64::from(0xFFFF - u16::from_ne_bytes([1, 0]));
    let c = u16::from_ne_bytes([h[10], h[11]]);
    let c = checksum::apply_delta(c, addrs + ttl_term);
    h[8] = ttl - 1;
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    h[12..16].copy_from_slice(&new.0);
    h[16..20].copy_from_slice(&new.1);
    // TCP's checksum is at 16, UDP's at 6; both have the ports first.
    let at = if pkt.proto == 6 { 16 } else { 6 };
    let t: &mut [u8; 2] = (&mut seg[at..at + 2]).try_into().unwrap();
    let old_c = u16::from_ne_bytes(*t);
    let (sp, dp) = (sport.to_be_bytes(), dport.to_be_bytes());
    let ports = [sp[0], sp[1], dp[0], dp[1]];
    // A UDP checksum of 0 means none was computed (RFC 768); a computed
    // one of 0 is sent as 0xffff.
    if pkt.proto == 6 || old_c != 0 {
        let d = addrs + checksum::delta_ne(ne32(&seg[..4]), u32::from_ne_bytes(ports));
        let mut c = checksum::apply_delta(old_c, d);
        if pkt.proto != 6 && c == 0 {
            c = 0xffff;
        }
        seg[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    }
    seg[0..4].copy_from_slice(&ports);
    true
}

/// Update the TCP/UDP checksum for IPv6 address changes `s` and `d`
/// (old, new; its pseudo-header holds both addresses) and rewrite the
/// ports, incrementally.
fn rewrite_l4_v6(
    buf: &mut [u8],
    pkt: &Ip,
    s: (Ipv6Addr, Ipv6Addr),
    d: (Ipv6Addr, Ipv6Addr),
    sport: u16,
    dport: u16,
) {
    // TCP and UDP views have the same rewrite methods; the macro applies the
    // one sequence to whichever the packet is.
    macro_rules! apply {
        ($p:expr) => {{
            let mut p = $p;
            p.update_checksum_for_addr_v6(&s.0, &s.1);
            p.update_checksum_for_addr_v6(&d.0, &d.1);
            p.rewrite_src_port(sport);
            p.rewrite_dst_port(dport);
        }};
    }
    let seg = &mut buf[pkt.l4..pkt.end];
    if pkt.proto == 6 {
        apply!(TcpPacket::new_unchecked(seg))
    } else {
        apply!(UdpPacket::new_unchecked(seg))
    }
}

/// Forward a client's packet of NAT connection `conn` to its backend.
/// Inlined into [`from_client`] (every packet of an open connection) and
/// [`nat_open`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn nat_forward(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &L4State,
    buf: &mut [u8],
    pkt: Ip,
    conn: &Conn,
    now: u64,
) -> Verdict {
    let Some(rev) = conn.rev() else {
        return Drop(Counter::drop_no_conn);
    };
    // Towards the backend: as the reverse of the backend's own packets.
    let dst = match nat_rewrite(buf, &pkt, rev) {
        Ok(dst) => dst,
        Err(v) => return v,
    };
    st.count_backend(conn.backend, &pkt);
    let out = emit_l2_backend(plane, neighbors, buf, pkt.l3, conn.backend, dst, now);
    transmit(out, pkt.end, Counter::l4_forwarded)
}

/// Rewrite a NAT packet so that it travels opposite to packets with key
/// `opposite` (from its destination to its source); its new destination.
///
/// Inlined with [`rewrite_v4`] into the NAT paths: a call per level cost a
/// register save and restore and the marshalling of the arguments each,
/// about as much as the IPv4 rewrite itself.
#[inline(always)]
fn nat_rewrite(buf: &mut [u8], pkt: &Ip, opposite: &FlowKey) -> Result<IpAddr, Verdict> {
    // IPv4 (keys hold IPv4-mapped addresses): straight from the key's
    // bytes to the one-fold rewrite (which reads the old addresses from
    // the header), without building and matching IpAddrs.
    if pkt.src.is_ipv4() && opposite.is_ipv4() {
        let v4 = |a: &[u8; 16]| [a[12], a[13], a[14], a[15]];
        let (ns, nd) = (v4(&opposite.dst), v4(&opposite.src));
        let (sp, dp) = (opposite.dst_port, opposite.src_port);
        if !rewrite_v4(buf, pkt, (ns, nd), sp, dp) {
            return Err(Drop(Counter::drop_ttl_expired));
        }
        return Ok(IpAddr::V4(Ipv4Addr::from(nd)));
    }
    let (src, dst) = (opposite.dst_ip(), opposite.src_ip());
    if !rewrite(buf, pkt, src, dst, opposite.dst_port, opposite.src_port) {
        return Err(Drop(Counter::drop_ttl_expired));
    }
    Ok(dst)
}

/// The verdict for a packet ending at `end` whose L2 header was written
/// (`out`: egress port and start) or could not be (`out`: the verdict).
#[inline]
fn transmit(out: Result<(usize, usize), Verdict>, end: usize, counter: Counter) -> Verdict {
    match out {
        Ok((port, start)) => Verdict::transmit(port, start, end - start, counter),
        Err(v) => v,
    }
}

/// A TCP/UDP packet to one of our own addresses, with its `ports`, `key`
/// and `tag` (as for [`from_client`]): NAT return traffic if this worker
/// tracks its connection. `None` if it does
/// not (the worker decides what else the packet may be).
#[allow(clippy::too_many_arguments)]
pub fn nat_return(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    buf: &mut [u8],
    pkt: Ip,
    ports: (u16, u16, u8),
    key: &FlowKey,
    tag: Tag,
    now: u64,
) -> Option<Verdict> {
    let flags = ports.2;
    let id: ConnId = match st.conntrack.lookup_tagged(key, tag, now) {
        Lookup::Hit(id, Direction::Reply) => id,
        Lookup::Expired(c) => {
            st.release(&c);
            return Some(Drop(Counter::drop_no_conn));
        }
        _ => return None,
    };
    let backend = st.conntrack.conn(id).backend;
    if plane.services.reset_now(backend) {
        if pkt.proto == 6 {
            return Some(backend_down_reset(
                plane, neighbors, st, buf, pkt, id, flags, true, now,
            ));
        }
        let conn = st.conntrack.remove(id);
        st.release(&conn);
        return Some(Drop(Counter::drop_backend_down));
    }
    if pkt.proto == 6 && st.conntrack.conn(id).state() == conntrack::ConnState::SynSent {
        passive_mark(plane, st, backend, flags);
    }
    conntrack::observe_tcp(
        st.conntrack.conn_mut(id),
        conntrack::TcpFlags(flags),
        Direction::Reply,
        now,
    );
    let conn = st.conntrack.conn(id);
    // Back to the client: as the reverse of the client's own packets (from
    // the VIP and service port).
    let dst = match nat_rewrite(buf, &pkt, conn.fwd()) {
        Ok(dst) => dst,
        Err(v) => return Some(v),
    };
    st.count_backend(conn.backend, &pkt);
    let out = emit_l2(plane, neighbors, buf, pkt.l3, dst, now);
    Some(transmit(out, pkt.end, Counter::l4_returned))
}

/// Passive marking: the backend's first answer to a new NAT connection
/// (its SYN forwarded, nothing back yet) is a RST (nothing listens, or it
/// refuses) or a SYN-ACK. `rst_limit` RSTs in a row, counted over all
/// workers, take a health-checked backend down until its check passes
/// `rise` times, without waiting for `fall` checks to fail
/// ([`HealthState::rst_on_new_flow`]); counted per backend
/// (`passive_downs`).
/// Its RST still goes to the client. Only NAT sees the backend's answers.
#[inline]
fn passive_mark(plane: &Plane, st: &L4State, backend: u32, flags: u8) {
    let (rst, syn_ack) = (flags & 0x04 != 0, flags & 0x12 == 0x12);
    if !rst && !syn_ack {
        return;
    }
    let (Some(h), Some(b)) = (&st.health, plane.services.backend(backend)) else {
        return;
    };
    if b.rst_limit == 0 || b.check_port.is_none() {
        return;
    }
    if h.rst_on_new_flow(backend, rst, b.rst_limit) {
        log::warn!(
            "backend {} is down: {} new connections in a row answered with a RST",
            b.name,
            b.rst_limit
        );
    }
}

/// A TCP segment, from either side, of tracked connection `id` whose
/// backend is down in a cluster with `on_backend_down = "reset"`.
///
/// The connection is marked closed (it expires after `closed_timeout_s`)
/// and the segment becomes a RST (RFC 9293 §3.10.7.1), sent:
/// - for a client's segment, back to the client, from the VIP, with the
///   sequence number the client acknowledged;
/// - for the backend's first segment, to the client instead, from the VIP,
///   with the backend's sequence number (the client's next expected byte
///   when the segment is in order): a client that is only receiving (a
///   download) sends nothing that could be answered, and its peer's next
///   segment is the one that carries the news;
/// - for the backend's later segments (its retransmissions), back to the
///   backend, from the SNAT address and port.
///
/// A RST is never answered. DSR backends send nothing through Sluice, so
/// there only the client is reset, at its next segment.
#[allow(clippy::too_many_arguments)]
fn backend_down_reset(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    buf: &mut [u8],
    pkt: Ip,
    id: ConnId,
    flags: u8,
    from_backend: bool,
    now: u64,
) -> Verdict {
    let conn = *st.conntrack.conn(id);
    let first = conn.state() != conntrack::ConnState::Closed;
    conntrack::observe_tcp(
        st.conntrack.conn_mut(id),
        conntrack::TcpFlags(0x04),
        Direction::Original,
        now,
    );
    if flags & 0x04 != 0 || pkt.end < pkt.l4 + 20 {
        return Drop(Counter::drop_backend_down);
    }
    let end = if from_backend && first {
        let seq = TcpPacket::new_unchecked(&buf[pkt.l4..pkt.end]).seq_number();
        let fwd = conn.fwd();
        let end = pkt.l4 + 20;
        let (src, dst) = (fwd.dst_ip(), fwd.src_ip());
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut buf[pkt.l3..end]);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                ip.set_total_len(40);
                ip.set_ttl(64);
                ip.fill_checksum();
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ip = Ipv6Packet::new_unchecked(&mut buf[pkt.l3..end]);
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
                ip.set_payload_len(20);
                ip.set_hop_limit(64);
            }
            _ => return Drop(Counter::drop_backend_down),
        }
        let mut t = TcpPacket::new_unchecked(&mut buf[pkt.l4..end]);
        t.set_src_port(fwd.dst_port);
        t.set_dst_port(fwd.src_port);
        t.set_seq_number(seq);
        t.set_ack_number(0);
        t.set_header_len(20);
        t.set_flags(crate::wire::TcpFlags::RST);
        t.set_window_len(0);
        t.set_urgent_at(0);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => t.fill_checksum_v4(&s, &d),
            (IpAddr::V6(s), IpAddr::V6(d)) => t.fill_checksum_v6(&s, &d),
            _ => {}
        }
        end
    } else {
        let mut out = [0u8; 60];
        let Some(n) = crate::wire::tcp::write_reset(&buf[pkt.l3..pkt.end], &mut out) else {
            return Drop(Counter::drop_backend_down);
        };
        buf[pkt.l3..pkt.l3 + n].copy_from_slice(&out[..n]);
        pkt.l3 + n
    };
    let dst = if from_backend && first {
        conn.fwd().src_ip()
    } else {
        pkt.src
    };
    match emit_l2(plane, neighbors, buf, pkt.l3, dst, now) {
        Ok((port, start)) => {
            Verdict::transmit(port, start, end - start, Counter::l4_backend_down_resets)
        }
        Err(v) => v,
    }
}

/// Forward a client packet to `backend` in a DSR mode. Inlined into
/// [`from_client`] (every DSR packet).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dsr_forward(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    svc: &ServicePlane,
    buf: &mut [u8],
    pkt: Ip,
    backend: u32,
    counter: Counter,
    now: u64,
) -> Verdict {
    let Some(be) = plane.services.backend(backend) else {
        return Drop(Counter::drop_no_backend);
    };
    st.count_backend(backend, &pkt);
    match svc.mode {
        Mode::L2Dsr => {
            let out = emit_l2_backend(plane, neighbors, buf, pkt.l3, backend, be.addr, now);
            transmit(out, pkt.end, counter)
        }
        Mode::Ipip | Mode::Gre => {
            let Some(src) = be.src else {
                return Drop(Counter::drop_no_route);
            };
            let Some(outer) = encapsulate(buf, &pkt, svc.mode, src, be.addr) else {
                return Drop(Counter::drop_no_headroom);
            };
            match emit_l2_backend(plane, neighbors, buf, outer, backend, be.addr, now) {
                Ok((port, start)) => {
                    let mtu = plane.ports[port].mtu as usize;
                    if pkt.end - outer > mtu {
                        return Drop(Counter::drop_too_big);
                    }
                    Verdict::transmit(port, start, pkt.end - start, counter)
                }
                Err(v) => v,
            }
        }
        Mode::Nat => Drop(Counter::drop_no_service),
    }
}

/// GRE base header (RFC 2784) with no checksum, key or sequence number.
const GRE_LEN: usize = 4;

/// Write an outer IP header (and GRE header) in front of the packet at
/// `pkt.l3`; the offset of the outer header. The outer header takes the
/// inner packet's DSCP/ECN and, for IPv4, its DF bit, so path MTU discovery
/// still works through the tunnel.
fn encapsulate(buf: &mut [u8], pkt: &Ip, mode: Mode, src: IpAddr, dst: IpAddr) -> Option<usize> {
    let inner_len = pkt.end - pkt.l3;
    let (tos, df) = match pkt.src {
        IpAddr::V4(_) => {
            let ip = Ipv4Packet::new_unchecked(&buf[pkt.l3..pkt.end]);
            (ip.dscp() << 2 | ip.ecn(), ip.dont_frag())
        }
        IpAddr::V6(_) => {
            let ip = Ipv6Packet::new_unchecked(&buf[pkt.l3..pkt.end]);
            (ip.traffic_class(), true)
        }
    };
    let inner_et: u16 = if pkt.src.is_ipv4() { 0x0800 } else { 0x86dd };
    let (gre, proto) = match mode {
        Mode::Gre => (GRE_LEN, IpProtocol::Gre),
        _ if pkt.src.is_ipv4() => (0, IpProtocol::IpIp),
        // IPv6 in IP (RFC 2473): protocol 41.
        _ => (0, IpProtocol::Unknown(41)),
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let outer = pkt.l3.checked_sub(20 + gre)?;
            let total = 20 + gre + inner_len;
            if total > u16::MAX as usize {
                return None;
            }
            // The header as five 32-bit words, summed in registers and
            // stored once: written field by field and then read back for
            // the checksum, the wider loads could not be forwarded from the
            // narrower stores and waited for them to reach the cache (half
            // of this function's samples, a tenth of the IP-in-IP worker's,
            // in a profile).
            let w0 = 0x4500_0000 | u32::from(tos) << 16 | total as u32;
            let w1: u32 = if df { 0x4000 } else { 0 };
            let w2: u32 = 64 << 24 | u32::from(u8::from(proto)) << 16;
            let (s, d) = (s.to_bits(), d.to_bits());
            let sum = u64::from(w0) + u64::from(w1) + u64::from(w2) + u64::from(s) + u64::from(d);
            let sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
            let c = !checksum::fold(((sum & 0xFFFF_FFFF) + (sum >> 32)) as u32);
            let w2 = w2 | u32::from(c);
            let h = &mut buf[outer..outer + 20];
            h[0..4].copy_from_slice(&w0.to_be_bytes());
            h[4..8].copy_from_slice(&w1.to_be_bytes());
            h[8..12].copy_from_slice(&w2.to_be_bytes());
            h[12..16].copy_from_slice(&s.to_be_bytes());
            h[16..20].copy_from_slice(&d.to_be_bytes());
            if gre > 0 {
                buf[outer + 20..outer + 22].copy_from_slice(&[0, 0]);
                buf[outer + 22..outer + 24].copy_from_slice(&inner_et.to_be_bytes());
            }
            Some(outer)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let outer = pkt.l3.checked_sub(40 + gre)?;
            let plen = gre + inner_len;
            if plen > u16::MAX as usize {
                return None;
            }
            let h = &mut buf[outer..outer + 40];
            h[0] = 0x60 | (tos >> 4);
            h[1] = tos << 4;
            h[2..4].copy_from_slice(&[0, 0]);
            h[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            h[6] = u8::from(proto);
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            if gre > 0 {
                buf[outer + 40..outer + 42].copy_from_slice(&[0, 0]);
                buf[outer + 42..outer + 44].copy_from_slice(&inner_et.to_be_bytes());
            }
            Some(outer)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
