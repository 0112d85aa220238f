//! Every duration, rate and size a command line or config file takes is
//! bounded: a huge, zero, negative or garbled value is a usage error (exit
//! 2) on one `error:` line, before anything is created.
//! `record --duration 18446744073709551615s` once panicked (exit 101) after
//! creating the output directory.
//!
//! Nothing here gets as far as loading a program, so no root is needed; a
//! value that slipped through would start sampling or a daemon, which the
//! timeout and the exit-code check catch.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stackwatch_tests::capture::assert_exit;
use stackwatch_tests::{run_stackwatch_timeout, scratch_dir};

/// Longest a refusal may take: it happens while parsing the command line.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Fits a `Duration` (u64 seconds) but overflows any deadline built on it.
const HUGE_DURATION: &str = "18446744073709551615s";

/// The duration values every duration option must refuse, and a word the
/// error must contain for each.
const BAD_DURATIONS: [(&str, &str); 5] = [
    (HUGE_DURATION, ""),
    ("99999999999999999999999h", "too large"),
    ("0s", "greater than zero"),
    ("-5s", "negative"),
    ("soon", "expected a number followed by a unit"),
];

/// Runs `stackwatch ARGS…` and checks the refusal: exit 2, exactly one line
/// on stderr, starting with `error:` and containing `expected`, nothing on
/// stdout, and none of `must_not_exist` created. Returns the line.
fn assert_usage_error(args: &[&str], expected: &str, must_not_exist: &[&Path]) -> String {
    let shown = format!("stackwatch {}", args.join(" "));
    let output = run_stackwatch_timeout(args, TIMEOUT);
    assert_exit(&output, 2, &shown);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() == 1 && lines[0].starts_with("error: "), "{shown}: expected one `error:` line, got:\n{stderr}");
    assert!(lines[0].contains(expected), "{shown}: the error does not say `{expected}`: {}", lines[0]);
    assert!(output.stdout.is_empty(), "{shown}: printed on stdout:\n{}", String::from_utf8_lossy(&output.stdout));
    for path in must_not_exist {
        assert!(!path.exists(), "{shown}: `{}` was created", path.display());
    }
    lines[0].to_owned()
}

struct Dirs {
    out: PathBuf,
    control_dir: PathBuf,
    control: String,
    out_arg: String,
}

fn dirs(name: &str) -> Dirs {
    let dir = scratch_dir(name);
    let out = dir.join("out");
    let control_dir = dir.join("run");
    Dirs {
        control: control_dir.join("control").to_string_lossy().into_owned(),
        out_arg: out.to_string_lossy().into_owned(),
        out,
        control_dir,
    }
}

#[test]
fn record_refuses_bad_durations_and_frequencies() {
    let d = dirs("bounds-record");
    let pid = std::process::id().to_string();
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    for (value, expected) in BAD_DURATIONS {
        let expected = if value == HUGE_DURATION { "captures are limited to 1day" } else { expected };
        cases.push((vec!["--duration", value], expected));
    }
    cases.push((vec!["--duration", "25h"], "captures are limited to 1day"));
    cases.push((vec!["--duration", "1ms"], "captures last at least 10ms"));
    cases.push((vec!["--duration", "30"], "a unit is required"));
    for (value, expected) in [
        ("18446744073709551615", "between 1 and 10000 Hz"),
        ("99999999999999999999999", "expected a whole number"),
        ("20000", "between 1 and 10000 Hz"),
        ("0", "between 1 and 10000 Hz"),
        ("-5", "expected a whole number"),
        ("fast", "expected a whole number"),
    ] {
        cases.push((vec!["--frequency", value], expected));
    }
    for (flags, expected) in cases {
        let mut args = vec!["record", "--pid", &pid, "--output-dir", &d.out_arg];
        args.extend(flags);
        let line = assert_usage_error(&args, expected, &[&d.out]);
        eprintln!("{line}");
    }
}

#[test]
fn watch_refuses_bad_durations_rates_and_sizes() {
    let d = dirs("bounds-watch");
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    for (value, expected) in BAD_DURATIONS {
        let capture = if value == HUGE_DURATION { "captures are limited to 1day" } else { expected };
        let cooldown = if value == HUGE_DURATION { "the cooldown must be between 1s and 7days" } else { expected };
        let interval = if value == HUGE_DURATION { "between 100ms and 1m" } else { expected };
        let rule = if value == HUGE_DURATION { "looks at more than 1day of history" } else { expected };
        cases.push((vec!["--capture-duration", value], capture));
        cases.push((vec!["--cooldown", value], cooldown));
        cases.push((vec!["--sample-interval", value], interval));
        cases.push((vec!["--cpu-above", "80", "--for", value], rule));
        cases.push((vec!["--mem-jump", "50", "--jump-window", value], rule));
    }
    cases.push((vec!["--cooldown", "8d"], "the cooldown must be between 1s and 7days"));
    cases.push((vec!["--cpu-jump", "50", "--jump-window", HUGE_DURATION, "--for", HUGE_DURATION], "1day of history"));
    for (value, expected) in [
        ("18446744073709551615", "between 1 and 10000 Hz"),
        ("0", "between 1 and 10000 Hz"),
        ("-5", "expected a whole number"),
        ("fast", "expected a whole number"),
    ] {
        cases.push((vec!["--frequency", value], expected));
    }
    for (value, expected) in [
        ("99999999999999999999TiB", "the size is too large"),
        ("0", "greater than zero"),
        ("-1GiB", "cannot be negative"),
        ("lots", "unknown size unit"),
    ] {
        cases.push((vec!["--retain", value], expected));
    }
    for (value, expected) in [
        ("18446744073709551616", "expected a whole number of captures"),
        ("0", "at least one capture must be kept"),
        ("-1", "expected a whole number of captures"),
        ("all", "expected a whole number of captures"),
    ] {
        cases.push((vec!["--max-captures", value], expected));
    }
    for (flags, expected) in cases {
        let mut args = vec!["watch", "--control", &d.control, "--output-dir", &d.out_arg];
        args.extend(flags);
        let line = assert_usage_error(&args, expected, &[&d.out, &d.control_dir]);
        eprintln!("{line}");
    }
}

#[test]
fn watch_refuses_bad_values_in_its_config_file() {
    let d = dirs("bounds-watch-config");
    let config = d.out.with_file_name("watch.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let mut cases: Vec<(String, &str)> = Vec::new();
    for (value, expected) in BAD_DURATIONS {
        let capture = if value == HUGE_DURATION { "captures are limited to 1day" } else { expected };
        let cooldown = if value == HUGE_DURATION { "the cooldown must be between 1s and 7days" } else { expected };
        let interval = if value == HUGE_DURATION { "between 100ms and 1m" } else { expected };
        let rule = if value == HUGE_DURATION { "looks at more than 1day of history" } else { expected };
        cases.push((format!("capture-duration = \"{value}\""), capture));
        cases.push((format!("cooldown = \"{value}\""), cooldown));
        cases.push((format!("sample-interval = \"{value}\""), interval));
        cases.push((format!("triggers = \"cpu-above 80 for {value}\""), rule));
    }
    for (value, expected) in [
        ("18446744073709551615", "between 1 and 10000 Hz"),
        ("18446744073709551616", "invalid config file"),
        ("9223372036854775807", "between 1 and 10000 Hz"),
        ("0", "between 1 and 10000 Hz"),
        ("-5", "invalid config file"),
        ("\"fast\"", "invalid config file"),
        ("1e9", "invalid config file"),
    ] {
        cases.push((format!("frequency = {value}"), expected));
    }
    for (value, expected) in
        [("0", "greater than zero"), ("-1", "invalid config file"), ("\"lots\"", "unknown size unit")]
    {
        cases.push((format!("retain = {value}"), expected));
    }
    for (text, expected) in cases {
        if let Err(err) = fs::write(&config, format!("{text}\n")) {
            panic!("failed to write `{}`: {err}", config.display());
        }
        let args = ["watch", "--config", &config_arg, "--control", &d.control, "--output-dir", &d.out_arg];
        let line = assert_usage_error(&args, expected, &[&d.out, &d.control_dir]);
        eprintln!("{text}: {line}");
    }
}

#[test]
fn ctl_refuses_bad_durations_before_connecting() {
    let d = dirs("bounds-ctl");
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    for (value, expected) in BAD_DURATIONS {
        let start = if value == HUGE_DURATION { "captures are limited to 1day" } else { expected };
        let timeout = if value == HUGE_DURATION { "the timeout must be between 100ms and 1h" } else { expected };
        cases.push((vec!["start", value], start));
        cases.push((vec!["--timeout", value, "status"], timeout));
    }
    cases.push((vec!["start", "25h"], "captures are limited to 1day"));
    cases.push((vec!["start", "5ms"], "captures last at least 10ms"));
    cases.push((vec!["--timeout", "2h", "status"], "the timeout must be between 100ms and 1h"));
    // No daemon listens at this control path: a value that slipped through
    // would fail to connect (exit 1), not be refused (exit 2).
    for (flags, expected) in cases {
        let mut args = vec!["ctl", "--control", &d.control];
        args.extend(flags);
        let line = assert_usage_error(&args, expected, &[&d.control_dir]);
        eprintln!("{line}");
    }
}
