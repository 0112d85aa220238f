//! What `cargo xtask` and the benchmark harness (`stackwatch-bench`) share:
//! where the workspace and its target directory are, how cargo is run for
//! the host and for the eBPF target, echoed command execution ([`cmd`]) and
//! the toolchain check and install ([`setup`]).
#![expect(unused_crate_dependencies, reason = "clap is the command line's, in main.rs")]

pub mod cmd;
pub mod dist;
pub mod setup;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// The nightly toolchain the eBPF object is built with (`-Z build-std=core`):
/// Rust 1.98 or later for aya-ebpf 0.3, and LLVM 22 like bpf-linker, which
/// links its bitcode. profiler-user/build.rs names the same one.
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

/// The eBPF crate and its one binary (`[[bin]] name` in profiler-ebpf/Cargo.toml).
const EBPF_PACKAGE: &str = "profiler-ebpf";
const EBPF_BIN: &str = "profiler";
const EBPF_TARGET: &str = if cfg!(target_endian = "big") { "bpfeb-unknown-none" } else { "bpfel-unknown-none" };

/// The workspace root, where every cargo command runs.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map_or_else(|| xtask_dir.join(".."), Path::to_path_buf)
}

/// Cargo's target directory (`CARGO_TARGET_DIR` if set).
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `cargo` run in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo +EBPF_TOOLCHAIN <sub>` for the eBPF target, set up as aya-build
/// does in `aya_build::build_ebpf`, so the result matches the object that
/// profiler-user's build.rs embeds.
pub fn ebpf_cargo(subcommand: &str) -> Command {
    let mut cmd = cargo();
    let toolchain = format!("+{EBPF_TOOLCHAIN}");
    cmd.args([toolchain.as_str(), subcommand, "--package", EBPF_PACKAGE, "--bins", "--release"]).args([
        "--target",
        EBPF_TARGET,
        "-Z",
        "build-std=core",
    ]);
    // aya-build passes its flags 0x1f-separated in CARGO_ENCODED_RUSTFLAGS
    // (which takes precedence over RUSTFLAGS).
    let arch = env::consts::ARCH;
    let flags =
        [format!("--cfg=bpf_target_arch=\"{arch}\""), "-Cdebuginfo=2".to_owned(), "-Clink-arg=--btf".to_owned()];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    // As aya-build does: make sure the nightly toolchain's rustc is used.
    cmd.env_remove("RUSTC").env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

pub fn build_ebpf() -> Result<PathBuf> {
    setup::ensure()?;
    cmd::run(&mut ebpf_cargo("build"))?;
    let object = target_dir().join(EBPF_TARGET).join("release").join(EBPF_BIN);
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but `{}` is missing (has the [[bin]] in {EBPF_PACKAGE}/Cargo.toml been renamed?)",
            object.display()
        );
    }
    Ok(object)
}

/// `cargo build --release --workspace`; returns the path of `stackwatch`.
/// The eBPF object is built and embedded by profiler-user's build.rs.
pub fn build() -> Result<PathBuf> {
    build_binary(&["--release", "--workspace"], "release", "stackwatch")
}

/// Builds the binary the packages ship (`--profile release-lto`: fat LTO,
/// DWARF stripped; see the workspace `Cargo.toml`) and returns its path.
pub fn build_shipped() -> Result<PathBuf> {
    build_binary(&["--profile", "release-lto", "-p", "profiler-user"], "release-lto", "stackwatch")
}

/// `cargo build ARGS`; returns the path of binary `name` in the target
/// directory's `profile_dir`, which the build must have left there.
pub fn build_binary(args: &[&str], profile_dir: &str, name: &str) -> Result<PathBuf> {
    cmd::run(cargo().arg("build").args(args))?;
    let bin = target_dir().join(profile_dir).join(name);
    if !bin.is_file() {
        bail!("the build succeeded but `{}` is missing", bin.display());
    }
    Ok(bin)
}

/// Writes the manual pages (`stackwatch.1`, `stackwatch-record.1`, …,
/// generated from the command line's definitions) into `dir`, building the
/// release binary first; returns their paths. For `cargo xtask man` and
/// the packages.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    man_pages_of(&build()?, dir)
}

/// [`man_pages`] written by the stackwatch binary `bin`.
pub fn man_pages_of(bin: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new(bin)
        .arg("generate-man")
        .arg(dir)
        .output()
        .with_context(|| format!("failed to run `{}`", bin.display()))?;
    if !output.status.success() {
        bail!("`{} generate-man` failed: {}", bin.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(PathBuf::from).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn readme_is_for_users_first_and_starts_with_the_fresh_machine_commands() {
        let readme = std::fs::read_to_string(super::workspace_root().join("README.md")).unwrap();
        let commands: Vec<&str> = readme
            .lines()
            .filter(|l| l.starts_with("cargo ") || l.starts_with("sudo ") || l.starts_with("rustup "))
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .collect();
        // rustup first: where it does not install the pinned toolchain on
        // demand (RUSTUP_AUTO_INSTALL=0), no cargo command would start.
        assert_eq!(
            &commands[..2],
            ["rustup toolchain install && cargo xtask run", "rustup toolchain install && cargo xtask test"],
            "{commands:?}"
        );
        let at = |heading: &str| readme.find(heading).unwrap_or_else(|| panic!("README has no `{heading}`"));
        assert!(at("## Install") < at("## Quick start") && at("## Quick start") < at("## Language support"));
        assert!(at("## Language support") < at("## Building"), "users' sections come before the developers'");
        let table = &readme[at("## Language support")..at("## Documentation")];
        for language in ["| Go |", "| C/C++ |", "| Rust |", "| Python", "| Node.js |", "| JVM |"] {
            assert!(table.contains(language), "no row for {language}");
        }
    }

    #[test]
    fn the_build_script_builds_with_the_same_ebpf_toolchain() {
        let build = std::fs::read_to_string(super::workspace_root().join("profiler-user/build.rs")).unwrap();
        let pinned = format!("const EBPF_TOOLCHAIN: &str = \"{}\";", super::EBPF_TOOLCHAIN);
        assert!(build.contains(&pinned), "profiler-user/build.rs does not pin `{}`", super::EBPF_TOOLCHAIN);
    }
}
