//! The process's allocator: large blocks (16 KiB to 1 MiB) from pages of
//! a reserved region, whose memory goes back to the kernel when a block is
//! freed; everything else from the system allocator (glibc).
//!
//! Why: the L7 side allocates two socket buffers (16-64 KiB each, zeroed)
//! per connection. With glibc they come from the heap, where
//! - a buffer that reuses freed memory is cleared with `memset` by
//!   `calloc`, so every page of it becomes resident even if the
//!   connection only ever holds one small request: a proxy that has served
//!   connections before paid ~116 KiB per idle connection with 64 KiB
//!   buffers, against ~21 KiB in a fresh heap (docs/BENCHMARKS.md 4.3);
//! - the chunk headers glibc writes at both ends of a buffer make two pages
//!   resident per buffer where the data touches one;
//! - memory freed after a burst of connections stays with the process
//!   (glibc returns heap memory only from its top).
//!
//! Here a large block is a run of whole pages: fresh from the region, or
//! recycled after `madvise(MADV_DONTNEED)` gave its pages back. Either way
//! its pages read as zero and are not resident until touched, so a zeroed
//! allocation costs nothing up front and only the pages a connection
//! writes are ever resident.
//!
//! A freed block whose every page is resident (a connection that filled its
//! buffer) is kept as it is on its size's warm stack, up to [`WARM_CAP`]
//! bytes, and the next allocation of that size reuses it, cleared with a
//! `memset`: page faults cost more than clearing resident memory (on this
//! project's virtual machines about 3 µs a page), and a bulk transfer
//! touches every page. Any other freed block is not given back at once: it
//! waits on its size's pending
//! stack, and [`release_pending`] (called by the control loop every 10 ms,
//! off the worker cores) gives the pages back and moves the blocks to the
//! clean stack that allocations take from. A worker's free is a push under
//! a lock; the system call (one per block) and the TLB flush it implies
//! are paid by the control thread. If pending blocks pile up past
//! [`PENDING_CAP`] bytes (no control loop runs, as in tools and tests),
//! the freeing thread releases them itself.
//!
//! Blocks come in power-of-two sizes; each size has its own span of the
//! region (bump allocation, then the stacks of freed blocks, kept in a
//! mapping of their own so that a free block touches none of its pages).
//! Rounding a 40 KiB request up to 64 KiB costs address space only. When
//! the region cannot be reserved (an address-space limit) or a span is
//! exhausted, allocations fall back to the system allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;
use std::sync::Mutex;

const PAGE: usize = 4096;
/// Smallest and largest block: 16 KiB and 1 MiB.
const MIN_SHIFT: u32 = 14;
const MAX_SHIFT: u32 = 20;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Address space per block size: 8 GiB (half a million 16 KiB blocks).
const SPAN: usize = 8 << 30;
const REGION: usize = SPAN * CLASSES;

/// Entries of each class's free stack, and where its stack starts in the
/// stack mapping (u32 block indices).
const fn stack_len(class: usize) -> usize {
    SPAN >> (MIN_SHIFT as usize + class)
}
const fn stack_offset(class: usize) -> usize {
    let mut off = 0;
    let mut c = 0;
    while c < class {
        off += stack_len(c);
        c += 1;
    }
    off
}
/// The stacks of freed blocks each class keeps.
#[derive(Clone, Copy)]
enum Stack {
    /// Pages given back: the block reads as zero and costs nothing.
    Clean = 0,
    /// Freed, pages not given back yet.
    Pending = 1,
    /// Freed with every page resident, kept as it is: reused with a
    /// `memset` (no page faults), up to [`WARM_CAP`] bytes per size.
    Warm = 2,
}
const STACKS_BYTES: usize = stack_offset(CLASSES) * 4 * 3;

/// Bytes of fully resident freed blocks per size kept for reuse.
pub const WARM_CAP: usize = 8 << 20;

/// Bytes of freed blocks per size that may wait for [`release_pending`]
/// before the freeing thread releases them itself.
pub const PENDING_CAP: usize = 64 << 20;

/// Region state: 0 not reserved yet, 1 unavailable, else the base address.
static BASE: AtomicUsize = AtomicUsize::new(0);
static STACKS: AtomicUsize = AtomicUsize::new(0);

struct Class {
    /// Blocks handed out from the bump so far.
    bumped: usize,
    /// Entries on the clean stack (pages given back: they read as zero).
    free: usize,
    /// Entries on the pending stack (freed, pages not given back yet).
    pending: usize,
    /// Entries on the warm stack.
    warm: usize,
    /// Blocks in use (for [`usage`]).
    live: usize,
}

static STATE: [Mutex<Class>; CLASSES] = [const {
    Mutex::new(Class {
        bumped: 0,
        free: 0,
        pending: 0,
        warm: 0,
        live: 0,
    })
}; CLASSES];

/// The allocator (registered in `lib.rs`).
pub struct Pages;

fn lock(class: usize) -> std::sync::MutexGuard<'static, Class> {
    STATE[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// Reserve address space without committing memory: pages cost nothing
/// until touched. Returns None if the kernel refuses.
fn reserve(len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choice: it overlaps nothing of the program's. MAP_NORESERVE: no swap
    // is reserved for address space that is never touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// The region's base, reserving it on first use; None if unavailable.
fn base() -> Option<usize> {
    match BASE.load(Ordering::Acquire) {
        0 => {}
        1 => return None,
        b => return Some(b),
    }
    let (Some(region), Some(stacks)) = (reserve(REGION), reserve(STACKS_BYTES)) else {
        // Unavailable, unless another thread's reservation got there.
        return match BASE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) | Err(1) => None,
            Err(won) => Some(won),
        };
    };
    // The stacks are published before the base: whoever sees the base sees
    // them.
    match STACKS.compare_exchange(0, stacks, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        // SAFETY: `stacks` is this call's own mapping, not published.
        Err(_) => unsafe {
            libc::munmap(stacks as *mut libc::c_void, STACKS_BYTES);
        },
    }
    match BASE.compare_exchange(0, region, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(region),
        Err(won) => {
            // SAFETY: `region` is this call's own mapping, not published;
            // another thread's reservation won.
            unsafe { libc::munmap(region as *mut libc::c_void, REGION) };
            (won != 1).then_some(won)
        }
    }
}

/// The class of a request, if it is served by blocks.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if !(1 << MIN_SHIFT..=1 << MAX_SHIFT).contains(&size) || layout.align() > PAGE {
        return None;
    }
    let shift = usize::BITS - (size - 1).leading_zeros();
    Some((shift.max(MIN_SHIFT) - MIN_SHIFT) as usize)
}

/// The class and block index of an address in the region, if it is one.
#[inline]
fn block_of(p: *mut u8) -> Option<(usize, usize)> {
    let b = BASE.load(Ordering::Acquire);
    let a = p as usize;
    if b <= 1 || a < b || a >= b + REGION {
        return None;
    }
    let class = (a - b) / SPAN;
    Some((
        class,
        (a - b - class * SPAN) >> (MIN_SHIFT as usize + class),
    ))
}

#[inline]
fn block_addr(base: usize, class: usize, index: usize) -> usize {
    base + class * SPAN + (index << (MIN_SHIFT as usize + class))
}

/// A block of `class`: a warm one (resident, holding old bytes: the bool
/// is true) or a clean or fresh one (reads as zero, not resident); never a
/// pending one. None when the region is unavailable or the class's span
/// is used up.
fn take(class: usize) -> Option<(*mut u8, bool)> {
    let base = base()?;
    let mut st = lock(class);
    let (index, warm) = if st.warm > 0 {
        st.warm -= 1;
        // SAFETY: entries [0, warm) of this class's warm stack were
        // written by `give` under this lock; the slot lies inside the
        // stack mapping (warm <= stack_len).
        (
            unsafe { stack_slot(class, Stack::Warm, st.warm).read() as usize },
            true,
        )
    } else if st.free > 0 {
        st.free -= 1;
        // SAFETY: as above, for the clean stack (written by
        // `release_class`).
        (
            unsafe { stack_slot(class, Stack::Clean, st.free).read() as usize },
            false,
        )
    } else if st.bumped < stack_len(class) {
        st.bumped += 1;
        (st.bumped - 1, false)
    } else {
        return None;
    };
    st.live += 1;
    Some((block_addr(base, class, index) as *mut u8, warm))
}

#[inline]
fn stack_slot(class: usize, stack: Stack, i: usize) -> *mut u32 {
    let stacks = STACKS.load(Ordering::Acquire) as *mut u32;
    stacks.wrapping_add(stack as usize * stack_offset(CLASSES) + stack_offset(class) + i)
}

/// Every page of the block is resident (mincore).
fn fully_resident(addr: usize, size: usize) -> bool {
    let mut vec = [0u8; (1 << MAX_SHIFT) / PAGE];
    let pages = size / PAGE;
    // SAFETY: [addr, addr + size) is a block of the region (mapped) and
    // page-aligned; `vec` has room for one byte per page of it, and
    // mincore writes nothing else.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, size, vec.as_mut_ptr()) };
    rc == 0 && vec[..pages].iter().all(|&b| b & 1 != 0)
}

/// A freed block goes on its class's warm stack if every page of it is
/// resident and the warm stack has room, else on the pending stack; past
/// the cap, the freeing thread gives the pending blocks back itself.
fn give(class: usize, index: usize) {
    let shift = MIN_SHIFT as usize + class;
    let warm_room = lock(class).warm << shift < WARM_CAP;
    let warm = warm_room
        && base().is_some_and(|b| fully_resident(block_addr(b, class, index), 1 << shift));
    let over = {
        let mut st = lock(class);
        st.live -= 1;
        if warm {
            // SAFETY: at most `bumped` <= stack_len blocks exist, each on
            // at most one stack, so `warm` < stack_len: the slot lies
            // inside this class's warm stack in the stack mapping.
            unsafe { stack_slot(class, Stack::Warm, st.warm).write(index as u32) };
            st.warm += 1;
            false
        } else {
            // SAFETY: as above, for the pending stack.
            unsafe { stack_slot(class, Stack::Pending, st.pending).write(index as u32) };
            st.pending += 1;
            st.pending << shift > PENDING_CAP
        }
    };
    if over {
        release_class(class);
    }
}

/// Give back the pages of every pending block (the control loop calls this
/// every few milliseconds); returns the number of blocks released.
pub fn release_pending() -> usize {
    if BASE.load(Ordering::Acquire) <= 1 {
        return 0;
    }
    (0..CLASSES).map(release_class).sum()
}

fn release_class(class: usize) -> usize {
    let Some(base) = base() else { return 0 };
    let size = 1usize << (MIN_SHIFT as usize + class);
    let mut total = 0;
    loop {
        let mut batch = [0u32; 64];
        let n = {
            let mut st = lock(class);
            let n = st.pending.min(batch.len());
            for (k, b) in batch[..n].iter_mut().enumerate() {
                // SAFETY: entries [0, pending) of the pending stack were
                // written by `give` under this lock.
                *b = unsafe { stack_slot(class, Stack::Pending, st.pending - 1 - k).read() };
            }
            st.pending -= n;
            n
        };
        if n == 0 {
            return total;
        }
        for &index in &batch[..n] {
            let addr = block_addr(base, class, index as usize) as *mut u8;
            // SAFETY: the block lies in the region and was freed by its
            // owner; taken off the pending stack it is on no stack, so no
            // one can be handed it while its pages go. MADV_DONTNEED on
            // private anonymous memory drops the pages: they read as zero
            // when next touched. Should the kernel refuse (locked
            // memory), the block is cleared by hand instead: a clean
            // block must read as zero.
            unsafe {
                if libc::madvise(addr.cast(), size, libc::MADV_DONTNEED) != 0 {
                    core::ptr::write_bytes(addr, 0, size);
                }
            }
        }
        let mut st = lock(class);
        for &index in &batch[..n] {
            // SAFETY: as in `give`: `free` < stack_len, inside the clean
            // stack.
            unsafe { stack_slot(class, Stack::Clean, st.free).write(index) };
            st.free += 1;
        }
        total += n;
    }
}

// SAFETY: blocks are page-aligned (so any alignment up to PAGE holds),
// at least as large as asked, never handed out twice before being freed
// (a block is on the bump side, live, pending, being released or clean,
// moved between them under the class lock, and only bump, clean and warm
// blocks are handed out) and, for alloc_zeroed, read as zero when handed
// out (fresh pages, pages dropped by MADV_DONTNEED before the block became
// clean, or a warm block cleared with write_bytes). Everything else goes to the
// system allocator, and an address is ours exactly when it lies in the
// region.
unsafe impl GlobalAlloc for Pages {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some((p, _)) = class_of(layout).and_then(take) {
            return p;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some((p, warm)) = class_of(layout).and_then(take) {
            if warm {
                // SAFETY: the block is live, ours, and at least
                // layout.size() bytes long.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match block_of(ptr) {
            Some((class, index)) => give(class, index),
            // SAFETY: not ours, so the system allocator's.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = block_of(ptr);
        // SAFETY: the caller guarantees a valid layout for new_size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new_class = class_of(new_layout);
        match old {
            // Same block size: nothing moves.
            Some((class, _)) if new_class == Some(class) => ptr,
            // SAFETY: forwarded: neither the old nor the new size is ours.
            None if new_class.is_none() => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `new_layout` is valid (the caller's guarantee);
                // both blocks are live and distinct, each at least
                // min(old, new) bytes long; the old one is then freed
                // with its own layout, as the caller gave it.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

/// Bytes of large blocks by state (block sizes, not what was asked), for
/// the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// In use.
    pub live: usize,
    /// Freed, kept resident for reuse.
    pub warm: usize,
    /// Freed, pages not yet given back.
    pub pending: usize,
}

pub fn usage() -> Usage {
    (0..CLASSES).fold(Usage::default(), |u, c| {
        let st = lock(c);
        let shift = MIN_SHIFT as usize + c;
        Usage {
            live: u.live + (st.live << shift),
            warm: u.warm + (st.warm << shift),
            pending: u.pending + (st.pending << shift),
        }
    })
}

/// Give the whole pages inside `buf` back to the kernel: they read as zero
/// (private anonymous memory, as heap and region memory are) or as their
/// backing file's contents afterwards, and cost no memory until written
/// again. For a buffer whose contents are dead (an empty ring) that an idle
/// connection keeps.
pub fn discard_pages(buf: &mut [u8]) {
    let start = (buf.as_mut_ptr() as usize).next_multiple_of(PAGE);
    let end = (buf.as_mut_ptr() as usize + buf.len()) / PAGE * PAGE;
    if start >= end {
        return;
    }
    // SAFETY: [start, end) is page-aligned and lies inside `buf`, which is
    // borrowed mutably, so no one else reads or writes it; dropping its
    // pages only changes bytes the borrow allows changing, to values valid
    // for u8.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// Pages of `buf` resident in memory (mincore), for tests and checks.
pub fn resident_pages(buf: &[u8]) -> usize {
    let start = buf.as_ptr() as usize / PAGE * PAGE;
    let end = (buf.as_ptr() as usize + buf.len()).next_multiple_of(PAGE);
    let n = (end - start) / PAGE;
    let mut vec = vec![0u8; n];
    // SAFETY: `vec` has one byte per page of [start, end), which spans
    // mapped memory (it covers `buf`); mincore only writes into `vec`.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        let l = |n| Layout::from_size_align(n, 1).unwrap();
        assert_eq!(class_of(l(16383)), None);
        assert_eq!(class_of(l(16384)), Some(0));
        assert_eq!(class_of(l(16385)), Some(1));
        assert_eq!(class_of(l(65536)), Some(2));
        assert_eq!(class_of(l(1 << 20)), Some(CLASSES - 1));
        assert_eq!(class_of(l((1 << 20) + 1)), None);
        assert_eq!(
            class_of(Layout::from_size_align(65536, 8192).unwrap()),
            None
        );
        assert_eq!(stack_offset(1), stack_len(0));
    }

    /// Allocate 1 MiB blocks (a size the other tests running alongside do
    /// not take) until one is the block at `p`; None after a handful.
    fn find_again(p: usize) -> Option<Vec<u8>> {
        let mut held = Vec::new();
        for _ in 0..64 {
            let w = vec![0u8; 1 << 20];
            if w.as_ptr() as usize == p {
                return Some(w);
            }
            held.push(w);
        }
        None
    }

    /// The test binary runs on this allocator too (through the counting
    /// one of l7::session::tests), so a large buffer here is a block.
    #[test]
    fn a_freed_block_leaves_memory_and_comes_back_zeroed() {
        const N: usize = 1 << 20;
        let mut v = vec![0u8; N];
        assert!(
            block_of(v.as_mut_ptr()).is_some(),
            "1 MiB comes from the region"
        );
        assert_eq!(v.as_ptr() as usize % PAGE, 0);
        assert_eq!(resident_pages(&v), 0, "a zeroed block is not resident");
        v[0] = 1;
        v[40000] = 2;
        assert_eq!(resident_pages(&v), 2);
        let p = v.as_ptr() as usize;
        drop(v);
        // Partly resident: pending until released (by the control loop in
        // a running Sluice), then clean.
        assert!(release_pending() >= 1);
        let w = find_again(p).expect("the freed block is reused");
        assert_eq!(resident_pages(&w), 0, "its pages went back");
        assert!(w.iter().all(|&b| b == 0), "blocks come back zeroed");
    }

    #[test]
    fn a_fully_written_block_is_kept_warm_and_cleared_on_reuse() {
        const N: usize = 1 << 20;
        let mut v = vec![0u8; N];
        v.fill(0xa5);
        assert_eq!(resident_pages(&v), N / PAGE);
        let p = v.as_ptr() as usize;
        drop(v);
        let w = find_again(p).expect("the freed block is reused");
        assert_eq!(resident_pages(&w), N / PAGE, "kept resident");
        assert!(w.iter().all(|&b| b == 0), "and cleared");
    }

    #[test]
    fn realloc_moves_across_sizes_and_keeps_contents() {
        let mut v: Vec<u8> = Vec::with_capacity(100);
        v.extend((0..100u32).map(|i| i as u8));
        v.reserve(20_000); // system -> block
        assert!(block_of(v.as_mut_ptr()).is_some());
        v.extend((0..30_000u32).map(|i| (i % 251) as u8));
        let p = v.as_ptr();
        v.reserve_exact(32_768 - v.len()); // same 32 KiB block
        assert_eq!(v.as_ptr(), p);
        v.reserve(3 << 20); // block -> system
        assert!(block_of(v.as_mut_ptr()).is_none());
        assert!(v[..100].iter().enumerate().all(|(i, &b)| b == i as u8));
        assert!(v[100..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
        v.truncate(20_000);
        v.shrink_to_fit(); // system -> block
        assert!(block_of(v.as_mut_ptr()).is_some());
        assert_eq!(v[99], 99);
    }

    #[test]
    fn discarded_pages_read_zero_and_are_not_resident() {
        let mut v = vec![7u8; 16 << 10];
        discard_pages(&mut v);
        assert_eq!(resident_pages(&v), 0);
        assert!(v.iter().all(|&b| b == 0));
        // A small buffer holds no whole page: nothing changes.
        let mut s = vec![7u8; 100];
        discard_pages(&mut s);
        assert!(s.iter().all(|&b| b == 7));
    }
}
