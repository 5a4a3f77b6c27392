//! Per-core connection tracking, with both directions of a full-NAT
//! connection in one entry.
//!
//! One [`Conntrack`] per worker core, owned by that core's worker and never
//! shared: no lock, no atomic. It remembers the backend and the caller's NAT
//! data of each connection, so that a flow keeps its backend when the Maglev
//! table changes and reply packets find their translation, and it expires idle
//! connections with per-state timeouts inferred from TCP flags.
//!
//! # Connections and keys
//!
//! A connection ([`Conn`]) is found by up to two [`FlowKey`]s, each exactly as
//! a packet carrying it arrives at this core:
//!
//! - `fwd`, the client's packets to the VIP ([`Direction::Original`]);
//! - `rev`, the reply packets, for full NAT the backend's packets to the SNAT
//!   address and port ([`Direction::Reply`]). DSR services see no replies and
//!   insert no `rev` key.
//!
//! The table does not compute `rev`: the NAT code chooses the SNAT address and
//! port and passes the resulting key. It must choose them so that replies
//! reach *this* core (per-core SNAT port ranges steered with rte_flow, or
//! symmetric RSS; see [`super`]), and it must make `rev` unique; a key already
//! held by a live connection makes [`Conntrack::insert`] answer
//! [`InsertError::Exists`].
//!
//! # Layout: a slab and an index, both fixed at construction
//!
//! ```text
//!  index: 2^k buckets of 8 bytes            slab: max_flows × Conn (96 bytes)
//!  ┌──────────┬─────────────────┐           ┌───────────────────────────────┐
//!  │ tag: u32 │ slot: u32       │──────────▶│ keys: [fwd, rev], last_seen,  │
//!  │ (hash)   │ ConnId<<1 | dir │           │ nat, backend, service, state, │
//!  └──────────┴─────────────────┘           │ flags                         │
//!                                           └───────────────────────────────┘
//! ```
//!
//! Connections live in a slab of `max_flows` entries with an intrusive free
//! list; a [`ConnId`] is an index into it. The index is an open-addressing
//! hash table of `buckets = next_pow2(4 × max_flows)` small `Copy` buckets
//! (at least 8): every connection has at most two keys, so at most half of the
//! buckets are ever in use. At load α ≤ ½, linear probing needs on average
//! ≤ 1.5 bucket reads for a hit and ≤ 2.5 for a miss (Knuth, TAOCP vol. 3,
//! §6.4), and eight buckets share a cache line. Three buckets per connection
//! (load ⅔) would save 8 bytes per flow but lengthen misses to 5 bucket reads
//! (8.5 at ¾), and misses are what a SYN flood costs.
//!
//! A bucket holds the top 32 bits of the key's hash (`tag`, 0 meaning empty)
//! and the slot it indexes. The home bucket of a key is the top `k` bits of
//! its tag, so a bucket alone tells where its key's probe sequence starts; the
//! remaining `32 − k` tag bits filter out most keys that share a home bucket
//! before the slab is read. A probe compares tags in the index and follows a
//! slot to the slab only on a tag match.
//!
//! Deletion is *backward shift* (Knuth's Algorithm R, §6.4): the buckets after
//! the hole that may legally move into it do so, until an empty bucket. No
//! tombstones are left, so probe lengths depend only on the keys present, the
//! index never degrades under churn and never needs a rehash. Nothing is
//! allocated after [`Conntrack::new`]: the slab and the index are boxed slices,
//! which cannot grow. `new` also writes every page of both, so that no page
//! fault lands on the data path; build each core's table on that core, so that
//! first touch puts its memory on the core's NUMA node.
//!
//! # Hash
//!
//! The index is keyed with a fast multiply-fold hash (in the style of wyhash
//! and foldhash) under six 64-bit secrets derived at construction from
//! `std`'s [`RandomState`], so each table (each core, each process) has its
//! own. A remote client cannot compute keys that collide in it, as it could
//! for the fleet-wide, deliberately fixed [`super::flow::flow_hash`], which
//! must stay deterministic for Maglev and is not used here.
//!
//! # Time
//!
//! `now` is nanoseconds from the worker. `last_seen` is kept as a `u32` count
//! of ticks of 2^20 ns ([`TICK_NANOS`], about 1.05 ms), wrapping every 52
//! days; that is what keeps a connection at 96 bytes. Timeouts are rounded up
//! to whole ticks, and a connection expires between its timeout and its
//! timeout plus two ticks (2.1 ms) after its last packet; never early. Ages
//! are compared modulo 2^32 and a `now` before `last_seen` counts as age zero,
//! so timeouts are capped at [`MAX_TIMEOUT`] (about 13 days); an expired
//! connection is reclaimed by the sweep long before its age could wrap.
//!
//! # Expiry, and why every free is reported
//!
//! Whoever frees a connection must release what its `nat` payload holds (the
//! SNAT port, the backend's active-connection count). So every path that frees
//! one hands it to the caller:
//!
//! - [`Conntrack::expire`]`(now, budget, on_expire)` walks the slab with a
//!   cursor, examining at most `budget` slots per call (only slots up to the
//!   high-water mark of slots ever used), and calls `on_expire` for each
//!   expired connection just before freeing it and removing both its keys.
//!   Every connection is examined once per `high_water / budget` calls; the
//!   worker paces its calls so that this is about once a second
//!   (`balancer::L4State::expire_paced`). The walk prefetches the entry
//!   16 slots ahead of its cursor: in a table larger than the
//!   caches each examined entry is otherwise a cache miss.
//! - [`Conntrack::lookup`] treats an expired connection as absent: it frees it
//!   at once and returns it as [`Lookup::Expired`] (`#[must_use]`).
//! - [`Conntrack::insert`] takes the same `on_expire` callback: it frees an
//!   expired connection that still holds one of the new keys, and when the
//!   slab is full it runs `expire` over [`RECLAIM_BUDGET`] slots before
//!   answering [`InsertError::TableFull`]. [`Conntrack::insert_after_miss`]
//!   is `insert` for a key whose lookup has just missed (or freed its
//!   expired holder): it does not probe for that key again.
//! - [`Conntrack::remove`] and [`Conntrack::clear`] return or report what they
//!   free.
//!
//! # TCP state
//!
//! A simplified tracker in the spirit of IPVS and Katran, not RFC 9293 window
//! tracking; it only decides how long an idle connection is kept:
//!
//! | state         | entered by                                     | default idle timeout |
//! |---------------|------------------------------------------------|----------------------|
//! | `SynSent`     | SYN creates the entry; SYN / SYN-ACK keep it   | 30 s                 |
//! | `Established` | an ACK without SYN after `SynSent`             | 3600 s               |
//! | `Closing`     | FIN in either direction                        | 120 s                |
//! | `Closed`      | RST in either direction                        | 10 s                 |
//! | `Udp`         | any non-TCP flow                               | 120 s                |
//!
//! A new SYN from the client (original direction, no ACK) on a `Closing` or
//! `Closed` entry starts over in `SynSent`: the client reused the 4-tuple
//! (Linux allows that out of TIME_WAIT).
//!
//! # Memory
//!
//! [`bytes_per_flow`] is 128 (a 96-byte slab entry and four 8-byte buckets)
//! when `max_flows` is a power of two divided by four; otherwise the index is
//! rounded up to the next power of two, up to 64 bytes per flow.
//! [`flows_for_bytes`] picks the largest table that fits a budget: 8 388 608
//! flows in 1 GiB.
//!
//! Once the table is much larger than the CPU caches, a hit costs two
//! dependent cache misses (bucket, then slab entry) and a miss one.
//! The worker overlaps those misses across a receive burst with prefetch
//! instructions: it computes each packet's [`Tag`] once
//! ([`Conntrack::tag`]), prefetches every home bucket of the burst
//! ([`Conntrack::prefetch_home`]), then every entry they name
//! ([`Conntrack::prefetch_conn`]), and looks each packet up with its tag
//! ([`Conntrack::lookup_tagged`]); [`Conntrack::warm`] does the first three
//! for a slice of keys. A new full-NAT connection's reply key cannot be
//! prefetched that way (it depends on the backend and SNAT port chosen
//! for it), and inserting it probes its home bucket: inside a batch
//! ([`Conntrack::begin_batch`], one per receive burst) the table prefetches
//! that bucket and indexes the key at the batch's end, by when it has
//! arrived. Both arrays are advised for transparent huge pages
//! (`madvise(MADV_HUGEPAGE)`, in `src/dpdk/mem.rs`) before they are filled,
//! which removes most of the TLB misses on top: 128 MiB in 4 KiB pages is
//! 32,768 TLB entries, in 2 MiB pages 64.

use core::fmt;
use core::mem::size_of;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::flow::{proto, FlowKey};
use crate::dpdk::mem::{huge_slice, prefetch};

/// One second in the `now` unit of this module (nanoseconds).
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

const TICK_SHIFT: u32 = 20;
/// Resolution of `last_seen`: 2^20 ns, about 1.05 ms (see the module doc).
pub const TICK_NANOS: u64 = 1 << TICK_SHIFT;
const MAX_TIMEOUT_TICKS: u32 = 1 << 30;
/// Longest idle timeout honoured (2^50 ns, about 13 days); longer ones are
/// clamped to it.
pub const MAX_TIMEOUT: u64 = (MAX_TIMEOUT_TICKS as u64) << TICK_SHIFT;

/// Largest `max_flows` a table accepts: slots and bucket positions must fit
/// in 32 bits with room for the direction bit (2^28 flows is 32 GiB anyway).
pub const MAX_FLOWS: usize = 1 << 28;

/// Index buckets per connection: two keys at ≤ 50 % load.
const BUCKETS_PER_FLOW: usize = 4;
const MIN_BUCKETS: usize = 8;

/// How many slab slots `insert` examines for expired connections before
/// answering [`InsertError::TableFull`].
pub const RECLAIM_BUDGET: usize = 16;

/// How many slots ahead of its cursor [`Conntrack::expire`] prefetches.
const SWEEP_AHEAD: usize = 16;

/// End of the free list.
const NIL: u32 = u32::MAX;

/// Reply keys a batch may hold back from the index at once (see
/// [`Conntrack::begin_batch`]); inserts beyond it index their reply key at
/// once. Settling frees at most one connection per held key.
pub const PENDING_MAX: usize = 32;

/// The flags byte of a TCP header (RFC 9293 §3.1; ECE/CWR from RFC 3168).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    pub const NONE: TcpFlags = TcpFlags(0);

    /// True if every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// Which way a packet travels relative to the packet that created the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to VIP: the packet matched the `fwd` key.
    Original,
    /// Backend to client: the packet matched the `rev` key. DSR connections
    /// have no `rev` key and never see this direction.
    Reply,
}

/// Tracked state of a connection. See the module doc for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    SynSent = 0,
    Established = 1,
    Closing = 2,
    Closed = 3,
    /// UDP, or any protocol other than TCP: no handshake to follow.
    Udp = 4,
}

impl ConnState {
    #[inline]
    const fn from_bits(b: u8) -> ConnState {
        match b {
            0 => ConnState::SynSent,
            1 => ConnState::Established,
            2 => ConnState::Closing,
            3 => ConnState::Closed,
            _ => ConnState::Udp,
        }
    }
}

/// Idle timeouts per state, in nanoseconds. A connection expires once it has
/// been idle for longer than the timeout of its state (rounded up to
/// [`TICK_NANOS`], capped at [`MAX_TIMEOUT`]; see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Handshake not finished. 30 s: shorter than IPVS (60 s SYN_RECV) and
    /// nf_conntrack (120 s SYN_SENT) to shed SYN floods sooner; client SYN
    /// retransmissions refresh it, and a flow that outlives it is simply
    /// recreated by its next SYN.
    pub syn: u64,
    /// 3600 s. IPVS uses 900 s, nf_conntrack 5 days, cloud load balancers
    /// 350–3600 s. Clients idle longer than this need TCP keepalives below it
    /// (Linux's default first probe is at 7200 s).
    pub established: u64,
    /// FIN seen. 120 s, IPVS FIN_WAIT and nf_conntrack `tcp_timeout_fin_wait`.
    pub closing: u64,
    /// RST seen. 10 s, IPVS CLOSE and nf_conntrack `tcp_timeout_close`.
    pub closed: u64,
    /// Non-TCP. 120 s, nf_conntrack `udp_timeout_stream` (since Linux 5.0).
    pub udp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn: 30 * NANOS_PER_SEC,
            established: 3600 * NANOS_PER_SEC,
            closing: 120 * NANOS_PER_SEC,
            closed: 10 * NANOS_PER_SEC,
            udp: 120 * NANOS_PER_SEC,
        }
    }
}

impl Timeouts {
    /// Timeout of `state`, as configured.
    #[inline]
    pub const fn for_state(&self, state: ConnState) -> u64 {
        match state {
            ConnState::SynSent => self.syn,
            ConnState::Established => self.established,
            ConnState::Closing => self.closing,
            ConnState::Closed => self.closed,
            ConnState::Udp => self.udp,
        }
    }

    /// Timeouts in ticks, indexed by the state bits of [`Conn::meta`]. The
    /// three unused values never expire (free slots are skipped before the
    /// lookup anyway).
    fn to_ticks(self) -> [u32; 8] {
        let mut t = [u32::MAX; 8];
        for s in [
            ConnState::SynSent,
            ConnState::Established,
            ConnState::Closing,
            ConnState::Closed,
            ConnState::Udp,
        ] {
            t[s as usize] = timeout_ticks(self.for_state(s));
        }
        t
    }
}

#[inline]
const fn tick(now: u64) -> u32 {
    (now >> TICK_SHIFT) as u32
}

const fn timeout_ticks(ns: u64) -> u32 {
    let t = ns.div_ceil(TICK_NANOS);
    if t > MAX_TIMEOUT_TICKS as u64 {
        MAX_TIMEOUT_TICKS
    } else {
        t as u32
    }
}

/// Ticks from `last` to `t`, modulo 2^32; a `t` before `last` is age 0.
#[inline]
const fn age(t: u32, last: u32) -> u32 {
    let d = t.wrapping_sub(last);
    if (d as i32) < 0 {
        0
    } else {
        d
    }
}

/// Token bucket for new connections per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained new connections per second.
    pub per_sec: u64,
    /// Connections allowed in a burst (bucket depth); the bucket starts full.
    pub burst: u64,
}

/// Sizes and policies of one core's table, from the compiled configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most connections held at once (expired ones not yet swept count), at
    /// most [`MAX_FLOWS`]. [`flows_for_bytes`] gives the best value for a
    /// memory budget.
    pub max_flows: usize,
    pub timeouts: Timeouts,
    /// Cap on new connections (SYN-flood damping); `None` for no cap.
    pub new_flow_rate: Option<RateLimit>,
}

/// Handle of a connection: its index in the slab.
///
/// Valid from the `insert` that returns it until the connection is freed
/// ([`Conntrack::remove`], the `on_expire` callback, [`Lookup::Expired`],
/// [`Conntrack::clear`]); after that the slot is reused by later inserts, so
/// a stale id names some other connection. The worker may keep side tables
/// indexed by [`ConnId::index`] (at most [`Conntrack::capacity`] entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u32);

impl ConnId {
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Bits of [`Conn::meta`].
const META_STATE: u8 = 0x07;
const META_FREE: u8 = 0x08;
const META_HAS_REV: u8 = 0x80;

/// One connection: both keys, the caller's NAT data, state and idle time.
/// 96 bytes.
///
/// `repr(C)` keeps the two keys first and `last_seen` right after them, so a
/// lookup hit reads and refreshes the bytes it compared; `align(32)` keeps
/// every entry within two cache lines of its 96 bytes.
///
/// The public fields belong to the caller. The keys, the state and
/// `last_seen` are the table's: they change only through [`Conntrack`] and
/// the methods below. Overwriting a whole live `Conn` through
/// [`Conntrack::conn_mut`] (with a copy of another one) is a logic error: the
/// index would still hold the old keys. The table stays memory-safe and
/// bounded if that happens, but may lose those keys' capacity.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Conn {
    /// `[fwd, rev]`, so that a bucket's direction bit selects the key. A DSR
    /// connection stores `fwd` twice and is not indexed under the copy.
    keys: [FlowKey; 2],
    /// Tick of the last packet; the next free slot while on the free list.
    last_seen: u32,
    /// Caller-defined NAT data, opaque to conntrack; for example the SNAT
    /// port in bits 0..16 and the index of the local address in bits 16..32.
    pub nat: u64,
    /// Index of the backend in the service's snapshot.
    pub backend: u32,
    /// Service the connection belongs to, so that a service change can tell
    /// its connections apart.
    pub service: u16,
    /// [`ConnState`] in bits 0..3, `META_FREE`, `META_HAS_REV`.
    meta: u8,
    /// Caller-defined flag bits (for example "DSR", "reply seen").
    pub flags: u8,
}

impl Conn {
    const FREE: Conn = Conn {
        keys: [FlowKey {
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            proto: 0,
        }; 2],
        last_seen: NIL,
        nat: 0,
        backend: 0,
        service: 0,
        meta: META_FREE,
        flags: 0,
    };

    /// The key of the client's packets, as received.
    #[inline]
    pub const fn fwd(&self) -> &FlowKey {
        &self.keys[0]
    }

    /// The key of the reply packets as they arrive; `None` for DSR.
    #[inline]
    pub const fn rev(&self) -> Option<&FlowKey> {
        if self.has_rev() {
            Some(&self.keys[1])
        } else {
            None
        }
    }

    /// The key of packets travelling `dir`.
    #[inline]
    pub const fn key(&self, dir: Direction) -> Option<&FlowKey> {
        match dir {
            Direction::Original => Some(self.fwd()),
            Direction::Reply => self.rev(),
        }
    }

    #[inline]
    pub const fn has_rev(&self) -> bool {
        self.meta & META_HAS_REV != 0
    }

    #[inline]
    pub const fn state(&self) -> ConnState {
        ConnState::from_bits(self.meta & META_STATE)
    }

    /// Force the state (for example `Closed` when the worker answers a
    /// connection with a RST itself).
    #[inline]
    pub fn set_state(&mut self, state: ConnState) {
        self.meta = (self.meta & !META_STATE) | state as u8;
    }

    /// Time since the last packet, in nanoseconds, at tick resolution.
    #[inline]
    pub const fn idle(&self, now: u64) -> u64 {
        (age(tick(now), self.last_seen) as u64) << TICK_SHIFT
    }

    /// Whether the connection has been idle longer than its state allows.
    #[inline]
    pub const fn is_expired(&self, now: u64, timeouts: &Timeouts) -> bool {
        age(tick(now), self.last_seen) > timeout_ticks(timeouts.for_state(self.state()))
    }

    /// Update the state from a TCP packet's flags (see [`next_tcp_state`])
    /// and refresh `last_seen`.
    #[inline]
    pub fn observe_tcp(&mut self, flags: TcpFlags, dir: Direction, now: u64) {
        self.set_state(next_tcp_state(self.state(), flags, dir));
        self.touch(tick(now));
    }

    #[inline]
    const fn is_live(&self) -> bool {
        self.meta & META_FREE == 0
    }

    #[inline]
    fn expired_at(&self, t: u32, ticks: &[u32; 8]) -> bool {
        age(t, self.last_seen) > ticks[(self.meta & META_STATE) as usize]
    }

    /// `last_seen = max(last_seen, t)`, modulo 2^32.
    #[inline]
    fn touch(&mut self, t: u32) {
        if (t.wrapping_sub(self.last_seen) as i32) > 0 {
            self.last_seen = t;
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_live() {
            return f.write_str("Conn(free)");
        }
        f.debug_struct("Conn")
            .field("fwd", self.fwd())
            .field("rev", &self.rev())
            .field("state", &self.state())
            .field("backend", &self.backend)
            .field("service", &self.service)
            .field("nat", &format_args!("{:#x}", self.nat))
            .field("flags", &format_args!("{:#04x}", self.flags))
            .field("last_seen_tick", &self.last_seen)
            .finish()
    }
}

/// Update `conn`'s state from a TCP packet's flags (see [`next_tcp_state`])
/// and refresh its `last_seen`.
#[inline]
pub fn observe_tcp(conn: &mut Conn, flags: TcpFlags, dir: Direction, now: u64) {
    conn.observe_tcp(flags, dir, now);
}

/// The state after a TCP packet with `flags` travelling `dir`.
///
/// RST closes, FIN starts closing, an ACK without SYN completes the
/// handshake, a client SYN without ACK reopens a closing or closed flow.
/// `Udp` never changes.
#[inline]
pub const fn next_tcp_state(state: ConnState, flags: TcpFlags, dir: Direction) -> ConnState {
    use ConnState::*;
    if matches!(state, Udp) {
        return state;
    }
    let syn = flags.contains(TcpFlags::SYN);
    let ack = flags.contains(TcpFlags::ACK);
    let new_client_syn = syn && !ack && matches!(dir, Direction::Original);
    if flags.contains(TcpFlags::RST) {
        return Closed;
    }
    if flags.contains(TcpFlags::FIN) {
        return match state {
            Closed => Closed,
            _ => Closing,
        };
    }
    match state {
        SynSent if ack && !syn => Established,
        Closing | Closed if new_client_syn => SynSent,
        s => s,
    }
}

/// A client's SYN without ACK: the first segment of a (possibly new)
/// connection.
#[inline]
pub const fn is_new_client_syn(flags: TcpFlags) -> bool {
    flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK)
}

/// The state a new connection starts in: `SynSent` for a TCP SYN,
/// `Established` for another TCP packet (a DSR service picking up a flow
/// mid-stream, after a restart or a move from another box), `Udp` for
/// everything else.
#[inline]
pub const fn initial_state(ip_proto: u8, flags: TcpFlags) -> ConnState {
    if ip_proto != proto::TCP {
        ConnState::Udp
    } else if flags.contains(TcpFlags::SYN) {
        ConnState::SynSent
    } else {
        ConnState::Established
    }
}

/// Whether a packet of a flow with no connection may create one, in NAT mode.
///
/// TCP: only a bare SYN (no ACK, RST or FIN). A NAT entry for a mid-stream
/// packet would point at a backend that has no socket for it; a RST or stray
/// ACK from a scan or a flood must not fill the table. Every other protocol
/// may create. DSR services, which do not translate, may also create entries
/// for mid-stream TCP packets other than RST (see [`initial_state`]).
#[inline]
pub const fn may_create(ip_proto: u8, flags: TcpFlags) -> bool {
    if ip_proto != proto::TCP {
        return true;
    }
    let mask = TcpFlags::SYN.0 | TcpFlags::ACK.0 | TcpFlags::RST.0 | TcpFlags::FIN.0;
    flags.0 & mask == TcpFlags::SYN.0
}

/// Answer of [`Conntrack::lookup`].
#[must_use = "an Expired connection must have its NAT resources released"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live connection; the packet travels `Direction`. `last_seen` has
    /// been refreshed.
    Hit(ConnId, Direction),
    /// The key belonged to a connection that had expired. It has been freed
    /// (both keys removed, its slot free for reuse, so no `ConnId` is given)
    /// and is returned so that the caller releases what it held, exactly as
    /// in `on_expire`. For the packet, this is a miss.
    Expired(Conn),
    /// No connection has this key.
    Miss,
}

/// Why [`Conntrack::insert`] refused. None of them stops the flow: the caller
/// forwards it by consistent hash without a connection and counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Every slot is held by a live connection (after reclaiming expired
    /// ones from [`RECLAIM_BUDGET`] slots).
    TableFull,
    /// The new-connection token bucket is empty.
    RateLimited,
    /// A live connection already has the `fwd` or `rev` key, or `rev == fwd`.
    Exists,
}

/// Event counts since construction. Plain integers: the owning worker reads
/// them and folds them into its published counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackCounters {
    /// Connections created by `insert`.
    pub inserted: u64,
    /// Connections freed for idleness: by `expire` (`on_expire`), by `insert`
    /// (`on_expire`) or by `lookup` ([`Lookup::Expired`]).
    pub expired: u64,
    /// Connections freed by [`Conntrack::remove`] or [`Conntrack::clear`].
    pub removed: u64,
    /// `insert` calls answered [`InsertError::TableFull`].
    pub table_full: u64,
    /// `insert` calls answered [`InsertError::RateLimited`].
    pub rate_limited: u64,
    /// `insert` calls answered [`InsertError::Exists`].
    pub exists: u64,
}

#[derive(Clone, Debug)]
struct TokenBucket {
    per_sec: u64,
    /// Bucket depth in token-nanoseconds (tokens × 10^9), so refill is exact
    /// integer arithmetic: one nanosecond adds `per_sec` units.
    cap: u64,
    level: u64,
    last: u64,
}

impl TokenBucket {
    fn new(r: RateLimit) -> Self {
        let cap = r.burst.saturating_mul(NANOS_PER_SEC);
        TokenBucket {
            per_sec: r.per_sec,
            cap,
            level: cap,
            last: 0,
        }
    }

    #[inline]
    fn take(&mut self, now: u64) -> bool {
        if now > self.last {
            let add = (now - self.last).saturating_mul(self.per_sec);
            self.level = self.level.saturating_add(add).min(self.cap);
            self.last = now;
        }
        if self.level >= NANOS_PER_SEC {
            self.level -= NANOS_PER_SEC;
            true
        } else {
            false
        }
    }
}

/// The keyed hash of the index (see the module doc).
#[derive(Clone)]
struct KeyHasher {
    k: [u64; 6],
    /// Tests force collisions by keeping only some hash bits.
    #[cfg(test)]
    mask: u64,
}

/// Full 64 × 64 → 128-bit multiply, folded: the mixing step of wyhash and
/// foldhash. Both operands carry a secret, so no input can force a zero
/// product.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// SplitMix64 (Steele, Lea & Flood, OOPSLA 2014), to expand one seed into
/// independent secrets.
fn splitmix64(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl KeyHasher {
    /// Secrets from `std`'s per-process random keys (which `RandomState`
    /// also varies per instance).
    fn random() -> Self {
        KeyHasher::from_seed(RandomState::new().hash_one(0x736c_7569_6365_u64))
    }

    fn from_seed(seed: u64) -> Self {
        let mut s = seed;
        KeyHasher {
            k: core::array::from_fn(|_| splitmix64(&mut s)),
            #[cfg(test)]
            mask: u64::MAX,
        }
    }

    /// Source and destination are each folded with their own secrets (so a
    /// key and its reverse hash apart), then combined with the ports and
    /// protocol in a last multiply whose high bits become the tag.
    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        let k = &self.k;
        let s = u128::from_le_bytes(key.src);
        let d = u128::from_le_bytes(key.dst);
        let p =
            (u64::from(key.src_port) << 24) | (u64::from(key.dst_port) << 8) | u64::from(key.proto);
        let a = mum(s as u64 ^ k[0], (s >> 64) as u64 ^ k[1]);
        let b = mum(d as u64 ^ k[2], (d >> 64) as u64 ^ k[3]);
        let h = mum(a ^ p ^ k[4], b ^ k[5]);
        #[cfg(test)]
        let h = h & self.mask;
        h
    }

    #[inline]
    fn tag(&self, key: &FlowKey) -> u32 {
        tag_of(self.hash(key))
    }
}

/// The top 32 bits of a hash, never 0 (0 marks an empty bucket). Mapping 0 to
/// 1 keeps the home bucket, which is at most the top 31 bits.
#[inline]
fn tag_of(h: u64) -> u32 {
    ((h >> 32) as u32).max(1)
}

/// The index tag of a key ([`Conntrack::tag`]): the top 32 bits of its
/// keyed hash, never 0. The default tag, 0, is no key's and finds
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tag(u32);

/// One index bucket: 8 bytes, loaded as one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
struct Bucket {
    /// Top 32 bits of the key's hash; 0 if empty.
    tag: u32,
    /// `ConnId << 1 | direction` (0 original, 1 reply).
    slot: u32,
}

const EMPTY: Bucket = Bucket { tag: 0, slot: 0 };

/// Linear-probing index with backward-shift deletion (see the module doc).
/// It knows tags and slots only; key comparison is the caller's closure.
struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
    /// `32 - log2(buckets.len())`: a tag's home is `tag >> shift`.
    shift: u32,
    /// Buckets in use.
    len: usize,
}

impl Index {
    fn new(n: usize) -> Self {
        assert!(n.is_power_of_two() && (MIN_BUCKETS..=1 << 31).contains(&n));
        let (buckets, _) = huge_slice(n, EMPTY);
        Index {
            buckets,
            mask: n - 1,
            shift: 32 - n.trailing_zeros(),
            len: 0,
        }
    }

    /// Most keys the index takes: half its buckets, so every probe sequence
    /// meets an empty bucket.
    #[inline]
    fn max_len(&self) -> usize {
        self.buckets.len() / 2
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        (tag >> self.shift) as usize
    }

    /// The slot of the first bucket with `tag` whose slot `is_key` accepts.
    #[inline]
    fn find(&self, tag: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(tag);
        loop {
            let b = self.buckets[i];
            if b.tag == 0 {
                return None;
            }
            if b.tag == tag && is_key(b.slot) {
                return Some(b.slot);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Add a key known to be absent, with room checked by the caller.
    #[inline]
    fn insert(&mut self, tag: u32, slot: u32) {
        debug_assert!(tag != 0 && self.len < self.max_len());
        let mut i = self.home(tag);
        while self.buckets[i].tag != 0 {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = Bucket { tag, slot };
        self.len += 1;
    }

    /// Remove the bucket `(tag, slot)`; false if there is none.
    ///
    /// Backward shift: walk the cluster after the hole; an entry whose home
    /// is cyclically at or before the hole (its probe distance is at least
    /// the hole's distance from it) moves into the hole, which moves to where
    /// it was. The walk ends at an empty bucket, which the last hole becomes.
    fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let mask = self.mask;
        let mut hole = self.home(tag);
        loop {
            let b = self.buckets[hole];
            if b.tag == 0 {
                return false;
            }
            if b.tag == tag && b.slot == slot {
                break;
            }
            hole = (hole + 1) & mask;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let b = self.buckets[j];
            if b.tag == 0 {
                break;
            }
            let dist = j.wrapping_sub(self.home(b.tag)) & mask;
            if dist >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        true
    }

    fn clear(&mut self) {
        self.buckets.fill(EMPTY);
        self.len = 0;
    }

    /// Every key is reachable: no empty bucket between its home and its
    /// position, and `len` counts the used buckets.
    #[cfg(test)]
    fn check(&self) {
        let used = self.buckets.iter().filter(|b| b.tag != 0).count();
        assert_eq!(used, self.len);
        for (i, b) in self.buckets.iter().enumerate() {
            if b.tag == 0 {
                continue;
            }
            let mut p = self.home(b.tag);
            while p != i {
                assert_ne!(self.buckets[p].tag, 0, "hole before bucket {i}");
                p = (p + 1) & self.mask;
            }
        }
    }
}

/// One worker core's connection table. See the module doc.
pub struct Conntrack {
    slab: Box<[Conn]>,
    /// Whether the kernel took the huge-page advice for the slab.
    huge_pages: bool,
    index: Index,
    hasher: KeyHasher,
    /// Head of the free list of slots below `high_water` (linked through
    /// `Conn::last_seen`), or `NIL`.
    free_head: u32,
    /// Slots `high_water..` have never been used; `expire` stops there.
    high_water: u32,
    /// Next slot `expire` examines; below `high_water` when that is nonzero.
    cursor: u32,
    len: u32,
    /// Timeouts in ticks by state bits.
    ticks: [u32; 8],
    timeouts: Timeouts,
    limiter: Option<TokenBucket>,
    counters: ConntrackCounters,
    /// Inside a batch ([`Conntrack::begin_batch`]).
    batch: bool,
    /// The batch's reply keys not yet in the index.
    pending: Pending,
}

/// Reply keys held back by a batch: their tags and slots, in two fixed
/// arrays so that a miss compares all the tags at once (a lookup that
/// misses inside a batch must still find them).
struct Pending {
    tags: [u32; PENDING_MAX],
    ids: [u32; PENDING_MAX],
    len: usize,
    /// A bit per low byte of a tag held since the list was last empty: a
    /// miss whose bit is clear (most) skips the comparison.
    filter: [u64; 4],
}

impl Pending {
    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn push(&mut self, tag: u32, id: u32) {
        self.tags[self.len] = tag;
        self.ids[self.len] = id;
        self.len += 1;
        self.filter[(tag as usize >> 6) & 3] |= 1 << (tag & 63);
    }

    /// Drop entry `i` (the last one takes its place).
    #[inline]
    fn swap_remove(&mut self, i: usize) {
        self.len -= 1;
        self.tags[i] = self.tags[self.len];
        self.ids[i] = self.ids[self.len];
        self.tags[self.len] = 0;
        if self.len == 0 {
            self.filter = [0; 4];
        }
    }

    /// A bit per entry whose tag is `tag`. Unused entries hold tag 0,
    /// which no key has.
    /// False if no entry has `tag` (true may be wrong).
    #[inline]
    fn may_hold(&self, tag: u32) -> bool {
        self.filter[(tag as usize >> 6) & 3] & (1 << (tag & 63)) != 0
    }

    #[inline]
    fn matching(&self, tag: u32) -> u32 {
        let mut m = 0u32;
        for (i, &t) in self.tags.iter().enumerate() {
            m |= u32::from(t == tag) << i;
        }
        m
    }
}

impl Conntrack {
    /// Allocate (and touch) everything the table will ever use, with a hash
    /// seeded at random.
    ///
    /// # Panics
    ///
    /// If `config.max_flows > MAX_FLOWS` (the control plane validates it).
    pub fn new(config: &ConntrackConfig) -> Self {
        Conntrack::with_hasher(config, KeyHasher::random())
    }

    fn with_hasher(config: &ConntrackConfig, hasher: KeyHasher) -> Self {
        let n = config.max_flows;
        assert!(
            n <= MAX_FLOWS,
            "conntrack max_flows {n} exceeds MAX_FLOWS {MAX_FLOWS}"
        );
        // Filled now (every page written), so the data path never takes a
        // page fault; advised for huge pages first (see `huge_slice`).
        let (slab, huge_pages) = huge_slice(n, Conn::FREE);
        Conntrack {
            slab,
            huge_pages,
            index: Index::new(index_buckets(n)),
            hasher,
            free_head: NIL,
            high_water: 0,
            cursor: 0,
            len: 0,
            ticks: config.timeouts.to_ticks(),
            timeouts: config.timeouts,
            limiter: config.new_flow_rate.map(TokenBucket::new),
            counters: ConntrackCounters::default(),
            batch: false,
            pending: Pending {
                tags: [0; PENDING_MAX],
                ids: [0; PENDING_MAX],
                len: 0,
                filter: [0; 4],
            },
        }
    }

    /// The slot indexed under `key`, if any (live or expired).
    #[inline]
    fn find(&self, key: &FlowKey) -> Option<u32> {
        self.find_tagged(key, self.hasher.tag(key))
    }

    /// The index tag of `key` in this table: its keyed hash, computed once
    /// per packet by a worker that processes a burst stage by stage
    /// ([`Conntrack::prefetch_home`], [`Conntrack::prefetch_conn`],
    /// [`Conntrack::lookup_tagged`]). Only meaningful for this table (each
    /// table has its own secrets).
    #[inline]
    pub fn tag(&self, key: &FlowKey) -> Tag {
        Tag(self.hasher.tag(key))
    }

    /// Prefetch the home bucket of a key with tag `tag` (the first of a
    /// lookup's two dependent memory accesses). A hint: it changes nothing.
    #[inline]
    pub fn prefetch_home(&self, tag: Tag) {
        prefetch(&self.index.buckets[self.index.home(tag.0)]);
    }

    /// Read the home bucket of `tag` (prefetched by
    /// [`Conntrack::prefetch_home`] a while before) and prefetch the
    /// connection it names if its tag matches (the second access). A hint:
    /// it only reads.
    #[inline]
    pub fn prefetch_conn(&self, tag: Tag) {
        let b = self.index.buckets[self.index.home(tag.0)];
        if b.tag == tag.0 {
            prefetch(&self.slab[(b.slot >> 1) as usize]);
        }
    }

    #[inline(always)]
    fn find_tagged(&self, key: &FlowKey, tag: u32) -> Option<u32> {
        let found = self.find_indexed(key, tag);
        if found.is_some() || !self.pending.may_hold(tag) {
            return found;
        }
        self.find_pending(key, tag)
    }

    /// [`Conntrack::find_tagged`] in the index alone.
    #[inline(always)]
    fn find_indexed(&self, key: &FlowKey, tag: u32) -> Option<u32> {
        let slab = &self.slab;
        self.index.find(tag, |slot| {
            slab[(slot >> 1) as usize].keys[(slot & 1) as usize] == *key
        })
    }

    /// A reply key held back by the batch (a miss inside a batch that
    /// opened NAT connections).
    #[cold]
    #[inline(never)]
    fn find_pending(&self, key: &FlowKey, tag: u32) -> Option<u32> {
        let mut m = self.pending.matching(tag);
        while m != 0 {
            let id = self.pending.ids[m.trailing_zeros() as usize];
            if self.slab[id as usize].keys[1] == *key {
                return Some(id << 1 | 1);
            }
            m &= m - 1;
        }
        None
    }

    /// Start a batch: until [`Conntrack::end_batch`], a new connection's
    /// reply key is held back from the index (at most [`PENDING_MAX`] of
    /// them) while its home bucket is prefetched. Inserting a reply key
    /// probes that bucket, a cache miss in a table larger than the caches
    /// that nothing before the insert could prefetch (the key depends on
    /// the backend and SNAT port chosen for the connection): without the
    /// batch each new NAT connection waits for it in turn.
    ///
    /// Inside a batch the table answers as without it: lookups find held
    /// keys, and removing or expiring a connection drops its held key. Only
    /// the check that no live connection holds the reply key waits for
    /// `end_batch`; it cannot fail when reply keys come from one SNAT port
    /// allocator, as they do.
    #[inline]
    pub fn begin_batch(&mut self) {
        self.batch = true;
    }

    /// End a batch: index its held reply keys. A key held by an expired
    /// connection frees that one first (reported to `on_expire`, as in
    /// [`Conntrack::insert`]); a key held by a live connection makes the
    /// new connection that wanted it go again, reported to `on_expire` too
    /// (and counted as refused, `Exists`). At most [`PENDING_MAX`]
    /// connections are freed.
    pub fn end_batch(&mut self, now: u64, mut on_expire: impl FnMut(ConnId, &Conn)) {
        self.batch = false;
        if self.pending.is_empty() {
            return;
        }
        let t = tick(now);
        // Last first, each taken off the list before it is probed for, so
        // that a connection freed along the way finds its own key still
        // listed (see `release`).
        while !self.pending.is_empty() {
            let last = self.pending.len - 1;
            let (tag, id) = (self.pending.tags[last], self.pending.ids[last]);
            let rev = self.slab[id as usize].keys[1];
            self.pending.swap_remove(last);
            // In the index alone: a key held twice in this batch is found
            // there once its first holder is settled.
            match self.make_way(&rev, tag, t, false, &mut on_expire) {
                Ok(()) => self.index.insert(tag, id << 1 | 1),
                Err(_) => {
                    // Listed again so that `release` finds it there.
                    self.pending.push(tag, id);
                    on_expire(ConnId(id), &self.slab[id as usize]);
                    self.release(id);
                    self.counters.removed += 1;
                }
            }
        }
    }

    /// The connection of a packet with `key`, refreshing its `last_seen` to
    /// `now`. An expired connection is freed and returned as
    /// [`Lookup::Expired`]; release its NAT resources as in `on_expire`.
    ///
    /// For TCP, follow a hit with
    /// `conntrack.conn_mut(id).observe_tcp(flags, dir, now)`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Lookup {
        let tag = self.tag(key);
        self.lookup_tagged(key, tag, now)
    }

    /// [`Conntrack::lookup`] with the key's tag already computed
    /// ([`Conntrack::tag`] of the same key, on this table), so that a key
    /// is hashed once per packet however many stages look at it.
    ///
    /// Inlined into its callers (once per packet on the L4 path), so that
    /// the answer need not go through memory; the rare expired hit is
    /// handled out of line.
    #[inline(always)]
    pub fn lookup_tagged(&mut self, key: &FlowKey, tag: Tag, now: u64) -> Lookup {
        debug_assert_eq!(tag, self.tag(key), "tag of another key or table");
        let Some(slot) = self.find_tagged(key, tag.0) else {
            return Lookup::Miss;
        };
        let id = slot >> 1;
        let t = tick(now);
        let c = &mut self.slab[id as usize];
        if c.expired_at(t, &self.ticks) {
            return self.free_expired(id);
        }
        c.touch(t);
        Lookup::Hit(ConnId(id), direction_of(slot))
    }

    /// [`Conntrack::lookup_tagged`]'s expired hit: free connection `id`.
    #[cold]
    #[inline(never)]
    fn free_expired(&mut self, id: u32) -> Lookup {
        let old = self.slab[id as usize];
        self.release(id);
        self.counters.expired += 1;
        Lookup::Expired(old)
    }

    /// Bring into cache the index buckets and slab entries that lookups of
    /// `keys` will read, overlapping their cache misses; then look them up one
    /// by one as usual. Call it with the keys of a receive burst when the table
    /// is much larger than the CPU caches (see the module doc, "Memory"). It
    /// only reads, so a stale hint costs nothing but the reads.
    ///
    /// A lookup reads one bucket, then the slab entry it names: two dependent
    /// memory accesses, which one packet at a time cannot overlap. Here the
    /// home buckets of the whole chunk are prefetched first (prefetches retire
    /// at once, so all their misses are in flight together), then each bucket
    /// is read and the entry it names, if its tag matches, prefetched (both
    /// cache lines of an entry that starts mid-line).
    pub fn warm(&self, keys: &[FlowKey]) {
        const CHUNK: usize = 32;
        for chunk in keys.chunks(CHUNK) {
            let mut tags = [Tag(0); CHUNK];
            for (k, t) in chunk.iter().zip(tags.iter_mut()) {
                *t = self.tag(k);
                self.prefetch_home(*t);
            }
            for &tag in &tags[..chunk.len()] {
                self.prefetch_conn(tag);
            }
        }
    }

    /// Whether the kernel took the advice to back the connection slab with
    /// transparent huge pages (see [`crate::dpdk::mem::huge_slice`]).
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// The live connection of `key` without refreshing or freeing anything
    /// (admin, tests).
    pub fn get(&self, key: &FlowKey, now: u64) -> Option<(ConnId, Direction)> {
        let slot = self.find(key)?;
        let id = slot >> 1;
        if self.slab[id as usize].expired_at(tick(now), &self.ticks) {
            return None;
        }
        Some((ConnId(id), direction_of(slot)))
    }

    /// Create a connection with `last_seen = now` and `flags = 0`, indexed
    /// under `fwd` and, for full NAT, `rev` (see the module doc). `state` is
    /// usually [`initial_state`] of the first packet. Costs one token of the
    /// new-connection rate limit.
    ///
    /// `on_expire` is called for every expired connection this call frees
    /// (one that still held `fwd` or `rev`, or those reclaimed when the slab is
    /// full), just before it is freed: at most `2 + RECLAIM_BUDGET` times.
    /// Pass the same release function as to [`expire`](Self::expire).
    /// Refusals are counted in
    /// [`ConntrackCounters`] and checked in the order `Exists`, `TableFull`,
    /// `RateLimited`, so no token is spent on a refused connection.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        fwd: FlowKey,
        rev: Option<FlowKey>,
        backend: u32,
        service: u16,
        state: ConnState,
        nat: u64,
        now: u64,
        on_expire: impl FnMut(ConnId, &Conn),
    ) -> Result<ConnId, InsertError> {
        let tag = self.hasher.tag(&fwd);
        self.insert_with(
            &fwd,
            tag,
            true,
            rev.as_ref(),
            backend,
            service,
            state,
            nat,
            now,
            on_expire,
        )
    }

    /// [`Conntrack::insert`] right after [`Conntrack::lookup_tagged`] of
    /// `fwd` with `tag` answered [`Lookup::Miss`] or [`Lookup::Expired`]
    /// (or the connection it found was removed), with no other insert in
    /// between: `fwd` is known to be in no connection, so it is neither
    /// hashed nor probed for again. (A hit in the reply direction means
    /// `fwd` is another connection's `rev`: use `insert`, which answers
    /// [`InsertError::Exists`].)
    #[allow(clippy::too_many_arguments)]
    pub fn insert_after_miss(
        &mut self,
        fwd: &FlowKey,
        tag: Tag,
        rev: Option<&FlowKey>,
        backend: u32,
        service: u16,
        state: ConnState,
        nat: u64,
        now: u64,
        on_expire: impl FnMut(ConnId, &Conn),
    ) -> Result<ConnId, InsertError> {
        debug_assert_eq!(tag, self.tag(fwd), "tag of another key or table");
        debug_assert!(self.find(fwd).is_none(), "insert_after_miss of a key held");
        self.insert_with(
            fwd, tag.0, false, rev, backend, service, state, nat, now, on_expire,
        )
    }

    /// `insert` with `fwd`'s tag; `probe_fwd`: whether `fwd` may be held
    /// (by a live connection, or an expired one to free first).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn insert_with(
        &mut self,
        fwd: &FlowKey,
        fwd_tag: u32,
        probe_fwd: bool,
        rev: Option<&FlowKey>,
        backend: u32,
        service: u16,
        state: ConnState,
        nat: u64,
        now: u64,
        mut on_expire: impl FnMut(ConnId, &Conn),
    ) -> Result<ConnId, InsertError> {
        let t = tick(now);
        let rev_tag = match rev {
            Some(r) => {
                let tag = self.hasher.tag(r);
                // Equal keys have equal tags: compare the keys only then.
                if tag == fwd_tag && r == fwd {
                    return Err(self.refuse(InsertError::Exists));
                }
                Some(tag)
            }
            None => None,
        };
        if probe_fwd {
            self.make_way(fwd, fwd_tag, t, true, &mut on_expire)?;
        }
        // Held back by a batch, or probed now.
        let hold = self.batch && self.pending.len < PENDING_MAX;
        if let (Some(r), Some(tag)) = (rev, rev_tag) {
            if hold {
                prefetch(&self.index.buckets[self.index.home(tag)]);
            } else {
                self.make_way(r, tag, t, true, &mut on_expire)?;
            }
        }

        let keys = 1 + usize::from(rev.is_some());
        if !self.has_room(keys) {
            self.expire(now, RECLAIM_BUDGET, &mut on_expire);
            if !self.has_room(keys) {
                return Err(self.refuse(InsertError::TableFull));
            }
        }
        if let Some(l) = &mut self.limiter {
            if !l.take(now) {
                return Err(self.refuse(InsertError::RateLimited));
            }
        }

        let id = self.alloc();
        self.slab[id as usize] = Conn {
            keys: [*fwd, *rev.unwrap_or(fwd)],
            last_seen: t,
            nat,
            backend,
            service,
            meta: state as u8 | if rev.is_some() { META_HAS_REV } else { 0 },
            flags: 0,
        };
        self.index.insert(fwd_tag, id << 1);
        if let Some(tag) = rev_tag {
            if hold {
                self.pending.push(tag, id);
            } else {
                self.index.insert(tag, id << 1 | 1);
            }
        }
        self.len += 1;
        self.counters.inserted += 1;
        Ok(ConnId(id))
    }

    /// Free the expired connection holding `key`, if any; `Exists` if a live
    /// one holds it. `held`: look among a batch's held keys too.
    fn make_way(
        &mut self,
        key: &FlowKey,
        tag: u32,
        t: u32,
        held: bool,
        on_expire: &mut impl FnMut(ConnId, &Conn),
    ) -> Result<(), InsertError> {
        let found = if held {
            self.find_tagged(key, tag)
        } else {
            self.find_indexed(key, tag)
        };
        let Some(slot) = found else {
            return Ok(());
        };
        let id = slot >> 1;
        let c = &self.slab[id as usize];
        if !c.expired_at(t, &self.ticks) {
            return Err(self.refuse(InsertError::Exists));
        }
        on_expire(ConnId(id), c);
        self.release(id);
        self.counters.expired += 1;
        Ok(())
    }

    #[inline]
    fn refuse(&mut self, e: InsertError) -> InsertError {
        let c = &mut self.counters;
        match e {
            InsertError::TableFull => c.table_full += 1,
            InsertError::RateLimited => c.rate_limited += 1,
            InsertError::Exists => c.exists += 1,
        }
        e
    }

    /// A free slot, and index room for `keys` more keys. The index check only
    /// matters if the index holds keys the slab does not know (a whole `Conn`
    /// overwritten by the caller); it keeps every probe sequence finite.
    #[inline]
    fn has_room(&self, keys: usize) -> bool {
        (self.free_head != NIL || (self.high_water as usize) < self.slab.len())
            && self.index.len + self.pending.len + keys <= self.index.max_len()
    }

    /// Take a free slot; `has_room` must have said yes.
    #[inline]
    fn alloc(&mut self) -> u32 {
        if self.free_head != NIL {
            let id = self.free_head;
            self.free_head = self.slab[id as usize].last_seen;
            id
        } else {
            let id = self.high_water;
            self.high_water += 1;
            id
        }
    }

    /// Remove `id`'s keys from the index and put its slot on the free list.
    fn release(&mut self, id: u32) {
        let c = &self.slab[id as usize];
        debug_assert!(c.is_live());
        let found = self.index.remove(self.hasher.tag(&c.keys[0]), id << 1);
        debug_assert!(found, "fwd key of {id} not indexed");
        if c.has_rev() {
            // Held back by a batch, or in the index.
            let held = match self.pending.ids[..self.pending.len]
                .iter()
                .position(|&p| p == id)
            {
                Some(i) => {
                    self.pending.swap_remove(i);
                    true
                }
                None => false,
            };
            if !held {
                let found = self.index.remove(self.hasher.tag(&c.keys[1]), id << 1 | 1);
                debug_assert!(found, "rev key of {id} not indexed");
            }
        }
        let c = &mut self.slab[id as usize];
        c.meta = META_FREE;
        c.last_seen = self.free_head;
        self.free_head = id;
        self.len -= 1;
    }

    /// Free expired connections, examining at most `budget` slots (and never
    /// one slot twice in a call). `on_expire` sees each one just before it is
    /// freed; release its NAT resources there. Returns how many were freed.
    /// Call once per worker loop iteration; see the module doc for how long an
    /// expired connection can linger.
    pub fn expire(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expire: impl FnMut(ConnId, &Conn),
    ) -> usize {
        let high = self.high_water;
        if high == 0 {
            return 0;
        }
        let t = tick(now);
        let mut freed = 0;
        for _ in 0..budget.min(high as usize) {
            let id = self.cursor;
            self.cursor = if id + 1 == high { 0 } else { id + 1 };
            // The sweep's reads (state and last_seen, in the entry's
            // last line) miss the cache in a large table; fetch the line
            // a later step (usually the next call) will read.
            let ahead = id as usize + SWEEP_AHEAD;
            if ahead < high as usize {
                prefetch(&self.slab[ahead].meta);
            }
            let c = &self.slab[id as usize];
            if c.is_live() && c.expired_at(t, &self.ticks) {
                on_expire(ConnId(id), c);
                self.release(id);
                freed += 1;
            }
        }
        self.counters.expired += freed as u64;
        freed
    }

    /// End a connection now, whatever its state; returns it so that the
    /// caller releases its NAT resources.
    ///
    /// # Panics
    ///
    /// If `id` is not a live connection (it was already freed).
    pub fn remove(&mut self, id: ConnId) -> Conn {
        let c = self.slab[id.index()];
        assert!(c.is_live(), "conntrack: remove of free {id:?}");
        self.release(id.0);
        self.counters.removed += 1;
        c
    }

    /// The connection `id` (a `ConnId` from a hit or an insert; reading a
    /// freed one gives a free slot's placeholder, checked in debug builds).
    #[inline]
    pub fn conn(&self, id: ConnId) -> &Conn {
        let c = &self.slab[id.index()];
        debug_assert!(c.is_live(), "conntrack: stale {id:?}");
        c
    }

    /// The connection `id`, to change its state or the caller's fields.
    ///
    /// # Panics
    ///
    /// If `id` is not live: writing to a free slot would corrupt the free list.
    #[inline]
    pub fn conn_mut(&mut self, id: ConnId) -> &mut Conn {
        let c = &mut self.slab[id.index()];
        assert!(c.is_live(), "conntrack: stale {id:?}");
        c
    }

    /// Every live connection (including expired ones not yet freed), in slot
    /// order. O(high-water mark): for admin and draining, not per packet.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.slab[..self.high_water as usize]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_live())
            .map(|(i, c)| (ConnId(i as u32), c))
    }

    /// Free every connection (for example when the worker's configuration
    /// generation changes wholesale), calling `on_remove` for each. Counted as
    /// removed. O(slots ever used + index buckets); keeps the allocation.
    pub fn clear(&mut self, mut on_remove: impl FnMut(ConnId, &Conn)) -> usize {
        let high = self.high_water as usize;
        let mut n = 0;
        for (i, c) in self.slab[..high].iter_mut().enumerate() {
            if c.is_live() {
                on_remove(ConnId(i as u32), c);
                n += 1;
            }
            *c = Conn::FREE;
        }
        self.index.clear();
        while !self.pending.is_empty() {
            self.pending.swap_remove(self.pending.len - 1);
        }
        self.free_head = NIL;
        self.high_water = 0;
        self.cursor = 0;
        self.len = 0;
        self.counters.removed += n as u64;
        n
    }

    /// Connections held, including expired ones not yet freed.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Slots ever used: what one full pass of [`Conntrack::expire`] visits.
    #[inline]
    pub fn high_water(&self) -> usize {
        self.high_water as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `max_flows` from the configuration.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// Bytes of the slab and the index; fixed at construction and equal to
    /// [`allocation_for_flows`]`(capacity())`.
    pub fn allocation_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.slab) + core::mem::size_of_val(&*self.index.buckets)
    }

    #[inline]
    pub fn counters(&self) -> &ConntrackCounters {
        &self.counters
    }

    #[inline]
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
}

#[inline]
const fn direction_of(slot: u32) -> Direction {
    if slot & 1 == 0 {
        Direction::Original
    } else {
        Direction::Reply
    }
}

/// Index buckets for `max_flows` (at most [`MAX_FLOWS`]):
/// `next_pow2(4 × max_flows)`, at least 8.
pub const fn index_buckets(max_flows: usize) -> usize {
    let b = (max_flows * BUCKETS_PER_FLOW).next_power_of_two();
    if b < MIN_BUCKETS {
        MIN_BUCKETS
    } else {
        b
    }
}

/// Bytes [`Conntrack::new`] allocates for `max_flows` (exact; the struct
/// itself is a few hundred bytes more).
pub const fn allocation_for_flows(max_flows: usize) -> usize {
    max_flows * size_of::<Conn>() + index_buckets(max_flows) * size_of::<Bucket>()
}

/// Memory per flow when the index is exactly `4 × max_flows` buckets: a slab
/// entry and four buckets, 128 bytes. Other sizes round the index up to the
/// next power of two (up to 64 bytes per flow for it instead of 32);
/// [`flows_for_bytes`] accounts for that exactly.
pub const fn bytes_per_flow() -> usize {
    size_of::<Conn>() + BUCKETS_PER_FLOW * size_of::<Bucket>()
}

/// The largest `max_flows` whose table fits in `bytes`: for each power-of-two
/// index size, as many flows as both the index (at most a quarter of its
/// buckets) and the remaining bytes allow. 8 388 608 for 1 GiB.
pub fn flows_for_bytes(bytes: usize) -> usize {
    let mut best = 0;
    let mut buckets = MIN_BUCKETS;
    while let Some(index_bytes) = buckets.checked_mul(size_of::<Bucket>()) {
        if index_bytes > bytes {
            break;
        }
        let flows = (buckets / BUCKETS_PER_FLOW)
            .min((bytes - index_bytes) / size_of::<Conn>())
            .min(MAX_FLOWS);
        best = best.max(flows);
        match buckets.checked_mul(2) {
            Some(b) if b <= index_buckets(MAX_FLOWS) => buckets = b,
            _ => break,
        }
    }
    best
}

#[cfg(test)]
mod tests;
