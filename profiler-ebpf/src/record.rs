//! Storing a stack record once: hashed, and put in `SHORT_STACKS` (at most
//! `SHORT_STACK_DEPTH` frames) or `STACKS` unless an equal stack is there
//! already. Every way of getting a stack (the kernel's
//! frame-pointer walk, the table unwinder, the Python walk) ends here.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::HashMap};
use profiler_common::{
    ShortStackRecord, StackRecord, Stat, MAX_STACK_DEPTH, SHORT_STACK_DEPTH, STACK_ID_LOST, STACK_ID_NONE,
};

use crate::errno::EEXIST;
use crate::maps::{SHORT_STACKS, STACKS};
use crate::stats::bump;

/// The hash of no frames: where [`hash_frame`] starts.
pub(crate) const HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// `hash` with frame `ip` appended (FNV-1a over whole words). A walk that
/// writes its frames one by one hashes them as it goes
/// (`crate::unwind::Walk::hash`), so storing them needs no second pass.
#[inline(always)]
pub(crate) fn hash_frame(hash: u64, ip: u64) -> u64 {
    (hash ^ ip).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Hashes the first `len` frames of `buf` and stores them (see
/// [`store_hashed`]).
#[inline(always)]
pub(crate) fn store_record(buf: *mut StackRecord, len: usize, tag: u64) -> u64 {
    let mut hash = HASH_START;
    let mut i = 0;
    while i < MAX_STACK_DEPTH {
        if i >= len {
            break;
        }
        // SAFETY: i < MAX_STACK_DEPTH, the array's length.
        hash = hash_frame(hash, unsafe { *(*buf).ips.as_ptr().add(i) });
        i += 1;
    }
    store_hashed(buf, len, tag, hash)
}

/// Stores the first `len` frames of `buf`, whose [`hash_frame`] chain from
/// [`HASH_START`] is `frames`, in `SHORT_STACKS` or `STACKS` (by `len`)
/// unless that stack is there already; returns the stack's id. `tag` is a
/// `Truncation` already shifted to `STACK_TRUNCATION_SHIFT` (0: the walk
/// finished): kept in the record's length word and part of its hash, so a
/// truncated stack never shares an id with a complete one of equal frames.
#[inline(always)]
pub(crate) fn store_hashed(buf: *mut StackRecord, len: usize, tag: u64, frames: u64) -> u64 {
    if len == 0 {
        return STACK_ID_NONE;
    }
    // The length and tag last, then a final avalanche: cheap and good
    // enough that two distinct stacks sharing a 64-bit key is negligible.
    let mut hash = hash_frame(frames, len as u64 | tag);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    if hash == STACK_ID_NONE || hash == STACK_ID_LOST {
        hash = 1;
    }
    // SAFETY: `buf` is valid for the whole record.
    unsafe { (*buf).len = len as u64 | tag };
    let stored = if len <= SHORT_STACK_DEPTH {
        // SAFETY: a `ShortStackRecord` is the first 256 bytes of a
        // `StackRecord`, and `buf` is valid for the whole record. By
        // reference: records must not be copied onto the 512-byte BPF stack.
        store_once(&SHORT_STACKS, hash, unsafe { &*buf.cast::<ShortStackRecord>() })
    } else {
        // SAFETY: `buf` is valid for the whole record.
        store_once(&STACKS, hash, unsafe { &*buf })
    };
    match stored {
        Ok(()) => hash,
        Err(_) => {
            // Counted, and reported by user space after the capture: a
            // log call here (aya-log) is a subprogram the verifier checks
            // at every call site, ~12 k instructions of each load.
            bump(Stat::StackStoreFailed);
            STACK_ID_LOST
        }
    }
}

/// Puts `record` in `map` under `hash` unless a record is there already
/// (stored earlier, or by another CPU just now). `Err` with the helper's
/// error when the map is full.
#[inline(always)]
fn store_once<V>(map: &HashMap<u64, V>, hash: u64, record: &V) -> Result<(), i32> {
    if map.get_ptr(&hash).is_some() {
        return Ok(());
    }
    match map.insert(&hash, record, BPF_NOEXIST as u64) {
        Ok(()) | Err(EEXIST) => Ok(()),
        Err(err) => Err(err),
    }
}
