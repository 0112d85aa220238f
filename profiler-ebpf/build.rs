//! Rebuild the eBPF object when the linker changes: aya-template does the same,
//! since cargo does not track `bpf-linker` as a dependency.
fn main() {
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
