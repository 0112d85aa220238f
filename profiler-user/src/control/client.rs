//! The client side of the control protocol, for `stackwatch ctl`.
//!
//! It connects to the daemon's reply socket (`<control>.sock`, see
//! [`super::socket_path`]), writes the command as one line, and reads one
//! line of JSON back: the outcome, the state after it and, for a `stop`,
//! the files written. Unlike writing to the FIFO, which blocks forever when
//! nobody reads it, every step is bounded in time.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};

use super::{socket_path, Command, Reply};

/// Writing one short line to a live daemon is instant; this only bounds a
/// wedged one.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read; real ones are a few hundred bytes.
const MAX_REPLY: u64 = 1 << 20;

/// Waits between attempts while the daemon answers "busy": short, since a
/// busy daemon is one serving many quick requests, and growing, so many
/// `ctl`s retrying at once spread out. About 3 s in all.
const BUSY_BACKOFF: [Duration; 6] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// Sends `command` to the daemon behind the control FIFO `control` and
/// returns its answer, raw and parsed. A "busy" answer (the daemon did not
/// run the command) is retried with a growing pause; if the daemon stays
/// busy that is the error.
pub(crate) fn request(control: &Path, command: Command, timeout: Duration) -> anyhow::Result<(String, Reply)> {
    request_with_backoff(control, command, timeout, &BUSY_BACKOFF)
}

fn request_with_backoff(
    control: &Path,
    command: Command,
    timeout: Duration,
    backoff: &[Duration],
) -> anyhow::Result<(String, Reply)> {
    let mut pauses = backoff.iter();
    loop {
        let (raw, reply) = request_once(control, command, timeout)?;
        if !reply.busy {
            return Ok((raw, reply));
        }
        match pauses.next() {
            Some(pause) => std::thread::sleep(*pause),
            None => {
                let waited: Duration = backoff.iter().sum();
                return Err(anyhow!(
                    "the daemon at `{}` is busy: it kept answering that it serves too many ctl requests at once \
                     (retried for {}); `{}` was not run: try again in a moment",
                    socket_path(control).display(),
                    humantime::format_duration(waited),
                    command.to_line()
                ));
            }
        }
    }
}

/// One connection: send the line, read the one-line answer.
fn request_once(control: &Path, command: Command, timeout: Duration) -> anyhow::Result<(String, Reply)> {
    let socket = socket_path(control);
    let mut stream = UnixStream::connect(&socket).map_err(|e| connect_error(control, &socket, e))?;
    stream.set_write_timeout(Some(SEND_TIMEOUT)).context("failed to set a socket timeout")?;
    stream.set_read_timeout(Some(timeout)).context("failed to set a socket timeout")?;
    let line = format!("{}\n", command.to_line());
    stream
        .write_all(line.as_bytes())
        .with_context(|| format!("failed to send `{}` to the daemon at `{}`", command.to_line(), socket.display()))?;
    let mut buf = Vec::new();
    if let Err(e) = (&mut stream).take(MAX_REPLY).read_to_end(&mut buf) {
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            return Err(anyhow!(
                "no reply from the daemon at `{}` within {}; it may be stuck: check its log \
                 (`journalctl -u stackwatch`), or wait longer with --timeout",
                socket.display(),
                humantime::format_duration(timeout)
            ));
        }
        return Err(e).with_context(|| format!("failed to read the daemon's reply from `{}`", socket.display()));
    }
    let text = String::from_utf8_lossy(&buf);
    let raw = text.lines().next().unwrap_or_default().trim().to_owned();
    if raw.is_empty() {
        return Err(anyhow!(
            "the daemon at `{}` closed the connection without answering; check its log (`journalctl -u stackwatch`)",
            socket.display()
        ));
    }
    let reply: Reply = serde_json::from_str(&raw).with_context(|| {
        format!("the daemon at `{}` sent an answer ctl cannot read: `{}`", socket.display(), clip(&raw))
    })?;
    Ok((raw, reply))
}

/// Cuts an answer ctl cannot read to what an error line can show: a
/// broken or foreign server may send up to [`MAX_REPLY`] bytes of anything.
fn clip(raw: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut chars = raw.chars();
    let mut shown: String = chars.by_ref().take(MAX_CHARS).collect();
    let rest = chars.count();
    if rest > 0 {
        shown.push_str(&format!("… ({rest} more characters)"));
    }
    shown
}

/// One sentence for each way of finding no daemon.
fn connect_error(control: &Path, socket: &Path, err: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::NotFound if control.exists() => anyhow!(
            "no stackwatch daemon answers: the control FIFO `{}` exists but its socket `{}` does not; \
             is `stackwatch watch` running? (`systemctl status stackwatch`)",
            control.display(),
            socket.display()
        ),
        ErrorKind::NotFound => anyhow!(
            "no stackwatch daemon: `{}` does not exist; start one with `stackwatch watch` \
             (or `systemctl start stackwatch`), or point --control at its FIFO",
            control.display()
        ),
        ErrorKind::ConnectionRefused => anyhow!(
            "no stackwatch daemon answers on `{}` (the socket is left over from a daemon that is gone); \
             start one with `stackwatch watch` (or `systemctl start stackwatch`)",
            socket.display()
        ),
        ErrorKind::PermissionDenied => anyhow!(
            "permission denied connecting to `{}`: run ctl as the daemon's user (e.g. with sudo)",
            socket.display()
        ),
        _ => anyhow!("cannot connect to the daemon at `{}`: {err}", socket.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn no_daemon_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let control = tmp.path().join("control");
        let err = request(&control, Command::Status, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.starts_with("no stackwatch daemon: `"), "{err}");

        std::fs::write(&control, b"").unwrap();
        let err = request(&control, Command::Status, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("exists but its socket"), "{err}");

        // A socket nobody listens on any more.
        drop(UnixListener::bind(socket_path(&control)).unwrap());
        let err = request(&control, Command::Status, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("left over from a daemon that is gone"), "{err}");
    }

    #[test]
    fn an_unreadable_answer_is_shown_clipped() {
        let tmp = tempfile::tempdir().unwrap();
        let control = tmp.path().join("control");
        let listener = UnixListener::bind(socket_path(&control)).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = [0u8; 16];
            let _ = conn.read(&mut line).unwrap();
            let _ = conn.write_all(&vec![b'x'; 4 << 20]);
        });
        let err = format!("{:#}", request(&control, Command::Status, Duration::from_secs(5)).unwrap_err());
        server.join().unwrap();
        assert!(err.contains("sent an answer ctl cannot read: `xxx"), "{err}");
        assert!(err.contains("… (1048376 more characters)`"), "{}", &err[err.len().saturating_sub(200)..]);
        assert!(err.len() < 1000, "{} bytes", err.len());
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let control = tmp.path().join("control");
        let _listener = UnixListener::bind(socket_path(&control)).unwrap();
        let err = request(&control, Command::Stop, Duration::from_millis(200)).unwrap_err().to_string();
        assert!(err.starts_with("no reply from the daemon at `"), "{err}");
        assert!(err.contains("within 200ms"), "{err}");
    }

    /// Answers `busy` to the first `busy` connections, then `ok`; returns
    /// how many connections it served.
    fn busy_server(listener: UnixListener, busy: usize, total: usize) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            for i in 0..total {
                let (mut conn, _) = listener.accept().unwrap();
                let mut line = [0u8; 16];
                let n = conn.read(&mut line).unwrap();
                assert_eq!(&line[..n], b"status\n");
                let reply: &[u8] = if i < busy {
                    br#"{"ok":false,"state":"idle","message":"the daemon is busy","busy":true,"pid":7}"#
                } else {
                    br#"{"ok":true,"state":"idle","message":"idle: fine","pid":7}"#
                };
                conn.write_all(reply).unwrap();
                conn.write_all(b"\n").unwrap();
            }
            total
        })
    }

    #[test]
    fn a_busy_daemon_is_retried_then_reported_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let control = tmp.path().join("control");
        let backoff = [Duration::from_millis(1); 3];

        let server = busy_server(UnixListener::bind(socket_path(&control)).unwrap(), 2, 3);
        let (_, reply) = request_with_backoff(&control, Command::Status, Duration::from_secs(5), &backoff).unwrap();
        assert!(reply.ok && !reply.busy && reply.message == "idle: fine", "{reply:?}");
        assert_eq!(server.join().unwrap(), 3);
        std::fs::remove_file(socket_path(&control)).unwrap();

        let server = busy_server(UnixListener::bind(socket_path(&control)).unwrap(), 4, 4);
        let err = request_with_backoff(&control, Command::Status, Duration::from_secs(5), &backoff).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.starts_with("the daemon at `") && err.contains("is busy"), "{err}");
        assert!(err.contains("`status` was not run: try again in a moment"), "{err}");
        assert_eq!(server.join().unwrap(), 4, "one attempt plus one per pause");
    }

    #[test]
    fn reads_a_reply() {
        let tmp = tempfile::tempdir().unwrap();
        let control = tmp.path().join("control");
        let listener = UnixListener::bind(socket_path(&control)).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = [0u8; 16];
            let n = conn.read(&mut line).unwrap();
            assert_eq!(&line[..n], b"start 1m\n");
            conn.write_all(br#"{"ok":true,"state":"capturing","message":"capture started","pid":7}"#).unwrap();
            conn.write_all(b"\n").unwrap();
        });
        let (_, reply) = request(
            &control,
            Command::Start { duration: Some(Duration::from_secs(60)), profiles: None },
            Duration::from_secs(5),
        )
        .unwrap();
        server.join().unwrap();
        assert!(reply.ok);
        assert_eq!(reply.message, "capture started");
        assert_eq!(reply.pid, 7);
    }
}
