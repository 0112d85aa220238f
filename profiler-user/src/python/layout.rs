//! Per-version CPython layouts, and the checks that a running interpreter
//! really has them before anything is named from its memory.
//!
//! The offsets were taken from each version's own headers (the internal
//! ones, `Py_BUILD_CORE`), by `tests/workloads/python/offsets.c`; a test
//! compiles that program against every installed CPython and compares. A
//! process's interpreter may still differ (a patch release that moved a
//! field, a debug or custom build), so attaching checks what the
//! interpreter itself publishes: the member tables of `PyCode_Type` (and of
//! `PyFrame_Type` before 3.11), which carry the offsets of `co_filename`,
//! `co_name`, … as compiled, and in 3.13 `_Py_DebugOffsets`, the layout
//! description CPython keeps at the start of `_PyRuntime` for out-of-process
//! tools. A mismatch makes the process unsupported: no names rather than
//! wrong ones.

use profiler_common::python::{
    PyOffsets, PY_ENTRY_EACH_FRAME, PY_ENTRY_FLAG, PY_ENTRY_SHIM, PY_LASTI_BYTES, PY_LASTI_CODE_UNITS, PY_LASTI_POINTER,
};

use super::memory::{Fields as _, RemoteMemory};

/// Oldest and newest supported minor versions of CPython 3.
pub const MIN_MINOR: u8 = 8;
pub const MAX_MINOR: u8 = 13;

/// Fields shared by 3.8–3.10 (`PyFrameObject` frames, no qualname).
const V3_8: PyOffsets = PyOffsets {
    version: 0x0308,
    lasti_kind: PY_LASTI_BYTES,
    entry_kind: PY_ENTRY_EACH_FRAME,
    tstate_frame_is_cframe: 0,
    owner_cstack: 0,
    runtime_interpreters_head: 32,
    runtime_tss_key: 1392 + 4,
    interp_next: 0,
    interp_threads_head: 8,
    tstate_next: 8,
    tstate_interp: 16,
    tstate_frame: 24,
    cframe_current_frame: 0,
    tstate_thread_id: 176,
    tstate_native_thread_id: 0,
    frame_code: 32,
    frame_previous: 24,
    frame_lasti: 104,
    frame_entry: 0,
    frame_size: 112,
    code_filename: 104,
    code_name: 112,
    code_qualname: 0,
    code_firstlineno: 40,
    code_linetable: 120,
    code_code: 48,
    code_adaptive: 0,
    code_size: 128,
    // co_name, co_filename, co_lnotab/co_linetable, co_code, co_consts,
    // co_names, co_firstlineno (+ padding), co_argcount + co_posonlyargcount.
    code_ident: [112, 104, 120, 48, 56, 64, 40, 16],
    object_type: 8,
    var_size: 16,
    bytes_data: 32,
    unicode_state: 32,
    unicode_length: 16,
    unicode_ascii_data: 48,
    unicode_compact_data: 72,
    _pad: [0; 3],
};

const V3_9: PyOffsets = PyOffsets { version: 0x0309, runtime_tss_key: 584 + 4, ..V3_8 };

const V3_10: PyOffsets = PyOffsets { version: 0x030a, lasti_kind: PY_LASTI_CODE_UNITS, frame_lasti: 96, ..V3_9 };

const V3_11: PyOffsets = PyOffsets {
    version: 0x030b,
    lasti_kind: PY_LASTI_POINTER,
    entry_kind: PY_ENTRY_FLAG,
    tstate_frame_is_cframe: 1,
    owner_cstack: 0,
    runtime_interpreters_head: 40,
    runtime_tss_key: 592 + 4,
    interp_next: 0,
    interp_threads_head: 16,
    tstate_next: 8,
    tstate_interp: 16,
    tstate_frame: 56,
    cframe_current_frame: 8,
    tstate_thread_id: 152,
    tstate_native_thread_id: 160,
    frame_code: 32,
    frame_previous: 48,
    frame_lasti: 56,
    frame_entry: 68,
    frame_size: 72,
    code_filename: 112,
    code_name: 120,
    code_qualname: 128,
    code_firstlineno: 72,
    code_linetable: 136,
    code_code: 0,
    code_adaptive: 184,
    code_size: 144,
    // co_name, co_qualname, co_filename, co_linetable, ob_size (code
    // units), co_consts, co_firstlineno + co_nlocalsplus, co_localsplusnames.
    // (co_flags shares its word with the mutable warm-up counter.)
    code_ident: [120, 128, 112, 136, 16, 24, 72, 96],
    object_type: 8,
    var_size: 16,
    bytes_data: 32,
    unicode_state: 32,
    unicode_length: 16,
    unicode_ascii_data: 48,
    unicode_compact_data: 72,
    _pad: [0; 3],
};

const V3_12: PyOffsets = PyOffsets {
    version: 0x030c,
    entry_kind: PY_ENTRY_SHIM,
    owner_cstack: 3,
    runtime_tss_key: 1544 + 4,
    interp_threads_head: 72,
    tstate_frame: 56,
    cframe_current_frame: 0,
    tstate_thread_id: 136,
    tstate_native_thread_id: 144,
    frame_code: 0,
    frame_previous: 8,
    frame_lasti: 56,
    frame_entry: 70,
    code_firstlineno: 68,
    code_adaptive: 192,
    // As 3.11, with co_stacksize + co_firstlineno and co_nfreevars +
    // co_version: a stamp unique to each code object the interpreter made.
    code_ident: [120, 128, 112, 136, 16, 24, 64, 88],
    unicode_ascii_data: 40,
    unicode_compact_data: 56,
    ..V3_11
};

const V3_13: PyOffsets = PyOffsets {
    version: 0x030d,
    tstate_frame_is_cframe: 0,
    runtime_interpreters_head: 632,
    runtime_tss_key: 2160 + 4,
    interp_next: 7264,
    interp_threads_head: 7344,
    tstate_frame: 72,
    tstate_thread_id: 152,
    tstate_native_thread_id: 160,
    code_adaptive: 200,
    ..V3_12
};

/// The layout of CPython 3.`minor`, if supported.
pub fn offsets(minor: u8) -> Option<PyOffsets> {
    Some(match minor {
        8 => V3_8,
        9 => V3_9,
        10 => V3_10,
        11 => V3_11,
        12 => V3_12,
        13 => V3_13,
        _ => return None,
    })
}

/// `PyTypeObject.tp_members`, the same in every CPython 3.
const TYPE_MEMBERS: u64 = 240;
/// `sizeof(PyMemberDef)`: name (char *), type (int), offset (Py_ssize_t), …
const MEMBER_DEF_SIZE: usize = 40;
const MEMBER_OFFSET: u16 = 16;
/// More entries than any code or frame type has (3.13's code type: 16).
const MAX_MEMBERS: usize = 40;

/// Checks `offsets` against the interpreter in `mem`: the member tables of
/// `code_type` (and `frame_type` before 3.11), and `_Py_DebugOffsets` at
/// `runtime` from 3.13. The error names the first field that differs.
pub(super) fn verify(
    mem: &RemoteMemory,
    offsets: &PyOffsets,
    code_type: u64,
    frame_type: Option<u64>,
    runtime: u64,
) -> Result<(), String> {
    let minor = offsets.version as u8;
    let code = read_members(mem, code_type).map_err(|e| format!("cannot read `PyCode_Type` members: {e}"))?;
    let mut expect: Vec<(&str, u16)> = vec![
        ("co_filename", offsets.code_filename),
        ("co_name", offsets.code_name),
        ("co_firstlineno", offsets.code_firstlineno),
    ];
    expect.push((if minor < 10 { "co_lnotab" } else { "co_linetable" }, offsets.code_linetable));
    if minor >= 11 {
        expect.push(("co_qualname", offsets.code_qualname));
    } else {
        expect.push(("co_code", offsets.code_code));
    }
    compare("PyCodeObject", &code, &expect)?;
    if minor < 11 {
        let frame_type = frame_type.ok_or("no `PyFrame_Type` symbol")?;
        let frame = read_members(mem, frame_type).map_err(|e| format!("cannot read `PyFrame_Type` members: {e}"))?;
        let mut expect = vec![("f_back", offsets.frame_previous), ("f_code", offsets.frame_code)];
        if minor < 10 {
            expect.push(("f_lasti", offsets.frame_lasti));
        }
        compare("PyFrameObject", &frame, &expect)?;
    }
    if minor >= 13 {
        verify_debug_offsets(mem, offsets, runtime)?;
    }
    Ok(())
}

fn compare(what: &str, members: &[(String, u16)], expect: &[(&str, u16)]) -> Result<(), String> {
    for (name, want) in expect {
        match members.iter().find(|(n, _)| n == name) {
            Some((_, got)) if got == want => {}
            Some((_, got)) => return Err(format!("`{what}.{name}` is at {got}, expected {want}")),
            None => return Err(format!("`{what}` has no member `{name}`")),
        }
    }
    Ok(())
}

/// `(name, offset)` of each entry of a type's `tp_members`.
fn read_members(mem: &RemoteMemory, type_addr: u64) -> Result<Vec<(String, u16)>, String> {
    let table = mem.read_u64(type_addr + TYPE_MEMBERS).map_err(|e| e.to_string())?;
    if table == 0 {
        return Err("no member table".into());
    }
    let mut raw = vec![0u8; MEMBER_DEF_SIZE * MAX_MEMBERS];
    // The table is a static array; the end of the buffer may run past its
    // mapping, so fall back to entry-sized reads.
    if mem.read(table, &mut raw).is_err() {
        for (i, chunk) in raw.chunks_mut(MEMBER_DEF_SIZE).enumerate() {
            if mem.read(table + (i * MEMBER_DEF_SIZE) as u64, chunk).is_err() {
                break;
            }
        }
    }
    let entries: Vec<(u64, u16)> = raw
        .chunks(MEMBER_DEF_SIZE)
        .map(|e| (e.u64_at(0), e.u64_at(MEMBER_OFFSET) as u16))
        .take_while(|(name, _)| *name != 0)
        .collect();
    let mut names = vec![[0u8; 32]; entries.len()];
    let mut requests: Vec<(u64, &mut [u8])> =
        entries.iter().zip(names.iter_mut()).map(|((addr, _), buf)| (*addr, &mut buf[..])).collect();
    let filled = mem.read_many(&mut requests);
    Ok(entries
        .iter()
        .zip(&names)
        .zip(filled)
        .filter(|(_, ok)| *ok)
        .map(|(((_, off), name), _)| {
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            (String::from_utf8_lossy(&name[..len]).into_owned(), *off)
        })
        .collect())
}

/// 3.13's `_Py_DebugOffsets` (`Include/internal/pycore_runtime.h`): a
/// cookie, the version, a free-threading flag, then sections of `uint64_t`
/// offsets. `DEBUG_FIELDS` says where in it each offset the reader uses is
/// described (the names are the C members), and which of ours it must equal.
const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";
const DEBUG_VERSION: u16 = 8;
const DEBUG_FREE_THREADED: u16 = 16;
/// Bytes of `_Py_DebugOffsets` covering every field below.
const DEBUG_SIZE: usize = 368;

type Field = fn(&PyOffsets) -> u16;

pub(super) const DEBUG_FIELDS: [(&str, u16, Field); 19] = [
    ("runtime_interpreters_head", 40, |o| o.runtime_interpreters_head),
    ("interp_next", 64, |o| o.interp_next),
    ("interp_threads_head", 72, |o| o.interp_threads_head),
    ("tstate_next", 168, |o| o.tstate_next),
    ("tstate_interp", 176, |o| o.tstate_interp),
    ("tstate_current_frame", 184, |o| o.tstate_frame),
    ("tstate_thread_id", 192, |o| o.tstate_thread_id),
    ("tstate_native_thread_id", 200, |o| o.tstate_native_thread_id),
    ("frame_previous", 232, |o| o.frame_previous),
    ("frame_executable", 240, |o| o.frame_code),
    ("frame_instr_ptr", 248, |o| o.frame_lasti),
    ("frame_owner", 264, |o| o.frame_entry),
    ("code_filename", 280, |o| o.code_filename),
    ("code_name", 288, |o| o.code_name),
    ("code_qualname", 296, |o| o.code_qualname),
    ("code_linetable", 304, |o| o.code_linetable),
    ("code_firstlineno", 312, |o| o.code_firstlineno),
    ("code_adaptive", 344, |o| o.code_adaptive),
    ("object_type", 360, |o| o.object_type),
];

fn verify_debug_offsets(mem: &RemoteMemory, offsets: &PyOffsets, runtime: u64) -> Result<(), String> {
    let raw = mem.read_vec(runtime, DEBUG_SIZE).map_err(|e| format!("cannot read `_Py_DebugOffsets`: {e}"))?;
    if &raw[..8] != DEBUG_COOKIE {
        return Err("`_PyRuntime` does not start with `_Py_DebugOffsets`".into());
    }
    let version = raw.u64_at(DEBUG_VERSION);
    if (version >> 16) as u16 != offsets.version {
        return Err(format!("`_Py_DebugOffsets` is for version {version:#x}"));
    }
    if raw.u64_at(DEBUG_FREE_THREADED) != 0 {
        return Err("free-threaded build".into());
    }
    for (name, at, ours) in DEBUG_FIELDS {
        let (got, want) = (raw.u64_at(at), ours(offsets));
        if got != u64::from(want) {
            return Err(format!("`_Py_DebugOffsets` puts {name} at {got}, expected {want}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_has_a_layout_that_covers_its_reads() {
        for minor in MIN_MINOR..=MAX_MINOR {
            let o = offsets(minor).unwrap_or_else(|| panic!("no layout for 3.{minor}"));
            assert_eq!(o.version, 0x0300 | u16::from(minor));
            let lasti_len = if o.lasti_kind == PY_LASTI_POINTER { 8 } else { 4 };
            let frame_end = [o.frame_code + 8, o.frame_previous + 8, o.frame_lasti + lasti_len, o.frame_entry + 1];
            assert!(frame_end.iter().all(|end| *end <= o.frame_size), "3.{minor}: frame_size {}", o.frame_size);
            let code_end = [o.code_filename, o.code_name, o.code_qualname, o.code_linetable, o.code_code]
                .into_iter()
                .chain(o.code_ident)
                .map(|f| f + 8)
                .chain([o.code_firstlineno + 4])
                .max()
                .unwrap_or(0);
            assert!(code_end <= o.code_size, "3.{minor}: code_size {} < {code_end}", o.code_size);
            // Word-aligned, and never the reference count (offset 0), which
            // changes all the time.
            assert!(o.code_ident.iter().all(|w| *w % 8 == 0 && *w >= 16), "3.{minor}: {:?}", o.code_ident);
            // The eBPF walk reads a frame and a code header whole into
            // buffers of this size (and masks offsets to it).
            let max = profiler_common::python::PY_CODE_READ_MAX as u16;
            assert!(o.frame_size < max && o.code_size < max && o.object_type + 8 <= o.code_size, "3.{minor}");
        }
        assert!(offsets(MIN_MINOR - 1).is_none() && offsets(MAX_MINOR + 1).is_none());
    }
}
