//! Userspace TCP on the worker: one smoltcp `Interface` (`Medium::Ip`) with
//! exactly one socket per connection, picked by Sluice's own table, and the
//! device glue between smoltcp and DPDK mbufs (docs/L7-DESIGN.md).
//!
//! smoltcp never sees a packet that is not for the socket it is given, and a
//! connection's interface is polled only when it has a packet, when the
//! proxy wrote to or read from its socket, or when its timer (the
//! interface's `poll_at`) is due. Per-packet cost therefore does not depend
//! on how many connections the worker holds.
//!
//! Egress: smoltcp writes the IP packet straight into a fresh mbuf, after
//! room for the largest L2 header; Sluice then routes it (longest prefix),
//! resolves the next hop in the worker's neighbor table and writes the
//! Ethernet header, as for every other packet it sends. A neighbor miss
//! turns the mbuf into a solicitation and TCP retransmits. No path holds an
//! mbuf without an owner whose `Drop` frees it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use hashbrown::HashMap;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::net::counters::Counter;
use crate::net::output::Egress;

/// Room left before the IP header of an originated packet: Ethernet plus
/// one VLAN tag.
const L2_ROOM: usize = 18;

/// Identifies a connection from Sluice's side: our address and port, the
/// peer's address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
}

/// Who drives a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A client connection; its HTTP session.
    Client { session: u32, listener: u16 },
    /// A connection to a backend, used by a session or idle in the pool
    /// (`session == NONE`).
    Upstream { session: u32, backend: u32 },
    /// A health-check probe.
    Health { backend: u32 },
    /// Closed by Sluice, waiting for smoltcp to finish (FIN handshake,
    /// TIME-WAIT); freed when the socket reaches `Closed`.
    Orphan { listener: Option<u16> },
}

pub const NONE: u32 = u32::MAX;

/// One connection: its own interface and socket set of one socket.
pub struct Conn {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub handle: SocketHandle,
    pub key: Key,
    pub owner: Owner,
    /// Until the handshake completes (client side).
    pub half_open: bool,
    /// When the connection was created (ns).
    pub born_ns: u64,
    /// When Sluice gave the connection up (ns), for orphans.
    pub orphaned_ns: u64,
    /// Deadline (ms) of this connection's earliest timer-heap entry.
    armed_ms: u64,
    /// The TLS layer of a client connection on an `https` listener, from
    /// the end of the TCP handshake on.
    pub tls: Option<Box<super::tls::Tls>>,
    /// Polls so far, and as many at the idle sweep's last visit: equal
    /// means nothing happened in between (no packet, no timer, no write).
    polls: u32,
    swept_polls: u32,
    /// The send buffer's pages were given back since the last poll.
    tx_released: bool,
    /// Segments went in by [`Conns::ingress`] and the interface has not
    /// been polled for egress since (see [`Conns::owes_egress`]).
    egress_owed: bool,
}

impl Conn {
    #[inline]
    pub fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    #[inline]
    pub fn sock(&self) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket>(self.handle)
    }
}

pub use crate::wire::tcp::write_reset;

impl Egress<'_> {
    /// Answer a segment that has no connection with a RST.
    pub fn reset(&mut self, pkt: &[u8]) -> bool {
        self.send_built(|out| write_reset(pkt, out))
    }

    /// Send the IP packet `write` puts in a fresh mbuf (it returns the
    /// length written, None to send nothing).
    pub fn send_built(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.send_built_as(Counter::l7_tx_segments, write)
    }

    /// As [`Egress::send_built`], counted as `counter` once queued.
    pub fn send_built_as(
        &mut self,
        counter: Counter,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(mut m) = self.pool.alloc() else {
            return false;
        };
        let written = {
            let (buf, off, _) = m.buffer_mut();
            let off = off.max(L2_ROOM);
            write(&mut buf[off..]).map(|len| (off, len))
        };
        match written {
            Some((off, len)) => {
                self.send_as(m, off, len, counter);
                true
            }
            None => false,
        }
    }
}

/// A received segment waiting for the end of the burst: the IP packet is
/// `m`'s bytes `l3..end`, for connection `slot`, the `seq`-th of the
/// burst (see [`Conns::ingress`]).
pub struct Pending {
    pub slot: u32,
    pub seq: u32,
    l3: u32,
    end: u32,
    m: crate::dpdk::Mbuf,
}

impl Pending {
    pub fn new(slot: u32, seq: u32, m: crate::dpdk::Mbuf, l3: usize, end: usize) -> Pending {
        Pending {
            slot,
            seq,
            l3: l3 as u32,
            end: end as u32,
            m,
        }
    }
}

/// What a poll receives: one packet (or none), or a connection's
/// segments of one burst.
enum RxSrc<'a> {
    One(Option<&'a [u8]>),
    Queue(std::slice::IterMut<'a, Pending>),
}

/// The device of one poll: the received packets, and the worker's egress
/// path.
struct Dev<'a, 'e> {
    rx: RxSrc<'a>,
    /// Whatever smoltcp transmits in this poll is thrown away (the
    /// SYN-ACK a SYN cookie's synthetic SYN draws: the client has had the
    /// cookie's own).
    discard: bool,
    eg: &'a mut Egress<'e>,
    mtu: usize,
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a, 'e> {
    eg: &'a mut Egress<'e>,
    /// Write into a scratch buffer and send nothing ([`Dev::discard`]).
    discard: bool,
    /// Taken in `Device::transmit` (so that an empty pool makes smoltcp
    /// keep the data); `None` for the token that comes with a received
    /// packet, which allocates in `consume`.
    m: Option<crate::dpdk::Mbuf>,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.discard {
            let mut scratch = [0u8; 128];
            return match scratch.get_mut(..len) {
                Some(b) => f(b),
                None => f(&mut vec![0u8; len]),
            };
        }
        // A token frees what it took: the mbuf goes to the tx buffer or is
        // dropped (freed) here. If there is none (or the packet does not
        // fit), smoltcp's bytes go to a scratch buffer and the segment is
        // lost: TCP retransmits it.
        if let Some(mut m) = self.m.or_else(|| self.eg.pool.alloc()) {
            let fits = {
                let (buf, off, _) = m.buffer_mut();
                off.max(L2_ROOM) + len <= buf.len()
            };
            if fits {
                let (r, off) = {
                    let (buf, off, _) = m.buffer_mut();
                    let off = off.max(L2_ROOM);
                    (f(&mut buf[off..off + len]), off)
                };
                self.eg.send(m, off, len);
                return r;
            }
        }
        self.eg.counters.inc(Counter::drop_l7_tx_error);
        let mut scratch = [0u8; 2048];
        if len <= scratch.len() {
            f(&mut scratch[..len])
        } else {
            f(&mut vec![0u8; len])
        }
    }
}

impl<'e> Device for Dev<'_, 'e> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, 'e>
    where
        Self: 'b;

    fn receive(&mut self, _t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p: &[u8] = match &mut self.rx {
            RxSrc::One(p) => p.take()?,
            RxSrc::Queue(it) => loop {
                let q = it.next()?;
                let (l3, end) = (q.l3 as usize, q.end as usize);
                let (buf, _, _) = q.m.buffer_mut();
                if let Some(p) = buf.get(l3..end) {
                    break p;
                }
            },
        };
        Some((
            Rx(p),
            Tx {
                eg: self.eg,
                discard: self.discard,
                m: None,
            },
        ))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Self::TxToken<'_>> {
        if self.discard {
            return Some(Tx {
                eg: self.eg,
                discard: true,
                m: None,
            });
        }
        let m = self.eg.pool.alloc()?;
        Some(Tx {
            eg: self.eg,
            discard: false,
            m: Some(m),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}

/// Options of a new connection's socket.
#[derive(Clone, Copy, Debug)]
pub struct SocketOpts {
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// smoltcp's own abort timer: nothing heard from the peer for this
    /// long (smoltcp arms it whenever the socket is open, idle or not).
    /// Used while shaking hands, in the pool, for probes and for orphans;
    /// a connection a session drives has it off, the session's deadlines
    /// rule instead.
    pub timeout_ms: u64,
}

/// A worker's L7 connections: a slab of boxed connections, an index by
/// [`Key`], and a heap of timer deadlines.
pub struct Conns {
    slots: Vec<Option<Box<Conn>>>,
    free: Vec<u32>,
    index: HashMap<Key, u32>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Per-worker generator for interface seeds (ISNs) and ephemeral
    /// choices; seeded from the OS at start.
    rng: u64,
    mtu: usize,
    /// The idle sweep: the next slot to visit, and when its pass began.
    sweep_next: usize,
    sweep_pass_ns: u64,
}

/// A pass of the idle sweep starts at most this often: a connection is
/// released after one to two passes with nothing happening.
pub const IDLE_SWEEP_PASS_NS: u64 = 1_000_000_000;

/// Milliseconds of a smoltcp instant.
#[inline]
pub fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

impl Conns {
    pub fn new(capacity: usize, mtu: usize, seed: u64) -> Conns {
        Conns {
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            index: HashMap::with_capacity(capacity),
            timers: BinaryHeap::with_capacity(capacity),
            rng: seed | 1,
            mtu,
            sweep_next: 0,
            sweep_pass_ns: 0,
        }
    }

    /// splitmix64.
    pub fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    #[inline]
    pub fn find(&self, key: &Key) -> Option<u32> {
        self.index.get(key).copied()
    }

    #[inline]
    pub fn get(&mut self, slot: u32) -> Option<&mut Conn> {
        self.slots.get_mut(slot as usize)?.as_deref_mut()
    }

    #[inline]
    pub fn get_ref(&self, slot: u32) -> Option<&Conn> {
        self.slots.get(slot as usize)?.as_deref()
    }

    /// Two different connections at once (a session's client and upstream
    /// sides).
    pub fn pair(&mut self, a: u32, b: u32) -> Option<(&mut Conn, &mut Conn)> {
        let [x, y] = self.slots.get_disjoint_mut([a as usize, b as usize]).ok()?;
        Some((x.as_deref_mut()?, y.as_deref_mut()?))
    }

    fn new_conn(
        &mut self,
        key: Key,
        owner: Owner,
        opts: SocketOpts,
        now_ns: u64,
        eg: &mut Egress<'_>,
    ) -> Conn {
        let seed = self.random();
        self.new_conn_seeded(key, owner, opts, now_ns, eg, seed)
    }

    fn new_conn_seeded(
        &mut self,
        key: Key,
        owner: Owner,
        opts: SocketOpts,
        now_ns: u64,
        eg: &mut Egress<'_>,
        seed: u64,
    ) -> Conn {
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut dev = Dev {
            rx: RxSrc::One(None),
            discard: false,
            eg,
            mtu: self.mtu,
        };
        let mut iface = Interface::new(cfg, &mut dev, instant(now_ns));
        // Prefix length 0: every destination is "on link" for smoltcp, which
        // then needs no route; Sluice routes each packet itself.
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::from(key.local), 0));
        });
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; opts.rx_buffer]),
            tcp::SocketBuffer::new(vec![0u8; opts.tx_buffer]),
        );
        // The proxy writes whole heads and body runs: Nagle with delayed
        // ACKs would only stall request/response exchanges.
        s.set_nagle_enabled(false);
        s.set_timeout(Some(smoltcp::time::Duration::from_millis(opts.timeout_ms)));
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(s);
        Conn {
            iface,
            sockets,
            handle,
            key,
            owner,
            half_open: false,
            born_ns: now_ns,
            orphaned_ns: 0,
            armed_ms: u64::MAX,
            tls: None,
            polls: 0,
            swept_polls: 0,
            tx_released: false,
            egress_owed: false,
        }
    }

    fn insert(&mut self, conn: Conn) -> u32 {
        let key = conn.key;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(Box::new(conn));
                s
            }
            None => {
                self.slots.push(Some(Box::new(conn)));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// A listening socket for the SYN `key` (local = the listener's
    /// address and port) is created; the caller then delivers the SYN.
    pub fn accept(
        &mut self,
        key: Key,
        owner: Owner,
        opts: SocketOpts,
        now_ns: u64,
        eg: &mut Egress<'_>,
    ) -> Option<u32> {
        let mut c = self.new_conn(key, owner, opts, now_ns, eg);
        c.socket().listen(key.lport).ok()?;
        c.half_open = true;
        Some(self.insert(c))
    }

    /// A connection opened by a valid SYN cookie `cookie`
    /// (super::syncookie): a listening socket whose ISN will be the cookie
    /// is fed `syn` (rebuilt from the cookie) in one poll, whose SYN-ACK
    /// is thrown away, and then `ack` (the client's segment, with or
    /// without data) in a second poll. The caller checks that it is
    /// established.
    ///
    /// The SYN-ACK smoltcp sends (and believes the client got) is what
    /// makes it take data: until it has advertised a window, smoltcp's
    /// receive window is empty, and a segment with data in SYN-RECEIVED
    /// (the client's handshake ACK lost, its request the first segment
    /// to arrive) is answered with a bare ACK and leaves the socket in
    /// SYN-RECEIVED; an established one refuses the first request the
    /// same way until the client retransmits it. The SYN-ACK thrown away
    /// matches the cookie's (same ISN and acknowledgment, no window
    /// scale, the same receive buffer as window).
    #[allow(clippy::too_many_arguments)]
    pub fn accept_cookie(
        &mut self,
        key: Key,
        owner: Owner,
        opts: SocketOpts,
        cookie: u32,
        syn: &[u8],
        ack: &[u8],
        now_ns: u64,
        eg: &mut Egress<'_>,
    ) -> Option<u32> {
        let seed = super::syncookie::seed_for_isn(cookie, self.random());
        let mut c = self.new_conn_seeded(key, owner, opts, now_ns, eg, seed);
        c.socket().listen(key.lport).ok()?;
        c.half_open = true;
        let slot = self.insert(c);
        let mtu = self.mtu;
        let c = self.slots[slot as usize].as_deref_mut()?;
        let mut dev = Dev {
            rx: RxSrc::One(Some(syn)),
            discard: true,
            eg,
            mtu,
        };
        c.iface.poll(instant(now_ns), &mut dev, &mut c.sockets);
        // The client's segment, in a poll that also re-arms the timer.
        self.poll(slot, Some(ack), now_ns, eg);
        Some(slot)
    }

    /// An active open from `key.local:key.lport` to `key.remote:key.rport`.
    pub fn connect(
        &mut self,
        key: Key,
        owner: Owner,
        opts: SocketOpts,
        now_ns: u64,
        eg: &mut Egress<'_>,
    ) -> Option<u32> {
        let mut c = self.new_conn(key, owner, opts, now_ns, eg);
        let Conn {
            iface,
            sockets,
            handle,
            ..
        } = &mut c;
        sockets
            .get_mut::<tcp::Socket>(*handle)
            .connect(
                iface.context(),
                (IpAddress::from(key.remote), key.rport),
                (IpAddress::from(key.local), key.lport),
            )
            .ok()?;
        let slot = self.insert(c);
        self.poll(slot, None, now_ns, eg);
        Some(slot)
    }

    /// Poll one connection's interface, with `rx` (an IP packet) if any,
    /// and re-arm its timer. Returns false if the slot is empty.
    pub fn poll(&mut self, slot: u32, rx: Option<&[u8]>, now_ns: u64, eg: &mut Egress<'_>) -> bool {
        let mtu = self.mtu;
        let Some(c) = self.get(slot) else {
            return false;
        };
        let now = instant(now_ns);
        let mut dev = Dev {
            rx: RxSrc::One(rx),
            discard: false,
            eg,
            mtu,
        };
        c.iface.poll(now, &mut dev, &mut c.sockets);
        c.polls = c.polls.wrapping_add(1);
        c.egress_owed = false;
        if let Some(at) = c.iface.poll_at(now, &c.sockets) {
            // "Now" (e.g. data that could not go out for want of an mbuf)
            // means the next millisecond: never a deadline that `due` would
            // hand back within the same run.
            let ms = (at.total_micros().max(0) as u64)
                .div_ceil(1000)
                .max(now_ns / 1_000_000 + 1);
            if ms < c.armed_ms || c.armed_ms <= now_ns / 1_000_000 {
                c.armed_ms = ms;
                self.timers.push(Reverse((ms, slot)));
            }
        }
        true
    }

    /// Feed connection `slot` the segments `pkts` of one burst (all
    /// its own, in arrival order) without the egress half of a poll:
    /// whatever the socket has to send (its ACK, data the peer's ACK let
    /// out) waits for the poll that follows the session's step in the
    /// same loop iteration (or [`Conns::owes_egress`]). So a burst's
    /// segments of one connection cost one ACK, sent after the session
    /// has read them (with the window they free), and one egress pass,
    /// not one per segment. Returns false if the slot is empty.
    pub fn ingress(
        &mut self,
        slot: u32,
        pkts: &mut [Pending],
        now_ns: u64,
        eg: &mut Egress<'_>,
    ) -> bool {
        let mtu = self.mtu;
        let Some(c) = self.get(slot) else {
            return false;
        };
        let now = instant(now_ns);
        let mut dev = Dev {
            rx: RxSrc::Queue(pkts.iter_mut()),
            discard: false,
            eg,
            mtu,
        };
        while c.iface.poll_ingress_single(now, &mut dev, &mut c.sockets)
            != smoltcp::iface::PollIngressSingleResult::None
        {}
        c.egress_owed = true;
        c.polls = c.polls.wrapping_add(1);
        true
    }

    /// Whether `slot` took segments by [`Conns::ingress`] and has not been
    /// polled since: its owner's step did not poll it, so the engine must
    /// (an ACK, a SYN-ACK, or its timer to re-arm).
    pub fn owes_egress(&self, slot: u32) -> bool {
        self.get_ref(slot).is_some_and(|c| c.egress_owed)
    }

    /// Ask to be woken at `at_ns` (a session deadline).
    pub fn arm(&mut self, slot: u32, at_ns: u64) {
        let ms = at_ns.div_ceil(1_000_000);
        if let Some(c) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|c| c.as_deref_mut())
        {
            if ms < c.armed_ms || c.armed_ms <= at_ns / 1_000_000 {
                c.armed_ms = ms;
            }
            self.timers.push(Reverse((ms, slot)));
        }
    }

    /// Pop one connection whose timer is due at `now_ns`.
    pub fn due(&mut self, now_ns: u64) -> Option<u32> {
        let now_ms = now_ns / 1_000_000;
        loop {
            let &Reverse((ms, slot)) = self.timers.peek()?;
            if ms > now_ms {
                return None;
            }
            self.timers.pop();
            if let Some(c) = self
                .slots
                .get_mut(slot as usize)
                .and_then(|c| c.as_deref_mut())
            {
                if c.armed_ms <= ms {
                    c.armed_ms = u64::MAX;
                }
                return Some(slot);
            }
        }
    }

    /// Remove a connection (its socket is closed or aborted).
    pub fn remove(&mut self, slot: u32) -> Option<Box<Conn>> {
        let c = self.slots.get_mut(slot as usize)?.take()?;
        self.index.remove(&c.key);
        self.free.push(slot);
        Some(c)
    }

    /// One step of the idle sweep: visit up to `budget` slots and give
    /// back the send-buffer pages of every connection that has been quiet
    /// (not polled) since the previous visit and whose send ring is empty
    /// (everything sent was acknowledged, so the ring's contents are dead).
    /// The pages read as zero and cost nothing until the connection sends
    /// again (dpdk::pages). A keep-alive connection between requests thus
    /// keeps none of the response it last sent. Returns the number of
    /// buffers released.
    ///
    /// The receive buffer is left alone: smoltcp may hold out-of-order
    /// segments in it beyond its (empty) ring, and does not say so.
    pub fn sweep_idle(&mut self, now_ns: u64, budget: usize) -> usize {
        if self.sweep_next == 0 {
            if now_ns < self.sweep_pass_ns.saturating_add(IDLE_SWEEP_PASS_NS) {
                return 0;
            }
            self.sweep_pass_ns = now_ns;
        }
        let end = (self.sweep_next + budget).min(self.slots.len());
        let mut released = 0;
        for c in self.slots[self.sweep_next..end].iter_mut().flatten() {
            if c.polls != c.swept_polls {
                c.swept_polls = c.polls;
                c.tx_released = false;
                continue;
            }
            if c.tx_released {
                continue;
            }
            c.tx_released = true;
            let s = c.socket();
            // An empty ring restarts at offset 0, so the callback sees the
            // whole storage; it enqueues nothing.
            if s.send_queue() == 0
                && s.send(|buf| {
                    crate::dpdk::pages::discard_pages(buf);
                    (0, ())
                })
                .is_ok()
            {
                released += 1;
            }
        }
        self.sweep_next = if end >= self.slots.len() { 0 } else { end };
        released
    }

    pub fn timers_len(&self) -> usize {
        self.timers.len()
    }

    /// Every live slot (for shutdown and statistics; not on the packet path).
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u32)
    }
}

/// The TCP 4-tuple of an IP packet `pkt` (IPv4 or IPv6, no options or
/// extension headers: the classifier checked that), seen from Sluice:
/// (key, flags byte).
pub fn key_of(pkt: &[u8]) -> Option<(Key, u8)> {
    let (src, dst, l4): (IpAddr, IpAddr, usize) = match pkt.first()? >> 4 {
        4 => {
            let ihl = ((pkt[0] & 0x0f) as usize) * 4;
            if pkt.len() < 20 {
                return None;
            }
            (
                IpAddr::from(<[u8; 4]>::try_from(&pkt[12..16]).ok()?),
                IpAddr::from(<[u8; 4]>::try_from(&pkt[16..20]).ok()?),
                ihl,
            )
        }
        6 => {
            if pkt.len() < 40 {
                return None;
            }
            (
                IpAddr::from(<[u8; 16]>::try_from(&pkt[8..24]).ok()?),
                IpAddr::from(<[u8; 16]>::try_from(&pkt[24..40]).ok()?),
                40,
            )
        }
        _ => return None,
    };
    let t = pkt.get(l4..l4 + 20)?;
    let sport = u16::from_be_bytes([t[0], t[1]]);
    let dport = u16::from_be_bytes([t[2], t[3]]);
    Some((
        Key {
            local: dst,
            lport: dport,
            remote: src,
            rport: sport,
        },
        t[13],
    ))
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Packet, TcpPacket};

    /// An IPv4/TCP segment from 10.0.0.2:40000 to 10.0.0.1:80.
    fn segment(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload.len()];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[40..].copy_from_slice(payload);
        p
    }

    #[test]
    fn reset_of_an_ack_takes_its_sequence_from_the_ack() {
        let pkt = segment(TCP_ACK | 0x08, 1000, 5000, b"hello");
        let mut out = [0u8; 64];
        let n = write_reset(&pkt, &mut out).unwrap();
        assert_eq!(n, 40);
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dst_addr(), std::net::Ipv4Addr::new(10, 0, 0, 2));
        let tcp = TcpPacket::new_checked(&out[20..n]).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
        assert_eq!(tcp.seq_number(), 5000);
        assert!(tcp.rst() && !tcp.ack());
        assert!(tcp.verify_checksum_v4(
            &std::net::Ipv4Addr::new(10, 0, 0, 1),
            &std::net::Ipv4Addr::new(10, 0, 0, 2)
        ));
    }

    #[test]
    fn reset_of_a_fin_without_ack_acknowledges_it() {
        let pkt = segment(TCP_FIN, 7, 0, b"abc");
        let mut out = [0u8; 64];
        let n = write_reset(&pkt, &mut out).unwrap();
        let tcp = TcpPacket::new_checked(&out[20..n]).unwrap();
        assert_eq!(tcp.seq_number(), 0);
        assert_eq!(tcp.ack_number(), 7 + 3 + 1);
        assert!(tcp.rst() && tcp.ack());
    }

    #[test]
    fn resets_are_never_answered_and_short_segments_are_refused() {
        let mut out = [0u8; 64];
        assert_eq!(write_reset(&segment(TCP_RST, 1, 0, b""), &mut out), None);
        assert_eq!(
            write_reset(&segment(TCP_ACK, 1, 0, b"")[..30], &mut out),
            None
        );
        assert_eq!(write_reset(&[], &mut out), None);
    }

    #[test]
    fn key_of_reads_the_tuple_from_our_side() {
        let pkt = segment(TCP_SYN, 1, 0, b"");
        let (k, flags) = key_of(&pkt).unwrap();
        assert_eq!(flags, TCP_SYN);
        assert_eq!(k.local, std::net::IpAddr::from([10, 0, 0, 1]));
        assert_eq!((k.lport, k.rport), (80, 40000));
        assert!(key_of(&pkt[..30]).is_none());
    }
}
