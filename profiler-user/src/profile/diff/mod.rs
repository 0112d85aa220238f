//! What changed between two profiles: pprof files read back ([`read`]),
//! per-function shares compared ([`compare`]), and the differential
//! flamegraph ([`render`]).
//!
//! Pure, like the other encoders here: `stackwatch diff` (in `commands`)
//! reads the files and writes the SVG, and the history recorder draws its
//! before/after picture of one capture with the same [`render::render_diff_svg`].
//! Shares rather than raw values are compared, so captures of different
//! lengths compare fairly.

pub(crate) mod compare;
pub(crate) mod read;
pub(crate) mod render;

#[cfg(test)]
pub(crate) mod tests;
