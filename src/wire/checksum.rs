//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the ones' complement of the ones' complement sum of the
//! data taken as big-endian 16-bit words, an odd last byte padded with zero
//! on the right (RFC 1071 §1).
//!
//! A *sum* here is a `u32` holding a ones' complement sum already folded to at
//! most `0xFFFF`. Sums of consecutive pieces add with plain `+` (65537 of them
//! fit in a `u32`) as long as every piece but the last has an even length, so
//! a pseudo-header sum plus a segment sum is the segment's checksum input.
//! [`fold`] turns a sum into 16 bits; the checksum field is `!fold(sum)`.
//!
//! Hot-path rewrites (NAT of an address or a port, TTL decrement) fix the
//! field with [`update16`], [`update32`] or [`update_ipv6_addr`] instead of
//! summing the packet again.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ip::IpProtocol;

/// Ones' complement sum of `data` (RFC 1071 §4.1), folded to at most `0xFFFF`.
///
/// Only all-zero (or empty) data sums to 0.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Adding 32-bit words is the same sum modulo 0xFFFF, because
    // 2^16 = 1 (mod 0xFFFF) (RFC 1071 §2(B), "parallel summation").
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u32
}

/// Folds the carries of a 32-bit sum back into 16 bits (end-around carry).
///
/// A non-zero input never folds to 0, so the ones' complement "negative
/// zero" 0xFFFF is kept apart from the all-zero sum.
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xFFFF) + (sum >> 16);
    let s = (s & 0xFFFF) + (s >> 16);
    s as u16
}

/// The checksum of `data`: `!fold(sum(data))`.
///
/// Over data that includes its own correct checksum field the result is 0,
/// which is how the `verify_checksum` methods check.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Sum of the IPv4 pseudo-header of TCP and UDP (RFC 793 §3.1, RFC 768):
/// source, destination, zero byte, protocol, and the upper-layer length.
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: IpProtocol, len: u16) -> u32 {
    let s =
        sum(&src.octets()) + sum(&dst.octets()) + u32::from(u8::from(protocol)) + u32::from(len);
    u32::from(fold(s))
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the
/// 32-bit upper-layer length, three zero bytes and the next header value of
/// the upper-layer protocol (not of any extension header before it).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: IpProtocol, len: u32) -> u32 {
    let s = sum(&src.octets())
        + sum(&dst.octets())
        + (len >> 16)
        + (len & 0xFFFF)
        + u32::from(u8::from(next_header));
    u32::from(fold(s))
}

/// The checksum after one 16-bit word covered by it changes from `old` to
/// `new`: HC' = ~(~HC + ~m + m') (RFC 1624 eqn. 3).
///
/// Eqn. 3 rather than eqn. 2 (HC - ~m - m'), which yields 0xFFFF where a
/// full recompute gives 0x0000 (RFC 1624 §3). The word must sit at an even
/// offset from the start of the checksummed data; a byte at an odd offset is
/// the low half of its word.
///
/// UDP: a result of 0 must be sent as 0xFFFF, and a checksum of 0 over IPv4
/// means "none" and is left alone (RFC 768); see `udp::Packet`'s rewrites.
pub const fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    let s = (!old_csum) as u32 + (!old) as u32 + new as u32;
    !fold(s)
}

/// The RFC 1624 term (`~m + m'`) for a 16-bit field changed from `old` to
/// `new`: several fields' terms add up and are applied once with
/// [`apply_delta`], so a NAT rewrite folds once per checksum instead of
/// once per field.
#[inline(always)]
pub const fn delta16(old: u16, new: u16) -> u64 {
    (!old) as u64 + new as u64
}

/// [`delta16`] for a 32-bit field (an IPv4 address), as two words.
#[inline(always)]
pub const fn delta32(old: u32, new: u32) -> u64 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// The RFC 1624 term of a 32-bit field changed from `old` to `new`, both
/// as loaded from memory in native byte order: summed with other such
/// terms and applied with [`apply_delta`] to a checksum also loaded and
/// stored in native order, it gives the same bytes as the big-endian
/// [`delta32`] (the ones' complement sum is independent of byte order,
/// RFC 1071 §2(B), and 2^16 = 1 mod 0xFFFF lets the 32 bits count as one
/// term: RFC 1071 §2(C)).
#[inline(always)]
pub const fn delta_ne(old: u32, new: u32) -> u64 {
    (!old) as u64 + new as u64
}

/// Whether a 20-byte IPv4 header (no options) carries a correct header
/// checksum: its ones' complement sum is 0xFFFF. Summed as five 32-bit
/// words in native byte order (see [`delta_ne`]): the all-ones sum is
/// the same in either order.
#[inline(always)]
pub fn verify_ipv4_header(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let s = w(0) + w(4) + w(8) + w(12) + w(16);
    let s = (s & 0xFFFF_FFFF) + (s >> 32);
    let s = (s & 0xFFFF) + (s >> 16);
    let s = (s & 0xFFFF) + (s >> 16);
    let s = (s & 0xFFFF) + (s >> 16);
    s == 0xFFFF
}

/// Apply summed [`delta16`]/[`delta32`] terms to a checksum (RFC 1624
/// eqn. 3: `HC' = ~(~HC + sum of terms)`).
#[inline(always)]
pub const fn apply_delta(old_csum: u16, delta: u64) -> u16 {
    let mut s = (!old_csum) as u64 + delta;
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    !(s as u16)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a TCP sequence number),
/// as two words.
pub const fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let s = (!old_csum) as u32
        + (!(old >> 16) & 0xFFFF)
        + (!old & 0xFFFF)
        + (new >> 16)
        + (new & 0xFFFF);
    !fold(s)
}

/// [`update16`] for an IPv4 address.
pub fn update_ipv4_addr(old_csum: u16, old: &Ipv4Addr, new: &Ipv4Addr) -> u16 {
    update32(old_csum, u32::from(*old), u32::from(*new))
}

/// [`update16`] for a 16-byte IPv6 address, as eight words. Applies to the
/// TCP/UDP/ICMPv6 checksum, whose pseudo-header holds both addresses.
pub fn update_ipv6_addr(old_csum: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    let mut s = u32::from(!old_csum);
    for (o, n) in old.segments().iter().zip(new.segments().iter()) {
        s += u32::from(!*o) + u32::from(*n);
    }
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The native-order header check agrees with `checksum` over headers
    /// with a right, a wrong, an all-zero and an all-ones checksum field.
    #[test]
    fn verify_ipv4_header_agrees_with_checksum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            match i % 4 {
                0 => {
                    h[10..12].copy_from_slice(&[0, 0]);
                    let c = checksum(&h);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                }
                1 => h = [0; 20],
                2 => h = [0xff; 20],
                _ => {}
            }
            assert_eq!(verify_ipv4_header(&h), checksum(&h) == 0, "{h:02x?}");
        }
    }

    /// RFC 1071 §3's example: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_on_the_right() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
        // Every remainder length of the 4-byte loop.
        let data = [0xff; 7];
        for n in 0..=7 {
            let naive: u32 = data[..n]
                .chunks(2)
                .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
                .sum();
            assert_eq!(fold(sum(&data[..n])), fold(naive), "len {n}");
        }
    }

    /// Summed deltas applied once agree with a full recomputation, for
    /// many fields changed at once (what a NAT rewrite does).
    #[test]
    fn summed_deltas_match_recomputation() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1000 {
            let mut data = [0u8; 20];
            for b in data.iter_mut() {
                *b = next() as u8;
            }
            let c0 = checksum(&data);
            let mut d = 0;
            let mut new = data;
            // Change a 32-bit field, two 16-bit fields and another 32-bit one.
            for (at, w) in [(0usize, 4usize), (6, 2), (8, 2), (12, 4)] {
                let v = next();
                for i in 0..w {
                    new[at + i] = (v >> (8 * i)) as u8;
                }
                d += if w == 4 {
                    let o = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
                    let n = u32::from_be_bytes(new[at..at + 4].try_into().unwrap());
                    delta32(o, n)
                } else {
                    let o = u16::from_be_bytes([data[at], data[at + 1]]);
                    let n = u16::from_be_bytes([new[at], new[at + 1]]);
                    delta16(o, n)
                };
            }
            // Equal as one's-complement numbers (0 and 0xffff both mean zero).
            let (a, b) = (apply_delta(c0, d), checksum(&new));
            assert!(
                a == b || (a | b) == 0xffff && (a & b) == 0,
                "{a:04x} {b:04x}"
            );
        }
    }

    #[test]
    fn empty_and_zero() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[0, 0, 0, 0]), 0xFFFF);
        // 0xFFFF stays 0xFFFF: non-zero data never folds to 0.
        assert_eq!(fold(0xFFFF), 0xFFFF);
        assert_eq!(fold(0x1_0000), 0x0001);
        assert_eq!(fold(0xFFFF_FFFF), 0xFFFF);
    }

    /// An IPv4 header from Wikipedia's "IPv4 header checksum" article.
    #[test]
    fn ipv4_header_checksum() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn partial_sums_add() {
        let data: Vec<u8> = (0u8..=200).collect();
        for split in (0..data.len()).step_by(2) {
            let (a, b) = data.split_at(split);
            assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }
    }

    #[test]
    fn large_buffers_do_not_overflow() {
        // 0xFFFF words are ones' complement zeros; the odd last byte pads to
        // 0xFF00.
        let data = vec![0xff; 256 * 1024 + 3];
        assert_eq!(fold(sum(&data)), 0xFF00);
        assert_eq!(fold(sum(&data[..256 * 1024])), 0xFFFF);
    }

    /// RFC 1624 §3: m = 0x5555 becomes m' = 0x3285 where the other words sum
    /// to 0xCD7A. Recomputing gives 0x0000; eqn. 3 must agree (eqn. 2 would
    /// give 0xFFFF).
    #[test]
    fn rfc1624_corner_case() {
        let hc = !fold(0xCD7A + 0x5555);
        assert_eq!(hc, 0xDD2F);
        let recomputed = !fold(0xCD7A + 0x3285);
        assert_eq!(recomputed, 0x0000);
        assert_eq!(update16(hc, 0x5555, 0x3285), 0x0000);
        // And back again.
        assert_eq!(update16(0x0000, 0x3285, 0x5555), 0xDD2F);
    }

    /// A fixed xorshift generator: "random-ish" edits, same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn incremental_equals_recompute() {
        let mut rng = Rng(0x5eed_1624);
        for round in 0..2000 {
            let len = 8 + 2 * (rng.next() % 40) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // A fixed non-zero word keeps the data away from the all-zero sum,
            // the one input where 0xFFFF and 0x0000 are both "right".
            data[0] = 0x45;
            let csum = checksum(&data);

            let at = 2 + 2 * (rng.next() as usize % ((len - 2) / 2));
            match round % 4 {
                0 => {
                    let old = u16::from_be_bytes([data[at], data[at + 1]]);
                    let new = rng.next() as u16;
                    data[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    assert_eq!(update16(csum, old, new), checksum(&data));
                }
                1 if at + 4 <= len => {
                    let old = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
                    let new = rng.next() as u32;
                    data[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    assert_eq!(update32(csum, old, new), checksum(&data));
                }
                2 if at + 16 <= len => {
                    let old = Ipv6Addr::from(<[u8; 16]>::try_from(&data[at..at + 16]).unwrap());
                    let new = Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
                    data[at..at + 16].copy_from_slice(&new.octets());
                    assert_eq!(update_ipv6_addr(csum, &old, &new), checksum(&data));
                }
                _ => {
                    // A change that cancels out leaves the checksum alone.
                    let old = u16::from_be_bytes([data[at], data[at + 1]]);
                    assert_eq!(update16(csum, old, old), csum);
                }
            }
        }
    }

    #[test]
    fn update_ipv4_addr_matches_recompute() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 7);
        let new = Ipv4Addr::new(10, 1, 2, 3);
        let before = !fold(pseudo_header_v4(&src, &dst, IpProtocol::Tcp, 20) + 0x1234);
        let after = !fold(pseudo_header_v4(&src, &new, IpProtocol::Tcp, 20) + 0x1234);
        assert_eq!(update_ipv4_addr(before, &dst, &new), after);
    }

    #[test]
    fn pseudo_header_v6_length_words() {
        let a = Ipv6Addr::UNSPECIFIED;
        // Length 0x0001_0002 contributes 0x0001 + 0x0002.
        assert_eq!(
            pseudo_header_v6(&a, &a, IpProtocol::Udp, 0x0001_0002),
            3 + 17
        );
    }
}
