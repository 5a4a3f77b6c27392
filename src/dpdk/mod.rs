//! DPDK bindings and safe wrappers. The only module with unsafe code.
#[allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all, unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}
