//! Naming Python frames: a code object's qualified name, file, first line
//! and line table, read from the process and cached.
//!
//! Code objects are keyed by (pid, address, checksum) — the checksum of
//! [`profiler_common::python::code_checksum`] over fields read at the time
//! the frame was seen — so that when a function is freed and another code
//! object takes its address, the new one gets its own entry instead of the
//! old name. Every object read is type-checked against the process's
//! `PyCode_Type`, `PyUnicode_Type` and `PyBytes_Type`: a frame that does not
//! hold what the layout says is reported as unreadable, never named.
//!
//! Reads are batched: the headers of all code objects of a stack in one
//! `process_vm_readv`, then all their strings and line tables in another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use profiler_common::python::{code_checksum, PyOffsets};

use super::linetable::{line_for, LineTableKind};
use super::memory::{Fields as _, RemoteMemory};

/// Longest name or file name read (code points); longer ones are bogus.
const MAX_STRING_CHARS: u64 = 4096;
/// Largest line table read; CPython's own are a few KiB for huge functions.
const MAX_LINETABLE: u64 = 1 << 20;
/// Bytes read past an object's header in the first, batched pass: enough
/// for nearly every name, file name and line table.
const SPECULATIVE: usize = 256;

/// Addresses of the type objects the reader checks `ob_type` against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Types {
    pub code: u64,
    pub unicode: u64,
    pub bytes: u64,
}

/// What reading a code object needs: the memory, the layout, the types.
#[derive(Clone, Copy, Debug)]
pub struct CodeReader<'a> {
    pub mem: &'a RemoteMemory,
    pub offsets: &'a PyOffsets,
    pub types: Types,
}

/// The fields of a code object's header that identify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeHeader {
    pub firstlineno: u32,
    pub name: u64,
    pub qualname: u64,
    pub filename: u64,
    pub linetable: u64,
    pub checksum: u32,
}

impl CodeHeader {
    /// `None` when the object at `raw` is not a code object.
    pub fn parse(raw: &[u8], o: &PyOffsets, code_type: u64) -> Option<Self> {
        if raw.u64_at(o.object_type) != code_type {
            return None;
        }
        let firstlineno = raw.u32_at(o.code_firstlineno);
        let name = raw.u64_at(o.code_name);
        let filename = raw.u64_at(o.code_filename);
        let linetable = raw.u64_at(o.code_linetable);
        let qualname = if o.code_qualname != 0 { raw.u64_at(o.code_qualname) } else { name };
        let checksum = code_checksum(&o.code_ident.map(|off| raw.u64_at(off)));
        Some(Self { firstlineno, name, qualname, filename, linetable, checksum })
    }
}

/// A resolved code object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// Derived from the file name: `json.decoder` for
    /// `…/lib/python3.11/json/decoder.py`, the file's stem for a script.
    pub module: String,
    /// `co_qualname` (3.11+, e.g. `Outer.Inner.method`), else `co_name`.
    pub qualname: String,
    /// `co_filename`, as the process sees it.
    pub filename: String,
    /// `co_firstlineno`: the `def` line.
    pub first_line: u32,
    linetable: Vec<u8>,
    kind: LineTableKind,
}

impl CodeInfo {
    /// `module.qualname`, the frame's function name in profiles.
    pub fn function(&self) -> String {
        if self.module.is_empty() {
            self.qualname.clone()
        } else {
            format!("{}.{}", self.module, self.qualname)
        }
    }

    /// The line of the instruction at code unit `index`.
    pub fn line(&self, index: i32) -> Option<u32> {
        line_for(self.kind, &self.linetable, self.first_line, index)
    }
}

/// Why a code object could not be named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a code object at {0:#x}")]
    NotCode(u64),
    #[error("code object at {0:#x} changed since the sample (freed and reused)")]
    Stale(u64),
    #[error("code object at {0:#x} is unreadable: {1}")]
    Unreadable(u64, String),
}

/// (pid, code object address, checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeKey {
    pub pid: u32,
    pub code: u64,
    pub checksum: u32,
}

/// Cache hits and misses so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// Entries kept by default: a program with ten thousand functions, all
/// seen, at about 200 bytes each (name, file, line table) plus the key.
pub const DEFAULT_CACHE_ENTRIES: usize = 65536;

/// Resolves code objects of any number of processes, caching by
/// [`CodeKey`]. Long-lived: one per capture or daemon. Bounded: past its
/// capacity the least recently used half is dropped (those are read again
/// if seen again, as long as their process lives).
#[derive(Debug)]
pub struct CodeResolver {
    cache: HashMap<CodeKey, (Arc<CodeInfo>, u64)>,
    capacity: usize,
    /// Use counter, for the least-recently-used eviction.
    clock: u64,
    stats: CacheStats,
}

impl Default for CodeResolver {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CACHE_ENTRIES)
    }
}

impl CodeResolver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self { cache: HashMap::new(), capacity: capacity.max(2), clock: 0, stats: CacheStats::default() }
    }

    fn lookup(&mut self, key: &CodeKey) -> Option<Arc<CodeInfo>> {
        self.clock += 1;
        let clock = self.clock;
        self.cache.get_mut(key).map(|(info, used)| {
            *used = clock;
            info.clone()
        })
    }

    fn insert(&mut self, key: CodeKey, info: Arc<CodeInfo>) {
        if self.cache.len() >= self.capacity {
            let mut uses: Vec<u64> = self.cache.values().map(|(_, used)| *used).collect();
            let half = uses.len() / 2;
            let (_, median, _) = uses.select_nth_unstable(half);
            let median = *median;
            self.cache.retain(|_, (_, used)| *used >= median);
        }
        self.clock += 1;
        self.cache.insert(key, (info, self.clock));
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Cached entries.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Drops every entry of `pid` (the process exited).
    pub fn forget_pid(&mut self, pid: u32) {
        self.cache.retain(|key, _| key.pid != pid);
    }

    /// Resolves `(code address, checksum seen at sample time)` pairs of one
    /// process. A known checksum that is cached costs no read; otherwise
    /// the header is read (all of them in one call) and, if the checksum
    /// differs from the one given, the object is [`CodeError::Stale`].
    /// Without a checksum (a stack read from user space just now), the
    /// header's checksum is the key.
    pub fn resolve_many(
        &mut self,
        reader: &CodeReader<'_>,
        items: &[(u64, Option<u32>)],
    ) -> Vec<Result<Arc<CodeInfo>, CodeError>> {
        let pid = reader.mem.pid();
        let mut out: Vec<Option<Result<Arc<CodeInfo>, CodeError>>> = vec![None; items.len()];
        let mut need_header = Vec::new();
        for (i, (code, checksum)) in items.iter().enumerate() {
            match checksum.and_then(|c| self.lookup(&CodeKey { pid, code: *code, checksum: c })) {
                Some(info) => {
                    self.stats.hits += 1;
                    out[i] = Some(Ok(info));
                }
                None => need_header.push(i),
            }
        }
        let addrs: Vec<u64> = need_header.iter().map(|&i| items[i].0).collect();
        let headers = read_headers(reader, &addrs);
        let mut to_read: Vec<(usize, CodeHeader)> = Vec::new();
        for (&i, header) in need_header.iter().zip(headers) {
            let code = items[i].0;
            let header = match header {
                Ok(h) => h,
                Err(err) => {
                    out[i] = Some(Err(err));
                    continue;
                }
            };
            if items[i].1.is_some_and(|c| c != header.checksum) {
                out[i] = Some(Err(CodeError::Stale(code)));
                continue;
            }
            match self.lookup(&CodeKey { pid, code, checksum: header.checksum }) {
                Some(info) => {
                    self.stats.hits += 1;
                    out[i] = Some(Ok(info));
                }
                None => to_read.push((i, header)),
            }
        }
        // Several frames of one stack may share a code object (recursion).
        let mut unique: Vec<(u64, CodeHeader)> = Vec::new();
        for (i, header) in &to_read {
            if !unique.iter().any(|(code, h)| *code == items[*i].0 && h.checksum == header.checksum) {
                unique.push((items[*i].0, *header));
            }
        }
        let infos = read_infos(reader, &unique);
        for ((code, header), info) in unique.iter().zip(infos) {
            if let Ok(info) = &info {
                self.stats.misses += 1;
                self.insert(CodeKey { pid, code: *code, checksum: header.checksum }, info.clone());
            }
            for (i, h) in &to_read {
                if items[*i].0 == *code && h.checksum == header.checksum {
                    out[*i] = Some(info.clone());
                }
            }
        }
        out.into_iter()
            .zip(items)
            .map(|(r, (code, _))| r.unwrap_or_else(|| Err(CodeError::Unreadable(*code, "not resolved".into()))))
            .collect()
    }
}

/// Reads and checks the headers of `addrs`, in one call.
pub(super) fn read_headers(reader: &CodeReader<'_>, addrs: &[u64]) -> Vec<Result<CodeHeader, CodeError>> {
    let size = usize::from(reader.offsets.code_size);
    let mut bufs = vec![vec![0u8; size]; addrs.len()];
    let mut requests: Vec<(u64, &mut [u8])> =
        addrs.iter().zip(bufs.iter_mut()).map(|(a, b)| (*a, &mut b[..])).collect();
    let filled = reader.mem.read_many(&mut requests);
    addrs
        .iter()
        .zip(bufs)
        .zip(filled)
        .map(|((&addr, buf), ok)| {
            if !ok {
                return Err(CodeError::Unreadable(addr, "header not mapped".into()));
            }
            CodeHeader::parse(&buf, reader.offsets, reader.types.code).ok_or(CodeError::NotCode(addr))
        })
        .collect()
}

/// Reads the strings and line tables of `codes`: one batched call for all
/// of them, plus one per object larger than [`SPECULATIVE`].
fn read_infos(reader: &CodeReader<'_>, codes: &[(u64, CodeHeader)]) -> Vec<Result<Arc<CodeInfo>, CodeError>> {
    let mut addrs: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    for (_, h) in codes {
        for a in [h.name, h.qualname, h.filename, h.linetable] {
            if seen.insert(a) {
                addrs.push(a);
            }
        }
    }
    let o = reader.offsets;
    let header = usize::from(o.unicode_compact_data.max(o.bytes_data));
    let objects = Objects::fetch(reader.mem, &addrs, header + SPECULATIVE, header);
    let minor = o.version as u8;
    codes
        .iter()
        .map(|(code, h)| {
            let unreadable = |what: &str, err: String| CodeError::Unreadable(*code, format!("{what}: {err}"));
            let qualname = objects.string(reader, h.qualname).map_err(|e| unreadable("name", e))?;
            let filename = objects.string(reader, h.filename).map_err(|e| unreadable("file name", e))?;
            let linetable = objects.bytes(reader, h.linetable).map_err(|e| unreadable("line table", e))?;
            Ok(Arc::new(CodeInfo {
                module: module_name(&filename),
                qualname,
                filename,
                first_line: h.firstlineno,
                linetable,
                kind: LineTableKind::for_minor(minor),
            }))
        })
        .collect()
}

/// Objects fetched in one batch: each address's first bytes.
struct Objects {
    fetched: HashMap<u64, Vec<u8>>,
}

impl Objects {
    /// Reads `want` bytes of each object; where that fails (the object ends
    /// near the end of a mapping), `min` bytes.
    fn fetch(mem: &RemoteMemory, addrs: &[u64], want: usize, min: usize) -> Self {
        let mut bufs = vec![vec![0u8; want]; addrs.len()];
        let mut requests: Vec<(u64, &mut [u8])> =
            addrs.iter().zip(bufs.iter_mut()).map(|(a, b)| (*a, &mut b[..])).collect();
        let filled = mem.read_many(&mut requests);
        let retry: Vec<usize> = filled.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
        let mut fetched: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut small = vec![vec![0u8; min]; retry.len()];
        if !retry.is_empty() {
            let mut requests: Vec<(u64, &mut [u8])> =
                retry.iter().zip(small.iter_mut()).map(|(&i, b)| (addrs[i], &mut b[..])).collect();
            let ok = mem.read_many(&mut requests);
            for ((&i, buf), ok) in retry.iter().zip(small).zip(ok) {
                if ok {
                    fetched.insert(addrs[i], buf);
                }
            }
        }
        for ((addr, buf), ok) in addrs.iter().zip(bufs).zip(filled) {
            if ok {
                fetched.insert(*addr, buf);
            }
        }
        Self { fetched }
    }

    /// `len` bytes at `offset` into the object at `addr`: from the batch
    /// when it covers them, else read now.
    fn slice(&self, mem: &RemoteMemory, addr: u64, offset: usize, len: usize) -> Result<Vec<u8>, String> {
        let raw = self.fetched.get(&addr).ok_or("not mapped")?;
        if let Some(bytes) = raw.get(offset..offset + len) {
            return Ok(bytes.to_vec());
        }
        mem.read_vec(addr + offset as u64, len).map_err(|e| e.to_string())
    }

    fn header(&self, addr: u64, expected_type: u64, o: &PyOffsets) -> Result<&[u8], String> {
        let raw = self.fetched.get(&addr).ok_or("not mapped")?;
        if raw.u64_at(o.object_type) != expected_type {
            return Err(format!("object at {addr:#x} has the wrong type"));
        }
        Ok(raw)
    }

    /// A `str` object: compact ASCII, compact Latin-1/UCS-2/UCS-4, or (before
    /// 3.12) a legacy string whose data is elsewhere.
    fn string(&self, reader: &CodeReader<'_>, addr: u64) -> Result<String, String> {
        let o = reader.offsets;
        let raw = self.header(addr, reader.types.unicode, o)?;
        let length = raw.u64_at(o.unicode_length);
        let state = raw.u32_at(o.unicode_state);
        let kind = (state >> 2) & 7;
        let compact = state & (1 << 5) != 0;
        let ascii = state & (1 << 6) != 0;
        if length > MAX_STRING_CHARS {
            return Err(format!("string of {length} characters"));
        }
        let width = if ascii { 1 } else { kind as usize };
        if !matches!(width, 1 | 2 | 4) {
            return Err(format!("string kind {kind}"));
        }
        let len = length as usize * width;
        let data = if compact {
            let offset = usize::from(if ascii { o.unicode_ascii_data } else { o.unicode_compact_data });
            self.slice(reader.mem, addr, offset, len)?
        } else {
            let ptr = raw.u64_at(o.unicode_compact_data);
            reader.mem.read_vec(ptr, len).map_err(|e| e.to_string())?
        };
        let chars: Option<String> = match width {
            1 if ascii => data.is_ascii().then(|| data.iter().map(|&b| b as char).collect()),
            1 => Some(data.iter().map(|&b| b as char).collect()),
            2 => data
                .as_chunks::<2>()
                .0
                .iter()
                .map(|c| char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))))
                .collect(),
            _ => data
                .as_chunks::<4>()
                .0
                .iter()
                .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        };
        chars.ok_or_else(|| format!("invalid characters in string at {addr:#x}"))
    }

    /// A `bytes` object's contents.
    fn bytes(&self, reader: &CodeReader<'_>, addr: u64) -> Result<Vec<u8>, String> {
        let o = reader.offsets;
        let raw = self.header(addr, reader.types.bytes, o)?;
        let size = raw.u64_at(o.var_size);
        if size > MAX_LINETABLE {
            return Err(format!("bytes object of {size} bytes"));
        }
        self.slice(reader.mem, addr, usize::from(o.bytes_data), size as usize)
    }
}

/// The module a file defines, the way Python names it when it is imported
/// from a standard location: the path below `site-packages`,
/// `dist-packages` or `lib/pythonX.Y`, dotted (`json/decoder.py` →
/// `json.decoder`, a package's `__init__.py` → the package); anything else
/// (a script, a path of the application's own) by its stem. Frozen modules
/// (`<frozen importlib._bootstrap>`) by their name; other pseudo-files
/// (`<string>`, `<stdin>`) as they are.
pub fn module_name(filename: &str) -> String {
    if let Some(frozen) = filename.strip_prefix("<frozen ").and_then(|s| s.strip_suffix('>')) {
        return frozen.to_owned();
    }
    if filename.starts_with('<') {
        return filename.to_owned();
    }
    let Some(stem) = [".py", ".pyc", ".pyw"].iter().find_map(|ext| filename.strip_suffix(ext)) else {
        return filename.rsplit('/').next().unwrap_or(filename).to_owned();
    };
    let below = ["/site-packages/", "/dist-packages/"]
        .iter()
        .filter_map(|marker| stem.rfind(marker).map(|i| &stem[i + marker.len()..]))
        .next()
        .or_else(|| stdlib_relative(stem));
    let dotted = match below {
        Some(rest) if !rest.is_empty() => rest.replace('/', "."),
        // A package outside the standard locations: its directory's name.
        _ => {
            let mut parts = stem.rsplit('/');
            match (parts.next(), parts.next()) {
                (Some("__init__"), Some(dir)) if !dir.is_empty() => dir.to_owned(),
                (Some(base), _) => base.to_owned(),
                (None, _) => stem.to_owned(),
            }
        }
    };
    match dotted.strip_suffix(".__init__") {
        Some(package) => package.to_owned(),
        None => dotted,
    }
}

/// The part of `path` below `…/lib/pythonX.Y/`.
fn stdlib_relative(path: &str) -> Option<&str> {
    let mut search = path;
    let mut result = None;
    while let Some(i) = search.find("/lib/python") {
        let after = &search[i + "/lib/python".len()..];
        if let Some(slash) = after.find('/') {
            let version = &after[..slash];
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                result = Some(&after[slash + 1..]);
            }
        }
        search = after;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_import_paths() {
        let cases = [
            ("/usr/lib/python3.11/json/decoder.py", "json.decoder"),
            ("/usr/lib/python3.11/json/__init__.py", "json"),
            ("/usr/lib/python3.11/threading.py", "threading"),
            ("/root/.pyenv/versions/3.9.18/lib/python3.9/site-packages/requests/api.py", "requests.api"),
            ("/usr/lib/python3/dist-packages/yaml/__init__.py", "yaml"),
            ("/srv/app/venv/lib/python3.12/site-packages/pkg/sub/mod.py", "pkg.sub.mod"),
            ("/work/tests/workloads/python/busy.py", "busy"),
            ("busy.py", "busy"),
            ("<frozen importlib._bootstrap>", "importlib._bootstrap"),
            ("<string>", "<string>"),
            ("/opt/tool/run", "run"),
            ("/srv/app/__init__.py", "app"),
        ];
        for (file, module) in cases {
            assert_eq!(module_name(file), module, "{file}");
        }
    }

    #[test]
    fn the_cache_drops_its_least_recently_used_half_when_full() {
        let info = |n: u32| {
            Arc::new(CodeInfo {
                module: "m".into(),
                qualname: format!("f{n}"),
                filename: "m.py".into(),
                first_line: n,
                linetable: vec![],
                kind: LineTableKind::Locations,
            })
        };
        let key = |n: u32| CodeKey { pid: 1, code: u64::from(n) * 64, checksum: n };
        let mut resolver = CodeResolver::with_capacity(8);
        for n in 0..8 {
            resolver.insert(key(n), info(n));
        }
        // Use the oldest four again: the other four are now the least recent.
        for n in 0..4 {
            assert!(resolver.lookup(&key(n)).is_some());
        }
        resolver.insert(key(8), info(8));
        assert_eq!(resolver.len(), 5);
        for n in 0..4 {
            assert_eq!(resolver.lookup(&key(n)).map(|i| i.first_line), Some(n), "recently used {n} kept");
        }
        for n in 4..8 {
            assert!(resolver.lookup(&key(n)).is_none(), "{n} evicted");
        }
        assert!(resolver.lookup(&key(8)).is_some());
    }

    #[test]
    fn function_names_are_module_dot_qualname() {
        let info = CodeInfo {
            module: "json.decoder".into(),
            qualname: "JSONDecoder.decode".into(),
            filename: "/usr/lib/python3.11/json/decoder.py".into(),
            first_line: 332,
            linetable: vec![],
            kind: LineTableKind::Locations,
        };
        assert_eq!(info.function(), "json.decoder.JSONDecoder.decode");
        assert_eq!(info.line(-1), Some(332));
    }
}
