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
