//! The per-CPU counters of `STATS`: every event kept, and every one that
//! could not be kept whole, so nothing is dropped silently.

use profiler_common::Stat;

use crate::maps::STATS;

/// Adds one to `stat` on this CPU; returns the count before, so a caller
/// can warn on the first occurrence only.
#[inline(always)]
pub(crate) fn bump(stat: Stat) -> u64 {
    add(stat, 1)
}

/// Adds `n` to `stat` on this CPU; returns the count before.
#[inline(always)]
pub(crate) fn add(stat: Stat, n: u64) -> u64 {
    match STATS.get_ptr_mut(stat as u32) {
        // SAFETY: the pointer is to this CPU's slot of a per-CPU array, and
        // these programs do not nest on one CPU.
        Some(slot) => unsafe {
            let old = *slot;
            *slot = old + n;
            old
        },
        None => 0,
    }
}
