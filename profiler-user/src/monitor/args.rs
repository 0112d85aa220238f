//! The trigger flags of `watch`, as a clap argument group to flatten into
//! its arguments.
//!
//! `--for` belongs to the rule before it, so the order of the flags matters,
//! which a derived `clap::Args` cannot see: [`TriggerArgs`] implements the
//! traits by hand and reads each value's position with
//! [`clap::ArgMatches::indices_of`]. Values are kept as typed and checked by
//! [`parse_rules`], whose errors say which rule is wrong.

use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::rules::{parse_rule_flags, FlagName, Rule, RuleError, TriggerFlag};
use crate::units::{parse_cooldown, parse_duration};

/// `--cooldown` when not given: a triggered capture every 10 minutes at
/// most, so a target that stays hot fills the disk slowly.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(600);

/// `--sample-interval` when not given.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Bounds of `--sample-interval`: faster costs more than it tells (CPU time
/// is counted in 10 ms ticks), slower makes rules sluggish.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
const MAX_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);

const HEADING: &str = "Triggers";

/// The trigger flags of `watch`. Flatten it with `#[command(flatten)]`.
/// `cooldown` and `sample_interval` are `None` when not given, so a config
/// file can supply them; [`TriggerConfig`] applies the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerArgs {
    /// Rule flags and their modifiers, in command-line order.
    pub flags: Vec<TriggerFlag>,
    pub cooldown: Option<Duration>,
    pub sample_interval: Option<Duration>,
}

/// Everything the trigger engine needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerConfig {
    pub rules: Vec<Rule>,
    pub cooldown: Duration,
    pub sample_interval: Duration,
}

impl TriggerConfig {
    pub fn from_args(args: &TriggerArgs) -> Result<Self, RuleError> {
        let sample_interval = args.sample_interval.unwrap_or(DEFAULT_SAMPLE_INTERVAL);
        Ok(Self {
            rules: parse_rule_flags(&args.flags, sample_interval)?,
            cooldown: args.cooldown.unwrap_or(DEFAULT_COOLDOWN),
            sample_interval,
        })
    }
}

/// The rules of a command line, in the order given.
pub fn parse_rules(args: &TriggerArgs) -> Result<Vec<Rule>, RuleError> {
    Ok(TriggerConfig::from_args(args)?.rules)
}

/// Reads trigger flags from text, for a config file:
/// `"--cpu-above 80 --for 3m --mem-above 2GiB --for 1m"` (the dashes may be
/// left out).
pub fn parse_trigger_words(text: &str) -> Result<Vec<TriggerFlag>, RuleError> {
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

/// Clap's argument id of a flag.
fn id(name: FlagName) -> &'static str {
    match name {
        FlagName::CpuAbove => "cpu_above",
        FlagName::MemAbove => "mem_above",
        FlagName::CpuJump => "cpu_jump",
        FlagName::MemJump => "mem_jump",
        FlagName::For => "for",
        FlagName::JumpWindow => "jump_window",
        FlagName::JumpFloor => "jump_floor",
    }
}

fn help(name: FlagName) -> (&'static str, &'static str) {
    match name {
        FlagName::CpuAbove => (
            "PCT",
            "Capture when the target's CPU use stays at or above PCT percent for the --for after it. \
             100 means all the CPUs available to the target: its cgroup's quota, else the online CPUs",
        ),
        FlagName::MemAbove => (
            "PCT|SIZE",
            "Capture when the target's resident memory stays at or above PCT percent of its limit \
             (cgroup memory.max, else MemTotal), or above SIZE (e.g. 2GiB), for the --for after it",
        ),
        FlagName::CpuJump => (
            "PCT",
            "Capture when the target's CPU use jumps PCT percent above its average over --jump-window \
             (and is at least --jump-floor)",
        ),
        FlagName::MemJump => (
            "PCT",
            "Capture when the target's memory jumps PCT percent above its average over --jump-window \
             (and is at least --jump-floor)",
        ),
        FlagName::For => (
            "DURATION",
            "How long the rule before it must hold, e.g. 3m; required after --cpu-above and --mem-above, \
             optional after a jump rule",
        ),
        FlagName::JumpWindow => ("DURATION", "Moving-average window of the jump rule before it [default: 1m]"),
        FlagName::JumpFloor => (
            "PCT|SIZE",
            "Level below which the jump rule before it never fires, so idle noise cannot: a percentage, \
             or also a size after --mem-jump [default: 10]",
        ),
    }
}

impl Args for TriggerArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd;
        for name in FlagName::ALL {
            let (value_name, text) = help(name);
            cmd = cmd.arg(
                Arg::new(id(name))
                    .long(&name.long()[2..])
                    .value_name(value_name)
                    .help(text)
                    .help_heading(HEADING)
                    .action(ArgAction::Append)
                    .num_args(1)
                    // So `--for -3s` reaches our check and its clear message.
                    .allow_hyphen_values(true),
            );
        }
        cmd.arg(
            Arg::new("cooldown")
                .long("cooldown")
                .value_name("DURATION")
                .help("No new triggered capture before this long after the last one, 1s to 7d [default: 10m]")
                .help_heading(HEADING)
                .value_parser(parse_cooldown)
                .allow_hyphen_values(true),
        )
        .arg(
            Arg::new("sample_interval")
                .long("sample-interval")
                .value_name("DURATION")
                .help("How often the target's CPU and memory are read, 100ms to 1m [default: 1s]")
                .help_heading(HEADING)
                .value_parser(parse_sample_interval)
                .allow_hyphen_values(true),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for TriggerArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut positioned: Vec<(usize, TriggerFlag)> = Vec::new();
        for name in FlagName::ALL {
            let (Some(values), Some(indices)) = (matches.get_many::<String>(id(name)), matches.indices_of(id(name)))
            else {
                continue;
            };
            positioned.extend(indices.zip(values).map(|(i, v)| (i, TriggerFlag::new(name, v.clone()))));
        }
        positioned.sort_by_key(|(i, _)| *i);
        Ok(Self {
            flags: positioned.into_iter().map(|(_, flag)| flag).collect(),
            cooldown: matches.get_one::<Duration>("cooldown").copied(),
            sample_interval: matches.get_one::<Duration>("sample_interval").copied(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let update = Self::from_arg_matches(matches)?;
        if !update.flags.is_empty() {
            self.flags = update.flags;
        }
        self.cooldown = update.cooldown.or(self.cooldown);
        self.sample_interval = update.sample_interval.or(self.sample_interval);
        Ok(())
    }
}

/// `--sample-interval` (and `sample-interval` in a config file): a duration
/// between 100ms and 1m.
pub fn parse_sample_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(MIN_SAMPLE_INTERVAL..=MAX_SAMPLE_INTERVAL).contains(&d) {
        return Err("the sample interval must be between 100ms and 1m".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
