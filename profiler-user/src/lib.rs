//! stackwatch: an eBPF whole-host sampling profiler.
//!
//! The data path is one module per stage, talking through typed values:
//! `cli` → `config` → `loader` (owns the eBPF object, links and maps) →
//! `collect` (drains the maps) → `aggregate` → `symbolize` → `output`.
//! `record` wires them for one capture; `watch` (`daemon`, with `control`
//! and `retention`) keeps them loaded and captures on command; `ctl` talks to
//! it; `doctor` checks the host.

pub mod addr;
pub mod aggregate;
pub mod bpf;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod ids;
pub mod kinds;
pub mod objfile;
pub mod pipeline;
pub mod procfs;
pub mod profile;
pub mod sink;
pub mod symbolize;
pub mod sys;
pub mod target;
pub mod triggers;
pub mod units;
pub mod watch;
