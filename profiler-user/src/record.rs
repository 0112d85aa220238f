//! `stackwatch record`: one capture from start to files.
//!
//! Resolve the target and check the output directory (so bad input fails
//! before anything is loaded), load and attach the eBPF programs, open the
//! capture window, wait for the duration or a signal while showing progress,
//! then close the window, detach, drain, symbolize and write. The window is
//! enforced by the kernel (see [`Loader::open_window`]): what is counted
//! spans exactly the window whatever attaching, detaching or a late wake-up
//! of this process costs. The pieces after sampling are shared with `watch`
//! through [`finish_capture_kinds`].

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use profiler_common::Stat;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};

use crate::{
    aggregate,
    bpf::Loader,
    config::RecordConfig,
    kinds::{self, AttachTarget, Shape},
    metrics::CpuMeter,
    output,
    profile::capture::{CaptureInfo, CaptureWindow, TargetInfo, Trigger},
    profile::{Profile, ProfileKind},
    symbolize::Symbolizer,
    target::TargetSpec,
};

/// How often the status line, `--name` re-resolution and eBPF logs refresh.
const TICK: Duration = Duration::from_secs(1);

/// Why sampling ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Duration,
    Signal(&'static str),
    TargetExited,
}

pub async fn run(config: RecordConfig) -> Result<()> {
    let resolved = config.target.resolve()?;
    let out_dir = config.output_dir.clone();
    let owner = output::sudo_owner();
    // Load first: without privileges nothing (not even the directory) is
    // created. Still before any sampling.
    let loading = Instant::now();
    let mut loader = Loader::load_with(&resolved.filter, kinds::programs_for(&config.profiles))?;
    debug!(elapsed_ms = loading.elapsed().as_millis() as u64, "loaded");
    check_output_dir(&out_dir)?;
    output::files::sweep_and_log(&out_dir);
    let cgroup_dir = match &config.target {
        TargetSpec::Cgroup(p) => crate::target::cgroup_dir(p).ok(),
        _ => None,
    };
    let attaching = Instant::now();
    let target =
        AttachTarget { frequency_hz: config.frequency_hz, filter: &resolved.filter, cgroup_dir: cgroup_dir.as_deref() };
    kinds::attach(&mut loader, &config.profiles, &target)?;
    debug!(elapsed_ms = attaching.elapsed().as_millis() as u64, "attached");

    // Created before sampling: it snapshots processes as they show up, so
    // one that exits before the end still gets names.
    let mut symbolizer = Symbolizer::new();
    let meter = CpuMeter::start(&resolved.filter, cgroup_dir.as_deref());
    let window = loader.open_window(config.duration)?;
    let started = Instant::now();
    info!(target = %resolved.info.description, frequency_hz = config.frequency_hz, duration = %humantime::format_duration(config.duration), "recording");
    let end_reason = wait_for_end(&mut loader, &mut symbolizer, &config, &resolved.info, &meter, started).await;
    // The kernel stopped counting at the deadline by itself; for a signal or
    // an exited target it stops now. Whatever detaching costs from here on
    // is outside the window.
    let window = loader.close_window()?.unwrap_or(window);
    let cpu_seconds = meter.finish(&window);
    let late = Duration::from_nanos(crate::sys::monotonic_ns().saturating_sub(window.end_ns));
    debug!(late_ms = late.as_millis() as u64, "window closed");
    let detaching = loader.detach_in_background()?;
    if let EndReason::Signal(sig) = end_reason {
        info!("{sig} received: writing what was collected");
    } else if end_reason == EndReason::TargetExited {
        info!("every target process has exited: writing what was collected");
    }

    let trigger = Trigger::Manual { source: "record".to_owned() };
    let (info, profiles) = finish_capture_kinds(
        &loader,
        &mut symbolizer,
        resolved.info.clone(),
        trigger,
        config.frequency_hz,
        &config.profiles,
        window,
        cpu_seconds,
    )?;
    // A failed write still gets the summary: the top functions are all
    // that is left of the capture then.
    let writing = Instant::now();
    let written =
        output::write_capture(&out_dir, &info, &profiles, config.formats, owner).unwrap_or_else(|e| output::Written {
            paths: Vec::new(),
            failed: vec![output::FailedFile { path: out_dir.clone(), reason: format!("{e:#}") }],
        });
    debug!(elapsed_ms = writing.elapsed().as_millis() as u64, "written");

    let mut stdout = std::io::stdout().lock();
    if !written.paths.is_empty() {
        writeln!(stdout, "wrote:")?;
    }
    for p in &written.paths {
        writeln!(stdout, "  {}", p.display())?;
    }
    if !written.failed.is_empty() {
        writeln!(stdout, "could not write:")?;
    }
    for failed in &written.failed {
        writeln!(stdout, "  {}", failed.reason)?;
    }
    let span = humantime::format_duration(round_ms(window.duration()));
    if config.profiles.contains(&ProfileKind::Cpu) {
        writeln!(stdout, "{} samples collected, {} lost, over {span}", info.samples_collected, info.samples_lost)?;
    } else {
        writeln!(stdout, "captured {span}")?;
    }
    for profile in &profiles {
        if profile.samples.is_empty() {
            continue;
        }
        writeln!(stdout, "\ntop functions ({}):", profile.kind)?;
        write!(stdout, "{}", crate::profile::report::format_top_table(profile, 10))?;
    }
    drop(stdout);
    // The probes count nothing any more; this only keeps the process
    // around until the kernel has let go of them.
    if let Err(e) = detaching.wait() {
        warn!("{e:#}");
    }
    if let Some(e) = written.error() {
        return Err(e.context(format!("failed to write the capture to `{}`", out_dir.display())));
    }
    if config.profiles.contains(&ProfileKind::Cpu) {
        check_not_silently_empty(&info)
    } else {
        Ok(())
    }
}

/// An empty capture of a target that used CPU means sampling is broken on
/// this host; say so instead of handing over an empty profile as if it
/// were the truth. (The files are already written: nothing is hidden.)
fn check_not_silently_empty(info: &CaptureInfo) -> Result<()> {
    if info.samples_collected > 0 {
        return Ok(());
    }
    match info.expected_samples {
        Some(expected) if expected >= 5 => anyhow::bail!(
            "no samples were collected although the target used {:.2} s of CPU (about {expected} samples expected); sampling does not work on this host: run `stackwatch doctor`",
            info.target_cpu_seconds.unwrap_or_default()
        ),
        _ => {
            warn!("no samples: the target did not run on a CPU during the capture");
            Ok(())
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Sleeps until the duration passes, a signal arrives or every target
/// process is gone, refreshing progress and `--name` matches each tick.
async fn wait_for_end(
    loader: &mut Loader,
    symbolizer: &mut Symbolizer,
    config: &RecordConfig,
    target: &TargetInfo,
    meter: &CpuMeter,
    started: Instant,
) -> EndReason {
    let deadline = tokio::time::Instant::from_std(started + config.duration);
    let (mut sigint, mut sigterm) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            warn!("cannot install signal handlers; Ctrl-C will stop without writing");
            tokio::time::sleep_until(deadline).await;
            return EndReason::Duration;
        }
    };
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    let mut ticks: u64 = 0;
    let reason = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break EndReason::Duration,
            _ = sigint.recv() => break EndReason::Signal("SIGINT"),
            _ = sigterm.recv() => break EndReason::Signal("SIGTERM"),
            _ = ticker.tick() => {
                ticks += 1;
                loader.flush_logs();
                if let Ok(pids) = loader.pids_seen() {
                    symbolizer.observe_pids(&pids);
                }
                if let TargetSpec::Name(re) = &config.target {
                    let pids = crate::target::find_pids_by_name(re);
                    if !pids.is_empty() {
                        if let Err(e) = loader.set_target_pids(&pids) {
                            warn!("failed to update the target processes: {e:#}");
                        }
                        meter.set_pids(&pids);
                    }
                }
                if let TargetSpec::Pids(pids) = &config.target {
                    if pids.iter().all(|&p| !crate::procfs::process::exists(p)) {
                        break EndReason::TargetExited;
                    }
                }
                let elapsed = started.elapsed();
                let samples = loader.stats().map(|s| s.get(Stat::Recorded)).unwrap_or(0);
                if tty {
                    let procs = loader.processes_seen().unwrap_or(0);
                    let remaining = config.duration.saturating_sub(elapsed);
                    eprint!(
                        "\r\x1b[2K[{} elapsed, {} left] {} samples from {} process{}  ({})",
                        humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
                        humantime::format_duration(Duration::from_secs(remaining.as_secs())),
                        samples,
                        procs,
                        if procs == 1 { "" } else { "es" },
                        target.description,
                    );
                    let _ = std::io::stderr().flush();
                } else if ticks.is_multiple_of(10) {
                    info!(elapsed_s = elapsed.as_secs(), samples, "recording");
                }
            }
        }
    };
    if tty {
        eprint!("\r\x1b[2K");
    }
    loader.flush_logs();
    reason
}

/// Drains, symbolizes and describes a capture of several profile kinds,
/// returned in the order of `kinds`. One symbolizer pass per kind shares
/// its caches.
#[allow(clippy::too_many_arguments)]
pub fn finish_capture_kinds(
    loader: &Loader,
    symbolizer: &mut Symbolizer,
    target: TargetInfo,
    trigger: Trigger,
    frequency_hz: u64,
    kinds: &[ProfileKind],
    window: CaptureWindow,
    target_cpu_seconds: Option<f64>,
) -> Result<(CaptureInfo, Vec<Profile>)> {
    let building = Instant::now();
    let CaptureWindow { start, end, .. } = window;
    let duration = window.duration();
    let mut profiles = Vec::with_capacity(kinds.len());
    let mut losses = Vec::new();
    let mut samples_collected = 0;
    let shape = Shape { frequency_hz, programs: loader.programs(), start, duration };
    for &kind in kinds {
        let plugin = kinds::of(kind);
        let started = Instant::now();
        let raw = plugin
            .drain(loader, &window)
            .with_context(|| format!("failed to read the {kind} samples from the kernel"))?;
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "{kind} samples drained");
        let agg = aggregate::aggregate(&raw);
        if let Some(n) = plugin.samples_collected(&agg) {
            samples_collected = n;
        }
        losses.extend(plugin.losses(&raw.stats, &agg));
        let template = plugin.template(&shape);
        let period = template.period;
        let mut profile = symbolizer.build_profile(&agg, template, |s| plugin.values(s, period));
        plugin.finish(&mut profile);
        profiles.push(profile);
    }
    for p in &mut profiles {
        p.normalize();
    }
    debug!(elapsed_ms = building.elapsed().as_millis() as u64, "drained and symbolized");
    let info = CaptureInfo {
        target,
        trigger,
        start,
        end,
        frequency_hz,
        samples_collected,
        samples_lost: losses.iter().filter(|l| l.drops_samples()).map(|l| l.count).sum(),
        losses,
        target_cpu_seconds,
        expected_samples: target_cpu_seconds.map(|s| (s * frequency_hz as f64).round() as u64),
        host: crate::procfs::host::host_name(),
        kernel: crate::procfs::host::kernel_release(),
        stackwatch_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    Ok((info, profiles))
}

/// Fails early, before anything is loaded, when `dir` cannot take files.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory `{}`", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot use output directory `{}`", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("output directory `{}` is not a directory", dir.display());
    }
    // access(2) honours read-only mounts and, for non-root users, permissions.
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("output directory path contains a NUL byte")?;
    // SAFETY: `c` is a valid NUL-terminated string.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("cannot write to output directory `{}`: {e}; choose another with --output-dir", dir.display());
    }
    Ok(())
}
