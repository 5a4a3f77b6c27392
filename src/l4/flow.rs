//! Flow keys and the fleet-wide flow hash.
//!
//! A [`FlowKey`] is the 5-tuple of a packet as it arrived: source and
//! destination address, source and destination port, IP protocol. Both
//! address families share one layout: an IPv4 address is stored as its
//! IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so a key is
//! 38 bytes, `Copy`, and hashes and compares without branching on family.
//!
//! [`flow_hash`] and [`src_hash`] pick backends. They must give the same value
//! for the same flow on every Sluice instance, every process, every machine
//! and every build, because several boxes behind one ECMP group each receive
//! a share of a flow's packets and must all choose the same backend (Maglev
//! §3.4; Katran does the same). They therefore name their algorithm (the
//! `siphasher` crate's, a fixed specification) instead of relying on `std`'s
//! `DefaultHasher`, whose algorithm is explicitly not stable across Rust
//! releases, or on a randomly seeded hasher.
//!
//! The algorithm is SipHash-1-3 (Aumasson & Bernstein, "SipHash: a fast
//! short-input PRF", 2012; the 1-3 round variant is what `std` has used since
//! Rust 1.13) over a canonical byte string, keyed with a fixed 128-bit key
//! XORed with a 64-bit `seed`. The seed is a fleet-wide setting: every box of
//! one ECMP group must use the same seed; keeping it secret stops a client
//! from steering its flows to one chosen backend. Golden values in the tests
//! freeze the output; changing them moves every flow of every service.
//!
//! The per-core connection table does *not* use these functions: it uses its
//! own hash, seeded at random per table, so that nobody can precompute keys
//! that collide in it (see [`super::conntrack`]).

use core::fmt;
use core::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") used by
/// the L4 code. [`FlowKey::proto`] stores the raw number so that the key stays
/// compact; the wire module's protocol enum converts to and from it.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// The 5-tuple of a packet, in the direction the packet travelled.
///
/// Addresses are 16 bytes in network order; IPv4 addresses are stored
/// IPv4-mapped. Ports are in host order (as read from the header).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// Length of [`FlowKey::to_bytes`]: 16 + 16 + 2 + 2 + 1.
pub const FLOW_KEY_BYTES: usize = 37;

/// `::ffff:a.b.c.d`, built as one 128-bit word (the compiler keeps the
/// address in a register instead of moving it byte by byte).
const fn v4_mapped(a: Ipv4Addr) -> [u8; 16] {
    ((0xffff_u128 << 32) | a.to_bits() as u128).to_be_bytes()
}

fn to_ip(a: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// An IPv4 flow.
    pub const fn v4(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src: v4_mapped(src),
            dst: v4_mapped(dst),
            src_port,
            dst_port,
            proto,
        }
    }

    /// An IPv6 flow. An IPv4-mapped address gives the same key as [`FlowKey::v4`].
    pub const fn v6(src: Ipv6Addr, dst: Ipv6Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src: src.octets(),
            dst: dst.octets(),
            src_port,
            dst_port,
            proto,
        }
    }

    /// A flow from `std` addresses; each side is mapped independently.
    pub fn new(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        let map = |a: IpAddr| match a {
            IpAddr::V4(a) => v4_mapped(a),
            IpAddr::V6(a) => a.octets(),
        };
        FlowKey {
            src: map(src),
            dst: map(dst),
            src_port,
            dst_port,
            proto,
        }
    }

    /// The key of the packets travelling the other way.
    #[inline]
    pub const fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    pub fn src_ip(&self) -> IpAddr {
        to_ip(&self.src)
    }

    pub fn dst_ip(&self) -> IpAddr {
        to_ip(&self.dst)
    }

    /// True when both addresses are IPv4-mapped.
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        const PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        self.src[..12] == PREFIX && self.dst[..12] == PREFIX
    }

    /// The canonical byte string that [`flow_hash`] hashes:
    /// `src[16] ‖ dst[16] ‖ src_port (big endian) ‖ dst_port (big endian) ‖ proto`.
    #[inline]
    pub fn to_bytes(&self) -> [u8; FLOW_KEY_BYTES] {
        let mut b = [0u8; FLOW_KEY_BYTES];
        b[0..16].copy_from_slice(&self.src);
        b[16..32].copy_from_slice(&self.dst);
        b[32..34].copy_from_slice(&self.src_port.to_be_bytes());
        b[34..36].copy_from_slice(&self.dst_port.to_be_bytes());
        b[36] = self.proto;
        b
    }
}

/// Feeds the hasher five integer writes instead of the derive's per-field
/// slice writes (which add length prefixes): the connection table hashes
/// every packet's key, so this is on the hot path. Consistent with `Eq`
/// because every field is written.
impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.src));
        state.write_u128(u128::from_ne_bytes(self.dst));
        state.write_u64(
            (u64::from(self.src_port) << 24)
                | (u64::from(self.dst_port) << 8)
                | u64::from(self.proto),
        );
    }
}

impl fmt::Display for FlowKey {
    /// `proto 6 10.0.0.1:1234 -> 10.0.0.2:80`, IPv6 addresses in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |a: IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        write!(
            f,
            "proto {} {} -> {}",
            self.proto,
            side(self.src_ip(), self.src_port),
            side(self.dst_ip(), self.dst_port)
        )
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowKey({self})")
    }
}

/// Key of [`flow_hash`]: the ASCII bytes `sluice:flow-v1:k`, little endian.
const FLOW_K0: u64 = u64::from_le_bytes(*b"sluice:f");
const FLOW_K1: u64 = u64::from_le_bytes(*b"low-v1:k");
/// Key of [`src_hash`]: `sluice:src-v1:ke`.
const SRC_K0: u64 = u64::from_le_bytes(*b"sluice:s");
const SRC_K1: u64 = u64::from_le_bytes(*b"rc-v1:ke");

/// Hash of the whole 5-tuple, for per-flow backend selection.
///
/// SipHash-1-3 of [`FlowKey::to_bytes`] with key
/// `(FLOW_K0 ^ seed, FLOW_K1 ^ seed)`. Stable forever: see the module doc.
#[inline]
pub fn flow_hash(key: &FlowKey, seed: u64) -> u64 {
    siphash13(FLOW_K0 ^ seed, FLOW_K1 ^ seed, &key.to_bytes())
}

/// Hash of the source address alone, for source-IP affinity (every flow of a
/// client goes to one backend). Same algorithm as [`flow_hash`] over the 16
/// address bytes, with its own key so the two never coincide by design.
#[inline]
pub fn src_hash(key: &FlowKey, seed: u64) -> u64 {
    siphash13(SRC_K0 ^ seed, SRC_K1 ^ seed, &key.src)
}

/// SipHash-1-3 with the 128-bit key `(k0, k1)`, as specified in the SipHash
/// paper (`c = 1` compression round, `d = 3` finalization rounds), from the
/// `siphasher` crate; the tests check its SipHash-2-4 sibling against the
/// published vectors and freeze this function's outputs.
#[inline]
pub fn siphash13(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    siphasher::sip::SipHasher13::new_with_keys(k0, k1).hash(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn k4(s: [u8; 4], d: [u8; 4], sp: u16, dp: u16, p: u8) -> FlowKey {
        FlowKey::v4(Ipv4Addr::from(s), Ipv4Addr::from(d), sp, dp, p)
    }

    /// Reference vectors from the SipHash paper, appendix A, and the
    /// reference implementation's `vectors.h` (key 00..0f, message 00..len-1).
    #[test]
    fn siphash24_reference_vectors() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..64).collect();
        let cases: &[(usize, u64)] = &[
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
            (63, 0x958a_324c_eb06_4572),
        ];
        for &(len, want) in cases {
            let got = siphasher::sip::SipHasher24::new_with_keys(k0, k1).hash(&msg[..len]);
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    fn v4_is_mapped_and_round_trips() {
        let k = k4([10, 0, 0, 1], [192, 0, 2, 7], 40000, 80, proto::TCP);
        assert_eq!(&k.src[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(k.src_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(k.dst_ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(k.is_ipv4());
        let mapped = FlowKey::v6(
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(),
            Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped(),
            40000,
            80,
            proto::TCP,
        );
        assert_eq!(k, mapped);
        let generic = FlowKey::new(k.src_ip(), k.dst_ip(), 40000, 80, proto::TCP);
        assert_eq!(k, generic);
        assert_eq!(k.to_string(), "proto 6 10.0.0.1:40000 -> 192.0.2.7:80");
    }

    #[test]
    fn v6_key() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let k = FlowKey::v6(s, d, 1, 443, proto::UDP);
        assert!(!k.is_ipv4());
        assert_eq!(k.src_ip(), IpAddr::V6(s));
        assert_eq!(
            k.to_string(),
            "proto 17 [2001:db8::1]:1 -> [2001:db8::2]:443"
        );
    }

    #[test]
    fn reversed_swaps_sides_and_is_an_involution() {
        let k = k4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, proto::TCP);
        let r = k.reversed();
        assert_eq!(r, k4([10, 0, 0, 2], [10, 0, 0, 1], 80, 1234, proto::TCP));
        assert_eq!(r.reversed(), k);
        assert_ne!(flow_hash(&k, 0), flow_hash(&r, 0));
    }

    #[test]
    fn canonical_bytes_layout() {
        let k = k4([1, 2, 3, 4], [5, 6, 7, 8], 0x0102, 0x0304, 6);
        let b = k.to_bytes();
        assert_eq!(&b[12..16], &[1, 2, 3, 4]);
        assert_eq!(&b[28..32], &[5, 6, 7, 8]);
        assert_eq!(&b[32..], &[1, 2, 3, 4, 6]);
    }

    /// Frozen outputs. If this test fails, every flow of every service moves
    /// to another backend on upgrade, and boxes of different versions behind
    /// one ECMP group disagree. Do not update the constants; add a new
    /// versioned function instead.
    #[test]
    fn golden_values() {
        let a = k4([10, 0, 0, 1], [192, 0, 2, 10], 40000, 443, proto::TCP);
        let b = FlowKey::v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8:ffff::80".parse().unwrap(),
            5353,
            53,
            proto::UDP,
        );
        let got = [
            flow_hash(&a, 0),
            flow_hash(&a, 0x0123_4567_89ab_cdef),
            flow_hash(&b, 0),
            src_hash(&a, 0),
            src_hash(&b, 7),
            siphash13(0, 0, b""),
        ];
        let want = GOLDEN;
        assert_eq!(got, want, "got {got:#018x?}");
    }

    const GOLDEN: [u64; 6] = [
        0x9312_65e0_d150_5bde,
        0x7363_9989_b161_e160,
        0x735c_fcf2_9f66_7e73,
        0xd9b5_a9b5_69e3_4da7,
        0x46d2_2996_ce27_0d57,
        0xd1fb_a762_150c_532c,
    ];

    #[test]
    fn src_hash_ignores_everything_but_the_source() {
        let a = k4([10, 0, 0, 1], [192, 0, 2, 10], 40000, 443, proto::TCP);
        let b = k4([10, 0, 0, 1], [192, 0, 2, 99], 1, 80, proto::UDP);
        let c = k4([10, 0, 0, 2], [192, 0, 2, 10], 40000, 443, proto::TCP);
        assert_eq!(src_hash(&a, 3), src_hash(&b, 3));
        assert_ne!(src_hash(&a, 3), src_hash(&c, 3));
        assert_ne!(src_hash(&a, 3), src_hash(&a, 4));
    }

    /// Every field and the seed change the hash; the low bits are well spread
    /// (a coarse check, not a statistical test).
    #[test]
    fn flow_hash_depends_on_every_field_and_spreads() {
        let base = k4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, proto::TCP);
        let h = flow_hash(&base, 0);
        let mut variants = [base; 5];
        variants[0].src[15] ^= 1;
        variants[1].dst[15] ^= 1;
        variants[2].src_port ^= 1;
        variants[3].dst_port ^= 1;
        variants[4].proto = proto::UDP;
        for v in &variants {
            assert_ne!(flow_hash(v, 0), h, "{v}");
        }
        assert_ne!(flow_hash(&base, 1), h);

        let mut buckets = [0u32; 64];
        let mut seen = HashSet::new();
        for port in 0..64_000u16 {
            let k = k4([10, 0, 0, 1], [10, 0, 0, 2], port, 80, proto::TCP);
            let h = flow_hash(&k, 0);
            assert!(seen.insert(h));
            buckets[(h % 64) as usize] += 1;
        }
        // 1000 expected per bucket; six sigma is about 190.
        for (i, &n) in buckets.iter().enumerate() {
            assert!((800..1200).contains(&n), "bucket {i}: {n}");
        }
    }

    #[test]
    fn std_hash_is_consistent_with_eq() {
        use std::collections::hash_map::DefaultHasher;
        let h = |k: &FlowKey| {
            let mut s = DefaultHasher::new();
            k.hash(&mut s);
            s.finish()
        };
        let a = k4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, proto::TCP);
        let mut b = a;
        assert_eq!(h(&a), h(&b));
        b.dst_port = 81;
        assert_ne!(h(&a), h(&b));
    }
}
