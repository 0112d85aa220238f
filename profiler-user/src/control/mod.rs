//! The control protocol of `stackwatch watch`, shared by the daemon and
//! `stackwatch ctl`: the command language, the replies, and where the
//! reply socket is; the client side is [`client`].
//!
//! Commands are lines of text (`start [DURATION] [KINDS]`, `stop`,
//! `toggle`, `status`), written by anyone who can open the FIFO — typically
//! `echo toggle > /run/stackwatch/control` — or sent by `stackwatch ctl`.
//! The FIFO is one-way, so `ctl` talks to a unix socket next to it
//! (`<control>.sock`) that takes the same one-line command and answers with
//! one line of JSON ([`Reply`]); see `docs/architecture.md`.
//!
//! Everything here treats its input as hostile: the splitter caps a line at
//! [`MAX_LINE`] bytes and discards the rest of an overlong one (memory stays
//! bounded whatever is written), and the parser turns any byte sequence into
//! either a [`Command`] or a [`ParseError`] that says why, never a panic.
//!
//! The FIFO and socket on disk — created only when provably ours, never
//! adopting an inode someone else may hold open — are [`fifo`]'s job.

pub(crate) mod client;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::ProfileSet;

/// Default control FIFO; `/run/stackwatch` is the systemd `RuntimeDirectory`.
pub(crate) const DEFAULT_CONTROL_PATH: &str = "/run/stackwatch/control";

/// Longest command line accepted. Real commands are a few bytes; the cap only
/// bounds what a broken or hostile writer can make the daemon buffer.
pub(crate) const MAX_LINE: usize = 4096;

/// A control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Start a capture, for this long or the daemon's `--capture-duration`,
    /// of these profiles or the daemon's `--profiles`.
    Start { duration: Option<Duration>, profiles: Option<ProfileSet> },
    /// End the running capture now and write it.
    Stop,
    /// Start if idle, else stop.
    Toggle,
    /// Report the daemon's state.
    Status,
}

impl Command {
    /// The command as one protocol line (without the newline).
    pub(crate) fn to_line(self) -> String {
        match self {
            Command::Start { duration, profiles } => {
                let mut line = "start".to_owned();
                if let Some(d) = duration {
                    line.push_str(&format!(" {}", humantime::format_duration(d)));
                }
                if let Some(profiles) = profiles {
                    line.push_str(&format!(" {profiles}"));
                }
                line
            }
            Command::Stop => "stop".to_owned(),
            Command::Toggle => "toggle".to_owned(),
            Command::Status => "status".to_owned(),
        }
    }
}

/// Why a line is not a command. The daemon logs it and changes nothing.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Blank lines are ignored quietly (`echo >> fifo`).
    #[error("empty line")]
    Empty,
    #[error("the line is not text (it holds control characters or invalid UTF-8)")]
    NotText,
    #[error("the line is longer than {MAX_LINE} bytes; it was discarded")]
    TooLong,
    #[error("unknown command `{0}` (expected `start [DURATION]`, `stop`, `toggle` or `status`)")]
    Unknown(String),
    #[error("`{command}` takes no argument, got `{argument}`")]
    UnexpectedArgument { command: &'static str, argument: String },
    #[error("invalid duration `{value}` for `start`: {reason}")]
    BadDuration { value: String, reason: String },
    #[error("invalid profile list `{value}` for `start`: {reason}")]
    BadProfiles { value: String, reason: String },
}

/// Parses one line (with or without its `\n`/`\r\n`). Words are
/// case-insensitive and may be surrounded by spaces or tabs; everything after
/// `start` is its duration (`start 1m 30s` works).
pub(crate) fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    let text = text.trim_end_matches(['\n', '\r']).trim_matches([' ', '\t']);
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::NotText);
    }
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let (word, rest) = match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim_matches([' ', '\t'])),
        None => (text, ""),
    };
    let no_argument = |command: &'static str, value: Command| {
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(ParseError::UnexpectedArgument { command, argument: shorten(rest) })
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "start" => {
            let (duration, profiles) = parse_start(rest)?;
            Ok(Command::Start { duration, profiles })
        }
        "stop" => no_argument("stop", Command::Stop),
        "toggle" => no_argument("toggle", Command::Toggle),
        "status" => no_argument("status", Command::Status),
        _ => Err(ParseError::Unknown(shorten(word))),
    }
}

/// The arguments of `start`: `[DURATION] [KINDS]`, e.g. `30s`, `1m 30s`,
/// `30s cpu,offcpu` or `memory`. The last word is a profile list when it
/// starts with a letter and what precedes it is a duration (or nothing), so
/// a mistyped duration (`5 parsecs`) is still reported as one.
fn parse_start(rest: &str) -> Result<(Option<Duration>, Option<ProfileSet>), ParseError> {
    let duration = |text: &str| {
        let bad = |reason| ParseError::BadDuration { value: shorten(text), reason };
        crate::units::parse_capture_duration(text).map_err(bad)
    };
    if rest.is_empty() {
        return Ok((None, None));
    }
    let whole = duration(rest);
    if let Ok(d) = whole {
        return Ok((Some(d), None));
    }
    let (head, last) = match rest.rsplit_once([' ', '\t']) {
        Some((head, last)) => (head.trim_matches([' ', '\t']), last),
        None => ("", rest),
    };
    let kinds_like = last.starts_with(|c: char| c.is_ascii_alphabetic())
        && if head.is_empty() { last.contains(',') || ProfileSet::parse(last).is_ok() } else { duration(head).is_ok() };
    if !kinds_like {
        return whole.map(|d| (Some(d), None));
    }
    let profiles =
        ProfileSet::parse(last).map_err(|reason| ParseError::BadProfiles { value: shorten(last), reason })?;
    let d = if head.is_empty() { None } else { Some(duration(head)?) };
    Ok((d, Some(profiles)))
}

/// Cuts user text to a loggable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes. The bytes
/// of an overlong line are dropped as they arrive (one [`ParseError::TooLong`]
/// is reported per such line), so memory never exceeds one `MAX_LINE`.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// Inside an overlong line: drop everything up to the next newline.
    discarding: bool,
}

impl LineSplitter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds `data`; calls `emit` with every complete line (without `\n`) or
    /// with `Err(TooLong)` for each overlong one.
    pub(crate) fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Result<&[u8], ParseError>)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if self.discarding {
                self.discarding = !complete;
                continue;
            }
            if self.buf.len() + chunk.len() > MAX_LINE {
                self.buf.clear();
                self.discarding = !complete;
                emit(Err(ParseError::TooLong));
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if complete {
                emit(Ok(&self.buf));
                self.buf.clear();
            }
        }
    }

    /// Drops the unfinished line, if any (its writer is gone: the next
    /// writer's bytes must not be joined to it), and leaves an overlong one.
    /// Returns the bytes dropped, `None` when no line was unfinished.
    pub(crate) fn drop_partial(&mut self) -> Option<Vec<u8>> {
        let discarding = std::mem::take(&mut self.discarding);
        (discarding || !self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }

    /// Whether bytes of a line without its newline yet were pushed.
    pub(crate) fn has_partial(&self) -> bool {
        self.discarding || !self.buf.is_empty()
    }

    /// Bytes held for an unfinished line (for tests: never above [`MAX_LINE`]).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What the daemon is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DaemonState {
    /// Loaded, nothing attached: samples nothing.
    Idle,
    /// Sampling.
    Capturing,
    /// Sampling ended; symbolizing and writing files.
    Writing,
    /// Finishing the last capture before exiting.
    Stopping,
}

impl std::fmt::Display for DaemonState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DaemonState::Idle => "idle",
            DaemonState::Capturing => "capturing",
            DaemonState::Writing => "writing",
            DaemonState::Stopping => "stopping",
        })
    }
}

/// The running capture, in a status reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaptureStatus {
    pub target: String,
    /// Who started it: `fifo`, `ctl`, `SIGUSR2` or `rule` (a trigger).
    pub source: String,
    /// RFC 3339 start time.
    pub started: String,
    pub elapsed_ms: u64,
    /// Time left before the capture ends by itself.
    pub remaining_ms: u64,
    /// Samples recorded in the kernel so far.
    pub samples: u64,
    /// Why a triggered capture runs (`Trigger::summary`); absent for a
    /// manual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The profiles it records, e.g. `cpu,offcpu`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profiles: String,
}

/// The daemon's answer to one socket request: one JSON object on one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// False when the command failed (`ctl` then exits with 1).
    pub ok: bool,
    /// State after the command.
    pub state: DaemonState,
    /// What happened, for people; may span several lines.
    pub message: String,
    /// Files written by the capture this command ended (`stop`, `toggle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// The running capture, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureStatus>,
    /// Process id of the daemon.
    #[serde(default)]
    pub pid: u32,
    /// The daemon was serving too many `ctl` requests to take this one; it
    /// was not run, so sending it again is safe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

/// The socket `ctl` talks to: the FIFO's path with `.sock` appended.
pub(crate) fn socket_path(control: &Path) -> PathBuf {
    let mut name = control.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileKind;

    #[test]
    fn parses_commands() {
        let start = |duration, profiles| Command::Start { duration, profiles };
        let secs = |n| Some(Duration::from_secs(n));
        let cpu_offcpu = ProfileSet::of(&[ProfileKind::Cpu, ProfileKind::OffCpu]);
        assert_eq!(parse_command(b"start"), Ok(start(None, None)));
        assert_eq!(parse_command(b"start 30s\n"), Ok(start(secs(30), None)));
        assert_eq!(parse_command(b"  START\t1m 30s \r\n"), Ok(start(secs(90), None)));
        assert_eq!(parse_command(b"start 30s cpu,offcpu"), Ok(start(secs(30), Some(cpu_offcpu))));
        assert_eq!(parse_command(b"start 1m 30s\tOFFCPU,cpu"), Ok(start(secs(90), Some(cpu_offcpu))));
        assert_eq!(parse_command(b"start memory"), Ok(start(None, Some(ProfileSet::of(&[ProfileKind::Memory])))));
        assert_eq!(parse_command(b"stop\r\n"), Ok(Command::Stop));
        assert_eq!(parse_command(b"Toggle"), Ok(Command::Toggle));
        assert_eq!(parse_command(b"status  "), Ok(Command::Status));
        for c in [start(None, None), start(Some(Duration::from_millis(1500)), None), start(None, Some(cpu_offcpu))]
            .into_iter()
            .chain([start(secs(2), Some(cpu_offcpu)), Command::Stop, Command::Status])
        {
            assert_eq!(parse_command(c.to_line().as_bytes()), Ok(c));
        }
    }

    #[test]
    fn refuses_malformed_lines_with_a_reason() {
        assert_eq!(parse_command(b""), Err(ParseError::Empty));
        assert_eq!(parse_command(b" \t\r\n"), Err(ParseError::Empty));
        assert_eq!(parse_command(b"frobnicate"), Err(ParseError::Unknown("frobnicate".into())));
        assert_eq!(
            parse_command(b"stop now"),
            Err(ParseError::UnexpectedArgument { command: "stop", argument: "now".into() })
        );
        assert!(matches!(parse_command(b"start 5 parsecs"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start -3s"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start 30"), Err(ParseError::BadDuration { .. })));
        assert!(matches!(parse_command(b"start cpu"), Ok(Command::Start { duration: None, .. })));
        assert!(matches!(parse_command(b"start gpu"), Err(ParseError::BadDuration { .. })));
        assert_eq!(
            parse_command(b"start 30s gpu").unwrap_err().to_string(),
            "invalid profile list `gpu` for `start`: unknown profile kind `gpu` (expected cpu, offcpu or memory)"
        );
        assert!(matches!(parse_command(b"start 30s cpu,,x"), Err(ParseError::BadProfiles { .. })));
        let err = parse_command(b"start 2d").unwrap_err();
        assert_eq!(err.to_string(), "invalid duration `2d` for `start`: captures are limited to 1day");
        assert_eq!(parse_command(b"st\0op"), Err(ParseError::NotText));
        assert_eq!(parse_command(b"\xff\xfe"), Err(ParseError::NotText));
        assert_eq!(parse_command(b"toggle\x1b[2J"), Err(ParseError::NotText));
        assert_eq!(parse_command(&[b'a'; MAX_LINE + 1]), Err(ParseError::TooLong));
        let long = "x".repeat(100);
        let msg = parse_command(long.as_bytes()).unwrap_err().to_string();
        assert!(msg.len() < 200 && msg.contains('…'), "{msg}");
        assert_eq!(
            ParseError::Unknown("go".into()).to_string(),
            "unknown command `go` (expected `start [DURATION]`, `stop`, `toggle` or `status`)"
        );
    }

    /// A small deterministic generator: the fuzz cases are reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut seed = 0x5eed_u64;
        let tokens: &[&[u8]] = &[
            b"start",
            b"stop",
            b"toggle",
            b"status",
            b" ",
            b"1s",
            b"30m",
            b"\r",
            b"\n",
            b"\n",
            b"\t",
            b"\0",
            b"\xff",
            b"\xc3\xa9",
        ];
        let mut splitter = LineSplitter::new();
        let mut commands = 0;
        for round in 0..2000 {
            let len = (xorshift(&mut seed) % 300) as usize;
            let mut bytes: Vec<u8> = Vec::with_capacity(len);
            while bytes.len() < len {
                let r = xorshift(&mut seed);
                if round % 2 == 0 {
                    bytes.push(r as u8);
                } else {
                    bytes.extend_from_slice(tokens[(r as usize) % tokens.len()]);
                }
            }
            let _ = parse_command(&bytes);
            splitter.push(&bytes, |line| {
                if let Ok(line) = line {
                    assert!(line.len() <= MAX_LINE);
                    if parse_command(line).is_ok() {
                        commands += 1;
                    }
                }
            });
            assert!(splitter.buffered() <= MAX_LINE);
        }
        assert!(commands > 0, "the alphabet rounds should produce some valid commands");
    }

    fn split_all(chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, ParseError>> {
        let mut splitter = LineSplitter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |r| out.push(r.map(<[u8]>::to_vec)));
        }
        out
    }

    #[test]
    fn a_dropped_partial_line_is_not_joined_to_the_next() {
        let mut splitter = LineSplitter::new();
        let mut out = Vec::new();
        splitter.push(b"bogus", |r| out.push(r.map(<[u8]>::to_vec)));
        assert!(out.is_empty() && splitter.has_partial());
        assert_eq!(splitter.drop_partial(), Some(b"bogus".to_vec()));
        assert!(!splitter.has_partial() && splitter.drop_partial().is_none());
        splitter.push(b"status\n", |r| out.push(r.map(<[u8]>::to_vec)));
        assert_eq!(out, vec![Ok(b"status".to_vec())]);
        // The rest of an overlong line is no longer waited for either.
        out.clear();
        splitter.push(&vec![b'x'; MAX_LINE + 1], |r| out.push(r.map(<[u8]>::to_vec)));
        assert_eq!(splitter.drop_partial(), Some(Vec::new()));
        splitter.push(b"stop\n", |r| out.push(r.map(<[u8]>::to_vec)));
        assert_eq!(out, vec![Err(ParseError::TooLong), Ok(b"stop".to_vec())]);
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(
            split_all(&[b"tog", b"gle\nsta", b"tus\r\n\n", b"stop"]),
            vec![Ok(b"toggle".to_vec()), Ok(b"status\r".to_vec()), Ok(Vec::new())]
        );
    }

    #[test]
    fn overlong_lines_are_reported_once_and_discarded() {
        let big = vec![b'x'; 1 << 20];
        let out = split_all(&[b"status\n", &big[..600_000], &big[600_000..], b"tail\ntoggle\n"]);
        assert_eq!(out, vec![Ok(b"status".to_vec()), Err(ParseError::TooLong), Ok(b"toggle".to_vec())]);
        // Exactly MAX_LINE bytes is still a line.
        let exact = vec![b'y'; MAX_LINE];
        let out = split_all(&[&exact, b"\n"]);
        assert_eq!(out, vec![Ok(exact)]);
        // An overlong line ending in the same chunk leaves nothing to discard.
        let mut chunk = vec![b'z'; MAX_LINE + 1];
        chunk.extend_from_slice(b"\nstop\n");
        assert_eq!(split_all(&[&chunk]), vec![Err(ParseError::TooLong), Ok(b"stop".to_vec())]);
    }

    #[test]
    fn replies_round_trip_as_one_json_line() {
        let reply = Reply {
            ok: true,
            state: DaemonState::Idle,
            message: "capture written".into(),
            files: vec![PathBuf::from("/var/lib/stackwatch/a.pb.gz")],
            capture: None,
            pid: 42,
            busy: false,
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""state":"idle""#), "{line}");
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
        assert_eq!(socket_path(Path::new("/run/stackwatch/control")), Path::new("/run/stackwatch/control.sock"));
    }
}
