//! Per-core connection tracking.
//!
//! One [`Conntrack`] per worker core, owned by that core's worker and never
//! shared: no lock, no atomic. It remembers the backend (and the caller's NAT
//! data) of each flow so that a flow keeps its backend when the Maglev table
//! changes, and it expires idle flows with per-state timeouts inferred from
//! TCP flags.
//!
//! # Memory and the no-growth guarantee
//!
//! The table is a hashbrown [`HashTable`] of `(FlowKey, Entry)` (64 bytes
//! each), allocated once, plus a ring of one `u64` per entry for the expiry
//! sweep. Nothing allocates afterwards, and [`Conntrack::insert`] answers
//! [`InsertVerdict::TableFull`] instead of growing once
//! [`ConntrackConfig::max_entries`] flows are held.
//!
//! Checking the length is not enough to keep hashbrown from growing. Some
//! removals leave a tombstone, which hashbrown counts against its spare room;
//! when the spare room reaches zero the next insert rehashes *in place* if at
//! most half of hashbrown's capacity is in use, and otherwise *allocates a
//! table twice as large*. Under steady churn tombstones always accumulate to
//! that point (measured: with hashbrown sized for exactly `max_entries`,
//! churn at the limit left only about half of `max_entries` usable). So the
//! table is allocated for `2 × max_entries` (`HEADROOM`): with at most half of
//! its capacity in use, hashbrown's only way out is the in-place rehash, which
//! does not allocate. It is O(buckets), a stall of tens of milliseconds for a
//! million-flow table, and rare (measured: once in 24 M inserts for a table
//! of 917 504 flows churning at its limit); [`ConntrackCounters::rehashes`]
//! counts it. `insert` still refuses rather than let hashbrown reallocate
//! should that ever be the alternative (counted in
//! [`ConntrackCounters::table_full_tombstones`], expected to stay 0), and a
//! debug assertion checks that the allocation never changes.
//!
//! [`bytes_per_entry`] and [`entries_for_bytes`] size the table for a memory
//! budget.
//!
//! # Amortized expiry
//!
//! hashbrown 0.15 offers no stable cursor over its buckets, and `retain` /
//! `extract_if` walk the whole table in one call. Instead each entry has
//! exactly one slot in a preallocated FIFO ring holding the hash of its key
//! (the *sweep ring*): `insert` of a new key pushes its hash, and
//! [`Conntrack::expire`]`(now, budget)` pops at most `budget` hashes; for each
//! it looks up the entry with that hash and removes it if it has expired, or
//! pushes the hash back at the tail. Per call: at most `budget` hash probes and
//! at most `budget` removals, whatever the table size; every entry is visited
//! once per `len / budget` calls, so an expired entry lingers at most that
//! long after its deadline. To keep "one ring slot per entry" exact,
//! [`Conntrack::remove`] does not take the entry out of the table: it marks it
//! removed, and the sweep (or a later `insert` of the same key) reclaims it.
//! [`Conntrack::lookup`] treats expired and removed entries as absent, so
//! expiry is exact for the data path even before the sweep gets there.
//!
//! The table is keyed with hashbrown's default hasher (foldhash), seeded at
//! random per process: unlike the fleet-wide [`super::flow::flow_hash`], keys
//! that collide in it cannot be computed in advance by a client.
//!
//! # TCP state
//!
//! A simplified tracker in the spirit of IPVS and Katran, not RFC 793 window
//! tracking; it only decides how long an idle flow is kept:
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

use core::hash::BuildHasher;
use core::mem::size_of;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::flow::{proto, FlowKey};

/// One second in the `now` unit of this module (nanoseconds).
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// hashbrown is sized for `HEADROOM × max_entries` so that `max_entries` are
/// always reachable without reallocating (see the module doc).
const HEADROOM: usize = 2;

/// How many ring slots `insert` sweeps before declaring the table full.
const FULL_RECLAIM_BUDGET: usize = 16;

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

/// Which way a packet travels relative to the packet that created the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to VIP (the direction of the first packet).
    Original,
    /// Backend to client. DSR services never see this direction.
    Reply,
}

/// Tracked state of a flow. See the module doc for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    SynSent,
    Established,
    Closing,
    Closed,
    /// UDP, or any protocol other than TCP: no handshake to follow.
    Udp,
    /// Taken out by [`Conntrack::remove`]; never returned by lookups, reclaimed
    /// by the sweep.
    Removed,
}

/// Idle timeouts per state, in nanoseconds. A flow expires once
/// `now - last_seen >= timeout(state)`.
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
    /// Timeout of `state`; 0 for `Removed` (always expired).
    #[inline]
    pub const fn for_state(&self, state: ConnState) -> u64 {
        match state {
            ConnState::SynSent => self.syn,
            ConnState::Established => self.established,
            ConnState::Closing => self.closing,
            ConnState::Closed => self.closed,
            ConnState::Udp => self.udp,
            ConnState::Removed => 0,
        }
    }
}

/// Token bucket for new entries per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained new entries per second.
    pub per_sec: u64,
    /// Entries allowed in a burst (bucket depth); the bucket starts full.
    pub burst: u64,
}

/// Sizes and policies of one core's table, from the compiled configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most flows held at once (expired entries not yet swept count).
    pub max_entries: usize,
    pub timeouts: Timeouts,
    /// Cap on new entries (SYN-flood damping); `None` for no cap.
    pub new_flow_rate: Option<RateLimit>,
}

/// What conntrack remembers about one flow: 24 bytes.
///
/// `payload` is opaque to conntrack: the NAT code packs what it needs into it
/// (for example SNAT port in bits 0..16 and the index of the local address in
/// bits 16..32), so the table stays one fixed, non-generic type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Caller-defined NAT or encapsulation data.
    pub payload: u64,
    last_seen: u64,
    /// Index of the backend in the service's snapshot.
    pub backend: u32,
    /// Service the flow belongs to, so that a service change can tell its
    /// flows apart.
    pub service: u16,
    state: ConnState,
    /// Caller-defined flag bits (for example "DSR", "reply seen").
    pub flags: u8,
}

impl Entry {
    /// A new entry; `last_seen` is set by [`Conntrack::insert`].
    pub const fn new(state: ConnState, backend: u32, service: u16, payload: u64) -> Self {
        Entry {
            payload,
            last_seen: 0,
            backend,
            service,
            state,
            flags: 0,
        }
    }

    #[inline]
    pub const fn state(&self) -> ConnState {
        self.state
    }

    /// Time of the last packet seen, in nanoseconds.
    #[inline]
    pub const fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// When the entry expires if no packet arrives.
    #[inline]
    pub const fn deadline(&self, timeouts: &Timeouts) -> u64 {
        self.last_seen
            .saturating_add(timeouts.for_state(self.state))
    }

    #[inline]
    pub const fn is_expired(&self, now: u64, timeouts: &Timeouts) -> bool {
        now.saturating_sub(self.last_seen) >= timeouts.for_state(self.state)
    }

    /// Update the state from a TCP packet's flags and refresh `last_seen`.
    #[inline]
    pub fn observe_tcp(&mut self, flags: TcpFlags, dir: Direction, now: u64) {
        observe_tcp(self, flags, dir, now);
    }
}

/// Update `entry`'s state from a TCP packet's flags (see [`next_tcp_state`])
/// and refresh its `last_seen`.
#[inline]
pub fn observe_tcp(entry: &mut Entry, flags: TcpFlags, dir: Direction, now: u64) {
    entry.state = next_tcp_state(entry.state, flags, dir);
    entry.last_seen = entry.last_seen.max(now);
}

/// The state after a TCP packet with `flags` travelling `dir`.
///
/// RST closes, FIN starts closing, an ACK without SYN completes the
/// handshake, a client SYN without ACK reopens a closing or closed flow.
/// `Udp` and `Removed` never change.
#[inline]
pub const fn next_tcp_state(state: ConnState, flags: TcpFlags, dir: Direction) -> ConnState {
    use ConnState::*;
    if matches!(state, Udp | Removed) {
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

/// The state a new entry starts in: `SynSent` for a TCP SYN, `Established`
/// for another TCP packet (a DSR service picking up a flow mid-stream, after
/// a restart or a move from another box), `Udp` for everything else.
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

/// Whether a packet of a flow with no entry may create one, in NAT mode.
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

/// Outcome of [`Conntrack::insert`]. Neither failure stops the flow: the
/// caller forwards it by consistent hash without an entry and counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertVerdict {
    Inserted,
    /// `max_entries` reached (or no room without reallocating; see the module doc).
    TableFull,
    /// The new-entry token bucket is empty.
    RateLimited,
}

/// Event counts since construction. Plain integers: the owning worker reads
/// them and folds them into its published counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackCounters {
    /// `insert` calls answered `Inserted`.
    pub inserted: u64,
    /// Inserts that overwrote a live entry of the same key.
    pub replaced: u64,
    /// Entries that ended by idle timeout (reclaimed by the sweep, or
    /// overwritten by an insert after expiring).
    pub expired: u64,
    /// Live entries taken out by [`Conntrack::remove`].
    pub removed: u64,
    /// `insert` calls answered `TableFull`.
    pub table_full: u64,
    /// Of those, the ones refused below `max_entries` because hashbrown's
    /// spare room was used up by tombstones.
    pub table_full_tombstones: u64,
    /// `insert` calls answered `RateLimited`.
    pub rate_limited: u64,
    /// In-place rehashes hashbrown did to clear tombstones (O(n) each).
    pub rehashes: u64,
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

/// Fixed-capacity FIFO of key hashes, one per table entry.
#[derive(Clone, Debug)]
struct SweepRing {
    slots: Box<[u64]>,
    head: usize,
    len: usize,
}

impl SweepRing {
    fn new(cap: usize) -> Self {
        SweepRing {
            slots: vec![0; cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, h: u64) {
        debug_assert!(self.len < self.slots.len(), "sweep ring overflow");
        let mut i = self.head + self.len;
        if i >= self.slots.len() {
            i -= self.slots.len();
        }
        self.slots[i] = h;
        self.len += 1;
    }

    #[inline]
    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let h = self.slots[self.head];
        self.head += 1;
        if self.head == self.slots.len() {
            self.head = 0;
        }
        self.len -= 1;
        Some(h)
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// One worker core's connection table. See the module doc.
pub struct Conntrack {
    table: HashTable<(FlowKey, Entry)>,
    hasher: DefaultHashBuilder,
    sweep: SweepRing,
    max_entries: usize,
    /// hashbrown's capacity with no tombstones (≥ `max_entries`).
    full_capacity: usize,
    /// Bytes allocated at construction; never changes.
    table_bytes: usize,
    timeouts: Timeouts,
    limiter: Option<TokenBucket>,
    counters: ConntrackCounters,
}

impl Conntrack {
    /// Allocate everything the table will ever use.
    pub fn new(config: &ConntrackConfig) -> Self {
        let table = HashTable::with_capacity(config.max_entries.saturating_mul(HEADROOM));
        Conntrack {
            full_capacity: table.capacity(),
            table_bytes: table.allocation_size(),
            table,
            hasher: DefaultHashBuilder::default(),
            sweep: SweepRing::new(config.max_entries),
            max_entries: config.max_entries,
            timeouts: config.timeouts,
            limiter: config.new_flow_rate.map(TokenBucket::new),
            counters: ConntrackCounters::default(),
        }
    }

    /// The live entry of `key`, with `last_seen` refreshed to `now`; `None` if
    /// absent, expired or removed. Call [`Entry::observe_tcp`] on it for TCP.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<&mut Entry> {
        let hash = self.hasher.hash_one(key);
        let timeouts = &self.timeouts;
        let (_, e) = self.table.find_mut(hash, |(k, _)| k == key)?;
        if e.is_expired(now, timeouts) {
            return None;
        }
        e.last_seen = e.last_seen.max(now);
        Some(e)
    }

    /// The live entry of `key` without refreshing it (admin, tests).
    pub fn get(&self, key: &FlowKey, now: u64) -> Option<&Entry> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |(k, _)| k == key)
            .map(|(_, e)| e)
            .filter(|e| !e.is_expired(now, &self.timeouts))
    }

    /// Create the entry of `key` (or replace the one it has), with
    /// `last_seen = now`. Costs one token of the new-entry rate limit.
    ///
    /// Never allocates: when the table is full it first sweeps a few ring
    /// slots (see [`expire`](Self::expire)) to reclaim expired entries, then
    /// answers [`InsertVerdict::TableFull`].
    pub fn insert(&mut self, key: FlowKey, mut entry: Entry, now: u64) -> InsertVerdict {
        entry.last_seen = now;
        let hash = self.hasher.hash_one(key);
        if let Some((_, old)) = self.table.find_mut(hash, |(k, _)| *k == key) {
            // The key keeps its ring slot; no room needed.
            if let Some(l) = &mut self.limiter {
                if !l.take(now) {
                    self.counters.rate_limited += 1;
                    return InsertVerdict::RateLimited;
                }
            }
            match old.state {
                ConnState::Removed => {}
                _ if old.is_expired(now, &self.timeouts) => self.counters.expired += 1,
                _ => self.counters.replaced += 1,
            }
            *old = entry;
            self.counters.inserted += 1;
            return InsertVerdict::Inserted;
        }

        if !self.has_room() {
            self.expire(now, FULL_RECLAIM_BUDGET);
            if !self.has_room() {
                self.counters.table_full += 1;
                if self.table.len() < self.max_entries {
                    self.counters.table_full_tombstones += 1;
                }
                return InsertVerdict::TableFull;
            }
        }
        if let Some(l) = &mut self.limiter {
            if !l.take(now) {
                self.counters.rate_limited += 1;
                return InsertVerdict::RateLimited;
            }
        }

        let spare_before = self.table.capacity() - self.table.len();
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, entry), |(k, _)| hasher.hash_one(k));
        if spare_before == 0 && self.table.capacity() > self.table.len() {
            self.counters.rehashes += 1;
        }
        debug_assert_eq!(self.table.allocation_size(), self.table_bytes);
        self.sweep.push(hash);
        self.counters.inserted += 1;
        InsertVerdict::Inserted
    }

    /// Whether one more new key fits without reallocating: below
    /// `max_entries`, and either hashbrown has spare room or its rehash would
    /// happen in place (at most half its capacity in use).
    #[inline]
    fn has_room(&self) -> bool {
        let len = self.table.len();
        len < self.max_entries && (self.table.capacity() > len || len < self.full_capacity / 2)
    }

    /// End the flow of `key` now; returns its last live entry. The slot is
    /// reclaimed by the sweep or by a later `insert` of the same key.
    pub fn remove(&mut self, key: &FlowKey, now: u64) -> Option<Entry> {
        let hash = self.hasher.hash_one(key);
        let (_, e) = self.table.find_mut(hash, |(k, _)| k == key)?;
        if e.is_expired(now, &self.timeouts) {
            return None;
        }
        let live = *e;
        e.state = ConnState::Removed;
        self.counters.removed += 1;
        Some(live)
    }

    /// Reclaim expired and removed entries, visiting at most `budget` entries
    /// (each one hash probe, and one removal if it is reclaimed). Returns the
    /// number reclaimed. Call once per worker loop iteration; see the module
    /// doc for how long an expired entry can linger.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut reclaimed = 0;
        let hasher = &self.hasher;
        let timeouts = &self.timeouts;
        for _ in 0..budget.min(self.sweep.len) {
            let Some(h) = self.sweep.pop() else { break };
            // The hash check keeps "one ring slot per entry" exact: an expired
            // entry of another key in the same probe sequence belongs to its
            // own ring slot.
            let found = self.table.find_entry(h, |(k, e)| {
                e.is_expired(now, timeouts) && hasher.hash_one(k) == h
            });
            match found {
                Ok(occupied) => {
                    let ((_, e), _) = occupied.remove();
                    if e.state != ConnState::Removed {
                        self.counters.expired += 1;
                    }
                    reclaimed += 1;
                }
                Err(_) => self.sweep.push(h),
            }
        }
        reclaimed
    }

    /// Drop every entry (for example when the worker's configuration
    /// generation changes wholesale). Keeps the allocation.
    pub fn clear(&mut self) {
        self.table.clear();
        self.sweep.clear();
    }

    /// Entries held, including expired and removed ones the sweep has not
    /// reclaimed yet.
    #[inline]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `max_entries` from the configuration.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Bytes allocated by this table (hash table plus sweep ring); fixed at
    /// construction.
    pub fn allocation_bytes(&self) -> usize {
        self.table_bytes + self.sweep.slots.len() * size_of::<u64>()
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

/// Size of one hash-table element.
const ELEMENT_BYTES: usize = size_of::<(FlowKey, Entry)>();
/// hashbrown's SIMD group width on x86-64 (SSE2); 8 on targets without it,
/// so this errs high there.
const GROUP_WIDTH: usize = 16;

/// Approximate memory per tracked flow, at best: (element + 1 control byte)
/// at hashbrown's 7/8 load factor, times the 2× headroom, plus the
/// sweep-ring slot; rounded up. hashbrown's bucket count is a power of two,
/// so a table whose `max_entries` is not just below one pays up to twice
/// this; [`entries_for_bytes`] accounts for that exactly.
pub const fn bytes_per_entry() -> usize {
    ((ELEMENT_BYTES + 1) * 8 * HEADROOM).div_ceil(7) + size_of::<u64>()
}

/// hashbrown's bucket count for a requested capacity (`capacity_to_buckets`
/// in hashbrown 0.15's `raw/mod.rs`, for elements of at least 4 bytes).
fn buckets_for(max_entries: usize) -> usize {
    match max_entries {
        0 => 0,
        1..=3 => 4,
        4..=7 => 8,
        8..=14 => 16,
        n => (n.saturating_mul(8) / 7).next_power_of_two(),
    }
}

/// Bytes [`Conntrack::new`] allocates for `max_entries` (exact on x86-64).
pub fn allocation_for_entries(max_entries: usize) -> usize {
    let buckets = buckets_for(max_entries.saturating_mul(HEADROOM));
    let table = if buckets == 0 {
        0
    } else {
        (buckets * ELEMENT_BYTES).next_multiple_of(GROUP_WIDTH) + buckets + GROUP_WIDTH
    };
    table + max_entries * size_of::<u64>()
}

/// The largest `max_entries` whose table fits in `bytes` (for example, how
/// many flows a core can track in 1 GiB). hashbrown sizes its buckets in
/// powers of two, so this is half the 7/8 capacity of the largest bucket
/// count that fits.
pub fn entries_for_bytes(bytes: usize) -> usize {
    let mut best = 0;
    let mut buckets = 16usize;
    loop {
        let entries = buckets / 8 * 7 / HEADROOM;
        if allocation_for_entries(entries) > bytes {
            break;
        }
        best = entries;
        match buckets.checked_mul(2) {
            Some(b) => buckets = b,
            None => break,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: u64 = NANOS_PER_SEC;

    fn key(n: u32) -> FlowKey {
        FlowKey::v4(
            Ipv4Addr::from(0x0a00_0000 | (n >> 16)),
            Ipv4Addr::new(192, 0, 2, 1),
            n as u16,
            80,
            proto::TCP,
        )
    }

    fn config(max_entries: usize) -> ConntrackConfig {
        ConntrackConfig {
            max_entries,
            timeouts: Timeouts::default(),
            new_flow_rate: None,
        }
    }

    fn tcp_entry(backend: u32) -> Entry {
        Entry::new(ConnState::SynSent, backend, 1, 0)
    }

    #[test]
    fn sizes() {
        assert_eq!(size_of::<FlowKey>(), 38);
        assert_eq!(size_of::<Entry>(), 24);
        assert_eq!(size_of::<(FlowKey, Entry)>(), 64);
        assert_eq!(bytes_per_entry(), 157);
    }

    #[test]
    fn allocation_prediction_matches_hashbrown() {
        for n in [
            1, 3, 4, 7, 8, 14, 15, 100, 896, 897, 1000, 1792, 1793, 65_536,
        ] {
            let t = Conntrack::new(&config(n));
            assert_eq!(
                t.allocation_bytes(),
                allocation_for_entries(n),
                "max_entries {n}"
            );
        }
        assert_eq!(allocation_for_entries(0), 0);
    }

    #[test]
    fn entries_for_bytes_fits() {
        for budget in [0, 100, 10_000, 1 << 20, 3 << 20] {
            let n = entries_for_bytes(budget);
            assert!(allocation_for_entries(n) <= budget, "{budget}: {n}");
            if n > 0 {
                let t = Conntrack::new(&config(n));
                assert!(t.allocation_bytes() <= budget);
            }
            // One more entry needs the next power of two of buckets.
            assert!(allocation_for_entries(n + 1) > budget || n == 0);
        }
        // The number quoted in docs: flows per core in 1 GiB.
        assert_eq!(entries_for_bytes(1 << 30), 3_670_016);
        assert_eq!(allocation_for_entries(3_670_016), 574_619_664);
        assert_eq!(entries_for_bytes(1_200_000_000), 7_340_032);
    }

    /// One step of a state-machine table: flags of the packet, its direction,
    /// and the state expected after it.
    type Step = (TcpFlags, Direction, ConnState);

    #[test]
    fn tcp_state_transitions() {
        use ConnState::*;
        use Direction::{Original as O, Reply as R};
        const SYN: TcpFlags = TcpFlags::SYN;
        const ACK: TcpFlags = TcpFlags::ACK;
        const FIN: TcpFlags = TcpFlags::FIN;
        const RST: TcpFlags = TcpFlags::RST;
        let synack = SYN | ACK;
        let finack = FIN | ACK;
        let rstack = RST | ACK;
        let data = ACK | TcpFlags::PSH;
        let cases: &[(&str, &[Step], u64)] = &[
            ("SYN only", &[(SYN, O, SynSent)], 30),
            (
                "SYN retransmitted",
                &[(SYN, O, SynSent), (SYN, O, SynSent)],
                30,
            ),
            (
                "NAT handshake",
                &[
                    (SYN, O, SynSent),
                    (synack, R, SynSent),
                    (ACK, O, Established),
                ],
                3600,
            ),
            (
                "DSR handshake (client side only)",
                &[(SYN, O, SynSent), (ACK, O, Established)],
                3600,
            ),
            (
                "data after handshake",
                &[
                    (SYN, O, SynSent),
                    (ACK, O, Established),
                    (data, R, Established),
                ],
                3600,
            ),
            (
                "SYN on established stays",
                &[
                    (SYN, O, SynSent),
                    (ACK, O, Established),
                    (SYN, O, Established),
                ],
                3600,
            ),
            (
                "client closes",
                &[
                    (SYN, O, SynSent),
                    (ACK, O, Established),
                    (finack, O, Closing),
                    (finack, R, Closing),
                    (ACK, O, Closing),
                ],
                120,
            ),
            (
                "server closes",
                &[
                    (SYN, O, SynSent),
                    (ACK, O, Established),
                    (finack, R, Closing),
                    (data, O, Closing),
                ],
                120,
            ),
            (
                "RST from client",
                &[(SYN, O, SynSent), (ACK, O, Established), (RST, O, Closed)],
                10,
            ),
            (
                "RST from backend refuses SYN",
                &[(SYN, O, SynSent), (rstack, R, Closed)],
                10,
            ),
            (
                "RST while closing",
                &[(SYN, O, SynSent), (FIN, O, Closing), (RST, R, Closed)],
                10,
            ),
            (
                "FIN after RST stays closed",
                &[(SYN, O, SynSent), (RST, O, Closed), (finack, R, Closed)],
                10,
            ),
            (
                "ACK after RST stays closed",
                &[(SYN, O, SynSent), (RST, O, Closed), (ACK, O, Closed)],
                10,
            ),
            (
                "tuple reused after close",
                &[
                    (SYN, O, SynSent),
                    (ACK, O, Established),
                    (FIN, O, Closing),
                    (SYN, O, SynSent),
                ],
                30,
            ),
            (
                "tuple reused after RST",
                &[(SYN, O, SynSent), (RST, R, Closed), (SYN, O, SynSent)],
                30,
            ),
            (
                "SYN from the reply side does not reopen",
                &[(SYN, O, SynSent), (RST, O, Closed), (SYN, R, Closed)],
                10,
            ),
            (
                "SYN-ACK does not reopen",
                &[(SYN, O, SynSent), (FIN, O, Closing), (synack, O, Closing)],
                120,
            ),
            (
                "no flags",
                &[(SYN, O, SynSent), (TcpFlags::NONE, O, SynSent)],
                30,
            ),
        ];
        let t = Timeouts::default();
        for (desc, steps, timeout_s) in cases {
            let mut e = Entry::new(initial_state(proto::TCP, steps[0].0), 0, 0, 0);
            assert_eq!(e.state(), steps[0].2, "{desc}: initial");
            for (i, &(flags, dir, want)) in steps.iter().enumerate().skip(1) {
                e.observe_tcp(flags, dir, i as u64);
                assert_eq!(e.state(), want, "{desc}: step {i} ({flags:?} {dir:?})");
            }
            assert_eq!(t.for_state(e.state()), timeout_s * S, "{desc}: timeout");
        }
        // UDP never changes state.
        let mut u = Entry::new(initial_state(proto::UDP, TcpFlags::NONE), 0, 0, 0);
        u.observe_tcp(TcpFlags::RST, Direction::Original, 1);
        assert_eq!(u.state(), Udp);
        assert_eq!(initial_state(proto::TCP, ACK), Established);
    }

    #[test]
    fn may_create_rule() {
        let cases: &[(&str, u8, TcpFlags, bool)] = &[
            ("bare SYN", proto::TCP, TcpFlags::SYN, true),
            (
                "SYN with ECN setup",
                proto::TCP,
                TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR,
                true,
            ),
            ("SYN-ACK", proto::TCP, TcpFlags::SYN | TcpFlags::ACK, false),
            ("RST", proto::TCP, TcpFlags::RST, false),
            ("SYN+RST", proto::TCP, TcpFlags::SYN | TcpFlags::RST, false),
            ("SYN+FIN", proto::TCP, TcpFlags::SYN | TcpFlags::FIN, false),
            ("ACK", proto::TCP, TcpFlags::ACK, false),
            ("FIN-ACK", proto::TCP, TcpFlags::FIN | TcpFlags::ACK, false),
            ("no flags", proto::TCP, TcpFlags::NONE, false),
            ("UDP", proto::UDP, TcpFlags::NONE, true),
            ("UDP ignores flags", proto::UDP, TcpFlags::RST, true),
            ("ICMP", proto::ICMP, TcpFlags::NONE, true),
        ];
        for &(desc, p, flags, want) in cases {
            assert_eq!(may_create(p, flags), want, "{desc}");
        }
    }

    #[test]
    fn insert_lookup_refreshes_and_observes() {
        let mut ct = Conntrack::new(&config(16));
        let k = key(1);
        assert!(ct.lookup(&k, 0).is_none());
        assert_eq!(
            ct.insert(k, Entry::new(ConnState::SynSent, 7, 3, 0xabcd), 10),
            InsertVerdict::Inserted
        );
        let e = ct.lookup(&k, 20).expect("present");
        assert_eq!(
            (e.backend, e.service, e.payload, e.last_seen()),
            (7, 3, 0xabcd, 20)
        );
        e.observe_tcp(TcpFlags::ACK, Direction::Original, 20);
        e.flags = 0x5;
        assert_eq!(
            ct.get(&k, 21).map(|e| (e.state(), e.flags)),
            Some((ConnState::Established, 0x5))
        );
        assert!(ct.lookup(&k.reversed(), 21).is_none());
        assert_eq!(ct.len(), 1);
    }

    #[test]
    fn expiry_honours_per_state_timeouts() {
        let t = Timeouts::default();
        let mut ct = Conntrack::new(&config(64));
        let states = [
            ConnState::SynSent,
            ConnState::Established,
            ConnState::Closing,
            ConnState::Closed,
            ConnState::Udp,
        ];
        let t0 = 1_000 * S;
        for (i, &s) in states.iter().enumerate() {
            assert_eq!(
                ct.insert(key(i as u32), Entry::new(s, 0, 0, 0), t0),
                InsertVerdict::Inserted
            );
        }
        for (i, &s) in states.iter().enumerate() {
            let timeout = t.for_state(s);
            assert!(
                ct.get(&key(i as u32), t0 + timeout - 1).is_some(),
                "{s:?} alive just before"
            );
            assert!(
                ct.get(&key(i as u32), t0 + timeout).is_none(),
                "{s:?} gone at deadline"
            );
            assert_eq!(
                ct.get(&key(i as u32), t0).unwrap().deadline(&t),
                t0 + timeout
            );
        }
        // The sweep reclaims exactly the ones past their deadline.
        assert_eq!(ct.expire(t0 + 60 * S, 100), 2); // Closed (10 s), SynSent (30 s)
        assert_eq!(ct.len(), 3);
        assert_eq!(ct.expire(t0 + 120 * S, 100), 2); // Closing, Udp
        assert_eq!(ct.expire(t0 + 3599 * S, 100), 0);
        assert_eq!(ct.expire(t0 + 3600 * S, 100), 1);
        assert!(ct.is_empty());
        assert_eq!(ct.counters().expired, 5);
    }

    #[test]
    fn lookup_of_expired_entry_misses_and_does_not_revive() {
        let mut ct = Conntrack::new(&config(16));
        ct.insert(key(1), tcp_entry(1), 0);
        assert!(ct.lookup(&key(1), 30 * S).is_none());
        assert_eq!(ct.len(), 1, "still held until swept");
        assert!(
            ct.lookup(&key(1), 31 * S).is_none(),
            "a miss does not refresh"
        );
        // A new SYN reuses the slot, counting the old flow as expired.
        assert_eq!(
            ct.insert(key(1), tcp_entry(2), 31 * S),
            InsertVerdict::Inserted
        );
        assert_eq!(ct.lookup(&key(1), 32 * S).map(|e| e.backend), Some(2));
        assert_eq!(ct.len(), 1);
        assert_eq!(ct.counters().expired, 1);
        assert_eq!(ct.counters().replaced, 0);
        assert_eq!(ct.expire(32 * S, 10), 0);
    }

    #[test]
    fn refreshed_entries_survive_the_sweep() {
        let mut ct = Conntrack::new(&config(16));
        ct.insert(key(1), tcp_entry(1), 0);
        ct.insert(key(2), tcp_entry(2), 0);
        ct.lookup(&key(2), 20 * S).unwrap();
        assert_eq!(ct.expire(40 * S, 10), 1);
        assert!(ct.get(&key(2), 40 * S).is_some());
        assert_eq!(ct.expire(50 * S, 10), 1);
        assert!(ct.is_empty());
    }

    #[test]
    fn expire_is_bounded_by_budget() {
        let mut ct = Conntrack::new(&config(1000));
        for i in 0..1000 {
            ct.insert(key(i), Entry::new(ConnState::Udp, 0, 0, 0), 0);
        }
        // Half of them stay alive.
        for i in (0..1000).step_by(2) {
            ct.lookup(&key(i), 100 * S).unwrap();
        }
        let now = 150 * S;
        let mut calls = 0;
        let mut reclaimed = 0;
        while reclaimed < 500 {
            let n = ct.expire(now, 7);
            assert!(n <= 7);
            reclaimed += n;
            calls += 1;
            assert!(calls <= 1000 / 7 + 1, "one pass over the ring suffices");
        }
        assert_eq!(ct.len(), 500);
        assert_eq!(ct.expire(now, 1000), 0);
        assert_eq!(ct.expire(now, 0), 0);
        assert_eq!(ct.len(), 500);
    }

    #[test]
    fn full_table_refuses_new_flows_and_keeps_old_ones() {
        let mut ct = Conntrack::new(&config(8));
        for i in 0..8 {
            assert_eq!(ct.insert(key(i), tcp_entry(i), 0), InsertVerdict::Inserted);
        }
        assert_eq!(
            ct.insert(key(100), tcp_entry(100), 1),
            InsertVerdict::TableFull
        );
        assert_eq!(
            ct.insert(key(101), tcp_entry(101), 1),
            InsertVerdict::TableFull
        );
        assert_eq!(ct.counters().table_full, 2);
        assert_eq!(ct.counters().table_full_tombstones, 0);
        for i in 0..8 {
            assert_eq!(ct.lookup(&key(i), 2).map(|e| e.backend), Some(i));
        }
        assert!(ct.lookup(&key(100), 2).is_none());
        // Replacing an existing key needs no room.
        assert_eq!(ct.insert(key(3), tcp_entry(33), 3), InsertVerdict::Inserted);
        assert_eq!(ct.counters().replaced, 1);
        // Once entries expire, insert reclaims them itself.
        assert_eq!(
            ct.insert(key(100), tcp_entry(100), 40 * S),
            InsertVerdict::Inserted
        );
        assert_eq!(ct.len(), 1);
    }

    #[test]
    fn zero_capacity_is_always_full() {
        let mut ct = Conntrack::new(&config(0));
        assert_eq!(ct.insert(key(1), tcp_entry(1), 0), InsertVerdict::TableFull);
        assert_eq!(ct.expire(0, 10), 0);
        assert_eq!(ct.allocation_bytes(), 0);
    }

    #[test]
    fn remove_is_immediate_for_lookups_and_reclaimed_by_the_sweep() {
        let mut ct = Conntrack::new(&config(4));
        ct.insert(key(1), tcp_entry(1), 0);
        ct.insert(key(2), tcp_entry(2), 0);
        assert_eq!(ct.remove(&key(1), 1).map(|e| e.backend), Some(1));
        assert!(ct.lookup(&key(1), 1).is_none());
        assert!(ct.remove(&key(1), 1).is_none());
        assert!(ct.remove(&key(9), 1).is_none());
        assert_eq!(ct.len(), 2);
        assert_eq!(ct.expire(1, 10), 1);
        assert_eq!(ct.len(), 1);
        let c = ct.counters();
        assert_eq!((c.removed, c.expired), (1, 0));
        // Remove then re-insert before the sweep: the slot is reused.
        ct.remove(&key(2), 2);
        assert_eq!(ct.insert(key(2), tcp_entry(22), 2), InsertVerdict::Inserted);
        assert_eq!(ct.lookup(&key(2), 3).map(|e| e.backend), Some(22));
        assert_eq!(ct.expire(4, 10), 0);
        assert_eq!(ct.len(), 1);
        ct.clear();
        assert!(ct.is_empty());
        assert!(ct.lookup(&key(2), 3).is_none());
        assert_eq!(ct.insert(key(2), tcp_entry(2), 5), InsertVerdict::Inserted);
    }

    #[test]
    fn new_entry_rate_limit() {
        let mut ct = Conntrack::new(&ConntrackConfig {
            max_entries: 1000,
            timeouts: Timeouts::default(),
            new_flow_rate: Some(RateLimit {
                per_sec: 10,
                burst: 5,
            }),
        });
        let t0 = 1_000 * S;
        let mut n = 0u32;
        let mut try_insert = |ct: &mut Conntrack, now| {
            n += 1;
            ct.insert(key(n), tcp_entry(0), now)
        };
        for _ in 0..5 {
            assert_eq!(try_insert(&mut ct, t0), InsertVerdict::Inserted);
        }
        assert_eq!(try_insert(&mut ct, t0), InsertVerdict::RateLimited);
        // Existing flows are unaffected.
        assert!(ct.lookup(&key(1), t0).is_some());
        // 10/s: one token per 100 ms.
        assert_eq!(
            try_insert(&mut ct, t0 + 99_999_999),
            InsertVerdict::RateLimited
        );
        assert_eq!(
            try_insert(&mut ct, t0 + 100_000_000),
            InsertVerdict::Inserted
        );
        assert_eq!(
            try_insert(&mut ct, t0 + 100_000_000),
            InsertVerdict::RateLimited
        );
        // A long pause refills only up to the burst.
        let later = t0 + 3600 * S;
        for _ in 0..5 {
            assert_eq!(try_insert(&mut ct, later), InsertVerdict::Inserted);
        }
        assert_eq!(try_insert(&mut ct, later), InsertVerdict::RateLimited);
        let c = *ct.counters();
        assert_eq!((c.inserted, c.rate_limited), (11, 4));
        assert_eq!(ct.len(), 11);
    }

    /// Deterministic xorshift for churn tests.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Long churn at the table's limit: the allocation never changes, the
    /// ring stays in step with the table, and every flow the table holds is
    /// found.
    #[test]
    fn no_growth_under_churn() {
        // 2 · 1792 · 8/7 = 4096 buckets: max_entries is exactly half of
        // hashbrown's capacity, the tightest case. 1000 leaves slack.
        for max in [1792usize, 1000] {
            let mut ct = Conntrack::new(&ConntrackConfig {
                max_entries: max,
                timeouts: Timeouts {
                    udp: 50 * S,
                    ..Timeouts::default()
                },
                new_flow_rate: None,
            });
            let bytes = ct.allocation_bytes();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut live = std::collections::HashMap::new();
            // Arrivals at 1.2 · max_entries per 50 s lifetime: the table runs full.
            let dt = 50 * S / (max as u64 * 6 / 5);
            for step in 0..200_000u64 {
                let now = step * dt;
                let k = key(rng(&mut seed) as u32);
                let v = ct.insert(k, Entry::new(ConnState::Udp, step as u32, 0, 0), now);
                if v == InsertVerdict::Inserted {
                    live.insert(k, step as u32);
                }
                ct.expire(now, 4);
                assert!(ct.len() <= max);
                assert_eq!(ct.sweep.len, ct.len());
                if step % 10_000 == 0 {
                    live.retain(|k, b| match ct.get(k, now) {
                        Some(e) => {
                            assert_eq!(e.backend, *b);
                            true
                        }
                        None => false,
                    });
                }
            }
            assert_eq!(ct.allocation_bytes(), bytes);
            assert_eq!(ct.capacity(), max);
            let c = ct.counters();
            assert!(c.inserted > 100_000, "{c:?}");
            assert!(c.table_full > 0, "the test must reach the limit: {c:?}");
            assert_eq!(c.table_full_tombstones, 0, "{c:?}");
        }
    }
}
