//! The subcommands, each on the layers below it and none on another:
//! `record` (one capture) and `watch` (the daemon, `crate::watch`) share the
//! capture pipeline, `ctl` talks to a daemon over the control protocol, and
//! `doctor` checks the host.

pub mod ctl;
pub mod doctor;
pub mod dump;
pub mod record;
pub mod top;
pub mod watch;
