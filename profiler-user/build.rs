//! Builds the eBPF object from `profiler-ebpf` with the nightly toolchain and
//! `bpf-linker` (as aya-template does); `loader.rs` embeds it from `OUT_DIR`.
fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "profiler-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
