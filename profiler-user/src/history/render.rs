//! A capture's history, named: the recorder's slots symbolized into one cpu
//! profile whose samples carry their slot's start (pprof labels `slot` and
//! `slot_start`), and the differential flamegraph of the window since the
//! trigger's condition first held against the window before it.
//!
//! A slot belongs to the side its start falls in, so the split is exact to
//! a slot (10 s by default); the subtitle states both windows as cut.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::{HistoryView, MANUAL_RECENT};
use crate::aggregate::{Aggregate, Frames, RawSample};
use crate::ids::{Pid, Tid};
use crate::profile::capture::{HistoryAttachment, HistoryInfo, Span};
use crate::profile::diff::render::{render_diff_svg, DiffLabels};
use crate::profile::time::UtcTime;
use crate::profile::{folded, Profile};

/// Names `view` and draws its diff. `condition_since` is when the rule's
/// condition first held (`None` for a manual start: the last minute is
/// compared with the rest); `title` names the target.
pub(crate) fn render(
    view: &HistoryView,
    condition_since: Option<SystemTime>,
    title: &str,
) -> Result<HistoryAttachment> {
    let config = view.config;
    let end = view.taken;
    let start = view.slots.first().map_or(end, |s| s.start).min(end);
    let cut = condition_since.unwrap_or_else(|| end.checked_sub(MANUAL_RECENT).unwrap_or(end)).clamp(start, end);
    let cut = align_down(cut, config.slot).max(start);

    let mut agg = Aggregate::default();
    let mut slot_of = Vec::new();
    let mut user_addrs: BTreeMap<Pid, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut kernel_addrs = std::collections::BTreeSet::new();
    for slot in &view.slots {
        for (key, &count) in &slot.counts {
            let frames =
                |stack: &Arc<[u64]>| if stack.is_empty() { Frames::None } else { Frames::Addrs(stack.clone()) };
            let (user, kernel) = (frames(&key.user), frames(&key.kernel));
            user_addrs.entry(key.pid).or_default().extend(user.addrs().iter().copied());
            kernel_addrs.extend(kernel.addrs().iter().copied());
            agg.samples.push(RawSample {
                pid: key.pid,
                // The recorder keeps no thread ids: the label is the process's.
                tid: Tid::new(key.pid.get()),
                comm: view.names.get(&key.pid).cloned().unwrap_or_default(),
                user,
                kernel,
                count,
                weight: 0,
                extra: 0,
            });
            agg.total += count;
            slot_of.push(slot.start);
        }
    }
    agg.user_addrs = user_addrs.into_iter().map(|(p, s)| (p, s.into_iter().collect())).collect();
    agg.kernel_addrs = kernel_addrs.into_iter().collect();
    let template = Profile::new_cpu(config.frequency_hz, start, end.duration_since(start).unwrap_or_default());
    let period = template.period;
    let mut profile =
        view.with_symbolizer(|s| s.build_profile(&agg, template, |s| vec![s.count as i64, s.count as i64 * period]));
    profile.slots = slot_of;

    let (mut before, mut since) = (profile.clone(), profile.clone());
    let keep = |p: &mut Profile, wanted: bool| {
        let (samples, slots): (Vec<_>, Vec<_>) = profile
            .samples
            .iter()
            .cloned()
            .zip(profile.slots.iter().copied())
            .filter(|(_, slot)| (*slot >= cut) == wanted)
            .unzip();
        p.samples = samples;
        p.slots = slots;
    };
    keep(&mut before, false);
    keep(&mut since, true);
    let count = |p: &Profile| p.samples.iter().map(|s| s.values[0].max(0) as u64).sum::<u64>();
    let pairs = |p: &Profile| -> Vec<(String, u64)> {
        folded::folded_lines(p, 0, false)
            .into_iter()
            .filter_map(|line| {
                let (stack, value) = line.rsplit_once(' ')?;
                Some((stack.to_owned(), value.parse().ok()?))
            })
            .collect()
    };
    let before_span = Span { start, end: cut };
    let since_span = Span { start: cut, end };
    let subtitle = format!(
        "before {} ({} samples) → since {} ({} samples); normalized per sample; red grew, blue shrank",
        span_text(before_span),
        count(&before),
        span_text(since_span),
        count(&since)
    );
    let diff_title = format!("{title} — what changed (cpu history, {} Hz)", config.frequency_hz);
    let labels = DiffLabels { title: &diff_title, subtitle: &subtitle, count_name: "samples" };
    let diff_svg = render_diff_svg(&pairs(&before), &pairs(&since), &labels)?;
    let info = HistoryInfo {
        window: Span { start, end },
        before: before_span,
        since: since_span,
        condition_since,
        frequency_hz: config.frequency_hz,
        slot_seconds: config.slot.as_secs_f64(),
        samples: agg.total,
        before_samples: count(&before),
        since_samples: count(&since),
        merged_slots: view.dropped.merges,
        dropped_slots: view.dropped.slots,
        dropped_samples: view.dropped.samples,
        lost_samples: view.lost,
        memory_bytes: view.bytes as u64,
        memory_budget_bytes: config.memory_bytes,
    };
    Ok(HistoryAttachment { info, profile, diff_svg })
}

/// `t` rounded down to a multiple of `slot` since the epoch.
fn align_down(t: SystemTime, slot: Duration) -> SystemTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let slot = slot.as_nanos().max(1);
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(since / slot * slot).unwrap_or(u64::MAX))
}

/// `03:12:00–03:15:00Z`.
fn span_text(span: Span) -> String {
    let (a, b) = (UtcTime::from_system(span.start), UtcTime::from_system(span.end));
    format!("{}–{}Z", a.time(), b.time())
}
