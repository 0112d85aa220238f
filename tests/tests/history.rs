//! The flight recorder end to end, as root against the real kernel: a
//! workload runs `alpha` for a while, then `beta` with at least three times
//! the CPU (on more threads, so a crowded host still gives it the CPU);
//! a daemon with `--history` and a CPU rule watches it. The rule fires on
//! the change, and the capture's history pprof must hold both phases with
//! the right slot times, its diff must show `beta` grown, and the manifest
//! must record the windows.
//!
//! Holds the machine-wide end-to-end lock: the workload's CPU share is what
//! the rule measures.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use stackwatch_tests::daemon::WatchDaemon;
use stackwatch_tests::triggers::{busy_threads, parse_utc, read_manifest, spawn_favoured};
use stackwatch_tests::{e2e_guard, go_pprof, require_go, WorkloadKind};

const ALPHA_SECONDS: u64 = 20;
/// One slot, so phases land in several.
const SLOT_SECONDS: u64 = 2;

/// `(slot start, has alpha, has beta)` of every sample in `-traces`.
fn traces(path: &Path) -> Vec<(SystemTime, bool, bool)> {
    let text = go_pprof(path, &["-traces"]);
    let mut out = Vec::new();
    for block in text.split("-----------+").skip(1).filter(|b| b.lines().any(|l| l.contains("slot:"))) {
        // Labels (`slot:  2026-12-03T13:39:20Z`), then the value and the frames.
        let slot = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("slot:").map(str::trim))
            .unwrap_or_else(|| panic!("a sample without a slot label:\n{block}"));
        let slot = parse_utc(slot).unwrap_or_else(|| panic!("slot `{slot}` is not a time"));
        let frames: Vec<&str> =
            block.lines().filter(|l| !l.contains(':')).filter_map(|l| l.split_whitespace().last()).collect();
        out.push((slot, frames.contains(&"alpha"), frames.contains(&"beta")));
    }
    out
}

/// The `fill` color of the first frame named `name` in an inferno SVG.
fn fill(svg: &str, name: &str) -> (u8, u8, u8) {
    let start = svg.find(&format!("<title>{name} (")).unwrap_or_else(|| panic!("no frame `{name}` in the diff"));
    let rest = &svg[start..];
    let fill = &rest[rest.find("fill=\"rgb(").map_or(0, |i| i + 10)..];
    let rgb: Vec<u8> = fill[..fill.find(')').unwrap_or(0)].split(',').filter_map(|c| c.trim().parse().ok()).collect();
    assert_eq!(rgb.len(), 3, "no color for `{name}`");
    (rgb[0], rgb[1], rgb[2])
}

#[test]
fn a_rule_capture_writes_the_history_before_it_and_what_changed() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    // alpha: one thread a third of the time (a sixth of a 2-CPU host);
    // beta: busy_threads() threads all the time (the whole host when it is
    // quiet, still far above the rule on a crowded one).
    let threads = busy_threads().to_string();
    let mut workload = spawn_favoured(WorkloadKind::Shift, &[&ALPHA_SECONDS.to_string(), &threads]);
    let switch_at = SystemTime::now() + Duration::from_secs(ALPHA_SECONDS);
    let pid = workload.pid().to_string();
    let slot = format!("{SLOT_SECONDS}s");
    let daemon = WatchDaemon::start(
        "history_rule",
        &[
            "--pid",
            &pid,
            "--history",
            "5m",
            "--history-slot",
            &slot,
            "--cpu-above",
            "35",
            "--for",
            "5s",
            "--capture-duration",
            "2s",
        ],
    );
    let manifests = daemon.wait_manifests(1, Duration::from_secs(ALPHA_SECONDS + 60));
    workload.assert_running();
    let manifest_path = &manifests[0];
    let manifest = read_manifest(manifest_path);
    assert_eq!(manifest["trigger"]["type"], "rule", "{manifest:#}");
    let history = &manifest["history"];
    let since = history["condition_since"].as_str().and_then(parse_utc).expect("condition_since");
    // The condition cannot have held during alpha (at most a third of one CPU).
    assert!(since + Duration::from_secs(SLOT_SECONDS) >= switch_at, "{history:#}");
    for key in ["window", "before", "since"] {
        assert!(history[key]["start"].as_str().and_then(parse_utc).is_some(), "{key}: {history:#}");
    }
    assert!(history["before_samples"].as_u64() > Some(0) && history["since_samples"].as_u64() > Some(0), "{history:#}");
    assert!(history["memory_bytes"].as_u64() <= history["memory_budget_bytes"].as_u64(), "{history:#}");

    let name = manifest_path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let history_path =
        manifest_path.with_file_name(name.replace("-capture-", "-cpu-history-").replace(".json", ".pb.gz"));
    let diff_path = manifest_path.with_file_name(name.replace("-capture-", "-cpu-diff-").replace(".json", ".svg"));
    let listed: Vec<&str> =
        manifest["files"].as_array().into_iter().flatten().filter_map(|f| f["path"].as_str()).collect();
    for path in [&history_path, &diff_path] {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(listed.contains(&file), "`{file}` not listed: {listed:?}");
    }

    // Both phases, each in slots of its own time (a slot may straddle the switch).
    let samples = traces(&history_path);
    let slot = Duration::from_secs(SLOT_SECONDS);
    let alpha: Vec<SystemTime> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
    let beta: Vec<SystemTime> = samples.iter().filter(|s| s.2).map(|s| s.0).collect();
    assert!(alpha.len() >= 2 && beta.len() >= 2, "alpha in {} samples, beta in {}", alpha.len(), beta.len());
    assert!(
        alpha.iter().all(|&t| t <= switch_at + slot),
        "alpha labelled after the switch: {alpha:?} vs {switch_at:?}"
    );
    assert!(beta.iter().all(|&t| t + slot + slot >= switch_at), "beta labelled before the switch: {beta:?}");
    // -tagfocus cuts by slot: the newest slot holds beta only.
    let newest = samples.iter().map(|s| s.0).max().expect("samples");
    let label = humantime_like(newest);
    let top = go_pprof(&history_path, &["-top", &format!("-tagfocus=slot={label}")]);
    assert!(top.contains("beta") && !top.contains("alpha"), "-tagfocus=slot={label}:\n{top}");

    // The diff: beta grew (red), alpha shrank (blue), windows in the subtitle.
    let svg = fs::read_to_string(&diff_path).expect("diff svg");
    let (r, g, b) = fill(&svg, "beta");
    assert!(r == 255 && g == b && g < 250, "beta should be red, is rgb({r},{g},{b})");
    // Widths are the new side's: alpha, gone since the cut, is drawn only
    // if a slot it ran in straddles the cut, and then as shrunk.
    if svg.contains("<title>alpha (") {
        let (r, g, b) = fill(&svg, "alpha");
        assert!(b == 255 && r == g && r < 250, "alpha should be blue, is rgb({r},{g},{b})");
    }
    assert!(svg.contains("before ") && svg.contains("since "), "windows in the subtitle");
    assert_eq!(daemon.stop().status.code(), Some(0));
}

/// `2026-12-03T14:40:10Z`: the slot label's spelling, as a regex that matches only it.
fn humantime_like(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since the epoch → civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Short-lived processes, one after the other, in a process group of their
/// own that is killed (by its id) when dropped.
struct Churn(std::process::Child);

impl Churn {
    fn start() -> Self {
        use std::os::unix::process::CommandExt as _;
        let script = "while :; do sh -c 'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done'; done";
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("failed to start the churn");
        Self(child)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        // SAFETY: signals the churn's own process group (its id is the group's).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn the_history_stays_within_its_memory_budget_under_churn() {
    let Some(_guard) = e2e_guard() else { return };
    // Whole host, fast sampling and 1 s slots: many slots of new stacks
    // from new processes, far more than 1 MiB in the 30 s the test runs
    // (about 80 bytes a sample: at 199 Hz two CPUs give at most 12 000
    // samples, 0.96 MiB, which once fell short; at 499 Hz, 2.4 MiB).
    let churn = Churn::start();
    let daemon = WatchDaemon::start(
        "history_budget",
        &["--history", "10m", "--history-slot", "1s", "--history-memory", "1MiB", "--history-frequency", "499"],
    );
    let budget_kib = 1024;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(5));
        let status = daemon.ctl_ok(&["status"]);
        let line = status.lines().find(|l| l.starts_with("history: ")).unwrap_or_else(|| panic!("{status}"));
        // `history: N samples in M slots, X of 1024 KiB, D slots dropped`
        let held: u64 = line
            .split(", ")
            .find_map(|p| p.strip_suffix(&format!(" of {budget_kib} KiB")))
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no memory figure in `{line}`"));
        assert!(held <= budget_kib, "{line}");
    }
    daemon.ctl_ok(&["start", "1s"]);
    let manifests = daemon.wait_manifests(1, Duration::from_secs(60));
    drop(churn);
    let manifest = read_manifest(&manifests[0]);
    let history = &manifest["history"];
    let (bytes, budget) = (history["memory_bytes"].as_u64(), history["memory_budget_bytes"].as_u64());
    assert_eq!(budget, Some(1 << 20), "{history:#}");
    assert!(bytes <= budget && bytes > Some(0), "{history:#}");
    assert!(history["merged_slots"].as_u64() > Some(0), "the oldest slots are merged first: {history:#}");
    assert!(history["dropped_slots"].as_u64() > Some(0), "then dropped: {history:#}");
    assert!(history["dropped_samples"].as_u64() > Some(0), "and counted: {history:#}");
    assert!(history["samples"].as_u64() > Some(0), "{history:#}");
    assert_eq!(daemon.stop().status.code(), Some(0));
}
