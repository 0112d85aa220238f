//! Kernel addresses named by the kernel itself, without reading
//! `/proc/kallsyms`.
//!
//! Reading kallsyms costs the kernel's formatting of every symbol (122 k
//! lines, about 50 ms of system time here) to name the few hundred kernel
//! addresses a profile holds; on a short capture that is most of
//! stackwatch's own CPU. The kernel can name one address in microseconds
//! (a binary search of its sorted symbol table and one name expanded),
//! and a BPF program can ask it to: `bpf_snprintf` with `%pS` formats an
//! address as `function+0xoffset/0xsize [module]`, as a kernel oops does,
//! for the core kernel, modules and BPF programs alike.
//!
//! [`KernelNames`] is that program: a syscall program (run on demand with
//! `BPF_PROG_TEST_RUN`, attached to nothing) that formats a batch of
//! [`BATCH`] addresses held in an array map, built instruction by
//! instruction (one `bpf_snprintf` call per slot, unrolled: no loop for
//! the verifier to bound) when first needed. It needs kernel 5.14
//! (syscall programs, `bpf_snprintf` from 5.13) and `CAP_BPF` +
//! `CAP_PERFMON`; where it cannot load, kernel frames are named from
//! kallsyms as before ([`super::kallsyms`]).

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
};

use super::kallsyms::KernelSymbol;
use crate::sys::bpf::{self, BpfInsn, BPF_F_RDONLY_PROG, BPF_F_SLEEPABLE, BPF_PROG_TYPE_SYSCALL};

/// Addresses named per run of the program.
const BATCH: usize = 64;
/// Bytes of output per address: `%pS` of the longest kernel symbol
/// (`KSYM_NAME_LEN`, 512) would not fit, but a name cut short is left
/// unnamed rather than named wrongly ([`parse`]); 256 holds every name on
/// this kind of host with room to spare.
const SLOT: usize = 256;
/// Where the parts of the data map's one value lie: the addresses, what
/// each `bpf_snprintf` returned, the names.
const ADDRS: usize = 0;
const RETURNS: usize = ADDRS + 8 * BATCH;
const NAMES: usize = RETURNS + 8 * BATCH;
const VALUE_SIZE: usize = NAMES + SLOT * BATCH;
/// `BPF_FUNC_snprintf` (linux/bpf.h).
const BPF_FUNC_SNPRINTF: i32 = 165;
/// The format: the function, offset and size, and the module.
const FORMAT: &[u8] = b"%pS\0";

/// The loaded program and its two maps (see the module docs).
pub(super) struct KernelNames {
    program: OwnedFd,
    data: OwnedFd,
    /// Kept so the program's constant lives as long as it does (the
    /// program also holds a reference).
    _format: OwnedFd,
}

impl KernelNames {
    /// Loads the program; an error on kernels without syscall programs
    /// or `bpf_snprintf`, or without the privileges to load it.
    pub(super) fn load() -> io::Result<Self> {
        let format = constant_map(FORMAT)?;
        let data = bpf::create_array_of_one(VALUE_SIZE, 0)?;
        let mut insns = Vec::with_capacity(BATCH * 11 + 4);
        // r6 = the data map's value.
        insns.extend(BpfInsn::ld_map_value(6, data.as_fd(), 0));
        for i in 0..BATCH {
            // r0 = bpf_snprintf(names[i], SLOT, FORMAT, &addrs[i], 8);
            // returns[i] = r0.
            insns.push(BpfInsn::mov64_reg(1, 6));
            insns.push(BpfInsn::add64_imm(1, (NAMES + i * SLOT) as i32));
            insns.push(BpfInsn::mov64_imm(2, SLOT as i32));
            insns.extend(BpfInsn::ld_map_value(3, format.as_fd(), 0));
            insns.push(BpfInsn::mov64_reg(4, 6));
            insns.push(BpfInsn::add64_imm(4, (ADDRS + i * 8) as i32));
            insns.push(BpfInsn::mov64_imm(5, 8));
            insns.push(BpfInsn::call(BPF_FUNC_SNPRINTF));
            insns.push(BpfInsn::stx64(6, (RETURNS + i * 8) as i16, 0));
        }
        insns.push(BpfInsn::mov64_imm(0, 0));
        insns.push(BpfInsn::exit());
        let program = bpf::load_program(BPF_PROG_TYPE_SYSCALL, BPF_F_SLEEPABLE, "sw_ksym_names", &insns)?;
        Ok(Self { program, data, _format: format })
    }

    /// Names each of `addrs` by the function it lies in; `None` for an
    /// address the kernel has no symbol for.
    pub(super) fn resolve(&self, addrs: &[u64]) -> io::Result<Vec<Option<KernelSymbol>>> {
        let mut out = Vec::with_capacity(addrs.len());
        let mut value = vec![0u8; VALUE_SIZE];
        for chunk in addrs.chunks(BATCH) {
            value.fill(0);
            for (i, addr) in chunk.iter().enumerate() {
                value[ADDRS + i * 8..][..8].copy_from_slice(&addr.to_ne_bytes());
            }
            bpf::array_update(self.data.as_fd(), 0, &value)?;
            // A syscall program needs a context of at least a byte, unused.
            bpf::test_run(self.program.as_fd(), &mut [0; 8])?;
            bpf::array_lookup(self.data.as_fd(), 0, &mut value)?;
            for (i, &addr) in chunk.iter().enumerate() {
                let ret = i64::from_ne_bytes(value[RETURNS + i * 8..][..8].try_into().expect("8 bytes"));
                if ret < 0 {
                    return Err(io::Error::from_raw_os_error(-ret as i32));
                }
                let text = &value[NAMES + i * SLOT..][..SLOT];
                let len = text.iter().position(|&b| b == 0).unwrap_or(SLOT);
                out.push(parse(addr, &text[..len]));
            }
        }
        Ok(out)
    }
}

/// A frozen array map of one value, `bytes`, read-only to programs: a
/// constant a program may pass as a format string.
fn constant_map(bytes: &[u8]) -> io::Result<OwnedFd> {
    let map = bpf::create_array_of_one(bytes.len(), BPF_F_RDONLY_PROG)?;
    bpf::array_update(map.as_fd(), 0, bytes)?;
    bpf::freeze(map.as_fd())?;
    Ok(map)
}

/// The symbol in `%pS` text (`function+0x1a/0x40 [module]`) for `addr`;
/// `None` where the kernel printed the bare address (no symbol) or the
/// text is not of that form.
fn parse(addr: u64, text: &[u8]) -> Option<KernelSymbol> {
    let text = std::str::from_utf8(text).ok()?;
    let (symbol, module) = match text.split_once(' ') {
        Some((symbol, module)) => (symbol, module.strip_prefix('[')?.strip_suffix(']')),
        None => (text, None),
    };
    // The last '+': function names may hold one (`foo.cold+0x0/0x8` does
    // not, but BPF trampolines' names are free-form).
    let (name, offsets) = symbol.rsplit_once('+')?;
    let (offset, _size) = offsets.split_once('/')?;
    let offset = u64::from_str_radix(offset.strip_prefix("0x")?, 16).ok()?;
    if name.is_empty() {
        return None;
    }
    Some(KernelSymbol {
        name: name.to_owned(),
        addr: addr.checked_sub(offset)?,
        module: module.map(|m| m.split_whitespace().next().unwrap_or(m).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_symbol_text() {
        let got = parse(0xffff_ffff_8100_101a, b"do_nanosleep+0x1a/0x40").unwrap();
        assert_eq!(got, KernelSymbol { name: "do_nanosleep".into(), addr: 0xffff_ffff_8100_1000, module: None });
        let got = parse(0xffff_ffff_c000_0010, b"ext4_read+0x10/0x90 [ext4]").unwrap();
        assert_eq!(got.module.as_deref(), Some("ext4"));
        assert_eq!(got.addr, 0xffff_ffff_c000_0000);
        // With the module's build id (CONFIG_STACKTRACE_BUILD_ID).
        let got = parse(0xffff_ffff_c000_0010, b"f+0x10/0x90 [ext4 0123abcd]").unwrap();
        assert_eq!(got.module.as_deref(), Some("ext4"));
        // No symbol: the kernel prints the address.
        assert_eq!(parse(0x1000, b"0x1000"), None);
        // Cut short by the slot.
        assert_eq!(parse(0x1000, b"a_very_long_name+0x1"), None);
        assert_eq!(parse(0x10, b"f+0x20/0x40"), None);
    }

    /// Text symbols of this host's kallsyms, sorted (empty where the
    /// addresses are hidden).
    fn kallsyms() -> Vec<(u64, String)> {
        let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                (matches!(kind, "t" | "T") && addr != 0).then(|| (addr, name.to_owned()))
            })
            .collect();
        syms.sort();
        syms
    }

    #[test]
    fn names_kernel_addresses_as_kallsyms_does() {
        let names = KernelNames::load().expect("load the naming program (root, kernel >= 5.14)");
        let syms = kallsyms();
        assert!(!syms.is_empty(), "kallsyms shows no addresses (not root?)");
        // Every 499th symbol, a few bytes in: more than one batch.
        let picked: Vec<&(u64, String)> = syms.iter().step_by(499).collect();
        assert!(picked.len() > 2 * BATCH, "{}", picked.len());
        let addrs: Vec<u64> = picked.iter().map(|s| s.0 + 3).collect();
        let started = std::time::Instant::now();
        let got = names.resolve(&addrs).unwrap();
        let took = started.elapsed();
        let mut named = 0;
        for ((addr, name), got) in picked.iter().zip(&got) {
            let Some(got) = got else { continue };
            named += 1;
            // The function's start is the symbol's; its name is this one or
            // an alias at the same address.
            let start = syms[syms.partition_point(|s| s.0 <= addr + 3) - 1].0;
            assert_eq!(got.addr, start, "{name}: {got:?}");
            assert!(syms.iter().any(|s| s.0 == got.addr && s.1 == got.name), "{name}: {got:?}");
        }
        // Symbols of size 0 or in sections kallsyms_lookup does not search
        // (init text freed at boot) may go unnamed; nearly all are named.
        assert!(named * 100 >= addrs.len() * 95, "{named} of {} named", addrs.len());
        eprintln!("{} addresses named in {took:?}", addrs.len());
        // Not a kernel address: no name.
        assert_eq!(names.resolve(&[0x1000]).unwrap(), vec![None]);
    }
}
