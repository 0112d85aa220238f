//! The capture pipeline `record` and `watch` share, from the kernel to a
//! finished capture: a [`Session`] attaches the events of the capture's
//! profile kinds, meters the target's CPU time ([`meter`]) and opens the
//! kernel-enforced window; once it has [`Ended`], [`finish`] drains each
//! kind's maps, aggregates, symbolizes and describes the capture, ready for
//! a sink (`crate::sink`).
//!
//! kernel → `bpf` (drain) → `aggregate` → `symbolize` → `profile` → sink,
//! with each profile kind (`crate::kinds`) saying what it drains, what its
//! values are and what it lost.

pub(crate) mod meter;
pub(crate) mod session;

use std::collections::BTreeMap;
use std::time::Instant;

use profiler_common::{Stat, Truncation};

use anyhow::{Context as _, Result};
use tracing::{debug, warn};

pub(crate) use self::session::{Ended, Session};
use crate::aggregate;
use crate::bpf::{Loader, Stats, UnwindMode};
use crate::kinds::{self, Shape};
use crate::profile::capture::{
    CaptureInfo, CaptureWindow, FinishedCapture, Loss, LossEffect, TablesReport, TargetInfo, Trigger, UnwindSummary,
};
use crate::profile::ProfileKind;
use crate::symbolize::Symbolizer;

/// The stack quality of the capture's busiest processes, from its cpu
/// profile (else its first): their figures and, for the processes still
/// running, the causes of what looks wrong.
fn stack_quality(profiles: &[crate::profile::Profile]) -> Vec<crate::profile::quality::ProcessQuality> {
    let Some(profile) = profiles.iter().find(|p| p.kind == ProfileKind::Cpu).or(profiles.first()) else {
        return Vec::new();
    };
    let started = Instant::now();
    let first = crate::profile::quality::assess(profile, &std::collections::HashMap::new());
    let facts = first
        .iter()
        .filter_map(|q| match crate::runtime::inspect(q.pid) {
            Ok(f) => Some((q.pid, f)),
            Err(e) => {
                debug!(pid = %q.pid, "no stack facts: {e:#}");
                None
            }
        })
        .collect();
    let quality = crate::profile::quality::assess(profile, &facts);
    debug!(elapsed_ms = started.elapsed().as_millis() as u64, "stack quality assessed");
    quality
}

/// Drains, aggregates, symbolizes and describes an ended capture: one
/// profile per kind, in the order of `kinds`. One symbolizer pass per kind
/// shares its caches.
pub(crate) fn finish(
    loader: &Loader,
    symbolizer: &mut Symbolizer,
    target: TargetInfo,
    trigger: Trigger,
    frequency_hz: u64,
    kinds: &[ProfileKind],
    ended: Ended,
) -> Result<FinishedCapture> {
    let building = Instant::now();
    let Ended { window, cpu_seconds: target_cpu_seconds } = ended;
    let CaptureWindow { start, end, .. } = window;
    let duration = window.duration();
    let mut profiles = Vec::with_capacity(kinds.len());
    let mut losses = Vec::new();
    let mut samples_collected = 0;
    let mut pids_sampled = std::collections::BTreeSet::new();
    let shape = Shape { frequency_hz, programs: loader.programs(), start, duration };
    for &kind in kinds {
        let plugin = kinds::of(kind);
        let started = Instant::now();
        let raw = plugin
            .drain(loader, &window)
            .with_context(|| format!("failed to read the {kind} samples from the kernel"))?;
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "{kind} samples drained");
        let agg = aggregate::aggregate(&raw);
        pids_sampled.extend(agg.user_addrs.keys().copied());
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
    symbolizer.release_kernel_symbols();
    for p in &mut profiles {
        p.normalize();
    }
    warn_full_maps(&losses);
    debug!(elapsed_ms = building.elapsed().as_millis() as u64, "drained and symbolized");
    let info = CaptureInfo {
        target,
        trigger,
        start,
        end,
        frequency_hz,
        samples_collected,
        samples_lost: losses.iter().filter(|l| l.reason.effect() == LossEffect::DroppedSamples).map(|l| l.count).sum(),
        losses,
        target_cpu_seconds,
        expected_samples: target_cpu_seconds.map(|s| (s * frequency_hz as f64).round() as u64),
        host: crate::procfs::host::host_name().unwrap_or_else(|| "unknown".into()),
        kernel: crate::procfs::host::kernel_release().unwrap_or_else(|| "unknown".into()),
        stackwatch_version: env!("CARGO_PKG_VERSION").to_owned(),
        unwind: unwind_summary(&loader.stats()?, loader.programs().unwind, loader.unwind_report()),
        stack_quality: stack_quality(&profiles),
        notes: symbolizer.notes(&pids_sampled.into_iter().collect::<Vec<_>>()),
    };
    Ok(FinishedCapture { info, profiles, history: None })
}

/// Logs the losses of a kernel map that was full (samples or stacks not
/// kept). The programs only count them: a log call in the sampler is a
/// subprogram the verifier checks at each call site, and cost every load
/// ~15 % of its time.
fn warn_full_maps(losses: &[Loss]) {
    for loss in losses.iter().filter(|l| l.reason.is_map_capacity()) {
        warn!(reason = loss.reason.as_str(), count = loss.count, "{} (counted in the manifest)", loss.reason.detail());
    }
}

/// The manifest's `unwind` section, from the kernel counters and the table
/// manager's report.
fn unwind_summary(stats: &Stats, mode: UnwindMode, tables: Option<TablesReport>) -> UnwindSummary {
    let reasons = [
        ("no_rule", Truncation::NoRule),
        ("unsupported_rule", Truncation::Unsupported),
        ("read_failed", Truncation::ReadFailed),
        ("bad_frame", Truncation::BadFrame),
        ("too_deep", Truncation::Depth),
        ("no_table", Truncation::NoTable),
    ];
    let truncated_by_reason: BTreeMap<String, u64> = reasons
        .iter()
        .filter_map(|&(name, t)| Stat::truncated(t).map(|s| (name.to_owned(), stats.get(s))))
        .filter(|(_, n)| *n > 0)
        .collect();
    UnwindSummary {
        mode: match mode {
            UnwindMode::Auto => "auto",
            UnwindMode::FramePointers => "fp",
            UnwindMode::Tables => "tables",
        }
        .to_owned(),
        stacks_with_tables: stats.get(Stat::UnwindTables),
        stacks_fell_back: stats.get(Stat::UnwindFellBack),
        stacks_before_tables_loaded: stats.get(Stat::UnwindProcessUnknown),
        stacks_truncated: truncated_by_reason.values().sum(),
        truncated_by_reason,
        requests_lost: stats.get(Stat::UnwindEventsLost),
        stacks_reusing_base: stats.get(Stat::UnwindBaseReused),
        frames_per_walk: match stats.get(Stat::UnwindWalks) {
            0 => None,
            walks => Some((stats.get(Stat::UnwindWalkFrames) as f64 / walks as f64 * 10.0).round() / 10.0),
        },
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwind_summary_names_every_truncation_reason() {
        let mut stats = Stats::default();
        stats.0[Stat::UnwindTables as usize] = 40;
        stats.0[Stat::UnwindFellBack as usize] = 7;
        stats.0[Stat::UnwindProcessUnknown as usize] = 2;
        stats.0[Stat::TruncNoRule as usize] = 3;
        stats.0[Stat::TruncNoTable as usize] = 5;
        stats.0[Stat::UnwindWalks as usize] = 3;
        stats.0[Stat::UnwindWalkFrames as usize] = 38;
        stats.0[Stat::UnwindBaseReused as usize] = 2;
        let s = unwind_summary(&stats, UnwindMode::Auto, None);
        assert_eq!(s.frames_per_walk, Some(12.7));
        assert_eq!(s.stacks_reusing_base, 2);
        assert_eq!(s.mode, "auto");
        assert_eq!((s.stacks_with_tables, s.stacks_fell_back, s.stacks_before_tables_loaded), (40, 7, 2));
        assert_eq!(s.stacks_truncated, 8);
        assert_eq!(s.truncated_by_reason, BTreeMap::from([("no_rule".to_owned(), 3), ("no_table".to_owned(), 5)]));
        let fp = unwind_summary(&Stats::default(), UnwindMode::FramePointers, None);
        assert_eq!((fp.mode.as_str(), fp.frames_per_walk), ("fp", None));
    }
}
