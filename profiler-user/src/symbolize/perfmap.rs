//! JIT symbol maps (`/tmp/perf-<pid>.map`), the interface JIT runtimes use
//! to name generated code for profilers: `node --perf-basic-prof`, Java
//! perf-map agents, Python 3.12's `-X perf`, .NET's `DOTNET_PerfMapEnabled`.
//!
//! Each line is `START SIZE NAME` (hex, with or without `0x`). The file
//! lives in the process's own `/tmp`, so it is read through
//! `/proc/<pid>/root`, and it is named after the pid the process has in its
//! own pid namespace (`NSpid`), which differs from the host's in a
//! container. Code can be freed and its addresses reused, so when entries
//! overlap the one written last wins.

use std::{
    fs::File,
    io::{self, Read as _, Seek as _},
    path::PathBuf,
};

/// Bytes read from one map at most: a runaway JIT must not exhaust memory.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The path of `pid`'s perf map as seen from the host, given the pid it has
/// in its own namespace.
pub(super) fn perf_map_path(pid: crate::ids::Pid, ns_pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns_pid}.map"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    /// Line number, so later definitions win.
    seq: u32,
    name: Box<str>,
}

/// A parsed perf map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PerfMap {
    /// Sorted by start.
    entries: Vec<Entry>,
    /// The largest entry size, to bound the backwards search of `find`.
    max_len: u64,
}

impl PerfMap {
    pub(super) fn parse(text: &str) -> Self {
        let mut entries: Vec<Entry> = text
            .lines()
            .enumerate()
            .filter_map(|(seq, line)| {
                let mut parts = line.trim_end().splitn(3, ' ');
                let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?)?;
                let name = parts.next()?.trim();
                (size > 0 && !name.is_empty()).then(|| Entry {
                    start,
                    end: start.saturating_add(size),
                    seq: seq as u32,
                    name: name.into(),
                })
            })
            .collect();
        entries.sort_by_key(|e| (e.start, e.seq));
        let max_len = entries.iter().map(|e| e.end - e.start).max().unwrap_or(0);
        Self { entries, max_len }
    }

    /// Reads a whole map from `file` (from its start, whatever its offset).
    pub(super) fn read(file: &mut File) -> io::Result<Self> {
        file.rewind()?;
        let mut text = String::new();
        file.take(MAX_BYTES).read_to_string(&mut text)?;
        Ok(Self::parse(&text))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the code at `addr`: of all entries covering it, the one
    /// defined last.
    pub(super) fn find(&self, addr: u64) -> Option<&str> {
        let upto = self.entries.partition_point(|e| e.start <= addr);
        self.entries[..upto]
            .iter()
            .rev()
            .take_while(|e| addr - e.start < self.max_len)
            .filter(|e| addr < e.end)
            .max_by_key(|e| e.seq)
            .map(|e| &*e.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Pid;

    #[test]
    fn finds_names_and_prefers_later_definitions() {
        let map = PerfMap::parse(
            "\
7f1000 40 JS:*hot /app/server.js:12:20
0x7f2000 0x100 LazyCompile:~main /app/server.js:1:1
7f1020 10 Builtin:Reused
not a line
7f3000 0 empty
7f4000 8
7f5000 10 py::compute:/srv/app.py
",
        );
        assert_eq!(map.len(), 4);
        assert_eq!(map.find(0x7f1000), Some("JS:*hot /app/server.js:12:20"));
        assert_eq!(map.find(0x7f1025), Some("Builtin:Reused"));
        assert_eq!(map.find(0x7f1035), Some("JS:*hot /app/server.js:12:20"));
        assert_eq!(map.find(0x7f1040), None);
        assert_eq!(map.find(0x7f20ff), Some("LazyCompile:~main /app/server.js:1:1"));
        assert_eq!(map.find(0x7f5004), Some("py::compute:/srv/app.py"));
        assert_eq!(map.find(0x10), None);
        assert_eq!(PerfMap::parse("").len(), 0);
    }

    #[test]
    fn reads_from_the_start_of_a_file() {
        let mut file = tempfile::tempfile().expect("tempfile");
        std::io::Write::write_all(&mut file, b"1000 10 a\n2000 10 b\n").expect("write");
        let map = PerfMap::read(&mut file).expect("read");
        assert_eq!((map.find(0x1001), map.find(0x2001)), (Some("a"), Some("b")));
        assert_eq!(perf_map_path(Pid::new(4242), 7), PathBuf::from("/proc/4242/root/tmp/perf-7.map"));
    }
}
