//! L2 output: how every packet a worker sends leaves it.
//!
//! L4 forwarding, local answers (ARP, echo, NDP) and the L7 engine all end
//! here: the route table gives the egress port and next hop, the neighbor
//! table its MAC, and the Ethernet header (with the port's VLAN tag) is
//! written in front of the IP packet. A neighbor miss turns the packet's own
//! buffer into an ARP request / neighbor solicitation for the next hop (at
//! most one per retry period); nothing is queued. The pure functions work on
//! byte buffers; [`Egress`] adds the worker's tx buffers and mempool for
//! packets that live in mbufs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::counters::{Counter, WorkerCounters};
use super::neighbor::{L2Header, NeighborTable, Resolve};
use super::plane::{Plane, PortPlane};
use super::Verdict;
use super::Verdict::Drop;
use crate::dpdk::{Flushed, Mbuf, Mempool, TxBuffer};
use crate::wire::{
    arp, ethernet, ipv6, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress,
    Icmpv6Packet, IpProtocol, Ipv6Packet, NdiscRepr,
};

/// Write an Ethernet header (with the port's VLAN tag, if any) at the start
/// of `buf` and return its length.
#[inline]
pub fn write_l2(buf: &mut [u8], out: &PortPlane, dst: [u8; 6], ethertype: EtherType) -> usize {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&out.mac);
    match out.vlan {
        Some(vid) => {
            buf[12..14].copy_from_slice(&u16::from(EtherType::Vlan).to_be_bytes());
            buf[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            buf[16..18].copy_from_slice(&u16::from(ethertype).to_be_bytes());
            ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
        }
        None => {
            buf[12..14].copy_from_slice(&u16::from(ethertype).to_be_bytes());
            ethernet::HEADER_LEN
        }
    }
}

#[inline]
pub fn l2_len(out: &PortPlane) -> usize {
    ethernet::HEADER_LEN
        + if out.vlan.is_some() {
            ethernet::VLAN_TAG_LEN
        } else {
            0
        }
}

/// How a next hop could not be resolved.
pub enum Unresolved {
    NoRoute,
    /// Solicit this address on this port.
    Solicit(usize, IpAddr),
    /// Already soliciting.
    Pending,
}

/// The egress port and next-hop MAC towards `dst`: route lookup (longest
/// prefix), then the neighbor table.
pub fn resolve(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, [u8; 6]), Unresolved> {
    resolve_until(plane, neighbors, dst, now).map(|(port, mac, _)| (port, mac))
}

/// [`resolve`], with the time until which the neighbor entry is good.
fn resolve_until(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, [u8; 6], u64), Unresolved> {
    let (port, hop) = match dst {
        IpAddr::V4(d) => plane
            .routes
            .lookup_v4(d)
            .map(|nh| (nh.port, IpAddr::V4(nh.addr))),
        IpAddr::V6(d) => plane
            .routes
            .lookup_v6(d)
            .map(|nh| (nh.port, IpAddr::V6(nh.addr))),
    }
    .ok_or(Unresolved::NoRoute)?;
    match neighbors.resolve_until(port as u8, hop, now) {
        (Resolve::Hit(mac), until) => Ok((port, mac, until)),
        (Resolve::MissSolicit, _) => Err(Unresolved::Solicit(port, hop)),
        (Resolve::Miss, _) => Err(Unresolved::Pending),
    }
}

/// Turn a failed resolution into a verdict; a solicitation is written at
/// `at` (any position with room; the packet there is given up).
pub fn solicit(plane: &Plane, u: Unresolved, buf: &mut [u8], at: usize) -> Verdict {
    match u {
        Unresolved::NoRoute => Drop(Counter::drop_no_route),
        Unresolved::Pending => Drop(Counter::drop_neighbor_miss),
        Unresolved::Solicit(port, target) => {
            match build_solicit(plane, port, target, &mut buf[at..]) {
                Some(len) => Verdict::solicited(port, at, len),
                None => Drop(Counter::drop_neighbor_miss),
            }
        }
    }
}

/// Resolve the next hop towards `dst` and write the L2 header in front of
/// `l3`. On a miss the verdict carries a solicitation instead.
pub fn emit_l2(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, usize), Verdict> {
    emit_l2_until(plane, neighbors, buf, l3, dst, now).map(|(out, start, _)| (out, start))
}

/// [`emit_l2`], with the time until which the neighbor entry it used is
/// good.
#[inline]
fn emit_l2_until(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, usize, u64), Verdict> {
    let (out, mac, until) =
        resolve_until(plane, neighbors, dst, now).map_err(|u| solicit(plane, u, buf, l3))?;
    let et = if dst.is_ipv4() {
        EtherType::Ipv4
    } else {
        EtherType::Ipv6
    };
    let p: &PortPlane = &plane.ports[out];
    let Some(start) = l3.checked_sub(l2_len(p)) else {
        return Err(Drop(Counter::drop_no_headroom));
    };
    write_l2(&mut buf[start..], p, mac, et);
    Ok((out, start, until))
}

/// [`emit_l2`] for a packet to backend `backend` at `dst`: the neighbor
/// table remembers, per backend, the egress port and the Ethernet header
/// it resolved and wrote (see `neighbor::BackendL2`), so that the packets
/// of a backend's connections cost one copy of the header instead of a
/// route lookup, a neighbor lookup and the header's assembly each. The
/// outcome is the same as [`emit_l2`]'s. Inlined (its miss is not): once
/// per packet to a backend.
#[inline(always)]
pub fn emit_l2_backend(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    backend: u32,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, usize), Verdict> {
    if let Some(h) = neighbors.backend_l2(backend, dst, now) {
        let Some(start) = l3.checked_sub(h.len as usize) else {
            return Err(Drop(Counter::drop_no_headroom));
        };
        // Fixed-size copies: a few moves, no call to memcpy.
        const ETH: usize = ethernet::HEADER_LEN;
        if h.len as usize == ETH {
            buf[start..start + ETH].copy_from_slice(&h.bytes[..ETH]);
        } else {
            buf[start..start + h.bytes.len()].copy_from_slice(&h.bytes);
        }
        return Ok((h.port as usize, start));
    }
    emit_l2_backend_miss(plane, neighbors, buf, l3, backend, dst, now)
}

/// [`emit_l2_backend`] without a valid memo: resolve and write as
/// [`emit_l2`] does, and remember the result.
#[cold]
#[inline(never)]
fn emit_l2_backend_miss(
    plane: &Plane,
    neighbors: &mut NeighborTable,
    buf: &mut [u8],
    l3: usize,
    backend: u32,
    dst: IpAddr,
    now: u64,
) -> Result<(usize, usize), Verdict> {
    let (out, start, until) = emit_l2_until(plane, neighbors, buf, l3, dst, now)?;
    let mut hdr = L2Header {
        port: out as u8,
        len: (l3 - start) as u8,
        bytes: [0; 18],
    };
    hdr.bytes[..l3 - start].copy_from_slice(&buf[start..l3]);
    neighbors.remember_backend_l2(backend, dst, until, hdr);
    Ok((out, start))
}

/// Build a solicitation for `target` on `port` into `buf` (used by callers
/// outside `process` that need a next hop resolved); its length.
pub fn build_solicit(plane: &Plane, port: usize, target: IpAddr, buf: &mut [u8]) -> Option<usize> {
    match target {
        IpAddr::V4(t) => arp_solicit(plane, port, t, buf),
        IpAddr::V6(t) => ndp_solicit(plane, port, t, buf),
    }
}

/// Write an ARP request for `target` on port `out` at the start of `buf`;
/// its length.
fn arp_solicit(plane: &Plane, out: usize, target: Ipv4Addr, buf: &mut [u8]) -> Option<usize> {
    let p = plane.ports.get(out)?;
    let src = p.source_v4(target)?;
    let l2 = write_l2(buf, p, [0xff; 6], EtherType::Arp);
    let req = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(p.mac),
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let end = l2 + arp::PACKET_LEN;
    req.emit(&mut ArpPacket::new_unchecked(buf.get_mut(l2..end)?));
    Some(end)
}

/// Write a neighbor solicitation for `target` on port `out` at the start of
/// `buf` (RFC 4861 §7.2.2: to the solicited-node group, with our link-layer
/// address); its length.
fn ndp_solicit(plane: &Plane, out: usize, target: Ipv6Addr, buf: &mut [u8]) -> Option<usize> {
    let p = plane.ports.get(out)?;
    let src = p.source_v6(target)?;
    let group = ipv6::solicited_node_multicast(&target);
    let ns = NdiscRepr::NeighborSolicit {
        target_addr: target,
        source_lladdr: Some(EthernetAddress(p.mac)),
    };
    emit_ndisc(p, buf, &ns, src, group, ipv6::multicast_mac(&group).0)
}

/// Write Ethernet + IPv6 + an NS/NA at the start of `buf`; the total length.
pub fn emit_ndisc(
    p: &PortPlane,
    buf: &mut [u8],
    repr: &NdiscRepr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    dst_mac: [u8; 6],
) -> Option<usize> {
    let l2 = l2_len(p);
    let l4 = l2 + ipv6::HEADER_LEN;
    let end = l4 + repr.buffer_len();
    if buf.len() < end {
        return None;
    }
    write_l2(buf, p, dst_mac, EtherType::Ipv6);
    let hdr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: repr.buffer_len(),
        hop_limit: 255,
    };
    hdr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[l2..l4]));
    // Reserved bytes must be zero and the buffer holds the old frame.
    buf[l4..end].fill(0);
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut buf[l4..end]),
    );
    Some(end)
}

/// A worker's way out for packets in mbufs: the plane and neighbor table
/// to route and resolve with, its tx buffers (one per port), its mempool for
/// packets it originates, and its counters. Built by the worker for each
/// use (`Worker::egress`); the L7 engine sends through it too.
pub struct Egress<'a> {
    pub plane: &'a Plane,
    pub neighbors: &'a mut NeighborTable,
    pub tx: &'a mut [TxBuffer],
    pub pool: &'a Mempool,
    pub counters: &'a WorkerCounters,
    pub now_ns: u64,
}

impl Egress<'_> {
    /// Queue `m` on `port`'s tx buffer (a full buffer goes to the NIC
    /// first).
    #[inline]
    pub fn push(&mut self, port: usize, m: Mbuf) {
        push(&mut self.tx[port], self.counters, m);
    }

    /// Send the frame a packet function wrote at `start..start + len` of
    /// `m`'s buffer out of `port`. False (and `m` freed) when the window
    /// does not fit the buffer.
    #[inline]
    pub fn transmit(&mut self, port: usize, mut m: Mbuf, start: usize, len: usize) -> bool {
        if m.set_window(start, len) {
            self.push(port, m);
            true
        } else {
            false
        }
    }

    /// Send the solicitation a packet function wrote over the packet that
    /// needed it (`Verdict::Solicited`): the packet is lost, counted as
    /// `drop_neighbor_miss`, and the solicitation as `neighbor_solicits`.
    #[inline]
    pub fn solicited(&mut self, port: usize, m: Mbuf, start: usize, len: usize) {
        self.counters.inc(Counter::drop_neighbor_miss);
        self.counters.inc(Counter::neighbor_solicits);
        self.transmit(port, m, start, len);
    }

    /// Solicit `target` on `port` in a fresh mbuf (resolving next hops
    /// ahead of traffic). False if the pool is empty (counted).
    pub fn solicit(&mut self, port: usize, target: IpAddr) -> bool {
        let Some(mut m) = self.pool.alloc() else {
            self.counters.inc(Counter::drop_no_mbuf);
            return false;
        };
        let written = {
            let (buf, off, _) = m.buffer_mut();
            build_solicit(self.plane, port, target, &mut buf[off..]).map(|len| (off, len))
        };
        if let Some((off, len)) = written {
            if m.set_window(off, len) {
                self.counters.inc(Counter::neighbor_solicits);
                self.push(port, m);
            }
        }
        true
    }

    /// Hand every port's partial burst to the NIC.
    pub fn flush(&mut self) {
        for t in self.tx.iter_mut() {
            count_flush(self.counters, t.flush());
        }
    }

    /// Route, resolve and send the IP packet smoltcp wrote at
    /// `buf[off..off + len]` of `m`, counted as `l7_tx_segments`.
    pub fn send(&mut self, m: Mbuf, off: usize, len: usize) {
        self.send_as(m, off, len, Counter::l7_tx_segments);
    }

    /// As [`Egress::send`], counted as `counter` once queued.
    pub fn send_as(&mut self, mut m: Mbuf, off: usize, len: usize, counter: Counter) {
        let dst = {
            let (buf, _, _) = m.buffer_mut();
            let ip = &buf[off..off + len];
            match ip.first().map(|b| b >> 4) {
                Some(4) if len >= 20 => {
                    IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap_or_default())
                }
                Some(6) if len >= 40 => {
                    IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap_or_default())
                }
                _ => {
                    self.counters.inc(Counter::drop_l7_tx_error);
                    return;
                }
            }
        };
        let ethertype = if dst.is_ipv4() {
            EtherType::Ipv4
        } else {
            EtherType::Ipv6
        };
        match resolve(self.plane, self.neighbors, dst, self.now_ns) {
            Ok((port, mac)) => {
                let out = &self.plane.ports[port];
                let start = off - l2_len(out);
                {
                    let (buf, _, _) = m.buffer_mut();
                    write_l2(&mut buf[start..], out, mac, ethertype);
                }
                if m.set_window(start, off + len - start) {
                    self.counters.inc(counter);
                    self.push(port, m);
                } else {
                    self.counters.inc(Counter::drop_l7_tx_error);
                }
            }
            Err(u) => {
                let v = match u {
                    Unresolved::NoRoute => Verdict::Drop(Counter::drop_no_route),
                    u => {
                        let (buf, _, _) = m.buffer_mut();
                        solicit(self.plane, u, buf, 0)
                    }
                };
                match v {
                    Verdict::Solicited { port, start, len } => {
                        self.solicited(port as usize, m, start as usize, len as usize)
                    }
                    Verdict::Drop(c) => self.counters.inc(c),
                    _ => self.counters.inc(Counter::drop_neighbor_miss),
                }
            }
        }
    }
}

/// Queue `m` on `tx` (a full buffer goes to the NIC first, and what that
/// flush sent or dropped is counted: the tx counters move once per tx
/// burst, not per packet). Inlined: once per forwarded packet.
#[inline(always)]
pub fn push(tx: &mut TxBuffer, counters: &WorkerCounters, m: Mbuf) {
    let f = tx.push(m);
    if f.sent != 0 || f.dropped != 0 {
        count_flush(counters, f);
    }
}

/// Count what a tx buffer handed to the NIC, and what the NIC refused.
#[inline]
fn count_flush(counters: &WorkerCounters, f: Flushed) {
    counters.add(Counter::tx_packets, f.sent as u64);
    counters.add(Counter::tx_bytes, f.sent_bytes);
    counters.add(Counter::drop_tx_full, f.dropped as u64);
}
