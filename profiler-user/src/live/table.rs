//! The table `stackwatch top` shows, built from one symbolized CPU profile
//! per refresh. Pure: no terminal, no kernel.
//!
//! Rows are (process, function), so a whole-host view says which process
//! spends the time. Like `py-spy top`, the percentages are of the last
//! refresh's samples (what runs now) and the seconds add up since the
//! start; like `perf top`, rows are sorted by a score that halves at every
//! refresh, so the order follows what is hot now without jumping on every
//! refresh's sampling noise. *Own* is the function itself (the leaf),
//! *total* includes what it calls, counted once per sample even when it
//! recurses, as in `go tool pprof -top`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::ids::Pid;
use crate::profile::Profile;

/// Name of a sample without frames.
const UNKNOWN: &str = "[unknown]";

/// Weight of the previous score at each refresh.
const DECAY: f64 = 0.5;

/// Rows whose score fell below this and that have no samples now are
/// dropped from the view (their seconds are kept).
const SHOWN_SCORE: f64 = 0.05;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RowKey {
    pid: Pid,
    comm: String,
    function: String,
}

#[derive(Clone, Debug, Default)]
struct Totals {
    own: u64,
    total: u64,
    now_own: u64,
    now_total: u64,
    score: f64,
}

/// Rows accumulated over the session.
#[derive(Debug, Default)]
pub(crate) struct TopTable {
    rows: HashMap<RowKey, Totals>,
    /// Samples of the last refresh, and since the start.
    pub now_samples: u64,
    pub samples: u64,
    pub refreshes: u64,
}

/// One row as shown.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub process: String,
    pub function: String,
    pub now_own_pct: f64,
    pub now_total_pct: f64,
    /// Samples since the start.
    pub own: u64,
    pub total: u64,
}

/// What the header line says besides the table.
#[derive(Clone, Debug)]
pub(crate) struct Header<'a> {
    pub target: &'a str,
    pub frequency_hz: u64,
    pub elapsed: Duration,
    pub interval: Duration,
    pub lost: u64,
}

impl TopTable {
    /// Adds one refresh: the samples of `profile` (a CPU profile, whose
    /// first value is the sample count).
    pub(crate) fn add(&mut self, profile: &Profile) {
        for totals in self.rows.values_mut() {
            totals.score *= DECAY;
            totals.now_own = 0;
            totals.now_total = 0;
        }
        let mut samples = 0;
        let mut seen: HashSet<&str> = HashSet::new();
        for sample in &profile.samples {
            let count = sample.values.first().copied().unwrap_or(0).max(0) as u64;
            if count == 0 {
                continue;
            }
            samples += count;
            let mut stack: Vec<&str> = sample
                .locations
                .iter()
                .filter_map(|&i| profile.locations.get(i))
                .flat_map(|location| location.lines.iter().map(|line| line.function.as_str()))
                .collect();
            if stack.is_empty() {
                stack.push(UNKNOWN);
            }
            let key =
                |function: &str| RowKey { pid: sample.pid, comm: sample.comm.clone(), function: function.to_owned() };
            let leaf = self.rows.entry(key(stack[0])).or_default();
            leaf.own += count;
            leaf.now_own += count;
            leaf.score += count as f64;
            seen.clear();
            for function in stack {
                if seen.insert(function) {
                    let row = self.rows.entry(key(function)).or_default();
                    row.total += count;
                    row.now_total += count;
                }
            }
        }
        self.now_samples = samples;
        self.samples += samples;
        self.refreshes += 1;
    }

    /// The rows worth showing, hottest first (by score, then own time since
    /// the start, then total now, then name).
    pub(crate) fn rows(&self) -> Vec<Row> {
        let pct = |v: u64| if self.now_samples == 0 { 0.0 } else { v as f64 * 100.0 / self.now_samples as f64 };
        let mut rows: Vec<(&RowKey, &Totals)> =
            self.rows.iter().filter(|(_, t)| t.now_total > 0 || t.score >= SHOWN_SCORE).collect();
        rows.sort_by(|(ka, a), (kb, b)| {
            b.score
                .total_cmp(&a.score)
                .then(b.own.cmp(&a.own))
                .then(b.now_total.cmp(&a.now_total))
                .then(b.total.cmp(&a.total))
                .then_with(|| ka.cmp(kb))
        });
        rows.into_iter()
            .map(|(key, t)| Row {
                process: format!("{}[{}]", key.comm, key.pid),
                function: key.function.clone(),
                now_own_pct: pct(t.now_own),
                now_total_pct: pct(t.now_total),
                own: t.own,
                total: t.total,
            })
            .collect()
    }

    /// The screen: a header line, a blank line, the column titles and as
    /// many rows as fit in `height` lines, each cut to `width` characters.
    pub(crate) fn render(&self, header: &Header<'_>, width: usize, height: usize) -> Vec<String> {
        let seconds = |samples: u64| samples as f64 / header.frequency_hz.max(1) as f64;
        let mut lines = vec![
            format!(
                "stackwatch top: {} at {} Hz, {} s, {} samples ({} in the last {}), {} lost; q quits",
                header.target,
                header.frequency_hz,
                header.elapsed.as_secs(),
                self.samples,
                self.now_samples,
                humantime::format_duration(header.interval),
                header.lost
            ),
            String::new(),
            format!(
                "{:>6} {:>7} {:>9} {:>9}  {:<24} {}",
                "%Own", "%Total", "OwnTime", "TotalTime", "Process", "Function"
            ),
        ];
        let room = height.saturating_sub(lines.len());
        for row in self.rows().into_iter().take(room) {
            lines.push(format!(
                "{:>5.1}% {:>6.1}% {:>8.2}s {:>8.2}s  {:<24} {}",
                row.now_own_pct,
                row.now_total_pct,
                seconds(row.own),
                seconds(row.total),
                cut(&row.process, 24),
                row.function
            ));
        }
        if self.samples == 0 {
            lines.push("(no samples yet: the target has not run on a CPU)".to_owned());
        }
        lines.into_iter().map(|line| cut(&line, width)).collect()
    }
}

/// `text` in at most `width` characters, with `…` where it was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::ids::Tid;
    use crate::profile::{Line, Location, Sample};

    /// A CPU profile of `(pid, comm, stack leaf-first, samples)`.
    fn profile(samples: &[(u32, &str, &[&str], i64)]) -> Profile {
        let mut p = Profile::new_cpu(100, SystemTime::UNIX_EPOCH, Duration::from_secs(1));
        let mut index: HashMap<String, usize> = HashMap::new();
        for &(pid, comm, stack, count) in samples {
            let locations = stack
                .iter()
                .map(|&function| {
                    *index.entry(function.to_owned()).or_insert_with(|| {
                        p.locations.push(Location {
                            address: 0x1000 + p.locations.len() as u64,
                            mapping: None,
                            lines: vec![Line { function: function.to_owned(), file: None, line: None }],
                            kernel: false,
                        });
                        p.locations.len() - 1
                    })
                })
                .collect();
            p.samples.push(Sample {
                pid: Pid::new(pid),
                tid: Tid::new(pid),
                comm: comm.to_owned(),
                locations,
                values: vec![count, count * 10_000_000],
            });
        }
        p
    }

    fn header() -> Header<'static> {
        Header {
            target: "the whole host",
            frequency_hz: 100,
            elapsed: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            lost: 0,
        }
    }

    #[test]
    fn own_and_total_per_process_and_function() {
        let mut table = TopTable::default();
        table.add(&profile(&[
            (10, "app", &["hot", "work", "main"], 60),
            (10, "app", &["cold", "work", "main"], 20),
            (20, "db", &["scan", "main"], 20),
        ]));
        let rows = table.rows();
        let row = |process: &str, function: &str| {
            rows.iter().find(|r| r.process == process && r.function == function).cloned().unwrap_or_else(|| {
                panic!("no row {process} {function}: {rows:#?}");
            })
        };
        assert_eq!(rows[0].function, "hot");
        assert_eq!((row("app[10]", "hot").now_own_pct, row("app[10]", "hot").own), (60.0, 60));
        assert_eq!((row("app[10]", "work").own, row("app[10]", "work").total), (0, 80));
        assert_eq!(row("app[10]", "main").now_total_pct, 80.0);
        // Same function name, other process: its own row.
        assert_eq!(row("db[20]", "main").total, 20);
        assert_eq!(row("db[20]", "scan").now_own_pct, 20.0);
    }

    #[test]
    fn recursion_counts_once_in_total() {
        let mut table = TopTable::default();
        table.add(&profile(&[(1, "app", &["fib", "fib", "fib", "main"], 10)]));
        let fib = table.rows().into_iter().find(|r| r.function == "fib").expect("fib row");
        assert_eq!((fib.own, fib.total, fib.now_total_pct), (10, 10, 100.0));
    }

    #[test]
    fn percentages_are_of_now_and_seconds_add_up() {
        let mut table = TopTable::default();
        table.add(&profile(&[(1, "app", &["old", "main"], 100)]));
        table.add(&profile(&[(1, "app", &["new", "main"], 30)]));
        let rows = table.rows();
        let old = rows.iter().find(|r| r.function == "old").expect("old row");
        let new = rows.iter().find(|r| r.function == "new").expect("new row");
        assert_eq!((old.now_own_pct, old.own), (0.0, 100));
        assert_eq!((new.now_own_pct, new.own), (100.0, 30));
        // Still sorted by the decayed score: 100 × 0.5 > 30.
        assert_eq!(rows[0].function, "old");
        table.add(&profile(&[(1, "app", &["new", "main"], 30)]));
        // 25 < 30 + 15.
        assert_eq!(table.rows()[0].function, "new");
        assert_eq!((table.samples, table.now_samples, table.refreshes), (160, 30, 3));
    }

    #[test]
    fn rows_fade_out_of_view() {
        let mut table = TopTable::default();
        table.add(&profile(&[(1, "app", &["gone", "main"], 1)]));
        for _ in 0..6 {
            table.add(&profile(&[(1, "app", &["stays", "main"], 1)]));
        }
        assert!(table.rows().iter().all(|r| r.function != "gone"), "{:#?}", table.rows());
    }

    #[test]
    fn render_fits_the_screen() {
        let mut table = TopTable::default();
        let long = "std::collections::HashMap<alloc::string::String, core::option::Option<u64>>::insert";
        table.add(&profile(&[(10, "app", &[long, "main"], 3), (10, "app", &["b", "main"], 1)]));
        let lines = table.render(&header(), 60, 5);
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:#?}");
        assert!(lines[2].starts_with("  %Own  %Total   OwnTime TotalTime  Process"), "{lines:#?}");
        assert!(lines[3].starts_with(" 75.0%   75.0%     0.03s     0.03s  app[10]"), "{lines:#?}");
        assert!(lines[3].ends_with('…'), "{lines:#?}");
        let wide = table.render(&header(), 200, 50);
        assert_eq!(
            wide[0],
            "stackwatch top: the whole host at 100 Hz, 2 s, 4 samples (4 in the last 1s), 0 lost; q quits"
        );
        assert!(wide[2].ends_with("Process                  Function"), "{wide:#?}");
        assert!(wide.iter().any(|l| l.ends_with(long)), "{wide:#?}");
        assert_eq!(wide.len(), 3 + 3, "main, the long function and b: {wide:#?}");
    }

    #[test]
    fn empty_table_says_why() {
        let table = TopTable::default();
        let lines = table.render(&header(), 100, 10);
        assert_eq!(lines.last().map(String::as_str), Some("(no samples yet: the target has not run on a CPU)"));
    }
}
