//! The `stackwatch` binary: parses the command line, sets up logging, runs
//! the subcommand and turns its outcome into an exit code (0 success,
//! 1 runtime failure, 2 usage error).
#![expect(
    unused_crate_dependencies,
    reason = "the binary is a thin shell: the library uses the package's dependencies"
)]

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser as _;
use stackwatch::cli::{Cli, Command};
use stackwatch::{commands, TargetError, UsageError};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Before the first thread: see the function.
    stackwatch::one_malloc_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    stackwatch::logging::init(cli.verbose);
    match cli.command {
        Command::Record(args) => match run_async(commands::record::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Watch(args) => match run_async(commands::watch::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Top(args) => match run_async(commands::top::run(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Ctl(args) => match commands::ctl::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_FAILURE),
            Err(e) => fail(&e),
        },
        Command::Diff(args) => match commands::diff::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::GenerateMan { dir } => match stackwatch::cli::write_man_pages(&dir) {
            Ok(pages) => {
                for page in pages {
                    println!("{}", page.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Dump(args) => match commands::dump::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Doctor(args) => match commands::doctor::run(&args) {
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
