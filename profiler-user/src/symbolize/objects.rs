//! The bounded cache of object files (executables and shared libraries)
//! that the long-lived [`Symbolizer`](super::Symbolizer) keeps between
//! captures, and the choice of how each one is symbolized.
//!
//! An object is identified by its build ID (so one binary shared by many
//! processes, or shipped in several container images, is parsed once) and
//! else by the file's device, inode, size and mtime. Each keeps an open
//! descriptor, handed to blazesym as `/proc/self/fd/N`: the file stays
//! readable after its process exits or it is deleted, from any mount
//! namespace. The cache is bounded by count and by the bytes of the files
//! it holds; past either, the least recently used objects are dropped,
//! from blazesym's caches too.
//!
//! How an object is symbolized:
//! - DWARF in the file: blazesym, with lines and inlined frames;
//! - a separate debug file found ([`crate::objfile::debuginfo`]): blazesym on that file;
//! - a Go binary without DWARF: its `.gopclntab` ([`crate::objfile::gopclntab`]);
//! - otherwise its ELF symbols (`.symtab`/`.dynsym`).
//!
//! The last also backs up the others for addresses they do not cover.
//!
//! Before any of them, addresses in a PLT section are named from the
//! file's relocations (`strlen@plt`, [`super::plt`]) or left unnamed: a
//! symbol table would name them after the nearest symbol before the PLT.
//! And a name from a symbol without a size (the symbol tables' "up to the
//! next symbol") is only taken for an address in the same section as the
//! symbol.

use std::{collections::HashMap, path::Path, sync::Arc};

use blazesym::symbolize::{
    evict::{self, Evict},
    source::{Elf, Source},
    Input, Sym, Symbolizer as BlazeSymbolizer,
};
use memmap2::Mmap;
use tracing::debug;

use super::sym_lines;
use crate::addr::{ElfVaddr, FileOffset};
use crate::objfile::{
    debuginfo::{DebugSearch, DebugUse},
    elf::ElfInfo,
    gopclntab::{go_table, GoTable},
    plt::{PltLookup, PltStubs},
};
use crate::profile::Line;
use crate::sys::file::{FileKey, PinnedFile};

/// Limits of the object cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBudget {
    /// Objects kept at most.
    pub max_objects: usize,
    /// Total size of the files (and separate debug files) kept: what the
    /// parsers may map and index.
    pub max_bytes: u64,
}

impl Default for CacheBudget {
    /// Room for the hot binaries of a busy host; a few hundred MiB of
    /// parsed debug info at worst.
    fn default() -> Self {
        Self { max_objects: 256, max_bytes: 2 << 30 }
    }
}

/// Counters of the object cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub objects: usize,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// blazesym's symbolizer, movable to another thread.
pub(super) struct Blaze(pub BlazeSymbolizer);

// SAFETY: blazesym's `Symbolizer` is `!Send` only because its caches use
// `Rc`/`RefCell`/`Cell` internally. None of those are shared outside the
// instance (no resolver is registered from outside, no dispatcher is set,
// and symbolization results are converted to owned values before a call
// returns), so moving the whole instance to another thread moves every
// reference with it.
unsafe impl Send for Blaze {}

/// How an object's addresses are named.
enum Backend {
    Dwarf,
    DebugFile(PinnedFile, DebugUse),
    Go(Box<GoTable<Mmap>>),
    Symbols,
    NotElf,
}

struct Object {
    pin: Arc<PinnedFile>,
    build_id: Option<String>,
    info: Option<ElfInfo>,
    plt: Option<PltStubs>,
    backend: Backend,
    cost: u64,
    last_used: u64,
}

pub(super) type ObjectId = u64;

/// See the module docs.
#[derive(Default)]
pub(super) struct ObjectCache {
    objects: HashMap<ObjectId, Object>,
    by_key: HashMap<FileKey, ObjectId>,
    by_build_id: HashMap<String, ObjectId>,
    next_id: ObjectId,
    /// Bumped once per profile, for least-recently-used eviction.
    generation: u64,
    bytes: u64,
    budget: CacheBudget,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl ObjectCache {
    pub(super) fn new(budget: CacheBudget) -> Self {
        Self { budget, ..Default::default() }
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            objects: self.objects.len(),
            bytes: self.bytes,
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }

    pub(super) fn next_generation(&mut self) {
        self.generation += 1;
    }

    /// The cached object for this version of a file.
    pub(super) fn lookup(&mut self, key: &FileKey) -> Option<ObjectId> {
        let id = *self.by_key.get(key)?;
        let object = self.objects.get_mut(&id)?;
        object.last_used = self.generation;
        self.hits += 1;
        Some(id)
    }

    /// Parses the file behind `pin` (unless an object with its build ID is
    /// cached) and caches it.
    pub(super) fn insert(&mut self, pin: Arc<PinnedFile>, search: &DebugSearch<'_>) -> ObjectId {
        self.misses += 1;
        // SAFETY: read-only private mapping of a file we hold open; a
        // concurrent truncation could fault, the risk every ELF reader
        // (blazesym too) takes.
        let map = unsafe { Mmap::map(pin.file()) };
        let info = map.as_ref().ok().and_then(|m| ElfInfo::parse(m));
        let build_id = info.as_ref().and_then(ElfInfo::build_id_hex);
        if let Some(&id) = build_id.as_ref().and_then(|b| self.by_build_id.get(b)) {
            if let Some(object) = self.objects.get_mut(&id) {
                object.last_used = self.generation;
                self.by_key.insert(pin.key, id);
                return id;
            }
        }
        let plt = match (&info, &map) {
            (Some(_), Ok(map)) => PltStubs::parse(map),
            _ => None,
        };
        let mut cost = pin.key.size;
        let backend = match (&info, map) {
            (None, _) => Backend::NotElf,
            (Some(info), _) if info.has_dwarf => Backend::Dwarf,
            (Some(info), map) => match search.find(info) {
                Some((debug, use_)) => {
                    cost += debug.key.size;
                    Backend::DebugFile(debug, use_)
                }
                None => match map.ok().and_then(|m| go_table(m, info)) {
                    Some(table) => Backend::Go(Box::new(table)),
                    None => Backend::Symbols,
                },
            },
        };
        match &backend {
            Backend::Go(table) => debug!(
                path = search.binary_path,
                format = ?table.version(),
                functions = table.func_count(),
                inline_trees = ?table.funcdata_base(),
                "new object: Go function table"
            ),
            _ => debug!(
                path = search.binary_path,
                build_id = build_id.as_deref().unwrap_or("-"),
                backend = backend.name(),
                plt_stubs = plt.as_ref().map_or(0, PltStubs::len),
                "new object"
            ),
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Some(b) = &build_id {
            self.by_build_id.insert(b.clone(), id);
        }
        self.by_key.insert(pin.key, id);
        self.bytes += cost;
        self.objects.insert(id, Object { pin, build_id, info, plt, backend, cost, last_used: self.generation });
        id
    }

    pub(super) fn build_id(&self, id: ObjectId) -> Option<String> {
        self.objects.get(&id)?.build_id.clone()
    }

    /// Names the file offsets `offsets` of object `id`: innermost-first
    /// lines per offset, `None` where nothing is known.
    pub(super) fn symbolize(&self, blaze: &Blaze, id: ObjectId, offsets: &[FileOffset]) -> Vec<Option<Vec<Line>>> {
        let Some(object) = self.objects.get(&id) else { return vec![None; offsets.len()] };
        let Some(info) = &object.info else { return vec![None; offsets.len()] };
        let mut out: Vec<Option<Vec<Line>>> = vec![None; offsets.len()];
        // PLT stubs are named here and nowhere else (see the module docs).
        let mut rest: Vec<usize> = Vec::with_capacity(offsets.len());
        for (i, &offset) in offsets.iter().enumerate() {
            let vaddr = info.file_offset_to_vaddr(offset);
            match (vaddr, &object.plt) {
                (Some(vaddr), Some(plt)) => match plt.lookup(vaddr) {
                    PltLookup::NotPlt => rest.push(i),
                    PltLookup::Stub(name) => {
                        out[i] = Some(vec![Line { function: name.to_owned(), file: None, line: None }])
                    }
                    PltLookup::Unnamed => {}
                },
                _ => rest.push(i),
            }
        }
        let offsets: Vec<FileOffset> = rest.iter().map(|&i| offsets[i]).collect();
        for (i, lines) in rest.into_iter().zip(self.symbolize_code(blaze, object, info, &offsets)) {
            out[i] = lines;
        }
        out
    }

    /// [`Self::symbolize`] for offsets outside any PLT.
    fn symbolize_code(
        &self,
        blaze: &Blaze,
        object: &Object,
        info: &ElfInfo,
        offsets: &[FileOffset],
    ) -> Vec<Option<Vec<Line>>> {
        let main = object.pin.proc_path();
        let mut out = match &object.backend {
            Backend::NotElf => return vec![None; offsets.len()],
            Backend::Dwarf => elf_lines(blaze, &main, true, info, Addresses::FileOffsets(offsets)),
            Backend::Symbols => return elf_lines(blaze, &main, false, info, Addresses::FileOffsets(offsets)),
            Backend::DebugFile(debug, use_) => {
                // The debug file's offsets are not the binary's: ask by
                // link-time address, which both share.
                let vaddrs: Vec<Option<ElfVaddr>> = offsets.iter().map(|&o| info.file_offset_to_vaddr(o)).collect();
                let known: Vec<ElfVaddr> = vaddrs.iter().flatten().copied().collect();
                let dwarf = *use_ == DebugUse::Full;
                let mut named =
                    elf_lines(blaze, &debug.proc_path(), dwarf, info, Addresses::Vaddrs(&known)).into_iter();
                vaddrs.iter().map(|v| v.and_then(|_| named.next().flatten())).collect()
            }
            Backend::Go(table) => offsets
                .iter()
                .map(|&o| {
                    let frames = table.find(info.file_offset_to_vaddr(o)?)?;
                    Some(
                        frames.into_iter().map(|f| Line { function: f.function, file: f.file, line: f.line }).collect(),
                    )
                })
                .collect(),
        };
        // Whatever the richer source missed, the symbol table may name.
        let missing: Vec<FileOffset> = offsets.iter().zip(&out).filter(|(_, l)| l.is_none()).map(|(&o, _)| o).collect();
        if !missing.is_empty() {
            let mut named = elf_lines(blaze, &main, false, info, Addresses::FileOffsets(&missing)).into_iter();
            for slot in out.iter_mut().filter(|l| l.is_none()) {
                *slot = named.next().flatten();
            }
        }
        out
    }

    /// Drops least recently used objects until the cache is within budget.
    pub(super) fn evict_over_budget(&mut self, blaze: &mut Blaze) {
        while self.objects.len() > self.budget.max_objects || self.bytes > self.budget.max_bytes {
            let Some((&id, _)) = self.objects.iter().min_by_key(|(id, o)| (o.last_used, **id)) else { break };
            let Some(object) = self.objects.remove(&id) else { break };
            self.by_key.retain(|_, v| *v != id);
            self.by_build_id.retain(|_, v| *v != id);
            self.bytes = self.bytes.saturating_sub(object.cost);
            self.evictions += 1;
            object.release_parsed(blaze);
        }
    }

    /// Drops what blazesym parsed of object `id` (its DWARF indexes, line
    /// rows, symbol tables) and keeps the object: the next lookup parses it
    /// again.
    pub(super) fn release_parsed(&self, blaze: &mut Blaze, id: ObjectId) {
        if let Some(object) = self.objects.get(&id) {
            object.release_parsed(blaze);
        }
    }
}

impl Object {
    fn release_parsed(&self, blaze: &mut Blaze) {
        let mut paths = vec![self.pin.proc_path()];
        if let Backend::DebugFile(debug, _) = &self.backend {
            paths.push(debug.proc_path());
        }
        for path in paths {
            if let Err(e) = blaze.0.evict(&Evict::Elf(evict::Elf::new(path))) {
                debug!("failed to evict an object from blazesym's cache: {e}");
            }
        }
    }
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Dwarf => "dwarf",
            Backend::DebugFile(_, DebugUse::Full) => "separate debug file",
            Backend::DebugFile(_, DebugUse::Symbols) => "separate debug file, symbols",
            Backend::Go(_) => "gopclntab",
            Backend::Symbols => "elf symbols",
            Backend::NotElf => "not elf",
        }
    }
}

/// Whether `sym` may name the address it was found for. blazesym only
/// reports a symbol with a size for addresses inside it (and only the
/// symbols at the nearest address at or below, never an earlier, bigger
/// one); a symbol without a size it stretches to any later address, across
/// section ends: `_init`, the last symbol of `.init`, would name all of
/// `.plt` after it. Such a name is taken only inside the symbol's section.
/// (DWARF functions always have a size: blazesym reports one of their
/// ranges, so a size check here would wrongly drop the other ranges.)
fn covers(info: &ElfInfo, sym: &Sym<'_>) -> bool {
    if sym.size.is_some() {
        return true;
    }
    // With an `Elf` source, blazesym reports link-time addresses.
    let start = ElfVaddr::new(sym.addr);
    let addr = ElfVaddr::new(sym.addr.saturating_add(sym.offset as u64));
    match info.code_section_of(addr) {
        Some(section) => info.code_section_of(start) == Some(section),
        // No section headers (or not code): nothing to check against.
        None => true,
    }
}

/// What blazesym is asked to name in one file.
#[derive(Clone, Copy)]
enum Addresses<'a> {
    FileOffsets(&'a [FileOffset]),
    /// Link-time addresses: for a separate debug file, whose file offsets
    /// are not the binary's.
    Vaddrs(&'a [ElfVaddr]),
}

/// blazesym on one ELF file (whose sections `info` describes); `None` per
/// address it cannot name.
fn elf_lines(
    blaze: &Blaze,
    path: &Path,
    debug_syms: bool,
    info: &ElfInfo,
    addresses: Addresses<'_>,
) -> Vec<Option<Vec<Line>>> {
    let raw: Vec<u64> = match addresses {
        Addresses::FileOffsets(offsets) => offsets.iter().map(|o| o.get()).collect(),
        Addresses::Vaddrs(vaddrs) => vaddrs.iter().map(|v| v.get()).collect(),
    };
    let n = raw.len();
    if n == 0 {
        return Vec::new();
    }
    let input = match addresses {
        Addresses::FileOffsets(_) => Input::FileOffset(&raw[..]),
        Addresses::Vaddrs(_) => Input::VirtOffset(&raw[..]),
    };
    let mut elf = Elf::new(path);
    elf.debug_syms = debug_syms;
    match blaze.0.symbolize(&Source::Elf(elf), input) {
        Ok(results) => results.iter().map(|s| s.as_sym().filter(|sym| covers(info, sym)).map(sym_lines)).collect(),
        Err(e) => {
            debug!(path = %path.display(), "symbolization failed: {e}");
            vec![None; n]
        }
    }
}
