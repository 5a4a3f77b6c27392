//! The per-core worker: rx burst, classify, act, tx burst.
//!
//! One `Worker` per worker lcore owns one rx and one tx queue on every port,
//! its tx buffers, its neighbor table and its counters. Nothing on the packet
//! path is shared or locked; the only cross-core traffic is neighbor updates
//! through bounded lock-free mailboxes and new [`Plane`] snapshots through a
//! channel, both checked between bursts.
//!
//! Each rx burst goes through [`process`] stage by stage (`Worker::burst`):
//! every packet is classified ([`process::classify`], pure over the frame's
//! bytes and the plane) and its flow key hashed once, the connection table's
//! buckets and entries of the whole burst are prefetched, then each packet
//! is acted on in arrival order ([`process::act`]: rewritten in place, a
//! [`process::Verdict`] returned) and the worker transmits, hands over, or
//! drops and counts. Packets handed over by other workers go through
//! [`process::process`] (the same two steps for one packet). Partial tx
//! bursts are flushed every `tx_drain_us` (DPDK's l2fwd pattern).

pub mod handoff;
pub mod liveness;
pub mod local;
pub mod process;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::dpdk::{self, Mbuf, Mempool, RxBurst, TxBuffer};
use crate::l4::balancer::L4State;
use crate::l4::conntrack::Tag;
use crate::l7::engine::Engine;
use crate::net::counters::L4Counters;
use crate::net::counters::{Counter, WorkerCounters};
use crate::net::neighbor::{NeighborTable, NeighborUpdate, Resolve};
use crate::net::output::Egress;
use crate::net::plane::Plane;
use crate::net::Verdict;

/// A packet handed from one worker to another.
pub struct Redirect {
    /// The index of the port it arrived on.
    pub port: u8,
    /// Workers it has been handed through: 1 for a packet handed straight
    /// to its owner ([`Verdict::Redirect`]), up to `workers - 1` along the
    /// chain of [`Verdict::PassOn`].
    pub hops: u8,
    pub m: Mbuf,
}

/// Nanoseconds from the TSC, read once per loop iteration.
#[derive(Clone, Copy)]
pub struct Clock {
    start: u64,
    /// ns per tick as a 32.32 fixed-point multiplier.
    mult: u128,
}

impl Clock {
    pub fn new() -> Clock {
        let hz = dpdk::tsc_hz().max(1) as u128;
        Clock {
            start: dpdk::rdtsc(),
            mult: (1_000_000_000u128 << 32) / hz,
        }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        let ticks = dpdk::rdtsc().wrapping_sub(self.start) as u128;
        ((ticks * self.mult) >> 32) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What a worker needs to build its L4 state.
pub struct L4Setup {
    pub workers: usize,
    pub conntrack: crate::l4::conntrack::ConntrackConfig,
    /// Every address that may serve as a NAT source.
    pub snat_addrs: Vec<std::net::IpAddr>,
    pub counters: Arc<L4Counters>,
}

/// Everything a worker is started with.
pub struct WorkerSetup {
    /// Worker index (0..n), also its queue id on every port.
    pub index: usize,
    pub plane: Arc<Plane>,
    /// New planes published by the control thread (config reload); the
    /// plane a worker replaces goes back through it to be freed.
    pub planes: handoff::Subscriber<Plane>,
    pub burst: usize,
    /// Packets each port's rx queue holds: `dataplane.rx_desc`, at most
    /// the fill ring's buffers on a `net_af_xdp` port.
    pub rx_desc: usize,
    pub drain_ns: u64,
    /// Idle back-off: how long to sleep once idle (0: busy-poll forever).
    pub idle_sleep: std::time::Duration,
    pub neighbor_capacity: usize,
    pub neighbor_timeout_ns: u64,
    pub neighbor_retry_ns: u64,
    pub counters: Arc<WorkerCounters>,
    /// One mailbox per worker, indexed by worker index.
    pub mailboxes: Arc<Vec<ArrayQueue<NeighborUpdate>>>,
    /// One redirect ring per worker, indexed by worker index.
    pub redirects: Arc<Vec<ArrayQueue<Redirect>>>,
    /// Built on the worker's own lcore (so that its pages are first
    /// touched, hence placed, on the worker's NUMA node).
    pub l4: L4Setup,
    /// Connections examined for expiry per loop iteration.
    pub expire_budget: usize,
    /// This worker's pool, for packets it originates (solicitations).
    pub pool: &'static Mempool,
    /// Backend health, shared by all workers (worker 0 probes).
    pub health: Arc<crate::l7::health::HealthState>,
    pub stop: Arc<AtomicBool>,
    /// Bumped once per loop iteration, watched by the control thread.
    pub heartbeat: Arc<liveness::Heartbeat>,
}

/// What a worker's packets leave through: the plane and neighbor table to
/// route and resolve with, one tx buffer per port, the pool for packets it
/// originates, and its counters.
struct Outbound {
    plane: Arc<Plane>,
    neighbors: NeighborTable,
    tx: Vec<TxBuffer>,
    pool: &'static Mempool,
    counters: Arc<WorkerCounters>,
}

impl Outbound {
    /// The worker's way out, as L4, local answers and the L7 engine use it.
    fn egress(&mut self, now_ns: u64) -> Egress<'_> {
        Egress {
            plane: &self.plane,
            neighbors: &mut self.neighbors,
            tx: &mut self.tx,
            pool: self.pool,
            counters: &self.counters,
            now_ns,
        }
    }
}

/// How many packets ahead of the one acted on `Worker::burst` prefetches
/// connection entries.
const CONN_AHEAD: usize = 8;

struct Worker {
    out: Outbound,
    l4: L4State,
    redirects: Arc<Vec<ArrayQueue<Redirect>>>,
    /// Next hops resolved ahead of traffic, and how far this round got.
    ahead: Vec<(usize, std::net::IpAddr)>,
    ahead_cursor: usize,
    ahead_force: bool,
    l7: Engine,
    now: u64,
    /// The classes of the rx burst in flight, between the stages of
    /// [`Worker::burst`], and the connection table's tags of its flow keys
    /// (valid for the packets classified [`process::Class::Flow`]).
    classes: [process::Class; dpdk::MAX_BURST],
    tags: [Tag; dpdk::MAX_BURST],
    /// The burst's packets between the stages (preallocated for
    /// `MAX_BURST`; empty between bursts).
    staged: Vec<Mbuf>,
}

impl Worker {
    /// L7 timers and events; whether there were any.
    fn l7_run(&mut self) -> bool {
        self.l7
            .run(&mut self.out.egress(self.now), &mut self.l4.snat)
    }

    /// Hand `m` to worker `to`'s redirect ring, counting `counter`.
    fn hand_over(&mut self, to: usize, port: usize, hops: u8, m: Mbuf, counter: Counter) {
        let r = Redirect {
            port: port as u8,
            hops,
            m,
        };
        if self.redirects[to].push(r).is_ok() {
            self.out.counters.inc(counter);
        } else {
            self.out.counters.inc(Counter::drop_redirect_full);
        }
    }

    /// Whether a client's packet that no connection of this worker has,
    /// received on `port` after `hops` hand-overs, goes on to the next
    /// worker: with several workers, a packet no connection of this worker
    /// has may be one of another worker's connection, so the workers after
    /// this one look before the last one gives up on it.
    #[inline]
    fn pass_on(&self, port: usize, hops: u8) -> bool {
        let workers = self.out.plane.workers.max(1);
        let may_move = self
            .out
            .plane
            .ports
            .get(port)
            .is_some_and(|p| p.flows_may_move);
        may_move && (hops as usize) + 1 < workers
    }

    /// Process one packet handed over by another worker (`hops` > 0) and
    /// act on the verdict. Packets from the ports go through
    /// [`Worker::burst`].
    fn handle(&mut self, port: usize, mut m: Mbuf, now: u64, hops: u8) {
        let pass_on = self.pass_on(port, hops);
        self.l4.pass_misses = pass_on;
        if hops == 0 {
            self.out.counters.inc(Counter::rx_packets);
            self.out.counters.add(Counter::rx_bytes, m.len() as u64);
        }
        if m.segments() != 1 {
            self.out.counters.inc(Counter::drop_multi_segment);
            return;
        }
        let verdict = {
            let (buf, off, len) = m.buffer_mut();
            process::process(
                &self.out.plane,
                &mut self.out.neighbors,
                &mut self.l4,
                port,
                buf,
                off,
                len,
                now,
            )
        };
        self.finish(port, m, verdict, now, hops, pass_on);
    }

    /// One rx burst of `port`, stage by stage: every packet is taken and
    /// classified (headers, addresses, service: `process::classify`, which
    /// reads only the frame and the plane) and its flow key hashed once; the
    /// connection table's home buckets of the whole burst are prefetched,
    /// then the entries they name, so that the burst's cache misses overlap;
    /// then each packet is acted on in arrival order (`process::act`: the
    /// connection lookup with the tag computed before, the rewrite, the L2
    /// header) and its verdict carried out (tx buffer, L7 engine, redirect
    /// ring, drop). The received packets and bytes are counted once per
    /// burst. The burst is one batch of the connection table
    /// (`Conntrack::begin_batch`): new NAT connections' reply keys are
    /// indexed at its end. Everything that reads or changes state (connections, neighbor
    /// table, counters) still runs packet by packet in arrival order, so the
    /// outcome is the one of processing each packet to completion.
    ///
    /// Kept out of line so that profiles show the packet path on its own
    /// (`benches/l4_callgrind.sh` prints its inclusive count); one call per
    /// burst.
    #[inline(never)]
    fn burst(&mut self, port: usize, rx: &mut RxBurst, n: usize, now: u64) {
        let pass_on = self.pass_on(port, 0);
        self.l4.pass_misses = pass_on;
        let mut ms = std::mem::take(&mut self.staged);
        self.l4.begin_batch();
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut memo = process::ServiceMemo::default();
        // Stage 1: take, classify, hash.
        for i in 0..n {
            let Some(mut m) = rx.take(i) else {
                continue;
            };
            packets += 1;
            bytes += m.len() as u64;
            if m.segments() != 1 {
                self.out.counters.inc(Counter::drop_multi_segment);
                continue;
            }
            let j = ms.len();
            let (buf, off, len) = m.buffer_mut();
            // Written in place: classified into a temporary and then moved,
            // each packet's class was copied once more.
            let class = &mut self.classes[j];
            *class = process::classify(&self.out.plane, port, buf, off, len, &mut memo);
            if let process::Class::Flow(f) = class {
                self.tags[j] = self.l4.conntrack.tag(&f.key);
            }
            ms.push(m);
            if ms.len().is_multiple_of(CONN_AHEAD) {
                self.prefetch_homes(ms.len() - CONN_AHEAD, ms.len());
            }
        }
        self.out.counters.add(Counter::rx_packets, packets);
        self.out.counters.add(Counter::rx_bytes, bytes);
        // Stage 2: the home buckets, then the connections they name. The
        // buckets are prefetched in groups of CONN_AHEAD, each group in a
        // tight loop as soon as it is classified (the last, partial one
        // here): a prefetch that misses holds its place in the reorder
        // window until its line arrives (this is what a profile shows on
        // the instruction after it), so one prefetch after each
        // classification overlapped little, while a group's misses are in
        // flight together, and the next group's classification gives them
        // time to arrive before their entries are looked for.
        self.prefetch_homes(ms.len() / CONN_AHEAD * CONN_AHEAD, ms.len());
        // The entries are prefetched CONN_AHEAD packets ahead of the one
        // acted on (the first ones before it): by then their buckets have
        // long arrived, and each entry has that many packets' work to
        // arrive in.
        let staged = ms.len();
        for j in 0..staged.min(CONN_AHEAD) {
            if matches!(self.classes[j], process::Class::Flow(_)) {
                self.l4.conntrack.prefetch_conn(self.tags[j]);
            }
        }
        // Stage 3: act, in arrival order.
        for (j, mut m) in ms.drain(..).enumerate() {
            let k = j + CONN_AHEAD;
            if k < staged && matches!(self.classes[k], process::Class::Flow(_)) {
                self.l4.conntrack.prefetch_conn(self.tags[k]);
            }
            let verdict = {
                let (buf, _, _) = m.buffer_mut();
                process::act(
                    &self.out.plane,
                    &mut self.out.neighbors,
                    &mut self.l4,
                    port,
                    buf,
                    &self.classes[j],
                    self.tags[j],
                    now,
                )
            };
            self.finish(port, m, verdict, now, 0, pass_on);
        }
        self.l4.end_batch(now);
        self.staged = ms;
    }

    /// Prefetch the home buckets of staged packets `from..to`.
    #[inline(always)]
    fn prefetch_homes(&self, from: usize, to: usize) {
        for j in from..to {
            if matches!(self.classes[j], process::Class::Flow(_)) {
                self.l4.conntrack.prefetch_home(self.tags[j]);
            }
        }
    }

    /// Carry out `verdict` for `m`, received on `port` after `hops`
    /// hand-overs. Inlined into its two callers: out of line, each packet
    /// paid a call that saved and restored six registers and passed the
    /// verdict through memory.
    #[inline(always)]
    fn finish(
        &mut self,
        port: usize,
        m: Mbuf,
        verdict: Verdict,
        now: u64,
        hops: u8,
        pass_on: bool,
    ) {
        let redirected = hops > 0;
        let workers = self.out.plane.workers.max(1);
        match verdict {
            Verdict::Drop(c) | Verdict::Consumed(c) => self.out.counters.inc(c),
            Verdict::L7 { l3, end } => {
                let mut m = m;
                let (l3, end) = (l3 as usize, end as usize);
                let seg = m.buffer_mut().0.get(l3..end).unwrap_or(&[]);
                if !is_tcp(seg) {
                    // A UDP health check's answer (or an ICMP error about
                    // its datagram).
                    self.l7
                        .check_answer(&mut self.out.egress(now), &mut self.l4.snat, seg);
                } else if pass_on && !self.l7.claims(&self.out.plane, seg) {
                    let next = (self.l4.worker + 1) % workers;
                    self.hand_over(next, port, hops + 1, m, Counter::passed_on);
                } else {
                    self.l7.input(&mut self.out.egress(now), m, l3, end);
                }
            }
            Verdict::PassOn if pass_on => {
                let next = (self.l4.worker + 1) % workers;
                self.hand_over(next, port, hops + 1, m, Counter::passed_on);
            }
            // Not reached: PassOn only comes when pass_misses is set.
            Verdict::PassOn => self.out.counters.inc(Counter::drop_no_conn),
            Verdict::Transmit {
                port,
                start,
                len,
                counter,
            } => {
                self.out.counters.inc(counter);
                let (port, start, len) = (port as usize, start as usize, len as usize);
                let mut m = m;
                // Egress::transmit, without building an Egress per packet.
                if m.set_window(start, len) {
                    crate::net::output::push(&mut self.out.tx[port], &self.out.counters, m);
                } else {
                    self.out.counters.inc(Counter::drop_no_headroom);
                }
            }
            Verdict::Solicited { port, start, len } => {
                // The packet that needed the neighbor is lost (no queueing on
                // the hot path); its buffer carries the solicitation instead.
                let (port, start, len) = (port as usize, start as usize, len as usize);
                self.out.egress(now).solicited(port, m, start, len);
            }
            Verdict::Redirect { worker } => {
                if redirected {
                    // Never bounce a packet twice.
                    self.out.counters.inc(Counter::drop_no_conn);
                } else {
                    self.hand_over(worker as usize, port, 1, m, Counter::redirected);
                }
            }
        }
    }

    /// The next hops to keep resolved ahead of traffic: every backend's and
    /// every gateway's (so that neither the first connection to a backend
    /// nor NAT replies to clients wait for ARP). Built off the packet path,
    /// when a plane is installed.
    fn plan_ahead(&mut self) {
        let plane = &self.out.plane;
        let mut targets: Vec<(usize, std::net::IpAddr)> = Vec::new();
        for b in plane.services.backends.iter().flatten() {
            let nh = match b.addr {
                std::net::IpAddr::V4(a) => plane
                    .routes
                    .lookup_v4(a)
                    .map(|n| (n.port, std::net::IpAddr::V4(n.addr))),
                std::net::IpAddr::V6(a) => plane
                    .routes
                    .lookup_v6(a)
                    .map(|n| (n.port, std::net::IpAddr::V6(n.addr))),
            };
            targets.extend(nh);
        }
        targets.extend(
            plane
                .routes
                .routes_v4()
                .iter()
                .filter_map(|r| r.via.map(|v| (r.port, std::net::IpAddr::V4(v)))),
        );
        targets.extend(
            plane
                .routes
                .routes_v6()
                .iter()
                .filter_map(|r| r.via.map(|v| (r.port, std::net::IpAddr::V6(v)))),
        );
        targets.sort_unstable();
        targets.dedup();
        self.ahead = targets;
        self.ahead_cursor = 0;
        self.ahead_force = false;
    }

    /// Solicit up to `AHEAD_PER_LOOP` planned next hops: those unknown, or
    /// all of them during a refresh round (`ahead_force`), so that entries
    /// are renewed before they expire. Spread over loop iterations so that
    /// a thousand backends never stall the rx rings.
    fn resolve_ahead(&mut self, now: u64) {
        const AHEAD_PER_LOOP: usize = 8;
        let end = (self.ahead_cursor + AHEAD_PER_LOOP).min(self.ahead.len());
        for i in self.ahead_cursor..end {
            let (port, ip) = self.ahead[i];
            let solicit = match self.out.neighbors.resolve(port as u8, ip, now) {
                Resolve::MissSolicit => true,
                Resolve::Hit(_) => self.ahead_force,
                Resolve::Miss => false,
            };
            if solicit && !self.out.egress(now).solicit(port, ip) {
                break;
            }
        }
        self.ahead_cursor = end;
    }

    fn l7_busy(&self) -> bool {
        self.l7.busy()
    }

    fn ahead_pending(&self) -> bool {
        self.ahead_cursor < self.ahead.len()
    }
}

/// Whether the IP packet `pkt` carries TCP.
#[inline]
fn is_tcp(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.get(9) == Some(&6),
        Some(6) => pkt.get(6) == Some(&6),
        _ => false,
    }
}

/// Adaptive idle back-off, after VPP's adaptive polling: a worker that has
/// found no packet for `PAUSE_AFTER` iterations in a row executes a pause
/// instruction per iteration (the sibling hyperthread gets the core's
/// pipeline), and after `SLEEP_AFTER` it sleeps `sleep` per iteration,
/// giving the CPU to whatever else the scheduler has: another worker
/// mapped to the same CPU (`dataplane.worker_cpus`) hands a redirected
/// packet over in microseconds instead of the scheduler's time slice. The
/// first packet, redirected packet or neighbor update resets it. Off
/// (`sleep` zero) the worker never leaves the CPU.
struct Backoff {
    sleep: std::time::Duration,
    empty: u32,
}

impl Backoff {
    const PAUSE_AFTER: u32 = 64;
    const SLEEP_AFTER: u32 = 1024;

    fn idle(&mut self, worked: bool) {
        if self.sleep.is_zero() {
            return;
        }
        if worked {
            self.empty = 0;
            return;
        }
        self.empty = self.empty.saturating_add(1);
        if self.empty >= Self::SLEEP_AFTER {
            std::thread::sleep(self.sleep);
        } else if self.empty >= Self::PAUSE_AFTER {
            std::hint::spin_loop();
        }
    }
}

/// Run the worker loop until `stop` is set. Returns 0.
pub fn run(setup: WorkerSetup) -> i32 {
    let WorkerSetup {
        index,
        plane,
        mut planes,
        burst,
        rx_desc,
        drain_ns,
        idle_sleep,
        neighbor_capacity,
        neighbor_timeout_ns,
        neighbor_retry_ns,
        counters,
        mailboxes,
        redirects,
        l4,
        expire_budget,
        pool,
        health,
        stop,
        heartbeat,
    } = setup;
    let queue = index as u16;
    let clock = Clock::new();
    let mut neighbors =
        NeighborTable::new(neighbor_capacity, neighbor_timeout_ns, neighbor_retry_ns);
    for &(port, ip, mac) in &plane.static_neighbors {
        neighbors.add_static(port as u8, ip, mac);
    }
    let tx: Vec<TxBuffer> = plane
        .ports
        .iter()
        .map(|p| TxBuffer::new(p.port_id, queue, burst))
        .collect();
    let conntrack = crate::l4::conntrack::Conntrack::new(&l4.conntrack);
    log::debug!(
        "worker {index}: connection table of {} flows, {} MiB, transparent huge pages {}",
        l4.conntrack.max_flows,
        conntrack.allocation_bytes() >> 20,
        if conntrack.huge_pages() {
            "advised"
        } else {
            "not available"
        }
    );
    let mut l4 = L4State::new(index, l4.workers, conntrack, &l4.snat_addrs, l4.counters);
    l4.health = Some(health.clone());
    let mtu = plane
        .ports
        .iter()
        .map(|p| p.mtu as usize)
        .min()
        .unwrap_or(1500)
        .min(2048 - 18);
    let l7 = Engine::new(crate::l7::engine::EngineSetup {
        worker: index,
        mtu,
        health,
        prober: index == 0,
        counters: counters.clone(),
        backends: l4.counters.clone(),
        // The receive ring in full-size TCP segments (see
        // Engine::rx_share for how it is shared).
        rx_budget: rx_desc * (mtu - 40),
    });
    let mut w = Worker {
        l7,
        now: 0,
        classes: [process::Class::default(); dpdk::MAX_BURST],
        tags: [Tag::default(); dpdk::MAX_BURST],
        staged: Vec::with_capacity(dpdk::MAX_BURST),
        ahead: Vec::new(),
        ahead_cursor: 0,
        ahead_force: false,
        out: Outbound {
            plane,
            neighbors,
            tx,
            pool,
            counters,
        },
        l4,
        redirects,
    };
    let mut rx = RxBurst::default();
    let mut backoff = Backoff {
        sleep: idle_sleep,
        empty: 0,
    };
    let mut last_drain = 0u64;
    let mut last_sweep = 0u64;
    let mut last_refresh = 0u64;
    const SWEEP_NS: u64 = 1_000_000_000;
    // Re-solicit backends' next hops well before their entries expire.
    let refresh_ns = (neighbor_timeout_ns / 3).max(1_000_000_000);

    log::info!(
        "worker {index} on lcore {} polling queue {queue} of {} port(s)",
        dpdk::Eal::lcore_id(),
        w.out.tx.len()
    );
    w.plan_ahead();
    // Start of the last iteration that had work: its length is counted as
    // busy time when the next one starts.
    let mut busy_since = None;
    #[cfg(debug_assertions)]
    let mut fault = liveness::Fault::from_env(index);
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now_ns();
        w.now = now;
        if let Some(t) = busy_since.take() {
            w.out.counters.add(Counter::busy_ns, now.wrapping_sub(t));
        }
        heartbeat.beat();
        #[cfg(debug_assertions)]
        if let Some(f) = &mut fault {
            f.check(now);
        }

        // Between bursts: configuration, neighbor news and handed-over
        // packets from other cores.
        if planes.update(&mut w.out.plane) {
            w.out.neighbors.plane_changed();
            w.plan_ahead();
        }
        let mut worked = false;
        while let Some(u) = mailboxes[index].pop() {
            w.out.neighbors.apply(u, now);
            worked = true;
        }
        for _ in 0..burst {
            let Some(r) = w.redirects[index].pop() else {
                break;
            };
            w.handle(r.port as usize, r.m, now, r.hops.max(1));
            worked = true;
        }

        for port in 0..w.out.plane.ports.len() {
            let port_id = w.out.plane.ports[port].port_id;
            let n = rx.recv(port_id, queue, burst);
            if n == 0 {
                continue;
            }
            worked = true;
            w.burst(port, &mut rx, n, now);
            // Received in a shared buffer, and no mbuf left to copy it into.
            let lost = rx.take_lost();
            if lost > 0 {
                w.out.counters.add(Counter::rx_packets, lost);
                w.out.counters.add(Counter::drop_no_mbuf, lost);
            }
        }

        w.l4.expire_paced(now, expire_budget);
        if !w.out.plane.l7.is_empty() || w.out.plane.services.probing || w.l7_busy() {
            worked |= w.l7_run();
            // What the userspace TCP stack sent in this iteration leaves
            // now: each proxied request crosses Sluice twice each way, and
            // waiting for the drain timer would add up to four drain
            // periods to its latency. Under load the buffers fill and
            // flush by themselves; this only sends the partial tails.
            w.out.egress(now).flush();
        }

        if now.wrapping_sub(last_drain) >= drain_ns {
            w.out.egress(now).flush();
            last_drain = now;
            w.out
                .counters
                .set(Counter::neighbor_learned, w.out.neighbors.learned());
            w.l7.publish();
            // Post what we learned to the other workers.
            for u in w.out.neighbors.drain_outbox() {
                for (i, mb) in mailboxes.iter().enumerate() {
                    if i != index {
                        let _ = mb.push(u);
                    }
                }
            }
        }
        if now.wrapping_sub(last_sweep) >= SWEEP_NS {
            w.out.neighbors.sweep(now);
            last_sweep = now;
        }
        if now.wrapping_sub(last_refresh) >= refresh_ns {
            if last_refresh != 0 {
                // A refresh round: solicit every planned next hop again.
                w.ahead_cursor = 0;
                w.ahead_force = true;
            }
            last_refresh = now;
        }
        if w.ahead_pending() {
            w.resolve_ahead(now);
        }
        if worked {
            busy_since = Some(now);
        }
        backoff.idle(worked);
    }
    let mut eg = w.out.egress(clock.now_ns());
    w.l7.shutdown(&mut eg);
    eg.flush();
    planes.retire(w.out.plane.clone());
    log::info!("worker {index} stopped");
    0
}
