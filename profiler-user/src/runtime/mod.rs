//! What a process runs, and whether its stacks can be walked and named: the
//! language runtime (Go, CPython, Node.js, a JVM, or native code), the
//! unwind and symbol facts of its executable and runtime library, and
//! whether its JIT writes a perf map.
//!
//! A profile only shows the symptoms of a stack that cannot be walked
//! (one-frame stacks, `[anon]+0x…` frames, Python stacks without Python
//! names). These facts are the causes, so the capture's stack quality
//! (`crate::profile::quality`) and `doctor --pid` can name the fix, worded
//! in one place ([`hints`]).

pub(crate) mod hints;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::ids::Pid;
use crate::objfile::facts::ObjectFacts;
use crate::procfs::{self, maps::MapsEntry};

/// The language runtime of a process, as far as it matters for stacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub(crate) enum Runtime {
    /// C, C++, Rust and anything else compiled ahead of time.
    Native {
        #[serde(skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    Go {
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// CPython; `readable` says whether stackwatch can read its Python
    /// frames (`stackwatch dump`), `note` why not.
    Python {
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        readable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Node,
    Java,
}

impl Runtime {
    /// One word for tables: `go`, `python`, `node`, `java`, `rust`, `c/c++`, `native`.
    pub(crate) fn label(&self) -> String {
        match self {
            Runtime::Native { language: Some(l) } => l.clone(),
            Runtime::Native { language: None } => "native".into(),
            Runtime::Go { version } => version.clone().unwrap_or_else(|| "go".into()),
            Runtime::Python { version: Some(v), .. } => format!("python {v}"),
            Runtime::Python { version: None, .. } => "python".into(),
            Runtime::Node => "node".into(),
            Runtime::Java => "java".into(),
        }
    }

    /// A runtime that generates code at run time (named only by a perf map).
    pub(crate) fn jit(&self) -> bool {
        matches!(self, Runtime::Node | Runtime::Java)
    }
}

/// One object file of a process and its facts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObjectInfo {
    /// The path as the process sees it.
    pub path: String,
    pub facts: ObjectFacts,
    /// A separate debug file was found for it (by build ID or debuglink).
    pub debug_file: bool,
}

/// What is known about one process's stacks before sampling it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProcessFacts {
    pub pid: Pid,
    pub comm: String,
    pub runtime: Runtime,
    /// The executable.
    pub exe: Option<ObjectInfo>,
    /// The library the runtime lives in, when it is not the executable
    /// (`libpython3.x.so`, `libjvm.so`, `libnode.so`).
    pub runtime_library: Option<ObjectInfo>,
    /// Anonymous executable mappings: generated code.
    pub jit_mappings: usize,
    /// The JIT's perf map (`/tmp/perf-<pid>.map` in the process's root),
    /// when it exists.
    pub perf_map: Option<PathBuf>,
    /// Where the perf map would be.
    pub perf_map_path: PathBuf,
}

/// Looks at a live process. Fails when it is gone or cannot be read.
pub(crate) fn inspect(pid: Pid) -> anyhow::Result<ProcessFacts> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|text| procfs::maps::parse_maps(&text))
        .with_context(|| format!("cannot read `/proc/{pid}/maps` of pid {pid}"))?;
    let comm = procfs::process::comm(pid).unwrap_or_default();
    let exe_path = std::fs::read_link(procfs::process::exe_path(pid)).ok();
    let exe_str = exe_path.as_ref().map(|p| p.display().to_string().trim_end_matches(" (deleted)").to_owned());
    let exe = exe_str.as_deref().and_then(|path| object_info(pid, &procfs::process::exe_path(pid), path));
    let mut runtime = detect_runtime(pid, &comm, exe_str.as_deref(), exe.as_ref(), &maps);
    let library_name = match &runtime {
        Runtime::Python { .. } => Some("libpython"),
        Runtime::Java => Some("libjvm.so"),
        Runtime::Node => Some("libnode.so"),
        _ => None,
    };
    let runtime_library = library_name.and_then(|name| {
        let m = maps.iter().find(|m| m.is_file() && file_name(&m.path).starts_with(name))?;
        object_info(pid, &m.map_files_path(pid), m.clean_path())
    });
    if let (Runtime::Native { language }, Some(exe)) = (&mut runtime, &exe) {
        if exe.facts.is_rust {
            *language = Some("rust".into());
        }
    }
    let ns_pid = procfs::status::read(pid).ok().and_then(|s| procfs::status::ns_pid(&s)).unwrap_or(pid.get());
    let perf_map_path = procfs::process::in_root(pid, Path::new(&format!("/tmp/perf-{ns_pid}.map")));
    Ok(ProcessFacts {
        pid,
        comm,
        runtime,
        exe,
        runtime_library,
        jit_mappings: maps.iter().filter(|m| m.path.is_empty()).count(),
        perf_map: perf_map_path.is_file().then(|| perf_map_path.clone()),
        perf_map_path,
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn detect_runtime(
    pid: Pid,
    comm: &str,
    exe: Option<&str>,
    exe_info: Option<&ObjectInfo>,
    maps: &[MapsEntry],
) -> Runtime {
    if let Some(facts) = exe_info.map(|e| &e.facts).filter(|f| f.is_go) {
        return Runtime::Go { version: facts.go_version.clone() };
    }
    let mapped = |name: &str| maps.iter().any(|m| file_name(&m.path).starts_with(name));
    let exe_name = exe.map(file_name).unwrap_or(comm);
    if exe_name == "node" || exe_name == "nodejs" || mapped("libnode.so") {
        return Runtime::Node;
    }
    if mapped("libjvm.so") {
        return Runtime::Java;
    }
    match crate::python::PythonProcess::detect(pid.get()) {
        Ok(crate::python::Detection::Supported(p)) => {
            return Runtime::Python { version: Some(p.version().to_string()), readable: true, note: None };
        }
        Ok(crate::python::Detection::Unsupported(u)) => {
            return Runtime::Python {
                version: u.version.map(|v| v.to_string()),
                readable: false,
                note: Some(u.reason.clone()),
            };
        }
        Ok(crate::python::Detection::NotReady(reason)) => {
            return Runtime::Python { version: None, readable: false, note: Some(reason) };
        }
        Ok(crate::python::Detection::NotPython) | Err(_) => {}
    }
    let language = if exe_info.is_some_and(|e| e.facts.is_rust) { Some("rust") } else { Some("c/c++") };
    Runtime::Native { language: language.map(str::to_owned) }
}

/// Reads the facts of the file at `open` (a `/proc` path that reaches the
/// very file the process mapped), known to the process as `path`.
fn object_info(pid: Pid, open: &Path, path: &str) -> Option<ObjectInfo> {
    let file = File::open(open).ok()?;
    // SAFETY: a read-only private mapping; a file truncated meanwhile can
    // fault, as it can for every profiler that reads binaries this way
    // (blazesym maps them too).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let facts = ObjectFacts::of_file(&map, Some(&file))?;
    let debug_file = !facts.debug_info && {
        let info = crate::objfile::elf::ElfInfo::parse(&map)?;
        let search = crate::objfile::debuginfo::DebugSearch {
            process_root: Some(procfs::process::root(pid)),
            binary_path: path,
            extra_dirs: &[],
        };
        search.find(&info).is_some()
    };
    Some(ObjectInfo { path: path.to_owned(), facts, debug_file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_process_is_native_rust() {
        let facts = inspect(Pid::current()).unwrap();
        assert_eq!(facts.runtime, Runtime::Native { language: Some("rust".into()) }, "{facts:?}");
        let exe = facts.exe.as_ref().expect("the test binary is readable");
        assert!(exe.facts.symtab && exe.facts.eh_frame, "{exe:?}");
        assert!(facts.perf_map.is_none());
        assert!(facts.perf_map_path.ends_with(format!("tmp/perf-{}.map", std::process::id())));
    }

    #[test]
    fn a_gone_process_is_an_error() {
        let err = inspect(Pid::new(u32::MAX - 1)).unwrap_err();
        assert!(format!("{err:#}").contains("No such file"), "{err:#}");
    }
}
