//! L4 load balancing: flow keys, Maglev, per-core connection tracking and
//! SNAT port slices (the building blocks), and the balancer that uses them
//! on the worker ([`balancer`]: NAT, DSR, ICMP errors).
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
//! config → per service:                  per burst: tag = conntrack.tag(&key) per packet,
//!   MaglevTable::build(backends, M)        prefetch_home(tag) for all, then prefetch_conn(tag)
//!   (validated, off the data path)       per packet of an L4 service, in order:
//!        │                                 match conntrack.lookup_tagged(&key, tag, now)
//!        └─ immutable snapshot ─────────▶    Hit(id, dir) → conn_mut(id).observe_tcp(flags, dir, now)
//!           (Arc, swapped between bursts)                   use backend / nat of conn(id)
//!                                            Expired(c)   → release c (SNAT port, counts); as Miss
//!                                            Miss → b = table.lookup(flow_hash(&key, seed))
//!                                                   if may_create(proto, flags) {
//!                                                     conntrack.insert(key, rev, b, .., now, release)
//!                                                   } (TableFull / RateLimited: NAT drops,
//!                                                      DSR still forwards to b; counted)
//!                                        once per loop iteration:
//!                                          conntrack.expire(now, budget, release)
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
//!   shared, so it needs no lock or atomic. A fixed slab of connections, each
//!   found by its client key and (full NAT) its reply key, behind an
//!   open-addressing index that never grows or rehashes. It remembers which
//!   backend and NAT data each connection has, so flows survive Maglev table
//!   changes (backend added, weight changed), and infers a simplified TCP
//!   state for idle timeouts. Every connection it frees is handed back to the
//!   worker (`on_expire`, `Lookup::Expired`, `remove`) to release SNAT ports.
//!
//! - [`snat`]: [`snat::SnatPorts`], a worker's slice of the SNAT port
//!   space, shared by L4 NAT connections and L7 upstream connections.
//! - [`balancer`]: the L4 packet handling the worker's classification calls
//!   into; it sends through `crate::net::output` and calls nothing above.
//!
//! Conntrack only helps if every packet of a flow, in both directions, is
//! handled by the core that owns its entry. How return traffic reaches that
//! core (symmetric RSS, rte_flow partitions of SNAT ports, or a redirect ring)
//! is the worker's decision; these modules only take a
//! [`conntrack::Direction`] from the caller.

pub mod balancer;
pub mod conntrack;
pub mod flow;
pub mod maglev;
pub mod snat;
