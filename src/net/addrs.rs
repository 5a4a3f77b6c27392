//! What an address is to Sluice, in one probe: one of its own, a VIP, or a
//! martian (a directed broadcast of one of its subnets).
//!
//! Classification asks this for the destination of every packet (ours or a
//! VIP?) and for its source (spoofed?). A walk over every port's addresses
//! and every VIP would grow with the config and run several times per
//! packet; this is a small open-addressing table (at most half full, keys
//! hashed by one multiplication), built once with the plane and never
//! changed, so a lookup is one or two loads from a table that stays in L1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One of Sluice's own addresses (on any port).
pub const OWN: u8 = 1;
/// A VIP: an L4 service's or an L7 listener's address.
pub const VIP: u8 = 2;
/// Never a valid source: the directed broadcast address of one of Sluice's
/// IPv4 subnets.
pub const MARTIAN: u8 = 4;

#[derive(Clone, Copy, Debug, Default)]
struct Slot<K> {
    key: K,
    /// 0: empty.
    kind: u8,
}

/// A set of addresses with their kinds (`OWN | VIP | MARTIAN` bits).
#[derive(Clone, Debug)]
pub struct AddrSet {
    v4: Vec<Slot<u32>>,
    v6: Vec<Slot<u128>>,
    bits4: u32,
    bits6: u32,
}

impl Default for AddrSet {
    fn default() -> AddrSet {
        AddrSet::build(std::iter::empty())
    }
}

#[inline(always)]
fn slot_of(h: u64, bits: u32) -> usize {
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
}

#[inline(always)]
fn fold6(a: u128) -> u64 {
    (a as u64) ^ ((a >> 64) as u64).rotate_left(23)
}

/// Table size for `n` keys: a power of two at least twice `n`, at least 8.
fn bits_for(n: usize) -> u32 {
    let size = (2 * n).max(8).next_power_of_two();
    size.trailing_zeros()
}

impl AddrSet {
    /// Build from `(address, kind)` pairs; kinds of the same address merge.
    pub fn build(entries: impl Iterator<Item = (IpAddr, u8)>) -> AddrSet {
        let entries: Vec<(IpAddr, u8)> = entries.filter(|(_, k)| *k != 0).collect();
        let n4 = entries.iter().filter(|(a, _)| a.is_ipv4()).count();
        let n6 = entries.len() - n4;
        let (bits4, bits6) = (bits_for(n4), bits_for(n6));
        let mut s = AddrSet {
            v4: vec![Slot::default(); 1 << bits4],
            v6: vec![Slot::default(); 1 << bits6],
            bits4,
            bits6,
        };
        for (a, k) in entries {
            match a {
                IpAddr::V4(a) => {
                    let key = u32::from(a);
                    let mask = s.v4.len() - 1;
                    let mut i = slot_of(key as u64, bits4);
                    while s.v4[i].kind != 0 && s.v4[i].key != key {
                        i = (i + 1) & mask;
                    }
                    s.v4[i].key = key;
                    s.v4[i].kind |= k;
                }
                IpAddr::V6(a) => {
                    let key = u128::from(a);
                    let mask = s.v6.len() - 1;
                    let mut i = slot_of(fold6(key), bits6);
                    while s.v6[i].kind != 0 && s.v6[i].key != key {
                        i = (i + 1) & mask;
                    }
                    s.v6[i].key = key;
                    s.v6[i].kind |= k;
                }
            }
        }
        s
    }

    /// The kind bits of `a` (0: none of Sluice's business).
    #[inline]
    pub fn v4(&self, a: Ipv4Addr) -> u8 {
        let key = u32::from(a);
        let mask = self.v4.len() - 1;
        let mut i = slot_of(key as u64, self.bits4);
        loop {
            let s = &self.v4[i];
            if s.kind == 0 || s.key == key {
                return s.kind;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn v6(&self, a: Ipv6Addr) -> u8 {
        let key = u128::from(a);
        let mask = self.v6.len() - 1;
        let mut i = slot_of(fold6(key), self.bits6);
        loop {
            let s = &self.v6[i];
            if s.kind == 0 || s.key == key {
                return s.kind;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn kind(&self, a: IpAddr) -> u8 {
        match a {
            IpAddr::V4(a) => self.v4(a),
            IpAddr::V6(a) => self.v6(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_merge_and_absent_addresses_are_zero() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut e = vec![
            (a("10.0.0.1"), OWN),
            (a("10.0.0.100"), VIP),
            (a("10.0.0.1"), VIP),
            (a("10.0.0.255"), MARTIAN),
            (a("fd00::1"), OWN),
            (a("fd00::100"), VIP),
        ];
        // Enough to force collisions and wrap-around in an 8-slot table.
        for i in 0..40u32 {
            e.push((IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)), VIP));
            e.push((
                IpAddr::V6(Ipv6Addr::from(0xfd01_u128 << 112 | i as u128)),
                OWN,
            ));
        }
        let s = AddrSet::build(e.into_iter());
        assert_eq!(s.kind(a("10.0.0.1")), OWN | VIP);
        assert_eq!(s.kind(a("10.0.0.100")), VIP);
        assert_eq!(s.kind(a("10.0.0.255")), MARTIAN);
        assert_eq!(s.kind(a("10.0.0.2")), 0);
        assert_eq!(s.kind(a("fd00::1")), OWN);
        assert_eq!(s.kind(a("fd00::100")), VIP);
        assert_eq!(s.kind(a("fd00::2")), 0);
        for i in 0..40u32 {
            assert_eq!(s.v4(Ipv4Addr::from(0x0a01_0000 + i)), VIP);
            assert_eq!(s.v6(Ipv6Addr::from(0xfd01_u128 << 112 | i as u128)), OWN);
        }
        assert_eq!(s.v4(Ipv4Addr::from(0x0a01_0000 + 40)), 0);
        let empty = AddrSet::default();
        assert_eq!(empty.kind(a("10.0.0.1")), 0);
        assert_eq!(empty.kind(a("::")), 0);
    }
}
