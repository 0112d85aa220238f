//! Tests of `stackwatch diff` as a command: the SVG it writes, and its
//! one-line refusals of bad inputs, which create nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::DiffArgs;
use crate::config::UsageError;
use crate::profile::diff::compare::compare;
use crate::profile::diff::read::SampleIndex;
use crate::profile::diff::tests::{cpu_profile, fill_of, is_blue, is_red, read};
use crate::profile::pprof::encode_gzip;
use crate::profile::testdata::{empty_profile, start};
use crate::profile::{Profile, ValueType};

// ---------------------------------------------------------------------------
// The command

fn args(base: &Path, new: &Path, output: Option<PathBuf>) -> DiffArgs {
    DiffArgs { base: base.into(), new: new.into(), output, top: 5, sample_index: None, cum: false }
}

fn write(dir: &Path, name: &str, p: &Profile) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, encode_gzip(p, &[]).unwrap()).unwrap();
    path
}

/// The message of a refusal, checking it is a usage error (exit code 2).
fn refusal(args: &DiffArgs) -> String {
    let err = super::run(args).expect_err("should be refused");
    assert!(err.chain().any(|c| c.is::<UsageError>()), "not a usage error: {err:#}");
    format!("{err:#}")
}

#[test]
fn run_writes_the_svg_and_never_replaces_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write(tmp.path(), "base.pb.gz", &cpu_profile(&[("alpha;main", 75), ("beta;main", 25)], 1));
    let new = write(tmp.path(), "new.pb.gz", &cpu_profile(&[("alpha;main", 25), ("beta;main", 75)], 2));
    let out = tmp.path().join("d.svg");
    super::run(&args(&base, &new, Some(out.clone()))).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("base.pb.gz (1s from 2026-11-26 12:30:00Z) → new.pb.gz (2s from 2026-11-26 12:30:00Z)"));
    assert!(is_red(fill_of(&svg, "beta")) && is_blue(fill_of(&svg, "alpha")));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o640);

    // A second run refuses to replace it, before reading anything.
    let message = refusal(&args(Path::new("/nonexistent/a"), &new, Some(out.clone())));
    assert!(message.contains("already exists and stackwatch never replaces a file"), "{message}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), svg);
    // A directory that does not exist.
    let message = refusal(&args(&base, &new, Some(tmp.path().join("no/such/dir/d.svg"))));
    assert!(message.starts_with("cannot write `"), "{message}");
    // Without -o nothing is written.
    super::run(&args(&base, &new, None)).unwrap();
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);
}

#[test]
fn run_refuses_bad_inputs_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = write(tmp.path(), "cpu.pb.gz", &cpu_profile(&[("a;main", 1)], 1));
    let empty = write(tmp.path(), "empty.pb.gz", &empty_profile());
    let mut memory = cpu_profile(&[("a;main", 1)], 1);
    memory.sample_types = vec![ValueType::new("alloc_objects", "count"), ValueType::new("alloc_space", "bytes")];
    memory.default_sample_type = Some("alloc_space".into());
    let memory = write(tmp.path(), "mem.pb.gz", &memory);
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not a profile\n").unwrap();
    let missing = tmp.path().join("missing.pb.gz");

    let cases: Vec<(DiffArgs, String)> = vec![
        (
            args(&cpu, &memory, None),
            format!(
                "`{}` is cpu/nanoseconds but `{}` is alloc_space/bytes: only profiles of the same sample type \
                 compare; they have no sample type in common",
                cpu.display(),
                memory.display()
            ),
        ),
        (
            args(&text, &cpu, None),
            format!("cannot use `{}` as the base profile: it is not a pprof profile (profile.proto): ", text.display()),
        ),
        (args(&cpu, &missing, None), format!("cannot read the new profile `{}`: No such file", missing.display())),
        (args(&empty, &empty, None), "neither `".to_owned()),
        (
            DiffArgs { sample_index: Some(SampleIndex::Name("inuse_space".into())), ..args(&cpu, &cpu, None) },
            format!("`{}` has no sample type `inuse_space` (it has 0 samples/count, 1 cpu/nanoseconds)", cpu.display()),
        ),
    ];
    for (a, expected) in cases {
        let message = refusal(&a);
        assert!(message.starts_with(&expected), "expected `{expected}…`, got `{message}`");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    // By position: different names, one unit.
    let message = refusal(&DiffArgs { sample_index: Some(SampleIndex::Position(0)), ..args(&cpu, &memory, None) });
    assert!(message.contains("is samples/count but") && message.contains("is alloc_objects/count"), "{message}");
    // One name, different units; the hint names what both have.
    let mut millis = cpu_profile(&[("a;main", 1)], 1);
    millis.sample_types[1] = ValueType::new("cpu", "milliseconds");
    let millis = write(tmp.path(), "ms.pb.gz", &millis);
    let message = refusal(&args(&cpu, &millis, None));
    assert!(message.contains("is cpu/nanoseconds but") && message.contains("is cpu/milliseconds"), "{message}");
    assert!(message.ends_with("pick one both have with --sample-index: `samples`"), "{message}");

    // An empty profile against a non-empty one is a diff, not a refusal.
    super::run(&args(&empty, &cpu, None)).unwrap();
    super::run(&args(&cpu, &empty, None)).unwrap();
    // Nothing was created.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 5);
}

#[test]
fn the_header_names_both_files_their_totals_and_windows() {
    let input = |path: &str, p: &Profile| super::Input { path: path.into(), profile: read(p) };
    let base = input("before.pb.gz", &cpu_profile(&[("a;main", 100)], 1));
    let new = input("/tmp/after.pb.gz", &cpu_profile(&[("a;main", 200)], 2));
    let c = compare(&base.profile, 1, &new.profile, 1);
    assert_eq!(
        super::report_header(&base, 1, &new, &c),
        "\
base `before.pb.gz` (1s from 2026-11-26 12:30:00Z): 1.01s cpu
new  `/tmp/after.pb.gz` (2s from 2026-11-26 12:30:00Z): 2.02s cpu
Shares are of each profile's own cpu/nanoseconds total; delta is new minus base, in percentage points.
"
    );
    assert_eq!(base.window(), "before.pb.gz (1s from 2026-11-26 12:30:00Z)");

    // Counts read as counts; an empty side is called out.
    let empty = input("empty.pb.gz", &empty_profile());
    let c = compare(&empty.profile, 0, &new.profile, 0);
    let text = super::report_header(&empty, 0, &new, &c);
    assert!(text.starts_with("base `empty.pb.gz` (30s from 2026-11-26 12:30:00Z): 0 samples\n"), "{text}");
    assert!(text.contains("new  `/tmp/after.pb.gz` (2s from 2026-11-26 12:30:00Z): 200 samples\n"), "{text}");
    assert!(
        text.ends_with(
            "Note: the base profile `empty.pb.gz` is empty (its samples total is 0), so every function in \
             the new one counts as grown by its whole share.\n"
        ),
        "{text}"
    );
}

#[test]
fn a_window_says_what_the_profile_does_not_record() {
    assert_eq!(super::span(None, None), "length and start not recorded");
    assert_eq!(super::span(None, Some(Duration::from_millis(1500))), "1.50s, start not recorded");
    assert_eq!(super::span(Some(start()), None), "from 2026-11-26 12:30:00Z, length not recorded");
}
