//! `stackwatch top` as an operator sees it: on a real terminal (a tmux
//! pane: keys sent, the pane captured and its table read back), and
//! without one (refused with the hint, or one plain table with `--once`).
//! The target is `cpu_split` on one thread, whose `hot_a` takes three
//! times `hot_b`'s CPU under `loop_fn`.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use stackwatch_tests::capture::assert_exit;
use stackwatch_tests::{e2e_guard, run_stackwatch_timeout, stackwatch_bin, Workload, WorkloadKind};

/// Bound on the pane reaching a state (the first table, the shell back).
const SETTLE: Duration = Duration::from_secs(30);

fn tmux(args: &[&str]) -> Output {
    match Command::new("tmux").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run tmux ({e}); `cargo xtask setup` installs it"),
    }
}

/// A detached tmux session running a shell, killed on drop (with whatever
/// still runs in it).
struct Pane {
    name: String,
}

impl Pane {
    fn start(name: &str) -> Self {
        let out = tmux(&["new-session", "-d", "-s", name, "-x", "160", "-y", "40", "sh"]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        Self { name: name.to_owned() }
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend_from_slice(keys);
        assert!(tmux(&args).status.success(), "tmux send-keys {keys:?}");
    }

    /// The pane's visible text.
    fn capture(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.name]).stdout).into_owned()
    }

    /// Waits until `done` holds for the pane's text; returns that text.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SETTLE;
        loop {
            let text = self.capture();
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "the pane never showed {what}:\n{text}");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.name]);
    }
}

/// The table row of `function`: its line, if shown.
fn row<'a>(text: &'a str, function: &str) -> Option<&'a str> {
    text.lines().find(|l| l.split_whitespace().last() == Some(function))
}

/// `%Own` of a row: its first column.
fn own_pct(line: &str) -> f64 {
    line.split_whitespace().next().and_then(|v| v.trim_end_matches('%').parse().ok()).unwrap_or(-1.0)
}

#[test]
fn top_shows_the_hot_functions_on_a_terminal_and_q_restores_it() {
    let Some(_guard) = e2e_guard() else { return };
    let mut burner = Workload::spawn(WorkloadKind::CpuSplit, &["0", "1"]);
    burner.wait_busy();
    let pid = burner.pid();
    let pane = Pane::start(&format!("stackwatch-top-{pid}"));
    let command = format!("'{}' top --pid {pid} --interval 500ms; echo top-exited-$?", stackwatch_bin().display());
    pane.send(&[&command, "Enter"]);
    let table = |t: &str| t.contains("stackwatch top: pid") && row(t, "hot_a").is_some() && row(t, "hot_b").is_some();
    pane.wait_for("a table with hot_a and hot_b", table);
    // A few refreshes later the order has settled on the 3:1 split.
    thread::sleep(Duration::from_millis(2000));
    let text = pane.wait_for("a table with hot_a and hot_b", table);
    eprintln!("measured: the pane of `stackwatch top`:\n{text}");
    let header = text.lines().next().unwrap_or_default();
    assert!(header.starts_with(&format!("stackwatch top: pid {pid} (cpu_split) at 99 Hz")), "{text}");
    assert!(header.ends_with("q quits"), "{text}");
    assert!(text.lines().any(|l| l.contains("%Own") && l.contains("%Total") && l.contains("Function")), "{text}");
    let (Some(hot_a), Some(hot_b)) = (row(&text, "hot_a"), row(&text, "hot_b")) else {
        panic!("no hot_a or hot_b row:\n{text}")
    };
    assert!(hot_a.contains(&format!("cpu_split[{pid}]")), "rows name the process: {hot_a}");
    let loop_fn = row(&text, "loop_fn").unwrap_or_else(|| panic!("no loop_fn row:\n{text}"));
    // loop_fn runs only through its callees: no own time, all the total.
    assert!(own_pct(loop_fn) < 5.0, "{text}");
    let position = |line: &str| text.lines().position(|l| l == line).unwrap_or(usize::MAX);
    assert!(position(hot_a) < position(hot_b), "hot_a (3/4 of the time) must be listed above hot_b:\n{text}");
    assert!(own_pct(hot_a) > own_pct(hot_b), "{text}");

    pane.send(&["q"]);
    let text = pane.wait_for("the shell back after q", |t| t.contains("top-exited-0"));
    // The alternate screen is gone: the shell's screen shows no table.
    assert!(!text.contains("%Own"), "the table stayed on the screen after q:\n{text}");
    burner.assert_running();
}

#[test]
fn top_without_a_terminal_refuses_unless_once_and_once_prints_one_plain_table() {
    let Some(_guard) = e2e_guard() else { return };
    let mut burner = Workload::spawn(WorkloadKind::CpuSplit, &["0", "1"]);
    burner.wait_busy();
    let pid = burner.pid().to_string();

    let refused = run_stackwatch_timeout(&["top", "--pid", &pid], Duration::from_secs(30));
    let shown = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_exit(&refused, 2, &shown);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(shown.contains("terminal") && shown.contains("--once"), "{shown}");
    assert!(refused.stdout.is_empty());

    let once = run_stackwatch_timeout(&["top", "--pid", &pid, "--once", "--interval", "2s"], Duration::from_secs(60));
    let text = String::from_utf8_lossy(&once.stdout).into_owned();
    assert_exit(&once, 0, &format!("{text}{}", String::from_utf8_lossy(&once.stderr)));
    eprintln!("measured: `stackwatch top --once`:\n{text}");
    assert!(text.starts_with(&format!("stackwatch top: pid {pid} (cpu_split) at 99 Hz")), "{text}");
    assert!(!text.contains('\x1b'), "escape sequences in the plain table:\n{text}");
    let hot_a = row(&text, "hot_a").unwrap_or_else(|| panic!("no hot_a row:\n{text}"));
    assert!(hot_a.contains(&format!("cpu_split[{pid}]")) && own_pct(hot_a) > 25.0, "{text}");
    burner.assert_running();
}
