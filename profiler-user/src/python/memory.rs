//! Reading another process's memory with `process_vm_readv`, the way
//! py-spy does: no ptrace stop, no `/proc/<pid>/mem` descriptor to keep
//! open, and one system call can fetch many scattered objects (the code
//! objects of a whole stack at once). Works across mount namespaces; needs
//! the same rights as ptrace (root, or CAP_SYS_PTRACE, or a child under
//! Yama scope 1).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kernel's limit on iovecs per call (`UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A failed read: the process is gone (`ESRCH`), the address is not mapped
/// (`EFAULT`, or a short read), or reading is not permitted (`EPERM`).
#[derive(Debug, thiserror::Error)]
#[error("failed to read {len} bytes at {addr:#x} of pid {pid}: {source}")]
pub struct ReadError {
    pub pid: u32,
    pub addr: u64,
    pub len: usize,
    #[source]
    pub source: io::Error,
}

impl ReadError {
    /// The process no longer exists.
    pub fn process_gone(&self) -> bool {
        self.source.raw_os_error() == Some(libc::ESRCH)
    }
}

/// One process's address space, read-only. Counts the system calls it makes
/// (for the benchmarks and the cache tests).
#[derive(Debug)]
pub struct RemoteMemory {
    pid: u32,
    syscalls: AtomicU64,
}

impl RemoteMemory {
    pub fn new(pid: u32) -> Self {
        Self { pid, syscalls: AtomicU64::new(0) }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `process_vm_readv` calls made so far.
    pub fn syscalls(&self) -> u64 {
        self.syscalls.load(Ordering::Relaxed)
    }

    /// Fills `buf` from `addr`; a short read is an error.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match self.readv(&mut [(addr, &mut *buf)]) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(self.error(addr, buf.len(), io::Error::from_raw_os_error(libc::EFAULT))),
            Err(err) => Err(self.error(addr, buf.len(), err)),
        }
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf)?;
        Ok(u64::from_ne_bytes(buf))
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32, ReadError> {
        let mut buf = [0u8; 4];
        self.read(addr, &mut buf)?;
        Ok(u32::from_ne_bytes(buf))
    }

    /// `len` bytes at `addr`.
    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = vec![0u8; len];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }

    /// Fills every `(addr, buf)` request, in as few calls as possible: one
    /// per [`IOV_MAX`] requests when all are readable. The kernel stops at
    /// the first unreadable one; the requests after it are retried one by
    /// one, so one bad address costs only its own result. Returns, per
    /// request, whether it was filled completely.
    pub fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> Vec<bool> {
        let mut filled = vec![false; requests.len()];
        let mut start = 0;
        while start < requests.len() {
            let end = (start + IOV_MAX).min(requests.len());
            let batch = &mut requests[start..end];
            let mut done = match self.readv(batch) {
                Ok(n) => n,
                // Gone or forbidden: every other request fails the same way.
                Err(err) if err.raw_os_error() != Some(libc::EFAULT) => return filled,
                Err(_) => 0,
            };
            let mut complete = 0;
            for (_, buf) in batch.iter() {
                if done < buf.len() {
                    break;
                }
                done -= buf.len();
                complete += 1;
            }
            filled[start..start + complete].iter_mut().for_each(|f| *f = true);
            if complete == end - start {
                start = end;
                continue;
            }
            // The one the kernel stopped at failed (or was cut short); the
            // rest may be fine.
            start += complete + 1;
            if start < end {
                for (i, (addr, buf)) in requests[start..end].iter_mut().enumerate() {
                    filled[start + i] = self.read(*addr, buf).is_ok();
                }
                start = end;
            }
        }
        filled
    }

    /// One `process_vm_readv`; the number of bytes read.
    fn readv(&self, requests: &mut [(u64, &mut [u8])]) -> io::Result<usize> {
        let local: Vec<libc::iovec> = requests
            .iter_mut()
            .map(|(_, buf)| libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() })
            .collect();
        let remote: Vec<libc::iovec> = requests
            .iter()
            .map(|(addr, buf)| libc::iovec { iov_base: *addr as usize as *mut libc::c_void, iov_len: buf.len() })
            .collect();
        self.syscalls.fetch_add(1, Ordering::Relaxed);
        // SAFETY: every local iovec describes a live, exclusively borrowed
        // buffer of exactly its length (`requests` is borrowed mutably for
        // the call); the remote iovecs are only addresses in the other
        // process, which the kernel checks.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn error(&self, addr: u64, len: usize, source: io::Error) -> ReadError {
        ReadError { pid: self.pid, addr, len, source }
    }
}

/// Little-endian field readers over a fetched struct; out-of-range offsets
/// read as 0 (the offsets come from a table checked at attach time, so a
/// miss is a bug, and 0 never passes the later validity checks).
pub(super) trait Fields {
    fn u64_at(&self, off: u16) -> u64;
    fn u32_at(&self, off: u16) -> u32;
    fn u8_at(&self, off: u16) -> u8;
}

impl Fields for [u8] {
    fn u64_at(&self, off: u16) -> u64 {
        let off = usize::from(off);
        self.get(off..off + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn u32_at(&self, off: u16) -> u32 {
        let off = usize::from(off);
        self.get(off..off + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    }
    fn u8_at(&self, off: u16) -> u8 {
        self.get(usize::from(off)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_in_one_call() {
        let a = 0x1122_3344_5566_7788u64;
        let b = [1u8, 2, 3, 4, 5];
        let mem = RemoteMemory::new(std::process::id());
        assert_eq!(mem.read_u64(&a as *const u64 as u64).ok(), Some(a));
        let (mut x, mut y) = ([0u8; 8], [0u8; 5]);
        let filled = mem.read_many(&mut [(&a as *const u64 as u64, &mut x[..]), (b.as_ptr() as u64, &mut y[..])]);
        assert_eq!(filled, [true, true]);
        assert_eq!((u64::from_ne_bytes(x), y), (a, b));
        assert_eq!(mem.syscalls(), 2);
    }

    #[test]
    fn a_missing_process_fails_every_request_in_one_call() {
        // Reaped, so its pid is free (and, right after, not reused).
        let mut child = match std::process::Command::new("true").spawn() {
            Ok(child) => child,
            Err(err) => panic!("cannot run `true`: {err}"),
        };
        let pid = child.id();
        let _ = child.wait();
        let mem = RemoteMemory::new(pid);
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        assert_eq!(mem.read_many(&mut [(0x1000, &mut x[..]), (0x2000, &mut y[..])]), [false, false]);
        assert_eq!(mem.syscalls(), 1);
        assert!(mem.read_u64(0x1000).is_err_and(|e| e.process_gone()));
    }

    #[test]
    fn a_bad_address_fails_only_its_own_request() {
        let a = 7u64;
        let c = 9u64;
        let mem = RemoteMemory::new(std::process::id());
        let (mut x, mut y, mut z) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let filled = mem.read_many(&mut [
            (&a as *const u64 as u64, &mut x[..]),
            (8, &mut y[..]), // the null page is never mapped
            (&c as *const u64 as u64, &mut z[..]),
        ]);
        assert_eq!(filled, [true, false, true]);
        assert_eq!(u64::from_ne_bytes(z), 9);
        let err = mem.read_u64(8).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("failed to read 8 bytes at 0x8 of pid"), "{err}");
    }
}
