//! The threshold-trigger engine of `watch`: decides from a target's metric
//! history when a rule fires and a capture should start.
//!
//! [`sampler::MetricSampler`] does the I/O; [`ThresholdMonitor`]
//! only sees [`Sample`]s, so every decision is a function of the samples fed
//! to it (and of the capture start/end calls) and is tested on synthetic
//! series. The daemon's loop is:
//!
//! ```ignore
//! let config = TriggerConfig::from_args(&args.triggers)?; // RuleError: a usage error
//! let mut sampler = MetricSampler::new(&target);
//! let mut monitor = ThresholdMonitor::new(&config);
//! let mut tick = tokio::time::interval(config.sample_interval);
//! tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
//! loop {
//!     tick.tick().await;
//!     if let Some(firing) = monitor.observe(&sampler.sample(Instant::now())) {
//!         tracing::info!("{firing}");
//!         start_capture(firing.trigger(), &firing.kinds); // then monitor.capture_finished(..) at its end
//!     }
//! }
//! ```
//!
//! Semantics:
//! - An interval is the time between two samples of the same target
//!   instance. Its CPU use is `Δcpu_seconds / (Δt × cpu_capacity) × 100`;
//!   its memory is the later sample's.
//! - A rule "at or above X for D" fires when every interval of the last D is
//!   at or above X (not just their average) and they cover D.
//! - Anything that makes the next interval meaningless restarts every window
//!   and the history: the target absent, its counter going backwards or
//!   restarting (a new `epoch`), an interval far longer than the sample
//!   interval (the sampler stalled) or a wall clock that moved differently
//!   from the monotonic one (suspend, a clock step). A sample less than half
//!   an interval after the previous one is ignored: CPU time is counted in
//!   10 ms ticks, so very short intervals are mostly noise.
//! - After a firing, nothing fires until `capture_finished` and the cooldown
//!   has passed; during any capture (triggered or manual) nothing fires, and
//!   the evidence for the next firing must come after the capture ended, since
//!   the eBPF program's own cost is charged to the target while it samples.
//! - A jump rule fires on the rise: the interval just before the jump must
//!   not already be above the bar, so a level that stays high after a jump
//!   does not fire again once the cooldown ends (its average only catches up
//!   after a whole window).
//! - When several rules hold at once, the first one given fires.

pub(crate) mod config;
pub(crate) mod rules;
pub(crate) mod sampler;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

pub(crate) use config::{
    parse_sample_interval, parse_trigger_words, TriggerArgs, TriggerConfig, DEFAULT_SAMPLE_INTERVAL,
};
use rules::{approx_size_text, pct_text};
use rules::{cores_text, cpus_text};
pub(crate) use rules::{parse_rule_flags, CpuLevel, FlagName, Metric, Rule, Threshold, TriggerFlag};

use self::sampler::Sample;
use crate::profile::capture::Trigger;
use crate::profile::ProfileKind;

/// A rule that fired: why a capture should start now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Firing {
    /// Index of the rule in the order given.
    pub rule_index: usize,
    /// `cpu ≥ 80% for 3m`.
    pub rule_text: String,
    /// `avg 93.4%, min 81.0%`: what the samples of `window` showed. Worded to
    /// read on in [`Trigger::summary`]: `triggered: cpu ≥ 80% for 3m
    /// (observed avg 93.4%, min 81.0% over 2026-11-26T03:12:00Z–03:15:00Z)`.
    pub observed: String,
    /// `2026-11-26T03:12:00Z–03:15:00Z`: the samples the decision rests on.
    pub window: String,
    pub window_start: SystemTime,
    pub window_end: SystemTime,
    /// What to capture, best first; the daemon keeps the kinds it supports.
    pub kinds: Vec<ProfileKind>,
    /// The sample that fired it.
    pub at: Instant,
}

impl Firing {
    /// The capture's trigger, for the manifest and the flamegraph subtitle.
    pub(crate) fn trigger(&self) -> Trigger {
        Trigger::Rule { rule: self.rule_text.clone(), observed: self.observed.clone(), window: self.window.clone() }
    }
}

/// The log line: `rule cpu ≥ 80% for 3m fired: avg 93.4%, min 81.0% over
/// 2026-11-26T03:12:00Z–03:15:00Z`.
impl fmt::Display for Firing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {} fired: {} over {}", self.rule_text, self.observed, self.window)
    }
}

/// What `ctl status` can show about the triggers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MonitorStatus {
    /// A capture is running (or a firing has not been answered yet).
    pub capturing: bool,
    /// Time left before a rule may fire again.
    pub cooldown_left: Option<Duration>,
    /// CPU use over the latest interval, in percent of the capacity.
    pub cpu_pct: Option<f64>,
    /// The same in cores (`top`'s reading: 1 core = 100 % of one CPU).
    pub cpu_cores: Option<f64>,
    /// CPUs available to the target at the latest interval.
    pub cpu_capacity: Option<f64>,
    pub mem_bytes: Option<u64>,
    pub mem_limit: Option<u64>,
    pub rules: Vec<RuleStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RuleStatus {
    pub rule: String,
    /// A CPU rule's level in the other reading (`1 core of 2 CPUs` for
    /// `50%`), once the target's capacity is known.
    pub other_reading: Option<String>,
    /// For a threshold rule: how long its condition has held so far.
    pub held_for: Option<Duration>,
}

/// One interval between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    start: Instant,
    end: Instant,
    end_wall: SystemTime,
    cpu_pct: f64,
    cpu_cores: f64,
    capacity: f64,
    mem_bytes: u64,
    mem_limit: u64,
}

impl Point {
    fn mem_pct(&self) -> f64 {
        if self.mem_limit == 0 {
            return 0.0;
        }
        self.mem_bytes as f64 / self.mem_limit as f64 * 100.0
    }

    fn cpu_meets(&self, level: CpuLevel) -> bool {
        match level {
            CpuLevel::Percent(pct) => at_least(self.cpu_pct, pct),
            CpuLevel::Cores(cores) => at_least(self.cpu_cores, cores),
        }
    }

    /// The value a jump rule compares with the average.
    fn jump_value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Cpu => self.cpu_pct,
            Metric::Mem => self.mem_bytes as f64,
        }
    }

    fn meets(&self, metric: Metric, threshold: Threshold) -> bool {
        match (metric, threshold) {
            (Metric::Cpu, Threshold::Percent(pct)) => at_least(self.cpu_pct, pct),
            (Metric::Mem, Threshold::Percent(pct)) => at_least(self.mem_pct(), pct),
            (Metric::Mem, Threshold::Bytes(bytes)) => self.mem_bytes >= bytes,
            (Metric::Cpu, Threshold::Bytes(_)) => false,
        }
    }
}

/// `value ≥ threshold`, where a value that equals the threshold in the
/// counters' own units (ticks, microseconds, bytes) but picked up a rounding
/// error on its way to a float percentage still counts.
fn at_least(value: f64, threshold: f64) -> bool {
    value >= threshold - 1e-9 * threshold.abs().max(1.0)
}

/// The previous sample, the start of the next interval.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    at: Instant,
    wall: SystemTime,
    cpu_seconds: f64,
    epoch: u64,
}

/// Watches a target's samples and says when a rule fires. See the module
/// documentation.
#[derive(Debug)]
pub(crate) struct ThresholdMonitor {
    rules: Vec<Rule>,
    interval: Duration,
    cooldown: Duration,
    /// Consecutive intervals of one target instance, oldest first.
    history: VecDeque<Point>,
    /// Enough points for the longest rule: intervals are at least half a
    /// sample interval long.
    capacity: usize,
    previous: Option<Baseline>,
    capturing: bool,
    last_firing: Option<Instant>,
    /// Evidence must come from intervals that start at or after this.
    evidence_since: Option<Instant>,
    /// CPUs available to the target at the latest sample (known before the
    /// first interval), for the other reading of CPU rules.
    cpu_capacity: Option<f64>,
}

impl ThresholdMonitor {
    pub(crate) fn new(config: &TriggerConfig) -> Self {
        let interval = config.sample_interval.max(Duration::from_millis(1));
        let span = config.rules.iter().map(Rule::span).max().unwrap_or_default();
        let capacity = (2.0 * span.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 4;
        Self {
            rules: config.rules.clone(),
            interval,
            cooldown: config.cooldown,
            // Grown as samples come: a day-long rule's history is megabytes.
            history: VecDeque::new(),
            capacity,
            previous: None,
            capturing: false,
            last_firing: None,
            evidence_since: None,
            cpu_capacity: None,
        }
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Takes the next sample and says whether a rule fires. A firing puts
    /// the monitor in the capturing state: call [`Self::capture_finished`]
    /// when the capture it started ends, or at once if none was started.
    pub(crate) fn observe(&mut self, sample: &Sample) -> Option<Firing> {
        if !self.record(sample) || self.capturing {
            return None;
        }
        if self.last_firing.is_some_and(|last| sample.at.saturating_duration_since(last) < self.cooldown) {
            return None;
        }
        let slack = self.slack();
        let points: &[Point] = self.history.make_contiguous();
        let (rule_index, rule, evidence) = self
            .rules
            .iter()
            .enumerate()
            .find_map(|(i, rule)| Some((i, rule, evaluate(rule, points, self.evidence_since, slack)?)))?;
        let firing = Firing {
            rule_index,
            rule_text: rule.to_string(),
            observed: evidence.observed,
            window: window_text(evidence.start_wall, evidence.end_wall),
            window_start: evidence.start_wall,
            window_end: evidence.end_wall,
            kinds: rule.kinds(),
            at: sample.at,
        };
        self.capturing = true;
        self.last_firing = Some(sample.at);
        self.evidence_since = Some(sample.at);
        Some(firing)
    }

    /// A capture (manual or triggered) started: nothing fires until it ends.
    pub(crate) fn capture_started(&mut self, _at: Instant) {
        self.capturing = true;
    }

    /// The capture ended (or a firing was not acted on). Rules need fresh
    /// evidence from `at` on.
    pub(crate) fn capture_finished(&mut self, at: Instant) {
        self.capturing = false;
        self.evidence_since = Some(self.evidence_since.map_or(at, |since| since.max(at)));
    }

    pub(crate) fn status(&self, now: Instant) -> MonitorStatus {
        let latest = self.history.back();
        let cooldown_left = self
            .last_firing
            .map(|last| self.cooldown.saturating_sub(now.saturating_duration_since(last)))
            .filter(|left| !left.is_zero());
        let (front, back) = self.history.as_slices();
        let points: Vec<Point> = front.iter().chain(back).copied().collect();
        let rules = self
            .rules
            .iter()
            .map(|rule| RuleStatus {
                rule: rule.to_string(),
                other_reading: match (rule, self.cpu_capacity) {
                    (Rule::CpuAbove { level, .. }, Some(capacity)) => Some(level.other_reading(capacity)),
                    _ => None,
                },
                held_for: match rule {
                    Rule::CpuAbove { level, .. } => {
                        Some(held_for(&points, self.evidence_since, |p| p.cpu_meets(*level)))
                    }
                    Rule::MemAbove { threshold, .. } => {
                        Some(held_for(&points, self.evidence_since, |p| p.meets(Metric::Mem, *threshold)))
                    }
                    Rule::Jump { .. } => None,
                },
            })
            .collect();
        MonitorStatus {
            capturing: self.capturing,
            cooldown_left,
            cpu_pct: latest.map(|p| p.cpu_pct),
            cpu_cores: latest.map(|p| p.cpu_cores),
            cpu_capacity: self.cpu_capacity,
            mem_bytes: latest.map(|p| p.mem_bytes),
            mem_limit: latest.map(|p| p.mem_limit),
            rules,
        }
    }

    /// How much shorter than a rule's duration the covered span may be:
    /// samples arrive with a little jitter, and `--for 3s` at 1 s intervals
    /// must fire on the third busy interval.
    fn slack(&self) -> Duration {
        self.interval / 10
    }

    /// Intervals longer than this mean the sampler did not run for a while,
    /// and what happened in between is unknown.
    fn max_gap(&self) -> Duration {
        (self.interval * 5).max(self.interval + Duration::from_secs(5))
    }

    /// Turns a sample into the next interval. Returns whether one was added.
    fn record(&mut self, sample: &Sample) -> bool {
        if !sample.present {
            if self.previous.is_some() {
                tracing::debug!("target absent: trigger windows restart");
            }
            self.restart(None);
            return false;
        }
        if sample.cpu_capacity.is_finite() && sample.cpu_capacity > 0.0 {
            self.cpu_capacity = Some(sample.cpu_capacity);
        }
        let current =
            Baseline { at: sample.at, wall: sample.wall, cpu_seconds: sample.cpu_seconds, epoch: sample.epoch };
        let Some(previous) = self.previous else {
            self.previous = Some(current);
            return false;
        };
        let Some(dt) = sample.at.checked_duration_since(previous.at) else {
            tracing::debug!("sample older than the previous one: trigger windows restart");
            self.restart(Some(current));
            return false;
        };
        if dt < self.interval / 2 {
            // Wait for the next sample to make a longer interval.
            return false;
        }
        let wall_skew = match sample.wall.duration_since(previous.wall) {
            Ok(wall) => wall.abs_diff(dt),
            Err(_) => Duration::MAX,
        };
        let reason = if dt > self.max_gap() {
            Some("no sample for too long")
        } else if wall_skew > self.interval.max(Duration::from_secs(1)) {
            Some("the wall clock jumped (suspend or clock change)")
        } else if sample.epoch != previous.epoch {
            Some("the target's counters restarted")
        } else if !sample.cpu_seconds.is_finite() || sample.cpu_seconds < previous.cpu_seconds {
            Some("the target's CPU time went backwards")
        } else if !sample.cpu_capacity.is_finite() || sample.cpu_capacity <= 0.0 {
            Some("the target's CPU capacity is unknown")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::debug!("{reason}: trigger windows restart");
            self.restart(Some(current));
            return false;
        }
        let cpu_cores = (sample.cpu_seconds - previous.cpu_seconds) / dt.as_secs_f64();
        let cpu_pct = cpu_cores / sample.cpu_capacity * 100.0;
        if self.history.len() >= self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(Point {
            start: previous.at,
            end: sample.at,
            end_wall: sample.wall,
            cpu_pct,
            cpu_cores,
            capacity: sample.cpu_capacity,
            mem_bytes: sample.mem_bytes,
            mem_limit: sample.mem_limit,
        });
        self.previous = Some(current);
        true
    }

    fn restart(&mut self, baseline: Option<Baseline>) {
        self.history.clear();
        self.previous = baseline;
    }
}

/// What a rule saw when it fired.
#[derive(Clone, Debug, PartialEq)]
struct Evidence {
    observed: String,
    start_wall: SystemTime,
    end_wall: SystemTime,
}

/// Whether `rule` fires on `points` (consecutive intervals, oldest first),
/// using only intervals that start at or after `since` as evidence (a jump
/// rule's average may reach further back). The decision itself.
fn evaluate(rule: &Rule, points: &[Point], since: Option<Instant>, slack: Duration) -> Option<Evidence> {
    let newest = points.last()?;
    let wall_at = |instant: Instant| newest.end_wall.checked_sub(newest.end.saturating_duration_since(instant));
    match rule {
        Rule::CpuAbove { level, for_ } => {
            let first = covering_run(points, since, *for_, slack, |p| p.cpu_meets(*level))?;
            let window = &points[first..];
            let (avg, min) = avg_min(window, |p| p.cpu_pct);
            let (avg_cores, min_cores) = avg_min(window, |p| p.cpu_cores);
            // The rule's own reading first, the other in parentheses.
            let observed = match level {
                CpuLevel::Percent(_) => format!(
                    "avg {avg:.1}% ({avg_cores:.2} cores), min {min:.1}% ({min_cores:.2} cores) of {}",
                    cpus_text(newest.capacity)
                ),
                CpuLevel::Cores(_) => format!(
                    "avg {avg_cores:.2} cores ({avg:.1}%), min {min_cores:.2} cores ({min:.1}%) of {}",
                    cpus_text(newest.capacity)
                ),
            };
            Some(Evidence { observed, start_wall: wall_at(points[first].start)?, end_wall: newest.end_wall })
        }
        Rule::MemAbove { threshold, for_ } => {
            let first = covering_run(points, since, *for_, slack, |p| p.meets(Metric::Mem, *threshold))?;
            let window = &points[first..];
            let observed = match threshold {
                Threshold::Percent(_) => {
                    let (avg, min) = avg_min(window, Point::mem_pct);
                    format!("avg {avg:.1}%, min {min:.1}% of {}", approx_size_text(newest.mem_limit))
                }
                Threshold::Bytes(_) => {
                    let (avg, min) = avg_min(window, |p| p.mem_bytes as f64);
                    format!("avg {}, min {}", approx_size_text(avg as u64), approx_size_text(min as u64))
                }
            };
            Some(Evidence { observed, start_wall: wall_at(points[first].start)?, end_wall: newest.end_wall })
        }
        Rule::Jump { metric, pct_over_avg, window, floor, for_ } => {
            // The jump: the newest intervals covering `for_` (at least one).
            let first = covering_run(points, since, *for_, slack, |_| true)?;
            // Its baseline: the intervals covering `window` just before it.
            let before = &points[..first];
            let baseline_end = before.last()?.end;
            let base_first = before.iter().rposition(|p| baseline_end.duration_since(p.start) + slack >= *window)?;
            let (base_avg, _) = avg_min(&before[base_first..], |p| p.jump_value(*metric));
            let bar = base_avg * (1.0 + pct_over_avg / 100.0);
            let high = |p: &Point| at_least(p.jump_value(*metric), bar) && p.meets(*metric, *floor);
            let jumped = &points[first..];
            // It fires on the rise: if the interval before was already high,
            // the jump happened earlier (and fired, or was suppressed by a
            // capture or the cooldown) and the level merely stays.
            if !jumped.iter().all(high) || high(&before[before.len() - 1]) {
                return None;
            }
            let (avg, min) = avg_min(jumped, |p| p.jump_value(*metric));
            let show = |v: f64| match metric {
                Metric::Cpu => format!("{v:.1}%"),
                Metric::Mem => approx_size_text(v as u64),
            };
            let now = if for_.is_zero() { show(avg) } else { format!("avg {}, min {}", show(avg), show(min)) };
            let up =
                if base_avg > 0.0 { format!("up {:.0}%", (avg / base_avg - 1.0) * 100.0) } else { "up".to_owned() };
            Some(Evidence {
                observed: format!("{now}, {up} from a {} average", show(base_avg)),
                start_wall: wall_at(before[base_first].start)?,
                end_wall: newest.end_wall,
            })
        }
    }
}

/// Index of the oldest point of the shortest run of newest points that all
/// satisfy `holds`, start at or after `since`, and cover `span` (less
/// `slack`). A zero `span` is covered by the newest point alone.
fn covering_run(
    points: &[Point],
    since: Option<Instant>,
    span: Duration,
    slack: Duration,
    holds: impl Fn(&Point) -> bool,
) -> Option<usize> {
    let end = points.last()?.end;
    for (i, p) in points.iter().enumerate().rev() {
        if !holds(p) || since.is_some_and(|since| p.start < since) {
            return None;
        }
        if end.duration_since(p.start) + slack >= span {
            return Some(i);
        }
    }
    None
}

/// How long the newest points have satisfied `holds`.
fn held_for(points: &[Point], since: Option<Instant>, holds: impl Fn(&Point) -> bool) -> Duration {
    let Some(end) = points.last().map(|p| p.end) else {
        return Duration::ZERO;
    };
    let first = points.iter().rev().take_while(|p| holds(p) && since.is_none_or(|s| p.start >= s)).last();
    first.map_or(Duration::ZERO, |p| end.duration_since(p.start))
}

/// Time-weighted average and minimum of `value` over `points`.
fn avg_min(points: &[Point], value: impl Fn(&Point) -> f64) -> (f64, f64) {
    let mut weighted = 0.0;
    let mut total = 0.0;
    let mut min = f64::INFINITY;
    for p in points {
        let seconds = p.end.duration_since(p.start).as_secs_f64();
        let v = value(p);
        weighted += v * seconds;
        total += seconds;
        min = min.min(v);
    }
    (if total > 0.0 { weighted / total } else { 0.0 }, min)
}

/// `2026-11-26T03:12:00Z–03:15:00Z`, or both dates when they differ.
fn window_text(start: SystemTime, end: SystemTime) -> String {
    let start = humantime::format_rfc3339_seconds(start).to_string();
    let end = humantime::format_rfc3339_seconds(end).to_string();
    match (start.split_once('T'), end.split_once('T')) {
        (Some((start_date, _)), Some((end_date, end_time))) if start_date == end_date => format!("{start}–{end_time}"),
        _ => format!("{start}–{end}"),
    }
}

/// How close to its most a target must be asked to run before a rule is
/// called unable to fire: a thread that is always runnable still loses a
/// little to the scheduler and interrupts, so a single-threaded service
/// pegged in `top` shows 0.99 cores, never quite 1.
const REACHABLE_SHARE: f64 = 0.98;

/// The CPU rules that cannot fire for the target as `sample` saw it, each
/// with the reason and the fix (one line each, for the log and `status`):
/// a level above its CPU quota or online CPUs, or, for `--pid`/`--name`,
/// above what its threads can use. Pure; the daemon logs what changed.
pub(crate) fn cannot_fire(rules: &[Rule], sample: &Sample) -> Vec<String> {
    if !sample.present || !sample.cpu_capacity.is_finite() || sample.cpu_capacity <= 0.0 {
        return Vec::new();
    }
    let capacity = sample.cpu_capacity;
    let threads = sample.threads.map(|t| t as f64);
    // The most the target can use, and what bounds it.
    let (most, bound) = match threads {
        Some(t) if t < capacity => {
            let noun = if sample.threads == Some(1) { "thread" } else { "threads" };
            (t, format!("its {} {noun} can use at most {}", pct_text(t), cores_text(t)))
        }
        _ => (capacity, format!("it has {} available (CPU quota, else online CPUs)", cpus_text(capacity))),
    };
    rules
        .iter()
        .filter_map(|rule| {
            let Rule::CpuAbove { level, .. } = rule else {
                return None;
            };
            let need = level.cores(capacity);
            if need < most * REACHABLE_SHARE {
                return None;
            }
            let reading = match level {
                CpuLevel::Percent(pct) => {
                    format!("{} ({}% of {})", cores_text(need), pct_text(*pct), cpus_text(capacity))
                }
                CpuLevel::Cores(_) => cores_text(need),
            };
            let hint = format!("{}cores", pct_text((most * 0.9 * 100.0).floor() / 100.0));
            Some(format!(
                "rule `{rule}` cannot fire: it needs {reading} and {bound}; \
                 lower it (e.g. `--cpu-above {hint}`, as `top` counts)"
            ))
        })
        .collect()
}
