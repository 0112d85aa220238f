//! The kernel side as user space sees it: the embedded eBPF object, loaded
//! with a target filter ([`loader`]), its programs attached to their events
//! and detached again ([`links`]), typed access to its maps ([`maps`]),
//! what a capture left in them, drained as plain data ([`drain`]) or taken
//! while sampling goes on, for a live view ([`live`]), the unwind tables
//! the table-driven user-stack walk reads, kept matching the sampled
//! processes by a thread of their own ([`tables`]), and the flight
//! recorder's own sampler and ring buffer ([`history`]).
//!
//! It knows which programs and maps the object has, not what profile kinds
//! make of them: that is `crate::kinds`.

mod btf;
pub(crate) mod drain;
pub(crate) mod history;
pub(crate) mod links;
pub(crate) mod live;
pub(crate) mod loader;
pub(crate) mod maps;
pub(crate) mod tables;

pub(crate) use drain::{Counted, RawCapture};
pub(crate) use history::HistorySource;
pub(crate) use links::{Detaching, UprobeSite};
pub(crate) use loader::{enable_run_stats, Loader, Programs, UnwindMode};
pub(crate) use maps::{Seen, Stats};
