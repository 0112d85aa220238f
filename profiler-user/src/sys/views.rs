//! Giving back the pages of the read-only file views the symbolizer maps.
//!
//! blazesym, the Go table reader and the Python reader read object files
//! through read-only shared mappings (`memmap2`'s default). Every page they
//! touch stays mapped, so it counts in the process's resident set until the
//! mapping goes: after one whole-host capture a `watch` daemon sat at
//! 112 MiB RSS, 86 MiB of it pages of debug info it had read once (most of
//! them the DWARF of its own 110 MB binary).
//!
//! Those pages belong to the page cache, not to the process: dropping the
//! page-table entries (`madvise(MADV_DONTNEED)`) loses nothing, the next
//! read faults the page back in from the cache (or the file), and a page
//! no process maps is one the kernel can reclaim cheaply.
//!
//! One call can read a whole file: blazesym's first parse of a binary's
//! DWARF reads every unit header, and on this kernel a fault on a cached
//! file maps its whole folio (≈ 150 KiB per scattered read of a 110 MB
//! binary, whatever `madvise` advice the view has), so the parse alone maps
//! most of the debug sections. While a [`Paging`] guard lives, a thread
//! checks the resident file pages every [`Paging::TICK`] and releases past
//! [`Paging::SLACK`] of growth, which bounds the peak;
//! [`Paging::release_now`] gives back the rest once a profile is built.
//!
//! Only mappings that are read-only, shared, not executable and of a path
//! (`r--s /…`, not a device under `/dev`; `/dev/shm` is a tmpfs) are
//! touched: the views above. Executable code, private mappings (whose
//! pages may be copies) and the BPF ring buffers (`anon_inode:…`, whose
//! pages have no fault handler to bring them back) are left alone.

use std::{
    io,
    sync::{Condvar, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use super::maps_line::MapsLine;

/// The views of this process whose pages [`release`] drops, from the text
/// of `/proc/self/maps`: `(start, end)` pairs.
fn file_views(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(MapsLine::parse)
        .filter(|l| l.perms == "r--s" && l.inode != 0 && l.path.starts_with('/') && !is_device(l.path))
        .map(|l| (l.start as usize, l.end as usize))
        .collect()
}

/// Whether `path` may be a device (whose mapping's pages may not fault back
/// in): anything under `/dev` except the files of `/dev/shm`, a tmpfs.
fn is_device(path: &str) -> bool {
    path.starts_with("/dev/") && !path.starts_with("/dev/shm/")
}

/// Resident bytes of this process's views (the mappings [`release`]
/// drops), from `/proc/self/maps` and `/proc/self/smaps`.
#[cfg(test)]
pub(crate) fn resident_view_bytes() -> u64 {
    let views = file_views(&std::fs::read_to_string("/proc/self/maps").unwrap());
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_view = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(mapping) = MapsLine::parse(line) {
            in_view = views.iter().any(|&(s, _)| s == mapping.start as usize);
        } else if let Some(kib) = line.strip_prefix("Rss:").filter(|_| in_view) {
            total += kib.trim().trim_end_matches(" kB").parse::<u64>().unwrap() * 1024;
        }
    }
    total
}

/// What one [`release`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Released {
    /// Views whose pages were dropped.
    pub views: usize,
    /// Their length (not all of it was resident).
    pub bytes: u64,
}

/// Drops the resident pages of this process's read-only file views (see
/// the module docs). A view unmapped meanwhile by another thread is
/// skipped.
pub(crate) fn release() -> io::Result<Released> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut done = Released::default();
    for (start, end) in file_views(&maps) {
        // SAFETY: the range is a whole read-only shared file mapping of
        // this process (or, if another thread unmapped it since, no mapping
        // or a new one, which the call cannot harm: MADV_DONTNEED on a
        // shared mapping only drops page-table entries, the data stays in
        // the file). No Rust reference is invalidated: the next access
        // faults the same bytes back in.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            done.views += 1;
            done.bytes += (end - start) as u64;
        }
    }
    Ok(done)
}

/// Drops the resident pages of `bytes`, constant data of this program's
/// own file (the embedded eBPF object, read once per load: 2 MiB that
/// otherwise stay mapped for the life of the process), whole pages inside
/// it only. Returns the bytes released, 0 when it refused.
///
/// Unlike the views above this is a private mapping, where dropping a page
/// someone wrote (a copy-on-write copy: relocated data after `RELRO`) would
/// bring back the file's bytes. So it only acts when the one mapping that
/// holds `bytes` is read-only, private, of a file, and has no anonymous
/// (copied) pages at all — `.rodata`, never written — and the next read
/// faults the same bytes back from the file.
pub(crate) fn release_constant(bytes: &'static [u8]) -> io::Result<usize> {
    let page = super::page_size();
    let start = (bytes.as_ptr() as usize).div_ceil(page) * page;
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end <= start {
        return Ok(0);
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    if !only_file_pages(&smaps, start, end) {
        return Ok(0);
    }
    // SAFETY: `start..end` lies in one read-only private file mapping with
    // no anonymous page (checked just above; it cannot gain one, being
    // read-only), so every page dropped reads back from the file unchanged,
    // and `bytes` is `'static` constant data: no reference sees a change.
    if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end - start)
}

/// Whether one mapping in `smaps` (the text of `/proc/self/smaps`) holds
/// `start..end` and is read-only (`r--p`), of a file, with `Anonymous: 0 kB`.
fn only_file_pages(smaps: &str, start: usize, end: usize) -> bool {
    let mut inside = false;
    for line in smaps.lines() {
        if let Some(l) = MapsLine::parse(line) {
            if l.start as usize <= start && end <= l.end as usize {
                if l.perms != "r--p" || l.inode == 0 || !l.path.starts_with('/') {
                    return false;
                }
                inside = true;
            } else {
                inside = false;
            }
        } else if let Some(kib) = line.strip_prefix("Anonymous:").filter(|_| inside) {
            return kib.trim() == "0 kB";
        }
    }
    false
}

/// Resident pages backed by files or shared memory (the third field of
/// `/proc/self/statm`), in bytes: one short read, cheap enough to check
/// after every process a profile symbolizes.
pub(crate) fn resident_shared_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(2)?.parse().ok()?;
    Some(pages * super::page_size() as u64)
}

/// Keeps the resident pages of file views within a slack of what they were
/// after the last release (see the module docs).
#[derive(Debug)]
struct FileViews {
    slack: u64,
    /// What [`Self::meter`] read right after the last release.
    baseline: u64,
    released: u64,
    meter: fn() -> Option<u64>,
    drop_pages: fn() -> io::Result<Released>,
}

impl FileViews {
    /// Measures with [`resident_shared_bytes`], drops with [`release`].
    fn new(slack: u64) -> Self {
        Self::with(slack, resident_shared_bytes, release)
    }

    fn with(slack: u64, meter: fn() -> Option<u64>, drop_pages: fn() -> io::Result<Released>) -> Self {
        Self { slack, baseline: meter().unwrap_or(0), released: 0, meter, drop_pages }
    }

    /// Releases the views' pages if the resident file pages grew by more
    /// than the slack since the last release.
    fn settle(&mut self) {
        match (self.meter)() {
            Some(now) if now > self.baseline.saturating_add(self.slack) => self.release(),
            _ => {}
        }
    }

    /// Counts the slack from the resident file pages now.
    fn rebase(&mut self) {
        self.baseline = (self.meter)().unwrap_or(0);
    }

    /// Releases the views' pages now.
    fn release(&mut self) {
        let before = (self.meter)().unwrap_or(0);
        match (self.drop_pages)() {
            Ok(done) => {
                tracing::debug!("released the pages of {} file views ({} bytes mapped)", done.views, done.bytes)
            }
            Err(e) => tracing::debug!("cannot release file views: {e}"),
        }
        self.baseline = (self.meter)().unwrap_or(0);
        self.released += before.saturating_sub(self.baseline);
    }

    /// Resident bytes given back so far (measured, not the views' length).
    fn released_bytes(&self) -> u64 {
        self.released
    }
}

/// While one lives, file views are released as they grow (see the module
/// docs): take one around work that reads object files. Guards nest and may
/// live on several threads; one thread does the checking for all.
#[must_use = "paging stops when the guard is dropped"]
pub(crate) struct Paging(());

/// The checking thread's state: how many guards live, and the views it
/// keeps within the slack (which [`Paging::release_now`] releases too).
struct Pager {
    guards: Mutex<usize>,
    wake: Condvar,
    views: Mutex<FileViews>,
}

impl Paging {
    /// How often the resident file pages are read (one read of
    /// `/proc/self/statm`, a few µs) while a guard lives.
    pub(crate) const TICK: Duration = Duration::from_millis(1);
    /// Growth of the resident file pages tolerated while paging.
    pub(crate) const SLACK: u64 = 2 << 20;

    pub(crate) fn start() -> Self {
        let pager = Self::pager();
        let mut guards = pager.guards.lock().unwrap_or_else(|e| e.into_inner());
        *guards += 1;
        if *guards == 1 {
            pager.wake.notify_all();
        }
        Self(())
    }

    /// Releases the views' pages now, whatever they grew by: once work
    /// that read files is done.
    pub(crate) fn release_now() {
        Self::pager().views().release();
    }

    /// Resident bytes this process has given back so far, while paging and
    /// by [`Self::release_now`].
    pub(crate) fn released_bytes() -> u64 {
        Self::pager().views().released_bytes()
    }

    fn pager() -> &'static Pager {
        static PAGER: OnceLock<Pager> = OnceLock::new();
        let mut spawn = false;
        let pager = PAGER.get_or_init(|| {
            spawn = true;
            Pager { guards: Mutex::new(0), wake: Condvar::new(), views: Mutex::new(FileViews::new(Self::SLACK)) }
        });
        if spawn {
            if let Err(e) = std::thread::Builder::new().name("view-pager".to_owned()).spawn(move || page(pager)) {
                // Pages are then given back only by `release_now`.
                tracing::warn!("cannot start the thread that releases file views: {e}");
            }
        }
        pager
    }
}

impl Pager {
    fn views(&self) -> MutexGuard<'_, FileViews> {
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Paging {
    fn drop(&mut self) {
        let pager = Self::pager();
        let mut guards = pager.guards.lock().unwrap_or_else(|e| e.into_inner());
        *guards = guards.saturating_sub(1);
    }
}

/// The checking thread: asleep while no guard lives.
fn page(pager: &Pager) {
    // Ahead of ordinary tasks (`SCHED_FIFO` 1), so a busy host cannot delay
    // a check by a whole time slice while the symbolizer maps pages: a few
    // µs of work per tick, and nothing at all while no guard lives.
    let _urgent = super::Urgent::enter();
    loop {
        {
            let mut guards = pager.guards.lock().unwrap_or_else(|e| e.into_inner());
            while *guards == 0 {
                guards = pager.wake.wait(guards).unwrap_or_else(|e| e.into_inner());
            }
        }
        pager.views().rebase();
        while *pager.guards.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            std::thread::sleep(Paging::TICK);
            pager.views().settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        sync::atomic::{AtomicU64, Ordering},
    };

    use super::*;

    /// Resident bytes of the mapping starting at `start`, from
    /// `/proc/self/smaps`.
    fn rss_of(start: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
        let rss = lines.find(|l| l.starts_with("Rss:")).expect("the mapping is in smaps");
        rss.split_ascii_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    /// Other tests of this binary map files and build profiles (which
    /// release views) on other threads: the release is checked in a child
    /// process of its own.
    #[test]
    fn pages_of_a_file_view_are_dropped_and_read_back_the_same() {
        crate::sys::run_child_test(module_path!(), "child_release_file_views");
    }

    #[test]
    #[ignore = "run by pages_of_a_file_view_are_dropped_and_read_back_the_same in a child process"]
    fn child_release_file_views() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        file.write_all(&data).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let view = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        // A private writable mapping of the same file and anonymous memory:
        // neither may lose a byte.
        // SAFETY: as above.
        let mut private = unsafe { memmap2::MmapOptions::new().map_copy(&file) }.unwrap();
        private[0] ^= 0xff;
        let mut anon = memmap2::MmapMut::map_anon(1 << 20).unwrap();
        anon.fill(0x5a);

        // Nothing in this process releases pages but the call below, so
        // the file-backed resident set only grows until then (code pages of
        // the test fault in too): by at least the view's 4 MiB here.
        let shared_before = resident_shared_bytes().unwrap();
        let sum: u64 = view.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(sum > 0);
        let start = view.as_ptr() as usize;
        assert_eq!(rss_of(start), 4 << 20, "every page of the view was read");
        let shared_touched = resident_shared_bytes().unwrap();
        assert!(shared_touched >= shared_before + (4 << 20), "statm: {shared_before} -> {shared_touched}");

        let done = release().unwrap();
        assert!(done.views >= 1 && done.bytes >= 4 << 20, "{done:?}");
        assert_eq!(rss_of(start), 0, "the view's pages are no longer mapped");
        assert_eq!(&view[..], &data[..], "and read back the same");
        assert_eq!(private[0], data[0] ^ 0xff, "a private copy keeps its write");
        assert!(anon.iter().all(|&b| b == 0x5a), "anonymous memory is untouched");
    }

    /// The pager is one thread for the whole process: checked in a child
    /// process of its own, like the release above.
    #[test]
    fn paging_bounds_the_pages_of_a_view_while_it_is_read() {
        crate::sys::run_child_test(module_path!(), "child_paging_bounds_views");
    }

    #[test]
    #[ignore = "run by paging_bounds_the_pages_of_a_view_while_it_is_read in a child process"]
    fn child_paging_bounds_views() {
        const MIB: usize = 1 << 20;
        let mut file = tempfile::tempfile().unwrap();
        for i in 0..64u8 {
            file.write_all(&[i; MIB]).unwrap();
        }
        // SAFETY: a private temporary file nobody else writes.
        let view = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let start = view.as_ptr() as usize;
        let read_all = |pause: bool| {
            let mut most = 0;
            for (i, mib) in view.chunks(MIB).enumerate() {
                let sum: u64 = mib.iter().step_by(4096).map(|&b| u64::from(b)).sum();
                assert_eq!(sum, i as u64 * 256, "MiB {i} reads back the same");
                if pause {
                    std::thread::sleep(Paging::TICK * 2);
                }
                most = most.max(rss_of(start));
            }
            most
        };

        let most = {
            let _paging = Paging::start();
            read_all(true)
        };
        // The slack is 2 MiB: a quarter of the file leaves room for a
        // pager thread that a busy machine runs late.
        assert!(most <= 16 * MIB as u64, "{} MiB of the 64 MiB view resident at once", most >> 20);
        assert!(Paging::released_bytes() >= 32 * MIB as u64, "released {}", Paging::released_bytes());

        // Without a guard nothing is released: no thread works in between.
        std::thread::sleep(Paging::TICK * 10);
        release().unwrap();
        let released = Paging::released_bytes();
        let most = read_all(false);
        std::thread::sleep(Paging::TICK * 10);
        assert!(most >= 60 * MIB as u64, "only {} MiB resident without paging", most >> 20);
        assert_eq!(rss_of(start), most, "nothing released after the guard");
        assert_eq!(Paging::released_bytes(), released);
    }

    #[test]
    fn only_read_only_shared_views_of_paths_are_chosen() {
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 fe:00 123 /usr/bin/stackwatch
55d0c0001000-55d0c0002000 r-xp 00001000 fe:00 123 /usr/bin/stackwatch
7f0000000000-7f0000100000 r--s 00000000 fe:00 456 /usr/lib/debug/x.debug
7f0000100000-7f0000200000 r--s 00000000 00:0e 789 anon_inode:bpf-map
7f0000200000-7f0000300000 rw-s 00000000 00:0e 789 anon_inode:bpf-map
7f0000300000-7f0000400000 r--s 00000000 00:05 12 /dev/something
7f0000400000-7f0000500000 r--s 00000000 00:01 34 /memfd:sealed (deleted)
7f0000500000-7f0000600000 r--s 00000000 00:2a 56 /var/lib/containers/overlay/lib/libc.so.6 (deleted)
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
7f0000700000-7f0000800000 r--s 00000000 00:1a 78 /dev/shm/app/bin/server
";
        assert_eq!(
            file_views(maps),
            [
                (0x7f00_0000_0000, 0x7f00_0010_0000),
                (0x7f00_0040_0000, 0x7f00_0050_0000),
                (0x7f00_0050_0000, 0x7f00_0060_0000),
                (0x7f00_0070_0000, 0x7f00_0080_0000)
            ]
        );
    }

    static METER: AtomicU64 = AtomicU64::new(0);
    static DROPS: AtomicU64 = AtomicU64::new(0);

    fn fake_meter() -> Option<u64> {
        Some(METER.load(Ordering::SeqCst))
    }

    /// A release that brings the meter back to 10 MiB.
    fn fake_drop() -> io::Result<Released> {
        DROPS.fetch_add(1, Ordering::SeqCst);
        METER.store(10 << 20, Ordering::SeqCst);
        Ok(Released { views: 1, bytes: 64 << 20 })
    }

    #[test]
    fn settle_releases_only_past_the_slack() {
        METER.store(10 << 20, Ordering::SeqCst);
        let mut views = FileViews::with(4 << 20, fake_meter, fake_drop);
        METER.store(13 << 20, Ordering::SeqCst);
        views.settle();
        assert_eq!(DROPS.load(Ordering::SeqCst), 0, "3 MiB of growth is within the 4 MiB slack");
        METER.store(15 << 20, Ordering::SeqCst);
        views.settle();
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "5 MiB is past it");
        assert_eq!(views.released_bytes(), 5 << 20);
        METER.store(12 << 20, Ordering::SeqCst);
        views.settle();
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the slack counts from the level after the release");
        views.release();
        assert_eq!(DROPS.load(Ordering::SeqCst), 2, "release() always drops");
        assert_eq!(views.released_bytes(), 7 << 20);
    }

    /// Pages of `start..end` present in this process's page tables, from
    /// `/proc/self/pagemap` (bit 63 of each page's entry).
    fn present_pages(start: usize, end: usize) -> usize {
        use std::os::unix::fs::FileExt as _;
        let page = crate::sys::page_size();
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        let mut entries = vec![0u8; (end - start) / page * 8];
        pagemap.read_exact_at(&mut entries, (start / page * 8) as u64).unwrap();
        let (entries, _) = entries.as_chunks::<8>();
        entries.iter().filter(|&&e| u64::from_le_bytes(e) >> 63 == 1).count()
    }

    /// Constant data of the test binary itself, 16 pages or so.
    static CONSTANT: &[u8] = include_bytes!("../../../Cargo.lock");

    #[test]
    fn pages_of_constant_data_are_dropped_and_read_back_the_same() {
        crate::sys::run_child_test(module_path!(), "child_release_constant");
    }

    #[test]
    #[ignore = "run by pages_of_constant_data_are_dropped_and_read_back_the_same in a child process"]
    fn child_release_constant() {
        let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        assert_eq!(CONSTANT, &on_disk[..], "the test reads the file it embedded");
        let page = crate::sys::page_size();
        let start = (CONSTANT.as_ptr() as usize).div_ceil(page) * page;
        let end = (CONSTANT.as_ptr() as usize + CONSTANT.len()) / page * page;
        assert!(end - start >= 4 * page, "{} bytes embedded", CONSTANT.len());
        let sum: u64 = CONSTANT.iter().map(|&b| u64::from(b)).sum();
        assert!(sum > 0);
        assert_eq!(present_pages(start, end), (end - start) / page, "every page was read");

        let released = release_constant(CONSTANT).unwrap();
        assert_eq!(released, end - start, "the whole pages inside it");
        assert_eq!(present_pages(start, end), 0, "no longer mapped");
        assert_eq!(CONSTANT, &on_disk[..], "and read back the same");

        // Heap memory and written data are refused, and keep their bytes.
        let heap: &'static [u8] = Box::leak(vec![0x5a; 8 * page].into_boxed_slice());
        assert_eq!(release_constant(heap).unwrap(), 0);
        assert!(heap.iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn only_unwritten_read_only_file_mappings_are_released() {
        let smaps = "\
1000-5000 r--p 00000000 08:01 42 /usr/bin/x
Rss:                  16 kB
Anonymous:             0 kB
5000-9000 r--p 00004000 08:01 42 /usr/bin/x
Rss:                  16 kB
Anonymous:             4 kB
9000-d000 rw-p 00008000 08:01 42 /usr/bin/x
Anonymous:             0 kB
d000-11000 r--p 00000000 00:00 0
Anonymous:             0 kB
";
        assert!(only_file_pages(smaps, 0x2000, 0x4000));
        assert!(!only_file_pages(smaps, 0x4000, 0x6000), "across two mappings");
        assert!(!only_file_pages(smaps, 0x6000, 0x8000), "a copied page: relocated data");
        assert!(!only_file_pages(smaps, 0xa000, 0xc000), "writable");
        assert!(!only_file_pages(smaps, 0xe000, 0x10000), "anonymous");
        assert!(!only_file_pages(smaps, 0x20000, 0x21000), "no mapping");
    }
}
