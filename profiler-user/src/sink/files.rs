//! Atomic, never-clobbering file creation inside one output directory.
//!
//! `stackwatch` usually runs as root and often writes into directories other
//! users can write to (the current directory under `sudo`, a shared
//! `/var/lib/stackwatch`), so every file goes through the same careful path:
//! the directory is opened once and everything below is relative to that
//! descriptor (no path re-resolution between steps); the data goes to an
//! unnamed file (`O_TMPFILE`) in that directory; the mode is set with
//! `fchmod` so the umask cannot widen or narrow it; the data is fsynced; and
//! the file is given its name with `linkat`, which fails rather than replace
//! an existing file. Until that link the file has no name at all, so a
//! process killed mid-write (SIGKILL, OOM, power loss) leaves nothing behind:
//! the kernel frees the unnamed inode.
//!
//! Filesystems without `O_TMPFILE` (some network and FUSE filesystems) get
//! the older path: a hidden temporary name created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` (a planted symlink or file makes
//! creation fail instead of being followed or reused), renamed into place
//! with `renameat2(RENAME_NOREPLACE)` (or `link` + `unlink`). Any failure
//! removes that temporary file, but a killed process cannot; such leftovers
//! are recognised by their name (`.<final name>.<pid>.<hex>.tmp`) and removed
//! once they are old by [`sweep_stale_temporaries`]. Either way a reader
//! never sees a partial file under a final name.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};

/// Mode of every output file: readable by the owner's group (e.g. `adm` on a
/// shared host), never by everyone, since stacks can reveal what a process does.
pub(crate) const FILE_MODE: libc::mode_t = 0o640;

/// How many temporary names to try before giving up; collisions only happen
/// when something else creates files with our naming scheme.
const TEMP_ATTEMPTS: u32 = 16;

/// An output directory, opened once; all files are created relative to it.
#[derive(Debug)]
pub(crate) struct OutputDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutputDir {
    /// Opens `path` (following a symlink to the directory itself: operators
    /// point `--output-dir` at symlinked volumes on purpose).
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(anyhow::Error::new)
            .with_context(|| cannot_write(path))?;
        Ok(Self { fd: OwnedFd::from(file), path: path.to_owned() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the directory's write lock (`flock` on its descriptor, released
    /// when this `OutputDir` is dropped), so stackwatch processes writing
    /// into one directory pick their names one after the other: two captures
    /// of the same name and second would otherwise both find the same suffix
    /// free, and one would lose the race for every file. Waits at most
    /// `wait`: anyone who can read the directory can hold such a lock, so
    /// past that (or where locks are unsupported) the write goes ahead
    /// unlocked, where a lost race fails a file rather than replace one.
    /// Returns whether the lock is held.
    pub(crate) fn lock(&self, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        loop {
            // SAFETY: flock on a directory fd we own.
            if unsafe { libc::flock(self.fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return true;
            }
            let err = io::Error::last_os_error();
            let busy = matches!(err.raw_os_error(), Some(libc::EWOULDBLOCK) | Some(libc::EINTR));
            if !busy || std::time::Instant::now() >= deadline {
                log::warn!(
                    "writing into `{}` without its lock ({}); a capture named like another written at the same \
                     moment may lose files",
                    self.path.display(),
                    if busy {
                        format!("still held by another process after {}", humantime::format_duration(wait))
                    } else {
                        err.to_string()
                    }
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether anything (including a dangling symlink) has this name.
    pub(crate) fn exists(&self, name: &str) -> anyhow::Result<bool> {
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
    pub(crate) fn write_file(&self, name: &str, contents: &[u8], owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
        let final_path = self.path.join(name);
        let final_c = file_name_cstring(name)?;
        match self.create_unnamed() {
            Ok(file) => {
                fill(&file, contents, owner, &final_path)
                    .with_context(|| format!("failed to write `{}`", final_path.display()))?;
                match link_unnamed(&file, &self.fd, &final_c) {
                    Ok(()) => return Ok(final_path),
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(anyhow::Error::new(err))
                            .with_context(|| format!("failed to move `{}` into place", final_path.display()));
                    }
                    // No CAP_DAC_READ_SEARCH and no /proc: write it again the old way.
                    Err(err) => {
                        log::debug!(
                            "cannot link an unnamed file into `{}` ({err}); using a named temporary",
                            self.path.display()
                        );
                    }
                }
            }
            Err(err) if tmpfile_unsupported(&err) => {}
            Err(err) => return Err(anyhow::Error::new(err)).with_context(|| cannot_write(&self.path)),
        }
        self.write_named(name, &final_c, contents, owner)
    }

    /// The fallback of [`OutputDir::write_file`]: a hidden temporary name,
    /// renamed into place.
    fn write_named(
        &self,
        name: &str,
        final_c: &CString,
        contents: &[u8],
        owner: Option<(u32, u32)>,
    ) -> anyhow::Result<PathBuf> {
        let final_path = self.path.join(name);
        let (temp, file) = self.create_temp(name)?;
        fill(&file, contents, owner, &final_path)
            .with_context(|| format!("failed to write `{}`", final_path.display()))?;
        drop(file);
        self.publish(&temp.name, final_c)
            .with_context(|| format!("failed to move `{}` into place", final_path.display()))?;
        temp.disarm();
        Ok(final_path)
    }

    /// An unnamed regular file in the directory, for writing.
    fn create_unnamed(&self) -> io::Result<File> {
        #[cfg(test)]
        if tests::no_tmpfile() {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let flags = libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC;
        // SAFETY: valid directory fd and NUL-terminated name (`.`, the
        // directory itself); the mode is the variadic third argument.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c".".as_ptr(), flags, FILE_MODE as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
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
    pub(crate) fn sync(&self) -> anyhow::Result<()> {
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

/// Whether `openat(O_TMPFILE)` failed because the kernel or the filesystem
/// lacks it (rather than, say, for permissions).
fn tmpfile_unsupported(err: &io::Error) -> bool {
    // EISDIR: a kernel older than 3.11 that took O_TMPFILE for O_DIRECTORY.
    matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL))
}

/// Gives the unnamed file `file` the name `name` in `dir`; fails with
/// `AlreadyExists` when the name is taken (link never replaces).
fn link_unnamed(file: &File, dir: &OwnedFd, name: &CString) -> io::Result<()> {
    // SAFETY: valid descriptors, an empty path with AT_EMPTY_PATH, and a
    // NUL-terminated name.
    let rc =
        unsafe { libc::linkat(file.as_raw_fd(), c"".as_ptr(), dir.as_raw_fd(), name.as_ptr(), libc::AT_EMPTY_PATH) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) => Err(already_exists()),
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (before Linux 6.10); the
        // descriptor's /proc link does not.
        Some(libc::ENOENT | libc::EPERM | libc::EINVAL) => link_via_proc(file, dir, name),
        _ => Err(err),
    }
}

/// [`link_unnamed`] through `/proc/self/fd/N`, which needs no capability.
fn link_via_proc(file: &File, dir: &OwnedFd, name: &CString) -> io::Result<()> {
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated paths and a valid directory descriptor.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), dir.as_raw_fd(), name.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    Err(if err.raw_os_error() == Some(libc::EEXIST) { already_exists() } else { err })
}

/// How old a temporary file of ours must be before a sweep removes it.
/// Writing one takes a single `write` and `fsync`, so anything this old
/// belongs to a writer that died.
pub(crate) const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(10 * 60);

/// Whether `name` is a temporary name of ours: `.<final>.<pid>.<hex>.tmp`
/// where `<final>` is an output file name (see `retention::parse_name`).
fn is_our_temporary(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { return false };
    let mut parts = inner.rsplitn(3, '.');
    let (Some(nonce), Some(pid), Some(final_name)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !nonce.is_empty()
        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && super::retention::parse_name(final_name).is_some()
}

/// Removes temporary files of ours older than `min_age` from `dir`: left by
/// a writer killed on a filesystem without `O_TMPFILE`. Only regular files
/// named the way [`OutputDir::write_file`] names its temporaries are
/// touched; symlinks are never followed. Returns the names removed.
pub(crate) fn sweep_stale_temporaries(dir: &Path, min_age: Duration) -> anyhow::Result<Vec<String>> {
    let out = OutputDir::open(dir)?;
    let listing = Path::new("/proc/self/fd").join(out.fd.as_raw_fd().to_string());
    let entries = std::fs::read_dir(&listing)
        .or_else(|_| std::fs::read_dir(dir))
        .with_context(|| format!("cannot list output directory `{}`", dir.display()))?;
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !is_our_temporary(&name) {
            continue;
        }
        let c_name = file_name_cstring(&name)?;
        // SAFETY: `stat` is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory fd, NUL-terminated name, writable buffer.
        let rc = unsafe { libc::fstatat(out.fd.as_raw_fd(), c_name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        let modified = UNIX_EPOCH + Duration::from_secs(u64::try_from(st.st_mtime).unwrap_or(0));
        if now.duration_since(modified).unwrap_or_default() < min_age {
            continue;
        }
        // SAFETY: as above; unlinkat removes the name, never a symlink's target.
        if unsafe { libc::unlinkat(out.fd.as_raw_fd(), c_name.as_ptr(), 0) } == 0 {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// [`sweep_stale_temporaries`] of files older than [`STALE_TEMPORARY_AGE`],
/// logging what it removed. Housekeeping: a failure is logged, not returned.
pub(crate) fn sweep_and_log(dir: &Path) {
    match sweep_stale_temporaries(dir, STALE_TEMPORARY_AGE) {
        Ok(removed) if !removed.is_empty() => log::info!(
            "removed {} stale temporary file(s) left in `{}` by a writer that was killed: {}",
            removed.len(),
            dir.display(),
            removed.join(" ")
        ),
        Ok(_) => {}
        Err(e) => log::warn!("could not look for stale temporary files in `{}`: {e:#}", dir.display()),
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
    #[cfg(test)]
    tests::pause_point();
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

    /// The name libtest knows the test `name` of this module by.
    fn this_module_test(name: &str) -> String {
        crate::sys::child_test_name(module_path!(), name)
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
        for (key, value) in env {
            cmd.env(key, value);
        }
        if as_nobody {
            // std drops supplementary groups itself when root sets a uid.
            cmd.uid(65534).gid(65534);
        }
        crate::sys::run_child_test_with(cmd, test);
    }

    thread_local! {
        /// Makes `create_unnamed` fail as on a filesystem without O_TMPFILE.
        static NO_TMPFILE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    pub(super) fn no_tmpfile() -> bool {
        NO_TMPFILE.with(std::cell::Cell::get) || std::env::var_os("STACKWATCH_TEST_NO_TMPFILE").is_some()
    }

    #[test]
    fn the_named_fallback_is_atomic_and_never_clobbers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        NO_TMPFILE.with(|f| f.set(true));
        let written = dir.write_file("a.svg", b"hello", None);
        std::fs::write(tmp.path().join("taken.svg"), b"precious").unwrap();
        let refused = dir.write_file("taken.svg", b"new", None);
        NO_TMPFILE.with(|f| f.set(false));
        let path = written.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
        assert!(format!("{:#}", refused.unwrap_err()).contains("already exists"));
        assert_eq!(std::fs::read(tmp.path().join("taken.svg")).unwrap(), b"precious");
        assert_eq!(entries(tmp.path()), ["a.svg", "taken.svg"], "no temporary file may remain");
    }

    #[test]
    fn an_unnamed_file_is_linked_through_proc_without_clobbering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("taken.svg"), b"precious").unwrap();
        let file = dir.create_unnamed().unwrap();
        fill(&file, b"data", None, &tmp.path().join("new.svg")).unwrap();
        let taken = link_via_proc(&file, &dir.fd, &file_name_cstring("taken.svg").unwrap()).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AlreadyExists);
        link_via_proc(&file, &dir.fd, &file_name_cstring("new.svg").unwrap()).unwrap();
        drop(file);
        assert_eq!(std::fs::read(tmp.path().join("new.svg")).unwrap(), b"data");
        assert_eq!(std::fs::read(tmp.path().join("taken.svg")).unwrap(), b"precious");
        assert_eq!(entries(tmp.path()), ["new.svg", "taken.svg"]);
    }

    #[test]
    fn a_killed_writer_on_the_named_fallback_leaves_a_temporary_the_sweep_removes() {
        let out = tempfile::tempdir().unwrap();
        kill_paused_writer(out.path(), true);
        let left = entries(out.path());
        assert!(left.len() == 1 && is_our_temporary(&left[0]), "{left:?}");
        // Young: it could be a live writer's.
        assert!(sweep_stale_temporaries(out.path(), STALE_TEMPORARY_AGE).unwrap().is_empty());
        assert_eq!(sweep_stale_temporaries(out.path(), Duration::ZERO).unwrap(), left);
        assert!(entries(out.path()).is_empty());
    }

    fn set_age(path: &Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn the_sweep_removes_only_old_temporaries_of_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let stale = ".host-cpu-20261126T123000Z.svg.1234.abc.tmp";
        let young = ".host-cpu-20261126T123000Z.pb.gz.1234.abd.tmp";
        let others = [
            ".notes.tmp",
            ".stranger.svg.1.a.tmp",
            "host-cpu-20261126T123000Z.svg",
            ".host-cpu-20261126T123000Z.svg.x1.abc.tmp",
            "notes.txt",
        ];
        for name in [stale, young].iter().chain(&others) {
            std::fs::write(tmp.path().join(name), b"x").unwrap();
        }
        for name in [stale].iter().chain(&others) {
            set_age(&tmp.path().join(name), hour);
        }
        // Our names, but not regular files: a symlink (never followed) and a directory.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        set_age(&victim, hour);
        let link = ".host-capture-20261126T123000Z.json.7.1.tmp";
        std::os::unix::fs::symlink(&victim, tmp.path().join(link)).unwrap();
        let subdir = ".host-cpu-20261126T123000Z.folded.7.2.tmp";
        std::fs::create_dir(tmp.path().join(subdir)).unwrap();

        let removed = sweep_stale_temporaries(tmp.path(), STALE_TEMPORARY_AGE).unwrap();
        assert_eq!(removed, [stale]);
        let mut expected: Vec<&str> = others.iter().copied().chain([young, link, subdir, "victim"]).collect();
        expected.sort_unstable();
        assert_eq!(entries(tmp.path()), expected);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn recognises_only_our_temporary_names() {
        assert!(is_our_temporary(".api-21181-cpu-20261126T123000Z.pb.gz.4242.1f2e3d.tmp"));
        assert!(is_our_temporary(".host-capture-20261126T123000Z-2.json.1.0.tmp"));
        assert!(!is_our_temporary("api-21181-cpu-20261126T123000Z.pb.gz.4242.1f2e3d.tmp"));
        assert!(!is_our_temporary(".api-21181-cpu-20261126T123000Z.pb.gz.tmp"));
        assert!(!is_our_temporary(".api-21181-cpu-20261126T123000Z.pb.gz.42x.1f.tmp"));
        assert!(!is_our_temporary(".api-21181-cpu-20261126T123000Z.pb.gz.42.xyz.tmp"));
        assert!(!is_our_temporary(".vimrc.1.2.tmp"));
    }

    /// In a child started with `STACKWATCH_TEST_PAUSE=DIR`, a write stops
    /// once its bytes are on disk but not yet in place, says so by creating
    /// `DIR/paused`, and waits to be killed.
    pub(super) fn pause_point() {
        let Some(dir) = std::env::var_os("STACKWATCH_TEST_PAUSE") else { return };
        std::fs::write(Path::new(&dir).join("paused"), b"").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(600));
    }

    /// Runs [`child_paused_write`] writing into `out` (through the named
    /// fallback when `named`), and SIGKILLs it once its bytes are written.
    fn kill_paused_writer(out: &Path, named: bool) {
        use std::time::Instant;
        let signal = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", &this_module_test("child_paused_write"), "--ignored", "--nocapture"])
            .args(["--test-threads=1"])
            .env("STACKWATCH_TEST_DIR", out)
            .env("STACKWATCH_TEST_PAUSE", signal.path())
            .stdout(std::process::Stdio::null());
        if named {
            cmd.env("STACKWATCH_TEST_NO_TMPFILE", "1");
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !signal.path().join("paused").exists() {
            assert!(child.try_wait().unwrap().is_none(), "the child exited before pausing");
            assert!(Instant::now() < deadline, "the child never reached the pause point");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL: no destructor, no cleanup code of ours runs.
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_writer_killed_mid_write_leaves_nothing_behind() {
        let out = tempfile::tempdir().unwrap();
        kill_paused_writer(out.path(), false);
        assert_eq!(entries(out.path()), Vec::<String>::new(), "a killed writer must leave nothing behind");
    }

    #[test]
    #[ignore = "run by a_writer_killed_mid_write_leaves_nothing_behind in a child process"]
    fn child_paused_write() {
        let dir = std::env::var_os("STACKWATCH_TEST_DIR").expect("STACKWATCH_TEST_DIR");
        let out = OutputDir::open(Path::new(&dir)).unwrap();
        out.write_file("host-cpu-20261126T123000Z.svg", &vec![b'x'; 1 << 20], None).unwrap();
        panic!("the write was not paused");
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
        run_child(&this_module_test("child_mode_under_umask"), &[("STACKWATCH_TEST_DIR", tmp.path())], false);
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
            run_child(&this_module_test("child_unwritable_dir"), &[("STACKWATCH_TEST_DIR", &target)], true);
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
