//! The host: its memory (`/proc/meminfo`), online CPUs
//! (`/sys/devices/system/cpu/online`), name and kernel release.

use std::fs;

/// The host's memory from `/proc/meminfo`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemInfo {
    pub total: u64,
    /// Memory available for new work without swapping: `MemAvailable`, or
    /// on kernels before 3.14 its old approximation `MemFree + Buffers +
    /// Cached`.
    pub available: u64,
}

pub(crate) fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(parse_kib);
    let total = value("MemTotal")?;
    let available = match value("MemAvailable") {
        Some(available) => available,
        None => value("MemFree")? + value("Buffers").unwrap_or(0) + value("Cached").unwrap_or(0),
    };
    Some(MemInfo { total, available: available.min(total) })
}

/// `/proc/meminfo` now.
pub(crate) fn meminfo() -> Option<MemInfo> {
    parse_meminfo(&fs::read_to_string("/proc/meminfo").ok()?)
}

/// `  1234 kB` → 1263616.
pub(super) fn parse_kib(value: &str) -> Option<u64> {
    let value = value.trim();
    let number = value.strip_suffix("kB").unwrap_or(value).trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

/// Number of CPUs in a kernel CPU list such as
/// `/sys/devices/system/cpu/online`: `0-3`, `0-1,4`, `0,2-3,8-11`.
pub(crate) fn parse_cpu_list(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count: u32 = 0;
    for range in text.split(',') {
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first.trim().parse::<u32>().ok()?, last.trim().parse::<u32>().ok()?),
            None => {
                let cpu = range.trim().parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        count = count.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
    }
    Some(count)
}

/// The online CPUs now, from sysfs.
pub(crate) fn online_cpus() -> Option<u32> {
    parse_cpu_list(&fs::read_to_string("/sys/devices/system/cpu/online").ok()?)
}

/// The host's name.
pub(crate) fn host_name() -> Option<String> {
    first_line("/proc/sys/kernel/hostname")
}

/// The kernel release (`uname -r`).
pub(crate) fn kernel_release() -> Option<String> {
    first_line("/proc/sys/kernel/osrelease")
}

fn first_line(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:        8000000 kB\nMemFree:          500000 kB\nMemAvailable:    6000000 kB\n\
                    Buffers:          100000 kB\nCached:          2000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(MemInfo { total: 8_000_000 * 1024, available: 6_000_000 * 1024 }));
    }

    #[test]
    fn meminfo_before_mem_available() {
        let text = "MemTotal:        8000000 kB\nMemFree:          500000 kB\n\
                    Buffers:          100000 kB\nCached:          2000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(MemInfo { total: 8_000_000 * 1024, available: 2_600_000 * 1024 }));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn cpu_lists() {
        for (text, count) in [("0", 1), ("0-1\n", 2), ("0-1,4", 3), ("0,2-3,8-11", 7), ("0-127", 128)] {
            assert_eq!(parse_cpu_list(text), Some(count), "{text:?}");
        }
        for text in ["", "\n", "x", "3-1", "0-", "0,,1"] {
            assert_eq!(parse_cpu_list(text), None, "{text:?}");
        }
    }

    #[test]
    fn this_host() {
        assert!(online_cpus().is_some_and(|n| n > 0));
        assert!(meminfo().is_some_and(|m| m.total > 0));
        assert!(kernel_release().is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit())));
    }
}
