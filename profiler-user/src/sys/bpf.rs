//! The raw `bpf(2)` calls for the few small programs and maps stackwatch
//! makes without an object file: `doctor`'s probes (the same kinds of
//! objects `record` creates, closed at once) and the kernel's own naming of
//! kernel addresses ([`crate::symbolize`]). The capture's programs are
//! loaded by aya from the eBPF object.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_PROG_GET_NEXT_ID: libc::c_int = 11;
const BPF_MAP_FREEZE: libc::c_int = 22;

const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub(crate) const BPF_PROG_TYPE_PERF_EVENT: u32 = 7;
pub(crate) const BPF_PROG_TYPE_SYSCALL: u32 = 31;

/// `map_flags`: the map is read-only to programs (and so, frozen, a
/// constant they may use as a format string).
pub(crate) const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `prog_flags`: the program may sleep (required of syscall programs).
pub(crate) const BPF_F_SLEEPABLE: u32 = 1 << 4;

/// The licence of the programs made here, as the eBPF object declares it
/// (GPL-compatible: some helpers are GPL-only).
const LICENSE: &std::ffi::CStr = c"Dual MIT/GPL";

/// The `BPF_MAP_CREATE` prefix of `union bpf_attr`.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// The `BPF_PROG_LOAD` prefix of `union bpf_attr`, up to the name (no
/// padding).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}
const _: () = assert!(size_of::<ProgLoadAttr>() == 64);

/// `struct bpf_insn`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct BpfInsn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little endian).
    regs: u8,
    off: i16,
    imm: i32,
}

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self { code, regs: dst | (src << 4), off, imm }
    }

    /// `dst = src` (BPF_ALU64 | BPF_MOV | BPF_X).
    pub(crate) const fn mov64_reg(dst: u8, src: u8) -> Self {
        Self::new(0xbf, dst, src, 0, 0)
    }

    /// `dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
    pub(crate) const fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }

    /// `dst += imm` (BPF_ALU64 | BPF_ADD | BPF_K).
    pub(crate) const fn add64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0x07, dst, 0, 0, imm)
    }

    /// `*(u64 *)(dst + off) = src` (BPF_STX | BPF_MEM | BPF_DW).
    pub(crate) const fn stx64(dst: u8, off: i16, src: u8) -> Self {
        Self::new(0x7b, dst, src, off, 0)
    }

    /// `dst = &value_of(map)[offset]` for an array map of one entry
    /// (BPF_LD | BPF_DW | BPF_IMM with BPF_PSEUDO_MAP_VALUE): two slots.
    pub(crate) fn ld_map_value(dst: u8, map: BorrowedFd<'_>, offset: i32) -> [Self; 2] {
        const BPF_PSEUDO_MAP_VALUE: u8 = 2;
        [Self::new(0x18, dst, BPF_PSEUDO_MAP_VALUE, 0, map.as_raw_fd()), Self::new(0, 0, 0, 0, offset)]
    }

    /// Calls helper `id` (BPF_JMP | BPF_CALL).
    pub(crate) const fn call(id: i32) -> Self {
        Self::new(0x85, 0, 0, 0, id)
    }

    /// BPF_JMP | BPF_EXIT.
    pub(crate) const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }
}

/// `bpf(cmd, attr, sizeof attr)` for a command that returns a new
/// descriptor. `A` is a prefix of `union bpf_attr`; the kernel reads the
/// fields past it as zero.
fn sys_bpf<A>(cmd: libc::c_int, attr: &A) -> io::Result<OwnedFd> {
    super::owned_fd(raw(cmd, std::ptr::from_ref(attr).cast_mut(), size_of::<A>()))
}

/// `bpf(cmd, attr, sizeof attr)` for a command that returns 0 and may write
/// into `attr` (`BPF_PROG_TEST_RUN`).
fn sys_bpf_mut<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<()> {
    if raw(cmd, std::ptr::from_mut(attr), size_of::<A>()) < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates an array map of one `value_size`-byte value.
pub(crate) fn create_array_of_one(value_size: usize, map_flags: u32) -> io::Result<OwnedFd> {
    let value_size = u32::try_from(value_size).map_err(|_| io::Error::other("map value too large"))?;
    sys_bpf(
        BPF_MAP_CREATE,
        &MapCreateAttr { map_type: BPF_MAP_TYPE_ARRAY, key_size: 4, value_size, max_entries: 1, map_flags },
    )
}

/// Writes `value` (the map's value size) as the value of key `key` of an
/// array map.
pub(crate) fn array_update(map: BorrowedFd<'_>, key: u32, value: &[u8]) -> io::Result<()> {
    // `map_fd`, `key`, `value`, `flags` of `union bpf_attr`.
    let mut attr = [map.as_raw_fd() as u64, std::ptr::from_ref(&key) as u64, value.as_ptr() as u64, 0];
    sys_bpf_mut(BPF_MAP_UPDATE_ELEM, &mut attr)
}

/// Reads the value of key `key` of an array map into `value` (the map's
/// value size).
pub(crate) fn array_lookup(map: BorrowedFd<'_>, key: u32, value: &mut [u8]) -> io::Result<()> {
    let mut attr = [map.as_raw_fd() as u64, std::ptr::from_ref(&key) as u64, value.as_mut_ptr() as u64, 0];
    sys_bpf_mut(BPF_MAP_LOOKUP_ELEM, &mut attr)
}

/// Freezes a map: no more writes from user space.
pub(crate) fn freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = [map.as_raw_fd() as u32];
    sys_bpf_mut(BPF_MAP_FREEZE, &mut attr)
}

/// Runs `program` once (`BPF_PROG_TEST_RUN`) with a context of `ctx`; its
/// return value.
pub(crate) fn test_run(program: BorrowedFd<'_>, ctx: &mut [u8]) -> io::Result<u32> {
    // The `test` member of `union bpf_attr` up to `ctx_out`.
    #[repr(C)]
    struct TestRun {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
    }
    let mut attr = TestRun {
        prog_fd: program.as_raw_fd() as u32,
        retval: 0,
        data_size_in: 0,
        data_size_out: 0,
        data_in: 0,
        data_out: 0,
        repeat: 0,
        duration: 0,
        ctx_size_in: u32::try_from(ctx.len()).map_err(|_| io::Error::other("context too large"))?,
        ctx_size_out: 0,
        ctx_in: ctx.as_mut_ptr() as u64,
        ctx_out: 0,
    };
    sys_bpf_mut(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// The ids of the BPF programs loaded now (`BPF_PROG_GET_NEXT_ID`);
/// empty where the call is refused.
pub(crate) fn program_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    let mut start = 0u32;
    // Bounded: ids only grow, but a kernel bug must not spin forever.
    while ids.len() < 1 << 20 {
        // `start_id`, `next_id`, `open_flags` of `union bpf_attr`.
        let mut attr = [start, 0u32, 0u32];
        if sys_bpf_mut(BPF_PROG_GET_NEXT_ID, &mut attr).is_err() {
            break;
        }
        start = attr[1];
        ids.push(start);
    }
    ids
}

fn raw<A>(cmd: libc::c_int, attr: *mut A, size: usize) -> libc::c_long {
    // SAFETY: callers pass a valid `#[repr(C)]` bpf_attr prefix without
    // padding and its exact size; the kernel writes only output fields of
    // the command, which lie inside it.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) }
}

/// Loads `insns` as a program of `prog_type`, named `name` (at most 15
/// bytes). On refusal the error carries the verifier's log.
pub(crate) fn load_program(prog_type: u32, prog_flags: u32, name: &str, insns: &[BpfInsn]) -> io::Result<OwnedFd> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags,
        prog_name,
    };
    match sys_bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Again with the verifier's log, for an error that says why.
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = sys_bpf(BPF_PROG_LOAD, &attr) {
                return Ok(fd);
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
            Err(io::Error::new(e.kind(), format!("{e}; verifier: {tail}")))
        }
    }
}
