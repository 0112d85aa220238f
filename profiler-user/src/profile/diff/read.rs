//! Reading pprof files back: any `profile.proto`, gzip-compressed (as Go and
//! stackwatch write it) or plain, from stackwatch or from Go's
//! `runtime/pprof`, `net/http/pprof` and the tools built on them.
//!
//! `stackwatch diff` compares profiles by function name, so the reader turns
//! the format's ids into names once, up front: each location becomes its
//! frames (a location with inlined calls is several frames, innermost first,
//! as profile.proto orders its lines), names are interned so a stack is a
//! list of small integers, and a location without symbols is named by its
//! file offset in its mapping (`libfoo.so+0x1a2b`), which stays the same
//! from one run to the next where the address does not (ASLR). A file that
//! breaks the format's rules (an index out of range, a sample with the wrong
//! number of values) is refused with what is wrong, as `go tool pprof`
//! refuses it, rather than read by guesswork: the shares printed must mean
//! what they say.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use crate::profile::folded::sanitize_frame;
use crate::profile::pprof::proto;
use crate::profile::ValueType;

/// Largest profile the reader unpacks. Real profiles are far smaller (a
/// busy host's 60 s capture is a few MiB); the limit stops a gzip bomb, or a
/// file given by mistake, from exhausting memory.
pub(crate) const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// Frame name of a sample without any location, and of a function without a name.
pub(crate) const UNKNOWN: &str = "[unknown]";

/// Why a file is not a profile `diff` can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ReadError {
    #[error("the file is empty")]
    Empty,
    #[error("it looks gzip-compressed but does not unpack ({0}); is it truncated?")]
    Gzip(String),
    #[error("it unpacks to more than {} MiB, far more than any profile", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error("it is not a pprof profile (profile.proto): {0}")]
    NotProtobuf(String),
    #[error("it is not a valid pprof profile: {0}")]
    Invalid(String),
}

/// A profile read back, its stacks resolved to function names.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PprofProfile {
    /// What each value of a sample measures, e.g. `samples/count`, `cpu/nanoseconds`.
    pub(crate) sample_types: Vec<ValueType>,
    /// The sample type the profile asks readers to show, when it names one.
    pub(crate) default_sample_type: Option<String>,
    /// When the profile starts, when it says.
    pub(crate) time: Option<SystemTime>,
    /// How long it covers, when it says.
    pub(crate) duration: Option<Duration>,
    /// Every function name, once; [`StackSample::frames`] index into it.
    pub(crate) names: Vec<String>,
    pub(crate) samples: Vec<StackSample>,
}

/// One sample: a stack and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StackSample {
    /// Indices into [`PprofProfile::names`], leaf (innermost) first.
    pub(crate) frames: Vec<u32>,
    /// One per [`PprofProfile::sample_types`] entry.
    pub(crate) values: Vec<i64>,
}

/// Which sample type to compare, as `--sample-index` gives it (the spelling
/// of `go tool pprof -sample_index`): a name such as `alloc_space`, or a
/// position counted from 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SampleIndex {
    Position(usize),
    Name(String),
}

impl SampleIndex {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("expected a sample type name such as `cpu`, or its position such as `1`".to_owned());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(SampleIndex::Position)
                .map_err(|_| format!("`{text}` is not a position a profile could have"));
        }
        Ok(SampleIndex::Name(text.to_owned()))
    }
}

/// Decodes a profile, gzip-compressed (detected by its magic bytes) or plain.
pub(crate) fn decode(bytes: &[u8]) -> Result<PprofProfile, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    let mut unpacked = Vec::new();
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_UNPACKED_BYTES + 1)
            .read_to_end(&mut unpacked)
            .map_err(|e| ReadError::Gzip(e.to_string()))?;
        if unpacked.len() as u64 > MAX_UNPACKED_BYTES {
            return Err(ReadError::TooLarge);
        }
        &unpacked[..]
    } else {
        bytes
    };
    let message = proto::Profile::decode(raw).map_err(|e| ReadError::NotProtobuf(e.to_string()))?;
    resolve(&message).map_err(ReadError::Invalid)
}

impl PprofProfile {
    /// The sample type `go tool pprof` shows when not told: the one the
    /// profile names as its default, else the last one.
    pub(crate) fn default_index(&self) -> usize {
        self.default_sample_type
            .as_deref()
            .and_then(|name| self.sample_types.iter().position(|t| t.kind == name))
            .unwrap_or(self.sample_types.len().saturating_sub(1))
    }

    /// The index of the sample type `wanted` names, or the default one.
    pub(crate) fn sample_index(&self, wanted: Option<&SampleIndex>) -> Result<usize, String> {
        let missing = |what: String| format!("has no sample type {what} (it has {})", self.describe_sample_types());
        match wanted {
            None => Ok(self.default_index()),
            Some(&SampleIndex::Position(i)) if i < self.sample_types.len() => Ok(i),
            Some(SampleIndex::Position(i)) => Err(missing(format!("at position {i}"))),
            Some(SampleIndex::Name(name)) => {
                self.sample_types.iter().position(|t| t.kind == *name).ok_or_else(|| missing(format!("`{name}`")))
            }
        }
    }

    /// `0 samples/count, 1 cpu/nanoseconds`: what `--sample-index` can pick.
    pub(crate) fn describe_sample_types(&self) -> String {
        self.sample_types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{i} {}/{}", t.kind, t.unit))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Sum of value `index` over the samples where it is positive.
    pub(crate) fn total(&self, index: usize) -> i64 {
        self.samples.iter().map(|s| positive(s, index)).fold(0i64, i64::saturating_add)
    }

    /// The profile as folded stacks weighted by value `index`: frames root
    /// first, `;`-separated and made safe for the folded format, identical
    /// stacks merged, sorted; samples whose value is not positive are left out.
    pub(crate) fn folded(&self, index: usize) -> Vec<(String, u64)> {
        let names: Vec<std::borrow::Cow<'_, str>> = self.names.iter().map(|n| sanitize_frame(n)).collect();
        let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
        let mut stack = String::new();
        for sample in &self.samples {
            let value = positive(sample, index);
            if value == 0 {
                continue;
            }
            stack.clear();
            for &frame in sample.frames.iter().rev() {
                if !stack.is_empty() {
                    stack.push(';');
                }
                stack.push_str(&names[frame as usize]);
            }
            if stack.is_empty() {
                stack.push_str(UNKNOWN);
            }
            let total = stacks.entry(stack.clone()).or_insert(0);
            *total = total.saturating_add(value as u64);
        }
        stacks.into_iter().collect()
    }
}

/// Value `index` of `sample` when positive, else 0: a negative value (only
/// `go tool pprof -diff_base` output has them) would make shares meaningless.
pub(crate) fn positive(sample: &StackSample, index: usize) -> i64 {
    sample.values.get(index).copied().unwrap_or(0).max(0)
}

/// Turns the message's ids into names, checking every reference.
fn resolve(p: &proto::Profile) -> Result<PprofProfile, String> {
    if p.string_table.first().is_none_or(|s| !s.is_empty()) {
        return Err("its string table does not start with the empty string".to_owned());
    }
    let string =
        |i: i64| -> Result<&str, String> {
            usize::try_from(i).ok().and_then(|i| p.string_table.get(i)).map(String::as_str).ok_or_else(|| {
                format!("string index {i} is past the end of its string table ({})", p.string_table.len())
            })
        };
    if p.sample_type.is_empty() {
        return Err("it declares no sample types".to_owned());
    }
    let sample_types = p
        .sample_type
        .iter()
        .map(|t| Ok(ValueType::new(string(t.r#type)?, string(t.unit)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let default_sample_type = Some(string(p.default_sample_type)?).filter(|s| !s.is_empty()).map(str::to_owned);

    let mut names = Names::default();
    let mut functions: HashMap<u64, u32> = HashMap::with_capacity(p.function.len());
    for f in &p.function {
        let name = match string(f.name)? {
            "" => match string(f.system_name)? {
                "" => UNKNOWN,
                system => system,
            },
            name => name,
        };
        functions.insert(f.id, names.intern(name));
    }
    let mut mappings: HashMap<u64, &proto::Mapping> = HashMap::with_capacity(p.mapping.len());
    for m in &p.mapping {
        string(m.filename)?;
        mappings.insert(m.id, m);
    }

    let mut locations: HashMap<u64, Vec<u32>> = HashMap::with_capacity(p.location.len());
    for loc in &p.location {
        let mapping = match loc.mapping_id {
            0 => None,
            id => Some(
                *mappings
                    .get(&id)
                    .ok_or_else(|| format!("location {} refers to mapping {id}, which it does not have", loc.id))?,
            ),
        };
        let frames = if loc.line.is_empty() {
            vec![names.intern(&unsymbolized_name(loc.address, mapping, &p.string_table))]
        } else {
            loc.line
                .iter()
                .map(|line| {
                    functions.get(&line.function_id).copied().ok_or_else(|| {
                        format!("location {} refers to function {}, which it does not have", loc.id, line.function_id)
                    })
                })
                .collect::<Result<Vec<_>, String>>()?
        };
        locations.insert(loc.id, frames);
    }

    let mut samples = Vec::with_capacity(p.sample.len());
    for (n, s) in p.sample.iter().enumerate() {
        if s.value.len() != sample_types.len() {
            return Err(format!(
                "sample {n} has {} values but the profile declares {} sample types",
                s.value.len(),
                sample_types.len()
            ));
        }
        let mut frames = Vec::with_capacity(s.location_id.len());
        for id in &s.location_id {
            let location = locations
                .get(id)
                .ok_or_else(|| format!("sample {n} refers to location {id}, which it does not have"))?;
            frames.extend_from_slice(location);
        }
        samples.push(StackSample { frames, values: s.value.clone() });
    }

    let nanos = |n: i64| u64::try_from(n).ok().filter(|&n| n > 0).map(Duration::from_nanos);
    Ok(PprofProfile {
        sample_types,
        default_sample_type,
        time: nanos(p.time_nanos).map(|d| UNIX_EPOCH + d),
        duration: nanos(p.duration_nanos),
        names: names.table,
        samples,
    })
}

/// `libfoo.so+0x1a2b` (the file offset in the mapped file), or the bare
/// address when the location has no mapping.
fn unsymbolized_name(address: u64, mapping: Option<&proto::Mapping>, strings: &[String]) -> String {
    let file = mapping.and_then(|m| {
        let path = usize::try_from(m.filename).ok().and_then(|i| strings.get(i))?;
        let base = path.rsplit('/').next().filter(|b| !b.is_empty())?;
        let offset = address.wrapping_sub(m.memory_start).wrapping_add(m.file_offset);
        Some((base, offset))
    });
    match file {
        Some((base, offset)) => format!("{base}+0x{offset:x}"),
        None => format!("0x{address:x}"),
    }
}

/// Function names, each stored once.
#[derive(Default)]
struct Names {
    table: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
}
