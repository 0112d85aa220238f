//! An open file and its identity. Held, the file stays readable (through
//! `/proc/self/fd`) after it is deleted, after the process that mapped it
//! exits, and whatever mount namespace it lives in; its key tells a file
//! rewritten in place, or a recycled inode number, from the one opened.

use std::{fs::File, io, os::unix::fs::MetadataExt as _, path::PathBuf};

/// A file by device and inode, as `/proc/<pid>/maps` and `stat` identify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

/// A file's identity and version: a recycled inode number, or a file
/// rewritten in place, gets a different key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub id: FileId,
    pub size: u64,
    pub mtime: (i64, i64),
}

impl FileKey {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
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
pub(crate) struct PinnedFile {
    file: File,
    pub key: FileKey,
}

impl PinnedFile {
    pub(crate) fn from_file(file: File) -> io::Result<Self> {
        let key = FileKey::of(&file.metadata()?);
        Ok(Self { file, key })
    }

    /// A path that reopens this very file from this process.
    pub(crate) fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}
