//! Where finished captures go. The capture pipeline hands each one to a
//! [`Sink`], which writes, pushes or keeps it: files in a directory
//! ([`dir::DirSink`], with atomic no-clobber [`files`] and [`retention`]),
//! a push to Grafana Pyroscope ([`push::PushSink`], spooled so it never
//! blocks or loses a capture), or both ([`Fanout`]).

pub(crate) mod dir;
pub(crate) mod files;
pub(crate) mod push;
pub(crate) mod retention;

pub(crate) use dir::DirSink;

use std::path::PathBuf;

use anyhow::anyhow;

use crate::profile::capture::FinishedCapture;

/// Takes finished captures somewhere.
pub(crate) trait Sink: Send + Sync {
    /// Hands over one capture. `Err` only when nothing could be attempted
    /// (the directory cannot be opened); otherwise [`Written`] says what was
    /// kept and what was not, and why.
    fn write(&self, capture: &FinishedCapture) -> anyhow::Result<Written>;
}

/// Several sinks, in order: the capture goes to each (files first, then
/// the push), and what they kept is reported together. `Err` only when
/// every sink failed to attempt anything.
pub(crate) struct Fanout(pub Vec<std::sync::Arc<dyn Sink>>);

impl Sink for Fanout {
    fn write(&self, capture: &FinishedCapture) -> anyhow::Result<Written> {
        let mut all = Written::default();
        let mut first_error = None;
        let mut attempted = false;
        for sink in &self.0 {
            match sink.write(capture) {
                Ok(written) => {
                    attempted = true;
                    all.paths.extend(written.paths);
                    all.failed.extend(written.failed);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if !attempted => Err(e),
            Some(e) => {
                all.failed.push(FailedFile { path: PathBuf::new(), reason: format!("{e:#}") });
                Ok(all)
            }
            None => Ok(all),
        }
    }
}

/// A file of a capture that could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailedFile {
    /// Where it would have been.
    pub path: PathBuf,
    /// Why not: the error with its causes.
    pub reason: String,
}

/// What a sink kept of a capture and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Files written, in order; the manifest last when it was written.
    pub paths: Vec<PathBuf>,
    /// Files that could not be written, with the reason.
    pub failed: Vec<FailedFile>,
}

impl Written {
    /// Why the capture is incomplete, naming every file that failed and
    /// what was kept; `None` when every file was written.
    pub(crate) fn error(&self) -> Option<anyhow::Error> {
        let first = self.failed.first()?;
        if self.paths.is_empty() {
            // Usually one cause for all (a read-only or vanished directory).
            return Some(anyhow!("{}", first.reason));
        }
        let failed: Vec<&str> = self.failed.iter().map(|f| f.reason.as_str()).collect();
        let kept: Vec<String> = self.paths.iter().map(|p| format!("`{}`", p.display())).collect();
        Some(anyhow!("{}; kept {}", failed.join("; "), kept.join(", ")))
    }

    /// The paths when every file was written, else [`Written::error`].
    #[cfg(test)]
    pub(crate) fn into_result(self) -> anyhow::Result<Vec<PathBuf>> {
        match self.error() {
            Some(err) => Err(err),
            None => Ok(self.paths),
        }
    }
}
