//! Smoke tests of the harness itself: the workloads build, run, burn CPU the
//! way their sources say, and die with their `Workload`. No root needed.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use stackwatch_tests::{
    exclusive, go_pprof_top, go_pprof_top_index, parse_pprof_top, require_go, scratch_dir, work_dir, Workload,
    WorkloadKind,
};

#[test]
fn cpu_split_burns_cpu_and_dies_on_drop() {
    let _guard = exclusive();
    let mut workload = Workload::cpu_split();
    let pid = workload.pid();
    workload.wait_busy();

    let before = workload.cpu_time();
    let start = Instant::now();
    thread::sleep(Duration::from_millis(500));
    let used = workload.cpu_time() - before;
    let wall = start.elapsed();
    // One spinning thread: close to one CPU. Half is a generous floor for a
    // busy 2-core CI machine.
    assert!(used.as_secs_f64() >= 0.5 * wall.as_secs_f64(), "cpu_split used {used:?} of CPU in {wall:?}");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    assert!(state.contains("(cpu_split)"), "{state}");
    workload.assert_running();

    drop(workload);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists after the Workload was dropped");
}

#[test]
fn cpu_split_threads_and_duration_arguments_work() {
    let _guard = exclusive();
    let mut workload = Workload::spawn(WorkloadKind::CpuSplit, &["1", "2"]);
    workload.wait_for_cpu(Duration::from_millis(100), Duration::from_secs(10));
    assert_eq!(workload.tids().len(), 2, "THREADS=2 must run two threads");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = workload.try_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "cpu_split 1 did not stop by itself");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn syscalls_workload_spends_its_time_in_the_kernel() {
    let _guard = exclusive();
    let mut workload = Workload::syscalls();
    workload.wait_for_cpu(Duration::from_millis(500), Duration::from_secs(30));
    let (user, system) = workload.cpu_times();
    assert!(system > 2 * user, "syscalls should be kernel-heavy: user {user:?}, system {system:?}");
}

#[test]
fn go_workload_split_is_three_to_one_by_go_runtime_profile() {
    if !require_go() {
        return;
    }
    let _guard = exclusive();
    let dir = scratch_dir("go_workload_split");
    let profile = dir.join("gosplit.pprof");
    let mut cmd = WorkloadKind::GoSplit.command();
    cmd.arg("3").env("GOSPLIT_CPUPROFILE", &profile);
    let mut workload = Workload::spawn_command(WorkloadKind::GoSplit, cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = workload.try_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "gosplit 3 did not stop by itself");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    let top = parse_pprof_top(&go_pprof_top(&profile));
    assert_eq!(top.header("Type"), Some("cpu"));
    let (a, b) = (top.cum("main.hotA"), top.cum("main.hotB"));
    assert!(a > 0.0 && b > 0.0, "hot functions missing:\n{top:#?}");
    let share = a / (a + b);
    assert!((0.75 - share).abs() < 0.08, "main.hotA share {share:.3} is not 3:1 ({top:#?})");
    let in_loop = top.row("main.loop").map_or(0.0, |r| r.cum_pct);
    assert!(in_loop >= 90.0, "main.loop holds only {in_loop}% of the profile");

    let samples = parse_pprof_top(&go_pprof_top_index(&profile, "samples"));
    assert_eq!(samples.header("Type"), Some("samples"));
    let count = samples.cum("main.hotA") + samples.cum("main.hotB");
    assert!(count >= 100.0, "too few samples in 3 s: {count}");
}

#[test]
fn concurrent_builds_share_one_cache_entry() {
    let cache = work_dir().join("build-race-test");
    let _ = std::fs::remove_dir_all(&cache);
    let builders: Vec<_> = (0..3)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || WorkloadKind::Syscalls.build_in(&cache))
        })
        .collect();
    let paths: Vec<_> = builders.into_iter().map(|b| b.join().expect("builder thread").expect("build")).collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
    assert!(paths[0].is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .expect("read cache")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary build dirs left: {leftovers:?}");
}

#[test]
fn exclusive_serializes_holders() {
    let first = exclusive();
    let waiter = thread::spawn(|| {
        let start = Instant::now();
        let _second = exclusive();
        start.elapsed()
    });
    thread::sleep(Duration::from_millis(300));
    drop(first);
    let waited = waiter.join().expect("waiter thread");
    assert!(waited >= Duration::from_millis(250), "second holder waited only {waited:?}");
}
