//! The reader against real interpreters: every installed CPython 3.8–3.13
//! (pyenv's shared builds) and Debian's static `/usr/bin/python3.11`, each
//! running `tests/workloads/python/*.py` with threads parked in known
//! functions. Expected names come from the scripts' sources (`MARK:`
//! comments), line tables from the interpreters themselves, offsets from
//! their headers. Under `CI=true` a missing interpreter fails the test.
//!
//! Reading a child's memory needs no privilege (Yama lets a parent read
//! its children); the mount-namespace test needs root.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

fn workloads() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/workloads/python");
    dir.canonicalize().unwrap_or(dir)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Notes a missing prerequisite; under CI it fails the test instead.
fn missing(what: &str) {
    assert!(!is_ci(), "{what}; under CI=true the Python reader tests must run, not skip");
    eprintln!("note: skipping: {what}");
}

/// An interpreter under test.
#[derive(Clone, Debug)]
struct Interpreter {
    label: String,
    path: PathBuf,
    minor: u8,
    /// Linked into the executable (no libpython).
    is_static: bool,
}

fn pyenv_versions() -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    root.join("versions")
}

/// `<pyenv>/versions/3.<minor>.*/bin/python3.<minor>`, the newest installed.
fn pyenv_python(minor: u8) -> Option<PathBuf> {
    let prefix = format!("3.{minor}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(pyenv_versions())
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .map(|e| e.path().join("bin").join(format!("python3.{minor}")))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Every interpreter the tests cover; a missing one is noted (failed in CI).
fn interpreters() -> Vec<Interpreter> {
    let mut out = Vec::new();
    for minor in MIN_MINOR..=MAX_MINOR {
        match pyenv_python(minor) {
            Some(path) => out.push(Interpreter { label: format!("pyenv 3.{minor}"), path, minor, is_static: false }),
            None => {
                missing(&format!("no CPython 3.{minor} under `{}` (install it with pyenv)", pyenv_versions().display()))
            }
        }
    }
    let debian = PathBuf::from("/usr/bin/python3.11");
    if debian.is_file() {
        out.push(Interpreter { label: "debian 3.11".into(), path: debian, minor: 11, is_static: true });
    } else {
        missing("no `/usr/bin/python3.11` (apt-get install python3.11)");
    }
    out
}

/// A child killed (by its pid) and reaped on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn start(mut cmd: Command) -> Self {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {shown}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc { child, lines, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("no output from the workload: {e}"))
    }

    fn send(&mut self, text: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{text}").and_then(|()| stdin.flush()).expect("workload's stdin");
        self.line()
    }

    fn kill(&mut self) {
        // Not reaped yet, so the pid is still this child's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A thread of `stacks.py`, as it announced itself.
#[derive(Clone, Copy, Debug)]
struct Announced {
    tid: u32,
    pthread: u64,
}

/// Starts `stacks.py` (recursion `depth`; with a CPU-burning thread if
/// `busy`) and waits for its threads.
fn start_stacks(interp: &Interpreter, depth: usize, busy: bool) -> (Proc, HashMap<String, Announced>) {
    let mut cmd = Command::new(&interp.path);
    cmd.arg(workloads().join("stacks.py")).arg(depth.to_string()).env_remove("PYTHONPATH");
    if busy {
        cmd.arg("--busy");
    }
    let proc = Proc::start(cmd);
    let mut threads = HashMap::new();
    let mut ready = false;
    // Threads announce themselves concurrently with "ready".
    while !ready || threads.len() < 5 + usize::from(busy) {
        let line = proc.line();
        if line == "ready" {
            ready = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("`{line}`: {e}"));
        let name = v["thread"].as_str().unwrap_or_default().to_owned();
        let tid = v["tid"].as_u64().and_then(|t| u32::try_from(t).ok()).unwrap_or_default();
        threads.insert(name, Announced { tid, pthread: v["pthread"].as_u64().unwrap_or_default() });
    }
    (proc, threads)
}

/// `MARK: name` comments of a workload → their line numbers.
fn marks(file: &str) -> HashMap<String, u32> {
    let path = workloads().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| Some((l.split("MARK: ").nth(1)?.trim().to_owned(), i as u32 + 1)))
        .collect()
}

/// Attaches to `pid`, waiting while it starts (a fork not yet exec'd is
/// "not Python"; an interpreter not yet initialised is "not ready").
fn attach(pid: u32) -> PythonProcess {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match PythonProcess::detect(pid) {
            Ok(Detection::Supported(p)) => return *p,
            Ok(Detection::NotReady(_) | Detection::NotPython) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("pid {pid}: expected a supported CPython, got {other:?}"),
        }
    }
}

/// Dumps until `accept` holds (threads park asynchronously), or panics
/// with the last dump.
fn dump_until(
    process: &PythonProcess,
    resolver: &mut CodeResolver,
    accept: impl Fn(&[ThreadDump]) -> Result<(), String>,
) -> Vec<ThreadDump> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dump = dump(process, resolver).expect("dump");
        match accept(&dump) {
            Ok(()) => return dump,
            Err(why) if Instant::now() > deadline => panic!("{why}\n{}", show(&dump)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn show(dump: &[ThreadDump]) -> String {
    let mut s = String::new();
    for t in dump {
        s += &format!("thread {:?}\n", t.tid);
        for f in &t.frames {
            s += &format!("  {}{} {}:{:?}\n", if f.entry { "*" } else { " " }, f.function, f.file, f.line);
        }
    }
    s
}

fn thread(dump: &[ThreadDump], tid: u32) -> Result<&ThreadDump, String> {
    dump.iter().find(|t| t.tid == Some(tid)).ok_or_else(|| format!("no thread with tid {tid}"))
}

/// Checks that `frames` start with `expect` = (function, file suffix, line).
fn starts_with(frames: &[DumpFrame], expect: &[(String, &str, u32)]) -> Result<(), String> {
    for (i, (function, file, line)) in expect.iter().enumerate() {
        let f = frames.get(i).ok_or_else(|| format!("only {} frames, expected {function} at {i}", frames.len()))?;
        if &f.function != function || !f.file.ends_with(file) || f.line != Some(*line) {
            return Err(format!(
                "frame {i} is {} {}:{:?}, expected {function} *{file}:{line}",
                f.function, f.file, f.line
            ));
        }
    }
    Ok(())
}

#[test]
fn reads_every_thread_of_every_interpreter() {
    let stacks = marks("stacks.py");
    let wait = marks("sleeper.py")["wait_here"];
    let depth = 17;
    for interp in interpreters() {
        let (proc, announced) = start_stacks(&interp, depth, true);
        let process = attach(proc.pid());
        let label = &interp.label;
        assert_eq!(process.version().minor, interp.minor, "{label}");
        assert_eq!(process.is_static(), interp.is_static, "{label}: {}", process.path());
        if interp.minor >= 11 {
            assert!(process.version().micro.is_some(), "{label}: Py_Version gives the micro version");
        }
        let q = |qualname: &str, name: &str| if interp.minor >= 11 { qualname.to_owned() } else { name.to_owned() };
        let m = |k: &str| stacks[k];
        let wait_here = ("sleeper.wait_here".to_owned(), "sleeper.py", wait);
        let mut resolver = CodeResolver::new();
        let dump = dump_until(&process, &mut resolver, |dump| {
            let t = |name: &str| thread(dump, announced[name].tid);
            starts_with(&t("sleeper")?.frames, std::slice::from_ref(&wait_here))?;
            starts_with(
                &t("nested")?.frames,
                &[
                    wait_here.clone(),
                    (format!("stacks.{}", q("Outer.Inner.method", "method")), "stacks.py", m("method")),
                ],
            )?;
            let lambda = format!("stacks.{}", q("sort_with_callback.<locals>.<lambda>", "<lambda>"));
            starts_with(
                &t("callback")?.frames,
                &[
                    wait_here.clone(),
                    ("stacks.slow_key".into(), "stacks.py", m("slow_key")),
                    (lambda, "stacks.py", m("sort_with_callback")),
                    ("stacks.sort_with_callback".into(), "stacks.py", m("sort_with_callback")),
                ],
            )?;
            let mut deep = vec![wait_here.clone(), ("stacks.recurse".into(), "stacks.py", m("recurse_bottom"))];
            deep.extend((0..depth).map(|_| ("stacks.recurse".to_owned(), "stacks.py", m("recurse"))));
            starts_with(&t("deep")?.frames, &deep)?;
            starts_with(
                &t("main")?.frames,
                &[
                    wait_here.clone(),
                    ("stacks.main".into(), "stacks.py", m("main")),
                    ("stacks.<module>".into(), "stacks.py", m("module")),
                ],
            )?;
            let busy = &t("busy")?.frames;
            match busy.first() {
                Some(f)
                    if f.function == "stacks.spin"
                        && f.line.is_some_and(|l| (m("spin_start")..=m("spin_end")).contains(&l)) =>
                {
                    Ok(())
                }
                other => Err(format!("busy thread's innermost frame is {other:?}")),
            }
        });
        // Every Python thread is there, the main one with the process's id.
        assert_eq!(dump.len(), announced.len(), "{label}\n{}", show(&dump));
        assert_eq!(announced["main"].tid, proc.pid());
        // Outermost frames: the thread machinery of the `threading` module.
        let sleeper = thread(&dump, announced["sleeper"].tid).expect("sleeper");
        let outer = sleeper.frames.last().expect("frames");
        assert_eq!(outer.function, format!("threading.{}", q("Thread._bootstrap", "_bootstrap")), "{label}");
        // Entry frames: before 3.11 each frame is its own eval call; from
        // 3.11, the key lambda (called by the C `sorted`) starts one, while
        // `slow_key` and `wait_here` (Python calls) run in the same one.
        let callback = thread(&dump, announced["callback"].tid).expect("callback");
        let entries: Vec<bool> = callback.frames.iter().take(3).map(|f| f.entry).collect();
        let expect = if interp.minor >= 11 { [false, false, true] } else { [true, true, true] };
        assert_eq!(entries, expect, "{label}\n{}", show(&dump));
        assert!(callback.frames.last().is_some_and(|f| f.entry), "{label}: the outermost frame ends a native call");
        eprintln!("{label}: {} threads read from `{}`\n{}", dump.len(), process.path(), show(&dump));
    }
}

/// The thread-state slot the eBPF program will read (thread pointer +
/// `tsd_data` + `tsd_stride` × key, the thread pointer being glibc's
/// `pthread_self()`), checked with the ids each thread printed itself.
#[test]
fn thread_states_are_found_the_way_the_kernel_will_find_them() {
    for interp in interpreters() {
        let (proc, announced) = start_stacks(&interp, 3, false);
        let process = attach(proc.pid());
        let label = &interp.label;
        let threads = process.threads().expect("threads");
        let threading = process.threading().expect("threading");
        let key = threading.tss_key.unwrap_or_else(|| panic!("{label}: no TSS key"));
        let (data, stride) = threading.tsd.unwrap_or_else(|| panic!("{label}: no TSD recipe"));
        let mem = RemoteMemory::new(proc.pid());
        for (name, a) in &announced {
            let t = threads.iter().find(|t| t.tid == Some(a.tid)).unwrap_or_else(|| panic!("{label}: {name}"));
            assert_eq!(t.pthread, a.pthread, "{label}: {name}'s thread_id");
            let slot = a.pthread + u64::from(data) + u64::from(stride) * u64::from(key);
            assert_eq!(mem.read_u64(slot).ok(), Some(t.tstate), "{label}: {name}'s TSD slot");
        }
        let info = process.proc_info().expect("proc_info");
        assert_eq!((info.tss_key, info.tsd_data, info.tsd_stride), (key, data, stride));
        assert_eq!(info.offsets, *process.offsets());
        assert_eq!(info.eval_start..info.eval_end, process.eval_range());
        if interp.minor < 11 {
            assert!(threading.tid_offset.is_some(), "{label}: tids come from struct pthread");
        }
    }
}

/// A code object freed and its address taken by another must get the new
/// name; a sample's old checksum is refused, never answered with the new.
/// Two ways to reuse an address: another function (a different `def`
/// line), for every version; and the same code renamed with
/// `code.replace(co_name=…)`, sharing every other field, which only the
/// `co_version` stamp of 3.12+ tells apart.
#[test]
fn a_reused_code_object_is_never_misnamed() {
    for interp in interpreters() {
        let label = &interp.label;
        reuse_case(&interp, |i| format!("define f{i} {}", i + 1), "new function");
        if interp.minor >= 12 {
            reuse_case(&interp, |i| if i == 0 { "define f0 1".into() } else { format!("rename f{i}") }, "renamed");
        }
        eprintln!("{label}: ok");
    }
}

fn reuse_case(interp: &Interpreter, command: impl Fn(usize) -> String, case: &str) {
    let label = format!("{} ({case})", interp.label);
    let mut cmd = Command::new(&interp.path);
    cmd.arg(workloads().join("reuse.py"));
    let mut proc = Proc::start(cmd);
    let process = attach(proc.pid());
    let mut resolver = CodeResolver::new();
    let reader = process.code_reader();
    let mut addr: u64 = proc.send(&command(0)).parse().expect("id");
    // Each object is named (and cached) as a profile would have, before
    // the next replaces it; stop once a new one lands where an old one was.
    let mut seen: HashMap<u64, (Arc<CodeInfo>, u32)> = HashMap::new();
    let mut reused = None;
    for i in 1..500 {
        let old = resolver.resolve_many(&reader, &[(addr, None)]).remove(0).expect("old");
        assert_eq!(old.function(), format!("reused.f{}", i - 1), "{label}");
        let checksum = super::code::read_headers(&reader, &[addr]).remove(0).expect("header").checksum;
        seen.insert(addr, (old, checksum));
        addr = proc.send(&command(i)).parse().expect("id");
        if let Some((old, old_checksum)) = seen.get(&addr) {
            reused = Some((i, old.clone(), *old_checksum));
            break;
        }
    }
    let Some((i, old, old_checksum)) = reused else { panic!("{label}: no address was ever reused") };
    let again = resolver.resolve_many(&reader, &[(addr, None)]).remove(0).expect("new");
    assert_eq!(again.function(), format!("reused.f{i}"), "{label}: the new object, not the cached old one");
    // A sample taken before the swap carries the old checksum: the cache
    // still knows what was there then…
    let stale = resolver.resolve_many(&reader, &[(addr, Some(old_checksum))]).remove(0);
    assert_eq!(stale, Ok(old), "{label}");
    // …and without that entry the old sample is refused, not named after
    // the new object.
    let mut fresh = CodeResolver::new();
    let stale = fresh.resolve_many(&reader, &[(addr, Some(old_checksum))]).remove(0);
    assert_eq!(stale, Err(CodeError::Stale(addr)), "{label}");
    eprintln!("{label}: address {addr:#x} reused after {i} swaps");
}

/// Names resolved while the process lived stay available after it exits
/// (samples are named after the capture), and cost no read.
#[test]
fn names_outlive_the_process() {
    let Some(interp) = interpreters().into_iter().find(|i| i.minor == 12) else { return };
    let (mut proc, announced) = start_stacks(&interp, 20, false);
    let process = attach(proc.pid());
    let threads = process.threads().expect("threads");
    let deep = threads.iter().find(|t| t.tid == Some(announced["deep"].tid)).expect("deep thread");
    let frames = process.stack(deep).expect("stack");
    let reader = process.code_reader();
    let headers = super::code::read_headers(&reader, &frames.iter().map(|f| f.code).collect::<Vec<_>>());
    let items: Vec<(u64, Option<u32>)> =
        frames.iter().zip(&headers).map(|(f, h)| (f.code, h.as_ref().ok().map(|h| h.checksum))).collect();
    let mut resolver = CodeResolver::new();
    let before: Vec<String> =
        resolver.resolve_many(&reader, &items).into_iter().map(|r| r.expect("named").function()).collect();
    proc.kill();
    let reads = process.syscalls();
    let after: Vec<String> =
        resolver.resolve_many(&reader, &items).into_iter().map(|r| r.expect("cached").function()).collect();
    assert_eq!(before, after);
    assert_eq!(process.syscalls(), reads, "cached names need no read");
    assert!(before.iter().filter(|f| *f == "stacks.recurse").count() == 21, "{before:?}");
    // Without a checksum the object must be read, and the process is gone.
    assert!(resolver.resolve_many(&reader, &[(frames[0].code, None)])[0].is_err());
}

/// The three line-table formats, decoded for every instruction of many
/// real functions, against what each interpreter itself says.
#[test]
fn line_tables_match_the_interpreters() {
    // Prints, per function of a few stdlib modules: the table (hex), the
    // first line, and the line of each instruction (-1: none), by the
    // interpreter's own `co_lines()` (3.10+) or `dis.findlinestarts`.
    const SCRIPT: &str = r#"
import argparse, collections, dis, inspect, json, json.decoder, sys, threading, types
def codes(obj, seen):
    for v in vars(obj).values():
        f = getattr(v, "__func__", v)
        c = getattr(f, "__code__", None)
        if isinstance(c, types.CodeType) and id(c) not in seen:
            seen.add(id(c)); yield c
            yield from nested(c, seen)
        elif isinstance(v, type) and v.__module__ == obj.__name__ and id(v) not in seen:
            seen.add(id(v)); yield from codes(v, seen)
def nested(code, seen):
    for k in code.co_consts:
        if isinstance(k, types.CodeType) and id(k) not in seen:
            seen.add(id(k)); yield k; yield from nested(k, seen)
seen = set()
for mod in (threading, json.decoder, argparse, collections, inspect):
    for c in codes(mod, seen):
        n = len(c.co_code) // 2
        lines = [-1] * n
        if sys.version_info >= (3, 10):
            table = c.co_linetable
            for start, end, line in c.co_lines():
                for i in range(start // 2, min(end // 2, n)):
                    lines[i] = -1 if line is None else line
        else:
            table = c.co_lnotab
            starts = sorted(dis.findlinestarts(c))
            for i in range(n):
                ls = [l for off, l in starts if off <= 2 * i]
                lines[i] = ls[-1] if ls else c.co_firstlineno
        print(json.dumps([c.co_qualname if hasattr(c, "co_qualname") else c.co_name, table.hex(), c.co_firstlineno, lines]))
"#;
    for interp in interpreters() {
        let out = Command::new(&interp.path).args(["-c", SCRIPT]).output().expect("run python");
        assert!(out.status.success(), "{}: {}", interp.label, String::from_utf8_lossy(&out.stderr));
        let kind = LineTableKind::for_minor(interp.minor);
        let (mut functions, mut instructions) = (0, 0);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let name = v[0].as_str().unwrap_or_default();
            let hex = v[1].as_str().unwrap_or_default();
            let table: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
            let first = v[2].as_u64().unwrap_or_default() as u32;
            for (i, want) in v[3].as_array().expect("lines").iter().enumerate() {
                let want = want.as_i64().unwrap_or(-1);
                let got = line_for(kind, &table, first, i as i32).map_or(-1, i64::from);
                // Before 3.10 every instruction has a line (lnotab cannot
                // say "none"); from 3.10 "none" must match too.
                assert_eq!(got, want, "{}: {name}, instruction {i}", interp.label);
                instructions += 1;
            }
            functions += 1;
        }
        assert!(functions > 300, "{}: only {functions} functions", interp.label);
        eprintln!("{}: {functions} functions, {instructions} instructions match", interp.label);
    }
}

/// `layout.rs` against each installed version's headers.
#[test]
fn layout_matches_the_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for minor in MIN_MINOR..=MAX_MINOR {
        let Some(python) = pyenv_python(minor) else {
            missing(&format!("no CPython 3.{minor} headers"));
            continue;
        };
        let prefix = python.parent().and_then(Path::parent).expect("prefix");
        let include = prefix.join(format!("include/python3.{minor}"));
        let bin = dir.path().join(format!("offsets3{minor}"));
        let out = Command::new("cc")
            .arg("-w")
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(include.join("internal"))
            .arg(workloads().join("offsets.c"))
            .arg("-o")
            .arg(&bin)
            .output()
            .expect("run cc");
        assert!(out.status.success(), "3.{minor}: {}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(&bin).output().expect("run offsets");
        let values: HashMap<String, i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("number")))
            .collect();
        let o = layout_for_minor(minor).expect("layout");
        let ours: [(&str, u16); 24] = [
            ("runtime_interpreters_head", o.runtime_interpreters_head),
            ("runtime_tss_key", o.runtime_tss_key),
            ("interp_next", o.interp_next),
            ("interp_threads_head", o.interp_threads_head),
            ("tstate_next", o.tstate_next),
            ("tstate_interp", o.tstate_interp),
            ("tstate_frame", o.tstate_frame),
            ("cframe_current_frame", o.cframe_current_frame),
            ("tstate_thread_id", o.tstate_thread_id),
            ("tstate_native_thread_id", o.tstate_native_thread_id),
            ("frame_code", o.frame_code),
            ("frame_previous", o.frame_previous),
            ("frame_lasti", o.frame_lasti),
            ("frame_entry", o.frame_entry),
            ("owner_cstack", u16::from(o.owner_cstack)),
            ("code_filename", o.code_filename),
            ("code_name", o.code_name),
            ("code_qualname", o.code_qualname),
            ("code_adaptive", o.code_adaptive),
            ("code_code", o.code_code),
            ("code_firstlineno", o.code_firstlineno),
            ("code_linetable", o.code_linetable),
            ("unicode_ascii_data", o.unicode_ascii_data),
            ("unicode_compact_data", o.unicode_compact_data),
        ];
        let mut compared = 0;
        for (name, value) in ours {
            match values.get(name) {
                Some(&want) => {
                    assert_eq!(i64::from(value), want, "3.{minor}: {name}");
                    compared += 1;
                }
                // Absent from this version's headers: absent from ours too.
                None => assert_eq!(value, 0, "3.{minor}: {name} is not in this version"),
            }
        }
        for (name, value) in [
            ("object_type", o.object_type),
            ("var_size", o.var_size),
            ("bytes_data", o.bytes_data),
            ("unicode_state", o.unicode_state),
            ("unicode_length", o.unicode_length),
        ] {
            assert_eq!(values.get(name), Some(&i64::from(value)), "3.{minor}: {name}");
        }
        assert!(i64::from(o.frame_size) >= values["frame_struct_end"], "3.{minor}: frame_size");
        // The checksum's words, by the fields they start with (`code_version`
        // and `code_firstlineno` share a word with the field before them).
        let ident: &[&str] = match minor {
            ..=10 => &[
                "code_name",
                "code_filename",
                "code_linetable",
                "code_code",
                "code_consts",
                "code_names",
                "code_firstlineno",
                "code_argcount",
            ],
            11 => &[
                "code_name",
                "code_qualname",
                "code_filename",
                "code_linetable",
                "var_size",
                "code_consts",
                "code_firstlineno",
                "code_localsplusnames",
            ],
            _ => &[
                "code_name",
                "code_qualname",
                "code_filename",
                "code_linetable",
                "var_size",
                "code_consts",
                "code_stacksize",
                "code_nfreevars",
            ],
        };
        for (word, field) in o.code_ident.iter().zip(ident) {
            assert_eq!(i64::from(*word), values[*field], "3.{minor}: checksum word {field}");
        }
        if minor >= 12 {
            assert_eq!(values["code_version"] & !7, i64::from(o.code_ident[7]), "3.{minor}: co_version's word");
            assert_eq!(values["code_firstlineno"] & !7, i64::from(o.code_ident[6]), "3.{minor}: firstlineno's word");
        }
        assert_eq!(values["type_members"], 240);
        assert_eq!((values["member_def_size"], values["member_def_offset"]), (40, 16));
        if minor >= 13 {
            for (name, at, _) in super::layout::DEBUG_FIELDS {
                assert_eq!(values.get(&format!("debug_{name}")), Some(&i64::from(at)), "3.{minor}: debug {name}");
            }
        }
        assert!(compared >= 18, "3.{minor}: only {compared} offsets compared");
    }
}

/// Detecting a process from its very first instant never calls it
/// unsupported: before the loader and `Py_Initialize` ran it is "not
/// ready", then supported.
#[test]
fn a_starting_interpreter_is_not_ready_then_supported() {
    for interp in interpreters() {
        let mut cmd = Command::new(&interp.path);
        cmd.args(["-c", "import sys; print('up', flush=True); sys.stdin.read()"]);
        let proc = Proc::start(cmd);
        let mut outcomes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let outcome = PythonProcess::detect(proc.pid());
            let done = matches!(outcome, Ok(Detection::Supported(_)));
            outcomes.push(match outcome {
                Ok(Detection::Supported(_)) => "supported".to_owned(),
                Ok(Detection::NotReady(_)) => "not ready".to_owned(),
                Ok(Detection::NotPython) => "not python".to_owned(),
                Ok(Detection::Unsupported(u)) => panic!("{}: {}", interp.label, u.note()),
                Err(err) => format!("error: {err:#}"),
            });
            if done || Instant::now() > deadline {
                break;
            }
        }
        assert_eq!(outcomes.last().map(String::as_str), Some("supported"), "{}: {outcomes:?}", interp.label);
        outcomes.dedup();
        eprintln!("{}: {outcomes:?}", interp.label);
        drop(proc);
    }
}

/// Versions outside 3.8–3.13 are reported, with the version, never read.
#[test]
fn older_pythons_are_reported_unsupported() {
    for minor in [6u8, 7] {
        let Some(python) = pyenv_python(minor) else {
            missing(&format!("no CPython 3.{minor} under pyenv (the unsupported-version check uses it)"));
            continue;
        };
        let mut cmd = Command::new(&python);
        cmd.args(["-c", "import sys; print('up', flush=True); sys.stdin.read()"]);
        let proc = Proc::start(cmd);
        assert_eq!(proc.line(), "up");
        match PythonProcess::detect(proc.pid()) {
            Ok(Detection::Unsupported(u)) => {
                assert_eq!(u.frame_name(), format!("[python 3.{minor}: unsupported]"));
                assert!(u.note().contains("is not supported"), "{}", u.note());
                assert!(u.path.contains(&format!("python3.{minor}")), "{}", u.path);
            }
            other => panic!("3.{minor}: {other:?}"),
        }
    }
}

/// Native processes are not Python, checked cheaply (their executable's
/// symbols are not parsed): `sleep`, and this test binary (large, with
/// full symbols).
#[test]
fn a_native_process_is_not_python() {
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    let proc = Proc::start(cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until it has exec'd, the child is a copy of this test binary.
    while std::fs::read_link(format!("/proc/{}/exe", proc.pid())).is_ok_and(|p| !p.ends_with("sleep")) {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    for pid in [proc.pid(), std::process::id()] {
        let start = Instant::now();
        assert!(matches!(PythonProcess::detect(pid), Ok(Detection::NotPython)), "pid {pid}");
        eprintln!("pid {pid}: not Python, decided in {:?}", start.elapsed());
    }
}

/// `_PyEval_EvalFrameDefault`'s `.cold` part, found without symbols: it
/// must hold every conditional branch of the function that leaves it (as
/// `objdump` decodes them; a conditional branch is never a tail call), and
/// agree with `.symtab` where the build kept it.
#[test]
fn the_cold_part_of_the_eval_loop_is_found() {
    for interp in interpreters() {
        let (proc, _) = start_stacks(&interp, 1, false);
        let process = attach(proc.pid());
        let file = format!("/proc/{}/map_files", proc.pid());
        let path = std::fs::read_dir(&file)
            .expect("map_files")
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::read_link(p).is_ok_and(|t| t.to_string_lossy() == process.path()))
            .expect("mapped interpreter");
        let data = std::fs::read(&path).expect("read interpreter");
        let elf = super::elf::PyElf::parse(&data).expect("parse");
        let eval = elf.eval.clone().expect("eval symbol");
        let out = Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(format!("--start-address={:#x}", eval.start))
            .arg(format!("--stop-address={:#x}", eval.end))
            .arg(&path)
            .output()
            .expect("objdump (binutils)");
        let text = String::from_utf8_lossy(&out.stdout);
        let leaving: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace().skip(1);
                let op = parts.next()?;
                let target = u64::from_str_radix(parts.next()?, 16).ok()?;
                (op.starts_with('j') && op != "jmp" && !eval.contains(&target)).then_some(target)
            })
            .collect();
        match &elf.cold {
            Some(cold) => {
                assert!(leaving.iter().all(|t| cold.contains(t)), "{}: {cold:x?} vs {leaving:x?}", interp.label)
            }
            None => assert!(leaving.is_empty(), "{}: branches leave to {leaving:x?}", interp.label),
        }
        let symtab_cold = text.contains("_PyEval_EvalFrameDefault.cold")
            || Command::new("nm")
                .arg(&path)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("_PyEval_EvalFrameDefault.cold"));
        eprintln!(
            "{}: eval {:x?}, cold {:x?} ({} branches out, .cold symbol: {symtab_cold})",
            interp.label,
            eval,
            elf.cold,
            leaving.len()
        );
        if interp.is_static {
            assert!(elf.cold.is_some() && !leaving.is_empty(), "{}: Debian's build has a cold part", interp.label);
        }
        let bias = process.eval_range().start - eval.start;
        assert_eq!(process.cold_range(), elf.cold.map(|c| c.start + bias..c.end + bias));
    }
}

/// A process in its own mount namespace, running an interpreter at a path
/// that does not exist outside it (a container): detected through
/// `/proc/<pid>/map_files`, reported with the path it sees.
#[test]
fn reads_a_process_in_another_mount_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing("not root (a private mount namespace needs it)");
        return;
    }
    let Some(interp) = interpreters().into_iter().find(|i| i.is_static) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let hidden = dir.path().join("py");
    std::fs::create_dir(&hidden).expect("mkdir");
    let script = format!(
        "mount -t tmpfs none {h} && cp {py} {h}/python3.11 && exec {h}/python3.11 {s} 2",
        h = hidden.display(),
        py = interp.path.display(),
        s = workloads().join("stacks.py").display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]).env("PYTHONHOME", "/usr");
    let proc = Proc::start(cmd);
    let mut announced = HashMap::new();
    loop {
        let line = proc.line();
        if line == "ready" {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        announced.insert(v["thread"].as_str().unwrap_or_default().to_owned(), v["tid"].as_u64().unwrap_or_default());
    }
    let inside = hidden.join("python3.11");
    assert!(!inside.exists(), "`{}` must not be visible outside the namespace", inside.display());
    let process = attach(proc.pid());
    assert_eq!(Path::new(process.path()), inside, "the path as the process sees it");
    let mut resolver = CodeResolver::new();
    let sleeper = announced["sleeper"] as u32;
    dump_until(&process, &mut resolver, |dump| match thread(dump, sleeper)?.frames.first() {
        Some(f) if f.function == "sleeper.wait_here" => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// Cost of reading one thread's stack of 20 Python frames: system calls
/// and time, cold (nothing cached) and cached. Counts are asserted (they
/// are the design: one read per frame, one batch for all code headers);
/// times are printed, not asserted.
#[test]
fn walking_twenty_frames_costs_one_read_per_frame() {
    for interp in interpreters() {
        // `wait_here`, `recurse(0)`, 14 more `recurse`, `<lambda>`, `run`,
        // `_bootstrap_inner`, `_bootstrap`: 20 frames.
        let (proc, announced) = start_stacks(&interp, 14, false);
        let process = attach(proc.pid());
        let start = Instant::now();
        assert!(matches!(PythonProcess::detect(proc.pid()), Ok(Detection::Supported(_))));
        let detect_time = start.elapsed();
        let threads = process.threads().expect("threads");
        let deep = *threads.iter().find(|t| t.tid == Some(announced["deep"].tid)).expect("deep");
        let mut resolver = CodeResolver::new();
        // The thread parks asynchronously: wait for its full depth.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut current = deep;
        while process.stack(&current).map_or(0, |f| f.len()) != 20 {
            assert!(Instant::now() < deadline, "{}: deep thread never reached 20 frames", interp.label);
            std::thread::sleep(Duration::from_millis(20));
            current = *process.threads().expect("threads").iter().find(|t| t.tid == deep.tid).expect("deep");
        }
        let measure = |resolver: &mut CodeResolver| {
            let (calls, start) = (process.syscalls(), Instant::now());
            let frames = process.stack(&current).expect("stack");
            let named = name_frames(&process, resolver, &frames);
            (start.elapsed(), process.syscalls() - calls, named)
        };
        let (cold_time, cold_calls, named) = measure(&mut resolver);
        assert_eq!(named.len(), 20);
        assert!(named.iter().all(|f| !f.function.starts_with('[')), "{named:?}");
        // 3.12+ also read the C-stack shim frame that ends each native call.
        let frames = process.stack(&current).expect("stack");
        let shims = if interp.minor >= 12 { frames.iter().filter(|f| f.entry).count() as u64 } else { 0 };
        let mut best = Duration::MAX;
        let mut cached_calls = 0;
        for _ in 0..20 {
            let (t, calls, _) = measure(&mut resolver);
            best = best.min(t);
            cached_calls = calls;
        }
        // 20 frame reads + 1 batched header read when cached; cold adds one
        // batch for strings and tables, plus a read per object too big for it.
        assert_eq!(cached_calls, 20 + shims + 1, "{}", interp.label);
        assert!(
            (cached_calls + 1..=cached_calls + 10).contains(&cold_calls),
            "{}: {cold_calls} calls cold",
            interp.label
        );
        eprintln!(
            "{}: detect+attach {detect_time:?}; 20 frames: cold {cold_calls} syscalls {cold_time:?}, \
             cached {cached_calls} syscalls {best:?}",
            interp.label
        );
    }
}
