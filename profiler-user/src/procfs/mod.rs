//! One reader and one parser per `/proc` (and cgroupfs, sysfs) source, for
//! every module that asks a process or the host something: which module
//! needs what is the caller's business, how each file is laid out is only
//! this one's.
//!
//! Parsers are pure functions on the file's text, tested on literal
//! strings; `None` means "not there or not understood", which callers treat
//! as "no value", never as zero. Readers are the parser applied to the file
//! of a live process, `None` when it is gone.

pub(crate) mod cgroup;
pub(crate) mod cputime;
pub(crate) mod host;
pub(crate) mod maps;
pub(crate) mod mountinfo;
pub(crate) mod pins;
pub(crate) mod process;
pub(crate) mod stat;
pub(crate) mod status;
