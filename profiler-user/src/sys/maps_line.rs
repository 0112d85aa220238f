//! One line of `/proc/PID/maps` (the same as a mapping's first line in
//! `smaps`): the one parser of that format, for the executable mappings
//! a profile needs and for this process's own file views.

/// The fields of one mapping line:
/// `start-end perms offset major:minor inode   path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    /// `r-xp`, `r--s`, …
    pub perms: &'a str,
    /// File offset that `start` maps.
    pub offset: u64,
    /// Device as `st_dev` encodes it.
    pub dev: u64,
    pub inode: u64,
    /// Everything after the inode, spaces inside kept (`/tmp/my prog
    /// (deleted)`), `[heap]`-style pseudo-names, or empty (anonymous).
    pub path: &'a str,
}

impl<'a> MapsLine<'a> {
    /// `None` for anything else, such as an `smaps` field line
    /// (`Rss:  4 kB`).
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        // Single spaces between the first five fields; the path column is
        // padded with spaces the path itself may contain.
        let mut fields = line.splitn(6, ' ');
        let (range, perms, offset, dev, inode) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let (start, end) = range.split_once('-')?;
        let (major, minor) = dev.split_once(':')?;
        let dev = libc::makedev(u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?);
        Some(Self {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            perms,
            offset: u64::from_str_radix(offset, 16).ok()?,
            dev,
            inode: inode.parse().ok()?,
            path: fields.next().unwrap_or("").trim_start(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mapping_line_with_spaces_in_its_path() {
        let line = "7f0000300000-7f0000301000 r-xp 0001a000 fd:01 77                         /tmp/my prog (deleted)";
        assert_eq!(
            MapsLine::parse(line),
            Some(MapsLine {
                start: 0x7f00_0030_0000,
                end: 0x7f00_0030_1000,
                perms: "r-xp",
                offset: 0x1a000,
                dev: libc::makedev(0xfd, 1),
                inode: 77,
                path: "/tmp/my prog (deleted)",
            })
        );
    }

    #[test]
    fn anonymous_and_pseudo_mappings_have_their_names_or_none() {
        let anon = MapsLine::parse("7f0000300000-7f0000301000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!((anon.inode, anon.path), (0, ""));
        let bare = MapsLine::parse("7f0000300000-7f0000301000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(bare.path, "");
        let heap = MapsLine::parse("55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0          [heap]").unwrap();
        assert_eq!(heap.path, "[heap]");
    }

    #[test]
    fn smaps_field_lines_and_garbage_are_not_mappings() {
        for line in ["Rss:                   4 kB", "VmFlags: rd mr mw me ac sd", "", "7f00-zz r-xp 0 fd:01 1 /x"] {
            assert_eq!(MapsLine::parse(line), None, "{line}");
        }
    }
}
