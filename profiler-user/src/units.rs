//! Human-readable durations and sizes on the command line.
//!
//! Both parsers return a one-sentence error meant to follow clap's
//! "invalid value 'X' for '--flag':" prefix, so they are used directly as
//! `value_parser`s and bad values become usage errors (exit code 2).
//!
//! Every duration option has bounds, checked by the parser of that option
//! ([`parse_capture_duration`], [`parse_cooldown`], [`parse_ctl_timeout`];
//! `--sample-interval`, `--for` and `--jump-window` in [`crate::monitor`]),
//! and used for the same setting wherever it comes from (flag, config file,
//! control command): a typo such as `--duration 18446744073709551615s` is a
//! usage error before anything is created, never an overflow later.

use std::time::Duration;

/// Longest capture (`record --duration`, `watch --capture-duration`,
/// `start DURATION`). Longer windows blur a profile into an average and let a
/// typo (`start 30d`) pin sampling on for weeks.
pub(crate) const MAX_CAPTURE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Shortest capture: one sample period at the default 99 Hz. A shorter one
/// holds nothing, which is surely not what was meant.
pub(crate) const MIN_CAPTURE_DURATION: Duration = Duration::from_millis(10);

/// Longest `--cooldown`: one triggered capture a week is as rare as a rule
/// that should fire at all can usefully be.
pub(crate) const MAX_COOLDOWN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Shortest `--cooldown`: trigger samples are at least 100 ms apart, so less
/// than a second is no cooldown at all.
pub(crate) const MIN_COOLDOWN: Duration = Duration::from_secs(1);

/// Bounds of `ctl --timeout`: a daemon answers in milliseconds, and the
/// slowest answer, a `stop` waiting for a large capture to be written,
/// takes seconds to minutes.
pub(crate) const MIN_CTL_TIMEOUT: Duration = Duration::from_millis(100);
pub(crate) const MAX_CTL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The items of a comma-separated list option (`--formats`, `--profiles`,
/// a config file's lists), each trimmed of surrounding whitespace as every
/// number and word stackwatch reads is. An empty item (`pprof,,svg`, `cpu,`,
/// an empty value) is refused, never skipped: it is a typo or an unset
/// shell variable, and every list option treats it the same way.
/// `expected` completes "expected …", e.g. "profile kinds such as `cpu,offcpu`".
pub(crate) fn list_items<'a>(text: &'a str, expected: &str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(empty_item(expected));
    }
    Ok(items)
}

/// The error for an empty item of a comma-separated list, for parsers that
/// see one item at a time (clap's `value_delimiter`).
pub(crate) fn empty_item(expected: &str) -> String {
    format!("the list has an empty item (a comma too many, or no value); expected {expected}")
}

/// Parses a positive human duration: `500ms`, `30s`, `3m`, `1h`, `1h 30m`.
///
/// Units are humantime's (`ms`, `s`/`sec`, `m`/`min`, `h`, `d`, …). A bare
/// number is refused rather than guessed at, as are negative and zero
/// durations: no caller has a use for an empty time window.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "e.g. `500ms`, `30s`, `3m` or `1h`";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("a duration is required, {EXAMPLES}"));
    }
    if s.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    let d = humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("a unit is required, e.g. `{value}s` or `{value}ms`")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown time unit `{unit}`, use `ms`, `s`, `m`, `h` or `d`")
        }
        humantime::DurationError::NumberOverflow => "the duration is too large".to_owned(),
        _ => format!("expected a number followed by a unit, {EXAMPLES}"),
    })?;
    if d.is_zero() {
        return Err("a duration must be greater than zero".to_owned());
    }
    Ok(d)
}

/// A capture's length: [`parse_duration`] within [`MIN_CAPTURE_DURATION`]
/// and [`MAX_CAPTURE_DURATION`].
pub(crate) fn parse_capture_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_CAPTURE_DURATION {
        return Err(format!("captures are limited to {}", humantime::format_duration(MAX_CAPTURE_DURATION)));
    }
    if d < MIN_CAPTURE_DURATION {
        return Err(format!("captures last at least {}", humantime::format_duration(MIN_CAPTURE_DURATION)));
    }
    Ok(d)
}

/// `--cooldown`: [`parse_duration`] within [`MIN_COOLDOWN`] and [`MAX_COOLDOWN`].
pub(crate) fn parse_cooldown(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, MIN_COOLDOWN, MAX_COOLDOWN, "the cooldown")
}

/// `ctl --timeout`: [`parse_duration`] within [`MIN_CTL_TIMEOUT`] and
/// [`MAX_CTL_TIMEOUT`].
pub(crate) fn parse_ctl_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, MIN_CTL_TIMEOUT, MAX_CTL_TIMEOUT, "the timeout")
}

/// [`parse_duration`] within `[min, max]`; `what` names the value in the error.
pub(crate) fn parse_duration_within(s: &str, min: Duration, max: Duration, what: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(min..=max).contains(&d) {
        return Err(format!(
            "{what} must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// Parses a size in bytes: `1024`, `4k`, `512MiB`, `1.5GiB`, `2GB`.
///
/// The suffixes follow GNU coreutils (`dd`, `sort -S`), the convention an
/// operator's fingers already know, and are case-insensitive:
///
/// - none or `B`: bytes;
/// - `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` (also `Ki`, `Mi`, … as
///   Kubernetes writes them): powers of 1024;
/// - `KB`, `MB`, `GB`, `TB`: powers of 1000.
///
/// A decimal fraction is allowed and the result is rounded down to whole
/// bytes (`1.5KiB` is 1536). Zero is accepted; callers that need a positive
/// size check that themselves.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    const EXAMPLES: &str = "e.g. `512MiB`, `2GB` or `1048576`";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("a size is required, {EXAMPLES}"));
    }
    if s.starts_with('-') {
        return Err("a size cannot be negative".to_owned());
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit `{}`, use `B`, `KiB`, `MiB`, `GiB`, `TiB` or `KB`, `MB`, `GB`, `TB`",
                unit.trim_start()
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("expected a number optionally followed by a unit, {EXAMPLES}"));
    }
    // Exact decimal arithmetic: `1.1GB` must be 1100000000, not a float's guess.
    // 30 fractional digits are plenty and keep 10^digits within u128.
    let fraction = &fraction[..fraction.len().min(30)];
    let too_large = || "the size is too large".to_owned();
    let scale = 10u128.pow(fraction.len() as u32);
    let digits = format!("{whole}{fraction}");
    let value: u128 = digits.parse().map_err(|_| too_large())?;
    let bytes = value.checked_mul(multiplier).ok_or_else(too_large)? / scale;
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn bad_durations() {
        for (input, expected) in [
            ("", "a duration is required, e.g. `500ms`, `30s`, `3m` or `1h`"),
            ("-3s", "a duration cannot be negative"),
            ("0s", "a duration must be greater than zero"),
            ("0", "a duration must be greater than zero"),
            ("30", "a unit is required, e.g. `30s` or `30ms`"),
            ("3x", "unknown time unit `x`, use `ms`, `s`, `m`, `h` or `d`"),
            ("soon", "expected a number followed by a unit, e.g. `500ms`, `30s`, `3m` or `1h`"),
            ("99999999999999999999s", "the duration is too large"),
        ] {
            assert_eq!(parse_duration(input).unwrap_err(), expected, "input {input:?}");
        }
    }

    #[test]
    fn bounded_durations() {
        assert_eq!(parse_capture_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_capture_duration("24h"), Ok(MAX_CAPTURE_DURATION));
        assert_eq!(parse_cooldown("1s"), Ok(MIN_COOLDOWN));
        assert_eq!(parse_cooldown("7d"), Ok(MAX_COOLDOWN));
        assert_eq!(parse_ctl_timeout("100ms"), Ok(MIN_CTL_TIMEOUT));
        assert_eq!(parse_ctl_timeout("1h"), Ok(MAX_CTL_TIMEOUT));
        for (input, expected) in [
            ("18446744073709551615s", "captures are limited to 1day"),
            ("24h 1s", "captures are limited to 1day"),
            ("9ms", "captures last at least 10ms"),
            ("1ns", "captures last at least 10ms"),
            ("0s", "a duration must be greater than zero"),
            ("-1s", "a duration cannot be negative"),
            ("99999999999999999999999h", "the duration is too large"),
        ] {
            assert_eq!(parse_capture_duration(input).unwrap_err(), expected, "input {input:?}");
        }
        for input in ["18446744073709551615s", "8d", "999ms"] {
            assert_eq!(parse_cooldown(input).unwrap_err(), "the cooldown must be between 1s and 7days", "{input}");
        }
        for input in ["18446744073709551615s", "61m", "99ms"] {
            assert_eq!(parse_ctl_timeout(input).unwrap_err(), "the timeout must be between 100ms and 1h", "{input}");
        }
    }

    #[test]
    fn sizes() {
        for (input, expected) in [
            ("0", 0),
            ("1024", 1024),
            ("1024B", 1024),
            ("4k", 4096),
            ("4K", 4096),
            ("512MiB", 512 << 20),
            ("512 mib", 512 << 20),
            ("512Mi", 512 << 20),
            ("1.5GiB", 3 << 29),
            ("2GB", 2_000_000_000),
            ("1.1GB", 1_100_000_000),
            ("2g", 2 << 30),
            ("1T", 1 << 40),
            ("0.5KiB", 512),
            (".5k", 512),
            ("1.0001k", 1024),
            ("16TiB", 16 << 40),
        ] {
            assert_eq!(parse_size(input), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        for (input, expected) in [
            ("", "a size is required, e.g. `512MiB`, `2GB` or `1048576`"),
            ("-1MiB", "a size cannot be negative"),
            ("lots", "unknown size unit `lots`, use `B`, `KiB`, `MiB`, `GiB`, `TiB` or `KB`, `MB`, `GB`, `TB`"),
            ("2 PB", "unknown size unit `PB`, use `B`, `KiB`, `MiB`, `GiB`, `TiB` or `KB`, `MB`, `GB`, `TB`"),
            ("1.2.3", "expected a number optionally followed by a unit, e.g. `512MiB`, `2GB` or `1048576`"),
            (".", "expected a number optionally followed by a unit, e.g. `512MiB`, `2GB` or `1048576`"),
            ("MiB", "expected a number optionally followed by a unit, e.g. `512MiB`, `2GB` or `1048576`"),
            ("20000000TiB", "the size is too large"),
            ("99999999999999999999999999999999999999999", "the size is too large"),
        ] {
            assert_eq!(parse_size(input).unwrap_err(), expected, "input {input:?}");
        }
    }

    #[test]
    fn list_items_refuse_empty_items() {
        assert_eq!(list_items("pprof, svg ", "formats"), Ok(vec!["pprof", "svg"]));
        for text in ["", " ", ",", "pprof,,svg", "cpu,", ",cpu", "cpu, ,offcpu"] {
            let err = list_items(text, "formats").unwrap_err();
            assert!(
                err.starts_with("the list has an empty item") && err.ends_with("expected formats"),
                "{text:?}: {err}"
            );
        }
    }
}
