//! What unwinding with `.eh_frame` tables costs, side by side in
//! one run (these VMs are noisy: ratios, alternating order).
//!
//! - BPF time per sample on a program without frame pointers, and on the
//!   same program built with them (where every unwinder walks the whole
//!   stack): stackwatch `--unwind auto` (tables) and `--unwind fp`, and
//!   bpftrace's frame-pointer-only `@[ustack, kstack] = count()` on the
//!   same process.
//! - Table build time per file (libc, libstdc++, libpython, stackwatch's
//!   own 60 MB Rust binary), from the `unwind_tables` binary.
//! - A whole-host capture with libc, libstdc++, python3.11 and stackwatch
//!   itself in use: BPF map memory, peak RSS, tables loaded.
//! - The CPU a capture costs against `perf record -g` + inferno and
//!   `perf record --call-graph dwarf` + `perf script`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use xtask::cmd;

use crate::ext::{Context, Row, Section};
use crate::measure::{self, bpf_snapshot, wait_usage, BpfSnapshot};
use crate::report::Summary;

const ID: &str = "unwind";
const TITLE: &str = "Unwinding with .eh_frame tables";

pub(crate) fn run(ctx: &Context) -> Result<Section> {
    Ok(Section::measure(ID, TITLE, |section| fill(ctx, section)))
}

pub(crate) fn row(section: &mut Section, name: &str, value: String, target: Option<&str>, pass: Option<bool>) {
    eprintln!("bench:   {name}: {value}");
    section.rows.push(Row { name: name.to_owned(), value, target: target.map(str::to_owned), pass });
}

fn fill(ctx: &Context, section: &mut Section) -> Result<()> {
    let dir = ctx.work.join("unwind");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let src = xtask::workspace_root().join("tests/workloads");
    let nofp = build_nofp_workload(&dir)?;
    let fp_build = dir.join("unwind_work_fp");
    cmd::run(
        Command::new("gcc")
            .args(["-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-inline", "-pthread"])
            .arg("-o")
            .arg(&fp_build)
            .arg(src.join("unwind_work.c")),
    )?;
    let sort = dir.join("unwind_sort");
    cmd::run(
        Command::new("g++")
            .args(["-O2", "-g", "-fomit-frame-pointer", "-o"])
            .arg(&sort)
            .arg(src.join("unwind_sort.cpp")),
    )?;
    section.commands.push(
        "gcc -O2 -g -fomit-frame-pointer -fno-inline -pthread -o W tests/workloads/unwind_work.c; W cpu 0".to_owned(),
    );
    section.commands.push(
        "gcc -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -fno-inline -pthread -o Wfp tests/workloads/unwind_work.c; Wfp cpu 0"
            .to_owned(),
    );

    per_sample(ctx, section, &Workload::NoFramePointers, &nofp, &dir)?;
    per_sample(ctx, section, &Workload::FramePointers, &fp_build, &dir)?;
    let tables = unwind_tables_binary()?;
    table_builds(section, &tables)?;
    whole_host(ctx, section, &sort, &tables, &dir)?;
    capture_cpu(ctx, section, &nofp, &dir)?;
    Ok(())
}

/// `tests/workloads/unwind_work.c` built without frame pointers, into
/// `dir`: the native target of the unwinding and Python sections.
pub(crate) fn build_nofp_workload(dir: &Path) -> Result<PathBuf> {
    let nofp = dir.join("unwind_work_nofp");
    cmd::run(
        Command::new("gcc")
            .args(["-O2", "-g", "-fomit-frame-pointer", "-fno-inline", "-pthread", "-o"])
            .arg(&nofp)
            .arg(xtask::workspace_root().join("tests/workloads/unwind_work.c")),
    )?;
    Ok(nofp)
}

/// A running workload, killed on drop.
pub(crate) struct Child(pub(crate) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(cmd: &mut Command) -> Result<Child> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    Ok(Child(measure::spawn(cmd)?))
}

/// Whether the process has started exiting (its maps are being closed).
fn is_zombie_soon(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Runs `cmd` (a profiler that ends by itself) and returns its programs'
/// total BPF time (ns), its perf_event programs' run count and its CPU.
pub(crate) fn profile_once(cmd: &mut Command) -> Result<(u64, u64, measure::Usage)> {
    let mut results = profile_together(std::slice::from_mut(cmd))?;
    results.pop().context("no result for the one profiler run")
}

/// Samples of its target a stackwatch capture kept (`samples_collected` of
/// the one manifest in `out`). A profiler's perf events fire on every CPU
/// and its runs include other processes' ticks, filtered out cheaply: how
/// many depends on what else ran, so time per *run* swung 2× between
/// rounds. Time per kept sample is what a sample of the target costs.
pub(crate) fn manifest_samples(out: &Path) -> Result<u64> {
    let (path, manifest) = manifest(out)?;
    manifest["samples_collected"].as_u64().with_context(|| format!("`{}` has no samples_collected", path.display()))
}

/// Frames per user stack the table walk stored in the capture in `out`
/// (the manifest's `unwind.frames_per_walk`), if it walked any.
pub(crate) fn manifest_frames_per_walk(out: &Path) -> Result<Option<f64>> {
    Ok(manifest(out)?.1["unwind"]["frames_per_walk"].as_f64())
}

/// The one capture manifest in `out`, parsed.
fn manifest(out: &Path) -> Result<(std::path::PathBuf, serde_json::Value)> {
    for entry in fs::read_dir(out).with_context(|| format!("failed to read `{}`", out.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.contains("-capture-") && name.ends_with(".json") {
            let text = fs::read_to_string(&path)?;
            let manifest = serde_json::from_str(&text)?;
            return Ok((path, manifest));
        }
    }
    bail!("no capture manifest in `{}`", out.display())
}

/// Samples bpftrace counted: the sum of its map's values in its output
/// (`@[…]: N` lines).
fn bpftrace_samples(output: &Path) -> Result<u64> {
    let text = fs::read_to_string(output).with_context(|| format!("failed to read `{}`", output.display()))?;
    Ok(text.lines().filter_map(|l| l.rsplit_once("]: ")).filter_map(|(_, n)| n.trim().parse::<u64>().ok()).sum())
}

/// Runs `cmds` (profilers that end by themselves) at the same time and
/// returns each one's total BPF time (ns), perf_event run count and CPU.
/// Run side by side, they meet the same host conditions: on these VMs the
/// time per run of one program drifts 2–3× between runs minutes apart (a
/// trivial bpftrace `count()` measured 1.4–2.5 µs), which swamps
/// differences measured one after the other.
pub(crate) fn profile_together(cmds: &mut [Command]) -> Result<Vec<(u64, u64, measure::Usage)>> {
    let mut children = Vec::with_capacity(cmds.len());
    for cmd in cmds.iter_mut() {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        children.push(Some(measure::spawn(cmd)?));
    }
    let mut last = vec![BpfSnapshot::default(); cmds.len()];
    let mut usage = vec![None; cmds.len()];
    while children.iter().any(Option::is_some) {
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot.as_mut() else { continue };
            let pid = child.id();
            let snap = bpf_snapshot(pid);
            if snap.run_cnt() >= last[i].run_cnt() && !snap.progs.is_empty() {
                last[i] = snap;
            }
            if is_zombie_soon(pid) {
                let (status, used) = wait_usage(child)?;
                if !measure::exited_ok(status) {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read as _;
                        let _ = e.read_to_string(&mut err);
                    }
                    bail!("{} failed: {}: {err}", cmd::display(&cmds[i]), measure::describe_status(status));
                }
                let _ = child.try_wait();
                usage[i] = Some(used);
                *slot = None;
            }
        }
        if children.iter().any(Option::is_some) {
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(last
        .iter()
        .zip(usage)
        .map(|(snap, used)| {
            let ns = snap.progs.values().map(|p| p.run_time_ns).sum();
            (ns, snap.run_cnt(), used.unwrap_or_default())
        })
        .collect())
}

/// The median of the per-round ratios `a[i] / b[i]`, and their range.
pub(crate) fn paired_ratio(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&ratios), lo, hi)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    Summary::of(v.iter().copied()).map_or(f64::NAN, |s| s.median)
}

/// The two builds of `unwind_work.c` the per-sample cost is measured on.
enum Workload {
    /// `-fomit-frame-pointer`: the table walk follows every frame, the
    /// frame-pointer walks (stackwatch `fp`, bpftrace) stop after one or
    /// two, so they do less work and their stacks are wrong.
    NoFramePointers,
    /// Frame pointers everywhere in the program: every unwinder walks the
    /// whole stack (libc's frames excepted), so the ratios compare the
    /// cost of the same stacks.
    FramePointers,
}

impl Workload {
    fn label(&self) -> &'static str {
        match self {
            Self::NoFramePointers => "no frame pointers",
            Self::FramePointers => "frame pointers",
        }
    }

    fn tag(&self) -> &'static str {
        match self {
            Self::NoFramePointers => "nofp",
            Self::FramePointers => "fp-build",
        }
    }
}

/// BPF time per sample: tables vs frame pointers vs bpftrace, the three
/// profilers sampling the same process at the same time, in rounds.
fn per_sample(ctx: &Context, section: &mut Section, workload: &Workload, program: &Path, dir: &Path) -> Result<()> {
    let (label, tag) = (workload.label(), workload.tag());
    eprintln!("\nbench: {TITLE}: BPF time per sample, {label}");
    let _work = start(Command::new(program).args(["cpu", "0"]))?;
    let pid = _work.0.id().to_string();
    thread::sleep(Duration::from_millis(300));
    let secs = if ctx.quick { 4 } else { 8 };
    let bpftrace = which("bpftrace");
    let script =
        format!("profile:hz:99 /pid == {pid}/ {{ @[ustack, kstack] = count(); }} interval:s:{secs} {{ exit(); }}");
    let (mut auto, mut fp, mut bt) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = if ctx.quick { 1 } else { 3 * ctx.runs.max(1) };
    for round in 0..rounds {
        let mut who: Vec<&str> = vec!["auto", "fp"];
        if bpftrace.is_some() {
            who.push("bpftrace");
        }
        let n = who.len();
        who.rotate_left(round % n);
        // bpftrace's output file, stackwatch's output directory.
        let outputs: Vec<PathBuf> = who
            .iter()
            .map(|&w| {
                if w == "bpftrace" {
                    dir.join(format!("per-sample-{tag}-bpftrace-{round}.txt"))
                } else {
                    dir.join(format!("per-sample-{tag}-{w}-{round}"))
                }
            })
            .collect();
        let mut commands: Vec<Command> = who
            .iter()
            .zip(&outputs)
            .map(|(&w, out)| {
                if w == "bpftrace" {
                    let mut c = Command::new("bpftrace");
                    c.args(["-e", &script, "-o"]).arg(out);
                    c
                } else {
                    let mut c = Command::new(&ctx.stackwatch);
                    c.args(["record", "--pid", &pid, "--duration", &format!("{secs}s"), "--unwind", w])
                        .args(["--formats", "pprof", "--output-dir"])
                        .arg(out);
                    c
                }
            })
            .collect();
        let results = profile_together(&mut commands)?;
        for ((w, out), (total, runs, _)) in who.iter().zip(&outputs).zip(results) {
            let samples = if *w == "bpftrace" { bpftrace_samples(out)? } else { manifest_samples(out)? };
            let ns = total as f64 / samples.max(1) as f64;
            eprintln!(
                "bench:   {label}, round {round}, {w}: {ns:.0} ns per sample of the target ({samples} samples, {runs} runs)"
            );
            match *w {
                "auto" => auto.push(ns),
                "fp" => fp.push(ns),
                _ => bt.push(ns),
            }
        }
    }
    let (a, f) = (median(&auto), median(&fp));
    row(section, &format!("{label}: BPF ns per sample, --unwind auto (tables)"), format!("{a:.0} ns"), None, None);
    row(section, &format!("{label}: BPF ns per sample, --unwind fp"), format!("{f:.0} ns"), None, None);
    let (tf, tf_lo, tf_hi) = paired_ratio(&auto, &fp);
    row(
        section,
        &format!("{label}: tables ÷ fp (median of rounds)"),
        format!("{tf:.2}× ({tf_lo:.2}–{tf_hi:.2}×)"),
        None,
        None,
    );
    if bt.is_empty() {
        section.notes.push("bpftrace is not installed (`apt-get install bpftrace`): no baseline ratio".to_owned());
    } else {
        let b = median(&bt);
        row(section, &format!("{label}: BPF ns per sample, bpftrace ustack+kstack"), format!("{b:.0} ns"), None, None);
        let (r, lo, hi) = paired_ratio(&auto, &bt);
        row(
            section,
            &format!("{label}: tables ÷ bpftrace (median of rounds)"),
            format!("{r:.2}× ({lo:.2}–{hi:.2}×)"),
            Some("≤ 1.0×"),
            Some(r <= 1.0),
        );
        let (r, lo, hi) = paired_ratio(&fp, &bt);
        row(
            section,
            &format!("{label}: fp ÷ bpftrace (median of rounds)"),
            format!("{r:.2}× ({lo:.2}–{hi:.2}×)"),
            None,
            None,
        );
    }
    if matches!(workload, Workload::FramePointers) {
        return Ok(());
    }
    section.commands.push(format!(
        "stackwatch record --pid $PID --duration {secs}s --unwind auto  &  … --unwind fp  &  bpftrace …   # at the same time, {rounds} rounds; all programs' BPF run_time_ns (fdinfo) ÷ the target's samples kept (manifest; bpftrace: its map's counts)"
    ));
    section.commands.push(format!("bpftrace -e '{script}'"));
    Ok(())
}

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

/// Table build time and size per file, measured by `tables`
/// ([`unwind_tables_binary`]).
fn table_builds(section: &mut Section, tables: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: table builds");
    let python = cmd::stdout(Command::new("python3.11").args(["-c", "import sys, sysconfig; print(sysconfig.get_config_var('LIBDIR') + '/' + (sysconfig.get_config_var('LDLIBRARY') or ''))"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // The large Rust binary: stackwatch's release build (110 MB with its
    // DWARF, 9 MB of code). `unwind_tables` is as large but nearly all
    // DWARF: the linker dropped the code it does not call.
    let rust = xtask::build()?;
    let mut files = vec![
        "/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6".to_owned(),
        rust.display().to_string(),
    ];
    if Path::new(&python).is_file() {
        files.push(python);
    }
    let mut cmd = Command::new(tables);
    cmd.arg("--json").args(&files);
    let out = cmd::stdout(&mut cmd)?;
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let path = v["path"].as_str().unwrap_or("?");
        let name = Path::new(path).file_name().map_or(path.to_owned(), |n| n.to_string_lossy().into_owned());
        let mib = v["file_bytes"].as_f64().unwrap_or(0.0) / 1048576.0;
        let ms = v["ms"].as_f64().unwrap_or(f64::NAN);
        let (target, limit) = if name.starts_with("libc.so") {
            (Some("≤ 20 ms"), 20.0)
        } else if mib >= 40.0 {
            (Some("≤ 300 ms (50 MB Rust binary)"), 300.0)
        } else {
            (None, f64::INFINITY)
        };
        row(
            section,
            &format!("table build: {name} ({mib:.0} MB)"),
            format!("{ms:.1} ms, {} rows, {} KiB", v["rows"], v["bytes"].as_u64().unwrap_or(0) / 1024),
            target,
            target.map(|_| ms <= limit),
        );
    }
    section.commands.push(
        "cargo build --release -p stackwatch-bench --bin unwind_tables; target/release/unwind_tables --json FILE…"
            .to_owned(),
    );
    Ok(())
}

/// `unwind_tables` (`bench/src/bin`), built: a release build of a Rust
/// program with its DWARF, about 90 MB (of which 0.4 MB of code).
fn unwind_tables_binary() -> Result<PathBuf> {
    xtask::build_binary(
        &["--quiet", "--release", "-p", "stackwatch-bench", "--bin", "unwind_tables"],
        "release",
        "unwind_tables",
    )
}

/// A whole-host capture while libc, libstdc++ (`unwind_sort`), python3.11
/// and a busy large Rust binary (`unwind_tables --busy`, 90 MB with its
/// DWARF, building tables in a loop; `tables`, [`unwind_tables_binary`])
/// run: all four are sampled, their tables built and their frames named.
fn whole_host(ctx: &Context, section: &mut Section, sort: &Path, tables: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: whole-host capture");
    let secs = if ctx.quick { 10 } else { 30 };
    let _sort = start(Command::new(sort).arg("0"))?;
    let _python = start(Command::new("python3.11").args(["-c", measure::PYTHON_LOOP]))?;
    let _rust = start(Command::new(tables).arg("--busy").arg((secs + 30).to_string()).arg(tables))?;
    thread::sleep(Duration::from_millis(300));
    let out = dir.join("host");
    let mut command = Command::new(&ctx.stackwatch);
    command
        .args(["record", "--duration", &format!("{secs}s"), "--formats", "pprof", "--output-dir"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = measure::spawn(&mut command)?;
    let watcher = measure::BpfWatcher::start(child.id());
    let (status, usage) = wait_usage(&child)?;
    let _ = child.try_wait();
    let watch = watcher.finish();
    if !measure::exited_ok(status) {
        bail!("the whole-host capture failed: {}", measure::describe_status(status));
    }
    let map_mib = watch.max_map_bytes as f64 / 1048576.0;
    row(
        section,
        "whole host: BPF map memory (peak)",
        format!("{map_mib:.1} MiB"),
        Some("≤ 16 MiB"),
        Some(map_mib <= 16.0),
    );
    row(
        section,
        "whole host: stackwatch peak RSS",
        format!("{:.1} MiB", usage.max_rss_mib),
        Some("≤ 32 MiB"),
        Some(usage.max_rss_mib <= 32.0),
    );
    row(section, "whole host: capture CPU", format!("{:.2} s over {secs} s", usage.cpu_s()), None, None);
    let manifest = fs::read_dir(&out)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(".json")))
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if let Some(m) = manifest {
        let u = &m["unwind"];
        let t = &u["tables"];
        row(
            section,
            "whole host: unwind tables",
            format!(
                "{} files, {} KiB of {} KiB, built in {:.0} ms, {} processes",
                t["tables_loaded"],
                t["table_bytes"].as_u64().unwrap_or(0) / 1024,
                t["table_capacity_bytes"].as_u64().unwrap_or(0) / 1024,
                t["build_ms"].as_f64().unwrap_or(0.0),
                t["processes"]
            ),
            None,
            None,
        );
        row(
            section,
            "whole host: stacks",
            format!(
                "{} with tables, {} fell back, {} truncated {}",
                u["stacks_with_tables"], u["stacks_fell_back"], u["stacks_truncated"], u["truncated_by_reason"]
            ),
            None,
            None,
        );
    }
    section.commands.push(format!(
        "stackwatch record --duration {secs}s   # whole host, with unwind_sort, a python3.11 loop and `unwind_tables --busy` running"
    ));
    Ok(())
}

/// CPU of one 8 s capture of the no-frame-pointer workload: stackwatch vs
/// `perf record -g` + inferno and `perf record --call-graph dwarf` + perf script.
fn capture_cpu(ctx: &Context, section: &mut Section, nofp: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: capture CPU");
    let work = start(Command::new(nofp).args(["cpu", "0"]))?;
    let pid = work.0.id().to_string();
    thread::sleep(Duration::from_millis(300));
    let secs = "8";
    let cpu_of = |cmd: &mut Command| -> Result<f64> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = measure::spawn(cmd)?;
        let (status, usage) = wait_usage(&child)?;
        if !measure::exited_ok(status) {
            bail!("{} failed: {}", cmd::display(cmd), measure::describe_status(status));
        }
        Ok(usage.cpu_s())
    };
    let (mut sw, mut fp_perf, mut dwarf) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ctx.runs.max(1) {
        let out = dir.join(format!("cpu-{round}"));
        sw.push(cpu_of(
            Command::new(&ctx.stackwatch)
                .args(["record", "--pid", &pid, "--duration", &format!("{secs}s"), "--output-dir"])
                .arg(&out),
        )?);
        let data = dir.join(format!("perf-g-{round}.data"));
        let script = format!(
            "perf record -q -F 99 -g -p {pid} -o {d} -- sleep {secs} && perf script -i {d} | inferno-collapse-perf | inferno-flamegraph > {d}.svg",
            d = data.display()
        );
        fp_perf.push(cpu_of(Command::new("sh").args(["-c", &script]))?);
        let data = dir.join(format!("perf-dwarf-{round}.data"));
        let script = format!(
            "perf record -q -F 99 --call-graph dwarf -p {pid} -o {d} -- sleep {secs} && perf script -i {d} | inferno-collapse-perf | inferno-flamegraph > {d}.svg",
            d = data.display()
        );
        dwarf.push(cpu_of(Command::new("sh").args(["-c", &script]))?);
        let _ = fs::remove_file(&data);
    }
    drop(work);
    let (s, g, d) = (median(&sw), median(&fp_perf), median(&dwarf));
    row(section, "capture CPU, stackwatch (tables, pprof + svg)", format!("{s:.3} s"), None, None);
    row(section, "capture CPU, perf record -g + inferno", format!("{g:.3} s"), None, None);
    row(section, "capture CPU, perf record --call-graph dwarf + inferno", format!("{d:.3} s"), None, None);
    row(section, "stackwatch ÷ perf -g", format!("{:.2}×", s / g), Some("≤ 0.5×"), Some(s <= 0.5 * g));
    row(section, "stackwatch ÷ perf dwarf", format!("{:.2}×", s / d), None, None);
    section.commands.push(format!("perf record -F 99 -g|--call-graph dwarf -p $PID -- sleep {secs} && perf script | inferno-collapse-perf | inferno-flamegraph"));
    Ok(())
}
