//! Trigger rules: what they are, how they read on the command line and how
//! they are written in logs and manifests.
//!
//! On the command line a rule is a rule flag followed by its modifiers,
//! which apply to the nearest rule flag before them:
//!
//! ```text
//! --cpu-above 80 --for 3m  --mem-above 2GiB --for 1m  --cpu-jump 50 --jump-window 1m --jump-floor 20
//! ```
//!
//! [`parse_rule_flags`] turns that sequence (as [`TriggerFlag`]s in command
//! line order) into [`Rule`]s, with a [`RuleError`] naming the flag and the
//! fix when it cannot.

use std::fmt;
use std::time::Duration;

use crate::profile::ProfileKind;
use crate::units::{parse_duration, parse_size};

/// The longest window a rule may look at (`--for` plus `--jump-window`):
/// the monitor keeps that much history in memory.
pub(crate) const MAX_RULE_SPAN: Duration = Duration::from_secs(24 * 3600);

/// At most this many sample intervals per rule window, which bounds the
/// history to about 10 MiB (two 64-byte points per interval, as intervals
/// may be half as long as asked): a day at 1 s, 2.4 h at 100 ms.
pub(crate) const MAX_RULE_SAMPLES: u32 = 86_400;

/// Moving-average window of a jump rule without `--jump-window`.
pub(crate) const DEFAULT_JUMP_WINDOW: Duration = Duration::from_secs(60);

/// Floor of a jump rule without `--jump-floor`, in percent of the CPUs
/// available or of the memory limit: holmes' default `min`, below which a
/// relative jump is idle noise (2 % → 5 % is +150 %).
pub(crate) const DEFAULT_JUMP_FLOOR_PCT: f64 = 10.0;

/// Which metric a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Metric {
    /// CPU use in percent of the CPUs available to the target.
    Cpu,
    /// Resident memory, against the target's memory limit.
    Mem,
}

/// A memory level: a share of the limit or an absolute size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Threshold {
    /// Percent of the limit (cgroup `memory.max`, else `MemTotal`); for CPU,
    /// percent of the CPUs available.
    Percent(f64),
    Bytes(u64),
}

/// A CPU level, in one of the two readings operators know: a share of the
/// CPUs available to the target (`80`, `80%`: 100 means all of them, the
/// contract's reading), or cores the way `top` counts them (`0.9cores`: 1
/// core is 100 % of one CPU). A single-threaded service pegged at 99 % in
/// `top` is at 0.99 cores, which on a 2-CPU host is 49.5 %.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum CpuLevel {
    Percent(f64),
    Cores(f64),
}

impl CpuLevel {
    /// The level in cores, for a target with `capacity` CPUs available.
    pub(crate) fn cores(self, capacity: f64) -> f64 {
        match self {
            CpuLevel::Percent(pct) => pct / 100.0 * capacity,
            CpuLevel::Cores(cores) => cores,
        }
    }

    /// The level in percent of `capacity` CPUs.
    pub(crate) fn percent(self, capacity: f64) -> f64 {
        match self {
            CpuLevel::Percent(pct) => pct,
            CpuLevel::Cores(cores) if capacity > 0.0 => cores / capacity * 100.0,
            CpuLevel::Cores(_) => f64::INFINITY,
        }
    }

    /// The other reading, for a target with `capacity` CPUs available:
    /// `1 core of 2 CPUs` for `50%`, `45% of 2 CPUs` for `0.9cores`.
    pub(crate) fn other_reading(self, capacity: f64) -> String {
        match self {
            CpuLevel::Percent(pct) => format!("{} of {}", cores_text(pct / 100.0 * capacity), cpus_text(capacity)),
            CpuLevel::Cores(_) => format!("{}% of {}", pct_text(self.percent(capacity)), cpus_text(capacity)),
        }
    }
}

/// `80%`, `0.9 cores`.
impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuLevel::Percent(pct) => write!(f, "{}%", pct_text(*pct)),
            CpuLevel::Cores(cores) => f.write_str(&cores_text(*cores)),
        }
    }
}

/// `1 core`, `0.9 cores`, `1.25 cores`.
pub(crate) fn cores_text(cores: f64) -> String {
    let number = pct_text(cores);
    if number == "1" {
        "1 core".to_owned()
    } else {
        format!("{number} cores")
    }
}

/// `1 CPU`, `2 CPUs`, `1.5 CPUs` (a quota).
pub(crate) fn cpus_text(cpus: f64) -> String {
    let number = pct_text(cpus);
    if number == "1" {
        "1 CPU".to_owned()
    } else {
        format!("{number} CPUs")
    }
}

/// A trigger rule.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rule {
    /// `--cpu-above PCT|Ncores --for DURATION`: every interval of the last
    /// `for_` at or above `level`.
    CpuAbove { level: CpuLevel, for_: Duration },
    /// `--mem-above PCT|SIZE --for DURATION`.
    MemAbove { threshold: Threshold, for_: Duration },
    /// `--cpu-jump PCT` / `--mem-jump PCT` (holmes' `diff`): the value is
    /// `pct_over_avg` percent above its average over the `window` before,
    /// and at least `floor`, for `for_` (zero: one sample interval).
    Jump { metric: Metric, pct_over_avg: f64, window: Duration, floor: Threshold, for_: Duration },
}

impl Rule {
    pub(crate) fn metric(&self) -> Metric {
        match self {
            Rule::CpuAbove { .. } => Metric::Cpu,
            Rule::MemAbove { .. } => Metric::Mem,
            Rule::Jump { metric, .. } => *metric,
        }
    }

    /// What a capture it starts should profile: where the CPU goes (and
    /// where the target waits) for a CPU rule; who allocates, and what runs,
    /// for a memory rule. The daemon keeps the kinds it supports.
    pub(crate) fn kinds(&self) -> Vec<ProfileKind> {
        match self.metric() {
            Metric::Cpu => vec![ProfileKind::Cpu, ProfileKind::OffCpu],
            Metric::Mem => vec![ProfileKind::Memory, ProfileKind::Cpu],
        }
    }

    /// How much history the rule looks at.
    pub(crate) fn span(&self) -> Duration {
        match self {
            Rule::CpuAbove { for_, .. } | Rule::MemAbove { for_, .. } => *for_,
            // Saturating: `--jump-window` and `--for` are each any duration
            // until this sum is checked against `MAX_RULE_SPAN`.
            Rule::Jump { window, for_, .. } => window.saturating_add(*for_),
        }
    }
}

/// `cpu ≥ 80% for 3m`, `memory ≥ 2GiB for 1m`,
/// `cpu ≥ +50% over its 1m average (floor 10%)`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::CpuAbove { level, for_ } => write!(f, "cpu ≥ {level} for {}", duration_text(*for_)),
            Rule::MemAbove { threshold, for_ } => {
                write!(f, "memory ≥ {} for {}", threshold_text(*threshold), duration_text(*for_))
            }
            Rule::Jump { metric, pct_over_avg, window, floor, for_ } => {
                let name = match metric {
                    Metric::Cpu => "cpu",
                    Metric::Mem => "memory",
                };
                write!(
                    f,
                    "{name} ≥ +{}% over its {} average (floor {})",
                    pct_text(*pct_over_avg),
                    duration_text(*window),
                    threshold_text(*floor)
                )?;
                if !for_.is_zero() {
                    write!(f, " for {}", duration_text(*for_))?;
                }
                Ok(())
            }
        }
    }
}

/// Why trigger flags could not become rules. `main` reports every variant as
/// a usage error (exit code 2).
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub(crate) enum RuleError {
    #[error("invalid value `{value}` for `{flag}`: {reason}")]
    InvalidValue { flag: &'static str, value: String, reason: String },
    #[error("`{rule}` needs a `--for DURATION` right after it, e.g. `{rule} --for 3m`")]
    MissingFor { rule: String },
    #[error("`{modifier}` must follow the rule it applies to, e.g. `{example}`")]
    NoRuleBefore { modifier: String, example: &'static str },
    #[error("`{rule}` has more than one `{flag}`; give each rule its own, right after it")]
    Repeated { rule: String, flag: &'static str },
    #[error("`{modifier}` applies to `--cpu-jump` and `--mem-jump`, not to `{rule}`")]
    NotAJumpRule { modifier: String, rule: String },
    #[error(
        "`{modifier}` of `{rule}` is shorter than the sample interval ({interval}); \
         use at least `{interval}` or lower `--sample-interval`"
    )]
    ShorterThanInterval { modifier: String, rule: String, interval: String },
    #[error("`{rule}` looks at more than {max} of history, the most stackwatch keeps at a {interval} sample interval")]
    TooLong { rule: String, max: String, interval: String },
}

/// A trigger flag as given: which one, and its value as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TriggerFlag {
    pub name: FlagName,
    pub value: String,
}

impl TriggerFlag {
    pub(crate) fn new(name: FlagName, value: impl Into<String>) -> Self {
        Self { name, value: value.into() }
    }
}

impl fmt::Display for TriggerFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name.long(), self.value)
    }
}

/// The trigger flags whose order matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlagName {
    CpuAbove,
    MemAbove,
    CpuJump,
    MemJump,
    For,
    JumpWindow,
    JumpFloor,
}

impl FlagName {
    pub(crate) const ALL: [FlagName; 7] = [
        FlagName::CpuAbove,
        FlagName::MemAbove,
        FlagName::CpuJump,
        FlagName::MemJump,
        FlagName::For,
        FlagName::JumpWindow,
        FlagName::JumpFloor,
    ];

    /// The flag as typed, with its dashes.
    pub(crate) fn long(self) -> &'static str {
        match self {
            FlagName::CpuAbove => "--cpu-above",
            FlagName::MemAbove => "--mem-above",
            FlagName::CpuJump => "--cpu-jump",
            FlagName::MemJump => "--mem-jump",
            FlagName::For => "--for",
            FlagName::JumpWindow => "--jump-window",
            FlagName::JumpFloor => "--jump-floor",
        }
    }

    /// Whether it starts a rule (else it modifies the rule before it).
    pub(crate) fn starts_rule(self) -> bool {
        matches!(self, FlagName::CpuAbove | FlagName::MemAbove | FlagName::CpuJump | FlagName::MemJump)
    }
}

/// A rule flag and the modifiers seen after it so far.
struct Pending {
    flag: TriggerFlag,
    for_: Option<Duration>,
    window: Option<Duration>,
    floor: Option<Threshold>,
}

/// Turns trigger flags, in command-line order, into rules. `interval` is
/// the sample interval, the shortest `--for` that means anything.
pub(crate) fn parse_rule_flags(flags: &[TriggerFlag], interval: Duration) -> Result<Vec<Rule>, RuleError> {
    let mut pending: Vec<Pending> = Vec::new();
    for flag in flags {
        if flag.name.starts_rule() {
            pending.push(Pending { flag: flag.clone(), for_: None, window: None, floor: None });
            continue;
        }
        let Some(rule) = pending.last_mut() else {
            let example = match flag.name {
                FlagName::For => "--cpu-above 80 --for 3m",
                FlagName::JumpWindow => "--cpu-jump 50 --jump-window 1m",
                _ => "--cpu-jump 50 --jump-floor 20",
            };
            return Err(RuleError::NoRuleBefore { modifier: flag.to_string(), example });
        };
        let is_jump = matches!(rule.flag.name, FlagName::CpuJump | FlagName::MemJump);
        let repeated = || RuleError::Repeated { rule: rule.flag.to_string(), flag: flag.name.long() };
        match flag.name {
            FlagName::For => {
                if rule.for_.is_some() {
                    return Err(repeated());
                }
                rule.for_ = Some(window_value(flag, &rule.flag, interval)?);
            }
            FlagName::JumpWindow | FlagName::JumpFloor if !is_jump => {
                return Err(RuleError::NotAJumpRule { modifier: flag.to_string(), rule: rule.flag.to_string() });
            }
            FlagName::JumpWindow => {
                if rule.window.is_some() {
                    return Err(repeated());
                }
                rule.window = Some(window_value(flag, &rule.flag, interval)?);
            }
            _ => {
                if rule.floor.is_some() {
                    return Err(repeated());
                }
                let floor = if rule.flag.name == FlagName::CpuJump {
                    Threshold::Percent(percent(flag, 0.0, 100.0, "of the CPUs available")?)
                } else {
                    mem_level(flag, true)?
                };
                rule.floor = Some(floor);
            }
        }
    }
    pending.into_iter().map(|p| finish(p, interval)).collect()
}

/// Checks a rule's value and fills in the defaults.
fn finish(p: Pending, interval: Duration) -> Result<Rule, RuleError> {
    let missing_for = || RuleError::MissingFor { rule: p.flag.to_string() };
    let rule = match p.flag.name {
        FlagName::CpuAbove => Rule::CpuAbove { level: cpu_level(&p.flag)?, for_: p.for_.ok_or_else(missing_for)? },
        FlagName::MemAbove => {
            Rule::MemAbove { threshold: mem_level(&p.flag, false)?, for_: p.for_.ok_or_else(missing_for)? }
        }
        _ => {
            let metric = if p.flag.name == FlagName::CpuJump { Metric::Cpu } else { Metric::Mem };
            // A jump to 100x the average is as far as a percentage is useful.
            let pct_over_avg = percent(&p.flag, 0.0, 10_000.0, "above the average")?;
            Rule::Jump {
                metric,
                pct_over_avg,
                window: p.window.unwrap_or(DEFAULT_JUMP_WINDOW),
                floor: p.floor.unwrap_or(Threshold::Percent(DEFAULT_JUMP_FLOOR_PCT)),
                for_: p.for_.unwrap_or(Duration::ZERO),
            }
        }
    };
    let max = MAX_RULE_SPAN.min(interval.saturating_mul(MAX_RULE_SAMPLES));
    if rule.span() > max {
        return Err(RuleError::TooLong {
            rule: p.flag.to_string(),
            max: duration_text(max),
            interval: duration_text(interval),
        });
    }
    Ok(rule)
}

fn invalid(flag: &TriggerFlag, reason: impl Into<String>) -> RuleError {
    RuleError::InvalidValue { flag: flag.name.long(), value: flag.value.clone(), reason: reason.into() }
}

/// `--for` and `--jump-window`: a duration no shorter than a sample
/// interval. The longest is checked on the whole rule ([`MAX_RULE_SPAN`]).
fn window_value(flag: &TriggerFlag, rule: &TriggerFlag, interval: Duration) -> Result<Duration, RuleError> {
    let d = parse_duration(&flag.value).map_err(|e| invalid(flag, e))?;
    if d < interval {
        return Err(RuleError::ShorterThanInterval {
            modifier: flag.to_string(),
            rule: rule.to_string(),
            interval: duration_text(interval),
        });
    }
    Ok(d)
}

/// A percentage in `(low, high]` (`[0, high]` when `low` is 0 and the flag
/// is a floor), with or without a `%` sign.
fn percent(flag: &TriggerFlag, low: f64, high: f64, of_what: &str) -> Result<f64, RuleError> {
    let text = flag.value.trim();
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    let pct: f64 = number
        .parse()
        .ok()
        .filter(|p: &f64| p.is_finite())
        .ok_or_else(|| invalid(flag, format!("expected a percentage {of_what}, e.g. `80`")))?;
    let floor = flag.name == FlagName::JumpFloor;
    let in_range = if floor { (low..=high).contains(&pct) } else { pct > low && pct <= high };
    if !in_range {
        let bound = if floor { "at least" } else { "greater than" };
        let hint =
            if flag.name == FlagName::CpuAbove { " (100 means all the CPUs available to the target)" } else { "" };
        return Err(invalid(
            flag,
            format!("the percentage must be {bound} {} and at most {}{hint}", pct_text(low), pct_text(high)),
        ));
    }
    Ok(pct)
}

/// The most cores a `--cpu-above` may ask for: more than any host has.
const MAX_CORES: f64 = 65_536.0;

/// `--cpu-above`: `80` or `80%` of the CPUs available to the target (the
/// contract's reading), or `0.9cores` as `top` counts. A bare number above
/// 100 is refused with the cores spelling as the hint, since that is `top`'s
/// reading of a multi-threaded process; any other suffix is refused rather
/// than guessed at.
fn cpu_level(flag: &TriggerFlag) -> Result<CpuLevel, RuleError> {
    let text = flag.value.trim();
    let lower = text.to_ascii_lowercase();
    let usage = "write `80%` (of the CPUs available to the target) or `0.9cores` (as `top` counts: \
                 1 core = 100 % of one CPU)";
    if let Some(number) = lower.strip_suffix("cores").or_else(|| lower.strip_suffix("core")) {
        let cores: f64 = number
            .trim()
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite())
            .ok_or_else(|| invalid(flag, format!("expected a number of cores, e.g. `0.9cores`; {usage}")))?;
        if !(cores > 0.0 && cores <= MAX_CORES) {
            return Err(invalid(flag, "the number of cores must be greater than 0, e.g. `0.9cores`"));
        }
        return Ok(CpuLevel::Cores(cores));
    }
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    let Ok(value) = number.parse::<f64>() else {
        return Err(invalid(flag, format!("unknown CPU level; {usage}")));
    };
    if !text.ends_with('%') && value.is_finite() && value > 100.0 {
        return Err(invalid(
            flag,
            format!(
                "a bare number is a percentage of all the CPUs available to the target, at most 100; \
                 for `top`'s reading of {}% write `{}cores`",
                pct_text(value),
                pct_text(value / 100.0)
            ),
        ));
    }
    Ok(CpuLevel::Percent(percent(flag, 0.0, 100.0, "of the CPUs available to the target")?))
}

/// `80`, `80%` (of the limit) or a size such as `2GiB`. A bare number is a
/// percentage: `--mem-above 80` is the contract's spelling.
fn mem_level(flag: &TriggerFlag, is_floor: bool) -> Result<Threshold, RuleError> {
    let text = flag.value.trim();
    let numeric = !text.is_empty() && text.trim_end_matches('%').trim().parse::<f64>().is_ok();
    if numeric {
        let pct = percent(flag, 0.0, 100.0, "of the memory limit").map_err(|e| match e {
            // `--mem-above 4096` probably meant a size.
            RuleError::InvalidValue { flag: f, value, reason } if text.parse::<f64>().is_ok_and(|n| n > 100.0) => {
                RuleError::InvalidValue {
                    flag: f,
                    reason: format!("{reason}; for a size add a unit, e.g. `{value}MiB`"),
                    value,
                }
            }
            e => e,
        })?;
        return Ok(Threshold::Percent(pct));
    }
    let bytes = parse_size(text).map_err(|e| {
        invalid(flag, format!("expected a percentage of the memory limit (e.g. `80`) or a size (e.g. `2GiB`): {e}"))
    })?;
    if bytes == 0 && !is_floor {
        return Err(invalid(flag, "the size must be greater than zero, e.g. `2GiB`"));
    }
    Ok(Threshold::Bytes(bytes))
}

/// `80`, `80.5`, `0.25`: a percentage as the user would write it.
pub(crate) fn pct_text(pct: f64) -> String {
    let text = format!("{pct:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `3m`, `1m 30s`, `500ms`.
pub(crate) fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn threshold_text(t: Threshold) -> String {
    match t {
        Threshold::Percent(pct) => format!("{}%", pct_text(pct)),
        Threshold::Bytes(bytes) => size_text(bytes),
    }
}

/// A size as a user would have typed it: `2GiB`, `512MiB`, `2GB`, else
/// rounded to one decimal (`1.7GiB`).
pub(crate) fn size_text(bytes: u64) -> String {
    const BINARY: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    const DECIMAL: [(u64, &str); 4] =
        [(1_000_000_000_000, "TB"), (1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "KB")];
    // The exact spelling with the smallest number: `2GB`, not `1953125KiB`.
    BINARY
        .into_iter()
        .chain(DECIMAL)
        .filter(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .min_by_key(|(unit, _)| bytes / unit)
        .map_or_else(|| approx_size_text(bytes), |(unit, name)| format!("{}{name}", bytes / unit))
}

/// `1.7GiB`, `812.3MiB`, `900B`: a measured size.
pub(crate) fn approx_size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let text = format!("{value:.1}");
    format!("{}{}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
}
