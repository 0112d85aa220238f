//! The table manager: owns the kernel-side unwind tables and keeps them
//! matching the processes being sampled.
//!
//! It runs on its own thread, because building a large table takes tens of
//! milliseconds and a process that lives one second cannot wait for the
//! capture's next tick. It wakes on the program's requests (a process it
//! does not know, a pc outside known mappings) and on the capture's (load
//! these target processes now, report). For each process it reads
//! `/proc/<pid>/maps`, builds the table of every executable file it maps
//! that is not loaded yet (once per file: keyed by device and inode, and by
//! build id across copies), and writes the process's mappings.
//!
//! Rows, pages and rules go into the kernel through memory-mapped array
//! maps (one copy, no syscall per element). When the rows or pages are
//! full, the tables sampled least recently (the program stamps each table
//! it uses) are evicted; a process still mapping one asks again when it
//! next hits it, and gets it back.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    os::unix::thread::JoinHandleExt as _,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, RingBuf};
use object::{Object as _, ObjectSegment as _};
use profiler_common::unwind::{
    make_row, row_offset, row_rule, ExecMapping, ExecTable, ProcMappings, UnwindEvent, UnwindPage, UnwindRule,
    EXEC_ID_NONE, MAP_UNWIND_EVENTS, MAP_UNWIND_EXECS, MAP_UNWIND_NOTIFIED, MAP_UNWIND_PAGES, MAP_UNWIND_PROCS,
    MAP_UNWIND_ROWS, MAP_UNWIND_RULES, MAX_PROC_MAPPINGS,
};
use tracing::debug;

use crate::ids::Pid;
use crate::procfs::maps::{read_maps, MapsEntry};
use crate::procfs::pins::open_mapped_file;
use crate::profile::capture::NoTable;
pub(crate) use crate::profile::capture::TablesReport;
use crate::sys::monotonic_ns;
use crate::unwind::table::{self, CompactTable};

/// Every map the unwinder uses: shrunk to one entry under `--unwind fp`.
pub(crate) const MAP_NAMES: [&str; 6] =
    [MAP_UNWIND_RULES, MAP_UNWIND_ROWS, MAP_UNWIND_PAGES, MAP_UNWIND_EXECS, MAP_UNWIND_PROCS, MAP_UNWIND_NOTIFIED];

enum Request {
    /// Load these processes' mappings and tables, then answer.
    Load(Vec<u32>, mpsc::Sender<()>),
    /// Re-read the mappings of every process known: some may have run a
    /// new program while nothing followed `execve` (between captures).
    RefreshAll,
    Report(mpsc::Sender<TablesReport>),
}

/// Handle to the manager thread; dropping it stops the thread.
pub(crate) struct TableManager {
    requests: Option<mpsc::Sender<Request>>,
    wake: RawFd,
    thread: Option<thread::JoinHandle<()>>,
}

/// The unwind maps, taken from the loaded object.
pub(crate) struct TableMaps {
    pub rules: Map,
    pub rows: Map,
    pub pages: Map,
    pub execs: Map,
    pub procs: Map,
    pub events: Map,
}

impl TableMaps {
    /// Takes the unwind maps out of `ebpf`: from now on only the manager
    /// writes them.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        let mut take =
            |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"));
        Ok(Self {
            rules: take(MAP_UNWIND_RULES)?,
            rows: take(MAP_UNWIND_ROWS)?,
            pages: take(MAP_UNWIND_PAGES)?,
            execs: take(MAP_UNWIND_EXECS)?,
            procs: take(MAP_UNWIND_PROCS)?,
            events: take(MAP_UNWIND_EVENTS)?,
        })
    }
}

impl TableManager {
    pub(crate) fn start(maps: TableMaps) -> Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 with a valid two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error()).context("failed to create the table manager's wake pipe");
        }
        let (read_end, write_end) = (fds[0], fds[1]);
        let state = State::new(maps, write_end)?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("unwind-tables".into())
            .spawn(move || state.run(rx, read_end))
            .context("failed to start the table manager thread")?;
        // Started while the kernel verifies the programs on this thread: it
        // builds the target's tables meanwhile (it returns to normal
        // priority after its first requests).
        let raised = crate::sys::raise_like_caller(thread.as_pthread_t());
        tracing::debug!(raised, "table manager started");
        Ok(Self { requests: Some(tx), wake: write_end, thread: Some(thread) })
    }

    fn send(&self, request: Request) -> bool {
        let Some(tx) = &self.requests else { return false };
        if tx.send(request).is_err() {
            return false;
        }
        // SAFETY: a one-byte write to our pipe; a full pipe already wakes.
        unsafe { libc::write(self.wake, [1u8].as_ptr().cast(), 1) };
        true
    }

    /// Loads the mappings and tables of `pids` before returning (at most
    /// `timeout`): a capture of known processes unwinds with tables from
    /// its first sample.
    pub(crate) fn load(&self, pids: &[u32], timeout: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.send(Request::Load(pids.to_vec(), tx)) {
            let _ = rx.recv_timeout(timeout);
        }
    }

    /// Loads `pids` in the background.
    pub(crate) fn load_later(&self, pids: &[u32]) {
        let (tx, _rx) = mpsc::channel();
        self.send(Request::Load(pids.to_vec(), tx));
    }

    /// Re-reads every known process's mappings in the background.
    pub(crate) fn refresh_all(&self) {
        self.send(Request::RefreshAll);
    }

    pub(crate) fn report(&self) -> TablesReport {
        let (tx, rx) = mpsc::channel();
        if self.send(Request::Report(tx)) {
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
        } else {
            TablesReport::default()
        }
    }
}

impl Drop for TableManager {
    fn drop(&mut self) {
        // Closing the channel and waking the thread makes it return.
        self.requests = None;
        // SAFETY: our pipe's write end; closed once, here.
        unsafe {
            libc::write(self.wake, [0u8].as_ptr().cast(), 1);
            libc::close(self.wake);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A file as the process mapped it.
type FileKey = (u64, u64);

struct Exec {
    id: u32,
    tag: u32,
    rows: (u32, u32),
    pages: (u32, u32),
    bytes: u64,
    build_id: Option<Vec<u8>>,
    /// PT_LOAD segments: (file offset, file size, vaddr).
    segments: Vec<(u64, u64, u64)>,
    files: Vec<FileKey>,
}

enum FileState {
    Loaded(u32),
    NoTable,
    /// Being built on the builder thread, for these processes.
    Building(Vec<u32>),
    /// The maps had no room (every table in use): try again after this.
    Full(Instant),
}

/// A large file handed to the builder thread.
struct Job {
    key: FileKey,
    file: Prepared,
}

/// What the builder thread sends back.
struct Built {
    key: FileKey,
    file: Prepared,
    table: Result<CompactTable, table::BuildError>,
    ms: f64,
}

/// An opened file, ready to build.
struct Prepared {
    path: String,
    /// Read through an `object::ReadCache` (headers and the sections
    /// needed, into buffers freed after the build), not mapped whole.
    file: std::fs::File,
    size: u64,
    build_id: Option<Vec<u8>>,
    segments: Vec<(u64, u64, u64)>,
}

/// What the kernel maps hold, as created (the loader may shrink them).
#[derive(Clone, Copy, Debug)]
struct Capacities {
    /// Rules.
    rules: u32,
    /// Row elements (two rows each).
    rows: u32,
    /// Pages.
    pages: u32,
    /// Executable slots.
    execs: u32,
}

struct State {
    caps: Capacities,
    rules_map: MapData,
    rows_map: MapData,
    pages_map: MapData,
    execs: Array<MapData, ExecTable>,
    procs: BpfHashMap<MapData, u32, ProcMappings>,
    events: RingBuf<MapData>,
    rules: HashMap<UnwindRule, u32>,
    rows_free: RangeAlloc,
    pages_free: RangeAlloc,
    free_ids: Vec<u32>,
    next_tag: u32,
    loaded: HashMap<u32, Exec>,
    files: HashMap<FileKey, FileState>,
    by_build_id: HashMap<Vec<u8>, u32>,
    known: HashSet<u32>,
    /// Large files go to the builder thread, so that a process that lives
    /// one second does not wait behind another's 100 MB library.
    jobs: mpsc::Sender<Job>,
    built: mpsc::Receiver<Built>,
    /// Whether the current refresh builds large files itself (a capture
    /// waiting for its targets) or hands them to the builder.
    inline_large: bool,
    without: BTreeMap<String, String>,
    report: TablesReport,
    last_sweep: Instant,
}

/// Bytes per element of the memory-mapped arrays.
const ELEM: usize = 8;

/// Files larger than this (tens of milliseconds to build, up to a second for
/// a compiler's 150 MB library) are built on the builder thread.
const LARGE_FILE: u64 = 16 << 20;

/// A table unused for less than this is not evicted.
const EVICT_IDLE: Duration = Duration::from_secs(10);

/// How long a file that found the maps full waits before trying again.
const FULL_RETRY: Duration = Duration::from_secs(30);

/// Starts the builder thread: it builds the tables of large files and
/// wakes the manager (a byte on its pipe) when one is done.
fn builder(wake: RawFd) -> Result<(mpsc::Sender<Job>, mpsc::Receiver<Built>)> {
    // SAFETY: dup of our pipe's write end; the builder owns and closes it.
    let wake = unsafe { libc::fcntl(wake, libc::F_DUPFD_CLOEXEC, 0) };
    if wake < 0 {
        return Err(std::io::Error::last_os_error()).context("failed to duplicate the wake pipe");
    }
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let (built_tx, built_rx) = mpsc::channel::<Built>();
    thread::Builder::new()
        .name("unwind-builder".into())
        .spawn(move || {
            for Job { key, file } in jobs_rx {
                let started = Instant::now();
                let table = build_from(&file.file);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                if built_tx.send(Built { key, file, table, ms }).is_err() {
                    break;
                }
                // SAFETY: a one-byte write to the pipe this thread owns.
                unsafe { libc::write(wake, [2u8].as_ptr().cast(), 1) };
            }
            // SAFETY: closed once, by its owner.
            unsafe { libc::close(wake) };
        })
        .context("failed to start the table builder thread")?;
    Ok((jobs_tx, built_rx))
}

impl State {
    fn new(maps: TableMaps, wake: RawFd) -> Result<Self> {
        let (jobs, built) = builder(wake)?;
        let data = |map: Map, name: &str| -> Result<MapData> {
            match map {
                Map::Array(d) => Ok(d),
                _ => Err(anyhow!("map `{name}` is not an array")),
            }
        };
        let capacity = |map: &MapData, name: &str| -> Result<u32> {
            Ok(map.info().with_context(|| format!("failed to read the size of map `{name}`"))?.max_entries())
        };
        let rules_map = data(maps.rules, MAP_UNWIND_RULES)?;
        let rows_map = data(maps.rows, MAP_UNWIND_ROWS)?;
        let pages_map = data(maps.pages, MAP_UNWIND_PAGES)?;
        let execs_data = data(maps.execs, MAP_UNWIND_EXECS)?;
        let caps = Capacities {
            rules: capacity(&rules_map, MAP_UNWIND_RULES)?,
            rows: capacity(&rows_map, MAP_UNWIND_ROWS)?,
            pages: capacity(&pages_map, MAP_UNWIND_PAGES)?,
            execs: capacity(&execs_data, MAP_UNWIND_EXECS)?,
        };
        let procs = BpfHashMap::try_from(maps.procs)?;
        let events = RingBuf::try_from(maps.events)?;
        Ok(Self {
            rules_map,
            rows_map,
            pages_map,
            execs: Array::try_from(Map::Array(execs_data))?,
            procs,
            events,
            rules: HashMap::new(),
            rows_free: RangeAlloc::new(caps.rows),
            pages_free: RangeAlloc::new(caps.pages),
            free_ids: (0..caps.execs).rev().collect(),
            caps,
            next_tag: 1,
            loaded: HashMap::new(),
            files: HashMap::new(),
            by_build_id: HashMap::new(),
            known: HashSet::new(),
            jobs,
            built,
            inline_large: false,
            without: BTreeMap::new(),
            report: TablesReport {
                table_capacity_bytes: (u64::from(caps.rows) + u64::from(caps.pages) + u64::from(caps.rules))
                    * ELEM as u64,
                ..TablesReport::default()
            },
            last_sweep: Instant::now(),
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Request>, wake: RawFd) {
        // Raised by its starter for its first requests (see `start`).
        let mut raised = true;
        loop {
            let mut fds = [
                libc::pollfd { fd: self.events.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: valid pollfd array. A timeout only to sweep exited
            // processes now and then.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 5000) };
            let mut drain = [0u8; 64];
            // SAFETY: reading our nonblocking pipe into a local buffer.
            while unsafe { libc::read(wake, drain.as_mut_ptr().cast(), drain.len()) } > 0 {}
            let mut pids: Vec<u32> = Vec::new();
            while let Some(item) = self.events.next() {
                if item.len() >= std::mem::size_of::<UnwindEvent>() {
                    // SAFETY: the program writes whole `UnwindEvent`s; read unaligned.
                    let event: UnwindEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    self.report.requests += 1;
                    if !pids.contains(&event.pid) {
                        pids.push(event.pid);
                    }
                }
            }
            for pid in pids {
                self.refresh(pid, false);
            }
            while let Ok(built) = self.built.try_recv() {
                for pid in self.finish_build(built) {
                    self.refresh(pid, false);
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(Request::Load(pids, done)) => {
                        // A capture waits for these: everything now, ahead
                        // of a busy target (`Urgent`; the builder thread it
                        // starts runs at normal priority).
                        let _urgent = crate::sys::Urgent::enter();
                        for pid in pids {
                            self.refresh(pid, true);
                        }
                        let _ = done.send(());
                    }
                    Ok(Request::RefreshAll) => {
                        self.sweep();
                        let known: Vec<u32> = self.known.iter().copied().collect();
                        for pid in known {
                            self.refresh(pid, false);
                        }
                    }
                    Ok(Request::Report(reply)) => {
                        let _ = reply.send(self.current_report());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        // SAFETY: our pipe's read end, closed once.
                        unsafe { libc::close(wake) };
                        return;
                    }
                }
            }
            if std::mem::take(&mut raised) {
                crate::sys::normal_priority();
            }
            if self.last_sweep.elapsed() > Duration::from_secs(5) {
                self.sweep();
            }
        }
    }

    fn current_report(&self) -> TablesReport {
        let mut r = self.report.clone();
        r.tables_loaded = self.loaded.len();
        r.table_bytes = self.loaded.values().map(|e| e.bytes).sum::<u64>() + self.rules.len() as u64 * ELEM as u64;
        r.processes = self.known.len();
        r.without_tables = self
            .without
            .iter()
            .take(20)
            .map(|(path, reason)| NoTable { path: path.clone(), reason: reason.clone() })
            .collect();
        r
    }

    /// Forgets processes that have exited.
    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let gone: Vec<u32> =
            self.known.iter().copied().filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()).collect();
        for pid in gone {
            let _ = self.procs.remove(&pid);
            self.known.remove(&pid);
        }
    }

    /// (Re)reads `pid`'s mappings, loads the tables they need and tells
    /// the program.
    fn refresh(&mut self, pid: u32, inline_large: bool) {
        self.inline_large = inline_large;
        let Some(maps) = read_maps(Pid::new(pid)) else { return };
        let mut out: Vec<ExecMapping> = Vec::with_capacity(maps.len());
        for entry in &maps {
            let mut m = ExecMapping { start: entry.start, end: entry.end, bias: 0, exec_id: EXEC_ID_NONE, tag: 0 };
            if entry.is_file() {
                if let Some((exec, bias)) = self.exec_for(pid, entry) {
                    m.bias = bias;
                    m.exec_id = exec.0;
                    m.tag = exec.1;
                }
            }
            out.push(m);
        }
        if out.len() > MAX_PROC_MAPPINGS {
            // Keep the mappings with tables; the others fall back anyway.
            out.retain(|m| m.exec_id != EXEC_ID_NONE);
            out.truncate(MAX_PROC_MAPPINGS);
        }
        let mut value = ProcMappings {
            count: out.len() as u32,
            deep_stacks: 0,
            mappings: [ExecMapping::default(); MAX_PROC_MAPPINGS],
        };
        value.mappings[..out.len()].copy_from_slice(&out);
        match self.procs.insert(&pid, &value, 0) {
            Ok(()) => {
                self.known.insert(pid);
            }
            Err(e) => debug!(pid, "cannot store the mappings of a process: {e}"),
        }
    }

    /// The loaded table (id, tag) for `entry`'s file, loading it if needed,
    /// and the mapping's load bias.
    fn exec_for(&mut self, pid: u32, entry: &MapsEntry) -> Option<((u32, u32), u64)> {
        let key = (entry.dev, entry.inode);
        if let Some(FileState::Building(waiting)) = self.files.get_mut(&key) {
            if !waiting.contains(&pid) {
                waiting.push(pid);
            }
            return None;
        }
        let id = match self.files.get(&key) {
            Some(FileState::Loaded(id)) if self.loaded.contains_key(id) => *id,
            Some(FileState::NoTable) => return None,
            Some(FileState::Building(_)) => return None,
            Some(FileState::Full(since)) if since.elapsed() < FULL_RETRY => return None,
            _ => self.load_file(pid, entry, key)?,
        };
        let exec = self.loaded.get(&id)?;
        let bias = bias(&exec.segments, entry)?;
        Some(((exec.id, exec.tag), bias))
    }

    fn load_file(&mut self, pid: u32, entry: &MapsEntry, key: FileKey) -> Option<u32> {
        let path = entry.clean_path().to_owned();
        let Some(pin) = open_mapped_file(Pid::new(pid), entry) else {
            // Not readable now (gone, or no access): try again next time.
            return None;
        };
        let (opened, size) = match pin.file().try_clone().and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((size, f)) => (f, size),
            Err(e) => {
                self.no_table(key, &path, &format!("cannot read the file: {e}"));
                return None;
            }
        };
        let cache = object::ReadCache::new(&opened);
        let elf = object::File::parse(&cache).ok();
        let build_id = elf.as_ref().and_then(|f| f.build_id().ok().flatten()).map(<[u8]>::to_vec);
        if let Some(id) = build_id.as_ref().and_then(|b| self.by_build_id.get(b)).copied() {
            if let Some(exec) = self.loaded.get_mut(&id) {
                exec.files.push(key);
                self.files.insert(key, FileState::Loaded(id));
                return Some(id);
            }
        }
        let segments: Vec<(u64, u64, u64)> = elf
            .as_ref()
            .map(|f| {
                f.segments()
                    .map(|s| {
                        let (offset, size) = s.file_range();
                        (offset, size, s.address())
                    })
                    .collect()
            })
            .unwrap_or_default();
        drop(elf);
        drop(cache);
        let file = Prepared { path, file: opened, size, build_id, segments };
        if file.size > LARGE_FILE && !self.inline_large {
            self.files.insert(key, FileState::Building(vec![pid]));
            if let Err(mpsc::SendError(job)) = self.jobs.send(Job { key, file }) {
                self.no_table(key, &job.file.path, "the table builder stopped");
            }
            return None;
        }
        let started = Instant::now();
        let table = build_from(&file.file);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.finish_build(Built { key, file, table, ms });
        match self.files.get(&key) {
            Some(FileState::Loaded(id)) => Some(*id),
            _ => None,
        }
    }

    /// Uploads a built table; returns the processes that waited for it.
    fn finish_build(&mut self, built: Built) -> Vec<u32> {
        let Built { key, file, table, ms } = built;
        self.report.build_ms += ms;
        // A large build's heap goes back to the system now, not at the
        // next allocation that happens to need it (peak RSS is a limit).
        // SAFETY: plain libc call.
        unsafe { libc::malloc_trim(0) };
        let waiting = match self.files.remove(&key) {
            Some(FileState::Building(pids)) => pids,
            _ => Vec::new(),
        };
        let compact = match table {
            Ok(c) if !c.rows.is_empty() => c,
            Ok(_) => {
                self.no_table(key, &file.path, "no unwind rows");
                return waiting;
            }
            Err(e) => {
                self.no_table(key, &file.path, &e.to_string());
                return waiting;
            }
        };
        self.report.tables_built += 1;
        match self.upload(&compact, file.segments, file.build_id.clone(), key) {
            Ok(id) => {
                debug!(path = file.path, rows = compact.rows.len(), bytes = compact.bytes(), ms, "unwind table loaded");
                self.files.insert(key, FileState::Loaded(id));
                if let Some(b) = file.build_id {
                    self.by_build_id.insert(b, id);
                }
            }
            Err(e) => {
                debug!("cannot load the unwind table of `{}`: {e:#}", file.path);
                self.files.insert(key, FileState::Full(Instant::now()));
                self.without.insert(file.path, format!("{e:#}"));
            }
        }
        waiting
    }

    fn no_table(&mut self, key: FileKey, path: &str, reason: &str) {
        self.files.insert(key, FileState::NoTable);
        self.without.insert(path.to_owned(), reason.to_owned());
    }

    /// Copies `table` into the kernel maps, evicting old tables if needed.
    fn upload(
        &mut self,
        table: &CompactTable,
        segments: Vec<(u64, u64, u64)>,
        build_id: Option<Vec<u8>>,
        key: FileKey,
    ) -> Result<u32> {
        let row_elems = table.rows.len().div_ceil(2) as u32;
        let page_count = table.pages.len() as u32;
        if row_elems > self.caps.rows || page_count > self.caps.pages {
            anyhow::bail!("the table ({} rows, {} pages) is larger than the kernel maps", table.rows.len(), page_count);
        }
        // Global rule indices.
        let mut global = Vec::with_capacity(table.rules.len());
        let mut new_rules = Vec::new();
        for rule in &table.rules {
            let next = self.rules.len() as u32;
            let index = *self.rules.entry(*rule).or_insert_with(|| {
                new_rules.push((next, *rule));
                next
            });
            global.push(index);
        }
        if self.rules.len() > self.caps.rules as usize {
            for (_, rule) in &new_rules {
                self.rules.remove(rule);
            }
            anyhow::bail!("the rule table is full");
        }
        let (rows_at, pages_at, id) = loop {
            let rows_at = self.rows_free.alloc(row_elems);
            let pages_at = self.pages_free.alloc(page_count);
            let id = self.free_ids.last().copied();
            match (rows_at, pages_at, id) {
                (Some(r), Some(p), Some(id)) => {
                    self.free_ids.pop();
                    break (r, p, id);
                }
                (r, p, _) => {
                    if let Some(r) = r {
                        self.rows_free.free(r, row_elems);
                    }
                    if let Some(p) = p {
                        self.pages_free.free(p, page_count);
                    }
                    if !self.evict_one() {
                        anyhow::bail!("no room left in the unwind maps");
                    }
                }
            }
        };
        // New rules got consecutive indices.
        if let Some(&(first, _)) = new_rules.first() {
            let rules: Vec<UnwindRule> = new_rules.iter().map(|&(_, r)| r).collect();
            write_mapped(&self.rules_map, first as usize * ELEM, as_bytes(&rules))
                .context("failed to write the rules")?;
        }
        let first_row = rows_at * 2;
        let mut elems: Vec<u64> = Vec::with_capacity(row_elems as usize);
        for pair in table.rows.chunks(2) {
            let fix = |row: u32| make_row(row_offset(row), global[row_rule(row) as usize]);
            let lo = u64::from(fix(pair[0]));
            let hi = pair.get(1).map_or(0, |&r| u64::from(fix(r)));
            elems.push(lo | (hi << 32));
        }
        write_mapped(&self.rows_map, rows_at as usize * ELEM, as_bytes(&elems)).context("failed to write the rows")?;
        let pages: Vec<UnwindPage> =
            table.pages.iter().map(|p| UnwindPage { first_row: p.first_row + first_row, count: p.count }).collect();
        write_mapped(&self.pages_map, pages_at as usize * ELEM, as_bytes(&pages))
            .context("failed to write the pages")?;
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let value = ExecTable {
            first_page: table.first_page,
            page_index: pages_at,
            page_count,
            tag,
            _pad: 0,
            // Fresh tables count as just used, so loading one never evicts it.
            last_used_ns: monotonic_ns(),
        };
        self.execs.set(id, &value, 0).context("failed to write the table index")?;
        let bytes = (row_elems as u64 + page_count as u64) * ELEM as u64;
        self.loaded.insert(
            id,
            Exec {
                id,
                tag,
                rows: (rows_at, row_elems),
                pages: (pages_at, page_count),
                bytes,
                build_id,
                segments,
                files: vec![key],
            },
        );
        Ok(id)
    }

    /// Evicts the table sampled least recently. False if there is none.
    fn evict_one(&mut self) -> bool {
        let used = |id: &u32| self.execs.get(id, 0).map(|e| e.last_used_ns).unwrap_or(0);
        let (id, last_used) = match self.loaded.keys().map(|id| (*id, used(id))).min_by_key(|&(_, t)| t) {
            Some(oldest) => oldest,
            None => return false,
        };
        // A table used moments ago is still needed: evicting it would only
        // have it rebuilt (a host full of compilers thrashes otherwise).
        if monotonic_ns().saturating_sub(last_used) < EVICT_IDLE.as_nanos() as u64 {
            return false;
        }
        let Some(exec) = self.loaded.remove(&id) else { return false };
        // A zero tag matches no mapping: processes still using it fall back
        // to frame pointers and ask for it again.
        let _ = self.execs.set(id, &ExecTable::default(), 0);
        self.rows_free.free(exec.rows.0, exec.rows.1);
        self.pages_free.free(exec.pages.0, exec.pages.1);
        self.free_ids.push(id);
        for key in exec.files {
            self.files.remove(&key);
        }
        if let Some(b) = exec.build_id {
            self.by_build_id.remove(&b);
        }
        self.report.evictions += 1;
        debug!(id, bytes = exec.bytes, "unwind table evicted");
        true
    }
}

/// The compact table of `file`, read through a cache of the parts it
/// needs (freed on return).
fn build_from(file: &std::fs::File) -> Result<CompactTable, table::BuildError> {
    let cache = object::ReadCache::new(file);
    table::build(&cache).and_then(|t| CompactTable::new(&t))
}

/// The load bias of `entry`: what to subtract from a pc in it to get the
/// ELF virtual address.
fn bias(segments: &[(u64, u64, u64)], entry: &MapsEntry) -> Option<u64> {
    let page = |x: u64| x & !0xfff;
    // The segment the mapping was made for starts in its first page; a
    // segment before it may share that page (lld packs read-only data and
    // text into one file page, at different addresses).
    let &(offset, _, vaddr) = segments.iter().find(|&&(offset, _, _)| page(offset) == entry.offset).or_else(|| {
        segments
            .iter()
            .filter(|&&(offset, size, _)| page(offset) <= entry.offset && entry.offset < offset + size)
            .max_by_key(|&&(offset, _, _)| offset)
    })?;
    let vaddr_at_start = vaddr.wrapping_sub(offset.wrapping_sub(entry.offset));
    Some(entry.start.wrapping_sub(vaddr_at_start))
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is plain old data (integers, `#[repr(C)]` structs of them).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Writes `bytes` at byte `offset` of a `BPF_F_MMAPABLE` array map through
/// a window mapped just for the copy, so the pages count toward this
/// process's memory only while it lasts.
fn write_mapped(map: &MapData, offset: usize, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    const PAGE: usize = 4096;
    let fd = map.fd().as_fd().as_raw_fd();
    let start = offset / PAGE * PAGE;
    let len = (offset + bytes.len() - start).div_ceil(PAGE) * PAGE;
    // SAFETY: a shared mapping of the map's own memory, within its size
    // (the allocator never hands out more than the capacity).
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, start as i64)
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("failed to map the unwind array");
    }
    // SAFETY: the window covers `offset - start + bytes.len()` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.cast::<u8>().add(offset - start), bytes.len());
        libc::munmap(ptr, len);
    }
    Ok(())
}

/// First-fit allocator of index ranges in an array map.
struct RangeAlloc {
    /// Free ranges: start → length, never adjacent.
    free: BTreeMap<u32, u32>,
}

impl RangeAlloc {
    fn new(capacity: u32) -> Self {
        Self { free: BTreeMap::from([(0, capacity)]) }
    }

    fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        let (&start, &free) = self.free.iter().find(|&(_, &l)| l >= len)?;
        self.free.remove(&start);
        if free > len {
            self.free.insert(start + len, free - len);
        }
        Some(start)
    }

    fn free(&mut self, start: u32, len: u32) {
        if len == 0 {
            return;
        }
        let (mut start, mut len) = (start, len);
        if let Some((&prev, &plen)) = self.free.range(..start).next_back() {
            if prev + plen == start {
                self.free.remove(&prev);
                start = prev;
                len += plen;
            }
        }
        if let Some(&next_len) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += next_len;
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_reused_and_coalesced() {
        let mut a = RangeAlloc::new(100);
        let x = a.alloc(40).unwrap();
        let y = a.alloc(40).unwrap();
        assert_eq!((x, y), (0, 40));
        assert_eq!(a.alloc(30), None);
        a.free(x, 40);
        assert_eq!(a.alloc(30), Some(0));
        a.free(0, 30);
        a.free(y, 40);
        assert_eq!(a.free, BTreeMap::from([(0, 100)]));
        assert_eq!(a.alloc(100), Some(0));
    }

    /// A file mapped read-only into this process, as the manager would see
    /// it in `/proc/self/maps`.
    struct Mapped {
        _map: memmap2::Mmap,
        entry: MapsEntry,
    }

    fn map_file(path: &str) -> Mapped {
        use std::os::unix::fs::MetadataExt as _;
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let meta = file.metadata().unwrap();
        // SAFETY: a read-only mapping of a system library nobody rewrites
        // during the test.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let start = map.as_ptr() as u64;
        let end = start + (map.len() as u64).next_multiple_of(4096);
        let entry = MapsEntry { start, end, offset: 0, dev: meta.dev(), inode: meta.ino(), path: path.to_owned() };
        Mapped { _map: map, entry }
    }

    /// Kernel row elements (two rows each) of the table of `path`.
    fn row_elems(path: &str) -> u32 {
        let data = std::fs::read(path).unwrap();
        let compact = CompactTable::new(&table::build(&data[..]).unwrap()).unwrap();
        compact.rows.len().div_ceil(2) as u32
    }

    /// Creates the object's maps (no program is loaded) with the rows map
    /// shrunk to `rows` elements. `None` without the privilege to.
    fn state_with_rows(rows: u32) -> Option<(State, RawFd)> {
        if crate::sys::euid() != 0 {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(!ci, "creating BPF maps needs root; under CI=true this test must run, not skip");
            eprintln!("skipped: creating BPF maps needs root");
            return None;
        }
        crate::sys::raise_memlock_limit();
        let mut loader = aya::EbpfLoader::new();
        loader.map_max_entries(MAP_UNWIND_ROWS, rows);
        let mut ebpf = loader.load(super::super::loader::EBPF_OBJECT).expect("the object's maps are created");
        let maps = TableMaps::take(&mut ebpf).unwrap();
        let mut fds = [0; 2];
        // SAFETY: pipe2 with a valid two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let mut state = State::new(maps, fds[1]).unwrap();
        state.inline_large = true;
        Some((state, fds[0]))
    }

    fn stamp(state: &mut State, id: u32, ago: Duration) {
        let mut exec = state.execs.get(&id, 0).unwrap();
        exec.last_used_ns = monotonic_ns() - ago.as_nanos() as u64;
        state.execs.set(id, &exec, 0).unwrap();
    }

    fn is_loaded(state: &State, m: &Mapped) -> bool {
        matches!(state.files.get(&(m.entry.dev, m.entry.inode)), Some(FileState::Loaded(id)) if state.loaded.contains_key(id))
    }

    /// Bounded maps filled beyond capacity: the table sampled least
    /// recently goes (counted, its slot's tag changed so stale mappings
    /// fall back), a table the program asks for again comes back, and
    /// tables sampled in the last seconds are never evicted.
    #[test]
    fn least_recently_sampled_table_is_evicted_and_reloaded() {
        const LIBSTDCXX: &str = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6";
        const LIBM: &str = "/lib/x86_64-linux-gnu/libm.so.6";
        const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
        let (big, mid, small) = (row_elems(LIBSTDCXX), row_elems(LIBM), row_elems(LIBC));
        // Three tables fit only after one of the first two is gone, and the
        // third fits where the first was.
        assert!(big >= small, "libstdc++ ({big}) has fewer rows than libc ({small})");
        let Some((mut state, _wake)) = state_with_rows(big + mid + small - 1) else { return };
        let pid = std::process::id();
        let (a, b, c) = (map_file(LIBSTDCXX), map_file(LIBM), map_file(LIBC));

        let ((id_a, tag_a), _) = state.exec_for(pid, &a.entry).expect("libstdc++ loads");
        let ((id_b, _), _) = state.exec_for(pid, &b.entry).expect("libm loads");
        assert_eq!(state.report.evictions, 0);
        stamp(&mut state, id_a, Duration::from_secs(60));
        stamp(&mut state, id_b, Duration::from_secs(30));

        // No room for libc: libstdc++, sampled longest ago, goes.
        let ((id_c, _), _) = state.exec_for(pid, &c.entry).expect("libc loads after an eviction");
        assert_eq!(state.report.evictions, 1);
        assert!(!is_loaded(&state, &a) && is_loaded(&state, &b) && is_loaded(&state, &c));
        assert_ne!(state.execs.get(&id_a, 0).unwrap().tag, tag_a, "a stale mapping must not match the slot");

        // The program asks for libstdc++ again (a stale tag): it is built
        // again and libm, now the least recently sampled, makes room.
        stamp(&mut state, id_b, Duration::from_secs(50));
        stamp(&mut state, id_c, Duration::from_secs(20));
        let ((id_a2, tag_a2), _) = state.exec_for(pid, &a.entry).expect("libstdc++ is loaded again");
        assert_eq!(state.report.evictions, 2);
        assert!(is_loaded(&state, &a) && !is_loaded(&state, &b) && is_loaded(&state, &c));
        assert_ne!(tag_a2, tag_a);
        assert_eq!(state.execs.get(&id_a2, 0).unwrap().tag, tag_a2);
        assert_eq!(state.report.tables_built, 4);

        // Everything loaded was sampled just now: nothing is evicted, and
        // libm waits without a table.
        stamp(&mut state, id_a2, Duration::ZERO);
        stamp(&mut state, id_c, Duration::ZERO);
        assert!(state.exec_for(pid, &b.entry).is_none());
        assert_eq!(state.report.evictions, 2);
        assert!(is_loaded(&state, &a) && is_loaded(&state, &c));
    }

    #[test]
    fn load_bias() {
        let entry =
            |start, offset| MapsEntry { start, end: start + 0x1000, offset, dev: 1, inode: 1, path: "/lib/x".into() };
        // A PIE: text at file offset 0x1040, vaddr 0x1040, mapped at 0x5555_0000_1000.
        let segments = [(0, 0x800, 0), (0x1040, 0x2000, 0x1040)];
        assert_eq!(bias(&segments, &entry(0x5555_0000_1000, 0x1000)), Some(0x5555_0000_0000));
        // A non-PIE executable: vaddr 0x401000 at offset 0x1000, mapped as is.
        let segments = [(0x1000, 0x5000, 0x401000)];
        assert_eq!(bias(&segments, &entry(0x401000, 0x1000)), Some(0));
        // lld: read-only data ends in the page where text starts, one page
        // lower in the address space than in the file.
        let segments = [(0, 0x1699c, 0), (0x169a0, 0x3f3d0, 0x179a0)];
        assert_eq!(bias(&segments, &entry(0x5555_0001_7000, 0x16000)), Some(0x5555_0000_0000));
    }
}
