//! The unwind-table tests' workload (`unwind_work.c`) in its compiler
//! variants, and the second unwinder the tests check stackwatch against:
//! `perf record --call-graph dwarf`, which copies each sample's stack to
//! user space and unwinds it there with the same `.eh_frame`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::build::{cached_build, run_ok, tool_version, Spawned};
use crate::workload::WorkloadKind;
use crate::{fnv1a, work_dir, FNV_OFFSET};

/// The unwind tests' programs, as their compilers build them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `unwind_work.c`, `-O2 -fomit-frame-pointer`: what most C on a
    /// distribution looks like.
    NoFramePointers,
    /// `unwind_work.c`, `-O2 -fno-omit-frame-pointer
    /// -mno-omit-leaf-frame-pointer`: gcc 12 still leaves true leaves
    /// frameless.
    FramePointers,
    /// `unwind_sort.cpp`, `g++ -O2 -fomit-frame-pointer`.
    CppNoFramePointers,
    /// `unwind_rust.rs`, `rustc -C opt-level=3`: cargo's release profile
    /// (no frame pointers).
    RustRelease,
    /// `unwind_plugin.c`, a shared library without frame pointers that
    /// `unwind_work dlopen` loads.
    Plugin,
    /// `unwind_work.c` without frame pointers and without `.eh_frame` for
    /// its own code (`-fno-asynchronous-unwind-tables`): with `-g`, gcc
    /// puts its call frame information in `.debug_frame` only.
    DebugFrameOnly,
}

impl Variant {
    fn compiler(self) -> &'static str {
        match self {
            Self::NoFramePointers | Self::FramePointers | Self::Plugin | Self::DebugFrameOnly => "gcc",
            Self::CppNoFramePointers => "g++",
            Self::RustRelease => "rustc",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::NoFramePointers | Self::FramePointers | Self::DebugFrameOnly => "unwind_work.c",
            Self::CppNoFramePointers => "unwind_sort.cpp",
            Self::RustRelease => "unwind_rust.rs",
            Self::Plugin => "unwind_plugin.c",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::NoFramePointers => &["-O2", "-g", "-fomit-frame-pointer", "-fno-inline", "-pthread", "-Wall"],
            Self::FramePointers => &[
                "-O2",
                "-g",
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
                "-fno-inline",
                "-pthread",
                "-Wall",
            ],
            Self::CppNoFramePointers => &["-O2", "-g", "-fomit-frame-pointer", "-Wall"],
            Self::RustRelease => &["-C", "opt-level=3", "-g"],
            Self::Plugin => &["-O2", "-g", "-fomit-frame-pointer", "-fno-inline", "-shared", "-fPIC", "-Wall"],
            Self::DebugFrameOnly => &[
                "-O2",
                "-g",
                "-fomit-frame-pointer",
                "-fno-inline",
                "-fno-asynchronous-unwind-tables",
                "-fno-unwind-tables",
                "-pthread",
                "-Wall",
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NoFramePointers => "unwind_work_nofp",
            Self::FramePointers => "unwind_work_fp",
            Self::CppNoFramePointers => "unwind_sort",
            Self::RustRelease => "unwind_rust",
            Self::Plugin => "libunwind_plugin.so",
            Self::DebugFrameOnly => "unwind_work_debug_frame",
        }
    }

    /// The built binary (cached on disk by source, flags and compiler version).
    pub fn binary(self) -> PathBuf {
        static BUILT: Mutex<Option<HashMap<Variant, PathBuf>>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
        let built = built.get_or_insert_with(HashMap::new);
        if let Some(p) = built.get(&self) {
            return p.clone();
        }
        let source = WorkloadKind::source_dir().join(self.source());
        let text = std::fs::read(&source).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", source.display()));
        let mut key = fnv1a(FNV_OFFSET, &text);
        for flag in self.flags() {
            key = fnv1a(key, flag.as_bytes());
        }
        key = fnv1a(key, &tool_version(self.compiler()).unwrap_or_default());
        let path = cached_build(&work_dir().join("workloads"), self.name(), key, |out| {
            run_ok(Command::new(self.compiler()).args(self.flags()).arg("-o").arg(out).arg(&source))
        })
        .unwrap_or_else(|e| panic!("failed to build {}: {e}", self.name()));
        built.insert(self, path.clone());
        path
    }

    /// Starts the program with `args`.
    pub fn spawn(self, args: &[&str]) -> Spawned {
        let mut cmd = Command::new(self.binary());
        cmd.args(args);
        Spawned::start(cmd)
    }

    /// Starts the program with `args` and address randomization off
    /// (`setarch -R`, inherited across `execve`): every program it runs is
    /// loaded at the same addresses.
    pub fn spawn_unrandomized<S: AsRef<std::ffi::OsStr>>(self, args: &[S]) -> Spawned {
        let mut cmd = Command::new("setarch");
        cmd.args(["x86_64", "-R"]).arg(self.binary()).args(args);
        Spawned::start(cmd)
    }
}

/// A stack as `perf script` prints it: function names, innermost first.
pub type NamedStack = Vec<String>;

/// Samples process `pid` for `duration` with `perf record --call-graph
/// dwarf` (software cpu-clock, or `event`) and returns the stacks of its
/// samples, innermost first.
pub fn perf_dwarf_stacks(pid: u32, duration: Duration, event: &str, dir: &Path) -> Vec<NamedStack> {
    let data = dir.join("perf.data");
    let secs = format!("{:.1}", duration.as_secs_f64());
    let mut record = Command::new("perf");
    record
        .args(["record", "-q", "-e", event, "-F", "99", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &secs]);
    run_ok(&mut record).unwrap_or_else(|e| panic!("perf record failed: {e}"));
    let out = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("perf script failed: {e}"));
    parse_perf_script(&String::from_utf8_lossy(&out.stdout))
}

/// `perf script -F ip,sym`: one frame a line (`addr sym`), a blank line
/// between samples.
pub fn parse_perf_script(text: &str) -> Vec<NamedStack> {
    let mut stacks = Vec::new();
    let mut current: NamedStack = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                stacks.push(std::mem::take(&mut current));
            }
            continue;
        }
        let mut parts = line.splitn(2, ' ');
        let _addr = parts.next();
        let sym = parts.next().unwrap_or("[unknown]").trim();
        let sym = sym.split('+').next().unwrap_or(sym);
        current.push(sym.to_owned());
    }
    if !current.is_empty() {
        stacks.push(current);
    }
    stacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_script() {
        let text = "\t    55d0 leaf_a+0x10\n\t    55e0 work_loop+0x2\n\n\t 1 read\n";
        assert_eq!(parse_perf_script(text), vec![vec!["leaf_a", "work_loop"], vec!["read"]]);
    }
}

/// Every thread's stack of process `pid` as gdb unwinds it (its own DWARF
/// unwinder, attached once with `thread apply all bt`): function names,
/// innermost first, inlined frames included.
pub fn gdb_thread_stacks(pid: u32) -> Vec<NamedStack> {
    let out = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx", "-ex", "thread apply all bt"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run gdb: {e}"));
    parse_gdb_backtraces(&String::from_utf8_lossy(&out.stdout))
}

/// `thread apply all bt` output: `Thread N …` starts a stack, `#K [0x… in]
/// function (…)` adds a frame.
pub fn parse_gdb_backtraces(text: &str) -> Vec<NamedStack> {
    let mut stacks: Vec<NamedStack> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Thread ") {
            stacks.push(Vec::new());
        } else if let (Some(rest), Some(stack)) = (line.strip_prefix('#'), stacks.last_mut()) {
            let mut words = rest.split_whitespace().skip(1);
            let mut word = words.next().unwrap_or("");
            if word.starts_with("0x") {
                let _in = words.next();
                word = words.next().unwrap_or("");
            }
            stack.push(word.to_owned());
        }
    }
    stacks.retain(|s| !s.is_empty());
    stacks
}

#[cfg(test)]
mod gdb_tests {
    use super::*;

    #[test]
    fn parses_gdb_backtraces() {
        let text = "Thread 2 (Thread 0x7f (LWP 5) \"uwk\"):\n#0  0x00007f in __GI___clock_nanosleep (clock_id=0) at x.c:48\n#1  wait_for_io () at u.c:80\n\nThread 1 (x):\n#0  main (argc=1) at u.c:1\n";
        assert_eq!(parse_gdb_backtraces(text), vec![vec!["__GI___clock_nanosleep", "wait_for_io"], vec!["main"]]);
    }
}
