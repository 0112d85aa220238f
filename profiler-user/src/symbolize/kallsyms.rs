//! Kernel addresses named from `/proc/kallsyms`: in one streaming pass
//! ([`resolve`]), or from a compact index of the whole file
//! ([`KernelIndex`]) read while a capture runs.
//!
//! A profile holds a few hundred distinct kernel addresses; the kernel has
//! over a hundred thousand symbols. A general-purpose index of all of them
//! (what blazesym or BCC build: about 6 MiB here) to look up a few hundred
//! is wasted memory, so [`resolve`] reads each line, compares it with the
//! wanted addresses and drops it: memory proportional to the addresses
//! asked for, time one read of the file. That read is mostly the kernel
//! formatting 122 k lines (about 50 ms of system time on this kind of VM,
//! 80–95 ms of wall time with both CPUs busy), and it came after the
//! capture's end: most of the time from Ctrl-C to the files.
//!
//! [`KernelIndex`] moves it off that path. A capture starts reading the
//! file on a thread of its own at low priority ([`Prefetch`], nice 10,
//! back to normal once the capture waits for it), and keeps every text
//! symbol in about 1.8 MiB for 121 k symbols: start addresses as 32-bit
//! offsets (kernel text, modules and BPF programs all lie in the top 2 GiB
//! on x86-64), where each name is, and the names deflated in blocks of
//! [`BLOCK`] in the file's order (3 MB as text, 0.9 MB deflated; the
//! kernel stores them compressed too). A lookup inflates one block; sorted
//! addresses mostly stay in the block of the lookup before. While reading
//! it holds one block of text and 5 bytes per symbol more.
//!
//! Kernel code can change while the index is held: a module loaded, a BPF
//! program (or trampoline) added. [`CodeGeneration`] notes the loaded
//! modules and BPF programs when the file is read; if either differs when
//! the profile is built, the index is not used and the file is read again
//! in one pass.
//!
//! The file need not be sorted (module symbols follow the core kernel's):
//! in a streaming pass each symbol is offered only to the first wanted
//! address at or above it, and a running maximum afterwards gives every
//! address the closest symbol at or below it; the index sorts its entries.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read as _},
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Instant,
};

use flate2::{read::DeflateDecoder, Compress, Compression, FlushCompress, Status};

/// The function a kernel address falls in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KernelSymbol {
    pub name: String,
    /// Start address of the function.
    pub addr: u64,
    /// The module, for symbols of loadable modules.
    pub module: Option<String>,
}

/// Names each of `addrs` (sorted ascending, no duplicates) by the text
/// symbol at or below it, reading kallsyms-format lines
/// (`ffffffff81000000 T _stext [module]`) from `reader`. An error if every
/// address in the file reads zero: `kernel.kptr_restrict` hides them from
/// this process, and naming would be guesswork.
pub(super) fn resolve(mut reader: impl BufRead, addrs: &[u64]) -> io::Result<Vec<Option<KernelSymbol>>> {
    debug_assert!(addrs.windows(2).all(|w| w[0] < w[1]), "addresses must be sorted and unique");
    // The best symbol offered to each address directly.
    let mut offered: Vec<Option<KernelSymbol>> = vec![None; addrs.len()];
    // Bytes, not `String`: the whole file is ASCII, and checking 120 k lines
    // for UTF-8 cost as much as the parsing itself. Only kept names are
    // converted.
    let mut line = Vec::new();
    let mut lines = 0u64;
    let mut nonzero = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines += 1;
        let Some((addr, kind, name, module)) = parse_line(&line) else { continue };
        nonzero |= addr != 0;
        // Text symbols only: data symbols would name code wrongly.
        if !is_text(kind) || addr == 0 {
            continue;
        }
        let k = addrs.partition_point(|&a| a < addr);
        let Some(slot) = offered.get_mut(k) else { continue };
        // Aliases share an address (`__pi___x86_indirect_thunk_rax` and
        // `__x86_indirect_thunk_rax`): keep the shortest name.
        if slot.as_ref().is_some_and(|s| s.addr > addr || (s.addr == addr && s.name.len() <= name.len())) {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else { continue };
        let module = module.and_then(|m| std::str::from_utf8(m).ok());
        match slot {
            // Reuse the allocation: in a sorted file every symbol between two
            // wanted addresses replaces the previous one.
            Some(s) => {
                s.addr = addr;
                s.name.clear();
                s.name.push_str(name);
                s.module = module.map(str::to_owned);
            }
            None => *slot = Some(KernelSymbol { name: name.to_owned(), addr, module: module.map(str::to_owned) }),
        }
    }
    if lines > 0 && !nonzero {
        return Err(hidden_addresses());
    }
    // A symbol offered to address k is at or below every address from k on.
    let mut best: Option<KernelSymbol> = None;
    let mut out = Vec::with_capacity(addrs.len());
    for sym in offered {
        if let Some(sym) = sym {
            if best.as_ref().is_none_or(|b| sym.addr > b.addr) {
                best = Some(sym);
            }
        }
        out.push(best.clone());
    }
    Ok(out)
}

/// One kallsyms line: address, kind, name and module (without its
/// brackets), as bytes.
type Line<'a> = (u64, &'a [u8], &'a [u8], Option<&'a [u8]>);

/// One kallsyms line, or `None` for a line that is not one.
fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let mut words = line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
    let (addr, kind, name) = (words.next()?, words.next()?, words.next()?);
    let module = words.next().map(|m| m.strip_prefix(b"[").unwrap_or(m)).map(|m| m.strip_suffix(b"]").unwrap_or(m));
    Some((hex(addr)?, kind, name, module))
}

/// Whether a symbol of this kind names code.
fn is_text(kind: &[u8]) -> bool {
    matches!(kind, b"t" | b"T" | b"w" | b"W")
}

fn hidden_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "every address in /proc/kallsyms reads 0 (kernel.kptr_restrict hides them; root with CAP_SYSLOG sees them)",
    )
}

/// Symbols per deflated block of names in a [`KernelIndex`].
pub(super) const BLOCK: usize = 256;

/// Where kernel text, modules and BPF programs lie on x86-64: the top
/// 2 GiB of the address space (`__START_KERNEL_map` up). Addresses are
/// held as 32-bit offsets from here.
const BASE: u64 = 0xffff_ffff_8000_0000;

/// Every text symbol of kallsyms, compact (see the module docs).
#[derive(Debug, Default)]
pub(super) struct KernelIndex {
    /// Start of each symbol − [`BASE`], ascending. Of aliases (one
    /// address, several names) only the shortest name is kept, as
    /// [`resolve`] does.
    starts: Vec<u32>,
    /// For each of `starts`, the place of its name among the file's text
    /// symbols (names are packed in the file's order, which is the
    /// address order but for modules and BPF programs).
    names_at: Vec<u32>,
    /// The names of text symbols `BLOCK·i ..` in file order, one line each
    /// (`name` or `name\tmodule`), deflated: block `i` is
    /// `packed[blocks[i]..blocks[i + 1]]`.
    packed: Vec<u8>,
    blocks: Vec<u32>,
}

impl KernelIndex {
    /// Reads kallsyms-format lines from `reader`; the same error as
    /// [`resolve`] when every address is hidden, and an error for a symbol
    /// outside the top 2 GiB (not x86-64's layout). Beyond the index
    /// itself, it holds a block of names as text and about 5 bytes per
    /// symbol while reading.
    pub(super) fn read(mut reader: impl BufRead) -> io::Result<Self> {
        let mut starts: Vec<u32> = Vec::new();
        // Name lengths (saturated), to keep the shortest of aliases.
        let mut lengths: Vec<u8> = Vec::new();
        let mut packed = Vec::new();
        let mut blocks = vec![0u32];
        let mut deflate = Compress::new(Compression::fast(), false);
        let mut text = Vec::new();
        let mut line = Vec::new();
        let (mut lines, mut nonzero) = (0u64, false);
        loop {
            line.clear();
            let end = reader.read_until(b'\n', &mut line)? == 0;
            if !end {
                lines += 1;
                let Some((addr, kind, name, module)) = parse_line(&line) else { continue };
                nonzero |= addr != 0;
                if !is_text(kind) || addr == 0 {
                    continue;
                }
                let offset = addr
                    .checked_sub(BASE)
                    .and_then(|o| u32::try_from(o).ok())
                    .ok_or_else(|| io::Error::other(format!("kernel symbol at {addr:#x}, outside the top 2 GiB")))?;
                starts.push(offset);
                lengths.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
                text.extend_from_slice(name);
                if let Some(module) = module {
                    text.push(b'\t');
                    text.extend_from_slice(module);
                }
                text.push(b'\n');
            }
            if !text.is_empty() && (end || starts.len().is_multiple_of(BLOCK)) {
                deflate.reset();
                packed.reserve(text.len() + text.len() / 2 + 64);
                match deflate.compress_vec(&text, &mut packed, FlushCompress::Finish) {
                    Ok(Status::StreamEnd) => {}
                    other => return Err(io::Error::other(format!("cannot deflate kernel symbol names: {other:?}"))),
                }
                blocks
                    .push(u32::try_from(packed.len()).map_err(|_| io::Error::other("kernel symbol names too large"))?);
                text.clear();
            }
            if end {
                break;
            }
        }
        if lines > 0 && !nonzero {
            return Err(hidden_addresses());
        }
        let n = u32::try_from(starts.len()).map_err(|_| io::Error::other("too many kernel symbols"))?;
        // By address, then name length; stable, so among aliases of one
        // length the first in the file stays.
        let mut order: Vec<u32> = (0..n).collect();
        order.sort_by_key(|&i| (starts[i as usize], lengths[i as usize]));
        order.dedup_by_key(|i| starts[*i as usize]);
        drop(lengths);
        let sorted: Vec<u32> = order.iter().map(|&i| starts[i as usize]).collect();
        packed.shrink_to_fit();
        order.shrink_to_fit();
        Ok(Self { starts: sorted, names_at: order, packed, blocks })
    }

    /// Names each of `addrs` (sorted ascending) by the symbol at or below
    /// it, like [`resolve`].
    pub(super) fn resolve(&self, addrs: &[u64]) -> Vec<Option<KernelSymbol>> {
        // The block inflated last: sorted addresses mostly stay in it.
        let mut inflated: Option<(usize, Vec<u8>)> = None;
        addrs
            .iter()
            .map(|&addr| {
                let offset = addr.checked_sub(BASE)?;
                let i = self.starts.partition_point(|&s| u64::from(s) <= offset).checked_sub(1)?;
                let at = *self.names_at.get(i)? as usize;
                let block = at / BLOCK;
                if inflated.as_ref().is_none_or(|(b, _)| *b != block) {
                    inflated = Some((block, self.inflate(block)?));
                }
                let (_, text) = inflated.as_ref()?;
                let line = text.split(|&c| c == b'\n').nth(at % BLOCK)?;
                let mut parts = line.splitn(2, |&c| c == b'\t');
                let name = String::from_utf8_lossy(parts.next()?).into_owned();
                let module = parts.next().map(|m| String::from_utf8_lossy(m).into_owned());
                Some(KernelSymbol { name, addr: BASE + u64::from(self.starts[i]), module })
            })
            .collect()
    }

    fn inflate(&self, block: usize) -> Option<Vec<u8>> {
        let (start, end) = (*self.blocks.get(block)? as usize, *self.blocks.get(block + 1)? as usize);
        let mut text = Vec::new();
        DeflateDecoder::new(self.packed.get(start..end)?).read_to_end(&mut text).ok()?;
        Some(text)
    }

    /// Symbols held.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        (self.starts.capacity() + self.names_at.capacity() + self.blocks.capacity()) * 4 + self.packed.capacity()
    }
}

/// Which kernel code exists besides the core kernel's: loaded modules
/// (name and address, from `/proc/modules` where there is one) and BPF
/// programs (ids). Equal before and after means no symbol was added to or
/// removed from kallsyms meanwhile, short of a module or program replaced
/// at the same place under the same name or id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CodeGeneration {
    modules: Option<Vec<String>>,
    bpf_programs: Vec<u32>,
}

impl CodeGeneration {
    pub(super) fn now() -> Self {
        let modules = std::fs::read_to_string("/proc/modules").ok().map(|text| {
            // Name and load address; not the use counts, which change
            // while a module is used.
            text.lines()
                .map(|l| {
                    let w: Vec<&str> = l.split_ascii_whitespace().collect();
                    format!("{} {}", w.first().unwrap_or(&""), w.last().unwrap_or(&""))
                })
                .collect()
        });
        Self { modules, bpf_programs: crate::sys::bpf::program_ids() }
    }
}

/// A [`KernelIndex`] being read on a thread of its own, at low priority
/// (nice 10) until someone waits for it.
pub(super) struct Prefetch {
    handle: JoinHandle<io::Result<(CodeGeneration, KernelIndex)>>,
    tid: Arc<AtomicI32>,
    urgent: Arc<AtomicBool>,
}

impl Prefetch {
    /// Starts reading `path` (kallsyms).
    pub(super) fn start(path: &'static str) -> io::Result<Self> {
        let tid = Arc::new(AtomicI32::new(0));
        let urgent = Arc::new(AtomicBool::new(false));
        let (thread_tid, thread_urgent) = (Arc::clone(&tid), Arc::clone(&urgent));
        let handle = std::thread::Builder::new().name("kallsyms".to_owned()).spawn(move || {
            // SAFETY: gettid has no preconditions.
            thread_tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            // Behind the capture's target; back to normal priority once
            // someone waits (checked again after lowering, so a wait that
            // came in between is not lost: see `wait`).
            if !thread_urgent.load(Ordering::SeqCst) {
                set_nice(0, 10);
                if thread_urgent.load(Ordering::SeqCst) {
                    set_nice(0, 0);
                }
            }
            let started = Instant::now();
            let generation = CodeGeneration::now();
            let index = KernelIndex::read(BufReader::with_capacity(1 << 16, File::open(path)?))?;
            tracing::debug!(
                symbols = index.len(),
                bytes = index.heap_bytes(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "kernel symbols indexed"
            );
            Ok((generation, index))
        })?;
        Ok(Self { handle, tid, urgent })
    }

    /// The index, once read; the thread runs at normal priority from now.
    pub(super) fn wait(self) -> io::Result<(CodeGeneration, KernelIndex)> {
        self.urgent.store(true, Ordering::SeqCst);
        let tid = self.tid.load(Ordering::SeqCst);
        if tid > 0 && !self.handle.is_finished() {
            set_nice(tid, 0);
        }
        self.handle.join().map_err(|_| io::Error::other("the thread reading kallsyms panicked"))?
    }
}

/// Sets the nice value of thread `tid` (0: the calling thread); failures
/// (no `CAP_SYS_NICE` to raise it again) leave it as it is.
fn set_nice(tid: libc::pid_t, nice: libc::c_int) {
    // SAFETY: no memory is passed; `tid` names a thread of this process.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
}

/// A hexadecimal number of at most 16 digits.
fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| Some(n << 4 | u64::from((d as char).to_digit(16)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Core kernel symbols with an alias, a data symbol and a weak one,
    /// then a module's out of address order.
    const SAMPLE: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T __pi_do_work
ffffffff81000300 T do_work
ffffffff81000400 W weak_fn
ffffffffc0001000 t mod_fn\t[mymod]
ffffffffc0000000 t mod_first\t[mymod]
";

    const SAMPLE_ADDRS: [u64; 7] = [
        0xffff_ffff_8000_0000, // below every symbol
        0xffff_ffff_8100_0000, // exactly a symbol
        0xffff_ffff_8100_0250, // after a data symbol: still helper
        0xffff_ffff_8100_0300,
        0xffff_ffff_8100_0401,
        0xffff_ffff_c000_0010, // module symbols out of order
        0xffff_ffff_c000_2000,
    ];

    fn names(out: &[Option<KernelSymbol>]) -> Vec<Option<(&str, u64)>> {
        out.iter().map(|s| s.as_ref().map(|s| (s.name.as_str(), s.addr))).collect()
    }

    #[test]
    fn names_each_address_by_the_symbol_at_or_below_it() {
        let (text, addrs) = (SAMPLE, SAMPLE_ADDRS);
        let out = resolve(text.as_bytes(), &addrs).unwrap();
        assert_eq!(
            names(&out),
            [
                None,
                Some(("_stext", 0xffff_ffff_8100_0000)),
                Some(("helper", 0xffff_ffff_8100_0100)),
                Some(("do_work", 0xffff_ffff_8100_0300)),
                Some(("weak_fn", 0xffff_ffff_8100_0400)),
                Some(("mod_first", 0xffff_ffff_c000_0000)),
                Some(("mod_fn", 0xffff_ffff_c000_1000)),
            ]
        );
        assert_eq!(out[6].as_ref().unwrap().module.as_deref(), Some("mymod"));
        assert_eq!(out[3].as_ref().unwrap().module, None);
    }

    #[test]
    fn the_index_names_like_the_streaming_pass() {
        let (text, addrs) = (SAMPLE, SAMPLE_ADDRS);
        let index = KernelIndex::read(text.as_bytes()).unwrap();
        assert_eq!(index.len(), 6, "text symbols, one per address");
        assert_eq!(index.resolve(&addrs), resolve(text.as_bytes(), &addrs).unwrap());
        assert!(KernelIndex::read("".as_bytes()).unwrap().resolve(&addrs).iter().all(Option::is_none));
        let hidden = "0000000000000000 T _stext\n0000000000000000 t helper\n";
        assert!(KernelIndex::read(hidden.as_bytes()).unwrap_err().to_string().contains("kptr_restrict"));
        // Not x86-64's layout: no index (a pass of the file names them).
        let low = "ffffffff81000000 T _stext\n0000000000401000 T low\n";
        assert!(KernelIndex::read(low.as_bytes()).unwrap_err().to_string().contains("top 2 GiB"));
    }

    /// Synthetic symbols over many blocks, names of every length and
    /// modules on some: each address is named as by the streaming pass.
    #[test]
    fn the_index_holds_many_blocks() {
        let mut text = String::new();
        for i in (0..5000u64).rev().step_by(7).chain((0..5000).step_by(7).map(|i| i + 3)) {
            let module = if i % 3 == 0 { format!(" [m{}]", i % 11) } else { String::new() };
            text.push_str(&format!(
                "{:016x} t f_{i}_{}{module}\n",
                0xffff_ffff_8100_0000u64 + i * 64,
                "x".repeat((i % 40) as usize)
            ));
        }
        let index = KernelIndex::read(text.as_bytes()).unwrap();
        assert!(index.len() > 3 * BLOCK);
        let addrs: Vec<u64> = (0..5100u64).map(|i| 0xffff_ffff_8100_0000 + i * 63).collect();
        assert_eq!(index.resolve(&addrs), resolve(text.as_bytes(), &addrs).unwrap());
    }

    /// Loads a trivial socket filter (`r0 = 0; exit`): a BPF program's
    /// symbol comes and goes in kallsyms.
    fn load_trivial_program() -> std::os::fd::OwnedFd {
        use crate::sys::bpf::{self, BpfInsn};
        /// `BPF_PROG_TYPE_SOCKET_FILTER`.
        const SOCKET_FILTER: u32 = 1;
        bpf::load_program(SOCKET_FILTER, 0, "sw_test", &[BpfInsn::mov64_imm(0, 0), BpfInsn::exit()]).unwrap()
    }

    #[test]
    fn a_program_loaded_changes_the_code_generation() {
        let before = CodeGeneration::now();
        let program = load_trivial_program();
        let loaded = CodeGeneration::now();
        drop(program);
        // Other programs may come and go meanwhile; this one is new.
        assert!(loaded.bpf_programs.iter().any(|id| !before.bpf_programs.contains(id)), "{before:?} {loaded:?}");
        assert_ne!(before, loaded);
    }

    #[test]
    fn a_prefetched_index_is_read_at_low_priority_and_waited_for() {
        use std::io::Write as _;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"ffffffff81000000 T _stext\nffffffff81000100 t helper\n").unwrap();
        let path: &'static str = Box::leak(file.path().to_str().unwrap().to_owned().into_boxed_str());
        let reading = Prefetch::start(path).unwrap();
        let (generation, index) = reading.wait().unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.resolve(&[0xffff_ffff_8100_0105])[0].as_ref().unwrap().name, "helper");
        assert!(generation.modules.is_some() || !std::path::Path::new("/proc/modules").exists());
        assert!(Prefetch::start("/nonexistent/kallsyms").unwrap().wait().is_err());
    }

    #[test]
    fn hex_reads_kallsyms_addresses_and_nothing_else() {
        assert_eq!(hex(b"ffffffff81000000"), Some(0xffff_ffff_8100_0000));
        assert_eq!(hex(b"0000000000000000"), Some(0));
        assert_eq!(hex(b"DeadBeef"), Some(0xdead_beef));
        assert_eq!(hex(b""), None);
        assert_eq!(hex(b"12g4"), None);
        assert_eq!(hex(b"1ffffffffffffffff"), None);
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let text = "0000000000000000 T _stext\n0000000000000000 t helper\n";
        let err = resolve(text.as_bytes(), &[0xffff_ffff_8100_0000]).unwrap_err();
        assert!(err.to_string().contains("kptr_restrict"), "{err}");
        assert_eq!(resolve("".as_bytes(), &[1]).unwrap(), vec![None]);
    }

    #[test]
    fn agrees_with_a_full_index_on_this_host() {
        let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
        let text = match std::fs::read_to_string("/proc/kallsyms") {
            Ok(text) => text,
            Err(e) if !ci => return eprintln!("skipped: cannot read /proc/kallsyms: {e}"),
            Err(e) => panic!("cannot read /proc/kallsyms in CI: {e}"),
        };
        let mut syms: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                (matches!(kind, "t" | "T" | "w" | "W") && addr != 0).then_some((addr, w.next()?))
            })
            .collect();
        if syms.is_empty() {
            // Not root: addresses hidden (covered by the test above). CI runs
            // as root, where skipping would hide a broken resolver.
            assert!(!ci, "/proc/kallsyms shows no addresses in CI (not root?)");
            return eprintln!("skipped: /proc/kallsyms addresses are hidden from this user");
        }
        syms.sort_by_key(|s| s.0);
        // Every 997th symbol, plus a few bytes into it.
        let addrs: Vec<u64> =
            syms.iter().step_by(997).map(|s| s.0 + 3).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let out = resolve(text.as_bytes(), &addrs).unwrap();
        // The index names them alike, in a fraction of the file's size.
        let index = KernelIndex::read(text.as_bytes()).unwrap();
        assert_eq!(index.resolve(&addrs), out);
        assert!(index.heap_bytes() < text.len() / 2, "{} bytes for {} of text", index.heap_bytes(), text.len());
        for (addr, got) in addrs.iter().zip(&out) {
            let i = syms.partition_point(|s| s.0 <= *addr) - 1;
            let want_addr = syms[i].0;
            let got = got.as_ref().expect("named");
            assert_eq!(got.addr, want_addr, "{addr:#x}");
            // Aliases share an address; any of them is right.
            assert!(syms.iter().any(|s| s.0 == want_addr && s.1 == got.name), "{addr:#x}: {}", got.name);
        }
    }
}
