//! The open files that keep a process's mappings readable.
//!
//! Files are opened through `/proc/<pid>/map_files/<start>-<end>`, which
//! names the very file the process mapped: it works for a binary deleted
//! after start (an upgrade in place) and for one in another mount namespace
//! (a container) whose path means nothing, or something else, on the host.
//! Where `map_files` is not readable, the path is tried inside the
//! process's root (`/proc/<pid>/root`), then on the host, and the file is
//! only accepted if its device and inode are the ones the process mapped.

use std::{fs::File, path::Path};

use crate::ids::Pid;
use crate::procfs::{maps::MapsEntry, process};
use crate::sys::file::{FileKey, PinnedFile};

/// The current version of the file mapped at `entry` in `pid`, without
/// opening it (one `stat`).
pub(crate) fn mapped_file_key(pid: Pid, entry: &MapsEntry) -> Option<FileKey> {
    let meta = std::fs::metadata(entry.map_files_path(pid)).ok()?;
    let key = FileKey::of(&meta);
    (key.id == entry.file_id()).then_some(key)
}

/// Opens the file mapped at `entry` in `pid` (see the module docs).
pub(crate) fn open_mapped_file(pid: Pid, entry: &MapsEntry) -> Option<PinnedFile> {
    if let Some(pinned) = File::open(entry.map_files_path(pid)).ok().and_then(|f| PinnedFile::from_file(f).ok()) {
        return Some(pinned);
    }
    let path = Path::new(entry.clean_path());
    let in_root = process::in_root(pid, path);
    let found = [in_root.as_path(), path]
        .into_iter()
        .filter_map(|p| File::open(p).ok().and_then(|f| PinnedFile::from_file(f).ok()))
        .find(|pinned| pinned.key.id == entry.file_id());
    found
}

/// The identity of a process's executable (`/proc/<pid>/exe`).
pub(crate) fn exe_key(pid: Pid) -> Option<FileKey> {
    std::fs::metadata(process::exe_path(pid)).ok().map(|m| FileKey::of(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::maps::read_maps;

    #[test]
    fn opens_own_mappings_through_map_files_or_path() {
        let me = Pid::current();
        let maps = read_maps(me).expect("own maps");
        let exe = maps.iter().find(|m| m.is_file()).expect("a file mapping");
        let pinned = open_mapped_file(me, exe).expect("open own executable");
        assert_eq!(pinned.key.id, exe.file_id());
        let again = File::open(pinned.proc_path()).expect("reopen through /proc/self/fd");
        assert_eq!(FileKey::of(&again.metadata().expect("stat")), pinned.key);
    }
}
