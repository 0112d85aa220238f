//! Trigger flags as `watch` will see them, through clap.

use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser};

use super::*;
use crate::triggers::config::{parse_rules, parse_trigger_words, TriggerConfig, DEFAULT_COOLDOWN};
use crate::triggers::rules::{
    parse_rule_flags, CpuLevel, Metric, Rule, RuleError, Threshold, DEFAULT_JUMP_FLOOR_PCT, DEFAULT_JUMP_WINDOW,
};

/// A stand-in for `watch`'s arguments, with another flag to interleave.
#[derive(Parser, Debug)]
#[command(name = "watch", max_term_width = 100)]
struct Watch {
    /// Profile processes whose name or command line matches REGEX
    #[arg(long, value_name = "REGEX")]
    name: Option<String>,

    /// How long a capture runs
    #[arg(long, value_name = "DURATION")]
    capture_duration: Option<String>,

    #[command(flatten)]
    triggers: TriggerArgs,
}

fn parse(argv: &[&str]) -> Result<Watch, clap::Error> {
    Watch::try_parse_from(std::iter::once("watch").chain(argv.iter().copied()))
}

fn triggers(argv: &[&str]) -> TriggerArgs {
    parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).triggers
}

fn rules(argv: &[&str]) -> Result<Vec<Rule>, RuleError> {
    parse_rules(&triggers(argv))
}

fn error(argv: &[&str]) -> String {
    match rules(argv) {
        Ok(rules) => panic!("{argv:?} should be refused, got {rules:?}"),
        Err(e) => e.to_string(),
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_contract_spelling() {
    let w = parse(&[
        "--name",
        "order-service",
        "--cpu-above",
        "80",
        "--for",
        "3m",
        "--mem-above",
        "80",
        "--for",
        "3m",
        "--cooldown",
        "30m",
        "--capture-duration",
        "60s",
    ])
    .unwrap();
    assert_eq!(w.name.as_deref(), Some("order-service"));
    assert_eq!(w.capture_duration.as_deref(), Some("60s"));
    let config = TriggerConfig::from_args(&w.triggers).unwrap();
    assert_eq!(
        config,
        TriggerConfig {
            rules: vec![
                Rule::CpuAbove { level: CpuLevel::Percent(80.0), for_: secs(180) },
                Rule::MemAbove { threshold: Threshold::Percent(80.0), for_: secs(180) },
            ],
            cooldown: secs(1800),
            sample_interval: secs(1),
        }
    );
}

#[test]
fn for_pairs_with_the_rule_before_it() {
    // Other flags in between do not matter; the order of the rule flags does.
    assert_eq!(
        rules(&["--mem-above", "2GiB", "--name", "x", "--for", "1m", "--cpu-above", "95", "--for", "30s"]),
        Ok(vec![
            Rule::MemAbove { threshold: Threshold::Bytes(2 << 30), for_: secs(60) },
            Rule::CpuAbove { level: CpuLevel::Percent(95.0), for_: secs(30) },
        ])
    );
    assert_eq!(
        rules(&["--cpu-above=80", "--for=3m", "--cpu-above", "95", "--for", "30s"]),
        Ok(vec![
            Rule::CpuAbove { level: CpuLevel::Percent(80.0), for_: secs(180) },
            Rule::CpuAbove { level: CpuLevel::Percent(95.0), for_: secs(30) }
        ])
    );
}

#[test]
fn memory_levels() {
    let mem = |value: &str| match rules(&["--mem-above", value, "--for", "10s"]).as_deref() {
        Ok([Rule::MemAbove { threshold, .. }]) => *threshold,
        other => panic!("{value}: {other:?}"),
    };
    assert_eq!(mem("80"), Threshold::Percent(80.0));
    assert_eq!(mem("80%"), Threshold::Percent(80.0));
    assert_eq!(mem("99.5"), Threshold::Percent(99.5));
    assert_eq!(mem("100"), Threshold::Percent(100.0));
    assert_eq!(mem("2GiB"), Threshold::Bytes(2 << 30));
    assert_eq!(mem("512MiB"), Threshold::Bytes(512 << 20));
    assert_eq!(mem("1.5GiB"), Threshold::Bytes(3 << 29));
    assert_eq!(mem("2GB"), Threshold::Bytes(2_000_000_000));
    assert_eq!(mem("4096B"), Threshold::Bytes(4096));
}

#[test]
fn jump_rules_and_their_defaults() {
    assert_eq!(
        rules(&["--cpu-jump", "50", "--jump-window", "2m", "--jump-floor", "20"]),
        Ok(vec![Rule::Jump {
            metric: Metric::Cpu,
            pct_over_avg: 50.0,
            window: secs(120),
            floor: Threshold::Percent(20.0),
            for_: Duration::ZERO,
        }])
    );
    assert_eq!(
        rules(&["--mem-jump", "30", "--jump-floor", "512MiB", "--for", "10s", "--cpu-jump", "200%"]),
        Ok(vec![
            Rule::Jump {
                metric: Metric::Mem,
                pct_over_avg: 30.0,
                window: DEFAULT_JUMP_WINDOW,
                floor: Threshold::Bytes(512 << 20),
                for_: secs(10),
            },
            Rule::Jump {
                metric: Metric::Cpu,
                pct_over_avg: 200.0,
                window: DEFAULT_JUMP_WINDOW,
                floor: Threshold::Percent(DEFAULT_JUMP_FLOOR_PCT),
                for_: Duration::ZERO,
            },
        ])
    );
}

#[test]
fn defaults_without_any_trigger() {
    let config = TriggerConfig::from_args(&triggers(&[])).unwrap();
    assert_eq!(config, TriggerConfig { rules: Vec::new(), cooldown: DEFAULT_COOLDOWN, sample_interval: secs(1) });
    assert_eq!(DEFAULT_COOLDOWN, secs(600));
}

#[test]
fn rule_errors() {
    for (argv, expected) in [
        (
            &["--cpu-above", "140%", "--for", "3m"][..],
            "invalid value `140%` for `--cpu-above`: the percentage must be greater than 0 and at most 100 \
             (100 means all the CPUs available to the target)",
        ),
        (
            &["--cpu-above", "140", "--for", "3m"][..],
            "invalid value `140` for `--cpu-above`: a bare number is a percentage of all the CPUs available to \
             the target, at most 100; for `top`'s reading of 140% write `1.4cores`",
        ),
        (
            &["--cpu-above", "0", "--for", "3m"],
            "invalid value `0` for `--cpu-above`: the percentage must be greater than 0 and at most 100 \
             (100 means all the CPUs available to the target)",
        ),
        (
            &["--cpu-above", "-5", "--for", "3m"],
            "invalid value `-5` for `--cpu-above`: the percentage must be greater than 0 and at most 100 \
             (100 means all the CPUs available to the target)",
        ),
        (
            &["--cpu-above", "lots", "--for", "3m"],
            "invalid value `lots` for `--cpu-above`: unknown CPU level; write `80%` (of the CPUs available to the \
             target) or `0.9cores` (as `top` counts: 1 core = 100 % of one CPU)",
        ),
        (
            &["--cpu-above", "NaN", "--for", "3m"],
            "invalid value `NaN` for `--cpu-above`: expected a percentage of the CPUs available to the target, \
             e.g. `80`",
        ),
        (&["--cpu-above", "80", "--for", "-3s"], "invalid value `-3s` for `--for`: a duration cannot be negative"),
        (&["--cpu-above", "80", "--for", "0s"], "invalid value `0s` for `--for`: a duration must be greater than zero"),
        (&["--cpu-above", "80", "--for", "3"], "invalid value `3` for `--for`: a unit is required, e.g. `3s` or `3ms`"),
        (
            &["--cpu-above", "80"],
            "`--cpu-above 80` needs a `--for DURATION` right after it, e.g. `--cpu-above 80 --for 3m`",
        ),
        (
            &["--mem-above", "2GiB", "--cpu-above", "80", "--for", "1m"],
            "`--mem-above 2GiB` needs a `--for DURATION` right after it, e.g. `--mem-above 2GiB --for 3m`",
        ),
        (
            &["--for", "3m", "--cpu-above", "80"],
            "`--for 3m` must follow the rule it applies to, e.g. `--cpu-above 80 --for 3m`",
        ),
        (
            &["--jump-window", "1m", "--cpu-jump", "50"],
            "`--jump-window 1m` must follow the rule it applies to, e.g. `--cpu-jump 50 --jump-window 1m`",
        ),
        (
            &["--cpu-above", "80", "--for", "3m", "--for", "1m"],
            "`--cpu-above 80` has more than one `--for`; give each rule its own, right after it",
        ),
        (
            &["--cpu-jump", "50", "--jump-floor", "5", "--jump-floor", "7"],
            "`--cpu-jump 50` has more than one `--jump-floor`; give each rule its own, right after it",
        ),
        (
            &["--cpu-above", "80", "--jump-window", "1m", "--for", "3m"],
            "`--jump-window 1m` applies to `--cpu-jump` and `--mem-jump`, not to `--cpu-above 80`",
        ),
        (
            &["--mem-above", "150", "--for", "1m"],
            "invalid value `150` for `--mem-above`: the percentage must be greater than 0 and at most 100; \
             for a size add a unit, e.g. `150MiB`",
        ),
        (
            &["--mem-above", "0", "--for", "1m"],
            "invalid value `0` for `--mem-above`: the percentage must be greater than 0 and at most 100",
        ),
        (
            &["--mem-above", "0MiB", "--for", "1m"],
            "invalid value `0MiB` for `--mem-above`: the size must be greater than zero, e.g. `2GiB`",
        ),
        (
            &["--mem-above", "lots", "--for", "1m"],
            "invalid value `lots` for `--mem-above`: expected a percentage of the memory limit (e.g. `80`) or a \
             size (e.g. `2GiB`): unknown size unit `lots`, use `B`, `KiB`, `MiB`, `GiB`, `TiB` or `KB`, `MB`, \
             `GB`, `TB`",
        ),
        (
            &["--cpu-jump", "0"],
            "invalid value `0` for `--cpu-jump`: the percentage must be greater than 0 and at most 10000",
        ),
        (
            &["--cpu-jump", "50", "--jump-floor", "120"],
            "invalid value `120` for `--jump-floor`: the percentage must be at least 0 and at most 100",
        ),
        (
            &["--cpu-jump", "50", "--jump-floor", "1GiB"],
            "invalid value `1GiB` for `--jump-floor`: expected a percentage of the CPUs available, e.g. `80`",
        ),
        (
            &["--sample-interval", "5s", "--cpu-above", "80", "--for", "3s"],
            "`--for 3s` of `--cpu-above 80` is shorter than the sample interval (5s); use at least `5s` or lower \
             `--sample-interval`",
        ),
        (
            &["--cpu-above", "80", "--for", "2d"],
            "`--cpu-above 80` looks at more than 1day of history, the most stackwatch keeps at a 1s sample interval",
        ),
        (
            &["--cpu-jump", "50", "--jump-window", "20h", "--for", "5h"],
            "`--cpu-jump 50` looks at more than 1day of history, the most stackwatch keeps at a 1s sample interval",
        ),
        // Each alone fits a `Duration`; their sum used to overflow (a panic).
        (
            &["--cpu-jump", "50", "--jump-window", "18446744073709551615s", "--for", "18446744073709551615s"],
            "`--cpu-jump 50` looks at more than 1day of history, the most stackwatch keeps at a 1s sample interval",
        ),
        (
            &["--mem-above", "80", "--for", "18446744073709551615s"],
            "`--mem-above 80` looks at more than 1day of history, the most stackwatch keeps at a 1s sample interval",
        ),
        (
            &["--sample-interval", "100ms", "--mem-above", "1GiB", "--for", "3h"],
            "`--mem-above 1GiB` looks at more than 2h 24m of history, the most stackwatch keeps at a 100ms sample \
             interval",
        ),
    ] {
        assert_eq!(error(argv), expected, "{argv:?}");
    }
}

#[test]
fn clap_checks_the_plain_values() {
    for (argv, expected) in [
        (&["--cooldown", "-3s"][..], "a duration cannot be negative"),
        (&["--cooldown", "soon"], "expected a number followed by a unit, e.g. `500ms`, `30s`, `3m` or `1h`"),
        (&["--sample-interval", "10ms"], "the sample interval must be between 100ms and 1m"),
        (&["--sample-interval", "5m"], "the sample interval must be between 100ms and 1m"),
    ] {
        let e = parse(argv).expect_err("should be refused");
        assert_eq!(e.kind(), ErrorKind::ValueValidation, "{argv:?}");
        let text = e.render().to_string();
        assert!(text.lines().next().unwrap_or_default().ends_with(expected), "{argv:?}: {text}");
    }
    let e = parse(&["--cpu-above"]).expect_err("a value is required");
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    let t = triggers(&["--cooldown", "30m", "--sample-interval", "500ms"]);
    assert_eq!((t.cooldown, t.sample_interval), (Some(secs(1800)), Some(Duration::from_millis(500))));
}

#[test]
fn update_keeps_what_is_not_given_again() {
    let mut t = triggers(&["--cpu-above", "80", "--for", "3m", "--cooldown", "5m"]);
    let matches = Watch::command().get_matches_from(["watch", "--sample-interval", "2s"]);
    t.update_from_arg_matches(&matches).unwrap();
    assert_eq!(t.flags, [TriggerFlag::new(FlagName::CpuAbove, "80"), TriggerFlag::new(FlagName::For, "3m")]);
    assert_eq!((t.cooldown, t.sample_interval), (Some(secs(300)), Some(secs(2))));
}

#[test]
fn words_from_a_config_file() {
    let flags = parse_trigger_words("--cpu-above 80 --for 3m\n  mem-above 2GiB for 1m").unwrap();
    assert_eq!(
        parse_rule_flags(&flags, secs(1)),
        Ok(vec![
            Rule::CpuAbove { level: CpuLevel::Percent(80.0), for_: secs(180) },
            Rule::MemAbove { threshold: Threshold::Bytes(2 << 30), for_: secs(60) },
        ])
    );
    assert_eq!(
        parse_trigger_words("--cpu-above 80 --forever 3m").unwrap_err().to_string(),
        "invalid value `--cpu-above 80 --forever 3m` for `triggers`: unknown trigger flag `--forever`"
    );
    assert_eq!(
        parse_trigger_words("cpu-above 80 for").unwrap_err().to_string(),
        "invalid value `cpu-above 80 for` for `triggers`: `for` needs a value"
    );
}

#[test]
fn rule_texts() {
    for (rule, text) in [
        (Rule::CpuAbove { level: CpuLevel::Percent(80.0), for_: secs(180) }, "cpu ≥ 80% for 3m"),
        (Rule::CpuAbove { level: CpuLevel::Percent(12.5), for_: secs(90) }, "cpu ≥ 12.5% for 1m 30s"),
        (Rule::CpuAbove { level: CpuLevel::Cores(0.9), for_: secs(180) }, "cpu ≥ 0.9 cores for 3m"),
        (Rule::CpuAbove { level: CpuLevel::Cores(1.0), for_: secs(180) }, "cpu ≥ 1 core for 3m"),
        (Rule::MemAbove { threshold: Threshold::Percent(80.0), for_: secs(180) }, "memory ≥ 80% for 3m"),
        (Rule::MemAbove { threshold: Threshold::Bytes(2 << 30), for_: secs(2) }, "memory ≥ 2GiB for 2s"),
        (Rule::MemAbove { threshold: Threshold::Bytes(2_000_000_000), for_: secs(2) }, "memory ≥ 2GB for 2s"),
        (Rule::MemAbove { threshold: Threshold::Bytes(1_234_567_890), for_: secs(2) }, "memory ≥ 1.1GiB for 2s"),
        (
            Rule::Jump {
                metric: Metric::Cpu,
                pct_over_avg: 50.0,
                window: secs(60),
                floor: Threshold::Percent(20.0),
                for_: Duration::ZERO,
            },
            "cpu ≥ +50% over its 1m average (floor 20%)",
        ),
        (
            Rule::Jump {
                metric: Metric::Mem,
                pct_over_avg: 30.0,
                window: secs(300),
                floor: Threshold::Bytes(512 << 20),
                for_: secs(10),
            },
            "memory ≥ +30% over its 5m average (floor 512MiB) for 10s",
        ),
    ] {
        assert_eq!(rule.to_string(), text);
    }
}

#[test]
fn help() {
    let mut cmd = Watch::command().term_width(100);
    insta::assert_snapshot!(cmd.render_long_help().to_string());
}

#[test]
fn cpu_above_takes_percent_or_cores() {
    let parse = |value: &str| {
        parse_rule_flags(
            &[TriggerFlag::new(FlagName::CpuAbove, value), TriggerFlag::new(FlagName::For, "3m")],
            Duration::from_secs(1),
        )
    };
    let level = |value: &str| match parse(value) {
        Ok(rules) => match rules.as_slice() {
            [Rule::CpuAbove { level, .. }] => Ok(*level),
            other => panic!("{other:?}"),
        },
        Err(e) => Err(e.to_string()),
    };
    assert_eq!(level("80"), Ok(CpuLevel::Percent(80.0)));
    assert_eq!(level("80%"), Ok(CpuLevel::Percent(80.0)));
    assert_eq!(level("0.9cores"), Ok(CpuLevel::Cores(0.9)));
    assert_eq!(level("1core"), Ok(CpuLevel::Cores(1.0)));
    assert_eq!(level("2.5 Cores"), Ok(CpuLevel::Cores(2.5)));
    assert_eq!(level("150%"), Err("invalid value `150%` for `--cpu-above`: the percentage must be greater than 0 and at most 100 (100 means all the CPUs available to the target)".to_owned()));
    assert_eq!(
        level("150"),
        Err("invalid value `150` for `--cpu-above`: a bare number is a percentage of all the CPUs available to \
             the target, at most 100; for `top`'s reading of 150% write `1.5cores`"
            .to_owned())
    );
    for ambiguous in ["0.9c", "0.9cpu", "90pct", "cores", "0cores", "-1cores"] {
        let Err(e) = level(ambiguous) else { panic!("`{ambiguous}` accepted") };
        assert!(e.starts_with(&format!("invalid value `{ambiguous}` for `--cpu-above`: ")), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    assert!(level("0.9c").unwrap_err().contains("write `80%` (of the CPUs available to the target) or `0.9cores`"));
}
