//! Small facts and knobs of the operating system that several layers need:
//! the clocks a capture is timed with, raw `bpf(2)` calls ([`bpf`]), the
//! process's own limits and identity, directories made so they can be
//! taken back ([`dirs`]),
//! open files held by identity ([`file`]), the lines of `/proc/PID/maps`
//! ([`maps_line`]) and the pages of read-only file views given back
//! ([`views`]).

pub(crate) mod bpf;
pub(crate) mod dirs;
pub(crate) mod file;
pub(crate) mod maps_line;
pub(crate) mod views;

/// The descriptor a system call returned (`ret`), or its error.
pub(crate) fn owned_fd(ret: libc::c_long) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::other("the kernel returned an invalid descriptor"))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The name to run test `name` of module `module` (its `module_path!()`)
/// by, in this test binary: the path without the crate's name.
#[cfg(test)]
pub(crate) fn child_test_name(module: &str, name: &str) -> String {
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::{name}")
}

/// Runs the `#[ignore]`d test `test` ([`child_test_name`]) with `cmd`, a
/// command for this test binary (or a copy) set up as the test needs, and
/// asserts that it passed: for checks of process-wide state (the umask,
/// the uid, the resident set) that other tests' threads would disturb.
#[cfg(test)]
pub(crate) fn run_child_test_with(mut cmd: std::process::Command, test: &str) {
    cmd.args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"]);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`run_child_test_with`] this test binary, as it is, for test `name` of
/// module `module` (its `module_path!()`).
#[cfg(test)]
pub(crate) fn run_child_test(module: &str, name: &str) {
    let exe = std::process::Command::new(std::env::current_exe().unwrap());
    run_child_test_with(exe, &child_test_name(module, name));
}

use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Time since boot in clock ticks, the clock of a process's start time
/// (field 22 of `/proc/<pid>/stat`), to tell processes started since a
/// reading from ones that only now match.
pub(crate) fn boot_time_ticks() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ticks = ticks_per_second() as u64;
    Some(u64::try_from(ts.tv_sec).ok()? * ticks + u64::try_from(ts.tv_nsec).ok()? * ticks / 1_000_000_000)
}

/// CPU time of the calling thread: the difference around a piece of work
/// done on it is that work's cost.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?))
}

/// The errno of the first OS error among `err` and its causes: how a
/// failure is told apart, rather than by the words of its message.
pub(crate) fn os_error(err: &anyhow::Error) -> Option<i32> {
    err.chain().find_map(|cause| cause.downcast_ref::<std::io::Error>()?.raw_os_error())
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Makes every thread allocate from glibc's one main arena, before any
/// thread starts. By default each thread that allocates gets an arena of
/// its own (up to 8 per CPU), and the memory one thread freed is not reused
/// by another: the symbolizer's thread, the runtime's workers and the table
/// builder each kept their own free pages. Whole-host capture, peak RSS
/// (3 runs alternating, docs/benchmarks.md): 35.1–38.9 MiB with the
/// default, 33.7–34.8 MiB with one arena. stackwatch's threads allocate
/// little at the same time, so the shared arena's lock costs nothing
/// measurable. Other C libraries: nothing to do.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain libc call with constant arguments; returns 0 on
        // failure, which leaves glibc's default.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } == 0 {
            tracing::debug!("mallopt(M_ARENA_MAX, 1) failed: threads keep their own arenas");
        }
    }
}

/// The system's page size (4096 when it cannot be read).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it so such
/// hosts do not fail with a confusing EPERM. Harmless elsewhere.
pub(crate) fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer to a local.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("failed to raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}

/// Raises the soft limit of open files toward `wanted` (at most the hard
/// limit): the symbolizer holds a descriptor per cached object and pinned file.
pub(crate) fn raise_open_files_limit(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= wanted {
        return;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: as above; failure leaves the limit unchanged, which is fine.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

/// The calling thread runs ahead of ordinary tasks until this is dropped:
/// `SCHED_FIFO` at the lowest real-time priority, for the short, bounded
/// steps a capture cannot have delayed — loading (the kernel's verifier
/// runs on this thread: about 0.4 s of CPU for every kind with the unwinder
/// and the Python walk), attaching, and closing the window. A target of
/// 2000 runnable threads otherwise leaves a `nice 0` stackwatch one
/// 2000th of the CPUs and a 3 s capture takes minutes to start.
///
/// Threads started meanwhile do not inherit it (`SCHED_RESET_ON_FORK`), and
/// the kernel's real-time throttling (`sched_rt_runtime_us`, 95 % by
/// default) keeps even a runaway step from owning a CPU. Where the policy
/// cannot be set (no `CAP_SYS_NICE`) or the thread already has a policy of
/// its own (`chrt`), the thread stays as it is.
pub(crate) struct Urgent {
    previous: Option<(libc::c_int, libc::sched_param)>,
}

/// `SCHED_RESET_ON_FORK` (linux/sched.h), which the libc crate does not
/// define for glibc targets.
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

impl Urgent {
    pub(crate) fn enter() -> Self {
        // SAFETY: no memory-safety preconditions; 0 is the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy != libc::SCHED_OTHER {
            return Self { previous: None };
        }
        let mut old = libc::sched_param { sched_priority: 0 };
        // SAFETY: `old` is a valid, writable sched_param.
        if unsafe { libc::sched_getparam(0, &mut old) } != 0 {
            return Self { previous: None };
        }
        let urgent = libc::sched_param { sched_priority: 1 };
        // SAFETY: `urgent` is a valid sched_param; 0 is the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | SCHED_RESET_ON_FORK, &urgent) } != 0 {
            tracing::debug!("running at normal priority: {}", std::io::Error::last_os_error());
            return Self { previous: None };
        }
        Self { previous: Some((policy, old)) }
    }

    /// Whether the thread runs ahead of ordinary tasks now.
    #[cfg(test)]
    fn is_raised(&self) -> bool {
        self.previous.is_some()
    }
}

/// Raises `thread`, just started by the calling thread (it may not have
/// run yet), to the caller's real-time policy if the caller has one (it is
/// [`Urgent`]). A thread woken while its starter runs the verifier at
/// real-time priority is otherwise often queued on that CPU until the
/// verifier is done, and work handed to it meanwhile waits. The thread
/// returns to normal with [`normal_priority`]. Returns whether it did.
pub(crate) fn raise_like_caller(thread: libc::pthread_t) -> bool {
    if policy() != libc::SCHED_FIFO {
        return false;
    }
    let urgent = libc::sched_param { sched_priority: 1 };
    // SAFETY: `thread` is a live thread of this process (the caller holds
    // its join handle); `urgent` is a valid sched_param.
    unsafe { libc::pthread_setschedparam(thread, libc::SCHED_FIFO | SCHED_RESET_ON_FORK, &urgent) == 0 }
}

/// Returns the calling thread to the normal policy if it runs at a
/// real-time one (see [`raise_like_caller`]).
pub(crate) fn normal_priority() {
    if policy() == libc::SCHED_OTHER {
        return;
    }
    let normal = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid sched_param; 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal) } != 0 {
        tracing::warn!("failed to return to normal priority: {}", std::io::Error::last_os_error());
    }
}

/// The calling thread's scheduling policy, without `SCHED_RESET_ON_FORK`.
fn policy() -> libc::c_int {
    // SAFETY: no memory-safety preconditions; 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    policy & !SCHED_RESET_ON_FORK
}

impl Drop for Urgent {
    fn drop(&mut self) {
        if let Some((policy, param)) = self.previous.take() {
            // SAFETY: `param` is the sched_param read at `enter`.
            if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
                tracing::warn!("failed to return to normal priority: {}", std::io::Error::last_os_error());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Pid;

    #[test]
    fn urgent_raises_this_thread_only_and_gives_it_back() {
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER);
            let urgent = Urgent::enter();
            // Root (CAP_SYS_NICE) may raise itself; the tests run as root in CI.
            if euid() == 0 {
                assert!(urgent.is_raised());
                assert_eq!(policy(), libc::SCHED_FIFO);
                let child = std::thread::spawn(policy).join().expect("child thread");
                assert_eq!(child, libc::SCHED_OTHER, "a thread started meanwhile must not inherit it");
            } else {
                assert!(!urgent.is_raised());
            }
            drop(urgent);
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn a_thread_started_by_an_urgent_one_is_raised_until_it_lowers_itself() {
        use std::os::unix::thread::JoinHandleExt as _;
        std::thread::spawn(|| {
            let start = |raise: bool| {
                let (go, wait) = std::sync::mpsc::channel::<()>();
                let child = std::thread::spawn(move || {
                    wait.recv().expect("go");
                    let raised = policy();
                    normal_priority();
                    (raised, policy())
                });
                let raised = raise && raise_like_caller(child.as_pthread_t());
                go.send(()).expect("send");
                (raised, child.join().expect("child"))
            };
            // Not urgent: nothing to share.
            assert_eq!(start(true), (false, (libc::SCHED_OTHER, libc::SCHED_OTHER)));
            let urgent = Urgent::enter();
            // Root (CAP_SYS_NICE) may raise threads; the tests run as root in CI.
            if euid() == 0 {
                assert!(urgent.is_raised());
                assert_eq!(start(true), (true, (libc::SCHED_FIFO, libc::SCHED_OTHER)));
                assert_eq!(start(false).1, (libc::SCHED_OTHER, libc::SCHED_OTHER), "not inherited");
            }
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn os_error_is_found_among_the_causes() {
        let eperm = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EPERM)).context("loading");
        assert_eq!(os_error(&eperm.context("outer")), Some(libc::EPERM));
        // Words are not an errno.
        let words = anyhow::anyhow!("Operation not permitted");
        assert_eq!(os_error(&words), None);
    }

    #[test]
    fn boot_time_is_after_our_start() {
        let me = crate::procfs::stat::read(Pid::new(std::process::id())).unwrap();
        assert!(boot_time_ticks().unwrap() >= me.start_ticks);
    }
}
