//! Drains a capture out of the kernel maps into plain data.
//!
//! Separate from `aggregate` so everything after this point is pure and can
//! be tested with synthetic input.

use std::collections::HashMap;

use anyhow::Result;
use profiler_common::{SampleKey, STACK_ID_LOST, STACK_ID_NONE};

use crate::loader::{Loader, Stats};
use crate::profile::capture::CaptureWindow;

/// One aggregated entry of a kernel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub key: SampleKey,
    /// Events (samples, switches, faults).
    pub count: u64,
    /// Their weight when not one period each (off-CPU ns, bytes); 0 for CPU.
    pub weight: u64,
    /// A third value: page faults in a memory profile (whose `count` and
    /// `weight` are allocated objects and bytes).
    pub extra: u64,
}

/// What the kernel collected during one capture.
#[derive(Clone, Debug, Default)]
pub struct RawCapture {
    /// Aggregated samples.
    pub counts: Vec<Counted>,
    /// Frames of every stack referenced by `counts`, innermost first.
    /// A referenced id absent here was evicted or never stored.
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Kernel counters for this capture.
    pub stats: Stats,
}

/// Reads the sample map, the stacks it references and the counters.
///
/// Call once the capture window is over (or after detaching), so the maps
/// no longer change underneath.
pub fn drain(loader: &Loader) -> Result<RawCapture> {
    let stats = loader.stats()?;
    let counts: Vec<Counted> =
        loader.counts()?.into_iter().map(|(key, count)| Counted { key, count, weight: 0, extra: 0 }).collect();
    let stacks = read_stacks(loader, &counts)?;
    Ok(RawCapture { counts, stacks, stats })
}

/// Reads every stack referenced by `counts`.
pub fn read_stacks(loader: &Loader, counts: &[Counted]) -> Result<HashMap<u64, Vec<u64>>> {
    let mut stacks = HashMap::new();
    for Counted { key, .. } in counts {
        for id in [key.user_stack_id, key.kernel_stack_id] {
            if id == STACK_ID_NONE || id == STACK_ID_LOST || stacks.contains_key(&id) {
                continue;
            }
            if let Some(record) = loader.stack(id)? {
                stacks.insert(id, record.frames().to_vec());
            }
        }
    }
    Ok(stacks)
}

/// Off-CPU intervals: completed ones from the kernel map (already clipped to
/// the window), plus threads still switched out when the window ended,
/// charged from when they blocked (or the window's start) to its end: their
/// blocked time is real off-CPU time of the capture.
pub fn drain_offcpu(loader: &Loader, window: &CaptureWindow) -> Result<RawCapture> {
    let stats = loader.stats()?;
    let mut merged: HashMap<SampleKey, (u64, u64)> = HashMap::new();
    for (key, v) in loader.offcpu_counts()? {
        let e = merged.entry(key).or_default();
        e.0 += v.count;
        e.1 += v.ns;
    }
    let window = window.kernel();
    for start in loader.offcpu_in_flight()? {
        let ns = window.overlap_ns(start.ts, window.end_ns);
        if ns == 0 {
            continue;
        }
        let e = merged.entry(start.key).or_default();
        e.0 += 1;
        e.1 += ns;
    }
    let counts: Vec<Counted> =
        merged.into_iter().map(|(key, (count, weight))| Counted { key, count, weight, extra: 0 }).collect();
    let stacks = read_stacks(loader, &counts)?;
    Ok(RawCapture { counts, stacks, stats })
}

/// The memory profile's events: allocation samples (objects, bytes) and
/// page-fault samples (`extra`), merged by key.
pub fn drain_memory(loader: &Loader, allocs: bool) -> Result<RawCapture> {
    let stats = loader.stats()?;
    let mut merged: HashMap<SampleKey, (u64, u64, u64)> = HashMap::new();
    if allocs {
        for (key, v) in loader.alloc_counts()? {
            let e = merged.entry(key).or_default();
            e.0 += v.objects;
            e.1 += v.bytes;
        }
    }
    for (key, faults) in loader.fault_counts()? {
        merged.entry(key).or_default().2 += faults;
    }
    let counts: Vec<Counted> =
        merged.into_iter().map(|(key, (count, weight, extra))| Counted { key, count, weight, extra }).collect();
    let stacks = read_stacks(loader, &counts)?;
    Ok(RawCapture { counts, stacks, stats })
}
