//! The control channel of `stackwatch watch`: the command language, the
//! FIFO and the reply socket.
//!
//! Commands are lines of text (`start [DURATION] [KINDS]`, `stop`,
//! `toggle`, `status`), written by anyone who can open the FIFO — typically
//! `echo toggle > /run/stackwatch/control` — or sent by `stackwatch ctl`.
//! The FIFO is one-way, so `ctl` talks to a unix socket next to it
//! (`<control>.sock`) that takes the same one-line command and answers with
//! one line of JSON ([`Reply`]); see `docs/architecture.md`.
//!
//! Everything here treats its input as hostile: the splitter caps a line at
//! [`MAX_LINE`] bytes and discards the rest of an overlong one (memory stays
//! bounded whatever is written), and the parser turns any byte sequence into
//! either a [`Command`] or a [`ParseError`] that says why, never a panic.
//!
//! The FIFO and socket are only used when they are provably ours: the
//! directory holding them is ours (or root's) and writable by no one else;
//! an existing path that is a symlink, not a FIFO, someone else's FIFO or a
//! FIFO other users could open is refused. An existing FIFO is never
//! adopted, not even our own leftover: a descriptor opened on it earlier
//! survives any `chmod` and would reach the daemon, so the leftover is
//! removed and a new inode made, opened `O_NOFOLLOW` and checked through
//! the descriptor. The open FIFO carries an exclusive `flock`, so a second
//! daemon on the same path is refused instead of silently splitting the
//! commands. [`ControlFifo::check`] runs the same checks without creating
//! anything, so `watch` can refuse a start before it has made anything.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::dirs::CreatedDirs;
use crate::kinds::ProfileSet;

/// Default control FIFO; `/run/stackwatch` is the systemd `RuntimeDirectory`.
pub const DEFAULT_CONTROL_PATH: &str = "/run/stackwatch/control";

/// Longest command line accepted. Real commands are a few bytes; the cap only
/// bounds what a broken or hostile writer can make the daemon buffer.
pub const MAX_LINE: usize = 4096;

/// Longest capture a `start DURATION` may ask for. Longer windows blur a
/// profile into an average and let a typo (`start 30d`) pin sampling on for weeks.
pub const MAX_CAPTURE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start a capture, for this long or the daemon's `--capture-duration`,
    /// of these profiles or the daemon's `--profiles`.
    Start { duration: Option<Duration>, profiles: Option<ProfileSet> },
    /// End the running capture now and write it.
    Stop,
    /// Start if idle, else stop.
    Toggle,
    /// Report the daemon's state.
    Status,
}

impl Command {
    /// The command as one protocol line (without the newline).
    pub fn to_line(self) -> String {
        match self {
            Command::Start { duration, profiles } => {
                let mut line = "start".to_owned();
                if let Some(d) = duration {
                    line.push_str(&format!(" {}", humantime::format_duration(d)));
                }
                if let Some(profiles) = profiles {
                    line.push_str(&format!(" {profiles}"));
                }
                line
            }
            Command::Stop => "stop".to_owned(),
            Command::Toggle => "toggle".to_owned(),
            Command::Status => "status".to_owned(),
        }
    }
}

/// Why a line is not a command. The daemon logs it and changes nothing.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Blank lines are ignored quietly (`echo >> fifo`).
    #[error("empty line")]
    Empty,
    #[error("the line is not text (it holds control characters or invalid UTF-8)")]
    NotText,
    #[error("the line is longer than {MAX_LINE} bytes; it was discarded")]
    TooLong,
    #[error("unknown command `{0}` (expected `start [DURATION]`, `stop`, `toggle` or `status`)")]
    Unknown(String),
    #[error("`{command}` takes no argument, got `{argument}`")]
    UnexpectedArgument { command: &'static str, argument: String },
    #[error("invalid duration `{value}` for `start`: {reason}")]
    BadDuration { value: String, reason: String },
    #[error("invalid profile list `{value}` for `start`: {reason}")]
    BadProfiles { value: String, reason: String },
}

/// Parses one line (with or without its `\n`/`\r\n`). Words are
/// case-insensitive and may be surrounded by spaces or tabs; everything after
/// `start` is its duration (`start 1m 30s` works).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    let text = text.trim_end_matches(['\n', '\r']).trim_matches([' ', '\t']);
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::NotText);
    }
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let (word, rest) = match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim_matches([' ', '\t'])),
        None => (text, ""),
    };
    let no_argument = |command: &'static str, value: Command| {
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(ParseError::UnexpectedArgument { command, argument: shorten(rest) })
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "start" => {
            let (duration, profiles) = parse_start(rest)?;
            Ok(Command::Start { duration, profiles })
        }
        "stop" => no_argument("stop", Command::Stop),
        "toggle" => no_argument("toggle", Command::Toggle),
        "status" => no_argument("status", Command::Status),
        _ => Err(ParseError::Unknown(shorten(word))),
    }
}

/// The arguments of `start`: `[DURATION] [KINDS]`, e.g. `30s`, `1m 30s`,
/// `30s cpu,offcpu` or `memory`. The last word is a profile list when it
/// starts with a letter and what precedes it is a duration (or nothing), so
/// a mistyped duration (`5 parsecs`) is still reported as one.
fn parse_start(rest: &str) -> Result<(Option<Duration>, Option<ProfileSet>), ParseError> {
    let duration = |text: &str| {
        let bad = |reason| ParseError::BadDuration { value: shorten(text), reason };
        let d = crate::units::parse_duration(text).map_err(bad)?;
        if d > MAX_CAPTURE_DURATION {
            return Err(bad(format!("captures are limited to {}", humantime::format_duration(MAX_CAPTURE_DURATION))));
        }
        Ok(d)
    };
    if rest.is_empty() {
        return Ok((None, None));
    }
    let whole = duration(rest);
    if let Ok(d) = whole {
        return Ok((Some(d), None));
    }
    let (head, last) = match rest.rsplit_once([' ', '\t']) {
        Some((head, last)) => (head.trim_matches([' ', '\t']), last),
        None => ("", rest),
    };
    let kinds_like = last.starts_with(|c: char| c.is_ascii_alphabetic())
        && if head.is_empty() { last.contains(',') || ProfileSet::parse(last).is_ok() } else { duration(head).is_ok() };
    if !kinds_like {
        return whole.map(|d| (Some(d), None));
    }
    let profiles =
        ProfileSet::parse(last).map_err(|reason| ParseError::BadProfiles { value: shorten(last), reason })?;
    let d = if head.is_empty() { None } else { Some(duration(head)?) };
    Ok((d, Some(profiles)))
}

/// Cuts user text to a loggable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes. The bytes
/// of an overlong line are dropped as they arrive (one [`ParseError::TooLong`]
/// is reported per such line), so memory never exceeds one `MAX_LINE`.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Inside an overlong line: drop everything up to the next newline.
    discarding: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `data`; calls `emit` with every complete line (without `\n`) or
    /// with `Err(TooLong)` for each overlong one.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Result<&[u8], ParseError>)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if self.discarding {
                self.discarding = !complete;
                continue;
            }
            if self.buf.len() + chunk.len() > MAX_LINE {
                self.buf.clear();
                self.discarding = !complete;
                emit(Err(ParseError::TooLong));
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if complete {
                emit(Ok(&self.buf));
                self.buf.clear();
            }
        }
    }

    /// Bytes held for an unfinished line (for tests: never above [`MAX_LINE`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What the daemon is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    /// Loaded, nothing attached: samples nothing.
    Idle,
    /// Sampling.
    Capturing,
    /// Sampling ended; symbolizing and writing files.
    Writing,
    /// Finishing the last capture before exiting.
    Stopping,
}

impl std::fmt::Display for DaemonState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DaemonState::Idle => "idle",
            DaemonState::Capturing => "capturing",
            DaemonState::Writing => "writing",
            DaemonState::Stopping => "stopping",
        })
    }
}

/// The running capture, in a status reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStatus {
    pub target: String,
    /// Who started it: `fifo`, `ctl`, `SIGUSR2` or `rule` (a trigger).
    pub source: String,
    /// RFC 3339 start time.
    pub started: String,
    pub elapsed_ms: u64,
    /// Time left before the capture ends by itself.
    pub remaining_ms: u64,
    /// Samples recorded in the kernel so far.
    pub samples: u64,
    /// Why a triggered capture runs (`Trigger::summary`); absent for a
    /// manual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The profiles it records, e.g. `cpu,offcpu`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profiles: String,
}

/// The daemon's answer to one socket request: one JSON object on one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// False when the command failed (`ctl` then exits with 1).
    pub ok: bool,
    /// State after the command.
    pub state: DaemonState,
    /// What happened, for people; may span several lines.
    pub message: String,
    /// Files written by the capture this command ended (`stop`, `toggle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// The running capture, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureStatus>,
    /// Process id of the daemon.
    #[serde(default)]
    pub pid: u32,
    /// The daemon was serving too many `ctl` requests to take this one; it
    /// was not run, so sending it again is safe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

/// The socket `ctl` talks to: the FIFO's path with `.sock` appended.
pub fn socket_path(control: &Path) -> PathBuf {
    let mut name = control.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// The control FIFO, always created afresh, opened `O_RDWR|O_NONBLOCK` and
/// locked. Holding it open for writing too means the daemon never sees
/// end-of-file when a writer such as `echo` closes its end.
#[derive(Debug)]
pub struct ControlFifo {
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
    pub fn check(path: &Path) -> anyhow::Result<()> {
        let (dir, _) = split_path(path)?;
        if std::fs::symlink_metadata(dir).is_ok() {
            check_private_dir(dir)?;
        } else if let Err(reason) = crate::dirs::check_creatable(dir) {
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
    pub fn open(path: &Path) -> anyhow::Result<Self> {
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A duplicate of the (nonblocking, locked) descriptor, for the reader task.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Removes the FIFO if the path still names it.
    pub fn remove(&self) {
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
pub fn prepare_socket_path(path: &Path) -> anyhow::Result<()> {
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
pub fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Removes `path` only when it is still the file `id` names, so a daemon
/// never deletes a successor's FIFO or socket.
pub fn remove_if_same(path: &Path, id: (u64, u64)) {
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
    let created = crate::dirs::create_dir_all(dir, 0o700)
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

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::profile::ProfileKind;

    #[test]
    fn parses_commands() {
        let start = |duration, profiles| Command::Start { duration, profiles };
        let secs = |n| Some(Duration::from_secs(n));
        let cpu_offcpu = ProfileSet::of(&[ProfileKind::Cpu, ProfileKind::OffCpu]);
        assert_eq!(parse_command(b"start"), Ok(start(None, None)));
        assert_eq!(parse_command(b"start 30s\n"), Ok(start(secs(30), None)));
        assert_eq!(parse_command(b"  START\t1m 30s \r\n"), Ok(start(secs(90), None)));
        assert_eq!(parse_command(b"start 30s cpu,offcpu"), Ok(start(secs(30), Some(cpu_offcpu))));
        assert_eq!(parse_command(b"start 1m 30s\tOFFCPU,cpu"), Ok(start(secs(90), Some(cpu_offcpu))));
        assert_eq!(parse_command(b"start memory"), Ok(start(None, Some(ProfileSet::of(&[ProfileKind::Memory])))));
        assert_eq!(parse_command(b"stop\r\n"), Ok(Command::Stop));
        assert_eq!(parse_command(b"Toggle"), Ok(Command::Toggle));
        assert_eq!(parse_command(b"status  "), Ok(Command::Status));
        for c in [start(None, None), start(Some(Duration::from_millis(1500)), None), start(None, Some(cpu_offcpu))]
            .into_iter()
            .chain([start(secs(2), Some(cpu_offcpu)), Command::Stop, Command::Status])
        {
            assert_eq!(parse_command(c.to_line().as_bytes()), Ok(c));
        }
    }

    #[test]
    fn refuses_malformed_lines_with_a_reason() {
        assert_eq!(parse_command(b""), Err(ParseError::Empty));
        assert_eq!(parse_command(b" \t\r\n"), Err(ParseError::Empty));
        assert_eq!(parse_command(b"frobnicate"), Err(ParseError::Unknown("frobnicate".into())));
        assert_eq!(
            parse_command(b"stop now"),
            Err(ParseError::UnexpectedArgument { command: "stop", argument: "now".into() })
        );
        assert!(matches!(parse_command(b"start 5 parsecs"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start -3s"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start 30"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start cpu"), Ok(Command::Start { duration: None, .. })));
        assert!(matches!(parse_command(b"start gpu"), Err(ParseError::BadDuration { .. })));
        assert_eq!(
            parse_command(b"start 30s gpu").unwrap_err().to_string(),
            "invalid profile list `gpu` for `start`: unknown profile kind `gpu` (expected cpu, offcpu or memory)"
        );
        assert!(matches!(parse_command(b"start 30s cpu,,x"), Err(ParseError::BadProfiles { .. })));
        let err = parse_command(b"start 2d").unwrap_err();
        assert_eq!(err.to_string(), "invalid duration `2d` for `start`: captures are limited to 1day");
        assert_eq!(parse_command(b"st\0op"), Err(ParseError::NotText));
        assert_eq!(parse_command(b"\xff\xfe"), Err(ParseError::NotText));
        assert_eq!(parse_command(b"toggle\x1b[2J"), Err(ParseError::NotText));
        assert_eq!(parse_command(&[b'a'; MAX_LINE + 1]), Err(ParseError::TooLong));
        let long = "x".repeat(100);
        let msg = parse_command(long.as_bytes()).unwrap_err().to_string();
        assert!(msg.len() < 200 && msg.contains('…'), "{msg}");
        assert_eq!(
            ParseError::Unknown("go".into()).to_string(),
            "unknown command `go` (expected `start [DURATION]`, `stop`, `toggle` or `status`)"
        );
    }

    /// A small deterministic generator: the fuzz cases are reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut seed = 0x5eed_u64;
        let tokens: &[&[u8]] = &[
            b"start",
            b"stop",
            b"toggle",
            b"status",
            b" ",
            b"1s",
            b"30m",
            b"\r",
            b"\n",
            b"\n",
            b"\t",
            b"\0",
            b"\xff",
            b"\xc3\xa9",
        ];
        let mut splitter = LineSplitter::new();
        let mut commands = 0;
        for round in 0..2000 {
            let len = (xorshift(&mut seed) % 300) as usize;
            let mut bytes: Vec<u8> = Vec::with_capacity(len);
            while bytes.len() < len {
                let r = xorshift(&mut seed);
                if round % 2 == 0 {
                    bytes.push(r as u8);
                } else {
                    bytes.extend_from_slice(tokens[(r as usize) % tokens.len()]);
                }
            }
            let _ = parse_command(&bytes);
            splitter.push(&bytes, |line| {
                if let Ok(line) = line {
                    assert!(line.len() <= MAX_LINE);
                    if parse_command(line).is_ok() {
                        commands += 1;
                    }
                }
            });
            assert!(splitter.buffered() <= MAX_LINE);
        }
        assert!(commands > 0, "the alphabet rounds should produce some valid commands");
    }

    fn split_all(chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, ParseError>> {
        let mut splitter = LineSplitter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |r| out.push(r.map(<[u8]>::to_vec)));
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(
            split_all(&[b"tog", b"gle\nsta", b"tus\r\n\n", b"stop"]),
            vec![Ok(b"toggle".to_vec()), Ok(b"status\r".to_vec()), Ok(Vec::new())]
        );
    }

    #[test]
    fn overlong_lines_are_reported_once_and_discarded() {
        let big = vec![b'x'; 1 << 20];
        let out = split_all(&[b"status\n", &big[..600_000], &big[600_000..], b"tail\ntoggle\n"]);
        assert_eq!(out, vec![Ok(b"status".to_vec()), Err(ParseError::TooLong), Ok(b"toggle".to_vec())]);
        // Exactly MAX_LINE bytes is still a line.
        let exact = vec![b'y'; MAX_LINE];
        let out = split_all(&[&exact, b"\n"]);
        assert_eq!(out, vec![Ok(exact)]);
        // An overlong line ending in the same chunk leaves nothing to discard.
        let mut chunk = vec![b'z'; MAX_LINE + 1];
        chunk.extend_from_slice(b"\nstop\n");
        assert_eq!(split_all(&[&chunk]), vec![Err(ParseError::TooLong), Ok(b"stop".to_vec())]);
    }

    #[test]
    fn replies_round_trip_as_one_json_line() {
        let reply = Reply {
            ok: true,
            state: DaemonState::Idle,
            message: "capture written".into(),
            files: vec![PathBuf::from("/var/lib/stackwatch/a.pb.gz")],
            capture: None,
            pid: 42,
            busy: false,
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""state":"idle""#), "{line}");
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
        assert_eq!(socket_path(Path::new("/run/stackwatch/control")), Path::new("/run/stackwatch/control.sock"));
    }

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
