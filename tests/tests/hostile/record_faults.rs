//! Faults of `record`: its target exits, execs, forks, stops, turns zombie;
//! its output directory goes away or fills up; signals, `kill -9` mid-write,
//! concurrent writers, a closed stdout, few descriptors.

use super::*;

pub(super) fn record_faults(tally: &mut Tally, burner: u32) {
    let n = &mut 0;
    let burner_arg = burner.to_string();
    let bp = burner_arg.as_str();

    // Targets live 3 s: long enough for `record` to start on a busy
    // machine (a target gone before it starts is refused, not followed).
    record_fault(tally, n, "the target exits mid-capture", |dir| {
        let workload = cpu_split_for("3");
        let pid = workload.pid().to_string();
        let reaper = reap_in_background(workload);
        let out = wait_exit(record_bg(&["--pid", &pid, "--duration", "30s"], dir), Duration::from_secs(60));
        assert_clean_end(&out, "target exits");
        assert!(text(&out.stderr).contains("every target process has exited"), "{}", text(&out.stderr));
        assert!(one_capture(dir, "target exits").cpu_samples > 0);
        let _ = reaper.join();
    });
    record_fault(tally, n, "the target turns zombie mid-capture (its parent does not reap it)", |dir| {
        let workload = cpu_split_for("3");
        let pid = workload.pid().to_string();
        let out = wait_exit(record_bg(&["--pid", &pid, "--duration", "30s"], dir), Duration::from_secs(60));
        assert_clean_end(&out, "target zombie");
        assert!(
            text(&out.stderr).contains("every target process has exited"),
            "a zombie runs no more: the recording must end\n{}",
            text(&out.stderr)
        );
        one_capture(dir, "target zombie");
        drop(workload);
    });
    record_fault(tally, n, "the target is killed mid-capture", |dir| {
        let mut workload = cpu_split_for("0");
        let pid = workload.pid().to_string();
        let bg = record_bg(&["--pid", &pid, "--duration", "30s"], dir);
        thread::sleep(Duration::from_millis(700));
        kill(workload.pid(), libc::SIGKILL);
        while workload.try_status().is_none() {
            thread::sleep(Duration::from_millis(10));
        }
        let out = wait_exit(bg, Duration::from_secs(60));
        assert_clean_end(&out, "target killed");
        assert!(one_capture(dir, "target killed").cpu_samples > 0);
    });
    record_fault(tally, n, "the target execs mid-capture", |dir| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.7; exec \"$0\" 1.5"]).arg(WorkloadKind::CpuSplit.binary());
        let workload = Workload::spawn_command(WorkloadKind::CpuSplit, cmd);
        let pid = workload.pid().to_string();
        let reaper = reap_in_background(workload);
        let out = wait_exit(record_bg(&["--pid", &pid, "--duration", "30s"], dir), Duration::from_secs(60));
        assert_clean_end(&out, "target execs");
        assert!(one_capture(dir, "target execs").cpu_samples > 0);
        let _ = reaper.join();
    });
    record_fault(tally, n, "the target forks children mid-capture", |dir| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.3; \"$0\" 1 & \"$0\" 1 & wait"]).arg(WorkloadKind::CpuSplit.binary());
        let workload = Workload::spawn_command(WorkloadKind::CpuSplit, cmd);
        let pid = workload.pid().to_string();
        let reaper = reap_in_background(workload);
        let out = wait_exit(record_bg(&["--pid", &pid, "--duration", "30s"], dir), Duration::from_secs(60));
        assert_clean_end(&out, "target forks");
        one_capture(dir, "target forks");
        let _ = reaper.join();
    });
    record_fault(tally, n, "the target is stopped (SIGSTOP) for the whole capture", |dir| {
        let workload = cpu_split_for("0");
        kill(workload.pid(), libc::SIGSTOP);
        wait_proc_state(workload.pid(), 'T', SETTLE);
        let pid = workload.pid().to_string();
        let out = wait_exit(record_bg(&["--pid", &pid, "--duration", "1s"], dir), SETTLE);
        assert_eq!(assert_clean_end(&out, "target stopped"), None);
        one_capture(dir, "target stopped");
        kill(workload.pid(), libc::SIGCONT);
    });
    record_fault(tally, n, "the target is stopped and continued mid-capture", |dir| {
        let workload = cpu_split_for("0");
        let pid = workload.pid().to_string();
        let bg = record_bg(&["--pid", &pid, "--duration", "2s"], dir);
        thread::sleep(Duration::from_millis(400));
        kill(workload.pid(), libc::SIGSTOP);
        thread::sleep(Duration::from_millis(600));
        kill(workload.pid(), libc::SIGCONT);
        let out = wait_exit(bg, SETTLE);
        assert_eq!(assert_clean_end(&out, "target stopped and continued"), None);
        assert!(one_capture(dir, "target stopped and continued").cpu_samples > 0);
    });
    record_fault(tally, n, "the target is a kernel thread (kthreadd, no user space)", |dir| {
        assert_eq!(fs::read_to_string("/proc/2/comm").unwrap_or_default().trim(), "kthreadd");
        let out = wait_exit(record_bg(&["--pid", "2", "--duration", "1s"], dir), SETTLE);
        assert_eq!(assert_clean_end(&out, "kernel thread"), None);
        one_capture(dir, "kernel thread");
    });
    record_fault(tally, n, "the output directory is removed mid-capture", |dir| {
        let out_dir = dir.join("out");
        let bg = record_bg(&["--pid", bp, "--duration", "2s"], &out_dir);
        fs::remove_dir_all(&out_dir).unwrap_or_else(|e| panic!("{e}"));
        let out = wait_exit(bg, SETTLE);
        if out.status.code() != Some(0) {
            data_lost(&format!("the directory was removed, and the capture with it:\n{}", text(&out.stderr)));
        }
        assert!(one_capture(&out_dir, "directory removed").cpu_samples > 0);
    });
    record_fault(tally, n, "the output directory is renamed mid-capture", |dir| {
        let out_dir = dir.join("out");
        let bg = record_bg(&["--pid", bp, "--duration", "2s"], &out_dir);
        fs::rename(&out_dir, dir.join("moved")).unwrap_or_else(|e| panic!("{e}"));
        let out = wait_exit(bg, SETTLE);
        if out.status.code() != Some(0) {
            data_lost(&format!("the directory was renamed, and the capture lost:\n{}", text(&out.stderr)));
        }
        // Wherever the files went, the paths printed are the files.
        let stdout = text(&out.stdout);
        let printed: Vec<PathBuf> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .collect();
        assert!(!printed.is_empty() && printed.iter().all(|p| p.is_file()), "printed paths are not files:\n{stdout}");
        let total = [&out_dir, &dir.join("moved")]
            .iter()
            .map(|d| assert_captures_valid(d, false).manifests.len())
            .sum::<usize>();
        assert_eq!(total, 1);
    });
    record_fault(tally, n, "the output directory turns read-only mid-capture", |dir| {
        let out_dir = dir.join("out");
        let bg = record_bg(&["--pid", bp, "--duration", "2s"], &out_dir);
        let bind = ReadOnlyBind::new(&out_dir).unwrap_or_else(|e| panic!("{e}"));
        let out = wait_exit(bg, SETTLE);
        let error =
            assert_clean_end(&out, "read-only").unwrap_or_else(|| panic!("a read-only directory took the files?"));
        assert!(error.contains("Read-only file system"), "{error}");
        assert!(assert_captures_valid(&out_dir, false).manifests.is_empty());
        drop(bind);
        assert!(fs::read_dir(&out_dir).map(Iterator::count).unwrap_or(0) == 0, "files behind the read-only mount");
    });
    record_fault(tally, n, "the output directory is replaced by a file mid-capture", |dir| {
        let out_dir = dir.join("out");
        let bg = record_bg(&["--pid", bp, "--duration", "2s"], &out_dir);
        fs::remove_dir(&out_dir).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&out_dir, b"in the way").unwrap_or_else(|e| panic!("{e}"));
        let out = wait_exit(bg, SETTLE);
        let error = assert_clean_end(&out, "replaced by a file").unwrap_or_else(|| panic!("written into a file?"));
        assert!(error.contains("out"), "{error}");
        assert_eq!(fs::read(&out_dir).unwrap_or_default(), b"in the way");
    });
    record_fault(tally, n, "the disk fills: the flamegraph does not fit", |dir| {
        let out_dir = dir.join("small");
        fs::create_dir(&out_dir).unwrap_or_else(|e| panic!("{e}"));
        let mount = Tmpfs::mount(&out_dir, "16k").unwrap_or_else(|e| panic!("{e}"));
        let out = wait_exit(record_bg(&["--pid", bp, "--duration", "1s"], &out_dir), SETTLE);
        let error = assert_clean_end(&out, "disk full").unwrap_or_else(|| panic!("a full disk took everything?"));
        assert!(error.contains("No space left on device"), "{error}");
        let captures = one_capture(&out_dir, "disk full");
        let manifest = stackwatch_tests::triggers::read_manifest(&captures.manifests[0]);
        assert!(manifest["failed"].as_array().is_some_and(|f| !f.is_empty()), "{manifest}");
        drop(mount);
    });
    record_fault(tally, n, "the disk is full before anything is written", |dir| {
        let out_dir = dir.join("full");
        fs::create_dir(&out_dir).unwrap_or_else(|e| panic!("{e}"));
        let mount = Tmpfs::mount(&out_dir, "16k").unwrap_or_else(|e| panic!("{e}"));
        let filler = out_dir.join("filler");
        let mut file = File::create(&filler).unwrap_or_else(|e| panic!("{e}"));
        while file.write_all(&[0u8; 4096]).is_ok() {}
        drop(file);
        let bg = record_bg(&["--pid", bp, "--duration", "1s"], &out_dir);
        let out = wait_exit(bg, SETTLE);
        let error = assert_clean_end(&out, "disk full").unwrap_or_else(|| panic!("a full disk took the files?"));
        assert!(error.contains("No space left on device"), "{error}");
        let names: Vec<_> = fs::read_dir(&out_dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [OsString::from("filler")], "nothing but the filler, no partial file");
        drop(mount);
    });
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT"), (libc::SIGHUP, "SIGHUP")] {
        record_fault(tally, n, &format!("{name} mid-capture"), |dir| {
            let mut bg = record_bg(&["--pid", bp, "--duration", "30s"], dir);
            thread::sleep(Duration::from_millis(500));
            bg.signal(signal);
            let out = wait_exit(bg, SETTLE);
            if out.status.code() != Some(0) {
                data_lost(&format!("{name} ended record without its files ({}):\n{}", out.status, text(&out.stderr)));
            }
            assert!(one_capture(dir, name).cpu_samples > 0);
        });
    }
    for (signal, name) in [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2")] {
        record_fault(tally, n, &format!("{name} mid-capture (meant for a daemon)"), |dir| {
            let mut bg = record_bg(&["--pid", bp, "--duration", "1500ms"], dir);
            thread::sleep(Duration::from_millis(300));
            bg.signal(signal);
            let out = wait_exit(bg, SETTLE);
            if out.status.code() != Some(0) {
                data_lost(&format!("{name} killed record ({}):\n{}", out.status, text(&out.stderr)));
            }
            one_capture(dir, name);
        });
    }
    record_fault(tally, n, "a storm of 50 SIGTERMs mid-capture", |dir| {
        let mut bg = record_bg(&["--pid", bp, "--duration", "30s"], dir);
        thread::sleep(Duration::from_millis(300));
        for _ in 0..50 {
            if !bg.signal_if_running(libc::SIGTERM) {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let out = wait_exit(bg, SETTLE);
        if out.status.code() != Some(0) {
            data_lost(&format!("a SIGTERM storm lost the capture ({}):\n{}", out.status, text(&out.stderr)));
        }
        one_capture(dir, "SIGTERM storm");
    });
    record_fault(tally, n, "SIGKILL mid-capture", |dir| {
        let mut bg = record_bg(&["--pid", bp, "--duration", "30s"], dir);
        thread::sleep(Duration::from_millis(300));
        bg.signal(libc::SIGKILL);
        let out = wait_exit(bg, SETTLE);
        assert_eq!(out.status.code(), None, "killed");
        assert!(assert_captures_valid(dir, false).manifests.is_empty());
    });
    for delay in [0, 40, 120] {
        record_fault(tally, n, &format!("SIGKILL while writing (+{delay} ms)"), |dir| {
            let out_arg = dir.to_string_lossy().into_owned();
            let mut bg = spawn_stackwatch(&[
                "-v",
                "record",
                "--output-dir",
                &out_arg,
                "--duration",
                "500ms",
                "--profiles",
                "cpu,offcpu",
                "--formats",
                "pprof,svg,folded",
            ]);
            bg.wait_for_output(SETTLE, |_, err| err.contains("window closed"));
            thread::sleep(Duration::from_millis(delay));
            bg.signal_if_running(libc::SIGKILL);
            let _ = wait_exit(bg, SETTLE);
            // Whole files only; those written before the manifest may have none.
            assert_captures_valid(dir, true);
        });
    }
    record_fault(tally, n, "two records into one directory in the same second", |dir| {
        let (a, b) =
            (record_bg(&["--pid", bp, "--duration", "1s"], dir), record_bg(&["--pid", bp, "--duration", "1s"], dir));
        let outs = [wait_exit(a, SETTLE), wait_exit(b, SETTLE)];
        let written = manifests(dir);
        if written.len() != 2 {
            data_lost(&format!("two records wrote {} captures: {written:?}", written.len()));
        }
        for out in &outs {
            assert_eq!(assert_clean_end(out, "two records"), None);
        }
        assert_captures_valid(dir, false);
    });
    record_fault(tally, n, "three whole-host records into one directory at once", |dir| {
        let out_arg = dir.to_string_lossy().into_owned();
        let argv = ["record", "--output-dir", &out_arg, "--duration", "1s"];
        let runs: Vec<Background> = (0..3).map(|_| spawn_stackwatch(&argv)).collect();
        let outs: Vec<Output> = runs.into_iter().map(|bg| wait_exit(bg, SETTLE)).collect();
        let written = manifests(dir);
        if written.len() != 3 {
            let errors: Vec<String> = outs.iter().map(|o| text(&o.stderr)).filter(|e| e.contains("error:")).collect();
            data_lost(&format!("three records wrote {} captures: {errors:?}", written.len()));
        }
        for out in &outs {
            assert_eq!(assert_clean_end(out, "three records"), None);
        }
        assert_captures_valid(dir, false);
    });
    record_fault(tally, n, "stdout is a pipe nobody reads", |dir| {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() returns.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these descriptors; nothing else owns them.
        let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read_end);
        let out = run_with_stdout(&["--pid", bp, "--duration", "1s"], dir, Stdio::from(write_end));
        assert_summary_refused(&out, "stdout closed", "pipe:[");
        one_capture(&dir.join("out"), "stdout closed");
    });
    record_fault(tally, n, "stdout is /dev/full", |dir| {
        let full = File::options().write(true).open("/dev/full").unwrap_or_else(|e| panic!("{e}"));
        let out = run_with_stdout(&["--pid", bp, "--duration", "1s"], dir, Stdio::from(full));
        assert_summary_refused(&out, "stdout full", "`/dev/full`");
        one_capture(&dir.join("out"), "stdout full");
    });
    record_fault(tally, n, "only 12 file descriptors allowed", |dir| {
        let out_dir = dir.join("out");
        let mut cmd = Command::new(stackwatch_bin());
        cmd.args(["record", "--pid", bp, "--duration", "1s", "--output-dir"]).arg(&out_dir).stdin(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 12, rlim_max: 12 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = run_with_timeout(cmd, SETTLE);
        if assert_clean_end(&out, "few descriptors").is_none() {
            one_capture(&out_dir, "few descriptors");
        } else {
            assert!(!out_dir.exists(), "a failed start created `{}`", out_dir.display());
        }
    });
    record_fault(tally, n, "whole host at 10000 Hz with every kind and format", |dir| {
        let out = wait_exit(
            record_bg(
                &[
                    "--duration",
                    "1s",
                    "--frequency",
                    "10000",
                    "--profiles",
                    "cpu,offcpu,memory",
                    "--formats",
                    "pprof,svg,folded",
                ],
                dir,
            ),
            Duration::from_secs(120),
        );
        assert_clean_end(&out, "10000 Hz");
        one_capture(dir, "10000 Hz");
    });
}

/// A `record` whose summary could not be printed: exit 1 with one error
/// line that says so, names where stdout went (`names`) and that the
/// capture is written; never a bare `os error` without context.
fn assert_summary_refused(out: &Output, what: &str, names: &str) {
    let line = assert_clean_end(out, what).unwrap_or_else(|| panic!("{what}: exit 0 although the summary was lost"));
    assert!(
        line.starts_with("error: cannot print the summary to standard output")
            && line.contains(names)
            && line.contains("the capture is written"),
        "{what}: {line}"
    );
}

/// `record ARGS… --output-dir DIR/out` with stdout set to `stdout`, stderr
/// to a file beside it.
fn run_with_stdout(args: &[&str], dir: &Path, stdout: Stdio) -> Output {
    let err_path = dir.join("stderr");
    let err = File::create(&err_path).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(stackwatch_bin())
        .arg("record")
        .args(args)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("record did not end within {SETTLE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    Output { status, stdout: Vec::new(), stderr }
}

/// Faults of targets that need their own process tree: cgroups and `--name`.
pub(super) fn target_faults(tally: &mut Tally) {
    let n = &mut 100;
    record_fault(tally, n, "the cgroup's last process exits mid-capture", |dir| {
        let cgroup = TestCgroup::create("hostile-exit");
        let workload = cpu_split_for("1.5");
        cgroup.add(workload.pid());
        let reaper = reap_in_background(workload);
        let path = cgroup.path().to_string_lossy().into_owned();
        let out = wait_exit(record_bg(&["--cgroup", &path, "--duration", "3s"], dir), SETTLE);
        assert_clean_end(&out, "cgroup emptied");
        assert!(one_capture(dir, "cgroup emptied").cpu_samples > 0);
        let _ = reaper.join();
    });
    record_fault(tally, n, "the cgroup is removed mid-capture", |dir| {
        let cgroup = TestCgroup::create("hostile-removed");
        let workload = cpu_split_for("0");
        cgroup.add(workload.pid());
        let path = cgroup.path().to_string_lossy().into_owned();
        let bg = record_bg(&["--cgroup", &path, "--duration", "2s"], dir);
        thread::sleep(Duration::from_millis(500));
        drop(cgroup); // moves the workload out and removes the directory
        let out = wait_exit(bg, SETTLE);
        assert_clean_end(&out, "cgroup removed");
        one_capture(dir, "cgroup removed");
        drop(workload);
    });
    record_fault(tally, n, "every --name match exits mid-capture, another appears", |dir| {
        let first = cpu_split_for("0.8");
        let reaper = reap_in_background(first);
        let bg = record_bg(&["--name", "^cpu_split$", "--duration", "2s"], dir);
        thread::sleep(Duration::from_millis(1200));
        let second = cpu_split_for("0");
        let out = wait_exit(bg, SETTLE);
        assert_clean_end(&out, "name matches come and go");
        assert!(one_capture(dir, "name matches").cpu_samples > 0);
        drop(second);
        let _ = reaper.join();
    });
}
