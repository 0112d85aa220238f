//! stackwatch: an eBPF whole-host sampling profiler.
//!
//! The data path is one module per stage, talking through typed values:
//! `cli` → `config` → `loader` (owns the eBPF object, links and maps) →
//! `collect` (drains the maps) → `aggregate` → `symbolize` → `output`.
//! `record` wires them for one capture; `watch` (`daemon`, with `control`
//! and `retention`) keeps them loaded and captures on command; `ctl` talks to
//! it; `doctor` checks the host.

pub mod aggregate;
pub mod alloc;
pub mod capture;
pub mod cli;
pub mod collect;
pub mod config;
pub mod control;
pub mod cputime;
pub mod ctl;
pub mod daemon;
pub mod daemon_config;
pub mod dirs;
pub mod doctor;
pub mod kinds;
pub mod loader;
pub mod metrics;
pub mod monitor;
pub mod output;
pub mod profile;
pub mod python;
pub mod record;
pub mod retention;
pub mod symbolize;
pub mod target;
pub mod units;
