//! `POST /alerts`: Prometheus Alertmanager's webhook (payload version 4) and
//! Grafana alerting's (version 1), turned into captures.
//!
//! Each alert picks its target by convention, first match wins:
//!
//! 1. the annotation, then the label, `stackwatch_target` = `pid:N` |
//!    `name:REGEX` | `cgroup:PATH` | `unit:NAME` (a systemd unit; `.service`
//!    is implied without a suffix);
//! 2. the config file's `[alert-targets]` table, which maps a label to a
//!    target template, `{}` standing for the label's value (regex-escaped in
//!    a `name:` template): `container = "name:^{}$"`,
//!    `job = "unit:{}.service"`. Labels are tried in the order `container`,
//!    `pod`, `job`, `instance`, then the others alphabetically.
//!
//! `stackwatch_duration` (annotation or label) sets the capture's length.
//! This module is pure: it parses and maps; the endpoint resolves the
//! target (is the process there now?) and the daemon decides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::ids::Pid;
use crate::profile::capture::Trigger;
use crate::target::TargetSpec;

/// The label and annotation naming an alert's target.
pub(crate) const TARGET_KEY: &str = "stackwatch_target";
/// The label and annotation setting the capture's length.
pub(crate) const DURATION_KEY: &str = "stackwatch_duration";

/// Labels tried first, in this order, when `[alert-targets]` maps several.
const PREFERRED_LABELS: [&str; 4] = ["container", "pod", "job", "instance"];

/// The webhook body, both flavours (unknown fields are ignored: both
/// systems add fields over time).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    version: String,
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
}

/// What one alert asks for.
#[derive(Debug)]
pub(crate) enum AlertAction {
    /// Firing: capture this target.
    Start(AlertStart),
    /// Resolved: end the capture this alert started, if it runs.
    Resolve { key: String, alert: String },
    /// Firing, but no target can be named; `reason` says why.
    Rejected { alert: String, reason: String },
}

/// A firing alert mapped to a target.
#[derive(Debug)]
pub(crate) struct AlertStart {
    /// Identifies the alert across notifications (its fingerprint).
    pub key: String,
    pub alert: String,
    pub target: AlertTarget,
    pub duration: Option<Duration>,
    pub trigger: Trigger,
}

/// What an alert names: a target as the command line has them, or a
/// systemd unit, whose cgroup is looked up when the alert arrives.
#[derive(Debug)]
pub(crate) enum AlertTarget {
    Spec(TargetSpec),
    Unit(String),
}

impl AlertTarget {
    /// The target to capture; a unit becomes its cgroup, if it has one now.
    pub(crate) fn into_spec(self) -> Result<TargetSpec, String> {
        match self {
            AlertTarget::Spec(spec) => Ok(spec),
            AlertTarget::Unit(unit) => {
                let root = crate::target::cgroup_dir(Path::new("/")).map_err(|e| e.to_string())?;
                find_unit(&root, &unit)
                    .map(TargetSpec::Cgroup)
                    .ok_or_else(|| format!("unit `{unit}` has no cgroup under `{}` (is it running?)", root.display()))
            }
        }
    }
}

/// The operator's label → target templates (`[alert-targets]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AlertTargets {
    /// In the order they are tried.
    pub templates: Vec<(String, String)>,
}

impl AlertTargets {
    /// Orders the file's table: preferred labels first.
    pub(crate) fn new(table: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut templates: Vec<(String, String)> = Vec::new();
        for label in PREFERRED_LABELS {
            if let Some(t) = table.get(label) {
                templates.push((label.to_owned(), t.clone()));
            }
        }
        for (label, t) in table {
            if !PREFERRED_LABELS.contains(&label.as_str()) {
                templates.push((label.clone(), t.clone()));
            }
        }
        for (label, t) in &templates {
            if !t.contains("{}") {
                return Err(format!("the template for `{label}` (`{t}`) has no `{{}}` for the label's value"));
            }
            // A sample value shows a template that can never parse.
            parse_target(&fill(t, "x")).map_err(|e| format!("the template for `{label}`: {e}"))?;
        }
        Ok(Self { templates })
    }
}

/// `{}` → `value`, escaped for a regex when the template is a `name:` one.
fn fill(template: &str, value: &str) -> String {
    if template.starts_with("name:") {
        template.replace("{}", &regex::escape(value))
    } else {
        template.replace("{}", value)
    }
}

/// Why a payload was refused as a whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadPayload(pub String);

/// Parses a webhook body into one action per alert, and names the sender.
pub(crate) fn parse(body: &[u8], targets: &AlertTargets) -> Result<(&'static str, Vec<AlertAction>), BadPayload> {
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|e| BadPayload(format!("the body is not an Alertmanager or Grafana webhook payload: {e}")))?;
    let via = match payload.version.as_str() {
        "4" => "alertmanager",
        "1" => "grafana",
        "" => return Err(BadPayload("the payload has no `version` (Alertmanager sends 4, Grafana 1)".to_owned())),
        other => {
            return Err(BadPayload(format!(
                "payload version `{other}` is not supported (Alertmanager's 4 and Grafana's 1 are)"
            )))
        }
    };
    let actions = payload.alerts.into_iter().map(|alert| action(alert, via, targets)).collect();
    Ok((via, actions))
}

fn action(alert: Alert, via: &str, targets: &AlertTargets) -> AlertAction {
    let name = alert.labels.get("alertname").cloned().unwrap_or_else(|| "unnamed".to_owned());
    let key = if alert.fingerprint.is_empty() {
        // Older senders: the label set is what identifies an alert.
        format!("{:?}", alert.labels)
    } else {
        alert.fingerprint.clone()
    };
    if alert.status == "resolved" {
        return AlertAction::Resolve { key, alert: name };
    }
    let rejected = |reason: String| AlertAction::Rejected { alert: name.clone(), reason };
    let (matched, text) = match choose_target(&alert.labels, &alert.annotations, targets) {
        Some(found) => found,
        None => {
            return rejected(format!(
                "no target: the alert has no `{TARGET_KEY}` label or annotation (`pid:N`, `name:REGEX`, \
                 `cgroup:PATH` or `unit:NAME`) and none of its labels is mapped in `[alert-targets]`"
            ))
        }
    };
    let target = match parse_target(&text) {
        Ok(t) => t,
        Err(e) => return rejected(format!("{matched}: {e}")),
    };
    let duration = match alert.annotations.get(DURATION_KEY).or_else(|| alert.labels.get(DURATION_KEY)) {
        None => None,
        Some(text) => match crate::units::parse_capture_duration(text) {
            Ok(d) => Some(d),
            Err(e) => return rejected(format!("invalid `{DURATION_KEY}` `{text}`: {e}")),
        },
    };
    let trigger = Trigger::Alert {
        alert: name.clone(),
        via: via.to_owned(),
        matched,
        labels: alert.labels,
        annotations: alert.annotations,
    };
    AlertAction::Start(AlertStart { key, alert: name, target, duration, trigger })
}

/// (how it was found, the target text).
fn choose_target(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    targets: &AlertTargets,
) -> Option<(String, String)> {
    if let Some(t) = annotations.get(TARGET_KEY) {
        return Some((format!("annotation {TARGET_KEY}={t}"), t.clone()));
    }
    if let Some(t) = labels.get(TARGET_KEY) {
        return Some((format!("label {TARGET_KEY}={t}"), t.clone()));
    }
    targets.templates.iter().find_map(|(label, template)| {
        let value = labels.get(label)?;
        let text = fill(template, value);
        Some((format!("label {label}={value} via [alert-targets] `{template}`"), text))
    })
}

/// `pid:N` | `name:REGEX` | `cgroup:PATH` | `unit:NAME`.
pub(crate) fn parse_target(text: &str) -> Result<AlertTarget, String> {
    let (kind, value) = text.split_once(':').ok_or_else(|| {
        format!("`{text}` is not a target: write `pid:N`, `name:REGEX`, `cgroup:PATH` or `unit:NAME`")
    })?;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("`{text}` names no {kind}"));
    }
    match kind.trim() {
        "pid" => {
            let pid: u32 = value.parse().map_err(|_| format!("`{value}` is not a process id"))?;
            if pid == 0 {
                return Err("pid 0 is not a process".to_owned());
            }
            Ok(AlertTarget::Spec(TargetSpec::Pids(vec![Pid::new(pid)])))
        }
        "name" => Regex::new(value)
            .map(|re| AlertTarget::Spec(TargetSpec::Name(re)))
            .map_err(|e| format!("invalid regex `{value}`: {e}")),
        "cgroup" => Ok(AlertTarget::Spec(TargetSpec::Cgroup(PathBuf::from(value)))),
        "unit" => {
            if value.contains('/') {
                return Err(format!("`{value}` is not a unit name"));
            }
            Ok(AlertTarget::Unit(unit_name(value)))
        }
        other => Err(format!("unknown target kind `{other}` in `{text}` (pid, name, cgroup or unit)")),
    }
}

/// `foo` → `foo.service`; names with a unit suffix stay.
fn unit_name(value: &str) -> String {
    const SUFFIXES: [&str; 5] = [".service", ".scope", ".slice", ".socket", ".mount"];
    if SUFFIXES.iter().any(|s| value.ends_with(s)) {
        value.to_owned()
    } else {
        format!("{value}.service")
    }
}

/// The cgroup of a systemd unit: the first directory of that name under the
/// cgroup v2 root (units live in `system.slice`, user units deeper), looked
/// for breadth first, a few levels down.
pub(crate) fn find_unit(root: &Path, unit: &str) -> Option<PathBuf> {
    const MAX_DEPTH: usize = 6;
    let preferred = root.join("system.slice").join(unit);
    if preferred.is_dir() {
        return Some(preferred);
    }
    let mut level = vec![root.to_owned()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if entry.file_name().to_str() == Some(unit) {
                    return Some(entry.path());
                }
                next.push(entry.path());
            }
        }
        level = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn am(alerts: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"HighCpu\"}}","status":"firing","receiver":"stackwatch",
               "groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am:9093",
               "truncatedAlerts":0,"alerts":[{alerts}]}}"#
        )
    }

    fn alert(status: &str, labels: &str, annotations: &str) -> String {
        format!(
            r#"{{"status":"{status}","labels":{{{labels}}},"annotations":{{{annotations}}},
               "startsAt":"2026-12-03T03:00:00Z","endsAt":"0001-01-01T00:00:00Z",
               "generatorURL":"http://prom/graph","fingerprint":"c0ffee"}}"#
        )
    }

    fn one(body: &str, targets: &AlertTargets) -> AlertAction {
        let (_, mut actions) = parse(body.as_bytes(), targets).unwrap();
        assert_eq!(actions.len(), 1);
        actions.remove(0)
    }

    #[test]
    fn alertmanager_annotation_names_the_target() {
        let body = am(&alert(
            "firing",
            r#""alertname":"HighCpu","job":"api""#,
            r#""stackwatch_target":"pid:4242","stackwatch_duration":"20s","summary":"api is hot""#,
        ));
        let AlertAction::Start(start) = one(&body, &AlertTargets::default()) else { panic!("not a start") };
        assert_eq!(start.key, "c0ffee");
        assert_eq!(start.alert, "HighCpu");
        assert!(matches!(&start.target, AlertTarget::Spec(TargetSpec::Pids(p)) if p == &[Pid::new(4242)]));
        assert_eq!(start.duration, Some(Duration::from_secs(20)));
        let Trigger::Alert { via, matched, labels, annotations, .. } = &start.trigger else { panic!() };
        assert_eq!(via, "alertmanager");
        assert_eq!(matched, "annotation stackwatch_target=pid:4242");
        assert_eq!(labels["job"], "api");
        assert_eq!(annotations["summary"], "api is hot");
        assert_eq!(start.trigger.summary(), "alert HighCpu{job=\"api\"} (alertmanager): api is hot");
    }

    #[test]
    fn grafana_payload_and_label_target() {
        let body = format!(
            r#"{{"receiver":"sw","status":"firing","orgId":1,"version":"1","title":"[FIRING:1]","state":"alerting",
                "alerts":[{}]}}"#,
            alert("firing", r#""alertname":"Slow","stackwatch_target":"name:^api$""#, "")
        );
        let (via, actions) = parse(body.as_bytes(), &AlertTargets::default()).unwrap();
        assert_eq!(via, "grafana");
        let AlertAction::Start(start) = &actions[0] else { panic!() };
        assert!(matches!(&start.target, AlertTarget::Spec(TargetSpec::Name(re)) if re.as_str() == "^api$"));
    }

    #[test]
    fn resolved_ends_and_mapping_applies_in_order() {
        let body = am(&alert("resolved", r#""alertname":"HighCpu""#, ""));
        assert!(
            matches!(one(&body, &AlertTargets::default()), AlertAction::Resolve { ref key, .. } if key == "c0ffee")
        );

        let table: BTreeMap<String, String> = [
            ("job".to_owned(), "unit:{}".to_owned()),
            ("container".to_owned(), "name:^{}$".to_owned()),
            ("zone".to_owned(), "cgroup:/{}".to_owned()),
        ]
        .into_iter()
        .collect();
        let targets = AlertTargets::new(&table).unwrap();
        let order: Vec<&str> = targets.templates.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(order, ["container", "job", "zone"]);
        let body = am(&alert("firing", r#""alertname":"A","job":"nginx","container":"web.1""#, ""));
        let AlertAction::Start(start) = one(&body, &targets) else { panic!() };
        assert!(
            matches!(&start.target, AlertTarget::Spec(TargetSpec::Name(re)) if re.as_str() == r"^web\.1$"),
            "{:?}",
            start.target
        );
        let body = am(&alert("firing", r#""alertname":"A","job":"nginx""#, ""));
        let AlertAction::Start(start) = one(&body, &targets) else { panic!() };
        assert!(matches!(&start.target, AlertTarget::Unit(u) if u == "nginx.service"));
        assert!(AlertTargets::new(&[("job".to_owned(), "unit:x".to_owned())].into_iter().collect()).is_err());
        assert!(AlertTargets::new(&[("job".to_owned(), "bogus:{}".to_owned())].into_iter().collect()).is_err());
    }

    #[test]
    fn rejections_say_why() {
        let reason = |body: String| match one(&body, &AlertTargets::default()) {
            AlertAction::Rejected { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(am(&alert("firing", r#""alertname":"A""#, ""))).contains("no `stackwatch_target`"));
        assert!(reason(am(&alert("firing", r#""alertname":"A""#, r#""stackwatch_target":"pid:abc""#)))
            .contains("`abc` is not a process id"));
        assert!(reason(am(&alert("firing", r#""alertname":"A""#, r#""stackwatch_target":"host""#)))
            .contains("is not a target"));
        assert!(reason(am(&alert(
            "firing",
            r#""alertname":"A""#,
            r#""stackwatch_target":"pid:1","stackwatch_duration":"soon""#
        )))
        .contains("invalid `stackwatch_duration`"));
        assert_eq!(
            parse(br#"{"alerts":[]}"#, &AlertTargets::default()).unwrap_err(),
            BadPayload("the payload has no `version` (Alertmanager sends 4, Grafana 1)".to_owned())
        );
        assert!(parse(br#"{"version":"3","alerts":[]}"#, &AlertTargets::default()).is_err());
        assert!(parse(b"not json", &AlertTargets::default()).is_err());
    }

    #[test]
    fn units_are_found_by_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("user.slice/user-0.slice/app.service")).unwrap();
        std::fs::create_dir_all(root.path().join("system.slice/db.service")).unwrap();
        assert_eq!(find_unit(root.path(), "db.service"), Some(root.path().join("system.slice/db.service")));
        assert_eq!(
            find_unit(root.path(), "app.service"),
            Some(root.path().join("user.slice/user-0.slice/app.service"))
        );
        assert_eq!(find_unit(root.path(), "gone.service"), None);
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("session-1.scope"), "session-1.scope");
    }
}
