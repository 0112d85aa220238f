//! `stackwatch doctor`: checks that this host can run a capture and says
//! what to change when it cannot.
//!
//! The checks that matter are real system calls (create a BPF map, load a
//! trivial `perf_event` program, open the CPU-clock event `record` samples
//! with), so the answer is right whatever mix of capabilities, sysctls,
//! seccomp filters and security modules is in play. The rest (capabilities,
//! sysctls, mounts) is there to explain a failure and name the fix.

use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;

use anyhow::Context as _;

mod target;

use crate::cli::MAX_FREQUENCY_HZ;
use crate::procfs::{host, mountinfo, status};
use crate::sys::bpf::{self, BpfInsn, BPF_PROG_TYPE_PERF_EVENT};

/// Oldest kernel with everything stackwatch uses: the BPF ring buffer that
/// carries the program's log messages, and CAP_BPF/CAP_PERFMON (both 5.8);
/// `bpf_get_current_ancestor_cgroup_id` (5.7); `bpf_get_stack` (4.18).
const MIN_KERNEL: (u32, u32) = (5, 8);

/// Oldest kernel for unwind tables (`--unwind auto|tables`): `bpf_loop`
/// (5.17); the unwinder also uses `bpf_task_pt_regs` (5.15),
/// `bpf_get_current_task_btf` (5.11) and memory-mapped array maps (5.5).
const MIN_KERNEL_TABLES: (u32, u32) = (5, 17);

const SETCAP_HINT: &str = "run as root or grant CAP_BPF and CAP_PERFMON \
                           (e.g. `sudo setcap cap_bpf,cap_perfmon+ep stackwatch`)";

/// Capability bit numbers (`linux/capability.h`).
mod cap {
    pub(super) const DAC_READ_SEARCH: u32 = 2;
    pub(super) const SYS_PTRACE: u32 = 19;
    pub(super) const SYS_ADMIN: u32 = 21;
    pub(super) const SYSLOG: u32 = 34;
    pub(super) const PERFMON: u32 = 38;
    pub(super) const BPF: u32 = 39;
    pub(super) const CHECKPOINT_RESTORE: u32 = 40;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Present and working.
    Ok,
    /// Required and absent: `record` will fail.
    Missing,
    /// Optional and absent: `record` works, with less in the profile.
    Warn,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Warn => "warn",
            Status::Info => "info",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self { name, status, detail: detail.into(), fix: None }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Runs every check and prints the checklist on stdout. Returns whether
/// everything `record` needs is there. With `--pid`, checks that process
/// instead ([`target`]).
pub fn run(args: &crate::cli::DoctorArgs) -> anyhow::Result<bool> {
    if let Some(pid) = args.pid {
        return target::run(pid);
    }
    let checks = checks();
    let mut out = io::stdout().lock();
    out.write_all(render(&checks).as_bytes()).and_then(|()| out.flush()).context("failed to print the report")?;
    Ok(checks.iter().all(|c| c.status != Status::Missing))
}

/// One line per check, and its fix under it.
fn render_rows(checks: &[Check]) -> String {
    let mut text = String::new();
    for c in checks {
        text.push_str(&format!("{:<8} {:<20} {}\n", c.status.label(), c.name, c.detail));
        if let Some(fix) = &c.fix {
            text.push_str(&format!("{:<8} {:<20} fix: {fix}\n", "", ""));
        }
    }
    text
}

fn render(checks: &[Check]) -> String {
    let mut text = render_rows(checks);
    let missing = checks.iter().filter(|c| c.status == Status::Missing).count();
    match missing {
        0 => text.push_str("\nall required checks passed: `stackwatch record` can run here\n"),
        n => text.push_str(&format!(
            "\n{n} required check{} failed: `stackwatch record` will not work until {} fixed\n",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it is" } else { "they are" },
        )),
    }
    text
}

/// What the process may do, from `/proc/self/status`.
#[derive(Clone, Copy, Debug)]
struct Privileges {
    euid: Option<u32>,
    /// `CapEff`; `None` when it could not be read.
    effective: Option<u64>,
}

impl Privileges {
    fn read() -> Self {
        let text = status::read(crate::ids::Pid::current()).unwrap_or_default();
        Self { euid: status::euid(&text), effective: status::cap_eff(&text) }
    }

    fn has(&self, bit: u32) -> bool {
        self.effective.is_some_and(|caps| caps & (1 << bit) != 0)
    }

    /// May load tracing BPF programs and open system-wide perf events.
    fn can_profile(&self) -> bool {
        self.has(cap::SYS_ADMIN) || (self.has(cap::BPF) && self.has(cap::PERFMON))
    }
}

fn checks() -> Vec<Check> {
    let privs = Privileges::read();
    let mountinfo = mountinfo::read().unwrap_or_default();
    vec![
        kernel_check(host::kernel_release().as_deref()),
        unwind_check(host::kernel_release().as_deref()),
        user_check(privs.euid),
        capabilities_check(privs),
        symbol_access_check(privs),
        btf_check(),
        bpf_map_check(privs),
        bpf_prog_check(privs),
        perf_event_check(privs),
        paranoid_check(read_sysctl("perf_event_paranoid"), privs),
        sample_rate_check(read_sysctl("perf_event_max_sample_rate")),
        kernel_symbols_check(crate::symbolize::kernel_names_probe(), read_sysctl("kptr_restrict"), privs),
        unprivileged_bpf_check(read_sysctl("unprivileged_bpf_disabled"), privs),
        cgroup2_check(&mountinfo),
        tracefs_check(&mountinfo),
    ]
}

/// `(major, minor)` of a release such as `6.1.0-18-amd64`.
fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let mut number = || -> Option<u32> {
        let part = parts.next()?;
        let end = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
        part[..end].parse().ok()
    };
    Some((number()?, number()?))
}

fn kernel_check(release: Option<&str>) -> Check {
    let (min_major, min_minor) = MIN_KERNEL;
    let need = format!("{min_major}.{min_minor} or newer is needed for the BPF ring buffer, CAP_BPF and CAP_PERFMON");
    let Some(release) = release else {
        return Check::new("kernel", Status::Warn, format!("version unknown, uname failed ({need})"));
    };
    match parse_kernel_version(release) {
        Some(version) if version >= MIN_KERNEL => Check::new("kernel", Status::Ok, format!("Linux {release} ({need})")),
        Some(_) => Check::new("kernel", Status::Missing, format!("Linux {release} is too old ({need})"))
            .fix(format!("upgrade to Linux {min_major}.{min_minor} or newer")),
        None => Check::new("kernel", Status::Warn, format!("Linux {release}: version not understood ({need})")),
    }
}

/// Whether user stacks can be walked with unwind tables (`.eh_frame`).
fn unwind_check(release: Option<&str>) -> Check {
    const NAME: &str = "unwind tables";
    let (major, minor) = MIN_KERNEL_TABLES;
    match release.and_then(parse_kernel_version) {
        Some(version) if version >= MIN_KERNEL_TABLES => Check::new(
            NAME,
            Status::Ok,
            format!(
                "code without frame pointers is unwound with its .eh_frame (needs Linux {major}.{minor}: bpf_loop)"
            ),
        ),
        Some(_) => Check::new(
            NAME,
            Status::Warn,
            format!(
                "Linux {major}.{minor} or newer is needed (bpf_loop): user stacks are walked with frame pointers only"
            ),
        )
        .fix(format!("upgrade to Linux {major}.{minor} or newer, or build the code you profile with frame pointers")),
        None => {
            Check::new(NAME, Status::Warn, format!("kernel version unknown; Linux {major}.{minor} or newer is needed"))
        }
    }
}

fn user_check(euid: Option<u32>) -> Check {
    match euid {
        Some(0) => Check::new("user", Status::Info, "root (uid 0)"),
        Some(uid) => Check::new("user", Status::Info, format!("uid {uid}, not root: the capabilities below decide")),
        None => Check::new("user", Status::Info, "unknown (`/proc/self/status` unreadable)"),
    }
}

fn capabilities_check(privs: Privileges) -> Check {
    const NEEDED: [(u32, &str); 3] =
        [(cap::BPF, "CAP_BPF"), (cap::PERFMON, "CAP_PERFMON"), (cap::SYS_ADMIN, "CAP_SYS_ADMIN")];
    if privs.effective.is_none() {
        return Check::new("capabilities", Status::Warn, "unknown (no CapEff in `/proc/self/status`)");
    }
    let have = names(privs, &NEEDED, true);
    let have = if have.is_empty() { "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN".to_owned() } else { have.join(", ") };
    if privs.can_profile() {
        Check::new("capabilities", Status::Ok, format!("effective: {have}"))
    } else {
        Check::new(
            "capabilities",
            Status::Missing,
            format!("effective: {have}; CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) are needed"),
        )
        .fix(SETCAP_HINT)
    }
}

fn names(privs: Privileges, caps: &[(u32, &'static str)], present: bool) -> Vec<&'static str> {
    caps.iter().filter(|(bit, _)| privs.has(*bit) == present).map(|&(_, name)| name).collect()
}

fn symbol_access_check(privs: Privileges) -> Check {
    let mut missing =
        names(privs, &[(cap::SYS_PTRACE, "CAP_SYS_PTRACE"), (cap::DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH")], false);
    if !privs.has(cap::CHECKPOINT_RESTORE) && !privs.has(cap::SYS_ADMIN) {
        missing.push("CAP_CHECKPOINT_RESTORE");
    }
    if missing.is_empty() {
        return Check::new("user symbols", Status::Ok, "any process's maps and binaries are readable");
    }
    Check::new(
        "user symbols",
        Status::Warn,
        format!(
            "without {}, frames of other users' or containers' processes may show as bare addresses",
            missing.join(", ")
        ),
    )
    .fix(
        "run as root, or grant these too \
         (`sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search,cap_checkpoint_restore+ep stackwatch`)",
    )
}

fn btf_check() -> Check {
    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
    if fs::metadata(VMLINUX).is_ok() {
        Check::new("BTF", Status::Ok, format!("`{VMLINUX}` present"))
    } else {
        Check::new(
            "BTF",
            Status::Warn,
            format!(
                "`{VMLINUX}` not found: cpu and memory profiles work without it; offcpu profiles and \
                 Python frames need it"
            ),
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y, as current distribution kernels are")
    }
}

/// The fix for a failed privileged system call.
fn denied_fix(err: &io::Error, privs: Privileges, has_caps: bool, config: &str) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => format!("use a kernel built with {config}=y, or allow the call in the seccomp profile"),
        Some(libc::EPERM | libc::EACCES) if !has_caps || privs.effective.is_none() => SETCAP_HINT.to_owned(),
        Some(libc::EPERM | libc::EACCES) => "the capabilities are there, so a seccomp filter (a container's \
                                             default profile?) or a security module denies the call: allow it"
            .to_owned(),
        _ => "see the kernel log (`dmesg`) for why the kernel refused it".to_owned(),
    }
}

fn bpf_map_check(privs: Privileges) -> Check {
    match create_bpf_map() {
        Ok(_fd) => Check::new("bpf() maps", Status::Ok, "created a BPF array map"),
        Err(e) => {
            let fix = denied_fix(&e, privs, privs.has(cap::BPF) || privs.has(cap::SYS_ADMIN), "CONFIG_BPF_SYSCALL");
            Check::new("bpf() maps", Status::Missing, format!("bpf(BPF_MAP_CREATE) failed: {e}")).fix(fix)
        }
    }
}

fn bpf_prog_check(privs: Privileges) -> Check {
    match load_perf_event_program() {
        Ok(_fd) => Check::new("bpf() programs", Status::Ok, "loaded a trivial perf_event program"),
        Err(e) => {
            let fix = denied_fix(&e, privs, privs.can_profile(), "CONFIG_BPF_SYSCALL");
            Check::new(
                "bpf() programs",
                Status::Missing,
                format!("bpf(BPF_PROG_LOAD) of a perf_event program failed: {e}"),
            )
            .fix(fix)
        }
    }
}

fn perf_event_check(privs: Privileges) -> Check {
    match open_cpu_clock_event() {
        Ok(_fd) => Check::new("perf events", Status::Ok, "opened the cpu-clock event on CPU 0 for all processes"),
        Err(e) => {
            let has_caps = privs.has(cap::PERFMON) || privs.has(cap::SYS_ADMIN);
            let fix = match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP) => {
                    "use a kernel built with CONFIG_PERF_EVENTS=y".to_owned()
                }
                _ => denied_fix(&e, privs, has_caps, "CONFIG_PERF_EVENTS"),
            };
            Check::new("perf events", Status::Missing, format!("perf_event_open(cpu-clock, CPU 0) failed: {e}"))
                .fix(fix)
        }
    }
}

fn read_sysctl(name: &str) -> Option<i64> {
    fs::read_to_string(format!("/proc/sys/kernel/{name}")).ok()?.trim().parse().ok()
}

fn paranoid_meaning(value: i64) -> &'static str {
    match value {
        ..=-1 => "no restrictions",
        0 => "unprivileged users may sample whole CPUs but not read raw tracepoints",
        1 => "unprivileged users may profile their own processes, kernel included",
        2 => "unprivileged users may profile only their own processes' user space",
        _ => "unprivileged users may not use perf events at all",
    }
}

fn paranoid_check(value: Option<i64>, privs: Privileges) -> Check {
    let Some(value) = value else {
        return Check::new("perf_event_paranoid", Status::Info, "`/proc/sys/kernel/perf_event_paranoid` unreadable");
    };
    let applies = if privs.has(cap::PERFMON) || privs.has(cap::SYS_ADMIN) {
        "does not apply with CAP_PERFMON"
    } else {
        "stackwatch needs CAP_PERFMON whatever its value"
    };
    Check::new("perf_event_paranoid", Status::Info, format!("{value}: {}; {applies}", paranoid_meaning(value)))
}

fn sample_rate_check(value: Option<i64>) -> Check {
    const NAME: &str = "max sample rate";
    let Some(max) = value else {
        return Check::new(NAME, Status::Info, "`/proc/sys/kernel/perf_event_max_sample_rate` unreadable");
    };
    let detail = format!("kernel.perf_event_max_sample_rate = {max}");
    let raise = "`sudo sysctl kernel.perf_event_max_sample_rate=100000` (the kernel lowers it by itself \
                 when sampling interrupts run long)";
    if max < 99 {
        Check::new(NAME, Status::Warn, format!("{detail}: the default `--frequency 99` will be refused")).fix(raise)
    } else if max < MAX_FREQUENCY_HZ as i64 {
        Check::new(NAME, Status::Info, format!("{detail}: `--frequency` above {max} will be refused"))
    } else {
        Check::new(NAME, Status::Ok, format!("{detail}: any `--frequency` up to {MAX_FREQUENCY_HZ} works"))
    }
}

/// Whether `/proc/kallsyms` shows real addresses to this process (the kernel
/// decides with the opener's credentials and `kernel.kptr_restrict`).
fn kallsyms_addresses_visible() -> Option<bool> {
    use std::io::BufRead as _;
    let file = fs::File::open("/proc/kallsyms").ok()?;
    let mut visible = false;
    for line in io::BufReader::new(file).lines().take(16) {
        let line = line.ok()?;
        let address = line.split(' ').next()?;
        visible |= u64::from_str_radix(address, 16).is_ok_and(|a| a != 0);
    }
    Some(visible)
}

/// Kernel frames are named by the kernel itself where `in_kernel` (the
/// naming program's load) succeeded, else from `/proc/kallsyms`.
fn kernel_symbols_check(in_kernel: io::Result<()>, kptr_restrict: Option<i64>, privs: Privileges) -> Check {
    const NAME: &str = "kernel symbols";
    let why = match in_kernel {
        Ok(()) => {
            return Check::new(
                NAME,
                Status::Ok,
                "named by the kernel itself (a BPF syscall program calling bpf_snprintf(\"%pS\"), Linux 5.14+)",
            )
        }
        Err(e) => e,
    };
    let setting = kptr_restrict.map_or("unknown".to_owned(), |v| v.to_string());
    match kallsyms_addresses_visible() {
        Some(true) => Check::new(
            NAME,
            Status::Ok,
            format!(
                "read from `/proc/kallsyms`, which shows addresses (kernel.kptr_restrict = {setting}); \
                 the kernel cannot name them itself: {why}"
            ),
        ),
        None => Check::new(NAME, Status::Warn, "`/proc/kallsyms` unreadable: kernel frames will show as `[unknown]`"),
        Some(false) => {
            let check = Check::new(
                NAME,
                Status::Warn,
                format!("`/proc/kallsyms` hides addresses (kernel.kptr_restrict = {setting}): kernel frames will show as `[unknown]`"),
            );
            // kptr_restrict 0 shows addresses to everyone only while
            // perf_event_paranoid <= 1; 1 shows them to CAP_SYSLOG; 2 to no one.
            match kptr_restrict {
                Some(2..) => check.fix("`sudo sysctl kernel.kptr_restrict=1` and run as root (or with CAP_SYSLOG)"),
                _ if !privs.has(cap::SYSLOG) => check.fix("run as root or grant CAP_SYSLOG too"),
                _ => check.fix("kernel lockdown or a security module hides them"),
            }
        }
    }
}

fn unprivileged_bpf_check(value: Option<i64>, privs: Privileges) -> Check {
    const NAME: &str = "unprivileged bpf";
    let meaning = match value {
        None => return Check::new(NAME, Status::Info, "`/proc/sys/kernel/unprivileged_bpf_disabled` unreadable"),
        Some(0) => "allowed",
        Some(1) => "disabled until reboot",
        Some(_) => "disabled (root may re-enable it)",
    };
    let applies = if privs.has(cap::BPF) || privs.has(cap::SYS_ADMIN) {
        "does not apply with CAP_BPF"
    } else {
        "stackwatch needs CAP_BPF whatever its value"
    };
    let value = value.unwrap_or_default();
    Check::new(NAME, Status::Info, format!("kernel.unprivileged_bpf_disabled = {value}: {meaning}; {applies}"))
}

fn cgroup2_check(mountinfo: &str) -> Check {
    let mounts = mountinfo::mounts_of_type(mountinfo, "cgroup2");
    let Some((_, first)) = mounts.first() else {
        return Check::new("cgroup v2", Status::Warn, "not mounted: `--cgroup` targets will not work")
            .fix("`sudo mount -t cgroup2 none /sys/fs/cgroup`, or boot with `systemd.unified_cgroup_hierarchy=1`");
    };
    let hybrid = if mountinfo::mounts_of_type(mountinfo, "cgroup").is_empty() {
        ""
    } else {
        " (hybrid: controllers on cgroup v1, which `--cgroup` does not use)"
    };
    Check::new("cgroup v2", Status::Ok, format!("mounted at `{}`{hybrid}", first.display()))
}

fn tracefs_check(mountinfo: &str) -> Check {
    match mountinfo::mounts_of_type(mountinfo, "tracefs").first() {
        Some((_, path)) => Check::new("tracefs", Status::Info, format!("mounted at `{}`", path.display())),
        None => Check::new(
            "tracefs",
            Status::Info,
            "not mounted; not needed: stackwatch attaches BTF and raw tracepoints, and uprobes through the \
             uprobe PMU",
        ),
    }
}

// The probes: the same kinds of objects `record` creates, closed at once.

/// `struct perf_event_attr` up to `config1` (`PERF_ATTR_SIZE_VER0`).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_freq: u64,
    sample_type: u64,
    read_format: u64,
    /// The bitfield: bit 0 `disabled`, bit 10 `freq`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}
const _: () = assert!(size_of::<PerfEventAttr>() == 64);

fn create_bpf_map() -> io::Result<OwnedFd> {
    bpf::create_array_of_one(4, 0)
}

/// Loads `r0 = 0; exit` as a perf_event program: needs CAP_BPF and
/// CAP_PERFMON, as stackwatch's own program does.
fn load_perf_event_program() -> io::Result<OwnedFd> {
    let insns = [
        BpfInsn::mov64_imm(0, 0), // r0 = 0
        BpfInsn::exit(),
    ];
    bpf::load_program(BPF_PROG_TYPE_PERF_EVENT, 0, "sw_doctor", &insns)
}

/// Opens (disabled) the software CPU-clock event `record` samples with, for
/// every process on CPU 0.
fn open_cpu_clock_event() -> io::Result<OwnedFd> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
    const DISABLED: u64 = 1 << 0;
    const FREQ: u64 = 1 << 10;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_freq: 99,
        sample_type: 0,
        read_format: 0,
        flags: DISABLED | FREQ,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    let (pid, cpu, group_fd): (libc::pid_t, libc::c_int, libc::c_int) = (-1, 0, -1);
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares; the
    // kernel only reads it.
    let ret = unsafe {
        libc::syscall(libc::SYS_perf_event_open, std::ptr::from_ref(&attr), pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC)
    };
    crate::sys::owned_fd(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privs(bits: &[u32]) -> Privileges {
        Privileges { euid: Some(1000), effective: Some(bits.iter().fold(0, |acc, b| acc | 1 << b)) }
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_kernel_version("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(parse_kernel_version("6.10-rc1"), Some((6, 10)));
        assert_eq!(parse_kernel_version("weird"), None);

        assert_eq!(kernel_check(Some("5.8.0")).status, Status::Ok);
        assert_eq!(kernel_check(Some("5.10.0-28")).status, Status::Ok);
        let old = kernel_check(Some("5.4.0-150-generic"));
        assert_eq!(old.status, Status::Missing);
        assert_eq!(old.fix.as_deref(), Some("upgrade to Linux 5.8 or newer"));
        assert_eq!(kernel_check(None).status, Status::Warn);
        assert_eq!(unwind_check(Some("5.17.0")).status, Status::Ok);
        assert_eq!(unwind_check(Some("6.18.44-fc")).status, Status::Ok);
        let old = unwind_check(Some("5.15.0-91-generic"));
        assert_eq!(old.status, Status::Warn);
        assert!(old.detail.contains("5.17"), "{}", old.detail);
    }

    #[test]
    fn capabilities() {
        assert_eq!(capabilities_check(privs(&[cap::BPF, cap::PERFMON])).status, Status::Ok);
        assert_eq!(capabilities_check(privs(&[cap::SYS_ADMIN])).status, Status::Ok);
        let only_bpf = capabilities_check(privs(&[cap::BPF]));
        assert_eq!(only_bpf.status, Status::Missing);
        assert_eq!(only_bpf.fix.as_deref(), Some(SETCAP_HINT));
        let none = capabilities_check(privs(&[]));
        assert_eq!(
            none.detail,
            "effective: none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN; CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) are needed"
        );
        let root = Privileges { euid: Some(0), effective: Some(0x1ff_ffff_ffff) };
        assert_eq!(capabilities_check(root).detail, "effective: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN");
        assert_eq!(symbol_access_check(root).status, Status::Ok);
        let limited = symbol_access_check(privs(&[cap::BPF, cap::PERFMON]));
        assert_eq!(limited.status, Status::Warn);
        assert!(limited.detail.starts_with("without CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_CHECKPOINT_RESTORE,"));
    }

    #[test]
    fn denied_calls_name_the_fix() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(denied_fix(&eperm, privs(&[]), false, "CONFIG_X"), SETCAP_HINT);
        assert!(denied_fix(&eperm, privs(&[cap::BPF]), true, "CONFIG_X").contains("seccomp"));
        let enosys = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(denied_fix(&enosys, privs(&[]), false, "CONFIG_X").starts_with("use a kernel built with CONFIG_X=y"));
    }

    #[test]
    fn sysctl_explanations() {
        let root = privs(&[cap::SYS_ADMIN, cap::BPF, cap::PERFMON]);
        assert_eq!(
            paranoid_check(Some(2), root).detail,
            "2: unprivileged users may profile only their own processes' user space; does not apply with CAP_PERFMON"
        );
        assert!(paranoid_check(Some(4), privs(&[]))
            .detail
            .ends_with("stackwatch needs CAP_PERFMON whatever its value"));
        assert_eq!(paranoid_check(Some(-1), root).detail, "-1: no restrictions; does not apply with CAP_PERFMON");
        assert_eq!(sample_rate_check(Some(100_000)).status, Status::Ok);
        assert_eq!(sample_rate_check(Some(5_000)).status, Status::Info);
        assert_eq!(sample_rate_check(Some(50)).status, Status::Warn);
        assert_eq!(
            unprivileged_bpf_check(Some(2), root).detail,
            "kernel.unprivileged_bpf_disabled = 2: disabled (root may re-enable it); does not apply with CAP_BPF"
        );
    }

    #[test]
    fn mounts() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 22 0:12 / /sys/kernel/tracing rw,nosuid - tracefs tracefs rw
";
        let cgroup = cgroup2_check(mountinfo);
        assert_eq!(cgroup.status, Status::Ok);
        assert_eq!(
            cgroup.detail,
            "mounted at `/sys/fs/cgroup/unified` (hybrid: controllers on cgroup v1, which `--cgroup` does not use)"
        );
        assert_eq!(tracefs_check(mountinfo).detail, "mounted at `/sys/kernel/tracing`");
        assert_eq!(cgroup2_check("").status, Status::Warn);
        assert_eq!(tracefs_check("").status, Status::Info);
    }

    #[test]
    fn report_layout() {
        let checks = [
            Check::new("kernel", Status::Ok, "Linux 6.1.0"),
            Check::new("capabilities", Status::Missing, "effective: none").fix(SETCAP_HINT),
            Check::new("BTF", Status::Warn, "`/sys/kernel/btf/vmlinux` not found").fix("rebuild"),
            Check::new("tracefs", Status::Info, "not mounted"),
        ];
        insta::assert_snapshot!(render(&checks));
        assert!(render(&checks[..1]).ends_with("\nall required checks passed: `stackwatch record` can run here\n"));
    }

    /// The probes run unprivileged too: they report, never panic.
    #[test]
    fn every_check_runs() {
        let checks = checks();
        assert_eq!(checks.len(), 15);
        let mut names: Vec<_> = checks.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), checks.len());
        for c in &checks {
            assert!(!c.detail.is_empty(), "{c:?}");
            if c.status == Status::Missing {
                assert!(c.fix.is_some(), "a missing requirement needs a fix: {c:?}");
            }
        }
    }
}
