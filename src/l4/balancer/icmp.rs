//! ICMP errors about tracked flows (destination unreachable, time
//! exceeded, fragmentation needed / packet too big): matched by the
//! embedded datagram's inverted tuple and sent to the side that needs them.

use super::*;

/// The embedded datagram of an ICMPv4 error (RFC 792: the original IP
/// header and at least 8 bytes of its payload): offsets and its tuple.
struct Embedded {
    /// Offset of the embedded IPv4 header.
    ip: usize,
    /// Offset of the embedded TCP/UDP header (at least 8 bytes present).
    l4: usize,
    end: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
}

fn embedded_v4(buf: &[u8], icmp: usize, end: usize) -> Option<Embedded> {
    let ip = icmp + 8;
    if end < ip + 20 || end > buf.len() {
        return None;
    }
    let inner = Ipv4Packet::new_unchecked(&buf[ip..end]);
    if inner.version() != 4 || inner.header_len() < 20 {
        return None;
    }
    let l4 = ip + inner.header_len();
    if end < l4 + 8 {
        return None;
    }
    let proto = u8::from(inner.protocol());
    if proto != 6 && proto != 17 {
        return None;
    }
    let p = &buf[l4..l4 + 4];
    Some(Embedded {
        ip,
        l4,
        end,
        src: inner.src_addr(),
        dst: inner.dst_addr(),
        sport: u16::from_be_bytes([p[0], p[1]]),
        dport: u16::from_be_bytes([p[2], p[3]]),
        proto,
    })
}

/// The quoted datagram of an ICMP error, either family.
enum Quoted {
    V4(Embedded),
    V6(Embedded6),
}

impl Quoted {
    /// The connection's key: the failed packet went src -> dst, so the
    /// connection saw the other direction first.
    fn key(&self) -> FlowKey {
        match self {
            Quoted::V4(e) => FlowKey::v4(e.dst, e.src, e.dport, e.sport, e.proto),
            Quoted::V6(e) => FlowKey::v6(e.dst, e.src, e.dport, e.sport, e.proto),
        }
    }

    fn sport(&self) -> u16 {
        match self {
            Quoted::V4(e) => e.sport,
            Quoted::V6(e) => e.sport,
        }
    }

    fn proto(&self) -> u8 {
        match self {
            Quoted::V4(e) => e.proto,
            Quoted::V6(e) => e.proto,
        }
    }
}

/// An ICMPv4 destination-unreachable or time-exceeded message to a VIP or
/// to one of our addresses, about a packet of a tracked connection (for
/// example "fragmentation needed", which path MTU discovery depends on);
/// see [`icmp_error`].
pub fn icmp_error_v4(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    buf: &mut [u8],
    pkt: Ip,
    now: u64,
) -> Verdict {
    match embedded_v4(buf, pkt.l4, pkt.end) {
        Some(e) => icmp_error(plane, neighbors, st, buf, pkt, Quoted::V4(e), now),
        None => Drop(Counter::drop_icmp_unhandled),
    }
}

/// An ICMPv6 error (destination unreachable, packet too big, time
/// exceeded; RFC 4443) to a VIP or to one of our addresses, about a packet
/// of a tracked connection; see [`icmp_error`].
pub fn icmp_error_v6(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    buf: &mut [u8],
    pkt: Ip,
    now: u64,
) -> Verdict {
    match embedded_v6(buf, pkt.l4, pkt.end) {
        Some(e) => icmp_error(plane, neighbors, st, buf, pkt, Quoted::V6(e), now),
        None => Drop(Counter::drop_icmp_unhandled),
    }
}

/// An ICMP error about a tracked flow. The quoted datagram is the packet
/// that failed; its inverted tuple is the connection's key.
///
/// - To a VIP in a DSR mode: the backend that sent the failed reply needs
///   it (path MTU discovery, RFC 1191 / RFC 8201), so it is encapsulated to
///   the flow's backend like the flow's own packets (placed by the Maglev
///   table when this worker has no state).
/// - NAT, either side: translated like the flow's packets (outer and
///   embedded headers) and sent to the other side.
/// - NAT, reply side, another worker's connection (ICMP is spread by
///   address pair only): handed to it, as its SNAT port names it.
fn icmp_error(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    st: &mut L4State,
    buf: &mut [u8],
    pkt: Ip,
    q: Quoted,
    now: u64,
) -> Verdict {
    let key = q.key();
    let hit = match st.conntrack.lookup(&key, now) {
        Lookup::Hit(id, dir) => Some((*st.conntrack.conn(id), dir)),
        Lookup::Expired(c) => {
            st.release(&c);
            None
        }
        Lookup::Miss => None,
    };
    let to_vip = plane.is_vip(pkt.dst);
    // The key whose tuple the translated error follows: the backend side
    // for an error from the client, the client side for one from the backend.
    let toward = match hit {
        Some((conn, Direction::Original)) if to_vip => {
            let Some(svc) = plane
                .services
                .services
                .iter()
                .find(|s| s.id == conn.service)
            else {
                return Drop(Counter::drop_no_service);
            };
            if svc.mode.is_dsr() {
                return dsr_forward(
                    plane,
                    neighbors,
                    st,
                    svc,
                    buf,
                    pkt,
                    conn.backend,
                    Counter::icmp_errors_forwarded,
                    now,
                );
            }
            let Some(&rev) = conn.rev() else {
                return Drop(Counter::drop_no_conn);
            };
            rev
        }
        Some((conn, Direction::Reply)) if !to_vip => *conn.fwd(),
        None if to_vip => {
            let Some(svc) = plane.services.lookup(pkt.dst, q.sport(), q.proto()) else {
                return Drop(Counter::drop_no_service);
            };
            if !svc.mode.is_dsr() {
                return Drop(Counter::drop_no_conn);
            }
            return match plane.services.consistent_pick(svc.cluster, &key) {
                Some(b) => dsr_forward(
                    plane,
                    neighbors,
                    st,
                    svc,
                    buf,
                    pkt,
                    b,
                    Counter::icmp_errors_forwarded,
                    now,
                ),
                None => Drop(Counter::drop_no_backend),
            };
        }
        None => {
            return match st.snat.owner(q.sport()) {
                Some(w) if w != st.worker && w < plane.workers => Verdict::redirect(w),
                // About a UDP health check's datagram, perhaps: the engine
                // that sent it decides.
                Some(_) if q.proto() == 17 && plane.services.probing => {
                    Verdict::l7(pkt.l3, pkt.end)
                }
                _ => Drop(Counter::drop_no_conn),
            };
        }
        _ => return Drop(Counter::drop_no_conn),
    };
    let outer = (toward.dst_ip(), toward.src_ip());
    let inner = (
        (toward.src_ip(), toward.src_port),
        (toward.dst_ip(), toward.dst_port),
    );
    match &q {
        Quoted::V4(e) => nat_icmp(plane, neighbors, buf, &pkt, e, outer, inner, now),
        Quoted::V6(e) => nat_icmp6(plane, neighbors, buf, &pkt, e, outer, inner, now),
    }
}

/// Rewrite an ICMPv4 error for NAT: the outer header goes `outer.0 ->
/// outer.1`; the embedded datagram becomes `inner.0 -> inner.1` (address,
/// port). Checksums: embedded IP header recomputed, embedded UDP checksum
/// updated when present (a TCP checksum lies beyond the 8 bytes an error
/// must carry and is left alone, as Linux does), ICMP checksum recomputed
/// over the message, outer header updated incrementally.
#[allow(clippy::too_many_arguments)]
fn nat_icmp(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    pkt: &Ip,
    e: &Embedded,
    outer: (IpAddr, IpAddr),
    inner: ((IpAddr, u16), (IpAddr, u16)),
    now: u64,
) -> Verdict {
    let (
        (IpAddr::V4(src), IpAddr::V4(dst)),
        ((IpAddr::V4(isrc), isport), (IpAddr::V4(idst), idport)),
    ) = (outer, inner)
    else {
        return Drop(Counter::drop_icmp_unhandled);
    };
    {
        let mut inner = Ipv4Packet::new_unchecked(&mut buf[e.ip..e.end]);
        inner.set_src_addr(isrc);
        inner.set_dst_addr(idst);
        inner.fill_checksum();
    }
    if e.proto == 17 && e.end >= e.l4 + 8 {
        let u = &mut buf[e.l4..e.l4 + 8];
        let old = u16::from_be_bytes([u[6], u[7]]);
        if old != 0 {
            let mut c = checksum::update_ipv4_addr(old, &e.src, &isrc);
            c = checksum::update_ipv4_addr(c, &e.dst, &idst);
            c = checksum::update16(c, e.sport, isport);
            c = checksum::update16(c, e.dport, idport);
            u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        }
    }
    buf[e.l4..e.l4 + 2].copy_from_slice(&isport.to_be_bytes());
    buf[e.l4 + 2..e.l4 + 4].copy_from_slice(&idport.to_be_bytes());
    {
        let icmp = &mut buf[pkt.l4..pkt.end];
        icmp[2..4].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[pkt.l3..pkt.end]);
        let ttl = ip.ttl();
        if ttl <= 1 {
            return Drop(Counter::drop_ttl_expired);
        }
        ip.rewrite_src_addr(src);
        ip.rewrite_dst_addr(dst);
        ip.rewrite_ttl(ttl - 1);
    }
    match emit_l2(plane, neighbors, buf, pkt.l3, IpAddr::V4(dst), now) {
        Ok((port, start)) => {
            Verdict::transmit(port, start, pkt.end - start, Counter::icmp_errors_forwarded)
        }
        Err(v) => v,
    }
}

/// The embedded packet of an ICMPv6 error (RFC 4443 §2.4: as much of the
/// invoking packet as fits): a fixed IPv6 header (no extension headers
/// walked), then at least the TCP/UDP ports.
struct Embedded6 {
    /// Offset of the embedded IPv6 header.
    ip: usize,
    /// Offset of the embedded TCP/UDP header (at least 4 bytes present).
    l4: usize,
    end: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    proto: u8,
}

fn embedded_v6(buf: &[u8], icmp: usize, end: usize) -> Option<Embedded6> {
    let ip = icmp + 8;
    if end < ip + 44 || end > buf.len() {
        return None;
    }
    let inner = Ipv6Packet::new_unchecked(&buf[ip..end]);
    let proto = u8::from(inner.next_header());
    if inner.version() != 6 || (proto != 6 && proto != 17) {
        return None;
    }
    let l4 = ip + 40;
    let p = &buf[l4..l4 + 4];
    Some(Embedded6 {
        ip,
        l4,
        end,
        src: inner.src_addr(),
        dst: inner.dst_addr(),
        sport: u16::from_be_bytes([p[0], p[1]]),
        dport: u16::from_be_bytes([p[2], p[3]]),
        proto,
    })
}

/// Rewrite an ICMPv6 error for NAT: the outer header goes `outer.0 ->
/// outer.1` with its hop limit decremented; the embedded packet becomes
/// `inner.0 -> inner.1` (address, port). Checksums: the embedded TCP or
/// UDP checksum is updated incrementally when the error carries it (UDP
/// always, in its first 8 bytes; TCP when 18 bytes of its header are
/// quoted, which an error of up to 1280 bytes nearly always does); the
/// ICMPv6 checksum is recomputed over the new pseudo-header and message.
#[allow(clippy::too_many_arguments)]
fn nat_icmp6(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    pkt: &Ip,
    e: &Embedded6,
    outer: (IpAddr, IpAddr),
    inner: ((IpAddr, u16), (IpAddr, u16)),
    now: u64,
) -> Verdict {
    let (
        (IpAddr::V6(src), IpAddr::V6(dst)),
        ((IpAddr::V6(isrc), isport), (IpAddr::V6(idst), idport)),
    ) = (outer, inner)
    else {
        return Drop(Counter::drop_icmp_unhandled);
    };
    {
        let hl = buf[pkt.l3 + 7];
        if hl <= 1 {
            return Drop(Counter::drop_ttl_expired);
        }
    }
    // The embedded transport checksum, where the quote holds it.
    let csum_at = match e.proto {
        17 => e.l4 + 6,
        _ => e.l4 + 16,
    };
    if csum_at + 2 <= e.end {
        let old = u16::from_be_bytes([buf[csum_at], buf[csum_at + 1]]);
        // A zero UDP checksum over IPv6 is invalid (RFC 8200 §8.1); leave
        // what the quote says as it is.
        if !(e.proto == 17 && old == 0) {
            let mut c = checksum::update_ipv6_addr(old, &e.src, &isrc);
            c = checksum::update_ipv6_addr(c, &e.dst, &idst);
            c = checksum::update16(c, e.sport, isport);
            c = checksum::update16(c, e.dport, idport);
            if e.proto == 17 && c == 0 {
                c = 0xffff;
            }
            buf[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    buf[e.l4..e.l4 + 2].copy_from_slice(&isport.to_be_bytes());
    buf[e.l4 + 2..e.l4 + 4].copy_from_slice(&idport.to_be_bytes());
    {
        let mut inner = Ipv6Packet::new_unchecked(&mut buf[e.ip..e.end]);
        inner.set_src_addr(isrc);
        inner.set_dst_addr(idst);
    }
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[pkt.l3..pkt.end]);
        let hl = ip.hop_limit();
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.set_hop_limit(hl - 1);
    }
    Icmpv6Packet::new_unchecked(&mut buf[pkt.l4..pkt.end]).fill_checksum(&src, &dst);
    match emit_l2(plane, neighbors, buf, pkt.l3, IpAddr::V6(dst), now) {
        Ok((port, start)) => {
            Verdict::transmit(port, start, pkt.end - start, Counter::icmp_errors_forwarded)
        }
        Err(v) => v,
    }
}
