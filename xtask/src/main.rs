//! `cargo xtask`: stackwatch's build orchestration (aya-template style).
//! It installs the toolchain, builds the eBPF object and the binary, runs the
//! whole test suite with the lints, profiles this host as a demo, and
//! benchmarks stackwatch against `perf record`. It only shells out to cargo,
//! rustup, apt, the built binary and (for `bench`) perf, bpftool and
//! inferno; nothing here is part of the shipped profiler.

mod bench;
mod cmd;
mod setup;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

/// The eBPF crate and its one binary (`[[bin]] name` in profiler-ebpf/Cargo.toml).
const EBPF_PACKAGE: &str = "profiler-ebpf";
const EBPF_BIN: &str = "profiler";
const EBPF_TARGET: &str = if cfg!(target_endian = "big") { "bpfeb-unknown-none" } else { "bpfel-unknown-none" };

#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", about = "Build, test and try out stackwatch")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: apt packages (LLVM 22, gcc,
    /// Go, bpftool, libcap2-bin, perf), bpf-linker, nightly Rust with rust-src.
    /// Idempotent: only missing items are installed.
    Setup {
        /// Also install the benchmark baseline tools (inferno's command-line tools).
        #[arg(long)]
        bench: bool,
        /// Only report what is missing (exit 1 if anything is); install nothing.
        #[arg(long)]
        check: bool,
    },
    /// Build the eBPF object alone (nightly, -Z build-std=core, bpf-linker)
    /// and print its path.
    BuildEbpf,
    /// Build everything in release mode; leaves target/release/stackwatch.
    Build,
    /// Run every test (unit, integration, end-to-end as root) against the
    /// release binary, then clippy and rustfmt. Any failure exits non-zero.
    Test {
        /// Skip clippy and rustfmt (e.g. while iterating on one test).
        #[arg(long)]
        no_lint: bool,
        /// Arguments for the test binaries, after `--` (e.g. a name filter).
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Profile the whole host with the release binary and print the files
    /// written and the top functions.
    Run {
        /// How long to record.
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Where to write the profiles [default: <workspace>/stackwatch-out].
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Further `stackwatch record` arguments, after `--`.
        #[arg(last = true)]
        record_args: Vec<String>,
    },
    /// Measure stackwatch side by side with `perf record` + inferno (as
    /// root): profiler CPU and peak RSS, BPF time per sample and map memory,
    /// throughput loss, start and stop latency, fidelity, the idle daemon.
    /// Writes target/bench/results-<time>.{json,md}; a full run also
    /// updates docs/benchmarks.{md,json}. Takes about 12 minutes.
    Bench {
        /// Shorter whole-host capture and idle window (10 s instead of 60 s),
        /// for development; not published to docs/.
        #[arg(long)]
        quick: bool,
        /// Runs of each profiler per comparison (alternating).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these parts, comma-separated; not published to docs/.
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<bench::Part>,
        /// Measure this stackwatch binary instead of building one.
        #[arg(long, value_name = "PATH")]
        stackwatch: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup { bench, check } => setup::setup(bench, check),
        Task::BuildEbpf => build_ebpf().map(|path| println!("{}", path.display())),
        Task::Build => setup::ensure().and_then(|()| build()).map(|bin| {
            println!("{}", bin.display());
        }),
        Task::Test { no_lint, test_args } => test(no_lint, &test_args),
        Task::Run { duration, output_dir, record_args } => run(&duration, output_dir, &record_args),
        Task::Bench { quick, runs, only, stackwatch } => bench::bench(bench::Options { quick, runs, only, stackwatch }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root, where every cargo command runs.
fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map_or_else(|| xtask_dir.join(".."), Path::to_path_buf)
}

/// Cargo's target directory (`CARGO_TARGET_DIR` if set).
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `cargo` run in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo +nightly <sub>` for the eBPF target, set up as aya-build 0.2.0
/// does in `aya_build::build_ebpf`, so the result matches the object that
/// profiler-user's build.rs embeds.
fn ebpf_cargo(subcommand: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["+nightly", subcommand, "--package", EBPF_PACKAGE, "--bins", "--release"]).args([
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

fn build_ebpf() -> Result<PathBuf> {
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
fn build() -> Result<PathBuf> {
    cmd::run(cargo().args(["build", "--release", "--workspace"]))?;
    let bin = target_dir().join("release").join("stackwatch");
    if !bin.is_file() {
        bail!("the build succeeded but `{}` is missing", bin.display());
    }
    Ok(bin)
}

/// Runs every step even after a failure, so one CI run shows all of them.
///
/// End-to-end tests are not run with `--test-threads=1`: each takes the
/// harness's machine-wide lock (`stackwatch_tests::e2e_guard`), which
/// serializes them across threads and test binaries while the cheap unit
/// tests keep running in parallel.
fn test(no_lint: bool, test_args: &[String]) -> Result<()> {
    setup::ensure()?;
    let bin = build()?;
    let bin = bin.canonicalize().with_context(|| format!("failed to resolve `{}`", bin.display()))?;

    let mut steps: Vec<(&str, Result<()>)> = Vec::new();
    let mut tests = cargo();
    // --no-fail-fast: every test binary runs even after one fails, so a
    // failure in one crate does not hide the results of the others.
    tests.args(["test", "--workspace", "--no-fail-fast"]).env("STACKWATCH_BIN", &bin).env("RUST_BACKTRACE", "1");
    if !test_args.is_empty() {
        tests.arg("--").args(test_args);
    }
    let (counts, result) = cmd::run_tests(&mut tests);
    steps.push(("cargo test --workspace --no-fail-fast", result));

    if !no_lint {
        steps.push((
            "clippy (host)",
            cmd::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])),
        ));
        // The eBPF crate is linted separately for its own target: in a
        // host build its programs are cfg'd out, and features would unify.
        steps.push(("clippy (eBPF)", cmd::run(ebpf_cargo("clippy").args(["--", "-D", "warnings"]))));
        steps.push(("rustfmt", cmd::run(cargo().args(["fmt", "--all", "--check"]))));
    }

    eprintln!();
    eprintln!("xtask test summary:");
    let mut failed = Vec::new();
    for (name, result) in &steps {
        match result {
            Ok(()) => eprintln!("  ok      {name}"),
            Err(err) => {
                eprintln!("  FAILED  {name}: {err:#}");
                failed.push(*name);
            }
        }
    }
    // A plain closing line with the libtest totals over all test binaries.
    let skipped = if counts.ignored > 0 { format!(", {} skipped", counts.ignored) } else { String::new() };
    println!("tests: {} passed, {} failed{skipped}", counts.passed, counts.failed);
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

fn run(duration: &str, output_dir: Option<PathBuf>, record_args: &[String]) -> Result<()> {
    setup::ensure()?;
    let bin = build()?;
    let dir = output_dir.unwrap_or_else(|| workspace_root().join("stackwatch-out"));
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    // Profiling needs root (or CAP_BPF + CAP_PERFMON); go through sudo when
    // not root, and stackwatch hands the files back to the invoking user.
    let mut record = if setup::is_root() {
        Command::new(&bin)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(&bin);
        sudo
    };
    record.args(["record", "--duration", duration, "--output-dir"]).arg(&dir).args(record_args);
    cmd::run(&mut record)
}
