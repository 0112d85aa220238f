//! The control FIFO and reply socket on disk: created, checked, removed.
//!
//! Both are only used when they are provably ours: the directory holding
//! them is ours (or root's) and writable by no one else; an existing path
//! that is a symlink, not a FIFO, someone else's FIFO or a FIFO other users
//! could open is refused. An existing FIFO is never adopted, not even our
//! own leftover: a descriptor opened on it earlier survives any `chmod` and
//! would reach the daemon, so the leftover is removed and a new inode made,
//! opened `O_NOFOLLOW` and checked through the descriptor. The open FIFO
//! carries an exclusive `flock`, so a second daemon on the same path is
//! refused instead of silently splitting the commands. [`ControlFifo::check`]
//! runs the same checks without creating anything, so `watch` can refuse a
//! start before it has made anything.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::control::socket_path;
use crate::sys::dirs::{self, CreatedDirs};
use crate::sys::euid;

/// The control FIFO, always created afresh, opened `O_RDWR|O_NONBLOCK` and
/// locked. Holding it open for writing too means the daemon never sees
/// end-of-file when a writer such as `echo` closes its end.
#[derive(Debug)]
pub(super) struct ControlFifo {
    path: PathBuf,
    fd: OwnedFd,
    /// (device, inode), to remove only our own FIFO at exit.
    id: (u64, u64),
    /// The directories made for it, removed with it when empty.
    _dirs: CreatedDirs,
}

impl ControlFifo {
    /// Checks, without creating or changing anything, that [`ControlFifo::open`]
    /// would accept `path` and its socket now: what it would refuse is
    /// refused here with the same message, so a refused start leaves
    /// nothing behind.
    pub(super) fn check(path: &Path) -> anyhow::Result<()> {
        let (dir, _) = split_path(path)?;
        if std::fs::symlink_metadata(dir).is_ok() {
            check_private_dir(dir)?;
        } else if let Err(reason) = dirs::check_creatable(dir) {
            bail!("cannot create control directory `{}`: {reason}; choose another --control path", dir.display());
        }
        let uid = euid();
        if let Some(meta) = lstat(path, "control path")? {
            check_existing(path, &meta, uid, Kind::Fifo)?;
            ensure_not_busy(path, &meta)?;
        }
        let socket = socket_path(path);
        if let Some(meta) = lstat(&socket, "socket path")? {
            check_existing(&socket, &meta, uid, Kind::Socket)?;
        }
        Ok(())
    }

    /// Creates the FIFO at `path` (mode 0600, in a 0700 directory created
    /// if missing), refusing anything that is not provably ours.
    ///
    /// An existing FIFO is never reused, even our own: a process that opened
    /// it earlier (while its mode was wider, or as root) keeps that
    /// descriptor through any `chmod` and could send commands through it or
    /// read ours. A leftover of ours that no daemon holds is removed and a
    /// new inode made; the descriptor is then checked to be that new inode.
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let (dir, _) = split_path(path)?;
        let dirs = ensure_private_dir(dir)?;
        let uid = euid();
        if let Some(meta) = lstat(path, "control path")? {
            check_existing(path, &meta, uid, Kind::Fifo)?;
            ensure_not_busy(path, &meta)?;
            remove_stale(path, (meta.dev(), meta.ino()))?;
        }
        make_fifo(path)?;
        let fd = open_fifo(path)?;
        lock(&fd, path)?;
        let file = File::from(fd);
        let meta = file.metadata().with_context(|| format!("cannot inspect control FIFO `{}`", path.display()))?;
        let id = (meta.dev(), meta.ino());
        // Only this user and root can add entries to the private directory,
        // so this is the FIFO just made; checked anyway before it is trusted:
        // the name must still lead to this descriptor's inode, and nobody
        // but its owner can ever have opened it.
        let fresh = meta.file_type().is_fifo()
            && meta.uid() == uid
            && meta.mode() & 0o077 == 0
            && meta.nlink() == 1
            && path_id(path) == Some(id);
        if !fresh {
            bail!(
                "control path `{}` was replaced while it was being created; is another program using it? \
                 choose another --control path",
                path.display()
            );
        }
        let fd = OwnedFd::from(file);
        // The umask may have narrowed the mode given to mkfifo.
        // SAFETY: fchmod on a descriptor we own.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("cannot set the mode of control FIFO `{}`", path.display()));
        }
        Ok(Self { path: path.to_owned(), fd, id, _dirs: dirs })
    }

    /// A duplicate of the (nonblocking, locked) descriptor, for the reader task.
    pub(super) fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Removes the FIFO if the path still names it.
    pub(super) fn remove(&self) {
        remove_if_same(&self.path, self.id);
    }
}

/// `lstat`, with "not there" as `None`.
fn lstat(path: &Path, what: &str) -> anyhow::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {what} `{}`", path.display())),
    }
}

/// Refuses a FIFO of ours that a running daemon holds (its `flock`).
fn ensure_not_busy(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    let fd = open_fifo(path)?;
    let file = File::from(fd);
    let now = file.metadata().with_context(|| format!("cannot inspect control FIFO `{}`", path.display()))?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
        bail!(
            "control path `{}` changed while it was being checked; is another program using it? \
             choose another --control path",
            path.display()
        );
    }
    lock(&OwnedFd::from(file), path)
}

/// Takes the exclusive lock that marks a control FIFO as in use.
fn lock(fd: &OwnedFd, path: &Path) -> anyhow::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        bail!(
            "another `stackwatch watch` is already using the control FIFO `{}`; stop it first or choose another --control path",
            path.display()
        );
    }
    Err(err).with_context(|| format!("cannot lock control FIFO `{}`", path.display()))
}

/// Removes a leftover FIFO of ours, if the path still names it.
fn remove_stale(path: &Path, id: (u64, u64)) -> anyhow::Result<()> {
    if path_id(path) != Some(id) {
        bail!(
            "control path `{}` changed while it was being checked; is another program using it? \
             choose another --control path",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the leftover control FIFO `{}`", path.display()))?;
    tracing::debug!("removed the leftover control FIFO `{}`; making a new one", path.display());
    Ok(())
}

/// Prepares `path` for binding the reply socket: its directory must be
/// private (see [`ControlFifo::open`]), and a leftover socket of ours is
/// removed (the FIFO lock proves no live daemon owns it). Anything else at
/// the path is refused.
pub(super) fn prepare_socket_path(path: &Path) -> anyhow::Result<()> {
    let (dir, _) = split_path(path)?;
    check_private_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            check_existing(path, &meta, euid(), Kind::Socket)?;
            std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket `{}`", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot inspect socket path `{}`", path.display())),
    }
}

/// Identity of a path, for [`remove_if_same`].
pub(super) fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Removes `path` only when it is still the file `id` names, so a daemon
/// never deletes a successor's FIFO or socket.
pub(super) fn remove_if_same(path: &Path, id: (u64, u64)) {
    if path_id(path) == Some(id) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!("failed to remove `{}`: {e}", path.display());
        }
    }
}

fn split_path(path: &Path) -> anyhow::Result<(&Path, &std::ffi::OsStr)> {
    let name = path.file_name().with_context(|| format!("control path `{}` does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// The directory must be ours or root's and writable by nobody else, or
/// another user could replace the FIFO between our checks and a writer's
/// open. Created 0700 when missing (and removed again with the FIFO); an
/// existing one keeps its mode.
fn ensure_private_dir(dir: &Path) -> anyhow::Result<CreatedDirs> {
    let created = dirs::create_dir_all(dir, 0o700)
        .with_context(|| format!("cannot create control directory `{}`", dir.display()))?;
    check_private_dir(dir)?;
    Ok(created)
}

fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(dir).with_context(|| format!("cannot inspect control directory `{}`", dir.display()))?;
    if !meta.is_dir() {
        bail!("`{}` is not a directory; choose another --control path", dir.display());
    }
    let uid = euid();
    if meta.uid() != uid && meta.uid() != 0 {
        bail!(
            "control directory `{}` belongs to uid {}, not to this daemon's user (uid {uid}) or root; choose another --control path",
            dir.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o022 != 0 {
        bail!(
            "control directory `{}` is writable by other users (mode {:o}), who could replace the FIFO; \
             run `chmod go-w` on it or choose another --control path (e.g. under `/run/stackwatch`)",
            dir.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    Ok(())
}

/// What a control path should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fifo,
    Socket,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
        }
    }
}

/// Accepts an existing path only when it is a `kind` owned by `uid`, and a
/// FIFO only when nobody else can ever have opened it.
fn check_existing(path: &Path, meta: &std::fs::Metadata, uid: u32, kind: Kind) -> anyhow::Result<()> {
    let ft = meta.file_type();
    let is_kind = match kind {
        Kind::Fifo => ft.is_fifo(),
        Kind::Socket => ft.is_socket(),
    };
    let name = kind.name();
    if ft.is_symlink() {
        bail!(
            "control path `{}` is a symbolic link; refusing to follow it: remove it or choose another --control path",
            path.display()
        );
    }
    if !is_kind {
        bail!(
            "control path `{}` exists and is {}, not {name}; refusing to replace it: remove it (if `echo … >` created it \
             while no daemon ran) or choose another --control path",
            path.display(),
            describe(&ft)
        );
    }
    if meta.uid() != uid {
        bail!(
            "control path `{}` is {name} owned by uid {}, not by this daemon's user (uid {uid}); refusing it: remove it or choose another --control path",
            path.display(),
            meta.uid()
        );
    }
    // A descriptor opened while the mode allowed it outlives any chmod.
    if kind == Kind::Fifo && meta.mode() & 0o077 != 0 {
        bail!(
            "control path `{}` is a FIFO with mode {:o}, so other users may hold it open and send commands through it; \
             refusing it: remove it and let `stackwatch watch` create its own, or choose another --control path",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

fn describe(ft: &std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "a device"
    }
}

fn c_path(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).with_context(|| format!("path `{}` contains a NUL byte", path.display()))
}

fn make_fifo(path: &Path) -> anyhow::Result<()> {
    let c = c_path(path)?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            bail!(
                "control path `{}` appeared while the daemon was creating it; is another `stackwatch watch` \
                 starting on it? choose another --control path",
                path.display()
            );
        }
        return Err(err).with_context(|| format!("cannot create control FIFO `{}`", path.display()));
    }
    Ok(())
}

fn open_fifo(path: &Path) -> anyhow::Result<OwnedFd> {
    let c = c_path(path)?;
    // O_NONBLOCK also keeps open() from hanging on something that is not a
    // FIFO after all (a device swapped in between checks).
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid NUL-terminated path; no mode needed without O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ELOOP) {
            bail!("control path `{}` is a symbolic link; refusing to follow it", path.display());
        }
        return Err(err).with_context(|| format!("cannot open control FIFO `{}`", path.display()));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn creates_a_private_fifo_and_directory() {
        let tmp = private_dir();
        let path = tmp.path().join("run/control");
        let fifo = ControlFifo::open(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::metadata(tmp.path().join("run")).unwrap().permissions().mode() & 0o7777, 0o700);

        // A second daemon on the same path is refused while the first holds it.
        let err = ControlFifo::open(&path).unwrap_err();
        assert!(format!("{err:#}").contains("already using the control FIFO"), "{err:#}");

        fifo.remove();
        assert!(!path.exists());
    }

    #[test]
    fn replaces_its_own_leftover_fifo_so_an_old_descriptor_reaches_nothing() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        let tmp = private_dir();
        let path = tmp.path().join("control");
        make_fifo(&path).unwrap();
        // Someone opened the leftover before the daemon started.
        let old =
            std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
        let old_meta = old.metadata().unwrap();
        ControlFifo::check(&path).unwrap();
        let fifo = ControlFifo::open(&path).unwrap();
        assert_ne!(fifo.id, (old_meta.dev(), old_meta.ino()), "the leftover inode was adopted");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.dev(), meta.ino()), fifo.id);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

        (&old).write_all(b"start\n").unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: reading into a buffer of the given length from a descriptor we own.
        let n = unsafe { libc::read(fifo.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let err = io::Error::last_os_error();
        assert!(n < 0 && err.raw_os_error() == Some(libc::EAGAIN), "the daemon read {n} bytes ({err})");
        drop(fifo);
        // The lock went with the descriptor.
        ControlFifo::open(&path).unwrap();
    }

    #[test]
    fn refuses_a_fifo_other_users_may_hold_open() {
        let tmp = private_dir();
        let path = tmp.path().join("control");
        make_fifo(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        let before = std::fs::symlink_metadata(&path).unwrap().ino();
        for err in [ControlFifo::check(&path).unwrap_err(), ControlFifo::open(&path).unwrap_err()] {
            let err = format!("{err:#}");
            assert!(err.contains("is a FIFO with mode 622") && err.contains("--control"), "{err}");
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.ino(), meta.permissions().mode() & 0o7777), (before, 0o622), "left alone");
    }

    #[test]
    fn check_refuses_what_open_refuses_and_creates_nothing() {
        let tmp = private_dir();
        let path = tmp.path().join("run/sub/control");
        ControlFifo::check(&path).unwrap();
        assert!(!tmp.path().join("run").exists(), "check must not create the directory");
        let fifo = ControlFifo::open(&path).unwrap();
        let err = format!("{:#}", ControlFifo::check(&path).unwrap_err());
        assert!(err.contains("already using the control FIFO"), "{err}");
        // A stray file at the socket's path is refused up front too.
        std::fs::write(socket_path(&path), b"x").unwrap();
        drop(fifo);
        let err = format!("{:#}", ControlFifo::check(&path).unwrap_err());
        assert!(err.contains("control.sock` exists and is a regular file, not a socket"), "{err}");
    }

    #[test]
    fn removes_the_directories_it_made_with_the_fifo() {
        let tmp = private_dir();
        let path = tmp.path().join("run/sub/control");
        let fifo = ControlFifo::open(&path).unwrap();
        assert!(tmp.path().join("run/sub").is_dir());
        fifo.remove();
        drop(fifo);
        assert!(!tmp.path().join("run").exists());
    }

    #[test]
    fn refuses_symlinks_files_and_shared_directories() {
        let tmp = private_dir();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = tmp.path().join("link");
        symlink(&victim, &link).unwrap();
        let err = format!("{:#}", ControlFifo::open(&link).unwrap_err());
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = format!("{:#}", ControlFifo::open(&victim).unwrap_err());
        assert!(err.contains("is a regular file, not a FIFO"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", ControlFifo::open(&shared.join("control")).unwrap_err());
        assert!(err.contains("writable by other users"), "{err}");
        assert!(!shared.join("control").exists());
    }

    #[test]
    fn refuses_someone_elses_fifo() {
        if euid() != 0 {
            return; // chown needs root; the e2e tests cover it as root.
        }
        let tmp = private_dir();
        let path = tmp.path().join("control");
        make_fifo(&path).unwrap();
        std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        let err = format!("{:#}", ControlFifo::open(&path).unwrap_err());
        assert!(err.contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn socket_path_is_prepared_safely() {
        let tmp = private_dir();
        let sock = tmp.path().join("control.sock");
        prepare_socket_path(&sock).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        drop(listener);
        // A stale socket of ours is removed…
        prepare_socket_path(&sock).unwrap();
        assert!(!sock.exists());
        // …anything else is refused.
        std::fs::write(&sock, b"x").unwrap();
        assert!(format!("{:#}", prepare_socket_path(&sock).unwrap_err()).contains("not a socket"));
    }
}
