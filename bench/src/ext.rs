//! Sections of the benchmark beyond the CPU comparisons, one per feature
//! with a cost of its own: their figures go in the same JSON and the same
//! `docs/benchmarks.md`, next to the CPU ones.
//!
//! A section is a function `fn(&Context) -> Result<Section>`. It can use the
//! bench's building blocks: [`super::runs`] (launch a profiler, stop it with
//! SIGINT, read its CPU, RSS and BPF figures), [`super::runs::Burner`] and
//! [`super::measure`] (`/proc` and fdinfo readers).

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

/// What every section gets.
pub(crate) struct Context {
    /// The stackwatch binary under test (a copy, so concurrent builds
    /// cannot swap it mid-run).
    pub stackwatch: PathBuf,
    /// `bench/workloads/burn.c`, built.
    pub burn: PathBuf,
    /// This run's scratch directory (under `target/bench/`).
    pub work: PathBuf,
    pub quick: bool,
    pub runs: usize,
    pub nproc: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Measured,
    /// The measurement ran and failed (the error is in `notes`).
    Failed,
}

/// One figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    /// As it should read in the table, unit included (`1.2 µs`, `3 %`).
    pub value: String,
    /// The target it is held to, in words, when it has one.
    pub target: Option<String>,
    pub pass: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Exact commands, for the docs.
    pub commands: Vec<String>,
}

impl Section {
    /// An empty section, measured unless a step fails.
    pub(crate) fn new(id: &'static str, title: &'static str) -> Self {
        Self { id, title, status: Status::Measured, rows: Vec::new(), notes: Vec::new(), commands: Vec::new() }
    }

    /// Runs `fill` into a new section: an error marks it failed, with the
    /// error as a note, and keeps the rows measured before it.
    pub(crate) fn measure(id: &'static str, title: &'static str, fill: impl FnOnce(&mut Self) -> Result<()>) -> Self {
        let mut section = Self::new(id, title);
        if let Err(e) = fill(&mut section) {
            section.status = Status::Failed;
            section.notes.push(format!("{e:#}"));
        }
        section
    }
}

/// The cost of `--profiles offcpu` and `--profiles memory`
/// on workloads that do little but make the events they pay for.
pub(crate) fn offcpu_memory(ctx: &Context) -> Result<Section> {
    super::events::run(ctx)
}

/// Symbolization throughput and its memory, measured by this crate's
/// `symbolize_bench` (which prints one JSON line last) over every process on
/// the host.
pub(crate) fn symbolize(_ctx: &Context) -> Result<Section> {
    const ID: &str = "symbolize";
    const TITLE: &str = "Symbolization throughput";
    let mut cmd = xtask::cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "stackwatch-bench", "--bin", "symbolize_bench"]);
    let line = xtask::cmd::display(&cmd);
    eprintln!("\nbench: {TITLE}\n$ {line}");
    let mut section = Section::new(ID, TITLE);
    section
        .commands
        .push("cargo run --release -p stackwatch-bench --bin symbolize_bench   # every process on the host".to_owned());
    let out = match xtask::cmd::stdout(&mut cmd) {
        Ok(out) => out,
        Err(e) => {
            section.status = Status::Failed;
            section.notes.push(format!("{e:#}"));
            return Ok(section);
        }
    };
    let json = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok().filter(serde_json::Value::is_object));
    let Some(v) = json else {
        section.status = Status::Failed;
        section.notes.push(format!("`{line}` printed no JSON line:\n{out}"));
        return Ok(section);
    };
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    let mib = |k: &str| num(k).map(|kib| format!("{:.1} MiB", kib / 1024.0));
    let mut row = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            section.rows.push(Row { name: name.to_owned(), value, target: None, pass: None });
        }
    };
    row("addresses (processes)", num("addresses").map(|a| format!("{a:.0} ({:.0})", num("processes").unwrap_or(0.0))));
    row("cold cache", num("cold_addrs_per_sec").map(|r| format!("{r:.0} addresses/s")));
    row("warm cache", num("warm_addrs_per_sec").map(|r| format!("{r:.0} addresses/s")));
    row("named", num("named_pct").map(|p| format!("{p:.1} %")));
    row("RSS before", mib("rss_before_kib"));
    row("RSS added by the cold pass", mib("rss_cold_delta_kib"));
    row("RSS added after the warm pass", mib("rss_warm_delta_kib"));
    row("peak RSS added", mib("peak_delta_kib"));
    row("objects cached", num("cached_objects").map(|n| format!("{n:.0}")));
    for l in out.lines().filter(|l| !l.trim_start().starts_with('{')) {
        section.notes.push(format!("`{}`", l.trim()));
    }
    Ok(section)
}
