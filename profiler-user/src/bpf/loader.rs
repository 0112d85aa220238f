//! The eBPF object itself: loads the embedded program with the target
//! filter and the settings its programs read, verifies the programs a
//! capture may need, and opens and closes the capture window.
//!
//! Loading is separate from attaching ([`super::links`]) so a daemon can load
//! (and so verify the program against this kernel) once at start and sample
//! only while capturing.
//!
//! Attaching is separate from counting: the programs count only inside the
//! capture window (see [`profiler_common::Window`]), opened once everything
//! is attached and enforced by the kernel, so neither attaching nor
//! detaching (a uprobe takes from 0.1 s to minutes to detach on a crowded
//! host) nor a late wake-up of this process stretches what a capture counts.

use std::{collections::HashSet, time::Duration};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::{perf_event::PerfEventLinkId, uprobe::UProbeLinkId, BtfTracePoint, PerfEvent, RawTracePoint, UProbe},
    Btf, Ebpf, EbpfLoader,
};
pub(crate) use profiler_common::UnwindMode;
use profiler_common::{
    python::{PyProcInfo, MAP_PY_PROCS, PY_PROCS_MAP_ENTRIES},
    Config, FilterMode, Gate, Window, MAP_ALLOC_COUNTS, MAP_ALLOC_PENDING, MAP_FAULT_COUNTS, MAP_HISTORY,
    MAP_LIVE_ALLOCS, MAP_OFFCPU_COUNTS, MAP_OFFCPU_START, MAP_TARGET_PIDS, MAP_WINDOW, PROG_ALLOC_RETURN,
    PROG_CALLOC_ENTRY, PROG_CPU_SAMPLE, PROG_FAULT_SAMPLE, PROG_FREE_ENTRY, PROG_GO_ALLOC, PROG_HISTORY_SAMPLE,
    PROG_MALLOC_ENTRY, PROG_PROCESS_EXEC, PROG_REALLOC_ENTRY, PROG_SCHED_SWITCH, TARGET_PIDS_MAP_ENTRIES,
};
use tracing::{debug, warn};

use super::tables::{TableManager, TableMaps, TablesReport, MAP_NAMES};
use crate::ids::Pid;
use crate::profile::capture::CaptureWindow;
use crate::sys::{monotonic_ns, page_size, raise_memlock_limit};
use crate::target::Filter;

/// The eBPF object built from `profiler-ebpf` by `build.rs`.
pub(super) static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Hint appended to errors that mean "not allowed".
const PRIVILEGE_HINT: &str = "run as root or grant CAP_BPF and CAP_PERFMON; `stackwatch doctor` checks the host";

/// Which programs besides the CPU sampler to load, and their settings:
/// the profile kinds of a capture fill it in (`crate::kinds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Programs {
    /// The `sched_switch` off-CPU program (needs BTF).
    pub offcpu: bool,
    /// The page-fault sampler.
    pub faults: bool,
    /// The allocation uprobes (`malloc`, `calloc`, `realloc`, `free` and the
    /// return of the first three; the Go runtime's allocation slow paths).
    pub alloc: bool,
    /// Off-CPU intervals shorter than this are not recorded.
    pub offcpu_min_ns: u64,
    /// `malloc` sampling period in bytes.
    pub malloc_sample_bytes: u64,
    /// How user stacks are walked.
    pub unwind: UnwindMode,
    /// The flight recorder's sampler (`watch --history`), attached apart
    /// from captures by [`Loader::start_history`].
    pub history: bool,
}

impl Default for Programs {
    fn default() -> Self {
        Self {
            offcpu: false,
            faults: false,
            alloc: false,
            offcpu_min_ns: 1000,
            malloc_sample_bytes: 512 * 1024,
            unwind: UnwindMode::FramePointers,
            history: false,
        }
    }
}

/// The loaded program, its maps and (while sampling) its perf-event links.
pub(crate) struct Loader {
    pub(super) ebpf: Ebpf,
    pub(super) cpu_links: Vec<PerfEventLinkId>,
    pub(super) fault_links: Vec<PerfEventLinkId>,
    pub(super) offcpu_link: Option<aya::programs::tp_btf::BtfTracePointLinkId>,
    /// The `sched_process_exec` hook, attached while anything samples.
    pub(super) exec: ExecHook,
    /// Attached uprobes, with the name of their program.
    pub(super) uprobe_links: Vec<(&'static str, UProbeLinkId)>,
    /// The open (or last) capture window; `None` while it is closed.
    pub(super) window: Option<CaptureWindow>,
    /// What the kernel's gate holds: the window last written, and the
    /// target's pids (both rewritten together, see `Gate`).
    gate: Gate,
    /// The pid set, sorted (under `Filter::Pids`).
    target_pids: Vec<u32>,
    pub(super) programs: Programs,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Owns the unwind tables (absent under `--unwind fp`).
    pub(super) tables: Option<TableManager>,
}

/// The `sched_process_exec` hook's state (see [`load_exec_hook`]).
#[derive(Debug)]
pub(crate) enum ExecHook {
    /// Not loaded (`--unwind fp`, or the kernel refused it).
    Absent,
    /// Loaded, never attached.
    Loaded,
    /// Attached: a capture samples.
    Attached(aya::programs::raw_trace_point::RawTracePointLinkId),
    /// Attached once and detached since: processes may have run a new
    /// program unseen.
    WasAttached,
}

/// Loads the `sched_process_exec` hook (attached while a capture runs, by
/// [`Loader::follow_exec`]): a process that runs `execve` has its
/// table-unwinder mappings dropped, so its new program's pcs are never
/// looked up in the old program's files (and its next sample asks for the
/// new mappings at once). Without it (a kernel refusing the raw
/// tracepoint), such a process asks again only when a pc falls outside
/// every mapping it had: logged, not fatal.
fn load_exec_hook(ebpf: &mut Ebpf) -> bool {
    let loaded = typed_program::<RawTracePoint>(ebpf, PROG_PROCESS_EXEC)
        .and_then(|program| program.load().map_err(|e| anyhow!(e)));
    if let Err(e) = &loaded {
        warn!("cannot follow exec (the sched_process_exec raw tracepoint): {e:#}; a process that runs a new program keeps its old mappings until a pc falls outside them");
    }
    loaded.is_ok()
}

impl Loader {
    /// Loads and verifies the CPU sampler and the `programs` asked for.
    /// Under `--unwind auto`, a kernel that rejects the table unwinder
    /// (older than 5.17: no `bpf_loop`) gets the frame-pointer walk instead.
    pub(crate) fn load_with(filter: &Filter, programs: Programs) -> Result<Self> {
        // The verifier runs on this thread: ahead of a busy target's threads.
        let _urgent = crate::sys::Urgent::enter();
        match Self::load_once(filter, programs) {
            Err(e) if programs.unwind == UnwindMode::Auto => {
                let fp = Programs { unwind: UnwindMode::FramePointers, ..programs };
                let loader = Self::load_once(filter, fp)?;
                warn!(
                    "unwind tables are unavailable ({e:#}); user stacks are walked with frame pointers \
                     (Linux 5.17 or newer is needed; `stackwatch doctor` checks)"
                );
                Ok(loader)
            }
            result => result,
        }
    }

    fn load_once(filter: &Filter, programs: Programs) -> Result<Self> {
        raise_memlock_limit();
        let mut config = match filter {
            Filter::All => Config::all(),
            Filter::Pids(_) => Config { filter_mode: FilterMode::Pids as u32, ..Config::all() },
            Filter::Cgroup { id, level } => {
                Config { filter_mode: FilterMode::Cgroup as u32, cgroup_level: *level, cgroup_id: *id, ..Config::all() }
            }
        };
        config.offcpu_min_ns = programs.offcpu_min_ns;
        config.malloc_sample_bytes = programs.malloc_sample_bytes.max(1);
        config.unwind_mode = programs.unwind as u32;
        let task = super::btf::task_offsets().unwrap_or_else(|e| {
            warn!("cannot read the kernel's BTF: {e:#}");
            super::btf::TaskOffsets::default()
        });
        config.task_fsbase_offset = task.fsbase.unwrap_or_else(|| {
            warn!("Python functions will not be named: no `task_struct.thread.fsbase` in the kernel's BTF");
            0
        });
        if let (Some(leader), Some(start)) = (task.group_leader, task.start_boottime) {
            config.task_group_leader_offset = leader;
            config.task_start_boottime_offset = start;
        }
        let mut ebpf_loader = EbpfLoader::new();
        ebpf_loader.override_global(profiler_common::GLOBAL_CONFIG, &config, true);
        // The maps of programs not loaded, and the pid filter outside pid-set
        // mode, are never written: one entry each instead of thousands keeps
        // ~4 MiB of preallocated kernel memory free (measured by `cargo xtask
        // bench`).
        let unused = [
            // Read only in pid-set mode, where the filter mode (a load-time
            // constant) says so.
            (MAP_TARGET_PIDS, matches!(filter, Filter::Pids(_))),
            (MAP_OFFCPU_START, programs.offcpu),
            (MAP_OFFCPU_COUNTS, programs.offcpu),
            (MAP_FAULT_COUNTS, programs.faults),
            (MAP_ALLOC_COUNTS, programs.alloc),
            (MAP_LIVE_ALLOCS, programs.alloc),
            (MAP_ALLOC_PENDING, programs.alloc),
        ];
        let tables = programs.unwind != UnwindMode::FramePointers;
        let unused = unused.into_iter().chain(MAP_NAMES.iter().map(|&name| (name, tables)));
        for (map, _) in unused.filter(|(_, used)| !used) {
            ebpf_loader.map_max_entries(map, 1);
        }
        if !programs.history {
            // A ring buffer's size is in bytes, at least one page.
            ebpf_loader.map_max_entries(MAP_HISTORY, u32::try_from(page_size()).unwrap_or(4096));
        }
        let mut ebpf =
            ebpf_loader.load(EBPF_OBJECT).map_err(|e| privilege_aware(anyhow!(e), "failed to load the eBPF object"))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                warn!("eBPF program logs are unavailable: {e}");
                None
            }
        };
        // The table manager starts before the programs load: the target's
        // unwind tables are built on its thread while the kernel verifies
        // `cpu_sample` on this one (~45 ms), so a capture that waits for
        // them (`load_unwind_tables`) waits less before its first sample.
        let tables = if programs.unwind == UnwindMode::FramePointers {
            None
        } else {
            Some(TableManager::start(TableMaps::take(&mut ebpf)?)?)
        };
        let mut loader = Self {
            tables,
            ebpf,
            cpu_links: Vec::new(),
            fault_links: Vec::new(),
            offcpu_link: None,
            uprobe_links: Vec::new(),
            exec: ExecHook::Absent,
            window: None,
            gate: Gate::new(Window::CLOSED, &[]),
            target_pids: Vec::new(),
            programs,
            logger,
        };
        if let Filter::Pids(pids) = filter {
            loader.set_target_pids(pids)?;
        }
        let ebpf = &mut loader.ebpf;
        let program: &mut PerfEvent = typed_program(ebpf, PROG_CPU_SAMPLE)?;
        program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the perf_event program"))?;
        if programs.offcpu {
            let btf = Btf::from_sys_fs().context(
                "off-CPU profiling needs kernel BTF (`/sys/kernel/btf/vmlinux`), which this kernel does not provide",
            )?;
            let program: &mut BtfTracePoint = typed_program(ebpf, PROG_SCHED_SWITCH)?;
            program
                .load("sched_switch", &btf)
                .map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the sched_switch (off-CPU) program"))?;
        }
        if programs.faults {
            let program: &mut PerfEvent = typed_program(ebpf, PROG_FAULT_SAMPLE)?;
            program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the page-fault program"))?;
        }
        if programs.history {
            let program: &mut PerfEvent = typed_program(ebpf, PROG_HISTORY_SAMPLE)?;
            program.load().map_err(|e| privilege_aware(anyhow!(e), "the kernel rejected the history sampler"))?;
        }
        if programs.alloc {
            for name in [
                PROG_MALLOC_ENTRY,
                PROG_CALLOC_ENTRY,
                PROG_REALLOC_ENTRY,
                PROG_FREE_ENTRY,
                PROG_ALLOC_RETURN,
                PROG_GO_ALLOC,
            ] {
                let program: &mut UProbe = typed_program(ebpf, name)?;
                program
                    .load()
                    .map_err(|e| privilege_aware(anyhow!(e), &format!("the kernel rejected the `{name}` uprobe")))?;
            }
        }
        // Everything is parsed and loaded: the object's pages (2 MiB, read
        // whole by the parse) are not needed until the next load.
        match crate::sys::views::release_constant(EBPF_OBJECT) {
            Ok(bytes) => debug!("gave back {} KiB of the embedded eBPF object's pages", bytes / 1024),
            Err(e) => debug!("could not give back the embedded eBPF object's pages: {e}"),
        }
        if loader.tables.is_some() && load_exec_hook(&mut loader.ebpf) {
            loader.exec = ExecHook::Loaded;
        }
        Ok(loader)
    }

    /// Replaces the set of processes the program keeps (for `Filter::Pids`).
    pub(crate) fn set_target_pids(&mut self, pids: &[Pid]) -> Result<()> {
        if pids.len() > TARGET_PIDS_MAP_ENTRIES as usize {
            anyhow::bail!(
                "{} processes selected, more than the {TARGET_PIDS_MAP_ENTRIES} the filter holds; narrow the target",
                pids.len()
            );
        }
        let wanted: HashSet<u32> = pids.iter().map(|p| p.get()).collect();
        // The hash map always holds the whole set, and is written first: a
        // set that outgrows the gate is complete there when the gate sends
        // the program to it.
        let mut map: HashMap<&mut MapData, u32, u8> = HashMap::try_from(self.map_mut(MAP_TARGET_PIDS)?)?;
        let stale: Vec<u32> = map.keys().filter_map(Result::ok).filter(|p| !wanted.contains(p)).collect();
        for pid in stale {
            map.remove(&pid).with_context(|| format!("failed to remove pid {pid} from the filter"))?;
        }
        let mut added = Vec::new();
        for &pid in &wanted {
            if map.get(&pid, 0).is_err() {
                added.push(pid);
            }
            map.insert(&pid, &1, 0).with_context(|| format!("failed to add pid {pid} to the filter"))?;
        }
        let mut sorted: Vec<u32> = wanted.into_iter().collect();
        sorted.sort_unstable();
        self.target_pids = sorted;
        let gate = Gate::new(self.gate.window, &self.target_pids);
        self.write_gate(gate).context("failed to write the filter's pids")?;
        if let Some(tables) = &self.tables {
            // Processes that just entered the target: their tables are
            // built in the background (the program asks too, on their
            // first sample).
            tables.load_later(&added);
        }
        Ok(())
    }

    /// Loads the unwind tables of `pids` now (a capture's known processes),
    /// waiting at most a few seconds. Nothing under `--unwind fp`.
    pub(crate) fn load_unwind_tables(&self, pids: &[Pid]) {
        if let Some(tables) = &self.tables {
            let pids: Vec<u32> = pids.iter().map(|p| p.get()).collect();
            tables.load(&pids, Duration::from_secs(10));
        }
    }

    /// What the table manager did so far; `None` under `--unwind fp`.
    pub(crate) fn unwind_report(&self) -> Option<TablesReport> {
        self.tables.as_ref().map(TableManager::report)
    }

    /// Adds (or updates) Python processes whose frames the program walks.
    pub(crate) fn add_python_processes(&mut self, procs: &[(Pid, PyProcInfo)]) -> Result<()> {
        let mut map: HashMap<&mut MapData, u32, PyProcInfo> = HashMap::try_from(self.map_mut(MAP_PY_PROCS)?)?;
        for (pid, info) in procs.iter().take(PY_PROCS_MAP_ENTRIES as usize) {
            map.insert(&pid.get(), info, 0)
                .with_context(|| format!("failed to add Python process {pid} to the kernel map"))?;
        }
        Ok(())
    }

    /// Starts counting, for `duration` (the kernel stops at the end by
    /// itself). Call once every event source is attached.
    pub(crate) fn open_window(&mut self, duration: Duration) -> Result<CaptureWindow> {
        let window = CaptureWindow::starting_now(duration);
        self.write_window(window.kernel())?;
        self.window = Some(window);
        Ok(window)
    }

    /// Stops counting now, unless the window already ended, and returns it
    /// as it was counted. `None` if no window was opened.
    pub(crate) fn close_window(&mut self) -> Result<Option<CaptureWindow>> {
        let Some(window) = self.window else { return Ok(None) };
        let closed = window.closed_at(monotonic_ns());
        if closed != window {
            self.write_window(closed.kernel())?;
            self.window = Some(closed);
        }
        Ok(Some(closed))
    }

    pub(super) fn write_window(&mut self, window: Window) -> Result<()> {
        let gate = Gate::new(window, &self.target_pids);
        self.write_gate(gate).context("failed to set the capture window")
    }

    fn write_gate(&mut self, gate: Gate) -> Result<()> {
        let mut map: Array<&mut MapData, Gate> = Array::try_from(self.map_mut(MAP_WINDOW)?)?;
        map.set(0, &gate, 0)?;
        self.gate = gate;
        Ok(())
    }

    /// What was loaded.
    pub(crate) fn programs(&self) -> Programs {
        self.programs
    }

    /// Total time the kernel ran the loaded programs, and how many runs, as
    /// counted while BPF run-time statistics were on ([`enable_run_stats`]).
    pub(crate) fn run_totals(&self) -> (std::time::Duration, u64) {
        let mut total = (std::time::Duration::ZERO, 0);
        for (_, program) in self.ebpf.programs() {
            if let Ok(info) = program.info() {
                total.0 += info.run_time();
                total.1 += info.run_count();
            }
        }
        total
    }

    /// Forwards pending eBPF log records to the `log` facade.
    pub(crate) fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    pub(super) fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"))
    }

    pub(super) fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Links would also go with `Ebpf`, but detach explicitly so nothing
        // samples while the maps are torn down.
        let _ = self.detach();
    }
}

/// The program `name` of `ebpf`, as its concrete type.
pub(super) fn typed_program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| anyhow!("program `{name}` missing from the eBPF object"))?;
    <&mut T>::try_from(program).with_context(|| format!("program `{name}` has an unexpected type"))
}

/// One sentence for `what` failing: with the privilege hint (and without
/// aya's nested repetition of the same cause) when the system call said
/// EPERM, a missing privilege. (EACCES from a program load is the verifier
/// rejecting it, which is a bug or an unsupported kernel: its log is kept.)
pub(super) fn privilege_aware(err: anyhow::Error, what: &str) -> anyhow::Error {
    if crate::sys::os_error(&err) == Some(libc::EPERM) {
        anyhow!("{what}: permission denied; {PRIVILEGE_HINT}")
    } else {
        anyhow!("{what}: {err:#}")
    }
}

/// Turns on the kernel's BPF run-time statistics for as long as the
/// descriptor is held (`BPF_ENABLE_STATS`, 5.8+): two clock reads per
/// program run, so `watch --listen` holds it only while a capture runs.
/// `None` when the kernel refuses (the metric then stays 0).
pub(crate) fn enable_run_stats() -> Option<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| log::debug!("BPF run-time statistics are off: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_hint_only_for_eperm() {
        let denied = aya::sys::SyscallError { call: "bpf", io_error: std::io::Error::from_raw_os_error(libc::EPERM) };
        assert_eq!(
            privilege_aware(anyhow!(denied), "failed to load").to_string(),
            format!("failed to load: permission denied; {PRIVILEGE_HINT}")
        );
        // The verifier's EACCES keeps its message, and so does an error that
        // only reads like a missing privilege.
        let rejected =
            aya::sys::SyscallError { call: "bpf", io_error: std::io::Error::from_raw_os_error(libc::EACCES) };
        let text = privilege_aware(anyhow!(rejected), "failed to load").to_string();
        assert!(text.starts_with("failed to load: ") && !text.contains("CAP_BPF"), "{text}");
        let words = std::io::Error::other("the log says: Operation not permitted");
        let text = privilege_aware(anyhow!(words), "failed to load").to_string();
        assert!(!text.contains("CAP_BPF"), "{text}");
    }
}
