//! The per-core worker: rx burst, classify, act, tx burst.
//!
//! One `Worker` per worker lcore owns one rx and one tx queue on every port,
//! its tx buffers, its neighbor table and its counters. Nothing on the packet
//! path is shared or locked; the only cross-core traffic is neighbor updates
//! through bounded lock-free mailboxes and new [`Plane`] snapshots through a
//! channel, both checked between bursts.
//!
//! Per packet the worker calls [`process::process`], a pure function over the
//! frame's bytes that rewrites it in place and returns a [`process::Verdict`];
//! the worker then transmits, or drops and counts. Partial tx bursts are
//! flushed every `tx_drain_us` (DPDK's l2fwd pattern).

pub mod counters;
pub mod neighbor;
pub mod plane;
pub mod process;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::Receiver;
use crossbeam::queue::ArrayQueue;

use crate::dpdk::{self, Mbuf, RxBurst, TxBuffer};
use counters::{Counter, WorkerCounters};
use neighbor::{NeighborTable, NeighborUpdate};
use plane::Plane;
use process::Verdict;

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

/// Everything a worker is started with.
pub struct WorkerSetup {
    /// Worker index (0..n), also its queue id on every port.
    pub index: usize,
    pub plane: Arc<Plane>,
    /// New planes published by the control thread (config reload).
    pub planes: Receiver<Arc<Plane>>,
    pub burst: usize,
    pub drain_ns: u64,
    pub neighbor_capacity: usize,
    pub neighbor_timeout_ns: u64,
    pub neighbor_retry_ns: u64,
    pub counters: Arc<WorkerCounters>,
    /// One mailbox per worker, indexed by worker index.
    pub mailboxes: Arc<Vec<ArrayQueue<NeighborUpdate>>>,
    pub stop: Arc<AtomicBool>,
}

/// Run the worker loop until `stop` is set. Returns 0.
pub fn run(setup: WorkerSetup) -> i32 {
    let WorkerSetup {
        index,
        mut plane,
        planes,
        burst,
        drain_ns,
        neighbor_capacity,
        neighbor_timeout_ns,
        neighbor_retry_ns,
        counters,
        mailboxes,
        stop,
    } = setup;
    let queue = index as u16;
    let clock = Clock::new();
    let mut neighbors =
        NeighborTable::new(neighbor_capacity, neighbor_timeout_ns, neighbor_retry_ns);
    for &(port, ip, mac) in &plane.static_neighbors {
        neighbors.add_static(port as u8, ip, mac);
    }
    let mut tx: Vec<TxBuffer> = plane
        .ports
        .iter()
        .map(|p| TxBuffer::new(p.port_id, queue, burst))
        .collect();
    let mut rx = RxBurst::default();
    let mut last_drain = 0u64;
    let mut last_sweep = 0u64;
    const SWEEP_NS: u64 = 1_000_000_000;

    log::info!(
        "worker {index} on lcore {} polling queue {queue} of {} port(s)",
        dpdk::Eal::lcore_id(),
        tx.len()
    );
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now_ns();

        // Between bursts: configuration and neighbor news from other cores.
        if let Ok(p) = planes.try_recv() {
            plane = p;
        }
        while let Some(u) = mailboxes[index].pop() {
            neighbors.apply(u, now);
        }

        for port in 0..plane.ports.len() {
            let port_id = plane.ports[port].port_id;
            let plane = &*plane;
            let counters = &*counters;
            let neighbors = &mut neighbors;
            let tx = &mut tx;
            rx.rx(port_id, queue, burst, |mut m: Mbuf| {
                counters.inc(Counter::rx_packets);
                counters.add(Counter::rx_bytes, m.len() as u64);
                if m.segments() != 1 {
                    counters.inc(Counter::drop_multi_segment);
                    return;
                }
                let len = m.len();
                if len < process::WORK_LEN {
                    // Room for a reply longer than the request (see WORK_LEN);
                    // the default mbuf holds 2048 bytes, so this fits.
                    m.set_len(process::WORK_LEN);
                }
                let verdict = process::process(plane, neighbors, port, m.data_mut(), len, now);
                act(counters, tx, m, verdict);
            });
        }

        if now.wrapping_sub(last_drain) >= drain_ns {
            for t in tx.iter_mut() {
                count_flush(&counters, t.flush());
            }
            last_drain = now;
            counters.set(Counter::neighbor_learned, neighbors.learned());
            // Post what we learned to the other workers.
            for u in neighbors.drain_outbox() {
                for (i, mb) in mailboxes.iter().enumerate() {
                    if i != index {
                        let _ = mb.push(u);
                    }
                }
            }
        }
        if now.wrapping_sub(last_sweep) >= SWEEP_NS {
            neighbors.sweep(now);
            last_sweep = now;
        }
    }
    for t in tx.iter_mut() {
        count_flush(&counters, t.flush());
    }
    log::info!("worker {index} stopped");
    0
}

#[inline]
fn count_flush(counters: &WorkerCounters, f: dpdk::Flushed) {
    counters.add(Counter::tx_packets, f.sent as u64);
    counters.add(Counter::tx_bytes, f.sent_bytes);
    counters.add(Counter::drop_tx_full, f.dropped as u64);
}

#[inline]
fn act(counters: &WorkerCounters, tx: &mut [TxBuffer], mut m: Mbuf, verdict: Verdict) {
    match verdict {
        Verdict::Drop(c) | Verdict::Consumed(c) => counters.inc(c),
        Verdict::Transmit { port, len, counter } => {
            counters.inc(counter);
            m.set_len(len);
            count_flush(counters, tx[port].push(m));
        }
        Verdict::Solicited { port, len } => {
            // The packet that needed the neighbor is lost (no queueing on the
            // hot path); its buffer carries the solicitation instead.
            counters.inc(Counter::drop_neighbor_miss);
            counters.inc(Counter::neighbor_solicits);
            m.set_len(len);
            count_flush(counters, tx[port].push(m));
        }
    }
}
