//! Per-worker counters: single writer (the worker), many readers (admin,
//! stats dump). Each counter is a relaxed atomic that the worker bumps with a
//! plain load+store (no locked instruction: it is the only writer), so the
//! hot path pays what a plain `u64` increment costs.

use std::sync::atomic::{AtomicU64, Ordering};

use super::services::{MAX_BACKENDS, MAX_SERVICES};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Every counter a worker keeps. Drop reasons start with `Drop`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        #[repr(u16)]
        pub enum Counter { $( $(#[$doc])* $name ),* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[ $(Counter::$name),* ];
            pub const COUNT: usize = Counter::ALL.len();
            /// The metric name (`rx_packets`, `drop_ipv4_checksum`, ...).
            pub fn name(self) -> &'static str {
                match self { $(Counter::$name => stringify!($name)),* }
            }
        }
    };
}

counters! {
    /// Packets received from the NIC.
    rx_packets,
    /// Bytes received from the NIC.
    rx_bytes,
    /// Packets the NIC accepted for transmission.
    tx_packets,
    /// Bytes the NIC accepted for transmission.
    tx_bytes,
    /// Nanoseconds the worker spent in loop iterations that had work
    /// (packets received or handed over, neighbor news, L7 timers);
    /// iterations that found nothing to do are not counted. A
    /// busy-polling worker shows 100% CPU whatever its load: the rate of
    /// this counter (ns per second) is its real load, and divided by the
    /// requests or packets in the same interval, its cost per request or
    /// packet. It is wall time: a worker that shares its CPU also counts
    /// the time it was preempted in such an iteration.
    busy_ns,
    /// ARP requests for our addresses answered.
    arp_replies,
    /// ARP/NDP requests Sluice sent to resolve a next hop.
    neighbor_solicits,
    /// Neighbor entries learned or refreshed from ARP/NDP.
    neighbor_learned,
    /// ICMP/ICMPv6 echo requests answered.
    echo_replies,
    /// IPv6 neighbor solicitations for our addresses answered.
    ndp_adverts,
    /// ARP replies and neighbor advertisements received and used up.
    neighbor_replies,
    /// Client packets forwarded to a backend on a tracked connection.
    l4_forwarded,
    /// NAT replies from a backend translated back to the client.
    l4_returned,
    /// DSR: packets of flows unknown here (e.g. after a restart) forwarded
    /// to the backend the Maglev table picks, without creating state.
    l4_stateless,
    /// DSR: new flows forwarded without state because the table is full.
    l4_table_full,
    /// DSR: new flows forwarded without state because of the per-core
    /// new-connection rate cap.
    l4_rate_limited,
    /// RSTs sent, to either side, for tracked TCP connections of a backend
    /// its health check took down (`on_backend_down = "reset"`).
    l4_backend_down_resets,
    /// ICMP errors about a tracked flow sent on to the other side.
    icmp_errors_forwarded,
    /// Packets handed to the worker that owns their connection (not a
    /// terminal verdict: the owner counts what happens to them).
    redirected,
    /// Client packets of a TCP flow this worker does not track, handed on
    /// to the next worker in case it does (several workers only; not a
    /// terminal verdict: the worker that has the flow, or the last one,
    /// counts what happens to them).
    passed_on,
    /// L7: TCP segments delivered to a userspace TCP connection.
    l7_rx_segments,
    /// L7: TCP segments sent by the userspace TCP stack.
    l7_tx_segments,
    /// L7: RSTs sent for segments of no connection.
    l7_resets_sent,
    /// L7: SYNs that reopened the 4-tuple of a client connection Sluice
    /// held in TIME-WAIT (the old one forgotten, as Linux does).
    l7_time_wait_reused,
    /// L7: client connections accepted (SYN to a listener).
    l7_accepted,
    /// L7: client handshakes that did not complete in time.
    l7_handshake_failed,
    /// L7: SYNs answered with a SYN cookie (the listener's half-open
    /// connections at its `syn_cookie_threshold`); nothing is kept.
    l7_syncookies_sent,
    /// L7: ACKs whose SYN cookie was valid: connections opened from one.
    l7_syncookies_validated,
    /// L7: send buffers of quiet connections (nothing in flight, nothing
    /// happening for about a second) whose pages were given back to the
    /// kernel.
    l7_idle_tx_released,
    /// L7: ACKs of no connection, on a listener that sent cookies in the
    /// last two minutes, whose cookie was invalid or expired (answered
    /// with a RST).
    l7_syncookies_failed,
    /// L7: client sessions ended.
    l7_sessions_closed,
    /// L7: requests whose head was read (well-formed or not).
    l7_requests,
    /// L7: responses relayed from backends, by status class.
    l7_responses_1xx,
    l7_responses_2xx,
    l7_responses_3xx,
    l7_responses_4xx,
    l7_responses_5xx,
    /// L7: error responses Sluice generated itself, by class.
    l7_local_4xx,
    l7_local_5xx,
    /// L7: of those, 502 (backend failed), 503 (no usable backend) and 504
    /// (backend timed out).
    l7_local_502,
    l7_local_503,
    l7_local_504,
    /// L7: request heads not complete within `header_timeout_ms` (408).
    l7_header_timeouts,
    /// L7: idle keep-alive or stalled connections closed.
    l7_idle_closed,
    /// L7: client connections reset (backend failed mid-response, client
    /// gave up mid-body, bad framing from a backend).
    l7_aborted,
    /// L7: requests given up because the client closed its connection
    /// before the response head arrived.
    l7_client_aborts,
    /// L7: new upstream connections opened.
    l7_upstream_connects,
    /// L7: of those, opened with a smaller receive buffer than the
    /// listener's `upstream_rx_buffer`: the worker's receive budget shared
    /// among many connections.
    l7_upstream_rx_shared,
    /// L7: requests sent on a pooled idle upstream connection.
    l7_upstream_reused,
    /// L7: upstream connections refused or reset before established.
    l7_upstream_connect_failed,
    /// L7: upstream attempts that ended without a response head.
    l7_upstream_failures,
    /// L7: upstream connect or response timeouts.
    l7_upstream_timeouts,
    /// L7: retries sent (connection failures and retry_on_status).
    l7_retries,
    /// L7: of those, because of a status in `retry_on_status`.
    l7_retried_status,
    /// L7: failed requests not retried because they were not idempotent or
    /// had a body.
    l7_not_retried,
    /// L7: malformed response heads or bodies from backends.
    l7_bad_responses,
    /// L7: responses cut short because the backend closed mid-body.
    l7_truncated_responses,
    /// L7: connections upgraded (101, e.g. WebSocket) and tunnelled.
    l7_upgrades,
    /// L7: plain HTTP requests answered with a redirect to https by their
    /// route.
    l7_https_redirects,
    /// L7 TLS: full and resumed handshakes completed.
    l7_tls_handshakes_full,
    l7_tls_handshakes_resumed,
    /// L7 TLS: connections reset because the listener's
    /// `max_tls_handshakes` were in progress on this worker.
    l7_tls_handshake_refused,
    /// L7 TLS: handshakes not done within `handshake_timeout_ms`.
    l7_tls_handshake_timeouts,
    /// L7 TLS: clients that closed or reset mid-handshake.
    l7_tls_handshake_aborted,
    /// L7 TLS: connections given up, by reason: not TLS at all, a plain
    /// HTTP request (answered 400), only old versions offered, a handshake
    /// flight too large, nothing in common, a fatal alert from the client,
    /// any other protocol error (during or after the handshake).
    l7_tls_not_tls,
    l7_tls_plain_http,
    l7_tls_old_version,
    l7_tls_too_large,
    l7_tls_incompatible,
    l7_tls_alerts_received,
    l7_tls_protocol_errors,
    /// L7 TLS: clients refused for a server name no certificate has, on a
    /// listener with `sni_strict`.
    l7_tls_unknown_sni,
    /// L7 TLS: clients refused for their certificate (none where one is
    /// required, or one that does not verify against `client_ca`).
    l7_tls_client_cert_refused,
    /// L7 TLS: clients whose TCP stream ended (FIN or RST) inside a TLS
    /// record after the handshake (a truncation; the record is dropped).
    l7_tls_truncated,
    /// L7 TLS: TLS 1.2 renegotiation attempts by clients (the first on a
    /// connection gets a `no_renegotiation` warning, a second ends it).
    l7_tls_renegotiation_refused,
    /// L7 TLS gauge: handshakes in progress.
    l7_tls_handshaking,
    /// L7 upstream TLS (`[cluster.tls]`): handshakes with backends
    /// completed, full and resumed.
    l7_upstream_tls_handshakes_full,
    l7_upstream_tls_handshakes_resumed,
    /// L7 upstream TLS: handshakes failed because the backend's
    /// certificate did not verify (CA, name, validity).
    l7_upstream_tls_verify_failed,
    /// L7 upstream TLS: other TLS failures with backends (alerts,
    /// protocol errors, nothing in common), during or after the handshake.
    l7_upstream_tls_failed,
    /// Health checks (of L7 listeners' and L4 services' clusters, every
    /// type) that passed / failed (worker 0 only).
    health_checks_passed,
    health_checks_failed,
    /// UDP health check datagrams sent (worker 0 only).
    health_udp_sent,
    /// UDP datagrams and ICMP errors received that answer a UDP health
    /// check (worker 0 only).
    health_answers,
    /// UDP health checks failed at once by an ICMP destination
    /// unreachable (port unreachable: nothing listens).
    health_udp_unreachable,
    /// L7 gauges: client connections (incl. closing), all L7 connections,
    /// idle pooled upstream connections, open sessions.
    l7_client_conns,
    l7_conns,
    l7_upstream_idle,
    l7_sessions,
    /// Frame shorter than its headers claim, or not parseable at all.
    drop_truncated,
    /// Multi-segment mbuf (Sluice does not enable scattered rx).
    drop_multi_segment,
    /// Frame addressed to another station's MAC.
    drop_l2_not_ours,
    /// 802.1Q tag absent, different from the port's VLAN, or stacked.
    drop_vlan_mismatch,
    /// Ethertype Sluice does not handle.
    drop_ethertype,
    /// ARP that is not Ethernet/IPv4, or malformed.
    drop_arp_malformed,
    /// ARP request for an address that is not ours.
    drop_arp_not_ours,
    /// IPv4 header invalid (version, IHL, total length).
    drop_ipv4_malformed,
    /// IPv4 header checksum wrong.
    drop_ipv4_checksum,
    /// IPv4 with options (never needed by the traffic Sluice serves).
    drop_ipv4_options,
    /// IPv4 fragment (Sluice does not reassemble).
    drop_ipv4_fragment,
    /// Martian source: IPv4 0/8, loopback, multicast, class E, broadcast
    /// or the directed broadcast of one of our subnets; IPv6 multicast,
    /// loopback, IPv4-mapped, unspecified (but in a DAD solicitation), or
    /// link-local on TCP/UDP to a non-link-local destination.
    drop_bad_source,
    /// Spoofed source: one of Sluice's own addresses or VIPs.
    drop_spoofed_source,
    /// TCP/UDP with source or destination port 0.
    drop_bad_port,
    /// IPv6 header invalid.
    drop_ipv6_malformed,
    /// IPv6 extension header Sluice does not walk (fragment, routing, ...).
    drop_ipv6_ext_header,
    /// ICMP/ICMPv6 message invalid or checksum wrong.
    drop_icmp_malformed,
    /// ICMP/ICMPv6 type Sluice does not answer.
    drop_icmp_unhandled,
    /// Neighbor-discovery message invalid (RFC 4861 §7.1.1 checks).
    drop_ndp_malformed,
    /// IP packet for an address that is not ours.
    drop_ip_not_ours,
    /// TCP/UDP/other protocol for our address with no service on it.
    drop_no_service,
    /// No route to the destination of a reply.
    drop_no_route,
    /// Next hop not resolved yet (a solicitation is sent, rate limited).
    drop_neighbor_miss,
    /// No mbuf free to build a packet.
    drop_no_mbuf,
    /// The NIC's tx queue was full.
    drop_tx_full,
    /// TCP/UDP header cut short.
    drop_l4_malformed,
    /// NAT: a TCP segment other than a SYN (RST included) of a flow with no
    /// connection entry, or a reply with no entry.
    drop_no_conn,
    /// The service's cluster has no backend with weight above 0.
    drop_no_backend,
    /// A packet of a tracked connection of a backend its health check took
    /// down (`on_backend_down = "reset"`) that is not answered with a RST:
    /// a RST itself, or a UDP reply (the flow is forgotten).
    drop_backend_down,
    /// NAT: this worker has no free SNAT port for the chosen source address.
    drop_snat_exhausted,
    /// NAT: connection table full (NAT cannot forward without state).
    drop_conntrack_full,
    /// NAT: per-core new-connection rate cap reached.
    drop_rate_limited,
    /// TTL or hop limit would reach 0 on forwarding.
    drop_ttl_expired,
    /// Not enough headroom in the buffer for the encapsulation.
    drop_no_headroom,
    /// Encapsulated packet larger than the egress port's MTU.
    drop_too_big,
    /// The owning worker's redirect ring was full.
    drop_redirect_full,
    /// L7: a TCP segment (not a SYN to a listener) for no L7 connection.
    drop_l7_no_conn,
    /// L7: a SYN over the listener's `max_connections` or `max_half_open`.
    drop_l7_syn_over_cap,
    /// L7: a segment the userspace stack built could not be sent (no mbuf,
    /// or larger than the mbuf).
    drop_l7_tx_error,
}

impl Counter {
    /// A level (set, not added to): exported as a Prometheus gauge.
    pub fn is_gauge(self) -> bool {
        matches!(
            self,
            Counter::l7_client_conns
                | Counter::l7_conns
                | Counter::l7_upstream_idle
                | Counter::l7_sessions
                | Counter::l7_tls_handshaking
        )
    }
}

/// One worker's counters, aligned so two workers never share a cache line.
#[repr(align(128))]
pub struct WorkerCounters {
    values: [AtomicU64; Counter::COUNT],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl WorkerCounters {
    /// Add `n`. Only the owning worker may call this (single writer).
    #[inline(always)]
    pub fn add(&self, c: Counter, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Overwrite a counter kept elsewhere (e.g. the neighbor table's own).
    #[inline]
    pub fn set(&self, c: Counter, v: u64) {
        self.values[c as usize].store(v, Ordering::Relaxed);
    }

    #[inline(always)]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> [u64; Counter::COUNT] {
        std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed))
    }
}

/// Sum of all workers' counters.
pub fn total(workers: &[std::sync::Arc<WorkerCounters>]) -> [u64; Counter::COUNT] {
    let mut t = [0u64; Counter::COUNT];
    for w in workers {
        for (acc, v) in t.iter_mut().zip(w.snapshot()) {
            *acc += v;
        }
    }
    t
}

/// Per-service and per-backend counters of one worker (single writer).
pub struct L4Counters {
    /// [packets, bytes, new connections, drops] per service id.
    pub service: Box<[[AtomicU64; 4]]>,
    /// [packets, bytes, new connections, active connections] per backend id.
    pub backend: Box<[[AtomicU64; 4]]>,
    /// L7: [requests sent, failed attempts, 5xx responses, requests in
    /// flight] per backend id.
    pub backend_l7: Box<[[AtomicU64; 4]]>,
}

pub const BE_L7_REQUESTS: usize = 0;
pub const BE_L7_FAILURES: usize = 1;
pub const BE_L7_5XX: usize = 2;
pub const BE_L7_INFLIGHT: usize = 3;

impl L4Counters {
    /// Add `n` to L7 counter `which` of `backend` (single writer).
    #[inline]
    pub fn l7_add(&self, backend: u32, which: usize, n: i64) {
        if let Some(c) = self.backend_l7.get(backend as usize) {
            let c = &c[which];
            c.store(
                c.load(Ordering::Relaxed).saturating_add_signed(n),
                Ordering::Relaxed,
            );
        }
    }
}

pub const SVC_PACKETS: usize = 0;
pub const SVC_BYTES: usize = 1;
pub const SVC_NEW: usize = 2;
pub const SVC_DROPS: usize = 3;
pub const BE_PACKETS: usize = 0;
pub const BE_BYTES: usize = 1;
pub const BE_NEW: usize = 2;
pub const BE_ACTIVE: usize = 3;

impl Default for L4Counters {
    fn default() -> Self {
        L4Counters {
            service: (0..MAX_SERVICES).map(|_| Default::default()).collect(),
            backend: (0..MAX_BACKENDS).map(|_| Default::default()).collect(),
            backend_l7: (0..MAX_BACKENDS).map(|_| Default::default()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_drop_prefixed() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
        assert!(Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("drop_"))
            .all(|c| *c as usize >= Counter::drop_truncated as usize));
    }

    #[test]
    fn add_and_total() {
        let a = std::sync::Arc::new(WorkerCounters::default());
        let b = std::sync::Arc::new(WorkerCounters::default());
        a.inc(Counter::rx_packets);
        a.add(Counter::rx_packets, 2);
        b.inc(Counter::rx_packets);
        b.inc(Counter::drop_tx_full);
        let t = total(&[a, b]);
        assert_eq!(t[Counter::rx_packets as usize], 4);
        assert_eq!(t[Counter::drop_tx_full as usize], 1);
    }
}
