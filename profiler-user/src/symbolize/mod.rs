//! Names the addresses of an [`Aggregate`] and builds the [`Profile`].
//!
//! One long-lived [`Symbolizer`] (one per `watch` daemon, shared by its
//! captures) does the work:
//! - user frames: each address's mapping is read from `/proc/<pid>/maps`
//!   (or, for a process that has exited, from the snapshot taken by
//!   [`Symbolizer::observe_pids`] while it ran), its file opened through
//!   `/proc/<pid>/map_files` (containers, deleted binaries) and symbolized
//!   by the object cache ([`objects`]): DWARF with inlined frames, separate
//!   debug files, Go's `.gopclntab`, ELF symbols; code outside any file
//!   (JIT) through the process's perf map;
//! - kernel frames by the kernel itself ([`in_kernel`]), or through
//!   `/proc/kallsyms` where it cannot ([`kallsyms`]).
//!
//! An address nothing names keeps its module and file offset
//! (`libfoo.so+0x1a2b`) instead of disappearing.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use blazesym::symbolize::{CodeInfo, Symbolizer as BlazeSymbolizer};
use tracing::{debug, warn};

mod in_kernel;
mod kallsyms;
mod objects;
mod perfmap;
mod python;
mod user;

pub(crate) use objects::CacheBudget;
pub use objects::CacheStats;

/// The outermost frame of a user stack the unwinder could not finish.
pub(crate) const TRUNCATED_FRAME: &str = "[truncated]";

use crate::{
    aggregate::{Aggregate, Frames, RawSample},
    ids::Pid,
    objfile::buildid::kernel_build_id,
    procfs::maps::MapsEntry,
    profile::{Line, Location, Mapping, Profile, Sample},
    sys::views::Paging,
};
use objects::{Blaze, ObjectCache};
use python::{PythonFrames, Slot};
use user::{Batch, Context, Located, Observed, Processes, Resolved};

/// Where the tables keep kernel locations: no process has pid 0 (the
/// kernel's idle tasks, never sampled).
const KERNEL: Pid = Pid::new(0);

/// Path recorded for the kernel's mapping, as perf names it.
pub(crate) const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// Colon-separated directories searched for separate debug files (before
/// `/usr/lib/debug`), e.g. a symbol store or an unpacked `-dbgsym` package.
pub(crate) const DEBUG_DIRS_ENV: &str = "STACKWATCH_DEBUG_DIRS";

/// How a [`Symbolizer`] searches and caches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolizerConfig {
    /// Searched first for separate debug files (`.build-id/xx/….debug` and
    /// debuglink names), then the process's and the host's `/usr/lib/debug`.
    pub debug_dirs: Vec<PathBuf>,
    pub budget: CacheBudget,
    /// Drop each object's parsed debug info (blazesym's DWARF indexes,
    /// line rows, symbol tables) as soon as a profile's addresses in it are
    /// named, instead of keeping it for the next profile: for a command
    /// that builds its profiles and exits (`record`), whose peak memory is
    /// then that of the largest object, not the sum of all (a whole-host
    /// capture: −3 to −4 MiB). A daemon keeps them (its next capture
    /// reuses them, within [`CacheBudget`]).
    pub release_parsed: bool,
}

impl SymbolizerConfig {
    /// Defaults, with debug directories from [`DEBUG_DIRS_ENV`].
    pub fn from_env() -> Self {
        let debug_dirs = std::env::var_os(DEBUG_DIRS_ENV)
            .map(|v| std::env::split_paths(&v).filter(|p| p.is_absolute()).collect())
            .unwrap_or_default();
        Self { debug_dirs, ..Default::default() }
    }
}

/// Counters for benchmarks and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymbolizerStats {
    pub cache: CacheStats,
    /// Processes with a snapshot, and the files their snapshots hold open.
    pub snapshots: usize,
    pub pinned_files: usize,
    /// Resident bytes of file views this process has given back so far
    /// ([`crate::sys::views`]): while naming and after every profile.
    pub released_view_bytes: u64,
}

/// The long-lived symbolizer (see the module docs). `Send`, so a daemon
/// can move it into the blocking task that writes a capture and back.
pub struct Symbolizer {
    blaze: Blaze,
    objects: ObjectCache,
    processes: Processes,
    debug_dirs: Vec<PathBuf>,
    kernel_build_id: Option<Option<String>>,
    /// Whether the "cannot read kallsyms" warning was given (once per
    /// symbolizer: the daemon's lives for many captures).
    kallsyms_warned: bool,
    python: PythonFrames,
    release_parsed: bool,
    /// The kernel's own naming of kernel addresses ([`in_kernel`]),
    /// loaded when first needed.
    kernel_names: InKernel,
    /// The capture's index of kernel symbols, read while it runs
    /// ([`Self::prefetch_kernel_symbols`]) where the kernel cannot name
    /// them itself.
    kernel_symbols: KernelSymbols,
}

/// Whether the kernel names kernel addresses itself ([`in_kernel`]).
enum InKernel {
    Untried,
    Loaded(in_kernel::KernelNames),
    /// Refused (kernel older than 5.14, privileges, a security module):
    /// kernel frames are named from kallsyms.
    Unavailable,
}

/// Whether the kernel can name kernel addresses itself here ([`in_kernel`]:
/// the program loads and runs), for `doctor`.
pub(crate) fn kernel_names_probe() -> std::io::Result<()> {
    in_kernel::KernelNames::load()?.resolve(&[0]).map(drop)
}

/// Where a capture's kernel symbols stand.
#[derive(Default)]
enum KernelSymbols {
    /// Not read: kernel frames are named in one pass of kallsyms.
    #[default]
    None,
    Reading(kallsyms::Prefetch),
    Ready(kallsyms::CodeGeneration, kallsyms::KernelIndex),
}

/// Where kernel frames are named from.
const KALLSYMS: &str = "/proc/kallsyms";

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the profile's tables while samples are translated.
struct Tables {
    profile: Profile,
    /// (pid, or [`KERNEL`] for the kernel, address) → location index.
    locations: HashMap<(Pid, u64), usize>,
    /// (pid, or [`KERNEL`], mapping start) → mapping index.
    mappings: HashMap<(Pid, u64), usize>,
    /// Placeholder locations (lost/missing stacks) by name.
    placeholders: HashMap<&'static str, usize>,
    /// Python frames: one location per function and line.
    python: HashMap<python::PyName, usize>,
}

impl Tables {
    fn python_location(&mut self, name: &python::PyName) -> usize {
        if let Some(&i) = self.python.get(name) {
            return i;
        }
        let i = self.profile.locations.len();
        self.profile.locations.push(Location {
            address: 0,
            mapping: None,
            lines: vec![Line { function: name.function.clone(), file: name.file.clone(), line: name.line }],
            kernel: false,
        });
        self.python.insert(name.clone(), i);
        i
    }

    fn placeholder(&mut self, name: &'static str, kernel: bool) -> usize {
        if let Some(&i) = self.placeholders.get(name) {
            return i;
        }
        let i = self.profile.locations.len();
        self.profile.locations.push(Location {
            address: 0,
            mapping: None,
            lines: vec![Line { function: name.to_owned(), file: None, line: None }],
            kernel,
        });
        self.placeholders.insert(name, i);
        i
    }
}

impl Symbolizer {
    /// A symbolizer configured from the environment ([`DEBUG_DIRS_ENV`]).
    pub fn new() -> Self {
        Self::with_config(SymbolizerConfig::from_env())
    }

    pub fn with_config(config: SymbolizerConfig) -> Self {
        // A descriptor per cached object and pinned file: the soft limit
        // (often 1024) is raised toward the hard one.
        crate::sys::raise_open_files_limit(65_536);
        let inner = BlazeSymbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            // Demangled here instead, only for names that are mangled:
            // blazesym's C++ demangler turns plain C names such as `f` or
            // `g` into `float`/`__float128`.
            .enable_demangling(false)
            // Separate debug files are found by `debuginfo`, which can see
            // inside containers; blazesym's own search (debuglinks only,
            // relative to paths it cannot resolve here) stays off.
            .set_debug_dirs(Some(Vec::<PathBuf>::new()))
            .build();
        Self {
            blaze: Blaze(inner),
            objects: ObjectCache::new(config.budget),
            processes: Processes::default(),
            debug_dirs: config.debug_dirs,
            kernel_build_id: None,
            kallsyms_warned: false,
            python: PythonFrames::default(),
            release_parsed: config.release_parsed,
            kernel_names: InKernel::Untried,
            kernel_symbols: KernelSymbols::None,
        }
    }

    /// A long-lived symbolizer (the `watch` daemon's, the flight
    /// recorder's) with the kernel's naming program loaded now, as the
    /// eBPF programs are, rather than by whichever capture first samples
    /// a kernel frame: an idle daemon holds the same programs and
    /// descriptors from its first capture to its last. Where the program
    /// cannot load, kernel frames are named from kallsyms as ever.
    pub(crate) fn for_daemon() -> Self {
        let mut symbolizer = Self::new();
        let _ = symbolizer.kernel_names();
        symbolizer
    }

    /// Snapshots the processes in `pids` not seen before, so they can be
    /// symbolized even if they exit before the capture ends. Call it while
    /// sampling, about every second, with the pids seen in the sample map
    /// so far. Cheap for pids already observed.
    pub fn observe_pids(&mut self, pids: &[Pid]) {
        let _paging = Paging::start();
        let mut live = Vec::with_capacity(pids.len());
        for &pid in pids.iter().filter(|&&p| p != KERNEL) {
            match self.processes.observe(pid) {
                // Nothing to detect in a process that is gone.
                Observed::Gone => continue,
                Observed::Replaced => self.python.forget(pid),
                Observed::Known | Observed::New => {}
            }
            live.push(pid);
        }
        self.python.observe(&live);
        self.python.warm(&live);
    }

    /// [`Self::observe_pids`] for native stacks only: the snapshots, no
    /// Python detection (the flight recorder's samples carry no Python
    /// frames, and detecting and reading interpreters costs it CPU for
    /// nothing).
    pub(crate) fn observe_native(&mut self, pids: &[Pid]) {
        for &pid in pids.iter().filter(|&&p| p != KERNEL) {
            self.processes.observe(pid);
        }
    }

    /// The pid under which to symbolize samples of process `pid` started at
    /// `start` (clock ticks since boot, 0 unknown): `pid`, or a made-up one
    /// when another process has taken the pid since (see
    /// `user::Processes::instance`). [`Self::drop_aliases`] after the profile.
    pub(crate) fn process_instance(&mut self, pid: Pid, start: u64) -> Pid {
        self.processes.instance(pid, start)
    }

    /// Forgets the pids [`Self::process_instance`] made up.
    pub(crate) fn drop_aliases(&mut self) {
        self.processes.drop_aliases();
    }

    /// The Python processes among `pids`, with what the kernel needs to
    /// walk their frames (for the `PY_PROCS` map).
    pub(crate) fn python_processes(&mut self, pids: &[Pid]) -> Vec<(Pid, profiler_common::python::PyProcInfo)> {
        self.python.proc_infos(pids)
    }

    /// Whether the kernel's Python stack `id` of `pid` still needs naming
    /// ([`Self::remember_python`]).
    pub(crate) fn python_needs(&self, pid: Pid, id: u64) -> bool {
        self.python.needs(pid, id)
    }

    /// Names the frames of a Python stack the kernel stored, while the
    /// process runs, so they keep their names if it exits.
    pub(crate) fn remember_python(&mut self, pid: Pid, id: u64, frames: &[crate::aggregate::PyFrame]) {
        self.python.remember(pid, id, frames);
    }

    /// Manifest notes about `pids`: Python interpreters that cannot be read.
    pub(crate) fn notes(&self, pids: &[Pid]) -> Vec<String> {
        self.python.notes(pids)
    }

    /// Starts reading the kernel's symbols into an index on a thread of
    /// its own, at low priority, so that naming kernel frames once the
    /// capture ends does not wait for a pass of kallsyms (50 ms of the
    /// kernel's formatting and more; see [`kallsyms`]). Call it once the
    /// capture's programs are attached (their symbols are then in the
    /// file), and [`Self::release_kernel_symbols`] once its profiles are
    /// built.
    ///
    /// Nothing to do where the kernel names its addresses itself.
    pub(crate) fn prefetch_kernel_symbols(&mut self) {
        if self.kernel_names().is_some() {
            return;
        }
        self.kernel_symbols = match kallsyms::Prefetch::start(KALLSYMS) {
            Ok(reading) => KernelSymbols::Reading(reading),
            Err(e) => {
                debug!("cannot start reading kernel symbols ahead: {e}");
                KernelSymbols::None
            }
        };
    }

    /// [`Self::prefetch_kernel_symbols`] unless an index is read or being
    /// read: once a capture has sampled kernel frames, and for a view that
    /// builds a profile every second (`top`), which keeps the index and
    /// reads it again only once kernel code changed.
    pub(crate) fn keep_kernel_symbols(&mut self) {
        if let KernelSymbols::None = self.kernel_symbols {
            self.prefetch_kernel_symbols();
        }
    }

    /// Drops the index [`Self::prefetch_kernel_symbols`] read (1.8 MiB).
    pub(crate) fn release_kernel_symbols(&mut self) {
        self.kernel_symbols = KernelSymbols::None;
    }

    /// The kernel's naming program, loaded on first use; `None` where it
    /// cannot load (said once, at debug level: kallsyms does the work).
    fn kernel_names(&mut self) -> Option<&in_kernel::KernelNames> {
        if let InKernel::Untried = self.kernel_names {
            self.kernel_names = match in_kernel::KernelNames::load() {
                Ok(names) => InKernel::Loaded(names),
                Err(e) => {
                    debug!("the kernel cannot name kernel addresses itself ({e}); reading {KALLSYMS} instead");
                    InKernel::Unavailable
                }
            };
        }
        match &self.kernel_names {
            InKernel::Loaded(names) => Some(names),
            _ => None,
        }
    }

    /// `addrs` named by the kernel ([`in_kernel`]), if it can.
    fn kernel_named(&mut self, addrs: &[u64]) -> Option<Vec<Option<kallsyms::KernelSymbol>>> {
        match self.kernel_names()?.resolve(addrs) {
            Ok(names) => Some(names),
            Err(e) => {
                warn!("the kernel failed to name kernel addresses ({e}); reading {KALLSYMS} from now on");
                self.kernel_names = InKernel::Unavailable;
                None
            }
        }
    }

    /// `addrs` named from the prefetched index, if there is one and no
    /// module or BPF program came or went since it was read.
    fn indexed_kernel_symbols(&mut self, addrs: &[u64]) -> Option<Vec<Option<kallsyms::KernelSymbol>>> {
        self.kernel_symbols = match std::mem::take(&mut self.kernel_symbols) {
            KernelSymbols::Reading(reading) => match reading.wait() {
                Ok((generation, index)) => KernelSymbols::Ready(generation, index),
                Err(e) => {
                    debug!("no index of kernel symbols: {e}");
                    KernelSymbols::None
                }
            },
            other => other,
        };
        let KernelSymbols::Ready(generation, index) = &self.kernel_symbols else { return None };
        if *generation != kallsyms::CodeGeneration::now() {
            debug!("kernel modules or BPF programs changed during the capture: reading kallsyms again");
            self.kernel_symbols = KernelSymbols::None;
            return None;
        }
        Some(index.resolve(addrs))
    }

    /// Forgets the snapshots of processes that have exited. Call it once a
    /// capture's profiles are all built (a daemon, between captures).
    pub fn forget_exited(&mut self) {
        self.processes.forget_exited();
        self.python.forget_exited();
    }

    /// Forgets the snapshots of processes that have exited, except those
    /// `keep` still needs (the flight recorder's slots refer to them).
    pub(crate) fn forget_exited_unless(&mut self, keep: impl Fn(Pid) -> bool) {
        self.processes.forget_exited_unless(keep);
        self.python.forget_exited();
    }

    pub fn stats(&self) -> SymbolizerStats {
        SymbolizerStats {
            cache: self.objects.stats(),
            snapshots: self.processes.len(),
            pinned_files: self.processes.pinned_files(),
            released_view_bytes: Paging::released_bytes(),
        }
    }

    /// Symbolizes every address of `agg` into `template` (which sets the
    /// kind, sample types and period); `values` gives each sample's values,
    /// one per sample type.
    pub fn build_profile(
        &mut self,
        agg: &Aggregate,
        template: Profile,
        values: impl Fn(&RawSample) -> Vec<i64>,
    ) -> Profile {
        let _paging = Paging::start();
        self.objects.next_generation();
        let mut tables = Tables {
            profile: template,
            locations: HashMap::new(),
            mappings: HashMap::new(),
            placeholders: HashMap::new(),
            python: HashMap::new(),
        };
        self.add_kernel_locations(&mut tables, &agg.kernel_addrs);
        self.add_user_locations(&mut tables, &agg.user_addrs);
        for s in &agg.samples {
            let mut locations = Vec::with_capacity(s.kernel.addrs().len() + s.user.addrs().len());
            match &s.kernel {
                Frames::Addrs(a) => {
                    let frames: Vec<usize> = a.iter().map(|addr| tables.locations[&(KERNEL, *addr)]).collect();
                    // A stack read from a tracepoint program starts inside
                    // the BPF machinery that called it: not the workload's.
                    let skip = frames
                        .iter()
                        .take_while(|&&i| {
                            tables.profile.locations[i].lines.last().is_some_and(|l| is_bpf_frame(&l.function))
                        })
                        .count();
                    locations.extend_from_slice(&frames[skip..]);
                }
                Frames::Lost => locations.push(tables.placeholder("[lost kernel stack]", true)),
                Frames::Missing => locations.push(tables.placeholder("[missing kernel stack]", true)),
                Frames::None => {}
            }
            let native = s.user.addrs();
            match self.python.splice(s.pid, native, &s.python) {
                Some((slots, names)) => {
                    for slot in slots {
                        locations.push(match slot {
                            Slot::Native(i) => tables.locations[&(s.pid, native[i])],
                            Slot::Python(i) => tables.python_location(&names[i]),
                        });
                    }
                }
                None => locations.extend(native.iter().map(|addr| tables.locations[&(s.pid, *addr)])),
            }
            match &s.user {
                Frames::Lost => locations.push(tables.placeholder("[lost user stack]", false)),
                Frames::Missing => locations.push(tables.placeholder("[missing user stack]", false)),
                Frames::Addrs(_) | Frames::None => {}
            }
            if let Some(frame) = self.python.unsupported_frame(s.pid) {
                let i = tables.python_location(&python::PyName { function: frame, file: None, line: None });
                locations.push(i);
            }
            if s.user_truncated {
                locations.push(tables.placeholder(TRUNCATED_FRAME, false));
            }
            if locations.is_empty() {
                locations.push(tables.placeholder("[no stack]", false));
            }
            tables.profile.samples.push(Sample {
                pid: s.pid,
                tid: s.tid,
                comm: s.comm.clone(),
                locations,
                values: values(s),
            });
        }
        // Within budget again for the next capture; objects still needed
        // are reopened from their pins or `/proc`.
        self.objects.evict_over_budget(&mut self.blaze);
        // The parsed debug info stays cached (on the heap); the pages of
        // the files it was read from are not needed until the next lookup.
        Paging::release_now();
        tables.profile
    }

    fn add_kernel_locations(&mut self, tables: &mut Tables, addrs: &[u64]) {
        if addrs.is_empty() {
            return;
        }
        let build_id = self.kernel_build_id.get_or_insert_with(kernel_build_id).clone();
        let mapping = tables.profile.mappings.len();
        tables.profile.mappings.push(Mapping {
            start: addrs[0],
            limit: addrs[addrs.len() - 1].saturating_add(1),
            offset: 0,
            path: KERNEL_MAPPING.to_owned(),
            build_id,
        });
        tables.mappings.insert((KERNEL, 0), mapping);
        // No vmlinux (it needs the KASLR offset from /proc/kcore, which hosts
        // often lack): the kernel names its runtime addresses itself, or
        // kallsyms (which holds them) does.
        let indexed = self.kernel_named(addrs).or_else(|| self.indexed_kernel_symbols(addrs)).map(Ok);
        let results = match indexed.unwrap_or_else(|| {
            std::fs::File::open(KALLSYMS)
                .and_then(|f| kallsyms::resolve(std::io::BufReader::with_capacity(1 << 16, f), addrs))
        }) {
            Ok(r) => r,
            Err(e) => {
                if !self.kallsyms_warned {
                    warn!("cannot name kernel frames from {KALLSYMS}: {e}; they read [kernel]+0x…");
                    self.kallsyms_warned = true;
                }
                Vec::new()
            }
        };
        for (i, &addr) in addrs.iter().enumerate() {
            let function = match results.get(i) {
                Some(Some(sym)) => sym.name.clone(),
                _ => format!("[kernel]+{addr:#x}"),
            };
            let lines = vec![Line { function, file: None, line: None }];
            let idx = tables.profile.locations.len();
            tables.profile.locations.push(Location { address: addr, mapping: Some(mapping), lines, kernel: true });
            tables.locations.insert((KERNEL, addr), idx);
        }
    }

    /// Names the user addresses of every process, object by object
    /// ([`Context::name`]), and adds their locations.
    fn add_user_locations(&mut self, tables: &mut Tables, user_addrs: &BTreeMap<Pid, Vec<u64>>) {
        let mut context = Context {
            blaze: &mut self.blaze,
            objects: &mut self.objects,
            processes: &mut self.processes,
            debug_dirs: &self.debug_dirs,
            release_parsed: self.release_parsed,
        };
        let processes: Vec<(Pid, &Vec<u64>)> =
            user_addrs.iter().filter(|(_, addrs)| !addrs.is_empty()).map(|(&pid, addrs)| (pid, addrs)).collect();
        let mut batch = Batch::default();
        let mut located: Vec<Located> = processes
            .iter()
            .enumerate()
            .map(|(slot, &(pid, addrs))| context.locate(pid, addrs, slot, &mut batch))
            .collect();
        context.name(batch, &mut located);
        for ((_, addrs), mut process) in processes.into_iter().zip(located) {
            context.finish(addrs, &mut process);
            let pid = process.pid;
            let gone = !crate::procfs::process::exists(pid);
            for (&addr, Resolved { mapping: entry, build_id, lines }) in addrs.iter().zip(process.resolved) {
                let mapping = entry.as_ref().map(|m| mapping_index(tables, pid, m, build_id));
                let lines = lines.unwrap_or_else(|| {
                    vec![Line { function: unknown_name(entry.as_ref(), addr, gone), file: None, line: None }]
                });
                let idx = tables.profile.locations.len();
                tables.profile.locations.push(Location { address: addr, mapping, lines, kernel: false });
                tables.locations.insert((pid, addr), idx);
            }
        }
    }
}

fn mapping_index(tables: &mut Tables, pid: Pid, m: &MapsEntry, build_id: Option<String>) -> usize {
    if let Some(&i) = tables.mappings.get(&(pid, m.start)) {
        if build_id.is_some() && tables.profile.mappings[i].build_id.is_none() {
            tables.profile.mappings[i].build_id = build_id;
        }
        return i;
    }
    let i = tables.profile.mappings.len();
    tables.profile.mappings.push(Mapping {
        start: m.start,
        limit: m.end,
        offset: m.offset,
        path: m.path.clone(),
        build_id,
    });
    tables.mappings.insert((pid, m.start), i);
    i
}

/// Kernel functions that run a BPF program (and so sit at the top of any
/// kernel stack it reads).
fn is_bpf_frame(name: &str) -> bool {
    ["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_", "bpf_trampoline_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Lines of a symbol, innermost first: the deepest inlined call, …, then
/// the function that contains the address.
///
/// blazesym lists inlined calls outermost first and gives each the source
/// position inside it (`sym.code_info` is the position in the outermost
/// function, at the call of the first inlined one), so walking them
/// backwards pairs every function with its own line.
fn sym_lines(sym: &blazesym::symbolize::Sym<'_>) -> Vec<Line> {
    let mut lines = Vec::with_capacity(1 + sym.inlined.len());
    for f in sym.inlined.iter().rev() {
        let (file, line) = code_location(f.code_info.as_ref());
        lines.push(Line { function: demangle(&f.name), file, line });
    }
    let (file, line) = code_location(sym.code_info.as_deref());
    lines.push(Line { function: demangle(&sym.name), file, line });
    lines
}

/// Demangles Rust (v0 and legacy) and Itanium C++ names; anything else
/// (C, Go, kernel) is returned as is.
pub(crate) fn demangle(name: &str) -> String {
    if name.starts_with("_R") || name.starts_with("_ZN") {
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            return format!("{d:#}");
        }
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name) {
            if let Ok(d) = sym.demangle() {
                return d;
            }
        }
    }
    name.to_owned()
}

fn code_location(info: Option<&CodeInfo<'_>>) -> (Option<String>, Option<u32>) {
    match info {
        Some(ci) => (Some(ci.to_path().display().to_string()), ci.line.filter(|&l| l > 0)),
        None => (None, None),
    }
}

/// Placeholder name for an address no symbol covers.
fn unknown_name(entry: Option<&MapsEntry>, addr: u64, process_gone: bool) -> String {
    match entry {
        Some(m) if m.path.is_empty() => format!("[anon]+{addr:#x}"),
        Some(m) => {
            let path = m.clean_path();
            let base =
                Path::new(path).file_name().map_or_else(|| path.to_owned(), |f| f.to_string_lossy().into_owned());
            format!("{base}+{:#x}", m.file_offset(addr))
        }
        None if process_gone => format!("[exited process]+{addr:#x}"),
        None => format!("[unknown]+{addr:#x}"),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
mod demangle_tests {
    use super::demangle;

    #[test]
    fn only_mangled_names_are_demangled() {
        assert_eq!(demangle("f"), "f");
        assert_eq!(demangle("g"), "g");
        assert_eq!(demangle("main.leak"), "main.leak");
        assert_eq!(demangle("_ZN3foo3barE"), "foo::bar");
        assert_eq!(demangle("_ZN3std2rt10lang_start17h0123456789abcdefE"), "std::rt::lang_start");
        assert_eq!(demangle("_Z3addii"), "add(int, int)");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }
}

#[cfg(test)]
#[path = "plt_tests.rs"]
mod plt_tests;
