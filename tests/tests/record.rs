//! End-to-end tests of `stackwatch record`, one test per promise it makes,
//! with the real eBPF program against real processes.
//!
//! Every test holds the machine-wide end-to-end lock, writes into its own
//! scratch directory and kills what it started on the way out (the guards'
//! `Drop`). Expected values come from the workloads' design (a 3:1 split,
//! `main -> loop -> hot` call chains) or from independent measurements
//! (CPU time from `/proc/<pid>/stat`), never from a previous run; the
//! measured numbers are printed (`--nocapture` shows them) so they can be
//! reported.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use stackwatch_tests::capture::{
    assert_exit, c_function_lines, elf_build_id, entries_under, file_name, parse_utc, pprof_raw, pprof_tags,
    read_folded, svg_frames, svg_title, Capture, CpuWatch, RawProfile, RawSample, ReadOnlyBind, TestCgroup, Tmpfs,
};
use stackwatch_tests::{
    e2e_guard, go_pprof_top, parse_pprof_top, require_go, run_stackwatch, run_with_timeout, scratch_dir,
    share_tolerance, stackwatch_bin, Spawned, Workload, WorkloadKind,
};

/// Longest fraction of hot-function samples allowed to lack their callers.
/// With frame pointers in every function of the call chain, unwinding loses
/// a caller only in the few instructions of a prologue or epilogue; a hot
/// function without a frame (a true leaf) would lose it in nearly every sample.
const MAX_CALLER_MISSING: f64 = 0.05;

/// `record ARGS… --output-dir OUT`, which must succeed; returns the files it wrote.
fn record_ok(args: &[&str], out: &Path) -> (Capture, Output) {
    let mut all: Vec<&str> = args.to_vec();
    let out_text = out.to_str().expect("scratch paths are UTF-8");
    all.extend(["--output-dir", out_text]);
    let output = run_stackwatch(&all);
    assert_exit(&output, 0, &format!("stackwatch {}", all.join(" ")));
    let capture = Capture::read(out);
    // The paths it prints are the files it wrote.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for file in &capture.files {
        assert!(stdout.contains(&file_name(file)), "stdout does not list `{}`:\n{stdout}", file.display());
    }
    (capture, output)
}

/// `part / (part + other)`, 0 when both are 0.
fn share(part: f64, other: f64) -> f64 {
    if part + other > 0.0 {
        part / (part + other)
    } else {
        0.0
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Whether `needle` occurs in `stack` in order (not necessarily adjacent).
fn has_subsequence(stack: &[&str], needle: &[&str]) -> bool {
    let mut it = stack.iter();
    needle.iter().all(|n| it.any(|f| f == n))
}

/// Checks the 3:1 split in `go tool pprof -top` and returns hot_a's share.
fn assert_three_to_one(pprof: &Path, hot_a: &str, hot_b: &str) -> f64 {
    let text = go_pprof_top(pprof);
    let top = parse_pprof_top(&text);
    assert_eq!(top.header("Type"), Some("cpu"), "default sample type must be cpu:\n{text}");
    let (a, b) = (top.flat(hot_a), top.flat(hot_b));
    assert!(a > 0.0 && b > 0.0, "`{hot_a}` and `{hot_b}` must both have flat time:\n{text}");
    let share_a = share(a, b);
    let cum_share_a = share(top.cum(hot_a), top.cum(hot_b));
    eprintln!(
        "measured: {hot_a} {} / {hot_b} {} of their combined flat time (by cum: {} / {})",
        pct(share_a),
        pct(1.0 - share_a),
        pct(cum_share_a),
        pct(1.0 - cum_share_a)
    );
    // Flat time is samples × period: the tolerance follows their number.
    let samples = (a + b) / pprof_raw(pprof).period as f64;
    let tolerance = share_tolerance(samples);
    assert!(
        (share_a - 0.75).abs() <= tolerance,
        "{hot_a} has {} of the two hot functions' flat time ({samples:.0} samples), not 75 % ± {:.1} points:\n{text}",
        pct(share_a),
        100.0 * tolerance
    );
    share_a
}

/// How often unwinding lost the callers of the hot functions.
#[derive(Debug)]
struct CallerLoss {
    hot: u64,
    full_chain: u64,
    without_loop: u64,
    without_main: u64,
}

/// Among samples in `hot` functions (anywhere on the stack), counts those
/// whose user stack holds the whole `main -> loop -> hot` chain, and those
/// missing the loop function or `main`.
fn caller_loss(raw: &RawProfile, main: &str, loop_fn: &str, hot: &[&str]) -> CallerLoss {
    let mut loss = CallerLoss { hot: 0, full_chain: 0, without_loop: 0, without_main: 0 };
    for sample in &raw.samples {
        let user = sample.user_root_first();
        let Some(h) = hot.iter().find(|h| user.contains(h)) else { continue };
        let n = sample.count();
        loss.hot += n;
        if has_subsequence(&user, &[main, loop_fn, h]) {
            loss.full_chain += n;
        }
        if !user.contains(&loop_fn) {
            loss.without_loop += n;
        }
        if !user.contains(&main) {
            loss.without_main += n;
        }
    }
    loss
}

fn assert_callers_kept(loss: &CallerLoss, main: &str, loop_fn: &str, raw: &RawProfile) {
    let frac = |n: u64| n as f64 / loss.hot.max(1) as f64;
    eprintln!(
        "measured: of {} hot-function samples, {} lack {loop_fn} and {} lack {main} (leaf-caller-missing); \
         {} have the whole {main} -> {loop_fn} -> hot chain",
        loss.hot,
        pct(frac(loss.without_loop)),
        pct(frac(loss.without_main)),
        pct(frac(loss.full_chain))
    );
    assert!(loss.hot >= 100, "too few hot-function samples to judge the stacks: {loss:?}");
    let show = || format!("{loss:?}; samples:\n{:#?}", raw.samples.iter().take(20).collect::<Vec<_>>());
    assert!(frac(loss.without_loop) <= MAX_CALLER_MISSING, "{loop_fn} missing too often: {}", show());
    assert!(frac(loss.without_main) <= MAX_CALLER_MISSING, "{main} missing too often: {}", show());
    assert!(frac(loss.full_chain) >= 1.0 - MAX_CALLER_MISSING, "stacks not rooted in {main}: {}", show());
}

/// Checks that the manifest and the pprof agree on the sample count and
/// returns the manifest.
fn manifest_matching(capture: &Capture, raw: &RawProfile) -> serde_json::Value {
    let manifest = capture.manifest();
    let collected = manifest["samples_collected"].as_u64();
    assert_eq!(collected, Some(raw.total()), "manifest samples_collected vs. samples in the pprof: {manifest:#}");
    manifest
}

// ---------------------------------------------------------------------------
// 1. C workload

#[test]
fn c_workload_split_stacks_and_pprof_contract() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-c-workload");
    let out = dir.join("out");
    let mut workload = Workload::cpu_split();
    workload.wait_busy();
    let pid = workload.pid();
    let pid_text = pid.to_string();

    let (capture, _) =
        record_ok(&["record", "--pid", &pid_text, "--duration", "6s", "--formats", "pprof,svg,folded"], &out);
    workload.assert_running();
    let tids: BTreeSet<String> = workload.tids().iter().map(u32::to_string).collect();
    drop(workload);

    // Contract file names, four files and nothing else.
    assert_eq!(capture.files.len(), 4, "{:?}", capture.files);
    for (file, kind) in [(capture.pprof(), "cpu"), (capture.svg(), "cpu"), (capture.folded(), "cpu")] {
        assert!(file_name(file).starts_with(&format!("cpu_split-{pid}-{kind}-")), "{}", file.display());
    }
    assert!(file_name(capture.one(".json")).starts_with(&format!("cpu_split-{pid}-capture-")));
    for file in &capture.files {
        let mode = fs::metadata(file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "`{}` has mode {mode:o}", file.display());
    }

    // The split, as `go tool pprof -top` (the real client) shows it.
    assert_three_to_one(capture.pprof(), "hot_a", "hot_b");

    // pprof contract: sample types, period, labels, mappings, file:line.
    let raw = pprof_raw(capture.pprof());
    let types: Vec<(&str, &str)> = raw.sample_types.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")], "sample types");
    assert_eq!(raw.period_type, Some(("cpu".to_owned(), "nanoseconds".to_owned())));
    let period = 1e9 / 99.0;
    assert!((raw.period as f64 - period).abs() < period * 0.01, "period {} for 99 Hz", raw.period);
    for sample in &raw.samples {
        let ns = sample.values.get(1).copied().unwrap_or_default() as f64;
        let expect = sample.count() as f64 * raw.period as f64;
        assert!((ns - expect).abs() <= expect * 0.001 + 1.0, "cpu ns {ns} != count × period {expect}: {sample:?}");
    }
    let tags = pprof_tags(capture.pprof());
    for key in ["pid", "tid", "comm"] {
        assert!(tags.contains_key(key), "`go tool pprof -tags` has no `{key}` label: {tags:?}");
    }
    assert_eq!(tags["pid"], BTreeSet::from([pid_text.clone()]), "pid labels");
    assert_eq!(tags["comm"], BTreeSet::from(["cpu_split".to_owned()]), "comm labels");
    assert!(tags["tid"].is_subset(&tids), "tid labels {:?} are not threads of {pid} ({tids:?})", tags["tid"]);

    let source = WorkloadKind::source_dir().join("cpu_split.c");
    let binary = WorkloadKind::CpuSplit.binary();
    for function in ["hot_a", "hot_b", "loop_fn", "main"] {
        let Some(frame) = raw.samples.iter().flat_map(|s| &s.stack).find(|f| f.function == function) else {
            panic!("no frame named `{function}` in the profile")
        };
        let (first, last) = c_function_lines(&source, function);
        assert!(frame.file.ends_with("cpu_split.c"), "{function}: file `{}`", frame.file);
        assert!((first..=last).contains(&frame.line), "{function}: line {} outside {first}..={last}", frame.line);
        let mapping = raw.mapping(frame.mapping).unwrap_or_else(|| panic!("{function}: no mapping {frame:?}"));
        let canonical = fs::canonicalize(&binary).expect("canonicalize workload");
        assert_eq!(Path::new(&mapping.file), canonical, "mapping path of {function}");
        assert!(mapping.start <= frame.address && frame.address < mapping.limit, "{frame:?} outside {mapping:?}");
        let build_id = elf_build_id(&binary).expect("readelf -n shows the workload's build ID");
        assert_eq!(mapping.build_id, build_id, "mapping build ID of {function}");
    }

    // Stacks run main -> loop_fn -> hot_a/hot_b; how often is a caller lost?
    let loss = caller_loss(&raw, "main", "loop_fn", &["hot_a", "hot_b"]);
    assert_callers_kept(&loss, "main", "loop_fn", &raw);
    // publish() is the one true leaf (no frame of its own) under hot_a/hot_b:
    // there frame-pointer unwinding skips its caller. Reported, not asserted
    // (it is a handful of samples).
    let in_publish = raw.count_where(|s| s.user_leaf() == Some("publish"));
    let publish_lost =
        raw.count_where(|s| s.user_leaf() == Some("publish") && !s.has_function("hot_a") && !s.has_function("hot_b"));
    eprintln!(
        "measured: {in_publish} samples in the leaf `publish`, {publish_lost} of them without its caller hot_a/hot_b"
    );

    // The folded output has the same chains.
    let folded = read_folded(capture.folded());
    let weight = |pred: &dyn Fn(&str) -> bool| -> u64 {
        folded.iter().filter(|s| pred(&s.frames.join(";"))).map(|s| s.count).sum()
    };
    for hot in ["hot_a", "hot_b"] {
        let chain = format!("main;loop_fn;{hot}");
        let with_chain = weight(&|l| l.contains(&chain));
        let with_hot = weight(&|l| l.split(';').any(|f| f == hot));
        assert!(with_hot > 0, "no folded stack holds {hot}");
        assert!(
            with_chain as f64 >= (1.0 - MAX_CALLER_MISSING) * with_hot as f64,
            "only {with_chain} of {with_hot} folded samples in {hot} hold `{chain}`"
        );
    }

    // The SVG names both hot functions, and its title the target and the sample count.
    let svg = fs::read_to_string(capture.svg()).expect("read svg");
    let frames = svg_frames(&svg);
    for hot in ["hot_a", "hot_b", "loop_fn", "main"] {
        assert!(frames.iter().any(|f| f.function == hot), "the flamegraph has no `{hot}` frame");
    }
    let title = svg_title(&svg).expect("the flamegraph has a title");
    let manifest = manifest_matching(&capture, &raw);
    let collected = manifest["samples_collected"].as_u64().unwrap_or_default();
    let plain_title = title.replace(',', "");
    for needle in [pid_text.as_str(), "cpu_split", "cpu", &collected.to_string()] {
        assert!(plain_title.contains(needle), "the flamegraph title does not name `{needle}`: {title}");
    }
    eprintln!("measured: {collected} samples; title: {title}");
}

// ---------------------------------------------------------------------------
// 2. Go workload

#[test]
fn go_workload_names_split_and_stacks() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-go-workload");
    let out = dir.join("out");
    let mut workload = Workload::go_split();
    workload.wait_busy();
    let pid = workload.pid().to_string();

    let (capture, _) = record_ok(&["record", "--pid", &pid, "--duration", "6s", "--formats", "pprof,svg,folded"], &out);
    workload.assert_running();
    drop(workload);
    assert!(file_name(capture.pprof()).starts_with(&format!("gosplit-{pid}-cpu-")));

    assert_three_to_one(capture.pprof(), "main.hotA", "main.hotB");
    let raw = pprof_raw(capture.pprof());
    manifest_matching(&capture, &raw);
    assert_eq!(raw.label_values("comm"), BTreeSet::from(["gosplit".to_owned()]));
    let loss = caller_loss(&raw, "main.main", "main.loop", &["main.hotA", "main.hotB"]);
    assert_callers_kept(&loss, "main.main", "main.loop", &raw);
    // Go's own entry points sit above main.main: the unwinder reached the stack's root.
    let rooted = raw.count_where(|s| s.has_function("main.hotA") && s.has_function("runtime.main"));
    eprintln!("measured: {rooted} main.hotA samples reach runtime.main");

    let svg = fs::read_to_string(capture.svg()).expect("read svg");
    let frames = svg_frames(&svg);
    for f in ["main.hotA", "main.hotB", "main.loop", "main.main"] {
        assert!(frames.iter().any(|frame| frame.function == f), "the flamegraph has no `{f}` frame");
    }
}

// ---------------------------------------------------------------------------
// 3. Fidelity

#[test]
fn samples_collected_match_cpu_time_used() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("record-fidelity");
    let out = dir.join("out");
    // Two threads: both CPUs busy, so samples must come from every CPU.
    let mut workload = Workload::spawn(WorkloadKind::CpuSplit, &["0", "2"]);
    workload.wait_busy();
    let pid = workload.pid();
    let frequency: u64 = 199;

    // CPU time from /proc, read every few ms while stackwatch runs, so that
    // it can be taken over exactly the window the manifest reports.
    let watch = CpuWatch::start(pid);
    let (capture, _) = record_ok(
        &["record", "--pid", &pid.to_string(), "--duration", "8s", "--frequency", &frequency.to_string()],
        &out,
    );
    let trace = watch.finish();
    workload.assert_running();
    drop(workload);

    let manifest = capture.manifest();
    for key in ["samples_collected", "samples_lost", "losses", "target_cpu_seconds", "frequency_hz", "start", "end"] {
        assert!(manifest.get(key).is_some(), "the manifest has no `{key}`: {manifest:#}");
    }
    assert!(manifest["losses"].is_array(), "`losses` must be a list: {manifest:#}");
    let collected = manifest["samples_collected"].as_u64().expect("samples_collected is a count");
    let lost = manifest["samples_lost"].as_u64().expect("samples_lost is a count");
    assert_eq!(manifest["frequency_hz"].as_u64(), Some(frequency));

    let start = manifest["start"].as_str().and_then(parse_utc).expect("manifest start is a UTC timestamp");
    let end = manifest["end"].as_str().and_then(parse_utc).expect("manifest end is a UTC timestamp");
    let Some(cpu) = trace.between(start, end) else {
        panic!("the /proc readings do not cover the capture window {start:?}..{end:?}")
    };
    let cpu = cpu.as_secs_f64();
    let expected = frequency as f64 * cpu;
    let fidelity = collected as f64 / expected;
    let reported_cpu = manifest["target_cpu_seconds"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "measured: {collected} samples collected, {lost} lost, target used {cpu:.2} CPU-s (/proc) \
         [{reported_cpu:.2} per the manifest] in {:.2} s; {frequency} Hz × CPU-s = {expected:.0}; fidelity {}",
        end.duration_since(start).unwrap_or_default().as_secs_f64(),
        pct(fidelity)
    );
    // Enough CPU time for the percentage to mean something, even on a busy machine.
    assert!(cpu >= 2.0, "the two-thread workload used only {cpu:.2} CPU-s in 8 s: the machine is too busy");
    assert!(fidelity >= 0.90, "collected {collected} samples, below 90 % of {expected:.0}");
    // More samples than CPU time allows would mean foreign or double-counted samples.
    assert!(fidelity <= 1.05, "collected {collected} samples, more than the {expected:.0} CPU time allows");
    assert!(
        (reported_cpu - cpu).abs() <= 0.05 * cpu + 0.05,
        "manifest target_cpu_seconds {reported_cpu} vs {cpu:.3} measured from /proc"
    );
    let raw = pprof_raw(capture.pprof());
    assert_eq!(raw.total(), collected, "samples in the pprof vs samples_collected");
    assert_eq!(raw.label_values("pid"), BTreeSet::from([pid.to_string()]));
    assert_eq!(raw.label_values("tid").len(), 2, "both threads sampled");
}

// ---------------------------------------------------------------------------
// 4. Kernel frames

#[test]
fn syscall_heavy_workload_has_kernel_frames() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-kernel-frames");
    let out = dir.join("out");
    let mut workload = Workload::syscalls();
    workload.wait_busy();
    let pid = workload.pid().to_string();
    let (user0, sys0) = workload.cpu_times();
    let (capture, _) = record_ok(&["record", "--pid", &pid, "--duration", "5s", "--formats", "pprof,svg,folded"], &out);
    let (user1, sys1) = workload.cpu_times();
    workload.assert_running();
    drop(workload);
    let system_share = share((sys1 - sys0).as_secs_f64(), (user1 - user0).as_secs_f64());

    let raw = pprof_raw(capture.pprof());
    manifest_matching(&capture, &raw);
    let total = raw.total();
    let kernel_share = raw.count_where(RawSample::has_kernel_frames) as f64 / total.max(1) as f64;
    let kernel_names: BTreeSet<&str> =
        raw.samples.iter().flat_map(|s| &s.stack).filter(|f| f.is_kernel()).map(|f| f.function.as_str()).collect();
    let user_names: BTreeSet<&str> =
        raw.samples.iter().flat_map(|s| &s.stack).filter(|f| !f.is_kernel()).map(|f| f.function.as_str()).collect();
    eprintln!(
        "measured: {} of {total} samples hold kernel frames (the workload spent {} of its CPU time in the kernel per /proc)",
        pct(kernel_share),
        pct(system_share)
    );
    assert!(total >= 100, "too few samples: {total}");
    assert!(
        kernel_share >= 0.5 && kernel_share >= system_share - 0.15,
        "kernel frames in only {} of the samples, though {} of the CPU time was system time",
        pct(kernel_share),
        pct(system_share)
    );
    let syscall_entry = |n: &&str| n.contains("do_syscall_64") || n.contains("entry_SYSCALL");
    assert!(kernel_names.iter().any(syscall_entry), "no syscall entry frame among {kernel_names:?}");
    assert!(kernel_names.iter().any(|n| n.contains("sys_")), "no `sys_` function among {kernel_names:?}");
    assert!(
        kernel_names.iter().all(|n| !n.is_empty() && !n.starts_with("0x")),
        "unnamed kernel frames: {kernel_names:?}"
    );
    for sample in &raw.samples {
        // Leaf first: kernel frames, then the user frames that made the syscall.
        let first_user = sample.stack.iter().position(|f| !f.is_kernel()).unwrap_or(sample.stack.len());
        assert!(
            sample.stack[first_user..].iter().all(|f| !f.is_kernel()),
            "kernel frame below a user frame: {sample:#?}"
        );
    }
    // Below the kernel frames the user stack is still rooted in main -> syscall_loop.
    let in_kernel = raw.count_where(RawSample::has_kernel_frames);
    let rooted =
        raw.count_where(|s| s.has_kernel_frames() && has_subsequence(&s.user_root_first(), &["main", "syscall_loop"]));
    // The libc syscall wrappers are true leaves (no frame of their own), so
    // frame-pointer unwinding skips their caller (do_read & co.).
    let wrapper_caller = raw.count_where(|s| {
        s.has_kernel_frames() && ["do_getppid", "do_write", "do_read"].iter().any(|f| s.has_function(f))
    });
    eprintln!(
        "measured: of {in_kernel} samples in the kernel, {} reach main -> syscall_loop; {} lack the caller of the \
         libc syscall wrapper (do_getppid/do_write/do_read) — the leaf-caller loss of frame-pointer unwinding",
        pct(rooted as f64 / in_kernel.max(1) as f64),
        pct(1.0 - wrapper_caller as f64 / in_kernel.max(1) as f64)
    );
    assert!(rooted as f64 >= 0.9 * in_kernel as f64, "kernel samples lost their user stack: {rooted} of {in_kernel}");

    // folded: kernel frames carry `_[k]`, sit on top of the user frames, and
    // user functions never carry it.
    let folded = read_folded(capture.folded());
    let mut marked = BTreeSet::new();
    for stack in &folded {
        let first_k = stack.frames.iter().position(|f| f.ends_with("_[k]")).unwrap_or(stack.frames.len());
        assert!(
            stack.frames[first_k..].iter().all(|f| f.ends_with("_[k]")),
            "user frame above a kernel one: {stack:?}"
        );
        marked.extend(stack.frames[first_k..].iter().map(|f| f.trim_end_matches("_[k]").to_owned()));
        for user in &stack.frames[..first_k] {
            assert!(!kernel_names.contains(user.as_str()), "kernel function `{user}` not marked `_[k]`: {stack:?}");
        }
    }
    assert!(
        marked.iter().any(|n| syscall_entry(&n.as_str())),
        "no `_[k]` syscall entry in the folded output: {marked:?}"
    );
    assert!(!marked.contains("syscall_loop") && !marked.contains("main"), "user functions marked `_[k]`: {marked:?}");

    // SVG: inferno draws `_[k]` frames in its kernel (orange: no blue) colours
    // and plain user frames in red shades (blue = green > 0).
    let svg = fs::read_to_string(capture.svg()).expect("read svg");
    let frames = svg_frames(&svg);
    let only_kernel = |f: &str| kernel_names.contains(f) && !user_names.contains(f);
    let kernel_boxes: Vec<_> = frames.iter().filter(|f| only_kernel(&f.function)).collect();
    assert!(!kernel_boxes.is_empty(), "the flamegraph shows no kernel function");
    assert!(kernel_boxes.iter().all(|f| f.fill.2 == 0), "kernel frames not in the kernel palette: {kernel_boxes:?}");
    let user_boxes: Vec<_> =
        frames.iter().filter(|f| ["main", "syscall_loop"].contains(&f.function.as_str())).collect();
    assert!(!user_boxes.is_empty() && user_boxes.iter().all(|f| f.fill.2 > 0), "user frames: {user_boxes:?}");
}

// ---------------------------------------------------------------------------
// 5. Targets: --name, --cgroup, whole host

/// The pids and comms a profile holds.
fn who(raw: &RawProfile) -> (BTreeSet<String>, BTreeSet<String>) {
    (raw.label_values("pid"), raw.label_values("comm"))
}

#[test]
fn name_target_follows_matching_processes_only() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-name");
    let out = dir.join("out");
    let mut target = Workload::cpu_split();
    let mut outside = Workload::syscalls();
    target.wait_busy();
    outside.wait_busy();

    let (capture, _) = record_ok(&["record", "--name", "^cpu_split$", "--duration", "4s"], &out);
    target.assert_running();
    outside.assert_running();
    assert!(file_name(capture.pprof()).starts_with("cpu_split-"), "{}", capture.pprof().display());
    let raw = pprof_raw(capture.pprof());
    let (pids, comms) = who(&raw);
    eprintln!("measured: --name ^cpu_split$ sampled pids {pids:?}, comms {comms:?}");
    assert!(pids.contains(&target.pid().to_string()), "the matching process {} is missing: {pids:?}", target.pid());
    assert!(!pids.contains(&outside.pid().to_string()), "the non-matching process was sampled: {pids:?}");
    assert_eq!(comms, BTreeSet::from(["cpu_split".to_owned()]), "only processes named cpu_split");
    assert!(raw.count_where(|s| s.has_function("hot_a")) > 0, "hot_a missing");
    assert!(raw.count_where(|s| s.has_function("syscall_loop")) == 0, "the outside workload's frames are in");
}

/// A `--name` pattern matching several processes names
/// the files after the pattern, without a pid (not after the first match),
/// and the flamegraph gives each process its own root, `comm (pid N)`.
#[test]
fn name_target_matching_two_processes_is_named_by_the_pattern() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("record-name-two");
    let out = dir.join("out");
    let mut first = Workload::cpu_split();
    let mut second = Workload::cpu_split();
    first.wait_busy();
    second.wait_busy();

    let (capture, _) =
        record_ok(&["record", "--name", "^cpu_split$", "--duration", "3s", "--formats", "pprof,svg,folded"], &out);
    first.assert_running();
    second.assert_running();
    for file in &capture.files {
        let name = file_name(file);
        let rest = name.strip_prefix("cpu_split-").unwrap_or_else(|| panic!("`{name}` is not named by the pattern"));
        assert!(
            ["cpu-", "capture-"].iter().any(|kind| rest.starts_with(kind)),
            "`{name}` carries a pid or another name after the pattern"
        );
    }
    let pids: Vec<String> = [first.pid(), second.pid()].iter().map(u32::to_string).collect();
    let raw = pprof_raw(capture.pprof());
    let (sampled, _) = who(&raw);
    eprintln!("measured: --name ^cpu_split$ sampled pids {sampled:?} in {} samples", raw.total());
    assert_eq!(sampled, pids.iter().cloned().collect::<BTreeSet<_>>(), "both matches, nothing else");
    let roots: BTreeSet<String> =
        read_folded(capture.folded()).into_iter().filter_map(|s| s.frames.into_iter().next()).collect();
    let expected: BTreeSet<String> = pids.iter().map(|p| format!("cpu_split (pid {p})")).collect();
    assert_eq!(roots, expected, "one root per process");
    let svg = fs::read_to_string(capture.svg()).expect("read svg");
    let frames = svg_frames(&svg);
    for root in &expected {
        assert!(frames.iter().any(|f| &f.function == root), "the flamegraph has no `{root}` root");
    }
    let manifest = capture.manifest();
    assert_eq!(manifest["target"]["file_pid"], serde_json::Value::Null, "{manifest:#}");
}

/// A `--pid` set larger than the kernel's in-place filter (the 11 pids a
/// `Gate` holds beside the capture window) is filtered through the pid
/// map: of two busy processes, only the one in the set is sampled. (Sets
/// of one or two pids, the in-place path, are what the other `--pid` and
/// `--name` tests capture.)
#[test]
fn pid_set_larger_than_the_in_place_filter_keeps_only_its_processes() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("record-many-pids");
    let out = dir.join("out");
    let mut inside = Workload::cpu_split();
    let mut outside = Workload::syscalls();
    let sleepers: Vec<Spawned> = (0..12)
        .map(|_| {
            let mut sleep = Command::new("sleep");
            sleep.arg("600");
            Spawned::start(sleep)
        })
        .collect();
    inside.wait_busy();
    outside.wait_busy();
    let mut pids: Vec<String> = sleepers.iter().map(|s| s.pid().to_string()).collect();
    pids.push(inside.pid().to_string());
    let list = pids.join(",");

    let (capture, _) = record_ok(&["record", "--pid", &list, "--duration", "3s", "--formats", "pprof"], &out);
    inside.assert_running();
    outside.assert_running();
    let raw = pprof_raw(capture.pprof());
    let (sampled, comms) = who(&raw);
    eprintln!("measured: --pid with {} pids sampled pids {sampled:?} ({} samples)", pids.len(), raw.total());
    assert_eq!(sampled, BTreeSet::from([inside.pid().to_string()]), "only the busy process of the set: {comms:?}");
    assert!(raw.count_where(|s| s.has_function("hot_a")) > 0, "the process in the set is sampled");
    assert_eq!(raw.count_where(|s| s.has_function("syscall_loop")), 0, "the process outside the set is not");
}

#[test]
fn cgroup_target_samples_only_the_cgroup() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-cgroup");
    let out = dir.join("out");
    // Declared first, dropped last: the workloads are dead by then.
    let cgroup = TestCgroup::create("record");
    let mut inside = Workload::cpu_split();
    let mut outside = Workload::syscalls();
    cgroup.add(inside.pid());
    assert_eq!(cgroup.pids(), [inside.pid()]);
    inside.wait_busy();
    outside.wait_busy();

    let path = cgroup.path().to_str().expect("cgroup paths are UTF-8").to_owned();
    let (capture, _) = record_ok(&["record", "--cgroup", &path, "--duration", "4s"], &out);
    inside.assert_running();
    outside.assert_running();
    let raw = pprof_raw(capture.pprof());
    let (pids, comms) = who(&raw);
    eprintln!("measured: --cgroup {path} sampled pids {pids:?}, comms {comms:?}, {} samples", raw.total());
    assert_eq!(pids, BTreeSet::from([inside.pid().to_string()]), "only the process in the cgroup");
    assert!(raw.count_where(|s| s.has_function("hot_a")) > 0, "the cgroup's hot function is missing");
    assert_eq!(raw.count_where(|s| s.has_function("syscall_loop")), 0, "the outside workload's frames are in");
    assert!(!comms.contains("syscalls"), "{comms:?}");
    let manifest = manifest_matching(&capture, &raw);
    // The in-kernel cgroup filter keeps the cgroup's samples. Fidelity proper
    // is checked elsewhere; this one run is short and may compete for the
    // CPUs, so only a gross loss fails it.
    let cpu = manifest["target_cpu_seconds"].as_f64().unwrap_or_default();
    let fidelity = raw.total() as f64 / (99.0 * cpu);
    eprintln!(
        "measured: the cgroup used {cpu:.2} CPU-s (manifest): {} samples, {} of 99 Hz × CPU-s",
        raw.total(),
        pct(fidelity)
    );
    assert!(fidelity >= 0.5, "{} samples for {cpu:.2} CPU-s in the cgroup", raw.total());
}

#[test]
fn whole_host_capture_has_several_processes() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let dir = scratch_dir("record-host");
    let out = dir.join("out");
    let mut a = Workload::cpu_split();
    let mut b = Workload::syscalls();
    a.wait_busy();
    b.wait_busy();

    let (capture, _) = record_ok(&["record", "--duration", "4s", "--formats", "pprof,svg,folded"], &out);
    a.assert_running();
    b.assert_running();
    let pprof = file_name(capture.pprof());
    assert!(pprof.starts_with("host-cpu-") && pprof.ends_with(".pb.gz"), "{pprof}");
    assert!(file_name(capture.one(".json")).starts_with("host-capture-"));

    let raw = pprof_raw(capture.pprof());
    manifest_matching(&capture, &raw);
    let tags = pprof_tags(capture.pprof());
    let (pids, comms) = (tags.get("pid").cloned().unwrap_or_default(), tags.get("comm").cloned().unwrap_or_default());
    eprintln!("measured: whole host: {} samples from {} pids, comms {comms:?}", raw.total(), pids.len());
    assert!(pids.len() >= 2 && comms.len() >= 2, "several processes expected: pids {pids:?}, comms {comms:?}");
    for (w, comm) in [(&a, "cpu_split"), (&b, "syscalls")] {
        assert!(pids.contains(&w.pid().to_string()), "pid {} ({comm}) missing: {pids:?}", w.pid());
        assert!(comms.contains(comm), "{comm} missing: {comms:?}");
    }
    // One tower per process: every folded stack starts with `comm (pid N)`.
    let folded = read_folded(capture.folded());
    let roots = [format!("cpu_split (pid {})", a.pid()), format!("syscalls (pid {})", b.pid())];
    for root in &roots {
        assert!(folded.iter().any(|s| s.frames.first() == Some(root)), "no `{root}` root");
    }
    assert!(
        folded.iter().all(|s| s.frames.first().is_some_and(|f| f.ends_with(')') && f.contains(" (pid "))),
        "a stack without its process root"
    );
    let svg = fs::read_to_string(capture.svg()).expect("read svg");
    let frames = svg_frames(&svg);
    for f in [roots[0].as_str(), roots[1].as_str(), "hot_a", "syscall_loop"] {
        assert!(frames.iter().any(|frame| frame.function == f), "the flamegraph has no `{f}` frame");
    }
}

// ---------------------------------------------------------------------------
// A disk that fills up mid-capture

#[test]
fn a_full_disk_keeps_what_fits_writes_the_manifest_and_says_what_failed() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("record-disk-full").join("small");
    fs::create_dir(&out).expect("mkdir");
    // 16 KiB: the pprof (a few KiB) and the manifest (~2 KiB) fit, the
    // flamegraph (its script alone is over 16 KiB) does not.
    let mount = Tmpfs::mount(&out, "16k").unwrap_or_else(|e| panic!("mount a tmpfs on `{}`: {e}", out.display()));
    let mut workload = Workload::cpu_split();
    workload.wait_busy();
    let pid = workload.pid().to_string();
    let out_text = out.to_str().expect("scratch paths are UTF-8");
    let output = run_stackwatch(&["record", "--pid", &pid, "--duration", "2s", "--output-dir", out_text]);
    assert_exit(&output, 1, "record onto a full disk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    let capture = Capture::read(&out);
    let names: Vec<String> = capture.files.iter().map(|p| file_name(p)).collect();
    assert_eq!(names.len(), 2, "the pprof and the manifest, nothing else (no temporary file): {names:?}");
    let pprof = capture.one(".pb.gz").to_owned();
    let manifest_path = capture.one(".json").to_owned();
    let svg_name = file_name(&pprof).replace(".pb.gz", ".svg");

    // The summary is printed as usual, with what was and was not written.
    for name in &names {
        assert!(stdout.contains(name.as_str()), "stdout does not list `{name}`:\n{stdout}");
    }
    assert!(stdout.contains("samples collected") && stdout.contains("top functions (cpu):"), "{stdout}");
    assert!(stdout.contains(&svg_name) && stdout.contains("No space left on device"), "{stdout}");
    let error =
        stderr.lines().rfind(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(error.contains(&svg_name) && error.contains("No space left on device"), "{error}");

    // The manifest lists both sides.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("read manifest")).expect("manifest is JSON");
    let listed: Vec<&str> =
        manifest["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(listed, [file_name(&pprof).as_str()], "{manifest}");
    let failed = manifest["failed"].as_array().expect("failed files are listed");
    assert_eq!(failed.len(), 1, "{manifest}");
    assert_eq!(failed[0]["path"], svg_name.as_str());
    assert_eq!(failed[0]["format"], "svg");
    assert!(failed[0]["error"].as_str().unwrap_or_default().contains("No space left on device"), "{manifest}");

    // What was kept is whole.
    let top = parse_pprof_top(&go_pprof_top(&pprof));
    assert!(top.flat("hot_a") > 0.0, "the kept pprof must hold the capture");
    drop(mount);
}

// ---------------------------------------------------------------------------
// 6. Bad input

/// Runs `record ARGS… --duration 30s` and checks it was refused the way the
/// contract says: exit `code`, one `error:` line on stderr, nothing on
/// stdout, no file under `out`, and quickly (nothing was sampled for 30 s).
/// Returns the error line.
fn assert_refused(mut cmd: Command, code: i32, out: &Path, what: &str) -> String {
    let shown = format!("{cmd:?}");
    let started = Instant::now();
    cmd.args(["--duration", "30s"]);
    let output = run_with_timeout(cmd, Duration::from_secs(60));
    let elapsed = started.elapsed();
    assert_exit(&output, code, what);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{what}: expected one `error:` line on stderr, got:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "{what}: printed on stdout:\n{}", String::from_utf8_lossy(&output.stdout));
    assert!(elapsed < Duration::from_secs(10), "{what}: took {elapsed:?}: did it start sampling? ({shown})");
    let left = entries_under(out).into_iter().filter(|p| !p.is_dir()).collect::<Vec<_>>();
    assert!(left.is_empty(), "{what}: files written: {left:?}");
    eprintln!("{what}: exit {code} after {elapsed:?}: {}", lines[0]);
    lines[0].to_owned()
}

fn record_command(args: &[&str], out: &Path) -> Command {
    let mut cmd = Command::new(stackwatch_bin());
    cmd.arg("record").args(args).arg("--output-dir").arg(out);
    cmd
}

/// A pid no process has: below pid_max, absent from /proc.
fn unused_pid() -> u32 {
    let max: u32 =
        fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    (2..max).rev().find(|p| !Path::new(&format!("/proc/{p}")).exists()).expect("a free pid")
}

#[test]
fn refuses_nonexistent_pid() {
    let Some(_guard) = e2e_guard() else { return };
    let out = scratch_dir("record-bad-pid").join("out");
    let pid = unused_pid().to_string();
    let error = assert_refused(record_command(&["--pid", &pid], &out), 2, &out, "nonexistent pid");
    assert!(error.contains(&pid), "the error does not name pid {pid}: {error}");
}

#[test]
fn refuses_name_regex_without_match() {
    let Some(_guard) = e2e_guard() else { return };
    let out = scratch_dir("record-bad-name").join("out");
    let regex = "^no-such-process-[0-9]{12}$";
    let error = assert_refused(record_command(&["--name", regex], &out), 2, &out, "regex without a match");
    assert!(error.contains(regex), "the error does not quote the regex: {error}");
}

#[test]
fn refuses_unwritable_output_dir() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("record-bad-output");
    let me = std::process::id().to_string();

    // A directory on a read-only mount: root's bypass of permission bits does not help.
    let ro = dir.join("read-only");
    fs::create_dir(&ro).expect("mkdir");
    let bind = match ReadOnlyBind::new(&ro) {
        Ok(bind) => bind,
        Err(err) => panic!("failed to bind-mount `{}` read-only: {err}", ro.display()),
    };
    assert!(fs::write(ro.join("probe"), b"x").is_err(), "`{}` is writable after the read-only bind", ro.display());
    let mut cases: Vec<(PathBuf, &str)> =
        vec![(ro.clone(), "read-only output dir"), (ro.join("sub"), "output dir under a read-only mount")];
    // A regular file where a directory is expected.
    let file = dir.join("a-file");
    fs::write(&file, b"not a directory\n").expect("write");
    cases.push((file.join("sub"), "output dir under a regular file"));
    cases.push((file.clone(), "output dir that is a regular file"));

    for (out, what) in &cases {
        let error = assert_refused(record_command(&["--pid", &me], out), 1, out, what);
        let shown = out.display().to_string();
        assert!(error.contains(&shown), "{what}: the error does not name `{shown}`: {error}");
    }
    assert_eq!(fs::read(&file).expect("read"), b"not a directory\n", "the regular file was changed");
    drop(bind);
}

#[test]
fn refuses_without_privileges() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("record-unprivileged");
    // Writable by nobody, so the only thing missing is the privilege.
    let parent = dir.join("world-writable");
    fs::create_dir(&parent).expect("mkdir");
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = parent.join("out");

    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(stackwatch_bin())
        .arg("record")
        .args(["--pid", &std::process::id().to_string()])
        .arg("--output-dir")
        .arg(&out);
    let error = assert_refused(cmd, 1, &out, "no privileges");
    let lower = error.to_lowercase();
    assert!(
        ["privilege", "capabilit", "cap_bpf", "permission", "not permitted"].iter().any(|w| lower.contains(w)),
        "the error does not say privileges are missing: {error}"
    );
    assert!(
        ["run as root", "sudo", "grant", "cap_bpf"].iter().any(|w| lower.contains(w)),
        "the error does not say how to fix it: {error}"
    );
    if out.exists() {
        eprintln!("note: the refused unprivileged run created the (empty) output directory `{}`", out.display());
    }
}
