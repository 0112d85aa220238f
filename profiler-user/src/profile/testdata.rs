//! Synthetic captures shared by the encoders' and sinks' tests: two
//! processes, inlined lines, kernel frames, a location without mapping, an
//! unsymbolized mapping, recursion, and unicode and `;` in names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::capture::{CaptureInfo, Loss, LossReason, TargetInfo, TargetKind, Trigger};
use super::{Line, Location, Mapping, Profile, ProfileKind, Sample, ValueType};
use crate::ids::{Pid, Tid};

/// 2026-11-26T12:30:00Z.
pub(crate) fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_696_200)
}

/// Sampling period at 99 Hz.
pub(crate) const PERIOD_NS: i64 = 10_101_010;

fn info(target: TargetInfo, trigger: Trigger) -> CaptureInfo {
    CaptureInfo {
        target,
        trigger,
        start: start(),
        end: start() + Duration::from_secs(30),
        frequency_hz: 99,
        samples_collected: 17,
        samples_lost: 3,
        losses: vec![Loss::new(LossReason::CountsMapFull, 3)],
        target_cpu_seconds: Some(0.18),
        expected_samples: Some(18),
        host: "testhost".into(),
        kernel: "6.8.0-test".into(),
        stackwatch_version: "0.1.0-test".into(),
        unwind: super::capture::UnwindSummary { mode: "auto".into(), stacks_with_tables: 15, ..Default::default() },
        stack_quality: Vec::new(),
        notes: Vec::new(),
    }
}

pub(crate) fn host_info() -> CaptureInfo {
    let target = TargetInfo {
        kind: TargetKind::Host,
        description: "host".into(),
        pids: vec![],
        file_name: "host".into(),
        file_pid: None,
    };
    info(target, Trigger::Manual { source: "record".into() })
}

pub(crate) fn pid_info() -> CaptureInfo {
    let target = TargetInfo {
        kind: TargetKind::Pid,
        description: "pid 100 (myservice)".into(),
        pids: vec![Pid::new(100)],
        file_name: "myservice".into(),
        file_pid: Some(Pid::new(100)),
    };
    let trigger =
        Trigger::Rule { rule: "cpu-above 80% for 30s".into(), observed: "93.5%".into(), window: "30s".into() };
    info(target, trigger)
}

/// A capture an Alertmanager alert started: pid target, CPU profile.
pub(crate) fn alert_capture() -> (CaptureInfo, Vec<Profile>) {
    let mut info = pid_info();
    let labels = [("alertname", "HighCpu"), ("job", "api"), ("severity", "page")];
    info.trigger = Trigger::Alert {
        alert: "HighCpu".into(),
        via: "alertmanager".into(),
        matched: "stackwatch_target=pid:100".into(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        annotations: [("summary".to_owned(), "api burns CPU".to_owned())].into_iter().collect(),
    };
    (info, vec![single_process_profile()])
}

fn line(function: &str, file: Option<&str>, line: Option<u32>) -> Line {
    Line { function: function.into(), file: file.map(Into::into), line }
}

fn loc(address: u64, mapping: Option<usize>, lines: Vec<Line>, kernel: bool) -> Location {
    Location { address, mapping, lines, kernel }
}

fn sample(pid: u32, tid: u32, comm: &str, locations: &[usize], count: i64) -> Sample {
    Sample {
        pid: Pid::new(pid),
        tid: Tid::new(tid),
        comm: comm.into(),
        locations: locations.to_vec(),
        values: vec![count, count * PERIOD_NS],
    }
}

pub(crate) fn empty_profile() -> Profile {
    Profile::new_cpu(99, start(), Duration::from_secs(30))
}

/// 17 samples in 6 stacks from `myservice` (pid 100) and `worker ü` (pid 200).
pub(crate) fn sample_profile() -> Profile {
    let mut p = empty_profile();
    p.mappings = vec![
        Mapping {
            start: 0x40_0000,
            limit: 0x50_0000,
            offset: 0,
            path: "/usr/bin/myservice".into(),
            build_id: Some("8f3c0ab1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708".into()),
        },
        Mapping {
            start: 0x7f00_0000_0000,
            limit: 0x7f00_0020_0000,
            offset: 0x2_8000,
            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            build_id: Some("b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7081920".into()),
        },
        Mapping {
            start: 0xffff_ffff_8100_0000,
            limit: 0xffff_ffff_8300_0000,
            offset: 0,
            path: "[kernel.kallsyms]".into(),
            build_id: None,
        },
        Mapping {
            start: 0x60_0000,
            limit: 0x70_0000,
            offset: 0,
            path: "/opt/stripped/bin/blob".into(),
            build_id: None,
        },
    ];
    p.locations = vec![
        /* 0 */
        loc(
            0xffff_ffff_8100_1000,
            Some(2),
            vec![line("do_syscall_64", Some("arch/x86/entry/common.c"), Some(83))],
            true,
        ),
        /* 1 */ loc(0xffff_ffff_8100_2000, Some(2), vec![line("entry_SYSCALL_64", None, None)], true),
        /* 2 */
        loc(
            0x40_1100,
            Some(0),
            vec![line("inline_helper", Some("src/hot.c"), Some(10)), line("hot_loop", Some("src/hot.c"), Some(42))],
            false,
        ),
        /* 3 */ loc(0x40_1200, Some(0), vec![line("main", Some("src/main.c"), Some(7))], false),
        /* 4 */ loc(0x7f00_0002_9d90, Some(1), vec![line("__libc_start_main", None, None)], false),
        /* 5 */ loc(0x7f00_000e_1234, Some(1), vec![line("write", None, None)], false),
        /* 6 */ loc(0x1_2345, None, vec![line("[unknown]", None, None)], false),
        /* 7 */
        loc(0x40_1300, Some(0), vec![line("operator;weird<ü>", Some("src/wéird.cc"), Some(5))], false),
        /* 8 */ loc(0x60_1400, Some(3), vec![line("blob+0x1400", None, None)], false),
        /* 9 */ loc(0x40_1210, Some(0), vec![line("main", Some("src/main.c"), Some(9))], false),
    ];
    p.samples = vec![
        sample(100, 100, "myservice", &[2, 3, 4], 4),
        sample(100, 101, "myservice", &[2, 3, 4], 3),
        sample(100, 100, "myservice", &[0, 1, 5, 3, 4], 2),
        sample(200, 200, "worker ü", &[0, 1, 5, 7, 6], 6),
        sample(200, 201, "worker ü", &[8, 7, 6], 1),
        // `main` calling itself.
        sample(100, 100, "myservice", &[3, 9, 4], 1),
    ];
    p
}

/// The `myservice` part of [`sample_profile`] plus a sample without a stack.
pub(crate) fn single_process_profile() -> Profile {
    let mut p = sample_profile();
    p.samples.retain(|s| s.pid == Pid::new(100));
    p.samples.push(sample(100, 102, "myservice", &[], 1));
    p
}

/// Off-cpu time of `myservice`: blocked in `write` and in a futex.
pub(crate) fn offcpu_profile() -> Profile {
    let mut p = sample_profile();
    p.kind = ProfileKind::OffCpu;
    p.sample_types = vec![ValueType::new("samples", "count"), ValueType::new("offcpu", "nanoseconds")];
    p.default_sample_type = Some("offcpu".into());
    p.period_type = ValueType::new("offcpu", "nanoseconds");
    p.period = 1;
    p.locations.push(loc(0xffff_ffff_8100_3000, Some(2), vec![line("futex_wait", None, None)], true));
    let futex = p.locations.len() - 1;
    p.samples = vec![
        Sample {
            pid: Pid::new(100),
            tid: Tid::new(100),
            comm: "myservice".into(),
            locations: vec![0, 1, 5, 3, 4],
            values: vec![2, 3_000_000],
        },
        Sample {
            pid: Pid::new(100),
            tid: Tid::new(101),
            comm: "myservice".into(),
            locations: vec![futex, 1, 3, 4],
            values: vec![1, 1_500_000],
        },
    ];
    p
}
