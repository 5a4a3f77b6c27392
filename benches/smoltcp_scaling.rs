//! Per-packet cost of smoltcp 0.14 as the number of TCP connections grows,
//! for the two L7 designs discussed in docs/L7-DESIGN.md. No DPDK: every
//! "wire" is an in-memory queue of IP packets (`Medium::Ip`).
//!
//! * Design A: one server `Interface` holding N established TCP sockets.
//!   smoltcp matches each incoming segment against the sockets in slot order
//!   and walks every socket on every egress pass, so cost grows with N.
//! * Design B: one small server `Interface` per connection (one socket each),
//!   picked by the caller's own hash map on (src ip, src port, dst port);
//!   only that interface is polled, and its `poll_at` is read afterwards to
//!   feed a timer wheel.
//!
//! Both sides are built in memory: a server side and a client side. All N
//! connections are established first, then one 64-byte segment is sent on
//! one connection (rotating over all of them) and both sides are polled until
//! it is delivered and acknowledged. Only the server-side work is timed:
//! A = `Interface::poll` of the big interface with the one segment queued;
//! B = parse + flow lookup + `Interface::poll` of one interface + `poll_at`.
//! A second measurement queues 32 segments on 32 distinct connections before
//! one server step (A: one poll; B: 32 dispatches) and divides by 32. Also
//! measured: a server poll with no packet and `poll_at` (A: the big
//! interface; B: one interface), server-side handshake time, and the heap
//! the server side frees when dropped, per connection.
//!
//! Wall time is the median of per-step `std::time::Instant` samples (two
//! shared cores: noisy). Instruction counts come from re-running this binary
//! under `valgrind --tool=callgrind` with collection toggled on only inside
//! the `measured_*` functions (set-up runs uninstrumented); they are
//! repeatable to within a few instructions.
//!
//! Run: `cargo bench --bench smoltcp_scaling`. Knobs (environment):
//! `SMOLTCP_BENCH_NS=100,1000,10000` connection counts,
//! `SMOLTCP_BENCH_BUF=4096` rx and tx buffer per socket (bytes),
//! `SMOLTCP_BENCH_NO_CALLGRIND=1` to skip the instruction counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::mem::size_of;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant as WallInstant;

use hashbrown::HashMap;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket,
};

// ---------------------------------------------------------------------------
// Heap accounting: live bytes, to measure memory per connection.

struct CountingAlloc;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// A global allocator can only be written with unsafe code: the one exception
// to the package's `unsafe_code = "deny"` outside src/dpdk, in a bench.
// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) };
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - l.size() as isize, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Valgrind client requests (x86-64 only; no-ops when not under valgrind).

const CG_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
const CG_DUMP_STATS_AT: u64 = CG_BASE + 3;
const CG_START_INSTRUMENTATION: u64 = CG_BASE + 4;

// Inline assembly is unsafe code by definition: allowed for this function.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn valgrind_request(request: u64, arg1: u64) -> u64 {
    let args: [u64; 6] = [request, arg1, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: valgrind's documented "special instruction" sequence: four
    // rotations of rdi that add up to 128 bits (rdi is unchanged) and an
    // `xchg rbx, rbx` (a no-op). Natively nothing happens; under valgrind the
    // request in `args` is read and the result written to rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn valgrind_request(_request: u64, _arg1: u64) -> u64 {
    0
}

fn callgrind_dump(tag: &str) {
    let c = std::ffi::CString::new(tag).unwrap();
    valgrind_request(CG_DUMP_STATS_AT, c.as_ptr() as u64);
}

// ---------------------------------------------------------------------------
// In-memory `Medium::Ip` device. Buffers are recycled through a free list, as
// mbufs would be: the RxToken gives its buffer back after `consume`, the
// TxToken takes one only inside `consume`.

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(1600))
}

fn give_buf(mut b: Vec<u8>) {
    b.clear();
    POOL.with(|p| p.borrow_mut().push(b));
}

const MTU: usize = 1500;

fn caps() -> DeviceCapabilities {
    let mut c = DeviceCapabilities::default();
    c.medium = Medium::Ip;
    c.max_transmission_unit = MTU;
    // Checksums: smoltcp's default (computed on tx, verified on rx), the
    // software case of a vdev without offloads.
    c
}

enum RxSrc<'a> {
    None,
    Queue(&'a mut VecDeque<Vec<u8>>),
    One(Option<Vec<u8>>),
}

struct MemDev<'a> {
    rx: RxSrc<'a>,
    tx: &'a mut VecDeque<Vec<u8>>,
}

struct MemRx(Vec<u8>);
struct MemTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for MemRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.0);
        give_buf(self.0);
        r
    }
}

impl phy::TxToken for MemTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = take_buf();
        b.resize(len, 0);
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl Device for MemDev<'_> {
    type RxToken<'a>
        = MemRx
    where
        Self: 'a;
    type TxToken<'a>
        = MemTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _t: Instant) -> Option<(MemRx, MemTx<'_>)> {
        let pkt = match &mut self.rx {
            RxSrc::None => None,
            RxSrc::Queue(q) => q.pop_front(),
            RxSrc::One(p) => p.take(),
        }?;
        Some((MemRx(pkt), MemTx(self.tx)))
    }

    fn transmit(&mut self, _t: Instant) -> Option<MemTx<'_>> {
        Some(MemTx(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        caps()
    }
}

// ---------------------------------------------------------------------------
// The two sides.

const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const SERVER_PORT: u16 = 80;
const CLIENT_PORT_BASE: u16 = 10_000;
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Packets per server poll in the burst measurement.
const BURST: usize = 32;

fn new_iface(ip: Ipv4Address, seed: u64, now: Instant) -> Interface {
    let mut cfg = Config::new(HardwareAddress::Ip);
    // Each interface draws its TCP initial sequence numbers from its own
    // generator: seeds must differ per interface.
    cfg.random_seed = seed;
    let mut scratch = VecDeque::new();
    let mut dev = MemDev {
        rx: RxSrc::None,
        tx: &mut scratch,
    };
    let mut iface = Interface::new(cfg, &mut dev, now);
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap());
    iface
}

fn new_socket(buf: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; buf]),
        tcp::SocketBuffer::new(vec![0u8; buf]),
    );
    // Immediate ACKs and no Nagle: every delivered segment produces exactly
    // one ACK inside the same poll, so each step is the same work.
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

fn seed_for(side: u64, i: usize) -> u64 {
    // splitmix64 of (side, index)
    let mut z = (side << 32 | i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

trait Side {
    /// Process every packet in `rx`; replies go to `tx`.
    fn deliver(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant);
    /// The application wrote on connection `i`: let it transmit.
    fn flush(&mut self, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant);
    /// The application wrote on each of `conns`: let them transmit.
    fn flush_many(&mut self, conns: &[usize], tx: &mut VecDeque<Vec<u8>>, now: Instant);
    /// Let every connection transmit (set-up only).
    fn flush_all(&mut self, tx: &mut VecDeque<Vec<u8>>, now: Instant);
    fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static>;
    fn len(&self) -> usize;
}

/// Design A: one interface, all sockets in one `SocketSet`.
struct Single {
    iface: Interface,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
}

impl Single {
    fn server(n: usize, buf: usize, now: Instant) -> Self {
        let iface = new_iface(SERVER_IP, seed_for(1, 0), now);
        let mut sockets = SocketSet::new(Vec::with_capacity(n));
        // smoltcp has no accept queue: a listening socket becomes the
        // connection, so N connections need N listening sockets.
        let handles = (0..n)
            .map(|_| {
                let mut s = new_socket(buf);
                s.listen(SERVER_PORT).unwrap();
                sockets.add(s)
            })
            .collect();
        Single {
            iface,
            sockets,
            handles,
        }
    }

    fn client(n: usize, buf: usize, now: Instant) -> Self {
        let mut iface = new_iface(CLIENT_IP, seed_for(2, 0), now);
        let mut sockets = SocketSet::new(Vec::with_capacity(n));
        let handles = (0..n)
            .map(|i| {
                let mut s = new_socket(buf);
                s.connect(
                    iface.context(),
                    (IpAddress::Ipv4(SERVER_IP), SERVER_PORT),
                    CLIENT_PORT_BASE + i as u16,
                )
                .unwrap();
                sockets.add(s)
            })
            .collect();
        Single {
            iface,
            sockets,
            handles,
        }
    }
}

impl Side for Single {
    fn deliver(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        let mut dev = MemDev {
            rx: RxSrc::Queue(rx),
            tx,
        };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }
    fn flush(&mut self, _i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        let mut dev = MemDev {
            rx: RxSrc::None,
            tx,
        };
        self.iface.poll(now, &mut dev, &mut self.sockets);
    }
    fn flush_many(&mut self, _conns: &[usize], tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        self.flush(0, tx, now)
    }
    fn flush_all(&mut self, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        self.flush(0, tx, now)
    }
    fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handles[i])
    }
    fn len(&self) -> usize {
        self.handles.len()
    }
}

/// Flow key as the brief states it: (source ip, source port, destination
/// port). Sluice's real key would add the destination address (VIP) and the
/// address family.
type FlowKey = (Ipv4Address, u16, u16);

/// Design B: one interface and one socket per connection.
struct Conn {
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    /// What the timer wheel would be keyed on.
    deadline: Option<Instant>,
}

struct Sharded {
    conns: Vec<Conn>,
    flows: HashMap<FlowKey, u32>,
    local_ip: Ipv4Address,
    /// Some(port): SYNs to this port with no flow create a connection.
    listen_port: Option<u16>,
    /// Cap on connections created by SYNs (the SYN-flood cap of the design).
    max_conns: usize,
    buf: usize,
    side_seed: u64,
}

/// (key, is a bare SYN) of an IPv4/TCP packet, parsed the way Sluice's own
/// flow table would, before any smoltcp code runs.
fn flow_key(pkt: &[u8]) -> Option<(FlowKey, bool)> {
    let ip = Ipv4Packet::new_checked(pkt).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((
        (ip.src_addr(), tcp.src_port(), tcp.dst_port()),
        tcp.syn() && !tcp.ack(),
    ))
}

impl Sharded {
    fn new(
        local_ip: Ipv4Address,
        listen_port: Option<u16>,
        n: usize,
        buf: usize,
        side: u64,
    ) -> Self {
        Sharded {
            conns: Vec::with_capacity(n),
            flows: HashMap::with_capacity(n),
            local_ip,
            listen_port,
            max_conns: n,
            buf,
            side_seed: side,
        }
    }

    fn server(n: usize, buf: usize) -> Self {
        Sharded::new(SERVER_IP, Some(SERVER_PORT), n, buf, 3)
    }

    fn client(n: usize, buf: usize, now: Instant) -> Self {
        let mut c = Sharded::new(CLIENT_IP, None, n, buf, 4);
        for i in 0..n {
            let port = CLIENT_PORT_BASE + i as u16;
            let mut iface = new_iface(CLIENT_IP, seed_for(4, i), now);
            let mut s = new_socket(buf);
            s.connect(
                iface.context(),
                (IpAddress::Ipv4(SERVER_IP), SERVER_PORT),
                port,
            )
            .unwrap();
            let mut sockets = SocketSet::new(Vec::with_capacity(1));
            let handle = sockets.add(s);
            c.flows.insert((SERVER_IP, SERVER_PORT, port), i as u32);
            c.conns.push(Conn {
                iface,
                sockets,
                handle,
                deadline: None,
            });
        }
        c
    }

    /// Listen path: a SYN for the listening port with no flow entry gets a
    /// fresh interface whose only socket is listening; the SYN is then fed
    /// to it like any other packet.
    fn accept(&mut self, key: FlowKey, now: Instant) -> Option<usize> {
        if self.conns.len() >= self.max_conns {
            return None; // SYN-flood / capacity cap: drop (Sluice would count it)
        }
        let idx = self.conns.len();
        let iface = new_iface(self.local_ip, seed_for(self.side_seed, idx), now);
        let mut s = new_socket(self.buf);
        s.listen(key.2).unwrap();
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(s);
        self.conns.push(Conn {
            iface,
            sockets,
            handle,
            deadline: None,
        });
        self.flows.insert(key, idx as u32);
        Some(idx)
    }

    #[inline]
    fn dispatch(&mut self, pkt: Vec<u8>, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        let Some((key, bare_syn)) = flow_key(&pkt) else {
            give_buf(pkt);
            return;
        };
        let idx = match self.flows.get(&key) {
            Some(&i) => i as usize,
            None if bare_syn && Some(key.2) == self.listen_port => match self.accept(key, now) {
                Some(i) => i,
                None => {
                    give_buf(pkt);
                    return;
                }
            },
            None => {
                // Sluice would answer with a RST itself here.
                give_buf(pkt);
                return;
            }
        };
        let c = &mut self.conns[idx];
        let mut dev = MemDev {
            rx: RxSrc::One(Some(pkt)),
            tx,
        };
        c.iface.poll(now, &mut dev, &mut c.sockets);
        c.deadline = c.iface.poll_at(now, &c.sockets);
    }

    fn poll_one(&mut self, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        let c = &mut self.conns[i];
        let mut dev = MemDev {
            rx: RxSrc::None,
            tx,
        };
        c.iface.poll(now, &mut dev, &mut c.sockets);
        c.deadline = c.iface.poll_at(now, &c.sockets);
    }
}

impl Side for Sharded {
    fn deliver(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        while let Some(p) = rx.pop_front() {
            self.dispatch(p, tx, now);
        }
    }
    fn flush(&mut self, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        self.poll_one(i, tx, now)
    }
    fn flush_many(&mut self, conns: &[usize], tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        for &i in conns {
            self.poll_one(i, tx, now);
        }
    }
    fn flush_all(&mut self, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        for i in 0..self.conns.len() {
            self.poll_one(i, tx, now);
        }
    }
    fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static> {
        let c = &mut self.conns[i];
        c.sockets.get_mut::<tcp::Socket>(c.handle)
    }
    fn len(&self) -> usize {
        self.conns.len()
    }
}

// ---------------------------------------------------------------------------
// Measured functions. Callgrind collects only inside `measured_*`.

#[inline(never)]
fn measured_step_a(
    s: &mut Single,
    rx: &mut VecDeque<Vec<u8>>,
    tx: &mut VecDeque<Vec<u8>>,
    now: Instant,
) {
    let mut dev = MemDev {
        rx: RxSrc::Queue(rx),
        tx,
    };
    s.iface.poll(now, &mut dev, &mut s.sockets);
}

#[inline(never)]
fn measured_step_b(
    s: &mut Sharded,
    rx: &mut VecDeque<Vec<u8>>,
    tx: &mut VecDeque<Vec<u8>>,
    now: Instant,
) {
    while let Some(p) = rx.pop_front() {
        s.dispatch(p, tx, now);
    }
}

#[inline(never)]
fn measured_idle_a(s: &mut Single, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
    let mut dev = MemDev {
        rx: RxSrc::None,
        tx,
    };
    s.iface.poll(now, &mut dev, &mut s.sockets);
}

#[inline(never)]
fn measured_idle_b(s: &mut Sharded, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
    let c = &mut s.conns[i];
    let mut dev = MemDev {
        rx: RxSrc::None,
        tx,
    };
    c.iface.poll(now, &mut dev, &mut c.sockets);
}

#[inline(never)]
fn measured_poll_at_a(s: &mut Single, now: Instant) -> Option<Instant> {
    s.iface.poll_at(now, &s.sockets)
}

#[inline(never)]
fn measured_poll_at_b(s: &mut Sharded, i: usize, now: Instant) -> Option<Instant> {
    let c = &mut s.conns[i];
    c.iface.poll_at(now, &c.sockets)
}

/// Object-safe wrapper so the driver is shared by both designs.
trait Server: Side {
    fn step(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant);
    fn idle(&mut self, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant);
    fn next_deadline(&mut self, i: usize, now: Instant) -> Option<Instant>;
}

impl Server for Single {
    fn step(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        measured_step_a(self, rx, tx, now)
    }
    fn idle(&mut self, _i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        measured_idle_a(self, tx, now)
    }
    fn next_deadline(&mut self, _i: usize, now: Instant) -> Option<Instant> {
        measured_poll_at_a(self, now)
    }
}

impl Server for Sharded {
    fn step(&mut self, rx: &mut VecDeque<Vec<u8>>, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        measured_step_b(self, rx, tx, now)
    }
    fn idle(&mut self, i: usize, tx: &mut VecDeque<Vec<u8>>, now: Instant) {
        measured_idle_b(self, i, tx, now)
    }
    fn next_deadline(&mut self, i: usize, now: Instant) -> Option<Instant> {
        measured_poll_at_b(self, i, now)
    }
}

// ---------------------------------------------------------------------------
// Driver.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Design {
    A,
    B,
}

struct Bed {
    server: Box<dyn Server>,
    client: Box<dyn Side>,
    c2s: VecDeque<Vec<u8>>,
    s2c: VecDeque<Vec<u8>>,
    /// server connection index of client connection i
    srv_of: Vec<usize>,
    now: Instant,
    n: usize,
    /// Whole set-up, both sides.
    setup_secs: f64,
    /// Server-side handshake work only (SYNs in, SYN-ACKs out, ACKs in).
    server_setup_secs: f64,
}

fn build(design: Design, n: usize, buf: usize) -> Bed {
    let t0 = WallInstant::now();
    let now = Instant::from_millis(1_000);
    let (mut server, mut client): (Box<dyn Server>, Box<dyn Side>) = match design {
        Design::A => (
            Box::new(Single::server(n, buf, now)),
            Box::new(Single::client(n, buf, now)),
        ),
        Design::B => (
            Box::new(Sharded::server(n, buf)),
            Box::new(Sharded::client(n, buf, now)),
        ),
    };
    let mut c2s = VecDeque::with_capacity(n + 16);
    let mut s2c = VecDeque::with_capacity(n + 16);
    client.flush_all(&mut c2s, now);
    assert_eq!(c2s.len(), n, "every client should have sent one SYN");
    let mut rounds = 0;
    let mut server_secs = 0.0;
    while !(c2s.is_empty() && s2c.is_empty()) {
        let t = WallInstant::now();
        server.deliver(&mut c2s, &mut s2c, now);
        server_secs += t.elapsed().as_secs_f64();
        client.deliver(&mut s2c, &mut c2s, now);
        rounds += 1;
        assert!(rounds < 16, "handshakes did not converge");
    }
    let mut srv_of = vec![usize::MAX; n];
    assert_eq!(server.len(), n);
    for j in 0..n {
        let s = server.socket(j);
        assert_eq!(s.state(), tcp::State::Established, "server conn {j}");
        let port = s.remote_endpoint().unwrap().port;
        srv_of[(port - CLIENT_PORT_BASE) as usize] = j;
    }
    for (i, &j) in srv_of.iter().enumerate() {
        assert_eq!(
            client.socket(i).state(),
            tcp::State::Established,
            "client conn {i}"
        );
        assert_ne!(j, usize::MAX);
    }
    Bed {
        server,
        client,
        c2s,
        s2c,
        srv_of,
        now,
        n,
        setup_secs: t0.elapsed().as_secs_f64(),
        server_setup_secs: server_secs,
    }
}

impl Bed {
    /// One delivered segment. Returns server-side step time in ns.
    fn one_packet(&mut self, it: usize) -> u64 {
        self.now += Duration::from_micros(100);
        let ci = (it.wrapping_mul(7919) + 13) % self.n;
        let sent = self.client.socket(ci).send_slice(&PAYLOAD).unwrap();
        debug_assert_eq!(sent, PAYLOAD.len());
        self.client.flush(ci, &mut self.c2s, self.now);
        debug_assert_eq!(self.c2s.len(), 1);
        let t0 = WallInstant::now();
        self.server.step(&mut self.c2s, &mut self.s2c, self.now);
        let dt = t0.elapsed().as_nanos() as u64;
        let mut rbuf = [0u8; 128];
        let got = self
            .server
            .socket(self.srv_of[ci])
            .recv_slice(&mut rbuf)
            .unwrap();
        assert_eq!(got, PAYLOAD.len(), "segment not delivered");
        debug_assert!(self.c2s.is_empty());
        debug_assert_eq!(self.s2c.len(), 1, "expected exactly one ACK");
        self.client.deliver(&mut self.s2c, &mut self.c2s, self.now);
        assert!(self.c2s.is_empty() && self.s2c.is_empty());
        dt
    }

    /// A burst of segments on `BURST` distinct connections, all queued before
    /// the server runs once. Returns server-side time per packet in ns.
    fn burst(&mut self, it: usize) -> u64 {
        self.now += Duration::from_micros(100);
        let b = BURST.min(self.n);
        let conns: Vec<usize> = (0..b)
            .map(|j| ((it * b + j).wrapping_mul(7919) + 13) % self.n)
            .collect();
        for &ci in &conns {
            let sent = self.client.socket(ci).send_slice(&PAYLOAD).unwrap();
            debug_assert_eq!(sent, PAYLOAD.len());
        }
        self.client.flush_many(&conns, &mut self.c2s, self.now);
        debug_assert_eq!(self.c2s.len(), b);
        let t0 = WallInstant::now();
        self.server.step(&mut self.c2s, &mut self.s2c, self.now);
        let dt = t0.elapsed().as_nanos() as u64;
        let mut rbuf = [0u8; 128];
        for &ci in &conns {
            let got = self
                .server
                .socket(self.srv_of[ci])
                .recv_slice(&mut rbuf)
                .unwrap();
            assert_eq!(got, PAYLOAD.len(), "segment not delivered");
        }
        debug_assert_eq!(self.s2c.len(), b, "expected one ACK per segment");
        self.client.deliver(&mut self.s2c, &mut self.c2s, self.now);
        assert!(self.c2s.is_empty() && self.s2c.is_empty());
        dt / b as u64
    }

    fn idle(&mut self, it: usize) -> u64 {
        let ci = (it.wrapping_mul(7919) + 13) % self.n;
        let si = self.srv_of[ci];
        let t0 = WallInstant::now();
        self.server.idle(si, &mut self.s2c, self.now);
        let dt = t0.elapsed().as_nanos() as u64;
        debug_assert!(self.s2c.is_empty());
        dt
    }

    fn poll_at(&mut self, it: usize) -> u64 {
        let ci = (it.wrapping_mul(7919) + 13) % self.n;
        let si = self.srv_of[ci];
        let t0 = WallInstant::now();
        black_box(self.server.next_deadline(si, self.now));
        t0.elapsed().as_nanos() as u64
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn run_timed(
    bed: &mut Bed,
    f: fn(&mut Bed, usize) -> u64,
    budget_s: f64,
    max: usize,
) -> (u64, usize) {
    for it in 0..10 {
        f(bed, it);
    }
    let t0 = WallInstant::now();
    let mut v = Vec::with_capacity(max);
    let mut it = 10;
    while v.len() < max && (v.len() < 30 || t0.elapsed().as_secs_f64() < budget_s) {
        v.push(f(bed, it));
        it += 1;
    }
    let n = v.len();
    (median(&mut v), n)
}

#[derive(Default, Clone)]
struct Row {
    step_ns: u64,
    step_iters: usize,
    burst_ns: u64,
    burst_ir: Option<f64>,
    idle_ns: u64,
    poll_at_ns: u64,
    setup_us_per_conn: f64,
    server_handshake_us_per_conn: f64,
    heap_per_conn: f64,
    step_ir: Option<f64>,
    idle_ir: Option<f64>,
    poll_at_ir: Option<f64>,
}

fn native(design: Design, n: usize, buf: usize) -> Row {
    let mut bed = build(design, n, buf);
    let (step_ns, step_iters) = run_timed(&mut bed, Bed::one_packet, 1.5, 50_000);
    let (burst_ns, _) = run_timed(&mut bed, Bed::burst, 0.8, 20_000);
    let (idle_ns, _) = run_timed(&mut bed, Bed::idle, 0.4, 50_000);
    let (poll_at_ns, _) = run_timed(&mut bed, Bed::poll_at, 0.4, 50_000);
    let setup_us_per_conn = bed.setup_secs * 1e6 / n as f64;
    let server_handshake_us_per_conn = bed.server_setup_secs * 1e6 / n as f64;
    // Server-side heap: what dropping the server gives back.
    let Bed { server, .. } = bed;
    let before = live_bytes();
    drop(server);
    let heap_per_conn = (before - live_bytes()) as f64 / n as f64;
    Row {
        step_ns,
        step_iters,
        burst_ns,
        idle_ns,
        poll_at_ns,
        setup_us_per_conn,
        server_handshake_us_per_conn,
        heap_per_conn,
        ..Row::default()
    }
}

/// Child mode, run under callgrind: set-up uninstrumented, then fixed numbers
/// of iterations per phase, each phase ended by a named dump.
fn child(spec: &str) {
    let mut it = spec.split(',');
    let design = match it.next() {
        Some("A") => Design::A,
        _ => Design::B,
    };
    let n: usize = it.next().unwrap().parse().unwrap();
    let buf: usize = it.next().unwrap().parse().unwrap();
    let k: usize = it.next().unwrap().parse().unwrap();
    let mut bed = build(design, n, buf);
    valgrind_request(CG_START_INSTRUMENTATION, 0);
    for i in 0..10 {
        bed.one_packet(i);
    }
    callgrind_dump("warmup");
    for i in 10..10 + k {
        bed.one_packet(i);
    }
    callgrind_dump("step");
    let kb = (k / 4).max(5);
    for i in 0..kb {
        bed.burst(i);
    }
    callgrind_dump("burst");
    for i in 0..k {
        bed.idle(i);
    }
    callgrind_dump("idle");
    for i in 0..k {
        bed.poll_at(i);
    }
    callgrind_dump("poll_at");
    println!("ITERS {k} {kb}");
}

/// Instructions per call for each phase, from the dump files of one child.
/// Instructions per packet (one-at-a-time and in bursts), per idle poll and
/// per poll_at call.
struct IrCounts {
    step: f64,
    burst: f64,
    idle: f64,
    poll_at: f64,
}

fn callgrind(design: Design, n: usize, buf: usize) -> Option<IrCounts> {
    let exe = std::env::current_exe().ok()?;
    let dir = std::env::temp_dir().join(format!("smoltcp_scaling.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let k = match design {
        Design::A => (200_000 / n).clamp(10, 200),
        Design::B => 200,
    };
    let d = if design == Design::A { "A" } else { "B" };
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*measured_*")
        .arg(format!("--callgrind-out-file={}/cg.out", dir.display()))
        .arg(&exe)
        .env("SMOLTCP_BENCH_CHILD", format!("{d},{n},{buf},{k}"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "callgrind run failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let mut phase: std::collections::HashMap<String, u64> = Default::default();
    for e in std::fs::read_dir(&dir).ok()? {
        let text = std::fs::read_to_string(e.ok()?.path()).ok()?;
        let mut trigger = None;
        let mut total = None;
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("desc: Trigger: Client Request: ") {
                trigger = Some(t.trim().to_string());
            } else if let Some(t) = line
                .strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
            {
                total = t.split_whitespace().next().and_then(|x| x.parse().ok());
            }
        }
        if let (Some(t), Some(v)) = (trigger, total) {
            phase.insert(t, v);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let per = |p: &str, calls: usize| phase.get(p).map(|&v| v as f64 / calls as f64);
    let kb = (k / 4).max(5);
    Some(IrCounts {
        step: per("step", k)?,
        burst: per("burst", kb * BURST.min(n))?,
        idle: per("idle", k)?,
        poll_at: per("poll_at", k)?,
    })
}

fn fmt_ir(v: Option<f64>) -> String {
    let Some(x) = v else { return "n/a".into() };
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 100_000 {
        format!("{:.0} µs", ns as f64 / 1000.0)
    } else if ns >= 10_000 {
        format!("{:.1} µs", ns as f64 / 1000.0)
    } else {
        format!("{ns} ns")
    }
}

fn main() {
    if let Ok(spec) = std::env::var("SMOLTCP_BENCH_CHILD") {
        child(&spec);
        return;
    }
    let ns: Vec<usize> = std::env::var("SMOLTCP_BENCH_NS")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SMOLTCP_BENCH_NS"))
        .collect();
    let buf: usize = std::env::var("SMOLTCP_BENCH_BUF")
        .ok()
        .map(|s| s.parse().expect("SMOLTCP_BENCH_BUF"))
        .unwrap_or(4096);
    assert!(
        ns.iter().all(|n| (1..=50_000).contains(n)),
        "1..=50000 connections"
    );
    let want_cg = std::env::var_os("SMOLTCP_BENCH_NO_CALLGRIND").is_none()
        && Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());

    let timer = {
        let mut v: Vec<u64> = (0..10_000)
            .map(|_| {
                let t = WallInstant::now();
                t.elapsed().as_nanos() as u64
            })
            .collect();
        median(&mut v)
    };

    println!(
        "smoltcp 0.14 scaling: Medium::Ip, in-memory queues, 64-byte segments, software checksums,"
    );
    println!(
        "ack delay off, Nagle off; rx = tx = {buf} B per socket; wall = median per step \
         (clock overhead ~{timer} ns included); Ir = callgrind instructions per step."
    );
    println!();
    println!("sizes (bytes): Interface {}, SocketSet {}, SocketStorage (one slot, holds the tcp::Socket) {}, \
              tcp::Socket {}, design-B Conn (Interface+SocketSet+handle+deadline) {}, flow entry {} + 1 ctrl byte",
        size_of::<Interface>(),
        size_of::<SocketSet<'static>>(),
        size_of::<SocketStorage<'static>>(),
        size_of::<tcp::Socket<'static>>(),
        size_of::<Conn>(),
        size_of::<(FlowKey, u32)>(),
    );
    println!();

    let mut rows = Vec::new();
    for design in [Design::A, Design::B] {
        for &n in &ns {
            let t = WallInstant::now();
            let mut row = native(design, n, buf);
            let native_s = t.elapsed().as_secs_f64();
            let t = WallInstant::now();
            if want_cg {
                if let Some(c) = callgrind(design, n, buf) {
                    row.step_ir = Some(c.step);
                    row.burst_ir = Some(c.burst);
                    row.idle_ir = Some(c.idle);
                    row.poll_at_ir = Some(c.poll_at);
                }
            }
            eprintln!(
                "  [{design:?} N={n}: native {native_s:.1} s ({} steps), callgrind {:.1} s]",
                row.step_iters,
                t.elapsed().as_secs_f64()
            );
            rows.push((design, n, row));
        }
    }

    println!("| design | N conns | per packet: wall | per packet: Ir | per packet, bursts of {BURST}: wall | bursts: Ir | idle poll, no packet: wall | idle poll: Ir | poll_at: wall | poll_at: Ir | handshake per conn: server side (whole set-up) | server heap per conn |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (design, n, r) in &rows {
        let name = match design {
            Design::A => "A: 1 iface, N sockets",
            Design::B => "B: N ifaces + flow map",
        };
        println!(
            "| {name} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} µs ({:.1} µs) | {:.0} B |",
            fmt_ns(r.step_ns),
            fmt_ir(r.step_ir),
            fmt_ns(r.burst_ns),
            fmt_ir(r.burst_ir),
            fmt_ns(r.idle_ns),
            fmt_ir(r.idle_ir),
            fmt_ns(r.poll_at_ns),
            fmt_ir(r.poll_at_ir),
            r.server_handshake_us_per_conn,
            r.setup_us_per_conn,
            r.heap_per_conn,
        );
    }
    for design in [Design::A, Design::B] {
        let mut v: Vec<&(Design, usize, Row)> = rows.iter().filter(|r| r.0 == design).collect();
        v.sort_by_key(|r| r.1);
        if let (Some(lo), Some(hi)) = (v.first(), v.last()) {
            if lo.1 != hi.1 {
                let ir = match (lo.2.step_ir, hi.2.step_ir) {
                    (Some(a), Some(b)) => format!("{:.2}x", b / a),
                    _ => "n/a".into(),
                };
                println!(
                    "design {design:?}: per-packet cost N={} -> N={}: wall {:.2}x, Ir {ir}",
                    lo.1,
                    hi.1,
                    hi.2.step_ns as f64 / lo.2.step_ns as f64,
                );
            }
        }
    }
    println!();
    println!("A per packet = Interface::poll of the one interface with one segment queued (match + ACK + egress walks).");
    println!("Bursts: {BURST} segments on distinct connections queued, then one server step (A: one poll; B: {BURST} dispatches); cost / {BURST}.");
    println!("B per packet = IPv4/TCP parse + hashbrown lookup + Interface::poll of that connection's interface + its poll_at.");
    println!("A idle/poll_at walk all N sockets; B idle/poll_at are for ONE interface (B never polls idle interfaces:");
    println!("a timer wheel keyed by poll_at says which are due). Handshake: server-side time per connection while\n\
              establishing all N (in parentheses: the whole set-up, both sides); A's total is O(N^2). Heap: live bytes freed by dropping\n\
              the server side (socket buffers + smoltcp structures + flow map), divided by N.");
}
