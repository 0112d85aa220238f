//! The off-CPU profile: where target threads blocked, and for how long,
//! from the `sched_switch` tracepoint.

use anyhow::Result;
use profiler_common::{OffCpuStart, OffCpuValue, SampleKey, Stat, MAP_OFFCPU_COUNTS, MAP_OFFCPU_START};

use super::{AttachTarget, Kind, Shape};
use crate::aggregate::{Aggregate, RawSample};
use crate::bpf::{drain, Loader, Programs, RawCapture, Stats};
use crate::profile::capture::{CaptureWindow, Loss, LossReason};
use crate::profile::Profile;

pub(crate) struct OffCpu;

impl Kind for OffCpu {
    fn programs(&self, programs: &mut Programs) {
        programs.offcpu = true;
    }

    fn attach(&self, loader: &mut Loader, _target: &AttachTarget<'_>) -> Result<()> {
        loader.attach_offcpu()
    }

    /// Completed intervals from the kernel map (already clipped to the
    /// window), plus threads still switched out when the window ended,
    /// charged from when they blocked (or the window's start) to its end:
    /// their blocked time is real off-CPU time of the capture.
    fn drain(&self, loader: &Loader, window: &CaptureWindow) -> Result<RawCapture> {
        let mut merged = drain::Merged::default();
        for (key, v) in loader.map_entries::<SampleKey, OffCpuValue>(MAP_OFFCPU_COUNTS)? {
            merged.add(key, v.count, v.ns, 0);
        }
        let window = window.kernel();
        for (_, start) in loader.map_entries::<u64, OffCpuStart>(MAP_OFFCPU_START)? {
            let ns = window.overlap_ns(start.ts, window.end_ns);
            if ns > 0 {
                merged.add(start.key, 1, ns, 0);
            }
        }
        drain::capture(loader, merged.into_counts())
    }

    /// `switches/count` and `offcpu/nanoseconds`.
    fn template(&self, shape: &Shape) -> Profile {
        Profile::new_offcpu(shape.start, shape.duration)
    }

    fn values(&self, sample: &RawSample, _period: i64) -> Vec<i64> {
        vec![sample.count as i64, sample.weight as i64]
    }

    fn losses(&self, stats: &Stats, _agg: &Aggregate) -> Vec<Loss> {
        super::losses(&[
            (LossReason::OffcpuMapFull, stats.get(Stat::OffCpuCountsMapFull)),
            (LossReason::OffcpuStartMapFull, stats.get(Stat::OffCpuStartMapFull)),
        ])
    }
}
