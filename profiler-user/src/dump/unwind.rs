//! Walking a copied user stack with the unwind tables of the process's
//! objects (`.eh_frame`, through framehop), so code without frame pointers
//! (glibc's system-call wrappers, where a blocked thread sits; Rust and C
//! release builds) does not cut the stack; framehop falls back to frame
//! pointers where a file has no tables (JIT code).

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _};
use object::{Object as _, ObjectSection as _};

use super::ptrace::Snapshot;
use crate::ids::Pid;
use crate::objfile::elf::ElfInfo;
use crate::procfs::maps::MapsEntry;

/// Frames walked at most (a corrupt stack can loop).
const MAX_FRAMES: usize = 512;

/// The unwind tables of one process's objects.
pub(super) struct ProcessUnwinder {
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
}

impl ProcessUnwinder {
    /// Reads the unwind sections of every file `maps` maps executable.
    pub(super) fn new(pid: Pid, maps: &[MapsEntry]) -> Self {
        let mut unwinder = UnwinderX86_64::new();
        for m in maps.iter().filter(|m| m.is_file()) {
            if let Some(module) = module(pid, m) {
                unwinder.add_module(module);
            }
        }
        Self { unwinder, cache: CacheX86_64::new() }
    }

    /// The stack of `snap`, innermost first: the instruction pointer, then
    /// return addresses moved back into their call instructions (so they
    /// name the calling line). Whether the walk reached the stack's end.
    pub(super) fn walk(&mut self, snap: &Snapshot) -> (Vec<u64>, bool) {
        let mut read = |addr: u64| snap.read_u64(addr).ok_or(());
        let regs = UnwindRegsX86_64::new(snap.ip, snap.sp, snap.bp);
        let mut frames = Vec::new();
        let mut iter = self.unwinder.iter_frames(snap.ip, regs, &mut self.cache, &mut read);
        let complete = loop {
            if frames.len() >= MAX_FRAMES {
                break false;
            }
            match iter.next() {
                Ok(Some(FrameAddress::InstructionPointer(ip))) => frames.push(ip),
                Ok(Some(FrameAddress::ReturnAddress(ra))) => frames.push(ra.get() - 1),
                Ok(None) => break true,
                Err(e) => {
                    tracing::debug!("user stack walk ended: {e}");
                    break false;
                }
            }
        };
        (frames, complete)
    }
}

/// framehop's view of one mapped file: where it is, its load bias and its
/// unwind sections (copied: the file stays closed).
fn module(pid: Pid, m: &MapsEntry) -> Option<Module<Vec<u8>>> {
    let file = std::fs::File::open(m.map_files_path(pid)).ok()?;
    // SAFETY: a read-only private mapping of a file the process maps too.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let info = ElfInfo::parse(&map)?;
    // The mapping starts on a page boundary, which the segment before the
    // code segment often shares: its vaddr comes from the executable
    // segment that maps it (vaddr − offset is constant within a segment).
    let vaddr = info
        .segments
        .iter()
        .find(|s| s.exec && s.offset - s.offset % 4096 <= m.offset && m.offset < s.offset + s.filesz)
        .map(|s| s.vaddr - s.offset + m.offset)
        .or_else(|| info.file_offset_to_vaddr(crate::addr::FileOffset::new(m.offset)).map(|v| v.get()))?;
    let bias = m.start.checked_sub(vaddr)?;
    let obj = object::File::parse(&*map).ok()?;
    let section = |name: &str| {
        let s = obj.section_by_name(name)?;
        Some((s.address()..s.address() + s.size(), s.data().ok()?.to_vec()))
    };
    let (eh_frame_svma, eh_frame) = section(".eh_frame").unzip();
    let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr").unzip();
    let (text_svma, _) = section(".text").map(|(r, _)| (r, ())).unzip();
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma,
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        ..Default::default()
    };
    Some(Module::new(m.clean_path().to_owned(), m.start..m.end, bias, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_this_threads_own_stack_through_its_tables() {
        // This test's own stack: the copy is taken by `process_vm_readv` of
        // our own memory, with registers read here (no ptrace needed).
        let pid = Pid::current();
        let maps = crate::procfs::maps::read_maps(pid).unwrap();
        let mut unwinder = ProcessUnwinder::new(pid, &maps);
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers into locals; no memory is touched.
        unsafe {
            std::arch::asm!("lea {0}, [rip]", "mov {1}, rsp", "mov {2}, rbp", out(reg) ip, out(reg) sp, out(reg) bp);
        }
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        let end = super::super::all_ranges(&text).into_iter().find(|&(s, e)| s <= sp && sp < e).unwrap().1;
        let stack = super::super::ptrace::read_memory(pid.get(), sp, (end - sp) as usize);
        assert!(!stack.is_empty());
        let snap = Snapshot { ip, sp, bp, stack, ..Default::default() };
        let (frames, _) = unwinder.walk(&snap);
        // The test harness runs this on a thread it started: at least this
        // function, the harness and the thread entry.
        assert!(frames.len() >= 5, "{frames:x?}");
        let me = walks_this_threads_own_stack_through_its_tables as *const () as u64;
        assert!(frames[0] >= me && frames[0] < me + 4096, "starts here: {frames:x?} vs {me:#x}");
    }
}
