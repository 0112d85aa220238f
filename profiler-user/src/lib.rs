//! stackwatch: an eBPF whole-host sampling profiler.
//!
//! Layers, lowest first; a module uses only the ones before it, so data
//! flows one way, kernel → bpf → aggregate → symbolize → profile → sink:
//!
//! ```text
//! units, sys, ids, addr     values, OS facts, ids and address kinds
//! metrics                   the daemon's Prometheus metrics (atomics; a leaf)
//! procfs, objfile, unwind   one reader per /proc source; ELF, Go tables, debug files; the unwinder seam
//! python                    CPython frames read from a live process (runtime reader)
//! runtime                   what a process runs (Go, CPython, Node, JVM, native) and its stacks' facts
//! profile                   the profile model, capture metadata, the pure encoders
//! target                    what to profile: --pid, --name, --cgroup, host
//! bpf                       the eBPF object: load, attach, maps, drain
//! aggregate                 drained maps → samples with frames (pure)
//! kinds                     per profile kind: programs, drain, values, losses (cpu, offcpu, memory)
//! symbolize                 addresses → functions, files, lines
//! dump                      every thread's kernel and user stack of one process, once
//! pipeline                  the capture session and finish, shared by record and watch
//! history                   the flight recorder: low-rate samples in time slots, named at a capture
//! sink                      where finished captures go: files in a directory, a Pyroscope push
//! live                      `top`: the CPU counts taken every refresh, the table, the terminal
//! triggers, control         threshold rules and target sampling; the control protocol
//! cli, config               the command line, validated with the config file
//! watch                     the daemon: state machine, FIFO and socket, writer
//! commands                  record, watch, ctl, doctor, dump
//! ```
//!
//! The binary (`main.rs`) parses the command line and runs a command; the
//! benchmark harness (`stackwatch-bench`) drives the symbolizer directly
//! through the items re-exported here.

pub(crate) mod addr;
pub(crate) mod aggregate;
pub(crate) mod bpf;
pub mod cli;
pub mod commands;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod dump;
pub(crate) mod history;
pub(crate) mod ids;
pub(crate) mod kinds;
pub(crate) mod live;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod objfile;
pub(crate) mod pipeline;
pub(crate) mod procfs;
pub(crate) mod profile;
pub mod python;
pub(crate) mod runtime;
pub(crate) mod sink;
pub(crate) mod symbolize;
pub(crate) mod sys;
pub(crate) mod target;
pub(crate) mod triggers;
pub(crate) mod units;
pub(crate) mod unwind;
pub(crate) mod watch;

pub use aggregate::{Aggregate, Frames, PyFrame, RawSample};
pub use config::UsageError;
pub use ids::{Pid, Tid};
pub use procfs::maps::{parse_maps, MapsEntry};
pub use profile::Profile;
pub use symbolize::{CacheStats, Symbolizer, SymbolizerStats};
pub use sys::one_malloc_arena;
pub use target::TargetError;
pub use unwind::{build_table, TableSize};
