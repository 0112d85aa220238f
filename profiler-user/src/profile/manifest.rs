//! The capture manifest: one JSON file describing a capture and its files.
//!
//! Scripts and people use it to find out what a capture was without opening
//! the profiles: the target, why it ran (`trigger`), the time window, the
//! sampling frequency, how many samples were collected and lost (and why),
//! host, kernel and stackwatch versions, one summary per profile, the list
//! of files written (names relative to the manifest's directory) and, when
//! some could not be written (a full disk), `failed`: those files and why. The
//! capture fields are `CaptureInfo`'s serialization, flattened at the top
//! level; `schema` is bumped on any incompatible change.

use serde::Serialize;

use crate::profile::capture::{CaptureInfo, HistoryInfo};
use crate::profile::format::FileFormat;
use crate::profile::report::{default_value_index, sample_count};
use crate::profile::{Profile, ProfileKind};

/// Version of the manifest layout.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// One file of the capture, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct FileEntry {
    /// File name, relative to the manifest's directory.
    pub path: String,
    /// Profile kind the file holds (`None` for capture-wide files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProfileKind>,
    pub format: FileFormat,
}

/// A file of the capture that could not be written, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct FailedEntry {
    /// The name it would have had, relative to the manifest's directory.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProfileKind>,
    pub format: FileFormat,
    /// Why it was not written.
    pub error: String,
}

#[derive(Serialize)]
struct Manifest<'a> {
    schema: u32,
    #[serde(flatten)]
    capture: &'a CaptureInfo,
    profiles: Vec<ProfileSummary<'a>>,
    /// With `watch --history`: the history and diff windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a HistoryInfo>,
    files: &'a [FileEntry],
    /// Only present when some file could not be written.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failed: &'a [FailedEntry],
}

#[derive(Serialize)]
struct ProfileSummary<'a> {
    kind: ProfileKind,
    /// Samples taken (total of the count value).
    samples: i64,
    /// Distinct (process, thread, stack) records.
    stacks: usize,
    /// Total of the default sample type, in `unit`.
    total_value: i64,
    value_type: &'a str,
    unit: &'a str,
    period: i64,
    period_type: TypedTotal<'a>,
    /// Totals of every sample type.
    values: Vec<TypedTotal<'a>>,
}

#[derive(Serialize)]
struct TypedTotal<'a> {
    r#type: &'a str,
    unit: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
}

/// Pretty JSON (with a final newline) for `info`, `profiles`, the `files`
/// written and those that `failed`.
pub(crate) fn render(
    info: &CaptureInfo,
    profiles: &[Profile],
    history: Option<&HistoryInfo>,
    files: &[FileEntry],
    failed: &[FailedEntry],
) -> anyhow::Result<Vec<u8>> {
    let manifest = Manifest {
        schema: SCHEMA_VERSION,
        capture: info,
        profiles: profiles.iter().map(summary).collect(),
        history,
        files,
        failed,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)
        .map_err(anyhow::Error::new)
        .map_err(|e| e.context("failed to serialize the capture manifest"))?;
    json.push(b'\n');
    Ok(json)
}

fn summary(profile: &Profile) -> ProfileSummary<'_> {
    let index = default_value_index(profile);
    let (value_type, unit) = profile.sample_types.get(index).map_or(("", ""), |t| (t.kind.as_str(), t.unit.as_str()));
    ProfileSummary {
        kind: profile.kind,
        samples: sample_count(profile),
        stacks: profile.samples.len(),
        total_value: profile.total(index),
        value_type,
        unit,
        period: profile.period,
        period_type: TypedTotal { r#type: &profile.period_type.kind, unit: &profile.period_type.unit, total: None },
        values: profile
            .sample_types
            .iter()
            .enumerate()
            .map(|(i, t)| TypedTotal { r#type: &t.kind, unit: &t.unit, total: Some(profile.total(i)) })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::profile::testdata::{empty_profile, host_info, sample_profile, PERIOD_NS};

    #[test]
    fn manifest_fields() {
        let files = vec![
            FileEntry {
                path: "host-cpu-20261126T123000Z.pb.gz".into(),
                kind: Some(ProfileKind::Cpu),
                format: FileFormat::Pprof,
            },
            FileEntry {
                path: "host-cpu-20261126T123000Z.svg".into(),
                kind: Some(ProfileKind::Cpu),
                format: FileFormat::Svg,
            },
        ];
        let bytes = render(&host_info(), &[sample_profile()], None, &files, &[]).unwrap();
        assert!(bytes.ends_with(b"}\n"));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["target"]["kind"], "host");
        assert_eq!(v["trigger"], json!({"type": "manual", "source": "record"}));
        assert_eq!(v["start"], "2026-11-26T12:30:00.000Z");
        assert_eq!(v["end"], "2026-11-26T12:30:30.000Z");
        assert_eq!(v["frequency_hz"], 99);
        assert_eq!(v["samples_collected"], 17);
        assert_eq!(v["samples_lost"], 3);
        assert_eq!(v["losses"][0]["reason"], "counts_map_full");
        assert_eq!(v["host"], "testhost");
        assert_eq!(v["kernel"], "6.8.0-test");
        assert_eq!(v["stackwatch_version"], "0.1.0-test");
        assert_eq!(v["unwind"]["mode"], "auto");
        assert_eq!(v["unwind"]["stacks_with_tables"], 15);
        assert_eq!(
            v["files"],
            json!([
                {"path": "host-cpu-20261126T123000Z.pb.gz", "kind": "cpu", "format": "pprof"},
                {"path": "host-cpu-20261126T123000Z.svg", "kind": "cpu", "format": "svg"},
            ])
        );
        let p = &v["profiles"][0];
        assert_eq!(p["kind"], "cpu");
        assert_eq!(p["samples"], 17);
        assert_eq!(p["stacks"], 6);
        assert_eq!(p["total_value"], 17 * PERIOD_NS);
        assert_eq!(p["value_type"], "cpu");
        assert_eq!(p["unit"], "nanoseconds");
        assert_eq!(p["values"][0], json!({"type": "samples", "unit": "count", "total": 17}));
        assert_eq!(p["period_type"], json!({"type": "cpu", "unit": "nanoseconds"}));
        assert!(v.get("failed").is_none(), "no `failed` list when every file was written");
    }

    #[test]
    fn files_that_failed_are_listed_with_the_reason() {
        let failed = [FailedEntry {
            path: "host-cpu-20261126T123000Z.svg".into(),
            kind: Some(ProfileKind::Cpu),
            format: FileFormat::Svg,
            error: "No space left on device (os error 28)".into(),
        }];
        let v: Value =
            serde_json::from_slice(&render(&host_info(), &[empty_profile()], None, &[], &failed).unwrap()).unwrap();
        assert_eq!(
            v["failed"],
            json!([{
                "path": "host-cpu-20261126T123000Z.svg",
                "kind": "cpu",
                "format": "svg",
                "error": "No space left on device (os error 28)",
            }])
        );
    }

    #[test]
    fn empty_capture_says_zero() {
        let mut info = host_info();
        info.samples_collected = 0;
        let v: Value = serde_json::from_slice(&render(&info, &[empty_profile()], None, &[], &[]).unwrap()).unwrap();
        assert_eq!(v["samples_collected"], 0);
        assert_eq!(v["profiles"][0]["samples"], 0);
        assert_eq!(v["profiles"][0]["total_value"], 0);
        assert_eq!(v["files"], json!([]));
    }
}
