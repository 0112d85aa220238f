//! `watch --listen`: the daemon's HTTP endpoint, on its tokio runtime
//! (axum over hyper).
//!
//! - `POST /alerts`: Alertmanager's (version 4) or Grafana's (version 1)
//!   webhook ([`alerts`]). Every firing alert is mapped to a target, and the
//!   target is looked up (is the process there now?) before answering, so a
//!   sender learns at once, with a 422 and the reason, that an alert cannot
//!   be captured; mapped alerts go to the daemon's queue and the answer
//!   (202) goes out without waiting for the capture to start, which keeps
//!   every answer well within 100 ms. The daemon then starts the capture,
//!   coalesces a repeat within the cooldown, or logs why it cannot (another
//!   capture runs). A resolved alert ends the capture it started.
//! - `GET /metrics`: [`crate::metrics`] in Prometheus' text format (0.0.4),
//!   or OpenMetrics when the scraper asks for it.
//! - `GET /healthz`: `ok` while the daemon's loop runs.
//!
//! Listening beyond loopback needs a bearer token (`--listen-token-file`),
//! checked on every route but `/healthz`; a unix socket is made 0600, like
//! the control socket. Bodies are limited to [`MAX_BODY`].

pub(super) mod alerts;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::alerts::{AlertAction, AlertTargets, BadPayload};
use crate::config::ops::ListenAddr;
use crate::metrics::Metrics;
use crate::profile::capture::Trigger;
use crate::target::TargetSpec;

/// Largest request body: a webhook of a few hundred alerts.
const MAX_BODY: usize = 1 << 20;

/// Alert events waiting for the daemon; a full queue answers 503 (both
/// senders retry those).
pub(super) const QUEUE: usize = 64;

/// What the endpoint hands the daemon.
#[derive(Debug)]
pub(super) enum AlertEvent {
    Start(AlertCapture),
    Resolve { key: String, alert: String },
}

/// A firing alert whose target exists.
#[derive(Debug)]
pub(super) struct AlertCapture {
    pub key: String,
    pub alert: String,
    pub target: TargetSpec,
    pub duration: Option<Duration>,
    pub trigger: Trigger,
    /// When the webhook arrived, for the start latency.
    pub received: Instant,
}

struct Endpoint {
    alerts: mpsc::Sender<AlertEvent>,
    targets: AlertTargets,
    metrics: Metrics,
    token: Option<String>,
}

/// A bound listener, ready to serve.
pub(super) enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl Bound {
    /// Binds `config.addr`: before anything else is created, so a taken
    /// port refuses the start.
    pub(super) async fn bind(addr: &ListenAddr) -> Result<Self> {
        match addr {
            ListenAddr::Tcp(sock) => {
                let listener = tokio::net::TcpListener::bind(sock)
                    .await
                    .with_context(|| format!("cannot listen on `{sock}` (`--listen`)"))?;
                Ok(Bound::Tcp(listener))
            }
            ListenAddr::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt as _;
                    if !meta.file_type().is_socket() {
                        bail!(
                            "`{}` exists and is not a socket; remove it or choose another `--listen` path",
                            path.display()
                        );
                    }
                    // A socket nobody accepts on is a leftover of ours.
                    if std::os::unix::net::UnixStream::connect(path).is_ok() {
                        bail!("`{}` is in use by another process (a second daemon?)", path.display());
                    }
                    std::fs::remove_file(path).with_context(|| format!("cannot remove stale `{}`", path.display()))?;
                }
                let listener = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on `{}` (`--listen`)", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot restrict `{}` to its owner", path.display()))?;
                Ok(Bound::Unix(listener, path.clone()))
            }
        }
    }

    /// The address, with the port the kernel chose for port 0.
    pub(super) fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) => l.local_addr().map_or_else(|_| "?".to_owned(), |a| format!("http://{a}")),
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

/// Serves until the daemon stops (the task is aborted then); the daemon
/// removes a unix socket afterwards ([`remove_socket`]).
pub(super) async fn serve(
    bound: Bound,
    token: Option<String>,
    targets: AlertTargets,
    alerts: mpsc::Sender<AlertEvent>,
    metrics: Metrics,
) {
    let endpoint = Arc::new(Endpoint { alerts, targets, metrics, token });
    let app = Router::new()
        .route("/alerts", post(post_alerts))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(endpoint);
    let result = match bound {
        Bound::Tcp(listener) => axum::serve(listener, app).await,
        Bound::Unix(listener, _) => axum::serve(listener, app).await,
    };
    if let Err(e) = result {
        warn!("the HTTP endpoint stopped: {e}");
    }
}

/// Removes the unix socket at shutdown.
pub(super) fn remove_socket(addr: &ListenAddr) {
    if let ListenAddr::Unix(path) = addr {
        let _ = std::fs::remove_file(path);
    }
}

/// `None` when the request may go on; else the 401 to answer.
fn deny(endpoint: &Endpoint, headers: &HeaderMap) -> Option<Response> {
    let token = endpoint.token.as_deref()?;
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required (`Authorization: Bearer …`, see `--listen-token-file`)\n",
            )
                .into_response(),
        ),
    }
}

/// Compares without an early exit, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Default, Serialize)]
struct AlertsAnswer {
    /// Alerts that start (or, resolved, end) a capture.
    accepted: Vec<Accepted>,
    /// Firing alerts that cannot be captured, with the reason.
    rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    alert: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

#[derive(Debug, Serialize)]
struct Rejected {
    alert: String,
    reason: String,
}

async fn post_alerts(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    if let Some(denied) = deny(&endpoint, &headers) {
        return denied;
    }
    let (via, actions) = match alerts::parse(&body, &endpoint.targets) {
        Ok(parsed) => parsed,
        Err(BadPayload(reason)) => {
            warn!("POST /alerts refused: {reason}");
            return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response();
        }
    };
    let mut answer = AlertsAnswer::default();
    let count = |status: &str, outcome: &str| {
        endpoint
            .metrics
            .alerts
            .get_or_create(&vec![("status", status.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    };
    for action in actions {
        let event = match action {
            AlertAction::Rejected { alert, reason } => {
                warn!("alert {alert} from {via} is not captured: {reason}");
                count("firing", "rejected");
                answer.rejected.push(Rejected { alert, reason });
                continue;
            }
            AlertAction::Resolve { key, alert } => {
                count("resolved", "accepted");
                answer.accepted.push(Accepted { alert: alert.clone(), status: "resolved", target: None });
                AlertEvent::Resolve { key, alert }
            }
            AlertAction::Start(start) => {
                // The target must exist now: a sender is told at once, not
                // a log line later.
                let resolved = start.target.into_spec().and_then(|spec| {
                    let resolved = spec.resolve().map_err(|e| e.to_string())?;
                    Ok((spec, resolved.info.description))
                });
                let (spec, description) = match resolved {
                    Ok(found) => found,
                    Err(reason) => {
                        let reason = format!("the target cannot be found: {reason}");
                        warn!("alert {} from {via} is not captured: {reason}", start.alert);
                        count("firing", "rejected");
                        answer.rejected.push(Rejected { alert: start.alert, reason });
                        continue;
                    }
                };
                count("firing", "accepted");
                answer.accepted.push(Accepted {
                    alert: start.alert.clone(),
                    status: "firing",
                    target: Some(description),
                });
                AlertEvent::Start(AlertCapture {
                    key: start.key,
                    alert: start.alert,
                    target: spec,
                    duration: start.duration,
                    trigger: start.trigger,
                    received,
                })
            }
        };
        if endpoint.alerts.try_send(event).is_err() {
            warn!("POST /alerts: the daemon's queue is full or closed; answering 503 so the sender retries");
            return (StatusCode::SERVICE_UNAVAILABLE, "the daemon is busy; try again\n").into_response();
        }
    }
    let status = if answer.rejected.is_empty() { StatusCode::ACCEPTED } else { StatusCode::UNPROCESSABLE_ENTITY };
    let elapsed = received.elapsed();
    if !answer.accepted.is_empty() {
        info!(
            answered_us = elapsed.as_micros() as u64,
            "POST /alerts from {via}: {} accepted, {} rejected",
            answer.accepted.len(),
            answer.rejected.len()
        );
    }
    let json = serde_json::to_string(&answer).unwrap_or_default() + "\n";
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

async fn get_metrics(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if let Some(denied) = deny(&endpoint, &headers) {
        return denied;
    }
    let text = endpoint.metrics.encode();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], to_prometheus_text(&text))
            .into_response()
    }
}

/// OpenMetrics (what prometheus-client writes) → Prometheus' text format
/// 0.0.4, which `promtool check metrics`, older scrapers and people with
/// `curl` read: counter families are named with their `_total`, `info`
/// becomes a gauge named `_info`, and `# UNIT`/`# EOF` go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut types = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_once(' ')) {
            types.insert(name.to_owned(), kind.to_owned());
        }
    }
    let rename = |name: &str| match types.get(name).map(String::as_str) {
        Some("counter") => (format!("{name}_total"), "counter"),
        Some("info") => (format!("{name}_info"), "gauge"),
        Some("gauge") => (name.to_owned(), "gauge"),
        Some("histogram") => (name.to_owned(), "histogram"),
        _ => (name.to_owned(), "untyped"),
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|rest| rest.split_once(' ')) {
            out.push_str(&format!("# HELP {} {help}\n", rename(name).0));
        } else if let Some((name, _)) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_once(' ')) {
            let (name, kind) = rename(name);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_from_openmetrics() {
        let metrics = Metrics::default();
        Metrics::inc(&metrics.captures_started, "reason", "alert");
        let text = to_prometheus_text(&metrics.encode());
        assert!(text.contains("# TYPE stackwatch_captures_started_total counter\n"), "{text}");
        assert!(text.contains("# HELP stackwatch_captures_started_total Captures started"), "{text}");
        assert!(text.contains("stackwatch_captures_started_total{reason=\"alert\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE stackwatch_build_info gauge\n"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
