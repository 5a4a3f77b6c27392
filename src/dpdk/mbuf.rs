//! Mempools, owned mbufs, and rx/tx burst buffers.

use std::ffi::CString;
use std::ptr::NonNull;

use super::eal::{errno_str, rte_errno};
use super::sys;

/// Largest burst Sluice moves in one call (the configured burst is <= this).
pub const MAX_BURST: usize = 256;

/// A packet-buffer pool (`rte_pktmbuf_pool_create`). Pools live until the
/// process exits: DPDK has no safe way to know that every mbuf of a pool has
/// come back, and ports keep references to their rx pools.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: rte_mempool is designed for concurrent use from many lcores; the
// per-lcore cache is selected by the calling thread's lcore id.
unsafe impl Send for Mempool {}
// SAFETY: as above, all mempool operations are thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Create a pool of `n` mbufs with the default data room (2048 bytes +
    /// headroom) and a per-lcore cache of `cache` on NUMA `socket`.
    ///
    /// `packed` lays the mbufs back to back, across page boundaries, as
    /// `net_af_xdp` needs: it registers `n` mbufs' worth of memory from the
    /// pool's start with the kernel (its UMEM), and DPDK otherwise keeps
    /// each mbuf within one page (one per 4 KiB page without hugepages, so
    /// that 40 % of the pool lies past the UMEM; the kernel drops what it is
    /// given there, fill-ring buffers and packets to send alike, and the
    /// mbufs are never returned). Only for pools no device reaches by DMA:
    /// a packed pool's mbufs have no IO address (`buf_iova`).
    pub fn new(
        name: &str,
        n: u32,
        cache: u32,
        socket: i32,
        packed: bool,
    ) -> Result<Mempool, String> {
        let cname = CString::new(name).map_err(|_| format!("mempool name {name:?} has a NUL"))?;
        // SAFETY: cname is a valid C string for the duration of the call; the
        // EAL is initialised (Mempool is only created after Eal::init).
        let raw = unsafe {
            sys::sluice_pktmbuf_pool_create(cname.as_ptr(), n, cache, socket, packed.into())
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| format!("mempool {name} ({n} mbufs): {}", errno_str(rte_errno())))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// Allocate one mbuf (data_len 0, default headroom), or None if empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of the process.
        let m = unsafe { sys::sluice_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(|raw| Mbuf { raw })
    }

    /// How many mbufs lie outside the memory `net_af_xdp` registers with
    /// the kernel for this pool (its UMEM: `n` mbufs' worth from the pool's
    /// first page). Any such mbuf is lost the first time it is given to the
    /// kernel; a [packed](Mempool::new) pool has none.
    pub fn outside_af_xdp_umem(&self) -> u32 {
        // SAFETY: the pool pointer is valid; the call only reads the pool's
        // memory list and object headers.
        unsafe { sys::sluice_mempool_outside_umem(self.raw.as_ptr()) as u32 }
    }

    /// Mbufs currently available (approximate under concurrency).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool pointer is valid; the call only reads counters.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }
}

/// One single-segment packet buffer, owned: dropping it returns it to its
/// pool. Sluice does not enable scattered rx, so every mbuf it receives is a
/// single segment (multi-segment ones are dropped by the worker and counted).
///
/// Invariant: the first segment's buffer is **exclusively** this value's: a
/// direct mbuf with reference count 1. That is what makes [`Mbuf::data_mut`]
/// and [`Mbuf::buffer_mut`] (headroom and tailroom included) sound: a clone
/// (`rte_pktmbuf_clone`, reference count > 1), an indirect mbuf or one with an
/// external buffer (mlx5 multi-packet rx stores several packets in one
/// buffer) shares its bytes with other packets, and writing into it would
/// corrupt them. Every way to obtain an `Mbuf` keeps the invariant: a fresh
/// allocation is exclusive, and the rx side ([`RxBurst::take`],
/// [`RxBurst::rx`]) checks every received mbuf and copies a shared one into a
/// fresh direct mbuf from the same pool before handing it out (a packet
/// whose copy finds the pool empty is freed and reported by
/// [`RxBurst::take_lost`]). No method here clones or attaches buffers.
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it to another
// lcore is how DPDK rings hand packets over.
unsafe impl Send for Mbuf {}

/// `RTE_MBUF_DIRECT(m) && rte_mbuf_refcnt_read(m) == 1`, read in Rust so
/// that the per-packet check on the rx path costs two loads, not a call
/// into the C shim.
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
unsafe fn exclusive(m: *mut sys::rte_mbuf) -> bool {
    // SAFETY: m is valid (caller's contract); ol_flags is only written by
    // the mbuf's owner, which is the caller.
    let flags = unsafe { (*m).ol_flags };
    // SAFETY: refcnt is a naturally aligned u16 inside a valid mbuf; DPDK
    // updates it atomically when the buffer is shared, so read it the same way.
    let refcnt = unsafe { std::sync::atomic::AtomicU16::from_ptr(&raw mut (*m).refcnt) };
    flags & (sys::RTE_MBUF_F_INDIRECT | sys::RTE_MBUF_F_EXTERNAL) == 0
        && refcnt.load(std::sync::atomic::Ordering::Relaxed) == 1
}

/// `rte_pktmbuf_mtod` and `data_len`, read in Rust (the accessors below run
/// for every packet; a call into the C shim for each costs more than the
/// loads).
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
unsafe fn mtod(m: *mut sys::rte_mbuf) -> (*mut u8, usize) {
    // SAFETY: m is valid (caller's contract); data_off is within buf_len.
    unsafe {
        let base = (*m).buf_addr as *mut u8;
        (base.add((*m).data_off as usize), (*m).data_len as usize)
    }
}

impl Mbuf {
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns or will free, and
    /// exclusive (see the type's invariant): use [`Mbuf::own`] for mbufs
    /// that come from outside (rx).
    unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Mbuf {
        Mbuf {
            raw: NonNull::new_unchecked(raw),
        }
    }

    /// Take ownership of a received mbuf, copying it first if its buffer is
    /// shared (see the type's invariant). None if the copy found the pool
    /// empty; `raw` is then freed.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns or will free.
    #[inline]
    unsafe fn own(raw: *mut sys::rte_mbuf) -> Option<Mbuf> {
        // SAFETY: raw is a valid mbuf (caller's contract).
        if unsafe { exclusive(raw) } {
            // SAFETY: owned (caller's contract) and exclusive (just checked).
            return Some(unsafe { Mbuf::from_raw(raw) });
        }
        // SAFETY: raw is ours to release; on success the shim frees it and
        // returns a fresh direct mbuf (refcnt 1, exclusive by construction).
        let copy = unsafe { sys::sluice_pktmbuf_unshare(raw) };
        if copy.is_null() {
            // SAFETY: the copy failed and left raw untouched: still ours.
            unsafe { sys::sluice_pktmbuf_free(raw) };
            return None;
        }
        // SAFETY: as above, the copy is owned and exclusive.
        Some(unsafe { Mbuf::from_raw(copy) })
    }

    /// Whether the buffer is this value's alone (always true: the type's
    /// invariant; exposed for tests and debug assertions).
    #[inline]
    pub fn is_exclusive(&self) -> bool {
        // SAFETY: an mbuf we own is valid.
        unsafe { exclusive(self.raw.as_ptr()) }
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The packet bytes of the first (only) segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the mbuf is valid and ours; mtod points at data_len
        // initialised bytes inside its buffer; the slice borrows self.
        unsafe {
            let (p, n) = mtod(self.raw.as_ptr());
            std::slice::from_raw_parts(p, n)
        }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        debug_assert!(self.is_exclusive());
        // SAFETY: as in `data`; &mut self guarantees exclusive access to this
        // value, and the type's invariant that no other mbuf shares the
        // buffer.
        unsafe {
            let (p, n) = mtod(self.raw.as_ptr());
            std::slice::from_raw_parts_mut(p, n)
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { (*self.raw.as_ptr()).data_len as usize }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn segments(&self) -> u16 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { (*self.raw.as_ptr()).nb_segs }
    }

    /// RSS hash the NIC computed (0 when the device gives none).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::sluice_pktmbuf_rss_hash(self.raw.as_ptr()) }
    }

    /// Set the packet length (truncate, or extend into the tailroom; extended
    /// bytes are whatever the buffer held). Returns false if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > u16::MAX as usize {
            return false;
        }
        // SAFETY: the shim checks the length against the buffer and segment
        // count before writing; the mbuf is ours.
        unsafe { sys::sluice_pktmbuf_set_len(self.raw.as_ptr(), len as u16) == 0 }
    }

    /// Make room for `n` bytes in front of the data (encapsulation). Returns
    /// false if the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > i16::MAX as usize {
            return false;
        }
        // SAFETY: rte_pktmbuf_prepend checks headroom itself.
        unsafe { sys::sluice_pktmbuf_adj_front(self.raw.as_ptr(), -(n as i32)) == 0 }
    }

    /// Remove `n` bytes from the front (decapsulation).
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > i16::MAX as usize {
            return false;
        }
        // SAFETY: rte_pktmbuf_adj checks the length itself.
        unsafe { sys::sluice_pktmbuf_adj_front(self.raw.as_ptr(), n as i32) == 0 }
    }

    /// The whole buffer (headroom, packet, tailroom) and where the packet
    /// sits in it: `(buffer, data offset, data length)`. Lets the packet
    /// code grow a header in front (encapsulation) or a reply at the end
    /// without another call; commit with [`Mbuf::set_window`].
    ///
    /// The caller always gets the whole buffer, which is private to this
    /// mbuf: a received mbuf whose buffer was shared (a clone, an indirect
    /// or external-buffer mbuf) was already copied into a fresh direct mbuf
    /// with the pool's default headroom when it was taken from the rx burst
    /// (see the type's invariant), so no check or fallback is needed here.
    #[inline]
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize, usize) {
        debug_assert!(self.is_exclusive());
        let m = self.raw.as_ptr();
        // SAFETY: m is a valid mbuf we own (fields read in place, no call
        // into the C shim); buf_addr points at buf_len bytes of its buffer;
        // the type's invariant (direct, refcnt 1) makes the buffer this
        // mbuf's alone, so headroom and tailroom hold no other packet, and
        // &mut self makes the slice exclusive for its lifetime.
        unsafe {
            let (p, buf_len) = ((*m).buf_addr as *mut u8, (*m).buf_len as usize);
            (
                std::slice::from_raw_parts_mut(p, buf_len),
                (*m).data_off as usize,
                (*m).data_len as usize,
            )
        }
    }

    /// Make `buffer[off..off + len]` the packet. False if it does not fit.
    #[inline]
    pub fn set_window(&mut self, off: usize, len: usize) -> bool {
        let m = self.raw.as_ptr();
        // SAFETY: m is a valid mbuf we own; the window is checked against
        // its buffer (so both fit in u16) before the fields are written.
        unsafe {
            if (*m).nb_segs != 1 || off.saturating_add(len) > (*m).buf_len as usize {
                return false;
            }
            (*m).data_off = off as u16;
            (*m).data_len = len as u16;
            (*m).pkt_len = len as u32;
        }
        true
    }

    /// Copy `bytes` into a fresh mbuf from `pool`.
    pub fn from_bytes(pool: &Mempool, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = pool.alloc()?;
        if !m.set_len(bytes.len()) {
            return None;
        }
        m.data_mut().copy_from_slice(bytes);
        Some(m)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and it is freed exactly once, here.
        unsafe { sys::sluice_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Receive side of one (port, queue): a fixed array filled by rx_burst.
pub struct RxBurst {
    pkts: [*mut sys::rte_mbuf; MAX_BURST],
    /// Packets of the last `recv` (taken ones are null).
    n: usize,
    /// Shared mbufs that could not be copied (pool empty), since the last
    /// [`RxBurst::take_lost`].
    lost: u64,
}

// SAFETY: the array only ever holds mbufs between rx() and the end of the
// same drain, both on the owning worker thread.
unsafe impl Send for RxBurst {}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            pkts: [std::ptr::null_mut(); MAX_BURST],
            n: 0,
            lost: 0,
        }
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.release();
    }
}

impl RxBurst {
    /// Free packets of the previous `recv` that were not taken.
    fn release(&mut self) {
        for p in &mut self.pkts[..self.n] {
            if !p.is_null() {
                // SAFETY: a non-null entry below n is an mbuf we own and
                // have not handed out.
                unsafe { sys::sluice_pktmbuf_free(*p) };
                *p = std::ptr::null_mut();
            }
        }
        self.n = 0;
    }

    /// Receive up to `max` packets and keep them here, to be looked at with
    /// [`RxBurst::peek`] (e.g. to prefetch per-flow state for the whole
    /// burst) and then taken one by one with [`RxBurst::take`]. Packets not
    /// taken are freed by the next `recv` or on drop.
    #[inline]
    pub fn recv(&mut self, port: u16, queue: u16, max: usize) -> usize {
        self.release();
        let max = max.min(MAX_BURST) as u16;
        // SAFETY: as in `rx`.
        self.n = unsafe { sys::sluice_rx_burst(port, queue, self.pkts.as_mut_ptr(), max) } as usize;
        self.n
    }

    /// The bytes of packet `i` of the last `recv` (empty once taken).
    #[inline]
    pub fn peek(&self, i: usize) -> &[u8] {
        match self.pkts[..self.n].get(i) {
            Some(&p) if !p.is_null() => {
                // SAFETY: p is an mbuf we own until taken; the slice borrows
                // self, so it cannot outlive a `take` or `recv`.
                unsafe {
                    let (d, len) = mtod(p);
                    std::slice::from_raw_parts(d, len)
                }
            }
            _ => &[],
        }
    }

    /// Take ownership of packet `i` of the last `recv`; None if out of
    /// range or already taken, or if it was received in a shared buffer and
    /// could not be copied (the pool is empty: it is freed and counted in
    /// [`RxBurst::take_lost`]).
    #[inline]
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        let slot = self.pkts[..self.n].get_mut(i)?;
        let p = std::mem::replace(slot, std::ptr::null_mut());
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null entries are owned mbufs, each handed out once
        // (the slot is nulled above).
        let m = unsafe { Mbuf::own(p) };
        self.lost += m.is_none() as u64;
        m
    }

    /// Packets received in a shared buffer that were dropped because no
    /// mbuf was left to copy them into, since the last call.
    #[inline]
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Receive up to `max` packets and hand each to `f` as an owned [`Mbuf`].
    /// Returns the number received.
    #[inline]
    pub fn rx<F: FnMut(Mbuf)>(&mut self, port: u16, queue: u16, max: usize, mut f: F) -> usize {
        self.release();
        let max = max.min(MAX_BURST) as u16;
        // SAFETY: pkts has room for MAX_BURST pointers and max <= MAX_BURST; the
        // port and queue were configured and started by `port::Port`.
        let n = unsafe { sys::sluice_rx_burst(port, queue, self.pkts.as_mut_ptr(), max) } as usize;
        for i in 0..n {
            // SAFETY: rx_burst wrote n valid mbufs that we now own; each is
            // wrapped once.
            match unsafe { Mbuf::own(self.pkts[i]) } {
                Some(m) => f(m),
                None => self.lost += 1,
            }
        }
        n
    }
}

/// Transmit buffer of one (port, queue), drained when full and on the
/// worker's timer, as DPDK's l2fwd does.
pub struct TxBuffer {
    port: u16,
    queue: u16,
    cap: usize,
    len: usize,
    /// Bytes of the packets buffered.
    bytes: u64,
    pkts: [*mut sys::rte_mbuf; MAX_BURST],
}

// SAFETY: the buffer owns the mbufs it holds and is used by one worker.
unsafe impl Send for TxBuffer {}

/// What a flush did: packets sent and packets dropped because the queue
/// was full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u32,
    pub dropped: u32,
    /// Bytes of the packets sent.
    pub sent_bytes: u64,
}

impl TxBuffer {
    pub fn new(port: u16, queue: u16, burst: usize) -> TxBuffer {
        TxBuffer {
            port,
            queue,
            cap: burst.clamp(1, MAX_BURST),
            len: 0,
            bytes: 0,
            pkts: [std::ptr::null_mut(); MAX_BURST],
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue one packet; flushes first when the buffer is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Flushed {
        let mut f = Flushed::default();
        if self.len == self.cap {
            f = self.flush();
        }
        self.bytes += m.len() as u64;
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        f
    }

    /// Hand the buffered packets to the NIC; those it does not take are freed
    /// and reported as dropped (a full tx ring means the link is saturated;
    /// holding packets would only add latency).
    #[inline]
    pub fn flush(&mut self) -> Flushed {
        if self.len == 0 {
            return Flushed::default();
        }
        // SAFETY: the first `len` entries are mbufs we own; tx_burst takes
        // ownership of the ones it reports sent.
        let sent = unsafe {
            sys::sluice_tx_burst(
                self.port,
                self.queue,
                self.pkts.as_mut_ptr(),
                self.len as u16,
            )
        } as usize;
        let dropped = self.len - sent;
        let mut sent_bytes = self.bytes;
        if dropped > 0 {
            for &p in &self.pkts[sent..self.len] {
                // SAFETY: unsent mbufs are still ours; reading data_len is safe.
                sent_bytes -= unsafe { (*p).data_len } as u64;
            }
            // SAFETY: entries sent..len are still ours and are freed once here.
            unsafe {
                sys::sluice_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(sent), dropped as u32)
            };
        }
        self.len = 0;
        self.bytes = 0;
        Flushed {
            sent: sent as u32,
            dropped: dropped as u32,
            sent_bytes,
        }
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the first `len` entries are mbufs we own.
            unsafe { sys::sluice_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process that runs the EAL part of a test.
    const CHILD: &str = "SLUICE_TEST_EAL_CHILD";

    /// Run test `name` of this binary again in a child process with the
    /// EAL allowed (it starts once per process, and the parent test binary
    /// runs many tests in one process); true in the child.
    fn in_child(name: &str) -> bool {
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let exe = std::env::current_exe().unwrap();
        // One prefix per test: two of them may run at once, and each
        // removes its runtime directory when done.
        let short = name.rsplit("::").next().unwrap_or(name);
        let prefix = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            &short[..short.len().min(24)]
        );
        let out = std::process::Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, &prefix)
            .output()
            .unwrap();
        // The EAL leaves its (empty) runtime directory behind.
        let _ = std::fs::remove_dir_all(std::path::Path::new("/var/run/dpdk").join(prefix));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test failed:\n{stdout}\n{stderr}"
        );
        false
    }

    fn start_eal() -> crate::dpdk::Eal {
        let args: Vec<String> = [
            "sluice-test",
            "--no-huge",
            "-m",
            "128",
            "--no-pci",
            "--no-shconf",
            "--lcores=0@0",
            "--log-level=*:warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--file-prefix={}", std::env::var(CHILD).unwrap())])
        .collect();
        crate::dpdk::Eal::init(&args).expect("EAL (--no-huge)")
    }

    /// DPDK keeps each mbuf within one page unless told otherwise: without
    /// hugepages that is one 2.3 KiB mbuf per 4 KiB page, and 40 % of an
    /// ordinary pool lies past the memory net_af_xdp registers for it. A
    /// packed pool lies within it, every mbuf.
    #[test]
    fn a_packed_pool_lies_within_the_af_xdp_umem() {
        if !in_child("dpdk::mbuf::tests::a_packed_pool_lies_within_the_af_xdp_umem") {
            return;
        }
        let _eal = start_eal();
        let plain = Mempool::new("umem_plain", 1023, 0, -1, false).unwrap();
        let outside = plain.outside_af_xdp_umem();
        assert!(
            (300..=500).contains(&outside),
            "{outside} of 1023 page-bounded mbufs outside"
        );
        let packed = Mempool::new("umem_packed", 1023, 32, -1, true).unwrap();
        assert_eq!(packed.outside_af_xdp_umem(), 0);
        // Packed mbufs work as any other: written, read back, freed.
        let free = packed.available();
        let m = Mbuf::from_bytes(&packed, &[0x5a; 1500]).unwrap();
        assert_eq!(m.data(), &[0x5a; 1500][..]);
        drop(m);
        assert_eq!(packed.available(), free);
    }

    /// Hand `raw` to an rx burst as the NIC would, and take it back.
    fn through_rx(raw: *mut sys::rte_mbuf) -> (Option<Mbuf>, u64) {
        let mut rx = RxBurst::default();
        rx.pkts[0] = raw;
        rx.n = 1;
        let m = rx.take(0);
        (m, rx.take_lost())
    }

    /// A clone (an indirect mbuf on another packet's buffer) and the
    /// original it shares with (reference count 2) must never be written in
    /// place: what the rx side hands out is a private copy, and writing its
    /// whole buffer leaves the other packet intact.
    #[test]
    fn shared_mbufs_are_copied_before_anyone_writes() {
        if !in_child("dpdk::mbuf::tests::shared_mbufs_are_copied_before_anyone_writes") {
            return;
        }
        let _eal = start_eal();
        let pool = Mempool::new("mbuf_test", 63, 0, -1, false).unwrap();
        let mut orig = Mbuf::from_bytes(&pool, &[0xaa; 64]).unwrap();
        assert!(orig.is_exclusive());
        let mut free_before = pool.available();

        // SAFETY: orig is a valid mbuf; the clone is a new indirect mbuf
        // that we own and hand to the rx burst below.
        let clone = unsafe { sys::rte_pktmbuf_clone(orig.raw.as_ptr(), pool.as_ptr()) };
        assert!(!clone.is_null());
        assert!(!orig.is_exclusive(), "refcnt 2 after the clone");
        let (m, lost) = through_rx(clone);
        let mut m = m.expect("copied");
        assert_eq!(lost, 0);
        assert!(m.is_exclusive());
        assert_ne!(m.raw.as_ptr(), clone, "a copy, not the clone");
        assert_eq!(m.data(), &[0xaa; 64]);
        let (buf, off, len) = m.buffer_mut();
        assert_eq!(len, 64);
        assert!(off >= 64, "default headroom in the copy");
        buf.fill(0x55);
        assert_eq!(m.data(), &[0x55; 64]);
        assert_eq!(orig.data(), &[0xaa; 64], "the original is untouched");
        assert!(orig.is_exclusive(), "the clone's reference was released");
        drop(m);
        assert_eq!(pool.available(), free_before, "no mbuf leaked");

        // The original itself while a clone holds a reference: copied too.
        // SAFETY: as above.
        let clone = unsafe { sys::rte_pktmbuf_clone(orig.raw.as_ptr(), pool.as_ptr()) };
        assert!(!clone.is_null());
        let (m, _) = through_rx(orig.into_raw());
        let mut m = m.expect("copied");
        m.data_mut().fill(0x11);
        // SAFETY: the clone is still a valid mbuf we own; we read its data.
        let clone = unsafe { Mbuf::from_raw(clone) };
        assert_eq!(clone.data(), &[0xaa; 64]);
        drop(clone);
        orig = m;

        // An exclusive mbuf is handed over as it is, without a copy.
        let p = orig.into_raw();
        let (m, _) = through_rx(p);
        let orig = m.unwrap();
        assert_eq!(orig.raw.as_ptr(), p);

        // A shared mbuf whose pool has nothing left to copy into is freed
        // and reported lost.
        let small = Mempool::new("mbuf_test_small", 2, 0, -1, true).unwrap();
        let held = small.alloc().unwrap();
        free_before = small.available();
        assert_eq!(free_before, 1);
        // SAFETY: as above; the clone's header comes from `small`.
        let clone = unsafe { sys::rte_pktmbuf_clone(orig.raw.as_ptr(), small.as_ptr()) };
        assert!(!clone.is_null());
        assert_eq!(small.available(), 0);
        let (m, lost) = through_rx(clone);
        assert!(m.is_none());
        assert_eq!(lost, 1);
        assert_eq!(small.available(), 1, "the shared mbuf was freed");
        assert!(orig.is_exclusive());
        drop(held);
    }
}
