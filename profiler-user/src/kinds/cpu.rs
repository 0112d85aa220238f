//! The CPU profile: stacks sampled by the CPU clock at `--frequency`, each
//! sample standing for one period of CPU time.

use anyhow::Result;
use profiler_common::{SampleKey, Stat, MAP_COUNTS};

use super::{AttachTarget, Kind, Shape};
use crate::aggregate::{Aggregate, Frames, RawSample};
use crate::bpf::{drain, Counted, Loader, RawCapture, Stats};
use crate::profile::capture::{CaptureWindow, Loss, LossReason};
use crate::profile::Profile;

pub(crate) struct Cpu;

impl Kind for Cpu {
    fn attach(&self, loader: &mut Loader, target: &AttachTarget<'_>) -> Result<()> {
        loader.attach_cpu(target.frequency_hz)
    }

    fn drain(&self, loader: &Loader, _window: &CaptureWindow) -> Result<RawCapture> {
        let counts = loader
            .map_entries::<SampleKey, u64>(MAP_COUNTS)?
            .into_iter()
            .map(|(key, count)| Counted { key, count, weight: 0, extra: 0, held: [0; 2] })
            .collect();
        drain::capture(loader, counts)
    }

    /// `samples/count` and `cpu/nanoseconds`, period in nanoseconds.
    fn template(&self, shape: &Shape) -> Profile {
        Profile::new_cpu(shape.frequency_hz, shape.start, shape.duration)
    }

    fn values(&self, sample: &RawSample, period: i64) -> Vec<i64> {
        let count = sample.count as i64;
        vec![count, count.saturating_mul(period)]
    }

    /// Every counted loss, by reason (what each does to the profile:
    /// [`LossReason::effect`]).
    fn losses(&self, stats: &Stats, agg: &Aggregate) -> Vec<Loss> {
        let missing_user = agg.samples.iter().filter(|s| s.user == Frames::Missing).map(|s| s.count).sum();
        let missing_kernel = agg.samples.iter().filter(|s| s.kernel == Frames::Missing).map(|s| s.count).sum();
        super::losses(&[
            (LossReason::CountsMapFull, stats.get(Stat::CountsMapFull)),
            (LossReason::UserStackUnreadable, stats.get(Stat::UserStackLost)),
            (LossReason::KernelStackUnreadable, stats.get(Stat::KernelStackLost)),
            (LossReason::StackNotStored, stats.get(Stat::StackStoreFailed)),
            (LossReason::UserStackTruncated, stats.get(Stat::UserStackTruncated)),
            (LossReason::KernelStackTruncated, stats.get(Stat::KernelStackTruncated)),
            (LossReason::PyStackTruncated, stats.get(Stat::PyStackTruncated)),
            (LossReason::PyStackLost, stats.get(Stat::PyStackLost)),
            (LossReason::UserStackMissing, missing_user),
            (LossReason::KernelStackMissing, missing_kernel),
        ])
    }

    fn samples_collected(&self, agg: &Aggregate) -> Option<u64> {
        Some(agg.total)
    }
}
