//! Profile kinds as the capture pipeline runs them: what each loads and
//! attaches, what it drains from the kernel, and how its samples become a
//! profile with its own sample types, values and losses.
//!
//! A kind is one implementation of [`Kind`] ([`cpu`], [`offcpu`],
//! [`memory`]) and one line in [`of`]; the pipeline (`crate::pipeline`)
//! asks each kind of a capture in turn and names none of them. A new kind
//! (say lock contention) is a file here, its programs in the eBPF crate and
//! its name in [`ProfileKind`].

pub(crate) mod cpu;
pub(crate) mod memory;
pub(crate) mod offcpu;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use tracing::debug;

use crate::aggregate::{Aggregate, RawSample};
use crate::bpf::{Loader, Programs, RawCapture, Stats, UnwindMode};
use crate::profile::capture::{CaptureWindow, Loss, LossReason};
use crate::profile::{Profile, ProfileKind};
use crate::target::Filter;

/// What a profile kind plugs into the capture pipeline.
pub(crate) trait Kind: Sync {
    /// Asks for the programs it needs besides the CPU sampler (always loaded).
    fn programs(&self, _programs: &mut Programs) {}

    /// Starts its event sources; called before the capture window opens.
    fn attach(&self, loader: &mut Loader, target: &AttachTarget<'_>) -> Result<()>;

    /// What the kernel collected for it, once the window is over.
    fn drain(&self, loader: &Loader, window: &CaptureWindow) -> Result<RawCapture>;

    /// The empty profile its samples go into: sample types and period.
    fn template(&self, shape: &Shape) -> Profile;

    /// A sample's values, one per sample type of its template, whose
    /// sampling period is `period`.
    fn values(&self, sample: &RawSample, period: i64) -> Vec<i64>;

    /// Its rows of the manifest's loss table.
    fn losses(&self, stats: &Stats, agg: &Aggregate) -> Vec<Loss>;

    /// What it adds to the capture's `samples_collected`: only CPU samples
    /// count there.
    fn samples_collected(&self, _agg: &Aggregate) -> Option<u64> {
        None
    }

    /// Last touches on the symbolized profile.
    fn finish(&self, _profile: &mut Profile) {}
}

/// The implementation of `kind`: the registry of kinds.
pub(crate) fn of(kind: ProfileKind) -> &'static dyn Kind {
    match kind {
        ProfileKind::Cpu => &cpu::Cpu,
        ProfileKind::OffCpu => &offcpu::OffCpu,
        ProfileKind::Memory => &memory::Memory,
    }
}

/// What attaching is for: the sampling frequency and the target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttachTarget<'a> {
    pub frequency_hz: u64,
    pub filter: &'a Filter,
    /// The cgroup directory of a `--cgroup` target.
    pub cgroup_dir: Option<&'a Path>,
}

/// What a kind's profile is made from besides its samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub frequency_hz: u64,
    /// What was loaded, with the settings the programs sampled with.
    pub programs: Programs,
    pub start: SystemTime,
    pub duration: Duration,
}

/// The kernel programs a set of profile kinds needs, walking user stacks
/// the way `unwind` says (one walk for every kind).
pub(crate) fn programs_for(kinds: &[ProfileKind], unwind: UnwindMode) -> Programs {
    let mut programs = Programs { unwind, ..Programs::default() };
    for &kind in kinds {
        of(kind).programs(&mut programs);
    }
    programs
}

/// Starts every event source `kinds` need.
pub(crate) fn attach(loader: &mut Loader, kinds: &[ProfileKind], target: &AttachTarget<'_>) -> Result<()> {
    for &kind in kinds {
        let started = Instant::now();
        of(kind).attach(loader, target)?;
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "{kind} events attached");
    }
    Ok(())
}

/// The loss rows that happened, from `(reason, count)` pairs.
fn losses(items: &[(LossReason, u64)]) -> Vec<Loss> {
    items.iter().filter(|(_, n)| *n > 0).map(|&(reason, count)| Loss::new(reason, count)).collect()
}
