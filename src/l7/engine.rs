//! A worker's L7 engine: client connections accepted on listeners, HTTP
//! sessions, upstream connections and their idle pool, timers, and the
//! health probes (worker 0 only).
//!
//! The worker hands every TCP segment for a listener or for one of the L7
//! connections to [`Engine::input`], which finds (or, for a SYN, makes) its
//! connection, keeps the segment and marks the connection touched. At the
//! end of each burst [`Engine::run`] feeds each touched connection all of
//! its segments of the burst in one ingress pass, polls the connections
//! whose timers are due, then steps the session of every touched
//! connection: the session moves bytes between its client and upstream
//! sockets, and the sockets it wrote to or read from are polled so that
//! data, ACKs and window updates leave in the same loop iteration (one ACK
//! per connection per burst; docs/L7-DESIGN.md section 11).

use std::net::IpAddr;
use std::sync::Arc;

use crate::dpdk::Mbuf;
use crate::l4::snat::SnatPorts;
use crate::net::counters::{
    Counter, L4Counters, WorkerCounters, BE_L7_5XX, BE_L7_FAILURES, BE_L7_INFLIGHT, BE_L7_REQUESTS,
};
use crate::net::output::Egress;
use crate::net::plane::Plane;
use crate::net::services::MAX_BACKENDS;

use super::balance::Balancer;
use super::health::{self, HealthState, Probe};
use super::http::HttpError;
use super::plane::CheckKind;
use super::router::RequestView;
use super::session::{BackendEvent, Cx, Env, Link, Opened, Release, Session, Side, Step};
use super::syncookie;
use super::tcp::{key_of, Conns, Key, Owner, Pending, SocketOpts, NONE, TCP_ACK, TCP_RST, TCP_SYN};
use super::tls::{send_room, Failure, SocketIo, Tls, TlsFacts, PLAIN_HTTP_ANSWER};

use smoltcp::socket::tcp::{self, State};

/// Everything a worker's engine is built from.
pub struct EngineSetup {
    pub worker: usize,
    pub mtu: usize,
    pub health: Arc<HealthState>,
    /// This worker runs the health probes.
    pub prober: bool,
    pub counters: Arc<WorkerCounters>,
    /// Per-backend counters (shared with L4).
    pub backends: Arc<L4Counters>,
    /// Bytes the worker's receive ring holds in full-size segments: the
    /// data all connections together may have in flight towards it (see
    /// [`Engine::rx_share`]).
    pub rx_budget: usize,
}

pub struct Engine {
    pub(super) conns: Conns,
    sessions: Vec<Option<Box<Live>>>,
    free_sessions: Vec<u32>,
    /// Segments received since the last [`Engine::run`], which feeds them
    /// to their connections (see [`Conns::ingress`]).
    pending: Vec<Pending>,
    /// Connections touched since the last [`Engine::run`].
    touched: Vec<u32>,
    touched_mark: Vec<bool>,
    /// Per backend id: idle upstream connections (most recent last).
    idle: Vec<Vec<u32>>,
    /// Connections in `idle`, all backends together.
    idle_total: usize,
    pub(super) balancer: Balancer,
    /// Retry tokens (the retry budget): each request adds its cluster's
    /// `retry_budget_percent` / 100, each retry spends one.
    pub(super) retry_tokens: f64,
    /// Per listener index: client connections, half-open ones.
    clients: Vec<u32>,
    half_open: Vec<u32>,
    /// Per listener index: when this worker last sent a SYN cookie (ns;
    /// 0: never). ACKs of no connection are checked for a cookie only
    /// within [`syncookie::LIFE_NS`] of it.
    cookies_at: Vec<u64>,
    /// Per listener index: TLS handshakes in progress.
    tls_handshaking: Vec<u32>,
    pub(super) health: Arc<HealthState>,
    prober: bool,
    probes: Vec<Probe>,
    last_probe_scan: u64,
    pub(super) counters: Arc<WorkerCounters>,
    pub(super) backends: Arc<L4Counters>,
    pub(super) request_seq: u64,
    /// See [`EngineSetup::rx_budget`].
    rx_budget: usize,
    /// When the idle sweep (tcp::Conns::sweep_idle) next takes a step.
    next_idle_sweep: u64,
}

/// A session and the connections it drives: its client connection and the
/// upstream connection of its current request (or `NONE`).
struct Live {
    session: Session,
    client: u32,
    upstream: u32,
    /// The client connection's TLS facts (for `Cx::tls`), taken when its
    /// handshake completed.
    tls: Option<Box<TlsFacts>>,
}

/// smoltcp's abort timer (see [`SocketOpts::timeout_ms`]) for connections
/// no session drives: handshakes, the idle pool (so an idle upstream
/// connection lives this long after its last segment), probes, orphans.
pub(super) const ABORT_AFTER_MS: u64 = 30_000;

/// The smallest receive buffer [`Engine::rx_share`] gives a connection:
/// the least `upstream_rx_buffer` a listener may configure, three
/// 1460-byte segments' window.
const MIN_RX_SHARE: usize = 4096;

/// Connections (all kinds) up to which [`Engine::rx_share`] lets the
/// windows add up to four receive rings.
const OVERCOMMIT_UNTIL: usize = 128;

/// An orphan (a connection Sluice closed) is reset after this long even if
/// its peer keeps it alive with bare ACKs.
const ORPHAN_MAX_NS: u64 = 60_000_000_000;

/// Turn smoltcp's abort timer on (`Some`) or off for `c`.
pub(super) fn abort_timer(c: &mut super::tcp::Conn, on: bool) {
    c.socket()
        .set_timeout(on.then(|| smoltcp::time::Duration::from_millis(ABORT_AFTER_MS)));
}

/// The cookie an ACK `pkt` of `key` carries and the MSS it stands for, if
/// valid at `now_ns` (None: its MAC only, for [`Engine::claims`], which
/// has no clock; [`Engine::input`] then checks its age).
fn cookie_of(key: &Key, pkt: &[u8], now_ns: Option<u64>) -> Option<(u32, u16)> {
    let (seq, ack, _, _) = syncookie::parse(pkt)?;
    let cookie = ack.wrapping_sub(1);
    let client_isn = seq.wrapping_sub(1);
    let k = syncookie::key();
    let mss = match now_ns {
        Some(now) => syncookie::validate(k, key, client_isn, cookie, now)?,
        None => syncookie::validate_any_time(k, key, client_isn, cookie)?,
    };
    Some((cookie, mss))
}

impl Engine {
    pub fn new(setup: EngineSetup) -> Engine {
        // The seed of initial sequence numbers and SNAT ports: predictable
        // values would let an off-path attacker inject segments, so no
        // silent fallback if the OS cannot provide randomness.
        let seed = getrandom::u64().expect("OS randomness (getrandom) for the L7 TCP seed")
            ^ (setup.worker as u64).wrapping_mul(0x9e37_79b9);
        Engine {
            conns: Conns::new(4096, setup.mtu, seed),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            pending: Vec::with_capacity(256),
            touched: Vec::with_capacity(256),
            touched_mark: Vec::new(),
            idle: vec![Vec::new(); MAX_BACKENDS],
            idle_total: 0,
            balancer: Balancer::new(MAX_BACKENDS, 64),
            retry_tokens: 10.0,
            clients: Vec::new(),
            half_open: Vec::new(),
            cookies_at: Vec::new(),
            tls_handshaking: Vec::new(),
            health: setup.health,
            prober: setup.prober,
            probes: Vec::new(),
            last_probe_scan: 0,
            counters: setup.counters,
            backends: setup.backends,
            request_seq: (setup.worker as u64) << 48,
            rx_budget: setup.rx_budget,
            next_idle_sweep: 0,
        }
    }

    #[inline]
    fn touch(&mut self, slot: u32) {
        let i = slot as usize;
        if self.touched_mark.len() <= i {
            self.touched_mark.resize(i + 1, false);
        }
        if !self.touched_mark[i] {
            self.touched_mark[i] = true;
            self.touched.push(slot);
        }
    }

    /// A TCP segment for a listener or an L7 connection: `m`'s bytes
    /// `l3..end` are its IP packet.
    pub fn input(&mut self, eg: &mut Egress<'_>, m: Mbuf, l3: usize, end: usize) {
        let mut m = m;
        let (buf, _, _) = m.buffer_mut();
        let Some(pkt) = buf.get(l3..end) else {
            self.counters.inc(Counter::drop_l4_malformed);
            return;
        };
        let Some((key, flags)) = key_of(pkt) else {
            self.counters.inc(Counter::drop_l4_malformed);
            return;
        };
        let syn = flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
        let slot = match self.conns.find(&key) {
            Some(s) if syn && self.forget_time_wait(s) => match self.accept(eg, key, pkt) {
                Some(s) => s,
                None => return,
            },
            Some(s) => s,
            None if syn => match self.accept(eg, key, pkt) {
                Some(s) => s,
                None => return,
            },
            None if flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
                && self.cookies_recent(eg.plane, &key, Some(eg.now_ns)) =>
            {
                if let Some(slot) = self.accept_cookie(eg, key, pkt) {
                    // The client's segment (an ACK, perhaps with data)
                    // went in after the synthetic SYN.
                    self.counters.inc(Counter::l7_rx_segments);
                    self.touch(slot);
                } else if eg.reset(pkt) {
                    self.counters.inc(Counter::l7_resets_sent);
                }
                return;
            }
            None => {
                // No connection: answer with a RST (RFC 9293 §3.10.7.1), so
                // that a peer whose connection Sluice forgot (a restart, an
                // abort) learns it at once.
                self.counters.inc(Counter::drop_l7_no_conn);
                if eg.reset(pkt) {
                    self.counters.inc(Counter::l7_resets_sent);
                }
                return;
            }
        };
        self.counters.inc(Counter::l7_rx_segments);
        // Fed to the connection at the end of the burst, with the burst's
        // other segments of the same connection.
        let seq = self.pending.len() as u32;
        self.pending.push(Pending::new(slot, seq, m, l3, end));
        self.touch(slot);
    }

    /// Whether `pkt` (an IP packet holding a TCP segment) is this
    /// worker's: a segment of one of its connections, a SYN that may open
    /// one, a segment of an upstream connection (the SNAT port already
    /// named this worker), or a malformed segment [`Engine::input`] will
    /// count. With several workers, a client's segment the device put on
    /// the wrong worker's queue (af_packet's fanout moves a busy flow when
    /// its socket is nearly full) is handed on to the worker that has the
    /// connection instead of being answered with a RST that would kill it.
    pub fn claims(&self, plane: &Plane, pkt: &[u8]) -> bool {
        match key_of(pkt) {
            Some((key, flags)) => {
                flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
                    || plane.l7.listener(key.local, key.lport).is_none()
                    || self.conns.find(&key).is_some()
                    || (flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
                        && self.cookies_recent(plane, &key, None)
                        && cookie_of(&key, pkt, None).is_some())
            }
            None => true,
        }
    }

    fn accept(&mut self, eg: &mut Egress<'_>, key: Key, syn: &[u8]) -> Option<u32> {
        let Some(li) = eg.plane.l7.listener(key.local, key.lport) else {
            self.counters.inc(Counter::drop_l7_no_conn);
            return None;
        };
        let l = &eg.plane.l7.listeners[li as usize];
        let i = li as usize;
        self.grow_listeners(i);
        if self.clients[i] < l.max_connections
            && l.syn_cookie_threshold
                .is_some_and(|t| self.half_open[i] >= t)
        {
            let window = l.buffers.client_rx.min(65535) as u16;
            // RFC 4987 §3.6: answer statelessly.
            if let Some((isn, _, _, opts)) = syncookie::parse(syn) {
                let (cookie, _) = syncookie::encode(
                    syncookie::key(),
                    &key,
                    isn,
                    syncookie::mss_option(opts),
                    eg.now_ns,
                );
                let header = if key.local.is_ipv6() { 60 } else { 40 };
                let synack = syncookie::Segment {
                    src: key.local,
                    dst: key.remote,
                    sport: key.lport,
                    dport: key.rport,
                    seq: cookie,
                    ack: isn.wrapping_add(1),
                    flags: TCP_SYN | TCP_ACK,
                    // No window scale is offered: smoltcp's window is then
                    // its receive buffer, at most 65535.
                    window,
                    mss: Some(self.conns.mtu().saturating_sub(header) as u16),
                };
                if eg.send_built(|out| syncookie::write_segment(&synack, out)) {
                    self.counters.inc(Counter::l7_syncookies_sent);
                    self.counters.inc(Counter::l7_tx_segments);
                    self.cookies_at[i] = eg.now_ns.max(1);
                }
            }
            return None;
        }
        if self.clients[i] >= l.max_connections || self.half_open[i] >= l.max_half_open {
            self.counters.inc(Counter::drop_l7_syn_over_cap);
            return None;
        }
        let opts = SocketOpts {
            rx_buffer: l.buffers.client_rx,
            tx_buffer: l.buffers.client_tx,
            timeout_ms: ABORT_AFTER_MS,
        };
        let handshake = l.timeouts.handshake_ms;
        let owner = Owner::Client {
            session: NONE,
            listener: li,
        };
        let Some(slot) = self.conns.accept(key, owner, opts, eg.now_ns, eg) else {
            self.counters.inc(Counter::drop_l7_no_conn);
            return None;
        };
        self.clients[i] += 1;
        self.half_open[i] += 1;
        self.counters.inc(Counter::l7_accepted);
        self.conns.arm(slot, eg.now_ns + handshake * 1_000_000);
        Some(slot)
    }

    fn grow_listeners(&mut self, i: usize) {
        if self.clients.len() <= i {
            self.clients.resize(i + 1, 0);
            self.half_open.resize(i + 1, 0);
            self.cookies_at.resize(i + 1, 0);
            self.tls_handshaking.resize(i + 1, 0);
        }
    }

    /// Whether this worker sent SYN cookies for the listener of `key`
    /// within their life before `now_ns` (None: ever).
    fn cookies_recent(&self, plane: &Plane, key: &Key, now_ns: Option<u64>) -> bool {
        plane.l7.listener(key.local, key.lport).is_some_and(|li| {
            self.cookies_at.get(li as usize).is_some_and(|&at| {
                at != 0 && now_ns.is_none_or(|now| now.saturating_sub(at) < syncookie::LIFE_NS)
            })
        })
    }

    /// An ACK of no connection on a listener that sent cookies: if it
    /// carries a valid cookie, the connection it stands for, established.
    /// The ACK may carry data (the client's handshake ACK lost, its
    /// request the first segment to arrive, or retransmitted): its
    /// sequence number is still the client's ISN + 1.
    fn accept_cookie(&mut self, eg: &mut Egress<'_>, key: Key, pkt: &[u8]) -> Option<u32> {
        let li = eg.plane.l7.listener(key.local, key.lport)?;
        let Some((cookie, mss)) = cookie_of(&key, pkt, Some(eg.now_ns)) else {
            self.counters.inc(Counter::l7_syncookies_failed);
            return None;
        };
        let l = &eg.plane.l7.listeners[li as usize];
        let i = li as usize;
        self.grow_listeners(i);
        if self.clients[i] >= l.max_connections {
            self.counters.inc(Counter::drop_l7_syn_over_cap);
            return None;
        }
        let (seq, _, window, _) = syncookie::parse(pkt)?;
        let syn = syncookie::Segment {
            src: key.remote,
            dst: key.local,
            sport: key.rport,
            dport: key.lport,
            seq: seq.wrapping_sub(1),
            ack: 0,
            flags: TCP_SYN,
            window,
            mss: Some(mss),
        };
        let mut b = [0u8; 64];
        let n = syncookie::write_segment(&syn, &mut b)?;
        let opts = SocketOpts {
            rx_buffer: l.buffers.client_rx,
            tx_buffer: l.buffers.client_tx,
            timeout_ms: ABORT_AFTER_MS,
        };
        let owner = Owner::Client {
            session: NONE,
            listener: li,
        };
        let slot =
            self.conns
                .accept_cookie(key, owner, opts, cookie, &b[..n], pkt, eg.now_ns, eg)?;
        let up = self
            .conns
            .get(slot)
            .is_some_and(|c| matches!(c.sock().state(), State::Established | State::CloseWait));
        if !up {
            // smoltcp did not take the cookie as its ISN (see
            // syncookie's module doc): never leave a half-made socket.
            self.counters.inc(Counter::l7_syncookies_failed);
            if let Some(c) = self.conns.get(slot) {
                c.socket().abort();
            }
            self.conns.remove(slot);
            return None;
        }
        // Counted as half-open until `event` sees it established, like
        // any accepted connection.
        self.clients[i] += 1;
        self.half_open[i] += 1;
        self.counters.inc(Counter::l7_accepted);
        self.counters.inc(Counter::l7_syncookies_validated);
        Some(slot)
    }

    /// End of a burst: timers, then every touched connection's owner.
    /// Returns whether there was anything to do (a timer or a touched
    /// connection).
    pub fn run(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts) -> bool {
        let now = eg.now_ns;
        // The burst's segments, each connection's together and in order.
        if !self.pending.is_empty() {
            self.pending.sort_unstable_by_key(|p| (p.slot, p.seq));
            let mut i = 0;
            while i < self.pending.len() {
                let slot = self.pending[i].slot;
                let mut j = i + 1;
                while j < self.pending.len() && self.pending[j].slot == slot {
                    j += 1;
                }
                self.conns.ingress(slot, &mut self.pending[i..j], now, eg);
                i = j;
            }
            // The mbufs go back to the pool.
            self.pending.clear();
        }
        while let Some(slot) = self.conns.due(now) {
            self.conns.poll(slot, None, now, eg);
            self.touch(slot);
        }
        let worked = !self.touched.is_empty();
        if self.prober {
            self.probe_tick(eg, snat);
        }
        let mut i = 0;
        while i < self.touched.len() {
            let slot = self.touched[i];
            if let Some(m) = self.touched_mark.get_mut(slot as usize) {
                *m = false;
            }
            self.event(eg, snat, slot);
            i += 1;
        }
        // Connections that took segments but whose owner did not poll
        // them (a handshake in progress, an idle pooled connection, a
        // session stepped for its other side): their ACKs and timers.
        for i in 0..self.touched.len() {
            let slot = self.touched[i];
            if self.conns.owes_egress(slot) {
                self.conns.poll(slot, None, now, eg);
            }
        }
        self.touched.clear();
        worked | self.sweep_idle(now)
    }

    /// A step of the idle sweep once a millisecond: enough slots that a
    /// pass over every connection takes well under a second.
    fn sweep_idle(&mut self, now: u64) -> bool {
        if now < self.next_idle_sweep {
            return false;
        }
        self.next_idle_sweep = now + 1_000_000;
        let budget = (self.conns.len() / 256).max(64);
        let n = self.conns.sweep_idle(now, budget);
        self.counters.add(Counter::l7_idle_tx_released, n as u64);
        n > 0
    }

    /// Something happened on connection `slot` (a packet, a timer).
    fn event(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts, slot: u32) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let owner = c.owner;
        let state = c.sock().state();
        let born = c.born_ns;
        let peer = c.key.remote;
        let quiet = state == State::Established && c.sock().recv_queue() == 0;
        match owner {
            Owner::Client {
                session: NONE,
                listener,
            } => match state {
                State::Established | State::CloseWait => {
                    if c.half_open {
                        c.half_open = false;
                        // The session's (or the TLS handshake's)
                        // deadlines rule from here on.
                        abort_timer(c, false);
                        self.dec_half_open(listener);
                    }
                    let tls =
                        eg.plane.l7.listeners.get(listener as usize).and_then(|l| {
                            l.tls.as_ref().map(|t| (t.clone(), l.max_tls_handshakes))
                        });
                    if let Some((config, max)) = tls {
                        if !self.tls_handshake(eg, snat, slot, listener, &config, max) {
                            return;
                        }
                    }
                    let idle = eg
                        .plane
                        .l7
                        .listeners
                        .get(listener as usize)
                        .map_or(60_000, |l| l.timeouts.idle_ms);
                    let sid = self.new_session(slot, listener, peer, eg.now_ns, idle * 1_000_000);
                    if let Some(c) = self.conns.get(slot) {
                        c.owner = Owner::Client {
                            session: sid,
                            listener,
                        };
                    }
                    self.step(eg, snat, sid);
                }
                State::Listen | State::SynReceived
                    if eg.now_ns
                        < born
                            + eg.plane
                                .l7
                                .listeners
                                .get(listener as usize)
                                .map_or(10_000, |l| l.timeouts.handshake_ms)
                                * 1_000_000 =>
                {
                    // Still shaking hands; the handshake deadline is armed.
                }
                _ => {
                    // Handshake failed or timed out.
                    self.dec_half_open(listener);
                    self.tls_released(slot, listener);
                    if let Some(c) = self.conns.get(slot) {
                        c.half_open = false;
                        c.socket().abort();
                        c.owner = Owner::Orphan {
                            listener: Some(listener),
                        };
                    }
                    self.counters.inc(Counter::l7_handshake_failed);
                    self.conns.poll(slot, None, eg.now_ns, eg);
                    self.reap(snat, slot);
                }
            },
            Owner::Client { session, .. } => self.step(eg, snat, session),
            Owner::Upstream { session, .. } if session != NONE => {
                self.step(eg, snat, session);
            }
            Owner::Upstream { backend, .. } => {
                // Idle in the pool: anything but a quiet established
                // connection (the backend closed it, or sent bytes nobody
                // asked for) takes it out. A TLS backend may still send
                // records that carry no data (TLS 1.3 session tickets,
                // key updates): rustls takes those.
                let mut quiet = quiet;
                if state == State::Established && c.tls.is_some() {
                    let super::tcp::Conn {
                        tls,
                        sockets,
                        handle,
                        ..
                    } = c;
                    let s = sockets.get_mut::<tcp::Socket>(*handle);
                    if let Some(t) = tls.as_deref_mut() {
                        let _ = t.read_from(&mut SocketIo(&mut *s));
                        t.write_to(&mut SocketIo(&mut *s));
                        quiet = s.recv_queue() == 0 && tls_idle(t);
                    }
                }
                if !quiet {
                    if let Some(v) = self.idle.get_mut(backend as usize) {
                        let before = v.len();
                        v.retain(|&s| s != slot);
                        self.idle_total -= before - v.len();
                    }
                    self.close_conn(eg, snat, slot, true);
                }
            }
            Owner::Health { backend } => self.probe_event(eg, snat, slot, backend),
            Owner::Orphan { .. } => {
                // Lingering close: whatever still arrives is read and
                // dropped (so a client still sending a body it was refused
                // sees its window open and can read the answer), and an
                // orphan kept alive by bare ACKs is reset in the end.
                let orphaned = c.orphaned_ns;
                if let Some(t) = c.tls.as_deref_mut() {
                    if t.fin_owed() {
                        let s = c.sockets.get_mut::<tcp::Socket>(c.handle);
                        send_owed_fin(t, s);
                    }
                }
                let s = c.socket();
                while s.can_recv() {
                    if s.recv(|d| (d.len(), d.len())).unwrap_or(0) == 0 {
                        break;
                    }
                }
                if eg.now_ns.saturating_sub(orphaned) > ORPHAN_MAX_NS {
                    s.abort();
                }
                self.conns.poll(slot, None, eg.now_ns, eg);
                self.reap(snat, slot);
            }
        }
    }

    /// Drive the TLS handshake of client connection `slot` on a listener
    /// with `config`; `true` once it is complete (the session may start).
    /// A failed, refused or timed-out handshake ends the connection here,
    /// counted by reason.
    fn tls_handshake(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        slot: u32,
        listener: u16,
        config: &Arc<rustls::ServerConfig>,
        max: u32,
    ) -> bool {
        let now = eg.now_ns;
        let deadline = eg
            .plane
            .l7
            .listeners
            .get(listener as usize)
            .map_or(10_000, |l| l.timeouts.handshake_ms)
            * 1_000_000;
        let li = listener as usize;
        let Some(c) = self.conns.get(slot) else {
            return false;
        };
        let born = c.born_ns;
        if c.tls.is_none() {
            if self.tls_handshaking.get(li).copied().unwrap_or(0) >= max {
                self.counters.inc(Counter::l7_tls_handshake_refused);
                self.end_client(eg, snat, slot, listener, true);
                return false;
            }
            let Some(mut t) = Tls::new(config) else {
                self.counters.inc(Counter::l7_tls_protocol_errors);
                self.end_client(eg, snat, slot, listener, true);
                return false;
            };
            t.in_progress = true;
            c.tls = Some(Box::new(t));
            if let Some(n) = self.tls_handshaking.get_mut(li) {
                *n += 1;
            }
        }
        let Some(c) = self.conns.get(slot) else {
            return false;
        };
        let super::tcp::Conn {
            tls,
            sockets,
            handle,
            ..
        } = c;
        let Some(t) = tls.as_mut() else {
            return false;
        };
        let s = sockets.get_mut::<tcp::Socket>(*handle);
        let read = t.read_from(&mut SocketIo(&mut *s));
        // A plain HTTP client gets a plain answer instead of the alert.
        if read != Err(Failure::PlainHttp) {
            t.write_to(&mut SocketIo(&mut *s));
        }
        let handshaking = t.handshaking();
        let resumed = t.resumed();
        let peer_gone = !s.may_recv() || !s.is_open();
        match read {
            Err(f) => {
                if f == Failure::PlainHttp {
                    let _ = s.send_slice(PLAIN_HTTP_ANSWER);
                }
                self.counters.inc(f.counter());
                self.tls_released(slot, listener);
                self.end_client(eg, snat, slot, listener, false);
                false
            }
            Ok(()) if !handshaking => {
                self.tls_released(slot, listener);
                self.counters.inc(if resumed {
                    Counter::l7_tls_handshakes_resumed
                } else {
                    Counter::l7_tls_handshakes_full
                });
                true
            }
            Ok(()) if peer_gone => {
                self.counters.inc(Counter::l7_tls_handshake_aborted);
                self.tls_released(slot, listener);
                self.end_client(eg, snat, slot, listener, true);
                false
            }
            Ok(()) if now >= born + deadline => {
                self.counters.inc(Counter::l7_tls_handshake_timeouts);
                self.tls_released(slot, listener);
                self.end_client(eg, snat, slot, listener, true);
                false
            }
            Ok(()) => {
                self.conns.arm(slot, born + deadline);
                self.conns.poll(slot, None, now, eg);
                false
            }
        }
    }

    /// The connection no longer counts as a TLS handshake in progress.
    fn tls_released(&mut self, slot: u32, listener: u16) {
        let Some(t) = self.conns.get(slot).and_then(|c| c.tls.as_mut()) else {
            return;
        };
        if std::mem::replace(&mut t.in_progress, false) {
            if let Some(n) = self.tls_handshaking.get_mut(listener as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// End a client connection that has no session yet: FIN after what is
    /// queued (an alert, an answer), or RST.
    fn end_client(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        slot: u32,
        listener: u16,
        abort: bool,
    ) {
        if let Some(c) = self.conns.get(slot) {
            if abort {
                c.socket().abort();
            } else {
                c.socket().close();
            }
            abort_timer(c, true);
            c.orphaned_ns = eg.now_ns;
            c.owner = Owner::Orphan {
                listener: Some(listener),
            };
        }
        self.conns.poll(slot, None, eg.now_ns, eg);
        self.reap(snat, slot);
    }

    fn dec_half_open(&mut self, listener: u16) {
        if let Some(h) = self.half_open.get_mut(listener as usize) {
            *h = h.saturating_sub(1);
        }
    }

    fn new_session(
        &mut self,
        client: u32,
        listener: u16,
        peer: IpAddr,
        now: u64,
        idle_ns: u64,
    ) -> u32 {
        let sid = match self.free_sessions.pop() {
            Some(s) => s,
            None => {
                self.sessions.push(None);
                (self.sessions.len() - 1) as u32
            }
        };
        let _ = listener;
        let tls = self
            .conns
            .get_ref(client)
            .and_then(|c| c.tls.as_ref())
            .map(|t| Box::new(t.facts()));
        self.sessions[sid as usize] = Some(Box::new(Live {
            session: Session::new(peer, now, idle_ns),
            client,
            upstream: NONE,
            tls,
        }));
        sid
    }

    /// Step session `sid` and settle what it asked for.
    pub(super) fn step(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts, sid: u32) {
        let Some(mut live) = self.sessions.get_mut(sid as usize).and_then(|s| s.take()) else {
            return;
        };
        let plane: &crate::net::plane::Plane = eg.plane;
        let now = eg.now_ns;
        let client = live.client;
        let alive = self
            .conns
            .get_ref(client)
            .is_some_and(|c| !matches!(c.sock().state(), State::Closed | State::TimeWait));
        // The listener by the address and port the client connected to, not
        // by a position a reload may have changed.
        let listener = self
            .conns
            .get_ref(client)
            .and_then(|c| plane.l7.listener(c.key.local, c.key.lport));
        let mut env = SessionEnv {
            e: self,
            eg,
            snat,
            sid,
            client,
            upstream: live.upstream,
            listener: listener.unwrap_or(u16::MAX),
            plane,
        };
        let result = match (alive, listener) {
            (false, _) => {
                // Reset: a client that was inside a TLS record is a
                // truncation, as when its FIN comes there (`tls_pull`).
                let cut = env
                    .e
                    .conns
                    .get_ref(client)
                    .and_then(|c| c.tls.as_deref())
                    .is_some_and(Tls::cut_mid_record);
                if cut {
                    env.e.counters.inc(Counter::l7_tls_truncated);
                }
                live.session.end(&mut env);
                Step::Finished
            }
            // The listener is gone: the connection goes too.
            (true, None) => live.session.abort(&mut env),
            (true, Some(li)) => {
                let tls = env.tls_pull(Side::Client);
                env.tls_pull(Side::Upstream);
                let cx = Cx {
                    listener: &plane.l7.listeners[li as usize],
                    l7: &plane.l7,
                    now,
                    tls: live.tls.as_deref().filter(|_| tls),
                };
                live.session.poll(&cx, &mut env)
            }
        };
        // Whatever the session wrote in this step, encrypted (the small
        // writes of a step as one record) and handed to the sockets.
        env.tls_flush();
        live.upstream = env.upstream;
        let upstream = live.upstream;
        // Poll the sockets the session read from or wrote to.
        self.conns.poll(client, None, now, eg);
        if upstream != NONE {
            if let Some(u) = self.conns.get(upstream) {
                if u.sock().state() == State::Established {
                    // Up: the session's deadlines rule from here on.
                    abort_timer(u, false);
                }
            }
            self.conns.poll(upstream, None, now, eg);
        }
        match result {
            Step::Continue => {
                if let Some(at) = live.session.wake_at(now) {
                    self.conns.arm(client, at);
                }
                self.sessions[sid as usize] = Some(live);
            }
            Step::Finished => {
                if upstream != NONE {
                    // The session releases what it holds; this is a guard.
                    self.close_conn(eg, snat, upstream, true);
                }
                // The client connection lives on until its FIN handshake
                // (or abort) completes.
                if let Some(c) = self.conns.get(client) {
                    if let Owner::Client { listener, .. } = c.owner {
                        c.owner = Owner::Orphan {
                            listener: Some(listener),
                        };
                        c.orphaned_ns = now;
                        abort_timer(c, true);
                    }
                }
                self.reap(snat, client);
                self.free_sessions.push(sid);
                self.counters.inc(Counter::l7_sessions_closed);
            }
        }
    }

    /// Close (FIN, or RST with `abort`) a connection Sluice no longer uses.
    pub(super) fn close_conn(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        slot: u32,
        abort: bool,
    ) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let listener = match c.owner {
            Owner::Client { listener, .. }
            | Owner::Orphan {
                listener: Some(listener),
            } => Some(listener),
            _ => None,
        };
        if abort {
            c.socket().abort();
        } else {
            c.socket().close();
        }
        abort_timer(c, true);
        c.orphaned_ns = eg.now_ns;
        c.owner = Owner::Orphan { listener };
        self.conns.poll(slot, None, eg.now_ns, eg);
        self.reap(snat, slot);
    }

    /// A SYN came for the 4-tuple of a client connection Sluice closed
    /// and keeps in TIME-WAIT: the client reuses its port (Linux does so
    /// as soon as its own side is closed, which for a connection the
    /// server closed first is at once, so a client opening connections
    /// fast comes back to a port within seconds). As Linux does for its
    /// own TIME-WAIT sockets, the old connection is forgotten and the SYN
    /// opens a new one (RFC 9293 §3.6.1); a SYN dropped instead would
    /// cost the client a one-second retransmission. Not when the old
    /// connection has segments waiting in this burst (its slot could be
    /// reused by the new one): then the SYN goes to the old socket, which
    /// ignores it, and the client's retransmission gets through.
    fn forget_time_wait(&mut self, slot: u32) -> bool {
        if self
            .touched_mark
            .get(slot as usize)
            .copied()
            .unwrap_or(false)
        {
            return false;
        }
        let Some(c) = self.conns.get(slot) else {
            return false;
        };
        let Owner::Orphan { listener: Some(l) } = c.owner else {
            return false;
        };
        if c.sock().state() != State::TimeWait {
            return false;
        }
        if let Some(c) = self.conns.remove(slot) {
            self.client_gone(l, &c);
            self.counters.inc(Counter::l7_time_wait_reused);
        }
        true
    }

    /// A client connection of listener `l` left the table.
    fn client_gone(&mut self, l: u16, c: &super::tcp::Conn) {
        if c.tls.as_ref().is_some_and(|t| t.in_progress) {
            if let Some(n) = self.tls_handshaking.get_mut(l as usize) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(n) = self.clients.get_mut(l as usize) {
            *n = n.saturating_sub(1);
        }
        if c.half_open {
            self.dec_half_open(l);
        }
    }

    /// Free an orphaned connection once smoltcp is done with it. A client
    /// connection goes as soon as it reaches TIME-WAIT (Sluice closed
    /// first and the client's FIN is acknowledged): smoltcp would hold it,
    /// buffers and all, for 10 s, and a client opening connections at a
    /// few thousand a second would fill `max_connections` with them. What
    /// TIME-WAIT guards against (a late segment of the old connection
    /// landing in a new one on the same ports) is what Linux also accepts
    /// when its TIME-WAIT table overflows; a retransmitted FIN (the ACK
    /// lost) is answered with a RST, which ends the client's side too.
    fn reap(&mut self, snat: &mut SnatPorts, slot: u32) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let done = match c.sock().state() {
            State::Closed => true,
            State::TimeWait => matches!(c.owner, Owner::Orphan { listener: Some(_) }),
            _ => false,
        };
        if !done {
            return;
        }
        let owner = c.owner;
        if let Some(c) = self.conns.remove(slot) {
            match owner {
                Owner::Orphan { listener: Some(l) } | Owner::Client { listener: l, .. } => {
                    self.client_gone(l, &c);
                }
                _ => {
                    // Upstream and probe connections: their SNAT port goes
                    // back to the end of this worker's queue.
                    snat.free(c.key.local, c.key.lport);
                }
            }
        }
    }

    /// The receive buffer of a new upstream connection: the listener's
    /// `upstream_rx_buffer` (`configured`), or less while many connections
    /// share the worker. smoltcp advertises a connection's free receive
    /// buffer as its window, and a backend's kernel sends up to the window
    /// at once, so the receive buffers of all connections together are
    /// what can be in flight towards the worker at the same moment. The
    /// worker's receive ring holds `rx_budget` bytes; beyond it the device
    /// drops (AF_XDP ring full, af_packet ring full), and what it drops
    /// first when a thousand backends answer together is everything alike,
    /// SYN-ACKs of new upstream connections included: each of those costs
    /// a 1 s retransmission and, twice in a row, the connect timeout.
    /// So each new connection gets an equal share of the budget among the
    /// connections the worker holds, at least [`MIN_RX_SHARE`] (a few
    /// segments: throughput then comes from the number of connections,
    /// not from each one's window), and such a connection acknowledges
    /// every segment at once. A connection keeps the buffer it was opened
    /// with; it goes back to the idle pool only while that buffer is at
    /// most twice the share of the moment (see `release`).
    fn rx_share(&self, configured: usize) -> usize {
        // Idle pooled connections receive nothing until a session takes
        // them (and then `pooled` checks their size): they do not count.
        let n = self.conns.len().saturating_sub(self.idle_total) + 1;
        // Up to OVERCOMMIT_UNTIL connections the budget is four rings
        // (not every window is in flight at once, and windows too small
        // for the round trip cost more than an occasional loss); from
        // there it tapers to one ring at four times that many.
        let budget = if n <= OVERCOMMIT_UNTIL {
            self.rx_budget * 4
        } else {
            (self.rx_budget * 4 * OVERCOMMIT_UNTIL / n).max(self.rx_budget)
        };
        configured.min((budget / n).max(MIN_RX_SHARE))
    }

    /// A new upstream connection to `backend` of listener `li`.
    pub(super) fn connect(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        li: u16,
        backend: u32,
        owner: Owner,
        bufs: (usize, usize),
    ) -> Result<u32, Counter> {
        self.connect_to(eg, snat, li, backend, None, owner, bufs)
    }

    /// A new connection to `backend` on `port` (None: its own `port`).
    #[allow(clippy::too_many_arguments)]
    fn connect_to(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        li: u16,
        backend: u32,
        port: Option<u16>,
        owner: Owner,
        bufs: (usize, usize),
    ) -> Result<u32, Counter> {
        let b = eg
            .plane
            .services
            .backend(backend)
            .ok_or(Counter::l7_upstream_connect_failed)?;
        let port = port.or(b.port).ok_or(Counter::l7_upstream_connect_failed)?;
        let listener_snat = eg
            .plane
            .l7
            .listeners
            .get(li as usize)
            .map(|l| l.snat.as_slice())
            .unwrap_or(&[]);
        let src = listener_snat
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == b.addr.is_ipv4())
            .max_by_key(|a| snat.available(*a))
            .or(b.src)
            .ok_or(Counter::drop_no_route)?;
        let lport = snat.alloc(src).ok_or(Counter::drop_snat_exhausted)?;
        let key = Key {
            local: src,
            lport,
            remote: b.addr,
            rport: port,
        };
        if self.conns.find(&key).is_some() {
            // Still held by an earlier connection (TIME-WAIT), which frees
            // the port when it ends.
            return Err(Counter::drop_snat_exhausted);
        }
        let rx_buffer = self.rx_share(bufs.0);
        if rx_buffer < bufs.0 {
            self.counters.inc(Counter::l7_upstream_rx_shared);
        }
        let opts = SocketOpts {
            rx_buffer,
            tx_buffer: bufs.1,
            timeout_ms: ABORT_AFTER_MS,
        };
        match self.conns.connect(key, owner, opts, eg.now_ns, eg) {
            Some(slot) => {
                self.counters.inc(Counter::l7_upstream_connects);
                if rx_buffer < bufs.0 {
                    // A window of a few segments: an ACK held back for
                    // smoltcp's 10 ms delayed-ACK timer would stall the
                    // backend for that long every window.
                    if let Some(c) = self.conns.get(slot) {
                        c.socket().set_ack_delay(None);
                    }
                }
                Ok(slot)
            }
            None => {
                snat.free(src, lport);
                Err(Counter::l7_upstream_connect_failed)
            }
        }
    }

    /// An idle pooled connection to `backend`, if one is still good: also
    /// not made under a load so much higher than now that its receive
    /// window is under half of what a new connection would get (`rx`, the
    /// listener's `upstream_rx_buffer`) - such a connection, kept from a
    /// busy spell, would carry a large response at a fraction of the rate.
    pub(super) fn pooled(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        backend: u32,
        rx: usize,
    ) -> Option<u32> {
        // A reload may have turned the cluster's TLS on or off, or changed
        // its CA, client certificate or the backend's name: a pooled
        // connection is reused only if it was made (and its backend
        // verified) under the settings the cluster has now.
        let plane = eg.plane;
        let want = plane
            .services
            .backend(backend)
            .and_then(|b| Some((plane.l7.cluster(b.cluster).tls.as_deref()?, b.addr)));
        while let Some(slot) = self.idle.get_mut(backend as usize)?.pop() {
            self.idle_total -= 1;
            let least = self.rx_share(rx) / 2;
            let good = self.conns.get(slot).is_some_and(|c| {
                let s = c.sock();
                let same_tls = match (c.tls.as_deref(), want) {
                    (None, None) => true,
                    (Some(t), Some((u, addr))) => tls_idle(t) && u.made(t, addr),
                    _ => false,
                };
                s.state() == State::Established
                    && s.may_send()
                    && s.recv_queue() == 0
                    && s.recv_capacity() >= least
                    && same_tls
            });
            if good {
                self.counters.inc(Counter::l7_upstream_reused);
                return Some(slot);
            }
            self.close_conn(eg, snat, slot, true);
        }
        None
    }

    /// Put an upstream connection back in its backend's pool (or close it
    /// when the pool is full).
    pub(super) fn release(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        slot: u32,
        backend: u32,
        max_idle: u32,
    ) {
        let pool_len = self.idle.get(backend as usize).map_or(0, |v| v.len());
        // A connection opened while the worker was quiet has a receive
        // buffer (window) far beyond its share now that many connections
        // are open (see `rx_share`): reused under load, such connections
        // together would overflow the receive ring again. Closed instead;
        // the next request opens one of the size the load allows.
        let oversized = self
            .conns
            .get_ref(slot)
            .is_some_and(|c| c.sock().recv_capacity() > 2 * self.rx_share(usize::MAX));
        if pool_len >= max_idle as usize || oversized {
            self.close_conn(eg, snat, slot, false);
            return;
        }
        if let Some(c) = self.conns.get(slot) {
            c.owner = Owner::Upstream {
                session: NONE,
                backend,
            };
            // Idle in the pool: ends 30 s after the backend's last segment.
            abort_timer(c, true);
        }
        if let Some(v) = self.idle.get_mut(backend as usize) {
            v.push(slot);
            self.idle_total += 1;
        }
    }

    pub fn random(&mut self) -> u64 {
        self.conns.random()
    }

    // ------------------------------------------------------------ probes

    fn probe_tick(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts) {
        let now = eg.now_ns;
        if now.wrapping_sub(self.last_probe_scan) < 10_000_000 {
            return;
        }
        self.last_probe_scan = now;
        let plane = eg.plane;
        if self.probes.len() < plane.services.backends.len() {
            self.probes
                .resize(plane.services.backends.len(), Probe::default());
        }
        for b in plane.services.backends.iter().flatten() {
            let health = plane.l7.cluster(b.cluster).health.as_ref();
            if let Some(t) = self.probes[b.id as usize].udp {
                if b.check_port.is_none() || health.is_none_or(|h| h.kind != CheckKind::Udp) {
                    // A reload took the UDP check away while one was out.
                    self.probes[b.id as usize].udp = None;
                    snat.free(t.local, t.lport);
                }
            }
            let Some(hc) = health else {
                continue;
            };
            let Some(port) = b.check_port else {
                continue;
            };
            let id = b.id;
            let p = &mut self.probes[id as usize];
            if hc.kind == CheckKind::Udp {
                self.udp_tick(eg, snat, b, port, hc);
                continue;
            }
            if let Some(slot) = p.conn {
                if now >= p.started_ns + hc.timeout_ms * 1_000_000 {
                    p.conn = None;
                    self.probe_result(id, false, hc.rise, hc.fall);
                    // Only if the slot still holds this probe.
                    let ours = self
                        .conns
                        .get_ref(slot)
                        .is_some_and(|c| c.owner == Owner::Health { backend: id });
                    if ours {
                        self.close_conn(eg, snat, slot, true);
                    }
                }
                continue;
            }
            if now < p.next_ns {
                continue;
            }
            p.next_ns = now + hc.interval_ms * 1_000_000;
            p.started_ns = now;
            p.sent = false;
            p.buf.clear();
            match self.connect_to(
                eg,
                snat,
                u16::MAX,
                id,
                Some(port),
                Owner::Health { backend: id },
                (4096, 4096),
            ) {
                Ok(slot) => {
                    self.probes[id as usize].conn = Some(slot);
                    self.conns.arm(slot, now + hc.timeout_ms * 1_000_000);
                }
                Err(_) => self.probe_result(id, false, hc.rise, hc.fall),
            }
        }
    }

    /// One scan of a UDP-checked backend: end a check that ran out of
    /// time, start one when due. A check holds a SNAT port of the
    /// backend's source address from its datagram to its end, so that the
    /// answer comes back to this worker ([`crate::l4::snat`]) and to this
    /// check only.
    fn udp_tick(
        &mut self,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        b: &crate::net::services::BackendPlane,
        port: u16,
        hc: &super::plane::HealthCheck,
    ) {
        let now = eg.now_ns;
        let id = b.id;
        let p = &mut self.probes[id as usize];
        if let Some(t) = p.udp {
            if now < p.started_ns + hc.timeout_ms * 1_000_000 {
                return;
            }
            p.udp = None;
            snat.free(t.local, t.lport);
            self.probe_result(id, false, hc.rise, hc.fall);
            return;
        }
        if now < p.next_ns {
            return;
        }
        p.next_ns = now + hc.interval_ms * 1_000_000;
        p.started_ns = now;
        let sent = b.src.and_then(|src| {
            let lport = snat.alloc(src)?;
            let t = health::UdpTuple {
                local: src,
                lport,
                remote: b.addr,
                rport: port,
            };
            if eg.send_built_as(Counter::health_udp_sent, |out| {
                health::write_udp_check(&t, &hc.send, out)
            }) {
                Some(t)
            } else {
                snat.free(src, lport);
                None
            }
        });
        match sent {
            Some(t) => self.probes[id as usize].udp = Some(t),
            None => self.probe_result(id, false, hc.rise, hc.fall),
        }
    }

    /// A UDP datagram or an ICMP error for one of this worker's SNAT ports
    /// that no L4 connection has: the answer to a UDP check, if one is
    /// waiting for it. A reply that contains what the check expects passes
    /// it, any other reply fails it; a destination unreachable fails it at
    /// once (the backend's host said nothing listens there), other ICMP
    /// errors leave it to its timeout.
    pub fn check_answer(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts, pkt: &[u8]) {
        let Some(answer) = health::udp_answer(pkt) else {
            self.counters.inc(Counter::drop_no_conn);
            return;
        };
        let t = match &answer {
            health::UdpAnswer::Reply(t, _)
            | health::UdpAnswer::Unreachable(t)
            | health::UdpAnswer::OtherError(t) => *t,
        };
        let Some(id) = self.probes.iter().position(|p| p.udp == Some(t)) else {
            // Late (the check timed out and freed its port), or not ours.
            self.counters.inc(Counter::drop_no_conn);
            return;
        };
        let plane = eg.plane;
        let Some(hc) = plane
            .services
            .backend(id as u32)
            .and_then(|b| plane.l7.cluster(b.cluster).health.as_ref())
        else {
            self.counters.inc(Counter::drop_no_conn);
            return;
        };
        self.counters.inc(Counter::health_answers);
        let ok = match answer {
            health::UdpAnswer::Reply(_, payload) => health::verdict_udp(payload, &hc.expect_bytes),
            health::UdpAnswer::Unreachable(_) => {
                self.counters.inc(Counter::health_udp_unreachable);
                false
            }
            health::UdpAnswer::OtherError(_) => return,
        };
        let (rise, fall) = (hc.rise, hc.fall);
        self.probes[id].udp = None;
        snat.free(t.local, t.lport);
        self.probe_result(id as u32, ok, rise, fall);
    }

    fn probe_event(&mut self, eg: &mut Egress<'_>, snat: &mut SnatPorts, slot: u32, backend: u32) {
        let plane = eg.plane;
        let hc = plane
            .services
            .backend(backend)
            .and_then(|b| plane.l7.cluster(b.cluster).health.clone().map(|h| (b, h)));
        let Some((b, hc)) = hc else {
            // The backend or its health check went away in a reload.
            if let Some(p) = self.probes.get_mut(backend as usize) {
                if p.conn == Some(slot) {
                    p.conn = None;
                }
            }
            self.close_conn(eg, snat, slot, true);
            return;
        };
        let Some(p) = self.probes.get_mut(backend as usize) else {
            return;
        };
        if p.conn != Some(slot) {
            self.close_conn(eg, snat, slot, true);
            return;
        }
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let state = c.sock().state();
        // A TCP check of a TLS cluster is a TLS handshake (below).
        let tls_cluster = plane.l7.cluster(b.cluster).tls.is_some();
        if hc.kind == CheckKind::Tcp && !tls_cluster {
            let open = matches!(state, State::SynSent | State::SynReceived);
            let verdict = health::verdict_tcp(state == State::Established, open);
            self.conns.poll(slot, None, eg.now_ns, eg);
            if let Some(ok) = verdict {
                self.probes[backend as usize].conn = None;
                self.probe_result(backend, ok, hc.rise, hc.fall);
                // A RST: nothing was asked, and no TIME-WAIT holds the SNAT
                // port (HAProxy's tcp-check closes the same way).
                self.close_conn(eg, snat, slot, true);
            }
            return;
        }
        // A check of a TLS cluster goes over TLS, with the cluster's
        // settings: a backend whose certificate does not verify fails its
        // check as its requests would. An HTTP check is HTTP over TLS; a
        // TCP check passes once our side of the handshake is done (the
        // backend's certificate verified), and then says close_notify. (A
        // TLS 1.3 backend that refuses our client certificate says so only
        // after that: an HTTP check catches it, a TCP check does not.)
        if state == State::Established && c.tls.is_none() {
            let tls = match hc.kind {
                // `type = "https"`: the check's own TLS settings.
                CheckKind::Https => plane
                    .l7
                    .cluster(b.cluster)
                    .health_tls
                    .as_ref()
                    .map(|t| (t.config.clone(), t.name_for(b.addr), t.settings)),
                _ => upstream_tls(plane, backend),
            };
            if let Some((config, name, settings)) = tls {
                c.tls = Tls::new_client(&config, name, settings).map(Box::new);
            }
        }
        let super::tcp::Conn {
            tls,
            sockets,
            handle,
            ..
        } = c;
        let s = sockets.get_mut::<tcp::Socket>(*handle);
        let mut tls_failed = None;
        if let Some(t) = tls.as_deref_mut() {
            let _ = t.read_from(&mut SocketIo(&mut *s));
            tls_failed = t.take_failure();
        }
        let ready = match tls.as_deref() {
            Some(t) => !t.handshaking() && tls_failed.is_none(),
            None => state == State::Established,
        };
        let tcp_check = hc.kind == CheckKind::Tcp;
        if ready && tcp_check && !p.sent {
            if let Some(t) = tls.as_deref_mut() {
                t.close_notify();
            }
            p.sent = true;
        }
        if ready && !p.sent {
            let host = hc.host.clone().unwrap_or_else(|| match b.addr {
                IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            });
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n",
                hc.path, host
            );
            match tls.as_deref_mut() {
                Some(t) => t.write_plain(req.as_bytes()),
                None => {
                    let _ = s.send_slice(req.as_bytes());
                }
            }
            p.sent = true;
        }
        if let Some(t) = tls.as_deref_mut() {
            t.write_to(&mut SocketIo(&mut *s));
            let buf = &mut p.buf;
            t.recv(|d| {
                let n = d.len().min(health::STATUS_LINE_MAX - buf.len());
                buf.extend_from_slice(&d[..n]);
                n
            });
        }
        while tls.is_none() && s.can_recv() && p.buf.len() < health::STATUS_LINE_MAX {
            let room = health::STATUS_LINE_MAX - p.buf.len();
            let buf = &mut p.buf;
            if s.recv(|d| {
                let n = d.len().min(room);
                buf.extend_from_slice(&d[..n]);
                (n, n)
            })
            .unwrap_or(0)
                == 0
            {
                break;
            }
        }
        let open = matches!(state, State::SynSent | State::Established);
        let verdict = match tls_failed {
            Some(f) => {
                self.counters.inc(f.upstream_counter());
                Some(false)
            }
            None if tcp_check => health::verdict_tcp(ready, open),
            None => health::verdict(&p.buf, hc.expect, open),
        };
        self.conns.poll(slot, None, eg.now_ns, eg);
        if let Some(ok) = verdict {
            self.probes[backend as usize].conn = None;
            self.probe_result(backend, ok, hc.rise, hc.fall);
            // A FIN, not a RST: the backend may still be writing the body
            // it was asked for, and a reset would show up in its logs.
            self.close_conn(eg, snat, slot, !ok);
        }
    }

    fn probe_result(&mut self, backend: u32, ok: bool, rise: u32, fall: u32) {
        if self.health.take_suspect(backend) {
            // Taken down by passive marking: `rise` passes from now.
            self.probes[backend as usize].successes = 0;
        }
        let was_up = self.health.is_up(backend);
        self.health.count(backend, ok);
        self.counters.inc(if ok {
            Counter::health_checks_passed
        } else {
            Counter::health_checks_failed
        });
        if let Some(up) = health::record(&mut self.probes[backend as usize], ok, was_up, rise, fall)
        {
            self.health.set(backend, up);
            if up {
                log::info!("backend id {backend} is up (health check)");
            } else {
                log::warn!("backend id {backend} is down (health check)");
            }
        }
    }

    /// Gauges for the stats: (client connections, upstream connections
    /// in use or idle, sessions).
    pub fn publish(&self) {
        let clients: u32 = self.clients.iter().sum();
        self.counters.set(Counter::l7_client_conns, clients as u64);
        self.counters
            .set(Counter::l7_conns, self.conns.len() as u64);
        let idle = self.idle_total;
        self.counters.set(Counter::l7_upstream_idle, idle as u64);
        let handshaking: u32 = self.tls_handshaking.iter().sum();
        self.counters
            .set(Counter::l7_tls_handshaking, handshaking as u64);
        self.counters.set(
            Counter::l7_sessions,
            (self.sessions.len() - self.free_sessions.len()) as u64,
        );
    }

    /// Worker stop: reset every connection (a best effort; the process is
    /// going away).
    pub fn shutdown(&mut self, eg: &mut Egress<'_>) {
        self.pending.clear();
        let slots: Vec<u32> = self.conns.slots().collect();
        for slot in slots {
            if let Some(c) = self.conns.get(slot) {
                c.socket().abort();
            }
            self.conns.poll(slot, None, eg.now_ns, eg);
        }
    }

    /// Connections remain (e.g. after the last listener was removed).
    pub fn busy(&self) -> bool {
        !self.conns.is_empty()
    }
}

/// The client TLS config, the name to verify and the settings' digest of
/// `backend`, when its cluster speaks TLS to its backends.
fn upstream_tls(
    plane: &crate::net::plane::Plane,
    backend: u32,
) -> Option<(
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
    [u8; 32],
)> {
    let b = plane.services.backend(backend)?;
    let t = plane.l7.cluster(b.cluster).tls.as_ref()?;
    Some((t.config.clone(), t.name_for(b.addr), t.settings))
}

/// A TLS upstream connection that may idle in the pool (or be taken out
/// of it): handshake done, no failure, no close_notify, no plaintext.
/// Write what rustls holds; a FIN owed since `Env::close` goes once it
/// is all out.
fn send_owed_fin(t: &mut Tls, s: &mut tcp::Socket<'static>) {
    t.write_to(&mut SocketIo(&mut *s));
    if t.fin_owed() && t.drained_for_fin() {
        s.close();
    }
}

fn tls_idle(t: &Tls) -> bool {
    !t.handshaking()
        && t.failed().is_none()
        && !t.at_eof()
        && !t.has_plaintext()
        && !t.has_pending()
}

/// A session's view of the engine during one step (see [`Env`]): its two
/// connections' sockets, the pool, the balancer, the retry budget and the
/// counters.
struct SessionEnv<'a, 'e> {
    e: &'a mut Engine,
    eg: &'a mut Egress<'e>,
    snat: &'a mut SnatPorts,
    sid: u32,
    client: u32,
    upstream: u32,
    listener: u16,
    plane: &'e crate::net::plane::Plane,
}

impl SessionEnv<'_, '_> {
    fn slot(&self, side: Side) -> u32 {
        match side {
            Side::Client => self.client,
            Side::Upstream => self.upstream,
        }
    }

    fn socket(&mut self, side: Side) -> Option<&mut tcp::Socket<'static>> {
        let slot = self.slot(side);
        self.e.conns.get(slot).map(|c| c.socket())
    }

    /// A side's TLS layer and socket, if that side is TLS.
    fn side_tls(&mut self, side: Side) -> Option<(&mut Tls, &mut tcp::Socket<'static>)> {
        let slot = self.slot(side);
        let c = self.e.conns.get(slot)?;
        let super::tcp::Conn {
            tls,
            sockets,
            handle,
            ..
        } = c;
        let t = tls.as_deref_mut()?;
        Some((t, sockets.get_mut::<tcp::Socket>(*handle)))
    }

    /// Decrypt what a side sent and send what its rustls has (the
    /// upstream's handshake flights go out here). A TLS error is final:
    /// its alert is sent, the connection closed, the failure counted once,
    /// and `link(side)` says `Gone` (for an upstream still handshaking: a
    /// connect failure). Returns whether the side is TLS.
    fn tls_pull(&mut self, side: Side) -> bool {
        let Some((t, s)) = self.side_tls(side) else {
            return false;
        };
        t.pull(s);
        t.push_to(&mut SocketIo(&mut *s));
        let done = side == Side::Upstream
            && !t.handshaking()
            && t.failed().is_none()
            && std::mem::replace(&mut t.in_progress, false);
        let resumed = done && t.resumed();
        let renegotiations = t.take_renegotiations();
        if let Some(f) = t.take_failure() {
            s.close();
            self.e.counters.inc(match side {
                Side::Client => f.counter(),
                Side::Upstream => f.upstream_counter(),
            });
        }
        if side == Side::Client && renegotiations > 0 {
            self.e
                .counters
                .add(Counter::l7_tls_renegotiation_refused, renegotiations as u64);
        }
        if done {
            self.e.counters.inc(if resumed {
                Counter::l7_upstream_tls_handshakes_resumed
            } else {
                Counter::l7_upstream_tls_handshakes_full
            });
        }
        true
    }

    /// Send what rustls has for either side (and a FIN owed once it is
    /// all written).
    fn tls_flush(&mut self) {
        for side in [Side::Client, Side::Upstream] {
            if let Some((t, s)) = self.side_tls(side) {
                send_owed_fin(t, s);
            }
        }
    }
}

/// One end of [`Env::forward`]: a socket, with or without TLS. Bytes go
/// from the source's receive buffer (or rustls' plaintext) straight into
/// the destination's send buffer (or into rustls, which encrypts them
/// into about the socket's free space, see `tls.rs`; pieces under 2 KiB
/// wait in the `Tls` to share one record); nothing else is copied on
/// the way but by the encryption itself.
struct End<'a> {
    tls: Option<&'a mut Tls>,
    sock: &'a mut tcp::Socket<'static>,
}

impl<'a> End<'a> {
    fn of(c: &'a mut super::tcp::Conn) -> End<'a> {
        let super::tcp::Conn {
            tls,
            sockets,
            handle,
            ..
        } = c;
        End {
            tls: tls.as_deref_mut(),
            sock: sockets.get_mut::<tcp::Socket>(*handle),
        }
    }

    /// Plaintext bytes this end takes now.
    fn room(&mut self) -> usize {
        match &mut self.tls {
            Some(t) => {
                t.push_to(&mut SocketIo(&mut *self.sock));
                t.plain_room(send_room(self.sock))
            }
            None => send_room(self.sock),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            Some(t) => t.write_plain(bytes),
            None => {
                let _ = self.sock.send_slice(bytes);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(t) = &mut self.tls {
            t.write_to(&mut SocketIo(&mut *self.sock));
        }
    }

    /// Offer received plaintext to `f` (it returns what it took).
    fn take(&mut self, mut f: impl FnMut(&[u8]) -> usize) -> usize {
        match &mut self.tls {
            Some(t) => {
                // An error is counted and reported by the next pull.
                t.pull(self.sock);
                t.recv(f)
            }
            None => {
                if !self.sock.can_recv() {
                    return 0;
                }
                self.sock
                    .recv(|d| {
                        let n = f(d).min(d.len());
                        (n, n)
                    })
                    .unwrap_or(0)
            }
        }
    }
}

impl Env for SessionEnv<'_, '_> {
    fn link(&self, side: Side) -> Link {
        let Some(c) = self.e.conns.get_ref(self.slot(side)) else {
            return Link::Gone;
        };
        let s = c.sock();
        if let Some(t) = c.tls.as_deref() {
            // What counts is the plaintext: rustls may hold some after the
            // socket has been read to its end. An upstream is connecting
            // until its TLS handshake is done.
            return match s.state() {
                _ if t.failed().is_some() => Link::Gone,
                State::Closed => Link::Gone,
                State::Listen | State::SynSent | State::SynReceived => Link::Connecting,
                _ if t.handshaking() => {
                    if t.at_eof() || !s.may_recv() || !s.may_send() {
                        Link::Gone
                    } else {
                        Link::Connecting
                    }
                }
                _ if t.at_eof() => Link::Eof,
                _ if !t.has_plaintext() && !s.may_recv() && s.recv_queue() == 0 => Link::Eof,
                _ => Link::Open,
            };
        }
        match s.state() {
            State::Closed => Link::Gone,
            State::Listen | State::SynSent | State::SynReceived => Link::Connecting,
            _ if !s.may_recv() && s.recv_queue() == 0 => Link::Eof,
            _ => Link::Open,
        }
    }

    fn recv(&mut self, side: Side, mut f: impl FnMut(&[u8]) -> usize) -> usize {
        if self.side_tls(side).is_some() {
            // Plaintext in rustls, then more from the socket once rustls
            // has room for it.
            let mut total = 0;
            for _ in 0..4 {
                let Some((t, _)) = self.side_tls(side) else {
                    break;
                };
                let n = t.recv(&mut f);
                if n == 0 {
                    break;
                }
                total += n;
                self.tls_pull(side);
            }
            return total;
        }
        let Some(s) = self.socket(side) else {
            return 0;
        };
        // Twice: the receive buffer is a ring, its bytes may wrap.
        let mut total = 0;
        for _ in 0..2 {
            if !s.can_recv() {
                break;
            }
            let n = s
                .recv(|d| {
                    let n = f(d).min(d.len());
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> usize {
        if let Some((t, s)) = self.side_tls(side) {
            // What fits joins the next write (a response head and its
            // body: one record); the step's end sends it (`tls_flush`).
            t.push_to(&mut SocketIo(&mut *s));
            let n = t.send(bytes, send_room(s));
            t.push_to(&mut SocketIo(&mut *s));
            return n;
        }
        self.socket(side)
            .map_or(0, |s| s.send_slice(bytes).unwrap_or(0))
    }

    fn forward(
        &mut self,
        from: Side,
        mut f: impl FnMut(&[u8], &mut dyn FnMut(&[u8])) -> Result<usize, HttpError>,
    ) -> Result<usize, HttpError> {
        let (src, dst) = match from {
            Side::Client => (self.client, self.upstream),
            Side::Upstream => (self.upstream, self.client),
        };
        let Some((a, b)) = self.e.conns.pair(src, dst) else {
            return Ok(0);
        };
        let (mut src, mut dst) = (End::of(a), End::of(b));
        let mut total = 0;
        let mut failed = None;
        // A few rounds: the receive buffer is a ring whose bytes may wrap,
        // and rustls hands out plaintext a record at a time.
        for _ in 0..4 {
            let room = dst.room();
            if room == 0 {
                break;
            }
            let n = src.take(|d| {
                let win = &d[..d.len().min(room)];
                match f(win, &mut |bytes| dst.put(bytes)) {
                    Ok(n) => n,
                    Err(e) => {
                        failed = Some(e);
                        0
                    }
                }
            });
            dst.flush();
            if let Some(e) = failed {
                return Err(e);
            }
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(total)
    }

    fn close(&mut self, side: Side) {
        if let Some((t, s)) = self.side_tls(side) {
            // close_notify, then FIN; an alert that does not fit the
            // send buffer any more is dropped (the FIN still ends the
            // stream, and HTTP framing tells complete from cut).
            if t.failed().is_none() && !t.handshaking() {
                t.close_notify();
                t.write_to(&mut SocketIo(&mut *s));
                if !t.drained_for_fin() {
                    // The response's tail is still in rustls (the socket
                    // was full): the FIN follows it (`send_owed_fin`).
                    return;
                }
            }
            s.close();
            return;
        }
        if let Some(s) = self.socket(side) {
            s.close();
        }
    }

    fn abort(&mut self, side: Side) {
        if let Some(s) = self.socket(side) {
            s.abort();
        }
    }

    fn pick(
        &mut self,
        cluster: usize,
        req: &impl RequestView,
        peer: IpAddr,
        exclude: &[u32],
    ) -> Option<u32> {
        let rand = self.e.random();
        let e = &mut *self.e;
        e.balancer.pick(
            &self.plane.services,
            self.plane.l7.cluster(cluster),
            &e.health,
            cluster,
            req,
            peer,
            exclude,
            rand,
        )
    }

    fn open(&mut self, backend: u32) -> Opened {
        let owner = Owner::Upstream {
            session: self.sid,
            backend,
        };
        let bufs = self
            .plane
            .l7
            .listeners
            .get(self.listener as usize)
            .map_or((64 * 1024, 64 * 1024), |l| {
                (l.buffers.upstream_rx, l.buffers.upstream_tx)
            });
        if let Some(slot) = self.e.pooled(self.eg, self.snat, backend, bufs.0) {
            if let Some(c) = self.e.conns.get(slot) {
                c.owner = owner;
                abort_timer(c, false);
            }
            self.upstream = slot;
            return Opened::Pooled;
        }
        match self
            .e
            .connect(self.eg, self.snat, self.listener, backend, owner, bufs)
        {
            Ok(slot) => {
                self.upstream = slot;
                // TLS to the backend: the ClientHello waits in rustls until
                // the TCP handshake is done, and the session sees the
                // upstream connecting until the TLS handshake is.
                if let Some((config, name, settings)) = upstream_tls(self.plane, backend) {
                    let Some(mut t) = Tls::new_client(&config, name, settings) else {
                        self.e.close_conn(self.eg, self.snat, slot, true);
                        self.upstream = NONE;
                        return Opened::Failed(Counter::l7_upstream_tls_failed);
                    };
                    t.in_progress = true;
                    if let Some(c) = self.e.conns.get(slot) {
                        c.tls = Some(Box::new(t));
                    }
                }
                Opened::Connecting
            }
            Err(c) => Opened::Failed(c),
        }
    }

    fn release(&mut self, how: Release) {
        let up = std::mem::replace(&mut self.upstream, NONE);
        if up == NONE {
            return;
        }
        // What the session wrote to the upstream in this step is encrypted
        // and sent before the connection is pooled or closed.
        if let Some(c) = self.e.conns.get(up) {
            if let Some(t) = c.tls.as_deref_mut() {
                t.write_to(&mut SocketIo(c.sockets.get_mut::<tcp::Socket>(c.handle)));
            }
        }
        match how {
            Release::Pool { max_idle } => {
                let pooled = self.e.conns.get_ref(up).and_then(|c| {
                    let clean = c.sock().state() == State::Established
                        && c.sock().recv_queue() == 0
                        && c.tls.as_deref().is_none_or(tls_idle);
                    match c.owner {
                        Owner::Upstream { backend, .. } if clean => Some(backend),
                        _ => None,
                    }
                });
                match pooled {
                    Some(backend) => self.e.release(self.eg, self.snat, up, backend, max_idle),
                    None => self.e.close_conn(self.eg, self.snat, up, false),
                }
            }
            Release::Close => self.e.close_conn(self.eg, self.snat, up, false),
            Release::Reset => self.e.close_conn(self.eg, self.snat, up, true),
        }
    }

    fn sticky_value(&self, backend: u32) -> Option<[u8; 16]> {
        self.plane
            .services
            .backend(backend)
            .map(|b| super::balance::sticky_value(b.addr, b.port.unwrap_or(0)))
    }

    fn request_id(&mut self) -> u64 {
        self.e.request_seq = self.e.request_seq.wrapping_add(1);
        self.e.request_seq ^ (self.e.random() & 0xffff_ffff_0000_0000)
    }

    fn add_retry_budget(&mut self, percent: u32) {
        self.e.retry_tokens = (self.e.retry_tokens + percent as f64 / 100.0).min(100.0);
    }

    fn spend_retry_token(&mut self) -> bool {
        if self.e.retry_tokens >= 1.0 {
            self.e.retry_tokens -= 1.0;
            return true;
        }
        false
    }

    fn count(&mut self, c: Counter) {
        self.e.counters.inc(c);
    }

    fn backend(&mut self, backend: u32, ev: BackendEvent) {
        let b = &self.e.backends;
        match ev {
            BackendEvent::Started => {
                self.e.balancer.started(backend);
                b.l7_add(backend, BE_L7_REQUESTS, 1);
                b.l7_add(backend, BE_L7_INFLIGHT, 1);
            }
            BackendEvent::Finished => {
                self.e.balancer.finished(backend);
                b.l7_add(backend, BE_L7_INFLIGHT, -1);
            }
            BackendEvent::Failure => b.l7_add(backend, BE_L7_FAILURES, 1),
            BackendEvent::Status5xx => b.l7_add(backend, BE_L7_5XX, 1),
        }
    }
}
