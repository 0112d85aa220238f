//! End-to-end tests of stackwatch in an ops stack, as root against the real
//! kernel: Debian's Prometheus evaluating a rule every second →
//! Alertmanager (`group_wait: 0s`) → `watch --listen`'s webhook → a
//! capture of the alerted process, ended by the resolved alert, while
//! Prometheus scrapes `/metrics`; the webhook's answers (4xx with the
//! reason, tokens, coalescing); `/metrics` through `promtool check
//! metrics`; and `--push` against a receiver that follows Pyroscope's
//! ingest API, including a server that is down at first.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use stackwatch_tests::daemon::{assert_cpu_split_profile, pprof_of, WatchDaemon};
use stackwatch_tests::ops::{free_port, http, listen_addr, write_file, Daemon, Receiver};
use stackwatch_tests::{e2e_guard, run_stackwatch_timeout, scratch_dir, Workload};

/// Bound on anything the stack does by itself (an evaluation, a
/// notification, a write).
const SETTLE: Duration = Duration::from_secs(60);

fn busy_cpu_split() -> Workload {
    let mut workload = Workload::cpu_split();
    workload.wait_busy();
    workload
}

fn manifest(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{}` is not JSON: {e}", path.display()))
}

fn wait_log(daemon: &WatchDaemon, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !daemon.stderr().contains(needle) {
        assert!(Instant::now() < deadline, "the daemon did not log `{needle}` within {timeout:?}\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(50));
    }
}

fn alert_body(status: &str, labels: &str, annotations: &str) -> String {
    format!(
        r#"{{"version":"4","status":"{status}","receiver":"stackwatch","groupKey":"{{}}:{{}}","groupLabels":{{}},
            "commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","truncatedAlerts":0,
            "alerts":[{{"status":"{status}","labels":{{{labels}}},"annotations":{{{annotations}}},
            "startsAt":"2026-12-03T03:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom",
            "fingerprint":"f00d"}}]}}"#
    )
}

/// The value of `series` in Prometheus' text format (`name{labels}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn prometheus_alert_captures_the_alerted_process_until_resolved() {
    let Some(_guard) = e2e_guard() else { return };
    let workload = busy_cpu_split();
    let pid = workload.pid();
    // The daemon's own target is another process: the alert names the target.
    let daemon = WatchDaemon::start(
        "ops-prometheus",
        &["--name", "^no-such-process-for-ops$", "--listen", "127.0.0.1:0", "--capture-duration", "2m"],
    );
    let stackwatch =
        listen_addr(&daemon.stderr()).unwrap_or_else(|| panic!("no listen address logged\n{}", daemon.stderr()));

    // The "spike": a series the test switches on and off.
    let hot = Arc::new(AtomicU32::new(0));
    let hot_value = Arc::clone(&hot);
    let spike = Receiver::start(move |_| {
        (200, format!("# TYPE spike_hot gauge\nspike_hot{{pid=\"{pid}\"}} {}\n", hot_value.load(Ordering::SeqCst)))
    });

    let dir = daemon.dir.clone();
    let (prom_port, am_port) = (free_port(), free_port());
    let (prom, am) = (format!("127.0.0.1:{prom_port}"), format!("127.0.0.1:{am_port}"));
    write_file(
        &dir,
        "rules.yml",
        r#"groups:
  - name: stackwatch-test
    interval: 1s
    rules:
      - alert: CpuSpike
        expr: spike_hot > 0
        labels:
          severity: page
        annotations:
          summary: "pid {{ $labels.pid }} burns CPU"
          stackwatch_target: "pid:{{ $labels.pid }}"
"#,
    );
    let prom_config = write_file(
        &dir,
        "prometheus.yml",
        &format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{am}"]
scrape_configs:
  - job_name: stackwatch
    static_configs:
      - targets: ["{stackwatch}"]
  - job_name: spike
    static_configs:
      - targets: ["{spike}"]
"#,
            rules = dir.join("rules.yml").display(),
            spike = spike.addr
        ),
    );
    let am_config = write_file(
        &dir,
        "alertmanager.yml",
        &format!(
            r#"route:
  receiver: stackwatch
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: stackwatch
    webhook_configs:
      - url: "http://{stackwatch}/alerts"
        send_resolved: true
"#
        ),
    );
    let mut alertmanager = Daemon::start(
        "prometheus-alertmanager",
        {
            let mut cmd = Command::new("prometheus-alertmanager");
            cmd.arg(format!("--config.file={}", am_config.display()))
                .arg(format!("--storage.path={}", dir.join("am-data").display()))
                .arg(format!("--web.listen-address={am}"))
                .arg("--cluster.listen-address=");
            cmd
        },
        dir.join("alertmanager.log"),
    );
    alertmanager.wait_ready(&am, "/-/ready", SETTLE);
    let mut prometheus = Daemon::start(
        "prometheus",
        {
            let mut cmd = Command::new("prometheus");
            cmd.arg(format!("--config.file={}", prom_config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("prom-data").display()))
                .arg(format!("--web.listen-address={prom}"))
                .arg("--rules.alert.resend-delay=1s");
            cmd
        },
        dir.join("prometheus.log"),
    );
    prometheus.wait_ready(&prom, "/-/ready", SETTLE);

    // 3 a.m.: the spike starts; the rule fires; Alertmanager calls stackwatch.
    hot.store(1, Ordering::SeqCst);
    wait_log(&daemon, "alert CpuSpike: sampling started", SETTLE);
    assert!(daemon.manifests().is_empty(), "the capture runs until the alert resolves");
    thread::sleep(Duration::from_secs(3));
    // The spike ends: the resolved notification ends the capture.
    hot.store(0, Ordering::SeqCst);
    let written = daemon.wait_manifests(1, SETTLE);
    wait_log(&daemon, "its alert was resolved", SETTLE);

    let m = manifest(&written[0]);
    let trigger = &m["trigger"];
    assert_eq!(trigger["type"], "alert", "{m}");
    assert_eq!(trigger["alert"], "CpuSpike", "{m}");
    assert_eq!(trigger["via"], "alertmanager", "{m}");
    assert_eq!(trigger["labels"]["pid"], pid.to_string(), "{m}");
    assert_eq!(trigger["labels"]["severity"], "page", "{m}");
    assert_eq!(trigger["annotations"]["stackwatch_target"], format!("pid:{pid}"), "{m}");
    assert_eq!(trigger["annotations"]["summary"], format!("pid {pid} burns CPU"), "{m}");
    assert_eq!(m["target"]["pids"], serde_json::json!([pid]), "{m}");
    assert_cpu_split_profile(&pprof_of(&written[0]));
    let svg =
        std::fs::read_to_string(pprof_of(&written[0]).with_extension("").with_extension("svg")).unwrap_or_default();
    assert!(svg.contains("alert CpuSpike"), "the flamegraph's subtitle names the alert");

    // Prometheus scraped stackwatch's metrics all along.
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = http(
            &prom,
            "GET",
            "/api/v1/query?query=stackwatch_captures_written_total%7Breason%3D%22alert%22%7D",
            &[],
            b"",
        );
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
        let value = json["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        if value == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never saw the written capture: {}", answer.body);
        thread::sleep(Duration::from_millis(500));
    }
    let up = http(&prom, "GET", "/api/v1/query?query=up%7Bjob%3D%22stackwatch%22%7D", &[], b"");
    assert!(up.body.contains(r#""value":["#) && up.body.contains(r#","1"]"#), "{}", up.body);
    drop(prometheus);
    drop(alertmanager);
}

#[test]
fn webhook_answers_auth_rejects_and_coalesces() {
    let Some(_guard) = e2e_guard() else { return };
    let workload = busy_cpu_split();
    let pid = workload.pid();
    let dir = scratch_dir("ops-webhook-token");
    let token = write_file(&dir, "token", "s3cret-token\n");
    let token_arg = token.to_string_lossy().into_owned();
    let daemon = WatchDaemon::start(
        "ops-webhook",
        &["--listen", "127.0.0.1:0", "--listen-token-file", &token_arg, "--capture-duration", "2m"],
    );
    let addr = listen_addr(&daemon.stderr()).unwrap_or_else(|| panic!("no listen address\n{}", daemon.stderr()));
    let auth = [("Authorization", "Bearer s3cret-token")];

    let health = http(&addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(http(&addr, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(http(&addr, "GET", "/metrics", &[("Authorization", "Bearer wrong")], b"").status, 401);
    let body = alert_body("firing", r#""alertname":"Hot""#, &format!(r#""stackwatch_target":"pid:{pid}""#));
    assert_eq!(http(&addr, "POST", "/alerts", &[], body.as_bytes()).status, 401, "no capture without the token");

    let bad = http(&addr, "POST", "/alerts", &auth, b"{not json");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let gone = alert_body("firing", r#""alertname":"Gone""#, r#""stackwatch_target":"pid:4194000""#);
    let gone = http(&addr, "POST", "/alerts", &auth, gone.as_bytes());
    assert_eq!(gone.status, 422, "{}", gone.body);
    assert!(gone.body.contains("no process with pid 4194000"), "{}", gone.body);
    wait_log(&daemon, "alert Gone from alertmanager is not captured", SETTLE);
    let unmapped = alert_body("firing", r#""alertname":"Unmapped""#, "");
    let unmapped = http(&addr, "POST", "/alerts", &auth, unmapped.as_bytes());
    assert_eq!(unmapped.status, 422);
    assert!(unmapped.body.contains("stackwatch_target"), "{}", unmapped.body);

    // A firing alert, then its repeat: one capture.
    let started = http(&addr, "POST", "/alerts", &auth, body.as_bytes());
    assert_eq!(started.status, 202, "{}", started.body);
    assert!(started.body.contains(&format!("pid {pid}")), "{}", started.body);
    wait_log(&daemon, "alert Hot: sampling started", SETTLE);
    assert_eq!(http(&addr, "POST", "/alerts", &auth, body.as_bytes()).status, 202);
    wait_log(&daemon, "alert Hot repeated while its capture runs: coalesced", SETTLE);
    thread::sleep(Duration::from_secs(2));
    let resolved = alert_body("resolved", r#""alertname":"Hot""#, &format!(r#""stackwatch_target":"pid:{pid}""#));
    assert_eq!(http(&addr, "POST", "/alerts", &auth, resolved.as_bytes()).status, 202);
    let written = daemon.wait_manifests(1, SETTLE);
    let m = manifest(&written[0]);
    assert_eq!(m["trigger"]["alert"], "Hot", "{m}");
    assert_cpu_split_profile(&pprof_of(&written[0]));
    // Within the cooldown the same alert starts nothing new.
    assert_eq!(http(&addr, "POST", "/alerts", &auth, body.as_bytes()).status, 202);
    wait_log(&daemon, "alert Hot repeated within the cooldown", SETTLE);
    assert_eq!(daemon.state(), "idle");

    let metrics = http(&addr, "GET", "/metrics", &auth, b"");
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers.get("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = &metrics.body;
    assert_eq!(metric(text, r#"stackwatch_captures_started_total{reason="alert"}"#), Some(1.0), "{text}");
    assert_eq!(metric(text, r#"stackwatch_captures_written_total{reason="alert"}"#), Some(1.0), "{text}");
    assert_eq!(metric(text, r#"stackwatch_captures_skipped_total{reason="cooldown"}"#), Some(2.0), "{text}");
    assert_eq!(metric(text, r#"stackwatch_alerts_total{status="firing",outcome="rejected"}"#), Some(2.0), "{text}");
    assert!(metric(text, "stackwatch_samples_collected_total").is_some_and(|v| v > 0.0), "{text}");
    assert!(metric(text, "stackwatch_last_capture_timestamp_seconds").is_some_and(|v| v > 1.7e9), "{text}");
    assert!(metric(text, "stackwatch_bpf_runs_total").is_some_and(|v| v > 0.0), "{text}");
    assert!(metric(text, "stackwatch_alert_start_latency_seconds").is_some_and(|v| v > 0.0 && v < 5.0), "{text}");
    assert_eq!(metric(text, "stackwatch_history_memory_bytes"), Some(0.0), "{text}");

    // The exposition is valid for Prometheus' own linter.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}); `cargo xtask setup` installs prometheus"));
    if let Some(mut stdin) = promtool.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = promtool.wait_with_output().unwrap_or_else(|e| panic!("promtool failed: {e}"));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped = daemon.stop();
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
}

/// What Pyroscope's `/ingest` checks, and what the test expects of one push.
fn assert_ingest(req: &stackwatch_tests::ops::Received, pid_name: &str, trigger: &str, dir: &Path) {
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/ingest"));
    let name = &req.query["name"];
    assert!(name.starts_with(&format!("{pid_name}{{")), "{name}");
    for label in ["kind=cpu", &format!("trigger={trigger}"), "host="] {
        assert!(name.contains(label), "`{label}` missing from {name}");
    }
    assert_eq!(req.query["format"], "pprof");
    assert_eq!(req.query["spyName"], "stackwatch");
    assert_eq!(req.query["sampleRate"], "99");
    let from: u64 = req.query["from"].parse().unwrap_or(0);
    let until: u64 = req.query["until"].parse().unwrap_or(0);
    assert!(from > 1_700_000_000 && until > from, "from {from} until {until}");
    let profile = req.multipart_profile().unwrap_or_else(|| panic!("no `profile` part in {:?}", req.headers));
    let path = dir.join(format!("pushed-{from}.pb.gz"));
    std::fs::write(&path, profile).unwrap_or_else(|e| panic!("{e}"));
    assert_cpu_split_profile(&path);
}

#[test]
fn push_reaches_pyroscope_after_an_outage_and_files_stay() {
    let Some(_guard) = e2e_guard() else { return };
    let workload = busy_cpu_split();
    let pid = workload.pid();
    // Down for the first two requests (503), then up.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let server = Receiver::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            (503, "ingester unavailable".to_owned())
        } else {
            (200, String::new())
        }
    });
    let dir = scratch_dir("ops-push-secrets");
    let password = write_file(&dir, "password", "hunter2\n");
    let url = format!("http://{}", server.addr);
    let password_arg = password.to_string_lossy().into_owned();
    let pid_arg = pid.to_string();
    let daemon = WatchDaemon::start(
        "ops-push",
        &[
            "--pid",
            &pid_arg,
            "--push",
            &url,
            "--push-user",
            "42",
            "--push-password-file",
            &password_arg,
            "--push-tenant",
            "team-a",
        ],
    );
    daemon.ctl_ok(&["start", "2s"]);
    let written = daemon.wait_manifests(1, SETTLE);
    // The files are there whatever the server does.
    assert!(pprof_of(&written[0]).is_file());
    let got = server.wait_for(3, SETTLE);
    wait_log(&daemon, "cannot push to Pyroscope", SETTLE);
    wait_log(&daemon, "pushing to Pyroscope works again", SETTLE);
    let ok = &got[2];
    assert_eq!(ok.headers.get("authorization").map(String::as_str), Some("Basic NDI6aHVudGVyMg=="));
    assert_eq!(ok.headers.get("x-scope-orgid").map(String::as_str), Some("team-a"));
    assert_ingest(ok, "cpu_split", "manual", &daemon.dir);
    // Delivered: nothing waits in the spool any more.
    let spool = daemon.output.join(".push-spool");
    let left: Vec<_> = std::fs::read_dir(&spool).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "spool not empty: {left:?}");
    assert_eq!(server.received().len(), 3, "one profile, pushed once it could be");

    // `record --push`: the same request, sent before it exits.
    server.respond_with(|_| (200, String::new()));
    let out_dir = scratch_dir("ops-push-record");
    let out_arg = out_dir.to_string_lossy().into_owned();
    let out = run_stackwatch_timeout(
        &["record", "--pid", &pid_arg, "--duration", "1s", "--output-dir", &out_arg, "--push", &url],
        SETTLE,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pushed 1 profile to"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = server.wait_for(4, SETTLE);
    assert!(!got[3].headers.contains_key("authorization"));
    assert_ingest(&got[3], "cpu_split", "manual", &out_dir);
}
