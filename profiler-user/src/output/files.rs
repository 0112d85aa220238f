//! Atomic, never-clobbering file creation inside one output directory.
//!
//! `stackwatch` usually runs as root and often writes into directories other
//! users can write to (the current directory under `sudo`, a shared
//! `/var/lib/stackwatch`), so every file goes through the same careful path:
//! the directory is opened once and everything below is relative to that
//! descriptor (no path re-resolution between steps); the data goes to a hidden
//! temporary name created with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` (a planted
//! symlink or file makes creation fail instead of being followed or reused);
//! the mode is set with `fchmod` so the umask cannot widen or narrow it; the
//! data is fsynced; and the file is renamed into place with
//! `renameat2(RENAME_NOREPLACE)` (or `link` + `unlink` where the filesystem
//! lacks it), so an existing file is never replaced. Any failure removes the
//! temporary file: a reader never sees a partial file under a final name.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};

/// Mode of every output file: readable by the owner's group (e.g. `adm` on a
/// shared host), never by everyone, since stacks can reveal what a process does.
pub const FILE_MODE: libc::mode_t = 0o640;

/// How many temporary names to try before giving up; collisions only happen
/// when something else creates files with our naming scheme.
const TEMP_ATTEMPTS: u32 = 16;

/// An output directory, opened once; all files are created relative to it.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutputDir {
    /// Opens `path` (following a symlink to the directory itself: operators
    /// point `--output-dir` at symlinked volumes on purpose).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(anyhow::Error::new)
            .with_context(|| cannot_write(path))?;
        Ok(Self { fd: OwnedFd::from(file), path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything (including a dangling symlink) has this name.
    pub fn exists(&self, name: &str) -> anyhow::Result<bool> {
        let c_name = file_name_cstring(name)?;
        // SAFETY: `stat` is plain old data that fstatat fills in; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory fd, NUL-terminated name and a writable stat buffer.
        let rc = unsafe { libc::fstatat(self.fd.as_raw_fd(), c_name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            Ok(false)
        } else {
            Err(anyhow::Error::new(err))
                .with_context(|| format!("failed to check `{}`", self.path.join(name).display()))
        }
    }

    /// Writes `contents` to `name` atomically (see the module docs) and
    /// returns the full path. `owner` is applied with `fchown`; failing to
    /// hand the file over is logged, not fatal, because the data is still
    /// useful to root and losing a capture over it would be worse.
    pub fn write_file(&self, name: &str, contents: &[u8], owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
        let final_path = self.path.join(name);
        let final_c = file_name_cstring(name)?;
        let (temp, file) = self.create_temp(name)?;
        fill(&file, contents, owner, &final_path)
            .with_context(|| format!("failed to write `{}`", final_path.display()))?;
        drop(file);
        self.publish(&temp.name, &final_c)
            .with_context(|| format!("failed to move `{}` into place", final_path.display()))?;
        temp.disarm();
        Ok(final_path)
    }

    /// Like [`OutputDir::write_file`], but with a caller-chosen temporary
    /// name, so tests can plant things at exactly that name.
    #[cfg(test)]
    fn write_file_via(&self, temp_name: &str, name: &str, contents: &[u8]) -> anyhow::Result<PathBuf> {
        let final_path = self.path.join(name);
        let final_c = file_name_cstring(name)?;
        let temp_c = file_name_cstring(temp_name)?;
        let file = self.open_exclusive(&temp_c).with_context(|| cannot_write(&self.path))?;
        let temp = TempGuard { dir: &self.fd, name: temp_c, armed: true };
        fill(&file, contents, None, &final_path)?;
        drop(file);
        self.publish(&temp.name, &final_c)?;
        temp.disarm();
        Ok(final_path)
    }

    /// Makes the renames durable: without it a crash right after a capture
    /// could leave the directory without the new entries.
    pub fn sync(&self) -> anyhow::Result<()> {
        // SAFETY: fsync on a directory fd we own.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(anyhow::Error::new(io::Error::last_os_error()))
                .with_context(|| format!("failed to sync output directory `{}`", self.path.display()));
        }
        Ok(())
    }

    /// Creates a fresh hidden temporary file next to where `name` will go.
    /// The leading dot and `.tmp` ending keep it out of globs such as
    /// `*.pb.gz` while it is incomplete.
    fn create_temp(&self, name: &str) -> anyhow::Result<(TempGuard<'_>, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last_err = None;
        for _ in 0..TEMP_ATTEMPTS {
            let nonce = COUNTER.fetch_add(1, Ordering::Relaxed)
                ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos().into());
            let temp_name = format!(".{name}.{}.{nonce:x}.tmp", std::process::id());
            let temp_c = file_name_cstring(&temp_name)?;
            match self.open_exclusive(&temp_c) {
                Ok(file) => return Ok((TempGuard { dir: &self.fd, name: temp_c, armed: true }, file)),
                // Something already has that name (maybe a planted symlink):
                // never touch it, pick another name.
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => last_err = Some(err),
                Err(err) => return Err(anyhow::Error::new(err)).with_context(|| cannot_write(&self.path)),
            }
        }
        let err = last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST));
        Err(anyhow::Error::new(err)).with_context(|| cannot_write(&self.path))
    }

    fn open_exclusive(&self, name: &CString) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid directory fd and NUL-terminated name; the mode is
        // passed as the variadic third argument as openat(2) expects.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags, FILE_MODE as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Renames `temp` to `name` without ever replacing an existing `name`.
    fn publish(&self, temp: &CString, name: &CString) -> io::Result<()> {
        let dir = self.fd.as_raw_fd();
        // SAFETY: valid directory fd and NUL-terminated names. The raw
        // syscall avoids depending on a glibc new enough to wrap renameat2.
        let rc = unsafe {
            libc::syscall(libc::SYS_renameat2, dir, temp.as_ptr(), dir, name.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EEXIST) => Err(already_exists()),
            // Old kernels and some filesystems (NFS, overlayfs on old
            // kernels) lack renameat2 flags; link(2) fails on an existing
            // target too, so it keeps the no-clobber guarantee.
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                // SAFETY: as above.
                if unsafe { libc::linkat(dir, temp.as_ptr(), dir, name.as_ptr(), 0) } != 0 {
                    let err = io::Error::last_os_error();
                    return Err(if err.raw_os_error() == Some(libc::EEXIST) { already_exists() } else { err });
                }
                // SAFETY: as above. The temporary name is ours; a failure to
                // remove it only leaves a hidden duplicate behind.
                unsafe { libc::unlinkat(dir, temp.as_ptr(), 0) };
                Ok(())
            }
            _ => Err(err),
        }
    }
}

/// Sets ownership and mode, writes and fsyncs an open temporary file.
fn fill(file: &File, contents: &[u8], owner: Option<(u32, u32)>, final_path: &Path) -> anyhow::Result<()> {
    let fd = file.as_raw_fd();
    if let Some((uid, gid)) = owner {
        // SAFETY: fchown on an fd we own.
        if unsafe { libc::fchown(fd, uid, gid) } != 0 {
            log::warn!(
                "could not hand `{}` to uid {uid} gid {gid}: {}; it stays owned by the current user",
                final_path.display(),
                io::Error::last_os_error()
            );
        }
    }
    // After fchown: chown may clear mode bits, and this also undoes the umask.
    // SAFETY: fchmod on an fd we own.
    if unsafe { libc::fchmod(fd, FILE_MODE) } != 0 {
        return Err(anyhow::Error::new(io::Error::last_os_error())).context("failed to set the file mode");
    }
    let mut writer = file;
    writer.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Removes the temporary file on drop unless it was published.
struct TempGuard<'a> {
    dir: &'a OwnedFd,
    name: CString,
    armed: bool,
}

impl TempGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: valid directory fd and NUL-terminated name of a file we created.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
        }
    }
}

fn already_exists() -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, "a file of that name already exists; not overwriting it")
}

fn cannot_write(dir: &Path) -> String {
    format!("cannot write to output directory `{}`", dir.display())
}

/// A single path component as a C string; anything else is a bug in the
/// file namer, reported instead of creating files elsewhere.
fn file_name_cstring(name: &str) -> anyhow::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(anyhow!("invalid output file name `{name}`"));
    }
    CString::new(Path::new(name).as_os_str().as_bytes()).map_err(|_| anyhow!("invalid output file name `{name}`"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::process::Command;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Runs one `#[ignore]`d test of this binary in a child process (so
    /// process-wide state such as the umask or the uid can change safely),
    /// optionally as `nobody`, and asserts that it passed.
    fn run_child(test: &str, env: &[(&str, &Path)], as_nobody: bool) {
        use std::os::unix::process::CommandExt as _;
        let mut exe = std::env::current_exe().unwrap();
        // `nobody` may not reach the build directory (e.g. a checkout under
        // /root), so it runs a copy from a world-readable directory.
        let exe_dir = tempfile::tempdir().unwrap();
        if as_nobody {
            std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let copy = exe_dir.path().join("output-tests");
            std::fs::copy(&exe, &copy).unwrap();
            exe = copy;
        }
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"]);
        for (key, value) in env {
            cmd.env(key, value);
        }
        if as_nobody {
            // std drops supplementary groups itself when root sets a uid.
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test {test} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn writes_atomically_with_mode_0640() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        let path = dir.write_file("a.pb.gz", b"hello", None).unwrap();
        dir.sync().unwrap();
        assert_eq!(path, tmp.path().join("a.pb.gz"));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
        assert_eq!(entries(tmp.path()), ["a.pb.gz"], "no temporary file may remain");
    }

    #[test]
    fn mode_ignores_umask() {
        let tmp = tempfile::tempdir().unwrap();
        run_child("output::files::tests::child_mode_under_umask", &[("STACKWATCH_TEST_DIR", tmp.path())], false);
        let meta = std::fs::metadata(tmp.path().join("umask.svg")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    #[ignore = "run by mode_ignores_umask in a child process"]
    fn child_mode_under_umask() {
        let dir = std::env::var_os("STACKWATCH_TEST_DIR").expect("STACKWATCH_TEST_DIR");
        // SAFETY: umask has no preconditions; this process runs only this test.
        unsafe { libc::umask(0o077) };
        let out = OutputDir::open(Path::new(&dir)).unwrap();
        out.write_file("umask.svg", b"x", None).unwrap();
    }

    #[test]
    fn existing_target_is_not_clobbered() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("taken.svg"), b"precious").unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        let err = dir.write_file("taken.svg", b"new", None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("taken.svg") && msg.contains("already exists"), "{msg}");
        assert_eq!(std::fs::read(tmp.path().join("taken.svg")).unwrap(), b"precious");
        assert_eq!(entries(tmp.path()), ["taken.svg"], "the temporary file must be removed");
    }

    #[test]
    fn symlink_at_target_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("out.svg")).unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        assert!(dir.exists("out.svg").unwrap());
        assert!(dir.write_file("out.svg", b"evil", None).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(tmp.path().join("out.svg")).unwrap().file_type().is_symlink());
        assert_eq!(entries(tmp.path()), ["out.svg", "victim"]);
    }

    #[test]
    fn symlink_at_temp_name_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join(".out.svg.tmp")).unwrap();
        // A dangling one too: O_CREAT without O_EXCL would create its target.
        std::os::unix::fs::symlink(tmp.path().join("created"), tmp.path().join(".dangling.tmp")).unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        assert!(dir.write_file_via(".out.svg.tmp", "out.svg", b"evil").is_err());
        assert!(dir.write_file_via(".dangling.tmp", "out.svg", b"evil").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!tmp.path().join("created").exists());
        assert!(!tmp.path().join("out.svg").exists());
        // The real writer picks its own temporary names and still succeeds.
        dir.write_file("out.svg", b"fine", None).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("out.svg")).unwrap(), b"fine");
    }

    #[test]
    fn missing_dir_gives_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let msg = format!("{:#}", OutputDir::open(&missing).unwrap_err());
        assert_eq!(
            msg,
            format!("cannot write to output directory `{}`: No such file or directory (os error 2)", missing.display())
        );
    }

    #[test]
    fn unwritable_dir_gives_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("ro");
        std::fs::create_dir(&target).unwrap();
        if is_root() {
            // Root bypasses permission bits, so check as `nobody` in a child:
            // the directory is root's 0755, searchable but not writable.
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
            run_child("output::files::tests::child_unwritable_dir", &[("STACKWATCH_TEST_DIR", &target)], true);
        } else {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o555)).unwrap();
            check_unwritable(&target);
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert!(entries(&target).is_empty(), "no partial file may remain");
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), std::fs::metadata(tmp.path()).unwrap().uid());
    }

    #[test]
    #[ignore = "run by unwritable_dir_gives_clear_error in a child process"]
    fn child_unwritable_dir() {
        let dir = std::env::var_os("STACKWATCH_TEST_DIR").expect("STACKWATCH_TEST_DIR");
        check_unwritable(Path::new(&dir));
    }

    fn check_unwritable(target: &Path) {
        let dir = OutputDir::open(target).unwrap();
        let msg = format!("{:#}", dir.write_file("x.pb.gz", b"data", None).unwrap_err());
        assert_eq!(
            msg,
            format!("cannot write to output directory `{}`: Permission denied (os error 13)", target.display())
        );
    }

    #[test]
    fn owner_is_applied_when_possible() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        let (uid, gid) = if is_root() {
            (65534, 65534)
        } else {
            // SAFETY: getuid/getgid have no preconditions.
            unsafe { (libc::getuid(), libc::getgid()) }
        };
        let path = dir.write_file("owned.json", b"{}", Some((uid, gid))).unwrap();
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn rejects_names_with_slashes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        assert!(dir.write_file("../escape", b"x", None).is_err());
        assert!(dir.write_file("a/b", b"x", None).is_err());
        assert!(entries(tmp.path()).is_empty());
    }
}
