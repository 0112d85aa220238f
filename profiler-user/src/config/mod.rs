//! Validated configuration built from the command line and, for `watch`,
//! its config file ([`file`]).
//!
//! clap has already checked each value on its own; this is where the
//! arguments become the typed values the rest of the crate uses, and where
//! options that parse but cannot be honoured are refused ([`UsageError`]).

pub(crate) mod error;
pub(crate) mod file;
pub(crate) mod ops;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::error::UsageError;
use self::file::{OneOrMany, OneOrSize, WatchFile};
use crate::cli::{RecordArgs, TargetArgs, Unwind, WatchArgs};
use crate::control::DEFAULT_CONTROL_PATH;
use crate::history::HistoryConfig;
use crate::ids::Pid;
use crate::profile::format::Formats;
use crate::profile::ProfileKind;
use crate::profile::ProfileSet;
use crate::sink::retention;
use crate::target::TargetSpec;
use crate::triggers::{
    parse_rule_flags, parse_sample_interval, parse_trigger_words, TriggerArgs, TriggerConfig, DEFAULT_SAMPLE_INTERVAL,
};

/// Everything `record` needs.
#[derive(Debug)]
pub(crate) struct RecordConfig {
    pub target: TargetSpec,
    pub duration: Duration,
    pub frequency_hz: u64,
    pub output_dir: PathBuf,
    /// Distinct, in the order given.
    pub profiles: Vec<ProfileKind>,
    pub formats: Formats,
    pub unwind: Unwind,
    /// `--push`: Pyroscope, if any (no spool: `record` pushes before it exits).
    pub push: Option<crate::sink::push::PushConfig>,
}

impl RecordConfig {
    pub(crate) fn from_args(args: &RecordArgs) -> Result<Self, UsageError> {
        let mut profiles: Vec<ProfileKind> = Vec::with_capacity(args.profiles.len());
        for &kind in &args.profiles {
            if !profiles.contains(&kind) {
                profiles.push(kind);
            }
        }
        if profiles.is_empty() {
            return Err(UsageError("`--profiles` needs at least one profile kind, e.g. `cpu`".to_owned()));
        }
        let formats = Formats::parse(&args.formats)
            .map_err(|e| UsageError(format!("invalid value `{}` for `--formats`: {e}", args.formats)))?;
        Ok(Self {
            target: target_spec(&args.target),
            duration: args.duration,
            frequency_hz: args.frequency,
            output_dir: args.output_dir.clone(),
            profiles,
            formats,
            unwind: args.unwind,
            push: ops::push_config(&args.push, &WatchFile::default(), Path::new(""), &|key, reason| {
                UsageError(format!("invalid `--{key}`: {reason}"))
            })?,
        })
    }
}

/// Where `watch` writes captures unless told otherwise.
pub(crate) const DEFAULT_WATCH_OUTPUT_DIR: &str = "/var/lib/stackwatch";

/// How long a `watch` capture runs when neither `start DURATION` nor
/// `--capture-duration` says.
pub(crate) const DEFAULT_CAPTURE_DURATION: Duration = Duration::from_secs(60);

/// Everything `watch` needs: the flags, over the config file, over the defaults.
#[derive(Debug)]
pub(crate) struct WatchConfig {
    pub target: TargetSpec,
    pub control: PathBuf,
    pub output_dir: PathBuf,
    pub capture_duration: Duration,
    pub frequency_hz: u64,
    pub formats: Formats,
    pub retention: retention::Policy,
    /// What a manual capture takes: distinct, in the order given.
    pub profiles: Vec<ProfileKind>,
    /// Trigger rules (none: no sampler runs), cooldown and sample interval.
    pub triggers: TriggerConfig,
    /// How user stacks are walked.
    pub unwind: Unwind,
    /// The flight recorder, when `--history` is set.
    pub history: Option<HistoryConfig>,
    /// `--listen`: the HTTP endpoint, if any.
    pub listen: Option<ops::ListenConfig>,
    /// `[alert-targets]`: label → target template, checked by the endpoint.
    pub alert_targets: std::collections::BTreeMap<String, String>,
    /// `--push`: Pyroscope, if any.
    pub push: Option<crate::sink::push::PushConfig>,
}

impl WatchConfig {
    /// Reads `--config` (if given) and merges it under the flags.
    pub(crate) fn load(args: &WatchArgs) -> Result<Self, UsageError> {
        match &args.config {
            Some(path) => Self::merge(args, &WatchFile::load(path)?, Some(path)),
            None => Self::merge(args, &WatchFile::default(), None),
        }
    }

    /// Flags win over `file`, which wins over the defaults. `path` names the
    /// file in errors about its values.
    pub(crate) fn merge(args: &WatchArgs, file: &WatchFile, path: Option<&Path>) -> Result<Self, UsageError> {
        let bad = |key: &str, reason: String| {
            let source = path.map_or_else(String::new, |p| format!(" in config file `{}`", p.display()));
            UsageError(format!("invalid `{key}`{source}: {reason}"))
        };
        let cli_target = !args.target.pids.is_empty() || args.target.name.is_some() || args.target.cgroup.is_some();
        let target = if cli_target { target_spec(&args.target) } else { file_target(file, &bad)? };

        let capture_duration = match (args.capture_duration, &file.capture_duration) {
            (Some(d), _) => d,
            (None, Some(text)) => crate::units::parse_capture_duration(text).map_err(|e| bad("capture-duration", e))?,
            (None, None) => DEFAULT_CAPTURE_DURATION,
        };
        let frequency_hz = match (args.frequency, file.frequency) {
            (Some(hz), _) => hz,
            (None, Some(hz)) => crate::cli::parse_frequency(&hz.to_string()).map_err(|e| bad("frequency", e))?,
            (None, None) => 99,
        };
        let formats_text = match (&args.formats, &file.formats) {
            (Some(text), _) => text.clone(),
            (None, Some(list)) => list.to_vec().join(","),
            (None, None) => "pprof,svg".to_owned(),
        };
        let formats = Formats::parse(&formats_text).map_err(|e| bad("formats", e))?;
        let max_captures = match (args.max_captures, file.max_captures) {
            (Some(n), _) => Some(n),
            (None, Some(0)) => return Err(bad("max-captures", "at least one capture must be kept".to_owned())),
            (None, Some(n)) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            (None, None) => None,
        };
        let max_bytes = match (args.retain, &file.retain) {
            (Some(n), _) => Some(n),
            (None, Some(OneOrSize::Bytes(n))) => Some(*n),
            (None, Some(OneOrSize::Text(text))) => Some(crate::units::parse_size(text).map_err(|e| bad("retain", e))?),
            (None, None) => None,
        };
        if max_bytes == Some(0) {
            return Err(bad("retain", "the size must be greater than zero, e.g. `2GiB`".to_owned()));
        }
        let profiles = match (&args.profiles, &file.profiles) {
            (Some(kinds), _) => kinds.clone(),
            (None, Some(list)) => {
                let text = list.to_vec().join(",");
                ProfileSet::parse(&text).map_err(|e| bad("profiles", e))?.to_vec()
            }
            (None, None) => vec![ProfileKind::Cpu],
        };
        let mut distinct: Vec<ProfileKind> = Vec::with_capacity(profiles.len());
        for kind in profiles {
            if !distinct.contains(&kind) {
                distinct.push(kind);
            }
        }
        let triggers = trigger_config(args, file, &bad)?;
        let unwind = match (args.unwind, &file.unwind) {
            (Some(u), _) => u,
            (None, Some(text)) => <Unwind as clap::ValueEnum>::from_str(text, true)
                .map_err(|_| bad("unwind", format!("unknown mode `{text}` (expected auto, fp or tables)")))?,
            (None, None) => Unwind::Auto,
        };
        let history = history_config(args, file, &bad)?;
        let output_dir: PathBuf = args
            .output_dir
            .clone()
            .or_else(|| file.output_dir.clone())
            .unwrap_or_else(|| DEFAULT_WATCH_OUTPUT_DIR.into());
        let listen = ops::listen_config(&args.listen, file, &bad)?;
        let push = ops::push_config(&args.push, file, &output_dir.join(".push-spool"), &bad)?;
        Ok(Self {
            target,
            control: args
                .control
                .clone()
                .or_else(|| file.control.clone())
                .unwrap_or_else(|| DEFAULT_CONTROL_PATH.into()),
            output_dir,
            capture_duration,
            frequency_hz,
            formats,
            retention: retention::Policy { max_captures, max_bytes },
            profiles: distinct,
            triggers,
            unwind,
            history,
            listen,
            alert_targets: file.alert_targets.clone().unwrap_or_default(),
            push,
        })
    }
}

/// The flight recorder's settings: each flag over the file's key; `None`
/// unless `history` is set, and its companions alone are refused.
fn history_config(
    args: &WatchArgs,
    file: &WatchFile,
    bad: &dyn Fn(&str, String) -> UsageError,
) -> Result<Option<HistoryConfig>, UsageError> {
    use crate::cli::{parse_history, parse_history_frequency, parse_history_memory, parse_history_slot};
    let window = match (args.history, &file.history) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => Some(parse_history(text).map_err(|e| bad("history", e))?),
        (None, None) => None,
    };
    let frequency_hz = match (args.history_frequency, file.history_frequency) {
        (Some(hz), _) => Some(hz),
        (None, Some(hz)) => Some(parse_history_frequency(&hz.to_string()).map_err(|e| bad("history-frequency", e))?),
        (None, None) => None,
    };
    let memory_bytes = match (args.history_memory, &file.history_memory) {
        (Some(n), _) => Some(n),
        (None, Some(OneOrSize::Bytes(n))) => {
            Some(parse_history_memory(&n.to_string()).map_err(|e| bad("history-memory", e))?)
        }
        (None, Some(OneOrSize::Text(t))) => Some(parse_history_memory(t).map_err(|e| bad("history-memory", e))?),
        (None, None) => None,
    };
    let slot = match (args.history_slot, &file.history_slot) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => Some(parse_history_slot(text).map_err(|e| bad("history-slot", e))?),
        (None, None) => None,
    };
    let Some(window) = window else {
        if frequency_hz.is_some() || memory_bytes.is_some() || slot.is_some() {
            return Err(UsageError(
                "`--history-frequency`, `--history-memory` and `--history-slot` need `--history DURATION` \
                 (e.g. `--history 10m`)"
                    .to_owned(),
            ));
        }
        return Ok(None);
    };
    Ok(Some(HistoryConfig {
        window,
        frequency_hz: frequency_hz.unwrap_or(crate::history::DEFAULT_FREQUENCY_HZ),
        memory_bytes: memory_bytes.unwrap_or(crate::history::DEFAULT_MEMORY_BYTES),
        slot: slot.unwrap_or(crate::history::DEFAULT_SLOT),
    }))
}

/// The trigger rules: the flags' if any were given, else the file's
/// `triggers`; `--cooldown` and `--sample-interval` each over the file's.
/// A bad rule is a usage error, as for every other flag.
fn trigger_config(
    args: &WatchArgs,
    file: &WatchFile,
    bad: &dyn Fn(&str, String) -> UsageError,
) -> Result<TriggerConfig, UsageError> {
    let cooldown = match (args.triggers.cooldown, &file.cooldown) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => Some(crate::units::parse_cooldown(text).map_err(|e| bad("cooldown", e))?),
        (None, None) => None,
    };
    let sample_interval = match (args.triggers.sample_interval, &file.sample_interval) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => Some(parse_sample_interval(text).map_err(|e| bad("sample-interval", e))?),
        (None, None) => None,
    };
    if !args.triggers.flags.is_empty() || file.triggers.is_none() {
        let args = TriggerArgs { flags: args.triggers.flags.clone(), cooldown, sample_interval };
        return TriggerConfig::from_args(&args).map_err(|e| UsageError(e.to_string()));
    }
    // Each string of the file is one rule with its modifiers: checked on its
    // own, so a stray `for 3m` cannot attach to the rule of the string before.
    let interval = sample_interval.unwrap_or(DEFAULT_SAMPLE_INTERVAL);
    let mut flags = Vec::new();
    for text in file.triggers.as_ref().map(OneOrMany::to_vec).unwrap_or_default() {
        let words = parse_trigger_words(&text).map_err(|e| bad("triggers", e.to_string()))?;
        parse_rule_flags(&words, interval).map_err(|e| bad("triggers", format!("`{text}`: {e}")))?;
        flags.extend(words);
    }
    TriggerConfig::from_args(&TriggerArgs { flags, cooldown, sample_interval })
        .map_err(|e| bad("triggers", e.to_string()))
}

/// The target the config file names (at most one of `pid`, `name`, `cgroup`).
fn file_target(file: &WatchFile, bad: &dyn Fn(&str, String) -> UsageError) -> Result<TargetSpec, UsageError> {
    let set = [file.pid.is_some(), file.name.is_some(), file.cgroup.is_some()].iter().filter(|&&b| b).count();
    if set > 1 {
        return Err(bad("pid/name/cgroup", "more than one target is set; keep one of them".to_owned()));
    }
    if let Some(pids) = &file.pid {
        let pids = pids.to_vec();
        if pids.is_empty() || pids.contains(&0) {
            return Err(bad("pid", "expected process ids such as `1234` or `[1234, 5678]`".to_owned()));
        }
        return Ok(TargetSpec::Pids(pids.into_iter().map(Pid::new).collect()));
    }
    if let Some(name) = &file.name {
        let re = crate::cli::parse_regex(name).map_err(|e| bad("name", e))?;
        return Ok(TargetSpec::Name(re));
    }
    if let Some(cgroup) = &file.cgroup {
        return Ok(TargetSpec::Cgroup(cgroup.clone()));
    }
    Ok(TargetSpec::Host)
}

/// clap's argument group already guarantees at most one target option.
pub(crate) fn target_spec(args: &TargetArgs) -> TargetSpec {
    if let Some(re) = &args.name {
        TargetSpec::Name(re.clone())
    } else if let Some(path) = &args.cgroup {
        TargetSpec::Cgroup(path.clone())
    } else if !args.pids.is_empty() {
        TargetSpec::Pids(args.pids.clone())
    } else {
        TargetSpec::Host
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use std::path::Path;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::ids::Pid;

    fn config(args: &[&str]) -> Result<RecordConfig, UsageError> {
        let argv = ["stackwatch", "record"].into_iter().chain(args.iter().copied());
        match Cli::try_parse_from(argv).expect("valid command line").command {
            Command::Record(args) => RecordConfig::from_args(&args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.target, TargetSpec::Host));
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.frequency_hz, 99);
        assert_eq!(c.output_dir, PathBuf::from("."));
        assert_eq!(c.profiles, vec![ProfileKind::Cpu]);
        assert_eq!(c.formats, Formats { pprof: true, svg: true, folded: false });
    }

    #[test]
    fn targets() {
        assert!(
            matches!(config(&["--pid", "7", "--pid", "8"]).unwrap().target, TargetSpec::Pids(p) if p == [7, 8].map(Pid::new))
        );
        assert!(
            matches!(config(&["--name", "^redis"]).unwrap().target, TargetSpec::Name(re) if re.as_str() == "^redis")
        );
        assert!(
            matches!(config(&["--cgroup", "a.slice"]).unwrap().target, TargetSpec::Cgroup(p) if p == Path::new("a.slice"))
        );
    }

    #[test]
    fn profiles_are_deduplicated() {
        assert_eq!(config(&["--profiles", "cpu,CPU, cpu"]).unwrap().profiles, vec![ProfileKind::Cpu]);
    }

    #[test]
    fn every_profile_kind_is_accepted_in_order() {
        assert_eq!(
            config(&["--profiles", "memory,cpu,offcpu,cpu"]).unwrap().profiles,
            vec![ProfileKind::Memory, ProfileKind::Cpu, ProfileKind::OffCpu]
        );
    }

    #[test]
    fn history_is_off_unless_set_and_its_companions_need_it() {
        use crate::history::HistoryConfig;
        assert_eq!(watch(&[], "").unwrap().history, None);
        let on = watch(&["--history", "10m"], "").unwrap().history;
        assert_eq!(
            on,
            Some(HistoryConfig {
                window: Duration::from_secs(600),
                frequency_hz: 19,
                memory_bytes: 32 << 20,
                slot: Duration::from_secs(10),
            })
        );
        // The file, and flags over the file.
        let file = "history = \"5m\"\nhistory-frequency = 7\nhistory-memory = \"4MiB\"\n";
        let h = watch(&[], file).unwrap().history.unwrap();
        assert_eq!((h.window, h.frequency_hz, h.memory_bytes), (Duration::from_secs(300), 7, 4 << 20));
        let h = watch(&["--history-frequency", "29"], file).unwrap().history.unwrap();
        assert_eq!(h.frequency_hz, 29);
        // Alone, a companion is refused with the fix.
        let err = watch(&["--history-memory", "8MiB"], "").unwrap_err();
        assert!(err.0.contains("need `--history DURATION`"), "{}", err.0);
        let err = watch(&[], "history = \"10m\"\nhistory-memory = \"1KiB\"\n").unwrap_err();
        assert!(err.0.contains("invalid `history-memory`") && err.0.contains("at least 1MiB"), "{}", err.0);
    }

    fn watch(args: &[&str], file: &str) -> Result<WatchConfig, UsageError> {
        let argv = ["stackwatch", "watch"].into_iter().chain(args.iter().copied());
        let Command::Watch(args) = Cli::try_parse_from(argv).expect("valid command line").command else {
            panic!("not watch")
        };
        let file = WatchFile::parse(file).expect("valid TOML");
        WatchConfig::merge(&args, &file, Some(Path::new("/etc/stackwatch/watch.toml")))
    }

    #[test]
    fn unwind_mode_from_flag_file_and_default() {
        assert_eq!(watch(&[], "").unwrap().unwind, Unwind::Auto);
        assert_eq!(watch(&[], "unwind = \"fp\"").unwrap().unwind, Unwind::Fp);
        assert_eq!(watch(&["--unwind", "tables"], "unwind = \"fp\"").unwrap().unwind, Unwind::Tables);
        let err = watch(&[], "unwind = \"dwarf\"").unwrap_err();
        assert!(err.0.contains("unknown mode `dwarf` (expected auto, fp or tables)"), "{err}");
        assert_eq!(config(&[]).unwrap().unwind, Unwind::Auto);
        assert_eq!(config(&["--unwind", "fp"]).unwrap().unwind, Unwind::Fp);
    }

    #[test]
    fn watch_defaults() {
        let c = watch(&[], "").unwrap();
        assert!(matches!(c.target, TargetSpec::Host));
        assert_eq!(c.control, PathBuf::from("/run/stackwatch/control"));
        assert_eq!(c.output_dir, PathBuf::from("/var/lib/stackwatch"));
        assert_eq!(c.capture_duration, Duration::from_secs(60));
        assert_eq!(c.frequency_hz, 99);
        assert_eq!(c.formats, Formats::default());
        assert_eq!(c.retention, retention::Policy::default());
    }

    #[test]
    fn watch_flags_override_the_file() {
        let file = r#"
            name = "^redis"
            output-dir = "/srv/p"
            capture-duration = "2m"
            frequency = 49
            formats = ["pprof"]
            max-captures = 5
            retain = "1MiB"
        "#;
        let c = watch(&[], file).unwrap();
        assert!(matches!(&c.target, TargetSpec::Name(re) if re.as_str() == "^redis"));
        assert_eq!(c.output_dir, PathBuf::from("/srv/p"));
        assert_eq!(c.capture_duration, Duration::from_secs(120));
        assert_eq!(c.frequency_hz, 49);
        assert_eq!(c.formats, Formats { pprof: true, svg: false, folded: false });
        assert_eq!(c.retention, retention::Policy { max_captures: Some(5), max_bytes: Some(1 << 20) });

        let c =
            watch(&["--pid", "9", "--output-dir", "/tmp/o", "--capture-duration", "5s", "--max-captures", "2"], file)
                .unwrap();
        assert!(matches!(&c.target, TargetSpec::Pids(p) if p == &[Pid::new(9)]));
        assert_eq!(c.output_dir, PathBuf::from("/tmp/o"));
        assert_eq!(c.capture_duration, Duration::from_secs(5));
        assert_eq!(c.retention.max_captures, Some(2));
        assert_eq!(c.retention.max_bytes, Some(1 << 20), "unset flags keep the file's value");
    }

    #[test]
    fn watch_file_values_are_validated_like_flags() {
        let msg = |file: &str| watch(&[], file).unwrap_err().0;
        assert_eq!(
            msg("frequency = 0"),
            "invalid `frequency` in config file `/etc/stackwatch/watch.toml`: the frequency must be between 1 and \
             10000 Hz; faster sampling mostly measures the profiler itself"
        );
        assert!(msg("capture-duration = \"30\"").contains("a unit is required"));
        assert!(msg("capture-duration = \"3d\"").contains("captures are limited to 1day"));
        assert!(msg("max-captures = 0").contains("at least one capture must be kept"));
        assert!(msg("retain = \"lots\"").starts_with("invalid `retain`"));
        assert!(msg("retain = 0").contains("greater than zero"));
        assert!(msg("formats = \"png\"").contains("unknown output format `png`"));
        for list in ["formats = \"pprof,,svg\"", "formats = [\"pprof\", \"\"]", "formats = []", "profiles = \"cpu,\""] {
            assert!(msg(list).contains("the list has an empty item"), "{list}: {}", msg(list));
        }
        assert!(msg("name = \"\"").contains("an empty pattern matches every process"));
        assert!(msg("pid = 1\nname = \"x\"").contains("more than one target"));
        assert!(msg("pid = 0").starts_with("invalid `pid`"));
        let regex = msg("name = \"(\"");
        assert!(regex.ends_with("not a valid regular expression: unclosed group") && !regex.contains('\n'), "{regex}");
        let flag = Cli::try_parse_from(["stackwatch", "watch", "--capture-duration", "25h"]).unwrap_err();
        assert!(flag.to_string().contains("captures are limited to 1day"), "{flag}");
        assert!(msg("capture-duration = \"18446744073709551615s\"").contains("captures are limited to 1day"));
        assert!(msg("capture-duration = \"1ms\"").contains("captures last at least 10ms"));
        assert!(msg("cooldown = \"18446744073709551615s\"").contains("the cooldown must be between 1s and 7days"));
        assert!(msg("cooldown = \"0s\"").contains("greater than zero"));
        assert!(msg("sample-interval = \"18446744073709551615s\"").contains("between 100ms and 1m"));
        assert!(msg("frequency = 18446744073709551615").contains("between 1 and 10000 Hz"));
        let text = msg("triggers = \"cpu-jump 50 jump-window 18446744073709551615s for 18446744073709551615s\"");
        assert!(text.contains("looks at more than 1day of history"), "{text}");
    }

    #[test]
    fn watch_triggers_and_profiles_from_flags_and_file() {
        let c = watch(&[], "").unwrap();
        assert!(c.triggers.rules.is_empty());
        assert_eq!(c.triggers.cooldown, Duration::from_secs(600));
        assert_eq!(c.triggers.sample_interval, Duration::from_secs(1));
        assert_eq!(c.profiles, [ProfileKind::Cpu]);
        let rules = |c: &WatchConfig| c.triggers.rules.iter().map(ToString::to_string).collect::<Vec<_>>();

        let file = r#"
            triggers = ["cpu-above 80 for 3m", "--mem-above 2GiB --for 1m"]
            cooldown = "30m"
            sample-interval = "500ms"
            profiles = ["cpu", "offcpu,cpu"]
        "#;
        let c = watch(&[], file).unwrap();
        assert_eq!(rules(&c), ["cpu ≥ 80% for 3m", "memory ≥ 2GiB for 1m"]);
        assert_eq!(c.triggers.cooldown, Duration::from_secs(1800));
        assert_eq!(c.triggers.sample_interval, Duration::from_millis(500));
        assert_eq!(c.profiles, [ProfileKind::Cpu, ProfileKind::OffCpu]);

        // Rule flags replace the file's rules as a whole; other settings one by one.
        let c =
            watch(&["--cpu-above", "50", "--for", "10s", "--cooldown", "1m", "--profiles", "memory,cpu,memory"], file)
                .unwrap();
        assert_eq!(rules(&c), ["cpu ≥ 50% for 10s"]);
        assert_eq!(c.triggers.cooldown, Duration::from_secs(60));
        assert_eq!(c.triggers.sample_interval, Duration::from_millis(500));
        assert_eq!(c.profiles, [ProfileKind::Memory, ProfileKind::Cpu]);
    }

    #[test]
    fn the_packaged_config_file_is_valid_with_and_without_its_rules() {
        let text = include_str!("../../../packaging/watch.toml");
        let c = watch(&[], text).unwrap();
        assert_eq!(c.profiles, [ProfileKind::Cpu]);
        assert!(c.triggers.rules.is_empty());
        let c = watch(&[], &text.replace("#triggers = ", "triggers = ").replace("#cooldown", "cooldown")).unwrap();
        assert_eq!(c.triggers.rules.len(), 2);
    }

    #[test]
    fn bad_rules_are_usage_errors() {
        let msg = |args: &[&str], file: &str| watch(args, file).unwrap_err().0;
        let text = msg(&["--cpu-above", "140", "--for", "3s"], "");
        assert!(text.starts_with("invalid value `140` for `--cpu-above`: "), "{text}");
        let text = msg(&["--cpu-above", "80", "--for", "-3s"], "");
        assert!(text.starts_with("invalid value `-3s` for `--for`: a duration cannot be negative"), "{text}");
        assert!(msg(&["--for", "3m"], "").contains("must follow the rule it applies to"));
        // Each string of the file is a rule of its own.
        let text = msg(&[], r#"triggers = ["cpu-above 80", "for 3m"]"#);
        assert!(
            text.starts_with("invalid `triggers` in config file `/etc/stackwatch/watch.toml`: `cpu-above 80`: "),
            "{text}"
        );
        assert!(msg(&[], r#"triggers = "gpu-above 3""#).contains("unknown trigger flag `gpu-above`"));
        assert!(msg(&[], "cooldown = \"soon\"").starts_with("invalid `cooldown`"));
        assert!(msg(&[], "sample-interval = \"10ms\"").contains("between 100ms and 1m"));
        assert!(msg(&[], "profiles = \"gpu\"").contains("unknown profile kind `gpu`"));
    }

    #[test]
    fn formats() {
        let c = config(&["--formats", "pprof,svg,folded"]).unwrap();
        assert_eq!(c.formats, Formats { pprof: true, svg: true, folded: true });
        let err = config(&["--formats", "png"]).unwrap_err();
        assert!(err.0.starts_with("invalid value `png` for `--formats`: "), "{err}");
        // An empty item is refused like `--profiles cpu,` and `--pid 1,,2`.
        let err = config(&["--formats", "pprof,,svg"]).unwrap_err();
        assert!(err.0.starts_with("invalid value `pprof,,svg` for `--formats`: the list has an empty item"), "{err}");
        assert_eq!(config(&["--formats", " pprof , svg "]).unwrap().formats, Formats::default());
    }
}
