//! Reading a `stackwatch record` capture back, and the host fixtures the
//! capture tests need.
//!
//! Profiles are read through the real client, `go tool pprof`: `-raw` gives
//! every sample with its full stack and labels (so the tests can check
//! per-stack properties such as "this sample's stack runs from `main` through
//! `loop_fn`"), `-tags` the label table. Nothing is decoded by hand, so what
//! the tests see is what an operator's pprof sees.
//!
//! The fixtures are guards that undo themselves on drop: an independent CPU
//! clock for a process ([`CpuWatch`]), a cgroup v2 child ([`TestCgroup`]), a
//! read-only bind mount ([`ReadOnlyBind`]) and a small tmpfs to fill ([`Tmpfs`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::work_dir;

// ---------------------------------------------------------------------------
// The files of one capture

/// The files one `record` run wrote into its (otherwise empty) output directory.
#[derive(Clone, Debug)]
pub struct Capture {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

impl Capture {
    /// Lists `dir`, which the test gave to `--output-dir` and nothing else writes to.
    pub fn read(dir: &Path) -> Self {
        let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| Some(e.ok()?.path())).collect(),
            Err(err) => panic!("failed to list `{}`: {err}", dir.display()),
        };
        files.sort();
        Self { dir: dir.to_owned(), files }
    }

    /// The one file whose name ends with `suffix`; panics if there is not exactly one.
    pub fn one(&self, suffix: &str) -> &Path {
        let found: Vec<&PathBuf> = self.files.iter().filter(|p| file_name(p).ends_with(suffix)).collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!("expected exactly one `*{suffix}` in `{}`, found {:?}", self.dir.display(), self.files),
        }
    }

    pub fn pprof(&self) -> &Path {
        self.one(".pb.gz")
    }

    pub fn svg(&self) -> &Path {
        self.one(".svg")
    }

    pub fn folded(&self) -> &Path {
        self.one(".folded")
    }

    /// The manifest (`*-capture-*.json`), parsed.
    pub fn manifest(&self) -> serde_json::Value {
        crate::triggers::read_manifest(self.one(".json"))
    }
}

/// The final component of `path`, lossily as text.
pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Files and directories under `dir` (recursively); empty when `dir` does not exist.
pub fn entries_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return out };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(entries_under(&path));
        }
        out.push(path);
    }
    out
}

/// Asserts `output` exited with `code`. On failure shows what it printed.
pub fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// go tool pprof

/// Runs `go tool pprof ARGS… PATH` with `-symbolize=none` (pprof must show
/// the names stackwatch stored, not re-symbolize from local binaries) and
/// returns its stdout; panics if pprof fails, which is also the check that
/// the file opens in pprof at all.
pub fn go_pprof(args: &[&str], path: &Path) -> String {
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof", "-symbolize=none"]).args(args).arg(path);
    // Keep pprof's state in the target dir whatever HOME root has.
    let tmp = work_dir().join("pprof-tmp");
    cmd.env("PPROF_TMPDIR", &tmp).env("PPROF_BINARY_PATH", &tmp).env("GOTOOLCHAIN", "local");
    let output = match cmd.output() {
        Ok(output) => output,
        Err(err) => panic!("failed to run {cmd:?} (is Go installed? `cargo xtask setup`): {err}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// One frame of a sample's stack, as `go tool pprof -raw` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFrame {
    pub function: String,
    pub file: String,
    pub line: u64,
    pub address: u64,
    /// Mapping id (`M=`), 0 when the location has none.
    pub mapping: u64,
}

impl RawFrame {
    /// Kernel text lives in the upper half of the address space on every
    /// 64-bit architecture stackwatch runs on.
    pub fn is_kernel(&self) -> bool {
        self.address >= 0xffff_8000_0000_0000
    }
}

/// One sample: its values (in sample-type order), its stack (leaf first,
/// inlined frames expanded) and its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct RawSample {
    pub values: Vec<i64>,
    pub stack: Vec<RawFrame>,
    pub labels: BTreeMap<String, String>,
}

impl RawSample {
    /// Sample count (the first value, `samples/count` in stackwatch's cpu profiles).
    pub fn count(&self) -> u64 {
        self.values.first().map_or(0, |&v| u64::try_from(v).unwrap_or(0))
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The user-space part of the stack, root first.
    pub fn user_root_first(&self) -> Vec<&str> {
        self.stack.iter().rev().filter(|f| !f.is_kernel()).map(|f| f.function.as_str()).collect()
    }

    /// The innermost user-space function (the one the CPU was in, or the one
    /// that entered the kernel).
    pub fn user_leaf(&self) -> Option<&str> {
        self.stack.iter().find(|f| !f.is_kernel()).map(|f| f.function.as_str())
    }

    pub fn has_function(&self, name: &str) -> bool {
        self.stack.iter().any(|f| f.function == name)
    }

    pub fn has_kernel_frames(&self) -> bool {
        self.stack.iter().any(RawFrame::is_kernel)
    }
}

/// One mapping of `-raw`'s `Mappings` table.
#[derive(Clone, Debug, PartialEq)]
pub struct RawMapping {
    pub id: u64,
    pub start: u64,
    pub limit: u64,
    pub file: String,
    pub build_id: String,
}

/// A profile as `go tool pprof -raw` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawProfile {
    pub comments: Vec<String>,
    /// `(type, unit)`, in value order.
    pub sample_types: Vec<(String, String)>,
    /// Index into `sample_types` of the `[dflt]` one.
    pub default_index: Option<usize>,
    /// `(type, unit)`.
    pub period_type: Option<(String, String)>,
    pub period: i64,
    pub samples: Vec<RawSample>,
    pub mappings: Vec<RawMapping>,
}

impl RawProfile {
    /// Total sample count.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(RawSample::count).sum()
    }

    /// Sample count of the samples for which `pred` holds.
    pub fn count_where(&self, pred: impl Fn(&RawSample) -> bool) -> u64 {
        self.samples.iter().filter(|s| pred(s)).map(RawSample::count).sum()
    }

    /// Distinct values of label `key`.
    pub fn label_values(&self, key: &str) -> BTreeSet<String> {
        self.samples.iter().filter_map(|s| s.label(key)).map(str::to_owned).collect()
    }

    pub fn mapping(&self, id: u64) -> Option<&RawMapping> {
        self.mappings.iter().find(|m| m.id == id)
    }
}

/// `go tool pprof -raw PATH`, parsed.
pub fn pprof_raw(path: &Path) -> RawProfile {
    parse_pprof_raw(&go_pprof(&["-raw"], path))
}

/// Parses `go tool pprof -raw` output (Go's `profile.Profile.String()`).
/// Panics on lines it does not understand, so a format change is a clear failure.
pub fn parse_pprof_raw(text: &str) -> RawProfile {
    #[derive(PartialEq)]
    enum Section {
        Header,
        SampleTypes,
        Samples,
        Locations,
        Mappings,
    }
    let mut profile = RawProfile::default();
    // Samples reference locations by id, and the table comes after them.
    let mut sample_locations: Vec<Vec<u64>> = Vec::new();
    let mut locations: BTreeMap<u64, Vec<RawFrame>> = BTreeMap::new();
    let mut current_location: Option<(u64, u64, u64)> = None;
    let mut section = Section::Header;
    let bad = |line: &str| -> ! { panic!("unexpected line in `go tool pprof -raw` output: {line:?}\n{text}") };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match section {
            Section::Header => {
                if trimmed == "Samples:" {
                    section = Section::SampleTypes;
                } else if let Some(c) = trimmed.strip_prefix("Comment: ") {
                    profile.comments.push(c.to_owned());
                } else if let Some(pt) = trimmed.strip_prefix("PeriodType: ") {
                    let (t, u) = pt.split_once(' ').unwrap_or((pt, ""));
                    profile.period_type = Some((t.to_owned(), u.to_owned()));
                } else if let Some(p) = trimmed.strip_prefix("Period: ") {
                    profile.period = p.parse().unwrap_or_else(|_| bad(line));
                }
                // Time:, Duration: and anything newer are not needed.
            }
            Section::SampleTypes => {
                for (i, st) in trimmed.split_whitespace().enumerate() {
                    let (st, dflt) = match st.strip_suffix("[dflt]") {
                        Some(st) => (st, true),
                        None => (st, false),
                    };
                    let (t, u) = st.split_once('/').unwrap_or_else(|| bad(line));
                    profile.sample_types.push((t.to_owned(), u.to_owned()));
                    if dflt {
                        profile.default_index = Some(i);
                    }
                }
                section = Section::Samples;
            }
            Section::Samples => {
                if trimmed == "Locations" {
                    section = Section::Locations;
                    continue;
                }
                let (head, tail) = trimmed.split_once(':').unwrap_or_else(|| bad(line));
                let values: Option<Vec<i64>> = head.split_whitespace().map(|v| v.parse().ok()).collect();
                match values {
                    Some(values) if !values.is_empty() => {
                        let ids: Vec<u64> =
                            tail.split_whitespace().map(|id| id.parse().unwrap_or_else(|_| bad(line))).collect();
                        profile.samples.push(RawSample { values, stack: Vec::new(), labels: BTreeMap::new() });
                        sample_locations.push(ids);
                    }
                    _ => {
                        let Some(sample) = profile.samples.last_mut() else { bad(line) };
                        parse_labels(trimmed, &mut sample.labels).unwrap_or_else(|| bad(line));
                    }
                }
            }
            Section::Locations => {
                if trimmed == "Mappings" {
                    section = Section::Mappings;
                    continue;
                }
                let (rest, frame_loc) = match parse_location_head(trimmed) {
                    Some((id, address, mapping, rest)) => {
                        current_location = Some((id, address, mapping));
                        locations.entry(id).or_default();
                        (rest, (id, address, mapping))
                    }
                    // A continuation line: a further (outer, inlined-into) function of the same location.
                    None => (trimmed, current_location.unwrap_or_else(|| bad(line))),
                };
                let (id, address, mapping) = frame_loc;
                if rest.is_empty() || rest == "??" {
                    locations.entry(id).or_default().push(RawFrame {
                        function: String::new(),
                        file: String::new(),
                        line: 0,
                        address,
                        mapping,
                    });
                    continue;
                }
                let (function, file, lineno) = parse_function_line(rest).unwrap_or_else(|| bad(line));
                locations.entry(id).or_default().push(RawFrame { function, file, line: lineno, address, mapping });
            }
            Section::Mappings => {
                profile.mappings.push(parse_mapping(line.trim_start()).unwrap_or_else(|| bad(line)));
            }
        }
    }
    for (sample, ids) in profile.samples.iter_mut().zip(sample_locations) {
        for id in ids {
            match locations.get(&id) {
                Some(frames) => sample.stack.extend(frames.iter().cloned()),
                None => panic!("sample references location {id}, which `-raw` does not list\n{text}"),
            }
        }
    }
    profile
}

/// `comm:[cpu_split]` / `pid:[123] tid:[124]` into `labels`. A value with
/// several entries keeps them space-separated (stackwatch sets one each); a
/// value may itself contain spaces (`comm:[Web Content]`).
fn parse_labels(line: &str, labels: &mut BTreeMap<String, String>) -> Option<()> {
    // Does `text` start with the next `key:[`?
    let starts_label =
        |text: &str| text.split_whitespace().next().is_some_and(|t| t.contains(":[") && !t.starts_with(":["));
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(":[")?;
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        // The value ends at the first `]` that ends the line or precedes the next label.
        let close = after.match_indices(']').map(|(i, _)| i).find(|&i| {
            after[i + 1..].trim().is_empty() || (after[i + 1..].starts_with(' ') && starts_label(&after[i + 1..]))
        })?;
        labels.insert(key.to_owned(), after[..close].to_owned());
        rest = after[close + 1..].trim_start();
    }
    Some(())
}

/// `     7: 0x55a1e853d20c M=2 [F] rest` → (7, address, 2, "rest").
fn parse_location_head(line: &str) -> Option<(u64, u64, u64, &str)> {
    let (id, rest) = line.split_once(": ")?;
    let id: u64 = id.parse().ok()?;
    let rest = rest.trim_start();
    let (addr, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let address = u64::from_str_radix(addr.strip_prefix("0x")?, 16).ok()?;
    let mut mapping = 0;
    if let Some(m) = rest.strip_prefix("M=") {
        let (m, r) = m.split_once(' ').unwrap_or((m, ""));
        mapping = m.parse().ok()?;
        rest = r;
    }
    let rest = rest.strip_prefix("[F] ").unwrap_or(rest);
    Some((id, address, mapping, rest.trim()))
}

/// `hot_a /src/cpu_split.c:44 s=40` (optionally followed by `(system name)`)
/// → (function, file, line). The function name may contain spaces.
fn parse_function_line(text: &str) -> Option<(String, String, u64)> {
    let s_at = text.rfind(" s=")?;
    let head = &text[..s_at];
    let (function, file_line) = match head.rfind(' ') {
        Some(space) => (&head[..space], &head[space + 1..]),
        None => ("", head),
    };
    let (file, line) = file_line.rsplit_once(':')?;
    Some((function.to_owned(), file.to_owned(), line.parse().ok()?))
}

/// `2: 0x55a1e853d000/0x55a1e853e000/0x1000 /tmp/cpu_split 0d1f… [FN][FL]`
/// (Go prints `ID: START/LIMIT/OFFSET FILE BUILDID BITS`, any of the last
/// three possibly empty; the file name may contain spaces, the others not).
fn parse_mapping(line: &str) -> Option<RawMapping> {
    let (id, rest) = line.split_once(": ")?;
    let (range, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let range: Vec<u64> =
        range.split('/').map(|v| u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()).collect::<Option<_>>()?;
    let mut back = rest.rsplitn(3, ' ');
    let (_bits, build_id, file) = (back.next()?, back.next().unwrap_or(""), back.next().unwrap_or(""));
    Some(RawMapping {
        id: id.parse().ok()?,
        start: *range.first()?,
        limit: *range.get(1)?,
        file: file.to_owned(),
        build_id: build_id.to_owned(),
    })
}

/// `go tool pprof -tags PATH`: label key → values listed for it.
pub fn pprof_tags(path: &Path) -> BTreeMap<String, BTreeSet<String>> {
    parse_pprof_tags(&go_pprof(&["-tags"], path))
}

/// Parses `-tags` output: ` comm: Total 5.2s` headers, then
/// `      5.2s (  100%): cpu_split` rows.
pub fn parse_pprof_tags(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((k, _)) = trimmed.split_once(": Total ") {
            key = Some(k.to_owned());
            tags.entry(k.to_owned()).or_default();
        } else if let (Some(k), Some((_, value))) = (&key, trimmed.split_once("%): ")) {
            tags.entry(k.clone()).or_default().insert(value.to_owned());
        }
    }
    tags
}

// ---------------------------------------------------------------------------
// Folded stacks and the SVG

/// One line of a `.folded` file: frames root first, and a count.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedStack {
    pub frames: Vec<String>,
    pub count: u64,
}

/// Reads a `.folded` file (`a;b;c 12` per line).
pub fn read_folded(path: &Path) -> Vec<FoldedStack> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => panic!("failed to read `{}`: {err}", path.display()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let Some((stack, count)) = line.rsplit_once(' ') else {
                panic!("malformed folded line in `{}`: {line:?}", path.display())
            };
            let Ok(count) = count.parse() else { panic!("malformed count in `{}`: {line:?}", path.display()) };
            FoldedStack { frames: stack.split(';').map(str::to_owned).collect(), count }
        })
        .collect()
}

/// One frame box of an inferno SVG: the function from its `<title>` and
/// the fill colour of its rectangle.
#[derive(Clone, Debug, PartialEq)]
pub struct SvgFrame {
    pub function: String,
    pub samples: u64,
    pub fill: (u8, u8, u8),
}

/// The frame boxes of an inferno flamegraph
/// (`<g><title>NAME (N samples, P%)</title><rect … fill="rgb(r,g,b)" …/>`).
pub fn svg_frames(svg: &str) -> Vec<SvgFrame> {
    let mut frames = Vec::new();
    for group in svg.split("<g><title>").skip(1) {
        let Some((title, rest)) = group.split_once("</title>") else { continue };
        let title = unescape_xml(title);
        let Some(open) = title.rfind(" (") else { continue };
        let function = title[..open].to_owned();
        let samples = title[open + 2..]
            .split(|c: char| !c.is_ascii_digit() && c != ',')
            .next()
            .and_then(|n| n.replace(',', "").parse().ok())
            .unwrap_or(0);
        let fill = rest
            .split_once("fill=\"rgb(")
            .and_then(|(_, f)| f.split_once(")\""))
            .and_then(|(rgb, _)| {
                let c: Vec<u8> = rgb.split(',').filter_map(|v| v.trim().parse().ok()).collect();
                (c.len() == 3).then(|| (c[0], c[1], c[2]))
            })
            .unwrap_or((0, 0, 0));
        frames.push(SvgFrame { function, samples, fill });
    }
    frames
}

/// The text of the SVG's `<text id="title" …>` element.
pub fn svg_title(svg: &str) -> Option<String> {
    let at = svg.find("id=\"title\"")?;
    let rest = &svg[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find("</text>")?;
    Some(unescape_xml(&rest[start..start + end]))
}

fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

// ---------------------------------------------------------------------------
// Sources and binaries

/// The 1-based line range `[first, last]` of the C function `name` in
/// `source`: from the line holding `name(` at the start of a definition to
/// the first line that is exactly `}` after it.
pub fn c_function_lines(source: &Path, name: &str) -> (u64, u64) {
    let text = match fs::read_to_string(source) {
        Ok(text) => text,
        Err(err) => panic!("failed to read `{}`: {err}", source.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    let needle = format!(" {name}(");
    let Some(first) =
        lines.iter().position(|l| l.contains(&needle) && !l.trim_end().ends_with(';') && !l.starts_with(['\t', ' ']))
    else {
        panic!("no definition of `{name}` in `{}`", source.display())
    };
    let Some(len) = lines[first..].iter().position(|l| *l == "}") else {
        panic!("no end of `{name}` in `{}`", source.display())
    };
    (first as u64 + 1, (first + len) as u64 + 1)
}

/// The GNU build ID of an ELF file, from `readelf -n`, lower-case hex.
pub fn elf_build_id(path: &Path) -> Option<String> {
    let output = Command::new("readelf").arg("-n").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().find_map(|l| l.trim().strip_prefix("Build ID: ").map(|id| id.trim().to_lowercase()))
}

// ---------------------------------------------------------------------------
// Time

/// Parses the manifest's UTC timestamps (`2026-11-26T13:02:57.547Z`).
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|v| v.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        digits.parse().ok()?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

// ---------------------------------------------------------------------------
// An independent CPU clock

/// CPU time (utime + stime) of process `pid` from `/proc/<pid>/stat`;
/// `None` once it is gone.
pub fn proc_cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields are counted from the last ')' (the name may contain anything).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|&t| t > 0).unwrap_or(100);
    Some(Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz))
}

/// Polls a process's CPU time every few milliseconds from a thread, so the
/// CPU it used over any window (e.g. the capture window the manifest
/// reports) can be read off afterwards, independently of stackwatch's own
/// accounting.
#[derive(Debug)]
pub struct CpuWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(SystemTime, Duration)>>>,
}

/// The readings a [`CpuWatch`] took: `(wall time, CPU time so far)`.
#[derive(Clone, Debug)]
pub struct CpuTrace {
    pub points: Vec<(SystemTime, Duration)>,
}

impl CpuWatch {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut points = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Some(cpu) = proc_cpu_time(pid) else { break };
                points.push((SystemTime::now(), cpu));
                thread::sleep(Duration::from_millis(5));
            }
            points
        });
        Self { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> CpuTrace {
        self.stop.store(true, Ordering::Relaxed);
        let points = self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default();
        CpuTrace { points }
    }
}

impl Drop for CpuWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl CpuTrace {
    /// CPU time at `t`, interpolated linearly between the readings around it;
    /// `None` outside the traced interval.
    pub fn at(&self, t: SystemTime) -> Option<Duration> {
        let after = self.points.iter().position(|(when, _)| *when >= t)?;
        let (t1, c1) = self.points[after];
        if after == 0 {
            return (t1 == t).then_some(c1);
        }
        let (t0, c0) = self.points[after - 1];
        let span = t1.duration_since(t0).ok()?.as_secs_f64();
        let into = t.duration_since(t0).ok()?.as_secs_f64();
        let frac = if span > 0.0 { into / span } else { 1.0 };
        Some(c0 + (c1.saturating_sub(c0)).mul_f64(frac))
    }

    /// CPU time used between `from` and `to`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> Option<Duration> {
        Some(self.at(to)?.saturating_sub(self.at(from)?))
    }
}

// ---------------------------------------------------------------------------
// A cgroup v2 child

/// Mount points of cgroup2 file systems, from `/proc/self/mountinfo`
/// (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one).
pub fn cgroup2_mounts() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// A cgroup v2 directory made for one test under the cgroup2 root. Dropping
/// it moves any process still in it back to the root and removes it.
#[derive(Debug)]
pub struct TestCgroup {
    root: PathBuf,
    path: PathBuf,
}

impl TestCgroup {
    /// Creates `<cgroup2 root>/stackwatch-test-<name>-<pid>`.
    pub fn create(name: &str) -> Self {
        let Some(root) = cgroup2_mounts().into_iter().next() else {
            panic!("no cgroup2 file system is mounted (see /proc/self/mountinfo)")
        };
        let path = root.join(format!("stackwatch-test-{name}-{}", std::process::id()));
        // A leftover from a killed run of this very process id is reused.
        if let Err(err) = fs::create_dir(&path) {
            if err.kind() != io::ErrorKind::AlreadyExists {
                panic!("failed to create cgroup `{}`: {err}", path.display());
            }
        }
        Self { root, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: u32) {
        let procs = self.path.join("cgroup.procs");
        if let Err(err) = fs::write(&procs, pid.to_string()) {
            panic!("failed to move pid {pid} into `{}`: {err}", procs.display());
        }
    }

    /// The processes in this cgroup.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = fs::write(self.root.join("cgroup.procs"), pid.to_string());
        }
        // rmdir fails with EBUSY until exiting tasks are fully gone.
        for _ in 0..100 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return,
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("warning: could not remove test cgroup `{}`", self.path.display());
    }
}

// ---------------------------------------------------------------------------
// A read-only directory, even for root

/// `dir` bind-mounted over itself read-only: even root cannot write there
/// (EROFS), unlike a directory whose permission bits forbid it. Unmounted on drop.
#[derive(Debug)]
pub struct ReadOnlyBind {
    path: PathBuf,
}

impl ReadOnlyBind {
    pub fn new(dir: &Path) -> io::Result<Self> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated strings; null fs type and data are allowed for MS_BIND.
        if unsafe { libc::mount(c.as_ptr(), c.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let guard = Self { path: dir.to_owned() };
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        // SAFETY: as above.
        if unsafe { libc::mount(std::ptr::null(), c.as_ptr(), std::ptr::null(), flags, std::ptr::null()) } != 0 {
            return Err(io::Error::last_os_error()); // `guard` unmounts the bind
        }
        Ok(guard)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.path.as_os_str().as_encoded_bytes()) {
            // SAFETY: valid NUL-terminated string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!("warning: failed to unmount `{}`: {}", self.path.display(), io::Error::last_os_error());
            }
        }
    }
}

/// A small tmpfs mounted over a directory, to fill a disk on purpose;
/// unmounted (lazily, so a straggling open file cannot keep it) on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16k`) on the existing directory `dir`.
    pub fn mount(dir: &Path, size: &str) -> io::Result<Self> {
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        let data = CString::new(format!("size={size},mode=0755")).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated strings; tmpfs takes its options as text data.
        let rc = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, data.as_ptr().cast()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { path: dir.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.path.as_os_str().as_encoded_bytes()) {
            // SAFETY: valid NUL-terminated string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!("warning: failed to unmount `{}`: {}", self.path.display(), io::Error::last_os_error());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim (abridged) `go tool pprof -raw` output of Go 1.19 on a stackwatch profile.
    const RAW: &str = "\
Comment: stackwatch 0.1.0
PeriodType: cpu nanoseconds
Period: 10101010
Time: 2026-11-26 13:02:57.547578389 +0000 UTC
Duration: 6.00
Samples:
samples/count cpu/nanoseconds[dflt]
        315 3181818150: 1 2 3 4 
                comm:[cpu_split]
                pid:[26774] tid:[26774]
          3   30303030: 9 2 3 4 
                comm:[Web Content]
                pid:[26774] tid:[26775]
Locations
     1: 0x55a1e853d209 M=2 hot_a /work/cpu_split.c:44 s=0
     2: 0x55a1e853d271 M=2 inner /work/cpu_split.c:66 s=0
             loop_fn /work/cpu_split.c:70 s=0
     3: 0x55a1e853d3e9 M=2 main /work/cpu_split.c:98 s=0
     4: 0x7f122a6ec249 M=3 __libc_start_call_main ./csu/../sysdeps/nptl/libc_start_call_main.h:58 s=0
     9: 0xffffffff813620e2 M=1 handle_softirqs :0 s=0
Mappings
1: 0xffffffff81000e05/0xffffffff821f46a1/0x0 [kernel.kallsyms] 4a5a9b0affb66c437abcd455d2738af879985fa9 [FN]
2: 0x55a1e853d000/0x55a1e853e000/0x1000 /tmp/swt/cpu_split 0d1fdb7b0c1fe99f002e31f2a2f2474b51194d09 [FN][FL][LN]
3: 0x7f122a6eb000/0x7f122a841000/0x26000 /usr/lib/x86_64-linux-gnu/libc.so.6  [FN]
";

    #[test]
    fn parses_raw_profile() {
        let p = parse_pprof_raw(RAW);
        assert_eq!(p.sample_types, [("samples".into(), "count".into()), ("cpu".into(), "nanoseconds".into())]);
        assert_eq!(p.default_index, Some(1));
        assert_eq!(p.period_type, Some(("cpu".into(), "nanoseconds".into())));
        assert_eq!(p.period, 10_101_010);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.total(), 318);
        let s = &p.samples[0];
        assert_eq!(s.values, [315, 3_181_818_150]);
        assert_eq!(s.label("comm"), Some("cpu_split"));
        assert_eq!(s.label("tid"), Some("26774"));
        assert_eq!(s.user_root_first(), ["__libc_start_call_main", "main", "loop_fn", "inner", "hot_a"]);
        assert_eq!(s.stack[0].file, "/work/cpu_split.c");
        assert_eq!(s.stack[0].line, 44);
        let k = &p.samples[1];
        assert_eq!(k.label("comm"), Some("Web Content"));
        assert!(k.has_kernel_frames() && k.stack[0].function == "handle_softirqs");
        assert_eq!(k.user_leaf(), Some("inner"));
        assert_eq!(p.mappings.len(), 3);
        assert_eq!(p.mapping(1).map(|m| m.file.as_str()), Some("[kernel.kallsyms]"));
        assert_eq!(p.mapping(2).map(|m| m.build_id.as_str()), Some("0d1fdb7b0c1fe99f002e31f2a2f2474b51194d09"));
        assert_eq!(p.mapping(3).map(|m| m.build_id.as_str()), Some(""));
        assert_eq!(p.label_values("pid").len(), 1);
    }

    #[test]
    fn parses_tags() {
        let text = " comm: Total 5.2s\n       5.2s (  100%): cpu_split\n\n pid: Total 5.2s\n      4.0s (80%): 1\n      1.2s (20%): 2\n";
        let tags = parse_pprof_tags(text);
        assert_eq!(tags["comm"].iter().collect::<Vec<_>>(), ["cpu_split"]);
        assert_eq!(tags["pid"].len(), 2);
    }

    #[test]
    fn parses_svg_frames_and_title() {
        let svg = r#"<text id="title" fill="rgb(0,0,0)" x="50%">stackwatch cpu &amp; more</text><g><title>do_syscall_64 (1,286 samples, 72.22%)</title><rect x="3%" fill="rgb(243,143,0)" fg:x="13"/></g>"#;
        assert_eq!(svg_title(svg).as_deref(), Some("stackwatch cpu & more"));
        assert_eq!(
            svg_frames(svg),
            [SvgFrame { function: "do_syscall_64".into(), samples: 1286, fill: (243, 143, 0) }]
        );
    }

    #[test]
    fn parses_utc_timestamps() {
        let t = parse_utc("2026-11-26T13:02:57.547Z").expect("parse");
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap(), Duration::new(1_795_698_177, 547_000_000));
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_utc("2026-11-26 13:02:57"), None);
    }

    #[test]
    fn cpu_trace_interpolates() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let trace = CpuTrace {
            points: vec![(t0, Duration::from_secs(1)), (t0 + Duration::from_secs(2), Duration::from_secs(3))],
        };
        assert_eq!(trace.at(t0 + Duration::from_secs(1)), Some(Duration::from_secs(2)));
        assert_eq!(trace.between(t0, t0 + Duration::from_secs(2)), Some(Duration::from_secs(2)));
        assert_eq!(trace.at(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn finds_c_function_lines() {
        let (first, last) = c_function_lines(&crate::WorkloadKind::source_dir().join("cpu_split.c"), "hot_a");
        assert!(first < last && last - first < 20, "{first}..{last}");
    }
}
