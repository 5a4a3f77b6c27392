//! Sluice: an L4/L7 load-balancing appliance on DPDK.
//!
//! All foreign-function code lives in [`dpdk`]; everything else is safe Rust.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod l4;
pub mod l7;
pub mod net;
pub mod wire;
pub mod worker;
