//! User-space addresses of one process: which mapping holds each, which
//! object that mapping is, and what the object (or the JIT's perf map) calls
//! it. Also the snapshots that let a process be symbolized after it exits.
//!
//! A short-lived process is gone, `/proc/<pid>` and all, by the time the
//! capture ends. [`Processes::observe`], called while sampling for every
//! process seen in the sample map, records its executable mappings, opens
//! (pins) the files behind them and its perf map. At the end a live process
//! is read afresh (it may have loaded libraries since) and a gone one from
//! its snapshot. Snapshots and pinned files are capped: past the caps a
//! process is not pinned and, should it exit, its frames keep only their
//! module and offset.

use std::{
    collections::HashMap,
    fs::File,
    path::PathBuf,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use blazesym::{
    symbolize::{
        source::{Process, Source},
        Input,
    },
    Pid as BlazePid,
};
use tracing::debug;

use super::{
    objects::{Blaze, ObjectCache, ObjectId},
    perfmap::{perf_map_path, PerfMap},
    sym_lines,
};
use crate::addr::FileOffset;
use crate::ids::Pid;
use crate::objfile::debuginfo::DebugSearch;
use crate::procfs::pins::{exe_key, mapped_file_key, open_mapped_file};
use crate::procfs::{
    maps::{find_mapping, read_maps, MapsEntry},
    process, stat, status,
};
use crate::profile::Line;
use crate::sys::file::{FileId, FileKey, PinnedFile};

/// Processes with a snapshot at most.
pub(super) const MAX_SNAPSHOTS: usize = 4096;
/// Distinct files pinned by snapshots at most (each costs a descriptor).
pub(super) const MAX_PINNED_FILES: usize = 2048;
/// A live process's snapshot is retaken after this long, to catch libraries
/// loaded (and code generated) since: one `maps` read per process.
const REFRESH: Duration = Duration::from_secs(10);

/// What a process looked like when it was observed.
struct Snapshot {
    start_time: Option<u64>,
    /// The executable's identity: an `execve` keeps the pid and start
    /// time but replaces every mapping.
    exe: Option<FileKey>,
    taken: Instant,
    maps: Vec<MapsEntry>,
    /// Pinned files by mapping start.
    pins: HashMap<u64, Arc<PinnedFile>>,
    perf_map: Option<File>,
}

impl Snapshot {
    fn has_anonymous_code(&self) -> bool {
        self.maps.iter().any(|m| m.path.is_empty())
    }
}

/// Snapshots of observed processes (see the module docs).
#[derive(Default)]
pub(super) struct Processes {
    snapshots: HashMap<Pid, Snapshot>,
    /// Open files by identity, shared by the snapshots that map them.
    pinned: HashMap<FileId, Weak<PinnedFile>>,
    /// Whether hitting a cap was logged already.
    capped: bool,
}

impl Processes {
    pub(super) fn len(&self) -> usize {
        self.snapshots.len()
    }

    pub(super) fn pinned_files(&self) -> usize {
        self.pinned.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Snapshots `pid` unless it is known already (same start time and
    /// executable, snapshot not stale); for a known JIT process, opens its
    /// perf map once it exists.
    pub(super) fn observe(&mut self, pid: Pid) {
        let start_time = stat::start_time(pid);
        let exe = exe_key(pid);
        if let Some(snapshot) = self.snapshots.get_mut(&pid) {
            if snapshot.start_time == start_time && snapshot.exe == exe && snapshot.taken.elapsed() < REFRESH {
                if snapshot.perf_map.is_none() && snapshot.has_anonymous_code() {
                    snapshot.perf_map = open_perf_map(pid);
                }
                return;
            }
        }
        if !self.snapshots.contains_key(&pid) && self.snapshots.len() >= MAX_SNAPSHOTS && !self.make_room() {
            self.note_cap("processes");
            return;
        }
        // Kernel threads have no mappings: nothing to keep.
        let Some(maps) = read_maps(pid).filter(|m| !m.is_empty()) else { return };
        let mut pins = HashMap::new();
        for entry in maps.iter().filter(|m| m.is_file()) {
            if let Some(pin) = self.pin(pid, entry) {
                pins.insert(entry.start, pin);
            }
        }
        let perf_map = if maps.iter().any(|m| m.path.is_empty()) { open_perf_map(pid) } else { None };
        self.snapshots.insert(pid, Snapshot { start_time, exe, taken: Instant::now(), maps, pins, perf_map });
    }

    fn pin(&mut self, pid: Pid, entry: &MapsEntry) -> Option<Arc<PinnedFile>> {
        if let Some(pin) = self.pinned.get(&entry.file_id()).and_then(Weak::upgrade) {
            // The same inode number may have been recycled for a new file.
            if mapped_file_key(pid, entry).is_none_or(|key| key == pin.key) {
                return Some(pin);
            }
        }
        if self.pinned.len() >= MAX_PINNED_FILES {
            self.pinned.retain(|_, w| w.strong_count() > 0);
            if self.pinned.len() >= MAX_PINNED_FILES {
                self.note_cap("files");
                return None;
            }
        }
        let pin = Arc::new(open_mapped_file(pid, entry)?);
        self.pinned.insert(entry.file_id(), Arc::downgrade(&pin));
        Some(pin)
    }

    /// Frees a slot by dropping the snapshot of a live process (which
    /// `/proc` still describes); false if every snapshot is of a dead one.
    fn make_room(&mut self) -> bool {
        let live = self.snapshots.keys().copied().find(|&pid| process::exists(pid));
        live.is_some_and(|pid| self.snapshots.remove(&pid).is_some())
    }

    fn note_cap(&mut self, what: &str) {
        if !self.capped {
            self.capped = true;
            debug!("too many {what} to pin; processes that exit from now on may stay unnamed");
        }
    }

    /// Drops the snapshots of processes that have exited (or whose pid was
    /// reused), and the files only they kept open.
    pub(super) fn forget_exited(&mut self) {
        self.forget_exited_unless(|_| false);
    }

    /// [`Processes::forget_exited`], keeping the snapshots of the pids `keep` names.
    pub(super) fn forget_exited_unless(&mut self, keep: impl Fn(Pid) -> bool) {
        self.snapshots.retain(|&pid, s| keep(pid) || (s.start_time.is_some() && stat::start_time(pid) == s.start_time));
        self.pinned.retain(|_, w| w.strong_count() > 0);
        self.capped = false;
    }
}

fn open_perf_map(pid: Pid) -> Option<File> {
    let status = status::read(pid).ok()?;
    File::open(perf_map_path(pid, status::ns_pid(&status)?)).ok()
}

/// What one address resolved to.
#[derive(Clone, Debug, Default)]
pub(super) struct Resolved {
    pub mapping: Option<MapsEntry>,
    pub build_id: Option<String>,
    /// Innermost first; `None` if nothing names the address.
    pub lines: Option<Vec<Line>>,
}

/// What symbolizing a process needs.
pub(super) struct Context<'a> {
    pub blaze: &'a Blaze,
    pub objects: &'a mut ObjectCache,
    pub processes: &'a mut Processes,
    pub debug_dirs: &'a [PathBuf],
}

impl Context<'_> {
    /// Resolves `addrs` (sorted) of process `pid`.
    pub(super) fn resolve(&mut self, pid: Pid, addrs: &[u64]) -> Vec<Resolved> {
        let mut out = vec![Resolved::default(); addrs.len()];
        let live = read_maps(pid).unwrap_or_default();
        let alive = !live.is_empty();
        // The snapshot's mappings and pins (clones of `Arc`s: `self` is
        // borrowed mutably below).
        let (snap_maps, snap_pins) = match self.processes.snapshots.get(&pid) {
            Some(s) => (s.maps.clone(), s.pins.clone()),
            None => (Vec::new(), HashMap::new()),
        };
        // Mapping of each address: live first, then the snapshot's.
        let mut groups: HashMap<(bool, u64), Vec<usize>> = HashMap::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let (from_live, entry) = match find_mapping(&live, addr) {
                Some(m) => (true, m),
                None => match find_mapping(&snap_maps, addr) {
                    Some(m) => (false, m),
                    None => continue,
                },
            };
            out[i].mapping = Some(entry.clone());
            groups.entry((from_live, entry.start)).or_default().push(i);
        }
        let mut vdso = Vec::new();
        for ((from_live, _), indices) in groups {
            let Some(entry) = out[indices[0]].mapping.clone() else { continue };
            if entry.path == "[vdso]" {
                vdso.extend(indices);
                continue;
            }
            if !entry.is_file() {
                continue;
            }
            // The file pinned when the process was observed, if it is still
            // the one mapped there (saves reopening it).
            let pin = snap_pins.get(&entry.start).filter(|p| p.key.id == entry.file_id()).cloned();
            let Some(object) = self.object(pid, &entry, alive && from_live, pin) else { continue };
            let offsets: Vec<FileOffset> = indices.iter().map(|&i| entry.file_offset(addrs[i])).collect();
            let lines = self.objects.symbolize(self.blaze, object, &offsets);
            let build_id = self.objects.build_id(object);
            for (i, lines) in indices.into_iter().zip(lines) {
                out[i].lines = lines;
                out[i].build_id.clone_from(&build_id);
            }
        }
        self.resolve_vdso(pid, addrs, &vdso, &mut out);
        self.resolve_jit(pid, alive, addrs, &mut out);
        out
    }

    /// The cached object of a mapping, opening and parsing it if needed.
    fn object(&mut self, pid: Pid, entry: &MapsEntry, live: bool, pin: Option<Arc<PinnedFile>>) -> Option<ObjectId> {
        // A live process's mapping is checked afresh (one `stat`): the
        // pinned file may have been replaced since.
        let key = match &pin {
            _ if live => mapped_file_key(pid, entry).or(pin.as_ref().map(|p| p.key)),
            Some(pin) => Some(pin.key),
            None => return None,
        };
        if let Some(id) = key.and_then(|k| self.objects.lookup(&k)) {
            return Some(id);
        }
        let pin = match pin.filter(|p| Some(p.key) == key) {
            Some(pin) => pin,
            None if live => Arc::new(open_mapped_file(pid, entry)?),
            None => return None,
        };
        if let Some(id) = self.objects.lookup(&pin.key) {
            return Some(id);
        }
        let search = DebugSearch {
            process_root: live.then(|| process::root(pid)),
            binary_path: entry.clean_path(),
            extra_dirs: self.debug_dirs,
        };
        Some(self.objects.insert(pin, &search))
    }

    /// vDSO code is the same image in every process (of one architecture):
    /// its addresses are named through this process's own vDSO, which
    /// works even after the target has exited.
    fn resolve_vdso(&mut self, pid: Pid, addrs: &[u64], indices: &[usize], out: &mut [Resolved]) {
        let Some(own) = indices.first().and_then(|_| own_vdso_start()) else { return };
        let own_addrs: Vec<u64> =
            indices.iter().filter_map(|&i| Some(own + (addrs[i] - out[i].mapping.as_ref()?.start))).collect();
        let mut process = Process::new(BlazePid::Slf);
        process.perf_map = false;
        process.debug_syms = false;
        match self.blaze.0.symbolize(&Source::Process(process), Input::AbsAddr(&own_addrs)) {
            Ok(results) => {
                for (&i, sym) in indices.iter().zip(&results) {
                    out[i].lines = sym.as_sym().map(sym_lines);
                }
            }
            Err(e) => debug!(pid = pid.get(), "vdso symbolization failed: {e}"),
        }
    }

    /// Addresses outside any file's code, or in files that are not ELF
    /// (a JIT's memfd), are looked up in the process's perf map.
    fn resolve_jit(&mut self, pid: Pid, alive: bool, addrs: &[u64], out: &mut [Resolved]) {
        let wanted = |r: &Resolved| r.lines.is_none() && r.mapping.as_ref().is_none_or(|m| m.path != "[vdso]");
        if !out.iter().any(wanted) {
            return;
        }
        let live_map = alive.then(|| open_perf_map(pid)).flatten();
        let snapshot = self.processes.snapshots.get_mut(&pid);
        let mut file = match (live_map, snapshot.and_then(|s| s.perf_map.as_ref()).and_then(|f| f.try_clone().ok())) {
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => return,
        };
        let map = match PerfMap::read(&mut file) {
            Ok(map) => map,
            Err(e) => {
                debug!(pid = pid.get(), "failed to read the perf map: {e}");
                return;
            }
        };
        debug!(pid = pid.get(), entries = map.len(), "perf map");
        for (r, &addr) in out.iter_mut().zip(addrs) {
            if wanted(r) {
                if let Some(name) = map.find(addr) {
                    r.lines = Some(vec![Line { function: name.to_owned(), file: None, line: None }]);
                }
            }
        }
    }
}

fn own_vdso_start() -> Option<u64> {
    let maps = read_maps(Pid::current())?;
    maps.iter().find(|m| m.path == "[vdso]").map(|m| m.start)
}
