//! Profile kinds, and sets of them as operators write them (`cpu,offcpu`):
//! on the command line, in the `watch` config file and after `start` on the
//! control channel.
//!
//! [`ProfileSet`] is a bit set so that it can travel inside the `Copy`
//! control [`crate::control::Command`]; [`ProfileSet::to_vec`] gives the
//! kinds in one fixed order, so the files of a capture do not depend on how
//! the list was spelled.

use std::fmt;

/// The kind of a profile, as it appears in file names (`<name>-<pid>-<kind>-…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Cpu,
    #[serde(rename = "offcpu")]
    OffCpu,
    Memory,
}

impl ProfileKind {
    /// Every kind, in the order captures list them.
    pub const ALL: [ProfileKind; 3] = [ProfileKind::Cpu, ProfileKind::OffCpu, ProfileKind::Memory];

    /// Its name in file names, lists and the manifest.
    pub fn as_str(self) -> &'static str {
        self.words()[0]
    }

    /// The words operators may write for it, its name first.
    fn words(self) -> &'static [&'static str] {
        match self {
            ProfileKind::Cpu => &["cpu"],
            ProfileKind::OffCpu => &["offcpu", "off-cpu"],
            ProfileKind::Memory => &["memory", "mem"],
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a list of profile kinds holds, for its errors.
pub(crate) const KINDS_EXPECTED: &str = "profile kinds separated by commas, e.g. `cpu,offcpu`";

/// Parses one kind word: `cpu`, `offcpu` (`off-cpu`) or `memory` (`mem`),
/// in any case. An empty word is an empty item of a list.
pub(crate) fn parse_kind(word: &str) -> Result<ProfileKind, String> {
    let word = word.trim().to_ascii_lowercase();
    if word.is_empty() {
        return Err(crate::units::empty_item(KINDS_EXPECTED));
    }
    if let Some(kind) = ProfileKind::ALL.into_iter().find(|k| k.words().contains(&word.as_str())) {
        return Ok(kind);
    }
    let names: Vec<&str> = ProfileKind::ALL.iter().map(|k| k.as_str()).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    Err(format!("unknown profile kind `{word}` (expected {} or {last})", rest.join(", ")))
}

/// A set of profile kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProfileSet(u8);

impl ProfileSet {
    pub(crate) fn of(kinds: &[ProfileKind]) -> Self {
        let mut set = Self::default();
        for &kind in kinds {
            set.insert(kind);
        }
        set
    }

    /// Parses a comma-separated list (`cpu,offcpu`); repeats are harmless,
    /// an empty list or item is refused.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut set = Self::default();
        for word in crate::units::list_items(text, KINDS_EXPECTED)? {
            set.insert(parse_kind(word)?);
        }
        Ok(set)
    }

    fn bit(kind: ProfileKind) -> u8 {
        1 << kind as u8
    }

    pub(crate) fn insert(&mut self, kind: ProfileKind) {
        self.0 |= Self::bit(kind);
    }

    pub(crate) fn contains(self, kind: ProfileKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in `self` and not in `other`.
    pub(crate) fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The kinds, in the order of [`ProfileKind::ALL`].
    pub(crate) fn to_vec(self) -> Vec<ProfileKind> {
        ProfileKind::ALL.into_iter().filter(|&k| self.contains(k)).collect()
    }
}

/// `cpu,offcpu`: what [`ProfileSet::parse`] reads back.
impl fmt::Display for ProfileSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = self.to_vec().into_iter().map(ProfileKind::as_str).collect();
        f.write_str(&words.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lists() {
        let set = ProfileSet::parse("memory, CPU,cpu").unwrap();
        assert_eq!(set.to_vec(), [ProfileKind::Cpu, ProfileKind::Memory]);
        assert_eq!(set.to_string(), "cpu,memory");
        assert_eq!(ProfileSet::parse(&set.to_string()), Ok(set));
        assert_eq!(ProfileSet::parse("off-cpu").unwrap().to_vec(), [ProfileKind::OffCpu]);
        assert_eq!(
            ProfileSet::parse("cpu,gpu").unwrap_err(),
            "unknown profile kind `gpu` (expected cpu, offcpu or memory)"
        );
        assert!(ProfileSet::parse("cpu,").unwrap_err().contains("separated by commas"));
        assert!(ProfileSet::parse("").is_err());
    }

    #[test]
    fn set_operations() {
        let cpu = ProfileSet::of(&[ProfileKind::Cpu]);
        let both = ProfileSet::of(&[ProfileKind::OffCpu, ProfileKind::Cpu]);
        assert!(both.contains(ProfileKind::OffCpu) && !both.contains(ProfileKind::Memory));
        assert_eq!(both.minus(cpu).to_vec(), [ProfileKind::OffCpu]);
        assert!(cpu.minus(both).is_empty());
        assert_eq!(cpu.union(ProfileSet::of(&[ProfileKind::Memory])).to_string(), "cpu,memory");
    }
}
