//! End-to-end tests of `stackwatch diff`: issue 16, part 3.
//!
//! The known answer comes from the `godiff` workload, which burns CPU in
//! phases whose hot function changes (`main.alpha` 3:1 over `main.beta`,
//! then the reverse), and writes the Go runtime's own CPU profile of each
//! phase with `runtime/pprof`. The reference for the shares `diff` prints is
//! `go tool pprof -top` on the same files, never a previous run. The first
//! test needs no root (diff reads files); the second diffs two `record`
//! captures, and a capture against Go's own profile, so it loads eBPF.
//!
//! Both hold the machine-wide end-to-end lock, because the workload burns a
//! CPU and would skew another test's measured shares.

#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use stackwatch_tests::capture::{assert_exit, svg_frames, svg_title, Capture};
use stackwatch_tests::{
    e2e_guard, go_pprof_top, parse_pprof_top, require_go, run_stackwatch, scratch_dir, PprofTop, Workload, WorkloadKind,
};

/// Largest gap between a share `diff` prints and `go tool pprof -top`'s, in points.
const PPROF_TOLERANCE_PP: f64 = 0.5;

/// One row of a `stackwatch diff` table (shares in percent, deltas in points).
#[derive(Clone, Debug)]
struct Row {
    base_flat: f64,
    new_flat: f64,
    flat_delta: f64,
    base_cum: f64,
    new_cum: f64,
    cum_delta: f64,
    function: String,
}

/// The two tables of a `stackwatch diff` run.
#[derive(Debug, Default)]
struct Report {
    grew: Vec<Row>,
    shrank: Vec<Row>,
}

impl Report {
    fn first_grower(&self) -> Option<&str> {
        self.grew.first().map(|r| r.function.as_str())
    }

    fn first_shrinker(&self) -> Option<&str> {
        self.shrank.first().map(|r| r.function.as_str())
    }

    /// The first grower outside Go's runtime. On a crowded host Go's own
    /// profiler charges the samples of a preempted goroutine to
    /// `runtime.asyncPreempt` at the leaf (30 % of them with a load of 40
    /// on 2 CPUs), which then grows against a stackwatch capture that saw
    /// the same code: a true answer, but not the workload's change.
    fn first_grower_outside_runtime(&self) -> Option<&str> {
        self.grew.iter().map(|r| r.function.as_str()).find(|f| !f.starts_with("runtime."))
    }

    fn row(&self, function: &str) -> Option<&Row> {
        self.grew.iter().chain(&self.shrank).find(|r| r.function == function)
    }
}

/// Parses what `stackwatch diff` prints. Panics on a line inside a table it
/// does not understand, so a format change shows up as a clear failure.
fn parse_report(text: &str) -> Report {
    let mut report = Report::default();
    let mut table: Option<&mut Vec<Row>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Grew most") {
            table = Some(&mut report.grew);
        } else if trimmed.starts_with("Shrank most") {
            table = Some(&mut report.shrank);
        } else if trimmed.is_empty() || trimmed.starts_with("wrote ") {
            table = None;
        } else if let Some(rows) = table.as_deref_mut() {
            if trimmed.starts_with("base flat") || trimmed.starts_with("(no function") {
                continue;
            }
            rows.push(parse_row(trimmed).unwrap_or_else(|| panic!("unexpected table row {line:?} in:\n{text}")));
        }
    }
    report
}

fn parse_row(line: &str) -> Option<Row> {
    let mut rest = line;
    let mut cols = [0.0; 6];
    for col in &mut cols {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        let text = &rest[..end];
        *col = text.strip_suffix('%').or_else(|| text.strip_suffix("pp"))?.parse().ok()?;
        rest = &rest[end..];
    }
    let function = rest.trim();
    (!function.is_empty()).then(|| Row {
        base_flat: cols[0],
        new_flat: cols[1],
        flat_delta: cols[2],
        base_cum: cols[3],
        new_cum: cols[4],
        cum_delta: cols[5],
        function: function.to_owned(),
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("scratch paths are UTF-8")
}

/// `stackwatch diff ARGS…`, which must succeed; its stdout, parsed.
fn diff_ok(args: &[&str]) -> (Report, String) {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    let output = run_stackwatch(&all);
    assert_exit(&output, 0, &format!("stackwatch {}", all.join(" ")));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("$ stackwatch {}\n{stdout}", all.join(" "));
    (parse_report(&stdout), stdout)
}

/// A refused `stackwatch diff ARGS…`: exit code 2, one `error:` line on stderr.
fn diff_refused(args: &[&str]) -> String {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    let output: Output = run_stackwatch(&all);
    assert_exit(&output, 2, &format!("stackwatch {}", all.join(" ")));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// Checks `diff`'s base (or new) shares of `functions` against `go tool pprof -top` of that file.
fn assert_matches_pprof(report: &Report, file: &Path, new_side: bool, functions: &[&str]) {
    let text = go_pprof_top(file);
    let top: PprofTop = parse_pprof_top(&text);
    for &function in functions {
        let row = report.row(function).unwrap_or_else(|| panic!("`{function}` is in neither table: {report:#?}"));
        let (flat, cum) = if new_side { (row.new_flat, row.new_cum) } else { (row.base_flat, row.base_cum) };
        let reference = top.row(function).unwrap_or_else(|| panic!("`{function}` missing from pprof -top:\n{text}"));
        println!(
            "{function} in `{}`: diff flat {flat:.2}% cum {cum:.2}%, pprof flat {:.2}% cum {:.2}%",
            file.display(),
            reference.flat_pct,
            reference.cum_pct
        );
        assert!(
            (flat - reference.flat_pct).abs() <= PPROF_TOLERANCE_PP
                && (cum - reference.cum_pct).abs() <= PPROF_TOLERANCE_PP,
            "`{function}`: diff says flat {flat}% cum {cum}%, pprof -top says flat {}% cum {}%:\n{text}",
            reference.flat_pct,
            reference.cum_pct
        );
    }
}

/// The fill of the first SVG frame named `function`.
fn fill(svg: &str, function: &str) -> (u8, u8, u8) {
    let frames = svg_frames(svg);
    match frames.iter().find(|f| f.function == function) {
        Some(frame) => frame.fill,
        None => panic!("no frame `{function}` in the SVG: {frames:?}"),
    }
}

/// The test: two profiles written by Go's runtime/pprof, phase 1
/// mostly in `main.alpha`, phase 2 mostly in `main.beta`.
#[test]
fn go_runtime_profiles_diff_ranks_the_changed_function_first() {
    if !require_go() {
        return;
    }
    let _lock = stackwatch_tests::exclusive();
    let dir = scratch_dir("diff-go");
    let (p1, p2, svg) = (dir.join("phase1.pb.gz"), dir.join("phase2.pb.gz"), dir.join("d.svg"));
    let (p1s, p2s, svgs) = (path_str(&p1), path_str(&p2), path_str(&svg));
    // Phases of different lengths: shares, not totals, must decide.
    let mut workload = Workload::spawn(WorkloadKind::GoDiff, &[&format!("alpha:1.5:{p1s}"), &format!("beta:1:{p2s}")]);
    let status = workload.wait(Duration::from_secs(60));
    assert!(status.success(), "godiff failed: {status}");

    let (report, stdout) = diff_ok(&[p1s, p2s, "-o", svgs, "--top", "5"]);
    assert_eq!(report.first_grower(), Some("main.beta"), "{stdout}");
    assert_eq!(report.first_shrinker(), Some("main.alpha"), "{stdout}");
    assert!(report.grew.len() <= 5 && report.shrank.len() <= 5, "--top 5: {stdout}");
    // By design beta goes from a quarter of the work to three quarters (+50
    // points); on a crowded host the Go runtime's own share (preemption,
    // 17 % of a phase in one run) eats into both, hence the margin.
    let (beta, alpha) = (&report.grew[0], &report.shrank[0]);
    assert!(beta.flat_delta > 15.0 && beta.cum_delta > 15.0, "{beta:?}");
    assert!(alpha.flat_delta < -15.0 && alpha.cum_delta < -15.0, "{alpha:?}");
    assert!(stdout.contains(&format!("base `{p1s}`")) && stdout.contains(&format!("new  `{p2s}`")), "{stdout}");
    assert!(stdout.contains(" cpu\n") && stdout.contains("cpu/nanoseconds total"), "{stdout}");
    assert!(stdout.contains(&format!("wrote `{svgs}`")), "{stdout}");

    // The reference: go tool pprof's own shares of the same files.
    assert_matches_pprof(&report, &p1, false, &["main.alpha", "main.beta"]);
    assert_matches_pprof(&report, &p2, true, &["main.alpha", "main.beta"]);

    // The differential flamegraph: named, both files in it, red growth, blue shrinkage.
    let text = fs::read_to_string(&svg).expect("the SVG was written");
    assert_eq!(svg_title(&text).as_deref(), Some("stackwatch diff — cpu"));
    assert!(text.contains("phase1.pb.gz (") && text.contains("phase2.pb.gz ("), "both files in the subtitle");
    let (r, g, b) = fill(&text, "main.beta");
    assert!(r == 255 && g == b && g < 200, "main.beta is not red: {:?}", (r, g, b));
    let (r, g, b) = fill(&text, "main.alpha");
    assert!(b == 255 && r == g && r < 200, "main.alpha is not blue: {:?}", (r, g, b));

    // The other way round, the roles swap.
    let (swapped, stdout) = diff_ok(&[p2s, p1s, "--top", "3"]);
    assert_eq!(swapped.first_grower(), Some("main.alpha"), "{stdout}");
    assert_eq!(swapped.first_shrinker(), Some("main.beta"), "{stdout}");

    // Refusals: an existing -o is not replaced; an SVG is not a profile.
    let before = fs::read(&svg).expect("read the SVG");
    let message = diff_refused(&[p1s, p2s, "-o", svgs]);
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(fs::read(&svg).expect("read the SVG"), before, "the SVG was replaced");
    let message = diff_refused(&[p1s, svgs]);
    assert!(message.contains("is not a pprof profile"), "{message}");
    let message = diff_refused(&[p1s, p2s, "--sample-index", "alloc_space"]);
    assert!(message.contains("has no sample type `alloc_space`"), "{message}");
}

/// Two `record` captures of the workload, before and after its hot function
/// changed, and a capture against Go's own profile of the second phase.
#[test]
fn record_captures_diff_with_each_other_and_with_gos_own_profile() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("diff-record");
    let (before_dir, after_dir) = (dir.join("before"), dir.join("after"));
    for d in [&before_dir, &after_dir] {
        fs::create_dir_all(d).expect("create the capture directories");
    }
    let record = |workload: &Workload, out: &Path| {
        let pid = workload.pid().to_string();
        let args = ["record", "--pid", &pid, "--duration", "2s", "--output-dir", path_str(out)];
        assert_exit(&run_stackwatch(&args), 0, &format!("stackwatch {}", args.join(" ")));
        Capture::read(out).pprof().to_owned()
    };

    let mut alpha = Workload::spawn(WorkloadKind::GoDiff, &["alpha:0"]);
    alpha.wait_busy();
    let before = record(&alpha, &before_dir);
    drop(alpha);

    let go_beta = dir.join("go-beta.pb.gz");
    let mut beta = Workload::spawn(WorkloadKind::GoDiff, &[&format!("beta:4:{}", path_str(&go_beta))]);
    beta.wait_busy();
    let after = record(&beta, &after_dir);
    let status = beta.wait(Duration::from_secs(60));
    assert!(status.success(), "godiff failed: {status}");

    let (report, stdout) = diff_ok(&[path_str(&before), path_str(&after), "--top", "5"]);
    assert_eq!(report.first_grower(), Some("main.beta"), "{stdout}");
    assert_eq!(report.first_shrinker(), Some("main.alpha"), "{stdout}");
    assert_matches_pprof(&report, &before, false, &["main.alpha", "main.beta"]);
    assert_matches_pprof(&report, &after, true, &["main.alpha", "main.beta"]);

    // stackwatch's capture against Go's own profile: both cpu/nanoseconds.
    let (report, stdout) = diff_ok(&[path_str(&before), path_str(&go_beta), "--top", "5"]);
    assert_eq!(report.first_grower_outside_runtime(), Some("main.beta"), "{stdout}");
    assert_eq!(report.first_shrinker(), Some("main.alpha"), "{stdout}");
}
