//! The subcommands, each on the layers below it and none on another:
//! `record` (one capture) and `watch` (the daemon, `crate::watch`) share the
//! capture pipeline, `ctl` talks to a daemon over the control protocol,
//! `doctor` checks the host and `diff` compares two pprof files.

pub mod ctl;
pub mod diff;
pub mod doctor;
pub mod dump;
pub mod record;
pub mod top;
pub mod watch;
