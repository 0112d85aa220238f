//! The memory profile: allocations sampled by bytes (`malloc`, `calloc`,
//! `realloc` and the Go runtime's slow paths, through uprobes at the sites
//! [`probes`] finds), the sampled C allocations still held at the window's
//! end (the in-use view: `free` and `realloc` drop them, so one capture
//! tells a leak from churn), and page faults (where new memory was first
//! touched), merged by stack.

pub(crate) mod probes;

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use profiler_common::{
    AllocValue, LiveAlloc, LiveKey, SampleKey, Stat, MAP_ALLOC_COUNTS, MAP_FAULT_COUNTS, MAP_LIVE_ALLOCS,
};
use tracing::{debug, info};

use super::{AttachTarget, Kind, Shape};
use crate::aggregate::{Aggregate, RawSample};
use crate::bpf::{drain, Loader, Programs, RawCapture, Stats};
use crate::ids::Pid;
use crate::profile::capture::{CaptureWindow, Loss, LossReason};
use crate::profile::Profile;
use crate::target::Filter;

/// Page faults per memory-profile sample. Every fault is cheap to count
/// relative to the fault itself, and first-touch faults are what resident
/// growth is made of, so none are skipped by default.
pub(crate) const DEFAULT_FAULT_PERIOD: u64 = 1;

pub(crate) struct Memory;

impl Kind for Memory {
    fn programs(&self, programs: &mut Programs) {
        programs.faults = true;
        programs.alloc = true;
    }

    /// Page faults of the target, and allocation probes in its processes
    /// (none for a whole-host capture, where a probe in every process's
    /// `malloc` would tax the whole machine).
    fn attach(&self, loader: &mut Loader, target: &AttachTarget<'_>) -> Result<()> {
        loader.attach_faults(DEFAULT_FAULT_PERIOD)?;
        if loader.programs().alloc {
            let started = Instant::now();
            let sites = probes::probe_sites(&probe_pids(target.filter, target.cgroup_dir));
            let attached = loader.attach_uprobes(&sites)?;
            if attached == 0 {
                info!("no allocator found to probe in the target: the memory profile has page faults only");
            } else {
                debug!(
                    probes = attached,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "allocation probes attached"
                );
            }
        }
        Ok(())
    }

    /// Allocation samples (objects, bytes), the sampled allocations still
    /// held (`held`) and page-fault samples (`extra`), merged by key.
    fn drain(&self, loader: &Loader, _window: &CaptureWindow) -> Result<RawCapture> {
        let mut merged = drain::Merged::default();
        if loader.programs().alloc {
            for (key, v) in loader.map_entries::<SampleKey, AllocValue>(MAP_ALLOC_COUNTS)? {
                merged.add(key, v.objects, v.bytes, 0);
            }
            for (_, live) in loader.map_entries::<LiveKey, LiveAlloc>(MAP_LIVE_ALLOCS)? {
                merged.add_held(live.key, live.value.objects, live.value.bytes);
            }
        }
        for (key, faults) in loader.map_entries::<SampleKey, u64>(MAP_FAULT_COUNTS)? {
            merged.add(key, 0, 0, faults);
        }
        drain::capture(loader, merged.into_counts())
    }

    /// `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
    /// `inuse_space/bytes` and `page_faults/count`.
    fn template(&self, shape: &Shape) -> Profile {
        Profile::new_memory(shape.programs.malloc_sample_bytes, shape.start, shape.duration)
    }

    fn values(&self, sample: &RawSample, _period: i64) -> Vec<i64> {
        vec![
            sample.count as i64,
            sample.weight as i64,
            sample.held[0] as i64,
            sample.held[1] as i64,
            (sample.extra * DEFAULT_FAULT_PERIOD) as i64,
        ]
    }

    fn losses(&self, stats: &Stats, _agg: &Aggregate) -> Vec<Loss> {
        super::losses(&[
            (LossReason::FaultMapFull, stats.get(Stat::FaultCountsMapFull)),
            (LossReason::InuseMapFull, stats.get(Stat::LiveAllocsFull)),
            (LossReason::InuseUntracked, stats.get(Stat::AllocPendingLost)),
        ])
    }

    /// The leaf of an allocation is the code that asked for memory, not the
    /// allocator's own frames.
    fn finish(&self, profile: &mut Profile) {
        profile.strip_leaf_frames(|s| s.values[0] > 0 || s.values[2] > 0, is_allocator_frame);
    }
}

/// Frames of the allocators themselves, above the code that allocated.
fn is_allocator_frame(name: &str) -> bool {
    matches!(
        name,
        "malloc"
            | "__libc_malloc"
            | "__GI___libc_malloc"
            | "tcache_init"
            | "_int_malloc"
            | "calloc"
            | "__libc_calloc"
            | "realloc"
            | "__libc_realloc"
            | "_int_realloc"
    ) || name.starts_with("runtime.")
}

/// The processes to put allocation probes in: the target's, or the
/// cgroup's members at capture start.
fn probe_pids(filter: &Filter, cgroup_dir: Option<&Path>) -> Vec<Pid> {
    match (filter, cgroup_dir) {
        (Filter::Pids(pids), _) => pids.clone(),
        (Filter::Cgroup { .. }, Some(dir)) => crate::procfs::cgroup::procs(dir),
        _ => Vec::new(),
    }
}
