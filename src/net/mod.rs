//! The shared lower layer of the packet path, below both L4 and L7.
//!
//! - [`plane`] and [`services`]: the compiled, immutable snapshot the
//!   control thread publishes (ports, owned addresses, routes, L4 services,
//!   clusters and backends, L7 listeners);
//! - [`neighbor`]: a worker's ARP/NDP table;
//! - [`output`]: L2 output, the one way out for every packet a worker sends:
//!   route and next-hop resolution, solicitation on a miss, the Ethernet
//!   header, and the tx path ([`output::Egress`]);
//! - [`counters`]: per-worker counters, and per-service / per-backend L4
//!   and L7 counters;
//! - [`Verdict`]: what the packet functions answer.
//!
//! Nothing here imports from `worker`, `l4::balancer` or the L7 engine; they
//! all call down into it.

pub mod addrs;
pub mod counters;
pub mod neighbor;
pub mod output;
pub mod plane;
pub mod services;

use counters::Counter;

/// What to do with a frame.
///
/// Offsets, ports and worker indices are `u32` (an mbuf's buffer is at most
/// 64 KiB) and [`Counter`] is a `u16`, so that a verdict takes 16 bytes and
/// is returned in two registers through the classification's calls
/// instead of through memory. Build the variants with fields with the
/// constructors below, which take `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send `buf[start..start + len]` out of `port`, counting `counter`.
    Transmit {
        port: u32,
        start: u32,
        len: u32,
        counter: Counter,
    },
    /// The frame's answer could not go out because the next hop is
    /// unresolved; `buf[start..start + len]` now holds a solicitation for it,
    /// for `port`. Counted as `drop_neighbor_miss` + `neighbor_solicits`.
    Solicited {
        port: u32,
        start: u32,
        len: u32,
    },
    /// The packet belongs to a connection another worker owns (NAT return
    /// traffic whose SNAT port is in that worker's range): hand it over.
    Redirect {
        worker: u32,
    },
    /// A client's packet for an L4 service that is not a connection's
    /// first and that this worker has no state for: with several workers it
    /// may be a packet of another worker's connection that the device put
    /// on this worker's queue (af_packet's fanout moves a busy flow to
    /// another socket when its own is nearly full; a NIC's redirection
    /// table may change). The worker hands it on to the next worker, and
    /// the last one handles it as a miss. Only returned when
    /// `L4State::pass_misses` is set; nothing is counted for it yet.
    PassOn,
    /// A TCP segment for the L7 engine (a listener or one of its
    /// connections): the IP packet is `buf[l3..end]`.
    L7 {
        l3: u32,
        end: u32,
    },
    /// Used up without an answer (an ARP reply, a neighbor advertisement).
    Consumed(Counter),
    Drop(Counter),
}

impl Verdict {
    #[inline]
    pub fn transmit(port: usize, start: usize, len: usize, counter: Counter) -> Verdict {
        Verdict::Transmit {
            port: port as u32,
            start: start as u32,
            len: len as u32,
            counter,
        }
    }

    #[inline]
    pub fn solicited(port: usize, start: usize, len: usize) -> Verdict {
        Verdict::Solicited {
            port: port as u32,
            start: start as u32,
            len: len as u32,
        }
    }

    #[inline]
    pub fn redirect(worker: usize) -> Verdict {
        Verdict::Redirect {
            worker: worker as u32,
        }
    }

    #[inline]
    pub fn l7(l3: usize, end: usize) -> Verdict {
        Verdict::L7 {
            l3: l3 as u32,
            end: end as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_verdict_fits_in_two_registers() {
        assert!(std::mem::size_of::<super::Verdict>() <= 16);
    }
}
