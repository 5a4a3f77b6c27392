//! EAL start-up, lcore launch and shutdown.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use super::sys;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum EalError {
    #[error("the EAL can be started only once per process")]
    AlreadyStarted,
    #[error("EAL argument contains a NUL byte: {0:?}")]
    BadArgument(String),
    #[error("rte_eal_init failed: {0}")]
    Init(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("lcore {0} is not enabled in the EAL")]
    NotEnabled(u32),
    #[error("lcore {0} could not be launched: {1}")]
    Busy(u32, String),
}

/// The process's one Environment Abstraction Layer: proof that
/// `rte_eal_init` succeeded.
///
/// It is never torn down: Sluice does not call `rte_eal_cleanup`, neither
/// from `Drop` nor from any other safe method. Cleanup unmaps the EAL's
/// memory, and nothing in safe Rust can prove that no [`super::Mempool`]
/// (pools are `'static`: ports keep pointers to their rx pools) and no
/// [`super::Mbuf`] (owned values that can sit in any queue, thread or
/// leaked box) is still alive at that moment; touching one afterwards
/// would be a use after free. A lifetime tying every pool and mbuf to the
/// `Eal` would make that checkable, at the price of a lifetime on every
/// packet in the program. What cleanup would release is released by the
/// kernel when the process exits (memory mappings, file descriptors,
/// hugepage file locks); ports are stopped and closed explicitly
/// ([`super::port::stop`]), which is what flushes devices such as
/// `net_pcap`. The files under the runtime directory
/// (`/var/run/dpdk/PREFIX/`) stay and are reused by the next primary
/// process with the same `--file-prefix`.
pub struct Eal {
    _private: (),
}

/// The message for the current `rte_errno`.
pub(crate) fn errno_str(err: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string
    // that stays valid until the next call on this thread; we copy it at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(err)) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn rte_errno() -> c_int {
    // SAFETY: reads the calling thread's rte_errno; no preconditions.
    unsafe { sys::sluice_errno() }
}

impl Eal {
    /// Start the EAL with `args` (program name first). Only once per process:
    /// DPDK cannot re-initialise, which is why every test that needs an EAL
    /// runs the `sluice` binary in its own process.
    pub fn init(args: &[String]) -> Result<Eal, EalError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyStarted);
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| EalError::BadArgument(a.clone())))
            .collect::<Result<_, _>>()?;
        // rte_eal_init may permute argv; hand it pointers into strings we keep
        // alive (leaked: the EAL keeps references to some of them for the
        // life of the process, e.g. device arguments).
        let cargs: &'static [CString] = Box::leak(cargs.into_boxed_slice());
        let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv holds `cargs.len()` valid NUL-terminated strings followed
        // by a NULL, all leaked so they outlive the EAL; init runs once (checked
        // by EAL_STARTED above).
        let ret = unsafe { sys::rte_eal_init(cargs.len() as c_int, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(EalError::Init(errno_str(rte_errno())));
        }
        Ok(Eal { _private: () })
    }

    /// The lcore this thread runs on (`u32::MAX` for non-EAL threads).
    pub fn lcore_id() -> u32 {
        // SAFETY: reads a per-thread variable set by the EAL.
        unsafe { sys::sluice_lcore_id() }
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after rte_eal_init, which `self` proves.
        unsafe { sys::rte_get_main_lcore() }
    }

    /// NUMA socket of an lcore (0 on single-socket machines).
    pub fn lcore_socket(&self, lcore: u32) -> i32 {
        // SAFETY: valid after rte_eal_init; unknown lcores return SOCKET_ID_ANY.
        unsafe { sys::rte_lcore_to_socket_id(lcore) as i32 }
    }

    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: valid after rte_eal_init; returns 0 for out-of-range ids.
        unsafe { sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// Run `f` on worker `lcore`. The closure's return value is its exit code;
    /// a panic inside it is caught and reported as -1 (unwinding across the C
    /// frame of the EAL thread would be undefined behaviour).
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<(), LaunchError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if !self.lcore_enabled(lcore) {
            return Err(LaunchError::NotEnabled(lcore));
        }
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: `trampoline` takes ownership of `arg`, which is a leaked
        // Box<Box<dyn FnOnce>>; the EAL calls it exactly once if launch succeeds.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret != 0 {
            // SAFETY: the launch failed, so the trampoline will never run and
            // we still own `arg`.
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) });
            return Err(LaunchError::Busy(lcore, errno_str(-ret)));
        }
        Ok(())
    }

    /// Wait for the function launched on `lcore` and return its exit code.
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: valid after rte_eal_init; waiting on an idle lcore returns 0.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from Box::into_raw in `Eal::launch` and is consumed
    // only here, once.
    let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(-1)
}

/// The TSC, read once per burst for timestamps.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the CPU's time-stamp counter; no preconditions.
    unsafe { sys::sluice_rdtsc() }
}

/// TSC ticks per second, measured by the EAL at start-up.
pub fn tsc_hz() -> u64 {
    // SAFETY: valid after rte_eal_init; returns 0 before it.
    unsafe { sys::sluice_tsc_hz() }
}

/// DPDK's version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static string.
    unsafe { CStr::from_ptr(sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

/// The libdpdk version the bindings were generated from (no EAL needed).
pub fn build_version() -> String {
    format!(
        "{}.{:02}.{}",
        sys::RTE_VER_YEAR,
        sys::RTE_VER_MONTH,
        sys::RTE_VER_MINOR
    )
}
