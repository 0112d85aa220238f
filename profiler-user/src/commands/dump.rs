//! `stackwatch dump --pid PID [--json]`: every thread's kernel and user
//! stack of one process, once (`crate::dump`), as text or JSON on stdout.

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::DumpArgs;
use crate::symbolize::{Symbolizer, SymbolizerConfig};

/// Dumps the process and prints it.
pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    if !crate::procfs::process::exists(args.pid) {
        return Err(crate::config::UsageError(format!("no process with pid {}", args.pid)).into());
    }
    let mut symbolizer = Symbolizer::with_config(SymbolizerConfig::from_env());
    let dump = crate::dump::dump(args.pid, &mut symbolizer)?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&dump).context("failed to encode the dump")?;
        s.push('\n');
        s
    } else {
        crate::dump::render_text(&dump)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("failed to print the dump")
}
