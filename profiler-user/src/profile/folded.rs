//! Folded stacks: `root;caller;callee count` lines, Brendan Gregg's format.
//!
//! These lines are both the `.folded` file (for `flamegraph.pl`, speedscope
//! or diffing two captures) and exactly what the flamegraph is drawn from, so
//! the two can never disagree. Frames run root → leaf. A location with inlined
//! calls becomes several frames, the inlined ones suffixed `_[i]`; kernel
//! frames are suffixed `_[k]` (the annotations inferno's palettes color by).
//! When the capture may span several processes (whole host, cgroup, several
//! `--pid`s, `--name`), each stack starts with its process, `comm (pid N)`,
//! so the flamegraph has one tower per process: two workers of one program
//! are told apart rather than merged, and the pid says which to look at.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::profile::report::default_value_index;
use crate::profile::{Profile, ProfileKind};

/// Frame shown when a sample has no stack or a frame has no name.
const UNKNOWN: &str = "[unknown]";

/// Builds the folded lines of `profile`, weighted by value `value_index`,
/// with a `comm (pid N)` root frame per stack when `root_per_process`.
///
/// Identical stacks (e.g. two threads of one program) are merged; lines are
/// sorted bytewise as inferno's `from_lines` requires; stacks whose value is
/// zero or negative are dropped (nothing to draw).
pub(crate) fn folded_lines(profile: &Profile, value_index: usize, root_per_process: bool) -> Vec<String> {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    let mut stack = String::new();
    for sample in &profile.samples {
        let value = sample.values.get(value_index).copied().unwrap_or(0);
        let Ok(value) = u64::try_from(value) else { continue };
        if value == 0 {
            continue;
        }
        stack.clear();
        if root_per_process {
            push_frame(&mut stack, &sanitize_frame(&process_frame(&sample.comm, sample.pid)), "");
        }
        let mut any = false;
        // Samples are leaf-first; folded stacks are root-first.
        for location in sample.locations.iter().rev().filter_map(|&i| profile.locations.get(i)) {
            let outermost = location.lines.len().saturating_sub(1);
            // Lines are innermost-first: walk them backwards so the caller
            // comes before what was inlined into it.
            for (i, line) in location.lines.iter().enumerate().rev() {
                let suffix = if location.kernel {
                    "_[k]"
                } else if i < outermost {
                    "_[i]"
                } else {
                    ""
                };
                push_frame(&mut stack, &sanitize_frame(&line.function), suffix);
                any = true;
            }
        }
        if !any && !root_per_process {
            push_frame(&mut stack, UNKNOWN, "");
        }
        let total = stacks.entry(stack.clone()).or_insert(0);
        *total = total.saturating_add(value);
    }
    stacks.into_iter().map(|(stack, count)| format!("{stack} {count}")).collect()
}

/// The root frame of a process's stacks: `comm (pid N)`.
pub(crate) fn process_frame(comm: &str, pid: crate::ids::Pid) -> String {
    format!("{} (pid {pid})", comm.trim())
}

/// The value flamegraphs are drawn with: sample counts for cpu (what
/// people compare across flamegraphs), blocked nanoseconds for off-cpu,
/// bytes for memory.
pub(crate) fn flame_value_index(profile: &Profile) -> usize {
    let wanted_unit = match profile.kind {
        ProfileKind::Cpu => "count",
        ProfileKind::OffCpu => "nanoseconds",
        ProfileKind::Memory => "bytes",
    };
    profile.sample_types.iter().position(|t| t.unit == wanted_unit).unwrap_or_else(|| default_value_index(profile))
}

/// The `.folded` file: one line per stack, newline-terminated.
pub(crate) fn render(lines: &[String]) -> Vec<u8> {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

fn push_frame(stack: &mut String, frame: &str, suffix: &str) {
    if !stack.is_empty() {
        stack.push(';');
    }
    stack.push_str(frame);
    stack.push_str(suffix);
}

/// Makes a name safe as one folded frame: `;` separates frames, so it
/// becomes `:` (as inferno's own collapsers do); line breaks and other
/// control characters would split or corrupt the line, so they become
/// spaces; surrounding whitespace is trimmed because the folded format
/// trims lines. A line starting with `# ` is a comment to inferno, so a
/// name starting with `#` is wrapped in brackets.
pub(crate) fn sanitize_frame(name: &str) -> Cow<'_, str> {
    let trimmed = name.trim();
    let needs_fix = trimmed.len() != name.len()
        || trimmed.is_empty()
        || trimmed.starts_with('#')
        || trimmed.chars().any(|c| c == ';' || c.is_control());
    if !needs_fix {
        return Cow::Borrowed(name);
    }
    let cleaned: String = trimmed
        .chars()
        .map(|c| {
            if c == ';' {
                ':'
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        Cow::Borrowed(UNKNOWN)
    } else if cleaned.starts_with('#') {
        // Only the first frame of a line could be read as a `# ` comment,
        // but escaping every such frame keeps names stable across stacks.
        Cow::Owned(format!("[{cleaned}]"))
    } else {
        Cow::Owned(cleaned.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Pid, Tid};
    use crate::profile::testdata::{sample_profile, single_process_profile};

    #[test]
    fn sanitizes_frames() {
        assert_eq!(sanitize_frame("main"), "main");
        assert_eq!(sanitize_frame("a;b"), "a:b");
        assert_eq!(sanitize_frame("  x\ny\t"), "x y");
        assert_eq!(sanitize_frame(""), UNKNOWN);
        assert_eq!(sanitize_frame("\n"), UNKNOWN);
        assert_eq!(sanitize_frame("# hi"), "[# hi]");
        assert_eq!(sanitize_frame("ünïcode::名前"), "ünïcode::名前");
    }

    #[test]
    fn folds_root_first_with_annotations() {
        let profile = sample_profile();
        let lines = folded_lines(&profile, 0, true);
        // Two threads of `myservice` with the same stack are merged.
        assert!(
            lines.contains(&"myservice (pid 100);__libc_start_main;main;hot_loop;inline_helper_[i] 7".to_owned()),
            "{lines:#?}"
        );
        assert!(lines
            .iter()
            .any(|l| l.starts_with("worker ü (pid 200);") && l.contains("entry_SYSCALL_64_[k];do_syscall_64_[k]")));
        assert!(lines.iter().all(|l| l.matches(' ').count() >= 1 && !l.contains('\n')));
        assert!(lines.iter().any(|l| l.contains("operator:weird<ü>")), "`;` must be sanitized: {lines:#?}");
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "inferno needs sorted input");
    }

    #[test]
    fn single_process_has_no_comm_root() {
        let lines = folded_lines(&single_process_profile(), 0, false);
        assert!(lines.iter().all(|l| !l.starts_with("myservice")), "{lines:#?}");
        assert!(lines.contains(&"[unknown] 1".to_owned()), "a sample without a stack shows as [unknown]: {lines:#?}");
    }

    #[test]
    fn processes_of_one_name_get_a_root_each() {
        let mut profile = sample_profile();
        // A second `myservice`, as a `--name` pattern or a host capture sees it.
        let mut twin = profile.samples[0].clone();
        twin.pid = Pid::new(300);
        twin.tid = Tid::new(300);
        profile.samples.push(twin);
        let lines = folded_lines(&profile, 0, true);
        let roots: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l.split(';').next()).collect();
        assert_eq!(
            roots.into_iter().collect::<Vec<_>>(),
            ["myservice (pid 100)", "myservice (pid 300)", "worker ü (pid 200)"],
            "{lines:#?}"
        );
        assert!(lines.contains(&"myservice (pid 300);__libc_start_main;main;hot_loop;inline_helper_[i] 4".to_owned()));
    }

    #[test]
    fn weights_by_the_chosen_value() {
        let profile = sample_profile();
        let by_count: u64 = folded_lines(&profile, 0, true).iter().map(|l| count_of(l)).sum();
        let by_ns: u64 = folded_lines(&profile, 1, true).iter().map(|l| count_of(l)).sum();
        assert_eq!(by_count as i64, profile.total(0));
        assert_eq!(by_ns as i64, profile.total(1));
    }

    fn count_of(line: &str) -> u64 {
        line.rsplit_once(' ').map(|(_, n)| n.parse().unwrap()).unwrap()
    }
}
