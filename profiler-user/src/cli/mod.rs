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

mod man;
pub(crate) mod ops;
mod top;
pub(crate) mod triggers;

pub use man::write_man_pages;
pub use top::TopArgs;

use self::ops::{ListenArgs, PushArgs};
use crate::ids::Pid;
use crate::profile::diff::read::SampleIndex;
use crate::profile::ProfileKind;
use crate::profile::ProfileSet;
use crate::triggers::TriggerArgs;
use crate::units::{parse_capture_duration, parse_ctl_timeout};

/// Sampling frequencies above this cost more than they tell: each sample runs
/// the BPF program and walks two stacks on every CPU, so at 10 kHz the
/// profiler is a visible part of what it measures. The kernel also lowers
/// `kernel.perf_event_max_sample_rate` on its own when sampling gets expensive.
pub(crate) const MAX_FREQUENCY_HZ: u64 = 10_000;

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
                      with 0 when everything `record` needs is there, 1 otherwise.\n\n\
                      With --pid, checks one process instead: the runtime detected (Go, CPython, \
                      Node.js, a JVM, native code), whether its code keeps frame pointers, unwind \
                      tables, symbols, debug files and a JIT perf map, and what to change in the \
                      target so its stacks are whole and named.")]
    Doctor(DoctorArgs),
    /// Run as a daemon that captures on command (FIFO, SIGUSR2, `ctl`) or when a trigger fires
    #[command(
        long_about = "Run as a daemon that captures on demand or when a trigger rule fires.\n\n\
                      The eBPF programs are loaded and verified once at start; while idle nothing \
                      is sampled. A capture starts and stops with a command written to the control \
                      FIFO (`echo toggle > /run/stackwatch/control`), with SIGUSR2 (toggle) or with \
                      `stackwatch ctl`, and ends by itself after --capture-duration. With trigger \
                      rules (--cpu-above, --mem-above, --cpu-jump, --mem-jump), the target's CPU \
                      and memory are read every --sample-interval and a rule that holds starts a \
                      capture by itself, at most once per --cooldown. Every capture writes pprof \
                      and flamegraph files, and a manifest saying why it ran, to --output-dir. \
                      SIGTERM or SIGINT writes the running capture and exits.",
        after_long_help = WATCH_EXAMPLES
    )]
    Watch(Box<WatchArgs>),
    /// Send a command to a running `stackwatch watch` and report the outcome
    #[command(long_about = "Send a command to a running `stackwatch watch` and report the outcome.\n\n\
                      `ctl` talks to the socket next to the control FIFO (`<control>.sock`) and \
                      prints the daemon's answer, including the files a `stop` wrote. It exits with \
                      1 when the command fails or no daemon answers.")]
    Ctl(CtlArgs),
    /// Show the hottest functions live, refreshed on a terminal (q quits)
    #[command(long_about = "Show the hottest functions live, refreshed on a terminal; q or Ctrl-C quits.\n\n\
                      One row per process and function: %Own and %Total are shares of the samples \
                      of the last --interval (the function itself, and with what it calls), OwnTime \
                      and TotalTime add up since the start, and rows are sorted by recent own time. \
                      The target is one of --pid, --name or --cgroup; without one, the whole host. \
                      Where stdout is not a terminal, --once prints one table after one interval.")]
    Top(TopArgs),
    /// Print every thread's current kernel and user stack of one process, once
    #[command(
        long_about = "Print every thread's current kernel and user stack of one process, once.\n\n\
                      For a process that hangs: each thread's name and state, the kernel function \
                      it waits in and its kernel stack (where it blocks), and its user stack (who \
                      called), with Python frames for CPython 3.8-3.13. Each thread is stopped only \
                      while its registers and the top of its stack are copied (microseconds; the \
                      longest stop is printed), one thread at a time. Needs root or CAP_SYS_PTRACE.",
        after_long_help = "Examples:\n  sudo stackwatch dump --pid 1234\n  sudo stackwatch dump --pid 1234 --json | jq '.threads[].kernel_stack[0]'"
    )]
    Dump(DumpArgs),
    /// Compare two pprof profiles: what grew, what shrank, and a differential flamegraph
    #[command(
        long_about = "Compare two pprof profiles: the functions that grew and shrank most, and a \
                      differential flamegraph.\n\n\
                      BASE and NEW are pprof files of the same sample type, gzip-compressed or not: \
                      stackwatch's captures, or Go's own profiles (runtime/pprof, net/http/pprof). \
                      Each function's flat share (its own samples) and cumulative share (with its \
                      callees) are taken of its profile's total, so profiles of different lengths \
                      compare; the top growers are printed first, then the top shrinkers. With -o, \
                      a differential flamegraph is written too: widths are NEW's, colors the change \
                      (red grew, blue shrank). No root needed.",
        after_long_help = DIFF_EXAMPLES
    )]
    Diff(DiffArgs),
    /// Write the manual pages into DIR (for packaging: `cargo xtask man`)
    #[command(name = "generate-man", hide = true)]
    GenerateMan {
        /// Where to write `stackwatch.1` and a page per subcommand
        dir: PathBuf,
    },
}

/// `dump`.
#[derive(Args, Debug, Clone)]
pub struct DumpArgs {
    /// The process to dump
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub(crate) pid: Pid,

    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

const RECORD_EXAMPLES: &str = "\
Examples:
  sudo stackwatch record --pid 1234 --duration 10s
  sudo stackwatch record --name '^nginx' --formats pprof,svg,folded
  sudo stackwatch record --cgroup system.slice/foo.service --output-dir /tmp/profiles
  sudo stackwatch record                          # the whole host for 30s";

const WATCH_EXAMPLES: &str = "\
Examples:
  sudo stackwatch watch --pid 1234                 # then: echo toggle > /run/stackwatch/control
  sudo stackwatch watch --name '^order-service' --max-captures 50 --retain 2GiB
  sudo stackwatch watch --name '^order-service' --cpu-above 80 --for 3m --mem-above 2GiB --for 1m
  sudo stackwatch watch --cgroup system.slice/foo.service --cpu-jump 50 --cooldown 30m
  sudo stackwatch watch --config /etc/stackwatch/watch.toml
  sudo kill -USR2 $(pidof stackwatch)              # toggle a capture";

const DIFF_EXAMPLES: &str = "\
Examples:
  stackwatch diff before.pb.gz after.pb.gz
  stackwatch diff before.pb.gz after.pb.gz -o diff.svg --top 20
  stackwatch diff heap-1.pb.gz heap-2.pb.gz --sample-index inuse_space
  curl -so now.pb.gz 'http://localhost:6060/debug/pprof/profile?seconds=30'
  stackwatch diff baseline.pb.gz now.pb.gz --cum";

/// What to profile. At most one of these; none means the whole host.
#[derive(Args, Debug, Clone, Default)]
#[group(id = "target", multiple = false)]
pub(crate) struct TargetArgs {
    /// Profile this process (repeat, or separate with commas, for several)
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',', value_parser = parse_pid)]
    pub(crate) pids: Vec<Pid>,

    /// Profile processes whose name or command line matches REGEX, looked up again while
    /// recording so restarted processes are followed
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub(crate) name: Option<Regex>,

    /// Profile every process in this cgroup v2 directory and below it: a path under the
    /// cgroup2 mount, or relative to it (e.g. `system.slice/foo.service`)
    #[arg(long, value_name = "PATH")]
    pub(crate) cgroup: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// How long to record, 10ms to 24h (e.g. 500ms, 30s, 3m); Ctrl-C ends it early and still
    /// writes the files
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_capture_duration,
        allow_hyphen_values = true
    )]
    pub(crate) duration: Duration,

    /// Samples per second per CPU, 1 to 10000: faster sampling mostly measures the profiler
    /// itself. The default, 99, stays out of lockstep with work that runs at round rates
    #[arg(
        long,
        value_name = "HZ",
        default_value_t = 99,
        value_parser = parse_frequency,
        allow_hyphen_values = true
    )]
    pub(crate) frequency: u64,

    /// Directory the files are written to
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) output_dir: PathBuf,

    /// Profiles to take, comma-separated: cpu (on-CPU samples), offcpu (time blocked, by stack), memory
    /// (sampled malloc and Go allocations with bytes, and page faults, by stack)
    #[arg(
        long,
        value_name = "KINDS",
        default_value = "cpu",
        value_delimiter = ',',
        value_parser = parse_profile_kind
    )]
    pub(crate) profiles: Vec<ProfileKind>,

    /// File formats to write, comma-separated: pprof, svg, folded
    #[arg(long, value_name = "FORMATS", default_value = "pprof,svg")]
    pub(crate) formats: String,

    /// How user stacks are walked: auto (unwind tables from .eh_frame where loaded, frame pointers
    /// elsewhere), fp (frame pointers only, as the kernel walks them), tables (unwind tables only:
    /// code without one ends its stack in a [truncated] frame)
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Unwind::Auto)]
    pub(crate) unwind: Unwind,

    #[command(flatten)]
    pub(crate) push: PushArgs,
}

/// `--unwind`: how user stacks are walked.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Unwind {
    /// Unwind tables where loaded, frame pointers elsewhere.
    #[default]
    Auto,
    /// Frame pointers only (the kernel's walk).
    Fp,
    /// Unwind tables only.
    Tables,
}

impl Unwind {
    /// The walk the kernel program is loaded with.
    pub(crate) fn mode(self) -> crate::bpf::UnwindMode {
        match self {
            Unwind::Auto => crate::bpf::UnwindMode::Auto,
            Unwind::Fp => crate::bpf::UnwindMode::FramePointers,
            Unwind::Tables => crate::bpf::UnwindMode::Tables,
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct DoctorArgs {
    /// Check this process instead of the host: its runtime, frame pointers, unwind tables,
    /// symbols, debug files and JIT perf map, and what to change in it
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub(crate) pid: Option<Pid>,
}

/// `watch`. Options are `Option`s so values from `--config` apply where a
/// flag is absent; the defaults are in [`crate::config::WatchConfig`].
#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Control FIFO to create and read commands from [default: /run/stackwatch/control]
    #[arg(long, value_name = "PATH")]
    pub(crate) control: Option<PathBuf>,

    /// Directory the captures are written to [default: /var/lib/stackwatch]
    #[arg(long, value_name = "DIR")]
    pub(crate) output_dir: Option<PathBuf>,

    /// How long a capture runs unless stopped earlier or given by `start DURATION`, 10ms to 24h
    /// [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_capture_duration, allow_hyphen_values = true)]
    pub(crate) capture_duration: Option<Duration>,

    /// Samples per second per CPU while capturing, 1 to 10000 [default: 99]
    #[arg(long, value_name = "HZ", value_parser = parse_frequency, allow_hyphen_values = true)]
    pub(crate) frequency: Option<u64>,

    /// Profiles a manual capture takes, comma-separated: cpu, offcpu, memory [default: cpu].
    /// Triggered captures take what their rule asks for (see Triggers)
    #[arg(long, value_name = "KINDS", value_delimiter = ',', value_parser = parse_profile_kind)]
    pub(crate) profiles: Option<Vec<ProfileKind>>,

    /// File formats to write, comma-separated: pprof, svg, folded [default: pprof,svg]
    #[arg(long, value_name = "FORMATS")]
    pub(crate) formats: Option<String>,

    /// How user stacks are walked: auto, fp or tables (see `record --help`) [default: auto]
    #[arg(long, value_name = "MODE", value_enum)]
    pub(crate) unwind: Option<Unwind>,

    /// Keep at most N captures in the output directory, deleting the oldest
    #[arg(long, value_name = "N", value_parser = parse_max_captures, allow_hyphen_values = true)]
    pub(crate) max_captures: Option<usize>,

    /// Keep the captures in the output directory under SIZE (e.g. 2GiB), deleting the oldest
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, allow_hyphen_values = true)]
    pub(crate) retain: Option<u64>,

    /// Keep a low-rate CPU history of the target this far back (e.g. `10m`); each capture then
    /// also writes it (`…-cpu-history-….pb.gz`) and a diff of what changed (`…-cpu-diff-….svg`)
    /// [default: off]
    #[arg(long, value_name = "DURATION", value_parser = parse_history, allow_hyphen_values = true)]
    pub(crate) history: Option<Duration>,

    /// History samples per second per CPU, 1 to 1000 [default: 19]
    #[arg(long, value_name = "HZ", value_parser = parse_history_frequency, allow_hyphen_values = true)]
    pub(crate) history_frequency: Option<u64>,

    /// Memory the history may hold, at least 1MiB; past it the oldest slots are merged, then
    /// dropped (and counted) [default: 32MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_history_memory, allow_hyphen_values = true)]
    pub(crate) history_memory: Option<u64>,

    /// Length of a history time slot, 1s to 1m [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_history_slot, hide = true)]
    pub(crate) history_slot: Option<Duration>,

    /// TOML file with the same settings as these flags; flags override it
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) triggers: TriggerArgs,

    #[command(flatten)]
    pub(crate) listen: ListenArgs,

    #[command(flatten)]
    pub(crate) push: PushArgs,
}

/// `diff`.
#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The profile from before: a pprof file (`.pb.gz`, or plain protobuf)
    #[arg(value_name = "BASE")]
    pub(crate) base: PathBuf,

    /// The profile to compare with BASE
    #[arg(value_name = "NEW")]
    pub(crate) new: PathBuf,

    /// Also write a differential flamegraph (SVG) to this file; an existing file is never
    /// replaced
    #[arg(short = 'o', long = "output", value_name = "OUT.svg")]
    pub(crate) output: Option<PathBuf>,

    /// How many growers, and how many shrinkers, to print
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_top, allow_hyphen_values = true)]
    pub(crate) top: usize,

    /// The sample type to compare, by name (e.g. `alloc_space`) or by position from 0, as `go
    /// tool pprof -sample_index` takes it [default: the profile's default, else its last]
    #[arg(long, value_name = "NAME|N", value_parser = SampleIndex::parse)]
    pub(crate) sample_index: Option<SampleIndex>,

    /// Rank by cumulative share (a function with its callees) instead of flat share
    #[arg(long)]
    pub(crate) cum: bool,
}

/// `ctl`.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// Control FIFO of the daemon (its socket is `PATH.sock`)
    #[arg(long, value_name = "PATH", default_value = crate::control::DEFAULT_CONTROL_PATH, global = true)]
    pub(crate) control: PathBuf,

    /// How long to wait for the answer (a `stop` waits for the files to be written), 100ms to 1h
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_ctl_timeout,
        allow_hyphen_values = true,
        global = true
    )]
    pub(crate) timeout: Duration,

    /// Print the daemon's answer as JSON, as it was received
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: CtlCommand,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtlCommand {
    /// Start a capture (for DURATION, 10ms to 24h, else the daemon's --capture-duration)
    Start {
        #[arg(value_name = "DURATION", value_parser = parse_capture_duration, allow_hyphen_values = true)]
        duration: Option<Duration>,

        /// Profiles to take, comma-separated (cpu, offcpu, memory); the daemon loads those it
        /// was not started with for this capture [default: the daemon's --profiles]
        #[arg(long, value_name = "KINDS", value_parser = ProfileSet::parse)]
        profiles: Option<ProfileSet>,
    },
    /// End the running capture now, write it and print the files
    Stop,
    /// Start a capture if idle, else stop the running one
    Toggle,
    /// Show what the daemon is doing
    Status,
}

fn parse_top(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("at least one row must be shown".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of rows, e.g. `10`".to_owned()),
    }
}

fn parse_max_captures(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("at least one capture must be kept".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of captures, e.g. `50`".to_owned()),
    }
}

/// `--name`: a regex, with regex's multi-line diagnostic cut to its last
/// line. An empty pattern would match every process: refused, most likely
/// an unset shell variable (`--name "$SERVICE"`).
pub(crate) fn parse_regex(s: &str) -> Result<Regex, String> {
    if s.is_empty() {
        return Err("an empty pattern matches every process; give (part of) a process name, \
                    or leave out --name to profile the whole host"
            .to_owned());
    }
    Regex::new(s).map_err(|e| {
        let text = e.to_string();
        let reason = text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(&text).to_owned();
        format!("not a valid regular expression: {reason}")
    })
}

fn parse_pid(s: &str) -> Result<Pid, String> {
    if s.trim().is_empty() {
        return Err(crate::units::empty_item("process ids separated by commas, e.g. `1234,5678`"));
    }
    match s.trim().parse::<u32>() {
        Ok(0) => Err("0 is not a process id; process ids start at 1".to_owned()),
        Ok(pid) => Ok(Pid::new(pid)),
        Err(_) => Err("expected a process id, a whole number such as `1234`".to_owned()),
    }
}

pub(crate) fn parse_frequency(s: &str) -> Result<u64, String> {
    let hz: u64 =
        s.trim().parse().map_err(|_| "expected a whole number of samples per second, e.g. `99`".to_owned())?;
    if !(1..=MAX_FREQUENCY_HZ).contains(&hz) {
        return Err(format!(
            "the frequency must be between 1 and {MAX_FREQUENCY_HZ} Hz; faster sampling mostly measures the profiler itself"
        ));
    }
    Ok(hz)
}

pub(crate) fn parse_history(s: &str) -> Result<Duration, String> {
    crate::units::parse_duration_within(s, Duration::from_secs(10), Duration::from_secs(24 * 3600), "the history")
}

pub(crate) fn parse_history_slot(s: &str) -> Result<Duration, String> {
    crate::units::parse_duration_within(s, Duration::from_secs(1), Duration::from_secs(60), "a history slot")
}

pub(crate) fn parse_history_frequency(s: &str) -> Result<u64, String> {
    let hz: u64 =
        s.trim().parse().map_err(|_| "expected a whole number of samples per second, e.g. `19`".to_owned())?;
    if !(1..=1000).contains(&hz) {
        return Err("the history frequency must be between 1 and 1000 Hz".to_owned());
    }
    Ok(hz)
}

pub(crate) fn parse_history_memory(s: &str) -> Result<u64, String> {
    let bytes = crate::units::parse_size(s)?;
    if bytes < 1 << 20 {
        return Err("the history needs at least 1MiB, e.g. `32MiB`".to_owned());
    }
    Ok(bytes)
}

fn parse_profile_kind(s: &str) -> Result<ProfileKind, String> {
    crate::profile::kind::parse_kind(s)
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory as _;

    use super::*;
    use crate::ids::Pid;

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
        assert_eq!(r.target.pids, [1, 22].map(Pid::new));
        assert_eq!(record(&["--pid", "3,4", "--pid", "5"]).target.pids, [3, 4, 5].map(Pid::new));
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
                &["record", "--name", ""],
                "error: invalid value '' for '--name <REGEX>': an empty pattern matches every process; give (part of) \
                 a process name, or leave out --name to profile the whole host",
            ),
            (
                &["record", "--pid", "1,,2"],
                "error: invalid value '' for '--pid <PID>': the list has an empty item (a comma too many, or no \
                 value); expected process ids separated by commas, e.g. `1234,5678`",
            ),
            (
                &["record", "--profiles", "cpu,"],
                "error: invalid value '' for '--profiles <KINDS>': the list has an empty item (a comma too many, or \
                 no value); expected profile kinds separated by commas, e.g. `cpu,offcpu`",
            ),
            (
                &["ctl", "start", "--profiles", "cpu,,offcpu"],
                "error: invalid value 'cpu,,offcpu' for '--profiles <KINDS>': the list has an empty item (a comma \
                 too many, or no value); expected profile kinds separated by commas, e.g. `cpu,offcpu`",
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
        assert_eq!(parse(&["ctl"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["watch", "--max-captures", "0"]).unwrap_err().exit_code(), 2);
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
    fn watch_values() {
        let Command::Watch(w) = parse(&["watch"]).unwrap().command else { panic!("not watch") };
        assert!(w.control.is_none() && w.output_dir.is_none() && w.capture_duration.is_none());
        let Command::Watch(w) = parse(&[
            "watch",
            "--pid",
            "7",
            "--control",
            "/tmp/c",
            "--capture-duration",
            "10s",
            "--max-captures",
            "3",
            "--retain",
            "1GiB",
        ])
        .unwrap()
        .command
        else {
            panic!("not watch")
        };
        assert_eq!(w.target.pids, [Pid::new(7)]);
        assert_eq!(w.control, Some(PathBuf::from("/tmp/c")));
        assert_eq!(w.capture_duration, Some(Duration::from_secs(10)));
        assert_eq!((w.max_captures, w.retain), (Some(3), Some(1 << 30)));
        let (kind, message) = error(&["watch", "--max-captures", "0"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(message.ends_with("at least one capture must be kept"), "{message}");
    }

    #[test]
    fn ctl_values() {
        let ctl = |args: &[&str]| match parse(args).unwrap().command {
            Command::Ctl(c) => c,
            other => panic!("{other:?}"),
        };
        let c = ctl(&["ctl", "status"]);
        assert_eq!(c.command, CtlCommand::Status);
        assert_eq!(c.control, PathBuf::from("/run/stackwatch/control"));
        assert_eq!(c.timeout, Duration::from_secs(30));
        let c = ctl(&["ctl", "--control", "/tmp/c", "start", "90s"]);
        assert_eq!(c.command, CtlCommand::Start { duration: Some(Duration::from_secs(90)), profiles: None });
        assert_eq!(ctl(&["ctl", "start"]).command, CtlCommand::Start { duration: None, profiles: None });
        assert_eq!(
            ctl(&["ctl", "start", "30s", "--profiles", "offcpu,cpu"]).command,
            CtlCommand::Start {
                duration: Some(Duration::from_secs(30)),
                profiles: Some(ProfileSet::of(&[ProfileKind::Cpu, ProfileKind::OffCpu]))
            }
        );
        let (kind, _) = error(&["ctl", "start", "--profiles", "gpu"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert_eq!(ctl(&["ctl", "toggle", "--json"]).command, CtlCommand::Toggle);
        let (kind, _) = error(&["ctl", "start", "-3s"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        let (kind, _) = error(&["ctl", "frobnicate"]);
        assert_eq!(kind, ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn watch_help() {
        insta::assert_snapshot!(help(&["watch"]));
    }

    #[test]
    fn ctl_help() {
        insta::assert_snapshot!(help(&["ctl"]));
    }

    #[test]
    fn diff_help() {
        insta::assert_snapshot!(help(&["diff"]));
    }

    #[test]
    fn diff_values() {
        let diff = |args: &[&str]| match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Command::Diff(d) => d,
            other => panic!("{other:?}"),
        };
        let d = diff(&["diff", "a.pb.gz", "b.pb.gz"]);
        assert_eq!((d.base, d.new), (PathBuf::from("a.pb.gz"), PathBuf::from("b.pb.gz")));
        assert_eq!((d.output, d.top, d.sample_index, d.cum), (None, 10, None, false));
        let d = diff(&["diff", "a", "b", "-o", "d.svg", "--top", "3", "--sample-index", "alloc_space", "--cum"]);
        assert_eq!(d.output, Some(PathBuf::from("d.svg")));
        assert_eq!(d.top, 3);
        assert_eq!(d.sample_index, Some(SampleIndex::Name("alloc_space".into())));
        assert!(d.cum);
        assert_eq!(diff(&["diff", "a", "b", "--sample-index=1"]).sample_index, Some(SampleIndex::Position(1)));
        assert_eq!(diff(&["diff", "a", "b", "--output", "x.svg"]).output, Some(PathBuf::from("x.svg")));
        for (args, expected) in [
            (&["diff", "a", "b", "--top", "0"][..], "at least one row must be shown"),
            (&["diff", "a", "b", "--top", "-3"], "expected a whole number of rows, e.g. `10`"),
            (&["diff", "a", "b", "--sample-index", ""], "expected a sample type name such as `cpu`"),
        ] {
            let (kind, message) = error(args);
            assert_eq!(kind, ErrorKind::ValueValidation, "{args:?}");
            assert!(message.contains(expected), "{args:?}: {message}");
        }
        let (kind, _) = error(&["diff", "only-one.pb.gz"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn top_level_help() {
        insta::assert_snapshot!(help(&[]));
    }
}
