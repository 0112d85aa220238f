//! Bad input: command lines, config files and `ctl` with no (or a broken)
//! daemon; targets a daemon cannot capture; garbage on the control FIFO
//! and socket, while idle and while a capture runs. See the table in
//! `hostile.rs`.

use super::*;

// ---------------------------------------------------------------------------
// Bad input: command lines

/// A command line that must be refused: exit `code`, one `error:` line
/// holding `says`, nothing created under the probe's directory.
struct Refusal {
    name: String,
    args: Vec<OsString>,
    code: i32,
    says: String,
}

/// Paths the command-line cases point at, and the defaults they get.
struct Paths {
    out: PathBuf,
    control: PathBuf,
}

impl Paths {
    fn has(args: &[OsString], flag: &str) -> bool {
        args.iter().any(|a| a == flag)
    }

    /// `record EXTRA…`, with `--output-dir` and a `--duration` longer than
    /// the refusal timeout unless the case gives its own: a case that is
    /// accepted by mistake starts sampling and runs into the timeout.
    fn record(&self, extra: Vec<OsString>) -> Vec<OsString> {
        let mut args = vec![OsString::from("record")];
        let (out, duration) = (!Self::has(&extra, "--output-dir"), !Self::has(&extra, "--duration"));
        args.extend(extra);
        if out {
            args.extend([OsString::from("--output-dir"), self.out.clone().into_os_string()]);
        }
        if duration {
            args.extend(["--duration", "30s"].map(OsString::from));
        }
        args
    }

    /// `watch EXTRA…` with the probe's `--control` and `--output-dir` unless given.
    fn watch(&self, extra: Vec<OsString>) -> Vec<OsString> {
        let mut args = vec![OsString::from("watch")];
        let (control, out) = (!Self::has(&extra, "--control"), !Self::has(&extra, "--output-dir"));
        args.extend(extra);
        if control {
            args.extend([OsString::from("--control"), self.control.clone().into_os_string()]);
        }
        if out {
            args.extend([OsString::from("--output-dir"), self.out.clone().into_os_string()]);
        }
        args
    }

    /// `ctl [--control …] EXTRA…`.
    fn ctl(&self, extra: Vec<OsString>) -> Vec<OsString> {
        let mut args = vec![OsString::from("ctl")];
        if !Self::has(&extra, "--control") {
            args.extend([OsString::from("--control"), self.control.clone().into_os_string()]);
        }
        args.extend(extra);
        args
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn osp(flag: &str, path: &Path) -> Vec<OsString> {
    vec![OsString::from(flag), path.as_os_str().to_owned()]
}

fn refusal(name: &str, code: i32, says: &str, args: Vec<OsString>) -> Refusal {
    Refusal { name: name.to_owned(), args, code, says: says.to_owned() }
}

/// `stackwatch ARGS…` with stdin closed and at most
/// [`REFUSAL_ADDRESS_SPACE`] of memory.
fn refusal_command(args: &[OsString]) -> Command {
    let mut cmd = Command::new(stackwatch_bin());
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: REFUSAL_ADDRESS_SPACE, rlim_max: REFUSAL_ADDRESS_SPACE };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn check_refusal(tally: &mut Tally, root: &Path, case: Refusal) {
    let Refusal { name, args, code, says } = case;
    tally.bad_input(&name, || {
        let before = Snapshot::of(root);
        let out = run_with_timeout(refusal_command(&args), REFUSAL_TIMEOUT);
        let line = assert_one_error(&out, code, &name);
        assert!(line.contains(&says), "{name}: the error does not say `{says}`: {line}");
        assert_unchanged(root, &before, &name);
    });
}

pub(super) fn command_lines(tally: &mut Tally, fx: &Fixtures) {
    let root = scratch_dir("hostile-command-lines");
    let p = Paths { out: root.join("out"), control: root.join("run").join("control") };
    let file = root.join("a-file");
    fs::write(&file, b"in the way\n").unwrap_or_else(|e| panic!("{e}"));
    let dir = root.join("a-dir");
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let ro = root.join("read-only");
    fs::create_dir(&ro).unwrap_or_else(|e| panic!("{e}"));
    let bind = ReadOnlyBind::new(&ro).unwrap_or_else(|e| panic!("bind-mount `{}` read-only: {e}", ro.display()));
    let (loop1, loop2) = (root.join("loop1"), root.join("loop2"));
    symlink("loop2", &loop1).unwrap_or_else(|e| panic!("{e}"));
    symlink("loop1", &loop2).unwrap_or_else(|e| panic!("{e}"));
    let fifo = root.join("a-fifo");
    mkfifo(&fifo);
    let long_name = root.join("n".repeat(300));
    let long_path = root.join(["abcdefgh"; 600].join("/"));
    let cgroup_file = cgroup2_mounts().first().map(|m| m.join("cgroup.procs"));
    let me = std::process::id().to_string();
    let unused = fx.unused_pid.to_string();
    let zombie = fx.zombie.pid().to_string();
    let tid = fx.thread.tid.to_string();

    let rec = |name: &str, code: i32, says: &str, extra: &[&str]| {
        refusal(&format!("record {name}"), code, says, p.record(os(extra)))
    };
    let recp = |name: &str, says: &str, flag: &str, path: &Path| {
        refusal(&format!("record {name}"), 1, says, p.record([osp(flag, path), os(&["--pid", &me])].concat()))
    };
    let mut cases = vec![
        rec("--pid 0", 2, "--pid", &["--pid", "0"]),
        rec("--pid -1", 2, "-1", &["--pid", "-1"]),
        rec("--pid ''", 2, "--pid", &["--pid", ""]),
        rec("--pid abc", 2, "--pid", &["--pid", "abc"]),
        rec("--pid 2^32", 2, "--pid", &["--pid", "4294967296"]),
        rec("--pid of 23 digits", 2, "--pid", &["--pid", "99999999999999999999999"]),
        rec("--pid in Arabic-Indic digits", 2, "--pid", &["--pid", "١٢"]),
        rec("--pid 1,,2", 2, "empty item", &["--pid", "1,,2"]),
        rec("--pid without a value", 2, "--pid", &["--pid"]),
        rec("--pid not running", 2, &unused, &["--pid", &unused]),
        rec("--pid of a thread", 2, "is a thread of process", &["--pid", &tid]),
        rec("--pid of a zombie", 2, &zombie, &["--pid", &zombie]),
        rec("--pid list with one not running", 2, &unused, &["--pid", &me, "--pid", &unused]),
        rec("--name ''", 2, "empty pattern", &["--name", ""]),
        rec("--name '('", 2, "--name", &["--name", "("]),
        rec("--name '[z-a]'", 2, "--name", &["--name", "[z-a]"]),
        rec("--name over the regex size limit", 2, "--name", &["--name", "a{1000}{1000}"]),
        rec("--name with an unknown class", 2, "--name", &["--name", r"\p{Foo}"]),
        rec("--name matching nothing", 2, "no process name", &["--name", "^no-such-process-[0-9]{12}$"]),
        rec("--cgroup missing", 2, "does not exist", &["--cgroup", "/stackwatch-no-such-cgroup"]),
        rec("--cgroup outside the hierarchy", 2, "not a cgroup v2 directory", &["--cgroup", "/proc"]),
        rec("--cgroup ''", 2, "--cgroup", &["--cgroup", ""]),
        rec("--cgroup climbing out with ..", 2, "cgroup", &["--cgroup", "../../etc"]),
        rec("--pid with --name", 2, "cannot be used with", &["--pid", &me, "--name", "x"]),
        rec("--pid with --cgroup", 2, "cannot be used with", &["--pid", &me, "--cgroup", "/"]),
        rec("--duration 1.5.5s", 2, "--duration", &["--duration", "1.5.5s"]),
        rec("--duration ' '", 2, "--duration", &["--duration", " "]),
        rec("--duration 1e3s", 2, "--duration", &["--duration", "1e3s"]),
        rec("--duration infs", 2, "--duration", &["--duration", "infs"]),
        rec("--duration NaNs", 2, "--duration", &["--duration", "NaNs"]),
        rec("--duration 30 (no unit)", 2, "unit", &["--duration", "30"]),
        rec("--duration ½s", 2, "--duration", &["--duration", "½s"]),
        rec("--duration u64::MAX seconds", 2, "1day", &["--duration", "18446744073709551615s"]),
        rec("--duration -5s", 2, "negative", &["--duration", "-5s"]),
        rec("--duration 1ms", 2, "10ms", &["--duration", "1ms"]),
        rec("--frequency 99.5", 2, "--frequency", &["--frequency", "99.5"]),
        rec("--frequency 0x10", 2, "--frequency", &["--frequency", "0x10"]),
        rec("--frequency ''", 2, "--frequency", &["--frequency", ""]),
        rec("--frequency 0", 2, "10000", &["--frequency", "0"]),
        rec("--frequency 10001", 2, "10000", &["--frequency", "10001"]),
        rec("--profiles ''", 2, "--profiles", &["--profiles", ""]),
        rec("--profiles bogus", 2, "bogus", &["--profiles", "bogus"]),
        rec("--profiles cpu,", 2, "empty item", &["--profiles", "cpu,"]),
        rec("--profiles cpu;offcpu", 2, "--profiles", &["--profiles", "cpu;offcpu"]),
        rec("--formats ''", 2, "--formats", &["--formats", ""]),
        rec("--formats json", 2, "json", &["--formats", "json"]),
        rec("--formats pprof,,svg", 2, "empty item", &["--formats", "pprof,,svg"]),
        rec("--output-dir ''", 2, "--output-dir", &["--output-dir", ""]),
        recp("--output-dir a regular file", "a-file", "--output-dir", &file),
        recp("--output-dir under a regular file", "a-file", "--output-dir", &file.join("sub")),
        recp("--output-dir on a read-only mount", "read-only", "--output-dir", &ro),
        recp("--output-dir under a read-only mount", "read-only", "--output-dir", &ro.join("sub")),
        recp("--output-dir a symlink loop", "symbolic links", "--output-dir", &loop1),
        recp("--output-dir under a symlink loop", "symbolic links", "--output-dir", &loop1.join("sub")),
        recp("--output-dir with a 300-byte name", "too long", "--output-dir", &long_name),
        recp("--output-dir longer than PATH_MAX", "too long", "--output-dir", &long_path),
        rec("with an unknown flag", 2, "--bogus", &["--bogus"]),
        rec("with a stray argument", 2, "stray", &["stray"]),
        rec("--verbose=3", 2, "--verbose", &["--verbose=3"]),
        refusal("an unknown subcommand", 2, "frobnicate", os(&["frobnicate"])),
        refusal(
            "record --name with invalid UTF-8",
            2,
            "UTF-8",
            p.record(vec![OsString::from("--name"), OsString::from_vec(vec![0xff, 0xfe, b'x'])]),
        ),
    ];
    if let Some(cgroup_file) = &cgroup_file {
        cases.push(refusal(
            "record --cgroup naming a file of the hierarchy",
            2,
            "not a cgroup v2 directory",
            p.record(osp("--cgroup", cgroup_file)),
        ));
    }

    let watch = |name: &str, code: i32, says: &str, extra: Vec<OsString>| {
        refusal(&format!("watch {name}"), code, says, p.watch(extra))
    };
    let w = |extra: &[&str]| os(extra);
    cases.extend([
        watch("--control ''", 2, "--control", w(&["--control", ""])),
        watch("--control a directory", 1, "a-dir", osp("--control", &dir)),
        watch("--control a symlink loop", 1, "symbolic link", osp("--control", &loop1)),
        watch("--control a regular file", 1, "regular file", osp("--control", &file)),
        watch("--control under a regular file", 1, "a-file", osp("--control", &file.join("control"))),
        watch("--control on a read-only mount", 1, "read-only", osp("--control", &ro.join("control"))),
        watch("--control with a 300-byte name", 1, "too long", osp("--control", &long_name)),
        watch("--output-dir a regular file", 1, "a-file", osp("--output-dir", &file)),
        watch("--output-dir on a read-only mount", 1, "read-only", osp("--output-dir", &ro)),
        watch("--output-dir a symlink loop", 1, "symbolic links", osp("--output-dir", &loop1)),
        watch("--name '('", 2, "--name", w(&["--name", "("])),
        watch("--cpu-above 101", 2, "--cpu-above", w(&["--cpu-above", "101", "--for", "1m"])),
        watch("--cpu-above abc", 2, "--cpu-above", w(&["--cpu-above", "abc", "--for", "1m"])),
        watch("--cpu-above NaN", 2, "--cpu-above", w(&["--cpu-above", "NaN", "--for", "1m"])),
        watch("--cpu-above inf", 2, "--cpu-above", w(&["--cpu-above", "inf", "--for", "1m"])),
        watch("--cpu-above without --for", 2, "--for", w(&["--cpu-above", "80"])),
        watch("--for before its rule", 2, "--for", w(&["--for", "3m", "--cpu-above", "80"])),
        watch("--for under --sample-interval", 2, "--for", w(&["--cpu-above", "80", "--for", "50ms"])),
        watch("a rule with two --for", 2, "--for", w(&["--cpu-above", "80", "--for", "1m", "--for", "2m"])),
        watch("--mem-above 4096 (no unit)", 2, "MiB", w(&["--mem-above", "4096", "--for", "1m"])),
        watch("--mem-above 0", 2, "--mem-above", w(&["--mem-above", "0", "--for", "1m"])),
        watch("--jump-floor without a rule", 2, "--jump-floor", w(&["--jump-floor", "5"])),
        watch("--cpu-jump 0", 2, "--cpu-jump", w(&["--cpu-jump", "0"])),
        watch("--max-captures 0", 2, "at least one", w(&["--max-captures", "0"])),
        watch("--retain -1GiB", 2, "negative", w(&["--retain", "-1GiB"])),
        watch("--frequency 0", 2, "10000", w(&["--frequency", "0"])),
    ]);

    let c = |name: &str, says: &str, extra: &[&str]| refusal(&format!("ctl {name}"), 2, says, p.ctl(os(extra)));
    cases.extend([
        c("start abc", "DURATION", &["start", "abc"]),
        c("start 1s 2s", "2s", &["start", "1s", "2s"]),
        c("start -5s", "negative", &["start", "-5s"]),
        c("start 25h", "1day", &["start", "25h"]),
        c("start --profiles bogus", "bogus", &["start", "--profiles", "bogus"]),
        c("start --profiles ''", "--profiles", &["start", "--profiles", ""]),
        c("frob", "frob", &["frob"]),
        c("without a command", "subcommand", &[]),
        c("--timeout 0s", "--timeout", &["--timeout", "0s", "status"]),
        c("stop now", "now", &["stop", "now"]),
        c("--control ''", "--control", &["--control", "", "status"]),
    ]);
    for case in cases {
        check_refusal(tally, &root, case);
    }

    // `watch --config FILE`: the file's mistakes are usage errors too.
    let config = root.join("watch.toml");
    enum Config<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
        Path(&'a Path),
    }
    let configs = [
        ("missing", Config::Path(&root.join("no-such.toml")), "cannot read"),
        ("a directory", Config::Path(&dir), "a-dir"),
        ("/dev/zero", Config::Path(Path::new("/dev/zero")), "not a regular file"),
        ("a FIFO nobody writes to", Config::Path(&fifo), "not a regular file"),
        ("with a syntax error", Config::Text("name = \"x"), "line 1"),
        ("with an unknown key", Config::Text("bogus = 1"), "bogus"),
        ("with a wrong type", Config::Text("frequency = \"x\""), "`frequency`"),
        ("with frequency 0", Config::Text("frequency = 0"), "10000"),
        ("in invalid UTF-8", Config::Bytes(&[0xff, 0xfe, b'\n']), "UTF-8"),
        ("with name '('", Config::Text("name = \"(\""), "name"),
        ("with pid = [1, \"x\"]", Config::Text("pid = [1, \"x\"]"), "`pid`"),
        ("with pid = 0", Config::Text("pid = 0"), "pid"),
        ("with two targets", Config::Text("pid = 1\nname = \"x\""), "more than one target"),
        ("with a rule without for", Config::Text("triggers = [\"cpu-above 80\"]"), "--for"),
        ("with an unknown rule", Config::Text("triggers = [\"frob 80 for 1s\"]"), "frob"),
        ("with triggers = 5", Config::Text("triggers = 5"), "`triggers`"),
        ("with capture-duration 0s", Config::Text("capture-duration = \"0s\""), "greater than zero"),
        ("with cooldown = 5 (no unit)", Config::Text("cooldown = 5"), "`cooldown`"),
        ("with a [table]", Config::Text("[watch]\nname = \"x\""), "watch"),
    ];
    for (name, content, says) in configs {
        let path = match content {
            Config::Path(path) => path.to_owned(),
            Config::Text(text) => {
                fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
                config.clone()
            }
            Config::Bytes(bytes) => {
                fs::write(&config, bytes).unwrap_or_else(|e| panic!("{e}"));
                config.clone()
            }
        };
        check_refusal(
            tally,
            &root,
            refusal(&format!("watch --config {name}"), 2, says, p.watch(osp("--config", &path))),
        );
    }
    drop(bind);
}

// ---------------------------------------------------------------------------
// Bad input: ctl with no daemon, or a broken one

/// A fake daemon at a socket path: accepts one connection, reads its line
/// and does `act` with the stream.
fn fake_daemon(socket: &Path, act: impl FnOnce(UnixStream) + Send + 'static) -> JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap_or_else(|e| panic!("bind `{}`: {e}", socket.display()));
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut byte = [0u8; 1];
            // Read the request line, so closing does not reset the connection.
            while stream.read(&mut byte).is_ok_and(|n| n == 1 && byte[0] != b'\n') {}
            act(stream);
        }
    })
}

pub(super) fn ctl_without_a_daemon(tally: &mut Tally) {
    let root = scratch_dir("hostile-ctl");
    // `serve`, if given, is a fake daemon at the case's socket (see [`fake_daemon`]).
    type Serve = Option<Box<dyn FnOnce(UnixStream) + Send>>;
    let ctl_case = |tally: &mut Tally, name: &str, control: &Path, args: &[&str], says: &str, serve: Serve| {
        tally.bad_input(&format!("ctl {name}"), || {
            let server = serve.map(|serve| fake_daemon(&socket_of(control), serve));
            let before = Snapshot::of(&root);
            let out = ctl(control, args);
            let line = assert_one_error(&out, 1, name);
            assert!(line.contains(says), "{name}: the error does not say `{says}`: {line}");
            assert!(line.len() < 2000, "{name}: a {}-byte error line is not one clear sentence", line.len());
            assert_unchanged(&root, &before, name);
            if let Some(server) = server {
                let _ = server.join();
            }
        });
    };
    ctl_case(tally, "with no daemon", &root.join("run").join("control"), &["status"], "no stackwatch daemon", None);

    let fifo_only = root.join("fifo-only");
    mkfifo(&fifo_only);
    ctl_case(tally, "with a FIFO but no socket", &fifo_only, &["status"], "socket", None);

    let dead = root.join("dead");
    drop(UnixListener::bind(socket_of(&dead)).unwrap_or_else(|e| panic!("{e}")));
    ctl_case(tally, "with a socket left by a dead daemon", &dead, &["stop"], "left over", None);

    let file = root.join("file");
    fs::write(socket_of(&file), b"not a socket").unwrap_or_else(|e| panic!("{e}"));
    ctl_case(tally, "with a regular file as the socket", &file, &["status"], "file", None);

    let long = root.join("c".repeat(120));
    ctl_case(tally, "with a socket path longer than sun_path", &long, &["status"], "", None);

    let silent: Serve = Some(Box::new(|stream| {
        thread::sleep(Duration::from_secs(3));
        drop(stream);
    }));
    let args = ["--timeout", "1s", "status"];
    ctl_case(tally, "against a daemon that never answers", &root.join("silent"), &args, "no reply", silent);
    let closer: Serve = Some(Box::new(drop));
    let says = "without answering";
    ctl_case(tally, "against a daemon that closes without answering", &root.join("closer"), &["status"], says, closer);
    let garbage: Serve = Some(Box::new(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    }));
    ctl_case(tally, "against a daemon answering garbage", &root.join("garbage"), &["status"], "cannot read", garbage);
    let flood: Serve = Some(Box::new(|mut stream| {
        let _ = stream.write_all(&vec![b'x'; 4 << 20]);
    }));
    let name = "against a daemon answering 4 MiB without a newline";
    ctl_case(tally, name, &root.join("flood"), &["status"], "cannot read", flood);
}

// ---------------------------------------------------------------------------
// Bad input: a daemon whose target does not exist

pub(super) fn missing_targets(tally: &mut Tally, fx: &Fixtures) {
    let unused = fx.unused_pid.to_string();
    let zombie = fx.zombie.pid().to_string();
    let tid = fx.thread.tid.to_string();
    let cases: [(&str, Vec<&str>, &str); 6] = [
        ("a pid that is not running", vec!["--pid", &unused], "no process with pid"),
        ("a zombie pid", vec!["--pid", &zombie], &zombie),
        ("a thread id", vec!["--pid", &tid], "is a thread of process"),
        ("a name matching nothing", vec!["--name", "^no-such-process-[0-9]{12}$"], "no process name"),
        ("a missing cgroup", vec!["--cgroup", "/stackwatch-no-such-cgroup"], "does not exist"),
        ("a path outside the cgroup hierarchy", vec!["--cgroup", "/proc"], "not a cgroup v2 directory"),
    ];
    for (i, (what, args, says)) in cases.into_iter().enumerate() {
        let before = OurBpf::now();
        let mut daemon = None;
        tally.bad_input(&format!("watch with {what}: `ctl start`"), || {
            let mut argv = args.clone();
            argv.extend(["--capture-duration", "5m"]);
            let d = WatchDaemon::start(&format!("hostile-missing-target-{i}"), &argv);
            let out = d.ctl(&["start"]);
            let line = assert_one_error(&out, 1, what);
            assert!(line.contains("no capture started") && line.contains(says), "{what}: {line}");
            assert_state(&d, "idle", None);
            daemon = Some(d);
        });
        tally.bad_input(&format!("watch with {what}: `start` on the FIFO"), || {
            let Some(d) = daemon.as_ref() else { panic!("the daemon did not start") };
            let log = fifo_exchange(d, &[b"start\n"]);
            assert!(log.contains("no capture started") && log.contains(says), "{what}:\n{log}");
            assert_state(d, "idle", None);
            assert!(crash_lines(&d.stderr()).is_empty(), "{}", d.stderr());
        });
        if let Some(d) = daemon {
            let output = d.output.clone();
            let out = d.stop();
            assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
            assert!(manifests(&output).is_empty(), "{what}: a refused capture wrote files");
        }
        OurBpf::assert_none_left_since(&before, what);
    }
}

// ---------------------------------------------------------------------------
// Bad input: garbage on the control FIFO and socket

struct FifoCase {
    name: &'static str,
    chunks: Vec<Vec<u8>>,
    /// What the daemon's log must say about it ("" for lines it ignores quietly).
    reason: &'static str,
}

fn fifo_cases() -> Vec<FifoCase> {
    let case =
        |name, chunks: &[&[u8]], reason| FifoCase { name, chunks: chunks.iter().map(|c| c.to_vec()).collect(), reason };
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    let mut binary = noise(256 * 1024);
    binary.push(b'\n');
    vec![
        case("an unknown command", &[b"frobnicate\n"], "unknown command `frobnicate`"),
        case("an empty line", &[b"\n"], ""),
        case("blanks only", &[b"  \t  \n"], ""),
        case("a lone carriage return", &[b"\r\n"], ""),
        case("start 5 parsecs", &[b"start 5 parsecs\n"], "invalid duration"),
        case("start 0s", &[b"start 0s\n"], "invalid duration"),
        case("start -1s", &[b"start -1s\n"], "invalid duration"),
        case("start 25h", &[b"start 25h\n"], "invalid duration"),
        case("start u64::MAX seconds", &[b"start 18446744073709551615s\n"], "invalid duration"),
        case("start 1s bogus", &[b"start 1s bogus\n"], "invalid profile list"),
        case("stop now", &[b"stop now\n"], "takes no argument"),
        case("status please", &[b"status please\n"], "takes no argument"),
        case("toggle 5s", &[b"toggle 5s\n"], "takes no argument"),
        case("a non-ASCII command", &["stärt\n".as_bytes()], "unknown command"),
        case("a NUL in the line", &[b"stop\0\n"], "not text"),
        case("an ANSI escape", &[b"\x1b[31mstop\n"], "not text"),
        case("invalid UTF-8", &[b"\xff\xfestop\n"], "not text"),
        case("a command split across two writes", &[b"sto", b"p now\n"], "takes no argument"),
        case("a 1 MiB line", &[&huge], "longer than 4096 bytes"),
        case("256 KiB of binary noise", &[&binary], "ignoring a line"),
    ]
}

struct SocketCase {
    name: &'static str,
    bytes: Vec<u8>,
    reason: &'static str,
}

fn socket_cases() -> Vec<SocketCase> {
    let case = |name, bytes: &[u8], reason| SocketCase { name, bytes: bytes.to_vec(), reason };
    let mut long = vec![b'x'; 5000];
    long.push(b'\n');
    let binary: Vec<u8> = noise(3000).into_iter().filter(|&b| b != b'\n').collect();
    vec![
        case("an unknown command", b"frobnicate\n", "unknown command"),
        case("an empty line", b"\n", "empty line"),
        case("nothing at all", b"", "empty line"),
        case("a 5000-byte line", &long, "longer than 4096 bytes"),
        case("binary without a newline", &binary, "not text"),
        case("start 5 parsecs", b"start 5 parsecs\n", "invalid duration"),
        case("stop now", b"stop now\n", "takes no argument"),
        case("a NUL in the line", b"stop\0\n", "not text"),
        case("an unknown command without its newline", b"frob", "unknown command"),
    ]
}

/// Sends `bytes` on a raw connection to the daemon's socket (then shuts
/// its side) and returns the answer.
fn socket_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect `{}`: {e}", socket.display()));
    stream.set_read_timeout(Some(SETTLE)).unwrap_or_else(|e| panic!("{e}"));
    stream.write_all(bytes).unwrap_or_else(|e| panic!("write: {e}"));
    let _ = stream.shutdown(Shutdown::Write);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("no answer: {e}"));
    text(&raw)
}

/// Checks a refusal on the socket: one JSON line, `ok: false`, `reason` in
/// its message, the daemon in `state`.
fn assert_socket_refusal(raw: &str, reason: &str, state: &str) {
    assert_eq!(raw.matches('\n').count(), 1, "one line of JSON, got {raw:?}");
    let reply: serde_json::Value =
        serde_json::from_str(raw.trim_end()).unwrap_or_else(|e| panic!("not JSON ({e}): {raw:?}"));
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["message"].as_str().is_some_and(|m| m.contains(reason)),
        "the answer does not say `{reason}`: {reply}"
    );
    assert_eq!(reply["state"], state, "{reply}");
}

pub(super) fn control_input(tally: &mut Tally, target: u32) {
    let before = OurBpf::now();
    let pid = target.to_string();
    let mut daemon = WatchDaemon::start("hostile-control-input", &["--pid", &pid, "--capture-duration", "5m"]);
    let socket = socket_of(&daemon.control);
    for (state, started) in [("idle", None), ("capturing", Some(()))] {
        let started = started.map(|()| {
            daemon.ctl_ok(&["start"]);
            let status = status_json(&daemon);
            status["capture"]["started"].as_str().unwrap_or_default().to_owned()
        });
        let started = started.as_deref();
        for case in fifo_cases() {
            tally.bad_input(&format!("FIFO ({state}): {}", case.name), || {
                let chunks: Vec<&[u8]> = case.chunks.iter().map(Vec::as_slice).collect();
                let log = fifo_exchange(&daemon, &chunks);
                if case.reason.is_empty() {
                    assert!(!log.contains("ignoring"), "{}: a blank line is ignored quietly:\n{log}", case.name);
                } else {
                    assert!(
                        log.contains(case.reason) || log.contains("more invalid lines"),
                        "{}: the log does not say `{}`:\n{log}",
                        case.name,
                        case.reason
                    );
                }
                assert!(!log.contains("capture started") && crash_lines(&log).is_empty(), "{}:\n{log}", case.name);
                assert_state(&daemon, state, started);
            });
        }
        for case in socket_cases() {
            tally.bad_input(&format!("socket ({state}): {}", case.name), || {
                let raw = socket_exchange(&socket, &case.bytes);
                assert_socket_refusal(&raw, case.reason, state);
                assert_state(&daemon, state, started);
            });
        }
        if state == "idle" {
            tally.bad_input("socket (idle): a client that sends nothing", || {
                let stream = UnixStream::connect(&socket).unwrap_or_else(|e| panic!("connect: {e}"));
                stream.set_read_timeout(Some(SETTLE)).unwrap_or_else(|e| panic!("{e}"));
                let mut raw = String::new();
                (&stream).read_to_string(&mut raw).unwrap_or_else(|e| panic!("no answer: {e}"));
                assert_socket_refusal(&raw, "no command received", "idle");
                assert_state(&daemon, "idle", None);
            });
            // (A manual start of kinds the daemon did not load is no longer bad
            // input: they are loaded on demand, tested in tests/tests/triggers.rs.)
        }
    }
    // The capture that ran through all of the above is whole.
    tally.check("the capture taken during the bad input is written and valid", || {
        let out = daemon.ctl(&["stop"]);
        if !out.status.success() {
            data_lost(&format!("`ctl stop` failed: {}\n{}", text(&out.stderr), daemon.stderr()));
        }
        let captures = assert_captures_valid(&daemon.output, false);
        assert_eq!(captures.manifests.len(), 1, "{:?}", captures.manifests);
        assert_cpu_split_profile(&pprof_of(&captures.manifests[0]));
    });
    tally.check("the daemon that took the bad input stops cleanly", || {
        assert!(daemon.try_status().is_none(), "the daemon died:\n{}", daemon.stderr());
        assert!(crash_lines(&daemon.stderr()).is_empty(), "{}", daemon.stderr());
        let out = daemon.stop();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        OurBpf::assert_none_left_since(&before, "after the control input");
    });
}
