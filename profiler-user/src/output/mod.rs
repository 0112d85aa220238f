//! The output stage: turns one capture's symbolized profiles into files.
//!
//! For each profile kind a capture writes a gzipped pprof (`pprof`), an
//! inferno flamegraph (`flamegraph`) and optionally the folded stacks behind
//! it (`folded`), then a JSON manifest (`manifest`) describing the capture and
//! listing the files. Every file goes through `files`, which writes it as an
//! unnamed file (or under a hidden temporary name), mode 0640, and links it
//! into place without ever replacing an existing file. A file that cannot be
//! written (a full disk) does not stop the others, and the manifest, written
//! last, says which files are missing and why. `report` renders the short
//! top-functions table `record` prints.
//!
//! File names follow the contract: `<name>-<pid>-<kind>-<YYYYMMDDTHHMMSSZ>.pb.gz`
//! (and `.svg`, `.folded`) and `<name>-<pid>-capture-<ts>.json`, with `-<pid>`
//! left out for a whole-host capture. When any of those names is already taken
//! (two captures in the same second, or a leftover), the whole capture gets
//! the first free suffix `-1`, `-2`, … before the extension, so its files keep
//! matching names and nothing is overwritten.

pub mod files;
pub mod flamegraph;
pub mod folded;
pub mod manifest;
pub mod pprof;
pub mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};

use crate::capture::{CaptureInfo, TargetInfo};
use crate::profile::Profile;

use self::files::OutputDir;

/// Which file formats to write for each profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub pprof: bool,
    pub svg: bool,
    pub folded: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self { pprof: true, svg: true, folded: false }
    }
}

impl Formats {
    /// Parses a comma-separated list such as `pprof,svg,folded`. The list
    /// replaces the default rather than adding to it; `flamegraph` is accepted
    /// for `svg`.
    pub fn parse(list: &str) -> Result<Formats, String> {
        let mut formats = Formats { pprof: false, svg: false, folded: false };
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_lowercase().as_str() {
                "pprof" => formats.pprof = true,
                "svg" | "flamegraph" => formats.svg = true,
                "folded" => formats.folded = true,
                _ => return Err(format!("unknown output format `{word}` (expected pprof, svg or folded)")),
            }
        }
        if formats == (Formats { pprof: false, svg: false, folded: false }) {
            return Err("no output format given (expected pprof, svg or folded)".to_owned());
        }
        Ok(formats)
    }
}

/// What a written file holds, as listed in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Pprof,
    Svg,
    Folded,
    Manifest,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            FileFormat::Pprof => "pb.gz",
            FileFormat::Svg => "svg",
            FileFormat::Folded => "folded",
            FileFormat::Manifest => "json",
        }
    }
}

/// A file of the capture before it is written.
struct Planned {
    /// File name without suffix and extension.
    stem: String,
    format: FileFormat,
    /// Index into the capture's profiles (`None` for the manifest).
    profile: Option<usize>,
}

impl Planned {
    fn file_name(&self, suffix: &str) -> String {
        format!("{}{suffix}.{}", self.stem, self.format.extension())
    }
}

/// A file of a capture that could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedFile {
    /// Where it would have been.
    pub path: PathBuf,
    /// Why not: the error with its causes.
    pub reason: String,
}

/// What [`write_capture`] wrote and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files written, in order; the manifest last when it was written.
    pub paths: Vec<PathBuf>,
    /// Files that could not be written, with the reason.
    pub failed: Vec<FailedFile>,
}

impl Written {
    /// Why the capture is incomplete, naming every file that failed and
    /// what was kept; `None` when every file was written.
    pub fn error(&self) -> Option<anyhow::Error> {
        let first = self.failed.first()?;
        if self.paths.is_empty() {
            // Usually one cause for all (a read-only or vanished directory).
            return Some(anyhow!("{}", first.reason));
        }
        let failed: Vec<&str> = self.failed.iter().map(|f| f.reason.as_str()).collect();
        let kept: Vec<String> = self.paths.iter().map(|p| format!("`{}`", p.display())).collect();
        Some(anyhow!("{}; kept {}", failed.join("; "), kept.join(", ")))
    }

    /// The paths when every file was written, else [`Written::error`].
    pub fn into_result(self) -> anyhow::Result<Vec<PathBuf>> {
        match self.error() {
            Some(err) => Err(err),
            None => Ok(self.paths),
        }
    }
}

/// Writes every file of one capture into `dir`.
/// `owner`: Some((uid, gid)) → fchown each file to it (used for SUDO_UID/SUDO_GID).
///
/// Files are written one by one, most valuable first (pprof, then the
/// flamegraph), and each is attempted even when an earlier one failed (a
/// flamegraph too big for a full disk does not stop a small `.folded`). The
/// manifest comes last and is always attempted: it lists the files written
/// and those that were not, with the reason. Nothing written is removed.
/// `Err` only when nothing could be attempted (the directory cannot be
/// opened, no free name); otherwise [`Written`] says what happened.
pub fn write_capture(
    dir: &Path,
    info: &CaptureInfo,
    profiles: &[Profile],
    formats: Formats,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<Written> {
    let mut kinds = BTreeSet::new();
    for profile in profiles {
        if !kinds.insert(profile.kind) {
            bail!("capture has two {} profiles; their files would have the same name", profile.kind);
        }
    }
    // An empty `--output-dir` value means the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let out = OutputDir::open(dir)?;

    let base = file_base(&info.target);
    let timestamp = UtcTime::from_system(info.start).compact();
    let mut plan = Vec::new();
    for (index, profile) in profiles.iter().enumerate() {
        let stem = format!("{base}-{}-{timestamp}", profile.kind);
        for (format, wanted) in
            [(FileFormat::Pprof, formats.pprof), (FileFormat::Svg, formats.svg), (FileFormat::Folded, formats.folded)]
        {
            if wanted {
                plan.push(Planned { stem: stem.clone(), format, profile: Some(index) });
            }
        }
    }
    plan.push(Planned { stem: format!("{base}-capture-{timestamp}"), format: FileFormat::Manifest, profile: None });
    let suffix = free_suffix(&out, &plan)?;
    Ok(write_planned(&out, info, profiles, &plan, &suffix, owner))
}

fn write_planned(
    out: &OutputDir,
    info: &CaptureInfo,
    profiles: &[Profile],
    plan: &[Planned],
    suffix: &str,
    owner: Option<(u32, u32)>,
) -> Written {
    // Folded stacks feed both the flamegraph and the `.folded` file.
    let mut folded_cache: Vec<Option<Vec<String>>> = vec![None; profiles.len()];
    let mut written = Written::default();
    let mut entries = Vec::with_capacity(plan.len());
    let mut failed_entries = Vec::new();
    for planned in plan {
        let name = planned.file_name(suffix);
        let profile = planned.profile.and_then(|i| profiles.get(i).map(|p| (i, p)));
        let result = (|| {
            #[cfg(test)]
            tests::injected_failure(&name)?;
            let bytes = match (planned.format, profile) {
                (FileFormat::Manifest, _) => manifest::render(info, profiles, &entries, &failed_entries)?,
                (FileFormat::Pprof, Some((_, profile))) => pprof::encode_gzip(profile, &pprof_comments(info))
                    .with_context(|| format!("failed to encode the {} pprof", profile.kind))?,
                (FileFormat::Svg | FileFormat::Folded, Some((index, profile))) => {
                    let lines = folded_cache[index].get_or_insert_with(|| {
                        folded::folded_lines(profile, folded::flame_value_index(profile), info.target.multi_process())
                    });
                    if planned.format == FileFormat::Svg {
                        flamegraph::render(info, profile, lines)
                            .with_context(|| format!("failed to render the {} flamegraph", profile.kind))?
                    } else {
                        folded::render(lines)
                    }
                }
                (_, None) => bail!("internal error: no profile for `{name}`"),
            };
            out.write_file(&name, &bytes, owner)
        })();
        let kind = profile.map(|(_, p)| p.kind);
        match result {
            Ok(path) => {
                written.paths.push(path);
                if planned.format != FileFormat::Manifest {
                    entries.push(manifest::FileEntry { path: name, kind, format: planned.format });
                }
            }
            Err(err) => {
                let reason = format!("{err:#}");
                failed_entries.push(manifest::FailedEntry {
                    path: name.clone(),
                    kind,
                    format: planned.format,
                    error: reason.clone(),
                });
                written.failed.push(FailedFile { path: out.path().join(&name), reason });
            }
        }
    }
    if !written.paths.is_empty() {
        if let Err(err) = out.sync() {
            written.failed.push(FailedFile { path: out.path().to_owned(), reason: format!("{err:#}") });
        }
    }
    written
}

/// The first suffix (`""`, `-1`, `-2`, …) under which none of the capture's
/// names exist yet. The final rename still refuses to replace a file, so a
/// name taken after this check makes the write fail instead of clobbering.
fn free_suffix(out: &OutputDir, plan: &[Planned]) -> anyhow::Result<String> {
    const MAX_SUFFIX: u32 = 1000;
    for n in 0..MAX_SUFFIX {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let mut taken = false;
        for planned in plan {
            if out.exists(&planned.file_name(&suffix))? {
                taken = true;
                break;
            }
        }
        if !taken {
            return Ok(suffix);
        }
    }
    let first = plan.first().map(|p| p.file_name("")).unwrap_or_default();
    bail!(
        "`{}` and {MAX_SUFFIX} numbered variants already exist in `{}`; clean up the output directory",
        first,
        out.path().display()
    )
}

/// Freeform pprof comments (`go tool pprof -comments`) so a lone `.pb.gz`
/// still says what it is.
fn pprof_comments(info: &CaptureInfo) -> Vec<String> {
    let mut comments = vec![
        format!("stackwatch {}", info.stackwatch_version),
        format!("target: {}", info.target.description),
        format!("trigger: {}", info.trigger.summary()),
        format!("host: {} (kernel {})", info.host, info.kernel),
    ];
    if info.samples_lost > 0 {
        comments.push(format!("samples lost: {}", info.samples_lost));
    }
    comments
}

/// `<name>-<pid>`, or `<name>` when there is no pid (whole-host capture).
fn file_base(target: &TargetInfo) -> String {
    let name = sanitize_file_component(&target.file_name);
    match target.file_pid {
        Some(pid) => format!("{name}-{pid}"),
        None => name,
    }
}

/// Keeps a file-name component to a safe, shell-friendly set. The target
/// module already sanitizes process names; this guards against a `/` or a
/// leading dot ever reaching the file system.
fn sanitize_file_component(name: &str) -> String {
    const MAX_LEN: usize = 64;
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') { c } else { '_' })
        .take(MAX_LEN)
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']);
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// Returns the invoking user's ids when running as root under `sudo`, so
/// output files can be handed to them. `None` when not root, when the
/// variables are missing or malformed, or when the invoking user is root.
pub fn sudo_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    parse_sudo_owner(std::env::var("SUDO_UID").ok().as_deref(), std::env::var("SUDO_GID").ok().as_deref())
}

fn parse_sudo_owner(uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    let uid: u32 = uid?.trim().parse().ok()?;
    let gid: u32 = gid?.trim().parse().ok()?;
    (uid != 0).then_some((uid, gid))
}

/// A wall-clock time broken down in UTC, without pulling in a date crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// Times before 1970 (a badly set clock) clamp to the epoch and times
    /// past year 9999 to its end, instead of panicking.
    pub fn from_system(time: SystemTime) -> Self {
        const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).min(MAX_SECS) as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `20261126T123000Z`, as in file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-26`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `12:30:00`.
    pub fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// Synthetic captures shared by the writers' tests: two processes, inlined
/// lines, kernel frames, a location without mapping, an unsymbolized
/// mapping, recursion, and unicode and `;` in names.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::capture::{CaptureInfo, Loss, TargetInfo, TargetKind, Trigger};
    use crate::profile::{Line, Location, Mapping, Profile, ProfileKind, Sample, ValueType};

    /// 2026-11-26T12:30:00Z.
    pub fn start() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_696_200)
    }

    /// Sampling period at 99 Hz.
    pub const PERIOD_NS: i64 = 10_101_010;

    fn info(target: TargetInfo, trigger: Trigger) -> CaptureInfo {
        CaptureInfo {
            target,
            trigger,
            start: start(),
            end: start() + Duration::from_secs(30),
            frequency_hz: 99,
            samples_collected: 17,
            samples_lost: 3,
            losses: vec![Loss {
                reason: "counts_map_full".into(),
                count: 3,
                detail: "the in-kernel stack map was full; raise --map-size".into(),
            }],
            target_cpu_seconds: Some(0.18),
            expected_samples: Some(18),
            host: "testhost".into(),
            kernel: "6.8.0-test".into(),
            stackwatch_version: "0.1.0-test".into(),
        }
    }

    pub fn host_info() -> CaptureInfo {
        let target = TargetInfo {
            kind: TargetKind::Host,
            description: "host".into(),
            pids: vec![],
            file_name: "host".into(),
            file_pid: None,
        };
        info(target, Trigger::Manual { source: "record".into() })
    }

    pub fn pid_info() -> CaptureInfo {
        let target = TargetInfo {
            kind: TargetKind::Pid,
            description: "pid 100 (myservice)".into(),
            pids: vec![100],
            file_name: "myservice".into(),
            file_pid: Some(100),
        };
        let trigger =
            Trigger::Rule { rule: "cpu-above 80% for 30s".into(), observed: "93.5%".into(), window: "30s".into() };
        info(target, trigger)
    }

    fn line(function: &str, file: Option<&str>, line: Option<u32>) -> Line {
        Line { function: function.into(), file: file.map(Into::into), line }
    }

    fn loc(address: u64, mapping: Option<usize>, lines: Vec<Line>, kernel: bool) -> Location {
        Location { address, mapping, lines, kernel }
    }

    fn sample(pid: u32, tid: u32, comm: &str, locations: &[usize], count: i64) -> Sample {
        Sample { pid, tid, comm: comm.into(), locations: locations.to_vec(), values: vec![count, count * PERIOD_NS] }
    }

    pub fn empty_profile() -> Profile {
        Profile::new_cpu(99, start(), Duration::from_secs(30))
    }

    /// 17 samples in 6 stacks from `myservice` (pid 100) and `worker ü` (pid 200).
    pub fn sample_profile() -> Profile {
        let mut p = empty_profile();
        p.mappings = vec![
            Mapping {
                start: 0x40_0000,
                limit: 0x50_0000,
                offset: 0,
                path: "/usr/bin/myservice".into(),
                build_id: Some("8f3c0ab1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708".into()),
            },
            Mapping {
                start: 0x7f00_0000_0000,
                limit: 0x7f00_0020_0000,
                offset: 0x2_8000,
                path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                build_id: Some("b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7081920".into()),
            },
            Mapping {
                start: 0xffff_ffff_8100_0000,
                limit: 0xffff_ffff_8300_0000,
                offset: 0,
                path: "[kernel.kallsyms]".into(),
                build_id: None,
            },
            Mapping {
                start: 0x60_0000,
                limit: 0x70_0000,
                offset: 0,
                path: "/opt/stripped/bin/blob".into(),
                build_id: None,
            },
        ];
        p.locations = vec![
            /* 0 */
            loc(
                0xffff_ffff_8100_1000,
                Some(2),
                vec![line("do_syscall_64", Some("arch/x86/entry/common.c"), Some(83))],
                true,
            ),
            /* 1 */ loc(0xffff_ffff_8100_2000, Some(2), vec![line("entry_SYSCALL_64", None, None)], true),
            /* 2 */
            loc(
                0x40_1100,
                Some(0),
                vec![line("inline_helper", Some("src/hot.c"), Some(10)), line("hot_loop", Some("src/hot.c"), Some(42))],
                false,
            ),
            /* 3 */ loc(0x40_1200, Some(0), vec![line("main", Some("src/main.c"), Some(7))], false),
            /* 4 */ loc(0x7f00_0002_9d90, Some(1), vec![line("__libc_start_main", None, None)], false),
            /* 5 */ loc(0x7f00_000e_1234, Some(1), vec![line("write", None, None)], false),
            /* 6 */ loc(0x1_2345, None, vec![line("[unknown]", None, None)], false),
            /* 7 */
            loc(0x40_1300, Some(0), vec![line("operator;weird<ü>", Some("src/wéird.cc"), Some(5))], false),
            /* 8 */ loc(0x60_1400, Some(3), vec![line("blob+0x1400", None, None)], false),
            /* 9 */ loc(0x40_1210, Some(0), vec![line("main", Some("src/main.c"), Some(9))], false),
        ];
        p.samples = vec![
            sample(100, 100, "myservice", &[2, 3, 4], 4),
            sample(100, 101, "myservice", &[2, 3, 4], 3),
            sample(100, 100, "myservice", &[0, 1, 5, 3, 4], 2),
            sample(200, 200, "worker ü", &[0, 1, 5, 7, 6], 6),
            sample(200, 201, "worker ü", &[8, 7, 6], 1),
            // `main` calling itself.
            sample(100, 100, "myservice", &[3, 9, 4], 1),
        ];
        p
    }

    /// The `myservice` part of [`sample_profile`] plus a sample without a stack.
    pub fn single_process_profile() -> Profile {
        let mut p = sample_profile();
        p.samples.retain(|s| s.pid == 100);
        p.samples.push(sample(100, 102, "myservice", &[], 1));
        p
    }

    /// Off-cpu time of `myservice`: blocked in `write` and in a futex.
    pub fn offcpu_profile() -> Profile {
        let mut p = sample_profile();
        p.kind = ProfileKind::OffCpu;
        p.sample_types = vec![ValueType::new("samples", "count"), ValueType::new("offcpu", "nanoseconds")];
        p.default_sample_type = Some("offcpu".into());
        p.period_type = ValueType::new("offcpu", "nanoseconds");
        p.period = 1;
        p.locations.push(loc(0xffff_ffff_8100_3000, Some(2), vec![line("futex_wait", None, None)], true));
        let futex = p.locations.len() - 1;
        p.samples = vec![
            Sample {
                pid: 100,
                tid: 100,
                comm: "myservice".into(),
                locations: vec![0, 1, 5, 3, 4],
                values: vec![2, 3_000_000],
            },
            Sample {
                pid: 100,
                tid: 101,
                comm: "myservice".into(),
                locations: vec![futex, 1, 3, 4],
                values: vec![1, 1_500_000],
            },
        ];
        p
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::time::Duration;

    use super::tests_support::{empty_profile, host_info, offcpu_profile, pid_info, sample_profile};
    use super::*;

    thread_local! {
        /// Makes `write_planned` fail before writing a file whose name ends so.
        static FAIL_ON: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    pub(super) fn injected_failure(name: &str) -> anyhow::Result<()> {
        match FAIL_ON.with(Cell::get) {
            Some(ending) if name.ends_with(ending) => bail!("injected failure writing `{name}`"),
            _ => Ok(()),
        }
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_host_capture() {
        let tmp = tempfile::tempdir().unwrap();
        let formats = Formats { folded: true, ..Formats::default() };
        let paths =
            write_capture(tmp.path(), &host_info(), &[sample_profile()], formats, None).unwrap().into_result().unwrap();
        assert_eq!(
            names(&paths),
            [
                "host-cpu-20261126T123000Z.pb.gz",
                "host-cpu-20261126T123000Z.svg",
                "host-cpu-20261126T123000Z.folded",
                "host-capture-20261126T123000Z.json",
            ]
        );
        assert!(paths.iter().all(|p| p.parent() == Some(tmp.path())));
        for path in &paths {
            assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o7777, 0o640, "{}", path.display());
        }
        assert_eq!(dir_entries(tmp.path()).len(), 4, "no temporary files left");

        let profile = pprof::decode(&std::fs::read(&paths[0]).unwrap()).unwrap();
        assert_eq!(profile.sample.len(), 6);
        assert!(profile.string_table.iter().any(|s| s == "trigger: manual (record)"));
        assert!(std::fs::read_to_string(&paths[1]).unwrap().starts_with("<?xml"));
        let folded = std::fs::read_to_string(&paths[2]).unwrap();
        assert!(folded.starts_with("myservice (pid 100);"), "host captures get a root per process: {folded}");

        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths[3]).unwrap()).unwrap();
        assert_eq!(manifest["schema"], 1);
        let listed: Vec<&str> =
            manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(listed, names(&paths[..3]));
        assert_eq!(manifest["files"][0]["format"], "pprof");
        assert_eq!(manifest["files"][1]["kind"], "cpu");
    }

    #[test]
    fn pid_capture_names_and_several_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        let profiles = [sample_profile(), offcpu_profile()];
        let paths =
            write_capture(tmp.path(), &pid_info(), &profiles, Formats::default(), None).unwrap().into_result().unwrap();
        assert_eq!(
            names(&paths),
            [
                "myservice-100-cpu-20261126T123000Z.pb.gz",
                "myservice-100-cpu-20261126T123000Z.svg",
                "myservice-100-offcpu-20261126T123000Z.pb.gz",
                "myservice-100-offcpu-20261126T123000Z.svg",
                "myservice-100-capture-20261126T123000Z.json",
            ]
        );
        let svg = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(!svg.contains("(pid 100)"), "a single pid gets no process root");
    }

    #[test]
    fn second_capture_in_the_same_second_gets_a_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let first = write_capture(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        let before: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let mut other = host_info();
        other.samples_collected = 1;
        let second = write_capture(tmp.path(), &other, &[empty_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(
            names(&second),
            [
                "host-cpu-20261126T123000Z-1.pb.gz",
                "host-cpu-20261126T123000Z-1.svg",
                "host-capture-20261126T123000Z-1.json"
            ]
        );
        let after: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(before, after, "the first capture is untouched");

        // A stray file taking just one of the names moves the whole capture.
        std::fs::write(tmp.path().join("host-capture-20261126T123000Z-2.json"), b"stray").unwrap();
        let third = write_capture(tmp.path(), &host_info(), &[empty_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        assert!(names(&third).iter().all(|n| n.contains("T123000Z-3.")), "{third:?}");
    }

    #[test]
    fn empty_capture_still_writes_valid_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut info = host_info();
        info.samples_collected = 0;
        let formats = Formats { folded: true, ..Formats::default() };
        let paths = write_capture(tmp.path(), &info, &[empty_profile()], formats, None).unwrap().into_result().unwrap();
        assert_eq!(paths.len(), 4);
        assert!(pprof::decode(&std::fs::read(&paths[0]).unwrap()).unwrap().sample.is_empty());
        assert!(std::fs::read_to_string(&paths[1]).unwrap().contains("no samples were collected"));
        assert!(std::fs::read(&paths[2]).unwrap().is_empty());
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths[3]).unwrap()).unwrap();
        assert_eq!(manifest["samples_collected"], 0);
        assert_eq!(manifest["profiles"][0]["samples"], 0);
    }

    #[test]
    fn files_are_handed_to_the_owner() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: geteuid/getuid/getgid have no preconditions.
        let owner =
            if unsafe { libc::geteuid() } == 0 { (65534, 65534) } else { unsafe { (libc::getuid(), libc::getgid()) } };
        let paths = write_capture(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), Some(owner))
            .unwrap()
            .into_result()
            .unwrap();
        for path in &paths {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), owner, "{}", path.display());
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        }
    }

    #[test]
    fn a_failing_file_keeps_the_others_and_the_manifest_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some(".svg")));
        let formats = Formats { folded: true, ..Formats::default() };
        let result = write_capture(tmp.path(), &host_info(), &[sample_profile()], formats, None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert_eq!(
            names(&written.paths),
            [
                "host-cpu-20261126T123000Z.pb.gz",
                "host-cpu-20261126T123000Z.folded",
                "host-capture-20261126T123000Z.json"
            ]
        );
        assert_eq!(
            written.failed,
            [FailedFile {
                path: tmp.path().join("host-cpu-20261126T123000Z.svg"),
                reason: "injected failure writing `host-cpu-20261126T123000Z.svg`".into(),
            }]
        );
        let msg = format!("{:#}", written.error().unwrap());
        assert!(msg.starts_with("injected failure writing `host-cpu-20261126T123000Z.svg`; kept `"), "{msg}");
        assert!(msg.contains("; kept `") && msg.contains("host-cpu-20261126T123000Z.pb.gz`"), "{msg}");
        let mut on_disk = names(&written.paths);
        on_disk.sort();
        assert_eq!(dir_entries(tmp.path()), on_disk, "nothing else, no temporary file");

        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&written.paths[2]).unwrap()).unwrap();
        let listed: Vec<&str> =
            manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(listed, ["host-cpu-20261126T123000Z.pb.gz", "host-cpu-20261126T123000Z.folded"]);
        assert_eq!(manifest["failed"][0]["path"], "host-cpu-20261126T123000Z.svg");
        assert_eq!(manifest["failed"][0]["format"], "svg");
        assert_eq!(manifest["failed"][0]["error"], "injected failure writing `host-cpu-20261126T123000Z.svg`");
    }

    #[test]
    fn a_failing_manifest_is_reported_and_the_profiles_kept() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some(".json")));
        let result = write_capture(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert_eq!(names(&written.paths), ["host-cpu-20261126T123000Z.pb.gz", "host-cpu-20261126T123000Z.svg"]);
        assert_eq!(written.failed.len(), 1);
        assert!(written.failed[0].path.ends_with("host-capture-20261126T123000Z.json"));
        assert!(written.into_result().is_err());
    }

    #[test]
    fn nothing_written_gives_the_cause() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some("")));
        let result = write_capture(tmp.path(), &host_info(), &[empty_profile()], Formats::default(), None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert!(written.paths.is_empty() && written.failed.len() == 3);
        assert_eq!(
            format!("{:#}", written.error().unwrap()),
            "injected failure writing `host-cpu-20261126T123000Z.pb.gz`"
        );
        assert!(dir_entries(tmp.path()).is_empty());
    }

    #[test]
    fn rejects_two_profiles_of_one_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let err =
            write_capture(tmp.path(), &host_info(), &[empty_profile(), empty_profile()], Formats::default(), None)
                .unwrap_err();
        assert!(err.to_string().contains("two cpu profiles"), "{err}");
        assert!(dir_entries(tmp.path()).is_empty());
    }

    #[test]
    fn missing_output_dir_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("missing");
        let err = write_capture(&dir, &host_info(), &[empty_profile()], Formats::default(), None).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("cannot write to output directory `{}`: No such file or directory (os error 2)", dir.display())
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Formats::default(), Formats { pprof: true, svg: true, folded: false });
        assert_eq!(Formats::parse("pprof,svg,folded"), Ok(Formats { pprof: true, svg: true, folded: true }));
        assert_eq!(Formats::parse(" folded "), Ok(Formats { pprof: false, svg: false, folded: true }));
        assert_eq!(Formats::parse("PPROF,flamegraph"), Ok(Formats { pprof: true, svg: true, folded: false }));
        let err = Formats::parse("pprof,png").unwrap_err();
        assert!(err.contains("`png`"), "{err}");
        assert!(Formats::parse("").is_err());
        assert!(Formats::parse(",").is_err());
    }

    #[test]
    fn utc_matches_humantime() {
        for secs in [0u64, 59, 951_782_400 /* 2000-02-29 */, 1_795_696_200, 4_102_444_799, 253_402_300_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let utc = UtcTime::from_system(t);
            let expected = humantime::format_rfc3339_seconds(t).to_string();
            assert_eq!(format!("{}T{}Z", utc.date(), utc.time()), expected);
        }
        let t = UNIX_EPOCH + Duration::from_secs(1_795_696_200);
        assert_eq!(UtcTime::from_system(t).compact(), "20261126T123000Z");
        assert_eq!(UtcTime::from_system(UNIX_EPOCH - Duration::from_secs(5)).compact(), "19700101T000000Z");
    }

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(sanitize_file_component("redis-server"), "redis-server");
        assert_eq!(sanitize_file_component("../etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_file_component("..."), "unknown");
        assert_eq!(sanitize_file_component("nginx: worker"), "nginx__worker");
    }

    #[test]
    fn sudo_owner_parsing() {
        assert_eq!(parse_sudo_owner(Some("1000"), Some("1001")), Some((1000, 1001)));
        assert_eq!(parse_sudo_owner(Some("0"), Some("0")), None);
        assert_eq!(parse_sudo_owner(Some("1000"), None), None);
        assert_eq!(parse_sudo_owner(Some("x"), Some("1")), None);
        assert_eq!(parse_sudo_owner(None, None), None);
    }
}
