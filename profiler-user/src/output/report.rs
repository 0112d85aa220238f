//! The top-functions table `record` prints after a capture.
//!
//! It answers "where did the time go?" without leaving the terminal, in the
//! shape of `go tool pprof -top` so the numbers read the same way there:
//! *flat* is what a function spent itself (the innermost line of the leaf
//! location, so an inlined callee gets the blame rather than its caller),
//! *cum* what it spent including callees, counted once per sample even when
//! the function recurses.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::profile::Profile;

/// Name used when a sample has no frames or a frame has no lines.
const UNKNOWN: &str = "[unknown]";

/// Index of the sample type `go tool pprof` shows by default: the named
/// default, else the last one (pprof's own rule).
pub(crate) fn default_value_index(profile: &Profile) -> usize {
    profile
        .default_sample_type
        .as_deref()
        .and_then(|name| profile.sample_types.iter().position(|t| t.kind == name))
        .unwrap_or_else(|| profile.sample_types.len().saturating_sub(1))
}

/// Index of the value counting events (unit `count`), if any.
pub(crate) fn count_value_index(profile: &Profile) -> Option<usize> {
    profile.sample_types.iter().position(|t| t.unit == "count")
}

/// Number of samples taken: the total of the count value, or the number of
/// distinct stacks when the profile has no count value.
pub(crate) fn sample_count(profile: &Profile) -> i64 {
    match count_value_index(profile) {
        Some(index) => profile.total(index),
        None => profile.samples.len() as i64,
    }
}

/// `2970` → `2,970`.
pub(crate) fn group_thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct TopEntry {
    pub function: String,
    pub flat: i64,
    pub flat_pct: f64,
    pub cum: i64,
    pub cum_pct: f64,
}

/// The `n` functions with the largest flat value `value_index`, ties broken
/// by cum and then by name so the order is stable. Percentages are of the
/// profile's total for that value.
pub fn top_functions(profile: &Profile, value_index: usize, n: usize) -> Vec<TopEntry> {
    let mut all = all_functions(profile, value_index);
    all.truncate(n);
    all
}

fn all_functions(profile: &Profile, value_index: usize) -> Vec<TopEntry> {
    let mut totals: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for sample in &profile.samples {
        let value = sample.values.get(value_index).copied().unwrap_or(0);
        let frames = || {
            sample
                .locations
                .iter()
                .filter_map(|&i| profile.locations.get(i))
                .flat_map(|location| location.lines.iter().map(|line| line.function.as_str()))
        };
        let leaf = frames().next().unwrap_or(UNKNOWN);
        let entry = totals.entry(leaf).or_default();
        entry.0 = entry.0.saturating_add(value);
        seen.clear();
        if frames().next().is_none() {
            seen.insert(UNKNOWN);
        }
        seen.extend(frames());
        for &function in &seen {
            let entry = totals.entry(function).or_default();
            entry.1 = entry.1.saturating_add(value);
        }
    }
    let total = profile.total(value_index);
    let pct = |v: i64| if total == 0 { 0.0 } else { v as f64 * 100.0 / total as f64 };
    let mut rows: Vec<TopEntry> = totals
        .into_iter()
        .map(|(function, (flat, cum))| TopEntry {
            function: function.to_owned(),
            flat,
            flat_pct: pct(flat),
            cum,
            cum_pct: pct(cum),
        })
        .collect();
    rows.sort_by(|a, b| b.flat.cmp(&a.flat).then(b.cum.cmp(&a.cum)).then_with(|| a.function.cmp(&b.function)));
    rows
}

/// A short aligned table like `go tool pprof -top`, by the profile's default
/// sample type (cpu time for a cpu profile), ending with a newline.
pub fn format_top_table(profile: &Profile, n: usize) -> String {
    if profile.samples.is_empty() {
        return "no samples\n".to_owned();
    }
    let index = default_value_index(profile);
    let (kind, unit) = profile.sample_types.get(index).map_or(("value", ""), |t| (t.kind.as_str(), t.unit.as_str()));
    let all = all_functions(profile, index);
    let rows = &all[..n.min(all.len())];

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} samples, {} {kind} in total; showing the top {} of {} functions",
        group_thousands(sample_count(profile)),
        format_value(profile.total(index), unit),
        rows.len(),
        all.len()
    );
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                format_value(r.flat, unit),
                format!("{:.2}%", r.flat_pct),
                format_value(r.cum, unit),
                format!("{:.2}%", r.cum_pct),
            ]
        })
        .collect();
    let header = ["flat", "flat%", "cum", "cum%"];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let _ = writeln!(
        out,
        "{:>w0$} {:>w1$} {:>w2$} {:>w3$}  function",
        header[0],
        header[1],
        header[2],
        header[3],
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3]
    );
    for (row, cell) in rows.iter().zip(&cells) {
        // A name with a line break would break the table's alignment.
        let name: String = row.function.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let _ = writeln!(
            out,
            "{:>w0$} {:>w1$} {:>w2$} {:>w3$}  {name}",
            cell[0],
            cell[1],
            cell[2],
            cell[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    out
}

/// Human form of a value in `unit`: durations like pprof (`1.20s`,
/// `70.71ms`), sizes in binary units (`1.50MiB`), counts with separators.
pub(crate) fn format_value(value: i64, unit: &str) -> String {
    const TIME: [(f64, &str); 4] = [(1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns")];
    const SIZE: [(f64, &str); 5] =
        [(1_099_511_627_776.0, "TiB"), (1_073_741_824.0, "GiB"), (1_048_576.0, "MiB"), (1024.0, "KiB"), (1.0, "B")];
    let scales: &[(f64, &str)] = match unit {
        "nanoseconds" => &TIME,
        "bytes" => &SIZE,
        "count" | "" => return group_thousands(value),
        _ => return format!("{} {unit}", group_thousands(value)),
    };
    let magnitude = value.unsigned_abs() as f64;
    let (scale, suffix) =
        scales.iter().copied().find(|&(scale, _)| magnitude >= scale).unwrap_or(scales[scales.len() - 1]);
    let scaled = value as f64 / scale;
    if scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.2}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests_support::{empty_profile, sample_profile, PERIOD_NS};

    fn row(rows: &[TopEntry], name: &str) -> TopEntry {
        rows.iter().find(|r| r.function == name).cloned().unwrap_or_else(|| panic!("no row for {name}: {rows:#?}"))
    }

    #[test]
    fn flat_and_cum_by_count() {
        let profile = sample_profile();
        let rows = top_functions(&profile, 0, 100);
        let names: Vec<&str> = rows.iter().take(3).map(|r| r.function.as_str()).collect();
        assert_eq!(names, ["do_syscall_64", "inline_helper", "main"]);

        let syscall = row(&rows, "do_syscall_64");
        assert_eq!((syscall.flat, syscall.cum), (8, 8));
        assert!((syscall.flat_pct - 8.0 * 100.0 / 17.0).abs() < 1e-9);
        // The inlined callee gets the flat time, its caller only cum.
        assert_eq!((row(&rows, "inline_helper").flat, row(&rows, "inline_helper").cum), (7, 7));
        assert_eq!((row(&rows, "hot_loop").flat, row(&rows, "hot_loop").cum), (0, 7));
        // `main` recurses in one sample and is counted once there.
        assert_eq!((row(&rows, "main").flat, row(&rows, "main").cum), (1, 10));
        assert_eq!(row(&rows, "__libc_start_main").cum, 10);
        assert_eq!(row(&rows, "[unknown]").cum, 7);
        assert_eq!(row(&rows, "blob+0x1400").flat, 1);
        let flat_sum: i64 = rows.iter().map(|r| r.flat).sum();
        assert_eq!(flat_sum, profile.total(0));
        assert!(rows.iter().all(|r| r.cum >= r.flat && r.cum_pct <= 100.0));
    }

    #[test]
    fn limits_and_value_index() {
        let profile = sample_profile();
        assert_eq!(top_functions(&profile, 0, 2).len(), 2);
        assert!(top_functions(&profile, 0, 0).is_empty());
        let by_ns = top_functions(&profile, 1, 1);
        assert_eq!(by_ns[0].flat, 8 * PERIOD_NS);
    }

    #[test]
    fn table_text() {
        let table = format_top_table(&sample_profile(), 3);
        let expected = "\
17 samples, 171.72ms cpu in total; showing the top 3 of 10 functions
   flat  flat%      cum   cum%  function
80.81ms 47.06%  80.81ms 47.06%  do_syscall_64
70.71ms 41.18%  70.71ms 41.18%  inline_helper
10.10ms  5.88% 101.01ms 58.82%  main
";
        assert_eq!(table, expected, "\n{table}");
        assert_eq!(format_top_table(&empty_profile(), 10), "no samples\n");
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(2970), "2,970");
        assert_eq!(group_thousands(-1_234_567), "-1,234,567");
    }

    #[test]
    fn values() {
        assert_eq!(format_value(1_200_000_000, "nanoseconds"), "1.20s");
        assert_eq!(format_value(10_000_000, "nanoseconds"), "10ms");
        assert_eq!(format_value(999, "nanoseconds"), "999ns");
        assert_eq!(format_value(0, "nanoseconds"), "0ns");
        assert_eq!(format_value(1536 * 1024, "bytes"), "1.50MiB");
        assert_eq!(format_value(2970, "count"), "2,970");
        assert_eq!(format_value(5, "requests"), "5 requests");
    }
}
