//! A process's executable mappings, from `/proc/<pid>/maps`, and the open
//! files that keep them readable.
//!
//! Files are opened through `/proc/<pid>/map_files/<start>-<end>`, which
//! names the very file the process mapped: it works for a binary deleted
//! after start (an upgrade in place) and for one in another mount namespace
//! (a container) whose path means nothing, or something else, on the host.
//! Where `map_files` is not readable, the path is tried inside the
//! process's root (`/proc/<pid>/root`), then on the host, and the file is
//! only accepted if its device and inode are the ones the process mapped.

use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

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

    /// The mapped file's identity as the process mapped it.
    pub fn file_id(&self) -> FileId {
        FileId { dev: self.dev, inode: self.inode }
    }

    /// The path without the kernel's ` (deleted)` suffix.
    pub fn clean_path(&self) -> &str {
        self.path.strip_suffix(" (deleted)").unwrap_or(&self.path)
    }

    fn map_files_path(&self, pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end))
    }
}

/// Parses the executable lines of a `/proc/<pid>/maps` text (file-backed,
/// pseudo and anonymous), in address order.
pub fn parse_maps(text: &str) -> Vec<MapsEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(dev), Some(inode)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !perms.contains('x') {
            continue;
        }
        let path = fields.next().unwrap_or("").trim_start();
        let Some((start, end)) = range.split_once('-') else { continue };
        let Some((major, minor)) = dev.split_once(':') else { continue };
        let (Ok(start), Ok(end), Ok(offset), Ok(major), Ok(minor), Ok(inode)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        let dev = libc::makedev(major, minor);
        out.push(MapsEntry { start, end, offset, dev, inode, path: path.to_owned() });
    }
    out.sort_by_key(|m| m.start);
    out
}

/// The executable mappings of a live process; empty if it is gone.
pub fn read_maps(pid: u32) -> Option<Vec<MapsEntry>> {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).ok().map(|t| parse_maps(&t))
}

/// The mapping of `maps` (sorted by start) that holds `addr`.
pub fn find_mapping(maps: &[MapsEntry], addr: u64) -> Option<&MapsEntry> {
    let i = maps.partition_point(|m| m.start <= addr).checked_sub(1)?;
    maps.get(i).filter(|m| m.contains(addr))
}

/// A file as `/proc/<pid>/maps` identifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

/// A file's identity and version: a recycled inode number, or a file
/// rewritten in place, gets a different key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub id: FileId,
    pub size: u64,
    pub mtime: (i64, i64),
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            id: FileId { dev: meta.dev(), inode: meta.ino() },
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// An open mapped file. Holding it keeps the file readable (through
/// [`proc_path`](Self::proc_path)) after its process exits, after it is
/// deleted, and whatever mount namespace it lives in.
#[derive(Debug)]
pub struct PinnedFile {
    file: File,
    pub key: FileKey,
}

impl PinnedFile {
    pub fn from_file(file: File) -> io::Result<Self> {
        let key = FileKey::of(&file.metadata()?);
        Ok(Self { file, key })
    }

    /// A path that reopens this very file from this process.
    pub fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The current version of the file mapped at `entry` in `pid`, without
/// opening it (one `stat`).
pub fn mapped_file_key(pid: u32, entry: &MapsEntry) -> Option<FileKey> {
    let meta = std::fs::metadata(entry.map_files_path(pid)).ok()?;
    let key = FileKey::of(&meta);
    (key.id == entry.file_id()).then_some(key)
}

/// Opens the file mapped at `entry` in `pid` (see the module docs).
pub fn open_mapped_file(pid: u32, entry: &MapsEntry) -> Option<PinnedFile> {
    if let Some(pinned) = File::open(entry.map_files_path(pid)).ok().and_then(|f| PinnedFile::from_file(f).ok()) {
        return Some(pinned);
    }
    let path = Path::new(entry.clean_path());
    let in_root = Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path));
    let found = [in_root.as_path(), path]
        .into_iter()
        .filter_map(|p| File::open(p).ok().and_then(|f| PinnedFile::from_file(f).ok()))
        .find(|pinned| pinned.key.id == entry.file_id());
    found
}

/// The identity of a process's executable (`/proc/<pid>/exe`).
pub fn exe_key(pid: u32) -> Option<FileKey> {
    std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| FileKey::of(&m))
}

/// The pid a process has in its own (innermost) pid namespace: the last
/// field of `NSpid:` in `/proc/<pid>/status`. JIT runtimes name their perf
/// map after it.
pub fn ns_pid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// A process's start time (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`), which tells a process from a later one that reuses
/// its pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
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
    fn reads_ns_pid_and_start_time() {
        assert_eq!(ns_pid("Name:\tnode\nNSpid:\t4242\t17\nNgid:\t0\n"), Some(17));
        assert_eq!(ns_pid("Name:\tx\nNSpid:\t99\n"), Some(99));
        assert_eq!(ns_pid("Name:\tx\n"), None);
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn opens_own_mappings_through_map_files_or_path() {
        let me = std::process::id();
        let maps = read_maps(me).expect("own maps");
        let exe = maps.iter().find(|m| m.is_file()).expect("a file mapping");
        let pinned = open_mapped_file(me, exe).expect("open own executable");
        assert_eq!(pinned.key.id, exe.file_id());
        let again = File::open(pinned.proc_path()).expect("reopen through /proc/self/fd");
        assert_eq!(FileKey::of(&again.metadata().expect("stat")), pinned.key);
    }
}
