//! What `--profiles offcpu` and `--profiles memory` cost the profiled
//! process, against the same workload alone.
//!
//! Unlike the CPU sampler, whose cost is bounded by its frequency, these
//! programs run on events the workload makes (a context switch, a `malloc`
//! call, a Go span refill), so each workload here does little but make
//! them, and the figure that carries over to other programs is the cost per
//! event: `(1/profiled − 1/alone) ÷ events per operation`, from the medians.
//!
//! The workloads are the test workloads (`tests/workloads/`), pinned to the
//! last CPU at nice −10 so the profiler and the rest of the host stay off
//! their CPU as much as possible; alone and profiled runs alternate.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::ext::{Context, Row, Section, Status};
use super::measure::{self, BpfWatcher};
use super::report::Summary;
use xtask::cmd;

/// How a workload reports its rate.
#[derive(Clone, Copy)]
enum Rate {
    /// A `<name> N` line on stdout at exit (the C workloads).
    Stdout(&'static str),
    /// A log of `CLOCK_REALTIME-ns total-bytes` lines (goleak, leak),
    /// divided by `unit_bytes`: units per second over a window of the run.
    Log { unit_bytes: u64, window: Window },
}

/// Which part of a logging workload's run is measured.
#[derive(Clone, Copy)]
enum Window {
    /// From the profiler's attach delay to `delay + secs` (a workload that
    /// runs until killed).
    AfterDelay,
    /// A fixed window, seconds after the first log line (a workload that
    /// stops on its own limit soon after).
    Fixed { from: f64, secs: f64 },
}

impl Window {
    fn bounds(self, delay: f64, secs: f64) -> (f64, f64) {
        match self {
            Window::AfterDelay => (delay, secs),
            Window::Fixed { from, secs } => (from, secs),
        }
    }
}

struct Workload {
    id: &'static str,
    /// What it does, for the table.
    what: &'static str,
    profiles: &'static str,
    /// The built binary and its arguments (`{secs}`/`{delay}` substituted).
    bin: PathBuf,
    args: Vec<String>,
    rate: Rate,
    unit: &'static str,
    /// Events the profile pays for per operation counted by the rate.
    events_per_op: f64,
    event: &'static str,
    /// The BPF program those events run.
    program: &'static str,
}

/// One run of a workload.
struct Outcome {
    rate: f64,
    profiler_cpu_s: Option<f64>,
    profiler_rss_mib: Option<f64>,
    /// `run_time_ns ÷ run_cnt` and `run_cnt` of the workload's program.
    ns_per_run: Option<f64>,
    runs: Option<u64>,
    map_bytes: Option<u64>,
}

const C_FLAGS: &[&str] = &["-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-pthread"];
/// The object sizes of the Go rows: 1 KiB objects come 8 to a span refill;
/// 64 KiB ones are one large allocation each.
const GO_SMALL: u64 = 1024;
const GO_LARGE: u64 = 65536;

pub(crate) fn run(ctx: &Context) -> Result<Section> {
    let dir = ctx.work.join("offcpu-memory");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let (secs, delay) = if ctx.quick { (2.0, 1.0) } else { (5.0, 1.0) };
    let runs = ctx.runs;
    let cpu = ctx.nproc.saturating_sub(1);
    let workloads = workloads(&dir)?;
    let mut section = Section {
        id: "offcpu-memory",
        title: "Off-CPU and memory overhead",
        status: Status::Measured,
        rows: Vec::new(),
        notes: vec![format!(
            "Each workload pinned to CPU {cpu} at nice −10 (`taskset -c {cpu} nice -n -10`), {secs} s measured \
             after a {delay} s delay that lets the profiler attach; alone and profiled runs alternate, {runs} of each; \
             medians with the (min–max) spread. Cost per event = (1/profiled − 1/alone rate) ÷ events per operation."
        )],
        commands: vec![format!("gcc {} -o W tests/workloads/W.c   # pingpong, malloc_loop", C_FLAGS.join(" "))],
    };
    section.commands.push(
        "(cd tests/workloads/goleak && CGO_ENABLED=0 go build -o goleak .)   # prints `t_ns total_bytes` every 10 ms"
            .to_owned(),
    );
    let mut table = vec![
        "| workload | profile | alone | profiled | change | cost per event | BPF ns per run | profiler CPU, RSS |"
            .to_owned(),
        "| --- | --- | --- | --- | --- | --- | --- | --- |".to_owned(),
    ];
    for w in &workloads {
        eprintln!("\nbench: {} alone vs `--profiles {}` ({} runs each)", w.what, w.profiles, runs);
        let mut alone = Vec::new();
        let mut profiled = Vec::new();
        for round in 0..runs {
            for profile in [round % 2 == 1, round % 2 == 0] {
                let run_dir = dir.join(format!("{}-{}-{round}", w.id, if profile { "profiled" } else { "alone" }));
                let outcome = match measure_once(ctx, w, profile, secs, delay, cpu, &run_dir) {
                    Ok(o) => o,
                    Err(e) => {
                        section.status = Status::Failed;
                        section.notes.push(format!("{}: {e:#}", w.id));
                        return Ok(section);
                    }
                };
                eprintln!(
                    "bench:   {} {:.0} {}{}",
                    if profile { "profiled" } else { "alone   " },
                    outcome.rate,
                    w.unit,
                    outcome.ns_per_run.map(|ns| format!(", {} {ns:.0} ns/run", w.program)).unwrap_or_default()
                );
                if profile { &mut profiled } else { &mut alone }.push(outcome);
            }
        }
        let a: Vec<f64> = alone.iter().map(|o| o.rate).collect();
        let p: Vec<f64> = profiled.iter().map(|o| o.rate).collect();
        let (am, pm) = (median(&a), median(&p));
        let change = (pm / am - 1.0) * 100.0;
        let per_event_us = (1.0 / pm - 1.0 / am) / w.events_per_op * 1e6;
        let ns: Vec<f64> = profiled.iter().filter_map(|o| o.ns_per_run).collect();
        let cpu_s: Vec<f64> = profiled.iter().filter_map(|o| o.profiler_cpu_s).collect();
        let rss: Vec<f64> = profiled.iter().filter_map(|o| o.profiler_rss_mib).collect();
        let maps: Vec<f64> = profiled.iter().filter_map(|o| o.map_bytes).map(|b| b as f64 / 1048576.0).collect();
        let runs_per_s: Vec<f64> = profiled.iter().filter_map(|o| o.runs).map(|r| r as f64 / (secs + delay)).collect();
        table.push(format!(
            "| {} | `{}` | {} {} | {} | {:+.0} % | {:+.2} µs per {} | {} ({} runs/s) | {} s, {} MiB |",
            w.what,
            w.profiles,
            spread(&a, 0),
            w.unit,
            spread(&p, 0),
            change,
            per_event_us,
            w.event,
            spread(&ns, 0),
            spread(&runs_per_s, 0),
            spread(&cpu_s, 3),
            spread(&rss, 1),
        ));
        let row = |name: String, value: String| Row { name, value, target: None, pass: None };
        section.rows.push(row(format!("{}: change", w.id), format!("{change:+.1} %")));
        section.rows.push(row(format!("{}: cost per {}", w.id, w.event), format!("{per_event_us:.2} µs")));
        if !ns.is_empty() {
            section
                .rows
                .push(row(format!("{}: `{}` BPF time per run", w.id, w.program), format!("{:.0} ns", median(&ns))));
        }
        if !maps.is_empty() {
            section.rows.push(row(format!("{}: BPF maps", w.id), format!("{:.2} MiB", median(&maps))));
        }
        section.commands.push(format!(
            "taskset -c {cpu} nice -n -10 ./{} {}   # alone, then again with: stackwatch record --pid $PID --profiles {} --duration 1h --output-dir DIR   # SIGINT when the workload is done",
            w.bin.file_name().unwrap_or_default().to_string_lossy(),
            substitute(&w.args, secs, delay, "LOG").join(" "),
            w.profiles
        ));
    }
    section.notes.push(table.join("\n"));
    Ok(section)
}

fn workloads(dir: &Path) -> Result<Vec<Workload>> {
    let src = xtask::workspace_root().join("tests/workloads");
    let c = |name: &str| -> Result<PathBuf> {
        let out = dir.join(name);
        let mut gcc = Command::new("gcc");
        gcc.args(C_FLAGS).args(["-Wall", "-Wextra", "-o"]).arg(&out).arg(src.join(format!("{name}.c")));
        cmd::run(&mut gcc)?;
        Ok(out)
    };
    let pingpong = c("pingpong")?;
    let malloc_loop = c("malloc_loop")?;
    let leak = c("leak")?;
    let goleak = dir.join("goleak");
    let gocache = xtask::target_dir().join("bench/go");
    let mut go = Command::new("go");
    go.args(["build", "-o"])
        .arg(&goleak)
        .arg(".")
        .current_dir(src.join("goleak"))
        .env("GOCACHE", gocache.join("cache"))
        .env("GOPATH", gocache.join("path"))
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOENV", "off")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd::run(&mut go)?;
    let go_args = |size: u64| -> Vec<String> {
        // RATE 0: as fast as it can; LIMIT 1 TiB: never; churn: a steady heap.
        ["{log}", &size.to_string(), "0", "1099511627776", "churn"].iter().map(|s| (*s).to_owned()).collect()
    };
    Ok(vec![
        Workload {
            id: "offcpu-pingpong",
            what: "pingpong (2 threads, a byte over 2 pipes)",
            profiles: "offcpu",
            bin: pingpong,
            args: vec!["{secs}".into(), "{delay}".into()],
            rate: Rate::Stdout("round_trips_per_sec"),
            unit: "round trips/s",
            events_per_op: 2.0,
            event: "context switch",
            program: "sched_switch",
        },
        Workload {
            id: "memory-c-malloc",
            what: "malloc_loop (malloc 64 B + touch + free)",
            profiles: "memory",
            bin: malloc_loop.clone(),
            args: vec!["{secs}".into(), "64".into(), "{delay}".into()],
            rate: Rate::Stdout("mallocs_per_sec"),
            unit: "mallocs/s",
            events_per_op: 1.0,
            event: "`malloc` + `free` pair",
            program: "malloc_entry",
        },
        Workload {
            id: "memory-go-1k",
            what: "goleak 1 KiB objects (8 per span refill)",
            profiles: "memory",
            bin: goleak.clone(),
            args: go_args(GO_SMALL),
            rate: Rate::Log { unit_bytes: GO_SMALL, window: Window::AfterDelay },
            unit: "objects/s",
            events_per_op: 1.0 / 8.0,
            event: "span refill",
            program: "go_alloc",
        },
        Workload {
            id: "memory-go-64k",
            what: "goleak 64 KiB objects (one `allocLarge` each)",
            profiles: "memory",
            bin: goleak,
            args: go_args(GO_LARGE),
            rate: Rate::Log { unit_bytes: GO_LARGE, window: Window::AfterDelay },
            unit: "objects/s",
            events_per_op: 1.0,
            event: "large allocation",
            program: "go_alloc",
        },
        Workload {
            id: "memory-page-faults",
            what: "leak faulting in 64 KiB blocks as fast as it can (stops at 3 GiB)",
            profiles: "memory",
            bin: leak,
            // LOG SIZE RATE (8 GiB/s: more than it can) LIMIT.
            args: ["{log}", "65536", "8589934592", "3221225472"].iter().map(|s| (*s).to_owned()).collect(),
            // Measured before it reaches the limit (~1.6 s alone).
            rate: Rate::Log { unit_bytes: 4096, window: Window::Fixed { from: 0.4, secs: 1.0 } },
            unit: "pages/s",
            events_per_op: 1.0,
            event: "new 4 KiB page",
            program: "fault_sample",
        },
    ])
}

/// One run: the workload alone, or under `stackwatch record --pid`.
fn measure_once(
    ctx: &Context,
    w: &Workload,
    profile: bool,
    secs: f64,
    delay: f64,
    cpu: usize,
    dir: &Path,
) -> Result<Outcome> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let log = dir.join("workload.log");
    let args = substitute(&w.args, secs, delay, &log.to_string_lossy());
    let stdout_path = dir.join("workload.stdout");
    let mut workload = Command::new("taskset");
    workload
        .args(["-c", &cpu.to_string(), "nice", "-n", "-10"])
        .arg(&w.bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).context("failed to create a log file")?)
        .stderr(Stdio::inherit());
    let mut child = measure::spawn(&mut workload)?;
    let mut profiler = None;
    if profile {
        let err_path = dir.join("stackwatch.stderr");
        let mut sw = Command::new(&ctx.stackwatch);
        sw.args(["record", "--pid", &child.id().to_string(), "--profiles", w.profiles, "--duration", "1h"])
            .arg("--output-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err_path).context("failed to create a log file")?);
        let sw_child = measure::spawn(&mut sw)?;
        let watcher = BpfWatcher::start(sw_child.id());
        profiler = Some((sw_child, watcher, err_path));
    }
    match w.rate {
        Rate::Stdout(_) => {
            let status = child.wait().context("failed to wait for the workload")?;
            if !status.success() {
                bail!("`{}` failed: {status}", w.bin.display());
            }
        }
        Rate::Log { window, .. } => {
            let (from, len) = window.bounds(delay, secs);
            thread::sleep(Duration::from_secs_f64(from + len + 0.3));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let mut outcome = Outcome {
        rate: 0.0,
        profiler_cpu_s: None,
        profiler_rss_mib: None,
        ns_per_run: None,
        runs: None,
        map_bytes: None,
    };
    if let Some((sw_child, watcher, err_path)) = profiler {
        measure::signal(sw_child.id(), libc::SIGINT);
        let (status, usage) = measure::wait_usage(&sw_child)?;
        let watch = watcher.finish();
        if !measure::exited_ok(status) {
            bail!(
                "stackwatch failed ({}): {}",
                measure::describe_status(status),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        let wrote = fs::read_dir(dir)?.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".pb.gz"));
        if !wrote {
            bail!("stackwatch wrote no profile in `{}`", dir.display());
        }
        outcome.profiler_cpu_s = Some(usage.cpu_s());
        outcome.profiler_rss_mib = Some(usage.max_rss_mib);
        outcome.map_bytes = Some(watch.max_map_bytes);
        let program = watch
            .last
            .progs
            .iter()
            .find(|(id, _)| watch.names.progs.get(id).is_some_and(|n| n == w.program))
            .map(|(_, p)| *p);
        let Some(program) = program.filter(|p| p.run_cnt > 0) else {
            bail!("stackwatch's `{}` program never ran: the profile measured nothing", w.program);
        };
        outcome.runs = Some(program.run_cnt);
        outcome.ns_per_run = (program.run_time_ns > 0).then(|| program.run_time_ns as f64 / program.run_cnt as f64);
    }
    outcome.rate = match w.rate {
        Rate::Stdout(key) => {
            let text = fs::read_to_string(&stdout_path)?;
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<f64>().ok()))
                .with_context(|| format!("`{}` printed no `{key}` line: {text:?}", w.bin.display()))?
        }
        Rate::Log { unit_bytes, window } => {
            let (from, len) = window.bounds(delay, secs);
            log_rate(&fs::read_to_string(&log)?, from, len)? / unit_bytes as f64
        }
    };
    Ok(outcome)
}

/// A workload's arguments with `{secs}`, `{delay}` and `{log}` filled in.
fn substitute(args: &[String], secs: f64, delay: f64, log: &str) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("{secs}", &secs.to_string()).replace("{delay}", &delay.to_string()).replace("{log}", log))
        .collect()
}

/// Bytes per second in a workload's log between `from` and `from + secs`
/// seconds after its first line.
fn log_rate(log: &str, from: f64, secs: f64) -> Result<f64> {
    let points: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().map(str::parse::<u64>);
            Some((w.next()?.ok()?, w.next()?.ok()?))
        })
        .collect();
    let Some(&(t0, _)) = points.first() else { bail!("the workload logged nothing") };
    let at = |s: f64| points.iter().find(|(t, _)| *t >= t0 + (s * 1e9) as u64).copied();
    match (at(from), at(from + secs)) {
        (Some((ta, ba)), Some((tb, bb))) if tb > ta => Ok((bb - ba) as f64 / ((tb - ta) as f64 / 1e9)),
        _ => bail!("the workload's log is shorter than {} s", from + secs),
    }
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v.iter().copied()).map_or(f64::NAN, |s| s.median)
}

/// `median (min–max)` with thousands in `k`/`M` for rates.
fn spread(v: &[f64], decimals: usize) -> String {
    let Some(s) = Summary::of(v.iter().copied()) else { return "–".to_owned() };
    let fmt = |x: f64| {
        if decimals == 0 && x >= 1e6 {
            format!("{:.2} M", x / 1e6)
        } else if decimals == 0 && x >= 1e4 {
            format!("{:.1} k", x / 1e3)
        } else {
            format!("{x:.decimals$}")
        }
    };
    if s.n == 1 || fmt(s.min) == fmt(s.max) {
        fmt(s.median)
    } else {
        format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rate_takes_the_window_after_the_delay() {
        // 1 MB every 10 ms for 3 s.
        let log: String =
            (0..=300u64).map(|i| format!("{} {}\n", 1_000_000_000_000 + i * 10_000_000, i * 1_000_000)).collect();
        let rate = log_rate(&log, 1.0, 1.5).unwrap();
        assert!((rate - 100e6).abs() < 1.0, "{rate}");
        assert!(log_rate(&log, 1.0, 5.0).is_err());
        assert!(log_rate("", 1.0, 1.0).is_err());
    }

    #[test]
    fn spread_formats_rates() {
        assert_eq!(spread(&[1.5e6, 2.5e6, 2.0e6], 0), "2.00 M (1.50 M–2.50 M)");
        assert_eq!(spread(&[250.0], 0), "250");
        assert_eq!(spread(&[], 1), "–");
        assert!((median(&[3.0, 1.0]) - 2.0).abs() < 1e-12);
    }
}
