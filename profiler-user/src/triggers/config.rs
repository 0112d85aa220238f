//! The trigger settings as an operator gives them, on the command line
//! (`crate::cli::triggers`) or in the config file, and validated into a
//! [`TriggerConfig`].

use std::time::Duration;

use super::rules::{parse_rule_flags, FlagName, Rule, RuleError, TriggerFlag};
use crate::units::parse_duration;

/// `--cooldown` when not given: a triggered capture every 10 minutes at
/// most, so a target that stays hot fills the disk slowly.
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(600);

/// `--sample-interval` when not given.
pub(crate) const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Bounds of `--sample-interval`: faster costs more than it tells (CPU time
/// is counted in 10 ms ticks), slower makes rules sluggish.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
const MAX_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);

/// The trigger flags of `watch` (clap reads them: `crate::cli::triggers`).
/// `cooldown` and `sample_interval` are `None` when not given, so a config
/// file can supply them; [`TriggerConfig`] applies the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TriggerArgs {
    /// Rule flags and their modifiers, in command-line order.
    pub flags: Vec<TriggerFlag>,
    pub cooldown: Option<Duration>,
    pub sample_interval: Option<Duration>,
}

/// Everything the trigger engine needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TriggerConfig {
    pub rules: Vec<Rule>,
    pub cooldown: Duration,
    pub sample_interval: Duration,
}

impl TriggerConfig {
    pub(crate) fn from_args(args: &TriggerArgs) -> Result<Self, RuleError> {
        let sample_interval = args.sample_interval.unwrap_or(DEFAULT_SAMPLE_INTERVAL);
        Ok(Self {
            rules: parse_rule_flags(&args.flags, sample_interval)?,
            cooldown: args.cooldown.unwrap_or(DEFAULT_COOLDOWN),
            sample_interval,
        })
    }
}

/// The rules of a command line, in the order given.
#[cfg(test)]
pub(crate) fn parse_rules(args: &TriggerArgs) -> Result<Vec<Rule>, RuleError> {
    Ok(TriggerConfig::from_args(args)?.rules)
}

/// Reads trigger flags from text, for a config file:
/// `"--cpu-above 80 --for 3m --mem-above 2GiB --for 1m"` (the dashes may be
/// left out).
pub(crate) fn parse_trigger_words(text: &str) -> Result<Vec<TriggerFlag>, RuleError> {
    let mut words = text.split_whitespace();
    let mut flags = Vec::new();
    while let Some(word) = words.next() {
        let bare = word.trim_start_matches('-');
        let Some(name) = FlagName::ALL.into_iter().find(|n| n.long().trim_start_matches('-') == bare) else {
            return Err(RuleError::InvalidValue {
                flag: "triggers",
                value: text.to_owned(),
                reason: format!("unknown trigger flag `{word}`"),
            });
        };
        let Some(value) = words.next() else {
            return Err(RuleError::InvalidValue {
                flag: "triggers",
                value: text.to_owned(),
                reason: format!("`{word}` needs a value"),
            });
        };
        flags.push(TriggerFlag::new(name, value));
    }
    Ok(flags)
}

/// `--sample-interval` (and `sample-interval` in a config file): a duration
/// between 100ms and 1m.
pub(crate) fn parse_sample_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(MIN_SAMPLE_INTERVAL..=MAX_SAMPLE_INTERVAL).contains(&d) {
        return Err("the sample interval must be between 100ms and 1m".to_owned());
    }
    Ok(d)
}
