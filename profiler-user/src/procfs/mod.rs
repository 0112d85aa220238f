//! One reader and one parser per `/proc` (and cgroupfs, sysfs) source, for
//! every module that asks a process or the host something: which module
//! needs what is the caller's business, how each file is laid out is only
//! this one's.
//!
//! Parsers are pure functions on the file's text, tested on literal
//! strings; `None` means "not there or not understood", which callers treat
//! as "no value", never as zero. Readers are the parser applied to the file
//! of a live process, `None` when it is gone.

pub mod cgroup;
pub mod cputime;
pub mod host;
pub mod maps;
pub mod mountinfo;
pub mod process;
pub mod stat;
pub mod status;
