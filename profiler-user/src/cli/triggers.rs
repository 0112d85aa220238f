//! The trigger flags of `watch`, as a clap argument group to flatten into
//! its arguments.
//!
//! `--for` belongs to the rule before it, so the order of the flags matters,
//! which a derived `clap::Args` cannot see: [`TriggerArgs`] implements the
//! traits by hand and reads each value's position with
//! [`clap::ArgMatches::indices_of`]. Values are kept as typed and checked by
//! [`crate::triggers::parse_rules`], whose errors say which rule is wrong.

use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::triggers::{parse_sample_interval, FlagName, TriggerArgs, TriggerFlag};
use crate::units::parse_cooldown;

const HEADING: &str = "Triggers";

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
            "PCT%|Ncores",
            "Capture when the target's CPU use stays at or above this for the --for after it: PCT or PCT% \
             of the CPUs available to the target (its cgroup's quota, else the online CPUs; 100 means all \
             of them), or Ncores as top counts (0.9cores: 90 % of one CPU)",
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

#[cfg(test)]
mod tests;
