//! Directories that `watch` makes on its way to a path, and takes back when
//! its start is refused after all.
//!
//! An operator whose `watch` was refused should find the machine as it was:
//! no empty output directory, no half-made `/run/stackwatch`. Most refusals
//! are caught by checks that create nothing ([`check_creatable`]); what can
//! only fail later (a race, a full disk) is undone by [`CreatedDirs`], which
//! removes the directories it made, deepest first, unless told to keep them.
//! Removal uses `rmdir`, so a directory something else has put a file into
//! meanwhile is never removed.

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// Directories created by [`create_dir_all`], removed on drop unless kept.
#[derive(Debug)]
#[must_use = "dropping it removes the directories it created"]
pub(crate) struct CreatedDirs {
    /// Outermost first.
    dirs: Vec<PathBuf>,
}

impl CreatedDirs {
    /// Keeps the directories: the start succeeded.
    pub(crate) fn keep(mut self) {
        self.dirs.clear();
    }

    /// The directories created, outermost first.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // Not empty (or gone): leave it and its parents alone.
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// The missing directories on the way to `dir`, outermost first, and the
/// deepest ancestor that exists.
fn missing_ancestors(dir: &Path) -> io::Result<(Vec<PathBuf>, PathBuf)> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match std::fs::symlink_metadata(current) {
            Ok(_) => break,
            // ENOTDIR: an ancestor is a file; the walk up finds it.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                missing.push(current.to_owned());
            }
            Err(e) => return Err(e),
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => {
                current = Path::new(".");
                break;
            }
        }
    }
    missing.reverse();
    Ok((missing, current.to_owned()))
}

/// Creates `dir` and its missing parents with `mode` (like `mkdir -p -m`),
/// remembering which ones it made.
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> io::Result<CreatedDirs> {
    let (missing, _) = missing_ancestors(dir)?;
    let created = CreatedDirs { dirs: missing };
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    Ok(created)
}

/// Why `dir`, which does not exist, could not be created now; `Ok` when it
/// could. Creates nothing: the deepest existing ancestor must be a
/// directory this process may add entries to (`access(2)`, which honours
/// read-only mounts).
pub(crate) fn check_creatable(dir: &Path) -> Result<(), String> {
    let (_, ancestor) = missing_ancestors(dir).map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&ancestor).map_err(|e| format!("cannot inspect `{}`: {e}", ancestor.display()))?;
    if !meta.is_dir() {
        return Err(format!("`{}` is not a directory", ancestor.display()));
    }
    let c = std::ffi::CString::new(ancestor.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("`{}` contains a NUL byte", ancestor.display()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!("`{}` is not writable: {}", ancestor.display(), io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn created_directories_are_taken_back_unless_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        let created = create_dir_all(&deep, 0o750).unwrap();
        assert_eq!(created.paths(), [tmp.path().join("a"), tmp.path().join("a/b"), deep.clone()]);
        assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o750);
        drop(created);
        assert!(!tmp.path().join("a").exists());

        let kept = create_dir_all(&deep, 0o700).unwrap();
        kept.keep();
        assert!(deep.is_dir());
        // Already there: nothing is created, so nothing is taken back.
        let again = create_dir_all(&deep, 0o700).unwrap();
        assert!(again.paths().is_empty());
        drop(again);
        assert!(deep.is_dir());
    }

    #[test]
    fn a_directory_that_gained_a_file_is_not_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let created = create_dir_all(&tmp.path().join("a/b"), 0o750).unwrap();
        std::fs::write(tmp.path().join("a/someone-elses"), b"x").unwrap();
        drop(created);
        assert!(!tmp.path().join("a/b").exists());
        assert!(tmp.path().join("a/someone-elses").exists());
    }

    #[test]
    fn creatable_is_checked_without_creating() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(check_creatable(&tmp.path().join("x/y")), Ok(()));
        assert!(!tmp.path().join("x").exists());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_creatable(&file.join("sub/dir")).unwrap_err();
        assert_eq!(err, format!("`{}` is not a directory", file.display()));
    }
}
