//! The flamegraph writer: folded stacks → inferno's interactive SVG.
//!
//! The title says what the picture is without any other file at hand: the
//! target, the profile kind, the capture window and the sample count; the
//! subtitle says why the capture ran (`manual (record)` or the trigger rule
//! with what it observed). Colors are derived from function names (inferno's
//! `hash` mode) rather than from a random generator, so the same profile
//! always gives the same bytes (golden tests rely on it) and a function keeps
//! its color across captures. Cpu uses inferno's annotation-aware palette
//! (kernel `_[k]` orange, inlined `_[i]` aqua), off-cpu a cool blue one and
//! memory the memory palette, so the kinds are told apart at a glance.
//! Tooltips give time and bytes the way people read them (`9.93 s`,
//! `1.50 MiB`), not inferno's raw unit counts (`9,929,456,627 ns`).

use std::time::Duration;

use anyhow::Context as _;
use inferno::flamegraph::color::{BasicPalette, MultiPalette, Palette};
use inferno::flamegraph::{self, Options};

use crate::profile::capture::CaptureInfo;
use crate::profile::folded::flame_value_index;
use crate::profile::report::{format_value, group_thousands, sample_count};
use crate::profile::time::UtcTime;
use crate::profile::{Profile, ProfileKind};

/// Renders the SVG for `profile` from its folded `lines` (as built by
/// [`crate::profile::folded::folded_lines`]). An empty profile still gives a
/// valid SVG carrying the title and a "no samples" notice.
pub(crate) fn render(info: &CaptureInfo, profile: &Profile, lines: &[String]) -> anyhow::Result<Vec<u8>> {
    let title = title(info, profile);
    let mut subtitle = info.trigger.summary();
    if let Some(line) = crate::profile::quality::headline(&info.stack_quality) {
        subtitle.push_str(" — ");
        subtitle.push_str(&line);
    }
    if lines.is_empty() {
        // inferno treats empty input as an error (and logs it); an empty
        // capture is a legitimate outcome, so draw a plain notice instead.
        return Ok(empty_svg(&title, &subtitle));
    }
    let mut options = Options::default();
    options.title = title;
    options.subtitle = Some(subtitle);
    options.count_name = count_name(profile).to_owned();
    options.colors = palette(profile.kind);
    options.hash = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .context("inferno failed to draw the flamegraph")?;
    Ok(readable_tooltips(svg))
}

/// Rewrites inferno's tooltips, `<title>f (9,929,456,627 ns, 12.50%)</title>`,
/// to `<title>f (9.93 s, 12.50%)</title>` (bytes as KiB, MiB…). inferno
/// formats the count itself and offers no hook; its script strips the last
/// parenthesis of a title to get the function name, which stays as it was.
fn readable_tooltips(svg: Vec<u8>) -> Vec<u8> {
    static TOOLTIP: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        regex::bytes::Regex::new(r"\(([0-9][0-9,]*) (ns|bytes), ([^()<]*%\))</title>").expect("a valid pattern")
    });
    let replaced = TOOLTIP.replace_all(&svg, |c: &regex::bytes::Captures<'_>| {
        let digits: String = c[1].iter().filter(|b| b.is_ascii_digit()).map(|&b| char::from(b)).collect();
        let unit = if &c[2] == b"ns" { "nanoseconds" } else { "bytes" };
        let value =
            digits.parse::<u64>().map_or_else(|_| String::from_utf8_lossy(&c[1]).into_owned(), |v| readable(v, unit));
        let mut out = format!("({value}, ").into_bytes();
        out.extend_from_slice(&c[3]);
        out.extend_from_slice(b"</title>");
        out
    });
    replaced.into_owned()
}

/// `9.93 s`, `12.5 ms`, `450 µs`, `1.50 MiB`, `512 B`: three significant
/// digits, the largest unit the value reaches.
pub(crate) fn readable(value: u64, unit: &str) -> String {
    const TIME: [(f64, &str); 6] = [(3600e9, "h"), (60e9, "min"), (1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns")];
    const SIZE: [(f64, &str); 5] =
        [(1_099_511_627_776.0, "TiB"), (1_073_741_824.0, "GiB"), (1_048_576.0, "MiB"), (1024.0, "KiB"), (1.0, "B")];
    let scales: &[(f64, &str)] = match unit {
        "nanoseconds" => &TIME,
        "bytes" => &SIZE,
        _ => return format!("{} {unit}", group_thousands(value as i64)),
    };
    let v = value as f64;
    let (scale, suffix) = scales.iter().copied().find(|&(scale, _)| v >= scale).unwrap_or(scales[scales.len() - 1]);
    let scaled = v / scale;
    if scale == 1.0 {
        format!("{value} {suffix}")
    } else if scaled >= 100.0 {
        format!("{scaled:.0} {suffix}")
    } else if scaled >= 10.0 {
        format!("{scaled:.1} {suffix}")
    } else {
        format!("{scaled:.2} {suffix}")
    }
}

/// `stackwatch cpu — pid 1234 (myservice) — 2026-11-26 12:30:00Z → 12:30:30Z (30s) — 2,970 samples`
pub(crate) fn title(info: &CaptureInfo, profile: &Profile) -> String {
    let start = UtcTime::from_system(info.start);
    let end = UtcTime::from_system(info.end);
    // Repeat the date only when the window crosses midnight.
    let end_text = if end.date() == start.date() { end.time() } else { format!("{} {}", end.date(), end.time()) };
    let length = info.end.duration_since(info.start).unwrap_or_default();
    let samples = sample_count(profile);
    let mut title = format!(
        "stackwatch {} — {} — {} {}Z → {}Z ({}) — {} sample{}",
        profile.kind,
        info.target.description,
        start.date(),
        start.time(),
        end_text,
        human_duration(length),
        group_thousands(samples),
        if samples == 1 { "" } else { "s" }
    );
    // Off-cpu and memory graphs are weighted by time or bytes: say how much.
    if profile.kind != ProfileKind::Cpu {
        let index = flame_value_index(profile);
        if let Some(t) = profile.sample_types.get(index) {
            title.push_str(&format!(", {} {}", format_value(profile.total(index), &t.unit), t.kind));
        }
    }
    title
}

/// Whole seconds above one second (`30s`, `1m 30s`), milliseconds below.
fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// What one unit of width is, in inferno's tooltips: `(1,234 samples, 5%)`.
fn count_name(profile: &Profile) -> &str {
    match profile.sample_types.get(flame_value_index(profile)).map(|t| t.unit.as_str()) {
        Some("count") | None => "samples",
        Some("nanoseconds") => "ns",
        Some(unit) => unit,
    }
}

fn palette(kind: ProfileKind) -> Palette {
    match kind {
        ProfileKind::Cpu => Palette::Multi(MultiPalette::Java),
        ProfileKind::OffCpu => Palette::Basic(BasicPalette::Blue),
        ProfileKind::Memory => Palette::Basic(BasicPalette::Mem),
    }
}

/// A small standalone SVG for a capture without samples.
fn empty_svg(title: &str, subtitle: &str) -> Vec<u8> {
    format!(
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="110" viewBox="0 0 1200 110" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="#eeeeee"/>
<text x="50%" y="24" text-anchor="middle" font-family="Verdana" font-size="17" fill="rgb(0,0,0)">{}</text>
<text x="50%" y="48" text-anchor="middle" font-family="Verdana" font-size="12" fill="rgb(160,160,160)">{}</text>
<text x="50%" y="84" text-anchor="middle" font-family="Verdana" font-size="14" fill="rgb(0,0,0)">no samples were collected in this capture</text>
</svg>
"##,
        xml_escape(title),
        xml_escape(subtitle)
    )
    .into_bytes()
}

pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::profile::folded::{self, folded_lines};
    use crate::profile::testdata::{
        empty_profile, host_info, offcpu_profile, pid_info, sample_profile, single_process_profile,
    };

    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
    }

    /// Compares `actual` with `tests/data/<name>`, or rewrites the file when
    /// `STACKWATCH_BLESS=1`.
    fn golden(name: &str, actual: &[u8]) {
        let path = data_dir().join(name);
        if std::env::var("STACKWATCH_BLESS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(data_dir()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read golden `{}` ({e}); run with STACKWATCH_BLESS=1", path.display()));
        if expected != actual {
            // Outside the source tree, so a failed run leaves nothing to commit by mistake.
            let new = std::env::temp_dir().join(format!("stackwatch-actual-{name}"));
            std::fs::write(&new, actual).unwrap();
            panic!(
                "`{}` differs from the golden file; actual output left in `{}`; \
                 rerun with STACKWATCH_BLESS=1 if the change is intended",
                path.display(),
                new.display()
            );
        }
    }

    fn render_both(info: &CaptureInfo, profile: &Profile) -> (Vec<u8>, Vec<u8>) {
        let lines = folded_lines(profile, flame_value_index(profile), info.target.multi_process());
        (render(info, profile, &lines).unwrap(), folded::render(&lines))
    }

    #[test]
    fn host_cpu_golden() {
        let (svg, folded) = render_both(&host_info(), &sample_profile());
        let text = String::from_utf8(svg.clone()).unwrap();
        assert!(text.contains("stackwatch cpu — host — 2026-11-26 12:30:00Z → 12:30:30Z (30s) — 17 samples"));
        assert!(text.contains("manual (record)"));
        // One root per process in a whole-host capture.
        assert!(text.contains("<title>myservice (pid 100) (10 samples, 58.82%)</title>"), "{text}");
        assert!(text.contains("<title>worker ü (pid 200) (7 samples, 41.18%)</title>"));
        golden("flamegraph-host.svg", &svg);
        golden("flamegraph-host.folded", &folded);
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render_both(&host_info(), &sample_profile()), render_both(&host_info(), &sample_profile()));
        // Also across threads: inferno's random colors are per-thread state.
        let other = std::thread::spawn(|| render_both(&host_info(), &sample_profile())).join().unwrap();
        assert_eq!(other, render_both(&host_info(), &sample_profile()));
    }

    #[test]
    fn pid_cpu_golden_with_trigger() {
        let (svg, folded) = render_both(&pid_info(), &single_process_profile());
        let text = String::from_utf8(svg.clone()).unwrap();
        assert!(text.contains("stackwatch cpu — pid 100 (myservice) — "));
        assert!(text.contains("triggered: cpu-above 80% for 30s (observed 93.5% over 30s)"));
        assert!(!text.contains("(pid 100)"), "no process root for a single pid");
        golden("flamegraph-pid.svg", &svg);
        golden("flamegraph-pid.folded", &folded);
    }

    #[test]
    fn offcpu_golden() {
        let (svg, folded) = render_both(&pid_info(), &offcpu_profile());
        let text = String::from_utf8(svg.clone()).unwrap();
        assert!(text.contains("stackwatch offcpu — pid 100 (myservice) — "), "{text}");
        assert!(text.contains("— 3 samples, 4.50ms offcpu"), "{text}");
        // Time in the tooltips as people read it, not inferno's raw count.
        assert!(text.contains("<title>all (4.50 ms, 100%)</title>"), "{text}");
        assert!(text.contains("<title>futex_wait (1.50 ms, 33.33%)</title>"), "{text}");
        assert!(!text.contains(" ns, "), "no raw nanoseconds: {text}");
        assert!(text.contains("rgb(") && !text.contains("fill=\"rgb(2"), "blue palette, no hot colors");
        golden("flamegraph-offcpu.svg", &svg);
        golden("flamegraph-offcpu.folded", &folded);
    }

    #[test]
    fn empty_golden() {
        let (svg, folded) = render_both(&host_info(), &empty_profile());
        assert!(folded.is_empty());
        let text = String::from_utf8(svg.clone()).unwrap();
        assert!(text.contains("— 0 samples"));
        assert!(text.contains("no samples were collected"));
        golden("flamegraph-empty.svg", &svg);
    }

    #[test]
    fn readable_values() {
        assert_eq!(readable(9_929_456_627, "nanoseconds"), "9.93 s");
        assert_eq!(readable(12_345_678, "nanoseconds"), "12.3 ms");
        assert_eq!(readable(450_000, "nanoseconds"), "450 µs");
        assert_eq!(readable(999, "nanoseconds"), "999 ns");
        assert_eq!(readable(90 * 1_000_000_000, "nanoseconds"), "1.50 min");
        assert_eq!(readable(1_572_864, "bytes"), "1.50 MiB");
        assert_eq!(readable(512, "bytes"), "512 B");
        assert_eq!(readable(10 * 1024, "bytes"), "10.0 KiB");
        assert_eq!(readable(3 * 1_073_741_824, "bytes"), "3.00 GiB");
    }

    #[test]
    fn tooltips_are_rewritten_only_for_time_and_bytes() {
        let svg = b"<title>f (9,929,456,627 ns, 12.50%)</title><title>a (b) (2,048 bytes, 1.00%; +0.50%)</title>\
                    <title>g (1,234 samples, 5.00%)</title>"
            .to_vec();
        let out = String::from_utf8(readable_tooltips(svg)).unwrap();
        assert_eq!(
            out,
            "<title>f (9.93 s, 12.50%)</title><title>a (b) (2.00 KiB, 1.00%; +0.50%)</title>\
             <title>g (1,234 samples, 5.00%)</title>"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_millis(30_400)), "30s");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m 30s");
    }

    #[test]
    fn window_across_midnight_repeats_the_date() {
        let mut info = host_info();
        info.end = info.start + Duration::from_secs(12 * 3600);
        let t = title(&info, &empty_profile());
        assert!(t.contains("2026-11-26 12:30:00Z → 2026-11-27 00:30:00Z (12h)"), "{t}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(xml_escape("a<b>&\"c\"\n"), "a&lt;b&gt;&amp;&quot;c&quot; ");
    }
}
