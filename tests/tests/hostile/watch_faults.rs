//! Faults of `watch`: its control FIFO, socket and output directory taken
//! away; full disks; signal storms; `kill -9`; floods of toggles and `ctl`
//! clients; 60 start/stop cycles; its target exiting, stopping, turning
//! zombie or exec'ing mid-capture.

use std::os::unix::fs::OpenOptionsExt as _;

use super::*;

// ---------------------------------------------------------------------------
// Faults: watch

/// One daemon fault: a daemon of its own (`--pid TARGET --capture-duration
/// 5m` and `extra`), the fault, then: the daemon, if still running,
/// answers `status` and stops with exit 0; every file in its output
/// directory is valid (orphans allowed when `case` returns true: a writer
/// killed before its manifest); nothing of ours stays loaded.
fn daemon_fault(
    tally: &mut Tally,
    name: &str,
    target: u32,
    extra: &[&str],
    case: impl FnOnce(&mut WatchDaemon) -> bool,
) {
    // Short: the control socket's path must fit in `sun_path` (108 bytes).
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let slug = format!("hw{}", SEQ.fetch_add(1, Ordering::Relaxed));
    tally.fault(&format!("watch: {name}"), || {
        let before = OurBpf::now();
        let pid = target.to_string();
        let mut args = vec!["--pid", &pid, "--capture-duration", "5m"];
        args.extend_from_slice(extra);
        let mut daemon = WatchDaemon::start(&slug, &args);
        let output = daemon.output.clone();
        let orphans = case(&mut daemon);
        if daemon.try_status().is_none() {
            status_json(&daemon);
            let out = daemon.stop();
            assert_eq!(out.status.code(), Some(0), "{name}: the daemon did not stop cleanly:\n{}", text(&out.stderr));
            assert!(crash_lines(&text(&out.stderr)).is_empty(), "{}", text(&out.stderr));
        } else {
            drop(daemon);
        }
        assert_captures_valid(&output, orphans);
        OurBpf::assert_none_left_since(&before, name);
    });
}

/// `ctl stop` that must write a capture: returns the paths it printed.
fn stop_and_collect(daemon: &WatchDaemon, what: &str) -> Vec<PathBuf> {
    let out = daemon.ctl(&["stop"]);
    if !out.status.success() {
        data_lost(&format!("{what}: `ctl stop` failed: {}\n--- daemon\n{}", text(&out.stderr), daemon.stderr()));
    }
    let stdout = text(&out.stdout);
    let paths: Vec<PathBuf> = stdout
        .lines()
        .skip_while(|l| *l != "wrote:")
        .skip(1)
        .filter_map(|l| l.strip_prefix("  "))
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() || !paths.iter().all(|p| p.is_file()) {
        data_lost(&format!("{what}: `ctl stop` printed files that are not there:\n{stdout}"));
    }
    paths
}

/// A `ctl stop` whose capture could not be written (in full): exit 1, one
/// `error:` line, and on stdout at most the files that were written, which
/// exist. Returns the error line.
fn assert_failed_stop(out: &Output, what: &str) -> String {
    let listed: Vec<PathBuf> =
        text(&out.stdout).lines().filter_map(|l| l.strip_prefix("  ")).map(PathBuf::from).collect();
    for path in &listed {
        assert!(path.is_file(), "{what}: `ctl stop` lists `{}`, which is not a file", path.display());
    }
    let rest: Vec<String> =
        text(&out.stdout).lines().filter(|l| *l != "wrote:" && !l.starts_with("  ")).map(str::to_owned).collect();
    assert!(rest.is_empty(), "{what}: unexpected lines on stdout: {rest:?}");
    let without_stdout = Output { status: out.status, stdout: Vec::new(), stderr: out.stderr.clone() };
    assert_one_error(&without_stdout, 1, what)
}

/// Waits until the daemon is idle with `n` manifests written.
fn wait_written(daemon: &WatchDaemon, n: usize, what: &str) {
    let deadline = Instant::now() + SETTLE;
    while daemon.manifests().len() < n || daemon.state() != "idle" {
        if Instant::now() > deadline {
            data_lost(&format!("{what}: {} of {n} captures written\n{}", daemon.manifests().len(), daemon.stderr()));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon survived: running, answering, no crash in its log.
fn assert_alive(daemon: &mut WatchDaemon) {
    assert!(daemon.try_status().is_none(), "the daemon exited:\n{}", daemon.stderr());
    assert!(crash_lines(&daemon.stderr()).is_empty(), "{}", daemon.stderr());
    status_json(daemon);
}

/// Waits until the daemon exits; returns its exit code.
fn wait_daemon_exit(daemon: &mut WatchDaemon) -> Option<i32> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(status) = daemon.try_status() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the daemon did not exit:\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn daemon_faults(tally: &mut Tally, target: u32) {
    let pid = target.to_string();

    daemon_fault(tally, "the control FIFO is removed while it runs", target, &[], |d| {
        fs::remove_file(&d.control).unwrap_or_else(|e| panic!("{e}"));
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        stop_and_collect(d, "FIFO removed");
        d.signal(libc::SIGUSR2);
        d.wait_state("capturing", SETTLE);
        d.signal(libc::SIGUSR2);
        wait_written(d, 2, "FIFO removed");
        assert_alive(d);
        false
    });
    daemon_fault(tally, "the control FIFO is replaced by a regular file", target, &[], |d| {
        fs::remove_file(&d.control).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&d.control, b"toggle\n").unwrap_or_else(|e| panic!("{e}"));
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        stop_and_collect(d, "FIFO replaced by a file");
        d.signal(libc::SIGTERM);
        assert_eq!(wait_daemon_exit(d), Some(0), "{}", d.stderr());
        assert_eq!(fs::read(&d.control).unwrap_or_default(), b"toggle\n", "the daemon removed a file it does not own");
        false
    });
    daemon_fault(tally, "the control FIFO is replaced by someone else's FIFO", target, &[], |d| {
        fs::remove_file(&d.control).unwrap_or_else(|e| panic!("{e}"));
        mkfifo(&d.control);
        // Nobody reads the new FIFO: a write to it cannot reach the daemon.
        let reached = File::options().write(true).custom_flags(libc::O_NONBLOCK).open(&d.control).is_ok();
        assert!(!reached, "someone reads the replaced FIFO");
        assert_state(d, "idle", None);
        d.signal(libc::SIGTERM);
        assert_eq!(wait_daemon_exit(d), Some(0), "{}", d.stderr());
        assert!(fs::symlink_metadata(&d.control).is_ok(), "the daemon removed a FIFO it did not make");
        let _ = fs::remove_file(&d.control);
        false
    });
    daemon_fault(tally, "the control socket is removed while it runs", target, &[], |d| {
        fs::remove_file(socket_of(&d.control)).unwrap_or_else(|e| panic!("{e}"));
        let out = d.ctl(&["status"]);
        assert_one_error(&out, 1, "socket removed");
        d.send(b"start\n");
        thread::sleep(Duration::from_millis(500));
        d.send(b"stop\n");
        let deadline = Instant::now() + SETTLE;
        while d.manifests().is_empty() {
            if Instant::now() > deadline {
                data_lost(&format!("the FIFO `stop` wrote nothing:\n{}", d.stderr()));
            }
            thread::sleep(Duration::from_millis(50));
        }
        d.signal(libc::SIGTERM);
        assert_eq!(wait_daemon_exit(d), Some(0), "{}", d.stderr());
        false
    });
    daemon_fault(tally, "the control directory is removed while it runs", target, &[], |d| {
        let run = d.control.parent().map(Path::to_owned).unwrap_or_default();
        fs::remove_dir_all(&run).unwrap_or_else(|e| panic!("{e}"));
        assert_one_error(&d.ctl(&["status"]), 1, "control dir removed");
        d.signal(libc::SIGUSR2);
        thread::sleep(Duration::from_millis(500));
        d.signal(libc::SIGUSR2);
        let deadline = Instant::now() + SETTLE;
        while d.manifests().is_empty() {
            if Instant::now() > deadline {
                data_lost(&format!("SIGUSR2 toggles wrote nothing:\n{}", d.stderr()));
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(300));
        d.signal(libc::SIGTERM);
        assert_eq!(wait_daemon_exit(d), Some(0), "{}", d.stderr());
        false
    });
    for (label, setup) in [("is removed", 0), ("is renamed", 1), ("turns read-only", 2), ("is replaced by a file", 3)] {
        daemon_fault(tally, &format!("the output directory {label} mid-capture"), target, &[], |d| {
            d.ctl_ok(&["start"]);
            thread::sleep(Duration::from_millis(400));
            let moved = d.dir.join("moved");
            let mut bind = None;
            match setup {
                0 => fs::remove_dir_all(&d.output).unwrap_or_else(|e| panic!("{e}")),
                1 => fs::rename(&d.output, &moved).unwrap_or_else(|e| panic!("{e}")),
                2 => bind = Some(ReadOnlyBind::new(&d.output).unwrap_or_else(|e| panic!("{e}"))),
                _ => {
                    fs::remove_dir_all(&d.output).unwrap_or_else(|e| panic!("{e}"));
                    fs::write(&d.output, b"in the way").unwrap_or_else(|e| panic!("{e}"));
                }
            }
            let out = d.ctl(&["stop"]);
            if setup <= 1 {
                // Nothing stops a write: the directory can be made again.
                if !out.status.success() {
                    data_lost(&format!("`ctl stop` failed: {}\n{}", text(&out.stderr), d.stderr()));
                }
            } else {
                let line = assert_failed_stop(&out, label);
                assert!(line.contains("could not be written"), "{line}");
            }
            assert_alive(d);
            drop(bind);
            if setup == 3 {
                fs::remove_file(&d.output).unwrap_or_else(|e| panic!("{e}"));
            }
            if setup == 1 {
                assert_captures_valid(&moved, false);
            }
            // The next capture works.
            d.ctl_ok(&["start"]);
            thread::sleep(Duration::from_millis(300));
            stop_and_collect(d, "the capture after");
            false
        });
    }
    daemon_fault(tally, "the disk fills mid-capture: the flamegraph does not fit", target, &[], |d| {
        let mount = Tmpfs::mount(&d.output, "16k").unwrap_or_else(|e| panic!("{e}"));
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(800));
        let line = assert_failed_stop(&d.ctl(&["stop"]), "disk full");
        assert!(line.contains("No space left on device"), "{line}");
        let captures = assert_captures_valid(&d.output, false);
        assert_eq!(captures.manifests.len(), 1, "the manifest is written anyway");
        assert_alive(d);
        drop(mount);
        false
    });
    daemon_fault(tally, "the disk is full before the capture is written", target, &[], |d| {
        let mount = Tmpfs::mount(&d.output, "16k").unwrap_or_else(|e| panic!("{e}"));
        let mut file = File::create(d.output.join("filler")).unwrap_or_else(|e| panic!("{e}"));
        while file.write_all(&[0u8; 4096]).is_ok() {}
        drop(file);
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        assert_failed_stop(&d.ctl(&["stop"]), "disk completely full");
        let names: Vec<_> = fs::read_dir(&d.output)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [OsString::from("filler")], "nothing but the filler, no partial file");
        assert_alive(d);
        drop(mount);
        false
    });
    daemon_fault(tally, "a storm of 200 SIGUSR2", target, &[], |d| {
        for _ in 0..200 {
            d.signal(libc::SIGUSR2);
        }
        thread::sleep(Duration::from_millis(500));
        assert_alive(d);
        settle_idle(d);
        false
    });
    daemon_fault(tally, "500 toggles in one burst on the FIFO", target, &[], |d| {
        d.send("toggle\n".repeat(500).as_bytes());
        // An even number: idle at the end, whatever happened between.
        let deadline = Instant::now() + SETTLE;
        while d.state() != "idle" {
            assert!(Instant::now() < deadline, "still not idle:\n{}", d.stderr());
            thread::sleep(Duration::from_millis(100));
        }
        assert_alive(d);
        false
    });
    daemon_fault(tally, "50 concurrent ctl toggles", target, &[], |d| {
        let control = d.control.clone();
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let control = control.clone();
                thread::spawn(move || ctl(&control, &["toggle"]))
            })
            .collect();
        for client in clients {
            let out = client.join().unwrap_or_else(|_| panic!("ctl thread"));
            if !out.status.success() {
                let line = assert_one_error(&out, 1, "concurrent toggle");
                assert!(line.contains("busy"), "{line}");
            }
        }
        assert_alive(d);
        settle_idle(d);
        false
    });
    daemon_fault(tally, "40 concurrent ctl status during a capture", target, &[], |d| {
        d.ctl_ok(&["start"]);
        let started = status_json(d)["capture"]["started"].as_str().unwrap_or_default().to_owned();
        let clients: Vec<_> = (0..40)
            .map(|_| {
                let control = d.control.clone();
                thread::spawn(move || ctl(&control, &["status"]))
            })
            .collect();
        for client in clients {
            let out = client.join().unwrap_or_else(|_| panic!("ctl thread"));
            if !out.status.success() {
                assert!(assert_one_error(&out, 1, "concurrent status").contains("busy"));
            }
        }
        assert_state(d, "capturing", Some(&started));
        stop_and_collect(d, "concurrent status");
        false
    });
    daemon_fault(tally, "20 ctl connections that never send anything", target, &[], |d| {
        let socket = socket_of(&d.control);
        let idle: Vec<UnixStream> = (0..20).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
        let out = d.ctl(&["status"]);
        if !out.status.success() {
            assert!(assert_one_error(&out, 1, "idle clients").contains("busy"));
        }
        drop(idle);
        d.ctl_ok(&["status"]);
        assert_alive(d);
        false
    });
    daemon_fault(tally, "a second daemon on the same control path during a capture", target, &[], |d| {
        d.ctl_ok(&["start"]);
        let started = status_json(d)["capture"]["started"].as_str().unwrap_or_default().to_owned();
        let control = d.control.to_string_lossy().into_owned();
        let other_out = d.dir.join("other-out");
        let out = run_with_timeout(
            stackwatch_tests::stackwatch_command(&[
                "watch",
                "--control",
                &control,
                "--output-dir",
                &other_out.to_string_lossy(),
            ]),
            SETTLE,
        );
        let line = assert_one_error(&out, 1, "second daemon");
        assert!(line.contains("already using"), "{line}");
        assert!(!other_out.exists(), "the refused daemon created its output directory");
        assert_state(d, "capturing", Some(&started));
        stop_and_collect(d, "second daemon");
        false
    });
    daemon_fault(tally, "two daemons and a record write one directory in the same second", target, &[], |d| {
        let other = WatchDaemon::start_in(
            d.dir.clone(),
            d.dir.join("run2").join("control"),
            d.output.clone(),
            &["--pid", &pid],
        );
        d.ctl_ok(&["start"]);
        other.ctl_ok(&["start"]);
        let rec = record_bg(&["--pid", &pid, "--duration", "500ms"], &d.output);
        thread::sleep(Duration::from_millis(500));
        stop_and_collect(d, "first daemon");
        stop_and_collect(&other, "second daemon");
        assert_eq!(assert_clean_end(&wait_exit(rec, SETTLE), "record beside two daemons"), None);
        let captures = assert_captures_valid(&d.output, false);
        if captures.manifests.len() != 3 {
            data_lost(&format!("three writers, {} captures", captures.manifests.len()));
        }
        assert_eq!(other.stop().status.code(), Some(0));
        false
    });
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        daemon_fault(tally, &format!("a storm of 100 {name} while idle"), target, &[], |d| {
            for _ in 0..100 {
                if !d.signal_if_running(signal) {
                    break;
                }
            }
            assert_eq!(wait_daemon_exit(d), Some(0), "{}", d.stderr());
            assert!(fs::symlink_metadata(&d.control).is_err() && fs::symlink_metadata(socket_of(&d.control)).is_err());
            false
        });
    }
    daemon_fault(tally, "a storm of SIGTERM during a capture", target, &[], |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(500));
        for _ in 0..100 {
            if !d.signal_if_running(libc::SIGTERM) {
                break;
            }
        }
        let code = wait_daemon_exit(d);
        let log = d.stderr();
        // A second signal while writing gives up on purpose (documented);
        // either way nothing half-written stays.
        match code {
            Some(0) => assert_eq!(d.manifests().len(), 1, "{log}"),
            Some(1) => assert!(log.contains("a second signal arrived; gave up writing"), "{log}"),
            other => panic!("exit {other:?}:\n{log}"),
        }
        true
    });
    for (signal, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGUSR1, "SIGUSR1")] {
        daemon_fault(tally, &format!("{name} during a capture"), target, &[], |d| {
            d.ctl_ok(&["start"]);
            thread::sleep(Duration::from_millis(500));
            d.signal(signal);
            thread::sleep(Duration::from_millis(500));
            match d.try_status() {
                None => {
                    assert_alive(d);
                    stop_and_collect(d, name);
                }
                Some(status) => {
                    if status.code() != Some(0) || d.manifests().len() != 1 {
                        data_lost(&format!(
                            "{name} ended the daemon ({status}) without writing the capture:\n{}",
                            d.stderr()
                        ));
                    }
                }
            }
            false
        });
    }
    daemon_fault(tally, "the daemon is stopped (SIGSTOP) during a capture", target, &[], |d| {
        d.ctl_ok(&["start"]);
        let started = status_json(d)["capture"]["started"].as_str().unwrap_or_default().to_owned();
        d.signal(libc::SIGSTOP);
        let out = d.ctl(&["--timeout", "1s", "status"]);
        assert!(assert_one_error(&out, 1, "stopped daemon").contains("no reply"));
        d.signal(libc::SIGCONT);
        assert_state(d, "capturing", Some(&started));
        stop_and_collect(d, "stopped daemon");
        false
    });
    daemon_fault(tally, "SIGKILL of the daemon mid-capture, then a new daemon on its paths", target, &[], |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        d.signal(libc::SIGKILL);
        wait_daemon_exit(d);
        let next = WatchDaemon::start_in(d.dir.clone(), d.control.clone(), d.output.clone(), &["--pid", &pid]);
        next.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        stop_and_collect(&next, "after a killed daemon");
        assert_eq!(next.stop().status.code(), Some(0));
        false
    });
    for delay in [0, 30, 100] {
        daemon_fault(
            tally,
            &format!("SIGKILL of the daemon while writing (+{delay} ms)"),
            target,
            &["--formats", "pprof,svg,folded", "--profiles", "cpu,offcpu", "-v"],
            |d| {
                d.ctl_ok(&["start"]);
                thread::sleep(Duration::from_millis(500));
                let mark = d.stderr().len();
                d.send(b"stop\n");
                let deadline = Instant::now() + SETTLE;
                while !log_since(d, mark).contains("capture ended") {
                    assert!(Instant::now() < deadline, "{}", d.stderr());
                    thread::sleep(Duration::from_millis(1));
                }
                thread::sleep(Duration::from_millis(delay));
                d.signal(libc::SIGKILL);
                wait_daemon_exit(d);
                true
            },
        );
    }
    daemon_fault(tally, "ctl stop racing a capture that ends by itself", target, &[], |d| {
        for (i, ms) in [280u64, 300, 320].into_iter().enumerate() {
            d.ctl_ok(&["start", "300ms"]);
            thread::sleep(Duration::from_millis(ms));
            let out = d.ctl(&["stop"]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            wait_written(d, i + 1, "stop racing the end");
        }
        assert_eq!(d.manifests().len(), 3, "each capture written once");
        false
    });
    daemon_fault(tally, "start, stop and start again while the first is written", target, &[], |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        d.send(b"stop\nstart\n");
        d.wait_state("capturing", SETTLE);
        thread::sleep(Duration::from_millis(300));
        stop_and_collect(d, "restart while writing");
        wait_written(d, 2, "restart while writing");
        false
    });
    cycles(tally, target);
    daemon_target_faults(tally);
}

/// Daemon faults of the target itself: each gets a target of its own.
fn daemon_target_faults(tally: &mut Tally) {
    let mut workload = cpu_split_for("0");
    let target = workload.pid();
    daemon_fault(tally, "the target is killed mid-capture", target, &[], move |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(500));
        kill(workload.pid(), libc::SIGKILL);
        while workload.try_status().is_none() {
            thread::sleep(Duration::from_millis(10));
        }
        wait_written(d, 1, "target killed");
        assert!(d.stderr().contains("every target process exited"), "{}", d.stderr());
        assert_one_error(&d.ctl(&["start"]), 1, "start after the target is gone");
        assert_alive(d);
        false
    });
    // Long enough to outlive the daemon's start on a busy machine: a
    // target already a zombie is refused at `start`, not followed into it.
    let workload = cpu_split_for("4");
    let target = workload.pid();
    daemon_fault(tally, "the target turns zombie mid-capture", target, &[], move |d| {
        d.ctl_ok(&["start"]);
        // It exits after 4 s and stays a zombie: nobody reaps it. The
        // capture must end then (not at its 5 m), and be written.
        let deadline = Instant::now() + SETTLE;
        while d.state() != "idle" {
            assert!(Instant::now() < deadline, "the capture went on after its target turned zombie:\n{}", d.stderr());
            thread::sleep(Duration::from_millis(50));
        }
        wait_written(d, 1, "target zombie");
        assert!(d.stderr().contains("every target process exited"), "{}", d.stderr());
        assert_alive(d);
        drop(workload);
        false
    });
    let workload = cpu_split_for("0");
    let target = workload.pid();
    daemon_fault(tally, "the target is stopped (SIGSTOP) during the capture", target, &[], move |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(300));
        kill(workload.pid(), libc::SIGSTOP);
        thread::sleep(Duration::from_millis(500));
        stop_and_collect(d, "target stopped");
        kill(workload.pid(), libc::SIGCONT);
        assert_alive(d);
        drop(workload);
        false
    });
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 0.5; exec \"$0\" 0"]).arg(WorkloadKind::CpuSplit.binary());
    let workload = Workload::spawn_command(WorkloadKind::CpuSplit, cmd);
    let target = workload.pid();
    daemon_fault(tally, "the target execs mid-capture", target, &[], move |d| {
        d.ctl_ok(&["start"]);
        thread::sleep(Duration::from_millis(1200));
        let paths = stop_and_collect(d, "target execs");
        let pprof =
            paths.iter().find(|p| p.to_string_lossy().ends_with(".pb.gz")).unwrap_or_else(|| panic!("{paths:?}"));
        assert_cpu_split_profile(pprof);
        assert_alive(d);
        drop(workload);
        false
    });
}

/// Brings the daemon to idle: waits for a write to end, stops a capture.
fn settle_idle(daemon: &WatchDaemon) {
    let deadline = Instant::now() + SETTLE;
    loop {
        match daemon.state().as_str() {
            "idle" => return,
            "capturing" => {
                let _ = daemon.ctl(&["stop"]);
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "the daemon never settled:\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(100));
    }
}

/// 60 start/stop cycles: every capture written and valid, memory, open
/// descriptors and loaded programs flat, nothing attached while idle.
fn cycles(tally: &mut Tally, target: u32) {
    daemon_fault(tally, "60 start/stop cycles", target, &[], |d| {
        let programs = OurBpf::held_by(d.pid());
        assert!(!programs.programs.is_empty() && programs.links.is_empty(), "idle at start: {programs:?}");
        let mut rss = Vec::new();
        let mut open = Vec::new();
        let mut first_open = Vec::new();
        for i in 0..60 {
            d.ctl_ok(&["start"]);
            thread::sleep(Duration::from_millis(50));
            let paths = stop_and_collect(d, &format!("cycle {i}"));
            assert_eq!(paths.len(), 3, "{paths:?}");
            rss.push(rss_kib(d.pid()));
            // What each descriptor is, so a leak names what leaked.
            let now = d.open_fds();
            open.push(now.len());
            if i == 0 {
                first_open = now;
            } else if i == 59 && now.len() > first_open.len() {
                let mut added = now;
                for fd in &first_open {
                    if let Some(at) = added.iter().position(|a| a == fd) {
                        added.remove(at);
                    }
                }
                panic!("descriptors leak: {} -> {}, opened since the first cycle: {added:?}", open[0], open[59]);
            }
        }
        let captures = assert_captures_valid(&d.output, false);
        if captures.manifests.len() != 60 {
            data_lost(&format!("60 cycles wrote {} captures", captures.manifests.len()));
        }
        let (first, tenth, last) = (rss[0], rss[9], rss[59]);
        let _ = writeln!(
            std::io::stderr(),
            "hostile: daemon RSS over 60 start/stop cycles: first {first} KiB, 10th {tenth} KiB, last {last} KiB; \
             open descriptors first {} last {}",
            open[0],
            open[59]
        );
        // Caches fill in the first cycles; after that nothing may grow.
        assert!(last <= tenth + tenth / 10 + 2048, "RSS grew from {tenth} KiB (cycle 10) to {last} KiB (cycle 60)");
        let now = OurBpf::held_by(d.pid());
        assert_eq!(now.programs, programs.programs, "programs loaded or unloaded by the cycles");
        assert!(now.links.is_empty(), "links left attached while idle: {:?}", now.links);
        false
    });
}
