//! End-to-end tests of unwinding with `.eh_frame` tables: real
//! eBPF, real processes built without (and with) frame pointers, stacks
//! checked against the call graph the workload is written to have and
//! against a second unwinder (`perf record --call-graph dwarf`) run on the
//! same process.
//!
//! Every test holds the machine-wide end-to-end lock, writes into its own
//! scratch directory and kills what it started on the way out.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::path::Path;
use std::time::Duration;

use stackwatch_tests::capture::{assert_exit, file_name, pprof_raw, Capture, RawProfile};
use stackwatch_tests::unwindwork::{perf_dwarf_stacks, NamedStack, Variant};
use stackwatch_tests::{e2e_guard, run_stackwatch, scratch_dir, share_tolerance};

/// `record ARGS… --output-dir OUT`, which must succeed.
fn record_ok(args: &[&str], out: &Path) -> Capture {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output-dir", out.to_str().expect("scratch paths are UTF-8")]);
    let output = run_stackwatch(&all);
    assert_exit(&output, 0, &format!("stackwatch {}", all.join(" ")));
    Capture::read(out)
}

fn profile_of(capture: &Capture, kind: &str) -> RawProfile {
    let tag = format!("-{kind}-");
    let path = capture
        .files
        .iter()
        .find(|p| file_name(p).contains(&tag) && file_name(p).ends_with(".pb.gz"))
        .unwrap_or_else(|| panic!("no {kind} pprof in {:?}", capture.files));
    pprof_raw(path)
}

/// Share (by sample count) of the samples whose user stack has `leaf` as
/// its innermost frame that also contain `caller`; and their total.
fn caller_share(raw: &RawProfile, leaves: &[&str], caller: &str) -> (f64, u64) {
    let in_leaves: Vec<_> = raw.samples.iter().filter(|s| s.user_leaf().is_some_and(|l| leaves.contains(&l))).collect();
    let total: u64 = in_leaves.iter().map(|s| s.count()).sum();
    let with: u64 = in_leaves.iter().filter(|s| s.has_function(caller)).map(|s| s.count()).sum();
    (with as f64 / total.max(1) as f64, total)
}

fn perf_caller_share(stacks: &[NamedStack], leaves: &[&str], caller: &str) -> (f64, usize) {
    let in_leaves: Vec<_> = stacks.iter().filter(|s| s.first().is_some_and(|l| leaves.contains(&l.as_str()))).collect();
    let with = in_leaves.iter().filter(|s| s.iter().any(|f| f == caller)).count();
    (with as f64 / in_leaves.len().max(1) as f64, in_leaves.len())
}

fn leaf_share(raw: &RawProfile, leaf: &str, of: &[&str]) -> f64 {
    let count =
        |name: &str| -> u64 { raw.samples.iter().filter(|s| s.user_leaf() == Some(name)).map(|s| s.count()).sum() };
    let total: u64 = of.iter().map(|l| count(l)).sum();
    count(leaf) as f64 / total.max(1) as f64
}

fn manifest_unwind(capture: &Capture) -> serde_json::Value {
    capture.manifest()["unwind"].clone()
}

/// Two leaves split 3:1 under `work_loop`: the caller is in ≥ 99 % of the
/// leaves' samples and the split is within 5 points, with and without
/// frame pointers; `perf --call-graph dwarf` on the same process agrees.
#[test]
fn cpu_split_leaves_keep_their_caller() {
    let Some(_guard) = e2e_guard() else { return };
    for variant in [Variant::NoFramePointers, Variant::FramePointers] {
        let mut work = variant.spawn(&["cpu", "0"]);
        work.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(20));
        let pid = work.pid().to_string();
        let out = scratch_dir(&format!("unwind-cpu-{}", variant.name()));
        // ~1800 samples: the split's binomial spread is then 1 point, so a
        // 5-point miss is the profiler's, not chance's (with ~800 at 199 Hz
        // for 4 s one CI run in about thirty measured 70.0 %).
        let capture = record_ok(&["record", "--pid", &pid, "--duration", "6s", "--frequency", "299"], &out);
        let raw = profile_of(&capture, "cpu");
        let leaves = ["leaf_a", "leaf_b"];
        let (share, total) = caller_share(&raw, &leaves, "work_loop");
        let split = leaf_share(&raw, "leaf_a", &leaves);
        let unwind = manifest_unwind(&capture);
        println!(
            "{}: work_loop in {:.1} % of {total} leaf samples, leaf_a {:.1} %; unwind {unwind}",
            variant.name(),
            share * 100.0,
            split * 100.0
        );
        assert!(total >= 100, "too few samples in the leaves: {total}");
        assert!(share >= 0.99, "{}: work_loop in only {:.1} % of the leaves' samples", variant.name(), share * 100.0);
        assert!(
            (split - 0.75).abs() <= 0.05,
            "{}: leaf_a has {:.1} % of the leaves' samples, not 75 %",
            variant.name(),
            split * 100.0
        );
        assert_eq!(unwind["mode"], "auto");
        assert!(unwind["stacks_with_tables"].as_u64().unwrap_or(0) > 0, "{unwind}");
        // Whole stacks: from the leaves up to the thread's entry.
        let to_root = raw.samples.iter().filter(|s| s.user_leaf() == Some("leaf_a")).all(|s| {
            s.user_root_first().first().is_some_and(|f| *f == "clone3" || *f == "__clone3" || *f == "start_thread")
        });
        assert!(to_root, "leaf_a stacks do not reach the thread entry");

        let perf = perf_dwarf_stacks(work.pid(), Duration::from_secs(3), "cpu-clock", &out);
        let (perf_share, perf_total) = perf_caller_share(&perf, &leaves, "work_loop");
        println!(
            "{}: perf --call-graph dwarf: work_loop in {:.1} % of {perf_total}",
            variant.name(),
            perf_share * 100.0
        );
        assert!(perf_total >= 50, "perf took too few samples: {perf_total}");
        assert!(share >= perf_share - 0.01, "stackwatch {share} vs perf {perf_share}");
    }
}

/// FDE address ranges of one section in `readelf --debug-dump=frames`.
fn fde_ranges(dump: &str, section: &str) -> Vec<(u64, u64)> {
    let header = format!("Contents of the {section} section:");
    let mut inside = false;
    let mut ranges = Vec::new();
    for line in dump.lines() {
        if line.starts_with("Contents of the ") {
            inside = line.trim() == header;
        } else if let Some(pc) = line.split_whitespace().find_map(|w| w.strip_prefix("pc=")).filter(|_| inside) {
            let (lo, hi) = pc.split_once("..").expect("pc=LO..HI");
            let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex address");
            ranges.push((hex(lo), hex(hi)));
        }
    }
    ranges
}

/// A binary whose own code has call frame information only in
/// `.debug_frame` (no `.eh_frame` FDEs, no frame pointers): walked with
/// tables alone (`--unwind tables`, so nothing falls back to frame
/// pointers), the leaves keep their caller and reach the thread entry.
#[test]
fn debug_frame_only_binary_is_unwound() {
    let Some(_guard) = e2e_guard() else { return };
    let variant = Variant::DebugFrameOnly;
    let binary = variant.binary();
    // The build really leaves `work_loop` to `.debug_frame`.
    let dump = std::process::Command::new("readelf").arg("--debug-dump=frames").arg(&binary).output().expect("readelf");
    let dump = String::from_utf8_lossy(&dump.stdout);
    let nm = std::process::Command::new("nm").arg(&binary).output().expect("nm");
    let work_loop = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|l| l.strip_suffix(" T work_loop").map(|a| u64::from_str_radix(a, 16).expect("nm address")))
        .expect("work_loop in the symbol table");
    let covers = |ranges: &[(u64, u64)]| ranges.iter().any(|&(lo, hi)| lo <= work_loop && work_loop < hi);
    assert!(!covers(&fde_ranges(&dump, ".eh_frame")), "work_loop has an .eh_frame FDE");
    assert!(covers(&fde_ranges(&dump, ".debug_frame")), "work_loop has no .debug_frame FDE");

    let mut work = variant.spawn(&["cpu", "0"]);
    work.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(20));
    let pid = work.pid().to_string();
    let out = scratch_dir("unwind-debug-frame");
    let capture =
        record_ok(&["record", "--pid", &pid, "--duration", "3s", "--frequency", "199", "--unwind", "tables"], &out);
    let raw = profile_of(&capture, "cpu");
    let leaves = ["leaf_a", "leaf_b"];
    let (share, total) = caller_share(&raw, &leaves, "work_loop");
    let unwind = manifest_unwind(&capture);
    println!("debug_frame only: work_loop in {:.1} % of {total} leaf samples; unwind {unwind}", share * 100.0);
    assert!(total >= 100, "too few samples in the leaves: {total}");
    assert!(share >= 0.99, "work_loop in only {:.1} % of the leaves' samples", share * 100.0);
    assert_eq!(unwind["mode"], "tables");
    assert_eq!(unwind["stacks_fell_back"], 0, "{unwind}");
    let to_root = raw.samples.iter().filter(|s| s.user_leaf() == Some("leaf_a")).all(|s| {
        s.user_root_first().first().is_some_and(|f| *f == "clone3" || *f == "__clone3" || *f == "start_thread")
    });
    assert!(to_root, "leaf_a stacks do not reach the thread entry");
}

/// `--unwind fp` keeps the kernel's frame-pointer walk: on the binary
/// without frame pointers the leaves lose their caller (the comparison the
/// flag exists for), and the manifest says which mode ran.
#[test]
fn unwind_fp_is_the_frame_pointer_walk() {
    let Some(_guard) = e2e_guard() else { return };
    let mut work = Variant::NoFramePointers.spawn(&["cpu", "0"]);
    work.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(20));
    let pid = work.pid().to_string();
    let out = scratch_dir("unwind-fp-mode");
    let capture = record_ok(&["record", "--pid", &pid, "--duration", "2s", "--unwind", "fp"], &out);
    let raw = profile_of(&capture, "cpu");
    let (share, total) = caller_share(&raw, &["leaf_a", "leaf_b"], "work_loop");
    println!("fp mode: work_loop in {:.1} % of {total} leaf samples", share * 100.0);
    assert!(total > 20);
    assert!(share < 0.5, "frame pointers should lose work_loop here, found it in {:.1} %", share * 100.0);
    let unwind = manifest_unwind(&capture);
    assert_eq!(unwind["mode"], "fp");
    assert_eq!(unwind["stacks_with_tables"], 0);
    assert!(unwind.get("tables").is_none());
}

/// Threads blocked in named functions through glibc's frameless syscall
/// wrappers: the named function is in ≥ 99 % of each thread's off-CPU time
/// (it is the one frame an off-CPU profile exists to show), and gdb,
/// attached afterwards, unwinds the same callers.
#[test]
fn offcpu_stacks_keep_the_wrappers_caller() {
    let Some(_guard) = e2e_guard() else { return };
    let mut work = Variant::NoFramePointers.spawn(&["offcpu", "0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(work.try_status().is_none(), "the workload exited early");
    let pid = work.pid();
    let out = scratch_dir("unwind-offcpu");
    let capture = record_ok(&["record", "--pid", &pid.to_string(), "--duration", "3s", "--profiles", "offcpu"], &out);
    let raw = profile_of(&capture, "offcpu");
    // Value 1 is off-CPU nanoseconds.
    let ns = |pred: &dyn Fn(&stackwatch_tests::capture::RawSample) -> bool| -> f64 {
        raw.samples.iter().filter(|s| pred(s)).map(|s| s.values[1] as f64).sum()
    };
    let gdb = stackwatch_tests::unwindwork::gdb_thread_stacks(pid);
    for (thread, named) in [
        ("sleeper_main", "wait_for_io"),
        ("reader_main", "read_pipe"),
        ("waiter_main", "wait_cond"),
        ("__libc_start_call_main", "main"),
    ] {
        let total = ns(&|s| s.has_function(thread));
        let with = ns(&|s| s.has_function(thread) && s.has_function(named));
        let share = with / total.max(1.0);
        println!("{thread}: {named} in {:.2} % of {:.2} s off-CPU", share * 100.0, total / 1e9);
        assert!(total > 0.5e9, "{thread}: only {:.2} s off-CPU recorded", total / 1e9);
        assert!(share >= 0.99, "{thread}: {named} in only {:.2} % of its off-CPU time", share * 100.0);
        // gdb's unwind of the live thread agrees on the caller chain (it
        // stops at `main`, as gdb does by default).
        let agree = gdb.iter().any(|stack| {
            stack
                .iter()
                .position(|f| f == named)
                .is_some_and(|i| named == "main" || stack[i + 1..].iter().any(|f| f == thread))
        });
        assert!(agree, "gdb does not show {thread} -> {named}: {gdb:?}");
    }
    let unwind = manifest_unwind(&capture);
    assert_eq!(unwind["stacks_truncated"], 0, "{unwind}");
}

/// Runs `variant ARGS` until it has used some CPU, records `profile` for
/// `secs` and samples it with `perf --call-graph dwarf` afterwards.
fn capture_with_perf(
    variant: Variant,
    args: &[&str],
    profile: &str,
    secs: &str,
) -> (Capture, RawProfile, Vec<NamedStack>) {
    let mut work = variant.spawn(args);
    work.wait_for_cpu(Duration::from_millis(100), Duration::from_secs(20));
    let pid = work.pid().to_string();
    let out = scratch_dir(&format!("unwind-{}-{profile}", variant.name()));
    let capture =
        record_ok(&["record", "--pid", &pid, "--duration", secs, "--profiles", profile, "--frequency", "199"], &out);
    let raw = profile_of(&capture, profile);
    let perf = perf_dwarf_stacks(work.pid(), Duration::from_secs(3), "cpu-clock", &out);
    (capture, raw, perf)
}

/// Share of samples (by count) containing `inner` that also contain every
/// function of `callers`; the same from perf's stacks.
fn chain_share(raw: &RawProfile, inner: &str, callers: &[&str]) -> (f64, u64) {
    let with_inner: Vec<_> = raw.samples.iter().filter(|s| s.has_function(inner)).collect();
    let total: u64 = with_inner.iter().map(|s| s.count()).sum();
    let ok: u64 = with_inner.iter().filter(|s| callers.iter().all(|c| s.has_function(c))).map(|s| s.count()).sum();
    (ok as f64 / total.max(1) as f64, total)
}

fn perf_chain_share(stacks: &[NamedStack], inner: &str, callers: &[&str]) -> (f64, usize) {
    let with_inner: Vec<_> = stacks.iter().filter(|s| s.iter().any(|f| f == inner)).collect();
    let ok = with_inner.iter().filter(|s| callers.iter().all(|c| s.iter().any(|f| f == c))).count();
    (ok as f64 / with_inner.len().max(1) as f64, with_inner.len())
}

/// A no-frame-pointer library (glibc's qsort) calling back into code with
/// frame pointers: the comparator's callers are intact.
#[test]
fn qsort_callback_keeps_its_callers() {
    let Some(_guard) = e2e_guard() else { return };
    let (_, raw, perf) = capture_with_perf(Variant::FramePointers, &["qsort", "0"], "cpu", "3s");
    let callers = ["sort_loop", "main"];
    let (share, total) = chain_share(&raw, "compare_ints", &callers);
    let (perf_share, perf_total) = perf_chain_share(&perf, "compare_ints", &callers);
    println!(
        "qsort: compare_ints -> sort_loop -> main in {:.1} % of {total}; perf {:.1} % of {perf_total}",
        share * 100.0,
        perf_share * 100.0
    );
    assert!(total >= 20 && perf_total >= 10, "too few samples in the comparator: {total}, perf {perf_total}");
    assert!(share >= 0.99, "compare_ints kept its callers in only {:.1} %", share * 100.0);
    assert!(share >= perf_share - 0.01);
}

/// C++ built with g++ -O2 without frame pointers, `std::sort` with a
/// comparator: the comparator's callers are intact.
#[test]
fn cpp_std_sort_comparator_keeps_its_callers() {
    let Some(_guard) = e2e_guard() else { return };
    let (_, raw, perf) = capture_with_perf(Variant::CppNoFramePointers, &["0"], "cpu", "3s");
    let inner = "by_key(Item const&, Item const&)";
    let callers = ["sort_loop(double)", "main"];
    let (share, total) = chain_share(&raw, inner, &callers);
    // perf prints mangled-free names without parameter lists.
    let (perf_share, perf_total) = perf_chain_share(&perf, "by_key", &["sort_loop", "main"]);
    println!(
        "c++: by_key -> sort_loop -> main in {:.1} % of {total}; perf {:.1} % of {perf_total}",
        share * 100.0,
        perf_share * 100.0
    );
    assert!(total >= 20, "too few samples in the comparator: {total}");
    assert!(share >= 0.99, "by_key kept its callers in only {:.1} %", share * 100.0);
    assert!(perf_total == 0 || share >= perf_share - 0.01, "stackwatch {share} vs perf {perf_share}");
}

/// A Rust program built with the default release profile: stacks reach
/// `main` in ≥ 95 % of samples, as perf's do.
#[test]
fn rust_release_stacks_reach_main() {
    let Some(_guard) = e2e_guard() else { return };
    let (capture, raw, perf) = capture_with_perf(Variant::RustRelease, &["0"], "cpu", "3s");
    let user: Vec<_> = raw.samples.iter().filter(|s| s.user_leaf().is_some()).collect();
    let total: u64 = user.iter().map(|s| s.count()).sum();
    let reach: u64 =
        user.iter().filter(|s| s.has_function("unwind_rust::main") && s.has_function("main")).map(|s| s.count()).sum();
    let share = reach as f64 / total.max(1) as f64;
    let perf_reach = perf.iter().filter(|s| s.iter().any(|f| f == "main")).count() as f64 / perf.len().max(1) as f64;
    println!(
        "rust: main reached in {:.1} % of {total}; perf {:.1} % of {}",
        share * 100.0,
        perf_reach * 100.0,
        perf.len()
    );
    assert!(total >= 100, "too few samples: {total}");
    assert!(share >= 0.95, "only {:.1} % of the stacks reach main: {}", share * 100.0, manifest_unwind(&capture));
    let (outer, _) = chain_share(&raw, "unwind_rust::hot_a", &["unwind_rust::outer", "unwind_rust::run"]);
    assert!(outer >= 0.99, "hot_a lost its callers in {:.1} %", (1.0 - outer) * 100.0);
}

/// Allocation stacks (the malloc uprobe, at the function's entry) of a
/// program without frame pointers reach `main`.
#[test]
fn allocation_stacks_reach_main() {
    let Some(_guard) = e2e_guard() else { return };
    let (capture, raw, perf) = capture_with_perf(Variant::NoFramePointers, &["alloc", "0"], "memory", "3s");
    // Value 0 is allocated objects (estimated from the sampled bytes).
    let allocs: Vec<_> = raw.samples.iter().filter(|s| s.values[0] > 0).collect();
    let total: i64 = allocs.iter().map(|s| s.values[0]).sum();
    let reach: i64 =
        allocs.iter().filter(|s| has_chain(s, &["alloc_leaf", "alloc_loop", "main"])).map(|s| s.values[0]).sum();
    let share = reach as f64 / total.max(1) as f64;
    let (perf_share, perf_total) = perf_chain_share(&perf, "alloc_leaf", &["alloc_loop", "main"]);
    println!(
        "alloc: alloc_leaf -> alloc_loop -> main in {:.1} % of {total} objects; perf {:.1} % of {perf_total}",
        share * 100.0,
        perf_share * 100.0
    );
    assert!(total > 0, "no allocation samples: {}", capture.manifest());
    assert!(share >= 0.99, "allocation stacks reach main in only {:.1} %", share * 100.0);
    assert!(perf_total == 0 || share >= perf_share - 0.01, "stackwatch {share} vs perf {perf_share}");
}

/// A process that starts during a whole-host capture and lives one second:
/// the program asks for its tables on its first sample, and most of its
/// samples get whole stacks (the share is printed for the docs).
#[test]
fn short_lived_process_gets_tables() {
    let Some(_guard) = e2e_guard() else { return };
    let out = scratch_dir("unwind-short-lived");
    let out_arg = out.to_str().expect("UTF-8").to_owned();
    let mut record = stackwatch_tests::spawn_stackwatch(&[
        "record",
        "--duration",
        "5s",
        "--frequency",
        "199",
        "--output-dir",
        &out_arg,
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut work = Variant::NoFramePointers.spawn(&["cpu", "1"]);
    let pid = work.pid().to_string();
    let status = work.wait(Duration::from_secs(10));
    assert!(status.success(), "the workload failed: {status}");
    let started = std::time::Instant::now();
    while record.try_status().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "the whole-host capture did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = record.stop();
    assert_exit(&output, 0, "stackwatch record (whole host)");
    let capture = Capture::read(&out);
    let raw = profile_of(&capture, "cpu");
    let mine = raw.samples.iter().filter(|s| s.label("pid") == Some(pid.as_str()));
    let (whole, total, share) = whole_leaf_share(mine, &["work_loop"]);
    println!(
        "short-lived (1 s): {whole} of {total} leaf samples whole ({:.1} %); unwind {}",
        share * 100.0,
        manifest_unwind(&capture)
    );
    assert!(total >= 50, "too few samples of the short-lived process: {total}");
    assert!(share >= 0.9, "only {:.1} % of a 1 s process's samples had whole stacks", share * 100.0);
}

/// A process that runs `execve` has its mappings forgotten by the program
/// (the `sched_process_exec` hook): without address randomization (kept
/// across exec) the new program is loaded where the old one was, so its
/// pcs fall inside the old mappings and would be unwound with the old
/// file's table.
#[test]
fn exec_unwinds_the_new_program_with_its_own_table() {
    let Some(_guard) = e2e_guard() else { return };
    let after = Variant::NoFramePointers.binary();
    let after = after.to_str().expect("UTF-8 path");
    let mut work = Variant::FramePointers.spawn_unrandomized(&["exec", "1", after, "cpu", "3"]);
    work.wait_for_cpu(Duration::from_millis(100), Duration::from_secs(20));
    let pid = work.pid().to_string();
    let out = scratch_dir("unwind-exec");
    // 499 Hz: at 199 Hz the new program got 186–230 samples, around the
    // 200 this test needs, on a loaded host.
    let capture =
        record_ok(&["record", "--pid", &pid, "--duration", "3s", "--profiles", "cpu", "--frequency", "499"], &out);
    let status = work.wait(Duration::from_secs(10));
    assert!(status.success(), "the workload failed: {status}");
    let raw = profile_of(&capture, "cpu");
    // The new program's samples, by their command name (`comm`, 15 bytes).
    // The old program's samples are left out: they are named from the
    // process's mappings as they are at the end (see troubleshooting).
    let new_comm = &Variant::NoFramePointers.name()[..15];
    let new_program = raw.samples.iter().filter(|s| s.label("comm") == Some(new_comm));
    let (whole, total, share) = whole_leaf_share(new_program, &["work_loop", "thread_main"]);
    println!(
        "after exec: {whole} of {total} leaf samples whole ({:.1} %); unwind {}",
        share * 100.0,
        manifest_unwind(&capture)
    );
    assert!(total >= 200, "too few samples after the exec: {total}");
    assert!(share >= 0.97, "only {:.1} % of the stacks after exec were whole", share * 100.0);
}

/// Of `samples` whose user leaf is `leaf_a` or `leaf_b` (`unwind_work
/// cpu`): how many have every function of `callers`, how many there are,
/// and the share.
fn whole_leaf_share<'a>(
    samples: impl Iterator<Item = &'a stackwatch_tests::capture::RawSample>,
    callers: &[&str],
) -> (u64, u64, f64) {
    let (mut whole, mut total) = (0, 0);
    for s in samples.filter(|s| s.user_leaf().is_some_and(|l| l == "leaf_a" || l == "leaf_b")) {
        total += s.count();
        if has_chain(s, callers) {
            whole += s.count();
        }
    }
    (whole, total, whole as f64 / total.max(1) as f64)
}

fn has_chain(s: &stackwatch_tests::capture::RawSample, chain: &[&str]) -> bool {
    chain.iter().all(|f| s.has_function(f))
}

/// A signal handler runs on the interrupted code's stack, above glibc's
/// `__restore_rt` trampoline: the walk goes through the signal frame (the
/// interrupted registers are in the `ucontext` it points at) back to the
/// interrupted function and its callers.
#[test]
fn signal_handler_stacks_continue_into_the_interrupted_code() {
    let Some(_guard) = e2e_guard() else { return };
    let (capture, raw, perf) = capture_with_perf(Variant::NoFramePointers, &["signal", "0"], "cpu", "6s");
    let callers = ["interrupted_loop", "main"];
    let (share, total) = chain_share(&raw, "on_prof", &callers);
    let (perf_share, perf_total) = perf_chain_share(&perf, "on_prof", &callers);
    println!(
        "signal: on_prof -> [signal frame] -> interrupted_loop -> main in {:.1} % of {total}; perf {:.1} % of {perf_total}",
        share * 100.0,
        perf_share * 100.0
    );
    assert!(total >= 10, "too few samples in the handler: {total}");
    assert!(
        share >= 0.99,
        "the handler's stacks reach the interrupted code in only {:.1} %: {}",
        share * 100.0,
        manifest_unwind(&capture)
    );
    assert!(perf_total == 0 || share >= perf_share - 0.01, "stackwatch {share} vs perf {perf_share}");
}

/// A library loaded with `dlopen` after the capture started (the process's
/// mappings were loaded at the start, without it): its first pc outside
/// every known mapping makes the program ask for the mappings again, and
/// the library's frames unwind with its table from then on.
#[test]
fn dlopened_library_gets_its_table() {
    let Some(_guard) = e2e_guard() else { return };
    let plugin = Variant::Plugin.binary();
    let plugin = plugin.to_str().expect("UTF-8 path");
    let work = Variant::NoFramePointers.spawn(&["dlopen", "0", plugin]);
    std::thread::sleep(Duration::from_millis(200));
    let pid = work.pid().to_string();
    let out = scratch_dir("unwind-dlopen");
    let capture = record_ok(&["record", "--pid", &pid, "--duration", "4s", "--frequency", "199"], &out);
    let raw = profile_of(&capture, "cpu");
    let (share, total) = chain_share(&raw, "plugin_leaf", &["plugin_work", "run_plugin", "main"]);
    let unwind = manifest_unwind(&capture);
    println!(
        "dlopen: plugin_leaf -> plugin_work -> run_plugin -> main in {:.1} % of {total}; unwind {unwind}",
        share * 100.0
    );
    assert!(total >= 100, "too few samples in the plugin: {total}");
    assert!(share >= 0.95, "the plugin's stacks were whole in only {:.1} %", share * 100.0);
    assert!(
        unwind["tables"]["requests"].as_u64().unwrap_or(0) >= 1,
        "the program never asked for the new mapping: {unwind}"
    );
}

/// `--unwind tables` trusts tables only: a Go binary (Go keeps frame
/// pointers and gets no table) ends every stack in a visible `[truncated]`
/// frame, counted as `no_table`, and the manifest names the file and why.
#[test]
fn tables_mode_marks_code_without_a_table() {
    let Some(_guard) = e2e_guard() else { return };
    if !stackwatch_tests::require_go() {
        return;
    }
    let mut work = stackwatch_tests::Workload::spawn(stackwatch_tests::WorkloadKind::GoSplit, &["0"]);
    work.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(20));
    let pid = work.pid().to_string();
    let out = scratch_dir("unwind-tables-mode");
    let capture = record_ok(&["record", "--pid", &pid, "--duration", "2s", "--unwind", "tables"], &out);
    let raw = profile_of(&capture, "cpu");
    let user: Vec<_> = raw.samples.iter().filter(|s| s.user_leaf().is_some()).collect();
    let total: u64 = user.iter().map(|s| s.count()).sum();
    let marked: u64 =
        user.iter().filter(|s| s.user_root_first().first() == Some(&"[truncated]")).map(|s| s.count()).sum();
    let unwind = manifest_unwind(&capture);
    println!("tables mode, Go: {marked} of {total} stacks end in [truncated]; unwind {unwind}");
    assert!(total >= 20, "too few samples: {total}");
    assert_eq!(marked, total, "every Go stack must end in [truncated] under --unwind tables");
    assert_eq!(unwind["mode"], "tables");
    assert!(unwind["truncated_by_reason"]["no_table"].as_u64().unwrap_or(0) > 0, "{unwind}");
    let without = unwind["tables"]["without_tables"].as_array().cloned().unwrap_or_default();
    assert!(without.iter().any(|w| w["reason"].as_str().is_some_and(|r| r.contains("Go"))), "{unwind}");
}

/// Deep stacks: 50 levels of recursion (stored apart from stacks of up to
/// 31 frames) come back whole, down to `main`; 200 levels keep the 127
/// innermost frames and end in `[truncated]`, counted as too deep.
#[test]
fn deep_stacks_are_whole_up_to_the_limit_and_marked_past_it() {
    let Some(_guard) = e2e_guard() else { return };
    for (depth, whole) in [(50usize, true), (200, false)] {
        let mut work = Variant::NoFramePointers.spawn(&["deep", "0", &depth.to_string()]);
        work.wait_for_cpu(Duration::from_millis(200), Duration::from_secs(20));
        let pid = work.pid().to_string();
        let out = scratch_dir(&format!("unwind-deep-{depth}"));
        let capture = record_ok(&["record", "--pid", &pid, "--duration", "2s", "--frequency", "199"], &out);
        let raw = profile_of(&capture, "cpu");
        let unwind = manifest_unwind(&capture);
        let in_leaf: Vec<_> = raw.samples.iter().filter(|s| s.user_leaf() == Some("leaf_a")).collect();
        let total: u64 = in_leaf.iter().map(|s| s.count()).sum();
        let levels =
            |s: &&stackwatch_tests::capture::RawSample| s.user_root_first().iter().filter(|f| **f == "descend").count();
        let right: u64 = in_leaf
            .iter()
            .filter(|s| {
                let frames = s.user_root_first();
                if whole {
                    levels(s) == depth && frames.contains(&"main")
                } else {
                    // leaf_a and 126 levels of descend, below the marker.
                    levels(s) == 126 && frames.first() == Some(&"[truncated]") && !frames.contains(&"main")
                }
            })
            .map(|s| s.count())
            .sum();
        println!("deep {depth}: {right} of {total} leaf samples as expected; unwind {unwind}");
        assert!(total >= 50, "too few samples in leaf_a: {total}");
        assert!(
            right as f64 >= 0.99 * total as f64,
            "depth {depth}: only {right} of {total} stacks right; one: {:?}",
            in_leaf.first().map(|s| s.user_root_first())
        );
        if !whole {
            assert!(unwind["truncated_by_reason"]["too_deep"].as_u64().unwrap_or(0) > 0, "{unwind}");
        }
    }
}

/// The same ten frames at the same stack addresses under two callers in
/// turn (3:1): every leaf sample has all ten and exactly one of the two
/// callers, split 3:1, though most stacks take their outer frames from the
/// thread's previous walk (its stack base); `perf --call-graph dwarf`
/// splits them alike.
#[test]
fn stack_base_is_taken_only_where_the_stack_under_it_is_unchanged() {
    let Some(_guard) = e2e_guard() else { return };
    let (capture, raw, perf) = capture_with_perf(Variant::NoFramePointers, &["paths", "0"], "cpu", "4s");
    let in_leaf: Vec<_> = raw.samples.iter().filter(|s| s.user_leaf() == Some("leaf_a")).collect();
    let total: u64 = in_leaf.iter().map(|s| s.count()).sum();
    let whole = |frames: &[&str]| {
        frames.iter().filter(|f| **f == "climb").count() == 10
            && frames.contains(&"paths_loop")
            && frames.contains(&"main")
            && (frames.contains(&"path_a") != frames.contains(&"path_b"))
    };
    let right: u64 = in_leaf.iter().filter(|s| whole(&s.user_root_first())).map(|s| s.count()).sum();
    let under_a: u64 = in_leaf.iter().filter(|s| s.has_function("path_a")).map(|s| s.count()).sum();
    let split = under_a as f64 / total.max(1) as f64;
    let unwind = manifest_unwind(&capture);
    let reused = unwind["stacks_reusing_base"].as_u64().unwrap_or(0);
    let perf_leaf: Vec<_> = perf.iter().filter(|s| s.first().is_some_and(|l| l == "leaf_a")).collect();
    let perf_a = perf_leaf.iter().filter(|s| s.iter().any(|f| f == "path_a")).count();
    let perf_split = perf_a as f64 / perf_leaf.len().max(1) as f64;
    println!(
        "paths: {right} of {total} leaf samples whole, path_a {:.1} % (perf {:.1} % of {}); unwind {unwind}",
        split * 100.0,
        perf_split * 100.0,
        perf_leaf.len()
    );
    assert!(total >= 100, "too few samples in leaf_a: {total}");
    assert!(right as f64 >= 0.99 * total as f64, "only {right} of {total} stacks whole with one caller");
    let tolerance = share_tolerance(total as f64);
    assert!(
        (split - 0.75).abs() <= tolerance,
        "path_a has {:.1} % of the leaf samples, not 75 % ± {:.1} points",
        split * 100.0,
        tolerance * 100.0
    );
    assert!(perf_leaf.len() >= 50, "perf took too few samples: {}", perf_leaf.len());
    // Two measurements, each with its binomial noise (perf's at 99 Hz the
    // larger): the tolerance of their difference.
    let tolerance = share_tolerance(1.0 / (1.0 / total as f64 + 1.0 / perf_leaf.len() as f64));
    assert!(
        (split - perf_split).abs() <= tolerance,
        "stackwatch {split:.3} vs perf {perf_split:.3}, more than {:.1} points apart",
        tolerance * 100.0
    );
    assert!(reused >= total / 4, "only {reused} stacks took their base ({total} leaf samples): {unwind}");
}
