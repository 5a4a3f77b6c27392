//! Raw-memory hints for the large per-worker tables (the connection table):
//! prefetching and transparent huge pages.
//!
//! Neither is a DPDK call, but both need `unsafe` (a prefetch instruction
//! takes a raw pointer; `madvise` is a system call on an address range), and
//! this module is where the package keeps its unsafe code. Both are hints:
//! getting them wrong costs speed, never correctness.

use core::mem::{size_of, MaybeUninit};

/// Size of a transparent huge page on the platforms Sluice runs on.
const HUGE_PAGE: usize = 2 << 20;

/// Ask the CPU to bring every cache line of `*r` into all cache levels,
/// without waiting for it (unlike a load, a prefetch retires at once, so a
/// burst's worth of misses overlap instead of filling the reorder buffer).
///
/// One prefetch per line the object touches, from the line of its first
/// byte to the line of its last: an 8-byte index bucket is one line, a
/// 96-byte connection two.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    let p = (r as *const T).cast::<u8>();
    let size = size_of::<T>().max(1);
    // A reference is aligned, so the object starts at most 64 - align
    // bytes into its first line: when that cannot change how many lines
    // it touches (a bucket: one; a connection: two), the count is a
    // constant and p, p + 64, ... fall in exactly those lines.
    let align = core::mem::align_of::<T>().min(64);
    let fewest = (size - 1) / 64 + 1;
    let most = (64 - align + size - 1) / 64 + 1;
    let lines = if fewest == most {
        fewest
    } else {
        ((p as usize + size - 1) / 64) - (p as usize / 64) + 1
    };
    // p + 64 i lies in the i-th line after p's: these are exactly the
    // lines from the first byte's to the last byte's.
    let mut i = 0;
    while i < lines {
        prefetch_line(p.wrapping_add(i * 64));
        i += 1;
    }
}

#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address,
    // and changes no state the program can observe. The addresses here lie
    // within (or one line past the start of) a live reference anyway.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A boxed slice of `n` copies of `v`, its memory advised for transparent
/// huge pages (`madvise(MADV_HUGEPAGE)`) before the first write, so that the
/// fill below faults it in as 2 MiB pages where the kernel allows
/// (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or
/// `always`). A table of a million flows spans 128 MiB: with 4 KiB pages
/// every lookup misses the TLB as well as the cache. Works without reserved
/// hugepages (and so under `--no-huge`); returns whether the advice was
/// taken, for the log.
pub fn huge_slice<T: Copy>(n: usize, v: T) -> (Box<[T]>, bool) {
    let mut vec: Vec<T> = Vec::with_capacity(n);
    let advised = advise_huge(vec.spare_capacity_mut());
    vec.resize(n, v);
    (vec.into_boxed_slice(), advised)
}

/// `madvise(MADV_HUGEPAGE)` over the whole huge pages inside `s`; false if
/// `s` holds none or the kernel refuses.
fn advise_huge<T>(s: &mut [MaybeUninit<T>]) -> bool {
    let start = s.as_mut_ptr() as usize;
    let end = start + core::mem::size_of_val(s);
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = end / HUGE_PAGE * HUGE_PAGE;
    if first >= last {
        return false;
    }
    // SAFETY: [first, last) lies inside the allocation `s` borrows mutably
    // (so no one else uses it) and is page-aligned; MADV_HUGEPAGE changes
    // how the kernel backs those pages, not their contents, and the memory
    // is not yet initialised anyway.
    let rc = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_HUGEPAGE,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_slice_is_filled() {
        for n in [0, 1, 1000, (4 << 20) / 8 + 3] {
            let (s, _) = huge_slice(n, 0x5a5a_u64);
            assert_eq!(s.len(), n);
            assert!(s.iter().all(|&x| x == 0x5a5a));
        }
    }

    #[test]
    fn large_slice_is_advised() {
        // 8 MiB holds at least three whole huge pages; the kernel accepts
        // the advice whenever THP is compiled in, even if set to `never`.
        let (_, advised) = huge_slice(1 << 20, 0u64);
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
        assert_eq!(advised, thp.exists());
    }

    #[test]
    fn prefetch_of_odd_sizes() {
        let v = [7u8; 200];
        prefetch(&v);
        prefetch(&v[199]);
        prefetch(&());
        assert_eq!(v[0], 7);
    }
}
