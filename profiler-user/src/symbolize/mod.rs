//! Names the addresses of an [`Aggregate`] and builds the [`Profile`].
//!
//! One long-lived blazesym `Symbolizer` does the work: user frames through
//! `/proc/<pid>` (maps, `map_files`, so containers and deleted binaries
//! resolve; ELF symbols, DWARF lines and inlined functions; perf maps for JIT
//! code), kernel frames through `/proc/kallsyms`. An address that cannot be
//! named keeps its module and file offset (`libfoo.so+0x1a2b`) instead of
//! disappearing.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use blazesym::{
    symbolize::{
        source::{Kernel, Process, Source},
        CodeInfo, Input, Symbolized, Symbolizer as BlazeSymbolizer,
    },
    Pid,
};
use tracing::debug;

mod elf;
mod gopclntab;

use crate::{
    aggregate::{Aggregate, Frames, RawSample},
    profile::{Line, Location, Mapping, Profile, Sample},
};

/// Path recorded for the kernel's mapping, as perf names it.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// One executable mapping of a process, from `/proc/<pid>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    /// Device and inode, to cache per-file data across processes.
    pub dev_inode: (String, u64),
    pub path: String,
}

/// Parses the executable, file-backed (or named pseudo-file) lines of a
/// `/proc/<pid>/maps` text.
pub fn parse_maps(text: &str) -> Vec<MapsEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(dev), Some(inode)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = fields.next().unwrap_or("").trim_start();
        if !perms.contains('x') || path.is_empty() {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset), Ok(inode)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        out.push(MapsEntry { start, end, offset, dev_inode: (dev.to_owned(), inode), path: path.to_owned() });
    }
    out
}

/// The long-lived symbolizer (one per daemon; caches parsed files).
pub struct Symbolizer {
    inner: BlazeSymbolizer,
    build_ids: HashMap<(String, u64), Option<String>>,
    kernel_build_id: Option<Option<String>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the profile's tables while samples are translated.
struct Tables {
    profile: Profile,
    /// (pid or 0 for the kernel, address) → location index.
    locations: HashMap<(u32, u64), usize>,
    /// (pid, mapping start) → mapping index; pid 0 for the kernel.
    mappings: HashMap<(u32, u64), usize>,
    /// Placeholder locations (lost/missing stacks) by name.
    placeholders: HashMap<&'static str, usize>,
}

impl Tables {
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
    pub fn new() -> Self {
        let inner =
            BlazeSymbolizer::builder().enable_code_info(true).enable_inlined_fns(true).enable_demangling(true).build();
        Self { inner, build_ids: HashMap::new(), kernel_build_id: None }
    }

    /// Symbolizes every address of `agg` and returns a CPU profile
    /// (`samples/count`, `cpu/nanoseconds`).
    pub fn cpu_profile(
        &mut self,
        agg: &Aggregate,
        frequency_hz: u64,
        start: SystemTime,
        duration: Duration,
    ) -> Profile {
        let template = Profile::new_cpu(frequency_hz, start, duration);
        let period = template.period;
        self.build_profile(agg, template, |s| {
            let count = s.count as i64;
            vec![count, count.saturating_mul(period)]
        })
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
        let mut tables = Tables {
            profile: template,
            locations: HashMap::new(),
            mappings: HashMap::new(),
            placeholders: HashMap::new(),
        };
        self.add_kernel_locations(&mut tables, &agg.kernel_addrs);
        for (&pid, addrs) in &agg.user_addrs {
            self.add_user_locations(&mut tables, pid, addrs);
        }
        for s in &agg.samples {
            let mut locations = Vec::with_capacity(s.kernel.addrs().len() + s.user.addrs().len());
            match &s.kernel {
                Frames::Addrs(a) => {
                    let frames: Vec<usize> = a.iter().map(|addr| tables.locations[&(0, *addr)]).collect();
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
            match &s.user {
                Frames::Addrs(a) => locations.extend(a.iter().map(|addr| tables.locations[&(s.pid, *addr)])),
                Frames::Lost => locations.push(tables.placeholder("[lost user stack]", false)),
                Frames::Missing => locations.push(tables.placeholder("[missing user stack]", false)),
                Frames::None => {}
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
        tables.mappings.insert((0, 0), mapping);
        let src = Source::Kernel(Kernel {
            // No vmlinux: it needs the KASLR offset from /proc/kcore, which
            // hosts often lack; kallsyms holds runtime addresses already.
            vmlinux: blazesym::MaybeDefault::None,
            debug_syms: false,
            ..Default::default()
        });
        let results = match self.inner.symbolize(&src, Input::AbsAddr(addrs)) {
            Ok(r) => r,
            Err(e) => {
                debug!("kernel symbolization failed: {e}");
                Vec::new()
            }
        };
        for (i, &addr) in addrs.iter().enumerate() {
            let lines = match results.get(i) {
                Some(Symbolized::Sym(sym)) => sym_lines(sym),
                _ => vec![Line { function: format!("[kernel]+{addr:#x}"), file: None, line: None }],
            };
            let idx = tables.profile.locations.len();
            tables.profile.locations.push(Location { address: addr, mapping: Some(mapping), lines, kernel: true });
            tables.locations.insert((0, addr), idx);
        }
    }

    fn add_user_locations(&mut self, tables: &mut Tables, pid: u32, addrs: &[u64]) {
        if addrs.is_empty() {
            return;
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|t| parse_maps(&t)).unwrap_or_default();
        let src = Source::Process(Process::new(Pid::from(pid)));
        let results: Vec<Option<Vec<Line>>> = if maps.is_empty() {
            Vec::new()
        } else {
            match self.inner.symbolize(&src, Input::AbsAddr(addrs)) {
                Ok(r) => r.iter().map(|s| s.as_sym().map(sym_lines)).collect(),
                Err(e) => {
                    debug!(pid, "user symbolization failed: {e}");
                    Vec::new()
                }
            }
        };
        for (i, &addr) in addrs.iter().enumerate() {
            let entry = maps.iter().find(|m| m.start <= addr && addr < m.end);
            let mapping = entry.map(|m| self.mapping_index(tables, pid, m));
            let lines = match results.get(i) {
                Some(Some(lines)) => lines.clone(),
                _ => vec![Line { function: unknown_name(entry, addr, maps.is_empty()), file: None, line: None }],
            };
            let idx = tables.profile.locations.len();
            tables.profile.locations.push(Location { address: addr, mapping, lines, kernel: false });
            tables.locations.insert((pid, addr), idx);
        }
    }

    fn mapping_index(&mut self, tables: &mut Tables, pid: u32, m: &MapsEntry) -> usize {
        if let Some(&i) = tables.mappings.get(&(pid, m.start)) {
            return i;
        }
        let build_id = self
            .build_ids
            .entry(m.dev_inode.clone())
            .or_insert_with(|| {
                // map_files works for files in other mount namespaces and for
                // deleted ones; fall back to the path as the process sees it.
                let via_proc = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
                read_build_id(&via_proc).or_else(|| read_build_id(Path::new(&m.path)))
            })
            .clone();
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
fn sym_lines(sym: &blazesym::symbolize::Sym<'_>) -> Vec<Line> {
    let mut lines = Vec::with_capacity(1 + sym.inlined.len());
    for f in sym.inlined.iter().rev() {
        let (file, line) = code_location(f.code_info.as_ref());
        lines.push(Line { function: f.name.to_string(), file, line });
    }
    let (file, line) = code_location(sym.code_info.as_deref());
    lines.push(Line { function: sym.name.to_string(), file, line });
    lines
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
        Some(m) => {
            let base =
                Path::new(&m.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(m.path.clone());
            format!("{base}+{:#x}", addr - m.start + m.offset)
        }
        None if process_gone => format!("[exited process]+{addr:#x}"),
        None => format!("[unknown]+{addr:#x}"),
    }
}

fn read_build_id(path: &Path) -> Option<String> {
    match blazesym::helper::read_elf_build_id(&path) {
        Ok(Some(id)) => Some(hex(&id)),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running kernel's GNU build ID, from the ELF notes in `/sys/kernel/notes`.
fn kernel_build_id() -> Option<String> {
    let notes = std::fs::read("/sys/kernel/notes").ok()?;
    parse_build_id_note(&notes)
}

/// Finds an `NT_GNU_BUILD_ID` note (name "GNU") in a raw ELF note section.
pub fn parse_build_id_note(mut data: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let align4 = |n: usize| n.div_ceil(4) * 4;
    while data.len() >= 12 {
        let (namesz, descsz, kind) = (word(&data[0..]) as usize, word(&data[4..]) as usize, word(&data[8..]));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > data.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && namesz == 4 && data[12..16] == *b"GNU\0" {
            return Some(hex(&data[name_end..name_end + descsz]));
        }
        data = &data[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_executable_maps_only() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 1234 /usr/bin/cat
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r-xp 00028000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd0000000-7ffd0002000 r-xp 00000000 00:00 0 [vdso]
7f0000300000-7f0000301000 r-xp 00000000 fd:01 77 /tmp/my prog (deleted)
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].start, 0x55d0c0a01000);
        assert_eq!(maps[0].offset, 0x1000);
        assert_eq!(maps[1].path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(maps[2].path, "[vdso]");
        assert_eq!(maps[3].path, "/tmp/my prog (deleted)");
        assert_eq!(unknown_name(Some(&maps[1]), 0x7f0000100010, false), "libc.so.6+0x28010");
        assert_eq!(unknown_name(None, 0x10, true), "[exited process]+0x10");
    }

    #[test]
    fn finds_gnu_build_id_note() {
        let mut note = Vec::new();
        // An unrelated note first.
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&1u32.to_ne_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&[1, 2, 3, 4]);
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(parse_build_id_note(&note).as_deref(), Some("abcdef"));
        assert_eq!(parse_build_id_note(&note[..10]), None);
    }

    #[test]
    fn symbolizes_own_process() {
        // Our own code, through the same path as any target process.
        let addr = symbolizes_own_process as *const () as u64;
        let mut agg = Aggregate::default();
        let pid = std::process::id();
        agg.user_addrs.insert(pid, vec![addr]);
        agg.samples.push(crate::aggregate::RawSample {
            pid,
            tid: pid,
            comm: "test".into(),
            user: Frames::Addrs(vec![addr].into()),
            kernel: Frames::None,
            count: 3,
            weight: 0,
            extra: 0,
        });
        agg.total = 3;
        let mut s = Symbolizer::new();
        let p = s.cpu_profile(&agg, 99, SystemTime::now(), Duration::from_secs(1));
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].values, vec![3, 3 * 10_101_010]);
        let loc = &p.locations[p.samples[0].locations[0]];
        let name = &loc.lines.last().unwrap().function;
        assert!(name.contains("symbolizes_own_process"), "got {name}");
        let mapping = &p.mappings[loc.mapping.expect("mapping")];
        assert!(mapping.build_id.is_some(), "test binary has a build id");
    }
}
