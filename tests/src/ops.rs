//! The ops stack around `stackwatch watch --listen/--push`, for its tests:
//! a plain HTTP/1.1 client (no dependency: requests are one-shot), a
//! Pyroscope ingest receiver that follows the documented API (`POST
//! /ingest?name=…&from=…&until=…&format=pprof`, the pprof as the `profile`
//! part of a multipart form), a tiny metrics server the test sets (the
//! "spike"), and Debian's Prometheus and Alertmanager started by hand (no
//! systemd here), each killed by pid when its guard drops.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An answer: status, headers (lowercase names), body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// One request to `addr` (`127.0.0.1:PORT`), `Connection: close`.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(err) => panic!("cannot connect to {addr}: {err}"),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    if let Err(err) = stream.write_all(&bytes) {
        panic!("cannot send to {addr}: {err}");
    }
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw) {
        panic!("cannot read the answer of {addr}: {err}");
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<BTreeMap<_, _>>();
    let body =
        if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") { dechunk(body) } else { body.to_owned() };
    HttpResponse { status, headers, body }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A port nobody listens on now (bound and released: another process could
/// take it in between, which is unlikely on a test host).
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free port: {err}"),
    }
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The `profile` part of a `multipart/form-data` body.
    pub fn multipart_profile(&self) -> Option<Vec<u8>> {
        let content_type = self.headers.get("content-type")?;
        let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
        let delimiter = format!("--{boundary}");
        let body = &self.body;
        let mut parts = Vec::new();
        let mut start = 0;
        while let Some(pos) = find(&body[start..], delimiter.as_bytes()) {
            parts.push(start + pos);
            start += pos + delimiter.len();
        }
        for pair in parts.windows(2) {
            let part = &body[pair[0] + delimiter.len()..pair[1]];
            let header_end = find(part, b"\r\n\r\n")?;
            let headers = String::from_utf8_lossy(&part[..header_end]);
            if headers.contains("name=\"profile\"") {
                let content = &part[header_end + 4..];
                return Some(content.strip_suffix(b"\r\n").unwrap_or(content).to_vec());
            }
        }
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A minimal HTTP server on 127.0.0.1: records every request, and answers
/// what `respond` says (status, body). Stops with its guard.
pub struct Receiver {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Received>>>,
    respond: Respond,
    stop: Arc<Mutex<bool>>,
}

impl Receiver {
    pub fn start(respond: impl FnMut(&Received) -> (u16, String) + Send + 'static) -> Self {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(err) => panic!("cannot bind a receiver: {err}"),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let _ = listener.set_nonblocking(true);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Respond = Arc::new(Mutex::new(Box::new(respond)));
        let stop = Arc::new(Mutex::new(false));
        let (reqs, resp, halt) = (Arc::clone(&requests), Arc::clone(&respond), Arc::clone(&stop));
        thread::spawn(move || loop {
            if halt.lock().map(|s| *s).unwrap_or(true) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    serve_one(stream, &reqs, &resp);
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        });
        Self { addr, requests, respond, stop }
    }

    /// Changes the answers from now on.
    pub fn respond_with(&self, respond: impl FnMut(&Received) -> (u16, String) + Send + 'static) {
        if let Ok(mut slot) = self.respond.lock() {
            *slot = Box::new(respond);
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until `n` requests arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} requests arrived within {timeout:?}, expected {n}", got.len());
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
    }
}

/// What a [`Receiver`] answers each request with.
type Respond = Arc<Mutex<Box<dyn FnMut(&Received) -> (u16, String) + Send>>>;

fn serve_one(stream: TcpStream, requests: &Mutex<Vec<Received>>, respond: &Respond) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let received = Received { method, path: path.to_owned(), query, headers, body };
    let (status, text) = match respond.lock() {
        Ok(mut f) => f(&received),
        Err(_) => (500, String::new()),
    };
    if let Ok(mut r) = requests.lock() {
        r.push(received);
    }
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.shutdown(Shutdown::Both);
}

/// `%XX` and `+` of a query string.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'%'),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A program of the ops stack (Prometheus, Alertmanager), its output in a
/// file; SIGTERM then SIGKILL by pid on drop.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    what: &'static str,
}

impl Daemon {
    pub fn start(what: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let out = match File::create(&log) {
            Ok(f) => f,
            Err(err) => panic!("cannot create `{}`: {err}", log.display()),
        };
        let err = match out.try_clone() {
            Ok(f) => f,
            Err(err) => panic!("cannot duplicate a descriptor: {err}"),
        };
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        match cmd.spawn() {
            Ok(child) => Self { child, log, what },
            Err(err) => panic!("cannot start {what} ({cmd:?}): {err}; `cargo xtask setup` installs it"),
        }
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET http://addr/path` answers 200.
    pub fn wait_ready(&mut self, addr: &str, path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited during start-up ({status})\n{}", self.what, self.output());
            }
            if TcpStream::connect(addr).is_ok() && http(addr, "GET", path, &[], b"").status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{} was not ready within {timeout:?}\n{}", self.what, self.output());
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the child is ours and not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The address `watch --listen 127.0.0.1:0` chose, from its log.
pub fn listen_addr(daemon_stderr: &str) -> Option<String> {
    let at = daemon_stderr.find("listen=http://")? + "listen=http://".len();
    let rest = &daemon_stderr[at..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Err(err) = fs::write(&path, text) {
        panic!("cannot write `{}`: {err}", path.display());
    }
    path
}
