//! The table unwinder's state between frames (`crate::unwind`), apart from
//! the unwinder so the map that holds it (`crate::maps::UNWIND_WALK`) does
//! not depend on the unwinder.

use profiler_common::unwind::ExecMapping;

/// The walk's state between frames. It lives in a per-CPU map, not on the
/// stack handed to `bpf_loop` as its context: the verifier then sees
/// unknown values at each frame and checks the callback once, instead of
/// following the state from iteration to iteration (which made loading
/// take ~0.15 s of CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Walk {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
    pub(crate) now: u64,
    pub(crate) pid: u32,
    /// Frames stored so far.
    pub(crate) len: u32,
    /// A `Truncation` once the walk stopped early.
    pub(crate) reason: u32,
    pub(crate) flags: u32,
    pub(crate) mode: u32,
    pub(crate) _pad: u32,
    /// The mapping the previous frame was in (`end` 0: none yet): callers
    /// are mostly in the same file, and this skips the process lookup and
    /// the search of its mappings.
    pub(crate) last: ExecMapping,
}
