//! The pprof writer: `Profile` → gzip-compressed `profile.proto`.
//!
//! The protobuf messages are written by hand with `prost` derives (tags
//! copied from google/pprof's `proto/profile.proto`), so the build needs no
//! `protoc`. The translation is direct: mapping, location and function ids
//! start at 1 (0 means "none" in pprof), strings live in one deduplicated
//! table whose entry 0 is `""`, functions are deduplicated by (name, file),
//! and each sample carries `pid`, `tid` (numbers) and `comm` (string)
//! labels so `go tool pprof -tagfocus` and Pyroscope can slice by process.

use std::collections::HashMap;
use std::io::Write as _;

use anyhow::Context as _;
use prost::Message as _;

use crate::profile::{Line, Profile};

/// Mirrors of `perftools.profiles` messages (fields stackwatch never sets,
/// such as `drop_frames`, are still declared so decoding keeps them).
pub(crate) mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost (inlined callee) first, the caller last.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Encodes `profile` as an uncompressed protobuf.
#[cfg(test)]
pub(crate) fn encode(profile: &Profile) -> Vec<u8> {
    encode_with_comments(profile, &[])
}

/// Encodes `profile` with freeform comments (`go tool pprof -comments`).
pub(crate) fn encode_with_comments(profile: &Profile, comments: &[String]) -> Vec<u8> {
    build(profile, comments).encode_to_vec()
}

/// The on-disk form: the protobuf, gzip-compressed as pprof requires.
pub(crate) fn encode_gzip(profile: &Profile, comments: &[String]) -> anyhow::Result<Vec<u8>> {
    let raw = encode_with_comments(profile, comments);
    // The gzip header's mtime stays 0, so equal profiles give equal files.
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::default());
    encoder.write_all(&raw).context("failed to compress the profile")?;
    encoder.finish().context("failed to compress the profile")
}

/// Decodes a profile, gzip-compressed or not.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> anyhow::Result<proto::Profile> {
    use std::io::Read as _;
    let mut inflated = Vec::new();
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut inflated).context("failed to decompress the profile")?;
        &inflated[..]
    } else {
        bytes
    };
    proto::Profile::decode(raw).context("failed to decode the profile protobuf")
}

/// Whether symbolization produced a real name rather than a placeholder
/// such as `[unknown]` or `libfoo.so+0x1234` (the forms `symbolize` uses).
fn is_symbolized(name: &str) -> bool {
    !(name.is_empty() || (name.starts_with('[') && name.ends_with(']')) || name.contains("+0x"))
}

/// The deduplicated string table; index 0 is always `""`.
struct Strings<'a> {
    table: Vec<String>,
    index: HashMap<&'a str, i64>,
}

impl<'a> Strings<'a> {
    fn new() -> Self {
        let mut index = HashMap::new();
        index.insert("", 0);
        Self { table: vec![String::new()], index }
    }

    fn intern(&mut self, s: &'a str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s, i);
        i
    }

    /// Adds a string made here (not borrowed from the profile); callers
    /// deduplicate it themselves.
    fn push_owned(&mut self, s: String) -> i64 {
        self.table.push(s);
        self.table.len() as i64 - 1
    }

    fn value_type(&mut self, t: &'a crate::profile::ValueType) -> proto::ValueType {
        proto::ValueType { r#type: self.intern(&t.kind), unit: self.intern(&t.unit) }
    }
}

/// Symbolic information found for one mapping, for its `has_*` flags.
#[derive(Default, Clone, Copy)]
struct MappingDetail {
    functions: bool,
    filenames: bool,
    line_numbers: bool,
    inline_frames: bool,
}

fn build<'a>(profile: &'a Profile, comments: &'a [String]) -> proto::Profile {
    let mut strings = Strings::new();
    let mut out = proto::Profile {
        sample_type: profile.sample_types.iter().map(|t| strings.value_type(t)).collect(),
        ..Default::default()
    };

    // Labels keys first so they sit together at the start of the table.
    let (pid_key, tid_key, comm_key) = (strings.intern("pid"), strings.intern("tid"), strings.intern("comm"));
    // The flight recorder's profile: each sample's time slot, as text for
    // `-tagfocus=slot=…T03:1` and as a number (Unix seconds) for ranges.
    let slot_keys = (profile.slots.len() == profile.samples.len() && !profile.slots.is_empty())
        .then(|| (strings.intern("slot"), strings.intern("slot_start"), strings.intern("seconds")));
    let mut slot_strings: HashMap<std::time::SystemTime, i64> = HashMap::new();
    let n_values = profile.sample_types.len();
    for (index, sample) in profile.samples.iter().enumerate() {
        let mut value = sample.values.clone();
        // pprof rejects samples whose value count differs from sample_type's.
        value.resize(n_values, 0);
        out.sample.push(proto::Sample {
            location_id: sample
                .locations
                .iter()
                .filter(|&&i| i < profile.locations.len())
                .map(|&i| i as u64 + 1)
                .collect(),
            value,
            label: vec![
                proto::Label { key: pid_key, num: sample.pid.get().into(), ..Default::default() },
                proto::Label { key: tid_key, num: sample.tid.get().into(), ..Default::default() },
                proto::Label { key: comm_key, str: strings.intern(&sample.comm), ..Default::default() },
            ],
        });
        if let (Some((slot_key, start_key, seconds)), Some(&slot)) = (slot_keys, profile.slots.get(index)) {
            let text = *slot_strings
                .entry(slot)
                .or_insert_with(|| strings.push_owned(humantime::format_rfc3339_seconds(slot).to_string()));
            let unix = slot.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            if let Some(last) = out.sample.last_mut() {
                last.label.push(proto::Label { key: slot_key, str: text, ..Default::default() });
                last.label.push(proto::Label { key: start_key, num: unix, num_unit: seconds, ..Default::default() });
            }
        }
    }

    let mut details = vec![MappingDetail::default(); profile.mappings.len()];
    let mut functions: HashMap<(&str, Option<&str>), u64> = HashMap::new();
    for (index, location) in profile.locations.iter().enumerate() {
        let mapping = location.mapping.filter(|&m| m < profile.mappings.len());
        if let Some(detail) = mapping.and_then(|m| details.get_mut(m)) {
            detail.functions |= location.lines.iter().any(|l| is_symbolized(&l.function));
            detail.filenames |= location.lines.iter().any(|l| l.file.is_some());
            detail.line_numbers |= location.lines.iter().any(|l| l.line.is_some());
            detail.inline_frames |= location.lines.len() > 1;
        }
        let line = location
            .lines
            .iter()
            .map(|line| proto::Line {
                function_id: function_id(&mut functions, &mut out.function, &mut strings, line),
                line: line.line.map_or(0, i64::from),
                column: 0,
            })
            .collect();
        out.location.push(proto::Location {
            id: index as u64 + 1,
            mapping_id: mapping.map_or(0, |m| m as u64 + 1),
            address: location.address,
            line,
            is_folded: false,
        });
    }

    for (index, (mapping, detail)) in profile.mappings.iter().zip(&details).enumerate() {
        out.mapping.push(proto::Mapping {
            id: index as u64 + 1,
            memory_start: mapping.start,
            memory_limit: mapping.limit,
            file_offset: mapping.offset,
            filename: strings.intern(&mapping.path),
            build_id: mapping.build_id.as_deref().map_or(0, |b| strings.intern(b)),
            has_functions: detail.functions,
            has_filenames: detail.filenames,
            has_line_numbers: detail.line_numbers,
            has_inline_frames: detail.inline_frames,
        });
    }

    out.time_nanos = profile
        .start
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    out.duration_nanos = i64::try_from(profile.duration.as_nanos()).unwrap_or(i64::MAX);
    out.period_type = Some(strings.value_type(&profile.period_type));
    out.period = profile.period;
    out.default_sample_type = profile.default_sample_type.as_deref().map_or(0, |s| strings.intern(s));
    out.comment = comments.iter().map(|c| strings.intern(c)).collect();
    out.string_table = strings.table;
    out
}

fn function_id<'a>(
    ids: &mut HashMap<(&'a str, Option<&'a str>), u64>,
    functions: &mut Vec<proto::Function>,
    strings: &mut Strings<'a>,
    line: &'a Line,
) -> u64 {
    let key = (line.function.as_str(), line.file.as_deref());
    if let Some(&id) = ids.get(&key) {
        return id;
    }
    let id = functions.len() as u64 + 1;
    let name = strings.intern(&line.function);
    functions.push(proto::Function {
        id,
        name,
        // Only demangled names are known; pprof falls back to `name` anyway.
        system_name: name,
        filename: line.file.as_deref().map_or(0, |f| strings.intern(f)),
        start_line: 0,
    });
    ids.insert(key, id);
    id
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::process::Command;

    use super::*;
    use crate::profile::testdata::{empty_profile, sample_profile};

    fn string(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[usize::try_from(i).unwrap()]
    }

    /// The invariants `go tool pprof` checks, and a few of our own.
    fn check_invariants(p: &proto::Profile) {
        assert_eq!(p.string_table.first().map(String::as_str), Some(""));
        let unique: HashSet<&String> = p.string_table.iter().collect();
        assert_eq!(unique.len(), p.string_table.len(), "string table must be deduplicated");
        let n = p.string_table.len() as i64;
        let in_table = |i: i64| (0..n).contains(&i);

        let mapping_ids: HashSet<u64> = p.mapping.iter().map(|m| m.id).collect();
        let location_ids: HashSet<u64> = p.location.iter().map(|l| l.id).collect();
        let function_ids: HashSet<u64> = p.function.iter().map(|f| f.id).collect();
        assert_eq!(mapping_ids.len(), p.mapping.len());
        assert_eq!(location_ids.len(), p.location.len());
        assert_eq!(function_ids.len(), p.function.len());
        assert!(!mapping_ids.contains(&0) && !location_ids.contains(&0) && !function_ids.contains(&0));

        for t in p.sample_type.iter().chain(p.period_type.iter()) {
            assert!(in_table(t.r#type) && in_table(t.unit));
        }
        for s in &p.sample {
            assert_eq!(s.value.len(), p.sample_type.len());
            assert!(s.location_id.iter().all(|id| location_ids.contains(id)));
            let keys: Vec<&str> = s.label.iter().map(|l| string(p, l.key)).collect();
            assert_eq!(keys, ["pid", "tid", "comm"]);
        }
        for l in &p.location {
            assert!(l.mapping_id == 0 || mapping_ids.contains(&l.mapping_id));
            assert!(l.line.iter().all(|line| function_ids.contains(&line.function_id)));
        }
        let mut seen_functions = HashSet::new();
        for f in &p.function {
            assert!(in_table(f.name) && in_table(f.filename) && in_table(f.system_name));
            assert!(seen_functions.insert((f.name, f.filename)), "functions must be deduplicated");
        }
        for m in &p.mapping {
            assert!(in_table(m.filename) && in_table(m.build_id));
        }
        assert!(in_table(p.default_sample_type));
        assert!(p.comment.iter().all(|&c| in_table(c)));
    }

    #[test]
    fn round_trip_keeps_everything() {
        let profile = sample_profile();
        let comments = vec!["stackwatch test".to_owned()];
        let gz = encode_gzip(&profile, &comments).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        let p = decode(&gz).unwrap();
        assert_eq!(decode(&encode_with_comments(&profile, &comments)).unwrap(), p);
        check_invariants(&p);

        let types: Vec<(&str, &str)> =
            p.sample_type.iter().map(|t| (string(&p, t.r#type), string(&p, t.unit))).collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        assert_eq!(string(&p, p.default_sample_type), "cpu");
        let period_type = p.period_type.clone().unwrap();
        assert_eq!((string(&p, period_type.r#type), string(&p, period_type.unit)), ("cpu", "nanoseconds"));
        assert_eq!(p.period, profile.period);
        assert_eq!(p.time_nanos, 1_795_696_200 * 1_000_000_000);
        assert_eq!(p.duration_nanos, 30 * 1_000_000_000);
        assert_eq!(p.comment.iter().map(|&c| string(&p, c)).collect::<Vec<_>>(), ["stackwatch test"]);

        // Samples: same stacks, values and labels.
        assert_eq!(p.sample.len(), profile.samples.len());
        for (s, orig) in p.sample.iter().zip(&profile.samples) {
            assert_eq!(s.value, orig.values);
            let ids: Vec<u64> = orig.locations.iter().map(|&i| i as u64 + 1).collect();
            assert_eq!(s.location_id, ids);
            assert_eq!(s.label[0].num, i64::from(orig.pid.get()));
            assert_eq!(s.label[1].num, i64::from(orig.tid.get()));
            assert_eq!(string(&p, s.label[2].str), orig.comm);
        }

        // Locations: address, mapping and inlined lines innermost first.
        for (l, orig) in p.location.iter().zip(&profile.locations) {
            assert_eq!(l.address, orig.address);
            assert_eq!(l.mapping_id, orig.mapping.map_or(0, |m| m as u64 + 1));
            let names: Vec<(&str, i64)> = l
                .line
                .iter()
                .map(|line| {
                    let f = &p.function[usize::try_from(line.function_id - 1).unwrap()];
                    (string(&p, f.name), line.line)
                })
                .collect();
            let expected: Vec<(&str, i64)> =
                orig.lines.iter().map(|x| (x.function.as_str(), x.line.map_or(0, i64::from))).collect();
            assert_eq!(names, expected);
        }
        let inlined = &p.location[2];
        assert_eq!(inlined.line.len(), 2);

        // Mappings: paths, build ids and truthful flags.
        let m: Vec<(&str, &str, bool, bool, bool, bool)> = p
            .mapping
            .iter()
            .map(|m| {
                let (f, b) = (string(&p, m.filename), string(&p, m.build_id));
                (f, b, m.has_functions, m.has_filenames, m.has_line_numbers, m.has_inline_frames)
            })
            .collect();
        assert_eq!(
            m,
            [
                ("/usr/bin/myservice", "8f3c0ab1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708", true, true, true, true),
                (
                    "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    "b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7081920",
                    true,
                    false,
                    false,
                    false
                ),
                ("[kernel.kallsyms]", "", true, true, true, false),
                ("/opt/stripped/bin/blob", "", false, false, false, false),
            ]
        );
    }

    #[test]
    fn functions_are_deduplicated_by_name_and_file() {
        let p = decode(&encode(&sample_profile())).unwrap();
        // `main` appears at two locations with the same file: one function.
        let mains = p.function.iter().filter(|f| string(&p, f.name) == "main").count();
        assert_eq!(mains, 1);
    }

    #[test]
    fn empty_profile_is_valid() {
        let p = decode(&encode_gzip(&empty_profile(), &[]).unwrap()).unwrap();
        check_invariants(&p);
        assert!(p.sample.is_empty());
        assert_eq!(p.sample_type.len(), 2);
    }

    #[test]
    fn ragged_values_are_padded() {
        let mut profile = sample_profile();
        profile.samples[0].values.truncate(1);
        let p = decode(&encode(&profile)).unwrap();
        check_invariants(&p);
        assert_eq!(p.sample[0].value[1], 0);
    }

    /// Opens the file with the real client. In CI (`CI` set) a missing `go`
    /// is a failure: `cargo xtask setup` installs it.
    #[test]
    fn opens_in_go_tool_pprof() {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if Command::new("go").arg("version").output().is_err() {
            assert!(!in_ci, "`go` is not on PATH but CI is set: run `cargo xtask setup` (installs golang-go)");
            eprintln!("note: `go` not found; skipping the `go tool pprof` check");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cpu.pb.gz");
        std::fs::write(&path, encode_gzip(&sample_profile(), &["stackwatch test".to_owned()]).unwrap()).unwrap();

        let run = |args: &[&str]| {
            let out = Command::new("go")
                .args(["tool", "pprof", "-symbolize=none"])
                .args(args)
                .arg(&path)
                .env("PPROF_TMPDIR", tmp.path())
                .env("HOME", tmp.path())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "go tool pprof {args:?} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        };
        let top = run(&["-top", "-sample_index=cpu"]);
        for name in ["inline_helper", "hot_loop", "main", "do_syscall_64", "__libc_start_main", "operator;weird<ü>"] {
            assert!(top.contains(name), "`{name}` missing from go tool pprof -top:\n{top}");
        }
        let samples = run(&["-top", "-sample_index=samples"]);
        assert!(samples.contains("17"), "total sample count missing:\n{samples}");
        let tags = run(&["-tags"]);
        for label in ["pid", "tid", "comm", "worker ü"] {
            assert!(tags.contains(label), "label `{label}` missing from -tags:\n{tags}");
        }
        let lines = run(&["-top", "-lines", "-sample_index=cpu"]);
        assert!(lines.contains("src/hot.c:42"), "file:line missing:\n{lines}");
    }
}
