//! The proxy session driven without DPDK or smoltcp: [`Fake`] is a scripted
//! engine side (two byte queues, a pool, a balancer that takes backends in
//! order, a retry budget, a log of counters and backend events). It is a
//! test harness, not a stand-in for a component that could run: the real
//! sockets are covered by `tests/l7_netns.rs`.

use std::cell::Cell;
use std::collections::VecDeque;

use super::*;
use crate::l7::http::Limits;
use crate::l7::plane::{Buffers, L7Cluster, L7Plane, ListenerPlane, Timeouts};
use crate::l7::router::{HttpsRedirect, Matcher, Route, RouteAction, Router};
use crate::l7::tls::TlsFacts;

// ------------------------------------------------------------- the harness

/// One connection as the session sees it.
#[derive(Default)]
struct Conn {
    /// Sent by the peer, not yet read by the session.
    rx: Vec<u8>,
    /// Queued by the session for the peer.
    tx: Vec<u8>,
    /// Free space of the send buffer.
    room: usize,
    /// The peer closed its side.
    fin: bool,
    /// Sluice sent its FIN / a RST.
    closed: bool,
    reset: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            room: usize::MAX,
            ..Conn::default()
        }
    }

    fn link(&self) -> Link {
        if self.reset {
            Link::Gone
        } else if self.fin && self.rx.is_empty() {
            Link::Eof
        } else {
            Link::Open
        }
    }

    fn send(&mut self, bytes: &[u8]) -> usize {
        if self.closed || self.reset {
            return 0;
        }
        let n = bytes.len().min(self.room);
        self.tx.extend_from_slice(&bytes[..n]);
        self.room -= n;
        n
    }
}

struct Up {
    conn: Conn,
    backend: u32,
    connecting: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Count(Counter),
    Backend(u32, BackendEvent),
    Open(u32),
    Release(u32, Release),
}

struct Fake {
    client: Conn,
    up: Option<Up>,
    pool: Vec<Up>,
    /// Answers to `open` when the pool has nothing; default `Connecting`.
    opens: VecDeque<Opened>,
    /// The cluster's backends, picked in turn.
    backends: Vec<u32>,
    rr: usize,
    tokens: f64,
    log: Vec<Ev>,
}

impl Fake {
    fn conn(&mut self, side: Side) -> Option<&mut Conn> {
        match side {
            Side::Client => Some(&mut self.client),
            Side::Upstream => self.up.as_mut().map(|u| &mut u.conn),
        }
    }
}

impl Env for Fake {
    fn link(&self, side: Side) -> Link {
        match side {
            Side::Client => self.client.link(),
            Side::Upstream => match &self.up {
                None => Link::Gone,
                Some(u) if u.conn.reset => Link::Gone,
                Some(u) if u.connecting => Link::Connecting,
                Some(u) => u.conn.link(),
            },
        }
    }

    fn recv(&mut self, side: Side, mut f: impl FnMut(&[u8]) -> usize) -> usize {
        let Some(c) = self.conn(side) else { return 0 };
        if c.rx.is_empty() {
            return 0;
        }
        let n = f(&c.rx);
        c.rx.drain(..n);
        n
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> usize {
        match side {
            Side::Upstream if self.up.as_ref().is_some_and(|u| u.connecting) => 0,
            _ => self.conn(side).map_or(0, |c| c.send(bytes)),
        }
    }

    fn forward(
        &mut self,
        from: Side,
        mut f: impl FnMut(&[u8], &mut dyn FnMut(&[u8])) -> Result<usize, HttpError>,
    ) -> Result<usize, HttpError> {
        let Some(up) = self.up.as_mut() else {
            return Ok(0);
        };
        let (src, dst) = match from {
            Side::Client => (&mut self.client, &mut up.conn),
            Side::Upstream => (&mut up.conn, &mut self.client),
        };
        if src.rx.is_empty() || dst.closed || dst.reset {
            return Ok(0);
        }
        let win = src.rx.len().min(dst.room);
        let n = f(&src.rx[..win], &mut |b| {
            dst.send(b);
        })?;
        src.rx.drain(..n);
        Ok(n)
    }

    fn close(&mut self, side: Side) {
        if let Some(c) = self.conn(side) {
            c.closed = true;
        }
    }

    fn abort(&mut self, side: Side) {
        if let Some(c) = self.conn(side) {
            c.reset = true;
        }
    }

    fn pick(
        &mut self,
        _cluster: usize,
        _req: &impl RequestView,
        _peer: IpAddr,
        exclude: &[u32],
    ) -> Option<u32> {
        for _ in 0..self.backends.len() {
            let b = self.backends[self.rr % self.backends.len()];
            self.rr += 1;
            if !exclude.contains(&b) {
                return Some(b);
            }
        }
        None
    }

    fn open(&mut self, backend: u32) -> Opened {
        self.log.push(Ev::Open(backend));
        if let Some(i) = self.pool.iter().position(|u| u.backend == backend) {
            self.up = Some(self.pool.remove(i));
            return Opened::Pooled;
        }
        let answer = self.opens.pop_front().unwrap_or(Opened::Connecting);
        if answer != Opened::Failed(Counter::l7_upstream_connect_failed) {
            self.up = Some(Up {
                conn: Conn::new(),
                backend,
                connecting: answer == Opened::Connecting,
            });
        }
        answer
    }

    fn release(&mut self, how: Release) {
        let Some(up) = self.up.take() else { return };
        self.log.push(Ev::Release(up.backend, how));
        if matches!(how, Release::Pool { .. }) && up.conn.rx.is_empty() {
            self.pool.push(up);
        }
    }

    fn sticky_value(&self, backend: u32) -> Option<[u8; 16]> {
        Some([b'a' + backend as u8; 16])
    }

    fn request_id(&mut self) -> u64 {
        0x0123_4567_89ab_cdef
    }

    fn add_retry_budget(&mut self, percent: u32) {
        self.tokens = (self.tokens + percent as f64 / 100.0).min(100.0);
    }

    fn spend_retry_token(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }

    fn count(&mut self, c: Counter) {
        self.log.push(Ev::Count(c));
    }

    fn backend(&mut self, backend: u32, ev: BackendEvent) {
        self.log.push(Ev::Backend(backend, ev));
    }
}

const MS: u64 = 1_000_000;

/// A session, its fake engine and the plane it reads.
struct T {
    s: Session,
    f: Fake,
    l7: L7Plane,
    now: u64,
    last: Step,
    /// The client connection's TLS, if it is one.
    tls: Option<TlsFacts>,
}

fn plane(cluster: L7Cluster, limits: Limits) -> L7Plane {
    let listener = ListenerPlane {
        name: "web".into(),
        addr: "10.0.0.1".parse().unwrap(),
        port: 80,
        router: Router::new(
            vec![],
            Some(RouteAction {
                cluster: 0,
                ..RouteAction::default()
            }),
        )
        .unwrap(),
        limits,
        buffers: Buffers::default(),
        timeouts: Timeouts {
            handshake_ms: 1000,
            header_ms: 1000,
            idle_ms: 5000,
        },
        max_connections: 100,
        max_half_open: 100,
        syn_cookie_threshold: None,
        snat: vec![],
        tls: None,
        max_tls_handshakes: 100,
        tls_headers: false,
    };
    L7Plane::new(vec![listener], vec![cluster])
}

impl T {
    fn new() -> T {
        T::with(L7Cluster::default())
    }

    fn with(cluster: L7Cluster) -> T {
        T::with_plane(plane(cluster, Limits::default()))
    }

    fn with_plane(l7: L7Plane) -> T {
        let now = 1_000 * MS;
        T {
            s: Session::new("192.0.2.7".parse().unwrap(), now, 5000 * MS),
            f: Fake {
                client: Conn::new(),
                up: None,
                pool: Vec::new(),
                opens: VecDeque::new(),
                backends: vec![1, 2, 3],
                rr: 0,
                tokens: 10.0,
                log: Vec::new(),
            },
            l7,
            now,
            last: Step::Continue,
            tls: None,
        }
    }

    fn poll(&mut self) -> Step {
        assert_eq!(self.last, Step::Continue, "polled after Finished");
        let cx = Cx {
            listener: &self.l7.listeners[0],
            l7: &self.l7,
            now: self.now,
            tls: self.tls.as_ref(),
        };
        self.last = self.s.poll(&cx, &mut self.f);
        self.last
    }

    /// The client sends `bytes`.
    fn client(&mut self, bytes: &[u8]) -> Step {
        self.f.client.rx.extend_from_slice(bytes);
        self.poll()
    }

    fn client_fin(&mut self) -> Step {
        self.f.client.fin = true;
        self.poll()
    }

    /// The upstream connection completes its handshake.
    fn accept(&mut self) -> Step {
        self.f.up.as_mut().expect("no upstream").connecting = false;
        self.poll()
    }

    /// The backend sends `bytes`.
    fn backend(&mut self, bytes: &[u8]) -> Step {
        self.f
            .up
            .as_mut()
            .expect("no upstream")
            .conn
            .rx
            .extend_from_slice(bytes);
        self.poll()
    }

    fn backend_fin(&mut self) -> Step {
        self.f.up.as_mut().expect("no upstream").conn.fin = true;
        self.poll()
    }

    fn later(&mut self, ms: u64) -> Step {
        self.now += ms * MS;
        self.poll()
    }

    /// What the backend received since the last call.
    fn take_backend_bytes(&mut self) -> String {
        let up = self.f.up.as_mut().expect("no upstream");
        String::from_utf8_lossy(&std::mem::take(&mut up.conn.tx)).into_owned()
    }

    /// What the client received since the last call.
    fn take_client_bytes(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.f.client.tx)).into_owned()
    }

    fn counted(&self, c: Counter) -> usize {
        self.f.log.iter().filter(|e| **e == Ev::Count(c)).count()
    }

    fn releases(&self) -> Vec<(u32, Release)> {
        self.f
            .log
            .iter()
            .filter_map(|e| match e {
                Ev::Release(b, r) => Some((*b, *r)),
                _ => None,
            })
            .collect()
    }

    fn opens(&self) -> Vec<u32> {
        self.f
            .log
            .iter()
            .filter_map(|e| match e {
                Ev::Open(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    /// Every `Started` has its `Finished`.
    fn assert_backends_balanced(&self) {
        let n = |ev| {
            self.f
                .log
                .iter()
                .filter(|e| matches!(e, Ev::Backend(_, x) if *x == ev))
                .count()
        };
        assert_eq!(
            n(BackendEvent::Started),
            n(BackendEvent::Finished),
            "{:?}",
            self.f.log
        );
    }
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const POOL: Release = Release::Pool { max_idle: 64 };

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The body after the first head in `resp`.
fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

// ------------------------------------------------------ keep-alive, order

#[test]
fn keep_alive_requests_reuse_the_pooled_connection() {
    let mut t = T::new();
    t.f.backends = vec![1, 2];
    t.client(GET);
    assert_eq!(t.opens(), [1]);
    assert_eq!(
        t.take_backend_bytes(),
        "",
        "nothing goes before the handshake"
    );
    t.accept();
    let req = t.take_backend_bytes();
    assert!(req.starts_with("GET /a HTTP/1.1\r\nHost: web\r\n"), "{req}");
    assert!(req.contains("X-Forwarded-For: 192.0.2.7\r\n"), "{req}");
    assert!(req.contains("X-Forwarded-Proto: http\r\n"), "{req}");
    assert!(req.contains("X-Request-Id: 0123456789abcdef\r\n"), "{req}");
    assert!(req.contains("Via: 1.1 sluice\r\n"), "{req}");
    assert_eq!(t.backend(OK), Step::Continue);
    let resp = t.take_client_bytes();
    assert_eq!((status_of(&resp), body_of(&resp)), (200, "hi"));
    assert_eq!(t.releases(), [(1, POOL)]);

    // The next request goes to backend 2 (a new connection), the third back
    // to 1 over the pooled one.
    t.client(GET);
    t.accept();
    t.backend(OK);
    t.client(GET);
    assert_eq!(t.opens(), [1, 2, 1]);
    assert!(t
        .f
        .up
        .as_ref()
        .is_some_and(|u| u.backend == 1 && !u.connecting));
    assert!(t.take_backend_bytes().starts_with("GET /a"));
    t.backend(OK);
    assert_eq!(t.releases(), [(1, POOL), (2, POOL), (1, POOL)]);
    assert_eq!(t.counted(Counter::l7_responses_2xx), 3);
    t.assert_backends_balanced();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut t = T::new();
    let two = [GET, b"GET /b HTTP/1.1\r\nHost: web\r\n\r\n"].concat();
    t.client(&two);
    t.accept();
    let first = t.take_backend_bytes();
    assert!(first.starts_with("GET /a "), "{first}");
    assert!(!first.contains("GET /b"), "the second waits: {first}");
    assert_eq!(
        t.f.client.rx.len(),
        two.len() - GET.len(),
        "left in the socket"
    );
    t.backend(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA");
    t.accept();
    let second = t.take_backend_bytes();
    assert!(second.starts_with("GET /b "), "{second}");
    t.backend(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB");
    let out = t.take_client_bytes();
    let a = out.find("\r\n\r\nA").unwrap();
    let b = out.find("\r\n\r\nB").unwrap();
    assert!(a < b, "{out}");
}

#[test]
fn connection_close_ends_the_session_after_the_response() {
    let mut t = T::new();
    t.client(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
    t.accept();
    assert_eq!(t.backend(OK), Step::Finished);
    assert!(t.take_client_bytes().contains("Connection: close\r\n"));
    assert!(t.f.client.closed && !t.f.client.reset);
    // The backend's connection is still good for others.
    assert_eq!(t.releases(), [(1, POOL)]);
}

#[test]
fn a_head_dribbled_a_byte_at_a_time_gives_the_same_request() {
    let mut whole = T::new();
    whole.client(GET);
    whole.accept();
    let want = whole.take_backend_bytes();
    let mut t = T::new();
    for b in GET {
        assert!(t.f.up.is_none(), "opened before the head was complete");
        t.client(&[*b]);
    }
    t.accept();
    assert_eq!(t.take_backend_bytes(), want);
}

// ------------------------------------------------------------------ bodies

/// (what, request, response, backend ends with FIN, request bytes the
/// backend must see after the head, what the client must get after the
/// head, the session ends).
type BodyCase<'a> = (&'a str, &'a [u8], &'a [u8], bool, &'a str, &'a str, bool);

#[test]
fn bodies_in_every_framing() {
    let cases: &[BodyCase] = &[
        (
            "Content-Length both ways",
            b"POST /u HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            false,
            "hello",
            "abc",
            false,
        ),
        (
            "chunked both ways, forwarded as chunked",
            b"POST /u HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
            "5\r\nhello\r\n0\r\n\r\n",
            "3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        (
            "chunked response to an HTTP/1.0 client: decoded, then close",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
            "",
            "abcde",
            true,
        ),
        (
            "until close: the backend's FIN ends the body and the session",
            b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nall of it",
            true,
            "",
            "all of it",
            true,
        ),
        (
            "HEAD: no body whatever Content-Length says",
            b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            false,
            "",
            "",
            false,
        ),
        (
            "204",
            b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            false,
            "",
            "",
            false,
        ),
        (
            "304",
            b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
            false,
            "",
            "",
            false,
        ),
    ];
    for &(what, req, resp, fin, body_up, body_down, ends) in cases {
        for split in [false, true] {
            let mut t = T::new();
            if split {
                // Head first, then the body in a later segment.
                let head = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                t.client(&req[..head]);
                t.accept();
                t.client(&req[head..]);
            } else {
                t.client(req);
                t.accept();
            }
            let got = t.take_backend_bytes();
            assert_eq!(body_of(&got), body_up, "{what} (split {split}): {got}");
            let mut step = t.backend(resp);
            if fin {
                step = t.backend_fin();
            }
            let out = t.take_client_bytes();
            assert_eq!(body_of(&out), body_down, "{what}: {out}");
            assert_eq!(step == Step::Finished, ends, "{what}: {out}");
            assert!(!t.f.client.reset, "{what}");
            t.assert_backends_balanced();
        }
    }
}

#[test]
fn bodies_move_only_as_fast_as_the_other_side_takes_them() {
    let mut t = T::new();
    t.client(GET);
    t.accept();
    t.take_backend_bytes();
    t.f.client.room = 10;
    let body = "x".repeat(100);
    let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{body}");
    // The head is queued in the session; the body waits in the upstream
    // socket until the client's window opens.
    t.backend(resp.as_bytes());
    let mut got = t.take_client_bytes();
    let mut rounds = 0;
    while t.releases().is_empty() {
        rounds += 1;
        assert!(rounds < 1000);
        t.f.client.room = 10;
        t.poll();
        got += &t.take_client_bytes();
        let unread = t.f.up.as_ref().map_or(0, |u| u.conn.rx.len());
        assert!(unread + body_of(&got).len() == 100 || t.f.up.is_none());
    }
    assert_eq!(body_of(&got), body);
}

#[test]
fn a_bad_chunk_with_the_head_is_refused_before_a_backend() {
    let mut t = T::new();
    let step =
        t.client(b"POST /u HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(step, Step::Finished);
    assert_eq!(status_of(&t.take_client_bytes()), 400);
    assert!(t.opens().is_empty());
    // Later: the request went out, no response yet: still a 400.
    let mut t = T::new();
    t.client(b"POST /u HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n");
    t.accept();
    assert_eq!(t.client(b"zz\r\n"), Step::Finished);
    assert_eq!(status_of(&t.take_client_bytes()), 400);
    assert_eq!(t.releases(), [(1, Release::Reset)]);
}

#[test]
fn expect_continue_is_relayed_to_http11_clients() {
    let mut t = T::new();
    t.client(b"POST /u HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    t.accept();
    assert!(t.take_backend_bytes().contains("Expect: 100-continue\r\n"));
    t.backend(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(t.take_client_bytes(), "HTTP/1.1 100 Continue\r\n\r\n");
    t.client(b"ok");
    assert_eq!(t.take_backend_bytes(), "ok");
    t.backend(OK);
    assert_eq!(status_of(&t.take_client_bytes()), 200);
}

// ----------------------------------------------------------------- upgrade

#[test]
fn upgrade_becomes_a_tunnel_with_half_closes() {
    let mut t = T::new();
    t.client(b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    t.accept();
    let req = t.take_backend_bytes();
    assert!(req.contains("Upgrade: websocket\r\n") && req.contains("Connection: upgrade\r\n"));
    t.backend(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nserver-first");
    let out = t.take_client_bytes();
    assert_eq!(status_of(&out), 101);
    assert_eq!(body_of(&out), "server-first");
    t.client(b"ping");
    assert_eq!(t.take_backend_bytes(), "ping");
    t.backend(b"pong");
    assert_eq!(t.take_client_bytes(), "pong");
    // The client's FIN goes to the backend; the backend may still talk.
    assert_eq!(t.client_fin(), Step::Continue);
    assert!(t.f.up.as_ref().unwrap().conn.closed);
    t.backend(b"bye");
    assert_eq!(t.take_client_bytes(), "bye");
    assert_eq!(t.backend_fin(), Step::Finished);
    assert!(t.f.client.closed);
    assert_eq!(t.releases(), [(1, Release::Close)]);
    assert_eq!(t.counted(Counter::l7_upgrades), 1);
    t.assert_backends_balanced();
}

#[test]
fn a_101_nobody_asked_for_is_a_502() {
    let mut t = T::new();
    t.client(GET);
    t.accept();
    assert_eq!(
        t.backend(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        Step::Finished
    );
    assert_eq!(status_of(&t.take_client_bytes()), 502);
    assert_eq!(t.releases(), [(1, Release::Reset)]);
}

// ------------------------------------------------- failures and retries

type Script = fn(&mut T);

/// (what, cluster tweak, retry tokens, script, client status, backends
/// opened, counters).
type FailureCase<'a> = (
    &'a str,
    fn(&mut L7Cluster),
    f64,
    Script,
    u16,
    &'a [u32],
    &'a [Counter],
);

#[test]
fn failures_and_retries() {
    let refused: Script = |t| {
        t.f.up.as_mut().unwrap().conn.reset = true;
        t.poll();
    };
    let cases: &[FailureCase] = &[
        (
            "connect refused: retried on the next backend",
            |_| {},
            10.0,
            |t| {
                t.f.up.as_mut().unwrap().conn.reset = true;
                t.poll();
                t.accept();
                t.backend(OK);
            },
            200,
            &[1, 2],
            &[Counter::l7_upstream_connect_failed, Counter::l7_retries],
        ),
        (
            "connect refused with no retry budget: 502",
            |_| {},
            0.0,
            refused,
            502,
            &[1],
            &[Counter::l7_local_502],
        ),
        (
            "connect refused with retries = 0: 502",
            |c| c.retries = 0,
            10.0,
            refused,
            502,
            &[1],
            &[Counter::l7_local_502],
        ),
        (
            "connect timeout twice then a third backend",
            |_| {},
            10.0,
            |t| {
                t.later(2001);
                t.later(2001);
                t.accept();
                t.backend(OK);
            },
            200,
            &[1, 2, 3],
            &[Counter::l7_upstream_timeouts, Counter::l7_retries],
        ),
        (
            "connect timeout on every attempt: 504",
            |_| {},
            10.0,
            |t| {
                t.later(2001);
                t.later(2001);
                t.later(2001);
            },
            504,
            &[1, 2, 3],
            &[Counter::l7_local_504],
        ),
        (
            "response timeout: 504, not retried",
            |_| {},
            10.0,
            |t| {
                t.accept();
                t.later(30_001);
            },
            504,
            &[1],
            &[Counter::l7_upstream_timeouts, Counter::l7_local_504],
        ),
        (
            "retry_on_status: the 503 is retried",
            |c| c.retry_on_status = vec![503],
            10.0,
            |t| {
                t.accept();
                t.backend(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
                t.accept();
                t.backend(OK);
            },
            200,
            &[1, 2],
            &[Counter::l7_retried_status],
        ),
        (
            "a 503 not listed goes to the client",
            |_| {},
            10.0,
            |t| {
                t.accept();
                t.backend(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
            },
            503,
            &[1],
            &[Counter::l7_responses_5xx],
        ),
        (
            "pooled connection closed before any response byte: replayed",
            |_| {},
            10.0,
            |t| {
                t.accept();
                t.backend_fin();
                t.accept();
                t.backend(OK);
            },
            200,
            &[1, 2],
            &[Counter::l7_upstream_failures, Counter::l7_retries],
        ),
        (
            "no backend eligible: 503",
            |_| {},
            10.0,
            |_| {},
            503,
            &[],
            &[Counter::l7_local_503],
        ),
    ];
    for &(what, tweak, tokens, script, status, opened, counters) in cases {
        let mut cluster = L7Cluster::default();
        tweak(&mut cluster);
        let mut t = T::with(cluster);
        t.f.tokens = tokens;
        if what.starts_with("no backend") {
            t.f.backends.clear();
        }
        t.client(GET);
        script(&mut t);
        let out = t.take_client_bytes();
        assert_eq!(status_of(&out), status, "{what}: {out}");
        assert_eq!(t.opens(), opened, "{what}");
        for c in counters {
            assert!(
                t.counted(*c) > 0,
                "{what}: {c:?} not counted: {:?}",
                t.f.log
            );
        }
        t.assert_backends_balanced();
    }
}

#[test]
fn a_request_with_a_body_is_not_replayed() {
    let mut t = T::new();
    t.client(b"POST /u HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi");
    t.accept();
    t.backend_fin();
    assert_eq!(status_of(&t.take_client_bytes()), 502);
    assert_eq!(t.opens(), [1]);
    assert_eq!(t.counted(Counter::l7_not_retried), 1);
}

#[test]
fn a_truncated_response_body_resets_the_client() {
    let mut t = T::new();
    t.client(GET);
    t.accept();
    t.backend(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5");
    assert_eq!(t.backend_fin(), Step::Finished);
    assert!(t.f.client.reset);
    assert_eq!(t.counted(Counter::l7_truncated_responses), 1);
    assert_eq!(t.releases(), [(1, Release::Reset)]);
    t.assert_backends_balanced();
}

// ----------------------------------------------------- timeouts, aborts

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_closes_quietly() {
    let mut t = T::new();
    t.client(b"GET / HTTP/1.1\r\n");
    t.later(500);
    t.client(b"Host: web\r\n");
    // Answered, and closed once the answer is out.
    assert_eq!(t.later(501), Step::Finished);
    let out = t.take_client_bytes();
    assert_eq!(status_of(&out), 408, "{out}");
    assert_eq!(t.counted(Counter::l7_header_timeouts), 1);
    assert!(t.f.client.closed && !t.f.client.reset);

    let mut t = T::new();
    t.client(GET);
    t.accept();
    t.backend(OK);
    t.take_client_bytes();
    assert_eq!(t.later(4999), Step::Continue);
    assert_eq!(t.later(2), Step::Finished);
    assert_eq!(t.take_client_bytes(), "");
    assert!(t.f.client.closed && !t.f.client.reset);
    assert_eq!(t.counted(Counter::l7_idle_closed), 1);
}

#[test]
fn a_client_that_leaves_before_the_response_gives_the_request_up() {
    let mut t = T::new();
    t.client(GET);
    t.accept();
    assert_eq!(t.client_fin(), Step::Finished);
    assert_eq!(t.counted(Counter::l7_client_aborts), 1);
    assert_eq!(t.releases(), [(1, Release::Reset)]);
    t.assert_backends_balanced();

    // In the middle of its body: the client connection is reset.
    let mut t = T::new();
    t.client(b"POST /u HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc");
    t.accept();
    assert_eq!(t.client_fin(), Step::Finished);
    assert!(t.f.client.reset);
    assert_eq!(t.releases(), [(1, Release::Reset)]);
}

#[test]
fn local_answers() {
    let limits = Limits {
        max_head_bytes: 256,
        max_uri_bytes: 32,
        ..Limits::default()
    };
    let cases: &[(&str, &[u8], u16)] = &[
        ("garbage", b"\x16\x03\x01\x02\x00", 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n", 505),
        ("long URI before the head ends", &[b"GET /" as &[u8], &[b'a'; 40]].concat(), 414),
        ("head too large", &[b"GET / HTTP/1.1\r\nX: " as &[u8], &[b'a'; 300]].concat(), 431),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ];
    for &(what, req, status) in cases {
        let mut t = T::with_plane(plane(L7Cluster::default(), limits));
        let step = t.client(req);
        let out = t.take_client_bytes();
        assert_eq!(status_of(&out), status, "{what}: {out}");
        assert_eq!(step, Step::Finished, "{what}");
        assert!(t.opens().is_empty(), "{what}");
    }
}

// ------------------------------------------------------------------ TLS

fn facts(sni: Option<&str>) -> TlsFacts {
    TlsFacts {
        sni: sni.map(Box::from),
        version: "TLSv1.3",
        cipher: "TLS13_AES_128_GCM_SHA256",
        client_subject: sni.map(|_| Box::from("CN=client,O=Example")),
    }
}

/// Routes: `sni = "a.example"` → cluster 1, `sni = "*.b.example"` →
/// cluster 2, path `/r` → redirect (308, port `port`); default cluster 0.
fn tls_plane(tls_headers: bool, port: Option<u16>) -> L7Plane {
    let mut l7 = plane(L7Cluster::default(), Limits::default());
    let to = |cluster| RouteAction {
        cluster,
        ..RouteAction::default()
    };
    let l = &mut l7.listeners[0];
    l.tls_headers = tls_headers;
    l.router = Router::new(
        vec![
            Route {
                matchers: vec![Matcher::SniExact("a.example".into())],
                action: to(1),
            },
            Route {
                matchers: vec![Matcher::SniWildcard("*.b.example".into())],
                action: to(2),
            },
            Route {
                matchers: vec![Matcher::PathPrefix("/r".into())],
                action: RouteAction {
                    redirect: Some(HttpsRedirect { status: 308, port }),
                    ..RouteAction::default()
                },
            },
        ],
        Some(to(0)),
    )
    .unwrap();
    let clusters = vec![L7Cluster::default(); 3];
    L7Plane::new(l7.listeners, clusters)
}

#[test]
fn routes_on_sni_whatever_the_host_says() {
    // (SNI of the connection, Host, cluster the request goes to)
    let cases: &[(Option<&str>, &str, usize)] = &[
        (Some("a.example"), "a.example", 1),
        (Some("a.example"), "x.b.example", 1),
        (Some("x.b.example"), "a.example", 2),
        (Some("y.x.b.example"), "a", 2),
        (Some("b.example"), "a", 0),
        (None, "a.example", 0),
    ];
    for &(sni, host, want) in cases {
        let mut t = T::with_plane(tls_plane(false, None));
        t.tls = sni.map(|_| facts(sni)).or(Some(facts(None)));
        t.client(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(t.s.cluster, want, "sni {sni:?} host {host}");
    }
    // A plain connection matches no sni route.
    let mut t = T::with_plane(tls_plane(false, None));
    t.client(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(t.s.cluster, 0);
}

#[test]
fn tls_headers_are_sent_when_configured_and_never_taken_from_the_client() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-TLS-Version: SSLv2\r\n\
x-forwarded-tls-client-subject: CN=admin\r\n\r\n";
    // (listener option, connection is TLS, fields the backend must see)
    let cases: &[(bool, bool, &[&str])] = &[
        (
            true,
            true,
            &[
                "X-Forwarded-Proto: https\r\n",
                "X-Forwarded-TLS-Version: TLSv1.3\r\n",
                "X-Forwarded-TLS-Cipher: TLS13_AES_128_GCM_SHA256\r\n",
                "X-Forwarded-TLS-SNI: c.example\r\n",
                "X-Forwarded-TLS-Client-Subject: CN=client,O=Example\r\n",
            ],
        ),
        (
            false,
            true,
            &[
                "X-Forwarded-Proto: https\r\n",
                "X-Forwarded-TLS-Version: SSLv2\r\n",
            ],
        ),
    ];
    for &(on, tls, want) in cases {
        let mut t = T::with_plane(tls_plane(on, None));
        t.tls = tls.then(|| facts(Some("c.example")));
        t.client(req);
        t.accept();
        let sent = t.take_backend_bytes();
        for w in want {
            assert!(sent.contains(w), "option {on}: want {w:?} in {sent}");
        }
        if on {
            assert!(
                !sent.contains("SSLv2") && !sent.contains("CN=admin"),
                "{sent}"
            );
        }
    }
}

#[test]
fn a_redirect_route_answers_with_the_https_location() {
    // (request, redirect port, answer expected)
    let cases: &[(&[u8], Option<u16>, &str)] = &[
        (
            b"GET /r/x?a=1&b HTTP/1.1\r\nHost: Shop.Example:80\r\n\r\n",
            None,
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://Shop.Example/r/x?a=1&b\r\n",
        ),
        (
            b"POST /r HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nContent-Length: 3\r\n\r\nabc",
            Some(8443),
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://[2001:db8::1]:8443/r\r\n",
        ),
        (
            b"GET http://other/r HTTP/1.1\r\nHost: other\r\n\r\n",
            Some(443),
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://other/r\r\n",
        ),
        (b"GET /r HTTP/1.0\r\n\r\n", None, "HTTP/1.1 400 "),
    ];
    for &(req, port, want) in cases {
        let mut t = T::with_plane(tls_plane(false, port));
        let step = t.client(req);
        let out = t.take_client_bytes();
        assert!(
            out.starts_with(want),
            "{}: {out}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(step, Step::Finished);
        assert!(t.opens().is_empty());
        if want.contains("308") {
            assert!(
                out.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
                "{out}"
            );
            assert_eq!(t.counted(Counter::l7_https_redirects), 1);
        }
    }
}

// -------------------------------------------------------------- sticky

#[test]
fn sticky_cookie_is_set_unless_the_request_named_the_backend() {
    let cluster = L7Cluster {
        sticky_cookie: Some(b"lb".to_vec()),
        sticky_max_age_s: Some(60),
        ..L7Cluster::default()
    };
    let mut t = T::with(cluster.clone());
    t.client(GET);
    t.accept();
    t.backend(OK);
    let out = t.take_client_bytes();
    assert!(
        out.contains("Set-Cookie: lb=bbbbbbbbbbbbbbbb; Path=/; HttpOnly; Max-Age=60\r\n\r\nhi"),
        "{out}"
    );
    let mut t = T::with(cluster);
    t.client(b"GET / HTTP/1.1\r\nHost: web\r\nCookie: lb=bbbbbbbbbbbbbbbb\r\n\r\n");
    t.accept();
    t.backend(OK);
    assert!(!t.take_client_bytes().contains("Set-Cookie"));
}

// ---------------------------------------------------------- allocations

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations of the current thread (tests run on their own
/// threads, so others do not disturb the count). Test builds only; the one
/// place outside `dpdk` allowed `unsafe`, since a global allocator cannot
/// be written without it.
struct Counting;

// SAFETY: forwards to the package's allocator (dpdk::pages) unchanged.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is the allocator's.
        unsafe { crate::dpdk::pages::Pages.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: as above.
        unsafe { crate::dpdk::pages::Pages.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { crate::dpdk::pages::Pages.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: as above.
        unsafe { crate::dpdk::pages::Pages.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn steady_state_requests_do_not_allocate() {
    let cluster = L7Cluster {
        sticky_cookie: Some(b"lb".to_vec()),
        sticky_max_age_s: Some(60),
        ..L7Cluster::default()
    };
    let mut l7 = plane(cluster, Limits::default());
    // A route with response edits, so that they are applied every time.
    l7.listeners[0].router = Router::new(
        vec![],
        Some(RouteAction {
            cluster: 0,
            response_headers: crate::l7::http::HeaderEdits {
                add: vec![("X-Served-By".into(), "sluice".into())],
                ..Default::default()
            },
            ..RouteAction::default()
        }),
    )
    .unwrap();
    let mut t = T::with_plane(l7);
    t.f.backends = vec![1];
    let req =
        b"GET /a HTTP/1.1\r\nHost: web\r\nCookie: x=1\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    let round = |t: &mut T| {
        t.f.client.tx.clear();
        t.f.client.rx.extend_from_slice(req);
        t.poll();
        if let Some(up) = t.f.up.as_mut() {
            up.connecting = false;
        }
        t.poll();
        let up = t.f.up.as_mut().unwrap();
        up.conn.tx.clear();
        up.conn.rx.extend_from_slice(resp);
        t.poll();
    };
    // Warm up: the buffers grow to their sizes, the pool holds the
    // connection.
    for _ in 0..3 {
        round(&mut t);
    }
    let out = String::from_utf8_lossy(&t.f.client.tx).into_owned();
    assert!(
        out.contains("X-Served-By: sluice\r\n") && out.contains("Set-Cookie: lb="),
        "{out}"
    );
    // The harness's log is the only thing that grows: give it room first.
    t.f.log.reserve(100 * 32);
    let before = ALLOCS.with(|a| a.get());
    for _ in 0..100 {
        round(&mut t);
    }
    let n = ALLOCS.with(|a| a.get()) - before;
    assert_eq!(n, 0, "allocations in 100 keep-alive requests");
}
