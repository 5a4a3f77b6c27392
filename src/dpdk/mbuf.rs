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
    pub fn new(name: &str, n: u32, cache: u32, socket: i32) -> Result<Mempool, String> {
        let cname = CString::new(name).map_err(|_| format!("mempool name {name:?} has a NUL"))?;
        // SAFETY: cname is a valid C string for the duration of the call; the
        // EAL is initialised (Mempool is only created after Eal::init).
        let raw = unsafe { sys::sluice_pktmbuf_pool_create(cname.as_ptr(), n, cache, socket) };
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

    /// Mbufs currently available (approximate under concurrency).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool pointer is valid; the call only reads counters.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }
}

/// One single-segment packet buffer, owned: dropping it returns it to its
/// pool. Sluice does not enable scattered rx, so every mbuf it receives is a
/// single segment (multi-segment ones are dropped by the worker and counted).
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it to another
// lcore is how DPDK rings hand packets over.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns or will free.
    unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Mbuf {
        Mbuf {
            raw: NonNull::new_unchecked(raw),
        }
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The packet bytes of the first (only) segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf's
        // buffer, which we own; the slice borrows self.
        unsafe {
            let p = sys::sluice_pktmbuf_data(self.raw.as_ptr());
            let n = sys::sluice_pktmbuf_data_len(self.raw.as_ptr());
            std::slice::from_raw_parts(p, n as usize)
        }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and &mut self guarantees exclusive access.
        unsafe {
            let p = sys::sluice_pktmbuf_data(self.raw.as_ptr());
            let n = sys::sluice_pktmbuf_data_len(self.raw.as_ptr());
            std::slice::from_raw_parts_mut(p, n as usize)
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::sluice_pktmbuf_data_len(self.raw.as_ptr()) as usize }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn segments(&self) -> u16 {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::sluice_pktmbuf_nb_segs(self.raw.as_ptr()) }
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
    #[inline]
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize, usize) {
        let (mut buf_len, mut off, mut len) = (0u16, 0u16, 0u16);
        // SAFETY: the shim reads three fields and returns buf_addr, which
        // points at buf_len bytes owned by this mbuf; &mut self makes the
        // slice exclusive for its lifetime.
        unsafe {
            let p = sys::sluice_pktmbuf_buffer(self.raw.as_ptr(), &mut buf_len, &mut off, &mut len);
            (
                std::slice::from_raw_parts_mut(p, buf_len as usize),
                off as usize,
                len as usize,
            )
        }
    }

    /// Make `buffer[off..off + len]` the packet. False if it does not fit.
    #[inline]
    pub fn set_window(&mut self, off: usize, len: usize) -> bool {
        if off > u16::MAX as usize || len > u16::MAX as usize {
            return false;
        }
        // SAFETY: the shim bounds-checks off + len against buf_len.
        unsafe { sys::sluice_pktmbuf_set_window(self.raw.as_ptr(), off as u16, len as u16) == 0 }
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
}

// SAFETY: the array only ever holds mbufs between rx() and the end of the
// same drain, both on the owning worker thread.
unsafe impl Send for RxBurst {}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            pkts: [std::ptr::null_mut(); MAX_BURST],
            n: 0,
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
                    let d = sys::sluice_pktmbuf_data(p);
                    let len = sys::sluice_pktmbuf_data_len(p);
                    std::slice::from_raw_parts(d, len as usize)
                }
            }
            _ => &[],
        }
    }

    /// Take ownership of packet `i` of the last `recv`; None if out of
    /// range or already taken.
    #[inline]
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        let slot = self.pkts[..self.n].get_mut(i)?;
        let p = std::mem::replace(slot, std::ptr::null_mut());
        // SAFETY: non-null entries are owned mbufs, each handed out once
        // (the slot is nulled above).
        (!p.is_null()).then(|| unsafe { Mbuf::from_raw(p) })
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
            f(unsafe { Mbuf::from_raw(self.pkts[i]) });
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
                sent_bytes -= unsafe { sys::sluice_pktmbuf_data_len(p) } as u64;
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
