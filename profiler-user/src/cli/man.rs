//! Manual pages, generated from the same clap definitions as `--help`, so
//! they never disagree with the binary: `stackwatch.1` and one page per
//! subcommand (`stackwatch-record.1`, …). `cargo xtask man` runs the hidden
//! `stackwatch generate-man DIR`, and the packages ship what it writes.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// Writes every page into `dir` (created if needed) and returns their paths.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("failed to write the manual pages into `{}`", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to list `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        let mut expected = vec!["stackwatch.1".to_owned()];
        for sub in Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
            expected.push(format!("stackwatch-{}.1", sub.get_name()));
        }
        for want in &expected {
            assert!(names.contains(want), "no page {want}: {names:?}");
        }
        for want in ["stackwatch-record.1", "stackwatch-dump.1", "stackwatch-doctor.1", "stackwatch-watch.1"] {
            assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate-man")), "the generator itself has no page: {names:?}");
        let dump = std::fs::read_to_string(dir.path().join("stackwatch-dump.1")).unwrap();
        assert!(dump.starts_with(".ie") || dump.contains(".TH"), "{dump}");
        assert!(dump.contains("\\-\\-json") && dump.contains("kernel"), "{dump}");
    }
}
