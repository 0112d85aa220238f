//! Helpers of the trigger tests (`tests/triggers.rs`): the
//! `phases` workload (idle then busy, or resident memory growing), reading
//! a capture's manifest, its profile kinds and its times.
//!
//! The busy phase burns two threads per CPU in a session of its own whose
//! autogroup has nice -10: the tests share the machine with whatever else
//! runs (builds, benchmarks that burn CPUs outside the end-to-end lock), and
//! with autogrouping the scheduler shares CPUs between sessions first, so a
//! plain nice or more threads would not help. A workload starved below a
//! rule's 40 % for a while only makes the test slow and its timings
//! meaningless; how much CPU the target gets is not what is tested, that the
//! daemon sees it is.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Workload, WorkloadKind};

/// Threads for the busy phase: two per online CPU (see the module docs).
pub fn busy_threads() -> usize {
    2 * thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// Niceness of the busy workloads' autogroup (see the module docs).
const BUSY_NICE: &[u8] = b"-10";

/// `phases cpu IDLE THREADS`: asleep for `idle`, then `phase_hot` on
/// [`busy_threads`] threads until killed. Returns it with the wall-clock
/// time its busy phase starts (within a few milliseconds: the sleep starts
/// right after exec).
pub fn idle_then_busy(idle: Duration) -> (Workload, SystemTime) {
    let spawned = SystemTime::now();
    let idle_arg = format!("{:.3}", idle.as_secs_f64());
    let threads = busy_threads().to_string();
    let workload = spawn_favoured(WorkloadKind::Phases, &["cpu", &idle_arg, &threads]);
    (workload, spawned + idle)
}

/// Starts `kind` with `args` in a session and autogroup of its own at
/// niceness -10, so on a shared host its busy phase gets the CPU a rule
/// expects.
pub fn spawn_favoured(kind: WorkloadKind, args: &[&str]) -> Workload {
    let mut cmd = kind.command();
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (setsid, open, write, close,
    // setpriority) on memory that outlives them.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Best effort: without autogrouping the file is missing and
            // the thread niceness below does the job.
            let fd = libc::open(c"/proc/self/autogroup".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, BUSY_NICE.as_ptr().cast(), BUSY_NICE.len());
                libc::close(fd);
            }
            libc::setpriority(libc::PRIO_PROCESS, 0, -10);
            Ok(())
        });
    }
    Workload::spawn_command(kind, cmd)
}

/// `phases grow STEP_KIB PERIOD_MS MAX_MIB`: resident memory grows by
/// `step_kib` every `period_ms` up to `max_mib`, then stays.
pub fn growing_memory(step_kib: u32, period_ms: u32, max_mib: u32) -> Workload {
    let args = [step_kib.to_string(), period_ms.to_string(), max_mib.to_string()];
    Workload::spawn(WorkloadKind::Phases, &["grow", &args[0], &args[1], &args[2]])
}

/// A capture's manifest, parsed.
pub fn read_manifest(path: &Path) -> serde_json::Value {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => panic!("failed to read `{}`: {err}", path.display()),
    };
    match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(err) => panic!("`{}` is not JSON ({err}):\n{text}", path.display()),
    }
}

/// The profile kinds whose pprof files a manifest lists, sorted.
pub fn kinds_written(manifest: &serde_json::Value) -> Vec<String> {
    let mut kinds: Vec<String> = manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["format"] == "pprof")
        .filter_map(|f| Some(f["kind"].as_str()?.to_owned()))
        .collect();
    kinds.sort();
    kinds
}

/// The pprof of profile `kind` that belongs to a manifest.
pub fn profile_of(manifest: &Path, kind: &str) -> PathBuf {
    let name = manifest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    manifest.with_file_name(name.replacen("-capture-", &format!("-{kind}-"), 1).replace(".json", ".pb.gz"))
}

/// The SVG of profile `kind` that belongs to a manifest.
pub fn svg_of(manifest: &Path, kind: &str) -> PathBuf {
    profile_of(manifest, kind).with_extension("").with_extension("svg")
}

/// Parses the manifest's RFC 3339 UTC times (`2026-11-26T13:37:35.372Z`).
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(str::parse::<u64>);
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
    // `days_from_civil`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `later - earlier` in seconds, negative when `later` is earlier.
pub fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_times() {
        let t = parse_utc("2026-11-26T13:37:35.372Z").expect("valid");
        assert_eq!(t.duration_since(UNIX_EPOCH).ok(), Some(Duration::new(1_795_700_255, 372_000_000)));
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_utc("2000-03-01T00:00:00Z"), Some(UNIX_EPOCH + Duration::from_secs(951_868_800)));
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn finds_kinds_and_sibling_files() {
        let manifest = serde_json::json!({"files": [
            {"path": "x-1-offcpu-T.pb.gz", "kind": "offcpu", "format": "pprof"},
            {"path": "x-1-cpu-T.svg", "kind": "cpu", "format": "svg"},
            {"path": "x-1-cpu-T.pb.gz", "kind": "cpu", "format": "pprof"},
        ]});
        assert_eq!(kinds_written(&manifest), ["cpu", "offcpu"]);
        let m = Path::new("/o/x-1-capture-T.json");
        assert_eq!(profile_of(m, "memory"), Path::new("/o/x-1-memory-T.pb.gz"));
        assert_eq!(svg_of(m, "cpu"), Path::new("/o/x-1-cpu-T.svg"));
    }
}
