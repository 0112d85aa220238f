//! The sampler against real processes this test starts (no root needed).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use regex::Regex;

use super::*;
use crate::procfs::cgroup::parse_cgroup_v2_path;
use crate::procfs::host::parse_meminfo;

/// A child process, killed and reaped on drop so a failing test leaves
/// nothing running.
struct Workload(Child);

impl Workload {
    fn sh(script: &str) -> Self {
        match Command::new("sh").arg("-c").arg(script).spawn() {
            Ok(child) => Self(child),
            Err(e) => panic!("cannot spawn `sh -c {script}`: {e}"),
        }
    }

    /// `sleep` with a distinctive argument, returned once it has exec'd
    /// (`exec` sets the name before the command line).
    fn sleeper(tag: &str) -> Self {
        let child = match Command::new("sleep").arg(tag).spawn() {
            Ok(child) => Self(child),
            Err(e) => panic!("cannot spawn `sleep`: {e}"),
        };
        let pid = child.pid();
        wait_for(|| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == format!("sleep\0{tag}\0").as_bytes()));
        child
    }

    fn pid(&self) -> Pid {
        Pid::new(self.0.id())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `condition` for up to 10 s.
fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn online_cpus() -> f64 {
    HostInfo::read().online_cpus
}

/// Time on CPU and time waiting for one, in seconds, from
/// `/proc/<pid>/schedstat`: the scheduler's own count, independent of the
/// tick-based `/proc/<pid>/stat` the sampler reads.
fn schedstat(pid: Pid) -> (f64, f64) {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(0.0) / 1e9);
    (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0))
}

#[test]
fn busy_loop_uses_a_whole_cpu() {
    let burner = Workload::sh("while :; do :; done");
    let pid = burner.pid();
    let mut sampler = MetricSampler::new(&TargetSpec::Pids(vec![pid]));
    let (run0, wait0) = schedstat(pid);
    let first = sampler.sample(Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let second = sampler.sample(Instant::now());
    let (run1, wait1) = schedstat(pid);
    assert!(first.present && second.present);
    assert_eq!(second.pids, [pid]);
    assert!(second.cpu_capacity > 0.0 && second.cpu_capacity <= online_cpus());

    let seconds = (second.at - first.at).as_secs_f64();
    let cpus = (second.cpu_seconds - first.cpu_seconds) / seconds;
    let (ran, waited) = ((run1 - run0) / seconds, (wait1 - wait0) / seconds);
    assert!(cpus <= 1.1, "one thread used {cpus:.2} CPUs");
    // What the scheduler says it got, give or take the 10 ms ticks.
    if ran + waited > 0.0 {
        assert!((cpus - ran).abs() <= 0.1, "sampled {cpus:.2} CPUs, the scheduler says {ran:.2}");
    }
    // On a host busy enough to keep the loop waiting for a CPU, it cannot
    // get a whole one; `schedstat` shows how long it waited.
    if waited < 0.1 {
        assert!(cpus >= 0.8, "the busy loop used {cpus:.2} CPUs");
    } else {
        eprintln!("busy host: the loop waited {waited:.2} of each second for a CPU and used {cpus:.2} CPUs");
        assert!(cpus >= 0.8 * (1.0 - waited), "the busy loop used {cpus:.2} CPUs and waited {waited:.2}");
    }
}

#[test]
fn growing_memory_is_seen() {
    // `sh` itself grows to about 64 MiB after a second: a string doubled 26 times.
    let grower = Workload::sh("sleep 1; s=x; i=0; while [ $i -lt 26 ]; do s=\"$s$s\"; i=$((i+1)); done; sleep 60");
    let mut sampler = MetricSampler::new(&TargetSpec::Pids(vec![grower.pid()]));
    let before = sampler.sample(Instant::now());
    assert!(before.present);
    assert!(before.mem_bytes < 32 << 20, "{} bytes before growing", before.mem_bytes);
    let mut after = before.clone();
    wait_for(|| {
        after = sampler.sample(Instant::now());
        after.mem_bytes >= 64 << 20
    });
    assert!(after.mem_limit >= after.mem_bytes, "{after:?}");
}

#[test]
fn name_target_is_waited_for_and_followed_across_restarts() {
    let tag = format!("3600.{}1", std::process::id());
    let re = Regex::new(&format!(r"^sleep {}$", regex::escape(&tag))).unwrap();
    let mut sampler = MetricSampler::new(&TargetSpec::Name(re));

    // Not started yet: absent, no panic.
    let s = sampler.sample(Instant::now());
    assert!(!s.present && s.pids.is_empty(), "{s:?}");

    let first = Workload::sleeper(&tag);
    let s = sampler.sample(Instant::now());
    assert!(s.present, "{s:?}");
    assert_eq!(s.pids, [first.pid()]);
    assert!(s.mem_bytes > 0 && s.cpu_capacity > 0.0 && s.mem_limit > 0);
    let mut last_cpu = s.cpu_seconds;

    drop(first);
    let s = sampler.sample(Instant::now());
    assert!(!s.present, "{s:?}");

    let second = Workload::sleeper(&tag);
    let s = sampler.sample(Instant::now());
    assert!(s.present, "{s:?}");
    assert_eq!(s.pids, [second.pid()]);
    assert!(s.cpu_seconds >= last_cpu, "{} < {last_cpu}", s.cpu_seconds);
    last_cpu = s.cpu_seconds;

    // Two instances at once are one target.
    let third = Workload::sleeper(&tag);
    let s = sampler.sample(Instant::now());
    let mut both = vec![second.pid(), third.pid()];
    both.sort_unstable();
    assert_eq!(s.pids, both);
    assert!(s.cpu_seconds >= last_cpu);
}

#[test]
fn missing_targets_are_absent() {
    let now = Instant::now();
    let mut sampler = MetricSampler::new(&TargetSpec::Pids(vec![Pid::new(4_194_305)]));
    assert!(!sampler.sample(now).present);
    let mut sampler = MetricSampler::new(&TargetSpec::Cgroup(PathBuf::from("no-such.slice/no-such.service")));
    let s = sampler.sample(now);
    assert!(!s.present && s.epoch == 0, "{s:?}");
}

#[test]
fn exited_pid_target_stays_absent() {
    let sleeper = Workload::sleeper(&format!("3600.{}2", std::process::id()));
    let pid = sleeper.pid();
    let mut sampler = MetricSampler::new(&TargetSpec::Pids(vec![pid]));
    assert!(sampler.sample(Instant::now()).present);
    drop(sleeper);
    assert!(!sampler.sample(Instant::now()).present);
}

#[test]
fn host() {
    let mut sampler = MetricSampler::new(&TargetSpec::Host);
    let s = sampler.sample(Instant::now());
    assert!(s.present);
    assert_eq!(s.cpu_capacity, online_cpus());
    let meminfo = parse_meminfo(&fs::read_to_string("/proc/meminfo").unwrap()).unwrap();
    assert_eq!(s.mem_limit, meminfo.total);
    assert!(s.mem_bytes > 0 && s.mem_bytes <= s.mem_limit, "{s:?}");
    assert!(s.cpu_seconds > 0.0);
    let later = sampler.sample(Instant::now());
    assert!(later.cpu_seconds >= s.cpu_seconds);
}

#[test]
fn own_cgroup() {
    let Some(own) =
        fs::read_to_string("/proc/self/cgroup").ok().as_deref().and_then(parse_cgroup_v2_path).map(PathBuf::from)
    else {
        eprintln!("no cgroup v2 hierarchy: nothing to test");
        return;
    };
    let mut sampler = MetricSampler::new(&TargetSpec::Cgroup(own.clone()));
    let s = sampler.sample(Instant::now());
    assert!(s.present, "{own:?}: {s:?}");
    assert_eq!(s.epoch, 1);
    assert!(s.cpu_capacity > 0.0 && s.cpu_capacity <= online_cpus());
    // This process is in it, so it uses memory.
    assert!(s.mem_bytes > 0 && s.mem_limit > 0, "{s:?}");
    let later = sampler.sample(Instant::now());
    assert_eq!(later.epoch, 1);
    assert!(later.cpu_seconds >= s.cpu_seconds);
}

#[test]
fn own_process_limits() {
    let me = std::process::id();
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let dirs = CgroupDirs::of_process(Pid::new(me), &V1Mounts::read());
    // Each hierarchy the process is listed in is found.
    assert_eq!(dirs.v2.is_some(), parse_cgroup_v2_path(&text).is_some(), "{dirs:?}");
    for dir in [&dirs.v2, &dirs.v1_memory, &dirs.v1_cpu].into_iter().flatten() {
        assert!(dir.join("cgroup.procs").is_file(), "{dir:?}");
    }
    let mut sampler = MetricSampler::new(&TargetSpec::Pids(vec![Pid::new(me)]));
    let s = sampler.sample(Instant::now());
    let limits = LimitCache::default().get(&dirs, Instant::now());
    assert_eq!(s.cpu_capacity, limits.cpus.map_or(online_cpus(), |quota| quota.min(online_cpus())));
    let total = parse_meminfo(&fs::read_to_string("/proc/meminfo").unwrap()).unwrap().total;
    assert_eq!(s.mem_limit, limits.mem_bytes.map_or(total, |limit| limit.min(total)));
}

/// A cgroup v2 child this test creates (as root; elsewhere it cannot) and
/// removes on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create(name: &str) -> Option<Self> {
        let dir = cgroup_dir(Path::new("/")).ok()?.join(name);
        fs::create_dir(&dir).ok()?;
        Some(Self(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Fails while a process is still in it; the workloads are gone by now.
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn cgroup_target_is_followed_when_recreated() {
    let name = format!("stackwatch-test-{}", std::process::id());
    let Some(cgroup) = TestCgroup::create(&name) else {
        eprintln!("cannot create a cgroup (not root?): nothing to test");
        return;
    };
    let mut sampler = MetricSampler::new(&TargetSpec::Cgroup(PathBuf::from(&name)));
    let empty = sampler.sample(Instant::now());
    assert!(empty.present && empty.epoch == 1, "{empty:?}");

    let burner = Workload::sh("while :; do :; done");
    fs::write(cgroup.0.join("cgroup.procs"), burner.pid().to_string()).unwrap();
    let first = sampler.sample(Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    let second = sampler.sample(Instant::now());
    assert_eq!(second.epoch, 1);
    assert!(second.cpu_seconds - first.cpu_seconds > 0.1, "{first:?} → {second:?}");
    assert!(second.mem_bytes > 0, "{second:?}");

    // The unit stops: its cgroup goes away, then comes back.
    drop(burner);
    fs::remove_dir(&cgroup.0).unwrap();
    assert!(!sampler.sample(Instant::now()).present);
    fs::create_dir(&cgroup.0).unwrap();
    let again = sampler.sample(Instant::now());
    assert!(again.present && again.epoch == 2, "{again:?}");
}
