//! The encodings a profile is written in, and which of them an operator
//! asked for (`--formats`).

use crate::units::list_items;

/// Which file formats to write for each profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Formats {
    pub pprof: bool,
    pub svg: bool,
    pub folded: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self { pprof: true, svg: true, folded: false }
    }
}

impl Formats {
    /// Parses a comma-separated list such as `pprof,svg,folded`. The list
    /// replaces the default rather than adding to it; `flamegraph` is accepted
    /// for `svg`; an empty item is refused (see [`list_items`]).
    pub(crate) fn parse(list: &str) -> Result<Formats, String> {
        let mut formats = Formats { pprof: false, svg: false, folded: false };
        for word in list_items(list, "pprof, svg or folded, separated by commas, e.g. `pprof,svg`")? {
            match word.to_ascii_lowercase().as_str() {
                "pprof" => formats.pprof = true,
                "svg" | "flamegraph" => formats.svg = true,
                "folded" => formats.folded = true,
                _ => return Err(format!("unknown output format `{word}` (expected pprof, svg or folded)")),
            }
        }
        Ok(formats)
    }
}

/// What a written file holds, as listed in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FileFormat {
    Pprof,
    Svg,
    Folded,
    Manifest,
}

impl FileFormat {
    pub(crate) fn extension(self) -> &'static str {
        match self {
            FileFormat::Pprof => "pb.gz",
            FileFormat::Svg => "svg",
            FileFormat::Folded => "folded",
            FileFormat::Manifest => "json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(Formats::default(), Formats { pprof: true, svg: true, folded: false });
        assert_eq!(Formats::parse("pprof,svg,folded"), Ok(Formats { pprof: true, svg: true, folded: true }));
        assert_eq!(Formats::parse(" folded "), Ok(Formats { pprof: false, svg: false, folded: true }));
        assert_eq!(Formats::parse("PPROF,flamegraph"), Ok(Formats { pprof: true, svg: true, folded: false }));
        let err = Formats::parse("pprof,png").unwrap_err();
        assert!(err.contains("`png`"), "{err}");
        for list in ["", ",", "pprof,,svg", "pprof,", " , svg"] {
            let err = Formats::parse(list).unwrap_err();
            assert!(err.starts_with("the list has an empty item"), "{list:?}: {err}");
        }
    }
}
