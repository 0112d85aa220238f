//! A capture drained out of the kernel maps into plain data.
//!
//! Separate from `aggregate` so everything after this point is pure and can
//! be tested with synthetic input.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use profiler_common::{SampleKey, STACK_ID_LOST, STACK_ID_NONE};

use super::{Loader, Stats};

/// One aggregated entry of a kernel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counted {
    pub key: SampleKey,
    /// Events (samples, switches, faults).
    pub count: u64,
    /// Their weight when not one period each (off-CPU ns, bytes); 0 for CPU.
    pub weight: u64,
    /// A third value: page faults in a memory profile (whose `count` and
    /// `weight` are allocated objects and bytes).
    pub extra: u64,
    /// Objects and bytes still held at the window's end (memory profile).
    pub held: [u64; 2],
}

/// What the kernel collected during one capture.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawCapture {
    /// Aggregated samples.
    pub counts: Vec<Counted>,
    /// Frames of every stack referenced by `counts`, innermost first.
    /// A referenced id absent here was evicted or never stored.
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Stacks of `stacks` the unwinder could not finish: they end in a
    /// `[truncated]` frame.
    pub truncated: HashSet<u64>,
    /// Kernel counters for this capture.
    pub stats: Stats,
}

/// A capture of `counts`: with the stacks they reference and the kernel's
/// counters. Each profile kind reads its own maps into `counts`
/// (`crate::kinds`); call once the capture window is over, so the maps no
/// longer change underneath.
pub(crate) fn capture(loader: &Loader, counts: Vec<Counted>) -> Result<RawCapture> {
    let stats = loader.stats()?;
    let (stacks, truncated) = read_stacks(loader, &counts)?;
    Ok(RawCapture { counts, stacks, truncated, stats })
}

/// Entries of several maps (or of a map and what user space adds to it) for
/// one profile, summed by key.
#[derive(Debug, Default)]
pub(crate) struct Merged(HashMap<SampleKey, Counted>);

impl Merged {
    pub(crate) fn add(&mut self, key: SampleKey, count: u64, weight: u64, extra: u64) {
        let e = self.0.entry(key).or_insert(Counted { key, count: 0, weight: 0, extra: 0, held: [0; 2] });
        e.count += count;
        e.weight += weight;
        e.extra += extra;
    }

    /// Adds allocations still held (objects, bytes) to `key`.
    pub(crate) fn add_held(&mut self, key: SampleKey, objects: u64, bytes: u64) {
        let e = self.0.entry(key).or_insert(Counted { key, count: 0, weight: 0, extra: 0, held: [0; 2] });
        e.held[0] += objects;
        e.held[1] += bytes;
    }

    pub(crate) fn into_counts(self) -> Vec<Counted> {
        self.0.into_values().collect()
    }
}

/// Frames by stack id, and the ids of the truncated stacks.
type Stacks = (HashMap<u64, Vec<u64>>, HashSet<u64>);

/// Reads every stack referenced by `counts`, and which of them are
/// truncated.
fn read_stacks(loader: &Loader, counts: &[Counted]) -> Result<Stacks> {
    let mut stacks = HashMap::new();
    let mut truncated = HashSet::new();
    for Counted { key, .. } in counts {
        for id in [key.user_stack_id, key.kernel_stack_id, key.py_stack_id] {
            if id == STACK_ID_NONE || id == STACK_ID_LOST || stacks.contains_key(&id) {
                continue;
            }
            if let Some(record) = loader.stack(id)? {
                if record.truncation().is_some() {
                    truncated.insert(id);
                }
                stacks.insert(id, record.frames().to_vec());
            }
        }
    }
    Ok((stacks, truncated))
}
