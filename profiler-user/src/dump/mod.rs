//! `stackwatch dump`: every thread's current stack, once — the jstack or
//! goroutine dump of any process, for a service that hangs.
//!
//! For each thread, first what can be read without touching it
//! (`/proc/<pid>/task/<tid>/`: its name, state, the kernel function it
//! waits in and its kernel stack: *where* it blocks), then its user stack
//! (*who* called): the thread is stopped for the moment it takes to copy
//! its registers and the top of its stack ([`ptrace`]), one thread at a
//! time, and the copy is walked afterwards with the process's unwind
//! tables ([`unwind`]) and named by the profiler's symbolizer. A CPython
//! process gets its Python frames in place of the interpreter's
//! `_PyEval_EvalFrameDefault` frames (`crate::python`). Every thread's stop
//! time is measured and the longest reported.

mod ptrace;
mod unwind;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::Serialize;

use crate::aggregate::{Aggregate, Frames, RawSample};
use crate::ids::{Pid, Tid};
use crate::profile::Profile;
use crate::symbolize::Symbolizer;

/// One frame of a dumped stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Frame {
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The code address (user frames; 0 for Python frames).
    #[serde(skip_serializing_if = "is_zero")]
    pub address: u64,
    /// `native`, `python` or `inlined`.
    pub kind: &'static str,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One thread's state and stacks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ThreadDump {
    pub tid: Tid,
    pub name: String,
    /// `R (running)`, `S (sleeping)`, `D (disk sleep)`…
    pub state: String,
    /// The kernel function it waits in (`/proc/…/wchan`), if blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
    /// The system call it is in, by number (`/proc/…/syscall`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<i64>,
    /// Innermost first, without offsets (`/proc/…/stack`).
    pub kernel_stack: Vec<String>,
    /// Innermost first.
    pub user_stack: Vec<Frame>,
    /// Whether the user stack was walked to its outermost frame.
    pub complete: bool,
    /// How long the thread was stopped, in microseconds: from its stop to
    /// the detach that let it run again.
    pub stopped_us: u64,
    /// From the interrupt until the thread stopped, in microseconds (the
    /// kernel taking it off a system call; on a busy host, waiting for a CPU).
    pub stop_wait_us: u64,
    /// Why a stack could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Every thread of one process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ProcessDump {
    pub pid: Pid,
    pub comm: String,
    pub runtime: String,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub threads: Vec<ThreadDump>,
    /// The longest time any thread was stopped, in microseconds.
    pub longest_stop_us: u64,
    /// The whole dump, from listing the threads to naming the frames.
    pub elapsed_ms: u64,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// What was read of one thread before naming.
struct Raw {
    tid: Tid,
    name: String,
    state: String,
    wchan: Option<String>,
    syscall: Option<i64>,
    kernel_stack: Vec<String>,
    addrs: Vec<u64>,
    complete: bool,
    stopped: Duration,
    stop_wait: Duration,
    errors: Vec<String>,
}

/// Dumps every thread of `pid`.
pub(crate) fn dump(pid: Pid, symbolizer: &mut Symbolizer) -> anyhow::Result<ProcessDump> {
    let started = Instant::now();
    let time = SystemTime::now();
    let task_dir = format!("/proc/{pid}/task");
    let tids =
        list_threads(&task_dir).with_context(|| format!("cannot list the threads of pid {pid} (`{task_dir}`)"))?;
    let facts = crate::runtime::inspect(pid)?;
    let maps_text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let maps = crate::procfs::maps::parse_maps(&maps_text);
    let ranges = all_ranges(&maps_text);
    let mut unwinder = unwind::ProcessUnwinder::new(pid, &maps);
    symbolizer.observe_pids(&[pid]);
    let mut raws = Vec::with_capacity(tids.len());
    for tid in tids {
        raws.push(read_thread(pid, tid, &ranges, &mut unwinder));
    }
    let python = python_stacks(pid);
    let profile = name(pid, &facts.comm, &raws, symbolizer);
    let mut threads = Vec::with_capacity(raws.len());
    for (raw, sample) in raws.into_iter().zip(&profile.samples) {
        let mut user: Vec<Frame> = sample.locations.iter().flat_map(|&i| frames_of(&profile, i)).collect();
        if raw.addrs.is_empty() {
            user.clear();
        }
        let mut errors = raw.errors;
        if let Some((process, by_tid)) = &python {
            match by_tid.get(&raw.tid.get()) {
                Some(Ok(py)) => user = merge_python(user, py, &raw.addrs, process),
                Some(Err(e)) => errors.push(format!("python stack: {e}")),
                None => {}
            }
        }
        threads.push(ThreadDump {
            tid: raw.tid,
            name: raw.name,
            state: raw.state,
            wchan: raw.wchan,
            syscall: raw.syscall,
            kernel_stack: raw.kernel_stack,
            user_stack: user,
            complete: raw.complete,
            stopped_us: raw.stopped.as_micros() as u64,
            stop_wait_us: raw.stop_wait.as_micros() as u64,
            errors,
        });
    }
    let longest_stop_us = threads.iter().map(|t| t.stopped_us).max().unwrap_or(0);
    Ok(ProcessDump {
        pid,
        comm: facts.comm.clone(),
        runtime: facts.runtime.label(),
        time,
        threads,
        longest_stop_us,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn list_threads(task_dir: &str) -> std::io::Result<Vec<Tid>> {
    let mut tids: Vec<Tid> =
        std::fs::read_dir(task_dir)?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Tid::new)).collect();
    tids.sort();
    Ok(tids)
}

/// Every mapping's `[start, end)`, executable or not: where a stack ends.
fn all_ranges(maps_text: &str) -> Vec<(u64, u64)> {
    maps_text
        .lines()
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

fn read_thread(pid: Pid, tid: Tid, ranges: &[(u64, u64)], unwinder: &mut unwind::ProcessUnwinder) -> Raw {
    let dir = format!("/proc/{pid}/task/{tid}");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}"));
    let name = read("comm").map(|s| s.trim_end().to_owned()).unwrap_or_default();
    let status = read("status").unwrap_or_default();
    let state = status.lines().find_map(|l| l.strip_prefix("State:")).map(str::trim).unwrap_or("?").to_owned();
    let wchan = read("wchan").ok().filter(|w| !w.is_empty() && w != "0");
    let syscall =
        read("syscall").ok().and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok()).filter(|&n| n >= 0);
    let mut errors = Vec::new();
    // Read before the thread is stopped: once stopped, its kernel stack is
    // the ptrace stop, not where it was blocked.
    let kernel_stack = match read("stack") {
        Ok(text) => parse_kernel_stack(&text),
        Err(e) => {
            errors.push(format!("kernel stack: `{dir}/stack`: {e}"));
            Vec::new()
        }
    };
    let stack_end = |sp: u64| ranges.iter().find(|&&(s, e)| s <= sp && sp < e).map(|&(_, e)| e);
    let (addrs, complete, stopped, stop_wait) = if state.starts_with('Z') || state.starts_with('X') {
        (Vec::new(), false, Duration::ZERO, Duration::ZERO)
    } else {
        match ptrace::snapshot(pid.get(), tid, stack_end) {
            Ok(snap) => {
                let (addrs, complete) = unwinder.walk(&snap);
                (addrs, complete, snap.stopped, snap.stop_wait)
            }
            Err(e) => {
                errors.push(format!("user stack: {}", ptrace_error(&e)));
                (Vec::new(), false, Duration::ZERO, Duration::ZERO)
            }
        }
    };
    Raw { tid, name, state, wchan, syscall, kernel_stack, addrs, complete, stopped, stop_wait, errors }
}

fn ptrace_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            format!("{e} (already traced by a debugger, or not permitted: run as root or with CAP_SYS_PTRACE)")
        }
        Some(libc::ESRCH) => "the thread exited".to_owned(),
        _ => e.to_string(),
    }
}

/// `[<0>] do_nanosleep+0x6b/0x1c0` lines → `do_nanosleep`.
fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let name = l.split_once("] ").map_or(l, |(_, n)| n).trim();
            let name = name.split_once('+').map_or(name, |(n, _)| n);
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

/// Names every thread's user addresses in one symbolizer pass.
fn name(pid: Pid, comm: &str, raws: &[Raw], symbolizer: &mut Symbolizer) -> Profile {
    let mut all: Vec<u64> = raws.iter().flat_map(|r| r.addrs.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    let samples: Vec<RawSample> = raws
        .iter()
        .map(|r| {
            // The walk's own end says where it stopped (printed per thread),
            // not a `[truncated]` frame.
            let user = if r.addrs.is_empty() { Frames::None } else { Frames::Addrs(Arc::from(r.addrs.as_slice())) };
            RawSample::once(pid, r.tid, comm, user, Frames::None)
        })
        .collect();
    let agg =
        Aggregate { total: samples.len() as u64, samples, user_addrs: [(pid, all)].into(), kernel_addrs: Vec::new() };
    let template = Profile::new_cpu(1, SystemTime::now(), Duration::ZERO);
    symbolizer.build_profile(&agg, template, |_| vec![1, 0])
}

/// A location's frames, innermost (inlined) first.
fn frames_of(profile: &Profile, i: usize) -> Vec<Frame> {
    let Some(loc) = profile.locations.get(i) else { return Vec::new() };
    let last = loc.lines.len().saturating_sub(1);
    loc.lines
        .iter()
        .enumerate()
        .map(|(n, l)| Frame {
            function: l.function.clone(),
            file: l.file.clone(),
            line: l.line,
            address: loc.address,
            kind: if n < last { "inlined" } else { "native" },
        })
        .collect()
}

type PythonStacks = (crate::python::PythonProcess, HashMap<u32, Result<Vec<crate::python::DumpFrame>, String>>);

/// Every thread's Python frames, by thread id, when `pid` runs a CPython
/// stackwatch can read.
fn python_stacks(pid: Pid) -> Option<PythonStacks> {
    let crate::python::Detection::Supported(process) = crate::python::PythonProcess::detect(pid.get()).ok()? else {
        return None;
    };
    let mut resolver = crate::python::CodeResolver::new();
    let threads = crate::python::dump(&process, &mut resolver).ok()?;
    let by_tid = threads
        .into_iter()
        .filter_map(|t| {
            let frames = match t.error {
                Some(e) => Err(e),
                None => Ok(t.frames),
            };
            Some((t.tid?, frames))
        })
        .collect();
    Some((*process, by_tid))
}

/// Puts `python`'s frames (innermost first, each `entry` frame the
/// outermost of one interpreter call) in place of the interpreter frames of
/// the native stack `native`, as `py-spy dump --native` does. Interpreter
/// calls the native walk missed keep their Python frames at the end.
fn merge_python(
    native: Vec<Frame>,
    python: &[crate::python::DumpFrame],
    addrs: &[u64],
    process: &crate::python::PythonProcess,
) -> Vec<Frame> {
    let mut chunks: Vec<Vec<Frame>> = vec![Vec::new()];
    for f in python {
        if let Some(c) = chunks.last_mut() {
            c.push(Frame {
                function: f.function.clone(),
                file: (!f.file.is_empty()).then(|| f.file.clone()),
                line: f.line,
                address: 0,
                kind: "python",
            });
        }
        if f.entry {
            chunks.push(Vec::new());
        }
    }
    let mut chunks = chunks.into_iter().filter(|c| !c.is_empty());
    let eval: std::collections::HashSet<u64> = addrs.iter().copied().filter(|&a| process.in_eval(a)).collect();
    let mut out = Vec::with_capacity(native.len() + python.len());
    for frame in native {
        if frame.kind == "native" && eval.contains(&frame.address) {
            if let Some(chunk) = chunks.next() {
                out.extend(chunk);
                continue;
            }
        }
        out.push(frame);
    }
    for chunk in chunks {
        out.extend(chunk);
    }
    out
}

/// The dump as text: one block per thread, like a JVM thread dump.
pub(crate) fn render_text(d: &ProcessDump) -> String {
    let mut out = format!(
        "pid {} ({}, {}): {} thread{} at {}; longest stop {} µs\n",
        d.pid,
        d.comm,
        d.runtime,
        d.threads.len(),
        if d.threads.len() == 1 { "" } else { "s" },
        humantime::format_rfc3339_millis(d.time),
        d.longest_stop_us
    );
    for t in &d.threads {
        out.push_str(&format!("\nthread {} \"{}\" {}", t.tid, t.name, t.state));
        if let Some(w) = &t.wchan {
            out.push_str(&format!(", waiting in {w}"));
        }
        if let Some(n) = t.syscall {
            out.push_str(&format!(", syscall {n}"));
        }
        out.push_str(&format!(", stopped {} µs (+{} µs to stop)\n", t.stopped_us, t.stop_wait_us));
        for k in &t.kernel_stack {
            out.push_str(&format!("    [k] {k}\n"));
        }
        for f in &t.user_stack {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" ({file}:{line})"),
                (Some(file), None) => format!(" ({file})"),
                _ => String::new(),
            };
            let tag = match f.kind {
                "python" => "[py] ",
                "inlined" => "[inl] ",
                _ => "",
            };
            out.push_str(&format!("    {tag}{}{place}\n", f.function));
        }
        if !t.user_stack.is_empty() && !t.complete {
            out.push_str("    … (the walk stopped here)\n");
        }
        for e in &t.errors {
            out.push_str(&format!("    ({e})\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stack_lines() {
        let text = "[<0>] do_nanosleep+0x6b/0x1c0\n[<0>] hrtimer_nanosleep+0x8d/0x120\n[<0>] entry_SYSCALL_64_after_hwframe+0x76/0x7e\n";
        assert_eq!(parse_kernel_stack(text), ["do_nanosleep", "hrtimer_nanosleep", "entry_SYSCALL_64_after_hwframe"]);
        assert!(parse_kernel_stack("").is_empty());
    }

    #[test]
    fn ranges_of_every_mapping() {
        let text = "7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]\n\
                    55d0c000-55d0d000 r-xp 00001000 fd:01 1234 /usr/bin/x\n";
        assert_eq!(all_ranges(text), [(0x7ffd_1000, 0x7ffd_3000), (0x55d0_c000, 0x55d0_d000)]);
    }

    #[test]
    fn dumps_this_process() {
        // Other threads of this test binary: the harness's workers. Our
        // own thread cannot be traced by itself and says so.
        let mut symbolizer = Symbolizer::new();
        let d = dump(Pid::current(), &mut symbolizer).unwrap();
        assert!(d.threads.len() >= 2, "{d:#?}");
        // SAFETY: gettid has no preconditions.
        let me = Tid::new(unsafe { libc::gettid() } as u32);
        let own = d.threads.iter().find(|t| t.tid == me).expect("this thread is listed");
        assert!(own.errors.iter().any(|e| e.starts_with("user stack:")), "{own:#?}");
        let text = render_text(&d);
        assert!(text.starts_with(&format!("pid {} (", d.pid)), "{text}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["threads"].as_array().unwrap().len(), d.threads.len());
    }
}
