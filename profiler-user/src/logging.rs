//! Where logs go: stderr, filtered by `RUST_LOG` or `-v`, with the eBPF
//! program's messages (aya-log, through the `log` crate) forwarded to
//! `tracing` beside stackwatch's own.

use std::io::IsTerminal as _;

use tracing_log::AsLog as _;
use tracing_subscriber::EnvFilter;

/// Logs go to stderr, filtered by `RUST_LOG` when it is set, else by `-v`.
/// The eBPF program's messages arrive through the `log` crate (aya-log), so
/// `log` records are forwarded to `tracing`; they use the eBPF crate's
/// module path (`profiler`) as their target.
pub fn init(verbose: u8) {
    // aya probes kernel features as it loads; without privileges every probe
    // fails and warns, before stackwatch's one error line says why (`-vv`
    // shows them).
    let default = match verbose {
        0 => "warn,stackwatch=info,profiler=info,aya::kernel_features=error",
        1 => "warn,stackwatch=debug,profiler=debug,aya::kernel_features=error",
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
