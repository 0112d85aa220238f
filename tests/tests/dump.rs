//! End-to-end tests of `stackwatch dump` and of the stack quality a capture
//! reports, against processes whose stacks are known: threads parked in
//! known functions inside glibc (`dump_block.c`), CPython threads parked in
//! known Python functions (`tests/workloads/python/stacks.py`), and a CPU
//! burner built with and without frame pointers.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stackwatch_tests::capture::{assert_exit, svg_title, Capture};
use stackwatch_tests::{e2e_guard, run_stackwatch, scratch_dir, workspace_root, Workload, WorkloadKind};

fn dump_json(pid: u32) -> serde_json::Value {
    let output = run_stackwatch(&["dump", "--pid", &pid.to_string(), "--json"]);
    assert_exit(&output, 0, "stackwatch dump --json");
    serde_json::from_slice(&output.stdout).expect("dump --json prints JSON")
}

fn thread<'j>(dump: &'j serde_json::Value, name: &str) -> &'j serde_json::Value {
    dump["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name}: {dump:#}"))
}

fn functions(stack: &serde_json::Value) -> Vec<String> {
    stack.as_array().unwrap().iter().map(|f| f["function"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Whether `needle` occurs in `stack` in order (not necessarily adjacent).
fn has_subsequence(stack: &[String], needle: &[&str]) -> bool {
    let mut it = stack.iter();
    needle.iter().all(|n| it.any(|f| f == n))
}

/// Waits until every thread of `pid` sleeps (they all block once started).
fn wait_until_all_sleep(pid: u32, threads: usize) {
    for _ in 0..200 {
        let states: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                    .filter_map(|s| {
                        s.rsplit_once(')').map(|(_, rest)| rest.trim().chars().next().unwrap_or('?').to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if states.len() >= threads && states.iter().all(|s| s == "S") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the threads of pid {pid} did not all block");
}

#[test]
fn dump_shows_where_each_thread_blocks_and_who_called() {
    let Some(_guard) = e2e_guard() else { return };
    let mut workload = Workload::spawn(WorkloadKind::DumpBlock, &[]);
    workload.wait_for_threads(4, Duration::from_secs(10));
    wait_until_all_sleep(workload.pid(), 4);

    let dump = dump_json(workload.pid());
    assert_eq!(dump["pid"], workload.pid());
    assert_eq!(dump["threads"].as_array().unwrap().len(), 4, "{dump:#}");
    // (thread, its kernel wait, its user stack from the wrapper's caller out)
    let expected: [(&str, &str, &[&str]); 4] = [
        ("sw-reader", "read", &["block_in_read", "reader_main", "start_thread"]),
        ("sw-locker", "futex", &["block_on_mutex", "locker_main", "start_thread"]),
        ("sw-sleeper", "sleep", &["block_in_sleep", "sleeper_main", "start_thread"]),
        ("dump_block", "futex", &["wait_for_workers", "main"]),
    ];
    for (name, kernel, user) in expected {
        let t = thread(&dump, name);
        let kstack = functions_of_strings(&t["kernel_stack"]);
        assert!(kstack.iter().any(|f| f.contains(kernel)), "{name}: kernel stack {kstack:?} should wait in *{kernel}*");
        assert!(t["wchan"].as_str().is_some_and(|w| !w.is_empty()), "{name}: {t:#}");
        let ustack = functions(&t["user_stack"]);
        // The frame under the blocking glibc wrapper is there: glibc has
        // no frame pointers, so this is the unwind tables at work.
        assert!(has_subsequence(&ustack, user), "{name}: user stack {ustack:?} lacks {user:?}");
        assert!(t["complete"].as_bool().unwrap(), "{name}: the walk should reach the stack's end: {ustack:?}");
        let stopped = t["stopped_us"].as_u64().unwrap();
        println!("{name}: stopped {stopped} µs, waited {} µs for the stop", t["stop_wait_us"]);
    }
    println!("longest stop: {} µs, dump took {} ms", dump["longest_stop_us"], dump["elapsed_ms"]);
    assert!(dump["longest_stop_us"].as_u64().unwrap() > 0);
    // Still running, still parked where it was.
    wait_until_all_sleep(workload.pid(), 4);

    let text = run_stackwatch(&["dump", "--pid", &workload.pid().to_string()]);
    assert_exit(&text, 0, "stackwatch dump");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("thread ") && text.contains("\"sw-reader\"") && text.contains("[k] "), "{text}");
    assert!(text.contains("block_in_read (") && text.contains("dump_block.c:"), "file and line: {text}");
}

fn functions_of_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect()
}

/// A `python3 stacks.py` child, killed on drop.
struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dump_names_python_frames_in_place_of_the_interpreter() {
    let Some(_guard) = e2e_guard() else { return };
    let script = workspace_root().join("tests/workloads/python/stacks.py");
    let python = std::env::var("STACKWATCH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = Command::new(&python)
        .arg(&script)
        .arg("6")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`{python}` runs (the tests need CPython 3.8–3.13): {e}"));
    let mut child = Python(child);
    let stdout = child.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l == "ready");
    assert!(ready, "stacks.py did not get ready");
    wait_until_all_sleep(child.0.id(), 5);

    let dump = dump_json(child.0.id());
    assert!(dump["runtime"].as_str().unwrap().starts_with("python 3."), "{}", dump["runtime"]);
    let stacks: Vec<Vec<String>> =
        dump["threads"].as_array().unwrap().iter().map(|t| functions(&t["user_stack"])).collect();
    let with = |needle: &[&str]| stacks.iter().any(|s| has_subsequence(s, needle));
    assert!(with(&["sleeper.wait_here", "stacks.main", "stacks.<module>", "Py_RunMain"]), "{stacks:#?}");
    assert!(with(&["sleeper.wait_here", "stacks.Outer.Inner.method", "threading.Thread.run", "start_thread"]));
    let deep = stacks.iter().find(|s| s.iter().any(|f| f == "stacks.recurse")).expect("the deep thread");
    assert_eq!(deep.iter().filter(|f| *f == "stacks.recurse").count(), 7, "{deep:?}");
    // The interpreter frames the Python frames replace are gone; its C
    // frames (the `time.sleep` call) stay.
    assert!(stacks.iter().all(|s| !s.iter().any(|f| f == "_PyEval_EvalFrameDefault")), "{stacks:#?}");
    assert!(with(&["time_sleep", "sleeper.wait_here"]), "{stacks:#?}");
    let kinds: Vec<&str> =
        dump["threads"][0]["user_stack"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(kinds.contains(&"python") && kinds.contains(&"native"), "{kinds:?}");
    println!("python: longest stop {} µs, dump took {} ms", dump["longest_stop_us"], dump["elapsed_ms"]);
}

#[test]
fn dump_of_a_missing_process_is_a_usage_error() {
    let output = run_stackwatch(&["dump", "--pid", "999999999"]);
    assert_exit(&output, 2, "dump of a missing pid");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no process with pid 999999999"), "{stderr}");
}

/// `record --pid PID --duration 3s` into a fresh directory.
fn record(pid: u32, dir: &Path) -> (Capture, String) {
    record_with(pid, dir, &[])
}

fn record_with(pid: u32, dir: &Path, extra: &[&str]) -> (Capture, String) {
    let pid = pid.to_string();
    let mut args = vec!["record", "--pid", &pid, "--duration", "3s", "--output-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = run_stackwatch(&args);
    assert_exit(&output, 0, "stackwatch record");
    (Capture::read(dir), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_capture_flags_stacks_a_frame_pointer_walk_cannot_follow() {
    let Some(_guard) = e2e_guard() else { return };
    let workload = Workload::spawn(WorkloadKind::NoFramePointers, &[]);
    // A frame-pointer walk (`--unwind fp`) stops after the leaf.
    let dir = scratch_dir("quality-nofp");
    let (capture, stdout) = record_with(workload.pid(), &dir, &["--unwind", "fp"]);
    let manifest = capture.manifest();
    let q = &manifest["stack_quality"][0];
    println!("no frame pointers: {q:#}");
    assert_eq!(q["pid"], workload.pid());
    assert!(q["depth_median"].as_u64().unwrap() <= 2, "{q:#}");
    assert!(q["complete_share"].as_f64().unwrap() < 0.5, "{q:#}");
    let problem = q["findings"][0]["problem"].as_str().expect("a finding");
    assert!(problem.starts_with("stacks end early") && problem.contains("has no frame pointers"), "{problem}");
    let fix = q["findings"][0]["fix"].as_str().unwrap();
    assert!(fix.contains("--unwind auto") && fix.contains("-fno-omit-frame-pointer"), "{fix}");
    // Said where people look: the printout and the flamegraph's subtitle.
    assert!(stdout.contains("stack quality:") && stdout.contains("has no frame pointers"), "{stdout}");
    let svg = std::fs::read_to_string(capture.svg()).unwrap();
    assert!(svg.contains("stack quality: pid"), "subtitle: {:?}", svg_title(&svg));

    // The default walk (`--unwind auto`) follows the same code through its
    // unwind tables: whole stacks, nothing to say.
    let dir = scratch_dir("quality-nofp-auto");
    let (capture, stdout) = record(workload.pid(), &dir);
    let q = &capture.manifest()["stack_quality"][0];
    println!("no frame pointers, unwind tables: {q:#}");
    assert!(q["complete_share"].as_f64().unwrap() > 0.9, "{q:#}");
    assert_eq!(q["findings"].as_array().unwrap().len(), 0, "{q:#}");
    assert!(stdout.contains("stack quality: ok"), "{stdout}");

    // The same program with frame pointers: whole stacks, nothing to say.
    drop(workload);
    let workload = Workload::cpu_split();
    let dir = scratch_dir("quality-fp");
    let (capture, stdout) = record(workload.pid(), &dir);
    let manifest = capture.manifest();
    let q = &manifest["stack_quality"][0];
    println!("frame pointers: {q:#}");
    assert!(q["complete_share"].as_f64().unwrap() > 0.9, "{q:#}");
    assert!(q["depth_median"].as_u64().unwrap() >= 4, "{q:#}");
    assert_eq!(q["findings"].as_array().unwrap().len(), 0, "{q:#}");
    assert!(stdout.contains("stack quality: ok"), "{stdout}");
}

/// Removes a perf map a test's node wrote.
struct PerfMapFile(std::path::PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_capture_flags_javascript_frames_without_a_perf_map() {
    let Some(_guard) = e2e_guard() else { return };
    if !stackwatch_tests::symwork::require_node() {
        return;
    }
    let script = workspace_root().join("tests/workloads/jit_hot.js");
    let capture_of = |flags: &[&str], name: &str| {
        let mut node = stackwatch_tests::symwork::Spawned::start({
            let mut cmd = Command::new("node");
            // node drops `isolate-*-v8.log` files in its working directory.
            cmd.args(flags).arg(&script).current_dir(scratch_dir(&format!("{name}-cwd")));
            cmd
        });
        let _map = PerfMapFile(format!("/tmp/perf-{}.map", node.pid()).into());
        node.wait_for_cpu(Duration::from_millis(500), Duration::from_secs(30));
        let (capture, stdout) = record(node.pid(), &scratch_dir(name));
        (capture.manifest()["stack_quality"][0].clone(), stdout)
    };

    let (q, stdout) = capture_of(&[], "quality-node");
    println!("node without a perf map: {q:#}");
    assert!(q["jit_unnamed_share"].as_f64().unwrap() > 0.5, "{q:#}");
    let finding = q["findings"].as_array().unwrap().iter().find(|f| f["problem"].as_str().unwrap().contains("JIT"));
    let finding = finding.unwrap_or_else(|| panic!("no JIT finding: {q:#}"));
    assert!(finding["problem"].as_str().unwrap().ends_with("no perf map for this JIT"), "{finding:#}");
    assert_eq!(finding["fix"], "node: start with --perf-basic-prof --interpreted-frames-native-stack");
    assert!(stdout.contains("node: start with --perf-basic-prof --interpreted-frames-native-stack"), "{stdout}");

    let (q, _) = capture_of(&["--perf-basic-prof", "--interpreted-frames-native-stack"], "quality-node-map");
    println!("node with a perf map: {q:#}");
    assert!(q["jit_unnamed_share"].as_f64().unwrap() < 0.05, "{q:#}");
    assert!(!q["findings"].to_string().contains("JIT"), "{q:#}");
}
