//! How good a capture's stacks are, per process, and what is wrong with
//! them: a profile of one-frame stacks, `[anon]+0x…` JIT frames or Python
//! stacks without Python names loses nothing the kernel could count, yet
//! tells little. Each capture measures it:
//!
//! - user stack depth, median and 10th percentile (the shallow end);
//! - the share of samples whose user stack reaches a known outermost frame
//!   (`_start`, `main`, a thread entry, Go's `goexit`): a walk that got to
//!   the bottom of the stack;
//! - the share of unnamed frames (`[unknown]`, `libfoo.so+0x…`), and of
//!   samples running generated code that no perf map names (`[anon]+0x…`):
//!   one such frame among twenty native ones is a small share of frames
//!   but hides the JavaScript or Java function the sample was in.
//!
//! A pure function of the symbolized profile and of the facts about each
//! process (`crate::runtime`), which explain the figures: the findings name
//! the cause and the fix in the words of `crate::runtime::hints`. The
//! printout, the manifest, the flamegraph subtitle and `doctor --pid` show
//! the same findings.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::ids::Pid;
use crate::profile::report::count_value_index;
use crate::profile::{Location, Profile};
use crate::runtime::hints::{self, Finding};
use crate::runtime::ProcessFacts;

/// Processes assessed in one capture, the busiest first: a whole-host
/// capture has hundreds, and the file and printout are for the few that
/// matter.
pub(crate) const MAX_PROCESSES: usize = 8;

/// Below this many samples with a user stack, figures are noise.
const MIN_SAMPLES: u64 = 10;

/// Names that end a complete user stack: the program's entry, `main`, the
/// entries of threads, and their callers that a walk still sees.
const OUTERMOST: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "main",
    "start_thread",
    "thread_start",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.main",
    "runtime.mstart",
    "runtime.mstart0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
];

/// How many of a stack's outermost frames are searched for an [`OUTERMOST`] name.
const OUTERMOST_WINDOW: usize = 4;

/// Below this share of complete stacks, with shallow stacks, the walk is
/// breaking off.
const COMPLETE_SHARE_LOW: f64 = 0.5;
const UNNAMED_SHARE_HIGH: f64 = 0.2;
const JIT_SHARE_HIGH: f64 = 0.05;

/// The stack quality of one process in a capture.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ProcessQuality {
    pub pid: Pid,
    pub comm: String,
    /// `go1.22.1`, `python 3.11.7`, `node`, `java`, `rust`, `c/c++`; absent
    /// when the process was gone before it could be looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub samples: u64,
    /// Samples with a user stack (the figures below are over these).
    pub user_samples: u64,
    pub depth_median: u32,
    pub depth_p10: u32,
    /// Share (0–1) of samples whose user stack reaches `main`, `_start`, a
    /// thread entry or `goexit`.
    pub complete_share: f64,
    /// Share of user frames without a name (JIT frames included).
    pub unnamed_share: f64,
    /// Share of samples with a frame in generated code no perf map names.
    pub jit_unnamed_share: f64,
    /// What is wrong and how to fix it; empty when the stacks look right.
    pub findings: Vec<Finding>,
}

impl ProcessQuality {
    /// `pid 42 (app), rust: 950 samples, depth median 12 / p10 8, 97% complete, 0% unnamed`
    pub(crate) fn summary(&self) -> String {
        let mut s = format!("pid {} ({})", self.pid, self.comm);
        if let Some(r) = &self.runtime {
            s.push_str(&format!(", {r}"));
        }
        s.push_str(&format!(
            ": {} samples, depth median {} / p10 {}, {} reach an entry point, {} of frames unnamed",
            self.user_samples,
            self.depth_median,
            self.depth_p10,
            percent(self.complete_share),
            percent(self.unnamed_share),
        ));
        if self.jit_unnamed_share > 0.0 {
            s.push_str(&format!(", {} of samples in JIT code without names", percent(self.jit_unnamed_share)));
        }
        s
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Per-sample figures of one process, before they are summed up.
#[derive(Default)]
struct Tally {
    comm: String,
    samples: u64,
    /// (depth, weight) of each sample with a user stack.
    depths: Vec<(u32, u64)>,
    complete: u64,
    frames: u64,
    unnamed: u64,
    jit_frames: u64,
    jit_samples: u64,
    python_named: bool,
    eval_loop: bool,
}

/// Assesses the [`MAX_PROCESSES`] processes of `profile` with the most
/// samples that have a user stack, with the
/// facts known about them (a process missing from `facts` exited before it
/// could be looked at: its figures stand, without a cause).
pub(crate) fn assess(profile: &Profile, facts: &HashMap<Pid, ProcessFacts>) -> Vec<ProcessQuality> {
    let kinds: Vec<FrameKind> = profile.locations.iter().map(FrameKind::of).collect();
    let weight_index = count_value_index(profile);
    let mut tallies: BTreeMap<Pid, Tally> = BTreeMap::new();
    for s in &profile.samples {
        let weight = weight_index.and_then(|i| s.values.get(i)).map_or(1, |&v| v.max(0) as u64);
        if weight == 0 {
            continue;
        }
        let t = tallies.entry(s.pid).or_default();
        if t.comm.is_empty() {
            t.comm.clone_from(&s.comm);
        }
        t.samples += weight;
        let user: Vec<&FrameKind> = s.locations.iter().filter_map(|&i| kinds.get(i)).filter(|k| !k.kernel).collect();
        if user.is_empty() {
            continue;
        }
        t.depths.push((user.len() as u32, weight));
        if user.iter().rev().take(OUTERMOST_WINDOW).any(|k| k.outermost) {
            t.complete += weight;
        }
        t.frames += weight * user.len() as u64;
        t.unnamed += weight * user.iter().filter(|k| k.unnamed).count() as u64;
        let jit = user.iter().filter(|k| k.jit).count() as u64;
        t.jit_frames += weight * jit;
        if jit > 0 {
            t.jit_samples += weight;
        }
        t.python_named |= user.iter().any(|k| k.python);
        t.eval_loop |= user.iter().any(|k| k.eval_loop);
    }
    // Kernel threads and samples without user stacks have nothing to judge.
    let mut order: Vec<(Pid, Tally)> = tallies.into_iter().filter(|(_, t)| !t.depths.is_empty()).collect();
    let user = |t: &Tally| t.depths.iter().map(|d| d.1).sum::<u64>();
    order.sort_by(|a, b| user(&b.1).cmp(&user(&a.1)).then(a.0.cmp(&b.0)));
    order.into_iter().take(MAX_PROCESSES).map(|(pid, t)| summarize(pid, t, facts.get(&pid))).collect()
}

fn summarize(pid: Pid, mut t: Tally, facts: Option<&ProcessFacts>) -> ProcessQuality {
    let user_samples: u64 = t.depths.iter().map(|d| d.1).sum();
    t.depths.sort_unstable();
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    let mut q = ProcessQuality {
        pid,
        comm: if t.comm.is_empty() { facts.map(|f| f.comm.clone()).unwrap_or_default() } else { t.comm },
        runtime: facts.map(|f| f.runtime.label()),
        samples: t.samples,
        user_samples,
        depth_median: percentile(&t.depths, 0.5),
        depth_p10: percentile(&t.depths, 0.1),
        complete_share: share(t.complete, user_samples),
        unnamed_share: share(t.unnamed, t.frames),
        jit_unnamed_share: share(t.jit_samples, user_samples),
        findings: Vec::new(),
    };
    if user_samples >= MIN_SAMPLES {
        let other_unnamed = share(t.unnamed - t.jit_frames, t.frames);
        q.findings = findings(&q, other_unnamed, t.python_named, t.eval_loop, facts);
    }
    q
}

/// The smallest depth with at least `p` of the weight at or below it.
fn percentile(sorted: &[(u32, u64)], p: f64) -> u32 {
    let total: u64 = sorted.iter().map(|d| d.1).sum();
    let mut seen = 0;
    for &(depth, weight) in sorted {
        seen += weight;
        if seen as f64 >= p * total as f64 {
            return depth;
        }
    }
    0
}

fn findings(
    q: &ProcessQuality,
    other_unnamed: f64,
    python_named: bool,
    eval_loop: bool,
    facts: Option<&ProcessFacts>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if q.complete_share < COMPLETE_SHARE_LOW {
        let symptom = format!(
            "stacks end early: median depth {}, {} reach `main` or a thread entry",
            q.depth_median,
            percent(q.complete_share)
        );
        let causes: Vec<Finding> = facts
            .map(|f| {
                [f.exe.as_ref(), f.runtime_library.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|o| hints::missing_frame_pointers(o, &f.runtime))
                    .collect()
            })
            .unwrap_or_default();
        match causes.into_iter().next() {
            Some(cause) => out.push(Finding { problem: format!("{symptom}: {}", cause.problem), fix: cause.fix }),
            // JIT frames break the walk too; that finding follows.
            None if q.jit_unnamed_share >= JIT_SHARE_HIGH => {}
            None => out.push(Finding {
                problem: format!("{symptom}: code on them has no frame pointers"),
                fix: "rebuild the libraries and program on these stacks with frame pointers \
                      (`-fno-omit-frame-pointer`, Rust `-C force-frame-pointers=yes`)"
                    .to_owned(),
            }),
        }
    }
    if q.jit_unnamed_share >= JIT_SHARE_HIGH {
        let cause = match facts {
            Some(f) => hints::jit_without_perf_map(f),
            None => Finding {
                problem: "no perf map for this JIT".to_owned(),
                fix: "make the runtime write its perf map (`/tmp/perf-PID.map`)".to_owned(),
            },
        };
        out.push(Finding {
            problem: format!(
                "{} of samples run JIT code without names: {}",
                percent(q.jit_unnamed_share),
                cause.problem
            ),
            fix: cause.fix,
        });
    }
    if other_unnamed >= UNNAMED_SHARE_HIGH {
        let cause = hints::unnamed_frames(facts);
        out.push(Finding {
            problem: format!("{} of frames are unnamed: {}", percent(other_unnamed), cause.problem),
            fix: cause.fix,
        });
    }
    if eval_loop && !python_named {
        out.extend(facts.and_then(hints::python_unnamed));
    }
    out
}

/// What a location says about a stack, by its outermost function's name.
struct FrameKind {
    kernel: bool,
    outermost: bool,
    unnamed: bool,
    jit: bool,
    /// A Python function (named by the frame reader or by `-X perf`'s perf map).
    python: bool,
    /// CPython's interpreter loop.
    eval_loop: bool,
}

impl FrameKind {
    fn of(loc: &Location) -> Self {
        let name = loc.lines.last().map_or("", |l| l.function.as_str());
        let any = |f: &dyn Fn(&str) -> bool| loc.lines.iter().any(|l| f(&l.function));
        Self {
            kernel: loc.kernel,
            outermost: any(&|n| OUTERMOST.contains(&n)),
            unnamed: is_unnamed(name),
            jit: name.starts_with("[anon]+0x"),
            python: any(&|n| n.starts_with("py::"))
                || loc.lines.iter().any(|l| l.file.as_deref().is_some_and(|f| f.ends_with(".py")))
                // Named by the interpreter walk: no address in any file, but
                // a source file, which for `python -c`, `exec` and frozen
                // modules is `<string>`, `<frozen …>`, not a `.py` path.
                || (!loc.kernel && loc.mapping.is_none() && loc.lines.iter().any(|l| l.file.is_some())),
            eval_loop: any(&|n| n == "_PyEval_EvalFrameDefault" || n == "PyEval_EvalFrameEx"),
        }
    }
}

/// The placeholders `symbolize` writes for addresses nothing names:
/// `[unknown]`, `[anon]+0x…`, `libfoo.so+0x1a2b`.
fn is_unnamed(name: &str) -> bool {
    if name.is_empty() || name.starts_with('[') {
        return true;
    }
    match name.rsplit_once("+0x") {
        Some((module, offset)) => {
            !module.contains(' ') && !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// The first finding of the busiest process that has one, for one-line
/// places (the flamegraph subtitle): `stack quality: pid 42 (node): … — fix: …`.
pub(crate) fn headline(quality: &[ProcessQuality]) -> Option<String> {
    let q = quality.iter().find(|q| !q.findings.is_empty())?;
    let f = &q.findings[0];
    Some(format!("stack quality: pid {} ({}): {} — fix: {}", q.pid, q.comm, f.problem, f.fix))
}

/// The lines `record` prints: every assessed process with a finding, with
/// its figures, problems and fixes; one line when all look right.
pub(crate) fn render_text(quality: &[ProcessQuality]) -> String {
    let mut out = String::new();
    let flagged: Vec<&ProcessQuality> = quality.iter().filter(|q| !q.findings.is_empty()).collect();
    if flagged.is_empty() {
        if let Some(q) = quality.first() {
            out.push_str(&format!("stack quality: ok ({})\n", q.summary()));
        }
        return out;
    }
    out.push_str("stack quality:\n");
    for q in flagged {
        out.push_str(&format!("  {}\n", q.summary()));
        for f in &q.findings {
            out.push_str(&format!("    problem: {}\n    fix: {}\n", f.problem, f.fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ids::Tid;
    use crate::objfile::facts::ObjectFacts;
    use crate::profile::testdata::{sample_profile, single_process_profile};
    use crate::profile::{Line, Sample};
    use crate::runtime::{ObjectInfo, Runtime};

    fn facts(pid: u32, runtime: Runtime, frame_pointer_share: f64) -> ProcessFacts {
        ProcessFacts {
            pid: Pid::new(pid),
            comm: "app".into(),
            runtime,
            exe: Some(ObjectInfo {
                path: "/srv/app".into(),
                facts: ObjectFacts {
                    frame_pointer_share: Some(frame_pointer_share),
                    eh_frame: true,
                    is_rust: true,
                    symtab: true,
                    ..Default::default()
                },
                debug_file: false,
            }),
            runtime_library: None,
            jit_mappings: 0,
            perf_map: None,
            perf_map_path: PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{pid}.map")),
        }
    }

    /// A profile of pid 7 with `n` samples of each stack, stacks written
    /// outermost last as function names.
    fn profile(stacks: &[(&[&str], i64)]) -> Profile {
        let mut p = single_process_profile();
        p.locations.clear();
        p.samples.clear();
        for (names, n) in stacks {
            let mut locations = Vec::new();
            for name in *names {
                let i = p.locations.iter().position(|l| l.lines[0].function == *name).unwrap_or_else(|| {
                    p.locations.push(Location {
                        address: 0x1000 + p.locations.len() as u64,
                        mapping: None,
                        lines: vec![Line { function: (*name).into(), file: None, line: None }],
                        kernel: name.starts_with("k:"),
                    });
                    p.locations.len() - 1
                });
                locations.push(i);
            }
            p.samples.push(Sample {
                pid: Pid::new(7),
                tid: Tid::new(7),
                comm: "app".into(),
                locations,
                values: vec![*n, *n * 10_101_010],
            });
        }
        p
    }

    fn one(p: &Profile, f: Option<ProcessFacts>) -> ProcessQuality {
        let facts: HashMap<Pid, ProcessFacts> = f.into_iter().map(|f| (f.pid, f)).collect();
        let q = assess(p, &facts);
        assert_eq!(q.len(), 1, "{q:#?}");
        q.into_iter().next().unwrap()
    }

    #[test]
    fn one_frame_stacks_of_a_binary_without_frame_pointers() {
        let p = profile(&[(&["app::hot"], 90), (&["app::hot", "app::run", "main", "__libc_start_call_main"], 10)]);
        let q = one(&p, Some(facts(7, Runtime::Native { language: Some("rust".into()) }, 0.01)));
        assert_eq!((q.samples, q.user_samples, q.depth_median, q.depth_p10), (100, 100, 1, 1));
        assert!((q.complete_share - 0.1).abs() < 1e-9, "{q:?}");
        assert_eq!(q.findings.len(), 1, "{q:#?}");
        assert_eq!(
            q.findings[0].problem,
            "stacks end early: median depth 1, 10% reach `main` or a thread entry: \
             `/srv/app` has no frame pointers (walked by its unwind tables unless `--unwind fp`)"
        );
        assert!(q.findings[0].fix.contains("force-frame-pointers=yes"));
        assert_eq!(q.runtime.as_deref(), Some("rust"));
    }

    #[test]
    fn complete_stacks_have_no_findings() {
        let p = profile(&[
            (&["k:do_syscall_64", "write", "app::log", "main", "__libc_start_call_main"], 30),
            (&["app::hot", "app::run", "start_thread", "clone3"], 30),
            (&["main.work", "runtime.goexit.abi0"], 20),
        ]);
        let q = one(&p, Some(facts(7, Runtime::Native { language: None }, 0.99)));
        assert_eq!(q.complete_share, 1.0);
        assert_eq!((q.depth_median, q.depth_p10), (4, 2), "kernel frames are not counted: {q:?}");
        assert_eq!(q.unnamed_share, 0.0);
        assert!(q.findings.is_empty(), "{q:#?}");
        assert!(render_text(&[q]).starts_with("stack quality: ok (pid 7 (app), native: 80 samples"));
    }

    #[test]
    fn node_jit_frames_without_a_perf_map() {
        // One JIT frame among many native ones: a small share of frames,
        // yet every such sample lost the JavaScript function it was in.
        let mut stack = vec!["[anon]+0x7f001000"];
        stack.extend(["v8::Execution::Call", "node::LoadEnvironment", "node::Start", "main"].repeat(4));
        let p = profile(&[(&stack, 30), (&["uv_run", "node::Start", "main"], 10)]);
        let q = one(&p, Some(facts(7, Runtime::Node, 0.9)));
        assert!((q.jit_unnamed_share - 0.75).abs() < 1e-9, "{q:?}");
        assert!(q.unnamed_share < 0.1, "a small share of frames: {q:?}");
        assert_eq!(q.findings.len(), 1, "{q:#?}");
        assert_eq!(q.findings[0].problem, "75% of samples run JIT code without names: no perf map for this JIT");
        assert_eq!(q.findings[0].fix, "node: start with --perf-basic-prof --interpreted-frames-native-stack");
        let line = headline(&[q]).unwrap();
        assert!(line.starts_with("stack quality: pid 7 (app): 75% of samples run JIT code"), "{line}");
    }

    #[test]
    fn python_without_python_names() {
        let stack: &[&str] = &["_PyEval_EvalFrameDefault", "PyEval_EvalCode", "Py_RunMain", "main"];
        let python = Runtime::Python { version: Some("3.11.7".into()), readable: true, note: None };
        let q = one(&profile(&[(stack, 40)]), Some(facts(7, python.clone(), 0.9)));
        assert_eq!(q.findings.len(), 1, "{q:#?}");
        assert!(q.findings[0].problem.contains("python 3.11.7: Python functions show as `_PyEval_EvalFrameDefault`"));
        assert!(q.findings[0].fix.contains("stackwatch dump --pid 7"), "{q:#?}");
        // Named by `-X perf`'s perf map: nothing to say.
        let named: &[&str] = &["py::work:/srv/app.py", "_PyEval_EvalFrameDefault", "Py_RunMain", "main"];
        assert!(one(&profile(&[(named, 40)]), Some(facts(7, python.clone(), 0.9))).findings.is_empty());
        // Named by the interpreter walk, code of `python -c` (file
        // `<string>`): nothing to say either.
        let walked: &[&str] = &["<string>.<genexpr>", "_PyEval_EvalFrameDefault", "Py_RunMain", "main"];
        let mut p = profile(&[(walked, 40)]);
        let frame = &mut p.locations[0];
        (frame.address, frame.lines[0].file) = (0, Some("<string>".into()));
        assert!(one(&p, Some(facts(7, python.clone(), 0.9))).findings.is_empty(), "{:#?}", one(&p, None));
        // A native frame with a source file is no Python frame.
        p.locations[0].mapping = Some(0);
        assert_eq!(one(&p, Some(facts(7, python, 0.9))).findings.len(), 1);
    }

    #[test]
    fn stripped_frames_and_unknown_processes() {
        let p = profile(&[(&["blob+0x1400", "blob+0x2000", "main"], 20)]);
        let q = one(&p, None);
        assert!(q.runtime.is_none());
        assert!((q.unnamed_share - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(q.findings.len(), 1, "{q:#?}");
        assert!(q.findings[0].problem.starts_with("67% of frames are unnamed: code in files without symbols"));
        // Too few samples to judge: figures without findings.
        let few = one(&profile(&[(&["x"], 3)]), None);
        assert_eq!(few.user_samples, 3);
        assert!(few.findings.is_empty());
        // Kernel-only samples (a kernel thread) are not assessed.
        assert!(assess(&profile(&[(&["k:worker_thread", "k:kthread"], 50)]), &HashMap::new()).is_empty());
    }

    #[test]
    fn placeholders_are_unnamed() {
        for n in ["[unknown]", "[anon]+0x1f", "libc.so.6+0x1a2b", "blob+0x1400", "[exited process]+0x10"] {
            assert!(is_unnamed(n), "{n}");
        }
        for n in ["main", "std::vec::Vec<T>::push", "operator+", "f(a+0x1)", "x+0xzz"] {
            assert!(!is_unnamed(n), "{n}");
        }
    }

    #[test]
    fn busiest_processes_first_and_kernel_only_samples() {
        let q = assess(&sample_profile(), &HashMap::new());
        assert_eq!(q.iter().map(|q| q.pid.get()).collect::<Vec<_>>(), [100, 200]);
        assert_eq!(q[0].samples, 10);
    }
}
