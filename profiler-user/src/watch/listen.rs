//! The daemon's inputs besides signals: the control FIFO reader and the
//! reply-socket server. Both turn what they receive into [`Request`]s for
//! the daemon's single state machine, so commands are handled one at a time
//! in arrival order whatever their source.
//!
//! Both are built for hostile input: lines are bounded ([`LineSplitter`]),
//! warnings about bad lines are rate-limited so a flood cannot fill the
//! journal, socket clients must send their line within
//! [`CLIENT_READ_TIMEOUT`], and only the daemon's own user (or root) may
//! connect. At most [`MAX_CLIENTS`] requests are served at once; the next
//! [`MAX_BUSY_CLIENTS`] get a "busy, retry" answer (their command is not
//! run, so `ctl` retries it), and beyond those, connections wait in the
//! listen backlog until a slot frees. No client is ever cut off without an
//! answer: closing a socket with its request unread would reset it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, error, info, warn};

use crate::control::{parse_command, Command, DaemonState, LineSplitter, ParseError, Reply, MAX_LINE};

/// Simultaneous `ctl` requests served. Each holds a task and, while it
/// waits, a reply slot: the cap bounds both.
pub(super) const MAX_CLIENTS: usize = 16;

/// Simultaneous clients told "busy" beyond [`MAX_CLIENTS`]; each holds a
/// small task until its line is read and answered. Past this, the accept
/// loop waits, and new connections queue in the kernel.
pub(super) const MAX_BUSY_CLIENTS: usize = 64;

/// Time a socket client gets to send its command line.
pub(super) const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time the daemon spends writing a reply to a client that does not read.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Age after which the unfinished line on the control FIFO is dropped: its
/// writer is gone (`echo`, `printf` write a whole line at once). The daemon
/// holds the FIFO read-write, so a writer's close is never seen as such;
/// without this, `printf start > control` followed by `echo status >
/// control` would be read as `startstatus`.
const PARTIAL_LINE_MAX_AGE: Duration = Duration::from_secs(1);

/// At most this many warnings about bad FIFO lines per [`WARN_WINDOW`].
const WARN_BURST: u32 = 5;
const WARN_WINDOW: Duration = Duration::from_secs(10);

/// Where a command came from; recorded as the capture's trigger source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Fifo,
    Ctl,
    Signal,
    /// A trigger rule fired.
    Rule,
    /// An alert arrived on `POST /alerts`.
    Alert,
}

impl Source {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Fifo => "fifo",
            Source::Ctl => "ctl",
            Source::Signal => "SIGUSR2",
            Source::Rule => "rule",
            Source::Alert => "alert",
        }
    }
}

/// One command for the state machine. Socket requests carry a reply slot
/// (and may carry a parse error, answered with the daemon's state); FIFO and
/// signal requests are answered in the log only.
#[derive(Debug)]
pub(super) struct Request {
    pub command: Result<Command, ParseError>,
    pub source: Source,
    pub reply: Option<oneshot::Sender<Reply>>,
}

/// Reads commands from the control FIFO until the daemon drops the
/// receiving end of `tx`. The descriptor is open read-write, so no writer
/// closing its end ever produces end-of-file (and a busy loop).
pub(super) async fn read_fifo(fd: OwnedFd, path: PathBuf, tx: mpsc::Sender<Request>) {
    let mut receiver = match pipe::Receiver::from_owned_fd(fd) {
        Ok(receiver) => receiver,
        Err(e) => {
            error!("cannot read the control FIFO `{}`: {e}; only SIGUSR2 and `stackwatch ctl` work", path.display());
            return;
        }
    };
    let mut splitter = LineSplitter::new();
    let mut limiter = WarnLimiter::new();
    let mut buf = vec![0u8; 8192];
    // When the unfinished line last grew.
    let mut partial_since: Option<Instant> = None;
    loop {
        let read = match partial_since {
            None => Ok(receiver.read(&mut buf).await),
            Some(since) => {
                let deadline = tokio::time::Instant::from_std(since + PARTIAL_LINE_MAX_AGE);
                tokio::time::timeout_at(deadline, receiver.read(&mut buf)).await
            }
        };
        let Ok(read) = read else {
            partial_since = None;
            drop_partial(&mut splitter, &path, &mut limiter);
            continue;
        };
        let n = match read {
            Ok(0) => {
                // Only possible if the write side were closed; never spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                error!("failed to read the control FIFO `{}`: {e}", path.display());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut lines = Vec::new();
        splitter.push(&buf[..n], |line| lines.push(line.and_then(parse_command)));
        partial_since = splitter.has_partial().then(Instant::now);
        for line in lines {
            match line {
                Ok(command) => {
                    limiter.flush();
                    let request = Request { command: Ok(command), source: Source::Fifo, reply: None };
                    if tx.send(request).await.is_err() {
                        return;
                    }
                }
                Err(ParseError::Empty) => {}
                Err(e) => {
                    if limiter.allow() {
                        warn!("ignoring a line written to the control FIFO `{}`: {e}", path.display());
                    }
                }
            }
        }
    }
}

/// Drops the FIFO's unfinished line, saying so in one (rate-limited) line.
fn drop_partial(splitter: &mut LineSplitter, path: &std::path::Path, limiter: &mut WarnLimiter) {
    let Some(bytes) = splitter.drop_partial() else { return };
    if !limiter.allow() {
        return;
    }
    let what = if bytes.is_empty() {
        "the end of an overlong line".to_owned()
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let shown: String = text.chars().take(40).collect();
        let more = if text.chars().count() > 40 { "…" } else { "" };
        format!("`{}{more}`", shown.escape_debug())
    };
    warn!(
        "dropped {what} written to the control FIFO `{}` without a newline; end each command with one \
         (`echo stop > {}`)",
        path.display(),
        path.display()
    );
}

/// Accepts `ctl` connections until the task is aborted.
pub(super) async fn serve_socket(listener: UnixListener, tx: mpsc::Sender<Request>) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let busy_permits = Arc::new(Semaphore::new(MAX_BUSY_CLIENTS));
    let mut busy_warned = false;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!("failed to accept a ctl connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // The socket is 0600 in a private directory; this is the belt to
        // those braces (e.g. a directory made group-searchable later).
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me || cred.uid() == 0 => {}
            Ok(cred) => {
                warn!(
                    "refused a ctl connection from uid {}: only uid {me} and root may control the daemon",
                    cred.uid()
                );
                continue;
            }
            Err(e) => {
                warn!("refused a ctl connection whose peer cannot be identified: {e}");
                continue;
            }
        }
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            busy_warned = false;
            let tx = tx.clone();
            tokio::spawn(async move {
                serve_client(stream, tx).await;
                drop(permit);
            });
            continue;
        }
        if !busy_warned {
            // Once per burst: a flood must not flood the journal too.
            warn!("more than {MAX_CLIENTS} ctl requests at once; answering the extra ones `busy, retry`");
            busy_warned = true;
        }
        // When even the busy slots are taken, wait: the kernel queues new
        // connections meanwhile.
        let Ok(busy) = busy_permits.clone().acquire_owned().await else { return };
        tokio::spawn(async move {
            answer_busy(stream).await;
            drop(busy);
        });
    }
}

/// Tells a client the daemon is busy, without running its command. Its line
/// is read first: closing a socket with unread data resets the connection,
/// and the client would see `Connection reset by peer` instead of the answer.
async fn answer_busy(stream: UnixStream) {
    let (mut read, write) = stream.into_split();
    if tokio::time::timeout(CLIENT_READ_TIMEOUT, read_line(&mut read)).await.is_err() {
        debug!("a ctl client told `busy` sent no command");
    }
    send_reply(write, &busy()).await;
    discard_queued(&read);
}

/// The answer to a request over [`MAX_CLIENTS`].
fn busy() -> Reply {
    Reply {
        busy: true,
        ..refusal(format!(
            "the daemon is busy: {MAX_CLIENTS} ctl requests are being served; the command was not run, retry"
        ))
    }
}

/// One request, one reply line, then the connection closes.
async fn serve_client(stream: UnixStream, tx: mpsc::Sender<Request>) {
    let (mut read, write) = stream.into_split();
    let reply = match tokio::time::timeout(CLIENT_READ_TIMEOUT, read_line(&mut read)).await {
        Err(_) => refusal(format!("no command received within {}", humantime::format_duration(CLIENT_READ_TIMEOUT))),
        Ok(Err(e)) => refusal(format!("failed to read the command: {e}")),
        Ok(Ok(line)) => {
            let command = parse_command(&line);
            debug!(command = %String::from_utf8_lossy(&line).trim_end(), "ctl request");
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send(Request { command, source: Source::Ctl, reply: Some(reply_tx) }).await.is_err() {
                shutting_down()
            } else {
                reply_rx.await.unwrap_or_else(|_| shutting_down())
            }
        }
    };
    send_reply(write, &reply).await;
    discard_queued(&read);
}

/// Drops what the client sent beyond the line that was read (the rest of
/// an overlong line, a second line) and is already queued: closing a unix
/// socket with unread data resets the connection, and the client would get
/// `Connection reset by peer` instead of the answer sent just before. Never
/// waits: a client that keeps sending gets the reset.
fn discard_queued(read: &tokio::net::unix::OwnedReadHalf) {
    let mut buf = [0u8; 8192];
    // At most 1 MiB: what one write of a misbehaving client leaves queued.
    for _ in 0..128 {
        match read.try_read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Writes `reply` as one JSON line, giving up on a client that does not read.
async fn send_reply(mut write: tokio::net::unix::OwnedWriteHalf, reply: &Reply) {
    let mut json = match serde_json::to_string(reply) {
        Ok(json) => json,
        Err(e) => {
            error!("failed to encode a ctl reply: {e}");
            return;
        }
    };
    json.push('\n');
    if let Ok(Err(e)) = tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write.write_all(json.as_bytes())).await {
        debug!("a ctl client left before its reply: {e}");
    }
}

/// Reads up to the first newline (or end of stream), at most [`MAX_LINE`]
/// bytes; a longer line is returned as is and refused by the parser.
async fn read_line(read: &mut tokio::net::unix::OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut reader = BufReader::new(read.take(MAX_LINE as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    Ok(line)
}

/// A reply for a request the state machine never saw.
fn refusal(message: String) -> Reply {
    Reply {
        ok: false,
        state: DaemonState::Idle,
        message,
        files: Vec::new(),
        capture: None,
        pid: std::process::id(),
        busy: false,
    }
}

fn shutting_down() -> Reply {
    Reply { state: DaemonState::Stopping, ..refusal("the daemon is shutting down".to_owned()) }
}

/// Allows a burst of warnings per window, then counts what it suppresses
/// and reports the count once the window has passed.
struct WarnLimiter {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl WarnLimiter {
    fn new() -> Self {
        Self { window_start: Instant::now(), logged: 0, suppressed: 0 }
    }

    fn allow(&mut self) -> bool {
        if self.window_start.elapsed() >= WARN_WINDOW {
            self.flush();
            self.window_start = Instant::now();
            self.logged = 0;
        }
        if self.logged < WARN_BURST {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Reports what was suppressed so far.
    fn flush(&mut self) {
        if self.suppressed > 0 {
            warn!("ignored {} more invalid lines on the control FIFO", self.suppressed);
            self.suppressed = 0;
        }
    }
}

/// Tells systemd (`Type=notify`) about readiness and state changes. A no-op
/// outside systemd; failures only cost the status line, so they are logged
/// at debug level.
pub(super) fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        debug!("failed to notify systemd ({state:?}): {e}");
    }
}

/// Logs the status when `status` arrives without a reply channel (FIFO).
pub(super) fn log_status(reply: &Reply) {
    info!("status: {}", reply.message.replace('\n', "; "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let mut limiter = WarnLimiter::new();
        let allowed = (0..100).filter(|_| limiter.allow()).count();
        assert_eq!(allowed, WARN_BURST as usize);
        assert_eq!(limiter.suppressed, 100 - u64::from(WARN_BURST));
        limiter.flush();
        assert_eq!(limiter.suppressed, 0);
    }

    #[tokio::test]
    async fn socket_requests_reach_the_state_machine_and_get_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let server = tokio::spawn(serve_socket(listener, tx));
        let daemon = tokio::spawn(async move {
            let request = rx.recv().await.unwrap();
            assert_eq!(request.command, Ok(Command::Status));
            assert_eq!(request.source, Source::Ctl);
            let reply = Reply { message: "idle".into(), ok: true, ..refusal(String::new()) };
            request.reply.unwrap().send(reply).unwrap();
            // A malformed line still reaches the state machine, as an error.
            let request = rx.recv().await.unwrap();
            assert!(matches!(request.command, Err(ParseError::Unknown(_))));
            drop(request);
        });
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(b"status\r\n").await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert!(out.ends_with('\n') && out.matches('\n').count() == 1, "{out:?}");
        assert!(out.contains(r#""message":"idle""#), "{out}");

        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(b"reboot\n").await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        // The request was dropped without an answer: the client still gets one.
        assert!(out.contains("shutting down"), "{out}");
        daemon.await.unwrap();
        server.abort();
    }

    #[tokio::test]
    async fn a_partial_fifo_line_is_not_joined_to_the_next_writers() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let fd = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let reader = tokio::spawn(read_fifo(OwnedFd::from(fd), path.clone(), tx));
        // One writer leaves a line unfinished and closes; a later one writes
        // a whole command, which must arrive as written.
        let write = |bytes: &'static [u8]| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(path)?.write_all(bytes))
        };
        write(b"bogus").await.unwrap().unwrap();
        tokio::time::sleep(PARTIAL_LINE_MAX_AGE + Duration::from_millis(500)).await;
        write(b"status\n").await.unwrap().unwrap();
        let request = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        let request = request.expect("`status` never arrived: joined to the unfinished line?").unwrap();
        assert_eq!(request.command, Ok(Command::Status));
        reader.abort();
    }

    #[tokio::test]
    async fn an_overlong_line_gets_its_answer_not_a_reset() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let server = tokio::spawn(serve_socket(listener, tx));
        let daemon = tokio::spawn(async move {
            let request = rx.recv().await.unwrap();
            let error = request.command.clone().unwrap_err();
            assert_eq!(error, ParseError::TooLong);
            request.reply.unwrap().send(refusal(error.to_string())).unwrap();
        });
        let mut stream = UnixStream::connect(&path).await.unwrap();
        let mut line = vec![b'x'; MAX_LINE + 1000];
        line.push(b'\n');
        stream.write_all(&line).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap_or_else(|e| panic!("no answer: {e}"));
        assert!(out.contains("longer than 4096 bytes"), "{out}");
        daemon.await.unwrap();
        server.abort();
    }

    /// `status` on a fresh connection; the raw answer, or the I/O error.
    async fn status(path: PathBuf) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&path).await?;
        stream.write_all(b"status\n").await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_clients_gets_answers_or_busy_never_a_reset() {
        const CLIENTS: usize = 40;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel(CLIENTS);
        let server = tokio::spawn(serve_socket(listener, tx));
        // The state machine holds every request it gets until told to go,
        // so the first MAX_CLIENTS keep their slots while the rest arrive.
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let daemon = tokio::spawn(async move {
            let mut held = Vec::new();
            while held.len() < MAX_CLIENTS {
                held.push(rx.recv().await.unwrap());
            }
            go_rx.await.unwrap();
            for request in held {
                let reply = Reply { message: "idle".into(), ok: true, ..refusal(String::new()) };
                request.reply.unwrap().send(reply).unwrap();
            }
            // Nothing beyond the cap ever reached the state machine.
            assert!(rx.try_recv().is_err());
        });
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        for _ in 0..CLIENTS {
            let (path, done_tx) = (path.clone(), done_tx.clone());
            tokio::spawn(async move { done_tx.send(status(path).await).unwrap() });
        }
        let parse = |raw: std::io::Result<String>| -> Reply {
            let raw = raw.unwrap_or_else(|e| panic!("a client got no answer: {e}"));
            assert_eq!(raw.matches('\n').count(), 1, "{raw:?}");
            serde_json::from_str(&raw).unwrap()
        };
        // Everyone beyond the cap is answered while the first ones wait.
        for _ in MAX_CLIENTS..CLIENTS {
            let reply = parse(done_rx.recv().await.unwrap());
            assert!(reply.busy && !reply.ok, "{reply:?}");
            assert!(
                reply.message.starts_with("the daemon is busy: 16 ctl requests") && reply.message.ends_with("retry")
            );
        }
        go_tx.send(()).unwrap();
        for _ in 0..MAX_CLIENTS {
            let reply = parse(done_rx.recv().await.unwrap());
            assert!(reply.ok && !reply.busy && reply.message == "idle", "{reply:?}");
        }
        daemon.await.unwrap();
        server.abort();
    }
}
