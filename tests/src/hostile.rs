//! The checks of the hostile probe (`tests/hostile.rs`): what "refused
//! cleanly", "survived" and "nothing lost" mean, made into assertions that
//! every case of its two tables shares.
//!
//! - A refusal is the exit code the contract gives (2 usage, 1 runtime),
//!   exactly one `error:` line on stderr (no panic, no backtrace, no
//!   multi-line dump) and nothing on stdout ([`assert_one_error`]); what it
//!   may not touch is compared before and after ([`Snapshot`]).
//! - Files are valid when every pprof decodes (`go tool pprof -raw`), every
//!   flamegraph is a whole SVG, every manifest parses and lists exactly the
//!   files of its capture, and no temporary file is left
//!   ([`assert_captures_valid`]).
//! - No BPF program or link of ours outlives the process that loaded it
//!   ([`OurBpf`]), compared by id with what was loaded before, so programs
//!   of anything else on the machine do not matter.
//!
//! [`Tally`] runs each case under `catch_unwind`, so one failing case names
//! itself and the others still run: the closing line counts them all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::{file_name, pprof_raw, read_folded};
use crate::triggers::read_manifest;

/// The names of stackwatch's BPF programs, as `bpftool` lists them: every
/// program of `profiler-ebpf` (kept in step by a test), and those built by
/// user space: the kernel's naming of kernel addresses (`symbolize`) and
/// `doctor`'s check.
pub const OUR_PROGRAMS: [&str; 13] = [
    "cpu_sample",
    "fault_sample",
    "history_sample",
    "malloc_entry",
    "calloc_entry",
    "realloc_entry",
    "free_entry",
    "alloc_return",
    "go_alloc",
    "sched_switch",
    "process_exec",
    "sw_ksym_names",
    "sw_doctor",
];

/// How a case failed when the failure is collected data that went missing:
/// [`Tally`] counts these as "data lost".
const LOST: &str = "data lost: ";

/// Fails the current case as a loss of collected data.
pub fn data_lost(what: &str) -> ! {
    panic!("{LOST}{what}")
}

/// Which table a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    BadInput,
    Fault,
}

/// Counts of the probe, and the failures by case name.
#[derive(Debug, Default)]
pub struct Tally {
    bad_tried: usize,
    bad_clean: usize,
    faults_tried: usize,
    faults_survived: usize,
    lost: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Runs one bad-input case; a panic inside fails it, named.
    pub fn bad_input(&mut self, name: &str, case: impl FnOnce()) {
        self.run(Table::BadInput, name, case);
    }

    /// Runs one fault case; a panic inside fails it, named.
    pub fn fault(&mut self, name: &str, case: impl FnOnce()) {
        self.run(Table::Fault, name, case);
    }

    /// Runs a check that is not a case of either table (e.g. that nothing
    /// is left loaded after all of them); a failure is reported like a case's.
    pub fn check(&mut self, name: &str, check: impl FnOnce()) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(check)) {
            self.failures.push(format!("check `{name}`: {}", panic_message(payload.as_ref())));
        }
    }

    fn run(&mut self, table: Table, name: &str, case: impl FnOnce()) {
        if !selected(name) {
            return;
        }
        let outcome = panic::catch_unwind(AssertUnwindSafe(case));
        let ok = outcome.is_ok();
        match table {
            Table::BadInput => {
                self.bad_tried += 1;
                self.bad_clean += usize::from(ok);
            }
            Table::Fault => {
                self.faults_tried += 1;
                self.faults_survived += usize::from(ok);
            }
        }
        if let Err(payload) = outcome {
            let message = panic_message(payload.as_ref());
            if message.starts_with(LOST) {
                self.lost += 1;
            }
            let table = match table {
                Table::BadInput => "bad input",
                Table::Fault => "fault",
            };
            self.failures.push(format!("{table} `{name}`: {message}"));
        }
        // The case's own progress line, for `--nocapture` runs and failures.
        eprintln!("hostile: {} `{name}`", if ok { "ok  " } else { "FAIL" });
    }

    /// `hostile: N bad inputs rejected cleanly, M faults survived, data lost: K`
    /// with what was tried.
    pub fn summary(&self) -> String {
        format!(
            "hostile: {} bad inputs rejected cleanly (of {} tried), {} faults survived (of {} tried), data lost: {}",
            self.bad_clean, self.bad_tried, self.faults_survived, self.faults_tried, self.lost
        )
    }

    /// Prints the summary (past libtest's capture, so a passing run shows
    /// it too) and fails the test with every failed case, by name.
    pub fn finish(self) {
        // `eprintln!` is captured by libtest; a direct write to stderr is not.
        let _ = writeln!(std::io::stderr(), "{}", self.summary());
        if !self.failures.is_empty() {
            let mut text = format!("{} of the hostile cases failed:\n", self.failures.len());
            for failure in &self.failures {
                let _ = writeln!(text, "- {failure}");
            }
            let _ = writeln!(text, "{}", self.summary());
            panic!("{text}");
        }
    }

    pub fn bad_inputs_tried(&self) -> usize {
        self.bad_tried
    }

    pub fn faults_tried(&self) -> usize {
        self.faults_tried
    }
}

/// The variable that narrows a run to the cases whose name contains its
/// value, for working on a few of them; the full probe runs without it.
pub const ONLY: &str = "STACKWATCH_HOSTILE_ONLY";

/// Whether the case `name` runs (see [`ONLY`]).
pub fn selected(name: &str) -> bool {
    std::env::var(ONLY).map_or(true, |only| name.contains(&only))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Checks a refusal: exit `code`, exactly one non-empty stderr line, which
/// starts with `error: ` and holds no panic or backtrace, and nothing on
/// stdout. Returns the line.
pub fn assert_one_error(output: &Output, code: i32, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{what}: expected exactly one `error:` line on stderr, got {} lines:\n{stderr}",
        lines.len()
    );
    for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!lines[0].contains(word), "{what}: the error is a crash: {}", lines[0]);
    }
    assert!(stdout.trim().is_empty(), "{what}: printed on stdout:\n{stdout}");
    lines[0].to_owned()
}

/// Lines of a log (or stderr) that show a crash.
pub fn crash_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("panicked") || l.contains("RUST_BACKTRACE") || l.contains("stack backtrace"))
        .collect()
}

/// What a directory tree holds: every path under it with its type, size
/// and, for files, modification time. Two equal snapshots mean nothing was
/// created, removed or rewritten (a directory's own mtime is left out: a
/// refused start may make and take back a directory, which the contract
/// allows, as long as nothing stays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, String>);

impl Snapshot {
    pub fn of(dir: &Path) -> Self {
        let mut map = BTreeMap::new();
        walk(dir, &mut map);
        Self(map)
    }

    /// What changed from `before` to `self`, one line per path.
    pub fn diff(&self, before: &Self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, now) in &self.0 {
            match before.0.get(path) {
                None => out.push(format!("created `{}` ({now})", path.display())),
                Some(was) if was != now => out.push(format!("changed `{}` ({was} -> {now})", path.display())),
                Some(_) => {}
            }
        }
        for path in before.0.keys().filter(|p| !self.0.contains_key(*p)) {
            out.push(format!("removed `{}`", path.display()));
        }
        out
    }
}

fn walk(dir: &Path, map: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let kind = meta.file_type();
        let desc = if kind.is_dir() {
            "dir".to_owned()
        } else if kind.is_symlink() {
            format!("symlink to {:?}", fs::read_link(&path).unwrap_or_default())
        } else {
            format!("{:?} len {} mtime {}.{}", kind, meta.len(), meta.mtime(), meta.mtime_nsec())
        };
        map.insert(path.clone(), desc);
        if kind.is_dir() {
            walk(&path, map);
        }
    }
}

/// Asserts `dir`'s tree is as in `before`.
pub fn assert_unchanged(dir: &Path, before: &Snapshot, what: &str) {
    let diff = Snapshot::of(dir).diff(before);
    assert!(diff.is_empty(), "{what}: the refusal touched the disk:\n{}", diff.join("\n"));
}

/// The BPF programs and links of ours loaded now (by `bpftool`): programs
/// named as ours, links to those programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OurBpf {
    pub programs: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
}

impl OurBpf {
    pub fn now() -> Self {
        let programs: BTreeSet<u64> = bpftool_json(&["prog", "show"])
            .iter()
            .filter(|p| p["name"].as_str().is_some_and(|n| OUR_PROGRAMS.contains(&n)))
            .filter_map(|p| p["id"].as_u64())
            .collect();
        let links = bpftool_json(&["link", "show"])
            .iter()
            .filter(|l| l["prog_id"].as_u64().is_some_and(|id| programs.contains(&id)))
            .filter_map(|l| l["id"].as_u64())
            .collect();
        Self { programs, links }
    }

    /// What of ours process `pid` holds open now.
    pub fn held_by(pid: u32) -> Self {
        let all = Self::now();
        let holders = bpf_holders();
        let held = |key: &str, id: &u64| holders.get(&(key.to_owned(), *id)).is_some_and(|pids| pids.contains(&pid));
        Self {
            programs: all.programs.iter().filter(|id| held("prog_id", id)).copied().collect(),
            links: all.links.iter().filter(|id| held("link_id", id)).copied().collect(),
        }
    }

    /// What is loaded now that was not in `before`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            programs: self.programs.difference(&before.programs).copied().collect(),
            links: self.links.difference(&before.links).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.links.is_empty()
    }

    /// Drops what a process outside this test holds open: a stackwatch an
    /// operator (or another checkout's benchmark) runs beside the tests is
    /// not this test's leak. What no process holds (pinned, or kept by the
    /// kernel) or a process of this test still holds stays.
    fn without_foreign(mut self) -> Self {
        if self.is_empty() {
            return self;
        }
        let holders = bpf_holders();
        let foreign = |id: &u64, key: &str| {
            holders.get(&(key.to_owned(), *id)).is_some_and(|pids| pids.iter().all(|&pid| !descends_from_us(pid)))
        };
        self.programs.retain(|id| !foreign(id, "prog_id"));
        self.links.retain(|id| !foreign(id, "link_id"));
        self
    }

    /// Asserts that nothing of ours loaded after `before` is still there,
    /// once the kernel has had a few seconds to free what was closed
    /// (programs go after an RCU grace period).
    pub fn assert_none_left_since(before: &Self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = Self::now().since(before).without_foreign();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: BPF objects of ours left loaded: programs {:?}, links {:?}",
                left.programs,
                left.links
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Which processes hold which BPF objects open: `(prog_id|link_id, id)` →
/// pids, from every `/proc/<pid>/fdinfo/<fd>`.
fn bpf_holders() -> BTreeMap<(String, u64), BTreeSet<u32>> {
    let mut holders: BTreeMap<(String, u64), BTreeSet<u32>> = BTreeMap::new();
    let Ok(procs) = fs::read_dir("/proc") else { return holders };
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else { continue };
        for fd in fds.filter_map(Result::ok) {
            let info = fs::read_to_string(fd.path()).unwrap_or_default();
            // A link's fdinfo names its program too; only its own id is its.
            let key = if info.contains("link_id:") { "link_id" } else { "prog_id" };
            let id = info.lines().find_map(|l| l.strip_prefix(key)?.trim_start_matches(':').trim().parse::<u64>().ok());
            if let Some(id) = id {
                holders.entry((key.to_owned(), id)).or_default().insert(pid);
            }
        }
    }
    holders
}

/// Whether `pid` is this test process or one of its descendants.
fn descends_from_us(mut pid: u32) -> bool {
    let me = std::process::id();
    for _ in 0..64 {
        if pid == me {
            return true;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rfind(')').and_then(|at| stat[at + 1..].split_whitespace().nth(1)?.parse().ok());
        match ppid {
            Some(ppid) if ppid > 0 => pid = ppid,
            _ => return false,
        }
    }
    false
}

fn bpftool_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = match Command::new("bpftool").arg("-j").args(args).output() {
        Ok(out) => out,
        Err(err) => panic!("cannot run `bpftool` (install it with `cargo xtask setup`): {err}"),
    };
    assert!(out.status.success(), "bpftool {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    // bpftool prints nothing (not `[]`) on some versions when there is nothing.
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(other) => panic!("bpftool {args:?} printed JSON that is not a list: {other}"),
        Err(err) => panic!("bpftool {args:?} printed no JSON ({err}): {}", String::from_utf8_lossy(&out.stdout)),
    }
}

/// What [`assert_captures_valid`] found.
#[derive(Clone, Debug, Default)]
pub struct Captures {
    /// Manifests, sorted.
    pub manifests: Vec<PathBuf>,
    /// Files no manifest lists (only allowed where asked).
    pub orphans: Vec<PathBuf>,
    /// Total samples of the cpu profiles.
    pub cpu_samples: u64,
}

/// Checks every file in `dir` (which only stackwatch writes to): no
/// temporary or hidden file, only regular files, every manifest parses and
/// lists files that exist and belong to no other manifest, every file
/// listed as `failed` is absent, every pprof decodes with `go tool pprof`
/// and holds the samples its manifest counts, every SVG is whole, every
/// folded file parses. Files no manifest lists are an error unless
/// `allow_orphans` (a writer killed before its manifest leaves whole files
/// without one). A missing `dir` has no captures.
pub fn assert_captures_valid(dir: &Path, allow_orphans: bool) -> Captures {
    let mut found = Captures::default();
    let Ok(entries) = fs::read_dir(dir) else { return found };
    let mut present = BTreeSet::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = file_name(&path);
        assert!(!name.starts_with('.'), "a temporary or hidden file is left in `{}`: {name}", dir.display());
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat `{}`: {e}", path.display()));
        assert!(meta.file_type().is_file(), "`{}` is not a regular file", path.display());
        present.insert(name);
    }
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let manifests: Vec<String> =
        present.iter().filter(|n| n.contains("-capture-") && n.ends_with(".json")).cloned().collect();
    for name in &manifests {
        let path = dir.join(name);
        let manifest = read_manifest(&path);
        let Some(files) = manifest["files"].as_array() else {
            panic!("`{}` has no `files` list:\n{manifest}", path.display())
        };
        let mut cpu_pprof_samples = None;
        for file in files {
            let (Some(listed_name), Some(format)) = (file["path"].as_str(), file["format"].as_str()) else {
                panic!("`{}` lists a file without a path or format: {file}", path.display())
            };
            let listed_name = file_name(Path::new(listed_name));
            assert!(
                present.contains(&listed_name),
                "{LOST}`{}` lists `{listed_name}`, which is not in `{}`",
                path.display(),
                dir.display()
            );
            assert!(listed.insert(listed_name.clone()), "`{listed_name}` is listed by two manifests");
            let file_path = dir.join(&listed_name);
            match format {
                "pprof" => {
                    let raw = pprof_raw(&file_path);
                    assert!(!raw.sample_types.is_empty(), "`{}` has no sample types", file_path.display());
                    if file["kind"] == "cpu" {
                        cpu_pprof_samples = Some(raw.total());
                    }
                }
                "svg" => {
                    let text = fs::read_to_string(&file_path)
                        .unwrap_or_else(|e| panic!("read `{}`: {e}", file_path.display()));
                    assert!(
                        text.contains("<svg") && text.trim_end().ends_with("</svg>"),
                        "`{}` is not a whole SVG ({} bytes)",
                        file_path.display(),
                        text.len()
                    );
                }
                "folded" => {
                    read_folded(&file_path);
                }
                other => panic!("`{}` lists a file of unknown format `{other}`", path.display()),
            }
        }
        for failed in manifest["failed"].as_array().into_iter().flatten() {
            let failed_name = file_name(Path::new(failed["path"].as_str().unwrap_or_default()));
            assert!(
                !present.contains(&failed_name),
                "`{failed_name}` is listed as failed by `{}` but exists (a partial file?)",
                path.display()
            );
        }
        // The pprof holds what the manifest says was collected.
        let cpu_manifest_samples = manifest["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["kind"] == "cpu")
            .and_then(|p| p["samples"].as_u64());
        if let (Some(in_pprof), Some(in_manifest)) = (cpu_pprof_samples, cpu_manifest_samples) {
            assert_eq!(
                in_pprof,
                in_manifest,
                "{LOST}the cpu pprof of `{}` holds {in_pprof} samples, its manifest counts {in_manifest}",
                path.display()
            );
            found.cpu_samples += in_pprof;
        }
        listed.insert(name.clone());
        found.manifests.push(path);
    }
    found.orphans = present.difference(&listed).map(|n| dir.join(n)).collect();
    assert!(
        allow_orphans || found.orphans.is_empty(),
        "files in `{}` that no manifest lists: {:?}",
        dir.display(),
        found.orphans
    );
    if allow_orphans {
        // Whole even without a manifest.
        for orphan in &found.orphans {
            let name = file_name(orphan);
            if name.ends_with(".pb.gz") {
                pprof_raw(orphan);
            } else if name.ends_with(".svg") {
                let text = fs::read_to_string(orphan).unwrap_or_default();
                assert!(text.trim_end().ends_with("</svg>"), "`{}` is not a whole SVG", orphan.display());
            } else if name.ends_with(".folded") {
                read_folded(orphan);
            }
        }
    }
    found
}

/// Resident memory of `pid` in KiB (`VmRSS`), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, …), if it exists.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().next()?.chars().next()
}

/// Waits until `pid` is in state `state`; panics after `timeout`.
pub fn wait_proc_state(pid: u32, state: char, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while proc_state(pid) != Some(state) {
        assert!(Instant::now() < deadline, "pid {pid} is `{:?}`, not `{state}`, after {timeout:?}", proc_state(pid));
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_and_names_failures() {
        let mut tally = Tally::default();
        tally.bad_input("fine", || {});
        tally.bad_input("broken", || panic!("refused twice"));
        tally.fault("survived", || {});
        tally.fault("lost", || data_lost("the capture vanished"));
        assert_eq!(
            tally.summary(),
            "hostile: 1 bad inputs rejected cleanly (of 2 tried), 1 faults survived (of 2 tried), data lost: 1"
        );
        assert_eq!(tally.failures.len(), 2);
        assert!(tally.failures[0].starts_with("bad input `broken`: refused twice"), "{:?}", tally.failures);
        assert!(tally.failures[1].contains("data lost: the capture vanished"), "{:?}", tally.failures);
    }

    /// A program missing from [`OUR_PROGRAMS`] would be one no leak check
    /// sees.
    #[test]
    fn our_programs_name_every_ebpf_program() {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf/src/main.rs");
        let text = fs::read_to_string(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        let mut lines = text.lines().map(str::trim);
        let mut programs = Vec::new();
        while let Some(line) = lines.next() {
            let attribute = ["#[perf_event", "#[uprobe", "#[uretprobe", "#[btf_tracepoint", "#[raw_tracepoint"];
            if attribute.iter().any(|a| line.starts_with(a)) {
                let function = lines.next().and_then(|l| l.strip_prefix("fn ")).and_then(|l| l.split('(').next());
                programs.push(function.unwrap_or_else(|| panic!("no function after {line}")).to_owned());
            }
        }
        assert!(programs.len() >= 10, "found only {programs:?} in {source}");
        for program in &programs {
            assert!(OUR_PROGRAMS.contains(&program.as_str()), "`{program}` is not in OUR_PROGRAMS");
        }
    }

    #[test]
    fn snapshots_see_what_changed() {
        let dir = crate::scratch_dir("hostile-snapshot-unit");
        fs::write(dir.join("a"), b"1").unwrap();
        let before = Snapshot::of(&dir);
        assert!(Snapshot::of(&dir).diff(&before).is_empty());
        fs::create_dir(dir.join("made")).unwrap();
        fs::remove_file(dir.join("a")).unwrap();
        let diff = Snapshot::of(&dir).diff(&before);
        assert_eq!(diff.len(), 2, "{diff:?}");
    }

    #[test]
    fn one_error_line_is_checked() {
        let ok = |stderr: &str| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(2 << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        assert_eq!(assert_one_error(&ok("error: bad\n"), 2, "x"), "error: bad");
        for bad in ["error: a\nerror: b\n", "thread 'main' panicked at x\n", "warning: x\n", ""] {
            let out = ok(bad);
            assert!(panic::catch_unwind(|| assert_one_error(&out, 2, "x")).is_err(), "{bad:?} passed");
        }
    }
}
