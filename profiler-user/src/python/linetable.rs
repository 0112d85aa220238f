//! Instruction → line number, from a code object's line table, in each of
//! the three encodings CPython has used (`Objects/lnotab_notes.txt` and
//! `Objects/locations.md` in its source). Instruction positions are in code
//! units (2-byte instructions) throughout; the older tables count bytes.

/// Which encoding a table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTableKind {
    /// `co_lnotab` (3.8, 3.9): (byte increment, signed line increment)
    /// pairs; a pair applies from its address on.
    Lnotab,
    /// `co_linetable` (3.10): (byte length, signed line delta) pairs, each
    /// covering a range; a delta of -128 means "no line".
    LineTable310,
    /// `co_linetable` (3.11+): the location table, variable-length entries
    /// with line deltas, end lines and columns.
    Locations,
}

impl LineTableKind {
    pub fn for_minor(minor: u8) -> Self {
        match minor {
            ..=9 => Self::Lnotab,
            10 => Self::LineTable310,
            _ => Self::Locations,
        }
    }
}

/// The line of the instruction at code unit `index` (CPython's
/// `PyCode_Addr2Line`), or `None` where the table says there is none. A
/// negative index (a frame that has not started) is the first line.
pub fn line_for(kind: LineTableKind, table: &[u8], first_line: u32, index: i32) -> Option<u32> {
    let Ok(index) = u32::try_from(index) else { return Some(first_line) };
    let first = i64::from(first_line);
    let line = match kind {
        LineTableKind::Lnotab => lnotab(table, first, u64::from(index) * 2),
        LineTableKind::LineTable310 => linetable_310(table, first, u64::from(index) * 2)?,
        LineTableKind::Locations => locations(table, first, u64::from(index))?,
    };
    u32::try_from(line).ok()
}

fn lnotab(table: &[u8], first: i64, addr: u64) -> i64 {
    let mut line = first;
    let mut at = 0u64;
    for pair in table.as_chunks::<2>().0 {
        at += u64::from(pair[0]);
        if at > addr {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    line
}

fn linetable_310(table: &[u8], first: i64, addr: u64) -> Option<i64> {
    let mut line = first;
    let mut start = 0u64;
    for pair in table.as_chunks::<2>().0 {
        let end = start + u64::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if start <= addr && addr < end {
            return this;
        }
        start = end;
    }
    None
}

fn locations(table: &[u8], first: i64, index: u64) -> Option<i64> {
    let mut bytes = table.iter().copied().peekable();
    let mut line = first;
    let mut at = 0u64;
    while let Some(head) = bytes.next() {
        if head & 0x80 == 0 {
            return None; // lost sync: not an entry start
        }
        let code = (head >> 3) & 0x0f;
        let len = u64::from(head & 0x07) + 1;
        let mut this = Some(());
        match code {
            15 => this = None,
            14 => {
                line += signed_varint(&mut bytes)?;
                for _ in 0..3 {
                    varint(&mut bytes)?;
                }
            }
            13 => line += signed_varint(&mut bytes)?,
            10..=12 => {
                line += i64::from(code - 10);
                bytes.next()?;
                bytes.next()?;
            }
            _ => {
                bytes.next()?;
            }
        }
        if at <= index && index < at + len {
            return this.map(|()| line);
        }
        at += len;
        // Skip to the next entry start if a decoder above consumed too little.
        while bytes.peek().is_some_and(|b| b & 0x80 == 0) {
            bytes.next();
        }
    }
    None
}

fn varint(bytes: &mut impl Iterator<Item = u8>) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes.next()?;
        value |= u64::from(b & 0x3f) << shift;
        if b & 0x40 == 0 {
            return Some(value);
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
}

fn signed_varint(bytes: &mut impl Iterator<Item = u8>) -> Option<i64> {
    let v = varint(bytes)?;
    let magnitude = (v >> 1) as i64;
    Some(if v & 1 != 0 { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tables below were produced by the interpreters themselves; the
    // end-to-end check against every installed CPython is in
    // `python::tests::line_tables_match_the_interpreters`.

    #[test]
    fn lnotab_applies_increments_from_their_address() {
        // def f():          line 1
        //     a = 1         line 2, bytes 0..4
        //     b = 2         line 3, bytes 4..8
        //     return a + b  line 4, bytes 8..
        let table = [0, 1, 4, 1, 4, 1];
        assert_eq!(line_for(LineTableKind::Lnotab, &table, 1, 0), Some(2));
        assert_eq!(line_for(LineTableKind::Lnotab, &table, 1, 1), Some(2));
        assert_eq!(line_for(LineTableKind::Lnotab, &table, 1, 2), Some(3));
        assert_eq!(line_for(LineTableKind::Lnotab, &table, 1, 5), Some(4));
        // Negative line increments (a loop jumping back) are signed.
        let table = [0, 3, 4, 0xfe];
        assert_eq!(line_for(LineTableKind::Lnotab, &table, 10, 2), Some(11));
    }

    #[test]
    fn linetable_310_covers_ranges_and_knows_no_line() {
        // Bytes 0..2 line first+0, 2..6 line first+2, 6..8 no line, 8..10 first+1.
        let table = [2, 0, 4, 2, 2, 0x80, 2, 0xff];
        assert_eq!(line_for(LineTableKind::LineTable310, &table, 5, 0), Some(5));
        assert_eq!(line_for(LineTableKind::LineTable310, &table, 5, 2), Some(7));
        assert_eq!(line_for(LineTableKind::LineTable310, &table, 5, 3), None);
        assert_eq!(line_for(LineTableKind::LineTable310, &table, 5, 4), Some(6));
        assert_eq!(line_for(LineTableKind::LineTable310, &table, 5, 9), None);
    }

    #[test]
    fn locations_decode_every_entry_kind() {
        let table = [
            0x80 | (13 << 3),
            2, // 1 unit, no columns, line +1
            0x80 | (11 << 3) | 1,
            4,
            8, // 2 units, one-line form, line +1
            0x80 | (3 << 3),
            7, // 1 unit, short form, same line
            0x80 | (14 << 3),
            5,
            2,
            1,
            3,                // 1 unit, long form, line -2
            0x80 | (15 << 3), // 1 unit, no location
            0x80 | (13 << 3),
            0x40,
            0x01, // varint continuation: 64 → +32
        ];
        let line = |i| line_for(LineTableKind::Locations, &table, 100, i);
        assert_eq!(line(0), Some(101));
        assert_eq!((line(1), line(2)), (Some(102), Some(102)));
        assert_eq!(line(3), Some(102));
        assert_eq!(line(4), Some(100));
        assert_eq!(line(5), None);
        assert_eq!(line(6), Some(132));
        assert_eq!(line(7), None);
        assert_eq!(line(-1), Some(100));
    }
}
