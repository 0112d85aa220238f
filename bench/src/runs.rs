//! One measured run each: the workload alone, `stackwatch record`, `perf
//! record` followed by `perf script | inferno-collapse-perf |
//! inferno-flamegraph`, and the idle `stackwatch watch` daemon.
//!
//! Both profilers are launched the same way and stopped the same way: SIGINT
//! (an operator's Ctrl-C) `capture` after launch, so their start-up time is
//! inside the window for both. The workload's throughput is read at the
//! window's ends; each profiler's CPU time and peak RSS come from `wait4`,
//! so they include start-up, sampling and writing the files.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;

use super::measure::{self, BpfWatch, BpfWatcher, Usage};

/// The workload: `bench/workloads/burn.c`, one burning thread per CPU.
pub(crate) struct Burner {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
}

/// A reading of the workload's counter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub t_ns: u64,
    pub rounds: u64,
}

impl Burner {
    pub(crate) fn start(bin: &Path, threads: usize) -> Result<Burner> {
        let mut child =
            measure::spawn(Command::new(bin).arg(threads.to_string()).stdin(Stdio::piped()).stdout(Stdio::piped()))?;
        let stdin = child.stdin.take().context("no stdin pipe to the workload")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout pipe from the workload")?);
        let pid = child.id();
        let mut burner = Burner { child, stdin, stdout, pid };
        // Let every thread start and the CPU frequency settle.
        thread::sleep(Duration::from_millis(500));
        burner.read()?;
        Ok(burner)
    }

    pub(crate) fn read(&mut self) -> Result<Reading> {
        self.stdin.write_all(b"\n").and_then(|()| self.stdin.flush()).context("the workload stopped reading")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).context("failed to read from the workload")?;
        let mut words = line.split_whitespace().map(str::parse::<u64>);
        match (words.next(), words.next()) {
            (Some(Ok(t_ns)), Some(Ok(rounds))) => Ok(Reading { t_ns, rounds }),
            _ => bail!("unexpected reading from the workload: {line:?}"),
        }
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a profiler samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The workload's process (`--pid` / `-p`).
    Pid,
    /// Every CPU (no target / `-a`).
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profiler {
    Alone,
    Stackwatch,
    Perf,
}

/// One capture to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub frequency: u64,
    pub capture: Duration,
    pub target: Target,
}

/// A counted loss, as the profiler reported it.
#[derive(Clone, Debug, Serialize)]
pub struct Loss {
    pub reason: String,
    pub count: u64,
}

/// BPF figures of one stackwatch run (from its fdinfo).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BpfFigures {
    pub run_cnt: u64,
    pub run_time_ns: u64,
    /// Kernel time per program run: per sample for the CPU sampler.
    pub ns_per_run: Option<f64>,
    /// The largest total of map memory seen during the run.
    pub map_bytes: u64,
    pub programs: Vec<ProgramFigures>,
    pub maps: Vec<MapFigures>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgramFigures {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapFigures {
    pub name: String,
    pub bytes: u64,
    pub max_entries: u64,
    pub value_size: u64,
}

impl BpfFigures {
    fn from_watch(watch: &BpfWatch) -> BpfFigures {
        let run_cnt = watch.last.run_cnt();
        let run_time_ns = watch.last.progs.values().map(|p| p.run_time_ns).sum();
        let name = |names: &std::collections::BTreeMap<u32, String>, id: &u32| {
            names.get(id).cloned().unwrap_or_else(|| format!("id {id}"))
        };
        let programs = watch
            .last
            .progs
            .iter()
            .map(|(id, p)| ProgramFigures {
                name: name(&watch.names.progs, id),
                run_cnt: p.run_cnt,
                run_time_ns: p.run_time_ns,
            })
            .collect();
        let mut maps: Vec<MapFigures> = watch
            .last
            .maps
            .iter()
            .map(|(id, m)| MapFigures {
                name: name(&watch.names.maps, id),
                bytes: m.memlock,
                max_entries: m.max_entries,
                value_size: m.value_size,
            })
            .collect();
        maps.sort_by_key(|m| std::cmp::Reverse(m.bytes));
        BpfFigures {
            run_cnt,
            run_time_ns,
            // Zero run time means kernel.bpf_stats_enabled was off.
            ns_per_run: (run_cnt > 0 && run_time_ns > 0).then(|| run_time_ns as f64 / run_cnt as f64),
            map_bytes: watch.max_map_bytes,
            programs,
            maps,
        }
    }
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub profiler: Profiler,
    pub round: usize,
    /// Seconds between the workload readings.
    pub window_s: f64,
    /// Workload rounds per second over the window.
    pub throughput: f64,
    /// CPU the workload used over the window.
    pub workload_cpu_s: f64,
    /// Host CPU used over the window by neither the workload nor the
    /// profiler (other processes, interrupts): a noisy neighbour shows here.
    pub other_cpu_s: f64,
    /// Profiler CPU, whole life (for perf: `perf record` plus the
    /// script/inferno pipeline).
    pub cpu_s: Option<f64>,
    /// perf only: the two parts of `cpu_s`.
    pub record_cpu_s: Option<f64>,
    pub post_cpu_s: Option<f64>,
    /// Largest peak RSS of any one profiler process.
    pub peak_rss_mib: Option<f64>,
    /// Launch to the first sample.
    pub start_latency_s: Option<f64>,
    /// SIGINT to every file written (stackwatch: to its exit; perf: to its
    /// exit plus the script/inferno pipeline).
    pub stop_to_files_s: Option<f64>,
    pub samples: Option<u64>,
    /// `samples ÷ (frequency × CPU-seconds sampled)`, from the bench's own
    /// measurement of the CPU time between the first sample and SIGINT.
    pub fidelity: Option<f64>,
    /// stackwatch only: `samples_collected ÷ expected_samples` of its manifest.
    pub manifest_fidelity: Option<f64>,
    /// Samples the profiler says it dropped.
    pub lost: Option<u64>,
    pub losses: Vec<Loss>,
    pub bpf: Option<BpfFigures>,
    /// Where this run's files are.
    pub dir: PathBuf,
}

/// Start of a measurement window.
struct WindowStart {
    reading: Reading,
    workload_cpu_ns: u64,
    host_busy_s: f64,
}

struct Window {
    window_s: f64,
    throughput: f64,
    workload_cpu_s: f64,
    host_busy_s: f64,
}

impl Window {
    /// The CPU-seconds per second a profiler could sample: the workload's,
    /// or the whole host's.
    fn sampled_cpu_rate(&self, target: Target) -> f64 {
        let cpu = match target {
            Target::Pid => self.workload_cpu_s,
            Target::Host => self.host_busy_s,
        };
        if self.window_s > 0.0 {
            cpu / self.window_s
        } else {
            0.0
        }
    }
}

fn window_start(burner: &mut Burner) -> Result<WindowStart> {
    Ok(WindowStart {
        workload_cpu_ns: measure::process_cpu_ns(burner.pid)?,
        host_busy_s: measure::host_cpu_s()?.0,
        reading: burner.read()?,
    })
}

fn window_end(burner: &mut Burner, start: &WindowStart) -> Result<Window> {
    let reading = burner.read()?;
    let workload_cpu_ns = measure::process_cpu_ns(burner.pid)?;
    let host_busy_s = measure::host_cpu_s()?.0;
    let window_s = measure::secs(start.reading.t_ns, reading.t_ns);
    Ok(Window {
        window_s,
        throughput: (reading.rounds - start.reading.rounds) as f64 / window_s.max(1e-9),
        workload_cpu_s: (workload_cpu_ns.saturating_sub(start.workload_cpu_ns)) as f64 / 1e9,
        host_busy_s: host_busy_s - start.host_busy_s,
    })
}

fn sleep_until(t_ns: u64) {
    let now = measure::monotonic_ns();
    if t_ns > now {
        thread::sleep(Duration::from_nanos(t_ns - now));
    }
}

/// The workload alone for `length`.
pub(crate) fn alone(burner: &mut Burner, round: usize, length: Duration, dir: &Path) -> Result<Run> {
    eprintln!("bench: workload alone for {} s", length.as_secs_f64());
    let start = window_start(burner)?;
    thread::sleep(length);
    let w = window_end(burner, &start)?;
    Ok(Run {
        profiler: Profiler::Alone,
        round,
        window_s: w.window_s,
        throughput: w.throughput,
        workload_cpu_s: w.workload_cpu_s,
        other_cpu_s: (w.host_busy_s - w.workload_cpu_s).max(0.0),
        cpu_s: None,
        record_cpu_s: None,
        post_cpu_s: None,
        peak_rss_mib: None,
        start_latency_s: None,
        stop_to_files_s: None,
        samples: None,
        fidelity: None,
        manifest_fidelity: None,
        lost: None,
        losses: Vec::new(),
        bpf: None,
        dir: dir.to_owned(),
    })
}

/// Output files of a run, so a failure can show the profiler's own words.
fn log_files(dir: &Path, name: &str) -> Result<(File, File, PathBuf)> {
    let out = File::create(dir.join(format!("{name}.stdout"))).context("failed to create a log file")?;
    let err_path = dir.join(format!("{name}.stderr"));
    let err = File::create(&err_path).context("failed to create a log file")?;
    Ok((out, err, err_path))
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// A profiler launched, then stopped with SIGINT `capture` after launch.
struct Stopped {
    window: Window,
    usage: Usage,
    launch_ns: u64,
    sigint_ns: u64,
    exit_ns: u64,
    /// The profiler's own CPU until SIGINT.
    cpu_in_window_s: f64,
    watch: Option<BpfWatch>,
}

fn launch_and_stop(
    burner: &mut Burner,
    cmd: &mut Command,
    capture: Duration,
    profiler: Profiler,
    err_path: &Path,
) -> Result<Stopped> {
    let watch_bpf = profiler == Profiler::Stackwatch;
    let line = xtask::cmd::display(cmd);
    let start = window_start(burner)?;
    let launch_ns = measure::monotonic_ns();
    let child = measure::spawn(cmd)?;
    let pid = child.id();
    let watcher = watch_bpf.then(|| BpfWatcher::start(pid));
    sleep_until(launch_ns + capture.as_nanos() as u64);
    let cpu_in_window_s = measure::process_cpu_ns(pid).unwrap_or(0) as f64 / 1e9;
    let window = window_end(burner, &start)?;
    let sigint_ns = measure::monotonic_ns();
    measure::signal(pid, libc::SIGINT);
    let (status, usage) = measure::wait_usage(&child)?;
    let exit_ns = measure::monotonic_ns();
    let watch = watcher.map(BpfWatcher::finish);
    // perf record re-raises the SIGINT it handled once its file is written.
    let interrupted = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGINT;
    let perf_done = interrupted && profiler == Profiler::Perf;
    if !(measure::exited_ok(status) || perf_done) {
        bail!("`{line}` failed ({}); its last words:\n{}", measure::describe_status(status), tail(err_path));
    }
    Ok(Stopped { window, usage, launch_ns, sigint_ns, exit_ns, cpu_in_window_s, watch })
}

/// `stackwatch record` of the workload (or the host), stopped with SIGINT.
pub(crate) fn stackwatch(stackwatch: &Path, burner: &mut Burner, spec: Spec, round: usize, dir: &Path) -> Result<Run> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let (out, err, err_path) = log_files(dir, "stackwatch")?;
    let mut cmd = Command::new(stackwatch);
    cmd.arg("record");
    if spec.target == Target::Pid {
        cmd.args(["--pid", &burner.pid.to_string()]);
    }
    // Ended by SIGINT at `capture`, like perf: the duration is a backstop.
    cmd.args(["--duration", "1h", "--frequency", &spec.frequency.to_string(), "--output-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let s = launch_and_stop(burner, &mut cmd, spec.capture, Profiler::Stackwatch, &err_path)?;
    let manifest = read_manifest(dir)?;
    for suffix in [".pb.gz", ".svg"] {
        if !dir_has_file(dir, suffix) {
            bail!("stackwatch wrote no `*{suffix}` file in `{}`", dir.display());
        }
    }
    let watch = s.watch.unwrap_or_default();
    let first_ns = watch.first_run_ns;
    let samples = manifest.samples_collected;
    let rate = s.window.sampled_cpu_rate(spec.target);
    Ok(Run {
        profiler: Profiler::Stackwatch,
        round,
        window_s: s.window.window_s,
        throughput: s.window.throughput,
        workload_cpu_s: s.window.workload_cpu_s,
        other_cpu_s: other_cpu(&s.window, s.cpu_in_window_s),
        cpu_s: Some(s.usage.cpu_s()),
        record_cpu_s: None,
        post_cpu_s: None,
        peak_rss_mib: Some(s.usage.max_rss_mib),
        start_latency_s: first_ns.map(|t| measure::secs(s.launch_ns, t)),
        stop_to_files_s: Some(measure::secs(s.sigint_ns, s.exit_ns)),
        samples: Some(samples),
        fidelity: first_ns.map(|t| fidelity(samples, spec.frequency, rate, measure::secs(t, s.sigint_ns))),
        manifest_fidelity: manifest.expected_samples.filter(|&e| e > 0).map(|e| samples as f64 / e as f64),
        lost: Some(manifest.samples_lost),
        losses: manifest.losses,
        bpf: Some(BpfFigures::from_watch(&watch)),
        dir: dir.to_owned(),
    })
}

/// `perf record -g`, stopped with SIGINT, then `perf script |
/// inferno-collapse-perf | inferno-flamegraph` to get the same SVG.
pub(crate) fn perf(burner: &mut Burner, spec: Spec, round: usize, dir: &Path) -> Result<Run> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let (out, err, err_path) = log_files(dir, "perf-record")?;
    let data = dir.join("perf.data");
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-F", &spec.frequency.to_string(), "-g"]);
    match spec.target {
        Target::Pid => cmd.args(["-p", &burner.pid.to_string()]),
        Target::Host => cmd.arg("-a"),
    };
    // CLOCK_MONOTONIC sample times, to find the first sample after launch.
    cmd.args(["-k", "CLOCK_MONOTONIC", "-o"]).arg(&data).stdin(Stdio::null()).stdout(out).stderr(err);
    let s = launch_and_stop(burner, &mut cmd, spec.capture, Profiler::Perf, &err_path)?;
    let record_log = fs::read_to_string(&err_path).unwrap_or_default();

    let (post_out, post_err, post_err_path) = log_files(dir, "perf-post")?;
    let pipeline = format!(
        "perf script -i {data} | inferno-collapse-perf > {folded} && inferno-flamegraph {folded} > {svg}",
        data = data.display(),
        folded = dir.join("perf.folded").display(),
        svg = dir.join("perf.svg").display(),
    );
    let mut post = Command::new("sh");
    post.args(["-c", &pipeline]).stdin(Stdio::null()).stdout(post_out).stderr(post_err);
    let post_start = measure::monotonic_ns();
    let child = measure::spawn(&mut post)?;
    let (status, post_usage) = measure::wait_usage(&child)?;
    let post_end = measure::monotonic_ns();
    if !measure::exited_ok(status) {
        bail!(
            "`{}` failed ({}); its last words:\n{}",
            xtask::cmd::display(&post),
            measure::describe_status(status),
            tail(&post_err_path)
        );
    }
    let post_log = fs::read_to_string(&post_err_path).unwrap_or_default();

    let samples = perf_samples(&record_log);
    let first_ns = perf_first_sample_ns(&data);
    let rate = s.window.sampled_cpu_rate(spec.target);
    let lost = perf_lost(&record_log) + perf_lost(&post_log);
    let record_cpu = s.usage.cpu_s();
    Ok(Run {
        profiler: Profiler::Perf,
        round,
        window_s: s.window.window_s,
        throughput: s.window.throughput,
        workload_cpu_s: s.window.workload_cpu_s,
        other_cpu_s: other_cpu(&s.window, s.cpu_in_window_s),
        cpu_s: Some(record_cpu + post_usage.cpu_s()),
        record_cpu_s: Some(record_cpu),
        post_cpu_s: Some(post_usage.cpu_s()),
        peak_rss_mib: Some(s.usage.max_rss_mib.max(post_usage.max_rss_mib)),
        start_latency_s: first_ns.map(|t| measure::secs(s.launch_ns, t)),
        stop_to_files_s: Some(measure::secs(s.sigint_ns, s.exit_ns) + measure::secs(post_start, post_end)),
        samples,
        fidelity: match (samples, first_ns) {
            (Some(n), Some(t)) => Some(fidelity(n, spec.frequency, rate, measure::secs(t, s.sigint_ns))),
            _ => None,
        },
        manifest_fidelity: None,
        lost: Some(lost),
        losses: if lost > 0 {
            vec![Loss { reason: "perf_lost_chunks_or_samples".to_owned(), count: lost }]
        } else {
            Vec::new()
        },
        bpf: None,
        dir: dir.to_owned(),
    })
}

fn other_cpu(window: &Window, profiler_cpu_s: f64) -> f64 {
    (window.host_busy_s - window.workload_cpu_s - profiler_cpu_s).max(0.0)
}

fn fidelity(samples: u64, frequency: u64, cpu_rate: f64, sampled_s: f64) -> f64 {
    let expected = frequency as f64 * cpu_rate * sampled_s;
    if expected > 0.0 {
        samples as f64 / expected
    } else {
        0.0
    }
}

/// `[ perf record: Captured and wrote 0.068 MB perf.data (789 samples) ]`.
fn perf_samples(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("Captured and wrote"))?;
    let inner = line.rsplit_once('(')?.1;
    inner.split_whitespace().next()?.parse().ok()
}

/// Losses perf reports: `Processed N events and lost M chunks!`,
/// `… lost M samples`, `[ perf record: … lost M …]`.
fn perf_lost(log: &str) -> u64 {
    let mut total = 0;
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "lost" {
                if let Ok(n) = pair[1].trim_end_matches(['!', ',']).parse::<u64>() {
                    total += n;
                }
            }
        }
    }
    total
}

/// The time of the first sample in `data` (`CLOCK_MONOTONIC` ns, as
/// recorded with `-k CLOCK_MONOTONIC`). Not part of any measured figure.
fn perf_first_sample_ns(data: &Path) -> Option<u64> {
    let mut cmd = Command::new("perf");
    cmd.args(["script", "-F", "time", "-i"]).arg(data);
    let out = xtask::cmd::stdout(&mut cmd).ok()?;
    let first = out.lines().map(str::trim).find(|l| !l.is_empty())?;
    let secs: f64 = first.trim_end_matches(':').parse().ok()?;
    Some((secs * 1e9) as u64)
}

#[derive(Debug, Default)]
struct Manifest {
    samples_collected: u64,
    samples_lost: u64,
    expected_samples: Option<u64>,
    losses: Vec<Loss>,
}

fn dir_has_file(dir: &Path, suffix: &str) -> bool {
    fs::read_dir(dir).map(|es| es.flatten().any(|e| e.file_name().to_string_lossy().ends_with(suffix))).unwrap_or(false)
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = fs::read_dir(dir)
        .with_context(|| format!("failed to list `{}`", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-capture-") && p.extension().is_some_and(|x| x == "json"))
        .ok_or_else(|| anyhow!("stackwatch wrote no capture manifest in `{}`", dir.display()))?;
    let text = fs::read_to_string(&path).with_context(|| format!("failed to read `{}`", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let num = |key: &str| v.get(key).and_then(serde_json::Value::as_u64);
    let losses = v
        .get("losses")
        .and_then(serde_json::Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|l| Loss {
                    reason: l.get("reason").and_then(serde_json::Value::as_str).unwrap_or("?").to_owned(),
                    count: l.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Manifest {
        samples_collected: num("samples_collected").context("manifest has no samples_collected")?,
        samples_lost: num("samples_lost").unwrap_or(0),
        expected_samples: num("expected_samples"),
        losses,
    })
}

/// The idle `watch` daemon over a window.
#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    pub window_s: f64,
    /// Launch to holding a loaded and verified BPF program, control FIFO created.
    pub ready_s: f64,
    /// CPU over the window, percent of one core.
    pub cpu_percent: f64,
    pub cpu_ns: u64,
    pub rss_mib: f64,
    /// Peak RSS since launch (start-up included).
    pub hwm_mib: f64,
    /// Runs of its BPF programs during the window: 0 means nothing sampled.
    pub bpf_runs: u64,
    /// BPF map memory held while idle.
    pub map_bytes: u64,
    pub maps: Vec<MapFigures>,
    /// VmRSS and VmHWM 2 s after one whole-host capture (5 s, written to
    /// files): what an idle daemon that has captured holds.
    pub after_capture: Option<(f64, f64)>,
    pub dir: PathBuf,
}

pub(crate) fn idle_daemon(stackwatch: &Path, window: Duration, dir: &Path) -> Result<Idle> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let control = dir.join("control");
    let _ = fs::remove_file(&control);
    let (out, err, err_path) = log_files(dir, "watch")?;
    let mut cmd = Command::new(stackwatch);
    cmd.args(["watch", "--control"])
        .arg(&control)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let launch_ns = measure::monotonic_ns();
    let mut child = measure::spawn(&mut cmd)?;
    let pid = child.id();
    let result = (|| -> Result<Idle> {
        if !measure::wait_for_path(&control, Duration::from_secs(30)) {
            bail!("`stackwatch watch` did not create `{}` within 30 s:\n{}", control.display(), tail(&err_path));
        }
        // Ready once it holds its verified program (the FIFO may come first).
        let deadline = launch_ns + 30_000_000_000;
        while measure::bpf_snapshot(pid).progs.is_empty() {
            if measure::monotonic_ns() > deadline {
                bail!("`stackwatch watch` loaded no BPF program within 30 s:\n{}", tail(&err_path));
            }
            thread::sleep(Duration::from_millis(1));
        }
        let ready_s = measure::secs(launch_ns, measure::monotonic_ns());
        // Past start-up: the window measures the steady state.
        thread::sleep(Duration::from_secs(1));
        let bpf0 = measure::bpf_snapshot(pid);
        let cpu0 = measure::process_cpu_ns(pid)?;
        eprintln!("bench: idle `stackwatch watch` for {} s", window.as_secs_f64());
        let t0 = measure::monotonic_ns();
        thread::sleep(window);
        let cpu1 = measure::process_cpu_ns(pid)?;
        let t1 = measure::monotonic_ns();
        let bpf1 = measure::bpf_snapshot(pid);
        let (rss_mib, hwm_mib) = measure::process_rss_mib(pid)?;
        let window_s = measure::secs(t0, t1);
        let cpu_ns = cpu1.saturating_sub(cpu0);
        let names = measure::BpfNames::lookup(&bpf1);
        let mut maps: Vec<MapFigures> = bpf1
            .maps
            .iter()
            .map(|(id, m)| MapFigures {
                name: names.maps.get(id).cloned().unwrap_or_else(|| format!("id {id}")),
                bytes: m.memlock,
                max_entries: m.max_entries,
                value_size: m.value_size,
            })
            .collect();
        maps.sort_by_key(|m| std::cmp::Reverse(m.bytes));
        let after_capture = Some(after_one_capture(pid, &control, &dir.join("out"), &err_path)?);
        Ok(Idle {
            window_s,
            ready_s,
            cpu_percent: cpu_ns as f64 / 1e9 / window_s * 100.0,
            cpu_ns,
            rss_mib,
            hwm_mib,
            bpf_runs: bpf1.run_cnt().saturating_sub(bpf0.run_cnt()),
            map_bytes: bpf1.map_bytes(),
            maps,
            after_capture,
            dir: dir.to_owned(),
        })
    })();
    measure::signal(pid, libc::SIGTERM);
    let deadline = measure::monotonic_ns() + 15_000_000_000;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if measure::monotonic_ns() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    result
}

/// Has the daemon `pid` capture the whole host for 5 s through its
/// `control` FIFO while a python3.11 loop runs (something to unwind and
/// name: libpython and libc), waits for the manifest in `out`, then 2 s
/// more: its (VmRSS, VmHWM) in MiB.
fn after_one_capture(pid: u32, control: &Path, out: &Path, err_path: &Path) -> Result<(f64, f64)> {
    eprintln!("bench: one 5 s whole-host capture of the idle daemon, a python3.11 loop running");
    let mut python = measure::spawn(
        Command::new("python3.11").args(["-c", measure::PYTHON_LOOP]).stdin(Stdio::null()).stdout(Stdio::null()),
    )?;
    let result = capture_and_measure(pid, control, out, err_path);
    let _ = python.kill();
    let _ = python.wait();
    result
}

fn capture_and_measure(pid: u32, control: &Path, out: &Path, err_path: &Path) -> Result<(f64, f64)> {
    let manifests = || {
        fs::read_dir(out)
            .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    };
    // A directory kept from an earlier run may hold manifests already.
    let before = manifests();
    fs::write(control, "start 5s\n").with_context(|| format!("failed to write to `{}`", control.display()))?;
    let deadline = measure::monotonic_ns() + 120_000_000_000;
    while manifests() <= before {
        if measure::monotonic_ns() > deadline {
            bail!("the daemon wrote no capture within 120 s:\n{}", tail(err_path));
        }
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(2));
    measure::process_rss_mib(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_record_summary() {
        let log = "[ perf record: Woken up 1 times to write data ]\n\
                   [ perf record: Captured and wrote 0.068 MB /tmp/perf.data (789 samples) ]\n";
        assert_eq!(perf_samples(log), Some(789));
        assert_eq!(perf_lost(log), 0);
        assert_eq!(perf_lost("Warning:\nProcessed 8123 events and lost 3 chunks!\n"), 3);
    }
}
