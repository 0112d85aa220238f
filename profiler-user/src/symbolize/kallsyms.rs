//! Kernel addresses named from `/proc/kallsyms` in one streaming pass.
//!
//! A profile holds a few hundred distinct kernel addresses; the kernel has
//! over a hundred thousand symbols. Building an index of all of them (what
//! a general-purpose resolver does: about 6 MiB here) to look up a few
//! hundred is wasted memory, so each line is read, compared with the wanted
//! addresses and dropped. Memory is proportional to the addresses asked
//! for; time is one read of the file, most of which is the kernel
//! formatting it (about 30 ms for 122 k lines on this kind of VM).
//!
//! The file need not be sorted (module symbols follow the core kernel's):
//! each symbol is offered only to the first wanted address at or above it,
//! and a running maximum afterwards gives every address the closest symbol
//! at or below it.

use std::io::{self, BufRead};

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
        let mut words = line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
        let (Some(addr), Some(kind), Some(name)) = (words.next(), words.next(), words.next()) else { continue };
        let Some(addr) = hex(addr) else { continue };
        nonzero |= addr != 0;
        // Text symbols only: data symbols would name code wrongly.
        if !matches!(kind, b"t" | b"T" | b"w" | b"W") || addr == 0 {
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
        let module = words
            .next()
            .and_then(|m| std::str::from_utf8(m).ok())
            .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
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
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "every address in /proc/kallsyms reads 0 (kernel.kptr_restrict hides them; root with CAP_SYSLOG sees them)",
        ));
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

    fn names(out: &[Option<KernelSymbol>]) -> Vec<Option<(&str, u64)>> {
        out.iter().map(|s| s.as_ref().map(|s| (s.name.as_str(), s.addr))).collect()
    }

    #[test]
    fn names_each_address_by_the_symbol_at_or_below_it() {
        let text = "\
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
        let addrs = [
            0xffff_ffff_8000_0000, // below every symbol
            0xffff_ffff_8100_0000, // exactly a symbol
            0xffff_ffff_8100_0250, // after a data symbol: still helper
            0xffff_ffff_8100_0300,
            0xffff_ffff_8100_0401,
            0xffff_ffff_c000_0010, // module symbols out of order
            0xffff_ffff_c000_2000,
        ];
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
