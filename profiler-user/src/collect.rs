//! Drains a capture out of the kernel maps into plain data.
//!
//! Separate from `aggregate` so everything after this point is pure and can
//! be tested with synthetic input.

use std::collections::HashMap;

use anyhow::Result;
use profiler_common::{SampleKey, STACK_ID_LOST, STACK_ID_NONE};

use crate::loader::{Loader, Stats};

/// What the kernel collected during one capture.
#[derive(Clone, Debug, Default)]
pub struct RawCapture {
    /// Aggregated samples: key and count.
    pub counts: Vec<(SampleKey, u64)>,
    /// Frames of every stack referenced by `counts`, innermost first.
    /// A referenced id absent here was evicted or never stored.
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Kernel counters for this capture.
    pub stats: Stats,
}

/// Reads the sample map, the stacks it references and the counters.
///
/// Call after detaching, so the maps no longer change underneath.
pub fn drain(loader: &Loader) -> Result<RawCapture> {
    let stats = loader.stats()?;
    let counts = loader.counts()?;
    let mut stacks = HashMap::new();
    for (key, _) in &counts {
        for id in [key.user_stack_id, key.kernel_stack_id] {
            if id == STACK_ID_NONE || id == STACK_ID_LOST || stacks.contains_key(&id) {
                continue;
            }
            if let Some(record) = loader.stack(id)? {
                stacks.insert(id, record.frames().to_vec());
            }
        }
    }
    Ok(RawCapture { counts, stacks, stats })
}
