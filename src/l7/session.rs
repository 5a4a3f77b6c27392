//! One HTTP/1.1 client connection and the upstream connection serving its
//! current request: the proxy state machine.
//!
//! ```text
//!   Head ──request head──▶ (route, pick) ──pooled──▶ Waiting ──response head──▶ Response
//!     ▲                         │                      ▲   │                       │
//!     │                         └──new──▶ Connecting ──┘   └─101──▶ Tunnel          │
//!     └──────────────── keep-alive ◀──────────── body done ◀────────────────────────┘
//!   any phase ──error, timeout, no keep-alive──▶ Closing (flush, FIN) / abort
//! ```
//!
//! Bytes move in bounded steps: a request head is read into a buffer of at
//! most `max_head_bytes`; bodies go straight from one socket's receive
//! buffer into the other's send buffer, only as much as fits, so memory per
//! session is the socket buffers plus two head buffers, whatever the body
//! size. A client's next (pipelined) request is not read until the current
//! response is complete, so responses leave in request order.

use std::net::IpAddr;

use smoltcp::socket::tcp::{self, State};

use crate::l4::snat::SnatPorts;
use crate::net::counters::{Counter, BE_L7_5XX, BE_L7_FAILURES, BE_L7_INFLIGHT, BE_L7_REQUESTS};
use crate::net::output::Egress;

use super::balance::sticky_value;
use super::engine::Engine;
use super::http::{
    error_response, parse_request_head, parse_response_head, rewrite_request_head,
    rewrite_response_head, BodyKind, ChunkedDecoder, HeadEdits, HeaderEdits, HttpError, Method,
    Proto, ResponseEdits, Version,
};
use super::tcp::{Owner, NONE};

/// What the engine does with a session after a step.
pub enum Step {
    Continue,
    /// The session is over; the engine closes what is left.
    Finished,
}

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

/// Read up to `max - out.len()` bytes from `s` into `out`.
fn recv_into(s: &mut tcp::Socket<'_>, out: &mut Vec<u8>, max: usize) -> usize {
    let mut total = 0;
    for _ in 0..2 {
        let room = max.saturating_sub(out.len());
        if room == 0 || !s.can_recv() {
            break;
        }
        let n = s
            .recv(|d| {
                let n = d.len().min(room);
                out.extend_from_slice(&d[..n]);
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

/// Move body bytes from `src`'s receive buffer to `dst`'s send buffer.
fn pump_sockets(
    src: &mut tcp::Socket<'_>,
    dst: &mut tcp::Socket<'_>,
    body: &mut Body,
) -> Result<usize, HttpError> {
    let mut total = 0;
    for _ in 0..2 {
        if *body == Body::Done || !src.can_recv() || !dst.may_send() {
            break;
        }
        let room = dst.send_capacity() - dst.send_queue();
        if room == 0 {
            break;
        }
        let r = src.recv(|d| {
            let win = &d[..d.len().min(room)];
            match pump(body, win, &mut |b| {
                let _ = dst.send_slice(b);
            }) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
        });
        match r {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(total)
}

/// Hand `out[*pos..]` to connection `slot`'s socket, as much as fits;
/// `out` is emptied once all of it is through. Returns whether anything
/// moved.
fn flush(e: &mut Engine, slot: u32, out: &mut Vec<u8>, pos: &mut usize) -> bool {
    if slot == NONE || *pos >= out.len() {
        return false;
    }
    let Some(c) = e.conns.get(slot) else {
        return false;
    };
    let n = c.socket().send_slice(&out[*pos..]).unwrap_or(0);
    *pos += n;
    if *pos == out.len() {
        out.clear();
        *pos = 0;
    }
    n > 0
}

/// The peer has closed its side and everything it sent has been read.
fn eof(s: &tcp::Socket<'_>) -> bool {
    !s.may_recv() && s.recv_queue() == 0
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
    pub id: u32,
    pub client: u32,
    pub upstream: u32,
    listener: u16,
    peer: IpAddr,
    phase: Phase,
    backend: u32,
    cluster: usize,
    /// Client bytes read and not yet used: a request head, then body or
    /// the next request.
    cin: Vec<u8>,
    /// Upstream bytes read: a response head.
    rin: Vec<u8>,
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
    resp_edits: Option<HeaderEdits>,
    set_cookie: Option<Vec<u8>>,
    deadline: u64,
    armed: u64,
    head_started: u64,
    /// The upstream connection ended cleanly (both FINs): close it, do
    /// not reset it.
    pub upstream_clean: bool,
    /// The time of the current step, and the listener's idle timeout.
    now: u64,
    idle_ns: u64,
}

impl Session {
    pub fn new(
        id: u32,
        client: u32,
        listener: u16,
        peer: IpAddr,
        now: u64,
        idle_ns: u64,
    ) -> Session {
        Session {
            id,
            client,
            upstream: NONE,
            listener,
            peer,
            phase: Phase::Head,
            backend: NONE,
            cluster: 0,
            cin: Vec::new(),
            rin: Vec::new(),
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
            resp_edits: None,
            set_cookie: None,
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

    pub fn release_backend(&mut self, e: &mut Engine) {
        if self.backend != NONE {
            e.balancer.finished(self.backend);
            e.backends.l7_add(self.backend, BE_L7_INFLIGHT, -1);
            self.backend = NONE;
        }
    }

    pub fn step(&mut self, e: &mut Engine, eg: &mut Egress<'_>, snat: &mut SnatPorts) -> Step {
        let now = eg.now_ns;
        self.now = now;
        let alive = e
            .conns
            .get_ref(self.client)
            .is_some_and(|c| !matches!(c.sock().state(), State::Closed | State::TimeWait));
        if !alive {
            return Step::Finished;
        }
        // The listener by the address and port the client connected to, not
        // by a position a reload may have changed; gone: the connection
        // goes too.
        let key = e.conns.get_ref(self.client).map(|c| c.key);
        match key.and_then(|k| eg.plane.l7.listener(k.local, k.lport)) {
            Some(li) => self.listener = li,
            None => return self.abort_client(e),
        }
        if now >= self.deadline {
            if let Some(step) = self.timeout(e, eg, snat) {
                return step;
            }
        }
        for _ in 0..32 {
            self.flush_client(e);
            let progress = match self.phase {
                Phase::Head => self.head(e, eg, snat),
                Phase::Connecting => self.connecting(e, eg, snat),
                Phase::Waiting => self.waiting(e, eg, snat),
                Phase::Response => self.response(e, eg, snat),
                Phase::Tunnel => self.tunnel(e, eg),
                Phase::Closing => self.closing(e, eg),
            };
            match progress {
                Ok(true) => continue,
                Ok(false) => return Step::Continue,
                Err(step) => return step,
            }
        }
        Step::Continue
    }

    fn listener<'p>(&self, eg: &Egress<'p>) -> &'p crate::l7::plane::ListenerPlane {
        let plane: &'p crate::net::plane::Plane = eg.plane;
        &plane.l7.listeners[self.listener as usize]
    }

    fn flush_client(&mut self, e: &mut Engine) -> bool {
        flush(e, self.client, &mut self.cl_out, &mut self.cl_pos)
    }

    fn client_flushed(&self) -> bool {
        self.cl_pos >= self.cl_out.len()
    }

    fn flush_up(&mut self, e: &mut Engine) -> bool {
        flush(e, self.upstream, &mut self.up_out, &mut self.up_pos)
    }

    fn set_deadline(&mut self, at: u64) {
        self.deadline = at;
    }

    // ------------------------------------------------------------- phases

    fn head(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Result<bool, Step> {
        let now = eg.now_ns;
        if !self.client_flushed() {
            return Ok(false);
        }
        let l = self.listener(eg);
        let limits = l.limits;
        let Some(c) = e.conns.get(self.client) else {
            return Err(Step::Finished);
        };
        let was_empty = self.cin.is_empty();
        let n = recv_into(c.socket(), &mut self.cin, limits.max_head_bytes);
        let client_eof = eof(c.sock());
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
        match parse_request_head(&self.cin, &limits) {
            Ok(None) => {
                if self.cin.len() >= limits.max_head_bytes {
                    return self.local_error(e, HttpError::HeadTooLarge.status());
                }
                if client_eof {
                    return Err(self.abort_client(e));
                }
                Ok(n > 0)
            }
            Err(err) => {
                e.counters.inc(Counter::l7_requests);
                self.local_error(e, err.status())
            }
            Ok(Some(h)) => {
                e.counters.inc(Counter::l7_requests);
                self.start_request(e, eg, snat, h)
            }
        }
    }

    fn start_request(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        h: super::http::RequestHead,
    ) -> Result<bool, Step> {
        let plane: &crate::net::plane::Plane = eg.plane;
        let l = self.listener(eg);
        let view = h.view(&self.cin);
        let Some(action) = l.router.route(&view) else {
            return self.local_error(e, 404);
        };
        let ci = action.cluster as usize;
        let policy = plane.l7.cluster(ci);
        e.retry_tokens = (e.retry_tokens + policy.retry_budget_percent as f64 / 100.0).min(100.0);
        let rand = e.random();
        let Some(backend) = e.balancer.pick(
            &plane.services,
            policy,
            &e.health,
            ci,
            &view,
            self.peer,
            &[],
            rand,
        ) else {
            return self.local_error(e, 503);
        };
        let mut id = [0u8; 16];
        e.request_seq = e.request_seq.wrapping_add(1);
        let v = e.request_seq ^ (rand & 0xffff_ffff_0000_0000);
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
                proto: Proto::Http,
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
        self.resp_edits =
            (!action.response_headers.is_empty()).then(|| action.response_headers.clone());
        let sticky_named = policy
            .sticky_cookie
            .as_ref()
            .and_then(|name| super::router::RequestView::cookie(&view, name).map(|v| v.to_vec()));
        self.cluster = ci;
        self.attempts = 0;
        self.tried.clear();
        let head_len = h.head_len();
        drop(h);
        self.cin.drain(..head_len);
        self.head_started = 0;
        if self.req_body != Body::Done && !self.cin.is_empty() {
            let out = &mut self.up_out;
            match pump(&mut self.req_body, &self.cin, &mut |b| {
                out.extend_from_slice(b)
            }) {
                Ok(n) => {
                    self.cin.drain(..n);
                }
                Err(err) => return self.local_error(e, err.status()),
            }
        }
        if self.upgrade && !self.cin.is_empty() {
            // Bytes sent ahead of the 101 belong to the tunnel.
            self.up_out.extend_from_slice(&self.cin);
            self.cin.clear();
        }
        self.attach(e, eg, snat, backend, sticky_named.as_deref())
    }

    /// Send the request to `backend`: a pooled connection if there is one,
    /// else a new one.
    fn attach(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        backend: u32,
        sticky_named: Option<&[u8]>,
    ) -> Result<bool, Step> {
        let now = eg.now_ns;
        let plane: &crate::net::plane::Plane = eg.plane;
        let policy = plane.l7.cluster(self.cluster);
        self.backend = backend;
        self.tried.push(backend);
        e.balancer.started(backend);
        e.backends.l7_add(backend, BE_L7_REQUESTS, 1);
        e.backends.l7_add(backend, BE_L7_INFLIGHT, 1);
        self.set_cookie = None;
        if let (Some(name), Some(b)) = (&policy.sticky_cookie, plane.services.backend(backend)) {
            let value = sticky_value(b.addr, b.port.unwrap_or(0));
            if sticky_named != Some(&value[..]) {
                let mut c = Vec::with_capacity(64);
                c.extend_from_slice(name);
                c.push(b'=');
                c.extend_from_slice(&value);
                c.extend_from_slice(b"; Path=/; HttpOnly");
                if let Some(age) = policy.sticky_max_age_s {
                    c.extend_from_slice(format!("; Max-Age={age}").as_bytes());
                }
                self.set_cookie = Some(c);
            }
        }
        let owner = Owner::Upstream {
            session: self.id,
            backend,
        };
        if let Some(slot) = e.pooled(eg, snat, backend) {
            if let Some(c) = e.conns.get(slot) {
                c.owner = owner;
                super::engine::abort_timer(c, false);
            }
            self.upstream = slot;
            self.phase = Phase::Waiting;
            self.rin.clear();
            self.set_deadline(now + policy.response_timeout_ms * 1_000_000);
            return Ok(true);
        }
        let l = self.listener(eg);
        let bufs = (l.buffers.upstream_rx, l.buffers.upstream_tx);
        match e.connect(eg, snat, self.listener, backend, owner, bufs) {
            Ok(slot) => {
                self.upstream = slot;
                self.phase = Phase::Connecting;
                self.rin.clear();
                self.set_deadline(now + policy.connect_timeout_ms * 1_000_000);
                Ok(true)
            }
            Err(c) => {
                e.counters.inc(c);
                self.phase = Phase::Connecting;
                self.upstream_failed(e, eg, snat, Failure::Refused)
            }
        }
    }

    fn connecting(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Result<bool, Step> {
        self.give_up_if_client_gone(e)?;
        let state = e.conns.get_ref(self.upstream).map(|c| c.sock().state());
        match state {
            Some(State::Established) => {
                if let Some(u) = e.conns.get(self.upstream) {
                    super::engine::abort_timer(u, false);
                }
                let policy = eg.plane.l7.cluster(self.cluster);
                self.phase = Phase::Waiting;
                self.set_deadline(eg.now_ns + policy.response_timeout_ms * 1_000_000);
                Ok(true)
            }
            Some(State::SynSent) => Ok(false),
            _ => {
                e.counters.inc(Counter::l7_upstream_connect_failed);
                self.upstream_failed(e, eg, snat, Failure::Refused)
            }
        }
    }

    /// Request body from the client to the upstream socket.
    fn pump_request(&mut self, e: &mut Engine, eg: &Egress<'_>) -> Result<bool, Step> {
        if self.req_body == Body::Done || self.up_pos < self.up_out.len() || self.upstream == NONE {
            return Ok(false);
        }
        let Some((c, u)) = e.conns.pair(self.client, self.upstream) else {
            return Err(Step::Finished);
        };
        let moved = match pump_sockets(c.socket(), u.socket(), &mut self.req_body) {
            Ok(n) => n,
            Err(err) => return self.local_error(e, err.status()),
        };
        if moved > 0 {
            let policy = eg.plane.l7.cluster(self.cluster);
            if self.phase == Phase::Waiting {
                self.set_deadline(eg.now_ns + policy.response_timeout_ms * 1_000_000);
            }
            return Ok(true);
        }
        if self.req_body != Body::Done && eof(c.sock()) {
            // The client gave up in the middle of its body.
            return Err(self.abort_client(e));
        }
        Ok(false)
    }

    /// The client closed its side before the response head arrived (the
    /// whole request was read): nobody will read the answer, so give the
    /// backend connection up instead of waiting for it (nginx's default).
    fn give_up_if_client_gone(&mut self, e: &mut Engine) -> Result<(), Step> {
        let gone = !self.upgrade
            && self.req_body == Body::Done
            && self.cin.is_empty()
            && e.conns.get_ref(self.client).is_none_or(|c| eof(c.sock()));
        if gone {
            e.counters.inc(Counter::l7_client_aborts);
            if let Some(c) = e.conns.get(self.client) {
                c.socket().close();
            }
            return Err(Step::Finished);
        }
        Ok(())
    }

    fn waiting(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Result<bool, Step> {
        self.give_up_if_client_gone(e)?;
        let mut progress = self.flush_up(e);
        progress |= self.pump_request(e, eg)?;
        let limits = self.listener(eg).limits;
        let Some(u) = e.conns.get(self.upstream) else {
            return self.upstream_failed(e, eg, snat, Failure::Refused);
        };
        let n = recv_into(u.socket(), &mut self.rin, limits.max_head_bytes);
        progress |= n > 0;
        let up_eof = eof(u.sock());
        if self.rin.is_empty() {
            if up_eof {
                return self.upstream_failed(e, eg, snat, Failure::Refused);
            }
            return Ok(progress);
        }
        match parse_response_head(&self.rin, &limits, self.method) {
            Ok(None) => {
                if self.rin.len() >= limits.max_head_bytes || up_eof {
                    e.counters.inc(Counter::l7_bad_responses);
                    return self.local_error(e, 502);
                }
                Ok(progress)
            }
            Err(_) => {
                e.counters.inc(Counter::l7_bad_responses);
                self.local_error(e, 502)
            }
            Ok(Some(h)) => self.response_head(e, eg, snat, h),
        }
    }

    fn response_head(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        h: super::http::ResponseHead,
    ) -> Result<bool, Step> {
        let now = eg.now_ns;
        let plane: &crate::net::plane::Plane = eg.plane;
        let policy = plane.l7.cluster(self.cluster);
        let limits = self.listener(eg).limits;
        let status = h.status();
        let head_len = h.head_len();
        let empty = HeaderEdits::default();
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
            self.rin.drain(..head_len);
            return Ok(true);
        }
        // Only a request that can be sent again as it was (idempotent, no
        // body) is retried on a status; anything else gets the answer.
        if self.retryable && policy.retry_on_status.contains(&status) && self.can_retry(e, policy) {
            e.counters.inc(Counter::l7_retried_status);
            let up = self.upstream;
            self.upstream = NONE;
            self.release_backend(e);
            e.close_conn(eg, snat, up, true);
            return self.retry(e, eg, snat);
        }
        if status >= 500 {
            e.backends.l7_add(self.backend, BE_L7_5XX, 1);
        }
        e.counters.inc(match status {
            100..=199 => Counter::l7_responses_1xx,
            200..=299 => Counter::l7_responses_2xx,
            300..=399 => Counter::l7_responses_3xx,
            400..=499 => Counter::l7_responses_4xx,
            _ => Counter::l7_responses_5xx,
        });
        let edits = self.resp_edits.as_ref().unwrap_or(&empty);
        if status == 101 {
            if !self.upgrade {
                e.counters.inc(Counter::l7_bad_responses);
                return self.local_error(e, 502);
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
            self.rin.drain(..head_len);
            self.cl_out.extend_from_slice(&self.rin);
            self.rin.clear();
            self.phase = Phase::Tunnel;
            self.req_body = Body::Done;
            e.counters.inc(Counter::l7_upgrades);
            self.set_deadline(now + self.listener(eg).timeouts.idle_ms * 1_000_000);
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
        if let Some(cookie) = self.set_cookie.take() {
            if self.cl_out.ends_with(b"\r\n\r\n") {
                self.cl_out.truncate(self.cl_out.len() - 2);
                self.cl_out.extend_from_slice(b"Set-Cookie: ");
                self.cl_out.extend_from_slice(&cookie);
                self.cl_out.extend_from_slice(b"\r\n\r\n");
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
        drop(h);
        self.rin.drain(..head_len);
        if !self.rin.is_empty() {
            let out = &mut self.cl_out;
            match pump(&mut self.resp_body, &self.rin, &mut |b| {
                out.extend_from_slice(b)
            }) {
                Ok(n) => {
                    if n < self.rin.len() {
                        // More than the response: the connection cannot be
                        // trusted for another request.
                        self.upstream_keep = false;
                    }
                    self.rin.clear();
                }
                Err(_) => {
                    e.counters.inc(Counter::l7_bad_responses);
                    return Err(self.abort_client(e));
                }
            }
        }
        self.phase = Phase::Response;
        self.set_deadline(now + self.listener(eg).timeouts.idle_ms * 1_000_000);
        Ok(true)
    }

    fn response(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Result<bool, Step> {
        let now = eg.now_ns;
        let mut progress = self.flush_up(e);
        progress |= self.pump_request(e, eg)?;
        if self.resp_body != Body::Done {
            if !self.client_flushed() {
                return Ok(progress);
            }
            let Some((c, u)) = e.conns.pair(self.client, self.upstream) else {
                return Err(self.abort_client(e));
            };
            let moved = match pump_sockets(u.socket(), c.socket(), &mut self.resp_body) {
                Ok(n) => n,
                Err(_) => {
                    e.counters.inc(Counter::l7_bad_responses);
                    return Err(self.abort_client(e));
                }
            };
            if moved > 0 {
                progress = true;
                self.set_deadline(now + self.listener(eg).timeouts.idle_ms * 1_000_000);
            }
            if self.resp_body != Body::Done && eof(u.sock()) {
                if self.resp_body == Body::UntilClose {
                    self.resp_body = Body::Done;
                } else {
                    // The backend went away in the middle of the body: the
                    // client must not take a truncated body as complete.
                    e.counters.inc(Counter::l7_truncated_responses);
                    return Err(self.abort_client(e));
                }
            }
        }
        if self.resp_body != Body::Done {
            return Ok(progress);
        }
        self.finish_response(e, eg, snat);
        Ok(true)
    }

    fn finish_response(&mut self, e: &mut Engine, eg: &mut Egress<'_>, snat: &mut SnatPorts) {
        let now = eg.now_ns;
        let policy = eg.plane.l7.cluster(self.cluster);
        let up = self.upstream;
        let backend = self.backend;
        self.release_backend(e);
        // A refused upgrade may have had bytes sent behind its head: the
        // backend would read them as a request, so the connection is done.
        let reusable = self.upstream_keep
            && !self.upgrade
            && self.req_body == Body::Done
            && self.up_pos >= self.up_out.len()
            && self.rin.is_empty()
            && e.conns.get_ref(up).is_some_and(|c| {
                c.sock().state() == State::Established && c.sock().recv_queue() == 0
            });
        self.upstream = NONE;
        if reusable {
            e.release(eg, snat, up, backend, policy.max_idle_per_backend);
        } else {
            e.close_conn(eg, snat, up, false);
        }
        self.up_out.clear();
        self.up_pos = 0;
        if self.client_keep && self.req_body == Body::Done {
            self.phase = Phase::Head;
            self.set_deadline(now + self.listener(eg).timeouts.idle_ms * 1_000_000);
        } else {
            self.phase = Phase::Closing;
            self.set_deadline(now + self.listener(eg).timeouts.idle_ms * 1_000_000);
        }
    }

    fn tunnel(&mut self, e: &mut Engine, eg: &Egress<'_>) -> Result<bool, Step> {
        let mut progress = self.flush_up(e);
        if !self.client_flushed() || self.up_pos < self.up_out.len() {
            return Ok(progress);
        }
        let Some((c, u)) = e.conns.pair(self.client, self.upstream) else {
            return Err(self.abort_client(e));
        };
        let mut raw = Body::UntilClose;
        let a = pump_sockets(c.socket(), u.socket(), &mut raw).unwrap_or(0);
        let b = pump_sockets(u.socket(), c.socket(), &mut raw).unwrap_or(0);
        if a + b > 0 {
            progress = true;
            self.set_deadline(eg.now_ns + self.listener(eg).timeouts.idle_ms * 1_000_000);
        }
        let (c_eof, u_eof) = (eof(c.sock()), eof(u.sock()));
        // Half-closes pass through: the side that ended has its FIN
        // forwarded (after what it sent), and the other direction keeps
        // flowing until it ends too (a WebSocket close handshake).
        if c_eof {
            u.socket().close();
        }
        if u_eof {
            c.socket().close();
        }
        if c_eof && u_eof {
            self.upstream_clean = true;
            return Err(Step::Finished);
        }
        Ok(progress)
    }

    fn closing(&mut self, e: &mut Engine, _eg: &Egress<'_>) -> Result<bool, Step> {
        if !self.client_flushed() {
            return Ok(false);
        }
        if let Some(c) = e.conns.get(self.client) {
            c.socket().close();
        }
        Err(Step::Finished)
    }

    // ----------------------------------------------------- failures, ends

    fn can_retry(&self, e: &Engine, policy: &crate::l7::plane::L7Cluster) -> bool {
        self.attempts < policy.retries && e.retry_tokens >= 1.0
    }

    /// The upstream attempt failed before a response head.
    fn upstream_failed(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
        why: Failure,
    ) -> Result<bool, Step> {
        let plane: &crate::net::plane::Plane = eg.plane;
        let policy = plane.l7.cluster(self.cluster);
        let nothing_sent = self.phase == Phase::Connecting;
        if self.backend != NONE {
            e.backends.l7_add(self.backend, BE_L7_FAILURES, 1);
        }
        if self.upstream != NONE {
            let up = self.upstream;
            self.upstream = NONE;
            e.close_conn(eg, snat, up, true);
        }
        self.release_backend(e);
        e.counters.inc(Counter::l7_upstream_failures);
        let replayable = nothing_sent || (self.retryable && self.rin.is_empty());
        if replayable && self.can_retry(e, policy) {
            if !nothing_sent {
                self.up_out.clear();
                self.up_out.extend_from_slice(&self.replay);
                self.up_pos = 0;
            }
            return self.retry(e, eg, snat);
        }
        if !self.retryable && !nothing_sent {
            e.counters.inc(Counter::l7_not_retried);
        }
        self.local_error(e, if why == Failure::Timeout { 504 } else { 502 })
    }

    /// Another attempt on another backend (up_out holds the request).
    fn retry(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Result<bool, Step> {
        let plane: &crate::net::plane::Plane = eg.plane;
        let policy = plane.l7.cluster(self.cluster);
        self.attempts += 1;
        e.retry_tokens -= 1.0;
        e.counters.inc(Counter::l7_retries);
        if self.up_pos != 0 || self.up_out.is_empty() {
            self.up_out.clear();
            self.up_out.extend_from_slice(&self.replay);
            self.up_pos = 0;
        }
        self.rin.clear();
        let rand = e.random();
        // The router already ran; pick again, avoiding what failed.
        let view = NoView;
        let tried = std::mem::take(&mut self.tried);
        let pick = e.balancer.pick(
            &plane.services,
            policy,
            &e.health,
            self.cluster,
            &view,
            self.peer,
            &tried,
            rand,
        );
        self.tried = tried;
        match pick {
            Some(b) => self.attach(e, eg, snat, b, None),
            None => self.local_error(e, 502),
        }
    }

    /// Answer the client with a canned error and close.
    fn local_error(&mut self, e: &mut Engine, status: u16) -> Result<bool, Step> {
        e.counters.inc(if status < 500 {
            Counter::l7_local_4xx
        } else {
            Counter::l7_local_5xx
        });
        match status {
            408 => e.counters.inc(Counter::l7_header_timeouts),
            502 => e.counters.inc(Counter::l7_local_502),
            503 => e.counters.inc(Counter::l7_local_503),
            504 => e.counters.inc(Counter::l7_local_504),
            _ => {}
        }
        if matches!(self.phase, Phase::Response | Phase::Tunnel) {
            // Part of a response is already out; the only honest signal
            // left is a reset.
            return Err(self.abort_client(e));
        }
        if self.upstream != NONE {
            // Closed by the engine when the session ends; mark it unusable.
            if let Some(c) = e.conns.get(self.upstream) {
                c.socket().abort();
            }
        }
        self.cl_out.extend_from_slice(error_response(status));
        self.client_keep = false;
        self.req_body = Body::Done;
        self.phase = Phase::Closing;
        // The client gets an idle period to read the answer.
        self.deadline = self.now + self.idle_ns;
        Ok(true)
    }

    fn abort_client(&mut self, e: &mut Engine) -> Step {
        if let Some(c) = e.conns.get(self.client) {
            c.socket().abort();
        }
        e.counters.inc(Counter::l7_aborted);
        Step::Finished
    }

    /// A deadline passed. `None`: not really (moved on since), carry on.
    fn timeout(
        &mut self,
        e: &mut Engine,
        eg: &mut Egress<'_>,
        snat: &mut SnatPorts,
    ) -> Option<Step> {
        let r = match self.phase {
            Phase::Head if self.cin.is_empty() => {
                // Idle keep-alive connection: close it quietly.
                e.counters.inc(Counter::l7_idle_closed);
                self.phase = Phase::Closing;
                Ok(true)
            }
            Phase::Head => self.local_error(e, 408),
            Phase::Connecting => {
                e.counters.inc(Counter::l7_upstream_timeouts);
                self.upstream_failed(e, eg, snat, Failure::Timeout)
            }
            Phase::Waiting => {
                e.counters.inc(Counter::l7_upstream_timeouts);
                self.local_error(e, 504)
            }
            Phase::Response | Phase::Tunnel | Phase::Closing => {
                e.counters.inc(Counter::l7_idle_closed);
                Err(self.abort_client(e))
            }
        };
        match r {
            Ok(_) => {
                // Closing and errors are flushed by the loop; give the
                // client an idle period to read them, unless the handler
                // set a deadline of its own (a retry's connect timeout).
                if self.deadline <= eg.now_ns {
                    self.set_deadline(eg.now_ns + self.listener(eg).timeouts.idle_ms * 1_000_000);
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

impl super::router::RequestView for NoView {
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
mod tests {
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
