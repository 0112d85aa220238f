//! The flight recorder's memory: samples counted in fixed time slots,
//! unsymbolized, within a byte budget. Pure (no clock, no I/O), so the
//! budget logic is tested with synthetic samples.
//!
//! A slot maps (pid, user stack, kernel stack) to a sample count; stacks
//! are interned, so a stack seen in every slot is stored once. What the
//! recorder holds is estimated in bytes as it grows (entries, stacks, the
//! names of processes); over the budget the two oldest single slots are
//! merged into one (the same stacks collapse, at the price of time
//! resolution), and once the oldest slot is a merged one it is dropped,
//! its samples counted as dropped. Slots older than the history window
//! are retired without counting: that is the window doing its job.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ids::Pid;

/// Estimated bytes of one slot entry: the key (pid and two shared stack
/// pointers), the count and the hash table's share.
const ENTRY_BYTES: usize = 64;
/// Estimated bytes of an interned stack besides its frames.
const STACK_BYTES: usize = 48;
/// Estimated bytes of a process's name entry besides the name.
const NAME_BYTES: usize = 48;

/// A stack, innermost frame first, as the kernel read it.
pub(crate) type Stack = Arc<[u64]>;

/// What one sample is counted under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotKey {
    pub pid: Pid,
    /// The process's start in clock ticks since boot (`/proc/PID/stat`'s
    /// `starttime`), 0 if unknown: with the pid, which process it was.
    pub start: u64,
    pub user: Stack,
    pub kernel: Stack,
}

/// One time slot (or several merged): its start, how long it covers, and
/// its counts.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub start: SystemTime,
    pub span: Duration,
    /// How many slots of the configured length it holds (1 until merged).
    pub merged: u32,
    pub counts: HashMap<SlotKey, u64>,
}

impl Slot {
    pub(crate) fn samples(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// What was given up to stay within the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Slot pairs merged.
    pub merges: u64,
    /// Slots dropped (each possibly several merged ones).
    pub slots: u64,
    /// Samples in them.
    pub samples: u64,
}

/// The slots of the history window (see the module docs).
#[derive(Debug)]
pub(crate) struct Slots {
    slot: Duration,
    window: Duration,
    budget: usize,
    slots: VecDeque<Slot>,
    /// Interned stacks with the number of slot entries using each.
    stacks: HashMap<Stack, u32>,
    /// The last name seen for each process, kept while a slot refers to it.
    names: HashMap<Pid, String>,
    bytes: usize,
    dropped: Dropped,
}

impl Slots {
    pub(crate) fn new(slot: Duration, window: Duration, budget: usize) -> Self {
        Self {
            slot: slot.max(Duration::from_millis(1)),
            window,
            budget,
            slots: VecDeque::new(),
            stacks: HashMap::new(),
            names: HashMap::new(),
            bytes: 0,
            dropped: Dropped::default(),
        }
    }

    /// Counts one sample taken at `at` in process `pid` started at `start`
    /// (see [`SlotKey::start`]).
    pub(crate) fn add(&mut self, at: SystemTime, pid: Pid, start: u64, comm: &str, user: &[u64], kernel: &[u64]) {
        let slot_start = self.slot_start(at);
        // Samples arrive in time order per CPU and within a second of each
        // other across CPUs: a late one joins the newest slot.
        if self.slots.back().is_none_or(|s| s.start < slot_start) {
            self.slots.push_back(Slot { start: slot_start, span: self.slot, merged: 1, counts: HashMap::new() });
        }
        let user = self.intern(user);
        let kernel = self.intern(kernel);
        if self.names.get(&pid).is_none_or(|n| n != comm) {
            if let Some(old) = self.names.insert(pid, comm.to_owned()) {
                self.bytes -= NAME_BYTES + old.len();
            }
            self.bytes += NAME_BYTES + comm.len();
        }
        let Some(slot) = self.slots.back_mut() else { return };
        let key = SlotKey { pid, start, user, kernel };
        if let Some(count) = slot.counts.get_mut(&key) {
            *count += 1;
            Self::release(&mut self.stacks, &mut self.bytes, &key);
        } else {
            slot.counts.insert(key, 1);
            self.bytes += ENTRY_BYTES;
        }
        self.enforce_budget();
    }

    /// Retires slots that ended before `now - window`.
    pub(crate) fn expire(&mut self, now: SystemTime) {
        let Some(horizon) = now.checked_sub(self.window) else { return };
        let mut retired = false;
        while self.slots.front().is_some_and(|s| s.start + s.span <= horizon) {
            if let Some(slot) = self.slots.pop_front() {
                self.forget(slot);
                retired = true;
            }
        }
        // A pass over every entry: only when a slot went.
        if retired {
            self.prune_names();
        }
    }

    /// The slots, oldest first.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    pub(crate) fn name(&self, pid: Pid) -> Option<&str> {
        self.names.get(&pid).map(String::as_str)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    pub(crate) fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Whether a slot refers to `pid` (its mappings must stay known).
    pub(crate) fn holds(&self, pid: Pid) -> bool {
        self.names.contains_key(&pid)
    }

    fn slot_start(&self, at: SystemTime) -> SystemTime {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let slot_ns = self.slot.as_nanos().max(1);
        let aligned = since.as_nanos() / slot_ns * slot_ns;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(aligned).unwrap_or(u64::MAX))
    }

    /// The shared copy of `frames`, its use counted.
    fn intern(&mut self, frames: &[u64]) -> Stack {
        if let Some((stack, uses)) = self.stacks.get_key_value(frames).map(|(s, u)| (s.clone(), *u)) {
            self.stacks.insert(stack.clone(), uses + 1);
            return stack;
        }
        let stack: Stack = frames.into();
        self.bytes += STACK_BYTES + 8 * frames.len();
        self.stacks.insert(stack.clone(), 1);
        stack
    }

    /// One use fewer of each of `key`'s stacks.
    fn release(stacks: &mut HashMap<Stack, u32>, bytes: &mut usize, key: &SlotKey) {
        for stack in [&key.user, &key.kernel] {
            if let Some(uses) = stacks.get_mut(stack) {
                *uses -= 1;
                if *uses == 0 {
                    stacks.remove(stack);
                    *bytes -= STACK_BYTES + 8 * stack.len();
                }
            }
        }
    }

    fn forget(&mut self, slot: Slot) {
        for key in slot.counts.keys() {
            Self::release(&mut self.stacks, &mut self.bytes, key);
            self.bytes -= ENTRY_BYTES;
        }
    }

    fn enforce_budget(&mut self) {
        while self.bytes > self.budget && self.slots.len() > 1 {
            let mergeable = self.slots.len() > 2 && self.slots[0].merged == 1 && self.slots[1].merged == 1;
            if mergeable {
                self.merge_oldest();
            } else if let Some(slot) = self.slots.pop_front() {
                self.dropped.slots += 1;
                self.dropped.samples += slot.samples();
                self.forget(slot);
                self.prune_names();
            }
        }
    }

    /// Merges the second-oldest slot into the oldest.
    fn merge_oldest(&mut self) {
        let Some(second) = self.slots.remove(1) else { return };
        let Some(first) = self.slots.front_mut() else { return };
        first.span = (second.start + second.span).duration_since(first.start).unwrap_or(first.span + second.span);
        first.merged += second.merged;
        for (key, count) in second.counts {
            if let Some(c) = first.counts.get_mut(&key) {
                *c += count;
                Self::release(&mut self.stacks, &mut self.bytes, &key);
                self.bytes -= ENTRY_BYTES;
            } else {
                first.counts.insert(key, count);
            }
        }
        self.dropped.merges += 1;
    }

    fn prune_names(&mut self) {
        let live: std::collections::HashSet<Pid> =
            self.slots.iter().flat_map(|s| s.counts.keys().map(|k| k.pid)).collect();
        let bytes = &mut self.bytes;
        self.names.retain(|pid, name| {
            let keep = live.contains(pid);
            if !keep {
                *bytes -= NAME_BYTES + name.len();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: Duration = Duration::from_secs(10);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_696_200 + seconds)
    }

    /// A stack of `depth` frames unique to `n`.
    fn stack(n: u64, depth: usize) -> Vec<u64> {
        (0..depth as u64).map(|i| 0x40_0000 + n * 0x1000 + i).collect()
    }

    /// Recomputes what `bytes` should be from scratch.
    fn recount(s: &Slots) -> usize {
        let entries: usize = s.slots.iter().map(|slot| slot.counts.len()).sum();
        let stacks: usize = s.stacks.keys().map(|k| STACK_BYTES + 8 * k.len()).sum();
        let names: usize = s.names.values().map(|n| NAME_BYTES + n.len()).sum();
        entries * ENTRY_BYTES + stacks + names
    }

    #[test]
    fn samples_land_in_their_slot_and_equal_stacks_are_shared() {
        let mut s = Slots::new(SLOT, Duration::from_secs(600), 1 << 20);
        for second in 0..30 {
            s.add(at(second), Pid::new(7), 0, "alpha", &stack(1, 20), &[]);
        }
        s.add(at(31), Pid::new(8), 0, "beta", &stack(2, 5), &stack(3, 4));
        let slots: Vec<(u64, u64)> =
            s.slots().map(|slot| (slot.start.duration_since(at(0)).unwrap().as_secs(), slot.samples())).collect();
        assert_eq!(slots, vec![(0, 10), (10, 10), (20, 10), (30, 1)]);
        // One copy of the stack however many slots use it.
        assert_eq!(s.stacks.len(), 4, "the user stacks of 7 and 8, 8's kernel stack, the empty one");
        assert_eq!(s.bytes(), recount(&s));
        assert_eq!(s.name(Pid::new(8)), Some("beta"));
        assert_eq!(s.dropped(), Dropped::default());
    }

    #[test]
    fn two_processes_with_one_pid_are_counted_apart() {
        let mut s = Slots::new(SLOT, Duration::from_secs(600), 1 << 20);
        s.add(at(1), Pid::new(9), 100, "sh", &stack(1, 6), &[]);
        s.add(at(2), Pid::new(9), 100, "sh", &stack(1, 6), &[]);
        // The pid reused by a later process: same stack addresses, other process.
        s.add(at(3), Pid::new(9), 250, "sh", &stack(1, 6), &[]);
        let slot = s.slots().next().expect("one slot");
        let mut counts: Vec<(u64, u64)> = slot.counts.iter().map(|(k, &c)| (k.start, c)).collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![(100, 2), (250, 1)]);
        assert_eq!(s.bytes(), recount(&s));
    }

    #[test]
    fn slots_older_than_the_window_retire_without_counting_as_dropped() {
        let mut s = Slots::new(SLOT, Duration::from_secs(30), 1 << 20);
        for second in 0..60 {
            s.add(at(second), Pid::new(second as u32 % 3 + 1), 0, "w", &stack(second % 3, 8), &[]);
        }
        s.expire(at(60));
        let first = s.slots().next().unwrap().start;
        assert_eq!(first, at(30));
        assert_eq!(s.dropped(), Dropped::default());
        assert_eq!(s.bytes(), recount(&s));
        s.expire(at(1000));
        assert_eq!(s.slots().count(), 0);
        assert_eq!(s.bytes(), 0, "nothing held once every slot retired");
    }

    #[test]
    fn over_budget_the_oldest_slots_are_merged_then_dropped_and_counted() {
        // Every sample a new stack of 30 frames: ~400 bytes each, so a
        // 64 KiB budget holds ~160 samples.
        let budget = 64 << 10;
        let mut s = Slots::new(SLOT, Duration::from_secs(3600), budget);
        let mut added = 0u64;
        for second in 0..600u64 {
            for k in 0..4 {
                s.add(
                    at(second),
                    Pid::new(100 + (second % 50) as u32),
                    0,
                    "short-lived",
                    &stack(second * 4 + k, 30),
                    &[],
                );
                added += 1;
                let newest = s.slots().last().map_or(0, |slot| slot.counts.len() * (ENTRY_BYTES + 400));
                assert!(s.bytes() <= budget + newest, "{} bytes over a {budget} budget", s.bytes());
                assert_eq!(s.bytes(), recount(&s));
            }
        }
        let dropped = s.dropped();
        assert!(dropped.merges > 0 && dropped.slots > 0, "{dropped:?}");
        let held: u64 = s.slots().map(Slot::samples).sum();
        assert_eq!(held + dropped.samples, added, "every sample is held or counted as dropped");
        // The newest slots are intact, the oldest held one is a merged pair
        // or a single slot: time stays in order.
        let starts: Vec<SystemTime> = s.slots().map(|slot| slot.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.slots().last().unwrap().start, at(590));
        // Names only of processes still held.
        assert!(s.names.keys().all(|&pid| s.slots().any(|slot| slot.counts.keys().any(|k| k.pid == pid))));
    }
}
