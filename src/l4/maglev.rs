//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4), with weights as in
//! Katran's `MaglevHashV2`.
//!
//! A table of `M` slots (`M` prime) maps a flow hash to a backend. Each
//! backend owns a permutation of the slots, `offset + j·skip (mod M)`, where
//! `offset` and `skip` come from two different fixed hashes of the backend's
//! *stable key*, chosen by the caller: `control/compile.rs` uses the
//! backend's address as text, so that every Sluice given the same backends
//! builds the same table whatever their order in the file. Backends take
//! turns claiming their next free slot until the table is full. Because
//! permutations depend only on keys, removing one backend mostly moves only
//! that backend's slots, and the same backend set always gives the same
//! table.
//!
//! Determinism and order independence:
//! - The build sorts backends by key bytes before filling, so the order of
//!   the configuration does not change which slots a backend gets.
//! - The hashes are SipHash-1-3 with fixed keys ([`super::flow::siphash13`]):
//!   every machine, process and build computes the same table, which is what
//!   lets several boxes behind ECMP agree.
//! - Golden checksums in the tests freeze the output.
//!
//! Weights: each round every backend adds its weight to a credit; a backend
//! whose credit reaches the largest weight takes one turn and pays the largest
//! weight back. The heaviest backend therefore takes a turn every round and
//! the others proportionally less often, interleaved rather than in bursts, so
//! the number of slots each backend owns is proportional to its weight (within
//! one slot per round boundary). Weight 0 keeps a backend out of the table
//! (drained); with no positive weight the table is empty and
//! [`MaglevTable::lookup`] returns `None`.
//!
//! Building is control-plane work (O(M·log M) for equal weights; the paper
//! recommends `M ≥ 100·N`). Lookup is one multiply and one load.

use super::flow::siphash13;

/// Table size used when the configuration does not give one: the smallest
/// prime above 2^16, as in the paper's evaluation and Katran.
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// Largest table size accepted. Slots are `u32` indices and the table is
/// 4 bytes per slot; 2^24 + 43 slots is 64 MiB per service, far more than any
/// backend count needs.
pub const MAX_TABLE_SIZE: usize = 16_777_259;

/// Index of a backend in the slice given to [`MaglevTable::build`].
pub type BackendIndex = u32;

/// Keys of the two backend hashes: ASCII `sluice:maglev-of` / `sluice:maglev-sk`.
const OFFSET_K0: u64 = u64::from_le_bytes(*b"sluice:m");
const OFFSET_K1: u64 = u64::from_le_bytes(*b"aglev-of");
const SKIP_K0: u64 = u64::from_le_bytes(*b"sluice:m");
const SKIP_K1: u64 = u64::from_le_bytes(*b"aglev-sk");

const EMPTY_SLOT: u32 = u32::MAX;

/// Why a table could not be built. Control-plane error: reported with the
/// service's name by the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("maglev table size {size} is not prime (the next prime is {next})")]
    NotPrime { size: usize, next: usize },
    #[error("maglev table size {size} is larger than the maximum {MAX_TABLE_SIZE}")]
    TooLarge { size: usize },
    #[error(
        "maglev table size {size} is smaller than the {backends} backends with a non-zero weight"
    )]
    TooManyBackends { backends: usize, size: usize },
    #[error("backends #{first} and #{second} have the same key; keys must be unique")]
    DuplicateKey { first: usize, second: usize },
}

/// A built Maglev lookup table. Immutable: the control plane builds a new one
/// and publishes it in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    /// `size` entries, each an index into the backend slice given to `build`;
    /// empty when no backend has a positive weight.
    slots: Box<[BackendIndex]>,
    size: usize,
    backends: usize,
}

struct Turn {
    index: BackendIndex,
    weight: u64,
    credit: u64,
    /// Next slot of this backend's permutation to try.
    pos: u64,
    skip: u64,
}

impl MaglevTable {
    /// Build the table for `backends`, given as `(stable key, weight)`.
    ///
    /// The key is what identifies a backend across configuration changes
    /// (Sluice uses its address, `"10.0.0.1"`), never its position in
    /// the list.
    /// [`lookup`](Self::lookup) returns indices into `backends`.
    pub fn build<K: AsRef<[u8]>>(backends: &[(K, u32)], size: usize) -> Result<Self, MaglevError> {
        if size > MAX_TABLE_SIZE {
            return Err(MaglevError::TooLarge { size });
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime {
                size,
                next: next_prime(size),
            });
        }
        let key = |i: usize| backends[i].0.as_ref();
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        if let Some(w) = order.windows(2).find(|w| key(w[0]) == key(w[1])) {
            return Err(MaglevError::DuplicateKey {
                first: w[0].min(w[1]),
                second: w[0].max(w[1]),
            });
        }
        order.retain(|&i| backends[i].1 > 0);
        if order.len() > size {
            return Err(MaglevError::TooManyBackends {
                backends: order.len(),
                size,
            });
        }
        if order.is_empty() {
            return Ok(MaglevTable {
                slots: Box::default(),
                size,
                backends: backends.len(),
            });
        }

        let m = size as u64;
        let mut turns: Vec<Turn> = order
            .iter()
            .map(|&i| {
                let k = key(i);
                Turn {
                    index: i as BackendIndex,
                    weight: u64::from(backends[i].1),
                    credit: 0,
                    pos: siphash13(OFFSET_K0, OFFSET_K1, k) % m,
                    // In 1..M: coprime with the prime M, so the walk visits every slot.
                    skip: siphash13(SKIP_K0, SKIP_K1, k) % (m - 1) + 1,
                }
            })
            .collect();
        let max_weight = turns.iter().map(|t| t.weight).max().unwrap_or(1);

        let mut slots = vec![EMPTY_SLOT; size].into_boxed_slice();
        let mut filled = 0usize;
        'fill: loop {
            for t in turns.iter_mut() {
                t.credit += t.weight;
                if t.credit < max_weight {
                    continue;
                }
                t.credit -= max_weight;
                // Terminates: the table is not full and the walk covers all slots.
                while slots[t.pos as usize] != EMPTY_SLOT {
                    t.pos = (t.pos + t.skip) % m;
                }
                slots[t.pos as usize] = t.index;
                t.pos = (t.pos + t.skip) % m;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Ok(MaglevTable {
            slots,
            size,
            backends: backends.len(),
        })
    }

    /// The backend for a flow hash ([`super::flow::flow_hash`] or
    /// [`super::flow::src_hash`]); `None` when no backend is in the table.
    ///
    /// The slot is `⌊hash · M / 2^64⌋` (Lemire's multiply-shift range
    /// reduction) rather than `hash mod M`: uniform for a uniform hash, and a
    /// multiply instead of a 64-bit division. Part of the frozen behaviour.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<BackendIndex> {
        let i = ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize;
        self.slots.get(i).copied()
    }

    /// The prime number of slots `M` (also for an empty table).
    pub fn size(&self) -> usize {
        self.size
    }

    /// True when no backend has a positive weight.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Number of backends given to `build`, including those with weight 0.
    pub fn backend_count(&self) -> usize {
        self.backends
    }

    /// The slots, each a [`BackendIndex`]; empty for an empty table.
    pub fn slots(&self) -> &[BackendIndex] {
        &self.slots
    }

    /// How many slots each backend owns, indexed like the `build` input.
    pub fn slots_per_backend(&self) -> Vec<usize> {
        let mut n = vec![0usize; self.backends];
        for &s in self.slots.iter() {
            n[s as usize] += 1;
        }
        n
    }
}

/// Exact primality for any `usize` (deterministic Miller–Rabin with the first
/// twelve prime bases, which is correct for every n < 3.3·10^24).
pub fn is_prime(n: usize) -> bool {
    let n = n as u64;
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mul = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(n)) as u64;
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    };
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'witness: for a in BASES {
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// The smallest prime `≥ n`. Panics only if there is none below `usize::MAX`
/// (n above 2^64 − 59 on 64-bit targets).
pub fn next_prime(n: usize) -> usize {
    let mut c = n.max(2);
    while !is_prime(c) {
        c = c.checked_add(1).expect("no prime below usize::MAX");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l4::flow::{flow_hash, proto, FlowKey};
    use std::net::Ipv4Addr;

    fn names(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("backend-{i}"), 1)).collect()
    }

    /// Slot owners as keys, to compare tables built from differently ordered
    /// or different backend lists.
    fn owners<'a>(t: &MaglevTable, b: &'a [(String, u32)]) -> Vec<&'a str> {
        t.slots()
            .iter()
            .map(|&i| b[i as usize].0.as_str())
            .collect()
    }

    fn checksum(t: &MaglevTable) -> u64 {
        let bytes: Vec<u8> = t.slots().iter().flat_map(|s| s.to_le_bytes()).collect();
        siphash13(0, 0, &bytes)
    }

    #[test]
    fn primes() {
        let small: Vec<usize> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            small,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
        );
        assert!(is_prime(65_537));
        assert!(is_prime(MAX_TABLE_SIZE));
        assert!(!is_prime(65_536));
        assert!(!is_prime(3_215_031_751)); // strong pseudoprime to bases 2, 3, 5, 7
        assert!(!is_prime(4_294_967_297)); // 641 · 6700417
        assert!(is_prime(4_294_967_291));
        assert_eq!(next_prime(0), 2);
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(1_000_000), 1_000_003);
    }

    #[test]
    fn rejects_bad_configs() {
        let b = names(3);
        assert_eq!(
            MaglevTable::build(&b, 65_536),
            Err(MaglevError::NotPrime {
                size: 65_536,
                next: 65_537
            })
        );
        assert_eq!(
            MaglevTable::build(&b, 2),
            Err(MaglevError::TooManyBackends {
                backends: 3,
                size: 2
            })
        );
        assert!(matches!(
            MaglevTable::build(&b, MAX_TABLE_SIZE + 2),
            Err(MaglevError::TooLarge { .. })
        ));
        let dup = [("a", 1), ("b", 1), ("a", 0)];
        assert_eq!(
            MaglevTable::build(&dup, 13),
            Err(MaglevError::DuplicateKey {
                first: 0,
                second: 2
            })
        );
        let e = MaglevTable::build(&b, 10).unwrap_err().to_string();
        assert_eq!(
            e,
            "maglev table size 10 is not prime (the next prime is 11)"
        );
    }

    #[test]
    fn empty_cluster_has_no_backend() {
        let none: [(&str, u32); 0] = [];
        let t = MaglevTable::build(&none, DEFAULT_TABLE_SIZE).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.size(), DEFAULT_TABLE_SIZE);
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u64::MAX), None);
        // All drained is the same as empty.
        let drained = MaglevTable::build(&[("a", 0), ("b", 0)], 13).unwrap();
        assert!(drained.is_empty());
        assert_eq!(drained.lookup(12345), None);
        assert_eq!(drained.slots_per_backend(), [0, 0]);
    }

    #[test]
    fn single_backend_owns_every_slot() {
        let t = MaglevTable::build(&[("only", 5)], DEFAULT_TABLE_SIZE).unwrap();
        assert!(t.slots().iter().all(|&s| s == 0));
        assert_eq!(t.lookup(0), Some(0));
        assert_eq!(t.lookup(u64::MAX), Some(0));
    }

    #[test]
    fn lookup_covers_the_whole_table() {
        let b = names(3);
        let t = MaglevTable::build(&b, 13).unwrap();
        assert_eq!(t.lookup(0), Some(t.slots()[0]));
        assert_eq!(t.lookup(u64::MAX), Some(t.slots()[12]));
        // Slot i starts at ceil(i · 2^64 / 13).
        let start = |i: u64| ((u128::from(i) << 64).div_ceil(13)) as u64;
        for i in 1..13u64 {
            assert_eq!(t.lookup(start(i)), Some(t.slots()[i as usize]));
            assert_eq!(t.lookup(start(i) - 1), Some(t.slots()[i as usize - 1]));
        }
    }

    #[test]
    fn deterministic_and_golden() {
        let b = names(3);
        let small = MaglevTable::build(&b, 13).unwrap();
        assert_eq!(small, MaglevTable::build(&b, 13).unwrap());
        assert_eq!(small.slots(), GOLDEN_13);

        let b10 = names(10);
        let big = MaglevTable::build(&b10, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(big, MaglevTable::build(&b10, DEFAULT_TABLE_SIZE).unwrap());
        assert_eq!(
            checksum(&big),
            GOLDEN_65537_CHECKSUM,
            "{:#018x}",
            checksum(&big)
        );

        // End to end: a fixed flow lands on a fixed backend on every box.
        let key = FlowKey::v4(
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(192, 0, 2, 1),
            50_000,
            443,
            proto::TCP,
        );
        assert_eq!(big.lookup(flow_hash(&key, 0)), Some(GOLDEN_FLOW_BACKEND));
    }

    const GOLDEN_13: &[u32] = &[1, 1, 2, 0, 0, 1, 1, 0, 2, 2, 0, 0, 2];
    const GOLDEN_65537_CHECKSUM: u64 = 0x1c7e_41fe_2e36_3847;
    const GOLDEN_FLOW_BACKEND: u32 = 8;

    #[test]
    fn input_order_does_not_matter() {
        let b = names(10);
        let mut shuffled = b.clone();
        shuffled.reverse();
        shuffled.swap(2, 7);
        let t1 = MaglevTable::build(&b, DEFAULT_TABLE_SIZE).unwrap();
        let t2 = MaglevTable::build(&shuffled, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(owners(&t1, &b), owners(&t2, &shuffled));
    }

    #[test]
    fn slots_are_proportional_to_weight() {
        let cases: &[&[u32]] = &[
            &[1, 1, 1, 1],
            &[1, 2, 3],
            &[10, 20, 30, 40],
            &[100, 1, 50],
            &[7, 0, 7],
        ];
        for weights in cases {
            let b: Vec<(String, u32)> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (format!("10.0.0.{i}:80"), w))
                .collect();
            let t = MaglevTable::build(&b, DEFAULT_TABLE_SIZE).unwrap();
            let counts = t.slots_per_backend();
            let total: u32 = weights.iter().sum();
            for (i, (&w, &n)) in weights.iter().zip(&counts).enumerate() {
                let want = DEFAULT_TABLE_SIZE as f64 * f64::from(w) / f64::from(total);
                assert!(
                    (n as f64 - want).abs() <= want * 0.02,
                    "weights {weights:?}: backend {i} has {n} slots, want {want:.0} ± 2%"
                );
            }
        }
    }

    /// Maglev §3.4 / Figure 5: removing one of N backends moves that
    /// backend's slots and only a few others; adding it back restores the
    /// table exactly.
    #[test]
    fn removing_one_backend_moves_about_one_nth() {
        const N: usize = 10;
        let all = names(N);
        let before = MaglevTable::build(&all, DEFAULT_TABLE_SIZE).unwrap();
        let before_owners = owners(&before, &all);
        for removed in 0..N {
            let mut rest = all.clone();
            let gone = rest.remove(removed);
            let after = MaglevTable::build(&rest, DEFAULT_TABLE_SIZE).unwrap();
            let after_owners = owners(&after, &rest);

            let survivors = before_owners.iter().filter(|o| **o != gone.0).count();
            let moved_survivors = before_owners
                .iter()
                .zip(&after_owners)
                .filter(|(b, a)| **b != gone.0 && b != a)
                .count();
            let moved_total = before_owners
                .iter()
                .zip(&after_owners)
                .filter(|(b, a)| b != a)
                .count();
            assert!(!after_owners.contains(&gone.0.as_str()));
            // Total disruption within 1.3/N of the table, and flows of the
            // remaining backends mostly stay put.
            assert!(
                moved_total as f64 <= 1.3 * DEFAULT_TABLE_SIZE as f64 / N as f64,
                "removing {}: {moved_total} slots moved",
                gone.0
            );
            assert!(
                (moved_survivors as f64) < 0.3 / N as f64 * survivors as f64,
                "removing {}: {moved_survivors} of {survivors} surviving slots moved",
                gone.0
            );

            // Add it back (at the end of the list this time).
            rest.push(gone);
            let again = MaglevTable::build(&rest, DEFAULT_TABLE_SIZE).unwrap();
            assert_eq!(owners(&again, &rest), before_owners);
        }
    }

    #[test]
    fn large_weights_do_not_starve_the_fill() {
        let b = [("heavy", u32::MAX), ("light", u32::MAX / 2), ("tiny", 1)];
        let t = MaglevTable::build(&b, 1009).unwrap();
        let n = t.slots_per_backend();
        assert_eq!(n.iter().sum::<usize>(), 1009);
        assert!(
            (672..=673).contains(&n[0]) && (336..=337).contains(&n[1]),
            "{n:?}"
        );
    }
}
