//! A worker's signs of life, written by the worker and read by the control
//! thread ([`crate::control::liveness`]): a heartbeat counter bumped once per
//! loop iteration and an `exited` flag set however the worker ends (return
//! or panic, through [`ExitGuard`]'s `Drop`).
//!
//! In debug builds only, [`Fault`] lets a test make one worker panic or spin
//! (`SLUICE_DEBUG_WORKER_FAULT`), to check that the failure is noticed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One worker's heartbeat, on its own cache line (the worker writes it
/// every loop iteration).
#[repr(align(64))]
#[derive(Default)]
pub struct Heartbeat {
    beats: AtomicU64,
    exited: AtomicBool,
}

impl Heartbeat {
    /// One loop iteration done. Single writer: a plain load and store, no
    /// locked instruction.
    #[inline]
    pub fn beat(&self) {
        let n = self.beats.load(Ordering::Relaxed);
        self.beats.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    pub fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Whether the worker's function has ended (returned or unwound).
    pub fn exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }
}

/// Held by the closure that runs a worker: marks it exited when dropped,
/// which also happens while a panic unwinds (before the launch trampoline
/// catches it).
pub struct ExitGuard(pub Arc<Heartbeat>);

impl ExitGuard {
    /// Call on the worker's own thread before it runs: a panic there then
    /// marks the worker exited at once, from the panic hook, before the
    /// default hook prints the message and a backtrace (symbolizing one
    /// can take seconds, and the control thread would report the worker
    /// stuck rather than dead in the meantime).
    pub fn arm(self) -> ExitGuard {
        install_panic_hook();
        CURRENT.with(|c| *c.borrow_mut() = Some(self.0.clone()));
        self
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.exited.store(true, Ordering::Release);
        let _ = CURRENT.try_with(|c| c.try_borrow_mut().map(|mut c| c.take()));
    }
}

thread_local! {
    /// The heartbeat of the worker this thread runs, once armed.
    static CURRENT: std::cell::RefCell<Option<Arc<Heartbeat>>> =
        const { std::cell::RefCell::new(None) };
}

/// Chain a hook in front of the current panic hook (once per process) that
/// marks the panicking thread's worker, if any, exited.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = CURRENT.try_with(|c| {
                if let Ok(c) = c.try_borrow() {
                    if let Some(hb) = c.as_ref() {
                        hb.exited.store(true, Ordering::Release);
                    }
                }
            });
            previous(info);
        }));
    });
}

/// A fault to inject into one worker, debug builds only:
/// `SLUICE_DEBUG_WORKER_FAULT=WORKER:panic|spin[:AFTER_MS]` makes worker
/// `WORKER` panic, or spin forever without a heartbeat, once it has run its
/// loop for `AFTER_MS` milliseconds (default 0).
#[cfg(debug_assertions)]
pub struct Fault {
    spin: bool,
    after_ns: u64,
    start_ns: Option<u64>,
}

#[cfg(debug_assertions)]
impl Fault {
    pub const ENV: &'static str = "SLUICE_DEBUG_WORKER_FAULT";

    /// The fault for worker `index`, if the environment asks for one.
    pub fn from_env(index: usize) -> Option<Fault> {
        Fault::parse(&std::env::var(Fault::ENV).ok()?, index)
    }

    fn parse(spec: &str, index: usize) -> Option<Fault> {
        let mut it = spec.split(':');
        let worker: usize = it.next()?.parse().ok()?;
        let spin = match it.next()? {
            "panic" => false,
            "spin" => true,
            _ => return None,
        };
        let after_ms: u64 = it.next().map_or(Some(0), |s| s.parse().ok())?;
        (worker == index).then_some(Fault {
            spin,
            after_ns: after_ms * 1_000_000,
            start_ns: None,
        })
    }

    /// Called once per loop iteration.
    pub fn check(&mut self, now_ns: u64) {
        let start = *self.start_ns.get_or_insert(now_ns);
        if now_ns.wrapping_sub(start) < self.after_ns {
            return;
        }
        if self.spin {
            log::warn!("{}: worker spinning", Fault::ENV);
            loop {
                std::hint::spin_loop();
            }
        }
        panic!("{}: injected worker panic", Fault::ENV);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_guard_marks_exit_on_return_and_on_panic() {
        let hb = Arc::new(Heartbeat::default());
        let h = hb.clone();
        let r = std::panic::catch_unwind(move || {
            let _g = ExitGuard(h);
            panic!("worker panic");
        });
        assert!(r.is_err());
        assert!(hb.exited());
        let hb = Arc::new(Heartbeat::default());
        drop(ExitGuard(hb.clone()));
        assert!(hb.exited());
    }

    #[cfg(debug_assertions)]
    #[test]
    fn fault_spec() {
        assert!(Fault::parse("1:panic", 0).is_none());
        let f = Fault::parse("1:spin:250", 1).unwrap();
        assert!(f.spin && f.after_ns == 250_000_000);
        assert!(Fault::parse("0:panic", 0).is_some_and(|f| !f.spin && f.after_ns == 0));
        assert!(Fault::parse("0:explode", 0).is_none());
        assert!(Fault::parse("x:panic", 0).is_none());
    }
}
