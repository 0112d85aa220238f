//! The command line, as clap parses it.
//!
//! Values that clap can check on its own (durations, the frequency range, the
//! profile kind words, the regex) are checked here, so a bad one is a clap
//! usage error (exit code 2) naming the flag. Cross-field rules and
//! "understood but not implemented" live in [`crate::config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use regex::Regex;

use crate::profile::ProfileKind;
use crate::units::parse_duration;

/// Sampling frequencies above this cost more than they tell: each sample runs
/// the BPF program and walks two stacks on every CPU, so at 10 kHz the
/// profiler is a visible part of what it measures. The kernel also lowers
/// `kernel.perf_event_max_sample_rate` on its own when sampling gets expensive.
pub const MAX_FREQUENCY_HZ: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "stackwatch",
    version,
    about = "An eBPF sampling profiler that writes pprof profiles and flamegraphs",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log more: `-v` for debug, `-vv` for trace. `RUST_LOG`, when set, takes precedence.
    #[arg(short, long, action = ArgAction::Count, global = true, display_order = 900)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Profile a target for a while and write pprof and flamegraph files
    #[command(
        long_about = "Profile a target for a while and write pprof and flamegraph files.\n\n\
                      The target is one of --pid, --name or --cgroup; without one, the whole host \
                      is profiled. Recording ends after --duration or at Ctrl-C/SIGTERM, and \
                      always writes what it collected.",
        after_long_help = RECORD_EXAMPLES
    )]
    Record(RecordArgs),
    /// Check that this host can run stackwatch and say what is missing
    #[command(long_about = "Check that this host can run stackwatch and say what is missing.\n\n\
                      Checks the kernel version, privileges and capabilities, BTF, the bpf() and \
                      perf_event_open() system calls and the sysctls that restrict them. Exits \
                      with 0 when everything `record` needs is there, 1 otherwise.")]
    Doctor(DoctorArgs),
}

const RECORD_EXAMPLES: &str = "\
Examples:
  sudo stackwatch record --pid 1234 --duration 10s
  sudo stackwatch record --name '^nginx' --formats pprof,svg,folded
  sudo stackwatch record --cgroup system.slice/foo.service --output-dir /tmp/profiles
  sudo stackwatch record                          # the whole host for 30s";

/// What to profile. At most one of these; none means the whole host.
#[derive(Args, Debug, Clone, Default)]
#[group(id = "target", multiple = false)]
pub struct TargetArgs {
    /// Profile this process (repeat, or separate with commas, for several)
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',', value_parser = parse_pid)]
    pub pids: Vec<u32>,

    /// Profile processes whose name or command line matches REGEX, looked up again while
    /// recording so restarted processes are followed
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub name: Option<Regex>,

    /// Profile every process in this cgroup v2 directory and below it: a path under the
    /// cgroup2 mount, or relative to it (e.g. `system.slice/foo.service`)
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// How long to record (e.g. 500ms, 30s, 3m); Ctrl-C ends it early and still writes the files
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration,
        allow_hyphen_values = true
    )]
    pub duration: Duration,

    /// Samples per second per CPU, 1 to 10000: faster sampling mostly measures the profiler
    /// itself. The default, 99, stays out of lockstep with work that runs at round rates
    #[arg(
        long,
        value_name = "HZ",
        default_value_t = 99,
        value_parser = parse_frequency,
        allow_hyphen_values = true
    )]
    pub frequency: u64,

    /// Directory the files are written to
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output_dir: PathBuf,

    /// Profiles to take, comma-separated: cpu (offcpu and memory are not supported yet)
    #[arg(
        long,
        value_name = "KINDS",
        default_value = "cpu",
        value_delimiter = ',',
        value_parser = parse_profile_kind
    )]
    pub profiles: Vec<ProfileKind>,

    /// File formats to write, comma-separated: pprof, svg, folded
    #[arg(long, value_name = "FORMATS", default_value = "pprof,svg")]
    pub formats: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DoctorArgs {}

/// `--name`: a regex, with regex's multi-line diagnostic cut to its last line.
fn parse_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| {
        let text = e.to_string();
        let reason = text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(&text).to_owned();
        format!("not a valid regular expression: {reason}")
    })
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("0 is not a process id; process ids start at 1".to_owned()),
        Ok(pid) => Ok(pid),
        Err(_) => Err("expected a process id, a whole number such as `1234`".to_owned()),
    }
}

fn parse_frequency(s: &str) -> Result<u64, String> {
    let hz: u64 =
        s.trim().parse().map_err(|_| "expected a whole number of samples per second, e.g. `99`".to_owned())?;
    if !(1..=MAX_FREQUENCY_HZ).contains(&hz) {
        return Err(format!(
            "the frequency must be between 1 and {MAX_FREQUENCY_HZ} Hz; faster sampling mostly measures the profiler itself"
        ));
    }
    Ok(hz)
}

fn parse_profile_kind(s: &str) -> Result<ProfileKind, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(ProfileKind::Cpu),
        "offcpu" | "off-cpu" => Ok(ProfileKind::OffCpu),
        "memory" | "mem" => Ok(ProfileKind::Memory),
        other => Err(format!("unknown profile kind `{other}` (expected cpu, offcpu or memory)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stackwatch").chain(args.iter().copied()))
    }

    fn record(args: &[&str]) -> RecordArgs {
        let args: Vec<&str> = std::iter::once("record").chain(args.iter().copied()).collect();
        match parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Command::Record(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// clap's message for a rejected command line, without the usage and
    /// "for more information" lines.
    fn error(args: &[&str]) -> (ErrorKind, String) {
        let e = parse(args).expect_err("should be refused");
        let text = e.render().to_string();
        (e.kind(), text.lines().next().unwrap_or_default().to_owned())
    }

    /// The text `stackwatch <args> --help` prints on a 100-column terminal.
    fn help(args: &[&str]) -> String {
        let argv = std::iter::once("stackwatch").chain(args.iter().copied()).chain(["--help"]);
        let e = Cli::command().term_width(100).try_get_matches_from(argv).expect_err("help");
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        e.render().to_string()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn record_defaults() {
        let r = record(&[]);
        assert!(r.target.pids.is_empty() && r.target.name.is_none() && r.target.cgroup.is_none());
        assert_eq!(r.duration, Duration::from_secs(30));
        assert_eq!(r.frequency, 99);
        assert_eq!(r.output_dir, PathBuf::from("."));
        assert_eq!(r.profiles, vec![ProfileKind::Cpu]);
        assert_eq!(r.formats, "pprof,svg");
    }

    #[test]
    fn record_values() {
        let r = record(&[
            "--pid",
            "1",
            "--pid",
            "22",
            "--duration",
            "1m",
            "--frequency",
            "997",
            "--output-dir",
            "/tmp/x",
            "--profiles",
            "cpu,offcpu",
            "--formats",
            "folded",
        ]);
        assert_eq!(r.target.pids, vec![1, 22]);
        assert_eq!(record(&["--pid", "3,4", "--pid", "5"]).target.pids, vec![3, 4, 5]);
        assert_eq!(r.duration, Duration::from_secs(60));
        assert_eq!(r.frequency, 997);
        assert_eq!(r.output_dir, PathBuf::from("/tmp/x"));
        assert_eq!(r.profiles, vec![ProfileKind::Cpu, ProfileKind::OffCpu]);
        assert_eq!(r.formats, "folded");

        let r = record(&["--name", "^nginx", "--duration=500ms"]);
        assert_eq!(r.target.name.map(|re| re.to_string()).as_deref(), Some("^nginx"));
        assert_eq!(r.duration, Duration::from_millis(500));

        let r = record(&["--cgroup", "system.slice/foo.service"]);
        assert_eq!(r.target.cgroup, Some(PathBuf::from("system.slice/foo.service")));
    }

    #[test]
    fn verbose_is_global() {
        assert_eq!(parse(&["-vv", "doctor"]).unwrap().verbose, 2);
        assert_eq!(parse(&["record", "-v"]).unwrap().verbose, 1);
    }

    #[test]
    fn targets_are_mutually_exclusive() {
        for args in [
            &["record", "--pid", "1", "--name", "x"][..],
            &["record", "--name", "x", "--cgroup", "y"],
            &["record", "--pid", "1", "--cgroup", "y"],
        ] {
            let (kind, message) = error(args);
            assert_eq!(kind, ErrorKind::ArgumentConflict, "{args:?}");
            assert!(message.contains("cannot be used with"), "{message}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for (args, expected) in [
            (
                &["record", "--duration", "-3s"][..],
                "error: invalid value '-3s' for '--duration <DURATION>': a duration cannot be negative",
            ),
            (
                &["record", "--duration=-3s"],
                "error: invalid value '-3s' for '--duration <DURATION>': a duration cannot be negative",
            ),
            (
                &["record", "--duration", "0s"],
                "error: invalid value '0s' for '--duration <DURATION>': a duration must be greater than zero",
            ),
            (
                &["record", "--duration", "30"],
                "error: invalid value '30' for '--duration <DURATION>': a unit is required, e.g. `30s` or `30ms`",
            ),
            (
                &["record", "--frequency", "0"],
                "error: invalid value '0' for '--frequency <HZ>': the frequency must be between 1 and 10000 Hz; \
                 faster sampling mostly measures the profiler itself",
            ),
            (
                &["record", "--frequency", "-5"],
                "error: invalid value '-5' for '--frequency <HZ>': expected a whole number of samples per second, e.g. `99`",
            ),
            (
                &["record", "--frequency", "20000"],
                "error: invalid value '20000' for '--frequency <HZ>': the frequency must be between 1 and 10000 Hz; \
                 faster sampling mostly measures the profiler itself",
            ),
            (
                &["record", "--pid", "0"],
                "error: invalid value '0' for '--pid <PID>': 0 is not a process id; process ids start at 1",
            ),
            (
                &["record", "--pid", "nginx"],
                "error: invalid value 'nginx' for '--pid <PID>': expected a process id, a whole number such as `1234`",
            ),
            (
                &["record", "--name", "(unclosed"],
                "error: invalid value '(unclosed' for '--name <REGEX>': not a valid regular expression: unclosed group",
            ),
            (
                &["record", "--profiles", "cpu,gpu"],
                "error: invalid value 'gpu' for '--profiles <KINDS>': unknown profile kind `gpu` (expected cpu, offcpu or memory)",
            ),
        ] {
            let (kind, message) = error(args);
            assert_eq!(message, expected, "{args:?}");
            assert_eq!(kind, ErrorKind::ValueValidation, "{args:?}");
        }
    }

    #[test]
    fn usage_errors_exit_with_2() {
        let e = parse(&["record", "--duration", "-3s"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        // `watch` and `ctl` come later.
        assert_eq!(parse(&["watch"]).unwrap_err().kind(), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn record_help() {
        insta::assert_snapshot!(help(&["record"]));
    }

    #[test]
    fn doctor_help() {
        insta::assert_snapshot!(help(&["doctor"]));
    }

    #[test]
    fn top_level_help() {
        insta::assert_snapshot!(help(&[]));
    }
}
