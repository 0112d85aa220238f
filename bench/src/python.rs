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

use crate::ext::{Context, Section, Status};
use crate::unwind::{median, profile_once, row, start, which};

const ID: &str = "python";
const TITLE: &str = "Python stacks";
/// Debian's interpreter: built without frame pointers, installed by setup.
const PYTHON: &str = "/usr/bin/python3.11";
/// The workload's module: functions are `py_split.<name>` in stackwatch.
const MODULE: &str = "py_split";
/// Largest allowed gap between the two profilers' shares of a top function.
const SHARE_POINTS: f64 = 5.0;

pub(crate) fn run(ctx: &Context) -> Result<Section> {
    let mut section = Section {
        id: ID,
        title: TITLE,
        status: Status::Measured,
        rows: Vec::new(),
        notes: Vec::new(),
        commands: Vec::new(),
    };
    if let Err(e) = fill(ctx, &mut section) {
        section.status = Status::Failed;
        section.notes.push(format!("{e:#}"));
    }
    Ok(section)
}

fn fill(ctx: &Context, section: &mut Section) -> Result<()> {
    let dir = ctx.work.join("python");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    if !Path::new(PYTHON).exists() {
        bail!("`{PYTHON}` is missing (`cargo xtask setup` installs Debian's python3.11)");
    }
    let src = xtask::workspace_root().join("tests/workloads");
    let nofp = dir.join("unwind_work_nofp");
    cmd::run(
        Command::new("gcc")
            .args(["-O2", "-g", "-fomit-frame-pointer", "-fno-inline", "-pthread", "-o"])
            .arg(&nofp)
            .arg(src.join("unwind_work.c")),
    )?;
    let script = src.join("python/py_split.py");
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

fn record(ctx: &Context, pid: u32, out: &Path, formats: &str) -> Command {
    let mut c = Command::new(&ctx.stackwatch);
    c.args(["record", "--pid", &pid.to_string(), "--duration", &format!("{}s", secs(ctx)), "--formats", formats])
        .arg("--output-dir")
        .arg(out);
    c
}

/// BPF time per sample: the Python target against a native one, alternating.
fn per_sample(ctx: &Context, section: &mut Section, nofp: &Path, script: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: BPF time per sample");
    let (mut python, mut native) = (Vec::new(), Vec::new());
    for round in 0..ctx.runs.max(1) {
        let mut order = ["python", "native"];
        order.rotate_left(round % 2);
        for who in order {
            let work = if who == "python" {
                start(Command::new(PYTHON).arg(script))?
            } else {
                start(Command::new(nofp).args(["cpu", "0"]))?
            };
            thread::sleep(Duration::from_millis(500));
            let out = dir.join(format!("per-sample-{who}-{round}"));
            let (ns, runs, _) = profile_once(&mut record(ctx, work.0.id(), &out, "pprof"))?;
            eprintln!("bench:   {who}: {ns:.0} ns per run over {runs} runs");
            if who == "python" {
                python.push(ns);
            } else {
                native.push(ns);
            }
        }
    }
    let (p, n) = (median(&python), median(&native));
    row(
        section,
        "BPF ns per sample, Python target (python3.11, tables + interpreter walk)",
        format!("{p:.0} ns"),
        None,
        None,
    );
    row(section, "BPF ns per sample, native target without frame pointers (tables)", format!("{n:.0} ns"), None, None);
    row(section, "Python ÷ native", format!("{:.2}×", p / n), Some("≤ 2.0×"), Some(p <= 2.0 * n));
    section.commands.push(format!(
        "stackwatch record --pid PID --duration {}s --formats pprof   # BPF run time and count from /proc/PID/fdinfo, {} rounds",
        secs(ctx),
        ctx.runs.max(1)
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

/// py-spy and stackwatch on the same process at the same rate, alternating.
fn against_py_spy(ctx: &Context, section: &mut Section, script: &Path, dir: &Path) -> Result<()> {
    eprintln!("\nbench: {TITLE}: against py-spy");
    let py_spy = py_spy(dir)?;
    let version = cmd::stdout(Command::new(&py_spy).arg("--version")).unwrap_or_default();
    let work = start(Command::new(PYTHON).arg(script))?;
    let pid = work.0.id();
    thread::sleep(Duration::from_millis(500));
    let (mut sw_cpu, mut spy_cpu) = (Vec::new(), Vec::new());
    let (mut sw_text, mut spy_text) = (String::new(), String::new());
    for round in 0..ctx.runs.max(1) {
        let mut order = ["stackwatch", "py-spy"];
        order.rotate_left(round % 2);
        for who in order {
            let out = dir.join(format!("vs-{who}-{round}"));
            fs::create_dir_all(&out).with_context(|| format!("failed to create `{}`", out.display()))?;
            let (_, _, usage) = if who == "stackwatch" {
                profile_once(&mut record(ctx, pid, &out, "folded"))?
            } else {
                let raw = out.join("py-spy.txt");
                let mut c = Command::new(&py_spy);
                c.args(["record", "--pid", &pid.to_string(), "--rate", "99", "--duration", &secs(ctx).to_string()])
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
    let (sw, sw_total) = shares(&sw_text, stackwatch_name);
    let (spy, spy_total) = shares(&spy_text, py_spy_name);
    // py-spy's top functions, by share, against stackwatch's.
    let mut top: Vec<(&String, &f64)> = spy.iter().filter(|(k, _)| *k != "other").collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    let mut worst: f64 = 0.0;
    for (name, spy_share) in top.iter().take(5) {
        let sw_share = sw.get(*name).copied().unwrap_or(0.0);
        worst = worst.max((sw_share - **spy_share).abs());
        row(
            section,
            &format!("share of samples in {MODULE}.{name}: stackwatch / py-spy"),
            format!("{sw_share:.1} % / {spy_share:.1} %"),
            None,
            None,
        );
    }
    row(
        section,
        "largest gap in a top-5 function's share",
        format!("{worst:.1} points ({sw_total:.0} and {spy_total:.0} samples)"),
        Some("≤ 5 points"),
        Some(!top.is_empty() && worst <= SHARE_POINTS),
    );
    let (s, p) = (median(&sw_cpu), median(&spy_cpu));
    row(section, "stackwatch CPU per capture", format!("{s:.3} s"), None, None);
    row(section, "py-spy CPU per capture", format!("{p:.3} s"), None, None);
    row(section, "stackwatch ÷ py-spy CPU", format!("{:.2}×", s / p), Some("≤ 0.5×"), Some(s <= 0.5 * p));
    section.commands.push(format!(
        "stackwatch record --pid PID --duration {s}s --formats folded   vs   py-spy record --pid PID --rate 99 --duration {s} --format raw   # {}, {} rounds each, alternating",
        version.trim(),
        ctx.runs.max(1),
        s = secs(ctx)
    ));
    section.notes.push(
        "py-spy runs in its default mode (it stops the interpreter for each sample); shares are of samples whose \
         innermost Python function is the script's, so the two are compared on what each attributes to each function"
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
