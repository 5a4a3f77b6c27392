//! Sluice: an L4/L7 load-balancing appliance on DPDK.
//!
//! All foreign-function code lives in [`dpdk`]; everything else is safe Rust
//! (`unsafe_code = "deny"` in Cargo.toml's `[lints.rust]`, for every target).

pub mod config;
pub mod control;
pub mod dpdk;
pub mod l4;
pub mod l7;
pub mod net;
pub mod wire;
pub mod worker;

/// Large blocks (16 KiB to 1 MiB: socket buffers, TLS buffers, tables)
/// from pages that go back to the kernel when freed; the rest from glibc
/// (dpdk::pages). Unit tests count allocations through it
/// (l7::session::tests).
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: dpdk::pages::Pages = dpdk::pages::Pages;
