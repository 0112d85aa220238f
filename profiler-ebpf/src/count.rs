//! Adding events to the count maps without losing any to a race: the one
//! upsert every program uses.
//!
//! Entries are shared by every CPU, so values are only ever changed with
//! atomic adds (a `*count += 1` would lose increments). A key seen for the
//! first time is inserted with `BPF_NOEXIST`; if another CPU inserted it
//! meanwhile, the event is added to that entry instead.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{bindings::BPF_NOEXIST, maps::HashMap};
use profiler_common::{AllocValue, OffCpuValue};

use crate::errno::EEXIST;

/// A value of a count map: events are added to it field by field.
pub(crate) trait Counter: Copy {
    /// Adds `delta` to the live map value at `slot`.
    ///
    /// # Safety
    /// `slot` points to a live value of a map.
    unsafe fn add_to(slot: *mut Self, delta: &Self);
}

impl Counter for u64 {
    #[inline(always)]
    unsafe fn add_to(slot: *mut Self, delta: &Self) {
        // SAFETY: the caller passes a live map value; the add is atomic.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, *delta) };
    }
}

impl Counter for OffCpuValue {
    #[inline(always)]
    unsafe fn add_to(slot: *mut Self, delta: &Self) {
        // SAFETY: as above, field by field.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*slot).count, delta.count);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*slot).ns, delta.ns);
        }
    }
}

impl Counter for AllocValue {
    #[inline(always)]
    unsafe fn add_to(slot: *mut Self, delta: &Self) {
        // SAFETY: as above, field by field.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*slot).objects, delta.objects);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*slot).bytes, delta.bytes);
        }
    }
}

/// Adds `delta` to the entry of `key` in `map`, creating it if needed.
/// `Err` (with the helper's error) only when the map is full.
#[inline(always)]
pub(crate) fn add<K, V: Counter>(map: &HashMap<K, V>, key: &K, delta: V) -> Result<(), i32> {
    if let Some(slot) = map.get_ptr_mut(key) {
        // SAFETY: a live value of `map`.
        unsafe { V::add_to(slot, &delta) };
        return Ok(());
    }
    match map.insert(key, &delta, BPF_NOEXIST as u64) {
        Ok(()) => Ok(()),
        Err(EEXIST) => {
            if let Some(slot) = map.get_ptr_mut(key) {
                // SAFETY: as above.
                unsafe { V::add_to(slot, &delta) };
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
}
