//! `/proc/self/mountinfo`: where file systems of a type are mounted (the
//! cgroup hierarchies, tracefs).

use std::path::PathBuf;

/// `/proc/self/mountinfo` now (empty when unreadable).
pub(crate) fn read() -> std::io::Result<String> {
    std::fs::read_to_string(PATH)
}

/// Where [`read`] reads from, for error messages.
pub(crate) const PATH: &str = "/proc/self/mountinfo";

/// `(root, mount point)` of each mount of file system type `fstype` in
/// `mountinfo` (proc(5) format), in mount order.
pub(crate) fn mounts_of_type(mountinfo: &str, fstype: &str) -> Vec<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // Optional fields end at " - ", then: type, source, super options.
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split(' ').next()? != fstype {
                return None;
            }
            let mut fields = mount.split(' ');
            let root = unescape(fields.nth(3)?);
            let mount_point = unescape(fields.next()?);
            Some((root, PathBuf::from(mount_point)))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
