//! The table unwinder's state between frames (`crate::unwind`), apart from
//! the unwinder so the maps that hold it (`crate::maps::UNWIND_WALK`,
//! `crate::maps::THREAD_BASES`) do not depend on the unwinder.

use profiler_common::{unwind::ExecMapping, Fold};

/// Frames of a thread's last walk kept in its [`ThreadBase`] (the
/// outermost ones; a power of two: the walk writes them round-robin).
pub(crate) const BASE_FRAMES: usize = 32;
/// Stack reads of that walk kept (a power of two, as above): a frame reads
/// one to three words, usually one pair.
pub(crate) const BASE_READS: usize = 64;
/// [`BaseRead::addr`]: the read took two words (`v[1]` holds the second).
pub(crate) const READ_PAIR: u64 = 1 << 63;

/// [`Walk::flags`]: at least one frame was unwound with frame pointers.
pub(crate) const FELL_BACK: u32 = 1;
/// [`Walk::flags`]: `bp` holds nothing the walk can trust.
pub(crate) const BP_UNKNOWN: u32 = 2;
/// [`Walk::flags`]: `pc` is where the frame is, not a return address.
pub(crate) const PC_EXACT: u32 = 4;
/// [`Walk::flags`]: the walk starts at a function's first instruction (an
/// entry probe): nothing pushed yet, the return address is at `sp`.
pub(crate) const AT_ENTRY: u32 = 8;
/// The flags a frame's step depends on (with its registers).
pub(crate) const STEP_FLAGS: u32 = BP_UNKNOWN | PC_EXACT | AT_ENTRY;

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
    /// The frames stored so far hashed (`crate::record::hash_frame`).
    pub(crate) hash: u64,
    pub(crate) pid: u32,
    /// Frames stored so far.
    pub(crate) len: u32,
    /// A `Truncation` once the walk stopped early.
    pub(crate) reason: u32,
    pub(crate) flags: u32,
    pub(crate) mode: u32,
    /// The thread (its [`ThreadBase`] key).
    pub(crate) tid: u32,
    /// The mapping the previous frame was in (`end` 0: none yet): callers
    /// are mostly in the same file, and this skips the process lookup and
    /// the search of its mappings.
    pub(crate) last: ExecMapping,
    /// Stack reads so far (each logged in `BASE_BUILD`).
    pub(crate) reads: u32,
    /// 1 while the thread's [`ThreadBase`] may still match a frame.
    pub(crate) base_live: u32,
    /// 1 once the walk took its outer frames from the [`ThreadBase`].
    pub(crate) base_used: u32,
    /// [`ThreadBase::bp_use`] of this walk so far.
    pub(crate) bp_use: u32,
    /// 1 if this walk may replace the thread's base (it has none, or one
    /// kept long enough ago).
    pub(crate) may_keep: u32,
    /// Index (in the base's walk) of the frame [`Walk::anchor`] is.
    pub(crate) anchor_index: u32,
    /// The base's frame this walk may meet next: compared at every frame,
    /// the base itself is looked up only once the walk reaches its `sp`.
    pub(crate) anchor: BaseFrame,
    /// `crate::base::meet`'s loop counters.
    pub(crate) m: WalkMeet,
    /// Code whose frames are stored folded (a Python process's
    /// interpreter loop; `Fold::NONE` elsewhere).
    pub(crate) fold: Fold,
}

/// The counters of the loops that compare a walk with its base: kept in
/// the walk's map value so the verifier sees them as unknown at each
/// iteration (see [`Walk`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct WalkMeet {
    /// Where the copy of the stack starts.
    pub(crate) lo: u64,
    /// Bytes copied (0: none).
    pub(crate) size: u32,
    /// The next read of the base to compare, and the end of them.
    pub(crate) next: u32,
    pub(crate) end: u32,
    /// The base's frame looked at or copied next.
    pub(crate) k: u32,
    /// Frames left to copy.
    pub(crate) left: u32,
    /// How the last loop ended (`crate::base`'s `SEEKING`, `FOUND`, …).
    pub(crate) state: u32,
}

/// One frame of a walk as the unwinder met it: the registers and flags its
/// step started from, and the number of stack reads before that step.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct BaseFrame {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
    pub(crate) flags: u32,
    pub(crate) first_read: u32,
}

/// One read of stack memory: where (with [`READ_PAIR`]) and what it gave.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct BaseRead {
    pub(crate) addr: u64,
    pub(crate) v: [u64; 2],
}

/// A thread's last complete table walk: the outer frames of its stack
/// (round-robin by frame index) and the stack words the walk read for
/// them (round-robin by read index).
///
/// The walk from a frame on is a function of that frame's registers and
/// flags, the rules of its pcs and the words it reads. A later walk of the
/// thread that reaches a frame with equal registers and flags, and finds
/// every word the base's walk read from that frame on unchanged, would
/// compute the same frames: it takes them from here instead.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ThreadBase {
    /// Frames of the walk (the kept ones are the last [`BASE_FRAMES`]).
    pub(crate) len: u32,
    /// Reads of the walk (the kept ones are the last [`BASE_READS`]).
    pub(crate) reads: u32,
    /// Where the thread's walks last met this base: where the next one
    /// starts to compare.
    pub(crate) anchor: u32,
    /// 1 + the index of the walk's last frame whose CFA came from `rbp`
    /// (0: none). Beyond it `rbp` is never used, so a frame's `bp` matters
    /// to the frames after it only below this.
    pub(crate) bp_use: u32,
    /// When this base was kept (`bpf_ktime_get_ns`).
    pub(crate) kept_ns: u64,
    pub(crate) frames: [BaseFrame; BASE_FRAMES],
    pub(crate) read_log: [BaseRead; BASE_READS],
}
