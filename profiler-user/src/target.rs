//! What to profile: `--pid`, `--name`, `--cgroup` or the whole host, resolved
//! against `/proc` and the cgroup v2 hierarchy into the filter the kernel
//! program applies and the [`TargetInfo`] that names the capture's files.
//!
//! Resolution happens when a capture starts; `--name` is resolved again at
//! every capture (see [`find_pids_by_name`]) so restarted processes are
//! followed.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use regex::Regex;

use crate::ids::{Pid, Tid};
use crate::procfs::process::{self, command_line};
use crate::procfs::{mountinfo, stat, status};
use crate::profile::capture::{TargetInfo, TargetKind};

/// A target as the user gave it.
#[derive(Clone, Debug)]
pub(crate) enum TargetSpec {
    /// `--pid` (repeatable): these processes.
    Pids(Vec<Pid>),
    /// `--name`: processes whose name or command line matches.
    Name(Regex),
    /// `--cgroup`: every task in this cgroup v2 directory or below it.
    Cgroup(PathBuf),
    /// No target option: the whole host.
    Host,
}

/// What the kernel program keeps (see `profiler_common::FilterMode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Every task.
    All,
    /// Tasks of these processes (tgids).
    Pids(Vec<Pid>),
    /// Tasks in the cgroup with inode number `id`, `level` components below
    /// the cgroup v2 root, or in one of its descendants.
    Cgroup { id: u64, level: u32 },
}

/// A target resolved to concrete processes or a concrete cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedTarget {
    pub info: TargetInfo,
    pub filter: Filter,
}

/// Why a target could not be resolved. All of these are the user's to fix,
/// so `main` reports them as usage errors.
#[derive(thiserror::Error, Debug)]
pub enum TargetError {
    #[error("no process with pid {0} is running")]
    NoSuchPid(Pid),
    #[error("pid {tid} is a thread of process {tgid}; profile the process with `--pid {tgid}`")]
    NotAProcess { tid: Tid, tgid: Pid },
    #[error(
        "process {pid} has exited (a zombie its parent, pid {parent}, has not reaped): it runs no more, \
         so there is nothing to profile"
    )]
    Exited { pid: Pid, parent: Pid },
    #[error("no process name or command line matches `--name {0}` (check with `pgrep -af '{0}'`)")]
    NoMatch(String),
    #[error(
        "no cgroup v2 hierarchy is mounted, which `--cgroup` needs \
         (mount one with `mount -t cgroup2 none /sys/fs/cgroup`)"
    )]
    NoCgroup2,
    #[error("cgroup `{path}` does not exist in the cgroup v2 hierarchy mounted at `{root}`")]
    CgroupNotFound { path: PathBuf, root: PathBuf },
    #[error("`{path}` is not a cgroup v2 directory: {reason}")]
    NotACgroup { path: PathBuf, reason: String },
    #[error("failed to read `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl TargetSpec {
    /// The directory of a `--cgroup` target, if it exists now.
    pub(crate) fn cgroup_dir(&self) -> Option<PathBuf> {
        match self {
            TargetSpec::Cgroup(path) => cgroup_dir(path).ok(),
            _ => None,
        }
    }

    /// Checks the target exists and resolves it to a filter and a
    /// description.
    pub(crate) fn resolve(&self) -> Result<ResolvedTarget, TargetError> {
        match self {
            TargetSpec::Pids(pids) => resolve_pids(pids),
            TargetSpec::Name(re) => {
                let pids = find_pids_by_name(re);
                let (file_name, file_pid) = match pids.as_slice() {
                    [] => return Err(TargetError::NoMatch(re.to_string())),
                    &[only] => (sanitize_name(&process::comm(only).unwrap_or_default()), Some(only)),
                    _ => (name_from_pattern(re.as_str()), None),
                };
                Ok(ResolvedTarget {
                    info: TargetInfo {
                        kind: TargetKind::Name,
                        description: format!("name /{re}/"),
                        file_name,
                        file_pid,
                        pids: pids.clone(),
                    },
                    filter: Filter::Pids(pids),
                })
            }
            TargetSpec::Cgroup(path) => {
                let cgroup = resolve_cgroup(path)?;
                let last = cgroup.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                Ok(ResolvedTarget {
                    info: TargetInfo {
                        kind: TargetKind::Cgroup,
                        description: format!("cgroup {}", cgroup.path.display()),
                        pids: Vec::new(),
                        file_name: sanitize_name(&last),
                        file_pid: None,
                    },
                    filter: Filter::Cgroup { id: cgroup.id, level: cgroup.level },
                })
            }
            TargetSpec::Host => Ok(ResolvedTarget {
                info: TargetInfo {
                    kind: TargetKind::Host,
                    description: "host".to_owned(),
                    pids: Vec::new(),
                    file_name: "host".to_owned(),
                    file_pid: None,
                },
                filter: Filter::All,
            }),
        }
    }
}

fn resolve_pids(pids: &[Pid]) -> Result<ResolvedTarget, TargetError> {
    let mut unique = Vec::with_capacity(pids.len());
    for &pid in pids {
        if unique.contains(&pid) {
            continue;
        }
        // /proc/<tid> exists for threads too, though `ls /proc` hides them;
        // the kernel filter matches tgids, so a thread id would never match.
        let text = match status::read(pid) {
            Ok(text) => text,
            Err(_) if !process::exists(pid) => return Err(TargetError::NoSuchPid(pid)),
            Err(source) => return Err(TargetError::Io { path: format!("/proc/{pid}/status").into(), source }),
        };
        if let Some(tgid) = status::tgid(&text).filter(|&tgid| tgid != pid) {
            return Err(TargetError::NotAProcess { tid: Tid::new(pid.get()), tgid });
        }
        if let Some(s) = stat::read(pid).filter(|s| matches!(s.state, 'Z' | 'X')) {
            return Err(TargetError::Exited { pid, parent: s.ppid });
        }
        unique.push(pid);
    }
    let Some(&first) = unique.first() else {
        // clap never produces an empty `--pid` list; treat it as the host.
        return TargetSpec::Host.resolve();
    };
    let comm = process::comm(first).unwrap_or_default();
    let (description, file_name, file_pid) = if unique.len() == 1 {
        (format!("pid {first} ({comm})"), sanitize_name(&comm), Some(first))
    } else {
        let list: Vec<String> = unique.iter().map(Pid::to_string).collect();
        let names: Vec<String> = unique.iter().map(|&pid| process::comm(pid).unwrap_or_default()).collect();
        (format!("pids {}", list.join(",")), joined_names(&names), None)
    };
    Ok(ResolvedTarget {
        info: TargetInfo { kind: TargetKind::Pid, description, pids: unique.clone(), file_name, file_pid },
        filter: Filter::Pids(unique),
    })
}

/// Processes whose name (`/proc/<pid>/comm`) or command line (arguments
/// joined by spaces) matches `re`, in ascending pid order.
///
/// Never includes this process, nor an ancestor whose command line contains
/// this process's arguments: under `sudo stackwatch record --name redis` the
/// `sudo` process matches `redis` only because it is running us. Zombies are
/// skipped; they have no stacks to sample.
pub(crate) fn find_pids_by_name(re: &Regex) -> Vec<Pid> {
    let me = Pid::current();
    let wrappers = wrapper_ancestors(me);
    let Some(all) = process::all_pids() else {
        return Vec::new();
    };
    let mut pids: Vec<Pid> = all
        .into_iter()
        .filter(|&pid| pid != me && !wrappers.contains(&pid))
        .filter(|&pid| {
            // A process that exits while we look is simply not a match.
            let comm_matches = process::comm(pid).is_some_and(|comm| re.is_match(&comm));
            (comm_matches || command_line(pid).is_some_and(|cmdline| re.is_match(&cmdline)))
                && stat::read(pid).is_some_and(|s| s.state != 'Z')
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Makes `s` safe as part of a file name: characters other than
/// `[A-Za-z0-9._-]` become `_`, a leading `.` or `-` becomes `_` (no hidden
/// files, nothing a shell takes for an option), at most 64 characters, and
/// `unknown` for an empty name. The result is never empty, `.` or `..`.
pub(crate) fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if out.starts_with(['.', '-']) {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// The `<name>` of a capture of several processes matched by `--name
/// PATTERN`: the pattern's literal words, joined by `_` (`^(redis|memcached)`
/// → `redis_memcached`, `python.*app\.py` → `python_app.py`), sanitized as
/// [`sanitize_name`] does; `name` when the pattern has no word.
pub(crate) fn name_from_pattern(pattern: &str) -> String {
    /// Appends a literal character, or (`None`) notes a gap between words.
    fn push(out: &mut String, c: Option<char>, gap: &mut bool) {
        match c {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => {
                if *gap && !out.is_empty() {
                    out.push('_');
                }
                *gap = false;
                out.push(c);
            }
            _ => *gap = true,
        }
    }
    let mut out = String::new();
    let mut gap = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // `\.` is a literal dot; `\d`, `\w`, `\b`… are classes.
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_alphanumeric() => push(&mut out, None, &mut gap),
                e => push(&mut out, e, &mut gap),
            },
            // `.*`, `.+`, `.?`: anything, a separator.
            '.' if matches!(chars.peek(), Some('*' | '+' | '?')) => {
                chars.next();
                push(&mut out, None, &mut gap);
            }
            // Classes `[…]`, repetitions `{…}` and group flags `(?i)`,
            // `(?P<n>`: no literal word in them.
            '[' | '{' => {
                let close = if c == '[' { ']' } else { '}' };
                chars.by_ref().find(|&x| x == close);
                push(&mut out, None, &mut gap);
            }
            '(' if chars.peek() == Some(&'?') => {
                chars.by_ref().find(|&x| matches!(x, ')' | ':' | '>'));
                push(&mut out, None, &mut gap);
            }
            c => push(&mut out, Some(c), &mut gap),
        }
    }
    // Words of dots and dashes alone (`..`) say nothing.
    let words: Vec<&str> = out.split('_').filter(|w| !w.trim_matches(['.', '-']).is_empty()).collect();
    let joined = words.join("_");
    let trimmed = joined.trim_matches(['.', '-']);
    sanitize_name(if trimmed.is_empty() { "name" } else { trimmed })
}

/// The `<name>` of a capture of several `--pid`s: their process names,
/// sanitized, each once, in pid order, joined by `+` (`nginx+redis-server`).
fn joined_names(names: &[String]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        let name = sanitize_name(name);
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    let joined = seen.join("+");
    joined.chars().take(64).collect()
}

/// Ancestors of `pid` whose command line contains our own arguments: the
/// `sudo`, `strace` or `sh -c` that started us.
pub(crate) fn wrapper_ancestors(pid: Pid) -> Vec<Pid> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return Vec::new();
    }
    let args = args.join(" ");
    let mut wrappers = Vec::new();
    let mut current = pid;
    // Bounded: a pid namespace's init has ppid 0, but don't trust /proc blindly.
    for _ in 0..64 {
        match stat::read(current).map(|s| s.ppid) {
            Some(ppid) if ppid.get() > 1 => {
                if command_line(ppid).is_some_and(|cmdline| cmdline.contains(&args)) {
                    wrappers.push(ppid);
                }
                current = ppid;
            }
            _ => break,
        }
    }
    wrappers
}

/// The canonical absolute directory of a `--cgroup` path, spelled any way
/// [`TargetSpec::resolve`] accepts (relative to the cgroup2 mount, as in
/// `/proc/<pid>/cgroup`, or absolute), e.g. to read its `cpu.stat`. The
/// cgroup2 mount is not always `/sys/fs/cgroup` (hybrid hosts use
/// `/sys/fs/cgroup/unified`).
pub(crate) fn cgroup_dir(path: &Path) -> Result<PathBuf, TargetError> {
    resolve_cgroup(path).map(|cgroup| cgroup.path)
}

/// A mounted cgroup v2 hierarchy.
#[derive(Debug)]
struct Cgroup2Mount {
    mount_point: PathBuf,
    /// Depth of the mount's root inside the hierarchy: non-zero when a
    /// subtree is bind-mounted.
    root_level: u32,
}

/// A cgroup v2 directory.
#[derive(Debug, PartialEq, Eq)]
struct Cgroup {
    /// Canonical absolute path.
    path: PathBuf,
    /// Inode number of the directory: the kernel's cgroup id.
    id: u64,
    /// Components below the hierarchy's root; the root is 0.
    level: u32,
}

/// Accepts a path inside a cgroup2 mount (`/sys/fs/cgroup/system.slice/foo.service`),
/// a path relative to it (`system.slice/foo.service`), or the hierarchy path
/// that `/proc/<pid>/cgroup` and `systemctl status` show (`/system.slice/foo.service`).
///
/// In a cgroup namespace the hierarchy's root is the namespace's, so `level`
/// would be too small; stackwatch runs in the host's cgroup namespace.
fn resolve_cgroup(path: &Path) -> Result<Cgroup, TargetError> {
    let text = mountinfo::read().map_err(|source| TargetError::Io { path: mountinfo::PATH.into(), source })?;
    let mounts = cgroup2_mounts(&text);
    let Some(primary) = mounts.first() else {
        return Err(TargetError::NoCgroup2);
    };

    let mut outside = None;
    if path.is_absolute() {
        if let Ok(canonical) = fs::canonicalize(path) {
            match mount_containing(&mounts, &canonical) {
                Some(mount) => return cgroup_at(path, canonical, mount),
                None => outside = Some(canonical),
            }
        }
    }
    // Relative to a cgroup2 mount, without letting `..` climb out of it.
    let relative: PathBuf = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let climbs = path.components().any(|c| matches!(c, Component::ParentDir));
    for mount in &mounts {
        let candidate = mount.mount_point.join(&relative);
        if climbs || !candidate.exists() {
            continue;
        }
        if let Ok(canonical) = fs::canonicalize(&candidate) {
            if let Some(mount) = mount_containing(&mounts, &canonical) {
                return cgroup_at(path, canonical, mount);
            }
        }
    }
    match outside {
        Some(canonical) => Err(TargetError::NotACgroup {
            path: canonical,
            reason: format!(
                "it is outside the cgroup v2 hierarchy mounted at `{}` (cgroup v1 is not supported)",
                primary.mount_point.display()
            ),
        }),
        None => Err(TargetError::CgroupNotFound { path: path.to_owned(), root: primary.mount_point.clone() }),
    }
}

/// The innermost cgroup2 mount containing `path` (mounts may nest).
fn mount_containing<'a>(mounts: &'a [Cgroup2Mount], path: &Path) -> Option<&'a Cgroup2Mount> {
    mounts.iter().filter(|m| path.starts_with(&m.mount_point)).max_by_key(|m| m.mount_point.components().count())
}

fn cgroup_at(given: &Path, canonical: PathBuf, mount: &Cgroup2Mount) -> Result<Cgroup, TargetError> {
    let not_a_cgroup = |reason: &str| TargetError::NotACgroup { path: given.to_owned(), reason: reason.to_owned() };
    let meta = fs::metadata(&canonical).map_err(|source| TargetError::Io { path: canonical.clone(), source })?;
    if !meta.is_dir() {
        return Err(not_a_cgroup("it is not a directory"));
    }
    // Every cgroup v2 directory, the root included, has `cgroup.procs`.
    if !canonical.join("cgroup.procs").is_file() {
        return Err(not_a_cgroup("it has no `cgroup.procs` file"));
    }
    let below = canonical.strip_prefix(&mount.mount_point).map(|p| p.components().count()).unwrap_or(0);
    Ok(Cgroup { level: mount.root_level + below as u32, id: meta.ino(), path: canonical })
}

/// cgroup2 mounts listed in `mountinfo`, in mount order.
fn cgroup2_mounts(mountinfo: &str) -> Vec<Cgroup2Mount> {
    mountinfo::mounts_of_type(mountinfo, "cgroup2")
        .into_iter()
        .map(|(root, mount_point)| {
            let root_level = Path::new(&root).components().filter(|c| matches!(c, Component::Normal(_))).count();
            Cgroup2Mount { mount_point, root_level: root_level as u32 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    /// A child process killed on drop, so a failing test leaves nothing behind.
    struct Sleeper(Child);

    impl Sleeper {
        /// `sleep` with a distinctive argument to find it by.
        fn spawn(tag: u32) -> Self {
            let child = Self(Command::new("sleep").arg(format!("3600.{tag}")).spawn().expect("spawn sleep"));
            // Until it has exec'd, the child is a copy of this test binary.
            let pid = Pid::new(child.0.id());
            for _ in 0..500 {
                if process::comm(pid).as_deref() == Some("sleep") {
                    return child;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("`sleep` did not start");
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn own_pid_resolves() {
        let me = Pid::current();
        let comm = process::comm(me).expect("own comm");
        let resolved = TargetSpec::Pids(vec![me, me]).resolve().expect("resolve own pid");
        assert_eq!(resolved.filter, Filter::Pids(vec![me]));
        assert_eq!(
            resolved.info,
            TargetInfo {
                kind: TargetKind::Pid,
                description: format!("pid {me} ({comm})"),
                pids: vec![me],
                file_name: sanitize_name(&comm),
                file_pid: Some(me),
            }
        );
    }

    #[test]
    fn several_pids() {
        let me = Pid::current();
        let child = Sleeper::spawn(1);
        let other = Pid::new(child.0.id());
        let resolved = TargetSpec::Pids(vec![me, other]).resolve().expect("resolve pids");
        assert_eq!(resolved.info.description, format!("pids {me},{other}"));
        // Named after every process, without a pid: not after the first one.
        let comm = sanitize_name(&process::comm(me).expect("own comm"));
        assert_eq!(resolved.info.file_name, format!("{comm}+sleep"));
        assert_eq!(resolved.info.file_pid, None);
        assert!(resolved.info.multi_process());
        assert_eq!(resolved.filter, Filter::Pids(vec![me, other]));
        // Several processes of one name: that name once.
        let twin = Sleeper::spawn(2);
        let resolved = TargetSpec::Pids(vec![other, Pid::new(twin.0.id())]).resolve().expect("resolve pids");
        assert_eq!((resolved.info.file_name.as_str(), resolved.info.file_pid), ("sleep", None));
    }

    #[test]
    fn name_matching_several_processes_is_named_by_the_pattern() {
        // Not the tag of `name_matches_command_line_and_comm`, which runs alongside.
        let tag = std::process::id() * 10 + 3;
        let (a, b) = (Sleeper::spawn(tag), Sleeper::spawn(tag));
        let re = Regex::new(&format!(r"^sleep 3600\.{tag}$")).unwrap();
        let resolved = TargetSpec::Name(re.clone()).resolve().expect("resolve");
        let mut pids = vec![Pid::new(a.0.id()), Pid::new(b.0.id())];
        pids.sort_unstable();
        assert_eq!(resolved.filter, Filter::Pids(pids.clone()));
        assert_eq!(
            resolved.info,
            TargetInfo {
                kind: TargetKind::Name,
                description: format!("name /{re}/"),
                pids,
                file_name: format!("sleep_3600.{tag}"),
                file_pid: None,
            }
        );
    }

    #[test]
    fn names_from_patterns() {
        for (pattern, expected) in [
            ("^cpu_split$", "cpu_split"),
            ("nginx", "nginx"),
            ("^(redis|memcached)", "redis_memcached"),
            ("nginx: worker", "nginx_worker"),
            (r"python.*app\.py", "python_app.py"),
            (r"^java\s+-jar\s+orders", "java_-jar_orders"),
            ("(?i)^order-service", "order-service"),
            ("(?P<svc>api|web)-[0-9]+", "api_web"),
            ("worker-[0-9]{2,3}$", "worker"),
            (".*", "name"),
            ("^$", "name"),
            ("-rf", "rf"),
            ("..hidden", "hidden"),
            ("bad/../../path", "bad_path"),
        ] {
            assert_eq!(name_from_pattern(pattern), expected, "pattern {pattern:?}");
        }
        assert_eq!(name_from_pattern(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn missing_pid() {
        // Above the largest possible pid_max (2^22).
        let err = TargetSpec::Pids(vec![Pid::new(4_194_305)]).resolve().unwrap_err();
        assert!(matches!(err, TargetError::NoSuchPid(p) if p == Pid::new(4_194_305)), "{err:?}");
        assert_eq!(err.to_string(), "no process with pid 4194305 is running");
    }

    #[test]
    fn zombie_is_refused_and_not_running() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = Pid::new(child.id());
        // Not reaped yet: a zombie once it has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat::read(pid).map(|s| s.state) != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "pid {pid} never became a zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process::is_running(pid));
        let err = TargetSpec::Pids(vec![pid]).resolve().unwrap_err();
        assert!(
            matches!(err, TargetError::Exited { pid: p, parent } if p == pid && parent == Pid::current()),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(&format!("process {pid} has exited (a zombie")), "{err}");
        child.wait().expect("reap");
    }

    #[test]
    fn thread_id_is_refused() {
        let me = Pid::current();
        let thread = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            (Tid::new(tid), TargetSpec::Pids(vec![Pid::new(tid)]).resolve())
        });
        let (tid, result) = thread.join().expect("thread");
        let err = result.unwrap_err();
        assert!(matches!(err, TargetError::NotAProcess { tid: t, tgid } if t == tid && tgid == me), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("pid {tid} is a thread of process {me}; profile the process with `--pid {me}`")
        );
    }

    #[test]
    fn name_matches_command_line_and_comm() {
        let tag = std::process::id();
        let child = Sleeper::spawn(tag);
        let pid = Pid::new(child.0.id());

        let by_cmdline = Regex::new(&format!(r"^sleep 3600\.{tag}$")).unwrap();
        let resolved = TargetSpec::Name(by_cmdline.clone()).resolve().expect("resolve by cmdline");
        assert_eq!(resolved.filter, Filter::Pids(vec![pid]));
        assert_eq!(
            resolved.info,
            TargetInfo {
                kind: TargetKind::Name,
                description: format!("name /{by_cmdline}/"),
                pids: vec![pid],
                file_name: "sleep".to_owned(),
                file_pid: Some(pid),
            }
        );

        // Other tests' sleepers may match too.
        assert!(find_pids_by_name(&Regex::new("^sleep$").unwrap()).contains(&pid));
    }

    #[test]
    fn name_never_matches_ourselves() {
        let me = Pid::current();
        let comm = process::comm(me).expect("own comm");
        let re = Regex::new(&format!("^{}$", regex::escape(&comm))).unwrap();
        assert!(!find_pids_by_name(&re).contains(&me));
        let cmdline = command_line(me).expect("own cmdline");
        let re = Regex::new(&regex::escape(&cmdline)).unwrap();
        assert!(!find_pids_by_name(&re).contains(&me));
    }

    #[test]
    fn name_without_match() {
        let re = Regex::new("^no-such-process-[0-9a-f]{32}$").unwrap();
        let err = TargetSpec::Name(re).resolve().unwrap_err();
        assert!(matches!(err, TargetError::NoMatch(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no process name or command line matches `--name ^no-such-process-[0-9a-f]{32}$` \
             (check with `pgrep -af '^no-such-process-[0-9a-f]{32}$'`)"
        );
    }

    #[test]
    fn host() {
        let resolved = TargetSpec::Host.resolve().unwrap();
        assert_eq!(resolved.filter, Filter::All);
        assert_eq!(resolved.info.description, "host");
        assert_eq!(resolved.info.file_name, "host");
        assert_eq!(resolved.info.file_pid, None);
    }

    /// The test process's own cgroup v2 path, as `/proc/self/cgroup` has it.
    fn own_cgroup() -> Option<PathBuf> {
        let text = fs::read_to_string("/proc/self/cgroup").ok()?;
        text.lines().find_map(|l| l.strip_prefix("0::")).map(PathBuf::from)
    }

    fn primary_mount() -> PathBuf {
        let text = mountinfo::read().unwrap();
        cgroup2_mounts(&text).into_iter().next().expect("a cgroup2 mount").mount_point
    }

    #[test]
    fn own_cgroup_resolves_in_every_spelling() {
        let Some(own) = own_cgroup() else {
            panic!("this test needs a cgroup v2 hierarchy (no `0::` line in /proc/self/cgroup)");
        };
        let mount = primary_mount();
        let relative: PathBuf = own.components().skip(1).collect();
        let absolute = mount.join(&relative);
        let meta = fs::metadata(&absolute).unwrap();
        let expected_level = relative.components().count() as u32;

        for spelling in [own.clone(), absolute.clone(), relative.clone()] {
            if spelling.as_os_str().is_empty() {
                continue;
            }
            let resolved = TargetSpec::Cgroup(spelling.clone()).resolve().expect("resolve own cgroup");
            assert_eq!(
                resolved.filter,
                Filter::Cgroup { id: meta.ino(), level: expected_level },
                "spelling {spelling:?}"
            );
            let canonical = fs::canonicalize(&absolute).unwrap();
            assert_eq!(resolved.info.description, format!("cgroup {}", canonical.display()));
            let last = canonical.file_name().unwrap().to_string_lossy();
            assert_eq!(resolved.info.file_name, sanitize_name(&last));
            assert_eq!(resolved.info.kind, TargetKind::Cgroup);
            assert_eq!(resolved.info.file_pid, None);
        }
    }

    #[test]
    fn cgroup_dir_is_absolute() {
        let mount = primary_mount();
        assert_eq!(cgroup_dir(Path::new("/")).unwrap(), fs::canonicalize(&mount).unwrap());
        assert_eq!(cgroup_dir(Path::new("")).unwrap(), fs::canonicalize(&mount).unwrap());
        assert!(cgroup_dir(Path::new("no-such.slice")).is_err());
    }

    #[test]
    fn cgroup_root_is_level_zero() {
        let mount = primary_mount();
        let resolved = TargetSpec::Cgroup(mount.clone()).resolve().unwrap();
        let id = fs::metadata(&mount).unwrap().ino();
        assert_eq!(resolved.filter, Filter::Cgroup { id, level: 0 });
    }

    #[test]
    fn bad_cgroups() {
        let mount = primary_mount();
        let missing = PathBuf::from("no-such.slice/no-such.service");
        let err = TargetSpec::Cgroup(missing).resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup `no-such.slice/no-such.service` does not exist in the cgroup v2 hierarchy mounted at `{}`",
                mount.display()
            )
        );

        let err = TargetSpec::Cgroup(mount.join("cgroup.procs")).resolve().unwrap_err();
        assert!(err.to_string().ends_with("is not a cgroup v2 directory: it is not a directory"), "{err}");

        let outside = std::env::temp_dir();
        let err = TargetSpec::Cgroup(outside).resolve().unwrap_err();
        assert!(matches!(err, TargetError::NotACgroup { .. }), "{err:?}");
        assert!(err.to_string().contains("is outside the cgroup v2 hierarchy"), "{err}");

        // `..` must not climb out of the hierarchy.
        let err = TargetSpec::Cgroup(PathBuf::from("../../etc")).resolve().unwrap_err();
        assert!(matches!(err, TargetError::CgroupNotFound { .. }), "{err:?}");
    }

    #[test]
    fn mountinfo_parsing() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:38 /kubepods/pod\\0401 /mnt/my\\040cgroups rw shared:5 - cgroup2 none rw
";
        let mounts = cgroup2_mounts(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[0].root_level, 0);
        assert_eq!(mounts[1].mount_point, Path::new("/mnt/my cgroups"));
        assert_eq!(mounts[1].root_level, 2);
    }

    #[test]
    fn sanitized_names() {
        for (input, expected) in [
            ("redis-server", "redis-server"),
            ("java.exe_1", "java.exe_1"),
            ("kworker/0:1", "kworker_0_1"),
            ("Web Content", "Web_Content"),
            ("héllo", "h_llo"),
            ("", "unknown"),
            (".", "_"),
            ("..", "_."),
            (".hidden", "_hidden"),
            ("-rf", "_rf"),
            ("../../etc/passwd", "_._.._etc_passwd"),
        ] {
            assert_eq!(sanitize_name(input), expected, "input {input:?}");
        }
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
        assert_eq!(sanitize_name(&"é".repeat(100)), "_".repeat(64));
    }
}
