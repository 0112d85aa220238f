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
/// Snapshots checked for a live process when the cap is reached.
const MAKE_ROOM_TRIES: usize = 16;

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

    fn duplicate(&self) -> Self {
        Self {
            start_time: self.start_time,
            exe: self.exe,
            taken: self.taken,
            maps: self.maps.clone(),
            pins: self.pins.clone(),
            perf_map: self.perf_map.as_ref().and_then(|f| f.try_clone().ok()),
        }
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
    /// At [`MAX_SNAPSHOTS`] with no live process's snapshot to give up.
    full: bool,
    /// Snapshots of processes whose pid another process took since, by
    /// (pid, start time): the flight recorder's older samples name them.
    retired: HashMap<(Pid, u64), Snapshot>,
    /// Pids made up by [`Processes::instance`], dropped after the profile.
    aliases: Vec<Pid>,
}

/// Made-up pids start here, above any real one (the kernel's
/// `PID_MAX_LIMIT` is 2^22): a process whose pid was reused is symbolized
/// under one, from its snapshot, never from the new process's mappings.
const ALIAS_BASE: u32 = 1 << 22;

/// What [`Processes::observe`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observed {
    /// No such process any more (or not readable).
    Gone,
    /// Seen before, the same program.
    Known,
    /// A process not seen before.
    New,
    /// Another program than the one seen before under this pid: a new
    /// process that reused it, or an `execve`.
    Replaced,
}

impl Processes {
    pub(super) fn len(&self) -> usize {
        self.snapshots.len() + self.retired.len()
    }

    pub(super) fn pinned_files(&self) -> usize {
        self.pinned.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Snapshots `pid` unless it is known already (same start time and
    /// executable, snapshot not stale); for a known JIT process, opens its
    /// perf map once it exists. Says what it found, so the caller's other
    /// per-process state can follow (a reused pid is a new process).
    ///
    /// Cheap for what a busy host mostly offers: a process that is gone by
    /// the time it is observed costs one failed `/proc` open, and past the
    /// cap a new process costs nothing until snapshots are forgotten.
    pub(super) fn observe(&mut self, pid: Pid) -> Observed {
        let Some(start_time) = stat::start_time(pid) else { return Observed::Gone };
        let exe = exe_key(pid);
        // Same start time and executable: the same program (an `execve`
        // keeps the pid and start time, and replaces every mapping). A
        // zombie's executable cannot be read: still the same program.
        let same =
            self.snapshots.get(&pid).map(|s| s.start_time == Some(start_time) && (exe.is_none() || s.exe == exe));
        let outcome = match same {
            Some(true) => Observed::Known,
            Some(false) => Observed::Replaced,
            None => Observed::New,
        };
        if let Some(snapshot) = self.snapshots.get_mut(&pid).filter(|_| same == Some(true)) {
            if snapshot.taken.elapsed() < REFRESH {
                if snapshot.perf_map.is_none() && snapshot.has_anonymous_code() {
                    snapshot.perf_map = open_perf_map(pid);
                }
                return outcome;
            }
        }
        if same == Some(false) {
            // Kept for the samples the earlier process left (another
            // program now: a reused pid; an `execve` keeps the start time,
            // and its old mappings are of no use).
            if let Some(old) = self.snapshots.remove(&pid) {
                if let Some(old_start) = old.start_time.filter(|&t| t != start_time) {
                    self.retired.insert((pid, old_start), old);
                }
            }
        }
        if !self.snapshots.contains_key(&pid) && self.len() >= MAX_SNAPSHOTS && !self.make_room() {
            self.note_cap("processes");
            return outcome;
        }
        // Kernel threads and zombies have no mappings: nothing to keep.
        let Some(maps) = read_maps(pid).filter(|m| !m.is_empty()) else { return outcome };
        let mut pins = HashMap::new();
        for entry in maps.iter().filter(|m| m.is_file()) {
            if let Some(pin) = self.pin(pid, entry) {
                pins.insert(entry.start, pin);
            }
        }
        let perf_map = if maps.iter().any(|m| m.path.is_empty()) { open_perf_map(pid) } else { None };
        self.snapshots
            .insert(pid, Snapshot { start_time: Some(start_time), exe, taken: Instant::now(), maps, pins, perf_map });
        outcome
    }

    fn pin(&mut self, pid: Pid, entry: &MapsEntry) -> Option<Arc<PinnedFile>> {
        // A pinned file is held open, so its inode number cannot have been
        // given to another file since: the same (device, inode) is the same
        // file, no `statx` needed.
        if let Some(pin) = self.pinned.get(&entry.file_id()).and_then(Weak::upgrade) {
            return Some(pin);
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
    /// `/proc` still describes); false if none of the oldest
    /// [`MAKE_ROOM_TRIES`] is. Once that fails, no more tries (each is a
    /// `/proc` lookup) until [`Self::forget_exited_unless`] frees slots.
    fn make_room(&mut self) -> bool {
        if self.full {
            return false;
        }
        let mut oldest: Vec<(Instant, Pid)> = self.snapshots.iter().map(|(&pid, s)| (s.taken, pid)).collect();
        let tries = MAKE_ROOM_TRIES.min(oldest.len());
        if tries > 0 {
            oldest.select_nth_unstable(tries - 1);
        }
        let live = oldest[..tries].iter().map(|&(_, pid)| pid).find(|&pid| process::exists(pid));
        match live {
            Some(pid) => self.snapshots.remove(&pid).is_some(),
            None => {
                self.full = true;
                false
            }
        }
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
        self.retired.retain(|&(pid, _), _| keep(pid));
        self.pinned.retain(|_, w| w.strong_count() > 0);
        self.capped = false;
        self.full = false;
    }
}

impl Processes {
    /// The pid to symbolize the samples of process `pid` started at `start`
    /// (clock ticks since boot; 0: unknown, taken as `pid`) under: `pid`
    /// itself while that is the process `/proc` or the snapshot describes,
    /// else a made-up pid holding the earlier process's snapshot (none if
    /// it never had one: its frames then keep only addresses, rather than
    /// being named from another process's mappings). Call
    /// [`Self::drop_aliases`] once the profile is built.
    pub(super) fn instance(&mut self, pid: Pid, start: u64) -> Pid {
        if start == 0 {
            return pid;
        }
        let live = stat::start_time(pid);
        if live == Some(start) {
            return pid;
        }
        let current = self.snapshots.get(&pid).filter(|s| s.start_time == Some(start));
        if live.is_none() && current.is_some() {
            return pid;
        }
        let snapshot = current.or_else(|| self.retired.get(&(pid, start))).map(Snapshot::duplicate);
        let alias = Pid::new(ALIAS_BASE + u32::try_from(self.aliases.len()).unwrap_or(u32::MAX - ALIAS_BASE));
        self.aliases.push(alias);
        if let Some(snapshot) = snapshot {
            self.snapshots.insert(alias, snapshot);
        }
        alias
    }

    /// Forgets the pids [`Self::instance`] made up.
    pub(super) fn drop_aliases(&mut self) {
        for alias in std::mem::take(&mut self.aliases) {
            self.snapshots.remove(&alias);
        }
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
    pub blaze: &'a mut Blaze,
    pub objects: &'a mut ObjectCache,
    pub processes: &'a mut Processes,
    pub debug_dirs: &'a [PathBuf],
    /// [`SymbolizerConfig::release_parsed`](super::SymbolizerConfig::release_parsed).
    pub release_parsed: bool,
}

/// The addresses of one process placed in their mappings by
/// [`Context::locate`]; [`Context::name`] and [`Context::finish`] fill in
/// their names.
pub(super) struct Located {
    pub pid: Pid,
    /// One per address, in the order of the addresses.
    pub resolved: Vec<Resolved>,
    alive: bool,
    /// The addresses in the vDSO.
    vdso: Vec<usize>,
}

/// The file offsets to name in each object, over all the processes of a
/// profile: an object shared by many processes (libc, an interpreter) is
/// asked once, and its parsed debug info can be let go before the next
/// object is parsed.
#[derive(Default)]
pub(super) struct Batch {
    /// Object → (index of the process in the `Located` list, index of the
    /// address, file offset).
    by_object: HashMap<ObjectId, Vec<(usize, usize, FileOffset)>>,
}

impl Context<'_> {
    /// Places `addrs` (sorted) of process `pid` in their mappings and
    /// queues the offsets of file-backed ones in `batch` under `slot`, the
    /// index the returned value will have in the list given to
    /// [`Self::name`].
    pub(super) fn locate(&mut self, pid: Pid, addrs: &[u64], slot: usize, batch: &mut Batch) -> Located {
        let mut resolved = vec![Resolved::default(); addrs.len()];
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
            resolved[i].mapping = Some(entry.clone());
            groups.entry((from_live, entry.start)).or_default().push(i);
        }
        let mut vdso = Vec::new();
        for ((from_live, _), indices) in groups {
            let Some(entry) = resolved[indices[0]].mapping.clone() else { continue };
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
            let queue = batch.by_object.entry(object).or_default();
            queue.extend(indices.into_iter().map(|i| (slot, i, entry.file_offset(addrs[i]))));
        }
        Located { pid, resolved, alive, vdso }
    }

    /// Names the offsets `batch` queued, one object at a time, each
    /// distinct offset once. With [`Self::release_parsed`], an object's
    /// parsed debug info is dropped as soon as its offsets are named, so a
    /// profile's peak memory is that of its largest object rather than of
    /// all of them together.
    pub(super) fn name(&mut self, batch: Batch, located: &mut [Located]) {
        // In a stable order (object ids follow first use).
        let mut objects: Vec<_> = batch.by_object.into_iter().collect();
        objects.sort_unstable_by_key(|(id, _)| *id);
        for (object, queue) in objects {
            let mut offsets: Vec<FileOffset> = queue.iter().map(|&(_, _, o)| o).collect();
            offsets.sort_unstable();
            offsets.dedup();
            let lines = self.objects.symbolize(self.blaze, object, &offsets);
            let build_id = self.objects.build_id(object);
            for (slot, i, offset) in queue {
                let Ok(at) = offsets.binary_search(&offset) else { continue };
                let r = &mut located[slot].resolved[i];
                r.lines.clone_from(&lines[at]);
                r.build_id.clone_from(&build_id);
            }
            if self.release_parsed {
                self.objects.release_parsed(self.blaze, object);
            }
        }
    }

    /// Names what [`Self::name`] could not: vDSO addresses and JIT code
    /// (from the process's perf map).
    pub(super) fn finish(&mut self, addrs: &[u64], located: &mut Located) {
        let Located { pid, resolved, alive, vdso } = located;
        self.resolve_vdso(*pid, addrs, vdso, resolved);
        self.resolve_jit(*pid, *alive, addrs, resolved);
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
