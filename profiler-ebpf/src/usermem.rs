//! Reads of a task's stack memory for the unwinders (`crate::unwind`, and
//! `crate::base` when it checks a remembered stack). Every read goes
//! through the checked helper: a bad address fails, it never faults.

use aya_ebpf::helpers::bpf_probe_read_user;

/// The word at `addr`.
#[inline(always)]
pub(crate) fn read(addr: u64) -> Option<u64> {
    // SAFETY: the helper checks the address.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// The two words at `addr` in one helper call (a call costs more than its
/// bytes): a saved rbp and the return address above it.
#[inline(always)]
pub(crate) fn read_pair(addr: u64) -> Option<[u64; 2]> {
    // SAFETY: the helper checks the address.
    unsafe { bpf_probe_read_user(addr as *const [u64; 2]) }.ok()
}
