//! What `watch` sets up before it serves: signal handlers, the output
//! directory, the control FIFO and socket, and the eBPF programs.
//!
//! Everything that can refuse a start is checked before anything is made
//! ([`check_output_dir`], [`Endpoints::check`]), and what is made when a
//! later step still fails is taken back (`crate::sys::dirs`): a refused `watch`
//! leaves the file system as it found it.
//!
//! The programs are loaded once, at start, for every profile kind the
//! daemon may be asked for: the `--profiles` of manual captures (which must
//! load, or the daemon does not start) and the kinds its trigger rules want
//! (a CPU rule captures cpu and offcpu, a memory rule memory and cpu). A
//! kind only a rule wants and this kernel cannot run (off-CPU needs BTF) is
//! reported at start and left out of triggered captures, rather than
//! discovered at 3 a.m. A manual `start` naming other kinds loads theirs for
//! that capture (`super::ondemand`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{debug, warn};

use super::fifo::{self, ControlFifo};
use crate::bpf::{Loader, UnwindMode};
use crate::control::socket_path;
use crate::kinds::programs_for;
use crate::profile::ProfileKind;
use crate::profile::ProfileSet;
use crate::sink::dir::check_output_dir as check_writable;
use crate::sys::dirs::{self, CreatedDirs};
use crate::target::{Filter, TargetSpec};

/// The signal streams the daemon reacts to.
pub(super) struct Signals {
    pub usr2: Signal,
    pub term: Signal,
    pub int: Signal,
    /// Ends the daemon like SIGTERM: a closed terminal must not lose the
    /// running capture (the default action would).
    pub hup: Signal,
    /// Ignored with a hint (`kill -USR1` for `-USR2` must not kill it).
    pub usr1: Signal,
}

impl Signals {
    pub(super) fn install() -> Result<Self> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("failed to install the {name} handler"))
        };
        Ok(Self {
            usr2: install(SignalKind::user_defined2(), "SIGUSR2")?,
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
            usr1: install(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }
}

/// The control FIFO and reply socket; removed by [`Endpoints::remove`] or,
/// on an early error, on drop.
pub(super) struct Endpoints {
    pub fifo: ControlFifo,
    pub socket: PathBuf,
    socket_id: Option<(u64, u64)>,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl Endpoints {
    /// Checks that [`Endpoints::open`] would accept `control` now, creating nothing.
    pub(super) fn check(control: &Path) -> Result<()> {
        ControlFifo::check(control)
    }

    pub(super) fn open(control: &Path) -> Result<Self> {
        let fifo = ControlFifo::open(control)?;
        let socket = socket_path(control);
        let mut endpoints = Self { fifo, socket, socket_id: None, listener: None };
        fifo::prepare_socket_path(&endpoints.socket)?;
        let listener = std::os::unix::net::UnixListener::bind(&endpoints.socket)
            .with_context(|| format!("cannot create the control socket `{}`", endpoints.socket.display()))?;
        endpoints.socket_id = fifo::path_id(&endpoints.socket);
        std::fs::set_permissions(&endpoints.socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set the mode of `{}`", endpoints.socket.display()))?;
        listener.set_nonblocking(true).context("failed to make the control socket nonblocking")?;
        endpoints.listener = Some(listener);
        Ok(endpoints)
    }

    pub(super) fn take_listener(&mut self) -> Result<tokio::net::UnixListener> {
        let listener = self.listener.take().ok_or_else(|| anyhow!("control socket already taken"))?;
        tokio::net::UnixListener::from_std(listener).context("failed to register the control socket")
    }

    pub(super) fn remove(&mut self) {
        self.fifo.remove();
        if let Some(id) = self.socket_id.take() {
            fifo::remove_if_same(&self.socket, id);
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Checks that the output directory takes files, or could be created:
/// creates nothing, so a start refused later leaves nothing behind.
pub(super) fn check_output_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            bail!("output directory `{}` is not a directory; choose another with --output-dir", dir.display())
        }
        Ok(_) => check_writable(dir),
        // ENOTDIR: an ancestor is a file, which `check_creatable` names.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            dirs::check_creatable(dir).map_err(|reason| {
                anyhow!(
                    "cannot create output directory `{}`: {reason}; choose another with --output-dir",
                    dir.display()
                )
            })
        }
        Err(e) => Err(e).with_context(|| format!("cannot use output directory `{}`", dir.display())),
    }
}

/// Creates the output directory (0750) if missing and checks it takes
/// files. The directories made are removed again unless the caller keeps them.
pub(super) fn create_output_dir(dir: &Path) -> Result<CreatedDirs> {
    let created = dirs::create_dir_all(dir, 0o750).with_context(|| {
        format!("cannot create output directory `{}`; choose another with --output-dir", dir.display())
    })?;
    check_writable(dir)?;
    Ok(created)
}

/// The programs as loaded: the loader, the filter compiled into it and the
/// profile kinds it can record.
pub(super) struct Loaded {
    pub loader: Loader,
    pub filter: Filter,
    pub kinds: ProfileSet,
}

/// Loads and verifies the programs once. Pid and name targets share one
/// program (the pid set is a map, filled per capture); a cgroup's id is
/// compiled in, so it is loaded for the cgroup as it is now and reloaded if
/// a later capture finds a different one (a restarted unit gets a new
/// cgroup). A target that does not exist yet is not an error: captures are
/// refused until it does.
///
/// `required` kinds must load; `optional` ones are loaded when the kernel
/// takes them.
pub(super) fn initial_load(
    target: &TargetSpec,
    required: ProfileSet,
    optional: ProfileSet,
    unwind: UnwindMode,
) -> Result<Loaded> {
    let resolved = target.resolve();
    if let Err(e) = &resolved {
        warn!("the target does not exist now ({e}); captures will be refused until it does");
    }
    let filter = match target {
        TargetSpec::Host => Filter::All,
        TargetSpec::Pids(_) | TargetSpec::Name(_) => Filter::Pids(Vec::new()),
        // Without the cgroup, load for the whole host: that still verifies
        // the program now, and the first capture reloads it for the cgroup.
        TargetSpec::Cgroup(_) => resolved.map_or(Filter::All, |r| r.filter),
    };
    let (loader, kinds) = load_kinds(&filter, required, optional, unwind)?;
    Ok(Loaded { loader, filter, kinds })
}

/// Loads the programs of `required` and of as many `optional` kinds as the
/// kernel accepts; returns the kinds loaded. One load when everything works;
/// otherwise one more per kind, to say exactly which one is missing.
fn load_kinds(
    filter: &Filter,
    required: ProfileSet,
    optional: ProfileSet,
    unwind: UnwindMode,
) -> Result<(Loader, ProfileSet)> {
    // The CPU sampler is part of every load.
    let required = required.union(ProfileSet::of(&[ProfileKind::Cpu]));
    let optional = optional.minus(required);
    let all = required.union(optional);
    match Loader::load_with(filter, programs_for(&all.to_vec(), unwind)) {
        Ok(loader) => return Ok((loader, all)),
        Err(e) if optional.is_empty() => return Err(e),
        Err(e) => debug!("loading every program failed ({e:#}); trying the optional ones one by one"),
    }
    let mut loader = Loader::load_with(filter, programs_for(&required.to_vec(), unwind))?;
    let mut loaded = required;
    for kind in optional.to_vec() {
        let trial = loaded.union(ProfileSet::of(&[kind]));
        match Loader::load_with(filter, programs_for(&trial.to_vec(), unwind)) {
            Ok(bigger) => {
                loader = bigger;
                loaded = trial;
            }
            Err(e) => warn!("triggered captures will be taken without the {kind} profile: {e:#}"),
        }
    }
    Ok((loader, loaded))
}

/// Whether a program loaded for `loaded` can capture `wanted`.
pub(super) fn compatible(loaded: &Filter, wanted: &Filter) -> bool {
    matches!((loaded, wanted), (Filter::Pids(_), Filter::Pids(_))) || loaded == wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Pid;

    #[test]
    fn compatible_filters() {
        assert!(compatible(&Filter::Pids(vec![]), &Filter::Pids(vec![Pid::new(4)])));
        assert!(compatible(&Filter::All, &Filter::All));
        assert!(compatible(&Filter::Cgroup { id: 1, level: 2 }, &Filter::Cgroup { id: 1, level: 2 }));
        assert!(!compatible(&Filter::Cgroup { id: 1, level: 2 }, &Filter::Cgroup { id: 9, level: 2 }));
        assert!(!compatible(&Filter::All, &Filter::Pids(vec![Pid::new(1)])));
    }
}
