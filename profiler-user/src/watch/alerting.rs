//! What the daemon does with an alert from `POST /alerts` ([`super::http`]).
//!
//! A firing alert starts a capture of its target, of `--capture-duration`
//! (or its `stackwatch_duration`), with the daemon's `--profiles`, and the
//! alert (name, labels, annotations) as the capture's trigger, so the
//! manifest, the flamegraph's subtitle and the log say why it ran. Senders
//! repeat firing alerts (Alertmanager at every group change and
//! `repeat_interval`): a repeat of an alert whose capture runs, or that
//! started one within `--cooldown`, is coalesced into it. While another
//! capture runs or is written, the alert's capture is not started (logged
//! and counted as `busy`; the sender's next repeat after the cooldown gets
//! its turn). A resolved alert ends the capture it started, which is then
//! written like any other.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::http::{AlertCapture, AlertEvent};
use super::{CaptureRequest, Daemon, EndReason, Source};
use crate::control::DaemonState;
use crate::metrics::Metrics;
use crate::profile::ProfileKind;

/// Alerts that started captures, for the cooldown.
#[derive(Debug, Default)]
pub(super) struct AlertState {
    /// Alert key → when its capture started.
    started: HashMap<String, Instant>,
}

impl AlertState {
    /// Whether `key` started a capture less than `cooldown` ago; forgets
    /// alerts whose cooldown is over, so the map stays small.
    fn cooling(&mut self, key: &str, cooldown: Duration, now: Instant) -> Option<Duration> {
        self.started.retain(|_, at| now.duration_since(*at) < cooldown);
        self.started.get(key).map(|at| cooldown.saturating_sub(now.duration_since(*at)))
    }
}

impl Daemon {
    pub(super) fn handle_alert(&mut self, event: AlertEvent) {
        match event {
            AlertEvent::Start(alert) => self.start_alert(alert),
            AlertEvent::Resolve { key, alert } => {
                let ours = self.capture.as_ref().is_some_and(|c| c.alert_key.as_deref() == Some(key.as_str()));
                if ours {
                    info!("alert {alert} resolved: ending its capture");
                    self.stop_capture(EndReason::Resolved, None);
                } else {
                    debug!("alert {alert} resolved; no capture of it is running");
                }
            }
        }
    }

    fn start_alert(&mut self, alert: AlertCapture) {
        let AlertCapture { key, alert: name, target, duration, trigger, received } = alert;
        let now = Instant::now();
        if self.capture.as_ref().is_some_and(|c| c.alert_key.as_deref() == Some(key.as_str())) {
            info!("alert {name} repeated while its capture runs: coalesced");
            Metrics::inc(&self.metrics.captures_skipped, "reason", "cooldown");
            return;
        }
        if let Some(left) = self.alerts.cooling(&key, self.config.triggers.cooldown, now) {
            info!(
                "alert {name} repeated within the cooldown ({} left): coalesced into its earlier capture",
                humantime::format_duration(Duration::from_secs(left.as_secs()))
            );
            Metrics::inc(&self.metrics.captures_skipped, "reason", "cooldown");
            return;
        }
        let state = self.state();
        if state != DaemonState::Idle {
            info!("alert {name}: no capture started: another capture is {state}");
            Metrics::inc(&self.metrics.captures_skipped, "reason", "busy");
            return;
        }
        let kinds: Vec<ProfileKind> =
            self.config.profiles.iter().copied().filter(|&k| self.loaded_kinds.contains(k)).collect();
        let request = CaptureRequest {
            duration: duration.unwrap_or(self.config.capture_duration),
            kinds,
            source: Source::Alert,
            trigger,
            condition_since: None,
            target: Some(target),
            alert_key: Some(key.clone()),
        };
        let answer = self.start_capture(request);
        if answer.ok {
            self.alerts.started.insert(key, now);
            let latency = received.elapsed();
            self.metrics.alert_start_latency.set(latency.as_secs_f64());
            info!(
                latency_ms = format!("{:.1}", latency.as_secs_f64() * 1e3),
                "alert {name}: sampling started {:.1} ms after the webhook arrived",
                latency.as_secs_f64() * 1e3
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_coalesces_and_forgets() {
        let mut state = AlertState::default();
        let t0 = Instant::now();
        let cooldown = Duration::from_secs(600);
        assert_eq!(state.cooling("a", cooldown, t0), None);
        state.started.insert("a".into(), t0);
        assert_eq!(state.cooling("a", cooldown, t0 + Duration::from_secs(60)), Some(Duration::from_secs(540)));
        assert_eq!(state.cooling("b", cooldown, t0 + Duration::from_secs(60)), None);
        assert_eq!(state.cooling("a", cooldown, t0 + cooldown), None);
        assert!(state.started.is_empty(), "expired entries are dropped");
    }
}
