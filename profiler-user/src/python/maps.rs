//! The mappings of a process, from `/proc/<pid>/maps`, and access to the
//! mapped files as the process sees them.
//!
//! Files are opened through `/proc/<pid>/map_files/<start>-<end>` (the very
//! file mapped, even if deleted or in another mount namespace), else at
//! their path inside the process's root (`/proc/<pid>/root`). Paths are kept
//! as the process sees them: they name the object in reports.

use std::fs::File;
use std::io;
use std::path::PathBuf;

/// One line of `/proc/<pid>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset mapped at `start`.
    pub offset: u64,
    pub executable: bool,
    pub writable: bool,
    pub inode: u64,
    /// The path as the process sees it, without the ` (deleted)` suffix;
    /// empty for anonymous memory, `[name]` for pseudo mappings.
    pub path: String,
    pub deleted: bool,
}

impl Mapping {
    pub(super) fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// Opens the mapped file (see the module docs).
    pub(super) fn open(&self, pid: u32) -> io::Result<File> {
        let map_file = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end));
        match File::open(&map_file) {
            Ok(file) => Ok(file),
            Err(first) => {
                let in_root = PathBuf::from(format!("/proc/{pid}/root{}", self.path));
                File::open(&in_root).map_err(|_| {
                    io::Error::new(first.kind(), format!("failed to open `{}` of pid {pid}: {first}", self.path))
                })
            }
        }
    }
}

/// Reads and parses `/proc/<pid>/maps`.
pub(super) fn read_maps(pid: u32) -> io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_maps(&text))
}

/// Parses a maps text; malformed lines are skipped.
pub(super) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    // start-end perms offset dev inode [path], the path possibly with spaces.
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (value, tail) = trimmed.split_at(end);
        rest = tail;
        value
    };
    let range = field();
    let perms = field();
    let offset = u64::from_str_radix(field(), 16).ok()?;
    let _dev = field();
    let inode = field().parse().ok()?;
    let path = rest.trim_start();
    let (start, end) = range.split_once('-')?;
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        writable: perms.as_bytes().get(1) == Some(&b'w'),
        inode,
        path: path.to_owned(),
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anonymous_pseudo_and_deleted_lines() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/python3.11
7f0000000000-7f0000001000 r-xp 00001000 fd:01 99 /opt/my app/libpython3.9.so.1.0 (deleted)
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00001000 r-xp 00000000 00:00 0                          [vdso]
garbage
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].path, "/usr/bin/python3.11");
        assert!(!maps[0].executable && !maps[0].writable && maps[0].is_file());
        assert_eq!(maps[1].path, "/opt/my app/libpython3.9.so.1.0");
        assert!(maps[1].deleted && maps[1].executable);
        assert_eq!((maps[1].start, maps[1].offset), (0x7f00_0000_0000, 0x1000));
        assert!(!maps[2].is_file() && maps[2].path.is_empty() && maps[2].writable);
        assert_eq!(maps[3].path, "[vdso]");
    }
}
