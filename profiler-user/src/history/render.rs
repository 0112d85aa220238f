//! A capture's history, named: the recorder's slots symbolized into one cpu
//! profile whose samples carry their slot's start (pprof labels `slot` and
//! `slot_start`), and the differential flamegraph of the window since the
//! trigger's condition first held against the window before it.
//!
//! A slot belongs to the side its start falls in, so the split is exact to
//! a slot (10 s by default); the subtitle states both windows as cut.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

    let template = Profile::new_cpu(config.frequency_hz, start, end.duration_since(start).unwrap_or_default());
    let period = template.period;
    let (mut profile, slot_of, total) = view.with_symbolizer(|symbolizer| {
        // Each process under the pid its samples are named under: a pid
        // reused within the window is two processes, each named from its
        // own mappings.
        let mut instances: HashMap<(Pid, u64), Pid> = HashMap::new();
        let mut agg = Aggregate::default();
        let mut slot_of = Vec::new();
        let mut real_pids = Vec::new();
        let mut user_addrs: BTreeMap<Pid, BTreeSet<u64>> = BTreeMap::new();
        let mut kernel_addrs = BTreeSet::new();
        for slot in &view.slots {
            for (key, &count) in &slot.counts {
                let named_as = *instances
                    .entry((key.pid, key.start))
                    .or_insert_with(|| symbolizer.process_instance(key.pid, key.start));
                let frames =
                    |stack: &Arc<[u64]>| if stack.is_empty() { Frames::None } else { Frames::Addrs(stack.clone()) };
                let (user, kernel) = (frames(&key.user), frames(&key.kernel));
                user_addrs.entry(named_as).or_default().extend(user.addrs().iter().copied());
                kernel_addrs.extend(kernel.addrs().iter().copied());
                // The recorder keeps no thread ids (the label is the
                // process's), and its walk is the kernel's frame-pointer one
                // (never cut short by a missing rule).
                let comm = view.names.get(&key.pid).cloned().unwrap_or_default();
                agg.samples.push(RawSample {
                    count,
                    ..RawSample::once(named_as, Tid::new(key.pid.get()), comm, user, kernel)
                });
                agg.total += count;
                slot_of.push(slot.start);
                real_pids.push(key.pid);
            }
        }
        agg.user_addrs = user_addrs.into_iter().map(|(p, s)| (p, s.into_iter().collect())).collect();
        agg.kernel_addrs = kernel_addrs.into_iter().collect();
        let mut profile = symbolizer.build_profile(&agg, template, |s| vec![s.count as i64, s.count as i64 * period]);
        symbolizer.drop_aliases();
        // Samples keep the order they were given in: labels get the real pid.
        for (sample, pid) in profile.samples.iter_mut().zip(real_pids) {
            sample.pid = pid;
        }
        (profile, slot_of, agg.total)
    });
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
        samples: total,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::history::slots::Slots;
    use crate::history::HistoryConfig;

    // The value comes from an `asm!` block, not `black_box`, which an
    // optimized build inlines with a frame of its own: these functions are
    // the leaves of their stacks whatever the profile.
    #[inline(never)]
    fn history_test_alpha() -> u64 {
        let v: u64;
        // SAFETY: sets a register; no memory, no flags.
        unsafe { std::arch::asm!("mov {0}, 1", out(reg) v, options(pure, nomem, nostack, preserves_flags)) };
        v
    }

    #[inline(never)]
    fn history_test_beta() -> u64 {
        let v: u64;
        // SAFETY: sets a register; no memory, no flags.
        unsafe { std::arch::asm!("mov {0}, 2", out(reg) v, options(pure, nomem, nostack, preserves_flags)) };
        v
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_696_200 + seconds)
    }

    fn fill_of(svg: &str, name: &str) -> (u8, u8, u8) {
        crate::profile::diff::tests::fill_of(svg, name)
    }

    /// alpha for 60 s at one sample a second, then beta at three for 30 s,
    /// in this very process so the frames have names.
    #[test]
    fn the_diff_is_cut_where_the_condition_first_held_and_every_sample_has_its_slot() {
        let config = HistoryConfig {
            window: Duration::from_secs(600),
            frequency_hz: 19,
            memory_bytes: 1 << 20,
            slot: Duration::from_secs(10),
        };
        let pid = Pid::new(std::process::id());
        // A return address points after the call; the leaf is the sampled
        // instruction itself: one byte into each function is inside it.
        let alpha = [history_test_alpha as *const () as u64 + 1];
        let beta = [history_test_beta as *const () as u64 + 1];
        assert!(history_test_alpha() + history_test_beta() == 3);
        let mut slots = Slots::new(config.slot, config.window, 1 << 20);
        for second in 0..60 {
            slots.add(at(second), pid, 0, "shift", &alpha, &[]);
        }
        for second in 60..90 {
            for _ in 0..3 {
                slots.add(at(second), pid, 0, "shift", &beta, &[]);
            }
        }
        let view = HistoryView::detached(config, slots, at(90));
        let history = render(&view, Some(at(63)), "shift (pid 1)").unwrap();

        // The cut is rounded down to the slot that holds it.
        assert_eq!(history.info.since.start, at(60));
        assert_eq!(history.info.before, Span { start: at(0), end: at(60) });
        assert_eq!((history.info.before_samples, history.info.since_samples), (60, 90));
        assert_eq!(history.info.condition_since, Some(at(63)));
        assert_eq!(history.info.samples, 150);
        // Every sample carries its slot; alpha's are all before the cut.
        let profile = &history.profile;
        assert_eq!(profile.slots.len(), profile.samples.len());
        // The function that holds the address: the location's outermost
        // line.
        let name = |s: &crate::profile::Sample| {
            let lines = &profile.locations[s.locations[0]].lines;
            lines.last().map(|l| l.function.clone()).unwrap_or_default()
        };
        for (sample, slot) in profile.samples.iter().zip(&profile.slots) {
            let function = name(sample);
            assert!(function.contains("history_test_alpha") || function.contains("history_test_beta"), "{function}");
            assert_eq!(function.contains("history_test_alpha"), *slot < at(60), "{function} at {slot:?}");
        }
        // Labelled in pprof.
        let encoded = crate::profile::pprof::encode(profile);
        let decoded = crate::profile::diff::read::decode(&encoded).unwrap();
        assert_eq!(decoded.samples.len(), profile.samples.len());
        // beta grew.
        let svg = String::from_utf8(history.diff_svg).unwrap();
        let leaf = |f: &str| {
            let full = svg.split("<title>").map(|t| t.split(" (").next().unwrap_or("")).find(|t| t.contains(f));
            full.unwrap_or_else(|| panic!("no `{f}` frame in the diff")).to_owned()
        };
        let (r, g, b) = fill_of(&svg, &leaf("history_test_beta"));
        assert!(r == 255 && g == b && g < 250, "beta is red: rgb({r},{g},{b})");
        // Widths are the new side's: alpha, gone since, has no frame (it
        // leads the shrinkers in `stackwatch diff` of the two cuts instead).
        assert!(!svg.contains("history_test_alpha"), "alpha has no width since the cut");
        assert!(svg.contains("before 12:30:00–12:31:00Z (60 samples) → since 12:31:00–12:31:30Z (90 samples)"));
    }
}
