//! Generates DPDK bindings with bindgen and compiles the C shim that exports
//! DPDK's `static inline` functions (rx/tx burst, mbuf helpers, lcore id).
//!
//! DPDK comes from the system (Debian's `libdpdk-dev`, 22.11 LTS) through
//! pkg-config; its cflags (`-include rte_config.h -march=...`) go to both
//! bindgen and cc so that both see the same structure layouts.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk/shim.c");
    println!("cargo:rerun-if-changed=src/dpdk/shim.h");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!("libdpdk >= 22.11 not found by pkg-config ({e}); run scripts/setup.sh")
        });

    // The full cflags, not only include paths: DPDK needs `-include rte_config.h`
    // and the -march it was built with for the inline functions' SIMD paths.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config --cflags libdpdk");
    let cflags = String::from_utf8(cflags.stdout).expect("utf-8 cflags");
    let mut flags: Vec<String> = Vec::new();
    let mut it = cflags.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                flags.push(format!("-include{h}"));
            }
        } else {
            flags.push(f.to_string());
        }
    }
    flags.push("-DALLOW_EXPERIMENTAL_API".into());

    let mut cc = cc::Build::new();
    cc.file("src/dpdk/shim.c").opt_level(3).warnings(true);
    for f in &flags {
        cc.flag(f);
    }
    for p in &lib.include_paths {
        cc.include(p);
    }
    cc.compile("sluice_shim");

    let bindings = bindgen::Builder::default()
        .header("src/dpdk/shim.h")
        .clang_args(&flags)
        .allowlist_function("rte_.*")
        .allowlist_function("sluice_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SLUICE_.*")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("dpdk_bindings.rs"))
        .expect("write bindings");
}
