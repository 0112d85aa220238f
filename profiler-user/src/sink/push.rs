//! The push sink: every pprof of a capture goes to Grafana Pyroscope
//! (`--push URL`), through its HTTP ingest API (`POST /ingest`,
//! `format=pprof`, the profile as the `profile` part of a multipart form).
//!
//! A push must never block or lose a capture, so [`PushSink::write`] only
//! spools: each profile (gzip-compressed pprof, with the query it is to be
//! sent with) becomes one file in the spool directory, written atomically
//! like every capture file, and a sender task wakes up. The sender sends
//! the spool oldest first, each request with a timeout; it deletes a file
//! once the server took it (2xx) or refused it for good (4xx other than
//! 408/429: sending it again cannot succeed, the reason is logged), and
//! otherwise waits with exponential backoff (1 s doubling to 5 min) while
//! the spool keeps what comes in. The spool is bounded (`push-spool-size`):
//! past it the oldest profiles are dropped, counted and logged, so an
//! unreachable server costs bounded disk, never the capture files, which
//! the directory sink has written before the push sink sees the capture.
//!
//! Labels (Pyroscope's `name=SERVICE{k=v,…}`): the service name is the
//! target's file name (process name, cgroup's last component or `host`),
//! then `host`, `kind` (cpu, offcpu, memory), `trigger` (manual, rule,
//! alert) and the operator's `push-labels`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::files::OutputDir;
use super::{Sink, Written};
use crate::metrics::Metrics;
use crate::profile::capture::{CaptureInfo, FinishedCapture, Trigger};
use crate::profile::{pprof, Profile};

/// Default bound of the spool.
pub(crate) const DEFAULT_SPOOL_BYTES: u64 = 256 << 20;
/// Default time one request may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Suffix of spooled profiles.
const SPOOL_SUFFIX: &str = ".push";

/// How to reach the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PushConfig {
    /// The server's base URL (`http://pyroscope:4040`), or its full ingest URL.
    pub url: String,
    pub auth: PushAuth,
    /// `X-Scope-OrgID`, for a multi-tenant server.
    pub tenant: Option<String>,
    pub timeout: Duration,
    /// Extra labels on every profile.
    pub labels: BTreeMap<String, String>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PushAuth {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for PushAuth {
    // Secrets stay out of logs and debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushAuth::None => f.write_str("None"),
            PushAuth::Basic { user, .. } => write!(f, "Basic({user}, …)"),
            PushAuth::Bearer(_) => f.write_str("Bearer(…)"),
        }
    }
}

impl PushConfig {
    /// The ingest endpoint: `URL/ingest` unless the URL names it already.
    pub(crate) fn ingest_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if base.ends_with("/ingest") {
            base.to_owned()
        } else {
            format!("{base}/ingest")
        }
    }
}

/// Checks a `--push` URL: http or https, a host, no query.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: only http:// and https:// servers are supported"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    if parsed.query().is_some() {
        return Err(format!("`{url}`: give the server's base URL without a query, e.g. `http://pyroscope:4040`"));
    }
    Ok(())
}

/// One profile to send: the ingest query and the gzip-compressed pprof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Upload {
    pub query: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl Upload {
    /// A spool file: one line of JSON (the query), then the pprof bytes.
    fn to_spool(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.body);
        bytes
    }

    fn from_spool(bytes: &[u8]) -> anyhow::Result<Self> {
        let newline = bytes.iter().position(|&b| b == b'\n').context("no header line")?;
        let mut upload: Upload = serde_json::from_slice(&bytes[..newline]).context("bad header line")?;
        upload.body = bytes[newline + 1..].to_vec();
        Ok(upload)
    }
}

/// Pyroscope's label names: `[a-zA-Z_][a-zA-Z0-9_.]*`.
fn label_name(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit() || c == '.') {
        out.insert(0, '_');
    }
    out
}

/// Values go inside `name={…}`: the characters that end or split it go.
fn label_value(value: &str) -> String {
    value.chars().map(|c| if matches!(c, ',' | '{' | '}' | '=' | '"') || c.is_whitespace() { '_' } else { c }).collect()
}

fn trigger_label(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Manual { .. } => "manual",
        Trigger::Rule { .. } => "rule",
        Trigger::Alert { .. } => "alert",
    }
}

/// The ingest request for one profile of a capture.
pub(crate) fn upload(
    info: &CaptureInfo,
    profile: &Profile,
    extra: &BTreeMap<String, String>,
) -> anyhow::Result<Upload> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("host".to_owned(), info.host.clone());
    labels.insert("kind".to_owned(), profile.kind.to_string());
    labels.insert("trigger".to_owned(), trigger_label(&info.trigger).to_owned());
    if let Trigger::Alert { alert, .. } = &info.trigger {
        labels.insert("alertname".to_owned(), alert.clone());
    }
    for (k, v) in extra {
        labels.insert(k.clone(), v.clone());
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{}={}", label_name(k), label_value(v))).collect();
    let service = label_value(&info.target.file_name);
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let start = secs(info.start);
    // Pyroscope wants until > from; a sub-second capture still spans one.
    let end = secs(info.end).max(start + 1);
    let query = vec![
        ("name".to_owned(), format!("{service}{{{}}}", labels.join(","))),
        ("from".to_owned(), start.to_string()),
        ("until".to_owned(), end.to_string()),
        ("format".to_owned(), "pprof".to_owned()),
        ("sampleRate".to_owned(), info.frequency_hz.to_string()),
        ("spyName".to_owned(), "stackwatch".to_owned()),
    ];
    let body = pprof::encode_gzip(profile, &[])?;
    Ok(Upload { query, body })
}

/// The multipart form Pyroscope's `format=pprof` ingest reads: the profile
/// as the file part `profile`.
fn multipart(body: &[u8]) -> (String, Vec<u8>) {
    // Random enough that it never occurs in the bytes: checked below.
    let mut boundary = format!("stackwatch-{:016x}", rand_u64());
    while body.windows(boundary.len()).any(|w| w == boundary.as_bytes()) {
        boundary = format!("stackwatch-{:016x}", rand_u64());
    }
    let mut out = Vec::with_capacity(body.len() + 256);
    let _ = write!(
        out,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pb.gz\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    out.extend_from_slice(body);
    let _ = write!(out, "\r\n--{boundary}--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), out)
}

fn rand_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mixed = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ u64::from(std::process::id());
    // splitmix64's finalizer: neighbouring inputs give unrelated outputs.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How a send ended.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Worth trying again later: no connection, a timeout, 5xx, 408, 429.
    Transient(String),
    /// The server refused this profile; sending it again cannot help.
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transient(m) | SendError::Permanent(m) => f.write_str(m),
        }
    }
}

/// The HTTP side: one client (connection pool, TLS) for every request.
#[derive(Clone, Debug)]
pub(crate) struct Pusher {
    client: reqwest::Client,
    config: Arc<PushConfig>,
}

impl Pusher {
    pub(crate) fn new(config: PushConfig) -> anyhow::Result<Self> {
        // rustls needs one process-wide crypto provider; ring is the one
        // built in. Already installed (a second pusher) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("stackwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("failed to set up the HTTP client for `--push`")?;
        Ok(Self { client, config: Arc::new(config) })
    }

    /// Sends one profile.
    pub(crate) async fn send(&self, upload: &Upload) -> Result<(), SendError> {
        let (content_type, body) = multipart(&upload.body);
        let mut url = reqwest::Url::parse(&self.config.ingest_url())
            .map_err(|e| SendError::Permanent(format!("bad push URL: {e}")))?;
        url.query_pairs_mut().extend_pairs(upload.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut request = self.client.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        request = match &self.config.auth {
            PushAuth::None => request,
            PushAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
            PushAuth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(tenant) = &self.config.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = request.send().await.map_err(|e| SendError::Transient(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(300).collect();
        let message = format!("the server answered {status}: {text}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Transient(message))
        } else {
            Err(SendError::Permanent(message))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The spool: a directory of `.push` files, oldest name first.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    seq: AtomicU64,
}

impl Spool {
    /// Creates the directory (0700: profiles reveal what processes do).
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the push spool directory `{}`", dir.display()))?;
        Ok(Self { dir: dir.to_owned(), max_bytes, seq: AtomicU64::new(0) })
    }

    /// Adds one profile; returns how many old ones were dropped to stay
    /// under the bound.
    pub(crate) fn add(&self, upload: &Upload) -> anyhow::Result<usize> {
        let bytes = upload.to_spool();
        if bytes.len() as u64 > self.max_bytes {
            bail!("the profile ({} bytes) is larger than the whole push spool ({} bytes)", bytes.len(), self.max_bytes);
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("{nanos:020}-{:06}{SPOOL_SUFFIX}", self.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000);
        let out = OutputDir::open(&self.dir)?;
        out.write_file(&name, &bytes, None)?;
        // Oldest first: drop until what is left fits.
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, size)| size).sum();
        let mut dropped = 0;
        entries.retain(|(path, _)| path.file_name().is_some_and(|n| n != name.as_str()));
        for (path, size) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Spooled profiles, oldest first, with their sizes.
    pub(crate) fn entries(&self) -> Vec<(PathBuf, u64)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut entries: Vec<(PathBuf, u64)> = dir
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(SPOOL_SUFFIX) && !n.starts_with('.')))
            .filter_map(|e| Some((e.path(), e.metadata().ok().filter(std::fs::Metadata::is_file)?.len())))
            .collect();
        entries.sort();
        entries
    }
}

/// The push sink: spools each capture's profiles and wakes the sender.
pub(crate) struct PushSink {
    spool: Arc<Spool>,
    labels: BTreeMap<String, String>,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl PushSink {
    /// Opens the spool and starts the sender on the current tokio runtime.
    pub(crate) fn start(config: PushConfig, metrics: Metrics) -> anyhow::Result<Self> {
        let spool = Arc::new(Spool::open(&config.spool_dir, config.spool_max_bytes)?);
        let labels = config.labels.clone();
        let url = config.ingest_url();
        let pusher = Pusher::new(config)?;
        let wake = Arc::new(Notify::new());
        let waiting = spool.entries().len();
        info!(url = %url, spooled = waiting, "pushing every profile to Pyroscope");
        tokio::spawn(send_spool(pusher, Arc::clone(&spool), Arc::clone(&wake), metrics.clone()));
        Ok(Self { spool, labels, wake, metrics })
    }
}

impl Sink for PushSink {
    fn write(&self, capture: &FinishedCapture) -> anyhow::Result<Written> {
        for profile in &capture.profiles {
            let result = upload(&capture.info, profile, &self.labels).and_then(|u| self.spool.add(&u));
            match result {
                Ok(0) => {}
                Ok(dropped) => {
                    warn!("the push spool is full: dropped the {dropped} oldest profiles waiting to be pushed");
                    self.metrics.pushes.get_or_create(&vec![("result", "dropped".to_owned())]).inc_by(dropped as u64);
                }
                Err(e) => {
                    error!("the {} profile will not be pushed: {e:#} (its files are on disk)", profile.kind);
                    Metrics::inc(&self.metrics.pushes, "result", "dropped");
                }
            }
        }
        self.wake.notify_one();
        Ok(Written::default())
    }
}

/// The sender: runs for the daemon's life.
async fn send_spool(pusher: Pusher, spool: Arc<Spool>, wake: Arc<Notify>, metrics: Metrics) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let entries = spool.entries();
        metrics.push_spool_files.set(entries.len() as i64);
        metrics.push_spool_bytes.set(entries.iter().map(|(_, s)| *s as i64).sum());
        if entries.is_empty() {
            wake.notified().await;
            continue;
        }
        let mut retry = false;
        for (path, _) in entries {
            let upload = match std::fs::read(&path).map_err(anyhow::Error::new).and_then(|b| Upload::from_spool(&b)) {
                Ok(upload) => upload,
                Err(e) => {
                    warn!("dropping unreadable push spool file `{}`: {e:#}", path.display());
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            match pusher.send(&upload).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    Metrics::inc(&metrics.pushes, "result", "ok");
                    if failing {
                        info!("pushing to Pyroscope works again");
                        failing = false;
                    }
                    backoff = FIRST_BACKOFF;
                    debug!(file = %path.display(), "profile pushed");
                }
                Err(SendError::Permanent(reason)) => {
                    let _ = std::fs::remove_file(&path);
                    Metrics::inc(&metrics.pushes, "result", "refused");
                    error!("Pyroscope refused a profile, which is dropped from the push spool: {reason}");
                }
                Err(SendError::Transient(reason)) => {
                    Metrics::inc(&metrics.pushes, "result", "retry");
                    // One warning per outage, then quiet retries.
                    if failing {
                        debug!("push failed again: {reason}; next try in {}", humantime::format_duration(backoff));
                    } else {
                        warn!(
                            "cannot push to Pyroscope: {reason}; profiles wait in the spool and are sent when it answers (next try in {})",
                            humantime::format_duration(backoff)
                        );
                        failing = true;
                    }
                    retry = true;
                    break;
                }
            }
        }
        if retry {
            // A new capture does not cut the wait short: the server is down.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Pushes a capture now, for `record --push`: a few tries with backoff
/// within `deadline`; returns how many profiles the server took.
pub(crate) async fn push_now(pusher: &Pusher, capture: &FinishedCapture, deadline: Duration) -> anyhow::Result<usize> {
    let until = tokio::time::Instant::now() + deadline;
    let mut sent = 0;
    for profile in &capture.profiles {
        let upload = upload(&capture.info, profile, &pusher.config.labels)?;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match pusher.send(&upload).await {
                Ok(()) => {
                    sent += 1;
                    break;
                }
                Err(SendError::Permanent(reason)) => {
                    return Err(anyhow!("the server refused the {} profile: {reason}", profile.kind))
                }
                Err(SendError::Transient(reason)) if tokio::time::Instant::now() + backoff >= until => {
                    return Err(anyhow!("{reason}; gave up after {}", humantime::format_duration(deadline)));
                }
                Err(SendError::Transient(reason)) => {
                    debug!("push failed: {reason}; trying again in {}", humantime::format_duration(backoff));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testdata;

    #[test]
    fn ingest_query_names_service_and_labels() {
        let (info, profiles) = testdata::alert_capture();
        let mut extra = BTreeMap::new();
        extra.insert("env".to_owned(), "prod eu".to_owned());
        let up = upload(&info, &profiles[0], &extra).unwrap();
        let q: BTreeMap<_, _> = up.query.iter().cloned().collect();
        assert_eq!(q["format"], "pprof");
        assert_eq!(q["spyName"], "stackwatch");
        assert_eq!(q["sampleRate"], info.frequency_hz.to_string());
        assert!(q["until"].parse::<u64>().unwrap() > q["from"].parse::<u64>().unwrap());
        let name = &q["name"];
        assert!(name.starts_with(&format!("{}{{", info.target.file_name)), "{name}");
        assert!(name.contains("kind=cpu") && name.contains("trigger=alert") && name.contains("env=prod_eu"), "{name}");
        assert!(name.contains("alertname=HighCpu"), "{name}");
        assert!(pprof::decode(&up.body).is_ok());
    }

    #[test]
    fn spool_round_trips_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let up = Upload { query: vec![("name".into(), "a{}".into())], body: vec![7; 1000] };
        let size = up.to_spool().len() as u64;
        let spool = Spool::open(&dir.path().join("spool"), size * 3).unwrap();
        for _ in 0..3 {
            assert_eq!(spool.add(&up).unwrap(), 0);
        }
        let first = spool.entries()[0].0.clone();
        assert_eq!(spool.add(&up).unwrap(), 1, "the fourth drops the oldest");
        let entries = spool.entries();
        assert_eq!(entries.len(), 3);
        assert!(!entries.iter().any(|(p, _)| p == &first));
        assert_eq!(Upload::from_spool(&std::fs::read(&entries[0].0).unwrap()).unwrap(), up);
        let huge = Upload { query: vec![], body: vec![0; (size * 4) as usize] };
        assert!(spool.add(&huge).is_err());
    }

    #[test]
    fn urls() {
        assert!(check_url("http://pyroscope:4040").is_ok());
        assert!(check_url("https://profiles.example.net/prefix").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("pyroscope:4040").is_err());
        assert!(check_url("http://x/?a=b").is_err());
        let mut c = PushConfig {
            url: "http://p:4040/".into(),
            auth: PushAuth::Bearer("secret".into()),
            tenant: None,
            timeout: DEFAULT_TIMEOUT,
            labels: BTreeMap::new(),
            spool_dir: PathBuf::new(),
            spool_max_bytes: 1,
        };
        assert_eq!(c.ingest_url(), "http://p:4040/ingest");
        c.url = "http://p:4040/ingest".into();
        assert_eq!(c.ingest_url(), "http://p:4040/ingest");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn multipart_wraps_the_profile() {
        let (ct, body) = multipart(b"PPROF");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"profile\""));
        assert!(text.ends_with(&format!("\r\n\r\nPPROF\r\n--{boundary}--\r\n")), "{text}");
    }
}
