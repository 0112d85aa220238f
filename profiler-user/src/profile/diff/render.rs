//! The differential flamegraph: two sets of folded stacks → one SVG whose
//! frames are as wide as in the new set and colored by how they changed
//! (red grew, blue shrank, white unchanged), Brendan Gregg's design as
//! inferno draws it.
//!
//! The base set is scaled to the new set's total first (inferno's
//! `normalize`), so two captures of different lengths or sample rates
//! compare by share: a function that kept its share is white whatever the
//! totals. The inputs are folded stacks rather than a profile so that
//! anything with two stack sets can draw one: `stackwatch diff` from two
//! pprof files, and the history feature from two time windows of one
//! capture. When the new set is empty (everything shrank), the picture is
//! drawn with the base set's widths instead, all blue, rather than as nothing.

use anyhow::Context as _;
use inferno::differential;
use inferno::flamegraph::{self, Options};

use crate::profile::flamegraph::xml_escape;

/// The words around a differential flamegraph.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiffLabels<'a> {
    /// The big line on top, e.g. `stackwatch diff — cpu`.
    pub(crate) title: &'a str,
    /// The line under it: what is compared with what (files or windows).
    pub(crate) subtitle: &'a str,
    /// What one unit of width is, in the tooltips (`samples`, `ns`, `bytes`).
    pub(crate) count_name: &'a str,
}

/// Draws the differential flamegraph of `base` → `new`. Each entry is a
/// folded stack (frames root first, `;`-separated, each made safe with
/// [`crate::profile::folded::sanitize_frame`]) and its value; the same stack
/// may appear more than once. Entries with value 0 are ignored. When
/// neither set has any value the SVG is a notice saying so.
pub(crate) fn render_diff_svg<S: AsRef<str>>(
    base: &[(S, u64)],
    new: &[(S, u64)],
    labels: &DiffLabels<'_>,
) -> anyhow::Result<Vec<u8>> {
    let total = |set: &[(S, u64)]| set.iter().fold(0u64, |t, (_, v)| t.saturating_add(*v));
    let (base_total, new_total) = (total(base), total(new));
    if base_total == 0 && new_total == 0 {
        return Ok(notice_svg(labels, "neither side has any samples: there is nothing to compare"));
    }
    // inferno draws widths from its second input; with an empty new set,
    // give it the base set second and flip the sign of the change back.
    let (first, second, negate) = if new_total == 0 { (new, base, true) } else { (base, new, false) };
    let mut merged = Vec::new();
    differential::from_readers(
        differential::Options { normalize: true, strip_hex: false },
        folded_text(first).as_bytes(),
        folded_text(second).as_bytes(),
        &mut merged,
    )
    .context("failed to merge the two sets of stacks")?;
    let merged = String::from_utf8(merged).context("inferno merged the stacks into invalid UTF-8")?;

    let mut options = Options::default();
    options.title = labels.title.to_owned();
    options.subtitle = Some(labels.subtitle.to_owned());
    options.count_name = labels.count_name.to_owned();
    options.negate_differentials = negate;
    // Deterministic output: frames without a change color come from their
    // name, not from a random generator.
    options.hash = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, merged.lines(), &mut svg)
        .context("inferno failed to draw the differential flamegraph")?;
    Ok(svg)
}

/// `stack value` lines, as inferno's differential reader takes them.
fn folded_text<S: AsRef<str>>(set: &[(S, u64)]) -> String {
    let mut text = String::new();
    for (stack, value) in set.iter().filter(|(_, v)| *v > 0) {
        text.push_str(stack.as_ref());
        text.push(' ');
        text.push_str(&value.to_string());
        text.push('\n');
    }
    text
}

/// A small standalone SVG carrying the labels and `message`.
fn notice_svg(labels: &DiffLabels<'_>, message: &str) -> Vec<u8> {
    format!(
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="110" viewBox="0 0 1200 110" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="#eeeeee"/>
<text x="50%" y="24" text-anchor="middle" font-family="Verdana" font-size="17" fill="rgb(0,0,0)">{}</text>
<text x="50%" y="48" text-anchor="middle" font-family="Verdana" font-size="12" fill="rgb(160,160,160)">{}</text>
<text x="50%" y="84" text-anchor="middle" font-family="Verdana" font-size="14" fill="rgb(0,0,0)">{}</text>
</svg>
"##,
        xml_escape(labels.title),
        xml_escape(labels.subtitle),
        xml_escape(message)
    )
    .into_bytes()
}
