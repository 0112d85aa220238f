//! The error of a command line or config file that is well-formed but asks
//! for something stackwatch cannot do.

/// A command line that is well-formed but asks for something stackwatch
/// cannot do. `main` exits with 2 for it, as for clap's own usage errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
