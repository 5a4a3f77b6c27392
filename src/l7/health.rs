//! Active health checks of backends, for L7 listeners and L4 services.
//!
//! One worker (worker 0) probes: every `interval_ms` it opens a TCP
//! connection to each checked backend through its own userspace stack (the
//! data ports belong to DPDK, so the kernel usually has no route to the
//! backends). An HTTP check sends `GET <path>` with `Connection: close` and
//! reads the status line: a status in the expected range within
//! `timeout_ms` is a success, anything else (refused, reset, timeout, other
//! status) a failure. A TCP check succeeds when the connection is
//! accepted. In a cluster with `[cluster.tls]` both go over TLS with the
//! cluster's settings, so that a backend its requests could not verify is
//! down: an HTTP check is HTTP over TLS, a TCP check succeeds when the
//! handshake is done. `rise` successes in a row bring a backend up, `fall` failures
//! take it down. The verdict is published in [`HealthState`]: L7 workers
//! read it when they pick a backend for a request; for L4 services the
//! control thread watches [`HealthState::generation`] and publishes a plane
//! whose Maglev tables leave the down backends out (`control::compile`).
//! Backends start up, so that a restart does not turn away traffic while
//! the first probes run; connection failures are retried on another
//! backend meanwhile.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::net::services::MAX_BACKENDS;
use crate::wire::{ipv4, ipv6, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

const UP: u8 = 0;
const DOWN: u8 = 1;
/// Down by passive marking ([`HealthState::rst_on_new_flow`]): its
/// check's count of passes starts again from zero.
const SUSPECT: u8 = 2;

/// Health of every backend id, shared by all workers and the admin thread.
/// Written by the probing worker, and by any worker that marks a backend
/// down from what its new connections show ([`HealthState::rst_on_new_flow`]).
pub struct HealthState {
    state: Vec<AtomicU8>,
    /// Checks passed and failed, by backend id.
    passed: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    /// New L4 connections in a row the backend answered with a RST, by
    /// backend id, all workers together.
    rst_streak: Vec<AtomicU32>,
    /// Times passive marking took the backend down, by backend id.
    passive_downs: Vec<AtomicU64>,
    /// Bumped after every change of a backend's state.
    generation: AtomicU64,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            state: (0..MAX_BACKENDS).map(|_| AtomicU8::new(UP)).collect(),
            passed: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
            rst_streak: (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect(),
            passive_downs: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
            generation: AtomicU64::new(0),
        }
    }
}

impl HealthState {
    #[inline]
    pub fn is_up(&self, id: u32) -> bool {
        self.state
            .get(id as usize)
            .is_none_or(|s| s.load(Ordering::Relaxed) == UP)
    }

    pub fn set(&self, id: u32, up: bool) {
        if let Some(s) = self.state.get(id as usize) {
            let new = if up { UP } else { DOWN };
            if s.swap(new, Ordering::Relaxed) != new {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Passive marking, called by a worker when backend `id` answers a new
    /// L4 connection (the first reply of a NAT connection whose SYN it
    /// forwarded): `rst` for a RST, false for a SYN-ACK. After `limit`
    /// RSTs in a row (all workers together) the backend is taken down as
    /// suspect: its active check must then pass `rise` times in a row,
    /// counted from now, to bring it back. Returns true when this call took
    /// it down. A SYN-ACK costs a load, and a store only after a RST.
    pub fn rst_on_new_flow(&self, id: u32, rst: bool, limit: u32) -> bool {
        let Some(streak) = self.rst_streak.get(id as usize) else {
            return false;
        };
        if !rst {
            if streak.load(Ordering::Relaxed) != 0 {
                streak.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let n = streak.fetch_add(1, Ordering::Relaxed) + 1;
        if limit == 0 || n < limit {
            return false;
        }
        streak.store(0, Ordering::Relaxed);
        let s = &self.state[id as usize];
        if s.compare_exchange(UP, SUSPECT, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.passive_downs[id as usize].fetch_add(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        false
    }

    /// Times passive marking took `id` down.
    pub fn passive_downs(&self, id: u32) -> u64 {
        self.passive_downs
            .get(id as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Whether passive marking took `id` down since the last call (the
    /// probing worker then restarts its count of passes); it stays down.
    pub fn take_suspect(&self, id: u32) -> bool {
        self.state.get(id as usize).is_some_and(|s| {
            s.compare_exchange(SUSPECT, DOWN, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Changes so far: the control thread republishes the plane when this
    /// moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Count one check result of `id` (single writer: the probing worker).
    pub fn count(&self, id: u32, ok: bool) {
        let v = if ok { &self.passed } else { &self.failed };
        if let Some(c) = v.get(id as usize) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// (passed, failed) checks of `id`.
    pub fn checks(&self, id: u32) -> (u64, u64) {
        let get = |v: &Vec<AtomicU64>| v.get(id as usize).map_or(0, |c| c.load(Ordering::Relaxed));
        (get(&self.passed), get(&self.failed))
    }
}

/// Probe state of one backend.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    /// When the next probe starts (ns).
    pub next_ns: u64,
    /// The probe connection in flight, if any.
    pub conn: Option<u32>,
    pub started_ns: u64,
    pub sent: bool,
    pub buf: Vec<u8>,
    pub successes: u32,
    pub failures: u32,
    /// A UDP check in flight: the tuple its datagram went out with (its
    /// SNAT port is held until the check ends).
    pub udp: Option<UdpTuple>,
}

/// The status code of an HTTP/1.x status line at the start of `buf`, once
/// the line is complete. `Some(Err(()))`: not a status line.
pub fn status_of(buf: &[u8]) -> Option<Result<u16, ()>> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[..end];
    if line.len() < 12 || !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return Some(Err(()));
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Some(Err(()));
    }
    Some(Ok(code
        .iter()
        .fold(0u16, |a, d| a * 10 + (d - b'0') as u16)))
}

/// How much of a probe's answer is read to find its status line.
pub const STATUS_LINE_MAX: usize = 256;

/// The verdict on a probe from what it has read so far (`buf`, at most
/// [`STATUS_LINE_MAX`] bytes) and whether its connection is still opening
/// or open: `Some(true)` for a status within `expect`, `Some(false)` for
/// anything else that is final (another status, not HTTP, no status line
/// in [`STATUS_LINE_MAX`] bytes, the connection ended first), `None` to
/// wait for more.
pub fn verdict(buf: &[u8], expect: (u16, u16), open: bool) -> Option<bool> {
    match status_of(buf) {
        Some(Ok(code)) => Some(code >= expect.0 && code <= expect.1),
        Some(Err(())) => Some(false),
        None if buf.len() >= STATUS_LINE_MAX => Some(false),
        None if !open => Some(false),
        None => None,
    }
}

/// The verdict on a TCP check: passed once the connection is established,
/// failed once it is closed (refused or reset) without having been, `None`
/// while it is still opening. The timeout is the caller's.
pub fn verdict_tcp(established: bool, open: bool) -> Option<bool> {
    match (established, open) {
        (true, _) => Some(true),
        (false, false) => Some(false),
        (false, true) => None,
    }
}

/// The tuple of a UDP check in flight, as Sluice sent it: from
/// `local:lport` (a SNAT address and port of the probing worker) to
/// `remote:rport` (the backend and its check port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpTuple {
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
}

/// Write the IP packet of a UDP check, `t.local -> t.remote` carrying
/// `payload`, at the start of `out`, with both checksums; its length
/// (None: `out` is too short, or the families differ).
pub fn write_udp_check(t: &UdpTuple, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let udp_len = crate::wire::udp::HEADER_LEN + payload.len();
    let l3 = match (t.local, t.remote) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ipv4::HEADER_LEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => ipv6::HEADER_LEN,
        _ => return None,
    };
    let end = l3 + udp_len;
    if out.len() < end || udp_len > usize::from(u16::MAX) - l3 {
        return None;
    }
    {
        let u = &mut out[l3..end];
        u[crate::wire::udp::HEADER_LEN..].copy_from_slice(payload);
        let mut u = UdpPacket::new_unchecked(u);
        u.set_src_port(t.lport);
        u.set_dst_port(t.rport);
        u.set_len(udp_len as u16);
    }
    match (t.local, t.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            ipv4::Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: IpProtocol::Udp,
                payload_len: udp_len,
                ttl: 64,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut out[..l3]));
            UdpPacket::new_unchecked(&mut out[l3..end]).fill_checksum_v4(&src, &dst);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            ipv6::Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Udp,
                payload_len: udp_len,
                hop_limit: 64,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut out[..l3]));
            UdpPacket::new_unchecked(&mut out[l3..end]).fill_checksum_v6(&src, &dst);
        }
        _ => return None,
    }
    Some(end)
}

/// What a packet handed to the probing worker's UDP checks says.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpAnswer<'a> {
    /// A datagram that answers the check with tuple `.0`, and its payload.
    Reply(UdpTuple, &'a [u8]),
    /// An ICMP destination unreachable (port unreachable, host
    /// unreachable, prohibited, ...; not IPv4's "fragmentation needed")
    /// about the check's datagram: it can never be answered.
    Unreachable(UdpTuple),
    /// Another ICMP error about it (time exceeded, too big): the check
    /// waits for its timeout.
    OtherError(UdpTuple),
}

/// Read `pkt` (an IP packet, its IP header checked by the worker) as an
/// answer to a UDP check: a UDP datagram with a good checksum, or an ICMP
/// or ICMPv6 error quoting a UDP datagram (the tuple is then the quoted
/// datagram's, which is the check's own). None: neither, or malformed.
pub fn udp_answer(pkt: &[u8]) -> Option<UdpAnswer<'_>> {
    let (src, dst, proto, l4) = ip_header(pkt)?;
    let body = &pkt[l4..];
    match proto {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(body).ok()?;
            let ok = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => u.verify_checksum_v4(&s, &d),
                (IpAddr::V6(s), IpAddr::V6(d)) => u.verify_checksum_v6(&s, &d),
                _ => false,
            };
            if !ok {
                return None;
            }
            let t = UdpTuple {
                local: dst,
                lport: u.dst_port(),
                remote: src,
                rport: u.src_port(),
            };
            Some(UdpAnswer::Reply(t, u.payload()))
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6 => {
            // type, code, checksum, 4 unused bytes, then the quote.
            let (kind, code, quote) = (*body.first()?, *body.get(1)?, body.get(8..)?);
            let unreachable = if proto == IpProtocol::Icmp {
                if !matches!(kind, 3 | 11) {
                    return None;
                }
                // Code 4 is "fragmentation needed", IPv4's packet too big.
                kind == 3 && code != 4
            } else {
                if !matches!(kind, 1..=3) {
                    return None;
                }
                kind == 1
            };
            let (qsrc, qdst, qproto, ql4) = ip_header(quote)?;
            if qproto != IpProtocol::Udp || quote.len() < ql4 + 4 {
                return None;
            }
            let p = &quote[ql4..ql4 + 4];
            let t = UdpTuple {
                local: qsrc,
                lport: u16::from_be_bytes([p[0], p[1]]),
                remote: qdst,
                rport: u16::from_be_bytes([p[2], p[3]]),
            };
            Some(if unreachable {
                UdpAnswer::Unreachable(t)
            } else {
                UdpAnswer::OtherError(t)
            })
        }
        _ => None,
    }
}

/// Source, destination, protocol and transport offset of an IPv4 or IPv6
/// packet (IPv4 options skipped; IPv6 extension headers not walked). The
/// lengths are the bytes present: a quoted datagram is cut short.
fn ip_header(pkt: &[u8]) -> Option<(IpAddr, IpAddr, IpProtocol, usize)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= ipv4::HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(pkt);
            let hl = ip.header_len();
            if hl < ipv4::HEADER_LEN || pkt.len() < hl {
                return None;
            }
            let (s, d): (Ipv4Addr, Ipv4Addr) = (ip.src_addr(), ip.dst_addr());
            Some((IpAddr::V4(s), IpAddr::V4(d), ip.protocol(), hl))
        }
        6 if pkt.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(pkt);
            let (s, d): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
            Some((
                IpAddr::V6(s),
                IpAddr::V6(d),
                ip.next_header(),
                ipv6::HEADER_LEN,
            ))
        }
        _ => None,
    }
}

/// The verdict on a UDP check's reply: it passes when it contains
/// `expect` (any reply when `expect` is empty).
pub fn verdict_udp(reply: &[u8], expect: &[u8]) -> bool {
    expect.is_empty() || reply.windows(expect.len()).any(|w| w == expect)
}

/// Apply one probe result; returns `Some(new state)` when the backend
/// changes state.
pub fn record(p: &mut Probe, ok: bool, was_up: bool, rise: u32, fall: u32) -> Option<bool> {
    if ok {
        p.successes = p.successes.saturating_add(1);
        p.failures = 0;
        (!was_up && p.successes >= rise).then_some(true)
    } else {
        p.failures = p.failures.saturating_add(1);
        p.successes = 0;
        (was_up && p.failures >= fall).then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(Ok(200)));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\nA: b\r\n"), Some(Ok(503)));
        assert_eq!(status_of(b"HTTP/1.1 200 OK"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), Some(Err(())));
        assert_eq!(status_of(b"HTTP/1.1 2x0 OK\r\n"), Some(Err(())));
    }

    #[test]
    fn rise_and_fall() {
        let mut p = Probe::default();
        // Up; two failures are not enough with fall = 3.
        assert_eq!(record(&mut p, false, true, 2, 3), None);
        assert_eq!(record(&mut p, false, true, 2, 3), None);
        assert_eq!(record(&mut p, false, true, 2, 3), Some(false));
        // Down; one success then a failure resets the count.
        assert_eq!(record(&mut p, true, false, 2, 3), None);
        assert_eq!(record(&mut p, false, false, 2, 3), None);
        assert_eq!(record(&mut p, true, false, 2, 3), None);
        assert_eq!(record(&mut p, true, false, 2, 3), Some(true));
    }

    #[test]
    fn verdicts() {
        let long = [b'x'; STATUS_LINE_MAX];
        // (what was read, connection open, verdict) with expect 200..=399.
        let cases: &[(&[u8], bool, Option<bool>)] = &[
            (b"HTTP/1.1 200 OK\r\n", true, Some(true)),
            (b"HTTP/1.1 399 X\r\n", false, Some(true)),
            (b"HTTP/1.1 404 Not Found\r\n", true, Some(false)),
            (b"HTTP/1.1 500 Oops\r\n", true, Some(false)),
            (b"HTTP/1.1 20", true, None),
            (b"HTTP/1.1 20", false, Some(false)),
            (b"", true, None),
            (b"", false, Some(false)),
            (b"SSH-2.0-OpenSSH_9\r\n", true, Some(false)),
            (&long, true, Some(false)),
        ];
        for &(buf, open, want) in cases {
            assert_eq!(
                verdict(buf, (200, 399), open),
                want,
                "{:?} open {open}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    /// A probe sequence against rise 2 / fall 2, from up: the published
    /// state after each result.
    #[test]
    fn flapping_needs_rise_and_fall_in_a_row() {
        let results = [
            true, false, true, false, false, true, false, true, true, true,
        ];
        let want = [
            true, true, true, true, false, false, false, false, true, true,
        ];
        let mut p = Probe::default();
        let mut up = true;
        for (i, (&ok, &w)) in results.iter().zip(&want).enumerate() {
            if let Some(s) = record(&mut p, ok, up, 2, 2) {
                up = s;
            }
            assert_eq!(up, w, "after result {i}");
        }
    }

    #[test]
    fn state_defaults_up() {
        let s = HealthState::default();
        assert!(s.is_up(7));
        assert_eq!(s.generation(), 0);
        s.set(7, false);
        assert!(!s.is_up(7));
        assert!(s.is_up(8));
        assert!(s.is_up(u32::MAX));
        // Only changes move the generation.
        assert_eq!(s.generation(), 1);
        s.set(7, false);
        s.set(8, true);
        assert_eq!(s.generation(), 1);
        s.set(7, true);
        assert_eq!(s.generation(), 2);
        s.count(7, true);
        s.count(7, false);
        s.count(7, false);
        assert_eq!(s.checks(7), (1, 2));
    }

    #[test]
    fn tcp_verdicts() {
        assert_eq!(verdict_tcp(true, true), Some(true));
        assert_eq!(verdict_tcp(true, false), Some(true));
        assert_eq!(verdict_tcp(false, true), None);
        assert_eq!(verdict_tcp(false, false), Some(false));
    }

    fn tuple(v6: bool) -> UdpTuple {
        if v6 {
            UdpTuple {
                local: "fd00::1".parse().unwrap(),
                lport: 40000,
                remote: "fd00::11".parse().unwrap(),
                rport: 53,
            }
        } else {
            UdpTuple {
                local: "10.0.0.1".parse().unwrap(),
                lport: 40000,
                remote: "10.0.0.11".parse().unwrap(),
                rport: 53,
            }
        }
    }

    /// The backend's answer to `t`: `payload` back, from the backend.
    fn reply(t: &UdpTuple, payload: &[u8]) -> Vec<u8> {
        let back = UdpTuple {
            local: t.remote,
            lport: t.rport,
            remote: t.local,
            rport: t.lport,
        };
        let mut out = vec![0u8; 1500];
        let n = write_udp_check(&back, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// An ICMP (v4) or ICMPv6 error of `kind`/`code` from the backend
    /// quoting `datagram`; checksums are the worker's business.
    fn icmp_error(t: &UdpTuple, kind: u8, code: u8, datagram: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&datagram[..datagram.len().min(28 + 20)]);
        let mut out = vec![0u8; 40 + icmp.len()];
        let l3 = match (t.remote, t.local) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ipv4::Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: IpProtocol::Icmp,
                    payload_len: icmp.len(),
                    ttl: 64,
                }
                .emit(&mut Ipv4Packet::new_unchecked(&mut out[..20]));
                20
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: icmp.len(),
                    hop_limit: 64,
                }
                .emit(&mut Ipv6Packet::new_unchecked(&mut out[..40]));
                40
            }
            _ => unreachable!(),
        };
        out.truncate(l3 + icmp.len());
        out[l3..].copy_from_slice(&icmp);
        out
    }

    #[test]
    fn udp_check_and_its_answers() {
        for v6 in [false, true] {
            let t = tuple(v6);
            let mut sent = vec![0u8; 1500];
            let n = write_udp_check(&t, b"\x12\x34ping", &mut sent).unwrap();
            sent.truncate(n);
            // What Sluice sends parses as a datagram from it, checksum good.
            assert_eq!(
                udp_answer(&sent),
                Some(UdpAnswer::Reply(
                    UdpTuple {
                        local: t.remote,
                        lport: t.rport,
                        remote: t.local,
                        rport: t.lport
                    },
                    &b"\x12\x34ping"[..]
                )),
                "v6 {v6}"
            );
            let r = reply(&t, b"pong ok");
            assert_eq!(udp_answer(&r), Some(UdpAnswer::Reply(t, &b"pong ok"[..])));
            // A bit flipped in the payload: the checksum refuses it.
            let mut bad = r.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(udp_answer(&bad), None, "v6 {v6}");
            // (ICMP type, ICMPv6 type, code, answer)
            let unreachable = if v6 { (1, 4) } else { (3, 3) };
            let e = icmp_error(&t, unreachable.0, unreachable.1, &sent);
            assert_eq!(udp_answer(&e), Some(UdpAnswer::Unreachable(t)), "v6 {v6}");
            let exceeded = if v6 { 3 } else { 11 };
            let e = icmp_error(&t, exceeded, 0, &sent);
            assert_eq!(udp_answer(&e), Some(UdpAnswer::OtherError(t)), "v6 {v6}");
            let too_big = if v6 { (2, 0) } else { (3, 4) };
            let e = icmp_error(&t, too_big.0, too_big.1, &sent);
            assert_eq!(udp_answer(&e), Some(UdpAnswer::OtherError(t)), "v6 {v6}");
            // An echo request is no answer; nor is a quote of TCP.
            let e = icmp_error(&t, if v6 { 128 } else { 8 }, 0, &sent);
            assert_eq!(udp_answer(&e), None);
            let mut tcp = sent.clone();
            tcp[if v6 { 6 } else { 9 }] = 6;
            let e = icmp_error(&t, unreachable.0, unreachable.1, &tcp);
            assert_eq!(udp_answer(&e), None);
            // Every prefix of every answer: no panic, and nothing that is
            // cut inside the UDP header or the quoted ports passes.
            for pkt in [&r, &icmp_error(&t, unreachable.0, unreachable.1, &sent)] {
                for k in 0..pkt.len() {
                    let _ = udp_answer(&pkt[..k]);
                }
            }
            let l4 = if v6 { 40 } else { 20 };
            for k in 0..l4 + 8 {
                assert_eq!(udp_answer(&r[..k]), None, "cut at {k}");
            }
        }
    }

    #[test]
    fn udp_check_refuses_what_does_not_fit() {
        let t = tuple(false);
        let mut small = [0u8; 30];
        assert_eq!(write_udp_check(&t, b"ab", &mut small), Some(30));
        assert_eq!(write_udp_check(&t, b"abc", &mut small), None);
        let mixed = UdpTuple {
            remote: "fd00::11".parse().unwrap(),
            ..t
        };
        assert_eq!(write_udp_check(&mixed, b"x", &mut [0u8; 100]), None);
    }

    #[test]
    fn udp_verdicts() {
        assert!(verdict_udp(b"anything", b""));
        assert!(verdict_udp(b"\x12\x34\x81\x80rest", b"\x12\x34\x81\x80"));
        assert!(verdict_udp(b"xx ok", b"ok"));
        assert!(!verdict_udp(b"o", b"ok"));
        assert!(!verdict_udp(b"", b"ok"));
        assert!(!verdict_udp(b"OK", b"ok"));
    }

    /// Passive marking: `limit` RSTs in a row take the backend down once;
    /// a SYN-ACK in between starts the count again; the probing worker
    /// sees the suspect once.
    #[test]
    fn rsts_in_a_row_mark_a_backend_suspect() {
        let s = HealthState::default();
        // Off.
        for _ in 0..100 {
            assert!(!s.rst_on_new_flow(3, true, 0));
        }
        assert!(s.is_up(3));
        let s = HealthState::default();
        assert!(!s.rst_on_new_flow(3, true, 3));
        assert!(!s.rst_on_new_flow(3, true, 3));
        assert!(!s.rst_on_new_flow(3, false, 3));
        assert!(!s.rst_on_new_flow(3, true, 3));
        assert!(!s.rst_on_new_flow(3, true, 3));
        assert!(s.is_up(3));
        assert_eq!(s.generation(), 0);
        assert!(s.rst_on_new_flow(3, true, 3));
        assert!(!s.is_up(3));
        assert_eq!((s.generation(), s.passive_downs(3)), (1, 1));
        // Already down: more RSTs change nothing.
        for _ in 0..6 {
            assert!(!s.rst_on_new_flow(3, true, 3));
        }
        assert_eq!((s.generation(), s.passive_downs(3)), (1, 1));
        assert!(s.is_up(4));
        // The probing worker takes the news once; the backend stays down
        // until its check brings it up.
        assert!(s.take_suspect(3));
        assert!(!s.take_suspect(3));
        assert!(!s.is_up(3));
        s.set(3, true);
        assert!(s.is_up(3));
        // A backend its check took down is no suspect.
        s.set(5, false);
        assert!(!s.take_suspect(5));
        assert!(!s.rst_on_new_flow(u32::MAX, true, 1));
    }

    /// After passive marking, a backend whose check kept passing needs
    /// `rise` passes counted from the marking, as the engine applies them.
    #[test]
    fn a_suspect_needs_rise_passes_from_the_marking() {
        let s = HealthState::default();
        let mut p = Probe::default();
        for _ in 0..10 {
            assert_eq!(record(&mut p, true, s.is_up(1), 2, 3), None);
        }
        assert!(s.rst_on_new_flow(1, true, 1));
        // What Engine::probe_result does before recording.
        if s.take_suspect(1) {
            p.successes = 0;
        }
        assert_eq!(record(&mut p, true, s.is_up(1), 2, 3), None);
        assert_eq!(record(&mut p, true, s.is_up(1), 2, 3), Some(true));
    }
}
