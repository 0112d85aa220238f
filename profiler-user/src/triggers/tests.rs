//! The decision on synthetic series: no procfs, no clock.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::ids::Pid;

const GIB: u64 = 1 << 30;

/// 2026-11-26T03:00:00Z, the 3 a.m. of the walkthrough.
fn three_am() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_662_000)
}

/// A synthetic target: each step advances both clocks and the CPU counter.
struct Feed {
    t0: Instant,
    elapsed: Duration,
    /// Added to the wall clock only, to fake a clock step or a suspend.
    wall_offset: Duration,
    cpu_seconds: f64,
    epoch: u64,
    capacity: f64,
    threads: Option<u64>,
    mem: u64,
    limit: u64,
}

impl Feed {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            elapsed: Duration::ZERO,
            wall_offset: Duration::ZERO,
            cpu_seconds: 1000.0,
            epoch: 1,
            capacity: 1.0,
            threads: Some(4),
            mem: GIB,
            limit: 8 * GIB,
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            at: self.t0 + self.elapsed,
            wall: three_am() + self.elapsed + self.wall_offset,
            present: true,
            cpu_seconds: self.cpu_seconds,
            epoch: self.epoch,
            cpu_capacity: self.capacity,
            threads: self.threads,
            mem_bytes: self.mem,
            mem_limit: self.limit,
            pids: vec![Pid::new(42)],
        }
    }

    /// `seconds` later, having used `pct` % of the capacity meanwhile.
    fn cpu(&mut self, seconds: f64, pct: f64) -> Sample {
        self.elapsed += Duration::from_secs_f64(seconds);
        self.cpu_seconds += seconds * self.capacity * pct / 100.0;
        self.sample()
    }

    /// One second later, with `mem` bytes resident.
    fn mem(&mut self, mem: u64) -> Sample {
        self.mem = mem;
        self.cpu(1.0, 0.0)
    }

    fn absent(&mut self, seconds: f64) -> Sample {
        self.elapsed += Duration::from_secs_f64(seconds);
        Sample::absent(self.t0 + self.elapsed, three_am() + self.elapsed)
    }
}

fn monitor(rules: Vec<Rule>, cooldown: Duration) -> ThresholdMonitor {
    ThresholdMonitor::new(&TriggerConfig { rules, cooldown, sample_interval: Duration::from_secs(1) })
}

fn cpu_above(pct: f64, secs: u64) -> Rule {
    Rule::CpuAbove { level: CpuLevel::Percent(pct), for_: Duration::from_secs(secs) }
}

fn cpu_jump(pct_over_avg: f64, window: u64, floor: f64) -> Rule {
    Rule::Jump {
        metric: Metric::Cpu,
        pct_over_avg,
        window: Duration::from_secs(window),
        floor: Threshold::Percent(floor),
        for_: Duration::ZERO,
    }
}

const TEN_MIN: Duration = Duration::from_secs(600);

/// No firing (typed: `[]` alone is ambiguous next to `bytes`' comparisons).
const NONE: [usize; 0] = [];

/// Feeds one-second intervals at these CPU percentages; returns the indices
/// of the samples that fired.
fn feed_cpu(m: &mut ThresholdMonitor, feed: &mut Feed, pcts: &[f64]) -> Vec<usize> {
    pcts.iter().enumerate().filter_map(|(i, &pct)| m.observe(&feed.cpu(1.0, pct)).map(|_| i)).collect()
}

#[test]
fn idle_then_busy_fires_once_after_the_window() {
    let mut m = monitor(vec![cpu_above(40.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    assert_eq!(m.observe(&feed.sample()), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[0.0; 5]), NONE);
    // 5 s idle, then busy: fires on the third busy interval.
    let mut fired = None;
    for i in 0..3 {
        fired = m.observe(&feed.cpu(1.0, 95.0));
        assert_eq!(fired.is_some(), i == 2, "busy interval {i}");
    }
    let Some(firing) = fired else { unreachable!() };
    assert_eq!(firing.rule_index, 0);
    assert_eq!(firing.rule_text, "cpu ≥ 40% for 3s");
    assert_eq!(firing.observed, "avg 95.0% (0.95 cores), min 95.0% (0.95 cores) of 1 CPU");
    assert_eq!(firing.window, "2026-11-26T03:00:05Z–03:00:08Z");
    assert_eq!(firing.window_start, three_am() + Duration::from_secs(5));
    assert_eq!(firing.kinds, [ProfileKind::Cpu, ProfileKind::OffCpu]);
    assert_eq!(
        firing.trigger(),
        Trigger::Rule {
            rule: "cpu ≥ 40% for 3s".into(),
            observed: "avg 95.0% (0.95 cores), min 95.0% (0.95 cores) of 1 CPU".into(),
            window: "2026-11-26T03:00:05Z–03:00:08Z".into(),
        }
    );
    assert_eq!(
        firing.trigger().summary(),
        "triggered: cpu ≥ 40% for 3s (observed avg 95.0% (0.95 cores), min 95.0% (0.95 cores) of 1 CPU over 2026-11-26T03:00:05Z–03:00:08Z)"
    );
    assert_eq!(
        firing.to_string(),
        "rule cpu ≥ 40% for 3s fired: avg 95.0% (0.95 cores), min 95.0% (0.95 cores) of 1 CPU over 2026-11-26T03:00:05Z–03:00:08Z"
    );
    // Still busy, still capturing: no second firing.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[95.0; 30]), NONE);
}

#[test]
fn every_interval_must_hold_not_just_the_average() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    // Averages of any 3 s are ≥ 80, but one interval dips below.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[100.0, 100.0, 79.0, 100.0, 100.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[100.0]), [0]);
}

#[test]
fn exactly_at_the_threshold_fires() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    feed.capacity = 3.0;
    m.observe(&feed.sample());
    // 0.8 × 3 CPUs a second: floats that do not add up exactly.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[80.0, 80.0, 80.0]), [2]);
}

#[test]
fn percent_is_of_the_capacity() {
    let mut m = monitor(vec![cpu_above(50.0, 2)], TEN_MIN);
    let mut feed = Feed::new();
    feed.capacity = 4.0;
    m.observe(&feed.sample());
    // 1.9 CPUs busy out of 4: 47.5 %.
    for _ in 0..5 {
        feed.elapsed += Duration::from_secs(1);
        feed.cpu_seconds += 1.9;
        assert_eq!(m.observe(&feed.sample()), None);
    }
    assert!((m.status(feed.t0 + feed.elapsed).cpu_pct.unwrap_or_default() - 47.5).abs() < 1e-6);
    // A quota of 2 CPUs (the cgroup's cpu.max): the same use is 95 %.
    feed.capacity = 2.0;
    feed.elapsed += Duration::from_secs(1);
    feed.cpu_seconds += 1.9;
    assert_eq!(m.observe(&feed.sample()), None);
    feed.elapsed += Duration::from_secs(1);
    feed.cpu_seconds += 1.9;
    assert!(m.observe(&feed.sample()).is_some());
}

#[test]
fn jittery_intervals_still_cover_the_window() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(m.observe(&feed.cpu(0.998, 90.0)), None);
    assert_eq!(m.observe(&feed.cpu(0.999, 90.0)), None);
    assert!(m.observe(&feed.cpu(0.998, 90.0)).is_some());
}

#[test]
fn target_not_started_yet() {
    let mut m = monitor(vec![cpu_above(1.0, 1), cpu_jump(10.0, 2, 0.0)], TEN_MIN);
    let mut feed = Feed::new();
    for _ in 0..100 {
        assert_eq!(m.observe(&feed.absent(1.0)), None);
    }
    let status = m.status(feed.t0 + feed.elapsed);
    assert_eq!(status.cpu_pct, None);
    assert_eq!(status.rules[0].held_for, Some(Duration::ZERO));
    // It starts: the first sample is only a baseline.
    assert_eq!(m.observe(&feed.sample()), None);
    assert!(m.observe(&feed.cpu(1.0, 100.0)).is_some());
}

#[test]
fn restart_mid_window_restarts_the_window() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // The service restarts: one sample without it.
    assert_eq!(m.observe(&feed.absent(1.0)), None);
    // The new instance is busy at once; the sampler's counter is new too.
    feed.cpu_seconds = 0.0;
    assert_eq!(m.observe(&feed.cpu(1.0, 0.0)), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0, 90.0]), [2]);
}

#[test]
fn counter_going_backwards_discards_the_interval() {
    let mut m = monitor(vec![cpu_above(80.0, 3), cpu_jump(50.0, 2, 10.0)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // Reset without an absent sample in between: no negative interval, no
    // firing on it, and the window restarts.
    feed.cpu_seconds = 5.0;
    assert_eq!(m.observe(&feed.cpu(1.0, 0.0)), None);
    assert_eq!(m.status(feed.t0 + feed.elapsed).cpu_pct, None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn new_epoch_restarts_the_window() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // The cgroup was recreated and its counter is, by chance, higher.
    feed.epoch += 1;
    feed.cpu_seconds += 500.0;
    assert_eq!(m.observe(&feed.cpu(1.0, 90.0)), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn stalled_sampler_restarts_the_window() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // 10 minutes without a sample: the average says nothing about them.
    assert_eq!(m.observe(&feed.cpu(600.0, 90.0)), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn wall_clock_jump_restarts_the_window() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // Suspended for an hour: the monotonic clock stood still, the wall
    // clock did not.
    feed.wall_offset = Duration::from_secs(3600);
    assert_eq!(m.observe(&feed.cpu(1.0, 90.0)), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    let Some(firing) = m.observe(&feed.cpu(1.0, 90.0)) else { panic!("should fire") };
    // The window is told in the new wall-clock time.
    assert_eq!(firing.window, "2026-11-26T04:00:03Z–04:00:06Z");
    // A wall clock stepped backwards is no better.
    let mut m = monitor(vec![cpu_above(80.0, 2)], TEN_MIN);
    let mut feed = Feed::new();
    feed.wall_offset = Duration::from_secs(7200);
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), NONE);
    feed.wall_offset = Duration::ZERO;
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn samples_out_of_order_or_too_close_are_harmless() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // The same instant again, then 10 ms later: ignored, not a restart.
    assert_eq!(m.observe(&feed.sample()), None);
    assert_eq!(m.observe(&feed.cpu(0.01, 90.0)), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);

    // A sample from the past restarts the windows.
    let mut m = monitor(vec![cpu_above(80.0, 2)], TEN_MIN);
    let mut feed = Feed::new();
    feed.elapsed = Duration::from_secs(100);
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), NONE);
    feed.elapsed -= Duration::from_secs(50);
    assert_eq!(m.observe(&feed.sample()), None);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn cooldown_boundary() {
    let cooldown = Duration::from_secs(60);
    let mut m = monitor(vec![cpu_above(80.0, 3)], cooldown);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 3]), [2]);
    let fired_at = feed.t0 + feed.elapsed;
    // A 10 s capture.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 10]), NONE);
    m.capture_finished(feed.t0 + feed.elapsed);
    assert_eq!(m.status(feed.t0 + feed.elapsed).cooldown_left, Some(Duration::from_secs(50)));
    // Busy all along: nothing until 60 s after the firing, then at once.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 49]), NONE);
    assert_eq!(feed.t0 + feed.elapsed + Duration::from_secs(1), fired_at + cooldown);
    let Some(firing) = m.observe(&feed.cpu(1.0, 90.0)) else { panic!("should fire when the cooldown ends") };
    assert_eq!(firing.at, fired_at + cooldown);
    assert_eq!(m.status(firing.at).cooldown_left, Some(cooldown));
}

#[test]
fn no_second_firing_until_the_capture_is_reported_finished() {
    let mut m = monitor(vec![cpu_above(80.0, 1)], Duration::from_secs(5));
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
    assert!(m.status(feed.t0 + feed.elapsed).capturing);
    // Long past the cooldown, but the capture has not ended.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 100]), NONE);
    m.capture_finished(feed.t0 + feed.elapsed);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
}

#[test]
fn long_capture_suppresses_and_the_window_restarts_after_it() {
    let mut m = monitor(vec![cpu_above(80.0, 3)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0]), NONE);
    // A manual capture starts: nothing fires while it runs.
    m.capture_started(feed.t0 + feed.elapsed);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 120]), NONE);
    m.capture_finished(feed.t0 + feed.elapsed);
    // Busy before, during and after: it takes 3 s measured after the end.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0, 90.0, 90.0]), [2]);
}

#[test]
fn first_rule_that_holds_fires() {
    let rules =
        vec![Rule::MemAbove { threshold: Threshold::Bytes(GIB), for_: Duration::from_secs(2) }, cpu_above(80.0, 2)];
    let mut m = monitor(rules, TEN_MIN);
    let mut feed = Feed::new();
    feed.mem = 2 * GIB;
    m.observe(&feed.sample());
    assert_eq!(m.observe(&feed.cpu(1.0, 90.0)), None);
    let Some(firing) = m.observe(&feed.cpu(1.0, 90.0)) else { panic!("should fire") };
    assert_eq!(firing.rule_index, 0);
    assert_eq!(firing.kinds, [ProfileKind::Memory, ProfileKind::Cpu]);
}

#[test]
fn memory_percent_is_of_the_limit() {
    // A target without a cgroup limit: the sampler reports MemTotal (16 GiB).
    let mut m =
        monitor(vec![Rule::MemAbove { threshold: Threshold::Percent(80.0), for_: Duration::from_secs(3) }], TEN_MIN);
    let mut feed = Feed::new();
    feed.limit = 16 * GIB;
    m.observe(&feed.sample());
    // 12 GiB is 75 %.
    for _ in 0..5 {
        assert_eq!(m.observe(&feed.mem(12 * GIB)), None);
    }
    assert_eq!(m.observe(&feed.mem(14 * GIB)), None);
    assert_eq!(m.observe(&feed.mem(13 * GIB)), None);
    let Some(firing) = m.observe(&feed.mem(15 * GIB)) else { panic!("should fire") };
    assert_eq!(firing.rule_text, "memory ≥ 80% for 3s");
    assert_eq!(firing.observed, "avg 87.5%, min 81.2% of 16GiB");
}

#[test]
fn memory_size_rule() {
    let mut m =
        monitor(vec![Rule::MemAbove { threshold: Threshold::Bytes(2 * GIB), for_: Duration::from_secs(2) }], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    // Growing steadily by 512 MiB a second.
    let fired: Vec<u64> = (1..10).filter(|i| m.observe(&feed.mem(GIB + i * (GIB / 2))).is_some()).collect();
    // 2 GiB at i = 2, 2.5 GiB at i = 3: two intervals at or above.
    assert_eq!(fired, [3]);
}

#[test]
fn memory_size_rule_observed_text() {
    let mut m =
        monitor(vec![Rule::MemAbove { threshold: Threshold::Bytes(2 * GIB), for_: Duration::from_secs(2) }], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    m.observe(&feed.mem(2 * GIB));
    let Some(firing) = m.observe(&feed.mem(3 * GIB)) else { panic!("should fire") };
    assert_eq!(firing.rule_text, "memory ≥ 2GiB for 2s");
    assert_eq!(firing.observed, "avg 2.5GiB, min 2GiB");
}

#[test]
fn jump_over_the_moving_average_fires() {
    let mut m = monitor(vec![cpu_jump(50.0, 10, 20.0)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[30.0; 20]), NONE);
    // +33 %: not enough.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[40.0]), NONE);
    let Some(firing) = m.observe(&feed.cpu(1.0, 70.0)) else { panic!("should fire") };
    assert_eq!(firing.rule_text, "cpu ≥ +50% over its 10s average (floor 20%)");
    // The average of the 10 s before: nine at 30 %, one at 40 %.
    assert_eq!(firing.observed, "70.0%, up 126% from a 31.0% average");
    assert_eq!(firing.window, "2026-11-26T03:00:11Z–03:00:22Z");
}

#[test]
fn jump_floor_keeps_idle_noise_out() {
    let mut m = monitor(vec![cpu_jump(50.0, 10, 20.0)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    // 1 % → 15 % is +1400 %, but below the floor.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[1.0; 20]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[15.0, 1.0, 19.9, 1.0]), NONE);
    // From idle (0 %) to the floor: fires.
    let mut m = monitor(vec![cpu_jump(50.0, 10, 20.0)], TEN_MIN);
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[0.0; 20]), NONE);
    let Some(firing) = m.observe(&feed.cpu(1.0, 20.0)) else { panic!("should fire") };
    assert_eq!(firing.observed, "20.0%, up from a 0.0% average");
}

#[test]
fn jump_does_not_fire_on_a_steady_high_value() {
    let mut m = monitor(vec![cpu_jump(20.0, 10, 10.0)], Duration::from_secs(5));
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[95.0; 300]), NONE);
    // Once it has jumped and the level stays, the average catches up.
    let mut m = monitor(vec![cpu_jump(20.0, 10, 10.0)], Duration::from_secs(5));
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[40.0; 20]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), [0]);
    m.capture_finished(feed.t0 + feed.elapsed);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0; 100]), NONE);
}

#[test]
fn jump_needs_a_full_window_of_history() {
    let mut m = monitor(vec![cpu_jump(50.0, 10, 20.0)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[10.0; 9]), NONE);
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), NONE);
    // After a restart the baseline is gone too.
    let mut m = monitor(vec![cpu_jump(50.0, 10, 20.0)], TEN_MIN);
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[10.0; 20]), NONE);
    m.observe(&feed.absent(1.0));
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[90.0]), NONE);
}

#[test]
fn sustained_jump() {
    let rule = Rule::Jump {
        metric: Metric::Cpu,
        pct_over_avg: 100.0,
        window: Duration::from_secs(10),
        floor: Threshold::Percent(10.0),
        for_: Duration::from_secs(3),
    };
    let mut m = monitor(vec![rule], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[20.0; 15]), NONE);
    // A one-second spike is not a sustained jump.
    assert_eq!(feed_cpu(&mut m, &mut feed, &[80.0, 20.0, 20.0, 20.0]), NONE);
    let Some(firing) = (0..3).find_map(|_| m.observe(&feed.cpu(1.0, 60.0))) else { panic!("should fire") };
    assert_eq!(firing.rule_text, "cpu ≥ +100% over its 10s average (floor 10%) for 3s");
    assert_eq!(firing.observed, "avg 60.0%, min 60.0%, up 131% from a 26.0% average");
}

#[test]
fn memory_jump_with_a_size_floor() {
    let rule = Rule::Jump {
        metric: Metric::Mem,
        pct_over_avg: 30.0,
        window: Duration::from_secs(5),
        floor: Threshold::Bytes(GIB),
        for_: Duration::ZERO,
    };
    // 100 MiB → 200 MiB: +100 %, under the 1 GiB floor.
    let mut m = monitor(vec![rule.clone()], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    for _ in 0..10 {
        assert_eq!(m.observe(&feed.mem(100 << 20)), None);
    }
    assert_eq!(m.observe(&feed.mem(200 << 20)), None);
    // 1 GiB → 1.5 GiB: +50 %, above it.
    let mut m = monitor(vec![rule], TEN_MIN);
    m.observe(&feed.sample());
    for _ in 0..10 {
        assert_eq!(m.observe(&feed.mem(GIB)), None);
    }
    let Some(firing) = m.observe(&feed.mem(1536 << 20)) else { panic!("should fire") };
    assert_eq!(firing.rule_text, "memory ≥ +30% over its 5s average (floor 1GiB)");
    assert_eq!(firing.observed, "1.5GiB, up 50% from a 1GiB average");
    assert_eq!(firing.kinds, [ProfileKind::Memory, ProfileKind::Cpu]);
}

#[test]
fn history_stays_bounded() {
    let mut m = monitor(vec![cpu_above(80.0, 60), cpu_jump(50.0, 120, 10.0)], TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    for i in 0..10_000 {
        m.observe(&feed.cpu(if i % 2 == 0 { 0.5 } else { 1.0 }, 10.0));
    }
    // 120 s at intervals of at least half a second.
    assert_eq!(m.capacity, 244);
    assert!(m.history.len() <= m.capacity);
}

#[test]
fn status_tells_how_long_a_rule_has_held() {
    let mut m = monitor(vec![cpu_above(80.0, 180), cpu_jump(50.0, 60, 10.0)], TEN_MIN);
    let mut feed = Feed::new();
    feed.limit = 4 * GIB;
    m.observe(&feed.sample());
    feed_cpu(&mut m, &mut feed, &[10.0, 90.0, 90.0, 95.0]);
    let status = m.status(feed.t0 + feed.elapsed);
    assert!(!status.capturing);
    assert_eq!(status.cooldown_left, None);
    assert!((status.cpu_pct.unwrap_or_default() - 95.0).abs() < 1e-6, "{status:?}");
    assert_eq!((status.mem_bytes, status.mem_limit), (Some(GIB), Some(4 * GIB)));
    assert_eq!(
        status.rules,
        [
            RuleStatus {
                rule: "cpu ≥ 80% for 3m".into(),
                other_reading: Some("0.8 cores of 1 CPU".into()),
                held_for: Some(Duration::from_secs(3))
            },
            RuleStatus {
                rule: "cpu ≥ +50% over its 1m average (floor 10%)".into(),
                other_reading: None,
                held_for: None
            },
        ]
    );
}

#[test]
fn no_rules_never_fire() {
    let mut m = monitor(Vec::new(), TEN_MIN);
    let mut feed = Feed::new();
    m.observe(&feed.sample());
    assert_eq!(feed_cpu(&mut m, &mut feed, &[100.0; 10]), NONE);
    assert!(m.rules().is_empty());
}

#[test]
fn window_text_spans_midnight() {
    let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_651_200); // 2026-11-26T00:00:00Z
    assert_eq!(
        window_text(midnight - Duration::from_secs(90), midnight + Duration::from_secs(90)),
        "2026-11-25T23:58:30Z–2026-11-26T00:01:30Z"
    );
    assert_eq!(window_text(midnight, midnight + Duration::from_secs(180)), "2026-11-26T00:00:00Z–00:03:00Z");
}

fn cpu_cores_above(cores: f64, secs: u64) -> Rule {
    Rule::CpuAbove { level: CpuLevel::Cores(cores), for_: Duration::from_secs(secs) }
}

/// The report that started it: a single-threaded service pegged at 99 % in
/// `top` on a 2-CPU host. `--cpu-above 50` (of both CPUs) never holds;
/// `--cpu-above 0.9cores` fires after its window, and says so in both
/// readings.
#[test]
fn cores_rule_fires_where_top_says_so_and_percent_rule_cannot() {
    let mut feed = Feed::new();
    feed.capacity = 2.0;
    feed.threads = Some(1);
    let mut pct = monitor(vec![cpu_above(50.0, 3)], TEN_MIN);
    let mut cores = monitor(vec![cpu_cores_above(0.9, 3)], TEN_MIN);
    pct.observe(&feed.sample());
    cores.observe(&feed.sample());
    // Both readings are known from the first sample, before any interval.
    let first = cores.status(feed.t0);
    assert_eq!(first.rules[0].other_reading.as_deref(), Some("45% of 2 CPUs"));
    assert_eq!((first.cpu_capacity, first.cpu_cores), (Some(2.0), None));
    let mut fired = Vec::new();
    for i in 0..6 {
        // 0.99 cores of 2 CPUs.
        let sample = feed.cpu(1.0, 49.5);
        assert_eq!(pct.observe(&sample), None, "interval {i}");
        if let Some(firing) = cores.observe(&sample) {
            fired.push((i, firing));
        }
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (i, firing) = &fired[0];
    assert_eq!(*i, 2);
    assert_eq!(firing.rule_text, "cpu ≥ 0.9 cores for 3s");
    assert_eq!(firing.observed, "avg 0.99 cores (49.5%), min 0.99 cores (49.5%) of 2 CPUs");
    let status = pct.status(feed.t0 + feed.elapsed);
    assert_eq!(status.rules[0].other_reading.as_deref(), Some("1 core of 2 CPUs"));
    assert_eq!(status.rules[0].held_for, Some(Duration::ZERO));
    assert!((status.cpu_cores.unwrap_or_default() - 0.99).abs() < 1e-9, "{status:?}");
    assert_eq!(status.cpu_capacity, Some(2.0));
}

#[test]
fn cannot_fire_names_threads_and_quota() {
    let mut feed = Feed::new();
    feed.capacity = 2.0;
    feed.threads = Some(1);
    let rules = [cpu_above(50.0, 3), cpu_cores_above(0.9, 3), cpu_above(40.0, 3), cpu_cores_above(2.5, 3)];
    let warnings = cannot_fire(&rules, &feed.sample());
    assert_eq!(
        warnings,
        [
            "rule `cpu ≥ 50% for 3s` cannot fire: it needs 1 core (50% of 2 CPUs) and its 1 thread can use \
             at most 1 core; lower it (e.g. `--cpu-above 0.9cores`, as `top` counts)",
            "rule `cpu ≥ 2.5 cores for 3s` cannot fire: it needs 2.5 cores and its 1 thread can use at most \
             1 core; lower it (e.g. `--cpu-above 0.9cores`, as `top` counts)",
        ]
    );
    // With enough threads only the CPUs (quota) bound it.
    feed.threads = Some(8);
    assert_eq!(
        cannot_fire(&rules, &feed.sample()),
        ["rule `cpu ≥ 2.5 cores for 3s` cannot fire: it needs 2.5 cores and it has 2 CPUs available \
          (CPU quota, else online CPUs); lower it (e.g. `--cpu-above 1.8cores`, as `top` counts)"]
    );
    // A cgroup or the host: no thread count, only the capacity.
    feed.threads = None;
    assert_eq!(cannot_fire(&rules[..3], &feed.sample()), Vec::<String>::new());
    // An absent target says nothing.
    assert_eq!(cannot_fire(&rules, &feed.absent(1.0)), Vec::<String>::new());
}
