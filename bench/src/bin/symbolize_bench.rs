//! Symbolization throughput and memory.
//!
//! Builds what a whole-host capture hands the symbolizer: for every process
//! (or the `--pid`s given), addresses spread over each executable mapping.
//! Then symbolizes them twice with one [`Symbolizer`], as two captures of a
//! `watch` daemon would: cold (every object opened and parsed) and warm
//! (the same objects, from the cache). Prints addresses per second for
//! each pass and the resident memory they cost, then one JSON line for
//! `cargo xtask bench`.
//!
//! ```text
//! cargo run --release -p stackwatch-bench --bin symbolize_bench -- [--pid PID]... [--per-mapping N]
//! ```
//! Run as root: other processes' `map_files` need it.
#![expect(unused_crate_dependencies, reason = "the harness's dependencies are the main binary's")]

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use stackwatch::{parse_maps, Aggregate, Frames, Pid, Profile, RawSample, Symbolizer, Tid};

fn main() -> Result<()> {
    let mut pids: Vec<u32> = Vec::new();
    let mut per_mapping: u64 = 256;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pid" => pids.push(args.next().context("--pid needs a value")?.parse().context("bad --pid")?),
            "--per-mapping" => {
                per_mapping =
                    args.next().context("--per-mapping needs a value")?.parse().context("bad --per-mapping")?
            }
            other => bail!("unknown argument `{other}`; usage: symbolize_bench [--pid PID]... [--per-mapping N]"),
        }
    }
    if pids.is_empty() {
        pids = all_pids();
    }
    let me = std::process::id();
    pids.retain(|&p| p != me);
    let agg = addresses(&pids, per_mapping);
    let total: usize = agg.user_addrs.values().map(Vec::len).sum();
    if total == 0 {
        bail!("no executable mappings readable: run as root");
    }
    println!("targets: {} processes, {total} addresses ({per_mapping} per executable mapping)", agg.user_addrs.len());

    let rss_before = status_kib("VmRSS:");
    let mut symbolizer = Symbolizer::new();
    // What the capture loop pays each tick: first sight of every process,
    // then the same pids again.
    let observed: Vec<Pid> = agg.user_addrs.keys().copied().collect();
    let t = Instant::now();
    symbolizer.observe_pids(&observed);
    let observe_first = t.elapsed();
    let t = Instant::now();
    symbolizer.observe_pids(&observed);
    let observe_again = t.elapsed();
    let cold = pass(&mut symbolizer, &agg);
    let rss_cold = status_kib("VmRSS:");
    let warm = pass(&mut symbolizer, &agg);
    let rss_warm = status_kib("VmRSS:");
    let peak = status_kib("VmHWM:");
    let stats = symbolizer.stats();

    let rate = |d: Duration| total as f64 / d.as_secs_f64().max(1e-9);
    println!("cold: {:.2} s, {:.0} addresses/s, {:.1} % named", cold.0.as_secs_f64(), rate(cold.0), cold.1);
    println!("warm: {:.2} s, {:.0} addresses/s, {:.1} % named", warm.0.as_secs_f64(), rate(warm.0), warm.1);
    println!(
        "observe_pids: {:.1} ms for {} new processes ({} files pinned), {:.2} ms for the same ones again",
        observe_first.as_secs_f64() * 1e3,
        observed.len(),
        stats.pinned_files,
        observe_again.as_secs_f64() * 1e3
    );
    println!(
        "resident memory: {} MiB before, +{} MiB after the cold pass, +{} MiB after the warm one (peak +{} MiB)",
        rss_before / 1024,
        rss_cold.saturating_sub(rss_before) / 1024,
        rss_warm.saturating_sub(rss_before) / 1024,
        peak.saturating_sub(rss_before) / 1024
    );
    println!(
        "object cache: {} objects, {} MiB of files, {} hits, {} misses, {} evictions",
        stats.cache.objects,
        stats.cache.bytes >> 20,
        stats.cache.hits,
        stats.cache.misses,
        stats.cache.evictions
    );
    println!(
        "{{\"addresses\":{total},\"processes\":{},\"cold_addrs_per_sec\":{:.0},\"warm_addrs_per_sec\":{:.0},\
         \"rss_before_kib\":{rss_before},\"rss_cold_delta_kib\":{},\"rss_warm_delta_kib\":{},\"peak_delta_kib\":{},\
         \"named_pct\":{:.1},\"cached_objects\":{},\"observe_first_ms\":{:.1},\"observe_again_ms\":{:.2}}}",
        agg.user_addrs.len(),
        rate(cold.0),
        rate(warm.0),
        rss_cold.saturating_sub(rss_before),
        rss_warm.saturating_sub(rss_before),
        peak.saturating_sub(rss_before),
        warm.1,
        stats.cache.objects,
        observe_first.as_secs_f64() * 1e3,
        observe_again.as_secs_f64() * 1e3
    );
    Ok(())
}

/// One symbolization of everything: elapsed time and % of addresses named.
fn pass(symbolizer: &mut Symbolizer, agg: &Aggregate) -> (Duration, f64) {
    let start = Instant::now();
    let template = Profile::new_cpu(99, SystemTime::now(), Duration::from_secs(1));
    let period = template.period;
    let profile = symbolizer.build_profile(agg, template, |s| vec![s.count as i64, s.count as i64 * period]);
    let elapsed = start.elapsed();
    let user: Vec<_> = profile.locations.iter().filter(|l| !l.kernel && l.address != 0).collect();
    let unnamed = |name: &str| name.starts_with('[') || name.contains("+0x");
    let named = user.iter().filter(|l| l.lines.last().is_some_and(|l| !unnamed(&l.function))).count();
    (elapsed, 100.0 * named as f64 / user.len().max(1) as f64)
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// `per_mapping` addresses spread evenly over each executable mapping of
/// each process, with one sample per process so the profile has stacks.
fn addresses(pids: &[u32], per_mapping: u64) -> Aggregate {
    let mut agg = Aggregate::default();
    for &pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
        let mut addrs: Vec<u64> = parse_maps(&text)
            .iter()
            .filter(|m| !m.path.is_empty())
            .flat_map(|m| {
                let step = ((m.end - m.start) / per_mapping.max(1)).max(1);
                (m.start..m.end).step_by(step as usize).take(per_mapping as usize)
            })
            .collect();
        if addrs.is_empty() {
            continue;
        }
        addrs.sort_unstable();
        addrs.dedup();
        agg.samples.push(RawSample::once(
            Pid::new(pid),
            Tid::new(pid),
            "",
            Frames::Addrs(addrs[..addrs.len().min(32)].to_vec().into()),
            Frames::None,
        ));
        agg.total += 1;
        agg.user_addrs.insert(Pid::new(pid), addrs);
    }
    agg
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
