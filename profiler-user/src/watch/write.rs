//! The capture writer: runs on a blocking thread with the loader moved in,
//! so the daemon keeps answering commands while a capture is symbolized and
//! written, and always hands the loader back, whatever happened.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use tracing::{info, warn};

use crate::bpf::{Detaching, Loader};
use crate::history::{self, HistoryView};
use crate::pipeline::{self, Ended};
use crate::profile::capture::{LossReason, Trigger};
use crate::profile::ProfileKind;
use crate::sink::retention::{self, CaptureKey, Policy};
use crate::sink::{files, Sink, Written};
use crate::symbolize::Symbolizer;
use crate::target::ResolvedTarget;

/// Everything the writing thread needs.
pub(super) struct WriteJob {
    /// The sink's directory: recreated if it vanished, and pruned.
    pub output_dir: PathBuf,
    pub sink: Arc<dyn Sink>,
    pub policy: Policy,
    pub target: ResolvedTarget,
    pub trigger: Trigger,
    /// The profiles to write, as attached.
    pub kinds: Vec<ProfileKind>,
    pub frequency_hz: u64,
    /// As counted: closed, the kernel changes nothing in the maps any more.
    pub ended: Ended,
    /// The flight recorder's view at the start, and when the rule's
    /// condition first held.
    pub history: Option<(HistoryView, Option<SystemTime>)>,
}

/// A capture that reached the output stage.
pub(super) struct Captured {
    /// What was written, and what could not be.
    pub written: Written,
    /// Samples collected.
    pub samples: u64,
    /// Losses by reason, for the metrics.
    pub lost: Vec<(LossReason, u64)>,
}

/// What the writing thread hands back.
pub(super) struct WriteOutcome {
    pub loader: Loader,
    pub symbolizer: Symbolizer,
    /// The files, or why the capture never reached the files.
    pub result: Result<Captured>,
}

/// Runs on a blocking thread: detaches, drains, symbolizes and writes the
/// capture, empties the maps, applies retention and sweeps stale temporary
/// files. Always hands the loader back.
pub(super) fn write_job(mut loader: Loader, mut symbolizer: Symbolizer, job: WriteJob) -> WriteOutcome {
    // Here rather than on the daemon's task: a uprobe takes seconds to
    // detach on a crowded host, and commands must still be answered. The
    // window is closed, so the probes count nothing while they go.
    let detaching = loader.detach_in_background();
    let result = write_files(&loader, &mut symbolizer, &job);
    match detaching.map(Detaching::wait) {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => warn!("{e:#}"),
    }
    // Pinned files of processes that are gone are of no further use.
    symbolizer.forget_exited();
    // Empty the maps now rather than at the next start: idle, the kernel
    // memory of the stacks would otherwise stay allocated.
    if let Err(e) = loader.clear() {
        warn!("failed to empty the kernel maps after the capture: {e:#}");
    }
    if let Ok(captured) = &result {
        // Even when some files failed: on a full disk, pruning old captures
        // is what makes room for the next one.
        let keep = captured.written.paths.last().and_then(|p| p.file_name()?.to_str()).and_then(retention::parse_name);
        if keep.is_some() {
            apply_retention(&job.output_dir, &job.policy, keep.as_ref());
        }
    }
    files::sweep_and_log(&job.output_dir);
    release_freed_memory();
    WriteOutcome { loader, symbolizer, result }
}

/// Returns the capture's freed memory (symbolizer caches, the profile, the
/// encoded files) to the kernel: glibc keeps freed heap in its arenas, which
/// would leave an idle daemon with the RSS of its largest capture.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn write_files(loader: &Loader, symbolizer: &mut Symbolizer, job: &WriteJob) -> Result<Captured> {
    // The directory may have been removed since the start (a cleanup cron,
    // an operator); recreate it rather than lose the capture.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&job.output_dir)
        .with_context(|| format!("cannot create output directory `{}`", job.output_dir.display()))?;
    let mut capture = pipeline::finish(
        loader,
        symbolizer,
        job.target.info.clone(),
        job.trigger.clone(),
        job.frequency_hz,
        &job.kinds,
        job.ended,
    )?;
    if let Some((view, since)) = &job.history {
        // The capture's own files matter more: a history that cannot be
        // drawn is logged and left out.
        match history::render::render(view, *since, &capture.info.target.description) {
            Ok(attachment) => capture.history = Some(attachment),
            Err(e) => warn!("the history of this capture is left out: {e:#}"),
        }
    }
    let written = job
        .sink
        .write(&capture)
        .with_context(|| format!("failed to write the capture to `{}`", job.output_dir.display()))?;
    let lost = capture.info.losses.iter().map(|l| (l.reason, l.count)).collect();
    Ok(Captured { written, samples: capture.info.samples_collected, lost })
}

fn apply_retention(dir: &Path, policy: &Policy, keep: Option<&CaptureKey>) {
    if policy.is_unlimited() {
        return;
    }
    match retention::prune(dir, policy, keep) {
        Ok(pruned) if pruned.captures > 0 => info!(
            captures = pruned.captures,
            files = pruned.files.len(),
            bytes = pruned.bytes,
            "retention: deleted the oldest captures"
        ),
        Ok(_) => {}
        Err(e) => warn!("retention failed: {e:#}"),
    }
}
