//! Stopping one thread for as short a time as possible to take what its
//! user stack needs: registers and a copy of the top of its stack.
//!
//! `PTRACE_SEIZE` attaches without stopping; `PTRACE_INTERRUPT` stops the
//! thread wherever it is (a blocking system call is interrupted and
//! restarted by the kernel when the thread goes on, as after any signal);
//! `PTRACE_DETACH` lets it run again. Between the two: one `GETREGS` and
//! one `process_vm_readv` of the stack. Unwinding and naming happen after
//! the thread runs again, on the copy. Only one thread is stopped at a
//! time, so the process as a whole never stops.
//!
//! A thread that does not stop quickly (in an uninterruptible sleep, `D`,
//! it stops only when the sleep ends) is given up after [`STOP_TIMEOUT`];
//! the kernel drops the pending stop when stackwatch exits.

use std::io;
use std::time::{Duration, Instant};

use crate::ids::Tid;

/// How long to wait for a thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_millis(100);

/// Stack bytes copied, at most, from the stack pointer up: deep enough for
/// hundreds of frames, small enough to copy in microseconds.
pub(super) const STACK_COPY: u64 = 512 * 1024;

/// The registers a user stack walk starts from, and the copied stack.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes of the stack from `sp` up.
    pub stack: Vec<u8>,
    /// How long the thread was stopped: from the moment its stop was seen
    /// to the detach that let it run.
    pub stopped: Duration,
    /// From the interrupt to the stop: the time the kernel took to get the
    /// thread off its system call or CPU and into the stop (on a busy host,
    /// mostly waiting for a CPU).
    pub stop_wait: Duration,
}

impl Snapshot {
    /// The 8 bytes at stack address `addr`, if copied.
    pub(super) fn read_u64(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        let bytes = self.stack.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Stops `tid` of `pid`, takes its registers and up to `stack_len` bytes of
/// stack from its stack pointer (`stack_end`: the end of its stack mapping,
/// found by `stack_end_of(sp)` once the stack pointer is known), and lets
/// it go.
pub(super) fn snapshot(pid: u32, tid: Tid, stack_end_of: impl Fn(u64) -> Option<u64>) -> io::Result<Snapshot> {
    let tid = tid.get() as libc::pid_t;
    // SAFETY: plain ptrace requests on a thread id; no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) })?;
    let started = Instant::now();
    // SAFETY: as above.
    if let Err(e) = check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) }) {
        // SAFETY: as above; a seized, running thread is detached this way too.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        return Err(e);
    }
    let signal = wait_for_stop(tid, started)?;
    let stop_seen = Instant::now();
    let taken = take(pid, tid, &stack_end_of);
    // SAFETY: detaching a stopped tracee; `signal` re-delivers a signal that
    // arrived while it was held, so nothing the thread was sent is lost.
    let detached = check(unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, signal as libc::c_long) });
    let stopped = stop_seen.elapsed();
    detached?;
    taken.map(|s| Snapshot { stopped, stop_wait: stop_seen - started, ..s })
}

/// Waits until `tid` is in a ptrace stop. Returns the signal to hand back
/// on detach (0 for the interrupt's own stop).
fn wait_for_stop(tid: libc::pid_t, started: Instant) -> io::Result<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let ret = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
        if ret == tid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "the thread exited"));
            }
            if libc::WIFSTOPPED(status) {
                let event = status >> 16;
                let sig = libc::WSTOPSIG(status);
                // The interrupt's own stop (PTRACE_EVENT_STOP) and group
                // stops carry no signal to deliver; a signal-delivery stop does.
                return Ok(if event == libc::PTRACE_EVENT_STOP || sig == libc::SIGTRAP { 0 } else { sig });
            }
            continue;
        }
        if started.elapsed() > STOP_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("did not stop within {} ms (uninterruptible sleep?)", STOP_TIMEOUT.as_millis()),
            ));
        }
        // Yield first (the stop usually comes within microseconds), then
        // sleep so a slow stop does not burn a CPU.
        if started.elapsed() < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn take(pid: u32, tid: libc::pid_t, stack_end_of: &impl Fn(u64) -> Option<u64>) -> io::Result<Snapshot> {
    // SAFETY: an all-zero `user_regs_struct` is valid (plain integers).
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: GETREGS writes one `user_regs_struct` to the pointer.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut libc::user_regs_struct) })?;
    let (ip, sp, bp) = (regs.rip, regs.rsp, regs.rbp);
    let end = stack_end_of(sp).unwrap_or(sp + 64 * 1024).min(sp.saturating_add(STACK_COPY));
    let stack = read_memory(pid, sp, end.saturating_sub(sp) as usize);
    Ok(Snapshot { ip, sp, bp, stack, stopped: Duration::ZERO, stop_wait: Duration::ZERO })
}

/// Up to `len` bytes of `pid`'s memory at `addr`. The kernel never splits
/// one read, so a range running past the mapping reads nothing: then half
/// as much is tried, down to a page.
pub(super) fn read_memory(pid: u32, addr: u64, mut len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    loop {
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
        // SAFETY: `local` covers the first `len` bytes of `buf`, which
        // outlives the call; the remote range is only read by the kernel,
        // which checks it.
        let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n > 0 || len <= 4096 {
            buf.truncate(usize::try_from(n).unwrap_or(0));
            return buf;
        }
        len /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_words_of_the_copy_only() {
        let s = Snapshot { sp: 0x1000, stack: (0u8..24).collect(), ..Default::default() };
        assert_eq!(s.read_u64(0x1000), Some(u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7])));
        assert_eq!(s.read_u64(0x1010), Some(u64::from_le_bytes([16, 17, 18, 19, 20, 21, 22, 23])));
        assert_eq!(s.read_u64(0x1011), None);
        assert_eq!(s.read_u64(0xff8), None);
    }
}
