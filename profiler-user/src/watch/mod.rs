//! `stackwatch watch`: a resident daemon that captures on command, or when
//! a trigger rule fires.
//!
//! At start it installs its signal handlers (SIGUSR2's default action would
//! kill it), checks the output directory and the control path, loads the
//! eBPF programs once (for `--profiles` and the kinds its rules ask for, see
//! [`setup`]), so a host that cannot run them is reported at start, not at
//! 3 a.m., and only then creates the output directory and claims the
//! control FIFO and the reply socket ([`crate::control`]): a refused start
//! creates nothing. Idle, nothing is attached: no perf event fires, and
//! without trigger rules no timer runs.
//!
//! One task owns all state and handles one event at a time — a command
//! (FIFO, socket or SIGUSR2), a trigger sample every `--sample-interval`
//! (only with rules, see [`triggers`]), the capture's deadline, a one-second
//! tick while capturing, the end of a write, SIGTERM/SIGINT/SIGHUP — so captures
//! cannot overlap. A rule that fires while the daemon is idle starts a
//! capture of `--capture-duration` with the profiles the rule asks for and
//! the reason recorded as its trigger; while a capture runs or is written no
//! rule fires. A capture moves through three phases:
//!
//! - **idle** → **capturing**: the target is resolved afresh (`--name` finds
//!   restarted processes; a missing target refuses the capture and the daemon
//!   carries on), the maps are emptied, the events attached and the capture
//!   window opened (the kernel counts only inside it, see
//!   [`Loader::open_window`]);
//! - **capturing** → **writing**: on `stop`/`toggle`, the deadline, the exit
//!   of every target process, or a signal, the window is closed (the kernel
//!   had closed it by itself at the deadline) and the loader moves to a
//!   blocking thread that detaches the events (which can take seconds on a
//!   crowded host, and no longer changes what was counted), finishes the
//!   capture (`crate::pipeline`), hands it to the sink (files in the output
//!   directory, `crate::sink`), empties the maps and applies retention;
//! - **writing** → **idle**: the loader comes back. Commands that arrived
//!   meanwhile were folded into one pending action (a `toggle` flips it,
//!   `start` sets it, `stop` clears it), applied now; their `ctl` callers get
//!   their answer then, a `stop` with the files just written. Folding is what
//!   keeps 200 toggles in a burst from becoming 100 empty captures.
//!
//! A write that fails (full disk, directory gone or read-only) is logged and
//! answered, with the files that could be written; the daemon stays up and
//! the next capture tries again, creating the output directory if it
//! vanished. On SIGTERM/SIGINT/SIGHUP the running capture is written (up to
//! [`SHUTDOWN_WRITE_TIMEOUT`]; a second signal gives up at once, and the log
//! says the capture was not written and the daemon is stopping), the
//! program is detached and unloaded, and the FIFO and socket are removed.

mod alerting;
mod fifo;
mod http;
mod listen;
mod ondemand;
mod setup;
mod triggers;
mod write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context as _, Result};
use profiler_common::Stat;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::bpf::Loader;
use crate::config::{UsageError, WatchConfig};
use crate::control::{CaptureStatus, Command, DaemonState, Reply};
use crate::history::{HistoryView, Recorder};
use crate::metrics::Metrics;
use crate::pipeline::Session;
use crate::profile::capture::Trigger;
use crate::profile::ProfileKind;
use crate::profile::ProfileSet;
use crate::sink::push::PushSink;
use crate::sink::{DirSink, Fanout, Sink};
use crate::symbolize::Symbolizer;
use crate::target::{Filter, ResolvedTarget, TargetSpec};
use crate::triggers::Rule;

use self::alerting::AlertState;
use self::http::AlertEvent;
use self::listen::{sd_notify, Request, Source};
use self::setup::{check_output_dir, compatible, create_output_dir, initial_load, Endpoints, Loaded, Signals};
use self::triggers::Triggers;
use self::write::{write_job, Captured, WriteJob, WriteOutcome};

/// How often a running capture re-resolves `--name`, checks that its target
/// is alive and forwards eBPF log records. Nothing ticks while idle.
const TICK: Duration = Duration::from_secs(1);

/// Longest wait for the last capture's files at SIGTERM/SIGINT/SIGHUP; systemd's
/// `TimeoutStopSec=20` leaves room for it.
pub(crate) const SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Queued commands; a full queue makes FIFO writers and `ctl` wait.
const QUEUE: usize = 64;

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(config: WatchConfig) -> Result<()> {
    let mut signals = Signals::install()?;
    // Refusals first, then the load (which creates no file), then what is
    // made: a refused start leaves nothing behind.
    check_output_dir(&config.output_dir)?;
    Endpoints::check(&config.control)?;
    let alert_targets = http::alerts::AlertTargets::new(&config.alert_targets)
        .map_err(|e| UsageError(format!("invalid `[alert-targets]` in the config file: {e}")))?;
    let rule_kinds: Vec<ProfileKind> = config.triggers.rules.iter().flat_map(Rule::kinds).collect();
    let loaded = initial_load(
        &config.target,
        ProfileSet::of(&config.profiles),
        ProfileSet::of(&rule_kinds),
        config.unwind.mode(),
    )?;
    let metrics = Metrics::default();
    // Its own copy of the program: a capture's maps and counts never see it.
    let recorder =
        config.history.map(|h| Recorder::start(h, &config.target, metrics.history_memory.clone())).transpose()?;
    let created_output = create_output_dir(&config.output_dir)?;
    let mut endpoints = Endpoints::open(&config.control)?;
    // After the control directory exists: `unix:/run/stackwatch/http.sock`
    // may live in it. A refusal takes back what was made.
    let bound = match &config.listen {
        Some(listen) => match http::Bound::bind(&listen.addr).await {
            Ok(bound) => Some(bound),
            Err(e) => {
                endpoints.remove();
                return Err(e);
            }
        },
        None => None,
    };
    created_output.keep();
    let dir_sink: Arc<dyn Sink> = Arc::new(DirSink::new(config.output_dir.clone(), config.formats, None));
    let sink: Arc<dyn Sink> = match &config.push {
        // Files first, then the push: a push never costs the files.
        Some(push) => Arc::new(Fanout(vec![dir_sink, Arc::new(PushSink::start(push.clone(), metrics.clone())?)])),
        None => dir_sink,
    };
    crate::sink::files::sweep_and_log(&config.output_dir);
    let triggers = Triggers::new(&config.triggers, &config.target);

    let (tx, mut rx) = mpsc::channel(QUEUE);
    let fifo_fd = endpoints.fifo.try_clone_fd().context("failed to duplicate the control FIFO descriptor")?;
    let fifo_task = tokio::spawn(listen::read_fifo(fifo_fd, config.control.clone(), tx.clone()));
    let listener = endpoints.take_listener()?;
    let socket_task = tokio::spawn(listen::serve_socket(listener, tx));
    // The sender lives as long as the daemon, so the queue never closes
    // (without `--listen` nothing sends).
    let (alert_tx, mut alert_rx) = mpsc::channel(http::QUEUE);
    let http_task = match (bound, &config.listen) {
        (Some(bound), Some(listen)) => {
            info!(listen = %bound.describe(), "HTTP endpoint: POST /alerts, GET /metrics, GET /healthz");
            let token = listen.token.clone();
            Some(tokio::spawn(http::serve(bound, token, alert_targets, alert_tx.clone(), metrics.clone())))
        }
        _ => None,
    };

    info!(
        control = %config.control.display(),
        socket = %endpoints.socket.display(),
        output_dir = %config.output_dir.display(),
        target = %describe_spec(&config.target),
        profiles = %loaded.kinds,
        "ready: idle until `start`/`toggle` on the control FIFO, SIGUSR2 or `stackwatch ctl`"
    );
    if let Some(triggers) = &triggers {
        info!(
            cooldown = %humantime::format_duration(config.triggers.cooldown),
            sample_interval = %humantime::format_duration(config.triggers.sample_interval),
            "watching the target: a capture of {} starts when a rule holds: {}",
            humantime::format_duration(config.capture_duration),
            triggers.rules_text()
        );
    }
    if let Some(h) = &config.history {
        info!(
            history = %humantime::format_duration(h.window),
            frequency_hz = h.frequency_hz,
            memory_bytes = h.memory_bytes,
            "flight recorder on: each capture also writes the history before it and a diff of what changed"
        );
    }
    sd_notify("READY=1\nSTATUS=idle");

    let listen = config.listen.clone();
    let mut daemon = Daemon::new(config, loaded, triggers, sink, metrics);
    daemon.history = recorder;
    let signal_name = daemon.serve(&mut rx, &mut alert_rx, &mut signals).await;
    sd_notify("STOPPING=1\nSTATUS=stopping");
    // New requests are answered "shutting down" from here on.
    rx.close();
    let result = daemon.shutdown(signal_name, &mut signals).await;
    fifo_task.abort();
    socket_task.abort();
    if let Some(task) = http_task {
        task.abort();
    }
    drop(alert_tx);
    drop(daemon);
    endpoints.remove();
    if let Some(listen) = &listen {
        http::remove_socket(&listen.addr);
    }
    info!("stopped");
    result
}

/// Why a capture ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndReason {
    Command(Command, Source),
    Duration,
    TargetExited,
    Signal(&'static str),
    /// The alert that started the capture was resolved.
    Resolved,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Command(c, s) => write!(f, "`{}` from {}", c.to_line(), s.as_str()),
            EndReason::Duration => f.write_str("its duration ran out"),
            EndReason::TargetExited => f.write_str("every target process exited"),
            EndReason::Signal(name) => write!(f, "{name}"),
            EndReason::Resolved => f.write_str("its alert was resolved"),
        }
    }
}

/// What the daemon does once a write has ended, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterWrite {
    /// Back to serving commands.
    Continue,
    /// Shutting down (SIGTERM/SIGINT/SIGHUP).
    Exit,
}

impl AfterWrite {
    fn describe(self) -> &'static str {
        match self {
            AfterWrite::Continue => "the daemon keeps running and the next capture will try again",
            AfterWrite::Exit => "the daemon is stopping",
        }
    }
}

/// A manual start, possibly folded while a write runs.
#[derive(Clone, Copy, Debug)]
struct StartRequest {
    duration: Option<Duration>,
    profiles: Option<ProfileSet>,
    source: Source,
}

/// A capture about to start, manual or triggered.
struct CaptureRequest {
    duration: Duration,
    kinds: Vec<ProfileKind>,
    source: Source,
    trigger: Trigger,
    /// When the rule's condition first held (a triggered capture).
    condition_since: Option<SystemTime>,
    /// Another target than the daemon's (an alert's); `None`: the daemon's.
    target: Option<TargetSpec>,
    /// The alert that asked for it, whose resolution ends it.
    alert_key: Option<String>,
}

/// The running capture.
struct Capture {
    /// As asked for: `--name` is looked up again every tick.
    spec: TargetSpec,
    target: ResolvedTarget,
    alert_key: Option<String>,
    /// BPF run totals of the loader when the capture started.
    bpf_before: (Duration, u64),
    source: Source,
    trigger: Trigger,
    kinds: Vec<ProfileKind>,
    session: Session,
    started: Instant,
    duration: Duration,
    /// The flight recorder's slots when the capture started, and when the
    /// rule's condition first held.
    history: Option<(HistoryView, Option<SystemTime>)>,
}

/// What a `ctl` caller waiting on a write wants to hear.
enum Wants {
    /// The files of the capture being written (`stop`).
    Files,
    /// The state once the pending action is applied (`start`, `toggle`).
    Outcome,
}

/// A capture being written on a blocking thread.
struct Writing {
    handle: JoinHandle<WriteOutcome>,
    target: String,
    reason: EndReason,
    /// Folded commands that arrived meanwhile: start this one once
    /// written, or none.
    pending: Option<StartRequest>,
    waiters: Vec<(Wants, oneshot::Sender<Reply>)>,
    /// `manual`, `rule` or `alert`, for the metrics.
    why: &'static str,
}

struct Daemon {
    config: WatchConfig,
    /// Where captures go: files in the output directory.
    sink: Arc<dyn Sink>,
    /// `None` only while a write holds it, or after a writer panicked (the
    /// next capture loads a fresh one).
    loader: Option<Loader>,
    /// Long-lived, so its build-ID-keyed cache (bounded) serves every
    /// capture; moves to the writer with the loader. `None` while a write
    /// holds it (or after a writer panicked: a fresh one is made).
    symbolizer: Option<Symbolizer>,
    loaded_filter: Filter,
    /// The profile kinds the programs were loaded for (cpu always).
    loaded_kinds: ProfileSet,
    /// The kinds loaded at start: a manual capture of other kinds loads
    /// theirs on demand, and the daemon goes back to these once it is written.
    base_kinds: ProfileSet,
    capture: Option<Capture>,
    writing: Option<Writing>,
    ticker: Interval,
    /// `None` without trigger rules.
    triggers: Option<Triggers>,
    /// One line about the last capture, for `status`.
    last: Option<String>,
    /// The flight recorder, with `--history`.
    history: Option<Recorder>,
    metrics: Metrics,
    /// Alert captures: cooldowns and the start latency.
    alerts: AlertState,
    /// Held while a capture runs: keeps the kernel's BPF run-time
    /// statistics on (only with `--listen`, where they are shown).
    run_stats: Option<std::os::fd::OwnedFd>,
}

impl Daemon {
    fn new(
        config: WatchConfig,
        loaded: Loaded,
        triggers: Option<Triggers>,
        sink: Arc<dyn Sink>,
        metrics: Metrics,
    ) -> Self {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            config,
            sink,
            loader: Some(loaded.loader),
            symbolizer: Some(Symbolizer::for_daemon()),
            loaded_filter: loaded.filter,
            loaded_kinds: loaded.kinds,
            base_kinds: loaded.kinds,
            capture: None,
            writing: None,
            ticker,
            triggers,
            last: None,
            history: None,
            metrics,
            alerts: AlertState::default(),
            run_stats: None,
        }
    }

    fn state(&self) -> DaemonState {
        if self.capture.is_some() {
            DaemonState::Capturing
        } else if self.writing.is_some() {
            DaemonState::Writing
        } else {
            DaemonState::Idle
        }
    }

    /// Handles events until SIGTERM or SIGINT; returns the signal's name.
    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        alerts: &mut mpsc::Receiver<AlertEvent>,
        signals: &mut Signals,
    ) -> &'static str {
        loop {
            let deadline = self.capture.as_ref().map(|c| c.started + c.duration);
            let capturing = deadline.is_some();
            let writing = self.writing.as_mut().map(|w| &mut w.handle);
            let sample = self.triggers.as_mut().map(|t| t.interval.tick());
            tokio::select! {
                biased;
                _ = signals.term.recv() => return "SIGTERM",
                _ = signals.int.recv() => return "SIGINT",
                _ = signals.hup.recv() => return "SIGHUP",
                _ = signals.usr1.recv() => warn!("SIGUSR1 ignored: SIGUSR2 toggles a capture"),
                outcome = maybe(writing) => self.finish_write(outcome),
                _ = maybe(deadline.map(tokio::time::sleep_until)) => self.stop_capture(EndReason::Duration, None),
                _ = self.ticker.tick(), if capturing => self.tick(),
                _ = maybe(sample) => self.sample_triggers(),
                _ = signals.usr2.recv() => {
                    info!("SIGUSR2: toggle");
                    self.handle(Request { command: Ok(Command::Toggle), source: Source::Signal, reply: None });
                }
                Some(request) = rx.recv() => self.handle(request),
                Some(event) = alerts.recv() => self.handle_alert(event),
            }
            // Whatever the event was, the monitor must know whether a
            // capture now runs: no rule fires while one does.
            let busy = self.state() != DaemonState::Idle;
            if let Some(triggers) = self.triggers.as_mut() {
                triggers.sync(busy);
            }
        }
    }

    /// A trigger sample: a rule that fires starts a capture, unless one is
    /// already running.
    fn sample_triggers(&mut self) {
        let firing = self.triggers.as_mut().and_then(Triggers::sample);
        if let Some(triggers) = &self.triggers {
            triggers.export(&self.metrics);
        }
        let Some(firing) = firing else { return };
        info!("{firing}");
        Metrics::inc(&self.metrics.rule_firings, "rule", &firing.trigger().summary());
        let state = self.state();
        if state != DaemonState::Idle {
            // Not reachable while `sync` keeps the monitor quiet during
            // captures; kept so a firing can never overlap a capture.
            info!("the triggered capture is suppressed: a capture is already {state}");
            if let Some(triggers) = self.triggers.as_mut() {
                triggers.dismiss();
            }
            return;
        }
        let (kinds, left_out): (Vec<ProfileKind>, Vec<ProfileKind>) =
            firing.kinds.iter().partition(|&&k| self.loaded_kinds.contains(k));
        if !left_out.is_empty() {
            debug!("profiles left out of the triggered capture (not loaded): {}", ProfileSet::of(&left_out));
        }
        let request = CaptureRequest {
            duration: self.config.capture_duration,
            kinds,
            source: Source::Rule,
            trigger: firing.trigger(),
            condition_since: Some(firing.window_start),
            target: None,
            alert_key: None,
        };
        let answer = self.start_capture(request);
        if answer.ok {
            let latency = firing.at.elapsed();
            debug!(latency_us = latency.as_micros() as u64, "triggered capture attached after the rule fired");
        }
        // On failure (the target vanished since the sample) the daemon is
        // still idle, and `sync` releases the monitor: rules need fresh
        // evidence, and the cooldown stands, so a failing start does not repeat.
    }

    fn handle(&mut self, request: Request) {
        let Request { command, source, reply } = request;
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                warn!("ignoring a command from {}: {e}", source.as_str());
                respond(reply, self.reply(false, e.to_string()));
                return;
            }
        };
        debug!(command = %command.to_line(), source = source.as_str(), state = %self.state(), "command");
        match (command, self.state()) {
            (Command::Status, _) => {
                let status = self.reply(true, self.status_message());
                match reply {
                    Some(reply) => respond(Some(reply), status),
                    None => listen::log_status(&status),
                }
            }
            (Command::Start { .. } | Command::Toggle, DaemonState::Idle) => {
                let (duration, profiles) = match command {
                    Command::Start { duration, profiles } => (duration, profiles),
                    _ => (None, None),
                };
                let answer = self.start_manual(StartRequest { duration, profiles, source });
                respond(reply, answer);
            }
            (Command::Start { .. }, _) if self.capture.is_some() => {
                let message = format!("already capturing; the running capture continues\n{}", self.status_message());
                info!("`start` from {} ignored: a capture is already running", source.as_str());
                respond(reply, self.reply(true, message));
            }
            (Command::Stop, DaemonState::Idle) => {
                info!("`stop` from {}: no capture is running", source.as_str());
                respond(reply, self.reply(true, "idle: no capture is running, nothing to stop".to_owned()));
            }
            (Command::Stop | Command::Toggle, _) if self.capture.is_some() => {
                self.stop_capture(EndReason::Command(command, source), reply);
            }
            (_, _) => self.fold(command, source, reply),
        }
    }

    /// A command that arrives while a capture is being written: folded into
    /// the pending action, answered when the write ends.
    fn fold(&mut self, command: Command, source: Source, reply: Option<oneshot::Sender<Reply>>) {
        let Some(writing) = self.writing.as_mut() else { return };
        writing.pending = match (command, writing.pending) {
            (Command::Start { duration, profiles }, _) => Some(StartRequest { duration, profiles, source }),
            (Command::Toggle, None) => Some(StartRequest { duration: None, profiles: None, source }),
            (Command::Toggle, Some(_)) | (Command::Stop, _) => None,
            (Command::Status, pending) => pending,
        };
        debug!(
            command = %command.to_line(),
            pending = writing.pending.is_some(),
            "command folded while the previous capture is written"
        );
        if let Some(reply) = reply {
            let wants = if command == Command::Stop { Wants::Files } else { Wants::Outcome };
            writing.waiters.push((wants, reply));
        }
    }

    /// A `start` or `toggle`: the daemon's `--profiles` unless the command
    /// names others, whose programs are then loaded for this capture.
    fn start_manual(&mut self, request: StartRequest) -> Reply {
        let kinds = request.profiles.map_or_else(|| self.config.profiles.clone(), ProfileSet::to_vec);
        self.start_capture(CaptureRequest {
            duration: request.duration.unwrap_or(self.config.capture_duration),
            kinds,
            source: request.source,
            trigger: Trigger::Manual { source: request.source.as_str().to_owned() },
            condition_since: None,
            target: None,
            alert_key: None,
        })
    }

    fn start_capture(&mut self, request: CaptureRequest) -> Reply {
        let source = request.source;
        match self.try_start(request) {
            Ok(()) => {
                let Some(capture) = self.capture.as_ref() else {
                    return self.reply(false, "internal error: the capture vanished".to_owned());
                };
                let target = capture.target.info.description.clone();
                let duration = humantime::format_duration(capture.duration);
                let profiles = ProfileSet::of(&capture.kinds);
                let why = match &capture.trigger {
                    Trigger::Rule { .. } | Trigger::Alert { .. } => format!("; {}", capture.trigger.summary()),
                    Trigger::Manual { .. } => String::new(),
                };
                Metrics::inc(&self.metrics.captures_started, "reason", reason_label(&capture.trigger));
                self.metrics.capturing.set(1);
                info!(
                    target = %target,
                    duration = %duration,
                    source = source.as_str(),
                    profiles = %profiles,
                    "capture started{why}"
                );
                sd_notify(&format!("STATUS=capturing {target}"));
                let message = format!(
                    "capture started: {target} for {duration} ({profiles}); `stop` or `toggle` ends it earlier"
                );
                self.reply(true, message)
            }
            Err(e) => {
                let message = format!("no capture started: {e:#}");
                error!("{message}");
                Metrics::inc(&self.metrics.captures_skipped, "reason", "error");
                self.reply(false, message)
            }
        }
    }

    fn try_start(&mut self, request: CaptureRequest) -> Result<()> {
        let spec = request.target.clone().unwrap_or_else(|| self.config.target.clone());
        let target = spec.resolve()?;
        let missing = ProfileSet::of(&request.kinds).minus(self.loaded_kinds);
        let loader = match self.loader.take() {
            Some(loader) if missing.is_empty() && compatible(&self.loaded_filter, &target.filter) => loader,
            previous => {
                let kinds = self.loaded_kinds.union(missing);
                if missing.is_empty() {
                    info!("loading the eBPF program for {}", target.info.description);
                } else {
                    info!("loading the programs of the {missing} profile for this capture");
                }
                // The new program first: if it fails, the daemon keeps the
                // one it had and stays as ready as before.
                let loader = match ondemand::load(&target.filter, kinds, missing, self.config.unwind.mode()) {
                    Ok(loader) => loader,
                    Err(e) => {
                        self.loader = previous;
                        return Err(e);
                    }
                };
                drop(previous);
                self.loaded_filter = target.filter.clone();
                self.loaded_kinds = kinds;
                loader
            }
        };
        let loader = self.loader.insert(loader);
        if let Filter::Pids(pids) = &target.filter {
            loader.set_target_pids(pids)?;
        }
        // Normally already empty (the writer clears); a failed clear must
        // not leak an old capture's samples into this one.
        loader.clear().context("failed to empty the kernel maps before the capture")?;
        let cgroup_dir = spec.cgroup_dir();
        let symbolizer = self.symbolizer.get_or_insert_with(Symbolizer::for_daemon);
        let session = Session::start(
            loader,
            symbolizer,
            &request.kinds,
            self.config.frequency_hz,
            &target.filter,
            cgroup_dir.as_deref(),
            request.duration,
        )?;
        self.ticker.reset();
        if self.config.listen.is_some() && self.run_stats.is_none() {
            self.run_stats = crate::bpf::enable_run_stats();
        }
        let bpf_before = loader.run_totals();
        self.capture = Some(Capture {
            spec,
            target,
            alert_key: request.alert_key,
            bpf_before,
            source: request.source,
            trigger: request.trigger,
            kinds: request.kinds,
            session,
            started: Instant::now(),
            duration: request.duration,
            history: self.history.as_ref().map(|r| (r.view(), request.condition_since)),
        });
        Ok(())
    }

    /// Ends the running capture and hands it to a writing thread. `reply`
    /// (a `ctl stop`) is answered with the files once written.
    fn stop_capture(&mut self, reason: EndReason, reply: Option<oneshot::Sender<Reply>>) {
        let Some(capture) = self.capture.take() else { return };
        let Some(mut loader) = self.loader.take() else {
            error!("internal error: a capture ran without a loaded program; it is lost");
            respond(reply, self.reply(false, "internal error: the capture was lost".to_owned()));
            return;
        };
        // The kernel stops counting now (at the deadline it already had);
        // the writing thread detaches, however long that takes.
        let ended = capture.session.stop(&mut loader);
        loader.flush_logs();
        let (time, runs) = loader.run_totals();
        self.metrics.add_bpf_run(time.saturating_sub(capture.bpf_before.0), runs.saturating_sub(capture.bpf_before.1));
        self.run_stats = None;
        self.metrics.capturing.set(0);
        let why = reason_label(&capture.trigger);
        let description = capture.target.info.description.clone();
        info!(target = %description, "capture ended ({reason}); writing its files");
        sd_notify(&format!("STATUS=writing {description}"));
        let job = WriteJob {
            output_dir: self.config.output_dir.clone(),
            sink: Arc::clone(&self.sink),
            policy: self.config.retention,
            trigger: capture.trigger,
            kinds: capture.kinds,
            frequency_hz: self.config.frequency_hz,
            ended,
            target: capture.target,
            history: capture.history,
        };
        let symbolizer = self.symbolizer.take().unwrap_or_else(Symbolizer::for_daemon);
        let handle = tokio::task::spawn_blocking(move || write_job(loader, symbolizer, job));
        let waiters = reply.into_iter().map(|r| (Wants::Files, r)).collect();
        self.writing = Some(Writing { handle, target: description, reason, pending: None, waiters, why });
    }

    fn tick(&mut self) {
        let (Some(loader), Some(capture)) = (self.loader.as_mut(), self.capture.as_ref()) else { return };
        let symbolizer = self.symbolizer.get_or_insert_with(Symbolizer::for_daemon);
        if !capture.session.tick(loader, symbolizer, &capture.spec, &capture.target.info.pids) {
            self.stop_capture(EndReason::TargetExited, None);
        }
    }

    /// The write ended: take the loader back, answer the waiters, apply the
    /// pending action.
    fn finish_write(&mut self, outcome: Result<WriteOutcome, tokio::task::JoinError>) {
        let Some(writing) = self.writing.take() else { return };
        let written = match outcome {
            Ok(WriteOutcome { loader, symbolizer, result }) => {
                self.loader = Some(loader);
                self.symbolizer = Some(symbolizer);
                if writing.pending.is_none() {
                    self.unload_extra_kinds();
                }
                result
            }
            Err(e) => Err(anyhow!("the writing thread failed: {e}")),
        };
        let files_reply = self.record_write(&writing, written, AfterWrite::Continue);
        let mut outcome_reply = None;
        for (wants, reply) in writing.waiters {
            let answer = match wants {
                Wants::Files => files_reply.clone(),
                Wants::Outcome => {
                    // Computed after the pending action is applied, below.
                    outcome_reply.get_or_insert_with(Vec::new).push(reply);
                    continue;
                }
            };
            let _ = reply.send(answer);
        }
        let after = match writing.pending {
            Some(request) => self.start_manual(request),
            None => {
                sd_notify("STATUS=idle");
                self.reply(true, format!("idle; {}", self.last.as_deref().unwrap_or("no capture yet")))
            }
        };
        for reply in outcome_reply.unwrap_or_default() {
            let mut answer = after.clone();
            answer.message = format!("the previous capture was written first ({})\n{}", writing.target, answer.message);
            answer.files.clone_from(&files_reply.files);
            let _ = reply.send(answer);
        }
    }

    /// Back to the kinds loaded at start after a capture that loaded more,
    /// so an idle daemon holds only what it was started with.
    fn unload_extra_kinds(&mut self) {
        let extra = self.loaded_kinds.minus(self.base_kinds);
        if extra.is_empty() {
            return;
        }
        match ondemand::load(&self.loaded_filter, self.base_kinds, ProfileSet::default(), self.config.unwind.mode()) {
            Ok(loader) => {
                self.loader = Some(loader);
                self.loaded_kinds = self.base_kinds;
                info!("unloaded the programs of the {extra} profile loaded for the last capture");
            }
            // The bigger program still works; it is only more memory.
            Err(e) => warn!("the programs of the {extra} profile stay loaded: reloading without them failed: {e:#}"),
        }
    }

    /// Logs a finished write, remembers it for `status`, and builds the
    /// reply for whoever stopped it. `then` says what the daemon does next,
    /// so the log never says it keeps running while it is stopping.
    fn record_write(&mut self, writing: &Writing, written: Result<Captured>, then: AfterWrite) -> Reply {
        let when = humantime::format_rfc3339_seconds(SystemTime::now());
        let (paths, samples, failure) = match written {
            Ok(Captured { written, samples, lost }) => {
                self.metrics.samples_collected.inc_by(samples);
                for (reason, count) in lost {
                    self.metrics
                        .samples_lost
                        .get_or_create(&vec![("reason", reason.as_str().to_owned())])
                        .inc_by(count);
                }
                let failure = written.error();
                (written.paths, samples, failure)
            }
            Err(e) => (Vec::new(), 0, Some(e)),
        };
        let family = if failure.is_none() { &self.metrics.captures_written } else { &self.metrics.captures_failed };
        Metrics::inc(family, "reason", writing.why);
        if !paths.is_empty() {
            self.metrics.set_last_capture(SystemTime::now());
        }
        let Some(e) = failure else {
            info!(
                target = %writing.target,
                samples,
                files = %paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
                "capture written"
            );
            self.last = Some(format!(
                "last capture: {} ended at {when} ({}), {samples} samples, {} files",
                writing.target,
                writing.reason,
                paths.len()
            ));
            let mut reply = self
                .reply(true, format!("capture of {} stopped ({}): {samples} samples", writing.target, writing.reason));
            reply.files = paths;
            return reply;
        };
        let (what, short) = if paths.is_empty() {
            ("could not be written", "FAILED")
        } else {
            ("was only partly written", "PARTLY WRITTEN")
        };
        let message = format!("the capture of {} {what}: {e:#}", writing.target);
        error!("{message}; {}", then.describe());
        self.last = Some(format!("last capture: {} at {when} {short}: {e:#}", writing.target));
        let mut reply = self.reply(false, message);
        reply.files = paths;
        reply
    }

    /// Finishes the running or in-flight capture within
    /// [`SHUTDOWN_WRITE_TIMEOUT`], then unloads the program.
    async fn shutdown(&mut self, signal_name: &'static str, signals: &mut Signals) -> Result<()> {
        if self.capture.is_some() {
            self.stop_capture(EndReason::Signal(signal_name), None);
        }
        let mut result = Ok(());
        if let Some(mut writing) = self.writing.take() {
            writing.pending = None;
            info!(
                "{signal_name}: finishing the capture of {} (at most {}; signal again to exit at once)",
                writing.target,
                humantime::format_duration(SHUTDOWN_WRITE_TIMEOUT)
            );
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(SHUTDOWN_WRITE_TIMEOUT, &mut writing.handle) => match outcome {
                    Ok(joined) => joined.map_err(|e| anyhow!("the writing thread failed: {e}")),
                    Err(_) => Err(anyhow!(
                        "writing took longer than {}; gave up",
                        humantime::format_duration(SHUTDOWN_WRITE_TIMEOUT)
                    )),
                },
                _ = signals.term.recv() => Err(anyhow!("a second signal arrived; gave up writing")),
                _ = signals.int.recv() => Err(anyhow!("a second signal arrived; gave up writing")),
                _ = signals.hup.recv() => Err(anyhow!("a second signal arrived; gave up writing")),
            };
            let written = match outcome {
                Ok(WriteOutcome { loader, symbolizer, result }) => {
                    self.loader = Some(loader);
                    self.symbolizer = Some(symbolizer);
                    result
                }
                Err(e) => Err(e),
            };
            let files_reply = self.record_write(&writing, written, AfterWrite::Exit);
            let failure = (!files_reply.ok).then(|| anyhow!("{}", files_reply.message));
            for (wants, reply) in writing.waiters.drain(..) {
                let mut answer = files_reply.clone();
                answer.state = DaemonState::Stopping;
                if matches!(wants, Wants::Outcome) {
                    answer.message = format!("no capture started: the daemon is stopping\n{}", answer.message);
                    answer.ok = false;
                }
                let _ = reply.send(answer);
            }
            if let Some(failure) = failure {
                result = Err(failure);
            }
        }
        if let Some(mut loader) = self.loader.take() {
            if let Err(e) = loader.detach() {
                warn!("{e:#}");
            }
        }
        result
    }

    /// A reply carrying the current state.
    fn reply(&self, ok: bool, message: String) -> Reply {
        Reply {
            ok,
            state: self.state(),
            message,
            files: Vec::new(),
            capture: self.capture_status(),
            pid: std::process::id(),
            busy: false,
        }
    }

    fn capture_status(&self) -> Option<CaptureStatus> {
        let capture = self.capture.as_ref()?;
        let samples = self.loader.as_ref().and_then(|l| l.stats().ok()).map_or(0, |s| s.get(Stat::Recorded));
        let elapsed = capture.started.elapsed();
        Some(CaptureStatus {
            target: capture.target.info.description.clone(),
            source: capture.source.as_str().to_owned(),
            started: humantime::format_rfc3339_seconds(capture.session.window.start).to_string(),
            elapsed_ms: elapsed.as_millis() as u64,
            remaining_ms: capture.duration.saturating_sub(elapsed).as_millis() as u64,
            samples,
            trigger: matches!(capture.trigger, Trigger::Rule { .. } | Trigger::Alert { .. })
                .then(|| capture.trigger.summary()),
            profiles: ProfileSet::of(&capture.kinds).to_string(),
        })
    }

    /// The human status: first word is the state (scripts may match it).
    fn status_message(&self) -> String {
        let last = self.last.as_deref().map(|l| format!("\n{l}")).unwrap_or_default();
        let triggers = self.triggers.as_ref().map(|t| format!("\n{}", t.status())).unwrap_or_default();
        let state = match (&self.capture, &self.writing, self.capture_status()) {
            (Some(capture), _, Some(status)) => format!(
                "capturing: {} for {} of {}, {} samples so far ({}; started by {}{})",
                status.target,
                humantime::format_duration(Duration::from_secs(status.elapsed_ms / 1000)),
                humantime::format_duration(capture.duration),
                status.samples,
                status.profiles,
                status.source,
                status.trigger.as_deref().map(|t| format!(", {t}")).unwrap_or_default()
            ),
            (_, Some(writing), _) => format!(
                "writing: the capture of {} ended ({}); its files are being written{}",
                writing.target,
                writing.reason,
                if writing.pending.is_some() { "; a new capture starts after that" } else { "" }
            ),
            _ => format!(
                "idle: target {}, output `{}`, captures of {} at {} Hz ({}){last}",
                describe_spec(&self.config.target),
                self.config.output_dir.display(),
                humantime::format_duration(self.config.capture_duration),
                self.config.frequency_hz,
                ProfileSet::of(&self.config.profiles),
            ),
        };
        let history = self.history.as_ref().map(|h| format!("\n{}", h.describe())).unwrap_or_default();
        state + &triggers + &history
    }
}

/// Sends `reply` if someone waits for it (socket requests); FIFO and signal
/// commands are answered in the log.
fn respond(slot: Option<oneshot::Sender<Reply>>, reply: Reply) {
    if let Some(slot) = slot {
        // The client may have gone (timeout); nothing to do then.
        let _ = slot.send(reply);
    }
}

/// The `reason` label of a capture's metrics.
fn reason_label(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Manual { .. } => "manual",
        Trigger::Rule { .. } => "rule",
        Trigger::Alert { .. } => "alert",
    }
}

/// `future`, or never when there is none (a disabled `select!` branch).
async fn maybe<F: std::future::Future>(future: Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The target as configured (not yet resolved), for logs and `status`.
fn describe_spec(spec: &TargetSpec) -> String {
    match spec {
        TargetSpec::Pids(pids) => {
            let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
            format!("pid {}", list.join(","))
        }
        TargetSpec::Name(re) => format!("name /{re}/"),
        TargetSpec::Cgroup(path) => format!("cgroup {}", path.display()),
        TargetSpec::Host => "host".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Pid;

    #[test]
    fn end_reasons_read_well() {
        assert_eq!(EndReason::Command(Command::Stop, Source::Ctl).to_string(), "`stop` from ctl");
        assert_eq!(EndReason::Command(Command::Toggle, Source::Signal).to_string(), "`toggle` from SIGUSR2");
        assert_eq!(EndReason::Duration.to_string(), "its duration ran out");
        assert_eq!(EndReason::Signal("SIGTERM").to_string(), "SIGTERM");
    }

    #[test]
    fn describes_targets() {
        assert_eq!(describe_spec(&TargetSpec::Pids(vec![Pid::new(1), Pid::new(2)])), "pid 1,2");
        assert_eq!(describe_spec(&TargetSpec::Host), "host");
    }
}
