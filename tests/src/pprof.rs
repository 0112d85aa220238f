//! Reading profiles back with a real client: `go tool pprof -top`, and a
//! parser for its table.

use std::path::Path;
use std::process::Command;

use crate::work_dir;

/// `go tool pprof -top -nodecount=200 -symbolize=none PATH`: the table of the
/// profile's default sample type. `-symbolize=none` makes pprof show the
/// names stored in the profile instead of re-symbolizing from local
/// binaries, so the test checks what stackwatch wrote. Panics if pprof fails.
pub fn go_pprof_top(path: &Path) -> String {
    run_pprof(path, None)
}

/// [`go_pprof_top`] for one sample type, e.g. `"samples"` or `"cpu"`
/// (`-sample_index=INDEX`).
pub fn go_pprof_top_index(path: &Path, sample_index: &str) -> String {
    run_pprof(path, Some(sample_index))
}

/// `go tool pprof -symbolize=none ARGS… PATH`, e.g. `-traces` or
/// `-top -tagfocus=…`. Panics if pprof fails.
pub fn go_pprof(path: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof", "-symbolize=none"]).args(args);
    pprof_output(cmd, path)
}

fn run_pprof(path: &Path, sample_index: Option<&str>) -> String {
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof", "-top", "-nodecount=200", "-symbolize=none"]);
    if let Some(index) = sample_index {
        cmd.arg(format!("-sample_index={index}"));
    }
    pprof_output(cmd, path)
}

fn pprof_output(mut cmd: Command, path: &Path) -> String {
    // pprof keeps state under $HOME/pprof and PPROF_TMPDIR; keep it in the
    // target dir whatever HOME root has.
    let tmp = work_dir().join("pprof-tmp");
    cmd.arg(path).env("PPROF_TMPDIR", &tmp).env("PPROF_BINARY_PATH", &tmp).env("GOTOOLCHAIN", "local");
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) => panic!("failed to run {cmd:?} (is Go installed? `cargo xtask setup`): {err}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// One row of `pprof -top`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopRow {
    /// Flat value in the base unit: nanoseconds for times, bytes for sizes,
    /// plain numbers for counts.
    pub flat: f64,
    pub flat_pct: f64,
    /// Running total of `flat_pct` (the `sum%` column).
    pub sum_pct: f64,
    /// Cumulative value (this function and its callees), base unit as `flat`.
    pub cum: f64,
    pub cum_pct: f64,
    /// Function name as pprof prints it (may contain spaces).
    pub name: String,
}

/// A parsed `pprof -top` report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PprofTop {
    /// The `Key: value` lines before the table (`File`, `Type`, `Duration`, …).
    pub header: Vec<(String, String)>,
    /// The "Showing nodes accounting for …" line.
    pub showing: String,
    pub rows: Vec<TopRow>,
}

impl PprofTop {
    /// The value of a header line such as `Type`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.header.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The row whose name is exactly `name`.
    pub fn row(&self, name: &str) -> Option<&TopRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Flat value of `name`, 0 when absent.
    pub fn flat(&self, name: &str) -> f64 {
        self.row(name).map_or(0.0, |r| r.flat)
    }

    /// Cumulative value of `name`, 0 when absent.
    pub fn cum(&self, name: &str) -> f64 {
        self.row(name).map_or(0.0, |r| r.cum)
    }
}

/// Tolerance on a share measured from `n` samples (and on the difference
/// of two, `n` being then the harmonic half of their counts): 5 points, or
/// 3.5 standard deviations of the binomial noise of a 3:1 split when fewer
/// samples (a busy 2-CPU machine, 99 Hz) make that wider. A fixed 5 points
/// is 2.8 deviations at 590 samples: one run in 200 would fail by chance.
pub fn share_tolerance(n: f64) -> f64 {
    (3.5 * (0.75 * 0.25 / n.max(1.0)).sqrt()).max(0.05)
}

/// Parses the output of `go tool pprof -top`. Panics on a table row it does
/// not understand, so that a format change shows up as a clear failure.
pub fn parse_pprof_top(text: &str) -> PprofTop {
    let mut top = PprofTop::default();
    let mut in_table = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if in_table {
            match parse_row(trimmed) {
                Some(row) => top.rows.push(row),
                None => panic!("unexpected row in pprof -top output: {line:?}\n{text}"),
            }
        } else if trimmed.starts_with("flat") && trimmed.contains("cum%") {
            in_table = true;
        } else if trimmed.starts_with("Showing nodes") {
            top.showing = trimmed.to_owned();
        } else if let Some((key, value)) = trimmed.split_once(": ") {
            top.header.push((key.to_owned(), value.trim().to_owned()));
        }
    }
    top
}

fn parse_row(line: &str) -> Option<TopRow> {
    // Five whitespace-separated columns, then the name (which may contain spaces).
    let mut rest = line;
    let mut cols = [""; 5];
    for col in &mut cols {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        *col = &rest[..end];
        rest = &rest[end..];
    }
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    Some(TopRow {
        flat: parse_value(cols[0])?,
        flat_pct: parse_pct(cols[1])?,
        sum_pct: parse_pct(cols[2])?,
        cum: parse_value(cols[3])?,
        cum_pct: parse_pct(cols[4])?,
        name: name.to_owned(),
    })
}

fn parse_pct(text: &str) -> Option<f64> {
    text.strip_suffix('%')?.parse().ok()
}

/// Parses a pprof-scaled value (`1.43s`, `120ms`, `1.50MB`, `143`) into the
/// base unit (ns, bytes, or a plain count).
fn parse_value(text: &str) -> Option<f64> {
    let split =
        text.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "" | "B" | "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "mins" => 60e9,
        "hrs" => 3600e9,
        "days" => 86400e9,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim output of Go 1.19's `go tool pprof -top` on a gosplit profile.
    const SAMPLE: &str = "\
File: gosplit
Type: cpu
Time: Nov 26, 2026 at 12:41pm (UTC)
Duration: 3.11s, Total samples = 2010ms (64.64%)
Showing nodes accounting for 2010ms, 100% of 2010ms total
      flat  flat%   sum%        cum   cum%
    1430ms 71.14% 71.14%     1530ms 76.12%  main.hotA
     460ms 22.89% 94.03%      480ms 23.88%  main.hotB
     120ms  5.97%   100%      120ms  5.97%  runtime.asyncPreempt
         0     0%   100%     2010ms   100%  main.loop
         0     0%   100%     2010ms   100%  main.main
         0     0%   100%     2.01s   100%  some C++ thing(int, char)
";

    #[test]
    fn parses_go_1_19_top_table() {
        let top = parse_pprof_top(SAMPLE);
        assert_eq!(top.header("Type"), Some("cpu"));
        assert_eq!(top.header("File"), Some("gosplit"));
        assert!(top.showing.starts_with("Showing nodes accounting for 2010ms"));
        assert_eq!(top.rows.len(), 6);
        let hot_a = top.row("main.hotA").expect("main.hotA");
        assert_eq!(hot_a.flat, 1430e6);
        assert_eq!(hot_a.flat_pct, 71.14);
        assert_eq!(hot_a.sum_pct, 71.14);
        assert_eq!(hot_a.cum, 1530e6);
        assert_eq!(hot_a.cum_pct, 76.12);
        assert_eq!(top.flat("main.loop"), 0.0);
        let cum = top.cum("some C++ thing(int, char)");
        assert!((cum - 2.01e9).abs() < 1.0, "{cum}");
        assert_eq!(top.flat("absent"), 0.0);
    }

    #[test]
    fn parses_scaled_values() {
        assert_eq!(parse_value("143"), Some(143.0));
        assert_eq!(parse_value("1.5kB"), Some(1536.0));
        assert_eq!(parse_value("20us"), Some(20e3));
        assert_eq!(parse_value("2mins"), Some(120e9));
        assert_eq!(parse_value("1.2e+06"), Some(1.2e6));
        assert_eq!(parse_value("3parsecs"), None);
    }

    #[test]
    #[should_panic(expected = "unexpected row")]
    fn rejects_unknown_rows() {
        parse_pprof_top("      flat  flat%   sum%        cum   cum%\n garbage\n");
    }
}
