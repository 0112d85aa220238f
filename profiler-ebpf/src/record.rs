//! Storing a stack record once: hashed, and put in `SHORT_STACKS` (at most
//! `SHORT_STACK_DEPTH` frames) or `STACKS` unless an equal stack is there
//! already. Every way of getting a stack (the kernel's
//! frame-pointer walk, the table unwinder, the Python walk) ends here.

use aya_ebpf::{bindings::BPF_NOEXIST, EbpfContext};
use aya_log_ebpf::warn;
use profiler_common::{
    ShortStackRecord, StackRecord, Stat, MAX_STACK_DEPTH, SHORT_STACK_DEPTH, STACK_ID_LOST, STACK_ID_NONE,
};

use crate::errno::EEXIST;
use crate::maps::{SHORT_STACKS, STACKS};
use crate::stats::bump;

/// Hashes the first `len` frames of `buf` and stores them in `SHORT_STACKS`
/// or `STACKS` (by `len`) unless that stack is there already; returns the stack's id. `tag` is a
/// `Truncation` already shifted to `STACK_TRUNCATION_SHIFT` (0: the walk
/// finished): kept in the record's length word and part of its hash, so a
/// truncated stack never shares an id with a complete one of equal frames.
#[inline(always)]
pub(crate) fn store_record<C: EbpfContext>(ctx: &C, buf: *mut StackRecord, len: usize, tag: u64) -> u64 {
    if len == 0 {
        return STACK_ID_NONE;
    }
    // FNV-1a over whole words, then a final avalanche: cheap and good
    // enough that two distinct stacks sharing a 64-bit key is negligible.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64 ^ tag;
    let mut i = 0;
    while i < MAX_STACK_DEPTH {
        if i >= len {
            break;
        }
        // SAFETY: i < MAX_STACK_DEPTH, the array's length.
        let ip = unsafe { *(*buf).ips.as_ptr().add(i) };
        hash = (hash ^ ip).wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    if hash == STACK_ID_NONE || hash == STACK_ID_LOST {
        hash = 1;
    }
    // SAFETY: as above.
    unsafe { (*buf).len = len as u64 | tag };
    let stored = if len <= SHORT_STACK_DEPTH {
        if SHORT_STACKS.get_ptr(&hash).is_some() {
            return hash;
        }
        // SAFETY: a `ShortStackRecord` is the first 256 bytes of a
        // `StackRecord`, and `buf` is valid for the whole record. By
        // reference: records must not be copied onto the 512-byte BPF stack.
        let record: &ShortStackRecord = unsafe { &*buf.cast::<ShortStackRecord>() };
        SHORT_STACKS.insert(&hash, record, BPF_NOEXIST as u64)
    } else {
        if STACKS.get_ptr(&hash).is_some() {
            return hash;
        }
        // SAFETY: `buf` is valid for the whole record.
        let record: &StackRecord = unsafe { &*buf };
        STACKS.insert(&hash, record, BPF_NOEXIST as u64)
    };
    match stored {
        // Another CPU stored the same stack just now.
        Ok(()) | Err(EEXIST) => hash,
        Err(err) => {
            if bump(Stat::StackStoreFailed) == 0 {
                warn!(ctx, "failed to store a stack (error {}): such stacks are counted as lost", err);
            }
            STACK_ID_LOST
        }
    }
}
