//! L4 load balancing building blocks: flow keys, Maglev, per-core connection
//! tracking.
//!
//! Everything here is pure: no DPDK, no I/O, no clock, no logging. Time comes
//! in as `now: u64` nanoseconds from the worker (which converts TSC ticks
//! once per burst). After construction, nothing on a per-packet path
//! allocates, and the data-plane functions answer with small `Copy` verdicts
//! instead of `Result`s.
//!
//! # How the worker uses these
//!
//! ```text
//! control thread                         worker (one per lcore)
//! ──────────────                         ──────────────────────
//! config → per service:                  per packet of an L4 service:
//!   MaglevTable::build(backends, M)        key = FlowKey::v4/v6(..)
//!   (validated, off the data path)         if let Some(e) = conntrack.lookup(&key, now)
//!        │                                     e.observe_tcp(flags, dir, now); use e.backend
//!        └─ immutable snapshot ─────────▶   else
//!           (Arc, swapped between bursts)      b = table.lookup(flow_hash(&key, seed))
//!                                              if may_create(proto, flags) { conntrack.insert(..) }
//!                                              (TableFull / RateLimited: still forward to b,
//!                                               count it; service never stops)
//!                                        once per loop iteration:
//!                                          conntrack.expire(now, budget)
//! ```
//!
//! - [`flow`]: [`flow::FlowKey`] (5-tuple, both families in one 38-byte
//!   layout) and [`flow::flow_hash`] / [`flow::src_hash`], a fixed keyed
//!   SipHash-1-3 that every box of an ECMP group computes identically.
//! - [`maglev`]: Maglev consistent hashing (Eisenbud et al., NSDI 2016,
//!   §3.4) with Katran-style weights. Tables are built by the control plane
//!   and published to workers as part of the service snapshot; a worker only
//!   calls [`maglev::MaglevTable::lookup`].
//! - [`conntrack`]: one [`conntrack::Conntrack`] per worker core, never
//!   shared, so it needs no lock or atomic. It remembers which backend each
//!   flow went to, so flows survive Maglev table changes (backend added,
//!   weight changed), and infers a simplified TCP state for idle timeouts.
//!
//! Conntrack only helps if every packet of a flow, in both directions, is
//! handled by the core that owns its entry. How return traffic reaches that
//! core (symmetric RSS, rte_flow partitions of SNAT ports, or a redirect ring)
//! is the worker's decision; these modules only take a
//! [`conntrack::Direction`] from the caller.

pub mod conntrack;
pub mod flow;
pub mod maglev;
