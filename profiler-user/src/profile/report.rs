//! The top-functions table `record` prints after a capture.
//!
//! It answers "where did the time go?" without leaving the terminal, in the
//! shape of `go tool pprof -top` so the numbers read the same way there:
//! *flat* is what a function spent itself (the innermost line of the leaf
//! location, so an inlined callee gets the blame rather than its caller),
//! *cum* what it spent including callees, counted once per sample even when
//! the function recurses.
//!
//! Each kind is shown the way it answers its question:
//! - off-CPU: every stack ends in the scheduler, so flat would be 100 % in
//!   `__schedule` and every cum 100 %. The scheduler's frames, the syscall
//!   entry's (`do_syscall_64`…), and the kernel frames every stack shares
//!   (threads that all block the same way) are left out: flat is then where
//!   a thread blocked (`do_nanosleep`, `pipe_read`, or the user function,
//!   when all block alike), and rows are sorted by cum, the time spent
//!   blocked below a function;
//! - memory: only stacks that count for the shown sample type make rows
//!   (page faults are not bytes allocated); if no stack does (no allocation
//!   probes, as in a whole-host capture), the first sample type that has
//!   any is shown instead;
//! - several processes: a process column, rows per process name and function.
//!
//! Names longer than [`FUNCTION_WIDTH`] (C++ templates) lose their middle,
//! keeping the start (scope) and the end (the function and its arguments).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::profile::{Profile, ProfileKind, Sample};

/// Name used when a sample has no frames or a frame has no lines.
const UNKNOWN: &str = "[unknown]";

/// Widest function name shown, in characters.
pub(crate) const FUNCTION_WIDTH: usize = 72;

/// Widest process name shown (a `comm` has at most 15 bytes).
const PROCESS_WIDTH: usize = 16;

/// Index of the sample type `go tool pprof` shows by default: the named
/// default, else the last one (pprof's own rule).
pub(crate) fn default_value_index(profile: &Profile) -> usize {
    profile
        .default_sample_type
        .as_deref()
        .and_then(|name| profile.sample_types.iter().position(|t| t.kind == name))
        .unwrap_or_else(|| profile.sample_types.len().saturating_sub(1))
}

/// The sample type the table shows: the default one, or when no sample has
/// any of it, the first type some sample has (see the module docs).
fn table_value_index(profile: &Profile) -> usize {
    let default = default_value_index(profile);
    if profile.total(default) != 0 {
        return default;
    }
    (0..profile.sample_types.len()).find(|&i| profile.total(i) != 0).unwrap_or(default)
}

/// Index of the value counting events (unit `count`), if any.
pub(crate) fn count_value_index(profile: &Profile) -> Option<usize> {
    profile.sample_types.iter().position(|t| t.unit == "count")
}

/// Number of samples taken: the total of the count value, or the number of
/// distinct stacks when the profile has no count value.
pub(crate) fn sample_count(profile: &Profile) -> i64 {
    match count_value_index(profile) {
        Some(index) => profile.total(index),
        None => profile.samples.len() as i64,
    }
}

/// `2970` → `2,970`.
pub(crate) fn group_thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopEntry {
    /// The process name, when the profile holds several processes.
    pub process: Option<String>,
    pub function: String,
    pub flat: i64,
    pub flat_pct: f64,
    pub cum: i64,
    pub cum_pct: f64,
}

/// The first `n` rows of the table for value `value_index` (see the module
/// docs for what a row is and how rows are sorted; ties are broken so the
/// order is stable). Percentages are of the profile's total for that value.
#[cfg(test)]
pub(crate) fn top_functions(profile: &Profile, value_index: usize, n: usize) -> Vec<TopEntry> {
    let mut all = all_functions(profile, value_index);
    all.truncate(n);
    all
}

/// Sums of one row.
#[derive(Default)]
struct Totals {
    flat: i64,
    cum: i64,
    /// Fewest frames between the function and the leaf: orders off-CPU
    /// rows of equal cum from where threads block outwards.
    depth: usize,
}

fn all_functions(profile: &Profile, value_index: usize) -> Vec<TopEntry> {
    let per_process = spans_processes(profile);
    let offcpu = profile.kind == ProfileKind::OffCpu;
    let shared = if offcpu { shared_kernel_frames(profile, value_index) } else { HashSet::new() };
    let mut totals: HashMap<(Option<&str>, &str), Totals> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for sample in &profile.samples {
        let value = sample.values.get(value_index).copied().unwrap_or(0);
        // Counts nothing of this type (a page fault in a bytes table).
        if value == 0 {
            continue;
        }
        let process = per_process.then_some(sample.comm.as_str());
        let mut stack = frames(profile, sample);
        if offcpu {
            stack = blocking_frames(stack, &shared);
        }
        if stack.is_empty() {
            stack.push((UNKNOWN, false));
        }
        let leaf =
            totals.entry((process, stack[0].0)).or_insert_with(|| Totals { depth: usize::MAX, ..Totals::default() });
        leaf.flat = leaf.flat.saturating_add(value);
        seen.clear();
        for (depth, &(function, _)) in stack.iter().enumerate() {
            if !seen.insert(function) {
                continue;
            }
            let entry = totals.entry((process, function)).or_insert_with(|| Totals { depth, ..Totals::default() });
            entry.cum = entry.cum.saturating_add(value);
            entry.depth = entry.depth.min(depth);
        }
    }
    let total = profile.total(value_index);
    let pct = |v: i64| if total == 0 { 0.0 } else { v as f64 * 100.0 / total as f64 };
    let mut rows: Vec<(TopEntry, usize)> = totals
        .into_iter()
        .filter(|(_, t)| t.flat != 0 || t.cum != 0)
        .map(|((process, function), t)| {
            let entry = TopEntry {
                process: process.map(str::to_owned),
                function: function.to_owned(),
                flat: t.flat,
                flat_pct: pct(t.flat),
                cum: t.cum,
                cum_pct: pct(t.cum),
            };
            (entry, t.depth)
        })
        .collect();
    let by_name = |a: &TopEntry, b: &TopEntry| a.function.cmp(&b.function).then_with(|| a.process.cmp(&b.process));
    if offcpu {
        rows.sort_by(|(a, da), (b, db)| {
            b.cum.cmp(&a.cum).then(b.flat.cmp(&a.flat)).then(da.cmp(db)).then_with(|| by_name(a, b))
        });
    } else {
        rows.sort_by(|(a, _), (b, _)| b.flat.cmp(&a.flat).then(b.cum.cmp(&a.cum)).then_with(|| by_name(a, b)));
    }
    rows.into_iter().map(|(entry, _)| entry).collect()
}

/// Whether the samples come from more than one process.
fn spans_processes(profile: &Profile) -> bool {
    let mut pids = profile.samples.iter().map(|s| s.pid);
    pids.next().is_some_and(|first| pids.any(|p| p != first))
}

/// `(function, kernel)` of each line of a sample's stack, leaf first.
fn frames<'p>(profile: &'p Profile, sample: &Sample) -> Vec<(&'p str, bool)> {
    sample
        .locations
        .iter()
        .filter_map(|&i| profile.locations.get(i))
        .flat_map(|location| location.lines.iter().map(|line| (line.function.as_str(), location.kernel)))
        .collect()
}

/// Kernel functions in the stack of every off-CPU sample that counts.
fn shared_kernel_frames(profile: &Profile, value_index: usize) -> HashSet<&str> {
    let mut shared: Option<HashSet<&str>> = None;
    for sample in profile.samples.iter().filter(|s| s.values.get(value_index).is_some_and(|&v| v != 0)) {
        let kernel: HashSet<&str> = frames(profile, sample).into_iter().filter(|f| f.1).map(|f| f.0).collect();
        match &mut shared {
            None => shared = Some(kernel),
            Some(shared) => shared.retain(|f| kernel.contains(f)),
        }
    }
    shared.unwrap_or_default()
}

/// An off-CPU stack without the scheduler's and the syscall entry's frames
/// and the kernel frames `shared` by every stack; if that leaves nothing
/// (kernel threads that all block alike), without the first two only.
fn blocking_frames<'p>(frames: Vec<(&'p str, bool)>, shared: &HashSet<&str>) -> Vec<(&'p str, bool)> {
    let kept: Vec<(&str, bool)> =
        frames.iter().copied().filter(|&(f, kernel)| !(kernel && (is_plumbing(f) || shared.contains(f)))).collect();
    if !kept.is_empty() {
        return kept;
    }
    let kept: Vec<(&str, bool)> = frames.iter().copied().filter(|&(f, kernel)| !(kernel && is_plumbing(f))).collect();
    if kept.is_empty() {
        frames
    } else {
        kept
    }
}

/// Kernel functions every wait of a kind passes through, which say that a
/// thread waited but not where: the scheduler's own (`__schedule`,
/// `schedule_timeout`, `io_schedule`, `preempt_schedule_irq`,
/// `__cond_resched`, `finish_task_switch.isra.0` …) and the syscall
/// entry's (`entry_SYSCALL_64_after_hwframe`, `do_syscall_64`,
/// `x64_sys_call`, arm64's `el0_svc` …; `__x64_sys_futex` stays: it names
/// the call).
fn is_plumbing(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "schedule",
        "io_schedule",
        "preempt_schedule",
        "cond_resched",
        "finish_task_switch",
        "switch_to",
        "context_switch",
        "entry_SYSCALL",
        "do_syscall_",
        "x64_sys_call",
        "el0_svc",
        "el0t_64_sync",
        "invoke_syscall",
    ];
    let name = function.trim_start_matches('_');
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `name` cut to at most `width` characters by replacing its middle with
/// `…`, so both the scope it starts with and the function (and arguments)
/// it ends with stay readable.
pub(crate) fn truncate_middle(name: &str, width: usize) -> Cow<'_, str> {
    let len = name.chars().count();
    if len <= width || width < 3 {
        return Cow::Borrowed(name);
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let mut out: String = name.chars().take(head).collect();
    out.push('…');
    out.extend(name.chars().skip(len - tail));
    Cow::Owned(out)
}

/// A short aligned table like `go tool pprof -top`, by the profile's
/// default sample type (cpu time for a cpu profile; see the module docs),
/// ending with a newline.
pub(crate) fn format_top_table(profile: &Profile, n: usize) -> String {
    if profile.samples.is_empty() {
        return "no samples\n".to_owned();
    }
    let index = table_value_index(profile);
    let (kind, unit) = profile.sample_types.get(index).map_or(("value", ""), |t| (t.kind.as_str(), t.unit.as_str()));
    let all = all_functions(profile, index);
    let rows = &all[..n.min(all.len())];

    let mut out = String::new();
    // A table of a count (page faults) needs no second count.
    if unit != "count" {
        let _ = write!(out, "{} samples, ", group_thousands(sample_count(profile)));
    }
    let _ = write!(
        out,
        "{} {kind} in total; showing the top {} of {} functions",
        format_value(profile.total(index), unit),
        rows.len(),
        all.len()
    );
    if profile.kind == ProfileKind::OffCpu {
        out.push_str(" by cum (scheduler and syscall entry left out)");
    }
    out.push('\n');
    // A name with a line break would break the table's alignment.
    let printable = |s: &str| -> String { s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect() };
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let process = r.process.as_deref().map(|p| truncate_middle(&printable(p), PROCESS_WIDTH).into_owned());
            [
                format_value(r.flat, unit),
                format!("{:.2}%", r.flat_pct),
                format_value(r.cum, unit),
                format!("{:.2}%", r.cum_pct),
                process.unwrap_or_default(),
                truncate_middle(&printable(&r.function), FUNCTION_WIDTH).into_owned(),
            ]
        })
        .collect();
    let with_process = rows.iter().any(|r| r.process.is_some());
    let header = ["flat", "flat%", "cum", "cum%", "process", "function"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&cells) {
        let _ = write!(
            out,
            "{:>w0$} {:>w1$} {:>w2$} {:>w3$}  ",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        if with_process {
            // `{:<w$}` pads by characters, as the widths were counted.
            let _ = write!(out, "{:<w$}  ", row[4], w = widths[4]);
        }
        out.push_str(&row[5]);
        out.push('\n');
    }
    out
}

/// Human form of a value in `unit`: durations like pprof (`1.20s`,
/// `70.71ms`), sizes in binary units (`1.50MiB`), counts with separators.
pub(crate) fn format_value(value: i64, unit: &str) -> String {
    const TIME: [(f64, &str); 4] = [(1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns")];
    const SIZE: [(f64, &str); 5] =
        [(1_099_511_627_776.0, "TiB"), (1_073_741_824.0, "GiB"), (1_048_576.0, "MiB"), (1024.0, "KiB"), (1.0, "B")];
    let scales: &[(f64, &str)] = match unit {
        "nanoseconds" => &TIME,
        "bytes" => &SIZE,
        "count" | "" => return group_thousands(value),
        _ => return format!("{} {unit}", group_thousands(value)),
    };
    let magnitude = value.unsigned_abs() as f64;
    let mut unit_index = scales.iter().position(|&(scale, _)| magnitude >= scale).unwrap_or(scales.len() - 1);
    // Rounding to two decimals may reach the next unit (999.999ms is
    // `1000.00ms`): carry, as `1.00s`.
    if let Some(index) = unit_index.checked_sub(1) {
        let hundredths = (magnitude / scales[unit_index].0 * 100.0).round();
        if hundredths >= scales[index].0 / scales[unit_index].0 * 100.0 {
            unit_index = index;
        }
    }
    let (scale, suffix) = scales[unit_index];
    let scaled = value as f64 / scale;
    if scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.2}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ids::{Pid, Tid};
    use crate::profile::testdata::{empty_profile, sample_profile, single_process_profile, start, PERIOD_NS};
    use crate::profile::{Line, Location};

    fn row(rows: &[TopEntry], name: &str) -> TopEntry {
        rows.iter().find(|r| r.function == name).cloned().unwrap_or_else(|| panic!("no row for {name}: {rows:#?}"))
    }

    fn names(rows: &[TopEntry]) -> Vec<&str> {
        rows.iter().map(|r| r.function.as_str()).collect()
    }

    /// `template` with samples `(pid, comm, stack, values)`, each stack
    /// written leaf first, `;`-separated, kernel frames prefixed `k:`.
    fn profile_of(mut profile: Profile, samples: &[(u32, &str, &str, &[i64])]) -> Profile {
        let mut index: HashMap<String, usize> = HashMap::new();
        for &(pid, comm, stack, values) in samples {
            let mut locations = Vec::new();
            for frame in stack.split(';').filter(|f| !f.is_empty()) {
                let i = *index.entry(frame.to_owned()).or_insert_with(|| {
                    let (function, kernel) = match frame.strip_prefix("k:") {
                        Some(f) => (f, true),
                        None => (frame, false),
                    };
                    let lines = vec![Line { function: function.to_owned(), file: None, line: None }];
                    profile.locations.push(Location { address: 0x1000, mapping: None, lines, kernel });
                    profile.locations.len() - 1
                });
                locations.push(i);
            }
            profile.samples.push(Sample {
                pid: Pid::new(pid),
                tid: Tid::new(pid),
                comm: comm.into(),
                locations,
                values: values.to_vec(),
            });
        }
        profile
    }

    #[test]
    fn flat_and_cum_by_count() {
        let profile = single_process_profile();
        let rows = top_functions(&profile, 0, 100);
        assert_eq!(&names(&rows)[..4], ["inline_helper", "do_syscall_64", "main", "[unknown]"]);
        assert!(rows.iter().all(|r| r.process.is_none()), "one process: no process column");

        let syscall = row(&rows, "do_syscall_64");
        assert_eq!((syscall.flat, syscall.cum), (2, 2));
        assert!((syscall.flat_pct - 2.0 * 100.0 / 11.0).abs() < 1e-9);
        // The inlined callee gets the flat time, its caller only cum.
        assert_eq!((row(&rows, "inline_helper").flat, row(&rows, "inline_helper").cum), (7, 7));
        assert_eq!((row(&rows, "hot_loop").flat, row(&rows, "hot_loop").cum), (0, 7));
        // `main` recurses in one sample and is counted once there.
        assert_eq!((row(&rows, "main").flat, row(&rows, "main").cum), (1, 10));
        assert_eq!(row(&rows, "__libc_start_main").cum, 10);
        // The sample without a stack.
        assert_eq!((row(&rows, "[unknown]").flat, row(&rows, "[unknown]").cum), (1, 1));
        let flat_sum: i64 = rows.iter().map(|r| r.flat).sum();
        assert_eq!(flat_sum, profile.total(0));
        assert!(rows.iter().all(|r| r.cum >= r.flat && r.cum_pct <= 100.0));
    }

    #[test]
    fn limits_and_value_index() {
        let profile = single_process_profile();
        assert_eq!(top_functions(&profile, 0, 2).len(), 2);
        assert!(top_functions(&profile, 0, 0).is_empty());
        let by_ns = top_functions(&profile, 1, 1);
        assert_eq!(by_ns[0].flat, 7 * PERIOD_NS);
    }

    #[test]
    fn table_text() {
        insta::assert_snapshot!(format_top_table(&single_process_profile(), 3));
        assert_eq!(format_top_table(&empty_profile(), 10), "no samples\n");
    }

    /// Several processes (a whole-host capture): rows per process name and
    /// function, in a process column.
    #[test]
    fn host_table_has_a_process_column() {
        let profile = sample_profile();
        let rows = top_functions(&profile, 0, 100);
        let of = |process: &str, function: &str| {
            rows.iter()
                .find(|r| r.process.as_deref() == Some(process) && r.function == function)
                .map(|r| (r.flat, r.cum))
        };
        // `write` and the syscall frames run in both processes: a row each.
        assert_eq!(of("myservice", "do_syscall_64"), Some((2, 2)));
        assert_eq!(of("worker ü", "do_syscall_64"), Some((6, 6)));
        assert_eq!(of("worker ü", "write"), Some((0, 6)));
        assert_eq!(of("worker ü", "main"), None);
        assert!(rows.iter().all(|r| r.process.is_some()));
        insta::assert_snapshot!(format_top_table(&profile, 6));
    }

    fn offcpu_template() -> Profile {
        Profile::new_offcpu(start(), Duration::from_secs(30))
    }

    /// Two threads of one process block in different ways; every stack ends
    /// in `__schedule` and starts at the syscall entry.
    fn two_waits() -> Profile {
        const ENTRY: &str = "k:do_syscall_64;k:entry_SYSCALL_64_after_hwframe";
        let futex = format!(
            "k:__schedule;k:schedule;k:futex_wait_queue;k:futex_wait;k:__x64_sys_futex;{ENTRY};\
             pthread_cond_wait;worker_loop;start_thread"
        );
        let sleep = format!(
            "k:__schedule;k:schedule;k:do_nanosleep;k:hrtimer_nanosleep;{ENTRY};\
             __clock_nanosleep;usleep;main;__libc_start_main"
        );
        let preempted = "k:__schedule;k:preempt_schedule_irq;k:irqentry_exit;k:asm_sysvec_apic_timer_interrupt;hot;main;__libc_start_main";
        profile_of(
            offcpu_template(),
            &[
                (7, "svc", &futex, &[40, 6_000_000_000]),
                (7, "svc", &sleep, &[300, 3_000_000_000]),
                (7, "svc", preempted, &[10, 1_000_000_000]),
            ],
        )
    }

    #[test]
    fn offcpu_rows_are_where_threads_block_sorted_by_cum() {
        let profile = two_waits();
        let rows = top_functions(&profile, 1, 100);
        for hidden in
            ["__schedule", "schedule", "preempt_schedule_irq", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
        {
            assert!(rows.iter().all(|r| r.function != hidden), "{hidden} is a row: {rows:#?}");
        }
        // Where each wait blocked carries its time as flat.
        assert_eq!(row(&rows, "futex_wait_queue").flat, 6_000_000_000);
        assert_eq!(row(&rows, "do_nanosleep").flat, 3_000_000_000);
        assert_eq!(row(&rows, "irqentry_exit").flat, 1_000_000_000);
        // Sorted by cum; among equals, from where threads block outwards.
        assert_eq!(
            &names(&rows)[..5],
            ["futex_wait_queue", "futex_wait", "__x64_sys_futex", "pthread_cond_wait", "worker_loop"]
        );
        assert!(rows.windows(2).all(|w| w[0].cum >= w[1].cum));
        assert_eq!((row(&rows, "main").cum, row(&rows, "main").flat), (4_000_000_000, 0));
        insta::assert_snapshot!(format_top_table(&profile, 10));
    }

    /// When every thread blocks the same way, the kernel frames all stacks
    /// share are left out too: flat goes to the user function that waited.
    #[test]
    fn offcpu_threads_blocking_alike_show_the_user_function() {
        let stack = "k:__schedule;k:schedule;k:do_nanosleep;k:hrtimer_nanosleep;k:do_syscall_64;\
                     __clock_nanosleep;usleep;sleeper;main";
        let profile = profile_of(
            offcpu_template(),
            &[
                (9, "sleepy", stack, &[50, 2_500_000_000]),
                (9, "sleepy", &stack.replace("sleeper", "napper"), &[10, 500_000_000]),
            ],
        );
        let rows = top_functions(&profile, 1, 100);
        assert!(
            rows.iter().all(|r| !["do_nanosleep", "hrtimer_nanosleep", "do_syscall_64"].contains(&r.function.as_str())),
            "{rows:#?}"
        );
        assert_eq!(names(&rows)[..4], ["__clock_nanosleep", "usleep", "main", "sleeper"]);
        assert_eq!(row(&rows, "__clock_nanosleep").flat, 3_000_000_000);
        // Kernel threads, all blocked alike, keep the kernel function they block in.
        let kthreads = profile_of(
            offcpu_template(),
            &[(40, "kworker/0:1", "k:__schedule;k:schedule;k:worker_thread;k:kthread;k:ret_from_fork", &[3, 900])],
        );
        assert_eq!(names(&top_functions(&kthreads, 1, 1)), ["worker_thread"]);
        insta::assert_snapshot!(format_top_table(&profile, 10));
    }

    #[test]
    fn memory_table_drops_rows_without_bytes() {
        let memory = |samples: &[(u32, &str, &str, &[i64])]| {
            profile_of(Profile::new_memory(512 * 1024, start(), Duration::from_secs(30)), samples)
        };
        // Allocations, and page faults (no bytes allocated) elsewhere.
        let profile = memory(&[
            (5, "app", "grow_buffer;handle;main", &[4, 2 << 20, 0, 0, 0]),
            (5, "app", "parse;handle;main", &[1, 512 << 10, 1, 512 << 10, 0]),
            (5, "app", "k:clear_page_erms;k:do_anonymous_page;touch_pages;main", &[0, 0, 0, 0, 900]),
        ]);
        let table = format_top_table(&profile, 10);
        assert!(!table.contains("touch_pages") && !table.contains("clear_page_erms"), "{table}");
        assert!(top_functions(&profile, 1, 100).iter().all(|r| r.cum != 0));
        assert!(table.contains("grow_buffer") && table.contains("alloc_space"), "{table}");
        insta::assert_snapshot!(table);
        // Page faults only (no allocation probes): the faults are shown.
        let faults = memory(&[(5, "app", "k:clear_page_erms;touch_pages;main", &[0, 0, 0, 0, 900])]);
        let table = format_top_table(&faults, 10);
        assert!(table.starts_with("900 page_faults in total;") && table.contains("touch_pages"), "{table}");
    }

    #[test]
    fn long_names_keep_their_start_and_end() {
        let long = "std::_Hashtable<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, \
                    std::pair<std::__cxx11::basic_string<char> const, Order>, std::allocator<std::pair<…> > >\
                    ::_M_find_before_node(unsigned long, std::__cxx11::basic_string<char> const&, unsigned long) const";
        let cut = truncate_middle(long, FUNCTION_WIDTH);
        assert_eq!(cut.chars().count(), FUNCTION_WIDTH);
        assert!(cut.starts_with("std::_Hashtable<std::__cxx11::basic"), "{cut}");
        assert!(cut.ends_with("unsigned long) const"), "{cut}");
        assert_eq!(truncate_middle("main", FUNCTION_WIDTH), "main");
        assert_eq!(truncate_middle("ünïcödé-naмe", 7), "ünï…aмe");
        let profile = profile_of(
            empty_profile(),
            &[(1, "orders", &format!("{long};main"), &[3, 3 * PERIOD_NS]), (1, "orders", "main", &[1, PERIOD_NS])],
        );
        let table = format_top_table(&profile, 10);
        let widest = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest <= 40 + FUNCTION_WIDTH, "{table}");
        insta::assert_snapshot!(table);
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(2970), "2,970");
        assert_eq!(group_thousands(-1_234_567), "-1,234,567");
    }

    #[test]
    fn values() {
        assert_eq!(format_value(1_200_000_000, "nanoseconds"), "1.20s");
        assert_eq!(format_value(10_000_000, "nanoseconds"), "10ms");
        assert_eq!(format_value(999, "nanoseconds"), "999ns");
        assert_eq!(format_value(0, "nanoseconds"), "0ns");
        assert_eq!(format_value(1536 * 1024, "bytes"), "1.50MiB");
        assert_eq!(format_value(2970, "count"), "2,970");
        assert_eq!(format_value(5, "requests"), "5 requests");
    }

    #[test]
    fn rounding_carries_to_the_next_unit() {
        assert_eq!(format_value(999_999_990, "nanoseconds"), "1.00s");
        assert_eq!(format_value(-999_999_990, "nanoseconds"), "-1.00s");
        assert_eq!(format_value(999_995, "nanoseconds"), "1.00ms");
        assert_eq!(format_value(999_994, "nanoseconds"), "999.99us");
        assert_eq!(format_value(999_990_000, "nanoseconds"), "999.99ms");
        assert_eq!(format_value(1024 * 1024 - 1, "bytes"), "1.00MiB");
        assert_eq!(format_value(1024 * 1024 - 6, "bytes"), "1023.99KiB");
        assert_eq!(format_value(1_099_511_627_775, "bytes"), "1.00TiB");
        assert_eq!(format_value(1_000_000_000, "nanoseconds"), "1s");
    }
}
