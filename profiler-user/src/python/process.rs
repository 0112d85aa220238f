//! Finding CPython in a process and reading its threads and frames.
//!
//! Detection looks at the mapped files: the main executable (a static
//! build, as Debian's `/usr/bin/python3.11`) or a `libpython3.X.so` (a
//! shared build, as pyenv's), whichever defines `_PyRuntime`. The version
//! comes from the `Py_Version` constant (3.11+), else the file name, else
//! the `PY_VERSION` string in `.rodata`. Attaching then checks the layout
//! against the running interpreter (see `layout`).
//!
//! From `_PyRuntime` the reader follows interpreters → thread states →
//! the innermost frame → callers. It never stops the process: a thread
//! may change its stack while it is read, so every pointer is checked
//! (frames by type of their code object, walks bounded and cycle-free) and
//! a torn stack at worst ends early.

use std::collections::HashSet;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context as _, Result};
use profiler_common::python::{
    PyOffsets, PyProcInfo, PY_ENTRY_EACH_FRAME, PY_ENTRY_FLAG, PY_ENTRY_SHIM, PY_LASTI_BYTES, PY_LASTI_CODE_UNITS,
    PY_TSS_KEY_UNSET,
};

use super::code::{CodeReader, Types};
use super::elf::PyElf;
use super::layout;
use super::maps::{read_maps, Mapping};
use super::memory::{Fields as _, RemoteMemory};

/// Frames walked per thread at most; deeper stacks are cut (CPython's own
/// default recursion limit is 1000).
pub const MAX_FRAMES: usize = 4096;
/// Interpreters and threads followed at most (a cycle in a torn list must
/// not spin).
const MAX_INTERPRETERS: usize = 256;
const MAX_THREADS: usize = 65536;
/// Bytes of each thread's `struct pthread` searched for its kernel tid and
/// its `pthread_setspecific` values (glibc x86-64: tid at 0x2d0, values of
/// keys 0–31 at 0x318 + 16 × key).
const PTHREAD_SCAN: usize = 0x800;
const GLIBC_TID: usize = 0x2d0;
const GLIBC_TSD_DATA: usize = 0x318;
const GLIBC_TSD_STRIDE: usize = 16;
/// Keys whose value lives inline in `struct pthread` (glibc's first block).
const TSD_INLINE_KEYS: u32 = 32;

/// A CPython version, `PY_VERSION_HEX`-style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PyVersion {
    pub major: u8,
    pub minor: u8,
    /// Unknown when the version came from a file name.
    pub micro: Option<u8>,
}

impl std::fmt::Display for PyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.micro {
            Some(micro) => write!(f, "{}.{}.{micro}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

/// What a process is, Python-wise.
#[derive(Debug)]
pub enum Detection {
    /// No CPython in the process.
    NotPython,
    /// CPython whose interpreter has not initialised yet (just started):
    /// ask again later.
    NotReady(String),
    /// A CPython this reader cannot read: its frames must show as
    /// [`Unsupported::frame_name`] and the capture's manifest says why.
    Unsupported(Unsupported),
    Supported(Box<PythonProcess>),
}

/// A CPython that cannot be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub pid: u32,
    /// The interpreter's file, as the process sees it.
    pub path: String,
    pub version: Option<PyVersion>,
    pub reason: String,
}

impl Unsupported {
    /// The frame that stands for this process's Python code:
    /// `[python 3.14: unsupported]`.
    pub fn frame_name(&self) -> String {
        match self.version {
            Some(v) => format!("[python {}.{}: unsupported]", v.major, v.minor),
            None => "[python: unsupported]".to_owned(),
        }
    }

    /// One line for a manifest or log.
    pub fn note(&self) -> String {
        let version = self.version.map_or_else(|| "of unknown version".to_owned(), |v| v.to_string());
        format!("pid {}: python {version} in `{}` is not supported: {}", self.pid, self.path, self.reason)
    }
}

/// One thread state of a Python process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyThread {
    /// The kernel's thread id, when known (3.11+ record it; before, it is
    /// read from the thread's `struct pthread`).
    pub tid: Option<u32>,
    /// `pthread_self()` of the thread (its `struct pthread`, the thread
    /// pointer on x86-64).
    pub pthread: u64,
    pub tstate: u64,
    pub interp: u64,
    /// The innermost frame, 0 when the thread runs no Python code.
    pub frame: u64,
}

/// One Python frame as found on a thread's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Address of the frame (`PyFrameObject` or `_PyInterpreterFrame`).
    pub frame: u64,
    /// Address of its code object.
    pub code: u64,
    /// Index (in 2-byte code units) of the instruction running, -1 before
    /// the first.
    pub lasti: i32,
    /// The outermost Python frame of one `_PyEval_EvalFrameDefault` call:
    /// native frames of the caller follow it. Before 3.11 every frame is.
    pub entry: bool,
}

/// How the kernel's view of a thread maps onto its Python state; see
/// [`PythonProcess::threading`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Threading {
    /// The `pthread_key_t` of the thread-state slot.
    pub tss_key: Option<u32>,
    /// Offset from the thread pointer of key 0's value, and the stride.
    pub tsd: Option<(u16, u16)>,
    /// Offset of the kernel tid in `struct pthread` (needed before 3.11).
    pub tid_offset: Option<u16>,
}

/// An attached CPython process.
#[derive(Debug)]
pub struct PythonProcess {
    pid: u32,
    path: String,
    version: PyVersion,
    is_static: bool,
    offsets: PyOffsets,
    runtime: u64,
    eval: Range<u64>,
    cold: Option<Range<u64>>,
    types: Types,
    mem: RemoteMemory,
    threading: std::sync::Mutex<Threading>,
}

impl PythonProcess {
    /// Detects CPython in `pid` and, if supported, attaches to it. An error
    /// means the process could not be inspected (gone, no permission).
    pub fn detect(pid: u32) -> Result<Detection> {
        let maps = read_maps(pid).with_context(|| format!("failed to read `/proc/{pid}/maps`"))?;
        let exe_inode = fs::metadata(format!("/proc/{pid}/exe")).map(|m| m.ino()).ok();
        let mut named: Option<(String, PyVersion, String)> = None;
        let mut awaiting_libpython = false;
        for group in candidates(&maps, exe_inode) {
            let first = group[0];
            let file_version = version_from_name(&first.path);
            let elf = match inspect(pid, first) {
                Ok(elf) => elf,
                Err(err) if file_version.is_some() => return Err(err),
                Err(_) => continue,
            };
            let Some(runtime) = elf.runtime else {
                awaiting_libpython |= elf.needs_libpython;
                if let Some((version, suffix)) = file_version {
                    named.get_or_insert((first.path.clone(), version, suffix));
                }
                continue;
            };
            let version = elf
                .py_version
                .map(|hex| PyVersion {
                    major: (hex >> 24) as u8,
                    minor: (hex >> 16) as u8,
                    micro: Some((hex >> 8) as u8),
                })
                .or(file_version.as_ref().map(|(v, _)| *v))
                .or(elf.rodata_version.map(|(major, minor)| PyVersion { major, minor, micro: None }));
            let suffix = file_version.map(|(_, s)| s).unwrap_or_default();
            let is_static = exe_inode == Some(first.inode);
            return Ok(Self::attach(pid, &maps, first, &elf, runtime, version, &suffix, is_static));
        }
        // A shared build's executable runs before the loader mapped its
        // libpython's code (the loader maps the file read-only first, then
        // each segment with its own permissions).
        if awaiting_libpython && !maps.iter().any(|m| m.executable && m.path.contains("/libpython")) {
            return Ok(Detection::NotReady("libpython is not loaded yet".into()));
        }
        // A Python without `_PyRuntime` (3.6 and older) or one we could not
        // read: visible, not silently native.
        Ok(match named {
            Some((path, version, _)) => Detection::Unsupported(Unsupported {
                pid,
                path,
                version: Some(version),
                reason: if version < (PyVersion { major: 3, minor: layout::MIN_MINOR, micro: None }) {
                    format!("versions before 3.{} are not supported", layout::MIN_MINOR)
                } else {
                    "no `_PyRuntime` symbol".to_owned()
                },
            }),
            None => Detection::NotPython,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        pid: u32,
        maps: &[Mapping],
        mapping: &Mapping,
        elf: &PyElf,
        runtime: u64,
        version: Option<PyVersion>,
        suffix: &str,
        is_static: bool,
    ) -> Detection {
        let unsupported =
            |reason: String| Detection::Unsupported(Unsupported { pid, path: mapping.path.clone(), version, reason });
        let Some(version) = version else { return unsupported("version unknown".into()) };
        let in_range = version.major == 3 && (layout::MIN_MINOR..=layout::MAX_MINOR).contains(&version.minor);
        let Some(offsets) = layout::offsets(version.minor).filter(|_| in_range) else {
            return unsupported(format!("supported versions are 3.{} to 3.{}", layout::MIN_MINOR, layout::MAX_MINOR));
        };
        if suffix.contains('t') {
            return unsupported("free-threaded build".into());
        }
        if suffix.contains('d') {
            return unsupported("debug build".into());
        }
        let Some(bias) = elf.bias(mapping.start, mapping.offset) else {
            return unsupported("cannot place the file's segments in memory".into());
        };
        let (Some(eval), Some(code), Some(unicode), Some(bytes)) =
            (elf.eval.clone(), elf.code_type, elf.unicode_type, elf.bytes_type)
        else {
            return unsupported("missing symbols (`_PyEval_EvalFrameDefault`, `PyCode_Type`, …)".into());
        };
        let add = |a: u64| a.wrapping_add(bias);
        // The runtime and the type objects are writable data. Until the
        // loader has mapped that segment, their addresses hold whatever
        // part of the file its first read-only mapping put there.
        let writable = |a: u64| maps.iter().any(|m| m.writable && (m.start..m.end).contains(&a));
        if !writable(add(runtime)) || !writable(add(code)) {
            return Detection::NotReady(format!("the data of `{}` is not mapped yet", mapping.path));
        }
        let process = PythonProcess {
            pid,
            path: mapping.path.clone(),
            version,
            is_static,
            offsets,
            runtime: add(runtime),
            eval: add(eval.start)..add(eval.end),
            cold: elf.cold.as_ref().map(|c| add(c.start)..add(c.end)),
            types: Types { code: add(code), unicode: add(unicode), bytes: add(bytes) },
            mem: RemoteMemory::new(pid),
            threading: std::sync::Mutex::new(Threading::default()),
        };
        let frame_type = elf.frame_type.map(add);
        // Before the dynamic loader and `Py_Initialize` ran, pointers in the
        // type objects are not relocated yet and the runtime has no
        // interpreter. Read that first: a process starting up may finish
        // both while the layout is checked, and a check that failed on
        // unrelocated pointers must not then be blamed on the layout.
        let head = process.mem.read_u64(process.runtime + u64::from(offsets.runtime_interpreters_head));
        if let Err(reason) = layout::verify(&process.mem, &offsets, process.types.code, frame_type, process.runtime) {
            return match head {
                Ok(0) => Detection::NotReady(reason),
                Err(err) if err.process_gone() => Detection::NotReady(err.to_string()),
                _ => unsupported(format!("layout differs from CPython {}: {reason}", version)),
            };
        }
        Detection::Supported(Box::new(process))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file holding the interpreter (the executable when static), as
    /// the process sees it.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn version(&self) -> PyVersion {
        self.version
    }

    /// The interpreter is linked into the executable (no `libpython`).
    pub fn is_static(&self) -> bool {
        self.is_static
    }

    pub fn offsets(&self) -> &PyOffsets {
        &self.offsets
    }

    /// `_PyEval_EvalFrameDefault`'s range in the process.
    pub fn eval_range(&self) -> Range<u64> {
        self.eval.clone()
    }

    /// The range of its `.cold` part, if it has one.
    pub fn cold_range(&self) -> Option<Range<u64>> {
        self.cold.clone()
    }

    /// Whether `ip` is in the interpreter loop (either part).
    pub fn in_eval(&self, ip: u64) -> bool {
        self.eval.contains(&ip) || self.cold.as_ref().is_some_and(|c| c.contains(&ip))
    }

    /// `process_vm_readv` calls made for this process so far.
    pub fn syscalls(&self) -> u64 {
        self.mem.syscalls()
    }

    /// What the code-object resolver needs.
    pub fn code_reader(&self) -> CodeReader<'_> {
        CodeReader { mem: &self.mem, offsets: &self.offsets, types: self.types }
    }

    /// Every thread state of every interpreter.
    pub fn threads(&self) -> Result<Vec<PyThread>> {
        let o = &self.offsets;
        let mut threads = Vec::new();
        let mut interp = self.read_ptr(self.runtime + u64::from(o.runtime_interpreters_head), "interpreters")?;
        let mut seen = HashSet::new();
        let tstate_len =
            [o.tstate_next, o.tstate_interp, o.tstate_frame, o.tstate_thread_id, o.tstate_native_thread_id]
                .into_iter()
                .max()
                .map_or(8, |m| usize::from(m) + 8);
        while interp != 0 && seen.insert(interp) && seen.len() <= MAX_INTERPRETERS {
            let mut tstate = self.read_ptr(interp + u64::from(o.interp_threads_head), "thread list")?;
            let mut in_interp = 0;
            while tstate != 0 && seen.insert(tstate) && threads.len() < MAX_THREADS {
                // A thread exiting while the list is read can leave a freed
                // state in it: keep the threads found so far. The first one
                // failing means the layout is wrong.
                let raw = match self.mem.read_vec(tstate, tstate_len) {
                    Ok(raw) if raw.u64_at(o.tstate_interp) == interp => raw,
                    Ok(_) if in_interp > 0 => break,
                    Err(_) if in_interp > 0 => break,
                    Ok(_) => anyhow::bail!(
                        "thread state {tstate:#x} does not point back to its interpreter {interp:#x}: \
                         the layout does not match"
                    ),
                    Err(err) => return Err(err).context("failed to read a thread state"),
                };
                in_interp += 1;
                let mut frame = raw.u64_at(o.tstate_frame);
                if o.tstate_frame_is_cframe != 0 && frame != 0 {
                    frame = self.read_ptr(frame + u64::from(o.cframe_current_frame), "current frame")?;
                }
                let native = if o.tstate_native_thread_id != 0 { raw.u64_at(o.tstate_native_thread_id) } else { 0 };
                threads.push(PyThread {
                    tid: u32::try_from(native).ok().filter(|t| *t != 0),
                    pthread: raw.u64_at(o.tstate_thread_id),
                    tstate,
                    interp,
                    frame,
                });
                tstate = raw.u64_at(o.tstate_next);
            }
            interp = self.read_ptr(interp + u64::from(o.interp_next), "next interpreter")?;
        }
        if threads.iter().any(|t| t.tid.is_none()) {
            let threading = self.threading_for(&threads);
            if let Some(off) = threading.tid_offset {
                self.fill_tids(&mut threads, usize::from(off));
            }
        }
        Ok(threads)
    }

    /// The Python frames of `thread`, innermost first.
    pub fn stack(&self, thread: &PyThread) -> Result<Vec<RawFrame>> {
        self.walk(thread.frame)
    }

    /// Walks frames from `frame` (innermost) to the thread's first.
    pub fn walk(&self, mut frame: u64) -> Result<Vec<RawFrame>> {
        let o = &self.offsets;
        let mut frames: Vec<RawFrame> = Vec::new();
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; usize::from(o.frame_size)];
        while frame != 0 && frames.len() < MAX_FRAMES {
            if !seen.insert(frame) {
                break; // a cycle: the stack changed under us
            }
            if let Err(err) = self.mem.read(frame, &mut buf) {
                if frames.is_empty() {
                    return Err(err).context("failed to read the innermost frame");
                }
                break; // the caller's frame went away while we read: keep what we have
            }
            let previous = buf.u64_at(o.frame_previous);
            let code = buf.u64_at(o.frame_code);
            match o.entry_kind {
                PY_ENTRY_SHIM if buf.u8_at(o.frame_entry) == o.owner_cstack => {
                    // The shim ends the previous native call's frames.
                    if let Some(last) = frames.last_mut() {
                        last.entry = true;
                    }
                    frame = previous;
                    continue;
                }
                _ => {}
            }
            let lasti = match o.lasti_kind {
                PY_LASTI_BYTES => (buf.u32_at(o.frame_lasti) as i32).div_euclid(2).max(-1),
                PY_LASTI_CODE_UNITS => buf.u32_at(o.frame_lasti) as i32,
                _ => {
                    let ptr = buf.u64_at(o.frame_lasti);
                    let first = code.wrapping_add(u64::from(o.code_adaptive));
                    (ptr.wrapping_sub(first) as i64 / 2).clamp(-1, i64::from(i32::MAX)) as i32
                }
            };
            let entry = match o.entry_kind {
                PY_ENTRY_EACH_FRAME => true,
                PY_ENTRY_FLAG => buf.u8_at(o.frame_entry) != 0,
                _ => false,
            };
            frames.push(RawFrame { frame, code, lasti, entry });
            frame = previous;
        }
        // The outermost frame ends the outermost native call.
        if let Some(last) = frames.last_mut() {
            last.entry = true;
        }
        Ok(frames)
    }

    /// How to find a thread's state from the kernel's view of it, for the
    /// eBPF program: the key, and where glibc keeps its value. Found by
    /// looking for each thread state in its own thread's `struct pthread`
    /// (glibc's layout is the first guess), so a libc that keeps values
    /// elsewhere (musl) yields `tsd: None` rather than a wrong recipe.
    pub fn threading(&self) -> Result<Threading> {
        let threads = self.threads()?;
        Ok(self.threading_for(&threads))
    }

    /// The map value the eBPF program will use for this process.
    pub fn proc_info(&self) -> Result<PyProcInfo> {
        let threading = self.threading()?;
        let (tsd_data, tsd_stride) = threading.tsd.unwrap_or((0, 0));
        Ok(PyProcInfo {
            runtime: self.runtime,
            eval_start: self.eval.start,
            eval_end: self.eval.end,
            cold_start: self.cold.as_ref().map_or(0, |c| c.start),
            cold_end: self.cold.as_ref().map_or(0, |c| c.end),
            code_type: self.types.code,
            tss_key: match threading.tsd {
                Some(_) => threading.tss_key.unwrap_or(PY_TSS_KEY_UNSET),
                None => PY_TSS_KEY_UNSET,
            },
            tsd_data,
            tsd_stride,
            offsets: self.offsets,
        })
    }

    fn threading_for(&self, threads: &[PyThread]) -> Threading {
        let mut known = match self.threading.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        };
        let complete = known.tsd.is_some() && (known.tid_offset.is_some() || threads.iter().all(|t| t.tid.is_some()));
        if complete || threads.is_empty() {
            return known;
        }
        known.tss_key = known.tss_key.or_else(|| self.tss_key());
        let blocks = self.pthread_blocks(threads);
        if known.tid_offset.is_none() {
            known.tid_offset = self.find_tid_offset(threads, &blocks);
        }
        if known.tsd.is_none() {
            known.tsd = known.tss_key.and_then(|key| find_tsd(threads, &blocks, key));
        }
        if let Ok(mut guard) = self.threading.lock() {
            *guard = known;
        }
        known
    }

    /// `autoTSSkey`'s key, once the interpreter created it.
    fn tss_key(&self) -> Option<u32> {
        let at = self.runtime + u64::from(self.offsets.runtime_tss_key) - 4;
        let raw = self.mem.read_vec(at, 8).ok()?;
        (raw.u32_at(0) == 1).then(|| raw.u32_at(4))
    }

    /// The first [`PTHREAD_SCAN`] bytes of each thread's `struct pthread`.
    fn pthread_blocks(&self, threads: &[PyThread]) -> Vec<Option<Vec<u8>>> {
        let mut bufs = vec![vec![0u8; PTHREAD_SCAN]; threads.len()];
        let mut requests: Vec<(u64, &mut [u8])> =
            threads.iter().zip(bufs.iter_mut()).map(|(t, b)| (t.pthread, &mut b[..])).collect();
        let ok = self.mem.read_many(&mut requests);
        bufs.into_iter().zip(ok).map(|(b, ok)| ok.then_some(b)).collect()
    }

    /// The offset in `struct pthread` at which every thread holds a distinct
    /// live thread id of this process: glibc's if it fits, else the first.
    fn find_tid_offset(&self, threads: &[PyThread], blocks: &[Option<Vec<u8>>]) -> Option<u16> {
        let tasks = task_ids(self.pid);
        let fits = |off: usize| {
            let mut ids = HashSet::new();
            let read: Vec<u32> = blocks.iter().flatten().map(|b| b.u32_at(off as u16)).collect();
            !read.is_empty() && read.iter().all(|id| tasks.contains(id) && ids.insert(*id))
        };
        if threads.is_empty() {
            return None;
        }
        std::iter::once(GLIBC_TID).chain((0..PTHREAD_SCAN - 4).step_by(4)).find(|&off| fits(off)).map(|o| o as u16)
    }

    fn fill_tids(&self, threads: &mut [PyThread], offset: usize) {
        let mut bufs = vec![[0u8; 4]; threads.len()];
        let mut requests: Vec<(u64, &mut [u8])> = threads
            .iter()
            .zip(bufs.iter_mut())
            .map(|(t, b)| (t.pthread.wrapping_add(offset as u64), &mut b[..]))
            .collect();
        let ok = self.mem.read_many(&mut requests);
        let tasks = task_ids(self.pid);
        for ((thread, buf), ok) in threads.iter_mut().zip(bufs).zip(ok) {
            let tid = u32::from_ne_bytes(buf);
            if thread.tid.is_none() && ok && tasks.contains(&tid) {
                thread.tid = Some(tid);
            }
        }
    }

    fn read_ptr(&self, addr: u64, what: &str) -> Result<u64> {
        self.mem.read_u64(addr).with_context(|| format!("failed to read the {what} pointer"))
    }
}

/// Where `pthread_getspecific(key)` finds each thread's state: the offset
/// `d` with `*(pthread + d + stride × key) == tstate` for every thread whose
/// slot is set, with glibc's stride; glibc's offset first.
fn find_tsd(threads: &[PyThread], blocks: &[Option<Vec<u8>>], key: u32) -> Option<(u16, u16)> {
    if key >= TSD_INLINE_KEYS {
        return None; // glibc keeps keys ≥ 32 in separately allocated blocks
    }
    let stride = GLIBC_TSD_STRIDE;
    let base = |data: usize| data + stride * key as usize;
    let fits = |data: usize| {
        let mut matched = 0;
        for (t, block) in threads.iter().zip(blocks) {
            let Some(block) = block else { continue };
            match block.u64_at(base(data) as u16) {
                v if v == t.tstate => matched += 1,
                0 => {} // a thread state not bound to its thread (yet)
                _ => return false,
            }
        }
        matched > 0
    };
    std::iter::once(GLIBC_TSD_DATA)
        .chain((0..PTHREAD_SCAN).step_by(8))
        .filter(|&d| base(d) + 8 <= PTHREAD_SCAN)
        .find(|&d| fits(d))
        .map(|d| (d as u16, stride as u16))
}

fn task_ids(pid: u32) -> HashSet<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// File mappings grouped by file, those that may hold CPython first: the
/// executable, then files named like Python.
fn candidates(maps: &[Mapping], exe_inode: Option<u64>) -> Vec<Vec<&Mapping>> {
    let mut groups: Vec<Vec<&Mapping>> = Vec::new();
    for m in maps.iter().filter(|m| m.is_file()) {
        match groups.iter_mut().find(|g| g[0].inode == m.inode && g[0].path == m.path) {
            Some(group) => group.push(m),
            None => groups.push(vec![m]),
        }
    }
    // Only files whose code is mapped (a process that merely reads a
    // libpython with `mmap`, as a backup or a symbolizer does, runs no
    // Python), and only the executable or files named like Python.
    groups.retain(|g| {
        g.iter().any(|m| m.executable) && (exe_inode == Some(g[0].inode) || version_from_name(&g[0].path).is_some())
    });
    groups.sort_by_key(|g| exe_inode != Some(g[0].inode));
    groups
}

/// Reads the Python facts of a mapped file. An executable not named like
/// Python is only parsed when its dynamic string table names `_PyRuntime`
/// (a static build exports it for extension modules), so checking every
/// process of a host costs a scan of one small section each.
fn inspect(pid: u32, mapping: &Mapping) -> Result<PyElf> {
    let file = mapping.open(pid)?;
    // SAFETY: the mapping is read-only and private; a file truncated while
    // mapped could fault, which the interpreter's file (open by a running
    // process) is not.
    let data = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("failed to map `{}`", mapping.path))?;
    if version_from_name(&mapping.path).is_none() && !super::elf::mentions_runtime(&data) {
        return Ok(PyElf::default());
    }
    PyElf::parse(&data).with_context(|| format!("failed to read `{}`", mapping.path))
}

/// `(version, build suffix)` from `python3.11`, `python3.13t`,
/// `libpython3.9d.so.1.0`, …
fn version_from_name(path: &str) -> Option<(PyVersion, String)> {
    let base = path.rsplit('/').next()?;
    let rest = base.strip_prefix("lib").unwrap_or(base).strip_prefix("python")?;
    let rest = match rest.find(".so") {
        Some(i) if base.starts_with("lib") => &rest[..i],
        None if !base.starts_with("lib") => rest,
        _ => return None,
    };
    let (major, rest) = rest.split_once('.')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (minor, suffix) = rest.split_at(digits);
    if !suffix.bytes().all(|b| b.is_ascii_lowercase()) || suffix.len() > 2 {
        return None;
    }
    Some((PyVersion { major: major.parse().ok()?, minor: minor.parse().ok()?, micro: None }, suffix.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libpython_mapped_without_exec_is_no_candidate() {
        let maps = super::super::maps::parse_maps(
            "\
7f0000000000-7f0000400000 r--p 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0
7f1000000000-7f1000001000 r--p 00000000 fd:01 98 /usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0
7f1000001000-7f1000002000 r-xp 00001000 fd:01 98 /usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0
",
        );
        let groups = candidates(&maps, None);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert!(groups[0][0].path.ends_with("libpython3.9.so.1.0"));
    }

    #[test]
    fn versions_from_file_names() {
        let v = |major, minor| PyVersion { major, minor, micro: None };
        assert_eq!(version_from_name("/usr/bin/python3.11"), Some((v(3, 11), String::new())));
        assert_eq!(version_from_name("/x/lib/libpython3.9.so.1.0"), Some((v(3, 9), String::new())));
        assert_eq!(version_from_name("/x/libpython3.13t.so.1.0"), Some((v(3, 13), "t".into())));
        assert_eq!(version_from_name("/x/libpython3.6m.so"), Some((v(3, 6), "m".into())));
        assert_eq!(version_from_name("/usr/bin/python3.12d"), Some((v(3, 12), "d".into())));
        for other in ["/usr/bin/python3", "/usr/bin/python", "/x/libpython3.so", "/x/python3.11-config", "/x/bash"] {
            assert_eq!(version_from_name(other), None, "{other}");
        }
    }

    #[test]
    fn unsupported_frames_name_the_version() {
        let u = Unsupported {
            pid: 7,
            path: "/usr/bin/python3.14".into(),
            version: Some(PyVersion { major: 3, minor: 14, micro: Some(0) }),
            reason: "supported versions are 3.8 to 3.13".into(),
        };
        assert_eq!(u.frame_name(), "[python 3.14: unsupported]");
        assert_eq!(
            u.note(),
            "pid 7: python 3.14.0 in `/usr/bin/python3.14` is not supported: supported versions are 3.8 to 3.13"
        );
        assert_eq!(Unsupported { version: None, ..u }.frame_name(), "[python: unsupported]");
    }

    #[test]
    fn tsd_is_found_where_every_bound_thread_keeps_its_state() {
        let thread = |tstate| PyThread { tid: None, pthread: 0, tstate, interp: 0, frame: 0 };
        let threads = [thread(0xaaa0), thread(0xbbb0), thread(0xccc0)];
        let key = 2;
        let block = |value: u64| {
            let mut b = vec![0u8; PTHREAD_SCAN];
            let at = GLIBC_TSD_DATA + GLIBC_TSD_STRIDE * key;
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
            Some(b)
        };
        // The third thread's slot is not set yet: it neither helps nor hurts.
        let blocks = [block(0xaaa0), block(0xbbb0), block(0)];
        assert_eq!(find_tsd(&threads, &blocks, key as u32), Some((0x318, 16)));
        // A slot holding another value rules the offset out.
        let blocks = [block(0xaaa0), block(0x1234), None];
        assert_eq!(find_tsd(&threads, &blocks, key as u32), None);
        assert_eq!(find_tsd(&threads, &[block(0xaaa0), None, None], 40), None);
    }
}
