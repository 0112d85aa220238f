//! The CPU profile: stacks sampled by the CPU clock at `--frequency`, each
//! sample standing for one period of CPU time.

use anyhow::Result;
use profiler_common::{SampleKey, Stat, MAP_COUNTS};

use super::{AttachTarget, Kind, Shape};
use crate::aggregate::{Aggregate, Frames, RawSample};
use crate::bpf::{drain, Counted, Loader, RawCapture, Stats};
use crate::profile::capture::{CaptureWindow, Loss};
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

    /// Every counted loss, by reason. Only `counts_map_full` drops a
    /// sample; the stack losses keep the sample with a `[lost … stack]` frame.
    fn losses(&self, stats: &Stats, agg: &Aggregate) -> Vec<Loss> {
        let missing_user = agg.samples.iter().filter(|s| s.user == Frames::Missing).map(|s| s.count).sum();
        let missing_kernel = agg.samples.iter().filter(|s| s.kernel == Frames::Missing).map(|s| s.count).sum();
        super::losses(&[
            ("counts_map_full", stats.get(Stat::CountsMapFull), "samples dropped: the kernel sample map was full"),
            (
                "user_stack_unreadable",
                stats.get(Stat::UserStackLost),
                "samples kept without their user stack: bpf_get_stack failed",
            ),
            (
                "kernel_stack_unreadable",
                stats.get(Stat::KernelStackLost),
                "samples kept without their kernel stack: bpf_get_stack failed",
            ),
            (
                "stack_not_stored",
                stats.get(Stat::StackStoreFailed),
                "samples kept without one of their stacks: the stack map was full or could not allocate",
            ),
            (
                "user_stack_truncated",
                stats.get(Stat::UserStackTruncated),
                "user stacks cut at 127 frames (outermost callers missing)",
            ),
            ("kernel_stack_truncated", stats.get(Stat::KernelStackTruncated), "kernel stacks cut at 127 frames"),
            (
                "py_stack_truncated",
                stats.get(Stat::PyStackTruncated),
                "Python stacks cut at 63 frames, in every profile kind (outermost Python callers missing)",
            ),
            (
                "py_stack_lost",
                stats.get(Stat::PyStackLost),
                "Python stacks that could not be stored, in every profile kind (native frames only)",
            ),
            ("user_stack_missing", missing_user, "user stacks referenced by samples but absent from the stack map"),
            (
                "kernel_stack_missing",
                missing_kernel,
                "kernel stacks referenced by samples but absent from the stack map",
            ),
        ])
    }

    fn samples_collected(&self, agg: &Aggregate) -> Option<u64> {
        Some(agg.total)
    }
}
