//! stackwatch: an eBPF whole-host sampling profiler.
//!
//! The data path is one module per stage, talking through typed values:
//! `cli` → `config` → `loader` (owns the eBPF object, links and maps) →
//! `collect` (drains the maps) → `aggregate` → `symbolize` → `output`.
//! `record` wires them for one capture; `doctor` checks the host.

pub mod aggregate;
pub mod capture;
pub mod cli;
pub mod collect;
pub mod config;
pub mod cputime;
pub mod doctor;
pub mod loader;
pub mod output;
pub mod profile;
pub mod record;
pub mod symbolize;
pub mod target;
pub mod units;
