//! Per-function shares of two profiles and what changed between them.
//!
//! Two captures rarely have the same length or load, so their raw values do
//! not compare; their shares do. A function's *flat* share (samples where it
//! is the innermost frame, so an inlined callee gets the blame rather than
//! its caller) and *cum* share (samples with it anywhere on the stack,
//! counted once per sample even when it recurses) are taken of each
//! profile's own total, as `go tool pprof -top` computes `flat%` and `cum%`,
//! and a change is the difference in percentage points. Growers and
//! shrinkers are ranked by the flat change (the function's own work), or by
//! the cum change when asked (a caller whose callees grew); the other change
//! breaks ties, then the name, so the order never depends on hashing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::profile::diff::read::{positive, PprofProfile, UNKNOWN};

/// Changes smaller than this (in percentage points) print as `+0.00pp`, so
/// they are not listed as growth or shrinkage.
const MIN_CHANGE_PP: f64 = 0.005;

/// A function's shares of one profile, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Shares {
    pub(crate) flat: f64,
    pub(crate) cum: f64,
}

/// One function in both profiles (a function missing from one has zero shares there).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) function: String,
    pub(crate) base: Shares,
    pub(crate) new: Shares,
}

impl Change {
    /// Flat change, in percentage points.
    pub(crate) fn flat_delta(&self) -> f64 {
        self.new.flat - self.base.flat
    }

    /// Cumulative change, in percentage points.
    pub(crate) fn cum_delta(&self) -> f64 {
        self.new.cum - self.base.cum
    }

    fn deltas(&self, rank: Rank) -> (f64, f64) {
        match rank {
            Rank::Flat => (self.flat_delta(), self.cum_delta()),
            Rank::Cum => (self.cum_delta(), self.flat_delta()),
        }
    }
}

/// Which change orders the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rank {
    Flat,
    Cum,
}

impl Rank {
    fn word(self) -> &'static str {
        match self {
            Rank::Flat => "flat",
            Rank::Cum => "cumulative",
        }
    }
}

/// Every function of either profile with its shares in both.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Comparison {
    /// Sorted by function name.
    pub(crate) changes: Vec<Change>,
    /// The totals the shares are of (positive values only).
    pub(crate) base_total: i64,
    pub(crate) new_total: i64,
}

/// Compares value `base_index` of `base` with value `new_index` of `new`.
pub(crate) fn compare(base: &PprofProfile, base_index: usize, new: &PprofProfile, new_index: usize) -> Comparison {
    let (base_shares, base_total) = function_shares(base, base_index);
    let (new_shares, new_total) = function_shares(new, new_index);
    let mut merged: BTreeMap<&str, Change> = BTreeMap::new();
    for (side, shares) in [(0, base_shares), (1, new_shares)] {
        for (function, s) in shares {
            let change = merged.entry(function).or_insert_with(|| Change {
                function: function.to_owned(),
                base: Shares::default(),
                new: Shares::default(),
            });
            if side == 0 {
                change.base = s;
            } else {
                change.new = s;
            }
        }
    }
    Comparison { changes: merged.into_values().collect(), base_total, new_total }
}

impl Comparison {
    /// The `n` functions that grew most, largest growth first.
    pub(crate) fn growers(&self, n: usize, rank: Rank) -> Vec<&Change> {
        let mut rows: Vec<&Change> = self.changes.iter().filter(|c| c.deltas(rank).0 >= MIN_CHANGE_PP).collect();
        rows.sort_by(|a, b| {
            let (a1, a2) = a.deltas(rank);
            let (b1, b2) = b.deltas(rank);
            b1.total_cmp(&a1).then(b2.total_cmp(&a2)).then_with(|| a.function.cmp(&b.function))
        });
        rows.truncate(n);
        rows
    }

    /// The `n` functions that shrank most, largest shrinkage first.
    pub(crate) fn shrinkers(&self, n: usize, rank: Rank) -> Vec<&Change> {
        let mut rows: Vec<&Change> = self.changes.iter().filter(|c| c.deltas(rank).0 <= -MIN_CHANGE_PP).collect();
        rows.sort_by(|a, b| {
            let (a1, a2) = a.deltas(rank);
            let (b1, b2) = b.deltas(rank);
            a1.total_cmp(&b1).then(a2.total_cmp(&b2)).then_with(|| a.function.cmp(&b.function))
        });
        rows.truncate(n);
        rows
    }

    /// The two tables: growers, then shrinkers. Columns are numbers first
    /// and the function last, as in `go tool pprof -top`, because names
    /// have no bound on their length and may contain spaces.
    pub(crate) fn format_tables(&self, n: usize, rank: Rank) -> String {
        let mut out = String::new();
        for (heading, rows, none) in [
            ("Grew most", self.growers(n, rank), "no function grew"),
            ("Shrank most", self.shrinkers(n, rank), "no function shrank"),
        ] {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "{heading}, by {} share:", rank.word());
            if rows.is_empty() {
                let _ = writeln!(out, "  ({none})");
                continue;
            }
            let _ = writeln!(
                out,
                "{:>10} {:>9} {:>10} {:>10} {:>9} {:>10}  function",
                "base flat", "new flat", "delta", "base cum", "new cum", "delta"
            );
            for c in rows {
                let _ = writeln!(
                    out,
                    "{:>10} {:>9} {:>10} {:>10} {:>9} {:>10}  {}",
                    percent(c.base.flat),
                    percent(c.new.flat),
                    points(c.flat_delta()),
                    percent(c.base.cum),
                    percent(c.new.cum),
                    points(c.cum_delta()),
                    c.function
                );
            }
        }
        out
    }
}

/// `74.80%`.
fn percent(value: f64) -> String {
    format!("{value:.2}%")
}

/// `+49.70pp`; a change that rounds to nothing is `+0.00pp`, never `-0.00pp`.
fn points(value: f64) -> String {
    let value = if value.abs() < MIN_CHANGE_PP { 0.0 } else { value };
    format!("{value:+.2}pp")
}

/// Each function's flat and cum shares of value `index`, and the total.
fn function_shares(profile: &PprofProfile, index: usize) -> (Vec<(&str, Shares)>, i64) {
    let mut flat = vec![0i64; profile.names.len()];
    let mut cum = vec![0i64; profile.names.len()];
    // The sample a name was last counted in, so a recursive function's cum
    // counts each sample once.
    let mut counted_in = vec![usize::MAX; profile.names.len()];
    let mut unknown = 0i64;
    for (n, sample) in profile.samples.iter().enumerate() {
        let value = positive(sample, index);
        if value == 0 {
            continue;
        }
        let Some(&leaf) = sample.frames.first() else {
            unknown = unknown.saturating_add(value);
            continue;
        };
        flat[leaf as usize] = flat[leaf as usize].saturating_add(value);
        for &frame in &sample.frames {
            let f = frame as usize;
            if counted_in[f] != n {
                counted_in[f] = n;
                cum[f] = cum[f].saturating_add(value);
            }
        }
    }
    // A sample without a stack is charged to `[unknown]`, as folded stacks show it.
    let mut extra = None;
    if unknown != 0 {
        match profile.names.iter().position(|n| n == UNKNOWN) {
            Some(i) => {
                flat[i] = flat[i].saturating_add(unknown);
                cum[i] = cum[i].saturating_add(unknown);
            }
            None => extra = Some(unknown),
        }
    }
    let total = profile.total(index);
    let share = |v: i64| if total == 0 { 0.0 } else { v as f64 * 100.0 / total as f64 };
    let mut shares: Vec<(&str, Shares)> = profile
        .names
        .iter()
        .zip(flat.iter().zip(&cum))
        .filter(|(_, (&f, &c))| f != 0 || c != 0)
        .map(|(name, (&f, &c))| (name.as_str(), Shares { flat: share(f), cum: share(c) }))
        .collect();
    if let Some(v) = extra {
        shares.push((UNKNOWN, Shares { flat: share(v), cum: share(v) }));
    }
    (shares, total)
}
