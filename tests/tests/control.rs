//! Hardening of `watch`'s control channel, as root against the real binary:
//! a FIFO that someone else may hold open is never adopted, and a flood of
//! `ctl` clients gets answers (or a clear "busy"), never a reset connection.
//!
//! The attacker is a real unprivileged process (`setpriv` to `nobody`) that
//! opened the FIFO before the daemon started: its descriptor survives any
//! later `chmod`, so the only safe daemon is one that never reads from an
//! inode it did not create itself.

use std::ffi::CString;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use stackwatch_tests::daemon::{ctl, socket_of, WatchDaemon};
use stackwatch_tests::{e2e_guard, spawn_stackwatch};

/// Bound on the daemon starting, refusing, or answering.
const SETTLE: Duration = Duration::from_secs(30);

fn mkfifo(path: &Path, mode: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    // mkfifo's mode passes through the umask; set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A directory that `nobody` can reach, whatever the checkout's permissions
/// (a tree under `/root` is not searchable by other users): `mkdtemp` under
/// `/tmp` (an unpredictable name, created exclusively), mode 0755, removed on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new() -> Self {
        let template = CString::new("/tmp/stackwatch-control-test-XXXXXX").expect("template");
        let mut bytes = template.into_bytes_with_nul();
        // SAFETY: `bytes` is a writable NUL-terminated template, as mkdtemp requires.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        assert!(!made.is_null(), "mkdtemp: {}", std::io::Error::last_os_error());
        bytes.pop();
        let path = PathBuf::from(String::from_utf8(bytes).expect("UTF-8 template"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A process running as `nobody` that opened `fifo` read-write and writes
/// each line it is given into that descriptor. Killed on drop.
struct Attacker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Attacker {
    fn open(fifo: &Path) -> Self {
        let script = r#"exec 3<>"$1" || exit 1; echo opened; while read -r line; do echo "$line" >&3; echo sent; done"#;
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script, "sh"])
            .arg(fifo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run setpriv (util-linux): {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut attacker = Self { child, stdin, stdout };
        assert_eq!(attacker.line(), "opened", "nobody could not open `{}`", fifo.display());
        attacker
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the attacker's output");
        line.trim_end().to_owned()
    }

    /// Writes `command` through the descriptor opened before the daemon started.
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the attacker");
        assert_eq!(self.line(), "sent");
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // Not reaped yet, so the pid is still this child.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the daemon ever started a capture, by its log.
fn started_a_capture(log: &str) -> bool {
    log.contains("capture started")
}

#[test]
fn a_world_writable_fifo_held_open_by_another_user_is_refused() {
    let Some(_guard) = e2e_guard() else { return };
    let shared = SharedDir::new();
    let control = shared.path().join("control");
    mkfifo(&control, 0o666);
    let mut attacker = Attacker::open(&control);
    let output = shared.path().join("out");

    let control_arg = control.to_string_lossy().into_owned();
    let output_arg = output.to_string_lossy().into_owned();
    let mut watch = spawn_stackwatch(&["watch", "--control", &control_arg, "--output-dir", &output_arg]);
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        if let Some(status) = watch.try_status() {
            break status;
        }
        if ctl(&control, &["status"]).status.success() {
            // It runs: the attacker's descriptor must not reach it.
            attacker.send("start 5s");
            thread::sleep(Duration::from_secs(1));
            let log = watch.stderr();
            panic!(
                "watch adopted a FIFO other users could hold open (capture started through the attacker's \
                 descriptor: {})\n--- daemon\n{log}",
                started_a_capture(&log)
            );
        }
        assert!(Instant::now() < deadline, "watch neither refused nor started\n{}", watch.stderr());
        thread::sleep(Duration::from_millis(50));
    };
    let log = watch.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line:\n{log}");
    let line = lines[0];
    assert!(line.starts_with("error: control path `") && line.contains("mode 666"), "{line}");
    assert!(line.contains("--control"), "the message must say how to fix it: {line}");
    // Nothing was created, and the FIFO is left for its owner to remove.
    assert!(!output.exists(), "a refused start created `{}`", output.display());
    assert!(fs::symlink_metadata(socket_of(&control)).is_err(), "a refused start created the socket");
    let meta = fs::symlink_metadata(&control).expect("the FIFO is still there");
    assert!(meta.file_type().is_fifo() && meta.mode() & 0o777 == 0o666, "{meta:?}");
}

#[test]
fn a_leftover_fifo_is_replaced_so_an_old_descriptor_reaches_nothing() {
    let Some(_guard) = e2e_guard() else { return };
    let dir = stackwatch_tests::scratch_dir("control_leftover_fifo");
    let run = dir.join("run");
    fs::create_dir(&run).expect("mkdir");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).expect("chmod");
    let control = run.join("control");
    // The daemon's own kind of FIFO (0600, its owner), left over and held
    // open by some process: perhaps opened while its mode was wider.
    mkfifo(&control, 0o600);
    let old = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&control)
        .expect("open the leftover FIFO");
    let old_id = {
        let meta = old.metadata().expect("fstat");
        (meta.dev(), meta.ino())
    };

    let daemon = WatchDaemon::start_in(dir.clone(), control.clone(), dir.join("out"), &[]);
    let now = fs::symlink_metadata(&control).expect("the daemon's FIFO");
    assert!(now.file_type().is_fifo());
    assert_ne!((now.dev(), now.ino()), old_id, "the daemon adopted the leftover FIFO instead of making its own");
    assert_eq!(now.mode() & 0o777, 0o600);

    (&old).write_all(b"start\n").expect("write through the old descriptor");
    // The daemon reads its FIFO within microseconds; a second is plenty for
    // a command that would reach it.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.state(), "idle", "{}", daemon.stderr());
    assert!(!started_a_capture(&daemon.stderr()), "{}", daemon.stderr());
    // Its own FIFO is open (`send` fails when no one reads the path).
    daemon.send(b"status\n");
    assert_eq!(daemon.stop().status.code(), Some(0));
}

/// One line of JSON from a raw socket client: a normal answer or a busy one.
#[derive(Debug)]
enum Answer {
    Normal,
    Busy,
}

fn classify(raw: &str) -> Answer {
    let reply: serde_json::Value =
        serde_json::from_str(raw.trim_end()).unwrap_or_else(|e| panic!("not one JSON line ({e}): {raw:?}"));
    assert_eq!(raw.matches('\n').count(), 1, "{raw:?}");
    let message = reply["message"].as_str().unwrap_or_default();
    if reply["ok"] == true && message.starts_with("idle") {
        Answer::Normal
    } else if reply["ok"] == false && reply["busy"] == true && message.contains("busy") && message.contains("retry") {
        Answer::Busy
    } else {
        panic!("neither a status nor a clear busy answer: {raw}")
    }
}

#[test]
fn forty_ctl_clients_at_once_get_an_answer_or_a_clear_busy() {
    let Some(_guard) = e2e_guard() else { return };
    let mut daemon = WatchDaemon::start("control_ctl_flood", &[]);
    let socket = socket_of(&daemon.control);

    // Raw clients: all connect first (the daemon accepts them and waits for
    // their lines), then all send. More than the daemon serves at once are
    // in flight, so some must be told it is busy; none may be dropped.
    let streams: Vec<UnixStream> =
        (0..40).map(|i| UnixStream::connect(&socket).unwrap_or_else(|e| panic!("client {i}: connect: {e}"))).collect();
    thread::sleep(Duration::from_millis(300));
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            thread::spawn(move || -> Result<String, String> {
                stream.set_read_timeout(Some(SETTLE)).map_err(|e| e.to_string())?;
                stream.write_all(b"status\n").map_err(|e| format!("client {i}: write: {e}"))?;
                let mut raw = String::new();
                stream.read_to_string(&mut raw).map_err(|e| format!("client {i}: read: {e}"))?;
                Ok(raw)
            })
        })
        .collect();
    let (mut normal, mut busy) = (0, 0);
    for client in clients {
        let raw = client.join().expect("client thread").unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr()));
        match classify(&raw) {
            Answer::Normal => normal += 1,
            Answer::Busy => busy += 1,
        }
    }
    eprintln!("raw clients: {normal} answered, {busy} told busy");
    assert_eq!(normal + busy, 40);
    assert!(normal >= 1 && busy >= 1, "with 40 clients in flight some are served and some told busy");

    // `stackwatch ctl`, 40 at once: each gets the status, or one clear line.
    let ctls: Vec<_> = (0..40)
        .map(|_| {
            let control = daemon.control.clone();
            thread::spawn(move || ctl(&control, &["status"]))
        })
        .collect();
    for handle in ctls {
        let out = handle.join().expect("ctl thread");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        match out.status.code() {
            Some(0) => assert!(stdout.starts_with("idle"), "{stdout}"),
            Some(1) => {
                let lines: Vec<&str> = stderr.lines().collect();
                assert!(
                    lines.len() == 1 && lines[0].starts_with("error: the daemon at `") && lines[0].contains("busy"),
                    "a failing ctl must say the daemon is busy, in one line:\n{stderr}"
                );
            }
            other => panic!("ctl exited with {other:?}\n{stdout}\n{stderr}"),
        }
    }
    assert!(daemon.try_status().is_none(), "the daemon died:\n{}", daemon.stderr());
    assert_eq!(daemon.stop().status.code(), Some(0));
}
