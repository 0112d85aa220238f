//! Python frames in profiles: which processes run CPython (and so get a
//! `PY_PROCS` entry for the kernel's walk), the names of the code objects
//! the kernel saw, and the splice that puts them where the interpreter loop
//! ran in the native stack.
//!
//! Names come from `crate::python` (code objects read with
//! `process_vm_readv`, cached by (pid, address, checksum)). The kernel
//! gives each frame the checksum it saw, so a code object freed and
//! replaced since is never named after its successor. While a capture runs
//! the stacks of the Python processes in it are read once a second
//! ([`PythonFrames::warm`]), so a process that exits before the end keeps
//! the names of the code it was running.

use std::collections::HashMap;

use profiler_common::python::{PyProcInfo, PY_TSS_KEY_UNSET};
use tracing::{debug, warn};

use crate::aggregate::PyFrame;
use crate::ids::Pid;
use crate::python::{CodeError, CodeResolver, Detection, PythonProcess, Unsupported};

/// Times a process whose interpreter is not initialised yet is looked at
/// again (once a second) before it is taken for native.
const NOT_READY_TRIES: u8 = 30;

enum PyProc {
    NotPython,
    NotReady(u8),
    Supported(Box<PythonProcess>),
    Unsupported(Unsupported),
}

/// A named Python frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PyName {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// One frame of a spliced stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The native frame at this index.
    Native(usize),
    /// The Python frame at this index.
    Python(usize),
}

/// The Python processes seen and the names of their code.
#[derive(Default)]
pub(crate) struct PythonFrames {
    procs: HashMap<Pid, PyProc>,
    resolver: CodeResolver,
    /// Kernel stack ids already named by [`Self::remember`].
    remembered: std::collections::HashSet<(Pid, u64)>,
}

impl PythonFrames {
    /// Detects CPython in the processes not known yet (and retries those
    /// that were starting).
    pub(crate) fn observe(&mut self, pids: &[Pid]) {
        for &pid in pids {
            let retry = match self.procs.get(&pid) {
                None => 0,
                Some(PyProc::NotReady(tries)) if *tries < NOT_READY_TRIES => tries + 1,
                Some(_) => continue,
            };
            let state = match PythonProcess::detect(pid.get()) {
                Ok(Detection::Supported(p)) => {
                    debug!(%pid, version = %p.version(), path = p.path(), "python process");
                    PyProc::Supported(p)
                }
                Ok(Detection::Unsupported(u)) => {
                    warn!("{}", u.note());
                    PyProc::Unsupported(u)
                }
                Ok(Detection::NotReady(_)) => PyProc::NotReady(retry),
                // Gone, or not ours to read: nothing to name.
                Ok(Detection::NotPython) | Err(_) => PyProc::NotPython,
            };
            self.procs.insert(pid, state);
        }
    }

    /// Forgets what was detected in `pid`: another program runs under it
    /// now (the pid was reused, or the process called `execve`).
    pub(crate) fn forget(&mut self, pid: Pid) {
        self.procs.remove(&pid);
        self.remembered.retain(|&(p, _)| p != pid);
    }

    /// Forgets the processes that have exited (a busy host goes through
    /// every pid in minutes; a reused one must be detected afresh).
    pub(crate) fn forget_exited(&mut self) {
        self.procs.retain(|&pid, _| crate::procfs::process::exists(pid));
        let procs = &self.procs;
        self.remembered.retain(|(pid, _)| procs.contains_key(pid));
    }

    /// The kernel map's entries: the supported processes among `pids`
    /// whose thread states can be found from the kernel (their threads'
    /// key slot is known once a thread state exists).
    pub(crate) fn proc_infos(&mut self, pids: &[Pid]) -> Vec<(Pid, PyProcInfo)> {
        self.observe(pids);
        let mut out = Vec::new();
        for &pid in pids {
            if let Some(PyProc::Supported(p)) = self.procs.get(&pid) {
                match p.proc_info() {
                    Ok(info) if info.tss_key != PY_TSS_KEY_UNSET => out.push((pid, info)),
                    Ok(_) => debug!(%pid, "python thread states not found yet"),
                    Err(e) => debug!(%pid, "python process not readable: {e:#}"),
                }
            }
        }
        out
    }

    /// Reads the current Python stacks of the supported processes among
    /// `pids`, so the code they run is named while they live.
    pub(crate) fn warm(&mut self, pids: &[Pid]) {
        for pid in pids {
            if let Some(PyProc::Supported(p)) = self.procs.get(pid) {
                // A thread or the process that exits meanwhile is no error.
                let _ = crate::python::dump(p, &mut self.resolver);
            }
        }
    }

    /// Whether the kernel's Python stack `id` of `pid` still needs naming.
    pub(crate) fn needs(&self, pid: Pid, id: u64) -> bool {
        matches!(self.procs.get(&pid), Some(PyProc::Supported(_))) && !self.remembered.contains(&(pid, id))
    }

    /// Names the code objects of a Python stack the kernel stored, while
    /// the process lives (cached by the checksum the kernel saw).
    pub(crate) fn remember(&mut self, pid: Pid, id: u64, frames: &[PyFrame]) {
        let Some(PyProc::Supported(p)) = self.procs.get(&pid) else { return };
        let items: Vec<(u64, Option<u32>)> = frames.iter().map(|f| (f.code, Some(f.checksum))).collect();
        if self.resolver.resolve_many(&p.code_reader(), &items).iter().all(Result::is_ok) {
            self.remembered.insert((pid, id));
        }
    }

    /// Manifest notes: the unsupported interpreters among `pids`.
    pub(crate) fn notes(&self, pids: &[Pid]) -> Vec<String> {
        pids.iter()
            .filter_map(|pid| match self.procs.get(pid) {
                Some(PyProc::Unsupported(u)) => Some(u.note()),
                _ => None,
            })
            .collect()
    }

    /// The frame that stands for the Python code of an unsupported
    /// interpreter, if `pid` is one.
    pub(crate) fn unsupported_frame(&self, pid: Pid) -> Option<String> {
        match self.procs.get(&pid) {
            Some(PyProc::Unsupported(u)) => Some(u.frame_name()),
            _ => None,
        }
    }

    /// Names `frames` of `pid` and orders them with the native frames
    /// `native` (innermost first, return addresses already moved into the
    /// call). `None` when `pid` is not a supported Python process.
    pub(crate) fn splice(&mut self, pid: Pid, native: &[u64], frames: &[PyFrame]) -> Option<(Vec<Slot>, Vec<PyName>)> {
        let Some(PyProc::Supported(p)) = self.procs.get(&pid) else { return None };
        if frames.is_empty() {
            return None;
        }
        let items: Vec<(u64, Option<u32>)> = frames.iter().map(|f| (f.code, Some(f.checksum))).collect();
        let infos = self.resolver.resolve_many(&p.code_reader(), &items);
        let names = frames
            .iter()
            .zip(infos)
            .map(|(f, info)| match info {
                Ok(info) => {
                    PyName { function: info.function(), file: Some(info.filename.clone()), line: info.line(f.lasti) }
                }
                Err(CodeError::Stale(_)) => unnamed("[python: code object replaced]"),
                Err(_) => unnamed("[python: unreadable frame]"),
            })
            .collect();
        let is_eval: Vec<bool> = native.iter().map(|&ip| p.in_eval(ip)).collect();
        Some((splice_order(&is_eval, frames), names))
    }
}

fn unnamed(name: &str) -> PyName {
    PyName { function: name.to_owned(), file: None, line: None }
}

/// Where each frame goes: every native frame in the interpreter loop
/// (`is_eval`) is replaced by the Python frames of that call (frames up to
/// and including the next entry frame); Python frames left over — native
/// unwinding stopped before reaching their calls, as a frame-pointer walk
/// through a libpython built without frame pointers does — go outermost,
/// so Python names always show.
pub(crate) fn splice_order(is_eval: &[bool], frames: &[PyFrame]) -> Vec<Slot> {
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for (i, f) in frames.iter().enumerate() {
        if f.entry || i + 1 == frames.len() {
            groups.push(start..i + 1);
            start = i + 1;
        }
    }
    let mut groups = groups.into_iter();
    let mut out = Vec::with_capacity(is_eval.len() + frames.len());
    for (i, &eval) in is_eval.iter().enumerate() {
        match eval.then(|| groups.next()).flatten() {
            Some(group) => out.extend(group.map(Slot::Python)),
            None => out.push(Slot::Native(i)),
        }
    }
    for group in groups {
        out.extend(group.map(Slot::Python));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{splice_order, Slot};
    use crate::aggregate::PyFrame;

    fn frames(entries: &[bool]) -> Vec<PyFrame> {
        entries
            .iter()
            .enumerate()
            .map(|(i, &entry)| PyFrame { code: 0x1000 + i as u64, lasti: 0, checksum: 0, entry })
            .collect()
    }

    #[test]
    fn each_eval_frame_gets_the_python_frames_of_its_call() {
        // native: leaf, eval (inner call), sorted, eval (outer call), main
        let is_eval = [false, true, false, true, false];
        // python: key (entry of the inner call), caller, main (entry of the outer call)
        let py = frames(&[true, false, true]);
        use Slot::*;
        assert_eq!(splice_order(&is_eval, &py), vec![Native(0), Python(0), Native(2), Python(1), Python(2), Native(4)]);
    }

    #[test]
    fn python_frames_without_an_eval_frame_go_outermost() {
        use Slot::*;
        let py = frames(&[false, true, true]);
        assert_eq!(splice_order(&[false, true], &py), vec![Native(0), Python(0), Python(1), Python(2)]);
        assert_eq!(splice_order(&[false, false], &py), vec![Native(0), Native(1), Python(0), Python(1), Python(2)]);
        // More eval frames than calls: the rest stay native.
        assert_eq!(splice_order(&[true, true], &frames(&[true])), vec![Python(0), Native(1)]);
        assert_eq!(splice_order(&[true], &[]), vec![Native(0)]);
    }
}
