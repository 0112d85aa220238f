//! Typed access to the object's maps: reading entries, stacks and the
//! counters, emptying them between captures, and priming the allocators of
//! the maps that are not preallocated.

use std::collections::HashSet;

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{HashMap, MapData, PerCpuArray};
use profiler_common::{
    python::{PyProcInfo, MAP_PY_PROCS},
    AllocValue, LiveAlloc, LiveKey, OffCpuStart, OffCpuValue, SampleKey, ShortStackRecord, StackRecord, Stat, Window,
    MAP_ALLOC_COUNTS, MAP_ALLOC_PENDING, MAP_COUNTS, MAP_FAULT_COUNTS, MAP_LIVE_ALLOCS, MAP_OFFCPU_COUNTS,
    MAP_OFFCPU_START, MAP_SHORT_STACKS, MAP_STACKS, MAP_STATS,
};

use super::loader::Loader;
use crate::ids::Pid;

/// Per-capture counters summed over CPUs, indexed like [`Stat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stats(pub [u64; Stat::COUNT as usize]);

impl Default for Stats {
    fn default() -> Self {
        Self([0; Stat::COUNT as usize])
    }
}

impl Stats {
    pub(crate) fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }
}

impl Loader {
    pub(super) fn prime_stack_allocator_all(&mut self) {
        if let Ok(cpus) = aya::util::online_cpus() {
            self.prime_stack_allocator(&cpus);
        }
    }

    /// `STACKS` and `SHORT_STACKS` are not preallocated: the kernel serves
    /// their elements from small per-CPU caches that are refilled
    /// asynchronously, so a burst of new stacks right after attaching can
    /// find a cache empty (ENOMEM, a lost stack). Inserting and deleting a
    /// few elements from each CPU leaves freed elements in every CPU's cache
    /// before the first sample.
    pub(super) fn prime_stack_allocator(&mut self, cpus: &[u32]) {
        let record = StackRecord { len: 0, ips: [0; profiler_common::MAX_STACK_DEPTH] };
        // Keys the program never produces (hashes are remapped away from 0
        // and u64::MAX, but these are just improbable values).
        let key = |cpu: u32, i: u64| 0x5354_4143_4b00_0000 | (u64::from(cpu) << 8) | i;
        self.prime_allocator(MAP_STACKS, cpus, key, record);
        let short = ShortStackRecord { len: 0, ips: [0; profiler_common::SHORT_STACK_DEPTH] };
        self.prime_allocator(MAP_SHORT_STACKS, cpus, key, short);
    }

    /// [`Self::prime_stack_allocator`] for `COUNTS`, which is not
    /// preallocated either. Only before the CPU sampler is attached: a
    /// drain never sees the short-lived priming entries.
    pub(super) fn prime_counts_allocator(&mut self, cpus: &[u32]) {
        // pids above the kernel's PID_MAX_LIMIT (2^22): never sampled.
        let key = |cpu: u32, i: u64| SampleKey {
            pid: u32::MAX - cpu,
            tid: u32::MAX - i as u32,
            comm: [0; 16],
            user_stack_id: profiler_common::STACK_ID_NONE,
            kernel_stack_id: profiler_common::STACK_ID_NONE,
            py_stack_id: profiler_common::STACK_ID_NONE,
        };
        self.prime_allocator(MAP_COUNTS, cpus, key, 0u64);
    }

    /// Inserts and deletes a few elements of map `name` from each of `cpus`.
    fn prime_allocator<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
        cpus: &[u32],
        key: impl Fn(u32, u64) -> K,
        value: V,
    ) {
        const PER_CPU: u64 = 16;
        let Ok(map) = self.map_mut(name) else { return };
        let Ok(mut map) = HashMap::<&mut MapData, K, V>::try_from(map) else { return };
        // SAFETY: sched_getaffinity/sched_setaffinity on the calling thread
        // with a properly sized, zero-initialised cpu_set_t.
        let mut original: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut original) } != 0 {
            return;
        }
        for &cpu in cpus {
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu as usize, &mut set) };
            if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
                continue;
            }
            let keys: Vec<K> = (0..PER_CPU).map(|i| key(cpu, i)).collect();
            for k in &keys {
                let _ = map.insert(k, &value, 0);
            }
            for k in &keys {
                let _ = map.remove(k);
            }
        }
        unsafe { libc::sched_setaffinity(0, size, &original) };
    }

    /// Every entry of the hash map `name` (keys `K`, values `V`), read
    /// while the kernel may still change it: an entry deleted meanwhile is
    /// skipped.
    pub(crate) fn map_entries<K: aya::Pod, V: aya::Pod>(&self, name: &str) -> Result<Vec<(K, V)>> {
        let map: HashMap<&MapData, K, V> = HashMap::try_from(self.map(name)?)?;
        collect_entries(map.iter()).with_context(|| format!("failed to read the `{name}` map"))
    }

    /// Counters summed over CPUs.
    pub(crate) fn stats(&self) -> Result<Stats> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.map(MAP_STATS)?)?;
        let mut stats = Stats::default();
        for stat in Stat::ALL {
            let values = map.get(&(stat as u32), 0).with_context(|| format!("failed to read counter {stat:?}"))?;
            stats.0[stat as usize] = values.iter().sum();
        }
        Ok(stats)
    }

    /// Distinct processes in the sample map so far (for the status line).
    pub(crate) fn processes_seen(&self) -> Result<usize> {
        Ok(self.pids_seen()?.len())
    }

    /// The processes in the sample map so far, for the symbolizer to
    /// snapshot while they still exist (`Symbolizer::observe_pids`).
    pub(crate) fn pids_seen(&self) -> Result<Vec<Pid>> {
        Ok(self.samples_seen()?.pids)
    }

    /// [`Self::pids_seen`], and whether any CPU sample so far has a kernel
    /// stack: one read of the sample map's keys.
    pub(crate) fn samples_seen(&self) -> Result<Seen> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_COUNTS)?)?;
        let mut kernel_stacks = false;
        let pids: HashSet<Pid> = map
            .keys()
            .filter_map(Result::ok)
            .inspect(|k| {
                kernel_stacks |= k.kernel_stack_id != profiler_common::STACK_ID_NONE
                    && k.kernel_stack_id != profiler_common::STACK_ID_LOST
            })
            .map(|k| Pid::new(k.pid))
            .collect();
        Ok(Seen { pids: pids.into_iter().collect(), kernel_stacks })
    }

    /// The Python stacks referenced by CPU samples so far, with their
    /// process, so their code objects can be named while it runs.
    pub(crate) fn python_stacks_seen(&self) -> Result<Vec<(Pid, u64)>> {
        let map: HashMap<&MapData, SampleKey, u64> = HashMap::try_from(self.map(MAP_COUNTS)?)?;
        let ids: HashSet<(Pid, u64)> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                k.py_stack_id != profiler_common::STACK_ID_NONE && k.py_stack_id != profiler_common::STACK_ID_LOST
            })
            .map(|k| (Pid::new(k.pid), k.py_stack_id))
            .collect();
        Ok(ids.into_iter().collect())
    }

    /// Looks up one stored stack, in whichever of the two stack maps its
    /// length put it.
    pub(crate) fn stack(&self, id: u64) -> Result<Option<StackRecord>> {
        if let Some(short) = self.stored::<ShortStackRecord>(MAP_SHORT_STACKS, id)? {
            return Ok(Some(short.into()));
        }
        self.stored::<StackRecord>(MAP_STACKS, id)
    }

    fn stored<V: aya::Pod>(&self, name: &str, id: u64) -> Result<Option<V>> {
        let map: HashMap<&MapData, u64, V> = HashMap::try_from(self.map(name)?)?;
        match map.get(&id, 0) {
            Ok(rec) => Ok(Some(rec)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read the stack map `{name}`")),
        }
    }

    /// Empties the sample and stack maps and zeroes the counters, so the
    /// next capture starts clean.
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.write_window(Window::CLOSED)?;
        self.window = None;
        self.clear_map::<SampleKey, u64>(MAP_COUNTS)?;
        self.clear_map::<u64, StackRecord>(MAP_STACKS)?;
        self.clear_map::<u64, ShortStackRecord>(MAP_SHORT_STACKS)?;
        self.clear_map::<SampleKey, OffCpuValue>(MAP_OFFCPU_COUNTS)?;
        self.clear_map::<u64, OffCpuStart>(MAP_OFFCPU_START)?;
        self.clear_map::<SampleKey, u64>(MAP_FAULT_COUNTS)?;
        self.clear_map::<SampleKey, AllocValue>(MAP_ALLOC_COUNTS)?;
        self.clear_map::<LiveKey, LiveAlloc>(MAP_LIVE_ALLOCS)?;
        self.clear_map::<u32, LiveAlloc>(MAP_ALLOC_PENDING)?;
        // Registered again at each start: a pid reused by another program
        // must not keep an old process's Python layout.
        self.clear_map::<u32, PyProcInfo>(MAP_PY_PROCS)?;
        let mut map: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map_mut(MAP_STATS)?)?;
        let ncpus = aya::util::nr_cpus().map_err(|(path, e)| anyhow!("failed to read `{path}`: {e}"))?;
        for stat in Stat::ALL {
            let zeros =
                aya::maps::PerCpuValues::try_from(vec![0u64; ncpus.get() as usize]).context("per-CPU values")?;
            map.set(stat as u32, zeros, 0).context("failed to reset counters")?;
        }
        Ok(())
    }

    fn clear_map<K: aya::Pod, V: aya::Pod>(&mut self, name: &str) -> Result<()> {
        let mut map: HashMap<&mut MapData, K, V> = HashMap::try_from(self.map_mut(name)?)?;
        let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
        for k in keys {
            // Already gone is fine: the program may delete entries too.
            let _ = map.remove(&k);
        }
        Ok(())
    }
}

/// Collects map entries, skipping ones deleted between `get_next_key` and
/// the lookup.
fn collect_entries<K, V>(
    iter: impl Iterator<Item = Result<(K, V), aya::maps::MapError>>,
) -> Result<Vec<(K, V)>, aya::maps::MapError> {
    let mut out = Vec::new();
    for entry in iter {
        match entry {
            Ok(kv) => out.push(kv),
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// What the CPU sample map holds so far ([`Loader::samples_seen`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    pub pids: Vec<Pid>,
    /// Whether a sample has a kernel stack: its frames need naming, which
    /// means reading kallsyms ahead where the kernel cannot name them.
    pub kernel_stacks: bool,
}
