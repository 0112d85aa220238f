//! `cargo xtask setup`: installs what building and testing stackwatch need,
//! on Debian (apt) with rustup. Each item is checked first and only missing
//! ones are installed, so a second run is a quick no-op; `build`, `test` and
//! `run` call [`ensure`] for the same reason.

use std::fmt;
use std::fs;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{cmd, EBPF_TOOLCHAIN};

/// Debian packages, with why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("gcc", "C test workloads"),
    ("g++", "the C++ unwind test workload"),
    ("gdb", "the second unwinder of the off-CPU unwind test"),
    ("bpftrace", "the frame-pointer baseline of the unwind benchmark"),
    ("golang-go", "Go test workload and `go tool pprof`"),
    ("bpftool", "inspecting loaded programs in tests"),
    ("libcap2-bin", "setpriv/capsh for privilege tests"),
    ("linux-perf", "perf, for benchmarks"),
    ("nodejs", "the JIT perf-map symbolization test (`node --perf-basic-prof`)"),
    ("binutils", "objcopy/readelf for the separate-debug-file symbolization test, objdump for the Python one"),
    ("python3", "Debian's static CPython build for the Python stack tests (pyenv provides 3.6-3.13)"),
    ("tmux", "a real terminal for the `stackwatch top` tests"),
    ("prometheus", "the alerting test: Prometheus evaluates a rule and scrapes `/metrics`; `promtool check metrics`"),
    ("prometheus-alertmanager", "the alerting test: Alertmanager calls the `/alerts` webhook"),
    ("systemd", "`systemd-analyze verify` on the packaged unit (the binary only: systemd need not run)"),
];

/// Where Debian's llvm-22-dev lives; bpf-linker's build finds LLVM there.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The bpf-linker release verified with LLVM 22 and the nightly in use.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// inferno's command-line tools, for the perf-pipeline comparison in benchmarks.
const INFERNO_VERSION: &str = "~0.12";

/// One thing that can be missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Apt(&'static str),
    /// stable's clippy and rustfmt, for the lint steps of `test`.
    RustComponent(&'static str),
    NightlyToolchain,
    NightlyRustSrc,
    BpfLinker,
    InfernoCli,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Apt(pkg) => write!(f, "apt package {pkg}"),
            Self::RustComponent(c) => write!(f, "rustup component {c}"),
            Self::NightlyToolchain => write!(f, "Rust {EBPF_TOOLCHAIN}"),
            Self::NightlyRustSrc => write!(f, "rust-src for {EBPF_TOOLCHAIN}"),
            Self::BpfLinker => write!(f, "bpf-linker {BPF_LINKER_VERSION}"),
            Self::InfernoCli => f.write_str("inferno command-line tools"),
        }
    }
}

impl Item {
    fn why(&self) -> &'static str {
        match self {
            Self::Apt(pkg) => APT_PACKAGES.iter().find(|(p, _)| p == pkg).map_or("", |(_, why)| why),
            Self::RustComponent(_) => "lint steps of `cargo xtask test`",
            Self::NightlyToolchain | Self::NightlyRustSrc => "building the eBPF object (-Z build-std=core)",
            Self::BpfLinker => "linking the eBPF object",
            Self::InfernoCli => "benchmark baseline (perf script | inferno)",
        }
    }
}

/// Checks everything and returns what is missing, printing a line per item
/// when `verbose`.
pub fn missing(bench: bool, verbose: bool) -> Result<Vec<Item>> {
    let mut items: Vec<(Item, bool, String)> = Vec::new();
    for (pkg, _) in APT_PACKAGES {
        let version = apt_installed_version(pkg)?;
        let found = version.is_some();
        items.push((Item::Apt(pkg), found, version.unwrap_or_default()));
    }
    for component in ["clippy", "rustfmt"] {
        let sub = if component == "clippy" { "clippy" } else { "fmt" };
        let version = version_of(Command::new("cargo").args([sub, "--version"]));
        items.push((Item::RustComponent(component), version.is_some(), version.unwrap_or_default()));
    }
    let nightly = nightly_installed()?;
    // Only asked when installed: `+toolchain` may make rustup install it.
    let plus = format!("+{EBPF_TOOLCHAIN}");
    let nightly_version =
        nightly.then(|| version_of(Command::new("rustc").args([plus.as_str(), "--version"]))).flatten();
    items.push((Item::NightlyToolchain, nightly, nightly_version.unwrap_or_default()));
    let rust_src = nightly && nightly_has_rust_src()?;
    items.push((Item::NightlyRustSrc, rust_src, String::new()));
    let linker = version_of(Command::new("bpf-linker").arg("--version"));
    items.push((Item::BpfLinker, linker.is_some(), linker.unwrap_or_default()));
    if bench {
        // inferno's tools have no --version; --help tells they run.
        let found = ["inferno-collapse-perf", "inferno-flamegraph"]
            .iter()
            .all(|tool| version_of(Command::new(tool).arg("--help")).is_some());
        items.push((Item::InfernoCli, found, String::new()));
    }

    let mut missing = Vec::new();
    for (item, found, version) in items {
        if verbose {
            let state = if found { "ok" } else { "missing" };
            let detail = if version.is_empty() { String::new() } else { format!(" ({version})") };
            eprintln!("setup: {:<28} {state}{detail}  [{}]", item.to_string(), item.why());
        }
        if !found {
            missing.push(item);
        }
    }
    Ok(missing)
}

/// `cargo xtask setup [--bench]`: report every item, install what is missing,
/// then check again.
pub fn setup(bench: bool, check_only: bool) -> Result<()> {
    let missing = missing(bench, true)?;
    if missing.is_empty() {
        eprintln!("setup: everything is installed");
        return Ok(());
    }
    if check_only {
        let flag = if bench { " --bench" } else { "" };
        bail!("missing: {}; run `cargo xtask setup{flag}` to install", list(&missing));
    }
    install(&missing)?;
    let still = self::missing(bench, true)?;
    if !still.is_empty() {
        bail!("still missing after installing: {} (is `~/.cargo/bin` on PATH? `source ~/.cargo/env`)", list(&still));
    }
    eprintln!("setup: done");
    Ok(())
}

/// Installs whatever the build and tests need and is missing; quiet when
/// nothing is.
pub fn ensure() -> Result<()> {
    let missing = missing(false, false)?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: missing {}; running setup", list(&missing));
    setup(false, false)
}

fn list(items: &[Item]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn install(missing: &[Item]) -> Result<()> {
    let apt: Vec<&str> = missing
        .iter()
        .filter_map(|item| match item {
            Item::Apt(pkg) => Some(*pkg),
            _ => None,
        })
        .collect();
    if !apt.is_empty() {
        // Waits for a dpkg lock held by e.g. unattended-upgrades on a fresh
        // machine instead of failing at once.
        let lock_wait = "DPkg::Lock::Timeout=600";
        cmd::run(privileged("apt-get").args(["-o", lock_wait, "update"]))?;
        cmd::run(privileged("apt-get").args(["-o", lock_wait, "install", "-y", "--no-install-recommends"]).args(&apt))?;
    }
    let components: Vec<&str> = missing
        .iter()
        .filter_map(|item| match item {
            Item::RustComponent(c) => Some(*c),
            _ => None,
        })
        .collect();
    if !components.is_empty() {
        cmd::run(Command::new("rustup").args(["component", "add"]).args(&components))?;
    }
    if missing.contains(&Item::NightlyToolchain) {
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--component",
            "clippy",
        ]))
        .context("failed to install the eBPF toolchain; rustup downloads it from the Rust project's servers")?;
    } else if missing.contains(&Item::NightlyRustSrc) {
        cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", EBPF_TOOLCHAIN]))?;
    }
    if missing.contains(&Item::BpfLinker) {
        cmd::run(
            Command::new("cargo")
                .args(["install", "bpf-linker", "--locked", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
    }
    if missing.contains(&Item::InfernoCli) {
        cmd::run(Command::new("cargo").args(["install", "inferno", "--locked", "--version", INFERNO_VERSION]))?;
    }
    Ok(())
}

/// `program` run as root: directly when we are root, else through sudo.
/// Environment for apt is passed on the command line so sudo keeps it.
fn privileged(program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new(program);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    } else {
        let mut cmd = Command::new("sudo");
        cmd.args(["env", "DEBIAN_FRONTEND=noninteractive", program]);
        cmd
    }
}

/// Whether the effective uid is 0 (from `/proc/self/status`, to need no libc).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            // real, effective, saved, filesystem
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The installed version of a Debian package, or None.
fn apt_installed_version(pkg: &str) -> Result<Option<String>> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}\t${Version}", pkg])
        .output()
        .context("failed to run `dpkg-query`: `cargo xtask setup` supports Debian and Ubuntu; elsewhere install the packages it lists by hand")?;
    // dpkg-query exits 1 for a package it has never heard of.
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(match text.split_once('\t') {
        Some((status, version)) if status.starts_with("ii") => Some(version.trim().to_owned()),
        _ => None,
    })
}

/// First line of a `--version` output, or None if the command fails.
fn version_of(cmd: &mut Command) -> Option<String> {
    let out = cmd::stdout(cmd).ok()?;
    Some(out.lines().next().unwrap_or_default().trim().to_owned())
}

fn nightly_installed() -> Result<bool> {
    let out = cmd::stdout(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF object with nightly; install it from rustup.rs")?;
    Ok(out.lines().any(|l| l.starts_with(EBPF_TOOLCHAIN)))
}

fn nightly_has_rust_src() -> Result<bool> {
    let out =
        cmd::stdout(Command::new("rustup").args(["component", "list", "--toolchain", EBPF_TOOLCHAIN, "--installed"]))?;
    Ok(out.lines().any(|l| l.starts_with("rust-src")))
}
