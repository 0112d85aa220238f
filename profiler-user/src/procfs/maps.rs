//! A process's executable mappings, from `/proc/<pid>/maps`.

use std::path::PathBuf;

use crate::addr::FileOffset;
use crate::ids::Pid;
use crate::sys::{file::FileId, maps_line::MapsLine};

/// One executable mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    /// File offset that `start` maps.
    pub offset: u64,
    /// Device (as `st_dev` encodes it) and inode of the mapped file.
    pub dev: u64,
    pub inode: u64,
    /// The path as the process sees it (`… (deleted)` for a deleted file),
    /// a pseudo-name such as `[vdso]`, or empty for anonymous memory (JIT).
    pub path: String,
}

impl MapsEntry {
    /// Backed by a file (not anonymous, not a `[pseudo]` mapping).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && !self.path.is_empty() && !self.path.starts_with('[')
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The file offset at process address `addr` (inside the mapping).
    pub fn file_offset(&self, addr: u64) -> FileOffset {
        FileOffset::new(addr - self.start + self.offset)
    }

    /// The mapped file's identity as the process mapped it.
    pub fn file_id(&self) -> FileId {
        FileId { dev: self.dev, inode: self.inode }
    }

    /// The path without the kernel's ` (deleted)` suffix.
    pub fn clean_path(&self) -> &str {
        self.path.strip_suffix(" (deleted)").unwrap_or(&self.path)
    }

    /// `/proc/<pid>/map_files/<start>-<end>`: the very file the process
    /// mapped here, even if it was deleted or lives in another mount namespace.
    pub fn map_files_path(&self, pid: Pid) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end))
    }
}

/// Parses the executable lines of a `/proc/<pid>/maps` text (file-backed,
/// pseudo and anonymous), in address order.
pub fn parse_maps(text: &str) -> Vec<MapsEntry> {
    let mut out: Vec<MapsEntry> = text
        .lines()
        .filter_map(MapsLine::parse)
        .filter(|l| l.perms.contains('x'))
        .map(|l| MapsEntry {
            start: l.start,
            end: l.end,
            offset: l.offset,
            dev: l.dev,
            inode: l.inode,
            path: l.path.to_owned(),
        })
        .collect();
    out.sort_by_key(|m| m.start);
    out
}

/// The executable mappings of a live process; empty if it is gone.
pub(crate) fn read_maps(pid: Pid) -> Option<Vec<MapsEntry>> {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).ok().map(|t| parse_maps(&t))
}

/// The mapping of `maps` (sorted by start) that holds `addr`.
pub(crate) fn find_mapping(maps: &[MapsEntry], addr: u64) -> Option<&MapsEntry> {
    let i = maps.partition_point(|m| m.start <= addr).checked_sub(1)?;
    maps.get(i).filter(|m| m.contains(addr))
}

/// The C library among the mappings (`libc.so.6`, or `libc-2.x.so` of
/// older glibc): where `malloc` is.
pub(crate) fn find_libc(maps: &[MapsEntry]) -> Option<&MapsEntry> {
    maps.iter().find(|m| {
        let name = std::path::Path::new(&m.path).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name == "libc.so.6" || (name.starts_with("libc-") && name.ends_with(".so"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_executable_mappings_in_address_order() {
        let text = "\
7f0000300000-7f0000301000 r-xp 00000000 fd:01 77 /tmp/my prog (deleted)
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 1234 /usr/bin/cat
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r-xp 00028000 103:02 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000400000-7f0000500000 rwxp 00000000 00:00 0
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";
        let maps = parse_maps(text);
        let paths: Vec<&str> = maps.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/usr/bin/cat", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/tmp/my prog (deleted)", "", "[vdso]"]
        );
        assert_eq!((maps[0].start, maps[0].offset, maps[0].inode), (0x55d0c0a01000, 0x1000, 1234));
        assert_eq!(maps[1].dev, libc::makedev(0x103, 2));
        assert!(maps[0].is_file() && !maps[3].is_file() && !maps[4].is_file());
        assert_eq!(maps[2].clean_path(), "/tmp/my prog");
        assert_eq!(find_mapping(&maps, 0x7f0000100010).map(|m| m.inode), Some(99));
        assert_eq!(find_mapping(&maps, 0x7f0000200000), None);
        assert_eq!(find_mapping(&maps, 0x10), None);
    }

    #[test]
    fn finds_libc() {
        let maps = parse_maps(
            "\
7f00-7f01 r-xp 00000000 fd:01 1 /usr/lib/x86_64-linux-gnu/libm.so.6
7f02-7f03 r-xp 00028000 fd:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
",
        );
        assert_eq!(find_libc(&maps).map(|m| m.path.as_str()), Some("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(find_libc(&parse_maps("7f00-7f01 r-xp 0 fd:01 1 /bin/busybox\n")).is_none());
    }
}
