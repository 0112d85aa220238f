//! The `watch` configuration file (`--config FILE`): TOML whose keys are the
//! flags' long names, so `--capture-duration 2m` is `capture-duration = "2m"`.
//!
//! ```toml
//! name = "^order-service"        # or pid = 1234 / pid = [1, 2] / cgroup = "…"
//! control = "/run/stackwatch/control"
//! output-dir = "/var/lib/stackwatch"
//! capture-duration = "60s"
//! frequency = 99
//! formats = "pprof,svg"          # or ["pprof", "svg"]
//! max-captures = 50
//! retain = "2GiB"
//! profiles = "cpu"               # or ["cpu", "offcpu"]: what a manual capture takes
//!
//! # Trigger rules, one per string, written as on the command line (the
//! # dashes may be left out); a rule's modifiers stay in its string.
//! triggers = ["cpu-above 80 for 3m", "mem-above 2GiB for 1m"]
//! cooldown = "10m"
//! sample-interval = "1s"
//!
//! # The flight recorder (off unless `history` is set).
//! history = "10m"
//! history-frequency = 19
//! history-memory = "32MiB"
//! ```
//!
//! Trigger flags on the command line replace the file's `triggers` as a
//! whole (a rule cannot be half from each).
//!
//! Only the file's syntax and types are checked here; values are validated
//! with the same rules as the flags in [`crate::config::WatchConfig`], which
//! also applies "flags override the file". Unknown keys are refused so a typo
//! (`max_captures`) does not silently keep the default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::UsageError;

/// A value that may be written once or as a list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "expected one value or a list of values, each of the right type")]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub(crate) fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The file's contents, before validation.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WatchFile {
    pub pid: Option<OneOrMany<u32>>,
    pub name: Option<String>,
    pub cgroup: Option<PathBuf>,
    pub control: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub capture_duration: Option<String>,
    pub frequency: Option<u64>,
    pub formats: Option<OneOrMany<String>>,
    pub max_captures: Option<u64>,
    pub retain: Option<OneOrSize>,
    pub profiles: Option<OneOrMany<String>>,
    pub triggers: Option<OneOrMany<String>>,
    pub cooldown: Option<String>,
    pub sample_interval: Option<String>,
    pub unwind: Option<String>,
    pub history: Option<String>,
    pub history_frequency: Option<u64>,
    pub history_memory: Option<OneOrSize>,
    pub history_slot: Option<String>,
    // `watch --listen` and `--push` (see `config::ops` and docs/usage.md).
    pub listen: Option<String>,
    pub listen_token_file: Option<PathBuf>,
    /// `[alert-targets]`: label → target template (`name:^{}$`).
    pub alert_targets: Option<std::collections::BTreeMap<String, String>>,
    pub push: Option<String>,
    pub push_token_file: Option<PathBuf>,
    pub push_user: Option<String>,
    pub push_password_file: Option<PathBuf>,
    pub push_tenant: Option<String>,
    pub push_timeout: Option<String>,
    pub push_labels: Option<std::collections::BTreeMap<String, String>>,
    pub push_spool_dir: Option<PathBuf>,
    pub push_spool_size: Option<OneOrSize>,
}

/// `retain = "2GiB"` or `retain = 1073741824`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "expected a size such as \"2GiB\" or a number of bytes")]
pub(crate) enum OneOrSize {
    Bytes(u64),
    Text(String),
}

impl WatchFile {
    /// Reads and parses `path`. Every failure is a usage error naming the file.
    pub(crate) fn load(path: &Path) -> Result<Self, UsageError> {
        let text =
            read_config(path).map_err(|e| UsageError(format!("cannot read config file `{}`: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| UsageError(format!("invalid config file `{}`: {e}", path.display())))
    }

    /// Parses TOML text; the error is toml's message folded onto one line,
    /// with the line and, where the line sets one, the key it is about.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            let Some(start) = e.span().map(|span| span.start) else { return message };
            let line = line_of(text, start);
            match key_on_line(text, line) {
                Some(key) => format!("line {line} (`{key}`): {message}"),
                None => format!("line {line}: {message}"),
            }
        })
    }
}

/// Largest config file read: real ones are a few hundred bytes; the bound
/// keeps `--config /dev/zero` (or any huge file) from filling memory.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The file's text. Only a regular file is read, opened without blocking,
/// so a FIFO (the control FIFO given by mistake) or a device is refused
/// instead of hanging or reading forever.
fn read_config(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(format!("it is {kind}; give the path of a TOML file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("it is larger than {} KiB, which no config file needs", MAX_CONFIG_BYTES / 1024));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())
}

/// The key set on 1-based line `line` (`key = value`), if any.
fn key_on_line(text: &str, line: usize) -> Option<&str> {
    let (key, _) = text.lines().nth(line.checked_sub(1)?)?.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')).then_some(key)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let file = WatchFile::parse(
            r#"
            pid = [1, 2]
            control = "/run/x/control"
            output-dir = "/srv/profiles"
            capture-duration = "2m"
            frequency = 49
            formats = ["pprof", "folded"]
            max-captures = 10
            retain = "1GiB"
            profiles = "cpu,offcpu"
            triggers = ["cpu-above 80 for 3m", "--mem-above 2GiB --for 1m"]
            cooldown = "30m"
            sample-interval = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(file.pid, Some(OneOrMany::Many(vec![1, 2])));
        assert_eq!(file.control, Some(PathBuf::from("/run/x/control")));
        assert_eq!(file.output_dir, Some(PathBuf::from("/srv/profiles")));
        assert_eq!(file.capture_duration.as_deref(), Some("2m"));
        assert_eq!(file.frequency, Some(49));
        assert_eq!(file.formats.unwrap().to_vec(), ["pprof", "folded"]);
        assert_eq!(file.max_captures, Some(10));
        assert_eq!(file.retain, Some(OneOrSize::Text("1GiB".into())));
        assert_eq!(file.profiles.unwrap().to_vec(), ["cpu,offcpu"]);
        assert_eq!(file.triggers.unwrap().to_vec(), ["cpu-above 80 for 3m", "--mem-above 2GiB --for 1m"]);
        assert_eq!(file.cooldown.as_deref(), Some("30m"));
        assert_eq!(file.sample_interval.as_deref(), Some("500ms"));

        let file = WatchFile::parse("pid = 7\nformats = \"svg\"\nretain = 4096\n").unwrap();
        assert_eq!(file.pid.unwrap().to_vec(), [7]);
        assert_eq!(file.retain, Some(OneOrSize::Bytes(4096)));
        assert_eq!(WatchFile::parse("").unwrap(), WatchFile::default());
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let err = WatchFile::parse("frequency = 99\nmax_captures = 3\n").unwrap_err();
        assert!(err.starts_with("line 2 (`max_captures`): unknown field `max_captures`"), "{err}");
        let err = WatchFile::parse("frequency = \"fast\"\n").unwrap_err();
        assert!(err.starts_with("line 1 (`frequency`): invalid type"), "{err}");
        let err = WatchFile::parse("name = [unclosed\n").unwrap_err();
        assert!(err.starts_with("line 1"), "{err}");
        let err = WatchFile::parse("# a comment\ncooldown = 5\n").unwrap_err();
        assert!(err.starts_with("line 2 (`cooldown`): invalid type: integer `5`"), "{err}");
    }

    #[test]
    fn one_or_many_errors_say_what_was_expected() {
        for (text, key) in [("triggers = 5", "triggers"), ("pid = [1, \"x\"]", "pid"), ("formats = true", "formats")] {
            let err = WatchFile::parse(text).unwrap_err();
            assert_eq!(
                err,
                format!("line 1 (`{key}`): expected one value or a list of values, each of the right type")
            );
        }
        let err = WatchFile::parse("retain = true").unwrap_err();
        assert!(err.contains("expected a size such as \"2GiB\""), "{err}");
        assert!(!err.contains("untagged"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let err = WatchFile::load(Path::new("/nonexistent/watch.toml")).unwrap_err();
        assert!(err.0.starts_with("cannot read config file `/nonexistent/watch.toml`: "), "{err}");
    }

    #[test]
    fn load_reads_only_a_regular_file_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        for path in [Path::new("/dev/zero"), dir.path()] {
            let err = WatchFile::load(path).unwrap_err();
            assert!(err.0.contains("give the path of a TOML file"), "{err}");
        }
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = WatchFile::load(&fifo).unwrap_err();
        assert!(err.0.contains("not a regular file"), "{err}");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        assert!(WatchFile::load(&big).unwrap_err().0.contains("larger than 1024 KiB"));
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "frequency = 49\n").unwrap();
        assert_eq!(WatchFile::load(&ok).unwrap().frequency, Some(49));
    }
}
