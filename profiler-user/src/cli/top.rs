//! `stackwatch top`'s arguments.

use std::time::Duration;

use clap::Args;

use super::{parse_frequency, TargetArgs};
use crate::units::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Samples per second per CPU, 1 to 10000
    #[arg(
        long,
        value_name = "HZ",
        default_value_t = 99,
        value_parser = parse_frequency,
        allow_hyphen_values = true
    )]
    pub(crate) frequency: u64,

    /// How often the table is refreshed, 200ms to 1m
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_refresh, allow_hyphen_values = true)]
    pub(crate) interval: Duration,

    /// Sample for one --interval, print the table as plain text and exit (for scripts and
    /// pipes; without it `top` needs a terminal)
    #[arg(long)]
    pub(crate) once: bool,
}

/// `--interval`: a refresh is at least 200 ms (fewer samples than that say
/// little at 99 Hz) and at most a minute.
fn parse_refresh(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(Duration::from_millis(200)..=Duration::from_secs(60)).contains(&d) {
        return Err("the refresh interval must be between 200ms and 1m".to_owned());
    }
    Ok(d)
}
