//! What Python stacks cost, and whether they agree with py-spy, side by
//! side in one run (these VMs are noisy: medians, alternating order).
//!
//! - BPF time per sample of a Python target (Debian's `python3.11`, no
//!   frame pointers: native frames by `.eh_frame` tables, Python frames by
//!   the interpreter walk) against a native program without frame pointers
//!   (the tables alone), both captured with `stackwatch record --pid`.
//! - py-spy (from PyPI) on the same script at the same rate: the share of
//!   samples whose innermost Python function is each of the script's
//!   functions, and each profiler's own CPU time (`wait4`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use xtask::cmd;

use crate::ext::{Context, Section};
use crate::unwind::{
    build_nofp_workload, manifest_frames_per_walk, manifest_samples, median, paired_ratio, profile_once, row, start,
    which,
};

const ID: &str = "python";
const TITLE: &str = "Python stacks";
/// Debian's interpreter: built without frame pointers, installed by setup.
const PYTHON: &str = "/usr/bin/python3.11";
/// The workload's module: functions are `py_split.<name>` in stackwatch.
const MODULE: &str = "py_split";
/// Largest allowed gap between the two profilers' shares of a top function.
const SHARE_POINTS: f64 = 5.0;

pub(crate) fn run(ctx: &Context) -> Result<Section> {
    Ok(Section::measure(ID, TITLE, |section| fill(ctx, section)))
}

fn fill(ctx: &Context, section: &mut Section) -> Result<()> {
    let dir = ctx.work.join("python");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    if !Path::new(PYTHON).exists() {
        bail!("`{PYTHON}` is missing (`cargo xtask setup` installs Debian's python3.11)");
    }
    let nofp = build_nofp_workload(&dir)?;
    let script = xtask::workspace_root().join("tests/workloads/python/py_split.py");
    section.commands.push(format!("{PYTHON} tests/workloads/python/py_split.py   # the Python target"));
    per_sample(ctx, section, &nofp, &script, &dir)?;
    against_py_spy(ctx, section, &script, &dir)?;
    Ok(())
}

fn secs(ctx: &Context) -> u64 {
    if ctx.quick {
        4
    } else {
        8
    }
}

/// Length of each py-spy comparison capture: long enough that stackwatch's
/// fixed cost per capture (verifying its programs, unwind tables, reading
/// the interpreter's symbols: about 0.18 s) does not hide what sampling
/// costs each.
fn versus_secs(ctx: &Context) -> u64 {
    if ctx.quick {
        4
    } else {
        20
    }
}

fn record(ctx: &Context, pid: u32, out: &Path, formats: &str) -> Command {
    record_for(ctx, pid, out, formats, secs(ctx))
}

fn record_for(ctx: &Context, pid: u32, out: &Path, formats: &str, secs: u64) -> Command {
    let mut c = Command::new(&ctx.stackwatch);
    c.args(["record", "--pid", &pid.to_string(), "--duration", &format!("{secs}s"), "--formats", formats])
        .arg("--output-dir")
        .arg(out);
    c
}

/// BPF time per sample: the Python target against a native one, one after
/// the other in each round (order alternating), judged on the median of
/// the rounds' ratios. Not at the same time: each stackwatch's perf events
/// fire on every CPU, so with both targets busy half of each one's runs
/// would be the other target's ticks, filtered out, charged to both alike,
/// which pulls the ratio towards 1.
fn per_sample(ctx: &Context, section: &mut Section, nofp: &Path, script: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: BPF time per sample");
    // Three targets, one after the other in a rotating order: the
    // one-thread script has the native target's shape (one thread, a
    // caller and two hot leaves 3:1), so its ratio is the like-for-like
    // one; the three-thread script adds a sort calling a Python key function
    // through C (deeper native stacks) and a sleeping thread.
    const TARGETS: [&str; 3] = ["python", "python-single", "native"];
    let mut ns_of: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut frames_of: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let rounds = if ctx.quick { 1 } else { 3 * ctx.runs.max(1) };
    for round in 0..rounds {
        let mut order = TARGETS;
        order.rotate_left(round % TARGETS.len());
        for who in order {
            let work = match who {
                "python" => start(Command::new(PYTHON).arg(script))?,
                "python-single" => start(Command::new(PYTHON).arg(script).arg("--single"))?,
                _ => start(Command::new(nofp).args(["cpu", "0"]))?,
            };
            thread::sleep(Duration::from_millis(500));
            let out = dir.join(format!("per-sample-{who}-{round}"));
            let (total, runs, _) = profile_once(&mut record(ctx, work.0.id(), &out, "pprof"))?;
            let samples = manifest_samples(&out)?;
            let frames = manifest_frames_per_walk(&out)?.unwrap_or(0.0);
            let ns = total as f64 / samples.max(1) as f64;
            eprintln!(
                "bench:   round {round}, {who}: {ns:.0} ns per sample of the target ({samples} samples, {runs} runs, {frames:.1} native frames per stack)"
            );
            ns_of.entry(who).or_default().push(ns);
            frames_of.entry(who).or_default().push(frames);
        }
    }
    let (python, single, native) = (&ns_of["python"], &ns_of["python-single"], &ns_of["native"]);
    let (p, p1, n) = (median(python), median(single), median(native));
    row(
        section,
        "BPF ns per sample, Python target, one thread (py_split.py --single: tables + interpreter walk)",
        format!("{p1:.0} ns"),
        None,
        None,
    );
    row(
        section,
        "BPF ns per sample, Python target, three threads (py_split.py: a sort calling Python through C, a sleeper)",
        format!("{p:.0} ns"),
        None,
        None,
    );
    row(section, "BPF ns per sample, native target without frame pointers (tables)", format!("{n:.0} ns"), None, None);
    // What a sample's cost follows: the native frames the table walk
    // stores (the interpreter's own C stack is deep), then the Python walk.
    let (pf, pf1, nf) =
        (median(&frames_of["python"]), median(&frames_of["python-single"]), median(&frames_of["native"]));
    row(
        section,
        "native frames per stack (manifest `unwind.frames_per_walk`), Python one thread / three threads / native",
        format!("{pf1:.1} / {pf:.1} / {nf:.1}"),
        None,
        None,
    );
    let (r1, lo1, hi1) = paired_ratio(single, native);
    row(
        section,
        "Python one thread ÷ native, like for like (median of rounds)",
        format!("{r1:.2}× ({lo1:.2}–{hi1:.2}×)"),
        Some("≤ 2.0×"),
        Some(r1 <= 2.0),
    );
    let (r, lo, hi) = paired_ratio(python, native);
    row(section, "Python three threads ÷ native (median of rounds)", format!("{r:.2}× ({lo:.2}–{hi:.2}×)"), None, None);
    section.commands.push(format!(
        "stackwatch record --pid PY --duration {s}s --formats pprof   # PY: py_split.py, then py_split.py --single, then the native target, one after the other in rotating order, {rounds} rounds; all programs' BPF run time (fdinfo) ÷ the target's samples kept (manifest)",
        s = secs(ctx),
    ));
    Ok(())
}

/// py-spy from `PATH`, or installed from PyPI into the run's directory.
fn py_spy(dir: &Path) -> Result<PathBuf> {
    if let Some(found) = which("py-spy") {
        return Ok(found);
    }
    let target = dir.join("py-spy");
    cmd::run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "--target"]).arg(&target).arg("py-spy"))
        .context("failed to install py-spy from PyPI")?;
    let bin = target.join("bin/py-spy");
    if !bin.is_file() {
        bail!("pip installed py-spy but `{}` is missing", bin.display());
    }
    Ok(bin)
}

/// Samples by innermost function of the workload's script (`other` when a
/// stack has none), from folded lines: `frame;frame;… count`. `name_of`
/// turns a frame into a function of the script, if it is one.
fn shares(text: &str, name_of: impl Fn(&str) -> Option<String>) -> (BTreeMap<String, f64>, f64) {
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    for line in text.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.trim().parse::<f64>() else { continue };
        let leaf = stack.split(';').rev().find_map(&name_of).unwrap_or_else(|| "other".to_owned());
        *by.entry(leaf).or_default() += count;
        total += count;
    }
    for v in by.values_mut() {
        *v = 100.0 * *v / total.max(1.0);
    }
    (by, total)
}

/// `py_split.hot_a` → `hot_a`.
fn stackwatch_name(frame: &str) -> Option<String> {
    frame.strip_prefix(MODULE)?.strip_prefix('.').map(str::to_owned)
}

/// `hot_a (py_split.py:20)` (py-spy's frames) → `hot_a`.
fn py_spy_name(frame: &str) -> Option<String> {
    let (name, place) = frame.split_once(" (")?;
    place.contains(&format!("{MODULE}.py")).then(|| name.trim().to_owned())
}

/// What one side-by-side run of stackwatch and py-spy gave.
struct SideBySide {
    stackwatch: BTreeMap<String, f64>,
    py_spy: BTreeMap<String, f64>,
    samples: (f64, f64),
    cpu: (f64, f64),
    /// Share of the process's CPU time (`/proc/PID/task/*/stat`, over the
    /// whole comparison) used by threads other than the main one.
    other_threads_cpu: f64,
}

/// py-spy and stackwatch on one run of the script (with `args`) at the
/// same rate, alternating, `rounds` each.
fn side_by_side(
    ctx: &Context,
    py_spy: &Path,
    script: &Path,
    args: &[&str],
    dir: &Path,
    rounds: usize,
) -> Result<SideBySide> {
    let work = start(Command::new(PYTHON).arg(script).args(args))?;
    let pid = work.0.id();
    thread::sleep(Duration::from_millis(500));
    let before = thread_ticks(pid);
    let (mut sw_cpu, mut spy_cpu) = (Vec::new(), Vec::new());
    let (mut sw_text, mut spy_text) = (String::new(), String::new());
    for round in 0..rounds {
        let mut order = ["stackwatch", "py-spy"];
        order.rotate_left(round % 2);
        for who in order {
            let out = dir.join(format!("{who}-{round}"));
            fs::create_dir_all(&out).with_context(|| format!("failed to create `{}`", out.display()))?;
            let (_, _, usage) = if who == "stackwatch" {
                profile_once(&mut record_for(ctx, pid, &out, "folded", versus_secs(ctx)))?
            } else {
                let raw = out.join("py-spy.txt");
                let mut c = Command::new(py_spy);
                c.args([
                    "record",
                    "--pid",
                    &pid.to_string(),
                    "--rate",
                    "99",
                    "--duration",
                    &versus_secs(ctx).to_string(),
                ])
                .args(["--format", "raw", "--output"])
                .arg(&raw);
                profile_once(&mut c)?
            };
            eprintln!("bench:   {who}: {:.3} s CPU", usage.cpu_s());
            let text = folded_in(&out)?;
            if who == "stackwatch" {
                sw_cpu.push(usage.cpu_s());
                sw_text.push_str(&text);
            } else {
                spy_cpu.push(usage.cpu_s());
                spy_text.push_str(&text);
            }
        }
    }
    let after = thread_ticks(pid);
    let used = |tid: u32| after.get(&tid).copied().unwrap_or(0).saturating_sub(before.get(&tid).copied().unwrap_or(0));
    let total: u64 = after.keys().map(|&t| used(t)).sum();
    let others: u64 = after.keys().filter(|&&t| t != pid).map(|&t| used(t)).sum();
    let (stackwatch, sw_total) = shares(&sw_text, stackwatch_name);
    let (py_spy, spy_total) = shares(&spy_text, py_spy_name);
    Ok(SideBySide {
        stackwatch,
        py_spy,
        samples: (sw_total, spy_total),
        cpu: (median(&sw_cpu), median(&spy_cpu)),
        other_threads_cpu: 100.0 * others as f64 / total.max(1) as f64,
    })
}

/// CPU ticks (user + system) of each thread of `pid`.
fn thread_ticks(pid: u32) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat; `rest` starts at field 3.
        let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        out.insert(tid, ticks(14) + ticks(15));
    }
    out
}

/// py-spy and stackwatch side by side: on the single-threaded script (the
/// judged comparison: both sample the one running thread), then on the
/// three-thread script, where the two count different things.
fn against_py_spy(ctx: &Context, section: &mut Section, script: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: against py-spy");
    let py_spy = py_spy(dir)?;
    let version = cmd::stdout(Command::new(&py_spy).arg("--version")).unwrap_or_default();
    let rounds = ctx.runs.max(1);
    let single = side_by_side(ctx, &py_spy, script, &["--single"], &dir.join("single"), rounds)?;
    let mut top: Vec<(&String, &f64)> = single.py_spy.iter().filter(|(k, _)| *k != "other").collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    let mut worst: f64 = 0.0;
    for (name, spy_share) in top.iter().take(5) {
        let sw_share = single.stackwatch.get(*name).copied().unwrap_or(0.0);
        worst = worst.max((sw_share - **spy_share).abs());
        row(
            section,
            &format!("one thread: share of samples in {MODULE}.{name}, stackwatch / py-spy"),
            format!("{sw_share:.1} % / {spy_share:.1} %"),
            None,
            None,
        );
    }
    row(
        section,
        "one thread: largest gap in a top-5 function's share",
        format!("{worst:.1} points ({:.0} and {:.0} samples)", single.samples.0, single.samples.1),
        Some("≤ 5 points"),
        Some(!top.is_empty() && worst <= SHARE_POINTS),
    );
    let (s, p) = single.cpu;
    row(section, "one thread: stackwatch CPU per capture", format!("{s:.3} s"), None, None);
    row(section, "one thread: py-spy CPU per capture", format!("{p:.3} s"), None, None);
    row(section, "one thread: stackwatch ÷ py-spy CPU", format!("{:.2}×", s / p), Some("≤ 0.5×"), Some(s <= 0.5 * p));

    // Three threads: the sorter's functions against what the kernel says
    // the threads other than the main one used.
    let three = side_by_side(ctx, &py_spy, script, &[], &dir.join("three"), rounds)?;
    let sorter =
        |m: &BTreeMap<String, f64>| ["key_fn", "sort_loop", "nap"].iter().filter_map(|f| m.get(*f)).sum::<f64>();
    row(
        section,
        "three threads: other threads' share, kernel CPU time / stackwatch / py-spy",
        format!(
            "{:.1} % / {:.1} % / {:.1} %",
            three.other_threads_cpu,
            sorter(&three.stackwatch),
            sorter(&three.py_spy)
        ),
        None,
        None,
    );
    for name in ["hot_a", "hot_b", "key_fn", "sort_loop", "nap"] {
        let get = |m: &BTreeMap<String, f64>| m.get(name).copied().unwrap_or(0.0);
        row(
            section,
            &format!("three threads: share in {MODULE}.{name}, stackwatch / py-spy"),
            format!("{:.1} % / {:.1} %", get(&three.stackwatch), get(&three.py_spy)),
            None,
            None,
        );
    }
    let (s, p) = three.cpu;
    row(
        section,
        "three threads: stackwatch ÷ py-spy CPU",
        format!("{s:.3} s / {p:.3} s = {:.2}×", s / p),
        Some("≤ 0.5×"),
        Some(s <= 0.5 * p),
    );
    section.commands.push(format!(
        "stackwatch record --pid PID --duration {s}s --formats folded   vs   py-spy record --pid PID --rate 99 --duration {s} --format raw   # {}, {} rounds each, alternating; PID runs py_split.py --single, then py_split.py",
        version.trim(),
        rounds,
        s = versus_secs(ctx)
    ));
    section.notes.push(
        "Shares are of samples by innermost function of the script. py-spy runs in its default mode: it stops the \
         interpreter for each sample and counts every thread it deems active, including a thread waiting for the GIL \
         or just woken from a sleep; stackwatch counts threads on a CPU. With one thread the two count the same \
         thing (the judged row); with three, stackwatch's share of the non-main threads follows the kernel's own \
         per-thread CPU time."
            .to_owned(),
    );
    Ok(())
}

/// The folded text a profiler left in `dir` (stackwatch's `.folded`, or
/// py-spy's raw output).
fn folded_in(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for entry in fs::read_dir(dir).with_context(|| format!("failed to list `{}`", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".folded") || name == "py-spy.txt" {
            text.push_str(&fs::read_to_string(&path).with_context(|| format!("failed to read `{}`", path.display()))?);
            text.push('\n');
        }
    }
    if text.trim().is_empty() {
        bail!("no folded stacks in `{}`", dir.display());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_take_the_innermost_function_of_the_script() {
        let folded = "python3.11;py_split.caller;py_split.hot_a;_PyEval_EvalFrameDefault 30\n\
                      python3.11;py_split.caller;py_split.hot_b 10\n\
                      python3.11;start_thread;clone3 10\n";
        let (by, total) = shares(folded, stackwatch_name);
        assert_eq!(total, 50.0);
        assert_eq!(by["hot_a"], 60.0);
        assert_eq!(by["hot_b"], 20.0);
        assert_eq!(by["other"], 20.0);
        let spy = "<module> (py_split.py:90);caller (py_split.py:35);hot_a (py_split.py:20) 3\n\
                   _bootstrap (threading.py:995);nap (py_split.py:60) 1\n";
        let (by, total) = shares(spy, py_spy_name);
        assert_eq!(total, 4.0);
        assert_eq!(by["hot_a"], 75.0);
        assert_eq!(by["nap"], 25.0);
    }
}
