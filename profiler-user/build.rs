//! Builds the eBPF object from `profiler-ebpf` with the nightly toolchain and
//! `bpf-linker` (as aya-template does); `bpf/loader.rs` embeds it from `OUT_DIR`.

// A build-dependency only so cargo rebuilds the object when the eBPF crate
// changes; its (host-side, empty) library is not used here.
use profiler_ebpf as _;

/// The nightly the object is built with: the same as `EBPF_TOOLCHAIN` in
/// xtask/src/lib.rs (a test there checks), where it is explained.
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "profiler-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
