//! Medians and spreads, the targets with PASS/FAIL, and the
//! Markdown that goes between the markers of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::ext::{self, Status};
use super::runs::{Profiler, Run};
use super::{Comparison, Results};

/// The generated part of `docs/benchmarks.md` sits between these; the
/// prose around them is written by hand.
pub(crate) const BEGIN: &str = "<!-- BEGIN cargo xtask bench: generated, do not edit by hand -->";
pub(crate) const END: &str = "<!-- END cargo xtask bench -->";

/// Median and spread of one figure over runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Summary { median, min: v[0], max: v[n - 1], n })
    }
}

/// One profiler's figures over its runs of a comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProfilerSummary {
    pub cpu_s: Option<Summary>,
    pub record_cpu_s: Option<Summary>,
    pub post_cpu_s: Option<Summary>,
    pub peak_rss_mib: Option<Summary>,
    pub start_latency_s: Option<Summary>,
    pub stop_to_files_s: Option<Summary>,
    pub samples: Option<Summary>,
    pub fidelity: Option<Summary>,
    pub manifest_fidelity: Option<Summary>,
    pub lost: Option<Summary>,
    pub bpf_ns_per_sample: Option<Summary>,
    pub bpf_map_mib: Option<Summary>,
    pub throughput: Option<Summary>,
    /// `1 − throughput ÷ median alone throughput`, percent, per run.
    pub throughput_loss_percent: Option<Summary>,
    pub other_cpu_s: Option<Summary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ComparisonSummary {
    pub alone_throughput: Option<Summary>,
    /// Half the spread of the alone runs, percent of their median: a
    /// throughput loss inside ±this is noise.
    pub noise_percent: Option<f64>,
    pub alone_other_cpu_s: Option<Summary>,
    pub stackwatch: ProfilerSummary,
    pub perf: ProfilerSummary,
}

const MIB: f64 = 1024.0 * 1024.0;

impl ComparisonSummary {
    pub fn of(runs: &[Run]) -> ComparisonSummary {
        let alone: Vec<&Run> = runs.iter().filter(|r| r.profiler == Profiler::Alone).collect();
        let alone_throughput = Summary::of(alone.iter().map(|r| r.throughput));
        let noise_percent = alone_throughput.map(|s| (s.max - s.min) / 2.0 / s.median * 100.0);
        let base = alone_throughput.map(|s| s.median);
        let of = |who: Profiler| {
            let rs: Vec<&Run> = runs.iter().filter(|r| r.profiler == who).collect();
            let pick = |f: &dyn Fn(&Run) -> Option<f64>| Summary::of(rs.iter().filter_map(|r| f(r)));
            ProfilerSummary {
                cpu_s: pick(&|r| r.cpu_s),
                record_cpu_s: pick(&|r| r.record_cpu_s),
                post_cpu_s: pick(&|r| r.post_cpu_s),
                peak_rss_mib: pick(&|r| r.peak_rss_mib),
                start_latency_s: pick(&|r| r.start_latency_s),
                stop_to_files_s: pick(&|r| r.stop_to_files_s),
                samples: pick(&|r| r.samples.map(|s| s as f64)),
                fidelity: pick(&|r| r.fidelity),
                manifest_fidelity: pick(&|r| r.manifest_fidelity),
                lost: pick(&|r| r.lost.map(|s| s as f64)),
                bpf_ns_per_sample: pick(&|r| r.bpf.as_ref().and_then(|b| b.ns_per_run)),
                bpf_map_mib: pick(&|r| r.bpf.as_ref().map(|b| b.map_bytes as f64 / MIB)),
                throughput: pick(&|r| Some(r.throughput)),
                throughput_loss_percent: pick(&|r| base.map(|b| (1.0 - r.throughput / b) * 100.0)),
                other_cpu_s: pick(&|r| Some(r.other_cpu_s)),
            }
        };
        ComparisonSummary {
            alone_throughput,
            noise_percent,
            alone_other_cpu_s: Summary::of(alone.iter().map(|r| r.other_cpu_s)),
            stackwatch: of(Profiler::Stackwatch),
            perf: of(Profiler::Perf),
        }
    }
}

/// One of the targets against what was measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    /// `None` when it was not measured in this run.
    pub pass: Option<bool>,
    pub basis: String,
}

fn find<'a>(results: &'a Results, id: &str) -> Option<&'a Comparison> {
    results.comparisons.iter().find(|c| c.id == id)
}

/// The targets, checked against the 8 s 99 Hz capture (and the
/// other captures where the target covers them).
pub(crate) fn targets(results: &Results) -> Vec<TargetCheck> {
    let cpu = find(results, "cpu-99hz");
    let cpu999 = find(results, "cpu-999hz");
    let host = find(results, "host-99hz");
    fn sw(c: Option<&Comparison>) -> Option<&ProfilerSummary> {
        c.map(|c| &c.summary.stackwatch)
    }
    let mut out = Vec::new();
    let mut check = |target: &str, measured: Option<(String, bool)>, basis: String| {
        let (measured, pass) = match measured {
            Some((text, pass)) => (text, Some(pass)),
            None => ("not measured".to_owned(), None),
        };
        out.push(TargetCheck { target: target.to_owned(), measured, pass, basis });
    };

    let bpf = sw(cpu).and_then(|s| s.bpf_ns_per_sample);
    check(
        "BPF time ≤ 3 µs per sample (frame-pointer stacks)",
        bpf.map(|s| (format!("{} µs", spread(s, 1e-3, 2)), s.median <= 3000.0)),
        format!(
            "`cpu_sample` run_time_ns ÷ run_cnt, 99 Hz --pid; 999 Hz: {} µs; whole host: {} µs",
            opt(sw(cpu999).and_then(|s| s.bpf_ns_per_sample), 1e-3, 2),
            opt(sw(host).and_then(|s| s.bpf_ns_per_sample), 1e-3, 2)
        ),
    );

    let ratio = |c: Option<&Comparison>| {
        let c = c?;
        Some(c.summary.stackwatch.cpu_s?.median / c.summary.perf.cpu_s?.median)
    };
    check(
        "profiler CPU ≤ ½ of perf+inferno's, same run",
        cpu.and_then(|c| {
            let (s, p) = (c.summary.stackwatch.cpu_s?, c.summary.perf.cpu_s?);
            let r = s.median / p.median;
            Some((format!("{:.3} s vs {:.3} s (×{r:.2})", s.median, p.median), r <= 0.5))
        }),
        format!(
            "utime+stime from wait4, whole process life, median; 999 Hz: ×{}; whole host: ×{}",
            ratio(cpu999).map_or("–".to_owned(), |r| format!("{r:.2}")),
            ratio(host).map_or("–".to_owned(), |r| format!("{r:.2}"))
        ),
    );

    check(
        "peak RSS during a capture ≤ 20 MiB",
        sw(cpu).and_then(|s| s.peak_rss_mib).map(|s| (format!("{} MiB", spread(s, 1.0, 1)), s.median <= 20.0)),
        format!(
            "ru_maxrss, 99 Hz --pid; whole host: {} MiB; perf+inferno: {} MiB",
            opt(sw(host).and_then(|s| s.peak_rss_mib), 1.0, 1),
            opt(cpu.and_then(|c| c.summary.perf.peak_rss_mib), 1.0, 1)
        ),
    );

    let maps = [cpu, cpu999, host]
        .iter()
        .filter_map(|c| sw(*c).and_then(|s| s.bpf_map_mib))
        .map(|s| s.max)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    check(
        "BPF maps ≤ 8 MiB by default",
        maps.map(|m| (format!("{m:.2} MiB"), m <= 8.0)),
        format!(
            "largest fdinfo `memlock` total seen in any capture (99 Hz --pid: {} MiB, whole host: {} MiB)",
            opt(sw(cpu).and_then(|s| s.bpf_map_mib), 1.0, 2),
            opt(sw(host).and_then(|s| s.bpf_map_mib), 1.0, 2)
        ),
    );

    let idle = results.idle.as_ref();
    check(
        "idle daemon ≤ 0.1 % of one core",
        idle.map(|i| (format!("{:.4} %", i.cpu_percent), i.cpu_percent <= 0.1)),
        idle.map_or(String::new(), |i| {
            format!("schedstat CPU over {:.0} s; BPF program runs while idle: {}", i.window_s, i.bpf_runs)
        }),
    );
    check(
        "idle daemon ≤ 25 MiB RSS",
        idle.map(|i| (format!("{:.1} MiB", i.rss_mib), i.rss_mib <= 25.0)),
        idle.map_or(String::new(), |i| format!("VmRSS after the window; VmHWM (start-up peak) {:.1} MiB", i.hwm_mib)),
    );
    if let Some((rss, hwm)) = idle.and_then(|i| i.after_capture) {
        check(
            "idle daemon after one whole-host capture ≤ 25 MiB RSS",
            Some((format!("{rss:.1} MiB"), rss <= 25.0)),
            format!("VmRSS 2 s after a 5 s capture; VmHWM {hwm:.1} MiB"),
        );
    }

    check(
        "launch to first sample ≤ 0.1 s",
        sw(cpu).and_then(|s| s.start_latency_s).map(|s| (format!("{} s", spread(s, 1.0, 3)), s.median <= 0.1)),
        format!(
            "exec to the first `cpu_sample` run (fdinfo run_cnt, polled every 1 ms); perf: {} s (first sample's CLOCK_MONOTONIC time)",
            opt(cpu.and_then(|c| c.summary.perf.start_latency_s), 1.0, 3)
        ),
    );
    check(
        "stop to all files ≤ 0.1 s",
        sw(cpu).and_then(|s| s.stop_to_files_s).map(|s| (format!("{} s", spread(s, 1.0, 3)), s.median <= 0.1)),
        format!(
            "SIGINT to exit (pprof, SVG, manifest written); perf: {} s (SIGINT to exit + script/inferno)",
            opt(cpu.and_then(|c| c.summary.perf.stop_to_files_s), 1.0, 3)
        ),
    );

    let fidelity_ok = |c: Option<&Comparison>| -> Option<(String, bool)> {
        let c = c?;
        let runs: Vec<&Run> = c.runs.iter().filter(|r| r.profiler == Profiler::Stackwatch).collect();
        let worst = runs.iter().filter_map(|r| r.manifest_fidelity).fold(f64::INFINITY, f64::min);
        let lost: u64 = runs.iter().filter_map(|r| r.lost).sum();
        if !worst.is_finite() {
            return None;
        }
        Some((format!("worst {:.1} %, {lost} lost", worst * 100.0), worst >= 0.98 && lost == 0))
    };
    check(
        "fidelity ≥ 98 % with zero losses at 99 Hz",
        fidelity_ok(cpu),
        format!(
            "samples_collected ÷ expected_samples of each manifest, 99 Hz --pid; whole host: {}",
            fidelity_ok(host).map_or("–".to_owned(), |(t, _)| t)
        ),
    );
    let losses999 = cpu999.map(|c| {
        let lost: u64 = c.runs.iter().filter(|r| r.profiler == Profiler::Stackwatch).filter_map(|r| r.lost).sum();
        let f =
            c.summary.stackwatch.manifest_fidelity.map_or("–".to_owned(), |s| format!("{:.1} %", s.median * 100.0));
        (format!("{lost} lost, fidelity {f}"), true)
    });
    check(
        "losses at 999 Hz reported, not hidden",
        losses999,
        "manifest `samples_lost` and `losses` (every reason counted in the kernel)".to_owned(),
    );
    out
}

fn spread(s: Summary, scale: f64, digits: usize) -> String {
    if s.n > 1 && (s.max - s.min).abs() > f64::EPSILON {
        format!("{:.d$} ({:.d$}–{:.d$})", s.median * scale, s.min * scale, s.max * scale, d = digits)
    } else {
        format!("{:.d$}", s.median * scale, d = digits)
    }
}

fn opt(s: Option<Summary>, scale: f64, digits: usize) -> String {
    s.map_or("–".to_owned(), |s| spread(s, scale, digits))
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "–",
    }
}

/// The targets as a plain table for the terminal.
pub(crate) fn targets_table(targets: &[TargetCheck]) -> String {
    let mut out = String::from("targets:\n");
    for t in targets {
        let _ = writeln!(out, "  {:<5} {:<50} {}", verdict(t.pass), t.target, t.measured);
    }
    out
}

/// One line per run while the bench goes.
pub(crate) fn run_line(run: &Run) -> String {
    let f = |x: Option<f64>, d: usize| x.map_or("–".to_owned(), |v| format!("{v:.d$}"));
    format!(
        "{:<10} cpu {} s, rss {} MiB, start {} s, stop {} s, samples {}, bpf {} ns/sample, {:.0} rounds/s",
        format!("{:?}", run.profiler).to_lowercase(),
        f(run.cpu_s, 3),
        f(run.peak_rss_mib, 1),
        f(run.start_latency_s, 3),
        f(run.stop_to_files_s, 3),
        run.samples.map_or("–".to_owned(), |s| s.to_string()),
        f(run.bpf.as_ref().and_then(|b| b.ns_per_run), 0),
        run.throughput,
    )
}

/// The generated Markdown.
pub(crate) fn markdown(results: &Results, previous_json: Option<&str>) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let _ = writeln!(md, "{BEGIN}\n");
    let _ = writeln!(
        md,
        "Measured {} on {} × {} ({} MiB), {}, Linux {}, {}; commit `{}`{}; stackwatch binary {:.1} MiB ({}); \
         {} runs of each profiler per row{}.\n",
        results.date,
        m.nproc,
        m.cpu_model,
        m.mem_total_mib,
        m.os,
        m.kernel,
        m.perf_version,
        results.git_commit,
        if results.git_dirty { " with uncommitted changes" } else { "" },
        m.stackwatch_binary_mib,
        m.stackwatch_binary,
        results.runs,
        if results.quick { ", `--quick`" } else { "" },
    );
    md.push_str("Cells are the median, with the (min–max) spread when the runs differ.\n\n");

    md.push_str("### Targets\n\n| Target | Measured | Result | How |\n|---|---|---|---|\n");
    for t in &results.targets {
        let _ = writeln!(md, "| {} | {} | **{}** | {} |", t.target, t.measured, verdict(t.pass), t.basis);
    }
    md.push('\n');

    if let Some(prev) = previous_json.and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()) {
        md.push_str(&changes(results, &prev));
    }

    for c in &results.comparisons {
        md.push_str(&comparison_table(c));
    }
    if let Some(i) = &results.idle {
        let _ = writeln!(md, "### Idle `stackwatch watch` daemon\n");
        md.push_str("| Figure | Value |\n|---|---|\n");
        let _ = writeln!(
            md,
            "| CPU over {:.0} s | {:.4} % of one core ({} µs) |",
            i.window_s,
            i.cpu_percent,
            i.cpu_ns / 1000
        );
        let _ = writeln!(md, "| RSS (VmRSS) | {:.1} MiB |", i.rss_mib);
        let _ = writeln!(md, "| peak RSS since launch (VmHWM) | {:.1} MiB |", i.hwm_mib);
        let _ =
            writeln!(md, "| launch to ready (BPF program loaded and verified, FIFO created) | {:.3} s |", i.ready_s);
        let _ = writeln!(md, "| BPF program runs during the window | {} |", i.bpf_runs);
        let _ = writeln!(md, "| BPF map memory held while idle | {:.2} MiB |", i.map_bytes as f64 / MIB);
        if let Some((rss, hwm)) = i.after_capture {
            let _ = writeln!(md, "| after one 5 s whole-host capture (a python3.11 loop running): RSS (VmRSS) / peak (VmHWM) | {rss:.1} / {hwm:.1} MiB |");
        }
        md.push_str("\nCommand: `stackwatch watch --control DIR/control --output-dir DIR/out`, measured from 1 s after the FIFO appears; then `echo 'start 5s' > DIR/control` while a python3.11 loop runs, measured 2 s after the manifest is written.\n\n");
    }
    for s in &results.sections {
        md.push_str(&section(s));
    }
    md.push_str(END);
    md.push('\n');
    md
}

fn comparison_table(c: &Comparison) -> String {
    let mut md = String::new();
    let s = &c.summary;
    let _ = writeln!(md, "### {}\n", c.title);
    let _ = writeln!(md, "Workload: {}. ", c.workload);
    md.push_str("\n| Figure | stackwatch | perf + inferno |\n|---|---|---|\n");
    let row = |md: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(md, "| {name} | {a} | {b} |");
    };
    let (sw, pf) = (&s.stackwatch, &s.perf);
    row(
        &mut md,
        "profiler CPU (s)",
        opt(sw.cpu_s, 1.0, 3),
        format!(
            "{} (record {} + script/inferno {})",
            opt(pf.cpu_s, 1.0, 3),
            opt(pf.record_cpu_s, 1.0, 3),
            opt(pf.post_cpu_s, 1.0, 3)
        ),
    );
    row(&mut md, "peak RSS (MiB)", opt(sw.peak_rss_mib, 1.0, 1), opt(pf.peak_rss_mib, 1.0, 1));
    row(
        &mut md,
        "BPF time per sample (µs)",
        opt(sw.bpf_ns_per_sample, 1e-3, 2),
        "– (no BPF; its sampling cost is in the throughput loss)".to_owned(),
    );
    row(
        &mut md,
        "BPF map memory (MiB)",
        opt(sw.bpf_map_mib, 1.0, 2),
        "– (ring buffers: 516 KiB per CPU by default)".to_owned(),
    );
    let noise = s.noise_percent.map_or(String::new(), |n| format!(" (noise ±{n:.1} %)"));
    row(
        &mut md,
        &format!("throughput loss vs alone{noise}"),
        format!("{} %", opt(sw.throughput_loss_percent, 1.0, 1)),
        format!("{} %", opt(pf.throughput_loss_percent, 1.0, 1)),
    );
    row(&mut md, "launch to first sample (s)", opt(sw.start_latency_s, 1.0, 3), opt(pf.start_latency_s, 1.0, 3));
    row(&mut md, "stop to all files (s)", opt(sw.stop_to_files_s, 1.0, 3), opt(pf.stop_to_files_s, 1.0, 3));
    row(&mut md, "samples", opt(sw.samples, 1.0, 0), opt(pf.samples, 1.0, 0));
    row(
        &mut md,
        "fidelity: samples ÷ (Hz × CPU-s sampled)",
        format!("{} % (manifest: {} %)", opt(sw.fidelity, 100.0, 1), opt(sw.manifest_fidelity, 100.0, 1)),
        format!("{} %", opt(pf.fidelity, 100.0, 1)),
    );
    row(&mut md, "samples lost", opt(sw.lost, 1.0, 0), opt(pf.lost, 1.0, 0));
    row(
        &mut md,
        "other host CPU during the window (s)",
        opt(sw.other_cpu_s, 1.0, 2),
        format!("{} (alone: {})", opt(pf.other_cpu_s, 1.0, 2), opt(s.alone_other_cpu_s, 1.0, 2)),
    );
    md.push('\n');
    // BPF maps of the last stackwatch run, largest first.
    if let Some(b) = c.runs.iter().rev().find_map(|r| r.bpf.as_ref()) {
        let maps: Vec<String> = b
            .maps
            .iter()
            .filter(|m| m.bytes >= 64 * 1024)
            .map(|m| format!("`{}` {:.2}", m.name, m.bytes as f64 / MIB))
            .collect();
        if !maps.is_empty() {
            let _ = writeln!(md, "BPF maps ≥ 64 KiB (MiB, last run): {}.\n", maps.join(", "));
        }
    }
    let mut by_reason: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for l in c.runs.iter().filter(|r| r.profiler == Profiler::Stackwatch).flat_map(|r| &r.losses) {
        *by_reason.entry(&l.reason).or_default() += l.count;
    }
    let losses: Vec<String> = by_reason.iter().map(|(reason, n)| format!("`{reason}` {n}")).collect();
    if !losses.is_empty() {
        let _ = writeln!(
            md,
            "stackwatch losses by reason, all runs together (frames, not samples, unless `counts_map_full`): {}.\n",
            losses.join(", ")
        );
    }
    md.push_str("Commands:\n\n```sh\n");
    for cmd in &c.commands {
        let _ = writeln!(md, "{cmd}");
    }
    md.push_str("```\n\n");
    md
}

fn section(s: &ext::Section) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### {}\n", s.title);
    if s.status == Status::Failed {
        md.push_str("**The measurement failed.**\n\n");
    }
    if !s.rows.is_empty() {
        md.push_str("| Figure | Value | Target | Result |\n|---|---|---|---|\n");
        for r in &s.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.name,
                r.value,
                r.target.as_deref().unwrap_or("–"),
                verdict(r.pass)
            );
        }
        md.push('\n');
    }
    for n in &s.notes {
        let _ = writeln!(md, "{n}\n");
    }
    if !s.commands.is_empty() {
        md.push_str("```sh\n");
        for c in &s.commands {
            let _ = writeln!(md, "{c}");
        }
        md.push_str("```\n");
    }
    md.push('\n');
    md
}

/// Key stackwatch figures against the previously published run.
fn changes(results: &Results, prev: &serde_json::Value) -> String {
    let metrics = [
        ("profiler CPU (s)", "cpu_s", 1.0, 3),
        ("peak RSS (MiB)", "peak_rss_mib", 1.0, 1),
        ("BPF per sample (µs)", "bpf_ns_per_sample", 1e-3, 2),
        ("BPF maps (MiB)", "bpf_map_mib", 1.0, 2),
        ("launch to first sample (s)", "start_latency_s", 1.0, 3),
        ("stop to files (s)", "stop_to_files_s", 1.0, 3),
    ];
    let mut rows = String::new();
    for c in &results.comparisons {
        let Some(old) = prev
            .get("comparisons")
            .and_then(serde_json::Value::as_array)
            .and_then(|cs| cs.iter().find(|x| x.get("id").and_then(serde_json::Value::as_str) == Some(&c.id)))
        else {
            continue;
        };
        let now = serde_json::to_value(&c.summary.stackwatch).unwrap_or_default();
        for (name, key, scale, d) in metrics {
            let get = |v: &serde_json::Value| v.get(key)?.get("median")?.as_f64();
            let was = old.get("summary").and_then(|s| s.get("stackwatch")).and_then(get);
            if let (Some(was), Some(is)) = (was, get(&now)) {
                let _ = writeln!(rows, "| {} | {name} | {:.d$} | {:.d$} |", c.id, was * scale, is * scale, d = d);
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let commit = prev.get("git_commit").and_then(serde_json::Value::as_str).unwrap_or("?");
    let date = prev.get("date").and_then(serde_json::Value::as_str).unwrap_or("?");
    format!(
        "### stackwatch against the previous published run ({date}, `{commit}`)\n\n\
         | Capture | Figure (median) | Before | Now |\n|---|---|---|---|\n{rows}\n"
    )
}

/// Replaces the generated block of `docs/benchmarks.md` (creating the file
/// with a short preamble if it does not exist), keeping the prose around it.
pub(crate) fn update_docs(path: &Path, generated: &str) -> Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let rest = old[e + END.len()..].trim_start_matches('\n');
            let gap = if rest.is_empty() { "" } else { "\n" };
            format!("{}{generated}{gap}{rest}", &old[..b])
        }
        _ if old.is_empty() => {
            format!("# Benchmarks\n\nRun `cargo xtask bench` (as root) to refresh the figures below.\n\n{generated}")
        }
        _ => format!("{}\n\n## Results\n\n{generated}", old.trim_end()),
    };
    fs::write(path, new).with_context(|| format!("failed to write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Summary::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of([4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of([]), None);
        assert_eq!(spread(s, 1.0, 1), "2.0 (1.0–3.0)");
    }

    #[test]
    fn replaces_only_the_generated_block() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("benchmarks.md");
        fs::write(&path, format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Analysis\n\nkept\n")).unwrap();
        update_docs(&path, &format!("{BEGIN}\nnew\n{END}\n")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Analysis\n\nkept\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
