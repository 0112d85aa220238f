//! Finding a binary's separate debug file: the DWARF that distributions and
//! release pipelines strip out (`objcopy --only-keep-debug`) and ship in
//! `*-dbgsym`/`*-debuginfo` packages or keep on a symbol server mount.
//!
//! The search follows GDB's: first by build ID,
//! `<debug dir>/.build-id/ab/cdef….debug`; then by the `.gnu_debuglink`
//! name next to the binary, in its `.debug/` subdirectory, and under
//! `<debug dir>/<binary's dir>/`. A build-ID candidate must carry the same
//! build ID and a debuglink candidate the recorded CRC-32, so a stale or
//! foreign file is never used. Each location is tried inside the process's
//! own root first (a container ships its own debug packages) and then on
//! the host.
//!
//! What is read from the file depends on where it was found. From the
//! system's debug directories (`/usr/lib/debug`, `/lib/debug`: distribution
//! `-dbg`/`-dbgsym` packages, the host's or a container's) only the symbol
//! table is used: it names the static functions the stripped library hides,
//! which is what a profile needs, at the cost of reading a few hundred KiB.
//! Their DWARF is compressed and large (libc's inflates to 8.5 MiB for two
//! frames of a typical profile, 20 MiB of RSS and 50–100 ms), so its lines
//! and inlined frames are read only from directories the operator names in
//! `STACKWATCH_DEBUG_DIRS` (which may well be `/usr/lib/debug`) and from
//! debug files next to the binary (`.gnu_debuglink`), which belong to the
//! program being profiled. blazesym only follows debuglinks and only relative to a path
//! it can see, which a binary opened through `/proc` does not have; hence
//! this module.

use std::{
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
};

use super::elf::ElfInfo;
use crate::sys::file::PinnedFile;

/// Debug directories searched after the configured ones.
pub(crate) const DEFAULT_DEBUG_DIRS: &[&str] = &["/usr/lib/debug", "/lib/debug"];

/// Where to look, for one binary.
pub(crate) struct DebugSearch<'a> {
    /// The process's root (`/proc/<pid>/root`) while it is alive.
    pub process_root: Option<PathBuf>,
    /// The binary's path as the process sees it.
    pub binary_path: &'a str,
    /// Host directories configured by the operator, searched first.
    pub extra_dirs: &'a [PathBuf],
}

/// What a separate debug file is read for (see the module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DebugUse {
    /// DWARF: lines and inlined frames, with the symbol table.
    Full,
    /// The symbol table only.
    Symbols,
}

impl DebugSearch<'_> {
    /// Candidate paths, in order, each with what it must match and what it
    /// would be used for.
    fn candidates(&self, info: &ElfInfo) -> Vec<(PathBuf, Check, DebugUse)> {
        let mut roots: Vec<PathBuf> = self.process_root.iter().cloned().collect();
        roots.push(PathBuf::from("/"));
        let defaults: Vec<PathBuf> = DEFAULT_DEBUG_DIRS.iter().map(PathBuf::from).collect();
        // (root, debug dir, use) triples: configured dirs are host paths.
        let mut dirs: Vec<(PathBuf, &Path, DebugUse)> =
            self.extra_dirs.iter().map(|d| (PathBuf::from("/"), d.as_path(), DebugUse::Full)).collect();
        for root in &roots {
            dirs.extend(defaults.iter().map(|d| (root.clone(), d.as_path(), DebugUse::Symbols)));
        }
        let mut out = Vec::new();
        if let Some(id) = info.build_id.as_deref().filter(|id| id.len() >= 2) {
            let (first, rest) = (super::elf::hex(&id[..1]), super::elf::hex(&id[1..]));
            for (root, dir, use_) in &dirs {
                let path = under(root, &dir.join(".build-id").join(&first).join(format!("{rest}.debug")));
                out.push((path, Check::BuildId(id.to_vec()), *use_));
            }
        }
        if let Some((name, crc)) = &info.debuglink {
            let binary_dir = Path::new(self.binary_path).parent().unwrap_or(Path::new("/"));
            for root in &roots {
                out.push((under(root, &binary_dir.join(name)), Check::Crc(*crc), DebugUse::Full));
                out.push((under(root, &binary_dir.join(".debug").join(name)), Check::Crc(*crc), DebugUse::Full));
            }
            for (root, dir, use_) in &dirs {
                let nested = dir.join(binary_dir.strip_prefix("/").unwrap_or(binary_dir)).join(name);
                out.push((under(root, &nested), Check::Crc(*crc), *use_));
            }
        }
        out
    }

    /// Opens the first candidate that exists and matches.
    pub(crate) fn find(&self, info: &ElfInfo) -> Option<(PinnedFile, DebugUse)> {
        for (path, check, use_) in self.candidates(info) {
            let Ok(mut file) = File::open(&path) else { continue };
            if check.matches(&mut file) {
                tracing::debug!(
                    binary = self.binary_path,
                    debug_file = %path.display(),
                    read = ?use_,
                    "separate debug file found"
                );
                return PinnedFile::from_file(file).ok().map(|pin| (pin, use_));
            }
            tracing::debug!(binary = self.binary_path, candidate = %path.display(), "debug file does not match");
        }
        None
    }
}

/// `path` (absolute) resolved under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

enum Check {
    BuildId(Vec<u8>),
    Crc(u32),
}

impl Check {
    fn matches(&self, file: &mut File) -> bool {
        match self {
            Check::BuildId(id) => {
                // SAFETY: read-only private mapping; a concurrent truncation
                // could fault, the risk every ELF reader (blazesym too) takes.
                let Ok(map) = (unsafe { memmap2::Mmap::map(&*file) }) else { return false };
                ElfInfo::parse(&map).and_then(|i| i.build_id).as_deref() == Some(id.as_slice())
            }
            Check::Crc(crc) => {
                let mut hasher = crc32fast::Hasher::new();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => hasher.update(&buf[..n]),
                        Err(_) => return false,
                    }
                }
                hasher.finalize() == *crc
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(build_id: Option<&[u8]>, link: Option<(&str, u32)>) -> ElfInfo {
        ElfInfo {
            build_id: build_id.map(<[u8]>::to_vec),
            debuglink: link.map(|(n, c)| (n.to_owned(), c)),
            ..Default::default()
        }
    }

    #[test]
    fn candidate_order_follows_gdb() {
        let extra = [PathBuf::from("/srv/debug")];
        let search = DebugSearch {
            process_root: Some(PathBuf::from("/proc/42/root")),
            binary_path: "/opt/app/bin/app",
            extra_dirs: &extra,
        };
        let paths: Vec<String> = search
            .candidates(&info(Some(&[0xab, 0xcd, 0xef]), Some(("app.debug", 7))))
            .into_iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        assert_eq!(
            paths[..6],
            [
                "/srv/debug/.build-id/ab/cdef.debug",
                "/proc/42/root/usr/lib/debug/.build-id/ab/cdef.debug",
                "/proc/42/root/lib/debug/.build-id/ab/cdef.debug",
                "/usr/lib/debug/.build-id/ab/cdef.debug",
                "/lib/debug/.build-id/ab/cdef.debug",
                "/proc/42/root/opt/app/bin/app.debug",
            ]
        );
        assert!(paths.contains(&"/opt/app/bin/.debug/app.debug".to_owned()));
        assert!(paths.contains(&"/srv/debug/opt/app/bin/app.debug".to_owned()));
        assert!(paths.contains(&"/proc/42/root/usr/lib/debug/opt/app/bin/app.debug".to_owned()));
        assert!(search.candidates(&info(None, None)).is_empty());
        // Lines only from the operator's directories and the program's own
        // debuglink files; the system's debug packages give symbols.
        let uses: Vec<(String, DebugUse)> = search
            .candidates(&info(Some(&[0xab, 0xcd, 0xef]), Some(("app.debug", 7))))
            .into_iter()
            .map(|(p, _, u)| (p.display().to_string(), u))
            .collect();
        let use_of = |path: &str| uses.iter().find(|(p, _)| p == path).map(|(_, u)| *u);
        assert_eq!(use_of("/srv/debug/.build-id/ab/cdef.debug"), Some(DebugUse::Full));
        assert_eq!(use_of("/srv/debug/opt/app/bin/app.debug"), Some(DebugUse::Full));
        assert_eq!(use_of("/opt/app/bin/.debug/app.debug"), Some(DebugUse::Full));
        assert_eq!(use_of("/proc/42/root/usr/lib/debug/.build-id/ab/cdef.debug"), Some(DebugUse::Symbols));
        assert_eq!(use_of("/usr/lib/debug/.build-id/ab/cdef.debug"), Some(DebugUse::Symbols));
        assert_eq!(use_of("/lib/debug/opt/app/bin/app.debug"), Some(DebugUse::Symbols));
    }

    #[test]
    fn debuglink_candidate_must_match_crc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = b"pretend debug file";
        std::fs::write(dir.path().join("app.debug"), content).expect("write");
        let binary = dir.path().join("app");
        let binary = binary.to_str().expect("utf-8 path");
        let search = DebugSearch { process_root: None, binary_path: binary, extra_dirs: &[] };
        assert!(search.find(&info(None, Some(("app.debug", crc32fast::hash(content))))).is_some());
        assert!(search.find(&info(None, Some(("app.debug", 1)))).is_none());
        assert!(search.find(&info(None, Some(("missing.debug", 1)))).is_none());
    }
}
