//! Tests of `stackwatch diff`: the reader against stackwatch's own encoder
//! and hand-built messages, the ranking on synthetic profiles and the SVG's
//! colors; the command's refusals are tested in `commands::diff`. `go tool pprof` as the reference for
//! the shares is checked end to end in `tests/tests/diff.rs`.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use prost::Message as _;

use super::compare::{compare, Rank};
use super::read::{decode, PprofProfile, ReadError, SampleIndex};
use super::render::{render_diff_svg, DiffLabels};
use crate::ids::{Pid, Tid};
use crate::profile::pprof::{encode, encode_gzip, proto};
use crate::profile::testdata::{empty_profile, sample_profile, start, PERIOD_NS};
use crate::profile::{Line, Location, Profile, Sample, ValueType};

/// A cpu profile of `stacks` (`leaf;caller;…`, sample count), encoded by
/// stackwatch's pprof writer.
pub(crate) fn cpu_profile(stacks: &[(&str, i64)], seconds: u64) -> Profile {
    let mut p = Profile::new_cpu(99, start(), Duration::from_secs(seconds));
    let mut index: HashMap<String, usize> = HashMap::new();
    for &(stack, count) in stacks {
        let locations = stack
            .split(';')
            .map(|f| {
                *index.entry(f.to_owned()).or_insert_with(|| {
                    p.locations.push(Location {
                        address: 0x1000 + p.locations.len() as u64 * 16,
                        mapping: None,
                        lines: vec![Line { function: f.to_owned(), file: None, line: None }],
                        kernel: false,
                    });
                    p.locations.len() - 1
                })
            })
            .collect();
        p.samples.push(Sample {
            pid: Pid::new(1),
            tid: Tid::new(1),
            comm: "t".into(),
            locations,
            values: vec![count, count * PERIOD_NS],
        });
    }
    p
}

pub(crate) fn read(p: &Profile) -> PprofProfile {
    decode(&encode_gzip(p, &[]).unwrap()).unwrap()
}

/// Each sample's frames as names, leaf first, with its values.
fn stacks(p: &PprofProfile) -> Vec<(Vec<&str>, Vec<i64>)> {
    p.samples
        .iter()
        .map(|s| (s.frames.iter().map(|&f| p.names[f as usize].as_str()).collect(), s.values.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// The reader

#[test]
fn reads_stackwatchs_own_pprof_back() {
    let original = sample_profile();
    let p = read(&original);
    assert_eq!(p.sample_types, [ValueType::new("samples", "count"), ValueType::new("cpu", "nanoseconds")]);
    assert_eq!(p.default_sample_type.as_deref(), Some("cpu"));
    assert_eq!(p.default_index(), 1);
    assert_eq!(p.time, Some(start()));
    assert_eq!(p.duration, Some(Duration::from_secs(30)));
    // Every sample, in order, each location expanded into its lines.
    let expected: Vec<(Vec<&str>, Vec<i64>)> = original
        .samples
        .iter()
        .map(|s| {
            let frames = s
                .locations
                .iter()
                .flat_map(|&l| original.locations[l].lines.iter().map(|line| line.function.as_str()))
                .collect();
            (frames, s.values.clone())
        })
        .collect();
    assert_eq!(stacks(&p), expected);
}

#[test]
fn an_inlined_location_is_several_frames_innermost_first() {
    let p = read(&sample_profile());
    // Location 2 is `inline_helper` inlined into `hot_loop`.
    assert_eq!(stacks(&p)[0].0, ["inline_helper", "hot_loop", "main", "__libc_start_main"]);
    // Folded stacks run root first, so the caller comes before what it inlined.
    let folded = p.folded(1);
    let (stack, value) = folded.iter().find(|(s, _)| s.ends_with("inline_helper")).unwrap();
    assert_eq!(stack, "__libc_start_main;main;hot_loop;inline_helper");
    assert_eq!(*value as i64, 7 * PERIOD_NS, "two samples of one stack are merged");
    // `;` in a name would split the frame: it is made safe.
    assert!(folded.iter().any(|(s, _)| s.contains("operator:weird<ü>")), "{folded:?}");
}

#[test]
fn gzip_and_plain_read_the_same() {
    let p = sample_profile();
    let plain = decode(&encode(&p)).unwrap();
    assert_eq!(plain, decode(&encode_gzip(&p, &[]).unwrap()).unwrap());
    assert_eq!(plain.samples.len(), p.samples.len());
}

#[test]
fn sample_type_is_chosen_like_go_tool_pprof() {
    // Memory profiles have three types and name a default.
    let mut memory = sample_profile();
    memory.sample_types = vec![
        ValueType::new("alloc_objects", "count"),
        ValueType::new("alloc_space", "bytes"),
        ValueType::new("page_faults", "count"),
    ];
    memory.default_sample_type = Some("alloc_space".into());
    for s in &mut memory.samples {
        s.values = vec![1, 4096, 2];
    }
    let p = read(&memory);
    assert_eq!(p.sample_index(None), Ok(1));
    assert_eq!(p.sample_index(Some(&SampleIndex::Name("page_faults".into()))), Ok(2));
    assert_eq!(p.sample_index(Some(&SampleIndex::Position(0))), Ok(0));
    assert_eq!(
        p.sample_index(Some(&SampleIndex::Name("inuse_space".into()))),
        Err(
            "has no sample type `inuse_space` (it has 0 alloc_objects/count, 1 alloc_space/bytes, 2 page_faults/count)"
                .to_owned()
        )
    );
    assert!(p
        .sample_index(Some(&SampleIndex::Position(3)))
        .unwrap_err()
        .starts_with("has no sample type at position 3"));
    assert_eq!(p.total(2), 2 * p.samples.len() as i64);

    // Without a default, the last type (Go's CPU profiles name none).
    memory.default_sample_type = None;
    assert_eq!(read(&memory).sample_index(None), Ok(2));
}

#[test]
fn sample_index_parses_names_and_positions() {
    assert_eq!(SampleIndex::parse("1"), Ok(SampleIndex::Position(1)));
    assert_eq!(SampleIndex::parse(" cpu "), Ok(SampleIndex::Name("cpu".into())));
    assert!(SampleIndex::parse("").is_err());
    assert!(SampleIndex::parse("99999999999999999999999").is_err());
}

/// A minimal valid message: one function `f` at one location, one sample.
fn minimal() -> proto::Profile {
    proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        sample: vec![proto::Sample { location_id: vec![1], value: vec![5], label: vec![] }],
        location: vec![proto::Location {
            id: 1,
            line: vec![proto::Line { function_id: 1, ..Default::default() }],
            ..Default::default()
        }],
        function: vec![proto::Function { id: 1, name: 3, ..Default::default() }],
        string_table: vec!["".into(), "samples".into(), "count".into(), "f".into()],
        ..Default::default()
    }
}

#[test]
fn a_hand_built_message_reads() {
    let p = decode(&minimal().encode_to_vec()).unwrap();
    assert_eq!(stacks(&p), [(vec!["f"], vec![5])]);
    assert_eq!((p.time, p.duration, p.default_sample_type.as_deref()), (None, None, None));
}

#[test]
fn a_location_without_symbols_is_named_by_its_file_offset() {
    let mut m = minimal();
    m.string_table.push("/usr/lib/libfoo.so".into());
    m.mapping = vec![proto::Mapping {
        id: 7,
        memory_start: 0x7f00_0000_0000,
        memory_limit: 0x7f00_0010_0000,
        file_offset: 0x1000,
        filename: 4,
        ..Default::default()
    }];
    m.location.push(proto::Location { id: 2, mapping_id: 7, address: 0x7f00_0000_0a2b, ..Default::default() });
    m.location.push(proto::Location { id: 3, address: 0x4242, ..Default::default() });
    m.sample.push(proto::Sample { location_id: vec![2, 3, 1], value: vec![1], label: vec![] });
    let p = decode(&m.encode_to_vec()).unwrap();
    assert_eq!(stacks(&p)[1].0, ["libfoo.so+0x1a2b", "0x4242", "f"]);
}

#[test]
fn a_nameless_function_uses_its_system_name() {
    let mut m = minimal();
    m.string_table.push("_ZN3foo3barEv".into());
    m.function[0].name = 0;
    m.function[0].system_name = 4;
    assert_eq!(stacks(&decode(&m.encode_to_vec()).unwrap())[0].0, ["_ZN3foo3barEv"]);
}

#[test]
fn garbage_is_refused_with_the_reason() {
    let gz = encode_gzip(&sample_profile(), &[]).unwrap();
    assert_eq!(decode(b""), Err(ReadError::Empty));
    // Cut short: the gzip stream ends early.
    assert!(matches!(decode(&gz[..gz.len() / 2]), Err(ReadError::Gzip(_))), "{:?}", decode(&gz[..gz.len() / 2]));
    // A gzip file whose content is not a profile.
    let mut text = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    text.write_all(b"heap profile: 1: 2 [3: 4] @ heap/1048576\n").unwrap();
    assert!(matches!(decode(&text.finish().unwrap()), Err(ReadError::NotProtobuf(_))));
    // Plain text, an SVG, random bytes.
    for bytes in [&b"main;foo 12\n"[..], b"<?xml version=\"1.0\"?><svg/>", &[0xff, 0xfe, 0x00, 0x13, 0x37, 0x99][..]] {
        assert!(matches!(decode(bytes), Err(ReadError::NotProtobuf(_))), "{bytes:?}: {:?}", decode(bytes));
    }
    // A plain protobuf cut short, mid-field or before its string table. (One
    // cut exactly between two trailing fields cannot be told from a whole
    // file: plain protobuf has no length or checksum; gzip has both.)
    let raw = encode(&sample_profile());
    for cut in [raw.len() - 1, raw.len() / 2, 3] {
        let result = decode(&raw[..cut]);
        assert!(matches!(result, Err(ReadError::NotProtobuf(_) | ReadError::Invalid(_))), "cut at {cut}: {result:?}");
    }
}

#[test]
fn broken_references_are_refused() {
    type Breakage = fn(&mut proto::Profile);
    let cases: [(&str, Breakage); 7] = [
        ("it declares no sample types", |m| m.sample_type.clear()),
        ("its string table does not start with the empty string", |m| m.string_table[0] = "x".into()),
        ("string index 99 is past the end of its string table (4)", |m| m.function[0].name = 99),
        ("sample 0 refers to location 9, which it does not have", |m| m.sample[0].location_id = vec![9]),
        ("location 1 refers to function 4, which it does not have", |m| m.location[0].line[0].function_id = 4),
        ("location 1 refers to mapping 3, which it does not have", |m| m.location[0].mapping_id = 3),
        ("sample 0 has 2 values but the profile declares 1 sample types", |m| m.sample[0].value.push(1)),
    ];
    for (expected, break_it) in cases {
        let mut m = minimal();
        break_it(&mut m);
        assert_eq!(decode(&m.encode_to_vec()), Err(ReadError::Invalid(expected.to_owned())));
    }
}

// ---------------------------------------------------------------------------
// Shares and ranking

/// Phase 1 mostly in `alpha`, phase 2 mostly in `beta`, over a common caller,
/// phase 2 ten times longer: shares must not care.
fn phases() -> (PprofProfile, PprofProfile) {
    let base = cpu_profile(&[("alpha;main", 75), ("beta;main", 25)], 1);
    let new = cpu_profile(&[("alpha;main", 250), ("beta;main", 700), ("gamma;beta;main", 50)], 10);
    (read(&base), read(&new))
}

#[test]
fn the_function_that_grew_ranks_first_and_the_one_that_shrank_first_among_shrinkers() {
    let (base, new) = phases();
    let c = compare(&base, 1, &new, 1);
    assert_eq!((c.base_total, c.new_total), (100 * PERIOD_NS, 1000 * PERIOD_NS));
    let growers = c.growers(10, Rank::Flat);
    let names: Vec<&str> = growers.iter().map(|g| g.function.as_str()).collect();
    assert_eq!(names, ["beta", "gamma"]);
    let beta = growers[0];
    assert!((beta.base.flat - 25.0).abs() < 1e-9 && (beta.new.flat - 70.0).abs() < 1e-9, "{beta:?}");
    assert!((beta.new.cum - 75.0).abs() < 1e-9 && (beta.cum_delta() - 50.0).abs() < 1e-9, "{beta:?}");
    let shrinkers = c.shrinkers(10, Rank::Flat);
    assert_eq!(shrinkers.iter().map(|s| s.function.as_str()).collect::<Vec<_>>(), ["alpha"]);
    assert!((shrinkers[0].flat_delta() + 50.0).abs() < 1e-9);
    // `main` is on every stack in both: no change, in neither list.
    let main = c.changes.iter().find(|c| c.function == "main").unwrap();
    assert_eq!((main.base.cum, main.new.cum, main.flat_delta()), (100.0, 100.0, 0.0));
    // --top 1.
    assert_eq!(c.growers(1, Rank::Flat).len(), 1);
}

#[test]
fn cumulative_ranking_puts_callers_of_what_grew_first() {
    let (base, new) = phases();
    let c = compare(&base, 1, &new, 1);
    // beta's cum grew by 50 points (its own 45 and gamma's 5); gamma's by 5.
    let names: Vec<&str> = c.growers(10, Rank::Cum).iter().map(|g| g.function.as_str()).collect();
    assert_eq!(names, ["beta", "gamma"]);
    let base2 = read(&cpu_profile(&[("work;handler;main", 50), ("idle;main", 50)], 1));
    let new2 = read(&cpu_profile(&[("work;handler;main", 40), ("parse;handler;main", 40), ("idle;main", 20)], 1));
    let c = compare(&base2, 1, &new2, 1);
    // Flat: parse grew most; handler has no flat time at all.
    assert_eq!(c.growers(10, Rank::Flat).iter().map(|g| g.function.as_str()).collect::<Vec<_>>(), ["parse"]);
    // Cum: parse (+40), then handler (+30), which the flat ranking cannot list.
    let cum: Vec<(&str, f64)> = c.growers(10, Rank::Cum).iter().map(|g| (g.function.as_str(), g.cum_delta())).collect();
    assert_eq!(cum.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["parse", "handler"]);
    assert!((cum[1].1 - 30.0).abs() < 1e-9, "{cum:?}");
}

#[test]
fn equal_shares_at_different_totals_are_no_change() {
    let base = read(&cpu_profile(&[("a;main", 3), ("b;main", 1)], 1));
    let new = read(&cpu_profile(&[("a;main", 300), ("b;main", 100)], 60));
    let c = compare(&base, 1, &new, 1);
    assert!(c.growers(10, Rank::Flat).is_empty() && c.shrinkers(10, Rank::Flat).is_empty(), "{c:#?}");
    let text = c.format_tables(10, Rank::Flat);
    assert!(text.contains("(no function grew)") && text.contains("(no function shrank)"), "{text}");
}

#[test]
fn recursion_counts_once_in_cum() {
    let base = read(&cpu_profile(&[("f;f;f;main", 1), ("g;main", 1)], 1));
    let c = compare(&base, 1, &base, 1);
    let f = c.changes.iter().find(|c| c.function == "f").unwrap();
    assert_eq!((f.base.flat, f.base.cum), (50.0, 50.0));
}

#[test]
fn a_sample_without_stack_is_unknown() {
    let mut p = cpu_profile(&[("a;main", 1)], 1);
    p.samples.push(Sample {
        pid: Pid::new(1),
        tid: Tid::new(1),
        comm: "t".into(),
        locations: vec![],
        values: vec![1, PERIOD_NS],
    });
    let r = read(&p);
    let c = compare(&r, 1, &r, 1);
    let unknown = c.changes.iter().find(|c| c.function == "[unknown]").unwrap();
    assert_eq!(unknown.base.flat, 50.0);
    assert!(r.folded(1).iter().any(|(s, _)| s == "[unknown]"));
}

#[test]
fn an_empty_base_makes_everything_growth() {
    let base = read(&empty_profile());
    let (_, new) = phases();
    let c = compare(&base, 1, &new, 1);
    assert_eq!(c.base_total, 0);
    assert!(c.shrinkers(10, Rank::Flat).is_empty());
    let growers = c.growers(10, Rank::Flat);
    assert_eq!(growers[0].function, "beta");
    assert!((growers[0].flat_delta() - 70.0).abs() < 1e-9);
}

#[test]
fn tables_read_like_pprof_top() {
    let (base, new) = phases();
    let text = compare(&base, 1, &new, 1).format_tables(5, Rank::Flat);
    let expected = "\
Grew most, by flat share:
 base flat  new flat      delta   base cum   new cum      delta  function
    25.00%    70.00%   +45.00pp     25.00%    75.00%   +50.00pp  beta
     0.00%     5.00%    +5.00pp      0.00%     5.00%    +5.00pp  gamma

Shrank most, by flat share:
 base flat  new flat      delta   base cum   new cum      delta  function
    75.00%    25.00%   -50.00pp     75.00%    25.00%   -50.00pp  alpha
";
    assert_eq!(text, expected);
    assert!(compare(&base, 1, &new, 1).format_tables(5, Rank::Cum).starts_with("Grew most, by cumulative share:\n"));
}

// ---------------------------------------------------------------------------
// The differential flamegraph

fn labels() -> DiffLabels<'static> {
    DiffLabels { title: "stackwatch diff — cpu", subtitle: "a.pb.gz → b.pb.gz", count_name: "samples" }
}

/// The `fill` color of the frame whose tooltip starts with `name (`.
pub(crate) fn fill_of(svg: &str, name: &str) -> (u8, u8, u8) {
    let start = svg.find(&format!("<title>{name} (")).unwrap_or_else(|| panic!("no frame `{name}` in:\n{svg}"));
    let rest = &svg[start..];
    let fill = &rest[rest.find("fill=\"rgb(").unwrap() + 10..];
    let rgb: Vec<u8> = fill[..fill.find(')').unwrap()].split(',').map(|c| c.trim().parse().unwrap()).collect();
    (rgb[0], rgb[1], rgb[2])
}

pub(crate) fn is_red((r, g, b): (u8, u8, u8)) -> bool {
    r == 255 && g == b && g < 250
}

pub(crate) fn is_blue((r, g, b): (u8, u8, u8)) -> bool {
    b == 255 && r == g && r < 250
}

#[test]
fn growth_is_red_and_shrinkage_blue() {
    let base = [("main;alpha", 75u64), ("main;beta", 25)];
    let new = [("main;alpha", 25u64), ("main;beta", 75)];
    let svg = String::from_utf8(render_diff_svg(&base, &new, &labels()).unwrap()).unwrap();
    assert!(svg.contains("stackwatch diff — cpu") && svg.contains("a.pb.gz → b.pb.gz"), "labels");
    assert!(is_red(fill_of(&svg, "beta")), "{:?}", fill_of(&svg, "beta"));
    assert!(is_blue(fill_of(&svg, "alpha")), "{:?}", fill_of(&svg, "alpha"));
    // The tooltip carries the change.
    assert!(svg.contains("<title>beta (75 samples, 75.00%; +50.00%)</title>"), "{svg}");
    // Same inputs, same bytes (inferno merges through a hash map).
    assert_eq!(svg.as_bytes(), render_diff_svg(&base, &new, &labels()).unwrap());
}

#[test]
fn the_base_is_normalized_to_the_new_total() {
    // Same shares, ten times the samples: nothing grew, nothing shrank.
    let base = [("main;alpha", 30u64), ("main;beta", 10)];
    let new = [("main;alpha", 300u64), ("main;beta", 100)];
    let svg = String::from_utf8(render_diff_svg(&base, &new, &labels()).unwrap()).unwrap();
    for name in ["alpha", "beta", "main"] {
        assert_eq!(fill_of(&svg, name), (250, 250, 250), "{name} is unchanged");
    }
}

#[test]
fn an_empty_side_still_draws() {
    let some = [("main;alpha", 3u64), ("main;beta", 1)];
    let none: [(&str, u64); 0] = [];
    // Nothing before: all growth, drawn at the new widths.
    let svg = String::from_utf8(render_diff_svg(&none, &some, &labels()).unwrap()).unwrap();
    assert!(is_red(fill_of(&svg, "alpha")) && is_red(fill_of(&svg, "beta")));
    // Nothing after: all shrinkage, drawn at the base widths.
    let svg = String::from_utf8(render_diff_svg(&some, &none, &labels()).unwrap()).unwrap();
    assert!(is_blue(fill_of(&svg, "alpha")) && is_blue(fill_of(&svg, "beta")));
    assert!(svg.contains("<title>alpha (3 samples, 75.00%"), "{svg}");
    // Nothing at all: a notice.
    let svg = String::from_utf8(render_diff_svg(&none, &none, &labels()).unwrap()).unwrap();
    assert!(svg.contains("neither side has any samples") && svg.contains("stackwatch diff — cpu"));
}
