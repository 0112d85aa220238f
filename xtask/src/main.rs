//! `cargo xtask`: stackwatch's task runner (aya-template style). It
//! installs the toolchain, builds the eBPF object and the binary, runs the
//! whole test suite with the lints, profiles this host as a demo, and hands
//! `bench` to the benchmark harness (the `stackwatch-bench` crate). It only
//! shells out to cargo, rustup, apt and the built binary; nothing here is
//! part of the shipped profiler.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use xtask::{build, build_ebpf, cargo, cmd, ebpf_cargo, setup, workspace_root};

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
    /// Write the manual pages, generated from the command line's
    /// definitions, into target/man (or --out DIR) and list them.
    Man {
        /// Where to write them [default: <target>/man].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build the packages under target/dist/: a .deb (binary, systemd unit, default config,
    /// docs, man pages) and a tarball with the same files.
    Dist,
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
    /// root): runs the `stackwatch-bench` harness with these arguments
    /// (`cargo xtask bench -- --help` lists them). A full run takes about 12
    /// minutes and updates docs/benchmarks.{md,json}.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for `stackwatch-bench` (`--quick`, `--only cpu,host`, …).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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
        Task::Dist => setup::ensure().and_then(|()| xtask::dist::dist()).map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Task::Run { duration, output_dir, record_args } => run(&duration, output_dir, &record_args),
        Task::Bench { args } => bench(&args),
        Task::Man { out } => {
            let dir = out.unwrap_or_else(|| xtask::target_dir().join("man"));
            setup::ensure().and_then(|()| xtask::man_pages(&dir)).map(|pages| {
                for page in pages {
                    println!("{}", page.display());
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
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
    // The packaging tests install what `dist` built.
    steps.push(("cargo xtask dist", xtask::dist::dist().map(drop)));
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
    // `#[ignore]`d tests here are the bodies that other tests run in a
    // child process (a changed umask or uid), not skipped ones.
    let skipped = if counts.ignored > 0 {
        format!(", {} ignored (run by other tests in a child process)", counts.ignored)
    } else {
        String::new()
    };
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

/// Runs the benchmark harness, a crate of its own so this runner stays
/// small; it builds the binary it measures unless given `--stackwatch`.
fn bench(args: &[String]) -> Result<()> {
    setup::ensure()?;
    let mut run = cargo();
    run.args(["run", "--quiet", "--release", "-p", "stackwatch-bench", "--bin", "stackwatch-bench", "--"]).args(args);
    cmd::run(&mut run)
}
