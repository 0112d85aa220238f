//! Loading the programs of a capture's profile kinds when the daemon was
//! not started with them.
//!
//! `watch` loads the kinds of `--profiles` and of its rules at start, so a
//! triggered capture attaches at once. A manual `start --profiles …` may
//! name any kind: the daemon loads a program with the extra kinds for that
//! capture (a load verifies every program again: tens of milliseconds to
//! about a second on a busy host, before the window opens, so nothing
//! counted is lost) and goes back to the start set once the capture is
//! written. Idle, it therefore costs what it was started with (measured in
//! `docs/benchmarks.md`), and a kind this kernel cannot run is refused for
//! that capture alone, with the reason, while the daemon keeps the program
//! it had.

use anyhow::{anyhow, Result};

use crate::bpf::{Loader, UnwindMode};
use crate::kinds::programs_for;
use crate::profile::ProfileSet;
use crate::target::Filter;

/// Loads the programs of `kinds` for `filter`. `extra` (the kinds loaded on
/// demand) names the culprit when the load fails.
pub(super) fn load(filter: &Filter, kinds: ProfileSet, extra: ProfileSet, unwind: UnwindMode) -> Result<Loader> {
    Loader::load_with(filter, programs_for(&kinds.to_vec(), unwind)).map_err(|e| {
        if extra.is_empty() {
            e
        } else {
            anyhow!("cannot load the programs of the {extra} profile: {e:#}")
        }
    })
}
