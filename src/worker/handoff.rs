//! Configuration hand-off: the control thread publishes snapshots, every
//! worker picks up the newest one between bursts, and the snapshot a worker
//! retires travels back to the control thread to be freed there.
//!
//! The latest snapshot always wins: publishing replaces what is in the slot
//! (an [`ArcSwap`], lock-free on both sides) however many times it happens
//! before a worker looks, so a burst of reloads ends with every worker on
//! the last one; nothing is queued toward the workers, so nothing can be
//! full. A worker checks a generation counter (one relaxed load per loop
//! iteration) and touches the slot only when it moved.
//!
//! Freeing a plane (route tables, Maglev tables of every cluster, L7
//! routers) is a large deallocation that must not run on a polling core:
//! the worker sends the `Arc` it replaces back through an unbounded channel
//! and the control thread drops it ([`Publisher::collect`]). The control
//! thread's own reference to a superseded snapshot is dropped at publish,
//! also off the workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, Sender};

struct Slot<T> {
    latest: ArcSwap<T>,
    /// Bumped after every store into `latest`.
    generation: AtomicU64,
}

/// The control thread's end: publishes snapshots, frees retired ones.
pub struct Publisher<T> {
    slot: Arc<Slot<T>>,
    retired_tx: Sender<Arc<T>>,
    retired: Receiver<Arc<T>>,
}

/// A worker's end: the newest snapshot, picked up between bursts.
pub struct Subscriber<T> {
    slot: Arc<Slot<T>>,
    seen: u64,
    retired: Sender<Arc<T>>,
}

impl<T> Publisher<T> {
    pub fn new(initial: Arc<T>) -> Publisher<T> {
        let (retired_tx, retired) = crossbeam::channel::unbounded();
        Publisher {
            slot: Arc::new(Slot {
                latest: ArcSwap::new(initial),
                generation: AtomicU64::new(0),
            }),
            retired_tx,
            retired,
        }
    }

    /// A worker's end, starting on the current snapshot.
    pub fn subscribe(&self) -> (Subscriber<T>, Arc<T>) {
        let seen = self.slot.generation.load(Ordering::Acquire);
        let current = self.slot.latest.load_full();
        let sub = Subscriber {
            slot: self.slot.clone(),
            seen,
            retired: self.retired_tx.clone(),
        };
        (sub, current)
    }

    /// Make `next` the snapshot every worker moves to at its next check;
    /// the previous one is dropped here (workers may still hold it).
    pub fn publish(&self, next: Arc<T>) {
        drop(self.slot.latest.swap(next));
        self.slot.generation.fetch_add(1, Ordering::Release);
    }

    /// Free the snapshots workers have retired; returns how many.
    pub fn collect(&self) -> usize {
        self.retired.try_iter().map(drop).count()
    }
}

impl<T> Subscriber<T> {
    /// Between bursts: if a newer snapshot was published, move `current` to
    /// it and send the old one back to be freed by the control thread.
    /// True if `current` changed.
    #[inline]
    pub fn update(&mut self, current: &mut Arc<T>) -> bool {
        let g = self.slot.generation.load(Ordering::Acquire);
        if g == self.seen {
            return false;
        }
        // Whatever was stored before generation `g` was bumped is visible
        // now; a later publish bumps it again and is picked up next time.
        self.seen = g;
        let next = self.slot.latest.load_full();
        if Arc::ptr_eq(&next, current) {
            return false;
        }
        self.retire(std::mem::replace(current, next));
        true
    }

    /// Hand `old` to the control thread to be freed (at worker exit too).
    pub fn retire(&self, old: Arc<T>) {
        // Fails only once the control thread has dropped its end (it is
        // shutting down): then the worker frees it, which no longer matters.
        let _ = self.retired.send(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::thread::ThreadId;

    /// Records the thread it is dropped on.
    struct Snap {
        n: u32,
        dropped_on: Arc<std::sync::Mutex<Vec<ThreadId>>>,
    }
    impl Drop for Snap {
        fn drop(&mut self) {
            self.dropped_on
                .lock()
                .unwrap()
                .push(std::thread::current().id());
        }
    }

    /// Many reloads in a row while workers poll: every worker ends on the
    /// last snapshot, none is lost to a full queue, and every superseded
    /// snapshot is freed on the control thread, never on a worker.
    #[test]
    fn burst_of_reloads_ends_on_the_last_and_frees_off_the_workers() {
        const RELOADS: u32 = 2000;
        const WORKERS: usize = 3;
        let dropped_on = Arc::new(std::sync::Mutex::new(Vec::new()));
        let snap = |n| {
            Arc::new(Snap {
                n,
                dropped_on: dropped_on.clone(),
            })
        };
        let publisher = Publisher::new(snap(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (mut sub, mut current) = publisher.subscribe();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut changes = 0u32;
                    let mut last = current.n;
                    while !stop.load(Ordering::Acquire) {
                        if sub.update(&mut current) {
                            assert!(current.n > last, "never goes back");
                            last = current.n;
                            changes += 1;
                        }
                        std::hint::spin_loop();
                    }
                    // The final pickup after stop, as a worker's last loop.
                    sub.update(&mut current);
                    let n = current.n;
                    sub.retire(current);
                    (n, changes, std::thread::current().id())
                })
            })
            .collect();
        let control = std::thread::current().id();
        for n in 1..=RELOADS {
            publisher.publish(snap(n));
            if n % 100 == 0 {
                publisher.collect();
            }
        }
        stop.store(true, Ordering::Release);
        let ends: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        publisher.collect();
        for &(n, changes, _) in &ends {
            assert_eq!(n, RELOADS, "worker ended on the last snapshot");
            // How many intermediate snapshots a worker saw depends on the
            // scheduler; it never needs more than one pickup per check.
            assert!(changes <= RELOADS);
        }
        let worker_ids: Vec<_> = ends.iter().map(|e| e.2).collect();
        let drops = dropped_on.lock().unwrap().clone();
        // Snapshots 0..RELOADS are superseded; RELOADS is still in the slot.
        assert_eq!(drops.len(), RELOADS as usize);
        assert!(drops
            .iter()
            .all(|t| *t == control && !worker_ids.contains(t)));
    }

    #[test]
    fn no_publish_no_change() {
        let publisher = Publisher::new(Arc::new(1u32));
        let (mut sub, mut current) = publisher.subscribe();
        assert!(!sub.update(&mut current));
        publisher.publish(Arc::new(2));
        publisher.publish(Arc::new(3));
        assert!(sub.update(&mut current));
        assert_eq!(*current, 3);
        assert!(!sub.update(&mut current));
        assert_eq!(publisher.collect(), 1);
    }
}
