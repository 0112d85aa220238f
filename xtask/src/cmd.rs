//! Running external commands: every command is echoed as a copy-pasteable
//! shell line before it runs, and a failure names that exact line.

use std::ffi::OsStr;
use std::io::{self, Read as _, Write as _};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

/// The command as a shell line: explicitly set environment variables, the
/// program and its arguments, quoted where needed.
pub fn display(cmd: &Command) -> String {
    let mut words = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        words.push(format!("cd {} &&", quote(dir.as_os_str())));
    }
    // `env -u NAME…` (options first), or plain `NAME=value` prefixes.
    let unset: Vec<String> =
        cmd.get_envs().filter(|(_, value)| value.is_none()).map(|(key, _)| format!("-u {}", quote(key))).collect();
    if !unset.is_empty() {
        words.push("env".to_owned());
        words.extend(unset);
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            words.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

/// Quotes one word for bash: bare when safe, `'…'` in general, `$'…'` when
/// it holds control characters (like the 0x1f separators of
/// `CARGO_ENCODED_RUSTFLAGS`).
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.into_owned();
    }
    if word.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in word.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Echoes and runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd.status().with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; fails unless it exits 0.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let output = cmd.stdin(Stdio::null()).output().with_context(|| format!("failed to start `{line}`"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Totals of libtest's `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestCounts {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; …` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let mut previous = None;
        for word in rest.split_whitespace() {
            let word = word.trim_end_matches(';');
            let count = previous.and_then(|p: &str| p.parse::<u64>().ok());
            if let Some(count) = count {
                match word {
                    "passed" => self.passed += count,
                    "failed" => self.failed += count,
                    "ignored" => self.ignored += count,
                    _ => {}
                }
            }
            previous = Some(word);
        }
    }
}

/// Echoes and runs a `cargo test` command, passing its stdout through as it
/// comes while adding up the `test result:` lines. The counts are returned
/// along with the outcome, so a failed run still reports what it counted.
pub fn run_tests(cmd: &mut Command) -> (TestCounts, Result<()>) {
    let line = display(cmd);
    eprintln!("$ {line}");
    let mut counts = TestCounts::default();
    let mut child = match cmd.stdout(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(err) => return (counts, Err(err).context(format!("failed to start `{line}`"))),
    };
    if let Some(mut pipe) = child.stdout.take() {
        let mut out = io::stdout();
        let mut pending = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // Pass bytes through at once: libtest prints `test x ... ` and
            // only later `ok`, which should not wait for the newline.
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                counts.add_line(&String::from_utf8_lossy(&pending[..end]));
                pending.drain(..=end);
            }
        }
        counts.add_line(&String::from_utf8_lossy(&pending));
    }
    let result = match child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(anyhow::anyhow!("`{line}` failed ({status})")),
        Err(err) => Err(err).context(format!("failed to wait for `{line}`")),
    };
    (counts, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_like_a_shell() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--features", "", "it's"])
            .env("CARGO_ENCODED_RUSTFLAGS", "-Ca\x1f-Cb")
            .env("DEBIAN_FRONTEND", "noninteractive");
        assert_eq!(
            display(&cmd),
            "CARGO_ENCODED_RUSTFLAGS=$'-Ca\\x1f-Cb' DEBIAN_FRONTEND=noninteractive \
             cargo build --features '' 'it'\\''s'"
        );
        cmd.env_remove("RUSTC").current_dir("/w s");
        assert_eq!(
            display(&cmd),
            "cd '/w s' && env -u RUSTC CARGO_ENCODED_RUSTFLAGS=$'-Ca\\x1f-Cb' \
             DEBIAN_FRONTEND=noninteractive cargo build --features '' 'it'\\''s'"
        );
    }

    #[test]
    fn adds_up_libtest_result_lines() {
        let mut counts = TestCounts::default();
        counts
            .add_line("test result: ok. 10 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.24s");
        counts.add_line("test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out");
        counts.add_line("test foo ... ok");
        assert_eq!(counts, TestCounts { passed: 15, failed: 1, ignored: 2 });
    }
}
