//! End-to-end tests of `watch`'s threshold triggers, as root
//! against the real kernel: the `phases` workload stays idle and then burns
//! every CPU, or grows its resident memory steadily, while a daemon with a
//! rule watches it; the captures the rule starts are read back with
//! `go tool pprof`.
//!
//! Every test holds the machine-wide end-to-end lock (see
//! `stackwatch_tests::exclusive`) except the usage-error one, which loads
//! nothing. Durations are a few seconds each: `--for 2s`/`3s` at the default
//! one-second sampling, captures of 1-2 s.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use stackwatch_tests::capture::{assert_exit, TestCgroup};
use stackwatch_tests::daemon::WatchDaemon;
use stackwatch_tests::triggers::{
    growing_memory, idle_then_busy, kinds_written, parse_utc, profile_of, read_manifest, seconds_between, svg_of,
};
use stackwatch_tests::{
    e2e_guard, go_pprof_top, parse_pprof_top, require_go, run_stackwatch_timeout, scratch_dir, Workload, WorkloadKind,
};

/// Bound on anything the daemon does on its own (a rule firing and the
/// capture being written); generous because the host is shared.
const SETTLE: Duration = Duration::from_secs(30);

/// Sleeps until the wall clock reaches `at` (returns at once if it has).
fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        thread::sleep(left);
    }
}

/// Asserts the cpu profile of a capture is dominated by `phase_hot`.
fn assert_phase_hot(manifest: &Path) {
    let pprof = profile_of(manifest, "cpu");
    let text = go_pprof_top(&pprof);
    let top = parse_pprof_top(&text);
    let hot = top.row("phase_hot").map_or(0.0, |r| r.flat_pct);
    assert!(hot >= 50.0, "phase_hot should hold most samples of `{}`:\n{text}", pprof.display());
    assert!(top.cum("burn_phase") >= top.flat("phase_hot"), "phase_hot must run under burn_phase:\n{text}");
}

#[test]
fn a_cpu_rule_fires_once_after_the_idle_part_and_not_again_within_the_cooldown() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let (mut workload, busy_at) = idle_then_busy(Duration::from_secs(5));
    let pid = workload.pid().to_string();
    let daemon = WatchDaemon::start(
        "triggers_cpu",
        &["--pid", &pid, "--cpu-above", "40", "--for", "3s", "--capture-duration", "2s"],
    );
    let status = daemon.ctl_ok(&["status"]);
    assert!(status.contains("triggers: cpu ≥ 40% for 3s"), "{status}");

    // The idle part: the rule cannot hold, nothing is captured.
    sleep_until(busy_at - Duration::from_millis(300));
    workload.assert_running();
    assert!(daemon.manifests().is_empty(), "a capture during the idle part:\n{}", daemon.stderr());
    assert_eq!(daemon.state(), "idle");

    let manifests = daemon.wait_manifests(1, SETTLE);
    let manifest = read_manifest(&manifests[0]);
    assert_eq!(manifest["trigger"]["type"], "rule", "{manifest:#}");
    assert_eq!(manifest["trigger"]["rule"], "cpu ≥ 40% for 3s", "{manifest:#}");
    assert!(manifest["trigger"]["observed"].as_str().is_some_and(|o| o.starts_with("avg ")), "{manifest:#}");
    let started = manifest["start"].as_str().and_then(parse_utc).expect("manifest start time");
    let lag = seconds_between(busy_at, started);
    eprintln!("note: the capture started {lag:.2} s after the workload turned busy (--for 3s, 1 s samples)");
    // Three intervals at or above 40 %, the first of which may start a
    // little before the busy phase. (No upper bound but SETTLE: on a shared
    // host the workload may get less than 40 % for a while.)
    assert!(lag >= 2.0, "the capture started {lag:.2} s after the busy phase began, before 3 s of it");
    assert_eq!(kinds_written(&manifest), ["cpu", "offcpu"], "a cpu rule captures cpu and offcpu");
    assert_phase_hot(&manifests[0]);
    let svg = fs::read_to_string(svg_of(&manifests[0], "cpu")).unwrap_or_default();
    assert!(svg.contains("triggered: cpu ≥ 40% for 3s (observed avg "), "the flamegraph subtitle gives the reason");
    let log = daemon.stderr();
    let fired = log.lines().find(|l| l.contains("rule cpu ≥ 40% for 3s fired: avg "));
    let fired_at = fired.and_then(|l| l.split_whitespace().next()).and_then(parse_utc);
    let fired_at = fired_at.unwrap_or_else(|| panic!("no timestamped `fired` line in the log:\n{log}"));
    let latency = seconds_between(fired_at, started);
    // The manifest's start has millisecond resolution, the log microseconds.
    eprintln!("note: the capture started {:.1} ms after the rule fired (1 ms resolution)", latency * 1e3);
    assert!(latency < 1.0, "the capture started {latency:.3} s after the rule fired:\n{log}");
    assert!(log.contains("capture started; triggered: cpu ≥ 40% for 3s"), "{log}");

    // Still busy, but the default 10m cooldown holds: without it the rule
    // would fire again 3 s after the capture was written.
    thread::sleep(Duration::from_secs(6));
    workload.assert_running();
    assert_eq!(daemon.manifests().len(), 1, "a second triggered capture inside the cooldown:\n{}", daemon.stderr());
    let status = daemon.ctl_ok(&["status"]);
    assert!(status.contains("left") && status.contains("cooldown"), "{status}");

    // Manual control works beside the triggers, with the kinds asked for.
    daemon.ctl_ok(&["start", "1s", "--profiles", "offcpu,cpu"]);
    let manifests = daemon.wait_manifests(2, SETTLE);
    let manual = read_manifest(&manifests[1]);
    assert_eq!(manual["trigger"], serde_json::json!({"type": "manual", "source": "ctl"}));
    assert_eq!(kinds_written(&manual), ["cpu", "offcpu"]);
    daemon.wait_state("idle", SETTLE);
    // A kind the daemon was not started with (a CPU rule loads cpu and
    // offcpu) is loaded for the capture that asks for it, and unloaded after.
    let started = daemon.ctl_ok(&["start", "1s", "--profiles", "cpu,memory"]);
    assert!(started.contains("capture started") && started.contains("cpu,memory"), "{started}");
    let manifests = daemon.wait_manifests(3, SETTLE);
    let on_demand = read_manifest(&manifests[2]);
    assert_eq!(kinds_written(&on_demand), ["cpu", "memory"], "{on_demand:#}");
    daemon.wait_state("idle", SETTLE);
    let log = daemon.stderr();
    assert!(log.contains("loading the programs of the memory profile for this capture"), "{log}");
    assert!(log.contains("unloaded the programs of the memory profile loaded for the last capture"), "{log}");
    assert_eq!(daemon.stop().status.code(), Some(0));
}

/// `--cpu-above` as `top` reads it: a single-threaded burner is at most 1
/// core, so a percentage of all the CPUs above one CPU's share can never
/// hold, and the daemon says so at start; `0.2cores` fires, with the
/// reading in both units.
#[test]
fn a_cores_rule_fires_and_an_unreachable_percent_rule_is_reported_at_start() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let mut burner = Workload::spawn(WorkloadKind::CpuSplit, &["0", "1"]);
    burner.wait_busy();
    let pid = burner.pid().to_string();
    // The CPUs this test may use: the daemon's capacity on a host without a
    // quota (this host's CPUs are all online and in every affinity mask).
    let cpus = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // The cores rule first: when both hold (one CPU), the first one fires.
    let daemon = WatchDaemon::start(
        "triggers_cores",
        &[
            "--pid",
            &pid,
            "--cpu-above",
            "0.2cores",
            "--for",
            "2s",
            "--cpu-above",
            "90%",
            "--for",
            "2s",
            "--capture-duration",
            "1s",
        ],
    );
    let status = daemon.ctl_ok(&["status"]);
    assert!(status.contains("triggers: cpu ≥ 0.2 cores for 2s [= "), "{status}");
    let manifests = daemon.wait_manifests(1, SETTLE);
    let manifest = read_manifest(&manifests[0]);
    assert_eq!(manifest["trigger"]["rule"], "cpu ≥ 0.2 cores for 2s", "{manifest:#}");
    let observed = manifest["trigger"]["observed"].as_str().unwrap_or_default();
    assert!(observed.starts_with("avg ") && observed.contains(" cores (") && observed.contains("%)"), "{observed}");
    let log = daemon.stderr();
    let warning = "rule `cpu ≥ 90% for 2s` cannot fire: it needs";
    if cpus >= 2 {
        assert!(log.contains(warning) && log.contains("its 1 thread can use at most 1 core"), "{log}");
        let status = daemon.ctl_ok(&["status"]);
        assert!(status.contains(&format!("warning: {warning}")), "{status}");
    } else {
        assert!(!log.contains(warning), "one CPU: 90% is reachable by one thread:\n{log}");
    }
    burner.assert_running();
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn a_memory_rule_fires_once_and_captures_the_memory_profile() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    // 40 MiB/s for 12 s: past 64 MiB within two seconds, and still growing
    // while the triggered capture runs.
    let mut workload = growing_memory(2048, 50, 480);
    let pid = workload.pid().to_string();
    let daemon = WatchDaemon::start(
        "triggers_mem",
        &["--pid", &pid, "--mem-above", "64MiB", "--for", "2s", "--capture-duration", "2s"],
    );
    let manifests = daemon.wait_manifests(1, SETTLE);
    let manifest = read_manifest(&manifests[0]);
    assert_eq!(manifest["trigger"]["type"], "rule", "{manifest:#}");
    assert_eq!(manifest["trigger"]["rule"], "memory ≥ 64MiB for 2s", "{manifest:#}");
    assert_eq!(kinds_written(&manifest), ["cpu", "memory"], "a memory rule captures memory and cpu");
    let memory = profile_of(&manifests[0], "memory");
    let text = go_pprof_top(&memory);
    let top = parse_pprof_top(&text);
    assert!(
        top.cum("grow_phase") > 0.0,
        "the memory profile should show the growth in grow_phase (`{}`):\n{text}",
        memory.display()
    );

    // Memory stays above the bar; the cooldown keeps it to one capture.
    thread::sleep(Duration::from_secs(4));
    workload.assert_running();
    assert_eq!(daemon.manifests().len(), 1, "the memory rule fired again:\n{}", daemon.stderr());
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn a_name_target_is_waited_for_and_followed_across_a_restart() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let daemon = WatchDaemon::start(
        "triggers_name",
        // The cooldown outlasts the checks of one capture: the rule cannot
        // fire again on a process the test is about to kill.
        &["--name", "^phases$", "--cpu-above", "40", "--for", "2s", "--capture-duration", "1s", "--cooldown", "10s"],
    );
    // Not started yet: waited for, quietly.
    thread::sleep(Duration::from_secs(2));
    let status = daemon.ctl_ok(&["status"]);
    assert!(status.contains("no reading of the target yet (not running"), "{status}");
    assert!(daemon.manifests().is_empty());

    let mut pids = Vec::new();
    for n in 1..=2 {
        let (mut workload, _) = idle_then_busy(Duration::ZERO);
        let pid = workload.pid();
        pids.push(pid);
        let manifests = daemon.wait_manifests(n, SETTLE);
        workload.assert_running();
        // Dropping it kills it: the next one is a restart under a new pid.
        drop(workload);
        // Found by pid: file names sort by pid, not by time.
        let of_pid: Vec<_> =
            manifests.iter().filter(|m| read_manifest(m)["target"]["pids"] == serde_json::json!([pid])).collect();
        assert_eq!(of_pid.len(), 1, "one capture of pid {pid} in {manifests:?}:\n{}", daemon.stderr());
        let manifest = read_manifest(of_pid[0]);
        assert_eq!(manifest["trigger"]["type"], "rule", "{manifest:#}");
        assert_phase_hot(of_pid[0]);
    }
    assert_ne!(pids[0], pids[1]);
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn a_cgroup_target_configured_in_a_file_fires_on_its_processes() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    // Declared before the workload, so the workload is killed first and
    // the cgroup can be removed.
    let cgroup = TestCgroup::create("triggers");
    let dir = scratch_dir("triggers_cgroup");
    let config = dir.join("watch.toml");
    let toml = format!(
        "cgroup = \"{}\"\ntriggers = [\"cpu-above 40 for 2s\"]\ncapture-duration = \"1s\"\n",
        cgroup.path().display()
    );
    if let Err(err) = fs::write(&config, toml) {
        panic!("failed to write `{}`: {err}", config.display());
    }
    let config_arg = config.to_string_lossy().into_owned();
    let (control, output) = (dir.join("run").join("control"), dir.join("out"));
    let daemon = WatchDaemon::start_in(dir, control, output, &["--config", &config_arg]);

    let (mut workload, busy_at) = idle_then_busy(Duration::from_secs(3));
    cgroup.add(workload.pid());
    sleep_until(busy_at - Duration::from_millis(300));
    assert!(daemon.manifests().is_empty(), "a capture during the idle part:\n{}", daemon.stderr());

    let manifests = daemon.wait_manifests(1, SETTLE);
    let manifest = read_manifest(&manifests[0]);
    assert_eq!(manifest["target"]["kind"], "cgroup", "{manifest:#}");
    assert_eq!(manifest["trigger"]["rule"], "cpu ≥ 40% for 2s", "{manifest:#}");
    assert_phase_hot(&manifests[0]);
    workload.assert_running();
    drop(workload);
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn bad_rules_are_usage_errors_with_one_clear_line() {
    let dir = scratch_dir("triggers_usage");
    let config = dir.join("watch.toml");
    if let Err(err) = fs::write(&config, "triggers = [\"cpu-above 80\", \"for 3m\"]\n") {
        panic!("failed to write `{}`: {err}", config.display());
    }
    let config_arg = config.to_string_lossy().into_owned();
    let control: PathBuf = dir.join("run").join("control");
    let control_arg = control.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--cpu-above", "140%", "--for", "3s"],
            "error: invalid value `140%` for `--cpu-above`: the percentage must be greater than 0 and at most 100",
        ),
        (
            &["--cpu-above", "140", "--for", "3s"],
            "error: invalid value `140` for `--cpu-above`: a bare number is a percentage of all the CPUs available \
             to the target, at most 100; for `top`'s reading of 140% write `1.4cores`",
        ),
        (
            &["--cpu-above", "0.9c", "--for", "3s"],
            "error: invalid value `0.9c` for `--cpu-above`: unknown CPU level; write `80%`",
        ),
        (
            &["--cpu-above", "80", "--for", "-3s"],
            "error: invalid value `-3s` for `--for`: a duration cannot be negative",
        ),
        (&["--mem-above", "80", "--for=-3s"], "error: invalid value `-3s` for `--for`: a duration cannot be negative"),
        (&["--cpu-above", "80"], "error: `--cpu-above 80` needs a `--for DURATION` right after it"),
        (&["--config", &config_arg], "error: invalid `triggers` in config file"),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["watch", "--control", &control_arg, "--output-dir", "/nonexistent/stackwatch-out"];
        argv.extend_from_slice(args);
        let out = run_stackwatch_timeout(&argv, Duration::from_secs(30));
        assert_exit(&out, 2, &format!("watch {}", args.join(" ")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for `{}`:\n{stderr}", args.join(" "));
        assert!(lines[0].starts_with(expected), "for `{}`:\n{stderr}", args.join(" "));
        // Refused before anything was set up.
        assert!(!control.exists() && !control.parent().is_some_and(Path::exists), "{}", control.display());
    }
}
