//! The `stackwatch` binary: parses the command line, sets up logging, runs
//! the subcommand and turns its outcome into an exit code (0 success,
//! 1 runtime failure, 2 usage error).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser as _;
use stackwatch::cli::{Cli, Command};
use stackwatch::commands;
use stackwatch::config::UsageError;
use stackwatch::target::TargetError;
use tracing_log::AsLog as _;
use tracing_subscriber::EnvFilter;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Record(args) => match run_async(commands::record::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Watch(args) => match run_async(commands::watch::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Ctl(args) => match commands::ctl::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_FAILURE),
            Err(e) => fail(&e),
        },
        Command::Doctor(_) => match commands::doctor::run() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_FAILURE),
            Err(e) => fail(&e),
        },
    }
}

/// A command line clap refused, as one `error:` line (its message, then
/// any `tip:`), exit code 2, like every other usage error; clap's usage
/// block and "for more information" lines are left out. `--help`,
/// `--version` and a missing subcommand print as clap prints them.
fn clap_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        e.exit()
    }
    let text = e.render().to_string();
    let mut paragraphs = text.split("\n\n");
    let mut line = paragraphs.next().unwrap_or_default().lines().map(str::trim).collect::<Vec<_>>().join(" ");
    for tip in paragraphs.flat_map(str::lines).map(str::trim).filter(|l| l.starts_with("tip:")) {
        line.push_str("; ");
        line.push_str(tip);
    }
    eprintln!("{line}");
    ExitCode::from(EXIT_USAGE)
}

/// Prints `error: <cause>: <cause>…` on one line and picks the exit code:
/// 2 when the user asked for something wrong, else 1.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    let usage = err.chain().any(|cause| cause.is::<UsageError>() || cause.is::<TargetError>());
    ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    // Collection and signal handling are light; symbolization and writing
    // run on blocking threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stackwatch")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("failed to start the async runtime: {e}"))?;
    let result = runtime.block_on(future);
    // Dropping the runtime would wait for every blocking task; `watch` may
    // leave a capture writer behind when its shutdown deadline passed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Logs go to stderr, filtered by `RUST_LOG` when it is set, else by `-v`.
/// The eBPF program's messages arrive through the `log` crate (aya-log), so
/// `log` records are forwarded to `tracing`; they use the eBPF crate's
/// module path (`profiler`) as their target.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,stackwatch=info,profiler=info",
        1 => "warn,stackwatch=debug,profiler=debug",
        _ => "info,stackwatch=trace,profiler=trace,aya=debug",
    };
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(default), Some(format!("ignoring invalid RUST_LOG `{spec}`: {e}"))),
        },
        _ => (EnvFilter::new(default), None),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        // Only after the subscriber is set, so `log`'s max level matches it.
        let max_level = tracing::level_filters::LevelFilter::current().as_log();
        let _ = tracing_log::LogTracer::builder().with_max_level(max_level).init();
    }
    if let Some(warning) = bad_rust_log {
        tracing::warn!("{warning}");
    }
}
