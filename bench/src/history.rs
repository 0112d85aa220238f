//! The flight recorder's standing cost: `stackwatch watch --history 10m` on
//! the whole host at the default 19 Hz, idle between captures, while the
//! host runs a steady stream of short-lived processes (each a new set of
//! stacks and a new process to snapshot). Measured: the daemon's CPU (all
//! its threads) and its BPF programs' run time over the window, its RSS,
//! and the history's own memory and dropped slots as `ctl status` reports
//! them against `--history-memory`.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::ext::{Context, Row, Section, Status};
use crate::measure;

const ID: &str = "history";
const TITLE: &str = "Flight recorder (`watch --history 10m`, whole host, 19 Hz)";
const WINDOW: Duration = Duration::from_secs(600);
const WINDOW_QUICK: Duration = Duration::from_secs(30);
/// Short-lived processes: each shell counts to 3000 and exits (~10 ms), one
/// after the other, forever.
const CHURN: &str = "while :; do sh -c 'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done'; done";

pub(crate) fn run(ctx: &Context) -> Result<Section> {
    let window = if ctx.quick { WINDOW_QUICK } else { WINDOW };
    let dir = ctx.work.join("history");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let control = dir.join("control");
    let _ = fs::remove_file(&control);
    let err_path = dir.join("watch.stderr");
    let err = fs::File::create(&err_path).context("failed to create a log file")?;
    let mut daemon = Command::new(&ctx.stackwatch);
    daemon
        .args(["watch", "--history", "10m", "--control"])
        .arg(&control)
        .arg("--output-dir")
        .arg(dir.join("out"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    let mut child = measure::spawn(&mut daemon)?;
    let pid = child.id();
    // The churn runs in a process group of its own, ended by its id.
    let mut churn = Command::new("sh");
    churn.args(["-c", CHURN]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    let mut churn = measure::spawn(&mut churn)?;
    let churn_pgid = churn.id() as i32;
    let result = (|| -> Result<Section> {
        if !measure::wait_for_path(&control, Duration::from_secs(30)) {
            bail!("`stackwatch watch --history` did not create `{}` within 30 s", control.display());
        }
        thread::sleep(Duration::from_secs(2));
        let cpu0 = measure::process_cpu_ns(pid)?;
        let bpf0 = measure::bpf_snapshot(pid);
        let t0 = measure::monotonic_ns();
        eprintln!("bench: `stackwatch watch --history 10m` with short-lived processes for {} s", window.as_secs());
        thread::sleep(window);
        let cpu1 = measure::process_cpu_ns(pid)?;
        let bpf1 = measure::bpf_snapshot(pid);
        let t1 = measure::monotonic_ns();
        let (rss_mib, hwm_mib) = measure::process_rss_mib(pid)?;
        let status = Command::new(&ctx.stackwatch)
            .args(["ctl", "--control"])
            .arg(&control)
            .arg("status")
            .output()
            .context("failed to run `stackwatch ctl status`")?;
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        let history = status.lines().find(|l| l.starts_with("history:")).unwrap_or("history: (not reported)");
        let window_s = measure::secs(t0, t1);
        let cpu_percent = cpu1.saturating_sub(cpu0) as f64 / 1e9 / window_s * 100.0;
        let bpf_ns: u64 = bpf1.progs.values().map(|p| p.run_time_ns).sum::<u64>()
            - bpf0.progs.values().map(|p| p.run_time_ns).sum::<u64>();
        let bpf_runs = bpf1.run_cnt().saturating_sub(bpf0.run_cnt());
        let bpf_percent = bpf_ns as f64 / 1e9 / window_s * 100.0;
        let row = |name: &str, value: String, target: Option<&str>, pass: Option<bool>| Row {
            name: name.to_owned(),
            value,
            target: target.map(str::to_owned),
            pass,
        };
        Ok(Section {
            id: ID,
            title: TITLE,
            status: Status::Measured,
            rows: vec![
                row(
                    &format!("daemon CPU over {window_s:.0} s (all threads)"),
                    format!("{cpu_percent:.3} % of one CPU"),
                    Some("≤ 0.3 %"),
                    Some(cpu_percent <= 0.3),
                ),
                row(
                    "BPF run time of the sampler",
                    format!(
                        "{bpf_percent:.4} % of one CPU ({bpf_runs} runs, {:.1} µs each)",
                        bpf_ns as f64 / 1e3 / bpf_runs.max(1) as f64
                    ),
                    None,
                    None,
                ),
                row("RSS (VmRSS) / peak (VmHWM)", format!("{rss_mib:.1} / {hwm_mib:.1} MiB"), None, None),
                row(
                    "history (`ctl status`)",
                    history.trim_start_matches("history: ").to_owned(),
                    Some("≤ 32 MiB"),
                    None,
                ),
            ],
            notes: vec![format!(
                "Load: `sh -c \"{CHURN}\"` (a new short-lived process every ~10 ms, about one CPU busy)."
            )],
            commands: vec![
                "stackwatch watch --history 10m --control DIR/control --output-dir DIR/out".to_owned(),
                "stackwatch ctl --control DIR/control status   # the `history:` line".to_owned(),
            ],
        })
    })();
    // SAFETY: signals the churn's own process group (its id is the group's).
    unsafe { libc::kill(-churn_pgid, libc::SIGKILL) };
    let _ = churn.wait();
    measure::signal(pid, libc::SIGTERM);
    let deadline = measure::monotonic_ns() + 15_000_000_000;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if measure::monotonic_ns() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    result
}
