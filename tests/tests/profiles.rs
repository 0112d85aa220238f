//! End-to-end tests of the off-CPU and memory profiles, with the real eBPF
//! programs against workloads built for them.
//!
//! Expected values come from the workloads' design (a 3:1 split of blocked
//! time) or from measurements stackwatch has no part in: a thread's on-CPU
//! time from `/proc/<pid>/task/<tid>/schedstat`, and the bytes a workload
//! allocated from the log it writes as it goes. Both are read over the
//! capture window the manifest states. The measured numbers are printed
//! (`--nocapture` shows them) so they can be reported.
//!
//! Every test holds the machine-wide end-to-end lock, writes into its own
//! scratch directory and kills what it started on the way out.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use stackwatch_tests::capture::{
    assert_exit, file_name, go_pprof, parse_utc, pprof_raw, svg_frames, svg_title, Capture, RawProfile, RawSample,
};
use stackwatch_tests::profwork::{AllocLog, ProfWorkload, Running, ThreadWatch};
use stackwatch_tests::{e2e_guard, go_pprof_top_index, parse_pprof_top, require_go, run_stackwatch, scratch_dir};

/// A blocking function's share of off-CPU time, in share points.
const SHARE_TOLERANCE: f64 = 0.10;
/// A thread's off-CPU total against the truth, relative.
const OFFCPU_TOTAL_TOLERANCE: f64 = 0.10;
/// Allocated bytes against what the workload allocated, relative.
const ALLOC_TOLERANCE: f64 = 0.25;

/// Index of `page_faults/count` in a memory profile (after `alloc_objects`,
/// `alloc_space`, `inuse_objects`, `inuse_space`).
const FAULTS: usize = 4;

/// `record ARGS… --output-dir OUT`, which must succeed; returns the files it wrote.
fn record_ok(args: &[&str], out: &Path) -> Capture {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output-dir", out.to_str().expect("scratch paths are UTF-8")]);
    let output = run_stackwatch(&all);
    assert_exit(&output, 0, &format!("stackwatch {}", all.join(" ")));
    let capture = Capture::read(out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for file in &capture.files {
        assert!(stdout.contains(&file_name(file)), "stdout does not list `{}`:\n{stdout}", file.display());
    }
    capture
}

/// The capture's file of `kind` (`cpu`, `offcpu`, `memory`) ending in `ext`.
fn kind_file(capture: &Capture, kind: &str, ext: &str) -> PathBuf {
    let tag = format!("-{kind}-");
    let found: Vec<&PathBuf> =
        capture.files.iter().filter(|p| file_name(p).contains(&tag) && file_name(p).ends_with(ext)).collect();
    match found.as_slice() {
        [one] => (*one).clone(),
        _ => panic!("expected one `*{tag}*{ext}` in `{}`, found {:?}", capture.dir.display(), capture.files),
    }
}

/// The capture window the manifest states.
fn window(manifest: &serde_json::Value) -> (SystemTime, SystemTime) {
    let time = |key: &str| {
        manifest[key]
            .as_str()
            .and_then(parse_utc)
            .unwrap_or_else(|| panic!("manifest has no valid `{key}`: {manifest:#}"))
    };
    (time("start"), time("end"))
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Sum of value `index` over the samples for which `pred` holds.
fn sum_where(raw: &RawProfile, index: usize, pred: impl Fn(&RawSample) -> bool) -> f64 {
    // `+ 0.0` turns the empty sum's -0.0 into 0.0 for printing.
    raw.samples.iter().filter(|s| pred(s)).map(|s| s.values[index] as f64).sum::<f64>() + 0.0
}

/// Whether `needle` occurs in `stack` in order (not necessarily adjacent).
fn has_subsequence(stack: &[&str], needle: &[&str]) -> bool {
    let mut it = stack.iter();
    needle.iter().all(|n| it.any(|f| f == n))
}

fn sample_types(raw: &RawProfile) -> Vec<String> {
    raw.sample_types.iter().map(|(t, u)| format!("{t}/{u}")).collect()
}

// ---------------------------------------------------------------------------
// 0. The workloads and their ground truth (no root needed)

/// The workloads build and run, the benchmark loads print their rate, and
/// the allocation logs the tests trust grow at the rate asked for.
#[test]
fn workloads_build_run_and_log_what_they_allocate() {
    let _guard = stackwatch_tests::exclusive();
    let second = Duration::from_secs(30);
    let pp = ProfWorkload::PingPong.run(&["0.2"], second);
    assert!(String::from_utf8_lossy(&pp.stdout).starts_with("round_trips_per_sec "), "{pp:?}");
    let ml = ProfWorkload::MallocLoop.run(&["0.2", "64"], second);
    assert!(String::from_utf8_lossy(&ml.stdout).starts_with("mallocs_per_sec "), "{ml:?}");
    let (mut blocker, tid) = start_blocker(3000, 1000, "asm");
    assert!(stackwatch_tests::profwork::thread_oncpu_ns(blocker.pid(), tid).is_some());
    blocker.assert_running();

    let mut kinds = vec![ProfWorkload::Leak];
    if require_go() {
        kinds.push(ProfWorkload::GoLeak);
    }
    for kind in kinds {
        let out = scratch_dir(&format!("profiles-log-{}", kind.name()));
        let log_path = out.join("alloc.log");
        let rate = 32u64 << 20;
        let mut workload = Running::spawn(kind, &[log_path.to_str().expect("UTF-8"), "65536", &rate.to_string()]);
        let first = AllocLog::wait(&log_path, 20);
        thread::sleep(Duration::from_millis(500));
        workload.assert_running();
        let log = AllocLog::read(&log_path);
        let (Some(&(t0, b0)), Some(&(t1, b1))) = (first.points.last(), log.points.last()) else {
            panic!("empty allocation log")
        };
        let seconds = t1.duration_since(t0).expect("log goes forward").as_secs_f64();
        let measured = (b1 - b0) as f64 / seconds;
        eprintln!("measured: {} logs {} per second (asked for {})", kind.name(), mib(measured), mib(rate as f64));
        assert!((measured / rate as f64 - 1.0).abs() <= 0.1, "{} allocates {} per second", kind.name(), mib(measured));
        assert_eq!(log.between(t0, t1), b1 - b0);
    }
}

// ---------------------------------------------------------------------------
// 1. Off-CPU time: shares and totals

/// Starts `offcpu_block A_US B_US MODE` and returns it with its blocker
/// thread's id.
fn start_blocker(a_us: u32, b_us: u32, mode: &str) -> (Running, u32) {
    let mut workload = Running::spawn(ProfWorkload::OffcpuBlock, &[&a_us.to_string(), &b_us.to_string(), mode]);
    let pid = workload.pid();
    let tids = workload.wait_for_threads(2);
    let Some(&tid) = tids.iter().find(|&&t| t != pid) else { panic!("offcpu_block has no blocker thread: {tids:?}") };
    // Let it settle into its loop before the capture starts.
    thread::sleep(Duration::from_millis(300));
    (workload, tid)
}

/// Records `--profiles offcpu` of the blocker for `duration`, and returns
/// the capture, its profile, the blocker's true off-CPU time in the window
/// (wall time minus its on-CPU time from schedstat), and the window length.
fn record_blocker(workload: &mut Running, tid: u32, duration: &str, out: &Path) -> (Capture, RawProfile, f64, f64) {
    let pid = workload.pid();
    let watch = ThreadWatch::start(pid, tid);
    let capture =
        record_ok(&["record", "--pid", &pid.to_string(), "--duration", duration, "--profiles", "offcpu"], out);
    // One more reading after the window's end.
    thread::sleep(Duration::from_millis(20));
    let trace = watch.finish();
    workload.assert_running();
    let (start, end) = window(&capture.manifest());
    let wall = end.duration_since(start).expect("manifest end before start").as_nanos() as f64;
    let Some(oncpu) = trace.between(start, end) else {
        panic!(
            "the schedstat trace does not cover the capture window: {:?} .. {:?}",
            trace.points.first(),
            trace.points.last()
        )
    };
    let raw = pprof_raw(&kind_file(&capture, "offcpu", ".pb.gz"));
    (capture, raw, wall - oncpu, wall)
}

/// Checks the blocker thread's off-CPU total in `raw` against `truth` and
/// returns it.
fn assert_thread_total(raw: &RawProfile, tid: u32, truth: f64, wall: f64) -> f64 {
    let tid_text = tid.to_string();
    let total = sum_where(raw, 1, |s| s.label("tid") == Some(tid_text.as_str()));
    let err = (total - truth) / truth;
    eprintln!(
        "measured: blocker thread {tid}: off-CPU {:.3} s in the profile, {:.3} s true (wall {:.3} s minus on-CPU \
         {:.3} ms from schedstat), error {}",
        total / 1e9,
        truth / 1e9,
        wall / 1e9,
        (wall - truth) / 1e6,
        pct(err)
    );
    assert!(truth >= 0.9 * wall, "the blocker was on a CPU for {:.1} ms of {:.1} ms", (wall - truth) / 1e6, wall / 1e6);
    assert!(
        err.abs() <= OFFCPU_TOTAL_TOLERANCE,
        "thread {tid}: {:.3} s off-CPU in the profile vs {:.3} s true ({} off, allowed ±{})",
        total / 1e9,
        truth / 1e9,
        pct(err),
        pct(OFFCPU_TOTAL_TOLERANCE)
    );
    total
}

#[test]
fn offcpu_blocking_functions_hold_their_share_and_the_thread_total_matches() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-offcpu-share");
    // block_a sleeps 3 ms and block_b 1 ms per round: 75 % / 25 % of the
    // blocked time.
    let (a_us, b_us) = (3000, 1000);
    let expected = f64::from(a_us) / f64::from(a_us + b_us);
    let (mut workload, tid) = start_blocker(a_us, b_us, "asm");
    let (capture, raw, truth, wall) = record_blocker(&mut workload, tid, "5s", &out);

    assert_eq!(sample_types(&raw), ["switches/count", "offcpu/nanoseconds"]);
    assert_eq!(raw.default_index, Some(1), "offcpu/nanoseconds must be the default sample type");
    let thread_total = assert_thread_total(&raw, tid, truth, wall);

    // The share, as an operator reads it: `go tool pprof -sample_index=offcpu -top`.
    let path = kind_file(&capture, "offcpu", ".pb.gz");
    let text = go_pprof_top_index(&path, "offcpu");
    let top = parse_pprof_top(&text);
    assert_eq!(top.header("Type"), Some("offcpu"), "{text}");
    let (a, b) = (top.cum("block_a"), top.cum("block_b"));
    let share = a / (a + b);
    eprintln!(
        "measured: block_a {:.3} s, block_b {:.3} s: block_a's share {} (expected {} ± {} points)",
        a / 1e9,
        b / 1e9,
        pct(share),
        pct(expected),
        100.0 * SHARE_TOLERANCE
    );
    assert!((share - expected).abs() <= SHARE_TOLERANCE, "block_a's share is {}:\n{text}", pct(share));
    assert!(
        a + b >= 0.95 * thread_total,
        "block_a and block_b hold only {:.3} s of the thread's {:.3} s:\n{text}",
        (a + b) / 1e9,
        thread_total / 1e9
    );

    // Stacks: the blocked time hangs under the kernel's sleep path and the
    // whole user call chain, the blocking function's caller included
    // (block_a/block_b make the syscall themselves and keep a frame).
    for (f, time) in [("block_a", a), ("block_b", b)] {
        let mut chained = 0.0;
        let mut with_kernel = 0.0;
        for s in raw.samples.iter().filter(|s| s.has_function(f)) {
            if has_subsequence(&s.user_root_first(), &["blocker", "block_loop", f]) {
                chained += s.values[1] as f64;
            }
            if s.stack.iter().any(|fr| fr.is_kernel() && fr.function.contains("nanosleep")) {
                with_kernel += s.values[1] as f64;
            }
        }
        assert!(
            chained >= 0.99 * time,
            "{f}: only {} of its time under blocker -> block_loop -> {f}",
            pct(chained / time)
        );
        assert!(
            with_kernel >= 0.99 * time,
            "{f}: only {} of its time has the kernel's nanosleep frames",
            pct(with_kernel / time)
        );
    }
    let comms = raw.label_values("comm");
    assert!(comms.iter().all(|c| c == "offcpu_block"), "unexpected comm labels: {comms:?}");
    // The main thread sits in pthread_join from before the capture: it was
    // switched out before the program was attached, so it is not in the
    // profile (documented in docs/usage.md).
    let main_ns = sum_where(&raw, 1, |s| s.label("tid") == Some(workload.pid().to_string().as_str()));
    eprintln!(
        "measured: main thread (blocked since before the capture): {:.3} s off-CPU in the profile",
        main_ns / 1e9
    );
}

/// Blocking inside a glibc wrapper (nanosleep -> clock_nanosleep, built
/// without frame pointers on Debian): the time is all there and charged to
/// the wrapper, but the frame-pointer walk skips the function that called
/// the wrapper. This pins down what docs/usage.md says about it; whether the
/// caller survives depends on how the host's glibc was built, so that part
/// is reported, not asserted.
#[test]
fn offcpu_in_a_libc_wrapper_is_charged_to_the_wrapper() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-offcpu-libc");
    let (a_us, b_us) = (3000, 1000);
    let (mut workload, tid) = start_blocker(a_us, b_us, "libc");
    let (_capture, raw, truth, wall) = record_blocker(&mut workload, tid, "3s", &out);
    let total = assert_thread_total(&raw, tid, truth, wall);

    let in_wrapper = |s: &RawSample| s.user_leaf().is_some_and(|f| f.contains("nanosleep"));
    let wrapper = sum_where(&raw, 1, |s| in_wrapper(s));
    let with_caller = sum_where(&raw, 1, |s| in_wrapper(s) && s.has_function("block_libc"));
    let under_loop = sum_where(&raw, 1, |s| in_wrapper(s) && s.has_function("block_loop"));
    let expected = f64::from(a_us) / f64::from(a_us + b_us);
    eprintln!(
        "measured: libc sleep wrapper as user leaf: {} of the thread's off-CPU time (expected {}); of that, {} \
         keeps block_libc (the wrapper's caller) and {} keeps block_loop",
        pct(wrapper / total),
        pct(expected),
        pct(with_caller / wrapper.max(1.0)),
        pct(under_loop / wrapper.max(1.0))
    );
    assert!(
        (wrapper / total - expected).abs() <= SHARE_TOLERANCE,
        "the libc wrapper holds {} of the off-CPU time, expected {}",
        pct(wrapper / total),
        pct(expected)
    );
    // Whatever glibc does, the walk goes on past the skipped frame.
    assert!(under_loop >= 0.99 * wrapper, "the stacks through the libc wrapper lost block_loop too");
}

// ---------------------------------------------------------------------------
// 2. Allocations: the leaking function tops the profile, bytes match

/// Runs `kind LOG SIZE RATE` (a steady leak), records `--profiles memory`
/// for 5 s, and checks that `leak_fn` tops `-sample_index=alloc_space` and
/// that the allocated bytes match the workload's own log.
fn check_leak(kind: ProfWorkload, size: u64, leak_fn: &str) -> (RawProfile, f64) {
    let out = scratch_dir(&format!("profiles-{}-{size}", kind.name()));
    let log_path = out.join("alloc.log");
    let capture_dir = out.join("capture");
    // 32 MiB/s: for malloc about 320 samples of 512 KiB in 5 s, so the
    // sampling spread (about 3 %) is far inside the tolerance; small next to
    // the machine.
    let rate = 32u64 << 20;
    let mut workload = Running::spawn(
        kind,
        &[log_path.to_str().expect("scratch paths are UTF-8"), &size.to_string(), &rate.to_string()],
    );
    // 30 log lines: 300 ms into its steady state.
    AllocLog::wait(&log_path, 30);
    let pid = workload.pid().to_string();
    let capture = record_ok(&["record", "--pid", &pid, "--duration", "5s", "--profiles", "memory"], &capture_dir);
    // Let the log run past the window's end.
    thread::sleep(Duration::from_millis(100));
    workload.assert_running();
    let log = AllocLog::read(&log_path);
    let (start, end) = window(&capture.manifest());
    assert!(log.covers(start) && log.covers(end), "the allocation log does not cover the capture window");
    let truth = log.between(start, end) as f64;

    let path = kind_file(&capture, "memory", ".pb.gz");
    let raw = pprof_raw(&path);
    assert_eq!(
        sample_types(&raw),
        ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes", "page_faults/count"]
    );
    assert_eq!(raw.default_index, Some(1), "alloc_space/bytes must be the default sample type");
    let text = go_pprof_top_index(&path, "alloc_space");
    let top = parse_pprof_top(&text);
    assert_eq!(top.header("Type"), Some("alloc_space"), "{text}");
    let Some(first) = top.rows.first() else { panic!("empty alloc_space profile:\n{text}") };
    let total = sum_where(&raw, 1, |_| true);
    let objects = sum_where(&raw, 0, |_| true);
    let err = (total - truth) / truth;
    eprintln!(
        "measured: {} {size}-byte blocks: top of alloc_space is {} with {} of {}; profile {} vs {} allocated in \
         the window (error {}); {objects} objects vs {} allocated",
        kind.name(),
        first.name,
        mib(first.flat),
        mib(total),
        mib(total),
        mib(truth),
        pct(err),
        truth / size as f64
    );
    assert_eq!(first.name, leak_fn, "`{leak_fn}` must top the alloc_space profile:\n{text}");
    assert!(
        first.flat >= 0.9 * total,
        "`{leak_fn}` holds only {} of the allocated bytes:\n{text}",
        pct(first.flat / total)
    );
    assert!(
        err.abs() <= ALLOC_TOLERANCE,
        "{} in the profile vs {} allocated ({} off, allowed ±{})",
        mib(total),
        mib(truth),
        pct(err),
        pct(ALLOC_TOLERANCE)
    );
    let objects_err = (objects - truth / size as f64) / (truth / size as f64);
    assert!(objects_err.abs() <= ALLOC_TOLERANCE, "alloc_objects off by {}", pct(objects_err));
    // Allocation stacks reach the program's own outer frames.
    let with_chain = sum_where(&raw, 1, |s| s.values[1] > 0 && s.has_function(leak_fn) && s.stack.len() >= 3);
    assert!(with_chain >= 0.99 * total, "allocation samples lack their callers: {raw:#?}");
    (raw, truth)
}

#[test]
fn c_leak_tops_the_memory_profile_with_the_bytes_allocated() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    // 64 KiB blocks (below glibc's mmap threshold, so from the heap): leak()
    // itself touches most of each block's pages first, so it also tops the
    // page faults.
    let size = 64 * 1024;
    let (raw, truth) = check_leak(ProfWorkload::Leak, size, "leak");
    let faults = sum_where(&raw, FAULTS, |_| true);
    let in_leak = sum_where(&raw, FAULTS, |s| s.user_leaf() == Some("leak"));
    eprintln!(
        "measured: {faults} page faults ({} pages allocated), {} of them in leak()",
        truth / 4096.0,
        pct(in_leak / faults.max(1.0))
    );
    assert!(in_leak >= 0.5 * faults, "leak() has only {} of the page faults", pct(in_leak / faults.max(1.0)));
    let user_leaf = |s: &RawSample| s.values[1] > 0 && s.user_leaf() == Some("leak");
    assert!(sum_where(&raw, 1, user_leaf) >= 0.99 * sum_where(&raw, 1, |_| true), "malloc frames were not stripped");
}

/// Small objects: 1 KiB comes from a size-class span (8 objects per 8 KiB
/// span), so the probe fires once per span refill and each refill stands
/// for the span's bytes.
#[test]
fn go_small_object_leak_tops_the_memory_profile_with_the_bytes_allocated() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    check_leak(ProfWorkload::GoLeak, 1024, "main.leak");
}

/// Large objects: above 32 KiB each allocation is its own
/// `runtime.(*mcache).allocLarge` call, probed with its exact size.
#[test]
fn go_large_object_leak_tops_the_memory_profile_with_the_bytes_allocated() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    check_leak(ProfWorkload::GoLeak, 64 * 1024, "main.leak");
}

/// One capture tells a leak from churn: `churn` allocates (malloc, then
/// realloc to twice the size) three times the bytes `hold` callocs, but
/// frees every block, so the allocation view is led by `churn` and the
/// in-use view holds `hold`'s bytes kept inside the window, by its log.
#[test]
fn inuse_view_shows_what_is_still_held_and_not_the_churn() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-inuse");
    let log_path = out.join("held.log");
    // 16 KiB blocks, from the heap (below glibc's mmap threshold even after
    // the realloc); 32 MiB/s held: about 320 samples of 512 KiB in 5 s, so
    // the sampling spread (about 6 %) is far inside the tolerance.
    let size: u64 = 16 * 1024;
    let (churn_rate, hold_rate) = (32u64 << 20, 32u64 << 20);
    let mut workload = Running::spawn(
        ProfWorkload::InUse,
        &[
            log_path.to_str().expect("scratch paths are UTF-8"),
            &size.to_string(),
            &churn_rate.to_string(),
            &hold_rate.to_string(),
        ],
    );
    AllocLog::wait(&log_path, 30);
    let pid = workload.pid().to_string();
    let capture =
        record_ok(&["record", "--pid", &pid, "--duration", "5s", "--profiles", "memory"], &out.join("capture"));
    thread::sleep(Duration::from_millis(100));
    workload.assert_running();
    let log = AllocLog::read(&log_path);
    let (start, end) = window(&capture.manifest());
    let truth = log.between(start, end) as f64;

    let path = kind_file(&capture, "memory", ".pb.gz");
    let raw = pprof_raw(&path);
    let (alloc_space, inuse_objects, inuse_space) = (1, 2, 3);
    let in_fn = |name: &'static str| move |s: &RawSample| s.has_function(name);
    let churn_alloc = sum_where(&raw, alloc_space, in_fn("churn"));
    let hold_alloc = sum_where(&raw, alloc_space, in_fn("hold"));
    let churn_inuse = sum_where(&raw, inuse_space, in_fn("churn"));
    let hold_inuse = sum_where(&raw, inuse_space, in_fn("hold"));
    let hold_objects = sum_where(&raw, inuse_objects, in_fn("hold"));
    let err = (hold_inuse - truth) / truth;
    eprintln!(
        "measured: allocated churn {} / hold {}; in use churn {} / hold {} ({hold_objects} objects) vs {} held \
         by the log (error {})",
        mib(churn_alloc),
        mib(hold_alloc),
        mib(churn_inuse),
        mib(hold_inuse),
        mib(truth),
        pct(err)
    );
    assert!(churn_alloc > 2.0 * hold_alloc, "churn must lead the allocation view: {raw:#?}");
    assert!(
        err.abs() <= ALLOC_TOLERANCE,
        "{} in use at `hold` vs {} held ({} off, allowed ±{})",
        mib(hold_inuse),
        mib(truth),
        pct(err),
        pct(ALLOC_TOLERANCE)
    );
    let objects_err = (hold_objects - truth / size as f64) / (truth / size as f64);
    assert!(objects_err.abs() <= ALLOC_TOLERANCE, "inuse_objects off by {}", pct(objects_err));
    // Churn's blocks are freed microseconds after they are made: at most the
    // one or two sampled at the very end of the window are left.
    assert!(churn_inuse <= 0.05 * hold_inuse, "churned memory counted as in use: {} of churn", mib(churn_inuse));
    let text = go_pprof_top_index(&path, "inuse_space");
    let top = parse_pprof_top(&text);
    assert_eq!(top.header("Type"), Some("inuse_space"), "{text}");
    assert_eq!(top.rows.first().map(|r| r.name.as_str()), Some("hold"), "`hold` must top inuse_space:\n{text}");
    // The allocator's frames are stripped from the in-use samples too.
    let leaf_hold = sum_where(&raw, inuse_space, |s| s.user_leaf() == Some("hold"));
    assert!(leaf_hold >= 0.99 * hold_inuse, "calloc frames were not stripped from the in-use samples");
    let losses = capture.manifest()["losses"].to_string();
    assert!(!losses.contains("inuse_"), "in-use samples lost: {losses}");
}

/// Sampling by bytes must not fall into step with a regular allocation
/// pattern: `leak` makes three of every four 64 KiB blocks and `leak_b` the
/// fourth, and a sampler taking every 512 KiB-th byte (8 blocks) would put
/// every sample on the same call site. `leak_b` must keep its quarter.
#[test]
fn malloc_sampling_keeps_each_call_site_of_a_regular_pattern() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-leak-pattern");
    let log_path = out.join("alloc.log");
    // 32 MiB/s for 5 s: about 320 samples, so the binomial spread of the
    // share (2.4 points) is well inside the tolerance.
    let size = 64 * 1024;
    let rate = (32u64 << 20).to_string();
    let mut workload = Running::spawn(
        ProfWorkload::Leak,
        &[log_path.to_str().expect("UTF-8"), &size.to_string(), &rate, &(1u64 << 30).to_string(), "4"],
    );
    AllocLog::wait(&log_path, 30);
    let pid = workload.pid().to_string();
    let capture =
        record_ok(&["record", "--pid", &pid, "--duration", "5s", "--profiles", "memory"], &out.join("capture"));
    workload.assert_running();
    let path = kind_file(&capture, "memory", ".pb.gz");
    let text = go_pprof_top_index(&path, "alloc_space");
    let top = parse_pprof_top(&text);
    let (a, b) = (top.flat("leak"), top.flat("leak_b"));
    let share = b / (a + b);
    eprintln!(
        "measured: leak {} / leak_b {}: leak_b's share {} (expected 25.0 % ± {} points)",
        mib(a),
        mib(b),
        pct(share),
        100.0 * SHARE_TOLERANCE
    );
    assert!((share - 0.25).abs() <= SHARE_TOLERANCE, "leak_b's share of alloc_space is {}:\n{text}", pct(share));
}

/// Allocation probes go into the target's processes only: a whole-host
/// capture has page faults from every process but no allocation samples.
#[test]
fn whole_host_memory_profile_has_page_faults_but_no_allocation_probes() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-host-memory");
    let log_path = out.join("alloc.log");
    let mut workload = Running::spawn(ProfWorkload::Leak, &[log_path.to_str().expect("UTF-8"), "65536"]);
    AllocLog::wait(&log_path, 10);
    let capture = record_ok(&["record", "--duration", "2s", "--profiles", "memory"], &out.join("capture"));
    workload.assert_running();
    let raw = pprof_raw(&kind_file(&capture, "memory", ".pb.gz"));
    let bytes = sum_where(&raw, 1, |_| true);
    let leak_faults = sum_where(&raw, FAULTS, |s| s.label("comm") == Some("leak"));
    eprintln!("measured: whole host: {} allocated bytes sampled, {leak_faults} page faults of `leak`", bytes);
    assert_eq!(bytes, 0.0, "a whole-host capture must not probe allocators");
    assert!(leak_faults > 0.0, "the whole-host capture has no page faults of the leaking process");
}

// ---------------------------------------------------------------------------
// 3. One capture of all three kinds opens in pprof, each with its SVG

#[test]
fn all_three_kinds_open_in_pprof_and_have_their_flamegraphs() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let out = scratch_dir("profiles-all-kinds");
    let log_path = out.join("alloc.log");
    // One process per kind, so each file has something to show: a CPU
    // burner, a sleeper and a leak.
    let burner = stackwatch_tests::Workload::spawn(stackwatch_tests::WorkloadKind::CpuSplit, &["0", "1"]);
    let (sleeper, _) = start_blocker(3000, 1000, "asm");
    let leaker = Running::spawn(ProfWorkload::Leak, &[log_path.to_str().expect("UTF-8"), "65536"]);
    AllocLog::wait(&log_path, 10);
    let pids = [burner.pid(), sleeper.pid(), leaker.pid()].map(|p| p.to_string());
    let capture = record_ok(
        &[
            "record",
            "--pid",
            &pids[0],
            "--pid",
            &pids[1],
            "--pid",
            &pids[2],
            "--duration",
            "3s",
            "--profiles",
            "cpu,offcpu,memory",
        ],
        &out.join("capture"),
    );
    let manifest = capture.manifest();
    let listed: Vec<(String, String)> = manifest["files"]
        .as_array()
        .unwrap_or_else(|| panic!("manifest has no file list: {manifest:#}"))
        .iter()
        .map(|f| (f["path"].as_str().unwrap_or_default().to_owned(), f["kind"].as_str().unwrap_or_default().to_owned()))
        .collect();

    // kind, its sample indexes (default first), a function its profile must show.
    let kinds: [(&str, &[&str], &str); 3] = [
        ("cpu", &["cpu", "samples"], "hot_a"),
        ("offcpu", &["offcpu", "switches"], "block_a"),
        ("memory", &["alloc_space", "alloc_objects", "inuse_space", "inuse_objects", "page_faults"], "leak"),
    ];
    for (kind, indexes, function) in kinds {
        let pprof = kind_file(&capture, kind, ".pb.gz");
        let svg_path = kind_file(&capture, kind, ".svg");
        for file in [&pprof, &svg_path] {
            assert!(
                listed.iter().any(|(p, k)| p.as_str() == file_name(file) && k == kind),
                "the manifest does not list `{}` as {kind}: {listed:?}",
                file.display()
            );
        }
        // `-top` with the default and with every sample index: pprof exits 0
        // (checked by go_pprof) and reports that type.
        let default = parse_pprof_top(&go_pprof(&["-top", "-nodecount=50"], &pprof));
        assert_eq!(default.header("Type"), Some(indexes[0]), "default sample type of the {kind} profile");
        for index in indexes {
            let text = go_pprof_top_index(&pprof, index);
            let top = parse_pprof_top(&text);
            assert_eq!(top.header("Type"), Some(*index), "{text}");
        }
        let top = parse_pprof_top(&go_pprof_top_index(&pprof, indexes[0]));
        assert!(top.cum(function) > 0.0, "the {kind} profile does not show `{function}`");

        let svg = fs::read_to_string(&svg_path).unwrap_or_else(|err| panic!("read `{}`: {err}", svg_path.display()));
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "`{}` is not an SVG", svg_path.display());
        let title = svg_title(&svg).unwrap_or_else(|| panic!("`{}` has no title", svg_path.display()));
        assert!(title.starts_with(&format!("stackwatch {kind} ")), "title of the {kind} flamegraph: {title:?}");
        let frames = svg_frames(&svg);
        assert!(frames.iter().any(|f| f.function == function), "the {kind} flamegraph has no `{function}` box");
        eprintln!("measured: {kind}: pprof opens with {indexes:?}; SVG title {title:?}");
        if kind == "offcpu" {
            // A cool palette, so it is not mistaken for CPU time.
            let blue = frames.iter().filter(|f| f.fill.2 > f.fill.0 && f.fill.2 > f.fill.1).count();
            assert!(blue * 10 >= frames.len() * 9, "off-CPU boxes are not blue: {frames:?}");
        }
    }
    drop((burner, sleeper, leaker));
}
