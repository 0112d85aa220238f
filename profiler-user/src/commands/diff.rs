//! `stackwatch diff BASE NEW`: what changed between two profiles.
//!
//! After an incident the question is rarely "where does the time go" but
//! "what is different from before": this command answers it for any two
//! pprof files of the same sample type, stackwatch's captures and Go's own
//! (`runtime/pprof`, `net/http/pprof`, go-zero's SIGUSR2 dumps) alike. It
//! prints the functions whose share grew most and shrank most, and with `-o`
//! writes a differential flamegraph; the reading, comparing and drawing are
//! pure and live in `crate::profile::diff`. Shares rather than raw values are compared,
//! so captures of different lengths compare fairly.
//!
//! A bad input is a usage error (exit 2) that names the file and what is
//! wrong with it; `-o` is checked before anything is read, and an existing
//! file there is refused rather than replaced, as every stackwatch output is.

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::DiffArgs;
use crate::config::UsageError;
use crate::profile::diff::compare::{self, Comparison, Rank};
use crate::profile::diff::read::{self, PprofProfile, ReadError};
use crate::profile::diff::render::{render_diff_svg, DiffLabels};
use crate::profile::report::format_value;
use crate::profile::time::UtcTime;
use crate::sink::dir::sudo_owner;
use crate::sink::files::OutputDir;

/// Runs `stackwatch diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<()> {
    let svg_target = args.output.as_deref().map(SvgTarget::prepare).transpose()?;
    let base = Input::load(&args.base, "base")?;
    let new = Input::load(&args.new, "new")?;
    let base_index = base.sample_index(args.sample_index.as_ref())?;
    let new_index = new.sample_index(args.sample_index.as_ref())?;
    let value_type = &base.profile.sample_types[base_index];
    if *value_type != new.profile.sample_types[new_index] {
        return Err(usage(mismatch(&base, base_index, &new, new_index)));
    }
    let comparison = compare::compare(&base.profile, base_index, &new.profile, new_index);
    let kind = format!("{}/{}", value_type.kind, value_type.unit);
    if comparison.base_total == 0 && comparison.new_total == 0 {
        return Err(usage(format!(
            "neither `{}` nor `{}` has any {kind} samples, so there is nothing to compare; \
             choose another sample type with --sample-index (the base has {})",
            base.path.display(),
            new.path.display(),
            base.profile.describe_sample_types()
        )));
    }
    let rank = if args.cum { Rank::Cum } else { Rank::Flat };
    let mut text = report_header(&base, base_index, &new, &comparison);
    text.push('\n');
    text.push_str(&comparison.format_tables(args.top, rank));
    print_ignoring_closed_pipe(&text);

    if let Some(target) = svg_target {
        let subtitle = format!(
            "{} → {}; widths are the new profile's, the base is scaled to its total; red grew, blue shrank",
            base.window(),
            new.window()
        );
        let title = format!("stackwatch diff — {}", value_type.kind);
        let labels = DiffLabels { title: &title, subtitle: &subtitle, count_name: count_name(value_type) };
        let svg = render_diff_svg(&base.profile.folded(base_index), &new.profile.folded(new_index), &labels)?;
        target.write(&svg)?;
        print_ignoring_closed_pipe(&format!("\nwrote `{}`\n", target.path.display()));
    }
    Ok(())
}

/// A usage error (exit code 2) with `message`.
fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

/// One of the two profiles, with the path it came from.
struct Input {
    path: PathBuf,
    profile: PprofProfile,
}

impl Input {
    /// Reads `path`; any failure is a usage error naming the file.
    fn load(path: &Path, role: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read the {role} profile `{}`: {e}", path.display())))?;
        let profile = read::decode(&bytes).map_err(|e| {
            let hint = match e {
                ReadError::Empty | ReadError::NotProtobuf(_) => {
                    "; stackwatch diff reads pprof files, such as stackwatch's `…-cpu-….pb.gz` or Go's CPU profiles"
                }
                _ => "",
            };
            usage(format!("cannot use `{}` as the {role} profile: {e}{hint}", path.display()))
        })?;
        Ok(Self { path: path.to_owned(), profile })
    }

    fn sample_index(&self, wanted: Option<&read::SampleIndex>) -> anyhow::Result<usize> {
        self.profile
            .sample_index(wanted)
            .map_err(|e| usage(format!("`{}` {e}; choose one with --sample-index", self.path.display())))
    }

    /// `phase1.pb.gz (1.50s from 2026-11-26 12:30:00Z)`: the window the profile covers.
    fn window(&self) -> String {
        let name =
            self.path.file_name().map_or_else(|| self.path.display().to_string(), |n| n.to_string_lossy().into());
        format!("{name} ({})", span(self.profile.time, self.profile.duration))
    }
}

/// The one-line refusal of two different sample types, naming the types
/// both have in common when there are any.
fn mismatch(base: &Input, base_index: usize, new: &Input, new_index: usize) -> String {
    let name = |t: &crate::profile::ValueType| format!("{}/{}", t.kind, t.unit);
    let common: Vec<String> = base
        .profile
        .sample_types
        .iter()
        .filter(|t| new.profile.sample_types.contains(t))
        .map(|t| format!("`{}`", t.kind))
        .collect();
    let hint = if common.is_empty() {
        "they have no sample type in common".to_owned()
    } else {
        format!("pick one both have with --sample-index: {}", common.join(", "))
    };
    format!(
        "`{}` is {} but `{}` is {}: only profiles of the same sample type compare; {hint}",
        base.path.display(),
        name(&base.profile.sample_types[base_index]),
        new.path.display(),
        name(&new.profile.sample_types[new_index]),
    )
}

/// The lines above the tables: both files, what they hold, and how to read the numbers.
fn report_header(base: &Input, base_index: usize, new: &Input, comparison: &Comparison) -> String {
    let t = &base.profile.sample_types[base_index];
    let describe = |role: &str, input: &Input, total: i64| {
        format!(
            "{role} `{}` ({}): {} {}\n",
            input.path.display(),
            span(input.profile.time, input.profile.duration),
            format_value(total, &t.unit),
            t.kind
        )
    };
    let mut text = describe("base", base, comparison.base_total);
    text.push_str(&describe("new ", new, comparison.new_total));
    text.push_str(&format!(
        "Shares are of each profile's own {}/{} total; delta is new minus base, in percentage points.\n",
        t.kind, t.unit
    ));
    let empty = |input: &Input, role: &str, other: &str, verb: &str| {
        format!(
            "Note: the {role} profile `{}` is empty (its {} total is 0), so every function in the \
             {other} one counts as {verb} by its whole share.\n",
            input.path.display(),
            t.kind
        )
    };
    if comparison.base_total == 0 {
        text.push_str(&empty(base, "base", "new", "grown"));
    }
    if comparison.new_total == 0 {
        text.push_str(&empty(new, "new", "base", "shrunk"));
    }
    text
}

/// `1.50s from 2026-11-26 12:30:00Z`, with whatever the profile records.
fn span(time: Option<SystemTime>, duration: Option<Duration>) -> String {
    let length = duration.map(|d| format_value(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX), "nanoseconds"));
    let start = time.map(|t| {
        let u = UtcTime::from_system(t);
        format!("{} {}Z", u.date(), u.time())
    });
    match (length, start) {
        (Some(length), Some(start)) => format!("{length} from {start}"),
        (Some(length), None) => format!("{length}, start not recorded"),
        (None, Some(start)) => format!("from {start}, length not recorded"),
        (None, None) => "length and start not recorded".to_owned(),
    }
}

/// What one unit of flamegraph width is, in its tooltips.
fn count_name(t: &crate::profile::ValueType) -> &str {
    match t.unit.as_str() {
        "count" | "" => &t.kind,
        "nanoseconds" => "ns",
        unit => unit,
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error,
/// and must not stop the SVG from being written.
fn print_ignoring_closed_pipe(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Where `-o` writes: its directory, opened before the inputs are read,
/// and the file name, checked to be free.
struct SvgTarget {
    dir: OutputDir,
    name: String,
    /// As given, for messages.
    path: PathBuf,
}

impl SvgTarget {
    fn prepare(path: &Path) -> anyhow::Result<Self> {
        let name = match path.file_name().map(OsStr::to_str) {
            Some(Some(name)) => name.to_owned(),
            Some(None) => return Err(usage(format!("`-o {}`: the file name must be UTF-8", path.display()))),
            None => {
                return Err(usage(format!("`-o {}` names no file; give a path such as `diff.svg`", path.display())))
            }
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = OutputDir::open(parent).map_err(|e| usage(format!("cannot write `{}`: {e:#}", path.display())))?;
        if dir.exists(&name)? {
            return Err(usage(format!(
                "`{}` already exists and stackwatch never replaces a file; remove it or choose another name with -o",
                path.display()
            )));
        }
        Ok(Self { dir, name, path: path.to_owned() })
    }

    /// Writes `svg` atomically under the checked name (a file that appeared
    /// there meanwhile is still not replaced).
    fn write(&self, svg: &[u8]) -> anyhow::Result<()> {
        self.dir.write_file(&self.name, svg, sudo_owner())?;
        self.dir.sync()
    }
}
