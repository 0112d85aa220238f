//! `stackwatch-bench` (run by `cargo xtask bench`): stackwatch side by side with `perf record` (+
//! `perf script | inferno-collapse-perf | inferno-flamegraph` for the same
//! SVG), on the same workload, in the same run, alternating profilers.
//!
//! Sections: a CPU-bound workload on every CPU captured for 8 s at 99 and
//! 999 Hz; a whole-host capture (60 s, 10 s with `--quick`); the idle `watch`
//! daemon; the flight recorder over 10 minutes ([`history`]); and the
//! sections of other features ([`ext`]). Start and stop
//! latency and sample fidelity come from the CPU runs. Every figure is
//! measured, never asserted: results go to `target/bench/results-<time>.json`
//! and `.md`, and a full run also to `docs/benchmarks.{json,md}`.
//!
//! The host is shared and noisy (±4 % throughput between identical runs on
//! a 2-vCPU VM), so the profilers' costs are measured directly (their CPU
//! time and peak RSS from `wait4`, their BPF time from fdinfo) and the
//! workload's throughput loss is reported with the spread of its alone runs.
#![expect(unused_crate_dependencies, reason = "the stackwatch library is symbolize_bench's")]

mod events;
mod ext;
mod history;
mod measure;
mod python;
mod report;
mod runs;
mod unwind;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use xtask::cmd;

use ext::Context;
use runs::{Burner, Run, Spec, Target};

/// The capture length the targets are stated for.
const CAPTURE: Duration = Duration::from_secs(8);
const HOST_CAPTURE: Duration = Duration::from_secs(60);
const HOST_CAPTURE_QUICK: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);
const IDLE_QUICK: Duration = Duration::from_secs(10);
/// Alone windows: long enough for a stable rate, shorter than a 60 s capture
/// so a full run stays well under 15 minutes.
const MAX_ALONE: Duration = Duration::from_secs(10);
/// Between runs: let the previous profiler's exit settle.
const PAUSE: Duration = Duration::from_millis(500);

/// Which parts to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// 8 s captures of a CPU-bound workload, 99 and 999 Hz, with start/stop latency and fidelity.
    Cpu,
    /// A whole-host capture.
    Host,
    /// The idle `watch` daemon.
    Idle,
    /// Off-CPU and memory profile overhead.
    OffcpuMemory,
    /// Symbolization throughput.
    Symbolize,
    /// Unwinding with .eh_frame tables: BPF time per sample against bpftrace, table builds, whole-host memory.
    Unwind,
    /// The flight recorder (`watch --history`) over 10 minutes of whole-host churn.
    History,
    /// Python stacks: BPF time per sample against a native target, and py-spy side by side.
    Python,
}

/// Measure stackwatch side by side with `perf record` + inferno (as root):
/// profiler CPU and peak RSS, BPF time per sample and map memory,
/// throughput loss, start and stop latency, fidelity, the idle daemon.
/// Writes target/bench/results-<time>.{json,md}; a full run also updates
/// docs/benchmarks.{md,json}. Takes about 30 minutes (10 of them the flight recorder, 6 the Python section).
#[derive(Parser)]
#[command(name = "stackwatch-bench", bin_name = "cargo xtask bench")]
struct Options {
    /// Shorter whole-host capture and idle window (10 s instead of 60 s),
    /// for development; not published to docs/.
    #[arg(long)]
    quick: bool,
    /// Runs of each profiler per comparison (alternating).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these parts, comma-separated; not published to docs/.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Measure this stackwatch binary instead of building one.
    #[arg(long, value_name = "PATH")]
    stackwatch: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match bench(Options::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Everything one bench run produced: `docs/benchmarks.json`.
#[derive(Serialize)]
pub struct Results {
    /// Bumped when a field changes meaning.
    pub schema: u32,
    pub date: String,
    pub git_commit: String,
    /// Whether the tree had uncommitted changes.
    pub git_dirty: bool,
    pub machine: Machine,
    pub quick: bool,
    pub runs: usize,
    pub comparisons: Vec<Comparison>,
    pub idle: Option<runs::Idle>,
    pub sections: Vec<ext::Section>,
    pub targets: Vec<report::TargetCheck>,
}

#[derive(Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub os: String,
    pub mem_total_mib: u64,
    pub perf_version: String,
    pub stackwatch_binary_mib: f64,
    /// `built from the tree` or the `--stackwatch` path given.
    pub stackwatch_binary: String,
    /// `kernel.perf_event_max_stack`: the deepest stack either profiler reads.
    pub perf_event_max_stack: String,
}

/// stackwatch and perf on one capture, with the workload alone for reference.
#[derive(Serialize)]
pub struct Comparison {
    pub id: String,
    pub title: String,
    pub frequency: u64,
    pub capture_s: f64,
    pub target: Target,
    pub workload: String,
    pub commands: Vec<String>,
    pub runs: Vec<Run>,
    pub summary: report::ComparisonSummary,
}

fn bench(options: Options) -> Result<()> {
    if !xtask::setup::is_root() {
        bail!(
            "the benchmark loads eBPF programs and runs `perf record -a`: run it as root (`sudo -E cargo xtask bench`)"
        );
    }
    check_tools()?;
    let quick = options.quick;
    let runs_each = options.runs.max(1);
    let parts = if options.only.is_empty() {
        vec![
            Part::Cpu,
            Part::Host,
            Part::Idle,
            Part::OffcpuMemory,
            Part::Symbolize,
            Part::Unwind,
            Part::Python,
            Part::History,
        ]
    } else {
        options.only.clone()
    };
    // Only a full run replaces the published figures.
    let publish = !quick && options.only.is_empty() && runs_each >= 3;

    let stamp = cmd::stdout(Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?.trim().to_owned();
    let bench_dir = xtask::target_dir().join("bench");
    let work = bench_dir.join(format!("run-{stamp}"));
    prune_old_runs(&bench_dir);
    fs::create_dir_all(&work).with_context(|| format!("failed to create `{}`", work.display()))?;

    let built = match &options.stackwatch {
        Some(path) => path.clone(),
        None => {
            xtask::setup::ensure()?;
            xtask::build_shipped()?
        }
    };
    // A private copy: other builds in this tree may replace the binary mid-run.
    let stackwatch = work.join("stackwatch");
    fs::copy(&built, &stackwatch).with_context(|| format!("failed to copy `{}`", built.display()))?;
    let burn = build_workload(&work)?;
    let ctx = Context { stackwatch, burn, work: work.clone(), quick, runs: runs_each, nproc: measure::nproc() };

    let _stats = BpfStats::enable()?;
    let mut machine = machine(&ctx.stackwatch)?;
    machine.stackwatch_binary = match &options.stackwatch {
        Some(path) => path.display().to_string(),
        None => "built from the tree (`--profile release-lto`, as packaged)".to_owned(),
    };
    let mut comparisons = Vec::new();
    if parts.contains(&Part::Cpu) {
        for frequency in [99, 999] {
            let spec = Spec { frequency, capture: CAPTURE, target: Target::Pid };
            comparisons.push(compare(&ctx, &format!("cpu-{frequency}hz"), spec)?);
        }
    }
    if parts.contains(&Part::Host) {
        let capture = if quick { HOST_CAPTURE_QUICK } else { HOST_CAPTURE };
        let spec = Spec { frequency: 99, capture, target: Target::Host };
        comparisons.push(compare(&ctx, "host-99hz", spec)?);
    }
    let idle = if parts.contains(&Part::Idle) {
        let window = if quick { IDLE_QUICK } else { IDLE };
        Some(runs::idle_daemon(&ctx.stackwatch, window, &work.join("idle"))?)
    } else {
        None
    };
    let mut sections = Vec::new();
    type SectionFn = fn(&Context) -> Result<ext::Section>;
    let hooks: [(Part, SectionFn); 5] = [
        (Part::OffcpuMemory, ext::offcpu_memory),
        (Part::Symbolize, ext::symbolize),
        (Part::Unwind, unwind::run),
        (Part::Python, python::run),
        (Part::History, history::run),
    ];
    for (part, run) in hooks {
        if parts.contains(&part) {
            sections.push(run(&ctx)?);
        }
    }

    let (git_commit, git_dirty) = git_state();
    let mut results = Results {
        schema: 1,
        date: cmd::stdout(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))?.trim().to_owned(),
        git_commit,
        git_dirty,
        machine,
        quick,
        runs: runs_each,
        comparisons,
        idle,
        sections,
        targets: Vec::new(),
    };
    results.targets = report::targets(&results);

    let docs = xtask::workspace_root().join("docs");
    let previous = fs::read_to_string(docs.join("benchmarks.json")).ok();
    let markdown = report::markdown(&results, previous.as_deref());
    let json = serde_json::to_string_pretty(&results).context("failed to serialize the results")?;
    let json_path = bench_dir.join(format!("results-{stamp}.json"));
    let md_path = bench_dir.join(format!("results-{stamp}.md"));
    write(&json_path, &(json.clone() + "\n"))?;
    write(&md_path, &markdown)?;
    eprintln!();
    println!("{}", report::targets_table(&results.targets));
    eprintln!("bench: results in `{}` and `{}`", json_path.display(), md_path.display());
    if publish {
        write(&docs.join("benchmarks.json"), &(json + "\n"))?;
        report::update_docs(&docs.join("benchmarks.md"), &markdown)?;
        eprintln!("bench: published to `docs/benchmarks.md` and `docs/benchmarks.json`");
    } else {
        eprintln!("bench: not published to docs/ (only a full run is: no --quick, no --only, --runs 3 or more)");
    }
    Ok(())
}

/// Alternating runs of both profilers, with the workload alone before each
/// pair; the order within a pair alternates too, so a drift of the host
/// favours neither.
fn compare(ctx: &Context, id: &str, spec: Spec) -> Result<Comparison> {
    let threads = ctx.nproc;
    let (what, title) = match spec.target {
        Target::Pid => (
            "--pid",
            format!(
                "CPU-bound workload on all {threads} CPUs, {} s capture at {} Hz",
                spec.capture.as_secs(),
                spec.frequency
            ),
        ),
        Target::Host => (
            "whole host",
            format!(
                "Whole host, {} s capture at {} Hz (the same workload running)",
                spec.capture.as_secs(),
                spec.frequency
            ),
        ),
    };
    eprintln!("\nbench: {title} ({what}), {} runs each", ctx.runs);
    let dir = ctx.work.join(id);
    let mut burner = Burner::start(&ctx.burn, threads)?;
    let alone_for = spec.capture.min(MAX_ALONE);
    let mut all: Vec<Run> = Vec::new();
    for round in 0..ctx.runs {
        all.push(runs::alone(&mut burner, round, alone_for, &dir.join(format!("alone-{round}")))?);
        let stackwatch_first = round % 2 == 0;
        for first in [true, false] {
            std::thread::sleep(PAUSE);
            let run = if first == stackwatch_first {
                runs::stackwatch(&ctx.stackwatch, &mut burner, spec, round, &dir.join(format!("stackwatch-{round}")))?
            } else {
                runs::perf(&mut burner, spec, round, &dir.join(format!("perf-{round}")))?
            };
            eprintln!("bench:   {}", report::run_line(&run));
            all.push(run);
        }
    }
    drop(burner);
    let target_arg = match spec.target {
        Target::Pid => "--pid $PID ",
        Target::Host => "",
    };
    let perf_target = match spec.target {
        Target::Pid => "-p $PID",
        Target::Host => "-a",
    };
    let commands = vec![
        format!("gcc {} -o burn bench/workloads/burn.c", WORKLOAD_CFLAGS.join(" ")),
        format!("./burn {threads}   # the workload: $PID; a line on its stdin prints its progress"),
        format!(
            "stackwatch record {target_arg}--duration 1h --frequency {} --output-dir DIR   # SIGINT after {} s",
            spec.frequency,
            spec.capture.as_secs()
        ),
        format!(
            "perf record -F {} -g {perf_target} -k CLOCK_MONOTONIC -o DIR/perf.data   # SIGINT after {} s",
            spec.frequency,
            spec.capture.as_secs()
        ),
        "perf script -i DIR/perf.data | inferno-collapse-perf > DIR/perf.folded && inferno-flamegraph DIR/perf.folded > DIR/perf.svg".to_owned(),
    ];
    let summary = report::ComparisonSummary::of(&all);
    Ok(Comparison {
        id: id.to_owned(),
        title,
        frequency: spec.frequency,
        capture_s: spec.capture.as_secs_f64(),
        target: spec.target,
        workload: format!("bench/workloads/burn.c, {threads} threads"),
        commands,
        runs: all,
        summary,
    })
}

/// Run directories kept under `target/bench/` (each holds a copy of the
/// binary and the perf.data files: 70 MiB or more); results files are kept.
const KEEP_RUNS: usize = 2;

/// Deletes all but the newest [`KEEP_RUNS`] `run-*` directories, so that
/// with this run there are at most `KEEP_RUNS + 1`.
fn prune_old_runs(bench_dir: &Path) {
    let Ok(entries) = fs::read_dir(bench_dir) else { return };
    let mut runs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run-")))
        .collect();
    // `run-<UTC time>` names sort by time.
    runs.sort();
    for old in runs.iter().rev().skip(KEEP_RUNS) {
        eprintln!("$ rm -r {}", old.display());
        if let Err(e) = fs::remove_dir_all(old) {
            eprintln!("bench: failed to remove `{}`: {e}", old.display());
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    }
    fs::write(path, text).with_context(|| format!("failed to write `{}`", path.display()))
}

fn check_tools() -> Result<()> {
    let missing = xtask::setup::missing(true, false)?;
    let needed: Vec<String> = missing
        .iter()
        .filter(|item| {
            matches!(item, xtask::setup::Item::InfernoCli)
                || matches!(item, xtask::setup::Item::Apt(p) if ["linux-perf", "bpftool", "gcc"].contains(p))
        })
        .map(ToString::to_string)
        .collect();
    if !needed.is_empty() {
        bail!("missing {}; run `cargo xtask setup --bench`", needed.join(", "));
    }
    Ok(())
}

/// Frame pointers everywhere, so both profilers unwind it the same way.
const WORKLOAD_CFLAGS: &[&str] =
    &["-O1", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-inline", "-pthread"];

/// Builds `bench/workloads/burn.c` into `work`.
fn build_workload(work: &Path) -> Result<PathBuf> {
    let source = xtask::workspace_root().join("bench/workloads/burn.c");
    let out = work.join("burn");
    let mut gcc = Command::new("gcc");
    gcc.args(WORKLOAD_CFLAGS).args(["-Wall", "-Wextra", "-o"]).arg(&out).arg(&source);
    cmd::run(&mut gcc)?;
    Ok(out)
}

/// Keeps BPF run-time statistics on for the run: `BPF_ENABLE_STATS` returns
/// an fd, and the kernel counts `run_time_ns`/`run_cnt` while any such fd is
/// open. Unlike writing `kernel.bpf_stats_enabled`, nothing else on the host
/// can turn it off under us (another script resetting the sysctl to 0), and
/// closing the fd leaves the sysctl as it was.
struct BpfStats {
    _fd: std::os::fd::OwnedFd,
}

impl BpfStats {
    fn enable() -> Result<BpfStats> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr, zeroed; `enable_stats.type` = BPF_STATS_RUN_TIME (0).
        let attr = [0u64; 16];
        eprintln!("bench: bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME) for the run");
        // SAFETY: the attr buffer is valid for its size and outlives the call.
        let fd = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), std::mem::size_of_val(&attr) as libc::c_uint)
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            bail!(
                "failed to enable BPF run-time statistics (BPF_ENABLE_STATS needs Linux 5.8 and CAP_SYS_ADMIN): {err}"
            );
        }
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        Ok(BpfStats { _fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as std::os::fd::RawFd) } })
    }
}

fn machine(stackwatch: &Path) -> Result<Machine> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_default();
    let perf_version = cmd::stdout(Command::new("perf").arg("--version")).unwrap_or_default().trim().to_owned();
    let size = fs::metadata(stackwatch).map(|m| m.len()).unwrap_or(0);
    Ok(Machine {
        nproc: measure::nproc(),
        cpu_model,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        os,
        mem_total_mib,
        perf_version,
        stackwatch_binary_mib: size as f64 / (1024.0 * 1024.0),
        stackwatch_binary: String::new(),
        perf_event_max_stack: fs::read_to_string("/proc/sys/kernel/perf_event_max_stack")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    })
}

/// HEAD and whether the tree differs from it (read-only git commands).
fn git_state() -> (String, bool) {
    let root = xtask::workspace_root();
    let commit = cmd::stdout(Command::new("git").arg("-C").arg(&root).args(["rev-parse", "--short=12", "HEAD"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let dirty =
        cmd::stdout(Command::new("git").arg("-C").arg(&root).args(["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false);
    (commit, dirty)
}
