//! One HTTP/1.1 client connection and the upstream connection serving its
//! current request: the proxy state machine, sans-I/O.
//!
//! ```text
//!   Head ──request head──▶ (route, pick) ──pooled──▶ Waiting ──response head──▶ Response
//!     ▲                         │                      ▲   │                       │
//!     │                         └──new──▶ Connecting ──┘   └─101──▶ Tunnel          │
//!     └──────────────── keep-alive ◀──────────── body done ◀────────────────────────┘
//!   any phase ──error, timeout, no keep-alive──▶ Closing (flush, FIN) / abort
//! ```
//!
//! # Contract
//!
//! A [`Session`] owns only its own state: the phase, the head buffers, the
//! body framing of both directions, its deadline, and the routing decision
//! of the current request. It never sees a socket, an mbuf, the connection
//! table or the engine. The engine drives it with [`Session::poll`], passing
//!
//! - a read-only [`Cx`]: the listener's plane (limits, timeouts, router),
//!   the cluster policies, and the time;
//! - an [`Env`]: the session's two connections seen as byte queues, plus the
//!   few things only the engine can do (pick a backend, open or pool an
//!   upstream connection, spend a retry token, count).
//!
//! `poll` does all the work that is possible now and returns
//! [`Step::Continue`] (call again when either connection has news, or at
//! [`Session::wake_at`]) or [`Step::Finished`] (the session is over; by then
//! it has given back its backend and released or reset its upstream
//! connection through the `Env`, and closed or reset the client side). The
//! engine owns I/O and time: it feeds packets to smoltcp, polls the
//! sockets after each step and arms the timer; the session owns the
//! protocol. This is the shape of rustls' `read_tls`/`write_tls`: the
//! caller hands in the I/O objects, the state machine decides what moves.
//!
//! How bytes move through the `Env`:
//!
//! - heads are read with [`Env::recv`], which offers the front of a receive
//!   buffer; the session copies exactly the head (found incrementally by
//!   [`HeadScan`], so a head dribbled in a byte at a time costs O(n)) and
//!   leaves what follows where it is;
//! - bodies (Content-Length, chunked, until close) and tunnelled bytes go
//!   with [`Env::forward`]: the session sees the readable bytes of one side,
//!   at most as many as the other side's send buffer can take, walks them
//!   through the body framing, and hands the bytes to pass on to the sink,
//!   which writes them straight into the other send buffer. No body byte is
//!   copied anywhere else, so a session holds no more than two head buffers
//!   whatever the body size;
//! - heads Sluice writes (rewritten requests and responses, canned errors)
//!   wait in the session's output buffers until [`Env::send`] takes them.
//!
//! A client's next (pipelined) request is not read until the current
//! response is complete, so responses leave in request order.
//!
//! After warm-up (the buffers have grown to the largest head seen), a
//! request on a keep-alive connection allocates nothing: field lines are
//! parsed into a reused `Vec`, the route's response edits are looked up by
//! [`RouteId`] instead of cloned, and the sticky cookie is written straight
//! into the response head. `tests::steady_state_requests_do_not_allocate`
//! counts it.

use std::io::Write;
use std::net::IpAddr;

use crate::net::counters::Counter;

use super::http::{
    error_response, parse_request_head_reusing, parse_response_head_reusing, rewrite_request_head,
    rewrite_response_head, BodyKind, ChunkedDecoder, HeadEdits, HeadScan, HeaderEdits, HeaderLine,
    HttpError, Method, Proto, RequestRef, ResponseEdits, TlsFields, Version,
};
use super::plane::{L7Plane, ListenerPlane};
use super::router::{HttpsRedirect, RequestView, RouteId};
use super::tls::TlsFacts;

/// What the engine does with a session after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// The session is over: it has released what it held; the engine lets
    /// the client connection finish closing.
    Finished,
}

/// One of a session's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// What a session needs to know of a connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Still opening (SYN sent).
    Connecting,
    /// Open: bytes may still arrive.
    Open,
    /// The peer closed its side and everything it sent has been read.
    Eof,
    /// No connection (none attached, reset, or closed).
    Gone,
}

impl Link {
    /// Nothing more will arrive.
    fn ended(self) -> bool {
        matches!(self, Link::Eof | Link::Gone)
    }
}

/// The answer to [`Env::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// An idle pooled connection, established: the request can go at once.
    Pooled,
    /// A new connection, opening; [`Env::link`] says when it is up.
    Connecting,
    /// No connection could be started; the counter says why.
    Failed(Counter),
}

/// What to do with the upstream connection when a session is done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The exchange was complete and framed: back to the backend's idle
    /// pool (at most `max_idle` there), if the engine finds it clean.
    Pool { max_idle: u32 },
    /// FIN.
    Close,
    /// RST: the connection cannot be trusted (failed, abandoned, cut).
    Reset,
}

/// Per-backend accounting a session reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEvent {
    /// A request was sent its way (in flight from now on).
    Started,
    /// That request is no longer in flight.
    Finished,
    /// An attempt failed before a response head.
    Failure,
    /// It answered with a 5xx.
    Status5xx,
}

/// The engine side of a session, as the session sees it: its two
/// connections as byte queues, and the engine's services. Implemented by
/// the engine over smoltcp sockets and by the tests over `Vec`s.
pub trait Env {
    /// The state of a connection.
    fn link(&self, side: Side) -> Link;
    /// Offer the front of `side`'s receive buffer to `f`, which returns how
    /// many bytes it took (0: none, and stop); returns the total taken.
    fn recv(&mut self, side: Side, f: impl FnMut(&[u8]) -> usize) -> usize;
    /// Queue `bytes` on `side`; returns how many fit.
    fn send(&mut self, side: Side, bytes: &[u8]) -> usize;
    /// Move bytes from `from`'s receive buffer to the other side's send
    /// buffer: `f` sees readable bytes (no more than the other side can
    /// take), writes what is to be passed on to its sink (sub-slices of its
    /// input), and returns how many input bytes it used. Returns the total
    /// used, or `f`'s error (nothing more is read then).
    fn forward(
        &mut self,
        from: Side,
        f: impl FnMut(&[u8], &mut dyn FnMut(&[u8])) -> Result<usize, HttpError>,
    ) -> Result<usize, HttpError>;
    /// FIN after what is queued.
    fn close(&mut self, side: Side);
    /// RST.
    fn abort(&mut self, side: Side);

    /// A backend of cluster `cluster` for a request (`req` is what the
    /// balancer may hash on or read the sticky cookie from), not one of
    /// `exclude`; `None`: none is eligible.
    fn pick(
        &mut self,
        cluster: usize,
        req: &impl RequestView,
        peer: IpAddr,
        exclude: &[u32],
    ) -> Option<u32>;
    /// Attach an upstream connection to `backend`: pooled, or a new one.
    fn open(&mut self, backend: u32) -> Opened;
    /// Detach the upstream connection.
    fn release(&mut self, how: Release);
    /// The value of the sticky cookie that names `backend`.
    fn sticky_value(&self, backend: u32) -> Option<[u8; 16]>;
    /// A fresh number for `X-Request-Id`.
    fn request_id(&mut self) -> u64;
    /// A request arrived for a cluster with this retry budget.
    fn add_retry_budget(&mut self, percent: u32);
    /// Take one retry token; `false`: the budget is spent.
    fn spend_retry_token(&mut self) -> bool;
    fn count(&mut self, c: Counter);
    fn backend(&mut self, backend: u32, ev: BackendEvent);
}

/// The read-only context of one [`Session::poll`].
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The listener the client connected to (as of now: a reload may have
    /// changed it since the last step).
    pub listener: &'a ListenerPlane,
    pub l7: &'a L7Plane,
    /// Nanoseconds, the engine's clock.
    pub now: u64,
    /// The client connection is TLS (its bytes reach the session
    /// decrypted): the scheme is `https`, and these are its facts.
    pub tls: Option<&'a TlsFacts>,
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head (or idle between requests).
    Head,
    /// A new upstream connection is being opened.
    Connecting,
    /// The request is being sent; waiting for the response head.
    Waiting,
    /// Streaming the response body.
    Response,
    /// After a 101: bytes both ways, untouched.
    Tunnel,
    /// Sending what is left, then FIN.
    Closing,
}

/// How much of a body is left, and how to find its end.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    Done,
    Length(u64),
    /// Walked by the decoder; `true`: forward the decoded data (to an
    /// HTTP/1.0 client), else the chunked bytes as they are.
    Chunked(ChunkedDecoder, bool),
    UntilClose,
}

/// Feed `input` through `body`'s framing, handing the bytes to forward to
/// `out`; returns how many input bytes belong to the body.
fn pump(body: &mut Body, input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<usize, HttpError> {
    let n = match body {
        Body::Done => 0,
        Body::Length(rem) => {
            let n = (*rem).min(input.len() as u64) as usize;
            out(&input[..n]);
            *rem -= n as u64;
            if *rem == 0 {
                *body = Body::Done;
            }
            n
        }
        Body::Chunked(dec, decode) => {
            let n = if *decode {
                dec.feed(input, out)?
            } else {
                let n = dec.feed(input, &mut |_| {})?;
                out(&input[..n]);
                n
            };
            if dec.is_done() {
                *body = Body::Done;
            }
            n
        }
        Body::UntilClose => {
            out(input);
            input.len()
        }
    };
    Ok(n)
}

fn is_idempotent(m: Method) -> bool {
    matches!(
        m,
        Method::Get | Method::Head | Method::Options | Method::Trace | Method::Put | Method::Delete
    )
}

/// Why an upstream attempt ended without a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Timeout,
}

pub struct Session {
    peer: IpAddr,
    phase: Phase,
    /// The backend of the current attempt (in flight), or `NONE`.
    backend: u32,
    /// An upstream connection is attached.
    attached: bool,
    cluster: usize,
    /// The request head being read.
    cin: Vec<u8>,
    cscan: HeadScan,
    /// The response head being read.
    rin: Vec<u8>,
    rscan: HeadScan,
    /// Field lines of the last parsed head, for the next one.
    lines: Vec<HeaderLine>,
    up_out: Vec<u8>,
    up_pos: usize,
    cl_out: Vec<u8>,
    cl_pos: usize,
    /// The rewritten head of a request that may be sent again.
    replay: Vec<u8>,
    req_body: Body,
    resp_body: Body,
    method: Method,
    version: Version,
    client_keep: bool,
    upstream_keep: bool,
    upgrade: bool,
    retryable: bool,
    attempts: u32,
    tried: Vec<u32>,
    /// The route of the current request (its response edits).
    route: Option<RouteId>,
    /// The sticky cookie the request carried, when it has the shape of one
    /// of Sluice's.
    sticky_named: Option<[u8; 16]>,
    /// Add a Set-Cookie naming the backend to the response.
    set_cookie: bool,
    deadline: u64,
    armed: u64,
    head_started: u64,
    /// The upstream connection ended cleanly (both FINs): close it, do
    /// not reset it.
    upstream_clean: bool,
    /// The time of the current step, and the listener's idle timeout.
    now: u64,
    idle_ns: u64,
}

impl Session {
    pub fn new(peer: IpAddr, now: u64, idle_ns: u64) -> Session {
        Session {
            peer,
            phase: Phase::Head,
            backend: NONE,
            attached: false,
            cluster: 0,
            cin: Vec::new(),
            cscan: HeadScan::default(),
            rin: Vec::new(),
            rscan: HeadScan::default(),
            lines: Vec::new(),
            up_out: Vec::new(),
            up_pos: 0,
            cl_out: Vec::new(),
            cl_pos: 0,
            replay: Vec::new(),
            req_body: Body::Done,
            resp_body: Body::Done,
            method: Method::Get,
            version: Version::Http11,
            client_keep: true,
            upstream_keep: true,
            upgrade: false,
            retryable: false,
            attempts: 0,
            tried: Vec::new(),
            route: None,
            sticky_named: None,
            set_cookie: false,
            deadline: now + idle_ns,
            armed: u64::MAX,
            head_started: 0,
            upstream_clean: false,
            now,
            idle_ns,
        }
    }

    /// The deadline to arm, when it is earlier than what is armed (or what
    /// was armed has passed).
    pub fn wake_at(&mut self, now: u64) -> Option<u64> {
        if self.deadline < self.armed || self.armed <= now {
            self.armed = self.deadline;
            return Some(self.deadline);
        }
        None
    }

    /// The session's deadline (ns).
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Do what can be done now: see the module documentation.
    pub fn poll(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Step {
        self.now = cx.now;
        let step = self.run(cx, env);
        if step == Step::Finished {
            self.end(env);
        }
        step
    }

    /// The client connection is gone (the engine saw it closed or reset):
    /// give back what the session holds.
    pub fn end(&mut self, env: &mut impl Env) {
        self.release_backend(env);
        if self.attached {
            self.attached = false;
            env.release(if self.upstream_clean {
                Release::Close
            } else {
                Release::Reset
            });
        }
    }

    /// The listener went away in a reload: the client connection goes too.
    pub fn abort(&mut self, env: &mut impl Env) -> Step {
        let step = self.abort_client(env);
        self.end(env);
        step
    }

    fn run(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Step {
        if cx.now >= self.deadline {
            if let Some(step) = self.timeout(cx, env) {
                return step;
            }
        }
        for _ in 0..32 {
            self.flush(env, Side::Client);
            let progress = match self.phase {
                Phase::Head => self.head(cx, env),
                Phase::Connecting => self.connecting(cx, env),
                Phase::Waiting => self.waiting(cx, env),
                Phase::Response => self.response(cx, env),
                Phase::Tunnel => self.tunnel(cx, env),
                Phase::Closing => self.closing(env),
            };
            match progress {
                Ok(true) => continue,
                Ok(false) => return Step::Continue,
                Err(step) => return step,
            }
        }
        Step::Continue
    }

    /// Hand the queued output of `side` to the `Env`, as much as fits.
    /// Returns whether anything moved.
    fn flush(&mut self, env: &mut impl Env, side: Side) -> bool {
        let (out, pos) = match side {
            Side::Client => (&mut self.cl_out, &mut self.cl_pos),
            Side::Upstream if self.attached => (&mut self.up_out, &mut self.up_pos),
            Side::Upstream => return false,
        };
        if *pos >= out.len() {
            return false;
        }
        let n = env.send(side, &out[*pos..]);
        *pos += n;
        if *pos == out.len() {
            out.clear();
            *pos = 0;
        }
        n > 0
    }

    fn client_flushed(&self) -> bool {
        self.cl_pos >= self.cl_out.len()
    }

    fn set_deadline(&mut self, at: u64) {
        self.deadline = at;
    }

    fn idle_deadline(&mut self, cx: &Cx<'_>) {
        self.deadline = cx.now + cx.listener.timeouts.idle_ms * 1_000_000;
    }

    fn release_backend(&mut self, env: &mut impl Env) {
        if self.backend != NONE {
            env.backend(self.backend, BackendEvent::Finished);
            self.backend = NONE;
        }
    }

    fn release_upstream(&mut self, env: &mut impl Env, how: Release) {
        if self.attached {
            self.attached = false;
            env.release(how);
        }
    }

    // ------------------------------------------------------------- phases

    fn head(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        let now = cx.now;
        if !self.client_flushed() {
            return Ok(false);
        }
        let l = cx.listener;
        let limits = l.limits;
        let was_empty = self.cin.is_empty();
        let mut parse = false;
        let n = {
            let (cin, scan) = (&mut self.cin, &mut self.cscan);
            env.recv(Side::Client, |d| {
                let r = scan.take(cin, d, limits.max_head_bytes, limits.max_uri_bytes);
                parse |= r.parse;
                r.taken
            })
        };
        let client_eof = env.link(Side::Client).ended();
        if self.cin.is_empty() {
            if client_eof {
                // The client closed between requests.
                self.phase = Phase::Closing;
                return Ok(true);
            }
            if n == 0 && self.deadline <= now {
                self.set_deadline(now + l.timeouts.idle_ms * 1_000_000);
            }
            return Ok(false);
        }
        if was_empty || self.head_started == 0 {
            self.head_started = now;
            self.set_deadline(now + l.timeouts.header_ms * 1_000_000);
        }
        let incomplete = |this: &mut Session, env: &mut _| {
            if client_eof {
                return Err(this.abort_client(env));
            }
            Ok(n > 0)
        };
        if !parse {
            return incomplete(self, env);
        }
        let mut lines = std::mem::take(&mut self.lines);
        match parse_request_head_reusing(&self.cin, &limits, &mut lines) {
            Ok(None) => {
                self.lines = lines;
                if self.cin.len() >= limits.max_head_bytes {
                    return self.local_error(env, HttpError::HeadTooLarge.status());
                }
                if self.cscan.complete() {
                    // The scan found a blank line the parser did not take
                    // as the end of a head.
                    env.count(Counter::l7_requests);
                    return self.local_error(env, HttpError::BadStartLine.status());
                }
                incomplete(self, env)
            }
            Err(err) => {
                env.count(Counter::l7_requests);
                self.local_error(env, err.status())
            }
            Ok(Some(h)) => {
                env.count(Counter::l7_requests);
                self.start_request(cx, env, h)
            }
        }
    }

    fn start_request(
        &mut self,
        cx: &Cx<'_>,
        env: &mut impl Env,
        h: super::http::RequestHead,
    ) -> Result<bool, Step> {
        let l = cx.listener;
        let view = h.view(&self.cin);
        let sni = cx.tls.and_then(|t| t.sni.as_deref());
        let routed = l
            .router
            .route_id_sni(&view, sni)
            .and_then(|id| Some((id, l.router.action(id)?)));
        let Some((route, action)) = routed else {
            self.lines = h.into_lines();
            return self.local_error(env, 404);
        };
        if let Some(r) = action.redirect {
            let written = write_https_redirect(&view, r, &mut self.cl_out);
            self.lines = h.into_lines();
            if !written {
                return self.local_error(env, 400);
            }
            env.count(Counter::l7_https_redirects);
            return self.local_answer();
        }
        let ci = action.cluster as usize;
        let policy = cx.l7.cluster(ci);
        env.add_retry_budget(policy.retry_budget_percent);
        let Some(backend) = env.pick(ci, &view, self.peer, &[]) else {
            self.lines = h.into_lines();
            return self.local_error(env, 503);
        };
        let mut id = [0u8; 16];
        let v = env.request_id();
        for (i, o) in id.iter_mut().enumerate() {
            *o = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        self.up_out.clear();
        self.up_pos = 0;
        rewrite_request_head(
            &h,
            &self.cin,
            &HeadEdits {
                headers: &action.request_headers,
                rewrite_prefix: action.rewrite_prefix.as_ref(),
                client_addr: self.peer,
                server: (cx.listener.addr, cx.listener.port),
                proto: if cx.tls.is_some() {
                    Proto::Https
                } else {
                    Proto::Http
                },
                tls: cx.tls.filter(|_| l.tls_headers).map(|t| TlsFields {
                    version: t.version,
                    cipher: t.cipher,
                    sni: t.sni.as_deref(),
                    client_subject: t.client_subject.as_deref(),
                }),
                request_id: &id,
            },
            &mut self.up_out,
        );
        self.method = h.method();
        self.version = h.version();
        self.client_keep = h.keep_alive();
        self.upgrade = h.is_upgrade();
        self.req_body = match h.body() {
            BodyKind::ContentLength(0) | BodyKind::None | BodyKind::CloseDelimited => Body::Done,
            BodyKind::ContentLength(n) => Body::Length(n),
            BodyKind::Chunked => Body::Chunked(ChunkedDecoder::for_request(&l.limits), false),
        };
        self.retryable = is_idempotent(self.method) && self.req_body == Body::Done && !self.upgrade;
        self.replay.clear();
        if self.retryable {
            self.replay.extend_from_slice(&self.up_out);
        }
        self.route = Some(route);
        self.sticky_named = policy
            .sticky_cookie
            .as_ref()
            .and_then(|name| view.cookie(name))
            .and_then(|v| <[u8; 16]>::try_from(v).ok());
        self.cluster = ci;
        self.attempts = 0;
        self.tried.clear();
        self.lines = h.into_lines();
        self.cin.clear();
        self.cscan = HeadScan::default();
        self.head_started = 0;
        if let Body::Chunked(..) = &self.req_body {
            // Chunked bytes that came with the head are checked before the
            // head goes anywhere: a bad chunk is a 400 without a backend.
            let mut probe = self.req_body.clone();
            let mut bad = None;
            env.recv(Side::Client, |d| {
                if let Err(e) = pump(&mut probe, d, &mut |_| {}) {
                    bad = Some(e);
                }
                0
            });
            if let Some(err) = bad {
                return self.local_error(env, err.status());
            }
        }
        if self.upgrade {
            // Bytes sent ahead of the 101 belong to the tunnel: they go
            // behind the head.
            let (out, max) = (&mut self.up_out, l.limits.max_head_bytes);
            let mut room = max;
            env.recv(Side::Client, |d| {
                let n = d.len().min(room);
                out.extend_from_slice(&d[..n]);
                room -= n;
                n
            });
        }
        self.attach(cx, env, backend, true)
    }

    /// Send the request to `backend`: a pooled connection if there is one,
    /// else a new one. `first`: the backend the router's pick chose (a
    /// sticky cookie naming it needs no renewal), not a retry.
    fn attach(
        &mut self,
        cx: &Cx<'_>,
        env: &mut impl Env,
        backend: u32,
        first: bool,
    ) -> Result<bool, Step> {
        let now = cx.now;
        let policy = cx.l7.cluster(self.cluster);
        self.backend = backend;
        self.tried.push(backend);
        env.backend(backend, BackendEvent::Started);
        self.set_cookie = policy.sticky_cookie.is_some()
            && env
                .sticky_value(backend)
                .is_some_and(|v| !(first && self.sticky_named == Some(v)));
        self.rin.clear();
        self.rscan = HeadScan::default();
        match env.open(backend) {
            Opened::Pooled => {
                self.attached = true;
                self.phase = Phase::Waiting;
                self.set_deadline(now + policy.response_timeout_ms * 1_000_000);
                Ok(true)
            }
            Opened::Connecting => {
                self.attached = true;
                self.phase = Phase::Connecting;
                self.set_deadline(now + policy.connect_timeout_ms * 1_000_000);
                Ok(true)
            }
            Opened::Failed(c) => {
                env.count(c);
                self.phase = Phase::Connecting;
                self.upstream_failed(cx, env, Failure::Refused)
            }
        }
    }

    fn connecting(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        self.give_up_if_client_gone(env)?;
        match env.link(Side::Upstream) {
            Link::Open => {
                let policy = cx.l7.cluster(self.cluster);
                self.phase = Phase::Waiting;
                self.set_deadline(cx.now + policy.response_timeout_ms * 1_000_000);
                Ok(true)
            }
            Link::Connecting => Ok(false),
            Link::Eof | Link::Gone => {
                env.count(Counter::l7_upstream_connect_failed);
                self.upstream_failed(cx, env, Failure::Refused)
            }
        }
    }

    /// Request body from the client to the upstream connection.
    fn pump_request(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        if self.req_body == Body::Done || self.up_pos < self.up_out.len() || !self.attached {
            return Ok(false);
        }
        let body = &mut self.req_body;
        let moved = match env.forward(Side::Client, |d, sink| pump(body, d, &mut |b| sink(b))) {
            Ok(n) => n,
            Err(err) => return self.local_error(env, err.status()),
        };
        if moved > 0 {
            let policy = cx.l7.cluster(self.cluster);
            if self.phase == Phase::Waiting {
                self.set_deadline(cx.now + policy.response_timeout_ms * 1_000_000);
            }
            return Ok(true);
        }
        if self.req_body != Body::Done && env.link(Side::Client).ended() {
            // The client gave up in the middle of its body.
            return Err(self.abort_client(env));
        }
        Ok(false)
    }

    /// The client closed its side before the response head arrived (the
    /// whole request was read): nobody will read the answer, so give the
    /// backend connection up instead of waiting for it (nginx's default).
    fn give_up_if_client_gone(&mut self, env: &mut impl Env) -> Result<(), Step> {
        let gone = !self.upgrade
            && self.req_body == Body::Done
            && self.cin.is_empty()
            && env.link(Side::Client).ended();
        if gone {
            env.count(Counter::l7_client_aborts);
            env.close(Side::Client);
            return Err(Step::Finished);
        }
        Ok(())
    }

    fn waiting(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        self.give_up_if_client_gone(env)?;
        let mut progress = self.flush(env, Side::Upstream);
        progress |= self.pump_request(cx, env)?;
        let limits = cx.listener.limits;
        if !self.attached {
            return self.upstream_failed(cx, env, Failure::Refused);
        }
        let mut parse = false;
        let n = {
            let (rin, scan) = (&mut self.rin, &mut self.rscan);
            env.recv(Side::Upstream, |d| {
                let r = scan.take(rin, d, limits.max_head_bytes, usize::MAX);
                parse |= r.parse;
                r.taken
            })
        };
        progress |= n > 0;
        let up_eof = env.link(Side::Upstream).ended();
        if self.rin.is_empty() {
            if up_eof {
                return self.upstream_failed(cx, env, Failure::Refused);
            }
            return Ok(progress);
        }
        if !parse && !up_eof {
            return Ok(progress);
        }
        let mut lines = std::mem::take(&mut self.lines);
        match parse_response_head_reusing(&self.rin, &limits, self.method, &mut lines) {
            Ok(None) => {
                self.lines = lines;
                if self.rin.len() >= limits.max_head_bytes || up_eof || self.rscan.complete() {
                    env.count(Counter::l7_bad_responses);
                    return self.local_error(env, 502);
                }
                Ok(progress)
            }
            Err(_) => {
                env.count(Counter::l7_bad_responses);
                self.local_error(env, 502)
            }
            Ok(Some(h)) => self.response_head(cx, env, h),
        }
    }

    fn response_head(
        &mut self,
        cx: &Cx<'_>,
        env: &mut impl Env,
        h: super::http::ResponseHead,
    ) -> Result<bool, Step> {
        let policy = cx.l7.cluster(self.cluster);
        let limits = cx.listener.limits;
        let status = h.status();
        let empty = HeaderEdits::default();
        // The head is all `rin` holds: what follows stays in the socket.
        let done_with_head = |this: &mut Session, h: super::http::ResponseHead| {
            this.lines = h.into_lines();
            this.rin.clear();
            this.rscan = HeadScan::default();
        };
        if h.is_interim() && status != 101 {
            // 100 Continue and other interim responses go to HTTP/1.1
            // clients; the final response follows.
            if self.version == Version::Http11 {
                rewrite_response_head(
                    &h,
                    &self.rin,
                    &ResponseEdits {
                        headers: &empty,
                        client_version: self.version,
                        keep_alive: true,
                    },
                    &mut self.cl_out,
                );
            }
            done_with_head(self, h);
            return Ok(true);
        }
        // Only a request that can be sent again as it was (idempotent, no
        // body) is retried on a status; anything else gets the answer.
        if self.retryable
            && policy.retry_on_status.contains(&status)
            && self.attempts < policy.retries
            && env.spend_retry_token()
        {
            env.count(Counter::l7_retried_status);
            done_with_head(self, h);
            self.release_upstream(env, Release::Reset);
            self.release_backend(env);
            return self.retry(cx, env);
        }
        if status >= 500 {
            env.backend(self.backend, BackendEvent::Status5xx);
        }
        env.count(match status {
            100..=199 => Counter::l7_responses_1xx,
            200..=299 => Counter::l7_responses_2xx,
            300..=399 => Counter::l7_responses_3xx,
            400..=499 => Counter::l7_responses_4xx,
            _ => Counter::l7_responses_5xx,
        });
        let edits = self
            .route
            .and_then(|id| cx.listener.router.action(id))
            .map_or(&empty, |a| &a.response_headers);
        if status == 101 {
            if !self.upgrade {
                env.count(Counter::l7_bad_responses);
                done_with_head(self, h);
                return self.local_error(env, 502);
            }
            rewrite_response_head(
                &h,
                &self.rin,
                &ResponseEdits {
                    headers: edits,
                    client_version: self.version,
                    keep_alive: true,
                },
                &mut self.cl_out,
            );
            done_with_head(self, h);
            self.phase = Phase::Tunnel;
            self.req_body = Body::Done;
            env.count(Counter::l7_upgrades);
            self.idle_deadline(cx);
            return Ok(true);
        }
        let framing = rewrite_response_head(
            &h,
            &self.rin,
            &ResponseEdits {
                headers: edits,
                client_version: self.version,
                keep_alive: self.client_keep,
            },
            &mut self.cl_out,
        );
        if std::mem::take(&mut self.set_cookie) {
            let value = env.sticky_value(self.backend);
            let out = &mut self.cl_out;
            if let (Some(name), Some(value), true) =
                (&policy.sticky_cookie, value, out.ends_with(b"\r\n\r\n"))
            {
                out.truncate(out.len() - 2);
                out.extend_from_slice(b"Set-Cookie: ");
                out.extend_from_slice(name);
                out.push(b'=');
                out.extend_from_slice(&value);
                out.extend_from_slice(b"; Path=/; HttpOnly");
                if let Some(age) = policy.sticky_max_age_s {
                    let _ = write!(out, "; Max-Age={age}");
                }
                out.extend_from_slice(b"\r\n\r\n");
            }
        }
        self.client_keep = framing.keep_alive;
        self.upstream_keep = h.keep_alive();
        self.resp_body = match (h.body(), framing.body) {
            (BodyKind::None, _) | (BodyKind::ContentLength(0), _) => Body::Done,
            (BodyKind::ContentLength(n), _) => Body::Length(n),
            (BodyKind::Chunked, BodyKind::Chunked) => {
                Body::Chunked(ChunkedDecoder::new(u64::MAX, limits.max_head_bytes), false)
            }
            (BodyKind::Chunked, _) => {
                Body::Chunked(ChunkedDecoder::new(u64::MAX, limits.max_head_bytes), true)
            }
            (BodyKind::CloseDelimited, _) => {
                self.upstream_keep = false;
                Body::UntilClose
            }
        };
        done_with_head(self, h);
        self.phase = Phase::Response;
        self.idle_deadline(cx);
        Ok(true)
    }

    fn response(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        let mut progress = self.flush(env, Side::Upstream);
        progress |= self.pump_request(cx, env)?;
        if self.resp_body != Body::Done {
            if !self.client_flushed() {
                return Ok(progress);
            }
            if !self.attached {
                return Err(self.abort_client(env));
            }
            let body = &mut self.resp_body;
            let moved = match env.forward(Side::Upstream, |d, sink| pump(body, d, &mut |b| sink(b)))
            {
                Ok(n) => n,
                Err(_) => {
                    env.count(Counter::l7_bad_responses);
                    return Err(self.abort_client(env));
                }
            };
            if moved > 0 {
                progress = true;
                self.idle_deadline(cx);
            }
            if self.resp_body != Body::Done && env.link(Side::Upstream).ended() {
                if self.resp_body == Body::UntilClose {
                    self.resp_body = Body::Done;
                } else {
                    // The backend went away in the middle of the body: the
                    // client must not take a truncated body as complete.
                    env.count(Counter::l7_truncated_responses);
                    return Err(self.abort_client(env));
                }
            }
        }
        if self.resp_body != Body::Done {
            return Ok(progress);
        }
        self.finish_response(cx, env);
        Ok(true)
    }

    fn finish_response(&mut self, cx: &Cx<'_>, env: &mut impl Env) {
        let policy = cx.l7.cluster(self.cluster);
        self.release_backend(env);
        // A refused upgrade may have had bytes sent behind its head: the
        // backend would read them as a request, so the connection is done.
        // The engine also checks that nothing unread is left (bytes beyond
        // the response mean the connection cannot be trusted).
        let reusable = self.upstream_keep
            && !self.upgrade
            && self.req_body == Body::Done
            && self.up_pos >= self.up_out.len();
        self.release_upstream(
            env,
            if reusable {
                Release::Pool {
                    max_idle: policy.max_idle_per_backend,
                }
            } else {
                Release::Close
            },
        );
        self.up_out.clear();
        self.up_pos = 0;
        self.phase = if self.client_keep && self.req_body == Body::Done {
            Phase::Head
        } else {
            Phase::Closing
        };
        self.idle_deadline(cx);
    }

    fn tunnel(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        let mut progress = self.flush(env, Side::Upstream);
        if !self.client_flushed() || self.up_pos < self.up_out.len() {
            return Ok(progress);
        }
        if !self.attached {
            return Err(self.abort_client(env));
        }
        let mut raw = Body::UntilClose;
        let a = env
            .forward(Side::Client, |d, sink| pump(&mut raw, d, &mut |b| sink(b)))
            .unwrap_or(0);
        let b = env
            .forward(Side::Upstream, |d, sink| {
                pump(&mut raw, d, &mut |b| sink(b))
            })
            .unwrap_or(0);
        if a + b > 0 {
            progress = true;
            self.idle_deadline(cx);
        }
        let c_eof = env.link(Side::Client).ended();
        let u_eof = env.link(Side::Upstream).ended();
        // Half-closes pass through: the side that ended has its FIN
        // forwarded (after what it sent), and the other direction keeps
        // flowing until it ends too (a WebSocket close handshake).
        if c_eof {
            env.close(Side::Upstream);
        }
        if u_eof {
            env.close(Side::Client);
        }
        if c_eof && u_eof {
            self.upstream_clean = true;
            return Err(Step::Finished);
        }
        Ok(progress)
    }

    fn closing(&mut self, env: &mut impl Env) -> Result<bool, Step> {
        if !self.client_flushed() {
            return Ok(false);
        }
        env.close(Side::Client);
        Err(Step::Finished)
    }

    // ----------------------------------------------------- failures, ends

    /// The upstream attempt failed before a response head.
    fn upstream_failed(
        &mut self,
        cx: &Cx<'_>,
        env: &mut impl Env,
        why: Failure,
    ) -> Result<bool, Step> {
        let policy = cx.l7.cluster(self.cluster);
        let nothing_sent = self.phase == Phase::Connecting;
        if self.backend != NONE {
            env.backend(self.backend, BackendEvent::Failure);
        }
        self.release_upstream(env, Release::Reset);
        self.release_backend(env);
        env.count(Counter::l7_upstream_failures);
        let replayable = nothing_sent || (self.retryable && self.rin.is_empty());
        if replayable && self.attempts < policy.retries && env.spend_retry_token() {
            if !nothing_sent {
                self.up_out.clear();
                self.up_out.extend_from_slice(&self.replay);
                self.up_pos = 0;
            }
            return self.retry(cx, env);
        }
        if !self.retryable && !nothing_sent {
            env.count(Counter::l7_not_retried);
        }
        self.local_error(env, if why == Failure::Timeout { 504 } else { 502 })
    }

    /// Another attempt on another backend (`up_out` holds the request; the
    /// retry token is spent).
    fn retry(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Result<bool, Step> {
        self.attempts += 1;
        env.count(Counter::l7_retries);
        if self.up_pos != 0 || self.up_out.is_empty() {
            self.up_out.clear();
            self.up_out.extend_from_slice(&self.replay);
            self.up_pos = 0;
        }
        self.rin.clear();
        self.rscan = HeadScan::default();
        // The router already ran; pick again, avoiding what failed.
        let tried = std::mem::take(&mut self.tried);
        let pick = env.pick(self.cluster, &NoView, self.peer, &tried);
        self.tried = tried;
        match pick {
            Some(b) => self.attach(cx, env, b, false),
            None => self.local_error(env, 502),
        }
    }

    /// Answer the client with a canned error and close.
    fn local_error(&mut self, env: &mut impl Env, status: u16) -> Result<bool, Step> {
        env.count(if status < 500 {
            Counter::l7_local_4xx
        } else {
            Counter::l7_local_5xx
        });
        match status {
            408 => env.count(Counter::l7_header_timeouts),
            502 => env.count(Counter::l7_local_502),
            503 => env.count(Counter::l7_local_503),
            504 => env.count(Counter::l7_local_504),
            _ => {}
        }
        if matches!(self.phase, Phase::Response | Phase::Tunnel) {
            // Part of a response is already out; the only honest signal
            // left is a reset.
            return Err(self.abort_client(env));
        }
        if self.attached {
            // Reset now; released when the session ends.
            env.abort(Side::Upstream);
        }
        self.cl_out.extend_from_slice(error_response(status));
        self.client_keep = false;
        self.req_body = Body::Done;
        self.phase = Phase::Closing;
        // The client gets an idle period to read the answer.
        self.deadline = self.now + self.idle_ns;
        Ok(true)
    }

    /// An answer of Sluice's own is in `cl_out` (not an error): send it,
    /// then close, as after a local error.
    fn local_answer(&mut self) -> Result<bool, Step> {
        self.client_keep = false;
        self.req_body = Body::Done;
        self.phase = Phase::Closing;
        self.deadline = self.now + self.idle_ns;
        Ok(true)
    }

    fn abort_client(&mut self, env: &mut impl Env) -> Step {
        env.abort(Side::Client);
        env.count(Counter::l7_aborted);
        Step::Finished
    }

    /// A deadline passed. `None`: not really (moved on since), carry on.
    fn timeout(&mut self, cx: &Cx<'_>, env: &mut impl Env) -> Option<Step> {
        let r = match self.phase {
            Phase::Head if self.cin.is_empty() => {
                // Idle keep-alive connection: close it quietly.
                env.count(Counter::l7_idle_closed);
                self.phase = Phase::Closing;
                Ok(true)
            }
            Phase::Head => self.local_error(env, 408),
            Phase::Connecting => {
                env.count(Counter::l7_upstream_timeouts);
                self.upstream_failed(cx, env, Failure::Timeout)
            }
            Phase::Waiting => {
                env.count(Counter::l7_upstream_timeouts);
                self.local_error(env, 504)
            }
            Phase::Response | Phase::Tunnel | Phase::Closing => {
                env.count(Counter::l7_idle_closed);
                Err(self.abort_client(env))
            }
        };
        match r {
            Ok(_) => {
                // Closing and errors are flushed by the loop; give the
                // client an idle period to read them, unless the handler
                // set a deadline of its own (a retry's connect timeout).
                if self.deadline <= cx.now {
                    self.idle_deadline(cx);
                }
                None
            }
            Err(step) => Some(step),
        }
    }
}

/// A request view with nothing in it (retries pick by policy alone; the
/// sticky cookie and hash key no longer matter once a backend failed).
struct NoView;

impl RequestView for NoView {
    fn method(&self) -> &[u8] {
        b""
    }
    fn path(&self) -> &[u8] {
        b""
    }
    fn query(&self) -> Option<&[u8]> {
        None
    }
    fn host(&self) -> Option<&[u8]> {
        None
    }
    fn header_values<'s>(&'s self, _name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        std::iter::empty()
    }
}

#[cfg(test)]
mod tests;

/// Append to `out` the answer redirecting `req` to `https://` on the same
/// host (its port replaced by `r.port`) and target; `false` (nothing
/// written) if the request has no host to redirect to. The host and path
/// were checked by the parser (no CR, LF or space can be in them).
fn write_https_redirect(req: &RequestRef<'_>, r: HttpsRedirect, out: &mut Vec<u8>) -> bool {
    let Some(host) = req.host().map(strip_port).filter(|h| !h.is_empty()) else {
        return false;
    };
    let reason = if r.status == 301 {
        "Moved Permanently"
    } else {
        "Permanent Redirect"
    };
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\nLocation: https://", r.status);
    out.extend_from_slice(host);
    if let Some(port) = r.port.filter(|&p| p != 443) {
        let _ = write!(out, ":{port}");
    }
    out.extend_from_slice(req.path());
    if let Some(q) = req.query() {
        out.push(b'?');
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    true
}

/// A `Host` value without its port: `a.example:80` → `a.example`,
/// `[::1]:80` → `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod pump_tests {
    use super::*;

    #[test]
    fn pump_length_stops_at_the_end() {
        let mut b = Body::Length(5);
        let mut out = Vec::new();
        let n = pump(&mut b, b"hello world", &mut |x| out.extend_from_slice(x)).unwrap();
        assert_eq!(n, 5);
        assert_eq!(out, b"hello");
        assert_eq!(b, Body::Done);
    }

    #[test]
    fn pump_chunked_raw_and_decoded() {
        let body = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut raw = Body::Chunked(ChunkedDecoder::new(u64::MAX, 1024), false);
        let mut out = Vec::new();
        let n = pump(&mut raw, body, &mut |x| out.extend_from_slice(x)).unwrap();
        assert_eq!(&body[..n], b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(out, &body[..n]);
        assert_eq!(raw, Body::Done);
        let mut dec = Body::Chunked(ChunkedDecoder::new(u64::MAX, 1024), true);
        let mut out = Vec::new();
        pump(&mut dec, body, &mut |x| out.extend_from_slice(x)).unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn pump_chunked_rejects_bad_sizes() {
        let mut b = Body::Chunked(ChunkedDecoder::new(u64::MAX, 1024), false);
        assert!(pump(&mut b, b"zz\r\n", &mut |_| {}).is_err());
    }
}
