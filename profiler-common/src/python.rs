//! CPython's memory layout, as the eBPF program and the user-space reader
//! both need it to walk a thread's interpreter frames.
//!
//! CPython has no frame pointers through its bytecode and keeps the Python
//! call stack in its own structures: a thread state (found through the
//! thread's `pthread_getspecific` slot) points at the innermost frame, and
//! frames link to their callers. Where those fields sit changes with every
//! minor version, so user space detects the version of each Python process,
//! fills a [`PyProcInfo`] (its [`PyOffsets`] plus the process's addresses)
//! and hands it over in a map keyed by pid; nothing here is compiled in per
//! version. Offsets are `u16`: the largest, in 3.13's interpreter state, is
//! about 7.3 KiB.

use core::mem::size_of;

/// `PyOffsets::lasti_kind`: `f_lasti` is an `int` byte offset (3.8, 3.9).
pub const PY_LASTI_BYTES: u8 = 0;
/// `PyOffsets::lasti_kind`: `f_lasti` is an `int` index in code units of two
/// bytes (3.10).
pub const PY_LASTI_CODE_UNITS: u8 = 1;
/// `PyOffsets::lasti_kind`: the frame holds a pointer into the code object's
/// inline bytecode (`prev_instr` in 3.11/3.12, `instr_ptr` in 3.13); the
/// instruction index is `(ptr - code - code_adaptive) / 2`.
pub const PY_LASTI_POINTER: u8 = 2;

/// `PyOffsets::entry_kind`: every `_PyEval_EvalFrameDefault` call runs
/// exactly one Python frame (3.8–3.10).
pub const PY_ENTRY_EACH_FRAME: u8 = 0;
/// `PyOffsets::entry_kind`: the first frame a `_PyEval_EvalFrameDefault`
/// call runs has the byte at `frame_entry` set (3.11's `is_entry`); it is
/// the last Python frame of that native call.
pub const PY_ENTRY_FLAG: u8 = 1;
/// `PyOffsets::entry_kind`: each `_PyEval_EvalFrameDefault` call pushes a
/// shim frame on the C stack whose byte at `frame_entry` (`owner`) equals
/// `owner_cstack` (3.12+). The shim is not a Python frame: the walk skips
/// it, and the frames above it belong to the next native call.
pub const PY_ENTRY_SHIM: u8 = 2;

/// Field offsets of one CPython minor version (x86-64, default build: no
/// `Py_DEBUG`, no free threading). An offset of 0 for a field that is not
/// at the start of its struct means "absent in this version" (e.g.
/// `code_qualname` before 3.11).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyOffsets {
    /// `(major << 8) | minor`, e.g. `0x030b` for 3.11.
    pub version: u16,
    /// One of `PY_LASTI_*`.
    pub lasti_kind: u8,
    /// One of `PY_ENTRY_*`.
    pub entry_kind: u8,
    /// 1 when `tstate_frame` points to a `_PyCFrame` whose
    /// `cframe_current_frame` is the innermost frame (3.11, 3.12).
    pub tstate_frame_is_cframe: u8,
    /// Value of `owner` that marks the C-stack shim (`FRAME_OWNED_BY_CSTACK`).
    pub owner_cstack: u8,

    /// `_PyRuntimeState.interpreters.head`.
    pub runtime_interpreters_head: u16,
    /// The `pthread_key_t` of `autoTSSkey` (`Py_tss_t._key`) in
    /// `_PyRuntimeState`: the key under which each thread's state is stored.
    pub runtime_tss_key: u16,
    /// `PyInterpreterState.next`.
    pub interp_next: u16,
    /// `PyInterpreterState.tstate_head` (3.8–3.10) / `.threads.head`.
    pub interp_threads_head: u16,

    /// `PyThreadState.next`.
    pub tstate_next: u16,
    /// `PyThreadState.interp`.
    pub tstate_interp: u16,
    /// `PyThreadState.frame` (3.8–3.10), `.cframe` (3.11, 3.12) or
    /// `.current_frame` (3.13).
    pub tstate_frame: u16,
    /// `_PyCFrame.current_frame` (3.11, 3.12).
    pub cframe_current_frame: u16,
    /// `PyThreadState.thread_id` (`pthread_self()` of the thread).
    pub tstate_thread_id: u16,
    /// `PyThreadState.native_thread_id` (the kernel tid; 3.11+).
    pub tstate_native_thread_id: u16,

    /// `f_code` (3.8–3.12) / `f_executable` (3.13) of the frame.
    pub frame_code: u16,
    /// `f_back` (3.8–3.10) / `previous`.
    pub frame_previous: u16,
    /// `f_lasti` (3.8–3.10) / `prev_instr` (3.11, 3.12) / `instr_ptr` (3.13).
    pub frame_lasti: u16,
    /// `is_entry` (3.11) / `owner` (3.12+), see `entry_kind`.
    pub frame_entry: u16,
    /// Bytes of the frame struct the walk reads (covers every field above).
    pub frame_size: u16,

    /// `PyCodeObject.co_filename`.
    pub code_filename: u16,
    /// `PyCodeObject.co_name`.
    pub code_name: u16,
    /// `PyCodeObject.co_qualname` (3.11+).
    pub code_qualname: u16,
    /// `PyCodeObject.co_firstlineno` (`int`).
    pub code_firstlineno: u16,
    /// `co_lnotab` (3.8, 3.9) / `co_linetable` (3.10+): a bytes object.
    pub code_linetable: u16,
    /// `PyCodeObject.co_code` (3.8–3.10): the bytecode, a bytes object.
    pub code_code: u16,
    /// `PyCodeObject.co_code_adaptive` (3.11+): the inline bytecode.
    pub code_adaptive: u16,
    /// Bytes of the code object the reader fetches at once (covers every
    /// `code_*` field and `code_ident` word).
    pub code_size: u16,
    /// Offsets of the 8-byte words of the code object that
    /// [`code_checksum`] mixes: fields fixed for the object's life (its
    /// name, file, line table, constants, sizes, and from 3.12 the
    /// interpreter-wide `co_version` stamp), never the reference count or
    /// caches.
    pub code_ident: [u16; PY_CODE_IDENT_WORDS],

    /// `PyObject.ob_type`.
    pub object_type: u16,
    /// `PyVarObject.ob_size`.
    pub var_size: u16,
    /// `PyBytesObject.ob_sval`.
    pub bytes_data: u16,
    /// `PyASCIIObject.state` (bit field: kind in bits 2–4, compact bit 5,
    /// ascii bit 6).
    pub unicode_state: u16,
    /// `PyASCIIObject.length` (in code points).
    pub unicode_length: u16,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's data starts.
    pub unicode_ascii_data: u16,
    /// `sizeof(PyCompactUnicodeObject)`: where a compact non-ASCII string's
    /// data starts.
    pub unicode_compact_data: u16,
    pub _pad: [u16; 3],
}
const _: () = assert!(size_of::<PyOffsets>() == 88);

/// Capacity of the future per-process map of [`PyProcInfo`]: Python
/// processes profiled at once (144 bytes each, preallocated: 144 KiB).
pub const PY_PROCS_MAP_ENTRIES: u32 = 1024;
/// Name of that map.
pub const MAP_PY_PROCS: &str = "PY_PROCS";

/// `PyProcInfo::tss_key` before the interpreter created its key.
pub const PY_TSS_KEY_UNSET: u32 = u32::MAX;

/// What the eBPF program needs about one Python process: where the current
/// thread's state is, the range of `_PyEval_EvalFrameDefault` (where native
/// unwinding hands over to the Python walk) and the version's offsets.
///
/// Finding the current thread's state: glibc keeps the first 32 keys'
/// values of `pthread_setspecific` inline in `struct pthread`, which on
/// x86-64 starts at the thread pointer (`task->thread.fsbase`):
/// `*(fsbase + tsd_data + tsd_stride * tss_key)` is the thread's
/// `PyThreadState *` (glibc: `specific_1stblock[key].data`, offset 0x318,
/// stride 16). This works in every version and also for threads blocked
/// with the GIL released (3.12+'s `_Py_tss_tstate` TLS is cleared then).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyProcInfo {
    /// Address of `_PyRuntime`.
    pub runtime: u64,
    /// `[start, end)` of `_PyEval_EvalFrameDefault`.
    pub eval_start: u64,
    pub eval_end: u64,
    /// `[start, end)` of its `.cold` part (GCC's hot/cold splitting), or 0, 0.
    pub cold_start: u64,
    pub cold_end: u64,
    /// Address of `PyCode_Type`: a frame whose code object has another type
    /// is not a Python function frame (and must not be named as one).
    pub code_type: u64,
    /// The `pthread_key_t` holding thread states, or [`PY_TSS_KEY_UNSET`].
    pub tss_key: u32,
    /// Offset from the thread pointer of the value of key 0 (see above).
    pub tsd_data: u16,
    /// Bytes between consecutive keys' values.
    pub tsd_stride: u16,
    pub offsets: PyOffsets,
}
const _: () = assert!(size_of::<PyProcInfo>() == 144);

/// Python frames kept per sample: each takes [`PY_FRAME_WORDS`] slots of a
/// `StackRecord`.
pub const PY_MAX_FRAMES: usize = 63;
/// A Python frame in a `StackRecord` (stored in `STACKS` like a native
/// stack, referenced by `SampleKey::py_stack_id`), innermost first: word 0
/// is the code object's address, with [`PY_FRAME_ENTRY`] set when the frame
/// is the outermost of its `_PyEval_EvalFrameDefault` call; word 1 holds the
/// instruction index (low 32 bits, signed) and the code object's
/// [`code_checksum`] (high 32 bits).
pub const PY_FRAME_WORDS: usize = 2;
/// See [`PY_FRAME_WORDS`]. User-space addresses stay below 2^57.
pub const PY_FRAME_ENTRY: u64 = 1 << 63;
/// Code objects larger than this are not read whole for the checksum
/// (`PyOffsets::code_size` is 200-odd bytes in every supported version).
pub const PY_CODE_READ_MAX: usize = 256;

/// Words of a code object mixed into its checksum.
pub const PY_CODE_IDENT_WORDS: usize = 8;

/// A cheap fingerprint of a code object, from the words at
/// `PyOffsets::code_ident` read when the frame was seen, so that when a
/// code object is freed and its address reused by another, the new one is
/// not named after the first: resolved code objects are cached by (pid,
/// address, checksum). Two live code objects of different functions differ
/// in at least one of those pointers; from 3.12 `co_version` also differs
/// for every code object ever created.
pub const fn code_checksum(words: &[u64; PY_CODE_IDENT_WORDS]) -> u32 {
    let mut h = CODE_CHECKSUM_SEED;
    let mut i = 0;
    while i < PY_CODE_IDENT_WORDS {
        h = code_checksum_step(h, words[i]);
        i += 1;
    }
    code_checksum_finish(h)
}

/// [`code_checksum`] one word at a time (the eBPF program has no stack
/// room for the array): start from this, [`code_checksum_step`] each word
/// in order, then [`code_checksum_finish`].
pub const CODE_CHECKSUM_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// See [`CODE_CHECKSUM_SEED`].
#[inline(always)]
pub const fn code_checksum_step(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

/// See [`CODE_CHECKSUM_SEED`].
#[inline(always)]
pub const fn code_checksum_finish(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::code_checksum;

    #[test]
    fn checksum_sees_every_word_and_their_order() {
        let words = [0x7f00_1000, 0x7f00_2000, 0x7f00_3000, 0x7f00_4000, 17, 0x5_0000_0003, 42, 0];
        let base = code_checksum(&words);
        for i in 0..words.len() {
            for bit in [0, 3, 31, 47] {
                let mut changed = words;
                changed[i] ^= 1 << bit;
                assert_ne!(base, code_checksum(&changed), "word {i} bit {bit}");
            }
        }
        let mut swapped = words;
        swapped.swap(0, 1);
        assert_ne!(base, code_checksum(&swapped));
    }
}
