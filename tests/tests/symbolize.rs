//! End-to-end tests of symbolization, one per case that matters in production,
//! with the real eBPF program against processes built the way production
//! ones are: stripped Go, inlined C, debug info in a separate file, a
//! binary only its own mount namespace can see, a deleted binary, a
//! process that exits mid-capture, and JIT code named by a perf map.
//!
//! Every test holds the machine-wide end-to-end lock, writes into its own
//! scratch directory and kills what it started (guards' `Drop`). Expected
//! names and lines come from the workloads' sources, never from a previous
//! run; measured shares are printed (`--nocapture` shows them).
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use stackwatch_tests::capture::{
    assert_exit, c_function_lines, elf_build_id, pprof_raw, read_folded, Capture, RawFrame, RawProfile, RawSample,
};
use stackwatch_tests::symwork::{
    cpu_split_split_debug, go_split_stripped, inline_hot, plt_hot, require_node, source, spawn_in_private_mount,
    Spawned,
};
use stackwatch_tests::{
    e2e_guard, go_pprof_top, parse_pprof_top, require_go, run_with_timeout, scratch_dir, share_tolerance,
    stackwatch_command, WorkloadKind,
};

/// `stackwatch record ARGS… --output-dir OUT` with extra environment; must succeed.
fn record(args: &[&str], out: &Path, env: &[(&str, &Path)]) -> (Capture, Output) {
    let mut all: Vec<&str> = vec!["record"];
    all.extend(args);
    all.extend(["--output-dir", out.to_str().expect("scratch paths are UTF-8")]);
    let mut cmd = stackwatch_command(&all);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = run_with_timeout(cmd, Duration::from_secs(90));
    assert_exit(&output, 0, &format!("stackwatch {}", all.join(" ")));
    (Capture::read(out), output)
}

/// Records `pid` for `seconds` into a fresh scratch directory named `name`.
fn record_pid(name: &str, pid: u32, seconds: &str, env: &[(&str, &Path)]) -> RawProfile {
    let out = scratch_dir(name);
    let pid = pid.to_string();
    let (capture, _) = record(&["--pid", &pid, "--duration", seconds, "--formats", "pprof,folded"], &out, env);
    pprof_raw(capture.pprof())
}

fn user_frames(sample: &RawSample) -> impl Iterator<Item = &RawFrame> {
    sample.stack.iter().filter(|f| !f.is_kernel())
}

/// Fraction (by sample count) of `raw`'s samples for which `pred` holds.
fn fraction(raw: &RawProfile, pred: impl Fn(&RawSample) -> bool) -> f64 {
    let total = raw.total();
    assert!(total > 0, "no samples at all");
    raw.count_where(pred) as f64 / total as f64
}

/// Asserts that frames of `function` carry `file_suffix` and a line within
/// `[first, last]`, and that there are some.
fn assert_lines(raw: &RawProfile, function: &str, file_suffix: &str, (first, last): (u64, u64)) {
    let frames: Vec<&RawFrame> = raw.samples.iter().flat_map(|s| &s.stack).filter(|f| f.function == function).collect();
    assert!(!frames.is_empty(), "no frame of `{function}`");
    for f in frames {
        assert!(f.file.ends_with(file_suffix), "`{function}` in `{}`, not `*{file_suffix}`", f.file);
        assert!((first..=last).contains(&f.line), "`{function}` at line {} outside {first}..={last}", f.line);
    }
}

/// A Go binary built with `-ldflags="-s -w"` gets
/// `main.<func>` names and file:line from `.gopclntab`, with the same
/// shares as the unstripped build. Both builds run side by side in one
/// capture, so both see the same machine.
#[test]
fn stripped_go_binary_gets_names_lines_and_shares() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let builds = [("unstripped", WorkloadKind::GoSplit.binary()), ("stripped", go_split_stripped())];
    let mut workloads: Vec<Spawned> = builds.iter().map(|(_, b)| Spawned::start(Command::new(b))).collect();
    for w in &mut workloads {
        w.wait_for_cpu(Duration::from_millis(300), Duration::from_secs(30));
    }
    let out = scratch_dir("symbolize_go");
    let pids: Vec<String> = workloads.iter().map(|w| w.pid().to_string()).collect();
    let mut args = vec!["--duration", "8s", "--formats", "pprof"];
    for pid in &pids {
        args.extend(["--pid", pid.as_str()]);
    }
    let (capture, _) = record(&args, &out, &[]);
    drop(workloads);

    // What an operator's `go tool pprof -top` shows: the Go names.
    let top = parse_pprof_top(&go_pprof_top(capture.pprof()));
    assert!(top.flat("main.hotA") > 0.0 && top.flat("main.hotB") > 0.0, "{top:#?}");
    let raw = pprof_raw(capture.pprof());
    let main_go = source("gosplit").join("main.go");
    let mut shares: Vec<(f64, f64)> = Vec::new();
    for ((label, _), pid) in builds.iter().zip(&pids) {
        let of = |s: &RawSample, f: &str| s.label("pid") == Some(pid.as_str()) && s.user_leaf() == Some(f);
        let (a, b) = (raw.count_where(|s| of(s, "main.hotA")), raw.count_where(|s| of(s, "main.hotB")));
        let share = a as f64 / (a + b).max(1) as f64;
        eprintln!("measured ({label}): main.hotA {a} samples, main.hotB {b}: {:.1} % to main.hotA", 100.0 * share);
        let n = (a + b) as f64;
        assert!(n >= 100.0, "{label}: only {n} samples in main.hotA/main.hotB");
        let tolerance = share_tolerance(n);
        assert!((share - 0.75).abs() <= tolerance, "{label}: main.hotA share {share:.3} is not 0.75 ± {tolerance:.3}");
        let mine = |s: &RawSample| s.label("pid") == Some(pid.as_str());
        let chain = raw.count_where(|s| {
            let user = s.user_root_first();
            mine(s) && user.contains(&"main.main") && user.contains(&"main.loop")
        }) as f64
            / raw.count_where(mine).max(1) as f64;
        assert!(chain >= 0.9, "{label}: only {:.1} % of samples run from main.main through main.loop", 100.0 * chain);
        shares.push((share, n));
    }
    for f in ["hotA", "hotB", "loop"] {
        assert_lines(&raw, &format!("main.{f}"), "gosplit/main.go", c_function_lines(&main_go, f));
    }
    // Same names in both builds.
    let names = |pid: &str| -> std::collections::BTreeSet<String> {
        raw.samples
            .iter()
            .filter(|s| s.label("pid") == Some(pid))
            .flat_map(|s| s.stack.iter().filter(|f| !f.is_kernel() && f.function.starts_with("main.")))
            .map(|f| f.function.clone())
            .collect()
    };
    assert_eq!(names(&pids[0]), names(&pids[1]), "the two builds name different main.* functions");
    let [(s0, n0), (s1, n1)] = [shares[0], shares[1]];
    let tolerance = share_tolerance(1.0 / (1.0 / n0 + 1.0 / n1));
    assert!(
        (s0 - s1).abs() <= tolerance,
        "stripped and unstripped shares differ by more than {tolerance:.3}: {shares:?}"
    );
}

/// The `always_inline` function inside the hot one appears
/// as its own frame: a second line of the pprof location, and `mix_[i]`
/// under `hot` in the folded stacks (and so in the flamegraph).
#[test]
fn inlined_function_appears_as_its_own_frame() {
    let Some(_guard) = e2e_guard() else { return };
    let binary = inline_hot();
    let mut workload = Spawned::start(Command::new(&binary));
    workload.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    let out = scratch_dir("symbolize_inline");
    let pid = workload.pid().to_string();
    let (capture, _) = record(&["--pid", &pid, "--duration", "3s", "--formats", "pprof,folded"], &out, &[]);
    drop(workload);

    let src = source("inline_hot.c");
    let text = fs::read_to_string(&src).expect("read inline_hot.c");
    let call_line = text.lines().position(|l| l.contains("/* CALL */")).expect("CALL marker") as u64 + 1;
    let (mix_first, mix_last) = c_function_lines(&src, "mix");
    let raw = pprof_raw(capture.pprof());
    // `mix` (at a line of its own) and the `hot` that inlined it (at the
    // call) are two lines of one location, and `main` calls `hot`.
    let inlined = fraction(&raw, |s| {
        s.stack.windows(3).any(|w| {
            w[0].function == "mix"
                && (mix_first..=mix_last).contains(&w[0].line)
                && w[0].file.ends_with("inline_hot.c")
                && w[1].function == "hot"
                && w[1].line == call_line
                && w[0].address == w[1].address
                && w[2].function == "main"
        })
    });
    eprintln!("measured: {:.1} % of samples in mix inlined into hot", 100.0 * inlined);
    assert!(inlined >= 0.8, "only {:.1} % of samples show mix inlined into hot", 100.0 * inlined);
    let mapping = raw.samples.iter().flat_map(user_frames).find(|f| f.function == "hot").map(|f| f.mapping);
    let mapping = mapping.and_then(|id| raw.mapping(id)).expect("hot has a mapping");
    assert_eq!(Some(mapping.build_id.clone()), elf_build_id(&binary), "mapping build ID");

    let folded = read_folded(capture.folded());
    let total: u64 = folded.iter().map(|s| s.count).sum();
    let under_hot: u64 =
        folded.iter().filter(|s| s.frames.windows(3).any(|w| w == ["main", "hot", "mix_[i]"])).map(|s| s.count).sum();
    assert!(under_hot * 10 >= total * 8, "folded: {under_hot} of {total} samples in main;hot;mix_[i]:\n{folded:#?}");
}

/// Time spent in a PLT stub is named after the callee
/// (`labs@plt`), never after the symbol before the PLT (`_init` in
/// `.init`, which is what a nearest-symbol lookup picks).
#[test]
fn plt_stub_time_is_named_after_the_callee() {
    let Some(_guard) = e2e_guard() else { return };
    let binary = plt_hot();
    let mut workload = Spawned::start(Command::new(&binary));
    workload.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    let out = scratch_dir("symbolize_plt");
    let pid = workload.pid().to_string();
    let (capture, output) = record(&["--pid", &pid, "--duration", "4s", "--formats", "pprof,folded"], &out, &[]);
    drop(workload);

    let raw = pprof_raw(capture.pprof());
    let in_stub = raw.count_where(|s| s.user_leaf() == Some("labs@plt"));
    let in_labs = raw.count_where(|s| s.user_leaf() == Some("labs"));
    eprintln!(
        "measured: {} samples, {in_stub} in labs@plt, {in_labs} in labs, {} in plt_loop",
        raw.total(),
        raw.count_where(|s| s.user_leaf() == Some("plt_loop"))
    );
    assert!(in_stub >= 5, "only {in_stub} of {} samples name the stub labs@plt", raw.total());
    // The stub lies in the workload's own mapping.
    let stub = raw.samples.iter().flat_map(|s| &s.stack).find(|f| f.function == "labs@plt").expect("stub frame");
    let mapping = raw.mapping(stub.mapping).expect("the stub's mapping");
    assert!(mapping.file.ends_with("/plt_hot"), "stub in `{}`", mapping.file);
    let init = raw.count_where(|s| s.has_function("_init"));
    assert_eq!(init, 0, "{init} samples name a frame `_init`");
    assert!(read_folded(capture.folded()).iter().all(|s| !s.frames.iter().any(|f| f == "_init")));
    // The top table `record` prints says the same.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("labs@plt") && !stdout.contains("_init"), "{stdout}");
}

/// A binary stripped of everything but `.dynsym`, whose
/// DWARF and symbols live only in a separate debug file (filed by build ID
/// in a directory named by `STACKWATCH_DEBUG_DIRS`), gets names and lines
/// from that file, and only from it.
#[test]
fn separate_debug_file_supplies_names_and_lines() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("symbolize_debug_file_build");
    let split = cpu_split_split_debug(&dir);
    let mut workload = Spawned::start(Command::new(&split.binary));
    workload.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    let pid = workload.pid();

    let raw = record_pid("symbolize_debug_file", pid, "3s", &[("STACKWATCH_DEBUG_DIRS", &split.debug_dir)]);
    let src = source("cpu_split.c");
    for f in ["hot_a", "hot_b", "loop_fn"] {
        assert_lines(&raw, f, "cpu_split.c", c_function_lines(&src, f));
    }
    let named = fraction(&raw, |s| s.has_function("hot_a") || s.has_function("hot_b"));
    assert!(named >= 0.9, "only {:.1} % of samples in hot_a/hot_b", 100.0 * named);
    let hot = raw.samples.iter().flat_map(user_frames).find(|f| f.function == "hot_a").expect("hot_a");
    assert_eq!(raw.mapping(hot.mapping).map(|m| m.build_id.as_str()), Some(split.build_id.as_str()));

    // Without the debug directory nothing names the static functions.
    let raw = record_pid("symbolize_debug_file_absent", pid, "2s", &[]);
    assert!(!raw.samples.iter().any(|s| s.has_function("hot_a")), "hot_a named without its debug file");
    let by_offset = fraction(&raw, |s| s.user_leaf().is_some_and(|f| f.starts_with("cpu_split+0x")));
    assert!(by_offset >= 0.9, "unnamed frames should read `cpu_split+0x…`, {:.1} % do", 100.0 * by_offset);
}

/// Asserts the cpu_split call graph is named in `raw`, with lines.
fn assert_cpu_split_named(raw: &RawProfile, what: &str) {
    let named = fraction(raw, |s| s.has_function("hot_a") || s.has_function("hot_b"));
    assert!(named >= 0.9, "{what}: only {:.1} % of samples in hot_a/hot_b", 100.0 * named);
    let src = source("cpu_split.c");
    assert_lines(raw, "hot_a", "cpu_split.c", c_function_lines(&src, "hot_a"));
}

/// A process in its own mount namespace,
/// running a binary from a tmpfs the host cannot see.
#[test]
fn process_in_private_mount_namespace_is_named() {
    let Some(_guard) = e2e_guard() else { return };
    let mountpoint = scratch_dir("symbolize_mntns").join("private");
    let binary = WorkloadKind::CpuSplit.binary();
    let mut workload = spawn_in_private_mount(&binary, &mountpoint, &[]);
    workload.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    let inside = mountpoint.join("cpu_split");
    assert!(!inside.exists(), "the host must not see `{}`", inside.display());
    let exe = fs::read_link(format!("/proc/{}/exe", workload.pid())).expect("exe link");
    assert_eq!(exe, inside, "the workload runs the copy in its private mount");

    let raw = record_pid("symbolize_mntns_out", workload.pid(), "3s", &[]);
    assert_cpu_split_named(&raw, "private mount namespace");
    let hot = raw.samples.iter().flat_map(user_frames).find(|f| f.function == "hot_a").expect("hot_a");
    let mapping = raw.mapping(hot.mapping).expect("mapping");
    assert_eq!(Path::new(&mapping.file), inside, "mapping path as the process sees it");
    assert_eq!(Some(mapping.build_id.clone()), elf_build_id(&binary));
}

/// A binary deleted after start (as a
/// package upgrade replaces it).
#[test]
fn binary_deleted_after_start_is_named() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("symbolize_deleted");
    let binary = dir.join("cpu_split");
    fs::copy(WorkloadKind::CpuSplit.binary(), &binary).expect("copy cpu_split");
    let mut workload = Spawned::start(Command::new(&binary));
    workload.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(30));
    fs::remove_file(&binary).expect("delete the running binary");

    let raw = record_pid("symbolize_deleted_out", workload.pid(), "3s", &[]);
    assert_cpu_split_named(&raw, "deleted binary");
    let hot = raw.samples.iter().flat_map(user_frames).find(|f| f.function == "hot_a").expect("hot_a");
    let mapping = raw.mapping(hot.mapping).expect("mapping");
    assert!(mapping.file.ends_with("cpu_split (deleted)"), "mapping path `{}`", mapping.file);
}

/// A process that runs for one second in the middle of a
/// five-second whole-host capture, and whose binary is deleted when it
/// exits, still gets names (from what was pinned while it ran).
#[test]
fn short_lived_process_in_whole_host_capture_is_named() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("symbolize_short_lived");
    // A name of its own, so its samples are told from everything else.
    let binary = dir.join("sw_shortlived");
    fs::copy(WorkloadKind::CpuSplit.binary(), &binary).expect("copy cpu_split");
    let out = scratch_dir("symbolize_short_lived_out");
    let out_arg = out.clone();
    let recorder = thread::spawn(move || {
        let out = out_arg.to_str().expect("UTF-8").to_owned();
        let cmd = stackwatch_command(&["record", "--duration", "5s", "--formats", "pprof", "--output-dir", &out]);
        run_with_timeout(cmd, Duration::from_secs(120))
    });
    // Well inside the capture (loading and attaching take well under 2 s).
    thread::sleep(Duration::from_secs(2));
    let mut short = Spawned::start({
        let mut cmd = Command::new(&binary);
        cmd.arg("1");
        cmd
    });
    let pid = short.pid();
    let status = short.wait(Duration::from_secs(30));
    assert!(status.success(), "sw_shortlived: {status}");
    fs::remove_file(&binary).expect("delete the binary");
    let output = recorder.join().expect("recorder thread");
    assert_exit(&output, 0, "stackwatch record (whole host)");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} must be gone when the capture ends");

    let raw = pprof_raw(Capture::read(&out).pprof());
    let mine: Vec<&RawSample> = raw.samples.iter().filter(|s| s.label("pid") == Some(&pid.to_string())).collect();
    let total: u64 = mine.iter().map(|s| s.count()).sum();
    let named: u64 =
        mine.iter().filter(|s| s.has_function("hot_a") || s.has_function("hot_b")).map(|s| s.count()).sum();
    eprintln!("measured: {named} of {total} samples of the short-lived process named");
    assert!(total >= 30, "only {total} samples of a process that burned 1 s of CPU");
    assert!(
        named * 10 >= total * 9,
        "only {named} of {total} samples of the short-lived process are named\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes a JIT's perf map on drop (the runtime leaves it behind).
struct PerfMapFile(PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn assert_jit_named(raw: &RawProfile, what: &str) {
    let jit = fraction(raw, |s| user_frames(s).any(|f| f.function.contains("jitHotLoop")));
    eprintln!("measured ({what}): {:.1} % of samples in JIT code named jitHotLoop", 100.0 * jit);
    assert!(jit >= 0.5, "{what}: only {:.1} % of samples name jitHotLoop", 100.0 * jit);
    let frame = raw.samples.iter().flat_map(user_frames).find(|f| f.function.contains("jitHotLoop"));
    let frame = frame.expect("a jitHotLoop frame");
    assert!(frame.function.contains("jit_hot.js"), "V8 names the script too: `{}`", frame.function);
}

/// `node --perf-basic-prof` running a named hot function.
#[test]
fn node_jit_function_is_named_from_its_perf_map() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_node() {
        return;
    }
    let script = source("jit_hot.js");
    let mut node = Spawned::start({
        let mut cmd = Command::new("node");
        // node drops `isolate-*-v8.log` files in its working directory.
        cmd.arg("--perf-basic-prof").arg(&script).current_dir(stackwatch_tests::scratch_dir("node_jit"));
        cmd
    });
    let _map = PerfMapFile(PathBuf::from(format!("/tmp/perf-{}.map", node.pid())));
    node.wait_for_cpu(Duration::from_millis(500), Duration::from_secs(30));
    let raw = record_pid("symbolize_node", node.pid(), "3s", &[]);
    assert_jit_named(&raw, "host");
}

/// The same in a container: node in its own pid and mount
/// namespaces with a private `/tmp`, so its perf map is `/tmp/perf-1.map`
/// inside and exists nowhere on the host's `/tmp`.
#[test]
fn containerized_node_jit_function_is_named() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_node() {
        return;
    }
    let script = source("jit_hot.js");
    let mut cmd = Command::new("unshare");
    cmd.current_dir(stackwatch_tests::scratch_dir("node_jit_container"));
    // `--kill-child`: node is pid 1 of the new namespace and ignores
    // everything but SIGKILL, which it gets when `unshare` (our child,
    // killed by `Spawned`) dies.
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--propagation",
        "private",
        "--mount-proc",
        "--",
        "sh",
        "-c",
    ])
    // The script is read before the private tmpfs hides `/tmp`, where the
    // checkout (and so the script) may live.
    .arg(
        r#"s=$(cat "$1") && mount -t tmpfs stackwatch-test /tmp && printf '%s\n' "$s" >/tmp/jit_hot.js && cd / && exec node --perf-basic-prof /tmp/jit_hot.js"#,
    )
    .arg("sh")
    .arg(&script);
    let mut outer = Spawned::start(cmd);
    // `--fork`: node is the child of `unshare`.
    let node_pid = (0..300)
        .find_map(|_| {
            let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", outer.pid())).unwrap_or_default();
            let pid = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_none() {
                thread::sleep(Duration::from_millis(20));
            }
            pid
        })
        .expect("node started in the namespaces");
    let status = fs::read_to_string(format!("/proc/{node_pid}/status")).expect("status");
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "node is pid 1 inside:\n{status}");
    let mut cpu = 0;
    while cpu < 50 {
        assert!(outer.try_status().is_none(), "the container exited early");
        thread::sleep(Duration::from_millis(20));
        cpu = stackwatch_tests::capture::proc_cpu_time(node_pid).map_or(0, |d| d.as_millis());
    }
    thread::sleep(Duration::from_millis(500));
    assert!(!Path::new(&format!("/tmp/perf-{node_pid}.map")).exists());
    let raw = record_pid("symbolize_node_container", node_pid, "3s", &[]);
    assert_jit_named(&raw, "container");
}
