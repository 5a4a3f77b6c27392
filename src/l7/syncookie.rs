//! SYN cookies for L7 listeners (RFC 4987 §3.6): once a listener's
//! half-open connections on a worker pass its `syn_cookie_threshold`, a SYN
//! is answered with a SYN-ACK whose sequence number encodes everything the
//! connection needs, and nothing is kept. A final ACK that carries a valid
//! cookie (acknowledgment number minus one) then creates the connection,
//! already established.
//!
//! The cookie, 32 bits, most significant first:
//!
//! | bits | what |
//! |---|---|
//! | 5 | time counter: seconds / 64, modulo 32 |
//! | 2 | index of the MSS in [`MSS_V4`] / [`MSS_V6`] |
//! | 25 | SipHash-1-3 of (key; both addresses and ports, the client's ISN, counter, MSS index) |
//!
//! A cookie is accepted while its counter is the current one or the one
//! before (64 to 128 s), as Linux accepts cookies up to two minutes old.
//! The key is drawn once per process from the OS, so any worker validates a
//! cookie another worker issued (a flow the device moves between queues).
//!
//! What a connection opened by a cookie loses, as on Linux without TCP
//! timestamps: the client's window scale (the SYN-ACK offers none, so
//! neither side scales and our receive window is at most 65535 bytes),
//! SACK-permitted (smoltcp ignores incoming SACK blocks anyway; the client
//! no longer gets SACK blocks from us), and the exact MSS (rounded down to
//! one of four values). Timestamps are not negotiated by Sluice at all.
//!
//! Opening the smoltcp socket from a cookie: smoltcp has no call to create
//! an established socket or to set its initial sequence number; a
//! listening socket draws the ISN from its interface's generator when a SYN
//! arrives. Each connection has its own interface, seeded by Sluice, and
//! that generator (sPCG32) can be run backwards: [`seed_for_isn`] gives the
//! seed whose draw is the cookie. The listening socket is then fed a
//! synthetic SYN ([`write_segment`], rebuilt from the ACK and the cookie's
//! MSS, no other options) in a poll whose SYN-ACK is thrown away (the
//! cookie's twin: same ISN and acknowledgment, no window scale, the same
//! window), and the client's segment in a second poll, which takes it from
//! SYN-RECEIVED to ESTABLISHED. smoltcp's receive window stays empty until
//! it has sent a SYN-ACK, so without the first poll's SYN-ACK an ACK
//! carrying data (the client's handshake ACK lost, its request first) is
//! refused and leaves the socket in SYN-RECEIVED, and an established
//! socket refuses the first request until the client retransmits it. The
//! test `cookie_isn_drives_smoltcp_to_established` pins this to smoltcp's
//! behaviour; the engine also checks the state after the second poll and
//! aborts a socket that did not establish.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::OnceLock;

use siphasher::sip::SipHasher13;

use super::tcp::Key;
use crate::wire::checksum::{checksum, fold, pseudo_header_v4, pseudo_header_v6, sum};
use crate::wire::IpProtocol;

/// MSS values a cookie can carry, IPv4 (Linux's `msstab`).
pub const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// MSS values a cookie can carry, IPv6 (Linux's `msstab` for IPv6).
pub const MSS_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// Seconds per time counter step.
const PERIOD_S: u64 = 64;
/// How long after the last cookie a listener still checks ACKs of no
/// connection for one: the life of a cookie.
pub const LIFE_NS: u64 = 2 * PERIOD_S * 1_000_000_000;

const MAC_BITS: u32 = 25;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// The process's cookie key, drawn from the OS on first use.
pub fn key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let a = getrandom::u64().expect("OS randomness (getrandom) for the SYN cookie key");
        let b = getrandom::u64().expect("OS randomness (getrandom) for the SYN cookie key");
        (a, b)
    })
}

fn counter(now_ns: u64) -> u32 {
    ((now_ns / 1_000_000_000 / PERIOD_S) % 32) as u32
}

fn mss_table(v6: bool) -> &'static [u16; 4] {
    if v6 {
        &MSS_V6
    } else {
        &MSS_V4
    }
}

fn mac(k: (u64, u64), key: &Key, client_isn: u32, t: u32, mss_index: u32) -> u32 {
    let mut h = SipHasher13::new_with_keys(k.0, k.1);
    for (addr, port) in [(key.local, key.lport), (key.remote, key.rport)] {
        match addr {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write_u16(port);
    }
    h.write_u32(client_isn);
    h.write_u32(t << 2 | mss_index);
    (h.finish() as u32) & MAC_MASK
}

/// The cookie for a SYN of `key` with sequence number `client_isn` and MSS
/// option `mss` (None: absent), and the MSS it stands for (the largest in
/// the table not above the client's; the smallest if none is).
pub fn encode(
    k: (u64, u64),
    key: &Key,
    client_isn: u32,
    mss: Option<u16>,
    now_ns: u64,
) -> (u32, u16) {
    let table = mss_table(key.local.is_ipv6());
    // RFC 9293 §3.7.1: no option means 536 (IPv4) / 1220 (IPv6).
    let mss = mss.filter(|&m| m != 0).unwrap_or(table[0]);
    let index = table.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
    let t = counter(now_ns);
    let cookie = t << 27 | index << 25 | mac(k, key, client_isn, t, index);
    (cookie, table[index as usize])
}

/// The MSS a cookie stands for, if `cookie` is one this process issued for
/// `key` and `client_isn` within its life.
pub fn validate(
    k: (u64, u64),
    key: &Key,
    client_isn: u32,
    cookie: u32,
    now_ns: u64,
) -> Option<u16> {
    let t = cookie >> 27;
    let index = (cookie >> 25) & 3;
    let age = (counter(now_ns) + 32 - t) % 32;
    if age > 1 || mac(k, key, client_isn, t, index) != cookie & MAC_MASK {
        return None;
    }
    Some(mss_table(key.local.is_ipv6())[index as usize])
}

/// Like [`validate`] without the age check: for a worker deciding whether
/// a segment is its own before it reads the clock.
pub fn validate_any_time(k: (u64, u64), key: &Key, client_isn: u32, cookie: u32) -> Option<u16> {
    let t = cookie >> 27;
    let index = (cookie >> 25) & 3;
    if mac(k, key, client_isn, t, index) != cookie & MAC_MASK {
        return None;
    }
    Some(mss_table(key.local.is_ipv6())[index as usize])
}

/// The MSS option of a TCP header's options, if any.
pub fn mss_option(opts: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = *opts.get(i + 1)? as usize;
                if len < 2 {
                    return None;
                }
                if kind == 2 && len == 4 {
                    let v = opts.get(i + 2..i + 4)?;
                    return Some(u16::from_be_bytes([v[0], v[1]]));
                }
                i += len;
            }
        }
    }
    None
}

/// One TCP segment without payload, as [`write_segment`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// An MSS option (the only option written).
    pub mss: Option<u16>,
}

/// Write `s` as an IP packet into `out`; its length, or None if `out` is
/// too short or the addresses are of two families.
pub fn write_segment(s: &Segment, out: &mut [u8]) -> Option<usize> {
    let tcp_len = if s.mss.is_some() { 24 } else { 20 };
    let ip_len = if s.src.is_ipv6() { 40 } else { 20 };
    let out = out.get_mut(..ip_len + tcp_len)?;
    out.fill(0);
    {
        let t = &mut out[ip_len..];
        t[0..2].copy_from_slice(&s.sport.to_be_bytes());
        t[2..4].copy_from_slice(&s.dport.to_be_bytes());
        t[4..8].copy_from_slice(&s.seq.to_be_bytes());
        t[8..12].copy_from_slice(&s.ack.to_be_bytes());
        t[12] = ((tcp_len / 4) as u8) << 4;
        t[13] = s.flags;
        t[14..16].copy_from_slice(&s.window.to_be_bytes());
        if let Some(mss) = s.mss {
            t[20] = 2;
            t[21] = 4;
            t[22..24].copy_from_slice(&mss.to_be_bytes());
        }
    }
    let pseudo = match (s.src, s.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out[0] = 0x45;
            out[2..4].copy_from_slice(&((ip_len + tcp_len) as u16).to_be_bytes());
            out[6] = 0x40; // don't fragment
            out[8] = 64;
            out[9] = 6;
            out[12..16].copy_from_slice(&src.octets());
            out[16..20].copy_from_slice(&dst.octets());
            let c = checksum(&out[..20]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp_len as u16)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            out[0] = 0x60;
            out[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            out[6] = 6;
            out[7] = 64;
            out[8..24].copy_from_slice(&src.octets());
            out[24..40].copy_from_slice(&dst.octets());
            pseudo_header_v6(&src, &dst, IpProtocol::Tcp, tcp_len as u32)
        }
        _ => return None,
    };
    let c = !fold(pseudo + sum(&out[ip_len..]));
    out[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
    Some(ip_len + tcp_len)
}

/// The parts of a received segment (an IP packet whose TCP header
/// [`super::tcp::key_of`] found) a cookie needs: (seq, ack, window, options).
pub fn parse(pkt: &[u8]) -> Option<(u32, u32, u16, &[u8])> {
    let l4 = match pkt.first()? >> 4 {
        4 => ((pkt[0] & 0x0f) as usize) * 4,
        _ => 40,
    };
    let t = pkt.get(l4..)?;
    if t.len() < 20 {
        return None;
    }
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let window = u16::from_be_bytes([t[14], t[15]]);
    let hl = ((t[12] >> 4) as usize) * 4;
    let opts = t.get(20..hl.max(20)).unwrap_or(&[]);
    Some((seq, ack, window, opts))
}

// smoltcp's interface generator (src/rand.rs, sPCG32).
const PCG_M: u64 = 0xbb2e_fcec_3c39_611d;
const PCG_A: u64 = 0x7590_ef39;
/// The inverse of `PCG_M` modulo 2^64 (Newton's iteration).
const PCG_M_INV: u64 = {
    let mut x = PCG_M;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(PCG_M.wrapping_mul(x)));
        i += 1;
    }
    x
};

fn pcg_out(s: u64) -> u32 {
    (s >> (29 - (s >> 61))) as u32
}

/// A `Config::random_seed` for a connection's interface whose socket, on
/// the SYN it receives first, takes `isn` as its initial sequence number.
/// smoltcp's `Interface::new` draws once (the IPv4 identification, again if
/// that draw folds to 0), then the socket's SYN draws the ISN. `free` fills
/// the bits the ISN does not fix.
pub fn seed_for_isn(isn: u32, free: u64) -> u64 {
    let mut free = free;
    loop {
        // The state after the second step: its top three bits pick the
        // shift, and the 32 bits at the shift are the output.
        let shift = 29 - (free >> 61);
        let s2 = (free & !(0xffff_ffffu64 << shift)) | (u64::from(isn) << shift);
        let s1 = s2.wrapping_sub(PCG_A).wrapping_mul(PCG_M_INV);
        let n = pcg_out(s1);
        if (n ^ (n >> 16)) as u16 != 0 {
            return s1.wrapping_sub(PCG_A).wrapping_mul(PCG_M_INV);
        }
        free = free.wrapping_mul(PCG_M).wrapping_add(PCG_A);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: (u64, u64) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

    fn key4() -> Key {
        Key {
            local: IpAddr::from([10, 0, 0, 1]),
            lport: 80,
            remote: IpAddr::from([10, 0, 0, 2]),
            rport: 40000,
        }
    }

    const NOW: u64 = 1_000 * 1_000_000_000;

    #[test]
    fn a_cookie_validates_for_its_syn_and_carries_the_mss() {
        for (mss, want) in [
            (Some(1460), 1460),
            (Some(1400), 1300),
            (Some(65495), 1460),
            (None, 536),
            (Some(0), 536),
            (Some(100), 536),
        ] {
            let (c, m) = encode(K, &key4(), 777, mss, NOW);
            assert_eq!(m, want, "{mss:?}");
            assert_eq!(validate(K, &key4(), 777, c, NOW), Some(want));
        }
        let mut k6 = key4();
        k6.local = "2001:db8::1".parse().unwrap();
        k6.remote = "2001:db8::2".parse().unwrap();
        let (c, m) = encode(K, &k6, 5, Some(1440), NOW);
        assert_eq!(m, 1440);
        assert_eq!(validate(K, &k6, 5, c, NOW), Some(1440));
    }

    #[test]
    fn a_cookie_expires_after_one_to_two_periods() {
        let (c, _) = encode(K, &key4(), 1, Some(1460), NOW);
        let s = 1_000_000_000;
        // Same counter, next counter: valid; two counters on: expired.
        let start = NOW - NOW % (PERIOD_S * s);
        assert!(validate(K, &key4(), 1, c, start + PERIOD_S * s - 1).is_some());
        assert!(validate(K, &key4(), 1, c, start + PERIOD_S * s).is_some());
        assert!(validate(K, &key4(), 1, c, start + 2 * PERIOD_S * s - 1).is_some());
        assert!(validate(K, &key4(), 1, c, start + 2 * PERIOD_S * s).is_none());
        // From the future (counter ahead): refused.
        assert!(validate(K, &key4(), 1, c, start - 1).is_none());
    }

    #[test]
    fn a_cookie_is_refused_for_another_tuple_isn_key_or_mss() {
        let (c, _) = encode(K, &key4(), 99, Some(1460), NOW);
        let mut other = key4();
        other.rport += 1;
        assert!(validate(K, &other, 99, c, NOW).is_none());
        let mut other = key4();
        other.remote = IpAddr::from([10, 0, 0, 3]);
        assert!(validate(K, &other, 99, c, NOW).is_none());
        assert!(validate(K, &key4(), 100, c, NOW).is_none());
        assert!(validate((1, 2), &key4(), 99, c, NOW).is_none());
        // A forged MSS index changes the MAC.
        let forged = c ^ (1 << 25);
        assert!(validate(K, &key4(), 99, forged, NOW).is_none());
        // And a flipped MAC bit.
        assert!(validate(K, &key4(), 99, c ^ 1, NOW).is_none());
    }

    #[test]
    fn random_cookies_are_almost_never_accepted() {
        let mut hits = 0;
        let mut x = 1u64;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if validate(K, &key4(), 7, (x >> 32) as u32, NOW).is_some() {
                hits += 1;
            }
        }
        // 2 of 32 counters, 2^-25 per guess: expected ~0.0004.
        assert!(hits <= 1, "{hits}");
    }

    #[test]
    fn mss_option_is_found_among_others() {
        assert_eq!(mss_option(&[2, 4, 5, 0xb4]), Some(1460));
        assert_eq!(
            mss_option(&[1, 1, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 2, 4, 0x05, 0x78]),
            Some(1400)
        );
        assert_eq!(mss_option(&[1, 3, 3, 7]), None);
        assert_eq!(mss_option(&[0, 2, 4, 5, 0xb4]), None);
        assert_eq!(mss_option(&[2, 4, 5]), None);
        assert_eq!(mss_option(&[8, 0]), None);
        assert_eq!(mss_option(&[]), None);
    }

    #[test]
    fn pcg_inverse_is_an_inverse() {
        assert_eq!(PCG_M.wrapping_mul(PCG_M_INV), 1);
    }

    #[test]
    fn seeds_make_the_second_draw_the_isn() {
        let mut free = 12345u64;
        for isn in [0u32, 1, 0xffff_ffff, 0x8000_0000, 0xdead_beef] {
            free = free.wrapping_mul(PCG_M).wrapping_add(99);
            let seed = seed_for_isn(isn, free);
            let s1 = seed.wrapping_mul(PCG_M).wrapping_add(PCG_A);
            let s2 = s1.wrapping_mul(PCG_M).wrapping_add(PCG_A);
            assert_eq!(pcg_out(s2), isn);
        }
    }

    /// A device for the smoltcp test: a queue in, a list out.
    struct Loop {
        rx: std::collections::VecDeque<Vec<u8>>,
        tx: Vec<Vec<u8>>,
    }
    struct LoopRx(Vec<u8>);
    struct LoopTx<'a>(&'a mut Vec<Vec<u8>>);
    impl smoltcp::phy::RxToken for LoopRx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }
    impl smoltcp::phy::TxToken for LoopTx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut v = vec![0u8; len];
            let r = f(&mut v);
            self.0.push(v);
            r
        }
    }
    impl smoltcp::phy::Device for Loop {
        type RxToken<'b> = LoopRx;
        type TxToken<'b> = LoopTx<'b>;
        fn receive(&mut self, _t: smoltcp::time::Instant) -> Option<(LoopRx, LoopTx<'_>)> {
            let p = self.rx.pop_front()?;
            Some((LoopRx(p), LoopTx(&mut self.tx)))
        }
        fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<LoopTx<'_>> {
            Some(LoopTx(&mut self.tx))
        }
        fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
            let mut c = smoltcp::phy::DeviceCapabilities::default();
            c.medium = smoltcp::phy::Medium::Ip;
            c.max_transmission_unit = 1500;
            c
        }
    }

    /// `seg` with `payload` after its header, lengths and checksums fixed.
    fn with_payload(seg: &Segment, payload: &[u8]) -> Vec<u8> {
        let mut b = [0u8; 80];
        let n = write_segment(seg, &mut b).unwrap();
        let mut p = b[..n].to_vec();
        p.extend_from_slice(payload);
        let ip_len = if seg.src.is_ipv6() { 40 } else { 20 };
        let total = p.len();
        let tcp_len = total - ip_len;
        p[ip_len + 16..ip_len + 18].fill(0);
        let pseudo = match (seg.src, seg.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                p[10..12].fill(0);
                let c = checksum(&p[..20]);
                p[10..12].copy_from_slice(&c.to_be_bytes());
                pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp_len as u16)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                p[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
                pseudo_header_v6(&src, &dst, IpProtocol::Tcp, tcp_len as u32)
            }
            _ => unreachable!(),
        };
        let c = !fold(pseudo + sum(&p[ip_len..]));
        p[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// The mechanism the engine relies on (`Conns::accept_cookie`),
    /// against smoltcp itself: a listening socket on an interface seeded
    /// by `seed_for_isn`, fed the synthetic SYN in one poll (its SYN-ACK,
    /// the cookie's twin, thrown away) and the client's segment in the
    /// next, is established and takes the client's data, whether the
    /// data comes after a bare ACK or (the ACK lost) is the first segment
    /// to arrive; data it sends starts at the cookie + 1.
    #[test]
    fn cookie_isn_drives_smoltcp_to_established() {
        use smoltcp::iface::{Config, Interface, SocketSet};
        use smoltcp::socket::tcp;
        use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
        const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for ((local, remote), ack_lost) in [
            (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ),
        ]
        .into_iter()
        .flat_map(|a| [(a, false), (a, true)])
        {
            let what = format!("{local}, handshake ACK lost: {ack_lost}");
            let key = Key {
                local,
                lport: 80,
                remote,
                rport: 40000,
            };
            let client_isn = 0x1234_5678u32;
            let (cookie, mss) = encode(K, &key, client_isn, Some(1460), NOW);
            let syn = Segment {
                src: remote,
                dst: local,
                sport: 40000,
                dport: 80,
                seq: client_isn,
                ack: 0,
                flags: 0x02,
                window: 64240,
                mss: Some(mss),
            };
            let ack = Segment {
                seq: client_isn.wrapping_add(1),
                ack: cookie.wrapping_add(1),
                flags: 0x10,
                mss: None,
                ..syn
            };
            let data = Segment { flags: 0x18, ..ack };
            let mut dev = Loop {
                rx: [with_payload(&syn, &[])].into_iter().collect(),
                tx: Vec::new(),
            };
            let mut cfg = Config::new(HardwareAddress::Ip);
            cfg.random_seed = seed_for_isn(cookie, 0x5555_aaaa_1234_4321);
            let t0 = smoltcp::time::Instant::from_millis(1);
            let mut iface = Interface::new(cfg, &mut dev, t0);
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::from(local), 0));
            });
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; 4096]),
                tcp::SocketBuffer::new(vec![0u8; 4096]),
            );
            s.listen(80).unwrap();
            let mut set = SocketSet::new(Vec::new());
            let h = set.add(s);
            iface.poll(t0, &mut dev, &mut set);
            // The SYN-ACK thrown away: the cookie's twin.
            assert_eq!(dev.tx.len(), 1, "{what}");
            let (seq, ackn, window, opts) = parse(&dev.tx[0]).unwrap();
            assert_eq!(
                (seq, ackn, window),
                (cookie, client_isn + 1, 4096),
                "{what}"
            );
            assert!(!opts.contains(&3), "{what}: no window scale: {opts:?}");
            dev.tx.clear();
            if !ack_lost {
                dev.rx.push_back(with_payload(&ack, &[]));
                iface.poll(t0, &mut dev, &mut set);
                let s = set.get_mut::<tcp::Socket>(h);
                assert_eq!(s.state(), tcp::State::Established, "{what}");
                assert!(dev.tx.is_empty(), "{what}: sent {:?}", dev.tx);
            }
            dev.rx.push_back(with_payload(&data, REQUEST));
            iface.poll(t0, &mut dev, &mut set);
            let s = set.get_mut::<tcp::Socket>(h);
            assert_eq!(s.state(), tcp::State::Established, "{what}");
            let mut got = [0u8; 64];
            let n = s.recv_slice(&mut got).unwrap();
            assert_eq!(&got[..n], REQUEST, "{what}");
            dev.tx.clear();
            s.send_slice(b"hi").unwrap();
            iface.poll(t0, &mut dev, &mut set);
            assert_eq!(dev.tx.len(), 1, "{what}");
            let (seq, ackn, _, _) = parse(&dev.tx[0]).unwrap();
            assert_eq!(seq, cookie.wrapping_add(1), "{what}");
            assert_eq!(ackn, client_isn + 1 + REQUEST.len() as u32, "{what}");
        }
    }
}
