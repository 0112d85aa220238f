//! The flight recorder's kernel side, as user space sees it: the
//! `history_sample` program attached to a low-rate CPU clock on every CPU,
//! and the `HISTORY` ring buffer it fills with whole samples.
//!
//! A [`HistorySource`] owns its links and maps, taken out of the loaded
//! object: it lives on the recorder's thread and keeps sampling whatever the
//! daemon does with the [`Loader`] (captures, writes on a blocking thread),
//! and the capture programs and maps never see it. It exists only when
//! `watch --history` is set; without it the program is not even loaded.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::perf_event::{PerfEventConfig, PerfEventLink, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::programs::PerfEvent;
use profiler_common::{HistoryRecord, HistoryStat, MAP_HISTORY, MAP_HISTORY_STATS, PROG_HISTORY_SAMPLE};

use super::loader::{privilege_aware, typed_program, Loader};

/// The flight recorder's samples as they arrive (see the module docs).
pub(crate) struct HistorySource {
    ring: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    /// Detached when dropped.
    _links: Vec<PerfEventLink>,
}

impl Loader {
    /// Attaches the flight recorder (loaded with [`super::Programs::history`])
    /// at `frequency_hz` per CPU and hands over its maps.
    pub(crate) fn start_history(&mut self, frequency_hz: u64) -> Result<HistorySource> {
        anyhow::ensure!(self.programs.history, "the flight recorder's program was not loaded");
        let cpus =
            aya::util::online_cpus().map_err(|(path, e)| anyhow!("failed to read online CPUs from `{path}`: {e}"))?;
        let period_ns = 1_000_000_000 / frequency_hz.max(1);
        let program: &mut PerfEvent = typed_program(&mut self.ebpf, PROG_HISTORY_SAMPLE)?;
        let mut links = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let scope = PerfEventScope::AllProcessesOneCpu { cpu };
            let id = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    scope,
                    SamplePolicy::Period(period_ns),
                    false,
                )
                .map_err(|e| {
                    privilege_aware(anyhow!(e), &format!("failed to attach the history sampler on cpu {cpu}"))
                })?;
            links.push(program.take_link(id).context("failed to take the history sampler's link")?);
        }
        let take = |loader: &mut Loader, name: &str| {
            loader.ebpf.take_map(name).ok_or_else(|| anyhow!("map `{name}` missing from the eBPF object"))
        };
        let ring = RingBuf::try_from(take(self, MAP_HISTORY)?).context("the history map is not a ring buffer")?;
        let stats = PerCpuArray::try_from(take(self, MAP_HISTORY_STATS)?).context("history counters")?;
        Ok(HistorySource { ring, stats, _links: links })
    }
}

impl HistorySource {
    /// Waits up to `timeout` for samples, then hands each one waiting to `f`.
    pub(crate) fn drain(&mut self, timeout: Duration, mut f: impl FnMut(&HistoryRecord)) -> usize {
        let mut poll = libc::pollfd { fd: self.ring.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut poll, 1, ms) };
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<HistoryRecord>() {
                // SAFETY: the kernel wrote a whole `HistoryRecord` (plain
                // integers, any bit pattern valid); read unaligned since the
                // ring only guarantees 8-byte alignment.
                let record = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<HistoryRecord>()) };
                f(&record);
                n += 1;
            }
        }
        n
    }

    /// Samples the kernel could not hand over (the ring was full), so far.
    pub(crate) fn lost(&self) -> u64 {
        self.stats.get(&(HistoryStat::Lost as u32), 0).map_or(0, |values| values.iter().sum())
    }
}
