//! Python stacks read from outside the process: CPython 3.8–3.13, no flag,
//! no agent, no ptrace stop.
//!
//! Without `-X perf`, every Python function of a CPython process shows as
//! `_PyEval_EvalFrameDefault` in native stacks: the interpreter runs all of
//! them. Their names are in the interpreter's own structures, which this
//! module reads with `process_vm_readv` the way py-spy does: it detects
//! CPython and its version in a process (`process`, `elf`), checks the
//! per-version layout against the running interpreter (`layout`), walks each
//! thread's frames (`process`), and names code objects with their file and
//! line (`code`, `linetable`), caching by (pid, address, checksum).
//!
//! It serves two callers: a stack dump (`dump`, for `stackwatch dump`), and
//! the eBPF profiler, which walks frames in the kernel with the same
//! offsets ([`profiler_common::python::PyProcInfo`], filled by
//! [`PythonProcess::proc_info`]) and hands (code address, instruction,
//! checksum) back to [`CodeResolver`] for names.
//!
//! Self-contained on purpose: nothing here depends on the rest of
//! stackwatch, so the profiler's pipeline can adopt it in one place.

mod code;
mod elf;
mod layout;
mod linetable;
mod maps;
mod memory;
mod process;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Result;

pub use code::{
    module_name, CacheStats, CodeError, CodeHeader, CodeInfo, CodeKey, CodeReader, CodeResolver, Types,
    DEFAULT_CACHE_ENTRIES,
};
pub use layout::{offsets as layout_for_minor, MAX_MINOR, MIN_MINOR};
pub use linetable::{line_for, LineTableKind};
pub use memory::{ReadError, RemoteMemory};
pub use process::{Detection, PyThread, PyVersion, PythonProcess, RawFrame, Threading, Unsupported, MAX_FRAMES};

/// One thread's Python stack, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadDump {
    /// The kernel's thread id, when it could be found.
    pub tid: Option<u32>,
    /// Innermost first.
    pub frames: Vec<DumpFrame>,
    /// Why the stack could not be read (the thread exited meanwhile), if so.
    pub error: Option<String>,
}

/// One named Python frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFrame {
    /// `module.qualname`, or `[python: …]` when the frame could not be named.
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
    /// The outermost Python frame of its `_PyEval_EvalFrameDefault` call.
    pub entry: bool,
    /// The resolved code object, when there is one.
    pub code: Option<Arc<CodeInfo>>,
}

/// Every thread's Python stack, innermost frame first. A thread whose
/// stack cannot be read (it exited meanwhile) is listed with the error;
/// frames that cannot be named show as `[python: unreadable frame]`.
pub fn dump(process: &PythonProcess, resolver: &mut CodeResolver) -> Result<Vec<ThreadDump>> {
    let threads = process.threads()?;
    let mut out = Vec::with_capacity(threads.len());
    for thread in &threads {
        out.push(match process.stack(thread) {
            Ok(frames) => ThreadDump { tid: thread.tid, frames: name_frames(process, resolver, &frames), error: None },
            Err(err) => ThreadDump { tid: thread.tid, frames: Vec::new(), error: Some(format!("{err:#}")) },
        });
    }
    Ok(out)
}

/// Names `frames` of `process` (one batched header read, then only the
/// code objects not cached yet).
pub fn name_frames(process: &PythonProcess, resolver: &mut CodeResolver, frames: &[RawFrame]) -> Vec<DumpFrame> {
    let items: Vec<(u64, Option<u32>)> = frames.iter().map(|f| (f.code, None)).collect();
    let infos = resolver.resolve_many(&process.code_reader(), &items);
    frames
        .iter()
        .zip(infos)
        .map(|(frame, info)| match info {
            Ok(info) => DumpFrame {
                function: info.function(),
                file: info.filename.clone(),
                line: info.line(frame.lasti),
                entry: frame.entry,
                code: Some(info),
            },
            Err(_) => DumpFrame {
                function: "[python: unreadable frame]".to_owned(),
                file: String::new(),
                line: None,
                entry: frame.entry,
                code: None,
            },
        })
        .collect()
}
