//! The terminal of `stackwatch top`, with plain ANSI sequences: the
//! alternate screen (so the shell's screen comes back as it was), no
//! cursor, no echo, keys read one by one. [`Screen`] restores all of it
//! when dropped, on `q`, Ctrl-C, SIGTERM or an error alike.
//!
//! No TUI crate: the view is one table redrawn in place, which is a handful
//! of escape sequences, and `Ctrl-C` stays a signal (`ISIG` is kept) that
//! the command handles like `q`.

use std::io::{self, Write as _};
use std::os::fd::{AsRawFd as _, RawFd};

use anyhow::{Context as _, Result};

/// Enter the alternate screen, hide the cursor.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor, leave the alternate screen.
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// The terminal while `top` draws on it.
pub(crate) struct Screen {
    stdin: RawFd,
    saved: Option<libc::termios>,
}

impl Screen {
    /// Switches the terminal to the view: keys unbuffered and not echoed
    /// (when stdin is a terminal), the alternate screen, no cursor.
    pub(crate) fn enter() -> Result<Self> {
        let stdin = io::stdin().as_raw_fd();
        // SAFETY: an all-zero termios is a valid value to be overwritten.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to fill.
        let saved = if unsafe { libc::tcgetattr(stdin, &raw mut saved) } == 0 {
            let mut raw = saved;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            // SAFETY: `raw` is a valid termios.
            if unsafe { libc::tcsetattr(stdin, libc::TCSANOW, &raw const raw) } != 0 {
                return Err(io::Error::last_os_error()).context("cannot set up the terminal");
            }
            Some(saved)
        } else {
            // stdin is not a terminal: keys cannot be read, Ctrl-C still works.
            None
        };
        let screen = Self { stdin, saved };
        let mut out = io::stdout().lock();
        out.write_all(ENTER.as_bytes()).and_then(|()| out.flush()).context("cannot write to the terminal")?;
        Ok(screen)
    }

    /// Whether keys can be read (stdin is the terminal).
    pub(crate) fn reads_keys(&self) -> bool {
        self.saved.is_some()
    }

    /// Draws `lines` from the top left corner, clearing what is left of
    /// each line and below the last.
    pub(crate) fn draw(&self, lines: &[String]) -> Result<()> {
        let mut frame = String::from("\x1b[H");
        for line in lines {
            frame.push_str(line);
            frame.push_str("\x1b[K\r\n");
        }
        frame.push_str("\x1b[J");
        let mut out = io::stdout().lock();
        out.write_all(frame.as_bytes()).and_then(|()| out.flush()).context("cannot write to the terminal")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(LEAVE.as_bytes()).and_then(|()| out.flush());
        if let Some(saved) = &self.saved {
            // SAFETY: `saved` is the termios read at entry.
            unsafe { libc::tcsetattr(self.stdin, libc::TCSANOW, saved) };
        }
    }
}

/// Columns and rows of the terminal on stdout, if it is one.
pub(crate) fn size() -> Option<(usize, usize)> {
    // SAFETY: an all-zero winsize is valid; the ioctl fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer.
    let ok = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &raw mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then(|| (usize::from(ws.ws_col), usize::from(ws.ws_row)))
}
