//! `stackwatch top`: the hottest functions, live (`crate::live`), redrawn
//! every `--interval` on the terminal until `q`, Ctrl-C or SIGTERM; or, with
//! `--once`, one plain table after one interval, for a pipe or a script.
//!
//! Without `--once` stdout must be a terminal: escape sequences in a file or
//! a pipe are noise, so `top` refuses with the hint instead of guessing.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::time::Instant;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::cli::TopArgs;
use crate::config::{target_spec, UsageError};
use crate::live::table::Header;
use crate::live::term::{self, Screen};
use crate::live::LiveTop;

/// Rows `--once` prints.
const ONCE_ROWS: usize = 25;

/// Width `--once` cuts lines to when stdout is not a terminal.
const PLAIN_WIDTH: usize = 160;

pub async fn run(args: &TopArgs) -> Result<()> {
    if !args.once && !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "`stackwatch top` draws on a terminal and stdout is not one; add `--once` to print one table, \
             or use `stackwatch record` for a capture"
                .to_owned(),
        )
        .into());
    }
    let spec = target_spec(&args.target);
    let mut live = LiveTop::start(&spec, args.frequency)?;
    let started = Instant::now();
    if args.once {
        tokio::time::sleep(args.interval).await;
        live.refresh(args.interval)?;
        let width = term::size().map_or(PLAIN_WIDTH, |(cols, _)| cols);
        let lines = live.table.render(&header(&live, args, started), width, 3 + ONCE_ROWS);
        let mut out = std::io::stdout().lock();
        for line in lines {
            writeln!(out, "{line}")?;
        }
        drop(out);
        return live.stop();
    }

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let screen = Screen::enter()?;
    let mut keys = read_keys(&screen);
    let draw = |live: &LiveTop, screen: &Screen| {
        let (width, height) = term::size().unwrap_or((80, 24));
        screen.draw(&live.table.render(&header(live, args, started), width, height.saturating_sub(1)))
    };
    draw(&live, &screen)?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            key = keys.recv(), if stdin_open => match key {
                Some(b'q' | b'Q') => break,
                Some(_) => {}
                // stdin closed: only a signal ends it now.
                None => stdin_open = false,
            },
            _ = ticker.tick() => {
                live.refresh(args.interval)?;
                draw(&live, &screen)?;
            }
        }
    }
    // The terminal first, then the (possibly slower) detach.
    drop(screen);
    live.stop()
}

fn header<'a>(live: &'a LiveTop, args: &TopArgs, started: Instant) -> Header<'a> {
    Header {
        target: live.description(),
        frequency_hz: args.frequency,
        elapsed: started.elapsed(),
        interval: args.interval,
        lost: live.lost(),
    }
}

/// Keys typed on the terminal, one byte each, from a thread blocked in
/// `read` (it ends with the process). Nothing when stdin is not the
/// terminal.
fn read_keys(screen: &Screen) -> mpsc::UnboundedReceiver<u8> {
    let (tx, rx) = mpsc::unbounded_channel();
    if screen.reads_keys() {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdin.read(&mut byte) {
                if tx.send(byte[0]).is_err() {
                    break;
                }
            }
        });
    }
    rx
}
