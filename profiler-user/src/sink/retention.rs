//! Retention for `watch`'s output directory: after each capture, the oldest
//! captures are deleted until at most `--max-captures` remain and they take at
//! most `--retain` bytes.
//!
//! A capture is the set of files that share a manifest's name stem and
//! timestamp: `<base>-capture-<ts>[-N].json` and every
//! `<base>-<kind>-<ts>[-N].{pb.gz,svg,folded}` beside it (a capture whose
//! manifest could not be written still forms a group). Age is the timestamp
//! in the name — when the capture started — not the file times, which a copy
//! or `touch` changes. Only regular files whose names match that pattern are
//! ever counted or deleted: anything else in the directory (notes, symlinks,
//! temporary files, other tools' output) is left alone, and nothing is ever
//! followed through a symlink. The capture just written is never deleted,
//! even when it alone exceeds `--retain`.
//!
//! [`select`] is the pure decision; [`prune`] applies it to a directory,
//! working relative to one opened directory descriptor.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;

/// Limits on what the output directory keeps. `None` means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub max_captures: Option<usize>,
    pub max_bytes: Option<u64>,
}

impl Policy {
    pub(crate) fn is_unlimited(&self) -> bool {
        self.max_captures.is_none() && self.max_bytes.is_none()
    }
}

/// Identifies a capture; orders oldest first (timestamp, then the `-N`
/// suffix a same-second capture gets, then the name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CaptureKey {
    /// `YYYYMMDDTHHMMSSZ`: sorts as text in time order.
    pub timestamp: String,
    pub suffix: u32,
    /// `<name>-<pid>` or `<name>`.
    pub base: String,
}

/// A file of a capture, with its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaptureFile {
    pub name: String,
    pub bytes: u64,
}

/// All files of one capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Capture {
    pub key: CaptureKey,
    pub files: Vec<CaptureFile>,
}

impl Capture {
    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Profile kinds that appear in file names (see [`super::dir`]).
const KINDS: &[&str] = &["cpu", "offcpu", "memory"];

/// The capture a file name belongs to, or `None` when it is not one of ours.
pub(crate) fn parse_name(name: &str) -> Option<CaptureKey> {
    if name.starts_with('.') {
        return None;
    }
    let (stem, is_manifest) = if let Some(stem) = name.strip_suffix(".json") {
        (stem, true)
    } else {
        let stem = [".pb.gz", ".svg", ".folded"].iter().find_map(|ext| name.strip_suffix(ext))?;
        (stem, false)
    };
    // Optional `-N` after the timestamp.
    let (stem, suffix) = match stem.rsplit_once('-') {
        Some((left, n)) if !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()) => {
            (left, n.parse().ok()?)
        }
        _ => (stem, 0),
    };
    let (rest, timestamp) = stem.rsplit_once('-')?;
    if !is_timestamp(timestamp) {
        return None;
    }
    let (base, kind) = rest.rsplit_once('-')?;
    let kind_ok = if is_manifest { kind == "capture" } else { KINDS.contains(&kind) };
    if !kind_ok || base.is_empty() {
        return None;
    }
    Some(CaptureKey { timestamp: timestamp.to_owned(), suffix, base: base.to_owned() })
}

/// `YYYYMMDDTHHMMSSZ`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
}

/// Groups files (regular files only, as `(name, size)`) into captures,
/// oldest first. Names that are not ours are dropped.
pub(crate) fn group(files: impl IntoIterator<Item = (String, u64)>) -> Vec<Capture> {
    let mut map: BTreeMap<CaptureKey, Vec<CaptureFile>> = BTreeMap::new();
    for (name, bytes) in files {
        if let Some(key) = parse_name(&name) {
            map.entry(key).or_default().push(CaptureFile { name, bytes });
        }
    }
    map.into_iter()
        .map(|(key, mut files)| {
            files.sort_by(|a, b| a.name.cmp(&b.name));
            Capture { key, files }
        })
        .collect()
}

/// The captures to delete, oldest first: the oldest go until both limits
/// hold. `keep` (the capture just written) is never selected, and counts
/// against the limits like the others.
pub(crate) fn select<'a>(captures: &'a [Capture], policy: &Policy, keep: Option<&CaptureKey>) -> Vec<&'a Capture> {
    let mut count = captures.len();
    let mut bytes: u64 = captures.iter().map(Capture::bytes).sum();
    let over = |count: usize, bytes: u64| {
        policy.max_captures.is_some_and(|max| count > max) || policy.max_bytes.is_some_and(|max| bytes > max)
    };
    let mut doomed = Vec::new();
    for capture in captures {
        if !over(count, bytes) {
            break;
        }
        if Some(&capture.key) == keep {
            continue;
        }
        count -= 1;
        bytes = bytes.saturating_sub(capture.bytes());
        doomed.push(capture);
    }
    doomed
}

/// What [`prune`] deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub captures: usize,
    pub files: Vec<String>,
    pub bytes: u64,
}

/// Applies `policy` to the directory `dir`, never deleting `keep`.
pub(crate) fn prune(dir: &Path, policy: &Policy, keep: Option<&CaptureKey>) -> anyhow::Result<Pruned> {
    if policy.is_unlimited() {
        return Ok(Pruned::default());
    }
    let dir_fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .with_context(|| format!("cannot open output directory `{}` for retention", dir.display()))?
        .into();
    // List through the descriptor's own path so the names and the later
    // unlinks refer to the same directory even if `dir` is renamed meanwhile.
    let listing = Path::new("/proc/self/fd").join(dir_fd.as_raw_fd().to_string());
    let entries = std::fs::read_dir(&listing)
        .or_else(|_| std::fs::read_dir(dir))
        .with_context(|| format!("cannot list output directory `{}`", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if parse_name(&name).is_none() {
            continue;
        }
        if let Ok(Some(size)) = regular_file_size(&dir_fd, &name) {
            files.push((name, size));
        }
    }
    let captures = group(files);
    let mut pruned = Pruned::default();
    for capture in select(&captures, policy, keep) {
        let mut removed_any = false;
        for file in &capture.files {
            match unlink_regular(&dir_fd, &file.name) {
                Ok(true) => {
                    removed_any = true;
                    pruned.bytes += file.bytes;
                    pruned.files.push(file.name.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("retention: failed to delete `{}`: {e}", dir.join(&file.name).display())
                }
            }
        }
        if removed_any {
            pruned.captures += 1;
        }
    }
    Ok(pruned)
}

/// Size of `name` if it is a regular file (not following a symlink).
fn regular_file_size(dir: &OwnedFd, name: &str) -> io::Result<Option<u64>> {
    let c = CString::new(Path::new(name).as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `stat` is plain data; all-zero is a valid value for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid directory fd, NUL-terminated name, writable stat buffer.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(((st.st_mode & libc::S_IFMT) == libc::S_IFREG).then_some(st.st_size as u64))
}

/// Deletes `name` if it is (still) a regular file. Should it be swapped for
/// a symlink in between, `unlinkat` removes the link itself, never its
/// target; a directory makes it fail.
fn unlink_regular(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    if regular_file_size(dir, name)?.is_none() {
        return Ok(false);
    }
    let c = CString::new(Path::new(name).as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid directory fd and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ts: &str, suffix: u32, base: &str) -> CaptureKey {
        CaptureKey { timestamp: ts.into(), suffix, base: base.into() }
    }

    #[test]
    fn parses_our_names_only() {
        let k = key("20261126T123000Z", 0, "cpu_split-4242");
        assert_eq!(parse_name("cpu_split-4242-cpu-20261126T123000Z.pb.gz"), Some(k.clone()));
        assert_eq!(parse_name("cpu_split-4242-cpu-20261126T123000Z.svg"), Some(k.clone()));
        assert_eq!(parse_name("cpu_split-4242-offcpu-20261126T123000Z.folded"), Some(k.clone()));
        assert_eq!(parse_name("cpu_split-4242-capture-20261126T123000Z.json"), Some(k));
        assert_eq!(parse_name("host-capture-20261126T123000Z-3.json"), Some(key("20261126T123000Z", 3, "host")));
        assert_eq!(parse_name("my-svc-7-cpu-20261126T123000Z-12.svg"), Some(key("20261126T123000Z", 12, "my-svc-7")));
        for other in [
            "notes.txt",
            "host-cpu-20261126T123000Z.json",    // a manifest must say `capture`
            "host-capture-20261126T123000Z.svg", // and only a manifest may
            "host-gpu-20261126T123000Z.pb.gz",   // unknown kind
            "host-cpu-2026112T123000Z.pb.gz",    // short timestamp
            "cpu-20261126T123000Z.pb.gz",        // no base
            ".host-cpu-20261126T123000Z.pb.gz.1.a.tmp",
            ".host-cpu-20261126T123000Z.pb.gz", // hidden
            "host-cpu-20261126T123000Z.pb.gz.bak",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    fn capture_files(base: &str, ts: &str, bytes: u64) -> Vec<(String, u64)> {
        vec![
            (format!("{base}-cpu-{ts}.pb.gz"), bytes),
            (format!("{base}-cpu-{ts}.svg"), bytes),
            (format!("{base}-capture-{ts}.json"), bytes),
        ]
    }

    #[test]
    fn groups_by_capture_oldest_first() {
        let mut files = capture_files("b-2", "20260101T000002Z", 1);
        files.extend(capture_files("a-1", "20260101T000001Z", 1));
        files.push(("a-1-cpu-20260101T000001Z-1.pb.gz".into(), 5)); // orphan of a later same-second capture
        files.push(("README".into(), 100));
        let captures = group(files);
        let keys: Vec<_> = captures.iter().map(|c| (c.key.timestamp.as_str(), c.key.suffix, c.files.len())).collect();
        assert_eq!(keys, [("20260101T000001Z", 0, 3), ("20260101T000001Z", 1, 1), ("20260101T000002Z", 0, 3)]);
    }

    fn names(selected: &[&Capture]) -> Vec<String> {
        selected.iter().map(|c| c.key.timestamp.clone()).collect()
    }

    #[test]
    fn keeps_at_most_n_captures_oldest_go_first() {
        let mut files = Vec::new();
        for i in 0..5 {
            files.extend(capture_files("host", &format!("2026010{}T000000Z", i + 1), 10));
        }
        let captures = group(files);
        let policy = Policy { max_captures: Some(2), max_bytes: None };
        assert_eq!(
            names(&select(&captures, &policy, None)),
            ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
        );
        let all = Policy { max_captures: Some(5), max_bytes: None };
        assert!(select(&captures, &all, None).is_empty());
        assert!(select(&captures, &Policy::default(), None).is_empty());
    }

    #[test]
    fn keeps_within_a_byte_budget_and_never_the_protected_capture() {
        let mut files = capture_files("host", "20260101T000000Z", 100); // 300 bytes
        files.extend(capture_files("host", "20260102T000000Z", 10)); // 30
        files.extend(capture_files("host", "20260103T000000Z", 1000)); // 3000, newest
        let captures = group(files);
        let policy = Policy { max_captures: None, max_bytes: Some(3030) };
        assert_eq!(names(&select(&captures, &policy, None)), ["20260101T000000Z"]);
        // The newest alone is over budget: everything else goes, it stays.
        let tight = Policy { max_captures: None, max_bytes: Some(1) };
        let newest = captures[2].key.clone();
        assert_eq!(names(&select(&captures, &tight, Some(&newest))), ["20260101T000000Z", "20260102T000000Z"]);
        // Both limits together: the stricter one wins.
        let both = Policy { max_captures: Some(1), max_bytes: Some(1_000_000) };
        assert_eq!(select(&captures, &both, Some(&newest)).len(), 2);
    }

    #[test]
    fn prunes_a_directory_without_touching_strangers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (i, ts) in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"].iter().enumerate() {
            for (name, _) in capture_files("host", ts, 0) {
                std::fs::write(dir.join(name), vec![b'x'; 10 * (i + 1)]).unwrap();
            }
        }
        let victim = tmp.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        // A symlink carrying one of our names (oldest): never followed, never counted.
        std::os::unix::fs::symlink(&victim, dir.join("host-cpu-20250101T000000Z.pb.gz")).unwrap();
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();

        let policy = Policy { max_captures: Some(1), max_bytes: None };
        let keep = key("20260103T000000Z", 0, "host");
        let pruned = prune(dir, &policy, Some(&keep)).unwrap();
        assert_eq!(pruned.captures, 2);
        assert_eq!(pruned.files.len(), 6);
        assert_eq!(pruned.bytes, 3 * 10 + 3 * 20);
        let mut left: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "host-capture-20260103T000000Z.json",
                "host-cpu-20250101T000000Z.pb.gz",
                "host-cpu-20260103T000000Z.pb.gz",
                "host-cpu-20260103T000000Z.svg",
                "notes.txt",
                "victim.txt",
            ]
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }
}
