//! Validated configuration built from the command line.
//!
//! clap has already checked each value on its own; this is where the
//! arguments become the typed values the rest of the crate uses, and where
//! options that parse but cannot be honoured yet are refused.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{RecordArgs, TargetArgs};
use crate::output::Formats;
use crate::profile::ProfileKind;
use crate::target::TargetSpec;

/// A command line that is well-formed but asks for something stackwatch
/// cannot do. `main` exits with 2 for it, as for clap's own usage errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Everything `record` needs.
#[derive(Debug)]
pub struct RecordConfig {
    pub target: TargetSpec,
    pub duration: Duration,
    pub frequency_hz: u64,
    pub output_dir: PathBuf,
    /// Distinct, in the order given.
    pub profiles: Vec<ProfileKind>,
    pub formats: Formats,
}

impl RecordConfig {
    pub fn from_args(args: &RecordArgs) -> Result<Self, UsageError> {
        let mut profiles: Vec<ProfileKind> = Vec::with_capacity(args.profiles.len());
        for &kind in &args.profiles {
            if kind != ProfileKind::Cpu {
                return Err(UsageError(format!("profile kind `{kind}` is not supported yet (use `--profiles cpu`)")));
            }
            if !profiles.contains(&kind) {
                profiles.push(kind);
            }
        }
        if profiles.is_empty() {
            return Err(UsageError("`--profiles` needs at least one profile kind, e.g. `cpu`".to_owned()));
        }
        let formats = Formats::parse(&args.formats)
            .map_err(|e| UsageError(format!("invalid value `{}` for `--formats`: {e}", args.formats)))?;
        Ok(Self {
            target: target_spec(&args.target),
            duration: args.duration,
            frequency_hz: args.frequency,
            output_dir: args.output_dir.clone(),
            profiles,
            formats,
        })
    }
}

/// clap's argument group already guarantees at most one target option.
fn target_spec(args: &TargetArgs) -> TargetSpec {
    if let Some(re) = &args.name {
        TargetSpec::Name(re.clone())
    } else if let Some(path) = &args.cgroup {
        TargetSpec::Cgroup(path.clone())
    } else if !args.pids.is_empty() {
        TargetSpec::Pids(args.pids.clone())
    } else {
        TargetSpec::Host
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use std::path::Path;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(args: &[&str]) -> Result<RecordConfig, UsageError> {
        let argv = ["stackwatch", "record"].into_iter().chain(args.iter().copied());
        match Cli::try_parse_from(argv).expect("valid command line").command {
            Command::Record(args) => RecordConfig::from_args(&args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.target, TargetSpec::Host));
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.frequency_hz, 99);
        assert_eq!(c.output_dir, PathBuf::from("."));
        assert_eq!(c.profiles, vec![ProfileKind::Cpu]);
        assert_eq!(c.formats, Formats { pprof: true, svg: true, folded: false });
    }

    #[test]
    fn targets() {
        assert!(matches!(config(&["--pid", "7", "--pid", "8"]).unwrap().target, TargetSpec::Pids(p) if p == [7, 8]));
        assert!(
            matches!(config(&["--name", "^redis"]).unwrap().target, TargetSpec::Name(re) if re.as_str() == "^redis")
        );
        assert!(
            matches!(config(&["--cgroup", "a.slice"]).unwrap().target, TargetSpec::Cgroup(p) if p == Path::new("a.slice"))
        );
    }

    #[test]
    fn profiles_are_deduplicated() {
        assert_eq!(config(&["--profiles", "cpu,CPU, cpu"]).unwrap().profiles, vec![ProfileKind::Cpu]);
    }

    #[test]
    fn unimplemented_profiles_are_refused() {
        let err = config(&["--profiles", "cpu,offcpu"]).unwrap_err();
        assert_eq!(err.to_string(), "profile kind `offcpu` is not supported yet (use `--profiles cpu`)");
        let err = config(&["--profiles", "memory"]).unwrap_err();
        assert_eq!(err.to_string(), "profile kind `memory` is not supported yet (use `--profiles cpu`)");
    }

    #[test]
    fn formats() {
        let c = config(&["--formats", "pprof,svg,folded"]).unwrap();
        assert_eq!(c.formats, Formats { pprof: true, svg: true, folded: true });
        let err = config(&["--formats", "png"]).unwrap_err();
        assert!(err.0.starts_with("invalid value `png` for `--formats`: "), "{err}");
    }
}
