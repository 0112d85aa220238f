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

use std::time::Instant;

use anyhow::{Context as _, Result};
use tracing::debug;

pub(crate) use self::session::{Ended, Session};
use crate::aggregate;
use crate::bpf::Loader;
use crate::kinds::{self, Shape};
use crate::profile::capture::{CaptureInfo, CaptureWindow, FinishedCapture, TargetInfo, Trigger};
use crate::profile::ProfileKind;
use crate::symbolize::Symbolizer;

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
        host: crate::procfs::host::host_name().unwrap_or_else(|| "unknown".into()),
        kernel: crate::procfs::host::kernel_release().unwrap_or_else(|| "unknown".into()),
        stackwatch_version: env!("CARGO_PKG_VERSION").to_owned(),
        notes: symbolizer.notes(&pids_sampled.into_iter().collect::<Vec<_>>()),
    };
    Ok(FinishedCapture { info, profiles })
}
