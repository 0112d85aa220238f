//! GNU build IDs in ELF notes: the running kernel's, for the profile's
//! kernel mapping.

/// The running kernel's GNU build ID, from the ELF notes in `/sys/kernel/notes`.
pub(crate) fn kernel_build_id() -> Option<String> {
    let notes = std::fs::read("/sys/kernel/notes").ok()?;
    parse_build_id_note(&notes)
}

/// Finds an `NT_GNU_BUILD_ID` note (name "GNU") in a raw ELF note section.
pub(crate) fn parse_build_id_note(mut data: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let align4 = |n: usize| n.div_ceil(4) * 4;
    while data.len() >= 12 {
        let (namesz, descsz, kind) = (word(&data[0..]) as usize, word(&data[4..]) as usize, word(&data[8..]));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > data.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && namesz == 4 && data[12..16] == *b"GNU\0" {
            return Some(super::elf::hex(&data[name_end..name_end + descsz]));
        }
        data = &data[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_gnu_build_id_note() {
        let mut note = Vec::new();
        // An unrelated note first.
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&1u32.to_ne_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&[1, 2, 3, 4]);
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(parse_build_id_note(&note).as_deref(), Some("abcdef"));
        assert_eq!(parse_build_id_note(&note[..10]), None);
    }
}
