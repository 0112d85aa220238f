//! Turns a [`RawCapture`] into samples with resolved frame lists and the set
//! of addresses each process (and the kernel) needs symbolized. Pure.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use profiler_common::{
    python::{PY_FRAME_ENTRY, PY_FRAME_WORDS},
    STACK_ID_LOST, STACK_ID_NONE,
};

use crate::bpf::RawCapture;
use crate::ids::{Pid, Tid};

/// One side (user or kernel) of a sample's stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frames {
    /// No frames of this kind (user-mode sample / kernel thread). Not a loss.
    None,
    /// The kernel could not read or store the stack (counted in stats).
    Lost,
    /// The stack id had no stack in the map when drained.
    Missing,
    /// Addresses, innermost first. Every frame but the innermost is a return
    /// address and has already been moved back by one byte into the call
    /// instruction, so it symbolizes to the calling line.
    Addrs(Arc<[u64]>),
}

impl Frames {
    pub fn addrs(&self) -> &[u64] {
        match self {
            Frames::Addrs(a) => a,
            _ => &[],
        }
    }
}

/// An aggregated sample, ready for symbolization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSample {
    pub pid: Pid,
    pub tid: Tid,
    pub comm: String,
    pub user: Frames,
    pub kernel: Frames,
    /// The user stack was cut short (a missing or bad unwind rule, too
    /// deep): writers end it with a `[truncated]` frame.
    pub user_truncated: bool,
    /// Events: CPU samples, context switches, page faults, allocations.
    pub count: u64,
    /// What the events weigh, when they weigh something else than one
    /// period each: off-CPU nanoseconds, allocated bytes. 0 for CPU.
    pub weight: u64,
    /// A third value (page faults in a memory profile).
    pub extra: u64,
    /// Objects and bytes still held at the window's end (memory profile).
    pub held: [u64; 2],
    /// The thread's Python frames at the event, innermost first (empty
    /// outside Python processes).
    pub python: Arc<[PyFrame]>,
}

impl RawSample {
    /// One event with these stacks and nothing more (no weight, nothing
    /// held, no Python frames, not truncated): a stack walked once outside
    /// a capture, or made up by a test.
    pub fn once(pid: Pid, tid: Tid, comm: impl Into<String>, user: Frames, kernel: Frames) -> Self {
        Self {
            pid,
            tid,
            comm: comm.into(),
            user,
            kernel,
            user_truncated: false,
            count: 1,
            weight: 0,
            extra: 0,
            held: [0; 2],
            python: Vec::new().into(),
        }
    }
}

/// A Python frame as the kernel saw it (see `profiler_common::python::PY_FRAME_WORDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyFrame {
    /// The code object's address.
    pub code: u64,
    /// The instruction being executed, in code units (-1: not started).
    pub lasti: i32,
    /// The code object's checksum when the frame was seen.
    pub checksum: u32,
    /// The outermost Python frame of its `_PyEval_EvalFrameDefault` call.
    pub entry: bool,
}

/// Decodes a Python stack record.
pub(crate) fn py_frames(words: &[u64]) -> Vec<PyFrame> {
    words
        .as_chunks::<PY_FRAME_WORDS>()
        .0
        .iter()
        .map(|w| PyFrame {
            code: w[0] & !PY_FRAME_ENTRY,
            lasti: w[1] as u32 as i32,
            checksum: (w[1] >> 32) as u32,
            entry: w[0] & PY_FRAME_ENTRY != 0,
        })
        .collect()
}

/// All samples of a capture and the addresses to symbolize.
#[derive(Clone, Debug, Default)]
pub struct Aggregate {
    pub samples: Vec<RawSample>,
    /// Distinct user addresses per process, sorted.
    pub user_addrs: BTreeMap<Pid, Vec<u64>>,
    /// Distinct kernel addresses, sorted.
    pub kernel_addrs: Vec<u64>,
    /// Total sample count.
    pub total: u64,
}

/// Builds [`Aggregate`] from drained maps.
pub(crate) fn aggregate(raw: &RawCapture) -> Aggregate {
    let mut resolved: BTreeMap<u64, Arc<[u64]>> = BTreeMap::new();
    let mut frames_of = |id: u64| -> Frames {
        match id {
            STACK_ID_NONE => Frames::None,
            STACK_ID_LOST => Frames::Lost,
            id => match raw.stacks.get(&id) {
                Some(ips) if ips.is_empty() => Frames::None,
                Some(ips) => {
                    Frames::Addrs(resolved.entry(id).or_insert_with(|| adjust_return_addresses(ips).into()).clone())
                }
                None => Frames::Missing,
            },
        }
    };
    let mut user_addrs: BTreeMap<Pid, BTreeSet<u64>> = BTreeMap::new();
    let mut kernel_addrs = BTreeSet::new();
    let mut python: BTreeMap<u64, Arc<[PyFrame]>> = BTreeMap::new();
    let no_python: Arc<[PyFrame]> = Arc::from(Vec::new());
    let mut samples = Vec::with_capacity(raw.counts.len());
    let mut total = 0;
    for &crate::bpf::Counted { key, count, weight, extra, held } in &raw.counts {
        let user = frames_of(key.user_stack_id);
        let kernel = frames_of(key.kernel_stack_id);
        let (pid, tid) = (Pid::new(key.pid), Tid::new(key.tid));
        user_addrs.entry(pid).or_default().extend(user.addrs().iter().copied());
        kernel_addrs.extend(kernel.addrs().iter().copied());
        total += count;
        let python = match raw.stacks.get(&key.py_stack_id) {
            Some(words) if key.py_stack_id != STACK_ID_NONE && key.py_stack_id != STACK_ID_LOST => {
                python.entry(key.py_stack_id).or_insert_with(|| py_frames(words).into()).clone()
            }
            _ => no_python.clone(),
        };
        samples.push(RawSample {
            pid,
            tid,
            comm: comm_string(&key.comm),
            user_truncated: raw.truncated.contains(&key.user_stack_id),
            user,
            kernel,
            count,
            weight,
            extra,
            held,
            python,
        });
    }
    // Deterministic order for writers and tests.
    samples.sort_by(|a, b| (a.pid, a.tid, b.count).cmp(&(b.pid, b.tid, a.count)));
    Aggregate {
        samples,
        user_addrs: user_addrs.into_iter().map(|(pid, set)| (pid, set.into_iter().collect())).collect(),
        kernel_addrs: kernel_addrs.into_iter().collect(),
        total,
    }
}

/// Return addresses point after the call; step back into it so lookups land
/// on the caller's line (and in the right function when the call is the
/// last instruction). The innermost frame is the sampled IP itself.
///
/// A zero address ends the stack: it is where a frame-pointer walk ran off
/// a broken chain, not a frame.
pub(crate) fn adjust_return_addresses(ips: &[u64]) -> Vec<u64> {
    let end = ips.iter().skip(1).position(|&ip| ip == 0).map_or(ips.len(), |p| p + 1);
    ips[..end].iter().enumerate().map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) }).collect()
}

/// `comm` bytes up to the first NUL, lossily decoded.
pub(crate) fn comm_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use profiler_common::SampleKey;

    use super::*;
    use crate::bpf::Counted;
    use crate::ids::{Pid, Tid};

    fn key(pid: u32, tid: u32, user: u64, kernel: u64) -> SampleKey {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"work");
        SampleKey { pid, tid, user_stack_id: user, kernel_stack_id: kernel, comm, py_stack_id: STACK_ID_NONE }
    }

    #[test]
    fn resolves_stacks_and_collects_addresses() {
        let raw = RawCapture {
            counts: vec![
                Counted { key: key(10, 11, 7, STACK_ID_NONE), count: 5, weight: 0, extra: 0, held: [0; 2] },
                Counted { key: key(10, 12, 7, 9), count: 2, weight: 0, extra: 0, held: [0; 2] },
                Counted { key: key(20, 20, STACK_ID_LOST, 9), count: 1, weight: 0, extra: 0, held: [0; 2] },
                Counted { key: key(20, 21, 1234, STACK_ID_NONE), count: 1, weight: 0, extra: 0, held: [0; 2] },
            ],
            stacks: HashMap::from([(7, vec![0x1000, 0x2005, 0x3005, 0]), (9, vec![0xffff_0000, 0xffff_1001])]),
            truncated: [7].into(),
            stats: Default::default(),
        };
        let agg = aggregate(&raw);
        assert_eq!(agg.total, 9);
        assert_eq!(agg.samples.len(), 4);
        let first = &agg.samples[0];
        assert_eq!((first.pid, first.tid, first.count), (Pid::new(10), Tid::new(11), 5));
        assert_eq!(first.comm, "work");
        assert_eq!(first.user.addrs(), &[0x1000, 0x2004, 0x3004]);
        assert_eq!(first.kernel, Frames::None);
        assert!(first.user_truncated);
        assert_eq!(agg.user_addrs[&Pid::new(10)], vec![0x1000, 0x2004, 0x3004]);
        assert_eq!(agg.kernel_addrs, vec![0xffff_0000, 0xffff_1000]);
        let lost = agg.samples.iter().find(|s| s.tid == Tid::new(20)).unwrap();
        assert_eq!(lost.user, Frames::Lost);
        assert!(!lost.user_truncated);
        let missing = agg.samples.iter().find(|s| s.tid == Tid::new(21)).unwrap();
        assert_eq!(missing.user, Frames::Missing);
        assert!(agg.user_addrs[&Pid::new(20)].is_empty());
    }

    #[test]
    fn comm_stops_at_nul_and_tolerates_garbage() {
        let mut c = [0u8; 16];
        c[..3].copy_from_slice(b"abc");
        assert_eq!(comm_string(&c), "abc");
        let full = [b'x'; 16];
        assert_eq!(comm_string(&full), "x".repeat(16));
        let mut bad = [0u8; 16];
        bad[0] = 0xff;
        assert_eq!(comm_string(&bad), "\u{fffd}");
    }
}
