//! `stackwatch record`: one capture from start to files.
//!
//! Resolve the target and check the output directory (so bad input fails
//! before anything is loaded), load the eBPF programs, start the capture
//! session, wait for the duration or a signal while showing progress, then
//! end the session, detach, finish the capture and hand it to the
//! directory sink. The pipeline is `watch`'s too (`crate::pipeline`).

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::Result;
use profiler_common::Stat;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, info, warn};

use crate::{
    bpf::Loader,
    cli::RecordArgs,
    config::RecordConfig,
    kinds,
    pipeline::{self, Session},
    profile::capture::{CaptureInfo, FinishedCapture, TargetInfo, Trigger},
    profile::ProfileKind,
    sink::{dir, files, DirSink, FailedFile, Sink as _, Written},
    symbolize::{Symbolizer, SymbolizerConfig},
    target::Filter,
};

/// How often the status line, `--name` re-resolution and eBPF logs refresh.
const TICK: Duration = Duration::from_secs(1);

/// Why sampling ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndReason {
    Duration,
    Signal(&'static str),
    TargetExited,
}

pub async fn run(args: &RecordArgs) -> Result<()> {
    let config = RecordConfig::from_args(args)?;
    let resolved = config.target.resolve()?;
    let out_dir = config.output_dir.clone();
    let sink = DirSink::new(out_dir.clone(), config.formats, dir::sudo_owner());
    // Load first: without privileges nothing (not even the directory) is
    // created. Still before any sampling.
    let loading = Instant::now();
    let mut loader = Loader::load_with(&resolved.filter, kinds::programs_for(&config.profiles, config.unwind.mode()))?;
    debug!(elapsed_ms = loading.elapsed().as_millis() as u64, "loaded");
    dir::check_output_dir(&out_dir)?;
    if let Filter::Pids(pids) = &resolved.filter {
        // Known processes unwind with their tables from the first sample.
        loader.load_unwind_tables(pids);
    }
    files::sweep_and_log(&out_dir);
    let cgroup_dir = config.target.cgroup_dir();

    // Created before sampling: it snapshots processes as they show up, so
    // one that exits before the end still gets names. Its profiles are
    // built once, at the end: no parsed object is worth keeping past them.
    let mut symbolizer =
        Symbolizer::with_config(SymbolizerConfig { release_parsed: true, ..SymbolizerConfig::from_env() });
    let attaching = Instant::now();
    let session = Session::start(
        &mut loader,
        &mut symbolizer,
        &config.profiles,
        config.frequency_hz,
        &resolved.filter,
        cgroup_dir.as_deref(),
        config.duration,
    )?;
    debug!(elapsed_ms = attaching.elapsed().as_millis() as u64, "attached");
    let started = Instant::now();
    info!(target = %resolved.info.description, frequency_hz = config.frequency_hz, duration = %humantime::format_duration(config.duration), "recording");
    let end_reason = wait_for_end(&mut loader, &mut symbolizer, &config, &resolved.info, &session, started).await;
    // The kernel stopped counting at the deadline by itself; for a signal or
    // an exited target it stops now.
    let ended = session.stop(&mut loader);
    let window = ended.window;
    let late = Duration::from_nanos(crate::sys::monotonic_ns().saturating_sub(window.end_ns));
    debug!(late_ms = late.as_millis() as u64, "window closed");
    let detaching = loader.detach_in_background()?;
    if let EndReason::Signal(sig) = end_reason {
        info!("{sig} received: writing what was collected");
    } else if end_reason == EndReason::TargetExited {
        info!("every target process has exited: writing what was collected");
    }

    let trigger = Trigger::Manual { source: "record".to_owned() };
    let capture = pipeline::finish(
        &loader,
        &mut symbolizer,
        resolved.info.clone(),
        trigger,
        config.frequency_hz,
        &config.profiles,
        ended,
    )?;
    // A failed write still gets the summary: the top functions are all
    // that is left of the capture then.
    let writing = Instant::now();
    // The directory may have been removed or renamed since the start (a
    // cleanup cron, an operator); make it again rather than lose the
    // capture. If that fails, the write below says why.
    let _ = std::fs::create_dir_all(&out_dir);
    let written = sink.write(&capture).unwrap_or_else(|e| Written {
        paths: Vec::new(),
        failed: vec![FailedFile { path: out_dir.clone(), reason: format!("{e:#}") }],
    });
    debug!(elapsed_ms = writing.elapsed().as_millis() as u64, "written");
    let info = &capture.info;

    // A summary that cannot be printed (stdout a full disk, a closed pipe)
    // loses nothing: the files are written. Said after the files' own
    // errors, which matter more.
    let printed = print_summary(&written, &capture, &config.profiles, window.duration());
    let pushed = match &config.push {
        Some(push) => push_capture(push, &capture).await,
        None => Ok(()),
    };
    // The probes count nothing any more; this only keeps the process
    // around until the kernel has let go of them.
    if let Err(e) = detaching.wait() {
        warn!("{e:#}");
    }
    if let Some(e) = written.error() {
        if let Err(e) = printed {
            warn!("cannot print the summary to standard output: {e}");
        }
        return Err(e.context(format!("failed to write the capture to `{}`", out_dir.display())));
    }
    if let Err(e) = printed {
        let target = std::fs::read_link("/proc/self/fd/1").map(|p| format!(" (`{}`)", p.display())).unwrap_or_default();
        anyhow::bail!(
            "cannot print the summary to standard output{target}: {e}; the capture is written: {} files in `{}`",
            written.paths.len(),
            out_dir.display()
        );
    }
    pushed?;
    if config.profiles.contains(&ProfileKind::Cpu) {
        check_not_silently_empty(info)
    } else {
        Ok(())
    }
}

/// The paths written, what could not be written, the sample count and the
/// top functions of each profile, on standard output.
fn print_summary(
    written: &Written,
    capture: &FinishedCapture,
    profiles: &[ProfileKind],
    span: Duration,
) -> std::io::Result<()> {
    let info = &capture.info;
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
    let span = humantime::format_duration(round_ms(span));
    if profiles.contains(&ProfileKind::Cpu) {
        writeln!(stdout, "{} samples collected, {} lost, over {span}", info.samples_collected, info.samples_lost)?;
    } else {
        writeln!(stdout, "captured {span}")?;
    }
    write!(stdout, "{}", crate::profile::quality::render_text(&info.stack_quality))?;
    for profile in &capture.profiles {
        if profile.samples.is_empty() {
            continue;
        }
        writeln!(stdout, "\ntop functions ({}):", profile.kind)?;
        write!(stdout, "{}", crate::profile::report::format_top_table(profile, 10))?;
    }
    stdout.flush()
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
    session: &Session,
    started: Instant,
) -> EndReason {
    let deadline = tokio::time::Instant::from_std(started + config.duration);
    // SIGHUP (a closed terminal or ssh session) ends the recording like
    // Ctrl-C, and SIGUSR1/SIGUSR2 (`kill -USR2 $(pidof stackwatch)` meant
    // for a `watch` daemon) are ignored: their default action would kill
    // `record` and lose what it collected.
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    );
    let (mut sigint, mut sigterm, mut sighup, mut sigusr1, mut sigusr2) = match signals {
        (Ok(i), Ok(t), Ok(h), Ok(u1), Ok(u2)) => (i, t, h, u1, u2),
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
            _ = sighup.recv() => break EndReason::Signal("SIGHUP"),
            _ = sigusr1.recv() => info!("SIGUSR1 ignored: `record` has nothing to toggle; Ctrl-C or SIGTERM ends it early"),
            _ = sigusr2.recv() => info!("SIGUSR2 ignored: `record` has nothing to toggle; Ctrl-C or SIGTERM ends it early"),
            _ = ticker.tick() => {
                ticks += 1;
                if !session.tick(loader, symbolizer, &config.target, &target.pids) {
                    break EndReason::TargetExited;
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

/// How long `record --push` keeps trying a server that does not answer.
const PUSH_DEADLINE: Duration = Duration::from_secs(30);

/// `--push`: after the files are written, so a server that is down costs
/// the push, never the capture.
async fn push_capture(
    config: &crate::sink::push::PushConfig,
    capture: &crate::profile::capture::FinishedCapture,
) -> Result<()> {
    let url = config.ingest_url();
    let pusher = crate::sink::push::Pusher::new(config.clone())?;
    match crate::sink::push::push_now(&pusher, capture, PUSH_DEADLINE).await {
        Ok(sent) => {
            println!("pushed {sent} profile{} to {url}", if sent == 1 { "" } else { "s" });
            Ok(())
        }
        Err(e) => Err(e.context(format!("the files are written, but pushing them to `{url}` failed"))),
    }
}
