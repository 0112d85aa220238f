//! End-to-end tests of `stackwatch watch` and `stackwatch ctl`, as
//! root against the real kernel: the daemon is driven through its control
//! FIFO, SIGUSR2 and `ctl`, profiles `cpu_split` (C: `loop_fn -> hot_a 75%,
//! hot_b 25%`), and every capture is read back with `go tool pprof`.
//!
//! Each test has its own scratch directory (control FIFO, output directory)
//! and holds the machine-wide end-to-end lock, so daemons never overlap and
//! BPF program counts are this test's alone.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stackwatch_tests::daemon::{
    assert_cpu_split_profile, bpf_programs_named, ctl, manifests, pprof_of, socket_of, WatchDaemon,
};
use stackwatch_tests::{e2e_guard, require_go, run_stackwatch_timeout, scratch_dir, Workload};

/// How long each capture samples: ~200 samples of a busy thread at 99 Hz.
const CAPTURE: Duration = Duration::from_secs(2);
/// Bound on a state change the daemon makes on its own (a write, a start).
const SETTLE: Duration = Duration::from_secs(60);

fn busy_cpu_split() -> Workload {
    let mut workload = Workload::cpu_split();
    workload.wait_busy();
    workload
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The paths `ctl stop` printed under `wrote:`.
fn written_paths(ctl_stdout: &str) -> Vec<PathBuf> {
    ctl_stdout
        .lines()
        .skip_while(|l| *l != "wrote:")
        .skip(1)
        .filter_map(|l| l.strip_prefix("  "))
        .map(PathBuf::from)
        .collect()
}

fn one_new(before: &[PathBuf], now: &[PathBuf]) -> PathBuf {
    let new: Vec<&PathBuf> = now.iter().filter(|p| !before.contains(p)).collect();
    match new.as_slice() {
        [one] => (*one).clone(),
        _ => panic!("expected exactly one new capture, got {new:?} (before: {before:?})"),
    }
}

fn read(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => panic!("failed to read `{}`: {err}", path.display()),
    }
}

#[test]
fn fifo_start_stop_toggle_and_sigusr2_each_write_one_capture() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let mut daemon = WatchDaemon::start("watch_fifo", &["--pid", &pid, "--capture-duration", "5m"]);
    assert_eq!(daemon.sampling_fds(), 0, "an idle daemon must have no perf event open");

    // `start` … `stop` on the FIFO.
    daemon.send(b"start\n");
    daemon.wait_state("capturing", SETTLE);
    assert!(daemon.sampling_fds() > 0, "a capturing daemon samples through perf events");
    thread::sleep(CAPTURE);
    daemon.send(b"stop\n");
    let first = daemon.wait_manifests(1, SETTLE);
    daemon.wait_state("idle", SETTLE);
    assert_eq!(daemon.sampling_fds(), 0, "stopping must detach every perf event");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_cpu_split_profile(&pprof_of(&first[0]));
    assert!(read(&first[0]).contains(r#""source": "fifo""#), "{}", read(&first[0]));

    // `toggle` twice, as `echo toggle > FIFO` writes it.
    daemon.send(b"toggle\n");
    daemon.wait_state("capturing", SETTLE);
    thread::sleep(CAPTURE);
    daemon.send(b"toggle\n");
    let second = daemon.wait_manifests(2, SETTLE);
    let new = one_new(&first, &second);
    assert_cpu_split_profile(&pprof_of(&new));

    // SIGUSR2 twice.
    daemon.signal(libc::SIGUSR2);
    daemon.wait_state("capturing", SETTLE);
    thread::sleep(CAPTURE);
    daemon.signal(libc::SIGUSR2);
    let third = daemon.wait_manifests(3, SETTLE);
    daemon.wait_state("idle", SETTLE);
    let new = one_new(&second, &third);
    assert_cpu_split_profile(&pprof_of(&new));
    assert!(read(&new).contains(r#""source": "SIGUSR2""#), "{}", read(&new));
    assert_eq!(daemon.manifests().len(), 3, "each start/stop pair writes exactly one capture");

    let out = daemon.stop();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn ctl_reports_state_and_the_files_a_stop_wrote() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let daemon = WatchDaemon::start("watch_ctl", &["--pid", &pid]);
    let control = daemon.control.clone();

    let status = daemon.ctl_ok(&["status"]);
    assert!(status.starts_with("idle: target pid "), "{status}");
    let started = daemon.ctl_ok(&["start", "5m"]);
    assert!(started.starts_with("capture started: pid ") && started.contains("(cpu_split) for 5m"), "{started}");
    let status = daemon.ctl_ok(&["status"]);
    assert!(status.starts_with("capturing: pid ") && status.contains("started by ctl"), "{status}");
    let again = daemon.ctl_ok(&["start"]);
    assert!(again.starts_with("already capturing"), "a second start must not disturb the capture: {again}");
    let json = daemon.ctl_ok(&["status", "--json"]);
    assert!(json.contains(r#""state":"capturing""#) && json.contains(r#""samples":"#), "{json}");
    thread::sleep(CAPTURE);

    let stopped = daemon.ctl_ok(&["stop"]);
    let paths = written_paths(&stopped);
    assert_eq!(paths.len(), 3, "pprof, svg and manifest: {stopped}");
    for path in &paths {
        assert!(path.is_file(), "`ctl stop` printed `{}`, which is not a file", path.display());
        assert!(path.starts_with(&daemon.output), "{}", path.display());
    }
    let pprof = paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).expect("a pprof among the paths");
    assert_cpu_split_profile(pprof);
    assert_eq!(daemon.manifests(), vec![paths[2].clone()]);

    let status = daemon.ctl_ok(&["status"]);
    assert!(status.starts_with("idle") && status.contains("last capture: pid "), "{status}");
    let nothing = daemon.ctl_ok(&["stop"]);
    assert!(nothing.starts_with("idle: no capture is running"), "{nothing}");

    // `toggle` through ctl: starts, then stops with the files.
    assert!(daemon.ctl_ok(&["toggle"]).starts_with("capture started"));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(written_paths(&daemon.ctl_ok(&["toggle"])).len(), 3);

    let out = daemon.stop();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gone = ctl(&control, &["status"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(stderr(&gone).starts_with("error: no stackwatch daemon: `"), "{}", stderr(&gone));
}

#[test]
fn ctl_without_a_daemon_fails_clearly() {
    let dir = scratch_dir("watch_ctl_no_daemon");
    let control = dir.join("control");

    let out = ctl(&control, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: no stackwatch daemon: `{}` does not exist; start one with `stackwatch watch` \
             (or `systemctl start stackwatch`), or point --control at its FIFO",
            control.display()
        )
    );

    // A socket left behind by a daemon that died.
    drop(std::os::unix::net::UnixListener::bind(socket_of(&control)).expect("bind"));
    let out = ctl(&control, &["stop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("left over from a daemon that is gone"), "{}", stderr(&out));
    fs::remove_file(socket_of(&control)).expect("remove the stale socket");

    // Something that accepts but never answers.
    let _listener = std::os::unix::net::UnixListener::bind(socket_of(&control)).expect("bind");
    let start = Instant::now();
    let out = ctl(&control, &["--timeout", "1s", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: no reply from the daemon at `"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(20), "ctl must give up at its timeout");
}

/// Deterministic bytes covering every value, with some newlines and NULs.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn hostile_fifo_input_leaves_the_daemon_running_and_the_next_capture_correct() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let mut daemon = WatchDaemon::start("watch_hostile", &["--pid", &pid, "--capture-duration", "5m"]);

    daemon.send(b"frobnicate\n");
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    daemon.send(&huge);
    daemon.send(b"stop now\nstart 5 parsecs\n\n   \r\n");
    daemon.send(&noise(256 * 1024));
    daemon.send(b"\n");
    daemon.send("toggle\n".repeat(200).as_bytes());

    // An even number of toggles: the daemon settles idle, whatever it did between.
    daemon.wait_state("idle", SETTLE);
    thread::sleep(Duration::from_millis(500));
    daemon.wait_state("idle", SETTLE);
    assert!(daemon.try_status().is_none(), "the daemon died:\n{}", daemon.stderr());
    let log = daemon.stderr();
    for reason in [
        "unknown command `frobnicate`",
        "the line is longer than 4096 bytes; it was discarded",
        "`stop` takes no argument, got `now`",
        "invalid duration `5 parsecs` for `start`",
    ] {
        assert!(log.contains(reason), "the log must give the reason `{reason}`:\n{log}");
    }
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    assert!(hwm_kib < 256 * 1024, "a 1 MiB line must not be buffered whole: VmHWM {hwm_kib} kB");

    // The next capture is a normal one.
    let before = daemon.manifests();
    daemon.ctl_ok(&["start"]);
    thread::sleep(CAPTURE);
    let paths = written_paths(&daemon.ctl_ok(&["stop"]));
    assert_eq!(paths.len(), 3, "{paths:?}");
    let new = one_new(&before, &daemon.manifests());
    assert_eq!(new, paths[2]);
    assert_cpu_split_profile(&pprof_of(&new));

    let out = daemon.stop();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// `watch --control CONTROL --output-dir OUTPUT` must exit 1 with one
/// `error:` line holding `expected` and the option that fixes it, before
/// sampling anything; leave CONTROL (and its socket) as they were; and
/// create nothing: OUTPUT (which does not exist) stays absent.
fn assert_refused_with(control: &Path, output: &Path, expected: &str, fix: &str) {
    let state = |path: &Path| fs::symlink_metadata(path).ok().map(|m| (m.file_type(), m.len(), m.ino()));
    let before = (state(control), state(&socket_of(control)));
    assert!(!output.exists(), "the test needs a missing output directory");
    let control_arg = control.to_string_lossy().into_owned();
    let output_arg = output.to_string_lossy().into_owned();
    let out = run_stackwatch_timeout(
        &["watch", "--control", &control_arg, "--output-dir", &output_arg],
        Duration::from_secs(30),
    );
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "`{}` must be refused:\n{message}", control.display());
    let lines: Vec<&str> = message.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("error: "), "one `error:` line, got:\n{message}");
    assert!(message.contains(expected), "expected `{expected}` in:\n{message}");
    assert!(message.contains(fix), "the message must say how to fix it ({fix}):\n{message}");
    assert_eq!(before, (state(control), state(&socket_of(control))), "`{}` must be left alone", control.display());
    let mut top = output;
    while let Some(parent) = top.parent().filter(|p| !p.exists()) {
        top = parent;
    }
    assert!(!output.exists() && !top.exists(), "a refused start created `{}`", top.display());
}

fn assert_refused(control: &Path, output: &Path, expected: &str) {
    assert_refused_with(control, output, expected, "--control");
}

#[test]
fn unsafe_control_paths_are_refused_and_nothing_is_created() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = scratch_dir("watch_refused_paths");
    let run = dir.join("run");
    fs::create_dir(&run).expect("mkdir");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).expect("chmod");
    // Two levels that do not exist: neither may be created.
    let output = dir.join("out").join("captures");
    let victim = dir.join("victim");
    fs::write(&victim, b"precious").expect("write victim");

    let link = run.join("to-file");
    symlink(&victim, &link).expect("symlink");
    assert_refused(&link, &output, "is a symbolic link");

    // A symlink to a perfectly good FIFO of ours is still a symlink.
    let real = run.join("real-fifo");
    mkfifo(&real);
    let link = run.join("to-fifo");
    symlink(&real, &link).expect("symlink");
    assert_refused(&link, &output, "is a symbolic link");

    let file = run.join("regular");
    fs::write(&file, b"toggle\n").expect("write");
    assert_refused(&file, &output, "is a regular file, not a FIFO");

    let foreign = run.join("foreign");
    mkfifo(&foreign);
    std::os::unix::fs::lchown(&foreign, Some(65534), Some(65534)).expect("chown");
    assert_refused(&foreign, &output, "owned by uid 65534");

    // Ours, but other users may have opened it (their descriptor would outlive a chmod).
    let open_to_all = run.join("open-to-all");
    mkfifo(&open_to_all);
    fs::set_permissions(&open_to_all, fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_refused(&open_to_all, &output, "mode 666");

    let shared = dir.join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
    assert_refused(&shared.join("control"), &output, "writable by other users");
    assert!(!shared.join("control").exists());

    // A control path another daemon is using.
    let busy = WatchDaemon::start_in(dir.clone(), run.join("busy"), dir.join("busy-out"), &[]);
    assert_refused(&busy.control, &output, "already using the control FIFO");
    assert_eq!(busy.state(), "idle", "the running daemon must not notice");

    // An output directory that cannot be made: the control directory is not created either.
    let not_a_dir = dir.join("not-a-dir");
    fs::write(&not_a_dir, b"in the way").expect("write");
    let fresh_run = dir.join("fresh-run");
    assert_refused_with(&fresh_run.join("control"), &not_a_dir.join("out"), "not-a-dir", "--output-dir");
    assert!(!fresh_run.exists(), "a refused start created `{}`", fresh_run.display());

    assert_eq!(fs::read(&victim).expect("read victim"), b"precious");
    assert_eq!(busy.stop().status.code(), Some(0));
}

/// `YYYYMMDDTHHMMSSZ` of `t`, as stackwatch names files.
fn utc_compact(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[test]
fn a_planted_symlink_in_the_output_dir_cannot_redirect_a_capture() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let workload = busy_cpu_split();
    let pid = workload.pid();
    let daemon = WatchDaemon::start("watch_symlink_race", &["--pid", &pid.to_string(), "--capture-duration", "5m"]);
    let victim = daemon.dir.join("victim.txt");
    fs::write(&victim, b"precious").expect("write victim");
    // Every name a capture starting in the next 20 s can take, pointing at the victim.
    let now = SystemTime::now();
    let mut planted = Vec::new();
    for s in 0..20 {
        let ts = utc_compact(now + Duration::from_secs(s));
        for name in [
            format!("cpu_split-{pid}-cpu-{ts}.pb.gz"),
            format!("cpu_split-{pid}-cpu-{ts}.svg"),
            format!("cpu_split-{pid}-capture-{ts}.json"),
        ] {
            let path = daemon.output.join(name);
            symlink(&victim, &path).expect("plant symlink");
            planted.push(path);
        }
    }

    daemon.ctl_ok(&["start"]);
    thread::sleep(CAPTURE);
    let paths = written_paths(&daemon.ctl_ok(&["stop"]));
    assert_eq!(paths.len(), 3, "{paths:?}");
    for path in &paths {
        assert!(!planted.contains(path), "the capture used a planted name: {}", path.display());
        let meta = fs::symlink_metadata(path).expect("stat");
        assert!(meta.file_type().is_file(), "{} must be a regular file", path.display());
    }
    assert_eq!(fs::read(&victim).expect("read victim"), b"precious", "the victim was overwritten");
    for path in &planted {
        assert!(fs::symlink_metadata(path).expect("planted").file_type().is_symlink(), "{}", path.display());
    }
    let pprof = paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).expect("pprof");
    assert_cpu_split_profile(pprof);
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn sigterm_during_a_capture_writes_it_and_leaves_nothing_behind() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let baseline = bpf_programs_named("cpu_sample");
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let mut daemon = WatchDaemon::start("watch_sigterm", &["--pid", &pid, "--capture-duration", "5m"]);
    assert_eq!(bpf_programs_named("cpu_sample"), baseline + 1, "the daemon loads its program once, at start");
    let (control, output) = (daemon.control.clone(), daemon.output.clone());

    daemon.send(b"start\n");
    daemon.wait_state("capturing", SETTLE);
    thread::sleep(CAPTURE);
    let sent = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = loop {
        if let Some(status) = daemon.try_status() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(15), "still running 15 s after SIGTERM:\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(20));
    };
    let log = daemon.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("capture ended (SIGTERM)"), "{log}");

    let written = manifests(&output);
    assert_eq!(written.len(), 1, "the in-flight capture must be written: {written:?}\n{log}");
    assert_cpu_split_profile(&pprof_of(&written[0]));
    assert!(fs::symlink_metadata(&control).is_err(), "the FIFO `{}` must be removed", control.display());
    assert!(fs::symlink_metadata(socket_of(&control)).is_err(), "the socket must be removed");
    assert_eq!(bpf_programs_named("cpu_sample"), baseline, "no BPF program of ours may survive the daemon");
}

/// One try at signalling a daemon twice while it writes. `None` when the
/// write finished before the second signal could land (then there is
/// nothing to test in this run); else the exit code and the log.
fn second_signal_while_writing(attempt: usize) -> Option<(Option<i32>, String, PathBuf)> {
    let _workload = busy_cpu_split();
    // A whole-host capture with off-CPU stacks and every format: a write
    // long enough to be caught.
    let mut daemon = WatchDaemon::start(
        &format!("watch_second_signal_{attempt}"),
        &[
            "--profiles",
            "cpu,offcpu",
            "--formats",
            "pprof,svg,folded",
            "--frequency",
            "499",
            "--capture-duration",
            "5m",
        ],
    );
    daemon.ctl_ok(&["start"]);
    thread::sleep(CAPTURE);
    daemon.signal(libc::SIGTERM);
    let deadline = Instant::now() + SETTLE;
    while !daemon.stderr().contains("finishing the capture") {
        assert!(Instant::now() < deadline, "no sign of the last write:\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(1));
    }
    if daemon.try_status().is_some() || daemon.stderr().contains("capture written") {
        return None;
    }
    // SIGINT, not a second SIGTERM: two identical signals may merge into one.
    // Not reaped (try_status said it runs), so the pid is still the daemon's
    // even if it exits this instant.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGINT) };
    let output = daemon.output.clone();
    let out = daemon.stop();
    let log = stderr(&out);
    if log.contains("capture written") {
        return None;
    }
    Some((out.status.code(), log, output))
}

#[test]
fn a_second_signal_while_writing_exits_at_once_says_so_and_leaves_no_temporary_file() {
    let Some(_guard) = e2e_guard() else { return };
    for attempt in 0..5 {
        let Some((code, log, output)) = second_signal_while_writing(attempt) else {
            eprintln!("attempt {attempt}: the write finished before the second signal; again");
            continue;
        };
        assert_eq!(code, Some(1), "a capture given up is a failed exit:\n{log}");
        assert!(log.contains("could not be written: a second signal arrived; gave up writing"), "{log}");
        assert!(log.contains("the daemon is stopping"), "{log}");
        assert!(!log.contains("keeps running"), "the log must not claim the daemon keeps running:\n{log}");
        // Whatever the abandoned writer got done is whole; nothing half-made remains.
        thread::sleep(Duration::from_secs(1));
        for entry in fs::read_dir(&output).expect("list the output directory") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "a temporary file was left behind: {name}");
            assert!(entry.file_type().expect("type").is_file(), "{name}");
        }
        return;
    }
    panic!("in 5 attempts the daemon always finished writing before a second signal could arrive");
}

#[test]
fn retention_keeps_at_most_n_captures() {
    let Some(_guard) = e2e_guard() else { return };
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let daemon = WatchDaemon::start("watch_retention", &["--pid", &pid, "--max-captures", "2"]);
    // An older capture of another target and a stranger file.
    let old = daemon.output.join("other-1-capture-20200101T000000Z.json");
    let old_pprof = daemon.output.join("other-1-cpu-20200101T000000Z.pb.gz");
    fs::write(&old, b"{}").expect("write");
    fs::write(&old_pprof, b"").expect("write");
    let notes = daemon.output.join("notes.txt");
    fs::write(&notes, b"keep me").expect("write");
    // A temporary file of ours left by a writer killed an hour ago (named
    // temporaries are the fallback where O_TMPFILE is missing), and one of
    // another tool's: only ours goes.
    let stale = daemon.output.join(".other-1-cpu-20200101T000000Z.pb.gz.4242.1f2e3d.tmp");
    let foreign_tmp = daemon.output.join(".editor-swap.tmp");
    for path in [&stale, &foreign_tmp] {
        let file = fs::File::create(path).expect("create");
        file.set_modified(SystemTime::now() - Duration::from_secs(3600)).expect("set mtime");
    }

    let mut written = Vec::new();
    for _ in 0..4 {
        daemon.ctl_ok(&["start"]);
        // Distinct start seconds, so captures are told apart by time.
        thread::sleep(Duration::from_millis(1100));
        let paths = written_paths(&daemon.ctl_ok(&["stop"]));
        assert_eq!(paths.len(), 3, "{paths:?}");
        written.push(paths);
        assert!(daemon.manifests().len() <= 2, "{:?}", daemon.manifests());
    }
    let kept: Vec<PathBuf> = written[2..].iter().map(|p| p[2].clone()).collect();
    assert_eq!(daemon.manifests(), kept, "the two newest captures remain");
    for path in written[..2].iter().flatten().chain([&old, &old_pprof]) {
        assert!(!path.exists(), "`{}` should have been pruned", path.display());
    }
    for path in written[2..].iter().flatten() {
        assert!(path.is_file(), "`{}` should remain", path.display());
    }
    assert_eq!(fs::read(&notes).expect("notes"), b"keep me");
    assert!(!stale.exists(), "a stale temporary file of ours must be swept");
    assert!(foreign_tmp.exists(), "another tool's temporary file must stay");
    assert_eq!(daemon.stop().status.code(), Some(0));
}

#[test]
fn a_missing_target_refuses_the_capture_and_name_is_resolved_at_each_start() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let mut daemon = WatchDaemon::start("watch_name", &["--name", "^cpu_split$", "--capture-duration", "5m"]);
    let refused = daemon.ctl(&["start"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stderr(&refused).starts_with("error: no capture started: no process name or command line matches"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(daemon.state(), "idle");

    // The process appears, then restarts under a new pid: each capture follows it.
    for _ in 0..2 {
        let workload = busy_cpu_split();
        daemon.ctl_ok(&["start"]);
        thread::sleep(CAPTURE);
        let paths = written_paths(&daemon.ctl_ok(&["stop"]));
        let pprof = paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).expect("pprof");
        assert!(pprof.to_string_lossy().contains(&format!("cpu_split-{}-cpu-", workload.pid())), "{}", pprof.display());
        assert_cpu_split_profile(pprof);
    }

    // A --pid target that exits mid-capture: the capture ends and is written.
    let mut workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let by_pid = WatchDaemon::start("watch_pid_exit", &["--pid", &pid, "--capture-duration", "5m"]);
    by_pid.ctl_ok(&["start"]);
    thread::sleep(CAPTURE);
    // SAFETY: kill has no memory-safety preconditions; the child is ours and unreaped.
    unsafe { libc::kill(workload.pid() as libc::pid_t, libc::SIGKILL) };
    while workload.try_status().is_none() {
        thread::sleep(Duration::from_millis(20));
    }
    by_pid.wait_manifests(1, SETTLE);
    by_pid.wait_state("idle", SETTLE);
    assert!(by_pid.stderr().contains("every target process exited"), "{}", by_pid.stderr());
    let refused = by_pid.ctl(&["start"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains(&format!("no process with pid {pid} is running")), "{}", stderr(&refused));
    assert!(daemon.try_status().is_none());
}

#[test]
fn an_unwritable_output_dir_is_survived() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let workload = busy_cpu_split();
    let pid = workload.pid().to_string();
    let mut daemon = WatchDaemon::start("watch_unwritable", &["--pid", &pid]);
    // The output directory turns into a file: nothing can be written there.
    fs::remove_dir_all(&daemon.output).expect("remove the output dir");
    fs::write(&daemon.output, b"in the way").expect("write");

    daemon.ctl_ok(&["start"]);
    thread::sleep(Duration::from_millis(500));
    let failed = daemon.ctl(&["stop"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert!(stderr(&failed).contains("could not be written"), "{}", stderr(&failed));
    assert_eq!(daemon.state(), "idle");
    assert!(daemon.try_status().is_none(), "the daemon must survive a failed write");

    // Once the disk is fixed, the next capture works (the directory is recreated).
    fs::remove_file(&daemon.output).expect("remove");
    daemon.ctl_ok(&["start"]);
    thread::sleep(CAPTURE);
    let paths = written_paths(&daemon.ctl_ok(&["stop"]));
    let pprof = paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).expect("pprof");
    assert_cpu_split_profile(pprof);
    let mode = fs::metadata(&daemon.output).expect("output dir").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    assert_eq!(daemon.stop().status.code(), Some(0));
}

/// The cgroup v2 mount point, from `/proc/self/mounts`.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(mount))
    })
}

/// A cgroup v2 directory holding one workload; killed and removed on drop.
struct CgroupWithWorkload {
    dir: PathBuf,
    workload: Option<Workload>,
}

impl CgroupWithWorkload {
    fn new(dir: PathBuf) -> Self {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir `{}`: {e}", dir.display()));
        let workload = busy_cpu_split();
        fs::write(dir.join("cgroup.procs"), workload.pid().to_string())
            .unwrap_or_else(|e| panic!("moving pid {} into `{}`: {e}", workload.pid(), dir.display()));
        Self { dir, workload: Some(workload) }
    }
}

impl Drop for CgroupWithWorkload {
    fn drop(&mut self) {
        drop(self.workload.take());
        // The killed process leaves the cgroup once reaped; retry briefly.
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_cgroup_target_is_followed_when_its_cgroup_is_recreated() {
    let Some(_guard) = e2e_guard() else { return };
    if !require_go() {
        return;
    }
    let Some(root) = cgroup2_root() else {
        assert!(!stackwatch_tests::is_ci(), "no cgroup v2 hierarchy is mounted");
        eprintln!("note: skipping: no cgroup v2 hierarchy is mounted");
        return;
    };
    let name = format!("stackwatch-watch-test-{}", std::process::id());
    let dir = root.join(&name);
    let daemon = WatchDaemon::start("watch_cgroup", &["--cgroup", &name, "--capture-duration", "5m"]);
    // Not there yet: refused, the daemon carries on.
    let refused = daemon.ctl(&["start"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));

    // A unit that restarts gets a new cgroup (a new id compiled into the
    // program): each capture must find the current one.
    for _ in 0..2 {
        let cgroup = CgroupWithWorkload::new(dir.clone());
        daemon.ctl_ok(&["start"]);
        thread::sleep(CAPTURE);
        let paths = written_paths(&daemon.ctl_ok(&["stop"]));
        let pprof = paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).expect("pprof");
        assert_cpu_split_profile(pprof);
        drop(cgroup);
    }
    let reloads = daemon.stderr().matches("loading the eBPF program for cgroup").count();
    assert_eq!(reloads, 2, "one load per new cgroup:\n{}", daemon.stderr());
    assert_eq!(daemon.stop().status.code(), Some(0));
}
