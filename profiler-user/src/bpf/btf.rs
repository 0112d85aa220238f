//! Field offsets of kernel structs, from the kernel's BTF: our object has
//! no CO-RE relocations (see `docs/architecture.md`), so the offsets the
//! programs need — `task_struct.thread.fsbase` (the thread pointer, for the
//! Python walk), `.group_leader` and `.start_boottime` (a process's start,
//! for the flight recorder) — are looked up here and handed over in
//! `CONFIG`. aya does not expose struct
//! members, and the format is small: the types section is walked once, in
//! place (mapped where the kernel allows it).

use anyhow::{bail, Context as _, Result};

/// Where the running kernel publishes its BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// The `task_struct` offsets the programs need, from one read of the
/// kernel's BTF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskOffsets {
    /// `thread.fsbase`: the thread pointer (the Python walk).
    pub fsbase: Option<u32>,
    /// `group_leader` and `start_boottime`: a process's start time (the
    /// flight recorder tells processes with a reused pid apart by it).
    pub group_leader: Option<u32>,
    pub start_boottime: Option<u32>,
}

/// The `task_struct` offsets of the running kernel.
pub(crate) fn task_offsets() -> Result<TaskOffsets> {
    let mut file = std::fs::File::open(VMLINUX_BTF).with_context(|| format!("failed to open `{VMLINUX_BTF}`"))?;
    // Mapped (privately: the kernel refuses shared mappings) where the
    // kernel allows it (6.16+): reading the 5 MiB copies it a page per
    // call, most of the time finding three offsets took.
    // SAFETY: the kernel's BTF never changes while it runs.
    let mapped = unsafe { memmap2::MmapOptions::new().populate().map_copy_read_only(&file) };
    let mut read = Vec::new();
    let data: &[u8] = match &mapped {
        Ok(map) => map,
        Err(_) => {
            std::io::Read::read_to_end(&mut file, &mut read)
                .with_context(|| format!("failed to read `{VMLINUX_BTF}`"))?;
            &read
        }
    };
    let btf = parse(data, &["task_struct", "thread_struct"])?;
    let fsbase = btf
        .member_offset("task_struct", "thread")
        .zip(btf.member_offset("thread_struct", "fsbase"))
        .map(|(thread, fsbase)| thread + fsbase);
    Ok(TaskOffsets {
        fsbase,
        group_leader: btf.member_offset("task_struct", "group_leader"),
        start_boottime: btf.member_offset("task_struct", "start_boottime"),
    })
}

/// Some structs of a BTF blob: name → members (name, byte offset).
struct Structs<'a> {
    structs: Vec<(&'a str, Vec<(&'a str, u32)>)>,
}

impl Structs<'_> {
    fn member_offset(&self, strukt: &str, member: &str) -> Option<u32> {
        self.structs.iter().find(|(n, _)| *n == strukt)?.1.iter().find(|(m, _)| *m == member).map(|(_, off)| *off)
    }
}

/// The structs named `wanted` in BTF blob `data`, with their members (the
/// kernel's has ~150 k types; only these names are compared, as bytes).
fn parse<'a>(data: &'a [u8], wanted: &[&str]) -> Result<Structs<'a>> {
    let u16_at = |off: usize| data.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |off: usize| data.get(off..off + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if u16_at(0) != Some(BTF_MAGIC) {
        bail!("not little-endian BTF");
    }
    let field = |off| u32_at(off).map(|v| v as usize).context("truncated BTF header");
    let hdr_len = field(4)?;
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    let strings = data.get(hdr_len + str_off..hdr_len + str_off + str_len).context("truncated BTF strings")?;
    let bytes = |off: u32| -> &[u8] {
        let rest = strings.get(off as usize..).unwrap_or(&[]);
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    };
    let name = |off: u32| std::str::from_utf8(bytes(off)).unwrap_or("");
    let (start, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    let mut structs = Vec::new();
    let mut at = start;
    while at + 12 <= end {
        let (name_off, info) = (u32_at(at).unwrap_or(0), u32_at(at + 4).unwrap_or(0));
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
        at += 12;
        let extra = match kind {
            1 | 14 | 17 => 4, // int, var, decl tag
            3 => 12,          // array
            KIND_STRUCT | KIND_UNION => vlen * 12,
            6 | 13 => vlen * 8,        // enum, func proto
            15 | 19 => vlen * 12,      // datasec, enum64
            2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, typedef, qualifiers, func, float, type tag
            other => bail!("unknown BTF kind {other}"),
        };
        if kind == KIND_STRUCT && name_off != 0 && wanted.iter().any(|w| w.as_bytes() == bytes(name_off)) {
            let members = (0..vlen)
                .filter_map(|i| {
                    let m = at + i * 12;
                    let bits = u32_at(m + 8)?;
                    let bits = if kind_flag == 1 { bits & 0x00ff_ffff } else { bits };
                    Some((name(u32_at(m)?), bits / 8))
                })
                .collect();
            structs.push((name(name_off), members));
        }
        at += extra;
    }
    Ok(Structs { structs })
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_offsets_are_inside_the_task_struct() {
        // The running kernel's own BTF (every kernel stackwatch supports has
        // it; `doctor` says so otherwise).
        let offsets = super::task_offsets().unwrap();
        for off in [offsets.fsbase, offsets.group_leader, offsets.start_boottime] {
            let off = off.expect("found");
            assert!(off > 0 && off < 16384 && off.is_multiple_of(8), "{offsets:?}");
        }
        assert_ne!(offsets.group_leader, offsets.start_boottime);
    }

    #[test]
    fn a_read_copy_parses_like_the_mapping_and_only_wanted_structs_are_kept() {
        // `task_offsets` maps the file on this kernel; the copy is what an
        // older kernel (no mmap of its BTF) parses.
        let data = std::fs::read(super::VMLINUX_BTF).unwrap();
        let btf = super::parse(&data, &["task_struct"]).unwrap();
        let mapped = super::task_offsets().unwrap();
        assert_eq!(btf.member_offset("task_struct", "group_leader"), mapped.group_leader);
        assert_eq!(btf.member_offset("task_struct", "start_boottime"), mapped.start_boottime);
        assert!(btf.member_offset("task_struct", "thread").is_some());
        assert_eq!(btf.member_offset("thread_struct", "fsbase"), None, "not asked for");
        assert_eq!(btf.structs.len(), 1);
    }
}
